/* Socket address helpers: one struct for IPv4 and IPv6, parsing and formatting. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "ferry/addr.h"

void addr_from_ipv4(struct addr *a, const uint8_t ip[4], uint16_t port)
{
    memset(a, 0, sizeof(*a));
    a->u.in4.sin_family = AF_INET;
    a->u.in4.sin_port = htons(port);
    memcpy(&a->u.in4.sin_addr, ip, 4);
    a->len = sizeof(struct sockaddr_in);
}

void addr_from_ipv6(struct addr *a, const uint8_t ip[16], uint16_t port)
{
    memset(a, 0, sizeof(*a));
    a->u.in6.sin6_family = AF_INET6;
    a->u.in6.sin6_port = htons(port);
    memcpy(&a->u.in6.sin6_addr, ip, 16);
    a->len = sizeof(struct sockaddr_in6);
}

int addr_from_sockaddr(struct addr *a, const struct sockaddr *sa, socklen_t len)
{
    size_t need;

    if (sa == NULL) {
        errno = EINVAL;
        return -1;
    }
    if (sa->sa_family == AF_INET) {
        need = sizeof(struct sockaddr_in);
    } else if (sa->sa_family == AF_INET6) {
        need = sizeof(struct sockaddr_in6);
    } else {
        errno = EAFNOSUPPORT;
        return -1;
    }
    if ((size_t)len < need) {
        errno = EINVAL;
        return -1;
    }
    memset(a, 0, sizeof(*a));
    memcpy(&a->u, sa, need);
    a->len = (socklen_t)need;
    return 0;
}

int addr_family(const struct addr *a)
{
    return a->u.sa.sa_family;
}

uint16_t addr_port(const struct addr *a)
{
    switch (a->u.sa.sa_family) {
    case AF_INET:
        return ntohs(a->u.in4.sin_port);
    case AF_INET6:
        return ntohs(a->u.in6.sin6_port);
    default:
        return 0;
    }
}

void addr_set_port(struct addr *a, uint16_t port)
{
    switch (a->u.sa.sa_family) {
    case AF_INET:
        a->u.in4.sin_port = htons(port);
        break;
    case AF_INET6:
        a->u.in6.sin6_port = htons(port);
        break;
    default:
        break;
    }
}

bool addr_equal(const struct addr *a, const struct addr *b)
{
    if (a->u.sa.sa_family != b->u.sa.sa_family)
        return false;
    switch (a->u.sa.sa_family) {
    case AF_INET:
        return a->u.in4.sin_port == b->u.in4.sin_port &&
               memcmp(&a->u.in4.sin_addr, &b->u.in4.sin_addr, 4) == 0;
    case AF_INET6:
        return a->u.in6.sin6_port == b->u.in6.sin6_port &&
               memcmp(&a->u.in6.sin6_addr, &b->u.in6.sin6_addr, 16) == 0;
    default:
        return false;
    }
}

const uint8_t *addr_ipv4_bytes(const struct addr *a)
{
    if (a->u.sa.sa_family == AF_INET)
        return (const uint8_t *)&a->u.in4.sin_addr;
    if (a->u.sa.sa_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&a->u.in6.sin6_addr))
        return a->u.in6.sin6_addr.s6_addr + 12;
    return NULL;
}

void addr_unmap(struct addr *a)
{
    const uint8_t *ip4 = addr_ipv4_bytes(a);
    uint8_t copy[4];

    if (ip4 == NULL || addr_family(a) != AF_INET6)
        return;
    memcpy(copy, ip4, 4); /* addr_from_ipv4 clears *a first */
    addr_from_ipv4(a, copy, addr_port(a));
}

bool addr_same_ip(const struct addr *a, const struct addr *b)
{
    const uint8_t *a4 = addr_ipv4_bytes(a), *b4 = addr_ipv4_bytes(b);

    if (a4 != NULL || b4 != NULL)
        return a4 != NULL && b4 != NULL && memcmp(a4, b4, 4) == 0;
    return a->u.sa.sa_family == AF_INET6 && b->u.sa.sa_family == AF_INET6 &&
           memcmp(&a->u.in6.sin6_addr, &b->u.in6.sin6_addr, 16) == 0;
}

/* Numeric address text into tmp (INET6_ADDRSTRLEN bytes); "?" for other families. */
static const char *format_ip(const struct addr *a, char *tmp)
{
    const void *src;

    switch (a->u.sa.sa_family) {
    case AF_INET:
        src = &a->u.in4.sin_addr;
        break;
    case AF_INET6:
        src = &a->u.in6.sin6_addr;
        break;
    default:
        return "?";
    }
    if (inet_ntop(a->u.sa.sa_family, src, tmp, INET6_ADDRSTRLEN) == NULL)
        return "?";
    return tmp;
}

const char *addr_format(const struct addr *a, char *buf, size_t size)
{
    char tmp[INET6_ADDRSTRLEN];
    const char *ip = format_ip(a, tmp);

    if (size == 0)
        return buf;
    if (a->u.sa.sa_family == AF_INET6)
        snprintf(buf, size, "[%s]:%u", ip, (unsigned)addr_port(a));
    else if (a->u.sa.sa_family == AF_INET)
        snprintf(buf, size, "%s:%u", ip, (unsigned)addr_port(a));
    else
        snprintf(buf, size, "%s", ip);
    return buf;
}

const char *addr_format_ip(const struct addr *a, char *buf, size_t size)
{
    char tmp[INET6_ADDRSTRLEN];

    if (size == 0)
        return buf;
    snprintf(buf, size, "%s", format_ip(a, tmp));
    return buf;
}

/* Decimal port of one to five digits, at most 65535; the whole string must be digits. */
static int parse_port(const char *s, uint16_t *port)
{
    unsigned long v = 0;
    size_t n = 0;

    if (*s == '\0')
        return -1;
    for (; *s != '\0'; s++, n++) {
        if (*s < '0' || *s > '9' || n >= 5)
            return -1;
        v = v * 10 + (unsigned long)(*s - '0');
    }
    if (v > 65535)
        return -1;
    *port = (uint16_t)v;
    return 0;
}

/* Host part of length n (not NUL-terminated) as an address of `family`. */
static int parse_ip(int family, const char *s, size_t n, uint16_t port, struct addr *out)
{
    char host[INET6_ADDRSTRLEN];
    uint8_t ip[16];

    if (n == 0 || n >= sizeof(host))
        return -1;
    memcpy(host, s, n);
    host[n] = '\0';
    if (inet_pton(family, host, ip) != 1)
        return -1;
    if (family == AF_INET)
        addr_from_ipv4(out, ip, port);
    else
        addr_from_ipv6(out, ip, port);
    return 0;
}

int addr_parse(const char *text, uint16_t default_port, struct addr *out)
{
    const char *colon, *close;
    uint16_t port = default_port;

    if (text == NULL || *text == '\0')
        return -1;

    if (text[0] == '[') {
        close = strchr(text, ']');
        if (close == NULL)
            return -1;
        if (close[1] == ':') {
            if (parse_port(close + 2, &port) < 0)
                return -1;
        } else if (close[1] != '\0') {
            return -1;
        }
        return parse_ip(AF_INET6, text + 1, (size_t)(close - text - 1), port, out);
    }

    colon = strchr(text, ':');
    if (colon == NULL)
        return parse_ip(AF_INET, text, strlen(text), port, out);
    if (strchr(colon + 1, ':') != NULL) /* bare IPv6: no room for a port */
        return parse_ip(AF_INET6, text, strlen(text), port, out);
    if (parse_port(colon + 1, &port) < 0)
        return -1;
    return parse_ip(AF_INET, text, (size_t)(colon - text), port, out);
}

bool addr_is_unspecified(const struct addr *a)
{
    if (addr_family(a) == AF_INET)
        return a->u.in4.sin_addr.s_addr == htonl(INADDR_ANY);
    return IN6_IS_ADDR_UNSPECIFIED(&a->u.in6.sin6_addr);
}

bool addr_is_loopback(const struct addr *a)
{
    const uint8_t *ip4 = addr_ipv4_bytes(a);

    if (ip4 != NULL)
        return ip4[0] == 127;
    return addr_family(a) == AF_INET6 && IN6_IS_ADDR_LOOPBACK(&a->u.in6.sin6_addr);
}

bool addr_is_unicast(const struct addr *a)
{
    if (addr_family(a) == AF_INET)
        return !addr_is_unspecified(a) && !IN_MULTICAST(ntohl(a->u.in4.sin_addr.s_addr));
    return addr_family(a) == AF_INET6 && !addr_is_unspecified(a) &&
           !IN6_IS_ADDR_MULTICAST(&a->u.in6.sin6_addr);
}

/* --- address ranges ---------------------------------------------------------------------- */

bool addr_prefix_equal(const uint8_t *x, const uint8_t *y, unsigned prefix)
{
    unsigned whole = prefix / 8, rest = prefix % 8;

    if (memcmp(x, y, whole) != 0)
        return false;
    if (rest == 0)
        return true;
    return ((x[whole] ^ y[whole]) & (uint8_t)(0xff << (8 - rest))) == 0;
}

/* Clear every bit after the first `prefix` of the n bytes at ip. */
static void mask_host_bits(uint8_t *ip, size_t n, unsigned prefix)
{
    for (size_t i = 0; i < n; i++) {
        if (prefix >= 8 * (i + 1))
            continue;
        if (prefix <= 8 * i)
            ip[i] = 0;
        else
            ip[i] &= (uint8_t)(0xff << (8 * (i + 1) - prefix));
    }
}

int addr_cidr_parse(const char *text, struct addr_cidr *out)
{
    char host[INET6_ADDRSTRLEN];
    const char *slash, *start = text;
    uint8_t ip[16];
    unsigned long prefix, max;
    bool bracket = false;
    int family;
    size_t n;

    if (text == NULL || out == NULL)
        return -1;
    slash = strchr(text, '/');
    n = slash != NULL ? (size_t)(slash - text) : strlen(text);
    if (n >= 2 && text[0] == '[' && text[n - 1] == ']') {
        start = text + 1;
        n -= 2;
        bracket = true;
    }
    if (n == 0 || n >= sizeof(host))
        return -1;
    memcpy(host, start, n);
    host[n] = '\0';
    if (strchr(host, ':') != NULL) {
        family = AF_INET6;
        max = 128;
    } else {
        if (bracket)
            return -1;
        family = AF_INET;
        max = 32;
    }
    if (inet_pton(family, host, ip) != 1)
        return -1;
    prefix = max;
    if (slash != NULL) {
        const char *s = slash + 1;
        size_t digits = 0;

        prefix = 0;
        for (; *s != '\0'; s++, digits++) {
            if (*s < '0' || *s > '9' || digits == 3)
                return -1;
            prefix = prefix * 10 + (unsigned long)(*s - '0');
        }
        if (digits == 0 || prefix > max)
            return -1;
    }
    mask_host_bits(ip, family == AF_INET ? 4 : 16, (unsigned)prefix);
    if (family == AF_INET)
        addr_from_ipv4(&out->net, ip, 0);
    else
        addr_from_ipv6(&out->net, ip, 0);
    out->prefix = (unsigned)prefix;
    return 0;
}

bool addr_cidr_contains(const struct addr_cidr *c, const struct addr *a)
{
    const uint8_t *net4 = NULL, *ip4;
    unsigned prefix4 = 0;

    if (c == NULL || a == NULL)
        return false;
    if (addr_family(&c->net) == AF_INET) {
        net4 = addr_ipv4_bytes(&c->net);
        prefix4 = c->prefix;
    } else if (c->prefix >= 96 && addr_ipv4_bytes(&c->net) != NULL) {
        net4 = addr_ipv4_bytes(&c->net);
        prefix4 = c->prefix - 96;
    }
    ip4 = addr_ipv4_bytes(a);
    if (net4 != NULL || ip4 != NULL)
        return net4 != NULL && ip4 != NULL && addr_prefix_equal(net4, ip4, prefix4);
    if (addr_family(&c->net) != AF_INET6 || addr_family(a) != AF_INET6)
        return false;
    return addr_prefix_equal(c->net.u.in6.sin6_addr.s6_addr, a->u.in6.sin6_addr.s6_addr, c->prefix);
}
