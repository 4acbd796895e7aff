/*
 * Parents and routes: which requests leave through which upstream proxies.
 *
 *   parent NAME socks5|socks4a|http HOST:PORT [credentials PATH] [user-id ID]
 *                                            [timeout DURATION] [retry DURATION]
 *   parent NAME ferry HOST:PORT server-key BASE64 key PATH
 *                    [cipher chacha20-poly1305|aes-256-gcm] [timeout ..] [retry ..]
 *       (the encrypted hop, tunnel_client.h: only as a path's first hop)
 *   route [from CIDR,...] [user NAME,...] [command connect|bind|udp|resolve,...]
 *         [to DEST,...] [port PORT|LOW-HIGH,...] via PATH[,PATH...] [resolve remote|local]
 *
 * A PATH is `direct` or parents joined by '>' in the order traffic flows (ferry > first > ...
 * > last > target); the PATHs of one route are alternatives tried in order (failover). Routes
 * are matched first-match like request rules (acl.h), after the request rules passed; a
 * request no route matches goes direct. Parsing is pure but for reading a credentials file.
 * The parent health (down until) is the one mutable part, shared by the workers (atomics).
 */
#ifndef FERRY_ROUTE_H
#define FERRY_ROUTE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ferry/acl.h"
#include "ferry/proto.h"
#include "ferry/tunnel_noise.h"

#define ROUTE_MAX_PARENTS 64
#define ROUTE_MAX_ROUTES 256
#define ROUTE_MAX_HOPS 8
#define ROUTE_MAX_PATHS 8
#define PARENT_NAME_MAX 32
/* Longest path text: 8 names and their '>'. */
#define ROUTE_PATH_TEXT_MAX (ROUTE_MAX_HOPS * (PARENT_NAME_MAX + 1))

#define PARENT_DEFAULT_TIMEOUT 5.0 /* seconds for one hop: connect or handshake */
#define PARENT_DEFAULT_RETRY 30.0  /* seconds a failed parent is left out */

enum parent_kind {
    PARENT_SOCKS5,
    PARENT_SOCKS4A,
    PARENT_HTTP,
    PARENT_FERRY, /* a ferryd's tunnel listener (doc/tunnel-protocol.md) */
};

struct parent {
    char name[PARENT_NAME_MAX + 1];
    enum parent_kind kind;
    struct socks_dest addr; /* host (name or IP) and port */
    char *user;             /* SOCKS5/HTTP: from the credentials file; SOCKS4a: the user id */
    char *pass;             /* NULL without credentials */
    double timeout;
    double retry;
    unsigned line;
    /* PARENT_FERRY: the server's static public key, ours (private, wiped on free), public */
    uint8_t server_key[32];
    uint8_t key[32];
    uint8_t key_pub[32];
    enum tunnel_suite suite; /* cipher: ChaChaPoly unless aes-256-gcm is asked for */
    /* the files read for it (NULL: none): a reload reads them again, as the user ferryd runs
     * as */
    char *credentials_file;
    char *key_file;
};

/* One alternative: direct (nhops 0) or a chain of parents (indexes into routes->parents). */
struct route_path {
    unsigned nhops;
    unsigned hops[ROUTE_MAX_HOPS];
    char text[ROUTE_PATH_TEXT_MAX + 1]; /* "direct", "eu>tor" */
};

struct route {
    struct route_path paths[ROUTE_MAX_PATHS];
    unsigned npaths;
    bool resolve_local; /* resolve names here and pass addresses on (default: pass names) */
    bool has_direct;    /* one of the paths is direct */
    unsigned line;
};

/* Per parent, shared by every worker: until when (monotonic ms) it is left out. */
struct parent_health {
    _Atomic int64_t down_until_ms;
};

struct routes {
    struct parent parents[ROUTE_MAX_PARENTS];
    size_t nparents;
    struct route *routes; /* nroutes of them, in file order */
    size_t nroutes;
    struct acl_rules *match;          /* one pass rule per route, numbered alike */
    struct acl_rules *match_anywhere; /* the routes without 'to' or 'port': for requests with
                                       * no destination (UDP ASSOCIATE) */
    unsigned *anywhere_no;            /* their route numbers, by rule number - 1 */
    size_t nanywhere;
    struct parent_health *health; /* nparents entries (allocated with the set) */
};

struct routes *routes_new(void);
void routes_free(struct routes *r);

/*
 * The words after "parent" / "route". dir: where a relative credentials path points (NULL: as
 * written). Returns 0, or -1 with a message (without file and line) in err.
 */
int routes_add_parent(struct routes *r, int argc, char **argv, unsigned line, const char *dir,
                      char *err, size_t errlen);
int routes_add_route(struct routes *r, int argc, char **argv, unsigned line, char *err,
                     size_t errlen);

/*
 * After the last line: resolve the parent names of every path (a parent may be declared after
 * the routes using it) and allocate the health table. Returns 0, or -1 with the message in err
 * and the offending line in *line.
 */
int routes_finish(struct routes *r, unsigned *line, char *err, size_t errlen);

/*
 * The route for a request (acl.h's matching): 1-based number, 0 when none matches (direct),
 * or -1 when a route needs the destination's address to decide (resolve, then ask again). A
 * request without a destination (name and dest NULL: UDP ASSOCIATE) skips the routes with
 * 'to' or 'port' conditions.
 */
int routes_match(const struct routes *r, const struct acl_request *req);

/* The route numbered n (1-based). */
const struct route *routes_get(const struct routes *r, unsigned n);

/* Whether parent i is marked down at now_ms; mark it down from now_ms; mark it up. The
 * marking functions return true when the state changed (for a log line). */
bool routes_parent_down(const struct routes *r, unsigned i, int64_t now_ms);
bool routes_mark_down(const struct routes *r, unsigned i, int64_t now_ms);
bool routes_mark_up(const struct routes *r, unsigned i);

/*
 * A reload: each parent of to that from has too (same name, kind, address, credentials and
 * keys) stays down as long as it was, at most its new retry from now_ms. Returns how many
 * parents were carried over down.
 */
unsigned routes_carry_health(const struct routes *to, const struct routes *from, int64_t now_ms);

/* Read "USER:PASSWORD" (one line) from path; refuses a file group or others may read or
 * write. Returns 0, or -1 with a message naming the file in err. */
int routes_read_credentials(const char *path, char **user, char **pass, char *err, size_t errlen);

/* A parent kind's name in logs: "socks5", "socks4a", "http". */
const char *parent_kind_name(enum parent_kind k);

#endif
