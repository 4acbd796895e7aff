/* Parents and routes (route.h): their lines, the route matcher and the parents' health. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "ferry/conf.h"
#include "ferry/route.h"
#include "ferry/tunnel_keys.h"
#include "ferry/tunnel_noise.h"
#include "ferry/units.h"

#define Q(s) units_quote((s), (char[96]){0}, 96)

static int say(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int say(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (errlen > 0) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

struct routes *routes_new(void)
{
    struct routes *r = calloc(1, sizeof(*r));

    if (r == NULL)
        return NULL;
    r->match = acl_rules_new();
    r->match_anywhere = acl_rules_new();
    if (r->match == NULL || r->match_anywhere == NULL) {
        acl_rules_free(r->match);
        acl_rules_free(r->match_anywhere);
        free(r);
        return NULL;
    }
    return r;
}

/* What a parent holds: secrets wiped, strings freed, the pointers NULL. */
static void parent_clear(struct parent *p)
{
    sodium_memzero(p->key, sizeof(p->key));
    if (p->pass != NULL)
        sodium_memzero(p->pass, strlen(p->pass));
    free(p->pass);
    free(p->user);
    free(p->credentials_file);
    free(p->key_file);
    p->user = p->pass = p->credentials_file = p->key_file = NULL;
}

void routes_free(struct routes *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->nparents; i++)
        parent_clear(&r->parents[i]);
    free(r->routes);
    free(r->health);
    acl_rules_free(r->match);
    acl_rules_free(r->match_anywhere);
    free(r->anywhere_no);
    free(r);
}

const char *parent_kind_name(enum parent_kind k)
{
    switch (k) {
    case PARENT_SOCKS5:
        return "socks5";
    case PARENT_SOCKS4A:
        return "socks4a";
    case PARENT_FERRY:
        return "ferry";
    default:
        return "http";
    }
}

/* --- parent lines ------------------------------------------------------------------------ */

static bool name_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '-' || ch == '_' || ch == '.';
}

/* A parent's name: 1..32 of [A-Za-z0-9._-], and not a word of the route syntax. */
static bool parent_name_ok(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > PARENT_NAME_MAX || strcmp(s, "direct") == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!name_char(s[i]))
            return false;
    }
    return true;
}

/* A host name as DNS carries it: labels of letters, digits, '-', '_', dots between. */
static bool host_name_ok(const char *s, size_t n)
{
    if (n == 0 || n > DEST_NAME_MAX || s[0] == '.' || s[0] == '-')
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!name_char(s[i]) || (s[i] == '.' && i + 1 < n && s[i + 1] == '.'))
            return false;
    }
    return true;
}

/* HOST:PORT, [IPv6]:PORT: the port is required. */
static int parse_host_port(const char *s, struct socks_dest *d, char *err, size_t errlen)
{
    const char *colon, *host = s;
    size_t hlen;
    char buf[DEST_NAME_MAX + 1];
    unsigned long port;
    char *end;

    memset(d, 0, sizeof(*d));
    if (s[0] == '[') {
        const char *close = strchr(s, ']');

        if (close == NULL || close[1] != ':')
            return say(err, errlen, "'%s' is not [IPv6]:PORT", Q(s));
        host = s + 1;
        hlen = (size_t)(close - host);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL)
            return say(err, errlen, "'%s' has no port (HOST:PORT)", Q(s));
        if (memchr(s, ':', (size_t)(colon - s)) != NULL)
            return say(err, errlen, "'%s': write an IPv6 address as [ADDRESS]:PORT", Q(s));
        hlen = (size_t)(colon - s);
    }
    errno = 0;
    port = strtoul(colon + 1, &end, 10);
    if (colon[1] < '0' || colon[1] > '9' || *end != '\0' || errno != 0 || port == 0 || port > 65535)
        return say(err, errlen, "'%s': port must be 1..65535", Q(s));
    if (hlen == 0 || hlen > DEST_NAME_MAX)
        return say(err, errlen, "'%s' names no host", Q(s));
    memcpy(buf, host, hlen);
    buf[hlen] = '\0';
    d->port = (uint16_t)port;
    if (s[0] == '[') {
        if (inet_pton(AF_INET6, buf, d->ip) != 1)
            return say(err, errlen, "'%s' is not an IPv6 address", Q(buf));
        d->type = DEST_IPV6;
    } else if (inet_pton(AF_INET, buf, d->ip) == 1) {
        d->type = DEST_IPV4;
    } else if (host_name_ok(buf, hlen)) {
        d->type = DEST_NAME;
        memcpy(d->name, buf, hlen + 1);
    } else {
        return say(err, errlen, "'%s' is not a host name or address", Q(buf));
    }
    return 0;
}

int routes_read_credentials(const char *path, char **user, char **pass, char *err, size_t errlen)
{
    char buf[600];
    struct stat st;
    ssize_t n;
    size_t len = 0;
    char *colon, *nl;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

    if (fd < 0)
        return say(err, errlen, "credentials %s: %s", path, strerror(errno));
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return say(err, errlen, "credentials %s: not a regular file", path);
    }
    /* As OpenSSH with a private key: a secret others can read is refused, not used. */
    if ((st.st_mode & 077) != 0) {
        close(fd);
        return say(err, errlen,
                   "credentials %s: group or others may access it (mode %04o): run chmod 600 "
                   "on it",
                   path, (unsigned)(st.st_mode & 07777));
    }
    while (len < sizeof(buf) - 1 && (n = read(fd, buf + len, sizeof(buf) - 1 - len)) != 0) {
        if (n < 0) {
            if (errno == EINTR)
                continue;
            close(fd);
            return say(err, errlen, "credentials %s: %s", path, strerror(errno));
        }
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    nl = strchr(buf, '\n');
    if (nl != NULL)
        *nl = '\0';
    else if (len == sizeof(buf) - 1)
        len = 0; /* no line end in 600 bytes: too long */
    if (nl != NULL && nl > buf && nl[-1] == '\r')
        nl[-1] = '\0';
    colon = strchr(buf, ':');
    if (len == 0 || memchr(buf, '\0', strlen(buf)) != NULL || colon == NULL || colon == buf ||
        colon[1] == '\0' || (size_t)(colon - buf) > 255 || strlen(colon + 1) > 255) {
        sodium_memzero(buf, sizeof(buf));
        return say(err, errlen,
                   "credentials %s: the first line must be USER:PASSWORD (each 1..255 bytes)",
                   path);
    }
    *colon = '\0';
    *user = strdup(buf);
    *pass = strdup(colon + 1);
    sodium_memzero(buf, sizeof(buf));
    if (*user == NULL || *pass == NULL) {
        free(*user);
        if (*pass != NULL)
            sodium_memzero(*pass, strlen(*pass));
        free(*pass);
        *user = *pass = NULL;
        return say(err, errlen, "credentials %s: %s", path, strerror(ENOMEM));
    }
    return 0;
}

static int parse_kind(const char *s, enum parent_kind *k)
{
    if (strcmp(s, "socks5") == 0)
        *k = PARENT_SOCKS5;
    else if (strcmp(s, "socks4a") == 0 || strcmp(s, "socks4") == 0)
        *k = PARENT_SOCKS4A;
    else if (strcmp(s, "http") == 0)
        *k = PARENT_HTTP;
    else if (strcmp(s, "ferry") == 0)
        *k = PARENT_FERRY;
    else
        return -1;
    return 0;
}

int routes_add_parent(struct routes *r, int argc, char **argv, unsigned line, const char *dir,
                      char *err, size_t errlen)
{
    struct parent *p;
    bool have_server_key = false, have_key = false;
    int i;

    if (argc < 3)
        return say(err, errlen, "parent: expected NAME socks5|socks4a|http HOST:PORT");
    if (r->nparents == ROUTE_MAX_PARENTS)
        return say(err, errlen, "parent: too many parents (at most %d)", ROUTE_MAX_PARENTS);
    if (!parent_name_ok(argv[0]))
        return say(err, errlen,
                   "parent: '%s' is not a name (1..%d of letters, digits, '.', '_', '-'; not "
                   "'direct')",
                   Q(argv[0]), PARENT_NAME_MAX);
    for (size_t k = 0; k < r->nparents; k++) {
        if (strcmp(r->parents[k].name, argv[0]) == 0)
            return say(err, errlen, "parent: '%s' is already defined on line %u", argv[0],
                       r->parents[k].line);
    }
    p = &r->parents[r->nparents];
    memset(p, 0, sizeof(*p));
    snprintf(p->name, sizeof(p->name), "%s", argv[0]);
    p->line = line;
    p->timeout = PARENT_DEFAULT_TIMEOUT;
    p->retry = PARENT_DEFAULT_RETRY;
    if (parse_kind(argv[1], &p->kind) < 0)
        return say(err, errlen, "parent %s: kind '%s' is not socks5, socks4a, http or ferry",
                   p->name, Q(argv[1]));
    if (parse_host_port(argv[2], &p->addr, err, errlen) < 0) {
        char msg[256];

        snprintf(msg, sizeof(msg), "%s", err);
        return say(err, errlen, "parent %s: %s", p->name, msg);
    }
    for (i = 3; i < argc; i += 2) {
        const char *opt = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;

        if (val == NULL) {
            say(err, errlen, "parent %s: '%s' needs a value", p->name, Q(opt));
            goto fail;
        }
        if (strcmp(opt, "credentials") == 0) {
            char *full;
            int rc;

            if (p->kind == PARENT_SOCKS4A) {
                say(err, errlen, "parent %s: SOCKS4a has no passwords; give 'user-id ID' instead",
                    p->name);
                goto fail;
            }
            if (p->user != NULL) {
                say(err, errlen, "parent %s: credentials given twice", p->name);
                goto fail;
            }
            full = units_path_join(dir, val);
            if (full == NULL) {
                say(err, errlen, "parent %s: %s", p->name, strerror(errno));
                goto fail;
            }
            rc = routes_read_credentials(full, &p->user, &p->pass, err, errlen);
            free(p->credentials_file);
            p->credentials_file = full;
            if (rc < 0)
                goto fail;
        } else if (strcmp(opt, "server-key") == 0 || strcmp(opt, "key") == 0) {
            if (p->kind != PARENT_FERRY) {
                say(err, errlen, "parent %s: '%s' is for ferry parents", p->name, opt);
                goto fail;
            }
            if (opt[0] == 's') {
                if (tunnel_key_decode(val, strlen(val), p->server_key) < 0) {
                    say(err, errlen,
                        "parent %s: server-key '%s' is not a key (44 characters "
                        "of base64, as ferry-keygen prints)",
                        p->name, Q(val));
                    goto fail;
                }
                have_server_key = true;
            } else {
                char *full = units_path_join(dir, val);
                char msg[512];

                if (full == NULL) {
                    say(err, errlen, "parent %s: %s", p->name, strerror(errno));
                    goto fail;
                }
                free(p->key_file);
                p->key_file = full;
                if (tunnel_key_load_private(full, p->key, msg, sizeof(msg)) < 0 ||
                    tunnel_public_key(p->key, p->key_pub) < 0) {
                    say(err, errlen, "parent %s: %s", p->name, msg);
                    goto fail;
                }
                have_key = true;
            }
        } else if (strcmp(opt, "cipher") == 0) {
            if (p->kind != PARENT_FERRY) {
                say(err, errlen, "parent %s: 'cipher' is for ferry parents", p->name);
                goto fail;
            }
            if (tunnel_suite_parse(val, &p->suite) < 0) {
                say(err, errlen, "parent %s: cipher '%s' is not chacha20-poly1305 or aes-256-gcm",
                    p->name, Q(val));
                goto fail;
            }
            if (!tunnel_suite_available(p->suite)) {
                say(err, errlen,
                    "parent %s: cipher %s needs AES instructions (AES-NI) this machine lacks; "
                    "use chacha20-poly1305",
                    p->name, val);
                goto fail;
            }
        } else if (strcmp(opt, "user-id") == 0) {
            if (p->kind != PARENT_SOCKS4A) {
                say(err, errlen, "parent %s: 'user-id' is for SOCKS4a parents; use 'credentials'",
                    p->name);
                goto fail;
            }
            if (p->user != NULL || strlen(val) > 255) {
                say(err, errlen, "parent %s: one user-id of at most 255 bytes", p->name);
                goto fail;
            }
            p->user = strdup(val);
            if (p->user == NULL) {
                say(err, errlen, "parent %s: %s", p->name, strerror(errno));
                goto fail;
            }
        } else if (strcmp(opt, "timeout") == 0 || strcmp(opt, "retry") == 0) {
            double d;

            if (conf_parse_duration(val, &d) < 0 || d <= 0) {
                say(err, errlen, "parent %s: %s '%s' is not a duration above 0", p->name, opt,
                    Q(val));
                goto fail;
            }
            if (opt[0] == 't')
                p->timeout = d;
            else
                p->retry = d;
        } else {
            say(err, errlen,
                "parent %s: unknown option '%s' (credentials, user-id, server-key, key, cipher, "
                "timeout, retry)",
                p->name, Q(opt));
            goto fail;
        }
    }
    if (p->kind == PARENT_FERRY && (!have_server_key || !have_key)) {
        say(err, errlen, "parent %s: a ferry parent needs 'server-key BASE64' and 'key PATH'",
            p->name);
        goto fail;
    }
    r->nparents++;
    return 0;

fail:
    parent_clear(p);
    return -1;
}

/* --- route lines ------------------------------------------------------------------------- */

static bool matcher_word(const char *s)
{
    static const char *const words[] = {"from", "user", "command", "to", "port", NULL};

    for (size_t i = 0; words[i] != NULL; i++) {
        if (strcmp(s, words[i]) == 0)
            return true;
    }
    return false;
}

/* PATH[,PATH...] into route->paths; parent names are looked up by routes_finish. */
static int parse_paths(struct route *rt, const char *list, char *err, size_t errlen)
{
    for (const char *s = list; s != NULL;) {
        char item[ROUTE_PATH_TEXT_MAX + 2];
        size_t n = units_list_next(&s, item, sizeof(item));
        struct route_path *path;

        if (n == 0)
            return say(err, errlen, "route: empty path in '%s'", Q(list));
        if (n > ROUTE_PATH_TEXT_MAX)
            return say(err, errlen, "route: path '%s' too long", Q(item));
        if (rt->npaths == ROUTE_MAX_PATHS)
            return say(err, errlen, "route: at most %d alternatives", ROUTE_MAX_PATHS);
        path = &rt->paths[rt->npaths++];
        memcpy(path->text, item, n + 1);
        if (strcmp(item, "direct") == 0) {
            rt->has_direct = true;
            continue;
        }
        path->nhops = 1;
        for (const char *c = item; *c != '\0'; c++) {
            if (*c == '>' && ++path->nhops > ROUTE_MAX_HOPS)
                return say(err, errlen, "route: path '%s' has more than %d hops", Q(item),
                           ROUTE_MAX_HOPS);
        }
    }
    return 0;
}

int routes_add_route(struct routes *r, int argc, char **argv, unsigned line, char *err,
                     size_t errlen)
{
    char *words[64];
    int nwords = 0, i = 0;
    bool names_dest = false; /* the route has a 'to' or 'port' condition */
    struct route rt = {.line = line};
    struct route *grown;
    char msg[256];

    if (r->nroutes == ROUTE_MAX_ROUTES)
        return say(err, errlen, "route: too many routes (at most %d)", ROUTE_MAX_ROUTES);
    words[nwords++] = "pass";
    while (i < argc && strcmp(argv[i], "via") != 0) {
        if (!matcher_word(argv[i]))
            return say(err, errlen,
                       "route: '%s' is not a condition (from, user, command, to, port) or 'via'",
                       Q(argv[i]));
        if (i + 1 >= argc || strcmp(argv[i + 1], "via") == 0)
            return say(err, errlen, "route: '%s' needs a value", argv[i]);
        if (nwords + 2 >= (int)(sizeof(words) / sizeof(words[0])))
            return say(err, errlen, "route: too many conditions");
        if (strcmp(argv[i], "to") == 0 || strcmp(argv[i], "port") == 0)
            names_dest = true;
        words[nwords++] = argv[i];
        words[nwords++] = argv[i + 1];
        i += 2;
    }
    if (i >= argc || i + 1 >= argc)
        return say(err, errlen, "route: missing 'via PATH[,PATH...]' (PATH: direct or P1>P2...)");
    if (parse_paths(&rt, argv[i + 1], err, errlen) < 0)
        return -1;
    i += 2;
    while (i < argc) {
        if (strcmp(argv[i], "resolve") == 0 && i + 1 < argc &&
            (strcmp(argv[i + 1], "local") == 0 || strcmp(argv[i + 1], "remote") == 0)) {
            rt.resolve_local = argv[i + 1][0] == 'l';
            i += 2;
            continue;
        }
        return say(err, errlen, "route: unexpected '%s' after the paths (resolve local|remote)",
                   Q(argv[i]));
    }
    if (acl_add_rule(r->match, false, nwords, words, line, msg, sizeof(msg)) < 0) {
        /* acl.h speaks of request rules */
        const char *m = strncmp(msg, "request: ", 9) == 0 ? msg + 9 : msg;

        return say(err, errlen, "route: %s", m);
    }
    grown = realloc(r->routes, (r->nroutes + 1) * sizeof(*grown));
    if (grown == NULL)
        return say(err, errlen, "route: %s", strerror(errno));
    r->routes = grown;
    r->routes[r->nroutes++] = rt;
    if (!names_dest) {
        unsigned *no = realloc(r->anywhere_no, (r->nanywhere + 1) * sizeof(*no));

        if (no == NULL ||
            acl_add_rule(r->match_anywhere, false, nwords, words, line, msg, sizeof(msg)) < 0) {
            if (no != NULL)
                r->anywhere_no = no;
            return say(err, errlen, "route: %s", strerror(ENOMEM));
        }
        r->anywhere_no = no;
        r->anywhere_no[r->nanywhere++] = (unsigned)r->nroutes;
    }
    return 0;
}

static int find_parent(const struct routes *r, const char *name, size_t n)
{
    for (size_t i = 0; i < r->nparents; i++) {
        if (strlen(r->parents[i].name) == n && memcmp(r->parents[i].name, name, n) == 0)
            return (int)i;
    }
    return -1;
}

int routes_finish(struct routes *r, unsigned *line, char *err, size_t errlen)
{
    for (size_t k = 0; k < r->nroutes; k++) {
        struct route *rt = &r->routes[k];

        for (unsigned a = 0; a < rt->npaths; a++) {
            struct route_path *path = &rt->paths[a];
            const char *s = path->text;

            for (unsigned h = 0; h < path->nhops; h++) {
                const char *end = strchr(s, '>');
                size_t n = end != NULL ? (size_t)(end - s) : strlen(s);
                int idx = find_parent(r, s, n);

                if (idx < 0) {
                    *line = rt->line;
                    return say(err, errlen, "route: no parent named '%.*s'", (int)(n > 64 ? 64 : n),
                               s);
                }
                for (unsigned e = 0; e < h; e++) {
                    if (path->hops[e] == (unsigned)idx) {
                        *line = rt->line;
                        return say(err, errlen, "route: path '%s' passes parent %s twice",
                                   path->text, r->parents[idx].name);
                    }
                }
                if (h > 0 && r->parents[idx].kind == PARENT_FERRY) {
                    *line = rt->line;
                    return say(err, errlen,
                               "route: path '%s': ferry parent %s can only be the first hop",
                               path->text, r->parents[idx].name);
                }
                path->hops[h] = (unsigned)idx;
                s = end != NULL ? end + 1 : s + n;
            }
        }
    }
    free(r->health);
    r->health = calloc(r->nparents > 0 ? r->nparents : 1, sizeof(*r->health));
    if (r->health == NULL) {
        *line = 0;
        return say(err, errlen, "routes: %s", strerror(errno));
    }
    for (size_t i = 0; i < r->nparents; i++)
        atomic_init(&r->health[i].down_until_ms, 0);
    return 0;
}

/* --- matching and health ----------------------------------------------------------------- */

int routes_match(const struct routes *r, const struct acl_request *req)
{
    struct acl_result res;

    if (r == NULL || r->nroutes == 0)
        return 0;
    if (req->name == NULL && req->dest == NULL) {
        res = acl_check_request(r->match_anywhere, req);
        if (res.verdict != ACL_VERDICT_PASS || res.rule == 0 || res.rule > r->nanywhere)
            return 0;
        return (int)r->anywhere_no[res.rule - 1];
    }
    res = acl_check_request(r->match, req);
    switch (res.verdict) {
    case ACL_VERDICT_PASS:
        return (int)res.rule;
    case ACL_VERDICT_NEED_ADDRESS:
        return -1;
    default:
        return 0; /* every route is a pass rule: a block is the end of the list */
    }
}

const struct route *routes_get(const struct routes *r, unsigned n)
{
    if (r == NULL || n == 0 || n > r->nroutes)
        return NULL;
    return &r->routes[n - 1];
}

bool routes_parent_down(const struct routes *r, unsigned i, int64_t now_ms)
{
    return atomic_load_explicit(&r->health[i].down_until_ms, memory_order_relaxed) > now_ms;
}

bool routes_mark_down(const struct routes *r, unsigned i, int64_t now_ms)
{
    int64_t until = now_ms + (int64_t)(r->parents[i].retry * 1000.0);
    int64_t old =
        atomic_exchange_explicit(&r->health[i].down_until_ms, until, memory_order_relaxed);

    return old <= now_ms;
}

bool routes_mark_up(const struct routes *r, unsigned i)
{
    return atomic_exchange_explicit(&r->health[i].down_until_ms, 0, memory_order_relaxed) != 0;
}

static bool same_secret(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strlen(a) == strlen(b) && sodium_memcmp(a, b, strlen(a)) == 0;
}

static bool same_dest(const struct socks_dest *a, const struct socks_dest *b)
{
    if (a->type != b->type || a->port != b->port)
        return false;
    if (a->type == DEST_NAME)
        return strcmp(a->name, b->name) == 0;
    return memcmp(a->ip, b->ip, a->type == DEST_IPV4 ? 4 : 16) == 0;
}

static bool same_parent(const struct parent *a, const struct parent *b)
{
    return strcmp(a->name, b->name) == 0 && a->kind == b->kind && same_dest(&a->addr, &b->addr) &&
           same_secret(a->user, b->user) && same_secret(a->pass, b->pass) &&
           memcmp(a->server_key, b->server_key, sizeof(a->server_key)) == 0 &&
           memcmp(a->key_pub, b->key_pub, sizeof(a->key_pub)) == 0;
}

unsigned routes_carry_health(const struct routes *to, const struct routes *from, int64_t now_ms)
{
    unsigned carried = 0;

    if (to == NULL || from == NULL)
        return 0;
    for (size_t i = 0; i < to->nparents; i++) {
        for (size_t j = 0; j < from->nparents; j++) {
            int64_t until, cap;

            if (!same_parent(&to->parents[i], &from->parents[j]))
                continue;
            until = atomic_load_explicit(&from->health[j].down_until_ms, memory_order_relaxed);
            cap = now_ms + (int64_t)(to->parents[i].retry * 1000.0);
            if (until > now_ms) {
                atomic_store_explicit(&to->health[i].down_until_ms, until < cap ? until : cap,
                                      memory_order_relaxed);
                carried++;
            }
            break;
        }
    }
    return carried;
}
