/*
 * Access rules, the rule language: "client" and "request" lines parsed into compact rules, and
 * first-match checks. Pure: no I/O, no logging, no globals but constant tables.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/acl.h"
#include "ferry/units.h"

/* Longest host name (RFC 1035 section 2.3.4, without the trailing dot) and label. */
#define ACL_MAX_NAME 253
#define ACL_MAX_LABEL 63
/* Longest user name: the RFC 1929 UNAME field holds at most 255 bytes. */
#define ACL_MAX_USER 255

/* A host-name entry of a 'to' condition, lower case, without leading or trailing dot. */
struct acl_name {
    char *text;
    size_t len;
    bool suffix; /* written ".example.com": the name itself and every name under it */
};

struct acl_port_range {
    uint16_t low;
    uint16_t high;
};

/* One rule. A condition with no entries (count 0, commands 0) is absent and matches all. */
struct acl_rule {
    enum acl_action action;
    bool log;
    bool private_ok;       /* private: opens private destinations for what it passes */
    unsigned max_sessions; /* sessions N: 0 for none */
    uint64_t bandwidth;    /* bandwidth BYTES: 0 for none */
    unsigned line;
    unsigned commands; /* ACL_CMD_* bits */
    struct addr_cidr *from;
    size_t nfrom;
    struct addr_cidr *to_nets;
    size_t nto_nets;
    struct acl_name *to_names;
    size_t nto_names;
    struct acl_port_range *ports;
    size_t nports;
    char **users;
    size_t nusers;
    bool has_listener;
    bool listener_has_port;
    struct addr listener;
};

struct acl_rules {
    struct acl_rule *rule;
    size_t n;
    size_t cap;
};

/* The conditions of both rule kinds; a rule may use each at most once. */
enum acl_cond {
    COND_FROM,
    COND_LISTENER,
    COND_USER,
    COND_COMMAND,
    COND_TO,
    COND_PORT,
    COND_LOG,
    COND_PRIVATE,   /* a flag like log: what the rule passes may be a private destination */
    COND_SESSIONS,  /* a limit of the rule, not a condition: sessions it passed at once */
    COND_BANDWIDTH, /* likewise: bytes per second for all the sessions it passed */
    COND_COUNT,
};

static const char *const cond_names[COND_COUNT] = {
    [COND_FROM] = "from",
    [COND_LISTENER] = "listener",
    [COND_USER] = "user",
    [COND_COMMAND] = "command",
    [COND_TO] = "to",
    [COND_PORT] = "port",
    [COND_LOG] = "log",
    [COND_PRIVATE] = "private",
    [COND_SESSIONS] = "sessions",
    [COND_BANDWIDTH] = "bandwidth",
};

static const unsigned client_conds = 1u << COND_FROM | 1u << COND_LISTENER | 1u << COND_LOG;
static const unsigned request_conds =
    1u << COND_FROM | 1u << COND_USER | 1u << COND_COMMAND | 1u << COND_TO | 1u << COND_PORT |
    1u << COND_LOG | 1u << COND_PRIVATE | 1u << COND_SESSIONS | 1u << COND_BANDWIDTH;

/* What a parse needs to write a message: "client" or "request", and the error buffer. */
struct acl_parse {
    const char *kind;
    char *err;
    size_t errlen;
};

static int acl_fail(struct acl_parse *ps, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* "KIND: message" into the error buffer. Returns -1. */
static int acl_fail(struct acl_parse *ps, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (ps->errlen == 0)
        return -1;
    n = snprintf(ps->err, ps->errlen, "%s: ", ps->kind);
    if (n < 0 || (size_t)n >= ps->errlen)
        return -1;
    va_start(ap, fmt);
    vsnprintf(ps->err + n, ps->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

#define Q(s) units_quote((s), (char[96]){0}, 96)

static char ascii_lower(char ch)
{
    return ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
}

/* ASCII case-insensitive comparison of n bytes, independent of the locale. */
static bool same_text_nocase(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (ascii_lower(a[i]) != ascii_lower(b[i]))
            return false;
    }
    return true;
}

/* --- rule sets --------------------------------------------------------------------------- */

struct acl_rules *acl_rules_new(void)
{
    return calloc(1, sizeof(struct acl_rules));
}

static void rule_release(struct acl_rule *r)
{
    for (size_t i = 0; i < r->nto_names; i++)
        free(r->to_names[i].text);
    for (size_t i = 0; i < r->nusers; i++)
        free(r->users[i]);
    free(r->from);
    free(r->to_nets);
    free(r->to_names);
    free(r->ports);
    free(r->users);
    memset(r, 0, sizeof(*r));
}

void acl_rules_free(struct acl_rules *rules)
{
    if (rules == NULL)
        return;
    for (size_t i = 0; i < rules->n; i++)
        rule_release(&rules->rule[i]);
    free(rules->rule);
    free(rules);
}

size_t acl_rules_count(const struct acl_rules *rules)
{
    return rules != NULL ? rules->n : 0;
}

/* --- parsing ----------------------------------------------------------------------------- */

/*
 * Split list into its items and hand each, NUL-terminated, to fn. The item buffer holds the
 * longest valid item of any kind; a longer one is passed cut short and marked too_long.
 */
typedef int (*item_fn)(struct acl_parse *ps, struct acl_rule *r, const char *item, bool too_long);

#define ACL_ITEM_MAX (ACL_MAX_USER + 1)

static int each_item(struct acl_parse *ps, struct acl_rule *r, const char *list, item_fn fn)
{
    while (list != NULL) {
        char item[ACL_ITEM_MAX + 1];
        size_t n = units_list_next(&list, item, sizeof(item));

        if (fn(ps, r, item, n > ACL_ITEM_MAX) < 0)
            return -1;
    }
    return 0;
}

static int from_item(struct acl_parse *ps, struct acl_rule *r, const char *item, bool too_long)
{
    if (too_long || addr_cidr_parse(item, &r->from[r->nfrom]) < 0)
        return acl_fail(ps, "'%s' is not an address range", Q(item));
    r->nfrom++;
    return 0;
}

/*
 * A host name for a 'to' condition: letters, digits, '-' and '_' in labels of 1 to 63 bytes,
 * at most 253 bytes, the last label not all digits (that would be a mistyped address). A
 * leading '.' makes it a domain suffix; one trailing '.' is ignored.
 */
static bool parse_name(const char *item, struct acl_name *out)
{
    const char *s = item;
    size_t len, label = 0;
    bool digits_only = true, suffix = false;

    if (*s == '.') {
        suffix = true;
        s++;
    }
    len = strlen(s);
    if (len > 0 && s[len - 1] == '.')
        len--;
    if (len == 0 || len > ACL_MAX_NAME)
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (ch == '.') {
            if (label == 0)
                return false;
            label = 0;
            digits_only = true;
            continue;
        }
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '_'))
            return false;
        if (ch < '0' || ch > '9')
            digits_only = false;
        if (++label > ACL_MAX_LABEL)
            return false;
    }
    if (label == 0 || digits_only)
        return false;
    out->text = malloc(len + 1);
    if (out->text == NULL)
        return false;
    for (size_t i = 0; i < len; i++)
        out->text[i] = ascii_lower(s[i]);
    out->text[len] = '\0';
    out->len = len;
    out->suffix = suffix;
    return true;
}

static int to_item(struct acl_parse *ps, struct acl_rule *r, const char *item, bool too_long)
{
    if (!too_long && addr_cidr_parse(item, &r->to_nets[r->nto_nets]) == 0) {
        r->nto_nets++;
        return 0;
    }
    if (!too_long && parse_name(item, &r->to_names[r->nto_names])) {
        r->nto_names++;
        return 0;
    }
    if (item[0] == '*' && item[1] == '.')
        return acl_fail(ps,
                        "'%s' is not an address range or host name (write '%s' for %s and every "
                        "name under it)",
                        Q(item), Q(item + 1), Q(item + 2));
    return acl_fail(ps, "'%s' is not an address range or host name", Q(item));
}

/* "PORT" or "LOW-HIGH", decimal, 0 to 65535. */
static bool parse_port_number(const char *s, size_t n, uint16_t *out)
{
    unsigned long v = 0;

    if (n == 0 || n > 5)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v > 65535)
        return false;
    *out = (uint16_t)v;
    return true;
}

static int port_item(struct acl_parse *ps, struct acl_rule *r, const char *item, bool too_long)
{
    const char *dash = strchr(item, '-');
    struct acl_port_range *pr = &r->ports[r->nports];
    bool ok;

    if (dash == NULL) {
        ok = parse_port_number(item, strlen(item), &pr->low);
        pr->high = pr->low;
    } else {
        ok = parse_port_number(item, (size_t)(dash - item), &pr->low) &&
             parse_port_number(dash + 1, strlen(dash + 1), &pr->high);
    }
    if (too_long || !ok)
        return acl_fail(ps, "'%s' is not a port or port range (like 443 or 8000-8999)", Q(item));
    if (pr->low > pr->high)
        return acl_fail(ps, "port range '%s' runs backwards (LOW-HIGH)", Q(item));
    r->nports++;
    return 0;
}

static int user_item(struct acl_parse *ps, struct acl_rule *r, const char *item, bool too_long)
{
    if (too_long || strlen(item) > ACL_MAX_USER)
        return acl_fail(ps, "user name '%s' is too long (at most %d bytes)", Q(item), ACL_MAX_USER);
    r->users[r->nusers] = strdup(item);
    if (r->users[r->nusers] == NULL)
        return acl_fail(ps, "out of memory");
    r->nusers++;
    return 0;
}

static int command_item(struct acl_parse *ps, struct acl_rule *r, const char *item, bool too_long)
{
    static const struct {
        const char *name;
        unsigned bit;
    } commands[] = {
        {"connect", ACL_CMD_CONNECT},
        {"bind", ACL_CMD_BIND},
        {"udp", ACL_CMD_UDP},
        {"resolve", ACL_CMD_RESOLVE},
    };

    for (size_t i = 0; !too_long && i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(item, commands[i].name) == 0) {
            r->commands |= commands[i].bit;
            return 0;
        }
    }
    return acl_fail(ps, "unknown command '%s' (connect, bind, udp, resolve)", Q(item));
}

/* listener ADDR[:PORT]: "192.0.2.1", "192.0.2.1:1080", "[2001:db8::1]:1080", "2001:db8::1". */
static int parse_listener(struct acl_parse *ps, struct acl_rule *r, const char *value)
{
    const char *colon = strchr(value, ':');
    bool has_port;

    if (value[0] == '[') {
        const char *close = strchr(value, ']');
        has_port = close != NULL && close[1] == ':';
    } else {
        has_port = colon != NULL && strchr(colon + 1, ':') == NULL;
    }
    if (addr_parse(value, 0, &r->listener) < 0)
        return acl_fail(ps, "'%s' is not an address (ADDRESS or ADDRESS:PORT)", Q(value));
    r->has_listener = true;
    r->listener_has_port = has_port;
    return 0;
}

/* Room for every item of a list condition; count items first so each array is sized once. */
static int parse_list(struct acl_parse *ps, struct acl_rule *r, enum acl_cond cond,
                      const char *value)
{
    size_t n = units_list_count(value);
    bool empty = false, any = false;

    for (const char *s = value; s != NULL;) {
        char item[4];
        size_t len = units_list_next(&s, item, sizeof(item));

        empty = empty || len == 0;
        any = any || (len == 3 && strcmp(item, "any") == 0);
    }
    if (empty)
        return acl_fail(ps, "empty item in '%s'", Q(value));
    if (any && n > 1)
        return acl_fail(ps, "'any' must stand alone, not in a list ('%s')", Q(value));
    switch (cond) {
    case COND_FROM:
        r->from = calloc(n, sizeof(*r->from));
        if (r->from == NULL)
            return acl_fail(ps, "out of memory");
        return each_item(ps, r, value, from_item);
    case COND_TO:
        r->to_nets = calloc(n, sizeof(*r->to_nets));
        r->to_names = calloc(n, sizeof(*r->to_names));
        if (r->to_nets == NULL || r->to_names == NULL)
            return acl_fail(ps, "out of memory");
        return each_item(ps, r, value, to_item);
    case COND_PORT:
        r->ports = calloc(n, sizeof(*r->ports));
        if (r->ports == NULL)
            return acl_fail(ps, "out of memory");
        return each_item(ps, r, value, port_item);
    case COND_USER:
        r->users = calloc(n, sizeof(*r->users));
        if (r->users == NULL)
            return acl_fail(ps, "out of memory");
        return each_item(ps, r, value, user_item);
    case COND_COMMAND:
        return each_item(ps, r, value, command_item);
    case COND_LISTENER:
        return parse_listener(ps, r, value);
    default:
        return acl_fail(ps, "internal error: condition %d", (int)cond);
    }
}

/* Shrink the 'to' arrays to what was used: a list is mostly all names or all ranges. */
static void trim_to(struct acl_rule *r)
{
    if (r->nto_nets == 0) {
        free(r->to_nets);
        r->to_nets = NULL;
    }
    if (r->nto_names == 0) {
        free(r->to_names);
        r->to_names = NULL;
    }
}

/* sessions N (1..1000000) or bandwidth BYTES (at least 1 KiB/s) of a pass rule. */
static int parse_rule_limit(struct acl_parse *ps, struct acl_rule *r, enum acl_cond cond,
                            const char *value)
{
    uint64_t v;

    if (cond == COND_SESSIONS) {
        const char *q = value;

        for (v = 0; *q >= '0' && *q <= '9' && v <= 1000000; q++)
            v = v * 10 + (uint64_t)(*q - '0');
        if (q == value || *q != '\0' || v == 0 || v > 1000000)
            return acl_fail(ps, "sessions: '%s' is not a number from 1 to 1000000", Q(value));
        r->max_sessions = (unsigned)v;
        return 0;
    }
    switch (units_parse_bytes(value, 1ull << 40, &v)) {
    case UNITS_OK:
        if (v >= 1024)
            break;
        return acl_fail(ps, "bandwidth: '%s' is below 1K (bytes per second)", Q(value));
    case UNITS_TOO_LARGE:
        return acl_fail(ps, "bandwidth: '%s' is too large", Q(value));
    default:
        return acl_fail(ps, "bandwidth: '%s' is not a byte count (like 512K, 10M, 1G)", Q(value));
    }
    r->bandwidth = v;
    return 0;
}

static bool is_condition_word(const char *word, unsigned allowed)
{
    for (int k = 0; k < COND_COUNT; k++) {
        if ((allowed & 1u << k) && strcmp(word, cond_names[k]) == 0)
            return true;
    }
    return false;
}

/* The rule in words after the keyword: action, then condition-value pairs and 'log'. */
static int parse_rule(struct acl_parse *ps, bool is_client, int argc, char **argv,
                      struct acl_rule *r)
{
    unsigned allowed = is_client ? client_conds : request_conds;
    unsigned seen = 0;

    if (argc < 1)
        return acl_fail(ps, "missing pass or block");
    if (strcmp(argv[0], "pass") == 0)
        r->action = ACL_PASS;
    else if (strcmp(argv[0], "block") == 0)
        r->action = ACL_BLOCK;
    else
        return acl_fail(ps, "first word must be pass or block");

    for (int i = 1; i < argc; i++) {
        const char *word = argv[i];
        int k;

        for (k = 0; k < COND_COUNT; k++) {
            if ((allowed & 1u << k) && strcmp(word, cond_names[k]) == 0)
                break;
        }
        if (k == COND_COUNT)
            return acl_fail(ps, "unknown condition '%s' (%s)", Q(word),
                            is_client ? "from, listener, log"
                                      : "from, user, command, to, port, log, private, "
                                        "sessions, bandwidth");
        if (seen & 1u << k)
            return acl_fail(ps, "duplicate condition '%s'", word);
        seen |= 1u << k;
        if (k == COND_LOG) {
            r->log = true;
            continue;
        }
        if (k == COND_PRIVATE) {
            if (r->action != ACL_PASS)
                return acl_fail(ps, "'private' is for a pass rule");
            r->private_ok = true;
            continue;
        }
        /* A condition word where a value belongs is a missing value, not a strange value. */
        if (i + 1 >= argc || is_condition_word(argv[i + 1], allowed))
            return acl_fail(ps, "'%s' needs a value", word);
        i++;
        if (strcmp(argv[i], "any") == 0)
            continue;
        if (k == COND_SESSIONS || k == COND_BANDWIDTH) {
            if (r->action != ACL_PASS)
                return acl_fail(ps, "'%s' is a limit for a pass rule", word);
            if (parse_rule_limit(ps, r, (enum acl_cond)k, argv[i]) < 0)
                return -1;
            continue;
        }
        if (parse_list(ps, r, (enum acl_cond)k, argv[i]) < 0)
            return -1;
        if (k == COND_TO)
            trim_to(r);
    }
    return 0;
}

int acl_add_rule(struct acl_rules *rules, bool is_client, int argc, char **argv, unsigned line,
                 char *err, size_t errlen)
{
    struct acl_parse ps = {.kind = is_client ? "client" : "request", .err = err, .errlen = errlen};
    struct acl_rule r;

    if (errlen > 0)
        err[0] = '\0';
    if (rules == NULL)
        return acl_fail(&ps, "no rule set");
    memset(&r, 0, sizeof(r));
    r.line = line;
    if (parse_rule(&ps, is_client, argc, argv, &r) < 0) {
        rule_release(&r);
        return -1;
    }
    if (rules->n == rules->cap) {
        size_t cap = rules->cap != 0 ? rules->cap * 2 : 8;
        struct acl_rule *grown = realloc(rules->rule, cap * sizeof(*grown));

        if (grown == NULL) {
            rule_release(&r);
            return acl_fail(&ps, "out of memory");
        }
        rules->rule = grown;
        rules->cap = cap;
    }
    rules->rule[rules->n++] = r;
    return 0;
}

/* --- matching ---------------------------------------------------------------------------- */

/* A rule condition's answer: yes, no, or cannot tell without the destination address. */
enum tri {
    TRI_NO,
    TRI_YES,
    TRI_UNKNOWN,
};

static bool any_cidr_contains(const struct addr_cidr *nets, size_t n, const struct addr *a)
{
    for (size_t i = 0; i < n; i++) {
        if (addr_cidr_contains(&nets[i], a))
            return true;
    }
    return false;
}

/* Exact or suffix match of a requested name; case and one trailing dot do not count. */
static bool name_matches(const struct acl_name *entry, const char *name)
{
    size_t len = strlen(name);

    if (len > 0 && name[len - 1] == '.')
        len--;
    if (len == entry->len)
        return same_text_nocase(name, entry->text, len);
    return entry->suffix && len > entry->len && name[len - entry->len - 1] == '.' &&
           same_text_nocase(name + len - entry->len, entry->text, entry->len);
}

static bool any_name_matches(const struct acl_rule *r, const char *name)
{
    for (size_t i = 0; i < r->nto_names; i++) {
        if (name_matches(&r->to_names[i], name))
            return true;
    }
    return false;
}

static struct acl_result decided(const struct acl_rule *r, size_t index)
{
    struct acl_result res = {
        .verdict = r->action == ACL_PASS ? ACL_VERDICT_PASS : ACL_VERDICT_BLOCK,
        .rule = (unsigned)(index + 1),
        .line = r->line,
        .log = r->log,
        .private_ok = r->private_ok,
        .max_sessions = r->max_sessions,
        .bandwidth = r->bandwidth,
    };
    return res;
}

/* No rule matched: an empty set passes, a set with rules ends with an implicit block. */
static struct acl_result fell_through(const struct acl_rules *rules)
{
    struct acl_result res = {
        .verdict = acl_rules_count(rules) == 0 ? ACL_VERDICT_PASS : ACL_VERDICT_BLOCK,
    };
    return res;
}

struct acl_result acl_check_client(const struct acl_rules *rules, const struct addr *client,
                                   const struct addr *listener)
{
    for (size_t i = 0; i < acl_rules_count(rules); i++) {
        const struct acl_rule *r = &rules->rule[i];

        if (r->nfrom > 0 && (client == NULL || !any_cidr_contains(r->from, r->nfrom, client)))
            continue;
        if (r->has_listener) {
            if (listener == NULL || !addr_same_ip(&r->listener, listener))
                continue;
            if (r->listener_has_port && addr_port(&r->listener) != addr_port(listener))
                continue;
        }
        return decided(r, i);
    }
    return fell_through(rules);
}

/*
 * The destination part of a request rule ('to' and 'port'); *range is the 'to' range that
 * holds the address, when one does.
 */
static enum tri match_destination(const struct acl_rule *r, const struct acl_request *req,
                                  const struct addr_cidr **range)
{
    bool known = req->name != NULL || req->dest != NULL;

    *range = NULL;
    if (r->nports > 0) {
        bool hit = false;

        if (!known)
            return TRI_UNKNOWN;
        for (size_t i = 0; i < r->nports && !hit; i++)
            hit = req->port >= r->ports[i].low && req->port <= r->ports[i].high;
        if (!hit)
            return TRI_NO;
    }
    if (r->nto_nets + r->nto_names == 0)
        return TRI_YES;
    if (!known)
        return TRI_UNKNOWN;
    for (size_t i = 0; req->dest != NULL && i < r->nto_nets; i++) {
        if (addr_cidr_contains(&r->to_nets[i], req->dest)) {
            *range = &r->to_nets[i];
            return TRI_YES;
        }
    }
    if (req->name != NULL && any_name_matches(r, req->name))
        return TRI_YES;
    /* The names did not match; a range may still match once the address is known. */
    return req->dest == NULL && r->nto_nets > 0 ? TRI_UNKNOWN : TRI_NO;
}

static bool user_matches(const struct acl_rule *r, const char *user)
{
    if (r->nusers == 0)
        return true;
    if (user == NULL)
        return false;
    for (size_t i = 0; i < r->nusers; i++) {
        if (strcmp(r->users[i], user) == 0)
            return true;
    }
    return false;
}

struct acl_result acl_check_request(const struct acl_rules *rules, const struct acl_request *req)
{
    for (size_t i = 0; i < acl_rules_count(rules); i++) {
        const struct acl_rule *r = &rules->rule[i];
        struct acl_result res;
        const struct addr_cidr *range;
        enum tri dest;

        if (r->nfrom > 0 &&
            (req->client == NULL || !any_cidr_contains(r->from, r->nfrom, req->client)))
            continue;
        if (!user_matches(r, req->user))
            continue;
        if (r->commands != 0 && (r->commands & req->command) == 0)
            continue;
        dest = match_destination(r, req, &range);
        if (dest == TRI_NO)
            continue;
        if (dest == TRI_UNKNOWN) {
            res = decided(r, i);
            res.verdict = ACL_VERDICT_NEED_ADDRESS;
            res.log = false;
            res.private_ok = false;
            return res;
        }
        res = decided(r, i);
        res.explicit_dest = range != NULL;
        res.dest_range = range;
        return res;
    }
    return fell_through(rules);
}

unsigned acl_find_pass_range(const struct acl_rules *rules,
                             bool (*fn)(const struct addr_cidr *range))
{
    for (size_t i = 0; i < acl_rules_count(rules); i++) {
        const struct acl_rule *r = &rules->rule[i];

        if (r->action != ACL_PASS || r->private_ok)
            continue;
        for (size_t j = 0; j < r->nto_nets; j++) {
            if (fn(&r->to_nets[j]))
                return r->line;
        }
    }
    return 0;
}
