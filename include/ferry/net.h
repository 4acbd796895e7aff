/* Socket helpers shared by the UDP and BIND modules. */
#ifndef FERRY_NET_H
#define FERRY_NET_H

#include <stdint.h>

#include "ferry/addr.h"

/*
 * Bind fd to a's address with a port from [min, max], starting at a random port of the range
 * and trying each once; min == max == 0 means an ephemeral port. On success a holds the bound
 * address (from getsockname) and 0 is returned; -1 with errno (EADDRINUSE when the range is
 * exhausted) otherwise.
 */
int net_bind_in_range(int fd, struct addr *a, uint16_t min, uint16_t max);

/*
 * The local address the kernel would use to reach `to` (a connected UDP socket, no packet
 * sent). Returns 0 with *local filled (port 0), or -1 with errno (ENETUNREACH...).
 */
int net_route_source(const struct addr *to, struct addr *local);

#endif
