/*
 * The session state machine. Each state waits on one thing (client bytes, the auth pool, the
 * resolver, the connector, the client draining a reply, the relay) and one timer bounds it:
 *
 *   S_WAIT_GREETING -> [S_WAIT_AUTH -> S_VERIFYING] -> S_WAIT_REQUEST -> [S_RESOLVING]
 *       -> S_CONNECTING -> S_REPLYING -> S_RELAY
 *
 * and S_CLOSING (flush a failure reply, then close) from any of them. session_close is the one
 * release path for everything a session owns.
 */
#include "config.h"

#include "ferry/session.h"

#include <errno.h>
#include <ev.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ferry/binder.h"
#include "ferry/conf.h"
#include "ferry/connector.h"
#include "ferry/log.h"
#include "ferry/net.h"
#include "ferry/policy.h"
#include "ferry/relay.h"
#include "ferry/reply.h"
#include "ferry/limits.h"
#include "ferry/resolver.h"
#include "ferry/snapshot.h"
#include "ferry/socks4.h"
#include "ferry/socks5.h"
#include "ferry/udp.h"
#include "ferry/auth_users.h"
#include "ferry/auth_verify.h"

/*
 * Negotiation input: greeting (257) + sub-negotiation (513) + request (262) may all arrive in
 * one segment, and a client may send its first data right behind them.
 */
#define NEGOTIATION_BUF 2048
#define CONNECT_ATTEMPT_DELAY 0.250 /* RFC 8305 section 8 recommends 250 ms */
/* Sessions beyond max-sessions (or limit sessions-per-client) are told so with a failure
 * reply; past this many more, they are closed at accept. */
#define SESSION_OVERFLOW 64
#define SESSION_CLIENT_OVERFLOW 8
/* Smallest read a bandwidth-limited relay waits for: fewer, larger reads. */
#define THROTTLE_MIN_READ 4096
/* Longest wait for a client to close after a final message. */
#define SESSION_LINGER 2.0

enum session_state {
    S_WAIT_GREETING,
    S_WAIT_AUTH,
    S_VERIFYING,
    S_WAIT_REQUEST,
    S_RESOLVING,
    S_CONNECTING,
    S_REPLYING,
    S_BIND_WAIT,
    S_UDP,
    S_RELAY,
    S_CLOSING,
};

/* Why a session ended, for the access line. */
enum session_end {
    END_NONE,
    END_DONE,
    END_REPLIED_FAILURE,
    END_CLIENT_GONE,
    END_CLIENT_ERROR,
    END_TARGET_ERROR,
    END_BAD_GREETING,
    END_NO_METHOD,
    END_AUTH_FAILED,
    END_AUTH_LIMITED,
    END_NEGOTIATE_TIMEOUT,
    END_IDLE_TIMEOUT,
    END_REPLY_TIMEOUT,
    END_RELAY_ERROR,
    END_RESOURCES,
    END_SHUTDOWN,
};

static const char *const end_names[] = {
    [END_NONE] = "-",
    [END_DONE] = "eof",
    [END_REPLIED_FAILURE] = "failure-reply",
    [END_CLIENT_GONE] = "client-closed",
    [END_CLIENT_ERROR] = "client-error",
    [END_TARGET_ERROR] = "target-error",
    [END_BAD_GREETING] = "bad-greeting",
    [END_NO_METHOD] = "no-acceptable-method",
    [END_AUTH_FAILED] = "auth-failed",
    [END_AUTH_LIMITED] = "auth-rate-limited",
    [END_NEGOTIATE_TIMEOUT] = "negotiate-timeout",
    [END_IDLE_TIMEOUT] = "idle-timeout",
    [END_REPLY_TIMEOUT] = "reply-timeout",
    [END_RELAY_ERROR] = "relay-error",
    [END_RESOURCES] = "out-of-resources",
    [END_SHUTDOWN] = "shutdown",
};

/* Which limit refused a session, for the access line. */
enum session_limit {
    LIMITED_NONE,
    LIMITED_TOTAL,
    LIMITED_CLIENT,
    LIMITED_USER,
    LIMITED_QUOTA,
    LIMITED_RULE,
};

static const char *const limit_names[] = {
    [LIMITED_NONE] = "-",
    [LIMITED_TOTAL] = "max-sessions",
    [LIMITED_CLIENT] = "sessions-per-client",
    [LIMITED_USER] = "sessions-per-user",
    [LIMITED_QUOTA] = "quota-per-user",
    [LIMITED_RULE] = "rule",
};

/* Reply bytes waiting for the client: two BIND replies, or a RESOLVE_PTR reply with a name. */
#define SESSION_OUT_BUF 272

/* What a session needs only until its relay starts. */
struct negotiation {
    size_t len;
    size_t out_len;
    struct socks_dest dest; /* the request's destination, once requested */
    uint8_t buf[NEGOTIATION_BUF];
    uint8_t out[SESSION_OUT_BUF];
};

struct session {
    struct session_ctx *ctx;
    struct snapshot *snap;    /* the configuration this session started under (a reference) */
    const struct config *cfg; /* &snap->config */
    struct session *prev;
    struct session *next;
    enum session_state state;
    enum session_end end;
    uint8_t version;            /* 4 or 5 once the first byte is read */
    uint8_t cmd;                /* SOCKS5 command code (SOCKS4 codes are mapped) */
    uint8_t rep;                /* SOCKS5 REP sent, 0xff before any */
    bool requested;             /* a request was parsed: dest and cmd are valid */
    enum session_limit limited; /* a limit refuses the request (a failure reply) */
    bool counted_udp;           /* holds one of the client's and the process's UDP slots */
    bool client_eof;            /* client half-closed before the relay started */
    bool refused;               /* the access policy refused the request: see refusal */
    int client_fd;
    int target_fd;
    ev_io client_readable; /* the negotiation's; relay_start takes it over (its callback too) */
    ev_io client_writable;
    ev_timer timer;
    ev_tstamp started;
    struct addr client_addr;
    struct addr target_addr;         /* the address connected to */
    char *target;                    /* the destination as asked, for the access line once nego is
                                      * gone (the relay runs); NULL before */
    char *user;                      /* authenticated user name */
    struct negotiation *nego;        /* freed when the relay starts */
    struct auth_verify_wait *verify; /* a password check in flight */
    struct resolver_query *query;
    struct connector *connector;
    struct relay *relay;
    struct binder *binder;
    struct udp_assoc *udp;
    const struct addr *advertise; /* the listener's public address, or NULL */
    struct policy_decision refusal;
    struct limit *client_limit;       /* the client IP's entry (a reference, one session counted) */
    struct limit *user_limit;         /* the user's entry once authenticated, likewise */
    struct limit *rule_limit;         /* the passing rule's entry when it has limits, likewise */
    struct limit_rate rule_bandwidth; /* that rule's bandwidth, rate 0 for none */
};

static void session_advance(struct session *s);
static void session_start_relay(struct session *s);

static const char *cmd_name(const struct session *s)
{
    if (!s->requested)
        return "-";
    switch (s->cmd) {
    case SOCKS5_CMD_CONNECT:
        return "connect";
    case SOCKS5_CMD_BIND:
        return "bind";
    case SOCKS5_CMD_UDP_ASSOCIATE:
        return "udp";
    case SOCKS5_CMD_RESOLVE:
        return "resolve";
    case SOCKS5_CMD_RESOLVE_PTR:
        return "resolve-ptr";
    default:
        return "?";
    }
}

/* Bytes each way, relayed by TCP or by the UDP association; *us is filled for the latter. */
static void session_bytes(const struct session *s, uint64_t *up, uint64_t *down,
                          struct udp_stats *us)
{
    *up = *down = 0;
    if (s->relay != NULL)
        relay_bytes(s->relay, up, down);
    if (s->udp != NULL) {
        udp_assoc_stats(s->udp, us);
        *up = us->up_bytes;
        *down = us->down_bytes;
    }
}

/* The one access line of a session. */
static void session_log(const struct session *s)
{
    char client[ADDR_STRLEN], target[SOCKS_DEST_STRLEN], connected[ADDR_STRLEN];
    char udp[256] = "", rule[48] = "";
    uint64_t up, down;
    struct udp_stats us;

    if (!log_enabled(LOG_INFO))
        return;

    session_bytes(s, &up, &down, &us);
    if (s->udp != NULL) {
        snprintf(udp, sizeof(udp),
                 " udp=up:%" PRIu64 "/down:%" PRIu64 " drop=stranger:%" PRIu64 ",frag:%" PRIu64
                 ",malformed:%" PRIu64 ",filtered:%" PRIu64 ",resolve:%" PRIu64 ",queue:%" PRIu64
                 ",send:%" PRIu64 ",oversize:%" PRIu64 ",blocked:%" PRIu64,
                 us.up_packets, us.down_packets, us.drop_stranger, us.drop_frag, us.drop_malformed,
                 us.drop_filtered, us.drop_resolve, us.drop_queue, us.drop_send, us.drop_oversize,
                 us.drop_blocked);
    }
    addr_format(&s->client_addr, client, sizeof(client));
    if (s->target != NULL)
        snprintf(target, sizeof(target), "%s", s->target);
    else if (s->requested && s->nego != NULL)
        socks_dest_format(&s->nego->dest, target, sizeof(target));
    else
        strcpy(target, "-");
    if (s->target_fd >= 0 || s->udp != NULL || s->target_addr.len > 0)
        addr_format(&s->target_addr, connected, sizeof(connected));
    else
        strcpy(connected, "-");
    if (s->refused && s->refusal.private_dest)
        strcpy(rule, " rule=private");
    else if (s->refused)
        snprintf(rule, sizeof(rule), " rule=request:%u", s->refusal.rule);
    else if (s->limited == LIMITED_RULE)
        snprintf(rule, sizeof(rule), " limit=rule:%u", s->refusal.rule);
    else if (s->limited != LIMITED_NONE)
        snprintf(rule, sizeof(rule), " limit=%s", limit_names[s->limited]);
    log_info("session client=%s user=%s cmd=%s%s target=%s addr=%s reply=%s%s up=%" PRIu64
             " down=%" PRIu64 " duration=%.3f end=%s%s",
             client, s->user != NULL ? s->user : "-",
             s->requested && s->version == 4 ? "socks4-" : "", cmd_name(s), target, connected,
             s->rep == 0xff ? "-" : reply_name(s->rep), rule, up, down,
             ev_now(s->ctx->loop) - s->started, end_names[s->end], udp);
}

/* Add the session's figures to the worker's counters (relaxed: only totals for logs). */
static void session_count(const struct session *s)
{
    struct session_counters *c = s->ctx->counters;
    uint64_t up, down;
    struct udp_stats us;

    session_bytes(s, &up, &down, &us);
    atomic_fetch_add_explicit(&c->sessions, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->up, up, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->down, down, memory_order_relaxed);
    if (s->refused)
        atomic_fetch_add_explicit(&c->refused, 1, memory_order_relaxed);
    else if (s->limited != LIMITED_NONE)
        atomic_fetch_add_explicit(&c->limited, 1, memory_order_relaxed);
    else if (s->rep != 0xff && s->rep != SOCKS5_REP_SUCCEEDED)
        atomic_fetch_add_explicit(&c->failed, 1, memory_order_relaxed);
}

/* The one release path: everything the session owns goes here. */
static void session_close(struct session *s)
{
    struct session_ctx *ctx = s->ctx;
    struct ev_loop *loop = ctx->loop;

    /* Counted before the access line, so whoever has read the line sees it in the totals. */
    session_count(s);
    session_log(s);
    if (s->verify != NULL)
        auth_verify_cancel(ctx->verifier, s->verify);
    if (s->query != NULL)
        resolver_cancel(s->query);
    if (s->connector != NULL)
        connector_cancel(s->connector);
    if (s->binder != NULL)
        binder_cancel(s->binder);
    if (s->udp != NULL)
        udp_assoc_free(s->udp);
    if (s->counted_udp) {
        limits_udp_leave(ctx->limits, s->client_limit);
        limits_udp_total_leave(ctx->limits);
    }
    if (s->user_limit != NULL) {
        limits_session_leave(ctx->limits, s->user_limit);
        limits_release(ctx->limits, s->user_limit);
    }
    if (s->rule_limit != NULL) {
        if (s->limited != LIMITED_RULE)
            limits_session_leave(ctx->limits, s->rule_limit);
        limits_release(ctx->limits, s->rule_limit);
    }
    limits_session_leave(ctx->limits, s->client_limit);
    limits_release(ctx->limits, s->client_limit);
    limits_total_leave(ctx->limits);
    relay_free(s->relay);
    ev_io_stop(loop, &s->client_readable);
    ev_io_stop(loop, &s->client_writable);
    ev_timer_stop(loop, &s->timer);
    if (s->client_fd >= 0)
        close(s->client_fd);
    if (s->target_fd >= 0)
        close(s->target_fd);
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        ctx->sessions = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    atomic_fetch_sub_explicit(&ctx->counters->live, 1, memory_order_relaxed);
    snapshot_unref(s->snap);
    free(s->target);
    free(s->user);
    free(s->nego);
    free(s);
}

static void session_end(struct session *s, enum session_end why)
{
    if (s->end == END_NONE)
        s->end = why;
    session_close(s);
}

static void session_arm_timer(struct session *s, double seconds)
{
    ev_timer_stop(s->ctx->loop, &s->timer);
    if (seconds > 0) {
        ev_timer_set(&s->timer, seconds, 0.);
        ev_timer_start(s->ctx->loop, &s->timer);
    }
}

/* Write what is queued in s->out. Returns 0 when all is written, 1 when some waits, -1 on error. */
static int session_flush(struct session *s)
{
    struct negotiation *ng = s->nego;

    while (ng->out_len > 0) {
        ssize_t n = send(s->client_fd, ng->out, ng->out_len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                ev_io_start(s->ctx->loop, &s->client_writable);
                return 1;
            }
            return -1;
        }
        memmove(ng->out, ng->out + n, ng->out_len - (size_t)n);
        ng->out_len -= (size_t)n;
    }
    ev_io_stop(s->ctx->loop, &s->client_writable);
    return 0;
}

/* Queue bytes for the client and try to send them now. Returns as session_flush. */
static int session_send(struct session *s, const uint8_t *bytes, size_t len)
{
    struct negotiation *ng = s->nego;

    if (len > sizeof(ng->out) - ng->out_len) {
        errno = ENOBUFS;
        return -1;
    }
    memcpy(ng->out + ng->out_len, bytes, len);
    ng->out_len += len;
    return session_flush(s);
}

/*
 * Close after a final message (failure reply, auth failure, no method): once it is written,
 * send FIN and discard what the client still sends until its EOF. Closing with unread input
 * would make the kernel answer with RST, which can destroy the reply before the client reads it.
 */
static void session_linger(struct session *s)
{
    int r;

    s->state = S_CLOSING;
    r = session_flush(s);
    if (r < 0) {
        session_close(s);
        return;
    }
    if (r == 0 && shutdown(s->client_fd, SHUT_WR) < 0) {
        session_close(s);
        return;
    }
    ev_io_start(s->ctx->loop, &s->client_readable);
    session_arm_timer(s, SESSION_LINGER < s->cfg->timeout_negotiate ? SESSION_LINGER
                                                                    : s->cfg->timeout_negotiate);
}

/* Send the SOCKS reply for the request, in the client's protocol version. */
static int session_reply(struct session *s, uint8_t rep, const struct sockaddr *bound)
{
    uint8_t msg[SOCKS5_REPLY_MAX];
    size_t len;

    s->rep = rep;
    if (s->version == SOCKS4_VERSION)
        len = socks4_encode_reply(msg, reply_socks4_from_socks5(rep), bound);
    else
        len = socks5_encode_reply(msg, rep, bound);
    return session_send(s, msg, len);
}

/* Answer with a failure and close once the reply is out (or the client stops reading). */
static void session_fail(struct session *s, uint8_t rep)
{
    s->end = END_REPLIED_FAILURE;
    session_reply(s, rep, NULL);
    session_linger(s);
}

/* Drop n parsed bytes from the front of the negotiation buffer. */
static void session_consume(struct session *s, size_t n)
{
    struct negotiation *ng = s->nego;

    memmove(ng->buf, ng->buf + n, ng->len - n);
    ng->len -= n;
}

static bool session_method_allowed(const struct session *s, uint8_t method)
{
    const struct config *cfg = s->cfg;

    for (size_t i = 0; i < cfg->nmethods; i++) {
        if (cfg->methods[i] == method)
            return true;
    }
    return false;
}

/* Send the success reply naming `bound`, then relay (once the reply is out). */
static void session_reply_then_relay(struct session *s, const struct addr *bound)
{
    int one = 1;

    /* The proxy must not add Nagle delays the endpoints did not ask for (the client's
     * socket has TCP_NODELAY from its listener). */
    setsockopt(s->target_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

    switch (session_reply(s, SOCKS5_REP_SUCCEEDED, &bound->u.sa)) {
    case 0:
        session_start_relay(s);
        break;
    case 1:
        s->state = S_REPLYING;
        ev_io_stop(s->ctx->loop, &s->client_readable);
        session_arm_timer(s, s->cfg->timeout_negotiate);
        break;
    default:
        session_end(s, END_CLIENT_ERROR);
        break;
    }
}

static void on_connected(int fd, int err, const struct addr *peer, void *arg)
{
    struct session *s = arg;
    struct addr bound;

    s->connector = NULL;
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
    s->state = S_CONNECTING;
    session_arm_timer(s, s->cfg->timeout_connect);
    s->connector = connector_start(s->ctx->loop, addrs, n, s->nego->dest.port,
                                   CONNECT_ATTEMPT_DELAY, on_connected, s);
    if (s->connector == NULL)
        session_fail(s, reply_from_errno(errno));
}

/* The address the client reached us on. */
static int session_local_addr(const struct session *s, struct addr *local)
{
    local->len = sizeof(local->u);
    return getsockname(s->client_fd, &local->u.sa, &local->len);
}

/* What replies report for a socket bound at `bound`: the listener's advertised IP if set. */
static struct addr session_advertised(const struct session *s, const struct addr *bound)
{
    struct addr shown = *bound;

    if (s->advertise != NULL) {
        shown = *s->advertise;
        addr_set_port(&shown, addr_port(bound));
    }
    return shown;
}

static void on_bind_accepted(int fd, int err, const struct addr *peer, void *arg)
{
    struct session *s = arg;

    s->binder = NULL;
    if (fd < 0) {
        log_debug("bind: accept failed: %s", strerror(err));
        session_fail(s, reply_from_errno(err));
        return;
    }
    s->target_fd = fd;
    s->target_addr = *peer;
    /* Second reply: the peer that connected (RFC 1928 section 4, BIND). */
    session_reply_then_relay(s, peer);
}

/*
 * BIND: listen on the address we would use to reach the expected peer, tell the client where
 * (first reply), and wait for that peer. A peer of 0.0.0.0 or :: means any.
 */
static void session_bind(struct session *s, const struct addr *peers, size_t n)
{
    const struct config *cfg = s->cfg;
    struct addr local, bound, shown;
    bool unspecified = n == 0 || addr_is_unspecified(&peers[0]);
    bool any = cfg->bind_any_peer || unspecified;

    if (unspecified || net_route_source(&peers[0], &local) < 0) {
        if (session_local_addr(s, &local) < 0) {
            session_fail(s, reply_from_errno(errno));
            return;
        }
    }
    if (s->version == SOCKS4_VERSION)
        socks4_local_address(&local);
    s->binder = binder_start(s->ctx->loop, &local, cfg->bind_port_min, cfg->bind_port_max,
                             any ? NULL : peers, any ? 0 : n, on_bind_accepted, s, &bound);
    if (s->binder == NULL) {
        log_warn("bind: cannot listen: %s", strerror(errno));
        session_fail(s, reply_from_errno(errno));
        return;
    }
    s->target_addr = bound;
    shown = session_advertised(s, &bound);
    if (session_reply(s, SOCKS5_REP_SUCCEEDED, &shown.u.sa) < 0) {
        session_end(s, END_CLIENT_ERROR);
        return;
    }
    s->state = S_BIND_WAIT;
    session_arm_timer(s, cfg->timeout_bind);
}

/* --- access policy (policy.h): after authentication, before any DNS query ---------------- */

static unsigned session_acl_command(const struct session *s)
{
    switch (s->cmd) {
    case SOCKS5_CMD_BIND:
        return ACL_CMD_BIND;
    case SOCKS5_CMD_UDP_ASSOCIATE:
        return ACL_CMD_UDP;
    case SOCKS5_CMD_RESOLVE:
    case SOCKS5_CMD_RESOLVE_PTR:
        return ACL_CMD_RESOLVE;
    default:
        return ACL_CMD_CONNECT;
    }
}

/*
 * Check the request with the name it asked for (if any) and dest, the address to judge (NULL
 * before resolution). UDP ASSOCIATE names no destination: its datagrams are checked one by one.
 */
static struct policy_decision session_policy(const struct session *s, const struct addr *dest)
{
    struct acl_request req = {
        .client = &s->client_addr,
        .user = s->user,
        .command = session_acl_command(s),
        .port = s->nego->dest.port,
    };

    if (s->cmd != SOCKS5_CMD_UDP_ASSOCIATE) {
        req.name = s->nego->dest.type == DEST_NAME ? s->nego->dest.name : NULL;
        req.dest = dest;
    }
    return policy_check_request(s->cfg, &req);
}

/* The notice line of a rule with the 'log' flag. */
static void session_log_rule(const struct session *s, const struct policy_decision *d)
{
    char client[ADDR_STRLEN], target[SOCKS_DEST_STRLEN];

    addr_format(&s->client_addr, client, sizeof(client));
    socks_dest_format(&s->nego->dest, target, sizeof(target));
    log_notice("request rule %u (line %u) %s: client=%s user=%s cmd=%s target=%s", d->rule, d->line,
               d->verdict == ACL_VERDICT_BLOCK ? "block" : "pass", client,
               s->user != NULL ? s->user : "-", cmd_name(s), target);
}

/*
 * The limits of the pass rule that decided (sessions N, bandwidth BYTES), taken once per
 * session. Returns false when its session limit is reached (reply 0x01 is on its way).
 */
static bool session_rule_limits(struct session *s, const struct policy_decision *d)
{
    struct limits *l = s->ctx->limits;

    if (s->rule_limit != NULL || (d->max_sessions == 0 && d->bandwidth == 0))
        return true;
    s->rule_limit = limits_rule(l, s->snap->generation, d->rule);
    if (s->rule_limit == NULL) {
        session_fail(s, SOCKS5_REP_GENERAL_FAILURE);
        return false;
    }
    if (!limits_session_enter(l, s->rule_limit, d->max_sessions)) {
        log_notice("request rule %u (line %u): its limit of %u sessions is reached", d->rule,
                   d->line, d->max_sessions);
        s->limited = LIMITED_RULE;
        s->refusal = *d;
        session_fail(s, SOCKS5_REP_GENERAL_FAILURE);
        return false;
    }
    if (d->bandwidth > 0) {
        s->rule_bandwidth.rate = (double)d->bandwidth;
        s->rule_bandwidth.burst =
            (double)d->bandwidth / 10 > 16384 ? (double)d->bandwidth / 10 : 16384;
    }
    return true;
}

/* Act on a decision: true to go on; false when refused (reply 0x02 / 91 is on its way). */
static bool session_allowed(struct session *s, const struct policy_decision *d)
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

/* The per-datagram policy of a UDP association (udp.h): name first, then each address. */
static bool session_udp_policy(void *arg, const char *name, const struct addr *to, uint16_t port)
{
    const struct session *s = arg;
    struct acl_request req = {
        .client = &s->client_addr,
        .user = s->user,
        .command = ACL_CMD_UDP,
        .name = name,
        .dest = to,
        .port = port,
    };
    struct policy_decision d = policy_check_request(s->cfg, &req);

    /* Rules marked 'log' are not logged per datagram: the access line counts what was blocked. */
    if (to == NULL)
        return d.verdict != ACL_VERDICT_BLOCK;
    return d.verdict == ACL_VERDICT_PASS;
}

/* Take one of the client's and one of the process's UDP association slots. */
static bool session_udp_slot(struct session *s)
{
    struct limits *l = s->ctx->limits;

    if (!limits_udp_total_enter(l, s->cfg->udp_max_total))
        return false;
    if (!limits_udp_enter(l, s->client_limit, s->cfg->udp_max_per_client)) {
        limits_udp_total_leave(l);
        return false;
    }
    s->counted_udp = true;
    return true;
}

/* UDP ASSOCIATE (RFC 1928 section 7): open the association and tell the client where to send. */
static void session_udp(struct session *s)
{
    struct session_ctx *ctx = s->ctx;
    const struct config *cfg = s->cfg;
    struct udp_assoc_params p = {
        .loop = ctx->loop,
        .config = cfg,
        .resolver = ctx->resolver,
        .batch = ctx->udp_batch,
        .client = s->client_addr,
        .policy = session_udp_policy,
        .policy_arg = s,
    };
    struct addr claimed, shown;

    if (!session_udp_slot(s)) {
        log_notice("udp: association limit reached (max-total %u, max-per-client %u)",
                   cfg->udp_max_total, cfg->udp_max_per_client);
        session_fail(s, SOCKS5_REP_GENERAL_FAILURE);
        return;
    }
    /*
     * Datagrams are taken only from the control connection's IP. A claimed port counts only
     * when the claimed IP is that IP: behind NAT the client cannot know its outside port, so
     * it is learned from the first datagram instead.
     */
    if (s->nego->dest.type != DEST_NAME && socks_dest_to_addr(&s->nego->dest, &claimed) == 0 &&
        addr_same_ip(&claimed, &s->client_addr))
        p.client_port = s->nego->dest.port;
    if (cfg->udp_address.len > 0)
        p.local = cfg->udp_address;
    else if (session_local_addr(s, &p.local) < 0) {
        session_fail(s, reply_from_errno(errno));
        return;
    }
    s->udp = udp_assoc_start(&p);
    if (s->udp == NULL) {
        log_warn("udp: cannot open an association: %s", strerror(errno));
        session_fail(s, reply_from_errno(errno));
        return;
    }
    s->target_addr = *udp_assoc_local(s->udp);
    shown = session_advertised(s, &s->target_addr);
    if (session_reply(s, SOCKS5_REP_SUCCEEDED, &shown.u.sa) < 0) {
        session_end(s, END_CLIENT_ERROR);
        return;
    }
    /* The association lives as long as the control connection, or until it idles out. */
    s->state = S_UDP;
    session_arm_timer(s, cfg->timeout_udp);
}

/* Tor's RESOLVE answer: the first IPv4 address, else the first IPv6 one. */
static void session_answer_resolve(struct session *s, const struct addr *addrs, size_t n)
{
    const struct addr *pick = NULL;

    for (size_t i = 0; i < n && pick == NULL; i++) {
        if (addr_family(&addrs[i]) == AF_INET)
            pick = &addrs[i];
    }
    if (pick == NULL && s->version == SOCKS5_VERSION && n > 0)
        pick = &addrs[0];
    if (pick == NULL) {
        /* SOCKS4a can only carry IPv4. */
        session_fail(s, SOCKS5_REP_ADDRESS_TYPE_NOT_SUPPORTED);
        return;
    }
    s->target_addr = *pick;
    s->end = END_DONE;
    session_reply(s, SOCKS5_REP_SUCCEEDED, &pick->u.sa);
    session_linger(s);
}

static void on_ptr_resolved(enum resolver_status status, const char *name, void *arg)
{
    struct session *s = arg;
    uint8_t msg[SESSION_OUT_BUF];
    size_t len;

    s->query = NULL;
    if (status != RESOLVER_OK) {
        session_fail(s, reply_from_resolver(status));
        return;
    }
    len = socks5_encode_reply_name(msg, sizeof(msg), SOCKS5_REP_SUCCEEDED, name, 0);
    if (len == 0) {
        session_fail(s, SOCKS5_REP_GENERAL_FAILURE);
        return;
    }
    s->rep = SOCKS5_REP_SUCCEEDED;
    s->end = END_DONE;
    session_send(s, msg, len);
    session_linger(s);
}

/* Act on the request's addresses: resolved from a name, or the one IP the client sent. */
static void session_dispatch(struct session *s, const struct addr *addrs, size_t n)
{
    switch (s->cmd) {
    case SOCKS5_CMD_CONNECT:
        session_connect(s, addrs, n);
        break;
    case SOCKS5_CMD_BIND:
        session_bind(s, addrs, n);
        break;
    case SOCKS5_CMD_RESOLVE:
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

    s->query = NULL;
    if (res->status != RESOLVER_OK || res->count == 0) {
        log_debug("resolving %s failed: %s", s->nego->dest.name, resolver_status_name(res->status));
        session_fail(s, reply_from_resolver(res->status));
        return;
    }
    /* Every address is checked, and only those that passed are used: no second lookup. */
    n = session_filter(s, res->addrs, res->count, passed, &d);
    if (!session_allowed(s, &d))
        return;
    session_dispatch(s, passed, n);
}

/*
 * The limits a request must be within: sessions in total, of this client and of this user
 * (a failure reply, 0x01), and the user's quota (0x02). Returns false when refused.
 */
static bool session_within_limits(struct session *s)
{
    const struct config *cfg = s->cfg;
    struct limits *l = s->ctx->limits;
    char client[ADDR_STRLEN];

    if (s->limited == LIMITED_NONE && s->user_limit != NULL &&
        limits_quota_left(l, s->user_limit, cfg->quota_per_user, cfg->quota_period,
                          limits_clock()) == 0)
        s->limited = LIMITED_QUOTA;
    if (s->limited == LIMITED_NONE)
        return true;
    addr_format(&s->client_addr, client, sizeof(client));
    switch (s->limited) {
    case LIMITED_TOTAL:
        log_warn("max-sessions (%u) reached, refusing a request from %s", cfg->max_sessions,
                 client);
        break;
    case LIMITED_CLIENT:
        log_notice("limit sessions-per-client (%u) reached by %s", cfg->sessions_per_client,
                   client);
        break;
    case LIMITED_USER:
        log_notice("limit sessions-per-user (%u) reached by user %s", cfg->sessions_per_user,
                   s->user);
        break;
    default:
        log_notice("limit quota-per-user used up by user %s", s->user);
        session_fail(s, SOCKS5_REP_NOT_ALLOWED);
        return false;
    }
    session_fail(s, SOCKS5_REP_GENERAL_FAILURE);
    return false;
}

/* A whole request is in: check what we serve, then resolve or act. */
static void session_handle_request(struct session *s)
{
    const struct config *cfg = s->cfg;
    struct policy_decision d;
    struct addr target;

    s->requested = true;
    if (!session_within_limits(s))
        return;
    switch (s->cmd) {
    case SOCKS5_CMD_UDP_ASSOCIATE:
        d = session_policy(s, NULL);
        if (session_allowed(s, &d))
            session_udp(s);
        return;
    case SOCKS5_CMD_RESOLVE_PTR:
        if (socks_dest_to_addr(&s->nego->dest, &target) < 0) {
            session_fail(s, SOCKS5_REP_ADDRESS_TYPE_NOT_SUPPORTED);
            return;
        }
        d = session_policy(s, &target);
        if (!session_allowed(s, &d))
            return;
        s->state = S_RESOLVING;
        session_arm_timer(s, cfg->timeout_resolve);
        s->query = resolver_lookup_ptr(s->ctx->resolver, &target, on_ptr_resolved, s);
        if (s->query == NULL)
            session_fail(s, SOCKS5_REP_GENERAL_FAILURE);
        return;
    default:
        break;
    }
    if (s->nego->dest.type != DEST_NAME) {
        socks_dest_to_addr(&s->nego->dest, &target);
        d = session_policy(s, &target);
        if (session_allowed(s, &d))
            session_dispatch(s, &target, 1);
        return;
    }
    /* By name, before any DNS query: a refused name is never looked up. */
    d = session_policy(s, NULL);
    if (!session_allowed(s, &d))
        return;
    s->state = S_RESOLVING;
    session_arm_timer(s, cfg->timeout_resolve);
    s->query = resolver_lookup(s->ctx->resolver, s->nego->dest.name, on_resolved, s);
    if (s->query == NULL)
        session_fail(s, SOCKS5_REP_GENERAL_FAILURE);
}

/* Authenticated: count the session for its user. Returns false when the session is gone. */
static bool session_enter_user(struct session *s)
{
    struct limits *l = s->ctx->limits;
    unsigned max = s->cfg->sessions_per_user;

    s->user_limit = limits_user(l, s->user);
    if (s->user_limit == NULL) {
        session_end(s, END_RESOURCES);
        return false;
    }
    limits_session_enter(l, s->user_limit, 0);
    if (max > 0 && limits_sessions_of(l, s->user_limit) > max && s->limited == LIMITED_NONE)
        s->limited = LIMITED_USER;
    return true;
}

static void on_auth_verified(bool ok, void *arg)
{
    struct session *s = arg;
    uint8_t msg[2];

    s->verify = NULL;
    if (ok && !session_enter_user(s))
        return;
    socks5_encode_userpass_reply(msg, ok ? SOCKS5_USERPASS_OK : SOCKS5_USERPASS_FAIL);
    if (!ok) {
        char client[ADDR_STRLEN];

        limits_auth_failed(s->ctx->limits, s->client_limit, &s->cfg->auth_failures, limits_clock());

        log_notice("authentication failed for user '%s' from %s", s->user,
                   addr_format(&s->client_addr, client, sizeof(client)));
        /* RFC 1929 section 2: on failure the server MUST close the connection. */
        s->end = END_AUTH_FAILED;
        session_send(s, msg, sizeof(msg));
        session_linger(s);
        return;
    }
    s->state = S_WAIT_REQUEST;
    if (session_send(s, msg, sizeof(msg)) < 0) {
        session_end(s, END_CLIENT_ERROR);
        return;
    }
    session_advance(s);
}

/* SOCKS5 greeting parsed: pick a method. Returns false when the session is gone or closing. */
static bool session_choose_method(struct session *s, const struct socks5_greeting *g)
{
    const struct config *cfg = s->cfg;
    uint8_t msg[2];
    uint8_t method = socks5_choose_method(g, cfg->methods, cfg->nmethods);

    socks5_encode_method(msg, method);
    if (method == SOCKS5_METHOD_NONE) {
        s->end = END_NO_METHOD;
        session_send(s, msg, sizeof(msg));
        session_linger(s);
        return false;
    }
    s->state = method == SOCKS5_METHOD_USERPASS ? S_WAIT_AUTH : S_WAIT_REQUEST;
    if (session_send(s, msg, sizeof(msg)) < 0) {
        session_end(s, END_CLIENT_ERROR);
        return false;
    }
    return true;
}

/* RFC 1929 sub-negotiation parsed: hand the password to the pool. */
static bool session_verify(struct session *s, struct socks5_userpass *up)
{
    const char *hash = auth_users_lookup(s->snap->users, up->user, up->user_len);
    struct auth_verify_login login;
    enum auth_verify_status st;

    /* A name with a NUL byte cannot be a valid user; it still costs a verification. */
    s->user = strndup(up->user, up->user_len);
    if (s->user == NULL) {
        sodium_memzero(up, sizeof(*up));
        session_end(s, END_RESOURCES);
        return false;
    }
    log_sanitize(s->user);
    login.now = limits_clock();
    if (!limits_auth_allowed(s->ctx->limits, s->client_limit, &s->cfg->auth_failures, login.now)) {
        uint8_t msg[2];
        char client[ADDR_STRLEN];

        /* Too many failures from this IP: refused without checking, so guessing stalls. */
        sodium_memzero(up, sizeof(*up));
        log_notice("login attempts from %s are rate-limited (limit auth-failures): refusing user "
                   "'%s' unchecked",
                   addr_format(&s->client_addr, client, sizeof(client)), s->user);
        socks5_encode_userpass_reply(msg, SOCKS5_USERPASS_FAIL);
        s->end = END_AUTH_LIMITED;
        session_send(s, msg, sizeof(msg));
        session_linger(s);
        return false;
    }
    login.user = up->user;
    login.user_len = up->user_len;
    login.password = up->pass;
    login.pass_len = up->pass_len;
    login.hash = hash;
    login.generation = s->snap->generation;
    login.cache_ttl = s->cfg->auth_cache;
    st = auth_verify_check(s->ctx->verifier, &login, on_auth_verified, s, &s->verify);
    sodium_memzero(up, sizeof(*up));
    if (st == AUTH_VERIFY_CACHED) {
        /* A login verified a moment ago under this users file: no second Argon2id run. */
        log_debug("login of user '%s' verified from the auth cache", s->user);
        on_auth_verified(true, s);
        return false; /* on_auth_verified went on (and may have closed the session) */
    }
    if (st == AUTH_VERIFY_ERROR) {
        uint8_t msg[2];

        /* The pool is full (or out of memory): an honest failure status, then close. */
        log_warn("cannot queue a password verification: %s", strerror(errno));
        socks5_encode_userpass_reply(msg, SOCKS5_USERPASS_FAIL);
        s->end = END_RESOURCES;
        session_send(s, msg, sizeof(msg));
        session_linger(s);
        return false;
    }
    s->state = S_VERIFYING;
    return true;
}

/* Parse as many whole messages as the negotiation buffer holds and act on them. */
static void session_advance(struct session *s)
{
    for (;;) {
        struct negotiation *ng = s->nego;
        enum proto_status st;
        size_t used = 0;

        if (ng->len == 0)
            return;
        switch (s->state) {
        case S_WAIT_GREETING: {
            struct socks5_greeting g;

            if (ng->buf[0] == SOCKS4_VERSION) {
                s->version = SOCKS4_VERSION;
                s->state = S_WAIT_REQUEST;
                continue;
            }
            st = socks5_parse_greeting(ng->buf, ng->len, &g, &used);
            if (st == PROTO_NEED_MORE)
                return;
            if (st == PROTO_ERROR) {
                session_end(s, END_BAD_GREETING);
                return;
            }
            s->version = SOCKS5_VERSION;
            session_consume(s, used);
            if (!session_choose_method(s, &g))
                return;
            break;
        }
        case S_WAIT_AUTH: {
            struct socks5_userpass up;

            st = socks5_parse_userpass(ng->buf, ng->len, &up, &used);
            if (st == PROTO_NEED_MORE)
                return;
            /* Wipe the password bytes from our buffer as soon as they are parsed. */
            sodium_memzero(ng->buf, st == PROTO_OK ? used : ng->len);
            if (st == PROTO_ERROR) {
                sodium_memzero(&up, sizeof(up));
                session_end(s, END_BAD_GREETING);
                return;
            }
            session_consume(s, used);
            if (!session_verify(s, &up))
                return;
            return; /* the pool's answer continues */
        }
        case S_WAIT_REQUEST:
            if (s->version == SOCKS4_VERSION) {
                struct socks4_request req;

                st = socks4_parse_request(ng->buf, ng->len, &req, &used);
                if (st == PROTO_NEED_MORE)
                    return;
                if (st == PROTO_ERROR) {
                    session_fail(s, SOCKS5_REP_GENERAL_FAILURE);
                    return;
                }
                session_consume(s, used);
                s->cmd = req.cmd == SOCKS4_CMD_BIND      ? SOCKS5_CMD_BIND
                         : req.cmd == SOCKS4_CMD_RESOLVE ? SOCKS5_CMD_RESOLVE
                                                         : SOCKS5_CMD_CONNECT;
                s->nego->dest = req.dest;
                if (!session_method_allowed(s, SOCKS5_METHOD_NOAUTH)) {
                    /* SOCKS4 carries no password: only served when no-auth is allowed. */
                    s->requested = true;
                    session_fail(s, SOCKS5_REP_NOT_ALLOWED);
                    return;
                }
            } else {
                struct socks5_request req;
                uint8_t rep = SOCKS5_REP_GENERAL_FAILURE;

                st = socks5_parse_request(ng->buf, ng->len, &req, &used, &rep);
                if (st == PROTO_NEED_MORE)
                    return;
                if (st == PROTO_ERROR) {
                    session_fail(s, rep);
                    return;
                }
                session_consume(s, used);
                s->cmd = req.cmd;
                s->nego->dest = req.dest;
            }
            session_handle_request(s);
            return;
        default:
            /* Resolving or connecting: bytes wait in the buffer as early data. */
            return;
        }
    }
}

static void on_relay_done(int err, void *arg)
{
    struct session *s = arg;

    if (err != 0)
        log_debug("relay ended: %s", strerror(err));
    session_end(s, err == 0 ? END_DONE : END_RELAY_ERROR);
}

/*
 * The relay's throttle (relay.h): the bandwidth buckets of the client IP and of the user, and
 * the user's quota. The smallest allowance of the three wins; what is read counts for all.
 */
static ssize_t session_throttle_allow(void *arg, enum relay_dir_index dir, size_t want,
                                      double *wait)
{
    struct session *s = arg;
    const struct config *cfg = s->cfg;
    struct limits *l = s->ctx->limits;
    enum limit_dir ld = dir == RELAY_UP ? LIMIT_UP : LIMIT_DOWN;
    double now = limits_clock(), w = 0;
    size_t allowed = want;

    if (cfg->bandwidth_per_client.rate > 0) {
        allowed = limits_bandwidth_allow(l, s->client_limit, ld, &cfg->bandwidth_per_client,
                                         allowed, THROTTLE_MIN_READ, now, &w);
        if (allowed == 0) {
            *wait = w;
            return 0;
        }
    }
    if (s->user_limit != NULL && cfg->bandwidth_per_user.rate > 0) {
        allowed = limits_bandwidth_allow(l, s->user_limit, ld, &cfg->bandwidth_per_user, allowed,
                                         THROTTLE_MIN_READ, now, &w);
        if (allowed == 0) {
            *wait = w;
            return 0;
        }
    }
    if (s->rule_bandwidth.rate > 0) {
        allowed = limits_bandwidth_allow(l, s->rule_limit, ld, &s->rule_bandwidth, allowed,
                                         THROTTLE_MIN_READ, now, &w);
        if (allowed == 0) {
            *wait = w;
            return 0;
        }
    }
    if (s->user_limit != NULL && cfg->quota_per_user > 0) {
        uint64_t left =
            limits_quota_left(l, s->user_limit, cfg->quota_per_user, cfg->quota_period, now);
        if (left == 0) {
            log_notice("limit quota-per-user used up by user %s: closing its session", s->user);
            errno = EDQUOT;
            return -1;
        }
        if (left < allowed)
            allowed = (size_t)left;
    }
    return (ssize_t)allowed;
}

static void session_throttle_used(void *arg, enum relay_dir_index dir, size_t n)
{
    struct session *s = arg;
    const struct config *cfg = s->cfg;
    struct limits *l = s->ctx->limits;
    enum limit_dir ld = dir == RELAY_UP ? LIMIT_UP : LIMIT_DOWN;
    double now = limits_clock();

    limits_bandwidth_used(l, s->client_limit, ld, &cfg->bandwidth_per_client, n, now);
    if (s->rule_limit != NULL)
        limits_bandwidth_used(l, s->rule_limit, ld, &s->rule_bandwidth, n, now);
    if (s->user_limit != NULL) {
        limits_bandwidth_used(l, s->user_limit, ld, &cfg->bandwidth_per_user, n, now);
        limits_quota_used(l, s->user_limit, cfg->quota_per_user, cfg->quota_period, n, now);
    }
}

static bool session_throttled(const struct session *s)
{
    const struct config *cfg = s->cfg;

    return cfg->bandwidth_per_client.rate > 0 || s->rule_bandwidth.rate > 0 ||
           (s->user_limit != NULL && (cfg->bandwidth_per_user.rate > 0 || cfg->quota_per_user > 0));
}

static void session_start_relay(struct session *s)
{
    struct negotiation *ng = s->nego;
    struct relay_throttle throttle = {
        .allow = session_throttle_allow,
        .used = session_throttle_used,
        .arg = s,
    };

    ev_io_stop(s->ctx->loop, &s->client_writable);
    s->relay = relay_start(s->ctx->relay_pool, s->ctx->loop, &s->client_readable, s->target_fd,
                           s->cfg->relay_mode, ng->buf, ng->len, s->client_eof,
                           session_throttled(s) ? &throttle : NULL, on_relay_done, s);
    if (s->relay == NULL) {
        session_end(s, END_RESOURCES);
        return;
    }
    /* The negotiation buffers go; the access line keeps the destination as text. */
    {
        char target[SOCKS_DEST_STRLEN];
        socks_dest_format(&ng->dest, target, sizeof(target));
        s->target = strdup(target);
    }
    free(s->nego);
    s->nego = NULL;
    s->state = S_RELAY;
    session_arm_timer(s, s->cfg->timeout_idle);
}

/* S_CLOSING and S_UDP: read and drop client bytes until EOF. */
static void session_drain(struct session *s)
{
    uint8_t sink[512];

    /* Bounded per event: a client streaming junk must not hold the loop. */
    for (int i = 0; i < 64; i++) {
        ssize_t n = recv(s->client_fd, sink, sizeof(sink), 0);
        if (n > 0)
            continue;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        session_end(s, n == 0 ? END_CLIENT_GONE : END_CLIENT_ERROR);
        return;
    }
}

static void on_client_readable(struct ev_loop *loop, ev_io *w, int revents)
{
    struct session *s = w->data;
    struct negotiation *ng = s->nego;
    ssize_t n;

    if (s->state == S_CLOSING || s->state == S_UDP) {
        session_drain(s);
        return;
    }
    if (ng->len == sizeof(ng->buf)) {
        /* Full: the request is whole by now, so this is early data waiting for the target. */
        ev_io_stop(loop, w);
        return;
    }
    n = recv(s->client_fd, ng->buf + ng->len, sizeof(ng->buf) - ng->len, 0);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return;
        session_end(s, END_CLIENT_ERROR);
        return;
    }
    if (n == 0) {
        if (s->state == S_RESOLVING || s->state == S_CONNECTING) {
            /* Request complete, client half-closed: pass the EOF on after connecting. */
            s->client_eof = true;
            ev_io_stop(loop, w);
            return;
        }
        session_end(s, END_CLIENT_GONE);
        return;
    }
    ng->len += (size_t)n;
    session_advance(s);
}

static void on_client_writable(struct ev_loop *loop, ev_io *w, int revents)
{
    struct session *s = w->data;
    int r = session_flush(s);

    if (r < 0) {
        session_end(s, END_CLIENT_ERROR);
        return;
    }
    if (r > 0)
        return;
    if (s->state == S_CLOSING) {
        if (shutdown(s->client_fd, SHUT_WR) < 0)
            session_close(s);
    } else if (s->state == S_REPLYING)
        session_start_relay(s);
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct session *s = w->data;
    double idle, left;

    switch (s->state) {
    case S_RESOLVING:
        resolver_cancel(s->query);
        s->query = NULL;
        log_debug("resolving %s timed out", s->nego->dest.name);
        session_fail(s, reply_from_resolver(RESOLVER_TIMEOUT));
        break;
    case S_CONNECTING:
        connector_cancel(s->connector);
        s->connector = NULL;
        session_fail(s, reply_from_errno(ETIMEDOUT));
        break;
    case S_BIND_WAIT:
        binder_cancel(s->binder);
        s->binder = NULL;
        log_debug("bind: no peer within %.1f s", s->cfg->timeout_bind);
        session_fail(s, reply_from_errno(ETIMEDOUT));
        break;
    case S_UDP:
        left = udp_assoc_last_activity(s->udp) + s->cfg->timeout_udp - ev_now(loop);
        if (left > 0.001) {
            session_arm_timer(s, left);
            return;
        }
        session_end(s, END_IDLE_TIMEOUT);
        break;
    case S_RELAY:
        idle = s->cfg->timeout_idle;
        left = relay_last_activity(s->relay) + idle - ev_now(loop);
        if (left > 0.001) {
            session_arm_timer(s, left);
            return;
        }
        session_end(s, END_IDLE_TIMEOUT);
        break;
    case S_REPLYING:
    case S_CLOSING:
        session_end(s, END_REPLY_TIMEOUT);
        break;
    default:
        session_end(s, END_NEGOTIATE_TIMEOUT);
        break;
    }
}

void session_start(struct session_ctx *ctx, int fd, const struct addr *client,
                   const struct addr *advertise, struct limit *client_limit)
{
    const struct config *cfg = &ctx->snap->config;
    struct limits *l = ctx->limits;
    unsigned per_client = cfg->sessions_per_client;
    struct session *s;

    /* Beyond the limits plus a margin answered with failure replies: closed at once. */
    if (!limits_total_enter(l, cfg->max_sessions + SESSION_OVERFLOW)) {
        limits_release(l, client_limit);
        close(fd);
        return;
    }
    if (!limits_session_enter(l, client_limit,
                              per_client > 0 ? per_client + SESSION_CLIENT_OVERFLOW : 0)) {
        limits_total_leave(l);
        limits_release(l, client_limit);
        close(fd);
        return;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL || (s->nego = malloc(sizeof(*s->nego))) == NULL) {
        log_warn("out of memory for a new session");
        free(s);
        limits_session_leave(l, client_limit);
        limits_total_leave(l);
        limits_release(l, client_limit);
        close(fd);
        return;
    }
    s->ctx = ctx;
    s->snap = snapshot_ref(ctx->snap);
    s->cfg = &s->snap->config;
    s->client_limit = client_limit;
    if (limits_total(l) > cfg->max_sessions)
        s->limited = LIMITED_TOTAL;
    else if (per_client > 0 && limits_sessions_of(l, client_limit) > per_client)
        s->limited = LIMITED_CLIENT;
    s->nego->len = 0;
    s->nego->out_len = 0;
    s->client_fd = fd;
    s->target_fd = -1;
    s->client_addr = *client;
    s->advertise = advertise;
    s->rep = 0xff;
    s->state = S_WAIT_GREETING;
    s->started = ev_now(ctx->loop);
    ev_io_init(&s->client_readable, on_client_readable, fd, EV_READ);
    ev_io_init(&s->client_writable, on_client_writable, fd, EV_WRITE);
    ev_timer_init(&s->timer, on_timer, 0., 0.);
    s->client_readable.data = s;
    s->client_writable.data = s;
    s->timer.data = s;

    s->next = ctx->sessions;
    if (ctx->sessions != NULL)
        ctx->sessions->prev = s;
    ctx->sessions = s;
    atomic_fetch_add_explicit(&ctx->counters->live, 1, memory_order_relaxed);

    ev_io_start(ctx->loop, &s->client_readable);
    /* One deadline for the whole negotiation, so a slow trickle cannot hold a session. */
    session_arm_timer(s, cfg->timeout_negotiate);
    /* A client speaks first, and its greeting is usually in by the time it is accepted: read
     * it now rather than after a trip through the loop. This may end the session; nothing
     * here touches s after it. */
    on_client_readable(ctx->loop, &s->client_readable, EV_READ);
}

void session_close_all(struct session_ctx *ctx)
{
    while (ctx->sessions != NULL)
        session_end(ctx->sessions, END_SHUTDOWN);
}
