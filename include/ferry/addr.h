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
/* 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104: only this host can reach a listener there. */
bool addr_is_loopback(const struct addr *a);
/*
 * Neither unspecified (0.0.0.0, ::) nor multicast (224.0.0.0/4, ff00::/8): an address that can
 * be put in a reply as the place a client should send to.
 */
bool addr_is_unicast(const struct addr *a);
/* Same IP, ports ignored; an IPv4-mapped IPv6 address equals its IPv4 address. */
bool addr_same_ip(const struct addr *a, const struct addr *b);

/* The 4 IPv4 bytes of an AF_INET or IPv4-mapped (::ffff:a.b.c.d) AF_INET6 address, else NULL. */
const uint8_t *addr_ipv4_bytes(const struct addr *a);
/* An IPv4-mapped IPv6 address becomes the plain IPv4 address (same port); others stay. */
void addr_unmap(struct addr *a);

/* "192.0.2.1:80" or "[2001:db8::1]:80". Returns buf. */
const char *addr_format(const struct addr *a, char *buf, size_t size);
/* Address only, no port and no brackets. Returns buf. */
const char *addr_format_ip(const struct addr *a, char *buf, size_t size);

/*
 * Parse "192.0.2.1", "192.0.2.1:80", "[2001:db8::1]:80", "[::1]" or "::1" into *out.
 * A missing port means default_port. Returns 0, or -1 when the text is not an address.
 */
int addr_parse(const char *text, uint16_t default_port, struct addr *out);

/* An address range: the first `prefix` bits of net (whose other bits are 0, port 0). */
struct addr_cidr {
    struct addr net;
    unsigned prefix;
};

/*
 * "192.0.2.0/24", "2001:db8::/32", "[2001:db8::]/32", or one address (a /32 or /128). The
 * prefix is 1 to 3 digits; host bits after it are cleared ("10.1.2.3/8" is 10.0.0.0/8).
 * Returns 0 or -1.
 */
int addr_cidr_parse(const char *text, struct addr_cidr *out);
/*
 * IPv4-mapped addresses are IPv4 addresses here, on both sides: an IPv4 range contains the
 * mapped form of its addresses, and a range inside ::ffff:0:0/96 contains the plain IPv4 ones.
 * An IPv6 range wider than that (::/0) contains no IPv4 address. False for NULL.
 */
bool addr_cidr_contains(const struct addr_cidr *c, const struct addr *a);
/* True when the first `prefix` bits of the bytes at x and y are equal. */
bool addr_prefix_equal(const uint8_t *x, const uint8_t *y, unsigned prefix);

#endif
