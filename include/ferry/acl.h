/*
 * Access rules: ordered first-match client rules (checked at accept) and request rules
 * (checked per request, per resolved address and per UDP datagram). Pure: no I/O, no globals.
 * The special-purpose destinations blocked by default are policy.h's.
 */
#ifndef FERRY_ACL_H
#define FERRY_ACL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ferry/addr.h"

enum acl_action {
    ACL_PASS,
    ACL_BLOCK,
};

/* Commands a request rule can name (a bit set). */
enum acl_command {
    ACL_CMD_CONNECT = 1 << 0,
    ACL_CMD_BIND = 1 << 1,
    ACL_CMD_UDP = 1 << 2,
    ACL_CMD_RESOLVE = 1 << 3, /* RESOLVE and RESOLVE_PTR */
};

struct acl_rules; /* one ordered rule set, built by acl_add_rule */

/*
 * What a request rule is checked against. NULL / 0 members are unknown, and a condition on an
 * unknown part cannot be judged: the check answers NEED_ADDRESS when it reaches such a rule
 * whose other conditions match. The destination is unknown when both name and dest are NULL
 * (UDP ASSOCIATE at request time: every datagram is checked later); then `to` and `port`
 * conditions are both unknown. Otherwise port is known, even when 0. A host-name entry is
 * judged against name only: it never matches when dest is known and name is NULL (an
 * IP-literal destination).
 */
struct acl_request {
    const struct addr *client; /* client address (port ignored) */
    const char *user;          /* authenticated user, or NULL */
    unsigned command;          /* one ACL_CMD_* bit */
    const char *name;          /* destination host name as asked, or NULL for an IP */
    const struct addr *dest;   /* destination address (resolved or literal), or NULL */
    uint16_t port;             /* destination port */
};

enum acl_verdict {
    ACL_VERDICT_PASS,
    ACL_VERDICT_BLOCK,
    ACL_VERDICT_NEED_ADDRESS, /* a rule needs the resolved address to decide: resolve, ask again */
};

struct acl_result {
    enum acl_verdict verdict;
    unsigned rule;      /* 1-based number of the deciding rule in its set; 0: no rule */
    unsigned line;      /* config line of that rule; 0: none */
    bool log;           /* the deciding rule asked for a log line */
    bool explicit_dest; /* decided by a 'to' address range that contains dest: */
    const struct addr_cidr *dest_range; /* that range (in the rule set), else NULL */
    bool private_ok;                    /* the deciding rule says 'private' (pass rules only) */
    unsigned max_sessions;              /* the deciding pass rule's 'sessions N', 0 for none */
    uint64_t bandwidth;                 /* its 'bandwidth BYTES' (per second), 0 for none */
};

/* Every function taking a rule set accepts NULL as the empty set. */
struct acl_rules *acl_rules_new(void);
void acl_rules_free(struct acl_rules *rules);
size_t acl_rules_count(const struct acl_rules *rules);

/*
 * Parse the words after "client" (is_client) or "request" and append the rule:
 *   client  pass|block [from CIDR[,CIDR...]] [listener ADDR[:PORT]] [log]
 *   request pass|block [from CIDR,...] [user NAME,...] [command connect|bind|udp|resolve,...]
 *                      [to DEST,...] [port PORT|LOW-HIGH,...] [log] [private]
 *                      [sessions N] [bandwidth BYTES]    (private, limits: pass rules only)
 * DEST is a CIDR or single IP, an exact host name, or ".domain" (the domain and every name
 * under it); "any" stands for an absent condition. line is kept for messages. Returns 0, or -1
 * with a message (without file and line) in err.
 */
int acl_add_rule(struct acl_rules *rules, bool is_client, int argc, char **argv, unsigned line,
                 char *err, size_t errlen);

/* Client rules: first match decides; no match passes when the set is empty, blocks otherwise. */
struct acl_result acl_check_client(const struct acl_rules *rules, const struct addr *client,
                                   const struct addr *listener);

/*
 * Calls fn with every 'to' range of every request pass rule without 'private', in order;
 * returns the line of the first rule for which fn answered true, or 0.
 */
unsigned acl_find_pass_range(const struct acl_rules *rules,
                             bool (*fn)(const struct addr_cidr *range));

/*
 * Request rules, first match. A rule whose destination part can only be judged on an address
 * answers NEED_ADDRESS while req->dest is NULL. No match: pass for an empty set, else block.
 */
struct acl_result acl_check_request(const struct acl_rules *rules, const struct acl_request *req);

#endif
