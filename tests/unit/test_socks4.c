/* Unit tests for src/socks4.c: SOCKS4 and SOCKS4a requests and replies. */
#include "config.h"

#include <arpa/inet.h>
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/socks4.h"

/* Parse from a buffer of exactly len bytes so that valgrind and ASan catch any over-read. */
static enum proto_status parse(const uint8_t *msg, size_t len, struct socks4_request *req,
                               size_t *consumed)
{
    uint8_t *p = malloc(len ? len : 1);
    enum proto_status st;

    ck_assert_ptr_nonnull(p);
    if (len > 0)
        memcpy(p, msg, len);
    st = socks4_parse_request(p, len, req, consumed);
    free(p);
    return st;
}

/* Build VN CD DSTPORT DSTIP USERID NUL [HOSTNAME NUL]; returns the length. */
static size_t build(uint8_t *out, uint8_t cd, uint16_t port, const uint8_t ip[4],
                    const char *userid, const char *host)
{
    size_t n = 0;

    out[n++] = 0x04;
    out[n++] = cd;
    out[n++] = (uint8_t)(port >> 8);
    out[n++] = (uint8_t)(port & 0xff);
    memcpy(out + n, ip, 4);
    n += 4;
    memcpy(out + n, userid, strlen(userid) + 1);
    n += strlen(userid) + 1;
    if (host != NULL) {
        memcpy(out + n, host, strlen(host) + 1);
        n += strlen(host) + 1;
    }
    return n;
}

static void assert_prefixes(const uint8_t *msg, size_t len)
{
    struct socks4_request req;
    size_t consumed;

    for (size_t i = 0; i < len; i++) {
        consumed = 12345;
        ck_assert_msg(parse(msg, i, &req, &consumed) == PROTO_NEED_MORE,
                      "prefix of %zu/%zu bytes not NEED_MORE", i, len);
        ck_assert_uint_eq(consumed, 12345);
    }
    ck_assert_int_eq(parse(msg, len, &req, &consumed), PROTO_OK);
    ck_assert_uint_eq(consumed, len);
}

static const uint8_t ip_192_0_2_1[4] = {192, 0, 2, 1};
static const uint8_t ip_4a[4] = {0, 0, 0, 1};

START_TEST(test_connect_fields)
{
    uint8_t msg[64];
    size_t len = build(msg, SOCKS4_CMD_CONNECT, 80, ip_192_0_2_1, "fred", NULL);
    struct socks4_request req;
    size_t consumed = 0;

    memset(&req, 'x', sizeof(req));
    ck_assert_int_eq(parse(msg, len, &req, &consumed), PROTO_OK);
    ck_assert_uint_eq(consumed, 8 + 5);
    ck_assert_uint_eq(req.cmd, SOCKS4_CMD_CONNECT);
    ck_assert(!req.is_4a);
    ck_assert_int_eq(req.dest.type, DEST_IPV4);
    ck_assert_mem_eq(req.dest.ip, ip_192_0_2_1, 4);
    ck_assert_uint_eq(req.dest.port, 80);
    ck_assert_str_eq(req.userid, "fred");
}
END_TEST

START_TEST(test_bind_fields_and_port_byte_order)
{
    uint8_t msg[64];
    size_t len = build(msg, SOCKS4_CMD_BIND, 0x1234, ip_192_0_2_1, "", NULL);
    struct socks4_request req;
    size_t consumed = 0;

    ck_assert_int_eq(parse(msg, len, &req, &consumed), PROTO_OK);
    ck_assert_uint_eq(consumed, 9);
    ck_assert_uint_eq(req.cmd, SOCKS4_CMD_BIND);
    ck_assert_uint_eq(req.dest.port, 0x1234);
    ck_assert_str_eq(req.userid, "");
}
END_TEST

START_TEST(test_userid_255_bytes_parses)
{
    char userid[256];
    uint8_t msg[8 + 256];
    struct socks4_request req;
    size_t consumed = 0, len;

    memset(userid, 'u', 255);
    userid[255] = '\0';
    len = build(msg, SOCKS4_CMD_CONNECT, 80, ip_192_0_2_1, userid, NULL);
    ck_assert_uint_eq(len, sizeof(msg));
    ck_assert_int_eq(parse(msg, len, &req, &consumed), PROTO_OK);
    ck_assert_uint_eq(consumed, len);
    ck_assert_str_eq(req.userid, userid);
}
END_TEST

START_TEST(test_userid_256_bytes_is_error_without_waiting_for_nul)
{
    uint8_t msg[8 + 300];
    struct socks4_request req;
    size_t consumed;

    memcpy(msg, "\x04\x01\x00\x50\xc0\x00\x02\x01", 8);
    memset(msg + 8, 'u', 300);
    /* 255 bytes without NUL: the NUL may still come. */
    ck_assert_int_eq(parse(msg, 8 + 255, &req, &consumed), PROTO_NEED_MORE);
    /* The 256th byte is not the NUL: never valid. */
    ck_assert_int_eq(parse(msg, 8 + 256, &req, &consumed), PROTO_ERROR);
    ck_assert_int_eq(parse(msg, sizeof(msg), &req, &consumed), PROTO_ERROR);
    /* Even with the NUL right after 256 bytes. */
    msg[8 + 256] = '\0';
    ck_assert_int_eq(parse(msg, 8 + 257, &req, &consumed), PROTO_ERROR);
}
END_TEST

START_TEST(test_socks4a_fields)
{
    uint8_t msg[64];
    size_t len = build(msg, SOCKS4_CMD_CONNECT, 443, ip_4a, "joe", "example.com");
    struct socks4_request req;
    size_t consumed = 0;

    ck_assert_int_eq(parse(msg, len, &req, &consumed), PROTO_OK);
    ck_assert_uint_eq(consumed, len);
    ck_assert(req.is_4a);
    ck_assert_int_eq(req.dest.type, DEST_NAME);
    ck_assert_str_eq(req.dest.name, "example.com");
    ck_assert_uint_eq(req.dest.port, 443);
    ck_assert_str_eq(req.userid, "joe");
}
END_TEST

START_TEST(test_socks4a_with_empty_userid)
{
    uint8_t msg[64];
    size_t len = build(msg, SOCKS4_CMD_BIND, 21, ip_4a, "", "ftp.example.org");
    struct socks4_request req;
    size_t consumed = 0;

    ck_assert_int_eq(parse(msg, len, &req, &consumed), PROTO_OK);
    ck_assert_uint_eq(consumed, len);
    ck_assert(req.is_4a);
    ck_assert_uint_eq(req.cmd, SOCKS4_CMD_BIND);
    ck_assert_str_eq(req.dest.name, "ftp.example.org");
    ck_assert_str_eq(req.userid, "");
}
END_TEST

START_TEST(test_socks4a_only_for_0_0_0_x_with_x_nonzero)
{
    static const uint8_t ip_zero[4] = {0, 0, 0, 0};
    static const uint8_t ip_255[4] = {0, 0, 0, 255};
    static const uint8_t ip_0_0_1_1[4] = {0, 0, 1, 1};
    static const uint8_t ip_1_0_0_1[4] = {1, 0, 0, 1};
    uint8_t msg[64];
    struct socks4_request req;
    size_t consumed, len;

    /* 0.0.0.0 is plain SOCKS4: the bytes after USERID's NUL are not a host name. */
    len = build(msg, SOCKS4_CMD_CONNECT, 80, ip_zero, "u", NULL);
    ck_assert_int_eq(parse(msg, len, &req, &consumed), PROTO_OK);
    ck_assert(!req.is_4a);
    ck_assert_int_eq(req.dest.type, DEST_IPV4);

    len = build(msg, SOCKS4_CMD_CONNECT, 80, ip_255, "u", "h");
    ck_assert_int_eq(parse(msg, len, &req, &consumed), PROTO_OK);
    ck_assert(req.is_4a);
    ck_assert_str_eq(req.dest.name, "h");

    len = build(msg, SOCKS4_CMD_CONNECT, 80, ip_0_0_1_1, "u", "h");
    ck_assert_int_eq(parse(msg, len, &req, &consumed), PROTO_OK);
    ck_assert(!req.is_4a);
    ck_assert_uint_eq(consumed, 10);

    len = build(msg, SOCKS4_CMD_CONNECT, 80, ip_1_0_0_1, "u", "h");
    ck_assert_int_eq(parse(msg, len, &req, &consumed), PROTO_OK);
    ck_assert(!req.is_4a);
    ck_assert_uint_eq(consumed, 10);
}
END_TEST

START_TEST(test_socks4a_hostname_255_bytes_parses)
{
    char userid[256], host[256];
    uint8_t msg[8 + 256 + 256];
    struct socks4_request req;
    size_t consumed = 0, len;

    memset(userid, 'u', 255);
    userid[255] = '\0';
    memset(host, 'h', 255);
    host[255] = '\0';
    len = build(msg, SOCKS4_CMD_CONNECT, 80, ip_4a, userid, host);
    ck_assert_uint_eq(len, sizeof(msg));
    ck_assert_int_eq(parse(msg, len, &req, &consumed), PROTO_OK);
    ck_assert_uint_eq(consumed, len);
    ck_assert_str_eq(req.userid, userid);
    ck_assert_str_eq(req.dest.name, host);
}
END_TEST

START_TEST(test_socks4a_hostname_256_bytes_is_error_without_waiting_for_nul)
{
    uint8_t msg[8 + 2 + 300];
    struct socks4_request req;
    size_t consumed;

    memcpy(msg, "\x04\x01\x00\x50\x00\x00\x00\x01u", 10);
    memset(msg + 10, 'h', 300);
    ck_assert_int_eq(parse(msg, 10 + 255, &req, &consumed), PROTO_NEED_MORE);
    ck_assert_int_eq(parse(msg, 10 + 256, &req, &consumed), PROTO_ERROR);
    msg[10 + 256] = '\0';
    ck_assert_int_eq(parse(msg, 10 + 257, &req, &consumed), PROTO_ERROR);
}
END_TEST

START_TEST(test_socks4a_empty_hostname_is_error)
{
    static const uint8_t msg[] = {0x04, 0x01, 0x00, 0x50, 0, 0, 0, 1, 'u', 0, 0};
    struct socks4_request req;
    size_t consumed;

    ck_assert_int_eq(parse(msg, sizeof(msg) - 1, &req, &consumed), PROTO_NEED_MORE);
    ck_assert_int_eq(parse(msg, sizeof(msg), &req, &consumed), PROTO_ERROR);
}
END_TEST

START_TEST(test_every_prefix_needs_more_socks4)
{
    uint8_t msg[64];
    size_t len = build(msg, SOCKS4_CMD_CONNECT, 80, ip_192_0_2_1, "fred", NULL);

    assert_prefixes(msg, len);
    len = build(msg, SOCKS4_CMD_CONNECT, 80, ip_192_0_2_1, "", NULL);
    assert_prefixes(msg, len);
}
END_TEST

START_TEST(test_every_prefix_needs_more_socks4a)
{
    uint8_t msg[64];
    size_t len = build(msg, SOCKS4_CMD_CONNECT, 80, ip_4a, "fred", "example.com");

    assert_prefixes(msg, len);
    len = build(msg, SOCKS4_CMD_CONNECT, 80, ip_4a, "", "x");
    assert_prefixes(msg, len);
}
END_TEST

START_TEST(test_pipelined_leaves_extra_bytes)
{
    uint8_t msg[128];
    struct socks4_request req;
    size_t consumed = 0, len;

    len = build(msg, SOCKS4_CMD_CONNECT, 80, ip_192_0_2_1, "fred", NULL);
    memcpy(msg + len, "GET / HTTP/1.0\r\n\r\n", 18);
    ck_assert_int_eq(parse(msg, len + 18, &req, &consumed), PROTO_OK);
    ck_assert_uint_eq(consumed, len);
    ck_assert_str_eq(req.userid, "fred");

    len = build(msg, SOCKS4_CMD_CONNECT, 80, ip_4a, "fred", "example.com");
    memcpy(msg + len, "\0\0GET", 5);
    ck_assert_int_eq(parse(msg, len + 5, &req, &consumed), PROTO_OK);
    ck_assert_uint_eq(consumed, len);
    ck_assert_str_eq(req.dest.name, "example.com");
}
END_TEST

START_TEST(test_wrong_version_is_error_on_first_byte)
{
    struct socks4_request req;
    size_t consumed;

    ck_assert_int_eq(parse((const uint8_t *)"\x05", 1, &req, &consumed), PROTO_ERROR);
    ck_assert_int_eq(parse((const uint8_t *)"\x00", 1, &req, &consumed), PROTO_ERROR);
    ck_assert_int_eq(parse((const uint8_t *)"GET / HTTP/1.1\r\n", 16, &req, &consumed),
                     PROTO_ERROR);
}
END_TEST

START_TEST(test_unknown_command_is_error_on_second_byte)
{
    static const uint8_t cds[] = {0x00, 0x03, 0x5a, 0xef, 0xf1, 0xff};
    uint8_t msg[64];
    struct socks4_request req;
    size_t consumed, len;

    for (size_t i = 0; i < sizeof(cds); i++) {
        len = build(msg, cds[i], 80, ip_192_0_2_1, "u", NULL);
        ck_assert_int_eq(parse(msg, 2, &req, &consumed), PROTO_ERROR);
        ck_assert_int_eq(parse(msg, len, &req, &consumed), PROTO_ERROR);
    }
}
END_TEST

START_TEST(test_socks4a_resolve_parses)
{
    uint8_t msg[64];
    size_t len = build(msg, SOCKS4_CMD_RESOLVE, 0, ip_4a, "", "example.com");
    struct socks4_request req;
    size_t consumed = 0;

    ck_assert_int_eq(parse(msg, len, &req, &consumed), PROTO_OK);
    ck_assert_uint_eq(consumed, len);
    ck_assert_uint_eq(req.cmd, SOCKS4_CMD_RESOLVE);
    ck_assert(req.is_4a);
    ck_assert_int_eq(req.dest.type, DEST_NAME);
    ck_assert_str_eq(req.dest.name, "example.com");
    ck_assert_uint_eq(req.dest.port, 0);
}
END_TEST

START_TEST(test_plain_socks4_resolve_is_error_on_dstip)
{
    static const uint8_t ip_zero[4] = {0, 0, 0, 0};
    uint8_t msg[64];
    struct socks4_request req;
    size_t consumed, len;

    len = build(msg, SOCKS4_CMD_RESOLVE, 0, ip_192_0_2_1, "u", NULL);
    /* Still undecided until DSTIP is complete, refused once it is. */
    for (size_t i = 0; i < 8; i++)
        ck_assert_int_eq(parse(msg, i, &req, &consumed), PROTO_NEED_MORE);
    for (size_t i = 8; i <= len; i++)
        ck_assert_int_eq(parse(msg, i, &req, &consumed), PROTO_ERROR);

    len = build(msg, SOCKS4_CMD_RESOLVE, 0, ip_zero, "u", NULL);
    ck_assert_int_eq(parse(msg, len, &req, &consumed), PROTO_ERROR);
}
END_TEST

START_TEST(test_every_prefix_needs_more_socks4a_resolve)
{
    uint8_t msg[64];
    size_t len = build(msg, SOCKS4_CMD_RESOLVE, 0, ip_4a, "tor", "example.com");

    assert_prefixes(msg, len);
}
END_TEST

START_TEST(test_reply_ipv4_bound_is_byte_exact)
{
    struct sockaddr_in sin;
    uint8_t out[SOCKS4_REPLY_LEN];
    static const uint8_t want[] = {0x00, 90, 0x04, 0x38, 198, 51, 100, 7};

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons(1080);
    sin.sin_addr.s_addr = htonl(0xc6336407);
    ck_assert_uint_eq(socks4_encode_reply(out, SOCKS4_CD_GRANTED, (struct sockaddr *)&sin), 8);
    ck_assert_mem_eq(out, want, sizeof(want));
}
END_TEST

START_TEST(test_reply_ipv4_mapped_bound_fills_port_and_ip)
{
    struct sockaddr_in6 sin6;
    uint8_t out[SOCKS4_REPLY_LEN];
    static const uint8_t want[] = {0x00, 90, 0xc3, 0x50, 127, 0, 0, 1};

    memset(&sin6, 0, sizeof(sin6));
    sin6.sin6_family = AF_INET6;
    sin6.sin6_port = htons(50000);
    ck_assert_int_eq(inet_pton(AF_INET6, "::ffff:127.0.0.1", &sin6.sin6_addr), 1);
    ck_assert_uint_eq(socks4_encode_reply(out, SOCKS4_CD_GRANTED, (struct sockaddr *)&sin6), 8);
    ck_assert_mem_eq(out, want, sizeof(want));
}
END_TEST

START_TEST(test_reply_ipv6_bound_is_zeros)
{
    struct sockaddr_in6 sin6;
    uint8_t out[SOCKS4_REPLY_LEN];
    static const uint8_t want[] = {0x00, 90, 0, 0, 0, 0, 0, 0};

    memset(&sin6, 0, sizeof(sin6));
    sin6.sin6_family = AF_INET6;
    sin6.sin6_port = htons(50000);
    sin6.sin6_addr = in6addr_loopback;
    memset(out, 0xaa, sizeof(out));
    ck_assert_uint_eq(socks4_encode_reply(out, SOCKS4_CD_GRANTED, (struct sockaddr *)&sin6), 8);
    ck_assert_mem_eq(out, want, sizeof(want));
}
END_TEST

START_TEST(test_reply_null_bound_is_zeros)
{
    uint8_t out[SOCKS4_REPLY_LEN];
    static const uint8_t want[] = {0x00, 91, 0, 0, 0, 0, 0, 0};

    memset(out, 0xaa, sizeof(out));
    ck_assert_uint_eq(socks4_encode_reply(out, SOCKS4_CD_REJECTED, NULL), 8);
    ck_assert_mem_eq(out, want, sizeof(want));
}
END_TEST

/* The address a BIND reply can name: IPv4 as it is, IPv6 as IPv4 the way SOCKS4 allows. */
START_TEST(test_local_address_for_a_socks4_reply)
{
    static const struct {
        const char *local, *want;
    } cases[] = {
        {"192.0.2.1:80", "192.0.2.1:80"},
        {"[::ffff:192.0.2.7]:1080", "192.0.2.7:0"},
        {"[::1]:1080", "127.0.0.1:0"},
        {"[2001:db8::1]:1080", "0.0.0.0:0"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct addr a;
        char buf[ADDR_STRLEN];

        ck_assert_int_eq(addr_parse(cases[i].local, 0, &a), 0);
        socks4_local_address(&a);
        ck_assert_str_eq(addr_format(&a, buf, sizeof(buf)), cases[i].want);
    }
}
END_TEST

static Suite *socks4_suite(void)
{
    Suite *s = suite_create("socks4");
    TCase *tc;

    tc = tcase_create("request");
    tcase_add_test(tc, test_connect_fields);
    tcase_add_test(tc, test_bind_fields_and_port_byte_order);
    tcase_add_test(tc, test_userid_255_bytes_parses);
    tcase_add_test(tc, test_userid_256_bytes_is_error_without_waiting_for_nul);
    tcase_add_test(tc, test_socks4a_fields);
    tcase_add_test(tc, test_socks4a_with_empty_userid);
    tcase_add_test(tc, test_socks4a_only_for_0_0_0_x_with_x_nonzero);
    tcase_add_test(tc, test_socks4a_hostname_255_bytes_parses);
    tcase_add_test(tc, test_socks4a_hostname_256_bytes_is_error_without_waiting_for_nul);
    tcase_add_test(tc, test_socks4a_empty_hostname_is_error);
    tcase_add_test(tc, test_every_prefix_needs_more_socks4);
    tcase_add_test(tc, test_every_prefix_needs_more_socks4a);
    tcase_add_test(tc, test_pipelined_leaves_extra_bytes);
    tcase_add_test(tc, test_wrong_version_is_error_on_first_byte);
    tcase_add_test(tc, test_unknown_command_is_error_on_second_byte);
    tcase_add_test(tc, test_socks4a_resolve_parses);
    tcase_add_test(tc, test_plain_socks4_resolve_is_error_on_dstip);
    tcase_add_test(tc, test_every_prefix_needs_more_socks4a_resolve);
    suite_add_tcase(s, tc);

    tc = tcase_create("reply");
    tcase_add_test(tc, test_reply_ipv4_bound_is_byte_exact);
    tcase_add_test(tc, test_reply_ipv4_mapped_bound_fills_port_and_ip);
    tcase_add_test(tc, test_reply_ipv6_bound_is_zeros);
    tcase_add_test(tc, test_reply_null_bound_is_zeros);
    tcase_add_test(tc, test_local_address_for_a_socks4_reply);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(socks4_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
