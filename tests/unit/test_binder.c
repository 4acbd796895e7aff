/*
 * Tests for the binder (src/binder.c) with real sockets on loopback: the test connects to the
 * listening port itself (from 127.0.0.1, 127.0.0.2 or ::1) and drives the binder's libev loop.
 */
#include "config.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ferry/binder.h"

static struct ev_loop *loop;

/* What the binder callback saw. */
struct result {
    int calls;
    int fd;
    int err;
    struct addr peer;
};

static struct result result;
static bool in_start;
static bool called_in_start;

static void on_bound(int fd, int err, const struct addr *peer, void *arg)
{
    struct result *r = arg;

    if (in_start)
        called_in_start = true;
    r->calls++;
    r->fd = fd;
    r->err = err;
    if (peer != NULL)
        r->peer = *peer;
}

static void setup(void)
{
    loop = ev_loop_new(EVFLAG_AUTO);
    ck_assert_ptr_nonnull(loop);
    memset(&result, 0, sizeof(result));
    result.fd = -1;
    in_start = false;
    called_in_start = false;
}

static void teardown(void)
{
    if (result.fd >= 0)
        close(result.fd);
    ev_loop_destroy(loop);
}

static void tick_cb(struct ev_loop *l, ev_timer *w, int revents)
{
    (void)l;
    (void)w;
    (void)revents;
}

/* Run the loop until *counter reaches want or `seconds` pass (a guard timer keeps it ticking). */
static void run_until(const int *counter, int want, double seconds)
{
    ev_timer tick;
    ev_tstamp deadline;

    ev_timer_init(&tick, tick_cb, 0.01, 0.01);
    ev_timer_start(loop, &tick);
    ev_now_update(loop);
    deadline = ev_now(loop) + seconds;
    while (*counter < want && ev_now(loop) < deadline)
        ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &tick);
}

/* Run the loop for `seconds` whatever happens. */
static void run_for(double seconds)
{
    int never = 0;

    run_until(&never, 1, seconds);
}

static void make_addr(struct addr *a, const char *ip, uint16_t port)
{
    ck_assert_int_eq(addr_parse(ip, port, a), 0);
}

static struct binder *start(const char *local_ip, uint16_t min, uint16_t max,
                            const struct addr *expected, size_t nexpected, struct addr *bound)
{
    struct addr local;
    struct binder *b;

    make_addr(&local, local_ip, 0);
    in_start = true;
    b = binder_start(loop, &local, min, max, expected, nexpected, on_bound, &result, bound);
    in_start = false;
    return b;
}

/* A blocking TCP connect from source_ip (port 0) to `to`; the kernel completes it from the
 * listen queue, so it does not need the loop. Returns the fd, or -1 with errno. */
static int connect_from(const char *source_ip, const struct addr *to)
{
    struct addr src;
    int fd, err;

    make_addr(&src, source_ip, 0);
    fd = socket(addr_family(&src), SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    if (bind(fd, &src.u.sa, src.len) < 0 || connect(fd, &to->u.sa, to->len) < 0) {
        err = errno;
        close(fd);
        errno = err;
        return -1;
    }
    return fd;
}

static struct addr local_of(int fd)
{
    struct addr a;

    a.len = sizeof(a.u);
    ck_assert_int_eq(getsockname(fd, &a.u.sa, &a.len), 0);
    return a;
}

/* True when fd sees EOF or a reset within two seconds. */
static bool sees_close(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    char c;

    if (poll(&p, 1, 2000) != 1)
        return false;
    ssize_t n = recv(fd, &c, 1, MSG_DONTWAIT);
    return n == 0 || (n < 0 && (errno == ECONNRESET || errno == EPIPE));
}

/* One message each way between the test's end and the accepted socket. */
static void assert_talks(int mine, int accepted)
{
    char buf[16];
    struct pollfd p = {.fd = accepted, .events = POLLIN};

    ck_assert_int_eq(send(mine, "ping", 4, 0), 4);
    ck_assert_int_eq(poll(&p, 1, 2000), 1);
    ck_assert_int_eq(recv(accepted, buf, sizeof(buf), 0), 4);
    ck_assert_int_eq(memcmp(buf, "ping", 4), 0);
    ck_assert_int_eq(send(accepted, "pong!", 5, MSG_NOSIGNAL), 5);
    ck_assert_int_eq(recv(mine, buf, sizeof(buf), 0), 5);
    ck_assert_int_eq(memcmp(buf, "pong!", 5), 0);
}

/* A connect to `to` is refused: nothing listens there any more. */
static void assert_port_closed(const struct addr *to, const char *source_ip)
{
    int fd = connect_from(source_ip, to);

    if (fd >= 0)
        close(fd);
    ck_assert_int_eq(fd, -1);
    ck_assert_int_eq(errno, ECONNREFUSED);
}

static bool ipv6_loopback_available(void)
{
    struct addr a;
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool ok;

    if (fd < 0)
        return false;
    make_addr(&a, "::1", 0);
    ok = bind(fd, &a.u.sa, a.len) == 0;
    close(fd);
    return ok;
}

START_TEST(test_bind_expected_peer_is_handed_over_with_its_address)
{
    struct addr expected, bound, mine;
    struct binder *b;
    int fd, flags;

    make_addr(&expected, "127.0.0.1", 0);
    b = start("127.0.0.1", 0, 0, &expected, 1, &bound);
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(addr_family(&bound), AF_INET);
    ck_assert_uint_ne(addr_port(&bound), 0);
    ck_assert(addr_same_ip(&bound, &expected));

    fd = connect_from("127.0.0.1", &bound);
    ck_assert_int_ge(fd, 0);
    mine = local_of(fd);
    ck_assert_int_eq(result.calls, 0); /* only from the loop */
    run_until(&result.calls, 1, 5);
    ck_assert_int_eq(result.calls, 1);
    ck_assert(!called_in_start);
    ck_assert_int_eq(result.err, 0);
    ck_assert_int_ge(result.fd, 0);
    ck_assert(addr_equal(&result.peer, &mine));

    flags = fcntl(result.fd, F_GETFL);
    ck_assert(flags & O_NONBLOCK);
    ck_assert(fcntl(result.fd, F_GETFD) & FD_CLOEXEC);
    assert_talks(fd, result.fd);

    /* The listening socket went with the handover. */
    assert_port_closed(&bound, "127.0.0.1");
    close(fd);
}
END_TEST

START_TEST(test_bind_wrong_peer_is_refused_and_counted_then_right_peer_accepted)
{
    struct addr expected, bound, mine;
    struct binder *b;
    int wrong, right;

    make_addr(&expected, "127.0.0.1", 0);
    b = start("0.0.0.0", 0, 0, &expected, 1, &bound);
    ck_assert_ptr_nonnull(b);
    make_addr(&bound, "127.0.0.1", addr_port(&bound));
    ck_assert_uint_eq(binder_refused(b), 0);

    wrong = connect_from("127.0.0.2", &bound);
    ck_assert_int_ge(wrong, 0);
    /* b is gone once the callback ran, so look at the callback first. */
    for (int i = 0; i < 200 && result.calls == 0 && binder_refused(b) == 0; i++)
        run_for(0.01);
    ck_assert_int_eq(result.calls, 0);
    ck_assert_uint_eq(binder_refused(b), 1);
    ck_assert(sees_close(wrong));
    close(wrong);

    right = connect_from("127.0.0.1", &bound);
    ck_assert_int_ge(right, 0);
    mine = local_of(right);
    run_until(&result.calls, 1, 5);
    ck_assert_int_eq(result.calls, 1);
    ck_assert_int_eq(result.err, 0);
    ck_assert(addr_equal(&result.peer, &mine));
    assert_talks(right, result.fd);
    close(right);
}
END_TEST

START_TEST(test_bind_any_of_several_expected_addresses_is_accepted)
{
    struct addr expected[2], bound;
    struct binder *b;
    int fd;

    make_addr(&expected[0], "192.0.2.1", 0);
    make_addr(&expected[1], "127.0.0.2", 4321); /* ports are ignored */
    b = start("0.0.0.0", 0, 0, expected, 2, &bound);
    ck_assert_ptr_nonnull(b);
    make_addr(&bound, "127.0.0.1", addr_port(&bound));
    fd = connect_from("127.0.0.2", &bound);
    ck_assert_int_ge(fd, 0);
    run_until(&result.calls, 1, 5);
    ck_assert_int_eq(result.calls, 1);
    ck_assert_int_ge(result.fd, 0);
    ck_assert(addr_same_ip(&result.peer, &expected[1]));
    close(fd);
}
END_TEST

START_TEST(test_bind_no_expected_peers_accepts_anyone)
{
    struct addr bound, other;
    struct binder *b;
    int fd;

    b = start("0.0.0.0", 0, 0, NULL, 0, &bound);
    ck_assert_ptr_nonnull(b);
    make_addr(&bound, "127.0.0.1", addr_port(&bound));
    fd = connect_from("127.0.0.2", &bound);
    ck_assert_int_ge(fd, 0);
    run_until(&result.calls, 1, 5);
    ck_assert_int_eq(result.calls, 1);
    ck_assert_int_ge(result.fd, 0);
    make_addr(&other, "127.0.0.2", 0);
    ck_assert(addr_same_ip(&result.peer, &other));
    assert_talks(fd, result.fd);
    close(fd);
}
END_TEST

/* Listening sockets on 127.0.0.1 for every port of [base, base + n); false if one is taken. */
static bool occupy(int *fds, uint16_t base, int n)
{
    struct addr a;

    for (int i = 0; i < n; i++)
        fds[i] = -1;
    for (int i = 0; i < n; i++) {
        make_addr(&a, "127.0.0.1", (uint16_t)(base + i));
        fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ck_assert_int_ge(fds[i], 0);
        if (bind(fds[i], &a.u.sa, a.len) < 0 || listen(fds[i], 1) < 0) {
            for (int j = 0; j <= i; j++)
                close(fds[j]);
            return false;
        }
    }
    return true;
}

static void release(int *fds, int n)
{
    for (int i = 0; i < n; i++) {
        if (fds[i] >= 0)
            close(fds[i]);
    }
}

START_TEST(test_bind_port_is_taken_from_the_configured_range)
{
    struct addr bound;
    struct binder *b;

    for (int i = 0; i < 20; i++) {
        b = start("127.0.0.1", 27000, 27009, NULL, 0, &bound);
        ck_assert_msg(b != NULL, "binder_start: %s", strerror(errno));
        ck_assert_uint_ge(addr_port(&bound), 27000);
        ck_assert_uint_le(addr_port(&bound), 27009);
        binder_cancel(b);
    }
    ck_assert_int_eq(result.calls, 0);
}
END_TEST

START_TEST(test_bind_range_with_one_free_port_finds_it)
{
    int fds[5];
    uint16_t base = 0;
    struct addr bound;
    struct binder *b;

    /*
     * Ports base..base+3 taken, base+4 free: the binder must land on base+4. All five are
     * taken first and the last let go just before, so it is known to be free (the ranges sit
     * below the ephemeral ports, so no outgoing connection takes it meanwhile).
     */
    for (uint16_t try = 27100; try < 27400 && base == 0; try += 10) {
        if (occupy(fds, try, 5))
            base = try;
    }
    ck_assert_uint_ne(base, 0);
    close(fds[4]);
    fds[4] = -1;
    b = start("127.0.0.1", base, (uint16_t)(base + 4), NULL, 0, &bound);
    release(fds, 5);
    ck_assert_ptr_nonnull(b);
    ck_assert_uint_eq(addr_port(&bound), base + 4);
    binder_cancel(b);
}
END_TEST

START_TEST(test_bind_fully_occupied_range_fails_with_eaddrinuse)
{
    int fds[3];
    uint16_t base = 0;
    struct binder *b;

    for (uint16_t try = 27400; try < 27700 && base == 0; try += 10) {
        if (occupy(fds, try, 3))
            base = try;
    }
    ck_assert_uint_ne(base, 0);
    errno = 0;
    b = start("127.0.0.1", base, (uint16_t)(base + 2), NULL, 0, NULL);
    release(fds, 3);
    ck_assert_ptr_null(b);
    ck_assert_int_eq(errno, EADDRINUSE);
    run_for(0.05);
    ck_assert_int_eq(result.calls, 0);
}
END_TEST

START_TEST(test_bind_cancel_runs_no_callback_and_closes_the_port)
{
    struct addr expected, bound;
    struct binder *b;
    int pending;

    make_addr(&expected, "127.0.0.1", 0);
    b = start("127.0.0.1", 0, 0, &expected, 1, &bound);
    ck_assert_ptr_nonnull(b);
    /* A peer already in the listen queue when the binder goes. */
    pending = connect_from("127.0.0.1", &bound);
    ck_assert_int_ge(pending, 0);
    binder_cancel(b);
    run_for(0.1);
    ck_assert_int_eq(result.calls, 0);
    ck_assert(sees_close(pending));
    close(pending);
    assert_port_closed(&bound, "127.0.0.1");
    binder_cancel(NULL);
}
END_TEST

START_TEST(test_bind_ipv6_loopback_peer_is_accepted)
{
    struct addr expected, bound, mine;
    struct binder *b;
    int fd;

    if (!ipv6_loopback_available())
        return;
    make_addr(&expected, "::1", 0);
    b = start("::1", 0, 0, &expected, 1, &bound);
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(addr_family(&bound), AF_INET6);
    ck_assert_uint_ne(addr_port(&bound), 0);
    fd = connect_from("::1", &bound);
    ck_assert_int_ge(fd, 0);
    mine = local_of(fd);
    run_until(&result.calls, 1, 5);
    ck_assert_int_eq(result.calls, 1);
    ck_assert_int_ge(result.fd, 0);
    ck_assert_int_eq(addr_family(&result.peer), AF_INET6);
    ck_assert(addr_equal(&result.peer, &mine));
    assert_talks(fd, result.fd);
    close(fd);
}
END_TEST

START_TEST(test_bind_ipv4_mapped_peer_matches_plain_ipv4_expected)
{
    struct addr expected, bound;
    struct binder *b;
    int wrong, right;

    if (!ipv6_loopback_available())
        return;
    /* A dual-stack listener sees 127.0.0.x as ::ffff:127.0.0.x. */
    make_addr(&expected, "127.0.0.1", 0);
    b = start("::", 0, 0, &expected, 1, &bound);
    ck_assert_ptr_nonnull(b);
    make_addr(&bound, "127.0.0.1", addr_port(&bound));
    wrong = connect_from("127.0.0.2", &bound);
    ck_assert_int_ge(wrong, 0);
    /* b is gone once the callback ran, so look at the callback first. */
    for (int i = 0; i < 200 && result.calls == 0 && binder_refused(b) == 0; i++)
        run_for(0.01);
    ck_assert_int_eq(result.calls, 0);
    ck_assert_uint_eq(binder_refused(b), 1);
    ck_assert(sees_close(wrong));
    close(wrong);

    right = connect_from("127.0.0.1", &bound);
    ck_assert_int_ge(right, 0);
    run_until(&result.calls, 1, 5);
    ck_assert_int_eq(result.calls, 1);
    ck_assert_int_ge(result.fd, 0);
    ck_assert_int_eq(addr_family(&result.peer), AF_INET6);
    ck_assert(addr_same_ip(&result.peer, &expected));
    close(right);
}
END_TEST

START_TEST(test_bind_mapped_expected_matches_plain_ipv4_peer)
{
    struct addr expected, bound;
    struct binder *b;
    int fd;

    make_addr(&expected, "::ffff:127.0.0.1", 0);
    b = start("127.0.0.1", 0, 0, &expected, 1, &bound);
    ck_assert_ptr_nonnull(b);
    fd = connect_from("127.0.0.1", &bound);
    ck_assert_int_ge(fd, 0);
    run_until(&result.calls, 1, 5);
    ck_assert_int_eq(result.calls, 1);
    ck_assert_int_ge(result.fd, 0);
    ck_assert_int_eq(addr_family(&result.peer), AF_INET);
    ck_assert(addr_same_ip(&result.peer, &expected));
    close(fd);
}
END_TEST

START_TEST(test_bind_accept_without_free_descriptor_reports_emfile)
{
    struct addr bound;
    struct binder *b;
    struct rlimit saved, low;
    int fd, probe;

    b = start("127.0.0.1", 0, 0, NULL, 0, &bound);
    ck_assert_ptr_nonnull(b);
    fd = connect_from("127.0.0.1", &bound);
    ck_assert_int_ge(fd, 0);

    /* The lowest free descriptor becomes the limit, so accept4 has none to return. */
    probe = dup(0);
    ck_assert_int_ge(probe, 0);
    close(probe);
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &saved), 0);
    low = saved;
    low.rlim_cur = (rlim_t)probe;
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
    run_until(&result.calls, 1, 5);
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &saved), 0);

    ck_assert_int_eq(result.calls, 1);
    ck_assert_int_eq(result.fd, -1);
    ck_assert_int_eq(result.err, EMFILE);
    assert_port_closed(&bound, "127.0.0.1");
    close(fd);
}
END_TEST

START_TEST(test_bind_expected_list_without_array_is_einval)
{
    struct addr local;

    make_addr(&local, "127.0.0.1", 0);
    errno = 0;
    ck_assert_ptr_null(binder_start(loop, &local, 0, 0, NULL, 1, on_bound, &result, NULL));
    ck_assert_int_eq(errno, EINVAL);
    errno = 0;
    ck_assert_ptr_null(binder_start(loop, &local, 0, 0, NULL, 0, NULL, &result, NULL));
    ck_assert_int_eq(errno, EINVAL);
}
END_TEST

static Suite *bind_suite(void)
{
    Suite *s = suite_create("binder");
    TCase *tc = tcase_create("loopback");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, test_bind_expected_peer_is_handed_over_with_its_address);
    tcase_add_test(tc, test_bind_wrong_peer_is_refused_and_counted_then_right_peer_accepted);
    tcase_add_test(tc, test_bind_any_of_several_expected_addresses_is_accepted);
    tcase_add_test(tc, test_bind_no_expected_peers_accepts_anyone);
    tcase_add_test(tc, test_bind_port_is_taken_from_the_configured_range);
    tcase_add_test(tc, test_bind_range_with_one_free_port_finds_it);
    tcase_add_test(tc, test_bind_fully_occupied_range_fails_with_eaddrinuse);
    tcase_add_test(tc, test_bind_cancel_runs_no_callback_and_closes_the_port);
    tcase_add_test(tc, test_bind_ipv6_loopback_peer_is_accepted);
    tcase_add_test(tc, test_bind_ipv4_mapped_peer_matches_plain_ipv4_expected);
    tcase_add_test(tc, test_bind_mapped_expected_matches_plain_ipv4_peer);
    tcase_add_test(tc, test_bind_accept_without_free_descriptor_reports_emfile);
    tcase_add_test(tc, test_bind_expected_list_without_array_is_einval);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(bind_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
