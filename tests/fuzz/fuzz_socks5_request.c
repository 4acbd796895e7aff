/*
 * SOCKS5 request (RFC 1928 sections 4 and 5, with Tor's RESOLVE and RESOLVE_PTR):
 * socks5_parse_request on every split of the input and pipelined, the reply code it gives,
 * the parsed request giving back its bytes (RSV aside), and the reply encoders for the parsed
 * destination reading back as the same address.
 */
#include "config.h"

#include "ferry/socks5.h"
#include "fuzz.h"

/* Not a reply code: shows that the parser left *rep alone. */
#define REP_UNTOUCHED 0xee

static struct fuzz_parse parse(const uint8_t *buf, size_t len, void *out)
{
    struct fuzz_parse r = {0, 0, REP_UNTOUCHED};

    r.status = socks5_parse_request(buf, len, out, &r.consumed, &r.code);
    return r;
}

static bool same_dest(const struct socks_dest *x, const struct socks_dest *y)
{
    if (x->type != y->type || x->port != y->port)
        return false;
    switch (x->type) {
    case DEST_IPV4:
        return memcmp(x->ip, y->ip, 4) == 0;
    case DEST_IPV6:
        return memcmp(x->ip, y->ip, 16) == 0;
    case DEST_NAME:
        return strcmp(x->name, y->name) == 0;
    }
    return false;
}

static bool same(const void *a, const void *b)
{
    const struct socks5_request *x = a, *y = b;

    return x->cmd == y->cmd && same_dest(&x->dest, &y->dest);
}

/* The request a client would send for req, RSV 0. Returns its length. */
static size_t encode_request(const struct socks5_request *req, uint8_t *out)
{
    size_t n = 4;

    out[0] = SOCKS5_VERSION;
    out[1] = req->cmd;
    out[2] = 0;
    switch (req->dest.type) {
    case DEST_IPV4:
        out[3] = SOCKS5_ATYP_IPV4;
        memcpy(out + n, req->dest.ip, 4);
        n += 4;
        break;
    case DEST_IPV6:
        out[3] = SOCKS5_ATYP_IPV6;
        memcpy(out + n, req->dest.ip, 16);
        n += 16;
        break;
    case DEST_NAME:
        out[3] = SOCKS5_ATYP_DOMAIN;
        out[n++] = (uint8_t)strlen(req->dest.name);
        memcpy(out + n, req->dest.name, strlen(req->dest.name));
        n += strlen(req->dest.name);
        break;
    }
    out[n++] = (uint8_t)(req->dest.port >> 8);
    out[n++] = (uint8_t)(req->dest.port & 0xff);
    return n;
}

/* A reply read back with the request parser (same layout after the second byte). */
static void parse_reply(uint8_t *reply, size_t len, struct socks5_request *back)
{
    size_t consumed = 0;
    uint8_t rep = REP_UNTOUCHED;

    FUZZ_CHECK(reply[0] == SOCKS5_VERSION && reply[2] == 0);
    reply[1] = SOCKS5_CMD_CONNECT;
    FUZZ_CHECK(socks5_parse_request(reply, len, back, &consumed, &rep) == PROTO_OK);
    FUZZ_CHECK(consumed == len && rep == SOCKS5_REP_SUCCEEDED);
}

static void check_replies(const struct socks5_request *req)
{
    static const uint8_t v4mapped[12] = {[10] = 0xff, [11] = 0xff};
    uint8_t reply[SOCKS5_REPLY_MAX + 300];
    struct socks5_request back;
    struct addr a;
    size_t n;

    if (socks_dest_to_addr(&req->dest, &a) == 0) {
        struct socks_dest want = req->dest;

        FUZZ_CHECK(req->dest.type != DEST_NAME);
        FUZZ_CHECK(addr_port(&a) == req->dest.port);
        n = socks5_encode_reply(reply, SOCKS5_REP_SUCCEEDED, &a.u.sa);
        FUZZ_CHECK(n == 10 || n == 22);
        parse_reply(reply, n, &back);
        /* An IPv4-mapped IPv6 address goes out as IPv4. */
        if (want.type == DEST_IPV6 && memcmp(want.ip, v4mapped, 12) == 0) {
            want.type = DEST_IPV4;
            memmove(want.ip, want.ip + 12, 4);
            memset(want.ip + 4, 0, 12);
        }
        FUZZ_CHECK(same_dest(&back.dest, &want));
    } else {
        FUZZ_CHECK(req->dest.type == DEST_NAME);
        n = socks5_encode_reply_name(reply, sizeof(reply), SOCKS5_REP_SUCCEEDED, req->dest.name,
                                     req->dest.port);
        FUZZ_CHECK(n == 7 + strlen(req->dest.name));
        parse_reply(reply, n, &back);
        FUZZ_CHECK(same_dest(&back.dest, &req->dest));
        /* Too small a buffer is refused, not overrun. */
        FUZZ_CHECK(socks5_encode_reply_name(reply, n - 1, 0, req->dest.name, 0) == 0);
    }
    n = socks5_encode_reply(reply, SOCKS5_REP_GENERAL_FAILURE, NULL);
    FUZZ_CHECK(n == 10);
}

static void check_request(const struct socks5_request *req, uint8_t rep, const uint8_t *wire,
                          size_t len)
{
    uint8_t again[4 + 1 + 255 + 2];

    FUZZ_CHECK(rep == SOCKS5_REP_SUCCEEDED);
    FUZZ_CHECK(req->cmd == SOCKS5_CMD_CONNECT || req->cmd == SOCKS5_CMD_BIND ||
               req->cmd == SOCKS5_CMD_UDP_ASSOCIATE || req->cmd == SOCKS5_CMD_RESOLVE ||
               req->cmd == SOCKS5_CMD_RESOLVE_PTR);
    if (req->dest.type == DEST_NAME) {
        size_t n = strnlen(req->dest.name, sizeof(req->dest.name));

        FUZZ_CHECK(n >= 1 && n <= DEST_NAME_MAX);
        FUZZ_CHECK(req->cmd != SOCKS5_CMD_RESOLVE_PTR);
    }
    /* Nothing but RSV is lost: encoding the parse gives the same bytes. */
    FUZZ_CHECK(encode_request(req, again) == len);
    FUZZ_CHECK(memcmp(again, wire, 2) == 0 && memcmp(again + 3, wire + 3, len - 3) == 0);
    fuzz_check_dest_format(&req->dest);
    check_replies(req);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;

    for (int n = 0; n < 8 && off <= size; n++) {
        struct socks5_request req;
        struct fuzz_parse r =
            fuzz_check_incremental(data + off, size - off, parse, &req, sizeof(req), same);

        if (r.status == PROTO_NEED_MORE) {
            FUZZ_CHECK(r.code == REP_UNTOUCHED);
            break;
        }
        if (r.status == PROTO_ERROR) {
            FUZZ_CHECK(r.code == SOCKS5_REP_GENERAL_FAILURE ||
                       r.code == SOCKS5_REP_COMMAND_NOT_SUPPORTED ||
                       r.code == SOCKS5_REP_ADDRESS_TYPE_NOT_SUPPORTED);
            break;
        }
        check_request(&req, r.code, data + off, r.consumed);
        off += r.consumed;
    }
    return 0;
}
