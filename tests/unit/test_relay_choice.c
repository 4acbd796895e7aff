/* Unit tests for relay auto's measured choice between copying and splicing bulk transfers. */
#include "config.h"

#include <check.h>
#include <string.h>

#include "ferry/relay_choice.h"

#define PHASE RELAY_TRIAL_BYTES
#define SETTLE RELAY_TRIAL_SETTLE
#define TIMED (PHASE - SETTLE)

/*
 * Run a whole trial from t = 100 s with a direction that has moved 1 MB before it: the
 * untimed start of every phase takes settle_s seconds, the timed rest copy_s or splice_s.
 * Asserts the path of every phase and returns the verdict.
 */
static enum relay_path run_trial_settling(struct relay_choice *c, double settle_s, double copy_s,
                                          double splice_s)
{
    double now = 100.0;
    uint64_t bytes = 1000000;
    enum relay_path path;

    ck_assert(relay_choice_due(c, now));
    relay_choice_begin(c, now, bytes);
    ck_assert(!relay_choice_due(c, now));
    for (int phase = 0; phase < RELAY_TRIAL_PHASES; phase++) {
        double took = phase % 2 == 0 ? copy_s : splice_s;
        enum relay_path want = phase % 2 == 0 ? RELAY_PATH_COPY : RELAY_PATH_SPLICE;

        /* Nothing changes on the way through the phase. */
        ck_assert_int_eq(relay_choice_note(c, now + settle_s / 2, bytes + SETTLE / 2, &path),
                         RELAY_CHOICE_GO_ON);
        ck_assert_int_eq(path, want);
        now += settle_s;
        bytes += SETTLE;
        ck_assert_int_eq(relay_choice_note(c, now, bytes, &path), RELAY_CHOICE_GO_ON);
        ck_assert_int_eq(relay_choice_note(c, now + took / 2, bytes + TIMED / 2, &path),
                         RELAY_CHOICE_GO_ON);
        ck_assert_int_eq(path, want);
        now += took;
        bytes += TIMED;
        if (phase + 1 < RELAY_TRIAL_PHASES) {
            ck_assert_int_eq(relay_choice_note(c, now, bytes, &path), RELAY_CHOICE_SWITCH);
            ck_assert_int_eq(path, phase % 2 == 0 ? RELAY_PATH_SPLICE : RELAY_PATH_COPY);
        }
    }
    ck_assert_int_eq(relay_choice_note(c, now, bytes, &path), RELAY_CHOICE_DECIDED);
    ck_assert(c->known);
    ck_assert(!c->trying);
    ck_assert_int_eq(relay_choice_path(c), path);
    return path;
}

static enum relay_path run_trial(struct relay_choice *c, double copy_s, double splice_s)
{
    return run_trial_settling(c, 0.001, copy_s, splice_s);
}

START_TEST(test_the_faster_path_wins)
{
    struct relay_choice c;

    memset(&c, 0, sizeof(c));
    ck_assert_int_eq(run_trial(&c, 0.010, 0.008), RELAY_PATH_SPLICE);
    ck_assert_double_eq_tol(relay_choice_rate(&c, RELAY_PATH_SPLICE), TIMED / 0.008, 1.0);
    ck_assert_double_eq_tol(relay_choice_rate(&c, RELAY_PATH_COPY), TIMED / 0.010, 1.0);
    memset(&c, 0, sizeof(c));
    ck_assert_int_eq(run_trial(&c, 0.008, 0.010), RELAY_PATH_COPY);
}
END_TEST

START_TEST(test_a_near_tie_goes_to_splice)
{
    struct relay_choice c;

    /* Copying 3 % faster is within the margin: splice, which costs less CPU. */
    memset(&c, 0, sizeof(c));
    ck_assert_int_eq(run_trial(&c, 0.0100, 0.0103), RELAY_PATH_SPLICE);
    /* 10 % faster is not. */
    memset(&c, 0, sizeof(c));
    ck_assert_int_eq(run_trial(&c, 0.0100, 0.0110), RELAY_PATH_COPY);
}
END_TEST

START_TEST(test_only_what_follows_the_settling_start_of_a_phase_is_timed)
{
    struct relay_choice c;

    /* A settling start ten times the timed rest changes nothing: the timed rates decide. */
    memset(&c, 0, sizeof(c));
    ck_assert_int_eq(run_trial_settling(&c, 0.100, 0.010, 0.008), RELAY_PATH_SPLICE);
    ck_assert_double_eq_tol(relay_choice_rate(&c, RELAY_PATH_SPLICE), TIMED / 0.008, 1.0);
    memset(&c, 0, sizeof(c));
    ck_assert_int_eq(run_trial_settling(&c, 0.100, 0.008, 0.010), RELAY_PATH_COPY);
}
END_TEST

START_TEST(test_no_verdict_means_copy_and_a_trial_is_due)
{
    struct relay_choice c;

    memset(&c, 0, sizeof(c));
    ck_assert(relay_choice_due(&c, 0.0));
    ck_assert_int_eq(relay_choice_path(&c), RELAY_PATH_COPY);
}
END_TEST

START_TEST(test_the_verdict_holds_for_its_ttl_then_a_new_trial_is_due)
{
    struct relay_choice c;
    double decided;

    memset(&c, 0, sizeof(c));
    run_trial(&c, 0.010, 0.005);
    decided = c.decided;
    ck_assert(!relay_choice_due(&c, decided + RELAY_CHOICE_TTL - 1));
    ck_assert_int_eq(relay_choice_path(&c), RELAY_PATH_SPLICE);
    ck_assert(relay_choice_due(&c, decided + RELAY_CHOICE_TTL + 1));
    /* The old verdict stands while the new trial runs. */
    relay_choice_begin(&c, decided + RELAY_CHOICE_TTL + 1, 0);
    ck_assert_int_eq(relay_choice_path(&c), RELAY_PATH_SPLICE);
}
END_TEST

START_TEST(test_a_slow_phase_abandons_the_trial)
{
    struct relay_choice c;
    enum relay_path path;

    memset(&c, 0, sizeof(c));
    relay_choice_begin(&c, 10.0, 0);
    ck_assert_int_eq(relay_choice_note(&c, 10.0 + RELAY_TRIAL_PHASE_MAX / 2, PHASE / 4, &path),
                     RELAY_CHOICE_GO_ON);
    ck_assert_int_eq(relay_choice_note(&c, 10.0 + RELAY_TRIAL_PHASE_MAX + 0.01, PHASE, &path),
                     RELAY_CHOICE_ABANDONED);
    ck_assert(!c.known);
    ck_assert(relay_choice_due(&c, 11.0));
    /* Once abandoned, a late note changes nothing. */
    ck_assert_int_eq(relay_choice_note(&c, 11.0, 2 * PHASE, &path), RELAY_CHOICE_ABANDONED);
    ck_assert(!c.known);
}
END_TEST

START_TEST(test_a_trial_whose_direction_went_quiet_is_abandoned_when_the_next_is_due)
{
    struct relay_choice c;

    memset(&c, 0, sizeof(c));
    relay_choice_begin(&c, 10.0, 0);
    ck_assert(!relay_choice_due(&c, 10.0 + RELAY_TRIAL_PHASE_MAX / 2));
    ck_assert(relay_choice_due(&c, 10.0 + RELAY_TRIAL_PHASE_MAX + 0.01));
    ck_assert(!c.trying);
}
END_TEST

START_TEST(test_a_phase_the_clock_did_not_see_is_no_measurement)
{
    struct relay_choice c;
    enum relay_path path;

    memset(&c, 0, sizeof(c));
    relay_choice_begin(&c, 10.0, 0);
    ck_assert_int_eq(relay_choice_note(&c, 10.0, SETTLE, &path), RELAY_CHOICE_GO_ON);
    ck_assert_int_eq(relay_choice_note(&c, 10.0, PHASE, &path), RELAY_CHOICE_ABANDONED);
    ck_assert(!c.known);
}
END_TEST

START_TEST(test_abandon_keeps_an_earlier_verdict)
{
    struct relay_choice c;
    double decided;

    memset(&c, 0, sizeof(c));
    run_trial(&c, 0.005, 0.010);
    decided = c.decided;
    relay_choice_begin(&c, decided + RELAY_CHOICE_TTL + 1, 0);
    relay_choice_abandon(&c);
    ck_assert(c.known);
    ck_assert_int_eq(relay_choice_path(&c), RELAY_PATH_COPY);
    ck_assert(relay_choice_due(&c, decided + RELAY_CHOICE_TTL + 2));
}
END_TEST

static Suite *relaychoice_suite(void)
{
    Suite *s = suite_create("relay_choice");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_the_faster_path_wins);
    tcase_add_test(tc, test_a_near_tie_goes_to_splice);
    tcase_add_test(tc, test_only_what_follows_the_settling_start_of_a_phase_is_timed);
    tcase_add_test(tc, test_no_verdict_means_copy_and_a_trial_is_due);
    tcase_add_test(tc, test_the_verdict_holds_for_its_ttl_then_a_new_trial_is_due);
    tcase_add_test(tc, test_a_slow_phase_abandons_the_trial);
    tcase_add_test(tc, test_a_trial_whose_direction_went_quiet_is_abandoned_when_the_next_is_due);
    tcase_add_test(tc, test_a_phase_the_clock_did_not_see_is_no_measurement);
    tcase_add_test(tc, test_abandon_keeps_an_earlier_verdict);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(relaychoice_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
