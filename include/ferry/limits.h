/*
 * Limits that span sessions and workers: sessions per client IP, per user and in total, UDP
 * associations, accept rate and failed logins per client IP (token buckets), bandwidth per
 * client IP and per user (token buckets, each direction on its own) and byte quotas per user.
 *
 * One table for the whole process, behind one mutex: sessions touch it when they start, end,
 * authenticate, and, only when a bandwidth limit or quota applies to them, per relay read.
 * Entries are reference-counted by the sessions using them and kept afterwards only while they
 * remember something (a bucket not yet full, a quota period with bytes used), up to a bound.
 * Time is passed in (seconds on any monotonic clock), so the module can be tested without one.
 */
#ifndef FERRY_LIMITS_H
#define FERRY_LIMITS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct addr;
struct limits;
struct limit; /* the counters of one client IP or one user */

/* Directions of a relay, for the bandwidth buckets. */
enum limit_dir {
    LIMIT_UP,   /* client -> target */
    LIMIT_DOWN, /* target -> client */
};

/* A rate: `rate` per second, with room for `burst` at once. rate 0 means no limit. */
struct limit_rate {
    double rate;
    double burst;
};

/* max_idle: how many entries without sessions may be remembered (oldest dropped first). */
struct limits *limits_new(size_t max_idle);
void limits_free(struct limits *l);

/* The current time for the functions below: CLOCK_MONOTONIC in seconds. */
double limits_clock(void);

/*
 * A reference on the entry of a client IP (port ignored; IPv4-mapped IPv6 counts as IPv4) or
 * of a user name, created when missing. NULL only when out of memory.
 */
struct limit *limits_client(struct limits *l, const struct addr *ip);
struct limit *limits_user(struct limits *l, const char *user);
/* Drop a reference. NULL is ignored. */
void limits_release(struct limits *l, struct limit *e);
/* The entry of request rule `rule` of configuration `generation` (its sessions/bandwidth). */
struct limit *limits_rule(struct limits *l, unsigned generation, unsigned rule);

/*
 * Count one more session (or UDP association) of e if it has fewer than max (0: no limit).
 * Returns false, counting nothing, at the limit. Each successful enter needs one leave.
 */
bool limits_session_enter(struct limits *l, struct limit *e, unsigned max);
void limits_session_leave(struct limits *l, struct limit *e);
bool limits_udp_enter(struct limits *l, struct limit *e, unsigned max);
void limits_udp_leave(struct limits *l, struct limit *e);
unsigned limits_sessions_of(struct limits *l, const struct limit *e);

/* Process-wide counts against max-sessions and udp max-total, same rules. */
bool limits_total_enter(struct limits *l, unsigned max);
void limits_total_leave(struct limits *l);
bool limits_udp_total_enter(struct limits *l, unsigned max);
void limits_udp_total_leave(struct limits *l);
unsigned limits_total(struct limits *l);

/* Accept rate: take one token from e's accept bucket. false: over the rate, refuse. */
bool limits_accept(struct limits *l, struct limit *e, const struct limit_rate *r, double now);

/*
 * Failed logins: limits_auth_allowed says whether e may try a password now (its failure
 * bucket holds a token); limits_auth_failed takes one.
 */
bool limits_auth_allowed(struct limits *l, struct limit *e, const struct limit_rate *r, double now);
void limits_auth_failed(struct limits *l, struct limit *e, const struct limit_rate *r, double now);

/*
 * Bandwidth: bytes e may move in dir now, at most want. 0 when the bucket holds less than
 * `min` bytes: then *wait is how long until it does. Move at most what was allowed, then
 * report it with limits_bandwidth_used.
 */
size_t limits_bandwidth_allow(struct limits *l, struct limit *e, enum limit_dir dir,
                              const struct limit_rate *r, size_t want, size_t min, double now,
                              double *wait);
void limits_bandwidth_used(struct limits *l, struct limit *e, enum limit_dir dir,
                           const struct limit_rate *r, size_t n, double now);

/*
 * Quota: bytes left of `quota` in the current period (periods start when the entry first
 * counts bytes, and follow each other), 0 when used up. limits_quota_used counts n bytes.
 */
uint64_t limits_quota_left(struct limits *l, struct limit *e, uint64_t quota, double period,
                           double now);
void limits_quota_used(struct limits *l, struct limit *e, uint64_t quota, double period, uint64_t n,
                       double now);

/* Entries in the table now (with or without sessions), for tests and logs. */
size_t limits_entries(struct limits *l);

#endif
