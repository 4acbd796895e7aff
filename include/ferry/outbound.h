/*
 * Outbounds: how a request that the pipeline has checked reaches its target. An outbound turns
 * the request into a connected socket (or, for BIND, two replies; for RESOLVE an answer), or a
 * reply code the session passes on; the relay after it never knows which one ran.
 *
 *   outbound_direct  Happy Eyeballs over the addresses the pipeline resolved and checked
 *                    (outbound_direct.c)
 *   outbound_chain   a route's paths: each a chain of parent proxies (SOCKS5, SOCKS4a, HTTP
 *                    CONNECT), one handshake per hop over the same socket, or direct; tried in
 *                    order with failover, parents that failed left out for a while
 *                    (outbound_chain.c)
 */
#ifndef FERRY_OUTBOUND_H
#define FERRY_OUTBOUND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ferry/addr.h"
#include "ferry/proto.h"

struct ev_loop;
struct outbound_conn;
struct metrics_worker;
struct resolver;
struct route;
struct routes;
struct tunnel_stream;
struct tunnel_udp_grant;

struct outbound_request {
    struct ev_loop *loop;
    struct resolver *resolver;     /* for parents given by host name */
    uint8_t cmd;                   /* SOCKS5_CMD_*: what the last hop is asked to do */
    const struct socks_dest *dest; /* the target as it leaves: a name (resolved at the exit)
                                    * or an address; port included */
    const struct addr *addrs;      /* resolved and checked, in the order to try (direct); */
    size_t naddrs;                 /* copied */
    const struct routes *routes;   /* outbound_chain: the parents, and the route taken */
    const struct route *route;
    unsigned route_no;              /* its number, for logs */
    struct metrics_worker *metrics; /* failed paths are counted here; or NULL */
    bool stream_ok;                 /* a CONNECT whose caller takes a ferry parent's stream
                                     * with no socket (outbound_result.stream) */
};

struct outbound_result {
    int fd;                         /* the connected socket, now the caller's; or -1 */
    int err;                        /* errno of a local or transport failure, or 0 */
    uint8_t rep;                    /* SOCKS5 REP: SUCCEEDED, or the failure to answer */
    bool interim;                   /* BIND's first reply: a second result follows */
    const struct addr *peer;        /* what fd reaches (the first hop of a chain) */
    const struct socks_dest *bound; /* the last parent's BND (BIND, RESOLVE), or NULL */
    const char *via;                /* the path taken: "direct", "eu>tor" (static text) */
    bool tunnel;                    /* fd is a ferry parent's stream (tunnel_conn.h): one end
                                     * of a socketpair, not a TCP socket; or stream is set */
    struct tunnel_stream *stream;   /* instead of fd (-1): a ferry parent's stream with no
                                     * socket (stream_ok), the caller's now */
    /* UDP ASSOCIATE at a ferry parent: the grant that came with its reply (tunnel_udp.h) */
    const struct tunnel_udp_grant *sealed;
};

/* Runs from the loop; once, or twice for BIND (interim, then final). */
typedef void (*outbound_done_cb)(const struct outbound_result *res, void *arg);

struct outbound {
    const char *name; /* for logs: "direct", "chain" */
    /*
     * Start reaching req's target. The callback runs from the loop, never from inside this
     * call; NULL with errno set when nothing could start (no callback then).
     */
    struct outbound_conn *(*start)(const struct outbound_request *req, outbound_done_cb cb,
                                   void *arg);
    /* Stop and free a started attempt; its callback will not run again. */
    void (*cancel)(struct outbound_conn *c);
    /* The path being tried, for the access line of an attempt that times out (static text). */
    const char *(*current)(const struct outbound_conn *c);
};

extern const struct outbound outbound_direct;
extern const struct outbound outbound_chain;

#endif
