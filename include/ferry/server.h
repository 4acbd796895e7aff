/* A worker: its loop's listeners, resolver, auth pool and sessions. */
#ifndef FERRY_SERVER_H
#define FERRY_SERVER_H

#include <stddef.h>

struct ev_loop;
struct config;
struct userdb;
struct server;

/*
 * Bind every listener of cfg and start accepting on loop. users may be NULL when no password
 * method is configured. Returns NULL with a message in err (e.g. a listen address in use).
 */
struct server *server_new(struct ev_loop *loop, const struct config *cfg,
                          const struct userdb *users, char *err, size_t errlen);

/* Stop accepting; sessions keep running. */
void server_stop_listening(struct server *srv);

/* Sessions alive now. */
unsigned server_sessions(const struct server *srv);

/* Close listeners and sessions and free everything. */
void server_free(struct server *srv);

#endif
