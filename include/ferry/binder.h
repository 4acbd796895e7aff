/* BIND: listen for the one inbound connection a client expects (RFC 1928 section 4, SOCKS4). */
#ifndef FERRY_BINDER_H
#define FERRY_BINDER_H

#include <stddef.h>
#include <stdint.h>

#include "ferry/addr.h"

struct ev_loop;
struct binder;

/*
 * fd >= 0: the accepted peer's socket (non-blocking, now the callee's) and its address; the
 * binder frees itself after the callback. Called only on success or on a listening error
 * (fd -1, err set); the session's own timer bounds the wait.
 */
typedef void (*binder_cb)(int fd, int err, const struct addr *peer, void *arg);

/*
 * Listen on local's address with a port from [port_min, port_max] (0-0: ephemeral), backlog 1.
 * Connections from an IP not in expected[0..nexpected) are closed and counted, and waiting goes
 * on; nexpected 0 accepts any peer. *bound receives the listening address for the first reply.
 * Returns NULL with errno set.
 */
struct binder *binder_start(struct ev_loop *loop, const struct addr *local, uint16_t port_min,
                            uint16_t port_max, const struct addr *expected, size_t nexpected,
                            binder_cb cb, void *arg, struct addr *bound);

/* Connections refused so far because they came from an unexpected IP. */
unsigned binder_refused(const struct binder *b);

/* Close the listening socket and free; the callback will not run. */
void binder_cancel(struct binder *b);

#endif
