/* Unit tests for the socket helpers of net.c that need no network: relayed sockets' options. */
#include "config.h"

#include <check.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ferry/net.h"

static int get_int(int fd, int level, int name)
{
    int v = -1;
    socklen_t len = sizeof(v);

    ck_assert_int_eq(getsockopt(fd, level, name, &v, &len), 0);
    return v;
}

START_TEST(test_stream_tune_sets_buffers_and_keepalive)
{
    struct net_stream_opts o = {
        .rcvbuf = 24 * 1024,
        .sndbuf = 48 * 1024,
        .keepalive = true,
        .keepalive_idle = 60,
        .keepalive_interval = 7,
        .keepalive_count = 3,
    };
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(net_stream_tune(fd, &o), 0);
    /* Linux doubles the value asked for (the bookkeeping overhead). */
    ck_assert_int_eq(get_int(fd, SOL_SOCKET, SO_RCVBUF), 2 * 24 * 1024);
    ck_assert_int_eq(get_int(fd, SOL_SOCKET, SO_SNDBUF), 2 * 48 * 1024);
    ck_assert_int_eq(get_int(fd, SOL_SOCKET, SO_KEEPALIVE), 1);
    ck_assert_int_eq(get_int(fd, IPPROTO_TCP, TCP_KEEPIDLE), 60);
    ck_assert_int_eq(get_int(fd, IPPROTO_TCP, TCP_KEEPINTVL), 7);
    ck_assert_int_eq(get_int(fd, IPPROTO_TCP, TCP_KEEPCNT), 3);
    close(fd);
}
END_TEST

START_TEST(test_stream_tune_zero_leaves_the_kernel_defaults)
{
    struct net_stream_opts o = {0};
    int fd = socket(AF_INET6, SOCK_STREAM, 0), ref = socket(AF_INET6, SOCK_STREAM, 0);

    ck_assert_int_ge(fd, 0);
    ck_assert_int_ge(ref, 0);
    ck_assert_int_eq(net_stream_tune(fd, &o), 0);
    ck_assert_int_eq(get_int(fd, SOL_SOCKET, SO_RCVBUF), get_int(ref, SOL_SOCKET, SO_RCVBUF));
    ck_assert_int_eq(get_int(fd, SOL_SOCKET, SO_SNDBUF), get_int(ref, SOL_SOCKET, SO_SNDBUF));
    ck_assert_int_eq(get_int(fd, SOL_SOCKET, SO_KEEPALIVE), 0);
    close(fd);
    close(ref);
}
END_TEST

START_TEST(test_stream_tune_reports_a_refused_option)
{
    struct net_stream_opts o = {.rcvbuf = 4096};

    /* Not a socket: the first option fails and says why. */
    ck_assert_int_eq(net_stream_tune(-1, &o), -1);
}
END_TEST

static Suite *net_suite(void)
{
    Suite *s = suite_create("net");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_stream_tune_sets_buffers_and_keepalive);
    tcase_add_test(tc, test_stream_tune_zero_leaves_the_kernel_defaults);
    tcase_add_test(tc, test_stream_tune_reports_a_refused_option);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(net_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
