/*
 * The TCP relay: two directions, each moving bytes from one socket to the other either through
 * a pipe with splice(2) (no copy to user space) or through the worker's scratch buffer with
 * recv/send.
 *
 * An idle relay holds nothing but its two watchers: pipes and buffers come from the worker's
 * pool (relay_pool) for the moment data is in flight and go back as soon as it is written. A
 * read goes out at once; only what the receiver cannot take yet stays in a pooled buffer or
 * pipe, and the direction reads again only when that is written (at most one chunk in flight),
 * so a slow receiver stops the sender: back-pressure without unbounded buffering. EOF on one
 * side is passed on with shutdown(SHUT_WR) once the data before it has been written, so a peer
 * that half-closes still gets its answer.
 *
 * One ev_io per socket serves both directions: the client socket's watcher reads for the up
 * direction and writes for the down direction, and the other way round for the target.
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

#include "ferry/log.h"
#include "ferry/relay_choice.h"

#define RELAY_CHUNK (128 * 1024)
/* Reads per event before yielding to other sessions on the loop. */
#define RELAY_ROUNDS 16
/*
 * Spare pipes and buffers a worker keeps for the next relay that needs one, and how long
 * unused ones stay: an idle worker gives them all back.
 */
#define POOL_MAX_PIPES 64
#define POOL_MAX_BUFS 64
#define POOL_IDLE 1.0
/*
 * relay auto, from bench/ on loopback: recv/send costs less for small messages and for many
 * bulk transfers at once; for a single bulk transfer it depends on the machine, so the worker
 * measures it (relay_choice.h). A direction starts with recv/send and is bulk once
 * RELAY_BULK_READS reads in a row filled a whole chunk; then it is measured, or takes the
 * measured path, splicing only when fewer than RELAY_SPLICE_MAX directions of the worker
 * splice already. It switches back after RELAY_SMALL_SPLICES splices in a row moved less
 * than RELAY_SMALL.
 */
#define RELAY_SPLICE_MAX 1
#define RELAY_BULK_READS 2
#define RELAY_SMALL_SPLICES 4
#define RELAY_SMALL (16 * 1024)

struct relay_pool {
    struct ev_loop *loop;
    ev_timer trim;              /* every POOL_IDLE: frees the spares that tick did not need */
    uint8_t *scratch;           /* RELAY_CHUNK: a read on its way straight out */
    unsigned spliced;           /* relay auto: directions now in splice mode */
    struct relay_choice choice; /* relay auto: copy or splice for bulk directions */
    struct relay_dir *trial;    /* the direction the choice is being measured on, or NULL */
    int pipes[POOL_MAX_PIPES][2];
    size_t npipes;
    size_t low_pipes; /* the fewest spare pipes held since the last tick */
    uint8_t *bufs[POOL_MAX_BUFS];
    size_t nbufs;
    size_t low_bufs;
};

struct relay_dir {
    uint64_t bytes; /* bytes written to the destination socket */
    uint8_t *buf;   /* unsent bytes (a pool buffer), NULL when none */
    uint32_t buf_off;
    uint32_t buf_len;
    int pipe_r; /* a pool pipe holding pipe_len unsent bytes, -1 when none */
    int pipe_w;
    uint32_t pipe_len;
    uint8_t index;   /* enum relay_dir_index */
    bool eof;        /* the source reached end of stream */
    bool shut;       /* shutdown(destination, SHUT_WR) done */
    bool splice;     /* reads go through a pipe */
    bool want_read;  /* waiting for the source to be readable */
    bool want_write; /* waiting for the destination to be writable */
    uint8_t streak;  /* relay auto: bulk reads or small splices in a row */
};

/* Only for throttled relays: the limit and the timers that resume a paused direction. */
struct relay_pause {
    struct relay_throttle throttle;
    ev_timer resume[2]; /* per relay_dir_index */
};

struct relay {
    struct ev_loop *loop;
    struct relay_pool *pool;
    relay_done_cb cb;
    void *arg;
    double last_activity;
    struct relay_pause *pause; /* NULL unless throttled */
    ev_io *io[2];              /* RELAY_UP: the client socket (the caller's watcher), */
    ev_io target_io;           /* RELAY_DOWN: the target socket (this one) */
    struct relay_dir dir[2];   /* RELAY_UP: client -> target, RELAY_DOWN: target -> client */
    uint8_t mode;              /* enum relay_mode */
};

/* --- the pool ---------------------------------------------------------------------------- */

/* Close or free `pipes` spare pipes and `bufs` spare buffers. */
static void pool_release(struct relay_pool *p, size_t pipes, size_t bufs)
{
    while (pipes-- > 0) {
        p->npipes--;
        close(p->pipes[p->npipes][0]);
        close(p->pipes[p->npipes][1]);
    }
    while (bufs-- > 0)
        free(p->bufs[--p->nbufs]);
}

/*
 * A tick: as many spares as were never taken since the last tick were not needed, so they go
 * (all of them after a second without traffic, the surplus of a past burst while it goes on).
 */
static void trim_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct relay_pool *p = w->data;

    pool_release(p, p->low_pipes, p->low_bufs);
    p->low_pipes = p->npipes;
    p->low_bufs = p->nbufs;
    if (p->npipes == 0 && p->nbufs == 0)
        ev_timer_stop(loop, w);
}

/* A spare was taken: the low marks follow. */
static void pool_took(struct relay_pool *p)
{
    if (p->low_pipes > p->npipes)
        p->low_pipes = p->npipes;
    if (p->low_bufs > p->nbufs)
        p->low_bufs = p->nbufs;
}

/* A spare was given back: make sure the ticks run while there are spares. */
static void pool_gave(struct relay_pool *p)
{
    if (!ev_is_active(&p->trim))
        ev_timer_again(p->loop, &p->trim);
}

struct relay_pool *relay_pool_new(struct ev_loop *loop)
{
    struct relay_pool *p = calloc(1, sizeof(*p));

    if (p == NULL)
        return NULL;
    p->scratch = malloc(RELAY_CHUNK);
    if (p->scratch == NULL) {
        free(p);
        return NULL;
    }
    p->loop = loop;
    ev_init(&p->trim, trim_cb);
    p->trim.repeat = POOL_IDLE;
    p->trim.data = p;
    return p;
}

void relay_pool_free(struct relay_pool *p)
{
    if (p == NULL)
        return;
    ev_timer_stop(p->loop, &p->trim);
    pool_release(p, p->npipes, p->nbufs);
    free(p->scratch);
    free(p);
}

/* An empty pipe for d, from the pool or new. Returns 0 or -1 with errno. */
static int pipe_take(struct relay_pool *p, struct relay_dir *d)
{
    int fds[2];

    if (p->npipes > 0) {
        p->npipes--;
        pool_took(p);
        d->pipe_r = p->pipes[p->npipes][0];
        d->pipe_w = p->pipes[p->npipes][1];
        return 0;
    }
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0)
        return -1;
    /* A chunk at once (the default pipe holds 64 KiB); if refused, the pipe is smaller. */
    (void)fcntl(fds[1], F_SETPIPE_SZ, RELAY_CHUNK);
    d->pipe_r = fds[0];
    d->pipe_w = fds[1];
    return 0;
}

/* d's pipe back to the pool when it is empty, else closed (its bytes are lost with d). */
static void pipe_give(struct relay_pool *p, struct relay_dir *d)
{
    if (d->pipe_r < 0)
        return;
    if (d->pipe_len == 0 && p->npipes < POOL_MAX_PIPES) {
        p->pipes[p->npipes][0] = d->pipe_r;
        p->pipes[p->npipes][1] = d->pipe_w;
        p->npipes++;
        pool_gave(p);
    } else {
        close(d->pipe_r);
        close(d->pipe_w);
    }
    d->pipe_r = d->pipe_w = -1;
    d->pipe_len = 0;
}

static uint8_t *buf_take(struct relay_pool *p)
{
    if (p->nbufs > 0) {
        p->nbufs--;
        pool_took(p);
        return p->bufs[p->nbufs];
    }
    return malloc(RELAY_CHUNK);
}

static void buf_give(struct relay_pool *p, struct relay_dir *d)
{
    if (d->buf == NULL)
        return;
    if (p->nbufs < POOL_MAX_BUFS) {
        p->bufs[p->nbufs++] = d->buf;
        pool_gave(p);
    } else {
        free(d->buf);
    }
    d->buf = NULL;
    d->buf_off = d->buf_len = 0;
}

/* --- one direction ----------------------------------------------------------------------- */

static int dir_from_fd(const struct relay *r, const struct relay_dir *d)
{
    return r->io[d->index]->fd;
}

static int dir_to_fd(const struct relay *r, const struct relay_dir *d)
{
    return r->io[d->index ^ 1]->fd;
}

/*
 * Write what d holds (buffer or pipe) to its destination. Returns 0 when nothing is left,
 * 1 when the destination would block, -1 with errno on an error.
 */
static int dir_flush(struct relay *r, struct relay_dir *d)
{
    int to = dir_to_fd(r, d);

    while (d->buf_len > 0) {
        ssize_t n = send(to, d->buf + d->buf_off, d->buf_len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN || errno == EWOULDBLOCK ? 1 : -1;
        }
        d->buf_off += (uint32_t)n;
        d->buf_len -= (uint32_t)n;
        d->bytes += (uint64_t)n;
    }
    buf_give(r->pool, d);
    while (d->pipe_len > 0) {
        ssize_t n =
            splice(d->pipe_r, NULL, to, NULL, d->pipe_len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN || errno == EWOULDBLOCK ? 1 : -1;
        }
        d->pipe_len -= (uint32_t)n;
        d->bytes += (uint64_t)n;
    }
    pipe_give(r->pool, d);
    return 0;
}

/*
 * Read at most max bytes into the scratch buffer and send them on at once; what the
 * destination does not take now is kept in a pool buffer. Returns bytes read, 0 at EOF, -1
 * with errno.
 */
static ssize_t dir_recv(struct relay *r, struct relay_dir *d, size_t max)
{
    uint8_t *scratch = r->pool->scratch;
    ssize_t n = recv(dir_from_fd(r, d), scratch, max, 0);
    ssize_t sent;

    if (n <= 0)
        return n;
    sent = send(dir_to_fd(r, d), scratch, (size_t)n, MSG_NOSIGNAL);
    if (sent < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return -1;
        sent = 0;
    }
    d->bytes += (uint64_t)sent;
    if (sent < n) {
        d->buf = buf_take(r->pool);
        if (d->buf == NULL)
            return -1;
        memcpy(d->buf, scratch + sent, (size_t)(n - sent));
        d->buf_off = 0;
        d->buf_len = (uint32_t)(n - sent);
    }
    return n;
}

/* Read at most max bytes into a pool pipe. Returns as dir_recv; errno EINVAL: cannot splice. */
static ssize_t dir_splice(struct relay *r, struct relay_dir *d, size_t max)
{
    ssize_t n;

    if (pipe_take(r->pool, d) < 0)
        return dir_recv(r, d, max); /* out of descriptors for a pipe: copy this once */
    n = splice(dir_from_fd(r, d), NULL, d->pipe_w, NULL, max, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n <= 0) {
        int saved = errno;
        pipe_give(r->pool, d);
        errno = saved;
        return n;
    }
    d->pipe_len = (uint32_t)n;
    return n;
}

/* Switch d's reads to or from a pipe; relay auto counts the worker's spliced directions. */
static void dir_set_splice(struct relay *r, struct relay_dir *d, bool on)
{
    if (d->splice == on)
        return;
    d->splice = on;
    d->streak = 0;
    if (r->mode == RELAY_AUTO) {
        if (on)
            r->pool->spliced++;
        else
            r->pool->spliced--;
    }
}

/* The measurement of relay auto's bulk path on d stops here, without a verdict. */
static void dir_trial_abandon(struct relay_pool *p, struct relay_dir *d)
{
    if (p->trial != d)
        return;
    relay_choice_abandon(&p->choice);
    p->trial = NULL;
}

/* d is being measured: it moved more bytes, maybe enough for the next phase or the verdict. */
static void dir_trial_step(struct relay *r, struct relay_dir *d)
{
    struct relay_pool *p = r->pool;
    enum relay_path path;

    switch (relay_choice_note(&p->choice, ev_now(r->loop), d->bytes, &path)) {
    case RELAY_CHOICE_GO_ON:
        return;
    case RELAY_CHOICE_SWITCH:
        if (path == RELAY_PATH_SPLICE && p->spliced >= RELAY_SPLICE_MAX) {
            dir_trial_abandon(p, d); /* another direction took the splice slot meanwhile */
            return;
        }
        dir_set_splice(r, d, path == RELAY_PATH_SPLICE);
        return;
    case RELAY_CHOICE_DECIDED:
        p->trial = NULL;
        dir_set_splice(r, d, path == RELAY_PATH_SPLICE);
        log_debug("relay auto: bulk transfers moved %.0f MB/s copied and %.0f MB/s spliced: "
                  "%s them for the next %.0f s",
                  relay_choice_rate(&p->choice, RELAY_PATH_COPY) / 1e6,
                  relay_choice_rate(&p->choice, RELAY_PATH_SPLICE) / 1e6,
                  path == RELAY_PATH_SPLICE ? "splicing" : "copying", RELAY_CHOICE_TTL);
        return;
    case RELAY_CHOICE_ABANDONED:
        p->trial = NULL;
        log_debug("relay auto: a bulk transfer too slow to measure copy against splice");
        return;
    }
}

/* d has become a bulk direction: measure the bulk path on it, or take the measured one. */
static void dir_bulk(struct relay *r, struct relay_dir *d)
{
    struct relay_pool *p = r->pool;
    double now = ev_now(r->loop);

    d->streak = 0;
    if (p->spliced >= RELAY_SPLICE_MAX)
        return; /* the worker's splice slot is taken: copy */
    if (relay_choice_due(&p->choice, now)) {
        p->trial = d;
        relay_choice_begin(&p->choice, now, d->bytes); /* phase 0 copies, as d does */
        return;
    }
    if (relay_choice_path(&p->choice) == RELAY_PATH_SPLICE)
        dir_set_splice(r, d, true);
}

/* relay auto: bulk reads move a direction to the bulk path, small splices move it back. */
static void dir_adapt(struct relay *r, struct relay_dir *d, size_t n, size_t max)
{
    if (r->mode != RELAY_AUTO)
        return;
    if (r->pool->trial == d) {
        dir_trial_step(r, d);
    } else if (!d->splice) {
        d->streak = n == max && max == RELAY_CHUNK ? d->streak + 1 : 0;
        if (d->streak >= RELAY_BULK_READS)
            dir_bulk(r, d);
    } else {
        d->streak = n < RELAY_SMALL ? d->streak + 1 : 0;
        if (d->streak >= RELAY_SMALL_SPLICES)
            dir_set_splice(r, d, false);
    }
}

/* How much d may read now under the throttle; 0 pauses it (a timer resumes), -1: errno. */
static ssize_t dir_allowance(struct relay *r, struct relay_dir *d)
{
    const struct relay_throttle *t;
    double wait = 0;
    ssize_t allowed;

    if (r->pause == NULL)
        return RELAY_CHUNK;
    t = &r->pause->throttle;
    allowed = t->allow(t->arg, (enum relay_dir_index)d->index, RELAY_CHUNK, &wait);
    if (allowed == 0) {
        /* Over the rate: no reads, hence no readiness events, until tokens are back. */
        ev_timer_set(&r->pause->resume[d->index], wait > 0.001 ? wait : 0.001, 0.);
        ev_timer_start(r->loop, &r->pause->resume[d->index]);
    }
    if (allowed < 0 && errno == 0)
        errno = EIO;
    return allowed;
}

/*
 * Move data in one direction until a socket would block, EOF, a pause, or the round budget
 * is spent; sets what the direction waits for. Returns 0, or an errno that ends the relay.
 */
static int dir_pump(struct relay *r, struct relay_dir *d)
{
    d->want_read = d->want_write = false;
    for (int round = 0; round < RELAY_ROUNDS; round++) {
        ssize_t allowed, n;

        switch (dir_flush(r, d)) {
        case 1:
            d->want_write = true;
            return 0;
        case -1:
            return errno;
        default:
            break;
        }
        if (d->eof) {
            if (!d->shut) {
                /* The second EOF ends the relay and the session closes both sockets: the
                 * close sends this FIN, and every byte has been read, so it is not a reset. */
                d->shut = true;
                if (!r->dir[d->index ^ 1].shut && shutdown(dir_to_fd(r, d), SHUT_WR) < 0 &&
                    errno != ENOTCONN)
                    return errno;
            }
            return 0;
        }
        allowed = dir_allowance(r, d);
        if (allowed < 0)
            return errno;
        if (allowed == 0)
            return 0;
        n = d->splice ? dir_splice(r, d, (size_t)allowed) : dir_recv(r, d, (size_t)allowed);
        if (n < 0 && d->splice && errno == EINVAL) {
            dir_trial_abandon(r->pool, d);
            dir_set_splice(r, d, false); /* a socket splice cannot serve: copy from now on */
            n = dir_recv(r, d, (size_t)allowed);
        }
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                d->want_read = true;
                return 0;
            }
            if (errno == EINTR)
                continue;
            return errno;
        }
        r->last_activity = ev_now(r->loop);
        if (n == 0) {
            d->eof = true;
            continue;
        }
        if (r->pause != NULL)
            r->pause->throttle.used(r->pause->throttle.arg, (enum relay_dir_index)d->index,
                                    (size_t)n);
        dir_adapt(r, d, (size_t)n, (size_t)allowed);
        if (d->buf_len > 0) {
            /* The destination took only part: it will say when it takes more. */
            d->want_write = true;
            return 0;
        }
        if (!d->splice && n < allowed) {
            /* A short recv emptied the socket: another would only say EAGAIN. Readiness
             * (level-triggered) brings us back for more data or the EOF. */
            d->want_read = true;
            return 0;
        }
    }
    /* Budget spent with data still flowing: readiness brings us back on the next iteration. */
    if (d->buf_len + d->pipe_len > 0)
        d->want_write = true;
    else
        d->want_read = true;
    return 0;
}

/* --- the two sockets --------------------------------------------------------------------- */

/* Give each socket's watcher the events its two directions wait for. */
static void relay_update(struct relay *r)
{
    for (int i = 0; i < 2; i++) {
        ev_io *io = r->io[i];
        int events =
            (r->dir[i].want_read ? EV_READ : 0) | (r->dir[i ^ 1].want_write ? EV_WRITE : 0);

        if (events == (ev_is_active(io) ? (io->events & (EV_READ | EV_WRITE)) : 0))
            continue;
        ev_io_stop(r->loop, io);
        if (events != 0) {
            ev_io_modify(io, events);
            ev_io_start(r->loop, io);
        }
    }
}

static void relay_stop_watchers(struct relay *r)
{
    ev_io_stop(r->loop, r->io[RELAY_UP]);
    ev_io_stop(r->loop, r->io[RELAY_DOWN]);
    if (r->pause != NULL) {
        ev_timer_stop(r->loop, &r->pause->resume[RELAY_UP]);
        ev_timer_stop(r->loop, &r->pause->resume[RELAY_DOWN]);
    }
}

/* Run the directions that are due; end the relay on error or when both are done. */
static void relay_step(struct relay *r, bool run_up, bool run_down)
{
    int err = 0;

    if (run_up)
        err = dir_pump(r, &r->dir[RELAY_UP]);
    if (err == 0 && run_down)
        err = dir_pump(r, &r->dir[RELAY_DOWN]);
    if (err == 0 && !(r->dir[RELAY_UP].shut && r->dir[RELAY_DOWN].shut)) {
        relay_update(r);
        return;
    }
    relay_stop_watchers(r);
    r->cb(err, r->arg);
}

/* Readiness of socket i: its reading direction (i) and its writing direction (i ^ 1). */
static void io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct relay *r = w->data;
    int i = w == r->io[RELAY_UP] ? RELAY_UP : RELAY_DOWN;
    bool reads = (revents & EV_READ) && r->dir[i].want_read;
    bool writes = (revents & EV_WRITE) && r->dir[i ^ 1].want_write;

    relay_step(r, i == RELAY_UP ? reads : writes, i == RELAY_UP ? writes : reads);
}

static void resume_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct relay *r = w->data;
    int i = w == &r->pause->resume[RELAY_UP] ? RELAY_UP : RELAY_DOWN;

    relay_step(r, i == RELAY_UP, i == RELAY_DOWN);
}

struct relay *relay_start(const struct relay_params *p)
{
    struct ev_loop *loop = p->loop;
    struct ev_io *client_io = p->client_io;
    enum relay_mode mode = p->mode;
    size_t early_len = p->early_len;
    struct relay *r = calloc(1, sizeof(*r));

    if (r == NULL)
        return NULL;
    r->loop = loop;
    r->pool = p->pool;
    r->cb = p->cb;
    r->arg = p->arg;
    r->mode = (uint8_t)mode;
    r->last_activity = ev_now(loop);
    ev_io_stop(loop, client_io);
    ev_set_cb(client_io, io_cb);
    ev_io_modify(client_io, EV_READ);
    ev_io_init(&r->target_io, io_cb, p->target_fd, EV_READ);
    r->io[RELAY_UP] = client_io;
    r->io[RELAY_DOWN] = &r->target_io;
    client_io->data = r->target_io.data = r;
    for (int i = 0; i < 2; i++) {
        struct relay_dir *d = &r->dir[i];

        d->index = (uint8_t)i;
        d->pipe_r = d->pipe_w = -1;
        d->splice = mode == RELAY_SPLICE;
        d->want_read = true;
    }
    if (p->throttle != NULL) {
        r->pause = calloc(1, sizeof(*r->pause));
        if (r->pause == NULL)
            goto fail;
        r->pause->throttle = *p->throttle;
        for (int i = 0; i < 2; i++) {
            ev_timer_init(&r->pause->resume[i], resume_cb, 0., 0.);
            r->pause->resume[i].data = r;
        }
    }
    if (early_len > 0) {
        /* Bytes the client sent with its request go out first, whatever the mode. */
        struct relay_dir *up = &r->dir[RELAY_UP];

        if (early_len > RELAY_CHUNK || (up->buf = buf_take(p->pool)) == NULL)
            goto fail;
        memcpy(up->buf, p->early, early_len);
        up->buf_len = (uint32_t)early_len;
        up->want_read = false;
        up->want_write = true;
    }
    r->dir[RELAY_UP].eof = p->client_eof;
    if (p->client_eof) {
        r->dir[RELAY_UP].want_read = false;
        r->dir[RELAY_UP].want_write = true; /* pass the EOF on once writable */
    }
    /* Watchers only: the callback runs from the loop, never inside relay_start. */
    relay_update(r);
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
    for (int i = 0; i < 2; i++) {
        buf_give(r->pool, &r->dir[i]);
        pipe_give(r->pool, &r->dir[i]);
        dir_trial_abandon(r->pool, &r->dir[i]);
        dir_set_splice(r, &r->dir[i], false);
    }
    free(r->pause);
    free(r);
}

void relay_bytes(const struct relay *r, uint64_t *up, uint64_t *down)
{
    *up = r->dir[RELAY_UP].bytes;
    *down = r->dir[RELAY_DOWN].bytes;
}

double relay_last_activity(const struct relay *r)
{
    return r->last_activity;
}

bool relay_half_closed(const struct relay *r)
{
    return r->dir[RELAY_UP].eof || r->dir[RELAY_DOWN].eof;
}

bool relay_splicing(const struct relay *r)
{
    return r->dir[RELAY_UP].splice || r->dir[RELAY_DOWN].splice;
}
