/*
 * The SOCKS front ends (frontend.h): SOCKS5 (RFC 1928, RFC 1929 logins) and SOCKS4/4a, on the
 * pure wire modules socks5.c and socks4.c. No I/O: they read the session's buffer and say what
 * it holds.
 */
#include "config.h"

#include <sodium.h>
#include <string.h>

#include "ferry/conf.h"
#include "ferry/frontend.h"
#include "ferry/reply.h"
#include "ferry/socks4.h"
#include "ferry/socks5.h"

/* SOCKS5's own states (frontend_input.state). */
enum {
    SOCKS5_WAIT_GREETING = 0,
    SOCKS5_WAIT_LOGIN,
    SOCKS5_WAIT_REQUEST,
};

static enum request_cmd request_cmd_from_socks5(uint8_t cmd)
{
    switch (cmd) {
    case SOCKS5_CMD_BIND:
        return REQUEST_BIND;
    case SOCKS5_CMD_UDP_ASSOCIATE:
        return REQUEST_UDP_ASSOCIATE;
    case SOCKS5_CMD_RESOLVE:
        return REQUEST_RESOLVE;
    case SOCKS5_CMD_RESOLVE_PTR:
        return REQUEST_RESOLVE_PTR;
    default:
        return REQUEST_CONNECT;
    }
}

/* Greeting: pick the first of our methods the client offers (RFC 1928 section 3). */
static enum frontend_step socks5_greeting(struct frontend_input *in)
{
    struct socks5_greeting g;
    enum proto_status st = socks5_parse_greeting(in->buf, in->len, &g, &in->used);
    uint8_t method;

    if (st == PROTO_NEED_MORE)
        return FRONTEND_NEED_MORE;
    if (st == PROTO_ERROR) {
        in->close = FRONTEND_BAD_INPUT;
        return FRONTEND_CLOSE;
    }
    method = socks5_choose_method(&g, in->cfg->methods, in->cfg->nmethods);
    in->out_len = socks5_encode_method(in->out, method);
    if (method == SOCKS5_METHOD_NONE) {
        in->close = FRONTEND_NO_METHOD;
        return FRONTEND_CLOSE;
    }
    *in->state = method == SOCKS5_METHOD_USERPASS ? SOCKS5_WAIT_LOGIN : SOCKS5_WAIT_REQUEST;
    return FRONTEND_NEXT;
}

/* RFC 1929 sub-negotiation: hand the credentials on, and wipe them from the buffer. */
static enum frontend_step socks5_login(struct frontend_input *in)
{
    struct socks5_userpass up;
    enum proto_status st = socks5_parse_userpass(in->buf, in->len, &up, &in->used);

    if (st == PROTO_NEED_MORE)
        return FRONTEND_NEED_MORE;
    sodium_memzero(in->buf, st == PROTO_OK ? in->used : in->len);
    if (st == PROTO_ERROR) {
        sodium_memzero(&up, sizeof(up));
        in->close = FRONTEND_BAD_INPUT;
        return FRONTEND_CLOSE;
    }
    memcpy(in->login->user, up.user, sizeof(in->login->user));
    memcpy(in->login->pass, up.pass, sizeof(in->login->pass));
    in->login->user_len = up.user_len;
    in->login->pass_len = up.pass_len;
    sodium_memzero(&up, sizeof(up));
    return FRONTEND_LOGIN;
}

static enum frontend_step socks5_request(struct frontend_input *in)
{
    struct socks5_request req;
    uint8_t rep = SOCKS5_REP_GENERAL_FAILURE;
    enum proto_status st = socks5_parse_request(in->buf, in->len, &req, &in->used, &rep);

    if (st == PROTO_NEED_MORE)
        return FRONTEND_NEED_MORE;
    if (st == PROTO_ERROR) {
        in->rep = rep;
        return FRONTEND_FAIL;
    }
    in->req->cmd = request_cmd_from_socks5(req.cmd);
    in->req->dest = req.dest;
    return FRONTEND_REQUEST;
}

static enum frontend_step socks5_input(struct frontend_input *in)
{
    switch (*in->state) {
    case SOCKS5_WAIT_GREETING:
        return socks5_greeting(in);
    case SOCKS5_WAIT_LOGIN:
        return socks5_login(in);
    default:
        return socks5_request(in);
    }
}

static size_t socks5_login_reply(bool ok, uint8_t *state, uint8_t *out, size_t size)
{
    if (size < 2)
        return 0;
    if (ok)
        *state = SOCKS5_WAIT_REQUEST;
    /* RFC 1929 section 2: on failure the server MUST close the connection (the session does). */
    return socks5_encode_userpass_reply(out, ok ? SOCKS5_USERPASS_OK : SOCKS5_USERPASS_FAIL);
}

static size_t socks5_reply(uint8_t rep, const struct sockaddr *bound, uint8_t *out, size_t size)
{
    if (size < SOCKS5_REPLY_MAX)
        return 0;
    return socks5_encode_reply(out, rep, bound);
}

static size_t socks5_reply_name(uint8_t rep, const char *name, uint8_t *out, size_t size)
{
    return socks5_encode_reply_name(out, size, rep, name, 0);
}

const struct frontend frontend_socks5 = {
    .name = "socks5",
    .cmd_prefix = "",
    .input = socks5_input,
    .login_reply = socks5_login_reply,
    .reply = socks5_reply,
    .reply_name = socks5_reply_name,
    .bind_local = NULL,
    .ipv4_only = false,
};

static size_t socks4_login_reply_none(bool ok, uint8_t *state, uint8_t *out, size_t size);

/* A tunnel stream: the request is the first message (the key authenticated the client). */
static enum frontend_step tunnel_input(struct frontend_input *in)
{
    return socks5_request(in);
}

const struct frontend frontend_tunnel = {
    .name = "tunnel",
    .cmd_prefix = "",
    .input = tunnel_input,
    .login_reply = socks4_login_reply_none,
    .reply = socks5_reply,
    .reply_name = socks5_reply_name,
    .bind_local = NULL,
    .ipv4_only = false,
};

/* SOCKS4 and SOCKS4a: one message, no login (the USERID is not a credential). */
static enum frontend_step socks4_input(struct frontend_input *in)
{
    struct socks4_request req;
    enum proto_status st = socks4_parse_request(in->buf, in->len, &req, &in->used);

    if (st == PROTO_NEED_MORE)
        return FRONTEND_NEED_MORE;
    if (st == PROTO_ERROR) {
        in->rep = SOCKS5_REP_GENERAL_FAILURE;
        return FRONTEND_FAIL;
    }
    in->req->cmd = req.cmd == SOCKS4_CMD_BIND      ? REQUEST_BIND
                   : req.cmd == SOCKS4_CMD_RESOLVE ? REQUEST_RESOLVE
                                                   : REQUEST_CONNECT;
    in->req->dest = req.dest;
    /* SOCKS4 carries no password: served only when no-auth is allowed. */
    if (!conf_method_allowed(in->cfg, SOCKS5_METHOD_NOAUTH)) {
        in->rep = SOCKS5_REP_NOT_ALLOWED;
        return FRONTEND_REFUSE;
    }
    return FRONTEND_REQUEST;
}

static size_t socks4_login_reply_none(bool ok, uint8_t *state, uint8_t *out, size_t size)
{
    (void)ok;
    (void)state;
    (void)out;
    (void)size;
    return 0;
}

static size_t socks4_reply(uint8_t rep, const struct sockaddr *bound, uint8_t *out, size_t size)
{
    if (size < SOCKS4_REPLY_LEN)
        return 0;
    return socks4_encode_reply(out, reply_socks4_from_socks5(rep), bound);
}

const struct frontend frontend_socks4 = {
    .name = "socks4",
    .cmd_prefix = "socks4-",
    .input = socks4_input,
    .login_reply = socks4_login_reply_none,
    .reply = socks4_reply,
    .reply_name = NULL,
    .bind_local = socks4_local_address,
    .ipv4_only = true,
};
