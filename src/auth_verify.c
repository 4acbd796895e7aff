/* Password checks: cache, merged checks in flight, the pool (see auth_verify.h). */
#include "config.h"

#include "ferry/auth_verify.h"

#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/auth_cache.h"
#include "ferry/auth_pool.h"

/* One Argon2id run on the pool and the sessions waiting for its answer. */
struct flight {
    struct flight *next;
    struct auth_verifier *v;
    struct auth_job *job;
    struct auth_verify_wait *waiters;
    bool keyed;     /* key/generation identify the login: others may join, a match is cached */
    bool answering; /* flight_done is calling the waiters back: it frees the flight */
    void (*unclaim)(void *claim, bool failed); /* the admission's end, NULL when done */
    void *claim;
    unsigned generation;
    double cache_ttl;
    double started; /* a remembered answer lives cache_ttl from here */
    unsigned char key[AUTH_CACHE_KEY_LEN];
};

struct auth_verify_wait {
    struct auth_verify_wait *next;
    struct flight *flight;
    verify_cb cb;
    void *arg;
};

struct auth_verifier {
    struct auth_pool *pool;
    struct auth_cache *cache;
    struct flight *flights;
    size_t nflights;
};

struct auth_verifier *auth_verify_new(struct auth_pool *pool, struct auth_cache *cache)
{
    struct auth_verifier *v = calloc(1, sizeof(*v));

    if (v == NULL)
        return NULL;
    v->pool = pool;
    v->cache = cache;
    return v;
}

static void flight_unlink(struct auth_verifier *v, struct flight *f)
{
    for (struct flight **p = &v->flights; *p != NULL; p = &(*p)->next) {
        if (*p == f) {
            *p = f->next;
            v->nflights--;
            return;
        }
    }
}

/* Give the run's claim back once: failed says the run answered no (or never answered). */
static void flight_unclaim(struct flight *f, bool failed)
{
    if (f->unclaim != NULL) {
        void (*end)(void *, bool) = f->unclaim;

        f->unclaim = NULL;
        end(f->claim, failed);
    }
}

static void flight_free(struct flight *f)
{
    flight_unclaim(f, true);
    while (f->waiters != NULL) {
        struct auth_verify_wait *w = f->waiters;
        f->waiters = w->next;
        free(w);
    }
    sodium_memzero(f->key, sizeof(f->key));
    free(f);
}

void auth_verify_free(struct auth_verifier *v)
{
    if (v == NULL)
        return;
    while (v->flights != NULL) {
        struct flight *f = v->flights;
        v->flights = f->next;
        auth_pool_cancel(f->job);
        flight_free(f);
    }
    free(v);
}

/* The pool's answer: remember a match, then hand it to every waiter, one at a time. */
static void flight_done(bool ok, void *arg)
{
    struct flight *f = arg;
    struct auth_verifier *v = f->v;

    flight_unlink(v, f);
    f->job = NULL; /* the pool has freed it */
    f->answering = true;
    flight_unclaim(f, !ok);
    if (ok && f->keyed)
        auth_cache_put(v->cache, f->key, f->generation, f->started, f->cache_ttl);
    while (f->waiters != NULL) {
        struct auth_verify_wait *w = f->waiters;

        /* Unlinked before the callback: it may close its session, or cancel another waiter
         * of this flight (auth_verify_cancel then leaves the flight to us). */
        f->waiters = w->next;
        w->cb(ok, w->arg);
        free(w);
    }
    flight_free(f);
}

static struct flight *flight_find(struct auth_verifier *v, const unsigned char *key,
                                  unsigned generation)
{
    for (struct flight *f = v->flights; f != NULL; f = f->next) {
        if (f->keyed && f->generation == generation &&
            sodium_memcmp(f->key, key, AUTH_CACHE_KEY_LEN) == 0)
            return f;
    }
    return NULL;
}

enum auth_verify_status auth_verify_check(struct auth_verifier *v,
                                          const struct auth_verify_login *login, verify_cb cb,
                                          void *arg, struct auth_verify_wait **wait)
{
    unsigned char key[AUTH_CACHE_KEY_LEN];
    /* Unknown users too: identical logins must merge alike whether the user exists or not,
     * or the time they take tells which names are users. */
    bool keyed = login->cache_ttl > 0;
    struct flight *f = NULL;
    struct auth_verify_wait *w;

    if (keyed) {
        auth_cache_key(v->cache, login->user, login->user_len, login->password, login->pass_len,
                       key);
        if (auth_cache_check(v->cache, key, login->generation, login->now)) {
            sodium_memzero(key, sizeof(key));
            return AUTH_VERIFY_CACHED;
        }
        f = flight_find(v, key, login->generation);
    }
    w = calloc(1, sizeof(*w));
    if (w == NULL)
        goto fail;
    w->cb = cb;
    w->arg = arg;
    if (f == NULL) {
        f = calloc(1, sizeof(*f));
        if (f == NULL)
            goto fail;
        f->v = v;
        f->keyed = keyed;
        f->generation = login->generation;
        f->cache_ttl = login->cache_ttl;
        f->started = login->now;
        if (keyed)
            memcpy(f->key, key, sizeof(key));
        if (login->admit != NULL) {
            f->claim = login->admit->begin(login->admit->arg);
            if (f->claim == NULL) {
                flight_free(f);
                sodium_memzero(key, sizeof(key));
                free(w);
                return AUTH_VERIFY_REFUSED;
            }
            f->unclaim = login->admit->end;
        }
        f->job = auth_pool_verify(v->pool, login->hash, login->password, login->pass_len,
                                  flight_done, f);
        if (f->job == NULL) {
            int saved = errno;
            flight_unclaim(f, false); /* nothing ran: nothing to charge */
            flight_free(f);
            errno = saved;
            goto fail;
        }
        f->next = v->flights;
        v->flights = f;
        v->nflights++;
    }
    w->flight = f;
    w->next = f->waiters;
    f->waiters = w;
    *wait = w;
    sodium_memzero(key, sizeof(key));
    return AUTH_VERIFY_PENDING;

fail:
    sodium_memzero(key, sizeof(key));
    free(w);
    return AUTH_VERIFY_ERROR;
}

void auth_verify_cancel(struct auth_verifier *v, struct auth_verify_wait *wait)
{
    struct flight *f = wait->flight;

    for (struct auth_verify_wait **p = &f->waiters; *p != NULL; p = &(*p)->next) {
        if (*p == wait) {
            *p = wait->next;
            break;
        }
    }
    free(wait);
    if (f->waiters == NULL && !f->answering) {
        /* Nobody waits any more: the run is not needed. */
        auth_pool_cancel(f->job);
        flight_unlink(v, f);
        flight_free(f);
    }
}

size_t auth_verify_in_flight(const struct auth_verifier *v)
{
    return v->nflights;
}
