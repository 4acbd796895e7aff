/* Worker threads, one loop each (see worker.h). */
#include "config.h"

#include "ferry/worker.h"

#include <errno.h>
#include <ev.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/localaddr.h"
#include "ferry/log.h"
#include "ferry/server.h"
#include "ferry/session.h"
#include "ferry/snapshot.h"

/* How often a stopping worker looks whether its last session is gone. */
#define WORKER_DRAIN_POLL 0.05

struct worker {
    unsigned index;
    pthread_t thread;
    struct ev_loop *loop;
    struct server *srv;
    ev_async wake;                    /* the main thread has posted something below */
    ev_timer drain;                   /* stopping: poll for the last session */
    ev_timer grace;                   /* stopping: the end of the grace */
    struct session_counters counters; /* totals of the sessions that ended */
    atomic_bool done;

    pthread_mutex_t lock;             /* guards what the main thread posts */
    struct snapshot *pending;         /* a snapshot to switch to, or NULL */
    struct localaddrs *pending_local; /* the host's addresses to switch to, or NULL */
    bool stop;                        /* shutdown asked */
    bool stop_now;
    double stop_grace;
    bool stopping; /* (worker thread only) shutdown under way */
    bool joined;   /* (main thread only) the thread has been joined */
};

static void drain_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct worker *wk = w->data;

    if (server_sessions(wk->srv) == 0)
        ev_break(loop, EVBREAK_ALL);
}

static void grace_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    ev_break(loop, EVBREAK_ALL);
}

static void wake_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    struct worker *wk = w->data;
    struct snapshot *snap;
    struct localaddrs *local;
    bool stop, now;
    double grace;

    pthread_mutex_lock(&wk->lock);
    snap = wk->pending;
    wk->pending = NULL;
    local = wk->pending_local;
    wk->pending_local = NULL;
    stop = wk->stop;
    now = wk->stop_now;
    grace = wk->stop_grace;
    pthread_mutex_unlock(&wk->lock);

    if (snap != NULL) {
        server_reload(wk->srv, snap);
        snapshot_unref(snap);
    }
    if (local != NULL) {
        server_set_local(wk->srv, local);
        localaddrs_unref(local);
    }
    if (now) {
        ev_break(loop, EVBREAK_ALL);
        return;
    }
    if (stop && !wk->stopping) {
        wk->stopping = true;
        server_stop_listening(wk->srv);
        ev_timer_set(&wk->drain, 0., WORKER_DRAIN_POLL);
        ev_timer_start(loop, &wk->drain);
        ev_timer_set(&wk->grace, grace, 0.);
        ev_timer_start(loop, &wk->grace);
    }
}

static void *worker_main(void *arg)
{
    struct worker *wk = arg;

    ev_run(wk->loop, 0);
    ev_timer_stop(wk->loop, &wk->drain);
    ev_timer_stop(wk->loop, &wk->grace);
    ev_async_stop(wk->loop, &wk->wake);
    /* Sessions still open now are closed (each writes its access line). */
    server_free(wk->srv);
    wk->srv = NULL;
    atomic_store(&wk->done, true);
    return NULL;
}

struct worker *worker_start(unsigned w, struct snapshot *snap, struct localaddrs *local,
                            struct limits *limits, struct auth_cache *auth_cache,
                            struct listener_set *ls, char *err, size_t errlen)
{
    struct worker *wk = calloc(1, sizeof(*wk));
    sigset_t all, old;
    char name[16];
    int rc;

    if (wk == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    wk->index = w;
    pthread_mutex_init(&wk->lock, NULL);
    wk->loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
    if (wk->loop == NULL) {
        snprintf(err, errlen, "cannot create an event loop");
        goto fail;
    }
    wk->srv = server_new(wk->loop, snap, limits, auth_cache, &wk->counters, ls, w, err, errlen);
    if (wk->srv == NULL)
        goto fail;
    server_set_local(wk->srv, local);
    ev_async_init(&wk->wake, wake_cb);
    wk->wake.data = wk;
    ev_async_start(wk->loop, &wk->wake);
    ev_timer_init(&wk->drain, drain_cb, 0., 0.);
    ev_timer_init(&wk->grace, grace_cb, 0., 0.);
    wk->drain.data = wk->grace.data = wk;

    /* Signals are the main thread's: the worker starts with all of them blocked. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&wk->thread, NULL, worker_main, wk);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        snprintf(err, errlen, "cannot start worker %u: %s", w, strerror(rc));
        goto fail;
    }
    /* Named here, not in the thread, so that every worker has its name by the time the
     * daemon logs that it started (ps -L and /proc show which loop is which). */
    snprintf(name, sizeof(name), "ferryd-w%u", w);
    pthread_setname_np(wk->thread, name);
    return wk;

fail:
    if (wk->srv != NULL)
        server_free(wk->srv);
    if (wk->loop != NULL)
        ev_loop_destroy(wk->loop);
    pthread_mutex_destroy(&wk->lock);
    free(wk);
    return NULL;
}

void worker_reload(struct worker *wk, struct snapshot *snap)
{
    pthread_mutex_lock(&wk->lock);
    snapshot_unref(wk->pending);
    wk->pending = snapshot_ref(snap);
    pthread_mutex_unlock(&wk->lock);
    ev_async_send(wk->loop, &wk->wake);
}

void worker_set_local(struct worker *wk, struct localaddrs *local)
{
    pthread_mutex_lock(&wk->lock);
    localaddrs_unref(wk->pending_local);
    wk->pending_local = localaddrs_ref(local);
    pthread_mutex_unlock(&wk->lock);
    ev_async_send(wk->loop, &wk->wake);
}

void worker_shutdown(struct worker *wk, double grace, bool now)
{
    pthread_mutex_lock(&wk->lock);
    wk->stop = true;
    wk->stop_now = wk->stop_now || now;
    wk->stop_grace = grace;
    pthread_mutex_unlock(&wk->lock);
    ev_async_send(wk->loop, &wk->wake);
}

unsigned worker_sessions(struct worker *wk)
{
    return atomic_load_explicit(&wk->counters.live, memory_order_relaxed);
}

void worker_add_counters(struct worker *wk, struct worker_totals *t)
{
    const struct session_counters *c = &wk->counters;

    t->sessions += atomic_load_explicit(&c->sessions, memory_order_relaxed);
    t->up += atomic_load_explicit(&c->up, memory_order_relaxed);
    t->down += atomic_load_explicit(&c->down, memory_order_relaxed);
    t->refused += atomic_load_explicit(&c->refused, memory_order_relaxed);
    t->limited += atomic_load_explicit(&c->limited, memory_order_relaxed);
    t->failed += atomic_load_explicit(&c->failed, memory_order_relaxed);
}

const struct metrics_worker *worker_metrics(const struct worker *wk)
{
    return &wk->counters.metrics;
}

bool worker_done(struct worker *wk)
{
    return atomic_load(&wk->done);
}

void worker_join_thread(struct worker *wk)
{
    if (!wk->joined) {
        pthread_join(wk->thread, NULL);
        wk->joined = true;
    }
}

void worker_join(struct worker *wk)
{
    worker_join_thread(wk);
    snapshot_unref(wk->pending);
    localaddrs_unref(wk->pending_local);
    ev_loop_destroy(wk->loop);
    pthread_mutex_destroy(&wk->lock);
    free(wk);
}
