/*
 * The tunnel's transport records and handshake payloads (doc/tunnel-protocol.md), pure: bytes
 * in, bytes out, no I/O, no clock (times are arguments).
 *
 * A record is a sealed 7-byte header (type, stream, payload length) and, when the length is not
 * zero, the sealed payload, each a Noise transport message of the direction's CipherState:
 *
 *     ENCRYPT(k, n, "", type || stream || length)      23 bytes
 *     ENCRYPT(k, n+1, "", payload)                     length + 16 bytes, absent for length 0
 *
 * so a flipped bit anywhere (length included), a cut, a reordered, dropped or replayed record
 * fails authentication at once, and nothing is read past a length that was not authenticated.
 */
#ifndef FERRY_TUNNEL_RECORD_H
#define FERRY_TUNNEL_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ferry/tunnel_noise.h"

/* The version the prologue binds: both ends must give exactly these bytes. */
#define TUNNEL_PROLOGUE "ferry-tunnel/1"

#define TUNNEL_RECORD_HEADER 7 /* type 1, stream 4, length 2 (big-endian) */
#define TUNNEL_RECORD_HEADER_SEALED (TUNNEL_RECORD_HEADER + TUNNEL_TAGLEN)
#define TUNNEL_RECORD_PAYLOAD_MAX 16384
/* Bytes on the wire for a record of len payload bytes. */
#define TUNNEL_RECORD_SIZE(len)                                                                    \
    (TUNNEL_RECORD_HEADER_SEALED + ((len) > 0 ? (size_t)(len) + TUNNEL_TAGLEN : 0))
/* What tunnel_record_seal may write for len bytes: a REKEY record when one is due, then it. */
#define TUNNEL_RECORD_SEAL_MAX(len) (TUNNEL_RECORD_HEADER_SEALED + TUNNEL_RECORD_SIZE(len))

/* A sender rekeys (a REKEY record, then Rekey()) after this many records or payload bytes. */
#define TUNNEL_RECORD_REKEY_RECORDS (1ull << 20)
#define TUNNEL_RECORD_REKEY_BYTES (1ull << 30)
/* A receiver refuses a peer that sent more records than this under one key. */
#define TUNNEL_RECORD_LIMIT_RECORDS (1ull << 32)

enum tunnel_record_type {
    TUNNEL_REC_DATA = 0x01,   /* stream bytes; stream != 0, length >= 1 */
    TUNNEL_REC_OPEN = 0x02,   /* a new stream's request; stream != 0, length >= 1 */
    TUNNEL_REC_REPLY = 0x03,  /* the server's answer to OPEN; stream != 0, length >= 1 */
    TUNNEL_REC_EOF = 0x04,    /* the sender's half of the stream is done; length 0 */
    TUNNEL_REC_RESET = 0x05,  /* the stream is aborted; length 1: a reason code */
    TUNNEL_REC_WINDOW = 0x06, /* flow-control credit for the stream; length 4 */
    TUNNEL_REC_PING = 0x07,   /* stream 0, length 8; answered by PONG with the same bytes */
    TUNNEL_REC_PONG = 0x08,   /* stream 0, length 8 */
    TUNNEL_REC_REKEY = 0x09,  /* stream 0, length 0: the sender's next record is under REKEY(k) */
    TUNNEL_REC_CLOSE = 0x0a,  /* stream 0, length 0: the clean end of the connection */
};

enum tunnel_record_status {
    TUNNEL_REC_OK = 0,
    TUNNEL_REC_NEED_MORE = 1,      /* not a whole record yet: call again with more bytes */
    TUNNEL_REC_ERR_AUTH = -1,      /* tampered, cut, reordered, replayed or from another key */
    TUNNEL_REC_ERR_PROTO = -2,     /* authentic but not allowed: unknown type, bad length or stream,
                                      anything after CLOSE, too many records under one key */
    TUNNEL_REC_ERR_NONCE = -3,     /* nonces spent: a new handshake is needed */
    TUNNEL_REC_ERR_SPACE = -4,     /* the output buffer is too small */
    TUNNEL_REC_ERR_STATE = -5,     /* sealing after CLOSE, or on a failed direction */
    TUNNEL_REC_ERR_TRUNCATED = -6, /* the stream ended without CLOSE, or inside a record */
};

const char *tunnel_record_strerror(int status);

/* Whether the header fields make a valid record (the same rule for sender and receiver). */
bool tunnel_record_valid(uint8_t type, uint32_t stream, size_t len);

/* The sending direction: its CipherState and the counts since the last rekey. */
struct tunnel_record_tx {
    struct tunnel_cipher cipher;
    uint64_t records, bytes;             /* since the last rekey */
    uint64_t rekey_records, rekey_bytes; /* when to rekey */
    bool closed;                         /* CLOSE was sealed */
    bool failed;
};

/* The receiving direction. */
struct tunnel_record_rx {
    struct tunnel_cipher cipher;
    uint64_t records;       /* since the last rekey */
    uint64_t limit_records; /* the most accepted under one key */
    bool closed;            /* CLOSE was opened */
    bool failed;            /* an error: every later call fails */
};

/* Take over a CipherState from tunnel_handshake_split (the original is wiped). */
void tunnel_record_tx_init(struct tunnel_record_tx *tx, struct tunnel_cipher *send);
void tunnel_record_rx_init(struct tunnel_record_rx *rx, struct tunnel_cipher *recv);
/* Rekey sooner than the defaults (tests; a cautious sender). 0 leaves a value as it is. */
void tunnel_record_tx_rekey_after(struct tunnel_record_tx *tx, uint64_t records, uint64_t bytes);
/* A lower receive limit than TUNNEL_RECORD_LIMIT_RECORDS (tests). */
void tunnel_record_rx_limit(struct tunnel_record_rx *rx, uint64_t records);
void tunnel_record_tx_wipe(struct tunnel_record_tx *tx);
void tunnel_record_rx_wipe(struct tunnel_record_rx *rx);

/*
 * Seal one record into out (outsize bytes, TUNNEL_RECORD_SEAL_MAX(len) always enough); its
 * bytes in *outlen. When the rekey interval is reached a REKEY record goes first, in the same
 * output. Sealing REKEY itself rekeys after it; sealing CLOSE ends the direction.
 */
int tunnel_record_seal(struct tunnel_record_tx *tx, uint8_t type, uint32_t stream,
                       const uint8_t *payload, size_t len, uint8_t *out, size_t outsize,
                       size_t *outlen);

struct tunnel_record {
    uint8_t type;
    uint32_t stream;
    const uint8_t *payload; /* inside the caller's buffer, decrypted in place */
    size_t len;
};

/*
 * Open the record at the start of buf (avail bytes received so far). TUNNEL_REC_OK: *rec is the
 * record, *consumed its bytes on the wire (the payload was decrypted in place in buf).
 * TUNNEL_REC_NEED_MORE: nothing changed; call again with the same bytes and more. An error is
 * final for the direction. REKEY records are returned too (the receive key has already moved
 * on); CLOSE is returned once, and any byte after it is TUNNEL_REC_ERR_PROTO.
 */
int tunnel_record_open(struct tunnel_record_rx *rx, uint8_t *buf, size_t avail,
                       struct tunnel_record *rec, size_t *consumed);

/*
 * The transport's end of file, with pending bytes not yet a whole record: TUNNEL_REC_OK after
 * CLOSE with nothing pending, else TUNNEL_REC_ERR_TRUNCATED (a cut, never a clean end).
 */
int tunnel_record_eof(const struct tunnel_record_rx *rx, size_t pending);

/* --- the handshake payloads ---------------------------------------------------------------- */

#define TUNNEL_TAI64N_LEN 12
/* The first message's payload: TAI64N timestamp, flags (2 bytes), then padding up to this. */
#define TUNNEL_HELLO_LEN 14
#define TUNNEL_HELLO_MAX 1024
/* The second message's payload: flags (2 bytes), then padding. */
#define TUNNEL_WELCOME_LEN 2

/*
 * The 2-byte prefix of the first message (doc 2.2): the suite's code in its top 4 bits (0
 * ChaChaPoly, version 1's format unchanged; 1 AESGCM), the message's length in the low 12
 * (msg1 is at most 1120 bytes). The suite is also bound by the Noise protocol name, so a
 * flipped code fails the handshake; the prefix only lets the server pick it before reading.
 */
#define TUNNEL_MSG1_PREFIX 2
#define TUNNEL_MSG1_LEN_MASK 0x0fffu
void tunnel_msg1_prefix_encode(enum tunnel_suite suite, size_t len,
                               uint8_t out[TUNNEL_MSG1_PREFIX]);
/* The length in *len and the suite in *suite; -1 for a suite code not defined (*len is set). */
int tunnel_msg1_prefix_parse(const uint8_t in[TUNNEL_MSG1_PREFIX], enum tunnel_suite *suite,
                             size_t *len);

/* TAI64N (cr.yp.to/libtai/tai64.html) for a Unix time: 2^62 + 10 + sec, then nanoseconds. */
void tunnel_tai64n(uint64_t unix_sec, uint32_t nsec, uint8_t out[TUNNEL_TAI64N_LEN]);
/* The Unix seconds of a TAI64N label; -1 for a label before 1970 or past 2^62 s. */
int64_t tunnel_tai64n_unix(const uint8_t ts[TUNNEL_TAI64N_LEN]);

struct tunnel_hello {
    uint8_t timestamp[TUNNEL_TAI64N_LEN];
    uint16_t flags; /* none defined in version 1: sent as 0, ignored when read */
};

/* The hello in out (TUNNEL_HELLO_LEN bytes). */
void tunnel_hello_encode(const struct tunnel_hello *h, uint8_t out[TUNNEL_HELLO_LEN]);
/* A decrypted first-message payload: -1 when shorter than TUNNEL_HELLO_LEN or over the max. */
int tunnel_hello_parse(const uint8_t *buf, size_t len, struct tunnel_hello *h);

/*
 * Replay protection for first messages, as WireGuard does: the latest timestamp accepted per
 * client key. A first message is accepted only when its timestamp is later than the latest
 * one of the same key and, when window is not zero, within window seconds of now (which bounds
 * replays across a restart of the server, when the table starts empty).
 */
struct tunnel_replay;

enum tunnel_replay_status {
    TUNNEL_REPLAY_OK = 0,
    TUNNEL_REPLAY_OLD = -1,  /* not later than the latest accepted: a replay or a clock back */
    TUNNEL_REPLAY_SKEW = -2, /* too far from the server's clock */
    TUNNEL_REPLAY_NOMEM = -3,
};

struct tunnel_replay *tunnel_replay_new(void);
void tunnel_replay_free(struct tunnel_replay *t);
/* Whether got is strictly later than latest (labels compare as big-endian numbers). */
bool tunnel_replay_newer(const uint8_t latest[TUNNEL_TAI64N_LEN],
                         const uint8_t got[TUNNEL_TAI64N_LEN]);
/* Check ts for key and, when accepted, remember it as the key's latest. */
int tunnel_replay_check(struct tunnel_replay *t, const uint8_t key[TUNNEL_DHLEN],
                        const uint8_t ts[TUNNEL_TAI64N_LEN], uint64_t now_unix, uint64_t window);
size_t tunnel_replay_count(const struct tunnel_replay *t);

#endif
