/*
 * The session's lifecycle (session_int.h draws the whole path): start, the state/timer table,
 * client I/O during negotiation, the front end's input, the relay, the access line, and
 * session_close, the one release path for everything a session owns.
 */
#include "config.h"

#include "ferry/session.h"

#include <errno.h>
#include <ev.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sodium.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ferry/access.h"
#include "ferry/auth_verify.h"
#include "ferry/binder.h"
#include "ferry/conf.h"
#include "ferry/http.h"
#include "ferry/http_forward.h"
#include "ferry/log.h"
#include "ferry/net.h"
#include "ferry/outbound.h"
#include "ferry/relay.h"
#include "ferry/reply.h"
#include "ferry/resolver.h"
#include "ferry/snapshot.h"
#include "ferry/socks5.h"
#include "ferry/tunnel_conn.h"
#include "ferry/udp.h"
#include "session_int.h"

/* Sessions beyond max-sessions (or limit sessions-per-client) are told so with a failure
 * reply; past this many more, they are closed at accept. */
#define SESSION_OVERFLOW 64
#define SESSION_CLIENT_OVERFLOW 8
/* Smallest read a bandwidth-limited relay waits for: fewer, larger reads. */
#define THROTTLE_MIN_READ 4096
/* Longest wait for a client to close after a final message. */
#define SESSION_LINGER 2.0
/* Connections closed at accept by a limit are summed up in one notice at most this often. */
#define CLOSED_LOG_INTERVAL 10.0

/* Each state's timeout, a struct config field; KEEP_DEADLINE keeps the running timer. */
#define KEEP_DEADLINE SIZE_MAX
static const size_t state_timeouts[] = {
    /* One deadline for the whole negotiation, armed at accept, so a trickle cannot hold it. */
    [S_NEGOTIATING] = KEEP_DEADLINE,
    [S_VERIFYING] = KEEP_DEADLINE,
    [S_RESOLVING] = offsetof(struct config, timeout_resolve),
    [S_CONNECTING] = offsetof(struct config, timeout_connect),
    [S_REPLYING] = offsetof(struct config, timeout_negotiate),
    [S_BIND_WAIT] = offsetof(struct config, timeout_bind),
    [S_UDP] = offsetof(struct config, timeout_udp),
    [S_RELAY] = offsetof(struct config, timeout_idle),
    [S_FORWARD] = offsetof(struct config, timeout_idle),
    [S_CLOSING] = offsetof(struct config, timeout_negotiate), /* at most SESSION_LINGER */
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
    [END_AUTH_BUSY] = "auth-busy",
    [END_NEGOTIATE_TIMEOUT] = "negotiate-timeout",
    [END_IDLE_TIMEOUT] = "idle-timeout",
    [END_HALF_CLOSED_TIMEOUT] = "half-closed-timeout",
    [END_REPLY_TIMEOUT] = "reply-timeout",
    [END_RELAY_ERROR] = "relay-error",
    [END_RESOURCES] = "out-of-resources",
    [END_SHUTDOWN] = "shutdown",
};

static const char *const limit_names[] = {
    [LIMIT_OK] = "-",
    [LIMIT_TOTAL] = "max-sessions",
    [LIMIT_CLIENT] = "sessions-per-client",
    [LIMIT_USER] = "sessions-per-user",
    [LIMIT_QUOTA] = "quota-per-user",
    [LIMIT_RULE] = "rule",
    [LIMIT_NEGOTIATING] = "max-negotiating",
    [LIMIT_NEGOTIATING_CLIENT] = "negotiating-per-client",
};

static void session_start_relay(struct session *s);

const char *session_cmd_name(const struct session *s)
{
    if (!s->requested)
        return "-";
    switch (s->cmd) {
    case REQUEST_CONNECT:
        return "connect";
    case REQUEST_BIND:
        return "bind";
    case REQUEST_UDP_ASSOCIATE:
        return "udp";
    case REQUEST_RESOLVE:
        return "resolve";
    case REQUEST_RESOLVE_PTR:
        return "resolve-ptr";
    case REQUEST_FORWARD:
        return "forward";
    default:
        return "?";
    }
}

/* --- the access line and the worker's counters ------------------------------------------- */

/* Bytes each way, relayed by TCP or by the UDP association; *us is filled for the latter. */
static void session_bytes(const struct session *s, uint64_t *up, uint64_t *down,
                          struct udp_stats *us)
{
    *up = *down = 0;
    if (s->relay != NULL)
        relay_bytes(s->relay, up, down);
    if (s->trelay != NULL)
        tunnel_relay_bytes(s->trelay, up, down);
    if (s->fwd != NULL)
        http_forward_bytes(s->fwd, up, down);
    if (s->udp != NULL) {
        udp_assoc_stats(s->udp, us);
        *up = us->up_bytes;
        *down = us->down_bytes;
    }
}

/* The destination as asked, the client's bytes unescaped: the access line escapes them. */
static void session_target_raw(const struct socks_dest *d, char *buf, size_t size)
{
    if (d->type == DEST_NAME)
        snprintf(buf, size, "%.*s:%u", DEST_NAME_MAX, d->name, (unsigned)d->port);
    else
        socks_dest_format(d, buf, size);
}

/* The one access line of a session. */
static void session_log(const struct session *s)
{
    char client[ADDR_STRLEN], target[SOCKS_DEST_STRLEN], connected[ADDR_STRLEN], rule[32];
    enum limit_refusal limited = s->hold.refused;
    struct udp_stats us;
    struct access_udp au;
    struct access_record r = {
        .client = client,
        .user = s->user,
        .user_len = s->user_len,
        .cmd_prefix = s->fe != NULL ? s->fe->cmd_prefix : "",
        .cmd = s->requested ? session_cmd_name(s) : NULL,
        .route = s->route,
        .via = s->via,
        .reply = s->rep == 0xff ? NULL : reply_name(s->rep),
        .end = end_names[s->end],
    };
    /* Logins refused unchecked cost the client nothing: their sessions are summed up in a
     * notice per client and interval (session_auth.c), and their lines are debug lines. */
    int level = s->end == END_AUTH_LIMITED ? LOG_DEBUG : LOG_INFO;

    if (!log_enabled(level))
        return;

    session_bytes(s, &r.up, &r.down, &us);
    if (s->udp != NULL) {
        au = (struct access_udp){
            .up = us.up_packets,
            .down = us.down_packets,
            .drop_stranger = us.drop_stranger,
            .drop_frag = us.drop_frag,
            .drop_malformed = us.drop_malformed,
            .drop_filtered = us.drop_filtered,
            .drop_resolve = us.drop_resolve,
            .drop_queue = us.drop_queue,
            .drop_send = us.drop_send,
            .drop_oversize = us.drop_oversize,
            .drop_blocked = us.drop_blocked,
            .sealed = us.sealed,
            .drop_auth = us.drop_auth,
            .drop_replay = us.drop_replay,
            .drop_old = us.drop_old,
        };
        r.udp = &au;
    }
    addr_format(&s->client_addr, client, sizeof(client));
    if (s->target != NULL) {
        r.target = s->target;
    } else if (s->requested && s->nego != NULL) {
        session_target_raw(&s->nego->req.dest, target, sizeof(target));
        r.target = target;
    }
    r.target_len = r.target != NULL ? strlen(r.target) : 0;
    if (s->target_fd >= 0 || s->udp != NULL || s->target_addr.len > 0)
        r.addr = addr_format(&s->target_addr, connected, sizeof(connected));
    if (s->refused && s->refusal.private_dest) {
        r.rule = "private";
    } else if (s->refused) {
        snprintf(rule, sizeof(rule), "request:%u", s->refusal.rule);
        r.rule = rule;
    } else if (limited == LIMIT_RULE) {
        snprintf(rule, sizeof(rule), "rule:%u", s->refusal.rule);
        r.limit = rule;
    } else if (limited != LIMIT_OK) {
        r.limit = limit_names[limited];
    }
    if (s->requested && s->cmd == REQUEST_FORWARD && s->nego != NULL) {
        r.method = http_method_name(s->nego->req.method);
        r.status = s->http_status;
    }
    r.duration = ev_now(s->ctx->loop) - s->started;
    log_access(level, &r);
}

static enum metrics_frontend session_metrics_fe(const struct session *s)
{
    if (s->fe == &frontend_socks4)
        return METRICS_FE_SOCKS4;
    if (s->fe == &frontend_socks5 || s->fe == &frontend_tunnel)
        return METRICS_FE_SOCKS5;
    if (s->fe == &frontend_http)
        return METRICS_FE_HTTP;
    return METRICS_FE_NONE;
}

static enum metrics_cmd session_metrics_cmd(const struct session *s)
{
    if (!s->requested)
        return METRICS_CMD_NONE;
    switch (s->cmd) {
    case REQUEST_BIND:
        return METRICS_CMD_BIND;
    case REQUEST_UDP_ASSOCIATE:
        return METRICS_CMD_UDP;
    case REQUEST_RESOLVE:
        return METRICS_CMD_RESOLVE;
    case REQUEST_RESOLVE_PTR:
        return METRICS_CMD_RESOLVE_PTR;
    default:
        return METRICS_CMD_CONNECT;
    }
}

/* The session's share of the worker's metrics (metrics.h), once, at its end. */
static void session_metrics(const struct session *s, struct metrics_worker *m, uint64_t up,
                            uint64_t down, const struct udp_stats *us)
{
    metrics_add(&m->sessions[session_metrics_fe(s)][session_metrics_cmd(s)], 1);
    if (s->rep < METRICS_REPLIES)
        metrics_add(&m->replies[s->rep], 1);
    metrics_add(&m->bytes_up, up);
    metrics_add(&m->bytes_down, down);
    if (s->relay != NULL)
        metrics_add(&m->relays[relay_splicing(s->relay) ? METRICS_RELAY_SPLICE
                                                        : METRICS_RELAY_BUFFERED],
                    1);
    if (s->hold.refused != LIMIT_OK && (unsigned)s->hold.refused < METRICS_LIMITS)
        metrics_add(&m->limit_refusals[s->hold.refused], 1);
    if (s->end == END_AUTH_FAILED)
        metrics_add(&m->auth_failed, 1);
    else if (s->end == END_AUTH_LIMITED || s->end == END_AUTH_BUSY)
        metrics_add(&m->auth_refused, 1);
    if (us != NULL) {
        metrics_add(&m->udp_up, us->up_packets);
        metrics_add(&m->udp_down, us->down_packets);
        metrics_add(&m->udp_drops[METRICS_UDP_STRANGER], us->drop_stranger);
        metrics_add(&m->udp_drops[METRICS_UDP_FRAG], us->drop_frag);
        metrics_add(&m->udp_drops[METRICS_UDP_MALFORMED], us->drop_malformed);
        metrics_add(&m->udp_drops[METRICS_UDP_FILTERED], us->drop_filtered);
        metrics_add(&m->udp_drops[METRICS_UDP_RESOLVE], us->drop_resolve);
        metrics_add(&m->udp_drops[METRICS_UDP_QUEUE], us->drop_queue);
        metrics_add(&m->udp_drops[METRICS_UDP_SEND], us->drop_send);
        metrics_add(&m->udp_drops[METRICS_UDP_OVERSIZE], us->drop_oversize);
        metrics_add(&m->udp_drops[METRICS_UDP_BLOCKED], us->drop_blocked);
        metrics_add(&m->udp_drops[METRICS_UDP_AUTH], us->drop_auth);
        metrics_add(&m->udp_drops[METRICS_UDP_REPLAY], us->drop_replay);
        metrics_add(&m->udp_drops[METRICS_UDP_OLD], us->drop_old);
    }
}

/* Add the session's figures to the worker's counters (relaxed: only totals for logs). */
static void session_count(const struct session *s)
{
    struct session_counters *c = s->ctx->counters;
    uint64_t up, down;
    struct udp_stats us;

    session_bytes(s, &up, &down, &us);
    session_metrics(s, &c->metrics, up, down, s->udp != NULL ? &us : NULL);
    atomic_fetch_add_explicit(&c->sessions, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->up, up, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->down, down, memory_order_relaxed);
    if (s->refused)
        atomic_fetch_add_explicit(&c->refused, 1, memory_order_relaxed);
    else if (s->hold.refused != LIMIT_OK)
        atomic_fetch_add_explicit(&c->limited, 1, memory_order_relaxed);
    else if (s->rep != 0xff && s->rep != SOCKS5_REP_SUCCEEDED)
        atomic_fetch_add_explicit(&c->failed, 1, memory_order_relaxed);
}

/* --- the one release path ---------------------------------------------------------------- */

void session_account(const struct session *s)
{
    session_count(s);
    session_log(s);
}

/* The negotiation's state and its buffers (wiped: a head may hold credentials, the output a
 * tunnel's UDP grant). */
static void session_nego_free(struct negotiation *ng)
{
    if (ng == NULL)
        return;
    sodium_memzero(ng->buf, ng->len);
    sodium_memzero(ng->out, sizeof(ng->out));
    if (ng->buf != ng->small)
        free(ng->buf);
    free(ng);
}

static void session_close(struct session *s)
{
    struct session_ctx *ctx = s->ctx;
    struct ev_loop *loop = ctx->loop;

    /* Counted before the access line, so whoever has read the line sees it in the totals.
     * A keep-alive connection closing between forwarded requests has had its lines. */
    if (!(s->forwarded > 0 && !s->requested && (s->nego == NULL || s->nego->len == 0))) {
        session_count(s);
        session_log(s);
    }
    if (s->nego != NULL) {
        struct negotiation *ng = s->nego;

        if (ng->verify != NULL)
            auth_verify_cancel(ctx->verifier, ng->verify);
        session_login_drop(s);
        if (ng->query != NULL)
            resolver_cancel(ng->query);
        if (ng->outbound_conn != NULL)
            ng->outbound->cancel(ng->outbound_conn);
        if (ng->binder != NULL)
            binder_cancel(ng->binder);
        ev_io_stop(loop, &ng->client_writable);
        ev_io_stop(loop, &ng->upstream_control);
    }
    if (s->udp != NULL)
        udp_assoc_free(s->udp);
    limits_hold_release(&s->hold);
    relay_free(s->relay);
    tunnel_relay_free(s->trelay);
    http_forward_free(s->fwd);
    ev_io_stop(loop, &s->client_readable);
    ev_timer_stop(loop, &s->timer);
    if (s->client_fd >= 0)
        close(s->client_fd);
    if (s->target_fd >= 0)
        close(s->target_fd);
    tunnel_stream_release(s->target_stream);
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
    session_nego_free(s->nego);
    free(s);
}

void session_end(struct session *s, enum session_end why)
{
    if (s->end == END_NONE)
        s->end = why;
    session_close(s);
}

/* --- states and timers ------------------------------------------------------------------- */

static void session_arm_timer(struct session *s, double seconds)
{
    ev_timer_stop(s->ctx->loop, &s->timer);
    if (seconds > 0) {
        ev_timer_set(&s->timer, seconds, 0.);
        ev_timer_start(s->ctx->loop, &s->timer);
    }
}

void session_enter(struct session *s, enum session_state state)
{
    size_t field = state_timeouts[state];
    double seconds;

    s->state = state;
    if (field == KEEP_DEADLINE)
        return;
    seconds = *(const double *)((const char *)s->cfg + field);
    if (state == S_CLOSING && seconds > SESSION_LINGER)
        seconds = SESSION_LINGER;
    session_arm_timer(s, seconds);
}

/*
 * Seconds until the relay's inactivity deadline: timeout idle, or timeout half-closed once a
 * direction has ended (the smaller when both apply; 0 is none). Before a half-close, the
 * timer comes back at least every timeout half-closed to look for one. *why: the timeout that
 * applies. HUGE_VAL when nothing applies.
 */
static double session_relay_left(const struct session *s, double now, enum session_end *why)
{
    double idle = s->cfg->timeout_idle, half = s->cfg->timeout_half_closed;
    double last =
        s->trelay != NULL ? tunnel_relay_last_activity(s->trelay) : relay_last_activity(s->relay);
    double limit = idle, left;
    bool half_closed = half > 0 && (s->trelay != NULL ? tunnel_relay_half_closed(s->trelay)
                                                      : relay_half_closed(s->relay));

    *why = END_IDLE_TIMEOUT;
    if (half_closed && (limit <= 0 || half < limit)) {
        limit = half;
        *why = END_HALF_CLOSED_TIMEOUT;
    }
    left = limit > 0 ? last + limit - now : HUGE_VAL;
    if (!half_closed && half > 0 && left > half)
        left = half;
    return left;
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct session *s = w->data;
    double left;
    enum session_end why;

    switch (s->state) {
    case S_RESOLVING: {
        char name[LOG_ESCAPED(DEST_NAME_MAX)];

        resolver_cancel(s->nego->query);
        s->nego->query = NULL;
        log_debug(
            "resolving %s timed out",
            log_escape(s->nego->req.dest.name, strlen(s->nego->req.dest.name), name, sizeof(name)));
        session_fail(s, reply_from_resolver(RESOLVER_TIMEOUT));
        break;
    }
    case S_CONNECTING:
        if (s->cfg->routes != NULL)
            s->via = s->nego->outbound->current(s->nego->outbound_conn);
        s->nego->outbound->cancel(s->nego->outbound_conn);
        s->nego->outbound_conn = NULL;
        session_fail(s, reply_from_errno(ETIMEDOUT));
        break;
    case S_BIND_WAIT:
        /* Our listening socket, or a parent's (its second reply pending in the outbound). */
        if (s->nego->binder != NULL)
            binder_cancel(s->nego->binder);
        s->nego->binder = NULL;
        if (s->nego->outbound_conn != NULL)
            s->nego->outbound->cancel(s->nego->outbound_conn);
        s->nego->outbound_conn = NULL;
        log_debug("bind: no peer within %.1f s", s->cfg->timeout_bind);
        session_fail(s, reply_from_errno(ETIMEDOUT));
        break;
    case S_UDP:
        /* Idle: the deadline moves with the last datagram, polled here. */
        left = udp_assoc_last_activity(s->udp) + s->cfg->timeout_udp - ev_now(loop);
        if (left > 0.001) {
            session_arm_timer(s, left);
            return;
        }
        session_end(s, END_IDLE_TIMEOUT);
        break;
    case S_RELAY:
        /* Likewise with the last byte relayed. */
        left = session_relay_left(s, ev_now(loop), &why);
        if (left > 0.001) {
            session_arm_timer(s, left);
            return;
        }
        session_end(s, why);
        break;
    case S_FORWARD:
        left = session_forward_left(s, ev_now(loop));
        if (left > 0.001) {
            session_arm_timer(s, left);
            return;
        }
        session_forward_timeout(s);
        break;
    case S_REPLYING:
    case S_CLOSING:
        session_end(s, END_REPLY_TIMEOUT);
        break;
    case S_NEGOTIATING:
    case S_VERIFYING:
        session_end(s, END_NEGOTIATE_TIMEOUT);
        break;
    }
}

/* --- output to the client ---------------------------------------------------------------- */

/* Write what is queued. Returns 0 when all is written, 1 when some waits, -1 on error. */
static int session_flush(struct session *s)
{
    struct negotiation *ng = s->nego;

    /* A tunnel stream's session: the reply straight to the stream (tunnel_conn.h). */
    if (ng->out_len > 0 && s->tunnel_local.len > 0 &&
        tunnel_session_write(s->client_fd, ng->out, ng->out_len))
        ng->out_len = 0;
    while (ng->out_len > 0) {
        ssize_t n = send(s->client_fd, ng->out, ng->out_len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                ev_io_start(s->ctx->loop, &s->nego->client_writable);
                return 1;
            }
            return -1;
        }
        memmove(ng->out, ng->out + n, ng->out_len - (size_t)n);
        ng->out_len -= (size_t)n;
    }
    ev_io_stop(s->ctx->loop, &s->nego->client_writable);
    return 0;
}

int session_send(struct session *s, const uint8_t *bytes, size_t len)
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
void session_finish(struct session *s, enum session_end why, const uint8_t *msg, size_t len)
{
    int r;

    s->end = why;
    session_enter(s, S_CLOSING);
    r = len > 0 ? session_send(s, msg, len) : session_flush(s);
    if (r < 0) {
        session_close(s);
        return;
    }
    if (r == 0 && shutdown(s->client_fd, SHUT_WR) < 0) {
        session_close(s);
        return;
    }
    ev_io_start(s->ctx->loop, &s->client_readable);
}

int session_reply(struct session *s, uint8_t rep, const struct sockaddr *bound)
{
    uint8_t msg[SESSION_OUT_BUF];
    size_t len = s->fe->reply(rep, bound, msg, sizeof(msg));

    s->rep = rep;
    return session_send(s, msg, len);
}

void session_fail(struct session *s, uint8_t rep)
{
    uint8_t msg[SESSION_OUT_BUF];
    size_t len = s->fe->reply(rep, NULL, msg, sizeof(msg));

    s->rep = rep;
    session_finish(s, END_REPLIED_FAILURE, msg, len);
}

void session_reply_then_relay(struct session *s, const struct addr *bound)
{
    int one = 1;

    /* The proxy must not add Nagle delays the endpoints did not ask for (the client's
     * socket has TCP_NODELAY from its listener). */
    if (!s->target_tunnel)
        setsockopt(s->target_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

    if (s->cmd == REQUEST_FORWARD) {
        /* No reply of ours: the origin's response is the answer. */
        s->rep = SOCKS5_REP_SUCCEEDED;
        session_forward(s);
        return;
    }
    switch (session_reply(s, SOCKS5_REP_SUCCEEDED, &bound->u.sa)) {
    case 0:
        session_start_relay(s);
        break;
    case 1:
        ev_io_stop(s->ctx->loop, &s->client_readable);
        session_enter(s, S_REPLYING);
        break;
    default:
        session_end(s, END_CLIENT_ERROR);
        break;
    }
}

int session_local_addr(const struct session *s, struct addr *local)
{
    if (s->tunnel_local.len > 0) {
        *local = s->tunnel_local;
        return 0;
    }
    local->len = sizeof(local->u);
    return getsockname(s->client_fd, &local->u.sa, &local->len);
}

struct addr session_advertised(const struct session *s, const struct addr *bound)
{
    struct addr shown = *bound;

    if (s->advertise != NULL) {
        shown = *s->advertise;
        addr_set_port(&shown, addr_port(bound));
    }
    return shown;
}

/* --- the front end's input --------------------------------------------------------------- */

/* Drop n parsed bytes from the front of the negotiation buffer. */
static void session_consume(struct session *s, size_t n)
{
    struct negotiation *ng = s->nego;

    memmove(ng->buf, ng->buf + n, ng->len - n);
    ng->len -= n;
}

static const enum session_end close_ends[] = {
    [FRONTEND_BAD_INPUT] = END_BAD_GREETING,
    [FRONTEND_NO_METHOD] = END_NO_METHOD,
};

/*
 * Let the front end read as many whole messages as the buffer holds, and act on each. Every
 * way out of the loop returns at once: a step may have closed the session.
 */
static void session_advance(struct session *s)
{
    while (s->state == S_NEGOTIATING && s->nego->len > 0) {
        struct negotiation *ng = s->nego;
        struct frontend_login login;
        struct frontend_input in = {
            .cfg = s->cfg,
            .state = &s->fe_state,
            .buf = ng->buf,
            .len = ng->len,
            .cap = ng->cap,
            .req = &ng->req,
            .login = &login,
        };
        enum session_login answer;

        if (s->fe == NULL) {
            s->fe = frontend_for(ng->buf[0]);
            if (!frontend_serves(s->fe, s->protocols)) {
                /* Not a protocol of this listener: closed as unknown bytes are. */
                s->fe = NULL;
                session_end(s, END_BAD_GREETING);
                return;
            }
            if (s->fe->input_max > ng->cap) {
                /* Only sessions of this front end pay for its larger buffer. */
                uint8_t *big = malloc(s->fe->input_max);

                if (big == NULL) {
                    session_end(s, END_RESOURCES);
                    return;
                }
                memcpy(big, ng->buf, ng->len);
                ng->buf = big;
                ng->cap = s->fe->input_max;
                in.buf = big;
                in.cap = ng->cap;
            }
        }
        switch (s->fe->input(&in)) {
        case FRONTEND_NEED_MORE:
            return;
        case FRONTEND_NEXT:
            session_consume(s, in.used);
            if (in.out_len > 0 && session_send(s, in.out, in.out_len) < 0) {
                session_end(s, END_CLIENT_ERROR);
                return;
            }
            break;
        case FRONTEND_LOGIN:
            session_consume(s, in.used);
            answer = session_login(s, &login);
            sodium_memzero(&login, sizeof(login));
            if (answer != SESSION_LOGIN_DONE)
                return;
            break;
        case FRONTEND_REQUEST:
            session_consume(s, in.used);
            limits_hold_negotiated(&s->hold);
            s->requested = true;
            s->cmd = (uint8_t)ng->req.cmd;
            session_request(s);
            return;
        case FRONTEND_REFUSE:
            session_consume(s, in.used);
            limits_hold_negotiated(&s->hold);
            s->requested = true;
            s->cmd = (uint8_t)ng->req.cmd;
            session_fail(s, in.rep);
            return;
        case FRONTEND_FAIL:
            session_fail(s, in.rep);
            return;
        case FRONTEND_CLOSE:
            if (in.out_len == 0)
                session_end(s, close_ends[in.close]);
            else
                session_finish(s, close_ends[in.close], in.out, in.out_len);
            return;
        }
    }
}

/* The verifier's answer came after session_login said PENDING: the front end goes on. */
void session_login_resumed(struct session *s)
{
    session_advance(s);
}

void session_next_request(struct session *s)
{
    ev_io_start(s->ctx->loop, &s->client_readable);
    session_arm_timer(s, s->cfg->timeout_negotiate);
    session_enter(s, S_NEGOTIATING);
    /* A pipelined request may be whole already; this may end the session. */
    if (s->nego->len > 0)
        session_advance(s);
}

/* --- the relay --------------------------------------------------------------------------- */

static void on_relay_done(int err, void *arg)
{
    struct session *s = arg;

    if (err != 0)
        log_debug("relay ended: %s", strerror(err));
    session_end(s, err == 0 ? END_DONE : END_RELAY_ERROR);
}

/* The relay's throttle (relay.h) is the session's limits hold: one lock round trip a read. */
static ssize_t session_throttle_allow(void *arg, enum relay_dir_index dir, size_t want,
                                      double *wait)
{
    struct session *s = arg;
    ssize_t n = limits_hold_allow(&s->hold, dir == RELAY_UP ? LIMIT_UP : LIMIT_DOWN, want,
                                  THROTTLE_MIN_READ, limits_clock(), wait);

    if (n < 0) {
        char user[SESSION_USER_LOGLEN];

        log_notice("limit quota-per-user used up by user %s: closing its session",
                   session_user_for_log(s, user, sizeof(user)));
    }
    return n;
}

static void session_throttle_used(void *arg, enum relay_dir_index dir, size_t n)
{
    struct session *s = arg;

    limits_hold_used(&s->hold, dir == RELAY_UP ? LIMIT_UP : LIMIT_DOWN, n, limits_clock());
}

const struct relay_throttle *session_throttle(struct session *s, struct relay_throttle *t)
{
    if (!limits_hold_throttled(&s->hold))
        return NULL;
    t->allow = session_throttle_allow;
    t->used = session_throttle_used;
    t->arg = s;
    return t;
}

static void session_start_relay(struct session *s)
{
    struct negotiation *ng = s->nego;
    char target[SOCKS_DEST_STRLEN];
    struct relay_throttle throttle = {
        .allow = session_throttle_allow,
        .used = session_throttle_used,
        .arg = s,
    };
    struct relay_params p = {
        .pool = s->ctx->relay_pool,
        .loop = s->ctx->loop,
        .client_io = &s->client_readable,
        .target_fd = s->target_fd,
        .mode = s->cfg->relay_mode,
        .early = ng->buf,
        .early_len = ng->len,
        .client_eof = s->client_eof,
        .tunnel_end = s->tunnel_local.len > 0 || s->target_tunnel,
        .target_stream = s->target_stream,
        .throttle = limits_hold_throttled(&s->hold) ? &throttle : NULL,
        .cb = on_relay_done,
        .arg = s,
    };
    enum session_end why;
    double left;

    ev_io_stop(s->ctx->loop, &s->nego->client_writable);
    /* Buffer caps and keepalive (tune, tcp-keepalive): best effort, the relay works without. */
    if (net_stream_tune(s->client_fd, &s->cfg->stream) < 0 ||
        (s->target_fd >= 0 && net_stream_tune(s->target_fd, &s->cfg->stream) < 0))
        log_debug("relay socket options: %s", strerror(errno));
    /* A tunnel stream at one end relays itself (no socketpair between); else relay.c. */
    s->trelay = tunnel_relay_start(&p);
    if (s->target_stream != NULL) {
        /* A stream with no socket: relay.c (a throttled session) needs a socketpair now. */
        int fd = s->trelay == NULL ? tunnel_stream_pair(s->target_stream) : -1;

        tunnel_stream_release(s->target_stream);
        s->target_stream = NULL;
        if (s->trelay == NULL && fd < 0) {
            log_debug("relay through the tunnel: %s", strerror(errno));
            session_end(s, END_TARGET_ERROR);
            return;
        }
        if (fd >= 0)
            s->target_fd = p.target_fd = fd;
        p.target_stream = NULL;
    }
    if (s->trelay != NULL) {
        /* The socketpair between the session and its stream is idle now: closed (the stream
         * closed its end), so a tunnel session holds one descriptor. */
        int idle = tunnel_relay_idle_fd(s->trelay);

        if (idle >= 0 && idle == s->client_fd) {
            close(s->client_fd);
            s->client_fd = -1;
        } else if (idle >= 0 && idle == s->target_fd) {
            close(s->target_fd);
            s->target_fd = -1;
        }
    }
    if (s->trelay == NULL)
        s->relay = relay_start(&p);
    if (s->relay == NULL && s->trelay == NULL) {
        session_end(s, END_RESOURCES);
        return;
    }
    /* The negotiation buffers go; the access line keeps the destination as text. */
    session_target_raw(&ng->req.dest, target, sizeof(target));
    s->target = strdup(target);
    session_nego_free(s->nego);
    s->nego = NULL;
    session_enter(s, S_RELAY);
    /* The idle timer, or sooner to look for a half-close (or one that came with the request). */
    left = session_relay_left(s, ev_now(s->ctx->loop), &why);
    if (left < HUGE_VAL)
        session_arm_timer(s, left > 0.001 ? left : 0.001);
}

/* --- client I/O before the relay --------------------------------------------------------- */

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
    if (ng->len == ng->cap) {
        /* Full: the request is whole by now, so this is early data waiting for the target. */
        ev_io_stop(loop, w);
        return;
    }
    n = recv(s->client_fd, ng->buf + ng->len, ng->cap - ng->len, 0);
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
    /* In other states the bytes wait in the buffer as early data for the target. */
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
    } else if (s->state == S_REPLYING) {
        session_start_relay(s);
    }
}

/* --- start and shutdown ------------------------------------------------------------------ */

/* A new connection closed at accept by a limit: one notice per CLOSED_LOG_INTERVAL at most. */
void session_closed_at_accept(struct session_ctx *ctx, const struct addr *client, int why)
{
    const struct config *cfg = &ctx->snap->config;
    double now = ev_now(ctx->loop);
    char name[ADDR_STRLEN];

    if (why < LIMIT_OK || why > LIMIT_NEGOTIATING_CLIENT)
        why = LIMIT_TOTAL;
    if ((unsigned)why < METRICS_LIMITS)
        metrics_add(&ctx->counters->metrics.limit_refusals[why], 1);
    addr_format(client, name, sizeof(name));
    log_debug("client %s closed at accept: limit %s", name, limit_names[why]);
    ctx->closed_unlogged++;
    if (now - ctx->closed_logged < CLOSED_LOG_INTERVAL && ctx->closed_logged > 0)
        return;
    log_notice("closed %lu new connection%s at accept in the last %.0f s, the last one from %s "
               "(limit %s; max-negotiating %u:%u:%u, negotiating-per-client %u, max-sessions %u, "
               "sessions-per-client %u)",
               ctx->closed_unlogged, ctx->closed_unlogged == 1 ? "" : "s", CLOSED_LOG_INTERVAL,
               name, limit_names[why], cfg->max_negotiating.start, cfg->max_negotiating.rate,
               cfg->max_negotiating.full, cfg->negotiating_per_client, cfg->max_sessions,
               cfg->sessions_per_client);
    ctx->closed_unlogged = 0;
    ctx->closed_logged = now;
}

/*
 * A number in [0, 1) for the negotiating budget's random early drop, on every accept: a
 * per-thread xorshift64 seeded once from libsodium (a syscall per accept is not needed for a
 * coin that only spreads refusals).
 */
static double session_draw(void)
{
    static _Thread_local uint64_t x;

    if (x == 0) {
        randombytes_buf(&x, sizeof(x));
        x |= 1;
    }
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return (double)(x >> 11) / 9007199254740992.0; /* 2^53 */
}

/* The session of an accepted connection; NULL when closed at once (fd closed too). */
static struct session *session_new(struct session_ctx *ctx, int fd, const struct addr *client,
                                   const struct addr *advertise, struct limit *client_limit,
                                   bool tunnel)
{
    const struct config *cfg = &ctx->snap->config;
    struct limit_hold_caps caps = {
        .max_total = cfg->max_sessions,
        .total_margin = SESSION_OVERFLOW,
        .per_client = cfg->sessions_per_client,
        .client_margin = SESSION_CLIENT_OVERFLOW,
        .client_rate = &cfg->bandwidth_per_client,
        .user_rate = &cfg->bandwidth_per_user,
        .quota = cfg->quota_per_user,
        .quota_period = cfg->quota_period,
        .negotiating = &cfg->max_negotiating,
        .negotiating_per_client = cfg->negotiating_per_client,
        .draw = session_draw(),
    };
    struct limit_hold hold;
    struct session *s;

    if (tunnel) {
        /* A tunnel's streams share its peer's IP but were authenticated by its key: the
         * per-IP caps against floods before authentication do not apply; per-user ones do. */
        caps.per_client = 0;
        caps.negotiating = NULL;
        caps.negotiating_per_client = 0;
    }
    /* Beyond the negotiating budget, or the limits plus a margin answered with failure
     * replies: closed at once. */
    if (!limits_hold_begin(&hold, ctx->limits, client_limit, &caps)) {
        session_closed_at_accept(ctx, client, hold.refused);
        close(fd);
        return NULL;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL || (s->nego = malloc(sizeof(*s->nego))) == NULL) {
        log_warn("out of memory for a new session");
        free(s);
        limits_hold_release(&hold);
        close(fd);
        return NULL;
    }
    s->ctx = ctx;
    s->snap = snapshot_ref(ctx->snap);
    s->cfg = &s->snap->config;
    s->hold = hold;
    s->nego->buf = s->nego->small;
    s->nego->cap = sizeof(s->nego->small);
    s->nego->len = 0;
    s->nego->out_len = 0;
    s->nego->verify = NULL;
    s->nego->query = NULL;
    s->nego->outbound = NULL;
    s->nego->outbound_conn = NULL;
    s->nego->binder = NULL;
    s->nego->login_wait = NULL;
    s->nego->route = 0;
    s->nego->name_decides = false;
    s->nego->udp_upstream = false;
    s->nego->rule_counted = false;
    ev_init(&s->nego->upstream_control, NULL);
    s->client_fd = fd;
    s->target_fd = -1;
    s->client_addr = *client;
    s->advertise = advertise;
    s->rep = 0xff;
    s->started = ev_now(ctx->loop);
    ev_io_init(&s->client_readable, on_client_readable, fd, EV_READ);
    ev_io_init(&s->nego->client_writable, on_client_writable, fd, EV_WRITE);
    ev_timer_init(&s->timer, on_timer, 0., 0.);
    s->client_readable.data = s;
    s->nego->client_writable.data = s;
    s->timer.data = s;

    s->next = ctx->sessions;
    if (ctx->sessions != NULL)
        ctx->sessions->prev = s;
    ctx->sessions = s;
    atomic_fetch_add_explicit(&ctx->counters->live, 1, memory_order_relaxed);

    ev_io_start(ctx->loop, &s->client_readable);
    /* The negotiation's one deadline (S_NEGOTIATING and S_VERIFYING keep it). */
    session_arm_timer(s, cfg->timeout_negotiate);
    session_enter(s, S_NEGOTIATING);
    return s;
}

void session_start(struct session_ctx *ctx, int fd, const struct addr *client,
                   const struct addr *advertise, unsigned protocols, struct limit *client_limit)
{
    struct session *s = session_new(ctx, fd, client, advertise, client_limit, false);

    if (s == NULL)
        return;
    s->protocols = (uint8_t)protocols;
    /* A client speaks first, and its greeting is usually in by the time it is accepted: read
     * it now rather than after a trip through the loop. This may end the session; nothing
     * here touches s after it. */
    on_client_readable(ctx->loop, &s->client_readable, EV_READ);
}

bool session_start_tunnel(struct session_ctx *ctx, int fd, const struct addr *client,
                          const struct addr *local, const char *user, struct limit *client_limit,
                          const uint8_t *req, size_t len)
{
    struct session *s = session_new(ctx, fd, client, NULL, client_limit, true);
    struct negotiation *ng;

    if (s == NULL)
        return false;
    /* Logged in by its key: the SOCKS5 front end waits for the request itself. */
    s->fe = &frontend_tunnel;
    s->tunnel_local = *local;
    s->user = strdup(user);
    if (s->user == NULL) {
        session_end(s, END_RESOURCES);
        return true; /* nobody reads it: the stream sees its socketpair close */
    }
    s->user_len = strlen(user);
    if (limits_hold_user(&s->hold, s->user, s->cfg->sessions_per_user) < 0) {
        session_end(s, END_RESOURCES);
        return true;
    }
    ng = s->nego;
    if (len > ng->cap - ng->len) {
        on_client_readable(ctx->loop, &s->client_readable, EV_READ);
        return false;
    }
    /* The request as if read from the socketpair: no write and read through it. */
    memcpy(ng->buf + ng->len, req, len);
    ng->len += len;
    session_advance(s);
    return true;
}

void session_close_all(struct session_ctx *ctx)
{
    while (ctx->sessions != NULL)
        session_end(ctx->sessions, END_SHUTDOWN);
}
