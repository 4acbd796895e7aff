/*
 * ferryd.conf: a line-based file of "keyword argument..." lines, '#' comments and blank lines.
 * Each keyword has one handler in a table; errors are "FILE:LINE: problem".
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "ferry/conf.h"
#include "ferry/frontend.h"
#include "ferry/log.h"
#include "ferry/socks5.h"
#include "ferry/units.h"

/* Longest line accepted, not counting its newline. */
#define CONF_MAX_LINE 4096
/* Most arguments after the keyword on one line. */
#define CONF_MAX_ARGS 16
/* Larger files are refused rather than read into memory. */
#define CONF_MAX_FILE (16u * 1024 * 1024)
/* Longest duration accepted: anything above is a typo, not a timeout. */
#define CONF_MAX_DURATION 1e9

enum timeout_kind {
    TIMEOUT_NEGOTIATE,
    TIMEOUT_RESOLVE,
    TIMEOUT_CONNECT,
    TIMEOUT_IDLE,
    TIMEOUT_UDP,
    TIMEOUT_BIND,
    TIMEOUT_HALF_CLOSED,
    TIMEOUT_COUNT,
};

/* Sub-keywords of "udp" and "bind", each allowed once. */
enum udp_setting {
    UDP_ADDRESS,
    UDP_PORT_RANGE,
    UDP_FILTER,
    UDP_MAX_PER_CLIENT,
    UDP_MAX_TOTAL,
    UDP_COUNT,
};

enum bind_setting {
    BIND_PORT_RANGE,
    BIND_PEER,
    BIND_COUNT,
};

enum limit_setting {
    LIMIT_SESSIONS_PER_CLIENT,
    LIMIT_SESSIONS_PER_USER,
    LIMIT_ACCEPT_RATE,
    LIMIT_AUTH_FAILURES,
    LIMIT_BANDWIDTH_PER_CLIENT,
    LIMIT_BANDWIDTH_PER_USER,
    LIMIT_QUOTA_PER_USER,
    LIMIT_NEGOTIATING_PER_CLIENT,
    LIMIT_CLIENT_PREFIX_IPV6,
    LIMIT_COUNT,
};

enum tune_setting {
    TUNE_RCVBUF,
    TUNE_SNDBUF,
    TUNE_COUNT,
};

struct parser;

typedef int (*keyword_fn)(struct parser *p, int argc, char **argv);

/* A keyword or setting that is a decimal in [min, max], stored in an unsigned of the config. */
struct number {
    unsigned long min, max;
    size_t field; /* offsetof(struct config, ...) */
};

/* A number row of a table; a member that is not an unsigned does not compile. */
// clang-format off
#define NUMBER(lo, hi, member) \
    .number = {(lo), (hi), \
               _Generic(((struct config *)0)->member, unsigned: offsetof(struct config, member))}
// clang-format on

/*
 * A setting of a block keyword ("udp filter any"): its name, value name, and value handler or
 * number (a row ends with .handle = or NUMBER()).
 */
struct subkeyword {
    const char *name;
    const char *arg_name;
    int (*handle)(struct parser *p, const char *value);
    struct number number; /* when handle is NULL */
};

/* A keyword: its name and arguments, then its handler or number, as a subkeyword. */
struct keyword {
    const char *name;
    int min_args;
    int max_args;
    const char *arg_names[2]; /* what is missing when fewer than min_args are given */
    bool repeatable;          /* may appear on several lines (otherwise a duplicate is an error) */
    keyword_fn handle;
    struct number number; /* when handle is NULL */
};

/* What a handler needs: the config being built and where in which file we are. */
struct parser {
    struct config *c;
    const char *name;    /* the file name used in messages */
    const char *dir;     /* directory relative paths are resolved against, NULL for cwd */
    unsigned line;       /* current line number */
    const char *keyword; /* keyword of the current line */
    char *err;
    size_t errlen;
    unsigned *first; /* per keyword: line of its first occurrence, 0 if none yet */
    unsigned timeout_first[TIMEOUT_COUNT];
    unsigned udp_first[UDP_COUNT];
    unsigned bind_first[BIND_COUNT];
    unsigned limit_first[LIMIT_COUNT];
    unsigned tune_first[TUNE_COUNT];
    unsigned auth_line;
    bool password_auth;
    bool trusted_clients_set;              /* a trusted-clients line was read */
    unsigned listen_line[CONF_MAX_LISTEN]; /* line of each listen address */
    unsigned allow_unauthenticated_line;
    unsigned group_line;
};

/* Write "NAME:LINE: problem" into the error buffer. Returns -1. */
static int fail(struct parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(struct parser *p, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (p->errlen == 0)
        return -1;
    /* Line 0: a command-line flag (the name is "command line"). */
    if (p->line == 0)
        n = snprintf(p->err, p->errlen, "%s: ", p->name);
    else
        n = snprintf(p->err, p->errlen, "%s:%u: ", p->name, p->line);
    if (n < 0 || (size_t)n >= p->errlen)
        return -1;
    va_start(ap, fmt);
    vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

#define Q(s) units_quote((s), (char[96]){0}, 96)

/* Decimal number without sign, in [min, max]. */
static int parse_uint(struct parser *p, const char *s, unsigned long min, unsigned long max,
                      unsigned long *out)
{
    unsigned long v = 0;
    const char *q;

    if (*s == '\0')
        return fail(p, "%s: '%s' is not a number", p->keyword, Q(s));
    for (q = s; *q != '\0'; q++) {
        if (*q < '0' || *q > '9')
            return fail(p, "%s: '%s' is not a number", p->keyword, Q(s));
        if (v > (ULONG_MAX - 9) / 10)
            v = ULONG_MAX - 9; /* saturate: out of range below */
        v = v * 10 + (unsigned long)(*q - '0');
    }
    if (v < min || v > max)
        return fail(p, "%s: '%s' is out of range (%lu..%lu)", p->keyword, Q(s), min, max);
    *out = v;
    return 0;
}

static int store_number(struct parser *p, const struct number *n, const char *value)
{
    unsigned long v;

    if (parse_uint(p, value, n->min, n->max, &v) < 0)
        return -1;
    *(unsigned *)(void *)((char *)p->c + n->field) = (unsigned)v;
    return 0;
}

/*
 * value as one of the NULL-terminated names: returns its index, or -1 with the message
 * "KEYWORD: unknown WHAT 'VALUE' (A, B or C)".
 */
static int parse_choice(struct parser *p, const char *what, const char *value,
                        const char *const *names)
{
    char known[80] = "";
    size_t n = 0, len = 0;

    for (; names[n] != NULL; n++) {
        if (strcmp(value, names[n]) == 0)
            return (int)n;
    }
    for (size_t i = 0; i < n && len < sizeof(known); i++) {
        const char *sep = i + 1 == n ? " or " : ", ";

        snprintf(known + len, sizeof(known) - len, "%s%s", i == 0 ? "" : sep, names[i]);
        len += strlen(known + len);
    }
    return fail(p, "%s: unknown %s '%s' (%s)", p->keyword, what, Q(value), known);
}

int conf_parse_duration(const char *text, double *seconds)
{
    const char *s = text;
    double v = 0, scale = 1;
    bool digits = false;

    if (text == NULL)
        return -1;
    /* Digits by hand rather than strtod: no sign, no exponent, no "inf", no locale. */
    for (; *s >= '0' && *s <= '9'; s++) {
        v = v * 10 + (*s - '0');
        digits = true;
    }
    if (!digits)
        return -1;
    if (*s == '.') {
        double place = 0.1;
        digits = false;
        for (s++; *s >= '0' && *s <= '9'; s++, place /= 10) {
            v += (*s - '0') * place;
            digits = true;
        }
        if (!digits)
            return -1;
    }
    if (strcmp(s, "") == 0 || strcmp(s, "s") == 0)
        scale = 1;
    else if (strcmp(s, "ms") == 0)
        scale = 0.001;
    else if (strcmp(s, "m") == 0)
        scale = 60;
    else if (strcmp(s, "h") == 0)
        scale = 3600;
    else if (strcmp(s, "d") == 0)
        scale = 86400;
    else
        return -1;
    v *= scale;
    if (!(v <= CONF_MAX_DURATION))
        return -1;
    *seconds = v;
    return 0;
}

/* A duration argument; zero only when allow_zero. */
static int parse_duration_arg(struct parser *p, const char *s, bool allow_zero, double *out)
{
    double v;

    if (conf_parse_duration(s, &v) < 0)
        return fail(p, "%s: '%s' is not a duration (like 10, 10s, 250ms, 5m, 1h, 1d)", p->keyword,
                    Q(s));
    if (v == 0 && !allow_zero)
        return fail(p, "%s: '%s' must be greater than zero", p->keyword, Q(s));
    *out = v;
    return 0;
}

/*
 * An IP address without a port: "192.0.2.1", "2001:db8::1" or "[2001:db8::1]". The unspecified
 * address (0.0.0.0, ::) and multicast addresses are refused: neither can be put in a reply as
 * the place a client should send to.
 */
static int parse_ip_arg(struct parser *p, const char *what, const char *s, struct addr *out)
{
    const char *colon = strchr(s, ':');
    bool has_port;

    if (s[0] == '[')
        has_port = s[strlen(s) - 1] != ']';
    else
        has_port = colon != NULL && strchr(colon + 1, ':') == NULL;
    if (has_port || addr_parse(s, 0, out) < 0)
        return fail(p, "%s: '%s' is not an IP address", what, Q(s));
    if (!addr_is_unicast(out))
        return fail(p, "%s: '%s' is not a unicast address", what, Q(s));
    return 0;
}

/* protocols socks|socks4|socks5|http[,...] into FRONTEND_* bits. */
static int parse_protocols(struct parser *p, const char *list, uint8_t *out)
{
    *out = 0;
    for (const char *s = list; s != NULL;) {
        char item[16];

        if (units_list_next(&s, item, sizeof(item)) == 0)
            return fail(p, "listen: protocols: empty item in '%s'", Q(list));
        if (strcmp(item, "socks") == 0)
            *out |= FRONTEND_SOCKS4 | FRONTEND_SOCKS5;
        else if (strcmp(item, "socks4") == 0)
            *out |= FRONTEND_SOCKS4;
        else if (strcmp(item, "socks5") == 0)
            *out |= FRONTEND_SOCKS5;
        else if (strcmp(item, "http") == 0)
            *out |= FRONTEND_HTTP;
        else
            return fail(p, "listen: protocols: '%s' is not socks, socks4, socks5 or http",
                        Q(item));
    }
    return 0;
}

/* listen ADDR[:PORT] [advertise IP] [protocols LIST] [tunnel] */
static int kw_listen(struct parser *p, int argc, char **argv)
{
    struct config *c = p->c;
    struct addr a, adv;
    char buf[ADDR_STRLEN];
    bool tunnel = false, protocols_given = false;
    uint8_t protocols = FRONTEND_ALL;

    if (addr_parse(argv[0], CONF_DEFAULT_PORT, &a) < 0)
        return fail(p, "listen: '%s' is not an address", Q(argv[0]));
    memset(&adv, 0, sizeof(adv));
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "tunnel") == 0) {
            tunnel = true;
            continue;
        }
        if (strcmp(argv[i], "protocols") == 0) {
            if (i + 1 >= argc)
                return fail(p, "listen: protocols: missing LIST (socks, socks4, socks5, http)");
            if (parse_protocols(p, argv[++i], &protocols) < 0)
                return -1;
            protocols_given = true;
            continue;
        }
        if (strcmp(argv[i], "advertise") != 0)
            return fail(p, "listen: unknown option '%s' (advertise IP, protocols LIST, tunnel)",
                        Q(argv[i]));
        if (i + 1 >= argc)
            return fail(p, "listen: advertise: missing IP");
        if (parse_ip_arg(p, "listen: advertise", argv[++i], &adv) < 0)
            return -1;
    }
    if (c->listen_is_default) {
        c->nlisten = 0;
        c->listen_is_default = false;
    }
    for (size_t i = 0; i < c->nlisten; i++) {
        if (addr_equal(&c->listen[i], &a))
            return fail(p, "listen: duplicate address %s", addr_format(&a, buf, sizeof(buf)));
    }
    if (c->nlisten >= CONF_MAX_LISTEN)
        return fail(p, "listen: too many listen lines (at most %d)", CONF_MAX_LISTEN);
    c->listen_advertise[c->nlisten] = adv;
    if (tunnel && protocols_given)
        return fail(p, "listen: a tunnel listener speaks only the tunnel protocol: no "
                       "'protocols'");
    c->listen_tunnel[c->nlisten] = tunnel;
    c->listen_protocols[c->nlisten] = protocols;
    p->listen_line[c->nlisten] = p->line;
    c->listen[c->nlisten++] = a;
    return 0;
}

static int kw_auth(struct parser *p, int argc, char **argv)
{
    struct config *c = p->c;
    uint8_t m;

    c->nmethods = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "none") == 0)
            m = SOCKS5_METHOD_NOAUTH;
        else if (strcmp(argv[i], "password") == 0)
            m = SOCKS5_METHOD_USERPASS;
        else
            return fail(p, "auth: unknown method '%s' (none or password)", Q(argv[i]));
        for (size_t j = 0; j < c->nmethods; j++) {
            if (c->methods[j] == m)
                return fail(p, "auth: method '%s' given twice", argv[i]);
        }
        c->methods[c->nmethods++] = m;
        if (m == SOCKS5_METHOD_USERPASS)
            p->password_auth = true;
    }
    p->auth_line = p->line;
    return 0;
}

/* PATH as given when absolute, else relative to the config file's directory (NULL: errno). */
static char *conf_path(const struct parser *p, const char *path)
{
    return units_path_join(p->dir, path);
}

static int kw_users(struct parser *p, int argc, char **argv)
{
    char *full = conf_path(p, argv[0]);

    if (full == NULL)
        return fail(p, "users: %s", strerror(errno));
    p->c->users_file = full;
    return 0;
}

/* tunnel key PATH | authorized-keys PATH | replay-window DURATION */
static int kw_tunnel(struct parser *p, int argc, char **argv)
{
    struct config *c = p->c;
    char **field = NULL;

    if (argc != 2)
        return fail(p, "tunnel: expected key PATH, authorized-keys PATH or replay-window "
                       "DURATION");
    if (strcmp(argv[0], "replay-window") == 0) {
        if (conf_parse_duration(argv[1], &c->tunnel_replay_window) < 0)
            return fail(p, "tunnel: replay-window '%s' is not a duration", Q(argv[1]));
        return 0;
    }
    if (strcmp(argv[0], "key") == 0)
        field = &c->tunnel_key_file;
    else if (strcmp(argv[0], "authorized-keys") == 0)
        field = &c->tunnel_authkeys_file;
    else
        return fail(p, "tunnel: unknown setting '%s' (key, authorized-keys, replay-window)",
                    Q(argv[0]));
    free(*field);
    *field = conf_path(p, argv[1]);
    if (*field == NULL)
        return fail(p, "tunnel: %s", strerror(errno));
    return 0;
}

/* "system", or a comma-separated list of IP, IP:PORT, [IPv6] or [IPv6]:PORT (port 53 unless given).
 */
static int kw_resolver(struct parser *p, int argc, char **argv)
{
    struct config *c = p->c;
    const char *list = argv[0];

    if (strcmp(list, "system") == 0)
        return 0;
    c->resolver_servers = calloc(units_list_count(list), sizeof(*c->resolver_servers));
    if (c->resolver_servers == NULL)
        return fail(p, "resolver: %s", strerror(errno));
    for (const char *s = list; s != NULL;) {
        struct addr *a = &c->resolver_servers[c->nresolver_servers];
        char one[ADDR_STRLEN + 8];
        size_t n = units_list_next(&s, one, sizeof(one));

        if (n == 0)
            return fail(p, "resolver: empty server in '%s'", Q(list));
        if (n >= sizeof(one) || addr_parse(one, 53, a) < 0 || addr_port(a) == 0)
            return fail(p, "resolver: '%s' is not a server address (IP, IP:PORT or [IPv6]:PORT)",
                        Q(one));
        c->nresolver_servers++;
    }
    return 0;
}

static int kw_resolver_timeout(struct parser *p, int argc, char **argv)
{
    return parse_duration_arg(p, argv[0], false, &p->c->resolver_timeout);
}

static int kw_timeout(struct parser *p, int argc, char **argv)
{
    static const char *const names[TIMEOUT_COUNT] = {"negotiate", "resolve", "connect",    "idle",
                                                     "udp",       "bind",    "half-closed"};
    struct config *c = p->c;
    double *target[TIMEOUT_COUNT] = {
        &c->timeout_negotiate, &c->timeout_resolve, &c->timeout_connect,    &c->timeout_idle,
        &c->timeout_udp,       &c->timeout_bind,    &c->timeout_half_closed};
    int k;

    for (k = 0; k < TIMEOUT_COUNT; k++) {
        if (strcmp(argv[0], names[k]) == 0)
            break;
    }
    if (k == TIMEOUT_COUNT)
        return fail(p,
                    "timeout: unknown timeout '%s' (negotiate, resolve, connect, idle, udp, "
                    "bind or half-closed)",
                    Q(argv[0]));
    if (p->timeout_first[k] != 0)
        return fail(p, "duplicate 'timeout %s' (first on line %u)", names[k], p->timeout_first[k]);
    /* idle 0 turns the idle timeout off, half-closed 0 leaves it to idle; the others must end. */
    if (parse_duration_arg(p, argv[1], k == TIMEOUT_IDLE || k == TIMEOUT_HALF_CLOSED, target[k]) <
        0)
        return -1;
    p->timeout_first[k] = p->line;
    return 0;
}

/* "LOW-HIGH" with 1 <= LOW <= HIGH <= 65535, or "0-0" / "ephemeral": let the kernel choose. */
static int parse_port_range(struct parser *p, const char *s, uint16_t *min, uint16_t *max)
{
    const char *dash = strchr(s, '-');
    char low[8];
    unsigned long lo, hi;
    size_t n;

    if (strcmp(s, "ephemeral") == 0 || strcmp(s, "0-0") == 0) {
        *min = 0;
        *max = 0;
        return 0;
    }
    n = dash != NULL ? (size_t)(dash - s) : 0;
    if (dash == NULL || n == 0 || n >= sizeof(low))
        return fail(p, "%s: '%s' is not a port range (LOW-HIGH or ephemeral)", p->keyword, Q(s));
    memcpy(low, s, n);
    low[n] = '\0';
    if (parse_uint(p, low, 1, 65535, &lo) < 0 || parse_uint(p, dash + 1, 1, 65535, &hi) < 0)
        return -1;
    if (lo > hi)
        return fail(p, "%s: '%s' is an empty range (LOW is above HIGH)", p->keyword, Q(s));
    *min = (uint16_t)lo;
    *max = (uint16_t)hi;
    return 0;
}

static int udp_address(struct parser *p, const char *value)
{
    return parse_ip_arg(p, p->keyword, value, &p->c->udp_address);
}

static int udp_port_range(struct parser *p, const char *value)
{
    return parse_port_range(p, value, &p->c->udp_port_min, &p->c->udp_port_max);
}

static int udp_filter(struct parser *p, const char *value)
{
    static const enum udp_filter filters[] = {UDP_FILTER_ADDRESS, UDP_FILTER_ADDRESS_PORT,
                                              UDP_FILTER_ANY};
    int k = parse_choice(p, "filter", value,
                         (const char *const[]){"address", "address-port", "any", NULL});

    if (k < 0)
        return -1;
    p->c->udp_filter = filters[k];
    return 0;
}

static int bind_port_range(struct parser *p, const char *value)
{
    return parse_port_range(p, value, &p->c->bind_port_min, &p->c->bind_port_max);
}

static int bind_peer(struct parser *p, const char *value)
{
    int k = parse_choice(p, "peer", value, (const char *const[]){"expected", "any", NULL});

    if (k < 0)
        return -1;
    p->c->bind_any_peer = k == 1;
    return 0;
}

static const struct subkeyword udp_settings[UDP_COUNT] = {
    [UDP_ADDRESS] = {"address", "IP", .handle = udp_address},
    [UDP_PORT_RANGE] = {"port-range", "LOW-HIGH", .handle = udp_port_range},
    [UDP_FILTER] = {"filter", "address|address-port|any", .handle = udp_filter},
    [UDP_MAX_PER_CLIENT] = {"max-per-client", "N", NUMBER(1, 65535, udp_max_per_client)},
    [UDP_MAX_TOTAL] = {"max-total", "N", NUMBER(1, 1000000, udp_max_total)},
};

static const struct subkeyword bind_settings[BIND_COUNT] = {
    [BIND_PORT_RANGE] = {"port-range", "LOW-HIGH", .handle = bind_port_range},
    [BIND_PEER] = {"peer", "expected|any", .handle = bind_peer},
};

/* A byte count (units.h), at most max bytes. */
static int parse_bytes(struct parser *p, const char *s, uint64_t max, uint64_t *out)
{
    switch (units_parse_bytes(s, max, out)) {
    case UNITS_OK:
        return 0;
    case UNITS_TOO_LARGE:
        return fail(p, "%s: '%s' is too large", p->keyword, Q(s));
    default:
        return fail(p, "%s: '%s' is not a byte count (like 512K, 10M, 1G)", p->keyword, Q(s));
    }
}

/* "COUNT/PERIOD" (or "COUNT": per second) for a rate of events; "0" or "off" is none. */
static int parse_event_rate(struct parser *p, const char *s, struct limit_rate *out)
{
    const char *slash = strchr(s, '/');
    char count[16];
    double period = 1;
    unsigned long n;
    size_t len = slash != NULL ? (size_t)(slash - s) : strlen(s);

    if (strcmp(s, "off") == 0 || strcmp(s, "0") == 0) {
        out->rate = out->burst = 0;
        return 0;
    }
    if (len == 0 || len >= sizeof(count))
        return fail(p, "%s: '%s' is not a rate (COUNT/PERIOD, like 20/1s or 10/1m)", p->keyword,
                    Q(s));
    memcpy(count, s, len);
    count[len] = '\0';
    if (parse_uint(p, count, 1, 1000000, &n) < 0)
        return -1;
    if (slash != NULL && parse_duration_arg(p, slash + 1, false, &period) < 0)
        return -1;
    out->rate = (double)n / period;
    out->burst = (double)n;
    return 0;
}

/* Bytes per second, for a bandwidth bucket; the burst is a tenth of a second, at least 16 KiB. */
static int parse_bandwidth(struct parser *p, const char *s, struct limit_rate *out)
{
    uint64_t v;

    if (strcmp(s, "off") == 0) {
        out->rate = out->burst = 0;
        return 0;
    }
    if (parse_bytes(p, s, 1ull << 40, &v) < 0)
        return -1;
    out->rate = (double)v;
    out->burst = v == 0 ? 0 : (double)v / 10 > 16384 ? (double)v / 10 : 16384;
    return 0;
}

static int parse_count_or_off(struct parser *p, const char *s, unsigned *out)
{
    unsigned long v;

    if (strcmp(s, "off") == 0) {
        *out = 0;
        return 0;
    }
    if (parse_uint(p, s, 0, 1000000, &v) < 0)
        return -1;
    *out = (unsigned)v;
    return 0;
}

static int limit_sessions_per_client(struct parser *p, const char *value)
{
    return parse_count_or_off(p, value, &p->c->sessions_per_client);
}

static int limit_sessions_per_user(struct parser *p, const char *value)
{
    return parse_count_or_off(p, value, &p->c->sessions_per_user);
}

static int limit_accept_rate(struct parser *p, const char *value)
{
    return parse_event_rate(p, value, &p->c->accept_rate);
}

static int limit_auth_failures(struct parser *p, const char *value)
{
    return parse_event_rate(p, value, &p->c->auth_failures);
}

static int limit_bandwidth_per_client(struct parser *p, const char *value)
{
    return parse_bandwidth(p, value, &p->c->bandwidth_per_client);
}

static int limit_bandwidth_per_user(struct parser *p, const char *value)
{
    return parse_bandwidth(p, value, &p->c->bandwidth_per_user);
}

/* BYTES/PERIOD: bytes both ways together per user per period, like 10G/1d; off for none. */
static int limit_quota_per_user(struct parser *p, const char *value)
{
    const char *slash = strchr(value, '/');
    char bytes[32];
    size_t len;

    if (strcmp(value, "off") == 0) {
        p->c->quota_per_user = 0;
        return 0;
    }
    len = slash != NULL ? (size_t)(slash - value) : 0;
    if (slash == NULL || len == 0 || len >= sizeof(bytes))
        return fail(p, "%s: '%s' is not a quota (BYTES/PERIOD, like 10G/1d)", p->keyword, Q(value));
    memcpy(bytes, value, len);
    bytes[len] = '\0';
    if (parse_bytes(p, bytes, 1ull << 50, &p->c->quota_per_user) < 0 ||
        parse_duration_arg(p, slash + 1, false, &p->c->quota_period) < 0)
        return -1;
    return 0;
}

static int limit_negotiating_per_client(struct parser *p, const char *value)
{
    return parse_count_or_off(p, value, &p->c->negotiating_per_client);
}

static const struct subkeyword limit_settings[LIMIT_COUNT] = {
    [LIMIT_SESSIONS_PER_CLIENT] = {"sessions-per-client", "N", .handle = limit_sessions_per_client},
    [LIMIT_SESSIONS_PER_USER] = {"sessions-per-user", "N", .handle = limit_sessions_per_user},
    [LIMIT_ACCEPT_RATE] = {"accept-rate", "COUNT/PERIOD", .handle = limit_accept_rate},
    [LIMIT_AUTH_FAILURES] = {"auth-failures", "COUNT/PERIOD", .handle = limit_auth_failures},
    [LIMIT_BANDWIDTH_PER_CLIENT] = {"bandwidth-per-client", "BYTES",
                                    .handle = limit_bandwidth_per_client},
    [LIMIT_BANDWIDTH_PER_USER] = {"bandwidth-per-user", "BYTES",
                                  .handle = limit_bandwidth_per_user},
    [LIMIT_QUOTA_PER_USER] = {"quota-per-user", "BYTES/PERIOD", .handle = limit_quota_per_user},
    [LIMIT_NEGOTIATING_PER_CLIENT] = {"negotiating-per-client", "N",
                                      .handle = limit_negotiating_per_client},
    [LIMIT_CLIENT_PREFIX_IPV6] = {"client-prefix-ipv6", "BITS", NUMBER(1, 128, client_prefix6)},
};

/* tune rcvbuf|sndbuf BYTES | off: socket buffers of relayed connections. */
static int parse_sockbuf(struct parser *p, const char *value, unsigned *out)
{
    uint64_t v;

    if (strcmp(value, "off") == 0) {
        *out = 0;
        return 0;
    }
    if (parse_bytes(p, value, 1ull << 30, &v) < 0)
        return -1;
    if (v < 1024)
        return fail(p, "%s: '%s' is too small (at least 1K)", p->keyword, Q(value));
    *out = (unsigned)v;
    return 0;
}

static int tune_rcvbuf(struct parser *p, const char *value)
{
    return parse_sockbuf(p, value, &p->c->stream.rcvbuf);
}

static int tune_sndbuf(struct parser *p, const char *value)
{
    return parse_sockbuf(p, value, &p->c->stream.sndbuf);
}

static const struct subkeyword tune_settings[TUNE_COUNT] = {
    [TUNE_RCVBUF] = {"rcvbuf", "BYTES", .handle = tune_rcvbuf},
    [TUNE_SNDBUF] = {"sndbuf", "BYTES", .handle = tune_sndbuf},
};

/*
 * "KEYWORD SETTING VALUE": find SETTING in the table, refuse a second line for the same one,
 * and hand VALUE to its handler with "KEYWORD SETTING" as the name used in messages.
 */
static int parse_setting(struct parser *p, int argc, char **argv, const struct subkeyword *table,
                         size_t n, unsigned *first, const char *known)
{
    const char *block = p->keyword;
    char what[64];
    size_t k;
    int r;

    for (k = 0; k < n; k++) {
        if (strcmp(argv[0], table[k].name) == 0)
            break;
    }
    if (k == n)
        return fail(p, "%s: unknown setting '%s' (%s)", block, Q(argv[0]), known);
    snprintf(what, sizeof(what), "%s %s", block, table[k].name);
    if (first[k] != 0)
        return fail(p, "duplicate '%s' (first on line %u)", what, first[k]);
    if (argc < 2)
        return fail(p, "%s: missing %s", what, table[k].arg_name);
    p->keyword = what;
    r = table[k].handle != NULL ? table[k].handle(p, argv[1])
                                : store_number(p, &table[k].number, argv[1]);
    p->keyword = block;
    if (r < 0)
        return -1;
    first[k] = p->line;
    return 0;
}

static int kw_udp(struct parser *p, int argc, char **argv)
{
    return parse_setting(p, argc, argv, udp_settings, UDP_COUNT, p->udp_first,
                         "address, port-range, filter, max-per-client or max-total");
}

static int kw_bind(struct parser *p, int argc, char **argv)
{
    return parse_setting(p, argc, argv, bind_settings, BIND_COUNT, p->bind_first,
                         "port-range or peer");
}

static int kw_limit(struct parser *p, int argc, char **argv)
{
    return parse_setting(p, argc, argv, limit_settings, LIMIT_COUNT, p->limit_first,
                         "sessions-per-client, sessions-per-user, accept-rate, auth-failures, "
                         "bandwidth-per-client, bandwidth-per-user, quota-per-user, "
                         "negotiating-per-client or client-prefix-ipv6");
}

static int kw_tune(struct parser *p, int argc, char **argv)
{
    return parse_setting(p, argc, argv, tune_settings, TUNE_COUNT, p->tune_first,
                         "rcvbuf or sndbuf");
}

/* max-negotiating START[:RATE:FULL] | off, as OpenSSH's MaxStartups. */
static int kw_max_negotiating(struct parser *p, int argc, char **argv)
{
    struct limit_startups *m = &p->c->max_negotiating;
    const char *s = argv[0];
    char part[3][16];
    unsigned long v[3];
    int n = 0;

    p->c->max_negotiating_set = true;
    if (strcmp(s, "off") == 0) {
        memset(m, 0, sizeof(*m));
        return 0;
    }
    for (const char *q = s;; n++) {
        const char *colon = strchr(q, ':');
        size_t len = colon != NULL ? (size_t)(colon - q) : strlen(q);

        if (n == 3 || len == 0 || len >= sizeof(part[0]))
            return fail(p, "max-negotiating: '%s' is not START or START:RATE:FULL", Q(s));
        memcpy(part[n], q, len);
        part[n][len] = '\0';
        if (colon == NULL) {
            n++;
            break;
        }
        q = colon + 1;
    }
    if (n == 2)
        return fail(p, "max-negotiating: '%s' is not START or START:RATE:FULL", Q(s));
    if (parse_uint(p, part[0], 1, 1000000, &v[0]) < 0)
        return -1;
    if (n == 1) {
        /* One number: every new session beyond it is dropped. */
        m->start = m->full = (unsigned)v[0];
        m->rate = 100;
        return 0;
    }
    if (parse_uint(p, part[1], 0, 100, &v[1]) < 0 || parse_uint(p, part[2], 1, 1000000, &v[2]) < 0)
        return -1;
    if (v[2] < v[0])
        return fail(p, "max-negotiating: FULL (%lu) is below START (%lu)", v[2], v[0]);
    m->start = (unsigned)v[0];
    m->rate = (unsigned)v[1];
    m->full = (unsigned)v[2];
    return 0;
}

/* tcp-keepalive off | on [IDLE INTERVAL COUNT] */
static int kw_tcp_keepalive(struct parser *p, int argc, char **argv)
{
    struct net_stream_opts *o = &p->c->stream;
    int k = parse_choice(p, "value", argv[0], (const char *const[]){"off", "on", NULL});
    double idle, interval;
    unsigned long count;

    if (k < 0)
        return -1;
    o->keepalive = k == 1;
    o->keepalive_idle = o->keepalive_interval = o->keepalive_count = 0;
    if (argc == 1)
        return 0;
    if (k == 0 || argc != 4)
        return fail(p, "tcp-keepalive: give 'off', 'on', or 'on IDLE INTERVAL COUNT'");
    if (parse_duration_arg(p, argv[1], false, &idle) < 0 ||
        parse_duration_arg(p, argv[2], false, &interval) < 0 ||
        parse_uint(p, argv[3], 1, 127, &count) < 0)
        return -1;
    /* The kernel counts whole seconds, at most 32767. */
    if (idle < 1 || idle > 32767 || interval < 1 || interval > 32767)
        return fail(p, "tcp-keepalive: IDLE and INTERVAL must be 1s to 32767s");
    o->keepalive_idle = (unsigned)idle;
    o->keepalive_interval = (unsigned)interval;
    o->keepalive_count = (unsigned)count;
    return 0;
}

static int kw_workers(struct parser *p, int argc, char **argv)
{
    unsigned long v;

    if (strcmp(argv[0], "auto") == 0) {
        p->c->workers = 0;
        return 0;
    }
    if (parse_uint(p, argv[0], 1, 256, &v) < 0)
        return -1;
    p->c->workers = (unsigned)v;
    return 0;
}

static const struct {
    const char *name;
    int facility;
} facilities[] = {
    {"daemon", LOG_DAEMON},     {"user", LOG_USER},     {"auth", LOG_AUTH},
    {"authpriv", LOG_AUTHPRIV}, {"local0", LOG_LOCAL0}, {"local1", LOG_LOCAL1},
    {"local2", LOG_LOCAL2},     {"local3", LOG_LOCAL3}, {"local4", LOG_LOCAL4},
    {"local5", LOG_LOCAL5},     {"local6", LOG_LOCAL6}, {"local7", LOG_LOCAL7},
};

static int kw_log(struct parser *p, int argc, char **argv)
{
    struct config *c = p->c;

    if (strcmp(argv[0], "stderr") == 0) {
        if (argc > 1)
            return fail(p, "log: too many arguments (stderr takes no facility)");
        c->log_target = LOG_TARGET_STDERR;
        return 0;
    }
    if (strcmp(argv[0], "file") == 0) {
        if (argc < 2)
            return fail(p, "log: file needs a PATH");
        c->log_file = conf_path(p, argv[1]);
        if (c->log_file == NULL)
            return fail(p, "log: %s", strerror(errno));
        c->log_target = LOG_TARGET_FILE;
        return 0;
    }
    if (strcmp(argv[0], "syslog") != 0)
        return fail(p, "log: unknown target '%s' (stderr, syslog or file)", Q(argv[0]));
    c->log_target = LOG_TARGET_SYSLOG;
    c->syslog_facility = LOG_DAEMON;
    if (argc < 2)
        return 0;
    for (size_t i = 0; i < sizeof(facilities) / sizeof(facilities[0]); i++) {
        if (strcmp(argv[1], facilities[i].name) == 0) {
            c->syslog_facility = facilities[i].facility;
            return 0;
        }
    }
    return fail(p,
                "log: unknown syslog facility '%s' (daemon, user, auth, authpriv, local0..local7)",
                Q(argv[1]));
}

static int kw_log_format(struct parser *p, int argc, char **argv)
{
    static const char *const names[] = {"text", "json", "logfmt", NULL};
    static const enum access_format formats[] = {ACCESS_TEXT, ACCESS_JSON, ACCESS_LOGFMT};
    int k = parse_choice(p, "format", argv[0], names);

    if (k < 0)
        return -1;
    p->c->log_format = formats[k];
    return 0;
}

static int kw_log_level(struct parser *p, int argc, char **argv)
{
    int level = log_level_from_name(argv[0]);

    if (level < 0)
        return fail(p, "log-level: unknown level '%s' (err, warning, notice, info or debug)",
                    Q(argv[0]));
    p->c->log_level = level;
    return 0;
}

static int kw_shutdown_grace(struct parser *p, int argc, char **argv)
{
    /* 0: close every session at once. */
    return parse_duration_arg(p, argv[0], true, &p->c->shutdown_grace);
}

/* metrics ADDRESS[:PORT] | off */
static int kw_metrics(struct parser *p, int argc, char **argv)
{
    struct addr a;

    if (strcmp(argv[0], "off") == 0) {
        p->c->metrics_listen.len = 0;
        return 0;
    }
    if (addr_parse(argv[0], CONF_METRICS_PORT, &a) < 0 || addr_port(&a) == 0)
        return fail(p, "metrics: '%s' is not ADDRESS[:PORT] (an IP address: 127.0.0.1:9180, "
                       "[::1]:9180) or off",
                    Q(argv[0]));
    p->c->metrics_listen = a;
    return 0;
}

static int kw_auth_cache(struct parser *p, int argc, char **argv)
{
    /* 0: every login runs Argon2id. */
    return parse_duration_arg(p, argv[0], true, &p->c->auth_cache);
}

static int kw_relay(struct parser *p, int argc, char **argv)
{
    static const char *const names[] = {"auto", "splice", "buffered", NULL};
    static const enum relay_mode modes[] = {RELAY_AUTO, RELAY_SPLICE, RELAY_BUFFERED};
    int k = parse_choice(p, "mode", argv[0], names);

    if (k < 0)
        return -1;
    p->c->relay_mode = modes[k];
    return 0;
}

/* client|request pass|block CONDITION...: one rule appended to its set (see acl.h). */
static int add_rule(struct parser *p, struct acl_rules **set, bool is_client, int argc, char **argv)
{
    char msg[256];

    if (*set == NULL) {
        *set = acl_rules_new();
        if (*set == NULL)
            return fail(p, "%s: %s", p->keyword, strerror(errno));
    }
    if (acl_add_rule(*set, is_client, argc, argv, p->line, msg, sizeof(msg)) < 0)
        return fail(p, "%s", msg);
    return 0;
}

static int kw_client(struct parser *p, int argc, char **argv)
{
    return add_rule(p, &p->c->client_rules, true, argc, argv);
}

static int kw_request(struct parser *p, int argc, char **argv)
{
    return add_rule(p, &p->c->request_rules, false, argc, argv);
}

/* trusted-clients CIDR... (blank- or comma-separated) | none */
static int kw_trusted_clients(struct parser *p, int argc, char **argv)
{
    struct config *c = p->c;

    c->ntrusted_clients = 0;
    p->trusted_clients_set = true;
    if (argc == 1 && strcmp(argv[0], "none") == 0)
        return 0;
    for (int i = 0; i < argc; i++) {
        for (const char *s = argv[i]; s != NULL;) {
            char item[INET6_ADDRSTRLEN + 8]; /* one cut short cannot be a range: refused below */

            if (units_list_next(&s, item, sizeof(item)) == 0)
                return fail(p, "trusted-clients: empty item in '%s'", Q(argv[i]));
            if (strcmp(item, "none") == 0)
                return fail(p, "trusted-clients: 'none' must stand alone");
            if (c->ntrusted_clients == CONF_MAX_TRUSTED)
                return fail(p, "trusted-clients: too many ranges (at most %d)", CONF_MAX_TRUSTED);
            if (addr_cidr_parse(item, &c->trusted_clients[c->ntrusted_clients]) < 0)
                return fail(p, "trusted-clients: '%s' is not an address range", Q(item));
            c->ntrusted_clients++;
        }
    }
    return 0;
}

static int kw_private_destinations(struct parser *p, int argc, char **argv)
{
    int k = parse_choice(p, "value", argv[0], (const char *const[]){"block", "allow", NULL});

    if (k < 0)
        return -1;
    p->c->private_destinations = k == 1;
    return 0;
}

static int kw_allow_unauthenticated(struct parser *p, int argc, char **argv)
{
    int k = parse_choice(p, "value", argv[0], (const char *const[]){"no", "yes", NULL});

    if (k < 0)
        return -1;
    p->c->allow_unauthenticated = k == 1;
    p->allow_unauthenticated_line = p->line;
    return 0;
}

static struct routes *parser_routes(struct parser *p)
{
    if (p->c->routes == NULL)
        p->c->routes = routes_new();
    return p->c->routes;
}

/* parent NAME KIND HOST:PORT [OPTION VALUE]... (route.h) */
static int kw_parent(struct parser *p, int argc, char **argv)
{
    struct routes *r = parser_routes(p);
    char msg[512];

    if (r == NULL)
        return fail(p, "parent: %s", strerror(errno));
    if (routes_add_parent(r, argc, argv, p->line, p->dir, msg, sizeof(msg)) < 0)
        return fail(p, "%s", msg);
    return 0;
}

/* route [CONDITION VALUE]... via PATH[,PATH...] [resolve local|remote] (route.h) */
static int kw_route(struct parser *p, int argc, char **argv)
{
    struct routes *r = parser_routes(p);
    char msg[512];

    if (r == NULL)
        return fail(p, "route: %s", strerror(errno));
    if (routes_add_route(r, argc, argv, p->line, msg, sizeof(msg)) < 0)
        return fail(p, "%s", msg);
    return 0;
}

/* user NAME, group NAME: who ferryd runs as once its listeners are open. */
static int set_name(struct parser *p, char **field, const char *name)
{
    char *copy;

    if (name[0] == '\0' || strlen(name) > 255 || strpbrk(name, ":/,") != NULL)
        return fail(p, "%s: '%s' is not a user or group name", p->keyword, Q(name));
    copy = strdup(name);
    if (copy == NULL)
        return fail(p, "%s: %s", p->keyword, strerror(errno));
    free(*field);
    *field = copy;
    return 0;
}

static int kw_user(struct parser *p, int argc, char **argv)
{
    return set_name(p, &p->c->run_user, argv[0]);
}

static int kw_group(struct parser *p, int argc, char **argv)
{
    p->group_line = p->line;
    return set_name(p, &p->c->run_group, argv[0]);
}

static int kw_run_as_root(struct parser *p, int argc, char **argv)
{
    int k = parse_choice(p, "value", argv[0], (const char *const[]){"no", "yes", NULL});

    if (k < 0)
        return -1;
    p->c->run_as_root = k == 1;
    return 0;
}

#define TIMEOUT_KINDS "negotiate|resolve|connect|idle|udp|bind|half-closed"

/* Every keyword of the language. New blocks of settings (access rules) get a row here. */
static const struct keyword keywords[] = {
    {"listen", 1, 6, {"ADDRESS[:PORT]"}, true, .handle = kw_listen},
    {"tunnel", 1, 2, {"key|authorized-keys|replay-window"}, true, .handle = kw_tunnel},
    {"auth", 1, 2, {"METHOD (none or password)"}, false, .handle = kw_auth},
    {"users", 1, 1, {"PATH"}, false, .handle = kw_users},
    {"resolver", 1, 1, {"'system' or SERVER[,SERVER...]"}, false, .handle = kw_resolver},
    {"resolver-timeout", 1, 1, {"DURATION"}, false, .handle = kw_resolver_timeout},
    {"resolver-tries", 1, 1, {"N"}, false, NUMBER(1, 10, resolver_tries)},
    /* timeout checks duplicates per kind itself */
    {"timeout", 2, 2, {TIMEOUT_KINDS, "DURATION"}, true, .handle = kw_timeout},
    /* udp and bind check duplicates per setting themselves */
    {"udp", 1, 2, {"address|port-range|filter|max-per-client|max-total"}, true, .handle = kw_udp},
    {"bind", 1, 2, {"port-range|peer"}, true, .handle = kw_bind},
    {"log", 1, 2, {"stderr, syslog or file"}, false, .handle = kw_log},
    {"log-level", 1, 1, {"LEVEL"}, false, .handle = kw_log_level},
    {"log-format", 1, 1, {"text|json|logfmt"}, false, .handle = kw_log_format},
    {"max-sessions", 1, 1, {"N"}, false, NUMBER(1, 1000000, max_sessions)},
    {"max-negotiating", 1, 1, {"START[:RATE:FULL] or off"}, false, .handle = kw_max_negotiating},
    {"tune", 1, 2, {"rcvbuf|sndbuf"}, true, .handle = kw_tune},
    {"tcp-keepalive", 1, 4, {"off or on"}, false, .handle = kw_tcp_keepalive},
    {"shutdown-grace", 1, 1, {"DURATION"}, false, .handle = kw_shutdown_grace},
    {"auth-threads", 1, 1, {"N"}, false, NUMBER(1, 64, auth_threads)},
    {"auth-cache", 1, 1, {"DURATION"}, false, .handle = kw_auth_cache},
    {"relay", 1, 1, {"auto|splice|buffered"}, false, .handle = kw_relay},
    {"limit", 1, 2, {"SETTING", "VALUE"}, true, .handle = kw_limit},
    {"workers", 1, 1, {"N or auto"}, false, .handle = kw_workers},
    {"client", 1, CONF_MAX_ARGS, {"pass or block"}, true, .handle = kw_client},
    {"request", 1, CONF_MAX_ARGS, {"pass or block"}, true, .handle = kw_request},
    {"trusted-clients", 1, CONF_MAX_ARGS, {"CIDR or none"}, false, .handle = kw_trusted_clients},
    {"private-destinations", 1, 1, {"block or allow"}, false, .handle = kw_private_destinations},
    {"allow-unauthenticated", 1, 1, {"no or yes"}, false, .handle = kw_allow_unauthenticated},
    {"metrics", 1, 1, {"ADDRESS[:PORT] or off"}, false, .handle = kw_metrics},
    {"parent", 1, CONF_MAX_ARGS, {"NAME"}, true, .handle = kw_parent},
    {"route", 1, CONF_MAX_ARGS, {"via PATH"}, true, .handle = kw_route},
    {"user", 1, 1, {"NAME"}, false, .handle = kw_user},
    {"group", 1, 1, {"NAME"}, false, .handle = kw_group},
    {"run-as-root", 1, 1, {"no or yes"}, false, .handle = kw_run_as_root},
};

#define NKEYWORDS (sizeof(keywords) / sizeof(keywords[0]))

static bool is_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\v' || ch == '\f';
}

/* One line (without its newline, at most CONF_MAX_LINE bytes): split, look up, dispatch. */
static int parse_line(struct parser *p, const char *text, size_t len)
{
    char line[CONF_MAX_LINE + 1];
    char *argv[CONF_MAX_ARGS + 2];
    int argc = 0;
    const struct keyword *kw = NULL;
    size_t k;

    memcpy(line, text, len);
    line[len] = '\0';
    for (char *s = line; *s != '\0';) {
        while (is_space(*s))
            s++;
        if (*s == '\0' || *s == '#')
            break;
        if (argc == CONF_MAX_ARGS + 2)
            break;
        argv[argc++] = s;
        while (*s != '\0' && *s != '#' && !is_space(*s))
            s++;
        if (*s == '#') {
            *s = '\0';
            break;
        }
        if (*s != '\0')
            *s++ = '\0';
    }
    if (argc == 0)
        return 0;

    for (k = 0; k < NKEYWORDS; k++) {
        if (strcmp(argv[0], keywords[k].name) == 0) {
            kw = &keywords[k];
            break;
        }
    }
    if (kw == NULL)
        return fail(p, "unknown keyword '%s'", Q(argv[0]));
    p->keyword = kw->name;
    if (!kw->repeatable && p->first[k] != 0)
        return fail(p, "duplicate '%s' (first on line %u)", kw->name, p->first[k]);
    argc--;
    if (argc < kw->min_args)
        return fail(p, "%s: missing %s", kw->name, kw->arg_names[argc]);
    if (argc > kw->max_args)
        return fail(p, "%s: too many arguments", kw->name);
    if (kw->handle != NULL ? kw->handle(p, argc, argv + 1) < 0
                           : store_number(p, &kw->number, argv[1]) < 0)
        return -1;
    if (p->first[k] == 0)
        p->first[k] = p->line;
    return 0;
}

void conf_defaults(struct config *c)
{
    static const uint8_t lo4[4] = {127, 0, 0, 1};
    static const uint8_t lo4net[4] = {127, 0, 0, 0};
    static const uint8_t lo6[16] = {[15] = 1};

    memset(c, 0, sizeof(*c));
    addr_from_ipv4(&c->listen[0], lo4, CONF_DEFAULT_PORT);
    addr_from_ipv6(&c->listen[1], lo6, CONF_DEFAULT_PORT);
    c->nlisten = 2;
    for (size_t i = 0; i < CONF_MAX_LISTEN; i++)
        c->listen_protocols[i] = FRONTEND_ALL;
    c->listen_is_default = true;
    c->methods[0] = SOCKS5_METHOD_NOAUTH;
    c->nmethods = 1;
    c->users_file = NULL;
    c->tunnel_replay_window = 600;
    c->resolver_servers = NULL;
    c->nresolver_servers = 0;
    c->resolver_timeout = 2;
    c->resolver_tries = 2;
    c->timeout_negotiate = 10;
    c->timeout_resolve = 10;
    c->timeout_connect = 10;
    c->timeout_idle = 300;
    c->timeout_half_closed = 60;
    c->timeout_udp = 120;
    c->timeout_bind = 60;
    c->udp_port_min = 0;
    c->udp_port_max = 0;
    c->udp_filter = UDP_FILTER_ADDRESS;
    c->udp_max_per_client = 16;
    c->udp_max_total = 1024;
    c->bind_port_min = 0;
    c->bind_port_max = 0;
    c->bind_any_peer = false;
    c->log_target = LOG_TARGET_STDERR;
    c->syslog_facility = LOG_DAEMON;
    c->log_level = LOG_INFO;
    c->log_file = NULL;
    c->log_format = ACCESS_TEXT;
    c->max_sessions = 4096;
    c->shutdown_grace = 5;
    c->relay_mode = RELAY_AUTO;
    c->auth_threads = 2;
    c->auth_cache = 300;
    c->workers = 0;
    c->sessions_per_client = 512;
    c->sessions_per_user = 0;
    c->max_negotiating = (struct limit_startups){.start = 512, .rate = 30, .full = 1024};
    c->negotiating_per_client = 32;
    c->client_prefix6 = 64;
    c->auth_failures.rate = 10.0 / 60;
    c->auth_failures.burst = 10;
    c->client_rules = NULL;
    c->request_rules = NULL;
    c->routes = NULL;
    memset(&c->metrics_listen, 0, sizeof(c->metrics_listen));
    addr_from_ipv4(&c->trusted_clients[0].net, lo4net, 0);
    c->trusted_clients[0].prefix = 8;
    addr_from_ipv6(&c->trusted_clients[1].net, lo6, 0);
    c->trusted_clients[1].prefix = 128;
    c->ntrusted_clients = 2;
    c->private_destinations = false;
    c->allow_unauthenticated = false;
    c->run_user = NULL;
    c->run_group = NULL;
    c->run_as_root = true;
}

void conf_release(struct config *c)
{
    free(c->users_file);
    free(c->tunnel_key_file);
    free(c->tunnel_authkeys_file);
    c->tunnel_key_file = c->tunnel_authkeys_file = NULL;
    free(c->log_file);
    free(c->resolver_servers);
    free(c->run_user);
    free(c->run_group);
    c->run_user = NULL;
    c->run_group = NULL;
    acl_rules_free(c->client_rules);
    acl_rules_free(c->request_rules);
    routes_free(c->routes);
    c->routes = NULL;
    c->users_file = NULL;
    c->log_file = NULL;
    c->resolver_servers = NULL;
    c->nresolver_servers = 0;
    c->client_rules = NULL;
    c->request_rules = NULL;
}

static bool offers_none(const struct config *c)
{
    for (size_t i = 0; i < c->nmethods; i++) {
        if (c->methods[i] == SOCKS5_METHOD_NOAUTH)
            return true;
    }
    return false;
}

int conf_listen_index(const struct config *c, const struct addr *bound)
{
    for (size_t i = 0; i < c->nlisten; i++) {
        struct addr line = c->listen[i];

        if (addr_port(&line) == 0)
            addr_set_port(&line, addr_port(bound));
        if (addr_equal(&line, bound))
            return (int)i;
    }
    return -1;
}

bool conf_listener_exposed(const struct config *c, const struct addr *a)
{
    int k = conf_listen_index(c, a);

    /* A tunnel listener serves only clients that proved an authorized key. */
    if (k >= 0 && c->listen_tunnel[k])
        return false;
    return !c->allow_unauthenticated && offers_none(c) && !addr_is_loopback(a);
}

/*
 * Safe defaults: no open proxy by accident. A listener others can reach must ask for a
 * password, unless the file says that unauthenticated access is meant, and then client rules
 * must say who may connect.
 */
static int check_safe_defaults(struct parser *p)
{
    const struct config *c = p->c;
    char buf[ADDR_STRLEN];

    if (c->allow_unauthenticated) {
        if (acl_rules_count(c->client_rules) == 0) {
            p->line = p->allow_unauthenticated_line;
            return fail(p, "allow-unauthenticated yes needs at least one 'client' rule (who "
                           "may connect)");
        }
        return 0;
    }
    for (size_t i = 0; i < c->nlisten; i++) {
        /* A tunnel listener serves only clients that proved an authorized key. */
        if (c->listen_tunnel[i] &&
            (c->tunnel_key_file == NULL || c->tunnel_authkeys_file == NULL)) {
            p->line = p->listen_line[i];
            return fail(p,
                        "listen %s tunnel needs 'tunnel key PATH' and 'tunnel "
                        "authorized-keys PATH'%s",
                        addr_format(&c->listen[i], buf, sizeof(buf)),
                        p->line == 0 ? " (on the command line: --key PATH --authorized-keys PATH)"
                                     : "");
        }
        if (c->listen_tunnel[i] || !conf_listener_exposed(c, &c->listen[i]))
            continue;
        p->line = p->listen_line[i];
        if (p->line == 0) {
            p->name = "command line";
            return fail(p,
                        "--listen %s is not a loopback address and auth allows 'none': give "
                        "--users FILE (password authentication), or write the listen line in "
                        "the file with 'allow-unauthenticated yes' and client rules",
                        addr_format(&c->listen[i], buf, sizeof(buf)));
        }
        return fail(p,
                    "listen %s is not a loopback address and auth allows 'none': use 'auth "
                    "password', or 'allow-unauthenticated yes' with client rules",
                    addr_format(&c->listen[i], buf, sizeof(buf)));
    }
    if (c->run_group != NULL && c->run_user == NULL) {
        p->line = p->group_line;
        if (p->line == 0)
            p->name = "command line";
        return fail(p, "group needs user (the user to run as: a user line or --user)");
    }
    return 0;
}

/*
 * The command line's settings on top of the file's: each replaces the matching setting. A
 * flag must not open more than the file meant: the file's allow-unauthenticated yes was
 * written for its own listen lines, so a non-loopback --listen served without authentication
 * under it is an error rather than a silent open proxy.
 */
static int apply_overrides(struct parser *p, const struct conf_overrides *ov, const char *cwd)
{
    struct config *c = p->c;
    const char *file = p->name;
    unsigned allow_line = p->allow_unauthenticated_line;
    char *arg[1];

    p->name = "command line";
    p->line = 0;
    if (ov->nlisten > 0) {
        p->keyword = "listen";
        c->nlisten = 0;
        c->listen_is_default = false;
        for (size_t i = 0; i < ov->nlisten; i++) {
            arg[0] = (char *)ov->listen[i];
            if (kw_listen(p, 1, arg) < 0)
                return -1;
        }
    }
    if (ov->ntunnel_listen > 0) {
        p->keyword = "listen";
        if (ov->nlisten == 0) {
            c->nlisten = 0;
            c->listen_is_default = false;
        }
        for (size_t i = 0; i < ov->ntunnel_listen; i++) {
            char *largv[2] = {(char *)ov->tunnel_listen[i], "tunnel"};

            if (kw_listen(p, 2, largv) < 0)
                return -1;
        }
    }
    if (ov->authorized_keys != NULL || (ov->ntunnel_listen > 0 && ov->tunnel_key != NULL)) {
        const char *dir = p->dir;
        char *kargv[2] = {"authorized-keys", (char *)ov->authorized_keys};

        p->keyword = "tunnel";
        p->dir = cwd;
        if (ov->authorized_keys != NULL && kw_tunnel(p, 2, kargv) < 0)
            return -1;
        kargv[0] = "key";
        kargv[1] = (char *)ov->tunnel_key;
        if (ov->ntunnel_listen > 0 && ov->tunnel_key != NULL && kw_tunnel(p, 2, kargv) < 0)
            return -1;
        p->dir = dir;
    }
    if (ov->users != NULL) {
        const char *dir = p->dir;

        p->keyword = "users";
        p->dir = cwd;
        arg[0] = (char *)ov->users;
        free(c->users_file);
        c->users_file = NULL;
        if (kw_users(p, 1, arg) < 0)
            return -1;
        p->dir = dir;
        if (!p->password_auth) {
            c->methods[0] = SOCKS5_METHOD_USERPASS;
            c->nmethods = 1;
            p->password_auth = true;
        }
    }
    if (ov->tunnel != NULL) {
        /* The one-command mode: a ferry parent named "tunnel" and a route taking everything
         * through it (route.h). */
        char *skey = (char *)(ov->tunnel_server_key != NULL ? ov->tunnel_server_key : "");
        char *key = (char *)(ov->tunnel_key != NULL ? ov->tunnel_key : "");
        char *targv[9] = {"tunnel", "ferry",  (char *)ov->tunnel,       "server-key", skey, "key",
                          key,      "cipher", (char *)ov->tunnel_cipher};
        char *rargv[2] = {"via", "tunnel"};
        const char *dir = p->dir;

        p->dir = cwd;
        p->keyword = "parent";
        if (kw_parent(p, ov->tunnel_cipher != NULL ? 9 : 7, targv) < 0)
            return -1;
        p->keyword = "route";
        if (kw_route(p, 2, rargv) < 0)
            return -1;
        p->dir = dir;
    }
    if (ov->log_level != NULL) {
        p->keyword = "log-level";
        arg[0] = (char *)ov->log_level;
        if (kw_log_level(p, 1, arg) < 0)
            return -1;
    }
    if (ov->user != NULL) {
        p->keyword = "user";
        if (set_name(p, &c->run_user, ov->user) < 0)
            return -1;
    }
    if (ov->group != NULL) {
        p->keyword = "group";
        if (set_name(p, &c->run_group, ov->group) < 0)
            return -1;
        p->group_line = 0;
    }
    for (size_t i = 0; i < ov->nlisten && c->allow_unauthenticated && offers_none(c); i++) {
        char buf[ADDR_STRLEN];

        if (addr_is_loopback(&c->listen[i]))
            continue;
        return fail(p,
                    "--listen %s is not a loopback address, and %s:%u allows unauthenticated "
                    "clients for the file's own listen lines: put this listen line in the file "
                    "to serve it without authentication, or give --users",
                    addr_format(&c->listen[i], buf, sizeof(buf)), file, allow_line);
    }
    return 0;
}

/*
 * Without a max-negotiating line: 512:30:1024, but FULL at most half of max-sessions (at least
 * 4) and START at most half of FULL, so that connections which never finish negotiating cannot
 * take most of the sessions of a small configuration either.
 */
static void scale_negotiating(struct config *c)
{
    struct limit_startups *m = &c->max_negotiating;

    if (c->max_negotiating_set)
        return;
    if (m->full > c->max_sessions / 2)
        m->full = c->max_sessions / 2 > 4 ? c->max_sessions / 2 : 4;
    if (m->start > m->full / 2)
        m->start = m->full / 2;
}

/*
 * Parse text of len bytes; dir is where a relative users path points (NULL: as written). ov:
 * the command line's settings on top (NULL: none), a relative --users path from cwd.
 */
static int parse_text(struct config *out, const char *text, size_t len, const char *name,
                      const char *dir, const struct conf_overrides *ov, const char *cwd, char *err,
                      size_t errlen)
{
    unsigned first[NKEYWORDS] = {0};
    struct config c;
    struct parser p = {
        .c = &c, .name = name, .dir = dir, .err = err, .errlen = errlen, .first = first};
    size_t pos = 0;

    if (errlen > 0)
        err[0] = '\0';
    conf_defaults(&c);
    while (pos < len) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t n = nl != NULL ? (size_t)(nl - (text + pos)) : len - pos;

        p.line++;
        p.keyword = NULL;
        if (memchr(text + pos, '\0', n) != NULL) {
            fail(&p, "NUL byte in line");
            goto fail;
        }
        if (n > CONF_MAX_LINE) {
            fail(&p, "line too long (more than %d bytes)", CONF_MAX_LINE);
            goto fail;
        }
        if (parse_line(&p, text + pos, n) < 0)
            goto fail;
        pos += n + (nl != NULL ? 1 : 0);
    }
    if (ov != NULL && apply_overrides(&p, ov, cwd) < 0)
        goto fail;
    p.name = name;
    if (p.password_auth && c.users_file == NULL) {
        p.line = p.auth_line;
        fail(&p, "auth password needs a users file (users PATH)");
        goto fail;
    }
    if (check_safe_defaults(&p) < 0)
        goto fail;
    if (c.routes != NULL && routes_finish(c.routes, &p.line, p.err, p.errlen) < 0) {
        char msg[512];

        snprintf(msg, sizeof(msg), "%s", err);
        fail(&p, "%s", msg);
        goto fail;
    }
    /*
     * With passwords, who a client is comes from its login, not its address: behind a local
     * forwarder (stunnel, ssh -R) every client would come from loopback. Trust loopback only
     * when the file says so.
     */
    if (p.password_auth && !p.trusted_clients_set)
        c.ntrusted_clients = 0;
    scale_negotiating(&c);
    *out = c;
    return 0;

fail:
    conf_release(&c);
    conf_defaults(out);
    return -1;
}

/* Directory part of path, NULL when it has none (a relative name in the current directory). */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir;

    if (slash == NULL)
        return NULL;
    if (slash == path)
        return strdup("/");
    dir = strndup(path, (size_t)(slash - path));
    return dir;
}

int conf_parse(struct config *c, const char *text, const char *name, char *err, size_t errlen)
{
    char *dir = dir_of(name);
    int r;

    r = parse_text(c, text, strlen(text), name, dir, NULL, NULL, err, errlen);
    free(dir);
    return r;
}

int conf_load(struct config *c, const char *path, char *err, size_t errlen)
{
    return conf_load_with(c, path, NULL, err, errlen);
}

int conf_load_with(struct config *c, const char *path, const struct conf_overrides *ov, char *err,
                   size_t errlen)
{
    char *text, *dir, *absdir = NULL, *cwd = NULL;
    size_t len;
    int r;

    if (ov != NULL && ov->users != NULL && ov->users[0] != '/')
        cwd = getcwd(NULL, 0);
    if (path == NULL) {
        r = parse_text(c, "", 0, "built-in defaults", NULL, ov, cwd, err, errlen);
        free(cwd);
        return r;
    }
    text = units_read_file(path, CONF_MAX_FILE, &len);
    if (text == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        conf_defaults(c);
        free(cwd);
        return -1;
    }
    /* Resolve the directory now so the users path stays right if the daemon changes directory. */
    dir = dir_of(path);
    absdir = realpath(dir != NULL ? dir : ".", NULL);
    r = parse_text(c, text, len, path, absdir != NULL ? absdir : dir, ov, cwd, err, errlen);
    free(cwd);
    free(absdir);
    free(dir);
    free(text);
    return r;
}
