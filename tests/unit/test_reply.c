/* Unit tests for src/reply.c: the errno / resolver status to SOCKS reply code table. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <stdlib.h>

#include "ferry/reply.h"
#include "ferry/socks4.h"
#include "ferry/socks5.h"

START_TEST(test_errno_zero_is_succeeded)
{
    ck_assert_uint_eq(reply_from_errno(0), SOCKS5_REP_SUCCEEDED);
}
END_TEST

START_TEST(test_connect_refused_maps_to_rep_05)
{
    ck_assert_uint_eq(reply_from_errno(ECONNREFUSED), 0x05);
}
END_TEST

START_TEST(test_network_unreachable_and_down_map_to_rep_03)
{
    ck_assert_uint_eq(reply_from_errno(ENETUNREACH), 0x03);
    ck_assert_uint_eq(reply_from_errno(ENETDOWN), 0x03);
}
END_TEST

START_TEST(test_host_unreachable_and_down_map_to_rep_04)
{
    ck_assert_uint_eq(reply_from_errno(EHOSTUNREACH), 0x04);
    ck_assert_uint_eq(reply_from_errno(EHOSTDOWN), 0x04);
}
END_TEST

START_TEST(test_connect_timeout_maps_to_ttl_expired_rep_06)
{
    ck_assert_uint_eq(reply_from_errno(ETIMEDOUT), 0x06);
}
END_TEST

START_TEST(test_eacces_and_eperm_map_to_not_allowed_rep_02)
{
    ck_assert_uint_eq(reply_from_errno(EACCES), 0x02);
    ck_assert_uint_eq(reply_from_errno(EPERM), 0x02);
}
END_TEST

START_TEST(test_unsupported_family_maps_to_address_type_not_supported_rep_08)
{
    ck_assert_uint_eq(reply_from_errno(EAFNOSUPPORT), 0x08);
    ck_assert_uint_eq(reply_from_errno(EPROTONOSUPPORT), 0x08);
}
END_TEST

START_TEST(test_other_errnos_map_to_general_failure_rep_01)
{
    static const int others[] = {EINVAL,        ENOMEM,      EMFILE,     ENFILE, ENOBUFS,
                                 EADDRNOTAVAIL, EADDRINUSE,  ECONNRESET, EPIPE,  EIO,
                                 EAGAIN,        EINPROGRESS, -1,         9999};

    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++)
        ck_assert_msg(reply_from_errno(others[i]) == 0x01, "errno %d", others[i]);
}
END_TEST

START_TEST(test_resolver_ok_is_succeeded)
{
    ck_assert_uint_eq(reply_from_resolver(RESOLVER_OK), SOCKS5_REP_SUCCEEDED);
}
END_TEST

START_TEST(test_resolver_failures_map_to_host_unreachable_rep_04)
{
    ck_assert_uint_eq(reply_from_resolver(RESOLVER_NXDOMAIN), 0x04);
    ck_assert_uint_eq(reply_from_resolver(RESOLVER_NODATA), 0x04);
    ck_assert_uint_eq(reply_from_resolver(RESOLVER_TIMEOUT), 0x04);
    ck_assert_uint_eq(reply_from_resolver(RESOLVER_SERVFAIL), 0x04);
    /* A name that cannot be looked up (a 255-byte name, an empty label) is not a local fault. */
    ck_assert_uint_eq(reply_from_resolver(RESOLVER_BADNAME), 0x04);
}
END_TEST

START_TEST(test_resolver_local_error_maps_to_general_failure_rep_01)
{
    ck_assert_uint_eq(reply_from_resolver(RESOLVER_ERROR), 0x01);
    ck_assert_uint_eq(reply_from_resolver((enum resolver_status)77), 0x01);
}
END_TEST

START_TEST(test_socks4_cd_is_90_only_for_success)
{
    ck_assert_uint_eq(reply_socks4_from_socks5(SOCKS5_REP_SUCCEEDED), 90);
    for (unsigned rep = 1; rep <= 0xff; rep++)
        ck_assert_uint_eq(reply_socks4_from_socks5((uint8_t)rep), 91);
}
END_TEST

START_TEST(test_reply_names)
{
    ck_assert_str_eq(reply_name(0x00), "succeeded");
    ck_assert_str_eq(reply_name(0x01), "general-failure");
    ck_assert_str_eq(reply_name(0x02), "not-allowed");
    ck_assert_str_eq(reply_name(0x03), "network-unreachable");
    ck_assert_str_eq(reply_name(0x04), "host-unreachable");
    ck_assert_str_eq(reply_name(0x05), "connection-refused");
    ck_assert_str_eq(reply_name(0x06), "ttl-expired");
    ck_assert_str_eq(reply_name(0x07), "command-not-supported");
    ck_assert_str_eq(reply_name(0x08), "address-type-not-supported");
}
END_TEST

START_TEST(test_reply_name_unknown_codes)
{
    for (unsigned rep = 0x09; rep <= 0xff; rep++)
        ck_assert_str_eq(reply_name((uint8_t)rep), "unknown");
}
END_TEST

static Suite *reply_suite(void)
{
    Suite *s = suite_create("reply");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_errno_zero_is_succeeded);
    tcase_add_test(tc, test_connect_refused_maps_to_rep_05);
    tcase_add_test(tc, test_network_unreachable_and_down_map_to_rep_03);
    tcase_add_test(tc, test_host_unreachable_and_down_map_to_rep_04);
    tcase_add_test(tc, test_connect_timeout_maps_to_ttl_expired_rep_06);
    tcase_add_test(tc, test_eacces_and_eperm_map_to_not_allowed_rep_02);
    tcase_add_test(tc, test_unsupported_family_maps_to_address_type_not_supported_rep_08);
    tcase_add_test(tc, test_other_errnos_map_to_general_failure_rep_01);
    tcase_add_test(tc, test_resolver_ok_is_succeeded);
    tcase_add_test(tc, test_resolver_failures_map_to_host_unreachable_rep_04);
    tcase_add_test(tc, test_resolver_local_error_maps_to_general_failure_rep_01);
    tcase_add_test(tc, test_socks4_cd_is_90_only_for_success);
    tcase_add_test(tc, test_reply_names);
    tcase_add_test(tc, test_reply_name_unknown_codes);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(reply_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
