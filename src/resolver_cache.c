/*
 * The resolver's cache: a hash table with chaining for lookups by name, and a binary min-heap on
 * expiry time so that the entry closest to expiry (expired ones first) is found in O(1) and
 * evicted in O(log n). Pure: the caller passes the current time.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ferry/resolver_cache.h"

struct resolver_cache_entry {
    struct resolver_cache_entry *next; /* hash chain */
    size_t hash;
    size_t heap_index;
    double expires;
    char *name;
    enum resolver_status status;
    size_t count;
    struct addr addrs[]; /* count of them */
};

struct resolver_cache {
    size_t max_entries;
    size_t count;
    struct resolver_cache_entry **buckets;
    size_t bucket_mask;
    struct resolver_cache_entry **heap; /* min-heap on expires */
    size_t heap_cap;
};

/* Buckets never exceed this many, whatever max_entries says; chains just grow longer. */
#define RESOLVER_CACHE_MAX_BUCKETS ((size_t)1 << 20)

/* FNV-1a over the lower-cased name. */
size_t resolver_cache_hash(const char *name)
{
    uint64_t h = 1469598103934665603ULL;

    for (const unsigned char *p = (const unsigned char *)name; *p != '\0'; p++) {
        unsigned char c = *p;
        if (c >= 'A' && c <= 'Z')
            c = (unsigned char)(c - 'A' + 'a');
        h ^= c;
        h *= 1099511628211ULL;
    }
    return (size_t)h;
}

struct resolver_cache *resolver_cache_new(size_t max_entries)
{
    struct resolver_cache *c = calloc(1, sizeof(*c));
    size_t nbuckets = 16;

    if (c == NULL)
        return NULL;
    while (nbuckets < max_entries && nbuckets < RESOLVER_CACHE_MAX_BUCKETS)
        nbuckets *= 2;
    c->buckets = calloc(nbuckets, sizeof(*c->buckets));
    if (c->buckets == NULL) {
        free(c);
        return NULL;
    }
    c->bucket_mask = nbuckets - 1;
    c->max_entries = max_entries;
    return c;
}

static void entry_free(struct resolver_cache_entry *e)
{
    free(e->name);
    free(e);
}

void resolver_cache_free(struct resolver_cache *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->count; i++)
        entry_free(c->heap[i]);
    free(c->heap);
    free(c->buckets);
    free(c);
}

static void heap_set(struct resolver_cache *c, size_t i, struct resolver_cache_entry *e)
{
    c->heap[i] = e;
    e->heap_index = i;
}

static void heap_up(struct resolver_cache *c, size_t i)
{
    struct resolver_cache_entry *e = c->heap[i];

    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (c->heap[parent]->expires <= e->expires)
            break;
        heap_set(c, i, c->heap[parent]);
        i = parent;
    }
    heap_set(c, i, e);
}

static void heap_down(struct resolver_cache *c, size_t i)
{
    struct resolver_cache_entry *e = c->heap[i];

    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= c->count)
            break;
        if (child + 1 < c->count && c->heap[child + 1]->expires < c->heap[child]->expires)
            child++;
        if (e->expires <= c->heap[child]->expires)
            break;
        heap_set(c, i, c->heap[child]);
        i = child;
    }
    heap_set(c, i, e);
}

static struct resolver_cache_entry *find(const struct resolver_cache *c, const char *name,
                                         size_t hash)
{
    for (struct resolver_cache_entry *e = c->buckets[hash & c->bucket_mask]; e != NULL;
         e = e->next) {
        if (e->hash == hash && strcasecmp(e->name, name) == 0)
            return e;
    }
    return NULL;
}

/* Unlink e from its chain and from the heap, and free it. */
static void remove_entry(struct resolver_cache *c, struct resolver_cache_entry *e)
{
    struct resolver_cache_entry **pp = &c->buckets[e->hash & c->bucket_mask];
    size_t i = e->heap_index;

    while (*pp != e)
        pp = &(*pp)->next;
    *pp = e->next;

    c->count--;
    if (i != c->count) {
        heap_set(c, i, c->heap[c->count]);
        if (i > 0 && c->heap[i]->expires < c->heap[(i - 1) / 2]->expires)
            heap_up(c, i);
        else
            heap_down(c, i);
    }
    entry_free(e);
}

bool resolver_cache_get(struct resolver_cache *c, const char *name, double now,
                        struct resolver_result *res)
{
    struct resolver_cache_entry *e;

    if (c == NULL || name == NULL)
        return false;
    e = find(c, name, resolver_cache_hash(name));
    if (e == NULL)
        return false;
    if (e->expires <= now) {
        remove_entry(c, e);
        return false;
    }
    memset(res, 0, sizeof(*res));
    res->status = e->status;
    res->count = e->count;
    memcpy(res->addrs, e->addrs, e->count * sizeof(e->addrs[0]));
    return true;
}

void resolver_cache_put(struct resolver_cache *c, const char *name,
                        const struct resolver_result *res, double ttl, double now)
{
    struct resolver_cache_entry *e, *old;
    size_t hash, count, namelen;

    if (c == NULL || name == NULL || res == NULL)
        return;
    hash = resolver_cache_hash(name);
    /* Newer information replaces the old entry, even when it says "do not cache". */
    old = find(c, name, hash);
    if (old != NULL)
        remove_entry(c, old);
    if (!(ttl > 0) || c->max_entries == 0)
        return;

    count = res->count <= RESOLVER_MAX_ADDRS ? res->count : RESOLVER_MAX_ADDRS;
    namelen = strlen(name);
    e = malloc(sizeof(*e) + count * sizeof(e->addrs[0]));
    if (e == NULL)
        return;
    e->name = malloc(namelen + 1);
    if (e->name == NULL) {
        free(e);
        return;
    }
    memcpy(e->name, name, namelen + 1);
    e->hash = hash;
    e->expires = now + ttl;
    e->status = res->status;
    e->count = count;
    memcpy(e->addrs, res->addrs, count * sizeof(e->addrs[0]));

    if (c->count == c->max_entries) {
        /* Full: the entry closest to expiry goes, and that may be the newcomer itself. */
        struct resolver_cache_entry *soonest = c->heap[0];
        if (soonest->expires > now && soonest->expires >= e->expires) {
            entry_free(e);
            return;
        }
        remove_entry(c, soonest);
    }
    if (c->count == c->heap_cap) {
        size_t cap = c->heap_cap == 0 ? 16 : c->heap_cap * 2;
        struct resolver_cache_entry **heap;
        if (cap > c->max_entries)
            cap = c->max_entries;
        heap = realloc(c->heap, cap * sizeof(*heap));
        if (heap == NULL) {
            entry_free(e);
            return;
        }
        c->heap = heap;
        c->heap_cap = cap;
    }

    e->next = c->buckets[hash & c->bucket_mask];
    c->buckets[hash & c->bucket_mask] = e;
    heap_set(c, c->count, e);
    c->count++;
    heap_up(c, e->heap_index);
}

size_t resolver_cache_count(const struct resolver_cache *c)
{
    return c == NULL ? 0 : c->count;
}
