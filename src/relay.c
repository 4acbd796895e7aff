/*
 * The TCP relay: two directions, each moving bytes from one socket to the other either through
 * a pipe with splice(2) (no copy to user space) or through a buffer with read/write.
 *
 * A direction reads only when everything it read before has been written (at most one pipe
 * or buffer of data in flight), so a slow receiver stops the sender: back-pressure without
 * unbounded buffering. EOF on one side is passed on with shutdown(SHUT_WR) once the data before
 * it has been written, so a peer that half-closes still gets its answer.
 */
#include "config.h"

#include "ferry/relay.h"

#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define RELAY_CHUNK (64 * 1024)
/* Reads per event before yielding to other sessions on the loop. */
#define RELAY_ROUNDS 16

struct relay_dir {
    struct relay *relay;
    enum relay_dir_index index;
    int from_fd;
    int to_fd;
    ev_io readable; /* from_fd */
    ev_io writable; /* to_fd */
    bool splice;    /* move data through the pipe, else through buf */
    int pipe_r;
    int pipe_w;
    size_t pipe_len; /* bytes waiting in the pipe */
    uint8_t *buf;    /* buffered mode; in splice mode only early data */
    size_t buf_cap;
    size_t buf_off;
    size_t buf_len; /* bytes waiting in buf at buf_off */
    uint64_t bytes; /* bytes written to to_fd */
    bool eof;       /* from_fd reached end of stream */
    bool shut;      /* shutdown(to_fd, SHUT_WR) done */
};

/* Only for throttled relays: the timers that resume a paused direction. */
struct relay_pause {
    struct relay_throttle throttle;
    ev_timer resume[2]; /* per relay_dir_index */
};

struct relay {
    struct ev_loop *loop;
    relay_done_cb cb;
    void *arg;
    double last_activity;
    struct relay_pause *pause; /* NULL unless throttled */
    struct relay_dir up;       /* client -> target */
    struct relay_dir down;     /* target -> client */
};

static int dir_open_pipe(struct relay_dir *d)
{
    int fds[2];

    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0)
        return -1;
    d->pipe_r = fds[0];
    d->pipe_w = fds[1];
    return 0;
}

static void dir_close_pipe(struct relay_dir *d)
{
    if (d->pipe_r >= 0)
        close(d->pipe_r);
    if (d->pipe_w >= 0)
        close(d->pipe_w);
    d->pipe_r = d->pipe_w = -1;
}

/* Switch a direction to buffered mode (no pipe, or splice refused by the kernel). */
static int dir_use_buffer(struct relay_dir *d)
{
    if (d->pipe_len > 0)
        return -1; /* data already sits in the pipe: keep splicing */
    dir_close_pipe(d);
    d->splice = false;
    if (d->buf_cap < RELAY_CHUNK) {
        uint8_t *buf = realloc(d->buf, RELAY_CHUNK);
        if (buf == NULL)
            return -1;
        d->buf = buf;
        d->buf_cap = RELAY_CHUNK;
    }
    return 0;
}

/* Write what is pending towards to_fd. Returns bytes written, or -1 with errno. */
static ssize_t dir_flush_some(struct relay_dir *d)
{
    ssize_t n;

    if (d->buf_len > 0) {
        n = send(d->to_fd, d->buf + d->buf_off, d->buf_len, MSG_NOSIGNAL);
        if (n > 0) {
            d->buf_off += (size_t)n;
            d->buf_len -= (size_t)n;
            if (d->buf_len == 0)
                d->buf_off = 0;
            if (d->buf_len == 0 && d->splice) {
                /* Early data sent: a splicing direction needs no buffer. */
                free(d->buf);
                d->buf = NULL;
                d->buf_cap = 0;
            }
        }
        return n;
    }
    n = splice(d->pipe_r, NULL, d->to_fd, NULL, d->pipe_len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n > 0)
        d->pipe_len -= (size_t)n;
    return n;
}

/*
 * Read at most max bytes from from_fd into the pipe or buffer. Returns bytes read, 0 at EOF,
 * -1 with errno.
 */
static ssize_t dir_fill(struct relay_dir *d, size_t max)
{
    ssize_t n;

    if (d->splice) {
        n = splice(d->from_fd, NULL, d->pipe_w, NULL, max, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0)
            d->pipe_len = (size_t)n;
        if (n >= 0 || errno != EINVAL || dir_use_buffer(d) < 0)
            return n;
    }
    n = recv(d->from_fd, d->buf, max, 0);
    if (n > 0) {
        d->buf_off = 0;
        d->buf_len = (size_t)n;
    }
    return n;
}

/*
 * Move data in one direction until a socket would block, EOF, or the round budget is spent.
 * Returns 0, or an errno that ends the relay.
 */
static int dir_pump(struct relay_dir *d)
{
    struct relay *r = d->relay;

    for (int round = 0; round < RELAY_ROUNDS; round++) {
        while (d->buf_len + d->pipe_len > 0) {
            ssize_t n = dir_flush_some(d);
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK) {
                    ev_io_stop(r->loop, &d->readable);
                    ev_io_start(r->loop, &d->writable);
                    return 0;
                }
                if (errno == EINTR)
                    continue;
                return errno;
            }
            d->bytes += (uint64_t)n;
        }
        ev_io_stop(r->loop, &d->writable);
        if (d->eof) {
            ev_io_stop(r->loop, &d->readable);
            if (!d->shut) {
                d->shut = true;
                if (shutdown(d->to_fd, SHUT_WR) < 0 && errno != ENOTCONN)
                    return errno;
            }
            return 0;
        }
        size_t max = RELAY_CHUNK;
        if (r->pause != NULL) {
            const struct relay_throttle *t = &r->pause->throttle;
            double wait = 0;
            ssize_t allowed = t->allow(t->arg, d->index, RELAY_CHUNK, &wait);

            if (allowed < 0)
                return errno != 0 ? errno : EIO;
            if (allowed == 0) {
                /* Over the rate: no reads, hence no readiness events, until tokens are back. */
                ev_io_stop(r->loop, &d->readable);
                ev_timer_set(&r->pause->resume[d->index], wait > 0.001 ? wait : 0.001, 0.);
                ev_timer_start(r->loop, &r->pause->resume[d->index]);
                return 0;
            }
            max = (size_t)allowed;
        }
        ssize_t n = dir_fill(d, max);
        if (n > 0 && r->pause != NULL)
            r->pause->throttle.used(r->pause->throttle.arg, d->index, (size_t)n);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                ev_io_start(r->loop, &d->readable);
                return 0;
            }
            if (errno == EINTR)
                continue;
            return errno;
        }
        r->last_activity = ev_now(r->loop);
        if (n == 0)
            d->eof = true;
    }
    /* Budget spent with data still flowing: come back on the next loop iteration. */
    if (d->buf_len + d->pipe_len > 0)
        ev_io_start(r->loop, &d->writable);
    else
        ev_io_start(r->loop, &d->readable);
    return 0;
}

static void relay_stop_watchers(struct relay *r)
{
    ev_io_stop(r->loop, &r->up.readable);
    ev_io_stop(r->loop, &r->up.writable);
    ev_io_stop(r->loop, &r->down.readable);
    ev_io_stop(r->loop, &r->down.writable);
    if (r->pause != NULL) {
        ev_timer_stop(r->loop, &r->pause->resume[RELAY_UP]);
        ev_timer_stop(r->loop, &r->pause->resume[RELAY_DOWN]);
    }
}

/* Run a direction and end the relay on error or when both directions are done. */
static void relay_step(struct relay *r, struct relay_dir *d)
{
    int err = dir_pump(d);

    if (err == 0 && !(r->up.shut && r->down.shut))
        return;
    relay_stop_watchers(r);
    r->cb(err, r->arg);
}

static void readable_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct relay_dir *d = w->data;
    relay_step(d->relay, d);
}

static void writable_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct relay_dir *d = w->data;
    relay_step(d->relay, d);
}

static void resume_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct relay_dir *d = w->data;
    relay_step(d->relay, d);
}

static int dir_init(struct relay *r, struct relay_dir *d, enum relay_dir_index index, int from_fd,
                    int to_fd, bool splice)
{
    d->relay = r;
    d->index = index;
    d->from_fd = from_fd;
    d->to_fd = to_fd;
    d->pipe_r = d->pipe_w = -1;
    ev_io_init(&d->readable, readable_cb, from_fd, EV_READ);
    ev_io_init(&d->writable, writable_cb, to_fd, EV_WRITE);
    d->readable.data = d;
    d->writable.data = d;
    d->splice = splice && dir_open_pipe(d) == 0;
    if (!d->splice)
        return dir_use_buffer(d);
    return 0;
}

struct relay *relay_start(struct ev_loop *loop, int client_fd, int target_fd, enum relay_mode mode,
                          const uint8_t *early, size_t early_len, bool client_eof,
                          const struct relay_throttle *throttle, relay_done_cb cb, void *arg)
{
    struct relay *r = calloc(1, sizeof(*r));
    bool splice = mode != RELAY_BUFFERED;

    if (r == NULL)
        return NULL;
    r->loop = loop;
    r->cb = cb;
    r->arg = arg;
    r->last_activity = ev_now(loop);
    if (dir_init(r, &r->up, RELAY_UP, client_fd, target_fd, splice) < 0 ||
        dir_init(r, &r->down, RELAY_DOWN, target_fd, client_fd, splice) < 0)
        goto fail;
    if (throttle != NULL) {
        r->pause = calloc(1, sizeof(*r->pause));
        if (r->pause == NULL)
            goto fail;
        r->pause->throttle = *throttle;
        ev_timer_init(&r->pause->resume[RELAY_UP], resume_cb, 0., 0.);
        ev_timer_init(&r->pause->resume[RELAY_DOWN], resume_cb, 0., 0.);
        r->pause->resume[RELAY_UP].data = &r->up;
        r->pause->resume[RELAY_DOWN].data = &r->down;
    }
    if (early_len > 0) {
        /* Bytes the client sent with its request go out first, whatever the mode. */
        if (r->up.buf_cap < early_len) {
            free(r->up.buf);
            r->up.buf_cap = 0;
            if ((r->up.buf = malloc(early_len)) == NULL)
                goto fail;
            r->up.buf_cap = early_len;
        }
        memcpy(r->up.buf, early, early_len);
        r->up.buf_len = early_len;
    }
    r->up.eof = client_eof;
    /* Start both directions from the loop, so the callback never runs inside relay_start. */
    ev_io_start(loop, early_len > 0 || client_eof ? &r->up.writable : &r->up.readable);
    ev_io_start(loop, &r->down.readable);
    return r;

fail:
    relay_free(r);
    return NULL;
}

void relay_free(struct relay *r)
{
    if (r == NULL)
        return;
    relay_stop_watchers(r);
    dir_close_pipe(&r->up);
    dir_close_pipe(&r->down);
    free(r->up.buf);
    free(r->down.buf);
    free(r->pause);
    free(r);
}

void relay_bytes(const struct relay *r, uint64_t *up, uint64_t *down)
{
    *up = r->up.bytes;
    *down = r->down.bytes;
}

double relay_last_activity(const struct relay *r)
{
    return r->last_activity;
}
