/*
 * Tests for UDP ASSOCIATE (src/udp.c) with real UDP sockets on loopback, all driven by one
 * libev loop: a UDP echo server per family, a tiny DNS server for the resolver, and client
 * sockets that send SOCKS5 UDP datagrams (RFC 1928 section 7) to the association.
 */
#include "config.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <ev.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fakedns.h"
#include "testloop.h"
#include "ferry/conf.h"
#include "ferry/resolver.h"
#include "ferry/udp.h"

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

/* ---- addresses and sockets ---------------------------------------------------------------- */

static struct addr ip_addr(const char *text, uint16_t port)
{
    struct addr a;

    ck_assert_msg(addr_parse(text, port, &a) == 0, "bad address %s", text);
    addr_set_port(&a, port);
    return a;
}

/* A non-blocking UDP socket bound to ip (port 0: ephemeral); *bound gets its address. */
static int udp_socket(const char *ip, struct addr *bound)
{
    struct addr a = ip_addr(ip, 0);
    int fd = socket(addr_family(&a), SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    ck_assert_int_ge(fd, 0);
    ck_assert_msg(bind(fd, &a.u.sa, a.len) == 0, "bind %s: %s", ip, strerror(errno));
    a.len = sizeof(a.u);
    ck_assert_int_eq(getsockname(fd, &a.u.sa, &a.len), 0);
    if (bound != NULL)
        *bound = a;
    return fd;
}

static bool ipv6_loopback_works(void)
{
    struct addr a = ip_addr("::1", 0);
    int fd = socket(AF_INET6, SOCK_DGRAM, 0);
    bool ok;

    if (fd < 0)
        return false;
    ok = bind(fd, &a.u.sa, a.len) == 0;
    close(fd);
    return ok;
}

/* ---- the echo servers --------------------------------------------------------------------- */

struct echo {
    int fd;
    ev_io io;
    struct addr addr;
    struct addr last_peer; /* who sent the last datagram: the association's outbound socket */
    unsigned count;
};

static struct echo echo4, echo6;

static void on_echo_readable(struct ev_loop *l, ev_io *w, int revents)
{
    static uint8_t buf[65536];
    struct echo *e = w->data;

    (void)l;
    (void)revents;
    for (;;) {
        struct addr from;
        ssize_t n;
        from.len = sizeof(from.u);
        n = recvfrom(e->fd, buf, sizeof(buf), 0, &from.u.sa, &from.len);
        if (n < 0)
            return;
        e->count++;
        e->last_peer = from;
        (void)sendto(e->fd, buf, (size_t)n, 0, &from.u.sa, from.len);
    }
}

static void echo_start(struct echo *e, const char *ip)
{
    memset(e, 0, sizeof(*e));
    e->fd = udp_socket(ip, &e->addr);
    ev_io_init(&e->io, on_echo_readable, e->fd, EV_READ);
    e->io.data = e;
    ev_io_start(loop, &e->io);
}

static void echo_stop(struct echo *e)
{
    if (e->fd < 0)
        return;
    ev_io_stop(loop, &e->io);
    close(e->fd);
    e->fd = -1;
}

/* ---- the DNS server (fakedns.h) ----------------------------------------------------------- */

static const struct fakedns_name zone[] = {
    {.name = "echo.test", .ttl = 300, .a = {"127.0.0.1"}},
    {.name = "echo6.test", .ttl = 300, .aaaa = {"::1"}},
    {.name = "mixed.test", .ttl = 300, .a = {"127.0.0.1"}, .aaaa = {"::1"}, .a_last = true},
    {.name = "slow.test", .drop = true},
};

static struct fakedns dns;

/* Queries for echo.test, of any type. */
static unsigned queries_for_echo(void)
{
    return fakedns_find(&dns, "echo.test")->queries;
}

/* ---- fixture ------------------------------------------------------------------------------ */

static struct resolver *resolver;
static struct udp_batch *batch;
static struct config cfg;

static void setup(void)
{
    struct resolver_options opt;
    struct addr server;
    char err[256] = "";

    ck_assert_int_ge(sodium_init(), 0);
    loop = ev_loop_new(EVFLAG_AUTO);
    ck_assert_ptr_nonnull(loop);
    echo_start(&echo4, "127.0.0.1");
    echo6.fd = -1;
    if (ipv6_loopback_works())
        echo_start(&echo6, "::1");

    ck_assert_int_eq(fakedns_start(&dns, loop, zone, sizeof(zone) / sizeof(zone[0])), 0);

    /* No resolver cache: every lookup reaches the DNS server, so the association's own cache
     * of names shows in the query count. */
    ck_assert_int_eq(addr_parse(dns.servers, 0, &server), 0);
    memset(&opt, 0, sizeof(opt));
    opt.servers = &server;
    opt.nservers = 1;
    opt.timeout = 0.5;
    opt.tries = 1;
    opt.cache_size = 0;
    opt.negative_ttl = 1;
    opt.max_ttl = 300;
    resolver = resolver_new(loop, &opt, err, sizeof(err));
    batch = udp_batch_new();
    ck_assert_ptr_nonnull(batch);
    ck_assert_msg(resolver != NULL, "resolver_new: %s", err);

    memset(&cfg, 0, sizeof(cfg));
    cfg.udp_filter = UDP_FILTER_ADDRESS;
}

static void teardown(void)
{
    resolver_free(resolver);
    udp_batch_free(batch);
    fakedns_stop(&dns);
    echo_stop(&echo4);
    echo_stop(&echo6);
    ev_loop_destroy(loop);
    loop = NULL;
}

/* An association for a client at client_ip (port 0: learn it) bound on local_ip. */
static struct udp_assoc *assoc_start(const char *client_ip, uint16_t client_port,
                                     const char *local_ip)
{
    struct udp_assoc_params p;
    struct udp_assoc *a;

    memset(&p, 0, sizeof(p));
    p.loop = loop;
    p.port_min = cfg.udp_port_min;
    p.port_max = cfg.udp_port_max;
    p.filter = cfg.udp_filter;
    p.resolver = resolver;
    p.batch = batch;
    p.client = ip_addr(client_ip, 0);
    p.client_port = client_port;
    p.local = ip_addr(local_ip, 0);
    a = udp_assoc_start(&p);
    ck_assert_msg(a != NULL, "udp_assoc_start: %s", strerror(errno));
    return a;
}

static struct udp_stats stats_of(const struct udp_assoc *a)
{
    struct udp_stats s;

    udp_assoc_stats(a, &s);
    return s;
}

/* ---- datagrams ---------------------------------------------------------------------------- */

static void put16(uint8_t *p, unsigned v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

/* RSV RSV FRAG ATYP DST.ADDR DST.PORT for an IP address. */
static size_t header_ip(uint8_t *out, const struct addr *to, uint8_t frag)
{
    uint16_t port = addr_port(to);
    size_t n;

    out[0] = 0;
    out[1] = 0;
    out[2] = frag;
    if (addr_family(to) == AF_INET) {
        out[3] = 1;
        memcpy(out + 4, &to->u.in4.sin_addr, 4);
        n = 8;
    } else {
        out[3] = 4;
        memcpy(out + 4, &to->u.in6.sin6_addr, 16);
        n = 20;
    }
    put16(out + n, port);
    return n + 2;
}

static size_t header_name(uint8_t *out, const char *name, uint16_t port)
{
    size_t len = strlen(name);

    out[0] = 0;
    out[1] = 0;
    out[2] = 0;
    out[3] = 3;
    out[4] = (uint8_t)len;
    memcpy(out + 5, name, len);
    put16(out + 5 + len, port);
    return 7 + len;
}

static void send_raw(int fd, const struct addr *to, const void *buf, size_t len)
{
    ck_assert_msg(sendto(fd, buf, len, 0, &to->u.sa, to->len) == (ssize_t)len, "sendto: %s",
                  strerror(errno));
}

/* Send payload to target `to` through the association, from client socket fd. */
static void send_via(int fd, const struct udp_assoc *a, const struct addr *to, const void *payload,
                     size_t len)
{
    static uint8_t buf[65536];
    size_t h = header_ip(buf, to, 0);

    ck_assert_uint_le(h + len, sizeof(buf));
    memcpy(buf + h, payload, len);
    send_raw(fd, udp_assoc_local(a), buf, h + len);
}

static void send_via_name(int fd, const struct udp_assoc *a, const char *name, uint16_t port,
                          const void *payload, size_t len)
{
    uint8_t buf[2048];
    size_t h = header_name(buf, name, port);

    ck_assert_uint_le(h + len, sizeof(buf));
    memcpy(buf + h, payload, len);
    send_raw(fd, udp_assoc_local(a), buf, h + len);
}

/* What a client socket received: one datagram at a time. */
static uint8_t rbuf[65536];
static size_t rlen;
static struct addr rfrom;

/* Run the loop until fd has a datagram (true) or `limit` seconds pass (false). */
static bool recv_within(int fd, double limit)
{
    double until = ev_time() + limit;

    for (;;) {
        ssize_t n;
        rfrom.len = sizeof(rfrom.u);
        n = recvfrom(fd, rbuf, sizeof(rbuf), 0, &rfrom.u.sa, &rfrom.len);
        if (n >= 0) {
            rlen = (size_t)n;
            return true;
        }
        ck_assert_int_eq(errno, EAGAIN);
        if (ev_time() >= until)
            return false;
        run_once();
    }
}

/* Expect a reply on fd from the association, with a header naming `from`, carrying payload. */
static void expect_reply(int fd, const struct udp_assoc *a, const struct addr *from,
                         const void *payload, size_t len)
{
    uint8_t want[65536];
    size_t h = header_ip(want, from, 0);

    ck_assert_msg(recv_within(fd, 3.0), "no reply");
    ck_assert_msg(addr_equal(&rfrom, udp_assoc_local(a)), "reply not from the relay socket");
    memcpy(want + h, payload, len);
    ck_assert_uint_eq(rlen, h + len);
    ck_assert_msg(memcmp(rbuf, want, h) == 0, "reply header does not name the sender");
    ck_assert_msg(memcmp(rbuf + h, payload, len) == 0, "payload differs");
}

static void expect_silence(int fd, double seconds)
{
    ck_assert_msg(!recv_within(fd, seconds), "unexpected datagram of %zu bytes", rlen);
}

/* ---- tests -------------------------------------------------------------------------------- */

START_TEST(test_udp_ipv4_echo_reply_carries_header_naming_target)
{
    struct addr caddr;
    int c = udp_socket("127.0.0.1", &caddr);
    struct udp_assoc *a = assoc_start("127.0.0.1", 0, "127.0.0.1");
    struct udp_stats s;

    ck_assert_int_eq(addr_family(udp_assoc_local(a)), AF_INET);
    ck_assert_uint_ne(addr_port(udp_assoc_local(a)), 0);
    send_via(c, a, &echo4.addr, "hello", 5);
    expect_reply(c, a, &echo4.addr, "hello", 5);
    ck_assert_uint_eq(echo4.count, 1);
    s = stats_of(a);
    ck_assert_uint_eq(s.up_packets, 1);
    ck_assert_uint_eq(s.up_bytes, 5);
    ck_assert_uint_eq(s.down_packets, 1);
    ck_assert_uint_eq(s.down_bytes, 5);
    ck_assert_uint_eq(s.drop_stranger + s.drop_frag + s.drop_malformed + s.drop_filtered +
                          s.drop_resolve + s.drop_queue + s.drop_send + s.drop_oversize,
                      0);
    /* The target sees the outbound socket, not the client-facing one. */
    ck_assert(!addr_equal(&echo4.last_peer, udp_assoc_local(a)));
    udp_assoc_free(a);
    close(c);
}
END_TEST

START_TEST(test_udp_ipv6_client_and_target_on_loopback)
{
    int c;
    struct udp_assoc *a;

    if (echo6.fd < 0)
        return;
    c = udp_socket("::1", NULL);
    a = assoc_start("::1", 0, "::1");
    ck_assert_int_eq(addr_family(udp_assoc_local(a)), AF_INET6);
    send_via(c, a, &echo6.addr, "six", 3);
    expect_reply(c, a, &echo6.addr, "six", 3);
    /* IPv4 targets work for an IPv6 client too: the IPv4 outbound socket opens on demand. */
    send_via(c, a, &echo4.addr, "four", 4);
    expect_reply(c, a, &echo4.addr, "four", 4);
    ck_assert_uint_eq(stats_of(a).down_packets, 2);
    udp_assoc_free(a);
    close(c);
}
END_TEST

START_TEST(test_udp_ipv4_client_reaches_ipv6_target)
{
    int c;
    struct udp_assoc *a;

    if (echo6.fd < 0)
        return;
    c = udp_socket("127.0.0.1", NULL);
    a = assoc_start("127.0.0.1", 0, "127.0.0.1");
    send_via(c, a, &echo6.addr, "v6 target", 9);
    expect_reply(c, a, &echo6.addr, "v6 target", 9);
    udp_assoc_free(a);
    close(c);
}
END_TEST

START_TEST(test_udp_ipv4_mapped_destination_goes_out_as_ipv4)
{
    int c = udp_socket("127.0.0.1", NULL);
    struct udp_assoc *a = assoc_start("127.0.0.1", 0, "127.0.0.1");
    struct addr mapped = ip_addr("::ffff:127.0.0.1", addr_port(&echo4.addr));

    send_via(c, a, &mapped, "mapped", 6);
    /* The reply names the plain IPv4 sender. */
    expect_reply(c, a, &echo4.addr, "mapped", 6);
    ck_assert_int_eq(addr_family(&echo4.last_peer), AF_INET);
    udp_assoc_free(a);
    close(c);
}
END_TEST

START_TEST(test_udp_ipv4_mapped_client_and_local_use_an_ipv4_socket)
{
    int c = udp_socket("127.0.0.1", NULL);
    struct udp_assoc *a = assoc_start("::ffff:127.0.0.1", 0, "::ffff:127.0.0.1");

    ck_assert_int_eq(addr_family(udp_assoc_local(a)), AF_INET);
    send_via(c, a, &echo4.addr, "m", 1);
    expect_reply(c, a, &echo4.addr, "m", 1);
    udp_assoc_free(a);
    close(c);
}
END_TEST

START_TEST(test_udp_client_facing_port_comes_from_configured_range)
{
    struct udp_assoc *a, *b;
    uint16_t pa, pb;

    cfg.udp_port_min = 22170;
    cfg.udp_port_max = 22179;
    a = assoc_start("127.0.0.1", 0, "127.0.0.1");
    b = assoc_start("127.0.0.1", 0, "127.0.0.1");
    pa = addr_port(udp_assoc_local(a));
    pb = addr_port(udp_assoc_local(b));
    ck_assert_uint_ge(pa, 22170);
    ck_assert_uint_le(pa, 22179);
    ck_assert_uint_ge(pb, 22170);
    ck_assert_uint_le(pb, 22179);
    ck_assert_uint_ne(pa, pb);
    ck_assert_str_eq(inet_ntoa(udp_assoc_local(a)->u.in4.sin_addr), "127.0.0.1");
    udp_assoc_free(a);
    udp_assoc_free(b);
}
END_TEST

START_TEST(test_udp_start_fails_when_port_range_is_exhausted)
{
    struct udp_assoc *a, *b;
    struct udp_assoc_params p;

    cfg.udp_port_min = 22180;
    cfg.udp_port_max = 22180;
    a = assoc_start("127.0.0.1", 0, "127.0.0.1");
    memset(&p, 0, sizeof(p));
    p.loop = loop;
    p.port_min = cfg.udp_port_min;
    p.port_max = cfg.udp_port_max;
    p.filter = cfg.udp_filter;
    p.resolver = resolver;
    p.batch = batch;
    p.client = ip_addr("127.0.0.1", 0);
    p.local = ip_addr("127.0.0.1", 0);
    errno = 0;
    b = udp_assoc_start(&p);
    ck_assert_ptr_null(b);
    ck_assert_int_eq(errno, EADDRINUSE);
    udp_assoc_free(a);
}
END_TEST

START_TEST(test_udp_name_destination_is_resolved_and_remembered)
{
    int c = udp_socket("127.0.0.1", NULL);
    struct udp_assoc *a = assoc_start("127.0.0.1", 0, "127.0.0.1");
    uint16_t port = addr_port(&echo4.addr);
    unsigned queries;

    /* Three datagrams before the answer: all wait for one lookup, then all go out. */
    send_via_name(c, a, "echo.test", port, "n1", 2);
    send_via_name(c, a, "ECHO.test", port, "n2", 2);
    send_via_name(c, a, "echo.test", port, "n3", 2);
    expect_reply(c, a, &echo4.addr, "n1", 2);
    expect_reply(c, a, &echo4.addr, "n2", 2);
    expect_reply(c, a, &echo4.addr, "n3", 2);
    queries = queries_for_echo();
    ck_assert_uint_ge(queries, 1);
    ck_assert_uint_le(queries, 2); /* A and AAAA of one lookup */
    /* Later datagrams to the same name use the association's memory of it. */
    for (int i = 0; i < 5; i++) {
        send_via_name(c, a, "echo.test", port, "again", 5);
        expect_reply(c, a, &echo4.addr, "again", 5);
    }
    ck_assert_uint_eq(queries_for_echo(), queries);
    ck_assert_uint_eq(stats_of(a).up_packets, 8);
    ck_assert_uint_eq(stats_of(a).down_packets, 8);
    udp_assoc_free(a);
    close(c);
}
END_TEST

START_TEST(test_udp_name_with_both_families_goes_to_ipv4)
{
    int c = udp_socket("127.0.0.1", NULL);
    struct udp_assoc *a = assoc_start("127.0.0.1", 0, "127.0.0.1");

    /* mixed.test has 127.0.0.1 and ::1; only the IPv4 echo server listens on this port. */
    send_via_name(c, a, "mixed.test", addr_port(&echo4.addr), "mix", 3);
    expect_reply(c, a, &echo4.addr, "mix", 3);
    udp_assoc_free(a);
    close(c);
}
END_TEST

START_TEST(test_udp_ipv6_only_name_goes_to_ipv6)
{
    int c;
    struct udp_assoc *a;

    if (echo6.fd < 0)
        return;
    c = udp_socket("127.0.0.1", NULL);
    a = assoc_start("127.0.0.1", 0, "127.0.0.1");
    send_via_name(c, a, "echo6.test", addr_port(&echo6.addr), "v6name", 6);
    expect_reply(c, a, &echo6.addr, "v6name", 6);
    udp_assoc_free(a);
    close(c);
}
END_TEST

START_TEST(test_udp_unknown_name_counts_drop_resolve_and_association_lives_on)
{
    int c = udp_socket("127.0.0.1", NULL);
    struct udp_assoc *a = assoc_start("127.0.0.1", 0, "127.0.0.1");

    send_via_name(c, a, "nx.test", 53, "x", 1);
    send_via_name(c, a, "nx.test", 53, "y", 1);
    RUN_UNTIL(stats_of(a).drop_resolve == 2, 3.0);
    ck_assert_uint_eq(stats_of(a).drop_resolve, 2);
    ck_assert_uint_eq(stats_of(a).up_packets, 0);
    send_via(c, a, &echo4.addr, "still", 5);
    expect_reply(c, a, &echo4.addr, "still", 5);
    udp_assoc_free(a);
    close(c);
}
END_TEST

/* Names no DNS query can carry, up to the longest a header holds (255 bytes): each is dropped
 * and counted, none reaches a DNS server or a target, and the association lives on. */
START_TEST(test_udp_names_too_long_or_unqueryable_are_dropped_without_a_query)
{
    int c = udp_socket("127.0.0.1", NULL);
    struct udp_assoc *a = assoc_start("127.0.0.1", 0, "127.0.0.1");
    char label63[64], label64[65], name255[256], name254[255];
    const char *names[] = {name255, name254, label64, "bad name", "a\\b", "\x01ctl", "..", "."};
    size_t n = sizeof(names) / sizeof(names[0]);
    struct udp_stats st;

    memset(label63, 'a', 63);
    label63[63] = '\0';
    memset(label64, 'b', 64);
    label64[64] = '\0';
    snprintf(name255, sizeof(name255), "%s.%s.%s.%s", label63, label63, label63, label63);
    ck_assert_uint_eq(strlen(name255), 255);
    snprintf(name254, sizeof(name254), "%s", name255 + 1);
    ck_assert_uint_eq(strlen(name254), 254);
    for (size_t i = 0; i < n; i++)
        send_via_name(c, a, names[i], 53, "x", 1);
    RUN_UNTIL(stats_of(a).drop_resolve + stats_of(a).drop_malformed == n, 3.0);
    st = stats_of(a);
    ck_assert_uint_eq(st.drop_resolve + st.drop_malformed, n);
    ck_assert_uint_eq(st.up_packets, 0);
    ck_assert_uint_eq(dns.queries, 0);
    ck_assert_uint_eq(echo4.count, 0);
    send_via(c, a, &echo4.addr, "still", 5);
    expect_reply(c, a, &echo4.addr, "still", 5);
    udp_assoc_free(a);
    close(c);
}
END_TEST

START_TEST(test_udp_queue_for_names_is_bounded)
{
    int c = udp_socket("127.0.0.1", NULL);
    struct udp_assoc *a = assoc_start("127.0.0.1", 0, "127.0.0.1");
    static uint8_t big[40000];

    for (int i = 0; i < 20; i++)
        send_via_name(c, a, "slow.test", 9, "q", 1);
    RUN_UNTIL(stats_of(a).drop_queue == 4, 2.0);
    ck_assert_uint_eq(stats_of(a).drop_queue, 4);
    udp_assoc_free(a);

    /* The byte bound: two 40000-byte datagrams do not both fit in 64 KiB. */
    a = assoc_start("127.0.0.1", 0, "127.0.0.1");
    memset(big, 'b', sizeof(big));
    for (int i = 0; i < 2; i++) {
        static uint8_t buf[41000];
        size_t h = header_name(buf, "slow.test", 9);
        memcpy(buf + h, big, sizeof(big));
        send_raw(c, udp_assoc_local(a), buf, h + sizeof(big));
    }
    RUN_UNTIL(stats_of(a).drop_queue == 1, 2.0);
    ck_assert_uint_eq(stats_of(a).drop_queue, 1);
    udp_assoc_free(a);
    close(c);
}
END_TEST

START_TEST(test_udp_free_with_name_resolution_pending_runs_no_callback)
{
    int c = udp_socket("127.0.0.1", NULL);
    struct udp_assoc *a = assoc_start("127.0.0.1", 0, "127.0.0.1");
    unsigned before = dns.queries;

    send_via_name(c, a, "slow.test", 9, "p1", 2);
    send_via_name(c, a, "echo.test", addr_port(&echo4.addr), "p2", 2);
    RUN_UNTIL(dns.queries >= before + 2, 2.0);
    ck_assert_uint_ge(dns.queries, before + 2);
    udp_assoc_free(a);
    /* The answer for echo.test and the timeout of slow.test arrive with nobody waiting. */
    run_for(0.8);
    close(c);
}
END_TEST

START_TEST(test_udp_frag_nonzero_is_dropped_and_next_datagram_works)
{
    int c = udp_socket("127.0.0.1", NULL);
    struct udp_assoc *a = assoc_start("127.0.0.1", 0, "127.0.0.1");
    uint8_t buf[64];
    size_t h = header_ip(buf, &echo4.addr, 1);

    memcpy(buf + h, "frag", 4);
    send_raw(c, udp_assoc_local(a), buf, h + 4);
    RUN_UNTIL(stats_of(a).drop_frag == 1, 2.0);
    ck_assert_uint_eq(stats_of(a).drop_frag, 1);
    buf[2] = 0x81; /* "end of fragment sequence" with position 1: still a fragment */
    send_raw(c, udp_assoc_local(a), buf, h + 4);
    RUN_UNTIL(stats_of(a).drop_frag == 2, 2.0);
    ck_assert_uint_eq(stats_of(a).drop_frag, 2);
    ck_assert_uint_eq(echo4.count, 0);
    send_via(c, a, &echo4.addr, "whole", 5);
    expect_reply(c, a, &echo4.addr, "whole", 5);
    ck_assert_uint_eq(stats_of(a).up_packets, 1);
    udp_assoc_free(a);
    close(c);
}
END_TEST

START_TEST(test_udp_malformed_headers_are_counted_and_dropped)
{
    int c = udp_socket("127.0.0.1", NULL);
    struct udp_assoc *a = assoc_start("127.0.0.1", 0, "127.0.0.1");
    const struct addr *relay = udp_assoc_local(a);
    static const uint8_t truncated[] = {0, 0, 0};
    static const uint8_t short_ipv4[] = {0, 0, 0, 1, 127, 0, 0, 1, 0};
    static const uint8_t short_ipv6[] = {0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    static const uint8_t bad_atyp[] = {0, 0, 0, 2, 127, 0, 0, 1, 0, 7, 'x'};
    static const uint8_t name_past_end[] = {0, 0, 0, 3, 20, 'e', 'c', 'h', 'o', 0, 7};
    static const uint8_t empty_name[] = {0, 0, 0, 3, 0, 0, 7, 'x'};
    static const uint8_t nul_in_name[] = {0, 0, 0, 3, 3, 'a', 0, 'b', 0, 7, 'x'};

    send_raw(c, relay, "", 0);
    send_raw(c, relay, truncated, sizeof(truncated));
    send_raw(c, relay, short_ipv4, sizeof(short_ipv4));
    send_raw(c, relay, short_ipv6, sizeof(short_ipv6));
    send_raw(c, relay, bad_atyp, sizeof(bad_atyp));
    send_raw(c, relay, name_past_end, sizeof(name_past_end));
    send_raw(c, relay, empty_name, sizeof(empty_name));
    send_raw(c, relay, nul_in_name, sizeof(nul_in_name));
    RUN_UNTIL(stats_of(a).drop_malformed == 8, 2.0);
    ck_assert_uint_eq(stats_of(a).drop_malformed, 8);
    ck_assert_uint_eq(stats_of(a).up_packets, 0);
    ck_assert_uint_eq(dns.queries, 0);
    send_via(c, a, &echo4.addr, "fine", 4);
    expect_reply(c, a, &echo4.addr, "fine", 4);
    udp_assoc_free(a);
    close(c);
}
END_TEST

START_TEST(test_udp_datagram_from_other_ip_is_dropped_as_stranger)
{
    int c = udp_socket("127.0.0.1", NULL);
    int stranger = udp_socket("127.0.0.2", NULL);
    struct udp_assoc *a = assoc_start("127.0.0.1", 0, "127.0.0.1");

    /* The stranger comes first: it must not take the association. */
    send_via(stranger, a, &echo4.addr, "evil", 4);
    RUN_UNTIL(stats_of(a).drop_stranger == 1, 2.0);
    ck_assert_uint_eq(stats_of(a).drop_stranger, 1);
    ck_assert_uint_eq(echo4.count, 0);
    send_via(c, a, &echo4.addr, "mine", 4);
    expect_reply(c, a, &echo4.addr, "mine", 4);
    send_via(stranger, a, &echo4.addr, "evil", 4);
    RUN_UNTIL(stats_of(a).drop_stranger == 2, 2.0);
    ck_assert_uint_eq(stats_of(a).drop_stranger, 2);
    expect_silence(stranger, 0.1);
    ck_assert_uint_eq(echo4.count, 1);
    udp_assoc_free(a);
    close(c);
    close(stranger);
}
END_TEST

START_TEST(test_udp_fixed_client_port_rejects_other_ports)
{
    struct addr caddr;
    int c = udp_socket("127.0.0.1", &caddr);
    int other = udp_socket("127.0.0.1", NULL);
    struct udp_assoc *a = assoc_start("127.0.0.1", addr_port(&caddr), "127.0.0.1");

    send_via(other, a, &echo4.addr, "other", 5);
    RUN_UNTIL(stats_of(a).drop_stranger == 1, 2.0);
    ck_assert_uint_eq(stats_of(a).drop_stranger, 1);
    send_via(c, a, &echo4.addr, "named", 5);
    expect_reply(c, a, &echo4.addr, "named", 5);
    expect_silence(other, 0.05);
    udp_assoc_free(a);
    close(c);
    close(other);
}
END_TEST

START_TEST(test_udp_first_datagram_fixes_learned_port)
{
    int c = udp_socket("127.0.0.1", NULL);
    int other = udp_socket("127.0.0.1", NULL);
    struct udp_assoc *a = assoc_start("127.0.0.1", 0, "127.0.0.1");

    send_via(c, a, &echo4.addr, "first", 5);
    expect_reply(c, a, &echo4.addr, "first", 5);
    send_via(other, a, &echo4.addr, "second", 6);
    RUN_UNTIL(stats_of(a).drop_stranger == 1, 2.0);
    ck_assert_uint_eq(stats_of(a).drop_stranger, 1);
    expect_silence(other, 0.05);
    ck_assert_uint_eq(echo4.count, 1);
    udp_assoc_free(a);
    close(c);
    close(other);
}
END_TEST

/* Send once to the echo server so the outbound IPv4 socket exists; returns its address. */
static struct addr open_outbound(int c, struct udp_assoc *a)
{
    send_via(c, a, &echo4.addr, "open", 4);
    expect_reply(c, a, &echo4.addr, "open", 4);
    return echo4.last_peer;
}

START_TEST(test_udp_reply_from_unknown_sender_is_filtered)
{
    int c = udp_socket("127.0.0.1", NULL);
    struct addr third_addr;
    int third = udp_socket("127.0.0.3", &third_addr);
    struct udp_assoc *a = assoc_start("127.0.0.1", 0, "127.0.0.1");
    struct addr out = open_outbound(c, a);

    send_raw(third, &out, "unsolicited", 11);
    RUN_UNTIL(stats_of(a).drop_filtered == 1, 2.0);
    ck_assert_uint_eq(stats_of(a).drop_filtered, 1);
    expect_silence(c, 0.05);
    ck_assert_uint_eq(stats_of(a).down_packets, 1);
    udp_assoc_free(a);
    close(c);
    close(third);
}
END_TEST

START_TEST(test_udp_any_sender_relays_unknown_sender)
{
    int c = udp_socket("127.0.0.1", NULL);
    struct addr third_addr;
    int third = udp_socket("127.0.0.3", &third_addr);
    struct udp_assoc *a;
    struct addr out;

    cfg.udp_filter = UDP_FILTER_ANY;
    a = assoc_start("127.0.0.1", 0, "127.0.0.1");
    out = open_outbound(c, a);
    send_raw(third, &out, "unsolicited", 11);
    expect_reply(c, a, &third_addr, "unsolicited", 11);
    ck_assert_uint_eq(stats_of(a).drop_filtered, 0);
    udp_assoc_free(a);
    close(c);
    close(third);
}
END_TEST

START_TEST(test_udp_filter_allows_other_port_of_a_known_ip)
{
    int c = udp_socket("127.0.0.1", NULL);
    struct addr peer_addr;
    int peer = udp_socket("127.0.0.1", &peer_addr);
    struct udp_assoc *a = assoc_start("127.0.0.1", 0, "127.0.0.1");
    struct addr out = open_outbound(c, a);

    /* Address-dependent filtering: the client sent to 127.0.0.1, so any port of it may answer. */
    send_raw(peer, &out, "same ip", 7);
    expect_reply(c, a, &peer_addr, "same ip", 7);
    udp_assoc_free(a);
    close(c);
    close(peer);
}
END_TEST

START_TEST(test_udp_filter_address_port_drops_other_port_of_a_known_ip)
{
    int c = udp_socket("127.0.0.1", NULL);
    struct addr peer_addr;
    int peer = udp_socket("127.0.0.1", &peer_addr);
    struct udp_assoc *a;
    struct addr out;

    cfg.udp_filter = UDP_FILTER_ADDRESS_PORT;
    a = assoc_start("127.0.0.1", 0, "127.0.0.1");
    /* The exact IP:port the client sent to answers: relayed. */
    out = open_outbound(c, a);
    /* The same IP from another port: the client never sent there. */
    send_raw(peer, &out, "same ip", 7);
    RUN_UNTIL(stats_of(a).drop_filtered == 1, 2.0);
    ck_assert_uint_eq(stats_of(a).drop_filtered, 1);
    expect_silence(c, 0.05);
    /* Once the client has sent to that port, it may answer too. */
    send_via(c, a, &peer_addr, "hello", 5);
    ck_assert(recv_within(peer, 2.0));
    send_raw(peer, &out, "answer", 6);
    expect_reply(c, a, &peer_addr, "answer", 6);
    /* And the echo server's port is still known. */
    send_via(c, a, &echo4.addr, "again", 5);
    expect_reply(c, a, &echo4.addr, "again", 5);
    ck_assert_uint_eq(stats_of(a).drop_filtered, 1);
    ck_assert_uint_eq(stats_of(a).down_packets, 3);
    udp_assoc_free(a);
    close(c);
    close(peer);
}
END_TEST

START_TEST(test_udp_filter_address_port_forgets_oldest_of_more_than_64_ports)
{
    int c = udp_socket("127.0.0.1", NULL);
    struct addr first_addr, last_addr;
    int first = udp_socket("127.0.0.1", &first_addr);
    int last = udp_socket("127.0.0.1", &last_addr);
    struct udp_assoc *a;
    struct addr out;

    cfg.udp_filter = UDP_FILTER_ADDRESS_PORT;
    a = assoc_start("127.0.0.1", 0, "127.0.0.1");
    /* 65 destinations on one IP: first, 63 ports below the ephemeral range where nothing
     * listens (30000..30062), last. */
    send_via(c, a, &first_addr, "x", 1);
    for (int i = 0; i < 63; i++) {
        struct addr to = ip_addr("127.0.0.1", (uint16_t)(30000 + i));
        send_via(c, a, &to, "x", 1);
    }
    send_via(c, a, &last_addr, "probe", 5);
    ck_assert(recv_within(last, 2.0));
    out = rfrom;
    ck_assert(recv_within(first, 2.0));
    RUN_UNTIL(stats_of(a).up_packets == 65, 2.0);
    ck_assert_uint_eq(stats_of(a).up_packets, 65);
    send_raw(first, &out, "old", 3);
    RUN_UNTIL(stats_of(a).drop_filtered == 1, 2.0);
    ck_assert_uint_eq(stats_of(a).drop_filtered, 1);
    send_raw(last, &out, "new", 3);
    expect_reply(c, a, &last_addr, "new", 3);
    udp_assoc_free(a);
    close(c);
    close(first);
    close(last);
}
END_TEST

START_TEST(test_udp_filter_forgets_oldest_of_more_than_64_destinations)
{
    int c = udp_socket("127.0.0.1", NULL);
    struct addr first_addr, last_addr;
    int first = udp_socket("127.0.0.10", &first_addr);
    int last = udp_socket("127.0.0.74", &last_addr);
    struct udp_assoc *a = assoc_start("127.0.0.1", 0, "127.0.0.1");
    struct addr out;

    /* 65 destinations: 127.0.0.10 .. 127.0.0.74 (nothing listens on port 9). */
    for (int i = 10; i <= 74; i++) {
        char ip[32];
        struct addr to;
        snprintf(ip, sizeof(ip), "127.0.0.%d", i);
        to = ip_addr(ip, 9);
        send_via(c, a, &to, "x", 1);
    }
    RUN_UNTIL(stats_of(a).up_packets == 65, 2.0);
    ck_assert_uint_eq(stats_of(a).up_packets, 65);
    /* Find the outbound socket's address: have the last destination echo through a probe. */
    send_via(c, a, &last_addr, "probe", 5);
    ck_assert(recv_within(last, 2.0));
    ck_assert_uint_eq(rlen, 5);
    out = rfrom;
    send_raw(first, &out, "old", 3);
    RUN_UNTIL(stats_of(a).drop_filtered == 1, 2.0);
    ck_assert_uint_eq(stats_of(a).drop_filtered, 1);
    send_raw(last, &out, "new", 3);
    expect_reply(c, a, &last_addr, "new", 3);
    udp_assoc_free(a);
    close(c);
    close(first);
    close(last);
}
END_TEST

START_TEST(test_udp_thousand_datagrams_come_back_intact)
{
    int c = udp_socket("127.0.0.1", NULL);
    struct udp_assoc *a = assoc_start("127.0.0.1", 0, "127.0.0.1");
    enum { TOTAL = 1000, WINDOW = 32 };
    unsigned sent = 0, received = 0;
    uint8_t payload[1500];
    uint8_t hdr[32];
    size_t h = header_ip(hdr, &echo4.addr, 0);
    uint64_t bytes = 0;

    while (received < TOTAL) {
        while (sent < TOTAL && sent - received < WINDOW) {
            size_t len = 8 + (sent * 37) % 1400;
            for (size_t i = 0; i < len; i++)
                payload[i] = (uint8_t)(sent + i * 7);
            memcpy(payload, &sent, sizeof(sent));
            send_via(c, a, &echo4.addr, payload, len);
            bytes += len;
            sent++;
        }
        ck_assert_msg(recv_within(c, 3.0), "datagram %u lost", received);
        {
            size_t len = 8 + (received * 37) % 1400;
            unsigned idx;
            ck_assert_uint_eq(rlen, h + len);
            ck_assert(memcmp(rbuf, hdr, h) == 0);
            memcpy(&idx, rbuf + h, sizeof(idx));
            ck_assert_uint_eq(idx, received);
            for (size_t i = sizeof(idx); i < len; i++)
                ck_assert_uint_eq(rbuf[h + i], (uint8_t)(received + i * 7));
        }
        received++;
    }
    ck_assert_uint_eq(stats_of(a).up_packets, TOTAL);
    ck_assert_uint_eq(stats_of(a).down_packets, TOTAL);
    ck_assert_uint_eq(stats_of(a).up_bytes, bytes);
    ck_assert_uint_eq(stats_of(a).down_bytes, bytes);
    udp_assoc_free(a);
    close(c);
}
END_TEST

START_TEST(test_udp_reply_too_large_for_header_is_dropped_as_oversize)
{
    int c = udp_socket("127.0.0.1", NULL);
    struct addr taddr;
    int target = udp_socket("127.0.0.1", &taddr);
    struct udp_assoc *a = assoc_start("127.0.0.1", 0, "127.0.0.1");
    static uint8_t big[65507];
    struct addr out;
    int size = 1 << 20;

    ck_assert_int_eq(setsockopt(c, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size)), 0);
    send_via(c, a, &taddr, "hi", 2);
    ck_assert(recv_within(target, 2.0));
    out = rfrom;
    memset(big, 'z', sizeof(big));
    /* 65497 + 10-byte header = 65507: the largest IPv4 UDP payload, still relayed. */
    send_raw(target, &out, big, 65497);
    expect_reply(c, a, &taddr, big, 65497);
    send_raw(target, &out, big, 65498);
    RUN_UNTIL(stats_of(a).drop_oversize == 1, 2.0);
    ck_assert_uint_eq(stats_of(a).drop_oversize, 1);
    expect_silence(c, 0.05);
    /* Large datagrams upward are fine: 65000 bytes to the echo server and back. */
    send_via(c, a, &echo4.addr, big, 65000);
    expect_reply(c, a, &echo4.addr, big, 65000);
    udp_assoc_free(a);
    close(c);
    close(target);
}
END_TEST

START_TEST(test_udp_send_failure_counts_drop_send)
{
    int c = udp_socket("127.0.0.1", NULL);
    struct udp_assoc *a = assoc_start("127.0.0.1", 0, "127.0.0.1");
    struct addr port0 = ip_addr("127.0.0.1", 0);

    send_via(c, a, &port0, "zero", 4);
    RUN_UNTIL(stats_of(a).drop_send == 1, 2.0);
    ck_assert_uint_eq(stats_of(a).drop_send, 1);
    send_via(c, a, &echo4.addr, "ok", 2);
    expect_reply(c, a, &echo4.addr, "ok", 2);
    udp_assoc_free(a);
    close(c);
}
END_TEST

START_TEST(test_udp_last_activity_moves_with_relayed_datagrams_only)
{
    int c = udp_socket("127.0.0.1", NULL);
    struct addr taddr;
    int target = udp_socket("127.0.0.1", &taddr);
    struct udp_assoc *a = assoc_start("127.0.0.1", 0, "127.0.0.1");
    double start = udp_assoc_last_activity(a), up;
    static const uint8_t junk[] = {0, 0, 0, 9};
    struct addr out;

    ck_assert(start > 0);
    run_for(0.05);
    send_raw(c, udp_assoc_local(a), junk, sizeof(junk));
    RUN_UNTIL(stats_of(a).drop_malformed == 1, 2.0);
    ck_assert(udp_assoc_last_activity(a) == start);
    /* Upward only: the target does not answer by itself. */
    send_via(c, a, &taddr, "up", 2);
    ck_assert(recv_within(target, 2.0));
    out = rfrom;
    up = udp_assoc_last_activity(a);
    ck_assert(up > start);
    /* Downward only. */
    run_for(0.05);
    send_raw(target, &out, "down", 4);
    expect_reply(c, a, &taddr, "down", 4);
    ck_assert(udp_assoc_last_activity(a) > up);
    udp_assoc_free(a);
    close(c);
    close(target);
}
END_TEST

START_TEST(test_udp_flood_is_read_in_bounded_batches_and_counted)
{
    int c = udp_socket("127.0.0.1", NULL);
    struct udp_assoc *a = assoc_start("127.0.0.1", 0, "127.0.0.1");
    static const uint8_t junk[] = {0, 0, 0, 7, 1, 2, 3};
    unsigned sent = 0;
    int size = 1 << 22;

    (void)setsockopt(c, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
    for (int i = 0; i < 5000; i++) {
        if (sendto(c, junk, sizeof(junk), 0, &udp_assoc_local(a)->u.sa, udp_assoc_local(a)->len) ==
            (ssize_t)sizeof(junk))
            sent++;
    }
    /* One readiness event reads at most a batch, then the loop moves on. */
    ev_run(loop, EVRUN_NOWAIT);
    ck_assert_uint_gt(stats_of(a).drop_malformed, 0);
    ck_assert_uint_le(stats_of(a).drop_malformed, 64);
    RUN_UNTIL(stats_of(a).drop_malformed >= sent, 5.0);
    /* Loopback may drop some when the relay's receive buffer fills; none may be relayed. */
    ck_assert_uint_gt(stats_of(a).drop_malformed, 0);
    ck_assert_uint_eq(stats_of(a).up_packets, 0);
    send_via(c, a, &echo4.addr, "after", 5);
    expect_reply(c, a, &echo4.addr, "after", 5);
    udp_assoc_free(a);
    close(c);
}
END_TEST

static Suite *udp_suite(void)
{
    Suite *s = suite_create("udp");
    TCase *tc = tcase_create("loopback");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, test_udp_ipv4_echo_reply_carries_header_naming_target);
    tcase_add_test(tc, test_udp_ipv6_client_and_target_on_loopback);
    tcase_add_test(tc, test_udp_ipv4_client_reaches_ipv6_target);
    tcase_add_test(tc, test_udp_ipv4_mapped_destination_goes_out_as_ipv4);
    tcase_add_test(tc, test_udp_ipv4_mapped_client_and_local_use_an_ipv4_socket);
    tcase_add_test(tc, test_udp_client_facing_port_comes_from_configured_range);
    tcase_add_test(tc, test_udp_start_fails_when_port_range_is_exhausted);
    tcase_add_test(tc, test_udp_name_destination_is_resolved_and_remembered);
    tcase_add_test(tc, test_udp_name_with_both_families_goes_to_ipv4);
    tcase_add_test(tc, test_udp_ipv6_only_name_goes_to_ipv6);
    tcase_add_test(tc, test_udp_unknown_name_counts_drop_resolve_and_association_lives_on);
    tcase_add_test(tc, test_udp_names_too_long_or_unqueryable_are_dropped_without_a_query);
    tcase_add_test(tc, test_udp_queue_for_names_is_bounded);
    tcase_add_test(tc, test_udp_free_with_name_resolution_pending_runs_no_callback);
    tcase_add_test(tc, test_udp_frag_nonzero_is_dropped_and_next_datagram_works);
    tcase_add_test(tc, test_udp_malformed_headers_are_counted_and_dropped);
    tcase_add_test(tc, test_udp_datagram_from_other_ip_is_dropped_as_stranger);
    tcase_add_test(tc, test_udp_fixed_client_port_rejects_other_ports);
    tcase_add_test(tc, test_udp_first_datagram_fixes_learned_port);
    tcase_add_test(tc, test_udp_reply_from_unknown_sender_is_filtered);
    tcase_add_test(tc, test_udp_any_sender_relays_unknown_sender);
    tcase_add_test(tc, test_udp_filter_allows_other_port_of_a_known_ip);
    tcase_add_test(tc, test_udp_filter_forgets_oldest_of_more_than_64_destinations);
    tcase_add_test(tc, test_udp_filter_address_port_drops_other_port_of_a_known_ip);
    tcase_add_test(tc, test_udp_filter_address_port_forgets_oldest_of_more_than_64_ports);
    tcase_add_test(tc, test_udp_thousand_datagrams_come_back_intact);
    tcase_add_test(tc, test_udp_reply_too_large_for_header_is_dropped_as_oversize);
    tcase_add_test(tc, test_udp_send_failure_counts_drop_send);
    tcase_add_test(tc, test_udp_last_activity_moves_with_relayed_datagrams_only);
    tcase_add_test(tc, test_udp_flood_is_read_in_bounded_batches_and_counted);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(udp_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
