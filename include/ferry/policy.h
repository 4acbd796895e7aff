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

#endif
