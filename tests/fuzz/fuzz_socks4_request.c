/*
 * SOCKS4 and SOCKS4a requests: socks4_parse_request on every split of the input and
 * pipelined, the parsed request giving back its bytes (the x of a 4a 0.0.0.x aside), and the
 * reply encoder for the parsed address.
 */
#include "config.h"

#include "ferry/socks4.h"
#include "fuzz.h"

static struct fuzz_parse parse(const uint8_t *buf, size_t len, void *out)
{
    struct fuzz_parse r = {0, 0, 0};

    r.status = socks4_parse_request(buf, len, out, &r.consumed);
    return r;
}

static bool same(const void *a, const void *b)
{
    const struct socks4_request *x = a, *y = b;

    if (x->cmd != y->cmd || x->is_4a != y->is_4a || strcmp(x->userid, y->userid) != 0)
        return false;
    if (x->dest.type != y->dest.type || x->dest.port != y->dest.port)
        return false;
    if (x->dest.type == DEST_NAME)
        return strcmp(x->dest.name, y->dest.name) == 0;
    return memcmp(x->dest.ip, y->dest.ip, 4) == 0;
}

/* The request bytes for req; a 4a request gets DSTIP 0.0.0.x with the given x. */
static size_t encode_request(const struct socks4_request *req, uint8_t x, uint8_t *out)
{
    size_t n = 8, ulen = strlen(req->userid);

    out[0] = SOCKS4_VERSION;
    out[1] = req->cmd;
    out[2] = (uint8_t)(req->dest.port >> 8);
    out[3] = (uint8_t)(req->dest.port & 0xff);
    if (req->is_4a) {
        memset(out + 4, 0, 3);
        out[7] = x;
    } else {
        memcpy(out + 4, req->dest.ip, 4);
    }
    memcpy(out + n, req->userid, ulen + 1);
    n += ulen + 1;
    if (req->is_4a) {
        size_t hlen = strlen(req->dest.name);

        memcpy(out + n, req->dest.name, hlen + 1);
        n += hlen + 1;
    }
    return n;
}

static void check_reply(const struct socks4_request *req)
{
    uint8_t out[SOCKS4_REPLY_LEN];
    struct addr a;

    FUZZ_CHECK(socks4_encode_reply(out, SOCKS4_CD_REJECTED, NULL) == SOCKS4_REPLY_LEN);
    FUZZ_CHECK(out[0] == 0 && out[1] == SOCKS4_CD_REJECTED);
    if (socks_dest_to_addr(&req->dest, &a) != 0) {
        FUZZ_CHECK(req->dest.type == DEST_NAME);
        return;
    }
    FUZZ_CHECK(socks4_encode_reply(out, SOCKS4_CD_GRANTED, &a.u.sa) == SOCKS4_REPLY_LEN);
    FUZZ_CHECK(out[0] == 0 && out[1] == SOCKS4_CD_GRANTED);
    FUZZ_CHECK(out[2] == (uint8_t)(req->dest.port >> 8) && out[3] == (uint8_t)req->dest.port);
    FUZZ_CHECK(memcmp(out + 4, req->dest.ip, 4) == 0);
}

static void check_request(const struct socks4_request *req, const uint8_t *wire, size_t len)
{
    uint8_t again[8 + SOCKS4_USERID_MAX + 1 + DEST_NAME_MAX + 1];
    size_t ulen = strnlen(req->userid, sizeof(req->userid));

    FUZZ_CHECK(ulen <= SOCKS4_USERID_MAX);
    FUZZ_CHECK(req->cmd == SOCKS4_CMD_CONNECT || req->cmd == SOCKS4_CMD_BIND ||
               req->cmd == SOCKS4_CMD_RESOLVE);
    if (req->cmd == SOCKS4_CMD_RESOLVE)
        FUZZ_CHECK(req->is_4a);
    if (req->is_4a) {
        size_t hlen = strnlen(req->dest.name, sizeof(req->dest.name));

        FUZZ_CHECK(req->dest.type == DEST_NAME);
        FUZZ_CHECK(hlen >= 1 && hlen <= DEST_NAME_MAX);
        FUZZ_CHECK(wire[4] == 0 && wire[5] == 0 && wire[6] == 0 && wire[7] != 0);
    } else {
        FUZZ_CHECK(req->dest.type == DEST_IPV4);
    }
    FUZZ_CHECK(encode_request(req, wire[7], again) == len);
    FUZZ_CHECK(memcmp(again, wire, len) == 0);
    fuzz_check_dest_format(&req->dest);
    check_reply(req);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;

    for (int n = 0; n < 8 && off <= size; n++) {
        struct socks4_request req;
        struct fuzz_parse r =
            fuzz_check_incremental(data + off, size - off, parse, &req, sizeof(req), same);

        if (r.status != PROTO_OK)
            break;
        check_request(&req, data + off, r.consumed);
        off += r.consumed;
    }
    return 0;
}
