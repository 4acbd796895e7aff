/* What the SOCKS4 and SOCKS5 wire modules share: formatting a requested destination. */
#include "config.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "ferry/proto.h"

/*
 * Copy a client-supplied name for display: bytes outside printable ASCII (and the backslash)
 * become \xHH, so a name holding a newline or escape sequence cannot forge a log line.
 */
static size_t escape_name(const char *name, char *out, size_t size)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;

    for (const unsigned char *p = (const unsigned char *)name; *p != '\0'; p++) {
        if (*p > 0x20 && *p < 0x7f && *p != '\\') {
            if (o + 1 >= size)
                break;
            out[o++] = (char)*p;
        } else {
            if (o + 4 >= size)
                break;
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 0x0f];
        }
    }
    out[o] = '\0';
    return o;
}

int socks_dest_to_addr(const struct socks_dest *d, struct addr *out)
{
    switch (d->type) {
    case DEST_IPV4:
        addr_from_ipv4(out, d->ip, d->port);
        return 0;
    case DEST_IPV6:
        addr_from_ipv6(out, d->ip, d->port);
        return 0;
    default:
        return -1;
    }
}

const char *socks_dest_format(const struct socks_dest *d, char *buf, size_t size)
{
    char host[4 * DEST_NAME_MAX + 1];

    if (size == 0)
        return buf;
    switch (d->type) {
    case DEST_IPV4:
        if (inet_ntop(AF_INET, d->ip, host, sizeof(host)) == NULL)
            break;
        snprintf(buf, size, "%s:%u", host, (unsigned)d->port);
        return buf;
    case DEST_IPV6:
        if (inet_ntop(AF_INET6, d->ip, host, sizeof(host)) == NULL)
            break;
        snprintf(buf, size, "[%s]:%u", host, (unsigned)d->port);
        return buf;
    case DEST_NAME:
        /* name is NUL-terminated by contract; memchr guards against a caller that forgot. */
        if (memchr(d->name, '\0', sizeof(d->name)) == NULL)
            break;
        escape_name(d->name, host, sizeof(host));
        snprintf(buf, size, "%s:%u", host, (unsigned)d->port);
        return buf;
    }
    snprintf(buf, size, "?");
    return buf;
}
