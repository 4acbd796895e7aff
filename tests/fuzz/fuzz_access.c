/*
 * The access line (src/access.c) with a client's user name and destination made of the input:
 * JSON output is always one valid JSON object whose user and target decode to valid UTF-8
 * (and to the very bytes sent when those were printable ASCII), logfmt is always key=value
 * pairs with bare or JSON-quoted values, text is always printable ASCII; no format writes a
 * control byte, and each fits an exact-size buffer and refuses one a byte shorter.
 */
#include "config.h"

#include "../unit/jsoncheck.h"
#include "ferry/access.h"
#include "fuzz.h"

static char line[ACCESS_LINE_MAX];
static char obj[ACCESS_LINE_MAX + 2];

static bool printable(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f)
            return false;
    }
    return true;
}

/* Exactly n bytes of output fit n + 1 bytes (in a buffer of that size) and not n. */
static void check_sizes(enum access_format f, const struct access_record *r, int n)
{
    char *exact = malloc((size_t)n + 1), *less = malloc((size_t)n + 1);

    if (exact == NULL || less == NULL)
        abort();
    FUZZ_CHECK(access_format(f, r, exact, (size_t)n + 1) == n);
    FUZZ_CHECK(memcmp(exact, line, (size_t)n + 1) == 0);
    FUZZ_CHECK(access_format(f, r, less, (size_t)n) == -1);
    free(exact);
    free(less);
}

/* A client string's JSON value: valid UTF-8, and decoding is stable under re-encoding. */
static void check_member(const char *key, const char *raw, size_t raw_len)
{
    static char value[ACCESS_LINE_MAX], again[ACCESS_LINE_MAX * 2], back[ACCESS_LINE_MAX];
    size_t len = 0, len2 = 0;
    int found = 0, n;

    FUZZ_CHECK(jsoncheck_member(obj, strlen(obj), key, value, sizeof(value), &len, &found));
    if (raw == NULL) {
        FUZZ_CHECK(found == 2);
        return;
    }
    FUZZ_CHECK(found == 1);
    if (raw_len <= ACCESS_STRING_MAX && printable(raw, raw_len))
        FUZZ_CHECK(len == raw_len && memcmp(value, raw, len) == 0);
    n = access_json_string(value, len, again, sizeof(again));
    FUZZ_CHECK(n > 0);
    FUZZ_CHECK(jsoncheck_member(again, (size_t)n, NULL, NULL, 0, NULL, NULL));
    {
        /* the re-encoded string, decoded, is what was decoded */
        char wrapped[ACCESS_LINE_MAX * 2 + 16];
        int w = snprintf(wrapped, sizeof(wrapped), "{\"v\":%s}", again);

        FUZZ_CHECK(w > 0 && (size_t)w < sizeof(wrapped));
        FUZZ_CHECK(jsoncheck_member(wrapped, (size_t)w, "v", back, sizeof(back), &len2, &found));
        FUZZ_CHECK(found == 1 && len2 == len && memcmp(back, value, len) == 0);
    }
}

/* key=value pairs separated by one space: bare values or JSON strings. */
static void check_logfmt(const char *s, size_t n)
{
    size_t i = 0;

    while (i < n) {
        size_t start = i;

        while (i < n && ((s[i] >= 'a' && s[i] <= 'z') || s[i] == '_'))
            i++;
        FUZZ_CHECK(i > start && i < n && s[i] == '=');
        i++;
        if (s[i] == '"') {
            size_t q = i++;

            while (i < n && s[i] != '"')
                i += s[i] == '\\' ? 2 : 1;
            FUZZ_CHECK(i < n);
            i++;
            FUZZ_CHECK(jsoncheck_valid(s + q, i - q));
        } else {
            start = i;
            while (i < n && s[i] != ' ') {
                FUZZ_CHECK(s[i] != '"' && s[i] != '=' && s[i] != '\\');
                i++;
            }
            FUZZ_CHECK(i > start);
        }
        if (i < n) {
            FUZZ_CHECK(s[i] == ' ');
            i++;
            FUZZ_CHECK(i < n);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const limits[] = {NULL, "max-sessions", "rule:7", NULL};
    struct access_udp u = {0};
    struct access_record r = {
        .client = "[2001:db8::1]:1080",
        .cmd_prefix = "socks4-",
        .end = "eof",
    };
    char *user, *target;
    size_t split, rest;
    int n;

    if (size < 10)
        return 0;
    rest = size - 10;
    split = rest * data[1] / 255;
    user = (char *)fuzz_dup(data + 10, split);
    target = (char *)fuzz_dup(data + 10 + split, rest - split);
    if (data[0] & 1) {
        memcpy(&u.up, data + 2, 8);
        memcpy(&u.drop_replay, data + 2, 8);
        u.sealed = (data[0] & 0x80) != 0; /* a tunnel's association: three more reasons */
        r.udp = &u;
    }
    if (data[0] & 2) {
        r.user = user;
        r.user_len = split;
    }
    if (data[0] & 4) {
        r.cmd = "connect";
        r.target = target;
        r.target_len = rest - split;
    }
    if (data[0] & 8) {
        r.via = "eu>tor";
        r.route = data[2];
    }
    r.limit = limits[data[0] >> 4 & 3];
    if ((data[0] >> 4 & 3) == 3)
        r.rule = "private";
    memcpy(&r.up, data + 2, 8);
    r.duration = (double)data[3] / 7;

    /* text: printable ASCII, client strings escaped */
    n = access_format(ACCESS_TEXT, &r, line, sizeof(line));
    FUZZ_CHECK(n > 0 && (size_t)n == strlen(line) && printable(line, (size_t)n));
    check_sizes(ACCESS_TEXT, &r, n);

    /* JSON: one object */
    n = access_format(ACCESS_JSON, &r, line, sizeof(line));
    FUZZ_CHECK(n > 0 && (size_t)n == strlen(line));
    for (int i = 0; i < n; i++)
        FUZZ_CHECK((unsigned char)line[i] >= 0x20 && line[i] != 0x7f);
    snprintf(obj, sizeof(obj), "{%s}", line);
    FUZZ_CHECK(jsoncheck_valid(obj, strlen(obj)));
    check_member("user", r.user, r.user_len);
    check_member("target", r.target, r.target_len);
    check_sizes(ACCESS_JSON, &r, n);

    /* logfmt: pairs */
    n = access_format(ACCESS_LOGFMT, &r, line, sizeof(line));
    FUZZ_CHECK(n > 0 && (size_t)n == strlen(line));
    for (int i = 0; i < n; i++)
        FUZZ_CHECK((unsigned char)line[i] >= 0x20 && line[i] != 0x7f);
    check_logfmt(line, (size_t)n);
    check_sizes(ACCESS_LOGFMT, &r, n);

    free(user);
    free(target);
    return 0;
}
