/*
 * BIND (RFC 1928 section 4, SOCKS4 "BIND"): listen for the one inbound connection a client
 * announced, refuse connections from other hosts, and hand the first expected one over.
 */
#include "config.h"

#include "ferry/binder.h"

#include <errno.h>
#include <ev.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ferry/log.h"
#include "ferry/net.h"

/* Wrong peers are drained from a small queue rather than holding the expected one back. */
#define BINDER_BACKLOG 4
/* Accepts per readable event, so a flood of wrong peers cannot hold the loop. */
#define BINDER_ACCEPT_BATCH 16

struct binder {
    struct ev_loop *loop;
    ev_io watcher;
    int fd;
    binder_cb cb;
    void *arg;
    unsigned refused;
    size_t nexpected;
    struct addr *expected;
};

static void binder_free(struct binder *b)
{
    if (b->fd >= 0) {
        ev_io_stop(b->loop, &b->watcher);
        close(b->fd);
    }
    free(b->expected);
    free(b);
}

void binder_cancel(struct binder *b)
{
    if (b != NULL)
        binder_free(b);
}

unsigned binder_refused(const struct binder *b)
{
    return b->refused;
}

/* Free the binder, then report; the callback may start anything, including a new binder. */
static void binder_finish(struct binder *b, int fd, int err, const struct addr *peer)
{
    binder_cb cb = b->cb;
    void *arg = b->arg;
    struct addr peer_copy;

    if (peer != NULL)
        peer_copy = *peer;
    binder_free(b);
    cb(fd, err, peer != NULL ? &peer_copy : NULL, arg);
}

static bool binder_expects(const struct binder *b, const struct addr *peer)
{
    if (b->nexpected == 0)
        return true;
    for (size_t i = 0; i < b->nexpected; i++) {
        if (addr_same_ip(&b->expected[i], peer))
            return true;
    }
    return false;
}

/*
 * Errors accept(2) on Linux passes on from a connection that already failed; the listening
 * socket itself is fine, so they are retried like ECONNABORTED.
 */
static bool accept_error_is_transient(int err)
{
    switch (err) {
    case EINTR:
    case ECONNABORTED:
    case EPROTO:
    case ENETDOWN:
    case ENOPROTOOPT:
    case EHOSTDOWN:
    case ENONET:
    case EHOSTUNREACH:
    case EOPNOTSUPP:
    case ENETUNREACH:
        return true;
    default:
        return false;
    }
}

static void binder_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct binder *b = w->data;

    (void)loop;
    (void)revents;
    for (int i = 0; i < BINDER_ACCEPT_BATCH; i++) {
        struct addr peer;
        char name[ADDR_STRLEN];
        int fd;

        peer.len = sizeof(peer.u);
        fd = accept4(b->fd, &peer.u.sa, &peer.len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            if (accept_error_is_transient(errno))
                continue;
            /* EMFILE, ENFILE, ENOBUFS...: waiting would only spin on the pending peer. */
            binder_finish(b, -1, errno, NULL);
            return;
        }
        if (!binder_expects(b, &peer)) {
            b->refused++;
            log_info("bind: refused a connection from %s (not the expected peer)",
                     addr_format(&peer, name, sizeof(name)));
            close(fd);
            continue;
        }
        binder_finish(b, fd, 0, &peer);
        return;
    }
}

struct binder *binder_start(struct ev_loop *loop, const struct addr *local, uint16_t port_min,
                            uint16_t port_max, const struct addr *expected, size_t nexpected,
                            binder_cb cb, void *arg, struct addr *bound)
{
    struct binder *b;
    struct addr where = *local;
    int one = 1, err;

    if (cb == NULL || (nexpected > 0 && expected == NULL)) {
        errno = EINVAL;
        return NULL;
    }
    b = calloc(1, sizeof(*b));
    if (b == NULL)
        return NULL;
    b->fd = -1;
    if (nexpected > 0) {
        b->expected = malloc(nexpected * sizeof(*b->expected));
        if (b->expected == NULL) {
            free(b);
            errno = ENOMEM;
            return NULL;
        }
        memcpy(b->expected, expected, nexpected * sizeof(*b->expected));
    }
    b->nexpected = nexpected;
    b->loop = loop;
    b->cb = cb;
    b->arg = arg;

    b->fd = socket(addr_family(local), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (b->fd < 0)
        goto fail;
    if (setsockopt(b->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
        goto fail;
    if (net_bind_in_range(b->fd, &where, port_min, port_max) < 0)
        goto fail;
    if (listen(b->fd, BINDER_BACKLOG) < 0)
        goto fail;

    /* Only started here; the first callback can come from the loop at the earliest. */
    ev_io_init(&b->watcher, binder_accept_cb, b->fd, EV_READ);
    b->watcher.data = b;
    ev_io_start(loop, &b->watcher);
    if (bound != NULL)
        *bound = where;
    return b;

fail:
    err = errno;
    if (b->fd >= 0)
        close(b->fd);
    free(b->expected);
    free(b);
    errno = err;
    return NULL;
}
