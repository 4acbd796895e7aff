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

/* --- the special-destination table -------------------------------------------------------- */

static bool special(const char *text)
{
    struct addr a = ip(text);
    return policy_is_special_destination(&a);
}

/* Each range at its first and last address, and its neighbours when those are ordinary. */
static const struct {
    const char *first, *last, *below, *above;
} special_ranges[] = {
    {"0.0.0.0", "0.255.255.255", NULL, "1.0.0.0"},
    {"10.0.0.0", "10.255.255.255", "9.255.255.255", "11.0.0.0"},
    {"100.64.0.0", "100.127.255.255", "100.63.255.255", "100.128.0.0"},
    {"127.0.0.0", "127.255.255.255", "126.255.255.255", "128.0.0.0"},
    {"169.254.0.0", "169.254.255.255", "169.253.255.255", "169.255.0.0"},
    {"172.16.0.0", "172.31.255.255", "172.15.255.255", "172.32.0.0"},
    {"192.0.0.0", "192.0.0.255", "191.255.255.255", "192.0.1.0"},
    {"192.168.0.0", "192.168.255.255", "192.167.255.255", "192.169.0.0"},
    {"198.18.0.0", "198.19.255.255", "198.17.255.255", "198.20.0.0"},
    {"224.0.0.0", "239.255.255.255", "223.255.255.255", NULL /* 240/4 */},
    {"240.0.0.0", "255.255.255.255", NULL /* 224/4 */, NULL},
    {"::", "::", NULL, NULL /* ::/96 holds 0.0.0.0/8 */},
    {"::1", "::1", NULL, NULL},
    {"fe80::", "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
     NULL /* fec0::/10 */},
    {"fec0::", "feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", NULL, NULL /* ff00::/8 */},
    {"fc00::", "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
     "fe00::"},
    {"ff00::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", NULL, NULL},
};

START_TEST(test_special_ranges_first_last_and_just_outside)
{
    size_t i = (size_t)_i;

    ck_assert_msg(special(special_ranges[i].first), "%s", special_ranges[i].first);
    ck_assert_msg(special(special_ranges[i].last), "%s", special_ranges[i].last);
    if (special_ranges[i].below != NULL)
        ck_assert_msg(!special(special_ranges[i].below), "%s", special_ranges[i].below);
    if (special_ranges[i].above != NULL)
        ck_assert_msg(!special(special_ranges[i].above), "%s", special_ranges[i].above);
}
END_TEST

START_TEST(test_special_well_known_targets)
{
    ck_assert(special("169.254.169.254")); /* cloud metadata */
    ck_assert(special("255.255.255.255")); /* limited broadcast */
    ck_assert(special("127.0.0.1"));
    ck_assert(special("127.0.0.2"));
    ck_assert(special("0.0.0.0"));
    ck_assert(special("fd00::1"));
    ck_assert(special("fe80::1"));
    ck_assert(special("ff02::1"));
}
END_TEST

START_TEST(test_special_embedded_ipv4_forms)
{
    /* IPv4-mapped */
    ck_assert(special("::ffff:127.0.0.1"));
    ck_assert(special("::ffff:10.0.0.1"));
    ck_assert(special("::ffff:169.254.169.254"));
    ck_assert(special("::ffff:0.0.0.0"));
    ck_assert(special("::ffff:255.255.255.255"));
    ck_assert(!special("::ffff:8.8.8.8"));
    ck_assert(!special("::ffff:128.0.0.0"));
    /* IPv4-compatible (deprecated, RFC 4291 section 2.5.5.1) */
    ck_assert(special("::127.0.0.1"));
    ck_assert(special("::192.168.1.1"));
    ck_assert(special("::0.0.0.2"));
    ck_assert(!special("::8.8.8.8"));
    /* NAT64 well-known prefix (RFC 6052) */
    ck_assert(special("64:ff9b::127.0.0.1"));
    ck_assert(special("64:ff9b::a9fe:a9fe"));
    ck_assert(special("64:ff9b::172.16.0.1"));
    ck_assert(!special("64:ff9b::8.8.8.8"));
    ck_assert(!special("64:ff9b::1:7f00:1")); /* outside the /96: the last 32 bits are public */
    /* NAT64 local-use prefix (RFC 8215): the last 32 bits */
    ck_assert(special("64:ff9b:1::10.0.0.1"));
    ck_assert(special("64:ff9b:1:ffff::127.0.0.1"));
    ck_assert(!special("64:ff9b:1::8.8.8.8"));
    ck_assert(!special("64:ff9b:2::127.0.0.1"));
    /* 6to4 (RFC 3056): the IPv4 address in bits 16..47 */
    ck_assert(special("2002:7f00:1::"));
    ck_assert(special("2002:a9fe:a9fe::1"));
    ck_assert(special("2002:c0a8:101:1::1"));
    ck_assert(!special("2002:808:808::1"));
    ck_assert(!special("2003:7f00:1::"));
}
END_TEST

START_TEST(test_public_addresses_are_not_special)
{
    ck_assert(!special("8.8.8.8"));
    ck_assert(!special("1.1.1.1"));
    ck_assert(!special("192.0.2.1"));   /* documentation, not in the table */
    ck_assert(!special("203.0.113.5")); /* documentation, not in the table */
    ck_assert(!special("2001:4860::8888"));
    ck_assert(!special("2001:4860:4860::8888"));
    ck_assert(!special("2606:4700:4700::1111"));
    ck_assert(!special("2001:db8::1"));
}
END_TEST

START_TEST(test_special_other_family_and_null)
{
    struct addr a;

    memset(&a, 0, sizeof(a));
    ck_assert(policy_is_special_destination(&a));
    ck_assert(policy_is_special_destination(NULL));
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
    tcase_add_loop_test(tc, test_special_ranges_first_last_and_just_outside, 0,
                        (int)(sizeof(special_ranges) / sizeof(special_ranges[0])));
    tcase_add_test(tc, test_special_well_known_targets);
    tcase_add_test(tc, test_special_embedded_ipv4_forms);
    tcase_add_test(tc, test_public_addresses_are_not_special);
    tcase_add_test(tc, test_special_other_family_and_null);
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
