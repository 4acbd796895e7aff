/* What the SOCKS4 and SOCKS5 wire modules share: parse status and the requested destination. */
#ifndef FERRY_PROTO_H
#define FERRY_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "ferry/addr.h"

/*
 * Answer of every incremental parser: PROTO_OK (a whole message was read, *consumed says how
 * many bytes), PROTO_NEED_MORE (the buffer holds a valid prefix), PROTO_ERROR (the bytes can
 * never become a valid message; the parser says which reply to send where the protocol has one).
 */
enum proto_status {
    PROTO_OK = 0,
    PROTO_NEED_MORE = 1,
    PROTO_ERROR = 2,
};

enum dest_type {
    DEST_IPV4,
    DEST_IPV6,
    DEST_NAME,
};

/* Longest host name on the wire: SOCKS5 length byte, and our SOCKS4a limit. */
#define DEST_NAME_MAX 255

/* Room for socks_dest_format: a name escaped for logs (up to 4 bytes a byte), port, brackets. */
#define SOCKS_DEST_STRLEN (DEST_NAME_MAX * 4 + 16)

/* A destination as the client asked for it. */
struct socks_dest {
    enum dest_type type;
    uint16_t port;                /* host byte order */
    uint8_t ip[16];               /* DEST_IPV4 uses the first 4 bytes */
    char name[DEST_NAME_MAX + 1]; /* DEST_NAME: NUL-terminated, never empty, no NUL inside */
};

/* A DEST_IPV4 or DEST_IPV6 destination as a socket address. Returns 0, or -1 for a name. */
int socks_dest_to_addr(const struct socks_dest *d, struct addr *out);

/* "host:port", "192.0.2.1:80" or "[2001:db8::1]:80" into buf; returns buf. */
const char *socks_dest_format(const struct socks_dest *d, char *buf, size_t size);

#endif
