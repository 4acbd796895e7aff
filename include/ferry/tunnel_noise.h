/*
 * Noise_IK_25519_ChaChaPoly_BLAKE2b (and Noise_IK_25519_AESGCM_BLAKE2b where the CPU has AES-NI),
 * to the letter of the Noise Protocol Framework (revision 34) and from libsodium primitives only:
 * the CipherState, SymmetricState and HandshakeState objects of its section 5, HMAC-BLAKE2b and
 * HKDF of section 4.3, the 25519, ChaChaPoly, AESGCM and BLAKE2b functions of section 12. Pure: no
 * I/O, no clock; randomness only for a new ephemeral key. Secrets are wiped with sodium_memzero
 * when they are replaced or no longer needed.
 */
#ifndef FERRY_TUNNEL_NOISE_H
#define FERRY_TUNNEL_NOISE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TUNNEL_PROTOCOL_NAME "Noise_IK_25519_ChaChaPoly_BLAKE2b"
#define TUNNEL_PROTOCOL_NAME_AESGCM "Noise_IK_25519_AESGCM_BLAKE2b"
#define TUNNEL_DHLEN 32      /* X25519 public keys and DH outputs */
#define TUNNEL_KEYLEN 32     /* cipher keys, X25519 private keys */
#define TUNNEL_HASHLEN 64    /* BLAKE2b-512 */
#define TUNNEL_BLOCKLEN 128  /* BLAKE2b's block, HMAC's B (RFC 2104) */
#define TUNNEL_TAGLEN 16     /* the Poly1305 tag each AEAD ciphertext carries */
#define TUNNEL_MSG_MAX 65535 /* every Noise message, handshake or transport (section 3) */
/* IK: -> e, es, s, ss (e, the sealed static key, the sealed payload); <- e, ee, se. */
#define TUNNEL_MSG1_OVERHEAD (TUNNEL_DHLEN + TUNNEL_DHLEN + TUNNEL_TAGLEN + TUNNEL_TAGLEN)
#define TUNNEL_MSG2_OVERHEAD (TUNNEL_DHLEN + TUNNEL_TAGLEN)
/* The nonce 2^64-1 is reserved (section 5.1): REKEY uses it, no message may. */
#define TUNNEL_NONCE_MAX UINT64_MAX

enum tunnel_status {
    TUNNEL_OK = 0,
    TUNNEL_ERR_STATE = -1,    /* a call out of order (a message of the wrong side or turn) */
    TUNNEL_ERR_SHORT = -2,    /* a message shorter than its pattern's fixed part */
    TUNNEL_ERR_TOO_LONG = -3, /* a message or payload beyond TUNNEL_MSG_MAX */
    TUNNEL_ERR_SPACE = -4,    /* the output buffer is too small */
    TUNNEL_ERR_DECRYPT = -5,  /* authentication failed: tampered, wrong key or wrong order */
    TUNNEL_ERR_DH = -6,       /* a public key of small order (all-zero X25519 output) */
    TUNNEL_ERR_NONCE = -7,    /* the nonce space is spent: a new handshake is needed */
};

/* A short English text for a status, for log lines. */
const char *tunnel_strerror(int status);

/* The cipher functions: ChaChaPoly (section 12.3, version 1's) or AESGCM (section 12.4). */
enum tunnel_suite { TUNNEL_CHACHAPOLY = 0, TUNNEL_AESGCM = 1 };

/* Whether this machine can run the suite (AESGCM: libsodium needs AES-NI and PCLMUL). */
bool tunnel_suite_available(enum tunnel_suite suite);
/* The configuration's name of a suite: "chacha20-poly1305" or "aes-256-gcm". */
const char *tunnel_suite_name(enum tunnel_suite suite);
/* A name back to its suite; -1 for an unknown name. */
int tunnel_suite_parse(const char *name, enum tunnel_suite *suite);

/* Section 5.1: a key k (or none yet) and the 64-bit nonce n of the next message. */
struct tunnel_cipher {
    uint8_t k[TUNNEL_KEYLEN];
    uint64_t n;
    bool has_key;
    enum tunnel_suite suite;
};

/* InitializeKey(key) with ChaChaPoly; key NULL is empty. */
void tunnel_cipher_init(struct tunnel_cipher *c, const uint8_t key[TUNNEL_KEYLEN]);
/* The same with the suite's cipher functions. */
void tunnel_cipher_init_suite(struct tunnel_cipher *c, enum tunnel_suite suite,
                              const uint8_t key[TUNNEL_KEYLEN]);
bool tunnel_cipher_has_key(const struct tunnel_cipher *c);
/* For out-of-order transports (section 11.4; the UDP path): the caller tracks replays. */
void tunnel_cipher_set_nonce(struct tunnel_cipher *c, uint64_t n);
uint64_t tunnel_cipher_nonce(const struct tunnel_cipher *c);
/*
 * EncryptWithAd: len bytes at in to len + TUNNEL_TAGLEN bytes at out (which may be in: the
 * operation works in place), then n++. Without a key the plaintext is copied. TUNNEL_ERR_NONCE
 * once n reached 2^64-1.
 */
int tunnel_cipher_encrypt(struct tunnel_cipher *c, const uint8_t *ad, size_t adlen,
                          const uint8_t *in, size_t len, uint8_t *out);
/*
 * DecryptWithAd: len bytes (at least TUNNEL_TAGLEN with a key) to len - TUNNEL_TAGLEN at out
 * (may be in), then n++. On TUNNEL_ERR_DECRYPT n is unchanged and out is zeroed.
 */
int tunnel_cipher_decrypt(struct tunnel_cipher *c, const uint8_t *ad, size_t adlen,
                          const uint8_t *in, size_t len, uint8_t *out);
/* Rekey (sections 4.2, 11.3): k = the first 32 bytes of ENCRYPT(k, 2^64-1, "", 32 zeros). */
void tunnel_cipher_rekey(struct tunnel_cipher *c);
void tunnel_cipher_wipe(struct tunnel_cipher *c);

/* HMAC-HASH (RFC 2104 over BLAKE2b-512, B = 128 bytes); keylen at most TUNNEL_HASHLEN. */
void tunnel_hmac(const uint8_t *key, size_t keylen, const uint8_t *data, size_t len,
                 uint8_t out[TUNNEL_HASHLEN]);
/*
 * HKDF as section 4.3 defines it (RFC 5869 with ck as salt and no info): two outputs, or
 * three when out3 is not NULL. ikm is 0, 32 or TUNNEL_DHLEN bytes.
 */
void tunnel_hkdf(const uint8_t ck[TUNNEL_HASHLEN], const uint8_t *ikm, size_t ikmlen,
                 uint8_t out1[TUNNEL_HASHLEN], uint8_t out2[TUNNEL_HASHLEN],
                 uint8_t out3[TUNNEL_HASHLEN]);

/* The public key of an X25519 private key; -1 for a key whose public key would be all zero. */
int tunnel_public_key(const uint8_t priv[TUNNEL_KEYLEN], uint8_t pub[TUNNEL_DHLEN]);

enum tunnel_role { TUNNEL_INITIATOR, TUNNEL_RESPONDER };

/* The state of one IK handshake: the initiator knows rs from the start (the "<- s" pre-message). */
struct tunnel_handshake {
    struct tunnel_cipher cipher; /* SymmetricState: CipherState, ck and h */
    uint8_t ck[TUNNEL_HASHLEN];
    uint8_t h[TUNNEL_HASHLEN];
    uint8_t s_priv[TUNNEL_KEYLEN], s_pub[TUNNEL_DHLEN];
    uint8_t e_priv[TUNNEL_KEYLEN], e_pub[TUNNEL_DHLEN];
    uint8_t rs[TUNNEL_DHLEN], re[TUNNEL_DHLEN];
    bool has_e, has_rs, has_re;
    enum tunnel_role role;
    enum tunnel_suite suite;
    /* Messages processed: 0 before the first, 2 when done; -1 after a failure. */
    int step;
};

/*
 * Initialize(IK, role, prologue, s, e = empty, rs, re = empty) for the suite's protocol name
 * (TUNNEL_ERR_STATE for a suite this machine cannot run). s_pub, the public half of s_priv,
 * may be NULL, and is then computed (one X25519 operation a long-lived key need not repeat per
 * handshake). rs, the responder's static public key, is required of the initiator and must be
 * NULL for the responder (it learns the initiator's key from the first message). TUNNEL_ERR_DH
 * for a static key that is unusable.
 */
int tunnel_handshake_init(struct tunnel_handshake *hs, enum tunnel_role role,
                          enum tunnel_suite suite, const uint8_t *prologue, size_t prologue_len,
                          const uint8_t s_priv[TUNNEL_KEYLEN], const uint8_t s_pub[TUNNEL_DHLEN],
                          const uint8_t rs[TUNNEL_DHLEN]);
/*
 * Sets the ephemeral key the next written message would otherwise generate at random. Only for
 * test vectors, which fix it; a real handshake must not reuse an ephemeral key.
 */
int tunnel_handshake_fix_ephemeral(struct tunnel_handshake *hs,
                                   const uint8_t e_priv[TUNNEL_KEYLEN]);
/*
 * WriteMessage: this side's next message (the first for the initiator, the second for the
 * responder), carrying payload, to out (outsize bytes); its length in *outlen. The message is
 * payload_len + TUNNEL_MSG1_OVERHEAD or TUNNEL_MSG2_OVERHEAD bytes, at most TUNNEL_MSG_MAX.
 */
int tunnel_handshake_write(struct tunnel_handshake *hs, const uint8_t *payload, size_t payload_len,
                           uint8_t *out, size_t outsize, size_t *outlen);
/*
 * ReadMessage: the peer's next message (len bytes) into its payload at payload (size bytes;
 * len minus the overhead is enough), its length in *payload_len. Any failure ends the handshake:
 * the state is wiped and later calls answer TUNNEL_ERR_STATE.
 */
int tunnel_handshake_read(struct tunnel_handshake *hs, const uint8_t *msg, size_t len,
                          uint8_t *payload, size_t size, size_t *payload_len);
bool tunnel_handshake_done(const struct tunnel_handshake *hs);
/*
 * The peer's static public key: the responder knows it once the first message is read (and
 * must look it up in its authorized keys before it answers), until split wipes the state.
 */
const uint8_t *tunnel_handshake_remote_static(const struct tunnel_handshake *hs);
/*
 * Split, once both messages are done: the CipherState this side sends with and the one it
 * receives with (the initiator sends with the first of Split's pair), and h (the handshake hash,
 * for channel binding) when hash is not NULL. Wipes the handshake state.
 */
int tunnel_handshake_split(struct tunnel_handshake *hs, struct tunnel_cipher *send,
                           struct tunnel_cipher *recv, uint8_t hash[TUNNEL_HASHLEN]);
void tunnel_handshake_wipe(struct tunnel_handshake *hs);

#endif
