/*
 * ferryd's command line: cli_parse on the input split at NUL bytes into arguments (at most
 * 64), then its flags applied over the built-in defaults by conf_load_with (no file: nothing
 * is opened; a relative --users path is only joined to the current directory). Checks that a
 * parse that succeeds keeps its strings inside the arguments and within the limits, that a
 * failure explains itself, and that the flags never open what the safe defaults keep closed.
 */
#include "config.h"

#include "ferry/cli.h"
#include "ferry/conf.h"
#include "ferry/socks5.h"
#include "fuzz.h"

#define FUZZ_CLI_MAX_ARGS 64

/* s is one of the arguments (the parser hands out pointers into argv). */
static bool is_argument(const char *s, char **argv, int argc)
{
    for (int i = 0; i < argc; i++) {
        if (s >= argv[i] && s <= argv[i] + strlen(argv[i]))
            return true;
    }
    return false;
}

static void check_flags(const struct cli *cli)
{
    char err[512];
    struct config c;
    bool noauth = false;

    if (conf_load_with(&c, NULL, &cli->ov, err, sizeof(err)) < 0) {
        FUZZ_CHECK(strncmp(err, "command line: ", 14) == 0);
        return;
    }
    FUZZ_CHECK(c.nlisten >= 1 && c.nlisten <= CONF_MAX_LISTEN);
    if (cli->ov.nlisten > 0)
        FUZZ_CHECK(c.nlisten == cli->ov.nlisten && !c.listen_is_default);
    if (cli->ov.users != NULL)
        FUZZ_CHECK(c.users_file != NULL && c.nmethods == 1 &&
                   c.methods[0] == SOCKS5_METHOD_USERPASS);
    for (size_t i = 0; i < c.nmethods; i++)
        noauth = noauth || c.methods[i] == SOCKS5_METHOD_NOAUTH;
    for (size_t i = 0; noauth && i < c.nlisten; i++)
        FUZZ_CHECK(addr_is_loopback(&c.listen[i]));
    FUZZ_CHECK((c.run_user != NULL) == (cli->ov.user != NULL));
    FUZZ_CHECK(c.run_group == NULL || c.run_user != NULL);
    conf_release(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1), *argv[FUZZ_CLI_MAX_ARGS + 2];
    int argc = 0;
    size_t start = 0;
    char err[256];
    struct cli cli;
    int r;

    if (text == NULL)
        abort();
    if (size > 0)
        memcpy(text, data, size);
    text[size] = '\0';
    argv[argc++] = "ferryd";
    for (size_t i = 0; i <= size && argc <= FUZZ_CLI_MAX_ARGS; i++) {
        if (text[i] == '\0') {
            argv[argc++] = text + start;
            start = i + 1;
        }
    }
    argv[argc] = NULL;

    r = cli_parse(&cli, argc, argv, err, sizeof(err));
    FUZZ_CHECK(r == 0 || r == -1);
    if (r < 0) {
        FUZZ_CHECK(err[0] != '\0' && strnlen(err, sizeof(err)) < sizeof(err));
    } else {
        FUZZ_CHECK(cli.action >= CLI_RUN && cli.action <= CLI_HELP);
        FUZZ_CHECK(cli.ov.nlisten <= CONF_MAX_LISTEN);
        for (size_t i = 0; i < cli.ov.nlisten; i++)
            FUZZ_CHECK(is_argument(cli.ov.listen[i], argv, argc));
        FUZZ_CHECK(cli.config_path == NULL || is_argument(cli.config_path, argv, argc));
        FUZZ_CHECK(cli.ov.users == NULL || is_argument(cli.ov.users, argv, argc));
        FUZZ_CHECK(cli.ov.log_level == NULL || is_argument(cli.ov.log_level, argv, argc));
        if (cli.action == CLI_RUN || cli.action == CLI_CHECK)
            check_flags(&cli);
    }
    free(text);
    return 0;
}
