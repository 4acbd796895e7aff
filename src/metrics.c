/* Metrics (metrics.h): the Prometheus text rendering and the scrape listener. */
#include "config.h"

#include <errno.h>
#include <ev.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ferry/metrics.h"
#include "ferry/reply.h"

static const double dns_bounds[METRICS_DNS_BUCKETS] = METRICS_DNS_BOUNDS;

/* --- rendering --------------------------------------------------------------------------- */

static const char *const fe_names[METRICS_FE_COUNT] = {"socks4", "socks5", "http", "none"};
static const char *const cmd_names[METRICS_CMD_COUNT] = {"connect", "bind",        "udp",
                                                         "resolve", "resolve-ptr", "none"};
static const char *const relay_names[METRICS_RELAY_COUNT] = {"splice", "buffered"};
static const char *const udp_drop_names[METRICS_UDP_DROP_COUNT] = {
    "stranger", "frag",     "malformed", "filtered", "resolve", "queue",
    "send",     "oversize", "blocked",   "auth",     "replay",  "old"};
/* enum limit_refusal, LIMIT_OK first (not rendered) */
static const char *const limit_names[METRICS_LIMITS] = {NULL,
                                                        "max-sessions",
                                                        "sessions-per-client",
                                                        "sessions-per-user",
                                                        "quota-per-user",
                                                        "request-rule",
                                                        "max-negotiating",
                                                        "negotiating-per-client",
                                                        "other"};

struct out {
    char *buf;
    size_t size, len;
    bool full;
};

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct out *o, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (o->full)
        return;
    va_start(ap, fmt);
    n = vsnprintf(o->buf + o->len, o->size - o->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= o->size - o->len) {
        o->full = true;
        return;
    }
    o->len += (size_t)n;
}

static void head(struct out *o, const char *name, const char *type, const char *help)
{
    put(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* The sum over workers of the counter at byte offset off in struct metrics_worker. */
static uint64_t sum(const struct metrics_worker *const *w, size_t n, size_t off)
{
    uint64_t total = 0;

    for (size_t i = 0; i < n; i++) {
        const _Atomic uint64_t *c = (const _Atomic uint64_t *)((const char *)w[i] + off);

        total += atomic_load_explicit(c, memory_order_relaxed);
    }
    return total;
}

#define SUM(member) sum(w, n, offsetof(struct metrics_worker, member))

size_t metrics_render(const struct metrics_worker *const *w, size_t n,
                      const struct metrics_global *g, char *buf, size_t size)
{
    struct out o = {.buf = buf, .size = size};
    uint64_t cum = 0, count = 0;

    if (size == 0)
        return 0;
    head(&o, "ferry_build_info", "gauge", "ferryd's version (the value is always 1).");
    put(&o, "ferry_build_info{version=\"%s\"} 1\n", g->version != NULL ? g->version : "");
    head(&o, "ferry_start_time_seconds", "gauge",
         "When ferryd started, in seconds since the epoch.");
    put(&o, "ferry_start_time_seconds %.3f\n", g->start_time);
    head(&o, "ferry_stopping", "gauge", "1 while ferryd shuts down, else 0.");
    put(&o, "ferry_stopping %d\n", g->stopping ? 1 : 0);
    head(&o, "ferry_workers", "gauge", "Worker threads (event loops).");
    put(&o, "ferry_workers %u\n", g->workers);
    head(&o, "ferry_open_fds", "gauge", "File descriptors open in the process.");
    put(&o, "ferry_open_fds %lu\n", g->fds_open);
    head(&o, "ferry_max_fds", "gauge", "The process's file descriptor limit.");
    put(&o, "ferry_max_fds %lu\n", g->fds_max);
    head(&o, "ferry_config_reloads_total", "counter", "Configuration reloads (SIGHUP), by result.");
    put(&o, "ferry_config_reloads_total{result=\"ok\"} %llu\n", (unsigned long long)g->reloads_ok);
    put(&o, "ferry_config_reloads_total{result=\"failed\"} %llu\n",
        (unsigned long long)g->reloads_failed);

    head(&o, "ferry_sessions_open", "gauge", "Sessions running now.");
    put(&o, "ferry_sessions_open %u\n", g->sessions_open);
    head(&o, "ferry_sessions_total", "counter", "Sessions that ended, by front end and command.");
    for (int f = 0; f < METRICS_FE_COUNT; f++) {
        for (int c = 0; c < METRICS_CMD_COUNT; c++) {
            put(&o, "ferry_sessions_total{frontend=\"%s\",command=\"%s\"} %llu\n", fe_names[f],
                cmd_names[c], (unsigned long long)SUM(sessions[f][c]));
        }
    }
    head(&o, "ferry_replies_total", "counter", "Replies sent to clients, by code (SOCKS5 terms).");
    for (int r = 0; r < METRICS_REPLIES; r++) {
        put(&o, "ferry_replies_total{code=\"%s\"} %llu\n", reply_name((uint8_t)r),
            (unsigned long long)SUM(replies[r]));
    }
    head(&o, "ferry_bytes_total", "counter",
         "Bytes relayed (TCP, and UDP payload), by direction: up is client to target.");
    put(&o, "ferry_bytes_total{direction=\"up\"} %llu\n", (unsigned long long)SUM(bytes_up));
    put(&o, "ferry_bytes_total{direction=\"down\"} %llu\n", (unsigned long long)SUM(bytes_down));
    head(&o, "ferry_relays_total", "counter", "TCP relays that ended, by the mode they used.");
    for (int m = 0; m < METRICS_RELAY_COUNT; m++) {
        put(&o, "ferry_relays_total{mode=\"%s\"} %llu\n", relay_names[m],
            (unsigned long long)SUM(relays[m]));
    }

    head(&o, "ferry_dns_queries_total", "counter", "Name lookups asked of a DNS server.");
    put(&o, "ferry_dns_queries_total %llu\n", (unsigned long long)SUM(dns_queries));
    head(&o, "ferry_dns_cache_hits_total", "counter", "Name lookups answered by the cache.");
    put(&o, "ferry_dns_cache_hits_total %llu\n", (unsigned long long)SUM(dns_cache_hits));
    head(&o, "ferry_dns_failures_total", "counter",
         "DNS answers that gave no address (NXDOMAIN, no data, timeout, failure).");
    put(&o, "ferry_dns_failures_total %llu\n", (unsigned long long)SUM(dns_failures));
    head(&o, "ferry_dns_latency_seconds", "histogram", "Time DNS servers took to answer.");
    for (int b = 0; b <= METRICS_DNS_BUCKETS; b++) {
        cum += SUM(dns_latency[b]);
        if (b < METRICS_DNS_BUCKETS)
            put(&o, "ferry_dns_latency_seconds_bucket{le=\"%g\"} %llu\n", dns_bounds[b],
                (unsigned long long)cum);
        else
            put(&o, "ferry_dns_latency_seconds_bucket{le=\"+Inf\"} %llu\n",
                (unsigned long long)cum);
    }
    count = cum;
    put(&o, "ferry_dns_latency_seconds_sum %.6f\n", (double)SUM(dns_latency_us) / 1e6);
    put(&o, "ferry_dns_latency_seconds_count %llu\n", (unsigned long long)count);

    head(&o, "ferry_auth_total", "counter",
         "Logins, by result: ok, failed (wrong credentials), refused (unchecked: lockout).");
    put(&o, "ferry_auth_total{result=\"ok\"} %llu\n", (unsigned long long)SUM(auth_ok));
    put(&o, "ferry_auth_total{result=\"failed\"} %llu\n", (unsigned long long)SUM(auth_failed));
    put(&o, "ferry_auth_total{result=\"refused\"} %llu\n", (unsigned long long)SUM(auth_refused));

    head(&o, "ferry_rule_hits_total", "counter",
         "Requests decided by a request rule, by its number (\"default\": the implicit block at "
         "the end of the list; \"other\": rules past 64).");
    for (int r = 0; r < METRICS_RULES; r++) {
        uint64_t v = SUM(rule_hits[r]);

        if (v > 0)
            put(&o, "ferry_rule_hits_total{rule=\"%d\"} %llu\n", r + 1, (unsigned long long)v);
    }
    put(&o, "ferry_rule_hits_total{rule=\"other\"} %llu\n",
        (unsigned long long)SUM(rule_hits[METRICS_RULES]));
    put(&o, "ferry_rule_hits_total{rule=\"default\"} %llu\n",
        (unsigned long long)SUM(rule_default_blocks));
    head(&o, "ferry_limit_refusals_total", "counter",
         "Sessions refused or closed by a limit, by the limit.");
    for (int l = 1; l < METRICS_LIMITS; l++) {
        put(&o, "ferry_limit_refusals_total{limit=\"%s\"} %llu\n", limit_names[l],
            (unsigned long long)SUM(limit_refusals[l]));
    }

    head(&o, "ferry_udp_datagrams_total", "counter", "UDP datagrams relayed, by direction.");
    put(&o, "ferry_udp_datagrams_total{direction=\"up\"} %llu\n", (unsigned long long)SUM(udp_up));
    put(&o, "ferry_udp_datagrams_total{direction=\"down\"} %llu\n",
        (unsigned long long)SUM(udp_down));
    head(&o, "ferry_udp_dropped_total", "counter", "UDP datagrams dropped, by reason.");
    for (int d = 0; d < METRICS_UDP_DROP_COUNT; d++) {
        put(&o, "ferry_udp_dropped_total{reason=\"%s\"} %llu\n", udp_drop_names[d],
            (unsigned long long)SUM(udp_drops[d]));
    }
    head(&o, "ferry_route_path_failures_total", "counter",
         "Paths through parent proxies that failed (the next path was tried, if any).");
    put(&o, "ferry_route_path_failures_total %llu\n", (unsigned long long)SUM(route_paths_failed));
    return o.full ? 0 : o.len;
}

/* --- the scrape listener ------------------------------------------------------------------ */

#define METRICS_REQUEST_MAX 2048
#define METRICS_CONN_MAX 16
#define METRICS_CONN_TIMEOUT 5.0

struct metrics_conn {
    struct metrics_server *ms;
    int fd;
    ev_io io;
    ev_timer timer;
    size_t in_len;
    char in[METRICS_REQUEST_MAX];
    char *out;
    size_t out_len, out_off;
    bool used;
};

struct metrics_server {
    struct ev_loop *loop;
    int fd;
    ev_io accept_io;
    metrics_source_cb source;
    void *arg;
    struct metrics_conn conns[METRICS_CONN_MAX];
};

static void conn_close(struct metrics_conn *c)
{
    ev_io_stop(c->ms->loop, &c->io);
    ev_timer_stop(c->ms->loop, &c->timer);
    close(c->fd);
    free(c->out);
    c->out = NULL;
    c->used = false;
}

static void conn_respond(struct metrics_conn *c, int status, const char *reason, const char *type,
                         const char *body, size_t len, bool head_only)
{
    size_t cap = len + 256;

    c->out = malloc(cap);
    if (c->out == NULL) {
        conn_close(c);
        return;
    }
    c->out_len = (size_t)snprintf(c->out, cap,
                                  "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                                  "Connection: close\r\n\r\n",
                                  status, reason, type, len);
    if (!head_only) {
        memcpy(c->out + c->out_len, body, len);
        c->out_len += len;
    }
    c->out_off = 0;
    ev_io_stop(c->ms->loop, &c->io);
    ev_io_set(&c->io, c->fd, EV_WRITE);
    ev_io_start(c->ms->loop, &c->io);
}

static void conn_request(struct metrics_conn *c)
{
    struct metrics_server *ms = c->ms;
    char method[8], target[64];
    bool head_only;

    if (sscanf(c->in, "%7s %63s HTTP/1.%*c", method, target) != 2) {
        conn_respond(c, 400, "Bad Request", "text/plain", "bad request\n", 12, false);
        return;
    }
    head_only = strcmp(method, "HEAD") == 0;
    if (strcmp(method, "GET") != 0 && !head_only) {
        conn_respond(c, 405, "Method Not Allowed", "text/plain", "GET only\n", 9, false);
        return;
    }
    /* A query string is ignored (Prometheus may add one). */
    target[strcspn(target, "?")] = '\0';
    if (strcmp(target, "/metrics") == 0) {
        const struct metrics_worker *w[256];
        size_t n = sizeof(w) / sizeof(w[0]);
        struct metrics_global g = {0};
        char *body = malloc(METRICS_RENDER_MAX);
        size_t len;

        if (body == NULL) {
            conn_close(c);
            return;
        }
        ms->source(ms->arg, &g, w, &n);
        len = metrics_render(w, n, &g, body, METRICS_RENDER_MAX);
        conn_respond(c, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", body, len,
                     head_only);
        free(body);
    } else if (strcmp(target, "/health") == 0) {
        struct metrics_global g = {0};
        const struct metrics_worker *w[1];
        size_t n = 0;

        ms->source(ms->arg, &g, w, &n);
        if (g.stopping)
            conn_respond(c, 503, "Service Unavailable", "text/plain", "stopping\n", 9, head_only);
        else
            conn_respond(c, 200, "OK", "text/plain", "ok\n", 3, head_only);
    } else {
        conn_respond(c, 404, "Not Found", "text/plain", "not found: try /metrics or /health\n", 35,
                     false);
    }
}

static void conn_io(struct ev_loop *loop, ev_io *w, int revents)
{
    struct metrics_conn *c = w->data;
    ssize_t n;

    (void)loop;
    if (c->out != NULL) {
        n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n <= 0) {
            conn_close(c);
            return;
        }
        c->out_off += (size_t)n;
        if (c->out_off == c->out_len)
            conn_close(c);
        return;
    }
    (void)revents;
    n = recv(c->fd, c->in + c->in_len, sizeof(c->in) - 1 - c->in_len, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        conn_close(c);
        return;
    }
    c->in_len += (size_t)n;
    c->in[c->in_len] = '\0';
    if (strstr(c->in, "\r\n\r\n") != NULL || strstr(c->in, "\n\n") != NULL) {
        conn_request(c);
        return;
    }
    if (c->in_len == sizeof(c->in) - 1)
        conn_respond(c, 431, "Request Header Fields Too Large", "text/plain", "too large\n", 10,
                     false);
}

static void conn_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    conn_close(w->data);
}

static void on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
    struct metrics_server *ms = w->data;

    (void)revents;
    for (int k = 0; k < 16; k++) {
        int fd = accept4(ms->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        struct metrics_conn *c = NULL;

        if (fd < 0)
            return;
        for (size_t i = 0; i < METRICS_CONN_MAX && c == NULL; i++) {
            if (!ms->conns[i].used)
                c = &ms->conns[i];
        }
        if (c == NULL) {
            close(fd); /* busy: scrapers retry */
            continue;
        }
        c->used = true;
        c->ms = ms;
        c->fd = fd;
        c->in_len = 0;
        c->out = NULL;
        ev_io_init(&c->io, conn_io, fd, EV_READ);
        c->io.data = c;
        ev_io_start(loop, &c->io);
        ev_timer_init(&c->timer, conn_timeout, METRICS_CONN_TIMEOUT, 0.);
        c->timer.data = c;
        ev_timer_start(loop, &c->timer);
    }
}

struct metrics_server *metrics_server_start(struct ev_loop *loop, const struct addr *addr,
                                            metrics_source_cb source, void *arg, char *err,
                                            size_t errlen)
{
    struct metrics_server *ms = calloc(1, sizeof(*ms));
    int on = 1;
    char where[ADDR_STRLEN];

    if (ms == NULL) {
        snprintf(err, errlen, "metrics: %s", strerror(errno));
        return NULL;
    }
    ms->loop = loop;
    ms->source = source;
    ms->arg = arg;
    ms->fd = socket(addr_family(addr), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    /* SO_REUSEPORT: a new binary started by an upgrade (SIGUSR2) listens beside the old one. */
    if (ms->fd < 0 || setsockopt(ms->fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) < 0 ||
        setsockopt(ms->fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) < 0 ||
        bind(ms->fd, &addr->u.sa, addr->len) < 0 || listen(ms->fd, 64) < 0) {
        snprintf(err, errlen, "metrics: cannot listen on %s: %s",
                 addr_format(addr, where, sizeof(where)), strerror(errno));
        if (ms->fd >= 0)
            close(ms->fd);
        free(ms);
        return NULL;
    }
    ev_io_init(&ms->accept_io, on_accept, ms->fd, EV_READ);
    ms->accept_io.data = ms;
    ev_io_start(loop, &ms->accept_io);
    return ms;
}

void metrics_server_free(struct metrics_server *ms)
{
    if (ms == NULL)
        return;
    for (size_t i = 0; i < METRICS_CONN_MAX; i++) {
        if (ms->conns[i].used)
            conn_close(&ms->conns[i]);
    }
    ev_io_stop(ms->loop, &ms->accept_io);
    close(ms->fd);
    free(ms);
}
