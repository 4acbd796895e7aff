/*
 * The request pipeline, the same for every front end: the session limits, the rules by name
 * before any DNS query, resolution, the rules again on every resolved address, then the command.
 * CONNECT goes to exactly the addresses that passed, through the session's outbound; the other
 * commands are in session_cmd.c.
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "ferry/acl.h"
#include "ferry/conf.h"
#include "ferry/log.h"
#include "ferry/outbound.h"
#include "ferry/reply.h"
#include "ferry/resolver.h"
#include "ferry/snapshot.h"
#include "ferry/socks5.h"
#include "session_int.h"

/* --- limits ------------------------------------------------------------------------------ */

/*
 * The limits a request must be within: sessions in total, of this client and of this user
 * (a failure reply, 0x01), and the user's quota (0x02). Returns false when refused.
 */
static bool session_within_limits(struct session *s)
{
    const struct config *cfg = s->cfg;
    char client[ADDR_STRLEN], user[SESSION_USER_LOGLEN];

    switch (limits_hold_check(&s->hold, limits_clock())) {
    case LIMIT_OK:
        return true;
    case LIMIT_TOTAL:
        log_warn("max-sessions (%u) reached, refusing a request from %s", cfg->max_sessions,
                 addr_format(&s->client_addr, client, sizeof(client)));
        break;
    case LIMIT_CLIENT:
        log_notice("limit sessions-per-client (%u) reached by %s", cfg->sessions_per_client,
                   addr_format(&s->client_addr, client, sizeof(client)));
        break;
    case LIMIT_USER:
        log_notice("limit sessions-per-user (%u) reached by user %s", cfg->sessions_per_user,
                   session_user_for_log(s, user, sizeof(user)));
        break;
    default:
        log_notice("limit quota-per-user used up by user %s",
                   session_user_for_log(s, user, sizeof(user)));
        session_fail(s, SOCKS5_REP_NOT_ALLOWED);
        return false;
    }
    session_fail(s, SOCKS5_REP_GENERAL_FAILURE);
    return false;
}

/* --- access policy (policy.h): after authentication, before any DNS query ---------------- */

static unsigned session_acl_command(const struct session *s)
{
    switch (s->cmd) {
    case REQUEST_BIND:
        return ACL_CMD_BIND;
    case REQUEST_UDP_ASSOCIATE:
        return ACL_CMD_UDP;
    case REQUEST_RESOLVE:
    case REQUEST_RESOLVE_PTR:
        return ACL_CMD_RESOLVE;
    default:
        return ACL_CMD_CONNECT;
    }
}

/*
 * Check the request with the name it asked for (if any) and dest, the address to judge (NULL
 * before resolution). UDP ASSOCIATE names no destination: its datagrams are checked one by one.
 */
struct policy_decision session_policy(const struct session *s, const struct addr *dest)
{
    const struct socks_dest *asked = &s->nego->req.dest;
    struct acl_request req = {
        .client = &s->client_addr,
        .user = s->user,
        .command = session_acl_command(s),
        .port = asked->port,
    };

    if (s->cmd != REQUEST_UDP_ASSOCIATE) {
        req.name = asked->type == DEST_NAME ? asked->name : NULL;
        req.dest = dest;
    }
    return policy_check_request(s->cfg, s->ctx->local, &req);
}

/* The notice line of a rule with the 'log' flag. */
static void session_log_rule(const struct session *s, const struct policy_decision *d)
{
    char client[ADDR_STRLEN], target[SOCKS_DEST_STRLEN], user[SESSION_USER_LOGLEN];

    addr_format(&s->client_addr, client, sizeof(client));
    socks_dest_format(&s->nego->req.dest, target, sizeof(target));
    log_notice("request rule %u (line %u) %s: client=%s user=%s cmd=%s target=%s", d->rule, d->line,
               d->verdict == ACL_VERDICT_BLOCK ? "block" : "pass", client,
               session_user_for_log(s, user, sizeof(user)), session_cmd_name(s), target);
}

/*
 * The limits of the pass rule that decided (sessions N, bandwidth BYTES), taken once per
 * session. Returns false when its session limit is reached (reply 0x01 is on its way).
 */
static bool session_rule_limits(struct session *s, const struct policy_decision *d)
{
    switch (
        limits_hold_rule(&s->hold, s->snap->generation, d->rule, d->max_sessions, d->bandwidth)) {
    case 0:
        return true;
    case 1:
        log_notice("request rule %u (line %u): its limit of %u sessions is reached", d->rule,
                   d->line, d->max_sessions);
        s->refusal = *d;
        session_fail(s, SOCKS5_REP_GENERAL_FAILURE);
        return false;
    default:
        session_fail(s, SOCKS5_REP_GENERAL_FAILURE);
        return false;
    }
}

bool session_allowed(struct session *s, const struct policy_decision *d)
{
    if (d->log)
        session_log_rule(s, d);
    if (d->verdict == ACL_VERDICT_PASS)
        return session_rule_limits(s, d);
    if (d->verdict != ACL_VERDICT_BLOCK)
        return true;
    s->refused = true;
    s->refusal = *d;
    session_fail(s, SOCKS5_REP_NOT_ALLOWED);
    return false;
}

/*
 * Keep, in order, the resolved addresses the policy passes, into out. *d is the decision for
 * the first address kept, or for the first address when none is.
 */
static size_t session_filter(const struct session *s, const struct addr *in, size_t n,
                             struct addr *out, struct policy_decision *d)
{
    size_t kept = 0;

    for (size_t i = 0; i < n; i++) {
        struct policy_decision di = session_policy(s, &in[i]);

        if (di.verdict == ACL_VERDICT_PASS) {
            if (kept == 0)
                *d = di;
            out[kept++] = in[i];
        } else if (i == 0) {
            *d = di;
        }
    }
    /* The address is known to every check here: a pass or a block decided each one. */
    if (kept == 0)
        d->verdict = ACL_VERDICT_BLOCK;
    return kept;
}

/* --- CONNECT through the outbound -------------------------------------------------------- */

static void on_connected(int fd, int err, const struct addr *peer, void *arg)
{
    struct session *s = arg;
    struct addr bound;

    s->nego->outbound_conn = NULL;
    if (fd < 0) {
        log_debug("connect failed: %s", strerror(err));
        session_fail(s, reply_from_errno(err));
        return;
    }
    s->target_fd = fd;
    s->target_addr = *peer;
    bound.len = sizeof(bound.u);
    if (getsockname(fd, &bound.u.sa, &bound.len) < 0) {
        session_fail(s, SOCKS5_REP_GENERAL_FAILURE);
        return;
    }
    session_reply_then_relay(s, &bound);
}

static void session_connect(struct session *s, const struct addr *addrs, size_t n)
{
    struct outbound_request req = {
        .loop = s->ctx->loop,
        .dest = &s->nego->req.dest,
        .addrs = addrs,
        .naddrs = n,
    };

    /* Direct is the only outbound yet; routes to parent proxies will choose here. */
    s->nego->outbound = &outbound_direct;
    session_enter(s, S_CONNECTING);
    s->nego->outbound_conn = s->nego->outbound->start(&req, on_connected, s);
    if (s->nego->outbound_conn == NULL)
        session_fail(s, reply_from_errno(errno));
}

/* --- dispatch ---------------------------------------------------------------------------- */

/* Act on the request's addresses: resolved from a name, or the one IP the client sent. */
static void session_dispatch(struct session *s, const struct addr *addrs, size_t n)
{
    switch (s->cmd) {
    case REQUEST_CONNECT:
    case REQUEST_FORWARD: /* an HTTP request to forward: connected like CONNECT */
        session_connect(s, addrs, n);
        break;
    case REQUEST_BIND:
        session_bind(s, addrs, n);
        break;
    case REQUEST_RESOLVE:
        session_answer_resolve(s, addrs, n);
        break;
    default:
        session_fail(s, SOCKS5_REP_COMMAND_NOT_SUPPORTED);
        break;
    }
}

static void on_resolved(const struct resolver_result *res, void *arg)
{
    struct session *s = arg;
    struct addr passed[RESOLVER_MAX_ADDRS];
    struct policy_decision d;
    size_t n;

    s->nego->query = NULL;
    if (res->status != RESOLVER_OK || res->count == 0) {
        char name[LOG_ESCAPED(DEST_NAME_MAX)];

        log_debug(
            "resolving %s failed: %s",
            log_escape(s->nego->req.dest.name, strlen(s->nego->req.dest.name), name, sizeof(name)),
            resolver_status_name(res->status));
        session_fail(s, reply_from_resolver(res->status));
        return;
    }
    /* Every address is checked, and only those that passed are used: no second lookup. */
    n = session_filter(s, res->addrs, res->count, passed, &d);
    if (!session_allowed(s, &d))
        return;
    session_dispatch(s, passed, n);
}

void session_request(struct session *s)
{
    const struct socks_dest *asked = &s->nego->req.dest;
    struct policy_decision d;
    struct addr target;

    if (!session_within_limits(s))
        return;
    switch (s->cmd) {
    case REQUEST_UDP_ASSOCIATE:
        d = session_policy(s, NULL);
        if (session_allowed(s, &d))
            session_udp(s);
        return;
    case REQUEST_RESOLVE_PTR:
        if (socks_dest_to_addr(asked, &target) < 0) {
            session_fail(s, SOCKS5_REP_ADDRESS_TYPE_NOT_SUPPORTED);
            return;
        }
        d = session_policy(s, &target);
        if (session_allowed(s, &d))
            session_resolve_ptr(s, &target);
        return;
    default:
        break;
    }
    if (asked->type != DEST_NAME) {
        socks_dest_to_addr(asked, &target);
        d = session_policy(s, &target);
        if (session_allowed(s, &d))
            session_dispatch(s, &target, 1);
        return;
    }
    /* By name, before any DNS query: a refused name is never looked up. */
    d = session_policy(s, NULL);
    if (!session_allowed(s, &d))
        return;
    session_enter(s, S_RESOLVING);
    s->nego->query = resolver_lookup(s->ctx->resolver, asked->name, on_resolved, s);
    if (s->nego->query == NULL)
        session_fail(s, SOCKS5_REP_GENERAL_FAILURE);
}
