/* SOCKS4 and SOCKS4a wire format: pure parser and encoder, no I/O. */
#ifndef FERRY_SOCKS4_H
#define FERRY_SOCKS4_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "ferry/proto.h"

#define SOCKS4_VERSION 0x04
#define SOCKS4_REPLY_LEN 8
/* Longest USERID we accept (not counting its NUL). */
#define SOCKS4_USERID_MAX 255

enum socks4_cmd {
    SOCKS4_CMD_CONNECT = 0x01,
    SOCKS4_CMD_BIND = 0x02,
    SOCKS4_CMD_RESOLVE = 0xf0, /* Tor extension, SOCKS4a only: the reply carries the IPv4 */
};

enum socks4_cd {
    SOCKS4_CD_GRANTED = 90,
    SOCKS4_CD_REJECTED = 91,
    SOCKS4_CD_NO_IDENTD = 92,
    SOCKS4_CD_IDENT_MISMATCH = 93,
};

/* VN CD DSTPORT DSTIP USERID NUL [HOSTNAME NUL when DSTIP is 0.0.0.x, x != 0 (SOCKS4a)]. */
struct socks4_request {
    uint8_t cmd;
    bool is_4a;
    struct socks_dest dest; /* DEST_IPV4, or DEST_NAME for SOCKS4a */
    char userid[SOCKS4_USERID_MAX + 1];
};

/*
 * Error when VN is not 4, CD is not CONNECT, BIND or RESOLVE (RESOLVE needs the 4a form),
 * USERID or HOSTNAME is longer than 255 bytes, or the SOCKS4a HOSTNAME is empty. The only error
 * reply SOCKS4 has is 91.
 */
enum proto_status socks4_parse_request(const uint8_t *buf, size_t len, struct socks4_request *out,
                                       size_t *consumed);

/* VN(0) CD DSTPORT DSTIP; an IPv4 (or IPv4-mapped) `bound` fills port and IP, else zeros. */
size_t socks4_encode_reply(uint8_t out[SOCKS4_REPLY_LEN], uint8_t cd, const struct sockaddr *bound);

/*
 * The address a SOCKS4 reply can name for a socket bound on `local`: unchanged when IPv4; from
 * IPv6, the mapped IPv4, 127.0.0.1 for ::1, else 0.0.0.0 ("the address of the SOCKS server").
 */
void socks4_local_address(struct addr *local);

#endif
