/* Unit tests for HTTP forwarding's framing: body scanner, response heads, head rewriting. */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <string.h>

#include "ferry/http_frame.h"

/* Scan text through a body of `kind` in pieces of `step` bytes; returns what the body took
 * (-1 on error) and whether it ended. */
static ssize_t scan_in_steps(enum http_body_kind kind, uint64_t length, const char *text,
                             size_t step, bool *done)
{
    struct http_body b;
    size_t len = strlen(text), off = 0;

    http_body_init(&b, kind, length);
    while (off < len && !b.done) {
        size_t n = len - off < step ? len - off : step;
        ssize_t r = http_body_scan(&b, (const uint8_t *)text + off, n);

        if (r < 0)
            return -1;
        off += (size_t)r;
        if ((size_t)r < n)
            break;
    }
    *done = b.done;
    return (ssize_t)off;
}

START_TEST(test_length_body_ends_at_its_length_and_zero_is_done_at_once)
{
    struct http_body b;
    bool done;

    ck_assert_int_eq(scan_in_steps(HTTP_BODY_LENGTH, 5, "helloGET /", 3, &done), 5);
    ck_assert(done);
    http_body_init(&b, HTTP_BODY_LENGTH, 0);
    ck_assert(b.done);
    ck_assert_int_eq(http_body_scan(&b, (const uint8_t *)"x", 1), 0);
    http_body_init(&b, HTTP_BODY_NONE, 0);
    ck_assert(b.done);
    http_body_init(&b, HTTP_BODY_CLOSE, 0);
    ck_assert_int_eq(http_body_scan(&b, (const uint8_t *)"abc", 3), 3);
    ck_assert(!b.done);
}
END_TEST

START_TEST(test_chunked_body_ends_after_trailers_in_any_split)
{
    const char *body = "5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n"
                       "Trailer-One: x\r\n\r\n";
    char with_next[256];
    bool done;

    snprintf(with_next, sizeof(with_next), "%sGET / HTTP/1.1\r\n", body);
    for (size_t step = 1; step <= strlen(with_next); step++) {
        ck_assert_int_eq(scan_in_steps(HTTP_BODY_CHUNKED, 0, with_next, step, &done),
                         (ssize_t)strlen(body));
        ck_assert(done);
    }
    ck_assert_int_eq(scan_in_steps(HTTP_BODY_CHUNKED, 0, "0\r\n\r\n", 1, &done), 5);
    ck_assert(done);
    /* Not done yet: a valid prefix. */
    ck_assert_int_eq(scan_in_steps(HTTP_BODY_CHUNKED, 0, "5\r\nhel", 2, &done), 6);
    ck_assert(!done);
}
END_TEST

START_TEST(test_chunked_body_rejects_bad_syntax)
{
    static const char *const bad[] = {
        "\r\n",                        /* no size */
        "g\r\n",                       /* not hex */
        "5\nhello\r\n0\r\n\r\n",       /* bare LF after the size */
        "5\r\nhelloX\r\n",             /* no CRLF after the data */
        "10000000000000000\r\n",       /* 17 hex digits: too large */
        "-1\r\n",                      /* a sign */
        "0\r\nbad\x01trailer\r\n\r\n", /* a control byte in a trailer */
        "0\r\n\rX",                    /* CR without LF at the end */
    };
    bool done;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(scan_in_steps(HTTP_BODY_CHUNKED, 0, bad[i], 1, &done) == -1, "%zu", i);
}
END_TEST

START_TEST(test_chunk_lines_and_trailers_are_bounded)
{
    char line[HTTP_CHUNK_LINE_MAX + 16];
    bool done;

    memset(line, 'a', sizeof(line) - 1);
    line[0] = '1';
    line[1] = ';';
    line[sizeof(line) - 1] = '\0';
    ck_assert_int_eq(scan_in_steps(HTTP_BODY_CHUNKED, 0, line, 100, &done), -1);
}
END_TEST

static enum proto_status resp(const char *text, struct http_response_head *h, size_t *used)
{
    return http_parse_response_head((const uint8_t *)text, strlen(text), 16384, h, used);
}

START_TEST(test_response_heads_and_their_framing)
{
    struct http_response_head h;
    size_t used = 0;
    const char *ok = "HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nbody";

    for (size_t k = 0; k < strlen(ok) - 4; k++)
        ck_assert_int_eq(http_parse_response_head((const uint8_t *)ok, k, 16384, &h, &used),
                         PROTO_NEED_MORE);
    ck_assert_int_eq(resp(ok, &h, &used), PROTO_OK);
    ck_assert_uint_eq(used, strlen(ok) - 4);
    ck_assert_int_eq(h.status, 200);
    ck_assert_int_eq(http_response_framing(&h, false), HTTP_BODY_LENGTH);
    ck_assert_int_eq(http_response_framing(&h, true), HTTP_BODY_NONE);
    ck_assert(!h.close);

    ck_assert_int_eq(resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", &h, &used),
                     PROTO_OK);
    ck_assert(h.coded && h.chunked);
    ck_assert_int_eq(http_response_framing(&h, false), HTTP_BODY_CHUNKED);
    ck_assert_int_eq(resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", &h, &used),
                     PROTO_OK);
    ck_assert_int_eq(http_response_framing(&h, false), HTTP_BODY_CLOSE);
    ck_assert_int_eq(resp("HTTP/1.0 200 OK\r\n\r\n", &h, &used), PROTO_OK);
    ck_assert(h.close);
    ck_assert_int_eq(http_response_framing(&h, false), HTTP_BODY_CLOSE);
    ck_assert_int_eq(
        resp("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", &h, &used),
        PROTO_OK);
    ck_assert(!h.close);
    for (int code = 100; code < 200; code += 99) {
        char text[64];

        snprintf(text, sizeof(text), "HTTP/1.1 %d X\r\nContent-Length: 9\r\n\r\n", code);
        ck_assert_int_eq(resp(text, &h, &used), PROTO_OK);
        ck_assert_int_eq(http_response_framing(&h, false), HTTP_BODY_NONE);
    }
    ck_assert_int_eq(resp("HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n", &h, &used),
                     PROTO_OK);
    ck_assert_int_eq(http_response_framing(&h, false), HTTP_BODY_NONE);
    ck_assert_int_eq(resp("HTTP/1.1 304 Not Modified\r\n\r\n", &h, &used), PROTO_OK);
    ck_assert_int_eq(http_response_framing(&h, false), HTTP_BODY_NONE);
    /* An empty reason, its space and all. */
    ck_assert_int_eq(resp("HTTP/1.1 404\r\n\r\n", &h, &used), PROTO_OK);
    ck_assert_int_eq(h.status, 404);
}
END_TEST

START_TEST(test_bad_response_heads)
{
    static const char *const bad[] = {
        "HTTP/2 200 OK\r\n\r\n",
        "HTTP/1.1 20 OK\r\n\r\n",
        "HTTP/1.1 099 Low\r\n\r\n",
        "HTTP/1.1 200OK\r\n\r\n",
        "ICY 200 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\n folded\r\n\r\n",
        "HTTP/1.1 200 OK\r\nNo colon\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX: a\x01b\r\n\r\n",
    };
    struct http_response_head h;
    size_t used;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(resp(bad[i], &h, &used) == PROTO_ERROR, "%zu", i);
    /* No end within the capacity. */
    ck_assert_int_eq(
        http_parse_response_head((const uint8_t *)"HTTP/1.1 200 OK\r\nX: y\r\n", 23, 23, &h, &used),
        PROTO_ERROR);
}
END_TEST

static size_t rewrite(const char *head, const struct http_rewrite *rw, char *out, size_t size)
{
    size_t n = http_rewrite_head((const uint8_t *)head, strlen(head), rw, (uint8_t *)out, size - 1);

    out[n] = '\0';
    return n;
}

START_TEST(test_rewrite_drops_hop_by_hop_fields_and_connection_options)
{
    const char *head = "GET http://h/x HTTP/1.1\r\n"
                       "Host: wrong\r\n"
                       "Connection: keep-alive, X-Secret\r\n"
                       "Proxy-Connection: keep-alive\r\n"
                       "Keep-Alive: timeout=5\r\n"
                       "X-Secret: 1\r\n"
                       "TE: trailers\r\n"
                       "Trailer: X\r\n"
                       "Upgrade: websocket\r\n"
                       "Proxy-Authorization: Basic YTpi\r\n"
                       "Accept: */*\r\n"
                       "Content-Length: 3\r\n"
                       "Via: 1.1 other\r\n"
                       "\r\n";
    struct http_rewrite rw = {
        .start = "GET /x HTTP/1.1", .drop_host = true, .add = "Host: h\r\nConnection: close\r\n"};
    char out[1024];

    ck_assert_uint_gt(rewrite(head, &rw, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "GET /x HTTP/1.1\r\nAccept: */*\r\nContent-Length: 3\r\n"
                          "Via: 1.1 other\r\nHost: h\r\nConnection: close\r\n\r\n");
    rw.drop_length = true;
    rw.drop_host = false;
    rw.add = NULL;
    ck_assert_uint_gt(rewrite("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\nContent-Length: 3\n"
                              "Proxy-Authenticate: Basic\nHost: kept\n\n",
                              &rw, out, sizeof(out)),
                      0);
    ck_assert_str_eq(out, "GET /x HTTP/1.1\r\nHost: kept\r\n\r\n");
}
END_TEST

START_TEST(test_rewrite_refuses_what_does_not_fit_or_parse)
{
    struct http_rewrite rw = {.start = "GET / HTTP/1.1"};
    char out[64], many[2048] = "GET http://h/ HTTP/1.1\r\nConnection: ";

    ck_assert_uint_eq(rewrite("GET http://h/ HTTP/1.1\r\nA: "
                              "01234567890123456789012345678901234567890123456789012345678901234567"
                              "890123456789\r\n\r\n",
                              &rw, out, sizeof(out)),
                      0);
    ck_assert_uint_eq(rewrite("GET http://h/ HTTP/1.1\r\nno colon\r\n\r\n", &rw, out, sizeof(out)),
                      0);
    for (int i = 0; i < 40; i++)
        strcat(many, "a,");
    strcat(many, "\r\n\r\n");
    ck_assert_uint_eq(rewrite(many, &rw, out, sizeof(out)), 0);
    ck_assert_uint_eq(rewrite("", &rw, out, sizeof(out)), 0);
}
END_TEST

static Suite *http_frame_suite(void)
{
    Suite *s = suite_create("http_frame");
    TCase *tc = tcase_create("frame");

    tcase_add_test(tc, test_length_body_ends_at_its_length_and_zero_is_done_at_once);
    tcase_add_test(tc, test_chunked_body_ends_after_trailers_in_any_split);
    tcase_add_test(tc, test_chunked_body_rejects_bad_syntax);
    tcase_add_test(tc, test_chunk_lines_and_trailers_are_bounded);
    tcase_add_test(tc, test_response_heads_and_their_framing);
    tcase_add_test(tc, test_bad_response_heads);
    tcase_add_test(tc, test_rewrite_drops_hop_by_hop_fields_and_connection_options);
    tcase_add_test(tc, test_rewrite_refuses_what_does_not_fit_or_parse);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(http_frame_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
