/*
 * The client side of HTTP CONNECT (RFC 9110 section 9.3.6), for tunnelling through an HTTP
 * parent proxy: the request head ferry sends and an incremental parser of the parent's
 * response head. Pure: no I/O.
 */
#ifndef FERRY_UPSTREAM_HTTP_H
#define FERRY_UPSTREAM_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "ferry/proto.h"

/* The longest response head ferry reads from a parent (1xx heads included). */
#define UPSTREAM_HTTP_HEAD_MAX 8192
/* Room for any request head upstream_http_connect writes. */
#define UPSTREAM_HTTP_REQUEST_MAX 1400

/*
 * "CONNECT host:port HTTP/1.1", Host, and Proxy-Authorization: Basic when user is not NULL
 * (RFC 7617: base64 of "user:password"). An IPv6 host is bracketed. Returns the length, or 0
 * when it does not fit or user contains ':' (Basic cannot carry it) or a name holds a byte that
 * cannot appear in a request target (control bytes, space).
 */
size_t upstream_http_connect(char *out, size_t size, const struct socks_dest *dest,
                             const char *user, const char *pass);

/*
 * The parent's response head: status line and headers up to the empty line (CRLF, or a bare LF
 * as RFC 9112 section 2.2 lets a recipient accept). 1xx interim heads are skipped. PROTO_OK with
 * the final status in *status and *consumed covering every head read; the bytes after are the
 * tunnel's. Error for a malformed status line or a head longer than UPSTREAM_HTTP_HEAD_MAX.
 */
enum proto_status upstream_http_parse_response(const uint8_t *buf, size_t len, int *status,
                                               size_t *consumed);

/* A final status as a SOCKS5 REP code: 2xx succeeded, 403/407 not allowed, 504 TTL expired
 * (timeout), 502/503/404 host unreachable, others general failure. */
uint8_t upstream_http_rep(int status);

#endif
