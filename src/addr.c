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

/* The 4 IPv4 bytes of an AF_INET or IPv4-mapped AF_INET6 address, else NULL. */
static const uint8_t *addr_ipv4_bytes(const struct addr *a)
{
    if (a->u.sa.sa_family == AF_INET)
        return (const uint8_t *)&a->u.in4.sin_addr;
    if (a->u.sa.sa_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&a->u.in6.sin6_addr))
        return a->u.in6.sin6_addr.s6_addr + 12;
    return NULL;
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
