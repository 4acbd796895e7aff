/*
 * HTTP/1.1 message framing for forwarding (RFC 9112): a scanner that finds where a body ends in
 * a byte stream passed through unchanged (Content-Length, chunked, close-delimited), the
 * response head parser, and the head rewriter that drops hop-by-hop fields (RFC 9110 section
 * 7.6.1). Pure: no I/O, no allocation.
 */
#ifndef FERRY_HTTP_FRAME_H
#define FERRY_HTTP_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ferry/proto.h"

/* How a body is delimited (RFC 9112 section 6.3). */
enum http_body_kind {
    HTTP_BODY_NONE,    /* no body: the message ends with its head */
    HTTP_BODY_LENGTH,  /* Content-Length bytes */
    HTTP_BODY_CHUNKED, /* the chunked coding, through its trailer section */
    HTTP_BODY_CLOSE,   /* until the sender closes (responses only) */
};

/* Longest chunk-size line (extensions included) and trailer section a scanner accepts. */
#define HTTP_CHUNK_LINE_MAX 4096
#define HTTP_TRAILER_MAX 8192

struct http_body {
    enum http_body_kind kind;
    uint64_t left;  /* LENGTH: bytes to go; CHUNKED: of the current chunk's data */
    uint32_t taken; /* CHUNKED: bytes of the current size line, or of the trailer section */
    uint8_t state;  /* CHUNKED: where in the coding's syntax */
    bool done;
};

void http_body_init(struct http_body *b, enum http_body_kind kind, uint64_t length);

/*
 * Scan the next len bytes of a body's stream. Returns how many belong to the body: len, or
 * fewer when the body ended inside them (the rest is the next message). -1 when the bytes are
 * not valid chunked coding. A CLOSE body never ends here: the sender's EOF ends it.
 */
ssize_t http_body_scan(struct http_body *b, const uint8_t *buf, size_t len);

struct http_response_head {
    int status;            /* 100-999 */
    uint8_t version_minor; /* HTTP/1.x */
    bool has_length;       /* Content-Length */
    uint64_t content_length;
    bool coded;   /* a Transfer-Encoding field */
    bool chunked; /* ... whose last coding is chunked */
    bool close;   /* Connection: close, or HTTP/1.0 without keep-alive */
};

/*
 * Parse a response head from buf. PROTO_OK: *out is filled and *consumed covers the head
 * through its empty line. PROTO_NEED_MORE: a valid prefix shorter than cap. PROTO_ERROR: not
 * an HTTP/1.x response head, or no end within cap bytes.
 */
enum proto_status http_parse_response_head(const uint8_t *buf, size_t len, size_t cap,
                                           struct http_response_head *out, size_t *consumed);

/*
 * The body framing of a response (RFC 9112 section 6.3) to a request with method HEAD or not:
 * none for HEAD, 1xx, 204 and 304; chunked; close-delimited for other codings and without a
 * length; else the length.
 */
enum http_body_kind http_response_framing(const struct http_response_head *h, bool head_request);

/* How a head is rewritten for the next hop. */
struct http_rewrite {
    const char *start; /* the new start line, without its CRLF */
    bool drop_host;    /* Host is replaced (a request in absolute form: RFC 9112 section 3.2.2) */
    bool drop_length;  /* Content-Length is dropped (a Transfer-Encoding frames the body) */
    const char *add;   /* fields added after the kept ones, each line ending with CRLF */
};

/*
 * Rewrite the head in head[0..len) (start line, fields, empty line) into out: rw->start, every
 * field but the hop-by-hop ones (Connection and the fields it names, Proxy-Connection,
 * Keep-Alive, TE, Trailer, Transfer-Encoding, Upgrade, Proxy-Authorization,
 * Proxy-Authenticate) and those rw drops, then rw->add and the empty line. Returns the length,
 * or 0 when it does not fit or the head is malformed (a field without a colon, more Connection
 * options than ferry tracks).
 */
size_t http_rewrite_head(const uint8_t *head, size_t len, const struct http_rewrite *rw,
                         uint8_t *out, size_t size);

#endif
