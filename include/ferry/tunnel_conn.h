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
 * stream whose window is spent, nor any stream before the socket can take its records (sealed
 * on demand, round-robin). Once a session's relay starts, its stream moves the bytes of the
 * session's other socket itself (tunnel_relay_start), no socketpair between. Every
 * connection of a worker's loop is in a per-thread list that tunnel_worker_free closes (CLOSE
 * first, when up).
 */
#ifndef FERRY_TUNNEL_CONN_H
#define FERRY_TUNNEL_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ferry/addr.h"

struct ev_loop;
struct limit;
struct parent;
struct session_ctx;

/* Per-stream window in each direction (doc 4.2). */
#define TUNNEL_STREAM_WINDOW 262144u
/* Credit is returned in WINDOW records of at least this much. */
#define TUNNEL_WINDOW_UPDATE 65536u

/*
 * A connection accepted on a tunnel listener (the fd is the tunnel's from now on). Takes
 * client_limit's reference: until it proves a key the connection counts as negotiating and as
 * a session (max-negotiating, negotiating-per-client, max-sessions), as a SOCKS client does
 * before its login.
 */
void tunnel_server_accept(struct session_ctx *ctx, int fd, const struct addr *client,
                          struct limit *client_limit);

/* A client stream's REPLY (reply, len bytes: the SOCKS5 reply, and a UDP grant after it). */
typedef void (*tunnel_reply_cb)(void *arg, const uint8_t *reply, size_t len);

/*
 * A new stream to parent p (PARENT_FERRY) from this worker's loop: the chain's end of a
 * socketpair, or -1 with errno (the connection could not even be started). The stream's REPLY
 * goes to cb (from the loop, never from inside a call of the chain's), not into the socketpair;
 * anything after it, and the stream's end before a REPLY, through the socketpair.
 */
int tunnel_client_open(struct ev_loop *loop, const struct parent *p, const struct addr *resolved,
                       tunnel_reply_cb cb, void *arg);

/* The chain (arg) is done with its stream's socketpair fd, before it closes it: no callback
 * (a REPLY from now on goes into the socketpair). */
void tunnel_session_forget(int fd, void *arg);

/*
 * A CONNECT through ferry parent p with no socketpair at all (the path's only hop): req, the
 * SOCKS5 request, goes as OPEN once the connection is up; cb gets the REPLY, or (NULL, 0) if
 * the stream ends before one, from the loop at the end of a round, never from inside a call
 * of the caller's. The handle is the caller's until tunnel_stream_release; a relay started
 * with it (relay_params.target_stream) leaves it empty, to be released all the same. NULL
 * with errno when nothing could start (EAGAIN: p is named and resolved is needed).
 */
struct tunnel_stream *tunnel_stream_open(struct ev_loop *loop, const struct parent *p,
                                         const struct addr *resolved, const uint8_t *req,
                                         size_t len, tunnel_reply_cb cb, void *arg);

/* Free the handle; a stream still there is reset at the server (no callback after this). */
void tunnel_stream_release(struct tunnel_stream *h);

/*
 * For a relay that needs a socket at the target's side (relay.c: a session with a bandwidth
 * limit or quota): a socketpair between, the stream relaying its end from now on; the other
 * end is the caller's, and h is left empty. -1 with errno (ECONNRESET: the stream is gone).
 */
int tunnel_stream_pair(struct tunnel_stream *h);

/*
 * A session's relay through its tunnel stream, no socketpair between (doc 8): when the session's
 * client (server side) or target (client side) is a stream's socketpair, the stream takes the
 * session's other socket and moves its bytes itself, with relay.h's contract (p's sockets stay
 * the session's; the callback runs once, from the loop). NULL: not possible now (a throttled
 * session, bytes in flight on the socketpair, no such stream): relay_start as usual. A stream
 * aborted by the peer or a cut connection resets the socket (SO_LINGER 0) before the callback.
 */
struct relay_params;
struct tunnel_relay;
struct tunnel_relay *tunnel_relay_start(const struct relay_params *p);

/*
 * A session writes the head of its stream (a server session's reply, a client chain's request)
 * by this instead of send() on its end of the socketpair: taken whole (true), or not at all
 * (false: send it, and everything after it, through the socketpair). Two system calls fewer
 * per head, and at the relay's start the socketpair need not be asked whether it holds bytes.
 * fd must be the caller's own open end of a stream's socketpair (a tunnel session's client, a
 * ferry parent's stream): a closed one's number may name another socket by now.
 */
bool tunnel_session_write(int fd, const uint8_t *p, size_t len);
/* The session's end: a stream still running is aborted at the peer (RESET). NULL is fine. */
void tunnel_relay_free(struct tunnel_relay *tr);
/* relay.h's figures: bytes client -> target and back, last activity, one direction ended. */
void tunnel_relay_bytes(const struct tunnel_relay *tr, uint64_t *up, uint64_t *down);
double tunnel_relay_last_activity(const struct tunnel_relay *tr);
bool tunnel_relay_half_closed(const struct tunnel_relay *tr);
/* The session's end of the socketpair, idle once the relay started: the session closes it at
 * once (the stream closed its own). -1: none (a stream with no socketpair). */
int tunnel_relay_idle_fd(const struct tunnel_relay *tr);

/* Close every tunnel connection of this thread (the worker's end). */
void tunnel_worker_free(void);

#endif
