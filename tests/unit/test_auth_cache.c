/* Unit tests for the cache of verified logins. */
#include "config.h"

#include <check.h>
#include <sodium.h>
#include <string.h>

#include "ferry/auth_cache.h"

static unsigned char k_alice[AUTH_CACHE_KEY_LEN], k_wrong[AUTH_CACHE_KEY_LEN];

/* One slot: every key shares it, so a lookup must compare the whole key. */
static struct auth_cache *make(void)
{
    struct auth_cache *c = auth_cache_new(1);

    ck_assert_ptr_nonnull(c);
    auth_cache_key(c, "alice", 5, "secret", 6, k_alice);
    auth_cache_key(c, "alice", 5, "secreT", 6, k_wrong);
    return c;
}

START_TEST(test_only_what_was_put_is_found)
{
    struct auth_cache *c = make();

    ck_assert(!auth_cache_check(c, k_alice, 1, 10.0));
    auth_cache_put(c, k_alice, 1, 10.0, 300);
    ck_assert(auth_cache_check(c, k_alice, 1, 20.0));
    ck_assert(!auth_cache_check(c, k_wrong, 1, 20.0));
    /* A new login in the same slot takes it over. */
    auth_cache_put(c, k_wrong, 1, 20.0, 300);
    ck_assert(auth_cache_check(c, k_wrong, 1, 30.0));
    ck_assert(!auth_cache_check(c, k_alice, 1, 30.0));
    auth_cache_free(c);
}
END_TEST

START_TEST(test_entries_expire_and_die_with_their_generation)
{
    struct auth_cache *c = make();

    auth_cache_put(c, k_alice, 3, 100.0, 60);
    ck_assert(auth_cache_check(c, k_alice, 3, 159.9));
    ck_assert(!auth_cache_check(c, k_alice, 3, 160.0));
    ck_assert(!auth_cache_check(c, k_alice, 4, 120.0)); /* reloaded users file */
    /* Neither of these puts anything: the entry of generation 3 stays as it was. */
    auth_cache_put(c, k_alice, 3, 100.0, 0);  /* ttl 0: off */
    auth_cache_put(c, k_alice, 0, 100.0, 60); /* generation 0: never */
    ck_assert(auth_cache_check(c, k_alice, 3, 120.0));
    ck_assert(!auth_cache_check(c, k_alice, 0, 120.0));
    auth_cache_free(c);
}
END_TEST

START_TEST(test_keys_separate_user_and_password_and_differ_per_cache)
{
    struct auth_cache *c = make(), *d = make();
    unsigned char a[AUTH_CACHE_KEY_LEN], b[AUTH_CACHE_KEY_LEN];

    /* "ab" + "c" is not "a" + "bc": the user's length is in the hash. */
    auth_cache_key(c, "ab", 2, "c", 1, a);
    auth_cache_key(c, "a", 1, "bc", 2, b);
    ck_assert(memcmp(a, b, sizeof(a)) != 0);
    /* Another cache (another process) has another secret key. */
    auth_cache_key(d, "ab", 2, "c", 1, b);
    ck_assert(memcmp(a, b, sizeof(a)) != 0);
    auth_cache_free(c);
    auth_cache_free(d);
}
END_TEST

static Suite *auth_cache_suite(void)
{
    Suite *s = suite_create("auth_cache");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_only_what_was_put_is_found);
    tcase_add_test(tc, test_entries_expire_and_die_with_their_generation);
    tcase_add_test(tc, test_keys_separate_user_and_password_and_differ_per_cache);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr;
    int failed;

    if (sodium_init() < 0)
        return 1;
    sr = srunner_create(auth_cache_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
