/*
 * Access decisions: rules first, then the private-destination block and its table of
 * special-purpose destinations (see policy.h).
 */
#include "config.h"

#include "ferry/policy.h"

#include "ferry/conf.h"
#include "ferry/localaddr.h"

struct special_range {
    uint8_t net[16];
    unsigned prefix;
};

/* RFC 6890 and its updates: what a proxy open to others must not reach by default. */
static const struct special_range special_ipv4[] = {
    {{0, 0, 0, 0}, 8},      /* "this network" (RFC 791), incl. 0.0.0.0 */
    {{10, 0, 0, 0}, 8},     /* private (RFC 1918) */
    {{100, 64, 0, 0}, 10},  /* shared address space, CGNAT (RFC 6598) */
    {{127, 0, 0, 0}, 8},    /* loopback */
    {{169, 254, 0, 0}, 16}, /* link-local (RFC 3927), incl. cloud metadata 169.254.169.254 */
    {{172, 16, 0, 0}, 12},  /* private (RFC 1918) */
    {{192, 0, 0, 0}, 24},   /* IETF protocol assignments (RFC 6890) */
    {{192, 168, 0, 0}, 16}, /* private (RFC 1918) */
    {{198, 18, 0, 0}, 15},  /* benchmarking (RFC 2544) */
    {{224, 0, 0, 0}, 4},    /* multicast */
    {{240, 0, 0, 0}, 4},    /* reserved, incl. limited broadcast 255.255.255.255 */
};

static const struct special_range special_ipv6[] = {
    {{0}, 128},         /* unspecified :: */
    {{[15] = 1}, 128},  /* loopback ::1 */
    {{0xfe, 0x80}, 10}, /* link-local */
    {{0xfe, 0xc0}, 10}, /* site-local, deprecated (RFC 3879) */
    {{0xfc}, 7},        /* unique local (RFC 4193) */
    {{0xff}, 8},        /* multicast */
};

/* IPv6 ranges that carry an IPv4 address, and the byte offset of those 4 bytes. */
static const struct {
    struct special_range range;
    size_t offset;
} embedding_ipv6[] = {
    {{{[10] = 0xff, [11] = 0xff}, 96}, 12},           /* IPv4-mapped ::ffff:0:0/96 */
    {{{0}, 96}, 12},                                  /* IPv4-compatible ::/96 (RFC 4291) */
    {{{0x00, 0x64, 0xff, 0x9b}, 96}, 12},             /* NAT64 well-known (RFC 6052) */
    {{{0x00, 0x64, 0xff, 0x9b, 0x00, 0x01}, 48}, 12}, /* NAT64 local use (RFC 8215) */
    {{{0x20, 0x02}, 16}, 2},                          /* 6to4 (RFC 3056) */
};

/* The shortest prefix of the special IPv4 ranges holding ip, or -1. */
static int special_ipv4_prefix(const uint8_t ip[4])
{
    int best = -1;

    for (size_t i = 0; i < sizeof(special_ipv4) / sizeof(special_ipv4[0]); i++) {
        if (addr_prefix_equal(special_ipv4[i].net, ip, special_ipv4[i].prefix) &&
            (best < 0 || special_ipv4[i].prefix < (unsigned)best))
            best = (int)special_ipv4[i].prefix;
    }
    return best;
}

/*
 * The shortest prefix of a special range holding a (counted in IPv4 bits for IPv4 and
 * IPv4-mapped addresses), or -1 when a is not special. An embedded form is one range only
 * where the IPv4 bytes follow the embedding prefix directly; else only the address itself.
 */
static int special_prefix(const struct addr *a)
{
    const uint8_t *ip4 = addr_ipv4_bytes(a), *ip;
    int best = -1;

    if (ip4 != NULL)
        return special_ipv4_prefix(ip4);
    if (addr_family(a) != AF_INET6)
        return 0;
    ip = a->u.in6.sin6_addr.s6_addr;
    for (size_t i = 0; i < sizeof(special_ipv6) / sizeof(special_ipv6[0]); i++) {
        if (addr_prefix_equal(special_ipv6[i].net, ip, special_ipv6[i].prefix) &&
            (best < 0 || special_ipv6[i].prefix < (unsigned)best))
            best = (int)special_ipv6[i].prefix;
    }
    for (size_t i = 0; i < sizeof(embedding_ipv6) / sizeof(embedding_ipv6[0]); i++) {
        unsigned at = (unsigned)embedding_ipv6[i].offset * 8;
        int p4;

        if (!addr_prefix_equal(embedding_ipv6[i].range.net, ip, embedding_ipv6[i].range.prefix))
            continue;
        p4 = special_ipv4_prefix(ip + embedding_ipv6[i].offset);
        if (p4 < 0)
            continue;
        p4 = embedding_ipv6[i].range.prefix == at ? (int)at + p4 : 128;
        if (best < 0 || p4 < best)
            best = p4;
    }
    return best;
}

/* An address of any other family than IPv4 and IPv6 is special too: nothing to reach there. */
bool policy_is_special_destination(const struct addr *a)
{
    return a == NULL || special_prefix(a) >= 0;
}

/* One of the configuration's own addresses (listen, advertise, udp address): this host. */
static bool config_own_address(const struct config *cfg, const struct addr *a)
{
    for (size_t i = 0; i < cfg->nlisten; i++) {
        if ((!addr_is_unspecified(&cfg->listen[i]) && addr_same_ip(&cfg->listen[i], a)) ||
            (cfg->listen_advertise[i].len > 0 && addr_same_ip(&cfg->listen_advertise[i], a)))
            return true;
    }
    return cfg->udp_address.len > 0 && !addr_is_unspecified(&cfg->udp_address) &&
           addr_same_ip(&cfg->udp_address, a);
}

int policy_private_prefix(const struct config *cfg, const struct localaddrs *local,
                          const struct addr *a)
{
    int best = special_prefix(a), p;
    int full = addr_ipv4_bytes(a) != NULL ? 32 : 128;

    p = localaddrs_match(local, a);
    if (p >= 0 && (best < 0 || p < best))
        best = p;
    if (best < 0 && cfg != NULL && config_own_address(cfg, a))
        best = full;
    return best;
}

/* The prefix of range c in the bits policy_private_prefix counts for an address it holds. */
static int range_prefix_for(const struct addr_cidr *c, const struct addr *a)
{
    if (addr_ipv4_bytes(a) != NULL && addr_family(&c->net) == AF_INET6)
        return c->prefix >= 96 ? (int)c->prefix - 96 : 0;
    return (int)c->prefix;
}

bool policy_range_opens(const struct addr_cidr *range, const struct config *cfg,
                        const struct localaddrs *local, const struct addr *a)
{
    int p = policy_private_prefix(cfg, local, a);

    return p < 0 ||
           (range != NULL && addr_cidr_contains(range, a) && range_prefix_for(range, a) >= p);
}

static struct policy_decision from_acl(const struct acl_result *r)
{
    struct policy_decision d = {
        .verdict = r->verdict,
        .rule = r->rule,
        .line = r->line,
        .log = r->log,
        .max_sessions = r->max_sessions,
        .bandwidth = r->bandwidth,
    };
    return d;
}

struct policy_decision policy_check_client(const struct config *cfg, const struct addr *client,
                                           const struct addr *listener)
{
    struct acl_result r = acl_check_client(cfg->client_rules, client, listener);

    return from_acl(&r);
}

bool policy_client_trusted(const struct config *cfg, const struct addr *client)
{
    for (size_t i = 0; i < cfg->ntrusted_clients; i++) {
        if (addr_cidr_contains(&cfg->trusted_clients[i], client))
            return true;
    }
    return false;
}

/*
 * BIND's expected peer 0.0.0.0 or :: means "any peer": nothing is reached there. Every other
 * destination address, of any command, is judged: CONNECT and UDP send to it, BIND waits for
 * it (and listens on the address that routes to it), RESOLVE and RESOLVE_PTR reveal it.
 */
static bool names_no_destination(const struct acl_request *req)
{
    return req->command == ACL_CMD_BIND && addr_is_unspecified(req->dest);
}

struct policy_decision policy_check_request(const struct config *cfg,
                                            const struct localaddrs *local,
                                            const struct acl_request *req)
{
    struct acl_result r = acl_check_request(cfg->request_rules, req);
    struct policy_decision d = from_acl(&r);

    if (d.verdict != ACL_VERDICT_PASS || req->dest == NULL || names_no_destination(req))
        return d;
    if (cfg->private_destinations || r.private_ok || policy_client_trusted(cfg, req->client))
        return d;
    if (policy_range_opens(r.explicit_dest ? r.dest_range : NULL, cfg, local, req->dest))
        return d;
    d.verdict = ACL_VERDICT_BLOCK;
    d.private_dest = true;
    d.log = false;
    return d;
}

/* True when range holds all of the special range net/prefix and more. */
static bool holds_wider(const struct addr_cidr *range, const uint8_t *net, unsigned prefix,
                        bool ipv4)
{
    struct addr a;

    if (ipv4)
        addr_from_ipv4(&a, net, 0);
    else
        addr_from_ipv6(&a, net, 0);
    /* The IPv4-mapped embedding is judged by the IPv4 ranges themselves. */
    if (!ipv4 && addr_ipv4_bytes(&a) != NULL)
        return false;
    return addr_cidr_contains(range, &a) && range_prefix_for(range, &a) < (int)prefix;
}

bool policy_range_holds_private(const struct addr_cidr *range)
{
    int inside = special_prefix(&range->net);

    /* A range inside a private range ("to ::/105", in the IPv4-compatible 0.0.0.0/8) opens
     * all it holds. */
    if (inside >= 0 && range_prefix_for(range, &range->net) >= inside)
        return false;
    for (size_t i = 0; i < sizeof(special_ipv4) / sizeof(special_ipv4[0]); i++) {
        if (holds_wider(range, special_ipv4[i].net, special_ipv4[i].prefix, true))
            return true;
    }
    for (size_t i = 0; i < sizeof(special_ipv6) / sizeof(special_ipv6[0]); i++) {
        if (holds_wider(range, special_ipv6[i].net, special_ipv6[i].prefix, false))
            return true;
    }
    for (size_t i = 0; i < sizeof(embedding_ipv6) / sizeof(embedding_ipv6[0]); i++) {
        if (holds_wider(range, embedding_ipv6[i].range.net, embedding_ipv6[i].range.prefix, false))
            return true;
    }
    return false;
}

unsigned policy_wide_pass_line(const struct config *cfg)
{
    return acl_find_pass_range(cfg->request_rules, policy_range_holds_private);
}
