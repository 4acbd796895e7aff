/*
 * HTTP forwarding's framing (http_frame.h). The first byte picks what is fuzzed:
 *   0 mod 3: response heads (http_parse_response_head), capacity from the next two bytes:
 *            the split property; an OK head ends with LF within the capacity, its status is
 *            100-999, and its framing follows from its fields;
 *   1 mod 3: a body scanned by http_body_scan (chunked, or a length from the next two bytes):
 *            the bytes scanned whole and in two pieces at every split, or one byte at a time,
 *            give the same count, end and error; a body that has not ended took every byte;
 *   2 mod 3: head rewriting (http_rewrite_head) with flags and an output size from the next
 *            bytes: the output fits, starts with the start line, ends with an empty line, has
 *            no bare CR or LF, and keeps no hop-by-hop field.
 */
#include "config.h"

#include <strings.h>

#include "ferry/http_frame.h"
#include "fuzz.h"

static size_t cap;

static struct fuzz_parse parse_head(const uint8_t *buf, size_t len, void *out)
{
    struct fuzz_parse r = {0, 0, 0};

    r.status = http_parse_response_head(buf, len, cap, out, &r.consumed);
    return r;
}

static bool same_head(const void *a, const void *b)
{
    return memcmp(a, b, sizeof(struct http_response_head)) == 0;
}

static void fuzz_head(const uint8_t *data, size_t size)
{
    struct http_response_head h;
    struct fuzz_parse r;

    if (size < 2)
        return;
    cap = 1 + (((size_t)data[0] << 8 | data[1]) % 20000);
    memset(&h, 0, sizeof(h));
    r = fuzz_check_incremental(data + 2, size - 2, parse_head, &h, sizeof(h), same_head);
    if (r.status != PROTO_OK)
        return;
    FUZZ_CHECK(r.consumed <= cap && data[2 + r.consumed - 1] == '\n');
    FUZZ_CHECK(h.status >= 100 && h.status <= 999);
    FUZZ_CHECK(!h.chunked || h.coded);
    if (h.status >= 200 && h.status != 204 && h.status != 304) {
        enum http_body_kind k = http_response_framing(&h, false);

        FUZZ_CHECK(k == (h.coded ? (h.chunked ? HTTP_BODY_CHUNKED : HTTP_BODY_CLOSE)
                                 : (h.has_length ? HTTP_BODY_LENGTH : HTTP_BODY_CLOSE)));
    } else {
        FUZZ_CHECK(http_response_framing(&h, false) == HTTP_BODY_NONE);
    }
    FUZZ_CHECK(http_response_framing(&h, true) == HTTP_BODY_NONE);
}

/* The whole body scan in pieces at the given split points (step 0: at `split` only). */
static ssize_t scan(enum http_body_kind kind, uint64_t length, const uint8_t *data, size_t size,
                    size_t split, size_t step, bool *done)
{
    struct http_body b;
    size_t off = 0;

    http_body_init(&b, kind, length);
    while (off < size && !b.done) {
        size_t end = step > 0 ? off + step : (off < split ? split : size);
        uint8_t *piece;
        ssize_t n;

        if (end > size)
            end = size;
        piece = fuzz_dup(data + off, end - off);
        n = http_body_scan(&b, piece, end - off);
        free(piece);
        if (n < 0) {
            *done = false;
            return -1;
        }
        FUZZ_CHECK((size_t)n <= end - off);
        FUZZ_CHECK((size_t)n == end - off || b.done);
        off += (size_t)n;
        if (off < end)
            break;
    }
    *done = b.done;
    return (ssize_t)off;
}

static void fuzz_body(const uint8_t *data, size_t size)
{
    enum http_body_kind kind;
    uint64_t length = 0;
    bool done, d;
    ssize_t whole;

    if (size < 2)
        return;
    kind = data[0] & 1 ? HTTP_BODY_CHUNKED : HTTP_BODY_LENGTH;
    length = data[1];
    data += 2;
    size -= 2;
    whole = scan(kind, length, data, size, size, 0, &done);
    if (whole >= 0 && !done)
        FUZZ_CHECK((size_t)whole == size);
    if (kind == HTTP_BODY_LENGTH)
        FUZZ_CHECK(whole == (ssize_t)(size < length ? size : length));
    for (size_t k = 1; k < size; k++) {
        FUZZ_CHECK(scan(kind, length, data, size, k, 0, &d) == whole);
        FUZZ_CHECK(d == done);
    }
    FUZZ_CHECK(scan(kind, length, data, size, 0, 1, &d) == whole);
    FUZZ_CHECK(d == done);
}

static bool is_hop_by_hop(const uint8_t *line, size_t len)
{
    static const char *const names[] = {
        "Connection:",
        "Proxy-Connection:",
        "Keep-Alive:",
        "TE:",
        "Trailer:",
        "Upgrade:",
        "Proxy-Authorization:",
        "Proxy-Authenticate:",
        "Transfer-Encoding:",
        "Host:",
    };

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        size_t n = strlen(names[i]);

        if (len >= n && strncasecmp((const char *)line, names[i], n) == 0)
            return true;
    }
    return false;
}

static void fuzz_rewrite(const uint8_t *data, size_t size)
{
    struct http_rewrite rw = {.start = "GET / HTTP/1.1", .add = NULL};
    uint8_t *head, *out;
    size_t out_size, n, pos;

    if (size < 3)
        return;
    rw.drop_host = true;
    rw.drop_length = data[0] & 1;
    out_size = ((size_t)data[1] << 8 | data[2]) % 20000;
    data += 3;
    size -= 3;
    head = fuzz_dup(data, size);
    out = malloc(out_size > 0 ? out_size : 1);
    if (out == NULL)
        abort();
    n = http_rewrite_head(head, size, &rw, out, out_size);
    free(head);
    if (n == 0) {
        free(out);
        return;
    }
    FUZZ_CHECK(n <= out_size && n >= 18);
    FUZZ_CHECK(memcmp(out, "GET / HTTP/1.1\r\n", 16) == 0);
    FUZZ_CHECK(memcmp(out + n - 4, "\r\n\r\n", 4) == 0 || n == 18);
    /* Every line ends with CRLF and holds no other CR or LF; no field is hop-by-hop. */
    for (pos = 16; pos < n;) {
        const uint8_t *lf = memchr(out + pos, '\n', n - pos);
        size_t len;

        FUZZ_CHECK(lf != NULL && lf > out + pos && lf[-1] == '\r');
        len = (size_t)(lf - (out + pos)) - 1;
        FUZZ_CHECK(memchr(out + pos, '\r', len) == NULL);
        if (len > 0)
            FUZZ_CHECK(!is_hop_by_hop(out + pos, len));
        if (rw.drop_length && len >= 15)
            FUZZ_CHECK(strncasecmp((const char *)out + pos, "Content-Length:", 15) != 0);
        pos = (size_t)(lf - out) + 1;
    }
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 20000)
        return 0;
    switch (data[0] % 3) {
    case 0:
        fuzz_head(data + 1, size - 1);
        break;
    case 1:
        if (size <= 4096)
            fuzz_body(data + 1, size - 1);
        break;
    default:
        fuzz_rewrite(data + 1, size - 1);
        break;
    }
    return 0;
}
