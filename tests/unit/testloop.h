/*
 * Running a test's libev loop in bounded steps, for the suites that drive real sockets
 * (test_udp, test_session): each step is one iteration with a 10 ms guard, so a wait can
 * never block, and every wait has a deadline. The suite defines `loop`.
 */
#ifndef FERRY_TESTLOOP_H
#define FERRY_TESTLOOP_H

#include <ev.h>

static void testloop_tick(struct ev_loop *l, ev_timer *w, int revents)
{
    (void)l;
    (void)w;
    (void)revents;
}

/* One loop iteration, bounded by a 10 ms guard timer. */
static inline void testloop_run_once(struct ev_loop *l)
{
    ev_timer guard;

    ev_timer_init(&guard, testloop_tick, 0.01, 0.);
    ev_timer_start(l, &guard);
    ev_run(l, EVRUN_ONCE);
    ev_timer_stop(l, &guard);
}

/* Run the loop until cond holds or `limit` seconds pass. */
#define RUN_UNTIL(cond, limit)                                                                     \
    do {                                                                                           \
        double until_ = ev_time() + (limit);                                                       \
        while (!(cond) && ev_time() < until_)                                                      \
            testloop_run_once(loop);                                                               \
    } while (0)

static inline void testloop_run_for(struct ev_loop *l, double seconds)
{
    double until = ev_time() + seconds;

    while (ev_time() < until)
        testloop_run_once(l);
}

#endif
