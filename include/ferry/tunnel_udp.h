/*
 * UDP datagrams of the tunnel (doc/tunnel-protocol.md 4.3), pure: bytes in, bytes out, no I/O.
 *
 * A UDP ASSOCIATE opened on a tunnel stream gets, in its REPLY, a grant made by the server: an
 * association id and two random keys, one per direction. Each datagram between the two ferries
 * is then
 *
 *     id (4, big-endian) || counter (8, little-endian) || ENCRYPT(k_dir, counter, id || counter,
 *                                                                 SOCKS5 UDP header || data)
 *
 * with ChaCha20-Poly1305 IETF, the nonce 4 zero bytes then the counter little-endian (Noise's
 * form, explicit here). A sender's counter starts at 0 and is never reused; the receiver keeps
 * a sliding window of TUNNEL_UDP_WINDOW counters (RFC 6479) checked and updated only after a
 * datagram authenticates, so forgeries cannot move it.
 */
#ifndef FERRY_TUNNEL_UDP_H
#define FERRY_TUNNEL_UDP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TUNNEL_UDP_KEYLEN 32
#define TUNNEL_UDP_HEAD 12 /* id 4, counter 8 */
#define TUNNEL_UDP_TAG 16
#define TUNNEL_UDP_OVERHEAD (TUNNEL_UDP_HEAD + TUNNEL_UDP_TAG)
/* The grant after a UDP ASSOCIATE's SOCKS5 reply: id || key client->server || key server->client */
#define TUNNEL_UDP_GRANT_LEN (4 + 2 * TUNNEL_UDP_KEYLEN)
/* Counters accepted behind the highest one seen (that one included). */
#define TUNNEL_UDP_WINDOW 2048
#define TUNNEL_UDP_WORDS (TUNNEL_UDP_WINDOW / 64 + 1) /* one more word: RFC 6479 section 2 */

enum tunnel_udp_status {
    TUNNEL_UDP_OK = 0,
    TUNNEL_UDP_ERR_AUTH = -1,      /* too short, another association, tampered, other key */
    TUNNEL_UDP_ERR_DUPLICATE = -2, /* authentic, and already taken */
    TUNNEL_UDP_ERR_OLD = -3,       /* authentic, and behind the window */
    TUNNEL_UDP_ERR_NONCE = -4,     /* sealing: the counters are spent */
};

const char *tunnel_udp_strerror(int status);

/* An association's id and keys, as the server makes them and the REPLY carries them. */
struct tunnel_udp_grant {
    uint32_t id;
    uint8_t up[TUNNEL_UDP_KEYLEN];   /* client -> server */
    uint8_t down[TUNNEL_UDP_KEYLEN]; /* server -> client */
};

/* A fresh grant: a random id and two random keys. */
void tunnel_udp_grant_new(struct tunnel_udp_grant *g);
void tunnel_udp_grant_encode(const struct tunnel_udp_grant *g, uint8_t out[TUNNEL_UDP_GRANT_LEN]);
/* -1 when len is not TUNNEL_UDP_GRANT_LEN. */
int tunnel_udp_grant_decode(const uint8_t *in, size_t len, struct tunnel_udp_grant *g);

/* One direction: the sender's or the receiver's state. */
struct tunnel_udp_dir {
    uint32_t id;
    uint8_t key[TUNNEL_UDP_KEYLEN];
    uint64_t counter;                  /* sender: the next; receiver: the highest taken */
    bool any;                          /* receiver: a datagram was taken */
    uint64_t bitmap[TUNNEL_UDP_WORDS]; /* receiver: counters taken, a ring of words */
};

void tunnel_udp_dir_init(struct tunnel_udp_dir *d, uint32_t id,
                         const uint8_t key[TUNNEL_UDP_KEYLEN]);
/* Wipe the key (sodium_memzero) and the rest. */
void tunnel_udp_dir_wipe(struct tunnel_udp_dir *d);

/*
 * Seal in place: buf holds TUNNEL_UDP_HEAD bytes of room, then len bytes of plaintext, then
 * room for TUNNEL_UDP_TAG bytes; it becomes the datagram of len + TUNNEL_UDP_OVERHEAD bytes.
 * TUNNEL_UDP_ERR_NONCE (nothing written) when the counter reached 2^64 - 1.
 */
int tunnel_udp_seal(struct tunnel_udp_dir *tx, uint8_t *buf, size_t len);

/*
 * Open a datagram of len bytes in place: on TUNNEL_UDP_OK the plaintext is at
 * buf + TUNNEL_UDP_HEAD, len - TUNNEL_UDP_OVERHEAD bytes, and its counter is taken. On any
 * error the window is as before (buf's bytes may have changed).
 */
int tunnel_udp_open(struct tunnel_udp_dir *rx, uint8_t *buf, size_t len);

/* The replay window alone (after authentication): TUNNEL_UDP_OK and taken, or DUPLICATE/OLD. */
int tunnel_udp_window_take(struct tunnel_udp_dir *rx, uint64_t counter);

#endif
