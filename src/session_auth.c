/*
 * The session's logins: credentials a front end parsed (RFC 1929 for SOCKS5) checked against
 * the users file by the verifier (its cache, merged runs, the Argon2id pool off the loop), the
 * failed-login limit of the client IP, and the session counted for its user once in.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/auth_users.h"
#include "ferry/auth_verify.h"
#include "ferry/conf.h"
#include "ferry/log.h"
#include "ferry/snapshot.h"
#include "session_int.h"

/*
 * The answer to a login, whichever way it came: count the user's session, or the failure.
 * Returns true when the front end goes on; false when the session is closing or gone.
 */
static bool session_login_answer(struct session *s, bool ok)
{
    uint8_t msg[SESSION_OUT_BUF];
    size_t len;

    if (ok && limits_hold_user(&s->hold, s->user, s->cfg->sessions_per_user) < 0) {
        session_end(s, END_RESOURCES);
        return false;
    }
    len = s->fe->login_reply(ok, &s->fe_state, msg, sizeof(msg));
    if (!ok) {
        char client[ADDR_STRLEN];

        limits_hold_auth_failed(&s->hold, &s->cfg->auth_failures, limits_clock());
        log_notice("authentication failed for user '%s' from %s", s->user,
                   addr_format(&s->client_addr, client, sizeof(client)));
        session_finish(s, END_AUTH_FAILED, msg, len);
        return false;
    }
    session_enter(s, S_NEGOTIATING);
    if (len > 0 && session_send(s, msg, len) < 0) {
        session_end(s, END_CLIENT_ERROR);
        return false;
    }
    return true;
}

static void on_auth_verified(bool ok, void *arg)
{
    struct session *s = arg;

    s->nego->verify = NULL;
    if (session_login_answer(s, ok))
        session_login_resumed(s);
}

/* A login refused without a check (rate limit, full pool): the front end's failure answer. */
static void session_login_refused(struct session *s, enum session_end why)
{
    uint8_t msg[SESSION_OUT_BUF];
    size_t len = s->fe->login_reply(false, &s->fe_state, msg, sizeof(msg));

    session_finish(s, why, msg, len);
}

enum session_login session_login(struct session *s, const struct frontend_login *login)
{
    const char *hash = auth_users_lookup(s->snap->users, login->user, login->user_len);
    struct auth_verify_login check;
    enum auth_verify_status st;

    /* A name with a NUL byte cannot be a valid user; it still costs a verification. */
    s->user = strndup(login->user, login->user_len);
    if (s->user == NULL) {
        session_end(s, END_RESOURCES);
        return SESSION_LOGIN_GONE;
    }
    log_sanitize(s->user);
    check.now = limits_clock();
    if (!limits_hold_auth_allowed(&s->hold, &s->cfg->auth_failures, check.now)) {
        char client[ADDR_STRLEN];

        /* Too many failures from this IP: refused without checking, so guessing stalls. */
        log_notice("login attempts from %s are rate-limited (limit auth-failures): refusing user "
                   "'%s' unchecked",
                   addr_format(&s->client_addr, client, sizeof(client)), s->user);
        session_login_refused(s, END_AUTH_LIMITED);
        return SESSION_LOGIN_GONE;
    }
    check.user = login->user;
    check.user_len = login->user_len;
    check.password = login->pass;
    check.pass_len = login->pass_len;
    check.hash = hash;
    check.generation = s->snap->generation;
    check.cache_ttl = s->cfg->auth_cache;
    st = auth_verify_check(s->ctx->verifier, &check, on_auth_verified, s, &s->nego->verify);
    if (st == AUTH_VERIFY_CACHED) {
        /* A login verified a moment ago under this users file: no second Argon2id run. */
        log_debug("login of user '%s' verified from the auth cache", s->user);
        return session_login_answer(s, true) ? SESSION_LOGIN_DONE : SESSION_LOGIN_GONE;
    }
    if (st == AUTH_VERIFY_ERROR) {
        /* The pool is full (or out of memory): an honest failure status, then close. */
        log_warn("cannot queue a password verification: %s", strerror(errno));
        session_login_refused(s, END_RESOURCES);
        return SESSION_LOGIN_GONE;
    }
    session_enter(s, S_VERIFYING);
    return SESSION_LOGIN_PENDING;
}
