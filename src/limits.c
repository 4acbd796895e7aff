/* Limits across sessions and workers: one hash table of client and user entries (limits.h). */
#include "config.h"

#include "ferry/limits.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ferry/addr.h"

#define LIMITS_BUCKETS 4096 /* hash chains; a power of two */

enum limit_kind {
    KIND_CLIENT,
    KIND_USER,
    KIND_RULE,
};

/* A token bucket; `full` until first used, so an entry that never hit a limit stays trivial. */
struct bucket {
    double tokens;
    double stamp;
    bool used;
};

struct limit {
    struct limit *next;                  /* hash chain */
    struct limit *idle_prev, *idle_next; /* entries without references, oldest first */
    unsigned refs;
    unsigned sessions;
    unsigned negotiating; /* of those sessions, the ones not past their request yet */
    unsigned udp;
    unsigned verifying;    /* password checks in flight (client IP or user name) */
    unsigned auth_refused; /* logins refused unchecked since auth_noted */
    double auth_noted;     /* when the last line about them was written; 0: none yet */
    struct bucket accept;
    struct bucket auth;
    struct bucket bandwidth[2];
    bool quota_on;
    double quota_start;
    uint64_t quota_used;
    uint32_t hash;
    uint8_t kind;
    uint16_t keylen;
    unsigned char key[];
};

struct limits {
    pthread_mutex_t lock;
    size_t max_idle;
    size_t nidle;
    size_t nentries;
    unsigned total;
    unsigned negotiating;
    unsigned udp_total;
    unsigned prefix6; /* IPv6 clients are keyed on this many leading bits */
    struct limit *idle_head, *idle_tail;
    struct limit *chain[LIMITS_BUCKETS];
};

double limits_clock(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct limits *limits_new(size_t max_idle)
{
    struct limits *l = calloc(1, sizeof(*l));

    if (l == NULL)
        return NULL;
    if (pthread_mutex_init(&l->lock, NULL) != 0) {
        free(l);
        return NULL;
    }
    l->max_idle = max_idle;
    l->prefix6 = 64;
    return l;
}

void limits_free(struct limits *l)
{
    if (l == NULL)
        return;
    for (size_t i = 0; i < LIMITS_BUCKETS; i++) {
        for (struct limit *e = l->chain[i], *next; e != NULL; e = next) {
            next = e->next;
            free(e);
        }
    }
    pthread_mutex_destroy(&l->lock);
    free(l);
}

/* --- token buckets (callers hold the lock) ----------------------------------------------- */

static void bucket_refill(struct bucket *b, const struct limit_rate *r, double now)
{
    if (!b->used) {
        b->used = true;
        b->tokens = r->burst;
        b->stamp = now;
        return;
    }
    /* Workers' clocks agree, but a caller may pass a time a hair older than the last one. */
    if (now > b->stamp) {
        b->tokens += (now - b->stamp) * r->rate;
        b->stamp = now;
    }
    if (b->tokens > r->burst)
        b->tokens = r->burst;
}

/* A bucket that is full again remembers nothing. */
static bool bucket_trivial(const struct bucket *b, const struct limit_rate *r, double now)
{
    return !b->used || b->tokens + (now - b->stamp) * r->rate >= r->burst;
}

/* --- the table --------------------------------------------------------------------------- */

static uint32_t key_hash(uint8_t kind, const unsigned char *key, size_t len)
{
    uint32_t h = 2166136261u ^ kind; /* FNV-1a */

    for (size_t i = 0; i < len; i++) {
        h ^= key[i];
        h *= 16777619u;
    }
    return h;
}

static void idle_unlink(struct limits *l, struct limit *e)
{
    if (e->idle_prev != NULL)
        e->idle_prev->idle_next = e->idle_next;
    else
        l->idle_head = e->idle_next;
    if (e->idle_next != NULL)
        e->idle_next->idle_prev = e->idle_prev;
    else
        l->idle_tail = e->idle_prev;
    e->idle_prev = e->idle_next = NULL;
    l->nidle--;
}

static void entry_remove(struct limits *l, struct limit *e)
{
    struct limit **p = &l->chain[e->hash & (LIMITS_BUCKETS - 1)];

    while (*p != e)
        p = &(*p)->next;
    *p = e->next;
    l->nentries--;
    free(e);
}

/*
 * Whether an entry without sessions still holds state worth keeping. Buckets are judged full
 * when their last rate refilled them; a quota period with bytes used is kept until its end is
 * unknown, so it is always kept (the idle bound drops it eventually).
 */
static bool entry_remembers(const struct limit *e)
{
    return e->accept.used || e->auth.used || e->bandwidth[0].used || e->bandwidth[1].used ||
           e->quota_on;
}

static struct limit *lookup(struct limits *l, uint8_t kind, const unsigned char *key, size_t len)
{
    uint32_t h = key_hash(kind, key, len);
    struct limit **head = &l->chain[h & (LIMITS_BUCKETS - 1)];
    struct limit *e;

    for (e = *head; e != NULL; e = e->next) {
        if (e->hash == h && e->kind == kind && e->keylen == len && memcmp(e->key, key, len) == 0)
            break;
    }
    if (e == NULL) {
        e = calloc(1, sizeof(*e) + len);
        if (e == NULL)
            return NULL;
        e->hash = h;
        e->kind = kind;
        e->keylen = (uint16_t)len;
        memcpy(e->key, key, len);
        e->next = *head;
        *head = e;
        l->nentries++;
    } else if (e->refs == 0) {
        idle_unlink(l, e);
    }
    e->refs++;
    return e;
}

static struct limit *acquire(struct limits *l, uint8_t kind, const unsigned char *key, size_t len)
{
    struct limit *e;

    pthread_mutex_lock(&l->lock);
    e = lookup(l, kind, key, len);
    pthread_mutex_unlock(&l->lock);
    return e;
}

void limits_set_client_prefix6(struct limits *l, unsigned bits)
{
    pthread_mutex_lock(&l->lock);
    l->prefix6 = bits >= 1 && bits <= 128 ? bits : 64;
    pthread_mutex_unlock(&l->lock);
}

/*
 * An IPv6 client's key: its first prefix6 bits and the prefix length (so that entries keyed
 * under another length never meet), 17 bytes; IPv4 keys are 4.
 */
struct limit *limits_client(struct limits *l, const struct addr *ip)
{
    const unsigned char *ip4 = addr_ipv4_bytes(ip);
    unsigned char key[17];
    unsigned bits;
    struct limit *e;

    if (ip4 != NULL)
        return acquire(l, KIND_CLIENT, ip4, 4);
    memcpy(key, ip->u.in6.sin6_addr.s6_addr, 16);
    pthread_mutex_lock(&l->lock);
    bits = l->prefix6;
    for (unsigned i = 0; i < 16; i++) {
        unsigned keep = bits >= 8 * (i + 1) ? 8 : bits > 8 * i ? bits - 8 * i : 0;
        key[i] &= (unsigned char)(0xff00u >> keep);
    }
    key[16] = (unsigned char)bits;
    e = lookup(l, KIND_CLIENT, key, sizeof(key));
    pthread_mutex_unlock(&l->lock);
    return e;
}

struct limit *limits_user(struct limits *l, const char *user)
{
    return acquire(l, KIND_USER, (const unsigned char *)user, strlen(user));
}

struct limit *limits_rule(struct limits *l, unsigned generation, unsigned rule)
{
    uint32_t key[2] = {generation, rule};

    return acquire(l, KIND_RULE, (const unsigned char *)key, sizeof(key));
}

void limits_release(struct limits *l, struct limit *e)
{
    if (e == NULL)
        return;
    pthread_mutex_lock(&l->lock);
    if (--e->refs == 0) {
        if (!entry_remembers(e)) {
            entry_remove(l, e);
        } else {
            e->idle_prev = l->idle_tail;
            if (l->idle_tail != NULL)
                l->idle_tail->idle_next = e;
            else
                l->idle_head = e;
            l->idle_tail = e;
            l->nidle++;
            while (l->nidle > l->max_idle) {
                struct limit *old = l->idle_head;
                idle_unlink(l, old);
                entry_remove(l, old);
            }
        }
    }
    pthread_mutex_unlock(&l->lock);
}

size_t limits_entries(struct limits *l)
{
    size_t n;

    pthread_mutex_lock(&l->lock);
    n = l->nentries;
    pthread_mutex_unlock(&l->lock);
    return n;
}

/* --- counts ------------------------------------------------------------------------------ */

static bool count_enter(struct limits *l, unsigned *count, unsigned max)
{
    bool ok;

    pthread_mutex_lock(&l->lock);
    ok = max == 0 || *count < max;
    if (ok)
        (*count)++;
    pthread_mutex_unlock(&l->lock);
    return ok;
}

static void count_leave(struct limits *l, unsigned *count)
{
    pthread_mutex_lock(&l->lock);
    if (*count > 0)
        (*count)--;
    pthread_mutex_unlock(&l->lock);
}

bool limits_session_enter(struct limits *l, struct limit *e, unsigned max)
{
    return count_enter(l, &e->sessions, max);
}

void limits_session_leave(struct limits *l, struct limit *e)
{
    count_leave(l, &e->sessions);
}

unsigned limits_sessions_of(struct limits *l, const struct limit *e)
{
    unsigned n;

    pthread_mutex_lock(&l->lock);
    n = e->sessions;
    pthread_mutex_unlock(&l->lock);
    return n;
}

bool limits_total_enter(struct limits *l, unsigned max)
{
    return count_enter(l, &l->total, max);
}

void limits_total_leave(struct limits *l)
{
    count_leave(l, &l->total);
}

bool limits_udp_total_enter(struct limits *l, unsigned max)
{
    return count_enter(l, &l->udp_total, max);
}

void limits_udp_total_leave(struct limits *l)
{
    count_leave(l, &l->udp_total);
}

unsigned limits_total(struct limits *l)
{
    unsigned n;

    pthread_mutex_lock(&l->lock);
    n = l->total;
    pthread_mutex_unlock(&l->lock);
    return n;
}

unsigned limits_negotiating(struct limits *l)
{
    unsigned n;

    pthread_mutex_lock(&l->lock);
    n = l->negotiating;
    pthread_mutex_unlock(&l->lock);
    return n;
}

/* --- rates ------------------------------------------------------------------------------- */

bool limits_accept(struct limits *l, struct limit *e, const struct limit_rate *r, double now)
{
    bool ok = true;

    if (r->rate <= 0)
        return true;
    pthread_mutex_lock(&l->lock);
    bucket_refill(&e->accept, r, now);
    if (e->accept.tokens >= 1)
        e->accept.tokens -= 1;
    else
        ok = false;
    if (bucket_trivial(&e->accept, r, now))
        e->accept.used = false;
    pthread_mutex_unlock(&l->lock);
    return ok;
}

bool limits_auth_allowed(struct limits *l, struct limit *e, const struct limit_rate *r, double now)
{
    bool ok;

    if (r->rate <= 0)
        return true;
    pthread_mutex_lock(&l->lock);
    if (!e->auth.used) {
        ok = true;
    } else {
        bucket_refill(&e->auth, r, now);
        ok = e->auth.tokens >= 1;
        if (bucket_trivial(&e->auth, r, now))
            e->auth.used = false;
    }
    pthread_mutex_unlock(&l->lock);
    return ok;
}

enum limit_auth limits_auth_begin(struct limits *l, struct limit *client, const char *user,
                                  size_t user_len, const struct limit_auth_caps *caps, double now,
                                  struct limit_auth_ticket *t)
{
    const struct limit_rate *r = &caps->rate;
    enum limit_auth st = LIMIT_AUTH_OK;
    struct limit *u;

    memset(t, 0, sizeof(*t));
    pthread_mutex_lock(&l->lock);
    u = lookup(l, KIND_USER, (const unsigned char *)user, user_len);
    if (u == NULL) {
        pthread_mutex_unlock(&l->lock);
        return LIMIT_AUTH_NOMEM;
    }
    if (r->rate > 0)
        bucket_refill(&client->auth, r, now);
    if (r->rate > 0 && client->auth.tokens < 1)
        st = LIMIT_AUTH_RATE;
    else if ((caps->per_client > 0 && client->verifying >= caps->per_client) ||
             (caps->per_user > 0 && u->verifying >= caps->per_user))
        st = LIMIT_AUTH_BUSY;
    if (st == LIMIT_AUTH_OK) {
        /* The token is taken now, before the check: parallel guesses cannot all see one. */
        if (r->rate > 0)
            client->auth.tokens -= 1;
        client->verifying++;
        u->verifying++;
        client->refs++;
        t->limits = l;
        t->client = client;
        t->user = u;
        t->rate = *r;
    }
    pthread_mutex_unlock(&l->lock);
    if (st != LIMIT_AUTH_OK)
        limits_release(l, u);
    return st;
}

void limits_auth_end(struct limit_auth_ticket *t, bool refund, double now)
{
    struct limits *l = t->limits;

    if (l == NULL)
        return;
    pthread_mutex_lock(&l->lock);
    if (t->client->verifying > 0)
        t->client->verifying--;
    if (t->user->verifying > 0)
        t->user->verifying--;
    if (refund && t->rate.rate > 0) {
        bucket_refill(&t->client->auth, &t->rate, now);
        t->client->auth.tokens += 1;
        if (t->client->auth.tokens > t->rate.burst)
            t->client->auth.tokens = t->rate.burst;
        if (bucket_trivial(&t->client->auth, &t->rate, now))
            t->client->auth.used = false;
    }
    pthread_mutex_unlock(&l->lock);
    limits_release(l, t->user);
    limits_release(l, t->client);
    t->limits = NULL;
}

unsigned limits_auth_refused(struct limits *l, struct limit *e, double now, double interval,
                             bool *first)
{
    unsigned n = 0;

    pthread_mutex_lock(&l->lock);
    e->auth_refused++;
    *first = e->auth_noted == 0;
    if (*first || now - e->auth_noted >= interval) {
        n = e->auth_refused;
        e->auth_refused = 0;
        e->auth_noted = now > 0 ? now : 1e-9;
    }
    pthread_mutex_unlock(&l->lock);
    return n;
}

size_t limits_bandwidth_allow(struct limits *l, struct limit *e, enum limit_dir dir,
                              const struct limit_rate *r, size_t want, size_t min, double now,
                              double *wait)
{
    struct bucket *b = &e->bandwidth[dir];
    size_t allowed;

    *wait = 0;
    if (r->rate <= 0)
        return want;
    if ((double)min > r->burst)
        min = (size_t)r->burst;
    if (min == 0)
        min = 1;
    pthread_mutex_lock(&l->lock);
    bucket_refill(b, r, now);
    if (b->tokens < (double)min) {
        *wait = ((double)min - b->tokens) / r->rate;
        allowed = 0;
    } else {
        allowed = b->tokens < (double)want ? (size_t)b->tokens : want;
    }
    pthread_mutex_unlock(&l->lock);
    return allowed;
}

void limits_bandwidth_used(struct limits *l, struct limit *e, enum limit_dir dir,
                           const struct limit_rate *r, size_t n, double now)
{
    struct bucket *b = &e->bandwidth[dir];

    if (r->rate <= 0)
        return;
    pthread_mutex_lock(&l->lock);
    bucket_refill(b, r, now);
    /* Sessions of one entry on several workers may overdraw a little: that is debt. */
    b->tokens -= (double)n;
    pthread_mutex_unlock(&l->lock);
}

/* Move the quota period on to the one holding now. Caller holds the lock. */
static void quota_roll(struct limit *e, double period, double now)
{
    if (!e->quota_on) {
        e->quota_on = true;
        e->quota_start = now;
        e->quota_used = 0;
        return;
    }
    if (period > 0 && now >= e->quota_start + period) {
        double periods = (double)(long long)((now - e->quota_start) / period);
        e->quota_start += periods * period;
        e->quota_used = 0;
    }
}

uint64_t limits_quota_left(struct limits *l, struct limit *e, uint64_t quota, double period,
                           double now)
{
    uint64_t left;

    if (quota == 0)
        return UINT64_MAX;
    pthread_mutex_lock(&l->lock);
    quota_roll(e, period, now);
    left = e->quota_used < quota ? quota - e->quota_used : 0;
    pthread_mutex_unlock(&l->lock);
    return left;
}

void limits_quota_used(struct limits *l, struct limit *e, uint64_t quota, double period, uint64_t n,
                       double now)
{
    if (quota == 0)
        return;
    pthread_mutex_lock(&l->lock);
    quota_roll(e, period, now);
    e->quota_used += n;
    pthread_mutex_unlock(&l->lock);
}

/* --- a session's hold -------------------------------------------------------------------- */

/*
 * Whether a new session is dropped with `count` already negotiating (OpenSSH's MaxStartups):
 * never below start, with rate percent at start rising to 100 % at full, always from full on.
 */
static bool startups_drop(const struct limit_startups *s, unsigned count, double draw)
{
    double p;

    if (s == NULL || s->start == 0 || count < s->start)
        return false;
    if (count >= s->full)
        return true;
    p = (double)s->rate + (100.0 - s->rate) * (count - s->start) / (double)(s->full - s->start);
    return draw * 100.0 < p;
}

bool limits_hold_begin(struct limit_hold *h, struct limits *l, struct limit *client,
                       const struct limit_hold_caps *caps)
{
    unsigned per_client = caps->per_client;
    unsigned client_cap = per_client > 0 ? per_client + caps->client_margin : 0;
    unsigned nego_client = caps->negotiating_per_client;
    bool ok = false;

    memset(h, 0, sizeof(*h));
    pthread_mutex_lock(&l->lock);
    if (nego_client > 0 && client->negotiating >= nego_client) {
        h->refused = LIMIT_NEGOTIATING_CLIENT;
    } else if (startups_drop(caps->negotiating, l->negotiating, caps->draw)) {
        h->refused = LIMIT_NEGOTIATING;
    } else if (l->total >= caps->max_total + caps->total_margin) {
        h->refused = LIMIT_TOTAL;
    } else if (client_cap != 0 && client->sessions >= client_cap) {
        h->refused = LIMIT_CLIENT;
    } else {
        l->total++;
        client->sessions++;
        l->negotiating++;
        client->negotiating++;
        h->negotiating = true;
        ok = true;
        if (l->total > caps->max_total)
            h->refused = LIMIT_TOTAL;
        else if (per_client > 0 && client->sessions > per_client)
            h->refused = LIMIT_CLIENT;
    }
    pthread_mutex_unlock(&l->lock);
    if (!ok) {
        limits_release(l, client);
        return false;
    }
    h->limits = l;
    h->client = client;
    h->client_rate = caps->client_rate;
    h->user_rate = caps->user_rate;
    h->quota = caps->quota;
    h->quota_period = caps->quota_period;
    return true;
}

/* Caller holds the lock. */
static void hold_leave_negotiating(struct limit_hold *h)
{
    struct limits *l = h->limits;

    if (!h->negotiating)
        return;
    h->negotiating = false;
    if (h->client->negotiating > 0)
        h->client->negotiating--;
    if (l->negotiating > 0)
        l->negotiating--;
}

void limits_hold_negotiated(struct limit_hold *h)
{
    if (h->limits == NULL || !h->negotiating)
        return;
    pthread_mutex_lock(&h->limits->lock);
    hold_leave_negotiating(h);
    pthread_mutex_unlock(&h->limits->lock);
}

int limits_hold_user(struct limit_hold *h, const char *user, unsigned per_user)
{
    struct limits *l = h->limits;

    h->user = limits_user(l, user);
    if (h->user == NULL)
        return -1;
    pthread_mutex_lock(&l->lock);
    h->user->sessions++;
    if (per_user > 0 && h->user->sessions > per_user && h->refused == LIMIT_OK)
        h->refused = LIMIT_USER;
    pthread_mutex_unlock(&l->lock);
    return 0;
}

enum limit_refusal limits_hold_check(struct limit_hold *h, double now)
{
    if (h->refused == LIMIT_OK && h->user != NULL &&
        limits_quota_left(h->limits, h->user, h->quota, h->quota_period, now) == 0)
        h->refused = LIMIT_QUOTA;
    return h->refused;
}

int limits_hold_rule(struct limit_hold *h, unsigned generation, unsigned rule,
                     unsigned max_sessions, uint64_t bandwidth)
{
    if (h->rule != NULL || (max_sessions == 0 && bandwidth == 0))
        return 0;
    h->rule = limits_rule(h->limits, generation, rule);
    if (h->rule == NULL)
        return -1;
    if (!limits_session_enter(h->limits, h->rule, max_sessions)) {
        h->refused = LIMIT_RULE;
        return 1;
    }
    h->rule_counted = true;
    if (bandwidth > 0) {
        h->rule_rate.rate = (double)bandwidth;
        h->rule_rate.burst = (double)bandwidth / 10 > 16384 ? (double)bandwidth / 10 : 16384;
    }
    return 0;
}

bool limits_hold_udp(struct limit_hold *h, unsigned max_total, unsigned max_per_client)
{
    struct limits *l = h->limits;
    bool ok;

    if (h->udp_counted)
        return true;
    pthread_mutex_lock(&l->lock);
    ok = (max_total == 0 || l->udp_total < max_total) &&
         (max_per_client == 0 || h->client->udp < max_per_client);
    if (ok) {
        l->udp_total++;
        h->client->udp++;
    }
    pthread_mutex_unlock(&l->lock);
    h->udp_counted = ok;
    return ok;
}

bool limits_hold_auth_allowed(struct limit_hold *h, const struct limit_rate *r, double now)
{
    return limits_auth_allowed(h->limits, h->client, r, now);
}

enum limit_auth limits_hold_auth_begin(struct limit_hold *h, const char *user, size_t user_len,
                                       const struct limit_auth_caps *caps, double now,
                                       struct limit_auth_ticket *t)
{
    return limits_auth_begin(h->limits, h->client, user, user_len, caps, now, t);
}

unsigned limits_hold_auth_refused(struct limit_hold *h, double now, double interval, bool *first)
{
    return limits_auth_refused(h->limits, h->client, now, interval, first);
}

bool limits_hold_throttled(const struct limit_hold *h)
{
    return h->client_rate->rate > 0 || h->rule_rate.rate > 0 ||
           (h->user != NULL && (h->user_rate->rate > 0 || h->quota > 0));
}

/* One bucket's share of *allowed (see limits_bandwidth_allow). Caller holds the lock. */
static bool bucket_allow(struct bucket *b, const struct limit_rate *r, size_t *allowed, size_t min,
                         double now, double *wait)
{
    if (r->rate <= 0)
        return true;
    if ((double)min > r->burst)
        min = (size_t)r->burst;
    if (min == 0)
        min = 1;
    bucket_refill(b, r, now);
    if (b->tokens < (double)min) {
        *wait = ((double)min - b->tokens) / r->rate;
        return false;
    }
    if (b->tokens < (double)*allowed)
        *allowed = (size_t)b->tokens;
    return true;
}

ssize_t limits_hold_allow(struct limit_hold *h, enum limit_dir dir, size_t want, size_t min,
                          double now, double *wait)
{
    struct limits *l = h->limits;
    size_t allowed = want;
    ssize_t ret;

    *wait = 0;
    pthread_mutex_lock(&l->lock);
    if (!bucket_allow(&h->client->bandwidth[dir], h->client_rate, &allowed, min, now, wait) ||
        (h->user != NULL &&
         !bucket_allow(&h->user->bandwidth[dir], h->user_rate, &allowed, min, now, wait)) ||
        (h->rule != NULL &&
         !bucket_allow(&h->rule->bandwidth[dir], &h->rule_rate, &allowed, min, now, wait))) {
        ret = 0;
    } else if (h->user != NULL && h->quota > 0) {
        uint64_t left;

        quota_roll(h->user, h->quota_period, now);
        left = h->user->quota_used < h->quota ? h->quota - h->user->quota_used : 0;
        if (left < allowed)
            allowed = (size_t)left;
        ret = left == 0 ? -1 : (ssize_t)allowed;
    } else {
        ret = (ssize_t)allowed;
    }
    pthread_mutex_unlock(&l->lock);
    if (ret < 0)
        errno = EDQUOT;
    return ret;
}

/* Take n bytes from a bucket (sessions on several workers may overdraw: that is debt). */
static void bucket_take(struct bucket *b, const struct limit_rate *r, size_t n, double now)
{
    if (r->rate <= 0)
        return;
    bucket_refill(b, r, now);
    b->tokens -= (double)n;
}

void limits_hold_used(struct limit_hold *h, enum limit_dir dir, size_t n, double now)
{
    struct limits *l = h->limits;

    pthread_mutex_lock(&l->lock);
    bucket_take(&h->client->bandwidth[dir], h->client_rate, n, now);
    if (h->rule != NULL)
        bucket_take(&h->rule->bandwidth[dir], &h->rule_rate, n, now);
    if (h->user != NULL) {
        bucket_take(&h->user->bandwidth[dir], h->user_rate, n, now);
        if (h->quota > 0) {
            quota_roll(h->user, h->quota_period, now);
            h->user->quota_used += n;
        }
    }
    pthread_mutex_unlock(&l->lock);
}

void limits_hold_release(struct limit_hold *h)
{
    struct limits *l = h->limits;

    if (l == NULL)
        return;
    pthread_mutex_lock(&l->lock);
    hold_leave_negotiating(h);
    if (h->udp_counted) {
        if (h->client->udp > 0)
            h->client->udp--;
        if (l->udp_total > 0)
            l->udp_total--;
    }
    if (h->user != NULL && h->user->sessions > 0)
        h->user->sessions--;
    if (h->rule_counted && h->rule->sessions > 0)
        h->rule->sessions--;
    if (h->client->sessions > 0)
        h->client->sessions--;
    if (l->total > 0)
        l->total--;
    pthread_mutex_unlock(&l->lock);
    limits_release(l, h->user);
    limits_release(l, h->rule);
    limits_release(l, h->client);
    h->limits = NULL;
}
