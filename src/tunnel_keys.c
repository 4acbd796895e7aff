/*
 * The tunnel's keys on disk (include/ferry/tunnel_keys.h): base64 keys, fingerprints, the
 * private key file and the authorized-keys file. Base64 is libsodium's (original variant).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "ferry/auth_users.h"
#include "ferry/tunnel_keys.h"
#include "ferry/units.h"

#define AUTHKEYS_MAX_LINE 4096

void tunnel_key_encode(const uint8_t key[TUNNEL_KEY_BYTES], char out[TUNNEL_KEY_B64 + 1])
{
    sodium_bin2base64(out, TUNNEL_KEY_B64 + 1, key, TUNNEL_KEY_BYTES,
                      sodium_base64_VARIANT_ORIGINAL);
}

int tunnel_key_decode(const char *s, size_t len, uint8_t key[TUNNEL_KEY_BYTES])
{
    size_t bin = 0;
    const char *end = NULL;

    if (len != TUNNEL_KEY_B64 || s[len - 1] != '=')
        return -1;
    /* libsodium 1.0.18 maps some bytes above 0x7f to base64 digits: check the alphabet first. */
    for (size_t i = 0; i + 1 < len; i++) {
        char c = s[i];

        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '+' || c == '/'))
            return -1;
    }
    if (sodium_base642bin(key, TUNNEL_KEY_BYTES, s, len, NULL, &bin, &end,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        bin != TUNNEL_KEY_BYTES || end != s + len) {
        sodium_memzero(key, TUNNEL_KEY_BYTES);
        return -1;
    }
    return 0;
}

void tunnel_key_fingerprint(const uint8_t pub[TUNNEL_KEY_BYTES], char out[TUNNEL_FINGERPRINT_SIZE])
{
    uint8_t h[crypto_generichash_BYTES_MAX];

    crypto_generichash(h, sizeof(h), pub, TUNNEL_KEY_BYTES, NULL, 0);
    memcpy(out, "BLAKE2b:", 8);
    sodium_bin2base64(out + 8, TUNNEL_FINGERPRINT_SIZE - 8, h, 8,
                      sodium_base64_VARIANT_ORIGINAL_NO_PADDING);
}

static int fail(char *err, size_t errlen, const char *name, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int fail(char *err, size_t errlen, const char *name, unsigned line, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (errlen == 0)
        return -1;
    n = line > 0 ? snprintf(err, errlen, "%s:%u: ", name, line)
                 : snprintf(err, errlen, "%s: ", name);
    if (n >= 0 && (size_t)n < errlen) {
        va_start(ap, fmt);
        vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static bool is_blank(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r';
}

/* The next line of text: [*pos, returned end), *pos moved past its newline. */
static const char *next_line(const char *text, size_t len, size_t *pos, size_t *n)
{
    const char *s = text + *pos;
    const char *nl = memchr(s, '\n', len - *pos);

    *n = nl != NULL ? (size_t)(nl - s) : len - *pos;
    *pos += *n + (nl != NULL ? 1 : 0);
    return s;
}

/* Trim blanks on both sides; true when what is left is empty or a comment. */
static bool trim_skip(const char **s, size_t *n)
{
    while (*n > 0 && is_blank((*s)[*n - 1]))
        (*n)--;
    while (*n > 0 && is_blank(**s)) {
        (*s)++;
        (*n)--;
    }
    return *n == 0 || **s == '#';
}

int tunnel_key_parse_private(const char *text, size_t len, const char *name,
                             uint8_t priv[TUNNEL_KEY_BYTES], char *err, size_t errlen)
{
    size_t pos = 0, n;
    unsigned line = 0, found = 0;
    uint8_t pub[TUNNEL_KEY_BYTES];

    if (errlen > 0)
        err[0] = '\0';
    sodium_memzero(priv, TUNNEL_KEY_BYTES);
    while (pos < len) {
        const char *s = next_line(text, len, &pos, &n);

        line++;
        if (trim_skip(&s, &n))
            continue;
        if (found > 0) {
            sodium_memzero(priv, TUNNEL_KEY_BYTES);
            return fail(err, errlen, name, line, "a second key (the first is on line %u)", found);
        }
        if (tunnel_key_decode(s, n, priv) != 0)
            return fail(err, errlen, name, line,
                        "not a private key (%d characters of base64 from ferry-keygen)",
                        TUNNEL_KEY_B64);
        found = line;
    }
    if (found == 0)
        return fail(err, errlen, name, 0, "no key in the file");
    if (crypto_scalarmult_base(pub, priv) != 0) {
        sodium_memzero(priv, TUNNEL_KEY_BYTES);
        return fail(err, errlen, name, found, "not a usable X25519 private key");
    }
    return 0;
}

int tunnel_key_check_mode(const char *name, mode_t mode, uid_t owner, uid_t euid, char *err,
                          size_t errlen)
{
    if (mode & (S_IRWXG | S_IRWXO))
        return fail(err, errlen, name, 0,
                    "UNPROTECTED PRIVATE KEY FILE: mode %04o lets %s at it; it must be its "
                    "owner's only: chmod 600 %s",
                    (unsigned)(mode & 07777), (mode & S_IRWXO) ? "every user" : "its group", name);
    if (owner != euid && owner != 0 && euid != 0)
        return fail(err, errlen, name, 0, "belongs to user %u, not to this process' user %u",
                    (unsigned)owner, (unsigned)euid);
    return 0;
}

int tunnel_key_load_private(const char *path, uint8_t priv[TUNNEL_KEY_BYTES], char *err,
                            size_t errlen)
{
    struct stat st;
    char *buf;
    size_t len;
    int fd, r, saved;

    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0 || fstat(fd, &st) < 0) {
        saved = errno;
        if (fd >= 0)
            close(fd);
        return fail(err, errlen, path, 0, "%s", strerror(saved));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return fail(err, errlen, path, 0, "not a regular file");
    }
    if (tunnel_key_check_mode(path, st.st_mode, st.st_uid, geteuid(), err, errlen) < 0) {
        close(fd);
        return -1;
    }
    buf = units_read_fd(fd, TUNNEL_KEY_FILE_MAX, &len);
    saved = errno;
    close(fd);
    if (buf == NULL)
        return fail(err, errlen, path, 0, "%s",
                    saved == EFBIG ? "too large for a key file" : strerror(saved));
    r = tunnel_key_parse_private(buf, len, path, priv, err, errlen);
    sodium_memzero(buf, len);
    free(buf);
    return r;
}

/* --- authorized keys ------------------------------------------------------------------- */

struct authkey {
    uint8_t key[TUNNEL_KEY_BYTES];
    char *user;
    unsigned line;
};

struct tunnel_authkeys {
    struct authkey *v;
    size_t n, cap;
};

void tunnel_authkeys_free(struct tunnel_authkeys *db)
{
    if (db == NULL)
        return;
    for (size_t i = 0; i < db->n; i++)
        free(db->v[i].user);
    free(db->v);
    free(db);
}

size_t tunnel_authkeys_count(const struct tunnel_authkeys *db)
{
    return db->n;
}

/* Linear, every key compared in constant time: the table is small next to a handshake's cost. */
static struct authkey *find(const struct tunnel_authkeys *db, const uint8_t key[TUNNEL_KEY_BYTES])
{
    struct authkey *hit = NULL;

    for (size_t i = 0; i < db->n; i++)
        if (sodium_memcmp(db->v[i].key, key, TUNNEL_KEY_BYTES) == 0 && hit == NULL)
            hit = &db->v[i];
    return hit;
}

const char *tunnel_authkeys_lookup(const struct tunnel_authkeys *db,
                                   const uint8_t key[TUNNEL_KEY_BYTES])
{
    struct authkey *k = find(db, key);

    return k != NULL ? k->user : NULL;
}

/* The fields of a line: up to 3 (a third means an error), a '#' field ends the line. */
static size_t split_fields(const char *s, size_t n, const char *f[3], size_t flen[3])
{
    size_t i = 0, count = 0;

    while (i < n && count < 3) {
        size_t start;

        while (i < n && is_blank(s[i]))
            i++;
        if (i == n || s[i] == '#')
            break;
        start = i;
        while (i < n && !is_blank(s[i]))
            i++;
        f[count] = s + start;
        flen[count] = i - start;
        count++;
    }
    return count;
}

static int parse_authkey(const char *s, size_t n, const char *name, unsigned line, char *err,
                         size_t errlen, struct authkey *out)
{
    const char *f[3];
    size_t flen[3], count, ki, ui;
    uint8_t k0[TUNNEL_KEY_BYTES], k1[TUNNEL_KEY_BYTES];
    bool is0, is1;
    char q[80];

    if (memchr(s, '\0', n) != NULL)
        return fail(err, errlen, name, line, "NUL byte in line");
    count = split_fields(s, n, f, flen);
    if (count != 2)
        return fail(err, errlen, name, line,
                    count < 2 ? "expected 'KEY USER' or 'USER KEY', found one field"
                              : "expected 'KEY USER' or 'USER KEY', found more fields (a comment "
                                "starts with '#')");
    is0 = tunnel_key_decode(f[0], flen[0], k0) == 0;
    is1 = tunnel_key_decode(f[1], flen[1], k1) == 0;
    if (is0 && is1)
        return fail(err, errlen, name, line, "both fields are keys: which is the user?");
    if (!is0 && !is1)
        return fail(err, errlen, name, line,
                    "no public key (%d characters of base64, as ferry-keygen prints it)",
                    TUNNEL_KEY_B64);
    ki = is0 ? 0 : 1;
    ui = 1 - ki;
    if (!auth_users_valid_name(f[ui], flen[ui]))
        return fail(err, errlen, name, line,
                    "'%s' is not a valid user name (1 to %d bytes, no ':' or control characters)",
                    units_quote_n(f[ui], flen[ui], q, sizeof(q)), AUTH_USERS_MAX_NAME);
    memcpy(out->key, is0 ? k0 : k1, TUNNEL_KEY_BYTES);
    out->user = strndup(f[ui], flen[ui]);
    if (out->user == NULL)
        return fail(err, errlen, name, line, "%s", strerror(errno));
    out->line = line;
    return 0;
}

struct tunnel_authkeys *tunnel_authkeys_parse(const char *text, size_t len, const char *name,
                                              char *err, size_t errlen)
{
    struct tunnel_authkeys *db = calloc(1, sizeof(*db));
    size_t pos = 0, n;
    unsigned line = 0;

    if (errlen > 0)
        err[0] = '\0';
    if (db == NULL) {
        fail(err, errlen, name, 0, "%s", strerror(errno));
        return NULL;
    }
    while (pos < len) {
        const char *s = next_line(text, len, &pos, &n);
        struct authkey k, *dup;

        line++;
        if (n > AUTHKEYS_MAX_LINE) {
            fail(err, errlen, name, line, "line too long (more than %d bytes)", AUTHKEYS_MAX_LINE);
            goto fail;
        }
        if (trim_skip(&s, &n))
            continue;
        if (parse_authkey(s, n, name, line, err, errlen, &k) < 0)
            goto fail;
        dup = find(db, k.key);
        if (dup != NULL) {
            fail(err, errlen, name, line, "key already given on line %u (for user %s)", dup->line,
                 dup->user);
            free(k.user);
            goto fail;
        }
        if (db->n == db->cap) {
            size_t cap = db->cap > 0 ? db->cap * 2 : 8;
            struct authkey *v = realloc(db->v, cap * sizeof(*v));

            if (v == NULL) {
                fail(err, errlen, name, line, "%s", strerror(errno));
                free(k.user);
                goto fail;
            }
            db->v = v;
            db->cap = cap;
        }
        db->v[db->n++] = k;
    }
    return db;

fail:
    tunnel_authkeys_free(db);
    return NULL;
}

struct tunnel_authkeys *tunnel_authkeys_load(const char *path, char *err, size_t errlen)
{
    struct tunnel_authkeys *db;
    struct stat st;
    char *buf;
    size_t len;
    int fd, saved;

    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0 || fstat(fd, &st) < 0) {
        saved = errno;
        if (fd >= 0)
            close(fd);
        fail(err, errlen, path, 0, "%s", strerror(saved));
        return NULL;
    }
    if (st.st_mode & (S_IWGRP | S_IWOTH)) {
        close(fd);
        fail(err, errlen, path, 0,
             "writable by %s (mode %04o): anyone who can write it can add keys; chmod go-w %s",
             (st.st_mode & S_IWOTH) ? "every user" : "its group", (unsigned)(st.st_mode & 07777),
             path);
        return NULL;
    }
    buf = units_read_fd(fd, TUNNEL_AUTHKEYS_MAX_FILE, &len);
    saved = errno;
    close(fd);
    if (buf == NULL) {
        fail(err, errlen, path, 0, "%s", saved == EFBIG ? "file too large" : strerror(saved));
        return NULL;
    }
    db = tunnel_authkeys_parse(buf, len, path, err, errlen);
    free(buf);
    return db;
}
