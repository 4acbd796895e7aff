/* One client session: the state machine from greeting to relay, and the worker's session list. */
#ifndef FERRY_SESSION_H
#define FERRY_SESSION_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ferry/addr.h"
#include "ferry/metrics.h"

struct ev_loop;
struct auth_cache;
struct auth_pool;
struct limit;
struct limits;
struct localaddrs;
struct relay_pool;
struct resolver;
struct session;
struct snapshot;
struct udp_batch;
struct auth_verifier;

/*
 * A worker's running totals, written by its own loop when sessions end (never per byte) and
 * read by the main thread for its log lines: nothing shared on the hot path.
 */
struct session_counters {
    _Atomic unsigned live;     /* sessions running now */
    _Atomic uint64_t sessions; /* sessions that ended */
    _Atomic uint64_t up;       /* bytes client -> target (relayed and UDP payload) */
    _Atomic uint64_t down;     /* bytes target -> client */
    _Atomic uint64_t refused;  /* requests refused by the rules (0x02) */
    _Atomic uint64_t limited;  /* requests refused by a limit */
    _Atomic uint64_t failed;   /* other failure replies */
    struct metrics_worker metrics; /* the worker's metrics (metrics.h) */
};

/* What the sessions of one worker share. The server owns it; sessions only read it, except for
 * the session list and counters that session.c keeps. */
struct session_ctx {
    struct ev_loop *loop;
    struct snapshot *snap; /* what new sessions start under; each takes a reference */
    struct resolver *resolver;
    struct auth_pool *auth_pool;
    struct relay_pool *relay_pool;  /* the worker's spare pipes and buffers */
    struct auth_cache *auth_cache;  /* recently verified logins, shared by the workers */
    struct auth_verifier *verifier; /* password checks: the cache, merged runs, the pool */
    struct udp_batch *udp_batch;    /* the worker's datagram batch buffers */
    struct limits *limits;          /* the process's limits, shared by every worker */
    struct localaddrs *local;       /* the host's own addresses now (the server's reference;
                                     * replaced on this loop only, read by every check) */

    struct session *sessions; /* every live session, for shutdown (counted in counters->live) */
    struct session_counters *counters; /* the worker's, outliving its sessions */
    /* New connections closed at accept by a limit, not yet logged (one notice per interval). */
    unsigned long closed_unlogged;
    double closed_logged; /* ev_now of the last such notice */
};

/*
 * Take ownership of an accepted, non-blocking client socket and of a reference on the client
 * IP's limits entry, and start negotiating. advertise is the accepting listener's public
 * address for UDP and BIND replies, or NULL.
 */
void session_start(struct session_ctx *ctx, int fd, const struct addr *client,
                   const struct addr *advertise, unsigned protocols, struct limit *client_limit);

/*
 * A tunnel stream's session (tunnel_conn.h): fd is one end of a socketpair whose first bytes
 * are a SOCKS5 request (no greeting), user the name the client's key maps to (the session
 * starts logged in as it), client the tunnel peer's address, local the tunnel listener's
 * address (what BIND and UDP replies start from). Takes client_limit's reference as
 * session_start does. The request (req, len bytes) is taken as if read from fd (true); false:
 * not taken (too long, or no session), the caller writes it into the socketpair.
 */
bool session_start_tunnel(struct session_ctx *ctx, int fd, const struct addr *client,
                          const struct addr *local, const char *user, struct limit *client_limit,
                          const uint8_t *req, size_t len);

/*
 * A new connection closed at accept by a limit (why: an enum limit_refusal): counted in the
 * metrics, and a notice at most every few seconds naming the limits.
 */
void session_closed_at_accept(struct session_ctx *ctx, const struct addr *client, int why);

/* Close every session of ctx (shutdown). */
void session_close_all(struct session_ctx *ctx);

#endif
