/*
 * Noise_IK_25519_ChaChaPoly_BLAKE2b and its AESGCM variant (include/ferry/tunnel_noise.h).
 * Section numbers are those of the Noise Protocol Framework, revision 34. Every primitive is
 * libsodium's: X25519 (crypto_scalarmult), ChaCha20-Poly1305 IETF, AES-256-GCM, BLAKE2b
 * (crypto_generichash_blake2b, unkeyed; HMAC is built over it as RFC 2104 says, not taken from
 * BLAKE2b's keyed mode).
 */
#include "config.h"

#include <string.h>

#include <sodium.h>

#include "ferry/tunnel_noise.h"

const char *tunnel_strerror(int status)
{
    switch (status) {
    case TUNNEL_OK:
        return "ok";
    case TUNNEL_ERR_STATE:
        return "message out of turn";
    case TUNNEL_ERR_SHORT:
        return "message too short";
    case TUNNEL_ERR_TOO_LONG:
        return "message too long";
    case TUNNEL_ERR_SPACE:
        return "buffer too small";
    case TUNNEL_ERR_DECRYPT:
        return "authentication failed";
    case TUNNEL_ERR_DH:
        return "invalid public key";
    case TUNNEL_ERR_NONCE:
        return "nonces exhausted";
    }
    return "unknown error";
}

/* --- CipherState (section 5.1) with the ChaChaPoly and AESGCM functions (12.3, 12.4) ------ */

bool tunnel_suite_available(enum tunnel_suite suite)
{
    return suite == TUNNEL_CHACHAPOLY ||
           (suite == TUNNEL_AESGCM && crypto_aead_aes256gcm_is_available() == 1);
}

const char *tunnel_suite_name(enum tunnel_suite suite)
{
    return suite == TUNNEL_AESGCM ? "aes-256-gcm" : "chacha20-poly1305";
}

int tunnel_suite_parse(const char *name, enum tunnel_suite *suite)
{
    if (strcmp(name, "chacha20-poly1305") == 0)
        *suite = TUNNEL_CHACHAPOLY;
    else if (strcmp(name, "aes-256-gcm") == 0)
        *suite = TUNNEL_AESGCM;
    else
        return -1;
    return 0;
}

/* The 96-bit nonce: 32 bits of zeros, then n little-endian (ChaChaPoly) or big-endian (AESGCM). */
static void make_nonce(enum tunnel_suite suite, uint64_t n, uint8_t nonce[12])
{
    memset(nonce, 0, 4);
    for (int i = 0; i < 8; i++)
        nonce[suite == TUNNEL_AESGCM ? 11 - i : 4 + i] = (uint8_t)(n >> (8 * i));
}

/* ENCRYPT(k, n, ad, plaintext): len + 16 bytes at out. */
static void aead_encrypt(const struct tunnel_cipher *c, uint64_t n, const uint8_t *ad, size_t adlen,
                         const uint8_t *in, size_t len, uint8_t *out)
{
    uint8_t nonce[12];

    make_nonce(c->suite, n, nonce);
    if (c->suite == TUNNEL_AESGCM)
        crypto_aead_aes256gcm_encrypt(out, NULL, in, len, ad, adlen, NULL, nonce, c->k);
    else
        crypto_aead_chacha20poly1305_ietf_encrypt(out, NULL, in, len, ad, adlen, NULL, nonce, c->k);
}

/* DECRYPT(k, n, ad, ciphertext): 0, or -1 when authentication fails. */
static int aead_decrypt(const struct tunnel_cipher *c, uint64_t n, const uint8_t *ad, size_t adlen,
                        const uint8_t *in, size_t len, uint8_t *out)
{
    uint8_t nonce[12];

    make_nonce(c->suite, n, nonce);
    if (c->suite == TUNNEL_AESGCM)
        return crypto_aead_aes256gcm_decrypt(out, NULL, NULL, in, len, ad, adlen, nonce, c->k);
    return crypto_aead_chacha20poly1305_ietf_decrypt(out, NULL, NULL, in, len, ad, adlen, nonce,
                                                     c->k);
}

void tunnel_cipher_init_suite(struct tunnel_cipher *c, enum tunnel_suite suite,
                              const uint8_t key[TUNNEL_KEYLEN])
{
    tunnel_cipher_init(c, key);
    c->suite = suite;
}

void tunnel_cipher_init(struct tunnel_cipher *c, const uint8_t key[TUNNEL_KEYLEN])
{
    c->suite = TUNNEL_CHACHAPOLY;
    if (key != NULL) {
        memmove(c->k, key, TUNNEL_KEYLEN);
        c->has_key = true;
    } else {
        sodium_memzero(c->k, sizeof(c->k));
        c->has_key = false;
    }
    c->n = 0;
}

bool tunnel_cipher_has_key(const struct tunnel_cipher *c)
{
    return c->has_key;
}

void tunnel_cipher_set_nonce(struct tunnel_cipher *c, uint64_t n)
{
    c->n = n;
}

uint64_t tunnel_cipher_nonce(const struct tunnel_cipher *c)
{
    return c->n;
}

int tunnel_cipher_encrypt(struct tunnel_cipher *c, const uint8_t *ad, size_t adlen,
                          const uint8_t *in, size_t len, uint8_t *out)
{
    if (!c->has_key) {
        if (len > 0)
            memmove(out, in, len);
        return TUNNEL_OK;
    }
    if (c->n == TUNNEL_NONCE_MAX)
        return TUNNEL_ERR_NONCE;
    aead_encrypt(c, c->n, ad, adlen, in, len, out);
    c->n++;
    return TUNNEL_OK;
}

int tunnel_cipher_decrypt(struct tunnel_cipher *c, const uint8_t *ad, size_t adlen,
                          const uint8_t *in, size_t len, uint8_t *out)
{
    if (!c->has_key) {
        if (len > 0)
            memmove(out, in, len);
        return TUNNEL_OK;
    }
    if (c->n == TUNNEL_NONCE_MAX)
        return TUNNEL_ERR_NONCE;
    if (len < TUNNEL_TAGLEN)
        return TUNNEL_ERR_SHORT;
    if (aead_decrypt(c, c->n, ad, adlen, in, len, out) != 0)
        return TUNNEL_ERR_DECRYPT;
    c->n++;
    return TUNNEL_OK;
}

void tunnel_cipher_rekey(struct tunnel_cipher *c)
{
    uint8_t block[TUNNEL_KEYLEN + TUNNEL_TAGLEN];
    uint8_t zeros[TUNNEL_KEYLEN] = {0};

    if (!c->has_key)
        return;
    aead_encrypt(c, TUNNEL_NONCE_MAX, NULL, 0, zeros, sizeof(zeros), block);
    memcpy(c->k, block, TUNNEL_KEYLEN);
    sodium_memzero(block, sizeof(block));
}

void tunnel_cipher_wipe(struct tunnel_cipher *c)
{
    sodium_memzero(c, sizeof(*c));
}

/* --- HASH, HMAC-HASH and HKDF over BLAKE2b (sections 4.3, 12.8) -------------------------- */

static void hash2(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
                  uint8_t out[TUNNEL_HASHLEN])
{
    crypto_generichash_blake2b_state st;

    crypto_generichash_blake2b_init(&st, NULL, 0, TUNNEL_HASHLEN);
    crypto_generichash_blake2b_update(&st, a, alen);
    if (blen > 0)
        crypto_generichash_blake2b_update(&st, b, blen);
    crypto_generichash_blake2b_final(&st, out, TUNNEL_HASHLEN);
    sodium_memzero(&st, sizeof(st));
}

/*
 * RFC 2104: H(K ^ opad || H(K ^ ipad || text)) with K zero-padded to B = 128 bytes; text is
 * a || b. Noise's keys are at most HASHLEN bytes, so K is never hashed first.
 */
static void hmac2(const uint8_t *key, size_t keylen, const uint8_t *a, size_t alen,
                  const uint8_t *b, size_t blen, uint8_t out[TUNNEL_HASHLEN])
{
    crypto_generichash_blake2b_state st;
    uint8_t pad[TUNNEL_BLOCKLEN], inner[TUNNEL_HASHLEN];
    size_t i;

    memset(pad, 0x36, sizeof(pad));
    for (i = 0; i < keylen; i++)
        pad[i] ^= key[i];
    crypto_generichash_blake2b_init(&st, NULL, 0, TUNNEL_HASHLEN);
    crypto_generichash_blake2b_update(&st, pad, sizeof(pad));
    if (alen > 0)
        crypto_generichash_blake2b_update(&st, a, alen);
    if (blen > 0)
        crypto_generichash_blake2b_update(&st, b, blen);
    crypto_generichash_blake2b_final(&st, inner, sizeof(inner));

    memset(pad, 0x5c, sizeof(pad));
    for (i = 0; i < keylen; i++)
        pad[i] ^= key[i];
    crypto_generichash_blake2b_init(&st, NULL, 0, TUNNEL_HASHLEN);
    crypto_generichash_blake2b_update(&st, pad, sizeof(pad));
    crypto_generichash_blake2b_update(&st, inner, sizeof(inner));
    crypto_generichash_blake2b_final(&st, out, TUNNEL_HASHLEN);

    sodium_memzero(pad, sizeof(pad));
    sodium_memzero(inner, sizeof(inner));
    sodium_memzero(&st, sizeof(st));
}

void tunnel_hmac(const uint8_t *key, size_t keylen, const uint8_t *data, size_t len,
                 uint8_t out[TUNNEL_HASHLEN])
{
    if (keylen > TUNNEL_HASHLEN)
        keylen = TUNNEL_HASHLEN; /* the header's contract; never reached by Noise */
    hmac2(key, keylen, data, len, NULL, 0, out);
}

void tunnel_hkdf(const uint8_t ck[TUNNEL_HASHLEN], const uint8_t *ikm, size_t ikmlen,
                 uint8_t out1[TUNNEL_HASHLEN], uint8_t out2[TUNNEL_HASHLEN],
                 uint8_t out3[TUNNEL_HASHLEN])
{
    uint8_t temp_key[TUNNEL_HASHLEN];
    const uint8_t one = 0x01, two = 0x02, three = 0x03;

    hmac2(ck, TUNNEL_HASHLEN, ikm, ikmlen, NULL, 0, temp_key);
    hmac2(temp_key, sizeof(temp_key), &one, 1, NULL, 0, out1);
    hmac2(temp_key, sizeof(temp_key), out1, TUNNEL_HASHLEN, &two, 1, out2);
    if (out3 != NULL)
        hmac2(temp_key, sizeof(temp_key), out2, TUNNEL_HASHLEN, &three, 1, out3);
    sodium_memzero(temp_key, sizeof(temp_key));
}

/* --- SymmetricState (section 5.2) ------------------------------------------------------ */

static void mix_hash(struct tunnel_handshake *hs, const uint8_t *data, size_t len)
{
    hash2(hs->h, TUNNEL_HASHLEN, data, len, hs->h);
}

static void mix_key(struct tunnel_handshake *hs, const uint8_t *ikm, size_t len)
{
    uint8_t ck[TUNNEL_HASHLEN], temp_k[TUNNEL_HASHLEN];

    tunnel_hkdf(hs->ck, ikm, len, ck, temp_k, NULL);
    memcpy(hs->ck, ck, TUNNEL_HASHLEN);
    tunnel_cipher_init_suite(&hs->cipher, hs->suite, temp_k); /* HASHLEN 64: first 32 bytes */
    sodium_memzero(ck, sizeof(ck));
    sodium_memzero(temp_k, sizeof(temp_k));
}

/* EncryptAndHash: out gets len (+ TUNNEL_TAGLEN once there is a key) bytes. */
static int encrypt_and_hash(struct tunnel_handshake *hs, const uint8_t *in, size_t len,
                            uint8_t *out, size_t *outlen)
{
    int r = tunnel_cipher_encrypt(&hs->cipher, hs->h, TUNNEL_HASHLEN, in, len, out);

    if (r != TUNNEL_OK)
        return r;
    *outlen = len + (tunnel_cipher_has_key(&hs->cipher) ? TUNNEL_TAGLEN : 0);
    mix_hash(hs, out, *outlen);
    return TUNNEL_OK;
}

/* DecryptAndHash: in (len bytes) must not overlap out; h then absorbs the ciphertext. */
static int decrypt_and_hash(struct tunnel_handshake *hs, const uint8_t *in, size_t len,
                            uint8_t *out, size_t *outlen)
{
    int r = tunnel_cipher_decrypt(&hs->cipher, hs->h, TUNNEL_HASHLEN, in, len, out);

    if (r != TUNNEL_OK)
        return r;
    *outlen = len - (tunnel_cipher_has_key(&hs->cipher) ? TUNNEL_TAGLEN : 0);
    mix_hash(hs, in, len);
    return TUNNEL_OK;
}

/* --- the 25519 DH functions (section 12.1) --------------------------------------------- */

/* MixKey(DH(priv, pub)); an all-zero output (a small-order public key) is an error. */
static int mix_dh(struct tunnel_handshake *hs, const uint8_t priv[TUNNEL_KEYLEN],
                  const uint8_t pub[TUNNEL_DHLEN])
{
    uint8_t shared[TUNNEL_DHLEN];

    if (crypto_scalarmult(shared, priv, pub) != 0) {
        sodium_memzero(shared, sizeof(shared));
        return TUNNEL_ERR_DH;
    }
    mix_key(hs, shared, sizeof(shared));
    sodium_memzero(shared, sizeof(shared));
    return TUNNEL_OK;
}

int tunnel_public_key(const uint8_t priv[TUNNEL_KEYLEN], uint8_t pub[TUNNEL_DHLEN])
{
    return crypto_scalarmult_base(pub, priv) == 0 ? 0 : -1;
}

/* --- HandshakeState (section 5.3), pattern IK (section 7.5) ---------------------------- */

void tunnel_handshake_wipe(struct tunnel_handshake *hs)
{
    sodium_memzero(hs, sizeof(*hs));
}

static int fail(struct tunnel_handshake *hs, int status)
{
    tunnel_handshake_wipe(hs);
    hs->step = -1;
    return status;
}

int tunnel_handshake_init(struct tunnel_handshake *hs, enum tunnel_role role,
                          enum tunnel_suite suite, const uint8_t *prologue, size_t prologue_len,
                          const uint8_t s_priv[TUNNEL_KEYLEN], const uint8_t s_pub[TUNNEL_DHLEN],
                          const uint8_t rs[TUNNEL_DHLEN])
{
    const char *name = suite == TUNNEL_AESGCM ? TUNNEL_PROTOCOL_NAME_AESGCM : TUNNEL_PROTOCOL_NAME;

    tunnel_handshake_wipe(hs);
    if ((role == TUNNEL_INITIATOR) != (rs != NULL) || !tunnel_suite_available(suite))
        return fail(hs, TUNNEL_ERR_STATE);
    hs->role = role;
    hs->suite = suite;
    /* InitializeSymmetric: the name is at most HASHLEN bytes, so h is the name zero-padded. */
    _Static_assert(sizeof(TUNNEL_PROTOCOL_NAME) - 1 <= TUNNEL_HASHLEN, "name longer than HASHLEN");
    _Static_assert(sizeof(TUNNEL_PROTOCOL_NAME_AESGCM) - 1 <= TUNNEL_HASHLEN, "name too long");
    memcpy(hs->h, name, strlen(name));
    memcpy(hs->ck, hs->h, TUNNEL_HASHLEN);
    tunnel_cipher_init_suite(&hs->cipher, suite, NULL);
    mix_hash(hs, prologue, prologue_len);

    memcpy(hs->s_priv, s_priv, TUNNEL_KEYLEN);
    if (s_pub != NULL)
        memcpy(hs->s_pub, s_pub, TUNNEL_DHLEN);
    else if (tunnel_public_key(hs->s_priv, hs->s_pub) != 0)
        return fail(hs, TUNNEL_ERR_DH);
    /* The pre-message "<- s": both sides hash the responder's static public key. */
    if (role == TUNNEL_INITIATOR) {
        memcpy(hs->rs, rs, TUNNEL_DHLEN);
        hs->has_rs = true;
        mix_hash(hs, hs->rs, TUNNEL_DHLEN);
    } else {
        mix_hash(hs, hs->s_pub, TUNNEL_DHLEN);
    }
    return TUNNEL_OK;
}

int tunnel_handshake_fix_ephemeral(struct tunnel_handshake *hs, const uint8_t e_priv[TUNNEL_KEYLEN])
{
    if (hs->step < 0 || hs->has_e)
        return TUNNEL_ERR_STATE;
    memcpy(hs->e_priv, e_priv, TUNNEL_KEYLEN);
    if (tunnel_public_key(hs->e_priv, hs->e_pub) != 0)
        return fail(hs, TUNNEL_ERR_DH);
    hs->has_e = true;
    return TUNNEL_OK;
}

/* Token "e" when writing: GENERATE_KEYPAIR() unless fixed, append, MixHash. */
static int write_e(struct tunnel_handshake *hs, uint8_t *out)
{
    if (!hs->has_e) {
        do
            randombytes_buf(hs->e_priv, TUNNEL_KEYLEN);
        while (tunnel_public_key(hs->e_priv, hs->e_pub) != 0);
        hs->has_e = true;
    }
    memcpy(out, hs->e_pub, TUNNEL_DHLEN);
    mix_hash(hs, hs->e_pub, TUNNEL_DHLEN);
    return TUNNEL_OK;
}

int tunnel_handshake_write(struct tunnel_handshake *hs, const uint8_t *payload, size_t payload_len,
                           uint8_t *out, size_t outsize, size_t *outlen)
{
    size_t overhead, pos = 0, n;
    int r;

    *outlen = 0;
    if ((hs->role == TUNNEL_INITIATOR && hs->step != 0) ||
        (hs->role == TUNNEL_RESPONDER && hs->step != 1))
        return TUNNEL_ERR_STATE;
    overhead = hs->role == TUNNEL_INITIATOR ? TUNNEL_MSG1_OVERHEAD : TUNNEL_MSG2_OVERHEAD;
    if (payload_len > TUNNEL_MSG_MAX - overhead)
        return TUNNEL_ERR_TOO_LONG;
    if (outsize < payload_len + overhead)
        return TUNNEL_ERR_SPACE;

    write_e(hs, out);
    pos = TUNNEL_DHLEN;
    if (hs->role == TUNNEL_INITIATOR) {
        /* -> e, es, s, ss */
        if ((r = mix_dh(hs, hs->e_priv, hs->rs)) != TUNNEL_OK)
            return fail(hs, r);
        if ((r = encrypt_and_hash(hs, hs->s_pub, TUNNEL_DHLEN, out + pos, &n)) != TUNNEL_OK)
            return fail(hs, r);
        pos += n;
        if ((r = mix_dh(hs, hs->s_priv, hs->rs)) != TUNNEL_OK)
            return fail(hs, r);
    } else {
        /* <- e, ee, se */
        if ((r = mix_dh(hs, hs->e_priv, hs->re)) != TUNNEL_OK)
            return fail(hs, r);
        if ((r = mix_dh(hs, hs->e_priv, hs->rs)) != TUNNEL_OK)
            return fail(hs, r);
    }
    if ((r = encrypt_and_hash(hs, payload, payload_len, out + pos, &n)) != TUNNEL_OK)
        return fail(hs, r);
    pos += n;
    hs->step++;
    *outlen = pos;
    return TUNNEL_OK;
}

int tunnel_handshake_read(struct tunnel_handshake *hs, const uint8_t *msg, size_t len,
                          uint8_t *payload, size_t size, size_t *payload_len)
{
    size_t overhead, pos, n;
    int r;

    *payload_len = 0;
    if ((hs->role == TUNNEL_RESPONDER && hs->step != 0) ||
        (hs->role == TUNNEL_INITIATOR && hs->step != 1))
        return TUNNEL_ERR_STATE;
    overhead = hs->role == TUNNEL_RESPONDER ? TUNNEL_MSG1_OVERHEAD : TUNNEL_MSG2_OVERHEAD;
    if (len > TUNNEL_MSG_MAX)
        return fail(hs, TUNNEL_ERR_TOO_LONG);
    if (len < overhead)
        return fail(hs, TUNNEL_ERR_SHORT);
    if (size < len - overhead)
        return TUNNEL_ERR_SPACE; /* the caller's mistake: the handshake may go on */

    memcpy(hs->re, msg, TUNNEL_DHLEN);
    hs->has_re = true;
    mix_hash(hs, hs->re, TUNNEL_DHLEN);
    pos = TUNNEL_DHLEN;
    if (hs->role == TUNNEL_RESPONDER) {
        /* -> e, es, s, ss */
        if ((r = mix_dh(hs, hs->s_priv, hs->re)) != TUNNEL_OK)
            return fail(hs, r);
        r = decrypt_and_hash(hs, msg + pos, TUNNEL_DHLEN + TUNNEL_TAGLEN, hs->rs, &n);
        if (r != TUNNEL_OK)
            return fail(hs, r);
        hs->has_rs = true;
        pos += TUNNEL_DHLEN + TUNNEL_TAGLEN;
        if ((r = mix_dh(hs, hs->s_priv, hs->rs)) != TUNNEL_OK)
            return fail(hs, r);
    } else {
        /* <- e, ee, se */
        if ((r = mix_dh(hs, hs->e_priv, hs->re)) != TUNNEL_OK)
            return fail(hs, r);
        if ((r = mix_dh(hs, hs->s_priv, hs->re)) != TUNNEL_OK)
            return fail(hs, r);
    }
    if ((r = decrypt_and_hash(hs, msg + pos, len - pos, payload, &n)) != TUNNEL_OK)
        return fail(hs, r);
    hs->step++;
    *payload_len = n;
    return TUNNEL_OK;
}

bool tunnel_handshake_done(const struct tunnel_handshake *hs)
{
    return hs->step == 2;
}

const uint8_t *tunnel_handshake_remote_static(const struct tunnel_handshake *hs)
{
    return hs->step >= 0 && hs->has_rs ? hs->rs : NULL;
}

int tunnel_handshake_split(struct tunnel_handshake *hs, struct tunnel_cipher *send,
                           struct tunnel_cipher *recv, uint8_t hash[TUNNEL_HASHLEN])
{
    uint8_t k1[TUNNEL_HASHLEN], k2[TUNNEL_HASHLEN];

    if (!tunnel_handshake_done(hs))
        return TUNNEL_ERR_STATE;
    tunnel_hkdf(hs->ck, NULL, 0, k1, k2, NULL);
    /* c1 carries initiator to responder, c2 the other way; keys truncated to 32 bytes. */
    if (hs->role == TUNNEL_INITIATOR) {
        tunnel_cipher_init_suite(send, hs->suite, k1);
        tunnel_cipher_init_suite(recv, hs->suite, k2);
    } else {
        tunnel_cipher_init_suite(send, hs->suite, k2);
        tunnel_cipher_init_suite(recv, hs->suite, k1);
    }
    if (hash != NULL)
        memcpy(hash, hs->h, TUNNEL_HASHLEN);
    sodium_memzero(k1, sizeof(k1));
    sodium_memzero(k2, sizeof(k2));
    tunnel_handshake_wipe(hs);
    hs->step = 3; /* split: nothing more to do */
    return TUNNEL_OK;
}
