/*
 * Access rules (src/acl.c): acl_add_rule on lines of words, and acl_check_client and
 * acl_check_request on a request made from the input's first bytes. Input:
 *   54 bytes: flags, command, port, listener port, client IP, destination IP, listener IP
 *   text:     lines "client WORD...", "request WORD..." (rules), "name HOST", "user NAME"
 * Checks the answers are well formed and that a decision taken before the destination is
 * known (before DNS) is the decision taken once it is: with the name, or with the address.
 */
#include "config.h"

#include "ferry/acl.h"
#include "ferry/policy.h"
#include "fuzz.h"

#define ACL_PREFIX 54
#define ACL_MAX_WORDS 32
#define ACL_MAX_RULES 64

enum {
    F_CLIENT_V6 = 1 << 0,
    F_DEST_V6 = 1 << 1,
    F_DEST_KNOWN = 1 << 2,
    F_NAME_KNOWN = 1 << 3,
    F_USER_KNOWN = 1 << 4,
    F_LISTENER_KNOWN = 1 << 5,
    F_LISTENER_V6 = 1 << 6,
    F_CLIENT_KNOWN = 1 << 7,
};

struct rule_set {
    struct acl_rules *rules;
    unsigned line[ACL_MAX_RULES]; /* config line given to each rule */
};

static void make_addr(struct addr *a, bool v6, const uint8_t *ip, uint16_t port)
{
    if (v6)
        addr_from_ipv6(a, ip, port);
    else
        addr_from_ipv4(a, ip, port);
}

/* A well-formed answer of a set: a real rule and its line, or the fall-through default. */
static void check_result(const struct rule_set *set, const struct acl_result *r)
{
    size_t n = acl_rules_count(set->rules);

    FUZZ_CHECK(r->verdict == ACL_VERDICT_PASS || r->verdict == ACL_VERDICT_BLOCK ||
               r->verdict == ACL_VERDICT_NEED_ADDRESS);
    FUZZ_CHECK(r->rule <= n);
    if (r->rule == 0) {
        FUZZ_CHECK(r->verdict == (n == 0 ? ACL_VERDICT_PASS : ACL_VERDICT_BLOCK));
        FUZZ_CHECK(r->line == 0 && !r->log && !r->explicit_dest);
    } else {
        FUZZ_CHECK(r->line == set->line[r->rule - 1]);
    }
    if (r->verdict == ACL_VERDICT_NEED_ADDRESS)
        FUZZ_CHECK(!r->log && !r->explicit_dest);
}

static bool same_decision(const struct acl_result *a, const struct acl_result *b)
{
    return a->verdict == b->verdict && a->rule == b->rule && a->line == b->line;
}

/* Every word that reads as an address range contains its own network address. */
static void check_cidr_words(int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        struct addr_cidr c;

        if (addr_cidr_parse(argv[i], &c) == 0) {
            FUZZ_CHECK(c.prefix <= (addr_family(&c.net) == AF_INET ? 32u : 128u));
            FUZZ_CHECK(addr_cidr_contains(&c, &c.net));
            /* A range that holds a whole private range and more does not open its address. */
            if (policy_range_holds_private(&c) && policy_private_prefix(NULL, NULL, &c.net) >= 0)
                FUZZ_CHECK(!policy_range_opens(&c, NULL, NULL, &c.net));
        }
    }
}

static void add_rule(struct rule_set *set, bool is_client, int argc, char **argv, unsigned line)
{
    size_t before = acl_rules_count(set->rules);
    char err[256];
    int r;

    if (before == ACL_MAX_RULES)
        return;
    err[0] = 'Z';
    r = acl_add_rule(set->rules, is_client, argc, argv, line, err, sizeof(err));
    FUZZ_CHECK(strnlen(err, sizeof(err)) < sizeof(err));
    if (r == 0) {
        FUZZ_CHECK(acl_rules_count(set->rules) == before + 1);
        set->line[before] = line;
    } else {
        char *small = malloc(1 + line % 16);

        FUZZ_CHECK(r == -1 && err[0] != '\0');
        FUZZ_CHECK(acl_rules_count(set->rules) == before);
        /* A short message buffer is cut, not overrun. */
        if (small == NULL)
            abort();
        FUZZ_CHECK(acl_add_rule(set->rules, is_client, argc, argv, line, small, 1 + line % 16) ==
                   -1);
        FUZZ_CHECK(strnlen(small, 1 + line % 16) < 1 + line % 16);
        free(small);
    }
    check_cidr_words(argc, argv);
}

static void check_requests(const struct rule_set *set, const struct acl_request *req)
{
    struct acl_request unknown = *req, by_name = *req;
    struct acl_result full, none, named;

    full = acl_check_request(set->rules, req);
    check_result(set, &full);
    if (req->dest != NULL)
        FUZZ_CHECK(full.verdict != ACL_VERDICT_NEED_ADDRESS);
    if (full.explicit_dest)
        FUZZ_CHECK(req->dest != NULL);
    /* The range that decided is reported, and holds the address. */
    FUZZ_CHECK(full.explicit_dest == (full.dest_range != NULL));
    if (full.dest_range != NULL)
        FUZZ_CHECK(addr_cidr_contains(full.dest_range, req->dest));

    /* UDP ASSOCIATE at request time: nothing known about the destination. */
    unknown.name = NULL;
    unknown.dest = NULL;
    none = acl_check_request(set->rules, &unknown);
    check_result(set, &none);
    if (none.verdict != ACL_VERDICT_NEED_ADDRESS)
        FUZZ_CHECK(same_decision(&none, &full));

    /* A name before resolving: what it decides must hold for any address it resolves to. */
    if (req->name != NULL) {
        by_name.dest = NULL;
        named = acl_check_request(set->rules, &by_name);
        check_result(set, &named);
        if (named.verdict != ACL_VERDICT_NEED_ADDRESS)
            FUZZ_CHECK(same_decision(&named, &full));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const unsigned commands[4] = {ACL_CMD_CONNECT, ACL_CMD_BIND, ACL_CMD_UDP,
                                         ACL_CMD_RESOLVE};
    uint8_t head[ACL_PREFIX] = {0};
    struct rule_set client_set = {0}, request_set = {0};
    struct addr client, dest, listener;
    struct acl_request req;
    struct acl_result res;
    const char *name = NULL, *user = NULL;
    char *text;
    unsigned line = 0;

    memcpy(head, data, size < ACL_PREFIX ? size : ACL_PREFIX);
    text = size > ACL_PREFIX ? fuzz_strdup(data + ACL_PREFIX, size - ACL_PREFIX)
                             : fuzz_strdup(data, 0);
    client_set.rules = acl_rules_new();
    request_set.rules = acl_rules_new();
    if (client_set.rules == NULL || request_set.rules == NULL)
        abort();

    for (char *s = text, *next; s != NULL; s = next) {
        char *argv[ACL_MAX_WORDS];
        int argc = 0;

        next = strchr(s, '\n');
        if (next != NULL)
            *next++ = '\0';
        line++;
        for (char *w = strtok(s, " \t"); w != NULL && argc < ACL_MAX_WORDS; w = strtok(NULL, " \t"))
            argv[argc++] = w;
        if (argc == 0)
            continue;
        if (strcmp(argv[0], "client") == 0)
            add_rule(&client_set, true, argc - 1, argv + 1, line);
        else if (strcmp(argv[0], "request") == 0)
            add_rule(&request_set, false, argc - 1, argv + 1, line);
        else if (strcmp(argv[0], "name") == 0 && argc > 1)
            name = argv[1];
        else if (strcmp(argv[0], "user") == 0 && argc > 1)
            user = argv[1];
    }

    make_addr(&client, head[0] & F_CLIENT_V6, head + 6, 0);
    make_addr(&dest, head[0] & F_DEST_V6, head + 22, (uint16_t)(head[2] << 8 | head[3]));
    make_addr(&listener, head[0] & F_LISTENER_V6, head + 38, (uint16_t)(head[4] << 8 | head[5]));
    (void)policy_is_special_destination(&client);
    (void)policy_is_special_destination(&dest);
    FUZZ_CHECK(policy_is_special_destination(&dest) ==
               (policy_private_prefix(NULL, NULL, &dest) >= 0));

    res = acl_check_client(client_set.rules, (head[0] & F_CLIENT_KNOWN) ? &client : NULL,
                           (head[0] & F_LISTENER_KNOWN) ? &listener : NULL);
    check_result(&client_set, &res);
    FUZZ_CHECK(res.verdict != ACL_VERDICT_NEED_ADDRESS && !res.explicit_dest);

    memset(&req, 0, sizeof(req));
    req.client = (head[0] & F_CLIENT_KNOWN) ? &client : NULL;
    req.user = (head[0] & F_USER_KNOWN) ? (user != NULL ? user : "") : NULL;
    req.command = commands[head[1] & 3];
    req.name = (head[0] & F_NAME_KNOWN) ? (name != NULL ? name : "example.com") : NULL;
    req.dest = (head[0] & F_DEST_KNOWN) ? &dest : NULL;
    req.port = (uint16_t)(head[2] << 8 | head[3]);
    check_requests(&request_set, &req);

    acl_rules_free(client_set.rules);
    acl_rules_free(request_set.rules);
    free(text);
    return 0;
}
