/* UDP ASSOCIATE (RFC 1928 section 7): one association, its sockets and its datagram relay. */
#ifndef FERRY_UDP_H
#define FERRY_UDP_H

#include <stdbool.h>
#include <stdint.h>

#include "ferry/addr.h"
#include "ferry/tunnel_udp.h"

struct ev_loop;
struct resolver;
struct udp_assoc;
struct udp_batch;

/*
 * The buffers one loop uses to move datagrams in batches (recvmmsg/sendmmsg): shared by every
 * association of the loop, which must not outlive it. NULL when out of memory.
 */
struct udp_batch *udp_batch_new(void);
void udp_batch_free(struct udp_batch *b);

/*
 * Per-datagram policy: return false to drop (counted as drop_blocked). name is the destination
 * name as the client sent it (NULL for an address); to is the address, NULL while a name is
 * not resolved yet (only name rules can refuse then); port is the destination port.
 */
typedef bool (*udp_policy_cb)(void *arg, const char *name, const struct addr *to, uint16_t port);

/* Which targets' datagrams reach the client (`udp filter`; RFC 4787 section 5). */
enum udp_filter {
    UDP_FILTER_ADDRESS,      /* from an IP the client has sent to, any port (the default) */
    UDP_FILTER_ADDRESS_PORT, /* only from an exact IP and port the client has sent to */
    UDP_FILTER_ANY,          /* from anyone who reaches the outbound socket */
};

struct udp_assoc_params {
    struct ev_loop *loop;
    struct resolver *resolver; /* for DEST_NAME destinations */
    struct udp_batch *batch;   /* the loop's batch buffers */
    struct addr client;        /* the TCP control connection's peer */
    uint16_t client_port;      /* the client's UDP source port (pinned), or 0: learn it
                                * from the first datagram from the client's IP */
    struct addr local;         /* where to bind the client-facing socket (port ignored) */
    uint16_t port_min;         /* the client-facing socket's port range (0, 0: any) */
    uint16_t port_max;
    enum udp_filter filter; /* which targets may answer */
    udp_policy_cb policy;   /* NULL: every destination allowed */
    void *policy_arg;
    /*
     * Through a parent (len > 0): its SOCKS5 UDP relay. Every datagram the policy lets
     * through goes there with its header unchanged (names are resolved by the parent), and
     * only datagrams from exactly that address come back, passed on as they are (the parent's
     * reply filter applies). len 0: direct.
     */
    struct addr upstream;
    struct addr upstream_local; /* the local IP of the parent's control connection: the
                                 * relay socket is bound there, so the parent sees our
                                 * datagrams come from the control connection's address */
    /*
     * A tunnel's association (tunnel_udp.h, doc/tunnel-protocol.md 4.3): datagrams with the
     * other ferry are sealed. sealed_client (the server of a tunnel stream): the client's are
     * opened with ->up (bad, duplicate and old ones dropped, never answered) and then handled
     * as any client datagram; what goes to the client is sealed with ->down. sealed_upstream
     * (through a ferry parent): what goes to the upstream relay is sealed with ->up, what
     * comes from it opened with ->down. NULL: plain. Copied: the caller wipes its own.
     */
    const struct tunnel_udp_grant *sealed_client;
    const struct tunnel_udp_grant *sealed_upstream;
};

/* Why datagrams were dropped; counted per association. */
struct udp_stats {
    uint64_t up_packets;   /* client -> targets, sent */
    uint64_t up_bytes;     /* payload bytes */
    uint64_t down_packets; /* targets -> client, sent */
    uint64_t down_bytes;
    uint64_t drop_stranger;  /* from an IP (or port, once pinned or learned) not the client's */
    uint64_t drop_frag;      /* FRAG != 0 */
    uint64_t drop_malformed; /* truncated header, bad ATYP, empty name */
    uint64_t drop_filtered;  /* reply the filter keeps out, or before the client sent */
    uint64_t drop_resolve;   /* the destination name did not resolve */
    uint64_t drop_queue;     /* pending-resolution queue full */
    uint64_t drop_send;      /* sendto failed (ENOBUFS, EAGAIN, unreachable...) */
    uint64_t drop_oversize;  /* a reply too large to carry with its header */
    uint64_t drop_blocked;   /* destination refused by the policy */
    bool sealed;             /* a tunnel's association: the three below count */
    uint64_t drop_auth;      /* sealed: not authentic (tampered, other key or id, short) */
    uint64_t drop_replay;    /* sealed: authentic, its counter already taken */
    uint64_t drop_old;       /* sealed: authentic, behind the replay window */
};

/*
 * Open the client-facing socket (in the configured port range) and start relaying. The
 * outbound sockets (IPv4, IPv6) are opened when first needed. Returns NULL with errno set.
 */
struct udp_assoc *udp_assoc_start(const struct udp_assoc_params *p);

/* The client-facing socket's address: what BND.ADDR/BND.PORT report (before advertise). */
const struct addr *udp_assoc_local(const struct udp_assoc *a);

/* ev_now of the last datagram relayed in either direction. */
double udp_assoc_last_activity(const struct udp_assoc *a);

void udp_assoc_stats(const struct udp_assoc *a, struct udp_stats *out);

/* Close every socket, cancel pending resolutions, free queued datagrams and a. */
void udp_assoc_free(struct udp_assoc *a);

#endif
