/* The tunnel in the daemon: handshake, records and streams over one connection (tunnel_conn.h). */
#include "config.h"

#include "ferry/tunnel_conn.h"

#include <errno.h>
#include <ev.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ferry/conf.h"
#include "ferry/limits.h"
#include "ferry/log.h"
#include "ferry/net.h"
#include "ferry/relay.h"
#include "ferry/route.h"
#include "ferry/session.h"
#include "ferry/snapshot.h"
#include "ferry/socks5.h"
#include "ferry/tunnel_keys.h"
#include "ferry/tunnel_noise.h"
#include "ferry/tunnel_record.h"
#include "ferry/tunnel_udp.h"
#include "ferry/upstream_socks.h"

/*
 * Records are sealed on demand ("pull"): a stream with bytes ready waits in the connection's
 * ready ring, unread, until the socket can take more (its unsent queue below NOTSENT_LOWAT);
 * then streams are read round-robin, up to PULL_BUDGET sealed bytes per send. Control records
 * (OPEN, REPLY, WINDOW, EOF, RESET, PONG) are sealed when they arise, behind at most that.
 */
#define PULL_BUDGET (64u * 1024)
/* The kernel's unsent bytes (TCP_NOTSENT_LOWAT): keeps an interactive record near the front. */
#define NOTSENT_LOWAT (32 * 1024)
/* Records one stream gives per turn: STREAM_BATCH when it is the only one ready, else one. */
#define STREAM_BATCH 4
/* Data is only sealed when the socket takes it, so the unsent queue holds control records (PONG,
 * WINDOW...) and one budget: a queue past this is a peer that sends and never reads. */
#define OUT_MAX (16u * 1024 * 1024)
/* Receive buffer: several whole records per read. */
#define IN_CAP (8 * TUNNEL_RECORD_SIZE(TUNNEL_RECORD_PAYLOAD_MAX))
/* Until the handshake is done: the largest handshake message with its length, and one byte
 * more (a server refuses bytes after msg1); the buffers grow at conn_up, so a connection that
 * never proves a key holds about 4 KiB, not the 200 KiB of a working one. */
#define HS_IN_CAP (2 + TUNNEL_MSG1_OVERHEAD + TUNNEL_HELLO_MAX + 1)
#define HS_OUT_CAP 2048
/* msg1 lengths the server accepts (doc 2.4), msg2 the client accepts. */
#define MSG1_MIN (TUNNEL_MSG1_OVERHEAD + TUNNEL_HELLO_LEN)
#define MSG1_MAX (TUNNEL_MSG1_OVERHEAD + TUNNEL_HELLO_MAX)
#define MSG2_MIN (TUNNEL_MSG2_OVERHEAD + TUNNEL_WELCOME_LEN)
#define MSG2_MAX (TUNNEL_MSG2_OVERHEAD + TUNNEL_HELLO_MAX)
/* Streams open at once on one connection: a server refuses OPEN past it (REP 1). A client opens
 * another connection STREAMS_SLACK streams earlier: the server may still count streams the
 * client has already let go (their last bytes still going to a slow target), and the two counts
 * must not meet. */
#define STREAMS_MAX 4096
#define STREAMS_SLACK 256
/* A stream's request or reply before it is whole (RESOLVE_PTR replies carry a name). */
#define HEAD_MAX 600

enum conn_state {
    C_WAIT,       /* client: waiting for its turn to shake hands (hs_busy) */
    C_CONNECTING, /* client: TCP connect */
    C_HANDSHAKE,  /* msg1 / msg2 */
    C_UP,         /* records */
    C_SILENT,     /* server: refused; waits for the negotiate deadline, then closes */
};

enum stream_phase {
    P_REQUEST, /* client: the chain's request, read from the socketpair, becomes OPEN */
    P_REPLY,   /* server: the session's reply, read from the socketpair, becomes REPLY */
    P_DATA,
};

struct tconn;
struct tstream;

/*
 * A session's relay through a tunnel stream (tunnel_relay_start): the stream reads and writes
 * the session's own socket, no socketpair between. Owned by the session; the stream points to it
 * while both live, and it outlives the stream with the figures the session asks for at its end.
 */
struct tunnel_relay {
    struct tstream *s; /* NULL once the stream is gone */
    relay_done_cb cb;
    void *arg;
    uint64_t bytes[2]; /* RELAY_UP, RELAY_DOWN */
    double last;       /* ev_now of the last byte moved */
    int idle_fd;       /* the session's end of the socketpair, for it to close, or -1 */
};

struct tstream {
    struct tstream *prev, *next;
    struct tconn *c;
    uint32_t id;
    int fd; /* our end of the socketpair; the session's socket once tr is set */
    ev_io rio_own, wio;
    ev_io *rio; /* rio_own, or the session's watcher on its client (tunnel_relay_start) */
    enum stream_phase phase;
    bool udp; /* a UDP ASSOCIATE, whose reply is followed by its grant (doc 4.3): the
               * buffers that held the grant's keys are wiped when the stream ends */
    uint8_t head[HEAD_MAX];
    size_t head_len;
    uint8_t *q; /* bytes for the socketpair */
    size_t qhead, qlen, qcap;
    size_t q_nocredit; /* of them, REPLY/OPEN bytes that return no window */
    int64_t send_win;  /* DATA we may still send */
    uint32_t recv_win; /* DATA the peer may still send */
    uint32_t credit;   /* written out and not yet returned by WINDOW */
    bool local_eof;    /* the socketpair said EOF: EOF sent */
    bool peer_eof;     /* EOF received */
    bool shut;         /* shutdown(SHUT_WR) done */
    bool dirty;        /* bytes queued while the connection reads records: written after */
    struct tstream *dirty_next; /* the connection's dirty list */
    /* The head without the socketpair (tunnel_session_write): head_direct, the session's head
     * came straight from it; sess_raw, the session wrote into the socketpair itself, so
     * everything it writes goes that way from then on, in order. pair_data: the stream wrote
     * into the socketpair bytes (DATA, a request) the session may not have read. */
    bool head_direct, sess_raw, pair_data;

    /* The ready ring (conn_pull): bytes to read when the socket takes records. */
    bool ready;
    struct tstream *rnext, *rprev;

    /* A session relaying through this stream (tunnel_relay_start). */
    int sess_fd;             /* the session's end of the socketpair (-1: none, or adopted) */
    struct tunnel_relay *tr; /* set: fd is the session's socket, not ours */
    int end_err;             /* why the stream ends, for tr's callback: 0 a clean end */

    struct tstream *hnext; /* the connection's table by id */
    bool got_reply;        /* client: REPLY came */

    /* Client: the chain's callback for REPLY (tunnel_client_open), instead of the socketpair.
     * The REPLY waits in head, on the thread's deliver list, until the end of the loop's round
     * (records are being read then: a relay could not start). */
    tunnel_reply_cb reply_cb;
    void *reply_arg;
    bool deliver_pending;
    struct tstream *dnext;
    /* A stream with no socketpair (tunnel_stream_open): fd -1 until a relay starts; h is its
     * owner's handle, told of an end before the REPLY. */
    struct tunnel_stream *h;
};

/* The handle of a stream with no socketpair (tunnel_conn.h): it outlives the stream. */
struct tunnel_stream {
    struct tstream *s; /* NULL once the stream is gone */
    tunnel_reply_cb cb;
    void *arg;
    bool failing; /* on fail_list: the stream ended before its REPLY reached cb */
    struct tunnel_stream *fnext;
};

struct tconn {
    struct tconn *prev, *next; /* the thread's list */
    struct ev_loop *loop;
    struct session_ctx *ctx; /* server side */
    bool server;
    enum conn_state st;
    int fd;
    ev_io rio, wio;
    ev_timer timer;
    ev_timer poll;   /* client: C_WAIT */
    bool hs_holding; /* client: holds its handshake slot (hs_busy) */
    struct tunnel_handshake hs;
    struct tunnel_record_tx tx;
    struct tunnel_record_rx rx;
    uint8_t *in;
    size_t in_len, in_cap;
    struct limit_hold hold; /* server, until the handshake is done: a negotiating connection */
    bool holding;
    uint8_t *out;
    size_t out_head, out_len, out_cap;
    struct tstream *streams;
    unsigned nstreams;
    uint32_t last_id; /* the highest stream id opened (client: given to an OPEN) */
    bool batching;    /* reading records: streams' queues are written once after them */
    struct tstream *dirty_list; /* streams with bytes queued during this read */
    /* the ready ring, in turn from rhead */
    struct tstream *rhead, *rtail;
    /* streams by id: a power of two of chains, grown with the streams */
    struct tstream **table;
    unsigned table_size;
    char *user; /* server: the key's user */
    struct addr peer, local;
    char name[ADDR_STRLEN + PARENT_NAME_MAX + 16]; /* for logs */
    /* client: which parent this connects to */
    char pname[PARENT_NAME_MAX + 1];
    struct socks_dest paddr;
    uint8_t server_key[TUNNEL_DHLEN], key_pub[TUNNEL_DHLEN];
    enum tunnel_suite suite; /* the cipher: the parent's (client), msg1's prefix (server) */
    bool flush_pending;      /* on flush_list: records wait for the end of the loop's round */
    struct tconn *flush_next;
};

static _Thread_local struct tconn *conns;
/* Streams freed by this thread: a caller that cannot tell which compares before and after. */
static _Thread_local unsigned long stream_frees;
static _Thread_local unsigned long conn_frees;
/* Connections with records sealed by stream events in this round of the loop: written once,
 * just before the loop waits (an ev_prepare), so the OPENs, REPLYs and DATA of many streams
 * go out in one send. */
static _Thread_local ev_prepare flush_prep;
static _Thread_local struct ev_loop *flush_loop;
static _Thread_local struct tconn *flush_list;
static _Thread_local struct tstream *deliver_list;
static _Thread_local struct tunnel_stream *fail_list;
static void round_schedule(struct ev_loop *loop);
static struct tstream *stream_by_session_fd(int fd);

/* The replay table of section 2.5, shared by every worker. */
static pthread_mutex_t replay_lock = PTHREAD_MUTEX_INITIALIZER;
static struct tunnel_replay *replay;

static void conn_free(struct tconn *c);
static void hs_release(struct tconn *c);
static void conn_die(struct tconn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void conn_flush(struct tconn *c);
static void conn_flush_soon(struct tconn *c);
static int conn_pull(struct tconn *c);
static void stream_readable(struct ev_loop *loop, ev_io *w, int revents);
static void stream_writable(struct ev_loop *loop, ev_io *w, int revents);

/* --- sealing ----------------------------------------------------------------------------- */

/* Seal a record at the end of the unsent queue. -1: the connection is dead (freed). */
static int conn_seal(struct tconn *c, uint8_t type, uint32_t id, const uint8_t *p, size_t len)
{
    size_t need = TUNNEL_RECORD_SEAL_MAX(len), n = 0;
    int rc;

    if (c->out_len + need > OUT_MAX) {
        conn_die(c, "the peer does not read: over %u bytes wait for it", OUT_MAX);
        return -1;
    }

    /* Compact only once the sent part is at least half the buffer: each byte moves O(1) times. */
    if (c->out_head + c->out_len + need > c->out_cap && c->out_head >= c->out_cap / 2) {
        memmove(c->out, c->out + c->out_head, c->out_len);
        c->out_head = 0;
    }
    if (c->out_head + c->out_len + need > c->out_cap) {
        size_t cap = c->out_cap * 2 > c->out_head + c->out_len + need
                         ? c->out_cap * 2
                         : c->out_head + c->out_len + need;
        uint8_t *o = realloc(c->out, cap);

        if (o == NULL) {
            conn_die(c, "out of memory");
            return -1;
        }
        c->out = o;
        c->out_cap = cap;
    }
    rc = tunnel_record_seal(&c->tx, type, id, p, len, c->out + c->out_head + c->out_len,
                            c->out_cap - c->out_head - c->out_len, &n);
    if (rc != TUNNEL_REC_OK) {
        conn_die(c, "sealing a record: %s", tunnel_record_strerror(rc));
        return -1;
    }
    c->out_len += n;
    return 0;
}

/* Raw bytes (a handshake message with its length) on the unsent queue. */
static int conn_queue_raw(struct tconn *c, const uint8_t *p, size_t len)
{
    if (c->out_cap - c->out_head - c->out_len < len) {
        uint8_t *o = realloc(c->out, c->out_cap + len);

        if (o == NULL)
            return -1;
        c->out = o;
        c->out_cap += len;
    }
    memcpy(c->out + c->out_head + c->out_len, p, len);
    c->out_len += len;
    return 0;
}

/* --- streams ----------------------------------------------------------------------------- */

/* A REPLY waiting for the end of the round (flush_round) is not delivered after all. */
static void deliver_cancel(struct tstream *s)
{
    struct tstream **pp = &deliver_list;

    if (!s->deliver_pending)
        return;
    while (*pp != s)
        pp = &(*pp)->dnext;
    *pp = s->dnext;
    s->deliver_pending = false;
    sodium_memzero(s->head, s->head_len);
    s->head_len = 0;
}

/* Off the connection's list of streams to write after the read of records. */
static void dirty_remove(struct tstream *s)
{
    struct tstream **pp = &s->c->dirty_list;

    if (!s->dirty)
        return;
    while (*pp != s)
        pp = &(*pp)->dirty_next;
    *pp = s->dirty_next;
    s->dirty = false;
}

/* The ready ring: a stream joins at the tail when its local end has bytes for the peer. */
static void ready_push(struct tstream *s)
{
    struct tconn *c = s->c;

    s->ready = true;
    s->rnext = NULL;
    s->rprev = c->rtail;
    if (c->rtail != NULL)
        c->rtail->rnext = s;
    else
        c->rhead = s;
    c->rtail = s;
}

static void ready_remove(struct tstream *s)
{
    struct tconn *c = s->c;

    if (!s->ready)
        return;
    if (s->rprev != NULL)
        s->rprev->rnext = s->rnext;
    else
        c->rhead = s->rnext;
    if (s->rnext != NULL)
        s->rnext->rprev = s->rprev;
    else
        c->rtail = s->rprev;
    s->ready = false;
    s->rnext = s->rprev = NULL;
}

/* --- streams by id, and by the session's fd --------------------------------------------- */

/* Fibonacci hashing: the product's high bits, so that ids a power of two apart (which a peer
 * may pick) spread over the table as consecutive ones do. table_size is 16 or more, a power of
 * two. */
static unsigned table_index(const struct tconn *c, uint32_t id)
{
    return (unsigned)((uint32_t)(id * 2654435761u) >> (32 - __builtin_ctz(c->table_size)));
}

static struct tstream *stream_find(const struct tconn *c, uint32_t id)
{
    if (c->table == NULL)
        return NULL;
    for (struct tstream *s = c->table[table_index(c, id)]; s != NULL; s = s->hnext) {
        if (s->id == id)
            return s;
    }
    return NULL;
}

/* Add s to the table, doubling it when the streams outnumber its chains. -1: out of memory. */
static int table_add(struct tconn *c, struct tstream *s)
{
    if (c->nstreams >= c->table_size) {
        unsigned size = c->table_size == 0 ? 16 : c->table_size * 2;
        struct tstream **table = calloc(size, sizeof(*table));

        if (table == NULL)
            return -1;
        free(c->table);
        c->table = table;
        c->table_size = size;
        for (struct tstream *k = c->streams; k != NULL; k = k->next) {
            unsigned i = table_index(c, k->id);

            if (k->id == 0 || k == s)
                continue; /* a client's stream before its OPEN; s (in the list when opened) */
            k->hnext = c->table[i];
            c->table[i] = k;
        }
    }
    s->hnext = c->table[table_index(c, s->id)];
    c->table[table_index(c, s->id)] = s;
    return 0;
}

static void table_remove(struct tconn *c, struct tstream *s)
{
    struct tstream **pp;

    if (c->table == NULL || s->id == 0)
        return;
    pp = &c->table[table_index(c, s->id)];
    while (*pp != NULL && *pp != s)
        pp = &(*pp)->hnext;
    if (*pp == s)
        *pp = s->hnext;
}

/* The thread's streams by the fd of their session's end of the socketpair (tunnel_relay_start). */
static _Thread_local struct tstream **by_fd;
static _Thread_local size_t by_fd_size;

static void by_fd_set(int fd, struct tstream *s)
{
    if ((size_t)fd >= by_fd_size) {
        size_t size = by_fd_size == 0 ? 1024 : by_fd_size;
        struct tstream **a;

        while (size <= (size_t)fd)
            size *= 2;
        if ((a = realloc(by_fd, size * sizeof(*a))) == NULL)
            return; /* that stream's session keeps the socketpair */
        memset(a + by_fd_size, 0, (size - by_fd_size) * sizeof(*a));
        by_fd = a;
        by_fd_size = size;
    }
    by_fd[fd] = s;
}

static void by_fd_clear(struct tstream *s)
{
    if (s->sess_fd >= 0 && (size_t)s->sess_fd < by_fd_size && by_fd[s->sess_fd] == s)
        by_fd[s->sess_fd] = NULL;
    s->sess_fd = -1;
}

/*
 * Free a stream. A session relaying through it is told (its callback runs last, once the stream
 * is gone): its socket is the session's to close, reset (SO_LINGER 0) when the stream was
 * aborted so that its peer sees an abort, not an end (doc 8).
 */
static void stream_free(struct tstream *s)
{
    struct tconn *c = s->c;
    struct tunnel_relay *tr = s->tr;
    int err = s->end_err;

    deliver_cancel(s);
    if (s->h != NULL) {
        struct tunnel_stream *h = s->h;

        h->s = NULL;
        if (s->reply_cb != NULL) {
            /* Ended before its REPLY reached the owner: it learns at the round's end. */
            h->failing = true;
            h->fnext = fail_list;
            fail_list = h;
            round_schedule(c->loop);
        }
    }
    dirty_remove(s);
    ready_remove(s);
    table_remove(c, s);
    by_fd_clear(s);
    ev_io_stop(c->loop, s->rio);
    ev_io_stop(c->loop, &s->wio);
    if (tr != NULL) {
        if (err != 0) {
            struct linger lg = {.l_onoff = 1, .l_linger = 0};

            setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        }
        tr->s = NULL;
    } else if (s->fd >= 0) {
        close(s->fd);
    }
    if (s->udp) {
        if (s->q != NULL)
            sodium_memzero(s->q, s->qcap);
        sodium_memzero(s->head, sizeof(s->head));
    }
    free(s->q);
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        c->streams = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    c->nstreams--;
    free(s);
    stream_frees++;
    if (tr != NULL)
        tr->cb(err, tr->arg);
}

static struct tstream *stream_new(struct tconn *c, uint32_t id, int fd)
{
    struct tstream *s = calloc(1, sizeof(*s));

    if (s == NULL)
        return NULL;
    s->c = c;
    s->id = id;
    s->fd = fd;
    s->sess_fd = -1;
    s->end_err = ECONNABORTED;
    s->phase = c->server ? P_REPLY : P_REQUEST;
    s->send_win = TUNNEL_STREAM_WINDOW;
    s->recv_win = TUNNEL_STREAM_WINDOW;
    s->rio = &s->rio_own;
    ev_io_init(s->rio, stream_readable, fd, EV_READ);
    ev_io_init(&s->wio, stream_writable, fd, EV_WRITE);
    s->rio->data = s->wio.data = s;
    if (id != 0 && table_add(c, s) < 0) {
        free(s);
        return NULL;
    }
    s->next = c->streams;
    if (c->streams != NULL)
        c->streams->prev = s;
    c->streams = s;
    c->nstreams++;
    if (c->st == C_UP && fd >= 0)
        ev_io_start(c->loop, s->rio);
    return s;
}

/* The session's end of the socketpair: a session may hand its relay to the stream by it. */
static void stream_set_session_fd(struct tstream *s, int fd)
{
    s->sess_fd = fd;
    by_fd_set(fd, s);
}

/* Both directions done and everything written: the stream is over. */
static bool stream_try_done(struct tstream *s)
{
    if (s->local_eof && s->peer_eof && s->qlen == 0) {
        s->end_err = 0;
        stream_free(s);
        return true;
    }
    return false;
}

/* Whether the stream's local end should be watched now (not while it waits in the ready ring). */
static bool stream_readable_now(const struct tstream *s)
{
    return !s->local_eof && !s->ready && (s->phase != P_DATA || s->send_win > 0);
}

/*
 * The local end failed or closed too early: free the stream and tell the peer. A server
 * stream whose session ended before its reply (a limit at its start, shutdown) answers a
 * failure reply and EOF: a refusal of this request, not a fault of the tunnel. Otherwise
 * RESET. -1: the connection died.
 */
static int stream_abort(struct tstream *s)
{
    struct tconn *c = s->c;
    uint32_t id = s->id;
    bool unreplied = c->server && s->phase == P_REPLY;
    uint8_t reason = 0;

    stream_free(s);
    if (c->st != C_UP)
        return 0;
    if (unreplied) {
        uint8_t msg[SOCKS5_REPLY_MAX];
        size_t len = socks5_encode_reply(msg, SOCKS5_REP_GENERAL_FAILURE, NULL);

        if (conn_seal(c, TUNNEL_REC_REPLY, id, msg, len) < 0)
            return -1;
        return conn_seal(c, TUNNEL_REC_EOF, id, NULL, 0);
    }
    return conn_seal(c, TUNNEL_REC_RESET, id, &reason, 1);
}

/* Write the queue to the socketpair; return credit by WINDOW. -1: the connection died. */
static int stream_flush(struct tstream *s, bool *gone)
{
    struct tconn *c = s->c;

    *gone = false;
    if (s->fd < 0)
        return 0; /* no socket yet (tunnel_stream_open): the queue waits for the relay */
    while (s->qlen > 0) {
        ssize_t n = send(s->fd, s->q + s->qhead, s->qlen, MSG_NOSIGNAL);
        size_t free_bytes;

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            ev_io_start(c->loop, &s->wio);
            return 0;
        }
        if (n < 0) {
            /* The local end is gone: abort the stream at the peer. */
            *gone = true;
            s->end_err = errno;
            return stream_abort(s);
        }
        if (s->tr != NULL) {
            s->tr->bytes[c->server ? RELAY_UP : RELAY_DOWN] += (uint64_t)n;
            s->tr->last = ev_now(c->loop);
        }
        free_bytes = (size_t)n;
        if (s->q_nocredit > 0) {
            size_t k = s->q_nocredit < free_bytes ? s->q_nocredit : free_bytes;

            s->q_nocredit -= k;
            free_bytes -= k;
        }
        s->credit += (uint32_t)free_bytes;
        s->qhead += (size_t)n;
        s->qlen -= (size_t)n;
    }
    s->qhead = 0;
    ev_io_stop(c->loop, &s->wio);
    if (s->credit >= TUNNEL_WINDOW_UPDATE && !s->peer_eof) {
        uint8_t w[4] = {(uint8_t)(s->credit >> 24), (uint8_t)(s->credit >> 16),
                        (uint8_t)(s->credit >> 8), (uint8_t)s->credit};

        s->recv_win += s->credit;
        s->credit = 0;
        if (conn_seal(c, TUNNEL_REC_WINDOW, s->id, w, sizeof(w)) < 0)
            return -1;
    }
    if (s->peer_eof && !s->shut) {
        shutdown(s->fd, SHUT_WR);
        s->shut = true;
    }
    *gone = stream_try_done(s);
    return 0;
}

/* Bytes from the peer for the socketpair. */
static int stream_queue(struct tstream *s, const uint8_t *p, size_t len, bool credit)
{
    bool gone;

    if (s->qhead + s->qlen + len > s->qcap) {
        if (s->qhead > 0) {
            memmove(s->q, s->q + s->qhead, s->qlen);
            s->qhead = 0;
        }
        if (s->qlen + len > s->qcap) {
            /* Small at first: most streams queue a reply or a short answer, and a 32 KiB
             * block per stream made malloc grow and trim the worker's heap at every stream
             * (sysmalloc, madvise); a bulk stream doubles its way up to the window. */
            size_t cap = s->qcap == 0 ? 2048 : s->qcap;
            uint8_t *q;

            while (cap < s->qlen + len)
                cap *= 2;
            q = realloc(s->q, cap);
            if (q == NULL) {
                conn_die(s->c, "out of memory");
                return -1;
            }
            s->q = q;
            s->qcap = cap;
        }
    }
    memcpy(s->q + s->qhead + s->qlen, p, len);
    s->qlen += len;
    if (!credit)
        s->q_nocredit += len;
    /* A client's REPLY is read whole by its chain before the relay starts; anything else may
     * still wait in the socketpair then. */
    if (credit || s->c->server)
        s->pair_data = true;
    if (ev_is_active(&s->wio))
        return 0;
    if (s->c->batching) {
        /* One write for all of this stream's records of the read. */
        if (!s->dirty) {
            s->dirty = true;
            s->dirty_next = s->c->dirty_list;
            s->c->dirty_list = s;
        }
        return 0;
    }
    return stream_flush(s, &gone);
}

/* The head of a stream (request or reply) is whole at `used` bytes: send it, then the rest. */
static int stream_head_done(struct tstream *s, size_t used)
{
    struct tconn *c = s->c;
    uint8_t type = c->server ? TUNNEL_REC_REPLY : TUNNEL_REC_OPEN;

    if (!c->server) {
        /* The id now: the server takes OPENs only in increasing order (doc 4.1), and streams'
         * requests come in whatever order their chains write them. */
        s->id = ++c->last_id;
        if (table_add(c, s) < 0) {
            conn_die(c, "out of memory");
            return -1;
        }
    }
    if (conn_seal(c, type, s->id, s->head, used) < 0)
        return -1;
    s->phase = P_DATA;
    if (s->head_len > used) {
        size_t rest = s->head_len - used;

        if (conn_seal(c, TUNNEL_REC_DATA, s->id, s->head + used, rest) < 0)
            return -1;
        s->send_win -= (int64_t)rest;
    }
    s->head_len = 0;
    return 0;
}

/* Read the head (request or reply) from the socketpair until it is whole. */
static void stream_head_input(struct tstream *s);

static void stream_read_head(struct tstream *s)
{
    struct tconn *c = s->c;
    ssize_t n = recv(s->fd, s->head + s->head_len, sizeof(s->head) - s->head_len, 0);

    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        /* Closed before its head was whole: on the client nothing was sent yet. */
        if (!c->server) {
            stream_free(s);
            return;
        }
        if (stream_abort(s) == 0)
            conn_flush_soon(c);
        return;
    }
    s->head_len += (size_t)n;
    stream_head_input(s);
}

/* The head so far is in s->head: when it is whole, send it (OPEN or REPLY) and the rest. */
static void stream_head_input(struct tstream *s)
{
    struct tconn *c = s->c;
    size_t used = 0;
    enum proto_status st;

    if (c->server) {
        uint8_t rep;
        struct socks_dest bound;

        st = upstream_socks5_parse_reply(s->head, s->head_len, &rep, &bound, &used);
        if (st == PROTO_OK && s->udp && rep == SOCKS5_REP_SUCCEEDED) {
            used += TUNNEL_UDP_GRANT_LEN; /* the association's keys travel in the REPLY */
            if (s->head_len < used)
                st = PROTO_NEED_MORE;
        }
    } else {
        struct socks5_request req;
        uint8_t rep;

        st = socks5_parse_request(s->head, s->head_len, &req, &used, &rep);
        if (st == PROTO_OK)
            s->udp = req.cmd == SOCKS5_CMD_UDP_ASSOCIATE;
    }
    if (st == PROTO_NEED_MORE && s->head_len < sizeof(s->head))
        return;
    if (st != PROTO_OK) {
        uint32_t id = s->id;
        uint8_t reason = SOCKS5_REP_GENERAL_FAILURE;

        log_notice("tunnel %s: stream %u: not a SOCKS5 %s", c->name, id,
                   c->server ? "reply" : "request");
        stream_free(s);
        if (c->server && conn_seal(c, TUNNEL_REC_RESET, id, &reason, 1) < 0)
            return;
        conn_flush_soon(c);
        return;
    }
    if (stream_head_done(s, used) < 0)
        return;
    if (s->udp)
        sodium_memzero(s->head, sizeof(s->head));
    conn_flush_soon(c);
}

static void stream_readable(struct ev_loop *loop, ev_io *w, int revents)
{
    struct tstream *s = w->data;
    struct tconn *c = s->c;

    (void)loop;
    (void)revents;
    if (s->phase != P_DATA) {
        stream_read_head(s);
        return;
    }
    /* Read when the socket can take records (conn_pull), in turn with the other streams. */
    ev_io_stop(c->loop, s->rio);
    ready_push(s);
    if (!ev_is_active(&c->wio) && conn_pull(c) == 0)
        conn_flush_soon(c);
}

static void stream_writable(struct ev_loop *loop, ev_io *w, int revents)
{
    struct tstream *s = w->data;
    struct tconn *c = s->c;
    bool gone;

    (void)loop;
    (void)revents;
    if (stream_flush(s, &gone) == 0)
        conn_flush_soon(c);
}

/* --- the connection ---------------------------------------------------------------------- */

static void conn_free(struct tconn *c)
{
    if (c->flush_pending) {
        struct tconn **pp = &flush_list;

        while (*pp != c)
            pp = &(*pp)->flush_next;
        *pp = c->flush_next;
    }
    while (c->streams != NULL)
        stream_free(c->streams);
    if (c->holding)
        limits_hold_release(&c->hold);
    ev_io_stop(c->loop, &c->rio);
    ev_io_stop(c->loop, &c->wio);
    ev_timer_stop(c->loop, &c->timer);
    ev_timer_stop(c->loop, &c->poll);
    hs_release(c);
    if (c->fd >= 0)
        close(c->fd);
    tunnel_handshake_wipe(&c->hs);
    tunnel_record_tx_wipe(&c->tx);
    tunnel_record_rx_wipe(&c->rx);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    free(c->in);
    free(c->out);
    free(c->table);
    free(c->user);
    free(c);
    conn_frees++;
}

/* An error: nothing more is sent, every stream is aborted (their local ends closed). */
static void conn_die(struct tconn *c, const char *fmt, ...)
{
    char why[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    log_notice("tunnel %s: %s; %u stream%s aborted", c->name, why, c->nstreams,
               c->nstreams == 1 ? "" : "s");
    conn_free(c);
}

/*
 * Seal records from the streams in the ready ring, round-robin, until PULL_BUDGET bytes wait:
 * a stream alone in the ring gives up to STREAM_BATCH records in one read, otherwise each gives
 * one record per turn. -1: the connection died.
 */
static int conn_pull(struct tconn *c)
{
    static _Thread_local uint8_t buf[STREAM_BATCH * TUNNEL_RECORD_PAYLOAD_MAX];

    while (c->rhead != NULL && c->out_len < PULL_BUDGET) {
        struct tstream *s = c->rhead;
        size_t want = s->rnext == NULL ? sizeof(buf) : TUNNEL_RECORD_PAYLOAD_MAX;
        ssize_t n;

        ready_remove(s);
        if (s->send_win < (int64_t)want)
            want = (size_t)s->send_win;
        n = recv(s->fd, buf, want, 0);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            ev_io_start(c->loop, s->rio);
            continue;
        }
        if (n < 0) {
            s->end_err = errno;
            if (stream_abort(s) < 0)
                return -1;
            continue;
        }
        if (s->tr != NULL && n > 0) {
            s->tr->bytes[c->server ? RELAY_DOWN : RELAY_UP] += (uint64_t)n;
            s->tr->last = ev_now(c->loop);
        }
        if (n == 0) {
            s->local_eof = true;
            if (conn_seal(c, TUNNEL_REC_EOF, s->id, NULL, 0) < 0)
                return -1;
            stream_try_done(s);
            continue;
        }
        for (size_t off = 0; off < (size_t)n; off += TUNNEL_RECORD_PAYLOAD_MAX) {
            size_t len = (size_t)n - off;

            if (len > TUNNEL_RECORD_PAYLOAD_MAX)
                len = TUNNEL_RECORD_PAYLOAD_MAX;
            if (conn_seal(c, TUNNEL_REC_DATA, s->id, buf + off, len) < 0)
                return -1;
        }
        s->send_win -= n;
        if (s->send_win <= 0)
            continue; /* a WINDOW record starts it again */
        if ((size_t)n < want)
            ev_io_start(c->loop, s->rio); /* read it all: wait for more */
        else
            ready_push(s); /* maybe more: its next turn comes after the others' */
    }
    return 0;
}

/*
 * Write the unsent queue. While streams wait in the ready ring the write watcher stays on: the
 * socket reports writable when its unsent bytes are below NOTSENT_LOWAT, and conn_writable then
 * pulls the next records.
 */
static void conn_flush(struct tconn *c)
{
    while (c->out_len > 0) {
        ssize_t n = send(c->fd, c->out + c->out_head, c->out_len, MSG_NOSIGNAL);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOTCONN)) {
            ev_io_start(c->loop, &c->wio);
            return;
        }
        if (n < 0) {
            conn_die(c, "send: %s", strerror(errno));
            return;
        }
        c->out_head += (size_t)n;
        c->out_len -= (size_t)n;
    }
    c->out_head = 0;
    if (c->rhead != NULL)
        ev_io_start(c->loop, &c->wio);
    else
        ev_io_stop(c->loop, &c->wio);
}

/* The end of a round of the loop: REPLYs to their chains (which may start relays and seal
 * records), then every connection's records out. */
static void flush_round(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)revents;
    ev_prepare_stop(loop, w);
    while (deliver_list != NULL || fail_list != NULL || flush_list != NULL) {
        if (fail_list != NULL) {
            struct tunnel_stream *h = fail_list;

            fail_list = h->fnext;
            h->failing = false;
            h->cb(h->arg, NULL, 0); /* may release h */
            continue;
        }
        if (deliver_list != NULL) {
            struct tstream *s = deliver_list;
            tunnel_reply_cb cb = s->reply_cb;
            void *arg = s->reply_arg;
            uint8_t reply[HEAD_MAX];
            size_t len = s->head_len;

            deliver_list = s->dnext;
            s->deliver_pending = false;
            s->reply_cb = NULL;
            memcpy(reply, s->head, len);
            sodium_memzero(s->head, len);
            s->head_len = 0;
            cb(arg, reply, len); /* may free s */
            sodium_memzero(reply, len);
            continue;
        }
        struct tconn *c = flush_list;

        flush_list = c->flush_next;
        c->flush_pending = false;
        conn_flush(c); /* may free c: it is off the list already */
    }
}

static void round_schedule(struct ev_loop *loop)
{
    if (!ev_is_active(&flush_prep)) {
        ev_prepare_init(&flush_prep, flush_round);
        ev_prepare_start(loop, &flush_prep);
        flush_loop = loop;
    }
}

static void conn_flush_soon(struct tconn *c)
{
    if (c->flush_pending)
        return;
    c->flush_pending = true;
    c->flush_next = flush_list;
    flush_list = c;
    round_schedule(c->loop);
}

/* The handshake is done: records from now on; waiting streams start. -1: the connection is gone
 * (out of memory). */
static int conn_up(struct tconn *c)
{
    struct tunnel_cipher send, recv;
    uint8_t *in = realloc(c->in, IN_CAP);

    if (in == NULL) {
        conn_die(c, "out of memory");
        return -1;
    }
    c->in = in;
    c->in_cap = IN_CAP;
    tunnel_handshake_split(&c->hs, &send, &recv, NULL);
    tunnel_record_tx_init(&c->tx, &send);
    tunnel_record_rx_init(&c->rx, &recv);
    c->st = C_UP;
    if (c->holding) {
        /* Authenticated: its streams are counted as the key's user's sessions from now on. */
        limits_hold_release(&c->hold);
        c->holding = false;
    }
    hs_release(c);
    ev_timer_stop(c->loop, &c->timer);
    for (struct tstream *s = c->streams, *next; s != NULL; s = next) {
        unsigned long frees = conn_frees;

        next = s->next;
        if (s->fd >= 0) {
            ev_io_start(c->loop, s->rio);
        } else if (s->head_len > 0) {
            stream_head_input(s); /* its request came with tunnel_stream_open: OPEN now */
            if (conn_frees != frees)
                return -1;
        }
    }
    return 0;
}

/* --- records in -------------------------------------------------------------------------- */

/* A refusal the server sends for a request it cannot start. */
static int server_refuse_open(struct tconn *c, uint32_t id, uint8_t rep)
{
    uint8_t msg[SOCKS5_REPLY_MAX];
    size_t n = socks5_encode_reply(msg, rep, NULL);

    if (conn_seal(c, TUNNEL_REC_REPLY, id, msg, n) < 0)
        return -1;
    return conn_seal(c, TUNNEL_REC_EOF, id, NULL, 0);
}

static int server_open(struct tconn *c, uint32_t id, const uint8_t *p, size_t len)
{
    struct limits *limits = c->ctx->limits;
    struct tstream *s;
    struct limit *e;
    int sv[2];

    if (id <= c->last_id) {
        conn_die(c, "OPEN of stream %u, not above %u", id, c->last_id);
        return -1;
    }
    c->last_id = id;
    if (c->nstreams >= STREAMS_MAX) {
        log_notice("tunnel %s: stream %u refused: %u streams open", c->name, id, c->nstreams);
        return server_refuse_open(c, id, SOCKS5_REP_GENERAL_FAILURE);
    }
    e = limits_client(limits, &c->peer);
    if (e == NULL || socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0) {
        if (e != NULL)
            limits_release(limits, e);
        return server_refuse_open(c, id, SOCKS5_REP_GENERAL_FAILURE);
    }
    s = stream_new(c, id, sv[0]);
    if (s == NULL) {
        close(sv[0]);
        close(sv[1]);
        limits_release(limits, e);
        return server_refuse_open(c, id, SOCKS5_REP_GENERAL_FAILURE);
    }
    stream_set_session_fd(s, sv[1]);
    /* The session first (it owns sv[1] from here on, and may end at once, which this stream
     * learns from its socketpair); then the request, its first bytes. */
    s->udp = len >= 2 && p[1] == SOCKS5_CMD_UDP_ASSOCIATE;
    if (session_start_tunnel(c->ctx, sv[1], &c->peer, &c->local, c->user, e, p, len))
        return 0; /* the session took the request as if it had read it */
    return stream_queue(s, p, len, false);
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/*
 * Whether a record fits the state of its stream (doc 3, 4): NULL if so, else what is wrong (a
 * protocol error). A stream we no longer know is fine (records cross a RESET), one never opened
 * is not (a client's stream has an id from its OPEN on); a client's stream hears no DATA or EOF
 * before REPLY, and one REPLY; nothing but RESET or WINDOW after EOF.
 */
static const char *stream_record_wrong(const struct tconn *c, const struct tstream *s,
                                       const struct tunnel_record *r)
{
    if (r->stream == 0 || r->type == TUNNEL_REC_OPEN)
        return NULL;
    if (s == NULL)
        return r->stream > c->last_id ? "a stream never opened" : NULL;
    switch (r->type) {
    case TUNNEL_REC_REPLY:
        return s->got_reply ? "a second REPLY" : NULL;
    case TUNNEL_REC_DATA:
    case TUNNEL_REC_EOF:
        if (s->peer_eof)
            return r->type == TUNNEL_REC_DATA ? "DATA after EOF" : "EOF twice";
        return !c->server && !s->got_reply ? "DATA or EOF before REPLY" : NULL;
    default:
        return NULL;
    }
}

/* One record: 0 go on, -1 the connection is gone. */
static int conn_record(struct tconn *c, const struct tunnel_record *r)
{
    struct tstream *s = r->stream != 0 ? stream_find(c, r->stream) : NULL;
    const char *wrong = stream_record_wrong(c, s, r);
    bool gone;
    int rc;

    if (wrong != NULL) {
        conn_die(c, "stream %u: %s", r->stream, wrong);
        return -1;
    }
    switch (r->type) {
    case TUNNEL_REC_OPEN:
        if (!c->server) {
            conn_die(c, "OPEN from the server");
            return -1;
        }
        return server_open(c, r->stream, r->payload, r->len);
    case TUNNEL_REC_REPLY:
        if (c->server) {
            conn_die(c, "REPLY from a client");
            return -1;
        }
        if (s == NULL)
            return 0;
        s->got_reply = true;
        if (s->reply_cb != NULL && r->len <= sizeof(s->head)) {
            /* To the chain at the end of this round: no write and read through the pair. */
            memcpy(s->head, r->payload, r->len);
            s->head_len = r->len;
            sodium_memzero((void *)r->payload, r->len);
            s->deliver_pending = true;
            s->dnext = deliver_list;
            deliver_list = s;
            round_schedule(c->loop);
            return 0;
        }
        if (s->h != NULL) {
            conn_die(c, "stream %u: a REPLY of %u bytes", r->stream, (unsigned)r->len);
            return -1;
        }
        s->reply_cb = NULL;
        rc = stream_queue(s, r->payload, r->len, false);
        /* Opened in place in the receive buffer: a UDP grant's keys leave no copy there (-1:
         * the connection, and its buffer, are gone). */
        if (rc == 0)
            sodium_memzero((void *)r->payload, r->len);
        return rc;
    case TUNNEL_REC_DATA:
        if (s == NULL)
            return 0; /* a stream we reset; its data in flight */
        if (r->len > s->recv_win) {
            conn_die(c, "stream %u: DATA beyond its window", r->stream);
            return -1;
        }
        s->recv_win -= (uint32_t)r->len;
        return stream_queue(s, r->payload, r->len, true);
    case TUNNEL_REC_EOF:
        if (s == NULL)
            return 0;
        s->peer_eof = true;
        if (s->qlen == 0)
            return stream_flush(s, &gone);
        return 0;
    case TUNNEL_REC_RESET:
        if (s != NULL) {
            s->end_err = ECONNRESET;
            stream_free(s);
        }
        return 0;
    case TUNNEL_REC_WINDOW:
        if (s == NULL)
            return 0;
        s->send_win += be32(r->payload);
        if (s->send_win > (int64_t)UINT32_MAX * 4) {
            conn_die(c, "stream %u: window overflow", r->stream);
            return -1;
        }
        if (stream_readable_now(s) && s->fd >= 0)
            ev_io_start(c->loop, s->rio);
        return 0;
    case TUNNEL_REC_PING:
        return conn_seal(c, TUNNEL_REC_PONG, 0, r->payload, r->len);
    case TUNNEL_REC_CLOSE:
        if (c->nstreams > 0)
            log_notice("tunnel %s: closed by the peer with %u stream%s open (not a clean end: "
                       "they are aborted)",
                       c->name, c->nstreams, c->nstreams == 1 ? "" : "s");
        else
            log_info("tunnel %s: closed by the peer", c->name);
        conn_free(c);
        return -1;
    default: /* PONG, REKEY (already applied) */
        return 0;
    }
}

static void conn_read_records(struct tconn *c)
{
    size_t off = 0;

    c->batching = true;
    for (;;) {
        struct tunnel_record r;
        size_t used = 0;
        int rc = tunnel_record_open(&c->rx, c->in + off, c->in_len - off, &r, &used);

        if (rc == TUNNEL_REC_NEED_MORE)
            break;
        if (rc != TUNNEL_REC_OK) {
            conn_die(c, "%s", tunnel_record_strerror(rc));
            return;
        }
        off += used;
        if (conn_record(c, &r) < 0)
            return;
    }
    memmove(c->in, c->in + off, c->in_len - off);
    c->in_len -= off;
    c->batching = false;
    while (c->dirty_list != NULL) {
        struct tstream *s = c->dirty_list;
        bool gone;

        c->dirty_list = s->dirty_next;
        s->dirty = false;
        if (stream_flush(s, &gone) < 0)
            return;
    }
    conn_flush_soon(c);
}

/* --- the handshake ----------------------------------------------------------------------- */

/* Server: the checks of doc 2.4, in order; false with the reason in why. */
static bool server_check_msg1(struct tconn *c, const uint8_t *msg, size_t len, char *why,
                              size_t size)
{
    struct snapshot *snap = c->ctx->snap;
    uint8_t payload[TUNNEL_HELLO_MAX];
    size_t plen = 0;
    struct tunnel_hello hello;
    const uint8_t *rs;
    const char *user;
    char fp[TUNNEL_FINGERPRINT_SIZE];
    int rc;

    if (len < MSG1_MIN || len > MSG1_MAX) {
        snprintf(why, size, "first message of %zu bytes", len);
        return false;
    }
    rc = tunnel_handshake_init(&c->hs, TUNNEL_RESPONDER, c->suite, (const uint8_t *)TUNNEL_PROLOGUE,
                               strlen(TUNNEL_PROLOGUE), snap->tunnel_priv, snap->tunnel_pub, NULL);
    if (rc == TUNNEL_OK)
        rc = tunnel_handshake_read(&c->hs, msg, len, payload, sizeof(payload), &plen);
    if (rc != TUNNEL_OK) {
        snprintf(why, size, "first message: %s", tunnel_strerror(rc));
        return false;
    }
    rs = tunnel_handshake_remote_static(&c->hs);
    tunnel_key_fingerprint(rs, fp);
    user = snap->authkeys != NULL ? tunnel_authkeys_lookup(snap->authkeys, rs) : NULL;
    if (user == NULL) {
        snprintf(why, size, "key %s is not authorized", fp);
        return false;
    }
    if (tunnel_hello_parse(payload, plen, &hello) < 0) {
        snprintf(why, size, "key %s: malformed hello", fp);
        return false;
    }
    pthread_mutex_lock(&replay_lock);
    if (replay == NULL)
        replay = tunnel_replay_new();
    rc = replay == NULL ? TUNNEL_REPLAY_NOMEM
                        : tunnel_replay_check(replay, rs, hello.timestamp, (uint64_t)time(NULL),
                                              (uint64_t)c->ctx->snap->config.tunnel_replay_window);
    pthread_mutex_unlock(&replay_lock);
    if (rc != TUNNEL_REPLAY_OK) {
        snprintf(why, size, "key %s (user %s): %s", fp, user,
                 rc == TUNNEL_REPLAY_OLD    ? "hello timestamp not newer than the last (a replay?)"
                 : rc == TUNNEL_REPLAY_SKEW ? "hello timestamp too far from our clock"
                                            : "out of memory");
        return false;
    }
    c->user = strdup(user);
    snprintf(why, size, "key %s, %s", fp, tunnel_suite_name(c->suite));
    return c->user != NULL;
}

/* Refused (doc 2.4): nothing is sent; the connection closes at the negotiate deadline. */
static void server_silent(struct tconn *c, const char *why)
{
    log_notice("tunnel %s: refused, silently: %s", c->name, why);
    c->st = C_SILENT;
    ev_io_stop(c->loop, &c->rio);
    tunnel_handshake_wipe(&c->hs);
}

static void server_handshake(struct tconn *c)
{
    uint8_t welcome[TUNNEL_WELCOME_LEN] = {0, 0};
    uint8_t msg2[2 + MSG2_MIN];
    size_t len, n = 0;
    char why[160];

    if (c->in_len < TUNNEL_MSG1_PREFIX)
        return;
    /* The suite is known before msg1 is read (doc 2.2): no trial decryption. */
    if (tunnel_msg1_prefix_parse(c->in, &c->suite, &len) < 0) {
        snprintf(why, sizeof(why), "first message: unknown cipher suite %u", c->in[0] >> 4);
        server_silent(c, why);
        return;
    }
    if (!tunnel_suite_available(c->suite)) {
        snprintf(why, sizeof(why), "first message: cipher %s, and this machine has no AES-NI",
                 tunnel_suite_name(c->suite));
        server_silent(c, why);
        return;
    }
    if (len < MSG1_MIN || len > MSG1_MAX) {
        snprintf(why, sizeof(why), "first message of %zu bytes", len);
        server_silent(c, why);
        return;
    }
    if (c->in_len < 2 + len)
        return;
    if (c->in_len > 2 + len) {
        server_silent(c, "bytes after the first message");
        return;
    }
    if (!server_check_msg1(c, c->in + 2, len, why, sizeof(why))) {
        server_silent(c, why);
        return;
    }
    if (tunnel_handshake_write(&c->hs, welcome, sizeof(welcome), msg2 + 2, sizeof(msg2) - 2, &n) !=
        TUNNEL_OK) {
        conn_die(c, "writing the second message");
        return;
    }
    msg2[0] = (uint8_t)(n >> 8);
    msg2[1] = (uint8_t)n;
    c->in_len = 0;
    if (conn_queue_raw(c, msg2, n + 2) < 0) {
        conn_die(c, "out of memory");
        return;
    }
    log_info("tunnel %s: %s, user %s: up", c->name, why, c->user);
    if (conn_up(c) < 0)
        return;
    conn_flush(c);
}

static void client_handshake(struct tconn *c)
{
    uint8_t payload[TUNNEL_HELLO_MAX];
    size_t len, plen = 0;
    int rc;

    if (c->in_len < 2)
        return;
    len = (size_t)c->in[0] << 8 | c->in[1];
    if (len < MSG2_MIN || len > MSG2_MAX) {
        conn_die(c, "the server's answer is not a tunnel handshake (%zu bytes)", len);
        return;
    }
    if (c->in_len < 2 + len)
        return;
    rc = tunnel_handshake_read(&c->hs, c->in + 2, len, payload, sizeof(payload), &plen);
    if (rc != TUNNEL_OK) {
        char fp[TUNNEL_FINGERPRINT_SIZE];

        tunnel_key_fingerprint(c->server_key, fp);
        conn_die(c, "the server did not prove server-key %s (%s): wrong server, or wrong key", fp,
                 tunnel_strerror(rc));
        return;
    }
    memmove(c->in, c->in + 2 + len, c->in_len - 2 - len);
    c->in_len -= 2 + len;
    log_info("tunnel %s: up, %s", c->name, tunnel_suite_name(c->suite));
    if (conn_up(c) < 0)
        return;
    if (c->in_len > 0)
        conn_read_records(c);
    else
        conn_flush(c);
}

static void conn_readable(struct ev_loop *loop, ev_io *w, int revents)
{
    struct tconn *c = w->data;
    ssize_t n;

    (void)loop;
    (void)revents;
    if (c->in_len == c->in_cap) {
        conn_die(c, "receive buffer full");
        return;
    }
    n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        if (c->st == C_HANDSHAKE && c->server) {
            /* Gone before the handshake: nothing to say to it. */
            log_info("tunnel %s: closed during the handshake", c->name);
            conn_free(c);
            return;
        }
        if (c->st == C_UP && n == 0 && tunnel_record_eof(&c->rx, c->in_len) == TUNNEL_REC_OK) {
            conn_free(c);
            return;
        }
        conn_die(c, "%s",
                 n < 0           ? strerror(errno)
                 : c->st == C_UP ? "cut: end of file without CLOSE"
                                 : "closed by the server without an answer to the handshake "
                                   "(a wrong server-key, or our key is not authorized there)");
        return;
    }
    c->in_len += (size_t)n;
    if (c->st == C_UP)
        conn_read_records(c);
    else if (c->server)
        server_handshake(c);
    else
        client_handshake(c);
}

static void conn_writable(struct ev_loop *loop, ev_io *w, int revents)
{
    struct tconn *c = w->data;

    (void)loop;
    (void)revents;
    if (c->st == C_CONNECTING) {
        int err = 0;
        socklen_t el = sizeof(err);

        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err != 0) {
            conn_die(c, "connect: %s", strerror(err));
            return;
        }
        c->st = C_HANDSHAKE;
        ev_io_start(c->loop, &c->rio);
    }
    if (c->st == C_UP && c->out_len == 0 && conn_pull(c) < 0)
        return;
    conn_flush(c);
}

static void conn_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct tconn *c = w->data;

    (void)loop;
    (void)revents;
    if (c->st == C_SILENT) {
        log_debug("tunnel %s: negotiate timeout, closing", c->name);
        conn_free(c);
        return;
    }
    if (c->st == C_WAIT) {
        conn_die(c, "another handshake with the same server took the whole timeout");
        return;
    }
    if (c->server) {
        /* A peer that never sent a whole first message: refused like any other (doc 2.4),
         * nothing was sent, and the negotiate timeout is what closes it. */
        log_notice("tunnel %s: refused, silently: first message: not whole (%zu bytes) when "
                   "the negotiate timeout expired",
                   c->name, c->in_len);
        conn_free(c);
        return;
    }
    conn_die(c, "no answer to the handshake in time (a wrong server-key, or our key is not "
                "authorized there: the server stays silent to both)");
}

static struct tconn *conn_new(struct ev_loop *loop, int fd, bool server)
{
    struct tconn *c = calloc(1, sizeof(*c));
    int one = 1, lowat = NOTSENT_LOWAT;

    if (c == NULL)
        return NULL;
    c->in_cap = HS_IN_CAP;
    c->in = malloc(c->in_cap);
    c->out_cap = HS_OUT_CAP;
    c->out = malloc(c->out_cap);
    if (c->in == NULL || c->out == NULL) {
        free(c->in);
        free(c->out);
        free(c);
        return NULL;
    }
    c->loop = loop;
    c->fd = fd;
    c->server = server;
    if (fd >= 0) {
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof(lowat));
    }
    ev_io_init(&c->rio, conn_readable, fd, EV_READ);
    ev_io_init(&c->wio, conn_writable, fd, EV_WRITE);
    ev_timer_init(&c->timer, conn_timeout, 0., 0.);
    ev_init(&c->poll, NULL);
    c->rio.data = c->wio.data = c->timer.data = c->poll.data = c;
    c->next = conns;
    if (conns != NULL)
        conns->prev = c;
    conns = c;
    return c;
}

/* The clean end: CLOSE (doc 3) when up, what the socket takes of it now, then free. */
static void conn_close_clean(struct tconn *c)
{
    if (c->st == C_UP) {
        ssize_t n;

        if (conn_seal(c, TUNNEL_REC_CLOSE, 0, NULL, 0) < 0)
            return; /* conn_die freed c */
        n = send(c->fd, c->out + c->out_head, c->out_len, MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)n;
        shutdown(c->fd, SHUT_WR);
    }
    conn_free(c);
}

/* --- server ------------------------------------------------------------------------------ */

void tunnel_server_accept(struct session_ctx *ctx, int fd, const struct addr *client,
                          struct limit *client_limit)
{
    const struct config *cfg = &ctx->snap->config;
    /* Until it proves a key, a connection is one more client negotiating (max-negotiating,
     * negotiating-per-client) and one more session (max-sessions), as a SOCKS client before
     * its login is; past any of them it is closed at once, which tells a scanner nothing a full
     * port would not. Not sessions-per-client: the streams of the IP's working tunnels count
     * there, and must not keep a reconnection out. */
    struct limit_hold_caps caps = {
        .max_total = cfg->max_sessions,
        .negotiating = &cfg->max_negotiating,
        .negotiating_per_client = cfg->negotiating_per_client,
        .draw = (double)randombytes_uniform(1u << 30) / (double)(1u << 30),
    };
    struct limit_hold hold;
    struct tconn *c;

    if (!limits_hold_begin(&hold, ctx->limits, client_limit, &caps) || hold.refused != LIMIT_OK) {
        enum limit_refusal why = hold.refused != LIMIT_OK ? hold.refused : LIMIT_TOTAL;

        if (hold.limits != NULL)
            limits_hold_release(&hold);
        session_closed_at_accept(ctx, client, why);
        close(fd);
        return;
    }
    c = conn_new(ctx->loop, fd, true);
    if (c == NULL) {
        log_warn("out of memory for a tunnel connection");
        limits_hold_release(&hold);
        close(fd);
        return;
    }
    c->hold = hold;
    c->holding = true;
    c->ctx = ctx;
    c->peer = *client;
    c->local.len = sizeof(c->local.u);
    if (getsockname(fd, &c->local.u.sa, &c->local.len) < 0)
        c->local.len = 0;
    {
        char a[ADDR_STRLEN];

        snprintf(c->name, sizeof(c->name), "from %s", addr_format(client, a, sizeof(a)));
    }
    c->st = C_HANDSHAKE;
    ev_io_start(c->loop, &c->rio);
    ev_timer_set(&c->timer, ctx->snap->config.timeout_negotiate, 0.);
    ev_timer_start(c->loop, &c->timer);
}

/* --- client ------------------------------------------------------------------------------ */

/* A fresh TAI64N per connection, strictly increasing within the process (doc 2.5). */
static void client_timestamp(uint8_t ts[TUNNEL_TAI64N_LEN])
{
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    static uint8_t last[TUNNEL_TAI64N_LEN];
    struct timespec now;

    clock_gettime(CLOCK_REALTIME, &now);
    tunnel_tai64n((uint64_t)now.tv_sec, (uint32_t)now.tv_nsec, ts);
    pthread_mutex_lock(&lock);
    if (!tunnel_replay_newer(last, ts)) {
        /* The clock went back or stood still: the last value plus 1 ns. */
        memcpy(ts, last, TUNNEL_TAI64N_LEN);
        for (int i = TUNNEL_TAI64N_LEN - 1; i >= 0 && ++ts[i] == 0; i--)
            ;
    }
    memcpy(last, ts, TUNNEL_TAI64N_LEN);
    pthread_mutex_unlock(&lock);
}

static bool conn_matches(const struct tconn *c, const struct parent *p)
{
    return !c->server && strcmp(c->pname, p->name) == 0 &&
           memcmp(&c->paddr, &p->addr, sizeof(p->addr)) == 0 &&
           sodium_memcmp(c->server_key, p->server_key, TUNNEL_DHLEN) == 0 &&
           sodium_memcmp(c->key_pub, p->key_pub, TUNNEL_DHLEN) == 0 && c->suite == p->suite;
}

/*
 * One handshake at a time per (server key, client key) in the process: the server accepts a
 * first message only when its timestamp is later than the last one it accepted for the key
 * (doc 2.5), so two workers' handshakes must not reach it out of order. A worker whose slot is
 * taken polls until it is free (only when connections are made: at the first stream, after a
 * failure). Slots are shared by hash; a collision only serializes more.
 */
#define HS_SLOTS 64
#define HS_POLL 0.002
static atomic_bool hs_busy[HS_SLOTS];

static unsigned hs_slot(const struct tconn *c)
{
    return (unsigned)(c->server_key[0] ^ c->server_key[1] << 1 ^ c->key_pub[0] ^ c->key_pub[1]) %
           HS_SLOTS;
}

static void hs_release(struct tconn *c)
{
    if (c->hs_holding) {
        atomic_store(&hs_busy[hs_slot(c)], false);
        c->hs_holding = false;
    }
}

/* The slot is ours: connect and queue msg1, its timestamp taken now. false: c is gone. */
static bool client_start(struct tconn *c)
{
    struct tunnel_hello hello = {.flags = 0};
    uint8_t payload[TUNNEL_HELLO_LEN], msg1[2 + MSG1_MIN];
    size_t n = 0;
    int fd, one = 1, lowat = NOTSENT_LOWAT;

    fd = socket(c->peer.u.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        conn_die(c, "socket: %s", strerror(errno));
        return false;
    }
    c->fd = fd;
    if (connect(fd, &c->peer.u.sa, c->peer.len) < 0 && errno != EINPROGRESS) {
        conn_die(c, "connect: %s", strerror(errno));
        return false;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof(lowat));
    ev_io_set(&c->rio, fd, EV_READ);
    ev_io_set(&c->wio, fd, EV_WRITE);
    client_timestamp(hello.timestamp);
    tunnel_hello_encode(&hello, payload);
    if (tunnel_handshake_write(&c->hs, payload, sizeof(payload), msg1 + 2, sizeof(msg1) - 2, &n) !=
        TUNNEL_OK) {
        conn_die(c, "writing the first message");
        return false;
    }
    tunnel_msg1_prefix_encode(c->suite, n, msg1);
    if (conn_queue_raw(c, msg1, n + 2) < 0) {
        conn_die(c, "out of memory");
        return false;
    }
    c->st = C_CONNECTING;
    ev_io_start(c->loop, &c->wio);
    return true;
}

static void client_poll(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct tconn *c = w->data;

    (void)loop;
    (void)revents;
    if (atomic_exchange(&hs_busy[hs_slot(c)], true))
        return;
    c->hs_holding = true;
    ev_timer_stop(c->loop, &c->poll);
    client_start(c);
}

static struct tconn *client_connect(struct ev_loop *loop, const struct parent *p,
                                    const struct addr *resolved)
{
    struct addr a;
    struct tconn *c;

    if (socks_dest_to_addr(&p->addr, &a) < 0) {
        /* A name: the chain looked it up with the worker's resolver (never a blocking one). */
        if (resolved == NULL) {
            errno = EAGAIN;
            return NULL;
        }
        a = *resolved;
        addr_set_port(&a, p->addr.port);
    }
    c = conn_new(loop, -1, false);
    if (c == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    snprintf(c->pname, sizeof(c->pname), "%s", p->name);
    c->paddr = p->addr;
    memcpy(c->server_key, p->server_key, TUNNEL_DHLEN);
    memcpy(c->key_pub, p->key_pub, TUNNEL_DHLEN);
    c->suite = p->suite;
    c->peer = a;
    snprintf(c->name, sizeof(c->name), "to parent %s", p->name);
    if (tunnel_handshake_init(&c->hs, TUNNEL_INITIATOR, c->suite, (const uint8_t *)TUNNEL_PROLOGUE,
                              strlen(TUNNEL_PROLOGUE), p->key, p->key_pub,
                              p->server_key) != TUNNEL_OK) {
        conn_free(c);
        errno = EINVAL;
        return NULL;
    }
    /* The parent's timeout covers the wait for the slot and the handshake. */
    c->st = C_WAIT;
    ev_timer_set(&c->timer, p->timeout, 0.);
    ev_timer_start(loop, &c->timer);
    ev_timer_init(&c->poll, client_poll, 0., HS_POLL);
    c->poll.data = c;
    if (!atomic_exchange(&hs_busy[hs_slot(c)], true)) {
        c->hs_holding = true;
        if (!client_start(c)) {
            errno = ECONNREFUSED;
            return NULL;
        }
    } else {
        ev_timer_again(loop, &c->poll);
    }
    return c;
}

/* The worker's connection to p for one more stream (a new one if none has room), or NULL. */
static struct tconn *client_conn_for(struct ev_loop *loop, const struct parent *p,
                                     const struct addr *resolved)
{
    struct tconn *c = NULL;

    for (struct tconn *k = conns; k != NULL; k = k->next) {
        /* Streams not opened yet take their ids later: room for all of them. */
        if (conn_matches(k, p) && (uint64_t)k->last_id + k->nstreams < UINT32_MAX - 1 &&
            k->nstreams < STREAMS_MAX - STREAMS_SLACK) {
            c = k;
            break;
        }
    }
    if (c == NULL && (c = client_connect(loop, p, resolved)) == NULL)
        return NULL;
    /* A reload that changed the parent leaves its old connection: closed once idle. */
    for (struct tconn *k = conns, *next; k != NULL; k = next) {
        next = k->next;
        if (k != c && !k->server && k->nstreams == 0 && strcmp(k->pname, p->name) == 0 &&
            !conn_matches(k, p))
            conn_close_clean(k);
    }
    return c;
}

int tunnel_client_open(struct ev_loop *loop, const struct parent *p, const struct addr *resolved,
                       tunnel_reply_cb cb, void *arg)
{
    struct tconn *c = client_conn_for(loop, p, resolved);
    struct tstream *s;
    int sv[2];

    if (c == NULL)
        return -1;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
        return -1;
    s = stream_new(c, 0, sv[0]); /* its id comes with its OPEN */
    if (s == NULL) {
        close(sv[0]);
        close(sv[1]);
        errno = ENOMEM;
        return -1;
    }
    stream_set_session_fd(s, sv[1]);
    s->reply_cb = cb;
    s->reply_arg = arg;
    return sv[1];
}

struct tunnel_stream *tunnel_stream_open(struct ev_loop *loop, const struct parent *p,
                                         const struct addr *resolved, const uint8_t *req,
                                         size_t len, tunnel_reply_cb cb, void *arg)
{
    struct tunnel_stream *h;
    struct tconn *c;
    struct tstream *s;

    if (len == 0 || len > HEAD_MAX) {
        errno = EINVAL;
        return NULL;
    }
    if ((c = client_conn_for(loop, p, resolved)) == NULL)
        return NULL;
    if ((h = calloc(1, sizeof(*h))) == NULL)
        return NULL;
    if ((s = stream_new(c, 0, -1)) == NULL) {
        free(h);
        errno = ENOMEM;
        return NULL;
    }
    h->s = s;
    h->cb = cb;
    h->arg = arg;
    s->h = h;
    s->reply_cb = cb;
    s->reply_arg = arg;
    memcpy(s->head, req, len);
    s->head_len = len;
    s->head_direct = true;
    if (c->st == C_UP)
        stream_head_input(s); /* OPEN now; else when the connection is up (conn_up) */
    return h;
}

void tunnel_stream_release(struct tunnel_stream *h)
{
    if (h == NULL)
        return;
    if (h->failing) {
        struct tunnel_stream **pp = &fail_list;

        while (*pp != h)
            pp = &(*pp)->fnext;
        *pp = h->fnext;
    }
    if (h->s != NULL) {
        struct tstream *s = h->s;
        struct tconn *c = s->c;

        s->h = NULL;
        s->reply_cb = NULL;
        if (s->id == 0)
            stream_free(s); /* no OPEN sent: nothing to tell the server */
        else if (stream_abort(s) == 0)
            conn_flush_soon(c);
    }
    free(h);
}

int tunnel_stream_pair(struct tunnel_stream *h)
{
    struct tstream *s = h->s;
    int sv[2];

    if (s == NULL || s->fd >= 0) {
        errno = ECONNRESET;
        return -1;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
        return -1;
    s->fd = sv[0];
    ev_io_set(s->rio, sv[0], EV_READ);
    ev_io_set(&s->wio, sv[0], EV_WRITE);
    stream_set_session_fd(s, sv[1]);
    s->h = NULL;
    h->s = NULL;
    /* From here on a stream like tunnel_client_open's, in its data phase. */
    if (stream_readable_now(s))
        ev_io_start(s->c->loop, s->rio);
    if (s->qlen > 0 || s->peer_eof)
        ev_io_start(s->c->loop, &s->wio);
    return sv[1];
}

void tunnel_session_forget(int fd, void *arg)
{
    struct tstream *s = stream_by_session_fd(fd);

    if (s == NULL || s->reply_arg != arg)
        return;
    deliver_cancel(s);
    s->reply_cb = NULL;
    s->reply_arg = NULL;
}

void tunnel_worker_free(void)
{
    while (conns != NULL)
        conn_close_clean(conns);
    if (ev_is_active(&flush_prep))
        ev_prepare_stop(flush_loop, &flush_prep);
    free(by_fd);
    by_fd = NULL;
    by_fd_size = 0;
}

/* --- a session's relay through its stream ------------------------------------------------- */

/*
 * The stream of this thread whose socketpair's other end was fd when the stream began, or NULL.
 * The session may have closed that end since and fd be another socket now: the caller finds that
 * out when the stream's own end reads EOF (stream_pending_input), before it changes anything.
 */
static struct tstream *stream_by_session_fd(int fd)
{
    struct tstream *s = fd >= 0 && (size_t)fd < by_fd_size ? by_fd[fd] : NULL;

    return s != NULL && s->sess_fd == fd ? s : NULL;
}

bool tunnel_session_write(int fd, const uint8_t *p, size_t len)
{
    struct tstream *s = stream_by_session_fd(fd);

    if (s == NULL)
        return false;
    /* Only a head, only while records may be sealed and streams freed (not in the middle of
     * reading records), and never after a byte went through the socketpair: order is kept. */
    if (s->sess_raw || s->tr != NULL || s->phase == P_DATA || s->c->st != C_UP ||
        s->c->batching || len > sizeof(s->head) - s->head_len) {
        s->sess_raw = true;
        return false;
    }
    memcpy(s->head + s->head_len, p, len);
    s->head_len += len;
    s->head_direct = true;
    stream_head_input(s); /* may free the stream: the session learns it from its socket */
    return true;
}

/* Whether the stream's end of the socketpair has bytes not read yet (or its EOF). */
static bool stream_pending_input(const struct tstream *s)
{
    uint8_t b;
    ssize_t n = recv(s->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);

    return n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
}

/*
 * What the socketpair held for the session's side, and early bytes, go before the stream's
 * queue: [head][what fd still held][queue]. None of it returns credit (already returned when it
 * was written to the socketpair, or never from the peer). -1: nothing changed.
 */
static int stream_prepend(struct tstream *s, const uint8_t *head, size_t head_len, int fd)
{
    int held = 0;
    size_t cap, len = head_len;
    uint8_t *q;

    /* Nothing for the session waits in the socketpair unless the stream wrote it there. */
    if (fd >= 0 && s->pair_data && (ioctl(fd, FIONREAD, &held) < 0 || held < 0))
        return -1;
    cap = head_len + (size_t)held + s->qlen;
    if (cap == 0)
        return 0;
    if ((q = malloc(cap)) == NULL)
        return -1;
    if (head_len > 0)
        memcpy(q, head, head_len);
    while (len < head_len + (size_t)held) {
        ssize_t n = recv(fd, q + len, head_len + (size_t)held - len, MSG_DONTWAIT);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    if (s->qlen > 0)
        memcpy(q + len, s->q + s->qhead, s->qlen);
    free(s->q);
    s->q = q;
    s->qhead = 0;
    s->qlen += len;
    s->qcap = cap;
    s->q_nocredit += len;
    return 0;
}

/* The client's bytes read with its request, and its half-close then: DATA and EOF. -1: gone. */
static int stream_send_early(struct tstream *s, const struct relay_params *p)
{
    struct tconn *c = s->c;

    for (size_t off = 0; off < p->early_len; off += TUNNEL_RECORD_PAYLOAD_MAX) {
        size_t len = p->early_len - off;

        if (len > TUNNEL_RECORD_PAYLOAD_MAX)
            len = TUNNEL_RECORD_PAYLOAD_MAX;
        if (conn_seal(c, TUNNEL_REC_DATA, s->id, p->early + off, len) < 0)
            return -1;
    }
    s->send_win -= (int64_t)p->early_len;
    if (p->client_eof) {
        s->local_eof = true;
        if (conn_seal(c, TUNNEL_REC_EOF, s->id, NULL, 0) < 0)
            return -1;
    }
    return 0;
}

struct tunnel_relay *tunnel_relay_start(const struct relay_params *p)
{
    int client_fd = p->client_io->fd, local_fd, sess_fd;
    struct tstream *s;
    struct tconn *c;
    struct tunnel_relay *tr;
    unsigned long frees;

    if (!p->tunnel_end || conns == NULL || p->throttle != NULL)
        return NULL;
    /* Server: the session's client is the socketpair; client: its target (the chain's fd), or
     * a stream with no socketpair at all (target_stream). */
    if (p->target_stream != NULL) {
        if ((s = p->target_stream->s) == NULL)
            return NULL;
        local_fd = client_fd;
        sess_fd = -1;
    } else if ((s = stream_by_session_fd(client_fd)) != NULL && s->c->server) {
        local_fd = p->target_fd;
        sess_fd = client_fd;
    } else if ((s = stream_by_session_fd(p->target_fd)) != NULL && !s->c->server) {
        local_fd = client_fd;
        sess_fd = p->target_fd;
    } else {
        return NULL;
    }
    c = s->c;
    if (c->st != C_UP || c->batching || s->local_eof)
        return NULL;
    if (s->phase == P_REPLY) {
        /* The session's reply is in the socketpair: REPLY first, as it would have gone. */
        frees = stream_frees;
        stream_read_head(s);
        if (stream_frees != frees)
            return NULL; /* the stream (or its connection) is gone; the session learns it */
    }
    /* The socketpair's unread bytes for the stream: none when the session's head came
     * straight (tunnel_session_write) and it wrote nothing into the socketpair itself. */
    if (s->phase != P_DATA || ((s->sess_raw || !s->head_direct) && stream_pending_input(s)))
        return NULL;
    if (!c->server && (int64_t)p->early_len > s->send_win)
        return NULL;
    tr = calloc(1, sizeof(*tr));
    if (tr == NULL)
        return NULL;
    if (c->server ? stream_prepend(s, p->early, p->early_len, sess_fd) < 0
                  : stream_prepend(s, NULL, 0, sess_fd) < 0) {
        free(tr);
        return NULL;
    }
    if (!c->server && (p->early_len > 0 || p->client_eof)) {
        frees = stream_frees;
        if (stream_send_early(s, p) < 0 || stream_frees != frees) {
            free(tr); /* the connection died: the session's relay fails at once */
            return NULL;
        }
        tr->bytes[RELAY_UP] = p->early_len;
    }
    /* From here on the stream is the session's relay: its callback runs from the loop. */
    ev_io_stop(c->loop, p->client_io);
    ready_remove(s);
    ev_io_stop(c->loop, s->rio);
    ev_io_stop(c->loop, &s->wio);
    dirty_remove(s);
    /* The socketpair is idle from here on: our end is closed now and the session closes its
     * own at once (tunnel_relay_idle_fd), so that neither end wakes the loop and a stream holds
     * one descriptor, not three. */
    if (s->fd >= 0)
        close(s->fd);
    tr->idle_fd = sess_fd;
    s->fd = local_fd;
    by_fd_clear(s);
    s->shut = false;
    if (local_fd == client_fd) {
        /* The session's own watcher on its client (stopped above), as relay.c takes it: libev
         * knows that fd already, so moving it costs no epoll_ctl. */
        s->rio = p->client_io;
        ev_set_cb(s->rio, stream_readable);
        ev_io_modify(s->rio, EV_READ);
        s->rio->data = s;
    } else {
        ev_io_set(s->rio, local_fd, EV_READ);
    }
    ev_io_set(&s->wio, local_fd, EV_WRITE);
    tr->s = s;
    tr->cb = p->cb;
    tr->arg = p->arg;
    tr->last = ev_now(c->loop);
    s->tr = tr;
    if (p->target_stream != NULL) {
        /* The session's handle is done: it frees it (tunnel_stream_release). */
        p->target_stream->s = NULL;
        s->h = NULL;
    }
    log_debug("tunnel %s: stream %u: relayed without its socketpair", c->name, s->id);
    if (stream_readable_now(s))
        ev_io_start(c->loop, s->rio);
    if (s->qlen > 0 || s->peer_eof)
        ev_io_start(c->loop, &s->wio); /* written (and shut, and maybe done) from the loop */
    if (c->out_len > 0)
        ev_io_start(c->loop, &c->wio);
    return tr;
}

/* The session ends first (a timeout, shutdown): the stream is aborted at the peer. */
void tunnel_relay_free(struct tunnel_relay *tr)
{
    struct tstream *s;

    if (tr == NULL)
        return;
    s = tr->s;
    if (s != NULL) {
        struct tconn *c = s->c;

        s->tr = NULL;
        s->fd = -1; /* the session's socket, closed by it */
        if (stream_abort(s) == 0 && c->out_len > 0)
            ev_io_start(c->loop, &c->wio);
    }
    free(tr);
}

void tunnel_relay_bytes(const struct tunnel_relay *tr, uint64_t *up, uint64_t *down)
{
    *up = tr->bytes[RELAY_UP];
    *down = tr->bytes[RELAY_DOWN];
}

double tunnel_relay_last_activity(const struct tunnel_relay *tr)
{
    return tr->last;
}

int tunnel_relay_idle_fd(const struct tunnel_relay *tr)
{
    return tr->idle_fd;
}

bool tunnel_relay_half_closed(const struct tunnel_relay *tr)
{
    return tr->s != NULL && tr->s->local_eof != tr->s->peer_eof;
}
