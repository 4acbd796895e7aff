/*
 * Unit tests for the connector: RFC 8305 ordering, and real non-blocking connects on
 * loopback for the stagger between attempts, fallback to the next address, a refusal or a
 * success known inside connect(), and cancelling.
 */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <ev.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ferry/connector.h"

static struct addr ip(const char *text)
{
    struct addr a;

    ck_assert_msg(addr_parse(text, 0, &a) == 0, "bad test address %s", text);
    return a;
}

static const char *fmt(const struct addr *a)
{
    static char buf[4][ADDR_STRLEN];
    static int k;

    k = (k + 1) % 4;
    return addr_format_ip(a, buf[k], sizeof(buf[k]));
}

START_TEST(test_interleave_puts_ipv6_first_then_alternates)
{
    struct addr a[5] = {ip("192.0.2.1"), ip("192.0.2.2"), ip("2001:db8::1"), ip("192.0.2.3"),
                        ip("2001:db8::2")};
    const char *want[5] = {"2001:db8::1", "192.0.2.1", "2001:db8::2", "192.0.2.2", "192.0.2.3"};

    connector_interleave(a, 5);
    for (int i = 0; i < 5; i++)
        ck_assert_str_eq(fmt(&a[i]), want[i]);
}
END_TEST

START_TEST(test_interleave_keeps_one_family_in_order)
{
    struct addr a[3] = {ip("192.0.2.3"), ip("192.0.2.1"), ip("192.0.2.2")};

    connector_interleave(a, 3);
    ck_assert_str_eq(fmt(&a[0]), "192.0.2.3");
    ck_assert_str_eq(fmt(&a[1]), "192.0.2.1");
    ck_assert_str_eq(fmt(&a[2]), "192.0.2.2");
    connector_interleave(a, 1);
    connector_interleave(a, 0);
}
END_TEST

/* --- real connects on loopback ----------------------------------------------------------- */

static struct ev_loop *loop;
static struct {
    int calls;
    int fd;
    int err;
    struct addr peer;
    double at;
} result;

static void on_done(int fd, int err, const struct addr *peer, void *arg)
{
    result.calls++;
    result.fd = fd;
    result.err = err;
    if (peer != NULL)
        result.peer = *peer;
    result.at = ev_time();
    ev_break(loop, EVBREAK_ALL);
}

static void setup(void)
{
    loop = ev_loop_new(EVFLAG_AUTO);
    memset(&result, 0, sizeof(result));
    result.fd = -2;
}

static void teardown(void)
{
    if (result.fd >= 0)
        close(result.fd);
    ev_loop_destroy(loop);
}

static void stop_cb(struct ev_loop *l, ev_timer *w, int revents)
{
    ev_break(l, EVBREAK_ALL);
}

/* Run the loop until the callback or `limit` seconds. */
static void run(double limit)
{
    ev_timer t;

    ev_timer_init(&t, stop_cb, limit, 0.);
    ev_timer_start(loop, &t);
    ev_run(loop, 0);
    ev_timer_stop(loop, &t);
}

/* A listener on host; its port in *port. */
static int listener(const char *host, uint16_t *port, int backlog)
{
    struct addr a = ip(host);
    int fd = socket(addr_family(&a), SOCK_STREAM, 0);

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(bind(fd, &a.u.sa, a.len), 0);
    ck_assert_int_eq(listen(fd, backlog), 0);
    a.len = sizeof(a.u);
    ck_assert_int_eq(getsockname(fd, &a.u.sa, &a.len), 0);
    *port = addr_port(&a);
    return fd;
}

/* A port on host where nothing listens (bound, then closed). */
static uint16_t closed_port(const char *host)
{
    uint16_t port;
    int fd = listener(host, &port, 1);

    close(fd);
    return port;
}

START_TEST(test_refused_addresses_fall_through_to_the_next_at_once)
{
    uint16_t port;
    int lfd = listener("127.0.0.1", &port, 8);
    struct addr a[2] = {ip("127.0.0.2"), ip("127.0.0.1")}; /* nothing on 127.0.0.2:port */
    double start = ev_time();

    /* The first refusal starts the next attempt without waiting for the delay. */
    ck_assert_ptr_nonnull(connector_start(loop, a, 2, port, 5.0, on_done, NULL));
    run(3.0);
    ck_assert_int_eq(result.calls, 1);
    ck_assert_int_ge(result.fd, 0);
    ck_assert_str_eq(fmt(&result.peer), "127.0.0.1");
    ck_assert_uint_eq(addr_port(&result.peer), port);
    ck_assert(result.at - start < 1.0);
    close(lfd);
}
END_TEST

START_TEST(test_all_refused_at_once_is_told_by_the_start)
{
    uint16_t port = closed_port("127.0.0.1");
    struct addr a[2] = {ip("127.0.0.1"), ip("127.0.0.3")};

    /* A local refusal is known inside connect(): nothing is left to wait for. */
    errno = 0;
    ck_assert_ptr_null(connector_start(loop, a, 2, port, 0.25, on_done, NULL));
    ck_assert_int_eq(errno, ECONNREFUSED);
    run(0.2);
    ck_assert_int_eq(result.calls, 0);
}
END_TEST

START_TEST(test_a_connect_done_at_once_is_reported_from_the_loop)
{
    uint16_t port;
    int lfd = listener("127.0.0.1", &port, 8);
    struct addr a[1] = {ip("127.0.0.1")};
    struct addr peer;

    ck_assert_ptr_nonnull(connector_start(loop, a, 1, port, 0.25, on_done, NULL));
    ck_assert_int_eq(result.calls, 0);
    run(3.0);
    ck_assert_int_eq(result.calls, 1);
    ck_assert_int_ge(result.fd, 0);
    ck_assert_int_eq(result.err, 0);
    peer.len = sizeof(peer.u);
    ck_assert_int_eq(getpeername(result.fd, &peer.u.sa, &peer.len), 0);
    ck_assert_uint_eq(addr_port(&peer), port);
    close(lfd);
}
END_TEST

START_TEST(test_a_hanging_attempt_is_joined_after_the_attempt_delay)
{
    /*
     * 127.0.0.4:port accepts no more (a full backlog-0 queue: SYNs are dropped), so the first
     * attempt hangs; the second, to 127.0.0.1:port, must start 250 ms later and win.
     */
    uint16_t port;
    int good = listener("127.0.0.1", &port, 8);
    struct addr full = ip("127.0.0.4");
    int hang, fillers[2];
    double start;

    addr_set_port(&full, port);
    hang = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_eq(bind(hang, &full.u.sa, full.len), 0);
    ck_assert_int_eq(listen(hang, 0), 0);
    for (int i = 0; i < 2; i++) {
        fillers[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(fillers[i], &full.u.sa, full.len);
        usleep(50000);
    }
    {
        struct addr a[2] = {ip("127.0.0.4"), ip("127.0.0.1")};
        /* The loop's time stood still while we set up; a callback in ferryd sees it fresh. */
        ev_now_update(loop);
        start = ev_time();
        ck_assert_ptr_nonnull(connector_start(loop, a, 2, port, 0.25, on_done, NULL));
    }
    run(3.0);
    ck_assert_int_eq(result.calls, 1);
    ck_assert_int_ge(result.fd, 0);
    ck_assert_str_eq(fmt(&result.peer), "127.0.0.1");
    ck_assert_msg(result.at - start >= 0.24 && result.at - start < 1.0, "won after %.3f s",
                  result.at - start);
    for (int i = 0; i < 2; i++)
        close(fillers[i]);
    close(hang);
    close(good);
}
END_TEST

START_TEST(test_cancel_runs_no_callback)
{
    uint16_t port;
    int lfd = listener("127.0.0.1", &port, 8);
    struct addr a[1] = {ip("127.0.0.1")};
    struct connector *c = connector_start(loop, a, 1, port, 0.25, on_done, NULL);

    ck_assert_ptr_nonnull(c);
    connector_cancel(c);
    run(0.2);
    ck_assert_int_eq(result.calls, 0);
    close(lfd);
}
END_TEST

static Suite *connect_suite(void)
{
    Suite *s = suite_create("connector");
    TCase *order = tcase_create("order");
    TCase *live = tcase_create("loopback");

    tcase_add_test(order, test_interleave_puts_ipv6_first_then_alternates);
    tcase_add_test(order, test_interleave_keeps_one_family_in_order);
    tcase_add_checked_fixture(live, setup, teardown);
    tcase_add_test(live, test_refused_addresses_fall_through_to_the_next_at_once);
    tcase_add_test(live, test_all_refused_at_once_is_told_by_the_start);
    tcase_add_test(live, test_a_connect_done_at_once_is_reported_from_the_loop);
    tcase_add_test(live, test_a_hanging_attempt_is_joined_after_the_attempt_delay);
    tcase_add_test(live, test_cancel_runs_no_callback);
    suite_add_tcase(s, order);
    suite_add_tcase(s, live);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(connect_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
