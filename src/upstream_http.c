/* HTTP CONNECT, client side (upstream_http.h): the request head and the response head parser. */
#include "config.h"

#include <arpa/inet.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "ferry/socks5.h"
#include "ferry/upstream_http.h"

/* A host name byte that may go into a request target as is: visible ASCII, no delimiters. */
static bool host_byte_ok(unsigned char c)
{
    return c > 0x20 && c < 0x7f && strchr("/?#@[]:\\\"<>{}|^`%", c) == NULL;
}

/* host:port of dest into out (IPv6 bracketed). Returns the length, or 0. */
static size_t format_authority(char *out, size_t size, const struct socks_dest *dest)
{
    char host[INET6_ADDRSTRLEN];
    int n;

    switch (dest->type) {
    case DEST_IPV4:
        inet_ntop(AF_INET, dest->ip, host, sizeof(host));
        n = snprintf(out, size, "%s:%u", host, dest->port);
        break;
    case DEST_IPV6:
        inet_ntop(AF_INET6, dest->ip, host, sizeof(host));
        n = snprintf(out, size, "[%s]:%u", host, dest->port);
        break;
    default:
        for (const char *p = dest->name; *p != '\0'; p++) {
            if (!host_byte_ok((unsigned char)*p))
                return 0;
        }
        if (dest->name[0] == '\0')
            return 0;
        n = snprintf(out, size, "%s:%u", dest->name, dest->port);
        break;
    }
    return n > 0 && (size_t)n < size ? (size_t)n : 0;
}

size_t upstream_http_connect(char *out, size_t size, const struct socks_dest *dest,
                             const char *user, const char *pass)
{
    char authority[DEST_NAME_MAX + 16];
    char cred[512], b64[700];
    size_t alen = format_authority(authority, sizeof(authority), dest);
    int n;

    if (alen == 0)
        return 0;
    if (user == NULL) {
        n = snprintf(out, size, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", authority, authority);
    } else {
        size_t ulen = strlen(user), plen = pass != NULL ? strlen(pass) : 0;

        /* RFC 7617 section 2: the user-id cannot contain ':'; neither may carry controls. */
        if (ulen > 255 || plen > 255 || strchr(user, ':') != NULL)
            return 0;
        for (size_t i = 0; i < ulen; i++) {
            if ((unsigned char)user[i] < 0x20 || user[i] == 0x7f)
                return 0;
        }
        for (size_t i = 0; i < plen; i++) {
            if ((unsigned char)pass[i] < 0x20 || pass[i] == 0x7f)
                return 0;
        }
        memcpy(cred, user, ulen);
        cred[ulen] = ':';
        memcpy(cred + ulen + 1, pass != NULL ? pass : "", plen);
        sodium_bin2base64(b64, sizeof(b64), (const unsigned char *)cred, ulen + 1 + plen,
                          sodium_base64_VARIANT_ORIGINAL);
        sodium_memzero(cred, sizeof(cred));
        n = snprintf(out, size,
                     "CONNECT %s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: Basic %s\r\n\r\n",
                     authority, authority, b64);
        sodium_memzero(b64, sizeof(b64));
    }
    if (n <= 0 || (size_t)n >= size) {
        if (size > 0)
            sodium_memzero(out, size);
        return 0;
    }
    return (size_t)n;
}

static bool is_digit(uint8_t c)
{
    return c >= '0' && c <= '9';
}

/*
 * The status line "HTTP/D.D SSS[ reason]" in line[0..len) (the line ending cut). Returns the
 * status, or -1. The prefix check makes a wrong protocol an error as soon as it shows.
 */
static int parse_status_line(const uint8_t *line, size_t len)
{
    if (len < 12 || memcmp(line, "HTTP/", 5) != 0 || !is_digit(line[5]) || line[6] != '.' ||
        !is_digit(line[7]) || line[8] != ' ' || !is_digit(line[9]) || !is_digit(line[10]) ||
        !is_digit(line[11]) || (len > 12 && line[12] != ' '))
        return -1;
    return (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
}

/* Whether buf[0..len) can still begin a status line ("HTTP/D.D SSS"). */
static bool status_prefix_ok(const uint8_t *buf, size_t len)
{
    static const char shape[] = "HTTP/9.9 999";

    for (size_t i = 0; i < len && i < sizeof(shape) - 1; i++) {
        if (shape[i] == '9' ? !is_digit(buf[i]) : buf[i] != (uint8_t)shape[i])
            return false;
    }
    return true;
}

enum proto_status upstream_http_parse_response(const uint8_t *buf, size_t len, int *status,
                                               size_t *consumed)
{
    size_t head = 0; /* where the head being read begins */
    size_t limit = len < UPSTREAM_HTTP_HEAD_MAX ? len : UPSTREAM_HTTP_HEAD_MAX;

    for (;;) {
        size_t pos = head;
        int st = -1;

        if (!status_prefix_ok(buf + head, limit - head))
            return PROTO_ERROR;
        for (;;) {
            const uint8_t *nl = memchr(buf + pos, '\n', limit - pos);
            size_t line_len;

            if (nl == NULL)
                return len >= UPSTREAM_HTTP_HEAD_MAX ? PROTO_ERROR : PROTO_NEED_MORE;
            line_len = (size_t)(nl - (buf + pos));
            if (line_len > 0 && buf[pos + line_len - 1] == '\r')
                line_len--;
            if (pos == head) {
                st = parse_status_line(buf + pos, line_len);
                if (st < 0)
                    return PROTO_ERROR;
            } else if (line_len == 0) {
                pos = (size_t)(nl - buf) + 1;
                break;
            }
            pos = (size_t)(nl - buf) + 1;
        }
        /* Interim 1xx heads come before the final one (RFC 9110 section 15.2); 101 is final. */
        if (st >= 100 && st < 200 && st != 101) {
            head = pos;
            continue;
        }
        *status = st;
        *consumed = pos;
        return PROTO_OK;
    }
}

uint8_t upstream_http_rep(int status)
{
    if (status >= 200 && status < 300)
        return SOCKS5_REP_SUCCEEDED;
    switch (status) {
    case 403:
    case 407:
        return SOCKS5_REP_NOT_ALLOWED;
    case 504:
        return SOCKS5_REP_TTL_EXPIRED;
    case 404:
    case 502:
    case 503:
        return SOCKS5_REP_HOST_UNREACHABLE;
    default:
        return SOCKS5_REP_GENERAL_FAILURE;
    }
}
