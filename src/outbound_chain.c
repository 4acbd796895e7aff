/*
 * The chain outbound (outbound.h): a route's paths tried in order. A path is direct (the
 * connector over the checked addresses) or a chain of parents: ferry connects to the first,
 * asks it to CONNECT to the second, and so on; the last is asked the client's command for the
 * target. Each hop is a small client state machine over the one socket, with the pure
 * encoders and parsers of upstream_socks.h and upstream_http.h.
 *
 * Reads never take a byte past the message being parsed: the parent's bytes are peeked, and
 * only the message is consumed, so whatever a target sends right after the last reply (a
 * banner) stays in the socket for the relay.
 *
 * Failover: a path fails when a parent cannot be reached, does not answer within its timeout,
 * breaks the protocol, refuses our credentials, or refuses the request; the next path is
 * tried. A parent at fault (all but a refusal of the target itself) is marked down for its
 * retry time; paths through a parent that is down are tried only after every other one.
 */
#include "config.h"

#include <errno.h>
#include <ev.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "ferry/connector.h"
#include "ferry/log.h"
#include "ferry/metrics.h"
#include "ferry/outbound.h"
#include "ferry/reply.h"
#include "ferry/resolver.h"
#include "ferry/route.h"
#include "ferry/socks4.h"
#include "ferry/socks5.h"
#include "ferry/tunnel_conn.h"
#include "ferry/tunnel_udp.h"
#include "ferry/upstream_http.h"
#include "ferry/upstream_socks.h"

#define CONNECT_ATTEMPT_DELAY 0.250

enum chain_step {
    STEP_CONNECT,    /* resolving or connecting to the first hop */
    STEP_S5_METHOD,  /* SOCKS5: the method choice */
    STEP_S5_AUTH,    /* SOCKS5: the RFC 1929 status */
    STEP_S5_REPLY,   /* SOCKS5: the reply to the request */
    STEP_S4_REPLY,   /* SOCKS4a: the reply */
    STEP_HTTP_REPLY, /* HTTP: the response head */
};

struct outbound_conn {
    struct ev_loop *loop;
    struct resolver *resolver;
    const struct routes *routes;
    const struct route *route;
    unsigned route_no;
    struct metrics_worker *metrics;
    uint8_t cmd;
    struct socks_dest dest;
    struct addr addrs[RESOLVER_MAX_ADDRS];
    size_t naddrs;
    outbound_done_cb cb;
    void *arg;

    unsigned order[ROUTE_MAX_PATHS]; /* paths in the order to try: healthy ones first */
    unsigned norder;
    unsigned pos; /* the one being tried: order[pos] */
    const struct route_path *path;
    unsigned hop; /* the hop negotiating (index into path->hops) */
    enum chain_step step;
    uint8_t last_rep; /* the failure to answer if no path is left */
    int last_err;

    int fd;
    struct addr peer; /* what fd reaches */
    bool fd_fresh;    /* a tunnel stream's new socketpair (writable at once), nothing sent yet */
    bool ferry_fd;    /* fd is a ferry parent's stream (the first hop): its REPLY comes to
                       * on_ferry_reply, not through fd */
    bool stream_ok;   /* the request's: a CONNECT may end in a stream with no socket */
    struct tunnel_stream *stream; /* that stream (fd -1), the path's only hop */
    ev_io io;
    ev_timer timer;
    struct connector *connector;
    struct resolver_query *query;

    size_t out_len, out_off;
    size_t in_len;
    struct socks_dest bound;
    bool sealed; /* grant holds a ferry parent's UDP grant */
    struct tunnel_udp_grant grant;
    uint8_t out[UPSTREAM_HTTP_REQUEST_MAX];
    uint8_t in[UPSTREAM_HTTP_HEAD_MAX];
};

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const struct parent *hop_parent(const struct outbound_conn *c, unsigned hop)
{
    return &c->routes->parents[c->path->hops[hop]];
}

/* The hop being talked to: while BIND waits for its second reply, hop is nhops (the last). */
static unsigned cur_hop(const struct outbound_conn *c)
{
    return c->hop < c->path->nhops ? c->hop : c->path->nhops - 1;
}

static bool waiting_second(const struct outbound_conn *c)
{
    return c->path->nhops > 0 && c->hop == c->path->nhops;
}

/* Close what the current path holds; the conn itself stays. */
static void chain_reset(struct outbound_conn *c)
{
    ev_io_stop(c->loop, &c->io);
    ev_timer_stop(c->loop, &c->timer);
    if (c->connector != NULL)
        connector_cancel(c->connector);
    c->connector = NULL;
    if (c->query != NULL)
        resolver_cancel(c->query);
    c->query = NULL;
    if (c->fd >= 0) {
        if (c->ferry_fd)
            tunnel_session_forget(c->fd, c);
        close(c->fd);
    }
    tunnel_stream_release(c->stream);
    c->stream = NULL;
    c->fd = -1;
    c->fd_fresh = false;
    c->ferry_fd = false;
    /* What was left unsent may be a parent's credentials. */
    sodium_memzero(c->out, sizeof(c->out));
    c->in_len = c->out_len = c->out_off = 0;
}

static void chain_free(struct outbound_conn *c)
{
    chain_reset(c);
    sodium_memzero(&c->grant, sizeof(c->grant));
    sodium_memzero(c->in, sizeof(c->in));
    free(c);
}

/* The result to the session. A final one frees c (fd handed over or closed). */
static void chain_deliver(struct outbound_conn *c, uint8_t rep, bool interim)
{
    struct outbound_result res = {
        .fd = -1,
        .err = rep == SOCKS5_REP_SUCCEEDED ? 0 : c->last_err,
        .rep = rep,
        .interim = interim,
        .peer = &c->peer,
        .via = c->path != NULL ? c->path->text : "-",
    };
    outbound_done_cb cb = c->cb;
    void *arg = c->arg;
    bool with_bound = c->path != NULL && c->path->nhops > 0 && rep == SOCKS5_REP_SUCCEEDED &&
                      (c->cmd == SOCKS5_CMD_BIND || c->cmd == SOCKS5_CMD_RESOLVE ||
                       c->cmd == SOCKS5_CMD_RESOLVE_PTR || c->cmd == SOCKS5_CMD_UDP_ASSOCIATE);
    struct socks_dest bound = c->bound;
    struct addr peer = c->peer;
    struct tunnel_udp_grant grant = c->grant;

    res.bound = with_bound ? &bound : NULL;
    res.sealed = c->sealed && rep == SOCKS5_REP_SUCCEEDED ? &grant : NULL;
    res.peer = &peer;
    if (interim) {
        cb(&res, arg);
        return;
    }
    if (rep == SOCKS5_REP_SUCCEEDED && c->cmd != SOCKS5_CMD_RESOLVE &&
        c->cmd != SOCKS5_CMD_RESOLVE_PTR) {
        res.fd = c->fd; /* the caller's now */
        res.stream = c->stream;
        c->stream = NULL;
        res.tunnel = c->ferry_fd || res.stream != NULL;
        if (c->ferry_fd)
            tunnel_session_forget(c->fd, c);
        c->fd = -1;
    }
    if (c->path == NULL)
        res.via = "-";
    /* The path text lives in the configuration, not in c. */
    chain_free(c);
    cb(&res, arg);
    sodium_memzero(&grant, sizeof(grant));
}

static void chain_try_next(struct outbound_conn *c);

/*
 * The path failed: log why, mark the parent at fault down (faulty >= 0: its hop index), and go
 * on with the next path.
 */
static void chain_fail(struct outbound_conn *c, uint8_t rep, int faulty, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void chain_fail(struct outbound_conn *c, uint8_t rep, int faulty, const char *fmt, ...)
{
    char why[256];
    va_list ap;
    bool last = c->pos + 1 >= c->norder;

    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    if (waiting_second(c)) {
        /* Our client has the first reply: no other path now. */
        log_notice("route %u (line %u) via %s: %s", c->route_no, c->route->line, c->path->text,
                   why);
        chain_deliver(c, rep, false);
        return;
    }
    if (c->metrics != NULL)
        metrics_add(&c->metrics->route_paths_failed, 1);
    log_notice("route %u (line %u) via %s: %s%s", c->route_no, c->route->line, c->path->text, why,
               last ? "; no other path" : "; trying the next path");
    if (faulty >= 0) {
        unsigned idx = c->path->hops[faulty];
        const struct parent *p = &c->routes->parents[idx];

        if (routes_mark_down(c->routes, idx, now_ms()))
            log_warn("parent %s (line %u) marked down for %.0f s", p->name, p->line, p->retry);
    }
    c->last_rep = rep;
    chain_reset(c);
    c->pos++;
    chain_try_next(c);
}

/* --- writing and reading the handshake --------------------------------------------------- */

static void chain_io(struct ev_loop *loop, ev_io *w, int revents);
static void chain_writable(struct outbound_conn *c);

static void chain_want(struct outbound_conn *c, int events)
{
    ev_io_stop(c->loop, &c->io);
    ev_io_set(&c->io, c->fd, events);
    ev_io_start(c->loop, &c->io);
}

/* Send c->out; the reply step `next` follows once it is all out. */
static void chain_send(struct outbound_conn *c, size_t len, enum chain_step next)
{
    c->out_len = len;
    c->out_off = 0;
    c->step = next;
    c->in_len = 0;
    chain_want(c, EV_WRITE);
    if (c->fd_fresh) {
        /* Written now, not after a trip through the loop (every caller returns after this). */
        c->fd_fresh = false;
        chain_writable(c);
    }
}

static void chain_send_request(struct outbound_conn *c);

/* What hop `hop` is asked: the next parent (CONNECT), or for the last the client's command. */
static void hop_target(const struct outbound_conn *c, unsigned hop, uint8_t *cmd,
                       const struct socks_dest **dest)
{
    if (hop + 1 < c->path->nhops) {
        *cmd = SOCKS5_CMD_CONNECT;
        *dest = &hop_parent(c, hop + 1)->addr;
    } else {
        *cmd = c->cmd;
        *dest = &c->dest;
    }
}

static void hop_begin(struct outbound_conn *c)
{
    const struct parent *p = hop_parent(c, c->hop);

    ev_timer_stop(c->loop, &c->timer);
    ev_timer_set(&c->timer, p->timeout, 0.);
    ev_timer_start(c->loop, &c->timer);
    if (p->kind == PARENT_SOCKS5) {
        chain_send(c, upstream_socks5_greeting(c->out, p->pass != NULL), STEP_S5_METHOD);
        return;
    }
    /* A ferry parent's stream (tunnel_conn.h) takes the SOCKS5 request without a greeting. */
    chain_send_request(c);
}

static void chain_send_request(struct outbound_conn *c)
{
    const struct parent *p = hop_parent(c, c->hop);
    const struct socks_dest *dest;
    uint8_t cmd;
    size_t n = 0;

    hop_target(c, c->hop, &cmd, &dest);
    switch (p->kind) {
    case PARENT_FERRY:
        /* Its datagrams are sealed only to the ferry itself: a relay behind it would get them
         * in the clear, from us, past the tunnel. */
        if (c->cmd == SOCKS5_CMD_UDP_ASSOCIATE && cmd != SOCKS5_CMD_UDP_ASSOCIATE) {
            chain_fail(c, SOCKS5_REP_COMMAND_NOT_SUPPORTED, -1,
                       "parent %s is a ferry tunnel: UDP ASSOCIATE only with it as the last hop",
                       p->name);
            return;
        }
        /* fall through */
    case PARENT_SOCKS5:
        n = upstream_socks5_request(c->out, cmd, dest);
        chain_send(c, n, STEP_S5_REPLY);
        return;
    case PARENT_SOCKS4A:
        if (cmd != SOCKS5_CMD_CONNECT && cmd != SOCKS5_CMD_BIND) {
            chain_fail(c, SOCKS5_REP_COMMAND_NOT_SUPPORTED, -1, "parent %s is SOCKS4a: no %s",
                       p->name, cmd == SOCKS5_CMD_UDP_ASSOCIATE ? "UDP ASSOCIATE" : "RESOLVE");
            return;
        }
        n = upstream_socks4_request(
            c->out, cmd == SOCKS5_CMD_BIND ? SOCKS4_CMD_BIND : SOCKS4_CMD_CONNECT, dest, p->user);
        if (n == 0) {
            chain_fail(c, SOCKS5_REP_ADDRESS_TYPE_NOT_SUPPORTED, -1,
                       "parent %s is SOCKS4a: it cannot carry an IPv6 address", p->name);
            return;
        }
        chain_send(c, n, STEP_S4_REPLY);
        return;
    default:
        if (cmd != SOCKS5_CMD_CONNECT) {
            chain_fail(c, SOCKS5_REP_COMMAND_NOT_SUPPORTED, -1,
                       "parent %s is an HTTP proxy: CONNECT only", p->name);
            return;
        }
        n = upstream_http_connect((char *)c->out, sizeof(c->out), dest, p->user, p->pass);
        if (n == 0) {
            chain_fail(c, SOCKS5_REP_GENERAL_FAILURE, -1,
                       "parent %s: the target cannot be written in a CONNECT request", p->name);
            return;
        }
        chain_send(c, n, STEP_HTTP_REPLY);
        return;
    }
}

/* The hop answered yes: on to the next, or the result. */
static void hop_done(struct outbound_conn *c)
{
    if (c->hop + 1 < c->path->nhops) {
        c->hop++;
        hop_begin(c);
        return;
    }
    for (unsigned h = 0; h < c->path->nhops; h++) {
        unsigned idx = c->path->hops[h];

        if (routes_mark_up(c->routes, idx))
            log_notice("parent %s (line %u) is up again", c->routes->parents[idx].name,
                       c->routes->parents[idx].line);
    }
    ev_timer_stop(c->loop, &c->timer);
    if (c->cmd == SOCKS5_CMD_BIND) {
        /* The parent listens: our client learns where. The second reply (same step, same
         * form) comes when the peer connects, under the session's bind timeout. Set up first:
         * the callback may cancel c. */
        c->hop = c->path->nhops; /* marks the wait for the second reply */
        c->in_len = 0;
        chain_want(c, EV_READ);
        chain_deliver(c, SOCKS5_REP_SUCCEEDED, true);
        return;
    }
    ev_io_stop(c->loop, &c->io);
    chain_deliver(c, SOCKS5_REP_SUCCEEDED, false);
}

/* A reply refusing the request at hop `hop`: whose fault, and go on. */
static void hop_refused(struct outbound_conn *c, uint8_t rep, const char *what)
{
    const struct parent *p = hop_parent(c, c->hop);
    bool to_parent = c->hop + 1 < c->path->nhops;
    /* Refused on the way to the next parent: that one is unreachable, unless a rule said no. */
    int faulty = to_parent && rep != SOCKS5_REP_NOT_ALLOWED ? (int)c->hop + 1 : -1;
    char target[SOCKS_DEST_STRLEN];

    socks_dest_format(to_parent ? &hop_parent(c, c->hop + 1)->addr : &c->dest, target,
                      sizeof(target));
    if (what != NULL)
        chain_fail(c, rep, faulty, "parent %s refused %s: %s (%s)", p->name, target, what,
                   reply_name(rep));
    else
        chain_fail(c, rep, faulty, "parent %s refused %s: %s", p->name, target, reply_name(rep));
}

/* Parse what is in c->in (len bytes); returns the bytes of a whole message, 0 for more, -1 when
 * the path failed (handled). */
static ssize_t chain_parse(struct outbound_conn *c, size_t len)
{
    const struct parent *p = hop_parent(c, cur_hop(c));
    size_t consumed = 0;
    enum proto_status st;
    uint8_t method, rep;
    bool ok;
    int status;

    switch (c->step) {
    case STEP_S5_METHOD:
        st = upstream_socks5_parse_method(c->in, len, &method, &consumed);
        break;
    case STEP_S5_AUTH:
        st = upstream_socks5_parse_userpass_reply(c->in, len, &ok, &consumed);
        break;
    case STEP_S5_REPLY:
        st = upstream_socks5_parse_reply(c->in, len, &rep, &c->bound, &consumed);
        /* A ferry's UDP ASSOCIATE reply carries the association's grant (tunnel_udp.h). */
        if (st == PROTO_OK && rep == SOCKS5_REP_SUCCEEDED && p->kind == PARENT_FERRY &&
            c->cmd == SOCKS5_CMD_UDP_ASSOCIATE) {
            consumed += TUNNEL_UDP_GRANT_LEN;
            if (len < consumed)
                st = PROTO_NEED_MORE;
        }
        break;
    case STEP_S4_REPLY:
        st = upstream_socks4_parse_reply(c->in, len, &rep, &c->bound, &consumed);
        break;
    default:
        st = upstream_http_parse_response(c->in, len, &status, &consumed);
        break;
    }
    if (st == PROTO_NEED_MORE)
        return 0;
    if (st != PROTO_OK) {
        chain_fail(c, SOCKS5_REP_GENERAL_FAILURE, (int)cur_hop(c),
                   "parent %s (%s) broke the protocol", p->name, parent_kind_name(p->kind));
        return -1;
    }
    return (ssize_t)consumed;
}

/* Act on a whole message (parsed again from c->in, now consumed from the socket). */
static void chain_message(struct outbound_conn *c)
{
    bool second = waiting_second(c); /* BIND's second reply */
    const struct parent *p = hop_parent(c, cur_hop(c));
    size_t consumed;
    uint8_t method, rep;
    bool ok;
    int status;

    switch (c->step) {
    case STEP_S5_METHOD:
        upstream_socks5_parse_method(c->in, c->in_len, &method, &consumed);
        if (method == SOCKS5_METHOD_NOAUTH) {
            chain_send_request(c);
        } else if (method == SOCKS5_METHOD_USERPASS && p->pass != NULL) {
            size_t n = upstream_socks5_userpass(c->out, p->user, p->pass);

            chain_send(c, n, STEP_S5_AUTH);
        } else {
            chain_fail(c, SOCKS5_REP_GENERAL_FAILURE, (int)c->hop,
                       "parent %s accepts none of our methods (%s)", p->name,
                       p->pass != NULL ? "none, username/password" : "none");
        }
        return;
    case STEP_S5_AUTH:
        upstream_socks5_parse_userpass_reply(c->in, c->in_len, &ok, &consumed);
        if (!ok) {
            chain_fail(c, SOCKS5_REP_GENERAL_FAILURE, (int)c->hop,
                       "parent %s refused our credentials", p->name);
            return;
        }
        chain_send_request(c);
        return;
    case STEP_S5_REPLY:
    case STEP_S4_REPLY:
        if (c->step == STEP_S5_REPLY) {
            upstream_socks5_parse_reply(c->in, c->in_len, &rep, &c->bound, &consumed);
            if (c->in_len == consumed + TUNNEL_UDP_GRANT_LEN) /* chain_parse made sure */
                c->sealed =
                    tunnel_udp_grant_decode(c->in + consumed, TUNNEL_UDP_GRANT_LEN, &c->grant) == 0;
        } else
            upstream_socks4_parse_reply(c->in, c->in_len, &rep, &c->bound, &consumed);
        c->in_len = 0;
        if (second) {
            ev_io_stop(c->loop, &c->io);
            c->last_err = 0; /* a refusal is the parent's answer, not an errno */
            chain_deliver(c, rep, false);
            return;
        }
        if (rep != SOCKS5_REP_SUCCEEDED) {
            hop_refused(c, rep, NULL);
            return;
        }
        hop_done(c);
        return;
    default:
        upstream_http_parse_response(c->in, c->in_len, &status, &consumed);
        c->in_len = 0;
        /* 407 by RFC 9110; tinyproxy answers wrong Basic credentials with 401. */
        if (status == 407 || status == 401) {
            chain_fail(c, SOCKS5_REP_GENERAL_FAILURE, (int)c->hop,
                       "parent %s wants proxy credentials (%d)%s", p->name, status,
                       p->pass != NULL ? ": ours were refused" : "");
            return;
        }
        if (status < 200 || status > 299) {
            char what[32];

            snprintf(what, sizeof(what), "HTTP %d", status);
            hop_refused(c, upstream_http_rep(status), what);
            return;
        }
        hop_done(c);
        return;
    }
}

static void chain_readable(struct outbound_conn *c)
{
    ssize_t n, whole;
    size_t room = sizeof(c->in) - c->in_len;

    if (room == 0) {
        chain_fail(c, SOCKS5_REP_GENERAL_FAILURE, (int)cur_hop(c), "parent %s: reply too long",
                   hop_parent(c, cur_hop(c))->name);
        return;
    }
    n = recv(c->fd, c->in + c->in_len, room, MSG_PEEK);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        unsigned h = cur_hop(c);

        c->last_err = n < 0 ? errno : ECONNRESET;
        chain_fail(c, SOCKS5_REP_GENERAL_FAILURE, (int)h, "parent %s closed the connection%s%s",
                   hop_parent(c, h)->name, n < 0 ? ": " : "", n < 0 ? strerror(errno) : "");
        return;
    }
    whole = chain_parse(c, c->in_len + (size_t)n);
    if (whole < 0)
        return;
    /* Take exactly the bytes of this message out of the socket (all of them when incomplete). */
    {
        size_t take = whole == 0 ? (size_t)n : (size_t)whole - c->in_len;
        ssize_t got = recv(c->fd, c->in + c->in_len, take, 0);

        if (got != (ssize_t)take) {
            chain_fail(c, SOCKS5_REP_GENERAL_FAILURE, (int)cur_hop(c), "parent %s: read failed",
                       hop_parent(c, cur_hop(c))->name);
            return;
        }
        c->in_len += take;
    }
    if (whole > 0)
        chain_message(c);
}

static void chain_writable(struct outbound_conn *c)
{
    /* A ferry parent's stream takes its request straight (tunnel_conn.h). */
    if (c->out_off == 0 && c->out_len > 0 && c->ferry_fd &&
        tunnel_session_write(c->fd, c->out, c->out_len))
        c->out_off = c->out_len;
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);

        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return;
        if (n < 0) {
            c->last_err = errno;
            chain_fail(c, SOCKS5_REP_GENERAL_FAILURE, (int)c->hop, "parent %s: %s",
                       hop_parent(c, cur_hop(c))->name, strerror(errno));
            return;
        }
        c->out_off += (size_t)n;
    }
    /* Credentials leave no copy behind. */
    sodium_memzero(c->out, c->out_len);
    c->out_len = c->out_off = 0;
    chain_want(c, EV_READ);
}

static void chain_io(struct ev_loop *loop, ev_io *w, int revents)
{
    struct outbound_conn *c = w->data;

    (void)loop;
    if ((revents & EV_WRITE) != 0 && c->out_len > 0)
        chain_writable(c);
    else if ((revents & EV_READ) != 0)
        chain_readable(c);
}

static void chain_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct outbound_conn *c = w->data;
    unsigned h = c->step == STEP_CONNECT ? 0 : c->hop;

    (void)loop;
    (void)revents;
    c->last_err = ETIMEDOUT;
    chain_fail(c, SOCKS5_REP_TTL_EXPIRED, (int)h, "parent %s did not %s within %.1f s",
               hop_parent(c, h)->name, c->step == STEP_CONNECT ? "accept a connection" : "answer",
               hop_parent(c, h)->timeout);
}

/* --- starting a path --------------------------------------------------------------------- */

static void on_first_hop(int fd, int err, const struct addr *peer, void *arg)
{
    struct outbound_conn *c = arg;

    c->connector = NULL;
    if (fd < 0) {
        const struct parent *p = c->path->nhops > 0 ? hop_parent(c, 0) : NULL;

        c->last_err = err;
        if (p == NULL) {
            char target[SOCKS_DEST_STRLEN];

            chain_fail(c, reply_from_errno(err), -1, "%s: %s",
                       socks_dest_format(&c->dest, target, sizeof(target)), strerror(err));
            return;
        }
        chain_fail(c, SOCKS5_REP_GENERAL_FAILURE, 0, "cannot reach parent %s: %s", p->name,
                   strerror(err));
        return;
    }
    c->fd = fd;
    c->peer = *peer;
    if (c->path->nhops == 0) {
        ev_timer_stop(c->loop, &c->timer);
        chain_deliver(c, SOCKS5_REP_SUCCEEDED, false);
        return;
    }
    c->hop = 0;
    hop_begin(c);
}

static void chain_connect(struct outbound_conn *c, const struct addr *addrs, size_t n,
                          uint16_t port)
{
    c->connector = connector_start(c->loop, addrs, n, port, CONNECT_ATTEMPT_DELAY, on_first_hop, c);
    if (c->connector == NULL)
        on_first_hop(-1, errno, NULL, c); /* c->connector is NULL: the same path as a late one */
}

static void ferry_open(struct outbound_conn *c, const struct parent *p, const struct addr *resolved);

static void on_parent_resolved(const struct resolver_result *res, void *arg)
{
    struct outbound_conn *c = arg;
    const struct parent *p = hop_parent(c, 0);

    c->query = NULL;
    if (res->status != RESOLVER_OK || res->count == 0) {
        chain_fail(c, SOCKS5_REP_GENERAL_FAILURE, 0, "cannot resolve parent %s (%s): %s", p->name,
                   p->addr.name, resolver_status_name(res->status));
        return;
    }
    if (p->kind == PARENT_FERRY) {
        ferry_open(c, p, &res->addrs[0]);
        return;
    }
    chain_connect(c, res->addrs, res->count, p->addr.port);
}

/* The first hop's REPLY from its ferry stream (tunnel_client_open), as if read from c->fd. */
static void on_ferry_reply(void *arg, const uint8_t *reply, size_t len)
{
    struct outbound_conn *c = arg;
    ssize_t whole;

    if (reply == NULL) {
        /* A stream with no socket (tunnel_stream_open) ended before its REPLY. */
        c->last_err = ECONNRESET;
        chain_fail(c, SOCKS5_REP_GENERAL_FAILURE, 0, "parent %s closed the stream",
                   hop_parent(c, 0)->name);
        return;
    }
    if (c->hop != 0 || c->step != STEP_S5_REPLY || c->in_len != 0 || len > sizeof(c->in)) {
        chain_fail(c, SOCKS5_REP_GENERAL_FAILURE, 0, "parent %s: a reply out of turn",
                   hop_parent(c, 0)->name);
        return;
    }
    memcpy(c->in, reply, len);
    whole = chain_parse(c, len);
    if (whole < 0)
        return;
    if ((size_t)whole != len) {
        chain_fail(c, SOCKS5_REP_GENERAL_FAILURE, 0, "parent %s (ferry) broke the protocol",
                   hop_parent(c, 0)->name);
        return;
    }
    c->in_len = len;
    chain_message(c);
}

/* The path's only hop is ferry parent p and the caller takes a stream with no socket: the
 * request goes with it, its REPLY to on_ferry_reply. false with errno: nothing started. */
static bool ferry_open_stream(struct outbound_conn *c, const struct parent *p,
                              const struct addr *resolved)
{
    const struct socks_dest *dest;
    uint8_t cmd;
    size_t n;

    hop_target(c, 0, &cmd, &dest);
    n = upstream_socks5_request(c->out, cmd, dest);
    c->stream = tunnel_stream_open(c->loop, p, resolved, c->out, n, on_ferry_reply, c);
    sodium_memzero(c->out, n);
    if (c->stream == NULL)
        return false;
    if (socks_dest_to_addr(&p->addr, &c->peer) < 0)
        memset(&c->peer, 0, sizeof(c->peer));
    c->hop = 0;
    c->step = STEP_S5_REPLY;
    c->in_len = 0;
    ev_timer_stop(c->loop, &c->timer);
    ev_timer_set(&c->timer, p->timeout, 0.);
    ev_timer_start(c->loop, &c->timer);
    return true;
}

/*
 * A stream over the worker's tunnel to ferry parent p: a socket at once (or none), no connect.
 * A new tunnel connection to a parent given by name needs its address: looked up first
 * (resolved NULL), then this runs again from on_parent_resolved.
 */
static void ferry_open(struct outbound_conn *c, const struct parent *p, const struct addr *resolved)
{
    int fd;

    if (c->stream_ok && c->cmd == SOCKS5_CMD_CONNECT && c->path->nhops == 1) {
        if (ferry_open_stream(c, p, resolved))
            return;
        fd = -1;
    } else {
        fd = tunnel_client_open(c->loop, p, resolved, on_ferry_reply, c);
    }

    if (fd < 0 && errno == EAGAIN && resolved == NULL) {
        c->query = resolver_lookup(c->resolver, p->addr.name, on_parent_resolved, c);
        if (c->query == NULL)
            chain_fail(c, SOCKS5_REP_GENERAL_FAILURE, -1, "cannot resolve parent %s: %s",
                       p->name, strerror(errno));
        return;
    }
    if (fd < 0) {
        chain_fail(c, SOCKS5_REP_GENERAL_FAILURE, 0, "cannot reach parent %s: %s", p->name,
                   strerror(errno));
        return;
    }
    if (socks_dest_to_addr(&p->addr, &c->peer) < 0)
        memset(&c->peer, 0, sizeof(c->peer));
    c->fd = fd;
    c->fd_fresh = true;
    c->ferry_fd = true;
    c->hop = 0;
    hop_begin(c);
}

static bool path_is_down(const struct outbound_conn *c, const struct route_path *path, int64_t now)
{
    for (unsigned h = 0; h < path->nhops; h++) {
        if (routes_parent_down(c->routes, path->hops[h], now))
            return true;
    }
    return false;
}

static void chain_try_next(struct outbound_conn *c)
{
    const struct parent *p;
    struct addr a;

    if (c->pos >= c->norder) {
        chain_deliver(c, c->last_rep, false);
        return;
    }
    c->path = &c->route->paths[c->order[c->pos]];
    c->step = STEP_CONNECT;
    c->hop = 0;
    if (c->path->nhops == 0) {
        if (c->cmd != SOCKS5_CMD_CONNECT || c->naddrs == 0) {
            /* The session does other commands direct itself; a name no one resolved here
             * cannot go direct. */
            c->pos++;
            chain_try_next(c);
            return;
        }
        chain_connect(c, c->addrs, c->naddrs, c->dest.port);
        return;
    }
    p = hop_parent(c, 0);
    ev_timer_set(&c->timer, p->timeout, 0.);
    ev_timer_start(c->loop, &c->timer);
    if (p->kind == PARENT_FERRY) {
        ferry_open(c, p, NULL);
        return;
    }
    if (socks_dest_to_addr(&p->addr, &a) == 0) {
        chain_connect(c, &a, 1, p->addr.port);
        return;
    }
    c->query = resolver_lookup(c->resolver, p->addr.name, on_parent_resolved, c);
    if (c->query == NULL)
        chain_fail(c, SOCKS5_REP_GENERAL_FAILURE, -1, "cannot resolve parent %s: %s", p->name,
                   strerror(errno));
}

/* Deferred first try, so that the callback never runs inside start(). */
static void chain_kick(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct outbound_conn *c = w->data;

    (void)loop;
    (void)revents;
    ev_timer_stop(c->loop, &c->timer);
    ev_init(&c->timer, chain_timeout);
    c->timer.data = c;
    chain_try_next(c);
}

static struct outbound_conn *chain_start(const struct outbound_request *req, outbound_done_cb cb,
                                         void *arg)
{
    struct outbound_conn *c;
    int64_t now = now_ms();

    if (req->route == NULL || req->route->npaths == 0) {
        errno = EINVAL;
        return NULL;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->loop = req->loop;
    c->resolver = req->resolver;
    c->routes = req->routes;
    c->route = req->route;
    c->route_no = req->route_no;
    c->metrics = req->metrics;
    c->cmd = req->cmd;
    c->stream_ok = req->stream_ok;
    c->dest = *req->dest;
    c->naddrs = req->naddrs < RESOLVER_MAX_ADDRS ? req->naddrs : RESOLVER_MAX_ADDRS;
    if (c->naddrs > 0) /* a name passed on comes without addresses (addrs NULL) */
        memcpy(c->addrs, req->addrs, c->naddrs * sizeof(c->addrs[0]));
    c->cb = cb;
    c->arg = arg;
    c->fd = -1;
    c->last_rep = SOCKS5_REP_GENERAL_FAILURE;
    /* Paths through a parent that is down go last: tried only when the others failed. */
    for (int pass = 0; pass < 2; pass++) {
        for (unsigned i = 0; i < c->route->npaths; i++) {
            if (path_is_down(c, &c->route->paths[i], now) == (pass == 1))
                c->order[c->norder++] = i;
        }
    }
    ev_init(&c->io, chain_io);
    c->io.data = c;
    ev_timer_init(&c->timer, chain_kick, 0., 0.);
    c->timer.data = c;
    ev_timer_start(c->loop, &c->timer);
    return c;
}

static void chain_cancel(struct outbound_conn *c)
{
    chain_free(c);
}

static const char *chain_current(const struct outbound_conn *c)
{
    return c->path != NULL ? c->path->text : c->route->paths[c->order[0]].text;
}

const struct outbound outbound_chain = {
    .name = "chain",
    .start = chain_start,
    .cancel = chain_cancel,
    .current = chain_current,
};
