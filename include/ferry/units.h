/*
 * Values as ferryd.conf writes them: numbers with units, comma-separated lists and quoting for
 * messages (pure), and reading a whole file, the one chore of the config readers with I/O.
 */
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

/*
 * The next item of the comma-separated list at *list, copied NUL-terminated into item (size
 * bytes, at least 1). Returns the item's length: 0 for an empty item, size or more for one too
 * long (item then holds its first size - 1 bytes). *list moves past the item and its comma,
 * and becomes NULL after the last item: "" is one empty item, "a," is "a" and an empty item.
 */
size_t units_list_next(const char **list, char *item, size_t size);
/* The number of items of a comma-separated list: its commas and one. */
size_t units_list_count(const char *list);

/*
 * Everything up to end of file from fd, in a malloc'd buffer with a NUL after its *len bytes
 * (which may hold NUL bytes too). NULL with errno set on failure, EFBIG past max bytes.
 */
char *units_read_fd(int fd, size_t max, size_t *len);
/* The same for the file at path, opened and closed here. */
char *units_read_file(const char *path, size_t max, size_t *len);

/* path as given when absolute or dir is NULL, else dir/path; malloc'd (NULL: errno). */
char *units_path_join(const char *dir, const char *path);

#endif
