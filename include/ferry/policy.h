/*
 * The access decision for a client or a request: the configuration's rules (acl.h) plus the
 * private-destination block and the clients trusted past it. Pure: no I/O, no logging.
 */
#ifndef FERRY_POLICY_H
#define FERRY_POLICY_H

#include <stdbool.h>

#include "ferry/acl.h"

struct addr;
struct config;

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
 * Request rules, then, for a destination ferryd would send to (connect, udp) given as an
 * address, the private-destination block: a special-purpose address is refused to a client
 * outside trusted-clients unless private-destinations allow, or the deciding rule passed it
 * with a 'to' range that holds it.
 */
struct policy_decision policy_check_request(const struct config *cfg,
                                            const struct acl_request *req);

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
