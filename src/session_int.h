/*
 * The session family's private header: struct session, its states and end reasons, and the
 * primitives its files share. Only src/session*.c include it.
 *
 *   session.c          lifecycle: start, the one close path, the state/timer table, client I/O,
 *                      the front end's input, the relay, the access line
 *   session_auth.c     logins: RFC 1929 credentials through the verifier (cache, pool)
 *   session_request.c  the pipeline: limits, policy by name, route by name, resolve, policy
 *                      by address, route by address, dispatch; the outbound (direct or a
 *                      route's chain of parents) for CONNECT and for BIND, UDP ASSOCIATE and
 *                      RESOLVE through parents
 *   session_cmd.c      the other commands: BIND, UDP ASSOCIATE, RESOLVE, RESOLVE_PTR
 *   session_forward.c  HTTP requests in absolute form: one exchange each (http_forward.h), an
 *                      access line each, the next request on the same client connection
 *
 * One session's path:
 *
 *   accept -> S_NEGOTIATING (the front end: greeting, [S_VERIFYING login], request)
 *     -> pipeline [S_RESOLVING] -> S_CONNECTING -> [S_REPLYING] -> S_RELAY
 *                               -> BIND: [S_CONNECTING: parents] S_BIND_WAIT -> [S_REPLYING]
 *                                  -> S_RELAY
 *                               -> UDP ASSOCIATE: [S_CONNECTING: parents] S_UDP
 *                               -> RESOLVE, RESOLVE_PTR: the answer, S_CLOSING
 *                               -> HTTP FORWARD: S_FORWARD -> S_NEGOTIATING (the next request)
 *   and S_CLOSING (a final message, then close) from any of them.
 */
#ifndef FERRY_SESSION_INT_H
#define FERRY_SESSION_INT_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ferry/addr.h"
#include "ferry/frontend.h"
#include "ferry/limits.h"
#include "ferry/policy.h"
#include "ferry/session.h"

struct http_forward;
struct login_wait;
struct outbound;
struct outbound_conn;
struct sockaddr;

/*
 * Negotiation input: greeting (257) + sub-negotiation (513) + request (262) may all arrive in
 * one segment, and a client may send its first data right behind them.
 */
#define NEGOTIATION_BUF 2048
/* Reply bytes waiting for the client: two BIND replies, or a RESOLVE_PTR reply with a name. */
#define SESSION_OUT_BUF 272

/* Each waits on one thing; session_enter sets one and arms its timer (session.c's table). */
enum session_state {
    S_NEGOTIATING, /* client bytes for the front end */
    S_VERIFYING,   /* the verifier's answer to a login */
    S_RESOLVING,   /* the resolver */
    S_CONNECTING,  /* the outbound */
    S_REPLYING,    /* the client taking the success reply, then the relay starts */
    S_BIND_WAIT,   /* the expected peer connecting to the BIND socket */
    S_UDP,         /* the association: its control connection only closes */
    S_RELAY,       /* the relay */
    S_FORWARD,     /* an HTTP exchange forwarded (http_forward.h) */
    S_CLOSING,     /* the client taking a final message, then its EOF */
};

/* Why a session ended, for the access line. */
enum session_end {
    END_NONE,
    END_DONE,
    END_REPLIED_FAILURE,
    END_CLIENT_GONE,
    END_CLIENT_ERROR,
    END_TARGET_ERROR,
    END_BAD_GREETING,
    END_NO_METHOD,
    END_AUTH_FAILED,
    END_AUTH_LIMITED,
    END_AUTH_BUSY,
    END_NEGOTIATE_TIMEOUT,
    END_IDLE_TIMEOUT,
    END_HALF_CLOSED_TIMEOUT,
    END_REPLY_TIMEOUT,
    END_RELAY_ERROR,
    END_RESOURCES,
    END_SHUTDOWN,
};

/*
 * What a session needs only until its relay starts (a UDP association keeps it): the buffers,
 * the request, and whatever is in flight for it.
 */
struct negotiation {
    size_t len;
    size_t out_len;
    ev_io client_writable;               /* while a reply waits for the client */
    struct auth_verify_wait *verify;     /* a password check in flight */
    struct login_wait *login_wait;       /* a login waiting for its turn to be checked */
    struct resolver_query *query;        /* a lookup in flight */
    const struct outbound *outbound;     /* the one reaching the target */
    struct outbound_conn *outbound_conn; /* its attempt in flight */
    struct binder *binder;               /* BIND's listening socket */
    int route;         /* the route chosen (route.h), 0 none, -1 not yet: on the address */
    bool name_decides; /* the rules passed the asked name without needing its address */
    bool udp_upstream; /* the UDP association goes through a parent's relay */
    bool rule_counted; /* the deciding rule is in the metrics */
    ev_io upstream_control; /* that parent's control connection (target_fd): its end ends us */
    struct request req;                  /* once requested */
    uint8_t *buf;                        /* small, or a front end's larger one (input_max) */
    size_t cap;
    uint8_t small[NEGOTIATION_BUF];
    uint8_t out[SESSION_OUT_BUF];
};

struct session {
    struct session_ctx *ctx;
    struct snapshot *snap;    /* the configuration this session started under (a reference) */
    const struct config *cfg; /* &snap->config */
    struct session *prev;
    struct session *next;
    const struct frontend *fe; /* chosen by the first byte; NULL before */
    enum session_state state;
    enum session_end end;
    uint8_t fe_state; /* the front end's own */
    uint8_t protocols; /* the listener's (frontend.h's FRONTEND_* bits) */
    uint8_t cmd;      /* enum request_cmd, once requested */
    uint8_t rep;      /* reply sent (SOCKS5 REP vocabulary), 0xff before any */
    bool requested;   /* a request was parsed: cmd and nego->req are valid */
    bool client_eof;  /* client half-closed before the relay started */
    bool refused;     /* the access policy refused the request: see refusal */
    int client_fd;
    int target_fd;
    bool target_tunnel; /* target_fd is a ferry parent's stream: a socketpair's end; or: */
    struct tunnel_stream *target_stream; /* a ferry parent's stream with no socket (fd -1) */
    ev_io client_readable; /* the negotiation's; the relay takes it over (its callback too) */
    ev_timer timer;
    ev_tstamp started;
    struct addr client_addr;
    struct addr target_addr; /* the address connected to */
    char *target;            /* the destination as asked, for the access line once nego is
                              * gone (the relay runs); NULL before. The client's bytes:
                              * escape it for logs */
    char *user;              /* the user name as sent (user_len bytes and a NUL; it may
                              * hold any byte until authenticated): escape it for logs */
    size_t user_len;
    struct negotiation *nego; /* freed when the relay starts */
    struct relay *relay;
    struct tunnel_relay *trelay; /* or the relay through a tunnel stream (tunnel_conn.h) */
    struct udp_assoc *udp;
    struct http_forward *fwd;       /* the HTTP exchange being forwarded */
    int http_status;                /* its response's status, for the access line (0: none) */
    unsigned forwarded;             /* HTTP requests forwarded and logged on this connection */
    const struct addr *advertise;   /* the listener's public address, or NULL */
    struct addr tunnel_local;       /* a tunnel stream's: the tunnel's local address (len 0:
                                     * not a tunnel stream) */
    unsigned route;                 /* the route (1-based rule number) the request took, 0 none */
    const char *via;                /* the path it left by ("direct", "eu>tor"): text in the
                                     * session's snapshot; NULL before an outbound was chosen */
    struct policy_decision refusal; /* the deciding rule, when refused or limited by a rule */
    struct limit_hold hold;         /* every limit the session counts against */
};

/* --- session.c: lifecycle and the primitives ---------------------------------------------- */

/* Set the state and arm its timer from the table (some keep the running deadline). */
void session_enter(struct session *s, enum session_state state);
/* Close now, recording why (the first reason recorded wins). */
void session_end(struct session *s, enum session_end why);
/* Queue bytes for the client and try to send them. 0 all sent, 1 some wait, -1 error. */
int session_send(struct session *s, const uint8_t *bytes, size_t len);
/* The final message: queue msg (len may be 0), then close once the client has it. */
void session_finish(struct session *s, enum session_end why, const uint8_t *msg, size_t len);
/* The reply to the request in the client's protocol (see session_send for the result). */
int session_reply(struct session *s, uint8_t rep, const struct sockaddr *bound);
/* A failure reply, then close. */
void session_fail(struct session *s, uint8_t rep);
/* The success reply naming `bound`, then the relay (once the reply is out). */
void session_reply_then_relay(struct session *s, const struct addr *bound);
/* The address the client reached us on. */
int session_local_addr(const struct session *s, struct addr *local);
/* What replies report for a socket bound at `bound`: the listener's advertised IP if set. */
struct addr session_advertised(const struct session *s, const struct addr *bound);
/* The command's name in access and rule lines. */
const char *session_cmd_name(const struct session *s);
/* The verifier answered a login that was PENDING: let the front end go on. */
void session_login_resumed(struct session *s);
/* The access line and the counters for what the session did so far (a forwarded request). */
void session_account(const struct session *s);
/* The session's bandwidth limits and quota as a relay throttle in *t; NULL when none. */
struct relay_throttle;
const struct relay_throttle *session_throttle(struct session *s, struct relay_throttle *t);
/* Read the next request: S_NEGOTIATING under a fresh deadline, the buffer parsed first. */
void session_next_request(struct session *s);

/* --- session_auth.c ----------------------------------------------------------------------- */

enum session_login {
    SESSION_LOGIN_DONE,    /* answered at once (the auth cache): the front end goes on */
    SESSION_LOGIN_PENDING, /* S_VERIFYING: the verifier's answer goes on */
    SESSION_LOGIN_GONE,    /* refused, closing or closed: touch nothing */
};

/* Check a login's credentials (wiped by the caller afterwards). */
enum session_login session_login(struct session *s, const struct frontend_login *login);
/* Forget a login waiting for its turn (session_close). */
void session_login_drop(struct session *s);
/* Room for session_user_for_log: a user name escaped for a log line. */
#define SESSION_USER_LOGLEN (255 * 4 + 1)
/* The session's user name escaped for a log line into buf, or "-" before a login. */
const char *session_user_for_log(const struct session *s, char *buf, size_t size);

/* --- session_request.c -------------------------------------------------------------------- */

/* A whole request is in (nego->req): limits, policy, resolution, then the command. */
void session_request(struct session *s);
/* The policy on an address or name (dest NULL: before resolution) for s's request. */
struct policy_decision session_policy(const struct session *s, const struct addr *dest);
/* Act on a decision: true to go on; false when refused (the reply is on its way). */
bool session_allowed(struct session *s, const struct policy_decision *d);

/* --- session_cmd.c ------------------------------------------------------------------------ */

void session_bind(struct session *s, const struct addr *peers, size_t n);
/* UDP ASSOCIATE, direct (upstream NULL) or through a parent's relay at upstream; sealed: a
 * ferry parent's grant (its datagrams sealed, tunnel_udp.h), else NULL. A tunnel stream's
 * association makes its own grant and sends it after the reply. */
struct tunnel_udp_grant;
void session_udp(struct session *s, const struct addr *upstream,
                 const struct tunnel_udp_grant *sealed);
void session_answer_resolve(struct session *s, const struct addr *addrs, size_t n);
void session_resolve_ptr(struct session *s, const struct addr *target);

/* --- session_forward.c -------------------------------------------------------------------- */

/* The target is connected: forward the request whose head is in the buffer. */
void session_forward(struct session *s);
/* The idle deadline passed in S_FORWARD: 504 when nothing was answered yet, else close. */
void session_forward_timeout(struct session *s);
/* Seconds until the idle deadline of S_FORWARD. */
double session_forward_left(const struct session *s, double now);

#endif
