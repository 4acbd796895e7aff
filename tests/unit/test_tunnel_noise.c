/*
 * Unit tests for src/tunnel_noise.c: every Noise_IK_25519_ChaChaPoly_BLAKE2b vector of
 * tests/unit/noise_vectors.txt (flynn/noise, cacophony, snow: handshake and transport messages,
 * the handshake hash where given) and every one of flynn/noise's vectors.txt as Debian's
 * golang-github-flynn-noise-dev installs it, HMAC-BLAKE2b, HKDF and Rekey against values computed with
 * independent code (Python's hmac over hashlib.blake2b, and python3-cryptography's
 * ChaCha20Poly1305), and the failures: tampering, wrong keys, small-order keys, out of turn,
 * nonce exhaustion.
 */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "ferry/tunnel_noise.h"

#ifndef FLYNN_VECTORS
#define FLYNN_VECTORS "/usr/share/gocode/src/github.com/flynn/noise/vectors.txt"
#endif
#ifndef NOISE_VECTORS
#define NOISE_VECTORS "tests/unit/noise_vectors.txt"
#endif

static size_t unhex(const char *s, uint8_t *out, size_t size)
{
    size_t n = strlen(s), bin = 0;

    ck_assert_int_eq(sodium_hex2bin(out, size, s, n, NULL, &bin, NULL), 0);
    return bin;
}

static void assert_hex(const uint8_t *got, size_t len, const char *want)
{
    char hex[2 * TUNNEL_MSG_MAX + 1];

    sodium_bin2hex(hex, sizeof(hex), got, len);
    ck_assert_str_eq(hex, want);
}

/* --- HMAC, HKDF, Rekey ------------------------------------------------------------------ */

START_TEST(test_hmac_blake2b_matches_python_hmac)
{
    uint8_t key[64], out[TUNNEL_HASHLEN], zeros[300] = {0};
    const char *fox = "The quick brown fox jumps over the lazy dog";

    for (int i = 0; i < 64; i++)
        key[i] = (uint8_t)i;
    /* hmac.new(k, m, hashlib.blake2b).hexdigest() */
    tunnel_hmac(NULL, 0, NULL, 0, out);
    assert_hex(out, sizeof(out),
               "198cd2006f66ff83fbbd913f78aca2251caf4f19fe9475aade8cf2091b99a684"
               "66775177424f58286886cbae8229644cec747237d4b721735485e17372fdf59c");
    tunnel_hmac(key, 64, (const uint8_t *)fox, strlen(fox), out);
    assert_hex(out, sizeof(out),
               "04ee7426defe6a0b873ebc0a47f31391324e13534aaea631564fcac3659e94fe"
               "6bd07501e39038dfa63d0140c6b03c2cb1bf715764bc9807894474141d58f81e");
    tunnel_hmac((const uint8_t *)"key", 3, zeros, sizeof(zeros), out);
    assert_hex(out, sizeof(out),
               "7cd01b1757df5cace32cb253c6d005b823c307896c31c1d96721dd1d48c0c516"
               "86e2769e07a4ed52b44265e4161dec5facf8fbe6f32eeea8da7decabd6cb7104");
    /* Not BLAKE2b's keyed mode, which gives something else. */
    {
        uint8_t keyed[TUNNEL_HASHLEN];
        crypto_generichash_blake2b(keyed, sizeof(keyed), (const uint8_t *)fox, strlen(fox), key,
                                   64);
        tunnel_hmac(key, 64, (const uint8_t *)fox, strlen(fox), out);
        ck_assert_mem_ne(keyed, out, sizeof(out));
    }
}
END_TEST

START_TEST(test_hkdf_three_outputs_match_python)
{
    uint8_t ck[TUNNEL_HASHLEN], ikm[32], o1[TUNNEL_HASHLEN], o2[TUNNEL_HASHLEN], o3[TUNNEL_HASHLEN],
        p1[TUNNEL_HASHLEN], p2[TUNNEL_HASHLEN];

    for (int i = 0; i < TUNNEL_HASHLEN; i++)
        ck[i] = (uint8_t)i;
    memset(ikm, 0xaa, sizeof(ikm));
    tunnel_hkdf(ck, ikm, sizeof(ikm), o1, o2, o3);
    assert_hex(o1, sizeof(o1),
               "f47218b1498130a0f442a4c163ff0c53e981631f793ea49eb4475cb9c93bda51"
               "828c70c500e2b7ab2380e72e886175692d69f38e952cd8cfb2216bb11cfe608c");
    assert_hex(o2, sizeof(o2),
               "ca94dd29540f07d67e47c1ab1a1304de16aaa2ffabcadff325f8ff8f2fa34d86"
               "a5ed1537174bba0b0cae2be77cfe77b02a6a1a25fb0bb7e9615a4ca1ed23927e");
    assert_hex(o3, sizeof(o3),
               "08bd67aafab0e5e41856416b83f1c101741fc39e68a52bb9312f563ab2eb4e9a"
               "4d17efb4e8bd9893b1b51b4cbedadef5644fc8eb2bf743aaf7ba5c02a4745382");
    /* Two outputs are the first two of three. */
    tunnel_hkdf(ck, ikm, sizeof(ikm), p1, p2, NULL);
    ck_assert_mem_eq(p1, o1, sizeof(o1));
    ck_assert_mem_eq(p2, o2, sizeof(o2));
}
END_TEST

START_TEST(test_rekey_is_encrypt_at_maxnonce_of_zeros)
{
    struct tunnel_cipher c, want;
    uint8_t key[32], newkey[32], msg[5 + TUNNEL_TAGLEN], out[5];

    for (int i = 0; i < 32; i++)
        key[i] = (uint8_t)i;
    tunnel_cipher_init(&c, key);
    tunnel_cipher_set_nonce(&c, 7);
    tunnel_cipher_rekey(&c);
    /* ChaCha20Poly1305(k).encrypt(bytes(4) + b'\xff' * 8, bytes(32), b'')[:32] */
    unhex("50835543a205b22c9323f2022bc4f67d838f90e61d5ccf33c4513e01f85b5042", newkey, 32);
    ck_assert_mem_eq(c.k, newkey, 32);
    ck_assert_uint_eq(tunnel_cipher_nonce(&c), 7); /* Rekey keeps n (section 11.3) */
    tunnel_cipher_init(&want, newkey);
    tunnel_cipher_set_nonce(&want, 7);
    ck_assert_int_eq(tunnel_cipher_encrypt(&c, NULL, 0, (const uint8_t *)"hello", 5, msg), 0);
    ck_assert_int_eq(tunnel_cipher_decrypt(&want, NULL, 0, msg, sizeof(msg), out), 0);
    ck_assert_mem_eq(out, "hello", 5);
    tunnel_cipher_wipe(&c);
    ck_assert(!tunnel_cipher_has_key(&c));
}
END_TEST

START_TEST(test_aesgcm_nonce_is_big_endian_and_rekey_matches_python)
{
    struct tunnel_cipher c;
    uint8_t key[32], newkey[32], out[5 + TUNNEL_TAGLEN];

    if (!tunnel_suite_available(TUNNEL_AESGCM))
        return; /* no AES-NI: the suite is refused (test_calls_out_of_turn_are_refused) */
    for (int i = 0; i < 32; i++)
        key[i] = (uint8_t)i;
    /* AESGCM(k).encrypt(bytes(11) + b'\x01', b'hello', b'ad') */
    tunnel_cipher_init_suite(&c, TUNNEL_AESGCM, key);
    tunnel_cipher_set_nonce(&c, 1);
    ck_assert_int_eq(
        tunnel_cipher_encrypt(&c, (const uint8_t *)"ad", 2, (const uint8_t *)"hello", 5, out), 0);
    assert_hex(out, sizeof(out), "7db3d3902b793324921311d81c6afa5c3c84fff6d3");
    /* AESGCM(k).encrypt(bytes(4) + b'\xff' * 8, bytes(32), b'')[:32] */
    tunnel_cipher_rekey(&c);
    unhex("0201675c87335949b909793da5bb4d92fcf6d44b92a6e0792b6ae48b1881259d", newkey, 32);
    ck_assert_mem_eq(c.k, newkey, 32);
    tunnel_cipher_wipe(&c);
}
END_TEST

START_TEST(test_nonce_max_is_reserved_for_both_directions)
{
    struct tunnel_cipher a, b;
    uint8_t key[32] = {1}, msg[3 + TUNNEL_TAGLEN], out[3];

    tunnel_cipher_init(&a, key);
    tunnel_cipher_init(&b, key);
    tunnel_cipher_set_nonce(&a, TUNNEL_NONCE_MAX - 1);
    tunnel_cipher_set_nonce(&b, TUNNEL_NONCE_MAX - 1);
    ck_assert_int_eq(tunnel_cipher_encrypt(&a, NULL, 0, (const uint8_t *)"abc", 3, msg), 0);
    ck_assert_int_eq(tunnel_cipher_decrypt(&b, NULL, 0, msg, sizeof(msg), out), 0);
    ck_assert_uint_eq(tunnel_cipher_nonce(&a), TUNNEL_NONCE_MAX);
    ck_assert_int_eq(tunnel_cipher_encrypt(&a, NULL, 0, (const uint8_t *)"abc", 3, msg),
                     TUNNEL_ERR_NONCE);
    ck_assert_int_eq(tunnel_cipher_decrypt(&b, NULL, 0, msg, sizeof(msg), out), TUNNEL_ERR_NONCE);
}
END_TEST

START_TEST(test_failed_decrypt_keeps_the_nonce)
{
    struct tunnel_cipher a, b;
    uint8_t key[32] = {9}, msg[4 + TUNNEL_TAGLEN], bad[sizeof(msg)], out[4];

    tunnel_cipher_init(&a, key);
    tunnel_cipher_init(&b, key);
    ck_assert_int_eq(
        tunnel_cipher_encrypt(&a, (const uint8_t *)"ad", 2, (const uint8_t *)"data", 4, msg), 0);
    memcpy(bad, msg, sizeof(msg));
    bad[0] ^= 1;
    ck_assert_int_eq(tunnel_cipher_decrypt(&b, (const uint8_t *)"ad", 2, bad, sizeof(bad), out),
                     TUNNEL_ERR_DECRYPT);
    ck_assert_int_eq(tunnel_cipher_decrypt(&b, (const uint8_t *)"ax", 2, msg, sizeof(msg), out),
                     TUNNEL_ERR_DECRYPT);
    ck_assert_int_eq(tunnel_cipher_decrypt(&b, NULL, 0, msg, TUNNEL_TAGLEN - 1, out),
                     TUNNEL_ERR_SHORT);
    ck_assert_uint_eq(tunnel_cipher_nonce(&b), 0);
    ck_assert_int_eq(tunnel_cipher_decrypt(&b, (const uint8_t *)"ad", 2, msg, sizeof(msg), out), 0);
    ck_assert_mem_eq(out, "data", 4);
    ck_assert_uint_eq(tunnel_cipher_nonce(&b), 1);
    /* In place works too. */
    ck_assert_int_eq(tunnel_cipher_encrypt(&a, NULL, 0, msg, 4, msg), 0);
}
END_TEST

/* --- the published vectors -------------------------------------------------------------- */

struct vector {
    char name[64];
    enum tunnel_suite suite;
    uint8_t prologue[256];
    size_t prologue_len;
    uint8_t init_static[32], init_ephemeral[32], resp_static[32], resp_ephemeral[32];
    uint8_t init_remote_static[32], hash[TUNNEL_HASHLEN];
    bool has_remote_static, has_hash;
    size_t nmsg;
    uint8_t *payload[16], *ciphertext[16];
    size_t payload_len[16], ciphertext_len[16];
};

static size_t vectors_run, messages_checked, vectors_skipped;

/* Run one vector: both sides with the fixed keys, every message compared byte for byte. */
static void run_vector(struct vector *v)
{
    struct tunnel_handshake init, resp;
    struct tunnel_cipher isend, irecv, rsend, rrecv;
    uint8_t rpub[32], ipub[32], ihash[TUNNEL_HASHLEN], rhash[TUNNEL_HASHLEN];
    uint8_t *buf = malloc(TUNNEL_MSG_MAX), *plain = malloc(TUNNEL_MSG_MAX);
    size_t n, p;

    ck_assert_ptr_nonnull(buf);
    ck_assert_ptr_nonnull(plain);
    if (!tunnel_suite_available(v->suite)) {
        fprintf(stderr, "%s: skipped, this CPU has no AES-NI\n", v->name);
        vectors_skipped++;
        free(buf);
        free(plain);
        return;
    }
    ck_assert_msg(v->nmsg >= 2, "%s: fewer than two messages", v->name);
    ck_assert_int_eq(tunnel_public_key(v->resp_static, rpub), 0);
    ck_assert_int_eq(tunnel_public_key(v->init_static, ipub), 0);
    if (v->has_remote_static)
        ck_assert_mem_eq(rpub, v->init_remote_static, 32);

    ck_assert_int_eq(tunnel_handshake_init(&init, TUNNEL_INITIATOR, v->suite, v->prologue,
                                           v->prologue_len, v->init_static, NULL, rpub),
                     0);
    ck_assert_int_eq(tunnel_handshake_init(&resp, TUNNEL_RESPONDER, v->suite, v->prologue,
                                           v->prologue_len, v->resp_static, rpub, NULL),
                     0);
    ck_assert_int_eq(tunnel_handshake_fix_ephemeral(&init, v->init_ephemeral), 0);
    ck_assert_int_eq(tunnel_handshake_fix_ephemeral(&resp, v->resp_ephemeral), 0);

    /* -> e, es, s, ss */
    ck_assert_int_eq(
        tunnel_handshake_write(&init, v->payload[0], v->payload_len[0], buf, TUNNEL_MSG_MAX, &n),
        0);
    ck_assert_msg(n == v->ciphertext_len[0] && memcmp(buf, v->ciphertext[0], n) == 0,
                  "%s: message 0 differs", v->name);
    ck_assert_int_eq(tunnel_handshake_read(&resp, buf, n, plain, TUNNEL_MSG_MAX, &p), 0);
    ck_assert_uint_eq(p, v->payload_len[0]);
    ck_assert_mem_eq(plain, v->payload[0], p);
    ck_assert_mem_eq(tunnel_handshake_remote_static(&resp), ipub, 32);
    messages_checked++;

    /* <- e, ee, se */
    ck_assert_int_eq(
        tunnel_handshake_write(&resp, v->payload[1], v->payload_len[1], buf, TUNNEL_MSG_MAX, &n),
        0);
    ck_assert_msg(n == v->ciphertext_len[1] && memcmp(buf, v->ciphertext[1], n) == 0,
                  "%s: message 1 differs", v->name);
    ck_assert_int_eq(tunnel_handshake_read(&init, buf, n, plain, TUNNEL_MSG_MAX, &p), 0);
    ck_assert_uint_eq(p, v->payload_len[1]);
    ck_assert_mem_eq(plain, v->payload[1], p);
    messages_checked++;

    ck_assert(tunnel_handshake_done(&init) && tunnel_handshake_done(&resp));
    ck_assert_int_eq(tunnel_handshake_split(&init, &isend, &irecv, ihash), 0);
    ck_assert_int_eq(tunnel_handshake_split(&resp, &rsend, &rrecv, rhash), 0);
    ck_assert_mem_eq(ihash, rhash, sizeof(ihash));
    if (v->has_hash)
        ck_assert_mem_eq(ihash, v->hash, sizeof(ihash));

    /* Transport: initiator, responder, initiator, ... */
    for (size_t i = 2; i < v->nmsg; i++) {
        struct tunnel_cipher *enc = i % 2 == 0 ? &isend : &rsend;
        struct tunnel_cipher *dec = i % 2 == 0 ? &rrecv : &irecv;

        ck_assert_int_eq(tunnel_cipher_encrypt(enc, NULL, 0, v->payload[i], v->payload_len[i], buf),
                         0);
        n = v->payload_len[i] + TUNNEL_TAGLEN;
        ck_assert_msg(n == v->ciphertext_len[i] && memcmp(buf, v->ciphertext[i], n) == 0,
                      "%s: message %zu differs", v->name, i);
        ck_assert_int_eq(tunnel_cipher_decrypt(dec, NULL, 0, buf, n, plain), 0);
        ck_assert_mem_eq(plain, v->payload[i], v->payload_len[i]);
        messages_checked++;
    }
    tunnel_cipher_wipe(&isend);
    tunnel_cipher_wipe(&irecv);
    tunnel_cipher_wipe(&rsend);
    tunnel_cipher_wipe(&rrecv);
    free(buf);
    free(plain);
    vectors_run++;
}

static void free_vector(struct vector *v)
{
    for (size_t i = 0; i < v->nmsg; i++) {
        free(v->payload[i]);
        free(v->ciphertext[i]);
    }
    memset(v, 0, sizeof(*v));
}

static uint8_t *unhex_alloc(const char *s, size_t *len)
{
    uint8_t *p = malloc(strlen(s) / 2 + 1);

    ck_assert_ptr_nonnull(p);
    *len = unhex(s, p, strlen(s) / 2 + 1);
    return p;
}

START_TEST(test_every_published_ik_chachapoly_blake2b_vector)
{
    FILE *f = fopen(NOISE_VECTORS, "r");
    static char line[8192];
    struct vector v;
    bool in = false;

    ck_assert_msg(f != NULL, "cannot open %s", NOISE_VECTORS);
    memset(&v, 0, sizeof(v));
    vectors_run = messages_checked = vectors_skipped = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        char *eq, *val;

        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '#' || line[0] == '\0')
            continue;
        if (strcmp(line, "end") == 0) {
            ck_assert(in);
            run_vector(&v);
            free_vector(&v);
            in = false;
            continue;
        }
        eq = strchr(line, '=');
        ck_assert_msg(eq != NULL, "bad line: %s", line);
        *eq = '\0';
        val = eq + 1;
        if (strcmp(line, "vector") == 0) {
            ck_assert(!in);
            in = true;
            snprintf(v.name, sizeof(v.name), "%s", val);
        } else if (strcmp(line, "protocol") == 0) {
            if (strcmp(val, TUNNEL_PROTOCOL_NAME) == 0)
                v.suite = TUNNEL_CHACHAPOLY;
            else if (strcmp(val, TUNNEL_PROTOCOL_NAME_AESGCM) == 0)
                v.suite = TUNNEL_AESGCM;
            else
                ck_abort_msg("unknown protocol %s", val);
        } else if (strcmp(line, "prologue") == 0) {
            v.prologue_len = unhex(val, v.prologue, sizeof(v.prologue));
        } else if (strcmp(line, "init_static") == 0) {
            ck_assert_uint_eq(unhex(val, v.init_static, 32), 32);
        } else if (strcmp(line, "init_ephemeral") == 0) {
            ck_assert_uint_eq(unhex(val, v.init_ephemeral, 32), 32);
        } else if (strcmp(line, "resp_static") == 0) {
            ck_assert_uint_eq(unhex(val, v.resp_static, 32), 32);
        } else if (strcmp(line, "resp_ephemeral") == 0) {
            ck_assert_uint_eq(unhex(val, v.resp_ephemeral, 32), 32);
        } else if (strcmp(line, "init_remote_static") == 0) {
            ck_assert_uint_eq(unhex(val, v.init_remote_static, 32), 32);
            v.has_remote_static = true;
        } else if (strcmp(line, "handshake_hash") == 0) {
            ck_assert_uint_eq(unhex(val, v.hash, sizeof(v.hash)), sizeof(v.hash));
            v.has_hash = true;
        } else if (strcmp(line, "payload") == 0) {
            ck_assert_uint_lt(v.nmsg, 16);
            v.payload[v.nmsg] = unhex_alloc(val, &v.payload_len[v.nmsg]);
        } else if (strcmp(line, "ciphertext") == 0) {
            ck_assert_ptr_nonnull(v.payload[v.nmsg]);
            v.ciphertext[v.nmsg] = unhex_alloc(val, &v.ciphertext_len[v.nmsg]);
            v.nmsg++;
        } else {
            ck_abort_msg("unknown key %s", line);
        }
    }
    fclose(f);
    ck_assert(!in);
    /* Per protocol flynn 4 x 4 messages, cacophony 6, snow 4: a shorter file is a broken copy. */
    ck_assert_uint_eq(vectors_run + vectors_skipped, 12);
    ck_assert_uint_eq(messages_checked, 26 * (vectors_run / 6));
    ck_assert_uint_ge(vectors_run, 6);
    fprintf(stderr, "%zu vectors, %zu messages checked\n", vectors_run, messages_checked);
}
END_TEST

/*
 * The same vectors as the Debian package golang-github-flynn-noise-dev installs them (bootstrap
 * installs it), read in flynn/noise's own format: blocks of key=value lines started by
 * "handshake=PROTOCOL" and ended by a blank line; gen_*_ephemeral are the ephemeral private
 * keys; msg_N_payload / msg_N_ciphertext in message order. Every block of our two protocols
 * is run: the in-tree copy above cannot drift from what the package ships.
 */
START_TEST(test_flynn_noise_vectors_as_debian_ships_them)
{
    FILE *f = fopen(FLYNN_VECTORS, "r");
    static char line[16384];
    struct vector v;
    bool in = false, done = false;
    size_t chachapoly = 0, aesgcm = 0;

    ck_assert_msg(f != NULL, "cannot open %s: install golang-github-flynn-noise-dev (bootstrap does)",
                  FLYNN_VECTORS);
    memset(&v, 0, sizeof(v));
    vectors_run = messages_checked = vectors_skipped = 0;
    while (!done) {
        char *eq, *val;
        unsigned idx;
        int off = 0;

        if (fgets(line, sizeof(line), f) == NULL) {
            done = true;
            line[0] = '\0';
        }
        ck_assert_msg(done || strchr(line, '\n') != NULL, "line too long in %s", FLYNN_VECTORS);
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '\0') {
            if (in) {
                run_vector(&v);
                free_vector(&v);
                in = false;
            }
            continue;
        }
        eq = strchr(line, '=');
        ck_assert_msg(eq != NULL, "bad line: %s", line);
        *eq = '\0';
        val = eq + 1;
        if (strcmp(line, "handshake") == 0) {
            ck_assert(!in);
            if (strcmp(val, TUNNEL_PROTOCOL_NAME) == 0) {
                v.suite = TUNNEL_CHACHAPOLY;
                chachapoly++;
            } else if (strcmp(val, TUNNEL_PROTOCOL_NAME_AESGCM) == 0) {
                v.suite = TUNNEL_AESGCM;
                aesgcm++;
            } else {
                continue; /* another protocol: its lines are skipped below */
            }
            in = true;
            snprintf(v.name, sizeof(v.name), "flynn %s #%zu", val,
                     v.suite == TUNNEL_AESGCM ? aesgcm : chachapoly);
        } else if (!in) {
            continue;
        } else if (strcmp(line, "prologue") == 0) {
            v.prologue_len = unhex(val, v.prologue, sizeof(v.prologue));
        } else if (strcmp(line, "init_static") == 0) {
            ck_assert_uint_eq(unhex(val, v.init_static, 32), 32);
        } else if (strcmp(line, "gen_init_ephemeral") == 0) {
            ck_assert_uint_eq(unhex(val, v.init_ephemeral, 32), 32);
        } else if (strcmp(line, "resp_static") == 0) {
            ck_assert_uint_eq(unhex(val, v.resp_static, 32), 32);
        } else if (strcmp(line, "gen_resp_ephemeral") == 0) {
            ck_assert_uint_eq(unhex(val, v.resp_ephemeral, 32), 32);
        } else if (sscanf(line, "msg_%u_payload%n", &idx, &off) == 1 && line[off] == '\0') {
            ck_assert_uint_eq(idx, v.nmsg);
            ck_assert_uint_lt(v.nmsg, 16);
            v.payload[v.nmsg] = unhex_alloc(val, &v.payload_len[v.nmsg]);
        } else if (sscanf(line, "msg_%u_ciphertext%n", &idx, &off) == 1 && line[off] == '\0') {
            ck_assert_uint_eq(idx, v.nmsg);
            ck_assert_ptr_nonnull(v.payload[v.nmsg]);
            v.ciphertext[v.nmsg] = unhex_alloc(val, &v.ciphertext_len[v.nmsg]);
            v.nmsg++;
        } else {
            ck_abort_msg("%s: unknown key %s", v.name, line);
        }
    }
    fclose(f);
    ck_assert(!in);
    /* flynn/noise 1.0.0 has four blocks per protocol (payloads and prologue on or off), each of
     * 4 messages: 2 handshake, 2 transport. */
    ck_assert_uint_eq(chachapoly, 4);
    ck_assert_uint_eq(aesgcm, 4);
    ck_assert_uint_eq(messages_checked, 4 * vectors_run);
    ck_assert_uint_ge(vectors_run, 4);
    fprintf(stderr, "flynn/noise (Debian): %zu vectors, %zu messages checked, %zu skipped\n",
            vectors_run, messages_checked, vectors_skipped);
}
END_TEST

/* --- handshakes with fresh keys ---------------------------------------------------------- */

struct pair {
    uint8_t ipriv[32], ipub[32], rpriv[32], rpub[32];
    struct tunnel_handshake init, resp;
};

static void pair_new(struct pair *p, const char *prologue)
{
    crypto_box_keypair(p->ipub, p->ipriv);
    crypto_box_keypair(p->rpub, p->rpriv);
    ck_assert_int_eq(tunnel_handshake_init(&p->init, TUNNEL_INITIATOR, TUNNEL_CHACHAPOLY,
                                           (const uint8_t *)prologue, strlen(prologue), p->ipriv,
                                           NULL, p->rpub),
                     0);
    ck_assert_int_eq(tunnel_handshake_init(&p->resp, TUNNEL_RESPONDER, TUNNEL_CHACHAPOLY,
                                           (const uint8_t *)prologue, strlen(prologue), p->rpriv,
                                           NULL, NULL),
                     0);
}

START_TEST(test_handshake_with_random_ephemerals_then_transport)
{
    struct pair p;
    uint8_t m1[256], m2[256], pl[256], h1[TUNNEL_HASHLEN], h2[TUNNEL_HASHLEN];
    uint8_t rec[5 + TUNNEL_TAGLEN], out[5];
    struct tunnel_cipher is, ir, rs, rr;
    size_t n1, n2, pn;

    pair_new(&p, "ferry-tunnel/1");
    ck_assert_int_eq(tunnel_handshake_write(&p.init, (const uint8_t *)"hi", 2, m1, sizeof(m1), &n1),
                     0);
    ck_assert_uint_eq(n1, 2 + TUNNEL_MSG1_OVERHEAD);
    ck_assert_ptr_null(tunnel_handshake_remote_static(&p.resp));
    ck_assert_int_eq(tunnel_handshake_read(&p.resp, m1, n1, pl, sizeof(pl), &pn), 0);
    ck_assert_uint_eq(pn, 2);
    ck_assert_mem_eq(pl, "hi", 2);
    ck_assert_mem_eq(tunnel_handshake_remote_static(&p.resp), p.ipub, 32);
    ck_assert_int_eq(tunnel_handshake_write(&p.resp, NULL, 0, m2, sizeof(m2), &n2), 0);
    ck_assert_uint_eq(n2, TUNNEL_MSG2_OVERHEAD);
    ck_assert_int_eq(tunnel_handshake_read(&p.init, m2, n2, pl, sizeof(pl), &pn), 0);
    ck_assert_uint_eq(pn, 0);
    ck_assert_int_eq(tunnel_handshake_split(&p.init, &is, &ir, h1), 0);
    ck_assert_int_eq(tunnel_handshake_split(&p.resp, &rs, &rr, h2), 0);
    ck_assert_mem_eq(h1, h2, sizeof(h1));
    ck_assert_mem_ne(is.k, ir.k, 32);
    ck_assert_int_eq(tunnel_cipher_encrypt(&rs, NULL, 0, (const uint8_t *)"hello", 5, rec), 0);
    ck_assert_int_eq(tunnel_cipher_decrypt(&ir, NULL, 0, rec, sizeof(rec), out), 0);
    ck_assert_mem_eq(out, "hello", 5);
    /* The handshake state is gone. */
    ck_assert_int_eq(tunnel_handshake_split(&p.init, &is, &ir, NULL), TUNNEL_ERR_STATE);
}
END_TEST

START_TEST(test_every_bit_flip_of_either_handshake_message_fails)
{
    struct pair p;
    uint8_t m1[TUNNEL_MSG1_OVERHEAD + 4], m2[TUNNEL_MSG2_OVERHEAD + 4], pl[64];
    struct tunnel_handshake r2, i2;
    size_t n1, n2, pn;

    pair_new(&p, "v1");
    ck_assert_int_eq(
        tunnel_handshake_write(&p.init, (const uint8_t *)"abcd", 4, m1, sizeof(m1), &n1), 0);
    for (size_t bit = 0; bit < n1 * 8; bit++) {
        r2 = p.resp;
        m1[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        ck_assert_int_lt(tunnel_handshake_read(&r2, m1, n1, pl, sizeof(pl), &pn), 0);
        ck_assert_int_eq(r2.step, -1);
        m1[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    ck_assert_int_eq(tunnel_handshake_read(&p.resp, m1, n1, pl, sizeof(pl), &pn), 0);
    ck_assert_int_eq(
        tunnel_handshake_write(&p.resp, (const uint8_t *)"wxyz", 4, m2, sizeof(m2), &n2), 0);
    for (size_t bit = 0; bit < n2 * 8; bit++) {
        i2 = p.init;
        m2[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        ck_assert_int_lt(tunnel_handshake_read(&i2, m2, n2, pl, sizeof(pl), &pn), 0);
        m2[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    ck_assert_int_eq(tunnel_handshake_read(&p.init, m2, n2, pl, sizeof(pl), &pn), 0);
    /* Cut short by any number of bytes: refused too. */
    {
        struct pair q;

        pair_new(&q, "v1");
        ck_assert_int_eq(tunnel_handshake_write(&q.init, NULL, 0, m1, sizeof(m1), &n1), 0);
        for (size_t len = 0; len < n1; len++) {
            r2 = q.resp;
            ck_assert_int_lt(tunnel_handshake_read(&r2, m1, len, pl, sizeof(pl), &pn), 0);
        }
        ck_assert_int_eq(tunnel_handshake_read(&q.resp, m1, n1, pl, sizeof(pl), &pn), 0);
    }
}
END_TEST

START_TEST(test_wrong_server_key_or_prologue_fails_at_the_server)
{
    struct pair p;
    uint8_t other_pub[32], other_priv[32], m1[TUNNEL_MSG1_OVERHEAD], pl[16];
    struct tunnel_handshake init, resp;
    size_t n, pn;

    pair_new(&p, "ferry-tunnel/1");
    crypto_box_keypair(other_pub, other_priv);
    ck_assert_int_eq(tunnel_handshake_init(&init, TUNNEL_INITIATOR, TUNNEL_CHACHAPOLY,
                                           (const uint8_t *)"ferry-tunnel/1", 14, p.ipriv, NULL,
                                           other_pub),
                     0);
    ck_assert_int_eq(tunnel_handshake_write(&init, NULL, 0, m1, sizeof(m1), &n), 0);
    ck_assert_int_eq(tunnel_handshake_read(&p.resp, m1, n, pl, sizeof(pl), &pn),
                     TUNNEL_ERR_DECRYPT);
    ck_assert_ptr_null(tunnel_handshake_remote_static(&p.resp));

    /* Another version string in the prologue: refused the same way. */
    ck_assert_int_eq(tunnel_handshake_init(&init, TUNNEL_INITIATOR, TUNNEL_CHACHAPOLY,
                                           (const uint8_t *)"ferry-tunnel/2", 14, p.ipriv, NULL,
                                           p.rpub),
                     0);
    ck_assert_int_eq(tunnel_handshake_init(&resp, TUNNEL_RESPONDER, TUNNEL_CHACHAPOLY,
                                           (const uint8_t *)"ferry-tunnel/1", 14, p.rpriv, NULL,
                                           NULL),
                     0);
    ck_assert_int_eq(tunnel_handshake_write(&init, NULL, 0, m1, sizeof(m1), &n), 0);
    ck_assert_int_eq(tunnel_handshake_read(&resp, m1, n, pl, sizeof(pl), &pn), TUNNEL_ERR_DECRYPT);
}
END_TEST

START_TEST(test_small_order_ephemeral_is_refused)
{
    struct pair p;
    uint8_t m1[TUNNEL_MSG1_OVERHEAD], pl[16];
    size_t n, pn;

    pair_new(&p, "");
    ck_assert_int_eq(tunnel_handshake_write(&p.init, NULL, 0, m1, sizeof(m1), &n), 0);
    memset(m1, 0, TUNNEL_DHLEN); /* the point of order 1: every DH with it is zero */
    ck_assert_int_eq(tunnel_handshake_read(&p.resp, m1, n, pl, sizeof(pl), &pn), TUNNEL_ERR_DH);
    m1[0] = 1; /* u = 1, order 4 */
    pair_new(&p, "");
    ck_assert_int_eq(tunnel_handshake_read(&p.resp, m1, n, pl, sizeof(pl), &pn), TUNNEL_ERR_DH);
}
END_TEST

START_TEST(test_calls_out_of_turn_are_refused)
{
    struct pair p;
    uint8_t m[TUNNEL_MSG1_OVERHEAD + 8], pl[64], big[1];
    uint8_t pub[32];
    size_t n, pn;

    pair_new(&p, "");
    /* The responder cannot speak first, nor the initiator read first. */
    ck_assert_int_eq(tunnel_handshake_write(&p.resp, NULL, 0, m, sizeof(m), &n), TUNNEL_ERR_STATE);
    ck_assert_int_eq(tunnel_handshake_read(&p.init, m, TUNNEL_MSG2_OVERHEAD, pl, sizeof(pl), &pn),
                     TUNNEL_ERR_STATE);
    ck_assert_int_eq(tunnel_handshake_split(&p.init, NULL, NULL, NULL), TUNNEL_ERR_STATE);
    /* Too small an output buffer, too long a payload. */
    ck_assert_int_eq(tunnel_handshake_write(&p.init, NULL, 0, m, TUNNEL_MSG1_OVERHEAD - 1, &n),
                     TUNNEL_ERR_SPACE);
    ck_assert_int_eq(tunnel_handshake_write(&p.init, big, TUNNEL_MSG_MAX, m, sizeof(m), &n),
                     TUNNEL_ERR_TOO_LONG);
    ck_assert_int_eq(tunnel_handshake_write(&p.init, NULL, 0, m, sizeof(m), &n), 0);
    ck_assert_int_eq(tunnel_handshake_write(&p.init, NULL, 0, m, sizeof(m), &n), TUNNEL_ERR_STATE);
    ck_assert_int_eq(tunnel_handshake_read(&p.resp, m, TUNNEL_MSG_MAX + 1, pl, sizeof(pl), &pn),
                     TUNNEL_ERR_TOO_LONG);
    ck_assert_int_eq(tunnel_handshake_read(&p.resp, m, n, pl, sizeof(pl), &pn), TUNNEL_ERR_STATE);
    /* A role without its keys. */
    crypto_box_keypair(pub, p.ipriv);
    ck_assert_int_eq(tunnel_handshake_init(&p.init, TUNNEL_INITIATOR, TUNNEL_CHACHAPOLY, NULL, 0,
                                           p.ipriv, NULL, NULL),
                     TUNNEL_ERR_STATE);
    ck_assert_int_eq(tunnel_handshake_init(&p.resp, TUNNEL_RESPONDER, TUNNEL_CHACHAPOLY, NULL, 0,
                                           p.rpriv, NULL, pub),
                     TUNNEL_ERR_STATE);
    /* AESGCM only where the CPU runs it. */
    ck_assert_int_eq(tunnel_handshake_init(&p.init, TUNNEL_INITIATOR, TUNNEL_AESGCM, NULL, 0,
                                           p.ipriv, NULL, p.rpub),
                     tunnel_suite_available(TUNNEL_AESGCM) ? TUNNEL_OK : TUNNEL_ERR_STATE);
    ck_assert_str_eq(tunnel_strerror(TUNNEL_ERR_DECRYPT), "authentication failed");
}
END_TEST

static Suite *tunnel_noise_suite(void)
{
    Suite *s = suite_create("tunnel_noise");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_hmac_blake2b_matches_python_hmac);
    tcase_add_test(tc, test_hkdf_three_outputs_match_python);
    tcase_add_test(tc, test_rekey_is_encrypt_at_maxnonce_of_zeros);
    tcase_add_test(tc, test_aesgcm_nonce_is_big_endian_and_rekey_matches_python);
    tcase_add_test(tc, test_nonce_max_is_reserved_for_both_directions);
    tcase_add_test(tc, test_failed_decrypt_keeps_the_nonce);
    tcase_add_test(tc, test_every_published_ik_chachapoly_blake2b_vector);
    tcase_add_test(tc, test_flynn_noise_vectors_as_debian_ships_them);
    tcase_add_test(tc, test_handshake_with_random_ephemerals_then_transport);
    tcase_add_test(tc, test_every_bit_flip_of_either_handshake_message_fails);
    tcase_add_test(tc, test_wrong_server_key_or_prologue_fails_at_the_server);
    tcase_add_test(tc, test_small_order_ephemeral_is_refused);
    tcase_add_test(tc, test_calls_out_of_turn_are_refused);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr;
    int failed;

    if (sodium_init() < 0)
        return 1;
    sr = srunner_create(tunnel_noise_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
