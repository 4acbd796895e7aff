/*
 * The request pipeline, the same for every front end: the session limits, the rules by name
 * before any DNS query, resolution, the rules again on every resolved address, then the command.
 * CONNECT goes to exactly the addresses that passed, through the session's outbound; the other
 * commands are in session_cmd.c.
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#include <netinet/in.h>

#include "ferry/acl.h"
#include "ferry/conf.h"
#include "ferry/log.h"
#include "ferry/outbound.h"
#include "ferry/reply.h"
#include "ferry/resolver.h"
#include "ferry/route.h"
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
 * What the rules and routes judge of s's request: dest is the address (NULL before
 * resolution). UDP ASSOCIATE names no destination: its datagrams are checked one by one.
 */
static struct acl_request session_acl_request(const struct session *s, const struct addr *dest)
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
    return req;
}

/* The rules on s's request by name, or on dest (session_int.h). */
struct policy_decision session_policy(const struct session *s, const struct addr *dest)
{
    struct acl_request req = session_acl_request(s, dest);

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

/* A request's deciding rule, counted once (a name and then its address may both be judged). */
static void session_count_rule(struct session *s, const struct policy_decision *d)
{
    struct metrics_worker *m = &s->ctx->counters->metrics;

    if (s->nego->rule_counted || d->verdict == ACL_VERDICT_NEED_ADDRESS)
        return;
    s->nego->rule_counted = true;
    if (d->rule > 0)
        metrics_add(&m->rule_hits[d->rule <= METRICS_RULES ? d->rule - 1 : METRICS_RULES], 1);
    else if (d->verdict == ACL_VERDICT_BLOCK && !d->private_dest)
        metrics_add(&m->rule_default_blocks, 1);
}

bool session_allowed(struct session *s, const struct policy_decision *d)
{
    session_count_rule(s, d);
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

/* --- routes: which outbound ------------------------------------------------------------ */

static uint8_t session_socks5_cmd(const struct session *s)
{
    switch (s->cmd) {
    case REQUEST_BIND:
        return SOCKS5_CMD_BIND;
    case REQUEST_UDP_ASSOCIATE:
        return SOCKS5_CMD_UDP_ASSOCIATE;
    case REQUEST_RESOLVE:
        return SOCKS5_CMD_RESOLVE;
    case REQUEST_RESOLVE_PTR:
        return SOCKS5_CMD_RESOLVE_PTR;
    default:
        return SOCKS5_CMD_CONNECT;
    }
}

/* The route for the request (route.h): its number, 0 for none (direct), -1 when it needs the
 * address (dest NULL before resolution). */
static int session_route(const struct session *s, const struct addr *dest)
{
    const struct routes *r = s->cfg->routes;
    struct acl_request req;

    if (r == NULL || r->nroutes == 0)
        return 0;
    req = session_acl_request(s, dest);
    return routes_match(r, &req);
}

/* CONNECT, or an HTTP request to forward (connected the same way). */
static bool session_connects(const struct session *s)
{
    return s->cmd == REQUEST_CONNECT || s->cmd == REQUEST_FORWARD;
}

/* A route whose first path is a chain of parents (others go direct for commands but CONNECT). */
static bool route_goes_up(const struct route *rt)
{
    return rt != NULL && rt->npaths > 0 && rt->paths[0].nhops > 0;
}

static void socks_dest_from_addr(struct socks_dest *d, const struct addr *a, uint16_t port)
{
    memset(d, 0, sizeof(*d));
    d->port = port;
    if (addr_family(a) == AF_INET) {
        d->type = DEST_IPV4;
        memcpy(d->ip, &a->u.in4.sin_addr, 4);
    } else {
        d->type = DEST_IPV6;
        memcpy(d->ip, &a->u.in6.sin6_addr, 16);
    }
}

/* --- the outbound's answer --------------------------------------------------------------- */

static void session_resolve_here(struct session *s);

/* A parent's BND as an address for our reply, or false for a name. */
static bool bound_addr(const struct socks_dest *b, struct addr *out)
{
    if (b == NULL || socks_dest_to_addr(b, out) < 0)
        return false;
    return true;
}

/* RESOLVE answered by the last parent: its address is checked like one we resolved. */
static void on_resolved_upstream(struct session *s, const struct outbound_result *res)
{
    struct addr a;
    struct policy_decision d;

    if (res->rep == SOCKS5_REP_COMMAND_NOT_SUPPORTED) {
        log_notice("route %u: the last parent cannot RESOLVE; ferry resolves the name itself",
                   s->route);
        session_resolve_here(s);
        return;
    }
    if (res->rep != SOCKS5_REP_SUCCEEDED || !bound_addr(res->bound, &a)) {
        session_fail(s, res->rep != SOCKS5_REP_SUCCEEDED ? res->rep
                                                         : SOCKS5_REP_GENERAL_FAILURE);
        return;
    }
    d = session_policy(s, &a);
    if (d.verdict != ACL_VERDICT_PASS)
        d.verdict = ACL_VERDICT_BLOCK;
    if (!session_allowed(s, &d))
        return;
    session_answer_resolve(s, &a, 1);
}

/* BIND through parents: the first reply names where the last parent listens. */
static void on_bind_upstream(struct session *s, const struct outbound_result *res)
{
    struct addr a;

    if (res->interim) {
        if (!bound_addr(res->bound, &a)) {
            /* The chain still waits for the second reply: stop it, or it would answer a
             * session already closing. */
            s->nego->outbound->cancel(s->nego->outbound_conn);
            s->nego->outbound_conn = NULL;
            session_fail(s, SOCKS5_REP_GENERAL_FAILURE);
            return;
        }
        s->target_addr = *res->peer;
        if (session_reply(s, SOCKS5_REP_SUCCEEDED, &a.u.sa) < 0) {
            session_end(s, END_CLIENT_ERROR);
            return;
        }
        session_enter(s, S_BIND_WAIT);
        return;
    }
    s->nego->outbound_conn = NULL;
    if (res->fd < 0) {
        session_fail(s, res->rep);
        return;
    }
    s->target_fd = res->fd;
    s->target_tunnel = res->tunnel;
    if (!bound_addr(res->bound, &a))
        a = *res->peer;
    session_reply_then_relay(s, &a);
}

/* UDP ASSOCIATE at a parent: its control connection is ours to keep, its relay our target. */
static void on_udp_upstream(struct session *s, const struct outbound_result *res)
{
    struct addr relay;

    if (res->fd < 0) {
        session_fail(s, res->rep);
        return;
    }
    s->target_fd = res->fd;
    s->target_tunnel = res->tunnel;
    if (!bound_addr(res->bound, &relay)) {
        session_fail(s, SOCKS5_REP_GENERAL_FAILURE);
        return;
    }
    /* A parent answering 0.0.0.0 or :: means "the address you reached me on" (one hop). */
    if (addr_is_unspecified(&relay)) {
        uint16_t port = addr_port(&relay);

        relay = *res->peer;
        addr_set_port(&relay, port);
    }
    s->target_addr = relay;
    session_udp(s, &relay, res->sealed);
}

static void on_outbound(const struct outbound_result *res, void *arg)
{
    struct session *s = arg;
    struct addr bound;

    if (s->cfg->routes != NULL)
        s->via = res->via;
    if (s->cmd == REQUEST_BIND) {
        on_bind_upstream(s, res);
        return;
    }
    s->nego->outbound_conn = NULL;
    if (s->cmd == REQUEST_RESOLVE) {
        on_resolved_upstream(s, res);
        return;
    }
    if (s->cmd == REQUEST_UDP_ASSOCIATE) {
        on_udp_upstream(s, res);
        return;
    }
    if (res->fd < 0 && res->stream == NULL) {
        log_debug("connect failed: %s", res->err != 0 ? strerror(res->err) : reply_name(res->rep));
        session_fail(s, res->rep);
        return;
    }
    s->target_fd = res->fd;
    s->target_stream = res->stream;
    s->target_tunnel = res->tunnel;
    s->target_addr = *res->peer;
    /* BND.ADDR and BND.PORT are ours, also through parents; a tunnel stream has none (0). */
    bound.len = sizeof(bound.u);
    if (res->tunnel) {
        memset(&bound, 0, sizeof(bound));
        bound.u.sa.sa_family = AF_INET;
        bound.len = sizeof(struct sockaddr_in);
    } else if (getsockname(res->fd, &bound.u.sa, &bound.len) < 0) {
        session_fail(s, SOCKS5_REP_GENERAL_FAILURE);
        return;
    }
    session_reply_then_relay(s, &bound);
}

/*
 * Start the outbound: direct (rt NULL) over addrs, or the route's paths toward dest (a name
 * passed on, or an address).
 */
static void session_outbound(struct session *s, const struct route *rt, const struct socks_dest *dest,
                             const struct addr *addrs, size_t n)
{
    struct outbound_request req = {
        .loop = s->ctx->loop,
        .resolver = s->ctx->resolver,
        .cmd = session_socks5_cmd(s),
        .dest = dest,
        .addrs = addrs,
        .naddrs = n,
        .routes = s->cfg->routes,
        .route = rt,
        .route_no = s->route,
        .metrics = &s->ctx->counters->metrics,
        .stream_ok = s->cmd == REQUEST_CONNECT,
    };

    s->nego->outbound = rt != NULL ? &outbound_chain : &outbound_direct;
    if (s->cfg->routes != NULL)
        s->via = "direct";
    session_enter(s, S_CONNECTING);
    s->nego->outbound_conn = s->nego->outbound->start(&req, on_outbound, s);
    if (s->nego->outbound_conn == NULL)
        session_fail(s, reply_from_errno(errno));
}

/*
 * UDP ASSOCIATE: direct, or through the route's parents (the last a SOCKS5 one) when a route
 * decides without a destination (a route with 'to' or 'port' conditions cannot: the
 * association then goes direct, and its datagrams are checked one by one as always).
 */
static void session_udp_route(struct session *s)
{
    int r = session_route(s, NULL);
    const struct route *rt = r > 0 ? routes_get(s->cfg->routes, (unsigned)r) : NULL;
    struct socks_dest any = {.type = DEST_IPV4};

    if (s->cfg->routes != NULL)
        s->via = "direct";
    if (!route_goes_up(rt)) {
        session_udp(s, NULL, NULL);
        return;
    }
    s->route = (unsigned)r;
    session_outbound(s, rt, &any, NULL, 0);
}

/* --- dispatch ---------------------------------------------------------------------------- */

/* Act on the request's addresses: resolved from a name, or the one IP the client sent. */
static void session_dispatch(struct session *s, const struct addr *addrs, size_t n)
{
    struct negotiation *ng = s->nego;
    const struct socks_dest *asked = &ng->req.dest;
    const struct route *rt;
    struct socks_dest dest;

    if (ng->route < 0)
        ng->route = n > 0 ? session_route(s, &addrs[0]) : 0;
    if (ng->route < 0)
        ng->route = 0;
    s->route = (unsigned)ng->route;
    rt = routes_get(s->cfg->routes, s->route);
    if (rt != NULL && (route_goes_up(rt) || (session_connects(s) && rt->npaths > 1))) {
        /* Through parents: the name when it alone was judged and the exit resolves it, else
         * the address that was checked here. */
        if (asked->type == DEST_NAME && ng->name_decides && !rt->resolve_local)
            dest = *asked;
        else if (n > 0)
            socks_dest_from_addr(&dest, &addrs[0], asked->port);
        else
            dest = *asked;
        if (s->cmd == REQUEST_CONNECT || s->cmd == REQUEST_FORWARD || s->cmd == REQUEST_BIND) {
            session_outbound(s, rt, &dest, addrs, n);
            return;
        }
    }
    if (s->cfg->routes != NULL)
        s->via = "direct";
    switch (s->cmd) {
    case REQUEST_CONNECT:
    case REQUEST_FORWARD: /* an HTTP request to forward: connected like CONNECT */
        session_outbound(s, NULL, asked, addrs, n);
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
    struct negotiation *ng = s->nego;
    struct addr passed[RESOLVER_MAX_ADDRS];
    struct policy_decision d;
    size_t n;

    ng->query = NULL;
    if (res->status != RESOLVER_OK || res->count == 0) {
        char name[LOG_ESCAPED(DEST_NAME_MAX)];
        const struct route *rt = routes_get(s->cfg->routes, ng->route > 0 ? (unsigned)ng->route : 0);

        log_debug("resolving %s failed: %s",
                  log_escape(ng->req.dest.name, strlen(ng->req.dest.name), name, sizeof(name)),
                  resolver_status_name(res->status));
        /* Resolved here only for a direct alternative: the parents may still know the name. */
        if (rt != NULL && route_goes_up(rt) && ng->name_decides && !rt->resolve_local &&
            session_connects(s)) {
            s->route = (unsigned)ng->route;
            session_outbound(s, rt, &ng->req.dest, NULL, 0);
            return;
        }
        session_fail(s, reply_from_resolver(res->status));
        return;
    }
    /* Every address is checked, and only those that passed are used: no second lookup. */
    n = session_filter(s, res->addrs, res->count, passed, &d);
    if (!session_allowed(s, &d))
        return;
    session_dispatch(s, passed, n);
}

/* Resolve the asked name here (RESOLVE a parent could not answer, or no parent to ask). */
static void session_resolve_here(struct session *s)
{
    struct negotiation *ng = s->nego;

    ng->route = 0; /* answered here: no route again */
    session_enter(s, S_RESOLVING);
    ng->query = resolver_lookup(s->ctx->resolver, ng->req.dest.name, on_resolved, s);
    if (ng->query == NULL)
        session_fail(s, SOCKS5_REP_GENERAL_FAILURE);
}

void session_request(struct session *s)
{
    struct negotiation *ng = s->nego;
    const struct socks_dest *asked = &ng->req.dest;
    struct policy_decision d;
    struct addr target;

    if (!session_within_limits(s))
        return;
    switch (s->cmd) {
    case REQUEST_UDP_ASSOCIATE:
        d = session_policy(s, NULL);
        if (session_allowed(s, &d))
            session_udp_route(s);
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
    ng->route = -1; /* decided on the address */
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
    /*
     * A route decided by the name sends it on to be resolved at the exit (socks5h), unless the
     * route resolves here, a rule needs the address to decide, or a direct alternative needs
     * addresses.
     */
    ng->name_decides = d.verdict == ACL_VERDICT_PASS;
    ng->route = session_route(s, NULL);
    if (ng->route > 0) {
        const struct route *rt = routes_get(s->cfg->routes, (unsigned)ng->route);

        if (route_goes_up(rt) && ng->name_decides && !rt->resolve_local &&
            !(rt->has_direct && session_connects(s)) &&
            (session_connects(s) || s->cmd == REQUEST_BIND || s->cmd == REQUEST_RESOLVE)) {
            s->route = (unsigned)ng->route;
            if (s->cmd == REQUEST_RESOLVE && rt->paths[0].nhops > 0 &&
                s->cfg->routes->parents[rt->paths[0].hops[rt->paths[0].nhops - 1]].kind !=
                    PARENT_SOCKS5 &&
                s->cfg->routes->parents[rt->paths[0].hops[rt->paths[0].nhops - 1]].kind !=
                    PARENT_FERRY) {
                session_resolve_here(s);
                return;
            }
            session_outbound(s, rt, asked, NULL, 0);
            return;
        }
    }
    session_enter(s, S_RESOLVING);
    ng->query = resolver_lookup(s->ctx->resolver, asked->name, on_resolved, s);
    if (ng->query == NULL)
        session_fail(s, SOCKS5_REP_GENERAL_FAILURE);
}
