/* Outbound non-blocking connect over every resolved address, Happy Eyeballs style (RFC 8305). */
#ifndef FERRY_CONNECTOR_H
#define FERRY_CONNECTOR_H

#include <stddef.h>
#include <stdint.h>

#include "ferry/addr.h"

struct ev_loop;
struct connector;

/*
 * On success fd >= 0 is the connected socket, now owned by the callee, and err is 0; on
 * failure fd is -1 and err the errno of the last attempt that failed. The connector frees
 * itself after the callback returns.
 */
typedef void (*connector_cb)(int fd, int err, const struct addr *peer, void *arg);

/*
 * Try addrs (port replaced by `port`), IPv6 and IPv4 interleaved, a new attempt every
 * attempt_delay seconds or as soon as one fails. The callback always runs from the loop, also
 * for a connect that completed at once (to a local address). Returns NULL with errno set when
 * no attempt is left standing: every address failed at once, as a refused local one does.
 */
struct connector *connector_start(struct ev_loop *loop, const struct addr *addrs, size_t n,
                                  uint16_t port, double attempt_delay, connector_cb cb, void *arg);

/* Close every attempt and free; the callback will not run. */
void connector_cancel(struct connector *c);

/* Order addresses per RFC 8305 section 4: first family first, then alternate. In place. */
void connector_interleave(struct addr *addrs, size_t n);

#endif
