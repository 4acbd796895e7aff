/*
 * ferryd's command line: short and long options (getopt_long) into a struct, without output or
 * exit, so that the parser can be tested and fuzzed. main acts on the result.
 */
#ifndef FERRY_CLI_H
#define FERRY_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "ferry/conf.h"

enum cli_action {
    CLI_RUN,     /* serve */
    CLI_CHECK,   /* -t, --check: check the configuration and exit */
    CLI_VERSION, /* -V, --version */
    CLI_HELP,    /* -h, --help */
};

struct cli {
    enum cli_action action;
    const char *config_path; /* -f, --config FILE; NULL: the built-in defaults */
    int verbosity;           /* +1 per -v, -1 per -q */
    bool accept_new_server_key; /* --accept-new-server-key (with --tunnel, --server-key) */
    struct conf_overrides ov;
};

/*
 * Parse argv (argv[0] the program name). Returns 0, or -1 with "what is wrong" in err. The
 * strings in cli point into argv. Resets getopt's state, so it may be called again.
 */
int cli_parse(struct cli *cli, int argc, char **argv, char *err, size_t errlen);

/* The --help text. */
void cli_usage(FILE *out);

#endif
