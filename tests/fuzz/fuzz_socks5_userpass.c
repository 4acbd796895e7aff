/*
 * RFC 1929 username/password sub-negotiation: socks5_parse_userpass on every split of the
 * input, pipelined messages, and the parsed fields giving back the bytes they came from.
 */
#include "config.h"

#include "ferry/socks5.h"
#include "fuzz.h"

static struct fuzz_parse parse(const uint8_t *buf, size_t len, void *out)
{
    struct fuzz_parse r = {0, 0, 0};

    r.status = socks5_parse_userpass(buf, len, out, &r.consumed);
    return r;
}

static bool same(const void *a, const void *b)
{
    const struct socks5_userpass *x = a, *y = b;

    return x->user_len == y->user_len && x->pass_len == y->pass_len &&
           memcmp(x->user, y->user, x->user_len + 1) == 0 &&
           memcmp(x->pass, y->pass, x->pass_len + 1) == 0;
}

static void check_userpass(const struct socks5_userpass *up, const uint8_t *wire, size_t len)
{
    uint8_t out[2];

    FUZZ_CHECK(up->user_len <= 255 && up->pass_len <= 255);
    /* NUL-terminated copies that hold no NUL: the names a verifier sees are the whole fields. */
    FUZZ_CHECK(strlen(up->user) == up->user_len && strlen(up->pass) == up->pass_len);
    FUZZ_CHECK(len == 3 + up->user_len + up->pass_len);
    FUZZ_CHECK(wire[0] == SOCKS5_USERPASS_VERSION && wire[1] == up->user_len);
    FUZZ_CHECK(memcmp(wire + 2, up->user, up->user_len) == 0);
    FUZZ_CHECK(wire[2 + up->user_len] == up->pass_len);
    FUZZ_CHECK(memcmp(wire + 3 + up->user_len, up->pass, up->pass_len) == 0);
    FUZZ_CHECK(socks5_encode_userpass_reply(out, SOCKS5_USERPASS_FAIL) == 2);
    FUZZ_CHECK(out[0] == SOCKS5_USERPASS_VERSION && out[1] == SOCKS5_USERPASS_FAIL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;

    for (int n = 0; n < 8 && off <= size; n++) {
        struct socks5_userpass up;
        struct fuzz_parse r =
            fuzz_check_incremental(data + off, size - off, parse, &up, sizeof(up), same);

        if (r.status != PROTO_OK)
            break;
        check_userpass(&up, data + off, r.consumed);
        off += r.consumed;
    }
    return 0;
}
