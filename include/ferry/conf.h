/* ferryd.conf: parsed once into an immutable struct config. Errors name file, line and problem. */
#ifndef FERRY_CONF_H
#define FERRY_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ferry/access.h"
#include "ferry/acl.h"
#include "ferry/addr.h"
#include "ferry/limits.h"
#include "ferry/net.h"
#include "ferry/relay.h"
#include "ferry/route.h"
#include "ferry/udp.h"

#define CONF_MAX_LISTEN 16
#define CONF_DEFAULT_PORT 1080
#define CONF_METRICS_PORT 9180
#define CONF_MAX_TRUSTED 32

enum log_target {
    LOG_TARGET_STDERR,
    LOG_TARGET_SYSLOG,
    LOG_TARGET_FILE,
};

struct config {
    /* listen ADDR[:PORT] (repeatable). Without any, 127.0.0.1:1080 and [::1]:1080. */
    struct addr listen[CONF_MAX_LISTEN];
    /* listen ADDR[:PORT] advertise IP: the public address put in UDP ASSOCIATE and BIND
     * replies for sessions of that listener (ferry behind NAT). Family AF_UNSPEC (len 0) when
     * not set. */
    struct addr listen_advertise[CONF_MAX_LISTEN];
    size_t nlisten;
    /* listen ADDR[:PORT] tunnel: the listener speaks the tunnel protocol (tunnel_server.h) */
    bool listen_tunnel[CONF_MAX_LISTEN];
    /* listen ... protocols LIST: FRONTEND_* bits (frontend.h) the listener serves; all of them
     * unless the line says otherwise */
    uint8_t listen_protocols[CONF_MAX_LISTEN];
    /* tunnel key PATH, tunnel authorized-keys PATH (read with the users file, on SIGHUP too),
     * tunnel replay-window DURATION (doc/tunnel-protocol.md 2.5; 0 off, default 600 s) */
    char *tunnel_key_file;
    char *tunnel_authkeys_file;
    double tunnel_replay_window;
    bool listen_is_default; /* no listen line: failing to bind one default only warns */

    /* auth METHOD... in the server's order of preference: SOCKS5_METHOD_NOAUTH/USERPASS. */
    uint8_t methods[2];
    size_t nmethods;
    char *users_file; /* users PATH; required when password is a method */

    struct addr *resolver_servers; /* resolver system | LIST: servers with their ports (53 */
    size_t nresolver_servers;      /* unless given); none (NULL, 0) means system */
    double resolver_timeout;       /* resolver timeout DURATION: first try of a DNS query */
    unsigned resolver_tries;       /* resolver tries N */

    double timeout_negotiate; /* timeout negotiate DURATION (default 10 s) */
    double timeout_resolve;   /* timeout resolve DURATION (default 10 s) */
    double timeout_connect;   /* timeout connect DURATION (default 10 s) */
    double timeout_idle;      /* timeout idle DURATION (default 300 s) */

    /* timeout half-closed DURATION: a relay's inactivity once one direction has ended
     * (default 60 s; 0: timeout idle applies) */
    double timeout_half_closed;

    enum log_target log_target;    /* log stderr | log syslog [FACILITY] | log file PATH */
    int syslog_facility;           /* LOG_DAEMON by default */
    int log_level;                 /* log-level LEVEL: a syslog priority, LOG_INFO by default */
    char *log_file;                /* log file PATH (relative: to the config's directory) */
    enum access_format log_format; /* log-format text | json | logfmt (default text) */

    /* UDP ASSOCIATE (RFC 1928 section 7) */
    struct addr udp_address; /* udp address IP: bind relay sockets here; len 0 = the
                              * address the client reached us on */
    uint16_t udp_port_min;   /* udp port-range LOW-HIGH; 0-0 (default) = ephemeral */
    uint16_t udp_port_max;
    enum udp_filter udp_filter;  /* udp filter address (default) | address-port | any */
    unsigned udp_max_per_client; /* udp max-per-client N (default 16) */
    unsigned udp_max_total;      /* udp max-total N (default 1024) */
    double timeout_udp;          /* timeout udp DURATION: association idle (default 120 s) */

    /* BIND */
    uint16_t bind_port_min; /* bind port-range LOW-HIGH; 0-0 (default) = ephemeral */
    uint16_t bind_port_max;
    bool bind_any_peer;  /* bind peer expected (default) | any */
    double timeout_bind; /* timeout bind DURATION: wait for the peer (default 60 s) */
    /* Access control (see acl.h). */
    struct acl_rules *client_rules;  /* client pass|block ... lines; NULL: none */
    struct acl_rules *request_rules; /* request pass|block ... lines; NULL: none */
    struct addr_cidr trusted_clients[CONF_MAX_TRUSTED];
    size_t ntrusted_clients;    /* trusted-clients CIDR...: exempt from the private-
                                 * destination block (default 127.0.0.0/8 ::1) */
    bool private_destinations;  /* private-destinations block (default) | allow */
    bool allow_unauthenticated; /* allow-unauthenticated no (default) | yes: serve without
                                 * auth on a non-loopback listener (needs client rules) */

    /* Limits (limit SETTING VALUE); 0 / a zero rate means none. */
    unsigned max_sessions;           /* max-sessions N: in the whole process (default 4096) */
    unsigned sessions_per_client;    /* limit sessions-per-client N (default 512) */
    unsigned sessions_per_user;      /* limit sessions-per-user N (default off) */
    struct limit_rate accept_rate;   /* limit accept-rate COUNT/PERIOD per client IP (off) */
    struct limit_rate auth_failures; /* limit auth-failures COUNT/PERIOD per client IP (10/1m) */
    struct limit_rate bandwidth_per_client; /* limit bandwidth-per-client B/s, each way (off) */
    struct limit_rate bandwidth_per_user;   /* limit bandwidth-per-user B/s, each way (off) */
    uint64_t quota_per_user;                /* limit quota-per-user BYTES/PERIOD, both ways (off) */
    double quota_period;
    unsigned workers; /* workers N: event loops on threads; 0 = one per CPU */

    /* Connections not past their request yet: max-negotiating START[:RATE:FULL] | off
     * (default 512:30:1024, FULL at most half of max-sessions unless given, see conf.c), and
     * limit negotiating-per-client N (default 32). */
    struct limit_startups max_negotiating;
    bool max_negotiating_set;
    unsigned negotiating_per_client;
    /* limit client-prefix-ipv6 BITS: IPv6 clients are counted by this prefix (default 64) */
    unsigned client_prefix6;
    /* tune rcvbuf|sndbuf BYTES, tcp-keepalive off|on [IDLE INTERVAL COUNT]: options of relayed
     * sockets (default: the kernel's buffers, no keepalive) */
    struct net_stream_opts stream;

    double shutdown_grace;      /* shutdown-grace DURATION: how long sessions may finish after
                                 * SIGTERM/SIGINT (default 5 s, 0 = close at once) */
    enum relay_mode relay_mode; /* relay auto|splice|buffered */
    unsigned auth_threads;      /* auth-threads N: password verification threads (default 2) */
    double auth_cache;          /* auth-cache DURATION: how long a verified login is
                                 * remembered (default 5m, 0 = never) */
    /* metrics ADDRESS[:PORT]: the Prometheus scrape listener (port 9180 unless given); len 0:
     * none (the default) */
    struct addr metrics_listen;
    /* parent ... and route ... lines (route.h); NULL when there are none: all goes direct */
    struct routes *routes;

    /* Privilege drop once the listeners are open (see privdrop.h). */
    char *run_user;   /* user NAME; NULL: keep the user ferryd was started as */
    char *run_group;  /* group NAME; NULL: the user's primary group (needs user) */
    bool run_as_root; /* run-as-root yes (default) | no: refuse to serve as root */
};

/*
 * Settings given on the command line. Each replaces the file's matching setting (ferryd(8)):
 * --listen replaces every listen line, --users sets users PATH (relative to the current
 * directory) and makes password the method unless the file offers it already.
 */
struct conf_overrides {
    const char *listen[CONF_MAX_LISTEN]; /* --listen ADDR[:PORT], repeatable */
    size_t nlisten;
    const char *users;     /* --users PATH */
    const char *log_level; /* --log-level LEVEL */
    const char *user;      /* --user NAME */
    const char *group;     /* --group NAME */
    /* --tunnel HOST:PORT --server-key BASE64 [--key PATH] [--cipher NAME]: everything
     * through a ferry parent (the one-command mode) */
    const char *tunnel;
    const char *tunnel_server_key;
    const char *tunnel_key; /* with --tunnel-listen also the server's key (tunnel key) */
    const char *tunnel_cipher;
    /* --tunnel-listen ADDR[:PORT], repeatable: tunnel listeners instead of the file's listen
     * lines (with any --listen); --authorized-keys PATH: tunnel authorized-keys */
    const char *tunnel_listen[CONF_MAX_LISTEN];
    size_t ntunnel_listen;
    const char *authorized_keys;
};

/* Built-in defaults: what ferryd runs with when given no file. */
void conf_defaults(struct config *c);

/*
 * Parse `text` as the contents of file `name` on top of the defaults. Returns 0, or -1 with
 * "NAME:LINE: problem" in err. On failure *c holds nothing to free.
 */
int conf_parse(struct config *c, const char *text, const char *name, char *err, size_t errlen);

/* Read and parse a file; errors as for conf_parse, or "PATH: strerror" when unreadable. */
int conf_load(struct config *c, const char *path, char *err, size_t errlen);

/*
 * conf_load with the command line's settings on top (ov may be NULL; path NULL: the built-in
 * defaults). Errors in a flag read "command line: ...".
 */
int conf_load_with(struct config *c, const char *path, const struct conf_overrides *ov, char *err,
                   size_t errlen);

/*
 * Whether a listener on a would serve clients others can reach without authentication against
 * the safe defaults: a non-loopback address, 'none' offered, no allow-unauthenticated yes.
 */
bool conf_listener_exposed(const struct config *c, const struct addr *a);

/* The listen line of a bound or passed socket's address (a line's port 0 matches any port), or
 * -1. */
int conf_listen_index(const struct config *c, const struct addr *bound);

/* Release what conf_parse/conf_load allocated. */
void conf_release(struct config *c);

/* Parse "10", "10s", "250ms", "5m", "1h" into seconds. Returns 0 or -1. */
int conf_parse_duration(const char *text, double *seconds);

/* Whether the configuration offers authentication method `method` (SOCKS5 method codes). */
static inline bool conf_method_allowed(const struct config *c, uint8_t method)
{
    for (size_t i = 0; i < c->nmethods; i++) {
        if (c->methods[i] == method)
            return true;
    }
    return false;
}

#endif
