/*
 * An HTTP parent's response head to CONNECT (upstream_http_parse_response) on every split: the
 * status is a three-digit final one (never an interim 1xx other than 101), the head ends with
 * an empty line right before what was consumed, and nothing past the head limit is read. The
 * first input byte also picks a destination and credentials for upstream_http_connect, whose
 * head must parse as one line per header with no stray CR or LF from the name.
 */
#include "config.h"

#include "ferry/upstream_http.h"
#include "fuzz.h"

static struct fuzz_parse parse(const uint8_t *buf, size_t len, void *out)
{
    struct fuzz_parse r = {0, 0, 0};

    r.status = upstream_http_parse_response(buf, len, out, &r.consumed);
    return r;
}

static bool same(const void *a, const void *b)
{
    return *(const int *)a == *(const int *)b;
}

/* A CONNECT head for a name made of the input: no bytes of it may break the head's lines. */
static void check_request(const uint8_t *data, size_t size)
{
    struct socks_dest d;
    char out[UPSTREAM_HTTP_REQUEST_MAX];
    size_t n, lines = 0;

    memset(&d, 0, sizeof(d));
    d.type = DEST_NAME;
    d.port = 443;
    memcpy(d.name, data, size < DEST_NAME_MAX ? size : DEST_NAME_MAX);
    n = upstream_http_connect(out, sizeof(out), &d, "user", "pass");
    if (n == 0)
        return;
    FUZZ_CHECK(strlen(out) == n);
    for (size_t i = 0; i < n; i++) {
        if (out[i] == '\n') {
            FUZZ_CHECK(i > 0 && out[i - 1] == '\r');
            lines++;
        } else if (out[i] == '\r') {
            FUZZ_CHECK(i + 1 < n && out[i + 1] == '\n');
        }
    }
    FUZZ_CHECK(lines == 4); /* request line, Host, Proxy-Authorization, the empty line */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int status = 0;
    struct fuzz_parse r;

    if (size > 3 * UPSTREAM_HTTP_HEAD_MAX)
        return 0;
    check_request(data, size);
    r = fuzz_check_incremental(data, size, parse, &status, sizeof(status), same);
    if (r.status != PROTO_OK)
        return 0;
    FUZZ_CHECK(status >= 0 && status <= 999);
    FUZZ_CHECK(status < 100 || status >= 200 || status == 101);
    FUZZ_CHECK(r.consumed <= UPSTREAM_HTTP_HEAD_MAX);
    FUZZ_CHECK(r.consumed >= 2 && data[r.consumed - 1] == '\n');
    return 0;
}
