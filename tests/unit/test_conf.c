/* Unit tests for the ferryd.conf parser. */
#include "config.h"

#include <check.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "ferry/conf.h"
#include "ferry/frontend.h"
#include "ferry/socks5.h"

static char err[512];

/* Parse text as "t.conf" and expect success. */
static void parse_ok(struct config *c, const char *text)
{
    int r = conf_parse(c, text, "t.conf", err, sizeof(err));
    ck_assert_msg(r == 0, "unexpected error: %s", err);
}

/* Parse text as "t.conf", expect failure with exactly `want`. */
static void parse_err(const char *text, const char *want)
{
    struct config c;
    int r = conf_parse(&c, text, "t.conf", err, sizeof(err));

    ck_assert_int_eq(r, -1);
    ck_assert_str_eq(err, want);
    /* Nothing to free, and the defaults are in place. */
    ck_assert_ptr_null(c.users_file);
    ck_assert_ptr_null(c.log_file);
    ck_assert_ptr_null(c.resolver_servers);
    ck_assert_uint_eq(c.max_sessions, 4096);
    ck_assert_ptr_null(c.client_rules);
    ck_assert_ptr_null(c.request_rules);
    ck_assert(!c.allow_unauthenticated);
    conf_release(&c);
}

static const char *fmt_listen(const struct config *c, size_t i)
{
    static char buf[ADDR_STRLEN];
    return addr_format(&c->listen[i], buf, sizeof(buf));
}

static struct addr ip(const char *text)
{
    struct addr a;

    ck_assert_msg(addr_parse(text, 0, &a) == 0, "bad test address %s", text);
    return a;
}

static bool trusted(const struct config *c, const char *text)
{
    struct addr a = ip(text);

    for (size_t i = 0; i < c->ntrusted_clients; i++) {
        if (addr_cidr_contains(&c->trusted_clients[i], &a))
            return true;
    }
    return false;
}

static void check_access_defaults(const struct config *c)
{
    ck_assert_ptr_null(c->client_rules);
    ck_assert_ptr_null(c->request_rules);
    ck_assert_uint_eq(c->ntrusted_clients, 2);
    ck_assert(trusted(c, "127.0.0.1"));
    ck_assert(trusted(c, "127.255.255.255"));
    ck_assert(trusted(c, "::ffff:127.0.0.2"));
    ck_assert(trusted(c, "::1"));
    ck_assert(!trusted(c, "128.0.0.1"));
    ck_assert(!trusted(c, "::2"));
    ck_assert(!trusted(c, "10.0.0.1"));
    ck_assert(!c->private_destinations);
    ck_assert(!c->allow_unauthenticated);
}

static void check_defaults(const struct config *c)
{
    ck_assert_uint_eq(c->nlisten, 2);
    ck_assert(c->listen_is_default);
    ck_assert_str_eq(fmt_listen(c, 0), "127.0.0.1:1080");
    ck_assert_str_eq(fmt_listen(c, 1), "[::1]:1080");
    ck_assert_uint_eq(c->nmethods, 1);
    ck_assert_uint_eq(c->methods[0], SOCKS5_METHOD_NOAUTH);
    ck_assert_ptr_null(c->users_file);
    ck_assert_ptr_null(c->resolver_servers);
    ck_assert(c->resolver_timeout == 2);
    ck_assert_int_eq(c->resolver_tries, 2);
    ck_assert(c->timeout_negotiate == 10);
    ck_assert(c->timeout_resolve == 10);
    ck_assert(c->timeout_connect == 10);
    ck_assert(c->timeout_idle == 300);
    ck_assert_int_eq(c->log_target, LOG_TARGET_STDERR);
    ck_assert_int_eq(c->syslog_facility, LOG_DAEMON);
    ck_assert_int_eq(c->log_level, LOG_INFO);
    ck_assert_int_eq(c->log_format, ACCESS_TEXT);
    ck_assert_ptr_null(c->log_file);
    ck_assert_uint_eq(c->max_sessions, 4096);
    ck_assert_int_eq(c->relay_mode, RELAY_AUTO);
    ck_assert_uint_eq(c->auth_threads, 2);
    ck_assert(c->auth_cache == 300);
    for (size_t i = 0; i < CONF_MAX_LISTEN; i++)
        ck_assert_uint_eq(c->listen_advertise[i].len, 0);
    ck_assert_uint_eq(c->udp_address.len, 0);
    ck_assert_uint_eq(c->udp_port_min, 0);
    ck_assert_uint_eq(c->udp_port_max, 0);
    ck_assert_int_eq(c->udp_filter, UDP_FILTER_ADDRESS);
    ck_assert_uint_eq(c->udp_max_per_client, 16);
    ck_assert_uint_eq(c->udp_max_total, 1024);
    ck_assert(c->timeout_udp == 120);
    ck_assert_uint_eq(c->bind_port_min, 0);
    ck_assert_uint_eq(c->bind_port_max, 0);
    ck_assert(!c->bind_any_peer);
    ck_assert(c->timeout_bind == 60);
    ck_assert(c->timeout_half_closed == 60);
    ck_assert_uint_eq(c->max_negotiating.start, 512);
    ck_assert_uint_eq(c->max_negotiating.rate, 30);
    ck_assert_uint_eq(c->max_negotiating.full, 1024);
    ck_assert_uint_eq(c->negotiating_per_client, 32);
    ck_assert_uint_eq(c->client_prefix6, 64);
    ck_assert_uint_eq(c->stream.rcvbuf, 0);
    ck_assert_uint_eq(c->stream.sndbuf, 0);
    ck_assert(!c->stream.keepalive);
    check_access_defaults(c);
}

START_TEST(test_defaults_without_any_line)
{
    struct config c;

    conf_defaults(&c);
    check_defaults(&c);
    parse_ok(&c, "");
    check_defaults(&c);
    conf_release(&c);
}
END_TEST

START_TEST(test_comments_and_blank_lines_are_skipped)
{
    struct config c;

    parse_ok(&c, "# a comment\n\n   \t\n  # indented comment\nmax-sessions 10 # trailing\n"
                 "relay buffered#glued comment\n\n");
    ck_assert_uint_eq(c.max_sessions, 10);
    ck_assert_int_eq(c.relay_mode, RELAY_BUFFERED);
    conf_release(&c);
}
END_TEST

START_TEST(test_crlf_and_missing_final_newline)
{
    struct config c;

    parse_ok(&c, "max-sessions 7\r\nauth-threads 3");
    ck_assert_uint_eq(c.max_sessions, 7);
    ck_assert_uint_eq(c.auth_threads, 3);
    conf_release(&c);
}
END_TEST

START_TEST(test_unknown_keyword)
{
    parse_err("\n\n\n\n\n\nlisen 127.0.0.1\n", "t.conf:7: unknown keyword 'lisen'");
}
END_TEST

START_TEST(test_listen_addresses_and_default_port)
{
    struct config c;

    parse_ok(&c, "listen 127.0.0.1:1080\nlisten [::1]:1081\nlisten 0.0.0.0\nlisten [::]\n"
                 "listen 10.0.0.1:0\nauth password\nusers u\n");
    ck_assert(!c.listen_is_default);
    ck_assert_uint_eq(c.nlisten, 5);
    ck_assert_str_eq(fmt_listen(&c, 0), "127.0.0.1:1080");
    ck_assert_str_eq(fmt_listen(&c, 1), "[::1]:1081");
    ck_assert_str_eq(fmt_listen(&c, 2), "0.0.0.0:1080");
    ck_assert_str_eq(fmt_listen(&c, 3), "[::]:1080");
    ck_assert_str_eq(fmt_listen(&c, 4), "10.0.0.1:0");
    conf_release(&c);
}
END_TEST

START_TEST(test_listen_protocols)
{
    struct config c;

    parse_ok(&c, "listen 127.0.0.1:1080\n"
                 "listen 127.0.0.1:1081 protocols socks\n"
                 "listen 127.0.0.1:1082 protocols http advertise 192.0.2.1\n"
                 "listen 127.0.0.1:1083 protocols socks5,http\n"
                 "listen 127.0.0.1:1084 protocols socks4\n");
    ck_assert_uint_eq(c.listen_protocols[0], FRONTEND_ALL);
    ck_assert_uint_eq(c.listen_protocols[1], FRONTEND_SOCKS4 | FRONTEND_SOCKS5);
    ck_assert_uint_eq(c.listen_protocols[2], FRONTEND_HTTP);
    ck_assert_uint_eq(c.listen_protocols[3], FRONTEND_SOCKS5 | FRONTEND_HTTP);
    ck_assert_uint_eq(c.listen_protocols[4], FRONTEND_SOCKS4);
    conf_release(&c);
    /* The built-in listeners serve everything. */
    parse_ok(&c, "");
    ck_assert_uint_eq(c.listen_protocols[0], FRONTEND_ALL);
    ck_assert_uint_eq(c.listen_protocols[1], FRONTEND_ALL);
    conf_release(&c);
    parse_err("listen 127.0.0.1 protocols gopher\n",
              "t.conf:1: listen: protocols: 'gopher' is not socks, socks4, socks5 or http");
    parse_err("listen 127.0.0.1 protocols\n",
              "t.conf:1: listen: protocols: missing LIST (socks, socks4, socks5, http)");
    parse_err("listen 127.0.0.1 protocols socks,,http\n",
              "t.conf:1: listen: protocols: empty item in 'socks,,http'");
    parse_err("listen 127.0.0.1 protocols socks tunnel\n",
              "t.conf:1: listen: a tunnel listener speaks only the tunnel protocol: no "
              "'protocols'");
    parse_err("listen 127.0.0.1 nope\n",
              "t.conf:1: listen: unknown option 'nope' (advertise IP, protocols LIST, tunnel)");
}
END_TEST

START_TEST(test_listen_bad_address)
{
    parse_err("\n\nlisten 1.2.3.4:99999\n", "t.conf:3: listen: '1.2.3.4:99999' is not an address");
    parse_err("listen localhost\n", "t.conf:1: listen: 'localhost' is not an address");
    parse_err("listen [::1\n", "t.conf:1: listen: '[::1' is not an address");
    parse_err("listen\n", "t.conf:1: listen: missing ADDRESS[:PORT]");
    parse_err("listen 127.0.0.1 ::1\n",
              "t.conf:1: listen: unknown option '::1' (advertise IP, protocols LIST, tunnel)");
    parse_err("listen 127.0.0.1 advertise 1.2.3.4 protocols socks tunnel x\n",
              "t.conf:1: listen: too many arguments");
    parse_err("listen 127.0.0.1 advertise 1.2.3.4 x\n",
              "t.conf:1: listen: unknown option 'x' (advertise IP, protocols LIST, tunnel)");
}
END_TEST

START_TEST(test_listen_duplicate_address)
{
    parse_err("listen 127.0.0.1:1080\nlisten 127.0.0.1\n",
              "t.conf:2: listen: duplicate address 127.0.0.1:1080");
}
END_TEST

START_TEST(test_listen_too_many)
{
    char text[1024] = "";

    for (int i = 0; i <= CONF_MAX_LISTEN; i++)
        snprintf(text + strlen(text), sizeof(text) - strlen(text), "listen 127.0.0.1:%d\n",
                 2000 + i);
    parse_err(text, "t.conf:17: listen: too many listen lines (at most 16)");
}
END_TEST

START_TEST(test_auth_methods_in_order)
{
    struct config c;

    parse_ok(&c, "auth password none\nusers /etc/ferry/users\n");
    ck_assert_uint_eq(c.nmethods, 2);
    ck_assert_uint_eq(c.methods[0], SOCKS5_METHOD_USERPASS);
    ck_assert_uint_eq(c.methods[1], SOCKS5_METHOD_NOAUTH);
    ck_assert_str_eq(c.users_file, "/etc/ferry/users");
    conf_release(&c);

    parse_ok(&c, "auth none\n");
    ck_assert_uint_eq(c.nmethods, 1);
    ck_assert_uint_eq(c.methods[0], SOCKS5_METHOD_NOAUTH);
    conf_release(&c);
}
END_TEST

START_TEST(test_auth_errors)
{
    parse_err("auth\n", "t.conf:1: auth: missing METHOD (none or password)");
    parse_err("auth gssapi\n", "t.conf:1: auth: unknown method 'gssapi' (none or password)");
    parse_err("auth none none\n", "t.conf:1: auth: method 'none' given twice");
    parse_err("auth none password none\n", "t.conf:1: auth: too many arguments");
}
END_TEST

START_TEST(test_auth_password_needs_users)
{
    parse_err("# x\nauth password\nmax-sessions 5\n",
              "t.conf:2: auth password needs a users file (users PATH)");
}
END_TEST

START_TEST(test_users_relative_path_uses_config_dir)
{
    struct config c;
    int r;

    r = conf_parse(&c, "auth password\nusers ferry.users\n", "/etc/ferry/ferryd.conf", err,
                   sizeof(err));
    ck_assert_msg(r == 0, "%s", err);
    ck_assert_str_eq(c.users_file, "/etc/ferry/ferry.users");
    conf_release(&c);

    r = conf_parse(&c, "users sub/u\n", "conf/t.conf", err, sizeof(err));
    ck_assert_msg(r == 0, "%s", err);
    ck_assert_str_eq(c.users_file, "conf/sub/u");
    conf_release(&c);

    r = conf_parse(&c, "users u\n", "t.conf", err, sizeof(err));
    ck_assert_msg(r == 0, "%s", err);
    ck_assert_str_eq(c.users_file, "u");
    conf_release(&c);

    r = conf_parse(&c, "users /abs/u\n", "conf/t.conf", err, sizeof(err));
    ck_assert_msg(r == 0, "%s", err);
    ck_assert_str_eq(c.users_file, "/abs/u");
    conf_release(&c);
}
END_TEST

START_TEST(test_load_resolves_users_against_absolute_config_dir)
{
    char dir[] = "/tmp/ferry-test-config-XXXXXX";
    char path[PATH_MAX], want[PATH_MAX], *real;
    struct config c;
    FILE *f;
    int r;

    ck_assert_ptr_nonnull(mkdtemp(dir));
    real = realpath(dir, NULL);
    ck_assert_ptr_nonnull(real);
    snprintf(path, sizeof(path), "%s/t.conf", dir);
    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("auth password\nusers users.txt\nlog file logs/ferryd.log\n", f);
    fclose(f);

    r = conf_load(&c, path, err, sizeof(err));
    ck_assert_msg(r == 0, "%s", err);
    snprintf(want, sizeof(want), "%s/users.txt", real);
    ck_assert_str_eq(c.users_file, want);
    snprintf(want, sizeof(want), "%s/logs/ferryd.log", real);
    ck_assert_str_eq(c.log_file, want);
    conf_release(&c);

    unlink(path);
    rmdir(dir);
    free(real);
}
END_TEST

START_TEST(test_users_errors)
{
    parse_err("users\n", "t.conf:1: users: missing PATH");
    parse_err("users a b\n", "t.conf:1: users: too many arguments");
    parse_err("users a\nusers b\n", "t.conf:2: duplicate 'users' (first on line 1)");
}
END_TEST

/* The resolver servers of c as "ADDR:PORT,..." text. */
static const char *servers_text(const struct config *c)
{
    static char buf[512];
    size_t n = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < c->nresolver_servers; i++) {
        ck_assert_uint_lt(n + ADDR_STRLEN + 1, sizeof(buf));
        if (i > 0)
            buf[n++] = ',';
        addr_format(&c->resolver_servers[i], buf + n, sizeof(buf) - n);
        n += strlen(buf + n);
    }
    return buf;
}

START_TEST(test_resolver_system_and_lists)
{
    static const struct {
        const char *list, *servers;
    } lists[] = {
        {"127.0.0.1:5353,[::1],192.0.2.1,[2001:db8::1]:5300",
         "127.0.0.1:5353,[::1]:53,192.0.2.1:53,[2001:db8::1]:5300"},
        {"127.0.0.1", "127.0.0.1:53"},
        {"::1", "[::1]:53"},
        {"[::1]:5353", "[::1]:5353"},
    };
    struct config c;
    char text[128];

    parse_ok(&c, "resolver system\n");
    ck_assert_ptr_null(c.resolver_servers);
    ck_assert_uint_eq(c.nresolver_servers, 0);
    conf_release(&c);

    for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
        snprintf(text, sizeof(text), "resolver %s\n", lists[i].list);
        parse_ok(&c, text);
        ck_assert_str_eq(servers_text(&c), lists[i].servers);
        conf_release(&c);
    }
}
END_TEST

START_TEST(test_resolver_errors)
{
    parse_err("resolver\n", "t.conf:1: resolver: missing 'system' or SERVER[,SERVER...]");
    parse_err("resolver 127.0.0.1,,::1\n", "t.conf:1: resolver: empty server in '127.0.0.1,,::1'");
    parse_err("resolver 127.0.0.1,\n", "t.conf:1: resolver: empty server in '127.0.0.1,'");
    parse_err("resolver ,127.0.0.1\n", "t.conf:1: resolver: empty server in ',127.0.0.1'");
    parse_err("resolver 127.0.0.1:99999\n", "t.conf:1: resolver: '127.0.0.1:99999' is not a "
                                            "server address (IP, IP:PORT or [IPv6]:PORT)");
    parse_err("resolver [::1\n",
              "t.conf:1: resolver: '[::1' is not a server address (IP, IP:PORT or [IPv6]:PORT)");
    parse_err("resolver dns.example\n", "t.conf:1: resolver: 'dns.example' is not a server "
                                        "address (IP, IP:PORT or [IPv6]:PORT)");
    parse_err("resolver 127.0.0.1:0\n", "t.conf:1: resolver: '127.0.0.1:0' is not a server "
                                        "address (IP, IP:PORT or [IPv6]:PORT)");
    parse_err("resolver 127.0.0.1 ::1\n", "t.conf:1: resolver: too many arguments");
    parse_err("resolver system\nresolver system\n",
              "t.conf:2: duplicate 'resolver' (first on line 1)");
}
END_TEST

START_TEST(test_resolver_timeout_and_tries)
{
    struct config c;

    parse_ok(&c, "resolver-timeout 500ms\nresolver-tries 10\n");
    ck_assert(c.resolver_timeout == 0.5);
    ck_assert_int_eq(c.resolver_tries, 10);
    conf_release(&c);

    parse_err("resolver-timeout 0\n", "t.conf:1: resolver-timeout: '0' must be greater than zero");
    parse_err("resolver-timeout soon\n", "t.conf:1: resolver-timeout: 'soon' is not a duration "
                                         "(like 10, 10s, 250ms, 5m, 1h, 1d)");
    parse_err("resolver-tries 0\n", "t.conf:1: resolver-tries: '0' is out of range (1..10)");
    parse_err("resolver-tries 11\n", "t.conf:1: resolver-tries: '11' is out of range (1..10)");
    parse_err("resolver-tries -1\n", "t.conf:1: resolver-tries: '-1' is not a number");
    parse_err("resolver-tries\n", "t.conf:1: resolver-tries: missing N");
}
END_TEST

START_TEST(test_auth_cache)
{
    struct config c;

    parse_ok(&c, "auth-cache 5m\n");
    ck_assert(c.auth_cache == 300);
    conf_release(&c);
    parse_ok(&c, "auth-cache 0\n");
    ck_assert(c.auth_cache == 0);
    conf_release(&c);
    parse_ok(&c, "auth-cache 90s\n");
    ck_assert(c.auth_cache == 90);
    conf_release(&c);

    parse_err("auth-cache forever\n", "t.conf:1: auth-cache: 'forever' is not a duration "
                                      "(like 10, 10s, 250ms, 5m, 1h, 1d)");
    parse_err("auth-cache\n", "t.conf:1: auth-cache: missing DURATION");
    parse_err("auth-cache 1m 2m\n", "t.conf:1: auth-cache: too many arguments");
}
END_TEST

START_TEST(test_durations)
{
    double d;

    ck_assert_int_eq(conf_parse_duration("10", &d), 0);
    ck_assert(d == 10);
    ck_assert_int_eq(conf_parse_duration("10s", &d), 0);
    ck_assert(d == 10);
    ck_assert_int_eq(conf_parse_duration("250ms", &d), 0);
    ck_assert(d > 0.2499 && d < 0.2501);
    ck_assert_int_eq(conf_parse_duration("5m", &d), 0);
    ck_assert(d == 300);
    ck_assert_int_eq(conf_parse_duration("1h", &d), 0);
    ck_assert(d == 3600);
    ck_assert_int_eq(conf_parse_duration("1.5s", &d), 0);
    ck_assert(d == 1.5);
    ck_assert_int_eq(conf_parse_duration("0.25", &d), 0);
    ck_assert(d == 0.25);
    ck_assert_int_eq(conf_parse_duration("0", &d), 0);
    ck_assert(d == 0);

    d = 42;
    ck_assert_int_eq(conf_parse_duration("", &d), -1);
    ck_assert_int_eq(conf_parse_duration("-1", &d), -1);
    ck_assert_int_eq(conf_parse_duration("+1", &d), -1);
    ck_assert_int_eq(conf_parse_duration("1x", &d), -1);
    ck_assert_int_eq(conf_parse_duration("s", &d), -1);
    ck_assert_int_eq(conf_parse_duration("1.", &d), -1);
    ck_assert_int_eq(conf_parse_duration(".5", &d), -1);
    ck_assert_int_eq(conf_parse_duration("1e3", &d), -1);
    ck_assert_int_eq(conf_parse_duration("inf", &d), -1);
    ck_assert_int_eq(conf_parse_duration("nan", &d), -1);
    ck_assert_int_eq(conf_parse_duration("10 s", &d), -1);
    ck_assert_int_eq(conf_parse_duration("1sec", &d), -1);
    ck_assert_int_eq(conf_parse_duration("99999999999999999999h", &d), -1);
    ck_assert(d == 42);
}
END_TEST

START_TEST(test_timeouts)
{
    struct config c;

    parse_ok(&c, "timeout negotiate 5s\ntimeout resolve 1.5\ntimeout connect 250ms\n"
                 "timeout idle 1h\n");
    ck_assert(c.timeout_negotiate == 5);
    ck_assert(c.timeout_resolve == 1.5);
    ck_assert(c.timeout_connect > 0.2499 && c.timeout_connect < 0.2501);
    ck_assert(c.timeout_idle == 3600);
    conf_release(&c);

    parse_ok(&c, "timeout idle 0\n");
    ck_assert(c.timeout_idle == 0);
    conf_release(&c);
}
END_TEST

START_TEST(test_timeout_udp_and_bind)
{
    struct config c;

    parse_ok(&c, "timeout udp 30s\ntimeout bind 2m\n");
    ck_assert(c.timeout_udp == 30);
    ck_assert(c.timeout_bind == 120);
    ck_assert(c.timeout_idle == 300);
    conf_release(&c);

    parse_ok(&c, "timeout bind 500ms\n");
    ck_assert(c.timeout_bind > 0.4999 && c.timeout_bind < 0.5001);
    ck_assert(c.timeout_udp == 120);
    conf_release(&c);
}
END_TEST

START_TEST(test_timeout_udp_and_bind_errors)
{
    parse_err("timeout udp 0\n", "t.conf:1: timeout: '0' must be greater than zero");
    parse_err("timeout bind 0s\n", "t.conf:1: timeout: '0s' must be greater than zero");
    parse_err("timeout bind soon\n", "t.conf:1: timeout: 'soon' is not a duration (like 10, 10s, "
                                     "250ms, 5m, 1h, 1d)");
    parse_err("timeout udp\n", "t.conf:1: timeout: missing DURATION");
    parse_err("timeout udp 1\ntimeout bind 1\ntimeout udp 2\n",
              "t.conf:3: duplicate 'timeout udp' (first on line 1)");
    parse_err("timeout bind 1\n\ntimeout bind 1\n",
              "t.conf:3: duplicate 'timeout bind' (first on line 1)");
}
END_TEST

static const char *fmt_ip(const struct addr *a)
{
    static char buf[ADDR_STRLEN];
    return addr_format_ip(a, buf, sizeof(buf));
}

START_TEST(test_listen_advertise_any_family)
{
    struct config c;

    parse_ok(&c, "listen 0.0.0.0:1080 advertise 203.0.113.7\n"
                 "listen [::]:1080 advertise 2001:db8::7\n"
                 "listen 10.0.0.1 advertise [2001:db8::8]\n"
                 "listen [::1]:1081 advertise 198.51.100.1\n"
                 "listen 127.0.0.1:1082\n"
                 "auth password\nusers u\n");
    ck_assert_uint_eq(c.nlisten, 5);
    ck_assert_int_eq(addr_family(&c.listen_advertise[0]), AF_INET);
    ck_assert_str_eq(fmt_ip(&c.listen_advertise[0]), "203.0.113.7");
    ck_assert_int_eq(addr_family(&c.listen_advertise[1]), AF_INET6);
    ck_assert_str_eq(fmt_ip(&c.listen_advertise[1]), "2001:db8::7");
    ck_assert_str_eq(fmt_ip(&c.listen_advertise[2]), "2001:db8::8");
    ck_assert_str_eq(fmt_listen(&c, 2), "10.0.0.1:1080");
    ck_assert_str_eq(fmt_ip(&c.listen_advertise[3]), "198.51.100.1");
    ck_assert_str_eq(fmt_listen(&c, 3), "[::1]:1081");
    /* Not advertised: nothing set. */
    ck_assert_uint_eq(c.listen_advertise[4].len, 0);
    ck_assert_uint_eq(addr_port(&c.listen_advertise[0]), 0);
    conf_release(&c);
}
END_TEST

START_TEST(test_tunnel_listener_and_settings)
{
    struct config c;

    /* A tunnel listener on any address needs no password: keys authenticate its clients. */
    parse_ok(&c, "listen 0.0.0.0:1081 tunnel\nlisten 127.0.0.1:1080\n"
                 "tunnel key /etc/ferry/server.key\ntunnel authorized-keys keys\n"
                 "tunnel replay-window 2m\n");
    ck_assert_uint_eq(c.nlisten, 2);
    ck_assert(c.listen_tunnel[0]);
    ck_assert(!c.listen_tunnel[1]);
    ck_assert_str_eq(c.tunnel_key_file, "/etc/ferry/server.key");
    ck_assert_str_eq(c.tunnel_authkeys_file, "keys");
    ck_assert(c.tunnel_replay_window == 120);
    conf_release(&c);
    parse_ok(&c, "listen 127.0.0.1\n");
    ck_assert(c.tunnel_replay_window == 600);
    ck_assert_ptr_null(c.tunnel_key_file);
    conf_release(&c);
    parse_err("listen 0.0.0.0:1081 tunnel\ntunnel key k\n",
              "t.conf:1: listen 0.0.0.0:1081 tunnel needs 'tunnel key PATH' and 'tunnel "
              "authorized-keys PATH'");
    parse_err("tunnel keys k\n",
              "t.conf:1: tunnel: unknown setting 'keys' (key, authorized-keys, replay-window)");
    parse_err("tunnel replay-window soon\n",
              "t.conf:1: tunnel: replay-window 'soon' is not a duration");
    parse_err("tunnel key\n", "t.conf:1: tunnel: expected key PATH, authorized-keys PATH or "
                              "replay-window DURATION");
}
END_TEST

START_TEST(test_listen_advertise_errors)
{
    parse_err("listen 0.0.0.0 advertise\n", "t.conf:1: listen: advertise: missing IP");
    parse_err("listen 0.0.0.0 advertise example.com\n",
              "t.conf:1: listen: advertise: 'example.com' is not an IP address");
    parse_err("listen 0.0.0.0 advertise 203.0.113.7:1080\n",
              "t.conf:1: listen: advertise: '203.0.113.7:1080' is not an IP address");
    parse_err("listen 0.0.0.0 advertise [2001:db8::1]:1080\n",
              "t.conf:1: listen: advertise: '[2001:db8::1]:1080' is not an IP address");
    parse_err("listen 0.0.0.0 advertise 0.0.0.0\n",
              "t.conf:1: listen: advertise: '0.0.0.0' is not a unicast address");
    parse_err("listen 0.0.0.0 advertise ::\n",
              "t.conf:1: listen: advertise: '::' is not a unicast address");
    parse_err("listen 0.0.0.0 advertise 224.0.0.1\n",
              "t.conf:1: listen: advertise: '224.0.0.1' is not a unicast address");
    parse_err("listen 0.0.0.0 advertize 1.2.3.4\n",
              "t.conf:1: listen: unknown option 'advertize' (advertise IP, protocols LIST, tunnel)");
}
END_TEST

START_TEST(test_udp_settings)
{
    struct config c;

    parse_ok(&c, "udp address 192.0.2.10\n"
                 "udp port-range 40000-40099\n"
                 "udp filter any\n"
                 "udp max-per-client 4\n"
                 "udp max-total 100000\n");
    ck_assert_int_eq(addr_family(&c.udp_address), AF_INET);
    ck_assert_str_eq(fmt_ip(&c.udp_address), "192.0.2.10");
    ck_assert_uint_eq(addr_port(&c.udp_address), 0);
    ck_assert_uint_eq(c.udp_port_min, 40000);
    ck_assert_uint_eq(c.udp_port_max, 40099);
    ck_assert_int_eq(c.udp_filter, UDP_FILTER_ANY);
    ck_assert_uint_eq(c.udp_max_per_client, 4);
    ck_assert_uint_eq(c.udp_max_total, 100000);
    /* bind is untouched */
    ck_assert_uint_eq(c.bind_port_min, 0);
    conf_release(&c);

    parse_ok(&c, "udp address ::1\nudp filter address\nudp port-range 1-65535\n");
    ck_assert_int_eq(addr_family(&c.udp_address), AF_INET6);
    ck_assert_int_eq(c.udp_filter, UDP_FILTER_ADDRESS);
    ck_assert_uint_eq(c.udp_port_min, 1);
    ck_assert_uint_eq(c.udp_port_max, 65535);
    conf_release(&c);

    parse_ok(&c, "udp filter address-port\n");
    ck_assert_int_eq(c.udp_filter, UDP_FILTER_ADDRESS_PORT);
    conf_release(&c);

    parse_ok(&c, "udp address [2001:db8::1]\nudp port-range 5000-5000\n");
    ck_assert_str_eq(fmt_ip(&c.udp_address), "2001:db8::1");
    ck_assert_uint_eq(c.udp_port_min, 5000);
    ck_assert_uint_eq(c.udp_port_max, 5000);
    conf_release(&c);
}
END_TEST

START_TEST(test_port_range_ephemeral_forms)
{
    struct config c;

    parse_ok(&c, "udp port-range ephemeral\nbind port-range 0-0\n");
    ck_assert_uint_eq(c.udp_port_min, 0);
    ck_assert_uint_eq(c.udp_port_max, 0);
    ck_assert_uint_eq(c.bind_port_min, 0);
    ck_assert_uint_eq(c.bind_port_max, 0);
    conf_release(&c);
}
END_TEST

START_TEST(test_port_range_errors)
{
    parse_err("udp port-range 5000\n",
              "t.conf:1: udp port-range: '5000' is not a port range (LOW-HIGH or ephemeral)");
    parse_err("udp port-range -5000\n",
              "t.conf:1: udp port-range: '-5000' is not a port range (LOW-HIGH or ephemeral)");
    parse_err("udp port-range 5000-\n", "t.conf:1: udp port-range: '' is not a number");
    parse_err("bind port-range 0-100\n",
              "t.conf:1: bind port-range: '0' is out of range (1..65535)");
    parse_err("bind port-range 100-0\n",
              "t.conf:1: bind port-range: '0' is out of range (1..65535)");
    parse_err("bind port-range 1-65536\n",
              "t.conf:1: bind port-range: '65536' is out of range (1..65535)");
    parse_err("udp port-range 6000-5000\n",
              "t.conf:1: udp port-range: '6000-5000' is an empty range (LOW is above HIGH)");
    parse_err("udp port-range 1-2-3\n", "t.conf:1: udp port-range: '2-3' is not a number");
    parse_err("udp port-range 1000000000000000000000-2\n",
              "t.conf:1: udp port-range: '1000000000000000000000-2' is not a port range (LOW-HIGH "
              "or ephemeral)");
    parse_err("udp port-range +1-2\n", "t.conf:1: udp port-range: '+1' is not a number");
    parse_err("udp port-range\n", "t.conf:1: udp port-range: missing LOW-HIGH");
}
END_TEST

START_TEST(test_udp_errors)
{
    parse_err("udp\n", "t.conf:1: udp: missing address|port-range|filter|max-per-client|max-total");
    parse_err("udp filter any extra\n", "t.conf:1: udp: too many arguments");
    parse_err("udp port 1-2\n", "t.conf:1: udp: unknown setting 'port' (address, port-range, "
                                "filter, max-per-client or max-total)");
    parse_err("udp address\n", "t.conf:1: udp address: missing IP");
    parse_err("udp address localhost\n", "t.conf:1: udp address: 'localhost' is not an IP address");
    parse_err("udp address 192.0.2.1:53\n",
              "t.conf:1: udp address: '192.0.2.1:53' is not an IP address");
    parse_err("udp address 0.0.0.0\n", "t.conf:1: udp address: '0.0.0.0' is not a unicast address");
    parse_err("udp address ff02::1\n", "t.conf:1: udp address: 'ff02::1' is not a unicast address");
    parse_err("udp filter cone\n",
              "t.conf:1: udp filter: unknown filter 'cone' (address, address-port or any)");
    parse_err("udp filter port\n",
              "t.conf:1: udp filter: unknown filter 'port' (address, address-port or any)");
    parse_err("udp filter address-port extra\n", "t.conf:1: udp: too many arguments");
    parse_err("udp filter address\nudp filter address-port\n",
              "t.conf:2: duplicate 'udp filter' (first on line 1)");
    parse_err("udp filter\n", "t.conf:1: udp filter: missing address|address-port|any");
    parse_err("udp max-per-client 0\n",
              "t.conf:1: udp max-per-client: '0' is out of range (1..65535)");
    parse_err("udp max-per-client 65536\n",
              "t.conf:1: udp max-per-client: '65536' is out of range (1..65535)");
    parse_err("udp max-total 0\n", "t.conf:1: udp max-total: '0' is out of range (1..1000000)");
    parse_err("udp max-total 1000001\n",
              "t.conf:1: udp max-total: '1000001' is out of range (1..1000000)");
    parse_err("udp max-total many\n", "t.conf:1: udp max-total: 'many' is not a number");
}
END_TEST

START_TEST(test_bind_settings)
{
    struct config c;

    parse_ok(&c, "bind port-range 50000-50010\nbind peer any\n");
    ck_assert_uint_eq(c.bind_port_min, 50000);
    ck_assert_uint_eq(c.bind_port_max, 50010);
    ck_assert(c.bind_any_peer);
    ck_assert_uint_eq(c.udp_port_min, 0);
    conf_release(&c);

    parse_ok(&c, "bind peer expected\n");
    ck_assert(!c.bind_any_peer);
    conf_release(&c);
}
END_TEST

START_TEST(test_bind_errors)
{
    parse_err("bind\n", "t.conf:1: bind: missing port-range|peer");
    parse_err("bind peer\n", "t.conf:1: bind peer: missing expected|any");
    parse_err("bind peer anyone\n", "t.conf:1: bind peer: unknown peer 'anyone' (expected or any)");
    parse_err("bind address 1.2.3.4\n",
              "t.conf:1: bind: unknown setting 'address' (port-range or peer)");
    parse_err("bind peer any 1\n", "t.conf:1: bind: too many arguments");
}
END_TEST

START_TEST(test_udp_and_bind_settings_twice_are_duplicates)
{
    static const char *const lines[] = {
        "udp address 192.0.2.1", "udp port-range 1-2",  "udp filter any", "udp max-per-client 1",
        "udp max-total 1",       "bind port-range 1-2", "bind peer any",
    };
    char text[256], want[256];

    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        char kw[32], sub[32];
        sscanf(lines[i], "%31s %31s", kw, sub);
        snprintf(text, sizeof(text), "%s\n# c\n%s\n", lines[i], lines[i]);
        snprintf(want, sizeof(want), "t.conf:3: duplicate '%s %s' (first on line 1)", kw, sub);
        parse_err(text, want);
    }
    /* Duplicates are per setting: other settings of either block in between are fine. */
    parse_err("udp port-range 1-2\nbind port-range 1-2\nudp filter any\nudp port-range 3-4\n",
              "t.conf:4: duplicate 'udp port-range' (first on line 1)");
    parse_err("bind peer any\nbind port-range 1-2\nbind peer expected\n",
              "t.conf:3: duplicate 'bind peer' (first on line 1)");
}
END_TEST

START_TEST(test_timeout_errors)
{
    parse_err("\n\n\n\ntimeout idle\n", "t.conf:5: timeout: missing DURATION");
    parse_err("timeout\n",
              "t.conf:1: timeout: missing negotiate|resolve|connect|idle|udp|bind|half-closed");
    parse_err("timeout idle 1 2\n", "t.conf:1: timeout: too many arguments");
    parse_err("timeout dns 1\n", "t.conf:1: timeout: unknown timeout 'dns' (negotiate, resolve, "
                                 "connect, idle, udp, bind or half-closed)");
    parse_err("timeout connect 0\n", "t.conf:1: timeout: '0' must be greater than zero");
    parse_err("timeout negotiate 0ms\n", "t.conf:1: timeout: '0ms' must be greater than zero");
    parse_err("timeout resolve -3\n", "t.conf:1: timeout: '-3' is not a duration (like 10, 10s, "
                                      "250ms, 5m, 1h, 1d)");
    parse_err("timeout idle 5\ntimeout connect 5\ntimeout idle 6\n",
              "t.conf:3: duplicate 'timeout idle' (first on line 1)");
}
END_TEST

START_TEST(test_log_targets)
{
    struct config c;

    parse_ok(&c, "log syslog\n");
    ck_assert_int_eq(c.log_target, LOG_TARGET_SYSLOG);
    ck_assert_int_eq(c.syslog_facility, LOG_DAEMON);
    conf_release(&c);

    parse_ok(&c, "log syslog local3\n");
    ck_assert_int_eq(c.syslog_facility, LOG_LOCAL3);
    conf_release(&c);

    parse_ok(&c, "log syslog authpriv\n");
    ck_assert_int_eq(c.syslog_facility, LOG_AUTHPRIV);
    conf_release(&c);

    parse_ok(&c, "log stderr\n");
    ck_assert_int_eq(c.log_target, LOG_TARGET_STDERR);
    conf_release(&c);

    parse_ok(&c, "log file /var/log/ferry/access.log\n");
    ck_assert_int_eq(c.log_target, LOG_TARGET_FILE);
    ck_assert_str_eq(c.log_file, "/var/log/ferry/access.log");
    conf_release(&c);
    ck_assert_ptr_null(c.log_file);

    /* without a directory (conf_parse), a relative path stays as given */
    parse_ok(&c, "log file ferryd.log\n");
    ck_assert_str_eq(c.log_file, "ferryd.log");
    conf_release(&c);

    parse_err("log file\n", "t.conf:1: log: file needs a PATH");
    parse_err("log file a b\n", "t.conf:1: log: too many arguments");
    parse_err("log file /x\nlog stderr\n", "t.conf:2: duplicate 'log' (first on line 1)");
    parse_err("log files\n", "t.conf:1: log: unknown target 'files' (stderr, syslog or file)");
    parse_err("log syslog local8\n", "t.conf:1: log: unknown syslog facility 'local8' (daemon, "
                                     "user, auth, authpriv, local0..local7)");
    parse_err("log stderr daemon\n",
              "t.conf:1: log: too many arguments (stderr takes no facility)");
    parse_err("log syslog daemon x\n", "t.conf:1: log: too many arguments");
    parse_err("log\n", "t.conf:1: log: missing stderr, syslog or file");
    parse_err("log stderr\nlog syslog\n", "t.conf:2: duplicate 'log' (first on line 1)");
}
END_TEST

START_TEST(test_log_formats)
{
    struct config c;

    parse_ok(&c, "log-format json\n");
    ck_assert_int_eq(c.log_format, ACCESS_JSON);
    conf_release(&c);
    parse_ok(&c, "log-format logfmt\nlog syslog\n");
    ck_assert_int_eq(c.log_format, ACCESS_LOGFMT);
    conf_release(&c);
    parse_ok(&c, "log-format text\n");
    ck_assert_int_eq(c.log_format, ACCESS_TEXT);
    conf_release(&c);

    parse_err("log-format xml\n",
              "t.conf:1: log-format: unknown format 'xml' (text, json or logfmt)");
    parse_err("log-format\n", "t.conf:1: log-format: missing text|json|logfmt");
    parse_err("log-format json json\n", "t.conf:1: log-format: too many arguments");
    parse_err("log-format json\nlog-format text\n",
              "t.conf:2: duplicate 'log-format' (first on line 1)");
}
END_TEST

START_TEST(test_log_levels)
{
    static const struct {
        const char *name;
        int level;
    } levels[] = {{"err", LOG_ERR},
                  {"warning", LOG_WARNING},
                  {"notice", LOG_NOTICE},
                  {"info", LOG_INFO},
                  {"debug", LOG_DEBUG}};
    struct config c;
    char text[64];

    for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
        snprintf(text, sizeof(text), "log-level %s\n", levels[i].name);
        parse_ok(&c, text);
        ck_assert_int_eq(c.log_level, levels[i].level);
        conf_release(&c);
    }
    parse_err("log-level loud\n", "t.conf:1: log-level: unknown level 'loud' (err, warning, "
                                  "notice, info or debug)");
    parse_err("log-level\n", "t.conf:1: log-level: missing LEVEL");
}
END_TEST

START_TEST(test_shutdown_grace_default_zero_and_errors)
{
    struct config c;

    conf_defaults(&c);
    ck_assert(c.shutdown_grace == 5.0);
    parse_ok(&c, "shutdown-grace 0\n");
    ck_assert(c.shutdown_grace == 0.0);
    conf_release(&c);
    parse_ok(&c, "shutdown-grace 1500ms\n");
    ck_assert(c.shutdown_grace == 1.5);
    conf_release(&c);
    parse_err("shutdown-grace\n", "t.conf:1: shutdown-grace: missing DURATION");
    parse_err("shutdown-grace 1s\nshutdown-grace 2s\n",
              "t.conf:2: duplicate 'shutdown-grace' (first on line 1)");
}
END_TEST

START_TEST(test_max_sessions_and_auth_threads)
{
    struct config c;

    parse_ok(&c, "max-sessions 1000000\nauth-threads 64\n");
    ck_assert_uint_eq(c.max_sessions, 1000000);
    ck_assert_uint_eq(c.auth_threads, 64);
    conf_release(&c);

    parse_ok(&c, "max-sessions 1\nauth-threads 1\n");
    ck_assert_uint_eq(c.max_sessions, 1);
    ck_assert_uint_eq(c.auth_threads, 1);
    conf_release(&c);

    parse_err("\n\n\n\n\n\n\n\nmax-sessions 1 2\n", "t.conf:9: max-sessions: too many arguments");
    parse_err("max-sessions 0\n", "t.conf:1: max-sessions: '0' is out of range (1..1000000)");
    parse_err("max-sessions 1000001\n",
              "t.conf:1: max-sessions: '1000001' is out of range (1..1000000)");
    parse_err("max-sessions 99999999999999999999999\n",
              "t.conf:1: max-sessions: '99999999999999999999999' is out of range (1..1000000)");
    parse_err("max-sessions 12k\n", "t.conf:1: max-sessions: '12k' is not a number");
    parse_err("auth-threads 65\n", "t.conf:1: auth-threads: '65' is out of range (1..64)");
    parse_err("auth-threads 0x4\n", "t.conf:1: auth-threads: '0x4' is not a number");
}
END_TEST

START_TEST(test_relay_modes)
{
    struct config c;

    parse_ok(&c, "relay splice\n");
    ck_assert_int_eq(c.relay_mode, RELAY_SPLICE);
    conf_release(&c);
    parse_ok(&c, "relay auto\n");
    ck_assert_int_eq(c.relay_mode, RELAY_AUTO);
    conf_release(&c);
    parse_err("relay fast\n", "t.conf:1: relay: unknown mode 'fast' (auto, splice or buffered)");
}
END_TEST

START_TEST(test_every_single_keyword_twice_is_duplicate)
{
    static const char *const lines[] = {
        "auth none",
        "users u",
        "resolver system",
        "resolver-timeout 1",
        "resolver-tries 1",
        "log stderr",
        "log-level info",
        "max-sessions 5",
        "auth-threads 1",
        "relay auto",
        "trusted-clients 127.0.0.1",
        "private-destinations allow",
        "allow-unauthenticated no",
        "max-negotiating 5",
        "tcp-keepalive on",
    };
    char text[256], want[256];

    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        char kw[32];
        sscanf(lines[i], "%31s", kw);
        snprintf(text, sizeof(text), "%s\n# c\n%s\n", lines[i], lines[i]);
        snprintf(want, sizeof(want), "t.conf:3: duplicate '%s' (first on line 1)", kw);
        parse_err(text, want);
    }
}
END_TEST

START_TEST(test_long_line_is_an_error)
{
    size_t n = 5000;
    char *text = malloc(n + 32);

    strcpy(text, "# fine\n");
    memset(text + 7, '#', n);
    strcpy(text + 7 + n, "\n");
    parse_err(text, "t.conf:2: line too long (more than 4096 bytes)");

    /* Exactly 4096 bytes is still fine. */
    memset(text, ' ', 4096);
    text[4096] = '\0';
    memcpy(text, "relay auto", 10);
    {
        struct config c;
        parse_ok(&c, text);
        conf_release(&c);
    }
    free(text);
}
END_TEST

/* Write len bytes to a fresh temporary file; returns its path (static buffer). */
static const char *write_temp(const char *data, size_t len)
{
    static char path[64];
    int fd;

    strcpy(path, "/tmp/ferry-test-conf-XXXXXX");
    fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
    close(fd);
    return path;
}

START_TEST(test_nul_byte_is_an_error)
{
    static const char data[] = "relay auto\nmax-sessions 5\0 0\nauth none\n";
    const char *path = write_temp(data, sizeof(data) - 1);
    char want[128];
    struct config c;

    ck_assert_int_eq(conf_load(&c, path, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "%s:2: NUL byte in line", path);
    ck_assert_str_eq(err, want);
    conf_release(&c);
    unlink(path);
}
END_TEST

START_TEST(test_load_reads_a_file)
{
    static const char data[] = "listen 127.0.0.1:1090\nauth none\n";
    const char *path = write_temp(data, sizeof(data) - 1);
    struct config c;

    ck_assert_int_eq(conf_load(&c, path, err, sizeof(err)), 0);
    ck_assert_uint_eq(c.nlisten, 1);
    ck_assert_str_eq(fmt_listen(&c, 0), "127.0.0.1:1090");
    conf_release(&c);
    unlink(path);
}
END_TEST

START_TEST(test_load_error_names_the_file)
{
    static const char data[] = "relay auto\nrelay auto\n";
    const char *path = write_temp(data, sizeof(data) - 1);
    char want[128];
    struct config c;

    ck_assert_int_eq(conf_load(&c, path, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "%s:2: duplicate 'relay' (first on line 1)", path);
    ck_assert_str_eq(err, want);
    conf_release(&c);
    unlink(path);
}
END_TEST

START_TEST(test_unreadable_file_is_path_and_strerror)
{
    struct config c;

    ck_assert_int_eq(conf_load(&c, "/nonexistent/ferryd.conf", err, sizeof(err)), -1);
    ck_assert_str_eq(err, "/nonexistent/ferryd.conf: No such file or directory");
    conf_release(&c);

    ck_assert_int_eq(conf_load(&c, "/", err, sizeof(err)), -1);
    ck_assert_str_eq(err, "/: Is a directory");
    conf_release(&c);
}
END_TEST

START_TEST(test_control_characters_are_escaped_in_messages)
{
    parse_err("relay \x1b[31m\n", "t.conf:1: relay: unknown mode '\\x1b[31m' (auto, splice or "
                                  "buffered)");
}
END_TEST

START_TEST(test_too_many_arguments_on_a_line)
{
    parse_err("auth a b c d e f g h i j k l m n o p q r s t u v w x y z\n",
              "t.conf:1: auth: too many arguments");
}
END_TEST

START_TEST(test_a_full_config)
{
    struct config c;

    parse_ok(&c, "listen [::]:1081\n"
                 "auth password none\n"
                 "users /etc/ferry/users\n"
                 "resolver 127.0.0.1:5353\n"
                 "resolver-timeout 1s\n"
                 "resolver-tries 3\n"
                 "timeout negotiate 5\n"
                 "timeout idle 0\n"
                 "log syslog local0\n"
                 "log-level debug\n"
                 "max-sessions 100\n"
                 "auth-threads 4\n"
                 "relay splice\n"
                 "udp address 192.0.2.1\n"
                 "udp port-range 40000-40100\n"
                 "udp filter any\n"
                 "udp max-per-client 8\n"
                 "udp max-total 512\n"
                 "timeout udp 60\n"
                 "bind port-range 50000-50100\n"
                 "bind peer any\n"
                 "timeout bind 30\n"
                 "allow-unauthenticated yes\n"
                 "client pass from 192.0.2.0/24,2001:db8::/32 log\n"
                 "client block\n"
                 "request block to 10.0.0.0/8 log\n"
                 "request pass user alice,bob command connect,resolve to .example.com "
                 "port 80,443\n"
                 "request pass\n"
                 "trusted-clients 127.0.0.0/8 ::1 192.0.2.5\n"
                 "private-destinations allow\n");
    ck_assert_uint_eq(c.nlisten, 1);
    ck_assert_uint_eq(c.udp_max_per_client, 8);
    ck_assert_uint_eq(c.udp_max_total, 512);
    ck_assert(c.timeout_udp == 60);
    ck_assert(c.timeout_bind == 30);
    ck_assert(c.bind_any_peer);
    ck_assert_str_eq(servers_text(&c), "127.0.0.1:5353");
    ck_assert_int_eq(c.resolver_tries, 3);
    ck_assert(c.timeout_negotiate == 5);
    ck_assert(c.timeout_resolve == 10);
    ck_assert(c.timeout_idle == 0);
    ck_assert_int_eq(c.syslog_facility, LOG_LOCAL0);
    ck_assert_int_eq(c.log_level, LOG_DEBUG);
    ck_assert_uint_eq(c.auth_threads, 4);
    ck_assert(c.allow_unauthenticated);
    ck_assert(c.private_destinations);
    ck_assert_uint_eq(acl_rules_count(c.client_rules), 2);
    ck_assert_uint_eq(acl_rules_count(c.request_rules), 3);
    ck_assert_uint_eq(c.ntrusted_clients, 3);
    conf_release(&c);
}
END_TEST

START_TEST(test_shipped_example_config_loads)
{
    const char *srcdir = getenv("FERRY_SRCDIR");
    char path[PATH_MAX];
    struct config c;

    ck_assert_msg(srcdir != NULL, "FERRY_SRCDIR (the source tree) is not set");
    snprintf(path, sizeof(path), "%s/etc/ferryd.conf", srcdir);
    ck_assert_msg(conf_load(&c, path, err, sizeof(err)) == 0, "%s", err);
    conf_release(&c);
}
END_TEST

START_TEST(test_client_and_request_rules_are_numbered_in_file_order)
{
    struct config c;
    struct addr client = ip("192.0.2.9"), listener = ip("127.0.0.1:1080");
    struct acl_result r;

    parse_ok(&c, "client block from 192.0.2.9\n"
                 "request pass to example.com\n"
                 "# comment\n"
                 "client pass\n"
                 "request block\n");
    ck_assert_uint_eq(acl_rules_count(c.client_rules), 2);
    ck_assert_uint_eq(acl_rules_count(c.request_rules), 2);
    r = acl_check_client(c.client_rules, &client, &listener);
    ck_assert_int_eq(r.verdict, ACL_VERDICT_BLOCK);
    ck_assert_uint_eq(r.rule, 1);
    ck_assert_uint_eq(r.line, 1);
    client = ip("192.0.2.10");
    r = acl_check_client(c.client_rules, &client, &listener);
    ck_assert_int_eq(r.verdict, ACL_VERDICT_PASS);
    ck_assert_uint_eq(r.rule, 2);
    ck_assert_uint_eq(r.line, 4);
    {
        struct acl_request req = {
            .client = &client, .command = ACL_CMD_CONNECT, .name = "other.example", .port = 80};
        r = acl_check_request(c.request_rules, &req);
        ck_assert_int_eq(r.verdict, ACL_VERDICT_BLOCK);
        ck_assert_uint_eq(r.rule, 2);
        ck_assert_uint_eq(r.line, 5);
    }
    conf_release(&c);
}
END_TEST

START_TEST(test_only_one_kind_of_rules_leaves_the_other_null)
{
    struct config c;

    parse_ok(&c, "request block to .internal\n");
    ck_assert_ptr_null(c.client_rules);
    ck_assert_uint_eq(acl_rules_count(c.request_rules), 1);
    conf_release(&c);
}
END_TEST

START_TEST(test_rule_errors_name_file_and_line)
{
    parse_err("\n\nrequest pass to\n", "t.conf:3: request: 'to' needs a value");
    parse_err("request pass to 10.0.0.0/33\n",
              "t.conf:1: request: '10.0.0.0/33' is not an address range or host name");
    parse_err("client pass user alice\n",
              "t.conf:1: client: unknown condition 'user' (from, listener, log)");
    parse_err("request pass port 80 port 443\n", "t.conf:1: request: duplicate condition 'port'");
    parse_err("request allow\n", "t.conf:1: request: first word must be pass or block");
    parse_err("client\n", "t.conf:1: client: missing pass or block");
    parse_err("request\n", "t.conf:1: request: missing pass or block");
    parse_err("client pass from 10.0.0.0/8\nclient pass from 10.0.0.0/99\n",
              "t.conf:2: client: '10.0.0.0/99' is not an address range");
    parse_err("client pass listener example.com\n",
              "t.conf:1: client: 'example.com' is not an address (ADDRESS or ADDRESS:PORT)");
    /* The error leaves nothing behind, even when earlier rules were parsed. */
    parse_err("client pass\nrequest pass\nrequest block command jump\n",
              "t.conf:3: request: unknown command 'jump' (connect, bind, udp, resolve)");
    parse_err("request block to 10.0.0.0/8 private\n",
              "t.conf:1: request: 'private' is for a pass rule");
    parse_err("client pass private\n",
              "t.conf:1: client: unknown condition 'private' (from, listener, log)");
    parse_err("request pass private private\n", "t.conf:1: request: duplicate condition 'private'");
}
END_TEST

START_TEST(test_private_flag_parses_on_pass_rules)
{
    struct config c;

    parse_ok(&c, "request pass to 0.0.0.0/0 private log\nrequest pass private to 10.0.0.0/8\n");
    ck_assert_uint_eq(acl_rules_count(c.request_rules), 2);
    conf_release(&c);
}
END_TEST

/* With a password method and no trusted-clients line, no client is trusted (forwarders). */
START_TEST(test_password_auth_makes_trusted_clients_default_none)
{
    struct config c;

    parse_ok(&c, "auth password\nusers u\n");
    ck_assert_uint_eq(c.ntrusted_clients, 0);
    conf_release(&c);
    parse_ok(&c, "auth none password\nusers u\n");
    ck_assert_uint_eq(c.ntrusted_clients, 0);
    conf_release(&c);
    /* A trusted-clients line, before or after, is kept. */
    parse_ok(&c, "trusted-clients 127.0.0.0/8 ::1\nauth password\nusers u\n");
    ck_assert_uint_eq(c.ntrusted_clients, 2);
    ck_assert(trusted(&c, "127.0.0.1"));
    conf_release(&c);
    parse_ok(&c, "auth password\nusers u\ntrusted-clients 10.0.0.0/8\n");
    ck_assert_uint_eq(c.ntrusted_clients, 1);
    conf_release(&c);
    /* Without passwords the loopback default stays. */
    parse_ok(&c, "auth none\n");
    check_access_defaults(&c);
    conf_release(&c);
}
END_TEST

START_TEST(test_trusted_clients_replace_the_default)
{
    struct config c;

    parse_ok(&c, "trusted-clients 10.0.0.0/8 2001:db8::/32,192.0.2.1\n");
    ck_assert_uint_eq(c.ntrusted_clients, 3);
    ck_assert(trusted(&c, "10.1.2.3"));
    ck_assert(trusted(&c, "2001:db8::5"));
    ck_assert(trusted(&c, "192.0.2.1"));
    ck_assert(!trusted(&c, "192.0.2.2"));
    ck_assert(!trusted(&c, "127.0.0.1"));
    ck_assert(!trusted(&c, "::1"));
    conf_release(&c);

    parse_ok(&c, "trusted-clients none\n");
    ck_assert_uint_eq(c.ntrusted_clients, 0);
    ck_assert(!trusted(&c, "127.0.0.1"));
    conf_release(&c);
}
END_TEST

START_TEST(test_trusted_clients_errors)
{
    char text[1024] = "trusted-clients ";

    parse_err("trusted-clients\n", "t.conf:1: trusted-clients: missing CIDR or none");
    parse_err("trusted-clients 10.0.0.0/8 localhost\n",
              "t.conf:1: trusted-clients: 'localhost' is not an address range");
    parse_err("trusted-clients 10.0.0.0/8,,::1\n",
              "t.conf:1: trusted-clients: empty item in '10.0.0.0/8,,::1'");
    parse_err("trusted-clients 10.0.0.0/8,\n",
              "t.conf:1: trusted-clients: empty item in '10.0.0.0/8,'");
    parse_err("trusted-clients none ::1\n", "t.conf:1: trusted-clients: 'none' must stand alone");
    parse_err("trusted-clients ::1\ntrusted-clients ::1\n",
              "t.conf:2: duplicate 'trusted-clients' (first on line 1)");
    for (int i = 0; i <= CONF_MAX_TRUSTED; i++)
        snprintf(text + strlen(text), sizeof(text) - strlen(text), "%s10.0.0.%d", i > 0 ? "," : "",
                 i);
    strcat(text, "\n");
    parse_err(text, "t.conf:1: trusted-clients: too many ranges (at most 32)");
}
END_TEST

START_TEST(test_private_destinations_and_allow_unauthenticated_values)
{
    struct config c;

    parse_ok(&c, "private-destinations allow\n");
    ck_assert(c.private_destinations);
    conf_release(&c);
    parse_ok(&c, "private-destinations block\n");
    ck_assert(!c.private_destinations);
    conf_release(&c);
    parse_ok(&c, "allow-unauthenticated no\n");
    ck_assert(!c.allow_unauthenticated);
    conf_release(&c);
    parse_err("private-destinations open\n",
              "t.conf:1: private-destinations: unknown value 'open' (block or allow)");
    parse_err("private-destinations\n", "t.conf:1: private-destinations: missing block or allow");
    parse_err("allow-unauthenticated true\n",
              "t.conf:1: allow-unauthenticated: unknown value 'true' (no or yes)");
    parse_err("allow-unauthenticated yes yes\n", "t.conf:1: allow-unauthenticated: too many "
                                                 "arguments");
}
END_TEST

START_TEST(test_public_listener_without_auth_is_refused)
{
    parse_err("listen 127.0.0.1\n# public\nlisten 0.0.0.0:1080\n",
              "t.conf:3: listen 0.0.0.0:1080 is not a loopback address and auth allows 'none': "
              "use 'auth password', or 'allow-unauthenticated yes' with client rules");
    parse_err("listen [::]:1081\nauth none\n",
              "t.conf:1: listen [::]:1081 is not a loopback address and auth allows 'none': "
              "use 'auth password', or 'allow-unauthenticated yes' with client rules");
    /* 'none' beside 'password' still lets anybody in. */
    parse_err("auth password none\nusers u\nlisten 192.0.2.1\n",
              "t.conf:3: listen 192.0.2.1:1080 is not a loopback address and auth allows "
              "'none': use 'auth password', or 'allow-unauthenticated yes' with client rules");
    /* 128.0.0.1 is just outside loopback. */
    parse_err("listen 128.0.0.1\n",
              "t.conf:1: listen 128.0.0.1:1080 is not a loopback address and auth allows "
              "'none': use 'auth password', or 'allow-unauthenticated yes' with client rules");
}
END_TEST

START_TEST(test_public_listener_with_password_only_is_fine)
{
    struct config c;

    parse_ok(&c, "listen 0.0.0.0:1080\nlisten [::]:1080\nauth password\nusers u\n");
    conf_release(&c);
}
END_TEST

START_TEST(test_loopback_listeners_without_auth_are_fine)
{
    struct config c;

    parse_ok(&c, "listen 127.0.0.2:1080\nlisten [::1]:1081\nlisten 127.255.255.254\n"
                 "listen [::ffff:127.0.0.1]:1082\nauth none\n");
    ck_assert_uint_eq(c.nlisten, 4);
    conf_release(&c);
}
END_TEST

START_TEST(test_allow_unauthenticated_needs_client_rules)
{
    parse_err("listen 0.0.0.0\n\nallow-unauthenticated yes\nrequest pass\n",
              "t.conf:3: allow-unauthenticated yes needs at least one 'client' rule (who may "
              "connect)");
    /* Even on loopback: the setting is meaningless without rules, so it is a mistake. */
    parse_err("allow-unauthenticated yes\n",
              "t.conf:1: allow-unauthenticated yes needs at least one 'client' rule (who may "
              "connect)");
}
END_TEST

START_TEST(test_allow_unauthenticated_with_client_rule_serves_public_listener)
{
    struct config c;

    parse_ok(&c, "listen 0.0.0.0:1080\nauth none\nallow-unauthenticated yes\n"
                 "client pass from 192.0.2.0/24\n");
    ck_assert(c.allow_unauthenticated);
    ck_assert_uint_eq(acl_rules_count(c.client_rules), 1);
    conf_release(&c);

    /* Rules may come before the setting. */
    parse_ok(&c, "client block from 198.51.100.0/24\nlisten [::]\nallow-unauthenticated yes\n");
    conf_release(&c);
}
END_TEST

START_TEST(test_allow_unauthenticated_no_keeps_the_check)
{
    parse_err("listen 0.0.0.0\nallow-unauthenticated no\nclient pass from 192.0.2.0/24\n",
              "t.conf:1: listen 0.0.0.0:1080 is not a loopback address and auth allows 'none': "
              "use 'auth password', or 'allow-unauthenticated yes' with client rules");
}
END_TEST

START_TEST(test_limit_defaults)
{
    struct config c;

    conf_defaults(&c);
    ck_assert_uint_eq(c.sessions_per_client, 512);
    ck_assert_uint_eq(c.sessions_per_user, 0);
    ck_assert(c.accept_rate.rate == 0);
    ck_assert_double_eq_tol(c.auth_failures.rate, 10.0 / 60, 1e-12);
    ck_assert(c.auth_failures.burst == 10);
    ck_assert(c.bandwidth_per_client.rate == 0);
    ck_assert(c.bandwidth_per_user.rate == 0);
    ck_assert_uint_eq(c.quota_per_user, 0);
    ck_assert_uint_eq(c.workers, 0);
    conf_release(&c);
}
END_TEST

START_TEST(test_limit_settings)
{
    struct config c;

    parse_ok(&c, "limit sessions-per-client 10\n"
                 "limit sessions-per-user 3\n"
                 "limit accept-rate 600/1m\n"
                 "limit auth-failures 5/30s\n"
                 "limit bandwidth-per-client 2M\n"
                 "limit bandwidth-per-user 64K\n"
                 "limit quota-per-user 10G/1d\n"
                 "workers 4\n");
    ck_assert_uint_eq(c.sessions_per_client, 10);
    ck_assert_uint_eq(c.sessions_per_user, 3);
    ck_assert_double_eq_tol(c.accept_rate.rate, 10, 1e-12);
    ck_assert(c.accept_rate.burst == 600);
    ck_assert_double_eq_tol(c.auth_failures.rate, 5.0 / 30, 1e-12);
    ck_assert(c.bandwidth_per_client.rate == 2 * 1048576.0);
    ck_assert(c.bandwidth_per_client.burst == 2 * 1048576.0 / 10);
    ck_assert(c.bandwidth_per_user.rate == 65536);
    ck_assert(c.bandwidth_per_user.burst == 16384); /* at least 16 KiB */
    ck_assert_uint_eq(c.quota_per_user, 10ull << 30);
    ck_assert(c.quota_period == 86400);
    ck_assert_uint_eq(c.workers, 4);
    conf_release(&c);

    parse_ok(&c, "limit sessions-per-client off\nlimit auth-failures off\n"
                 "limit accept-rate 20\nworkers auto\n");
    ck_assert_uint_eq(c.sessions_per_client, 0);
    ck_assert(c.auth_failures.rate == 0);
    ck_assert(c.accept_rate.rate == 20 && c.accept_rate.burst == 20);
    ck_assert_uint_eq(c.workers, 0);
    conf_release(&c);
}
END_TEST

START_TEST(test_negotiation_limits)
{
    struct config c;

    parse_ok(&c, "max-negotiating 10:30:100\nlimit negotiating-per-client 4\n"
                 "limit client-prefix-ipv6 56\n");
    ck_assert_uint_eq(c.max_negotiating.start, 10);
    ck_assert_uint_eq(c.max_negotiating.rate, 30);
    ck_assert_uint_eq(c.max_negotiating.full, 100);
    ck_assert_uint_eq(c.negotiating_per_client, 4);
    ck_assert_uint_eq(c.client_prefix6, 56);
    conf_release(&c);
    /* One number: START = FULL, every one beyond dropped; off: none. */
    parse_ok(&c, "max-negotiating 20\nlimit negotiating-per-client off\n");
    ck_assert_uint_eq(c.max_negotiating.start, 20);
    ck_assert_uint_eq(c.max_negotiating.rate, 100);
    ck_assert_uint_eq(c.max_negotiating.full, 20);
    ck_assert_uint_eq(c.negotiating_per_client, 0);
    conf_release(&c);
    parse_ok(&c, "max-negotiating off\nmax-sessions 10\n");
    ck_assert_uint_eq(c.max_negotiating.start, 0);
    conf_release(&c);
    /* Not given: 512:30:1024, FULL at most half of max-sessions (at least 4), START at most
     * half of FULL. */
    parse_ok(&c, "max-sessions 3000\n");
    ck_assert_uint_eq(c.max_negotiating.full, 1024);
    ck_assert_uint_eq(c.max_negotiating.start, 512);
    conf_release(&c);
    parse_ok(&c, "max-sessions 1000\n");
    ck_assert_uint_eq(c.max_negotiating.full, 500);
    ck_assert_uint_eq(c.max_negotiating.start, 250);
    conf_release(&c);
    parse_ok(&c, "max-sessions 100\n");
    ck_assert_uint_eq(c.max_negotiating.full, 50);
    ck_assert_uint_eq(c.max_negotiating.start, 25);
    ck_assert_uint_eq(c.max_negotiating.rate, 30);
    conf_release(&c);
    parse_ok(&c, "max-sessions 2\n");
    ck_assert_uint_eq(c.max_negotiating.full, 4);
    ck_assert_uint_eq(c.max_negotiating.start, 2);
    conf_release(&c);

    parse_err("max-negotiating 10:30\n",
              "t.conf:1: max-negotiating: '10:30' is not START or START:RATE:FULL");
    parse_err("max-negotiating 10:30:100:4\n",
              "t.conf:1: max-negotiating: '10:30:100:4' is not START or START:RATE:FULL");
    parse_err("max-negotiating 10::100\n",
              "t.conf:1: max-negotiating: '10::100' is not START or START:RATE:FULL");
    parse_err("max-negotiating 10:101:100\n",
              "t.conf:1: max-negotiating: '101' is out of range (0..100)");
    parse_err("max-negotiating 100:30:10\n",
              "t.conf:1: max-negotiating: FULL (10) is below START (100)");
    parse_err("max-negotiating 0\n", "t.conf:1: max-negotiating: '0' is out of range (1..1000000)");
    parse_err("max-negotiating x\n", "t.conf:1: max-negotiating: 'x' is not a number");
    parse_err("limit client-prefix-ipv6 0\n",
              "t.conf:1: limit client-prefix-ipv6: '0' is out of range (1..128)");
    parse_err("limit client-prefix-ipv6 129\n",
              "t.conf:1: limit client-prefix-ipv6: '129' is out of range (1..128)");
}
END_TEST

START_TEST(test_relay_socket_tuning)
{
    struct config c;

    parse_ok(&c, "tune rcvbuf 64K\ntune sndbuf 1M\ntcp-keepalive on 60s 10 5\n"
                 "timeout half-closed 30s\n");
    ck_assert_uint_eq(c.stream.rcvbuf, 65536);
    ck_assert_uint_eq(c.stream.sndbuf, 1048576);
    ck_assert(c.stream.keepalive);
    ck_assert_uint_eq(c.stream.keepalive_idle, 60);
    ck_assert_uint_eq(c.stream.keepalive_interval, 10);
    ck_assert_uint_eq(c.stream.keepalive_count, 5);
    ck_assert(c.timeout_half_closed == 30);
    conf_release(&c);
    parse_ok(&c, "tune rcvbuf off\ntcp-keepalive on\ntimeout half-closed 0\n");
    ck_assert_uint_eq(c.stream.rcvbuf, 0);
    ck_assert(c.stream.keepalive);
    ck_assert_uint_eq(c.stream.keepalive_idle, 0);
    ck_assert(c.timeout_half_closed == 0);
    conf_release(&c);

    parse_err("tune rcvbuf 100\n", "t.conf:1: tune rcvbuf: '100' is too small (at least 1K)");
    parse_err("tune sndbuf 2G\n", "t.conf:1: tune sndbuf: '2G' is too large");
    parse_err("tune rcvbuf 1K\ntune rcvbuf 2K\n",
              "t.conf:2: duplicate 'tune rcvbuf' (first on line 1)");
    parse_err("tune speed 1\n", "t.conf:1: tune: unknown setting 'speed' (rcvbuf or sndbuf)");
    parse_err("tcp-keepalive maybe\n",
              "t.conf:1: tcp-keepalive: unknown value 'maybe' (off or on)");
    parse_err("tcp-keepalive on 60\n",
              "t.conf:1: tcp-keepalive: give 'off', 'on', or 'on IDLE INTERVAL COUNT'");
    parse_err("tcp-keepalive off 1 1 1\n",
              "t.conf:1: tcp-keepalive: give 'off', 'on', or 'on IDLE INTERVAL COUNT'");
    parse_err("tcp-keepalive on 60 10 200\n",
              "t.conf:1: tcp-keepalive: '200' is out of range (1..127)");
    parse_err("tcp-keepalive on 500ms 10 5\n",
              "t.conf:1: tcp-keepalive: IDLE and INTERVAL must be 1s to 32767s");
}
END_TEST

START_TEST(test_limit_errors)
{
    parse_err("limit\n", "t.conf:1: limit: missing SETTING");
    parse_err("limit speed 1\n", "t.conf:1: limit: unknown setting 'speed' (sessions-per-client, "
                                 "sessions-per-user, accept-rate, auth-failures, "
                                 "bandwidth-per-client, bandwidth-per-user, quota-per-user, "
                                 "negotiating-per-client or client-prefix-ipv6)");
    parse_err("limit sessions-per-client\n", "t.conf:1: limit sessions-per-client: missing N");
    parse_err("limit sessions-per-client 2\nlimit sessions-per-client 3\n",
              "t.conf:2: duplicate 'limit sessions-per-client' (first on line 1)");
    parse_err("limit sessions-per-user many\n",
              "t.conf:1: limit sessions-per-user: 'many' is not a number");
    parse_err("limit accept-rate 10/never\n", "t.conf:1: limit accept-rate: 'never' is not a "
                                              "duration (like 10, 10s, 250ms, 5m, 1h, 1d)");
    parse_err("limit accept-rate /1s\n", "t.conf:1: limit accept-rate: '/1s' is not a rate "
                                         "(COUNT/PERIOD, like 20/1s or 10/1m)");
    parse_err("limit auth-failures 10/0\n",
              "t.conf:1: limit auth-failures: '0' must be greater than zero");
    parse_err("limit bandwidth-per-user 10Mb\n", "t.conf:1: limit bandwidth-per-user: '10Mb' is "
                                                 "not a byte count (like 512K, 10M, 1G)");
    parse_err("limit bandwidth-per-client 99999999999999T\n",
              "t.conf:1: limit bandwidth-per-client: '99999999999999T' is too large");
    parse_err("limit quota-per-user 10G\n", "t.conf:1: limit quota-per-user: '10G' is not a "
                                            "quota (BYTES/PERIOD, like 10G/1d)");
    parse_err("workers 0\n", "t.conf:1: workers: '0' is out of range (1..256)");
}
END_TEST

/* Write text to a fresh file; returns its path (static buffer). */
static const char *write_conf(const char *text)
{
    static char path[64];
    int fd;

    strcpy(path, "/tmp/ferry-conf-XXXXXX");
    fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

START_TEST(test_overrides_replace_the_files_settings)
{
    const char *path = write_conf("listen 127.0.0.1:1\nlisten [::1]:2 advertise ::1\n"
                                  "auth none\nlog-level err\nuser daemon\n");
    struct conf_overrides ov = {.listen = {"127.0.0.2:3", "127.0.0.3"},
                                .nlisten = 2,
                                .users = "users.txt",
                                .log_level = "debug",
                                .user = "nobody",
                                .group = "nogroup"};
    char *cwd = getcwd(NULL, 0), want[PATH_MAX + 16];
    struct config c;

    ck_assert_msg(conf_load_with(&c, path, &ov, err, sizeof(err)) == 0, "%s", err);
    ck_assert_uint_eq(c.nlisten, 2);
    ck_assert_str_eq(fmt_listen(&c, 0), "127.0.0.2:3");
    ck_assert_str_eq(fmt_listen(&c, 1), "127.0.0.3:1080");
    ck_assert_uint_eq(c.listen_advertise[1].len, 0);
    /* --users: password only, the path from the current directory, loopback not trusted. */
    ck_assert_uint_eq(c.nmethods, 1);
    ck_assert_uint_eq(c.methods[0], SOCKS5_METHOD_USERPASS);
    snprintf(want, sizeof(want), "%s/users.txt", cwd);
    ck_assert_str_eq(c.users_file, want);
    ck_assert_uint_eq(c.ntrusted_clients, 0);
    ck_assert_int_eq(c.log_level, LOG_DEBUG);
    ck_assert_str_eq(c.run_user, "nobody");
    ck_assert_str_eq(c.run_group, "nogroup");
    conf_release(&c);
    unlink(path);
    free(cwd);
}
END_TEST

START_TEST(test_overrides_without_a_file_and_users_keeps_offered_methods)
{
    struct conf_overrides ov = {.users = "/etc/ferry/users"};
    const char *path = write_conf("auth password none\nusers /elsewhere\n");
    struct config c;

    ck_assert_msg(conf_load_with(&c, NULL, &ov, err, sizeof(err)) == 0, "%s", err);
    ck_assert(c.listen_is_default);
    ck_assert_uint_eq(c.nmethods, 1);
    ck_assert_str_eq(c.users_file, "/etc/ferry/users");
    conf_release(&c);
    /* The file offers password already: its methods stay, only the path changes. */
    ck_assert_msg(conf_load_with(&c, path, &ov, err, sizeof(err)) == 0, "%s", err);
    ck_assert_uint_eq(c.nmethods, 2);
    ck_assert_uint_eq(c.methods[0], SOCKS5_METHOD_USERPASS);
    ck_assert_uint_eq(c.methods[1], SOCKS5_METHOD_NOAUTH);
    ck_assert_str_eq(c.users_file, "/etc/ferry/users");
    conf_release(&c);
    unlink(path);
}
END_TEST

/* A flag must not open what the file kept closed, nor carry the file's exemption elsewhere. */
START_TEST(test_overrides_keep_the_safe_defaults)
{
    struct conf_overrides wide = {.listen = {"0.0.0.0:1080"}, .nlisten = 1};
    struct conf_overrides bad = {.listen = {"nowhere"}, .nlisten = 1};
    struct conf_overrides level = {.log_level = "loud"};
    struct conf_overrides group = {.group = "nogroup"};
    const char *path = write_conf("listen 10.0.0.1\nallow-unauthenticated yes\n"
                                  "client pass from 10.0.0.0/8\n");
    char want[512];
    struct config c;

    ck_assert_int_eq(conf_load_with(&c, NULL, &wide, err, sizeof(err)), -1);
    ck_assert_str_eq(err, "command line: --listen 0.0.0.0:1080 is not a loopback address and "
                          "auth allows 'none': give --users FILE (password authentication), or "
                          "write the listen line in the file with 'allow-unauthenticated yes' "
                          "and client rules");
    ck_assert_int_eq(conf_load_with(&c, path, NULL, err, sizeof(err)), 0);
    conf_release(&c);
    ck_assert_int_eq(conf_load_with(&c, path, &wide, err, sizeof(err)), -1);
    snprintf(want, sizeof(want),
             "command line: --listen 0.0.0.0:1080 is not a loopback address, and %s:2 allows "
             "unauthenticated clients for the file's own listen lines: put this listen line in "
             "the file to serve it without authentication, or give --users",
             path);
    ck_assert_str_eq(err, want);
    ck_assert_int_eq(conf_load_with(&c, NULL, &bad, err, sizeof(err)), -1);
    ck_assert_str_eq(err, "command line: listen: 'nowhere' is not an address");
    ck_assert_int_eq(conf_load_with(&c, NULL, &level, err, sizeof(err)), -1);
    ck_assert_str_eq(err, "command line: log-level: unknown level 'loud' (err, warning, notice, "
                          "info or debug)");
    ck_assert_int_eq(conf_load_with(&c, NULL, &group, err, sizeof(err)), -1);
    ck_assert_str_eq(err, "command line: group needs user (the user to run as: a user line or "
                          "--user)");
    unlink(path);
}
END_TEST

START_TEST(test_user_group_run_as_root)
{
    struct config c;

    parse_ok(&c, "");
    ck_assert_ptr_null(c.run_user);
    ck_assert_ptr_null(c.run_group);
    ck_assert(c.run_as_root);
    conf_release(&c);
    parse_ok(&c, "user ferry\ngroup ferry\nrun-as-root no\n");
    ck_assert_str_eq(c.run_user, "ferry");
    ck_assert_str_eq(c.run_group, "ferry");
    ck_assert(!c.run_as_root);
    conf_release(&c);
    parse_err("group ferry\n", "t.conf:1: group needs user (the user to run as: a user line or "
                               "--user)");
    parse_err("user a:b\n", "t.conf:1: user: 'a:b' is not a user or group name");
    parse_err("user a\nuser b\n", "t.conf:2: duplicate 'user' (first on line 1)");
    parse_err("run-as-root maybe\n", "t.conf:1: run-as-root: unknown value 'maybe' (no or yes)");
}
END_TEST

static Suite *config_suite(void)
{
    Suite *s = suite_create("conf");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_defaults_without_any_line);
    tcase_add_test(tc, test_comments_and_blank_lines_are_skipped);
    tcase_add_test(tc, test_crlf_and_missing_final_newline);
    tcase_add_test(tc, test_unknown_keyword);
    tcase_add_test(tc, test_listen_addresses_and_default_port);
    tcase_add_test(tc, test_listen_protocols);
    tcase_add_test(tc, test_listen_bad_address);
    tcase_add_test(tc, test_listen_duplicate_address);
    tcase_add_test(tc, test_listen_too_many);
    tcase_add_test(tc, test_auth_methods_in_order);
    tcase_add_test(tc, test_auth_errors);
    tcase_add_test(tc, test_auth_password_needs_users);
    tcase_add_test(tc, test_users_relative_path_uses_config_dir);
    tcase_add_test(tc, test_load_resolves_users_against_absolute_config_dir);
    tcase_add_test(tc, test_users_errors);
    tcase_add_test(tc, test_resolver_system_and_lists);
    tcase_add_test(tc, test_resolver_errors);
    tcase_add_test(tc, test_resolver_timeout_and_tries);
    tcase_add_test(tc, test_auth_cache);
    tcase_add_test(tc, test_durations);
    tcase_add_test(tc, test_timeouts);
    tcase_add_test(tc, test_timeout_errors);
    tcase_add_test(tc, test_timeout_udp_and_bind);
    tcase_add_test(tc, test_timeout_udp_and_bind_errors);
    tcase_add_test(tc, test_listen_advertise_any_family);
    tcase_add_test(tc, test_listen_advertise_errors);
    tcase_add_test(tc, test_tunnel_listener_and_settings);
    tcase_add_test(tc, test_udp_settings);
    tcase_add_test(tc, test_port_range_ephemeral_forms);
    tcase_add_test(tc, test_port_range_errors);
    tcase_add_test(tc, test_udp_errors);
    tcase_add_test(tc, test_bind_settings);
    tcase_add_test(tc, test_bind_errors);
    tcase_add_test(tc, test_udp_and_bind_settings_twice_are_duplicates);
    tcase_add_test(tc, test_log_targets);
    tcase_add_test(tc, test_log_formats);
    tcase_add_test(tc, test_log_levels);
    tcase_add_test(tc, test_max_sessions_and_auth_threads);
    tcase_add_test(tc, test_shutdown_grace_default_zero_and_errors);
    tcase_add_test(tc, test_relay_modes);
    tcase_add_test(tc, test_negotiation_limits);
    tcase_add_test(tc, test_relay_socket_tuning);
    tcase_add_test(tc, test_every_single_keyword_twice_is_duplicate);
    tcase_add_test(tc, test_long_line_is_an_error);
    tcase_add_test(tc, test_nul_byte_is_an_error);
    tcase_add_test(tc, test_load_reads_a_file);
    tcase_add_test(tc, test_load_error_names_the_file);
    tcase_add_test(tc, test_unreadable_file_is_path_and_strerror);
    tcase_add_test(tc, test_control_characters_are_escaped_in_messages);
    tcase_add_test(tc, test_too_many_arguments_on_a_line);
    tcase_add_test(tc, test_a_full_config);
    tcase_add_test(tc, test_client_and_request_rules_are_numbered_in_file_order);
    tcase_add_test(tc, test_only_one_kind_of_rules_leaves_the_other_null);
    tcase_add_test(tc, test_rule_errors_name_file_and_line);
    tcase_add_test(tc, test_private_flag_parses_on_pass_rules);
    tcase_add_test(tc, test_password_auth_makes_trusted_clients_default_none);
    tcase_add_test(tc, test_trusted_clients_replace_the_default);
    tcase_add_test(tc, test_trusted_clients_errors);
    tcase_add_test(tc, test_private_destinations_and_allow_unauthenticated_values);
    tcase_add_test(tc, test_public_listener_without_auth_is_refused);
    tcase_add_test(tc, test_public_listener_with_password_only_is_fine);
    tcase_add_test(tc, test_loopback_listeners_without_auth_are_fine);
    tcase_add_test(tc, test_allow_unauthenticated_needs_client_rules);
    tcase_add_test(tc, test_allow_unauthenticated_with_client_rule_serves_public_listener);
    tcase_add_test(tc, test_allow_unauthenticated_no_keeps_the_check);
    tcase_add_test(tc, test_shipped_example_config_loads);
    tcase_add_test(tc, test_limit_defaults);
    tcase_add_test(tc, test_limit_settings);
    tcase_add_test(tc, test_limit_errors);
    tcase_add_test(tc, test_overrides_replace_the_files_settings);
    tcase_add_test(tc, test_overrides_without_a_file_and_users_keeps_offered_methods);
    tcase_add_test(tc, test_overrides_keep_the_safe_defaults);
    tcase_add_test(tc, test_user_group_run_as_root);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(config_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
