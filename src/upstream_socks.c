/* SOCKS5 and SOCKS4a, client side (upstream_socks.h): pure encoders and parsers, no I/O. */
#include "config.h"

#include <string.h>

#include "ferry/socks4.h"
#include "ferry/socks5.h"
#include "ferry/upstream_socks.h"

static void put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static uint16_t get_be16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

size_t upstream_socks5_greeting(uint8_t out[4], bool userpass)
{
    out[0] = SOCKS5_VERSION;
    out[1] = userpass ? 2 : 1;
    out[2] = SOCKS5_METHOD_NOAUTH;
    if (!userpass)
        return 3;
    out[3] = SOCKS5_METHOD_USERPASS;
    return 4;
}

enum proto_status upstream_socks5_parse_method(const uint8_t *buf, size_t len, uint8_t *method,
                                               size_t *consumed)
{
    if (len < 1)
        return PROTO_NEED_MORE;
    if (buf[0] != SOCKS5_VERSION)
        return PROTO_ERROR;
    if (len < 2)
        return PROTO_NEED_MORE;
    *method = buf[1];
    *consumed = 2;
    return PROTO_OK;
}

size_t upstream_socks5_userpass(uint8_t out[UPSTREAM_SOCKS5_USERPASS_MAX], const char *user,
                                const char *pass)
{
    size_t ulen = strlen(user), plen = strlen(pass);

    /* RFC 1929: ULEN and PLEN are 1 to 255. */
    if (ulen == 0 || ulen > 255 || plen == 0 || plen > 255)
        return 0;
    out[0] = SOCKS5_USERPASS_VERSION;
    out[1] = (uint8_t)ulen;
    memcpy(out + 2, user, ulen);
    out[2 + ulen] = (uint8_t)plen;
    memcpy(out + 3 + ulen, pass, plen);
    return 3 + ulen + plen;
}

enum proto_status upstream_socks5_parse_userpass_reply(const uint8_t *buf, size_t len, bool *ok,
                                                       size_t *consumed)
{
    if (len < 1)
        return PROTO_NEED_MORE;
    if (buf[0] != SOCKS5_USERPASS_VERSION && buf[0] != SOCKS5_VERSION)
        return PROTO_ERROR;
    if (len < 2)
        return PROTO_NEED_MORE;
    *ok = buf[1] == SOCKS5_USERPASS_OK;
    *consumed = 2;
    return PROTO_OK;
}

size_t upstream_socks5_request(uint8_t out[UPSTREAM_SOCKS5_REQUEST_MAX], uint8_t cmd,
                               const struct socks_dest *dest)
{
    size_t n;

    out[0] = SOCKS5_VERSION;
    out[1] = cmd;
    out[2] = 0x00;
    switch (dest->type) {
    case DEST_IPV4:
        out[3] = SOCKS5_ATYP_IPV4;
        memcpy(out + 4, dest->ip, 4);
        n = 8;
        break;
    case DEST_IPV6:
        out[3] = SOCKS5_ATYP_IPV6;
        memcpy(out + 4, dest->ip, 16);
        n = 20;
        break;
    default: {
        size_t nlen = strnlen(dest->name, DEST_NAME_MAX);

        out[3] = SOCKS5_ATYP_DOMAIN;
        out[4] = (uint8_t)nlen;
        memcpy(out + 5, dest->name, nlen);
        n = 5 + nlen;
        break;
    }
    }
    put_be16(out + n, dest->port);
    return n + 2;
}

enum proto_status upstream_socks5_parse_reply(const uint8_t *buf, size_t len, uint8_t *rep,
                                              struct socks_dest *bound, size_t *consumed)
{
    enum proto_status st;
    size_t used;

    if (len < 1)
        return PROTO_NEED_MORE;
    if (buf[0] != SOCKS5_VERSION)
        return PROTO_ERROR;
    if (len < 4)
        return PROTO_NEED_MORE;
    /* buf[2] is RSV: ignored, as on the server side. */
    st = socks5_parse_address(buf + 3, len - 3, bound, &used, NULL);
    if (st != PROTO_OK)
        return st;
    *rep = buf[1];
    *consumed = 3 + used;
    return PROTO_OK;
}

size_t upstream_socks4_request(uint8_t out[UPSTREAM_SOCKS4_REQUEST_MAX], uint8_t cmd,
                               const struct socks_dest *dest, const char *userid)
{
    size_t ulen = userid != NULL ? strlen(userid) : 0, n;

    if (dest->type == DEST_IPV6 || ulen > SOCKS4_USERID_MAX)
        return 0;
    out[0] = SOCKS4_VERSION;
    out[1] = cmd;
    put_be16(out + 2, dest->port);
    if (dest->type == DEST_IPV4) {
        memcpy(out + 4, dest->ip, 4);
    } else {
        /* SOCKS4a: DSTIP 0.0.0.x with x != 0 says a name follows the USERID. */
        static const uint8_t marker[4] = {0, 0, 0, 1};
        memcpy(out + 4, marker, 4);
    }
    memcpy(out + 8, userid != NULL ? userid : "", ulen);
    out[8 + ulen] = '\0';
    n = 9 + ulen;
    if (dest->type == DEST_NAME) {
        size_t nlen = strnlen(dest->name, DEST_NAME_MAX);

        memcpy(out + n, dest->name, nlen);
        out[n + nlen] = '\0';
        n += nlen + 1;
    }
    return n;
}

enum proto_status upstream_socks4_parse_reply(const uint8_t *buf, size_t len, uint8_t *rep,
                                              struct socks_dest *bound, size_t *consumed)
{
    if (len < 1)
        return PROTO_NEED_MORE;
    if (buf[0] != 0 && buf[0] != SOCKS4_VERSION)
        return PROTO_ERROR;
    if (len < SOCKS4_REPLY_LEN)
        return PROTO_NEED_MORE;
    switch (buf[1]) {
    case SOCKS4_CD_GRANTED:
        *rep = SOCKS5_REP_SUCCEEDED;
        break;
    case SOCKS4_CD_NO_IDENTD:
    case SOCKS4_CD_IDENT_MISMATCH:
        *rep = SOCKS5_REP_NOT_ALLOWED;
        break;
    default:
        *rep = SOCKS5_REP_GENERAL_FAILURE;
        break;
    }
    memset(bound, 0, sizeof(*bound));
    bound->type = DEST_IPV4;
    bound->port = get_be16(buf + 2);
    memcpy(bound->ip, buf + 4, 4);
    *consumed = SOCKS4_REPLY_LEN;
    return PROTO_OK;
}
