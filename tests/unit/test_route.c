/* Unit tests for parents and routes (route.c) through the configuration parser. */
#include "config.h"

#include <check.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ferry/conf.h"
#include "ferry/route.h"

static char err[512];

static void parse_ok(struct config *c, const char *text)
{
    int r = conf_parse(c, text, "t.conf", err, sizeof(err));

    ck_assert_msg(r == 0, "unexpected error: %s", err);
}

static void parse_err(const char *text, const char *want)
{
    struct config c;
    int r = conf_parse(&c, text, "t.conf", err, sizeof(err));

    ck_assert_int_eq(r, -1);
    ck_assert_str_eq(err, want);
    ck_assert_ptr_null(c.routes);
    conf_release(&c);
}

static struct addr ip(const char *text)
{
    struct addr a;

    ck_assert_msg(addr_parse(text, 0, &a) == 0, "bad test address %s", text);
    return a;
}

/* The route a request would take: its number, 0 direct, -1 needs the address. */
static int match(const struct config *c, const char *user, unsigned command, const char *name,
                 const char *dest, uint16_t port)
{
    struct addr client = ip("192.0.2.7"), d;
    struct acl_request req = {
        .client = &client,
        .user = user,
        .command = command,
        .name = name,
        .port = port,
    };

    if (dest != NULL) {
        d = ip(dest);
        req.dest = &d;
    }
    return routes_match(c->routes, &req);
}

START_TEST(test_no_routes_leaves_routes_null)
{
    struct config c;

    parse_ok(&c, "listen 127.0.0.1:1080\n");
    ck_assert_ptr_null(c.routes);
    ck_assert_int_eq(match(&c, NULL, ACL_CMD_CONNECT, "example.com", NULL, 80), 0);
    conf_release(&c);
}
END_TEST

START_TEST(test_parents_of_every_kind_and_address_form)
{
    struct config c;
    const struct routes *r;

    parse_ok(&c, "parent tor socks5 127.0.0.1:9050\n"
                 "parent v6 socks4a [2001:db8::1]:1080 user-id ferry timeout 2s retry 1m\n"
                 "parent corp http proxy.corp.example:3128\n"
                 "route via tor\n");
    r = c.routes;
    ck_assert_uint_eq(r->nparents, 3);
    ck_assert_str_eq(r->parents[0].name, "tor");
    ck_assert_int_eq(r->parents[0].kind, PARENT_SOCKS5);
    ck_assert_int_eq(r->parents[0].addr.type, DEST_IPV4);
    ck_assert_uint_eq(r->parents[0].addr.port, 9050);
    ck_assert(r->parents[0].timeout == PARENT_DEFAULT_TIMEOUT);
    ck_assert(r->parents[0].retry == PARENT_DEFAULT_RETRY);
    ck_assert_ptr_null(r->parents[0].user);
    ck_assert_int_eq(r->parents[1].kind, PARENT_SOCKS4A);
    ck_assert_int_eq(r->parents[1].addr.type, DEST_IPV6);
    ck_assert_uint_eq(r->parents[1].addr.ip[0], 0x20);
    ck_assert_str_eq(r->parents[1].user, "ferry");
    ck_assert(r->parents[1].timeout == 2.0);
    ck_assert(r->parents[1].retry == 60.0);
    ck_assert_int_eq(r->parents[2].kind, PARENT_HTTP);
    ck_assert_int_eq(r->parents[2].addr.type, DEST_NAME);
    ck_assert_str_eq(r->parents[2].addr.name, "proxy.corp.example");
    ck_assert_uint_eq(r->parents[2].line, 3);
    conf_release(&c);
}
END_TEST

START_TEST(test_paths_chains_and_alternatives)
{
    struct config c;
    const struct route *rt;

    parse_ok(&c, "route to .onion via tor\n"
                 "route port 443 via eu>tor,corp,direct resolve local\n"
                 "parent tor socks5 127.0.0.1:9050\n" /* parents may follow their routes */
                 "parent eu socks5 192.0.2.1:1080\n"
                 "parent corp http 192.0.2.2:3128\n");
    ck_assert_uint_eq(c.routes->nroutes, 2);
    rt = routes_get(c.routes, 1);
    ck_assert_uint_eq(rt->npaths, 1);
    ck_assert_uint_eq(rt->paths[0].nhops, 1);
    ck_assert_uint_eq(rt->paths[0].hops[0], 0);
    ck_assert(!rt->resolve_local);
    ck_assert(!rt->has_direct);
    rt = routes_get(c.routes, 2);
    ck_assert_uint_eq(rt->line, 2);
    ck_assert_uint_eq(rt->npaths, 3);
    ck_assert_str_eq(rt->paths[0].text, "eu>tor");
    ck_assert_uint_eq(rt->paths[0].nhops, 2);
    ck_assert_uint_eq(rt->paths[0].hops[0], 1);
    ck_assert_uint_eq(rt->paths[0].hops[1], 0);
    ck_assert_str_eq(rt->paths[1].text, "corp");
    ck_assert_uint_eq(rt->paths[1].hops[0], 2);
    ck_assert_str_eq(rt->paths[2].text, "direct");
    ck_assert_uint_eq(rt->paths[2].nhops, 0);
    ck_assert(rt->has_direct);
    ck_assert(rt->resolve_local);
    ck_assert_ptr_null(routes_get(c.routes, 3));
    ck_assert_ptr_null(routes_get(c.routes, 0));
    conf_release(&c);
}
END_TEST

START_TEST(test_route_matching_uses_the_request_rule_matchers)
{
    struct config c;

    parse_ok(&c, "parent a socks5 127.0.0.1:1\n"
                 "parent b socks5 127.0.0.1:2\n"
                 "route user alice via a\n"
                 "route to .example.com via b\n"
                 "route command udp via a\n"
                 "route to 10.0.0.0/8 port 22 via b\n"
                 "route from 192.0.2.0/24 via direct\n");
    ck_assert_int_eq(match(&c, "alice", ACL_CMD_CONNECT, "x.org", NULL, 80), 1);
    ck_assert_int_eq(match(&c, "bob", ACL_CMD_CONNECT, "www.example.com", NULL, 80), 2);
    ck_assert_int_eq(match(&c, "bob", ACL_CMD_CONNECT, "example.com", NULL, 80), 2);
    /* Without a destination (UDP ASSOCIATE), routes naming one are passed over. */
    ck_assert_int_eq(match(&c, NULL, ACL_CMD_UDP, NULL, NULL, 0), 3);
    ck_assert_int_eq(match(&c, "alice", ACL_CMD_UDP, NULL, NULL, 0), 1);
    /* A name reaches a route that can only judge addresses: resolve, then ask again. */
    ck_assert_int_eq(match(&c, NULL, ACL_CMD_CONNECT, "x.org", NULL, 22), -1);
    ck_assert_int_eq(match(&c, NULL, ACL_CMD_CONNECT, NULL, "10.1.2.3", 22), 4);
    ck_assert_int_eq(match(&c, NULL, ACL_CMD_CONNECT, NULL, "10.1.2.3", 23), 5);
    conf_release(&c);
}
END_TEST

START_TEST(test_no_route_matching_means_direct)
{
    struct config c;

    parse_ok(&c, "parent a socks5 127.0.0.1:1\nroute user alice via a\n");
    ck_assert_int_eq(match(&c, "bob", ACL_CMD_CONNECT, "x.org", NULL, 80), 0);
    ck_assert_int_eq(match(&c, NULL, ACL_CMD_CONNECT, NULL, "192.0.2.1", 80), 0);
    conf_release(&c);
}
END_TEST

START_TEST(test_parent_errors_name_file_and_line)
{
    parse_err("parent a\n", "t.conf:1: parent: expected NAME socks5|socks4a|http HOST:PORT");
    parse_err("parent a socks6 1.2.3.4:1\n",
              "t.conf:1: parent a: kind 'socks6' is not socks5, socks4a, http or ferry");
    parse_err("parent a socks5 1.2.3.4\n", "t.conf:1: parent a: '1.2.3.4' has no port (HOST:PORT)");
    parse_err("parent a socks5 1.2.3.4:0\n",
              "t.conf:1: parent a: '1.2.3.4:0': port must be 1..65535");
    parse_err("parent a socks5 ::1:1080\n",
              "t.conf:1: parent a: '::1:1080': write an IPv6 address as [ADDRESS]:PORT");
    parse_err("parent a socks5 [::1:1080\n", "t.conf:1: parent a: '[::1:1080' is not [IPv6]:PORT");
    parse_err("parent a socks5 bad_host!:1\n",
              "t.conf:1: parent a: 'bad_host!' is not a host name or address");
    parse_err("parent direct socks5 1.2.3.4:1\n",
              "t.conf:1: parent: 'direct' is not a name (1..32 of letters, digits, '.', '_', '-'; "
              "not 'direct')");
    parse_err("parent a socks5 1.2.3.4:1\nparent a http 1.2.3.4:2\n",
              "t.conf:2: parent: 'a' is already defined on line 1");
    parse_err("parent a socks4a 1.2.3.4:1 credentials x\n",
              "t.conf:1: parent a: SOCKS4a has no passwords; give 'user-id ID' instead");
    parse_err("parent a socks5 1.2.3.4:1 user-id x\n",
              "t.conf:1: parent a: 'user-id' is for SOCKS4a parents; use 'credentials'");
    parse_err("parent a socks5 1.2.3.4:1 timeout 0\n",
              "t.conf:1: parent a: timeout '0' is not a duration above 0");
    parse_err("parent a socks5 1.2.3.4:1 speed 9\n",
              "t.conf:1: parent a: unknown option 'speed' (credentials, user-id, server-key, key, "
              "cipher, timeout, retry)");
    parse_err("parent a socks5 1.2.3.4:1 timeout\n", "t.conf:1: parent a: 'timeout' needs a value");
}
END_TEST

/* A private key file of this mode holding the key of bytes 1..32; returns its path. */
static const char *ferry_key_file(mode_t mode)
{
    static char path[] = "/tmp/ferry-test-route-key-XXXXXX";
    static const char text[] = "# test key\nAQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=\n";
    int fd;

    strcpy(path, "/tmp/ferry-test-route-key-XXXXXX");
    fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, strlen(text)), (int)strlen(text));
    fchmod(fd, mode);
    close(fd);
    return path;
}

START_TEST(test_ferry_parents)
{
    const char *server = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const char *key = ferry_key_file(0600);
    uint8_t priv[32], pub[32], want_server[32];
    char text[512];
    struct config c;

    for (int i = 0; i < 32; i++) {
        priv[i] = (uint8_t)(i + 1);
        want_server[i] = (uint8_t)i;
    }
    crypto_scalarmult_base(pub, priv);
    snprintf(text, sizeof(text),
             "parent home ferry 192.0.2.1:1081 server-key %s key %s timeout 2s\n"
             "parent next socks5 192.0.2.2:1080\n"
             "route via home>next,home\n",
             server, key);
    parse_ok(&c, text);
    ck_assert_int_eq(c.routes->parents[0].kind, PARENT_FERRY);
    ck_assert_str_eq(parent_kind_name(PARENT_FERRY), "ferry");
    ck_assert_mem_eq(c.routes->parents[0].server_key, want_server, 32);
    ck_assert_mem_eq(c.routes->parents[0].key, priv, 32);
    ck_assert_mem_eq(c.routes->parents[0].key_pub, pub, 32);
    ck_assert_int_eq(c.routes->parents[0].suite, TUNNEL_CHACHAPOLY); /* the default */
    conf_release(&c);

    /* cipher: chacha20-poly1305 or aes-256-gcm, the latter only where AES-NI is. */
    snprintf(text, sizeof(text),
             "parent home ferry 192.0.2.1:1081 server-key %s key %s cipher chacha20-poly1305\n",
             server, key);
    parse_ok(&c, text);
    ck_assert_int_eq(c.routes->parents[0].suite, TUNNEL_CHACHAPOLY);
    conf_release(&c);
    snprintf(text, sizeof(text),
             "parent home ferry 192.0.2.1:1081 cipher aes-256-gcm server-key %s key %s\n", server,
             key);
    if (tunnel_suite_available(TUNNEL_AESGCM)) {
        parse_ok(&c, text);
        ck_assert_int_eq(c.routes->parents[0].suite, TUNNEL_AESGCM);
        conf_release(&c);
    } else {
        parse_err(text, "t.conf:1: parent home: cipher aes-256-gcm needs AES instructions "
                        "(AES-NI) this machine lacks; use chacha20-poly1305");
    }
    snprintf(text, sizeof(text),
             "parent home ferry 192.0.2.1:1081 server-key %s key %s cipher aes-128-cbc\n", server,
             key);
    parse_err(text, "t.conf:1: parent home: cipher 'aes-128-cbc' is not chacha20-poly1305 or "
                    "aes-256-gcm");
    parse_err("parent a socks5 192.0.2.1:1 cipher aes-256-gcm\n",
              "t.conf:1: parent a: 'cipher' is for ferry parents");
    snprintf(text, sizeof(text), "parent home ferry 192.0.2.1:1081 server-key %s key %s cipher\n",
             server, key);
    parse_err(text, "t.conf:1: parent home: 'cipher' needs a value");

    snprintf(text, sizeof(text), "parent home ferry 192.0.2.1:1081 key %s\n", key);
    parse_err(text,
              "t.conf:1: parent home: a ferry parent needs 'server-key BASE64' and 'key PATH'");
    parse_err("parent home ferry 192.0.2.1:1081 server-key abc\n",
              "t.conf:1: parent home: server-key 'abc' is not a key (44 characters of base64, as "
              "ferry-keygen prints)");
    snprintf(text, sizeof(text), "parent a socks5 192.0.2.1:1 server-key %s\n", server);
    parse_err(text, "t.conf:1: parent a: 'server-key' is for ferry parents");
    snprintf(text, sizeof(text),
             "parent a socks5 192.0.2.1:1\nparent home ferry 192.0.2.1:1081 server-key %s key %s\n"
             "route via a>home\n",
             server, key);
    parse_err(text, "t.conf:3: route: path 'a>home': ferry parent home can only be the first hop");
    unlink(key);
    /* A private key others may read is refused, naming the file. */
    key = ferry_key_file(0644);
    snprintf(text, sizeof(text), "parent home ferry 192.0.2.1:1081 server-key %s key %s\n", server,
             key);
    ck_assert_int_eq(conf_parse(&c, text, "t.conf", err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, key) != NULL && strncmp(err, "t.conf:1: parent home: ", 23) == 0,
                  "%s", err);
    unlink(key);
}
END_TEST

START_TEST(test_route_errors_name_file_and_line)
{
    parse_err("\nroute via nowhere\n", "t.conf:2: route: no parent named 'nowhere'");
    parse_err("route to x.org\n",
              "t.conf:1: route: missing 'via PATH[,PATH...]' (PATH: direct or P1>P2...)");
    parse_err("route log via direct\n",
              "t.conf:1: route: 'log' is not a condition (from, user, command, to, port) or 'via'");
    parse_err("route to via direct\n", "t.conf:1: route: 'to' needs a value");
    parse_err("route via direct resolve later\n",
              "t.conf:1: route: unexpected 'resolve' after the paths (resolve local|remote)");
    parse_err("parent a socks5 1.2.3.4:1\nroute via a>a\n",
              "t.conf:2: route: path 'a>a' passes parent a twice");
    parse_err("route via a,,b\n", "t.conf:1: route: empty path in 'a,,b'");
    parse_err("route via a>b>c>d>e>f>g>h>i\n",
              "t.conf:1: route: path 'a>b>c>d>e>f>g>h>i' has more than 8 hops");
    parse_err("route port 99999 via direct\n",
              "t.conf:1: route: '99999' is not a port or port range (like 443 or 8000-8999)");
}
END_TEST

static char *write_file(const char *text, mode_t mode)
{
    char *path = strdup("/tmp/ferry-test-cred-XXXXXX");
    int fd = mkstemp(path);

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    ck_assert_int_eq(fchmod(fd, mode), 0);
    close(fd);
    return path;
}

START_TEST(test_credentials_file)
{
    char *ok = write_file("alice:s3cret:with:colons\n", 0600);
    char *open_file = write_file("alice:pw\n", 0644);
    char *bad = write_file("no colon here\n", 0600);
    char text[512], want[512];
    struct config c;

    snprintf(text, sizeof(text), "parent a socks5 127.0.0.1:1 credentials %s\n", ok);
    parse_ok(&c, text);
    ck_assert_str_eq(c.routes->parents[0].user, "alice");
    ck_assert_str_eq(c.routes->parents[0].pass, "s3cret:with:colons");
    conf_release(&c);

    /* As OpenSSH with a private key: others may not read it. */
    snprintf(text, sizeof(text), "parent a http 127.0.0.1:1 credentials %s\n", open_file);
    snprintf(want, sizeof(want),
             "t.conf:1: credentials %s: group or others may access it (mode 0644): run chmod 600 "
             "on it",
             open_file);
    parse_err(text, want);

    snprintf(text, sizeof(text), "parent a socks5 127.0.0.1:1 credentials %s\n", bad);
    snprintf(want, sizeof(want),
             "t.conf:1: credentials %s: the first line must be USER:PASSWORD (each 1..255 bytes)",
             bad);
    parse_err(text, want);

    parse_err("parent a socks5 127.0.0.1:1 credentials /nonexistent/cred\n",
              "t.conf:1: credentials /nonexistent/cred: No such file or directory");
    unlink(ok);
    unlink(open_file);
    unlink(bad);
    free(ok);
    free(open_file);
    free(bad);
}
END_TEST

START_TEST(test_health_marks_down_and_up)
{
    struct config c;
    const struct routes *r;

    parse_ok(&c, "parent a socks5 127.0.0.1:1 retry 10s\nroute via a\n");
    r = c.routes;
    ck_assert(!routes_parent_down(r, 0, 1000));
    ck_assert(routes_mark_down(r, 0, 1000));
    ck_assert(routes_parent_down(r, 0, 1000));
    ck_assert(routes_parent_down(r, 0, 10999));
    ck_assert(!routes_parent_down(r, 0, 11000));
    /* Marked again while down: no new "marked down" line. */
    ck_assert(!routes_mark_down(r, 0, 5000));
    ck_assert(routes_mark_up(r, 0));
    ck_assert(!routes_mark_up(r, 0));
    ck_assert(!routes_parent_down(r, 0, 1000));
    conf_release(&c);
}
END_TEST

/* A reload keeps a parent that is still the same parent down; any change makes it new. */
START_TEST(test_health_carries_over_a_reload_for_the_same_parent)
{
    struct config old, new;

    parse_ok(&old, "parent a socks5 127.0.0.1:1 retry 60s\nparent b socks5 127.0.0.1:2\n"
                   "parent c socks5 127.0.0.1:3\nparent d http 127.0.0.1:4\nroute via a,b,c,d\n");
    for (unsigned i = 0; i < 4; i++)
        ck_assert(routes_mark_down(old.routes, i, 1000));
    /* a: the same (retry now 10 s: at most 10 s from the reload); b: another port; c: another
     * kind; d: not in the new file; e: new. */
    parse_ok(&new, "parent e socks5 127.0.0.1:5\nparent c socks4a 127.0.0.1:3\n"
                   "parent b socks5 127.0.0.1:22\nparent a socks5 127.0.0.1:1 retry 10s\n"
                   "route via a,b,c,e\n");
    ck_assert_uint_eq(routes_carry_health(new.routes, old.routes, 2000), 1);
    ck_assert(routes_parent_down(new.routes, 3, 11999)); /* a, now index 3 */
    ck_assert(!routes_parent_down(new.routes, 3, 12000));
    for (unsigned i = 0; i < 3; i++)
        ck_assert(!routes_parent_down(new.routes, i, 2000));
    /* Once up again, nothing is carried. */
    ck_assert(routes_mark_up(old.routes, 0));
    ck_assert(routes_mark_up(new.routes, 3));
    ck_assert_uint_eq(routes_carry_health(new.routes, old.routes, 2000), 0);
    ck_assert_uint_eq(routes_carry_health(NULL, old.routes, 2000), 0);
    conf_release(&old);
    conf_release(&new);
}
END_TEST

static Suite *route_suite(void)
{
    Suite *s = suite_create("route");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_no_routes_leaves_routes_null);
    tcase_add_test(tc, test_ferry_parents);
    tcase_add_test(tc, test_parents_of_every_kind_and_address_form);
    tcase_add_test(tc, test_paths_chains_and_alternatives);
    tcase_add_test(tc, test_route_matching_uses_the_request_rule_matchers);
    tcase_add_test(tc, test_no_route_matching_means_direct);
    tcase_add_test(tc, test_parent_errors_name_file_and_line);
    tcase_add_test(tc, test_route_errors_name_file_and_line);
    tcase_add_test(tc, test_credentials_file);
    tcase_add_test(tc, test_health_marks_down_and_up);
    tcase_add_test(tc, test_health_carries_over_a_reload_for_the_same_parent);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(route_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
