/*
 * Password checks for the sessions of one worker: a login verified a moment ago is answered
 * from the auth cache (authcache.h); identical checks in flight (same user, same password,
 * same users file) share one Argon2id run on the pool (authpool.h), so a client opening 64
 * connections at once pays for one; the rest each get their own run. Not thread-safe: one per
 * worker loop.
 */
#ifndef FERRY_VERIFY_H
#define FERRY_VERIFY_H

#include <stdbool.h>
#include <stddef.h>

struct authcache;
struct authpool;
struct verifier;
struct verify_wait;

/* ok: the password matched. Runs from the loop, once per check that was not cancelled. */
typedef void (*verify_cb)(bool ok, void *arg);

struct verifier *verifier_new(struct authpool *pool, struct authcache *cache);
/* Cancels every check in flight: no callback runs. */
void verifier_free(struct verifier *v);

struct verify_login {
    const char *user;
    size_t user_len;
    const char *password;
    size_t pass_len;
    const char *hash;    /* the user's stored hash, NULL for an unknown user */
    unsigned generation; /* of the users file the hash comes from */
    double cache_ttl;    /* auth-cache: 0 = neither cached nor merged */
    double now;          /* monotonic seconds (limits_clock): the cache's clock */
};

enum verify_status {
    VERIFY_CACHED,  /* matched a login remembered from before: no callback will run */
    VERIFY_PENDING, /* *wait is set; the callback brings the answer */
    VERIFY_ERROR,   /* could not be queued (errno set); no callback */
};

/* Start checking a login (its password is copied where needed and may be wiped afterwards). */
enum verify_status verifier_check(struct verifier *v, const struct verify_login *login,
                                  verify_cb cb, void *arg, struct verify_wait **wait);

/* The callback of wait will not run; wait is freed. */
void verifier_cancel(struct verifier *v, struct verify_wait *wait);

/* Checks in flight (Argon2id runs, not waiters), for tests. */
size_t verifier_in_flight(const struct verifier *v);

#endif
