/* Socket helpers shared by the UDP and BIND modules. */
#ifndef FERRY_NET_H
#define FERRY_NET_H

#include <stdbool.h>
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

/* Options for the two sockets of a relayed TCP connection; zero fields leave the kernel's. */
struct net_stream_opts {
    unsigned rcvbuf;         /* SO_RCVBUF in bytes (the kernel doubles it and stops autotuning) */
    unsigned sndbuf;         /* SO_SNDBUF likewise */
    bool keepalive;          /* SO_KEEPALIVE */
    unsigned keepalive_idle; /* TCP_KEEPIDLE seconds */
    unsigned keepalive_interval; /* TCP_KEEPINTVL seconds */
    unsigned keepalive_count;    /* TCP_KEEPCNT probes */
};

/* Apply o to the TCP socket fd. Returns 0, or -1 with errno from the first option refused. */
int net_stream_tune(int fd, const struct net_stream_opts *o);

#endif
