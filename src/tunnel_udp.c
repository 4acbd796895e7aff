/*
 * The tunnel's sealed datagrams and their replay window (tunnel_udp.h, doc/tunnel-protocol.md
 * 4.3). The window is RFC 6479's: a ring of 64-bit words, one more than the window needs, so
 * that sliding forward clears whole words and never a partial one still in the window.
 */
#include "config.h"

#include <string.h>

#include <sodium.h>

#include "ferry/tunnel_udp.h"

const char *tunnel_udp_strerror(int status)
{
    switch (status) {
    case TUNNEL_UDP_OK:
        return "ok";
    case TUNNEL_UDP_ERR_AUTH:
        return "not authentic";
    case TUNNEL_UDP_ERR_DUPLICATE:
        return "duplicate";
    case TUNNEL_UDP_ERR_OLD:
        return "older than the window";
    case TUNNEL_UDP_ERR_NONCE:
        return "counters spent";
    default:
        return "unknown";
    }
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

void tunnel_udp_grant_new(struct tunnel_udp_grant *g)
{
    g->id = randombytes_random();
    randombytes_buf(g->up, sizeof(g->up));
    randombytes_buf(g->down, sizeof(g->down));
}

void tunnel_udp_grant_encode(const struct tunnel_udp_grant *g, uint8_t out[TUNNEL_UDP_GRANT_LEN])
{
    put_be32(out, g->id);
    memcpy(out + 4, g->up, TUNNEL_UDP_KEYLEN);
    memcpy(out + 4 + TUNNEL_UDP_KEYLEN, g->down, TUNNEL_UDP_KEYLEN);
}

int tunnel_udp_grant_decode(const uint8_t *in, size_t len, struct tunnel_udp_grant *g)
{
    if (len != TUNNEL_UDP_GRANT_LEN)
        return -1;
    g->id = get_be32(in);
    memcpy(g->up, in + 4, TUNNEL_UDP_KEYLEN);
    memcpy(g->down, in + 4 + TUNNEL_UDP_KEYLEN, TUNNEL_UDP_KEYLEN);
    return 0;
}

void tunnel_udp_dir_init(struct tunnel_udp_dir *d, uint32_t id,
                         const uint8_t key[TUNNEL_UDP_KEYLEN])
{
    memset(d, 0, sizeof(*d));
    d->id = id;
    memcpy(d->key, key, TUNNEL_UDP_KEYLEN);
}

void tunnel_udp_dir_wipe(struct tunnel_udp_dir *d)
{
    sodium_memzero(d, sizeof(*d));
}

/* Noise's ChaChaPoly nonce: 4 zero bytes, then the counter little-endian. */
static void make_nonce(uint8_t nonce[crypto_aead_chacha20poly1305_IETF_NPUBBYTES], uint64_t n)
{
    memset(nonce, 0, 4);
    put_le64(nonce + 4, n);
}

int tunnel_udp_seal(struct tunnel_udp_dir *tx, uint8_t *buf, size_t len)
{
    uint8_t nonce[crypto_aead_chacha20poly1305_IETF_NPUBBYTES];
    uint8_t *plain = buf + TUNNEL_UDP_HEAD;

    if (tx->counter == UINT64_MAX)
        return TUNNEL_UDP_ERR_NONCE;
    put_be32(buf, tx->id);
    put_le64(buf + 4, tx->counter);
    make_nonce(nonce, tx->counter);
    /* In place: libsodium allows the ciphertext over the plaintext. */
    crypto_aead_chacha20poly1305_ietf_encrypt_detached(plain, plain + len, NULL, plain, len, buf,
                                                       TUNNEL_UDP_HEAD, NULL, nonce, tx->key);
    tx->counter++;
    return TUNNEL_UDP_OK;
}

int tunnel_udp_window_take(struct tunnel_udp_dir *rx, uint64_t counter)
{
    uint64_t word = counter / 64, bit = (uint64_t)1 << (counter % 64);

    if (!rx->any || counter > rx->counter) {
        if (rx->any) {
            uint64_t top = rx->counter / 64, steps = word - top;

            if (steps > TUNNEL_UDP_WORDS)
                steps = TUNNEL_UDP_WORDS;
            for (uint64_t i = 1; i <= steps; i++)
                rx->bitmap[(top + i) % TUNNEL_UDP_WORDS] = 0;
        }
        rx->any = true;
        rx->counter = counter;
        rx->bitmap[word % TUNNEL_UDP_WORDS] |= bit;
        return TUNNEL_UDP_OK;
    }
    if (rx->counter - counter >= TUNNEL_UDP_WINDOW)
        return TUNNEL_UDP_ERR_OLD;
    if (rx->bitmap[word % TUNNEL_UDP_WORDS] & bit)
        return TUNNEL_UDP_ERR_DUPLICATE;
    rx->bitmap[word % TUNNEL_UDP_WORDS] |= bit;
    return TUNNEL_UDP_OK;
}

int tunnel_udp_open(struct tunnel_udp_dir *rx, uint8_t *buf, size_t len)
{
    uint8_t nonce[crypto_aead_chacha20poly1305_IETF_NPUBBYTES];
    uint8_t *cipher = buf + TUNNEL_UDP_HEAD;
    size_t clen;
    uint64_t counter;

    if (len < TUNNEL_UDP_OVERHEAD || get_be32(buf) != rx->id)
        return TUNNEL_UDP_ERR_AUTH;
    clen = len - TUNNEL_UDP_OVERHEAD;
    counter = get_le64(buf + 4);
    make_nonce(nonce, counter);
    /* The tag is checked before anything is decrypted; in place is allowed. */
    if (crypto_aead_chacha20poly1305_ietf_decrypt_detached(
            cipher, NULL, cipher, clen, cipher + clen, buf, TUNNEL_UDP_HEAD, nonce, rx->key) != 0)
        return TUNNEL_UDP_ERR_AUTH;
    return tunnel_udp_window_take(rx, counter);
}
