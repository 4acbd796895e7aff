/*
 * A fake DNS server for unit tests: one UDP socket on 127.0.0.1, driven by the test's libev
 * loop, answering A, AAAA and PTR queries (RFC 1035 section 4.1) from a table the test gives.
 * Names not in the table get NXDOMAIN; a name marked `drop` is never answered, for timeouts.
 */
#ifndef FERRY_TEST_FAKEDNS_H
#define FERRY_TEST_FAKEDNS_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define FAKEDNS_MAX_ADDRS 12

#define FAKEDNS_NOERROR 0
#define FAKEDNS_SERVFAIL 2
#define FAKEDNS_NXDOMAIN 3

/* One name of the table. The server copies the table and counts queries in its copy. */
struct fakedns_name {
    const char *name;
    int rcode; /* FAKEDNS_NOERROR when 0 */
    bool drop; /* never answer */
    uint32_t ttl;
    const char *a[FAKEDNS_MAX_ADDRS];    /* IPv4 addresses as text, NULL-terminated */
    const char *aaaa[FAKEDNS_MAX_ADDRS]; /* IPv6 addresses as text, NULL-terminated */
    const char *cname; /* answer with a CNAME (TTL ttl) to this name of the table */
    const char *ptr;   /* answer PTR queries with this name */
    bool a_last;       /* hold the A answer until the AAAA one is out (IPv6 answered first) */

    /* Counted by the server: queries for this name, of each type and in all. */
    unsigned queries_a, queries_aaaa, queries_ptr, queries;
};

struct fakedns {
    struct ev_loop *loop;
    int fd;
    uint16_t port;
    char servers[32]; /* "127.0.0.1:PORT", for resolver options or a config line */
    ev_io io;
    unsigned queries; /* every datagram received */
    struct fakedns_name *zone;
    size_t nzone;

    /* An A query held back for an a_last name, and whether its AAAA answer is out. */
    uint8_t held[512];
    size_t held_len;
    struct sockaddr_storage held_peer;
    socklen_t held_peerlen;
    bool aaaa_sent;
};

/*
 * Copy the n names of zone and start answering on 127.0.0.1 (ephemeral port) from loop.
 * Returns 0, or -1 with errno set (EINVAL for an address in the table that does not parse).
 */
int fakedns_start(struct fakedns *d, struct ev_loop *loop, const struct fakedns_name *zone,
                  size_t n);

/* Stop answering and free the table. */
void fakedns_stop(struct fakedns *d);

/* The server's entry for name (case-insensitive), with its counters, or NULL. */
struct fakedns_name *fakedns_find(struct fakedns *d, const char *name);

#endif
