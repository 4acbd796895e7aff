/*
 * Unit tests for password checks: identical logins in flight share one Argon2id run, the
 * answer is remembered for later logins, and cancelled waiters get no callback.
 */
#include "config.h"

#include <check.h>
#include <ev.h>
#include <sodium.h>
#include <string.h>

#include "ferry/auth_cache.h"
#include "ferry/auth_pool.h"
#include "ferry/auth_verify.h"

static struct ev_loop *loop;
static struct auth_pool *pool;
static struct auth_cache *cache;
static struct auth_verifier *v;
static char hash[crypto_pwhash_STRBYTES];
static int calls, oks, pending;

static void on_answer(bool ok, void *arg)
{
    calls++;
    oks += ok;
    pending--;
    (void)arg;
}

static void stop_cb(struct ev_loop *l, ev_timer *w, int revents)
{
    ev_break(l, EVBREAK_ALL);
}

/* Run the loop until every expected answer came, or 10 s. */
static void run(void)
{
    ev_timer t;

    ev_timer_init(&t, stop_cb, 10., 0.);
    ev_timer_start(loop, &t);
    while (pending > 0 && ev_is_active(&t))
        ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &t);
}

/* Run the loop for a while whatever comes: long enough for any run to end and call back. */
static void run_for(double seconds)
{
    ev_timer t;

    ev_timer_init(&t, stop_cb, seconds, 0.);
    ev_timer_start(loop, &t);
    ev_run(loop, 0);
    ev_timer_stop(loop, &t);
}

static void setup(void)
{
    ck_assert_int_ge(sodium_init(), 0);
    ck_assert_int_eq(crypto_pwhash_str(hash, "secret", 6, crypto_pwhash_OPSLIMIT_MIN,
                                       crypto_pwhash_MEMLIMIT_MIN),
                     0);
    loop = ev_loop_new(EVFLAG_AUTO);
    pool = auth_pool_new(loop, 2);
    cache = auth_cache_new(64);
    v = auth_verify_new(pool, cache);
    ck_assert_ptr_nonnull(v);
    calls = oks = pending = 0;
}

static void teardown(void)
{
    auth_verify_free(v);
    auth_cache_free(cache);
    auth_pool_free(pool);
    ev_loop_destroy(loop);
}

/* A check by alice with password pass against hash h; its answer goes to cb. */
static enum auth_verify_status check_cb(const char *pass, const char *h, double ttl, verify_cb cb,
                                        void *arg, struct auth_verify_wait **w)
{
    struct auth_verify_login l = {
        .user = "alice",
        .user_len = 5,
        .password = pass,
        .pass_len = strlen(pass),
        .hash = h,
        .generation = 1,
        .cache_ttl = ttl,
        .now = 10.0,
    };
    struct auth_verify_wait *dummy;
    enum auth_verify_status st = auth_verify_check(v, &l, cb, arg, w != NULL ? w : &dummy);

    if (st == AUTH_VERIFY_PENDING)
        pending++;
    return st;
}

static enum auth_verify_status check(const char *pass, const char *h, double ttl,
                                     struct auth_verify_wait **w)
{
    return check_cb(pass, h, ttl, on_answer, NULL, w);
}

/* An answer whose session closes another session waiting on the same run. */
static void on_answer_cancel_other(bool ok, void *arg)
{
    on_answer(ok, NULL);
    auth_verify_cancel(v, *(struct auth_verify_wait **)arg);
    pending--;
}

START_TEST(test_identical_logins_share_one_run_then_hit_the_cache)
{
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(check("secret", hash, 300, NULL), AUTH_VERIFY_PENDING);
    ck_assert_uint_eq(auth_verify_in_flight(v), 1);
    run();
    ck_assert_int_eq(calls, 5);
    ck_assert_int_eq(oks, 5);
    ck_assert_uint_eq(auth_verify_in_flight(v), 0);
    ck_assert_int_eq(check("secret", hash, 300, NULL), AUTH_VERIFY_CACHED);
}
END_TEST

START_TEST(test_different_passwords_get_their_own_runs)
{
    ck_assert_int_eq(check("secret", hash, 300, NULL), AUTH_VERIFY_PENDING);
    ck_assert_int_eq(check("wrong", hash, 300, NULL), AUTH_VERIFY_PENDING);
    ck_assert_int_eq(check("wrong", hash, 300, NULL), AUTH_VERIFY_PENDING);
    ck_assert_uint_eq(auth_verify_in_flight(v), 2);
    run();
    ck_assert_int_eq(calls, 3);
    ck_assert_int_eq(oks, 1);
    /* A wrong password is not remembered. */
    ck_assert_int_eq(check("wrong", hash, 300, NULL), AUTH_VERIFY_PENDING);
    run();
    ck_assert_int_eq(oks, 1);
}
END_TEST

START_TEST(test_unknown_users_merge_like_known_ones)
{
    /* Otherwise eight identical logins take one run for a user and eight for a non-user, and
     * the time they take tells which names exist. */
    for (int i = 0; i < 8; i++)
        ck_assert_int_eq(check("guess", NULL, 300, NULL), AUTH_VERIFY_PENDING);
    ck_assert_uint_eq(auth_verify_in_flight(v), 1);
    run();
    ck_assert_int_eq(calls, 8);
    for (int i = 0; i < 8; i++)
        ck_assert_int_eq(check("guess", hash, 300, NULL), AUTH_VERIFY_PENDING);
    ck_assert_uint_eq(auth_verify_in_flight(v), 1);
    run();
    ck_assert_int_eq(calls, 16);
    ck_assert_int_eq(oks, 0);
    /* A failure is never remembered, for either. */
    ck_assert_int_eq(check("guess", NULL, 300, NULL), AUTH_VERIFY_PENDING);
    run();
}
END_TEST

/* An admission hook that counts its claims and refuses once `room` are out. */
static int claims_out, claims_begun, claims_failed, claims_refunded, room;

static void *admit_begin(void *arg)
{
    static int token;

    (void)arg;
    if (claims_out >= room)
        return NULL;
    claims_out++;
    claims_begun++;
    return &token;
}

static void admit_end(void *claim, bool failed)
{
    (void)claim;
    claims_out--;
    if (failed)
        claims_failed++;
    else
        claims_refunded++;
}

static const struct auth_verify_admit admit = {admit_begin, admit_end, NULL};

static enum auth_verify_status check_admitted(const char *pass, struct auth_verify_wait **w)
{
    struct auth_verify_login l = {
        .user = "alice",
        .user_len = 5,
        .password = pass,
        .pass_len = strlen(pass),
        .hash = hash,
        .generation = 1,
        .cache_ttl = 300,
        .now = 10.0,
        .admit = &admit,
    };
    struct auth_verify_wait *dummy;
    enum auth_verify_status st = auth_verify_check(v, &l, on_answer, NULL, w ? w : &dummy);

    if (st == AUTH_VERIFY_PENDING)
        pending++;
    return st;
}

START_TEST(test_admission_is_asked_once_per_run_and_told_its_answer)
{
    struct auth_verify_wait *w;

    claims_out = claims_begun = claims_failed = claims_refunded = 0;
    room = 2;
    /* Joining a run in flight needs no admission of its own. */
    ck_assert_int_eq(check_admitted("secret", NULL), AUTH_VERIFY_PENDING);
    ck_assert_int_eq(check_admitted("secret", NULL), AUTH_VERIFY_PENDING);
    ck_assert_int_eq(check_admitted("wrong1", NULL), AUTH_VERIFY_PENDING);
    ck_assert_int_eq(claims_begun, 2);
    /* No room: refused, and no callback will come. */
    ck_assert_int_eq(check_admitted("wrong2", NULL), AUTH_VERIFY_REFUSED);
    run();
    ck_assert_int_eq(calls, 3);
    ck_assert_int_eq(claims_out, 0);
    ck_assert_int_eq(claims_refunded, 1);
    ck_assert_int_eq(claims_failed, 1);
    /* Answered from the cache: no admission. */
    ck_assert_int_eq(check_admitted("secret", NULL), AUTH_VERIFY_CACHED);
    ck_assert_int_eq(claims_begun, 2);
    /* A cancelled run gives its claim back as a failure. */
    ck_assert_int_eq(check_admitted("wrong3", &w), AUTH_VERIFY_PENDING);
    auth_verify_cancel(v, w);
    pending--;
    ck_assert_int_eq(claims_out, 0);
    ck_assert_int_eq(claims_failed, 2);
    run_for(0.3);
    ck_assert_int_eq(calls, 3);
}
END_TEST

START_TEST(test_no_cache_ttl_means_neither_merged_nor_remembered)
{
    ck_assert_int_eq(check("secret", hash, 0, NULL), AUTH_VERIFY_PENDING);
    ck_assert_int_eq(check("secret", hash, 0, NULL), AUTH_VERIFY_PENDING);
    ck_assert_uint_eq(auth_verify_in_flight(v), 2);
    run();
    ck_assert_int_eq(oks, 2);
    ck_assert_int_eq(check("secret", hash, 0, NULL), AUTH_VERIFY_PENDING);
    run();
}
END_TEST

START_TEST(test_cancelled_waiters_get_nothing_and_the_last_one_stops_the_run)
{
    struct auth_verify_wait *a, *b, *c;

    ck_assert_int_eq(check("secret", hash, 300, &a), AUTH_VERIFY_PENDING);
    ck_assert_int_eq(check("secret", hash, 300, &b), AUTH_VERIFY_PENDING);
    auth_verify_cancel(v, a);
    pending--;
    run();
    ck_assert_int_eq(calls, 1); /* b only */
    ck_assert_int_eq(check("other", hash, 300, &c), AUTH_VERIFY_PENDING);
    auth_verify_cancel(v, c);
    pending--;
    ck_assert_uint_eq(auth_verify_in_flight(v), 0);
    run_for(0.5); /* a run that went on would answer c (or touch it, freed: ASan) by now */
    ck_assert_int_eq(calls, 1);
}
END_TEST

START_TEST(test_a_callback_may_cancel_another_waiter_of_its_run)
{
    struct auth_verify_wait *a, *b;

    /* Waiters are answered newest first: b's callback cancels a, the last one left. */
    ck_assert_int_eq(check("secret", hash, 300, &a), AUTH_VERIFY_PENDING);
    ck_assert_int_eq(check_cb("secret", hash, 300, on_answer_cancel_other, &a, &b),
                     AUTH_VERIFY_PENDING);
    run();
    ck_assert_int_eq(calls, 1);
    ck_assert_int_eq(oks, 1);
    ck_assert_uint_eq(auth_verify_in_flight(v), 0);
}
END_TEST

static Suite *verify_suite(void)
{
    Suite *s = suite_create("auth_verify");
    TCase *tc = tcase_create("core");

    tcase_set_timeout(tc, 30);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_identical_logins_share_one_run_then_hit_the_cache);
    tcase_add_test(tc, test_different_passwords_get_their_own_runs);
    tcase_add_test(tc, test_unknown_users_merge_like_known_ones);
    tcase_add_test(tc, test_admission_is_asked_once_per_run_and_told_its_answer);
    tcase_add_test(tc, test_no_cache_ttl_means_neither_merged_nor_remembered);
    tcase_add_test(tc, test_cancelled_waiters_get_nothing_and_the_last_one_stops_the_run);
    tcase_add_test(tc, test_a_callback_may_cancel_another_waiter_of_its_run);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(verify_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
