/*
 * A SOCKS5 parent's answers as ferry reads them: the method choice, the RFC 1929 status and
 * the reply (upstream_socks5_parse_*), each on every split of the input and pipelined as a
 * parent sends them; a parsed reply names the bytes it came from.
 */
#include "config.h"

#include "ferry/socks5.h"
#include "ferry/upstream_socks.h"
#include "fuzz.h"

struct reply {
    uint8_t rep;
    struct socks_dest bound;
};

static struct fuzz_parse parse_method(const uint8_t *buf, size_t len, void *out)
{
    struct fuzz_parse r = {0, 0, 0};

    r.status = upstream_socks5_parse_method(buf, len, out, &r.consumed);
    return r;
}

static struct fuzz_parse parse_status(const uint8_t *buf, size_t len, void *out)
{
    struct fuzz_parse r = {0, 0, 0};

    r.status = upstream_socks5_parse_userpass_reply(buf, len, out, &r.consumed);
    return r;
}

static struct fuzz_parse parse_reply(const uint8_t *buf, size_t len, void *out)
{
    struct reply *x = out;
    struct fuzz_parse r = {0, 0, 0};

    r.status = upstream_socks5_parse_reply(buf, len, &x->rep, &x->bound, &r.consumed);
    return r;
}

static bool same_byte(const void *a, const void *b)
{
    return *(const uint8_t *)a == *(const uint8_t *)b;
}

static bool same_bool(const void *a, const void *b)
{
    return *(const bool *)a == *(const bool *)b;
}

static bool same_reply(const void *a, const void *b)
{
    const struct reply *x = a, *y = b;

    if (x->rep != y->rep || x->bound.type != y->bound.type || x->bound.port != y->bound.port)
        return false;
    if (x->bound.type == DEST_NAME)
        return strcmp(x->bound.name, y->bound.name) == 0;
    return memcmp(x->bound.ip, y->bound.ip, 16) == 0;
}

/* The request ferry would send for the bound address parses back to it. */
static void check_reply(const struct reply *x, size_t consumed)
{
    uint8_t out[UPSTREAM_SOCKS5_REQUEST_MAX];
    size_t n = upstream_socks5_request(out, SOCKS5_CMD_CONNECT, &x->bound);

    FUZZ_CHECK(n == consumed);
    FUZZ_CHECK(x->bound.type != DEST_NAME || strlen(x->bound.name) == (size_t)out[4]);
    fuzz_check_dest_format(&x->bound);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_parse r;
    uint8_t method;
    bool ok;
    struct reply rep;
    size_t off = 0;

    r = fuzz_check_incremental(data, size, parse_method, &method, sizeof(method), same_byte);
    if (r.status != PROTO_OK)
        return 0;
    off += r.consumed;
    if (method == SOCKS5_METHOD_USERPASS) {
        r = fuzz_check_incremental(data + off, size - off, parse_status, &ok, sizeof(ok),
                                   same_bool);
        if (r.status != PROTO_OK)
            return 0;
        off += r.consumed;
    }
    for (int n = 0; n < 2 && off <= size; n++) {
        r = fuzz_check_incremental(data + off, size - off, parse_reply, &rep, sizeof(rep),
                                   same_reply);
        if (r.status != PROTO_OK)
            break;
        check_reply(&rep, r.consumed);
        off += r.consumed;
    }
    return 0;
}
