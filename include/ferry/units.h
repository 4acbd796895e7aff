/* Values as ferryd.conf writes them: numbers with units, and quoting for messages. Pure. */
#ifndef FERRY_UNITS_H
#define FERRY_UNITS_H

#include <stddef.h>
#include <stdint.h>

enum units_status {
    UNITS_OK = 0,
    UNITS_BAD = -1, /* not a number of that kind */
    UNITS_TOO_LARGE = -2,
};

/*
 * A byte count: decimal digits with an optional K, M, G or T suffix (powers of 1024; k is K),
 * at most max bytes.
 */
enum units_status units_parse_bytes(const char *s, uint64_t max, uint64_t *out);

/*
 * A copy of s fit for an error message, in buf (size bytes, at least 12): bytes that are not
 * printable ASCII, and backslashes, as \xNN; a value too long is cut short with "...".
 */
const char *units_quote(const char *s, char *buf, size_t size);
/* The same for the n bytes at s (which may hold NUL bytes). */
const char *units_quote_n(const char *s, size_t n, char *buf, size_t size);

#endif
