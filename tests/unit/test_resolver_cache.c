/* Unit tests for the resolver cache (src/resolver_cache.c). */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/resolver_cache.h"

/* A positive result holding the IPv4 addresses 192.0.2.first .. 192.0.2.(first + n - 1). */
static struct resolver_result ok_result(unsigned first, size_t n)
{
    struct resolver_result res;

    memset(&res, 0, sizeof(res));
    res.status = RESOLVER_OK;
    res.count = n;
    for (size_t i = 0; i < n; i++) {
        uint8_t ip[4] = {192, 0, 2, (uint8_t)(first + i)};
        addr_from_ipv4(&res.addrs[i], ip, 0);
    }
    return res;
}

static struct resolver_result fail_result(enum resolver_status status)
{
    struct resolver_result res;

    memset(&res, 0, sizeof(res));
    res.status = status;
    return res;
}

static unsigned last_octet(const struct addr *a)
{
    return ((const uint8_t *)&a->u.in4.sin_addr)[3];
}

START_TEST(test_dnscache_put_then_get_returns_addresses)
{
    struct resolver_cache *c = resolver_cache_new(8);
    struct resolver_result in = ok_result(1, 3), out;

    ck_assert_ptr_nonnull(c);
    resolver_cache_put(c, "example.test", &in, 60, 1000);
    ck_assert_uint_eq(resolver_cache_count(c), 1);
    ck_assert(resolver_cache_get(c, "example.test", 1001, &out));
    ck_assert_int_eq(out.status, RESOLVER_OK);
    ck_assert_uint_eq(out.count, 3);
    for (size_t i = 0; i < 3; i++)
        ck_assert(addr_equal(&out.addrs[i], &in.addrs[i]));
    resolver_cache_free(c);
}
END_TEST

START_TEST(test_dnscache_get_of_unknown_name_misses)
{
    struct resolver_cache *c = resolver_cache_new(8);
    struct resolver_result in = ok_result(1, 1), out;

    resolver_cache_put(c, "example.test", &in, 60, 0);
    ck_assert(!resolver_cache_get(c, "other.test", 1, &out));
    ck_assert(!resolver_cache_get(c, "example.tes", 1, &out));
    ck_assert(!resolver_cache_get(c, "example.testx", 1, &out));
    resolver_cache_free(c);
}
END_TEST

START_TEST(test_dnscache_keys_are_case_insensitive)
{
    struct resolver_cache *c = resolver_cache_new(8);
    struct resolver_result in = ok_result(7, 1), out;

    resolver_cache_put(c, "WWW.Example.TEST", &in, 60, 0);
    ck_assert(resolver_cache_get(c, "www.example.test", 1, &out));
    ck_assert_uint_eq(last_octet(&out.addrs[0]), 7);
    ck_assert(resolver_cache_get(c, "wWw.eXaMpLe.TeSt", 1, &out));
    /* Storing under another spelling replaces, not duplicates. */
    in = ok_result(9, 1);
    resolver_cache_put(c, "www.example.test", &in, 60, 2);
    ck_assert_uint_eq(resolver_cache_count(c), 1);
    ck_assert(resolver_cache_get(c, "WWW.EXAMPLE.TEST", 3, &out));
    ck_assert_uint_eq(last_octet(&out.addrs[0]), 9);
    resolver_cache_free(c);
}
END_TEST

START_TEST(test_dnscache_entry_expires_exactly_at_ttl)
{
    struct resolver_cache *c = resolver_cache_new(8);
    struct resolver_result in = ok_result(1, 1), out;

    resolver_cache_put(c, "a.test", &in, 30, 100);
    ck_assert(resolver_cache_get(c, "a.test", 100, &out));
    ck_assert(resolver_cache_get(c, "a.test", 129.999, &out));
    ck_assert(!resolver_cache_get(c, "a.test", 130, &out));
    /* An expired entry found by get is dropped. */
    ck_assert_uint_eq(resolver_cache_count(c), 0);
    resolver_cache_free(c);
}
END_TEST

START_TEST(test_dnscache_fractional_ttl_is_honoured)
{
    struct resolver_cache *c = resolver_cache_new(8);
    struct resolver_result in = ok_result(1, 1), out;

    resolver_cache_put(c, "a.test", &in, 0.25, 10);
    ck_assert(resolver_cache_get(c, "a.test", 10.2, &out));
    ck_assert(!resolver_cache_get(c, "a.test", 10.25, &out));
    resolver_cache_free(c);
}
END_TEST

START_TEST(test_dnscache_negative_entries_are_returned_with_status)
{
    struct resolver_cache *c = resolver_cache_new(8);
    struct resolver_result nx = fail_result(RESOLVER_NXDOMAIN);
    struct resolver_result nodata = fail_result(RESOLVER_NODATA);
    struct resolver_result out;

    resolver_cache_put(c, "nx.test", &nx, 5, 0);
    resolver_cache_put(c, "nodata.test", &nodata, 5, 0);
    ck_assert(resolver_cache_get(c, "nx.test", 4, &out));
    ck_assert_int_eq(out.status, RESOLVER_NXDOMAIN);
    ck_assert_uint_eq(out.count, 0);
    ck_assert(resolver_cache_get(c, "nodata.test", 4, &out));
    ck_assert_int_eq(out.status, RESOLVER_NODATA);
    ck_assert_uint_eq(out.count, 0);
    ck_assert(!resolver_cache_get(c, "nx.test", 5, &out));
    resolver_cache_free(c);
}
END_TEST

START_TEST(test_dnscache_ttl_zero_or_negative_stores_nothing)
{
    struct resolver_cache *c = resolver_cache_new(8);
    struct resolver_result in = ok_result(1, 1), out;

    resolver_cache_put(c, "zero.test", &in, 0, 0);
    resolver_cache_put(c, "minus.test", &in, -1, 0);
    ck_assert_uint_eq(resolver_cache_count(c), 0);
    ck_assert(!resolver_cache_get(c, "zero.test", 0, &out));
    ck_assert(!resolver_cache_get(c, "minus.test", 0, &out));
    resolver_cache_free(c);
}
END_TEST

START_TEST(test_dnscache_ttl_zero_put_drops_existing_entry)
{
    struct resolver_cache *c = resolver_cache_new(8);
    struct resolver_result in = ok_result(1, 1), out;

    resolver_cache_put(c, "a.test", &in, 60, 0);
    resolver_cache_put(c, "a.test", &in, 0, 1);
    ck_assert(!resolver_cache_get(c, "a.test", 2, &out));
    ck_assert_uint_eq(resolver_cache_count(c), 0);
    resolver_cache_free(c);
}
END_TEST

START_TEST(test_dnscache_put_replaces_existing_name)
{
    struct resolver_cache *c = resolver_cache_new(8);
    struct resolver_result first = ok_result(1, 4), second = ok_result(50, 2), out;

    resolver_cache_put(c, "a.test", &first, 10, 0);
    resolver_cache_put(c, "a.test", &second, 100, 5);
    ck_assert_uint_eq(resolver_cache_count(c), 1);
    ck_assert(resolver_cache_get(c, "a.test", 50, &out));
    ck_assert_uint_eq(out.count, 2);
    ck_assert_uint_eq(last_octet(&out.addrs[0]), 50);
    ck_assert_uint_eq(last_octet(&out.addrs[1]), 51);
    /* The new TTL counts, not the old one. */
    ck_assert(resolver_cache_get(c, "a.test", 104.9, &out));
    ck_assert(!resolver_cache_get(c, "a.test", 105, &out));
    resolver_cache_free(c);
}
END_TEST

START_TEST(test_dnscache_full_cache_evicts_soonest_expiring)
{
    struct resolver_cache *c = resolver_cache_new(3);
    struct resolver_result in = ok_result(1, 1), out;

    resolver_cache_put(c, "long.test", &in, 300, 0);
    resolver_cache_put(c, "short.test", &in, 10, 0);
    resolver_cache_put(c, "medium.test", &in, 100, 0);
    ck_assert_uint_eq(resolver_cache_count(c), 3);
    resolver_cache_put(c, "new.test", &in, 50, 1);
    ck_assert_uint_eq(resolver_cache_count(c), 3);
    ck_assert(!resolver_cache_get(c, "short.test", 2, &out));
    ck_assert(resolver_cache_get(c, "long.test", 2, &out));
    ck_assert(resolver_cache_get(c, "medium.test", 2, &out));
    ck_assert(resolver_cache_get(c, "new.test", 2, &out));
    /* Next to go is new.test (expires at 51), even though it was added last. */
    resolver_cache_put(c, "newer.test", &in, 200, 2);
    ck_assert(!resolver_cache_get(c, "new.test", 3, &out));
    ck_assert(resolver_cache_get(c, "medium.test", 3, &out));
    resolver_cache_free(c);
}
END_TEST

START_TEST(test_dnscache_full_cache_drops_newcomer_expiring_soonest)
{
    struct resolver_cache *c = resolver_cache_new(2);
    struct resolver_result in = ok_result(1, 1), out;

    resolver_cache_put(c, "one.test", &in, 100, 0);
    resolver_cache_put(c, "two.test", &in, 200, 0);
    resolver_cache_put(c, "brief.test", &in, 10, 0);
    ck_assert_uint_eq(resolver_cache_count(c), 2);
    ck_assert(!resolver_cache_get(c, "brief.test", 1, &out));
    ck_assert(resolver_cache_get(c, "one.test", 1, &out));
    ck_assert(resolver_cache_get(c, "two.test", 1, &out));
    resolver_cache_free(c);
}
END_TEST

START_TEST(test_dnscache_full_cache_evicts_expired_entry_first)
{
    struct resolver_cache *c = resolver_cache_new(2);
    struct resolver_result in = ok_result(1, 1), out;

    resolver_cache_put(c, "old.test", &in, 5, 0);
    resolver_cache_put(c, "keep.test", &in, 1000, 0);
    resolver_cache_put(c, "fresh.test", &in, 1, 100);
    ck_assert_uint_eq(resolver_cache_count(c), 2);
    ck_assert(resolver_cache_get(c, "keep.test", 100.5, &out));
    ck_assert(resolver_cache_get(c, "fresh.test", 100.5, &out));
    resolver_cache_free(c);
}
END_TEST

START_TEST(test_dnscache_size_zero_stores_nothing)
{
    struct resolver_cache *c = resolver_cache_new(0);
    struct resolver_result in = ok_result(1, 1), out;

    ck_assert_ptr_nonnull(c);
    resolver_cache_put(c, "a.test", &in, 60, 0);
    ck_assert_uint_eq(resolver_cache_count(c), 0);
    ck_assert(!resolver_cache_get(c, "a.test", 1, &out));
    resolver_cache_free(c);
}
END_TEST

START_TEST(test_dnscache_keeps_at_most_max_addrs)
{
    struct resolver_cache *c = resolver_cache_new(2);
    struct resolver_result in = ok_result(1, RESOLVER_MAX_ADDRS), out;

    resolver_cache_put(c, "a.test", &in, 60, 0);
    ck_assert(resolver_cache_get(c, "a.test", 1, &out));
    ck_assert_uint_eq(out.count, RESOLVER_MAX_ADDRS);
    ck_assert_uint_eq(last_octet(&out.addrs[RESOLVER_MAX_ADDRS - 1]), RESOLVER_MAX_ADDRS);
    resolver_cache_free(c);
}
END_TEST

/* Many names with distinct TTLs: all findable, and eviction keeps the longest-lived ones. */
START_TEST(test_dnscache_many_entries_keep_longest_lived)
{
    enum { MAX = 1000, TOTAL = 5000 };
    struct resolver_cache *c = resolver_cache_new(MAX);
    struct resolver_result in, out;
    char name[64];

    for (unsigned i = 0; i < TOTAL; i++) {
        /* TTLs in a scrambled order so the heap sees inserts everywhere. */
        unsigned ttl = 1 + (i * 7919u) % TOTAL;
        in = ok_result(i % 200, 1);
        snprintf(name, sizeof(name), "host-%u.Example.test", ttl);
        resolver_cache_put(c, name, &in, ttl, 0);
        ck_assert_uint_le(resolver_cache_count(c), MAX);
    }
    ck_assert_uint_eq(resolver_cache_count(c), MAX);
    for (unsigned ttl = 1; ttl <= TOTAL; ttl++) {
        snprintf(name, sizeof(name), "HOST-%u.example.TEST", ttl);
        ck_assert_int_eq(resolver_cache_get(c, name, 0.5, &out), ttl > TOTAL - MAX);
    }
    /* Expire half of them by time; get drops them as it meets them. */
    for (unsigned ttl = TOTAL - MAX + 1; ttl <= TOTAL; ttl++) {
        snprintf(name, sizeof(name), "host-%u.example.test", ttl);
        ck_assert_int_eq(resolver_cache_get(c, name, TOTAL - MAX / 2, &out), ttl > TOTAL - MAX / 2);
    }
    ck_assert_uint_eq(resolver_cache_count(c), MAX / 2);
    resolver_cache_free(c);
}
END_TEST

START_TEST(test_dnscache_null_cache_is_harmless)
{
    struct resolver_result in = ok_result(1, 1), out;

    resolver_cache_put(NULL, "a.test", &in, 60, 0);
    ck_assert(!resolver_cache_get(NULL, "a.test", 0, &out));
    ck_assert_uint_eq(resolver_cache_count(NULL), 0);
    resolver_cache_free(NULL);
}
END_TEST

static Suite *resolver_cache_suite(void)
{
    Suite *s = suite_create("resolver_cache");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_dnscache_put_then_get_returns_addresses);
    tcase_add_test(tc, test_dnscache_get_of_unknown_name_misses);
    tcase_add_test(tc, test_dnscache_keys_are_case_insensitive);
    tcase_add_test(tc, test_dnscache_entry_expires_exactly_at_ttl);
    tcase_add_test(tc, test_dnscache_fractional_ttl_is_honoured);
    tcase_add_test(tc, test_dnscache_negative_entries_are_returned_with_status);
    tcase_add_test(tc, test_dnscache_ttl_zero_or_negative_stores_nothing);
    tcase_add_test(tc, test_dnscache_ttl_zero_put_drops_existing_entry);
    tcase_add_test(tc, test_dnscache_put_replaces_existing_name);
    tcase_add_test(tc, test_dnscache_full_cache_evicts_soonest_expiring);
    tcase_add_test(tc, test_dnscache_full_cache_drops_newcomer_expiring_soonest);
    tcase_add_test(tc, test_dnscache_full_cache_evicts_expired_entry_first);
    tcase_add_test(tc, test_dnscache_size_zero_stores_nothing);
    tcase_add_test(tc, test_dnscache_keeps_at_most_max_addrs);
    tcase_add_test(tc, test_dnscache_many_entries_keep_longest_lived);
    tcase_add_test(tc, test_dnscache_null_cache_is_harmless);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(resolver_cache_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
