/* Access decisions: rules first, then the private-destination block (see policy.h). */
#include "config.h"

#include "ferry/policy.h"

#include "ferry/conf.h"

static struct policy_decision from_acl(const struct acl_result *r)
{
    struct policy_decision d = {
        .verdict = r->verdict,
        .rule = r->rule,
        .line = r->line,
        .log = r->log,
        .max_sessions = r->max_sessions,
        .bandwidth = r->bandwidth,
    };
    return d;
}

struct policy_decision policy_check_client(const struct config *cfg, const struct addr *client,
                                           const struct addr *listener)
{
    struct acl_result r = acl_check_client(cfg->client_rules, client, listener);

    return from_acl(&r);
}

bool policy_client_trusted(const struct config *cfg, const struct addr *client)
{
    for (size_t i = 0; i < cfg->ntrusted_clients; i++) {
        if (addr_cidr_contains(&cfg->trusted_clients[i], client))
            return true;
    }
    return false;
}

/* Commands whose destination ferryd sends traffic to; BIND and RESOLVE only name one. */
static bool sends_to_destination(unsigned command)
{
    return command == ACL_CMD_CONNECT || command == ACL_CMD_UDP;
}

struct policy_decision policy_check_request(const struct config *cfg, const struct acl_request *req)
{
    struct acl_result r = acl_check_request(cfg->request_rules, req);
    struct policy_decision d = from_acl(&r);

    if (d.verdict != ACL_VERDICT_PASS || req->dest == NULL || !sends_to_destination(req->command))
        return d;
    if (cfg->private_destinations || r.explicit_dest || !acl_is_special_destination(req->dest) ||
        policy_client_trusted(cfg, req->client))
        return d;
    d.verdict = ACL_VERDICT_BLOCK;
    d.private_dest = true;
    d.log = false;
    return d;
}
