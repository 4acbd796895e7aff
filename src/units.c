/* Numbers with units (see units.h). */
#include "config.h"

#include "ferry/units.h"

#include <stdio.h>
#include <string.h>

enum units_status units_parse_bytes(const char *s, uint64_t max, uint64_t *out)
{
    uint64_t v = 0, scale = 1;
    const char *q = s;

    for (; *q >= '0' && *q <= '9'; q++) {
        if (v <= max) /* past max it stays past max: refused below, never overflowing */
            v = v * 10 + (uint64_t)(*q - '0');
    }
    if (q == s)
        return UNITS_BAD;
    switch (*q) {
    case '\0':
        break;
    case 'K':
    case 'k':
        scale = 1ull << 10;
        break;
    case 'M':
        scale = 1ull << 20;
        break;
    case 'G':
        scale = 1ull << 30;
        break;
    case 'T':
        scale = 1ull << 40;
        break;
    default:
        return UNITS_BAD;
    }
    if (*q != '\0' && q[1] != '\0')
        return UNITS_BAD;
    if (v > max / scale)
        return UNITS_TOO_LARGE;
    *out = v * scale;
    return UNITS_OK;
}

const char *units_quote_n(const char *s, size_t n, char *buf, size_t size)
{
    size_t o = 0, i;

    for (i = 0; i < n && o + 8 < size; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 || ch >= 0x7f || ch == '\\')
            o += (size_t)snprintf(buf + o, size - o, "\\x%02x", ch);
        else
            buf[o++] = (char)ch;
    }
    if (i < n) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o] = '\0';
    return buf;
}

const char *units_quote(const char *s, char *buf, size_t size)
{
    return units_quote_n(s, strlen(s), buf, size);
}
