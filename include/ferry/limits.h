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
#include <sys/types.h>

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
 * A reference on the entry of a client IP (port ignored; IPv4-mapped IPv6 counts as IPv4; an
 * IPv6 address counts as its prefix, see below) or of a user name, created when missing. NULL
 * only when out of memory.
 */
struct limit *limits_client(struct limits *l, const struct addr *ip);
struct limit *limits_user(struct limits *l, const char *user);
/*
 * The prefix length (1 to 128, default 64) IPv6 clients are keyed on: one host usually holds a
 * whole /64, so counting each address on its own would let it multiply its limits. Entries
 * looked up from now on use it; running sessions keep theirs.
 */
void limits_set_client_prefix6(struct limits *l, unsigned bits);
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
 * Failed logins. limits_auth_allowed says whether e may try a password now (its failure bucket
 * holds a token) without taking one: enough to join a check already in flight or to be
 * answered from the auth cache. A check of its own goes through limits_auth_begin.
 */
bool limits_auth_allowed(struct limits *l, struct limit *e, const struct limit_rate *r, double now);

/* What limits_auth_begin checks: the failure rate and the checks in flight (0: no cap). */
struct limit_auth_caps {
    struct limit_rate rate; /* limit auth-failures, per client IP */
    unsigned per_client;    /* checks in flight per client IP */
    unsigned per_user;      /* checks in flight per user name (known or not) */
};

enum limit_auth {
    LIMIT_AUTH_OK,    /* go on; the ticket holds the reservation */
    LIMIT_AUTH_RATE,  /* the client's failure bucket is empty: refuse unchecked */
    LIMIT_AUTH_BUSY,  /* the client or the user has its cap of checks in flight: wait */
    LIMIT_AUTH_NOMEM, /* out of memory */
};

/* One password check's reservation: references on its client's and its user's entries. */
struct limit_auth_ticket {
    struct limits *limits;
    struct limit *client;
    struct limit *user;
    struct limit_rate rate;
};

/*
 * Start a password check of client e for user (user_len bytes, any bytes): takes a token from
 * e's failure bucket now, so parallel checks cannot all spend the last one, and counts the
 * check in flight for e and for the user. LIMIT_AUTH_OK fills *t; give it back with
 * limits_auth_end, refund true when the password matched (the token comes back) and false when
 * it did not (the debt stays).
 */
enum limit_auth limits_auth_begin(struct limits *l, struct limit *e, const char *user,
                                  size_t user_len, const struct limit_auth_caps *caps, double now,
                                  struct limit_auth_ticket *t);
void limits_auth_end(struct limit_auth_ticket *t, bool refund, double now);

/*
 * A login of e refused unchecked, for a summary instead of a line each: returns 0 when no line
 * is due, else how many refusals (this one included) the line should report: the first
 * (*first set), then the ones since the last line once `interval` seconds have passed.
 */
unsigned limits_auth_refused(struct limits *l, struct limit *e, double now, double interval,
                             bool *first);

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
/* Sessions still negotiating in the process now (see max-negotiating below). */
unsigned limits_negotiating(struct limits *l);

/*
 * --- one session's hold ----------------------------------------------------------------------
 * Everything a session counts against the table, taken step by step as the session learns who
 * it serves, and given back by one limits_hold_release: the process's and the client IP's
 * session counts, the user's, the deciding rule's, and UDP association slots. Its throttle
 * applies every bandwidth limit and the quota under one lock round trip per read.
 * The members are limits.c's: use the functions.
 */

/* Which limit refuses a session's request (the first one found). */
enum limit_refusal {
    LIMIT_OK,
    LIMIT_TOTAL,  /* max-sessions */
    LIMIT_CLIENT, /* sessions-per-client */
    LIMIT_USER,   /* sessions-per-user */
    LIMIT_QUOTA,  /* quota-per-user used up */
    LIMIT_RULE,   /* the passing rule's own session limit */
    /* Only as the reason limits_hold_begin refused a new session: */
    LIMIT_NEGOTIATING,        /* max-negotiating: full, or dropped at random on the way */
    LIMIT_NEGOTIATING_CLIENT, /* negotiating-per-client */
};

/*
 * Sessions still negotiating (accepted, no request handed on yet), as OpenSSH's MaxStartups
 * START:RATE:FULL: below start, all are let in; from start on, a new one is dropped with
 * probability rate percent, rising linearly to 100 % at full. start 0: no limit.
 */
struct limit_startups {
    unsigned start;
    unsigned rate;
    unsigned full;
};

/* What a hold counts against, from the configuration; the rates must outlive the hold. */
struct limit_hold_caps {
    unsigned max_total;    /* sessions in the process beyond which requests are refused */
    unsigned total_margin; /* ... and how many more are let in to be told so */
    unsigned per_client;   /* likewise per client IP (0: no limit) */
    unsigned client_margin;
    const struct limit_rate *client_rate; /* bandwidth per client IP (rate 0: none) */
    const struct limit_rate *user_rate;   /* bandwidth per user */
    uint64_t quota;                       /* bytes per user and period (0: none) */
    double quota_period;
    const struct limit_startups *negotiating; /* the process's budget (NULL: none) */
    unsigned negotiating_per_client;          /* likewise per client (0: no limit) */
    double draw;                              /* uniform in [0, 1): the random early drop's dice */
};

struct limit_hold {
    struct limits *limits;
    struct limit *client; /* references, each with one session counted (rule: when counted) */
    struct limit *user;
    struct limit *rule;
    const struct limit_rate *client_rate;
    const struct limit_rate *user_rate;
    struct limit_rate rule_rate;
    uint64_t quota;
    double quota_period;
    enum limit_refusal refused;
    bool rule_counted;
    bool udp_counted;
    bool negotiating; /* counted as negotiating, in the process and for the client */
};

/*
 * Begin a session's hold with a reference on its client IP's entry (taken over either way).
 * Counts the session in the process and for the client, and as negotiating; past max_total or
 * per_client the hold's refusal is set (the request gets a failure reply). Past the margins,
 * or when the negotiating budget refuses it, false is returned with the reason in h->refused
 * and nothing is held: close the client at once.
 */
bool limits_hold_begin(struct limit_hold *h, struct limits *l, struct limit *client,
                       const struct limit_hold_caps *caps);

/* The request is handed on: the session no longer counts as negotiating. Idempotent. */
void limits_hold_negotiated(struct limit_hold *h);

/* Count the session for its user, past per_user (0: none) a refusal. -1: out of memory. */
int limits_hold_user(struct limit_hold *h, const char *user, unsigned per_user);

/* The refusal so far; with a user and no refusal yet, a used-up quota is one. */
enum limit_refusal limits_hold_check(struct limit_hold *h, double now);

/*
 * The passing rule's limits, once per session: its session count (max_sessions, 0 for none)
 * and its bandwidth in bytes per second (0 for none). Returns 0; 1 when its session limit is
 * reached (refusal LIMIT_RULE); -1 when out of memory.
 */
int limits_hold_rule(struct limit_hold *h, unsigned generation, unsigned rule,
                     unsigned max_sessions, uint64_t bandwidth);

/* One of the process's (max_total) and the client's (max_per_client) UDP slots. */
bool limits_hold_udp(struct limit_hold *h, unsigned max_total, unsigned max_per_client);

/* Logins of the hold's client IP: see limits_auth_allowed, _begin and _refused. */
bool limits_hold_auth_allowed(struct limit_hold *h, const struct limit_rate *r, double now);
enum limit_auth limits_hold_auth_begin(struct limit_hold *h, const char *user, size_t user_len,
                                       const struct limit_auth_caps *caps, double now,
                                       struct limit_auth_ticket *t);
unsigned limits_hold_auth_refused(struct limit_hold *h, double now, double interval, bool *first);

/* Whether a relay of this session needs the throttle below at all. */
bool limits_hold_throttled(const struct limit_hold *h);

/*
 * Bytes the session may read in dir now, at most want: the smallest allowance of the client's,
 * the user's and the rule's buckets and the user's quota. 0 when a bucket holds less than min
 * (*wait says how long until it does); -1 with errno EDQUOT when the quota is used up.
 */
ssize_t limits_hold_allow(struct limit_hold *h, enum limit_dir dir, size_t want, size_t min,
                          double now, double *wait);
/* Count n bytes read in dir against every bucket and the quota. */
void limits_hold_used(struct limit_hold *h, enum limit_dir dir, size_t n, double now);

/* Give back everything the hold counts and references. */
void limits_hold_release(struct limit_hold *h);

#endif
