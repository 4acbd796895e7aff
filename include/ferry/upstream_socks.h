/*
 * The client side of SOCKS5 (RFC 1928, RFC 1929) and SOCKS4a, for talking to a parent proxy:
 * pure encoders of what ferry sends and incremental parsers of what the parent answers, no I/O.
 * Replies are given in the session's vocabulary, the SOCKS5 REP codes.
 */
#ifndef FERRY_UPSTREAM_SOCKS_H
#define FERRY_UPSTREAM_SOCKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ferry/proto.h"

/* Longest request ferry sends: VER CMD RSV ATYP LEN NAME[255] PORT. */
#define UPSTREAM_SOCKS5_REQUEST_MAX 262
/* Longest RFC 1929 request: VER ULEN UNAME[255] PLEN PASSWD[255]. */
#define UPSTREAM_SOCKS5_USERPASS_MAX 513
/* Longest SOCKS4a request: 8 + USERID[255] NUL + HOSTNAME[255] NUL. */
#define UPSTREAM_SOCKS4_REQUEST_MAX 520

/* VER NMETHODS METHODS: no-auth, and username/password when we have credentials. Returns 3 or 4. */
size_t upstream_socks5_greeting(uint8_t out[4], bool userpass);

/*
 * The parent's method choice: VER(5) METHOD. Error when VER is not 5. The caller judges the
 * method (0xff: none acceptable; one we did not offer: a protocol error).
 */
enum proto_status upstream_socks5_parse_method(const uint8_t *buf, size_t len, uint8_t *method,
                                               size_t *consumed);

/* RFC 1929 request; 0 when user or password is empty or longer than 255 bytes. */
size_t upstream_socks5_userpass(uint8_t out[UPSTREAM_SOCKS5_USERPASS_MAX], const char *user,
                                const char *pass);

/*
 * RFC 1929 reply: VER STATUS, *ok when STATUS is 0. VER is 1 by the RFC; some servers answer 5,
 * which is taken too. Error for any other VER.
 */
enum proto_status upstream_socks5_parse_userpass_reply(const uint8_t *buf, size_t len, bool *ok,
                                                       size_t *consumed);

/* VER CMD RSV ATYP DST.ADDR DST.PORT for cmd (SOCKS5_CMD_*) and dest. Returns the length. */
size_t upstream_socks5_request(uint8_t out[UPSTREAM_SOCKS5_REQUEST_MAX], uint8_t cmd,
                               const struct socks_dest *dest);

/*
 * The parent's reply (RFC 1928 section 6): VER(5) REP RSV ATYP BND.ADDR BND.PORT into *rep and
 * *bound (a name for ATYP 3, as RESOLVE_PTR answers carry). Error when VER is not 5, ATYP is
 * unknown, or a name is empty.
 */
enum proto_status upstream_socks5_parse_reply(const uint8_t *buf, size_t len, uint8_t *rep,
                                              struct socks_dest *bound, size_t *consumed);

/*
 * SOCKS4 (an IPv4 dest) or SOCKS4a (a name: DSTIP 0.0.0.1 and the name after USERID) request
 * for cmd (SOCKS4_CMD_*) with userid (NULL: empty). 0 for an IPv6 dest or a userid or name
 * longer than 255 bytes.
 */
size_t upstream_socks4_request(uint8_t out[UPSTREAM_SOCKS4_REQUEST_MAX], uint8_t cmd,
                               const struct socks_dest *dest, const char *userid);

/*
 * The parent's 8-byte reply: VN CD DSTPORT DSTIP. VN is 0 by the protocol; 4 is taken too (some
 * servers echo the version). *rep is CD in SOCKS5 terms: 90 succeeded, 91 general failure,
 * 92/93 (identd) not allowed, anything else general failure. *bound is the IPv4 and port.
 */
enum proto_status upstream_socks4_parse_reply(const uint8_t *buf, size_t len, uint8_t *rep,
                                              struct socks_dest *bound, size_t *consumed);

#endif
