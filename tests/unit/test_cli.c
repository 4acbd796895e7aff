/*
 * Unit tests for src/cli.c (ferryd's command line) and the socket-activation count of
 * src/listener.c (LISTEN_PID, LISTEN_FDS).
 */
#include "config.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/cli.h"
#include "ferry/listener.h"

#define ARGC(a) ((int)(sizeof(a) / sizeof((a)[0])) - 1)

START_TEST(test_no_arguments_run_with_built_in_defaults)
{
    char *argv[] = {"ferryd", NULL};
    struct cli cli;
    char err[256];

    ck_assert_int_eq(cli_parse(&cli, ARGC(argv), argv, err, sizeof(err)), 0);
    ck_assert_int_eq(cli.action, CLI_RUN);
    ck_assert_ptr_null(cli.config_path);
    ck_assert_int_eq(cli.verbosity, 0);
    ck_assert_uint_eq(cli.ov.nlisten, 0);
    ck_assert_ptr_null(cli.ov.users);
    ck_assert_ptr_null(cli.ov.log_level);
    ck_assert_ptr_null(cli.ov.user);
    ck_assert_ptr_null(cli.ov.group);
}
END_TEST

START_TEST(test_short_and_long_forms_agree)
{
    char *shorts[] = {"ferryd", "-t", "-f", "/etc/x.conf", "-vv", "-q", NULL};
    char *longs[] = {"ferryd",    "--check",   "--config", "/etc/x.conf",
                     "--verbose", "--verbose", "--quiet",  NULL};
    char *joined[] = {"ferryd", "--check", "--config=/etc/x.conf", "-v", "-v", "-q", NULL};
    char **cases[] = {shorts, longs, joined};
    int counts[] = {ARGC(shorts), ARGC(longs), ARGC(joined)};
    char err[256];

    for (int i = 0; i < 3; i++) {
        struct cli cli;

        ck_assert_msg(cli_parse(&cli, counts[i], cases[i], err, sizeof(err)) == 0, "%s", err);
        ck_assert_int_eq(cli.action, CLI_CHECK);
        ck_assert_str_eq(cli.config_path, "/etc/x.conf");
        ck_assert_int_eq(cli.verbosity, 1);
    }
}
END_TEST

START_TEST(test_quick_flags_are_collected_in_order)
{
    char *argv[] = {"ferryd",        "--listen",         "0.0.0.0:1080", "--listen=[::]:1081",
                    "--users",       "/etc/ferry/users", "--log-level",  "debug",
                    "--user=nobody", "--group",          "nogroup",      NULL};
    struct cli cli;
    char err[256];

    ck_assert_msg(cli_parse(&cli, ARGC(argv), argv, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(cli.action, CLI_RUN);
    ck_assert_uint_eq(cli.ov.nlisten, 2);
    ck_assert_str_eq(cli.ov.listen[0], "0.0.0.0:1080");
    ck_assert_str_eq(cli.ov.listen[1], "[::]:1081");
    ck_assert_str_eq(cli.ov.users, "/etc/ferry/users");
    ck_assert_str_eq(cli.ov.log_level, "debug");
    ck_assert_str_eq(cli.ov.user, "nobody");
    ck_assert_str_eq(cli.ov.group, "nogroup");
}
END_TEST

START_TEST(test_tunnel_server_flags_are_collected)
{
    char *argv[] = {"ferryd", "--tunnel-listen", "0.0.0.0:1081", "--tunnel-listen=[::]:1081",
                    "--key", "/etc/ferry/server.key", "--authorized-keys", "/etc/ferry/ak",
                    NULL};
    struct cli cli;
    char err[256];

    ck_assert_msg(cli_parse(&cli, ARGC(argv), argv, err, sizeof(err)) == 0, "%s", err);
    ck_assert_uint_eq(cli.ov.ntunnel_listen, 2);
    ck_assert_str_eq(cli.ov.tunnel_listen[0], "0.0.0.0:1081");
    ck_assert_str_eq(cli.ov.tunnel_listen[1], "[::]:1081");
    ck_assert_str_eq(cli.ov.tunnel_key, "/etc/ferry/server.key");
    ck_assert_str_eq(cli.ov.authorized_keys, "/etc/ferry/ak");
    ck_assert_uint_eq(cli.ov.nlisten, 0);
    ck_assert_ptr_null(cli.ov.tunnel);
}
END_TEST

START_TEST(test_help_wins_over_version_and_check)
{
    char *a[] = {"ferryd", "-t", "-V", NULL};
    char *b[] = {"ferryd", "--version", "--help", "-t", NULL};
    struct cli cli;
    char err[256];

    ck_assert_int_eq(cli_parse(&cli, ARGC(a), a, err, sizeof(err)), 0);
    ck_assert_int_eq(cli.action, CLI_VERSION);
    ck_assert_int_eq(cli_parse(&cli, ARGC(b), b, err, sizeof(err)), 0);
    ck_assert_int_eq(cli.action, CLI_HELP);
}
END_TEST

/* Each bad command line is refused with a message naming what is wrong. */
START_TEST(test_bad_command_lines_name_the_problem)
{
    static const struct {
        const char *args[5];
        const char *message;
    } cases[] = {
        {{"--no-such-option"}, "unknown option --no-such-option"},
        {{"-x"}, "unknown option -x"},
        {{"-f"}, "option -f needs an argument"},
        {{"--listen"}, "option --listen needs an argument"},
        {{"--users"}, "option --users needs an argument"},
        {{"-f", "a", "-f", "b"}, "-f/--config given twice"},
        {{"--users", "a", "--users", "b"}, "--users given twice"},
        {{"--log-level", "info", "--log-level", "debug"}, "--log-level given twice"},
        {{"--user", "a", "--user", "b"}, "--user given twice"},
        {{"stray"}, "unexpected argument 'stray'"},
        {{"--check=yes"}, "option --check takes no argument"},
        {{"--listen=1.2.3.4", "--frob=1"}, "unknown option --frob=1"},
        {{"--key", "k"}, "--key goes with --tunnel HOST:PORT or --tunnel-listen"},
        {{"--server-key", "k"}, "--server-key, --cipher and --accept-new-server-key go with"},
        {{"--authorized-keys", "a", "--authorized-keys", "b"}, "--authorized-keys given twice"},
        {{"--tunnel-listen"}, "option --tunnel-listen needs an argument"},
        {{"--cipher", "aes-256-gcm"},
         "--server-key, --cipher and --accept-new-server-key go with --tunnel HOST:PORT"},
        {{"--tunnel", "h:1", "--cipher=aes-256-gcm", "--cipher=chacha20-poly1305"},
         "--cipher given twice"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *argv[7] = {"ferryd"};
        int argc = 1;
        struct cli cli;
        char err[256] = "";

        for (int j = 0; j < 5 && cases[i].args[j] != NULL; j++)
            argv[argc++] = (char *)cases[i].args[j];
        argv[argc] = NULL;
        ck_assert_int_eq(cli_parse(&cli, argc, argv, err, sizeof(err)), -1);
        ck_assert_msg(strstr(err, cases[i].message) != NULL, "case %zu: '%s' lacks '%s'", i, err,
                      cases[i].message);
    }
}
END_TEST

START_TEST(test_tunnel_flags_are_collected)
{
    char *argv[] = {"ferryd",      "--tunnel", "h.example:1081", "--cipher",
                    "aes-256-gcm", "--key",    "/tmp/k.key",     NULL};
    struct cli cli;
    char err[256];

    ck_assert_int_eq(cli_parse(&cli, ARGC(argv), argv, err, sizeof(err)), 0);
    ck_assert_str_eq(cli.ov.tunnel, "h.example:1081");
    ck_assert_str_eq(cli.ov.tunnel_cipher, "aes-256-gcm");
    ck_assert_str_eq(cli.ov.tunnel_key, "/tmp/k.key");
    ck_assert_ptr_null(cli.ov.tunnel_server_key);
}
END_TEST

START_TEST(test_listen_flags_beyond_the_limit_are_refused)
{
    char *argv[2 * CONF_MAX_LISTEN + 4];
    int argc = 0;
    struct cli cli;
    char err[256];

    argv[argc++] = "ferryd";
    for (int i = 0; i <= CONF_MAX_LISTEN; i++) {
        argv[argc++] = "--listen";
        argv[argc++] = "127.0.0.1:0";
    }
    argv[argc] = NULL;
    ck_assert_int_eq(cli_parse(&cli, argc, argv, err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, "--listen: too many"));
    ck_assert_int_eq(cli_parse(&cli, argc - 2, argv, err, sizeof(err)), 0);
    ck_assert_uint_eq(cli.ov.nlisten, CONF_MAX_LISTEN);
}
END_TEST

START_TEST(test_activation_count_only_for_this_process)
{
    ck_assert_int_eq(listener_activation_count(NULL, NULL, 42, 16), 0);
    ck_assert_int_eq(listener_activation_count("42", NULL, 42, 16), 0);
    ck_assert_int_eq(listener_activation_count(NULL, "2", 42, 16), 0);
    ck_assert_int_eq(listener_activation_count("42", "2", 42, 16), 2);
    ck_assert_int_eq(listener_activation_count("43", "2", 42, 16), 0);
    ck_assert_int_eq(listener_activation_count("042", "1", 42, 16), 1);
    ck_assert_int_eq(listener_activation_count("42", "0", 42, 16), 0);
    ck_assert_int_eq(listener_activation_count("42", "16", 42, 16), 16);
    ck_assert_int_eq(listener_activation_count("42", "17", 42, 16), -1);
    ck_assert_int_eq(listener_activation_count("42", "-1", 42, 16), -1);
    ck_assert_int_eq(listener_activation_count("42", "2x", 42, 16), -1);
    ck_assert_int_eq(listener_activation_count("42", "", 42, 16), -1);
    ck_assert_int_eq(listener_activation_count("42", "99999999999999999999", 42, 16), -1);
    ck_assert_int_eq(listener_activation_count("x42", "2", 42, 16), 0);
}
END_TEST

static Suite *cli_suite(void)
{
    Suite *s = suite_create("cli");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_no_arguments_run_with_built_in_defaults);
    tcase_add_test(tc, test_short_and_long_forms_agree);
    tcase_add_test(tc, test_quick_flags_are_collected_in_order);
    tcase_add_test(tc, test_tunnel_server_flags_are_collected);
    tcase_add_test(tc, test_help_wins_over_version_and_check);
    tcase_add_test(tc, test_bad_command_lines_name_the_problem);
    tcase_add_test(tc, test_tunnel_flags_are_collected);
    tcase_add_test(tc, test_listen_flags_beyond_the_limit_are_refused);
    tcase_add_test(tc, test_activation_count_only_for_this_process);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(cli_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
