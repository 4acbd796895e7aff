/* Unit tests for the HTTP proxy request parser and the response heads. */
#include "config.h"

#include <check.h>
#include <sodium.h>
#include <string.h>

#include "ferry/http.h"

static enum proto_status parse(const char *text, size_t cap, struct http_request *req, size_t *used,
                               int *status)
{
    return http_parse_request((const uint8_t *)text, strlen(text), cap, req, used, status);
}

START_TEST(test_connect_authority_split_anywhere_then_whole)
{
    const char *head = "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n";
    const char *all = "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\nDATA";
    struct http_request req;
    size_t used = 0;
    int status = 0;

    for (size_t k = 0; k < strlen(head); k++)
        ck_assert_int_eq(http_parse_request((const uint8_t *)head, k, 2048, &req, &used, &status),
                         PROTO_NEED_MORE);
    ck_assert_int_eq(parse(all, 2048, &req, &used, &status), PROTO_OK);
    ck_assert_uint_eq(used, strlen(head));
    ck_assert_int_eq(req.method, HTTP_CONNECT);
    ck_assert_int_eq(req.form, HTTP_TARGET_AUTHORITY);
    ck_assert_int_eq(req.dest.type, DEST_NAME);
    ck_assert_str_eq(req.dest.name, "example.com");
    ck_assert_int_eq(req.dest.port, 443);
    ck_assert_int_eq(req.version_minor, 1);
    ck_assert(!req.proxy_auth);
}
END_TEST

START_TEST(test_connect_to_addresses_and_bad_authorities)
{
    struct http_request req;
    size_t used;
    int status;

    ck_assert_int_eq(parse("CONNECT 192.0.2.1:22 HTTP/1.0\n\n", 2048, &req, &used, &status),
                     PROTO_OK);
    ck_assert_int_eq(req.dest.type, DEST_IPV4);
    ck_assert(req.close); /* HTTP/1.0 */
    ck_assert_int_eq(
        parse("CONNECT [2001:db8::1]:8080 HTTP/1.1\r\n\r\n", 2048, &req, &used, &status), PROTO_OK);
    ck_assert_int_eq(req.dest.type, DEST_IPV6);
    ck_assert_int_eq(req.dest.port, 8080);
    /* No port, port 0, a path, userinfo, a stray bracket, a NUL-free but odd name. */
    static const char *bad[] = {
        "CONNECT example.com HTTP/1.1\r\n\r\n",
        "CONNECT example.com:0 HTTP/1.1\r\n\r\n",
        "CONNECT /x HTTP/1.1\r\n\r\n",
        "CONNECT a@b:80 HTTP/1.1\r\n\r\n",
        "CONNECT [::1:80 HTTP/1.1\r\n\r\n",
        "CONNECT ex%41mple.com:80 HTTP/1.1\r\n\r\n",
        "CONNECT example.com:99999 HTTP/1.1\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_msg(parse(bad[i], 2048, &req, &used, &status) == PROTO_ERROR, "%s", bad[i]);
        ck_assert_int_eq(status, 400);
    }
}
END_TEST

START_TEST(test_basic_credentials_are_decoded_and_bad_ones_flagged)
{
    struct http_request req;
    size_t used;
    int status;

    /* "Aladdin:open sesame", RFC 7617 section 2. */
    ck_assert_int_eq(parse("CONNECT h:1 HTTP/1.1\r\nProxy-Authorization: basic "
                           "QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n\r\n",
                           2048, &req, &used, &status),
                     PROTO_OK);
    ck_assert(req.proxy_auth && req.proxy_auth_ok);
    ck_assert_str_eq(req.user, "Aladdin");
    ck_assert_str_eq(req.pass, "open sesame");
    ck_assert_int_eq(parse("CONNECT h:1 HTTP/1.1\r\nProxy-Authorization: Digest x\r\n\r\n", 2048,
                           &req, &used, &status),
                     PROTO_OK);
    ck_assert(req.proxy_auth && !req.proxy_auth_ok);
    ck_assert_int_eq(parse("CONNECT h:1 HTTP/1.1\r\nProxy-Authorization: Basic !!!\r\n\r\n", 2048,
                           &req, &used, &status),
                     PROTO_OK);
    ck_assert(!req.proxy_auth_ok);
    /* Two credentials: which one counts is ambiguous, so neither does. */
    ck_assert_int_eq(parse("CONNECT h:1 HTTP/1.1\r\nProxy-Authorization: Basic YTpi\r\n"
                           "Proxy-Authorization: Basic YzpK\r\n\r\n",
                           2048, &req, &used, &status),
                     PROTO_ERROR);
    ck_assert_int_eq(status, 400);
}
END_TEST

START_TEST(test_absolute_form_targets_and_framing)
{
    struct http_request req;
    size_t used;
    int status;
    const char *get = "GET http://example.com:8080/a/b?c=d HTTP/1.1\r\nHost: example.com\r\n"
                      "Connection: close\r\n\r\n";

    ck_assert_int_eq(parse(get, 2048, &req, &used, &status), PROTO_OK);
    ck_assert_int_eq(req.method, HTTP_GET);
    ck_assert_int_eq(req.form, HTTP_TARGET_ABSOLUTE);
    ck_assert_int_eq(req.dest.port, 8080);
    ck_assert_uint_eq(req.path_len, 8);
    ck_assert(memcmp(get + req.path_off, "/a/b?c=d", 8) == 0);
    ck_assert(req.close);
    ck_assert_int_eq(parse("GET https://example.com/ HTTP/1.1\r\n\r\n", 2048, &req, &used, &status),
                     PROTO_OK);
    ck_assert(req.https);
    ck_assert_int_eq(req.dest.port, 443);
    ck_assert_int_eq(parse("GET / HTTP/1.1\r\n\r\n", 2048, &req, &used, &status), PROTO_OK);
    ck_assert_int_eq(req.form, HTTP_TARGET_ORIGIN);
    ck_assert_int_eq(
        parse("POST http://h/ HTTP/1.1\r\nContent-Length: 12\r\n\r\n", 2048, &req, &used, &status),
        PROTO_OK);
    ck_assert(req.has_length && req.content_length == 12);
    ck_assert_int_eq(parse("POST http://h/ HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                           2048, &req, &used, &status),
                     PROTO_OK);
    ck_assert(req.chunked);
    /* Request smuggling shapes are refused (RFC 9112 section 6.3). */
    static const char *bad[] = {
        "POST http://h/ HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST http://h/ HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "POST http://h/ HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        "POST http://h/ HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        "GET http://h/ HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
        "GET http://h/ HTTP/1.1\r\nX : a\r\n\r\n",
        "GET http://h/ HTTP/1.1\r\nX: a\x01\r\n\r\n",
        "GET  http://h/ HTTP/1.1\r\n\r\n",
        "GET http://h/ http/1.1\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_msg(parse(bad[i], 2048, &req, &used, &status) == PROTO_ERROR, "%s", bad[i]);
        ck_assert_int_eq(status, 400);
    }
}
END_TEST

START_TEST(test_limits_and_versions_give_their_statuses)
{
    static char big[4096];
    struct http_request req;
    size_t used;
    int status;

    ck_assert_int_eq(parse("GET http://h/ HTTP/2.0\r\n\r\n", 2048, &req, &used, &status),
                     PROTO_ERROR);
    ck_assert_int_eq(status, 505);
    /* A head that cannot end within the buffer: 431 as soon as the buffer is full. */
    memset(big, 0, sizeof(big));
    strcpy(big, "CONNECT h:1 HTTP/1.1\r\nX: ");
    memset(big + strlen(big), 'a', 3000);
    ck_assert_int_eq(http_parse_request((const uint8_t *)big, 2047, 2048, &req, &used, &status),
                     PROTO_NEED_MORE);
    ck_assert_int_eq(http_parse_request((const uint8_t *)big, 2048, 2048, &req, &used, &status),
                     PROTO_ERROR);
    ck_assert_int_eq(status, 431);
    /* With room for more than a request line, an over-long one is 414, whole or not yet. */
    {
        static char line[HTTP_REQUEST_LINE_MAX + 64];

        memcpy(line, "GET http://h/", 13);
        memset(line + 13, 'a', sizeof(line) - 13);
        ck_assert_int_eq(
            http_parse_request((const uint8_t *)line, sizeof(line), 20000, &req, &used, &status),
            PROTO_ERROR);
        ck_assert_int_eq(status, 414);
        memcpy(line + sizeof(line) - 13, " HTTP/1.1\r\n\r\n", 13);
        ck_assert_int_eq(
            http_parse_request((const uint8_t *)line, sizeof(line), 20000, &req, &used, &status),
            PROTO_ERROR);
        ck_assert_int_eq(status, 414);
    }
}
END_TEST

START_TEST(test_response_heads)
{
    char out[256];

    ck_assert_uint_gt(http_response(out, sizeof(out), 200, NULL), 0);
    ck_assert_str_eq(out, "HTTP/1.1 200 Connection established\r\n\r\n");
    ck_assert_uint_gt(http_response(out, sizeof(out), 407, "Proxy-Authenticate: Basic\r\n"), 0);
    ck_assert_str_eq(out, "HTTP/1.1 407 Proxy Authentication Required\r\n"
                          "Proxy-Authenticate: Basic\r\nContent-Length: 0\r\nConnection: close\r\n"
                          "\r\n");
    ck_assert_uint_eq(http_response(out, 10, 502, NULL), 0);
}
END_TEST

static Suite *http_suite(void)
{
    Suite *s = suite_create("http");
    TCase *tc = tcase_create("request");

    tcase_add_test(tc, test_connect_authority_split_anywhere_then_whole);
    tcase_add_test(tc, test_connect_to_addresses_and_bad_authorities);
    tcase_add_test(tc, test_basic_credentials_are_decoded_and_bad_ones_flagged);
    tcase_add_test(tc, test_absolute_form_targets_and_framing);
    tcase_add_test(tc, test_limits_and_versions_give_their_statuses);
    tcase_add_test(tc, test_response_heads);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(http_suite());
    int failed;

    if (sodium_init() < 0)
        return 1;
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
