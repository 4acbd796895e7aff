/*
 * The HTTP proxy front end (frontend.h): CONNECT host:port (RFC 9110 section 9.3.6) with Basic
 * proxy credentials (RFC 7617) checked like RFC 1929 logins, and every reply as an HTTP status.
 * Requests in absolute form (GET http://host/path, any method) are forwarded: the head stays in
 * the session's buffer for the forwarder (http_forward.h); https:// in absolute form is refused
 * (a client must tunnel it with CONNECT).
 */
#include "config.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "ferry/conf.h"
#include "ferry/frontend.h"
#include "ferry/http.h"
#include "ferry/http_forward.h"
#include "ferry/socks5.h"

/* The front end's own states (frontend_input.state). */
enum {
    HTTP_WAIT_HEAD = 0,
    HTTP_LOGIN_PENDING, /* the head stays in the buffer while its credentials are checked */
    HTTP_AUTHENTICATED, /* ... and is read again, now as a request */
};

#define PROXY_AUTHENTICATE "Proxy-Authenticate: Basic realm=\"ferry\", charset=\"UTF-8\"\r\n"

/* Close with a response of `status` (and fields). */
static enum frontend_step http_close(struct frontend_input *in, int status, const char *fields,
                                     enum frontend_close why)
{
    in->out_len = http_response((char *)in->out, sizeof(in->out), status, fields);
    in->close = why;
    return FRONTEND_CLOSE;
}

/* Close with a response of `status` and a short text telling the client why. */
static enum frontend_step http_close_text(struct frontend_input *in, int status, const char *text)
{
    char fields[96];

    snprintf(fields, sizeof(fields), "Content-Type: text/plain\r\nContent-Length: %zu\r\n",
             strlen(text));
    in->out_len = http_response_body((char *)in->out, sizeof(in->out), status, fields, text);
    in->close = FRONTEND_BAD_INPUT;
    return FRONTEND_CLOSE;
}

static enum frontend_step http_input(struct frontend_input *in)
{
    struct http_request req;
    size_t used = 0;
    int status = 400;
    enum proto_status st = http_parse_request(in->buf, in->len, in->cap, &req, &used, &status);
    bool password = conf_method_allowed(in->cfg, SOCKS5_METHOD_USERPASS);
    bool anonymous = conf_method_allowed(in->cfg, SOCKS5_METHOD_NOAUTH);

    if (st == PROTO_NEED_MORE)
        return FRONTEND_NEED_MORE;
    if (st == PROTO_ERROR)
        return http_close(in, status, NULL, FRONTEND_BAD_INPUT);
    if (req.method != HTTP_CONNECT && req.form == HTTP_TARGET_ABSOLUTE && req.https) {
        sodium_memzero(&req, sizeof(req));
        return http_close_text(in, 501, "https:// URLs go through this proxy with CONNECT\n");
    }
    if (req.method != HTTP_CONNECT && req.form != HTTP_TARGET_ABSOLUTE) {
        /* A request for us as a server. */
        sodium_memzero(&req, sizeof(req));
        return http_close(in, 400, NULL, FRONTEND_BAD_INPUT);
    }
    if (*in->state == HTTP_WAIT_HEAD && password && req.proxy_auth) {
        if (!req.proxy_auth_ok) {
            sodium_memzero(&req, sizeof(req));
            return http_close(in, 407, PROXY_AUTHENTICATE, FRONTEND_NO_METHOD);
        }
        memcpy(in->login->user, req.user, sizeof(in->login->user));
        memcpy(in->login->pass, req.pass, sizeof(in->login->pass));
        in->login->user_len = req.user_len;
        in->login->pass_len = req.pass_len;
        sodium_memzero(&req, sizeof(req));
        *in->state = HTTP_LOGIN_PENDING;
        in->used = 0;
        return FRONTEND_LOGIN;
    }
    if (*in->state != HTTP_AUTHENTICATED && !anonymous) {
        sodium_memzero(&req, sizeof(req));
        return http_close(in, 407, PROXY_AUTHENTICATE, FRONTEND_NO_METHOD);
    }
    in->req->dest = req.dest;
    if (req.method != HTTP_CONNECT) {
        /* Forwarded: the head stays for the forwarder, which rewrites it (and wipes it). */
        in->req->cmd = REQUEST_FORWARD;
        in->req->method = (uint8_t)req.method;
        in->used = 0;
        sodium_memzero(&req, sizeof(req));
        return FRONTEND_REQUEST;
    }
    /* The head (credentials included) leaves the buffer; bytes after it are the tunnel's. */
    if (req.proxy_auth)
        sodium_memzero(in->buf, used);
    in->req->cmd = REQUEST_CONNECT;
    in->used = used;
    sodium_memzero(&req, sizeof(req));
    return FRONTEND_REQUEST;
}

static size_t http_login_reply(bool ok, uint8_t *state, uint8_t *out, size_t size)
{
    if (ok) {
        *state = HTTP_AUTHENTICATED;
        return 0; /* the answer is the CONNECT's own */
    }
    return http_response((char *)out, size, 407, PROXY_AUTHENTICATE);
}

/* A SOCKS5 REP as the status a proxy answers CONNECT with. */
static int http_status_of(uint8_t rep)
{
    switch (rep) {
    case SOCKS5_REP_SUCCEEDED:
        return 200;
    case SOCKS5_REP_NOT_ALLOWED:
        return 403;
    case SOCKS5_REP_TTL_EXPIRED:
        return 504;
    case SOCKS5_REP_COMMAND_NOT_SUPPORTED:
        return 501;
    case SOCKS5_REP_GENERAL_FAILURE:
        return 503; /* limits and our own failures */
    default:
        return 502; /* refused, unreachable, an address we cannot reach */
    }
}

static size_t http_reply(uint8_t rep, const struct sockaddr *bound, uint8_t *out, size_t size)
{
    (void)bound;
    return http_response((char *)out, size, http_status_of(rep), NULL);
}

const struct frontend frontend_http = {
    .name = "http",
    .cmd_prefix = "http-",
    .input = http_input,
    .login_reply = http_login_reply,
    .reply = http_reply,
    .reply_name = NULL,
    .bind_local = NULL,
    .ipv4_only = false,
    .input_max = HTTP_FORWARD_HEAD_MAX,
};
