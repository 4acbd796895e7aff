/*
 * The listening sockets: one per listen address and worker. With several workers each has its
 * own socket per address, bound with SO_REUSEPORT to the same port, so the kernel spreads new
 * connections over the workers and nothing is shared on the accept path.
 */
#ifndef FERRY_LISTENER_H
#define FERRY_LISTENER_H

#include <stddef.h>

#include "ferry/addr.h"
#include "ferry/conf.h"

/* A name from LISTEN_FDNAMES, cut to this. */
#define LISTENER_NAME_MAX 64
/* Sockets that may be passed: a listen address for each worker, for every address. */
#define LISTENER_INHERIT_MAX 4096

struct listener_set {
    unsigned nworkers;
    size_t naddrs;                          /* addresses opened */
    struct addr addrs[CONF_MAX_LISTEN];     /* as bound: a port 0 became the real one */
    struct addr advertise[CONF_MAX_LISTEN]; /* from the listen line; len 0 if none */
    uint8_t protocols[CONF_MAX_LISTEN]; /* listen ... protocols (frontend.h's bits) */
    bool tunnel[CONF_MAX_LISTEN];           /* listen ... tunnel (an inherited socket: from the
                                             * listen line of its address, if any) */
    int *fds;                               /* fds[worker * naddrs + i]; -1 once taken */
};

/*
 * Open every listen address of cfg for nworkers workers. A built-in default address that
 * cannot be bound only warns (a host without IPv6); any other failure returns -1 with
 * "listen ADDRESS: strerror" in err and nothing left open.
 */
int listener_set_open(struct listener_set *ls, const struct config *cfg, unsigned nworkers,
                      char *err, size_t errlen);

/*
 * Socket activation (sd_listen_fds(3)), and the sockets an upgrade hands on: when LISTEN_PID
 * is this process, take the LISTEN_FDS sockets from fd 3 on, each checked to be a listening
 * TCP socket, instead of binding. Sockets of the same address are shared out one per worker
 * (a previous ferryd's SO_REUSEPORT group); with fewer, workers share them (dups), and sockets
 * beyond the workers are closed. names receives LISTEN_FDNAMES's name of each address, or "".
 * The variables are removed from the environment in any case. Returns the count of sockets
 * passed (0: none), or -1 with the problem in err, nothing kept.
 */
int listener_set_inherit(struct listener_set *ls, unsigned nworkers,
                         char names[][LISTENER_NAME_MAX], char *err, size_t errlen);

/*
 * How many sockets LISTEN_PID and LISTEN_FDS (either may be NULL) pass to process pid: 0 when
 * none or not to pid, -1 when malformed or more than max.
 */
int listener_activation_count(const char *listen_pid, const char *listen_fds, long pid, int max);

/* Take worker w's socket for address i: the caller owns it from now on. */
int listener_set_take(struct listener_set *ls, unsigned w, size_t i);

/* Close the sockets nobody took and free the set. */
void listener_set_close(struct listener_set *ls);

#endif
