/* The resolver's cache: names to results with expiry times. Pure: time is passed in. */
#ifndef FERRY_RESOLVER_CACHE_H
#define FERRY_RESOLVER_CACHE_H

#include <stdbool.h>
#include <stddef.h>

#include "ferry/resolver.h"

struct resolver_cache;

/* At most max_entries names; when full, the entry closest to expiry is evicted. */
struct resolver_cache *resolver_cache_new(size_t max_entries);
void resolver_cache_free(struct resolver_cache *c);

/* True and *res filled when `name` (compared case-insensitively) has an entry alive at now. */
bool resolver_cache_get(struct resolver_cache *c, const char *name, double now,
                        struct resolver_result *res);

/* Store res (positive or negative) for ttl seconds from now; ttl <= 0 stores nothing. */
void resolver_cache_put(struct resolver_cache *c, const char *name,
                        const struct resolver_result *res, double ttl, double now);

/* Case-insensitive hash of a name, as the cache uses (the resolver keys in-flight queries by it
 * too). */
size_t resolver_cache_hash(const char *name);

/* Live and expired entries still held. */
size_t resolver_cache_count(const struct resolver_cache *c);

#endif
