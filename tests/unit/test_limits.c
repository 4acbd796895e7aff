/* Unit tests for the limits table: counts, token buckets, quotas and entry lifetime. */
#include "config.h"

#include <check.h>

#include "ferry/addr.h"
#include "ferry/limits.h"

static struct addr ip(const char *text)
{
    struct addr a;

    ck_assert_msg(addr_parse(text, 0, &a) == 0, "bad test address %s", text);
    return a;
}

START_TEST(test_client_entries_are_shared_per_ip_and_mapped_ipv4_is_ipv4)
{
    struct limits *l = limits_new(16);
    struct addr a = ip("192.0.2.1:1000"), b = ip("192.0.2.1:2000"), m = ip("::ffff:192.0.2.1");
    struct addr other = ip("192.0.2.2");
    struct limit *ea = limits_client(l, &a), *eb = limits_client(l, &b), *em = limits_client(l, &m);
    struct limit *eo = limits_client(l, &other);

    ck_assert_ptr_eq(ea, eb);
    ck_assert_ptr_eq(ea, em);
    ck_assert_ptr_ne(ea, eo);
    ck_assert_uint_eq(limits_entries(l), 2);
    limits_release(l, ea);
    limits_release(l, eb);
    limits_release(l, em);
    limits_release(l, eo);
    /* Nothing remembered: entries go with their last reference. */
    ck_assert_uint_eq(limits_entries(l), 0);
    limits_free(l);
}
END_TEST

START_TEST(test_session_count_stops_at_max_and_leave_frees_a_slot)
{
    struct limits *l = limits_new(16);
    struct limit *e = limits_user(l, "alice");

    for (int i = 0; i < 3; i++)
        ck_assert(limits_session_enter(l, e, 3));
    ck_assert(!limits_session_enter(l, e, 3));
    ck_assert_uint_eq(limits_sessions_of(l, e), 3);
    limits_session_leave(l, e);
    ck_assert(limits_session_enter(l, e, 3));
    /* 0 is no limit. */
    ck_assert(limits_session_enter(l, e, 0));
    ck_assert_uint_eq(limits_sessions_of(l, e), 4);
    limits_release(l, e);
    limits_free(l);
}
END_TEST

START_TEST(test_total_and_udp_counts)
{
    struct limits *l = limits_new(16);

    ck_assert(limits_total_enter(l, 2));
    ck_assert(limits_total_enter(l, 2));
    ck_assert(!limits_total_enter(l, 2));
    ck_assert_uint_eq(limits_total(l), 2);
    limits_total_leave(l);
    ck_assert_uint_eq(limits_total(l), 1);
    ck_assert(limits_udp_total_enter(l, 1));
    ck_assert(!limits_udp_total_enter(l, 1));
    limits_udp_total_leave(l);
    ck_assert(limits_udp_total_enter(l, 1));
    limits_free(l);
}
END_TEST

START_TEST(test_accept_rate_bucket_refills_with_time)
{
    struct limits *l = limits_new(16);
    struct addr a = ip("198.51.100.7");
    struct limit *e = limits_client(l, &a);
    struct limit_rate r = {.rate = 2, .burst = 3};

    for (int i = 0; i < 3; i++)
        ck_assert(limits_accept(l, e, &r, 100.0));
    ck_assert(!limits_accept(l, e, &r, 100.0));
    ck_assert(!limits_accept(l, e, &r, 100.4)); /* 0.8 of a token */
    ck_assert(limits_accept(l, e, &r, 100.5));  /* one token back after 0.5 s */
    ck_assert(!limits_accept(l, e, &r, 100.5));
    /* A time a little older than the last one (another worker) changes nothing. */
    ck_assert(!limits_accept(l, e, &r, 100.2));
    /* Never more than the burst, however long the pause. */
    for (int i = 0; i < 3; i++)
        ck_assert(limits_accept(l, e, &r, 1000.0));
    ck_assert(!limits_accept(l, e, &r, 1000.0));
    /* A zero rate is no limit. */
    ck_assert(limits_accept(l, e, &(struct limit_rate){0}, 1000.0));
    limits_release(l, e);
    limits_free(l);
}
END_TEST

START_TEST(test_failed_logins_lock_out_until_tokens_come_back)
{
    struct limits *l = limits_new(16);
    struct addr a = ip("2001:db8::5");
    struct limit *e = limits_client(l, &a);
    struct limit_rate r = {.rate = 10.0 / 60, .burst = 10};

    for (int i = 0; i < 10; i++) {
        ck_assert(limits_auth_allowed(l, e, &r, 50.0));
        limits_auth_failed(l, e, &r, 50.0);
    }
    ck_assert(!limits_auth_allowed(l, e, &r, 50.0));
    ck_assert(!limits_auth_allowed(l, e, &r, 55.0));
    ck_assert(limits_auth_allowed(l, e, &r, 56.1)); /* one try every 6 s */
    limits_auth_failed(l, e, &r, 56.1);
    ck_assert(!limits_auth_allowed(l, e, &r, 56.2));
    limits_release(l, e);
    /* The failures are remembered after the session is gone. */
    ck_assert_uint_eq(limits_entries(l), 1);
    e = limits_client(l, &a);
    ck_assert(!limits_auth_allowed(l, e, &r, 57.0));
    limits_release(l, e);
    limits_free(l);
}
END_TEST

START_TEST(test_bandwidth_allows_burst_then_waits_for_min_read)
{
    struct limits *l = limits_new(16);
    struct limit *e = limits_user(l, "bob");
    struct limit_rate r = {.rate = 100000, .burst = 20000};
    double wait = -1;
    size_t n;

    n = limits_bandwidth_allow(l, e, LIMIT_DOWN, &r, 65536, 4096, 10.0, &wait);
    ck_assert_uint_eq(n, 20000);
    ck_assert(wait == 0);
    limits_bandwidth_used(l, e, LIMIT_DOWN, &r, n, 10.0);
    n = limits_bandwidth_allow(l, e, LIMIT_DOWN, &r, 65536, 4096, 10.0, &wait);
    ck_assert_uint_eq(n, 0);
    ck_assert_double_eq_tol(wait, 4096.0 / 100000, 1e-9);
    /* The other direction has its own bucket. */
    ck_assert_uint_eq(limits_bandwidth_allow(l, e, LIMIT_UP, &r, 1000, 4096, 10.0, &wait), 1000);
    /* After the wait, at least the minimum is allowed. */
    n = limits_bandwidth_allow(l, e, LIMIT_DOWN, &r, 65536, 4096, 10.0 + 4096.0 / 100000, &wait);
    ck_assert_uint_ge(n, 4095);
    /* Overdrawing (two sessions at once) is debt: the wait grows. */
    limits_bandwidth_used(l, e, LIMIT_DOWN, &r, 50000, 10.1);
    n = limits_bandwidth_allow(l, e, LIMIT_DOWN, &r, 65536, 4096, 10.1, &wait);
    ck_assert_uint_eq(n, 0);
    ck_assert(wait > 0.4);
    /* No limit: everything asked for. */
    ck_assert_uint_eq(
        limits_bandwidth_allow(l, e, LIMIT_DOWN, &(struct limit_rate){0}, 777, 4096, 10.1, &wait),
        777);
    limits_release(l, e);
    limits_free(l);
}
END_TEST

START_TEST(test_bandwidth_min_read_is_capped_by_burst)
{
    struct limits *l = limits_new(16);
    struct limit *e = limits_user(l, "slow");
    struct limit_rate r = {.rate = 1000, .burst = 1000};
    double wait;

    ck_assert_uint_eq(limits_bandwidth_allow(l, e, LIMIT_UP, &r, 65536, 4096, 0, &wait), 1000);
    limits_release(l, e);
    limits_free(l);
}
END_TEST

START_TEST(test_quota_per_period)
{
    struct limits *l = limits_new(16);
    struct limit *e = limits_user(l, "carol");

    ck_assert_uint_eq(limits_quota_left(l, e, 1000, 60, 0.0), 1000);
    limits_quota_used(l, e, 1000, 60, 600, 1.0);
    ck_assert_uint_eq(limits_quota_left(l, e, 1000, 60, 2.0), 400);
    limits_quota_used(l, e, 1000, 60, 500, 3.0);
    ck_assert_uint_eq(limits_quota_left(l, e, 1000, 60, 4.0), 0);
    /* The next period starts afresh, and periods follow each other from the first. */
    ck_assert_uint_eq(limits_quota_left(l, e, 1000, 60, 61.0), 1000);
    limits_quota_used(l, e, 1000, 60, 1000, 119.0);
    ck_assert_uint_eq(limits_quota_left(l, e, 1000, 60, 119.5), 0);
    ck_assert_uint_eq(limits_quota_left(l, e, 1000, 60, 120.0), 1000);
    /* quota 0: none. */
    ck_assert_uint_eq(limits_quota_left(l, e, 0, 60, 0), UINT64_MAX);
    limits_release(l, e);
    limits_free(l);
}
END_TEST

START_TEST(test_idle_entries_are_bounded_oldest_first)
{
    struct limits *l = limits_new(2);
    struct limit_rate r = {.rate = 1, .burst = 5};
    const char *ips[] = {"192.0.2.1", "192.0.2.2", "192.0.2.3"};

    for (int i = 0; i < 3; i++) {
        struct addr a = ip(ips[i]);
        struct limit *e = limits_client(l, &a);
        ck_assert(limits_accept(l, e, &r, 0)); /* the bucket now remembers a token taken */
        limits_release(l, e);
    }
    ck_assert_uint_eq(limits_entries(l), 2);
    /* The first one was dropped: its bucket is full again. */
    for (int i = 0; i < 5; i++) {
        struct addr a = ip(ips[0]);
        struct limit *e = limits_client(l, &a);
        ck_assert(limits_accept(l, e, &r, 0));
        limits_release(l, e);
    }
    limits_free(l);
}
END_TEST

static Suite *limits_suite(void)
{
    Suite *s = suite_create("limits");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_client_entries_are_shared_per_ip_and_mapped_ipv4_is_ipv4);
    tcase_add_test(tc, test_session_count_stops_at_max_and_leave_frees_a_slot);
    tcase_add_test(tc, test_total_and_udp_counts);
    tcase_add_test(tc, test_accept_rate_bucket_refills_with_time);
    tcase_add_test(tc, test_failed_logins_lock_out_until_tokens_come_back);
    tcase_add_test(tc, test_bandwidth_allows_burst_then_waits_for_min_read);
    tcase_add_test(tc, test_bandwidth_min_read_is_capped_by_burst);
    tcase_add_test(tc, test_quota_per_period);
    tcase_add_test(tc, test_idle_entries_are_bounded_oldest_first);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(limits_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
