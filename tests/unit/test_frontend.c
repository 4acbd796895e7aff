/* Unit tests for the SOCKS front ends: what each says about buffered client bytes, and replies. */
#include "config.h"

#include <check.h>
#include <netinet/in.h>
#include <string.h>

#include "ferry/conf.h"
#include "ferry/frontend.h"
#include "ferry/http.h"
#include "ferry/socks5.h"

static struct config cfg;
static uint8_t state;
static struct request req;
static struct frontend_login login;
static uint8_t buf[1024];

static void setup(void)
{
    memset(&cfg, 0, sizeof(cfg));
    cfg.methods[0] = SOCKS5_METHOD_NOAUTH;
    cfg.nmethods = 1;
    state = 0;
    memset(&req, 0, sizeof(req));
    memset(&login, 0, sizeof(login));
}

/* Feed len bytes to front end fe; the answer, with *in filled. */
static enum frontend_step feed(const struct frontend *fe, struct frontend_input *in,
                               const void *bytes, size_t len)
{
    memcpy(buf, bytes, len);
    memset(in, 0, sizeof(*in));
    in->cfg = &cfg;
    in->state = &state;
    in->buf = buf;
    in->len = len;
    in->cap = sizeof(buf);
    in->req = &req;
    in->login = &login;
    return fe->input(in);
}

START_TEST(test_first_byte_chooses_the_front_end)
{
    ck_assert_ptr_eq(frontend_for(0x04), &frontend_socks4);
    ck_assert_ptr_eq(frontend_for(0x05), &frontend_socks5);
    /* HTTP methods are upper-case tokens. */
    ck_assert_ptr_eq(frontend_for('C'), &frontend_http);
    ck_assert_ptr_eq(frontend_for('G'), &frontend_http);
    /* Anything else goes to SOCKS5, whose parser calls it bad input (a TLS hello here). */
    ck_assert_ptr_eq(frontend_for(0x16), &frontend_socks5);
    ck_assert_ptr_eq(frontend_for('g'), &frontend_socks5);
}
END_TEST

START_TEST(test_socks5_greeting_split_then_whole_picks_noauth_and_goes_on)
{
    struct frontend_input in;
    const uint8_t greeting[] = {5, 2, 2, 0};

    for (size_t n = 0; n < sizeof(greeting); n++)
        ck_assert_int_eq(feed(&frontend_socks5, &in, greeting, n), FRONTEND_NEED_MORE);
    ck_assert_int_eq(feed(&frontend_socks5, &in, greeting, sizeof(greeting)), FRONTEND_NEXT);
    ck_assert_uint_eq(in.used, 4);
    ck_assert_uint_eq(in.out_len, 2);
    ck_assert_int_eq(in.out[0], 5);
    ck_assert_int_eq(in.out[1], SOCKS5_METHOD_NOAUTH);
}
END_TEST

START_TEST(test_socks5_greeting_without_a_common_method_closes_after_ff)
{
    struct frontend_input in;
    const uint8_t greeting[] = {5, 1, 2};

    ck_assert_int_eq(feed(&frontend_socks5, &in, greeting, sizeof(greeting)), FRONTEND_CLOSE);
    ck_assert_int_eq(in.close, FRONTEND_NO_METHOD);
    ck_assert_uint_eq(in.out_len, 2);
    ck_assert_int_eq(in.out[1], SOCKS5_METHOD_NONE);
}
END_TEST

START_TEST(test_not_socks_closes_without_an_answer)
{
    struct frontend_input in;

    ck_assert_int_eq(feed(&frontend_socks5, &in, "\x16\x03\x01\x02\x00\x01", 6), FRONTEND_CLOSE);
    ck_assert_int_eq(in.close, FRONTEND_BAD_INPUT);
    ck_assert_uint_eq(in.out_len, 0);
}
END_TEST

START_TEST(test_socks5_login_hands_credentials_on_and_wipes_them_from_the_buffer)
{
    struct frontend_input in;
    const uint8_t greeting[] = {5, 1, 2};
    const uint8_t auth[] = {1, 5, 'a', 'l', 'i', 'c', 'e', 3, 'p', 'w', '!', 5, 1, 0, 1};
    uint8_t out[16];

    cfg.methods[0] = SOCKS5_METHOD_USERPASS;
    ck_assert_int_eq(feed(&frontend_socks5, &in, greeting, sizeof(greeting)), FRONTEND_NEXT);
    ck_assert_int_eq(in.out[1], SOCKS5_METHOD_USERPASS);
    /* The sub-negotiation with the next request's first bytes behind it. */
    ck_assert_int_eq(feed(&frontend_socks5, &in, auth, sizeof(auth)), FRONTEND_LOGIN);
    ck_assert_uint_eq(in.used, 11);
    ck_assert_str_eq(login.user, "alice");
    ck_assert_uint_eq(login.user_len, 5);
    ck_assert_str_eq(login.pass, "pw!");
    for (size_t i = 0; i < in.used; i++)
        ck_assert_int_eq(buf[i], 0);
    ck_assert_int_eq(buf[11], 5); /* what follows is left alone */
    /* A refused login answers status 1; an accepted one 0 and the request comes next. */
    ck_assert_uint_eq(frontend_socks5.login_reply(false, &state, out, sizeof(out)), 2);
    ck_assert_int_eq(out[1], 1);
    ck_assert_uint_eq(frontend_socks5.login_reply(true, &state, out, sizeof(out)), 2);
    ck_assert_int_eq(out[0], SOCKS5_USERPASS_VERSION);
    ck_assert_int_eq(out[1], 0);
    ck_assert_int_eq(feed(&frontend_socks5, &in, "\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50", 10),
                     FRONTEND_REQUEST);
    ck_assert_int_eq(req.cmd, REQUEST_CONNECT);
    ck_assert_int_eq(req.dest.port, 80);
}
END_TEST

START_TEST(test_socks5_requests_map_to_request_commands)
{
    struct frontend_input in;
    static const struct {
        uint8_t cmd;
        enum request_cmd want;
    } cases[] = {
        {SOCKS5_CMD_CONNECT, REQUEST_CONNECT},
        {SOCKS5_CMD_BIND, REQUEST_BIND},
        {SOCKS5_CMD_UDP_ASSOCIATE, REQUEST_UDP_ASSOCIATE},
        {SOCKS5_CMD_RESOLVE, REQUEST_RESOLVE},
        {SOCKS5_CMD_RESOLVE_PTR, REQUEST_RESOLVE_PTR},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t msg[] = {5, cases[i].cmd, 0, 3, 4, 'h', 'o', 's', 't', 0, 53};

        state = 2; /* past the greeting */
        if (cases[i].cmd == SOCKS5_CMD_RESOLVE_PTR) {
            /* RESOLVE_PTR takes an address. */
            uint8_t ptr[] = {5, cases[i].cmd, 0, 1, 192, 0, 2, 1, 0, 0};
            ck_assert_int_eq(feed(&frontend_socks5, &in, ptr, sizeof(ptr)), FRONTEND_REQUEST);
        } else {
            ck_assert_int_eq(feed(&frontend_socks5, &in, msg, sizeof(msg)), FRONTEND_REQUEST);
            ck_assert_str_eq(req.dest.name, "host");
        }
        ck_assert_int_eq(req.cmd, cases[i].want);
    }
}
END_TEST

START_TEST(test_socks5_unknown_command_fails_with_rep_07)
{
    struct frontend_input in;
    const uint8_t msg[] = {5, 9, 0, 1, 127, 0, 0, 1, 0, 80};

    state = 2;
    ck_assert_int_eq(feed(&frontend_socks5, &in, msg, sizeof(msg)), FRONTEND_FAIL);
    ck_assert_int_eq(in.rep, SOCKS5_REP_COMMAND_NOT_SUPPORTED);
}
END_TEST

START_TEST(test_socks4a_connect_and_resolve_are_requests)
{
    struct frontend_input in;
    const uint8_t connect4a[] = {4, 1, 0, 80, 0, 0, 0, 1, 'u', 0, 'e', 'x', '.', 't', 0};
    const uint8_t resolve[] = {4, 0xf0, 0, 0, 0, 0, 0, 1, 0, 'e', 'x', '.', 't', 0};

    for (size_t n = 0; n < sizeof(connect4a); n++)
        ck_assert_int_eq(feed(&frontend_socks4, &in, connect4a, n), FRONTEND_NEED_MORE);
    ck_assert_int_eq(feed(&frontend_socks4, &in, connect4a, sizeof(connect4a)), FRONTEND_REQUEST);
    ck_assert_int_eq(req.cmd, REQUEST_CONNECT);
    ck_assert_str_eq(req.dest.name, "ex.t");
    ck_assert_int_eq(feed(&frontend_socks4, &in, resolve, sizeof(resolve)), FRONTEND_REQUEST);
    ck_assert_int_eq(req.cmd, REQUEST_RESOLVE);
}
END_TEST

START_TEST(test_socks4_is_refused_when_no_auth_is_not_allowed)
{
    struct frontend_input in;
    const uint8_t connect4[] = {4, 1, 0, 80, 127, 0, 0, 1, 0};

    cfg.methods[0] = SOCKS5_METHOD_USERPASS;
    ck_assert_int_eq(feed(&frontend_socks4, &in, connect4, sizeof(connect4)), FRONTEND_REFUSE);
    ck_assert_int_eq(in.rep, SOCKS5_REP_NOT_ALLOWED);
    ck_assert_uint_eq(in.used, sizeof(connect4));
}
END_TEST

START_TEST(test_replies_render_in_each_protocol)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(1080)};
    uint8_t out[64];
    size_t n;

    sin.sin_addr.s_addr = htonl(0x7f000001);
    n = frontend_socks5.reply(SOCKS5_REP_CONNECTION_REFUSED, (struct sockaddr *)&sin, out,
                              sizeof(out));
    ck_assert_uint_eq(n, 10);
    ck_assert_int_eq(out[1], SOCKS5_REP_CONNECTION_REFUSED);
    ck_assert_int_eq(out[8], 1080 >> 8);
    /* SOCKS4 has one refusal code, 91; success is 90. */
    n = frontend_socks4.reply(SOCKS5_REP_CONNECTION_REFUSED, NULL, out, sizeof(out));
    ck_assert_uint_eq(n, 8);
    ck_assert_int_eq(out[1], 91);
    n = frontend_socks4.reply(SOCKS5_REP_SUCCEEDED, (struct sockaddr *)&sin, out, sizeof(out));
    ck_assert_int_eq(out[1], 90);
    ck_assert_int_eq(out[4], 127);
    n = frontend_socks5.reply_name(SOCKS5_REP_SUCCEEDED, "example.test", out, sizeof(out));
    ck_assert_uint_eq(n, 7 + 12);
    ck_assert_ptr_null(frontend_socks4.reply_name);
    ck_assert(frontend_socks4.ipv4_only);
    ck_assert(!frontend_socks5.ipv4_only);
}
END_TEST

START_TEST(test_http_connect_without_auth_is_a_request_and_keeps_early_bytes)
{
    struct frontend_input in;
    const char *msg = "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\nhello";

    ck_assert_int_eq(feed(&frontend_http, &in, msg, 20), FRONTEND_NEED_MORE);
    ck_assert_int_eq(feed(&frontend_http, &in, msg, strlen(msg)), FRONTEND_REQUEST);
    ck_assert_uint_eq(in.used, strlen(msg) - 5);
    ck_assert_int_eq(req.cmd, REQUEST_CONNECT);
    ck_assert_str_eq(req.dest.name, "example.com");
    ck_assert_int_eq(req.dest.port, 443);
}
END_TEST

START_TEST(test_http_login_then_the_same_head_is_the_request)
{
    struct frontend_input in;
    const char *msg =
        "CONNECT 127.0.0.1:22 HTTP/1.1\r\nProxy-Authorization: Basic YWxpY2U6cHch\r\n\r\nSSH";
    uint8_t out[256];

    cfg.methods[0] = SOCKS5_METHOD_USERPASS;
    /* No credentials: 407 with a challenge, then close. */
    ck_assert_int_eq(feed(&frontend_http, &in, "CONNECT h:1 HTTP/1.1\r\n\r\n", 24), FRONTEND_CLOSE);
    ck_assert_int_eq(in.close, FRONTEND_NO_METHOD);
    ck_assert(strstr((const char *)in.out, "407") != NULL);
    ck_assert(strstr((const char *)in.out, "Proxy-Authenticate: Basic") != NULL);
    /* Credentials: checked first, nothing consumed. */
    ck_assert_int_eq(feed(&frontend_http, &in, msg, strlen(msg)), FRONTEND_LOGIN);
    ck_assert_uint_eq(in.used, 0);
    ck_assert_str_eq(login.user, "alice");
    ck_assert_str_eq(login.pass, "pw!");
    ck_assert_uint_eq(frontend_http.login_reply(true, &state, out, sizeof(out)), 0);
    /* Read again once verified: the request, and the head (credentials) wiped. */
    memcpy(buf, msg, strlen(msg));
    memset(&in, 0, sizeof(in));
    in.cfg = &cfg;
    in.state = &state;
    in.buf = buf;
    in.len = strlen(msg);
    in.cap = sizeof(buf);
    in.req = &req;
    in.login = &login;
    ck_assert_int_eq(frontend_http.input(&in), FRONTEND_REQUEST);
    ck_assert_uint_eq(in.used, strlen(msg) - 3);
    for (size_t i = 0; i < in.used; i++)
        ck_assert_int_eq(buf[i], 0);
    ck_assert_int_eq(req.dest.port, 22);
    /* A refused login answers 407. */
    ck_assert_uint_gt(frontend_http.login_reply(false, &state, out, sizeof(out)), 0);
    ck_assert(memcmp(out, "HTTP/1.1 407 ", 13) == 0);
}
END_TEST

START_TEST(test_http_errors_and_forwarding_get_statuses)
{
    struct frontend_input in;
    uint8_t out[256];

    /* Absolute form is forwarded: the head stays in the buffer for the forwarder. */
    ck_assert_int_eq(feed(&frontend_http, &in, "POST http://h:81/p HTTP/1.1\r\n\r\n", 32),
                     FRONTEND_REQUEST);
    ck_assert_int_eq(req.cmd, REQUEST_FORWARD);
    ck_assert_int_eq(req.method, HTTP_POST);
    ck_assert_int_eq(req.dest.port, 81);
    ck_assert_str_eq(req.dest.name, "h");
    ck_assert_uint_eq(in.used, 0);
    /* https:// in absolute form: 501 with a body naming CONNECT. */
    ck_assert_int_eq(feed(&frontend_http, &in, "GET https://h/ HTTP/1.1\r\n\r\n", 27),
                     FRONTEND_CLOSE);
    ck_assert(memcmp(in.out, "HTTP/1.1 501 ", 13) == 0);
    ck_assert_ptr_nonnull(memmem(in.out, in.out_len, "CONNECT", 7));
    ck_assert_ptr_nonnull(memmem(in.out, in.out_len, "Content-Length: ", 16));
    ck_assert_int_eq(feed(&frontend_http, &in, "GET / HTTP/1.1\r\n\r\n", 18), FRONTEND_CLOSE);
    ck_assert(memcmp(in.out, "HTTP/1.1 400 ", 13) == 0);
    ck_assert_int_eq(feed(&frontend_http, &in, "CONNECT h HTTP/1.1\r\n\r\n", 22), FRONTEND_CLOSE);
    ck_assert_int_eq(in.close, FRONTEND_BAD_INPUT);
    ck_assert(memcmp(in.out, "HTTP/1.1 400 ", 13) == 0);
    /* Replies: the SOCKS5 codes the pipeline uses, as HTTP statuses. */
    ck_assert_uint_gt(frontend_http.reply(SOCKS5_REP_SUCCEEDED, NULL, out, sizeof(out)), 0);
    ck_assert(memcmp(out, "HTTP/1.1 200 ", 13) == 0);
    frontend_http.reply(SOCKS5_REP_NOT_ALLOWED, NULL, out, sizeof(out));
    ck_assert(memcmp(out, "HTTP/1.1 403 ", 13) == 0);
    frontend_http.reply(SOCKS5_REP_CONNECTION_REFUSED, NULL, out, sizeof(out));
    ck_assert(memcmp(out, "HTTP/1.1 502 ", 13) == 0);
    frontend_http.reply(SOCKS5_REP_TTL_EXPIRED, NULL, out, sizeof(out));
    ck_assert(memcmp(out, "HTTP/1.1 504 ", 13) == 0);
}
END_TEST

START_TEST(test_http_with_password_or_none_serves_anonymous_and_checks_given_credentials)
{
    struct frontend_input in;
    const char *anon = "CONNECT h:1 HTTP/1.1\r\n\r\n";
    const char *creds = "CONNECT h:1 HTTP/1.1\r\nProxy-Authorization: Basic YWxpY2U6cHch\r\n\r\n";
    const char *bad = "CONNECT h:1 HTTP/1.1\r\nProxy-Authorization: Basic !!\r\n\r\n";

    cfg.methods[0] = SOCKS5_METHOD_USERPASS;
    cfg.methods[1] = SOCKS5_METHOD_NOAUTH;
    cfg.nmethods = 2;
    /* No credentials: served anonymously. */
    ck_assert_int_eq(feed(&frontend_http, &in, anon, strlen(anon)), FRONTEND_REQUEST);
    /* Credentials given: checked, even though anonymous use is allowed. */
    state = 0;
    ck_assert_int_eq(feed(&frontend_http, &in, creds, strlen(creds)), FRONTEND_LOGIN);
    ck_assert_str_eq(login.user, "alice");
    /* Credentials that are not Basic user:password: 407, not anonymous. */
    state = 0;
    ck_assert_int_eq(feed(&frontend_http, &in, bad, strlen(bad)), FRONTEND_CLOSE);
    ck_assert(memcmp(in.out, "HTTP/1.1 407 ", 13) == 0);
    /* With no-auth only, credentials are not asked about: a request. */
    cfg.methods[0] = SOCKS5_METHOD_NOAUTH;
    cfg.nmethods = 1;
    state = 0;
    ck_assert_int_eq(feed(&frontend_http, &in, creds, strlen(creds)), FRONTEND_REQUEST);
}
END_TEST

START_TEST(test_http_limit_and_command_refusals_are_503_and_501)
{
    uint8_t out[256];

    frontend_http.reply(SOCKS5_REP_GENERAL_FAILURE, NULL, out, sizeof(out));
    ck_assert(memcmp(out, "HTTP/1.1 503 ", 13) == 0);
    frontend_http.reply(SOCKS5_REP_COMMAND_NOT_SUPPORTED, NULL, out, sizeof(out));
    ck_assert(memcmp(out, "HTTP/1.1 501 ", 13) == 0);
    frontend_http.reply(SOCKS5_REP_HOST_UNREACHABLE, NULL, out, sizeof(out));
    ck_assert(memcmp(out, "HTTP/1.1 502 ", 13) == 0);
}
END_TEST

static Suite *frontend_suite(void)
{
    Suite *s = suite_create("frontend");
    TCase *tc = tcase_create("socks");

    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, test_first_byte_chooses_the_front_end);
    tcase_add_test(tc, test_socks5_greeting_split_then_whole_picks_noauth_and_goes_on);
    tcase_add_test(tc, test_socks5_greeting_without_a_common_method_closes_after_ff);
    tcase_add_test(tc, test_not_socks_closes_without_an_answer);
    tcase_add_test(tc, test_socks5_login_hands_credentials_on_and_wipes_them_from_the_buffer);
    tcase_add_test(tc, test_socks5_requests_map_to_request_commands);
    tcase_add_test(tc, test_socks5_unknown_command_fails_with_rep_07);
    tcase_add_test(tc, test_socks4a_connect_and_resolve_are_requests);
    tcase_add_test(tc, test_socks4_is_refused_when_no_auth_is_not_allowed);
    tcase_add_test(tc, test_replies_render_in_each_protocol);
    tcase_add_test(tc, test_http_connect_without_auth_is_a_request_and_keeps_early_bytes);
    tcase_add_test(tc, test_http_login_then_the_same_head_is_the_request);
    tcase_add_test(tc, test_http_errors_and_forwarding_get_statuses);
    tcase_add_test(tc,
                   test_http_with_password_or_none_serves_anonymous_and_checks_given_credentials);
    tcase_add_test(tc, test_http_limit_and_command_refusals_are_503_and_501);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(frontend_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
