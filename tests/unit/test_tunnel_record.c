/*
 * Unit tests for src/tunnel_record.c: records sealed and opened over a real IK handshake's
 * CipherStates; every single-bit flip, every truncation, reordering, replay and dropping is
 * detected; rekeying keeps both sides in step; an authenticated end differs from a cut; the
 * handshake payload and the first-message replay check.
 */
#include "config.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "ferry/tunnel_noise.h"
#include "ferry/tunnel_record.h"

/* Both directions of one connection, from a real handshake. */
struct link {
    struct tunnel_record_tx ctx, stx; /* client sends, server sends */
    struct tunnel_record_rx crx, srx;
};

static void link_new_suite(struct link *l, enum tunnel_suite suite)
{
    uint8_t ipub[32], ipriv[32], rpub[32], rpriv[32], m1[256], m2[256], pl[256];
    uint8_t hello[TUNNEL_HELLO_LEN];
    struct tunnel_hello h = {.flags = 0};
    struct tunnel_handshake init, resp;
    struct tunnel_cipher a, b;
    size_t n1, n2, pn;

    crypto_box_keypair(ipub, ipriv);
    crypto_box_keypair(rpub, rpriv);
    tunnel_tai64n(1700000000, 5, h.timestamp);
    tunnel_hello_encode(&h, hello);
    ck_assert_int_eq(tunnel_handshake_init(&init, TUNNEL_INITIATOR, suite,
                                           (const uint8_t *)TUNNEL_PROLOGUE,
                                           strlen(TUNNEL_PROLOGUE), ipriv, NULL, rpub),
                     0);
    ck_assert_int_eq(tunnel_handshake_init(&resp, TUNNEL_RESPONDER, suite,
                                           (const uint8_t *)TUNNEL_PROLOGUE,
                                           strlen(TUNNEL_PROLOGUE), rpriv, NULL, NULL),
                     0);
    ck_assert_int_eq(tunnel_handshake_write(&init, hello, sizeof(hello), m1, sizeof(m1), &n1), 0);
    ck_assert_int_eq(tunnel_handshake_read(&resp, m1, n1, pl, sizeof(pl), &pn), 0);
    ck_assert_int_eq(tunnel_hello_parse(pl, pn, &h), 0);
    ck_assert_int_eq(tunnel_tai64n_unix(h.timestamp), 1700000000);
    ck_assert_int_eq(tunnel_handshake_write(&resp, NULL, 0, m2, sizeof(m2), &n2), 0);
    ck_assert_int_eq(tunnel_handshake_read(&init, m2, n2, pl, sizeof(pl), &pn), 0);
    ck_assert_int_eq(tunnel_handshake_split(&init, &a, &b, NULL), 0);
    tunnel_record_tx_init(&l->ctx, &a);
    tunnel_record_rx_init(&l->crx, &b);
    ck_assert(!tunnel_cipher_has_key(&a)); /* taken over and wiped */
    ck_assert_int_eq(tunnel_handshake_split(&resp, &a, &b, NULL), 0);
    tunnel_record_tx_init(&l->stx, &a);
    tunnel_record_rx_init(&l->srx, &b);
}

static void link_new(struct link *l)
{
    link_new_suite(l, TUNNEL_CHACHAPOLY);
}

static size_t seal(struct tunnel_record_tx *tx, uint8_t type, uint32_t stream, const char *text,
                   uint8_t *out)
{
    size_t len = text != NULL ? strlen(text) : 0, n;

    ck_assert_int_eq(tunnel_record_seal(tx, type, stream, (const uint8_t *)text, len, out,
                                        TUNNEL_RECORD_SEAL_MAX(len), &n),
                     TUNNEL_REC_OK);
    return n;
}

START_TEST(test_round_trip_each_record_type_both_ways)
{
    static const uint8_t open_req[18] = "\x05\x01\x00\x03\x0b"
                                        "example.com\x00\x50";
    struct link l;
    uint8_t buf[256];
    struct tunnel_record rec;
    size_t n, used;

    link_new(&l);
    ck_assert_int_eq(
        tunnel_record_seal(&l.ctx, TUNNEL_REC_OPEN, 1, open_req, 18, buf, sizeof(buf), &n), 0);
    ck_assert_uint_eq(n, TUNNEL_RECORD_SIZE(18));
    ck_assert_int_eq(tunnel_record_open(&l.srx, buf, n, &rec, &used), TUNNEL_REC_OK);
    ck_assert_uint_eq(used, n);
    ck_assert_uint_eq(rec.type, TUNNEL_REC_OPEN);
    ck_assert_uint_eq(rec.stream, 1);
    ck_assert_uint_eq(rec.len, 18);
    ck_assert_mem_eq(rec.payload, open_req, 18);

    n = seal(&l.stx, TUNNEL_REC_REPLY, 1, "\x05\x00\x00\x01\x7f\x00\x00\x01\x00\x50", buf);
    ck_assert_int_eq(tunnel_record_open(&l.crx, buf, n, &rec, &used), TUNNEL_REC_OK);
    ck_assert_uint_eq(rec.type, TUNNEL_REC_REPLY);

    n = seal(&l.ctx, TUNNEL_REC_DATA, 0xfffffffe, "GET / HTTP/1.0\r\n\r\n", buf);
    ck_assert_int_eq(tunnel_record_open(&l.srx, buf, n, &rec, &used), TUNNEL_REC_OK);
    ck_assert_uint_eq(rec.stream, 0xfffffffe);
    ck_assert_mem_eq(rec.payload, "GET / HTTP/1.0\r\n\r\n", rec.len);

    n = seal(&l.ctx, TUNNEL_REC_EOF, 1, NULL, buf);
    ck_assert_uint_eq(n, TUNNEL_RECORD_HEADER_SEALED);
    ck_assert_int_eq(tunnel_record_open(&l.srx, buf, n, &rec, &used), TUNNEL_REC_OK);
    ck_assert_uint_eq(rec.type, TUNNEL_REC_EOF);
    ck_assert_uint_eq(rec.len, 0);
    ck_assert_ptr_null(rec.payload);

    n = seal(&l.stx, TUNNEL_REC_WINDOW, 1, "\x7f\x01\x02\x03", buf);
    ck_assert_int_eq(tunnel_record_open(&l.crx, buf, n, &rec, &used), TUNNEL_REC_OK);
    n = seal(&l.stx, TUNNEL_REC_PING, 0, "12345678", buf);
    ck_assert_int_eq(tunnel_record_open(&l.crx, buf, n, &rec, &used), TUNNEL_REC_OK);
    ck_assert_uint_eq(rec.type, TUNNEL_REC_PING);
    n = seal(&l.stx, TUNNEL_REC_RESET, 3, "\x01", buf);
    ck_assert_int_eq(tunnel_record_open(&l.crx, buf, n, &rec, &used), TUNNEL_REC_OK);
    ck_assert_uint_eq(rec.type, TUNNEL_REC_RESET);
}
END_TEST

START_TEST(test_largest_record_and_pipelined_records)
{
    struct link l;
    size_t big = TUNNEL_RECORD_PAYLOAD_MAX, n1, n2, used;
    uint8_t *payload = malloc(big), *buf = malloc(2 * TUNNEL_RECORD_SEAL_MAX(big));
    struct tunnel_record rec;

    link_new(&l);
    randombytes_buf(payload, big);
    ck_assert_int_eq(tunnel_record_seal(&l.ctx, TUNNEL_REC_DATA, 7, payload, big, buf,
                                        TUNNEL_RECORD_SEAL_MAX(big), &n1),
                     0);
    ck_assert_int_eq(tunnel_record_seal(&l.ctx, TUNNEL_REC_DATA, 9, payload, 1, buf + n1,
                                        TUNNEL_RECORD_SEAL_MAX(1), &n2),
                     0);
    /* One byte too many is refused before anything is sealed. */
    ck_assert_int_eq(tunnel_record_seal(&l.ctx, TUNNEL_REC_DATA, 7, payload, big + 1, buf,
                                        TUNNEL_RECORD_SEAL_MAX(big + 1), &used),
                     TUNNEL_REC_ERR_PROTO);
    ck_assert_int_eq(tunnel_record_open(&l.srx, buf, n1 + n2, &rec, &used), TUNNEL_REC_OK);
    ck_assert_uint_eq(used, n1);
    ck_assert_uint_eq(rec.len, big);
    ck_assert_mem_eq(rec.payload, payload, big);
    ck_assert_int_eq(tunnel_record_open(&l.srx, buf + n1, n2, &rec, &used), TUNNEL_REC_OK);
    ck_assert_uint_eq(rec.stream, 9);
    ck_assert_int_eq(tunnel_record_open(&l.srx, buf + n1 + n2, 0, &rec, &used),
                     TUNNEL_REC_NEED_MORE);
    free(payload);
    free(buf);
}
END_TEST

START_TEST(test_every_single_bit_flip_is_detected)
{
    struct link l;
    uint8_t buf[128], copy[128];
    struct tunnel_record rec;
    size_t n, used, flips = 0;

    link_new(&l);
    n = seal(&l.ctx, TUNNEL_REC_DATA, 5, "attack at dawn", buf);
    for (size_t bit = 0; bit < n * 8; bit++) {
        struct tunnel_record_rx rx = l.srx;
        int r;

        memcpy(copy, buf, n);
        copy[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        r = tunnel_record_open(&rx, copy, n, &rec, &used);
        ck_assert_msg(r == TUNNEL_REC_ERR_AUTH, "bit %zu: %d", bit, r);
        ck_assert(rx.failed);
        /* Failed for good. */
        ck_assert_int_eq(tunnel_record_open(&rx, buf, n, &rec, &used), TUNNEL_REC_ERR_STATE);
        flips++;
    }
    ck_assert_uint_eq(flips, TUNNEL_RECORD_SIZE(14) * 8);
    ck_assert_int_eq(tunnel_record_open(&l.srx, buf, n, &rec, &used), TUNNEL_REC_OK);
}
END_TEST

START_TEST(test_aesgcm_records_round_trip_and_flips_fail)
{
    struct link l;
    uint8_t buf[128], copy[128];
    struct tunnel_record rec;
    size_t n, used;

    if (!tunnel_suite_available(TUNNEL_AESGCM))
        return;
    link_new_suite(&l, TUNNEL_AESGCM);
    tunnel_record_tx_rekey_after(&l.ctx, 1, 0);
    for (int i = 0; i < 3; i++) {
        n = seal(&l.ctx, TUNNEL_REC_DATA, 2, "over AES-256-GCM", buf);
        for (size_t bit = 0; bit < n * 8; bit += 7) {
            struct tunnel_record_rx rx = l.srx;
            size_t off = 0;
            int r;

            memcpy(copy, buf, n);
            copy[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            /* A REKEY record before the flipped byte still opens; the one holding it does not. */
            while ((r = tunnel_record_open(&rx, copy + off, n - off, &rec, &used)) == 0)
                off += used;
            ck_assert_int_eq(r, TUNNEL_REC_ERR_AUTH);
            ck_assert_uint_le(off, bit / 8);
        }
        ck_assert_int_eq(tunnel_record_open(&l.srx, buf, n, &rec, &used), 0);
        if (rec.type == TUNNEL_REC_REKEY)
            ck_assert_int_eq(tunnel_record_open(&l.srx, buf + used, n - used, &rec, &used), 0);
        ck_assert_uint_eq(rec.type, TUNNEL_REC_DATA);
        ck_assert_mem_eq(rec.payload, "over AES-256-GCM", rec.len);
    }
}
END_TEST

START_TEST(test_msg1_prefix_carries_the_suite_and_leaves_version_1_unchanged)
{
    enum tunnel_suite suite;
    uint8_t b[TUNNEL_MSG1_PREFIX];
    size_t len;

    /* ChaChaPoly: the plain big-endian length, version 1's format. */
    tunnel_msg1_prefix_encode(TUNNEL_CHACHAPOLY, 110, b);
    ck_assert_mem_eq(b, "\x00\x6e", 2);
    tunnel_msg1_prefix_encode(TUNNEL_AESGCM, 1120, b);
    ck_assert_mem_eq(b, "\x14\x60", 2);
    ck_assert_int_eq(tunnel_msg1_prefix_parse(b, &suite, &len), 0);
    ck_assert_int_eq(suite, TUNNEL_AESGCM);
    ck_assert_uint_eq(len, 1120);
    ck_assert_int_eq(tunnel_msg1_prefix_parse((const uint8_t *)"\x04\x60", &suite, &len), 0);
    ck_assert_int_eq(suite, TUNNEL_CHACHAPOLY);
    ck_assert_uint_eq(len, 1120);
    for (unsigned code = 2; code < 16; code++) {
        b[0] = (uint8_t)(code << 4);
        b[1] = 110;
        ck_assert_int_eq(tunnel_msg1_prefix_parse(b, &suite, &len), -1);
        ck_assert_uint_eq(len, 110);
    }
    ck_assert_str_eq(tunnel_suite_name(TUNNEL_AESGCM), "aes-256-gcm");
    ck_assert_str_eq(tunnel_suite_name(TUNNEL_CHACHAPOLY), "chacha20-poly1305");
    ck_assert_int_eq(tunnel_suite_parse("aes-256-gcm", &suite), 0);
    ck_assert_int_eq(suite, TUNNEL_AESGCM);
    ck_assert_int_eq(tunnel_suite_parse("chacha20-poly1305", &suite), 0);
    ck_assert_int_eq(suite, TUNNEL_CHACHAPOLY);
    ck_assert_int_eq(tunnel_suite_parse("aes-128-gcm", &suite), -1);
    ck_assert_int_eq(tunnel_suite_parse("", &suite), -1);
}
END_TEST

/* A first message with its prefix, as the client sends it; its length in *n. */
static void msg1_with_prefix(enum tunnel_suite suite, const uint8_t rpub[32], uint8_t *out,
                             size_t size, size_t *n)
{
    uint8_t ipub[32], ipriv[32], hello[TUNNEL_HELLO_LEN];
    struct tunnel_hello h = {.flags = 0};
    struct tunnel_handshake init;

    crypto_box_keypair(ipub, ipriv);
    tunnel_tai64n(1700000000, 7, h.timestamp);
    tunnel_hello_encode(&h, hello);
    ck_assert_int_eq(tunnel_handshake_init(&init, TUNNEL_INITIATOR, suite,
                                           (const uint8_t *)TUNNEL_PROLOGUE,
                                           strlen(TUNNEL_PROLOGUE), ipriv, NULL, rpub),
                     0);
    ck_assert_int_eq(tunnel_handshake_write(&init, hello, sizeof(hello), out + 2, size - 2, n), 0);
    tunnel_msg1_prefix_encode(suite, *n, out);
    *n += 2;
    tunnel_handshake_wipe(&init);
}

/* The server's side of doc 2.2: the suite from the prefix, then ReadMessage under it. */
static int server_reads_msg1(const uint8_t *msg, size_t n, const uint8_t rpriv[32])
{
    struct tunnel_handshake resp;
    enum tunnel_suite suite;
    uint8_t pl[TUNNEL_HELLO_MAX];
    size_t len, pn;
    int r;

    if (tunnel_msg1_prefix_parse(msg, &suite, &len) < 0 || len != n - 2)
        return -100;
    r = tunnel_handshake_init(&resp, TUNNEL_RESPONDER, suite, (const uint8_t *)TUNNEL_PROLOGUE,
                              strlen(TUNNEL_PROLOGUE), rpriv, NULL, NULL);
    if (r == TUNNEL_OK)
        r = tunnel_handshake_read(&resp, msg + 2, len, pl, sizeof(pl), &pn);
    tunnel_handshake_wipe(&resp);
    return r;
}

START_TEST(test_a_flipped_suite_code_fails_the_handshake)
{
    uint8_t rpub[32], rpriv[32], m1[256];
    size_t n;

    if (!tunnel_suite_available(TUNNEL_AESGCM))
        return;
    crypto_box_keypair(rpub, rpriv);
    msg1_with_prefix(TUNNEL_AESGCM, rpub, m1, sizeof(m1), &n);
    ck_assert_uint_eq(m1[0] >> 4, 1);
    ck_assert_int_eq(server_reads_msg1(m1, n, rpriv), TUNNEL_OK);
    /* Downgraded to ChaChaPoly on the way: the protocol name differs, ReadMessage fails. */
    m1[0] &= 0x0f;
    ck_assert_int_eq(server_reads_msg1(m1, n, rpriv), TUNNEL_ERR_DECRYPT);
    /* And the other way. */
    msg1_with_prefix(TUNNEL_CHACHAPOLY, rpub, m1, sizeof(m1), &n);
    ck_assert_uint_eq(m1[0], 0);
    ck_assert_int_eq(server_reads_msg1(m1, n, rpriv), TUNNEL_OK);
    m1[0] |= 0x10;
    ck_assert_int_eq(server_reads_msg1(m1, n, rpriv), TUNNEL_ERR_DECRYPT);
}
END_TEST

/* AES-256-GCM with the counter big-endian in the nonce (Noise 12.4), straight from libsodium. */
static int aesgcm_open(const uint8_t k[32], uint64_t n, const uint8_t *in, size_t len, uint8_t *out)
{
    uint8_t nonce[12] = {0};

    for (int i = 0; i < 8; i++)
        nonce[11 - i] = (uint8_t)(n >> (8 * i));
    return crypto_aead_aes256gcm_decrypt(out, NULL, NULL, in, len, NULL, 0, nonce, k);
}

START_TEST(test_aesgcm_records_are_aes_gcm_and_rekey_under_it)
{
    struct link l;
    uint8_t buf[256], k[32], hdr[TUNNEL_RECORD_HEADER], body[64], zeros[32] = {0};
    uint8_t block[48], nonce[12];
    struct tunnel_record rec;
    size_t n, used;

    if (!tunnel_suite_available(TUNNEL_AESGCM))
        return;
    link_new_suite(&l, TUNNEL_AESGCM);
    ck_assert_int_eq(l.ctx.cipher.suite, TUNNEL_AESGCM);
    ck_assert_int_eq(l.srx.cipher.suite, TUNNEL_AESGCM);
    /* The first record is AES-256-GCM at nonces 0 and 1, opened without our code. */
    memcpy(k, l.ctx.cipher.k, 32);
    n = seal(&l.ctx, TUNNEL_REC_DATA, 5, "aes", buf);
    ck_assert_int_eq(aesgcm_open(k, 0, buf, TUNNEL_RECORD_HEADER_SEALED, hdr), 0);
    ck_assert_mem_eq(hdr, "\x01\x00\x00\x00\x05\x00\x03", TUNNEL_RECORD_HEADER);
    ck_assert_int_eq(aesgcm_open(k, 1, buf + TUNNEL_RECORD_HEADER_SEALED, 3 + TUNNEL_TAGLEN, body),
                     0);
    ck_assert_mem_eq(body, "aes", 3);
    ck_assert_int_eq(tunnel_record_open(&l.srx, buf, n, &rec, &used), 0);

    /* REKEY: the sender's key becomes AES-GCM's ENCRYPT(k, 2^64-1, "", zeros)[0..32]. */
    memset(nonce, 0xff, sizeof(nonce));
    memset(nonce, 0, 4);
    crypto_aead_aes256gcm_encrypt(block, NULL, zeros, sizeof(zeros), NULL, 0, NULL, nonce, k);
    n = seal(&l.ctx, TUNNEL_REC_REKEY, 0, NULL, buf);
    ck_assert_mem_eq(l.ctx.cipher.k, block, 32);
    ck_assert_int_eq(tunnel_record_open(&l.srx, buf, n, &rec, &used), 0);
    ck_assert_uint_eq(rec.type, TUNNEL_REC_REKEY);
    ck_assert_mem_eq(l.srx.cipher.k, block, 32);
    /* The counter goes on (Noise 11.3): the next record is at nonces 3 and 4 under the new key. */
    n = seal(&l.ctx, TUNNEL_REC_DATA, 5, "after", buf);
    ck_assert_int_eq(aesgcm_open(block, 3, buf, TUNNEL_RECORD_HEADER_SEALED, hdr), 0);
    ck_assert_int_eq(tunnel_record_open(&l.srx, buf, n, &rec, &used), 0);
    ck_assert_mem_eq(rec.payload, "after", 5);
    /* Many records with a rekey every 2: both sides stay in step. */
    tunnel_record_tx_rekey_after(&l.ctx, 2, 0);
    for (int i = 0; i < 9; i++) {
        n = seal(&l.ctx, TUNNEL_REC_DATA, 5, "step", buf);
        for (size_t off = 0; off < n; off += used) {
            ck_assert_int_eq(tunnel_record_open(&l.srx, buf + off, n - off, &rec, &used), 0);
        }
        ck_assert_uint_eq(rec.type, TUNNEL_REC_DATA);
    }
    ck_assert_mem_eq(l.ctx.cipher.k, l.srx.cipher.k, 32);
    ck_assert_mem_ne(l.ctx.cipher.k, block, 32);
}
END_TEST

START_TEST(test_every_truncation_waits_then_counts_as_a_cut)
{
    struct link l;
    uint8_t buf[128];
    struct tunnel_record rec;
    size_t n, used;

    link_new(&l);
    n = seal(&l.ctx, TUNNEL_REC_DATA, 5, "half a record", buf);
    for (size_t k = 0; k < n; k++) {
        uint8_t *part = malloc(k > 0 ? k : 1);

        memcpy(part, buf, k);
        ck_assert_int_eq(tunnel_record_open(&l.srx, part, k, &rec, &used), TUNNEL_REC_NEED_MORE);
        ck_assert_uint_eq(used, 0);
        ck_assert_int_eq(tunnel_record_eof(&l.srx, k), TUNNEL_REC_ERR_TRUNCATED);
        free(part);
    }
    /* NEED_MORE changed nothing: the whole record still opens. */
    ck_assert_int_eq(tunnel_record_open(&l.srx, buf, n, &rec, &used), TUNNEL_REC_OK);
    ck_assert_mem_eq(rec.payload, "half a record", rec.len);
}
END_TEST

START_TEST(test_reordered_replayed_or_dropped_records_fail)
{
    struct link l;
    uint8_t a[64], b[64], c[64], a2[64];
    struct tunnel_record rec;
    size_t na, nb, nc, used;
    struct tunnel_record_rx rx;

    link_new(&l);
    na = seal(&l.ctx, TUNNEL_REC_DATA, 1, "first", a);
    nb = seal(&l.ctx, TUNNEL_REC_DATA, 1, "second", b);
    nc = seal(&l.ctx, TUNNEL_REC_DATA, 1, "third", c);

    rx = l.srx; /* reordered: b before a */
    ck_assert_int_eq(tunnel_record_open(&rx, b, nb, &rec, &used), TUNNEL_REC_ERR_AUTH);
    rx = l.srx; /* dropped: c after a */
    memcpy(a2, a, na);
    ck_assert_int_eq(tunnel_record_open(&rx, a2, na, &rec, &used), TUNNEL_REC_OK);
    ck_assert_int_eq(tunnel_record_open(&rx, c, nc, &rec, &used), TUNNEL_REC_ERR_AUTH);
    rx = l.srx; /* replayed: a twice */
    memcpy(a2, a, na);
    ck_assert_int_eq(tunnel_record_open(&rx, a2, na, &rec, &used), TUNNEL_REC_OK);
    memcpy(a2, a, na);
    ck_assert_int_eq(tunnel_record_open(&rx, a2, na, &rec, &used), TUNNEL_REC_ERR_AUTH);
    /* The other direction's records are not this one's. */
    ck_assert_int_eq(tunnel_record_open(&l.crx, a, na, &rec, &used), TUNNEL_REC_ERR_AUTH);
    /* In order: all three. */
    ck_assert_int_eq(tunnel_record_open(&l.srx, a, na, &rec, &used), TUNNEL_REC_OK);
    ck_assert_int_eq(tunnel_record_open(&l.srx, b, nb, &rec, &used), TUNNEL_REC_OK);
    ck_assert_int_eq(tunnel_record_open(&l.srx, c, nc, &rec, &used), TUNNEL_REC_OK);
    ck_assert_mem_eq(rec.payload, "third", 5);
}
END_TEST

START_TEST(test_rekey_keeps_both_sides_in_step)
{
    struct link l;
    uint8_t buf[4096], key0[32];
    struct tunnel_record rec;
    size_t n = 0, off = 0, used, rekeys = 0, data = 0;

    link_new(&l);
    memcpy(key0, l.ctx.cipher.k, 32);
    tunnel_record_tx_rekey_after(&l.ctx, 3, 0);
    for (int i = 0; i < 10; i++) {
        size_t m;
        ck_assert_int_eq(tunnel_record_seal(&l.ctx, TUNNEL_REC_DATA, 1, (const uint8_t *)"x", 1,
                                            buf + n, sizeof(buf) - n, &m),
                         0);
        n += m;
    }
    /* Ten records, a REKEY before the 4th, 7th and 10th. */
    ck_assert_uint_eq(n, 10 * TUNNEL_RECORD_SIZE(1) + 3 * TUNNEL_RECORD_HEADER_SEALED);
    ck_assert_mem_ne(l.ctx.cipher.k, key0, 32);
    while (off < n) {
        ck_assert_int_eq(tunnel_record_open(&l.srx, buf + off, n - off, &rec, &used), 0);
        off += used;
        if (rec.type == TUNNEL_REC_REKEY)
            rekeys++;
        else
            data++;
    }
    ck_assert_uint_eq(rekeys, 3);
    ck_assert_uint_eq(data, 10);
    ck_assert_mem_eq(l.ctx.cipher.k, l.srx.cipher.k, 32);

    /* An explicit REKEY, then a byte limit. */
    n = seal(&l.ctx, TUNNEL_REC_REKEY, 0, NULL, buf);
    ck_assert_int_eq(tunnel_record_open(&l.srx, buf, n, &rec, &used), 0);
    tunnel_record_tx_rekey_after(&l.ctx, 1000, 10);
    n = seal(&l.ctx, TUNNEL_REC_DATA, 1, "0123456789", buf);
    ck_assert_uint_eq(n, TUNNEL_RECORD_SIZE(10));
    n = seal(&l.ctx, TUNNEL_REC_DATA, 1, "a", buf);
    ck_assert_uint_eq(n, TUNNEL_RECORD_SIZE(1) + TUNNEL_RECORD_HEADER_SEALED);

    /* A receiver that misses the REKEY (it was cut out) cannot read on. */
    link_new(&l);
    tunnel_record_tx_rekey_after(&l.ctx, 1, 0);
    n = seal(&l.ctx, TUNNEL_REC_DATA, 1, "a", buf);
    ck_assert_int_eq(tunnel_record_open(&l.srx, buf, n, &rec, &used), 0);
    n = seal(&l.ctx, TUNNEL_REC_DATA, 1, "b", buf);
    ck_assert_uint_eq(n, TUNNEL_RECORD_HEADER_SEALED + TUNNEL_RECORD_SIZE(1));
    ck_assert_int_eq(tunnel_record_open(&l.srx, buf + TUNNEL_RECORD_HEADER_SEALED,
                                        n - TUNNEL_RECORD_HEADER_SEALED, &rec, &used),
                     TUNNEL_REC_ERR_AUTH);
}
END_TEST

START_TEST(test_receiver_limit_without_rekey_is_a_protocol_error)
{
    struct link l;
    uint8_t buf[64];
    struct tunnel_record rec;
    size_t n, used;

    link_new(&l);
    tunnel_record_rx_limit(&l.srx, 2);
    for (int i = 0; i < 2; i++) {
        n = seal(&l.ctx, TUNNEL_REC_DATA, 1, "a", buf);
        ck_assert_int_eq(tunnel_record_open(&l.srx, buf, n, &rec, &used), 0);
    }
    n = seal(&l.ctx, TUNNEL_REC_REKEY, 0, NULL, buf);
    ck_assert_int_eq(tunnel_record_open(&l.srx, buf, n, &rec, &used), TUNNEL_REC_ERR_PROTO);
}
END_TEST

START_TEST(test_authenticated_close_differs_from_a_cut)
{
    struct link l;
    uint8_t buf[256];
    struct tunnel_record rec;
    size_t n, used;

    link_new(&l);
    /* A stream's half-close is its own authenticated record; the connection goes on. */
    n = seal(&l.ctx, TUNNEL_REC_DATA, 1, "request", buf);
    ck_assert_int_eq(tunnel_record_open(&l.srx, buf, n, &rec, &used), 0);
    n = seal(&l.ctx, TUNNEL_REC_EOF, 1, NULL, buf);
    ck_assert_int_eq(tunnel_record_open(&l.srx, buf, n, &rec, &used), 0);
    ck_assert_uint_eq(rec.type, TUNNEL_REC_EOF);
    n = seal(&l.stx, TUNNEL_REC_DATA, 1, "answer after the half-close", buf);
    ck_assert_int_eq(tunnel_record_open(&l.crx, buf, n, &rec, &used), 0);
    /* Cut here: the transport's end of file is not a clean end. */
    ck_assert_int_eq(tunnel_record_eof(&l.srx, 0), TUNNEL_REC_ERR_TRUNCATED);
    /* A CLOSE is. */
    n = seal(&l.ctx, TUNNEL_REC_CLOSE, 0, NULL, buf);
    ck_assert_int_eq(tunnel_record_open(&l.srx, buf, n, &rec, &used), 0);
    ck_assert_uint_eq(rec.type, TUNNEL_REC_CLOSE);
    ck_assert_int_eq(tunnel_record_eof(&l.srx, 0), TUNNEL_REC_OK);
    ck_assert_int_eq(tunnel_record_eof(&l.srx, 1), TUNNEL_REC_ERR_TRUNCATED);
    /* Nothing is sealed after CLOSE, and bytes after it are refused. */
    ck_assert_int_eq(tunnel_record_seal(&l.ctx, TUNNEL_REC_DATA, 1, (const uint8_t *)"x", 1, buf,
                                        sizeof(buf), &n),
                     TUNNEL_REC_ERR_STATE);
    ck_assert_int_eq(tunnel_record_open(&l.srx, buf, 1, &rec, &used), TUNNEL_REC_ERR_PROTO);
    ck_assert_int_eq(tunnel_record_eof(&l.srx, 0), TUNNEL_REC_ERR_TRUNCATED);
}
END_TEST

START_TEST(test_invalid_records_are_refused_by_sender_and_receiver)
{
    struct link l;
    uint8_t buf[128], hdr[TUNNEL_RECORD_HEADER] = {0x0b, 0, 0, 0, 1, 0, 0};
    struct tunnel_record rec;
    size_t n, used;

    ck_assert(!tunnel_record_valid(0, 1, 1));
    ck_assert(!tunnel_record_valid(0x0b, 1, 1));
    ck_assert(!tunnel_record_valid(TUNNEL_REC_DATA, 0, 1));
    ck_assert(!tunnel_record_valid(TUNNEL_REC_DATA, 1, 0));
    ck_assert(!tunnel_record_valid(TUNNEL_REC_EOF, 1, 1));
    ck_assert(!tunnel_record_valid(TUNNEL_REC_PING, 1, 8));
    ck_assert(!tunnel_record_valid(TUNNEL_REC_PING, 0, 7));
    ck_assert(!tunnel_record_valid(TUNNEL_REC_CLOSE, 0, 1));
    ck_assert(!tunnel_record_valid(TUNNEL_REC_WINDOW, 1, 3));
    ck_assert(tunnel_record_valid(TUNNEL_REC_DATA, 1, TUNNEL_RECORD_PAYLOAD_MAX));

    link_new(&l);
    ck_assert_int_eq(tunnel_record_seal(&l.ctx, 0x0b, 1, NULL, 0, buf, sizeof(buf), &n),
                     TUNNEL_REC_ERR_PROTO);
    ck_assert_int_eq(tunnel_record_seal(&l.ctx, TUNNEL_REC_DATA, 1, (const uint8_t *)"abc", 3, buf,
                                        TUNNEL_RECORD_SIZE(3) - 1, &n),
                     TUNNEL_REC_ERR_SPACE);
    /* A peer that seals an unknown type with the right key: authentic, still refused. */
    ck_assert_int_eq(tunnel_cipher_encrypt(&l.ctx.cipher, NULL, 0, hdr, sizeof(hdr), buf), 0);
    ck_assert_int_eq(tunnel_record_open(&l.srx, buf, TUNNEL_RECORD_HEADER_SEALED, &rec, &used),
                     TUNNEL_REC_ERR_PROTO);
    ck_assert_str_eq(tunnel_record_strerror(TUNNEL_REC_ERR_TRUNCATED),
                     "connection cut without a close record");
}
END_TEST

/* --- handshake payloads and replays ------------------------------------------------------ */

START_TEST(test_tai64n_labels_and_hello)
{
    uint8_t a[12], b[12], out[TUNNEL_HELLO_LEN], big[TUNNEL_HELLO_MAX + 1] = {0};
    struct tunnel_hello h = {.flags = 0x0102}, g;

    tunnel_tai64n(0, 0, a);
    ck_assert_mem_eq(a, "\x40\x00\x00\x00\x00\x00\x00\x0a\x00\x00\x00\x00", 12);
    tunnel_tai64n(1700000000, 999999999, a);
    tunnel_tai64n(1700000001, 0, b);
    ck_assert(tunnel_replay_newer(a, b));
    ck_assert(!tunnel_replay_newer(b, a));
    ck_assert(!tunnel_replay_newer(a, a));
    ck_assert_int_eq(tunnel_tai64n_unix(b), 1700000001);
    memset(b, 0, sizeof(b));
    ck_assert_int_eq(tunnel_tai64n_unix(b), -1);
    memset(b, 0xff, sizeof(b));
    ck_assert_int_eq(tunnel_tai64n_unix(b), -1);

    memcpy(h.timestamp, a, 12);
    tunnel_hello_encode(&h, out);
    ck_assert_int_eq(tunnel_hello_parse(out, sizeof(out), &g), 0);
    ck_assert_mem_eq(g.timestamp, a, 12);
    ck_assert_uint_eq(g.flags, 0x0102);
    ck_assert_int_eq(tunnel_hello_parse(out, sizeof(out) - 1, &g), -1);
    ck_assert_int_eq(tunnel_hello_parse(big, TUNNEL_HELLO_MAX, &g), 0); /* padding */
    ck_assert_int_eq(tunnel_hello_parse(big, TUNNEL_HELLO_MAX + 1, &g), -1);
}
END_TEST

START_TEST(test_replayed_first_message_timestamp_is_refused)
{
    struct tunnel_replay *t = tunnel_replay_new();
    uint8_t k1[32], k2[32], t1[12], t2[12], t0[12];
    const uint64_t now = 1700000000;

    ck_assert_ptr_nonnull(t);
    randombytes_buf(k1, 32);
    randombytes_buf(k2, 32);
    tunnel_tai64n(now, 100, t1);
    tunnel_tai64n(now, 101, t2);
    tunnel_tai64n(now - 1, 0, t0);
    ck_assert_int_eq(tunnel_replay_check(t, k1, t1, now, 0), TUNNEL_REPLAY_OK);
    ck_assert_int_eq(tunnel_replay_check(t, k1, t1, now, 0), TUNNEL_REPLAY_OLD); /* replay */
    ck_assert_int_eq(tunnel_replay_check(t, k1, t0, now, 0), TUNNEL_REPLAY_OLD); /* older */
    ck_assert_int_eq(tunnel_replay_check(t, k2, t0, now, 0), TUNNEL_REPLAY_OK);  /* other key */
    ck_assert_int_eq(tunnel_replay_check(t, k1, t2, now, 0), TUNNEL_REPLAY_OK);  /* 1 ns later */
    ck_assert_int_eq(tunnel_replay_check(t, k1, t1, now, 0), TUNNEL_REPLAY_OLD);
    ck_assert_uint_eq(tunnel_replay_count(t), 2);
    /* The window: too old or too far ahead of the server's clock, however new for the key. */
    tunnel_tai64n(now - 601, 0, t0);
    ck_assert_int_eq(tunnel_replay_check(t, k2, t0, now, 600), TUNNEL_REPLAY_SKEW);
    tunnel_tai64n(now + 601, 0, t0);
    ck_assert_int_eq(tunnel_replay_check(t, k2, t0, now, 600), TUNNEL_REPLAY_SKEW);
    tunnel_tai64n(now + 600, 0, t0);
    ck_assert_int_eq(tunnel_replay_check(t, k2, t0, now, 600), TUNNEL_REPLAY_OK);
    /* Many keys. */
    for (int i = 0; i < 100; i++) {
        randombytes_buf(k1, 32);
        ck_assert_int_eq(tunnel_replay_check(t, k1, t1, now, 0), TUNNEL_REPLAY_OK);
    }
    ck_assert_uint_eq(tunnel_replay_count(t), 102);
    ck_assert_int_eq(tunnel_replay_check(t, k1, t1, now, 0), TUNNEL_REPLAY_OLD);
    tunnel_replay_free(t);
}
END_TEST

static Suite *tunnel_record_suite(void)
{
    Suite *s = suite_create("tunnel_record");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_round_trip_each_record_type_both_ways);
    tcase_add_test(tc, test_largest_record_and_pipelined_records);
    tcase_add_test(tc, test_every_single_bit_flip_is_detected);
    tcase_add_test(tc, test_aesgcm_records_round_trip_and_flips_fail);
    tcase_add_test(tc, test_msg1_prefix_carries_the_suite_and_leaves_version_1_unchanged);
    tcase_add_test(tc, test_a_flipped_suite_code_fails_the_handshake);
    tcase_add_test(tc, test_aesgcm_records_are_aes_gcm_and_rekey_under_it);
    tcase_add_test(tc, test_every_truncation_waits_then_counts_as_a_cut);
    tcase_add_test(tc, test_reordered_replayed_or_dropped_records_fail);
    tcase_add_test(tc, test_rekey_keeps_both_sides_in_step);
    tcase_add_test(tc, test_receiver_limit_without_rekey_is_a_protocol_error);
    tcase_add_test(tc, test_authenticated_close_differs_from_a_cut);
    tcase_add_test(tc, test_invalid_records_are_refused_by_sender_and_receiver);
    tcase_add_test(tc, test_tai64n_labels_and_hello);
    tcase_add_test(tc, test_replayed_first_message_timestamp_is_refused);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr;
    int failed;

    if (sodium_init() < 0)
        return 1;
    sr = srunner_create(tunnel_record_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
