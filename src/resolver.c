/*
 * Asynchronous name resolution: one c-ares channel per resolver, driven by the libev loop.
 *
 * - c-ares tells us which sockets to watch through ARES_OPT_SOCK_STATE_CB; we keep one ev_io per
 *   socket in a small list, and one ev_timer re-armed from ares_timeout() after every call into
 *   c-ares.
 * - Identical names in flight share one ares_getaddrinfo (an "inflight" entry); each lookup gets
 *   its own waiter (struct resolver_query) on that entry's list.
 * - No user callback ever runs inside c-ares or inside resolver_lookup: answers, cache hits, IP
 *   literals and bad names all move their waiters to a ready list that a zero-delay timer drains
 *   from the loop. That also covers c-ares 1.18 calling the getaddrinfo callback synchronously
 *   (hosts-file hits, some failures).
 *
 * Channel choices (see resolver_new):
 * - No search domains: ACL rules see the name that is actually queried, and an NXDOMAIN costs one
 *   query, not one per search domain. c-ares 1.18's getaddrinfo ignores ARES_FLAG_NOSEARCH, so
 *   we also pass an empty ARES_OPT_DOMAINS list, which is what takes effect.
 * - ARES_FLAG_STAYOPEN is not set: c-ares closes its sockets when no query is left, so the next
 *   burst gets a fresh UDP socket and source port (harder to spoof answers; one socket() more).
 * - The lookup order of resolv.conf is kept, so /etc/hosts is honoured (c-ares reads it on
 *   each lookup and answers hits inside ares_getaddrinfo).
 * - Names that cannot be put in a query (empty, over 253 bytes without a trailing dot, empty
 *   or 64+ byte labels, control characters, spaces, backslashes) fail with RESOLVER_BADNAME,
 *   still through the loop; so does a name c-ares refuses (ARES_EBADNAME).
 * - Answers are cached for min(TTL of every address and CNAME, max_ttl); NXDOMAIN and NODATA for
 *   negative_ttl (also capped by max_ttl); other failures are not cached.
 * - Reverse lookups (resolver_lookup_ptr) are one ares_gethostbyaddr each, neither cached nor
 *   merged, answered through the same ready list. c-ares tries the hosts file and DNS in the
 *   resolv.conf order and reports any DNS failure as ARES_ENOTFOUND, so a reverse lookup fails
 *   with NXDOMAIN whatever went wrong.
 */
#include "config.h"

#include <arpa/inet.h>
#include <ares.h>
#include <errno.h>
#include <ev.h>
#include <netdb.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ferry/metrics.h"
#include "ferry/resolver_cache.h"
#include "ferry/resolver.h"

#define INFLIGHT_MIN_BUCKETS 64
#define DNS_NAME_MAX 255
#define DNS_LABEL_MAX 63

/* A doubly linked ring with a sentinel, so that a node unlinks without knowing its list. */
struct qlink {
    struct qlink *prev, *next;
};

enum query_state {
    Q_WAITING, /* linked to an inflight entry */
    Q_READY,   /* result filled in, linked to the ready list (or a batch being delivered) */
    Q_RUNNING, /* its callback is running */
};

struct resolver_query {
    struct qlink link; /* first member: a qlink pointer is a query pointer */
    enum query_state state;
    resolver_cb cb;         /* forward lookup; NULL for a reverse one */
    resolver_ptr_cb ptr_cb; /* reverse lookup */
    void *arg;
    struct resolver_result res;      /* res.status is the status of a reverse lookup too */
    char ptr_name[DNS_NAME_MAX + 1]; /* reverse lookup answer */
};

/* One ares_getaddrinfo in flight, shared by every lookup of the same name. */
struct inflight {
    struct inflight *next; /* hash chain */
    struct resolver *r;
    size_t hash;
    struct qlink waiters;
    char *name;
    double started; /* ev_now when asked of a server */
};

/*
 * One ares_gethostbyaddr in flight. Its query is on `waiters` until it is answered or
 * cancelled; c-ares keeps the pointer, so this outlives a cancelled query.
 */
struct ptr_request {
    struct resolver *r;
    struct qlink waiters;
};

/* One ev_io per socket c-ares has asked us to watch. */
struct sock_watch {
    ev_io io; /* first member */
    struct sock_watch *next;
    struct resolver *r;
};

struct resolver {
    struct ev_loop *loop;
    ares_channel channel;
    bool channel_ok;
    struct sock_watch *socks;
    ev_timer ares_timer;  /* c-ares timeouts */
    ev_timer ready_timer; /* zero delay: delivers the ready list from the loop */
    struct qlink ready;
    struct inflight **buckets;
    size_t bucket_mask;
    size_t ninflight;
    struct resolver_cache *cache;
    double negative_ttl;
    double max_ttl;
    bool delivering;     /* inside on_ready_timer() */
    bool free_requested; /* resolver_free was called from a callback */
    bool destroying;     /* inside resolver_destroy: c-ares callbacks only clean up */
    struct metrics_worker *metrics; /* or NULL */
};

/* ---- lists ---------------------------------------------------------------------------------- */

static void qlist_init(struct qlink *head)
{
    head->prev = head;
    head->next = head;
}

static bool qlist_empty(const struct qlink *head)
{
    return head->next == head;
}

static void qlist_append(struct qlink *head, struct qlink *node)
{
    node->prev = head->prev;
    node->next = head;
    head->prev->next = node;
    head->prev = node;
}

static void qlist_unlink(struct qlink *node)
{
    node->prev->next = node->next;
    node->next->prev = node->prev;
    node->prev = node;
    node->next = node;
}

/* Move every node of src to the end of dst; src ends empty. */
static void qlist_splice(struct qlink *dst, struct qlink *src)
{
    if (qlist_empty(src))
        return;
    src->next->prev = dst->prev;
    dst->prev->next = src->next;
    src->prev->next = dst;
    dst->prev = src->prev;
    qlist_init(src);
}

static struct resolver_query *query_of(struct qlink *link)
{
    return (struct resolver_query *)(void *)link;
}

/* ---- names ---------------------------------------------------------------------------------- */

/*
 * A name we are willing to put in a query: printable ASCII other than space and backslash
 * (c-ares would read it as an escape), labels of 1..63 bytes, one trailing dot allowed, and
 * at most 255 bytes in wire form (RFC 1035 2.3.4: a length byte per label and the root's
 * zero), so at most 253 bytes of text without the trailing dot.
 */
static bool name_is_valid(const char *name)
{
    size_t len = strlen(name), label = 0;

    if (len == 0)
        return false;
    if (len + (name[len - 1] == '.' ? 1 : 2) > DNS_NAME_MAX)
        return false;
    if (strcmp(name, ".") == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c == '.') {
            if (label == 0)
                return false;
            label = 0;
            continue;
        }
        if (c <= 0x20 || c >= 0x7f || c == '\\')
            return false;
        if (++label > DNS_LABEL_MAX)
            return false;
    }
    return true;
}

/* ---- results -------------------------------------------------------------------------------- */

static void result_fail(struct resolver_result *res, enum resolver_status status)
{
    res->status = status;
    res->count = 0;
}

/* Fill res from an IP literal; false when name is not one. */
static bool result_from_literal(struct resolver_result *res, const char *name)
{
    uint8_t buf[16];

    if (inet_pton(AF_INET, name, buf) == 1) {
        addr_from_ipv4(&res->addrs[0], buf, 0);
    } else if (inet_pton(AF_INET6, name, buf) == 1) {
        addr_from_ipv6(&res->addrs[0], buf, 0);
    } else {
        return false;
    }
    res->status = RESOLVER_OK;
    res->count = 1;
    return true;
}

static enum resolver_status map_ares_status(int status)
{
    switch (status) {
    case ARES_SUCCESS:
        return RESOLVER_OK;
    case ARES_ENOTFOUND:
        return RESOLVER_NXDOMAIN;
    case ARES_ENODATA:
        return RESOLVER_NODATA;
    case ARES_ETIMEOUT:
        return RESOLVER_TIMEOUT;
    case ARES_ESERVFAIL:
    case ARES_EREFUSED:
    case ARES_EBADRESP:
    case ARES_ECONNREFUSED:
    case ARES_EFORMERR:
        return RESOLVER_SERVFAIL;
    case ARES_EBADNAME:
        return RESOLVER_BADNAME;
    default:
        return RESOLVER_ERROR;
    }
}

/*
 * Copy the addresses of a c-ares answer into res. When there are more than RESOLVER_MAX_ADDRS,
 * keep both families: each gets at least half the room, and what one leaves unused goes to the
 * other. Order within a family is kept. Returns the smallest TTL seen (addresses and CNAMEs).
 */
static int result_from_answer(struct resolver_result *res, const struct ares_addrinfo *ai)
{
    size_t n4 = 0, n6 = 0, k4, k6, room6;
    int ttl = INT32_MAX;

    for (const struct ares_addrinfo_node *n = ai->nodes; n != NULL; n = n->ai_next) {
        if (n->ai_addr == NULL)
            continue;
        if (n->ai_family == AF_INET)
            n4++;
        else if (n->ai_family == AF_INET6)
            n6++;
        else
            continue;
        if (n->ai_ttl < ttl)
            ttl = n->ai_ttl;
    }
    for (const struct ares_addrinfo_cname *cn = ai->cnames; cn != NULL; cn = cn->next) {
        if (cn->ttl < ttl)
            ttl = cn->ttl;
    }
    room6 = n4 < RESOLVER_MAX_ADDRS / 2 ? RESOLVER_MAX_ADDRS - n4 : RESOLVER_MAX_ADDRS / 2;
    k6 = n6 < room6 ? n6 : room6;
    k4 = n4 < RESOLVER_MAX_ADDRS - k6 ? n4 : RESOLVER_MAX_ADDRS - k6;

    res->count = 0;
    for (const struct ares_addrinfo_node *n = ai->nodes; n != NULL; n = n->ai_next) {
        size_t *left = n->ai_family == AF_INET ? &k4 : n->ai_family == AF_INET6 ? &k6 : NULL;
        if (n->ai_addr == NULL || left == NULL || *left == 0)
            continue;
        if (addr_from_sockaddr(&res->addrs[res->count], n->ai_addr, (socklen_t)n->ai_addrlen) < 0)
            continue;
        addr_set_port(&res->addrs[res->count], 0);
        res->count++;
        (*left)--;
    }
    res->status = res->count > 0 ? RESOLVER_OK : RESOLVER_NODATA;
    return ttl;
}

/* ---- ready list ----------------------------------------------------------------------------- */

static void make_ready(struct resolver *r, struct resolver_query *q)
{
    q->state = Q_READY;
    qlist_append(&r->ready, &q->link);
    if (!ev_is_active(&r->ready_timer)) {
        ev_timer_set(&r->ready_timer, 0., 0.);
        ev_timer_start(r->loop, &r->ready_timer);
    }
}

static void free_query_list(struct qlink *head)
{
    while (!qlist_empty(head)) {
        struct qlink *l = head->next;
        qlist_unlink(l);
        free(query_of(l));
    }
}

static void resolver_destroy(struct resolver *r);

/*
 * Run the callbacks of the queries that were ready when the timer fired. Queries made ready by
 * those callbacks wait for the next round, so a callback that keeps looking up cached names
 * cannot starve the loop. A callback may cancel any query, look up names, or free the resolver.
 */
static void on_ready_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct resolver *r = w->data;
    struct qlink batch;

    (void)loop;
    (void)revents;
    qlist_init(&batch);
    qlist_splice(&batch, &r->ready);
    r->delivering = true;
    while (!qlist_empty(&batch) && !r->free_requested) {
        struct resolver_query *q = query_of(batch.next);
        qlist_unlink(&q->link);
        q->state = Q_RUNNING;
        if (q->cb != NULL)
            q->cb(&q->res, q->arg);
        else
            q->ptr_cb(q->res.status, q->res.status == RESOLVER_OK ? q->ptr_name : NULL, q->arg);
        free(q);
    }
    r->delivering = false;
    free_query_list(&batch);
    if (r->free_requested)
        resolver_destroy(r);
}

/* ---- c-ares in libev ------------------------------------------------------------------------ */

static void rearm_ares_timer(struct resolver *r)
{
    struct timeval tv, *tvp;
    double after;

    ev_timer_stop(r->loop, &r->ares_timer);
    tvp = ares_timeout(r->channel, NULL, &tv);
    if (tvp == NULL)
        return;
    after = (double)tvp->tv_sec + (double)tvp->tv_usec / 1e6;
    /* c-ares rounds to milliseconds: never spin on a timeout it does not consider due yet. */
    if (after < 0.001)
        after = 0.001;
    ev_timer_set(&r->ares_timer, after, 0.);
    ev_timer_start(r->loop, &r->ares_timer);
}

static void on_ares_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct resolver *r = w->data;

    (void)loop;
    (void)revents;
    ares_process_fd(r->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    rearm_ares_timer(r);
}

static void on_sock_io(struct ev_loop *loop, ev_io *w, int revents)
{
    struct sock_watch *sw = (struct sock_watch *)(void *)w;
    struct resolver *r = sw->r;
    int fd = w->fd;

    (void)loop;
    /* sw may be freed by the socket state callback inside ares_process_fd. */
    ares_process_fd(r->channel, (revents & EV_READ) ? fd : ARES_SOCKET_BAD,
                    (revents & EV_WRITE) ? fd : ARES_SOCKET_BAD);
    rearm_ares_timer(r);
}

/* c-ares opens, changes or closes a socket: start, change or stop its watcher. */
static void on_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    struct resolver *r = data;
    struct sock_watch **pp = &r->socks, *sw;
    int events = (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0);

    while (*pp != NULL && (*pp)->io.fd != fd)
        pp = &(*pp)->next;
    sw = *pp;

    if (events == 0) {
        if (sw != NULL) {
            ev_io_stop(r->loop, &sw->io);
            *pp = sw->next;
            free(sw);
        }
        return;
    }
    if (sw == NULL) {
        /* Without memory the socket goes unwatched; the query then ends by timing out. */
        sw = calloc(1, sizeof(*sw));
        if (sw == NULL)
            return;
        sw->r = r;
        ev_io_init(&sw->io, on_sock_io, fd, events);
        sw->next = r->socks;
        r->socks = sw;
        ev_io_start(r->loop, &sw->io);
        return;
    }
    if ((sw->io.events & (EV_READ | EV_WRITE)) != events) {
        ev_io_stop(r->loop, &sw->io);
        ev_io_set(&sw->io, fd, events);
        ev_io_start(r->loop, &sw->io);
    }
}

/* ---- in-flight table ------------------------------------------------------------------------ */

static struct inflight *inflight_find(struct resolver *r, const char *name, size_t hash)
{
    for (struct inflight *f = r->buckets[hash & r->bucket_mask]; f != NULL; f = f->next) {
        if (f->hash == hash && strcasecmp(f->name, name) == 0)
            return f;
    }
    return NULL;
}

/* Double the table when it holds more entries than buckets; on ENOMEM just keep the old one. */
static void inflight_grow(struct resolver *r)
{
    size_t n = (r->bucket_mask + 1) * 2;
    struct inflight **b = calloc(n, sizeof(*b));

    if (b == NULL)
        return;
    for (size_t i = 0; i <= r->bucket_mask; i++) {
        while (r->buckets[i] != NULL) {
            struct inflight *f = r->buckets[i];
            r->buckets[i] = f->next;
            f->next = b[f->hash & (n - 1)];
            b[f->hash & (n - 1)] = f;
        }
    }
    free(r->buckets);
    r->buckets = b;
    r->bucket_mask = n - 1;
}

static void inflight_insert(struct resolver *r, struct inflight *f)
{
    if (r->ninflight >= r->bucket_mask + 1)
        inflight_grow(r);
    f->next = r->buckets[f->hash & r->bucket_mask];
    r->buckets[f->hash & r->bucket_mask] = f;
    r->ninflight++;
}

static void inflight_remove(struct resolver *r, struct inflight *f)
{
    struct inflight **pp = &r->buckets[f->hash & r->bucket_mask];

    while (*pp != f)
        pp = &(*pp)->next;
    *pp = f->next;
    r->ninflight--;
}

static void inflight_free(struct inflight *f)
{
    free_query_list(&f->waiters);
    free(f->name);
    free(f);
}

/*
 * The answer to one ares_getaddrinfo: cache it and hand it to every live waiter through the
 * ready list. Runs inside c-ares (ares_process_fd, ares_getaddrinfo or ares_destroy).
 */
static void on_ares_answer(void *arg, int status, int timeouts, struct ares_addrinfo *ai)
{
    struct inflight *f = arg;
    struct resolver *r = f->r;
    struct resolver_result res;
    double ttl = 0;

    (void)timeouts;
    if (r->destroying) {
        /* resolver_destroy frees f after ares_destroy returns. */
        if (ai != NULL)
            ares_freeaddrinfo(ai);
        return;
    }

    res.count = 0;
    if (status == ARES_SUCCESS && ai != NULL) {
        int min_ttl = result_from_answer(&res, ai);
        if (res.status == RESOLVER_OK)
            ttl = min_ttl;
        else
            ttl = r->negative_ttl;
    } else {
        result_fail(&res, map_ares_status(status));
        if (res.status == RESOLVER_NXDOMAIN || res.status == RESOLVER_NODATA)
            ttl = r->negative_ttl;
    }
    if (ai != NULL)
        ares_freeaddrinfo(ai);
    if (r->metrics != NULL) {
        ev_now_update(r->loop);
        metrics_dns_latency(r->metrics, ev_now(r->loop) - f->started);
        if (res.status != RESOLVER_OK)
            metrics_add(&r->metrics->dns_failures, 1);
    }
    if (ttl > r->max_ttl)
        ttl = r->max_ttl;
    if (r->cache != NULL && ttl > 0)
        resolver_cache_put(r->cache, f->name, &res, ttl, ev_now(r->loop));

    inflight_remove(r, f);
    while (!qlist_empty(&f->waiters)) {
        struct resolver_query *q = query_of(f->waiters.next);
        qlist_unlink(&q->link);
        q->res = res;
        make_ready(r, q);
    }
    inflight_free(f);
}

/* ---- public --------------------------------------------------------------------------------- */

/* The servers in the text form c-ares reads: "127.0.0.1:5353,[::1]:53". */
static int set_servers(struct resolver *r, const struct addr *servers, size_t n, char *err,
                       size_t errlen)
{
    size_t cap = n * (ADDR_STRLEN + 1), out = 0;
    char *csv = malloc(cap);
    int rc;

    if (csv == NULL) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "resolver: out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (out > 0)
            csv[out++] = ',';
        addr_format(&servers[i], csv + out, cap - out);
        out += strlen(csv + out);
    }
    rc = ares_set_servers_ports_csv(r->channel, csv);
    if (rc != ARES_SUCCESS && err != NULL && errlen > 0)
        snprintf(err, errlen, "resolver: bad DNS server list \"%s\": %s", csv, ares_strerror(rc));
    free(csv);
    return rc == ARES_SUCCESS ? 0 : -1;
}

static int library_status = ARES_SUCCESS;

/* ares_library_init is not thread-safe; workers on threads may create resolvers at once. */
static void library_init_once(void)
{
    library_status = ares_library_init(ARES_LIB_INIT_ALL);
}

struct resolver *resolver_new(struct ev_loop *loop, const struct resolver_options *opt, char *err,
                              size_t errlen)
{
    static pthread_once_t library_once = PTHREAD_ONCE_INIT;
    struct ares_options ao;
    int optmask, rc;
    struct resolver *r;

    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (loop == NULL || opt == NULL) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "resolver: no loop or options");
        errno = EINVAL;
        return NULL;
    }
    pthread_once(&library_once, library_init_once);
    if (library_status != ARES_SUCCESS) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "resolver: c-ares init: %s", ares_strerror(library_status));
        return NULL;
    }

    r = calloc(1, sizeof(*r));
    if (r == NULL)
        goto nomem;
    r->loop = loop;
    r->negative_ttl = opt->negative_ttl;
    r->max_ttl = opt->max_ttl;
    r->metrics = opt->metrics;
    qlist_init(&r->ready);
    ev_timer_init(&r->ares_timer, on_ares_timer, 0., 0.);
    r->ares_timer.data = r;
    ev_timer_init(&r->ready_timer, on_ready_timer, 0., 0.);
    r->ready_timer.data = r;
    r->buckets = calloc(INFLIGHT_MIN_BUCKETS, sizeof(*r->buckets));
    if (r->buckets == NULL)
        goto nomem;
    r->bucket_mask = INFLIGHT_MIN_BUCKETS - 1;
    if (opt->cache_size > 0) {
        r->cache = resolver_cache_new(opt->cache_size);
        if (r->cache == NULL)
            goto nomem;
    }

    memset(&ao, 0, sizeof(ao));
    optmask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_FLAGS | ARES_OPT_DOMAINS;
    ao.sock_state_cb = on_sock_state;
    ao.sock_state_cb_data = r;
    ao.flags = ARES_FLAG_NOSEARCH;
    ao.domains = NULL;
    ao.ndomains = 0;
    if (opt->timeout > 0) {
        double ms = opt->timeout * 1000.0 + 0.5;
        ao.timeout = ms < 1 ? 1 : ms > 3600000 ? 3600000 : (int)ms;
        optmask |= ARES_OPT_TIMEOUTMS;
    }
    if (opt->tries > 0) {
        ao.tries = opt->tries;
        optmask |= ARES_OPT_TRIES;
    }
    rc = ares_init_options(&r->channel, &ao, optmask);
    if (rc != ARES_SUCCESS) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "resolver: c-ares channel: %s", ares_strerror(rc));
        goto fail;
    }
    r->channel_ok = true;
    if (opt->nservers > 0 && set_servers(r, opt->servers, opt->nservers, err, errlen) < 0)
        goto fail;
    return r;

nomem:
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "resolver: out of memory");
fail:
    if (r != NULL)
        resolver_destroy(r);
    return NULL;
}

/* Free everything without running a single user callback. */
static void resolver_destroy(struct resolver *r)
{
    r->destroying = true;
    free_query_list(&r->ready);
    for (size_t i = 0; i <= r->bucket_mask && r->buckets != NULL; i++) {
        for (struct inflight *f = r->buckets[i]; f != NULL; f = f->next)
            free_query_list(&f->waiters);
    }
    /* Calls on_ares_answer with ARES_EDESTRUCTION for every query, and closes the sockets. */
    if (r->channel_ok)
        ares_destroy(r->channel);
    while (r->socks != NULL) {
        struct sock_watch *sw = r->socks;
        r->socks = sw->next;
        ev_io_stop(r->loop, &sw->io);
        free(sw);
    }
    ev_timer_stop(r->loop, &r->ares_timer);
    ev_timer_stop(r->loop, &r->ready_timer);
    for (size_t i = 0; i <= r->bucket_mask && r->buckets != NULL; i++) {
        while (r->buckets[i] != NULL) {
            struct inflight *f = r->buckets[i];
            r->buckets[i] = f->next;
            inflight_free(f);
        }
    }
    free(r->buckets);
    resolver_cache_free(r->cache);
    free(r);
}

void resolver_free(struct resolver *r)
{
    if (r == NULL)
        return;
    if (r->delivering) {
        /* Called from a callback: on_ready_timer stops delivering and finishes the job. */
        r->free_requested = true;
        return;
    }
    resolver_destroy(r);
}

struct resolver_query *resolver_lookup(struct resolver *r, const char *name, resolver_cb cb,
                                       void *arg)
{
    struct resolver_query *q;
    struct inflight *f;
    struct ares_addrinfo_hints hints;
    size_t hash, len;

    if (r == NULL || name == NULL || cb == NULL) {
        errno = EINVAL;
        return NULL;
    }
    if (r->free_requested) {
        errno = ECANCELED;
        return NULL;
    }
    q = malloc(sizeof(*q));
    if (q == NULL)
        return NULL;
    q->cb = cb;
    q->arg = arg;
    q->res.status = RESOLVER_ERROR;
    q->res.count = 0;
    qlist_init(&q->link);

    if (!name_is_valid(name)) {
        result_fail(&q->res, RESOLVER_BADNAME);
        make_ready(r, q);
        return q;
    }
    if (result_from_literal(&q->res, name)) {
        make_ready(r, q);
        return q;
    }
    if (r->cache != NULL && resolver_cache_get(r->cache, name, ev_now(r->loop), &q->res)) {
        if (r->metrics != NULL)
            metrics_add(&r->metrics->dns_cache_hits, 1);
        make_ready(r, q);
        return q;
    }

    hash = resolver_cache_hash(name);
    f = inflight_find(r, name, hash);
    if (f != NULL) {
        q->state = Q_WAITING;
        qlist_append(&f->waiters, &q->link);
        return q;
    }

    f = calloc(1, sizeof(*f));
    len = strlen(name);
    if (f == NULL || (f->name = malloc(len + 1)) == NULL) {
        free(f);
        free(q);
        errno = ENOMEM;
        return NULL;
    }
    memcpy(f->name, name, len + 1);
    f->r = r;
    f->hash = hash;
    f->started = ev_now(r->loop);
    if (r->metrics != NULL)
        metrics_add(&r->metrics->dns_queries, 1);
    qlist_init(&f->waiters);
    q->state = Q_WAITING;
    qlist_append(&f->waiters, &q->link);
    inflight_insert(r, f);

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_flags = ARES_AI_NOSORT;
    /* May call on_ares_answer right away (hosts file, bad name, no memory): f is then gone. */
    ares_getaddrinfo(r->channel, name, NULL, &hints, on_ares_answer, f);
    rearm_ares_timer(r);
    return q;
}

/*
 * The answer to one ares_gethostbyaddr: hand it to the query, unless that was cancelled. Runs
 * inside c-ares (ares_process_fd, ares_gethostbyaddr or ares_destroy).
 */
static void on_ptr_answer(void *arg, int status, int timeouts, struct hostent *host)
{
    struct ptr_request *pr = arg;
    struct resolver *r = pr->r;
    struct resolver_query *q;
    size_t len;

    (void)timeouts;
    if (r->destroying || qlist_empty(&pr->waiters)) {
        free_query_list(&pr->waiters);
        free(pr);
        return;
    }
    q = query_of(pr->waiters.next);
    qlist_unlink(&q->link);
    free(pr);
    q->res.status = map_ares_status(status);
    if (status == ARES_SUCCESS) {
        len = host != NULL && host->h_name != NULL ? strlen(host->h_name) : 0;
        /* An empty or overlong name cannot be handed on: an answer we cannot use. */
        if (len == 0 || len > DNS_NAME_MAX) {
            q->res.status = RESOLVER_SERVFAIL;
        } else {
            memcpy(q->ptr_name, host->h_name, len + 1);
        }
    }
    make_ready(r, q);
}

struct resolver_query *resolver_lookup_ptr(struct resolver *r, const struct addr *a,
                                           resolver_ptr_cb cb, void *arg)
{
    struct resolver_query *q;
    struct ptr_request *pr;
    uint8_t ip[16];
    int family;
    size_t iplen;

    if (r == NULL || a == NULL || cb == NULL) {
        errno = EINVAL;
        return NULL;
    }
    if (r->free_requested) {
        errno = ECANCELED;
        return NULL;
    }
    q = calloc(1, sizeof(*q));
    if (q == NULL)
        return NULL;
    q->ptr_cb = cb;
    q->arg = arg;
    q->res.status = RESOLVER_ERROR;
    qlist_init(&q->link);

    family = addr_family(a);
    if (addr_ipv4_bytes(a) != NULL) {
        /* ::ffff:192.0.2.1 has the PTR record of 192.0.2.1, not an ip6.arpa one. */
        memcpy(ip, addr_ipv4_bytes(a), 4);
        family = AF_INET;
        iplen = 4;
    } else if (family == AF_INET6) {
        memcpy(ip, a->u.in6.sin6_addr.s6_addr, 16);
        iplen = 16;
    } else {
        make_ready(r, q);
        return q;
    }

    pr = malloc(sizeof(*pr));
    if (pr == NULL) {
        free(q);
        errno = ENOMEM;
        return NULL;
    }
    pr->r = r;
    qlist_init(&pr->waiters);
    q->state = Q_WAITING;
    qlist_append(&pr->waiters, &q->link);
    /* May call on_ptr_answer right away (hosts file): q is then on the ready list. */
    ares_gethostbyaddr(r->channel, ip, (int)iplen, family, on_ptr_answer, pr);
    rearm_ares_timer(r);
    return q;
}

void resolver_cancel(struct resolver_query *q)
{
    if (q == NULL || q->state == Q_RUNNING)
        return;
    /* Waiting or ready, the query is on some list; its inflight entry keeps going for the cache. */
    qlist_unlink(&q->link);
    free(q);
}

const char *resolver_status_name(enum resolver_status status)
{
    switch (status) {
    case RESOLVER_OK:
        return "ok";
    case RESOLVER_NXDOMAIN:
        return "nxdomain";
    case RESOLVER_NODATA:
        return "nodata";
    case RESOLVER_TIMEOUT:
        return "timeout";
    case RESOLVER_SERVFAIL:
        return "servfail";
    case RESOLVER_BADNAME:
        return "badname";
    case RESOLVER_ERROR:
        return "error";
    }
    return "unknown";
}
