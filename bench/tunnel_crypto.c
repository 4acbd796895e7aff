/*
 * tunnel_crypto: what the encrypted hop's cryptography costs on this machine, one core, no
 * network (doc/tunnel-protocol.md, "Costs"). Not a test: it prints figures, asserts nothing.
 * Times are the thread's CPU time, so a loaded machine slows the run, not the figures (much).
 *
 *   - one X25519 operation;
 *   - one Noise_IK handshake, both sides (init, both messages, split), with the static public
 *     keys computed once as a daemon would;
 *   - sealing and opening 16 KiB records (tunnel_record_seal/open: ChaCha20-Poly1305 with the
 *     sealed header), and the bare AEADs over 16 KiB: ChaCha20-Poly1305 IETF and, when the CPU
 *     has AES-NI and PCLMUL (crypto_aead_aes256gcm_is_available), AES-256-GCM.
 *
 *   make bench/tunnel_crypto && bench/tunnel_crypto [SECONDS_PER_FIGURE]
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "ferry/tunnel_noise.h"
#include "ferry/tunnel_record.h"

#define RECORD 16384

static double seconds_per_figure = 1.0;

static double now(void)
{
    struct timespec ts;

    /* CPU time of this thread: the figures are what the work costs, not what a busy machine
     * left of a core (the wall clock is no better than the share the scheduler gives). */
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Run fn in batches until the time is up; returns operations per second. */
static double rate(void (*fn)(void *), void *arg, unsigned batch)
{
    double start = now(), t;
    unsigned long ops = 0;

    do {
        for (unsigned i = 0; i < batch; i++)
            fn(arg);
        ops += batch;
        t = now() - start;
    } while (t < seconds_per_figure);
    return (double)ops / t;
}

static uint8_t spriv[32], spub[32], cpriv[32], cpub[32];

static void x25519(void *arg)
{
    uint8_t out[32];

    (void)arg;
    if (crypto_scalarmult(out, cpriv, spub) != 0)
        abort();
}

static void handshake(void *arg)
{
    struct tunnel_handshake init, resp;
    struct tunnel_cipher a, b, c, d;
    uint8_t m1[TUNNEL_MSG1_OVERHEAD + TUNNEL_HELLO_LEN], m2[TUNNEL_MSG2_OVERHEAD], pl[64];
    uint8_t hello[TUNNEL_HELLO_LEN] = {0};
    size_t n1, n2, pn;
    const uint8_t *prologue = (const uint8_t *)TUNNEL_PROLOGUE;
    size_t plen = strlen(TUNNEL_PROLOGUE);

    (void)arg;
    if (tunnel_handshake_init(&init, TUNNEL_INITIATOR, TUNNEL_CHACHAPOLY, prologue, plen, cpriv,
                              cpub, spub) != 0 ||
        tunnel_handshake_init(&resp, TUNNEL_RESPONDER, TUNNEL_CHACHAPOLY, prologue, plen, spriv,
                              spub, NULL) != 0 ||
        tunnel_handshake_write(&init, hello, sizeof(hello), m1, sizeof(m1), &n1) != 0 ||
        tunnel_handshake_read(&resp, m1, n1, pl, sizeof(pl), &pn) != 0 ||
        tunnel_handshake_write(&resp, NULL, 0, m2, sizeof(m2), &n2) != 0 ||
        tunnel_handshake_read(&init, m2, n2, pl, sizeof(pl), &pn) != 0 ||
        tunnel_handshake_split(&init, &a, &b, NULL) != 0 ||
        tunnel_handshake_split(&resp, &c, &d, NULL) != 0)
        abort();
    tunnel_cipher_wipe(&a);
    tunnel_cipher_wipe(&b);
    tunnel_cipher_wipe(&c);
    tunnel_cipher_wipe(&d);
}

struct records {
    struct tunnel_record_tx tx;
    struct tunnel_record_rx rx;
    uint8_t *plain, *wire;
    size_t wire_len;
};

static void seal_record(void *arg)
{
    struct records *r = arg;

    if (tunnel_record_seal(&r->tx, TUNNEL_REC_DATA, 1, r->plain, RECORD, r->wire,
                           TUNNEL_RECORD_SEAL_MAX(RECORD), &r->wire_len) != 0)
        abort();
}

/* Seal then open (the receiver has to keep in step): reported as open = both - seal. */
static void seal_open_record(void *arg)
{
    struct records *r = arg;
    struct tunnel_record rec;
    size_t used;

    seal_record(r);
    if (tunnel_record_open(&r->rx, r->wire, r->wire_len, &rec, &used) != 0)
        abort();
    if (rec.type == TUNNEL_REC_REKEY &&
        tunnel_record_open(&r->rx, r->wire + used, r->wire_len - used, &rec, &used) != 0)
        abort();
}

struct aead {
    uint8_t key[32];
    uint8_t *plain, *out;
    uint64_t n;
};

static void chacha(void *arg)
{
    struct aead *a = arg;
    uint8_t nonce[12] = {0};

    memcpy(nonce + 4, &a->n, 8);
    a->n++;
    crypto_aead_chacha20poly1305_ietf_encrypt(a->out, NULL, a->plain, RECORD, NULL, 0, NULL, nonce,
                                              a->key);
}

static void aesgcm(void *arg)
{
    struct aead *a = arg;
    uint8_t nonce[12] = {0};

    memcpy(nonce + 4, &a->n, 8);
    a->n++;
    crypto_aead_aes256gcm_encrypt(a->out, NULL, a->plain, RECORD, NULL, 0, NULL, nonce, a->key);
}

int main(int argc, char **argv)
{
    struct records rec;
    struct aead ae;
    struct tunnel_cipher c1, c2;
    uint8_t k[32];
    double x, hs, seal, both, cc, gcm = 0;

    if (argc > 1)
        seconds_per_figure = atof(argv[1]);
    if (seconds_per_figure <= 0 || sodium_init() < 0)
        return 1;
    crypto_box_keypair(spub, spriv);
    crypto_box_keypair(cpub, cpriv);

    x = rate(x25519, NULL, 100);
    hs = rate(handshake, NULL, 20);

    randombytes_buf(k, sizeof(k));
    tunnel_cipher_init(&c1, k);
    tunnel_cipher_init(&c2, k);
    tunnel_record_tx_init(&rec.tx, &c1);
    tunnel_record_rx_init(&rec.rx, &c2);
    rec.plain = malloc(RECORD);
    rec.wire = malloc(TUNNEL_RECORD_SEAL_MAX(RECORD));
    ae.plain = rec.plain;
    ae.out = malloc(RECORD + 16);
    if (rec.plain == NULL || rec.wire == NULL || ae.out == NULL)
        return 1;
    randombytes_buf(rec.plain, RECORD);
    randombytes_buf(ae.key, sizeof(ae.key));
    ae.n = 0;
    seal = rate(seal_record, &rec, 50);
    tunnel_cipher_init(&c1, k); /* fresh, equal keys on both sides again */
    tunnel_cipher_init(&c2, k);
    tunnel_record_tx_init(&rec.tx, &c1);
    tunnel_record_rx_init(&rec.rx, &c2);
    both = rate(seal_open_record, &rec, 50);
    cc = rate(chacha, &ae, 50);
    if (crypto_aead_aes256gcm_is_available())
        gcm = rate(aesgcm, &ae, 50);

    printf("libsodium %s, %.1f s of CPU time per figure, one thread\n", sodium_version_string(),
           seconds_per_figure);
    printf("X25519 operation                 %8.1f us\n", 1e6 / x);
    printf("IK handshake, both sides          %8.1f us  (%.0f handshakes/s; 10 X25519)\n", 1e6 / hs,
           hs);
    printf("record seal 16 KiB (ChaChaPoly)   %8.0f MB/s\n", seal * RECORD / 1e6);
    printf("record open 16 KiB (ChaChaPoly)   %8.0f MB/s\n",
           RECORD / (1.0 / both - 1.0 / seal) / 1e6);
    printf("bare ChaCha20-Poly1305 16 KiB     %8.0f MB/s\n", cc * RECORD / 1e6);
    if (gcm > 0)
        printf("bare AES-256-GCM 16 KiB           %8.0f MB/s\n", gcm * RECORD / 1e6);
    else
        printf("bare AES-256-GCM 16 KiB           not available on this CPU\n");
    tunnel_record_tx_wipe(&rec.tx);
    tunnel_record_rx_wipe(&rec.rx);
    free(rec.plain);
    free(rec.wire);
    free(ae.out);
    return 0;
}
