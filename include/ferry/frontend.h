/*
 * Front ends: the client's protocol on a session, from its first byte until the request is
 * known, and every reply in that protocol. A front end only decides: it reads the bytes the
 * session has buffered (through the pure wire parsers), says what they are (more needed, an
 * answer to queue, credentials to check, a request, a refusal) and renders replies. The session
 * family acts on that and runs the same pipeline for every front end: SOCKS5 and SOCKS4/4a
 * (frontend_socks.c), HTTP CONNECT (frontend_http.c); a new protocol is a new `struct
 * frontend` and a line in frontend_for().
 */
#ifndef FERRY_FRONTEND_H
#define FERRY_FRONTEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ferry/proto.h"

struct config;
struct sockaddr;

/* What a request asks for, whatever protocol carried it. */
enum request_cmd {
    REQUEST_CONNECT,
    REQUEST_BIND,
    REQUEST_UDP_ASSOCIATE,
    REQUEST_RESOLVE,     /* Tor: a name to an address */
    REQUEST_RESOLVE_PTR, /* Tor: an address to a name */
    REQUEST_FORWARD,     /* HTTP: a request in absolute form, forwarded to dest (http_forward.h) */
};

struct request {
    enum request_cmd cmd;
    struct socks_dest dest; /* UDP ASSOCIATE: where the client says it will send from */
    uint8_t method;         /* REQUEST_FORWARD: enum http_method (the head stays buffered) */
};

/* Credentials to verify: NUL-terminated copies (a name may hold a NUL: it never matches). */
struct frontend_login {
    char user[256];
    size_t user_len;
    char pass[256];
    size_t pass_len;
};

/* Answers of frontend.input. */
enum frontend_step {
    FRONTEND_NEED_MORE, /* the buffer holds a valid prefix: wait for more bytes */
    FRONTEND_NEXT,      /* consumed `used` bytes; queue `out` (may be empty); parse on */
    FRONTEND_LOGIN,     /* consumed; verify `login`, answer with login_reply, parse on */
    FRONTEND_REQUEST,   /* consumed; `req` holds the request: the pipeline takes over */
    FRONTEND_REFUSE,    /* consumed; `req` holds a request refused with reply `rep` */
    FRONTEND_FAIL,      /* not a valid request: reply `rep`, then close */
    FRONTEND_CLOSE,     /* queue `out` (may be empty), then close for reason `close` */
};

/* Why a front end closes a session without a request. */
enum frontend_close {
    FRONTEND_BAD_INPUT, /* bytes that are not the protocol */
    FRONTEND_NO_METHOD, /* no method both sides accept */
};

/* The size of frontend_input.out: the longest answer a front end queues while negotiating. */
#define FRONTEND_OUT_MAX 256

struct frontend_input {
    /* in */
    const struct config *cfg; /* the session's configuration */
    uint8_t *state;           /* the front end's own state in the session, 0 at first */
    uint8_t *buf;             /* the client's bytes (a front end may wipe secrets in them) */
    size_t len;
    size_t cap; /* the buffer's size: a message that does not fit can never complete */
    /* out */
    size_t used;
    uint8_t out[FRONTEND_OUT_MAX];
    size_t out_len;
    struct request *req;          /* filled on FRONTEND_REQUEST and FRONTEND_REFUSE */
    struct frontend_login *login; /* filled on FRONTEND_LOGIN */
    uint8_t rep;                  /* FRONTEND_REFUSE, FRONTEND_FAIL */
    enum frontend_close close;    /* FRONTEND_CLOSE */
};

/*
 * Replies use the session's one vocabulary, the SOCKS5 REP codes (socks5.h), which each front
 * end maps to its own (SOCKS4 CD, an HTTP status line).
 */
struct frontend {
    const char *name;       /* "socks5", "socks4" */
    const char *cmd_prefix; /* before the command in access lines: "", "socks4-" */
    enum frontend_step (*input)(struct frontend_input *in);
    /* The answer to a verified (ok) or refused login, into out; returns its length. */
    size_t (*login_reply)(bool ok, uint8_t *state, uint8_t *out, size_t size);
    /* The reply to the request: rep, and the address to report (NULL: none). */
    size_t (*reply)(uint8_t rep, const struct sockaddr *bound, uint8_t *out, size_t size);
    /* A reply naming a host (RESOLVE_PTR); 0 when it does not fit or the protocol has none. */
    size_t (*reply_name)(uint8_t rep, const char *name, uint8_t *out, size_t size);
    /* Where a BIND listens, given the address the client reached us on (NULL: there). */
    void (*bind_local)(struct addr *local);
    /* Replies carry IPv4 addresses only: a RESOLVE without an IPv4 answer fails. */
    bool ipv4_only;
    /* The input buffer it needs (0: the session's default): HTTP heads are longer. */
    size_t input_max;
};

extern const struct frontend frontend_socks5;
extern const struct frontend frontend_socks4;
extern const struct frontend frontend_http;
/* SOCKS5 without greeting or login: a tunnel stream's session, logged in by its key. */
extern const struct frontend frontend_tunnel;

/* The front end of a session whose first byte is `first`; NULL when none speaks it. */
const struct frontend *frontend_for(uint8_t first);

/* The protocols a listener serves (listen ... protocols LIST): a set of these bits. */
enum frontend_protocol {
    FRONTEND_SOCKS4 = 1 << 0, /* SOCKS4 and SOCKS4a */
    FRONTEND_SOCKS5 = 1 << 1,
    FRONTEND_HTTP = 1 << 2, /* CONNECT and forwarding */
    FRONTEND_ALL = FRONTEND_SOCKS4 | FRONTEND_SOCKS5 | FRONTEND_HTTP,
};

/* Whether front end fe is one of the protocols in set (FRONTEND_* bits). */
bool frontend_serves(const struct frontend *fe, unsigned set);

#endif
