/* Socket helpers shared by the UDP, BIND and relay paths. */
#include "config.h"

#include "ferry/net.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sodium.h>
#include <sys/socket.h>
#include <unistd.h>

int net_bind_in_range(int fd, struct addr *a, uint16_t min, uint16_t max)
{
    uint32_t span, start;

    if (min == 0 && max == 0) {
        addr_set_port(a, 0);
        if (bind(fd, &a->u.sa, a->len) < 0)
            return -1;
    } else {
        if (min > max || min == 0) {
            errno = EINVAL;
            return -1;
        }
        span = (uint32_t)max - min + 1;
        start = randombytes_uniform(span);
        for (uint32_t i = 0;; i++) {
            if (i == span) {
                errno = EADDRINUSE;
                return -1;
            }
            addr_set_port(a, (uint16_t)(min + (start + i) % span));
            if (bind(fd, &a->u.sa, a->len) == 0)
                break;
            if (errno != EADDRINUSE && errno != EACCES)
                return -1;
        }
    }
    a->len = sizeof(a->u);
    return getsockname(fd, &a->u.sa, &a->len);
}

int net_route_source(const struct addr *to, struct addr *local)
{
    struct addr dst = *to;
    int fd = socket(addr_family(to), SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int err;

    if (fd < 0)
        return -1;
    if (addr_port(&dst) == 0)
        addr_set_port(&dst, 9); /* any port routes the same; 0 may be refused */
    if (connect(fd, &dst.u.sa, dst.len) < 0)
        goto fail;
    local->len = sizeof(local->u);
    if (getsockname(fd, &local->u.sa, &local->len) < 0)
        goto fail;
    addr_set_port(local, 0);
    close(fd);
    return 0;

fail:
    err = errno;
    close(fd);
    errno = err;
    return -1;
}

static int set_int(int fd, int level, int name, unsigned value)
{
    int v = value > (unsigned)INT32_MAX ? INT32_MAX : (int)value;

    return setsockopt(fd, level, name, &v, sizeof(v));
}

int net_stream_tune(int fd, const struct net_stream_opts *o)
{
    if (o->rcvbuf > 0 && set_int(fd, SOL_SOCKET, SO_RCVBUF, o->rcvbuf) < 0)
        return -1;
    if (o->sndbuf > 0 && set_int(fd, SOL_SOCKET, SO_SNDBUF, o->sndbuf) < 0)
        return -1;
    if (!o->keepalive)
        return 0;
    if (set_int(fd, SOL_SOCKET, SO_KEEPALIVE, 1) < 0)
        return -1;
    if (o->keepalive_idle > 0 && set_int(fd, IPPROTO_TCP, TCP_KEEPIDLE, o->keepalive_idle) < 0)
        return -1;
    if (o->keepalive_interval > 0 &&
        set_int(fd, IPPROTO_TCP, TCP_KEEPINTVL, o->keepalive_interval) < 0)
        return -1;
    if (o->keepalive_count > 0 && set_int(fd, IPPROTO_TCP, TCP_KEEPCNT, o->keepalive_count) < 0)
        return -1;
    return 0;
}
