/*
 * ferryd: command line, configuration, signals, and the workers. The main thread only loads
 * configurations and handles signals; the workers (worker.c) serve the clients.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ferry/auth_cache.h"
#include "ferry/cli.h"
#include "ferry/conf.h"
#include "ferry/frontend.h"
#include "ferry/limits.h"
#include "ferry/listener.h"
#include "ferry/localaddr.h"
#include "ferry/log.h"
#include "ferry/metrics.h"
#include "ferry/notify.h"
#include "ferry/privdrop.h"
#include "ferry/route.h"
#include "ferry/snapshot.h"
#include "ferry/tunnel_keys.h"
#include "ferry/tunnel_known.h"
#include "ferry/upgrade.h"
#include "ferry/worker.h"

/* Client and user entries remembered without sessions (rates, failed logins, quotas). */
#define LIMITS_MAX_IDLE 65536
#define MAX_WORKERS 256
/* Logins remembered (auth-cache), for every worker together. */
#define AUTH_CACHE_SLOTS 16384
/*
 * Descriptors besides the sessions' own, for the fd budget: per worker its loop, listeners,
 * resolver and auth pool sockets and spare fd, and up to 64 spare splice pipes (128);
 * for the process its standard streams, signals and log; and the 64 connections past
 * max-sessions that are let in to be refused.
 */
#define FDS_PER_WORKER 160
#define FDS_PROCESS 32
#define FDS_OVERFLOW 64
/* How long an upgrade's new process may take to serve before it is given up. */
#define UPGRADE_TIMEOUT 30.0

struct daemon {
    const char *path;                /* the configuration file, NULL for the built-in defaults */
    const struct conf_overrides *ov; /* the command line's settings, applied at every load */
    int verbosity;
    struct privdrop drop; /* the user and group to run as, looked up at start */
    /* Passed by the service manager (socket activation): their addresses, checked again
     * against each reloaded configuration's safe defaults. */
    bool activated;
    size_t nactivated;
    struct addr activated_addrs[CONF_MAX_LISTEN];
    /* The upgrade (SIGUSR2): the binary and command line to start again, a descriptor of
     * every listening socket to hand on, and the new process while it starts. */
    char exe[4096]; /* "" when unknown */
    char **argv;
    int *listen_fds;
    size_t nlisten_fds;
    int upgraded_from; /* started by an upgrade: the pipe to say we serve on, or -1 */
    pid_t upgrade_pid; /* the new process, until it serves or fails */
    ev_io upgrade_ready;
    ev_timer upgrade_timeout;
    ev_child upgrade_child;
    struct snapshot *snap;    /* the configuration now in force */
    struct localaddrs *local; /* the host's own addresses, as the workers have them */
    ev_io local_watch;        /* rtnetlink: an address was added or removed */
    struct limits *limits;
    struct auth_cache *auth_cache; /* one for every worker: a login verified once is known to all */
    struct worker *workers[MAX_WORKERS];
    unsigned nworkers;
    bool stopping;
    ev_timer poll;          /* shutting down: ends the loop once every worker is done */
    struct notifier notify; /* systemd's $NOTIFY_SOCKET, when it set one */
    ev_timer notify_tick;   /* WATCHDOG=1 (when asked for) and STATUS= */
    struct metrics_server *metrics; /* the scrape listener, when configured */
    uint64_t reloads_ok, reloads_failed;
    double start_time;
};

/* Open file descriptors of the process (metrics). */
static unsigned long open_fds(void)
{
    DIR *dir = opendir("/proc/self/fd");
    unsigned long n = 0;

    if (dir == NULL)
        return 0;
    while (readdir(dir) != NULL)
        n++;
    closedir(dir);
    return n > 3 ? n - 3 : 0; /* ".", ".." and the directory's own descriptor */
}

static unsigned daemon_sessions(const struct daemon *d);

/* One scrape: what the workers counted and the process's own figures. */
static void metrics_source(void *arg, struct metrics_global *g, const struct metrics_worker **w,
                           size_t *n)
{
    struct daemon *d = arg;
    struct rlimit rl;
    size_t max = *n;

    g->workers = d->nworkers;
    g->sessions_open = daemon_sessions(d);
    g->fds_open = open_fds();
    g->fds_max = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? (unsigned long)rl.rlim_cur : 0;
    g->reloads_ok = d->reloads_ok;
    g->reloads_failed = d->reloads_failed;
    g->start_time = d->start_time;
    g->stopping = d->stopping;
    g->version = PACKAGE_VERSION;
    *n = 0;
    for (unsigned i = 0; i < d->nworkers && *n < max; i++)
        w[(*n)++] = worker_metrics(d->workers[i]);
}

static unsigned daemon_sessions(const struct daemon *d)
{
    unsigned n = 0;

    for (unsigned i = 0; i < d->nworkers; i++)
        n += worker_sessions(d->workers[i]);
    return n;
}

/* STATUS= for the service manager (systemctl status shows it). */
static void daemon_notify_status(const struct daemon *d, const char *state)
{
    unsigned n = daemon_sessions(d);

    notify_send(&d->notify, "%sSTATUS=%u session%s, %u worker%s, configuration %u", state, n,
                n == 1 ? "" : "s", d->nworkers, d->nworkers == 1 ? "" : "s", d->snap->generation);
}

static void notify_tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct daemon *d = w->data;

    /* The main loop answers: the watchdog sees a daemon that still turns. */
    daemon_notify_status(d, notify_watchdog_interval() > 0 ? "WATCHDOG=1\n" : "");
}

/* One line of totals over every worker: on SIGUSR1 and when ferryd stops. */
static void daemon_log_totals(const struct daemon *d, const char *what)
{
    struct worker_totals t = {0};

    for (unsigned i = 0; i < d->nworkers; i++)
        worker_add_counters(d->workers[i], &t);
    log_notice("%s: sessions live=%u ended=%" PRIu64 " refused=%" PRIu64 " limited=%" PRIu64
               " failed=%" PRIu64 " bytes up=%" PRIu64 " down=%" PRIu64 " workers=%u",
               what, daemon_sessions(d), t.sessions, t.refused, t.limited, t.failed, t.up, t.down,
               d->nworkers);
}

/* SIGUSR1: the log file is opened again (logrotate renamed it), then the totals go to it. */
static void stats_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    log_reopen();
    daemon_log_totals(w->data, "stats");
}

/* The CPUs ferryd may run on (taskset, cpusets, systemd's CPUAffinity=), as nproc counts. */
static long cpus_usable(void)
{
    cpu_set_t set;

    if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set);
    return sysconf(_SC_NPROCESSORS_ONLN);
}

static unsigned workers_wanted(const struct config *cfg)
{
    long cpus;

    if (cfg->workers > 0)
        return cfg->workers;
    cpus = cpus_usable();
    if (cpus < 1)
        return 1;
    return cpus > MAX_WORKERS ? MAX_WORKERS : (unsigned)cpus;
}

static bool same_name(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/*
 * Settings a reload cannot change: the sockets, threads, resolver and log target were made
 * from the first configuration. Logs each one that differs (the listen lines only when ferryd
 * bound its sockets itself: passed ones ignore them).
 */
static void warn_restart_settings(const struct config *old, const struct config *new,
                                  bool own_listeners)
{
    bool listen_same = old->nlisten == new->nlisten;
    bool servers_same = old->nresolver_servers == new->nresolver_servers;

    for (size_t i = 0; listen_same && i < old->nlisten; i++)
        listen_same = addr_equal(&old->listen[i], &new->listen[i]) &&
                      ((old->listen_advertise[i].len == 0 && new->listen_advertise[i].len == 0) ||
                       addr_equal(&old->listen_advertise[i], &new->listen_advertise[i]));
    for (size_t i = 0; servers_same && i < old->nresolver_servers; i++)
        servers_same = addr_equal(&old->resolver_servers[i], &new->resolver_servers[i]);
    if (!listen_same && own_listeners)
        log_warn("reload: listen lines changed; they take effect at the next restart");
    if (old->workers != new->workers)
        log_warn("reload: workers changed; it takes effect at the next restart");
    if (old->auth_threads != new->auth_threads)
        log_warn("reload: auth-threads changed; it takes effect at the next restart");
    if (!servers_same || old->resolver_timeout != new->resolver_timeout ||
        old->resolver_tries != new->resolver_tries)
        log_warn("reload: resolver settings changed; they take effect at the next restart");
    if ((old->metrics_listen.len != 0 || new->metrics_listen.len != 0) &&
        !addr_equal(&old->metrics_listen, &new->metrics_listen))
        log_warn("reload: the metrics listener changed; it takes effect at the next restart");
    if (!log_same_settings(old, new))
        log_warn("reload: the log target or format changed; it takes effect at the next restart");
    if (!same_name(old->run_user, new->run_user) || !same_name(old->run_group, new->run_group) ||
        old->run_as_root != new->run_as_root)
        log_warn("reload: user, group or run-as-root changed; it takes effect at the next "
                 "restart");
}

/* A configuration that would serve a passed socket without authentication against the safe
 * defaults: returns its index, or -1. */
static int activated_exposed(const struct daemon *d, const struct config *cfg)
{
    for (size_t i = 0; d->activated && i < d->nactivated; i++) {
        if (conf_listener_exposed(cfg, &d->activated_addrs[i]))
            return (int)i;
    }
    return -1;
}

/* Read the host's addresses again and hand a changed list to every worker. */
static void daemon_refresh_local(struct daemon *d, const char *why)
{
    struct localaddrs *l = localaddrs_read();

    if (l == NULL) {
        log_warn("%s: cannot read the interface addresses (%s); keeping the %zu known", why,
                 strerror(errno), localaddrs_count(d->local));
        return;
    }
    if (localaddrs_same(l, d->local)) {
        localaddrs_unref(l);
        return;
    }
    for (unsigned i = 0; i < d->nworkers; i++)
        worker_set_local(d->workers[i], l);
    localaddrs_unref(d->local);
    d->local = l;
    log_info("%s: %zu interface addresses are now private destinations", why, localaddrs_count(l));
}

static void local_watch_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct daemon *d = w->data;
    int drained = localaddrs_watch_drain(w->fd);

    if (drained < 0) {
        log_warn("interface address watch failed (%s); addresses are read again only on "
                 "SIGHUP",
                 strerror(errno));
        ev_io_stop(loop, w);
        close(w->fd);
        return;
    }
    if (drained > 0 && !d->stopping)
        daemon_refresh_local(d, "interface addresses changed");
}

/*
 * Raise the soft limit on open files to the hard one: every session holds descriptors, and
 * the soft default (1024 under systemd) would hold ferryd to a few hundred sessions. Returns
 * the limit now in force.
 */
static rlim_t fd_limit_raise(void)
{
    struct rlimit rl;
    rlim_t before;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return 0;
    before = rl.rlim_cur;
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t want = rl.rlim_max;
        FILE *f;
        unsigned long nr_open;

        /* An unlimited hard limit still stops at fs.nr_open. */
        if (want == RLIM_INFINITY) {
            want = 1048576;
            f = fopen("/proc/sys/fs/nr_open", "re");
            if (f != NULL) {
                if (fscanf(f, "%lu", &nr_open) == 1)
                    want = (rlim_t)nr_open;
                fclose(f);
            }
        }
        rl.rlim_cur = want;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            rl.rlim_cur = before;
    }
    if (rl.rlim_cur != before)
        log_info("file descriptor limit raised from %llu to %llu (the hard limit)",
                 (unsigned long long)before, (unsigned long long)rl.rlim_cur);
    else
        log_info("file descriptor limit: %llu", (unsigned long long)rl.rlim_cur);
    return rl.rlim_cur;
}

/*
 * Warn when max-sessions cannot fit in the descriptor limit: a relayed session holds two
 * (client and target), and the workers and the process hold some of their own. ferryd does
 * not lower max-sessions: past the limit new clients are closed at accept (server.c).
 */
static void fd_budget_check(const struct config *cfg, unsigned nworkers)
{
    struct rlimit rl;
    unsigned long long fixed =
        FDS_PROCESS + FDS_OVERFLOW + (unsigned long long)nworkers * (FDS_PER_WORKER + cfg->nlisten);
    unsigned long long need = 2ull * cfg->max_sessions + fixed;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY || need <= rl.rlim_cur)
        return;
    log_warn("max-sessions %u needs about %llu file descriptors, but the limit is %llu: about "
             "%llu relayed sessions fit, and new clients beyond them are closed at accept "
             "(raise the limit, e.g. LimitNOFILE=, or lower max-sessions)",
             cfg->max_sessions, need, (unsigned long long)rl.rlim_cur,
             rl.rlim_cur > fixed ? (unsigned long long)(rl.rlim_cur - fixed) / 2 : 0ull);
}

/* SIGHUP: load the file again; a good one replaces the old for new sessions, a bad one not. */
static void reload_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    struct daemon *d = w->data;
    char err[1024] = "", warn[512] = "";
    struct snapshot *snap;
    int exposed;

    if (d->stopping)
        return;
    notify_reloading(&d->notify);
    daemon_refresh_local(d, "reload");
    snap = snapshot_load(d->path, d->ov, err, sizeof(err), warn, sizeof(warn));
    exposed = snap != NULL ? activated_exposed(d, &snap->config) : -1;
    if (exposed >= 0) {
        char name[ADDR_STRLEN];

        snprintf(err, sizeof(err),
                 "the passed socket %s is not a loopback address and auth allows 'none': use "
                 "'auth password', or 'allow-unauthenticated yes' with client rules",
                 addr_format(&d->activated_addrs[exposed], name, sizeof(name)));
        snapshot_unref(snap);
        snap = NULL;
    }
    if (snap == NULL) {
        d->reloads_failed++;
        log_err("reload failed, keeping the running configuration: %s", err);
        daemon_notify_status(d, "READY=1\n");
        return;
    }
    if (warn[0] != '\0')
        log_warn("%s", warn);
    d->reloads_ok++;
    snap->generation = d->snap->generation + 1;
    warn_restart_settings(&d->snap->config, &snap->config, !d->activated);
    log_set_level(snap->config.log_level + d->verbosity);
    fd_budget_check(&snap->config, d->nworkers);
    limits_set_client_prefix6(d->limits, snap->config.client_prefix6);
    {
        struct timespec ts;
        unsigned down;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        down = routes_carry_health(snap->config.routes, d->snap->config.routes,
                                   (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
        if (down > 0)
            log_notice("reload: %u parent%s still marked down", down, down == 1 ? "" : "s");
    }
    for (unsigned i = 0; i < d->nworkers; i++)
        worker_reload(d->workers[i], snap);
    snapshot_unref(d->snap);
    d->snap = snap;
    log_notice("reloaded %s (configuration %u): new sessions use it, %u running sessions keep "
               "theirs",
               d->path != NULL ? d->path : "built-in defaults", snap->generation,
               daemon_sessions(d));
    daemon_notify_status(d, "READY=1\n");
}

static void poll_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct daemon *d = w->data;

    for (unsigned i = 0; i < d->nworkers; i++) {
        if (!worker_done(d->workers[i]))
            return;
    }
    ev_break(loop, EVBREAK_ALL);
}

/* The descriptors kept for an upgrade: closed when ferryd stops, so the listeners do close. */
static void daemon_close_listen_fds(struct daemon *d)
{
    for (size_t i = 0; i < d->nlisten_fds; i++)
        close(d->listen_fds[i]);
    free(d->listen_fds);
    d->listen_fds = NULL;
    d->nlisten_fds = 0;
}

/* The new process's start is over, one way or the other. */
static void upgrade_end(struct daemon *d, struct ev_loop *loop)
{
    ev_io_stop(loop, &d->upgrade_ready);
    close(d->upgrade_ready.fd);
    ev_timer_stop(loop, &d->upgrade_timeout);
    d->upgrade_pid = 0;
}

/*
 * SIGTERM/SIGINT, or an upgrade handed over: the first closes the listeners and gives the
 * sessions in flight shutdown-grace seconds to finish; a second signal, or the end of the
 * grace, closes the rest.
 */
static void daemon_stop(struct daemon *d, struct ev_loop *loop, const char *why)
{
    double grace = d->snap->config.shutdown_grace;
    unsigned live = daemon_sessions(d);
    bool now = d->stopping || live == 0 || grace <= 0;

    if (now)
        log_notice("%s: shutting down now (%u sessions)", why, live);
    else
        log_notice("%s: shutting down, %u sessions may finish within %.1f s", why, live, grace);
    daemon_close_listen_fds(d);
    /* An upgrade under way: the new process must not outlive the stop. */
    if (d->upgrade_pid > 0) {
        log_notice("upgrade: stopping process %ld too", (long)d->upgrade_pid);
        kill(d->upgrade_pid, SIGTERM);
        upgrade_end(d, loop);
    }
    if (!d->stopping)
        notify_send(&d->notify, "STOPPING=1\nSTATUS=shutting down, %u sessions", live);
    d->stopping = true;
    for (unsigned i = 0; i < d->nworkers; i++)
        worker_shutdown(d->workers[i], grace, now);
    if (!ev_is_active(&d->poll)) {
        ev_timer_set(&d->poll, 0.01, 0.01);
        ev_timer_start(loop, &d->poll);
    }
}

static void stop_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    char why[32];

    snprintf(why, sizeof(why), "signal %d", w->signum);
    daemon_stop(w->data, loop, why);
}

/* The new process wrote that it serves (a byte), or ended without saying so (EOF). */
static void upgrade_ready_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct daemon *d = w->data;
    pid_t pid = d->upgrade_pid;
    char byte;
    ssize_t r = read(w->fd, &byte, 1);

    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    upgrade_end(d, loop);
    if (r != 1) {
        log_err("upgrade: process %ld ended before it served; this process keeps serving",
                (long)pid);
        return;
    }
    log_notice("upgrade: process %ld serves; this process stops accepting", (long)pid);
    /* The service manager follows the new process from now on. */
    notify_send(&d->notify, "MAINPID=%ld\nSTATUS=upgraded: process %ld serves", (long)pid,
                (long)pid);
    daemon_stop(d, loop, "upgrade");
}

static void upgrade_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct daemon *d = w->data;

    log_err("upgrade: process %ld did not serve within %.0f s: stopping it; this process keeps "
            "serving",
            (long)d->upgrade_pid, UPGRADE_TIMEOUT);
    kill(d->upgrade_pid, SIGTERM);
    upgrade_end(d, loop);
}

/* Reaps the new process when it ends while this one still runs. */
static void upgrade_child_cb(struct ev_loop *loop, ev_child *w, int revents)
{
    ev_child_stop(loop, w);
    if (WIFEXITED(w->rstatus))
        log_info("upgrade: process %d exited with status %d", w->rpid, WEXITSTATUS(w->rstatus));
    else if (WIFSIGNALED(w->rstatus))
        log_info("upgrade: process %d ended by signal %d", w->rpid, WTERMSIG(w->rstatus));
}

/*
 * SIGUSR2: start the binary again with every listening socket. This process serves on until
 * the new one says it serves too; then it stops accepting and drains as on SIGTERM.
 */
static void upgrade_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    struct daemon *d = w->data;
    char err[256];
    int ready_fd;
    pid_t pid;

    if (d->stopping || d->upgrade_pid > 0) {
        log_warn("upgrade: SIGUSR2 ignored: %s",
                 d->stopping ? "ferryd is stopping" : "a new process is starting already");
        return;
    }
    if (d->exe[0] == '\0' || d->nlisten_fds == 0) {
        log_err("upgrade: SIGUSR2 ignored: %s", d->exe[0] == '\0'
                                                    ? "the path of ferryd's binary is unknown"
                                                    : "no listening socket to hand on");
        return;
    }
    pid =
        upgrade_spawn(d->exe, d->argv, d->listen_fds, d->nlisten_fds, &ready_fd, err, sizeof(err));
    if (pid < 0) {
        log_err("upgrade: %s; this process keeps serving", err);
        return;
    }
    d->upgrade_pid = pid;
    ev_io_init(&d->upgrade_ready, upgrade_ready_cb, ready_fd, EV_READ);
    d->upgrade_ready.data = d;
    ev_io_start(loop, &d->upgrade_ready);
    ev_timer_init(&d->upgrade_timeout, upgrade_timeout_cb, UPGRADE_TIMEOUT, 0.);
    d->upgrade_timeout.data = d;
    ev_timer_start(loop, &d->upgrade_timeout);
    if (ev_is_active(&d->upgrade_child))
        ev_child_stop(loop, &d->upgrade_child);
    ev_child_init(&d->upgrade_child, upgrade_child_cb, pid, 0);
    d->upgrade_child.data = d;
    ev_child_start(loop, &d->upgrade_child);
    log_notice("upgrade: started %s as process %ld with %zu listening socket%s; this process "
               "serves until it does",
               d->exe, (long)pid, d->nlisten_fds, d->nlisten_fds == 1 ? "" : "s");
}

/*
 * Once the sockets are open: become the configured user (threads start only after this, so
 * every one has no_new_privs), and check that a reload will still read the files; or, kept
 * as root, warn, or refuse when run-as-root says no.
 */
static int daemon_drop(struct daemon *d, char *err, size_t errlen)
{
    const struct config *cfg = &d->snap->config;

    if (!d->drop.wanted) {
        if (geteuid() != 0)
            return 0;
        if (!cfg->run_as_root) {
            snprintf(err, errlen,
                     "ferryd runs as root and run-as-root is no: name the user to run as "
                     "(user NAME, or --user NAME)");
            return -1;
        }
        log_warn("running as root: name an unprivileged user to run as once the listeners are "
                 "open (user NAME in ferryd.conf, or --user NAME)");
        return 0;
    }
    if (privdrop_apply(&d->drop, err, errlen) < 0)
        return -1;
    log_notice("running as user %s (uid %lu), group %s (gid %lu), no_new_privs set", d->drop.user,
               (unsigned long)d->drop.uid, d->drop.group, (unsigned long)d->drop.gid);
    if (privdrop_check_readable(&d->drop, d->path, "configuration", err, errlen) < 0)
        return -1;
    if (snapshot_uses_passwords(cfg) &&
        privdrop_check_readable(&d->drop, cfg->users_file, "users file", err, errlen) < 0)
        return -1;
    /* The tunnel's files are read again at every reload, as this user. */
    if (cfg->tunnel_key_file != NULL &&
        privdrop_check_readable(&d->drop, cfg->tunnel_key_file, "tunnel key", err, errlen) < 0)
        return -1;
    if (cfg->tunnel_authkeys_file != NULL &&
        privdrop_check_readable(&d->drop, cfg->tunnel_authkeys_file, "tunnel authorized-keys",
                                err, errlen) < 0)
        return -1;
    for (size_t i = 0; cfg->routes != NULL && i < cfg->routes->nparents; i++) {
        const struct parent *p = &cfg->routes->parents[i];

        if (privdrop_check_readable(&d->drop, p->credentials_file, "parent credentials", err,
                                    errlen) < 0 ||
            privdrop_check_readable(&d->drop, p->key_file, "tunnel key", err, errlen) < 0)
            return -1;
    }
    return 0;
}

/* The service manager's sockets, or the configured addresses bound. Returns 0 or -1. */
static int daemon_listen(struct daemon *d, struct listener_set *ls, unsigned n, char *err,
                         size_t errlen)
{
    const struct config *cfg = &d->snap->config;
    char names[CONF_MAX_LISTEN][LISTENER_NAME_MAX];
    int passed = listener_set_inherit(ls, n, names, err, errlen);
    int exposed;

    if (passed < 0)
        return -1;
    if (passed == 0)
        return listener_set_open(ls, cfg, n, err, errlen);
    d->activated = true;
    d->nactivated = ls->naddrs;
    memcpy(d->activated_addrs, ls->addrs, sizeof(struct addr) * ls->naddrs);
    exposed = activated_exposed(d, cfg);
    if (exposed >= 0) {
        char name[ADDR_STRLEN];

        snprintf(err, errlen,
                 "socket activation: the passed socket %s is not a loopback address and auth "
                 "allows 'none': use 'auth password' (--users FILE), or "
                 "'allow-unauthenticated yes' with client rules",
                 addr_format(&ls->addrs[exposed], name, sizeof(name)));
        listener_set_close(ls);
        return -1;
    }
    /* A listen line of the same address lends its advertise address, protocols and tunnel
     * mode; a passed socket without one serves every protocol. */
    for (size_t i = 0; i < ls->naddrs; i++) {
        int k = conf_listen_index(cfg, &ls->addrs[i]);

        ls->protocols[i] = FRONTEND_ALL;
        if (k >= 0) {
            ls->advertise[i] = cfg->listen_advertise[k];
            ls->tunnel[i] = cfg->listen_tunnel[k];
            ls->protocols[i] = cfg->listen_protocols[k];
        }
    }
    if (d->upgraded_from >= 0)
        log_notice("upgrade: took over %d listening socket%s from the previous process", passed,
                   passed == 1 ? "" : "s");
    else if (!cfg->listen_is_default)
        log_notice("socket activation: %d socket%s passed; the configured listen addresses "
                   "are not used",
                   passed, passed == 1 ? "" : "s");
    return 0;
}

/* A descriptor of every listening socket, for an upgrade to hand on; without, none is done. */
static void daemon_keep_listen_fds(struct daemon *d, const struct listener_set *ls)
{
    size_t n = (size_t)ls->nworkers * ls->naddrs;

    d->listen_fds = calloc(n, sizeof(int));
    if (d->listen_fds == NULL) {
        log_warn("upgrade: out of memory: SIGUSR2 will not work");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        d->listen_fds[i] = fcntl(ls->fds[i], F_DUPFD_CLOEXEC, 3);
        if (d->listen_fds[i] < 0) {
            log_warn("upgrade: %s: SIGUSR2 will not work", strerror(errno));
            daemon_close_listen_fds(d);
            return;
        }
        d->nlisten_fds++;
    }
}

/* Open the sockets and start the workers; on failure nothing is left running. */
static int daemon_start(struct daemon *d, char *err, size_t errlen)
{
    const struct config *cfg = &d->snap->config;
    struct listener_set ls;
    unsigned n = workers_wanted(cfg);

    if (daemon_listen(d, &ls, n, err, errlen) < 0)
        return -1;
    if (daemon_drop(d, err, errlen) < 0) {
        listener_set_close(&ls);
        return -1;
    }
    daemon_keep_listen_fds(d, &ls);
    for (unsigned i = 0; i < n; i++) {
        d->workers[i] =
            worker_start(i, d->snap, d->local, d->limits, d->auth_cache, &ls, err, errlen);
        if (d->workers[i] == NULL) {
            for (unsigned j = 0; j < i; j++) {
                worker_shutdown(d->workers[j], 0, true);
                worker_join(d->workers[j]);
            }
            listener_set_close(&ls);
            daemon_close_listen_fds(d);
            return -1;
        }
    }
    d->nworkers = n;
    for (size_t i = 0; i < ls.naddrs; i++) {
        char name[ADDR_STRLEN];
        log_notice("listening on %s", addr_format(&ls.addrs[i], name, sizeof(name)));
    }
    listener_set_close(&ls);
    return 0;
}

static const struct {
    int signum;
    void (*cb)(struct ev_loop *loop, ev_signal *w, int revents);
} handled[] = {
    {SIGTERM, stop_cb},  {SIGINT, stop_cb},     {SIGHUP, reload_cb},
    {SIGUSR1, stats_cb}, {SIGUSR2, upgrade_cb},
};

#define NSIGNALS (sizeof(handled) / sizeof(handled[0]))

/* What main made, once the workers are gone (or never started). */
static void daemon_free(struct daemon *d, struct ev_loop *loop, ev_signal *signals)
{
    for (size_t i = 0; i < NSIGNALS; i++)
        ev_signal_stop(loop, &signals[i]);
    daemon_close_listen_fds(d);
    if (d->upgrade_pid > 0)
        upgrade_end(d, loop);
    if (ev_is_active(&d->upgrade_child))
        ev_child_stop(loop, &d->upgrade_child);
    if (ev_is_active(&d->local_watch)) {
        ev_io_stop(loop, &d->local_watch);
        close(d->local_watch.fd);
    }
    ev_loop_destroy(loop);
    localaddrs_unref(d->local);
    limits_free(d->limits);
    auth_cache_free(d->auth_cache);
    snapshot_unref(d->snap);
}

int main(int argc, char **argv)
{
    struct daemon d = {.notify = {.fd = -1}, .upgraded_from = -1};
    struct cli cli;
    char err[1024] = "", warn[512] = "";
    struct ev_loop *loop;
    ev_signal signals[NSIGNALS];

    if (cli_parse(&cli, argc, argv, err, sizeof(err)) < 0) {
        fprintf(stderr, "ferryd: %s\n", err);
        cli_usage(stderr);
        return 1;
    }
    switch (cli.action) {
    case CLI_VERSION:
        printf("ferryd %s\n", PACKAGE_VERSION);
        return 0;
    case CLI_HELP:
        cli_usage(stdout);
        return 0;
    case CLI_RUN:
    case CLI_CHECK:
        break;
    }
    if (cli.ov.tunnel != NULL) {
        /* The one-command mode: the default key, the known-hosts file (tunnel_known.h). */
        static char keypath[PATH_MAX], keytext[TUNNEL_KEY_B64 + 1];

        if (tunnel_known_resolve(&cli.ov, cli.accept_new_server_key, keypath, keytext, err,
                                 sizeof(err)) < 0) {
            fprintf(stderr, "ferryd: %s\n", err);
            return 1;
        }
    }
    d.path = cli.config_path;
    d.ov = &cli.ov;
    d.verbosity = cli.verbosity;
    d.argv = argv;
    d.upgraded_from = upgrade_ready_fd_take();
    /* The path of the binary now, so that an upgrade runs what is installed there then. */
    {
        ssize_t len = readlink("/proc/self/exe", d.exe, sizeof(d.exe) - 1);

        d.exe[len > 0 ? len : 0] = '\0';
    }
    if (sodium_init() < 0) {
        fprintf(stderr, "ferryd: libsodium failed to initialise\n");
        return 1;
    }
    d.snap = snapshot_load(d.path, d.ov, err, sizeof(err), warn, sizeof(warn));
    if (d.snap == NULL) {
        fprintf(stderr, "ferryd: %s\n", err);
        return 1;
    }
    if (warn[0] != '\0')
        fprintf(stderr, "ferryd: warning: %s\n", warn);
    if (privdrop_lookup(&d.drop, d.snap->config.run_user, d.snap->config.run_group, err,
                        sizeof(err)) < 0) {
        fprintf(stderr, "ferryd: %s\n", err);
        snapshot_unref(d.snap);
        return 1;
    }
    if (cli.action == CLI_CHECK) {
        printf("ferryd: %s: configuration OK\n", d.path != NULL ? d.path : "built-in defaults");
        snapshot_unref(d.snap);
        return 0;
    }

    if (log_open(&d.snap->config) < 0) {
        fprintf(stderr, "ferryd: log file %s: %s\n", d.snap->config.log_file, strerror(errno));
        snapshot_unref(d.snap);
        return 1;
    }
    log_set_level(d.snap->config.log_level + d.verbosity);
    signal(SIGPIPE, SIG_IGN);
    fd_limit_raise();

    loop = ev_default_loop(EVFLAG_AUTO);
    d.limits = limits_new(LIMITS_MAX_IDLE);
    d.auth_cache = auth_cache_new(AUTH_CACHE_SLOTS);
    if (loop == NULL || d.limits == NULL || d.auth_cache == NULL) {
        fprintf(stderr, "ferryd: %s\n",
                loop == NULL ? "cannot create the event loop" : "out of memory");
        return 1;
    }
    /* The host's own addresses are private destinations: read them now, watch for changes. */
    d.local = localaddrs_read();
    if (d.local == NULL) {
        fprintf(stderr, "ferryd: cannot read the interface addresses: %s\n", strerror(errno));
        return 1;
    }
    ev_io_init(&d.local_watch, local_watch_cb, localaddrs_watch_open(), EV_READ);
    d.local_watch.data = &d;
    if (d.local_watch.fd >= 0)
        ev_io_start(loop, &d.local_watch);
    else
        log_warn("cannot watch interface addresses (%s); they are read again only on SIGHUP",
                 strerror(errno));
    limits_set_client_prefix6(d.limits, d.snap->config.client_prefix6);
    /* Signals caught from now on; one that comes before the loop runs waits for it. */
    ev_timer_init(&d.poll, poll_cb, 0., 0.);
    d.poll.data = &d;
    for (size_t i = 0; i < NSIGNALS; i++) {
        ev_signal_init(&signals[i], handled[i].cb, handled[i].signum);
        signals[i].data = &d;
        ev_signal_start(loop, &signals[i]);
    }
    if (daemon_start(&d, err, sizeof(err)) < 0) {
        log_err("%s", err);
        if (d.snap->config.log_target != LOG_TARGET_STDERR)
            fprintf(stderr, "ferryd: %s\n", err);
        daemon_free(&d, loop, signals);
        return 1;
    }
    d.start_time = ev_time();
    if (d.snap->config.metrics_listen.len > 0) {
        char where[ADDR_STRLEN];

        d.metrics = metrics_server_start(loop, &d.snap->config.metrics_listen, metrics_source,
                                         &d, err, sizeof(err));
        if (d.metrics == NULL) {
            log_err("%s", err);
            if (d.snap->config.log_target != LOG_TARGET_STDERR)
                fprintf(stderr, "ferryd: %s\n", err);
            for (unsigned i = 0; i < d.nworkers; i++) {
                worker_shutdown(d.workers[i], 0, true);
                worker_join(d.workers[i]);
            }
            daemon_free(&d, loop, signals);
            return 1;
        }
        log_notice("metrics on http://%s/metrics",
                   addr_format(&d.snap->config.metrics_listen, where, sizeof(where)));
    }
    log_notice("ferryd %s started with %u worker%s", PACKAGE_VERSION, d.nworkers,
               d.nworkers == 1 ? "" : "s");
    if (notify_open(&d.notify) < 0)
        log_warn("NOTIFY_SOCKET names no socket ferryd can use: %s", strerror(errno));
    if (d.notify.fd >= 0) {
        double watchdog = notify_watchdog_interval();

        notify_send(&d.notify, "MAINPID=%ld", (long)getpid());
        daemon_notify_status(&d, "READY=1\n");
        ev_timer_init(&d.notify_tick, notify_tick_cb, 0., watchdog > 0 ? watchdog : 10.);
        d.notify_tick.data = &d;
        ev_timer_again(loop, &d.notify_tick);
    }
    if (d.upgraded_from >= 0) {
        /* The previous process stops accepting and drains once it reads this. */
        upgrade_ready(d.upgraded_from);
        d.upgraded_from = -1;
        log_notice("upgrade: serving; the previous process stops accepting");
    }
    fd_budget_check(&d.snap->config, d.nworkers);

    ev_run(loop, 0);

    ev_timer_stop(loop, &d.poll);
    metrics_server_free(d.metrics);
    d.metrics = NULL;
    if (d.notify.fd >= 0)
        ev_timer_stop(loop, &d.notify_tick);
    notify_close(&d.notify);
    for (unsigned i = 0; i < d.nworkers; i++)
        worker_join_thread(d.workers[i]);
    daemon_log_totals(&d, "totals");
    for (unsigned i = 0; i < d.nworkers; i++)
        worker_join(d.workers[i]);
    daemon_free(&d, loop, signals);
    log_notice("stopped");
    return 0;
}
