/* Unit tests for the password-verification pool. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ev.h>
#include <sodium.h>

#include "ferry/auth_pool.h"

/* What a callback saw. */
struct result {
    int calls;
    bool ok;
    int *pending; /* decremented on each call; the loop stops at zero */
};

static char hash_min[crypto_pwhash_STRBYTES];

static void make_hash(void)
{
    ck_assert_int_ge(sodium_init(), 0);
    ck_assert_int_eq(crypto_pwhash_str(hash_min, "s3cret", 6, crypto_pwhash_OPSLIMIT_MIN,
                                       crypto_pwhash_MEMLIMIT_MIN),
                     0);
}

static void on_result(bool ok, void *arg)
{
    struct result *r = arg;

    r->calls++;
    r->ok = ok;
    if (r->pending != NULL)
        --*r->pending;
}

static void on_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    ev_break(loop, EVBREAK_ALL);
}

/* Run the loop until *pending reaches zero or `seconds` pass. */
static void run_until(struct ev_loop *loop, int *pending, double seconds)
{
    ev_timer t;

    ev_timer_init(&t, on_timeout, seconds, 0);
    ev_timer_start(loop, &t);
    while (*pending > 0 && ev_is_active(&t))
        ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &t);
}

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

START_TEST(test_right_password_is_true)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct auth_pool *p = auth_pool_new(loop, 2);
    int pending = 1;
    struct result r = {.pending = &pending};

    ck_assert_ptr_nonnull(p);
    ck_assert_ptr_nonnull(auth_pool_verify(p, hash_min, "s3cret", 6, on_result, &r));
    run_until(loop, &pending, 20);
    ck_assert_int_eq(r.calls, 1);
    ck_assert(r.ok);
    auth_pool_free(p);
    ev_loop_destroy(loop);
}
END_TEST

START_TEST(test_wrong_password_is_false)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct auth_pool *p = auth_pool_new(loop, 1);
    int pending = 3;
    struct result r1 = {.pending = &pending, .ok = true};
    struct result r2 = {.pending = &pending, .ok = true};
    struct result r3 = {.pending = &pending, .ok = true};

    ck_assert_ptr_nonnull(p);
    ck_assert_ptr_nonnull(auth_pool_verify(p, hash_min, "s3cre", 5, on_result, &r1));
    ck_assert_ptr_nonnull(auth_pool_verify(p, hash_min, "s3cret\0", 7, on_result, &r2));
    ck_assert_ptr_nonnull(auth_pool_verify(p, hash_min, "", 0, on_result, &r3));
    run_until(loop, &pending, 20);
    ck_assert_int_eq(r1.calls, 1);
    ck_assert(!r1.ok);
    ck_assert_int_eq(r2.calls, 1);
    ck_assert(!r2.ok);
    ck_assert_int_eq(r3.calls, 1);
    ck_assert(!r3.ok);
    auth_pool_free(p);
    ev_loop_destroy(loop);
}
END_TEST

START_TEST(test_bad_hash_is_false)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct auth_pool *p = auth_pool_new(loop, 1);
    int pending = 1;
    struct result r = {.pending = &pending, .ok = true};

    ck_assert_ptr_nonnull(p);
    ck_assert_ptr_nonnull(auth_pool_verify(p, "$argon2id$garbage", "s3cret", 6, on_result, &r));
    run_until(loop, &pending, 20);
    ck_assert_int_eq(r.calls, 1);
    ck_assert(!r.ok);
    auth_pool_free(p);
    ev_loop_destroy(loop);
}
END_TEST

/* Time one verification through the pool, from queueing to callback. */
static double timed_verify(struct ev_loop *loop, struct auth_pool *p, const char *hash, bool *ok)
{
    int pending = 1;
    struct result r = {.pending = &pending, .ok = true};
    double t0 = now();

    ck_assert_ptr_nonnull(auth_pool_verify(p, hash, "guess", 5, on_result, &r));
    run_until(loop, &pending, 120);
    ck_assert_int_eq(r.calls, 1);
    *ok = r.ok;
    return now() - t0;
}

START_TEST(test_unknown_user_is_false_and_takes_as_long)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct auth_pool *p = auth_pool_new(loop, 1);
    char hash_real[crypto_pwhash_STRBYTES];
    double known = 1e9, unknown = 1e9;
    bool ok;

    ck_assert_ptr_nonnull(p);
    /* A hash as ferry-passwd writes them. */
    ck_assert_int_eq(crypto_pwhash_str(hash_real, "right", 5, crypto_pwhash_OPSLIMIT_INTERACTIVE,
                                       crypto_pwhash_MEMLIMIT_INTERACTIVE),
                     0);
    /* Best of three each, to keep scheduling noise out. */
    for (int i = 0; i < 3; i++) {
        double t = timed_verify(loop, p, hash_real, &ok);
        ck_assert(!ok);
        known = t < known ? t : known;
        t = timed_verify(loop, p, NULL, &ok);
        ck_assert(!ok);
        unknown = t < unknown ? t : unknown;
    }
    ck_assert_msg(unknown > known * 0.5 && unknown < known * 2,
                  "unknown user took %.3f s, a known one %.3f s", unknown, known);
    /* And the cheap hash is really much faster, so the check above can tell them apart. */
    {
        double cheap = timed_verify(loop, p, hash_min, &ok);
        ck_assert_msg(cheap < known * 0.5, "cheap %.3f s, interactive %.3f s", cheap, known);
    }
    auth_pool_free(p);
    ev_loop_destroy(loop);
}
END_TEST

START_TEST(test_cancelled_job_never_calls_back)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct auth_pool *p = auth_pool_new(loop, 1);
    int pending = 1, never = 100;
    struct result cancelled1 = {.pending = &never}, cancelled2 = {.pending = &never};
    struct result last = {.pending = &pending};
    struct auth_job *j1, *j2;

    ck_assert_ptr_nonnull(p);
    /* One running (probably) and one still queued when cancelled; a later job shows the
     * pool went past both. */
    j1 = auth_pool_verify(p, hash_min, "s3cret", 6, on_result, &cancelled1);
    j2 = auth_pool_verify(p, hash_min, "s3cret", 6, on_result, &cancelled2);
    ck_assert_ptr_nonnull(j1);
    ck_assert_ptr_nonnull(j2);
    ck_assert_ptr_nonnull(auth_pool_verify(p, hash_min, "s3cret", 6, on_result, &last));
    auth_pool_cancel(j1);
    auth_pool_cancel(j2);
    run_until(loop, &pending, 20);
    ck_assert_int_eq(last.calls, 1);
    ck_assert(last.ok);
    ck_assert_int_eq(cancelled1.calls, 0);
    ck_assert_int_eq(cancelled2.calls, 0);
    auth_pool_free(p);
    ev_loop_destroy(loop);
}
END_TEST

/* A callback that cancels another job finished in the same batch. */
struct cancel_other {
    struct auth_job *other;
    int calls;
};

static void on_result_cancel_other(bool ok, void *arg)
{
    struct cancel_other *c = arg;

    c->calls++;
    if (c->other != NULL)
        auth_pool_cancel(c->other);
    c->other = NULL;
}

START_TEST(test_cancel_from_a_callback_stops_a_finished_job)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct auth_pool *p = auth_pool_new(loop, 2);
    struct cancel_other a = {0}, b = {0};
    struct auth_job *ja, *jb;
    ev_timer t;

    ck_assert_ptr_nonnull(p);
    ja = auth_pool_verify(p, hash_min, "x", 1, on_result_cancel_other, &a);
    jb = auth_pool_verify(p, hash_min, "x", 1, on_result_cancel_other, &b);
    a.other = jb;
    b.other = ja;
    /* Let both finish before the loop looks, so they arrive in one batch. */
    while (a.calls + b.calls == 0) {
        struct timespec ts = {0, 200 * 1000 * 1000};
        nanosleep(&ts, NULL);
        ev_run(loop, EVRUN_NOWAIT);
    }
    ev_timer_init(&t, on_timeout, 0.5, 0);
    ev_timer_start(loop, &t);
    ev_run(loop, 0);
    ev_timer_stop(loop, &t);
    ck_assert_int_eq(a.calls + b.calls, 1);
    auth_pool_free(p);
    ev_loop_destroy(loop);
}
END_TEST

START_TEST(test_free_with_pending_jobs_is_clean)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct auth_pool *p = auth_pool_new(loop, 1);
    struct result r = {0};

    ck_assert_ptr_nonnull(p);
    for (int i = 0; i < 3; i++)
        ck_assert_ptr_nonnull(auth_pool_verify(p, hash_min, "s3cret", 6, on_result, &r));
    auth_pool_cancel(auth_pool_verify(p, NULL, "x", 1, on_result, &r));
    auth_pool_free(p);
    /* Anything finished but undelivered was dropped with the pool. */
    ev_run(loop, EVRUN_NOWAIT);
    ck_assert_int_eq(r.calls, 0);
    ev_loop_destroy(loop);
}
END_TEST

START_TEST(test_queue_is_bounded)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct auth_pool *p = auth_pool_new(loop, 1);
    struct result r = {0};
    char slow[crypto_pwhash_STRBYTES];
    int queued = 0;

    /* A check that keeps the thread busy (ferry-passwd's cost) while the queue fills: with a
     * cheap one, a busy machine lets the thread finish jobs between two calls here. */
    ck_assert_int_eq(crypto_pwhash_str(slow, "s3cret", 6, crypto_pwhash_OPSLIMIT_INTERACTIVE,
                                       crypto_pwhash_MEMLIMIT_INTERACTIVE),
                     0);
    ck_assert_ptr_nonnull(p);
    for (; queued < 100000; queued++) {
        errno = 0;
        if (auth_pool_verify(p, slow, "s3cret", 6, on_result, &r) == NULL)
            break;
    }
    ck_assert_int_eq(errno, EAGAIN);
    /* Four waiting per run allowed at once (one here), and the one its thread took. */
    ck_assert_int_ge(queued, 4);
    ck_assert_int_le(queued, 5);
    auth_pool_free(p);
    ck_assert_int_eq(r.calls, 0);
    ev_loop_destroy(loop);
}
END_TEST

START_TEST(test_pools_share_one_gate_for_the_whole_process)
{
    enum { POOLS = 3, JOBS = 2 };
    struct ev_loop *loops[POOLS];
    struct auth_pool *pools[POOLS];
    char hash[crypto_pwhash_STRBYTES];
    struct result r = {0};
    unsigned long runs = 0;
    unsigned peak = 0;
    double deadline = now() + 120;

    /* ferry-passwd's cost: long enough (tens of ms, 64 MiB) for runs to overlap. */
    ck_assert_int_eq(crypto_pwhash_str(hash, "pw", 2, crypto_pwhash_OPSLIMIT_INTERACTIVE,
                                       crypto_pwhash_MEMLIMIT_INTERACTIVE),
                     0);
    for (int i = 0; i < POOLS; i++) {
        loops[i] = ev_loop_new(EVFLAG_AUTO);
        pools[i] = auth_pool_new(loops[i], 2);
        ck_assert_ptr_nonnull(pools[i]);
    }
    for (int i = 0; i < POOLS; i++) {
        for (int j = 0; j < JOBS; j++)
            ck_assert_ptr_nonnull(auth_pool_verify(pools[i], hash, "x", 1, on_result, &r));
    }
    /* Six threads with a job each, one worker's pool per worker: two run at a time. */
    while (runs < POOLS * JOBS && now() < deadline) {
        struct timespec ts = {0, 10 * 1000 * 1000};

        nanosleep(&ts, NULL);
        auth_pool_gate_stats(&runs, &peak);
    }
    ck_assert_uint_eq(runs, POOLS * JOBS);
    ck_assert_uint_eq(peak, 2);
    for (int i = 0; i < POOLS; i++) {
        auth_pool_free(pools[i]);
        ev_loop_destroy(loops[i]);
    }
}
END_TEST

START_TEST(test_idle_pool_does_not_keep_the_loop_running)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct auth_pool *p = auth_pool_new(loop, 2);
    int pending = 1;
    struct result r = {.pending = &pending};

    ck_assert_ptr_nonnull(p);
    /* Nothing queued: ev_run returns at once. */
    ev_run(loop, 0);
    /* A job in flight keeps it running until the answer is in. */
    ck_assert_ptr_nonnull(auth_pool_verify(p, hash_min, "s3cret", 6, on_result, &r));
    ev_run(loop, 0);
    ck_assert_int_eq(r.calls, 1);
    ck_assert(r.ok);
    auth_pool_free(p);
    ev_loop_destroy(loop);
}
END_TEST

START_TEST(test_bad_thread_counts_are_refused)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);

    errno = 0;
    ck_assert_ptr_null(auth_pool_new(loop, 0));
    ck_assert_int_eq(errno, EINVAL);
    ck_assert_ptr_null(auth_pool_new(loop, 65));
    ev_loop_destroy(loop);
}
END_TEST

static Suite *auth_pool_suite(void)
{
    Suite *s = suite_create("auth_pool");
    TCase *tc = tcase_create("core");

    tcase_add_unchecked_fixture(tc, make_hash, NULL);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_right_password_is_true);
    tcase_add_test(tc, test_wrong_password_is_false);
    tcase_add_test(tc, test_bad_hash_is_false);
    tcase_add_test(tc, test_unknown_user_is_false_and_takes_as_long);
    tcase_add_test(tc, test_cancelled_job_never_calls_back);
    tcase_add_test(tc, test_cancel_from_a_callback_stops_a_finished_job);
    tcase_add_test(tc, test_free_with_pending_jobs_is_clean);
    tcase_add_test(tc, test_queue_is_bounded);
    tcase_add_test(tc, test_pools_share_one_gate_for_the_whole_process);
    tcase_add_test(tc, test_idle_pool_does_not_keep_the_loop_running);
    tcase_add_test(tc, test_bad_thread_counts_are_refused);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(auth_pool_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
