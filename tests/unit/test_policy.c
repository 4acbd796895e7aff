/* Unit tests for the access decision: rules, then the private-destination block. */
#include "config.h"

#include <check.h>
#include <string.h>

#include "ferry/conf.h"
#include "ferry/localaddr.h"
#include "ferry/policy.h"

static struct config cfg;
static struct localaddrs *local; /* the injected interface list, NULL: none */
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
    localaddrs_unref(local);
    local = NULL;
}

/* Inject the host's interface addresses: CIDR texts, NULL-terminated. */
static void interfaces(const char *const *texts)
{
    struct addr_cidr ranges[8];
    size_t n = 0;

    for (; texts[n] != NULL; n++)
        ck_assert_msg(addr_cidr_parse(texts[n], &ranges[n]) == 0, "bad range %s", texts[n]);
    localaddrs_unref(local);
    local = localaddrs_new(ranges, n);
    ck_assert_ptr_nonnull(local);
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
    return policy_check_request(&cfg, local, &req);
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

/* BIND's expected peer and RESOLVE/RESOLVE_PTR addresses are destinations too. */
START_TEST(test_bind_peer_and_resolve_answers_are_checked_against_private_table)
{
    struct policy_decision d = check("192.0.2.7", ACL_CMD_BIND, NULL, "127.0.0.1", 0);

    ck_assert_int_eq(d.verdict, ACL_VERDICT_BLOCK);
    ck_assert(d.private_dest);
    d = check("192.0.2.7", ACL_CMD_RESOLVE, NULL, "10.0.0.1", 0);
    ck_assert_int_eq(d.verdict, ACL_VERDICT_BLOCK);
    ck_assert(d.private_dest);
    d = check("192.0.2.7", ACL_CMD_RESOLVE, "intranet.example", "192.168.1.1", 0);
    ck_assert_int_eq(d.verdict, ACL_VERDICT_BLOCK);
    ck_assert_int_eq(check("192.0.2.7", ACL_CMD_RESOLVE, NULL, "198.51.100.1", 0).verdict,
                     ACL_VERDICT_PASS);
    ck_assert_int_eq(check("192.0.2.7", ACL_CMD_BIND, NULL, "198.51.100.1", 0).verdict,
                     ACL_VERDICT_PASS);
    /* A trusted client may still. */
    ck_assert_int_eq(check("127.0.0.1", ACL_CMD_BIND, NULL, "127.0.0.1", 0).verdict,
                     ACL_VERDICT_PASS);
}
END_TEST

/* BIND's expected peer 0.0.0.0 or :: means "any peer", not a destination. */
START_TEST(test_bind_any_peer_is_not_a_private_destination)
{
    ck_assert_int_eq(check("192.0.2.7", ACL_CMD_BIND, NULL, "0.0.0.0", 0).verdict,
                     ACL_VERDICT_PASS);
    ck_assert_int_eq(check("192.0.2.7", ACL_CMD_BIND, NULL, "::", 0).verdict, ACL_VERDICT_PASS);
    /* Not for CONNECT. */
    ck_assert_int_eq(check("192.0.2.7", ACL_CMD_CONNECT, NULL, "0.0.0.0", 80).verdict,
                     ACL_VERDICT_BLOCK);
}
END_TEST

/* --- the host's own addresses --------------------------------------------------------------- */

static const char *const host_addrs[] = {"203.0.113.5", "2001:db8:5::5", NULL};

START_TEST(test_own_interface_address_refused_to_untrusted_client)
{
    static const char *const own[] = {"203.0.113.5", "::ffff:203.0.113.5", "2001:db8:5::5"};
    static const unsigned commands[] = {ACL_CMD_CONNECT, ACL_CMD_UDP, ACL_CMD_BIND,
                                        ACL_CMD_RESOLVE};

    interfaces(host_addrs);
    for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++) {
        for (size_t c = 0; c < sizeof(commands) / sizeof(commands[0]); c++) {
            struct policy_decision d = check("192.0.2.7", commands[c], NULL, own[i], 80);

            ck_assert_msg(d.verdict == ACL_VERDICT_BLOCK && d.private_dest, "%s cmd %u passed",
                          own[i], commands[c]);
        }
        /* A name resolving to it is judged by its address. */
        ck_assert_int_eq(check("192.0.2.7", ACL_CMD_CONNECT, "me.example", own[i], 80).verdict,
                         ACL_VERDICT_BLOCK);
    }
    /* Its neighbours are other hosts. */
    ck_assert_int_eq(check("192.0.2.7", ACL_CMD_CONNECT, NULL, "203.0.113.6", 80).verdict,
                     ACL_VERDICT_PASS);
    ck_assert_int_eq(check("192.0.2.7", ACL_CMD_CONNECT, NULL, "2001:db8:5::6", 80).verdict,
                     ACL_VERDICT_PASS);
    /* Trusted clients and private-destinations allow pass, as for the table. */
    ck_assert_int_eq(check("127.0.0.1", ACL_CMD_CONNECT, NULL, "203.0.113.5", 80).verdict,
                     ACL_VERDICT_PASS);
    load("private-destinations allow\n");
    ck_assert_int_eq(check("192.0.2.7", ACL_CMD_CONNECT, NULL, "203.0.113.5", 80).verdict,
                     ACL_VERDICT_PASS);
}
END_TEST

START_TEST(test_without_interface_list_own_address_is_public)
{
    ck_assert_int_eq(check("192.0.2.7", ACL_CMD_CONNECT, NULL, "203.0.113.5", 80).verdict,
                     ACL_VERDICT_PASS);
}
END_TEST

/* An address on a loopback interface is local with its whole prefix (as Linux routes it). */
START_TEST(test_interface_range_is_private_as_a_whole)
{
    static const char *const lo[] = {"198.51.100.0/24", NULL};

    interfaces(lo);
    ck_assert_int_eq(check("192.0.2.7", ACL_CMD_CONNECT, NULL, "198.51.100.77", 80).verdict,
                     ACL_VERDICT_BLOCK);
    ck_assert_int_eq(check("192.0.2.7", ACL_CMD_CONNECT, NULL, "198.51.101.1", 80).verdict,
                     ACL_VERDICT_PASS);
}
END_TEST

START_TEST(test_listen_advertise_and_udp_addresses_are_private)
{
    load("listen 198.51.100.1:1080 advertise 203.0.113.9\nlisten 0.0.0.0:1081\n"
         "udp address 198.51.100.2\nauth password\nusers /nonexistent\n");
    ck_assert_int_eq(check("192.0.2.7", ACL_CMD_CONNECT, NULL, "198.51.100.1", 80).verdict,
                     ACL_VERDICT_BLOCK);
    ck_assert_int_eq(check("192.0.2.7", ACL_CMD_CONNECT, NULL, "203.0.113.9", 80).verdict,
                     ACL_VERDICT_BLOCK);
    ck_assert_int_eq(check("192.0.2.7", ACL_CMD_UDP, NULL, "198.51.100.2", 53).verdict,
                     ACL_VERDICT_BLOCK);
    ck_assert_int_eq(check("192.0.2.7", ACL_CMD_CONNECT, NULL, "198.51.100.3", 80).verdict,
                     ACL_VERDICT_PASS);
}
END_TEST

START_TEST(test_interface_list_normalises_and_compares)
{
    static const char *const mapped[] = {"::ffff:203.0.113.1/120", "2001:db8::7", NULL};
    static const char *const plain[] = {"203.0.113.0/24", "2001:db8::7/128", NULL};
    struct localaddrs *first;
    struct addr a = ip("203.0.113.99");

    interfaces(mapped);
    ck_assert_uint_eq(localaddrs_count(local), 2);
    ck_assert_int_eq(localaddrs_match(local, &a), 24); /* counted in IPv4 bits */
    a = ip("::ffff:203.0.113.99");
    ck_assert_int_eq(localaddrs_match(local, &a), 24);
    a = ip("203.0.114.1");
    ck_assert_int_eq(localaddrs_match(local, &a), -1);
    ck_assert_int_eq(localaddrs_match(NULL, &a), -1);
    first = localaddrs_ref(local);
    interfaces(plain);
    ck_assert(localaddrs_same(first, local));
    ck_assert(!localaddrs_same(first, NULL));
    ck_assert(localaddrs_same(NULL, NULL));
    localaddrs_unref(first);
}
END_TEST

/* The real list: whatever else there is, the loopback interface's prefix is in it. */
START_TEST(test_reading_interfaces_finds_loopback)
{
    struct localaddrs *l = localaddrs_read();
    struct addr a = ip("127.0.0.1");

    ck_assert_ptr_nonnull(l);
    ck_assert_int_ge(localaddrs_match(l, &a), 0);
    localaddrs_unref(l);
}
END_TEST

/* A 'to' range opens a private destination only when it lies inside the private range. */
START_TEST(test_to_range_opens_own_address_only_when_naming_it)
{
    interfaces(host_addrs);
    load("request pass to 203.0.113.0/24\n");
    ck_assert_int_eq(check("192.0.2.7", ACL_CMD_CONNECT, NULL, "203.0.113.5", 80).verdict,
                     ACL_VERDICT_BLOCK);
    ck_assert_int_eq(check("192.0.2.7", ACL_CMD_CONNECT, NULL, "203.0.113.6", 80).verdict,
                     ACL_VERDICT_PASS);
    load("request pass to 203.0.113.5\n");
    ck_assert_int_eq(check("192.0.2.7", ACL_CMD_CONNECT, NULL, "203.0.113.5", 80).verdict,
                     ACL_VERDICT_PASS);
}
END_TEST

/* --- 'to' ranges wider than a private range ------------------------------------------------ */

START_TEST(test_pass_to_everything_does_not_open_private_ranges)
{
    static const char *const private[] = {"127.0.0.1", "10.0.0.1", "169.254.169.254", "192.168.1.1",
                                          "::ffff:10.0.0.1"};

    load("request pass to 0.0.0.0/0,::/0\n");
    for (size_t i = 0; i < sizeof(private) / sizeof(private[0]); i++) {
        struct policy_decision d = check("192.0.2.7", ACL_CMD_CONNECT, NULL, private[i], 80);
        ck_assert_msg(d.verdict == ACL_VERDICT_BLOCK && d.private_dest, "%s passed", private[i]);
    }
    ck_assert_int_eq(check("192.0.2.7", ACL_CMD_CONNECT, NULL, "::1", 80).verdict,
                     ACL_VERDICT_BLOCK);
    ck_assert_int_eq(check("192.0.2.7", ACL_CMD_CONNECT, NULL, "fd00::1", 80).verdict,
                     ACL_VERDICT_BLOCK);
    ck_assert_int_eq(check("192.0.2.7", ACL_CMD_CONNECT, NULL, "198.51.100.1", 80).verdict,
                     ACL_VERDICT_PASS);
    ck_assert_int_eq(check("192.0.2.7", ACL_CMD_CONNECT, NULL, "2001:db8::1", 80).verdict,
                     ACL_VERDICT_PASS);
    /* A range wider than 10.0.0.0/8 that holds it does not open it either. */
    load("request pass to 10.0.0.0/7\n");
    ck_assert_int_eq(check("192.0.2.7", ACL_CMD_CONNECT, NULL, "10.1.2.3", 80).verdict,
                     ACL_VERDICT_BLOCK);
}
END_TEST

START_TEST(test_pass_to_range_inside_private_range_opens_it)
{
    load("request pass to 10.0.0.0/8,172.16.5.0/24,fd00::/8,169.254.169.254\n");
    ck_assert_int_eq(check("192.0.2.7", ACL_CMD_CONNECT, NULL, "10.9.9.9", 80).verdict,
                     ACL_VERDICT_PASS);
    ck_assert_int_eq(check("192.0.2.7", ACL_CMD_CONNECT, NULL, "::ffff:10.9.9.9", 80).verdict,
                     ACL_VERDICT_PASS);
    ck_assert_int_eq(check("192.0.2.7", ACL_CMD_CONNECT, NULL, "172.16.5.1", 80).verdict,
                     ACL_VERDICT_PASS);
    ck_assert_int_eq(check("192.0.2.7", ACL_CMD_CONNECT, NULL, "fd12::1", 80).verdict,
                     ACL_VERDICT_PASS);
    ck_assert_int_eq(check("192.0.2.7", ACL_CMD_CONNECT, NULL, "169.254.169.254", 80).verdict,
                     ACL_VERDICT_PASS);
    /* An IPv4-mapped range counts in IPv4 bits. */
    load("request pass to ::ffff:10.0.0.0/104\n");
    ck_assert_int_eq(check("192.0.2.7", ACL_CMD_CONNECT, NULL, "10.1.1.1", 80).verdict,
                     ACL_VERDICT_PASS);
}
END_TEST

START_TEST(test_private_keyword_opens_everything_its_rule_passes)
{
    interfaces(host_addrs);
    load("request pass user alice to 0.0.0.0/0 private\nrequest pass\n");
    {
        struct addr c = ip("192.0.2.7"), d = ip("127.0.0.1");
        struct acl_request req = {
            .client = &c, .user = "alice", .command = ACL_CMD_CONNECT, .dest = &d, .port = 22};

        ck_assert_int_eq(policy_check_request(&cfg, local, &req).verdict, ACL_VERDICT_PASS);
        d = ip("203.0.113.5");
        ck_assert_int_eq(policy_check_request(&cfg, local, &req).verdict, ACL_VERDICT_PASS);
        req.user = "bob";
        ck_assert_int_eq(policy_check_request(&cfg, local, &req).verdict, ACL_VERDICT_BLOCK);
    }
}
END_TEST

static unsigned wide_line(const char *text)
{
    load(text);
    return policy_wide_pass_line(&cfg);
}

START_TEST(test_wide_pass_ranges_are_found_for_the_load_warning)
{
    ck_assert_uint_eq(wide_line("request pass to 0.0.0.0/0\n"), 1);
    ck_assert_uint_eq(wide_line("request block to 10.0.0.0/8\n#\nrequest pass to ::/0\n"), 3);
    ck_assert_uint_eq(wide_line("request pass to 10.0.0.0/7\n"), 1);
    ck_assert_uint_eq(wide_line("request pass to 0.0.0.0/1\n"), 1);
    ck_assert_uint_eq(wide_line("request pass to ::ffff:0:0/96\n"), 1);
    /* Ranges inside private ranges, public ranges, 'private', and block rules: no warning. */
    ck_assert_uint_eq(wide_line("request pass to 10.0.0.0/8,192.168.0.0/16,fd00::/8\n"), 0);
    ck_assert_uint_eq(wide_line("request pass to 8.0.0.0/7,2001:db8::/32\n"), 0);
    ck_assert_uint_eq(wide_line("request pass to 0.0.0.0/0 private\n"), 0);
    ck_assert_uint_eq(wide_line("request block to 0.0.0.0/0\n"), 0);
    ck_assert_uint_eq(wide_line("request pass to .example.com\n"), 0);
}
END_TEST

/* With passwords, a loopback client may be a forwarder's (stunnel, ssh -R): not trusted. */
START_TEST(test_password_auth_trusts_no_client_unless_told)
{
    load("auth password\nusers /nonexistent\n");
    ck_assert_int_eq(check("127.0.0.1", ACL_CMD_CONNECT, NULL, "127.0.0.1", 22).verdict,
                     ACL_VERDICT_BLOCK);
    load("auth password none\nusers /nonexistent\n");
    ck_assert_int_eq(check("::1", ACL_CMD_CONNECT, NULL, "::1", 22).verdict, ACL_VERDICT_BLOCK);
    load("auth password\nusers /nonexistent\ntrusted-clients 127.0.0.0/8 ::1\n");
    ck_assert_int_eq(check("127.0.0.1", ACL_CMD_CONNECT, NULL, "127.0.0.1", 22).verdict,
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
    tcase_add_test(tc, test_bind_peer_and_resolve_answers_are_checked_against_private_table);
    tcase_add_test(tc, test_bind_any_peer_is_not_a_private_destination);
    tcase_add_test(tc, test_own_interface_address_refused_to_untrusted_client);
    tcase_add_test(tc, test_without_interface_list_own_address_is_public);
    tcase_add_test(tc, test_interface_range_is_private_as_a_whole);
    tcase_add_test(tc, test_listen_advertise_and_udp_addresses_are_private);
    tcase_add_test(tc, test_to_range_opens_own_address_only_when_naming_it);
    tcase_add_test(tc, test_interface_list_normalises_and_compares);
    tcase_add_test(tc, test_reading_interfaces_finds_loopback);
    tcase_add_test(tc, test_pass_to_everything_does_not_open_private_ranges);
    tcase_add_test(tc, test_pass_to_range_inside_private_range_opens_it);
    tcase_add_test(tc, test_private_keyword_opens_everything_its_rule_passes);
    tcase_add_test(tc, test_wide_pass_ranges_are_found_for_the_load_warning);
    tcase_add_test(tc, test_password_auth_trusts_no_client_unless_told);
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
