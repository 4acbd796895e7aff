/*
 * The commands besides CONNECT: BIND (RFC 1928 section 4: two replies), UDP ASSOCIATE
 * (section 7: an association that lives as long as the control connection) and Tor's RESOLVE
 * and RESOLVE_PTR (one answer, then close).
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#include <sodium.h>

#include "ferry/acl.h"
#include "ferry/binder.h"
#include "ferry/conf.h"
#include "ferry/log.h"
#include "ferry/net.h"
#include "ferry/reply.h"
#include "ferry/resolver.h"
#include "ferry/socks5.h"
#include "ferry/tunnel_udp.h"
#include "ferry/udp.h"
#include "session_int.h"

/* --- BIND -------------------------------------------------------------------------------- */

static void on_bind_accepted(int fd, int err, const struct addr *peer, void *arg)
{
    struct session *s = arg;

    s->nego->binder = NULL;
    if (fd < 0) {
        log_debug("bind: accept failed: %s", strerror(err));
        session_fail(s, reply_from_errno(err));
        return;
    }
    s->target_fd = fd;
    s->target_addr = *peer;
    /* Second reply: the peer that connected (RFC 1928 section 4, BIND). */
    session_reply_then_relay(s, peer);
}

/*
 * BIND: listen on the address we would use to reach the expected peer, tell the client where
 * (first reply), and wait for that peer. A peer of 0.0.0.0 or :: means any.
 */
void session_bind(struct session *s, const struct addr *peers, size_t n)
{
    const struct config *cfg = s->cfg;
    struct addr local, bound, shown;
    bool unspecified = n == 0 || addr_is_unspecified(&peers[0]);
    bool any = cfg->bind_any_peer || unspecified;

    if (unspecified || net_route_source(&peers[0], &local) < 0) {
        if (session_local_addr(s, &local) < 0) {
            session_fail(s, reply_from_errno(errno));
            return;
        }
    }
    if (s->fe->bind_local != NULL)
        s->fe->bind_local(&local);
    s->nego->binder = binder_start(s->ctx->loop, &local, cfg->bind_port_min, cfg->bind_port_max,
                                   any ? NULL : peers, any ? 0 : n, on_bind_accepted, s, &bound);
    if (s->nego->binder == NULL) {
        log_warn("bind: cannot listen: %s", strerror(errno));
        session_fail(s, reply_from_errno(errno));
        return;
    }
    s->target_addr = bound;
    shown = session_advertised(s, &bound);
    if (session_reply(s, SOCKS5_REP_SUCCEEDED, &shown.u.sa) < 0) {
        session_end(s, END_CLIENT_ERROR);
        return;
    }
    session_enter(s, S_BIND_WAIT);
}

/* --- UDP ASSOCIATE ----------------------------------------------------------------------- */

/* The per-datagram policy of a UDP association (udp.h): name first, then each address. */
static bool session_udp_policy(void *arg, const char *name, const struct addr *to, uint16_t port)
{
    const struct session *s = arg;
    struct acl_request req = {
        .client = &s->client_addr,
        .user = s->user,
        .command = ACL_CMD_UDP,
        .name = name,
        .dest = to,
        .port = port,
    };
    struct policy_decision d = policy_check_request(s->cfg, s->ctx->local, &req);

    /* Rules marked 'log' are not logged per datagram: the access line counts what was blocked. */
    if (to == NULL && s->nego->udp_upstream)
        return d.verdict == ACL_VERDICT_PASS; /* the name goes on unresolved: it must decide */
    if (to == NULL)
        return d.verdict != ACL_VERDICT_BLOCK;
    return d.verdict == ACL_VERDICT_PASS;
}

/* UDP ASSOCIATE (RFC 1928 section 7): open the association and tell the client where to send. */
/* The parent's control connection ended or failed: so does the association. */
static void on_upstream_control(struct ev_loop *loop, ev_io *w, int revents)
{
    struct session *s = w->data;
    uint8_t sink[64];
    ssize_t n = recv(s->target_fd, sink, sizeof(sink), 0);

    (void)loop;
    (void)revents;
    if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)))
        return;
    log_debug("udp: the parent closed the association's control connection");
    session_end(s, n == 0 ? END_DONE : END_TARGET_ERROR);
}

void session_udp(struct session *s, const struct addr *upstream,
                 const struct tunnel_udp_grant *sealed)
{
    struct session_ctx *ctx = s->ctx;
    const struct config *cfg = s->cfg;
    const struct socks_dest *asked = &s->nego->req.dest;
    struct udp_assoc_params p = {
        .loop = ctx->loop,
        .resolver = ctx->resolver,
        .batch = ctx->udp_batch,
        .client = s->client_addr,
        .port_min = cfg->udp_port_min,
        .port_max = cfg->udp_port_max,
        .filter = cfg->udp_filter,
        .policy = session_udp_policy,
        .policy_arg = s,
    };
    struct addr shown;
    struct tunnel_udp_grant grant;
    uint8_t wire[TUNNEL_UDP_GRANT_LEN];
    int sent;

    if (!limits_hold_udp(&s->hold, cfg->udp_max_total, cfg->udp_max_per_client)) {
        log_notice("udp: association limit reached (max-total %u, max-per-client %u)",
                   cfg->udp_max_total, cfg->udp_max_per_client);
        session_fail(s, SOCKS5_REP_GENERAL_FAILURE);
        return;
    }
    /*
     * Datagrams are taken only from the control connection's IP, whatever DST.ADDR says. A
     * DST.PORT other than 0 is the port the client will send from (RFC 1928 section 7): it is
     * pinned at once whatever DST.ADDR is (0.0.0.0, ::, or the name "0" PySocks sends), so
     * another program on the client's host or behind its NAT cannot take the association by
     * sending first. Only DST.PORT 0 ("not known yet") leaves the port to the first datagram.
     * The price: a client behind a NAT that changes its port, naming its inside port, has its
     * datagrams dropped as strangers.
     */
    p.client_port = asked->port;
    if (upstream != NULL) {
        p.upstream = *upstream;
        p.upstream_local.len = sizeof(p.upstream_local.u);
        if (getsockname(s->target_fd, &p.upstream_local.u.sa, &p.upstream_local.len) < 0)
            p.upstream_local.len = 0;
        s->nego->udp_upstream = true;
    }
    if (cfg->udp_address.len > 0)
        p.local = cfg->udp_address;
    else if (session_local_addr(s, &p.local) < 0) {
        session_fail(s, reply_from_errno(errno));
        return;
    }
    /* A tunnel stream's association (doc/tunnel-protocol.md 4.3): its keys are made here and
     * follow the reply; through a ferry parent they came with its reply. */
    if (s->tunnel_local.len > 0) {
        tunnel_udp_grant_new(&grant);
        p.sealed_client = &grant;
    }
    p.sealed_upstream = sealed;
    s->udp = udp_assoc_start(&p);
    if (p.sealed_client != NULL) {
        tunnel_udp_grant_encode(&grant, wire);
        sodium_memzero(&grant, sizeof(grant));
    }
    if (s->udp == NULL) {
        sodium_memzero(wire, sizeof(wire));
        log_warn("udp: cannot open an association: %s", strerror(errno));
        session_fail(s, reply_from_errno(errno));
        return;
    }
    s->target_addr = *udp_assoc_local(s->udp);
    shown = session_advertised(s, &s->target_addr);
    sent = session_reply(s, SOCKS5_REP_SUCCEEDED, &shown.u.sa);
    if (sent >= 0 && p.sealed_client != NULL) {
        sent = session_send(s, wire, sizeof(wire));
        if (sent == 0) /* out, all of it: no copy of the keys stays in the buffer */
            sodium_memzero(s->nego->out, sizeof(s->nego->out));
    }
    sodium_memzero(wire, sizeof(wire));
    if (sent < 0) {
        session_end(s, END_CLIENT_ERROR);
        return;
    }
    /* The association lives as long as the control connection, or until it idles out. */
    session_enter(s, S_UDP);
    if (upstream != NULL) {
        /* And as long as the parent's. */
        ev_io_init(&s->nego->upstream_control, on_upstream_control, s->target_fd, EV_READ);
        s->nego->upstream_control.data = s;
        ev_io_start(s->ctx->loop, &s->nego->upstream_control);
    }
}

/* --- RESOLVE and RESOLVE_PTR ------------------------------------------------------------- */

/* Tor's RESOLVE answer: the first IPv4 address, else the first IPv6 one. */
void session_answer_resolve(struct session *s, const struct addr *addrs, size_t n)
{
    const struct addr *pick = NULL;
    uint8_t msg[SESSION_OUT_BUF];
    size_t len;

    for (size_t i = 0; i < n && pick == NULL; i++) {
        if (addr_family(&addrs[i]) == AF_INET)
            pick = &addrs[i];
    }
    if (pick == NULL && !s->fe->ipv4_only && n > 0)
        pick = &addrs[0];
    if (pick == NULL) {
        /* SOCKS4a can only carry IPv4. */
        session_fail(s, SOCKS5_REP_ADDRESS_TYPE_NOT_SUPPORTED);
        return;
    }
    s->target_addr = *pick;
    s->rep = SOCKS5_REP_SUCCEEDED;
    len = s->fe->reply(SOCKS5_REP_SUCCEEDED, &pick->u.sa, msg, sizeof(msg));
    session_finish(s, END_DONE, msg, len);
}

static void on_ptr_resolved(enum resolver_status status, const char *name, void *arg)
{
    struct session *s = arg;
    uint8_t msg[SESSION_OUT_BUF];
    size_t len = 0;

    s->nego->query = NULL;
    if (status != RESOLVER_OK) {
        session_fail(s, reply_from_resolver(status));
        return;
    }
    if (s->fe->reply_name != NULL)
        len = s->fe->reply_name(SOCKS5_REP_SUCCEEDED, name, msg, sizeof(msg));
    if (len == 0) {
        session_fail(s, SOCKS5_REP_GENERAL_FAILURE);
        return;
    }
    s->rep = SOCKS5_REP_SUCCEEDED;
    session_finish(s, END_DONE, msg, len);
}

/* RESOLVE_PTR, the address checked by the policy: ask the resolver for its name. */
void session_resolve_ptr(struct session *s, const struct addr *target)
{
    session_enter(s, S_RESOLVING);
    s->nego->query = resolver_lookup_ptr(s->ctx->resolver, target, on_ptr_resolved, s);
    if (s->nego->query == NULL)
        session_fail(s, SOCKS5_REP_GENERAL_FAILURE);
}
