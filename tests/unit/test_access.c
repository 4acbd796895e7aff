/* Unit tests for src/access.c: the access line as text (as it always was), JSON and logfmt. */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/access.h"
#include "jsoncheck.h"

static char line[ACCESS_LINE_MAX];
static char obj[ACCESS_LINE_MAX + 2];

static const struct access_record base = {
    .client = "127.0.0.1:40000",
    .cmd_prefix = "",
    .end = "eof",
};

static const char *fmt(enum access_format f, const struct access_record *r)
{
    int n = access_format(f, r, line, sizeof(line));

    ck_assert_int_ge(n, 0);
    ck_assert_uint_eq(strlen(line), (size_t)n);
    return line;
}

/* The JSON members of r as an object, checked to be valid JSON. */
static const char *json(const struct access_record *r)
{
    snprintf(obj, sizeof(obj), "{%s}", fmt(ACCESS_JSON, r));
    ck_assert_msg(jsoncheck_valid(obj, strlen(obj)), "not JSON: %s", obj);
    return obj;
}

/* The JSON string member key of r's object, decoded (len bytes). */
static const char *json_member(const struct access_record *r, const char *key, size_t *len)
{
    static char value[ACCESS_LINE_MAX];
    int found;

    json(r);
    ck_assert(jsoncheck_member(obj, strlen(obj), key, value, sizeof(value), len, &found));
    ck_assert_msg(found == 1, "no string member %s in %s", key, obj);
    return value;
}

START_TEST(test_text_is_the_historical_line)
{
    struct access_udp u = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, false, 0, 0, 0};
    struct access_record r = base;

    ck_assert_str_eq(fmt(ACCESS_TEXT, &r), "session client=127.0.0.1:40000 user=- cmd=- target=- "
                                           "addr=- reply=- up=0 down=0 duration=0.000 end=eof");
    r.user = "alice";
    r.user_len = 5;
    r.cmd_prefix = "socks4-";
    r.cmd = "connect";
    r.target = "example.com:443";
    r.target_len = strlen(r.target);
    r.addr = "192.0.2.7:443";
    r.route = 3;
    r.via = "eu>tor";
    r.reply = "succeeded";
    r.limit = "rule:2";
    r.up = 100;
    r.down = 20000;
    r.duration = 1.23456;
    ck_assert_str_eq(fmt(ACCESS_TEXT, &r),
                     "session client=127.0.0.1:40000 user=alice cmd=socks4-connect "
                     "target=example.com:443 addr=192.0.2.7:443 route=3 via=eu>tor "
                     "reply=succeeded limit=rule:2 up=100 down=20000 duration=1.235 end=eof");
    /* route shows only with via, a refusing rule before a limit, as before */
    r.via = NULL;
    r.rule = "request:4";
    r.udp = &u;
    r.cmd_prefix = "";
    r.cmd = "udp";
    ck_assert_str_eq(fmt(ACCESS_TEXT, &r),
                     "session client=127.0.0.1:40000 user=alice cmd=udp target=example.com:443 "
                     "addr=192.0.2.7:443 reply=succeeded rule=request:4 up=100 down=20000 "
                     "duration=1.235 end=eof udp=up:1/down:2 drop=stranger:3,frag:4,malformed:5,"
                     "filtered:6,resolve:7,queue:8,send:9,oversize:10,blocked:11");
}
END_TEST

START_TEST(test_text_escapes_client_strings_as_hex)
{
    struct access_record r = base;

    r.user = "a b\n\\\"\xff";
    r.user_len = 7;
    r.cmd = "connect";
    r.target = "x\ry.example\0z:80";
    r.target_len = 16;
    fmt(ACCESS_TEXT, &r);
    ck_assert_ptr_nonnull(strstr(line, " user=a\\x20b\\x0a\\x5c\"\\xff cmd=connect "));
    ck_assert_ptr_nonnull(strstr(line, " target=x\\x0dy.example\\x00z:80 "));
}
END_TEST

START_TEST(test_text_user_keeps_its_historical_room)
{
    char user[400];
    struct access_record r = base;
    const char *u, *e;

    memset(user, '\x01', sizeof(user));
    r.user = user;
    r.user_len = sizeof(user);
    fmt(ACCESS_TEXT, &r);
    u = strstr(line, " user=") + 6;
    e = strchr(u, ' ');
    /* 255 escapes of 4 bytes fit the 1021 bytes the line always gave a user name */
    ck_assert_uint_eq((size_t)(e - u), 255 * 4);
}
END_TEST

START_TEST(test_json_every_byte_alone)
{
    for (int b = 0; b < 256; b++) {
        struct access_record r = base;
        char c = (char)b;
        size_t len;
        const char *v;

        r.user = &c;
        r.user_len = 1;
        v = json_member(&r, "user", &len);
        for (const char *p = obj; *p != '\0'; p++)
            ck_assert_msg((unsigned char)*p >= 0x20 && (unsigned char)*p != 0x7f,
                          "raw control byte in %s", obj);
        if (b < 0x80) {
            ck_assert_uint_eq(len, 1);
            ck_assert_int_eq((unsigned char)v[0], b);
        } else {
            ck_assert_str_eq(v, "\xef\xbf\xbd"); /* U+FFFD */
        }
    }
}
END_TEST

START_TEST(test_json_escapes)
{
    struct access_record r = base;

    r.user = "q\"b\\n\nr\rt\tnul\0del\x7f";
    r.user_len = sizeof("q\"b\\n\nr\rt\tnul\0del\x7f") - 1;
    json(&r);
    ck_assert_ptr_nonnull(strstr(obj, "\"user\":\"q\\\"b\\\\n\\nr\\rt\\tnul\\u0000del\\u007f\""));
}
END_TEST

START_TEST(test_json_keeps_utf8_and_escapes_c1_and_separators)
{
    struct access_record r = base;
    size_t len;
    const char *v;

    r.user = "jos\xc3\xa9 \xf0\x9f\x9a\xa2 \xc2\x9b \xe2\x80\xa8";
    r.user_len = strlen(r.user);
    v = json_member(&r, "user", &len);
    ck_assert_uint_eq(len, r.user_len);
    ck_assert_mem_eq(v, r.user, len);
    ck_assert_ptr_nonnull(strstr(obj, "\"jos\xc3\xa9 \xf0\x9f\x9a\xa2 \\u009b \\u2028\""));
}
END_TEST

/* Each maximal ill-formed subpart becomes one U+FFFD, as Python's decode(errors="replace"). */
START_TEST(test_json_ill_formed_utf8)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"\xe2\x82"
         "e",
         "\xef\xbf\xbd"
         "e"},
        {"\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd"},
        {"\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
        {"a\xf0\x9f\x98", "a\xef\xbf\xbd"},
        {"\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
        {"\xe0\x80\xaf", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
        {"\xf0\x9f\x98\xc3\xa9", "\xef\xbf\xbd\xc3\xa9"},
        {"\x80\xbf", "\xef\xbf\xbd\xef\xbf\xbd"},
        {"\xfe\xff", "\xef\xbf\xbd\xef\xbf\xbd"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct access_record r = base;
        const char *v;
        size_t len;

        r.target = cases[i].in;
        r.target_len = strlen(cases[i].in);
        r.cmd = "connect";
        v = json_member(&r, "target", &len);
        ck_assert_msg(strcmp(v, cases[i].out) == 0, "case %zu: %s", i, obj);
    }
}
END_TEST

START_TEST(test_json_fields_and_nulls)
{
    struct access_udp u = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, false, 0, 0, 0};
    struct access_record r = base;

    ck_assert_str_eq(json(&r), "{\"msg\":\"session\",\"client\":\"127.0.0.1:40000\",\"user\":null,"
                               "\"cmd\":null,\"target\":null,\"addr\":null,\"reply\":null,"
                               "\"up\":0,\"down\":0,\"duration\":0.000,\"end\":\"eof\"}");
    r.user = "bob";
    r.user_len = 3;
    r.cmd_prefix = "http-";
    r.cmd = "connect";
    r.target = "h:1";
    r.target_len = 3;
    r.addr = "[2001:db8::1]:1";
    r.route = 2;
    r.reply = "connection-refused";
    r.limit = "max-sessions";
    r.up = 18446744073709551615u;
    r.duration = 2.5;
    r.udp = &u;
    ck_assert_str_eq(json(&r),
                     "{\"msg\":\"session\",\"client\":\"127.0.0.1:40000\",\"user\":\"bob\","
                     "\"cmd\":\"http-connect\",\"target\":\"h:1\",\"addr\":\"[2001:db8::1]:1\","
                     "\"route\":2,\"reply\":\"connection-refused\",\"limit\":\"max-sessions\","
                     "\"up\":18446744073709551615,\"down\":0,\"duration\":2.500,\"end\":\"eof\","
                     "\"udp\":{\"up\":1,\"down\":2,\"drop\":{\"stranger\":3,\"frag\":4,"
                     "\"malformed\":5,\"filtered\":6,\"resolve\":7,\"queue\":8,\"send\":9,"
                     "\"oversize\":10,\"blocked\":11}}}");
}
END_TEST

START_TEST(test_json_worst_record_fits)
{
    static char junk[ACCESS_STRING_MAX * 2];
    struct access_udp u;
    struct access_record r = base;
    size_t len;
    const char *v;

    memset(junk, '\x01', sizeof(junk));
    junk[sizeof(junk) - 1] = '\0';
    memset(&u, 0xff, sizeof(u));
    u.sealed = true; /* a bool holds 0 or 1: 0xff is not a value of it */
    r.client = r.cmd_prefix = r.cmd = r.addr = r.via = r.reply = r.rule = r.end = junk;
    r.user = r.target = junk;
    r.user_len = r.target_len = sizeof(junk);
    r.route = 4294967295u;
    r.up = r.down = 18446744073709551615u;
    r.duration = 1e300;
    r.udp = &u;
    v = json_member(&r, "user", &len);
    ck_assert_uint_eq(len, ACCESS_STRING_MAX); /* cut */
    ck_assert_uint_eq(v[0], 1);
    fmt(ACCESS_LOGFMT, &r);
    fmt(ACCESS_TEXT, &r);
}
END_TEST

START_TEST(test_json_cut_keeps_whole_characters)
{
    static char user[ACCESS_STRING_MAX + 4];
    struct access_record r = base;
    size_t len;
    const char *v;

    memset(user, 'a', sizeof(user));
    /* a 3-byte character across the cut at ACCESS_STRING_MAX */
    memcpy(user + ACCESS_STRING_MAX - 1, "\xe2\x82\xac", 3);
    r.user = user;
    r.user_len = sizeof(user);
    v = json_member(&r, "user", &len);
    ck_assert_uint_eq(len, ACCESS_STRING_MAX - 1);
    ck_assert(strstr(v, "\xef\xbf\xbd") == NULL);
}
END_TEST

START_TEST(test_json_nonfinite_duration)
{
    struct access_record r = base;

    r.duration = 1.0 / 0.0;
    ck_assert_ptr_nonnull(strstr(json(&r), "\"duration\":0.000"));
}
END_TEST

START_TEST(test_logfmt_line)
{
    struct access_record r = base;

    ck_assert_str_eq(fmt(ACCESS_LOGFMT, &r),
                     "msg=session client=127.0.0.1:40000 up=0 down=0 duration=0.000 end=eof");
    r.user = "Bob Smith";
    r.user_len = 9;
    r.cmd_prefix = "socks4-";
    r.cmd = "bind";
    r.target = "a=b:\"1\"";
    r.target_len = 7;
    r.via = "direct";
    r.reply = "succeeded";
    r.rule = "private";
    ck_assert_str_eq(fmt(ACCESS_LOGFMT, &r),
                     "msg=session client=127.0.0.1:40000 user=\"Bob Smith\" cmd=socks4-bind "
                     "target=\"a=b:\\\"1\\\"\" via=direct reply=succeeded rule=private up=0 down=0 "
                     "duration=0.000 end=eof");
}
END_TEST

START_TEST(test_logfmt_values)
{
    static const struct {
        const char *in;
        size_t len;
        const char *out;
    } cases[] = {
        {"plain", 5, "plain"},
        {"", 0, "\"\""},
        {"a b", 3, "\"a b\""},
        {"a=b", 3, "\"a=b\""},
        {"a\"b", 3, "\"a\\\"b\""},
        {"a\\b", 3, "\"a\\\\b\""},
        {"a\nb", 3, "\"a\\nb\""},
        {"a\0b", 3, "\"a\\u0000b\""},
        {"jos\xc3\xa9", 5, "\"jos\xc3\xa9\""},
        {"\xff", 1, "\"\\ufffd\""},
    };
    char out[64];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int n = access_logfmt_value(cases[i].in, cases[i].len, out, sizeof(out));

        ck_assert_int_eq(n, (int)strlen(cases[i].out));
        ck_assert_str_eq(out, cases[i].out);
    }
}
END_TEST

START_TEST(test_logfmt_udp_counters)
{
    struct access_udp u = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, false, 0, 0, 0};
    struct access_record r = base;

    r.udp = &u;
    ck_assert_str_eq(fmt(ACCESS_LOGFMT, &r),
                     "msg=session client=127.0.0.1:40000 up=0 down=0 duration=0.000 end=eof "
                     "udp_up=1 udp_down=2 drop_stranger=3 drop_frag=4 drop_malformed=5 "
                     "drop_filtered=6 drop_resolve=7 drop_queue=8 drop_send=9 drop_oversize=10 "
                     "drop_blocked=11");
}
END_TEST

/* A tunnel's association (sealed) adds its three drop reasons in every format. */
START_TEST(test_sealed_udp_drops_in_every_format)
{
    struct access_udp u = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, true, 12, 13, 14};
    struct access_record r = base;

    r.udp = &u;
    ck_assert_ptr_nonnull(strstr(fmt(ACCESS_TEXT, &r), ",blocked:11,auth:12,replay:13,old:14"));
    ck_assert_ptr_nonnull(
        strstr(fmt(ACCESS_LOGFMT, &r), "drop_blocked=11 drop_auth=12 drop_replay=13 drop_old=14"));
    ck_assert_ptr_nonnull(
        strstr(json(&r), "\"blocked\":11,\"auth\":12,\"replay\":13,\"old\":14}}}"));
}
END_TEST

START_TEST(test_small_buffer_is_refused_not_overrun)
{
    struct access_record r = base;
    char out[40];

    memset(out, 'z', sizeof(out));
    for (int f = ACCESS_TEXT; f <= ACCESS_LOGFMT; f++) {
        ck_assert_int_eq(access_format((enum access_format)f, &r, out, 20), -1);
        ck_assert_int_eq(out[20], 'z');
        ck_assert_int_eq(access_format((enum access_format)f, &r, out, 0), -1);
    }
    ck_assert_int_eq(access_json_string("abc", 3, out, 5), -1);
    ck_assert_int_eq(access_json_string("abc", 3, out, 6), 5);
    ck_assert_str_eq(out, "\"abc\"");
}
END_TEST

START_TEST(test_format_names)
{
    ck_assert_int_eq(access_format_from_name("text"), ACCESS_TEXT);
    ck_assert_int_eq(access_format_from_name("json"), ACCESS_JSON);
    ck_assert_int_eq(access_format_from_name("logfmt"), ACCESS_LOGFMT);
    ck_assert_int_eq(access_format_from_name("JSON"), -1);
    ck_assert_str_eq(access_format_name(ACCESS_LOGFMT), "logfmt");
}
END_TEST

/* The checker the tests lean on refuses what it must. */
START_TEST(test_jsoncheck_refuses_broken_json)
{
    static const char *const bad[] = {
        "{\"a\":\"\n\"}", "{\"a\":\"\\x41\"}", "{\"a\":\"\xff\"}", "{\"a\":\"\\ud800\"}",
        "{\"a\":1,}",     "{\"a\":01}",        "{\"a\":\"b\"} x",  "{\"a\":\"b\"",
    };
    static const char good[] = "{\"a\":[1,-2.5e3,true,null,{}],\"b\":\"\\ud83d\\ude00\"}";

    ck_assert(jsoncheck_valid(good, strlen(good)));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(!jsoncheck_valid(bad[i], strlen(bad[i])), "accepted %s", bad[i]);
}
END_TEST

static Suite *access_suite(void)
{
    Suite *s = suite_create("access");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_text_is_the_historical_line);
    tcase_add_test(tc, test_text_escapes_client_strings_as_hex);
    tcase_add_test(tc, test_text_user_keeps_its_historical_room);
    tcase_add_test(tc, test_json_every_byte_alone);
    tcase_add_test(tc, test_json_escapes);
    tcase_add_test(tc, test_json_keeps_utf8_and_escapes_c1_and_separators);
    tcase_add_test(tc, test_json_ill_formed_utf8);
    tcase_add_test(tc, test_json_fields_and_nulls);
    tcase_add_test(tc, test_json_worst_record_fits);
    tcase_add_test(tc, test_json_cut_keeps_whole_characters);
    tcase_add_test(tc, test_json_nonfinite_duration);
    tcase_add_test(tc, test_logfmt_line);
    tcase_add_test(tc, test_logfmt_values);
    tcase_add_test(tc, test_logfmt_udp_counters);
    tcase_add_test(tc, test_sealed_udp_drops_in_every_format);
    tcase_add_test(tc, test_small_buffer_is_refused_not_overrun);
    tcase_add_test(tc, test_format_names);
    tcase_add_test(tc, test_jsoncheck_refuses_broken_json);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(access_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
