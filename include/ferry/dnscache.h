/* The resolver's cache: names to results with expiry times. Pure: time is passed in. */
#ifndef FERRY_DNSCACHE_H
#define FERRY_DNSCACHE_H

#include <stdbool.h>
#include <stddef.h>

#include "ferry/resolver.h"

struct dnscache;

/* At most max_entries names; when full, the entry closest to expiry is evicted. */
struct dnscache *dnscache_new(size_t max_entries);
void dnscache_free(struct dnscache *c);

/* True and *res filled when `name` (compared case-insensitively) has an entry alive at now. */
bool dnscache_get(struct dnscache *c, const char *name, double now, struct resolver_result *res);

/* Store res (positive or negative) for ttl seconds from now; ttl <= 0 stores nothing. */
void dnscache_put(struct dnscache *c, const char *name, const struct resolver_result *res,
                  double ttl, double now);

/* Case-insensitive hash of a name, as the cache uses (the resolver keys in-flight queries by it
 * too). */
size_t dnscache_hash(const char *name);

/* Live and expired entries still held. */
size_t dnscache_count(const struct dnscache *c);

#endif
