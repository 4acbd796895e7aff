/* One mapping from failures (errno, resolver status) to SOCKS reply codes. Pure. */
#ifndef FERRY_REPLY_H
#define FERRY_REPLY_H

#include <stdint.h>

#include "ferry/resolver.h"

/* SOCKS5 REP for a failed connect(2) or socket(2) errno; 0 maps to SUCCEEDED. */
uint8_t reply_from_errno(int err);

/* SOCKS5 REP for a failed name resolution. */
uint8_t reply_from_resolver(enum resolver_status status);

/* SOCKS4 CD for a SOCKS5 REP: 90 for success, 91 for every failure. */
uint8_t reply_socks4_from_socks5(uint8_t rep);

/* Short lower-case name of a SOCKS5 REP for logs ("connection-refused"). */
const char *reply_name(uint8_t rep);

#endif
