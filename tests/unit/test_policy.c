/* Unit tests for the access decision: rules, then the private-destination block. */
#include "config.h"

#include <check.h>
#include <string.h>

#include "ferry/conf.h"
#include "ferry/policy.h"

static struct config cfg;
static char err[512];

static struct addr ip(const char *text)
{
    struct addr a;

    ck_assert_msg(addr_parse(text, 0, &a) == 0, "bad test address %s", text);
    return a;
}

/* Parse a config text into cfg (released in teardown). */
static void load(const char *text)
{
    conf_release(&cfg);
    ck_assert_msg(conf_parse(&cfg, text, "test.conf", err, sizeof(err)) == 0, "%s", err);
}

static void setup(void)
{
    conf_defaults(&cfg);
}

static void teardown(void)
{
    conf_release(&cfg);
}

/* The decision for a client at `client` asking `command` for dest (an address or NULL). */
static struct policy_decision check(const char *client, unsigned command, const char *name,
                                    const char *dest, uint16_t port)
{
    struct addr c = ip(client), d;
    struct acl_request req = {
        .client = &c,
        .command = command,
        .name = name,
        .port = port,
    };

    if (dest != NULL) {
        d = ip(dest);
        req.dest = &d;
    }
    return policy_check_request(&cfg, &req);
}

START_TEST(test_private_destination_refused_to_untrusted_client)
{
    static const char *const private[] = {
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "100.64.0.1",
        "169.254.169.254",
        "0.0.0.0",
        "224.0.0.1",
        "::1",
        "fe80::1",
        "fd00::1",
        "::",
        "::ffff:10.0.0.1",
        "64:ff9b::a9fe:a9fe",
        "2002:7f00:1::",
    };

    for (size_t i = 0; i < sizeof(private) / sizeof(private[0]); i++) {
        struct policy_decision d = check("192.0.2.7", ACL_CMD_CONNECT, NULL, private[i], 80);
        ck_assert_msg(d.verdict == ACL_VERDICT_BLOCK && d.private_dest, "%s passed", private[i]);
    }
}
END_TEST

START_TEST(test_public_destination_passes_untrusted_client)
{
    struct policy_decision d = check("192.0.2.7", ACL_CMD_CONNECT, NULL, "198.51.100.1", 80);

    ck_assert_int_eq(d.verdict, ACL_VERDICT_PASS);
    ck_assert(!d.private_dest);
    d = check("192.0.2.7", ACL_CMD_UDP, NULL, "2001:db8::1", 53);
    ck_assert_int_eq(d.verdict, ACL_VERDICT_PASS);
}
END_TEST

START_TEST(test_loopback_clients_are_trusted_by_default)
{
    ck_assert_int_eq(check("127.0.0.1", ACL_CMD_CONNECT, NULL, "10.0.0.1", 22).verdict,
                     ACL_VERDICT_PASS);
    ck_assert_int_eq(check("127.9.9.9", ACL_CMD_CONNECT, NULL, "127.0.0.1", 22).verdict,
                     ACL_VERDICT_PASS);
    ck_assert_int_eq(check("::1", ACL_CMD_CONNECT, NULL, "::1", 22).verdict, ACL_VERDICT_PASS);
    /* A loopback client seen through an IPv6 listener as ::ffff:127.0.0.1 is trusted too. */
    ck_assert_int_eq(check("::ffff:127.0.0.1", ACL_CMD_CONNECT, NULL, "::1", 22).verdict,
                     ACL_VERDICT_PASS);
}
END_TEST

START_TEST(test_trusted_clients_none_trusts_nobody)
{
    struct policy_decision d;

    load("trusted-clients none\n");
    d = check("127.0.0.1", ACL_CMD_CONNECT, NULL, "127.0.0.1", 22);
    ck_assert_int_eq(d.verdict, ACL_VERDICT_BLOCK);
    ck_assert(d.private_dest);
}
END_TEST

START_TEST(test_private_destinations_allow_opens_them)
{
    load("private-destinations allow\n");
    ck_assert_int_eq(check("192.0.2.7", ACL_CMD_CONNECT, NULL, "10.0.0.1", 22).verdict,
                     ACL_VERDICT_PASS);
}
END_TEST

START_TEST(test_pass_rule_with_to_range_opens_only_its_range)
{
    struct policy_decision d;

    load("request pass to 10.1.0.0/16\nrequest pass\n");
    d = check("192.0.2.7", ACL_CMD_CONNECT, NULL, "10.1.2.3", 22);
    ck_assert_int_eq(d.verdict, ACL_VERDICT_PASS);
    ck_assert_uint_eq(d.rule, 1);
    d = check("192.0.2.7", ACL_CMD_CONNECT, NULL, "10.2.0.1", 22);
    ck_assert_int_eq(d.verdict, ACL_VERDICT_BLOCK);
    ck_assert(d.private_dest);
}
END_TEST

START_TEST(test_plain_pass_rule_opens_nothing)
{
    struct policy_decision d;

    load("request pass from 192.0.2.0/24\n");
    d = check("192.0.2.7", ACL_CMD_CONNECT, NULL, "192.168.0.1", 80);
    ck_assert_int_eq(d.verdict, ACL_VERDICT_BLOCK);
    ck_assert(d.private_dest);
}
END_TEST

START_TEST(test_bind_and_resolve_are_not_checked_against_private_table)
{
    ck_assert_int_eq(check("192.0.2.7", ACL_CMD_BIND, NULL, "0.0.0.0", 0).verdict,
                     ACL_VERDICT_PASS);
    ck_assert_int_eq(check("192.0.2.7", ACL_CMD_RESOLVE, NULL, "10.0.0.1", 0).verdict,
                     ACL_VERDICT_PASS);
}
END_TEST

START_TEST(test_name_stage_passes_until_the_address_is_known)
{
    struct policy_decision d = check("192.0.2.7", ACL_CMD_CONNECT, "intranet.example", NULL, 80);

    ck_assert_int_eq(d.verdict, ACL_VERDICT_PASS);
    d = check("192.0.2.7", ACL_CMD_CONNECT, "intranet.example", "10.0.0.5", 80);
    ck_assert_int_eq(d.verdict, ACL_VERDICT_BLOCK);
    ck_assert(d.private_dest);
}
END_TEST

START_TEST(test_rule_block_keeps_its_number_and_line)
{
    struct policy_decision d;

    load("# comment\nrequest block port 25 log\nrequest pass\n");
    d = check("192.0.2.7", ACL_CMD_CONNECT, NULL, "198.51.100.1", 25);
    ck_assert_int_eq(d.verdict, ACL_VERDICT_BLOCK);
    ck_assert(!d.private_dest);
    ck_assert_uint_eq(d.rule, 1);
    ck_assert_uint_eq(d.line, 2);
    ck_assert(d.log);
}
END_TEST

START_TEST(test_client_rules_through_policy)
{
    struct addr c = ip("192.0.2.7"), other = ip("198.51.100.9"), l = ip("127.0.0.1:1080");
    struct policy_decision d;

    load("client pass from 192.0.2.0/24\n");
    d = policy_check_client(&cfg, &c, &l);
    ck_assert_int_eq(d.verdict, ACL_VERDICT_PASS);
    d = policy_check_client(&cfg, &other, &l);
    ck_assert_int_eq(d.verdict, ACL_VERDICT_BLOCK);
    ck_assert_uint_eq(d.rule, 0);
}
END_TEST

static Suite *policy_suite(void)
{
    Suite *s = suite_create("policy");
    TCase *tc = tcase_create("core");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_private_destination_refused_to_untrusted_client);
    tcase_add_test(tc, test_public_destination_passes_untrusted_client);
    tcase_add_test(tc, test_loopback_clients_are_trusted_by_default);
    tcase_add_test(tc, test_trusted_clients_none_trusts_nobody);
    tcase_add_test(tc, test_private_destinations_allow_opens_them);
    tcase_add_test(tc, test_pass_rule_with_to_range_opens_only_its_range);
    tcase_add_test(tc, test_plain_pass_rule_opens_nothing);
    tcase_add_test(tc, test_bind_and_resolve_are_not_checked_against_private_table);
    tcase_add_test(tc, test_name_stage_passes_until_the_address_is_known);
    tcase_add_test(tc, test_rule_block_keeps_its_number_and_line);
    tcase_add_test(tc, test_client_rules_through_policy);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(policy_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
