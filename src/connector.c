/*
 * Outbound connect over every resolved address. Attempts are staggered as in RFC 8305
 * (Happy Eyeballs v2): a new one starts every attempt_delay seconds or as soon as one fails,
 * the first to complete wins and the others are closed.
 */
#include "config.h"

#include "ferry/connector.h"

#include <errno.h>
#include <ev.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct attempt {
    struct connector *connector;
    ev_io watcher;
    int fd;
    bool connected; /* finished inside attempt_open: the event is fed, not awaited */
};

struct connector {
    struct ev_loop *loop;
    ev_timer delay_timer;
    double attempt_delay;
    connector_cb cb;
    void *arg;
    int last_err;
    size_t next; /* index of the next address to try */
    size_t in_flight;
    size_t n;
    struct addr *addrs;
    struct attempt *attempts;
};

void connector_interleave(struct addr *addrs, size_t n)
{
    struct addr *v6, *v4;
    size_t n6 = 0, n4 = 0, i6 = 0, i4 = 0, out = 0;

    if (n < 2)
        return;
    v6 = malloc(n * sizeof(*v6));
    v4 = malloc(n * sizeof(*v4));
    if (v6 == NULL || v4 == NULL) {
        free(v6);
        free(v4);
        return; /* the order is a preference, not a requirement */
    }
    for (size_t i = 0; i < n; i++) {
        if (addr_family(&addrs[i]) == AF_INET6)
            v6[n6++] = addrs[i];
        else
            v4[n4++] = addrs[i];
    }
    /* RFC 8305 section 4: IPv6 first, then alternate families. */
    while (i6 < n6 || i4 < n4) {
        if (i6 < n6)
            addrs[out++] = v6[i6++];
        if (i4 < n4)
            addrs[out++] = v4[i4++];
    }
    free(v6);
    free(v4);
}

static void attempt_close(struct connector *c, struct attempt *a)
{
    if (a->fd < 0)
        return;
    ev_io_stop(c->loop, &a->watcher); /* also drops a fed event still pending */
    close(a->fd);
    a->fd = -1;
    c->in_flight--;
}

static void connector_free(struct connector *c)
{
    for (size_t i = 0; i < c->n; i++) {
        if (c->attempts[i].fd >= 0)
            attempt_close(c, &c->attempts[i]);
    }
    ev_timer_stop(c->loop, &c->delay_timer);
    free(c->attempts);
    free(c->addrs);
    free(c);
}

void connector_cancel(struct connector *c)
{
    if (c != NULL)
        connector_free(c);
}

static void attempt_cb(struct ev_loop *loop, ev_io *w, int revents);

/* Open a socket for attempt i and start connecting. Returns 0 or -1 with errno. */
static int attempt_open(struct connector *c, size_t i)
{
    struct attempt *a = &c->attempts[i];
    const struct addr *to = &c->addrs[i];
    int fd;

    fd = socket(addr_family(to), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    a->connected = connect(fd, &to->u.sa, to->len) == 0;
    /*
     * To a local address the handshake is over by the time connect() returns, though it says
     * EINPROGRESS: asking again tells at once (EISCONN, or the error), which saves waiting
     * for readiness. A remote connect answers EALREADY and is awaited as usual.
     */
    if (!a->connected && errno == EINPROGRESS)
        a->connected = connect(fd, &to->u.sa, to->len) == 0 || errno == EISCONN;
    if (!a->connected && errno != EALREADY && errno != EINPROGRESS) {
        int err = errno;
        close(fd);
        errno = err;
        return -1;
    }
    /* Even an immediate success is reported from the loop: the event is fed, not awaited. */
    a->fd = fd;
    ev_io_init(&a->watcher, attempt_cb, fd, EV_WRITE);
    a->watcher.data = a;
    if (a->connected)
        ev_feed_event(c->loop, &a->watcher, EV_WRITE);
    else
        ev_io_start(c->loop, &a->watcher);
    c->in_flight++;
    return 0;
}

/* Start the next address that can be started; arm the delay timer for the one after. */
static void connector_start_next(struct connector *c)
{
    ev_timer_stop(c->loop, &c->delay_timer);
    while (c->next < c->n) {
        size_t i = c->next++;
        if (attempt_open(c, i) == 0) {
            if (c->next < c->n) {
                ev_timer_set(&c->delay_timer, c->attempt_delay, 0.);
                ev_timer_start(c->loop, &c->delay_timer);
            }
            return;
        }
        c->last_err = errno;
    }
}

static void connector_finish(struct connector *c, int fd, int err, const struct addr *peer)
{
    connector_cb cb = c->cb;
    void *arg = c->arg;
    struct addr peer_copy;

    if (peer != NULL)
        peer_copy = *peer;
    connector_free(c);
    cb(fd, err, peer != NULL ? &peer_copy : NULL, arg);
}

static void attempt_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct attempt *a = w->data;
    struct connector *c = a->connector;
    size_t i = (size_t)(a - c->attempts);
    int err = 0;
    socklen_t len = sizeof(err);

    if (!a->connected && getsockopt(a->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err == 0) {
        int fd = a->fd;

        /* Hand the socket over; the other attempts are closed with the connector. */
        ev_io_stop(loop, &a->watcher);
        a->fd = -1;
        c->in_flight--;
        connector_finish(c, fd, 0, &c->addrs[i]);
        return;
    }
    if (err == EINPROGRESS || err == EALREADY)
        return;
    c->last_err = err;
    attempt_close(c, a);
    connector_start_next(c);
    if (c->in_flight == 0 && c->next >= c->n)
        connector_finish(c, -1, c->last_err, NULL);
}

static void delay_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct connector *c = w->data;

    connector_start_next(c);
    if (c->in_flight == 0 && c->next >= c->n)
        connector_finish(c, -1, c->last_err, NULL);
}

struct connector *connector_start(struct ev_loop *loop, const struct addr *addrs, size_t n,
                                  uint16_t port, double attempt_delay, connector_cb cb, void *arg)
{
    struct connector *c;

    if (n == 0) {
        errno = EHOSTUNREACH;
        return NULL;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->addrs = malloc(n * sizeof(*c->addrs));
    c->attempts = calloc(n, sizeof(*c->attempts));
    if (c->addrs == NULL || c->attempts == NULL) {
        free(c->addrs);
        free(c->attempts);
        free(c);
        errno = ENOMEM;
        return NULL;
    }
    memcpy(c->addrs, addrs, n * sizeof(*c->addrs));
    connector_interleave(c->addrs, n);
    for (size_t i = 0; i < n; i++) {
        addr_set_port(&c->addrs[i], port);
        c->attempts[i].connector = c;
        c->attempts[i].fd = -1;
    }
    c->loop = loop;
    c->n = n;
    c->attempt_delay = attempt_delay;
    c->cb = cb;
    c->arg = arg;
    c->last_err = EHOSTUNREACH;
    ev_timer_init(&c->delay_timer, delay_cb, 0., 0.);
    c->delay_timer.data = c;

    connector_start_next(c);
    if (c->in_flight == 0) {
        int err = c->last_err;
        connector_free(c);
        errno = err;
        return NULL;
    }
    return c;
}
