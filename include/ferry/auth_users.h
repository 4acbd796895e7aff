/* The users file: one "user:hash" per line, hashes from crypto_pwhash_str (Argon2id). */
#ifndef FERRY_AUTH_USERS_H
#define FERRY_AUTH_USERS_H

#include <stdbool.h>
#include <stddef.h>

#define AUTH_USERS_MAX_NAME 255

struct auth_users;

/*
 * A name the users file can hold: 1..AUTH_USERS_MAX_NAME bytes, no ':', no whitespace or control
 * characters, and not starting with '#' (that line would be a comment).
 */
bool auth_users_valid_name(const char *name, size_t len);

/*
 * Parse `text` as the contents of file `name`. Blank lines and lines starting with '#' are
 * skipped. Returns NULL with "NAME:LINE: problem" in err for a bad line (no colon, empty or
 * over-long user name, a hash that is not $argon2id$/$argon2i$, a duplicate user).
 */
struct auth_users *auth_users_parse(const char *text, const char *name, char *err, size_t errlen);

/*
 * Read and parse a file; "PATH: strerror" in err when it cannot be read. A file that its group
 * or every user may write is refused; one that every user may read is loaded with a warning in
 * warn (empty otherwise).
 */
struct auth_users *auth_users_load(const char *path, char *err, size_t errlen, char *warn,
                                   size_t warnlen);

void auth_users_free(struct auth_users *db);

/* The stored hash for user (user_len bytes, may hold any byte), or NULL when unknown. */
const char *auth_users_lookup(const struct auth_users *db, const char *user, size_t user_len);

size_t auth_users_count(const struct auth_users *db);

#endif
