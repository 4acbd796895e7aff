/* ferryd's command line (see cli.h). */
#include "config.h"

#include "ferry/cli.h"

#include <getopt.h>
#include <stdarg.h>
#include <string.h>

/* Long options without a short form. */
enum {
    OPT_LISTEN = 256,
    OPT_USERS,
    OPT_LOG_LEVEL,
    OPT_USER,
    OPT_GROUP,
    OPT_TUNNEL,
    OPT_SERVER_KEY,
    OPT_KEY,
    OPT_CIPHER,
    OPT_ACCEPT_NEW,
    OPT_TUNNEL_LISTEN,
    OPT_AUTHORIZED_KEYS,
};

static const struct option long_options[] = {
    {"config", required_argument, NULL, 'f'},
    {"check", no_argument, NULL, 't'},
    {"verbose", no_argument, NULL, 'v'},
    {"quiet", no_argument, NULL, 'q'},
    {"version", no_argument, NULL, 'V'},
    {"help", no_argument, NULL, 'h'},
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"users", required_argument, NULL, OPT_USERS},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"user", required_argument, NULL, OPT_USER},
    {"group", required_argument, NULL, OPT_GROUP},
    {"tunnel", required_argument, NULL, OPT_TUNNEL},
    {"server-key", required_argument, NULL, OPT_SERVER_KEY},
    {"key", required_argument, NULL, OPT_KEY},
    {"cipher", required_argument, NULL, OPT_CIPHER},
    {"accept-new-server-key", no_argument, NULL, OPT_ACCEPT_NEW},
    {"tunnel-listen", required_argument, NULL, OPT_TUNNEL_LISTEN},
    {"authorized-keys", required_argument, NULL, OPT_AUTHORIZED_KEYS},
    {NULL, 0, NULL, 0},
};

void cli_usage(FILE *out)
{
    fprintf(out,
            "usage: ferryd [-t] [-v|-q]... [-f FILE] [--listen ADDR[:PORT]]... [--users PATH]\n"
            "              [--log-level LEVEL] [--user NAME] [--group NAME]\n"
            "              [--tunnel HOST:PORT [--server-key KEY] [--key PATH]\n"
            "               [--cipher NAME] [--accept-new-server-key]]\n"
            "              [--tunnel-listen ADDR[:PORT]]... [--key PATH] [--authorized-keys PATH]\n"
            "  -f, --config FILE       read the configuration from FILE (default: built-in\n"
            "                          defaults, listen on 127.0.0.1:1080 and [::1]:1080\n"
            "                          without authentication)\n"
            "  -t, --check             check the configuration and users file, then exit\n"
            "  -v, --verbose           log more (repeatable)\n"
            "  -q, --quiet             log less (repeatable)\n"
            "  -V, --version           print the version and exit\n"
            "  -h, --help              print this help and exit\n"
            "      --listen ADDR[:PORT]  listen here instead of the file's listen lines\n"
            "                          (repeatable; port 1080 unless given)\n"
            "      --users PATH        users file for password authentication; the method\n"
            "                          becomes 'password' unless the file offers it already\n"
            "      --log-level LEVEL   err, warning, notice, info or debug\n"
            "      --user NAME         run as NAME once the listeners are open\n"
            "      --group NAME        run with group NAME (default: the user's own)\n"
            "      --tunnel HOST:PORT  send every request through the encrypted tunnel to\n"
            "                          the ferryd there (as ssh -D does)\n"
            "      --server-key KEY    its public key (ferry-keygen prints it); without it,\n"
            "                          the key remembered in ~/.config/ferry/known_hosts\n"
            "      --key PATH          our private key (default ~/.config/ferry/key)\n"
            "      --cipher NAME       chacha20-poly1305 (default) or aes-256-gcm (both ends\n"
            "                          need AES instructions)\n"
            "      --accept-new-server-key  remember --server-key for HOST:PORT in known_hosts\n"
            "      --tunnel-listen ADDR[:PORT]  serve the encrypted tunnel here, instead of the\n"
            "                          file's listen lines (repeatable; with --listen: both)\n"
            "      --key PATH          with --tunnel-listen: the server's private key\n"
            "      --authorized-keys PATH  the client keys the tunnel accepts, with their users\n"
            "A flag replaces the file's matching setting; the file's other settings stay, and\n"
            "the safe defaults still apply: a non-loopback listener without authentication is\n"
            "refused. A reload (SIGHUP) reads the file again and applies the flags again.\n"
            "See ferryd(8) and ferryd.conf(5).\n");
}

/* The problem into err; returns -1. */
static int cli_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int cli_fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (errlen == 0)
        return -1;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

int cli_parse(struct cli *cli, int argc, char **argv, char *err, size_t errlen)
{
    int opt, index;

    memset(cli, 0, sizeof(*cli));
    cli->action = CLI_RUN;
    if (errlen > 0)
        err[0] = '\0';
    /* 0 makes glibc start over (and read the environment again); no messages of its own. */
    optind = 0;
    opterr = 0;
    for (;;) {
        index = -1;
        opt = getopt_long(argc, argv, ":f:tvqVh", long_options, &index);
        if (opt == -1)
            break;
        switch (opt) {
        case 'f':
            if (cli->config_path != NULL)
                return cli_fail(err, errlen, "%s given twice", "-f/--config");
            cli->config_path = optarg;
            break;
        case 't':
            if (cli->action == CLI_RUN)
                cli->action = CLI_CHECK;
            break;
        case 'v':
            cli->verbosity++;
            break;
        case 'q':
            cli->verbosity--;
            break;
        case 'V':
            if (cli->action != CLI_HELP)
                cli->action = CLI_VERSION;
            break;
        case 'h':
            cli->action = CLI_HELP;
            break;
        case OPT_LISTEN:
            if (cli->ov.nlisten == CONF_MAX_LISTEN)
                return cli_fail(err, errlen, "--listen: too many (at most %d)", CONF_MAX_LISTEN);
            cli->ov.listen[cli->ov.nlisten++] = optarg;
            break;
        case OPT_USERS:
            if (cli->ov.users != NULL)
                return cli_fail(err, errlen, "%s given twice", "--users");
            cli->ov.users = optarg;
            break;
        case OPT_LOG_LEVEL:
            if (cli->ov.log_level != NULL)
                return cli_fail(err, errlen, "%s given twice", "--log-level");
            cli->ov.log_level = optarg;
            break;
        case OPT_USER:
            if (cli->ov.user != NULL)
                return cli_fail(err, errlen, "%s given twice", "--user");
            cli->ov.user = optarg;
            break;
        case OPT_GROUP:
            if (cli->ov.group != NULL)
                return cli_fail(err, errlen, "%s given twice", "--group");
            cli->ov.group = optarg;
            break;
        case OPT_TUNNEL:
        case OPT_SERVER_KEY:
        case OPT_KEY:
        case OPT_CIPHER: {
            const char **field = opt == OPT_TUNNEL       ? &cli->ov.tunnel
                                 : opt == OPT_SERVER_KEY ? &cli->ov.tunnel_server_key
                                 : opt == OPT_KEY        ? &cli->ov.tunnel_key
                                                         : &cli->ov.tunnel_cipher;

            if (*field != NULL)
                return cli_fail(err, errlen, "--%s given twice", long_options[index].name);
            *field = optarg;
            break;
        }
        case OPT_ACCEPT_NEW:
            cli->accept_new_server_key = true;
            break;
        case OPT_TUNNEL_LISTEN:
            if (cli->ov.ntunnel_listen == CONF_MAX_LISTEN)
                return cli_fail(err, errlen, "--tunnel-listen: too many (at most %d)",
                                CONF_MAX_LISTEN);
            cli->ov.tunnel_listen[cli->ov.ntunnel_listen++] = optarg;
            break;
        case OPT_AUTHORIZED_KEYS:
            if (cli->ov.authorized_keys != NULL)
                return cli_fail(err, errlen, "%s given twice", "--authorized-keys");
            cli->ov.authorized_keys = optarg;
            break;
        case ':':
            /* A missing argument: optopt is the short option, or a long one's value. */
            if (optopt > 0 && optopt < 256 && argv[optind - 1][1] != '-') {
                char name[3] = {'-', (char)optopt, '\0'};
                return cli_fail(err, errlen, "option %s needs an argument", name);
            }
            return cli_fail(err, errlen, "option %s needs an argument", argv[optind - 1]);
        default:
            if (strncmp(argv[optind - 1], "--", 2) == 0) {
                const char *arg = argv[optind - 1];
                const char *eq = strchr(arg, '=');

                if (optopt != 0 && eq != NULL)
                    return cli_fail(err, errlen, "option %.*s takes no argument", (int)(eq - arg),
                                    arg);
                return cli_fail(err, errlen, "unknown option %s", arg);
            }
            if (optopt > 0 && optopt < 256) {
                char name[3] = {'-', (char)optopt, '\0'};
                return cli_fail(err, errlen, "unknown option %s", name);
            }
            return cli_fail(err, errlen, "unknown option %s", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return cli_fail(err, errlen, "unexpected argument '%s'", argv[optind]);
    if (cli->ov.tunnel == NULL &&
        (cli->ov.tunnel_server_key != NULL || cli->ov.tunnel_cipher != NULL ||
         cli->accept_new_server_key))
        return cli_fail(err, errlen,
                        "--server-key, --cipher and --accept-new-server-key go with "
                        "--tunnel HOST:PORT");
    if (cli->ov.tunnel == NULL && cli->ov.ntunnel_listen == 0 && cli->ov.tunnel_key != NULL)
        return cli_fail(err, errlen,
                        "--key goes with --tunnel HOST:PORT or --tunnel-listen ADDR[:PORT]");
    if (cli->accept_new_server_key && cli->ov.tunnel_server_key == NULL)
        return cli_fail(err, errlen, "--accept-new-server-key needs the key: --server-key KEY");
    return 0;
}
