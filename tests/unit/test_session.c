/*
 * Tests for the session state machine (src/session*.c), in process: a real struct session_ctx
 * (loop, config snapshot, resolver on a fake DNS server, auth pool, cache and verifier, relay
 * pool, UDP batch, limits) as server.c builds it, a client over a socketpair (or a loopback TCP
 * pair where the session needs an IP local address: BIND, UDP ASSOCIATE) and loopback TCP
 * targets. Only session.h and the sockets are used: the tests see what a client would see.
 * Every wait is bounded by a deadline, so a broken session fails a test instead of hanging it.
 */
#include "config.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <ev.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fakedns.h"
#include "testloop.h"
#include "ferry/addr.h"
#include "ferry/auth_cache.h"
#include "ferry/auth_pool.h"
#include "ferry/auth_users.h"
#include "ferry/auth_verify.h"
#include "ferry/conf.h"
#include "ferry/limits.h"
#include "ferry/log.h"
#include "ferry/relay.h"
#include "ferry/resolver.h"
#include "ferry/frontend.h"
#include "ferry/session.h"
#include "ferry/snapshot.h"
#include "ferry/udp.h"

/* How long a test waits for something that should happen at once. */
#define WAIT 3.0
/* The short timeouts the timeout tests configure, and the bounds they are checked against. */
#define SHORT "300ms"
#define SHORT_S 0.3

static struct ev_loop *loop;

/* ---- loop helpers ------------------------------------------------------------------------- */

static void run_once(void)
{
    testloop_run_once(loop);
}

static void run_for(double seconds)
{
    testloop_run_for(loop, seconds);
}

/* ---- the fake DNS server ------------------------------------------------------------------ */

static const struct fakedns_name zone[] = {
    {.name = "echo.test", .ttl = 300, .a = {"127.0.0.1"}},
    {.name = "slow.test", .drop = true},
};

static struct fakedns dns;

/* ---- the echo target: a loopback TCP listener that echoes and records what it got -------- */

#define MAX_PEERS 8

struct peer {
    int fd;
    ev_io io;
    size_t got;
    uint8_t data[8192]; /* the first bytes received */
    bool eof;
};

static struct {
    int fd;
    ev_io io;
    uint16_t port;
    unsigned accepted;
    struct peer peers[MAX_PEERS];
} echo;

static void on_peer_readable(struct ev_loop *l, ev_io *w, int revents)
{
    struct peer *p = w->data;
    uint8_t buf[4096];
    ssize_t n = recv(p->fd, buf, sizeof(buf), 0);

    (void)revents;
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        p->eof = true;
        ev_io_stop(l, w);
        close(p->fd);
        p->fd = -1;
        return;
    }
    if (p->got < sizeof(p->data)) {
        size_t keep = (size_t)n < sizeof(p->data) - p->got ? (size_t)n : sizeof(p->data) - p->got;
        memcpy(p->data + p->got, buf, keep);
    }
    p->got += (size_t)n;
    (void)send(p->fd, buf, (size_t)n, MSG_NOSIGNAL);
}

static void on_echo_accept(struct ev_loop *l, ev_io *w, int revents)
{
    int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    struct peer *p;

    (void)revents;
    if (fd < 0)
        return;
    if (echo.accepted == MAX_PEERS) {
        close(fd);
        return;
    }
    p = &echo.peers[echo.accepted++];
    p->fd = fd;
    ev_io_init(&p->io, on_peer_readable, fd, EV_READ);
    p->io.data = p;
    ev_io_start(l, &p->io);
}

/* A TCP socket bound to 127.0.0.1 (ephemeral port), listening with `backlog` unless < 0. */
static int loopback_socket(int backlog, uint16_t *port)
{
    struct sockaddr_in sin;
    socklen_t slen = sizeof(sin);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    ck_assert_int_ge(fd, 0);
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &slen), 0);
    if (backlog >= 0)
        ck_assert_int_eq(listen(fd, backlog), 0);
    *port = ntohs(sin.sin_port);
    return fd;
}

static void echo_start(void)
{
    memset(&echo, 0, sizeof(echo));
    echo.fd = loopback_socket(16, &echo.port);
    ev_io_init(&echo.io, on_echo_accept, echo.fd, EV_READ);
    ev_io_start(loop, &echo.io);
}

static void echo_stop(void)
{
    ev_io_stop(loop, &echo.io);
    close(echo.fd);
    for (unsigned i = 0; i < echo.accepted; i++) {
        if (echo.peers[i].fd >= 0) {
            ev_io_stop(loop, &echo.peers[i].io);
            close(echo.peers[i].fd);
        }
    }
}

/* ---- file descriptors a test opened, closed by the teardown ------------------------------ */

#define MAX_FDS 16

static int fds[MAX_FDS];
static size_t nfds;

static int keep_fd(int fd)
{
    ck_assert_int_ge(fd, 0);
    ck_assert_uint_lt(nfds, MAX_FDS);
    fds[nfds++] = fd;
    return fd;
}

/* Close a kept fd now (the client hangs up). */
static void close_fd(int fd)
{
    for (size_t i = 0; i < nfds; i++) {
        if (fds[i] == fd) {
            close(fd);
            fds[i] = -1;
            return;
        }
    }
    ck_abort_msg("fd %d is not one of the test's", fd);
}

/* ---- the session context, built as server.c builds it ------------------------------------ */

static struct limits *limits;
static struct auth_cache *auth_cache;
static struct session_counters counters;
static struct session_ctx ctx;

/* alice:secret, hashed with the smallest Argon2id costs so that verification is quick. */
static const char *users_text(void)
{
    static char text[64 + crypto_pwhash_STRBYTES];
    char hash[crypto_pwhash_STRBYTES];

    if (text[0] == '\0') {
        ck_assert_int_eq(crypto_pwhash_str(hash, "secret", 6, crypto_pwhash_OPSLIMIT_MIN,
                                           crypto_pwhash_MEMLIMIT_MIN),
                         0);
        snprintf(text, sizeof(text), "alice:%s\n", hash);
    }
    return text;
}

/* A snapshot of the configuration `extra` (ferryd.conf lines), with the fake DNS as resolver. */
static struct snapshot *snapshot_from(const char *extra)
{
    struct snapshot *snap = calloc(1, sizeof(*snap));
    char text[2048], err[256] = "";

    ck_assert_ptr_nonnull(snap);
    /* The clients here are loopback, and so are the origins: trusted even with passwords. */
    snprintf(text, sizeof(text),
             "resolver %s\nresolver-timeout 5s\nresolver-tries 1\nauth-threads 1\n%s%s\n",
             dns.servers, strstr(extra, "trusted-clients") ? "" : "trusted-clients 127.0.0.0/8\n",
             extra);
    ck_assert_msg(conf_parse(&snap->config, text, "test.conf", err, sizeof(err)) == 0, "%s", err);
    if (snapshot_uses_passwords(&snap->config)) {
        snap->users = auth_users_parse(users_text(), "users", err, sizeof(err));
        ck_assert_msg(snap->users != NULL, "%s", err);
    }
    atomic_init(&snap->refs, 1);
    snap->generation = 1;
    return snap;
}

/* Build the context for a configuration (once per test, after setup). */
static void ctx_start(const char *extra)
{
    const struct config *cfg;
    struct resolver_options ropt = {.cache_size = 64, .negative_ttl = 5, .max_ttl = 3600};
    char err[256] = "";

    ctx.snap = snapshot_from(extra);
    cfg = &ctx.snap->config;
    ropt.servers = cfg->resolver_servers;
    ropt.nservers = cfg->nresolver_servers;
    ropt.timeout = cfg->resolver_timeout;
    ropt.tries = cfg->resolver_tries;
    ctx.resolver = resolver_new(loop, &ropt, err, sizeof(err));
    ck_assert_msg(ctx.resolver != NULL, "resolver_new: %s", err);
    ctx.relay_pool = relay_pool_new(loop);
    ctx.udp_batch = udp_batch_new();
    ctx.auth_pool = auth_pool_new(loop, cfg->auth_threads);
    ck_assert_ptr_nonnull(ctx.relay_pool);
    ck_assert_ptr_nonnull(ctx.udp_batch);
    ck_assert_ptr_nonnull(ctx.auth_pool);
    ctx.verifier = auth_verify_new(ctx.auth_pool, ctx.auth_cache);
    ck_assert_ptr_nonnull(ctx.verifier);
}

/* Free the context as server_free does, sessions first. */
static void ctx_stop(void)
{
    session_close_all(&ctx);
    auth_verify_free(ctx.verifier);
    if (ctx.auth_pool != NULL)
        auth_pool_free(ctx.auth_pool);
    if (ctx.resolver != NULL)
        resolver_free(ctx.resolver);
    relay_pool_free(ctx.relay_pool);
    udp_batch_free(ctx.udp_batch);
    snapshot_unref(ctx.snap);
}

static void setup(void)
{
    ck_assert_int_ge(sodium_init(), 0);
    loop = ev_loop_new(EVFLAG_AUTO);
    ck_assert_ptr_nonnull(loop);
    ck_assert_int_eq(fakedns_start(&dns, loop, zone, sizeof(zone) / sizeof(zone[0])), 0);
    echo_start();
    nfds = 0;
    limits = limits_new(64);
    auth_cache = auth_cache_new(64);
    ck_assert_ptr_nonnull(limits);
    ck_assert_ptr_nonnull(auth_cache);
    memset(&counters, 0, sizeof(counters));
    memset(&ctx, 0, sizeof(ctx));
    ctx.loop = loop;
    ctx.limits = limits;
    ctx.auth_cache = auth_cache;
    ctx.counters = &counters;
}

static void teardown(void)
{
    if (ctx.snap != NULL)
        ctx_stop();
    ck_assert_uint_eq(atomic_load(&counters.live), 0);
    for (size_t i = 0; i < nfds; i++) {
        if (fds[i] >= 0)
            close(fds[i]);
    }
    nfds = 0;
    limits_free(limits);
    auth_cache_free(auth_cache);
    echo_stop();
    fakedns_stop(&dns);
    ev_loop_destroy(loop);
    loop = NULL;
}

/* ---- clients ------------------------------------------------------------------------------ */

/*
 * A session for the server end of a connected pair, as accept_client starts one. The loop's
 * clock is brought up to date first, as it is in an accept callback: the session's timers
 * count from it, and setting up a test (more so under valgrind) can take longer than they run.
 */
static void session_begin(int server_fd, const struct addr *client)
{
    struct limit *e = limits_client(limits, client);

    ck_assert_ptr_nonnull(e);
    ev_now_update(loop);
    session_start(&ctx, server_fd, client, NULL, FRONTEND_ALL, e);
}

/* A socketpair; *client gets the client's end (kept), the other end is returned. */
static int unix_pair(int *client)
{
    int sv[2];

    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    *client = keep_fd(sv[0]);
    return sv[1];
}

/* A client on a socketpair, its session started; it claims to be 127.0.0.1:40000. */
static int client_unix(void)
{
    struct addr from;
    int client, server_fd = unix_pair(&client);

    ck_assert_int_eq(addr_parse("127.0.0.1", 40000, &from), 0);
    addr_set_port(&from, 40000);
    session_begin(server_fd, &from);
    return client;
}

/* A client over loopback TCP, its session started with the real peer address. */
static int client_tcp(void)
{
    uint16_t port;
    int lfd = loopback_socket(4, &port);
    int client = keep_fd(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    struct sockaddr_in sin;
    struct pollfd pfd = {.fd = lfd, .events = POLLIN};
    struct addr peer;
    int server_fd;

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin.sin_port = htons(port);
    ck_assert(connect(client, (struct sockaddr *)&sin, sizeof(sin)) == 0 || errno == EINPROGRESS);
    ck_assert_int_eq(poll(&pfd, 1, 2000), 1);
    peer.len = sizeof(peer.u);
    server_fd = accept4(lfd, &peer.u.sa, &peer.len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    ck_assert_int_ge(server_fd, 0);
    close(lfd);
    session_begin(server_fd, &peer);
    return client;
}

static void client_send(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    double until = ev_time() + WAIT;

    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0) {
            ck_assert_msg(errno == EAGAIN || errno == EINTR, "send: %s", strerror(errno));
            ck_assert_msg(ev_time() < until, "send: the session does not read");
            run_once();
            continue;
        }
        p += n;
        len -= (size_t)n;
    }
}

/*
 * Read up to len bytes, running the loop meanwhile, until len are in, EOF, an error or `limit`
 * seconds. Returns the count read; *end gets 0 (all in), 1 (EOF), -errno, or 2 (time out).
 */
static size_t client_read(int fd, uint8_t *buf, size_t len, double limit, int *end)
{
    double until = ev_time() + limit;
    size_t got = 0;

    *end = 0;
    while (got < len) {
        ssize_t n = recv(fd, buf + got, len - got, 0);
        if (n > 0) {
            got += (size_t)n;
            continue;
        }
        if (n == 0) {
            *end = 1;
            break;
        }
        if (errno != EAGAIN && errno != EINTR) {
            *end = -errno;
            break;
        }
        if (ev_time() >= until) {
            *end = 2;
            break;
        }
        run_once();
    }
    return got;
}

/* Read exactly len bytes and compare them with want. */
static void client_expect(int fd, const void *want, size_t len)
{
    uint8_t buf[512];
    int end;
    size_t got;

    ck_assert_uint_le(len, sizeof(buf));
    got = client_read(fd, buf, len, WAIT, &end);
    ck_assert_msg(got == len, "got %zu of %zu bytes (end %d)", got, len, end);
    ck_assert_msg(memcmp(buf, want, len) == 0, "unexpected bytes from the session");
}

/* Read a 10-byte SOCKS5 reply with an IPv4 address; returns REP, *bound gets BND.ADDR:PORT. */
static uint8_t client_reply5(int fd, struct sockaddr_in *bound)
{
    uint8_t r[10];
    int end;
    size_t got = client_read(fd, r, sizeof(r), WAIT, &end);

    ck_assert_msg(got == sizeof(r), "reply: got %zu bytes (end %d)", got, end);
    ck_assert_uint_eq(r[0], 5);
    ck_assert_uint_eq(r[2], 0);
    ck_assert_uint_eq(r[3], 1);
    if (bound != NULL) {
        memset(bound, 0, sizeof(*bound));
        bound->sin_family = AF_INET;
        memcpy(&bound->sin_addr, r + 4, 4);
        memcpy(&bound->sin_port, r + 8, 2);
    }
    return r[1];
}

/* Wait for the session to close the connection: 1 for EOF, -errno, or 2 for none in `limit`. */
static int client_wait_eof(int fd, double limit)
{
    uint8_t buf[64];
    int end;
    size_t got = client_read(fd, buf, sizeof(buf), limit, &end);

    ck_assert_msg(got == 0, "%zu unexpected bytes before the end", got);
    return end;
}

/* Nothing to read yet (the session has not answered a partial message). */
static void client_expect_nothing(int fd)
{
    uint8_t b;

    ck_assert_int_eq(recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT), -1);
    ck_assert(errno == EAGAIN || errno == EWOULDBLOCK);
}

/* Send bytes and expect the echo target to send them back through the session. */
static void client_echo(int fd, const char *text)
{
    client_send(fd, text, strlen(text));
    client_expect(fd, text, strlen(text));
}

static unsigned live(void)
{
    return atomic_load(&counters.live);
}

/* ---- SOCKS messages ----------------------------------------------------------------------- */

static const uint8_t greeting_noauth[] = {5, 1, 0};
static const uint8_t greeting_password[] = {5, 1, 2};
static const uint8_t method_noauth[] = {5, 0};
static const uint8_t method_password[] = {5, 2};
static const uint8_t auth_ok[] = {1, 0};
static const uint8_t auth_fail[] = {1, 1};

/* RFC 1929 request for alice with password pass; returns its length. */
static size_t userpass(uint8_t *out, const char *pass)
{
    size_t plen = strlen(pass);

    out[0] = 1;
    out[1] = 5;
    memcpy(out + 2, "alice", 5);
    out[7] = (uint8_t)plen;
    memcpy(out + 8, pass, plen);
    return 8 + plen;
}

/* A SOCKS5 request for 127.0.0.1:port (cmd 1 CONNECT, 2 BIND, 3 UDP ASSOCIATE). */
static size_t request_ip(uint8_t *out, uint8_t cmd, const char *ip, uint16_t port)
{
    out[0] = 5;
    out[1] = cmd;
    out[2] = 0;
    out[3] = 1;
    ck_assert_int_eq(inet_pton(AF_INET, ip, out + 4), 1);
    out[8] = (uint8_t)(port >> 8);
    out[9] = (uint8_t)port;
    return 10;
}

/* A SOCKS5 CONNECT for name:port. */
static size_t request_name(uint8_t *out, const char *name, uint16_t port)
{
    size_t n = strlen(name);

    out[0] = 5;
    out[1] = 1;
    out[2] = 0;
    out[3] = 3;
    out[4] = (uint8_t)n;
    memcpy(out + 5, name, n);
    out[5 + n] = (uint8_t)(port >> 8);
    out[6 + n] = (uint8_t)port;
    return 7 + n;
}

/* Append src to a message being built. */
static size_t put(uint8_t *out, size_t len, const void *src, size_t n)
{
    memcpy(out + len, src, n);
    return len + n;
}

/* ---- negotiation split and pipelined ------------------------------------------------------ */

/* Send a message one byte at a time: no answer may come before its last byte. */
static void send_bytewise(int fd, const uint8_t *msg, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        client_send(fd, msg + i, 1);
        run_once();
        if (i + 1 < len)
            client_expect_nothing(fd);
    }
}

START_TEST(test_greeting_auth_and_request_split_byte_by_byte_still_get_each_reply_and_relay)
{
    uint8_t auth[64], req[16];
    size_t alen = userpass(auth, "secret");
    size_t rlen = request_ip(req, 1, "127.0.0.1", echo.port);
    struct sockaddr_in bound;
    int c;

    ctx_start("auth password\nusers /dev/null");
    c = client_unix();
    send_bytewise(c, greeting_password, sizeof(greeting_password));
    client_expect(c, method_password, sizeof(method_password));
    send_bytewise(c, auth, alen);
    client_expect(c, auth_ok, sizeof(auth_ok));
    send_bytewise(c, req, rlen);
    ck_assert_uint_eq(client_reply5(c, &bound), 0);
    ck_assert_uint_eq(ntohl(bound.sin_addr.s_addr), INADDR_LOOPBACK);
    ck_assert_uint_ne(bound.sin_port, 0);

    client_echo(c, "up and back");
    RUN_UNTIL(echo.accepted == 1 && echo.peers[0].got == 11, WAIT);
    ck_assert_uint_eq(echo.accepted, 1);
    ck_assert_mem_eq(echo.peers[0].data, "up and back", 11);
    ck_assert_uint_eq(live(), 1);
}
END_TEST

START_TEST(test_pipelined_greeting_auth_request_and_data_get_replies_in_order_and_data_arrives)
{
    uint8_t msg[256], auth[64], req[16];
    size_t len = 0;
    int c;

    ctx_start("auth password\nusers /dev/null");
    len = put(msg, len, greeting_password, sizeof(greeting_password));
    len = put(msg, len, auth, userpass(auth, "secret"));
    len = put(msg, len, req, request_ip(req, 1, "127.0.0.1", echo.port));
    len = put(msg, len, "early", 5);
    c = client_unix();
    client_send(c, msg, len); /* one write */

    client_expect(c, method_password, sizeof(method_password));
    client_expect(c, auth_ok, sizeof(auth_ok));
    ck_assert_uint_eq(client_reply5(c, NULL), 0);
    client_expect(c, "early", 5); /* echoed: it reached the target */
    ck_assert_uint_eq(echo.accepted, 1);
    ck_assert_mem_eq(echo.peers[0].data, "early", 5);
    client_echo(c, "more");
}
END_TEST

/* ---- SOCKS4 and SOCKS4a ------------------------------------------------------------------- */

START_TEST(test_socks4_connect_gets_granted_reply_and_relays)
{
    uint8_t req[16] = {4, 1, (uint8_t)(echo.port >> 8), (uint8_t)echo.port, 127, 0, 0, 1, 'u', 0};
    uint8_t rep[8];
    int c, end;

    ctx_start("");
    c = client_unix();
    client_send(c, req, 10);
    ck_assert_uint_eq(client_read(c, rep, sizeof(rep), WAIT, &end), sizeof(rep));
    ck_assert_uint_eq(rep[0], 0);
    ck_assert_uint_eq(rep[1], 90); /* request granted */
    client_echo(c, "four");
    ck_assert_uint_eq(echo.accepted, 1);
}
END_TEST

START_TEST(test_socks4a_connect_resolves_name_through_dns_and_relays)
{
    uint8_t req[32] = {4, 1, (uint8_t)(echo.port >> 8), (uint8_t)echo.port, 0, 0, 0, 1, 'u', 0};
    uint8_t rep[8];
    int c, end;

    memcpy(req + 10, "echo.test", 10); /* with its NUL */
    ctx_start("");
    c = client_unix();
    client_send(c, req, 20);
    ck_assert_uint_eq(client_read(c, rep, sizeof(rep), WAIT, &end), sizeof(rep));
    ck_assert_uint_eq(rep[0], 0);
    ck_assert_uint_eq(rep[1], 90);
    ck_assert_uint_ge(fakedns_find(&dns, "echo.test")->queries_a, 1);
    client_echo(c, "four-a");
    ck_assert_uint_eq(echo.accepted, 1);
}
END_TEST

/* ---- authentication ----------------------------------------------------------------------- */

/* Greeting, alice's login and a CONNECT to the echo target, in one message. */
static size_t login_and_connect(uint8_t *msg, const char *pass)
{
    uint8_t auth[64], req[16];
    size_t len = 0;

    len = put(msg, len, greeting_password, sizeof(greeting_password));
    len = put(msg, len, auth, userpass(auth, pass));
    len = put(msg, len, req, request_ip(req, 1, "127.0.0.1", echo.port));
    return len;
}

START_TEST(test_second_login_within_auth_cache_is_answered_without_argon2_and_serves_request)
{
    uint8_t msg[256], got[4];
    size_t len = login_and_connect(msg, "secret");
    int first, second, server_fd, end;
    struct addr from;

    ctx_start("auth password\nusers /dev/null\nauth-cache 5m");
    ck_assert_int_eq(addr_parse("127.0.0.1", 40000, &from), 0);

    /* First login: written before the session starts, so session_start reads it at once. */
    server_fd = unix_pair(&first);
    client_send(first, msg, len);
    session_begin(server_fd, &from);
    ck_assert_uint_eq(auth_verify_in_flight(ctx.verifier), 1); /* an Argon2id run */
    ck_assert_uint_eq(client_read(first, got, 4, 0, &end), 2); /* only the method reply */
    client_expect(first, auth_ok, sizeof(auth_ok));
    ck_assert_uint_eq(client_reply5(first, NULL), 0);
    client_echo(first, "one");

    /* Second login: answered from the cache inside session_start, without a loop pass. */
    server_fd = unix_pair(&second);
    client_send(second, msg, len);
    client_send(second, "two", 3);
    session_begin(server_fd, &from);
    ck_assert_uint_eq(auth_verify_in_flight(ctx.verifier), 0);
    ck_assert_uint_eq(client_read(second, got, 4, 0, &end), 4);
    ck_assert_mem_eq(got, "\x05\x02\x01\x00", 4);
    ck_assert_uint_eq(client_reply5(second, NULL), 0);
    client_expect(second, "two", 3);
    client_echo(second, "three");
    ck_assert_uint_eq(echo.accepted, 2);
    ck_assert_uint_eq(live(), 2);
}
END_TEST

START_TEST(test_wrong_password_gets_auth_failure_then_eof_and_is_counted)
{
    uint8_t msg[256];
    size_t len = login_and_connect(msg, "guess");
    int c;

    ctx_start("auth password\nusers /dev/null");
    c = client_unix();
    client_send(c, msg, len);
    client_expect(c, method_password, sizeof(method_password));
    client_expect(c, auth_fail, sizeof(auth_fail));
    ck_assert_int_eq(client_wait_eof(c, WAIT), 1);
    ck_assert_uint_eq(echo.accepted, 0); /* the pipelined request was not served */
    close_fd(c);
    RUN_UNTIL(live() == 0, WAIT);
    ck_assert_uint_eq(live(), 0);
    ck_assert_uint_eq(atomic_load(&counters.sessions), 1);
    /* No SOCKS reply was sent: an auth failure is not a failed request. */
    ck_assert_uint_eq(atomic_load(&counters.failed), 0);
    ck_assert_uint_eq(atomic_load(&counters.refused), 0);
    ck_assert_uint_eq(atomic_load(&counters.up), 0);
}
END_TEST

/* ---- linger after a failure reply --------------------------------------------------------- */

START_TEST(test_refused_connect_reply_is_readable_then_fin_not_reset_despite_unread_bytes)
{
    uint8_t msg[6000], req[16];
    uint16_t closed_port;
    int closed = keep_fd(loopback_socket(-1, &closed_port)); /* bound, not listening */
    size_t len = 0;
    int c;

    (void)closed;
    ctx_start("");
    c = client_tcp();
    len = put(msg, len, greeting_noauth, sizeof(greeting_noauth));
    len = put(msg, len, req, request_ip(req, 1, "127.0.0.1", closed_port));
    /* More than the session reads while negotiating: some stays unread in its socket. */
    memset(msg + len, 'x', 4000);
    len += 4000;
    client_send(c, msg, len);

    client_expect(c, method_noauth, sizeof(method_noauth));
    ck_assert_uint_eq(client_reply5(c, NULL), 5);  /* connection refused */
    ck_assert_int_eq(client_wait_eof(c, WAIT), 1); /* FIN, not ECONNRESET */
    /* The session still reads and drops what the client sends until the client closes. */
    client_send(c, msg, 1000);
    run_for(0.05);
    ck_assert_uint_eq(live(), 1);
    close_fd(c);
    RUN_UNTIL(live() == 0, WAIT);
    ck_assert_uint_eq(live(), 0);
    ck_assert_uint_eq(atomic_load(&counters.failed), 1);
}
END_TEST

START_TEST(test_blocked_request_gets_0x02_then_eof_and_counts_refused)
{
    uint8_t msg[4096], req[16];
    size_t len = 0;
    int c;

    ctx_start("request block");
    c = client_unix();
    len = put(msg, len, greeting_noauth, sizeof(greeting_noauth));
    len = put(msg, len, req, request_ip(req, 1, "127.0.0.1", echo.port));
    memset(msg + len, 'x', 3000);
    len += 3000;
    client_send(c, msg, len);
    client_expect(c, method_noauth, sizeof(method_noauth));
    ck_assert_uint_eq(client_reply5(c, NULL), 2); /* not allowed by ruleset */
    ck_assert_int_eq(client_wait_eof(c, WAIT), 1);
    ck_assert_uint_eq(echo.accepted, 0);
    close_fd(c);
    RUN_UNTIL(live() == 0, WAIT);
    ck_assert_uint_eq(atomic_load(&counters.refused), 1);
    ck_assert_uint_eq(atomic_load(&counters.failed), 0);
}
END_TEST

/* ---- the timer of each state -------------------------------------------------------------- */

/* The session closes the connection without a further byte, SHORT_S after `start`. */
static void expect_closed_after_timeout(int c, double start)
{
    ck_assert_int_eq(client_wait_eof(c, WAIT), 1);
    ck_assert_double_ge(ev_time() - start, SHORT_S - 0.01);
    ck_assert_double_lt(ev_time() - start, SHORT_S + 1.5);
}

START_TEST(test_half_greeting_is_closed_at_negotiate_timeout)
{
    double start;
    int c;

    ctx_start("timeout negotiate " SHORT);
    start = ev_time();
    c = client_unix();
    client_send(c, "\x05\x02\x00", 3); /* two methods announced, one sent */
    expect_closed_after_timeout(c, start);
    RUN_UNTIL(live() == 0, WAIT);
    ck_assert_uint_eq(live(), 0);
    ck_assert_uint_eq(atomic_load(&counters.sessions), 1);
}
END_TEST

START_TEST(test_half_auth_is_closed_at_negotiate_timeout)
{
    uint8_t auth[64];
    double start;
    int c;

    ctx_start("auth password\nusers /dev/null\ntimeout negotiate " SHORT);
    userpass(auth, "secret");
    start = ev_time();
    c = client_unix();
    client_send(c, greeting_password, sizeof(greeting_password));
    client_expect(c, method_password, sizeof(method_password));
    client_send(c, auth, 9); /* user, and one byte of the password */
    expect_closed_after_timeout(c, start);
    ck_assert_uint_eq(auth_verify_in_flight(ctx.verifier), 0);
    RUN_UNTIL(live() == 0, WAIT);
    ck_assert_uint_eq(live(), 0);
}
END_TEST

/* reply.c maps RESOLVER_TIMEOUT to 0x04, host unreachable (ferryd.conf(5), timeout resolve). */
START_TEST(test_unanswered_dns_gets_0x04_at_resolve_timeout)
{
    uint8_t msg[64], req[32];
    size_t len = 0;
    double start;
    int c;

    ctx_start("timeout resolve " SHORT); /* resolver-timeout is 5 s: the session's timer */
    len = put(msg, len, greeting_noauth, sizeof(greeting_noauth));
    len = put(msg, len, req, request_name(req, "slow.test", 80));
    start = ev_time();
    c = client_unix();
    client_send(c, msg, len);
    client_expect(c, method_noauth, sizeof(method_noauth));
    ck_assert_uint_eq(client_reply5(c, NULL), 4);
    ck_assert_double_ge(ev_time() - start, SHORT_S - 0.01);
    ck_assert_double_lt(ev_time() - start, SHORT_S + 1.5);
    ck_assert_uint_ge(fakedns_find(&dns, "slow.test")->queries, 1);
    ck_assert_int_eq(client_wait_eof(c, WAIT), 1);
}
END_TEST

/*
 * A listener with backlog 0 and a full accept queue drops further SYNs (Linux: the accept
 * queue check in tcp_conn_request), so a connect to it neither succeeds nor fails for a second.
 */
START_TEST(test_connect_to_silent_target_gets_0x06_at_connect_timeout)
{
    uint16_t port;
    int full = keep_fd(loopback_socket(0, &port));
    uint8_t msg[64], req[16];
    struct sockaddr_in sin;
    size_t len = 0;
    double start;
    int c;

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin.sin_port = htons(port);
    for (int i = 0; i < 2; i++) {
        int filler = keep_fd(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
        ck_assert(connect(filler, (struct sockaddr *)&sin, sizeof(sin)) == 0 ||
                  errno == EINPROGRESS);
    }
    usleep(50000);
    (void)full;

    ctx_start("timeout connect " SHORT);
    len = put(msg, len, greeting_noauth, sizeof(greeting_noauth));
    len = put(msg, len, req, request_ip(req, 1, "127.0.0.1", port));
    start = ev_time();
    c = client_unix();
    client_send(c, msg, len);
    client_expect(c, method_noauth, sizeof(method_noauth));
    ck_assert_uint_eq(client_reply5(c, NULL), 6); /* TTL expired */
    ck_assert_double_ge(ev_time() - start, SHORT_S - 0.01);
    ck_assert_double_lt(ev_time() - start, SHORT_S + 1.5);
    ck_assert_int_eq(client_wait_eof(c, WAIT), 1);
}
END_TEST

START_TEST(test_bind_without_peer_gets_success_then_0x06_at_bind_timeout)
{
    uint8_t msg[64], req[16];
    struct sockaddr_in bound;
    size_t len = 0;
    double start;
    int c;

    ctx_start("timeout bind " SHORT);
    len = put(msg, len, greeting_noauth, sizeof(greeting_noauth));
    len = put(msg, len, req, request_ip(req, 2, "127.0.0.1", 9));
    c = client_tcp();
    start = ev_time(); /* before the request: the timer cannot have started earlier */
    client_send(c, msg, len);
    client_expect(c, method_noauth, sizeof(method_noauth));
    ck_assert_uint_eq(client_reply5(c, &bound), 0); /* listening */
    ck_assert_uint_eq(ntohl(bound.sin_addr.s_addr), INADDR_LOOPBACK);
    ck_assert_uint_ne(bound.sin_port, 0);
    ck_assert_uint_eq(client_reply5(c, NULL), 6); /* no peer came */
    ck_assert_double_ge(ev_time() - start, SHORT_S - 0.01);
    ck_assert_double_lt(ev_time() - start, SHORT_S + 1.5);
    ck_assert_int_eq(client_wait_eof(c, WAIT), 1);
}
END_TEST

START_TEST(test_udp_associate_without_datagrams_is_closed_at_udp_timeout)
{
    uint8_t msg[64], req[16];
    struct sockaddr_in bound;
    size_t len = 0;
    double start;
    int c;

    ctx_start("timeout udp " SHORT);
    len = put(msg, len, greeting_noauth, sizeof(greeting_noauth));
    len = put(msg, len, req, request_ip(req, 3, "0.0.0.0", 0));
    c = client_tcp();
    start = ev_time();
    client_send(c, msg, len);
    client_expect(c, method_noauth, sizeof(method_noauth));
    ck_assert_uint_eq(client_reply5(c, &bound), 0);
    ck_assert_uint_eq(ntohl(bound.sin_addr.s_addr), INADDR_LOOPBACK);
    ck_assert_uint_ne(bound.sin_port, 0);
    expect_closed_after_timeout(c, start);
    RUN_UNTIL(live() == 0, WAIT);
    ck_assert_uint_eq(live(), 0);
}
END_TEST

START_TEST(test_relay_without_bytes_is_closed_at_idle_timeout)
{
    uint8_t msg[64], req[16];
    size_t len = 0;
    double start;
    int c;

    ctx_start("timeout idle " SHORT);
    len = put(msg, len, greeting_noauth, sizeof(greeting_noauth));
    len = put(msg, len, req, request_ip(req, 1, "127.0.0.1", echo.port));
    c = client_unix();
    start = ev_time();
    client_send(c, msg, len);
    client_expect(c, method_noauth, sizeof(method_noauth));
    ck_assert_uint_eq(client_reply5(c, NULL), 0);
    expect_closed_after_timeout(c, start);
    RUN_UNTIL(echo.accepted == 1 && echo.peers[0].eof, WAIT);
    ck_assert(echo.peers[0].eof);
    ck_assert_uint_eq(live(), 0);
}
END_TEST

/* ---- shutdown ----------------------------------------------------------------------------- */

START_TEST(test_close_all_ends_every_session_in_every_state)
{
    uint8_t msg[256], req[32];
    size_t len;
    int c[4];

    ctx_start("auth none password\nusers /dev/null");
    c[0] = client_unix();
    client_send(c[0], "\x05", 1); /* S_WAIT_GREETING */

    c[1] = client_unix(); /* S_RELAY */
    len = put(msg, 0, greeting_noauth, sizeof(greeting_noauth));
    len = put(msg, len, req, request_ip(req, 1, "127.0.0.1", echo.port));
    client_send(c[1], msg, len);
    client_expect(c[1], method_noauth, sizeof(method_noauth));
    ck_assert_uint_eq(client_reply5(c[1], NULL), 0);

    c[2] = client_unix(); /* S_RESOLVING */
    len = put(msg, 0, greeting_noauth, sizeof(greeting_noauth));
    len = put(msg, len, req, request_name(req, "slow.test", 80));
    client_send(c[2], msg, len);
    client_expect(c[2], method_noauth, sizeof(method_noauth));

    c[3] = client_unix(); /* S_VERIFYING or past it */
    client_send(c[3], msg, login_and_connect(msg, "secret"));
    client_expect(c[3], method_password, sizeof(method_password));

    run_for(0.02);
    ck_assert_uint_eq(live(), 4);
    session_close_all(&ctx);
    ck_assert_uint_eq(live(), 0);
    ck_assert_uint_eq(atomic_load(&counters.sessions), 4);
    for (int i = 0; i < 4; i++) {
        uint8_t buf[64];
        int end;

        (void)client_read(c[i], buf, sizeof(buf), WAIT, &end);
        ck_assert_msg(end == 1, "client %d: end %d", i, end);
    }
    RUN_UNTIL(echo.peers[0].eof, WAIT);
    ck_assert(echo.peers[0].eof);
}
END_TEST

static Suite *session_suite(void)
{
    Suite *s = suite_create("session");
    TCase *tc = tcase_create("loopback");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 10);
    tcase_add_test(
        tc, test_greeting_auth_and_request_split_byte_by_byte_still_get_each_reply_and_relay);
    tcase_add_test(
        tc, test_pipelined_greeting_auth_request_and_data_get_replies_in_order_and_data_arrives);
    tcase_add_test(tc, test_socks4_connect_gets_granted_reply_and_relays);
    tcase_add_test(tc, test_socks4a_connect_resolves_name_through_dns_and_relays);
    tcase_add_test(
        tc, test_second_login_within_auth_cache_is_answered_without_argon2_and_serves_request);
    tcase_add_test(tc, test_wrong_password_gets_auth_failure_then_eof_and_is_counted);
    tcase_add_test(tc,
                   test_refused_connect_reply_is_readable_then_fin_not_reset_despite_unread_bytes);
    tcase_add_test(tc, test_blocked_request_gets_0x02_then_eof_and_counts_refused);
    tcase_add_test(tc, test_half_greeting_is_closed_at_negotiate_timeout);
    tcase_add_test(tc, test_half_auth_is_closed_at_negotiate_timeout);
    tcase_add_test(tc, test_unanswered_dns_gets_0x04_at_resolve_timeout);
    tcase_add_test(tc, test_connect_to_silent_target_gets_0x06_at_connect_timeout);
    tcase_add_test(tc, test_bind_without_peer_gets_success_then_0x06_at_bind_timeout);
    tcase_add_test(tc, test_udp_associate_without_datagrams_is_closed_at_udp_timeout);
    tcase_add_test(tc, test_relay_without_bytes_is_closed_at_idle_timeout);
    tcase_add_test(tc, test_close_all_ends_every_session_in_every_state);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(session_suite());
    int failed;

    /* The daemon ignores SIGPIPE (main.c); a test must not die of a client that went away. */
    signal(SIGPIPE, SIG_IGN);
    log_set_level(getenv("TEST_SESSION_DEBUG") != NULL ? LOG_DEBUG : LOG_INFO);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
