/*
 * Recently verified logins, so that a client opening many connections pays the Argon2id cost
 * once, not per connection. Only successful logins are remembered, as a keyed BLAKE2b hash of
 * user and password (the key is random per process; neither is stored), with an expiry and the
 * generation of the users file they were checked against, so a reload forgets them all. One
 * cache serves every worker: check and put take its lock, the key needs none.
 */
#ifndef FERRY_AUTHCACHE_H
#define FERRY_AUTHCACHE_H

#include <stdbool.h>
#include <stddef.h>

struct authcache;

/* A cache of `slots` entries (rounded up to a power of two); NULL when out of memory. */
struct authcache *authcache_new(size_t slots);
void authcache_free(struct authcache *c);

#define AUTHCACHE_KEY_LEN 32

/* The cache key of a login: a keyed hash of user and password, computed once per attempt. */
void authcache_key(const struct authcache *c, const char *user, size_t user_len,
                   const char *password, size_t pass_len, unsigned char key[AUTHCACHE_KEY_LEN]);

/* True when the login was remembered for this generation and has not expired at now. */
bool authcache_check(struct authcache *c, const unsigned char key[AUTHCACHE_KEY_LEN],
                     unsigned generation, double now);

/* Remember a successful login until now + ttl (ttl <= 0: nothing is remembered). */
void authcache_put(struct authcache *c, const unsigned char key[AUTHCACHE_KEY_LEN],
                   unsigned generation, double now, double ttl);

#endif
