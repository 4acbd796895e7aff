/* Numbers with units, lists, quoting and whole files (see units.h). */
#include "config.h"

#include "ferry/units.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

size_t units_list_next(const char **list, char *item, size_t size)
{
    const char *s = *list, *end = strchr(s, ',');
    size_t n = end != NULL ? (size_t)(end - s) : strlen(s);
    size_t copy = n < size ? n : size - 1;

    memcpy(item, s, copy);
    item[copy] = '\0';
    *list = end != NULL ? end + 1 : NULL;
    return n;
}

size_t units_list_count(const char *list)
{
    size_t n = 1;

    for (; *list != '\0'; list++)
        n += *list == ',';
    return n;
}

char *units_read_fd(int fd, size_t max, size_t *len)
{
    size_t have = 0, cap = 4096;
    char *buf = NULL;
    int saved;

    for (;;) {
        ssize_t r;

        if (buf == NULL || have == cap) {
            char *grown;

            if (buf != NULL && have > max) {
                errno = EFBIG;
                goto fail;
            }
            if (buf != NULL)
                cap = cap <= max / 2 ? cap * 2 : max + 1; /* room to see one byte past max */
            grown = realloc(buf, cap + 1);
            if (grown == NULL)
                goto fail;
            buf = grown;
        }
        r = read(fd, buf + have, cap - have);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            goto fail;
        }
        if (r == 0)
            break;
        have += (size_t)r;
    }
    if (have > max) {
        errno = EFBIG;
        goto fail;
    }
    buf[have] = '\0';
    *len = have;
    return buf;

fail:
    saved = errno;
    free(buf);
    errno = saved;
    return NULL;
}

char *units_read_file(const char *path, size_t max, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    char *buf;
    int saved;

    if (fd < 0)
        return NULL;
    buf = units_read_fd(fd, max, len);
    saved = errno;
    close(fd);
    errno = saved;
    return buf;
}

char *units_path_join(const char *dir, const char *path)
{
    size_t dl, pl;
    char *full;

    if (path[0] == '/' || dir == NULL)
        return strdup(path);
    dl = strlen(dir);
    pl = strlen(path);
    full = malloc(dl + 1 + pl + 1);
    if (full != NULL) {
        memcpy(full, dir, dl);
        full[dl] = '/';
        memcpy(full + dl + 1, path, pl + 1);
    }
    return full;
}
