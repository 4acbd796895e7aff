/*
 * One forwarded HTTP exchange (RFC 9112): a request received in absolute form goes to the
 * origin in origin form with its hop-by-hop fields dropped (http_frame.h), its body follows
 * as it arrives, and the response streams back through fixed buffers, its framing scanned to
 * find where it ends. The origin connection is used for this one exchange ("Connection:
 * close"); the client's stays open for the next request when both sides allow it.
 */
#ifndef FERRY_HTTP_FORWARD_H
#define FERRY_HTTP_FORWARD_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ferry/relay.h"

/* Room for a request head, and the most a client may have sent past it when the exchange ends. */
#define HTTP_FORWARD_HEAD_MAX 8192

enum http_forward_end {
    HTTP_FORWARD_KEEP,         /* complete; the client's connection carries the next request */
    HTTP_FORWARD_CLOSE,        /* complete; the client's connection closes */
    HTTP_FORWARD_BAD_REQUEST,  /* the client's request or body is malformed, nothing sent back */
    HTTP_FORWARD_BAD_RESPONSE, /* the origin's response is malformed or cut short */
    HTTP_FORWARD_CLIENT_ERROR, /* the client went away or failed */
    HTTP_FORWARD_TARGET_ERROR, /* the origin connection failed */
    HTTP_FORWARD_QUOTA,        /* the throttle's quota is used up */
    HTTP_FORWARD_RESOURCES,
};

struct http_forward;

typedef void (*http_forward_cb)(enum http_forward_end end, void *arg);

struct http_forward_params {
    struct ev_loop *loop;
    int client_fd;
    int target_fd;
    const uint8_t *input;                  /* the client's bytes: the request head first (at most */
    size_t input_len;                      /* HTTP_FORWARD_HEAD_MAX bytes in all) */
    bool client_eof;                       /* the client has half-closed already */
    const char *via;                       /* this proxy's name in Via fields */
    const struct relay_throttle *throttle; /* copied; NULL for none */
    http_forward_cb cb;                    /* called once, at the end; free in it or after */
    void *arg;
};

/* Start the exchange. NULL when out of memory or the head in input is not a forward request. */
struct http_forward *http_forward_start(const struct http_forward_params *p);
void http_forward_free(struct http_forward *f);

/* The client's bytes past the exchange (the next request), valid until free. */
const uint8_t *http_forward_leftover(const struct http_forward *f, size_t *len);
/* Bytes the client sent and the origin sent; the origin's status (0 before its head). */
void http_forward_bytes(const struct http_forward *f, uint64_t *up, uint64_t *down);
int http_forward_status(const struct http_forward *f);
/* Whether any of the response has gone to the client (a failure can still be answered). */
bool http_forward_responded(const struct http_forward *f);
/* When bytes last moved. */
ev_tstamp http_forward_last_activity(const struct http_forward *f);

#endif
