/*
 * Recently verified logins, so that a client opening many connections pays the Argon2id cost
 * once, not per connection. Only successful logins are remembered, as a keyed BLAKE2b hash of
 * user and password (the key is random per process; neither is stored), with an expiry and the
 * generation of the users file they were checked against, so a reload forgets them all. One
 * cache serves every worker: check and put take its lock, the key needs none.
 */
#ifndef FERRY_AUTH_CACHE_H
#define FERRY_AUTH_CACHE_H

#include <stdbool.h>
#include <stddef.h>

struct auth_cache;

/* A cache of `slots` entries (rounded up to a power of two); NULL when out of memory. */
struct auth_cache *auth_cache_new(size_t slots);
void auth_cache_free(struct auth_cache *c);

#define AUTH_CACHE_KEY_LEN 32

/* The cache key of a login: a keyed hash of user and password, computed once per attempt. */
void auth_cache_key(const struct auth_cache *c, const char *user, size_t user_len,
                    const char *password, size_t pass_len, unsigned char key[AUTH_CACHE_KEY_LEN]);

/* True when the login was remembered for this generation and has not expired at now. */
bool auth_cache_check(struct auth_cache *c, const unsigned char key[AUTH_CACHE_KEY_LEN],
                      unsigned generation, double now);

/* Remember a successful login until now + ttl (ttl <= 0: nothing is remembered). */
void auth_cache_put(struct auth_cache *c, const unsigned char key[AUTH_CACHE_KEY_LEN],
                    unsigned generation, double now, double ttl);

#endif
