/*
 * The tunnel in the daemon (doc/tunnel-protocol.md): one encrypted TCP connection between two
 * ferryd carrying many streams, on the pure layers tunnel_noise.h and tunnel_record.h.
 *
 * Server side: a connection accepted on a `listen ... tunnel` address runs the IK handshake as
 * responder with the checks of the document's section 2.4 in order; on any failure it sends
 * nothing and is closed when the negotiate timeout expires. Each OPEN then becomes an ordinary
 * session (session_start_tunnel) whose client is one end of a socketpair, already logged in as
 * the key's user: the request rules, limits, quotas and access lines apply per key as per
 * password user. The session's SOCKS5 reply goes back as REPLY, its bytes as DATA; a UDP
 * ASSOCIATE's successful reply is followed by the association's grant (tunnel_udp.h), and
 * REPLY carries both.
 *
 * Client side: a ferry parent (route.h) keeps one long-lived connection per worker, connected
 * on first use and again after a failure. tunnel_client_open gives the chain outbound one end of
 * a socketpair that behaves like a SOCKS5 parent which needs no greeting: the request written
 * to it becomes OPEN, REPLY comes back into it, then the stream's bytes.
 *
 * Both: DATA under per-stream windows, EOF as half-close, RESET, a sender never reading a
 * stream whose window is spent nor more while the connection's unsent queue is long. Every
 * connection of a worker's loop is in a per-thread list that tunnel_worker_free closes (CLOSE
 * first, when up).
 */
#ifndef FERRY_TUNNEL_CONN_H
#define FERRY_TUNNEL_CONN_H

#include "ferry/addr.h"

struct ev_loop;
struct limit;
struct parent;
struct session_ctx;

/* Per-stream window in each direction (doc 4.2). */
#define TUNNEL_STREAM_WINDOW 262144u
/* Credit is returned in WINDOW records of at least this much. */
#define TUNNEL_WINDOW_UPDATE 65536u

/* A connection accepted on a tunnel listener (the fd is the tunnel's from now on). */
void tunnel_server_accept(struct session_ctx *ctx, int fd, const struct addr *client);

/*
 * A new stream to parent p (PARENT_FERRY) from this worker's loop: the chain's end of a
 * socketpair, or -1 with errno (the connection could not even be started).
 */
int tunnel_client_open(struct ev_loop *loop, const struct parent *p);

/* Close every tunnel connection of this thread (the worker's end). */
void tunnel_worker_free(void);

#endif
