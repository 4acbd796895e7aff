/*
 * Tests for the resolver (src/resolver.c) with real sockets: each test starts a small UDP DNS
 * server of its own on 127.0.0.1, driven by the same libev loop as the resolver, and points
 * c-ares at it.
 */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fakedns.h"
#include "ferry/resolver.h"

/* ---- the DNS server (fakedns.h) ----------------------------------------------------------- */

static const struct fakedns_name zone_template[] = {
    {.name = "a.test", .ttl = 300, .a = {"192.0.2.1"}, .aaaa = {"2001:db8::1"}},
    {.name = "b.test", .ttl = 300, .a = {"192.0.2.11"}, .aaaa = {"2001:db8::11"}},
    {.name = "v4.test", .ttl = 300, .a = {"192.0.2.4"}},
    {.name = "ttl1.test", .ttl = 1, .a = {"192.0.2.2"}},
    {.name = "ttl0.test", .ttl = 0, .a = {"192.0.2.3"}},
    {.name = "nodata.test", .ttl = 300},
    {.name = "nx.test", .rcode = FAKEDNS_NXDOMAIN},
    {.name = "fail.test", .rcode = FAKEDNS_SERVFAIL},
    {.name = "slow.test", .drop = true},
    {.name = "cname.test", .ttl = 1, .cname = "a.test"},
    /* reverse zones: 192.0.2.1, 2001:db8::1, 192.0.2.66 (SERVFAIL), 192.0.2.77 (dropped) */
    {.name = "1.2.0.192.in-addr.arpa", .ttl = 300, .ptr = "a.test"},
    {.name = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
     .ttl = 300,
     .ptr = "v6.test"},
    {.name = "66.2.0.192.in-addr.arpa", .rcode = FAKEDNS_SERVFAIL},
    {.name = "77.2.0.192.in-addr.arpa", .drop = true},
    {.name = "many.test",
     .ttl = 300,
     .a = {"192.0.2.101", "192.0.2.102", "192.0.2.103", "192.0.2.104", "192.0.2.105", "192.0.2.106",
           "192.0.2.107", "192.0.2.108", "192.0.2.109", "192.0.2.110", "192.0.2.111",
           "192.0.2.112"},
     .aaaa = {"2001:db8::101", "2001:db8::102", "2001:db8::103", "2001:db8::104", "2001:db8::105",
              "2001:db8::106", "2001:db8::107", "2001:db8::108", "2001:db8::109", "2001:db8::110",
              "2001:db8::111", "2001:db8::112"}},
};

#define NZONE (sizeof(zone_template) / sizeof(zone_template[0]))

static struct ev_loop *loop;
static struct fakedns server;
static struct resolver *resolver;

static struct fakedns_name *zone_find(const char *name)
{
    return fakedns_find(&server, name);
}

static void server_start(void)
{
    ck_assert_int_eq(fakedns_start(&server, loop, zone_template, NZONE), 0);
}

static void server_stop(void)
{
    fakedns_stop(&server);
}

static unsigned queries_for(const char *name)
{
    struct fakedns_name *z = zone_find(name);

    ck_assert_ptr_nonnull(z);
    return z->queries_a + z->queries_aaaa;
}

/* ---- loop helpers ------------------------------------------------------------------------- */

static void on_guard(struct ev_loop *l, ev_timer *w, int revents)
{
    (void)l;
    (void)revents;
    *(int *)w->data = 1;
}

/* Run the loop until *counter reaches want or `limit` seconds pass; true when it was reached. */
static bool run_until(const int *counter, int want, double limit)
{
    ev_timer guard;
    int expired = 0;

    ev_timer_init(&guard, on_guard, limit, 0.);
    guard.data = &expired;
    ev_timer_start(loop, &guard);
    while (*counter < want && !expired)
        ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &guard);
    return *counter >= want;
}

/* Run the loop for `seconds`, whatever happens. */
static void run_for(double seconds)
{
    int never = 0;

    (void)run_until(&never, 1, seconds);
}

/* Every callback lands in one of these. */
struct got {
    int calls;
    struct resolver_result res;
};

static void on_result(const struct resolver_result *res, void *arg)
{
    struct got *g = arg;

    g->calls++;
    g->res = *res;
}

static struct resolver_options default_options(void)
{
    static const uint8_t lo4[4] = {127, 0, 0, 1};
    static struct addr servers[1];
    struct resolver_options opt;

    addr_from_ipv4(&servers[0], lo4, server.port);
    memset(&opt, 0, sizeof(opt));
    opt.servers = servers;
    opt.nservers = 1;
    opt.timeout = 1.0;
    opt.tries = 2;
    opt.cache_size = 64;
    opt.negative_ttl = 30;
    opt.max_ttl = 3600;
    return opt;
}

static struct resolver *make_resolver(const struct resolver_options *opt)
{
    char err[256] = "";
    struct resolver *r = resolver_new(loop, opt, err, sizeof(err));

    ck_assert_msg(r != NULL, "resolver_new: %s", err);
    return r;
}

static void setup(void)
{
    struct resolver_options opt;

    loop = ev_loop_new(EVFLAG_AUTO);
    ck_assert_ptr_nonnull(loop);
    server_start();
    opt = default_options();
    resolver = make_resolver(&opt);
}

static void teardown(void)
{
    resolver_free(resolver);
    resolver = NULL;
    server_stop();
    ev_loop_destroy(loop);
    loop = NULL;
}

/* Replace the fixture's resolver with one built from opt. */
static void use_options(const struct resolver_options *opt)
{
    resolver_free(resolver);
    resolver = make_resolver(opt);
}

static struct resolver_query *lookup(const char *name, struct got *g)
{
    struct resolver_query *q = resolver_lookup(resolver, name, on_result, g);

    ck_assert_msg(q != NULL, "resolver_lookup(%s): %s", name, strerror(errno));
    ck_assert_msg(g->calls == 0, "callback for %s ran inside resolver_lookup", name);
    return q;
}

/* Look a name up and wait for its answer. */
static struct resolver_result resolve(const char *name)
{
    struct got g = {0};

    lookup(name, &g);
    ck_assert_msg(run_until(&g.calls, 1, 3.0), "no answer for %s", name);
    ck_assert_int_eq(g.calls, 1);
    return g.res;
}

static bool result_has(const struct resolver_result *res, const char *ip)
{
    char buf[ADDR_STRLEN];

    for (size_t i = 0; i < res->count; i++) {
        if (strcmp(addr_format_ip(&res->addrs[i], buf, sizeof(buf)), ip) == 0)
            return true;
    }
    return false;
}

static size_t count_family(const struct resolver_result *res, int family)
{
    size_t n = 0;

    for (size_t i = 0; i < res->count; i++)
        n += addr_family(&res->addrs[i]) == family;
    return n;
}

/* ---- answers ------------------------------------------------------------------------------ */

START_TEST(test_resolver_a_and_aaaa_answer_gives_both_addresses)
{
    struct resolver_result res = resolve("a.test");

    ck_assert_int_eq(res.status, RESOLVER_OK);
    ck_assert_uint_eq(res.count, 2);
    ck_assert(result_has(&res, "192.0.2.1"));
    ck_assert(result_has(&res, "2001:db8::1"));
    for (size_t i = 0; i < res.count; i++)
        ck_assert_uint_eq(addr_port(&res.addrs[i]), 0);
    ck_assert_uint_eq(server.zone[0].queries_a, 1);
    ck_assert_uint_eq(server.zone[0].queries_aaaa, 1);
}
END_TEST

START_TEST(test_resolver_ipv4_only_name_gives_one_address)
{
    struct resolver_result res = resolve("v4.test");

    ck_assert_int_eq(res.status, RESOLVER_OK);
    ck_assert_uint_eq(res.count, 1);
    ck_assert(result_has(&res, "192.0.2.4"));
}
END_TEST

START_TEST(test_resolver_name_with_trailing_dot_resolves)
{
    struct resolver_result res = resolve("a.test.");

    ck_assert_int_eq(res.status, RESOLVER_OK);
    ck_assert(result_has(&res, "192.0.2.1"));
}
END_TEST

START_TEST(test_resolver_many_addresses_keep_both_families)
{
    struct resolver_result res = resolve("many.test");

    ck_assert_int_eq(res.status, RESOLVER_OK);
    ck_assert_uint_eq(res.count, RESOLVER_MAX_ADDRS);
    ck_assert_uint_eq(count_family(&res, AF_INET), RESOLVER_MAX_ADDRS / 2);
    ck_assert_uint_eq(count_family(&res, AF_INET6), RESOLVER_MAX_ADDRS / 2);
}
END_TEST

START_TEST(test_resolver_nxdomain_maps_to_nxdomain)
{
    struct resolver_result res = resolve("nx.test");

    ck_assert_int_eq(res.status, RESOLVER_NXDOMAIN);
    ck_assert_uint_eq(res.count, 0);
}
END_TEST

START_TEST(test_resolver_empty_answer_maps_to_nodata)
{
    struct resolver_result res = resolve("nodata.test");

    ck_assert_int_eq(res.status, RESOLVER_NODATA);
    ck_assert_uint_eq(res.count, 0);
}
END_TEST

START_TEST(test_resolver_servfail_maps_to_servfail)
{
    struct resolver_result res = resolve("fail.test");

    ck_assert_int_eq(res.status, RESOLVER_SERVFAIL);
    ck_assert_uint_eq(res.count, 0);
}
END_TEST

START_TEST(test_resolver_unanswered_query_times_out)
{
    struct resolver_options opt = default_options();
    struct got g = {0};
    double start;

    opt.timeout = 0.2;
    opt.tries = 1;
    use_options(&opt);
    start = ev_time();
    lookup("slow.test", &g);
    ck_assert(run_until(&g.calls, 1, 3.0));
    ck_assert_int_eq(g.res.status, RESOLVER_TIMEOUT);
    ck_assert_uint_eq(g.res.count, 0);
    ck_assert_double_ge(ev_time() - start, 0.15);
    ck_assert_double_lt(ev_time() - start, 1.5);
    /* The channel still works after a timeout. */
    ck_assert_int_eq(resolve("a.test").status, RESOLVER_OK);
}
END_TEST

/* ---- cache -------------------------------------------------------------------------------- */

START_TEST(test_resolver_cache_hit_sends_no_query_and_is_async)
{
    struct resolver_result first = resolve("a.test"), second;
    struct got g = {0};

    ck_assert_uint_eq(queries_for("a.test"), 2);
    lookup("a.test", &g); /* asserts the callback did not run inside */
    ck_assert(run_until(&g.calls, 1, 1.0));
    second = g.res;
    ck_assert_uint_eq(queries_for("a.test"), 2);
    ck_assert_int_eq(second.status, RESOLVER_OK);
    ck_assert_uint_eq(second.count, first.count);
    ck_assert(result_has(&second, "192.0.2.1"));
    ck_assert(result_has(&second, "2001:db8::1"));
}
END_TEST

START_TEST(test_resolver_cache_is_case_insensitive)
{
    ck_assert_int_eq(resolve("a.test").status, RESOLVER_OK);
    ck_assert_int_eq(resolve("A.TeSt").status, RESOLVER_OK);
    ck_assert_uint_eq(queries_for("a.test"), 2);
}
END_TEST

START_TEST(test_resolver_max_ttl_caps_cache_lifetime)
{
    struct resolver_options opt = default_options();

    opt.max_ttl = 0.2;
    use_options(&opt);
    ck_assert_int_eq(resolve("a.test").status, RESOLVER_OK);
    ck_assert_int_eq(resolve("a.test").status, RESOLVER_OK);
    ck_assert_uint_eq(queries_for("a.test"), 2);
    run_for(0.3);
    ck_assert_int_eq(resolve("a.test").status, RESOLVER_OK);
    ck_assert_uint_eq(queries_for("a.test"), 4);
}
END_TEST

/* ttl1.test has an A record with TTL 1; cname.test a CNAME with TTL 1 to a.test (TTL 300). */
START_TEST(test_resolver_answer_and_cname_ttls_bound_cache_lifetime)
{
    struct resolver_result res = resolve("cname.test");

    ck_assert_int_eq(res.status, RESOLVER_OK);
    ck_assert(result_has(&res, "192.0.2.1"));
    ck_assert(result_has(&res, "2001:db8::1"));
    ck_assert_int_eq(resolve("ttl1.test").status, RESOLVER_OK);
    ck_assert_uint_eq(queries_for("ttl1.test"), 2);
    ck_assert_uint_eq(queries_for("cname.test"), 2);
    run_for(0.5);
    ck_assert_int_eq(resolve("ttl1.test").status, RESOLVER_OK);
    ck_assert_int_eq(resolve("cname.test").status, RESOLVER_OK);
    ck_assert_uint_eq(queries_for("ttl1.test"), 2);
    ck_assert_uint_eq(queries_for("cname.test"), 2);
    run_for(0.6);
    ck_assert_int_eq(resolve("ttl1.test").status, RESOLVER_OK);
    ck_assert_int_eq(resolve("cname.test").status, RESOLVER_OK);
    ck_assert_uint_eq(queries_for("ttl1.test"), 4);
    ck_assert_uint_eq(queries_for("cname.test"), 4);
}
END_TEST

START_TEST(test_resolver_ttl_zero_answer_is_not_cached)
{
    ck_assert_int_eq(resolve("ttl0.test").status, RESOLVER_OK);
    ck_assert_int_eq(resolve("ttl0.test").status, RESOLVER_OK);
    ck_assert_uint_eq(queries_for("ttl0.test"), 4);
}
END_TEST

START_TEST(test_resolver_cache_size_zero_disables_cache)
{
    struct resolver_options opt = default_options();

    opt.cache_size = 0;
    use_options(&opt);
    ck_assert_int_eq(resolve("a.test").status, RESOLVER_OK);
    ck_assert_int_eq(resolve("a.test").status, RESOLVER_OK);
    ck_assert_uint_eq(queries_for("a.test"), 4);
}
END_TEST

START_TEST(test_resolver_negative_answer_is_cached_for_negative_ttl)
{
    struct resolver_options opt = default_options();

    opt.negative_ttl = 0.3;
    use_options(&opt);
    ck_assert_int_eq(resolve("nx.test").status, RESOLVER_NXDOMAIN);
    ck_assert_uint_eq(queries_for("nx.test"), 2);
    ck_assert_int_eq(resolve("nx.test").status, RESOLVER_NXDOMAIN);
    ck_assert_int_eq(resolve("nodata.test").status, RESOLVER_NODATA);
    ck_assert_int_eq(resolve("nodata.test").status, RESOLVER_NODATA);
    ck_assert_uint_eq(queries_for("nx.test"), 2);
    ck_assert_uint_eq(queries_for("nodata.test"), 2);
    run_for(0.35);
    ck_assert_int_eq(resolve("nx.test").status, RESOLVER_NXDOMAIN);
    ck_assert_uint_eq(queries_for("nx.test"), 4);
}
END_TEST

START_TEST(test_resolver_servfail_is_not_cached)
{
    unsigned first;

    ck_assert_int_eq(resolve("fail.test").status, RESOLVER_SERVFAIL);
    first = queries_for("fail.test");
    ck_assert_uint_gt(first, 0);
    ck_assert_int_eq(resolve("fail.test").status, RESOLVER_SERVFAIL);
    ck_assert_uint_eq(queries_for("fail.test"), 2 * first);
}
END_TEST

START_TEST(test_resolver_timeout_is_not_cached)
{
    struct resolver_options opt = default_options();

    opt.timeout = 0.1;
    opt.tries = 1;
    use_options(&opt);
    ck_assert_int_eq(resolve("slow.test").status, RESOLVER_TIMEOUT);
    ck_assert_uint_eq(queries_for("slow.test"), 2);
    ck_assert_int_eq(resolve("slow.test").status, RESOLVER_TIMEOUT);
    ck_assert_uint_eq(queries_for("slow.test"), 4);
}
END_TEST

/* ---- coalescing and cancel ---------------------------------------------------------------- */

START_TEST(test_resolver_identical_lookups_share_one_query)
{
    struct got g[10];

    memset(g, 0, sizeof(g));
    for (int i = 0; i < 10; i++)
        lookup(i % 2 ? "a.test" : "A.Test", &g[i]);
    for (int i = 0; i < 10; i++) {
        ck_assert(run_until(&g[i].calls, 1, 3.0));
    }
    run_for(0.05);
    ck_assert_uint_eq(server.zone[0].queries_a, 1);
    ck_assert_uint_eq(server.zone[0].queries_aaaa, 1);
    for (int i = 0; i < 10; i++) {
        ck_assert_int_eq(g[i].calls, 1);
        ck_assert_int_eq(g[i].res.status, RESOLVER_OK);
        ck_assert_uint_eq(g[i].res.count, 2);
    }
}
END_TEST

START_TEST(test_resolver_different_names_are_not_merged)
{
    struct got ga = {0}, gb = {0};

    lookup("a.test", &ga);
    lookup("b.test", &gb);
    ck_assert(run_until(&ga.calls, 1, 3.0));
    ck_assert(run_until(&gb.calls, 1, 3.0));
    ck_assert(result_has(&ga.res, "192.0.2.1"));
    ck_assert(result_has(&gb.res, "192.0.2.11"));
    ck_assert(!result_has(&gb.res, "192.0.2.1"));
}
END_TEST

/* More names in flight than the in-flight table starts with, each asked for twice. */
START_TEST(test_resolver_many_names_in_flight_are_all_answered)
{
    enum { NAMES = 100 }; /* 200 datagrams: within the server socket's default buffer */
    static struct got g[2 * NAMES];
    int total = 0;
    char name[32];

    memset(g, 0, sizeof(g));
    for (int i = 0; i < 2 * NAMES; i++) {
        snprintf(name, sizeof(name), "host%d.test", i % NAMES);
        lookup(name, &g[i]);
    }
    for (double end = ev_time() + 3.0; total < 2 * NAMES && ev_time() < end;) {
        run_for(0.01);
        total = 0;
        for (int i = 0; i < 2 * NAMES; i++)
            total += g[i].calls;
    }
    ck_assert_int_eq(total, 2 * NAMES);
    for (int i = 0; i < 2 * NAMES; i++) {
        ck_assert_int_eq(g[i].calls, 1);
        ck_assert_int_eq(g[i].res.status, RESOLVER_NXDOMAIN);
    }
    ck_assert_uint_eq(server.queries, 2 * NAMES); /* A and AAAA per name */
}
END_TEST

START_TEST(test_resolver_cancelled_waiter_gets_no_callback)
{
    struct got g[3];
    struct resolver_query *q[3];

    memset(g, 0, sizeof(g));
    for (int i = 0; i < 3; i++)
        q[i] = lookup("a.test", &g[i]);
    resolver_cancel(q[1]);
    ck_assert(run_until(&g[0].calls, 1, 3.0));
    ck_assert(run_until(&g[2].calls, 1, 3.0));
    run_for(0.05);
    ck_assert_int_eq(g[0].calls, 1);
    ck_assert_int_eq(g[1].calls, 0);
    ck_assert_int_eq(g[2].calls, 1);
    ck_assert_int_eq(g[2].res.status, RESOLVER_OK);
}
END_TEST

START_TEST(test_resolver_cancel_of_ready_answer_gets_no_callback)
{
    struct got lit = {0}, hit = {0}, bad = {0};

    ck_assert_int_eq(resolve("a.test").status, RESOLVER_OK);
    resolver_cancel(lookup("192.0.2.9", &lit));
    resolver_cancel(lookup("a.test", &hit));
    resolver_cancel(lookup("bad name", &bad));
    run_for(0.05);
    ck_assert_int_eq(lit.calls, 0);
    ck_assert_int_eq(hit.calls, 0);
    ck_assert_int_eq(bad.calls, 0);
}
END_TEST

START_TEST(test_resolver_cancelled_lone_query_still_fills_cache)
{
    struct got g = {0};

    resolver_cancel(lookup("a.test", &g));
    run_for(0.2);
    ck_assert_int_eq(g.calls, 0);
    ck_assert_uint_eq(queries_for("a.test"), 2);
    ck_assert_int_eq(resolve("a.test").status, RESOLVER_OK);
    ck_assert_uint_eq(queries_for("a.test"), 2);
}
END_TEST

/* A callback that cancels another query of the same answer, and one that starts a lookup. */
struct chain {
    struct got got;
    struct resolver_query *cancel_me;
    struct got *relookup;
};

static void on_result_chain(const struct resolver_result *res, void *arg)
{
    struct chain *c = arg;

    on_result(res, &c->got);
    if (c->cancel_me != NULL) {
        resolver_cancel(c->cancel_me);
        c->cancel_me = NULL;
    }
    if (c->relookup != NULL) {
        ck_assert_ptr_nonnull(resolver_lookup(resolver, "a.test", on_result, c->relookup));
        ck_assert_int_eq(c->relookup->calls, 0);
        c->relookup = NULL;
    }
}

START_TEST(test_resolver_callback_may_cancel_other_waiter_of_same_name)
{
    struct chain first = {0}, second = {0}, third = {0};
    struct resolver_query *q3;

    ck_assert_ptr_nonnull(resolver_lookup(resolver, "a.test", on_result_chain, &first));
    ck_assert_ptr_nonnull(resolver_lookup(resolver, "a.test", on_result_chain, &second));
    q3 = resolver_lookup(resolver, "a.test", on_result_chain, &third);
    ck_assert_ptr_nonnull(q3);
    first.cancel_me = q3;
    ck_assert(run_until(&second.got.calls, 1, 3.0));
    run_for(0.05);
    ck_assert_int_eq(first.got.calls, 1);
    ck_assert_int_eq(second.got.calls, 1);
    ck_assert_int_eq(third.got.calls, 0);
}
END_TEST

START_TEST(test_resolver_cancel_from_own_callback_is_ignored)
{
    struct chain self = {0};
    struct resolver_query *q = resolver_lookup(resolver, "192.0.2.1", on_result_chain, &self);

    ck_assert_ptr_nonnull(q);
    self.cancel_me = q;
    ck_assert(run_until(&self.got.calls, 1, 1.0));
    run_for(0.02);
    ck_assert_int_eq(self.got.calls, 1);
}
END_TEST

START_TEST(test_resolver_callback_may_start_new_lookup)
{
    struct chain first = {0};
    struct got again = {0};

    first.relookup = &again;
    ck_assert_ptr_nonnull(resolver_lookup(resolver, "a.test", on_result_chain, &first));
    ck_assert(run_until(&again.calls, 1, 3.0));
    ck_assert_int_eq(first.got.calls, 1);
    ck_assert_int_eq(again.res.status, RESOLVER_OK);
    ck_assert_uint_eq(queries_for("a.test"), 2);
}
END_TEST

/* ---- answers without a query -------------------------------------------------------------- */

START_TEST(test_resolver_ip_literals_are_answered_without_query)
{
    struct resolver_result v4 = resolve("127.0.0.1");
    struct resolver_result v6 = resolve("::1");
    struct resolver_result doc = resolve("2001:db8::5");

    ck_assert_int_eq(v4.status, RESOLVER_OK);
    ck_assert_uint_eq(v4.count, 1);
    ck_assert_int_eq(addr_family(&v4.addrs[0]), AF_INET);
    ck_assert(result_has(&v4, "127.0.0.1"));
    ck_assert_uint_eq(addr_port(&v4.addrs[0]), 0);
    ck_assert_int_eq(v6.status, RESOLVER_OK);
    ck_assert_uint_eq(v6.count, 1);
    ck_assert_int_eq(addr_family(&v6.addrs[0]), AF_INET6);
    ck_assert(result_has(&v6, "::1"));
    ck_assert(result_has(&doc, "2001:db8::5"));
    ck_assert_uint_eq(server.queries, 0);
}
END_TEST

START_TEST(test_resolver_invalid_names_fail_with_badname)
{
    char long_name[300], long_label[80];
    const char *names[] = {"",
                           "a b",
                           "a..b",
                           ".a",
                           "a\tb",
                           "a\x01"
                           "b",
                           "bad\\name",
                           "\x7f",
                           ".",
                           long_name,
                           long_label};

    memset(long_name, 'a', sizeof(long_name));
    for (size_t i = 1; i < 256; i += 2)
        long_name[i] = '.';
    long_name[256] = '\0';
    memset(long_label, 'b', sizeof(long_label));
    memcpy(long_label + 64, ".test", 6);
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        struct resolver_result res = resolve(names[i]);
        ck_assert_msg(res.status == RESOLVER_BADNAME, "name %zu: %s", i,
                      resolver_status_name(res.status));
        ck_assert_uint_eq(res.count, 0);
    }
    ck_assert_uint_eq(server.queries, 0);
}
END_TEST

START_TEST(test_resolver_longest_valid_name_is_queried)
{
    char name[256];

    /* 63 + 1 + 63 + 1 + 63 + 1 + 61 = 253 bytes, plus a trailing dot. */
    memset(name, 'c', sizeof(name));
    name[63] = name[127] = name[191] = '.';
    name[253] = '.';
    name[254] = '\0';
    ck_assert_int_eq(resolve(name).status, RESOLVER_NXDOMAIN);
    ck_assert_uint_gt(server.queries, 0);
}
END_TEST

/*
 * 254 and 255 bytes of text (a SOCKS5 name may have 255) do not fit in 255 bytes of wire form
 * (c-ares would answer ARES_EBADNAME): refused without a query, as a bad name, not an error.
 */
START_TEST(test_resolver_254_and_255_byte_names_fail_with_badname_without_query)
{
    char name[256];

    for (size_t len = 254; len <= 255; len++) {
        memset(name, 'c', sizeof(name));
        name[63] = name[127] = name[191] = '.';
        name[len] = '\0';
        ck_assert_int_eq(resolve(name).status, RESOLVER_BADNAME);
    }
    /* 254 bytes with the trailing dot is the 253-byte name: valid. */
    memset(name, 'c', sizeof(name));
    name[63] = name[127] = name[191] = '.';
    name[253] = '.';
    name[254] = '\0';
    ck_assert_uint_eq(server.queries, 0);
    ck_assert_int_eq(resolve(name).status, RESOLVER_NXDOMAIN);
}
END_TEST

/* c-ares answers "localhost" from the hosts file or its built-in fallback, inside
 * ares_getaddrinfo; the answer must still come from the loop. */
START_TEST(test_resolver_synchronous_c_ares_answer_is_deferred)
{
    struct resolver_result res = resolve("localhost");

    ck_assert_int_eq(res.status, RESOLVER_OK);
    ck_assert_uint_ge(res.count, 1);
    ck_assert_uint_eq(server.queries, 0);
}
END_TEST

/* c-ares 1.18 rejects .onion names (RFC 7686 2) inside ares_getaddrinfo, without a query. */
START_TEST(test_resolver_onion_name_is_nxdomain_without_query)
{
    struct resolver_result res = resolve("hidden.onion");

    ck_assert_int_eq(res.status, RESOLVER_NXDOMAIN);
    ck_assert_uint_eq(server.queries, 0);
}
END_TEST

/* LOCALDOMAIN sets a search list when c-ares reads the environment; we ask for none. */
START_TEST(test_resolver_search_domains_are_not_applied)
{
    struct resolver_options opt = default_options();

    setenv("LOCALDOMAIN", "example.org corp.test", 1);
    use_options(&opt);
    unsetenv("LOCALDOMAIN");
    ck_assert_int_eq(resolve("nx.test").status, RESOLVER_NXDOMAIN);
    ck_assert_int_eq(resolve("single").status, RESOLVER_NXDOMAIN);
    ck_assert_uint_eq(queries_for("nx.test"), 2);
    ck_assert_uint_eq(server.queries, 4);
}
END_TEST

/* ---- freeing ------------------------------------------------------------------------------ */

START_TEST(test_resolver_free_with_queries_in_flight_runs_no_callback)
{
    struct got g[5];

    memset(g, 0, sizeof(g));
    ck_assert_int_eq(resolve("b.test").status, RESOLVER_OK);
    lookup("slow.test", &g[0]);
    lookup("slow.test", &g[1]);
    run_for(0.05); /* the queries for slow.test reach the server, which never answers */
    ck_assert_uint_eq(queries_for("slow.test"), 2);
    lookup("a.test", &g[2]);    /* in flight */
    lookup("127.0.0.1", &g[3]); /* ready */
    lookup("b.test", &g[4]);    /* ready, from the cache */
    resolver_free(resolver);
    resolver = NULL;
    run_for(0.1);
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(g[i].calls, 0);
}
END_TEST

START_TEST(test_resolver_free_right_after_lookup_runs_no_callback)
{
    struct got g = {0};

    lookup("a.test", &g);
    resolver_free(resolver);
    resolver = NULL;
    run_for(0.1);
    ck_assert_int_eq(g.calls, 0);
}
END_TEST

static void on_result_free_resolver(const struct resolver_result *res, void *arg)
{
    on_result(res, arg);
    resolver_free(resolver);
    resolver = NULL;
}

START_TEST(test_resolver_free_from_callback_stops_other_callbacks)
{
    struct got first = {0}, second = {0}, third = {0};

    ck_assert_ptr_nonnull(resolver_lookup(resolver, "192.0.2.1", on_result_free_resolver, &first));
    lookup("192.0.2.2", &second);
    lookup("slow.test", &third);
    ck_assert(run_until(&first.calls, 1, 1.0));
    run_for(0.1);
    ck_assert_ptr_null(resolver);
    ck_assert_int_eq(second.calls, 0);
    ck_assert_int_eq(third.calls, 0);
}
END_TEST

/* ---- reverse lookups ---------------------------------------------------------------------- */

struct got_ptr {
    int calls;
    enum resolver_status status;
    bool name_null;
    char name[300];
};

static void on_ptr(enum resolver_status status, const char *name, void *arg)
{
    struct got_ptr *g = arg;

    g->calls++;
    g->status = status;
    g->name_null = name == NULL;
    snprintf(g->name, sizeof(g->name), "%s", name != NULL ? name : "");
}

static struct addr ip_addr(const char *ip)
{
    struct addr a;

    ck_assert_msg(addr_parse(ip, 0, &a) == 0, "bad test address %s", ip);
    return a;
}

static struct resolver_query *lookup_ptr(const char *ip, struct got_ptr *g)
{
    struct addr a = ip_addr(ip);
    struct resolver_query *q = resolver_lookup_ptr(resolver, &a, on_ptr, g);

    ck_assert_msg(q != NULL, "resolver_lookup_ptr(%s): %s", ip, strerror(errno));
    ck_assert_msg(g->calls == 0, "callback for %s ran inside resolver_lookup_ptr", ip);
    return q;
}

/* Reverse-resolve ip and wait for the answer. */
static struct got_ptr resolve_ptr(const char *ip)
{
    struct got_ptr g = {0};

    lookup_ptr(ip, &g);
    ck_assert_msg(run_until(&g.calls, 1, 4.0), "no reverse answer for %s", ip);
    ck_assert_int_eq(g.calls, 1);
    return g;
}

static unsigned ptr_queries_for(const char *name)
{
    struct fakedns_name *z = zone_find(name);

    ck_assert_ptr_nonnull(z);
    return z->queries_ptr;
}

#define PTR6_NAME "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"

START_TEST(test_resolver_ptr_ipv4_answer_gives_name)
{
    struct got_ptr g = resolve_ptr("192.0.2.1");

    ck_assert_int_eq(g.status, RESOLVER_OK);
    ck_assert(!g.name_null);
    ck_assert_str_eq(g.name, "a.test");
    ck_assert_uint_eq(ptr_queries_for("1.2.0.192.in-addr.arpa"), 1);
}
END_TEST

START_TEST(test_resolver_ptr_ipv6_answer_gives_name)
{
    struct got_ptr g = resolve_ptr("2001:db8::1");

    ck_assert_int_eq(g.status, RESOLVER_OK);
    ck_assert_str_eq(g.name, "v6.test");
    ck_assert_uint_eq(ptr_queries_for(PTR6_NAME), 1);
}
END_TEST

START_TEST(test_resolver_ptr_ipv4_mapped_address_asks_in_addr_arpa)
{
    struct got_ptr g = resolve_ptr("::ffff:192.0.2.1");

    ck_assert_int_eq(g.status, RESOLVER_OK);
    ck_assert_str_eq(g.name, "a.test");
    ck_assert_uint_eq(ptr_queries_for("1.2.0.192.in-addr.arpa"), 1);
}
END_TEST

START_TEST(test_resolver_ptr_nxdomain_maps_to_nxdomain_without_name)
{
    struct got_ptr g = resolve_ptr("192.0.2.99");

    ck_assert_int_eq(g.status, RESOLVER_NXDOMAIN);
    ck_assert(g.name_null);
    ck_assert_uint_eq(server.queries, 1);

    g = resolve_ptr("2001:db8::2");
    ck_assert_int_eq(g.status, RESOLVER_NXDOMAIN);
    ck_assert(g.name_null);
}
END_TEST

/* c-ares turns every DNS failure of a reverse lookup into ENOTFOUND: it only has to fail. */
START_TEST(test_resolver_ptr_servfail_fails_without_name)
{
    struct got_ptr g = resolve_ptr("192.0.2.66");

    ck_assert_int_ne(g.status, RESOLVER_OK);
    ck_assert(g.name_null);
    ck_assert_uint_ge(ptr_queries_for("66.2.0.192.in-addr.arpa"), 1);
}
END_TEST

START_TEST(test_resolver_ptr_unanswered_query_fails)
{
    struct resolver_options opt = default_options();
    struct got_ptr g = {0};

    opt.timeout = 0.2;
    opt.tries = 1;
    use_options(&opt);
    lookup_ptr("192.0.2.77", &g);
    ck_assert(run_until(&g.calls, 1, 3.0));
    ck_assert_int_ne(g.status, RESOLVER_OK);
    ck_assert(g.name_null);
    ck_assert_uint_eq(ptr_queries_for("77.2.0.192.in-addr.arpa"), 1);
}
END_TEST

START_TEST(test_resolver_ptr_answers_are_not_cached_or_merged)
{
    struct got_ptr g1 = {0}, g2 = {0};

    lookup_ptr("192.0.2.1", &g1);
    lookup_ptr("192.0.2.1", &g2);
    ck_assert(run_until(&g2.calls, 1, 3.0));
    ck_assert(run_until(&g1.calls, 1, 3.0));
    ck_assert_str_eq(g1.name, "a.test");
    ck_assert_str_eq(g2.name, "a.test");
    ck_assert_uint_eq(ptr_queries_for("1.2.0.192.in-addr.arpa"), 2);
    ck_assert_str_eq(resolve_ptr("192.0.2.1").name, "a.test");
    ck_assert_uint_eq(ptr_queries_for("1.2.0.192.in-addr.arpa"), 3);
}
END_TEST

/* 127.0.0.1 is in /etc/hosts: c-ares answers inside ares_gethostbyaddr, we from the loop. */
START_TEST(test_resolver_ptr_hosts_file_answer_is_deferred)
{
    struct got_ptr g = resolve_ptr("127.0.0.1");

    ck_assert_int_eq(g.status, RESOLVER_OK);
    ck_assert(!g.name_null);
    ck_assert_uint_gt(strlen(g.name), 0);
    ck_assert_uint_eq(server.queries, 0);
}
END_TEST

START_TEST(test_resolver_ptr_cancelled_query_gets_no_callback)
{
    struct got_ptr slow = {0}, fast = {0}, after = {0};
    struct resolver_query *q;

    q = lookup_ptr("192.0.2.77", &slow);
    run_for(0.05);
    ck_assert_uint_eq(ptr_queries_for("77.2.0.192.in-addr.arpa"), 1);
    resolver_cancel(q);
    /* Cancelled while its answer is already on the ready list. */
    q = lookup_ptr("127.0.0.1", &fast);
    resolver_cancel(q);
    lookup_ptr("192.0.2.1", &after);
    ck_assert(run_until(&after.calls, 1, 3.0));
    run_for(3.5); /* long enough for c-ares to give up on the dropped query */
    ck_assert_int_eq(slow.calls, 0);
    ck_assert_int_eq(fast.calls, 0);
    ck_assert_int_eq(after.calls, 1);
}
END_TEST

START_TEST(test_resolver_ptr_free_with_queries_in_flight_runs_no_callback)
{
    struct got_ptr g[3];
    struct got fwd = {0};

    memset(g, 0, sizeof(g));
    lookup_ptr("192.0.2.77", &g[0]);
    run_for(0.05);
    lookup_ptr("192.0.2.1", &g[1]); /* in flight */
    lookup_ptr("127.0.0.1", &g[2]); /* ready, from the hosts file */
    lookup("slow.test", &fwd);
    resolver_free(resolver);
    resolver = NULL;
    run_for(0.1);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(g[i].calls, 0);
    ck_assert_int_eq(fwd.calls, 0);
}
END_TEST

static void on_ptr_free_resolver(enum resolver_status status, const char *name, void *arg)
{
    on_ptr(status, name, arg);
    resolver_free(resolver);
    resolver = NULL;
}

START_TEST(test_resolver_ptr_free_from_callback_stops_other_callbacks)
{
    struct got_ptr first = {0}, second = {0};
    struct addr a = ip_addr("127.0.0.1");

    ck_assert_ptr_nonnull(resolver_lookup_ptr(resolver, &a, on_ptr_free_resolver, &first));
    lookup_ptr("127.0.0.1", &second);
    ck_assert(run_until(&first.calls, 1, 1.0));
    run_for(0.1);
    ck_assert_ptr_null(resolver);
    ck_assert_int_eq(second.calls, 0);
}
END_TEST

START_TEST(test_resolver_ptr_of_non_ip_address_fails_with_error_from_loop)
{
    struct addr a;
    struct got_ptr g = {0};

    memset(&a, 0, sizeof(a));
    a.u.sa.sa_family = AF_UNIX;
    ck_assert_ptr_nonnull(resolver_lookup_ptr(resolver, &a, on_ptr, &g));
    ck_assert_int_eq(g.calls, 0);
    ck_assert(run_until(&g.calls, 1, 1.0));
    ck_assert_int_eq(g.status, RESOLVER_ERROR);
    ck_assert(g.name_null);
    ck_assert_uint_eq(server.queries, 0);
}
END_TEST

START_TEST(test_resolver_ptr_without_callback_or_address_is_einval)
{
    struct addr a = ip_addr("192.0.2.1");

    errno = 0;
    ck_assert_ptr_null(resolver_lookup_ptr(resolver, &a, NULL, NULL));
    ck_assert_int_eq(errno, EINVAL);
    errno = 0;
    ck_assert_ptr_null(resolver_lookup_ptr(resolver, NULL, on_ptr, NULL));
    ck_assert_int_eq(errno, EINVAL);
    errno = 0;
    ck_assert_ptr_null(resolver_lookup_ptr(NULL, &a, on_ptr, NULL));
    ck_assert_int_eq(errno, EINVAL);
}
END_TEST

/* ---- options and names -------------------------------------------------------------------- */

/* conf.c parses the list; any address of either family with a port is taken. */
START_TEST(test_resolver_takes_ipv4_and_ipv6_servers)
{
    const char *good[] = {"[::1]:53", "[::1]:5353", "127.0.0.1:53", "[2001:db8::53]:53"};
    struct addr servers[4];

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        ck_assert_int_eq(addr_parse(good[i], 0, &servers[i]), 0);
    for (size_t n = 1; n <= sizeof(good) / sizeof(good[0]); n++) {
        struct resolver_options opt = default_options();
        char err[256] = "";
        struct resolver *r;

        opt.servers = servers + 4 - n;
        opt.nservers = n;
        r = resolver_new(loop, &opt, err, sizeof(err));
        ck_assert_msg(r != NULL, "refused %zu servers: %s", n, err);
        resolver_free(r);
    }
}
END_TEST

START_TEST(test_resolver_lookup_without_callback_is_einval)
{
    errno = 0;
    ck_assert_ptr_null(resolver_lookup(resolver, "a.test", NULL, NULL));
    ck_assert_int_eq(errno, EINVAL);
    ck_assert_ptr_null(resolver_lookup(resolver, NULL, on_result, NULL));
    resolver_cancel(NULL);
}
END_TEST

START_TEST(test_resolver_status_names_are_distinct)
{
    ck_assert_str_eq(resolver_status_name(RESOLVER_OK), "ok");
    ck_assert_str_eq(resolver_status_name(RESOLVER_NXDOMAIN), "nxdomain");
    ck_assert_str_eq(resolver_status_name(RESOLVER_NODATA), "nodata");
    ck_assert_str_eq(resolver_status_name(RESOLVER_TIMEOUT), "timeout");
    ck_assert_str_eq(resolver_status_name(RESOLVER_SERVFAIL), "servfail");
    ck_assert_str_eq(resolver_status_name(RESOLVER_BADNAME), "badname");
    ck_assert_str_eq(resolver_status_name(RESOLVER_ERROR), "error");
}
END_TEST

static Suite *resolver_suite(void)
{
    Suite *s = suite_create("resolver");
    TCase *tc = tcase_create("loopback");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 10);
    tcase_add_test(tc, test_resolver_a_and_aaaa_answer_gives_both_addresses);
    tcase_add_test(tc, test_resolver_ipv4_only_name_gives_one_address);
    tcase_add_test(tc, test_resolver_name_with_trailing_dot_resolves);
    tcase_add_test(tc, test_resolver_many_addresses_keep_both_families);
    tcase_add_test(tc, test_resolver_nxdomain_maps_to_nxdomain);
    tcase_add_test(tc, test_resolver_empty_answer_maps_to_nodata);
    tcase_add_test(tc, test_resolver_servfail_maps_to_servfail);
    tcase_add_test(tc, test_resolver_unanswered_query_times_out);
    tcase_add_test(tc, test_resolver_cache_hit_sends_no_query_and_is_async);
    tcase_add_test(tc, test_resolver_cache_is_case_insensitive);
    tcase_add_test(tc, test_resolver_max_ttl_caps_cache_lifetime);
    tcase_add_test(tc, test_resolver_answer_and_cname_ttls_bound_cache_lifetime);
    tcase_add_test(tc, test_resolver_ttl_zero_answer_is_not_cached);
    tcase_add_test(tc, test_resolver_cache_size_zero_disables_cache);
    tcase_add_test(tc, test_resolver_negative_answer_is_cached_for_negative_ttl);
    tcase_add_test(tc, test_resolver_servfail_is_not_cached);
    tcase_add_test(tc, test_resolver_timeout_is_not_cached);
    tcase_add_test(tc, test_resolver_identical_lookups_share_one_query);
    tcase_add_test(tc, test_resolver_different_names_are_not_merged);
    tcase_add_test(tc, test_resolver_many_names_in_flight_are_all_answered);
    tcase_add_test(tc, test_resolver_cancelled_waiter_gets_no_callback);
    tcase_add_test(tc, test_resolver_cancel_of_ready_answer_gets_no_callback);
    tcase_add_test(tc, test_resolver_cancelled_lone_query_still_fills_cache);
    tcase_add_test(tc, test_resolver_callback_may_cancel_other_waiter_of_same_name);
    tcase_add_test(tc, test_resolver_cancel_from_own_callback_is_ignored);
    tcase_add_test(tc, test_resolver_callback_may_start_new_lookup);
    tcase_add_test(tc, test_resolver_ip_literals_are_answered_without_query);
    tcase_add_test(tc, test_resolver_invalid_names_fail_with_badname);
    tcase_add_test(tc, test_resolver_longest_valid_name_is_queried);
    tcase_add_test(tc, test_resolver_synchronous_c_ares_answer_is_deferred);
    tcase_add_test(tc, test_resolver_onion_name_is_nxdomain_without_query);
    tcase_add_test(tc, test_resolver_search_domains_are_not_applied);
    tcase_add_test(tc, test_resolver_free_with_queries_in_flight_runs_no_callback);
    tcase_add_test(tc, test_resolver_free_right_after_lookup_runs_no_callback);
    tcase_add_test(tc, test_resolver_free_from_callback_stops_other_callbacks);
    tcase_add_test(tc, test_resolver_takes_ipv4_and_ipv6_servers);
    tcase_add_test(tc, test_resolver_lookup_without_callback_is_einval);
    tcase_add_test(tc, test_resolver_status_names_are_distinct);
    tcase_add_test(tc, test_resolver_254_and_255_byte_names_fail_with_badname_without_query);
    tcase_add_test(tc, test_resolver_ptr_ipv4_answer_gives_name);
    tcase_add_test(tc, test_resolver_ptr_ipv6_answer_gives_name);
    tcase_add_test(tc, test_resolver_ptr_ipv4_mapped_address_asks_in_addr_arpa);
    tcase_add_test(tc, test_resolver_ptr_nxdomain_maps_to_nxdomain_without_name);
    tcase_add_test(tc, test_resolver_ptr_servfail_fails_without_name);
    tcase_add_test(tc, test_resolver_ptr_unanswered_query_fails);
    tcase_add_test(tc, test_resolver_ptr_answers_are_not_cached_or_merged);
    tcase_add_test(tc, test_resolver_ptr_hosts_file_answer_is_deferred);
    tcase_add_test(tc, test_resolver_ptr_cancelled_query_gets_no_callback);
    tcase_add_test(tc, test_resolver_ptr_free_with_queries_in_flight_runs_no_callback);
    tcase_add_test(tc, test_resolver_ptr_free_from_callback_stops_other_callbacks);
    tcase_add_test(tc, test_resolver_ptr_of_non_ip_address_fails_with_error_from_loop);
    tcase_add_test(tc, test_resolver_ptr_without_callback_or_address_is_einval);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(resolver_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
