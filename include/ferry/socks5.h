/* SOCKS5 wire format (RFC 1928, RFC 1929): pure parsers and encoders, no I/O. */
#ifndef FERRY_SOCKS5_H
#define FERRY_SOCKS5_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "ferry/proto.h"

#define SOCKS5_VERSION 0x05
#define SOCKS5_USERPASS_VERSION 0x01

/* Largest reply: VER REP RSV ATYP + 16-byte IPv6 + port. */
#define SOCKS5_REPLY_MAX 22

enum socks5_method {
    SOCKS5_METHOD_NOAUTH = 0x00,
    SOCKS5_METHOD_GSSAPI = 0x01,
    SOCKS5_METHOD_USERPASS = 0x02,
    SOCKS5_METHOD_NONE = 0xff,
};

enum socks5_cmd {
    SOCKS5_CMD_CONNECT = 0x01,
    SOCKS5_CMD_BIND = 0x02,
    SOCKS5_CMD_UDP_ASSOCIATE = 0x03,
    SOCKS5_CMD_RESOLVE = 0xf0,     /* Tor extension: name -> address */
    SOCKS5_CMD_RESOLVE_PTR = 0xf1, /* Tor extension: address -> name */
};

enum socks5_atyp {
    SOCKS5_ATYP_IPV4 = 0x01,
    SOCKS5_ATYP_DOMAIN = 0x03,
    SOCKS5_ATYP_IPV6 = 0x04,
};

enum socks5_rep {
    SOCKS5_REP_SUCCEEDED = 0x00,
    SOCKS5_REP_GENERAL_FAILURE = 0x01,
    SOCKS5_REP_NOT_ALLOWED = 0x02,
    SOCKS5_REP_NETWORK_UNREACHABLE = 0x03,
    SOCKS5_REP_HOST_UNREACHABLE = 0x04,
    SOCKS5_REP_CONNECTION_REFUSED = 0x05,
    SOCKS5_REP_TTL_EXPIRED = 0x06,
    SOCKS5_REP_COMMAND_NOT_SUPPORTED = 0x07,
    SOCKS5_REP_ADDRESS_TYPE_NOT_SUPPORTED = 0x08,
};

/* RFC 1929 status byte: 0x00 success, anything else failure. */
#define SOCKS5_USERPASS_OK 0x00
#define SOCKS5_USERPASS_FAIL 0x01

/* VER NMETHODS METHODS[NMETHODS] (RFC 1928 section 3). */
struct socks5_greeting {
    uint8_t nmethods;
    uint8_t methods[255];
};

/* VER ULEN UNAME PLEN PASSWD (RFC 1929 section 2). Strings are NUL-terminated copies. */
struct socks5_userpass {
    size_t user_len;
    size_t pass_len;
    char user[256];
    char pass[256];
};

/* VER CMD RSV ATYP DST.ADDR DST.PORT (RFC 1928 section 4). */
struct socks5_request {
    uint8_t cmd;
    struct socks_dest dest;
};

/* Error when VER is not 5. NMETHODS 0 parses: it simply offers nothing. */
enum proto_status socks5_parse_greeting(const uint8_t *buf, size_t len, struct socks5_greeting *out,
                                        size_t *consumed);

/* The first method of `preferred` (the server's order) that the client offers, else NONE. */
uint8_t socks5_choose_method(const struct socks5_greeting *g, const uint8_t *preferred, size_t n);

/* Method selection reply: VER METHOD. Returns 2. */
size_t socks5_encode_method(uint8_t out[2], uint8_t method);

/* Error when VER is not 1. Empty user or password parse; they just fail verification. */
enum proto_status socks5_parse_userpass(const uint8_t *buf, size_t len, struct socks5_userpass *out,
                                        size_t *consumed);

/* Sub-negotiation reply: VER(1) STATUS. Returns 2. */
size_t socks5_encode_userpass_reply(uint8_t out[2], uint8_t status);

/*
 * ATYP DST.ADDR DST.PORT (RFC 1928 section 5), the address of a request, a reply or a UDP
 * header, from buf[0]. Errors: an unknown ATYP (rep 08), an empty name or one with a NUL
 * (rep 01). rep may be NULL.
 */
enum proto_status socks5_parse_address(const uint8_t *buf, size_t len, struct socks_dest *out,
                                       size_t *consumed, uint8_t *rep);

/*
 * Known commands: CONNECT, BIND, UDP ASSOCIATE, RESOLVE and RESOLVE_PTR (RESOLVE_PTR takes an
 * IPv4 or IPv6 address, a name gives ADDRESS_TYPE_NOT_SUPPORTED).
 * Checks fields as soon as they arrive: VER != 5 gives GENERAL_FAILURE, an unknown CMD
 * COMMAND_NOT_SUPPORTED, an unknown ATYP ADDRESS_TYPE_NOT_SUPPORTED, a zero-length domain or
 * one holding a NUL byte GENERAL_FAILURE; on PROTO_ERROR *rep holds that code.
 */
enum proto_status socks5_parse_request(const uint8_t *buf, size_t len, struct socks5_request *out,
                                       size_t *consumed, uint8_t *rep);

/*
 * VER REP RSV ATYP BND.ADDR BND.PORT. `bound` may be NULL (0.0.0.0:0); an IPv4-mapped IPv6
 * address is sent as IPv4. Returns the length (10 or 22); out holds SOCKS5_REPLY_MAX bytes.
 */
size_t socks5_encode_reply(uint8_t out[SOCKS5_REPLY_MAX], uint8_t rep,
                           const struct sockaddr *bound);

/*
 * Reply naming a host (RESOLVE_PTR answers): VER REP RSV ATYP=3 LEN NAME PORT. name is 1..255
 * bytes. Returns the length, or 0 when it does not fit in size bytes.
 */
size_t socks5_encode_reply_name(uint8_t *out, size_t size, uint8_t rep, const char *name,
                                uint16_t port);

/* RFC 1928 section 7: RSV(2) FRAG ATYP DST.ADDR DST.PORT, then DATA. */
struct socks5_udp_header {
    uint8_t frag;
    struct socks_dest dest;
};

/* Largest header: 4 + 1 + 255 + 2. */
#define SOCKS5_UDP_HEADER_MAX 262

/*
 * Parse the header of one whole datagram. PROTO_OK with *hdrlen = header length (the payload
 * follows); PROTO_ERROR when it is truncated, ATYP is unknown, or a name is empty or holds a
 * NUL. FRAG is returned, not judged. Never PROTO_NEED_MORE: a datagram is all there is.
 */
enum proto_status socks5_parse_udp_header(const uint8_t *buf, size_t len,
                                          struct socks5_udp_header *out, size_t *hdrlen);

/*
 * Header for a datagram from `from` (IPv4-mapped sent as IPv4), FRAG 0. Returns 10 or 22, or 0
 * for another family. out holds 22 bytes.
 */
size_t socks5_encode_udp_header(uint8_t out[22], const struct sockaddr *from);

#endif
