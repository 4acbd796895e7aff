/*
 * The access decision for a client or a request: the configuration's rules (acl.h) plus the
 * private-destination block and the clients trusted past it. Pure: no I/O, no logging.
 */
#ifndef FERRY_POLICY_H
#define FERRY_POLICY_H

#include <stdbool.h>

#include "ferry/acl.h"

struct addr;
struct addr_cidr;
struct config;
struct localaddrs;

struct policy_decision {
    enum acl_verdict verdict;
    unsigned rule;         /* 1-based rule of its set that decided; 0: none (default or private) */
    unsigned line;         /* that rule's config line, 0: none */
    bool private_dest;     /* refused by the private-destination block */
    bool log;              /* the deciding rule asked for a log line */
    unsigned max_sessions; /* the deciding pass rule's limits (acl.h), 0 for none */
    uint64_t bandwidth;
};

/* Client rules, at accept; listener is the listening socket's address. */
struct policy_decision policy_check_client(const struct config *cfg, const struct addr *client,
                                           const struct addr *listener);

/*
 * Request rules, then, for a destination given as an address, the private-destination block:
 * a private destination (policy_private_prefix) is refused to a client outside
 * trusted-clients unless private-destinations allow, the deciding rule says 'private', or it
 * passed the address with a 'to' range that lies inside the private range holding it
 * ("to 10.20.0.0/16" opens those; "to 0.0.0.0/0" opens none). It applies to every command:
 * CONNECT and UDP datagrams, BIND's expected peer (except 0.0.0.0 and ::, "any peer"), and
 * the addresses RESOLVE answers and RESOLVE_PTR asks about. local is the host's own
 * addresses now (NULL: none known).
 */
struct policy_decision policy_check_request(const struct config *cfg,
                                            const struct localaddrs *local,
                                            const struct acl_request *req);

/*
 * How private a is: the shortest prefix of the private ranges holding it (special-purpose
 * ranges below, the host's own addresses in local, and cfg's listen, advertise and udp
 * addresses; in IPv4 bits for IPv4 and IPv4-mapped addresses), or -1 when a is not private.
 * cfg and local may be NULL.
 */
int policy_private_prefix(const struct config *cfg, const struct localaddrs *local,
                          const struct addr *a);

/* True when a is not private, or range holds a and lies inside a private range holding it. */
bool policy_range_opens(const struct addr_cidr *range, const struct config *cfg,
                        const struct localaddrs *local, const struct addr *a);

/*
 * True when range holds a whole special-purpose range and more ("to 0.0.0.0/0", "::/0",
 * "10.0.0.0/7"): such a 'to' range does not open what it holds (warned about at load).
 */
bool policy_range_holds_private(const struct addr_cidr *range);

/*
 * The config line of the first request pass rule with such a 'to' range and without
 * 'private', or 0.
 */
unsigned policy_wide_pass_line(const struct config *cfg);

/* True when client is in trusted-clients. */
bool policy_client_trusted(const struct config *cfg, const struct addr *client);

/*
 * True when a is a special-purpose address blocked by default: loopback, RFC 1918, CGNAT
 * 100.64/10, link-local (169.254/16, fe80::/10), ULA fc00::/7, multicast, 0.0.0.0/8, the
 * unspecified and reserved ranges, and IPv4-mapped, IPv4-compatible, NAT64 (64:ff9b::/96,
 * 64:ff9b:1::/48) and 6to4 forms of the IPv4 ones. Any other family, and NULL, too.
 */
bool policy_is_special_destination(const struct addr *a);

#endif
