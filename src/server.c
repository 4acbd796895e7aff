/*
 * A worker's server: the listening sockets of one loop, the resolver and auth pool its
 * sessions share, client rules and the accept rate at accept, and what happens when the
 * process runs out of file descriptors: it pauses for a moment (descriptors of sessions that
 * are ending come back), and if they are still short, a spare descriptor, given back for a
 * moment, lets it accept the waiting connections and close them at once, so that clients
 * learn it instead of waiting in the backlog (the trick libev's documentation describes).
 */
#include "config.h"

#include "ferry/server.h"

#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ferry/auth_pool.h"
#include "ferry/conf.h"
#include "ferry/limits.h"
#include "ferry/listener.h"
#include "ferry/localaddr.h"
#include "ferry/log.h"
#include "ferry/policy.h"
#include "ferry/relay.h"
#include "ferry/resolver.h"
#include "ferry/session.h"
#include "ferry/snapshot.h"
#include "ferry/tunnel_conn.h"
#include "ferry/udp.h"
#include "ferry/auth_verify.h"

/* Connections taken per readiness event before other watchers get a turn. */
#define ACCEPT_BATCH 64
/* Pause before accepting again after EMFILE/ENFILE/ENOBUFS/ENOMEM. */
#define ACCEPT_BACKOFF 0.1
/* A burst of accept failures ends with an accept this long after the last failure. */
#define ACCEPT_CALM 1.0

/* Default resolver cache settings; not yet configurable. */
#define RESOLVER_CACHE_SIZE 4096
#define RESOLVER_NEGATIVE_TTL 5.0
#define RESOLVER_MAX_TTL 3600.0

struct listener {
    struct server *srv;
    int fd;
    ev_io readable;
    struct addr addr;
    const struct addr *advertise; /* from the listen line, or NULL */
    bool tunnel;                  /* listen ... tunnel (tunnel_conn.h) */
    uint8_t protocols;            /* listen ... protocols (frontend.h) */
};

struct server {
    struct ev_loop *loop;
    struct session_ctx ctx;
    ev_timer backoff;
    int spare_fd;         /* /dev/null, held for the moment descriptors run out; -1 if none */
    bool starved;         /* a burst of accept failures: logged once, see ACCEPT_CALM */
    double failed_at;     /* ev_now of the last accept failure */
    unsigned long closed; /* connections closed at accept for want of descriptors */
    size_t nlisteners;
    struct listener listeners[CONF_MAX_LISTEN];
    struct addr advertise[CONF_MAX_LISTEN];
};

static void listeners_pause(struct server *srv)
{
    for (size_t i = 0; i < srv->nlisteners; i++)
        ev_io_stop(srv->loop, &srv->listeners[i].readable);
    ev_timer_set(&srv->backoff, ACCEPT_BACKOFF, 0.);
    ev_timer_start(srv->loop, &srv->backoff);
}

static void backoff_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct server *srv = w->data;

    for (size_t i = 0; i < srv->nlisteners; i++)
        ev_io_start(loop, &srv->listeners[i].readable);
}

/*
 * Out of descriptors: free the spare, accept the waiting connections and close each at once
 * (the client sees EOF instead of hanging in the backlog), then take the spare again.
 * Returns how many were closed.
 */
static unsigned accept_and_close(struct server *srv, struct listener *l)
{
    unsigned n = 0;

    if (srv->spare_fd >= 0) {
        close(srv->spare_fd);
        srv->spare_fd = -1;
    }
    for (; n < ACCEPT_BATCH; n++) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);

        if (fd < 0)
            break;
        close(fd);
    }
    srv->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    srv->closed += n;
    return n;
}

/*
 * The first failure of a burst is logged; the rest are counted until the burst is over.
 * Returns whether the burst was on already.
 */
static bool accept_starved(struct server *srv, int err)
{
    srv->failed_at = ev_now(srv->loop);
    if (srv->starved)
        return true;
    srv->starved = true;
    srv->closed = 0;
    if (err == EMFILE || err == ENFILE)
        log_warn("accept: %s: closing new connections at once until descriptors are free "
                 "(see max-sessions in ferryd.conf(5))",
                 strerror(err));
    else
        log_warn("accept: %s; pausing accept for %.0f ms at a time until it works again",
                 strerror(err), ACCEPT_BACKOFF * 1000);
    return false;
}

/* Client rules, before a byte is read: a blocked client is closed without a reply. */
static bool client_allowed(const struct server *srv, const struct listener *l,
                           const struct addr *client)
{
    struct policy_decision d = policy_check_client(&srv->ctx.snap->config, client, &l->addr);
    char name[ADDR_STRLEN];

    if (d.verdict == ACL_VERDICT_PASS && !d.log)
        return true;
    addr_format(client, name, sizeof(name));
    if (d.verdict == ACL_VERDICT_PASS) {
        log_notice("client %s passed by client rule %u (line %u)", name, d.rule, d.line);
        return true;
    }
    if (d.rule == 0)
        log_info("client %s blocked: no client rule passes it", name);
    else
        log_msg(d.log ? LOG_NOTICE : LOG_INFO, "client %s blocked by client rule %u (line %u)",
                name, d.rule, d.line);
    return false;
}

/* Client rules, then the client IP's accept rate; then the session owns fd. */
static void accept_client(struct server *srv, struct listener *l, int fd, const struct addr *client)
{
    struct limits *limits = srv->ctx.limits;
    struct limit *e;

    if (!client_allowed(srv, l, client)) {
        close(fd);
        return;
    }
    e = limits_client(limits, client);
    if (e == NULL) {
        log_warn("out of memory for a new session");
        close(fd);
        return;
    }
    if (!limits_accept(limits, e, &srv->ctx.snap->config.accept_rate, limits_clock())) {
        char name[ADDR_STRLEN];

        log_debug("client %s over limit accept-rate: closed",
                  addr_format(client, name, sizeof(name)));
        limits_release(limits, e);
        close(fd);
        return;
    }
    if (l->tunnel) {
        tunnel_server_accept(&srv->ctx, fd, client, e);
        return;
    }
    session_start(&srv->ctx, fd, client, l->advertise, l->protocols, e);
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct listener *l = w->data;
    struct server *srv = l->srv;

    for (int i = 0; i < ACCEPT_BATCH; i++) {
        struct addr client;
        int fd;

        client.len = sizeof(client.u);
        fd = accept4(l->fd, &client.u.sa, &client.len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            switch (errno) {
            case EAGAIN:
#if EAGAIN != EWOULDBLOCK
            case EWOULDBLOCK:
#endif
                return;
            case EINTR:
            case ECONNABORTED:
            case EPROTO:
                continue;
            case EMFILE:
            case ENFILE:
                /* First a pause: sessions ending give descriptors back. Still short after it
                 * (the burst goes on), the waiting clients are closed. Nothing accepted even
                 * so (another worker took the spare's slot): level-triggered readiness would
                 * spin, so pause. */
                if (!accept_starved(srv, errno) || accept_and_close(srv, l) == 0 ||
                    srv->spare_fd < 0)
                    listeners_pause(srv);
                return;
            case ENOBUFS:
            case ENOMEM:
            default:
                /* Memory, or unexpected and maybe lasting: back off rather than spin on it. */
                accept_starved(srv, errno);
                listeners_pause(srv);
                return;
            }
        }
        if (srv->starved && ev_now(loop) - srv->failed_at >= ACCEPT_CALM) {
            srv->starved = false;
            log_notice("accept works again; %lu connection%s closed at accept meanwhile",
                       srv->closed, srv->closed == 1 ? " was" : "s were");
        }
        accept_client(srv, l, fd, &client);
    }
}

struct server *server_new(struct ev_loop *loop, struct snapshot *snap, struct limits *limits,
                          struct auth_cache *auth_cache, struct session_counters *counters,
                          struct listener_set *ls, unsigned w, char *err, size_t errlen)
{
    const struct config *cfg = &snap->config;
    struct resolver_options ropt = {
        .servers = cfg->resolver_servers,
        .nservers = cfg->nresolver_servers,
        .timeout = cfg->resolver_timeout,
        .tries = cfg->resolver_tries,
        .cache_size = RESOLVER_CACHE_SIZE,
        .negative_ttl = RESOLVER_NEGATIVE_TTL,
        .max_ttl = RESOLVER_MAX_TTL,
        .metrics = &counters->metrics,
    };
    struct server *srv = calloc(1, sizeof(*srv));

    if (srv == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    srv->loop = loop;
    srv->ctx.loop = loop;
    srv->ctx.snap = snapshot_ref(snap);
    srv->ctx.limits = limits;
    srv->ctx.counters = counters;
    ev_timer_init(&srv->backoff, backoff_cb, 0., 0.);
    srv->backoff.data = srv;
    srv->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (srv->spare_fd < 0)
        log_warn("/dev/null: %s: without a spare descriptor, clients wait in the backlog "
                 "while descriptors run out",
                 strerror(errno));

    for (size_t i = 0; i < ls->naddrs; i++) {
        struct listener *l = &srv->listeners[srv->nlisteners++];

        l->srv = srv;
        l->fd = listener_set_take(ls, w, i);
        l->addr = ls->addrs[i];
        srv->advertise[i] = ls->advertise[i];
        l->advertise = srv->advertise[i].len > 0 ? &srv->advertise[i] : NULL;
        l->tunnel = ls->tunnel[i];
        l->protocols = ls->protocols[i];
        ev_io_init(&l->readable, accept_cb, l->fd, EV_READ);
        l->readable.data = l;
    }

    srv->ctx.relay_pool = relay_pool_new(loop);
    srv->ctx.auth_cache = auth_cache;
    srv->ctx.udp_batch = udp_batch_new();
    if (srv->ctx.relay_pool == NULL || srv->ctx.udp_batch == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    srv->ctx.resolver = resolver_new(loop, &ropt, err, errlen);
    if (srv->ctx.resolver == NULL)
        goto fail;
    /* Always there, so that a reload may turn password authentication on. */
    srv->ctx.auth_pool = auth_pool_new(loop, cfg->auth_threads);
    if (srv->ctx.auth_pool == NULL) {
        snprintf(err, errlen, "cannot start the password verification threads: %s",
                 strerror(errno));
        goto fail;
    }
    srv->ctx.verifier = auth_verify_new(srv->ctx.auth_pool, srv->ctx.auth_cache);
    if (srv->ctx.verifier == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < srv->nlisteners; i++)
        ev_io_start(loop, &srv->listeners[i].readable);
    return srv;

fail:
    server_free(srv);
    return NULL;
}

void server_reload(struct server *srv, struct snapshot *snap)
{
    struct snapshot *old = srv->ctx.snap;

    srv->ctx.snap = snapshot_ref(snap);
    snapshot_unref(old);
}

void server_set_local(struct server *srv, struct localaddrs *local)
{
    struct localaddrs *old = srv->ctx.local;

    srv->ctx.local = localaddrs_ref(local);
    localaddrs_unref(old);
}

void server_stop_listening(struct server *srv)
{
    ev_timer_stop(srv->loop, &srv->backoff);
    for (size_t i = 0; i < srv->nlisteners; i++) {
        ev_io_stop(srv->loop, &srv->listeners[i].readable);
        close(srv->listeners[i].fd);
    }
    srv->nlisteners = 0;
}

unsigned server_sessions(const struct server *srv)
{
    return (unsigned)atomic_load_explicit(&srv->ctx.counters->live, memory_order_relaxed);
}

void server_free(struct server *srv)
{
    if (srv == NULL)
        return;
    server_stop_listening(srv);
    session_close_all(&srv->ctx);
    tunnel_worker_free();
    auth_verify_free(srv->ctx.verifier);
    if (srv->ctx.auth_pool != NULL)
        auth_pool_free(srv->ctx.auth_pool);
    if (srv->ctx.resolver != NULL)
        resolver_free(srv->ctx.resolver);
    relay_pool_free(srv->ctx.relay_pool);
    udp_batch_free(srv->ctx.udp_batch);
    snapshot_unref(srv->ctx.snap);
    localaddrs_unref(srv->ctx.local);
    if (srv->spare_fd >= 0)
        close(srv->spare_fd);
    free(srv);
}
