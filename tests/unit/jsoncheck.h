/*
 * A strict JSON (RFC 8259) checker for tests and fuzzing: jsoncheck_valid says whether text is
 * one JSON value (raw bytes valid UTF-8, no raw control byte in a string, no lone surrogate
 * escape); jsoncheck_member also decodes a top-level object's string member, to compare a
 * formatter's output with what it was given.
 */
#ifndef FERRY_TESTS_JSONCHECK_H
#define FERRY_TESTS_JSONCHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define JSONCHECK_MAX_DEPTH 32

struct jsoncheck {
    const unsigned char *p, *end;
    int depth;
    const char *want; /* the top-level member to decode, or NULL */
    char *out;        /* its value as UTF-8 */
    size_t size, len;
    int found; /* 0 not seen, 1 a string, 2 null, -1 another type */
};

static void jsoncheck_ws(struct jsoncheck *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static bool jsoncheck_lit(struct jsoncheck *j, const char *lit)
{
    size_t n = strlen(lit);

    if ((size_t)(j->end - j->p) < n || memcmp(j->p, lit, n) != 0)
        return false;
    j->p += n;
    return true;
}

static void jsoncheck_emit(struct jsoncheck *j, bool capture, uint32_t cp)
{
    unsigned char b[4];
    size_t n;

    if (!capture)
        return;
    if (cp < 0x80) {
        b[0] = (unsigned char)cp;
        n = 1;
    } else if (cp < 0x800) {
        b[0] = (unsigned char)(0xc0 | cp >> 6);
        b[1] = (unsigned char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        b[0] = (unsigned char)(0xe0 | cp >> 12);
        b[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
        b[2] = (unsigned char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        b[0] = (unsigned char)(0xf0 | cp >> 18);
        b[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
        b[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
        b[3] = (unsigned char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    if (j->len + n < j->size) {
        memcpy(j->out + j->len, b, n);
        j->len += n;
        j->out[j->len] = '\0';
    }
}

static int jsoncheck_hex4(struct jsoncheck *j)
{
    int v = 0;

    if (j->end - j->p < 4)
        return -1;
    for (int i = 0; i < 4; i++) {
        unsigned char c = *j->p++;

        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= c - '0';
        else if (c >= 'a' && c <= 'f')
            v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v |= c - 'A' + 10;
        else
            return -1;
    }
    return v;
}

/* One raw UTF-8 character: its code point, or -1 when ill-formed. */
static long jsoncheck_utf8(struct jsoncheck *j)
{
    unsigned char c = *j->p++, lo = 0x80, hi = 0xbf;
    int need;
    uint32_t v;

    if (c < 0x80)
        return c;
    if (c >= 0xc2 && c <= 0xdf) {
        need = 1;
        v = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        need = 2;
        v = c & 0x0f;
        lo = c == 0xe0 ? 0xa0 : 0x80;
        hi = c == 0xed ? 0x9f : 0xbf;
    } else if (c >= 0xf0 && c <= 0xf4) {
        need = 3;
        v = c & 0x07;
        lo = c == 0xf0 ? 0x90 : 0x80;
        hi = c == 0xf4 ? 0x8f : 0xbf;
    } else {
        return -1;
    }
    for (int i = 0; i < need; i++) {
        if (j->p >= j->end || *j->p < lo || *j->p > hi)
            return -1;
        v = v << 6 | (*j->p++ & 0x3f);
        lo = 0x80;
        hi = 0xbf;
    }
    return (long)v;
}

static bool jsoncheck_string(struct jsoncheck *j, bool capture)
{
    if (j->p >= j->end || *j->p != '"')
        return false;
    j->p++;
    while (j->p < j->end) {
        unsigned char c = *j->p;
        long cp;

        if (c == '"') {
            j->p++;
            return true;
        }
        if (c < 0x20)
            return false;
        if (c != '\\') {
            cp = jsoncheck_utf8(j);
            if (cp < 0)
                return false;
            jsoncheck_emit(j, capture, (uint32_t)cp);
            continue;
        }
        j->p++;
        if (j->p >= j->end)
            return false;
        c = *j->p++;
        switch (c) {
        case '"':
        case '\\':
        case '/':
            jsoncheck_emit(j, capture, c);
            break;
        case 'b':
            jsoncheck_emit(j, capture, '\b');
            break;
        case 'f':
            jsoncheck_emit(j, capture, '\f');
            break;
        case 'n':
            jsoncheck_emit(j, capture, '\n');
            break;
        case 'r':
            jsoncheck_emit(j, capture, '\r');
            break;
        case 't':
            jsoncheck_emit(j, capture, '\t');
            break;
        case 'u':
            cp = jsoncheck_hex4(j);
            if (cp < 0 || (cp >= 0xdc00 && cp <= 0xdfff))
                return false;
            if (cp >= 0xd800 && cp <= 0xdbff) {
                long lo;

                if (!jsoncheck_lit(j, "\\u"))
                    return false;
                lo = jsoncheck_hex4(j);
                if (lo < 0xdc00 || lo > 0xdfff)
                    return false;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            }
            jsoncheck_emit(j, capture, (uint32_t)cp);
            break;
        default:
            return false;
        }
    }
    return false;
}

static bool jsoncheck_digits(struct jsoncheck *j)
{
    const unsigned char *start = j->p;

    while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
        j->p++;
    return j->p > start;
}

static bool jsoncheck_number(struct jsoncheck *j)
{
    if (j->p < j->end && *j->p == '-')
        j->p++;
    if (j->p < j->end && *j->p == '0')
        j->p++;
    else if (!jsoncheck_digits(j))
        return false;
    if (j->p < j->end && *j->p == '.') {
        j->p++;
        if (!jsoncheck_digits(j))
            return false;
    }
    if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
        j->p++;
        if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
            j->p++;
        if (!jsoncheck_digits(j))
            return false;
    }
    return true;
}

static bool jsoncheck_value(struct jsoncheck *j);

static bool jsoncheck_object(struct jsoncheck *j)
{
    j->p++;
    jsoncheck_ws(j);
    if (j->p < j->end && *j->p == '}') {
        j->p++;
        return true;
    }
    for (;;) {
        const unsigned char *key = j->p;
        bool wanted;

        if (!jsoncheck_string(j, false))
            return false;
        wanted = j->depth == 1 && j->want != NULL && (size_t)(j->p - key) == strlen(j->want) + 2 &&
                 memcmp(key + 1, j->want, strlen(j->want)) == 0;
        jsoncheck_ws(j);
        if (j->p >= j->end || *j->p++ != ':')
            return false;
        jsoncheck_ws(j);
        if (wanted && j->p < j->end && *j->p == '"') {
            j->len = 0;
            if (j->size > 0)
                j->out[0] = '\0';
            j->found = 1;
            if (!jsoncheck_string(j, true))
                return false;
        } else {
            if (wanted)
                j->found = j->p < j->end && *j->p == 'n' ? 2 : -1;
            if (!jsoncheck_value(j))
                return false;
        }
        jsoncheck_ws(j);
        if (j->p < j->end && *j->p == ',') {
            j->p++;
            jsoncheck_ws(j);
            continue;
        }
        if (j->p < j->end && *j->p == '}') {
            j->p++;
            return true;
        }
        return false;
    }
}

static bool jsoncheck_array(struct jsoncheck *j)
{
    j->p++;
    jsoncheck_ws(j);
    if (j->p < j->end && *j->p == ']') {
        j->p++;
        return true;
    }
    for (;;) {
        if (!jsoncheck_value(j))
            return false;
        jsoncheck_ws(j);
        if (j->p < j->end && *j->p == ',') {
            j->p++;
            jsoncheck_ws(j);
            continue;
        }
        if (j->p < j->end && *j->p == ']') {
            j->p++;
            return true;
        }
        return false;
    }
}

static bool jsoncheck_value(struct jsoncheck *j)
{
    bool ok;

    if (j->p >= j->end || j->depth >= JSONCHECK_MAX_DEPTH)
        return false;
    switch (*j->p) {
    case '{':
        j->depth++;
        ok = jsoncheck_object(j);
        j->depth--;
        return ok;
    case '[':
        j->depth++;
        ok = jsoncheck_array(j);
        j->depth--;
        return ok;
    case '"':
        return jsoncheck_string(j, false);
    case 't':
        return jsoncheck_lit(j, "true");
    case 'f':
        return jsoncheck_lit(j, "false");
    case 'n':
        return jsoncheck_lit(j, "null");
    default:
        return jsoncheck_number(j);
    }
}

/*
 * Whether text (len bytes) is exactly one JSON value. With key, the top-level object's member
 * of that name, when a string, is decoded into out (size bytes): returns found as in struct
 * jsoncheck through *found (may be NULL).
 */
static inline bool jsoncheck_member(const char *text, size_t len, const char *key, char *out,
                                    size_t size, size_t *out_len, int *found)
{
    struct jsoncheck j = {
        .p = (const unsigned char *)text,
        .end = (const unsigned char *)text + len,
        .want = key,
        .out = out,
        .size = size,
    };
    bool ok;

    jsoncheck_ws(&j);
    ok = jsoncheck_value(&j);
    jsoncheck_ws(&j);
    ok = ok && j.p == j.end;
    if (out_len != NULL)
        *out_len = j.len;
    if (found != NULL)
        *found = j.found;
    return ok;
}

static inline bool jsoncheck_valid(const char *text, size_t len)
{
    return jsoncheck_member(text, len, NULL, NULL, 0, NULL, NULL);
}

#endif
