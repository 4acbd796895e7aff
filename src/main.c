/* ferryd: command line, configuration, signals, and the loop. */
#include "config.h"

#include <ev.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ferry/config.h"
#include "ferry/log.h"
#include "ferry/server.h"
#include "ferry/socks5.h"
#include "ferry/userdb.h"

static void usage(FILE *out)
{
    fprintf(out, "usage: ferryd [-t] [-v|-q]... [-f FILE]\n"
                 "  -f FILE  read the configuration from FILE (default: built-in defaults,\n"
                 "           listen on 127.0.0.1:1080 and [::1]:1080 without authentication)\n"
                 "  -t       check the configuration and users file, then exit\n"
                 "  -v       log more (repeatable)\n"
                 "  -q       log less (repeatable)\n"
                 "  -V       print the version and exit\n"
                 "  -h       print this help and exit\n");
}

static bool config_uses_passwords(const struct config *cfg)
{
    for (size_t i = 0; i < cfg->nmethods; i++) {
        if (cfg->methods[i] == SOCKS5_METHOD_USERPASS)
            return true;
    }
    return false;
}

/*
 * Shutdown: the first SIGTERM/SIGINT closes the listeners and gives the sessions in flight
 * shutdown-grace seconds to finish; a second signal, or the end of the grace, closes the rest.
 */
struct shutdown {
    struct server *srv;
    double grace;
    bool stopping;
    ev_timer poll;   /* ends the loop as soon as the last session is gone */
    ev_timer expiry; /* ends it when the grace is over */
};

static void shutdown_poll_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct shutdown *sd = w->data;

    if (server_sessions(sd->srv) == 0)
        ev_break(loop, EVBREAK_ALL);
}

static void shutdown_expiry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct shutdown *sd = w->data;

    log_notice("shutdown grace of %.1f s over: closing %u sessions", sd->grace,
               server_sessions(sd->srv));
    ev_break(loop, EVBREAK_ALL);
}

static void stop_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    struct shutdown *sd = w->data;
    unsigned live = server_sessions(sd->srv);

    if (sd->stopping || live == 0 || sd->grace <= 0) {
        log_notice("signal %d: shutting down now (%u sessions)", w->signum, live);
        ev_break(loop, EVBREAK_ALL);
        return;
    }
    sd->stopping = true;
    log_notice("signal %d: shutting down, %u sessions may finish within %.1f s", w->signum, live,
               sd->grace);
    server_stop_listening(sd->srv);
    ev_timer_set(&sd->poll, 0.05, 0.05);
    ev_timer_start(loop, &sd->poll);
    ev_timer_set(&sd->expiry, sd->grace, 0.);
    ev_timer_start(loop, &sd->expiry);
}

int main(int argc, char **argv)
{
    const char *path = NULL;
    bool check_only = false;
    int verbosity = 0;
    char err[1024] = "";
    struct config cfg;
    struct userdb *users = NULL;
    struct ev_loop *loop;
    struct server *srv;
    ev_signal sigterm, sigint;
    struct shutdown sd = {0};
    int opt;

    while ((opt = getopt(argc, argv, "f:tvqVh")) != -1) {
        switch (opt) {
        case 'f':
            path = optarg;
            break;
        case 't':
            check_only = true;
            break;
        case 'v':
            verbosity++;
            break;
        case 'q':
            verbosity--;
            break;
        case 'V':
            printf("ferryd %s\n", PACKAGE_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 1;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "ferryd: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 1;
    }

    if (path != NULL) {
        if (config_load(&cfg, path, err, sizeof(err)) < 0) {
            fprintf(stderr, "ferryd: %s\n", err);
            return 1;
        }
    } else {
        config_defaults(&cfg);
    }
    if (sodium_init() < 0) {
        fprintf(stderr, "ferryd: libsodium failed to initialise\n");
        return 1;
    }
    if (config_uses_passwords(&cfg)) {
        users = userdb_load(cfg.users_file, err, sizeof(err));
        if (users == NULL) {
            fprintf(stderr, "ferryd: %s\n", err);
            config_release(&cfg);
            return 1;
        }
        if (userdb_count(users) == 0)
            fprintf(stderr, "ferryd: warning: %s has no users: every login will fail\n",
                    cfg.users_file);
    }
    if (check_only) {
        printf("ferryd: %s: configuration OK\n", path != NULL ? path : "built-in defaults");
        userdb_free(users);
        config_release(&cfg);
        return 0;
    }

    log_open(cfg.log_target, cfg.syslog_facility, cfg.log_level);
    log_set_level(cfg.log_level + verbosity);
    signal(SIGPIPE, SIG_IGN);

    loop = ev_default_loop(EVFLAG_AUTO);
    if (loop == NULL) {
        fprintf(stderr, "ferryd: cannot create the event loop\n");
        return 1;
    }
    srv = server_new(loop, &cfg, users, err, sizeof(err));
    if (srv == NULL) {
        log_err("%s", err);
        if (cfg.log_target != LOG_TARGET_STDERR)
            fprintf(stderr, "ferryd: %s\n", err);
        userdb_free(users);
        config_release(&cfg);
        return 1;
    }
    sd.srv = srv;
    sd.grace = cfg.shutdown_grace;
    ev_timer_init(&sd.poll, shutdown_poll_cb, 0., 0.);
    ev_timer_init(&sd.expiry, shutdown_expiry_cb, 0., 0.);
    sd.poll.data = sd.expiry.data = &sd;
    ev_signal_init(&sigterm, stop_cb, SIGTERM);
    ev_signal_init(&sigint, stop_cb, SIGINT);
    sigterm.data = sigint.data = &sd;
    ev_signal_start(loop, &sigterm);
    ev_signal_start(loop, &sigint);
    log_notice("ferryd %s started", PACKAGE_VERSION);

    ev_run(loop, 0);

    ev_timer_stop(loop, &sd.poll);
    ev_timer_stop(loop, &sd.expiry);
    server_free(srv);
    ev_signal_stop(loop, &sigterm);
    ev_signal_stop(loop, &sigint);
    ev_loop_destroy(loop);
    userdb_free(users);
    config_release(&cfg);
    log_notice("stopped");
    return 0;
}
