/*
 * SOCKS5 greeting (RFC 1928 section 3): socks5_parse_greeting on every split of the input,
 * messages pipelined back to back, socks5_choose_method on what parsed, and the encoding of a
 * parsed greeting giving back the bytes it came from.
 */
#include "config.h"

#include "ferry/socks5.h"
#include "fuzz.h"

static struct fuzz_parse parse(const uint8_t *buf, size_t len, void *out)
{
    struct fuzz_parse r = {0, 0, 0};

    r.status = socks5_parse_greeting(buf, len, out, &r.consumed);
    return r;
}

static bool same(const void *a, const void *b)
{
    const struct socks5_greeting *x = a, *y = b;

    return x->nmethods == y->nmethods && memcmp(x->methods, y->methods, x->nmethods) == 0;
}

static void check_greeting(const struct socks5_greeting *g, const uint8_t *wire, size_t len)
{
    static const uint8_t prefs[][3] = {
        {SOCKS5_METHOD_NOAUTH, SOCKS5_METHOD_USERPASS, SOCKS5_METHOD_NONE},
        {SOCKS5_METHOD_USERPASS, SOCKS5_METHOD_NOAUTH, SOCKS5_METHOD_NONE},
        {SOCKS5_METHOD_NONE, SOCKS5_METHOD_NONE, SOCKS5_METHOD_NONE},
    };
    uint8_t out[2];

    /* VER NMETHODS METHODS: nothing is dropped by the parse. */
    FUZZ_CHECK(len == 2 + (size_t)g->nmethods);
    FUZZ_CHECK(wire[0] == SOCKS5_VERSION && wire[1] == g->nmethods);
    FUZZ_CHECK(memcmp(wire + 2, g->methods, g->nmethods) == 0);

    for (size_t i = 0; i < sizeof(prefs) / sizeof(prefs[0]); i++) {
        for (size_t n = 0; n <= 3; n++) {
            uint8_t m = socks5_choose_method(g, prefs[i], n);

            /* The choice is a method both sides named, and never 0xff by selection. */
            if (m != SOCKS5_METHOD_NONE) {
                FUZZ_CHECK(memchr(prefs[i], m, n) != NULL);
                FUZZ_CHECK(memchr(g->methods, m, g->nmethods) != NULL);
            }
        }
    }
    FUZZ_CHECK(socks5_encode_method(out, SOCKS5_METHOD_USERPASS) == 2);
    FUZZ_CHECK(out[0] == SOCKS5_VERSION && out[1] == SOCKS5_METHOD_USERPASS);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;

    /* Pipelined: a client may send the next message in the same segment. */
    for (int n = 0; n < 8 && off <= size; n++) {
        struct socks5_greeting g;
        struct fuzz_parse r =
            fuzz_check_incremental(data + off, size - off, parse, &g, sizeof(g), same);

        if (r.status != PROTO_OK)
            break;
        check_greeting(&g, data + off, r.consumed);
        off += r.consumed;
    }
    return 0;
}
