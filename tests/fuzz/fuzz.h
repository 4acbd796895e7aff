/*
 * What every fuzz harness shares: the libFuzzer entry point, a check that aborts (so libFuzzer
 * and the replay runner both see a failure), and the split-input property of the incremental
 * parsers (DESIGN.md: a message split across reads parses as the whole one does).
 */
#ifndef FERRY_FUZZ_H
#define FERRY_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An invariant of the code under test; a violation aborts with the line that failed. */
#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* A copy in a buffer of exactly len bytes, so that ASan sees any read past the end. */
static inline uint8_t *fuzz_dup(const uint8_t *data, size_t len)
{
    uint8_t *p = malloc(len > 0 ? len : 1);

    if (p == NULL)
        abort();
    if (len > 0)
        memcpy(p, data, len);
    else
        p[0] = 0; /* never read by a correct parser; set so the compiler need not wonder */
    return p;
}

/* data as a NUL-terminated string (a NUL inside ends it early, as it would for the parser). */
static inline char *fuzz_strdup(const uint8_t *data, size_t len)
{
    char *p = malloc(len + 1);

    if (p == NULL)
        abort();
    if (len > 0)
        memcpy(p, data, len);
    p[len] = '\0';
    return p;
}

/* One parse of an incremental parser: status, bytes consumed (PROTO_OK) and reply code. */
struct fuzz_parse {
    enum proto_status status;
    size_t consumed;
    uint8_t code;
};

/* Parse len bytes at buf into out (a struct of the harness' choosing). */
typedef struct fuzz_parse (*fuzz_parse_fn)(const uint8_t *buf, size_t len, void *out);
/* Whether two parsed messages are the same. */
typedef bool (*fuzz_same_fn)(const void *a, const void *b);

static inline bool fuzz_parse_same(const struct fuzz_parse *a, const void *out_a,
                                   const struct fuzz_parse *b, const void *out_b, fuzz_same_fn same)
{
    if (a->status != b->status)
        return false;
    if (a->status == PROTO_OK)
        return a->consumed == b->consumed && same(out_a, out_b);
    if (a->status == PROTO_ERROR)
        return a->code == b->code;
    return true;
}

/*
 * The properties of an incremental parser on one buffer, each prefix in an exact-size copy:
 *  - PROTO_OK consumes at least one byte and no more than it was given;
 *  - every prefix shorter than the first one that decides (OK or ERROR) answers NEED_MORE,
 *    and that first decision is what the whole buffer gives too: the same status, reply code,
 *    byte count and message, however the bytes were split across reads;
 *  - the bytes an OK consumed parse, alone, to the same message.
 * Returns the whole buffer's answer, its message in out (outsize bytes).
 */
static inline struct fuzz_parse fuzz_check_incremental(const uint8_t *data, size_t size,
                                                       fuzz_parse_fn parse, void *out,
                                                       size_t outsize, fuzz_same_fn same)
{
    void *part = malloc(outsize);
    struct fuzz_parse whole, r = {PROTO_NEED_MORE, 0, 0};
    uint8_t *copy;
    size_t k;

    if (part == NULL)
        abort();
    copy = fuzz_dup(data, size);
    memset(out, 0, outsize);
    whole = parse(copy, size, out);
    free(copy);
    if (whole.status == PROTO_OK)
        FUZZ_CHECK(whole.consumed >= 1 && whole.consumed <= size);

    for (k = 0; k < size; k++) {
        copy = fuzz_dup(data, k);
        memset(part, 0, outsize);
        r = parse(copy, k, part);
        free(copy);
        if (r.status != PROTO_NEED_MORE)
            break;
    }
    /* A decision before the end: the longer buffer must not change it. */
    if (k < size)
        FUZZ_CHECK(fuzz_parse_same(&r, part, &whole, out, same));
    if (whole.status == PROTO_OK && whole.consumed < size) {
        copy = fuzz_dup(data, whole.consumed);
        memset(part, 0, outsize);
        r = parse(copy, whole.consumed, part);
        free(copy);
        FUZZ_CHECK(fuzz_parse_same(&r, part, &whole, out, same));
    }
    free(part);
    return whole;
}

/* The formatted destination is NUL-terminated within size and printable ASCII only. */
static inline void fuzz_check_dest_format(const struct socks_dest *d)
{
    static const size_t sizes[] = {1, 2, 8, 22, 64, 1100};
    char buf[1100];

    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t n;

        memset(buf, 'Z', sizeof(buf));
        socks_dest_format(d, buf, sizes[i]);
        n = strnlen(buf, sizes[i]);
        FUZZ_CHECK(n < sizes[i]);
        for (size_t j = 0; j < n; j++)
            FUZZ_CHECK(buf[j] > 0x20 && buf[j] < 0x7f);
    }
}

#endif
