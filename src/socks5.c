/* SOCKS5 wire format (RFC 1928, RFC 1929): pure parsers and encoders, no I/O. */
#include "config.h"

#include <netinet/in.h>
#include <string.h>

#include "ferry/socks5.h"

static void put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static uint16_t get_be16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

/* RFC 1928 section 3: VER(5) NMETHODS METHODS[NMETHODS]. */
enum proto_status socks5_parse_greeting(const uint8_t *buf, size_t len, struct socks5_greeting *out,
                                        size_t *consumed)
{
    size_t n;

    if (len < 1)
        return PROTO_NEED_MORE;
    if (buf[0] != SOCKS5_VERSION)
        return PROTO_ERROR;
    if (len < 2)
        return PROTO_NEED_MORE;
    n = buf[1];
    if (len < 2 + n)
        return PROTO_NEED_MORE;
    out->nmethods = (uint8_t)n;
    memcpy(out->methods, buf + 2, n);
    *consumed = 2 + n;
    return PROTO_OK;
}

uint8_t socks5_choose_method(const struct socks5_greeting *g, const uint8_t *preferred, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (preferred[i] == SOCKS5_METHOD_NONE)
            continue;
        if (memchr(g->methods, preferred[i], g->nmethods) != NULL)
            return preferred[i];
    }
    return SOCKS5_METHOD_NONE;
}

size_t socks5_encode_method(uint8_t out[2], uint8_t method)
{
    out[0] = SOCKS5_VERSION;
    out[1] = method;
    return 2;
}

/*
 * RFC 1929 section 2: VER(1) ULEN UNAME PLEN PASSWD. A NUL byte inside either field is an
 * error: the NUL-terminated copies would otherwise silently name a shorter user or password.
 */
enum proto_status socks5_parse_userpass(const uint8_t *buf, size_t len, struct socks5_userpass *out,
                                        size_t *consumed)
{
    size_t ulen, plen, avail;

    if (len < 1)
        return PROTO_NEED_MORE;
    if (buf[0] != SOCKS5_USERPASS_VERSION)
        return PROTO_ERROR;
    if (len < 2)
        return PROTO_NEED_MORE;
    ulen = buf[1];
    avail = len - 2 < ulen ? len - 2 : ulen;
    if (memchr(buf + 2, '\0', avail) != NULL)
        return PROTO_ERROR;
    if (len < 2 + ulen + 1)
        return PROTO_NEED_MORE;
    plen = buf[2 + ulen];
    avail = len - 3 - ulen < plen ? len - 3 - ulen : plen;
    if (memchr(buf + 3 + ulen, '\0', avail) != NULL)
        return PROTO_ERROR;
    if (len < 3 + ulen + plen)
        return PROTO_NEED_MORE;

    out->user_len = ulen;
    memcpy(out->user, buf + 2, ulen);
    out->user[ulen] = '\0';
    out->pass_len = plen;
    memcpy(out->pass, buf + 3 + ulen, plen);
    out->pass[plen] = '\0';
    *consumed = 3 + ulen + plen;
    return PROTO_OK;
}

size_t socks5_encode_userpass_reply(uint8_t out[2], uint8_t status)
{
    out[0] = SOCKS5_USERPASS_VERSION;
    out[1] = status;
    return 2;
}

static enum proto_status request_error(uint8_t *rep, uint8_t code)
{
    if (rep != NULL)
        *rep = code;
    return PROTO_ERROR;
}

/* RFC 1928 section 4 commands, plus Tor's RESOLVE and RESOLVE_PTR extensions. */
static bool known_cmd(uint8_t cmd)
{
    switch (cmd) {
    case SOCKS5_CMD_CONNECT:
    case SOCKS5_CMD_BIND:
    case SOCKS5_CMD_UDP_ASSOCIATE:
    case SOCKS5_CMD_RESOLVE:
    case SOCKS5_CMD_RESOLVE_PTR:
        return true;
    default:
        return false;
    }
}

enum proto_status socks5_parse_address(const uint8_t *buf, size_t len, struct socks_dest *out,
                                       size_t *consumed, uint8_t *rep)
{
    size_t addr_off = 1, addr_len, total;
    enum dest_type type;

    if (len < 1)
        return PROTO_NEED_MORE;
    switch (buf[0]) {
    case SOCKS5_ATYP_IPV4:
        type = DEST_IPV4;
        addr_len = 4;
        break;
    case SOCKS5_ATYP_IPV6:
        type = DEST_IPV6;
        addr_len = 16;
        break;
    case SOCKS5_ATYP_DOMAIN:
        type = DEST_NAME;
        if (len < 2)
            return PROTO_NEED_MORE;
        addr_len = buf[1];
        addr_off = 2;
        if (addr_len == 0)
            return request_error(rep, SOCKS5_REP_GENERAL_FAILURE);
        if (memchr(buf + 2, '\0', len - 2 < addr_len ? len - 2 : addr_len) != NULL)
            return request_error(rep, SOCKS5_REP_GENERAL_FAILURE);
        break;
    default:
        return request_error(rep, SOCKS5_REP_ADDRESS_TYPE_NOT_SUPPORTED);
    }
    total = addr_off + addr_len + 2;
    if (len < total)
        return PROTO_NEED_MORE;
    memset(out, 0, sizeof(*out));
    out->type = type;
    if (type == DEST_NAME) {
        memcpy(out->name, buf + addr_off, addr_len);
        out->name[addr_len] = '\0';
    } else {
        memcpy(out->ip, buf + addr_off, addr_len);
    }
    out->port = get_be16(buf + addr_off + addr_len);
    *consumed = total;
    return PROTO_OK;
}

/*
 * RFC 1928 section 4: VER CMD RSV ATYP DST.ADDR DST.PORT; section 5 for the address forms.
 * Each field is judged as soon as it is in the buffer, so a bad request is refused at once.
 */
enum proto_status socks5_parse_request(const uint8_t *buf, size_t len, struct socks5_request *out,
                                       size_t *consumed, uint8_t *rep)
{
    struct socks_dest dest;
    enum proto_status st;
    size_t used;

    if (len < 1)
        return PROTO_NEED_MORE;
    if (buf[0] != SOCKS5_VERSION)
        return request_error(rep, SOCKS5_REP_GENERAL_FAILURE);
    if (len < 2)
        return PROTO_NEED_MORE;
    if (!known_cmd(buf[1]))
        return request_error(rep, SOCKS5_REP_COMMAND_NOT_SUPPORTED);
    /* buf[2] is RSV: RFC 1928 says it must be 0, but nothing depends on it, so it is ignored. */
    if (len < 4)
        return PROTO_NEED_MORE;
    /* Tor's RESOLVE_PTR (doc/socks-extensions.txt) looks up an address, never a name. */
    if (buf[3] == SOCKS5_ATYP_DOMAIN && buf[1] == SOCKS5_CMD_RESOLVE_PTR)
        return request_error(rep, SOCKS5_REP_ADDRESS_TYPE_NOT_SUPPORTED);
    st = socks5_parse_address(buf + 3, len - 3, &dest, &used, rep);
    if (st != PROTO_OK)
        return st;
    memset(out, 0, sizeof(*out));
    out->cmd = buf[1];
    out->dest = dest;
    *consumed = 3 + used;
    if (rep != NULL)
        *rep = SOCKS5_REP_SUCCEEDED;
    return PROTO_OK;
}

/*
 * ATYP ADDR PORT at out (out[0] is ATYP) for an IPv4 or IPv6 address, an IPv4-mapped one as
 * IPv4. Returns the bytes written (7 or 19), or 0 for another family.
 */
static size_t encode_address(uint8_t *out, const struct sockaddr *sa)
{
    struct addr a;
    const uint8_t *ip4;

    /* The family says how many bytes there are; a sockaddr_in6 is the most it copies. */
    if (addr_from_sockaddr(&a, sa, sizeof(struct sockaddr_in6)) < 0)
        return 0;
    ip4 = addr_ipv4_bytes(&a);
    if (ip4 != NULL) {
        out[0] = SOCKS5_ATYP_IPV4;
        memcpy(out + 1, ip4, 4);
        put_be16(out + 5, addr_port(&a));
        return 7;
    }
    out[0] = SOCKS5_ATYP_IPV6;
    memcpy(out + 1, a.u.in6.sin6_addr.s6_addr, 16);
    put_be16(out + 17, addr_port(&a));
    return 19;
}

/* RFC 1928 section 6. BND.ADDR is IPv4 unless the bound address is a real IPv6 one. */
size_t socks5_encode_reply(uint8_t out[SOCKS5_REPLY_MAX], uint8_t rep, const struct sockaddr *bound)
{
    size_t n = bound != NULL ? encode_address(out + 3, bound) : 0;

    out[0] = SOCKS5_VERSION;
    out[1] = rep;
    out[2] = 0x00;
    if (n == 0) {
        /* Nothing to name: 0.0.0.0:0. */
        out[3] = SOCKS5_ATYP_IPV4;
        memset(out + 4, 0, 6);
        n = 7;
    }
    return 3 + n;
}

/* Tor's RESOLVE_PTR answer (doc/socks-extensions.txt): the name in the BND.ADDR field, ATYP 3. */
size_t socks5_encode_reply_name(uint8_t *out, size_t size, uint8_t rep, const char *name,
                                uint16_t port)
{
    size_t n = strlen(name);

    if (n == 0 || n > 255 || size < 7 + n)
        return 0;
    out[0] = SOCKS5_VERSION;
    out[1] = rep;
    out[2] = 0x00;
    out[3] = SOCKS5_ATYP_DOMAIN;
    out[4] = (uint8_t)n;
    memcpy(out + 5, name, n);
    put_be16(out + 5 + n, port);
    return 7 + n;
}

/*
 * RFC 1928 section 7: RSV(2) FRAG ATYP DST.ADDR DST.PORT DATA. A datagram arrives whole, so
 * anything short of a complete header is an error. RSV is ignored as in requests.
 */
enum proto_status socks5_parse_udp_header(const uint8_t *buf, size_t len,
                                          struct socks5_udp_header *out, size_t *hdrlen)
{
    size_t addr_off = 4, addr_len, total;
    enum dest_type type;

    if (len < 4)
        return PROTO_ERROR;
    switch (buf[3]) {
    case SOCKS5_ATYP_IPV4:
        type = DEST_IPV4;
        addr_len = 4;
        break;
    case SOCKS5_ATYP_IPV6:
        type = DEST_IPV6;
        addr_len = 16;
        break;
    case SOCKS5_ATYP_DOMAIN:
        type = DEST_NAME;
        if (len < 5)
            return PROTO_ERROR;
        addr_len = buf[4];
        addr_off = 5;
        if (addr_len == 0)
            return PROTO_ERROR;
        break;
    default:
        return PROTO_ERROR;
    }
    total = addr_off + addr_len + 2;
    if (len < total)
        return PROTO_ERROR;
    if (type == DEST_NAME && memchr(buf + addr_off, '\0', addr_len) != NULL)
        return PROTO_ERROR;

    memset(out, 0, sizeof(*out));
    out->frag = buf[2];
    out->dest.type = type;
    if (type == DEST_NAME) {
        memcpy(out->dest.name, buf + addr_off, addr_len);
        out->dest.name[addr_len] = '\0';
    } else {
        memcpy(out->dest.ip, buf + addr_off, addr_len);
    }
    out->dest.port = get_be16(buf + addr_off + addr_len);
    *hdrlen = total;
    return PROTO_OK;
}

/* RFC 1928 section 7 header naming the sender of a datagram relayed to the client. */
size_t socks5_encode_udp_header(uint8_t out[22], const struct sockaddr *from)
{
    size_t n = encode_address(out + 3, from);

    out[0] = 0x00;
    out[1] = 0x00;
    out[2] = 0x00; /* FRAG: we never fragment */
    return n == 0 ? 0 : 3 + n;
}
