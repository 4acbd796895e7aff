/* Unit tests for the access rules: parsing and first-match checks. */
#include "config.h"

#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/acl.h"

static char err[512];

/* An address from text, port 0 unless given ("192.0.2.1", "::1", "[::1]:1080"). */
static struct addr ip(const char *text)
{
    struct addr a;

    ck_assert_msg(addr_parse(text, 0, &a) == 0, "bad test address %s", text);
    return a;
}

/* Split a rule line on blanks into argv (in buf) and add it; returns acl_add_rule's result. */
static int add_line(struct acl_rules *set, bool is_client, const char *line, unsigned lineno)
{
    char buf[1024];
    char *argv[64];
    int argc = 0;

    ck_assert_uint_lt(strlen(line), sizeof(buf));
    strcpy(buf, line);
    for (char *tok = strtok(buf, " "); tok != NULL; tok = strtok(NULL, " "))
        argv[argc++] = tok;
    return acl_add_rule(set, is_client, argc, argv, lineno, err, sizeof(err));
}

/* A rule set from lines (NULL-terminated); rule N gets line 10 * N. */
static struct acl_rules *make_rules(bool is_client, ...)
{
    struct acl_rules *set = acl_rules_new();
    unsigned n = 0;
    const char *line;
    va_list ap;

    ck_assert_ptr_nonnull(set);
    va_start(ap, is_client);
    while ((line = va_arg(ap, const char *)) != NULL) {
        n++;
        ck_assert_msg(add_line(set, is_client, line, 10 * n) == 0, "'%s': %s", line, err);
    }
    va_end(ap);
    ck_assert_uint_eq(acl_rules_count(set), n);
    return set;
}

#define CLIENT_RULES(...) make_rules(true, __VA_ARGS__, (const char *)NULL)
#define REQUEST_RULES(...) make_rules(false, __VA_ARGS__, (const char *)NULL)

/* The rule fails to parse with exactly `want`, and the set stays as it was. */
static void rule_err(bool is_client, const char *line, const char *want)
{
    struct acl_rules *set = acl_rules_new();

    ck_assert_int_eq(add_line(set, is_client, "pass", 1), 0);
    ck_assert_int_eq(add_line(set, is_client, line, 2), -1);
    ck_assert_str_eq(err, want);
    ck_assert_uint_eq(acl_rules_count(set), 1);
    acl_rules_free(set);
}

static struct acl_result client_check(const struct acl_rules *set, const char *client,
                                      const char *listener)
{
    struct addr c = ip(client), l = ip(listener);

    return acl_check_client(set, &c, &l);
}

/* A request: dest NULL for none, name NULL for an IP-literal destination. */
struct req {
    const char *client;
    const char *user;
    unsigned command;
    const char *name;
    const char *dest;
    uint16_t port;
};

static struct acl_result request_check(const struct acl_rules *set, struct req r)
{
    struct addr client = ip(r.client != NULL ? r.client : "192.0.2.1"), dest;
    struct acl_request q = {
        .client = &client,
        .user = r.user,
        .command = r.command != 0 ? r.command : ACL_CMD_CONNECT,
        .name = r.name,
        .port = r.port,
    };

    if (r.dest != NULL) {
        dest = ip(r.dest);
        q.dest = &dest;
    }
    return acl_check_request(set, &q);
}

#define CHECK(set, ...) request_check((set), (struct req){__VA_ARGS__})

static void expect(struct acl_result r, enum acl_verdict verdict, unsigned rule)
{
    ck_assert_int_eq(r.verdict, verdict);
    ck_assert_uint_eq(r.rule, rule);
    ck_assert_uint_eq(r.line, 10 * rule);
}

#define PASS ACL_VERDICT_PASS
#define BLOCK ACL_VERDICT_BLOCK
#define NEED ACL_VERDICT_NEED_ADDRESS

/* --- rule sets ---------------------------------------------------------------------------- */

START_TEST(test_null_and_empty_sets_pass_without_a_rule)
{
    struct acl_rules *empty = acl_rules_new();
    struct acl_result r;

    ck_assert_uint_eq(acl_rules_count(NULL), 0);
    ck_assert_uint_eq(acl_rules_count(empty), 0);
    r = client_check(NULL, "192.0.2.1", "127.0.0.1:1080");
    expect(r, PASS, 0);
    r = client_check(empty, "192.0.2.1", "127.0.0.1:1080");
    expect(r, PASS, 0);
    r = CHECK(NULL, .dest = "10.0.0.1", .port = 80);
    expect(r, PASS, 0);
    ck_assert(!r.explicit_dest);
    r = CHECK(empty, .name = "example.com", .port = 80);
    expect(r, PASS, 0);
    acl_rules_free(empty);
    acl_rules_free(NULL);
}
END_TEST

START_TEST(test_set_with_rules_ends_with_implicit_block)
{
    struct acl_rules *c = CLIENT_RULES("pass from 10.0.0.0/8");
    struct acl_rules *q = REQUEST_RULES("pass port 80");
    struct acl_result r;

    expect(client_check(c, "10.0.0.1", "127.0.0.1:1080"), PASS, 1);
    r = client_check(c, "11.0.0.1", "127.0.0.1:1080");
    expect(r, BLOCK, 0);
    ck_assert(!r.log);
    expect(CHECK(q, .dest = "192.0.2.7", .port = 80), PASS, 1);
    expect(CHECK(q, .dest = "192.0.2.7", .port = 81), BLOCK, 0);
    acl_rules_free(c);
    acl_rules_free(q);
}
END_TEST

START_TEST(test_first_match_decides)
{
    struct acl_rules *c =
        CLIENT_RULES("block from 10.1.0.0/16", "pass from 10.0.0.0/8", "block from 10.0.0.1");
    struct acl_rules *q = REQUEST_RULES("pass to 10.0.0.1", "block to 10.0.0.0/8", "pass");

    expect(client_check(c, "10.1.2.3", "127.0.0.1:1"), BLOCK, 1);
    expect(client_check(c, "10.0.0.1", "127.0.0.1:1"), PASS, 2);
    expect(client_check(c, "10.2.0.1", "127.0.0.1:1"), PASS, 2);
    expect(CHECK(q, .dest = "10.0.0.1", .port = 1), PASS, 1);
    expect(CHECK(q, .dest = "10.0.0.2", .port = 1), BLOCK, 2);
    expect(CHECK(q, .dest = "11.0.0.2", .port = 1), PASS, 3);
    acl_rules_free(c);
    acl_rules_free(q);
}
END_TEST

START_TEST(test_rule_without_conditions_matches_everything)
{
    struct acl_rules *c = CLIENT_RULES("block");
    struct acl_rules *q = REQUEST_RULES("pass");

    expect(client_check(c, "2001:db8::1", "[::1]:1080"), BLOCK, 1);
    expect(CHECK(q, .command = ACL_CMD_UDP), PASS, 1);
    expect(CHECK(q, .name = "x.example", .port = 1), PASS, 1);
    expect(CHECK(q, .user = "bob", .dest = "::1", .port = 0), PASS, 1);
    acl_rules_free(c);
    acl_rules_free(q);
}
END_TEST

START_TEST(test_any_stands_for_an_absent_condition)
{
    struct acl_rules *c = CLIENT_RULES("pass from any listener any log");
    struct acl_rules *q =
        REQUEST_RULES("block from any user any command any to any port any", "pass");
    struct acl_result r;

    r = client_check(c, "198.51.100.1", "192.0.2.1:99");
    expect(r, PASS, 1);
    ck_assert(r.log);
    /* An absent 'to' and 'port' decide even without any destination. */
    expect(CHECK(q, .command = ACL_CMD_UDP), BLOCK, 1);
    expect(CHECK(q, .name = "example.com", .port = 443), BLOCK, 1);
    acl_rules_free(c);
    acl_rules_free(q);
}
END_TEST

START_TEST(test_log_flag_and_line_are_reported)
{
    struct acl_rules *q = REQUEST_RULES("block port 25 log", "pass");
    struct acl_result r;

    r = CHECK(q, .dest = "192.0.2.1", .port = 25);
    expect(r, BLOCK, 1);
    ck_assert(r.log);
    r = CHECK(q, .dest = "192.0.2.1", .port = 26);
    expect(r, PASS, 2);
    ck_assert(!r.log);
    acl_rules_free(q);
}
END_TEST

/* --- client rules ------------------------------------------------------------------------- */

START_TEST(test_client_from_matches_listed_ranges_only)
{
    struct acl_rules *c = CLIENT_RULES("pass from 192.0.2.0/24,2001:db8::/32,198.51.100.7");

    expect(client_check(c, "192.0.2.0", "127.0.0.1:1"), PASS, 1);
    expect(client_check(c, "192.0.2.255", "127.0.0.1:1"), PASS, 1);
    expect(client_check(c, "2001:db8:ffff::1", "127.0.0.1:1"), PASS, 1);
    expect(client_check(c, "198.51.100.7", "127.0.0.1:1"), PASS, 1);
    expect(client_check(c, "192.0.3.0", "127.0.0.1:1"), BLOCK, 0);
    expect(client_check(c, "198.51.100.8", "127.0.0.1:1"), BLOCK, 0);
    expect(client_check(c, "2001:db9::1", "127.0.0.1:1"), BLOCK, 0);
    acl_rules_free(c);
}
END_TEST

START_TEST(test_client_listener_with_and_without_port)
{
    struct acl_rules *c = CLIENT_RULES("pass listener 127.0.0.1:1080", "block listener 127.0.0.1",
                                       "pass listener [::1]", "pass listener 2001:db8::1",
                                       "pass listener [2001:db8::2]:99");

    expect(client_check(c, "192.0.2.1", "127.0.0.1:1080"), PASS, 1);
    expect(client_check(c, "192.0.2.1", "127.0.0.1:1081"), BLOCK, 2);
    expect(client_check(c, "192.0.2.1", "[::1]:5"), PASS, 3);
    expect(client_check(c, "192.0.2.1", "[2001:db8::1]:1"), PASS, 4);
    expect(client_check(c, "192.0.2.1", "[2001:db8::2]:99"), PASS, 5);
    expect(client_check(c, "192.0.2.1", "[2001:db8::2]:98"), BLOCK, 0);
    expect(client_check(c, "192.0.2.1", "127.0.0.2:1080"), BLOCK, 0);
    /* A dual-stack listener reports the IPv4-mapped form. */
    expect(client_check(c, "::ffff:192.0.2.1", "[::ffff:127.0.0.1]:1080"), PASS, 1);
    /* No listener known: a listener rule cannot match. */
    {
        struct addr cl = ip("192.0.2.1");
        expect(acl_check_client(c, &cl, NULL), BLOCK, 0);
    }
    acl_rules_free(c);
}
END_TEST

START_TEST(test_client_from_and_listener_must_both_match)
{
    struct acl_rules *c = CLIENT_RULES("pass from 10.0.0.0/8 listener 10.0.0.1:1080");

    expect(client_check(c, "10.0.0.9", "10.0.0.1:1080"), PASS, 1);
    expect(client_check(c, "11.0.0.9", "10.0.0.1:1080"), BLOCK, 0);
    expect(client_check(c, "10.0.0.9", "10.0.0.2:1080"), BLOCK, 0);
    acl_rules_free(c);
}
END_TEST

/* --- request rules: conditions ------------------------------------------------------------ */

START_TEST(test_request_from)
{
    struct acl_rules *q = REQUEST_RULES("pass from 10.0.0.0/8,fd00::/8");

    expect(CHECK(q, .client = "10.255.255.255", .name = "a.b", .port = 1), PASS, 1);
    expect(CHECK(q, .client = "fdff::1", .name = "a.b", .port = 1), PASS, 1);
    expect(CHECK(q, .client = "9.255.255.255", .name = "a.b", .port = 1), BLOCK, 0);
    expect(CHECK(q, .client = "fe00::1", .name = "a.b", .port = 1), BLOCK, 0);
    acl_rules_free(q);
}
END_TEST

START_TEST(test_request_user_list_is_exact_and_needs_authentication)
{
    struct acl_rules *q = REQUEST_RULES("pass user alice,bob", "block user carol", "pass");

    expect(CHECK(q, .user = "alice", .name = "a.b", .port = 1), PASS, 1);
    expect(CHECK(q, .user = "bob", .name = "a.b", .port = 1), PASS, 1);
    expect(CHECK(q, .user = "carol", .name = "a.b", .port = 1), BLOCK, 2);
    /* Exact: no case folding, no prefixes. */
    expect(CHECK(q, .user = "Alice", .name = "a.b", .port = 1), PASS, 3);
    expect(CHECK(q, .user = "alic", .name = "a.b", .port = 1), PASS, 3);
    expect(CHECK(q, .user = "alicex", .name = "a.b", .port = 1), PASS, 3);
    expect(CHECK(q, .user = "", .name = "a.b", .port = 1), PASS, 3);
    /* Unauthenticated never matches a user rule. */
    expect(CHECK(q, .user = NULL, .name = "a.b", .port = 1), PASS, 3);
    acl_rules_free(q);
}
END_TEST

START_TEST(test_request_commands)
{
    struct acl_rules *q =
        REQUEST_RULES("block command bind", "pass command connect,resolve", "block command udp");

    expect(CHECK(q, .command = ACL_CMD_BIND, .dest = "192.0.2.1", .port = 0), BLOCK, 1);
    expect(CHECK(q, .command = ACL_CMD_CONNECT, .dest = "192.0.2.1", .port = 1), PASS, 2);
    expect(CHECK(q, .command = ACL_CMD_RESOLVE, .name = "a.example", .port = 0), PASS, 2);
    expect(CHECK(q, .command = ACL_CMD_UDP), BLOCK, 3);
    acl_rules_free(q);

    q = REQUEST_RULES("pass command udp");
    expect(CHECK(q, .command = ACL_CMD_CONNECT, .dest = "192.0.2.1", .port = 1), BLOCK, 0);
    acl_rules_free(q);
}
END_TEST

START_TEST(test_request_port_single_list_and_range_edges)
{
    struct acl_rules *q =
        REQUEST_RULES("pass port 80,443,8000-8999", "pass port 0", "pass port 65535", "block");

    expect(CHECK(q, .dest = "192.0.2.1", .port = 80), PASS, 1);
    expect(CHECK(q, .dest = "192.0.2.1", .port = 443), PASS, 1);
    expect(CHECK(q, .dest = "192.0.2.1", .port = 8000), PASS, 1);
    expect(CHECK(q, .dest = "192.0.2.1", .port = 8999), PASS, 1);
    expect(CHECK(q, .dest = "192.0.2.1", .port = 7999), BLOCK, 4);
    expect(CHECK(q, .dest = "192.0.2.1", .port = 9000), BLOCK, 4);
    expect(CHECK(q, .dest = "192.0.2.1", .port = 79), BLOCK, 4);
    expect(CHECK(q, .dest = "192.0.2.1", .port = 81), BLOCK, 4);
    expect(CHECK(q, .dest = "192.0.2.1", .port = 0), PASS, 2);
    expect(CHECK(q, .dest = "192.0.2.1", .port = 65535), PASS, 3);
    expect(CHECK(q, .dest = "192.0.2.1", .port = 65534), BLOCK, 4);
    /* The port is known with a name too: no address needed. */
    expect(CHECK(q, .name = "a.example", .port = 443), PASS, 1);
    acl_rules_free(q);

    q = REQUEST_RULES("pass port 0-65535");
    expect(CHECK(q, .dest = "192.0.2.1", .port = 0), PASS, 1);
    expect(CHECK(q, .dest = "192.0.2.1", .port = 65535), PASS, 1);
    acl_rules_free(q);
}
END_TEST

START_TEST(test_request_to_cidr_matches_and_sets_explicit_dest)
{
    struct acl_rules *q = REQUEST_RULES("pass to 10.0.0.0/8,2001:db8::/32", "pass");
    struct acl_result r;

    r = CHECK(q, .dest = "10.1.2.3", .port = 1);
    expect(r, PASS, 1);
    ck_assert(r.explicit_dest);
    r = CHECK(q, .dest = "2001:db8::80", .port = 1);
    expect(r, PASS, 1);
    ck_assert(r.explicit_dest);
    /* A resolved name is checked on its address too. */
    r = CHECK(q, .name = "intranet.example", .dest = "10.9.9.9", .port = 1);
    expect(r, PASS, 1);
    ck_assert(r.explicit_dest);
    /* Not in the ranges: the plain pass has no explicit destination. */
    r = CHECK(q, .dest = "11.0.0.1", .port = 1);
    expect(r, PASS, 2);
    ck_assert(!r.explicit_dest);
    acl_rules_free(q);
}
END_TEST

/* The range that matched is reported (policy.c judges whether it opens a private address). */
START_TEST(test_request_reports_the_matching_range_and_the_private_flag)
{
    struct acl_rules *q = REQUEST_RULES("pass to 10.0.0.0/8,10.1.0.0/16 private", "pass");
    struct acl_result r;

    r = CHECK(q, .dest = "10.1.2.3", .port = 1);
    expect(r, PASS, 1);
    ck_assert_ptr_nonnull(r.dest_range);
    ck_assert_uint_eq(r.dest_range->prefix, 8); /* the first range of the list that holds it */
    ck_assert(r.private_ok);
    r = CHECK(q, .dest = "11.0.0.1", .port = 1);
    expect(r, PASS, 2);
    ck_assert_ptr_null(r.dest_range);
    ck_assert(!r.private_ok);
    acl_rules_free(q);
}
END_TEST

START_TEST(test_request_name_match_is_not_an_explicit_dest)
{
    struct acl_rules *q = REQUEST_RULES("pass to intranet.example");
    struct acl_result r;

    r = CHECK(q, .name = "intranet.example", .dest = "10.0.0.1", .port = 80);
    expect(r, PASS, 1);
    ck_assert(!r.explicit_dest);
    r = CHECK(q, .name = "intranet.example", .port = 80);
    expect(r, PASS, 1);
    ck_assert(!r.explicit_dest);
    acl_rules_free(q);
}
END_TEST

START_TEST(test_request_exact_name_ignores_case_and_trailing_dot)
{
    struct acl_rules *q = REQUEST_RULES("pass to Example.COM.", "block");

    expect(CHECK(q, .name = "example.com", .port = 1), PASS, 1);
    expect(CHECK(q, .name = "EXAMPLE.com", .port = 1), PASS, 1);
    expect(CHECK(q, .name = "example.com.", .port = 1), PASS, 1);
    expect(CHECK(q, .name = "www.example.com", .port = 1), BLOCK, 2);
    expect(CHECK(q, .name = "example.co", .port = 1), BLOCK, 2);
    expect(CHECK(q, .name = "example.com..", .port = 1), BLOCK, 2);
    expect(CHECK(q, .name = "xexample.com", .port = 1), BLOCK, 2);
    expect(CHECK(q, .name = "", .port = 1), BLOCK, 2);
    expect(CHECK(q, .name = ".", .port = 1), BLOCK, 2);
    acl_rules_free(q);
}
END_TEST

START_TEST(test_request_domain_matches_itself_and_names_under_it_not_lookalikes)
{
    struct acl_rules *q = REQUEST_RULES("pass to .example.com", "block");

    expect(CHECK(q, .name = "example.com", .port = 1), PASS, 1);
    expect(CHECK(q, .name = "a.example.com", .port = 1), PASS, 1);
    expect(CHECK(q, .name = "a.b.example.com", .port = 1), PASS, 1);
    expect(CHECK(q, .name = "A.B.Example.Com.", .port = 1), PASS, 1);
    expect(CHECK(q, .name = "badexample.com", .port = 1), BLOCK, 2);
    expect(CHECK(q, .name = "example.com.evil", .port = 1), BLOCK, 2);
    expect(CHECK(q, .name = "example.org", .port = 1), BLOCK, 2);
    expect(CHECK(q, .name = "com", .port = 1), BLOCK, 2);
    expect(CHECK(q, .name = "xample.com", .port = 1), BLOCK, 2);
    acl_rules_free(q);
}
END_TEST

START_TEST(test_request_host_name_never_matches_an_ip_literal)
{
    struct acl_rules *q = REQUEST_RULES("pass to .example.com,localhost");

    /* An IP-literal destination: the name entries do not match and there is no range. */
    expect(CHECK(q, .dest = "127.0.0.1", .port = 1), BLOCK, 0);
    expect(CHECK(q, .dest = "::1", .port = 1), BLOCK, 0);
    expect(CHECK(q, .name = "localhost", .port = 1), PASS, 1);
    acl_rules_free(q);
}
END_TEST

/* --- request rules: the name phase and the address phase ---------------------------------- */

START_TEST(test_cidr_rule_before_name_rule_needs_the_address)
{
    struct acl_rules *q = REQUEST_RULES("block to 10.0.0.0/8", "pass to .example.com");
    struct acl_result r;

    r = CHECK(q, .name = "www.example.com", .port = 443);
    expect(r, NEED, 1);
    /* Then every resolved address is checked with the name. */
    expect(CHECK(q, .name = "www.example.com", .dest = "10.0.0.5", .port = 443), BLOCK, 1);
    expect(CHECK(q, .name = "www.example.com", .dest = "192.0.2.5", .port = 443), PASS, 2);
    expect(CHECK(q, .name = "other.example", .dest = "192.0.2.5", .port = 443), BLOCK, 0);
    acl_rules_free(q);
}
END_TEST

START_TEST(test_name_rule_decides_before_any_cidr_rule)
{
    struct acl_rules *q =
        REQUEST_RULES("block to .ads.example", "pass to .example", "block to 10.0.0.0/8", "pass");

    /* No resolution for a blocked name. */
    expect(CHECK(q, .name = "x.ads.example", .port = 80), BLOCK, 1);
    expect(CHECK(q, .name = "www.example", .port = 80), PASS, 2);
    /* A name the name rules do not decide reaches the range rule. */
    expect(CHECK(q, .name = "www.other", .port = 80), NEED, 3);
    expect(CHECK(q, .name = "www.other", .dest = "10.1.1.1", .port = 80), BLOCK, 3);
    expect(CHECK(q, .name = "www.other", .dest = "192.0.2.1", .port = 80), PASS, 4);
    acl_rules_free(q);
}
END_TEST

START_TEST(test_mixed_to_list_name_entry_decides_without_the_address)
{
    struct acl_rules *q = REQUEST_RULES("block to 10.0.0.0/8,.corp.example", "pass");

    expect(CHECK(q, .name = "db.corp.example", .port = 5432), BLOCK, 1);
    expect(CHECK(q, .name = "www.example", .port = 80), NEED, 1);
    expect(CHECK(q, .name = "www.example", .dest = "10.0.0.1", .port = 80), BLOCK, 1);
    expect(CHECK(q, .name = "www.example", .dest = "192.0.2.1", .port = 80), PASS, 2);
    acl_rules_free(q);
}
END_TEST

START_TEST(test_known_mismatch_skips_a_rule_that_needs_the_address)
{
    struct acl_rules *q = REQUEST_RULES(
        "block from 10.0.0.0/8 to 192.168.0.0/16", "block user bob to 172.16.0.0/12",
        "block command bind to 100.64.0.0/10", "block port 25 to 198.18.0.0/15", "pass");

    /* Each rule fails on a condition known without the address: no resolution needed. */
    expect(CHECK(q, .client = "192.0.2.1", .user = "alice", .name = "a.example", .port = 80), PASS,
           5);
    /* The same request from 10/8 must wait for the address. */
    expect(CHECK(q, .client = "10.0.0.1", .user = "alice", .name = "a.example", .port = 80), NEED,
           1);
    expect(CHECK(q, .client = "192.0.2.1", .user = "bob", .name = "a.example", .port = 80), NEED,
           2);
    expect(CHECK(q, .client = "192.0.2.1", .name = "a.example", .port = 25), NEED, 4);
    acl_rules_free(q);
}
END_TEST

START_TEST(test_unknown_destination_needs_address_for_to_and_port_rules)
{
    struct acl_rules *to = REQUEST_RULES("block to 10.0.0.0/8", "pass");
    struct acl_rules *names = REQUEST_RULES("pass to .example.com", "block");
    struct acl_rules *port = REQUEST_RULES("pass command udp port 53", "block");
    struct acl_rules *plain = REQUEST_RULES("pass command udp", "block");

    /* UDP ASSOCIATE at request time: no name and no address. */
    expect(CHECK(to, .command = ACL_CMD_UDP), NEED, 1);
    expect(CHECK(names, .command = ACL_CMD_UDP), NEED, 1);
    expect(CHECK(port, .command = ACL_CMD_UDP), NEED, 1);
    expect(CHECK(plain, .command = ACL_CMD_UDP), PASS, 1);
    /* Per datagram the destination is known. */
    expect(CHECK(port, .command = ACL_CMD_UDP, .dest = "192.0.2.53", .port = 53), PASS, 1);
    expect(CHECK(port, .command = ACL_CMD_UDP, .dest = "192.0.2.53", .port = 54), BLOCK, 2);
    expect(CHECK(names, .command = ACL_CMD_UDP, .name = "ntp.example.com", .port = 123), PASS, 1);
    acl_rules_free(to);
    acl_rules_free(names);
    acl_rules_free(port);
    acl_rules_free(plain);
}
END_TEST

START_TEST(test_need_address_result_has_no_log_and_no_explicit_dest)
{
    struct acl_rules *q = REQUEST_RULES("pass to 10.0.0.0/8 log");
    struct acl_result r = CHECK(q, .name = "a.example", .port = 1);

    expect(r, NEED, 1);
    ck_assert(!r.log);
    ck_assert(!r.explicit_dest);
    acl_rules_free(q);
}
END_TEST

/* --- IPv4-mapped IPv6 --------------------------------------------------------------------- */

START_TEST(test_mapped_client_matches_ipv4_range)
{
    struct acl_rules *c = CLIENT_RULES("pass from 192.0.2.0/24");
    struct acl_rules *q = REQUEST_RULES("pass from 192.0.2.0/24");

    expect(client_check(c, "::ffff:192.0.2.9", "[::]:1080"), PASS, 1);
    expect(client_check(c, "::ffff:192.0.3.9", "[::]:1080"), BLOCK, 0);
    /* IPv4-compatible and NAT64 forms are IPv6 addresses, not the IPv4 one. */
    expect(client_check(c, "::192.0.2.9", "[::]:1080"), BLOCK, 0);
    expect(client_check(c, "64:ff9b::192.0.2.9", "[::]:1080"), BLOCK, 0);
    expect(CHECK(q, .client = "::ffff:192.0.2.200", .name = "a.b", .port = 1), PASS, 1);
    acl_rules_free(c);
    acl_rules_free(q);
}
END_TEST

START_TEST(test_ipv4_address_matches_mapped_range)
{
    struct acl_rules *c = CLIENT_RULES("pass from ::ffff:192.0.2.0/120");
    struct acl_rules *all = CLIENT_RULES("pass from ::ffff:0.0.0.0/96");

    expect(client_check(c, "192.0.2.77", "127.0.0.1:1"), PASS, 1);
    expect(client_check(c, "::ffff:192.0.2.77", "127.0.0.1:1"), PASS, 1);
    expect(client_check(c, "192.0.3.77", "127.0.0.1:1"), BLOCK, 0);
    expect(client_check(all, "8.8.8.8", "127.0.0.1:1"), PASS, 1);
    expect(client_check(all, "2001:db8::1", "127.0.0.1:1"), BLOCK, 0);
    acl_rules_free(c);
    acl_rules_free(all);
}
END_TEST

START_TEST(test_mapped_destination_matches_ipv4_range)
{
    struct acl_rules *q = REQUEST_RULES("block to 127.0.0.0/8,10.0.0.0/8", "pass");
    struct acl_result r;

    r = CHECK(q, .dest = "::ffff:127.0.0.1", .port = 80);
    expect(r, BLOCK, 1);
    ck_assert(r.explicit_dest);
    expect(CHECK(q, .name = "x.example", .dest = "::ffff:10.2.3.4", .port = 80), BLOCK, 1);
    expect(CHECK(q, .dest = "::ffff:11.2.3.4", .port = 80), PASS, 2);
    acl_rules_free(q);
}
END_TEST

START_TEST(test_ipv6_ranges_do_not_contain_ipv4_addresses)
{
    struct acl_rules *c = CLIENT_RULES("pass from ::/0");

    expect(client_check(c, "2001:db8::1", "[::]:1"), PASS, 1);
    expect(client_check(c, "::1", "[::]:1"), PASS, 1);
    expect(client_check(c, "192.0.2.1", "[::]:1"), BLOCK, 0);
    expect(client_check(c, "::ffff:192.0.2.1", "[::]:1"), BLOCK, 0);
    acl_rules_free(c);

    /* And an IPv4 range contains no real IPv6 address. */
    c = CLIENT_RULES("pass from 0.0.0.0/0");
    expect(client_check(c, "198.51.100.1", "[::]:1"), PASS, 1);
    expect(client_check(c, "::ffff:198.51.100.1", "[::]:1"), PASS, 1);
    expect(client_check(c, "2001:db8::1", "[::]:1"), BLOCK, 0);
    expect(client_check(c, "::", "[::]:1"), BLOCK, 0);
    acl_rules_free(c);
}
END_TEST

/* --- parse errors ------------------------------------------------------------------------- */

START_TEST(test_parse_error_messages)
{
    rule_err(false, "pass to", "request: 'to' needs a value");
    rule_err(false, "pass to port 80", "request: 'to' needs a value");
    rule_err(true, "block from", "client: 'from' needs a value");
    rule_err(true, "pass listener log", "client: 'listener' needs a value");
    rule_err(false, "pass to 10.0.0.0/33",
             "request: '10.0.0.0/33' is not an address range or host name");
    rule_err(false, "pass to 2001:db8::/129",
             "request: '2001:db8::/129' is not an address range or host name");
    rule_err(false, "pass to 10.0.0.256",
             "request: '10.0.0.256' is not an address range or host name");
    rule_err(true, "pass user alice", "client: unknown condition 'user' (from, listener, log)");
    rule_err(false, "pass listener 127.0.0.1",
             "request: unknown condition 'listener' (from, user, command, to, port, log, private, "
             "sessions, bandwidth)");
    rule_err(false, "pass from 10.0.0.0/8 dest 1.2.3.4",
             "request: unknown condition 'dest' (from, user, command, to, port, log, private, "
             "sessions, bandwidth)");
    rule_err(false, "pass port 80 port 443", "request: duplicate condition 'port'");
    rule_err(false, "pass log log", "request: duplicate condition 'log'");
    rule_err(true, "pass from any from 10.0.0.0/8", "client: duplicate condition 'from'");
    rule_err(false, "allow", "request: first word must be pass or block");
    rule_err(true, "from 10.0.0.0/8 pass", "client: first word must be pass or block");
    rule_err(false, "PASS", "request: first word must be pass or block");
    rule_err(true, "pass from example.com", "client: 'example.com' is not an address range");
    rule_err(false, "pass from 10.0.0.0/8,10.0.0.0/40",
             "request: '10.0.0.0/40' is not an address range");
    rule_err(true, "pass listener 1.2.3.4:99999",
             "client: '1.2.3.4:99999' is not an address (ADDRESS or ADDRESS:PORT)");
    rule_err(true, "pass listener 10.0.0.0/8",
             "client: '10.0.0.0/8' is not an address (ADDRESS or ADDRESS:PORT)");
    rule_err(false, "pass to 10.0.0.0/8,", "request: empty item in '10.0.0.0/8,'");
    rule_err(false, "pass to ,a.example", "request: empty item in ',a.example'");
    rule_err(false, "pass user alice,,bob", "request: empty item in 'alice,,bob'");
    rule_err(false, "pass to any,10.0.0.0/8",
             "request: 'any' must stand alone, not in a list ('any,10.0.0.0/8')");
    rule_err(false, "pass to *.example.com",
             "request: '*.example.com' is not an address range or host name (write "
             "'.example.com' for example.com and every name under it)");
    rule_err(false, "pass port 70000",
             "request: '70000' is not a port or port range (like 443 or 8000-8999)");
    rule_err(false, "pass port 80,https",
             "request: 'https' is not a port or port range (like 443 or 8000-8999)");
    rule_err(false, "pass port 1-2-3",
             "request: '1-2-3' is not a port or port range (like 443 or 8000-8999)");
    rule_err(false, "pass port -80",
             "request: '-80' is not a port or port range (like 443 or 8000-8999)");
    rule_err(false, "pass port 9000-8000",
             "request: port range '9000-8000' runs backwards "
             "(LOW-HIGH)");
    rule_err(false, "pass command connect,get",
             "request: unknown command 'get' (connect, bind, udp, resolve)");
    rule_err(false, "pass command CONNECT",
             "request: unknown command 'CONNECT' (connect, bind, udp, resolve)");
    rule_err(false, "pass to \x1b[31m",
             "request: '\\x1b[31m' is not an address range or host "
             "name");
}
END_TEST

START_TEST(test_missing_action)
{
    struct acl_rules *set = acl_rules_new();

    ck_assert_int_eq(acl_add_rule(set, false, 0, NULL, 1, err, sizeof(err)), -1);
    ck_assert_str_eq(err, "request: missing pass or block");
    ck_assert_int_eq(acl_add_rule(set, true, 0, NULL, 1, err, sizeof(err)), -1);
    ck_assert_str_eq(err, "client: missing pass or block");
    ck_assert_uint_eq(acl_rules_count(set), 0);
    acl_rules_free(set);
}
END_TEST

START_TEST(test_host_name_syntax)
{
    char line[400], label64[65], name254[300];
    struct acl_rules *ok;

    ok =
        REQUEST_RULES("pass to localhost,a-b.example,_sip._tcp.example,xn--bcher-kva.example",
                      "pass to 1.example,example.123a,a.",
                      "pass to .a,63aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    expect(CHECK(ok, .name = "_sip._tcp.example", .port = 1), PASS, 1);
    expect(CHECK(ok, .name = "A", .port = 1), PASS, 2);
    expect(CHECK(ok, .name = "x.a", .port = 1), PASS, 3);
    acl_rules_free(ok);

    rule_err(false, "pass to a..example",
             "request: 'a..example' is not an address range or host "
             "name");
    rule_err(false, "pass to .", "request: '.' is not an address range or host name");
    rule_err(false, "pass to ..example",
             "request: '..example' is not an address range or host "
             "name");
    rule_err(false, "pass to ex@mple.com",
             "request: 'ex@mple.com' is not an address range or "
             "host name");
    rule_err(false, "pass to 1.2.3.4.5",
             "request: '1.2.3.4.5' is not an address range or host "
             "name");
    memset(label64, 'a', 64);
    label64[64] = '\0';
    snprintf(line, sizeof(line), "pass to %s.example", label64);
    {
        struct acl_rules *set = acl_rules_new();
        ck_assert_int_eq(add_line(set, false, line, 1), -1);
        ck_assert_ptr_nonnull(strstr(err, "is not an address range or host name"));
        label64[63] = '\0';
        snprintf(line, sizeof(line), "pass to %s.example", label64);
        ck_assert_msg(add_line(set, false, line, 1) == 0, "%s", err);
        /* 254 bytes is one too many; 253 fits. */
        memset(name254, 'a', 254);
        for (size_t i = 50; i < 254; i += 50)
            name254[i] = '.';
        name254[254] = '\0';
        snprintf(line, sizeof(line), "pass to %s", name254);
        ck_assert_int_eq(add_line(set, false, line, 1), -1);
        snprintf(line, sizeof(line), "pass to %s.", name254 + 1);
        ck_assert_msg(add_line(set, false, line, 1) == 0, "%s", err);
        acl_rules_free(set);
    }
}
END_TEST

START_TEST(test_long_user_name_is_refused)
{
    char line[700], name[300];
    struct acl_rules *set = acl_rules_new();

    memset(name, 'u', 256);
    name[256] = '\0';
    snprintf(line, sizeof(line), "pass user %s", name);
    ck_assert_int_eq(add_line(set, false, line, 1), -1);
    ck_assert_ptr_nonnull(strstr(err, "request: user name 'uuu"));
    ck_assert_ptr_nonnull(strstr(err, "...' is too long (at most 255 bytes)"));
    name[255] = '\0';
    snprintf(line, sizeof(line), "pass user %s", name);
    ck_assert_msg(add_line(set, false, line, 1) == 0, "%s", err);
    ck_assert_uint_eq(acl_rules_count(set), 1);
    acl_rules_free(set);
}
END_TEST

START_TEST(test_error_without_room_and_null_set)
{
    char *argv[] = {"pass"};
    char small[8];

    ck_assert_int_eq(acl_add_rule(NULL, false, 1, argv, 1, small, sizeof(small)), -1);
    ck_assert_str_eq(small, "request");
    ck_assert_int_eq(acl_add_rule(NULL, false, 1, argv, 1, NULL, 0), -1);
}
END_TEST

START_TEST(test_many_rules_keep_their_numbers)
{
    struct acl_rules *set = acl_rules_new();
    char line[64];

    for (unsigned i = 1; i <= 100; i++) {
        snprintf(line, sizeof(line), "block port %u", i);
        ck_assert_int_eq(add_line(set, false, line, 10 * i), 0);
    }
    ck_assert_uint_eq(acl_rules_count(set), 100);
    expect(CHECK(set, .dest = "192.0.2.1", .port = 73), BLOCK, 73);
    expect(CHECK(set, .dest = "192.0.2.1", .port = 100), BLOCK, 100);
    expect(CHECK(set, .dest = "192.0.2.1", .port = 101), BLOCK, 0);
    acl_rules_free(set);
}
END_TEST

START_TEST(test_pass_rule_limits_are_carried_by_the_result)
{
    struct acl_rules *set = REQUEST_RULES("pass user alice sessions 2 bandwidth 64K",
                                          "pass port 80 bandwidth 1M", "pass");
    struct acl_result r;

    r = CHECK(set, .user = "alice", .dest = "198.51.100.1", .port = 443);
    expect(r, PASS, 1);
    ck_assert_uint_eq(r.max_sessions, 2);
    ck_assert_uint_eq(r.bandwidth, 65536);
    r = CHECK(set, .dest = "198.51.100.1", .port = 80);
    expect(r, PASS, 2);
    ck_assert_uint_eq(r.max_sessions, 0);
    ck_assert_uint_eq(r.bandwidth, 1 << 20);
    r = CHECK(set, .dest = "198.51.100.1", .port = 81);
    expect(r, PASS, 3);
    ck_assert_uint_eq(r.max_sessions, 0);
    ck_assert_uint_eq(r.bandwidth, 0);
    acl_rules_free(set);
}
END_TEST

START_TEST(test_rule_limit_errors)
{
    rule_err(false, "block sessions 2", "request: 'sessions' is a limit for a pass rule");
    rule_err(false, "block bandwidth 1M", "request: 'bandwidth' is a limit for a pass rule");
    rule_err(false, "pass sessions 0", "request: sessions: '0' is not a number from 1 to 1000000");
    rule_err(false, "pass sessions 2x",
             "request: sessions: '2x' is not a number from 1 to 1000000");
    rule_err(false, "pass sessions 1000001",
             "request: sessions: '1000001' is not a number from 1 to 1000000");
    rule_err(false, "pass bandwidth 100",
             "request: bandwidth: '100' is below 1K (bytes per "
             "second)");
    rule_err(false, "pass bandwidth fast",
             "request: bandwidth: 'fast' is not a byte count (like 512K, 10M, 1G)");
    rule_err(false, "pass bandwidth 2000T", "request: bandwidth: '2000T' is too large");
    rule_err(false, "pass sessions", "request: 'sessions' needs a value");
    rule_err(true, "pass sessions 2", "client: unknown condition 'sessions' (from, listener, log)");
}
END_TEST

static Suite *acl_suite(void)
{
    Suite *s = suite_create("acl");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_null_and_empty_sets_pass_without_a_rule);
    tcase_add_test(tc, test_set_with_rules_ends_with_implicit_block);
    tcase_add_test(tc, test_first_match_decides);
    tcase_add_test(tc, test_rule_without_conditions_matches_everything);
    tcase_add_test(tc, test_any_stands_for_an_absent_condition);
    tcase_add_test(tc, test_log_flag_and_line_are_reported);
    tcase_add_test(tc, test_client_from_matches_listed_ranges_only);
    tcase_add_test(tc, test_client_listener_with_and_without_port);
    tcase_add_test(tc, test_client_from_and_listener_must_both_match);
    tcase_add_test(tc, test_request_from);
    tcase_add_test(tc, test_request_user_list_is_exact_and_needs_authentication);
    tcase_add_test(tc, test_request_commands);
    tcase_add_test(tc, test_request_port_single_list_and_range_edges);
    tcase_add_test(tc, test_request_to_cidr_matches_and_sets_explicit_dest);
    tcase_add_test(tc, test_request_name_match_is_not_an_explicit_dest);
    tcase_add_test(tc, test_request_reports_the_matching_range_and_the_private_flag);
    tcase_add_test(tc, test_request_exact_name_ignores_case_and_trailing_dot);
    tcase_add_test(tc, test_pass_rule_limits_are_carried_by_the_result);
    tcase_add_test(tc, test_rule_limit_errors);
    tcase_add_test(tc, test_request_domain_matches_itself_and_names_under_it_not_lookalikes);
    tcase_add_test(tc, test_request_host_name_never_matches_an_ip_literal);
    tcase_add_test(tc, test_cidr_rule_before_name_rule_needs_the_address);
    tcase_add_test(tc, test_name_rule_decides_before_any_cidr_rule);
    tcase_add_test(tc, test_mixed_to_list_name_entry_decides_without_the_address);
    tcase_add_test(tc, test_known_mismatch_skips_a_rule_that_needs_the_address);
    tcase_add_test(tc, test_unknown_destination_needs_address_for_to_and_port_rules);
    tcase_add_test(tc, test_need_address_result_has_no_log_and_no_explicit_dest);
    tcase_add_test(tc, test_mapped_client_matches_ipv4_range);
    tcase_add_test(tc, test_ipv4_address_matches_mapped_range);
    tcase_add_test(tc, test_mapped_destination_matches_ipv4_range);
    tcase_add_test(tc, test_ipv6_ranges_do_not_contain_ipv4_addresses);
    tcase_add_test(tc, test_parse_error_messages);
    tcase_add_test(tc, test_missing_action);
    tcase_add_test(tc, test_host_name_syntax);
    tcase_add_test(tc, test_long_user_name_is_refused);
    tcase_add_test(tc, test_error_without_room_and_null_set);
    tcase_add_test(tc, test_many_rules_keep_their_numbers);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(acl_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
