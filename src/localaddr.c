/* The host's own addresses (see localaddr.h). */
#include "config.h"

#include "ferry/localaddr.h"

#include <errno.h>
#include <ifaddrs.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct localaddrs {
    atomic_uint refs;
    size_t n;
    struct addr_cidr ranges[];
};

/* The range in its plainest form: IPv4-mapped becomes IPv4, host bits cleared, port 0. */
static struct addr_cidr range_normal(const struct addr_cidr *in)
{
    struct addr_cidr c = *in;
    unsigned bits;
    uint8_t *ip;

    addr_set_port(&c.net, 0);
    if (addr_family(&c.net) == AF_INET6 && addr_ipv4_bytes(&c.net) != NULL) {
        c.prefix = c.prefix >= 96 ? c.prefix - 96 : 0;
        addr_unmap(&c.net);
    }
    if (addr_family(&c.net) == AF_INET) {
        ip = (uint8_t *)&c.net.u.in4.sin_addr;
        bits = 32;
    } else {
        ip = c.net.u.in6.sin6_addr.s6_addr;
        c.net.u.in6.sin6_scope_id = 0;
        c.net.u.in6.sin6_flowinfo = 0;
        bits = 128;
    }
    if (c.prefix > bits)
        c.prefix = bits;
    for (unsigned b = c.prefix; b < bits; b++)
        ip[b / 8] &= (uint8_t) ~(0x80u >> (b % 8));
    return c;
}

struct localaddrs *localaddrs_new(const struct addr_cidr *ranges, size_t n)
{
    struct localaddrs *l = calloc(1, sizeof(*l) + n * sizeof(l->ranges[0]));

    if (l == NULL)
        return NULL;
    atomic_init(&l->refs, 1);
    for (size_t i = 0; i < n; i++) {
        int fam = addr_family(&ranges[i].net);

        if (fam == AF_INET || fam == AF_INET6)
            l->ranges[l->n++] = range_normal(&ranges[i]);
    }
    return l;
}

/* The number of leading one bits of a netmask of len bytes. */
static unsigned mask_bits(const uint8_t *mask, size_t len)
{
    unsigned n = 0;

    for (size_t i = 0; i < len; i++) {
        for (int b = 7; b >= 0; b--) {
            if (!(mask[i] & (1u << b)))
                return n;
            n++;
        }
    }
    return n;
}

struct localaddrs *localaddrs_read(void)
{
    struct ifaddrs *all, *ifa;
    struct addr_cidr *ranges;
    struct localaddrs *l;
    size_t n = 0, cap = 0;

    if (getifaddrs(&all) < 0)
        return NULL;
    for (ifa = all; ifa != NULL; ifa = ifa->ifa_next)
        cap++;
    ranges = calloc(cap > 0 ? cap : 1, sizeof(*ranges));
    if (ranges == NULL) {
        freeifaddrs(all);
        return NULL;
    }
    for (ifa = all; ifa != NULL; ifa = ifa->ifa_next) {
        const struct sockaddr *sa = ifa->ifa_addr;
        struct addr_cidr *c = &ranges[n];
        bool loopback = (ifa->ifa_flags & IFF_LOOPBACK) != 0 && ifa->ifa_netmask != NULL;

        if (sa == NULL)
            continue;
        if (sa->sa_family == AF_INET) {
            if (addr_from_sockaddr(&c->net, sa, sizeof(struct sockaddr_in)) < 0)
                continue;
            c->prefix =
                loopback
                    ? mask_bits((const uint8_t *)&((const struct sockaddr_in *)ifa->ifa_netmask)
                                    ->sin_addr,
                                4)
                    : 32;
        } else if (sa->sa_family == AF_INET6) {
            if (addr_from_sockaddr(&c->net, sa, sizeof(struct sockaddr_in6)) < 0)
                continue;
            c->prefix =
                loopback
                    ? mask_bits(((const struct sockaddr_in6 *)ifa->ifa_netmask)->sin6_addr.s6_addr,
                                16)
                    : 128;
        } else {
            continue;
        }
        n++;
    }
    freeifaddrs(all);
    l = localaddrs_new(ranges, n);
    free(ranges);
    if (l == NULL)
        errno = ENOMEM;
    return l;
}

struct localaddrs *localaddrs_ref(struct localaddrs *l)
{
    if (l != NULL)
        atomic_fetch_add_explicit(&l->refs, 1, memory_order_relaxed);
    return l;
}

void localaddrs_unref(struct localaddrs *l)
{
    if (l == NULL)
        return;
    if (atomic_fetch_sub_explicit(&l->refs, 1, memory_order_acq_rel) == 1)
        free(l);
}

size_t localaddrs_count(const struct localaddrs *l)
{
    return l != NULL ? l->n : 0;
}

const struct addr_cidr *localaddrs_get(const struct localaddrs *l, size_t i)
{
    return &l->ranges[i];
}

bool localaddrs_same(const struct localaddrs *a, const struct localaddrs *b)
{
    size_t n = localaddrs_count(a);

    if (n != localaddrs_count(b))
        return false;
    for (size_t i = 0; i < n; i++) {
        if (a->ranges[i].prefix != b->ranges[i].prefix ||
            !addr_equal(&a->ranges[i].net, &b->ranges[i].net))
            return false;
    }
    return true;
}

int localaddrs_match(const struct localaddrs *l, const struct addr *a)
{
    int best = -1;

    for (size_t i = 0; i < localaddrs_count(l); i++) {
        const struct addr_cidr *c = &l->ranges[i];

        if (addr_cidr_contains(c, a) && (best < 0 || c->prefix < (unsigned)best))
            best = (int)c->prefix;
    }
    return best;
}

int localaddrs_watch_open(void)
{
    struct sockaddr_nl sa;
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE);

    if (fd < 0)
        return -1;
    memset(&sa, 0, sizeof(sa));
    sa.nl_family = AF_NETLINK;
    sa.nl_groups = RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR;
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int saved = errno;

        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

int localaddrs_watch_drain(int fd)
{
    uint8_t buf[8192];
    int got = 0;

    /* Bounded: a flood of changes is read again on the next readiness, not in one loop. */
    for (int i = 0; i < 64; i++) {
        ssize_t r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

        if (r >= 0) {
            got = 1;
            continue;
        }
        if (errno == EINTR)
            continue;
        if (errno == ENOBUFS) /* messages were lost: the list must be read again anyway */
            return 1;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return got;
        return -1;
    }
    return got;
}
