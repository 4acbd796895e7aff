/*
 * Access decisions: rules first, then the private-destination block and its table of
 * special-purpose destinations (see policy.h).
 */
#include "config.h"

#include "ferry/policy.h"

#include "ferry/conf.h"

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

static bool special_ipv4_bytes(const uint8_t ip[4])
{
    for (size_t i = 0; i < sizeof(special_ipv4) / sizeof(special_ipv4[0]); i++) {
        if (addr_prefix_equal(special_ipv4[i].net, ip, special_ipv4[i].prefix))
            return true;
    }
    return false;
}

/* An address of any other family than IPv4 and IPv6 is special too: nothing to reach there. */
bool policy_is_special_destination(const struct addr *a)
{
    const uint8_t *ip;

    if (a == NULL)
        return true;
    if (addr_family(a) == AF_INET)
        return special_ipv4_bytes((const uint8_t *)&a->u.in4.sin_addr);
    if (addr_family(a) != AF_INET6)
        return true;
    ip = a->u.in6.sin6_addr.s6_addr;
    for (size_t i = 0; i < sizeof(special_ipv6) / sizeof(special_ipv6[0]); i++) {
        if (addr_prefix_equal(special_ipv6[i].net, ip, special_ipv6[i].prefix))
            return true;
    }
    for (size_t i = 0; i < sizeof(embedding_ipv6) / sizeof(embedding_ipv6[0]); i++) {
        if (addr_prefix_equal(embedding_ipv6[i].range.net, ip, embedding_ipv6[i].range.prefix) &&
            special_ipv4_bytes(ip + embedding_ipv6[i].offset))
            return true;
    }
    return false;
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

/* Commands whose destination ferryd sends traffic to; BIND and RESOLVE only name one. */
static bool sends_to_destination(unsigned command)
{
    return command == ACL_CMD_CONNECT || command == ACL_CMD_UDP;
}

struct policy_decision policy_check_request(const struct config *cfg, const struct acl_request *req)
{
    struct acl_result r = acl_check_request(cfg->request_rules, req);
    struct policy_decision d = from_acl(&r);

    if (d.verdict != ACL_VERDICT_PASS || req->dest == NULL || !sends_to_destination(req->command))
        return d;
    if (cfg->private_destinations || r.explicit_dest || !policy_is_special_destination(req->dest) ||
        policy_client_trusted(cfg, req->client))
        return d;
    d.verdict = ACL_VERDICT_BLOCK;
    d.private_dest = true;
    d.log = false;
    return d;
}
