/*
 * Metrics: counters each worker keeps for itself (relaxed atomics written by that worker's
 * loop only, so nothing is shared on the hot path), summed when scraped, and rendered in the
 * Prometheus text exposition format (version 0.0.4). metrics_render is pure; the scrape
 * listener (metrics_server_*) runs on the main thread's loop.
 */
#ifndef FERRY_METRICS_H
#define FERRY_METRICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ferry/addr.h"

struct ev_loop;

enum metrics_frontend {
    METRICS_FE_SOCKS4,
    METRICS_FE_SOCKS5,
    METRICS_FE_HTTP,
    METRICS_FE_NONE, /* closed before a front end was chosen */
    METRICS_FE_COUNT,
};

enum metrics_cmd {
    METRICS_CMD_CONNECT,
    METRICS_CMD_BIND,
    METRICS_CMD_UDP,
    METRICS_CMD_RESOLVE,
    METRICS_CMD_RESOLVE_PTR,
    METRICS_CMD_NONE, /* ended before a request */
    METRICS_CMD_COUNT,
};

enum metrics_relay {
    METRICS_RELAY_SPLICE,
    METRICS_RELAY_BUFFERED,
    METRICS_RELAY_COUNT,
};

/* The reasons a UDP datagram was dropped, as udp.h's struct udp_stats counts them. */
enum metrics_udp_drop {
    METRICS_UDP_STRANGER,
    METRICS_UDP_FRAG,
    METRICS_UDP_MALFORMED,
    METRICS_UDP_FILTERED,
    METRICS_UDP_RESOLVE,
    METRICS_UDP_QUEUE,
    METRICS_UDP_SEND,
    METRICS_UDP_OVERSIZE,
    METRICS_UDP_BLOCKED,
    METRICS_UDP_AUTH,   /* a tunnel's sealed datagrams (tunnel_udp.h): not authentic */
    METRICS_UDP_REPLAY, /* duplicate counter */
    METRICS_UDP_OLD,    /* behind the replay window */
    METRICS_UDP_DROP_COUNT,
};

#define METRICS_REPLIES 9 /* SOCKS5 REP 0x00..0x08 (the session's vocabulary) */
#define METRICS_RULES 64  /* rule hits counted per rule number up to this; the rest as "other" */
#define METRICS_LIMITS 9  /* enum limit_refusal values */
#define METRICS_DNS_BUCKETS 11

/* The upper bounds (seconds) of the DNS latency histogram's buckets; +Inf after them. */
#define METRICS_DNS_BOUNDS                                                                         \
    {                                                                                              \
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5                          \
    }

/* One worker's counters. */
struct metrics_worker {
    _Atomic uint64_t sessions[METRICS_FE_COUNT][METRICS_CMD_COUNT]; /* that ended */
    _Atomic uint64_t replies[METRICS_REPLIES];
    _Atomic uint64_t bytes_up;   /* client -> target, TCP and UDP payload */
    _Atomic uint64_t bytes_down; /* target -> client */
    _Atomic uint64_t relays[METRICS_RELAY_COUNT];
    _Atomic uint64_t dns_queries;    /* lookups asked of a server */
    _Atomic uint64_t dns_cache_hits; /* lookups answered by the cache */
    _Atomic uint64_t dns_failures;   /* server answers that were not addresses */
    _Atomic uint64_t dns_latency[METRICS_DNS_BUCKETS + 1]; /* per bucket, not cumulative */
    _Atomic uint64_t dns_latency_us;                       /* the sum, in microseconds */
    _Atomic uint64_t auth_ok;
    _Atomic uint64_t auth_failed;
    _Atomic uint64_t auth_refused; /* logins refused unchecked (auth-failures lockout) */
    _Atomic uint64_t rule_hits[METRICS_RULES + 1]; /* request rule n at [n - 1]; [64] others */
    _Atomic uint64_t rule_default_blocks;          /* the implicit block at a list's end */
    _Atomic uint64_t limit_refusals[METRICS_LIMITS];
    _Atomic uint64_t udp_up, udp_down; /* datagrams */
    _Atomic uint64_t udp_drops[METRICS_UDP_DROP_COUNT];
    _Atomic uint64_t route_paths_failed; /* parent paths that failed (failover) */
};

static inline void metrics_add(_Atomic uint64_t *c, uint64_t n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

/* Count a DNS answer that took `seconds`. */
static inline void metrics_dns_latency(struct metrics_worker *m, double seconds)
{
    static const double bounds[METRICS_DNS_BUCKETS] = METRICS_DNS_BOUNDS;
    size_t b = 0;

    if (seconds < 0)
        seconds = 0;
    while (b < METRICS_DNS_BUCKETS && seconds > bounds[b])
        b++;
    metrics_add(&m->dns_latency[b], 1);
    metrics_add(&m->dns_latency_us, (uint64_t)(seconds * 1e6));
}

/* What is not a per-worker counter, read by the main thread at scrape time. */
struct metrics_global {
    unsigned workers;
    unsigned sessions_open;
    unsigned long fds_open;
    unsigned long fds_max;
    uint64_t reloads_ok, reloads_failed;
    double start_time; /* seconds since the epoch */
    bool stopping;
    const char *version;
};

/*
 * Render the sum of the n workers' counters and g as Prometheus text into buf. Returns the
 * length, or 0 when size is too small. METRICS_RENDER_MAX is always enough.
 */
#define METRICS_RENDER_MAX 65536
size_t metrics_render(const struct metrics_worker *const *w, size_t n,
                      const struct metrics_global *g, char *buf, size_t size);

/* --- the scrape listener (main thread) ---------------------------------------------------- */

struct metrics_server;

/* Fill g and the list of worker counters (at most *n, set to how many) for one scrape. */
typedef void (*metrics_source_cb)(void *arg, struct metrics_global *g,
                                  const struct metrics_worker **w, size_t *n);

/*
 * Listen on addr (TCP) and answer GET /metrics (the text format) and GET /health ("ok", 200;
 * 503 "stopping" once stopping), anything else 404/405; one request per connection, bounded in
 * size and time. Returns NULL with a message in err.
 */
struct metrics_server *metrics_server_start(struct ev_loop *loop, const struct addr *addr,
                                            metrics_source_cb source, void *arg, char *err,
                                            size_t errlen);
void metrics_server_free(struct metrics_server *ms);

#endif
