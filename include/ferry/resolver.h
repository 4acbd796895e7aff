/* Asynchronous name resolution: c-ares driven by the libev loop, with a cache and coalescing. */
#ifndef FERRY_RESOLVER_H
#define FERRY_RESOLVER_H

#include <stddef.h>

#include "ferry/addr.h"

struct ev_loop;
struct metrics_worker;

enum resolver_status {
    RESOLVER_OK = 0,
    RESOLVER_NXDOMAIN, /* the name does not exist */
    RESOLVER_NODATA,   /* the name exists but has no A or AAAA record */
    RESOLVER_TIMEOUT,  /* no server answered in time */
    RESOLVER_SERVFAIL, /* servers failed, refused, or sent an answer we could not use */
    RESOLVER_BADNAME,  /* the name cannot be put in a query (too long, empty label, ...) */
    RESOLVER_ERROR,    /* local trouble: out of memory, shutting down */
};

/* Addresses kept per name; more are dropped (the connector tries them in turn). */
#define RESOLVER_MAX_ADDRS 16

/* Addresses carry port 0. On failure count is 0. */
struct resolver_result {
    enum resolver_status status;
    size_t count;
    struct addr addrs[RESOLVER_MAX_ADDRS];
};

struct resolver_options {
    const struct addr *servers; /* DNS servers with their ports (conf.h parses the list), */
    size_t nservers;            /* or none: the system's resolv.conf */
    double timeout;             /* seconds for the first try of a query (c-ares backs off after) */
    int tries;                  /* attempts per server */
    size_t cache_size;          /* entries; 0 disables the cache */
    double negative_ttl;        /* seconds to remember NXDOMAIN/NODATA */
    double max_ttl;             /* upper bound on any cached TTL */
    struct metrics_worker *metrics; /* counted here: queries, cache hits, latency; or NULL */
};

struct resolver;
struct resolver_query;

/* Called once per lookup that was not cancelled, always from the loop, never re-entrantly. */
typedef void (*resolver_cb)(const struct resolver_result *res, void *arg);

/* Returns NULL and writes a message into err on failure (servers refused, c-ares init). */
struct resolver *resolver_new(struct ev_loop *loop, const struct resolver_options *opt, char *err,
                              size_t errlen);

/* Frees the channel, cache and every pending query; no callback runs afterwards. */
void resolver_free(struct resolver *r);

/*
 * Resolve `name` to IPv4 and IPv6 addresses. IP literals and cache hits are answered too, but
 * still through the callback from the loop, never from inside this call. Identical names in
 * flight share one query. Returns a handle for resolver_cancel, or NULL with errno set.
 */
struct resolver_query *resolver_lookup(struct resolver *r, const char *name, resolver_cb cb,
                                       void *arg);

/* Called once per reverse lookup that was not cancelled; name is NULL unless status is OK. */
typedef void (*resolver_ptr_cb)(enum resolver_status status, const char *name, void *arg);

/*
 * Reverse lookup (PTR) of an IPv4 or IPv6 address through the same channel. Not cached, not
 * coalesced. Same callback rules as resolver_lookup; cancel with resolver_cancel.
 */
struct resolver_query *resolver_lookup_ptr(struct resolver *r, const struct addr *a,
                                           resolver_ptr_cb cb, void *arg);

/* The callback of q will not run; q is freed. Safe until the callback has started. */
void resolver_cancel(struct resolver_query *q);

const char *resolver_status_name(enum resolver_status status);

#endif
