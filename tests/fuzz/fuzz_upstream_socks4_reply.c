/*
 * A SOCKS4 parent's replies (upstream_socks4_parse_reply) on every split and pipelined (BIND
 * sends two); the reply code is always one of the mapped SOCKS5 codes.
 */
#include "config.h"

#include "ferry/socks5.h"
#include "ferry/upstream_socks.h"
#include "fuzz.h"

struct reply {
    uint8_t rep;
    struct socks_dest bound;
};

static struct fuzz_parse parse(const uint8_t *buf, size_t len, void *out)
{
    struct reply *x = out;
    struct fuzz_parse r = {0, 0, 0};

    r.status = upstream_socks4_parse_reply(buf, len, &x->rep, &x->bound, &r.consumed);
    return r;
}

static bool same(const void *a, const void *b)
{
    const struct reply *x = a, *y = b;

    return x->rep == y->rep && x->bound.port == y->bound.port &&
           memcmp(x->bound.ip, y->bound.ip, 4) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;

    for (int n = 0; n < 2 && off <= size; n++) {
        struct reply rep;
        struct fuzz_parse r =
            fuzz_check_incremental(data + off, size - off, parse, &rep, sizeof(rep), same);

        if (r.status != PROTO_OK)
            break;
        FUZZ_CHECK(r.consumed == 8);
        FUZZ_CHECK(rep.rep == SOCKS5_REP_SUCCEEDED || rep.rep == SOCKS5_REP_GENERAL_FAILURE ||
                   rep.rep == SOCKS5_REP_NOT_ALLOWED);
        FUZZ_CHECK((rep.rep == SOCKS5_REP_SUCCEEDED) == (data[off + 1] == 90));
        off += r.consumed;
    }
    return 0;
}
