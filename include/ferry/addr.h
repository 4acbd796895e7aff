/* Socket address helpers: one struct for IPv4 and IPv6, parsing and formatting. */
#ifndef FERRY_ADDR_H
#define FERRY_ADDR_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/*
 * A socket address of either family together with its length. Only as large as the larger
 * of the two (32 bytes, not a sockaddr_storage): sessions keep several.
 */
struct addr {
    union {
        struct sockaddr sa;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
    } u;
    socklen_t len;
};

/* Room for "[ffff:...:255.255.255.255]:65535" and its NUL. */
#define ADDR_STRLEN (INET6_ADDRSTRLEN + 9)

void addr_from_ipv4(struct addr *a, const uint8_t ip[4], uint16_t port);
void addr_from_ipv6(struct addr *a, const uint8_t ip[16], uint16_t port);
/* Copy a kernel-supplied sockaddr; returns -1 for families other than AF_INET/AF_INET6. */
int addr_from_sockaddr(struct addr *a, const struct sockaddr *sa, socklen_t len);
int addr_family(const struct addr *a);
uint16_t addr_port(const struct addr *a);
void addr_set_port(struct addr *a, uint16_t port);
bool addr_equal(const struct addr *a, const struct addr *b);
/* 0.0.0.0 or :: (an IPv4-mapped 0.0.0.0 is not). */
bool addr_is_unspecified(const struct addr *a);
/* Same IP, ports ignored; an IPv4-mapped IPv6 address equals its IPv4 address. */
bool addr_same_ip(const struct addr *a, const struct addr *b);

/* "192.0.2.1:80" or "[2001:db8::1]:80". Returns buf. */
const char *addr_format(const struct addr *a, char *buf, size_t size);
/* Address only, no port and no brackets. Returns buf. */
const char *addr_format_ip(const struct addr *a, char *buf, size_t size);

/*
 * Parse "192.0.2.1", "192.0.2.1:80", "[2001:db8::1]:80", "[::1]" or "::1" into *out.
 * A missing port means default_port. Returns 0, or -1 when the text is not an address.
 */
int addr_parse(const char *text, uint16_t default_port, struct addr *out);

#endif
