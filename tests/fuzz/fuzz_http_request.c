/*
 * HTTP proxy request heads (http_parse_request) on every split, with the capacity taken from
 * the first two input bytes: a decision never changes as bytes arrive; errors carry one of
 * the documented statuses; an OK head ends with LF right before what was consumed, within the
 * capacity; a CONNECT names a port; Basic credentials fit their fields.
 */
#include "config.h"

#include "ferry/http.h"
#include "fuzz.h"

static size_t cap;

static struct fuzz_parse parse(const uint8_t *buf, size_t len, void *out)
{
    struct fuzz_parse r = {0, 0, 0};
    int status = 0;

    r.status = http_parse_request(buf, len, cap, out, &r.consumed, &status);
    if (r.status == PROTO_ERROR)
        r.code = (uint8_t)(status - 400); /* 400..505 fit a byte as an offset */
    return r;
}

static bool same(const void *a, const void *b)
{
    const struct http_request *x = a, *y = b;

    return x->method == y->method && x->form == y->form && x->https == y->https &&
           x->version_minor == y->version_minor && x->dest.type == y->dest.type &&
           x->dest.port == y->dest.port && memcmp(x->dest.ip, y->dest.ip, 16) == 0 &&
           strcmp(x->dest.name, y->dest.name) == 0 && x->proxy_auth == y->proxy_auth &&
           x->proxy_auth_ok == y->proxy_auth_ok && x->user_len == y->user_len &&
           x->pass_len == y->pass_len && x->content_length == y->content_length &&
           x->chunked == y->chunked && x->close == y->close && x->path_off == y->path_off &&
           x->path_len == y->path_len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct http_request req;
    struct fuzz_parse r;

    if (size < 2 || size > 20000)
        return 0;
    cap = 16 + (((size_t)data[0] << 8 | data[1]) % 12000);
    data += 2;
    size -= 2;
    r = fuzz_check_incremental(data, size, parse, &req, sizeof(req), same);
    if (r.status == PROTO_ERROR) {
        int status = 400 + r.code;

        FUZZ_CHECK(status == 400 || status == 414 || status == 431 || status == 505);
        return 0;
    }
    if (r.status != PROTO_OK)
        return 0;
    FUZZ_CHECK(r.consumed <= cap && data[r.consumed - 1] == '\n');
    FUZZ_CHECK(req.user_len <= 255 && req.pass_len <= 255);
    FUZZ_CHECK(!req.proxy_auth_ok || req.proxy_auth);
    if (req.method == HTTP_CONNECT)
        FUZZ_CHECK(req.form == HTTP_TARGET_AUTHORITY && req.dest.port != 0);
    if (req.form == HTTP_TARGET_ABSOLUTE) {
        FUZZ_CHECK(req.dest.port != 0);
        FUZZ_CHECK(req.path_off + req.path_len <= r.consumed);
    }
    if (req.dest.type == DEST_NAME && req.form != HTTP_TARGET_ORIGIN &&
        req.form != HTTP_TARGET_ASTERISK)
        FUZZ_CHECK(req.dest.name[0] != '\0' && strlen(req.dest.name) <= DEST_NAME_MAX);
    fuzz_check_dest_format(&req.dest);
    return 0;
}
