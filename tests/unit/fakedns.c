/* A fake DNS server for unit tests (see fakedns.h). */
#include "config.h"

#include "fakedns.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define TYPE_A 1
#define TYPE_CNAME 5
#define TYPE_PTR 12
#define TYPE_AAAA 28
#define CLASS_IN 1

static void put16(uint8_t *p, unsigned v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
    put16(p, v >> 16);
    put16(p + 2, v & 0xffff);
}

static unsigned get16(const uint8_t *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

struct fakedns_name *fakedns_find(struct fakedns *d, const char *name)
{
    for (size_t i = 0; i < d->nzone; i++) {
        if (strcasecmp(d->zone[i].name, name) == 0)
            return &d->zone[i];
    }
    return NULL;
}

/*
 * Append the records of one type, owned by the name at offset `owner` of the message; returns
 * the new length, or 0 when they do not fit.
 */
static size_t put_records(uint8_t *out, size_t len, size_t cap, size_t owner,
                          const char *const *list, unsigned type, uint32_t ttl, unsigned *count)
{
    for (size_t i = 0; i < FAKEDNS_MAX_ADDRS && list[i] != NULL; i++) {
        uint8_t ip[16];
        size_t iplen = type == TYPE_A ? 4 : 16;
        if (inet_pton(type == TYPE_A ? AF_INET : AF_INET6, list[i], ip) != 1)
            return 0;
        if (len + 12 + iplen > cap)
            return 0;
        put16(out + len, 0xc000 | (unsigned)owner); /* compression pointer, RFC 1035 4.1.4 */
        put16(out + len + 2, type);
        put16(out + len + 4, CLASS_IN);
        put32(out + len + 6, ttl);
        put16(out + len + 10, (unsigned)iplen);
        memcpy(out + len + 12, ip, iplen);
        len += 12 + iplen;
        (*count)++;
    }
    return len;
}

/*
 * Append a CNAME or PTR record from the question's name to target; *target_at gets the
 * target's offset.
 */
static size_t put_name_record(uint8_t *out, size_t len, size_t cap, unsigned type,
                              const char *target, uint32_t ttl, size_t *target_at, unsigned *count)
{
    size_t rdlen = strlen(target) + 2, at = len + 12;
    const char *p = target;

    if (at + rdlen > cap)
        return 0;
    put16(out + len, 0xc00c);
    put16(out + len + 2, type);
    put16(out + len + 4, CLASS_IN);
    put32(out + len + 6, ttl);
    put16(out + len + 10, (unsigned)rdlen);
    while (*p != '\0') {
        size_t label = strcspn(p, ".");
        out[at++] = (uint8_t)label;
        memcpy(out + at, p, label);
        at += label;
        p += label;
        if (*p == '.')
            p++;
    }
    out[at++] = 0;
    *target_at = len + 12;
    (*count)++;
    return at;
}

/* Answer one query; `held` is true for an A query answered late (a_last), already counted. */
static void answer(struct fakedns *d, const uint8_t *in, size_t n,
                   const struct sockaddr_storage *peer, socklen_t peerlen, bool held)
{
    uint8_t out[1500];
    char name[256];
    size_t off = 12, namelen = 0, len;
    unsigned qtype, ancount = 0, rcode;
    struct fakedns_name *z, *asked;

    if (get16(in + 4) != 1)
        return;
    while (off < n && in[off] != 0) {
        size_t label = in[off];
        if (label > 63 || off + 1 + label >= n || namelen + label + 1 >= sizeof(name))
            return;
        if (namelen > 0)
            name[namelen++] = '.';
        memcpy(name + namelen, in + off + 1, label);
        namelen += label;
        off += 1 + label;
    }
    name[namelen] = '\0';
    if (off + 5 > n)
        return;
    qtype = get16(in + off + 1);
    off += 5; /* root label, type, class */

    z = asked = fakedns_find(d, name);
    if (z != NULL && !held) {
        z->queries++;
        z->queries_a += qtype == TYPE_A;
        z->queries_aaaa += qtype == TYPE_AAAA;
        z->queries_ptr += qtype == TYPE_PTR;
        if (z->drop)
            return;
        if (z->a_last && qtype == TYPE_A && !d->aaaa_sent && d->held_len == 0 &&
            n <= sizeof(d->held)) {
            memcpy(d->held, in, n);
            d->held_len = n;
            d->held_peer = *peer;
            d->held_peerlen = peerlen;
            return;
        }
    }
    rcode = z == NULL ? FAKEDNS_NXDOMAIN : (unsigned)z->rcode;

    memcpy(out, in, off);
    out[2] = (uint8_t)(0x80 | (in[2] & 0x79)); /* QR, opcode and RD from the query */
    out[3] = (uint8_t)(0x80 | rcode);          /* RA */
    put16(out + 6, 0);
    put16(out + 8, 0);
    put16(out + 10, 0);
    len = off;
    if (z != NULL && rcode == FAKEDNS_NOERROR) {
        size_t owner = 12;
        if (z->cname != NULL) {
            len = put_name_record(out, len, sizeof(out), TYPE_CNAME, z->cname, z->ttl, &owner,
                                  &ancount);
            z = fakedns_find(d, z->cname);
            if (len == 0 || z == NULL)
                return;
        }
        if (qtype == TYPE_A)
            len = put_records(out, len, sizeof(out), owner, z->a, TYPE_A, z->ttl, &ancount);
        else if (qtype == TYPE_AAAA)
            len = put_records(out, len, sizeof(out), owner, z->aaaa, TYPE_AAAA, z->ttl, &ancount);
        else if (qtype == TYPE_PTR && z->ptr != NULL)
            len =
                put_name_record(out, len, sizeof(out), TYPE_PTR, z->ptr, z->ttl, &owner, &ancount);
        if (len == 0)
            return;
    }
    put16(out + 6, ancount);
    (void)sendto(d->fd, out, len, 0, (const struct sockaddr *)peer, peerlen);
    if (asked != NULL && asked->a_last && qtype == TYPE_AAAA) {
        d->aaaa_sent = true;
        if (d->held_len > 0) {
            size_t held_len = d->held_len;
            d->held_len = 0;
            answer(d, d->held, held_len, &d->held_peer, d->held_peerlen, true);
        }
    }
}

static void on_readable(struct ev_loop *loop, ev_io *w, int revents)
{
    struct fakedns *d = w->data;
    uint8_t in[1500];
    struct sockaddr_storage peer;
    socklen_t peerlen = sizeof(peer);
    ssize_t n = recvfrom(w->fd, in, sizeof(in), 0, (struct sockaddr *)&peer, &peerlen);

    (void)loop;
    (void)revents;
    if (n < 12)
        return;
    d->queries++;
    answer(d, in, (size_t)n, &peer, peerlen, false);
}

/* Every address of the table must parse, so that a typo fails the test at once. */
static bool zone_valid(const struct fakedns_name *zone, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < FAKEDNS_MAX_ADDRS; j++) {
            uint8_t ip[16];
            if (zone[i].a[j] != NULL && inet_pton(AF_INET, zone[i].a[j], ip) != 1)
                return false;
            if (zone[i].aaaa[j] != NULL && inet_pton(AF_INET6, zone[i].aaaa[j], ip) != 1)
                return false;
        }
    }
    return true;
}

int fakedns_start(struct fakedns *d, struct ev_loop *loop, const struct fakedns_name *zone,
                  size_t n)
{
    struct sockaddr_in sin;
    socklen_t slen = sizeof(sin);

    memset(d, 0, sizeof(*d));
    d->fd = -1;
    if (!zone_valid(zone, n)) {
        errno = EINVAL;
        return -1;
    }
    d->zone = calloc(n > 0 ? n : 1, sizeof(*d->zone));
    if (d->zone == NULL)
        return -1;
    if (n > 0)
        memcpy(d->zone, zone, n * sizeof(*zone));
    d->nzone = n;
    d->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (d->fd < 0)
        goto fail;
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(d->fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
        getsockname(d->fd, (struct sockaddr *)&sin, &slen) < 0)
        goto fail;
    d->port = ntohs(sin.sin_port);
    snprintf(d->servers, sizeof(d->servers), "127.0.0.1:%u", (unsigned)d->port);
    d->loop = loop;
    ev_io_init(&d->io, on_readable, d->fd, EV_READ);
    d->io.data = d;
    ev_io_start(loop, &d->io);
    return 0;

fail:
    if (d->fd >= 0)
        close(d->fd);
    d->fd = -1;
    free(d->zone);
    d->zone = NULL;
    return -1;
}

void fakedns_stop(struct fakedns *d)
{
    if (d->fd < 0)
        return;
    ev_io_stop(d->loop, &d->io);
    close(d->fd);
    d->fd = -1;
    free(d->zone);
    d->zone = NULL;
    d->nzone = 0;
}
