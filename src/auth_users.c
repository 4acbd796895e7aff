/*
 * The users file: "user:hash" lines kept in an open-addressing hash table keyed by the name's
 * bytes. The table hashes with SipHash (crypto_shorthash) under a random key.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "ferry/auth_users.h"
#include "ferry/units.h"

#define AUTH_USERS_MAX_LINE 4096
#define AUTH_USERS_MAX_FILE (64u * 1024 * 1024)

struct user {
    char *name; /* user_len bytes, NUL-terminated for messages */
    size_t name_len;
    char *hash; /* NUL-terminated, shorter than crypto_pwhash_STRBYTES */
    unsigned line;
};

struct auth_users {
    struct user *slots; /* cap entries; name NULL marks an empty slot */
    size_t cap;         /* a power of two, at least twice count */
    size_t count;
    unsigned char key[crypto_shorthash_KEYBYTES];
};

bool auth_users_valid_name(const char *name, size_t len)
{
    if (len < 1 || len > AUTH_USERS_MAX_NAME)
        return false;
    /* A leading '#' would make the line a comment. */
    if (name[0] == '#')
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)name[i];
        if (ch == ':' || ch <= 0x20 || ch == 0x7f)
            return false;
    }
    return true;
}

static size_t slot_of(const struct auth_users *db, const char *name, size_t len)
{
    uint64_t h;
    unsigned char out[crypto_shorthash_BYTES];

    crypto_shorthash(out, (const unsigned char *)name, len, db->key);
    memcpy(&h, out, sizeof(h));
    return (size_t)h & (db->cap - 1);
}

/* The slot holding name, or the empty slot where it would go. */
static struct user *find_slot(const struct auth_users *db, const char *name, size_t len)
{
    size_t i = slot_of(db, name, len);

    for (;;) {
        struct user *u = &db->slots[i];
        if (u->name == NULL)
            return u;
        if (u->name_len == len && memcmp(u->name, name, len) == 0)
            return u;
        i = (i + 1) & (db->cap - 1);
    }
}

static int grow(struct auth_users *db)
{
    struct user *old = db->slots;
    size_t oldcap = db->cap;
    size_t cap = oldcap == 0 ? 16 : oldcap * 2;
    struct user *slots = calloc(cap, sizeof(*slots));

    if (slots == NULL)
        return -1;
    db->slots = slots;
    db->cap = cap;
    for (size_t i = 0; i < oldcap; i++) {
        if (old[i].name != NULL)
            *find_slot(db, old[i].name, old[i].name_len) = old[i];
    }
    free(old);
    return 0;
}

void auth_users_free(struct auth_users *db)
{
    if (db == NULL)
        return;
    for (size_t i = 0; i < db->cap; i++) {
        struct user *u = &db->slots[i];
        if (u->name == NULL)
            continue;
        free(u->name);
        sodium_memzero(u->hash, strlen(u->hash));
        free(u->hash);
    }
    free(db->slots);
    free(db);
}

const char *auth_users_lookup(const struct auth_users *db, const char *user, size_t user_len)
{
    const struct user *u;

    if (db == NULL || db->cap == 0)
        return NULL;
    u = find_slot(db, user, user_len);
    return u->name != NULL ? u->hash : NULL;
}

size_t auth_users_count(const struct auth_users *db)
{
    return db != NULL ? db->count : 0;
}

static int fail(char *err, size_t errlen, const char *name, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int fail(char *err, size_t errlen, const char *name, unsigned line, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (errlen == 0)
        return -1;
    n = snprintf(err, errlen, "%s:%u: ", name, line);
    if (n < 0 || (size_t)n >= errlen)
        return -1;
    va_start(ap, fmt);
    vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

/* s (n bytes) for a message: see units_quote_n. */
#define Q(s, n) units_quote_n((s), (n), (char[96]){0}, 96)

/* What crypto_pwhash_str may produce: Argon2id, or Argon2i that crypto_pwhash_str_verify takes. */
static bool valid_hash(const char *h, size_t len)
{
    if (len >= crypto_pwhash_STRBYTES)
        return false;
    if (strncmp(h, "$argon2id$", 10) != 0 && strncmp(h, "$argon2i$", 9) != 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)h[i];
        if (ch <= 0x20 || ch >= 0x7f)
            return false;
    }
    return true;
}

static bool is_blank(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r';
}

/* One line (no newline). Returns 0 and fills *u, 1 for a line to skip, -1 on error. */
static int parse_line(const char *s, size_t n, const char *name, unsigned line, char *err,
                      size_t errlen, struct user *u)
{
    const char *colon, *hash;
    size_t ulen, hlen, i;

    /* Trailing blanks (and a CR from CRLF files) are not part of the hash. */
    while (n > 0 && is_blank(s[n - 1]))
        n--;
    for (i = 0; i < n && is_blank(s[i]); i++)
        ;
    if (i == n || s[i] == '#')
        return 1;
    if (memchr(s, '\0', n) != NULL)
        return fail(err, errlen, name, line, "NUL byte in line");
    colon = memchr(s, ':', n);
    if (colon == NULL)
        return fail(err, errlen, name, line, "expected 'user:hash', found no ':'");
    ulen = (size_t)(colon - s);
    hash = colon + 1;
    hlen = n - ulen - 1;
    if (ulen == 0)
        return fail(err, errlen, name, line, "empty user name");
    if (ulen > AUTH_USERS_MAX_NAME)
        return fail(err, errlen, name, line, "user name longer than %d bytes", AUTH_USERS_MAX_NAME);
    if (!auth_users_valid_name(s, ulen))
        return fail(err, errlen, name, line,
                    "user name '%s' holds whitespace or control characters", Q(s, ulen));
    if (!valid_hash(hash, hlen))
        return fail(err, errlen, name, line,
                    "hash of user '%s' is not an Argon2 hash from ferry-passwd ($argon2id$...)",
                    Q(s, ulen));
    u->name = strndup(s, ulen);
    u->hash = strndup(hash, hlen);
    if (u->name == NULL || u->hash == NULL) {
        free(u->name);
        free(u->hash);
        return fail(err, errlen, name, line, "%s", strerror(errno));
    }
    u->name_len = ulen;
    u->line = line;
    return 0;
}

/* Parse len bytes of text, which may hold NUL bytes (reported as errors). */
static struct auth_users *parse_buf(const char *text, size_t len, const char *name, char *err,
                                    size_t errlen)
{
    struct auth_users *db;
    size_t pos = 0;
    unsigned line = 0;

    if (errlen > 0)
        err[0] = '\0';
    if (sodium_init() < 0) {
        snprintf(err, errlen, "%s: libsodium failed to initialise", name);
        return NULL;
    }
    db = calloc(1, sizeof(*db));
    if (db == NULL || grow(db) < 0) {
        snprintf(err, errlen, "%s: %s", name, strerror(errno));
        free(db);
        return NULL;
    }
    randombytes_buf(db->key, sizeof(db->key));

    while (pos < len) {
        const char *s = text + pos;
        const char *nl = memchr(s, '\n', len - pos);
        size_t n = nl != NULL ? (size_t)(nl - s) : len - pos;
        struct user u, *slot;
        int r;

        line++;
        pos += n + (nl != NULL ? 1 : 0);
        if (n > AUTH_USERS_MAX_LINE) {
            fail(err, errlen, name, line, "line too long (more than %d bytes)",
                 AUTH_USERS_MAX_LINE);
            goto fail;
        }
        r = parse_line(s, n, name, line, err, errlen, &u);
        if (r < 0)
            goto fail;
        if (r > 0)
            continue;
        slot = find_slot(db, u.name, u.name_len);
        if (slot->name != NULL) {
            fail(err, errlen, name, line, "duplicate user '%s' (first on line %u)",
                 Q(u.name, u.name_len), slot->line);
            free(u.name);
            free(u.hash);
            goto fail;
        }
        *slot = u;
        db->count++;
        if (db->count * 2 > db->cap && grow(db) < 0) {
            fail(err, errlen, name, line, "%s", strerror(errno));
            goto fail;
        }
    }
    return db;

fail:
    auth_users_free(db);
    return NULL;
}

struct auth_users *auth_users_parse(const char *text, const char *name, char *err, size_t errlen)
{
    return parse_buf(text, strlen(text), name, err, errlen);
}

/*
 * The file's mode, as OpenSSH's StrictModes judges its own files: one that others may write
 * is refused (anyone who can write it can add a user), one that every user may read is
 * allowed with a warning (its hashes can be guessed offline). Returns -1 with err set.
 */
static int check_mode(const char *path, const struct stat *st, char *err, size_t errlen, char *warn,
                      size_t warnlen)
{
    unsigned mode = (unsigned)st->st_mode & 07777;

    if (st->st_mode & (S_IWGRP | S_IWOTH)) {
        snprintf(err, errlen,
                 "%s: writable by %s (mode %04o): anyone who can write it can add users; "
                 "chmod go-w %s",
                 path, (st->st_mode & S_IWOTH) ? "every user" : "its group", mode, path);
        return -1;
    }
    if (st->st_mode & S_IROTH)
        snprintf(warn, warnlen,
                 "%s is readable by every user (mode %04o): its hashes can be guessed offline; "
                 "chmod o-r %s",
                 path, mode, path);
    return 0;
}

struct auth_users *auth_users_load(const char *path, char *err, size_t errlen, char *warn,
                                   size_t warnlen)
{
    size_t len;
    char *buf;
    struct auth_users *db;
    struct stat st;
    int fd, saved;

    if (warnlen > 0)
        warn[0] = '\0';
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0) {
        saved = errno;
        if (fd >= 0)
            close(fd);
        snprintf(err, errlen, "%s: %s", path, strerror(saved));
        return NULL;
    }
    if (check_mode(path, &st, err, errlen, warn, warnlen) < 0) {
        close(fd);
        return NULL;
    }
    buf = units_read_fd(fd, AUTH_USERS_MAX_FILE, &len);
    saved = errno;
    close(fd);
    if (buf == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(saved));
        return NULL;
    }
    db = parse_buf(buf, len, path, err, errlen);
    free(buf);
    return db;
}
