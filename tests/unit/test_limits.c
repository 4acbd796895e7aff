/* Unit tests for the limits table: counts, token buckets, quotas and entry lifetime. */
#include "config.h"

#include <check.h>
#include <errno.h>

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

/* One failed check: begin (a token taken) and end without a refund. */
static enum limit_auth fail_once(struct limits *l, struct limit *e, const struct limit_auth_caps *c,
                                 double now)
{
    struct limit_auth_ticket t;
    enum limit_auth st = limits_auth_begin(l, e, "alice", 5, c, now, &t);

    if (st == LIMIT_AUTH_OK)
        limits_auth_end(&t, false, now);
    return st;
}

START_TEST(test_failed_logins_lock_out_until_tokens_come_back)
{
    struct limits *l = limits_new(16);
    struct addr a = ip("2001:db8::5");
    struct limit *e = limits_client(l, &a);
    struct limit_auth_caps c = {.rate = {.rate = 10.0 / 60, .burst = 10}};

    for (int i = 0; i < 10; i++) {
        ck_assert(limits_auth_allowed(l, e, &c.rate, 50.0));
        ck_assert_int_eq(fail_once(l, e, &c, 50.0), LIMIT_AUTH_OK);
    }
    ck_assert(!limits_auth_allowed(l, e, &c.rate, 50.0));
    ck_assert_int_eq(fail_once(l, e, &c, 50.0), LIMIT_AUTH_RATE);
    ck_assert(!limits_auth_allowed(l, e, &c.rate, 55.0));
    ck_assert(limits_auth_allowed(l, e, &c.rate, 56.1)); /* one try every 6 s */
    ck_assert_int_eq(fail_once(l, e, &c, 56.1), LIMIT_AUTH_OK);
    ck_assert(!limits_auth_allowed(l, e, &c.rate, 56.2));
    limits_release(l, e);
    /* The failures are remembered after the session is gone. */
    ck_assert_uint_eq(limits_entries(l), 1);
    e = limits_client(l, &a);
    ck_assert(!limits_auth_allowed(l, e, &c.rate, 57.0));
    limits_release(l, e);
    limits_free(l);
}
END_TEST

START_TEST(test_parallel_checks_reserve_tokens_when_they_start)
{
    struct limits *l = limits_new(16);
    struct addr a = ip("192.0.2.9");
    struct limit *e = limits_client(l, &a);
    struct limit_auth_caps c = {.rate = {.rate = 1.0 / 60, .burst = 3}};
    struct limit_auth_ticket t[8];
    int started = 0;

    /* Eight checks start before any answers: only the burst gets one (before: all eight saw
     * a token left, since failures were counted only when a check ended). */
    for (int i = 0; i < 8; i++) {
        enum limit_auth st = limits_auth_begin(l, e, "alice", 5, &c, 10.0, &t[started]);

        if (st == LIMIT_AUTH_OK)
            started++;
        else
            ck_assert_int_eq(st, LIMIT_AUTH_RATE);
    }
    ck_assert_int_eq(started, 3);
    /* A match gives its token back; failures keep the debt. */
    limits_auth_end(&t[0], true, 10.0);
    limits_auth_end(&t[1], false, 10.0);
    limits_auth_end(&t[2], false, 10.0);
    ck_assert(limits_auth_allowed(l, e, &c.rate, 10.0));
    ck_assert_int_eq(fail_once(l, e, &c, 10.0), LIMIT_AUTH_OK);
    ck_assert(!limits_auth_allowed(l, e, &c.rate, 10.0));
    limits_release(l, e);
    limits_free(l);
}
END_TEST

START_TEST(test_checks_in_flight_are_capped_per_client_and_per_user)
{
    struct limits *l = limits_new(16);
    struct addr a = ip("192.0.2.10"), b = ip("192.0.2.11");
    struct limit *ea = limits_client(l, &a), *eb = limits_client(l, &b);
    struct limit_auth_caps c = {.rate = {.rate = 1, .burst = 100}, .per_client = 2, .per_user = 3};
    struct limit_auth_ticket t[5];

    ck_assert_int_eq(limits_auth_begin(l, ea, "alice", 5, &c, 1.0, &t[0]), LIMIT_AUTH_OK);
    ck_assert_int_eq(limits_auth_begin(l, ea, "bob", 3, &c, 1.0, &t[1]), LIMIT_AUTH_OK);
    /* A's two are in flight: a third waits, whoever it is for. */
    ck_assert_int_eq(limits_auth_begin(l, ea, "carol", 5, &c, 1.0, &t[2]), LIMIT_AUTH_BUSY);
    /* Names are bytes: these two differ only in non-ASCII bytes and count apart. */
    ck_assert_int_eq(limits_auth_begin(l, eb, "jos\xc3\xa9", 5, &c, 1.0, &t[2]), LIMIT_AUTH_OK);
    ck_assert_int_eq(limits_auth_begin(l, eb, "jos\xc3\xa8", 5, &c, 1.0, &t[3]), LIMIT_AUTH_OK);
    limits_auth_end(&t[3], false, 1.0);
    /* alice: one from A, two from B, then the user's cap. */
    ck_assert_int_eq(limits_auth_begin(l, eb, "alice", 5, &c, 1.0, &t[3]), LIMIT_AUTH_OK);
    limits_auth_end(&t[2], false, 1.0);
    ck_assert_int_eq(limits_auth_begin(l, eb, "alice", 5, &c, 1.0, &t[2]), LIMIT_AUTH_OK);
    limits_auth_end(&t[1], false, 1.0);
    ck_assert_int_eq(limits_auth_begin(l, ea, "alice", 5, &c, 1.0, &t[1]), LIMIT_AUTH_BUSY);
    limits_auth_end(&t[0], true, 1.0);
    ck_assert_int_eq(limits_auth_begin(l, ea, "alice", 5, &c, 1.0, &t[0]), LIMIT_AUTH_OK);
    limits_auth_end(&t[0], false, 1.0);
    limits_auth_end(&t[2], false, 1.0);
    limits_auth_end(&t[3], false, 1.0);
    limits_release(l, ea);
    limits_release(l, eb);
    limits_free(l);
}
END_TEST

START_TEST(test_refusals_are_summed_up_per_interval)
{
    struct limits *l = limits_new(16);
    struct addr a = ip("192.0.2.12");
    struct limit *e = limits_client(l, &a);
    bool first;
    unsigned lines = 0, reported = 0;

    ck_assert_uint_eq(limits_auth_refused(l, e, 100.0, 10, &first), 1);
    ck_assert(first);
    /* 1000 refusals over 25 s: a line at 10 s and at 20 s, each with its count. */
    for (int i = 1; i <= 1000; i++) {
        unsigned n = limits_auth_refused(l, e, 100.0 + i * 0.025, 10, &first);

        ck_assert(!first);
        if (n > 0) {
            lines++;
            reported += n;
        }
    }
    ck_assert_uint_eq(lines, 2);
    ck_assert_uint_eq(reported, 800);
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

/* --- a session's hold ---------------------------------------------------------------------- */

static const struct limit_rate no_rate = {0, 0};

static struct limit_hold_caps caps_of(unsigned max_total, unsigned per_client)
{
    struct limit_hold_caps c = {
        .max_total = max_total,
        .total_margin = 2,
        .per_client = per_client,
        .client_margin = 1,
        .client_rate = &no_rate,
        .user_rate = &no_rate,
    };
    return c;
}

START_TEST(test_hold_refuses_past_a_limit_and_closes_past_its_margin)
{
    struct limits *l = limits_new(16);
    struct addr a = ip("192.0.2.1");
    struct limit_hold_caps caps = caps_of(2, 0);
    struct limit_hold h[5];

    /* max 2 sessions, margin 2: the third and fourth are held but refused, the fifth is not. */
    for (int i = 0; i < 4; i++) {
        ck_assert(limits_hold_begin(&h[i], l, limits_client(l, &a), &caps));
        ck_assert_int_eq(limits_hold_check(&h[i], 0), i < 2 ? LIMIT_OK : LIMIT_TOTAL);
    }
    ck_assert(!limits_hold_begin(&h[4], l, limits_client(l, &a), &caps));
    ck_assert_uint_eq(limits_total(l), 4);
    for (int i = 0; i < 4; i++)
        limits_hold_release(&h[i]);
    ck_assert_uint_eq(limits_total(l), 0);
    ck_assert_uint_eq(limits_entries(l), 0);
    limits_free(l);
}
END_TEST

START_TEST(test_hold_per_client_and_per_user_refusals)
{
    struct limits *l = limits_new(16);
    struct addr a = ip("192.0.2.1"), b = ip("192.0.2.2");
    struct limit_hold_caps caps = caps_of(100, 1);
    struct limit_hold h1, h2, h3, h4;

    ck_assert(limits_hold_begin(&h1, l, limits_client(l, &a), &caps));
    ck_assert(limits_hold_begin(&h2, l, limits_client(l, &a), &caps));
    ck_assert_int_eq(limits_hold_check(&h2, 0), LIMIT_CLIENT);
    /* per client 1 + margin 1: a third from the same IP is closed at once. */
    ck_assert(!limits_hold_begin(&h3, l, limits_client(l, &a), &caps));
    ck_assert(limits_hold_begin(&h3, l, limits_client(l, &b), &caps));
    ck_assert(limits_hold_begin(&h4, l, limits_client(l, &b), &caps));
    ck_assert_int_eq(limits_hold_user(&h1, "alice", 1), 0);
    ck_assert_int_eq(limits_hold_check(&h1, 0), LIMIT_OK);
    ck_assert_int_eq(limits_hold_user(&h3, "alice", 1), 0);
    ck_assert_int_eq(limits_hold_check(&h3, 0), LIMIT_USER);
    /* The first refusal found stays: h4 is over per-client, then over per-user too. */
    ck_assert_int_eq(limits_hold_user(&h4, "alice", 1), 0);
    ck_assert_int_eq(limits_hold_check(&h4, 0), LIMIT_CLIENT);
    limits_hold_release(&h1);
    limits_hold_release(&h2);
    limits_hold_release(&h3);
    limits_hold_release(&h4);
    ck_assert_uint_eq(limits_total(l), 0);
    ck_assert_uint_eq(limits_entries(l), 0);
    limits_free(l);
}
END_TEST

START_TEST(test_hold_rule_limit_counts_once_and_its_refusal_is_not_counted)
{
    struct limits *l = limits_new(16);
    struct addr a = ip("192.0.2.1");
    struct limit_hold_caps caps = caps_of(100, 0);
    struct limit_hold h1, h2;

    ck_assert(limits_hold_begin(&h1, l, limits_client(l, &a), &caps));
    ck_assert(limits_hold_begin(&h2, l, limits_client(l, &a), &caps));
    ck_assert_int_eq(limits_hold_rule(&h1, 7, 3, 1, 0), 0);
    ck_assert_int_eq(limits_hold_rule(&h1, 7, 3, 1, 0), 0); /* taken once per session */
    ck_assert_int_eq(limits_hold_rule(&h2, 7, 3, 1, 0), 1);
    ck_assert_int_eq(limits_hold_check(&h2, 0), LIMIT_RULE);
    ck_assert(!limits_hold_throttled(&h1));
    limits_hold_release(&h2);
    limits_hold_release(&h1);
    /* Both gone: the rule's count is back to 0, so a new session passes. */
    ck_assert(limits_hold_begin(&h1, l, limits_client(l, &a), &caps));
    ck_assert_int_eq(limits_hold_rule(&h1, 7, 3, 1, 0), 0);
    limits_hold_release(&h1);
    ck_assert_uint_eq(limits_entries(l), 0);
    limits_free(l);
}
END_TEST

START_TEST(test_hold_udp_slots_per_client_and_in_total)
{
    struct limits *l = limits_new(16);
    struct addr a = ip("192.0.2.1"), b = ip("192.0.2.2");
    struct limit_hold_caps caps = caps_of(100, 0);
    struct limit_hold h1, h2, h3;

    ck_assert(limits_hold_begin(&h1, l, limits_client(l, &a), &caps));
    ck_assert(limits_hold_begin(&h2, l, limits_client(l, &a), &caps));
    ck_assert(limits_hold_begin(&h3, l, limits_client(l, &b), &caps));
    ck_assert(limits_hold_udp(&h1, 2, 1));
    ck_assert(!limits_hold_udp(&h2, 2, 1)); /* the client's one slot is taken */
    ck_assert(limits_hold_udp(&h3, 2, 1));
    limits_hold_release(&h1);
    ck_assert(limits_hold_udp(&h2, 2, 1));
    limits_hold_release(&h2);
    limits_hold_release(&h3);
    ck_assert(limits_udp_total_enter(l, 1)); /* the process's count is back to 0 */
    limits_udp_total_leave(l);
    limits_free(l);
}
END_TEST

START_TEST(test_hold_throttle_takes_the_smallest_allowance_and_ends_on_quota)
{
    struct limits *l = limits_new(16);
    struct addr a = ip("192.0.2.1");
    struct limit_rate client_rate = {1000, 8000}, user_rate = {1000, 5000};
    struct limit_hold_caps caps = caps_of(100, 0);
    struct limit_hold h;
    double wait;

    caps.client_rate = &client_rate;
    caps.user_rate = &user_rate;
    caps.quota = 6000;
    caps.quota_period = 3600;
    ck_assert(limits_hold_begin(&h, l, limits_client(l, &a), &caps));
    ck_assert(limits_hold_throttled(&h)); /* the client's rate alone throttles */
    /* Before a login only the client's bucket counts. */
    ck_assert_int_eq(limits_hold_allow(&h, LIMIT_UP, 100000, 100, 0, &wait), 8000);
    ck_assert_int_eq(limits_hold_user(&h, "alice", 0), 0);
    ck_assert_int_eq(limits_hold_allow(&h, LIMIT_UP, 100000, 100, 0, &wait), 5000);
    ck_assert_int_eq(limits_hold_rule(&h, 1, 1, 0, 2000), 0);
    /* The rule's burst is at least 16384: the user's 5000 is still the smallest. */
    ck_assert_int_eq(limits_hold_allow(&h, LIMIT_UP, 100000, 100, 0, &wait), 5000);
    limits_hold_used(&h, LIMIT_UP, 5000, 0);
    /* The user's bucket is empty: wait for 100 bytes at 1000/s. */
    ck_assert_int_eq(limits_hold_allow(&h, LIMIT_UP, 100000, 100, 0, &wait), 0);
    ck_assert(wait > 0.099 && wait < 0.101);
    /* The other direction has its own buckets; the quota (1000 left) is shared. */
    ck_assert_int_eq(limits_hold_allow(&h, LIMIT_DOWN, 100000, 100, 0, &wait), 1000);
    limits_hold_used(&h, LIMIT_DOWN, 1000, 0);
    errno = 0;
    ck_assert_int_eq(limits_hold_allow(&h, LIMIT_DOWN, 100000, 100, 0, &wait), -1);
    ck_assert_int_eq(errno, EDQUOT);
    ck_assert_int_eq(limits_hold_check(&h, 0), LIMIT_QUOTA);
    limits_hold_release(&h);
    limits_free(l);
}
END_TEST

START_TEST(test_ipv6_clients_are_keyed_on_their_prefix)
{
    struct limits *l = limits_new(16);
    struct addr a = ip("2001:db8:1:2::1"), b = ip("2001:db8:1:2:ffff:ffff:ffff:fffe");
    struct addr c = ip("2001:db8:1:3::1"), v4 = ip("192.0.2.1"), m = ip("::ffff:192.0.2.1");
    struct limit *ea, *eb, *ec, *e4, *em;

    /* Default /64: a and b share an entry, c (another /64) does not; mapped IPv4 is IPv4. */
    ea = limits_client(l, &a);
    eb = limits_client(l, &b);
    ec = limits_client(l, &c);
    e4 = limits_client(l, &v4);
    em = limits_client(l, &m);
    ck_assert_ptr_eq(ea, eb);
    ck_assert_ptr_ne(ea, ec);
    ck_assert_ptr_eq(e4, em);
    ck_assert_ptr_ne(e4, ea);
    ck_assert_uint_eq(limits_entries(l), 3);
    limits_release(l, eb);
    limits_release(l, ec);

    /* /128 keys each address; /48 puts both /64s together; old references stay valid. */
    limits_set_client_prefix6(l, 128);
    eb = limits_client(l, &b);
    ck_assert_ptr_ne(eb, ea);
    limits_release(l, eb);
    limits_set_client_prefix6(l, 48);
    eb = limits_client(l, &a);
    ec = limits_client(l, &c);
    ck_assert_ptr_eq(eb, ec);
    ck_assert_ptr_ne(eb, ea);
    /* A prefix that is not a byte boundary: /60 keeps 2001:db8:1:2:: and ...:f:: apart from
     * ...:10::. */
    limits_release(l, eb);
    limits_release(l, ec);
    limits_set_client_prefix6(l, 60);
    {
        struct addr x = ip("2001:db8:1:2::1"), y = ip("2001:db8:1:f::1"),
                    z = ip("2001:db8:1:10::1");
        struct limit *ex = limits_client(l, &x), *ey = limits_client(l, &y);
        struct limit *ez = limits_client(l, &z);

        ck_assert_ptr_eq(ex, ey);
        ck_assert_ptr_ne(ex, ez);
        limits_release(l, ex);
        limits_release(l, ey);
        limits_release(l, ez);
    }
    limits_release(l, ea);
    limits_release(l, e4);
    limits_release(l, em);
    ck_assert_uint_eq(limits_entries(l), 0);
    limits_free(l);
}
END_TEST

START_TEST(test_negotiating_sessions_have_their_own_budget)
{
    struct limits *l = limits_new(16);
    struct addr a = ip("192.0.2.1"), b = ip("192.0.2.2"), c = ip("192.0.2.3");
    struct limit_startups startups = {.start = 2, .rate = 50, .full = 4};
    struct limit_hold_caps caps = caps_of(100, 0);
    struct limit_hold h[6];

    caps.negotiating = &startups;
    caps.negotiating_per_client = 2;
    caps.draw = 0.99;
    /* Per client: the third negotiating session from a is closed at accept. */
    ck_assert(limits_hold_begin(&h[0], l, limits_client(l, &a), &caps));
    ck_assert(limits_hold_begin(&h[1], l, limits_client(l, &a), &caps));
    ck_assert(!limits_hold_begin(&h[2], l, limits_client(l, &a), &caps));
    ck_assert_int_eq(h[2].refused, LIMIT_NEGOTIATING_CLIENT);
    ck_assert_uint_eq(limits_negotiating(l), 2);
    /* Once its request is handed on, a session no longer counts (twice is harmless). */
    limits_hold_negotiated(&h[0]);
    limits_hold_negotiated(&h[0]);
    ck_assert_uint_eq(limits_negotiating(l), 1);
    ck_assert_uint_eq(limits_total(l), 2);
    ck_assert(limits_hold_begin(&h[2], l, limits_client(l, &a), &caps));
    ck_assert_uint_eq(limits_negotiating(l), 2);
    /* At START (2): dropped with 50 %: a high draw passes, a low one does not. */
    caps.draw = 0.2;
    ck_assert(!limits_hold_begin(&h[3], l, limits_client(l, &b), &caps));
    ck_assert_int_eq(h[3].refused, LIMIT_NEGOTIATING);
    caps.draw = 0.6;
    ck_assert(limits_hold_begin(&h[3], l, limits_client(l, &b), &caps));
    /* At 3 of 2..4: 75 %. */
    caps.draw = 0.7;
    ck_assert(!limits_hold_begin(&h[4], l, limits_client(l, &c), &caps));
    caps.draw = 0.8;
    ck_assert(limits_hold_begin(&h[4], l, limits_client(l, &c), &caps));
    /* At FULL every new one is dropped, whatever the dice. */
    caps.draw = 0.999;
    ck_assert(!limits_hold_begin(&h[5], l, limits_client(l, &c), &caps));
    ck_assert_int_eq(h[5].refused, LIMIT_NEGOTIATING);
    ck_assert_uint_eq(limits_negotiating(l), 4);
    /* Release leaves the negotiating count too. */
    limits_hold_release(&h[4]);
    ck_assert_uint_eq(limits_negotiating(l), 3);
    ck_assert(limits_hold_begin(&h[4], l, limits_client(l, &c), &caps));
    for (int i = 0; i < 5; i++)
        limits_hold_release(&h[i]);
    ck_assert_uint_eq(limits_negotiating(l), 0);
    ck_assert_uint_eq(limits_total(l), 0);
    ck_assert_uint_eq(limits_entries(l), 0);
    limits_free(l);
}
END_TEST

START_TEST(test_negotiating_budget_off_and_single_number)
{
    struct limits *l = limits_new(16);
    struct addr a = ip("192.0.2.1");
    struct limit_startups off = {0}, one = {.start = 1, .rate = 100, .full = 1};
    struct limit_hold_caps caps = caps_of(100, 0);
    struct limit_hold h[3];

    caps.negotiating = &off;
    caps.draw = 0;
    for (int i = 0; i < 3; i++)
        ck_assert(limits_hold_begin(&h[i], l, limits_client(l, &a), &caps));
    for (int i = 0; i < 3; i++)
        limits_hold_release(&h[i]);
    caps.negotiating = &one;
    caps.draw = 0.999;
    ck_assert(limits_hold_begin(&h[0], l, limits_client(l, &a), &caps));
    ck_assert(!limits_hold_begin(&h[1], l, limits_client(l, &a), &caps));
    limits_hold_release(&h[0]);
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
    tcase_add_test(tc, test_parallel_checks_reserve_tokens_when_they_start);
    tcase_add_test(tc, test_checks_in_flight_are_capped_per_client_and_per_user);
    tcase_add_test(tc, test_refusals_are_summed_up_per_interval);
    tcase_add_test(tc, test_bandwidth_allows_burst_then_waits_for_min_read);
    tcase_add_test(tc, test_bandwidth_min_read_is_capped_by_burst);
    tcase_add_test(tc, test_quota_per_period);
    tcase_add_test(tc, test_idle_entries_are_bounded_oldest_first);
    tcase_add_test(tc, test_hold_refuses_past_a_limit_and_closes_past_its_margin);
    tcase_add_test(tc, test_hold_per_client_and_per_user_refusals);
    tcase_add_test(tc, test_hold_rule_limit_counts_once_and_its_refusal_is_not_counted);
    tcase_add_test(tc, test_hold_udp_slots_per_client_and_in_total);
    tcase_add_test(tc, test_hold_throttle_takes_the_smallest_allowance_and_ends_on_quota);
    tcase_add_test(tc, test_ipv6_clients_are_keyed_on_their_prefix);
    tcase_add_test(tc, test_negotiating_sessions_have_their_own_budget);
    tcase_add_test(tc, test_negotiating_budget_off_and_single_number);
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
