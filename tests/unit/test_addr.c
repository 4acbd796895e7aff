/* Unit tests for src/addr.c: parsing, formatting and comparing socket addresses. */
#include "config.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/addr.h"

static const char *fmt(const struct addr *a)
{
    static char buf[ADDR_STRLEN];
    return addr_format(a, buf, sizeof(buf));
}

START_TEST(test_parse_ipv4_without_port_uses_default)
{
    struct addr a;
    ck_assert_int_eq(addr_parse("192.0.2.1", 1080, &a), 0);
    ck_assert_int_eq(addr_family(&a), AF_INET);
    ck_assert_uint_eq(addr_port(&a), 1080);
    ck_assert_uint_eq(a.len, sizeof(struct sockaddr_in));
    ck_assert_uint_eq(ntohl(a.u.in4.sin_addr.s_addr), 0xc0000201u);
}
END_TEST

START_TEST(test_parse_ipv4_with_port)
{
    struct addr a;
    ck_assert_int_eq(addr_parse("1.2.3.4:80", 1080, &a), 0);
    ck_assert_int_eq(addr_family(&a), AF_INET);
    ck_assert_uint_eq(addr_port(&a), 80);
    ck_assert_str_eq(fmt(&a), "1.2.3.4:80");
}
END_TEST

START_TEST(test_parse_port_limits)
{
    struct addr a;
    ck_assert_int_eq(addr_parse("1.2.3.4:65535", 1, &a), 0);
    ck_assert_uint_eq(addr_port(&a), 65535);
    ck_assert_int_eq(addr_parse("1.2.3.4:0", 1, &a), 0);
    ck_assert_uint_eq(addr_port(&a), 0);
    ck_assert_int_eq(addr_parse("1.2.3.4:00080", 1, &a), 0);
    ck_assert_uint_eq(addr_port(&a), 80);
    ck_assert_int_eq(addr_parse("1.2.3.4:65536", 1, &a), -1);
    ck_assert_int_eq(addr_parse("1.2.3.4:99999", 1, &a), -1);
    ck_assert_int_eq(addr_parse("1.2.3.4:000080", 1, &a), -1);
    ck_assert_int_eq(addr_parse("[::1]:65536", 1, &a), -1);
}
END_TEST

START_TEST(test_parse_bracketed_ipv6_with_port)
{
    struct addr a;
    static const uint8_t loop6[16] = {[15] = 1};
    ck_assert_int_eq(addr_parse("[::1]:80", 1080, &a), 0);
    ck_assert_int_eq(addr_family(&a), AF_INET6);
    ck_assert_uint_eq(addr_port(&a), 80);
    ck_assert_uint_eq(a.len, sizeof(struct sockaddr_in6));
    ck_assert_mem_eq(&a.u.in6.sin6_addr, loop6, 16);
    ck_assert_str_eq(fmt(&a), "[::1]:80");
}
END_TEST

START_TEST(test_parse_bracketed_ipv6_without_port_uses_default)
{
    struct addr a;
    ck_assert_int_eq(addr_parse("[2001:db8::1]", 1080, &a), 0);
    ck_assert_int_eq(addr_family(&a), AF_INET6);
    ck_assert_uint_eq(addr_port(&a), 1080);
    ck_assert_str_eq(fmt(&a), "[2001:db8::1]:1080");
}
END_TEST

START_TEST(test_parse_bare_ipv6_takes_no_port)
{
    struct addr a;
    ck_assert_int_eq(addr_parse("::1", 1080, &a), 0);
    ck_assert_int_eq(addr_family(&a), AF_INET6);
    ck_assert_uint_eq(addr_port(&a), 1080);
    ck_assert_int_eq(addr_parse("2001:db8::1", 7, &a), 0);
    ck_assert_uint_eq(addr_port(&a), 7);
    ck_assert_int_eq(addr_parse("::", 7, &a), 0);
    ck_assert_str_eq(fmt(&a), "[::]:7");
    /* "::1:80" is the address ::0.1.0.128, not ::1 with a port. */
    ck_assert_int_eq(addr_parse("::1:80", 7, &a), 0);
    ck_assert_uint_eq(addr_port(&a), 7);
}
END_TEST

START_TEST(test_parse_ipv4_mapped_ipv6)
{
    struct addr a;
    ck_assert_int_eq(addr_parse("[::ffff:192.0.2.1]:443", 0, &a), 0);
    ck_assert_int_eq(addr_family(&a), AF_INET6);
    ck_assert_str_eq(fmt(&a), "[::ffff:192.0.2.1]:443");
}
END_TEST

START_TEST(test_parse_rejects_junk)
{
    static const char *bad[] = {
        "",
        "1.2.3.4:",
        ":80",
        "1.2.3.4:x",
        "1.2.3.4:80x",
        "1.2.3.4:-1",
        "1.2.3.4: 80",
        " 1.2.3.4",
        "1.2.3.4 ",
        "1.2.3",
        "1.2.3.4.5",
        "256.1.1.1",
        "localhost",
        "example.com:80",
        "[::1",
        "[::1]:",
        "[::1]80",
        "[::1]:80x",
        "[]",
        "[]:80",
        "[1.2.3.4]:80",
        "::1]",
        "[::1]]:80",
        "::g",
        "1::2::3",
        "[::1%lo]:80",
        "0x01020304",
        "01.2.3.4x",
        "[0000:0000:0000:0000:0000:0000:0000:0000:0000]:80",
    };
    struct addr a;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(addr_parse(bad[i], 80, &a) == -1, "accepted \"%s\"", bad[i]);
    ck_assert_int_eq(addr_parse(NULL, 80, &a), -1);
}
END_TEST

START_TEST(test_parse_rejects_overlong_text)
{
    char text[512];
    struct addr a;
    memset(text, '1', sizeof(text) - 1);
    text[sizeof(text) - 1] = '\0';
    ck_assert_int_eq(addr_parse(text, 80, &a), -1);
    text[0] = '[';
    text[300] = ']';
    text[301] = '\0';
    ck_assert_int_eq(addr_parse(text, 80, &a), -1);
}
END_TEST

START_TEST(test_from_ipv4_and_ipv6_set_family_len_port)
{
    static const uint8_t ip4[4] = {10, 0, 0, 1};
    static const uint8_t ip6[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 0x42};
    struct addr a;

    addr_from_ipv4(&a, ip4, 8080);
    ck_assert_int_eq(addr_family(&a), AF_INET);
    ck_assert_uint_eq(a.len, sizeof(struct sockaddr_in));
    ck_assert_uint_eq(a.u.in4.sin_port, htons(8080));
    ck_assert_mem_eq(&a.u.in4.sin_addr, ip4, 4);
    ck_assert_str_eq(fmt(&a), "10.0.0.1:8080");

    addr_from_ipv6(&a, ip6, 53);
    ck_assert_int_eq(addr_family(&a), AF_INET6);
    ck_assert_uint_eq(a.len, sizeof(struct sockaddr_in6));
    ck_assert_uint_eq(a.u.in6.sin6_port, htons(53));
    ck_assert_mem_eq(&a.u.in6.sin6_addr, ip6, 16);
    ck_assert_str_eq(fmt(&a), "[2001:db8::42]:53");
}
END_TEST

START_TEST(test_from_sockaddr_copies_inet_and_inet6)
{
    struct sockaddr_in sin;
    struct sockaddr_in6 sin6;
    struct addr a;

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons(1234);
    sin.sin_addr.s_addr = htonl(0x7f000001);
    ck_assert_int_eq(addr_from_sockaddr(&a, (struct sockaddr *)&sin, sizeof(sin)), 0);
    ck_assert_uint_eq(a.len, sizeof(sin));
    ck_assert_str_eq(fmt(&a), "127.0.0.1:1234");

    memset(&sin6, 0, sizeof(sin6));
    sin6.sin6_family = AF_INET6;
    sin6.sin6_port = htons(4321);
    sin6.sin6_addr = in6addr_loopback;
    ck_assert_int_eq(addr_from_sockaddr(&a, (struct sockaddr *)&sin6, sizeof(sin6)), 0);
    ck_assert_uint_eq(a.len, sizeof(sin6));
    ck_assert_str_eq(fmt(&a), "[::1]:4321");
}
END_TEST

START_TEST(test_from_sockaddr_rejects_other_families_and_short_lengths)
{
    struct sockaddr_storage ss;
    struct addr a;

    memset(&ss, 0, sizeof(ss));
    ss.ss_family = AF_UNIX;
    errno = 0;
    ck_assert_int_eq(addr_from_sockaddr(&a, (struct sockaddr *)&ss, sizeof(ss)), -1);
    ck_assert_int_eq(errno, EAFNOSUPPORT);

    ss.ss_family = AF_INET6;
    ck_assert_int_eq(addr_from_sockaddr(&a, (struct sockaddr *)&ss, sizeof(struct sockaddr_in)),
                     -1);
    ss.ss_family = AF_INET;
    ck_assert_int_eq(addr_from_sockaddr(&a, (struct sockaddr *)&ss, 4), -1);
    ck_assert_int_eq(addr_from_sockaddr(&a, NULL, 0), -1);
}
END_TEST

START_TEST(test_set_port_changes_only_port)
{
    struct addr a, b;
    ck_assert_int_eq(addr_parse("192.0.2.7:1", 0, &a), 0);
    addr_set_port(&a, 65535);
    ck_assert_uint_eq(addr_port(&a), 65535);
    ck_assert_int_eq(addr_parse("192.0.2.7:65535", 0, &b), 0);
    ck_assert(addr_equal(&a, &b));

    ck_assert_int_eq(addr_parse("[2001:db8::7]:1", 0, &a), 0);
    addr_set_port(&a, 443);
    ck_assert_str_eq(fmt(&a), "[2001:db8::7]:443");
}
END_TEST

START_TEST(test_equal_compares_family_address_and_port)
{
    struct addr a, b;

    ck_assert_int_eq(addr_parse("192.0.2.1:80", 0, &a), 0);
    ck_assert_int_eq(addr_parse("192.0.2.1:80", 0, &b), 0);
    ck_assert(addr_equal(&a, &b));
    ck_assert_int_eq(addr_parse("192.0.2.1:81", 0, &b), 0);
    ck_assert(!addr_equal(&a, &b));
    ck_assert_int_eq(addr_parse("192.0.2.2:80", 0, &b), 0);
    ck_assert(!addr_equal(&a, &b));
    /* Same IPv4 address but as IPv4-mapped IPv6: different family. */
    ck_assert_int_eq(addr_parse("[::ffff:192.0.2.1]:80", 0, &b), 0);
    ck_assert(!addr_equal(&a, &b));

    ck_assert_int_eq(addr_parse("[2001:db8::1]:80", 0, &a), 0);
    ck_assert_int_eq(addr_parse("2001:db8:0::1", 80, &b), 0);
    ck_assert(addr_equal(&a, &b));
    ck_assert_int_eq(addr_parse("[2001:db8::2]:80", 0, &b), 0);
    ck_assert(!addr_equal(&a, &b));
    ck_assert_int_eq(addr_parse("[2001:db8::1]:8080", 0, &b), 0);
    ck_assert(!addr_equal(&a, &b));
}
END_TEST

START_TEST(test_format_ip_has_no_port_or_brackets)
{
    char buf[ADDR_STRLEN];
    struct addr a;

    ck_assert_int_eq(addr_parse("[2001:db8::1]:80", 0, &a), 0);
    ck_assert_str_eq(addr_format_ip(&a, buf, sizeof(buf)), "2001:db8::1");
    ck_assert_int_eq(addr_parse("198.51.100.9:80", 0, &a), 0);
    ck_assert_str_eq(addr_format_ip(&a, buf, sizeof(buf)), "198.51.100.9");
}
END_TEST

START_TEST(test_format_port_zero_is_written)
{
    struct addr a;
    ck_assert_int_eq(addr_parse("0.0.0.0", 0, &a), 0);
    ck_assert_str_eq(fmt(&a), "0.0.0.0:0");
}
END_TEST

START_TEST(test_format_longest_ipv6_fits_addr_strlen)
{
    char buf[ADDR_STRLEN];
    struct addr a;

    ck_assert_int_eq(addr_parse("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535", 0, &a), 0);
    ck_assert_str_eq(addr_format(&a, buf, sizeof(buf)),
                     "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535");
    /* The longest text inet_ntop can produce, plus brackets and the largest port. */
    ck_assert_int_eq(addr_parse("[::ffff:255.255.255.255]:65535", 0, &a), 0);
    ck_assert_str_eq(addr_format(&a, buf, sizeof(buf)), "[::ffff:255.255.255.255]:65535");
}
END_TEST

START_TEST(test_format_truncates_into_small_buffers)
{
    char buf[8];
    struct addr a;

    ck_assert_int_eq(addr_parse("[2001:db8::1]:80", 0, &a), 0);
    memset(buf, 'x', sizeof(buf));
    ck_assert_ptr_eq(addr_format(&a, buf, 5), buf);
    ck_assert_str_eq(buf, "[200");
    ck_assert_int_eq(buf[5], 'x');
    memset(buf, 'x', sizeof(buf));
    addr_format_ip(&a, buf, 3);
    ck_assert_str_eq(buf, "20");
    memset(buf, 'x', sizeof(buf));
    addr_format(&a, buf, 1);
    ck_assert_int_eq(buf[0], '\0');
    ck_assert_int_eq(buf[1], 'x');
    buf[0] = 'x';
    addr_format(&a, buf, 0);
    addr_format_ip(&a, buf, 0);
    ck_assert_int_eq(buf[0], 'x');
}
END_TEST

START_TEST(test_format_unknown_family)
{
    char buf[ADDR_STRLEN];
    struct addr a;
    memset(&a, 0, sizeof(a));
    a.u.sa.sa_family = AF_UNIX;
    ck_assert_str_eq(addr_format(&a, buf, sizeof(buf)), "?");
    ck_assert_uint_eq(addr_port(&a), 0);
    ck_assert(!addr_equal(&a, &a));
}
END_TEST

/* --- IPv4-mapped forms and kinds of address ---------------------------------------------- */

/* An address from text, port 0 unless given ("192.0.2.1", "::1", "[::1]:1080"). */
static struct addr ip(const char *text)
{
    struct addr a;

    ck_assert_msg(addr_parse(text, 0, &a) == 0, "bad test address %s", text);
    return a;
}

START_TEST(test_ipv4_bytes_of_plain_and_mapped_only)
{
    struct addr a4 = ip("192.0.2.1"), m = ip("::ffff:192.0.2.1"), v6 = ip("2001:db8::1");
    static const uint8_t want[4] = {192, 0, 2, 1};

    ck_assert_mem_eq(addr_ipv4_bytes(&a4), want, 4);
    ck_assert_mem_eq(addr_ipv4_bytes(&m), want, 4);
    ck_assert_ptr_null(addr_ipv4_bytes(&v6));
    v6 = ip("::192.0.2.1"); /* IPv4-compatible is not mapped */
    ck_assert_ptr_null(addr_ipv4_bytes(&v6));
}
END_TEST

START_TEST(test_unmap_turns_mapped_into_ipv4_and_keeps_the_port)
{
    struct addr a = ip("[::ffff:192.0.2.1]:1080"), v6 = ip("[2001:db8::1]:53"), before;

    addr_unmap(&a);
    ck_assert_int_eq(addr_family(&a), AF_INET);
    ck_assert_uint_eq(a.len, sizeof(struct sockaddr_in));
    ck_assert_str_eq(fmt(&a), "192.0.2.1:1080");
    before = a;
    addr_unmap(&a);
    ck_assert(addr_equal(&a, &before));
    before = v6;
    addr_unmap(&v6);
    ck_assert(addr_equal(&v6, &before));
}
END_TEST

START_TEST(test_loopback_forms)
{
    static const char *const yes[] = {"127.0.0.1", "127.255.0.9", "::1", "::ffff:127.0.0.1"};
    static const char *const no[] = {"128.0.0.1",   "0.0.0.0",         "::",         "::2",
                                     "::127.0.0.1", "::ffff:10.0.0.1", "2001:db8::1"};

    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        struct addr a = ip(yes[i]);
        ck_assert_msg(addr_is_loopback(&a), "%s", yes[i]);
    }
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
        struct addr a = ip(no[i]);
        ck_assert_msg(!addr_is_loopback(&a), "%s", no[i]);
    }
}
END_TEST

START_TEST(test_unicast_is_neither_unspecified_nor_multicast)
{
    static const char *const yes[] = {"192.0.2.1", "223.255.255.255", "240.0.0.1",
                                      "::1",       "2001:db8::1",     "::ffff:0.0.0.0"};
    static const char *const no[] = {"0.0.0.0", "224.0.0.1", "239.255.255.255", "::", "ff02::1"};

    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        struct addr a = ip(yes[i]);
        ck_assert_msg(addr_is_unicast(&a), "%s", yes[i]);
    }
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
        struct addr a = ip(no[i]);
        ck_assert_msg(!addr_is_unicast(&a), "%s", no[i]);
    }
}
END_TEST

/* --- address ranges ---------------------------------------------------------------------- */

static struct addr_cidr cidr(const char *text)
{
    struct addr_cidr c;

    ck_assert_msg(addr_cidr_parse(text, &c) == 0, "'%s' did not parse", text);
    return c;
}

static bool contains(const char *range, const char *address)
{
    struct addr_cidr c = cidr(range);
    struct addr a = ip(address);

    return addr_cidr_contains(&c, &a);
}

static const char *net_text(const struct addr_cidr *c)
{
    static char buf[ADDR_STRLEN];
    return addr_format_ip(&c->net, buf, sizeof(buf));
}

START_TEST(test_cidr_parse_forms)
{
    struct addr_cidr c;

    c = cidr("192.0.2.0/24");
    ck_assert_int_eq(addr_family(&c.net), AF_INET);
    ck_assert_str_eq(net_text(&c), "192.0.2.0");
    ck_assert_uint_eq(c.prefix, 24);
    c = cidr("192.0.2.1");
    ck_assert_uint_eq(c.prefix, 32);
    c = cidr("0.0.0.0/0");
    ck_assert_uint_eq(c.prefix, 0);
    c = cidr("2001:db8::/32");
    ck_assert_int_eq(addr_family(&c.net), AF_INET6);
    ck_assert_uint_eq(c.prefix, 32);
    c = cidr("::1");
    ck_assert_uint_eq(c.prefix, 128);
    c = cidr("[2001:db8::1]");
    ck_assert_uint_eq(c.prefix, 128);
    ck_assert_str_eq(net_text(&c), "2001:db8::1");
    c = cidr("[2001:db8::]/48");
    ck_assert_uint_eq(c.prefix, 48);
    c = cidr("::/0");
    ck_assert_uint_eq(c.prefix, 0);
    c = cidr("10.0.0.0/008");
    ck_assert_uint_eq(c.prefix, 8);
    ck_assert_uint_eq(addr_port(&c.net), 0);
}
END_TEST

START_TEST(test_cidr_host_bits_are_cleared)
{
    struct addr_cidr c;

    c = cidr("10.1.2.3/8");
    ck_assert_str_eq(net_text(&c), "10.0.0.0");
    c = cidr("192.168.255.255/17");
    ck_assert_str_eq(net_text(&c), "192.168.128.0");
    c = cidr("203.0.113.9/0");
    ck_assert_str_eq(net_text(&c), "0.0.0.0");
    c = cidr("2001:db8:ffff:ffff::1/33");
    ck_assert_str_eq(net_text(&c), "2001:db8:8000::");
    c = cidr("fe80::1/10");
    ck_assert_str_eq(net_text(&c), "fe80::");
    ck_assert(contains("10.1.2.3/8", "10.200.0.1"));
}
END_TEST

START_TEST(test_cidr_parse_rejects_junk)
{
    static const char *const bad[] = {
        "",
        "/8",
        "10.0.0.0/",
        "10.0.0.0/33",
        "10.0.0.0/-1",
        "10.0.0.0/+8",
        "10.0.0.0/ 8",
        "10.0.0.0/8/8",
        "10.0.0.0/1000",
        "10.0.0.0/0x8",
        "::/129",
        "10/8",
        "10.0.0/24",
        "10.0.0.256",
        "1.2.3.4.5",
        "example.com",
        "[10.0.0.1]",
        "[::1",
        "::1]",
        "[::1]x",
        "fe80::1%eth0",
        " 10.0.0.1",
        "10.0.0.1 ",
        "any",
        "2001:db8:::/32",
    };
    struct addr_cidr c;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(addr_cidr_parse(bad[i], &c) == -1, "'%s' was accepted", bad[i]);
    ck_assert_int_eq(addr_cidr_parse(NULL, &c), -1);
}
END_TEST

START_TEST(test_cidr_edges)
{
    /* Boundaries just inside and just outside. */
    ck_assert(contains("192.168.0.0/16", "192.168.0.0"));
    ck_assert(contains("192.168.0.0/16", "192.168.255.255"));
    ck_assert(!contains("192.168.0.0/16", "192.167.255.255"));
    ck_assert(!contains("192.168.0.0/16", "192.169.0.0"));
    ck_assert(contains("100.64.0.0/10", "100.127.255.255"));
    ck_assert(!contains("100.64.0.0/10", "100.128.0.0"));
    ck_assert(!contains("100.64.0.0/10", "100.63.255.255"));
    ck_assert(contains("192.0.2.128/25", "192.0.2.128"));
    ck_assert(!contains("192.0.2.128/25", "192.0.2.127"));
    ck_assert(contains("192.0.2.1/31", "192.0.2.0"));
    ck_assert(!contains("192.0.2.1/31", "192.0.2.2"));
    /* /0 and /32 */
    ck_assert(contains("0.0.0.0/0", "0.0.0.0"));
    ck_assert(contains("0.0.0.0/0", "255.255.255.255"));
    ck_assert(contains("192.0.2.1/32", "192.0.2.1"));
    ck_assert(!contains("192.0.2.1/32", "192.0.2.0"));
    ck_assert(!contains("192.0.2.1/32", "192.0.2.2"));
    ck_assert(contains("255.255.255.255", "255.255.255.255"));
    /* IPv6: /0, /128, odd prefixes */
    ck_assert(contains("::/0", "::"));
    ck_assert(contains("::/0", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
    ck_assert(contains("2001:db8::1/128", "2001:db8::1"));
    ck_assert(!contains("2001:db8::1/128", "2001:db8::"));
    ck_assert(!contains("2001:db8::1/128", "2001:db8::2"));
    ck_assert(contains("2001:db8::/32", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"));
    ck_assert(!contains("2001:db8::/32", "2001:db9::"));
    ck_assert(!contains("2001:db8::/32", "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff"));
    ck_assert(contains("2001:db8::/127", "2001:db8::1"));
    ck_assert(!contains("2001:db8::/127", "2001:db8::2"));
    ck_assert(contains("fe80::/10", "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
    ck_assert(!contains("fe80::/10", "fec0::"));
    /* Families: an IPv4 range and a real IPv6 address never meet. */
    ck_assert(!contains("0.0.0.0/0", "2001:db8::1"));
    ck_assert(!contains("::/0", "192.0.2.1"));
    ck_assert(contains("192.0.2.0/24", "::ffff:192.0.2.1"));
    ck_assert(contains("::ffff:192.0.2.0/120", "192.0.2.1"));
    ck_assert(!contains("::ffff:192.0.2.0/120", "192.0.3.1"));
    ck_assert(contains("::ffff:0:0/96", "0.0.0.0"));
    /* A range wider than the mapped block is IPv6 only. */
    ck_assert(!contains("::ffff:0:0/95", "192.0.2.1"));
    ck_assert(!contains("::ffff:0:0/95", "::ffff:192.0.2.1"));
    ck_assert(contains("::ffff:0:0/95", "::fffe:0:1"));
}
END_TEST

START_TEST(test_cidr_contains_handles_null)
{
    struct addr_cidr c = cidr("0.0.0.0/0");
    struct addr a = ip("192.0.2.1");

    ck_assert(!addr_cidr_contains(NULL, &a));
    ck_assert(!addr_cidr_contains(&c, NULL));
}
END_TEST

static Suite *addr_suite(void)
{
    Suite *s = suite_create("addr");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_parse_ipv4_without_port_uses_default);
    tcase_add_test(tc, test_parse_ipv4_with_port);
    tcase_add_test(tc, test_parse_port_limits);
    tcase_add_test(tc, test_parse_bracketed_ipv6_with_port);
    tcase_add_test(tc, test_parse_bracketed_ipv6_without_port_uses_default);
    tcase_add_test(tc, test_parse_bare_ipv6_takes_no_port);
    tcase_add_test(tc, test_parse_ipv4_mapped_ipv6);
    tcase_add_test(tc, test_parse_rejects_junk);
    tcase_add_test(tc, test_parse_rejects_overlong_text);
    tcase_add_test(tc, test_from_ipv4_and_ipv6_set_family_len_port);
    tcase_add_test(tc, test_from_sockaddr_copies_inet_and_inet6);
    tcase_add_test(tc, test_from_sockaddr_rejects_other_families_and_short_lengths);
    tcase_add_test(tc, test_set_port_changes_only_port);
    tcase_add_test(tc, test_equal_compares_family_address_and_port);
    tcase_add_test(tc, test_format_ip_has_no_port_or_brackets);
    tcase_add_test(tc, test_format_port_zero_is_written);
    tcase_add_test(tc, test_format_longest_ipv6_fits_addr_strlen);
    tcase_add_test(tc, test_format_truncates_into_small_buffers);
    tcase_add_test(tc, test_format_unknown_family);
    tcase_add_test(tc, test_ipv4_bytes_of_plain_and_mapped_only);
    tcase_add_test(tc, test_unmap_turns_mapped_into_ipv4_and_keeps_the_port);
    tcase_add_test(tc, test_loopback_forms);
    tcase_add_test(tc, test_unicast_is_neither_unspecified_nor_multicast);
    tcase_add_test(tc, test_cidr_parse_forms);
    tcase_add_test(tc, test_cidr_host_bits_are_cleared);
    tcase_add_test(tc, test_cidr_parse_rejects_junk);
    tcase_add_test(tc, test_cidr_edges);
    tcase_add_test(tc, test_cidr_contains_handles_null);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(addr_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
