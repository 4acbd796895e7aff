/* Unit tests for src/socks5.c (RFC 1928, RFC 1929) and socks_dest_format from src/proto.c. */
#include "config.h"

#include <arpa/inet.h>
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "ferry/socks5.h"

/* Copy into a buffer of exactly len bytes so that valgrind and ASan catch any over-read. */
static uint8_t *exact_copy(const uint8_t *msg, size_t len)
{
    uint8_t *p = malloc(len ? len : 1);
    ck_assert_ptr_nonnull(p);
    if (len > 0)
        memcpy(p, msg, len);
    return p;
}

static enum proto_status greeting(const uint8_t *msg, size_t len, struct socks5_greeting *g,
                                  size_t *consumed)
{
    uint8_t *p = exact_copy(msg, len);
    enum proto_status st = socks5_parse_greeting(p, len, g, consumed);
    free(p);
    return st;
}

static enum proto_status userpass(const uint8_t *msg, size_t len, struct socks5_userpass *up,
                                  size_t *consumed)
{
    uint8_t *p = exact_copy(msg, len);
    enum proto_status st = socks5_parse_userpass(p, len, up, consumed);
    free(p);
    return st;
}

static enum proto_status request(const uint8_t *msg, size_t len, struct socks5_request *req,
                                 size_t *consumed, uint8_t *rep)
{
    uint8_t *p = exact_copy(msg, len);
    enum proto_status st = socks5_parse_request(p, len, req, consumed, rep);
    free(p);
    return st;
}

/* Every proper prefix of a request needs more; the whole answers OK with consumed == len. */
static void assert_request_prefixes(const uint8_t *msg, size_t len)
{
    struct socks5_request req;
    size_t consumed;
    uint8_t rep;

    for (size_t i = 0; i < len; i++) {
        consumed = 12345;
        ck_assert_msg(request(msg, i, &req, &consumed, &rep) == PROTO_NEED_MORE,
                      "prefix of %zu/%zu bytes not NEED_MORE", i, len);
        ck_assert_uint_eq(consumed, 12345);
    }
    ck_assert_int_eq(request(msg, len, &req, &consumed, &rep), PROTO_OK);
    ck_assert_uint_eq(consumed, len);
}

/* The message followed by unrelated bytes parses to the same length. */
static void assert_request_pipelined(const uint8_t *msg, size_t len)
{
    uint8_t buf[600];
    struct socks5_request req;
    size_t consumed = 0;
    uint8_t rep = 0xee;

    ck_assert_uint_le(len + 7, sizeof(buf));
    memcpy(buf, msg, len);
    memcpy(buf + len, "\x05\x01\x00\x01GET", 7);
    ck_assert_int_eq(request(buf, len + 7, &req, &consumed, &rep), PROTO_OK);
    ck_assert_uint_eq(consumed, len);
    ck_assert_uint_eq(rep, SOCKS5_REP_SUCCEEDED);
}

static void assert_request_error(const uint8_t *msg, size_t len, uint8_t want_rep)
{
    struct socks5_request req;
    size_t consumed = 999;
    uint8_t rep = 0xee;

    ck_assert_int_eq(request(msg, len, &req, &consumed, &rep), PROTO_ERROR);
    ck_assert_uint_eq(rep, want_rep);
    ck_assert_uint_eq(consumed, 999);
}

/* ---- greeting ------------------------------------------------------------------------- */

START_TEST(test_greeting_parses_methods)
{
    static const uint8_t msg[] = {0x05, 0x03, 0x00, 0x01, 0x02};
    struct socks5_greeting g;
    size_t consumed = 0;

    ck_assert_int_eq(greeting(msg, sizeof(msg), &g, &consumed), PROTO_OK);
    ck_assert_uint_eq(consumed, 5);
    ck_assert_uint_eq(g.nmethods, 3);
    ck_assert_uint_eq(g.methods[0], 0x00);
    ck_assert_uint_eq(g.methods[1], 0x01);
    ck_assert_uint_eq(g.methods[2], 0x02);
}
END_TEST

START_TEST(test_greeting_nmethods_zero_parses_with_no_methods)
{
    static const uint8_t msg[] = {0x05, 0x00};
    struct socks5_greeting g;
    size_t consumed = 0;

    memset(&g, 0xaa, sizeof(g));
    ck_assert_int_eq(greeting(msg, sizeof(msg), &g, &consumed), PROTO_OK);
    ck_assert_uint_eq(consumed, 2);
    ck_assert_uint_eq(g.nmethods, 0);
}
END_TEST

START_TEST(test_greeting_255_methods)
{
    uint8_t msg[257];
    struct socks5_greeting g;
    size_t consumed = 0;

    msg[0] = 0x05;
    msg[1] = 255;
    for (int i = 0; i < 255; i++)
        msg[2 + i] = (uint8_t)i;
    ck_assert_int_eq(greeting(msg, sizeof(msg), &g, &consumed), PROTO_OK);
    ck_assert_uint_eq(consumed, 257);
    ck_assert_uint_eq(g.nmethods, 255);
    ck_assert_mem_eq(g.methods, msg + 2, 255);
    ck_assert_int_eq(greeting(msg, 256, &g, &consumed), PROTO_NEED_MORE);
}
END_TEST

START_TEST(test_greeting_every_prefix_needs_more)
{
    static const uint8_t msg[] = {0x05, 0x02, 0x00, 0x02};
    struct socks5_greeting g;
    size_t consumed;

    for (size_t i = 0; i < sizeof(msg); i++)
        ck_assert_msg(greeting(msg, i, &g, &consumed) == PROTO_NEED_MORE, "prefix %zu", i);
    ck_assert_int_eq(greeting(msg, sizeof(msg), &g, &consumed), PROTO_OK);
    ck_assert_uint_eq(consumed, sizeof(msg));
}
END_TEST

START_TEST(test_greeting_pipelined_leaves_extra_bytes)
{
    /* Greeting, then a userpass sub-negotiation sent without waiting for the reply. */
    static const uint8_t msg[] = {0x05, 0x01, 0x02, 0x01, 0x01, 'u', 0x01, 'p'};
    struct socks5_greeting g;
    size_t consumed = 0;

    ck_assert_int_eq(greeting(msg, sizeof(msg), &g, &consumed), PROTO_OK);
    ck_assert_uint_eq(consumed, 3);
    ck_assert_uint_eq(g.nmethods, 1);
    ck_assert_uint_eq(g.methods[0], SOCKS5_METHOD_USERPASS);
}
END_TEST

START_TEST(test_greeting_wrong_version_is_error_on_first_byte)
{
    static const uint8_t versions[] = {0x00, 0x04, 0x06, 0x47, 0xff};
    struct socks5_greeting g;
    size_t consumed;

    for (size_t i = 0; i < sizeof(versions); i++)
        ck_assert_int_eq(greeting(&versions[i], 1, &g, &consumed), PROTO_ERROR);
    /* A SOCKS4 request arriving at the SOCKS5 parser. */
    ck_assert_int_eq(greeting((const uint8_t *)"\x04\x01\x00\x50", 4, &g, &consumed), PROTO_ERROR);
}
END_TEST

/* ---- method choice -------------------------------------------------------------------- */

START_TEST(test_choose_method_honours_server_preference)
{
    struct socks5_greeting g = {.nmethods = 2, .methods = {0x00, 0x02}};
    static const uint8_t userpass_first[] = {0x02, 0x00};
    static const uint8_t noauth_first[] = {0x00, 0x02};

    ck_assert_uint_eq(socks5_choose_method(&g, userpass_first, 2), SOCKS5_METHOD_USERPASS);
    ck_assert_uint_eq(socks5_choose_method(&g, noauth_first, 2), SOCKS5_METHOD_NOAUTH);

    /* The client's order does not matter. */
    g.methods[0] = 0x02;
    g.methods[1] = 0x00;
    ck_assert_uint_eq(socks5_choose_method(&g, noauth_first, 2), SOCKS5_METHOD_NOAUTH);
}
END_TEST

START_TEST(test_choose_method_skips_preferences_the_client_lacks)
{
    struct socks5_greeting g = {.nmethods = 3, .methods = {0x80, 0x01, 0x00}};
    static const uint8_t pref[] = {0x02, 0x00};

    ck_assert_uint_eq(socks5_choose_method(&g, pref, 2), SOCKS5_METHOD_NOAUTH);
}
END_TEST

START_TEST(test_choose_method_none_when_nothing_matches)
{
    struct socks5_greeting g = {.nmethods = 2, .methods = {0x00, 0x01}};
    static const uint8_t pref[] = {0x02};

    ck_assert_uint_eq(socks5_choose_method(&g, pref, 1), SOCKS5_METHOD_NONE);
    ck_assert_uint_eq(socks5_choose_method(&g, pref, 0), SOCKS5_METHOD_NONE);
}
END_TEST

START_TEST(test_choose_method_nmethods_zero_gives_none)
{
    /* Stale bytes past nmethods must not count as offers. */
    struct socks5_greeting g = {.nmethods = 0, .methods = {0x00, 0x02}};
    static const uint8_t pref[] = {0x00, 0x02};

    ck_assert_uint_eq(socks5_choose_method(&g, pref, 2), SOCKS5_METHOD_NONE);
    g.nmethods = 1;
    g.methods[0] = 0x01;
    ck_assert_uint_eq(socks5_choose_method(&g, pref, 2), SOCKS5_METHOD_NONE);
}
END_TEST

START_TEST(test_choose_method_client_offering_ff_does_not_select_it)
{
    struct socks5_greeting g = {.nmethods = 1, .methods = {0xff}};
    static const uint8_t pref[] = {0xff, 0x00};

    ck_assert_uint_eq(socks5_choose_method(&g, pref, 2), SOCKS5_METHOD_NONE);
}
END_TEST

START_TEST(test_encode_method_is_ver_method)
{
    uint8_t out[2];

    ck_assert_uint_eq(socks5_encode_method(out, SOCKS5_METHOD_USERPASS), 2);
    ck_assert_mem_eq(out, "\x05\x02", 2);
    ck_assert_uint_eq(socks5_encode_method(out, SOCKS5_METHOD_NONE), 2);
    ck_assert_mem_eq(out, "\x05\xff", 2);
}
END_TEST

/* ---- username/password (RFC 1929) ----------------------------------------------------- */

START_TEST(test_userpass_parses_user_and_password)
{
    static const uint8_t msg[] = {0x01, 5,   'a', 'l', 'i', 'c', 'e',
                                  6,    's', 'e', 'c', 'r', 'e', 't'};
    struct socks5_userpass up;
    size_t consumed = 0;

    ck_assert_int_eq(userpass(msg, sizeof(msg), &up, &consumed), PROTO_OK);
    ck_assert_uint_eq(consumed, sizeof(msg));
    ck_assert_uint_eq(up.user_len, 5);
    ck_assert_str_eq(up.user, "alice");
    ck_assert_uint_eq(up.pass_len, 6);
    ck_assert_str_eq(up.pass, "secret");
}
END_TEST

START_TEST(test_userpass_empty_user_and_password_parse)
{
    static const uint8_t msg[] = {0x01, 0, 0};
    struct socks5_userpass up;
    size_t consumed = 0;

    memset(&up, 'x', sizeof(up));
    ck_assert_int_eq(userpass(msg, sizeof(msg), &up, &consumed), PROTO_OK);
    ck_assert_uint_eq(consumed, 3);
    ck_assert_uint_eq(up.user_len, 0);
    ck_assert_str_eq(up.user, "");
    ck_assert_uint_eq(up.pass_len, 0);
    ck_assert_str_eq(up.pass, "");
}
END_TEST

START_TEST(test_userpass_255_byte_fields)
{
    uint8_t msg[3 + 255 + 255];
    struct socks5_userpass up;
    size_t consumed = 0;

    msg[0] = 0x01;
    msg[1] = 255;
    memset(msg + 2, 'u', 255);
    msg[257] = 255;
    memset(msg + 258, 'p', 255);
    ck_assert_int_eq(userpass(msg, sizeof(msg), &up, &consumed), PROTO_OK);
    ck_assert_uint_eq(consumed, sizeof(msg));
    ck_assert_uint_eq(up.user_len, 255);
    ck_assert_uint_eq(strlen(up.user), 255);
    ck_assert_uint_eq(up.pass_len, 255);
    ck_assert_uint_eq(strlen(up.pass), 255);
    ck_assert_int_eq(up.pass[254], 'p');
}
END_TEST

START_TEST(test_userpass_every_prefix_needs_more)
{
    static const uint8_t msg[] = {0x01, 3, 'b', 'o', 'b', 2, 'p', 'w'};
    struct socks5_userpass up;
    size_t consumed;

    for (size_t i = 0; i < sizeof(msg); i++)
        ck_assert_msg(userpass(msg, i, &up, &consumed) == PROTO_NEED_MORE, "prefix %zu", i);
    ck_assert_int_eq(userpass(msg, sizeof(msg), &up, &consumed), PROTO_OK);
    ck_assert_uint_eq(consumed, sizeof(msg));
    ck_assert_str_eq(up.user, "bob");
    ck_assert_str_eq(up.pass, "pw");
}
END_TEST

START_TEST(test_userpass_pipelined_leaves_extra_bytes)
{
    static const uint8_t msg[] = {0x01, 1, 'u', 1, 'p', 0x05, 0x01, 0x00, 0x01};
    struct socks5_userpass up;
    size_t consumed = 0;

    ck_assert_int_eq(userpass(msg, sizeof(msg), &up, &consumed), PROTO_OK);
    ck_assert_uint_eq(consumed, 5);
    ck_assert_str_eq(up.user, "u");
    ck_assert_str_eq(up.pass, "p");
}
END_TEST

START_TEST(test_userpass_wrong_version_is_error_on_first_byte)
{
    struct socks5_userpass up;
    size_t consumed;

    ck_assert_int_eq(userpass((const uint8_t *)"\x05", 1, &up, &consumed), PROTO_ERROR);
    ck_assert_int_eq(userpass((const uint8_t *)"\x00", 1, &up, &consumed), PROTO_ERROR);
    ck_assert_int_eq(userpass((const uint8_t *)"\x02\x01u\x01p", 5, &up, &consumed), PROTO_ERROR);
}
END_TEST

START_TEST(test_userpass_nul_inside_user_or_password_is_error)
{
    struct socks5_userpass up;
    size_t consumed;

    /* Refused as soon as the NUL is present, before the rest arrives. */
    ck_assert_int_eq(userpass((const uint8_t *)"\x01\x05"
                                               "al\0",
                              5, &up, &consumed),
                     PROTO_ERROR);
    ck_assert_int_eq(userpass((const uint8_t *)"\x01\x01u\x04p\0", 6, &up, &consumed), PROTO_ERROR);
    ck_assert_int_eq(userpass((const uint8_t *)"\x01\x01u\x02p\0", 6, &up, &consumed), PROTO_ERROR);
}
END_TEST

START_TEST(test_encode_userpass_reply)
{
    uint8_t out[2];

    ck_assert_uint_eq(socks5_encode_userpass_reply(out, SOCKS5_USERPASS_OK), 2);
    ck_assert_mem_eq(out, "\x01\x00", 2);
    ck_assert_uint_eq(socks5_encode_userpass_reply(out, SOCKS5_USERPASS_FAIL), 2);
    ck_assert_mem_eq(out, "\x01\x01", 2);
}
END_TEST

/* ---- request -------------------------------------------------------------------------- */

static const uint8_t req_ipv4[] = {0x05, 0x01, 0x00, 0x01, 192, 0, 2, 1, 0x00, 0x50};
static const uint8_t req_ipv6[] = {0x05, 0x02, 0x00, 0x04, 0x20, 0x01, 0x0d, 0xb8, 0, 0,    0,
                                   0,    0,    0,    0,    0,    0,    0,    0,    1, 0x1f, 0x90};
static const uint8_t req_domain[] = {0x05, 0x03, 0x00, 0x03, 11,  'e', 'x', 'a',  'm',
                                     'p',  'l',  'e',  '.',  'c', 'o', 'm', 0x01, 0xbb};

START_TEST(test_request_ipv4_connect_fields)
{
    struct socks5_request req;
    size_t consumed = 0;
    uint8_t rep = 0xee;

    ck_assert_int_eq(request(req_ipv4, sizeof(req_ipv4), &req, &consumed, &rep), PROTO_OK);
    ck_assert_uint_eq(consumed, 10);
    ck_assert_uint_eq(rep, SOCKS5_REP_SUCCEEDED);
    ck_assert_uint_eq(req.cmd, SOCKS5_CMD_CONNECT);
    ck_assert_int_eq(req.dest.type, DEST_IPV4);
    ck_assert_mem_eq(req.dest.ip, "\xc0\x00\x02\x01", 4);
    ck_assert_uint_eq(req.dest.port, 80);
}
END_TEST

START_TEST(test_request_ipv6_bind_fields)
{
    static const uint8_t ip[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 1};
    struct socks5_request req;
    size_t consumed = 0;
    uint8_t rep = 0xee;

    ck_assert_int_eq(request(req_ipv6, sizeof(req_ipv6), &req, &consumed, &rep), PROTO_OK);
    ck_assert_uint_eq(consumed, 22);
    ck_assert_uint_eq(req.cmd, SOCKS5_CMD_BIND);
    ck_assert_int_eq(req.dest.type, DEST_IPV6);
    ck_assert_mem_eq(req.dest.ip, ip, 16);
    ck_assert_uint_eq(req.dest.port, 8080);
}
END_TEST

START_TEST(test_request_domain_udp_associate_fields)
{
    struct socks5_request req;
    size_t consumed = 0;
    uint8_t rep = 0xee;

    memset(&req, 'x', sizeof(req));
    ck_assert_int_eq(request(req_domain, sizeof(req_domain), &req, &consumed, &rep), PROTO_OK);
    ck_assert_uint_eq(consumed, sizeof(req_domain));
    ck_assert_uint_eq(req.cmd, SOCKS5_CMD_UDP_ASSOCIATE);
    ck_assert_int_eq(req.dest.type, DEST_NAME);
    ck_assert_str_eq(req.dest.name, "example.com");
    ck_assert_uint_eq(req.dest.port, 443);
}
END_TEST

START_TEST(test_request_port_is_host_order)
{
    uint8_t msg[10];
    struct socks5_request req;
    size_t consumed;
    uint8_t rep;

    memcpy(msg, req_ipv4, sizeof(msg));
    msg[8] = 0x12;
    msg[9] = 0x34;
    ck_assert_int_eq(request(msg, sizeof(msg), &req, &consumed, &rep), PROTO_OK);
    ck_assert_uint_eq(req.dest.port, 0x1234);
    msg[8] = 0xff;
    msg[9] = 0xff;
    ck_assert_int_eq(request(msg, sizeof(msg), &req, &consumed, &rep), PROTO_OK);
    ck_assert_uint_eq(req.dest.port, 65535);
    msg[8] = 0;
    msg[9] = 0;
    ck_assert_int_eq(request(msg, sizeof(msg), &req, &consumed, &rep), PROTO_OK);
    ck_assert_uint_eq(req.dest.port, 0);
}
END_TEST

START_TEST(test_request_rsv_byte_is_ignored)
{
    uint8_t msg[10];
    struct socks5_request req;
    size_t consumed;
    uint8_t rep;

    memcpy(msg, req_ipv4, sizeof(msg));
    msg[2] = 0xff;
    ck_assert_int_eq(request(msg, sizeof(msg), &req, &consumed, &rep), PROTO_OK);
    ck_assert_uint_eq(consumed, 10);
}
END_TEST

START_TEST(test_request_every_prefix_needs_more_ipv4)
{
    assert_request_prefixes(req_ipv4, sizeof(req_ipv4));
}
END_TEST

START_TEST(test_request_every_prefix_needs_more_ipv6)
{
    assert_request_prefixes(req_ipv6, sizeof(req_ipv6));
}
END_TEST

START_TEST(test_request_every_prefix_needs_more_domain)
{
    assert_request_prefixes(req_domain, sizeof(req_domain));
}
END_TEST

START_TEST(test_request_pipelined_leaves_extra_bytes)
{
    assert_request_pipelined(req_ipv4, sizeof(req_ipv4));
    assert_request_pipelined(req_ipv6, sizeof(req_ipv6));
    assert_request_pipelined(req_domain, sizeof(req_domain));
}
END_TEST

START_TEST(test_request_255_byte_domain_parses)
{
    uint8_t msg[5 + 255 + 2];
    struct socks5_request req;
    size_t consumed = 0;
    uint8_t rep;

    memcpy(msg, "\x05\x01\x00\x03\xff", 5);
    memset(msg + 5, 'a', 255);
    msg[260] = 0x00;
    msg[261] = 0x16;
    ck_assert_int_eq(request(msg, sizeof(msg), &req, &consumed, &rep), PROTO_OK);
    ck_assert_uint_eq(consumed, sizeof(msg));
    ck_assert_uint_eq(strlen(req.dest.name), 255);
    ck_assert_int_eq(req.dest.name[254], 'a');
    ck_assert_uint_eq(req.dest.port, 22);
    ck_assert_int_eq(request(msg, sizeof(msg) - 1, &req, &consumed, &rep), PROTO_NEED_MORE);
}
END_TEST

START_TEST(test_request_one_byte_domain_parses)
{
    static const uint8_t msg[] = {0x05, 0x01, 0x00, 0x03, 1, 'x', 0x00, 0x50};
    struct socks5_request req;
    size_t consumed = 0;
    uint8_t rep;

    ck_assert_int_eq(request(msg, sizeof(msg), &req, &consumed, &rep), PROTO_OK);
    ck_assert_uint_eq(consumed, 8);
    ck_assert_str_eq(req.dest.name, "x");
}
END_TEST

START_TEST(test_request_zero_length_domain_is_general_failure)
{
    /* Refused with only the length byte present. */
    assert_request_error((const uint8_t *)"\x05\x01\x00\x03\x00", 5, SOCKS5_REP_GENERAL_FAILURE);
    assert_request_error((const uint8_t *)"\x05\x01\x00\x03\x00\x00\x50", 7,
                         SOCKS5_REP_GENERAL_FAILURE);
}
END_TEST

START_TEST(test_request_domain_with_nul_is_general_failure)
{
    static const uint8_t msg[] = {0x05, 0x01, 0x00, 0x03, 5, 'a', 'b', 0, 'c', 'd', 0x00, 0x50};
    struct socks5_request req;
    size_t consumed;
    uint8_t rep;

    /* Prefixes before the NUL are still fine... */
    for (size_t i = 0; i < 7; i++)
        ck_assert_int_eq(request(msg, i, &req, &consumed, &rep), PROTO_NEED_MORE);
    /* ...and the request is refused as soon as the NUL arrives. */
    for (size_t i = 8; i <= sizeof(msg); i++)
        assert_request_error(msg, i, SOCKS5_REP_GENERAL_FAILURE);
    /* A NUL as first or last byte of the name. */
    assert_request_error((const uint8_t *)"\x05\x01\x00\x03\x02\x00x\x00\x50", 9,
                         SOCKS5_REP_GENERAL_FAILURE);
    assert_request_error((const uint8_t *)"\x05\x01\x00\x03\x02x\x00\x00\x50", 9,
                         SOCKS5_REP_GENERAL_FAILURE);
}
END_TEST

START_TEST(test_request_nul_in_port_after_domain_is_fine)
{
    static const uint8_t msg[] = {0x05, 0x01, 0x00, 0x03, 2, 'a', 'b', 0x00, 0x00};
    struct socks5_request req;
    size_t consumed;
    uint8_t rep;

    ck_assert_int_eq(request(msg, sizeof(msg), &req, &consumed, &rep), PROTO_OK);
    ck_assert_str_eq(req.dest.name, "ab");
    ck_assert_uint_eq(req.dest.port, 0);
}
END_TEST

START_TEST(test_request_wrong_version_is_general_failure_on_first_byte)
{
    assert_request_error((const uint8_t *)"\x04", 1, SOCKS5_REP_GENERAL_FAILURE);
    assert_request_error((const uint8_t *)"\x00", 1, SOCKS5_REP_GENERAL_FAILURE);
    assert_request_error((const uint8_t *)"\x06\x01\x00\x01\x01\x02\x03\x04\x00\x50", 10,
                         SOCKS5_REP_GENERAL_FAILURE);
}
END_TEST

START_TEST(test_request_unknown_cmd_is_command_not_supported_on_second_byte)
{
    static const uint8_t cmds[] = {0x00, 0x04, 0x05, 0x80, 0xff};
    uint8_t msg[10];

    for (size_t i = 0; i < sizeof(cmds); i++) {
        memcpy(msg, req_ipv4, sizeof(msg));
        msg[1] = cmds[i];
        assert_request_error(msg, 2, SOCKS5_REP_COMMAND_NOT_SUPPORTED);
        assert_request_error(msg, sizeof(msg), SOCKS5_REP_COMMAND_NOT_SUPPORTED);
    }
}
END_TEST

START_TEST(test_request_unknown_atyp_is_address_type_not_supported_on_fourth_byte)
{
    static const uint8_t atyps[] = {0x00, 0x02, 0x05, 0x7f, 0xff};
    uint8_t msg[10];

    for (size_t i = 0; i < sizeof(atyps); i++) {
        memcpy(msg, req_ipv4, sizeof(msg));
        msg[3] = atyps[i];
        assert_request_error(msg, 4, SOCKS5_REP_ADDRESS_TYPE_NOT_SUPPORTED);
        assert_request_error(msg, sizeof(msg), SOCKS5_REP_ADDRESS_TYPE_NOT_SUPPORTED);
    }
}
END_TEST

START_TEST(test_request_version_is_checked_before_cmd_and_atyp)
{
    assert_request_error((const uint8_t *)"\x04\x09\x00\x09", 4, SOCKS5_REP_GENERAL_FAILURE);
    assert_request_error((const uint8_t *)"\x05\x09\x00\x09", 4, SOCKS5_REP_COMMAND_NOT_SUPPORTED);
}
END_TEST

START_TEST(test_request_rep_may_be_null)
{
    struct socks5_request req;
    size_t consumed;

    ck_assert_int_eq(socks5_parse_request((const uint8_t *)"\x04", 1, &req, &consumed, NULL),
                     PROTO_ERROR);
    ck_assert_int_eq(socks5_parse_request(req_ipv4, sizeof(req_ipv4), &req, &consumed, NULL),
                     PROTO_OK);
}
END_TEST

/* ---- reply ---------------------------------------------------------------------------- */

START_TEST(test_reply_ipv4_bound_is_byte_exact)
{
    struct sockaddr_in sin;
    uint8_t out[SOCKS5_REPLY_MAX];
    static const uint8_t want[] = {0x05, 0x00, 0x00, 0x01, 198, 51, 100, 7, 0xc3, 0x50};

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons(50000);
    sin.sin_addr.s_addr = htonl(0xc6336407);
    ck_assert_uint_eq(socks5_encode_reply(out, SOCKS5_REP_SUCCEEDED, (struct sockaddr *)&sin), 10);
    ck_assert_mem_eq(out, want, sizeof(want));
}
END_TEST

START_TEST(test_reply_ipv6_bound_is_byte_exact)
{
    struct sockaddr_in6 sin6;
    uint8_t out[SOCKS5_REPLY_MAX];
    static const uint8_t want[] = {0x05, 0x00, 0x00, 0x04, 0x20, 0x01, 0x0d, 0xb8, 0, 0,    0,
                                   0,    0,    0,    0,    0,    0,    0,    0,    2, 0x04, 0x38};

    memset(&sin6, 0, sizeof(sin6));
    sin6.sin6_family = AF_INET6;
    sin6.sin6_port = htons(1080);
    ck_assert_int_eq(inet_pton(AF_INET6, "2001:db8::2", &sin6.sin6_addr), 1);
    ck_assert_uint_eq(socks5_encode_reply(out, SOCKS5_REP_SUCCEEDED, (struct sockaddr *)&sin6), 22);
    ck_assert_mem_eq(out, want, sizeof(want));
}
END_TEST

START_TEST(test_reply_ipv4_mapped_bound_is_sent_as_ipv4)
{
    struct sockaddr_in6 sin6;
    uint8_t out[SOCKS5_REPLY_MAX];
    static const uint8_t want[] = {0x05, 0x00, 0x00, 0x01, 127, 0, 0, 1, 0x30, 0x39};

    memset(&sin6, 0, sizeof(sin6));
    sin6.sin6_family = AF_INET6;
    sin6.sin6_port = htons(12345);
    ck_assert_int_eq(inet_pton(AF_INET6, "::ffff:127.0.0.1", &sin6.sin6_addr), 1);
    ck_assert_uint_eq(socks5_encode_reply(out, SOCKS5_REP_SUCCEEDED, (struct sockaddr *)&sin6), 10);
    ck_assert_mem_eq(out, want, sizeof(want));
}
END_TEST

START_TEST(test_reply_null_bound_is_ipv4_zeros)
{
    uint8_t out[SOCKS5_REPLY_MAX];
    static const uint8_t want[] = {0x05, 0x05, 0x00, 0x01, 0, 0, 0, 0, 0, 0};

    memset(out, 0xaa, sizeof(out));
    ck_assert_uint_eq(socks5_encode_reply(out, SOCKS5_REP_CONNECTION_REFUSED, NULL), 10);
    ck_assert_mem_eq(out, want, sizeof(want));
}
END_TEST

START_TEST(test_reply_non_inet_bound_is_ipv4_zeros)
{
    struct sockaddr_un sun;
    uint8_t out[SOCKS5_REPLY_MAX];
    static const uint8_t want[] = {0x05, 0x01, 0x00, 0x01, 0, 0, 0, 0, 0, 0};

    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    strcpy(sun.sun_path, "/tmp/x");
    memset(out, 0xaa, sizeof(out));
    ck_assert_uint_eq(socks5_encode_reply(out, SOCKS5_REP_GENERAL_FAILURE, (struct sockaddr *)&sun),
                      10);
    ck_assert_mem_eq(out, want, sizeof(want));
}
END_TEST

START_TEST(test_reply_carries_every_rep_code)
{
    uint8_t out[SOCKS5_REPLY_MAX];

    for (unsigned rep = 0; rep <= 0xff; rep++) {
        socks5_encode_reply(out, (uint8_t)rep, NULL);
        ck_assert_uint_eq(out[1], rep);
        ck_assert_uint_eq(out[0], 0x05);
        ck_assert_uint_eq(out[2], 0x00);
    }
}
END_TEST

/* ---- Tor extensions: RESOLVE and RESOLVE_PTR ------------------------------------------ */

static const uint8_t req_resolve[] = {0x05, 0xf0, 0x00, 0x03, 11,  'e', 'x', 'a', 'm',
                                      'p',  'l',  'e',  '.',  'c', 'o', 'm', 0,   0};
static const uint8_t req_resolve_ptr4[] = {0x05, 0xf1, 0x00, 0x01, 127, 0, 0, 1, 0, 0};
static const uint8_t req_resolve_ptr6[] = {0x05, 0xf1, 0x00, 0x04, 0, 0, 0, 0, 0, 0, 0,
                                           0,    0,    0,    0,    0, 0, 0, 0, 1, 0, 0};

START_TEST(test_request_resolve_with_name_parses)
{
    struct socks5_request req;
    size_t consumed = 0;
    uint8_t rep = 0xee;

    ck_assert_int_eq(request(req_resolve, sizeof(req_resolve), &req, &consumed, &rep), PROTO_OK);
    ck_assert_uint_eq(consumed, sizeof(req_resolve));
    ck_assert_uint_eq(rep, SOCKS5_REP_SUCCEEDED);
    ck_assert_uint_eq(req.cmd, SOCKS5_CMD_RESOLVE);
    ck_assert_int_eq(req.dest.type, DEST_NAME);
    ck_assert_str_eq(req.dest.name, "example.com");
    ck_assert_uint_eq(req.dest.port, 0);
}
END_TEST

START_TEST(test_request_resolve_with_address_parses)
{
    /* A RESOLVE of a literal address is the session's business, not the parser's. */
    uint8_t msg[10];
    struct socks5_request req;
    size_t consumed = 0;
    uint8_t rep;

    memcpy(msg, req_ipv4, sizeof(msg));
    msg[1] = SOCKS5_CMD_RESOLVE;
    ck_assert_int_eq(request(msg, sizeof(msg), &req, &consumed, &rep), PROTO_OK);
    ck_assert_uint_eq(req.cmd, SOCKS5_CMD_RESOLVE);
    ck_assert_int_eq(req.dest.type, DEST_IPV4);
}
END_TEST

START_TEST(test_request_resolve_ptr_ipv4_and_ipv6_parse)
{
    struct socks5_request req;
    size_t consumed = 0;
    uint8_t rep = 0xee;

    ck_assert_int_eq(request(req_resolve_ptr4, sizeof(req_resolve_ptr4), &req, &consumed, &rep),
                     PROTO_OK);
    ck_assert_uint_eq(consumed, 10);
    ck_assert_uint_eq(req.cmd, SOCKS5_CMD_RESOLVE_PTR);
    ck_assert_int_eq(req.dest.type, DEST_IPV4);
    ck_assert_mem_eq(req.dest.ip, "\x7f\x00\x00\x01", 4);

    ck_assert_int_eq(request(req_resolve_ptr6, sizeof(req_resolve_ptr6), &req, &consumed, &rep),
                     PROTO_OK);
    ck_assert_uint_eq(consumed, 22);
    ck_assert_uint_eq(req.cmd, SOCKS5_CMD_RESOLVE_PTR);
    ck_assert_int_eq(req.dest.type, DEST_IPV6);
    ck_assert_mem_eq(req.dest.ip, in6addr_loopback.s6_addr, 16);
}
END_TEST

START_TEST(test_request_resolve_ptr_with_name_is_address_type_not_supported)
{
    uint8_t msg[sizeof(req_resolve)];

    memcpy(msg, req_resolve, sizeof(msg));
    msg[1] = SOCKS5_CMD_RESOLVE_PTR;
    /* Refused on the ATYP byte, before the name arrives. */
    assert_request_error(msg, 4, SOCKS5_REP_ADDRESS_TYPE_NOT_SUPPORTED);
    assert_request_error(msg, sizeof(msg), SOCKS5_REP_ADDRESS_TYPE_NOT_SUPPORTED);
}
END_TEST

START_TEST(test_request_every_prefix_needs_more_resolve)
{
    assert_request_prefixes(req_resolve, sizeof(req_resolve));
    assert_request_prefixes(req_resolve_ptr4, sizeof(req_resolve_ptr4));
    assert_request_prefixes(req_resolve_ptr6, sizeof(req_resolve_ptr6));
    assert_request_pipelined(req_resolve, sizeof(req_resolve));
    assert_request_pipelined(req_resolve_ptr6, sizeof(req_resolve_ptr6));
}
END_TEST

START_TEST(test_request_commands_next_to_tor_extensions_stay_unsupported)
{
    static const uint8_t cmds[] = {0xef, 0xf2, 0xf3};
    uint8_t msg[10];

    for (size_t i = 0; i < sizeof(cmds); i++) {
        memcpy(msg, req_ipv4, sizeof(msg));
        msg[1] = cmds[i];
        assert_request_error(msg, 2, SOCKS5_REP_COMMAND_NOT_SUPPORTED);
    }
}
END_TEST

START_TEST(test_reply_name_is_byte_exact)
{
    uint8_t out[300];
    static const uint8_t want[] = {0x05, 0x00, 0x00, 0x03, 9,   'l', 'o', 'c',
                                   'a',  'l',  'h',  'o',  's', 't', 0,   0};

    memset(out, 0xaa, sizeof(out));
    ck_assert_uint_eq(
        socks5_encode_reply_name(out, sizeof(out), SOCKS5_REP_SUCCEEDED, "localhost", 0),
        sizeof(want));
    ck_assert_mem_eq(out, want, sizeof(want));
    ck_assert_uint_eq(out[sizeof(want)], 0xaa);

    ck_assert_uint_eq(socks5_encode_reply_name(out, sizeof(out), 0x04, "h", 0x1234), 8);
    ck_assert_mem_eq(out, "\x05\x04\x00\x03\x01h\x12\x34", 8);
}
END_TEST

START_TEST(test_reply_name_255_bytes_and_exact_size)
{
    char name[257];
    uint8_t out[262];

    memset(name, 'n', 255);
    name[255] = '\0';
    ck_assert_uint_eq(socks5_encode_reply_name(out, 262, SOCKS5_REP_SUCCEEDED, name, 80), 262);
    ck_assert_uint_eq(out[4], 255);
    ck_assert_uint_eq(out[259], 'n');
    ck_assert_mem_eq(out + 260, "\x00\x50", 2);
    /* One byte short of room. */
    ck_assert_uint_eq(socks5_encode_reply_name(out, 261, SOCKS5_REP_SUCCEEDED, name, 80), 0);
}
END_TEST

START_TEST(test_reply_name_empty_or_too_long_is_refused)
{
    char name[257];
    uint8_t out[300];

    ck_assert_uint_eq(socks5_encode_reply_name(out, sizeof(out), 0, "", 0), 0);
    memset(name, 'n', 256);
    name[256] = '\0';
    ck_assert_uint_eq(socks5_encode_reply_name(out, sizeof(out), 0, name, 0), 0);
    ck_assert_uint_eq(socks5_encode_reply_name(out, 7, 0, "ab", 0), 0);
    ck_assert_uint_eq(socks5_encode_reply_name(out, 9, 0, "ab", 0), 9);
}
END_TEST

/* ---- UDP header (RFC 1928 section 7) -------------------------------------------------- */

static enum proto_status udp_header(const uint8_t *msg, size_t len, struct socks5_udp_header *h,
                                    size_t *hdrlen)
{
    uint8_t *p = exact_copy(msg, len);
    enum proto_status st = socks5_parse_udp_header(p, len, h, hdrlen);
    free(p);
    return st;
}

static const uint8_t udp_ipv4[] = {0, 0, 0, 0x01, 192, 0, 2, 1, 0x00, 0x35};
static const uint8_t udp_ipv6[] = {0, 0, 0, 0x04, 0x20, 0x01, 0x0d, 0xb8, 0, 0,    0,
                                   0, 0, 0, 0,    0,    0,    0,    0,    9, 0x1f, 0x90};
static const uint8_t udp_domain[] = {0,   0,   0,   0x03, 7,   'e',  'x',
                                     '.', 't', 'e', 's',  't', 0x01, 0xbb};

/* Every proper prefix of a header is an error (a datagram is all there is); whole is OK. */
static void assert_udp_truncations(const uint8_t *hdr, size_t len)
{
    struct socks5_udp_header h;
    size_t hdrlen;

    for (size_t i = 0; i < len; i++) {
        hdrlen = 12345;
        ck_assert_msg(udp_header(hdr, i, &h, &hdrlen) == PROTO_ERROR,
                      "truncated header of %zu/%zu bytes not PROTO_ERROR", i, len);
        ck_assert_uint_eq(hdrlen, 12345);
    }
    ck_assert_int_eq(udp_header(hdr, len, &h, &hdrlen), PROTO_OK);
    ck_assert_uint_eq(hdrlen, len);
}

START_TEST(test_udp_header_ipv4_fields_and_payload_offset)
{
    uint8_t dgram[sizeof(udp_ipv4) + 5];
    struct socks5_udp_header h;
    size_t hdrlen = 0;

    memcpy(dgram, udp_ipv4, sizeof(udp_ipv4));
    memcpy(dgram + sizeof(udp_ipv4), "hello", 5);
    memset(&h, 'x', sizeof(h));
    ck_assert_int_eq(udp_header(dgram, sizeof(dgram), &h, &hdrlen), PROTO_OK);
    ck_assert_uint_eq(hdrlen, 10);
    ck_assert_uint_eq(h.frag, 0);
    ck_assert_int_eq(h.dest.type, DEST_IPV4);
    ck_assert_mem_eq(h.dest.ip, "\xc0\x00\x02\x01", 4);
    ck_assert_uint_eq(h.dest.port, 53);
    ck_assert_mem_eq(dgram + hdrlen, "hello", 5);
}
END_TEST

START_TEST(test_udp_header_ipv6_fields)
{
    static const uint8_t ip[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 9};
    struct socks5_udp_header h;
    size_t hdrlen = 0;

    ck_assert_int_eq(udp_header(udp_ipv6, sizeof(udp_ipv6), &h, &hdrlen), PROTO_OK);
    ck_assert_uint_eq(hdrlen, 22);
    ck_assert_int_eq(h.dest.type, DEST_IPV6);
    ck_assert_mem_eq(h.dest.ip, ip, 16);
    ck_assert_uint_eq(h.dest.port, 8080);
}
END_TEST

START_TEST(test_udp_header_domain_fields)
{
    struct socks5_udp_header h;
    size_t hdrlen = 0;

    memset(&h, 'x', sizeof(h));
    ck_assert_int_eq(udp_header(udp_domain, sizeof(udp_domain), &h, &hdrlen), PROTO_OK);
    ck_assert_uint_eq(hdrlen, sizeof(udp_domain));
    ck_assert_int_eq(h.dest.type, DEST_NAME);
    ck_assert_str_eq(h.dest.name, "ex.test");
    ck_assert_uint_eq(h.dest.port, 443);
}
END_TEST

START_TEST(test_udp_header_255_byte_domain_parses)
{
    uint8_t dgram[SOCKS5_UDP_HEADER_MAX + 1];
    struct socks5_udp_header h;
    size_t hdrlen = 0;

    memcpy(dgram, "\x00\x00\x00\x03\xff", 5);
    memset(dgram + 5, 'a', 255);
    dgram[260] = 0x00;
    dgram[261] = 0x35;
    dgram[262] = 'X';
    ck_assert_int_eq(udp_header(dgram, sizeof(dgram), &h, &hdrlen), PROTO_OK);
    ck_assert_uint_eq(hdrlen, SOCKS5_UDP_HEADER_MAX);
    ck_assert_uint_eq(strlen(h.dest.name), 255);
    ck_assert_uint_eq(h.dest.port, 53);
    ck_assert_int_eq(udp_header(dgram, SOCKS5_UDP_HEADER_MAX - 1, &h, &hdrlen), PROTO_ERROR);
}
END_TEST

START_TEST(test_udp_header_every_truncation_is_error)
{
    assert_udp_truncations(udp_ipv4, sizeof(udp_ipv4));
    assert_udp_truncations(udp_ipv6, sizeof(udp_ipv6));
    assert_udp_truncations(udp_domain, sizeof(udp_domain));
}
END_TEST

START_TEST(test_udp_header_domain_length_past_end_is_error)
{
    /* LEN 200 with only a few bytes after it, and LEN 255 in a short datagram. */
    static const uint8_t short_name[] = {0, 0, 0, 0x03, 200, 'a', 'b', 'c', 0x00, 0x35};
    static const uint8_t max_len[] = {0, 0, 0, 0x03, 0xff, 'a', 0x00, 0x35};
    struct socks5_udp_header h;
    size_t hdrlen = 777;

    ck_assert_int_eq(udp_header(short_name, sizeof(short_name), &h, &hdrlen), PROTO_ERROR);
    ck_assert_int_eq(udp_header(max_len, sizeof(max_len), &h, &hdrlen), PROTO_ERROR);
    ck_assert_uint_eq(hdrlen, 777);
}
END_TEST

START_TEST(test_udp_header_zero_length_domain_is_error)
{
    static const uint8_t msg[] = {0, 0, 0, 0x03, 0, 0x00, 0x35, 'd', 'a', 't', 'a'};
    struct socks5_udp_header h;
    size_t hdrlen;

    ck_assert_int_eq(udp_header(msg, sizeof(msg), &h, &hdrlen), PROTO_ERROR);
}
END_TEST

START_TEST(test_udp_header_nul_in_domain_is_error)
{
    static const uint8_t mid[] = {0, 0, 0, 0x03, 3, 'a', 0, 'b', 0x00, 0x35};
    static const uint8_t first[] = {0, 0, 0, 0x03, 2, 0, 'b', 0x00, 0x35};
    static const uint8_t last[] = {0, 0, 0, 0x03, 2, 'a', 0, 0x00, 0x35};
    struct socks5_udp_header h;
    size_t hdrlen;

    ck_assert_int_eq(udp_header(mid, sizeof(mid), &h, &hdrlen), PROTO_ERROR);
    ck_assert_int_eq(udp_header(first, sizeof(first), &h, &hdrlen), PROTO_ERROR);
    ck_assert_int_eq(udp_header(last, sizeof(last), &h, &hdrlen), PROTO_ERROR);
}
END_TEST

START_TEST(test_udp_header_unknown_atyp_is_error)
{
    static const uint8_t atyps[] = {0x00, 0x02, 0x05, 0xff};
    uint8_t msg[sizeof(udp_ipv6)];
    struct socks5_udp_header h;
    size_t hdrlen;

    for (size_t i = 0; i < sizeof(atyps); i++) {
        memcpy(msg, udp_ipv6, sizeof(msg));
        msg[3] = atyps[i];
        ck_assert_int_eq(udp_header(msg, sizeof(msg), &h, &hdrlen), PROTO_ERROR);
        ck_assert_int_eq(udp_header(msg, 4, &h, &hdrlen), PROTO_ERROR);
    }
}
END_TEST

START_TEST(test_udp_header_frag_is_passed_through)
{
    uint8_t msg[sizeof(udp_ipv4)];
    struct socks5_udp_header h;
    size_t hdrlen;

    memcpy(msg, udp_ipv4, sizeof(msg));
    for (unsigned frag = 0; frag <= 0xff; frag++) {
        msg[2] = (uint8_t)frag;
        ck_assert_int_eq(udp_header(msg, sizeof(msg), &h, &hdrlen), PROTO_OK);
        ck_assert_uint_eq(h.frag, frag);
    }
}
END_TEST

START_TEST(test_udp_header_rsv_is_ignored)
{
    uint8_t msg[sizeof(udp_ipv4)];
    struct socks5_udp_header h;
    size_t hdrlen;

    memcpy(msg, udp_ipv4, sizeof(msg));
    msg[0] = 0xff;
    msg[1] = 0x01;
    ck_assert_int_eq(udp_header(msg, sizeof(msg), &h, &hdrlen), PROTO_OK);
    ck_assert_uint_eq(hdrlen, 10);
}
END_TEST

START_TEST(test_udp_header_encode_ipv4_is_byte_exact)
{
    struct sockaddr_in sin;
    uint8_t out[22];
    static const uint8_t want[] = {0, 0, 0, 0x01, 198, 51, 100, 7, 0x00, 0x35};

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons(53);
    sin.sin_addr.s_addr = htonl(0xc6336407);
    memset(out, 0xaa, sizeof(out));
    ck_assert_uint_eq(socks5_encode_udp_header(out, (struct sockaddr *)&sin), 10);
    ck_assert_mem_eq(out, want, sizeof(want));
    ck_assert_uint_eq(out[10], 0xaa);
}
END_TEST

START_TEST(test_udp_header_encode_ipv6_is_byte_exact)
{
    struct sockaddr_in6 sin6;
    uint8_t out[22];
    static const uint8_t want[] = {0, 0, 0, 0x04, 0x20, 0x01, 0x0d, 0xb8, 0, 0,    0,
                                   0, 0, 0, 0,    0,    0,    0,    0,    2, 0x04, 0x38};

    memset(&sin6, 0, sizeof(sin6));
    sin6.sin6_family = AF_INET6;
    sin6.sin6_port = htons(1080);
    ck_assert_int_eq(inet_pton(AF_INET6, "2001:db8::2", &sin6.sin6_addr), 1);
    ck_assert_uint_eq(socks5_encode_udp_header(out, (struct sockaddr *)&sin6), 22);
    ck_assert_mem_eq(out, want, sizeof(want));
}
END_TEST

START_TEST(test_udp_header_encode_ipv4_mapped_is_sent_as_ipv4)
{
    struct sockaddr_in6 sin6;
    uint8_t out[22];
    static const uint8_t want[] = {0, 0, 0, 0x01, 127, 0, 0, 1, 0x30, 0x39};

    memset(&sin6, 0, sizeof(sin6));
    sin6.sin6_family = AF_INET6;
    sin6.sin6_port = htons(12345);
    ck_assert_int_eq(inet_pton(AF_INET6, "::ffff:127.0.0.1", &sin6.sin6_addr), 1);
    ck_assert_uint_eq(socks5_encode_udp_header(out, (struct sockaddr *)&sin6), 10);
    ck_assert_mem_eq(out, want, sizeof(want));
}
END_TEST

START_TEST(test_udp_header_encode_other_family_is_zero)
{
    struct sockaddr_un sun;
    uint8_t out[22];

    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    ck_assert_uint_eq(socks5_encode_udp_header(out, (struct sockaddr *)&sun), 0);
}
END_TEST

START_TEST(test_udp_header_encode_parses_back)
{
    struct sockaddr_in6 sin6;
    uint8_t out[22];
    struct socks5_udp_header h;
    size_t n, hdrlen;

    memset(&sin6, 0, sizeof(sin6));
    sin6.sin6_family = AF_INET6;
    sin6.sin6_port = htons(5353);
    sin6.sin6_addr = in6addr_loopback;
    n = socks5_encode_udp_header(out, (struct sockaddr *)&sin6);
    ck_assert_int_eq(udp_header(out, n, &h, &hdrlen), PROTO_OK);
    ck_assert_uint_eq(hdrlen, n);
    ck_assert_uint_eq(h.frag, 0);
    ck_assert_int_eq(h.dest.type, DEST_IPV6);
    ck_assert_mem_eq(h.dest.ip, in6addr_loopback.s6_addr, 16);
    ck_assert_uint_eq(h.dest.port, 5353);
}
END_TEST

/* ---- socks_dest_format ---------------------------------------------------------------- */

START_TEST(test_dest_format_name_ipv4_ipv6)
{
    struct socks_dest d;
    char buf[300];

    memset(&d, 0, sizeof(d));
    d.type = DEST_NAME;
    strcpy(d.name, "example.com");
    d.port = 80;
    ck_assert_str_eq(socks_dest_format(&d, buf, sizeof(buf)), "example.com:80");

    memset(&d, 0, sizeof(d));
    d.type = DEST_IPV4;
    memcpy(d.ip, "\xc0\x00\x02\x01", 4);
    d.port = 80;
    ck_assert_str_eq(socks_dest_format(&d, buf, sizeof(buf)), "192.0.2.1:80");

    memset(&d, 0, sizeof(d));
    d.type = DEST_IPV6;
    ck_assert_int_eq(inet_pton(AF_INET6, "2001:db8::1", d.ip), 1);
    d.port = 80;
    ck_assert_str_eq(socks_dest_format(&d, buf, sizeof(buf)), "[2001:db8::1]:80");
}
END_TEST

START_TEST(test_dest_format_parsed_request_round_trip)
{
    struct socks5_request req;
    size_t consumed;
    uint8_t rep;
    char buf[64];

    ck_assert_int_eq(request(req_domain, sizeof(req_domain), &req, &consumed, &rep), PROTO_OK);
    ck_assert_str_eq(socks_dest_format(&req.dest, buf, sizeof(buf)), "example.com:443");
    ck_assert_int_eq(request(req_ipv6, sizeof(req_ipv6), &req, &consumed, &rep), PROTO_OK);
    ck_assert_str_eq(socks_dest_format(&req.dest, buf, sizeof(buf)), "[2001:db8::1]:8080");
}
END_TEST

START_TEST(test_dest_format_truncates_small_buffers)
{
    struct socks_dest d;
    char buf[16];

    memset(&d, 0, sizeof(d));
    d.type = DEST_NAME;
    strcpy(d.name, "example.com");
    d.port = 8080;
    memset(buf, 'x', sizeof(buf));
    ck_assert_ptr_eq(socks_dest_format(&d, buf, 8), buf);
    ck_assert_str_eq(buf, "example");
    ck_assert_int_eq(buf[8], 'x');

    memset(buf, 'x', sizeof(buf));
    socks_dest_format(&d, buf, 1);
    ck_assert_int_eq(buf[0], '\0');
    ck_assert_int_eq(buf[1], 'x');

    buf[0] = 'x';
    socks_dest_format(&d, buf, 0);
    ck_assert_int_eq(buf[0], 'x');

    d.type = DEST_IPV6;
    ck_assert_int_eq(inet_pton(AF_INET6, "2001:db8::1", d.ip), 1);
    ck_assert_str_eq(socks_dest_format(&d, buf, 6), "[2001");
}
END_TEST

START_TEST(test_dest_format_longest_name)
{
    struct socks_dest d;
    char buf[DEST_NAME_MAX + 8];

    memset(&d, 0, sizeof(d));
    d.type = DEST_NAME;
    memset(d.name, 'a', DEST_NAME_MAX);
    d.port = 65535;
    socks_dest_format(&d, buf, sizeof(buf));
    ck_assert_uint_eq(strlen(buf), DEST_NAME_MAX + 6);
    ck_assert_str_eq(buf + DEST_NAME_MAX, ":65535");
}
END_TEST

START_TEST(test_dest_format_escapes_control_bytes_in_names)
{
    struct socks_dest d;
    char buf[64];

    memset(&d, 0, sizeof(d));
    d.type = DEST_NAME;
    strcpy(d.name, "a\nb \\\x7f\xff");
    d.port = 1;
    ck_assert_str_eq(socks_dest_format(&d, buf, sizeof(buf)), "a\\x0ab\\x20\\x5c\\x7f\\xff:1");
}
END_TEST

START_TEST(test_dest_format_unknown_type)
{
    struct socks_dest d;
    char buf[16];

    memset(&d, 0, sizeof(d));
    d.type = (enum dest_type)42;
    ck_assert_str_eq(socks_dest_format(&d, buf, sizeof(buf)), "?");
}
END_TEST

static Suite *socks5_suite(void)
{
    Suite *s = suite_create("socks5");
    TCase *tc;

    tc = tcase_create("greeting");
    tcase_add_test(tc, test_greeting_parses_methods);
    tcase_add_test(tc, test_greeting_nmethods_zero_parses_with_no_methods);
    tcase_add_test(tc, test_greeting_255_methods);
    tcase_add_test(tc, test_greeting_every_prefix_needs_more);
    tcase_add_test(tc, test_greeting_pipelined_leaves_extra_bytes);
    tcase_add_test(tc, test_greeting_wrong_version_is_error_on_first_byte);
    tcase_add_test(tc, test_choose_method_honours_server_preference);
    tcase_add_test(tc, test_choose_method_skips_preferences_the_client_lacks);
    tcase_add_test(tc, test_choose_method_none_when_nothing_matches);
    tcase_add_test(tc, test_choose_method_nmethods_zero_gives_none);
    tcase_add_test(tc, test_choose_method_client_offering_ff_does_not_select_it);
    tcase_add_test(tc, test_encode_method_is_ver_method);
    suite_add_tcase(s, tc);

    tc = tcase_create("userpass");
    tcase_add_test(tc, test_userpass_parses_user_and_password);
    tcase_add_test(tc, test_userpass_empty_user_and_password_parse);
    tcase_add_test(tc, test_userpass_255_byte_fields);
    tcase_add_test(tc, test_userpass_every_prefix_needs_more);
    tcase_add_test(tc, test_userpass_pipelined_leaves_extra_bytes);
    tcase_add_test(tc, test_userpass_wrong_version_is_error_on_first_byte);
    tcase_add_test(tc, test_userpass_nul_inside_user_or_password_is_error);
    tcase_add_test(tc, test_encode_userpass_reply);
    suite_add_tcase(s, tc);

    tc = tcase_create("request");
    tcase_add_test(tc, test_request_ipv4_connect_fields);
    tcase_add_test(tc, test_request_ipv6_bind_fields);
    tcase_add_test(tc, test_request_domain_udp_associate_fields);
    tcase_add_test(tc, test_request_port_is_host_order);
    tcase_add_test(tc, test_request_rsv_byte_is_ignored);
    tcase_add_test(tc, test_request_every_prefix_needs_more_ipv4);
    tcase_add_test(tc, test_request_every_prefix_needs_more_ipv6);
    tcase_add_test(tc, test_request_every_prefix_needs_more_domain);
    tcase_add_test(tc, test_request_pipelined_leaves_extra_bytes);
    tcase_add_test(tc, test_request_255_byte_domain_parses);
    tcase_add_test(tc, test_request_one_byte_domain_parses);
    tcase_add_test(tc, test_request_zero_length_domain_is_general_failure);
    tcase_add_test(tc, test_request_domain_with_nul_is_general_failure);
    tcase_add_test(tc, test_request_nul_in_port_after_domain_is_fine);
    tcase_add_test(tc, test_request_wrong_version_is_general_failure_on_first_byte);
    tcase_add_test(tc, test_request_unknown_cmd_is_command_not_supported_on_second_byte);
    tcase_add_test(tc, test_request_unknown_atyp_is_address_type_not_supported_on_fourth_byte);
    tcase_add_test(tc, test_request_version_is_checked_before_cmd_and_atyp);
    tcase_add_test(tc, test_request_rep_may_be_null);
    suite_add_tcase(s, tc);

    tc = tcase_create("reply");
    tcase_add_test(tc, test_reply_ipv4_bound_is_byte_exact);
    tcase_add_test(tc, test_reply_ipv6_bound_is_byte_exact);
    tcase_add_test(tc, test_reply_ipv4_mapped_bound_is_sent_as_ipv4);
    tcase_add_test(tc, test_reply_null_bound_is_ipv4_zeros);
    tcase_add_test(tc, test_reply_non_inet_bound_is_ipv4_zeros);
    tcase_add_test(tc, test_reply_carries_every_rep_code);
    suite_add_tcase(s, tc);

    tc = tcase_create("tor_extensions");
    tcase_add_test(tc, test_request_resolve_with_name_parses);
    tcase_add_test(tc, test_request_resolve_with_address_parses);
    tcase_add_test(tc, test_request_resolve_ptr_ipv4_and_ipv6_parse);
    tcase_add_test(tc, test_request_resolve_ptr_with_name_is_address_type_not_supported);
    tcase_add_test(tc, test_request_every_prefix_needs_more_resolve);
    tcase_add_test(tc, test_request_commands_next_to_tor_extensions_stay_unsupported);
    tcase_add_test(tc, test_reply_name_is_byte_exact);
    tcase_add_test(tc, test_reply_name_255_bytes_and_exact_size);
    tcase_add_test(tc, test_reply_name_empty_or_too_long_is_refused);
    suite_add_tcase(s, tc);

    tc = tcase_create("udp_header");
    tcase_add_test(tc, test_udp_header_ipv4_fields_and_payload_offset);
    tcase_add_test(tc, test_udp_header_ipv6_fields);
    tcase_add_test(tc, test_udp_header_domain_fields);
    tcase_add_test(tc, test_udp_header_255_byte_domain_parses);
    tcase_add_test(tc, test_udp_header_every_truncation_is_error);
    tcase_add_test(tc, test_udp_header_domain_length_past_end_is_error);
    tcase_add_test(tc, test_udp_header_zero_length_domain_is_error);
    tcase_add_test(tc, test_udp_header_nul_in_domain_is_error);
    tcase_add_test(tc, test_udp_header_unknown_atyp_is_error);
    tcase_add_test(tc, test_udp_header_frag_is_passed_through);
    tcase_add_test(tc, test_udp_header_rsv_is_ignored);
    tcase_add_test(tc, test_udp_header_encode_ipv4_is_byte_exact);
    tcase_add_test(tc, test_udp_header_encode_ipv6_is_byte_exact);
    tcase_add_test(tc, test_udp_header_encode_ipv4_mapped_is_sent_as_ipv4);
    tcase_add_test(tc, test_udp_header_encode_other_family_is_zero);
    tcase_add_test(tc, test_udp_header_encode_parses_back);
    suite_add_tcase(s, tc);

    tc = tcase_create("dest_format");
    tcase_add_test(tc, test_dest_format_name_ipv4_ipv6);
    tcase_add_test(tc, test_dest_format_parsed_request_round_trip);
    tcase_add_test(tc, test_dest_format_truncates_small_buffers);
    tcase_add_test(tc, test_dest_format_longest_name);
    tcase_add_test(tc, test_dest_format_escapes_control_bytes_in_names);
    tcase_add_test(tc, test_dest_format_unknown_type);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(socks5_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
