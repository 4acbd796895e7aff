/*
 * Password checks for the sessions of one worker: a login verified a moment ago is answered
 * from the auth cache (auth_cache.h); identical checks in flight (same user name, same
 * password, same users file, whether or not the user exists) share one Argon2id run on the
 * pool (auth_pool.h), so a client opening 64 connections at once pays for one; the rest each
 * get their own run, admitted by the caller's hook. Not thread-safe: one per worker loop.
 */
#ifndef FERRY_AUTH_VERIFY_H
#define FERRY_AUTH_VERIFY_H

#include <stdbool.h>
#include <stddef.h>

struct auth_cache;
struct auth_pool;
struct auth_verifier;
struct auth_verify_wait;

/* ok: the password matched. Runs from the loop, once per check that was not cancelled. */
typedef void (*verify_cb)(bool ok, void *arg);

struct auth_verifier *auth_verify_new(struct auth_pool *pool, struct auth_cache *cache);
/* Cancels every check in flight: no callback runs. */
void auth_verify_free(struct auth_verifier *v);

/*
 * Admission of a new Argon2id run (a login neither cached nor merged with one in flight):
 * begin returns a claim, or NULL to refuse the run; the verifier hands the claim back to end
 * exactly once, failed false when the password matched or nothing ran, true when it did not
 * match or the run was cancelled. Both run on the loop thread; the claim may outlive the
 * session that made it (other sessions may have joined its run).
 */
struct auth_verify_admit {
    void *(*begin)(void *arg);
    void (*end)(void *claim, bool failed);
    void *arg;
};

struct auth_verify_login {
    const char *user;
    size_t user_len;
    const char *password;
    size_t pass_len;
    const char *hash;                      /* the user's stored hash, NULL for an unknown user */
    unsigned generation;                   /* of the users file the hash comes from */
    double cache_ttl;                      /* auth-cache: 0 = neither cached nor merged */
    double now;                            /* monotonic seconds (limits_clock): the cache's clock */
    const struct auth_verify_admit *admit; /* NULL: every run is admitted */
};

enum auth_verify_status {
    AUTH_VERIFY_CACHED,  /* matched a login remembered from before: no callback will run */
    AUTH_VERIFY_PENDING, /* *wait is set; the callback brings the answer */
    AUTH_VERIFY_ERROR,   /* could not be queued (errno set, EAGAIN: the pool is busy) */
    AUTH_VERIFY_REFUSED, /* the admission hook refused a run of its own; no callback */
};

/* Start checking a login (its password is copied where needed and may be wiped afterwards). */
enum auth_verify_status auth_verify_check(struct auth_verifier *v,
                                          const struct auth_verify_login *login, verify_cb cb,
                                          void *arg, struct auth_verify_wait **wait);

/* The callback of wait will not run; wait is freed. */
void auth_verify_cancel(struct auth_verifier *v, struct auth_verify_wait *wait);

/* Checks in flight (Argon2id runs, not waiters), for tests. */
size_t auth_verify_in_flight(const struct auth_verifier *v);

#endif
