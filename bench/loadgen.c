/*
 * loadgen: the load generator of ferry's benchmark (see bench/README).
 *
 * It runs its own loopback origins in the same event loop (a TCP origin that sinks, sources,
 * echoes or answers one request, and a UDP echo) and drives them through a SOCKS5 server, or
 * directly when no server is given. Every stream carries a pattern keyed by its seed and the
 * byte offset, and the receiving end checks every byte against it; every SOCKS5 reply is parsed
 * and checked. A mismatch, a protocol error, a stall or a time-out ends the run with exit
 * status 1 and a line on stderr: a fast wrong answer is not a result.
 *
 * The result is one line of key=value pairs on stdout; mode idle also prints a "ready" line
 * when every session is open and then waits for a line (or EOF) on stdin before it checks the
 * sessions again and closes them.
 */
#define _GNU_SOURCE

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>

/* A prime period, so that a chunk lost or repeated at any power-of-two size shows. */
#define PATTERN_PERIOD 65521u
#define PATTERN_CHUNK PATTERN_PERIOD

#define HEAD_LEN 16
#define HEAD_MAGIC "FRYB"
#define CMD_DOWNLOAD 'D'
#define CMD_UPLOAD 'U'
#define CMD_ECHO 'E'
#define CMD_REQUEST 'R'

#define ORIGIN_PORTS_MAX 64
#define REPLY_MAX 600       /* the longest SOCKS5 reply is 262 bytes */
#define RX_BUF (256 * 1024) /* one shared receive buffer: the program has one thread */
#define IO_BUDGET (1024 * 1024)
#define IDLE_PROBE 16      /* bytes echoed when an idle session opens, and again at the end */
#define PENDING_MAX 256    /* idle mode: sessions in handshake at once */
#define STALL_NS (20 * NS) /* a connection that makes no progress for this long is an error */
#define UDP_RING 4096
#define UDP_LOSS_NS (500 * MS)
#define UDP_SEED 4242u

#define NS 1000000000ull
#define MS 1000000ull

enum mode { MODE_DOWNLOAD, MODE_UPLOAD, MODE_CPS, MODE_PINGPONG, MODE_IDLE, MODE_UDP };

static const char *const mode_names[] = {"download", "upload", "cps", "pingpong", "idle", "udp"};

enum client_state {
    CLIENT_FREE,
    CLIENT_CONNECTING,
    CLIENT_WAIT_METHOD,
    CLIENT_WAIT_AUTH,
    CLIENT_WAIT_REPLY,
    CLIENT_RUN,
    CLIENT_IDLE,
    CLIENT_DRAIN,
    CLIENT_WAIT_EOF,
    CLIENT_DONE,
};

static const char *const client_state_names[] = {
    "free", "connecting", "method reply", "auth reply", "request reply",
    "data", "idle",       "upload drain", "EOF",        "done",
};

/* One client connection: to the SOCKS server, or straight to the origin. */
struct client {
    ev_io io; /* first: the callback casts back */
    int fd;
    unsigned index;
    enum client_state state;
    uint32_t tx_seed, rx_seed;
    uint64_t sent, tx_end;     /* pattern bytes written, and how far to write */
    uint64_t received, rx_end; /* pattern bytes checked, and how many are expected */
    uint64_t t_begin, t_progress, t_sent;
    size_t in_len;
    unsigned char in[REPLY_MAX];
};

/* One connection accepted by the TCP origin. */
struct origin_conn {
    ev_io io; /* first */
    int fd;
    unsigned char cmd;
    uint32_t seed, len;
    size_t head_len;
    unsigned char head[HEAD_LEN];
    uint64_t in_off, out_off;
    unsigned char *echo_buf; /* echo: bytes read and not yet written back */
    size_t echo_len, echo_done;
};

struct origin_listener {
    ev_io io;
    struct sockaddr_in addr;
};

struct samples {
    uint64_t *v;
    size_t n, cap;
};

struct udp_slot {
    uint64_t seq, t_sent;
    unsigned char state; /* 0 free, 1 in flight, 2 given up as lost */
};

static struct {
    enum mode mode;
    bool use_proxy;
    bool http; /* -H: the proxy is asked with HTTP CONNECT, not SOCKS5 */
    struct sockaddr_storage proxy;
    socklen_t proxy_len;
    const char *user, *pass;
    unsigned conc;
    size_t size;
    double seconds;
    uint64_t max_ops;
    unsigned window, spread;

    struct ev_loop *loop;
    ev_timer watchdog, stop_timer, tick;
    ev_io stdin_io;
    bool stopping;

    struct origin_listener listeners[ORIGIN_PORTS_MAX];
    int udp_fd;
    ev_io udp_io;
    struct sockaddr_in udp_addr;

    struct client *clients;
    unsigned nclients;
    uint64_t serial; /* connections started */
    unsigned active, established, ready, done;
    uint64_t t_start, t_end;
    uint64_t bytes_at_start;
    uint64_t *upload_got; /* bytes the origin checked, per upload stream */
    struct samples hs, total;

    /* udp */
    int uc_fd;
    ev_io uc_io;
    struct client *ctl;
    struct udp_slot ring[UDP_RING];
    uint64_t useq, inflight, usent, urecv, ulost, ulate, phase2_recv;
    unsigned uwindow;
    int uphase;
    uint64_t t_phase2;
    struct samples rtt;
} g;

static unsigned char pattern_table[2 * PATTERN_PERIOD];
static unsigned char rx_buf[RX_BUF];

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void fail(const char *fmt, ...)
{
    va_list ap;

    fflush(stdout);
    fprintf(stderr, "loadgen: FAIL (%s): ", mode_names[g.mode]);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static uint64_t now_ns(void)
{
    struct timespec ts;

    if (clock_gettime(CLOCK_MONOTONIC, &ts) < 0)
        fail("clock_gettime: %s", strerror(errno));
    return (uint64_t)ts.tv_sec * NS + (uint64_t)ts.tv_nsec;
}

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static uint32_t get_be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_be64(unsigned char *p, uint64_t v)
{
    put_be32(p, (uint32_t)(v >> 32));
    put_be32(p + 4, (uint32_t)v);
}

static uint64_t get_be64(const unsigned char *p)
{
    return (uint64_t)get_be32(p) << 32 | get_be32(p + 4);
}

/* --- the pattern ------------------------------------------------------------------------ */

static void pattern_init(void)
{
    uint64_t x = 0x9e3779b97f4a7c15ull;

    for (size_t i = 0; i < PATTERN_PERIOD; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        pattern_table[i] = (unsigned char)(x >> 29);
    }
    memcpy(pattern_table + PATTERN_PERIOD, pattern_table, PATTERN_PERIOD);
}

/* The bytes of stream SEED from offset OFF on; PATTERN_CHUNK of them are contiguous. */
static const unsigned char *pattern_at(uint32_t seed, uint64_t off)
{
    return pattern_table + ((uint64_t)seed + off % PATTERN_PERIOD) % PATTERN_PERIOD;
}

static uint32_t pattern_seed(uint64_t n)
{
    return (uint32_t)((n * 7919u + 104729u) % PATTERN_PERIOD);
}

/* The seed of the answer to a request with seed SEED: another stream than the request's. */
static uint32_t pattern_answer_seed(uint32_t seed)
{
    return (seed + PATTERN_PERIOD / 2) % PATTERN_PERIOD;
}

static void pattern_check(const char *what, unsigned index, uint32_t seed, uint64_t off,
                          const unsigned char *buf, size_t len)
{
    while (len > 0) {
        size_t n = len < PATTERN_CHUNK ? len : PATTERN_CHUNK;
        const unsigned char *want = pattern_at(seed, off);

        if (memcmp(buf, want, n) != 0) {
            size_t i = 0;

            while (buf[i] == want[i])
                i++;
            fail("%s %u: wrong byte at stream offset %" PRIu64 ": got 0x%02x, want 0x%02x", what,
                 index, off + i, buf[i], want[i]);
        }
        buf += n;
        off += n;
        len -= n;
    }
}

/*
 * Writes stream SEED from *OFF up to END, at most IO_BUDGET bytes in one call. Returns 1 when
 * END is reached, 0 when the socket is full or the budget spent, -1 on error (errno set).
 */
static int pattern_send(int fd, uint32_t seed, uint64_t *off, uint64_t end)
{
    size_t budget = IO_BUDGET;

    while (*off < end) {
        uint64_t left = end - *off;
        size_t n = left < PATTERN_CHUNK ? (size_t)left : PATTERN_CHUNK;
        ssize_t w;

        if (budget == 0)
            return 0;
        w = send(fd, pattern_at(seed, *off), n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            return -1;
        }
        *off += (uint64_t)w;
        budget = (size_t)w < budget ? budget - (size_t)w : 0;
    }
    return 1;
}

/* --- small helpers ---------------------------------------------------------------------- */

static void io_want(ev_io *w, int events)
{
    if ((w->events & (EV_READ | EV_WRITE)) == events && ev_is_active(w))
        return;
    ev_io_stop(g.loop, w);
    if (events == 0)
        return;
    ev_io_set(w, w->fd, events);
    ev_io_start(g.loop, w);
}

/* A short message on a socket whose buffer is empty: anything but a whole write is an error. */
static void send_whole(int fd, const void *buf, size_t len, int flags, const char *what)
{
    ssize_t w;

    do
        w = send(fd, buf, len, flags | MSG_NOSIGNAL);
    while (w < 0 && errno == EINTR);
    if (w < 0)
        fail("send %s: %s", what, strerror(errno));
    if ((size_t)w != len)
        fail("send %s: short write (%zd of %zu bytes)", what, w, len);
}

static void samples_init(struct samples *s, size_t cap)
{
    s->cap = cap;
    s->n = 0;
    s->v = calloc(cap, sizeof(*s->v));
    if (s->v == NULL)
        fail("out of memory for %zu samples", cap);
}

static void samples_add(struct samples *s, uint64_t v)
{
    if (s->n < s->cap)
        s->v[s->n++] = v;
}

static int samples_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* The Q-quantile in microseconds (nearest rank), after sorting. */
static double samples_quantile(struct samples *s, double q)
{
    size_t rank;

    if (s->n == 0)
        return 0;
    qsort(s->v, s->n, sizeof(*s->v), samples_cmp);
    rank = (size_t)(q * (double)s->n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > s->n)
        rank = s->n;
    return (double)s->v[rank - 1] / 1e3;
}

static int parse_hostport(const char *arg, struct sockaddr_storage *ss, socklen_t *len)
{
    char host[128];
    const char *colon, *port_s;
    char *end;
    unsigned long port;
    size_t hl;

    memset(ss, 0, sizeof(*ss));
    if (arg[0] == '[') {
        const char *close_b = strchr(arg, ']');

        if (close_b == NULL || close_b[1] != ':')
            return -1;
        hl = (size_t)(close_b - arg - 1);
        if (hl >= sizeof(host))
            return -1;
        memcpy(host, arg + 1, hl);
        port_s = close_b + 2;
    } else {
        colon = strrchr(arg, ':');
        if (colon == NULL)
            return -1;
        hl = (size_t)(colon - arg);
        if (hl >= sizeof(host))
            return -1;
        memcpy(host, arg, hl);
        port_s = colon + 1;
    }
    host[hl] = '\0';
    errno = 0;
    port = strtoul(port_s, &end, 10);
    if (errno != 0 || *end != '\0' || port == 0 || port > 65535)
        return -1;
    if (inet_pton(AF_INET, host, &((struct sockaddr_in *)ss)->sin_addr) == 1) {
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;

        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        *len = sizeof(*sin);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &((struct sockaddr_in6 *)ss)->sin6_addr) == 1) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        *len = sizeof(*sin6);
        return 0;
    }
    return -1;
}

static void loopback_addr(struct sockaddr_in *sin, uint8_t last)
{
    memset(sin, 0, sizeof(*sin));
    sin->sin_family = AF_INET;
    sin->sin_addr.s_addr = htonl(0x7f000000u | last);
}

/* --- the TCP origin --------------------------------------------------------------------- */

static void origin_conn_cb(struct ev_loop *loop, ev_io *w, int revents);
static void upload_check_done(void);

static void origin_conn_close(struct origin_conn *oc)
{
    ev_io_stop(g.loop, &oc->io);
    if (close(oc->fd) < 0)
        fail("origin close: %s", strerror(errno));
    free(oc->echo_buf);
    free(oc);
}

/* A reset or broken pipe is expected only once the client side has stopped on purpose. */
static void origin_conn_error(struct origin_conn *oc, const char *op)
{
    if (g.stopping && (errno == ECONNRESET || errno == EPIPE)) {
        origin_conn_close(oc);
        return;
    }
    fail("origin %s (command %c, %" PRIu64 " bytes in, %" PRIu64 " out): %s", op, oc->cmd,
         oc->in_off, oc->out_off, strerror(errno));
}

/* Returns 1 when the conn is still open, 0 when it was closed. */
static int origin_conn_write(struct origin_conn *oc)
{
    int r;

    switch (oc->cmd) {
    case CMD_DOWNLOAD:
        r = pattern_send(oc->fd, oc->seed, &oc->out_off, UINT64_MAX);
        if (r < 0) {
            origin_conn_error(oc, "send");
            return 0;
        }
        return 1;
    case CMD_REQUEST:
        r = pattern_send(oc->fd, pattern_answer_seed(oc->seed), &oc->out_off, oc->len);
        if (r < 0) {
            origin_conn_error(oc, "send");
            return 0;
        }
        if (r == 1) { /* the answer is out: the origin closes first, like HTTP/1.0 */
            origin_conn_close(oc);
            return 0;
        }
        io_want(&oc->io, EV_WRITE);
        return 1;
    case CMD_ECHO:
        while (oc->echo_done < oc->echo_len) {
            ssize_t w = send(oc->fd, oc->echo_buf + oc->echo_done, oc->echo_len - oc->echo_done,
                             MSG_NOSIGNAL);

            if (w < 0) {
                if (errno == EINTR)
                    continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK) {
                    io_want(&oc->io, EV_WRITE);
                    return 1;
                }
                origin_conn_error(oc, "send");
                return 0;
            }
            oc->echo_done += (size_t)w;
            oc->out_off += (uint64_t)w;
        }
        oc->echo_len = oc->echo_done = 0;
        io_want(&oc->io, EV_READ);
        return 1;
    default:
        return 1;
    }
}

static void origin_conn_head(struct origin_conn *oc)
{
    if (memcmp(oc->head, HEAD_MAGIC, 4) != 0)
        fail("origin: bad stream header (not from loadgen, or bytes changed on the way)");
    oc->cmd = oc->head[4];
    oc->seed = get_be32(oc->head + 8);
    oc->len = get_be32(oc->head + 12);
    if (oc->seed >= PATTERN_PERIOD)
        fail("origin: bad seed %" PRIu32 " in stream header", oc->seed);
    switch (oc->cmd) {
    case CMD_DOWNLOAD:
        io_want(&oc->io, EV_WRITE);
        break;
    case CMD_UPLOAD:
        if (g.mode != MODE_UPLOAD || oc->len >= g.nclients)
            fail("origin: upload stream %" PRIu32 " was not opened", oc->len);
        break;
    case CMD_REQUEST:
        break;
    case CMD_ECHO:
        oc->echo_buf = malloc(RX_BUF);
        if (oc->echo_buf == NULL)
            fail("origin: out of memory");
        break;
    default:
        fail("origin: unknown command 0x%02x in stream header", oc->cmd);
    }
}

static void origin_conn_eof(struct origin_conn *oc)
{
    switch (oc->cmd) {
    case CMD_UPLOAD:
        if (g.stopping) {
            origin_conn_close(oc);
            return;
        }
        fail("origin: upload stream %" PRIu32 " closed after %" PRIu64 " bytes", oc->len,
             oc->in_off);
    case CMD_ECHO:
        origin_conn_close(oc);
        return;
    case CMD_REQUEST:
        if (g.stopping) {
            origin_conn_close(oc);
            return;
        }
        fail("origin: client closed after %" PRIu64 " of %" PRIu32 " request bytes", oc->in_off,
             oc->len);
    default:
        if (g.stopping) {
            origin_conn_close(oc);
            return;
        }
        fail("origin: client closed after %zu header bytes", oc->head_len);
    }
}

static void origin_conn_read(struct origin_conn *oc)
{
    size_t budget = IO_BUDGET;

    while (budget > 0) {
        unsigned char *buf;
        size_t want;
        ssize_t n;

        if (oc->head_len < HEAD_LEN) {
            buf = oc->head + oc->head_len;
            want = HEAD_LEN - oc->head_len;
        } else if (oc->cmd == CMD_ECHO) {
            buf = oc->echo_buf;
            want = RX_BUF;
        } else if (oc->cmd == CMD_REQUEST) {
            buf = rx_buf;
            want = oc->len - oc->in_off + 1; /* one more: a byte too many must show */
            if (want > RX_BUF)
                want = RX_BUF;
        } else if (oc->cmd == CMD_UPLOAD) {
            buf = rx_buf;
            want = RX_BUF;
        } else {
            buf = rx_buf; /* download: nothing may come after the header but EOF */
            want = 1;
        }
        n = recv(oc->fd, buf, want, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            origin_conn_error(oc, "recv");
            return;
        }
        if (n == 0) {
            origin_conn_eof(oc);
            return;
        }
        budget = (size_t)n < budget ? budget - (size_t)n : 0;
        if (oc->head_len < HEAD_LEN) {
            oc->head_len += (size_t)n;
            if (oc->head_len == HEAD_LEN)
                origin_conn_head(oc);
            continue;
        }
        switch (oc->cmd) {
        case CMD_DOWNLOAD:
            fail("origin: %zd unexpected bytes on a download stream", n);
        case CMD_UPLOAD:
            pattern_check("upload stream", oc->len, oc->seed, oc->in_off, buf, (size_t)n);
            oc->in_off += (uint64_t)n;
            g.upload_got[oc->len] = oc->in_off;
            if (g.stopping)
                upload_check_done();
            break;
        case CMD_REQUEST:
            if (oc->in_off + (uint64_t)n > oc->len)
                fail("origin: request longer than the %" PRIu32 " bytes announced", oc->len);
            pattern_check("request", 0, oc->seed, oc->in_off, buf, (size_t)n);
            oc->in_off += (uint64_t)n;
            if (oc->in_off == oc->len) {
                io_want(&oc->io, 0);
                origin_conn_write(oc);
                return;
            }
            break;
        case CMD_ECHO:
            pattern_check("echo stream", 0, oc->seed, oc->in_off, buf, (size_t)n);
            oc->in_off += (uint64_t)n;
            oc->echo_len = (size_t)n;
            oc->echo_done = 0;
            if (!origin_conn_write(oc))
                return;
            if (oc->echo_len > 0)
                return; /* wait until it has gone back */
            break;
        }
    }
}

static void origin_conn_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct origin_conn *oc = (struct origin_conn *)w;

    (void)loop;
    if (revents & EV_WRITE) {
        if (!origin_conn_write(oc))
            return;
    }
    if ((revents & EV_READ) && (oc->io.events & EV_READ))
        origin_conn_read(oc);
}

static void origin_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    for (int i = 0; i < 64; i++) {
        struct origin_conn *oc;
        int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED)
                return;
            fail("origin accept: %s", strerror(errno));
        }
        oc = calloc(1, sizeof(*oc));
        if (oc == NULL)
            fail("origin: out of memory");
        oc->fd = fd;
        ev_io_init(&oc->io, origin_conn_cb, fd, EV_READ);
        ev_io_start(g.loop, &oc->io);
    }
}

static void origin_udp_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    for (int i = 0; i < 256; i++) {
        struct sockaddr_storage from;
        socklen_t flen = sizeof(from);
        ssize_t n = recvfrom(w->fd, rx_buf, RX_BUF, 0, (struct sockaddr *)&from, &flen);

        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                return;
            fail("origin udp recvfrom: %s", strerror(errno));
        }
        if ((size_t)n != g.size)
            fail("origin udp: datagram of %zd bytes, want %zu", n, g.size);
        pattern_check("udp datagram at the origin", 0, UDP_SEED, get_be64(rx_buf) * g.size + 8,
                      rx_buf + 8, g.size - 8);
        if (sendto(w->fd, rx_buf, (size_t)n, 0, (struct sockaddr *)&from, flen) < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)
                continue; /* dropped: the client counts it as lost */
            fail("origin udp sendto: %s", strerror(errno));
        }
    }
}

static void origin_start(unsigned ports)
{
    int one = 1;

    for (unsigned i = 0; i < ports; i++) {
        struct origin_listener *l = &g.listeners[i];
        socklen_t len = sizeof(l->addr);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

        if (fd < 0)
            fail("origin socket: %s", strerror(errno));
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
            fail("origin SO_REUSEADDR: %s", strerror(errno));
        /* Accepted sockets inherit it (Linux): one call per connection less. */
        if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
            fail("origin TCP_NODELAY: %s", strerror(errno));
        loopback_addr(&l->addr, 1);
        if (bind(fd, (struct sockaddr *)&l->addr, sizeof(l->addr)) < 0)
            fail("origin bind: %s", strerror(errno));
        if (listen(fd, 4096) < 0)
            fail("origin listen: %s", strerror(errno));
        if (getsockname(fd, (struct sockaddr *)&l->addr, &len) < 0)
            fail("origin getsockname: %s", strerror(errno));
        ev_io_init(&l->io, origin_accept_cb, fd, EV_READ);
        ev_io_start(g.loop, &l->io);
    }
    if (g.mode == MODE_UDP) {
        socklen_t len = sizeof(g.udp_addr);
        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

        if (fd < 0)
            fail("origin udp socket: %s", strerror(errno));
        loopback_addr(&g.udp_addr, 1);
        if (bind(fd, (struct sockaddr *)&g.udp_addr, sizeof(g.udp_addr)) < 0)
            fail("origin udp bind: %s", strerror(errno));
        if (getsockname(fd, (struct sockaddr *)&g.udp_addr, &len) < 0)
            fail("origin udp getsockname: %s", strerror(errno));
        g.udp_fd = fd;
        ev_io_init(&g.udp_io, origin_udp_cb, fd, EV_READ);
        ev_io_start(g.loop, &g.udp_io);
    }
}

/* --- the client ------------------------------------------------------------------------- */

static void client_cb(struct ev_loop *loop, ev_io *w, int revents);
static void client_start(struct client *c);
static void client_established(struct client *c);
static void client_connected(struct client *c);
static void udp_start(void);

static void finish(void);

static const struct sockaddr_in *client_origin(const struct client *c)
{
    return &g.listeners[c->index % g.spread].addr;
}

static void client_close(struct client *c)
{
    ev_io_stop(g.loop, &c->io);
    if (c->fd >= 0 && close(c->fd) < 0)
        fail("client close: %s", strerror(errno));
    c->fd = -1;
    g.active--;
}

static void client_fail(const struct client *c, const char *what) __attribute__((noreturn));
static void client_fail_errno(const struct client *c, const char *what) __attribute__((noreturn));

static void client_fail(const struct client *c, const char *what)
{
    fail("connection %u (%s): %s", c->index, client_state_names[c->state], what);
}

static void client_fail_errno(const struct client *c, const char *what)
{
    fail("connection %u (%s): %s: %s", c->index, client_state_names[c->state], what,
         strerror(errno));
}

static void client_start(struct client *c)
{
    const struct sockaddr *to;
    socklen_t tolen;
    int one = 1;
    int fd;

    memset(c, 0, sizeof(*c));
    c->index = (unsigned)(c - g.clients);
    c->tx_seed = c->rx_seed = pattern_seed(g.serial++);
    if (g.use_proxy) {
        to = (const struct sockaddr *)&g.proxy;
        tolen = g.proxy_len;
    } else {
        to = (const struct sockaddr *)client_origin(c);
        tolen = sizeof(struct sockaddr_in);
    }
    fd = socket(to->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        fail("socket: %s", strerror(errno));
    c->fd = fd;
    if (g.mode != MODE_DOWNLOAD && g.mode != MODE_UPLOAD &&
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
        fail("TCP_NODELAY: %s", strerror(errno));
    /* Many connections: spread them over source addresses, so that the 4-tuples of sockets
     * in TIME_WAIT do not run out on one address pair. */
    if (g.spread > 1 && to->sa_family == AF_INET &&
        (ntohl(((const struct sockaddr_in *)to)->sin_addr.s_addr) >> 24) == 127) {
        struct sockaddr_in src;

        if (setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one)) < 0)
            fail("IP_BIND_ADDRESS_NO_PORT: %s", strerror(errno));
        loopback_addr(&src, (uint8_t)(1 + c->index % g.spread));
        if (bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0)
            fail("bind source 127.0.0.%u: %s", 1 + c->index % g.spread, strerror(errno));
    }
    c->t_begin = c->t_progress = now_ns();
    c->state = CLIENT_CONNECTING;
    g.active++;
    ev_io_init(&c->io, client_cb, fd, EV_WRITE);
    /* On loopback the handshake is over when connect() returns, though it says EINPROGRESS:
     * asking again tells (0, or EALREADY while it is still on its way), and spares this
     * client (and so every server measured) a trip through the loop. */
    if (connect(fd, to, tolen) == 0 ||
        (errno == EINPROGRESS && (connect(fd, to, tolen) == 0 || errno == EISCONN))) {
        client_connected(c);
        return;
    }
    if (errno != EINPROGRESS && errno != EALREADY)
        client_fail_errno(c, "connect");
    ev_io_start(g.loop, &c->io);
}

static void client_send_request(struct client *c)
{
    unsigned char req[22];
    size_t len;

    req[0] = 5;
    req[1] = g.mode == MODE_UDP ? 3 : 1; /* UDP ASSOCIATE or CONNECT */
    req[2] = 0;
    if (g.mode == MODE_UDP) {
        /* RFC 1928 section 7: the address the client will send its datagrams from. */
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);

        if (getsockname(g.uc_fd, (struct sockaddr *)&ss, &sl) < 0)
            fail("getsockname udp: %s", strerror(errno));
        if (ss.ss_family == AF_INET) {
            const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;

            req[3] = 1;
            memcpy(req + 4, &sin->sin_addr, 4);
            memcpy(req + 8, &sin->sin_port, 2);
            len = 10;
        } else {
            const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&ss;

            req[3] = 4;
            memcpy(req + 4, &sin6->sin6_addr, 16);
            memcpy(req + 20, &sin6->sin6_port, 2);
            len = 22;
        }
    } else {
        const struct sockaddr_in *o = client_origin(c);

        req[3] = 1;
        memcpy(req + 4, &o->sin_addr, 4);
        memcpy(req + 8, &o->sin_port, 2);
        len = 10;
    }
    send_whole(c->fd, req, len, 0, "SOCKS5 request");
    c->state = CLIENT_WAIT_REPLY;
}

/* The connect finished: check how, from the writable event. */
static void client_connect_done(struct client *c)
{
    int err = 0;
    socklen_t el = sizeof(err);

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
        client_fail_errno(c, "getsockopt SO_ERROR");
    if (err != 0) {
        errno = err;
        client_fail_errno(c, "connect");
    }
    client_connected(c);
}

/* RFC 4648 base64 of len bytes into out (NUL-terminated). */
static void base64(const unsigned char *in, size_t len, char *out)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i, o = 0;

    for (i = 0; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = a[v >> 18];
        out[o++] = a[(v >> 12) & 63];
        out[o++] = a[(v >> 6) & 63];
        out[o++] = a[v & 63];
    }
    if (i < len) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < len ? (uint32_t)in[i + 1] << 8 : 0);
        out[o++] = a[v >> 18];
        out[o++] = a[(v >> 12) & 63];
        out[o++] = i + 1 < len ? a[(v >> 6) & 63] : '=';
        out[o++] = '=';
    }
    out[o] = '\0';
}

/* HTTP CONNECT to the client's origin (RFC 9110 section 9.3.6), Basic credentials with -u/-p. */
static void http_send_connect(struct client *c)
{
    const struct sockaddr_in *o = client_origin(c);
    char ip[INET_ADDRSTRLEN], head[1200], auth[800] = "";
    int n;

    inet_ntop(AF_INET, &o->sin_addr, ip, sizeof(ip));
    if (g.user != NULL) {
        char cred[520], b64[700];
        int cl = snprintf(cred, sizeof(cred), "%s:%s", g.user, g.pass);

        base64((const unsigned char *)cred, (size_t)cl, b64);
        snprintf(auth, sizeof(auth), "Proxy-Authorization: Basic %s\r\n", b64);
    }
    n = snprintf(head, sizeof(head), "CONNECT %s:%u HTTP/1.1\r\nHost: %s:%u\r\n%s\r\n", ip,
                 ntohs(o->sin_port), ip, ntohs(o->sin_port), auth);
    send_whole(c->fd, head, (size_t)n, 0, "HTTP CONNECT");
    c->state = CLIENT_WAIT_REPLY;
}

/* The proxy's answer to CONNECT: a 2xx head and nothing after it. */
static void http_reply_read(struct client *c)
{
    const unsigned char *end;
    char msg[160];

    end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
    if (end == NULL) {
        if (c->in_len == sizeof(c->in))
            client_fail(c, "HTTP response head longer than the reply buffer");
        return;
    }
    if (c->in_len < 12 || memcmp(c->in, "HTTP/1.", 7) != 0 || c->in[9] != '2') {
        snprintf(msg, sizeof(msg), "CONNECT refused: %.*s", (int)strcspn((char *)c->in, "\r"),
                 (const char *)c->in);
        client_fail(c, msg);
    }
    if ((size_t)(end + 4 - c->in) != c->in_len)
        client_fail(c, "bytes after the HTTP response head, before any were asked for");
    client_established(c);
}

static void client_connected(struct client *c)
{
    io_want(&c->io, EV_READ);
    if (!g.use_proxy) {
        client_established(c);
        return;
    }
    if (g.http) {
        http_send_connect(c);
        return;
    }
    {
        unsigned char greeting[3] = {5, 1, g.user != NULL ? 2 : 0};

        send_whole(c->fd, greeting, sizeof(greeting), 0, "SOCKS5 greeting");
        c->state = CLIENT_WAIT_METHOD;
    }
}

/* Length of the SOCKS5 reply in IN (RFC 1928 section 6), or 0 while more is needed. */
static size_t socks5_reply_len(const struct client *c)
{
    if (c->in_len < 5)
        return 0;
    switch (c->in[3]) {
    case 1:
        return 10;
    case 4:
        return 22;
    case 3:
        return 7 + (size_t)c->in[4];
    default: {
        char msg[64];

        snprintf(msg, sizeof(msg), "reply with bad ATYP 0x%02x", c->in[3]);
        client_fail(c, msg);
    }
    }
}

static const char *socks5_rep_name(unsigned rep)
{
    static const char *const names[] = {
        "succeeded",           "general failure",       "not allowed by ruleset",
        "network unreachable", "host unreachable",      "connection refused",
        "TTL expired",         "command not supported", "address type not supported",
    };

    return rep < 9 ? names[rep] : "unassigned";
}

/* The UDP relay address in a UDP ASSOCIATE reply; an unspecified address means the server's. */
static void udp_relay_from_reply(const struct client *c, struct sockaddr_storage *ss,
                                 socklen_t *len)
{
    memset(ss, 0, sizeof(*ss));
    if (c->in[3] == 1) {
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;

        sin->sin_family = AF_INET;
        memcpy(&sin->sin_addr, c->in + 4, 4);
        memcpy(&sin->sin_port, c->in + 8, 2);
        if (sin->sin_addr.s_addr == htonl(INADDR_ANY) && g.proxy.ss_family == AF_INET)
            sin->sin_addr = ((const struct sockaddr_in *)&g.proxy)->sin_addr;
        *len = sizeof(*sin);
    } else if (c->in[3] == 4) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

        sin6->sin6_family = AF_INET6;
        memcpy(&sin6->sin6_addr, c->in + 4, 16);
        memcpy(&sin6->sin6_port, c->in + 20, 2);
        if (IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr) && g.proxy.ss_family == AF_INET6)
            sin6->sin6_addr = ((const struct sockaddr_in6 *)&g.proxy)->sin6_addr;
        *len = sizeof(*sin6);
    } else {
        client_fail(c, "UDP ASSOCIATE reply names the relay by a domain name");
    }
}

static void client_handshake_read(struct client *c)
{
    ssize_t n;
    size_t need;
    char msg[128];

    n = recv(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len, 0);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return;
        client_fail_errno(c, "recv");
    }
    if (n == 0) {
        snprintf(msg, sizeof(msg), "server closed the connection after %zu reply bytes", c->in_len);
        client_fail(c, msg);
    }
    c->in_len += (size_t)n;
    c->t_progress = now_ns();
    if (g.http) {
        http_reply_read(c);
        return;
    }
    if (c->in[0] != (c->state == CLIENT_WAIT_AUTH ? 1 : 5)) {
        snprintf(msg, sizeof(msg), "reply with version 0x%02x", c->in[0]);
        client_fail(c, msg);
    }
    switch (c->state) {
    case CLIENT_WAIT_METHOD:
        if (c->in_len < 2)
            return;
        if (c->in_len > 2)
            client_fail(c, "bytes after the method selection");
        if (c->in[1] != (g.user != NULL ? 2 : 0)) {
            snprintf(msg, sizeof(msg), "server chose method 0x%02x", c->in[1]);
            client_fail(c, msg);
        }
        c->in_len = 0;
        if (g.user != NULL) {
            /* RFC 1929 section 2 */
            unsigned char auth[3 + 255 + 255];
            size_t ul = strlen(g.user), pl = strlen(g.pass);

            auth[0] = 1;
            auth[1] = (unsigned char)ul;
            memcpy(auth + 2, g.user, ul);
            auth[2 + ul] = (unsigned char)pl;
            memcpy(auth + 3 + ul, g.pass, pl);
            send_whole(c->fd, auth, 3 + ul + pl, 0, "RFC 1929 request");
            c->state = CLIENT_WAIT_AUTH;
        } else {
            client_send_request(c);
        }
        return;
    case CLIENT_WAIT_AUTH:
        if (c->in_len < 2)
            return;
        if (c->in_len > 2)
            client_fail(c, "bytes after the RFC 1929 reply");
        if (c->in[1] != 0) {
            snprintf(msg, sizeof(msg), "password refused (status 0x%02x)", c->in[1]);
            client_fail(c, msg);
        }
        c->in_len = 0;
        client_send_request(c);
        return;
    case CLIENT_WAIT_REPLY:
        need = socks5_reply_len(c);
        if (need == 0 || c->in_len < need)
            return;
        if (c->in_len > need)
            client_fail(c, "bytes after the SOCKS5 reply, before any were asked for");
        if (c->in[1] == 7 && g.mode == MODE_UDP) {
            /* not an error of the server: it just has no UDP ASSOCIATE */
            fprintf(stderr, "loadgen: UNSUPPORTED: the server answers UDP ASSOCIATE with REP "
                            "0x07 (command not supported)\n");
            exit(3);
        }
        if (c->in[1] != 0) {
            snprintf(msg, sizeof(msg), "request refused: REP 0x%02x (%s)", c->in[1],
                     socks5_rep_name(c->in[1]));
            client_fail(c, msg);
        }
        if (c->in[2] != 0)
            client_fail(c, "reply with RSV not zero");
        client_established(c);
        return;
    default:
        return;
    }
}

static void client_send_head(struct client *c, unsigned char cmd, uint32_t len, bool more)
{
    unsigned char head[HEAD_LEN];

    memcpy(head, HEAD_MAGIC, 4);
    head[4] = cmd;
    head[5] = head[6] = head[7] = 0;
    put_be32(head + 8, c->tx_seed);
    put_be32(head + 12, len);
    send_whole(c->fd, head, sizeof(head), more ? MSG_MORE : 0, "stream header");
}

/* Writes the pattern up to tx_end; arms EV_WRITE while there is more to write. */
static void client_flush(struct client *c)
{
    int r = pattern_send(c->fd, c->tx_seed, &c->sent, c->tx_end);

    if (r < 0)
        client_fail_errno(c, "send");
    io_want(&c->io, (r == 1 ? 0 : EV_WRITE) | (c->rx_end > c->received ? EV_READ : 0) |
                        (c->state == CLIENT_IDLE ? EV_READ : 0));
}

static void client_established(struct client *c)
{
    uint64_t t = now_ns();

    samples_add(&g.hs, t - c->t_begin);
    c->in_len = 0;
    c->t_progress = t;
    c->state = CLIENT_RUN;
    g.established++;
    switch (g.mode) {
    case MODE_DOWNLOAD:
        client_send_head(c, CMD_DOWNLOAD, 0, false);
        c->rx_end = UINT64_MAX;
        io_want(&c->io, EV_READ);
        break;
    case MODE_UPLOAD:
        client_send_head(c, CMD_UPLOAD, c->index, false);
        c->tx_end = UINT64_MAX;
        io_want(&c->io, EV_WRITE);
        break;
    case MODE_CPS:
        client_send_head(c, CMD_REQUEST, (uint32_t)g.size, true);
        c->rx_seed = pattern_answer_seed(c->tx_seed);
        c->tx_end = c->rx_end = g.size;
        client_flush(c);
        break;
    case MODE_PINGPONG:
        client_send_head(c, CMD_ECHO, 0, true);
        c->tx_end = c->rx_end = g.size;
        c->t_sent = now_ns();
        client_flush(c);
        break;
    case MODE_IDLE:
        client_send_head(c, CMD_ECHO, 0, true);
        c->tx_end = c->rx_end = IDLE_PROBE;
        client_flush(c);
        break;
    case MODE_UDP:
        c->state = CLIENT_IDLE; /* the control connection only has to stay open */
        io_want(&c->io, EV_READ);
        udp_start();
        return;
    }
    if (g.mode == MODE_DOWNLOAD || g.mode == MODE_UPLOAD) {
        if (g.established == g.nclients) {
            /* measure from the moment every stream is up */
            g.t_start = now_ns();
            g.bytes_at_start = 0;
            for (unsigned i = 0; i < g.nclients; i++)
                g.bytes_at_start +=
                    g.mode == MODE_DOWNLOAD ? g.clients[i].received : g.clients[i].sent;
            ev_timer_set(&g.stop_timer, g.seconds, 0);
            ev_timer_start(g.loop, &g.stop_timer);
        }
    }
}

static void client_idle_all_ready(void);
static void client_rx_complete(struct client *c);

static void client_read_data(struct client *c)
{
    size_t budget = IO_BUDGET;

    while (budget > 0 && c->state == CLIENT_RUN) {
        uint64_t left = c->rx_end - c->received;
        size_t want = left < RX_BUF ? (size_t)left + 1 : RX_BUF; /* one more must show */
        ssize_t n = recv(c->fd, rx_buf, want, 0);
        char msg[128];

        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            client_fail_errno(c, "recv");
        }
        if (n == 0) {
            snprintf(msg, sizeof(msg),
                     "closed by the other end after %" PRIu64 " of %" PRIu64 " expected bytes",
                     c->received, c->rx_end);
            client_fail(c, msg);
        }
        if ((uint64_t)n > left)
            client_fail(c, "more bytes than were sent or asked for");
        pattern_check(g.mode == MODE_DOWNLOAD ? "download stream" : "answer", c->index, c->rx_seed,
                      c->received, rx_buf, (size_t)n);
        c->received += (uint64_t)n;
        c->t_progress = now_ns();
        budget = (size_t)n < budget ? budget - (size_t)n : 0;
        if (c->received == c->rx_end) {
            client_rx_complete(c);
            return;
        }
    }
}

/* Every byte expected so far has arrived and is right. */
static void client_rx_complete(struct client *c)
{
    uint64_t t = now_ns();

    switch (g.mode) {
    case MODE_CPS:
        c->state = CLIENT_WAIT_EOF;
        io_want(&c->io, EV_READ);
        break;
    case MODE_PINGPONG:
        samples_add(&g.rtt, t - c->t_sent);
        g.done++;
        if (g.stopping || g.done >= g.max_ops) {
            g.t_end = t;
            finish();
        }
        c->tx_end += g.size;
        c->rx_end += g.size;
        c->t_sent = now_ns();
        client_flush(c);
        break;
    case MODE_IDLE:
        if (c->rx_end == IDLE_PROBE) {
            c->state = CLIENT_IDLE;
            io_want(&c->io, EV_READ);
            g.ready++;
            if (g.serial < g.nclients)
                client_start(&g.clients[g.serial]);
            if (g.ready == g.nclients)
                client_idle_all_ready();
        } else {
            client_close(c);
            c->state = CLIENT_DONE;
            if (++g.done == g.nclients) {
                g.t_end = t;
                finish();
            }
        }
        break;
    default:
        break;
    }
}

static void client_eof_read(struct client *c)
{
    ssize_t n = recv(c->fd, c->in, sizeof(c->in), 0);
    uint64_t t;

    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return;
        client_fail_errno(c, "recv");
    }
    if (n > 0)
        client_fail(c, "bytes after the end of the answer");
    t = now_ns();
    samples_add(&g.total, t - c->t_begin);
    client_close(c);
    c->state = CLIENT_DONE;
    g.done++;
    g.t_end = t;
    if (!g.stopping && g.serial < g.max_ops) {
        client_start(c);
        return;
    }
    if (g.active == 0)
        finish();
}

/*
 * Upload mode, after the stop: the origin runs in this process, so the client learns from it
 * directly how far each stream has been checked; no half-close is needed, which not every
 * server passes on.
 */
static void upload_check_done(void)
{
    for (unsigned i = 0; i < g.nclients; i++) {
        struct client *c = &g.clients[i];

        if (g.upload_got[i] > c->sent)
            client_fail(c, "the origin got more bytes than were sent");
        if (g.upload_got[i] < c->sent)
            return;
    }
    g.t_end = now_ns();
    finish();
}

/* Nothing may come back on an upload stream. */
static void client_drain_read(struct client *c)
{
    ssize_t n = recv(c->fd, c->in, sizeof(c->in), 0);

    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return;
        client_fail_errno(c, "recv");
    }
    client_fail(c, n == 0 ? "closed by the server before the origin had every byte"
                          : "bytes back on an upload stream");
}

static void client_idle_event(struct client *c)
{
    ssize_t n = recv(c->fd, c->in, sizeof(c->in), 0);

    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return;
        client_fail_errno(c, g.mode == MODE_UDP ? "UDP control connection" : "idle session");
    }
    if (n == 0)
        client_fail(c, g.mode == MODE_UDP ? "server closed the UDP control connection"
                                          : "server closed an idle session");
    client_fail(c, "bytes on a connection that should be quiet");
}

static void client_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct client *c = (struct client *)w;

    (void)loop;
    switch (c->state) {
    case CLIENT_CONNECTING:
        client_connect_done(c);
        break;
    case CLIENT_WAIT_METHOD:
    case CLIENT_WAIT_AUTH:
    case CLIENT_WAIT_REPLY:
        client_handshake_read(c);
        break;
    case CLIENT_RUN:
        if (revents & EV_WRITE) {
            if (g.mode == MODE_UPLOAD && g.stopping)
                break;
            client_flush(c);
            c->t_progress = now_ns();
        }
        if ((revents & EV_READ) && c->state == CLIENT_RUN)
            client_read_data(c);
        break;
    case CLIENT_IDLE:
        client_idle_event(c);
        break;
    case CLIENT_DRAIN:
        client_drain_read(c);
        break;
    case CLIENT_WAIT_EOF:
        client_eof_read(c);
        break;
    case CLIENT_FREE:
    case CLIENT_DONE:
        break;
    }
}

static void client_idle_all_ready(void)
{
    uint64_t t = now_ns();

    printf("ready sessions=%u open_seconds=%.3f\n", g.nclients, (double)(t - g.t_start) / 1e9);
    if (fflush(stdout) != 0)
        fail("stdout: %s", strerror(errno));
    g.t_start = t;
    ev_io_start(g.loop, &g.stdin_io);
    ev_timer_set(&g.stop_timer, g.seconds, 0);
    ev_timer_start(g.loop, &g.stop_timer);
}

/* Idle mode: probe every session once more, then close them. */
static void client_idle_check(void)
{
    ev_io_stop(g.loop, &g.stdin_io);
    ev_timer_stop(g.loop, &g.stop_timer);
    g.stopping = true;
    for (unsigned i = 0; i < g.nclients; i++) {
        struct client *c = &g.clients[i];

        c->state = CLIENT_RUN;
        c->tx_end = c->rx_end = 2 * IDLE_PROBE;
        c->t_progress = now_ns();
        client_flush(c);
    }
}

static void stdin_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    char buf[256];
    ssize_t n;

    (void)loop;
    (void)revents;
    n = read(w->fd, buf, sizeof(buf));
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    client_idle_check();
}

/* --- UDP ASSOCIATE ---------------------------------------------------------------------- */

static size_t udp_head_len(void)
{
    return g.use_proxy ? 10 : 0;
}

static void udp_send_one(void)
{
    unsigned char pkt[10 + 65536];
    size_t hl = udp_head_len();
    uint64_t seq = g.useq++;
    struct udp_slot *s = &g.ring[seq % UDP_RING];

    if (s->state == 1) { /* still in flight a whole ring ago: lost */
        g.ulost++;
        g.inflight--;
    }
    if (hl > 0) {
        /* RFC 1928 section 7: RSV, FRAG 0, ATYP IPv4, DST.ADDR, DST.PORT */
        pkt[0] = pkt[1] = pkt[2] = 0;
        pkt[3] = 1;
        memcpy(pkt + 4, &g.udp_addr.sin_addr, 4);
        memcpy(pkt + 8, &g.udp_addr.sin_port, 2);
    }
    put_be64(pkt + hl, seq);
    memcpy(pkt + hl + 8, pattern_at(UDP_SEED, seq * g.size + 8), g.size - 8);
    s->seq = seq;
    s->state = 1;
    s->t_sent = now_ns();
    g.inflight++;
    g.usent++;
    if (send(g.uc_fd, pkt, hl + g.size, 0) < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)
            return; /* counts as lost once its time is up */
        fail("udp send: %s", strerror(errno));
    }
}

static void udp_fill(void)
{
    while (g.inflight < g.uwindow && g.usent < g.max_ops && !g.stopping)
        udp_send_one();
}

static void udp_phase_end(void)
{
    uint64_t t = now_ns();

    if (g.uphase == 1) {
        g.uphase = 2;
        g.uwindow = g.window;
        g.t_phase2 = t;
        g.phase2_recv = 0;
        ev_timer_set(&g.stop_timer, g.seconds * 2 / 3, 0);
        ev_timer_start(g.loop, &g.stop_timer);
        udp_fill();
        return;
    }
    g.t_end = t;
    finish();
}

static void udp_client_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    size_t hl = udp_head_len();

    (void)loop;
    (void)revents;
    for (int i = 0; i < 256; i++) {
        ssize_t n = recv(w->fd, rx_buf, RX_BUF, 0);
        uint64_t seq;
        struct udp_slot *s;

        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                break;
            fail("udp recv: %s", strerror(errno));
        }
        if ((size_t)n != hl + g.size)
            fail("udp: datagram of %zd bytes, want %zu", n, hl + g.size);
        if (hl > 0) {
            if (rx_buf[0] != 0 || rx_buf[1] != 0)
                fail("udp: reply header with RSV not zero");
            if (rx_buf[2] != 0)
                fail("udp: reply header with FRAG 0x%02x", rx_buf[2]);
            if (rx_buf[3] != 1)
                fail("udp: reply header with ATYP 0x%02x, want IPv4", rx_buf[3]);
            if (memcmp(rx_buf + 4, &g.udp_addr.sin_addr, 4) != 0 ||
                memcmp(rx_buf + 8, &g.udp_addr.sin_port, 2) != 0)
                fail("udp: reply header does not name the origin as the source");
        }
        seq = get_be64(rx_buf + hl);
        s = &g.ring[seq % UDP_RING];
        if (seq >= g.useq)
            fail("udp: datagram %" PRIu64 " was never sent", seq);
        if (seq < s->seq) { /* so late that its slot went to a newer one */
            g.ulate++;
            continue;
        }
        if (s->seq != seq || s->state == 0)
            fail("udp: datagram %" PRIu64 " came twice", seq);
        pattern_check("udp datagram", 0, UDP_SEED, seq * g.size + 8, rx_buf + hl + 8, g.size - 8);
        if (s->state == 2) {
            g.ulate++;
            s->state = 0;
            continue;
        }
        s->state = 0;
        g.inflight--;
        g.urecv++;
        if (g.uphase == 1)
            samples_add(&g.rtt, now_ns() - s->t_sent);
        else
            g.phase2_recv++;
    }
    if (g.uphase == 1 && (g.stopping || g.rtt.n >= g.max_ops / 2)) {
        g.stopping = false;
        ev_timer_stop(g.loop, &g.stop_timer);
        udp_phase_end();
        return;
    }
    if (g.stopping && g.inflight == 0) {
        udp_phase_end();
        return;
    }
    udp_fill();
    if (g.usent >= g.max_ops && g.inflight == 0)
        udp_phase_end();
}

/* Gives up on datagrams in flight too long, so that a lost one does not stall the window. */
static void udp_tick(void)
{
    uint64_t t = now_ns();

    for (unsigned i = 0; i < UDP_RING; i++) {
        struct udp_slot *s = &g.ring[i];

        if (s->state == 1 && t - s->t_sent > UDP_LOSS_NS) {
            s->state = 2;
            g.inflight--;
            g.ulost++;
        }
    }
    if (g.stopping && g.inflight == 0) {
        if (g.uphase == 1)
            g.stopping = false;
        udp_phase_end();
        return;
    }
    udp_fill();
}

static void udp_start(void)
{
    if (g.use_proxy) {
        struct sockaddr_storage relay;
        socklen_t rl;

        udp_relay_from_reply(g.ctl, &relay, &rl);
        if (relay.ss_family != g.proxy.ss_family)
            fail("udp: relay address of another family than the server's");
        if (connect(g.uc_fd, (struct sockaddr *)&relay, rl) < 0)
            fail("udp connect to the relay: %s", strerror(errno));
    } else {
        if (connect(g.uc_fd, (struct sockaddr *)&g.udp_addr, sizeof(g.udp_addr)) < 0)
            fail("udp connect to the origin: %s", strerror(errno));
    }
    ev_io_init(&g.uc_io, udp_client_cb, g.uc_fd, EV_READ);
    ev_io_start(g.loop, &g.uc_io);
    g.uphase = 1;
    g.uwindow = 1;
    g.t_start = now_ns();
    ev_timer_set(&g.stop_timer, g.seconds / 3, 0);
    ev_timer_start(g.loop, &g.stop_timer);
    udp_fill();
}

static void udp_open(void)
{
    int fd;

    if (g.use_proxy) {
        union {
            struct sockaddr_storage ss;
            struct sockaddr_in sin;
            struct sockaddr_in6 sin6;
        } local;
        socklen_t len;

        memcpy(&local.ss, &g.proxy, sizeof(local.ss));
        if (local.ss.ss_family == AF_INET) {
            local.sin.sin_port = 0;
            len = sizeof(local.sin);
        } else {
            local.sin6.sin6_port = 0;
            len = sizeof(local.sin6);
        }
        fd = socket(local.ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            fail("udp socket: %s", strerror(errno));
        if (bind(fd, (struct sockaddr *)&local.ss, len) < 0)
            fail("udp bind: %s", strerror(errno));
    } else {
        struct sockaddr_in local;

        fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            fail("udp socket: %s", strerror(errno));
        loopback_addr(&local, 1);
        if (bind(fd, (struct sockaddr *)&local, sizeof(local)) < 0)
            fail("udp bind: %s", strerror(errno));
    }
    g.uc_fd = fd;
}

/* --- timers and the end ----------------------------------------------------------------- */

static void stop_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    g.stopping = true;
    switch (g.mode) {
    case MODE_DOWNLOAD:
        g.t_end = now_ns();
        finish();
        break;
    case MODE_UPLOAD:
        for (unsigned i = 0; i < g.nclients; i++) {
            struct client *c = &g.clients[i];

            c->state = CLIENT_DRAIN;
            c->t_progress = now_ns();
            io_want(&c->io, EV_READ);
        }
        upload_check_done();
        break;
    case MODE_CPS:
        if (g.active == 0)
            finish();
        break;
    case MODE_PINGPONG:
        break; /* ends when the round trip in flight is back */
    case MODE_IDLE:
        client_idle_check();
        break;
    case MODE_UDP:
        if (g.inflight == 0) {
            if (g.uphase == 1)
                g.stopping = false;
            udp_phase_end();
        }
        break;
    }
}

static void watchdog_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    fail("no result after the time allowed: %u of %u connections established, %u done",
         g.established, g.nclients, g.done);
}

static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    static unsigned ticks;
    uint64_t t = now_ns();

    (void)loop;
    (void)w;
    (void)revents;
    if (g.mode == MODE_UDP && g.uphase > 0)
        udp_tick();
    if (++ticks % 20 != 0)
        return;
    for (unsigned i = 0; i < g.nclients; i++) {
        struct client *c = &g.clients[i];

        if (c->state == CLIENT_FREE || c->state == CLIENT_DONE || c->state == CLIENT_IDLE)
            continue;
        if (t - c->t_progress > STALL_NS)
            client_fail(c, "no progress for 20 seconds");
    }
}

static void finish(void)
{
    double secs = (double)(g.t_end - g.t_start) / 1e9;
    uint64_t bytes = 0;

    if (secs <= 0)
        secs = 1e-9;
    printf("mode=%s server=%s", mode_names[g.mode], g.use_proxy ? (g.http ? "http" : "socks5") : "direct");
    switch (g.mode) {
    case MODE_DOWNLOAD:
    case MODE_UPLOAD:
        for (unsigned i = 0; i < g.nclients; i++)
            bytes += g.mode == MODE_DOWNLOAD ? g.clients[i].received : g.clients[i].sent;
        printf(" streams=%u bytes=%" PRIu64 " total_bytes=%" PRIu64 " seconds=%.4f rate=%.0f\n",
               g.nclients, bytes - g.bytes_at_start, bytes, secs,
               (double)(bytes - g.bytes_at_start) / secs);
        break;
    case MODE_CPS: {
        double hs50 = samples_quantile(&g.hs, 0.50), hs99 = samples_quantile(&g.hs, 0.99);
        double t50 = samples_quantile(&g.total, 0.50), t99 = samples_quantile(&g.total, 0.99);

        printf(" concurrency=%u auth=%s conns=%u seconds=%.4f cps=%.1f hs_p50_us=%.1f"
               " hs_p99_us=%.1f conn_p50_us=%.1f conn_p99_us=%.1f\n",
               g.nclients, g.user != NULL ? "password" : "none", g.done, secs,
               (double)g.done / secs, hs50, hs99, t50, t99);
        break;
    }
    case MODE_PINGPONG:
        printf(" size=%zu rtts=%u seconds=%.4f p50_us=%.1f p99_us=%.1f\n", g.size, g.done, secs,
               samples_quantile(&g.rtt, 0.50), samples_quantile(&g.rtt, 0.99));
        break;
    case MODE_IDLE:
        printf(" sessions=%u checked=%u\n", g.nclients, g.done);
        break;
    case MODE_UDP: {
        double p2 = (double)(g.t_end - g.t_phase2) / 1e9;

        printf(" size=%zu window=%u pps=%.0f rtt_p50_us=%.1f rtt_p99_us=%.1f rtts=%zu sent=%" PRIu64
               " received=%" PRIu64 " lost=%" PRIu64 " late=%" PRIu64 "\n",
               g.size, g.window, p2 > 0 ? (double)g.phase2_recv / p2 : 0.0,
               samples_quantile(&g.rtt, 0.50), samples_quantile(&g.rtt, 0.99), g.rtt.n, g.usent,
               g.urecv, g.ulost, g.ulate);
        break;
    }
    }
    if (fflush(stdout) != 0)
        fail("stdout: %s", strerror(errno));
    exit(0);
}

/* --- main ------------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f, "usage: loadgen [-x HOST:PORT [-H]] [-u USER -p PASS] [-c N] [-s BYTES] [-t SECONDS]\n"
               "               [-n COUNT] [-w WINDOW] [-k SPREAD] MODE\n"
               "MODE: download | upload   bulk TCP through CONNECT, -c streams\n"
               "      cps                 connect, handshake, CONNECT, one -s byte request and\n"
               "                          answer, close; -c at once\n"
               "      pingpong            -s byte round trips on one established CONNECT\n"
               "      idle                open -c sessions, print 'ready', wait for a line on\n"
               "                          stdin (at most -t seconds), check them, close\n"
               "      udp                 UDP ASSOCIATE echo of -s byte datagrams: round trips\n"
               "                          one at a time for t/3, then -w in flight for 2t/3\n"
               "  -x  the SOCKS5 server (default: no server, straight to the origin)\n"
               "  -H  ask the server with HTTP CONNECT instead of SOCKS5\n"
               "  -u, -p  username and password (RFC 1929)\n"
               "  -c  streams, concurrency or sessions (default 1)\n"
               "  -s  message size (default 64)\n"
               "  -t  seconds of measurement (default 3)\n"
               "  -n  most connections, round trips or datagrams (default 1000000)\n"
               "  -w  udp datagrams in flight in the packets/s phase (default 32)\n"
               "  -k  origin ports and loopback source addresses to spread over (default 8)\n");
}

static unsigned long parse_num(const char *s, unsigned long min, unsigned long max, char opt)
{
    char *end;
    unsigned long v;

    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max) {
        fprintf(stderr, "loadgen: -%c wants a number from %lu to %lu\n", opt, min, max);
        exit(2);
    }
    return v;
}

static void raise_nofile(unsigned need)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        fail("getrlimit: %s", strerror(errno));
    if (rl.rlim_cur >= need)
        return;
    rl.rlim_cur = need;
    if (rl.rlim_max < need) {
        struct rlimit more = {need, need};

        if (setrlimit(RLIMIT_NOFILE, &more) == 0)
            return;
        rl.rlim_cur = rl.rlim_max; /* without CAP_SYS_RESOURCE: as far as allowed */
    }
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
        fail("cannot raise RLIMIT_NOFILE to %u: %s", need, strerror(errno));
}

int main(int argc, char **argv)
{
    int opt;
    char *end;

    g.conc = 1;
    g.size = 64;
    g.seconds = 3;
    g.max_ops = 1000000;
    g.window = 32;
    g.spread = 8;
    while ((opt = getopt(argc, argv, "x:Hu:p:c:s:t:n:w:k:h")) != -1) {
        switch (opt) {
        case 'x':
            if (parse_hostport(optarg, &g.proxy, &g.proxy_len) < 0) {
                fprintf(stderr, "loadgen: -x wants IPv4:PORT or [IPv6]:PORT\n");
                return 2;
            }
            g.use_proxy = true;
            break;
        case 'H':
            g.http = true;
            break;
        case 'u':
            g.user = optarg;
            break;
        case 'p':
            g.pass = optarg;
            break;
        case 'c':
            g.conc = (unsigned)parse_num(optarg, 1, 100000, 'c');
            break;
        case 's':
            g.size = parse_num(optarg, 1, 65000, 's');
            break;
        case 't':
            errno = 0;
            g.seconds = strtod(optarg, &end);
            if (errno != 0 || *end != '\0' || g.seconds <= 0 || g.seconds > 3600) {
                fprintf(stderr, "loadgen: -t wants seconds, more than 0 and at most 3600\n");
                return 2;
            }
            break;
        case 'n':
            g.max_ops = parse_num(optarg, 1, 100000000, 'n');
            break;
        case 'w':
            g.window = (unsigned)parse_num(optarg, 1, UDP_RING / 4, 'w');
            break;
        case 'k':
            g.spread = (unsigned)parse_num(optarg, 1, ORIGIN_PORTS_MAX, 'k');
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc - 1) {
        usage(stderr);
        return 2;
    }
    for (opt = 0; opt < (int)(sizeof(mode_names) / sizeof(mode_names[0])); opt++)
        if (strcmp(argv[optind], mode_names[opt]) == 0)
            break;
    if (opt == (int)(sizeof(mode_names) / sizeof(mode_names[0]))) {
        fprintf(stderr, "loadgen: unknown mode '%s'\n", argv[optind]);
        return 2;
    }
    g.mode = (enum mode)opt;
    if ((g.user == NULL) != (g.pass == NULL) ||
        (g.user != NULL && (strlen(g.user) < 1 || strlen(g.user) > 255 || strlen(g.pass) < 1 ||
                            strlen(g.pass) > 255))) {
        fprintf(stderr, "loadgen: -u and -p go together, 1 to 255 bytes each\n");
        return 2;
    }
    if (g.user != NULL && !g.use_proxy) {
        fprintf(stderr, "loadgen: -u and -p need a server (-x)\n");
        return 2;
    }
    if (g.http && (!g.use_proxy || g.mode == MODE_UDP)) {
        fprintf(stderr, "loadgen: -H needs a proxy (-x), and HTTP carries no UDP\n");
        return 2;
    }
    if (g.mode == MODE_UDP && g.size < 16) {
        fprintf(stderr, "loadgen: udp datagrams are 16 bytes at least\n");
        return 2;
    }
    if (g.mode == MODE_PINGPONG || g.mode == MODE_UDP)
        g.conc = 1;

    if (signal(SIGPIPE, SIG_IGN) == SIG_ERR)
        fail("signal: %s", strerror(errno));
    raise_nofile(2 * g.conc + 64);
    pattern_init();
    g.loop = ev_default_loop(EVBACKEND_EPOLL);
    if (g.loop == NULL)
        fail("no epoll event loop");
    origin_start(g.spread);

    g.nclients = g.conc;
    g.clients = calloc(g.nclients, sizeof(*g.clients));
    if (g.clients == NULL)
        fail("out of memory for %u connections", g.nclients);
    for (unsigned i = 0; i < g.nclients; i++)
        g.clients[i].fd = -1;
    g.upload_got = calloc(g.nclients, sizeof(*g.upload_got));
    if (g.upload_got == NULL)
        fail("out of memory");
    samples_init(&g.hs, g.max_ops < 2000000 ? g.max_ops + g.nclients : 2000000);
    samples_init(&g.total, g.mode == MODE_CPS ? g.hs.cap : 1);
    samples_init(&g.rtt, g.mode == MODE_PINGPONG || g.mode == MODE_UDP ? g.hs.cap : 1);

    ev_timer_init(&g.stop_timer, stop_cb, g.seconds, 0);
    ev_timer_init(&g.watchdog, watchdog_cb, g.seconds + 180, 0);
    ev_timer_start(g.loop, &g.watchdog);
    ev_timer_init(&g.tick, tick_cb, 0.05, 0.05);
    ev_timer_start(g.loop, &g.tick);
    ev_io_init(&g.stdin_io, stdin_cb, STDIN_FILENO, EV_READ);

    g.t_start = now_ns();
    switch (g.mode) {
    case MODE_CPS:
        ev_timer_start(g.loop, &g.stop_timer);
        for (unsigned i = 0; i < g.nclients; i++)
            client_start(&g.clients[i]);
        break;
    case MODE_PINGPONG:
        ev_timer_start(g.loop, &g.stop_timer);
        client_start(&g.clients[0]);
        break;
    case MODE_IDLE:
        for (unsigned i = 0; i < g.nclients && i < PENDING_MAX; i++)
            client_start(&g.clients[g.serial]);
        break;
    case MODE_UDP:
        udp_open();
        g.ctl = &g.clients[0];
        if (g.use_proxy)
            client_start(g.ctl);
        else
            udp_start();
        break;
    default:
        for (unsigned i = 0; i < g.nclients; i++)
            client_start(&g.clients[i]);
        break;
    }
    ev_run(g.loop, 0);
    fail("event loop ended before a result");
}
