/*
 * HTTP requests in absolute form (session_int.h): the pipeline has connected to the origin;
 * one exchange is forwarded (http_forward.h), its access line written, and when both sides
 * allow it the client's connection goes back to the front end for its next request, which
 * may name another host: a new pass through the pipeline and a new origin connection.
 */
#include "config.h"

#include <math.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ferry/http.h"
#include "ferry/http_forward.h"
#include "ferry/log.h"
#include "ferry/socks5.h"
#include "session_int.h"

/* A status of ours instead of the origin's response (nothing of which reached the client). */
static void session_forward_answer(struct session *s, int status, enum session_end why)
{
    char msg[SESSION_OUT_BUF];
    size_t len = http_response(msg, sizeof(msg), status, NULL);

    s->http_status = status;
    session_finish(s, why, (const uint8_t *)msg, len);
}

/* The exchange is complete and the client's connection carries on: back to the front end. */
static void session_forward_next(struct session *s)
{
    struct negotiation *ng = s->nego;
    size_t n;
    const uint8_t *rest = http_forward_leftover(s->fwd, &n);

    if (n > ng->cap) {
        session_end(s, END_RESOURCES);
        return;
    }
    s->end = END_DONE;
    session_account(s);
    s->forwarded++;
    memcpy(ng->buf, rest, n);
    ng->len = n;
    http_forward_free(s->fwd);
    s->fwd = NULL;
    close(s->target_fd);
    s->target_fd = -1;
    s->target_tunnel = false;
    /* What belonged to that request; the login, the limits hold and the rule's hold stay
     * (the connection's, as for any session). */
    s->requested = false;
    s->refused = false;
    s->rep = 0xff;
    s->end = END_NONE;
    s->cmd = 0;
    s->http_status = 0;
    memset(&s->target_addr, 0, sizeof(s->target_addr));
    free(s->target);
    s->target = NULL;
    s->route = 0;
    s->via = NULL;
    memset(&s->refusal, 0, sizeof(s->refusal));
    memset(&ng->req, 0, sizeof(ng->req));
    ng->outbound = NULL;
    s->started = ev_now(s->ctx->loop);
    session_next_request(s);
}

static void on_forward_done(enum http_forward_end end, void *arg)
{
    struct session *s = arg;
    bool responded = http_forward_responded(s->fwd);

    s->http_status = http_forward_status(s->fwd);
    switch (end) {
    case HTTP_FORWARD_KEEP:
        session_forward_next(s);
        return;
    case HTTP_FORWARD_CLOSE:
        /* FIN after the response, then the client's EOF (no reset over unread input). */
        session_finish(s, END_DONE, NULL, 0);
        return;
    case HTTP_FORWARD_BAD_REQUEST:
        log_debug("forward: malformed request body");
        if (!responded)
            session_forward_answer(s, 400, END_CLIENT_ERROR);
        else
            session_end(s, END_CLIENT_ERROR);
        return;
    case HTTP_FORWARD_BAD_RESPONSE:
    case HTTP_FORWARD_TARGET_ERROR:
        log_debug("forward: %s response from the origin",
                  end == HTTP_FORWARD_BAD_RESPONSE ? "malformed or incomplete" : "failed");
        if (!responded)
            session_forward_answer(s, 502, END_TARGET_ERROR);
        else
            session_end(s, END_TARGET_ERROR);
        return;
    case HTTP_FORWARD_CLIENT_ERROR:
        session_end(s, END_CLIENT_ERROR);
        return;
    case HTTP_FORWARD_QUOTA:
        log_notice("limit quota-per-user used up: closing a forwarded request");
        session_end(s, END_RELAY_ERROR);
        return;
    default:
        session_end(s, END_RESOURCES);
        return;
    }
}

void session_forward(struct session *s)
{
    struct negotiation *ng = s->nego;
    struct relay_throttle throttle;
    struct http_forward_params p = {
        .loop = s->ctx->loop,
        .client_fd = s->client_fd,
        .target_fd = s->target_fd,
        .input = ng->buf,
        .input_len = ng->len,
        .client_eof = s->client_eof,
        .via = "ferry",
        .throttle = session_throttle(s, &throttle),
        .cb = on_forward_done,
        .arg = s,
    };

    /* The forwarder reads and writes the client's socket from here on. */
    ev_io_stop(s->ctx->loop, &s->client_readable);
    ev_io_stop(s->ctx->loop, &ng->client_writable);
    s->fwd = http_forward_start(&p);
    sodium_memzero(ng->buf, ng->len);
    ng->len = 0;
    if (s->fwd == NULL) {
        session_forward_answer(s, 500, END_RESOURCES);
        return;
    }
    session_enter(s, S_FORWARD);
}

double session_forward_left(const struct session *s, double now)
{
    double idle = s->cfg->timeout_idle;

    return idle > 0 ? http_forward_last_activity(s->fwd) + idle - now : HUGE_VAL;
}

void session_forward_timeout(struct session *s)
{
    if (!http_forward_responded(s->fwd)) {
        /* The origin has not answered in time (RFC 9110 section 15.6.5). */
        http_forward_free(s->fwd);
        s->fwd = NULL;
        session_forward_answer(s, 504, END_IDLE_TIMEOUT);
        return;
    }
    session_end(s, END_IDLE_TIMEOUT);
}
