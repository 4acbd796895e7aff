/* A worker's server: its listening sockets, resolver, auth pool and sessions, on one loop. */
#ifndef FERRY_SERVER_H
#define FERRY_SERVER_H

#include <stddef.h>

struct ev_loop;
struct auth_cache;
struct limits;
struct listener_set;
struct localaddrs;
struct server;
struct session_counters;
struct snapshot;

/*
 * Start serving worker w's sockets of ls (taken over) on loop, under snap (a reference is
 * taken), the process's limits and its auth cache, adding to counters (all of which must
 * outlive the server). Returns NULL with a message in err.
 */
struct server *server_new(struct ev_loop *loop, struct snapshot *snap, struct limits *limits,
                          struct auth_cache *auth_cache, struct session_counters *counters,
                          struct listener_set *ls, unsigned w, char *err, size_t errlen);

/* New sessions start under snap from now on; running ones keep their own. */
void server_reload(struct server *srv, struct snapshot *snap);

/* Every check from now on sees local as the host's own addresses (a reference is taken). */
void server_set_local(struct server *srv, struct localaddrs *local);

/* Stop accepting and close the listening sockets; sessions keep running. */
void server_stop_listening(struct server *srv);

/* Sessions alive now. */
unsigned server_sessions(const struct server *srv);

/* Close listeners and sessions and free everything. */
void server_free(struct server *srv);

#endif
