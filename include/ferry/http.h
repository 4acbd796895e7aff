/*
 * HTTP/1.1 proxy requests (RFC 9110, RFC 9112): an incremental parser of a request head and the
 * response heads a proxy sends. Pure: no I/O, no allocation.
 */
#ifndef FERRY_HTTP_H
#define FERRY_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ferry/proto.h"

enum http_method {
    HTTP_CONNECT,
    HTTP_GET,
    HTTP_HEAD,
    HTTP_POST,
    HTTP_PUT,
    HTTP_DELETE,
    HTTP_OPTIONS,
    HTTP_PATCH,
    HTTP_TRACE,
    HTTP_OTHER, /* a valid token we do not know */
};

/* The request target's form (RFC 9112 section 3.2). */
enum http_target {
    HTTP_TARGET_AUTHORITY, /* host:port, CONNECT's */
    HTTP_TARGET_ABSOLUTE,  /* http://host[:port]/path, what a proxy is sent */
    HTTP_TARGET_ORIGIN,    /* /path: a request for us as a server */
    HTTP_TARGET_ASTERISK,  /* *, OPTIONS to the server itself */
};

struct http_request {
    enum http_method method;
    enum http_target form;
    uint8_t version_minor;  /* HTTP/1.x */
    bool https;             /* an absolute-form target with the https scheme */
    struct socks_dest dest; /* authority or absolute form: host and port (80 by default) */
    size_t path_off;        /* absolute form: where path-abempty and query start in the head */
    size_t path_len;        /* ... and their length (0: "/" is meant) */
    bool proxy_auth;        /* a Proxy-Authorization field was sent */
    bool proxy_auth_ok;     /* ... and it is Basic with a well-formed user-id:password */
    char user[256];         /* Basic credentials, NUL-terminated */
    size_t user_len;
    char pass[256];
    size_t pass_len;
    bool has_length; /* Content-Length */
    uint64_t content_length;
    bool chunked; /* Transfer-Encoding ends with chunked */
    bool close;   /* Connection: close (or HTTP/1.0 without keep-alive) */
};

/* Longest request line ferry reads; a longer one is 414. */
#define HTTP_REQUEST_LINE_MAX 8192

/*
 * Parse a request head from buf. PROTO_OK: *out is filled and *consumed covers the head through
 * its empty line (a body or tunnelled bytes follow). PROTO_NEED_MORE: a valid prefix shorter
 * than cap. PROTO_ERROR: *status says which (400 malformed, 414 request line too long, 431 head
 * too long: no end within cap bytes, 505 not HTTP/1.x). Leading empty lines are skipped
 * (RFC 9112 section 2.2). Credentials in *out must be wiped by the caller.
 */
enum proto_status http_parse_request(const uint8_t *buf, size_t len, size_t cap,
                                     struct http_request *out, size_t *consumed, int *status);

/* The reason phrase of a status ferry sends ("Bad Gateway"), or "Unknown". */
const char *http_reason(int status);

/*
 * A response head ferry writes itself: "HTTP/1.1 STATUS REASON", then `fields` as given (each
 * line ending with CRLF, may be NULL), then for an error status Content-Length: 0 and
 * Connection: close. Returns the length, or 0 when it does not fit.
 */
size_t http_response(char *out, size_t size, int status, const char *fields);

/* The same with a body: `fields` must frame it (Content-Length); Connection: close follows. */
size_t http_response_body(char *out, size_t size, int status, const char *fields, const char *body);

/* The method's name as sent ("GET"), "other" for a token ferry does not know. */
const char *http_method_name(enum http_method m);

#endif
