/*
 * One forwarded HTTP exchange (http_forward.h): the request head rewritten to origin form, its
 * body and the response streamed through fixed buffers, the framing of each scanned
 * (http_frame.h) to find where it ends. Every event runs one pump that moves what it can in
 * both directions and then sets the watchers for what it waits on.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "ferry/http.h"
#include "ferry/http_forward.h"
#include "ferry/http_frame.h"

/* The response side: room for a response head, and the buffer its body streams through. */
#define RESPONSE_HEAD_MAX 16384
#define DOWN_BUF 65536
/* Room for a rewritten head: the original's fields plus the start line and added fields. */
#define HEAD_OUT_MAX (RESPONSE_HEAD_MAX + 1024)
/* Rounds of one pump before it yields to the loop (level-triggered watchers bring it back). */
#define PUMP_ROUNDS 16

enum down_state {
    D_HEAD, /* a response head (a 1xx one comes back here) */
    D_BODY, /* its body */
};

struct http_forward {
    struct ev_loop *loop;
    int client_fd;
    int target_fd;
    ev_io client_r, client_w, target_r, target_w;
    ev_timer wake; /* throttled reads resume */
    struct relay_throttle throttle;
    bool throttled;
    ev_tstamp paused_until[2]; /* per direction, while the throttle holds reads */
    http_forward_cb cb;
    void *arg;
    char via[64];
    bool head_request; /* HEAD: the response has no body whatever its fields say */
    bool client_close; /* the client asked to close after this exchange (or speaks 1.0 only) */
    uint8_t client_minor;
    bool client_eof;
    bool target_eof;
    bool up_failed; /* the origin stopped taking the request: the rest of it is dropped */
    bool keep;      /* the response allows the client's connection to carry on */
    bool responded;
    int status;
    uint64_t up, down;
    ev_tstamp last;

    /* client -> origin: the rewritten head, then ubuf[0, usend) scanned body bytes to send;
     * ubuf[usend, ulen) not scanned yet (past the body's end: the next request) */
    struct http_body req_body;
    uint8_t uhead[HEAD_OUT_MAX];
    size_t uhead_len, uhead_off;
    uint8_t ubuf[HTTP_FORWARD_HEAD_MAX];
    size_t ulen, usend;

    /* origin -> client: likewise */
    enum down_state dstate;
    struct http_body resp_body;
    uint8_t dhead[HEAD_OUT_MAX];
    size_t dhead_len, dhead_off;
    uint8_t dbuf[DOWN_BUF];
    size_t dlen, dsend;
};

/* --- the request head -------------------------------------------------------------------- */

/* "Host: host[:port]" for the target (RFC 9112 section 3.2.2: the URI's authority). */
static bool format_host(const struct socks_dest *d, char *out, size_t size)
{
    char host[DEST_NAME_MAX + 3], port[8] = "";
    int n;

    switch (d->type) {
    case DEST_IPV4:
        inet_ntop(AF_INET, d->ip, host, sizeof(host));
        break;
    case DEST_IPV6:
        host[0] = '[';
        inet_ntop(AF_INET6, d->ip, host + 1, sizeof(host) - 2);
        strcat(host, "]");
        break;
    default:
        snprintf(host, sizeof(host), "%s", d->name);
        break;
    }
    if (d->port != 80)
        snprintf(port, sizeof(port), ":%u", (unsigned)d->port);
    n = snprintf(out, size, "Host: %s%s\r\n", host, port);
    return n > 0 && (size_t)n < size;
}

/*
 * Rewrite the request head at the front of ubuf for the origin into uhead and take it out of
 * ubuf (wiped: it may hold credentials). false when it is not a request to forward.
 */
static bool forward_request_head(struct http_forward *f)
{
    struct http_request req;
    size_t used = 0, mlen;
    int status;
    const uint8_t *line = f->ubuf;
    char start[HTTP_REQUEST_LINE_MAX + 32], add[DEST_NAME_MAX + 256], host[DEST_NAME_MAX + 32];
    struct http_rewrite rw = {.start = start, .drop_host = true, .add = add};
    bool ok = false;

    if (http_parse_request(f->ubuf, f->ulen, sizeof(f->ubuf), &req, &used, &status) != PROTO_OK)
        goto out;
    if (req.method == HTTP_CONNECT || req.form != HTTP_TARGET_ABSOLUTE || req.https)
        goto out;
    while (*line == '\r' || *line == '\n')
        line++;
    mlen = (size_t)((const uint8_t *)memchr(line, ' ', used) - line);
    /* method SP origin-form SP version (an empty path is "/": RFC 9112 section 3.2.1). The
     * client's version, 1.0 or 1.1: an origin then frames its response for that client (no
     * chunked coding for HTTP/1.0), which ferry passes through as it is. */
    snprintf(start, sizeof(start), "%.*s %s%.*s HTTP/1.%u", (int)mlen, (const char *)line,
             req.path_len == 0 || f->ubuf[req.path_off] == '?' ? "/" : "", (int)req.path_len,
             (const char *)f->ubuf + req.path_off, req.version_minor == 0 ? 0u : 1u);
    if (!format_host(&req.dest, host, sizeof(host)))
        goto out;
    /* The body keeps its framing; the origin connection serves this one exchange. */
    snprintf(add, sizeof(add), "%s%sVia: 1.%u %s\r\nConnection: close\r\n", host,
             req.chunked ? "Transfer-Encoding: chunked\r\n" : "", (unsigned)req.version_minor,
             f->via);
    rw.drop_length = req.chunked;
    f->uhead_len = http_rewrite_head(f->ubuf, used, &rw, f->uhead, sizeof(f->uhead));
    if (f->uhead_len == 0)
        goto out;
    f->head_request = req.method == HTTP_HEAD;
    f->client_close = req.close;
    f->client_minor = req.version_minor;
    http_body_init(&f->req_body,
                   req.chunked      ? HTTP_BODY_CHUNKED
                   : req.has_length ? HTTP_BODY_LENGTH
                                    : HTTP_BODY_NONE,
                   req.content_length);
    sodium_memzero(f->ubuf, used);
    memmove(f->ubuf, f->ubuf + used, f->ulen - used);
    f->ulen -= used;
    ok = true;
out:
    sodium_memzero(&req, sizeof(req));
    return ok;
}

/* --- the response head ------------------------------------------------------------------- */

enum step {
    STEP_IDLE,  /* nothing moved */
    STEP_MOVED, /* something moved */
    STEP_END,   /* the exchange ended: f->end says how */
};

/* Rewrite the response head at the front of dbuf for the client into dhead. */
static int forward_response_head(struct http_forward *f, enum http_forward_end *end)
{
    struct http_response_head h;
    size_t used = 0;
    char start[512], add[256];
    struct http_rewrite rw = {.start = start, .add = add};
    enum proto_status st = http_parse_response_head(f->dbuf, f->dlen, RESPONSE_HEAD_MAX, &h, &used);
    const uint8_t *line = f->dbuf, *nl;
    size_t line_len;
    enum http_body_kind kind;

    if (st == PROTO_NEED_MORE && !f->target_eof)
        return STEP_IDLE;
    if (st != PROTO_OK || h.status == 101 || (h.coded && !h.chunked && h.status >= 200)) {
        /* Not HTTP, cut short, a switch of protocols ferry did not ask for, or a transfer
         * coding ferry cannot frame for the client. */
        *end = HTTP_FORWARD_BAD_RESPONSE;
        return STEP_END;
    }
    nl = memchr(line, '\n', used);
    line_len = (size_t)(nl - line);
    if (line_len > 0 && line[line_len - 1] == '\r')
        line_len--;
    /* HTTP/1.1 SP status [SP reason]: the version is ours, the rest the origin's */
    if (line_len > 200)
        line_len = 200;
    snprintf(start, sizeof(start), "HTTP/1.1%.*s", (int)(line_len - 8), (const char *)line + 8);
    kind = http_response_framing(&h, f->head_request);
    if (h.status < 200) {
        snprintf(add, sizeof(add), "Via: 1.%u %s\r\n", (unsigned)h.version_minor, f->via);
    } else {
        f->status = h.status;
        f->keep = !f->client_close && kind != HTTP_BODY_CLOSE;
        snprintf(add, sizeof(add), "%sVia: 1.%u %s\r\n%s",
                 kind == HTTP_BODY_CHUNKED ? "Transfer-Encoding: chunked\r\n" : "",
                 (unsigned)h.version_minor, f->via,
                 !f->keep               ? "Connection: close\r\n"
                 : f->client_minor == 0 ? "Connection: keep-alive\r\n"
                                        : "");
        rw.drop_length = h.coded;
    }
    f->dhead_len = http_rewrite_head(f->dbuf, used, &rw, f->dhead, sizeof(f->dhead));
    f->dhead_off = 0;
    if (f->dhead_len == 0) {
        *end = HTTP_FORWARD_BAD_RESPONSE;
        return STEP_END;
    }
    /* An interim response is not sent to a client that speaks only HTTP/1.0 (RFC 9110
     * section 15.2). */
    if (h.status < 200 && f->client_minor == 0)
        f->dhead_len = 0;
    memmove(f->dbuf, f->dbuf + used, f->dlen - used);
    f->dlen -= used;
    if (h.status >= 200) {
        http_body_init(&f->resp_body, kind, h.content_length);
        f->dstate = D_BODY;
    }
    return STEP_MOVED;
}

/* --- moving bytes ------------------------------------------------------------------------ */

/* Send what is pending from *off to len at buf; a step, or -1 on a socket error. */
static int send_some(int fd, const uint8_t *buf, size_t *off, size_t len, uint64_t *count)
{
    bool moved = false;

    while (*off < len) {
        ssize_t n = send(fd, buf + *off, len - *off, MSG_NOSIGNAL);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            return -1;
        }
        *off += (size_t)n;
        if (count != NULL)
            *count += (uint64_t)n;
        moved = true;
    }
    return moved ? STEP_MOVED : STEP_IDLE;
}

/* Run the pump again within delay seconds. */
static void wake_within(struct http_forward *f, double delay)
{
    if (ev_is_active(&f->wake) && ev_timer_remaining(f->loop, &f->wake) <= delay)
        return;
    ev_timer_stop(f->loop, &f->wake);
    ev_timer_set(&f->wake, delay, 0.);
    ev_timer_start(f->loop, &f->wake);
}

/* How many bytes a read in dir may take now (0: paused), -1 when the quota is used up. */
static ssize_t allowed(struct http_forward *f, enum relay_dir_index dir, size_t want)
{
    double wait = 0, now = ev_now(f->loop);
    ssize_t n;

    if (!f->throttled)
        return (ssize_t)want;
    if (f->paused_until[dir] > now) {
        wake_within(f, f->paused_until[dir] - now);
        return 0;
    }
    n = f->throttle.allow(f->throttle.arg, dir, want, &wait);
    if (n == 0) {
        f->paused_until[dir] = now + wait;
        wake_within(f, wait);
    }
    return n;
}

/* recv into buf, counted by the throttle. >0 bytes, 0 EOF, -1 error, -2 nothing now. */
static ssize_t read_some(struct http_forward *f, int fd, enum relay_dir_index dir, uint8_t *buf,
                         size_t want, enum http_forward_end *end)
{
    ssize_t room = allowed(f, dir, want), n;

    if (room < 0) {
        *end = HTTP_FORWARD_QUOTA;
        return -3;
    }
    if (room == 0)
        return -2;
    do {
        n = recv(fd, buf, (size_t)room, 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK ? -2 : -1;
    if (n > 0) {
        f->last = ev_now(f->loop);
        if (f->throttled)
            f->throttle.used(f->throttle.arg, dir, (size_t)n);
    }
    return n;
}

/* Client to origin: send, scan, read. */
static int pump_up(struct http_forward *f, enum http_forward_end *end)
{
    int moved = STEP_IDLE, r;
    ssize_t n;

    if (!f->up_failed) {
        size_t off = 0;

        r = send_some(f->target_fd, f->uhead, &f->uhead_off, f->uhead_len, &f->up);
        if (r == STEP_MOVED)
            moved = STEP_MOVED;
        if (r >= 0 && f->uhead_off == f->uhead_len && f->usend > 0) {
            r = send_some(f->target_fd, f->ubuf, &off, f->usend, &f->up);
            memmove(f->ubuf, f->ubuf + off, f->ulen - off);
            f->ulen -= off;
            f->usend -= off;
            if (r == STEP_MOVED)
                moved = STEP_MOVED;
        }
        if (r < 0) {
            /* The origin stopped reading: its response may still come; the client's
             * connection cannot carry on, the rest of its request is lost. */
            f->up_failed = true;
        }
    }
    if (!f->req_body.done && f->usend < f->ulen) {
        n = http_body_scan(&f->req_body, f->ubuf + f->usend, f->ulen - f->usend);
        if (n < 0) {
            *end = HTTP_FORWARD_BAD_REQUEST;
            return STEP_END;
        }
        f->usend += (size_t)n;
        if (n > 0)
            moved = STEP_MOVED;
    }
    if (f->up_failed) {
        /* Dropped: scanned bytes are consumed as if sent. */
        memmove(f->ubuf, f->ubuf + f->usend, f->ulen - f->usend);
        f->ulen -= f->usend;
        f->usend = 0;
    }
    if (!f->req_body.done && !f->client_eof && f->ulen < sizeof(f->ubuf)) {
        n = read_some(f, f->client_fd, RELAY_UP, f->ubuf + f->ulen, sizeof(f->ubuf) - f->ulen, end);
        if (n == -3)
            return STEP_END;
        if (n == -1 || n == 0) {
            /* A body cut short (or a reset): the exchange cannot complete. */
            *end = HTTP_FORWARD_CLIENT_ERROR;
            return STEP_END;
        }
        if (n > 0) {
            f->ulen += (size_t)n;
            moved = STEP_MOVED;
        }
    }
    return moved;
}

/* Origin to client: send, parse or scan, read. */
static int pump_down(struct http_forward *f, enum http_forward_end *end)
{
    int moved = STEP_IDLE, r;
    ssize_t n;
    size_t off = 0;

    r = send_some(f->client_fd, f->dhead, &f->dhead_off, f->dhead_len, &f->down);
    if (r == STEP_MOVED) {
        moved = STEP_MOVED;
        f->responded = true;
    }
    if (r >= 0 && f->dhead_off == f->dhead_len && f->dsend > 0) {
        r = send_some(f->client_fd, f->dbuf, &off, f->dsend, &f->down);
        memmove(f->dbuf, f->dbuf + off, f->dlen - off);
        f->dlen -= off;
        f->dsend -= off;
        if (r == STEP_MOVED)
            moved = STEP_MOVED;
    }
    if (r < 0) {
        *end = HTTP_FORWARD_CLIENT_ERROR;
        return STEP_END;
    }
    if (f->dstate == D_HEAD && f->dhead_off == f->dhead_len) {
        r = forward_response_head(f, end);
        if (r != STEP_IDLE)
            return r;
    }
    if (f->dstate == D_BODY && f->dsend < f->dlen) {
        n = http_body_scan(&f->resp_body, f->dbuf + f->dsend, f->dlen - f->dsend);
        if (n < 0) {
            *end = HTTP_FORWARD_BAD_RESPONSE;
            return STEP_END;
        }
        f->dsend += (size_t)n;
        /* Anything the origin sent past its response is dropped. */
        f->dlen = f->dsend;
        if (n > 0)
            moved = STEP_MOVED;
    }
    if (!f->target_eof && !(f->dstate == D_BODY && f->resp_body.done) &&
        f->dlen < sizeof(f->dbuf)) {
        n = read_some(f, f->target_fd, RELAY_DOWN, f->dbuf + f->dlen, sizeof(f->dbuf) - f->dlen,
                      end);
        if (n == -3)
            return STEP_END;
        if (n == -1 || n == 0) {
            f->target_eof = true;
            if (f->dstate == D_BODY && f->resp_body.kind == HTTP_BODY_CLOSE)
                f->resp_body.done = true;
            else if (f->dstate == D_BODY && !f->resp_body.done) {
                *end = n == 0 ? HTTP_FORWARD_BAD_RESPONSE : HTTP_FORWARD_TARGET_ERROR;
                return STEP_END;
            }
            moved = STEP_MOVED;
        } else if (n > 0) {
            f->dlen += (size_t)n;
            moved = STEP_MOVED;
        }
    }
    return moved;
}

static void forward_update(struct http_forward *f);

static void forward_finish(struct http_forward *f, enum http_forward_end end)
{
    ev_io_stop(f->loop, &f->client_r);
    ev_io_stop(f->loop, &f->client_w);
    ev_io_stop(f->loop, &f->target_r);
    ev_io_stop(f->loop, &f->target_w);
    ev_timer_stop(f->loop, &f->wake);
    f->cb(end, f->arg);
}

static void forward_pump(struct http_forward *f)
{
    enum http_forward_end end = HTTP_FORWARD_CLOSE;

    for (int round = 0; round < PUMP_ROUNDS; round++) {
        int up = pump_up(f, &end), down;

        if (up == STEP_END) {
            forward_finish(f, end);
            return;
        }
        down = pump_down(f, &end);
        if (down == STEP_END) {
            forward_finish(f, end);
            return;
        }
        /* The response is out: the exchange is over. */
        if (f->dstate == D_BODY && f->resp_body.done && f->dhead_off == f->dhead_len &&
            f->dsend == 0) {
            bool request_done =
                f->req_body.done && f->uhead_off == f->uhead_len && f->usend == 0 && !f->up_failed;

            forward_finish(f, f->keep && request_done && !f->client_eof ? HTTP_FORWARD_KEEP
                                                                        : HTTP_FORWARD_CLOSE);
            return;
        }
        if (up == STEP_IDLE && down == STEP_IDLE) {
            forward_update(f);
            return;
        }
    }
    /* Rounds used up with work left (bytes read but not scanned yet, say): the loop's next
     * iteration comes back, after the other sessions had their turn. */
    wake_within(f, 0.);
    forward_update(f);
}

/* Watch for what the pump waits on. */
static void forward_update(struct http_forward *f)
{
    ev_tstamp now = ev_now(f->loop);
    bool up_pending = f->uhead_off < f->uhead_len || f->usend > 0;
    bool want_client_r = !f->req_body.done && !f->client_eof && f->ulen < sizeof(f->ubuf) &&
                         f->paused_until[RELAY_UP] <= now;
    bool want_target_r = !f->target_eof && !(f->dstate == D_BODY && f->resp_body.done) &&
                         f->dlen < sizeof(f->dbuf) && f->paused_until[RELAY_DOWN] <= now;
    /* Bytes waiting for a side are sent when it is writable (at once when it already is: a
     * pump that stopped after its rounds comes back that way). */
    bool want_target_w = !f->up_failed && up_pending;
    bool want_client_w = f->dhead_off < f->dhead_len || f->dsend > 0;

#define WATCH(w, on)                                                                               \
    do {                                                                                           \
        if ((on) && !ev_is_active(w))                                                              \
            ev_io_start(f->loop, w);                                                               \
        else if (!(on) && ev_is_active(w))                                                         \
            ev_io_stop(f->loop, w);                                                                \
    } while (0)
    WATCH(&f->client_r, want_client_r);
    WATCH(&f->client_w, want_client_w);
    WATCH(&f->target_r, want_target_r);
    WATCH(&f->target_w, want_target_w);
#undef WATCH
}

static void on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    forward_pump(w->data);
}

static void on_wake(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct http_forward *f = w->data;

    (void)loop;
    (void)revents;
    forward_pump(f); /* a pause that is over is over by the clock (allowed) */
}

/* --- the interface ----------------------------------------------------------------------- */

struct http_forward *http_forward_start(const struct http_forward_params *p)
{
    struct http_forward *f;

    if (p->input_len > HTTP_FORWARD_HEAD_MAX)
        return NULL;
    f = calloc(1, sizeof(*f));
    if (f == NULL)
        return NULL;
    f->loop = p->loop;
    f->client_fd = p->client_fd;
    f->target_fd = p->target_fd;
    f->client_eof = p->client_eof;
    f->cb = p->cb;
    f->arg = p->arg;
    f->last = ev_now(p->loop);
    snprintf(f->via, sizeof(f->via), "%s", p->via != NULL ? p->via : "ferry");
    if (p->throttle != NULL) {
        f->throttle = *p->throttle;
        f->throttled = true;
    }
    memcpy(f->ubuf, p->input, p->input_len);
    f->ulen = p->input_len;
    if (!forward_request_head(f)) {
        http_forward_free(f);
        return NULL;
    }
    ev_io_init(&f->client_r, on_io, f->client_fd, EV_READ);
    ev_io_init(&f->client_w, on_io, f->client_fd, EV_WRITE);
    ev_io_init(&f->target_r, on_io, f->target_fd, EV_READ);
    ev_io_init(&f->target_w, on_io, f->target_fd, EV_WRITE);
    ev_timer_init(&f->wake, on_wake, 0., 0.);
    f->client_r.data = f->client_w.data = f->target_r.data = f->target_w.data = f;
    f->wake.data = f;
    /* The first pump runs from the loop (the origin's socket is writable): the callback never
     * runs inside this call. */
    forward_update(f);
    return f;
}

void http_forward_free(struct http_forward *f)
{
    if (f == NULL)
        return;
    ev_io_stop(f->loop, &f->client_r);
    ev_io_stop(f->loop, &f->client_w);
    ev_io_stop(f->loop, &f->target_r);
    ev_io_stop(f->loop, &f->target_w);
    ev_timer_stop(f->loop, &f->wake);
    sodium_memzero(f->ubuf, sizeof(f->ubuf));
    free(f);
}

const uint8_t *http_forward_leftover(const struct http_forward *f, size_t *len)
{
    *len = f->ulen - f->usend;
    return f->ubuf + f->usend;
}

void http_forward_bytes(const struct http_forward *f, uint64_t *up, uint64_t *down)
{
    *up = f->up;
    *down = f->down;
}

int http_forward_status(const struct http_forward *f)
{
    return f->status;
}

bool http_forward_responded(const struct http_forward *f)
{
    return f->responded;
}

ev_tstamp http_forward_last_activity(const struct http_forward *f)
{
    return f->last;
}
