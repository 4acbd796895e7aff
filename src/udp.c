/*
 * UDP ASSOCIATE (RFC 1928 section 7): the datagram relay of one association.
 *
 * Sockets: one client-facing socket bound to params->local (port from `udp port-range`), and
 * one outbound socket per address family, opened on the first datagram to that family and
 * bound to the wildcard address with an ephemeral port.
 *
 * Client binding: only datagrams from the client's IP (the TCP control connection's peer) are
 * taken. When the request named a port (params->client_port), only that port: it is pinned
 * before any datagram arrives, so nobody else on the client's host or behind its NAT can take
 * the association. With port 0 the first datagram from the client's IP fixes the port, and the
 * rest from other ports are strangers. Replies go to that address; until the client has sent
 * anything there is nowhere to deliver them, so they are dropped and counted as drop_filtered.
 *
 * Filtering of replies (RFC 4787 section 5): with `udp filter address` (the default) a target's
 * datagram is relayed only when the client has sent to its IP (any port) through this
 * association (address-dependent); with `udp filter address-port` only when it has sent to
 * that IP and port (address and port-dependent). Both keep the last UDP_PEERS_MAX destinations,
 * oldest evicted first. With `udp filter any` every sender is relayed (endpoint-independent).
 *
 * Names: a datagram to a name waits in a small per-association queue while the shared resolver
 * works; every datagram waiting for that name is then sent to one address: the first IPv4
 * address of the answer, or the first address when there is no IPv4 one (IPv4 first because
 * it is what a client's UDP peer most likely answers on, and one name should mean one peer for
 * the reply filter). The answer is remembered for UDP_NAME_TTL seconds in a handful of slots so
 * a stream of datagrams to one name does not ask the resolver each time.
 *
 * Nothing a datagram holds tears the association down: every bad datagram is dropped and
 * counted. A readiness event handles at most UDP_BATCH datagrams so a flood cannot starve the
 * rest of the loop. Datagrams are read UDP_MMSG at a time with recvmmsg(2) into the loop's
 * batch buffers and sent on with sendmmsg(2), one call per run of datagrams to the same
 * socket, so a busy association costs a few system calls per batch rather than two per
 * datagram. A run that goes to one address in equal sizes (the last may be shorter) goes
 * as one UDP_SEGMENT (GSO) send instead: the kernel routes it once and cuts it into the same
 * datagrams (less CPU per datagram: bench/README). Where the kernel refuses that (a size over the
 * route's MTU: EMSGSIZE, or EINVAL on older kernels; no checksum offload: EIO), the run goes by
 * sendmmsg, which fragments, and the worker stops trying that size and larger, or segmentation at
 * all.
 */
#include "config.h"

#include <errno.h>
#include <ev.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ferry/log.h"
#include "ferry/net.h"
#include "ferry/resolver.h"
#include "ferry/socks5.h"
#include "ferry/udp.h"

#define UDP_BATCH 64               /* datagrams per readiness event */
#define UDP_MMSG 16                /* datagrams per recvmmsg/sendmmsg call */
#define UDP_PEERS_MAX 64           /* destinations remembered for the reply filter */
#define UDP_NAMES_MAX 8            /* names remembered per association */
#define UDP_NAME_TTL 60.0          /* seconds a resolved name is remembered */
#define UDP_QUEUE_MAX 16           /* datagrams waiting for names, per association */
#define UDP_QUEUE_BYTES 65536      /* payload bytes waiting for names, per association */
#define UDP_DATAGRAM_MAX 65535     /* largest datagram we read */
#define UDP_REPLY_HEADER_MAX 22    /* socks5_encode_udp_header: IPv6 header */
#define UDP_GSO_TOTAL_MAX 65487    /* one segmented send: 65535 less IPv6 and UDP headers */
#define UDP_PAYLOAD_MAX_IPV4 65507 /* 65535 - 20 (IPv4) - 8 (UDP) */
#define UDP_PAYLOAD_MAX_IPV6 65527 /* 65535 - 8 (UDP): IPv6's length excludes its header */

/* A datagram waiting for its destination name to resolve. */
struct udp_queued {
    struct udp_queued *next;
    uint16_t port;
    size_t len;
    uint8_t data[];
};

/* One name being resolved, with the datagrams waiting for it. */
struct udp_pending {
    struct udp_pending *next;
    struct udp_assoc *assoc;
    struct resolver_query *query;
    struct udp_queued *head, *tail;
    char name[DEST_NAME_MAX + 1];
};

struct udp_name {
    char name[DEST_NAME_MAX + 1]; /* empty: free slot */
    struct addr addr;             /* port 0 */
    double expires;
};

/* One side's sealing (udp.h: sealed_client, sealed_upstream). */
struct udp_seal {
    bool on;
    struct tunnel_udp_dir tx; /* toward the other ferry */
    struct tunnel_udp_dir rx; /* from it */
};

/* One outbound socket (-1 until the first datagram to its family). */
struct udp_out {
    int fd;
    ev_io io;
    struct udp_assoc *assoc;
};

struct udp_assoc {
    struct ev_loop *loop;
    struct resolver *resolver;
    struct udp_batch *batch;
    enum udp_filter filter;
    udp_policy_cb policy;
    void *policy_arg;

    struct addr client;   /* the client's IP (port unused) */
    uint16_t client_port; /* fixed by the request, or 0 */
    bool client_known;    /* client_addr holds where to send replies */
    struct addr client_addr;

    struct addr upstream; /* a parent's relay, or len 0 (udp.h) */
    struct addr upstream_local;
    struct addr local;
    int client_fd;
    ev_io client_io;
    struct udp_out out4, out6;

    struct addr peers[UDP_PEERS_MAX]; /* ring of destinations the client sent to */
    size_t npeers, peers_next;

    struct udp_name names[UDP_NAMES_MAX];
    struct udp_pending *pending;
    size_t queued, queued_bytes;

    struct udp_seal seal_client; /* a tunnel's association (udp.h) */
    struct udp_seal seal_up;

    double last_activity;
    struct udp_stats stats;
};

static void touch(struct udp_assoc *a)
{
    a->last_activity = ev_now(a->loop);
}

/* Room before a datagram read: the reply header we prepend, and a tunnel's sealed head. */
#define UDP_HEADROOM (UDP_REPLY_HEADER_MAX + TUNNEL_UDP_HEAD)
/* A datagram slot: the headroom, the datagram as read, room for a tunnel's tag after it. */
#define UDP_SLOT (UDP_HEADROOM + UDP_DATAGRAM_MAX + 1 + TUNNEL_UDP_TAG)

/*
 * The loop's batch buffers (callbacks never nest). Datagrams are read into slots after
 * UDP_HEADROOM bytes of room, so a reply's header and payload go out in one send
 * without a copy, and a tunnel's datagrams are sealed and opened in place. Sends queue in `out`
 * until udp_flush: all to one socket, for one association, pointing into the slots or into a name's
 * queue, which stay until the flush. The slots are one large allocation whose pages the kernel
 * touches only as datagrams fill them.
 */
struct udp_batch {
    struct mmsghdr in[UDP_MMSG];
    struct iovec in_iov[UDP_MMSG];
    struct addr in_from[UDP_MMSG];
    struct mmsghdr out[UDP_MMSG];
    struct iovec out_iov[UDP_MMSG];
    struct addr out_to[UDP_MMSG];
    size_t out_payload[UDP_MMSG]; /* payload bytes of each queued send, for the counters */
    size_t nout;
    int out_fd;
    bool out_down; /* the queued sends go to the client (else to targets) */
    struct udp_assoc *out_assoc;
    size_t gso_max; /* the largest datagram a segmented send is tried for; 0: never */
    uint8_t *slots; /* UDP_MMSG * UDP_SLOT */
};

struct udp_batch *udp_batch_new(void)
{
    struct udp_batch *b = calloc(1, sizeof(*b));

    if (b == NULL)
        return NULL;
    b->slots = malloc((size_t)UDP_MMSG * UDP_SLOT);
    if (b->slots == NULL) {
        free(b);
        return NULL;
    }
    for (size_t i = 0; i < UDP_MMSG; i++) {
        b->in_iov[i].iov_base = b->slots + i * UDP_SLOT + UDP_HEADROOM;
        b->in_iov[i].iov_len = UDP_DATAGRAM_MAX + 1;
    }
    b->out_fd = -1;
#ifdef UDP_SEGMENT
    b->gso_max = UDP_DATAGRAM_MAX;
#endif
    return b;
}

void udp_batch_free(struct udp_batch *b)
{
    if (b == NULL)
        return;
    free(b->slots);
    free(b);
}

/* Count n sent datagrams from queue index first on. */
static void udp_count_sent(struct udp_batch *b, size_t first, size_t n)
{
    struct udp_assoc *a = b->out_assoc;

    for (size_t i = first; i < first + n; i++) {
        if (b->out_down) {
            a->stats.down_packets++;
            a->stats.down_bytes += b->out_payload[i];
        } else {
            a->stats.up_packets++;
            a->stats.up_bytes += b->out_payload[i];
        }
    }
    touch(a);
}

/* True when the queue can go as one segmented send: two or more datagrams, one address, all
 * of one non-zero size but the last, which may be shorter. */
static bool udp_segmentable(const struct udp_batch *b)
{
    size_t size = b->out_iov[0].iov_len, total = size;

    if (b->nout < 2 || size == 0 || size > b->gso_max)
        return false;
    for (size_t i = 1; i < b->nout; i++) {
        size_t len = b->out_iov[i].iov_len;

        if (len != size && !(i == b->nout - 1 && len > 0 && len < size))
            return false;
        if (!addr_equal(&b->out_to[i], &b->out_to[0]))
            return false;
        total += len;
    }
    return total <= UDP_GSO_TOTAL_MAX;
}

/*
 * Send the whole queue as one UDP_SEGMENT send. False when it did not go: the queue is then
 * sent datagram by datagram (where a full socket drops it, as for any batch).
 */
static bool udp_send_segmented(struct udp_batch *b)
{
#ifdef UDP_SEGMENT
    union {
        char buf[CMSG_SPACE(sizeof(uint16_t))];
        struct cmsghdr align;
    } control;
    uint16_t size = (uint16_t)b->out_iov[0].iov_len;
    struct msghdr msg = b->out[0].msg_hdr;
    struct cmsghdr *cm;
    ssize_t n;

    memset(&control, 0, sizeof(control));
    msg.msg_iov = b->out_iov; /* the datagrams one after the other: the kernel cuts them */
    msg.msg_iovlen = b->nout;
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof(control.buf);
    cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_UDP;
    cm->cmsg_type = UDP_SEGMENT;
    cm->cmsg_len = CMSG_LEN(sizeof(size));
    memcpy(CMSG_DATA(cm), &size, sizeof(size));
    do {
        n = sendmsg(b->out_fd, &msg, 0);
    } while (n < 0 && errno == EINTR);
    if (n >= 0)
        return true;
    if (errno == EMSGSIZE || errno == EINVAL)
        b->gso_max = (size_t)size - 1; /* over the route's MTU (older kernels: EINVAL) */
    else if (errno == EIO || errno == EOPNOTSUPP || errno == ENOPROTOOPT)
        b->gso_max = 0; /* no segmentation offload here */
    return false;
#else
    (void)b;
    return false;
#endif
}

/* Send what is queued; each datagram the kernel refuses is dropped and counted. */
static void udp_flush(struct udp_batch *b)
{
    struct udp_assoc *a = b->out_assoc;
    size_t done = 0;

    if (udp_segmentable(b) && udp_send_segmented(b)) {
        udp_count_sent(b, 0, b->nout);
        done = b->nout;
    }
    while (done < b->nout) {
        int n = sendmmsg(b->out_fd, b->out + done, (unsigned)(b->nout - done), 0);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            /* The socket is full (EAGAIN, ENOBUFS): the rest would fail as well, so all of it
             * is dropped. Any other error (unreachable...) is the first datagram's: drop it,
             * go on with the next. */
            size_t dropped =
                errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS ? b->nout - done : 1;

            if (log_enabled(LOG_DEBUG))
                log_debug("udp: send: %s (%zu datagrams dropped)", strerror(errno), dropped);
            a->stats.drop_send += dropped;
            done += dropped;
            continue;
        }
        udp_count_sent(b, done, (size_t)n);
        done += (size_t)n;
    }
    b->nout = 0;
    b->out_fd = -1;
    b->out_assoc = NULL;
}

/* Queue one send (data stays valid until the flush); a different socket flushes first. */
static void udp_queue(struct udp_assoc *a, int fd, bool down, const struct addr *to,
                      const uint8_t *data, size_t len, size_t payload)
{
    struct udp_batch *b = a->batch;
    size_t i;

    if (b->nout > 0 && (b->out_fd != fd || b->out_assoc != a || b->nout == UDP_MMSG))
        udp_flush(b);
    i = b->nout++;
    b->out_fd = fd;
    b->out_down = down;
    b->out_assoc = a;
    b->out_to[i] = *to;
    b->out_iov[i].iov_base = (void *)data;
    b->out_iov[i].iov_len = len;
    b->out_payload[i] = payload;
    memset(&b->out[i], 0, sizeof(b->out[i]));
    b->out[i].msg_hdr.msg_name = &b->out_to[i].u.sa;
    b->out[i].msg_hdr.msg_namelen = b->out_to[i].len;
    b->out[i].msg_hdr.msg_iov = &b->out_iov[i];
    b->out[i].msg_hdr.msg_iovlen = 1;
}

/*
 * Read up to UDP_MMSG datagrams from fd into the batch slots. Returns how many (0 when none
 * is waiting or on an error the socket reported).
 */
static int udp_receive(struct udp_batch *b, int fd)
{
    int n;

    for (size_t i = 0; i < UDP_MMSG; i++) {
        memset(&b->in[i].msg_hdr, 0, sizeof(b->in[i].msg_hdr));
        b->in_from[i].len = sizeof(b->in_from[i].u);
        b->in[i].msg_hdr.msg_name = &b->in_from[i].u.sa;
        b->in[i].msg_hdr.msg_namelen = b->in_from[i].len;
        b->in[i].msg_hdr.msg_iov = &b->in_iov[i];
        b->in[i].msg_hdr.msg_iovlen = 1;
    }
    do {
        n = recvmmsg(fd, b->in, UDP_MMSG, MSG_DONTWAIT, NULL);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return 0;
    for (int i = 0; i < n; i++)
        b->in_from[i].len = b->in[i].msg_hdr.msg_namelen;
    return n;
}

/* True when peer stands for `to` under the association's filter: the same IP, and with
 * `udp filter address-port` the same port too. */
static bool peer_matches(const struct udp_assoc *a, const struct addr *peer, const struct addr *to)
{
    if (a->filter == UDP_FILTER_ADDRESS_PORT && addr_port(peer) != addr_port(to))
        return false;
    return addr_same_ip(peer, to);
}

/* Remember that the client sent to `to` (IP and port), for the reply filter. */
static void peers_add(struct udp_assoc *a, const struct addr *to)
{
    for (size_t i = 0; i < a->npeers; i++) {
        if (peer_matches(a, &a->peers[i], to))
            return;
    }
    a->peers[a->peers_next] = *to;
    a->peers_next = (a->peers_next + 1) % UDP_PEERS_MAX;
    if (a->npeers < UDP_PEERS_MAX)
        a->npeers++;
}

/* May a datagram from `from` reach the client? */
static bool peers_let_in(const struct udp_assoc *a, const struct addr *from)
{
    if (a->filter == UDP_FILTER_ANY)
        return true;
    for (size_t i = 0; i < a->npeers; i++) {
        if (peer_matches(a, &a->peers[i], from))
            return true;
    }
    return false;
}

static const struct udp_name *names_find(struct udp_assoc *a, const char *name)
{
    double now = ev_now(a->loop);

    for (size_t i = 0; i < UDP_NAMES_MAX; i++) {
        struct udp_name *n = &a->names[i];
        if (n->name[0] != '\0' && n->expires > now && strcasecmp(n->name, name) == 0)
            return n;
    }
    return NULL;
}

/* Store name -> ip in the slot of the same name, a free or expired slot, or the oldest one. */
static void names_put(struct udp_assoc *a, const char *name, const struct addr *ip)
{
    double now = ev_now(a->loop);
    struct udp_name *slot = &a->names[0];

    for (size_t i = 0; i < UDP_NAMES_MAX; i++) {
        struct udp_name *n = &a->names[i];
        if (n->name[0] != '\0' && strcasecmp(n->name, name) == 0) {
            slot = n;
            break;
        }
        if (n->name[0] == '\0' || n->expires <= now || n->expires < slot->expires)
            slot = n;
    }
    snprintf(slot->name, sizeof(slot->name), "%s", name);
    slot->addr = *ip;
    slot->expires = now + UDP_NAME_TTL;
}

static void on_out_readable(struct ev_loop *loop, ev_io *w, int revents);

/* The outbound socket for family (AF_INET or AF_INET6), opened on first use; -1 on failure. */
static int out_socket(struct udp_assoc *a, int family)
{
    struct udp_out *o = family == AF_INET ? &a->out4 : &a->out6;
    struct addr any;
    int fd, on = 1;

    if (o->fd >= 0)
        return o->fd;
    fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    memset(&any, 0, sizeof(any));
    if (family == AF_INET) {
        any.u.in4.sin_family = AF_INET;
        any.len = sizeof(any.u.in4);
    } else {
        /* IPv4 destinations always go out through the IPv4 socket. */
        if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on)) < 0)
            goto fail;
        any.u.in6.sin6_family = AF_INET6;
        any.len = sizeof(any.u.in6);
    }
    if (a->upstream.len > 0 && addr_family(&a->upstream_local) == family) {
        any = a->upstream_local;
        addr_set_port(&any, 0);
    }
    if (bind(fd, &any.u.sa, any.len) < 0)
        goto fail;
    o->fd = fd;
    o->assoc = a;
    ev_io_init(&o->io, on_out_readable, fd, EV_READ);
    o->io.data = o;
    ev_io_start(a->loop, &o->io);
    return fd;

fail:
    close(fd);
    return -1;
}

/* Ask the session's policy about a destination; counts a refusal. */
static bool allowed(struct udp_assoc *a, const char *name, const struct addr *to, uint16_t port)
{
    if (a->policy == NULL || a->policy(a->policy_arg, name, to, port))
        return true;
    a->stats.drop_blocked++;
    return false;
}

/*
 * Queue one payload for a target (an IP address, mapped IPv4 already unmapped); it goes out
 * at the next udp_flush.
 */
static void send_to_target(struct udp_assoc *a, const struct addr *to, const uint8_t *payload,
                           size_t len)
{
    int fd = out_socket(a, addr_family(to));

    if (fd < 0) {
        a->stats.drop_send++;
        return;
    }
    peers_add(a, to);
    udp_queue(a, fd, false, to, payload, len, len);
}

/* The address a name's datagrams go to: the first IPv4 address, else the first address. */
static const struct addr *pick_address(const struct resolver_result *res)
{
    for (size_t i = 0; i < res->count; i++) {
        if (addr_family(&res->addrs[i]) == AF_INET)
            return &res->addrs[i];
    }
    return res->count > 0 ? &res->addrs[0] : NULL;
}

static void pending_unlink(struct udp_assoc *a, struct udp_pending *p)
{
    for (struct udp_pending **pp = &a->pending; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            return;
        }
    }
}

/* Free p's queue (after sending it, or to drop it) and p itself; p must be unlinked. */
static void pending_free(struct udp_assoc *a, struct udp_pending *p)
{
    struct udp_queued *q = p->head;

    while (q != NULL) {
        struct udp_queued *next = q->next;
        a->queued--;
        a->queued_bytes -= q->len;
        free(q);
        q = next;
    }
    free(p);
}

static void on_resolved(const struct resolver_result *res, void *arg)
{
    struct udp_pending *p = arg;
    struct udp_assoc *a = p->assoc;
    const struct addr *picked = res->status == RESOLVER_OK ? pick_address(res) : NULL;
    struct addr to;

    p->query = NULL; /* the resolver frees it after we return */
    pending_unlink(a, p);
    if (picked == NULL) {
        char name[LOG_ESCAPED(DEST_NAME_MAX)];
        size_t n = 0;
        for (struct udp_queued *q = p->head; q != NULL; q = q->next)
            n++;
        log_debug("udp: %s: %s, %zu datagrams dropped",
                  log_escape(p->name, strlen(p->name), name, sizeof(name)),
                  resolver_status_name(res->status), n);
        a->stats.drop_resolve += n;
    } else {
        to = *picked;
        addr_unmap(&to);
        addr_set_port(&to, 0);
        names_put(a, p->name, &to);
        for (struct udp_queued *q = p->head; q != NULL; q = q->next) {
            addr_set_port(&to, q->port);
            if (allowed(a, p->name, &to, q->port))
                send_to_target(a, &to, q->data, q->len);
        }
        udp_flush(a->batch); /* before the queue, which the sends point into, goes */
    }
    pending_free(a, p);
}

/* Queue a datagram for a name being resolved, starting the lookup when it is the first. */
static void send_to_name(struct udp_assoc *a, const struct socks_dest *d, const uint8_t *payload,
                         size_t len)
{
    const struct udp_name *known = names_find(a, d->name);
    struct udp_pending *p;
    struct udp_queued *q;

    if (known != NULL) {
        struct addr to = known->addr;
        addr_set_port(&to, d->port);
        if (allowed(a, d->name, &to, d->port))
            send_to_target(a, &to, payload, len);
        return;
    }
    /* Name rules first: a refused name is not looked up. */
    if (!allowed(a, d->name, NULL, d->port))
        return;
    if (a->queued >= UDP_QUEUE_MAX || a->queued_bytes + len > UDP_QUEUE_BYTES) {
        a->stats.drop_queue++;
        return;
    }
    for (p = a->pending; p != NULL; p = p->next) {
        if (strcasecmp(p->name, d->name) == 0)
            break;
    }
    q = malloc(sizeof(*q) + len);
    if (q == NULL) {
        a->stats.drop_queue++;
        return;
    }
    q->next = NULL;
    q->port = d->port;
    q->len = len;
    memcpy(q->data, payload, len);
    if (p == NULL) {
        p = calloc(1, sizeof(*p));
        if (p == NULL) {
            free(q);
            a->stats.drop_queue++;
            return;
        }
        p->assoc = a;
        snprintf(p->name, sizeof(p->name), "%s", d->name);
        if (a->resolver != NULL)
            p->query = resolver_lookup(a->resolver, p->name, on_resolved, p);
        else
            errno = ENOSYS;
        if (p->query == NULL) {
            char name[LOG_ESCAPED(DEST_NAME_MAX)];

            log_debug("udp: lookup %s: %s",
                      log_escape(p->name, strlen(p->name), name, sizeof(name)), strerror(errno));
            free(p);
            free(q);
            a->stats.drop_resolve++;
            return;
        }
        p->next = a->pending;
        a->pending = p;
    }
    if (p->tail != NULL)
        p->tail->next = q;
    else
        p->head = q;
    p->tail = q;
    a->queued++;
    a->queued_bytes += len;
}

/*
 * A tunnel's datagram (tunnel_udp.h) of len bytes opened in place: the plaintext is at
 * buf + TUNNEL_UDP_HEAD. False with the drop counted by reason.
 */
static bool sealed_open(struct udp_assoc *a, struct udp_seal *sl, uint8_t *buf, size_t len)
{
    switch (tunnel_udp_open(&sl->rx, buf, len)) {
    case TUNNEL_UDP_OK:
        return true;
    case TUNNEL_UDP_ERR_DUPLICATE:
        a->stats.drop_replay++;
        return false;
    case TUNNEL_UDP_ERR_OLD:
        a->stats.drop_old++;
        return false;
    default:
        a->stats.drop_auth++;
        return false;
    }
}

/*
 * Seal *len bytes at *buf in place for the other ferry at `to`: they become the datagram at
 * *buf - TUNNEL_UDP_HEAD, TUNNEL_UDP_OVERHEAD bytes longer (the slot has room both sides).
 * False with the drop counted when it would not fit in one datagram, or the counters are
 * spent.
 */
static bool sealed_seal(struct udp_assoc *a, struct udp_seal *sl, uint8_t **buf, size_t *len,
                        const struct addr *to)
{
    size_t limit = addr_family(to) == AF_INET ? UDP_PAYLOAD_MAX_IPV4 : UDP_PAYLOAD_MAX_IPV6;
    uint8_t *start = *buf - TUNNEL_UDP_HEAD;

    if (*len > limit - TUNNEL_UDP_OVERHEAD) {
        a->stats.drop_oversize++;
        return false;
    }
    if (tunnel_udp_seal(&sl->tx, start, *len) != TUNNEL_UDP_OK) {
        a->stats.drop_send++;
        return false;
    }
    *buf = start;
    *len += TUNNEL_UDP_OVERHEAD;
    return true;
}

/*
 * A datagram's SOCKS5 UDP header, or false with the drop counted: malformed, or a fragment
 * (RFC 1928 section 7: fragmentation is optional; we do not reassemble, so drop).
 */
static bool header_ok(struct udp_assoc *a, const uint8_t *buf, size_t len,
                      struct socks5_udp_header *hdr, size_t *hdrlen)
{
    if (socks5_parse_udp_header(buf, len, hdr, hdrlen) != PROTO_OK || *hdrlen > len) {
        a->stats.drop_malformed++;
        return false;
    }
    if (hdr->frag != 0) {
        a->stats.drop_frag++;
        return false;
    }
    return true;
}

/* Through a parent: the datagram as the client sent it, header and all, to its relay. */
static void send_upstream(struct udp_assoc *a, const struct socks_dest *dest, uint8_t *buf,
                          size_t len, size_t payload)
{
    struct addr to;
    int fd;

    if (dest->type == DEST_NAME) {
        if (!allowed(a, dest->name, NULL, dest->port))
            return;
    } else {
        if (socks_dest_to_addr(dest, &to) < 0) {
            a->stats.drop_malformed++;
            return;
        }
        addr_unmap(&to);
        if (!allowed(a, NULL, &to, dest->port))
            return;
    }
    fd = out_socket(a, addr_family(&a->upstream));
    if (fd < 0) {
        a->stats.drop_send++;
        return;
    }
    if (a->seal_up.on && !sealed_seal(a, &a->seal_up, &buf, &len, &a->upstream))
        return;
    udp_queue(a, fd, false, &a->upstream, buf, len, payload);
}

/* From a parent's relay: only from it, whole SOCKS5 datagrams, passed on unchanged. */
static void upstream_datagram(struct udp_assoc *a, const struct addr *from, uint8_t *buf,
                              size_t len)
{
    struct socks5_udp_header hdr;
    size_t hdrlen, payload;
    struct addr src = *from;

    addr_unmap(&src);
    if (!addr_same_ip(&src, &a->upstream) || addr_port(&src) != addr_port(&a->upstream)) {
        a->stats.drop_stranger++;
        return;
    }
    if (a->seal_up.on) {
        if (!sealed_open(a, &a->seal_up, buf, len))
            return;
        buf += TUNNEL_UDP_HEAD;
        len -= TUNNEL_UDP_OVERHEAD;
    }
    if (!a->client_known) {
        a->stats.drop_filtered++;
        return;
    }
    if (!header_ok(a, buf, len, &hdr, &hdrlen))
        return;
    payload = len - hdrlen;
    /* A tunnel stream's association whose own route goes through a parent. */
    if (a->seal_client.on && !sealed_seal(a, &a->seal_client, &buf, &len, &a->client_addr))
        return;
    udp_queue(a, a->client_fd, true, &a->client_addr, buf, len, payload);
}

/* One datagram from the client-facing socket: check its source, parse, forward. */
static void client_datagram(struct udp_assoc *a, const struct addr *from, uint8_t *buf, size_t len)
{
    struct socks5_udp_header hdr;
    size_t hdrlen;
    struct addr to;

    if (!addr_same_ip(from, &a->client)) {
        a->stats.drop_stranger++;
        return;
    }
    if (a->seal_client.on) {
        /* The other ferry: only an authentic, fresh datagram says where replies go. */
        if (a->client_port != 0 && addr_port(from) != a->client_port) {
            a->stats.drop_stranger++;
            return;
        }
        if (!sealed_open(a, &a->seal_client, buf, len))
            return;
        buf += TUNNEL_UDP_HEAD;
        len -= TUNNEL_UDP_OVERHEAD;
        a->client_addr = *from;
        a->client_known = true;
    } else if (a->client_known) {
        if (addr_port(from) != addr_port(&a->client_addr)) {
            a->stats.drop_stranger++;
            return;
        }
    } else {
        if (a->client_port != 0 && addr_port(from) != a->client_port) {
            a->stats.drop_stranger++;
            return;
        }
        a->client_addr = *from;
        a->client_known = true;
    }

    if (!header_ok(a, buf, len, &hdr, &hdrlen))
        return;
    if (a->upstream.len > 0) {
        send_upstream(a, &hdr.dest, buf, len, len - hdrlen);
        return;
    }
    if (hdr.dest.type == DEST_NAME) {
        send_to_name(a, &hdr.dest, buf + hdrlen, len - hdrlen);
        return;
    }
    if (socks_dest_to_addr(&hdr.dest, &to) < 0) {
        a->stats.drop_malformed++;
        return;
    }
    addr_unmap(&to);
    if (allowed(a, NULL, &to, hdr.dest.port))
        send_to_target(a, &to, buf + hdrlen, len - hdrlen);
}

/* Datagram i of the batch just read: its sender, or NULL (another family, or too large). */
static const struct addr *received(struct udp_assoc *a, int i)
{
    struct udp_batch *b = a->batch;
    const struct addr *from = &b->in_from[i];

    if (addr_family(from) != AF_INET && addr_family(from) != AF_INET6)
        return NULL;
    if ((b->in[i].msg_hdr.msg_flags & MSG_TRUNC) || b->in[i].msg_len > UDP_DATAGRAM_MAX) {
        a->stats.drop_oversize++;
        return NULL;
    }
    return from;
}

static void on_client_readable(struct ev_loop *loop, ev_io *w, int revents)
{
    struct udp_assoc *a = w->data;
    struct udp_batch *b = a->batch;

    (void)loop;
    (void)revents;
    for (int got = 0; got < UDP_BATCH;) {
        int n = udp_receive(b, a->client_fd);

        for (int i = 0; i < n; i++) {
            const struct addr *from = received(a, i);
            if (from != NULL)
                client_datagram(a, from, b->in_iov[i].iov_base, b->in[i].msg_len);
        }
        udp_flush(b);
        if (n < UDP_MMSG)
            break; /* the socket is drained (or reported an error): wait for the next event */
        got += n;
    }
}

/* One datagram from a target: filter, prepend the header naming the sender, queue it for the
 * client (sealed for a tunnel). payload sits in a batch slot after UDP_HEADROOM bytes. */
static void target_datagram(struct udp_assoc *a, const struct addr *from, uint8_t *payload,
                            size_t len)
{
    uint8_t hdr[UDP_REPLY_HEADER_MAX];
    size_t hdrlen, limit, total;
    uint8_t *start;

    if (!a->client_known || !peers_let_in(a, from)) {
        a->stats.drop_filtered++;
        return;
    }
    hdrlen = socks5_encode_udp_header(hdr, &from->u.sa);
    if (hdrlen == 0 || hdrlen > UDP_REPLY_HEADER_MAX) {
        a->stats.drop_malformed++;
        return;
    }
    limit = addr_family(&a->client_addr) == AF_INET ? UDP_PAYLOAD_MAX_IPV4 : UDP_PAYLOAD_MAX_IPV6;
    if (len > limit - hdrlen) {
        a->stats.drop_oversize++;
        return;
    }
    start = payload - hdrlen;
    memcpy(start, hdr, hdrlen);
    total = hdrlen + len;
    if (a->seal_client.on && !sealed_seal(a, &a->seal_client, &start, &total, &a->client_addr))
        return;
    udp_queue(a, a->client_fd, true, &a->client_addr, start, total, len);
}

static void on_out_readable(struct ev_loop *loop, ev_io *w, int revents)
{
    struct udp_out *o = w->data;
    struct udp_assoc *a = o->assoc;
    struct udp_batch *b = a->batch;

    (void)loop;
    (void)revents;
    for (int got = 0, errors = 0; got < UDP_BATCH;) {
        int n = udp_receive(b, o->fd);

        if (n == 0 && errno != EAGAIN && errno != EWOULDBLOCK && errors++ < UDP_MMSG)
            continue; /* an ICMP error for an earlier send surfaced here: read on */
        for (int i = 0; i < n; i++) {
            const struct addr *from = received(a, i);
            if (from != NULL && a->upstream.len > 0)
                upstream_datagram(a, from, b->in_iov[i].iov_base, b->in[i].msg_len);
            else if (from != NULL)
                target_datagram(a, from, b->in_iov[i].iov_base, b->in[i].msg_len);
        }
        udp_flush(b);
        if (n < UDP_MMSG)
            break;
        got += n;
    }
}

struct udp_assoc *udp_assoc_start(const struct udp_assoc_params *p)
{
    struct udp_assoc *a = calloc(1, sizeof(*a));
    int err;

    if (a == NULL)
        return NULL;
    a->loop = p->loop;
    a->resolver = p->resolver;
    a->batch = p->batch;
    a->filter = p->filter;
    a->policy = p->policy;
    a->policy_arg = p->policy_arg;
    a->client = p->client;
    addr_unmap(&a->client);
    a->client_port = p->client_port;
    a->local = p->local;
    addr_unmap(&a->local);
    a->upstream = p->upstream;
    if (a->upstream.len > 0) {
        addr_unmap(&a->upstream);
        a->upstream_local = p->upstream_local;
        addr_unmap(&a->upstream_local);
    }
    a->out4.fd = -1;
    a->out6.fd = -1;

    if (addr_family(&a->local) != AF_INET && addr_family(&a->local) != AF_INET6) {
        free(a);
        errno = EAFNOSUPPORT;
        return NULL;
    }
    a->client_fd = socket(addr_family(&a->local), SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (a->client_fd < 0) {
        free(a);
        return NULL;
    }
    if (net_bind_in_range(a->client_fd, &a->local, p->port_min, p->port_max) < 0) {
        err = errno;
        close(a->client_fd);
        free(a);
        errno = err;
        return NULL;
    }
    if (p->sealed_client != NULL) {
        a->seal_client.on = true;
        tunnel_udp_dir_init(&a->seal_client.tx, p->sealed_client->id, p->sealed_client->down);
        tunnel_udp_dir_init(&a->seal_client.rx, p->sealed_client->id, p->sealed_client->up);
    }
    if (p->sealed_upstream != NULL && a->upstream.len > 0) {
        a->seal_up.on = true;
        tunnel_udp_dir_init(&a->seal_up.tx, p->sealed_upstream->id, p->sealed_upstream->up);
        tunnel_udp_dir_init(&a->seal_up.rx, p->sealed_upstream->id, p->sealed_upstream->down);
    }
    a->stats.sealed = a->seal_client.on || a->seal_up.on;
    ev_io_init(&a->client_io, on_client_readable, a->client_fd, EV_READ);
    a->client_io.data = a;
    ev_io_start(a->loop, &a->client_io);
    touch(a);
    return a;
}

const struct addr *udp_assoc_local(const struct udp_assoc *a)
{
    return &a->local;
}

double udp_assoc_last_activity(const struct udp_assoc *a)
{
    return a->last_activity;
}

void udp_assoc_stats(const struct udp_assoc *a, struct udp_stats *out)
{
    *out = a->stats;
}

static void out_close(struct udp_assoc *a, struct udp_out *o)
{
    if (o->fd < 0)
        return;
    ev_io_stop(a->loop, &o->io);
    close(o->fd);
    o->fd = -1;
}

void udp_assoc_free(struct udp_assoc *a)
{
    if (a == NULL)
        return;
    ev_io_stop(a->loop, &a->client_io);
    close(a->client_fd);
    out_close(a, &a->out4);
    out_close(a, &a->out6);
    while (a->pending != NULL) {
        struct udp_pending *p = a->pending;
        a->pending = p->next;
        resolver_cancel(p->query);
        pending_free(a, p);
    }
    tunnel_udp_dir_wipe(&a->seal_client.tx);
    tunnel_udp_dir_wipe(&a->seal_client.rx);
    tunnel_udp_dir_wipe(&a->seal_up.tx);
    tunnel_udp_dir_wipe(&a->seal_up.rx);
    free(a);
}
