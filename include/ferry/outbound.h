/*
 * Outbounds: how a request that the pipeline has checked reaches its target. An outbound turns
 * the request into a connected socket, or an errno the session maps to a reply; the relay
 * after it never knows which one ran. Today one: direct (Happy Eyeballs over the addresses the
 * pipeline resolved and checked, outbound_direct.c). A chain of parent proxies or an encrypted
 * hop is another `struct outbound`.
 */
#ifndef FERRY_OUTBOUND_H
#define FERRY_OUTBOUND_H

#include <stdbool.h>
#include <stddef.h>

#include "ferry/addr.h"
#include "ferry/proto.h"

struct ev_loop;
struct outbound_conn;

struct outbound_request {
    struct ev_loop *loop;
    const struct socks_dest *dest; /* as the client asked (port included) */
    const struct addr *addrs;      /* resolved and checked, in the order to try; copied */
    size_t naddrs;
};

/* fd: connected and non-blocking, now the caller's; or -1 and err. peer: what fd reaches. */
typedef void (*outbound_done_cb)(int fd, int err, const struct addr *peer, void *arg);

struct outbound {
    const char *name; /* for logs: "direct" */
    /*
     * Start reaching req's target. The callback runs once, always from the loop; NULL with
     * errno set when nothing could start (no callback then).
     */
    struct outbound_conn *(*start)(const struct outbound_request *req, outbound_done_cb cb,
                                   void *arg);
    /* Stop and free a started attempt; its callback will not run. */
    void (*cancel)(struct outbound_conn *c);
};

extern const struct outbound outbound_direct;

#endif
