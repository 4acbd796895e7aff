/* SOCKS4 and SOCKS4a wire format: pure parser and encoder, no I/O. */
#include "config.h"

#include <netinet/in.h>
#include <string.h>

#include "ferry/socks4.h"

/* Offset of USERID: VN CD DSTPORT(2) DSTIP(4). */
#define SOCKS4_USERID_OFF 8

/*
 * Find the NUL ending a string that starts at `off` and may hold at most `max` bytes.
 * Returns 0 and sets *end, 1 when more bytes are needed, -1 when the string is too long.
 */
static int find_nul(const uint8_t *buf, size_t len, size_t off, size_t max, size_t *end)
{
    size_t avail = len - off;
    const uint8_t *nul;

    if (avail > max + 1)
        avail = max + 1;
    nul = memchr(buf + off, '\0', avail);
    if (nul != NULL) {
        *end = (size_t)(nul - buf);
        return 0;
    }
    return avail > max ? -1 : 1;
}

/*
 * SOCKS4 (Ying-Da Lee, "SOCKS: A protocol for TCP proxy across firewalls") and its 4A
 * extension: a DSTIP of 0.0.0.x with x != 0 means a HOSTNAME follows the USERID's NUL.
 */
enum proto_status socks4_parse_request(const uint8_t *buf, size_t len, struct socks4_request *out,
                                       size_t *consumed)
{
    size_t user_end, host_end = 0;
    bool is_4a;
    int r;

    if (len < 1)
        return PROTO_NEED_MORE;
    if (buf[0] != SOCKS4_VERSION)
        return PROTO_ERROR;
    if (len < 2)
        return PROTO_NEED_MORE;
    if (buf[1] != SOCKS4_CMD_CONNECT && buf[1] != SOCKS4_CMD_BIND && buf[1] != SOCKS4_CMD_RESOLVE)
        return PROTO_ERROR;
    if (len < SOCKS4_USERID_OFF)
        return PROTO_NEED_MORE;
    is_4a = buf[4] == 0 && buf[5] == 0 && buf[6] == 0 && buf[7] != 0;
    /* Tor's SOCKS4a RESOLVE (doc/socks-extensions.txt) needs a HOSTNAME to look up. */
    if (buf[1] == SOCKS4_CMD_RESOLVE && !is_4a)
        return PROTO_ERROR;

    r = find_nul(buf, len, SOCKS4_USERID_OFF, SOCKS4_USERID_MAX, &user_end);
    if (r != 0)
        return r < 0 ? PROTO_ERROR : PROTO_NEED_MORE;

    if (is_4a) {
        if (len < user_end + 2)
            return PROTO_NEED_MORE;
        if (buf[user_end + 1] == '\0')
            return PROTO_ERROR; /* empty HOSTNAME */
        r = find_nul(buf, len, user_end + 1, DEST_NAME_MAX, &host_end);
        if (r != 0)
            return r < 0 ? PROTO_ERROR : PROTO_NEED_MORE;
    }

    memset(out, 0, sizeof(*out));
    out->cmd = buf[1];
    out->is_4a = is_4a;
    out->dest.port = (uint16_t)((buf[2] << 8) | buf[3]);
    memcpy(out->userid, buf + SOCKS4_USERID_OFF, user_end - SOCKS4_USERID_OFF);
    if (is_4a) {
        out->dest.type = DEST_NAME;
        memcpy(out->dest.name, buf + user_end + 1, host_end - user_end - 1);
        *consumed = host_end + 1;
    } else {
        out->dest.type = DEST_IPV4;
        memcpy(out->dest.ip, buf + 4, 4);
        *consumed = user_end + 1;
    }
    return PROTO_OK;
}

size_t socks4_encode_reply(uint8_t out[SOCKS4_REPLY_LEN], uint8_t cd, const struct sockaddr *bound)
{
    struct addr a;
    const uint8_t *ip4;

    out[0] = 0x00;
    out[1] = cd;
    memset(out + 2, 0, 6);
    /* The family says how many bytes there are; a sockaddr_in6 is the most it copies. */
    if (bound == NULL || addr_from_sockaddr(&a, bound, sizeof(struct sockaddr_in6)) < 0)
        return SOCKS4_REPLY_LEN;
    ip4 = addr_ipv4_bytes(&a);
    if (ip4 != NULL) {
        out[2] = (uint8_t)(addr_port(&a) >> 8);
        out[3] = (uint8_t)addr_port(&a);
        memcpy(out + 4, ip4, 4);
    }
    return SOCKS4_REPLY_LEN;
}

/*
 * A SOCKS4 reply carries an IPv4 address only: a client that reached us over IPv6 gets its
 * BIND port on 127.0.0.1 when it came over ::1, else on every IPv4 address, named 0.0.0.0 in
 * the reply, which SOCKS4 defines as "the address of the SOCKS server".
 */
void socks4_local_address(struct addr *local)
{
    static const uint8_t lo4[4] = {127, 0, 0, 1}, any4[4] = {0, 0, 0, 0};

    if (addr_family(local) != AF_INET6)
        return;
    addr_unmap(local);
    if (addr_family(local) == AF_INET)
        addr_set_port(local, 0);
    else
        addr_from_ipv4(local, IN6_IS_ADDR_LOOPBACK(&local->u.in6.sin6_addr) ? lo4 : any4, 0);
}
