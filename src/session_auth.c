/*
 * The session's logins: credentials a front end parsed (RFC 1929 for SOCKS5) checked against
 * the users file by the verifier (its cache, merged runs, the Argon2id pool off the loop), the
 * failed-login limit of the client IP, and the session counted for its user once in.
 *
 * A login that needs an Argon2id run of its own is admitted by the limits first: it takes a
 * token of its client IP's auth-failures bucket before the run (given back when the password
 * matched), and at most a few run at once per client IP and per user name; past those a login
 * waits its turn, trying again every few milliseconds (the cache or a merged run may answer it
 * meanwhile) until the negotiation deadline.
 */
#include "config.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "ferry/auth_users.h"
#include "ferry/auth_verify.h"
#include "ferry/conf.h"
#include "ferry/log.h"
#include "ferry/snapshot.h"
#include "session_int.h"

/*
 * Password checks in flight at once per client IP and per user name (known or not). A client
 * has one password to try, and its identical logins share one run: one at a time per address
 * leaves the process's other runs (auth-threads) to other clients, so a guessing client delays
 * another client's login by about one run. Two per name, so that one user logging in from two
 * places is not kept waiting by the other.
 */
#define AUTH_VERIFYING_PER_CLIENT 1
#define AUTH_VERIFYING_PER_USER 2
/* A login waiting for its turn tries again this often. */
#define AUTH_RETRY_INTERVAL 0.025
/* Logins refused without a check: the first from a client is logged, then one line per
 * client per this many seconds with the count. */
#define AUTH_REFUSED_NOTE_INTERVAL 10.0

/* A login waiting for its turn, with its credentials (wiped when it goes). */
struct login_wait {
    ev_timer retry;
    struct session *s;
    struct frontend_login login;
};

/* What the admission hook learnt while auth_verify_check ran (it runs synchronously). */
struct login_admission {
    struct session *s;
    const struct frontend_login *login;
    double now;
    enum limit_auth status;
    bool ran; /* a run of its own was admitted */
};

const char *session_user_for_log(const struct session *s, char *buf, size_t size)
{
    if (s->user == NULL)
        return "-";
    return log_escape(s->user, s->user_len, buf, size);
}

void session_login_drop(struct session *s)
{
    struct login_wait *lw = s->nego->login_wait;

    if (lw == NULL)
        return;
    ev_timer_stop(s->ctx->loop, &lw->retry);
    sodium_memzero(lw, sizeof(*lw));
    free(lw);
    s->nego->login_wait = NULL;
}

/*
 * The answer to a login, whichever way it came: count the user's session, or the failure
 * (whose token of the auth-failures bucket its run keeps). Returns true when the front end
 * goes on; false when the session is closing or gone.
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
    if (ok)
        metrics_add(&s->ctx->counters->metrics.auth_ok, 1);
    if (!ok) {
        char client[ADDR_STRLEN], user[SESSION_USER_LOGLEN];

        log_notice("authentication failed for user '%s' from %s",
                   session_user_for_log(s, user, sizeof(user)),
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

/* A login refused without a check: the front end's failure answer. */
static void session_login_refused(struct session *s, enum session_end why)
{
    uint8_t msg[SESSION_OUT_BUF];
    size_t len = s->fe->login_reply(false, &s->fe_state, msg, sizeof(msg));

    session_login_drop(s); /* its credentials are not needed any more */
    session_finish(s, why, msg, len);
}

/* Too many failures from this IP: refused unchecked, so guessing stalls; logged in summary. */
static void session_login_limited(struct session *s, double now)
{
    char client[ADDR_STRLEN], user[SESSION_USER_LOGLEN];
    bool first;
    unsigned n = limits_hold_auth_refused(&s->hold, now, AUTH_REFUSED_NOTE_INTERVAL, &first);

    addr_format(&s->client_addr, client, sizeof(client));
    if (first)
        log_notice("login attempts from %s are rate-limited (limit auth-failures): refusing "
                   "user '%s' unchecked (further refusals: one line per %.0f s)",
                   client, session_user_for_log(s, user, sizeof(user)), AUTH_REFUSED_NOTE_INTERVAL);
    else if (n > 0)
        log_notice("login attempts from %s are rate-limited (limit auth-failures): %u logins "
                   "refused unchecked since the last line",
                   client, n);
    session_login_refused(s, END_AUTH_LIMITED);
}

/* The process's password checks are backed up: refused at once, one line per interval. */
static void session_login_busy(struct session *s)
{
    static _Atomic unsigned refused;
    static _Atomic long long next_note_ms;
    long long now_ms = (long long)(limits_clock() * 1000), due;

    atomic_fetch_add_explicit(&refused, 1, memory_order_relaxed);
    due = atomic_load_explicit(&next_note_ms, memory_order_relaxed);
    if (now_ms >= due &&
        atomic_compare_exchange_strong(&next_note_ms, &due,
                                       now_ms + (long long)(AUTH_REFUSED_NOTE_INTERVAL * 1000))) {
        unsigned n = atomic_exchange_explicit(&refused, 0, memory_order_relaxed);

        log_warn("password checks are backed up: %u login%s refused unchecked (auth-busy); "
                 "more auth-threads, or a client guessing from many addresses?",
                 n, n == 1 ? "" : "s");
    }
    session_login_refused(s, END_AUTH_BUSY);
}

static void *login_admit_begin(void *arg)
{
    struct login_admission *a = arg;
    struct session *s = a->s;
    struct limit_auth_caps caps = {
        .rate = s->cfg->auth_failures,
        .per_client = AUTH_VERIFYING_PER_CLIENT,
        .per_user = AUTH_VERIFYING_PER_USER,
    };
    struct limit_auth_ticket *t = malloc(sizeof(*t));

    if (t == NULL) {
        a->status = LIMIT_AUTH_NOMEM;
        return NULL;
    }
    a->status =
        limits_hold_auth_begin(&s->hold, a->login->user, a->login->user_len, &caps, a->now, t);
    if (a->status != LIMIT_AUTH_OK) {
        free(t);
        return NULL;
    }
    a->ran = true;
    return t;
}

/* The run's end: a match gives the token back, a failure (or a cancelled run) keeps it. */
static void login_admit_end(void *claim, bool failed)
{
    struct limit_auth_ticket *t = claim;

    limits_auth_end(t, !failed, limits_clock());
    free(t);
}

static void on_login_retry(struct ev_loop *loop, ev_timer *w, int revents);

/* Wait for a turn (S_VERIFYING keeps the negotiation's deadline). */
static enum session_login session_login_wait(struct session *s, const struct frontend_login *login)
{
    struct login_wait *lw = s->nego->login_wait;

    if (lw == NULL) {
        lw = calloc(1, sizeof(*lw));
        if (lw == NULL) {
            session_end(s, END_RESOURCES);
            return SESSION_LOGIN_GONE;
        }
        lw->s = s;
        lw->login = *login;
        ev_timer_init(&lw->retry, on_login_retry, AUTH_RETRY_INTERVAL, 0.);
        lw->retry.data = lw;
        s->nego->login_wait = lw;
    }
    ev_timer_start(s->ctx->loop, &lw->retry);
    session_enter(s, S_VERIFYING);
    return SESSION_LOGIN_PENDING;
}

/* One try at a login: the cache, a merged run, or a run of its own if admitted. */
static enum session_login session_login_try(struct session *s, const struct frontend_login *login)
{
    struct login_admission adm = {.s = s, .login = login, .now = limits_clock()};
    struct auth_verify_admit admit = {login_admit_begin, login_admit_end, &adm};
    struct auth_verify_login check = {
        .user = login->user,
        .user_len = login->user_len,
        .password = login->pass,
        .pass_len = login->pass_len,
        .hash = auth_users_lookup(s->snap->users, login->user, login->user_len),
        .generation = s->snap->generation,
        .cache_ttl = s->cfg->auth_cache,
        .now = adm.now,
        .admit = &admit,
    };
    char client[ADDR_STRLEN], user[SESSION_USER_LOGLEN];
    enum auth_verify_status st;

    /* An empty bucket refuses even a login the cache or a merged run would answer. */
    if (!limits_hold_auth_allowed(&s->hold, &s->cfg->auth_failures, adm.now)) {
        session_login_limited(s, adm.now);
        return SESSION_LOGIN_GONE;
    }
    st = auth_verify_check(s->ctx->verifier, &check, on_auth_verified, s, &s->nego->verify);
    switch (st) {
    case AUTH_VERIFY_CACHED:
        /* A login verified a moment ago under this users file: no second Argon2id run. */
        log_debug("login of user '%s' verified from the auth cache",
                  session_user_for_log(s, user, sizeof(user)));
        return session_login_answer(s, true) ? SESSION_LOGIN_DONE : SESSION_LOGIN_GONE;
    case AUTH_VERIFY_PENDING:
        if (adm.ran)
            log_debug("checking the password of user '%s' from %s",
                      session_user_for_log(s, user, sizeof(user)),
                      addr_format(&s->client_addr, client, sizeof(client)));
        session_enter(s, S_VERIFYING);
        return SESSION_LOGIN_PENDING;
    case AUTH_VERIFY_REFUSED:
        if (adm.status == LIMIT_AUTH_BUSY)
            return session_login_wait(s, login);
        if (adm.status == LIMIT_AUTH_RATE) {
            session_login_limited(s, adm.now);
            return SESSION_LOGIN_GONE;
        }
        /* Out of memory: the same honest failure status as a pool that cannot queue. */
        session_login_refused(s, END_RESOURCES);
        return SESSION_LOGIN_GONE;
    case AUTH_VERIFY_ERROR:
        break;
    }
    if (errno == EAGAIN) {
        session_login_busy(s);
        return SESSION_LOGIN_GONE;
    }
    log_warn("cannot queue a password verification: %s", strerror(errno));
    session_login_refused(s, END_RESOURCES);
    return SESSION_LOGIN_GONE;
}

static void on_login_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct login_wait *lw = w->data;
    struct session *s = lw->s;

    switch (session_login_try(s, &lw->login)) {
    case SESSION_LOGIN_GONE:
        return; /* session_close dropped lw */
    case SESSION_LOGIN_PENDING:
        if (!ev_is_active(&lw->retry))
            session_login_drop(s); /* a run answers it now */
        return;
    case SESSION_LOGIN_DONE:
        session_login_drop(s);
        session_login_resumed(s);
        return;
    }
}

enum session_login session_login(struct session *s, const struct frontend_login *login)
{
    /* The name exactly as sent is the identity for rules, limits and the cache; only log
     * lines escape it. A name with a NUL byte cannot be a user; it still costs a check. */
    s->user = malloc(login->user_len + 1);
    if (s->user == NULL) {
        session_end(s, END_RESOURCES);
        return SESSION_LOGIN_GONE;
    }
    memcpy(s->user, login->user, login->user_len);
    s->user[login->user_len] = '\0';
    s->user_len = login->user_len;
    return session_login_try(s, login);
}
