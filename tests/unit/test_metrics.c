/* Unit tests for the metrics rendering (metrics.c): sums over workers, the histogram, sizes. */
#include "config.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/metrics.h"

static char buf[METRICS_RENDER_MAX];

static struct metrics_worker *worker(void)
{
    struct metrics_worker *w = calloc(1, sizeof(*w));

    ck_assert_ptr_nonnull(w);
    return w;
}

static size_t render(struct metrics_worker *a, struct metrics_worker *b)
{
    const struct metrics_worker *w[2] = {a, b};
    struct metrics_global g = {.workers = 2, .sessions_open = 7, .version = "9.9", .start_time = 1};

    return metrics_render(w, 2, &g, buf, sizeof(buf));
}

START_TEST(test_counters_are_summed_over_workers)
{
    struct metrics_worker *a = worker(), *b = worker();
    size_t n;

    metrics_add(&a->sessions[METRICS_FE_SOCKS5][METRICS_CMD_CONNECT], 2);
    metrics_add(&b->sessions[METRICS_FE_SOCKS5][METRICS_CMD_CONNECT], 3);
    metrics_add(&b->sessions[METRICS_FE_HTTP][METRICS_CMD_NONE], 1);
    metrics_add(&a->bytes_up, 1000);
    metrics_add(&b->bytes_up, 24);
    metrics_add(&a->replies[2], 4);
    metrics_add(&b->rule_hits[0], 5);
    metrics_add(&b->rule_hits[METRICS_RULES], 6);
    metrics_add(&a->limit_refusals[1], 1);
    metrics_add(&b->udp_drops[METRICS_UDP_BLOCKED], 8);
    metrics_add(&a->udp_drops[METRICS_UDP_REPLAY], 3);
    n = render(a, b);
    ck_assert_uint_gt(n, 0);
    ck_assert_uint_eq(strlen(buf), n);
    ck_assert_ptr_nonnull(
        strstr(buf, "ferry_sessions_total{frontend=\"socks5\",command=\"connect\"} 5\n"));
    ck_assert_ptr_nonnull(
        strstr(buf, "ferry_sessions_total{frontend=\"http\",command=\"none\"} 1\n"));
    ck_assert_ptr_nonnull(strstr(buf, "ferry_bytes_total{direction=\"up\"} 1024\n"));
    ck_assert_ptr_nonnull(strstr(buf, "ferry_replies_total{code=\"not-allowed\"} 4\n"));
    ck_assert_ptr_nonnull(strstr(buf, "ferry_rule_hits_total{rule=\"1\"} 5\n"));
    ck_assert_ptr_nonnull(strstr(buf, "ferry_rule_hits_total{rule=\"other\"} 6\n"));
    /* Rules never hit are left out. */
    ck_assert_ptr_null(strstr(buf, "ferry_rule_hits_total{rule=\"2\"}"));
    ck_assert_ptr_nonnull(strstr(buf, "ferry_limit_refusals_total{limit=\"max-sessions\"} 1\n"));
    ck_assert_ptr_nonnull(strstr(buf, "ferry_udp_dropped_total{reason=\"blocked\"} 8\n"));
    ck_assert_ptr_nonnull(strstr(buf, "ferry_udp_dropped_total{reason=\"replay\"} 3\n"));
    ck_assert_ptr_nonnull(strstr(buf, "ferry_udp_dropped_total{reason=\"old\"} 0\n"));
    ck_assert_ptr_nonnull(strstr(buf, "ferry_sessions_open 7\n"));
    ck_assert_ptr_nonnull(strstr(buf, "ferry_build_info{version=\"9.9\"} 1\n"));
    ck_assert_ptr_nonnull(strstr(buf, "# TYPE ferry_sessions_total counter\n"));
    free(a);
    free(b);
}
END_TEST

START_TEST(test_dns_histogram_is_cumulative)
{
    struct metrics_worker *a = worker(), *b = worker();

    metrics_dns_latency(a, 0.0005); /* le 0.001 */
    metrics_dns_latency(b, 0.003);  /* le 0.005 */
    metrics_dns_latency(b, 0.2);    /* le 0.25 */
    metrics_dns_latency(a, 9.0);    /* +Inf */
    render(a, b);
    ck_assert_ptr_nonnull(strstr(buf, "ferry_dns_latency_seconds_bucket{le=\"0.001\"} 1\n"));
    ck_assert_ptr_nonnull(strstr(buf, "ferry_dns_latency_seconds_bucket{le=\"0.0025\"} 1\n"));
    ck_assert_ptr_nonnull(strstr(buf, "ferry_dns_latency_seconds_bucket{le=\"0.005\"} 2\n"));
    ck_assert_ptr_nonnull(strstr(buf, "ferry_dns_latency_seconds_bucket{le=\"0.25\"} 3\n"));
    ck_assert_ptr_nonnull(strstr(buf, "ferry_dns_latency_seconds_bucket{le=\"2.5\"} 3\n"));
    ck_assert_ptr_nonnull(strstr(buf, "ferry_dns_latency_seconds_bucket{le=\"+Inf\"} 4\n"));
    ck_assert_ptr_nonnull(strstr(buf, "ferry_dns_latency_seconds_count 4\n"));
    ck_assert_ptr_nonnull(strstr(buf, "ferry_dns_latency_seconds_sum 9.2035"));
    free(a);
    free(b);
}
END_TEST

START_TEST(test_too_small_a_buffer_renders_nothing)
{
    struct metrics_worker *a = worker();
    const struct metrics_worker *w[1] = {a};
    struct metrics_global g = {0};
    char small[100];

    ck_assert_uint_eq(metrics_render(w, 1, &g, small, sizeof(small)), 0);
    ck_assert_uint_eq(metrics_render(w, 1, &g, small, 0), 0);
    free(a);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("core");
    SRunner *sr;
    int failed;

    tcase_add_test(tc, test_counters_are_summed_over_workers);
    tcase_add_test(tc, test_dns_histogram_is_cumulative);
    tcase_add_test(tc, test_too_small_a_buffer_renders_nothing);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
