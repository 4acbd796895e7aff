/* Unit tests for the client side of SOCKS5, SOCKS4a and HTTP CONNECT (parent proxies). */
#include "config.h"

#include <check.h>
#include <sodium.h>
#include <string.h>

#include "ferry/socks4.h"
#include "ferry/socks5.h"
#include "ferry/upstream_http.h"
#include "ferry/upstream_socks.h"

static struct socks_dest name_dest(const char *name, uint16_t port)
{
    struct socks_dest d;

    memset(&d, 0, sizeof(d));
    d.type = DEST_NAME;
    d.port = port;
    snprintf(d.name, sizeof(d.name), "%s", name);
    return d;
}

static struct socks_dest ip_dest(enum dest_type type, const uint8_t *ip, uint16_t port)
{
    struct socks_dest d;

    memset(&d, 0, sizeof(d));
    d.type = type;
    d.port = port;
    memcpy(d.ip, ip, type == DEST_IPV4 ? 4 : 16);
    return d;
}

START_TEST(test_socks5_greeting_offers_userpass_only_with_credentials)
{
    uint8_t out[4];

    ck_assert_uint_eq(upstream_socks5_greeting(out, false), 3);
    ck_assert_mem_eq(out, "\x05\x01\x00", 3);
    ck_assert_uint_eq(upstream_socks5_greeting(out, true), 4);
    ck_assert_mem_eq(out, "\x05\x02\x00\x02", 4);
}
END_TEST

START_TEST(test_socks5_method_reply_split_and_bad_version)
{
    uint8_t method = 0xaa;
    size_t used = 0;

    ck_assert_int_eq(upstream_socks5_parse_method((const uint8_t *)"\x05", 1, &method, &used),
                     PROTO_NEED_MORE);
    ck_assert_int_eq(upstream_socks5_parse_method((const uint8_t *)"\x05\xff", 2, &method, &used),
                     PROTO_OK);
    ck_assert_int_eq(method, 0xff);
    ck_assert_uint_eq(used, 2);
    ck_assert_int_eq(upstream_socks5_parse_method((const uint8_t *)"\x04", 1, &method, &used),
                     PROTO_ERROR);
}
END_TEST

START_TEST(test_socks5_userpass_request_and_reply)
{
    uint8_t out[UPSTREAM_SOCKS5_USERPASS_MAX];
    char long_name[300];
    bool ok = false;
    size_t used;

    ck_assert_uint_eq(upstream_socks5_userpass(out, "alice", "pw"), 10);
    ck_assert_mem_eq(out,
                     "\x01\x05"
                     "alice\x02pw",
                     10);
    memset(long_name, 'a', 256);
    long_name[256] = '\0';
    ck_assert_uint_eq(upstream_socks5_userpass(out, long_name, "pw"), 0);
    ck_assert_uint_eq(upstream_socks5_userpass(out, "", "pw"), 0);
    ck_assert_int_eq(
        upstream_socks5_parse_userpass_reply((const uint8_t *)"\x01\x00", 2, &ok, &used), PROTO_OK);
    ck_assert(ok);
    /* Some servers answer with VER 5. */
    ck_assert_int_eq(
        upstream_socks5_parse_userpass_reply((const uint8_t *)"\x05\x01", 2, &ok, &used), PROTO_OK);
    ck_assert(!ok);
    ck_assert_int_eq(
        upstream_socks5_parse_userpass_reply((const uint8_t *)"\x02\x00", 2, &ok, &used),
        PROTO_ERROR);
}
END_TEST

START_TEST(test_socks5_request_encodes_each_address_type_and_parses_back)
{
    static const uint8_t ip4[4] = {192, 0, 2, 1};
    static const uint8_t ip6[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 1};
    struct socks_dest dests[3] = {name_dest("example.com", 443), ip_dest(DEST_IPV4, ip4, 80),
                                  ip_dest(DEST_IPV6, ip6, 53)};
    uint8_t out[UPSTREAM_SOCKS5_REQUEST_MAX];

    for (int i = 0; i < 3; i++) {
        struct socks5_request req;
        size_t n = upstream_socks5_request(out, SOCKS5_CMD_CONNECT, &dests[i]), used = 0;
        uint8_t rep;

        /* What we send is what our own server parses. */
        ck_assert_int_eq(socks5_parse_request(out, n, &req, &used, &rep), PROTO_OK);
        ck_assert_uint_eq(used, n);
        ck_assert_int_eq(req.dest.type, dests[i].type);
        ck_assert_int_eq(req.dest.port, dests[i].port);
    }
}
END_TEST

START_TEST(test_socks5_reply_parses_split_and_names_the_bound_address)
{
    uint8_t reply[SOCKS5_REPLY_MAX];
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(4242)};
    struct socks_dest bound;
    uint8_t rep = 0xaa;
    size_t n, used;

    sin.sin_addr.s_addr = htonl(0xc0000201);
    n = socks5_encode_reply(reply, SOCKS5_REP_CONNECTION_REFUSED, (struct sockaddr *)&sin);
    for (size_t k = 0; k < n; k++)
        ck_assert_int_eq(upstream_socks5_parse_reply(reply, k, &rep, &bound, &used),
                         PROTO_NEED_MORE);
    ck_assert_int_eq(upstream_socks5_parse_reply(reply, n, &rep, &bound, &used), PROTO_OK);
    ck_assert_uint_eq(used, n);
    ck_assert_int_eq(rep, SOCKS5_REP_CONNECTION_REFUSED);
    ck_assert_int_eq(bound.type, DEST_IPV4);
    ck_assert_int_eq(bound.port, 4242);
    ck_assert_int_eq(bound.ip[0], 192);
    /* A name (RESOLVE_PTR answers), an empty name, an unknown ATYP, a wrong version. */
    ck_assert_int_eq(upstream_socks5_parse_reply((const uint8_t *)"\x05\x00\x00\x03\x01x\x00\x00",
                                                 8, &rep, &bound, &used),
                     PROTO_OK);
    ck_assert_str_eq(bound.name, "x");
    ck_assert_int_eq(upstream_socks5_parse_reply((const uint8_t *)"\x05\x00\x00\x03\x00", 5, &rep,
                                                 &bound, &used),
                     PROTO_ERROR);
    ck_assert_int_eq(
        upstream_socks5_parse_reply((const uint8_t *)"\x05\x00\x00\x09", 4, &rep, &bound, &used),
        PROTO_ERROR);
    ck_assert_int_eq(upstream_socks5_parse_reply((const uint8_t *)"\x04", 1, &rep, &bound, &used),
                     PROTO_ERROR);
}
END_TEST

START_TEST(test_socks4a_request_round_trips_through_our_parser)
{
    static const uint8_t ip4[4] = {127, 0, 0, 1};
    static const uint8_t ip6[16] = {[15] = 1};
    struct socks_dest name = name_dest("example.com", 80), v4 = ip_dest(DEST_IPV4, ip4, 22);
    struct socks_dest v6 = ip_dest(DEST_IPV6, ip6, 22);
    uint8_t out[UPSTREAM_SOCKS4_REQUEST_MAX];
    struct socks4_request req;
    size_t n, used;

    n = upstream_socks4_request(out, SOCKS4_CMD_CONNECT, &name, "ferry");
    ck_assert_int_eq(socks4_parse_request(out, n, &req, &used), PROTO_OK);
    ck_assert_uint_eq(used, n);
    ck_assert(req.is_4a);
    ck_assert_str_eq(req.dest.name, "example.com");
    ck_assert_str_eq(req.userid, "ferry");
    n = upstream_socks4_request(out, SOCKS4_CMD_BIND, &v4, NULL);
    ck_assert_uint_eq(n, 9);
    ck_assert_int_eq(socks4_parse_request(out, n, &req, &used), PROTO_OK);
    ck_assert(!req.is_4a);
    ck_assert_int_eq(req.cmd, SOCKS4_CMD_BIND);
    /* SOCKS4 cannot carry IPv6. */
    ck_assert_uint_eq(upstream_socks4_request(out, SOCKS4_CMD_CONNECT, &v6, NULL), 0);
}
END_TEST

START_TEST(test_socks4_reply_codes_map_to_socks5)
{
    static const struct {
        uint8_t cd, rep;
    } cases[] = {{90, SOCKS5_REP_SUCCEEDED},
                 {91, SOCKS5_REP_GENERAL_FAILURE},
                 {92, SOCKS5_REP_NOT_ALLOWED},
                 {93, SOCKS5_REP_NOT_ALLOWED},
                 {17, SOCKS5_REP_GENERAL_FAILURE}};
    struct socks_dest bound;
    uint8_t rep;
    size_t used;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t msg[8] = {0, cases[i].cd, 0x10, 0x92, 10, 0, 0, 1};

        ck_assert_int_eq(upstream_socks4_parse_reply(msg, 7, &rep, &bound, &used), PROTO_NEED_MORE);
        ck_assert_int_eq(upstream_socks4_parse_reply(msg, 8, &rep, &bound, &used), PROTO_OK);
        ck_assert_int_eq(rep, cases[i].rep);
        ck_assert_int_eq(bound.port, 4242);
    }
    ck_assert_int_eq(upstream_socks4_parse_reply((const uint8_t *)"\x05", 1, &rep, &bound, &used),
                     PROTO_ERROR);
}
END_TEST

START_TEST(test_http_connect_request_with_and_without_basic_auth)
{
    static const uint8_t ip6[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 1};
    struct socks_dest name = name_dest("example.com", 443), v6 = ip_dest(DEST_IPV6, ip6, 8443);
    struct socks_dest bad = name_dest("evil.com\r\nX: y", 80);
    char out[UPSTREAM_HTTP_REQUEST_MAX];

    ck_assert_uint_gt(upstream_http_connect(out, sizeof(out), &name, NULL, NULL), 0);
    ck_assert_str_eq(out, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
    ck_assert_uint_gt(upstream_http_connect(out, sizeof(out), &v6, "Aladdin", "open sesame"), 0);
    /* RFC 7617 section 2's example credentials. */
    ck_assert_str_eq(out, "CONNECT [2001:db8::1]:8443 HTTP/1.1\r\nHost: [2001:db8::1]:8443\r\n"
                          "Proxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n\r\n");
    /* Nothing from a name may split the head. */
    ck_assert_uint_eq(upstream_http_connect(out, sizeof(out), &bad, NULL, NULL), 0);
    ck_assert_uint_eq(upstream_http_connect(out, sizeof(out), &name, "a:b", "c"), 0);
    ck_assert_uint_eq(upstream_http_connect(out, sizeof(out), &name, "a", "c\r\n"), 0);
    ck_assert_uint_eq(upstream_http_connect(out, 20, &name, NULL, NULL), 0);
}
END_TEST

START_TEST(test_http_response_head_split_with_tunnel_bytes_after)
{
    const char *resp = "HTTP/1.1 200 Connection established\r\nVia: x\r\n\r\nSSH-2.0";
    size_t head = strlen(resp) - 7, used = 0;
    int status = 0;

    for (size_t k = 0; k < head; k++)
        ck_assert_int_eq(upstream_http_parse_response((const uint8_t *)resp, k, &status, &used),
                         PROTO_NEED_MORE);
    ck_assert_int_eq(
        upstream_http_parse_response((const uint8_t *)resp, strlen(resp), &status, &used),
        PROTO_OK);
    ck_assert_int_eq(status, 200);
    ck_assert_uint_eq(used, head);
}
END_TEST

START_TEST(test_http_response_skips_interim_heads_and_accepts_bare_lf)
{
    const char *resp = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 407 Proxy Authentication Required\n"
                       "Proxy-Authenticate: Basic\n\n";
    size_t used = 0;
    int status = 0;

    ck_assert_int_eq(
        upstream_http_parse_response((const uint8_t *)resp, strlen(resp), &status, &used),
        PROTO_OK);
    ck_assert_int_eq(status, 407);
    ck_assert_uint_eq(used, strlen(resp));
    ck_assert_int_eq(upstream_http_rep(status), SOCKS5_REP_NOT_ALLOWED);
}
END_TEST

START_TEST(test_http_response_errors_early_and_on_oversized_heads)
{
    static uint8_t big[UPSTREAM_HTTP_HEAD_MAX + 10];
    size_t used;
    int status;

    ck_assert_int_eq(upstream_http_parse_response((const uint8_t *)"SSH-", 4, &status, &used),
                     PROTO_ERROR);
    ck_assert_int_eq(
        upstream_http_parse_response((const uint8_t *)"HTTP/1.1 2x", 11, &status, &used),
        PROTO_ERROR);
    ck_assert_int_eq(
        upstream_http_parse_response((const uint8_t *)"HTTP/1.1 200x\r\n", 15, &status, &used),
        PROTO_ERROR);
    memcpy(big, "HTTP/1.1 200 OK\r\nX: ", 20);
    memset(big + 20, 'a', sizeof(big) - 20);
    ck_assert_int_eq(upstream_http_parse_response(big, UPSTREAM_HTTP_HEAD_MAX - 1, &status, &used),
                     PROTO_NEED_MORE);
    ck_assert_int_eq(upstream_http_parse_response(big, sizeof(big), &status, &used), PROTO_ERROR);
}
END_TEST

START_TEST(test_http_status_maps_to_socks5_reply)
{
    ck_assert_int_eq(upstream_http_rep(200), SOCKS5_REP_SUCCEEDED);
    ck_assert_int_eq(upstream_http_rep(403), SOCKS5_REP_NOT_ALLOWED);
    ck_assert_int_eq(upstream_http_rep(502), SOCKS5_REP_HOST_UNREACHABLE);
    ck_assert_int_eq(upstream_http_rep(504), SOCKS5_REP_TTL_EXPIRED);
    ck_assert_int_eq(upstream_http_rep(500), SOCKS5_REP_GENERAL_FAILURE);
    ck_assert_int_eq(upstream_http_rep(101), SOCKS5_REP_GENERAL_FAILURE);
}
END_TEST

static Suite *upstream_suite(void)
{
    Suite *s = suite_create("upstream");
    TCase *tc = tcase_create("wire");

    tcase_add_test(tc, test_socks5_greeting_offers_userpass_only_with_credentials);
    tcase_add_test(tc, test_socks5_method_reply_split_and_bad_version);
    tcase_add_test(tc, test_socks5_userpass_request_and_reply);
    tcase_add_test(tc, test_socks5_request_encodes_each_address_type_and_parses_back);
    tcase_add_test(tc, test_socks5_reply_parses_split_and_names_the_bound_address);
    tcase_add_test(tc, test_socks4a_request_round_trips_through_our_parser);
    tcase_add_test(tc, test_socks4_reply_codes_map_to_socks5);
    tcase_add_test(tc, test_http_connect_request_with_and_without_basic_auth);
    tcase_add_test(tc, test_http_response_head_split_with_tunnel_bytes_after);
    tcase_add_test(tc, test_http_response_skips_interim_heads_and_accepts_bare_lf);
    tcase_add_test(tc, test_http_response_errors_early_and_on_oversized_heads);
    tcase_add_test(tc, test_http_status_maps_to_socks5_reply);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(upstream_suite());
    int failed;

    if (sodium_init() < 0)
        return 1;
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
