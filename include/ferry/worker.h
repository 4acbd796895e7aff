/*
 * A worker: one thread running one libev loop with its own server (listeners, resolver, auth
 * pool, sessions). The main thread talks to it only through worker_* calls, which post to the
 * worker's loop with an ev_async and never touch its sessions.
 */
#ifndef FERRY_WORKER_H
#define FERRY_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct auth_cache;
struct limits;
struct listener_set;
struct localaddrs;
struct snapshot;
struct worker;

/*
 * Build worker w's loop and server (taking its sockets from ls) on the calling thread, so that
 * errors come back here, then start its thread. local is the host's addresses (a reference is
 * taken; NULL: none). Returns NULL with a message in err.
 */
struct worker *worker_start(unsigned w, struct snapshot *snap, struct localaddrs *local,
                            struct limits *limits, struct auth_cache *auth_cache,
                            struct listener_set *ls, char *err, size_t errlen);

/* The worker's checks see local as the host's addresses from now on (a reference is taken). */
void worker_set_local(struct worker *wk, struct localaddrs *local);

/* New sessions of the worker start under snap (a reference is taken). */
void worker_reload(struct worker *wk, struct snapshot *snap);

/*
 * Stop accepting; the worker's thread ends once its sessions are gone or after grace seconds,
 * whichever comes first. now: end at once, closing every session.
 */
void worker_shutdown(struct worker *wk, double grace, bool now);

/* Live sessions of the worker (read without a lock: a recent value). */
unsigned worker_sessions(struct worker *wk);

/* Totals of the sessions that ended, summed over workers by worker_add_counters. */
struct worker_totals {
    uint64_t sessions, up, down, refused, limited, failed;
};

/* Add the worker's totals (recent values, read without a lock) to t. */
void worker_add_counters(struct worker *wk, struct worker_totals *t);

/* The worker's metrics (read without a lock by the scrape). */
const struct metrics_worker *worker_metrics(const struct worker *wk);

/* True once the worker's loop has ended. */
bool worker_done(struct worker *wk);

/* Wait for the thread to end; the worker's totals stay readable. */
void worker_join_thread(struct worker *wk);

/* Wait for the thread to end (if not yet) and free everything of the worker. */
void worker_join(struct worker *wk);

#endif
