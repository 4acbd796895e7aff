/*
 * Unit tests for src/tunnel_udp.c: sealed datagrams open only with their direction's key and
 * association id; every single-bit flip fails; the replay window takes each counter once,
 * takes reordering inside it, drops what is behind it, and slides across word boundaries and
 * large jumps; the grant round-trips; the counter never wraps.
 */
#include "config.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "ferry/tunnel_udp.h"

#define ROOM (TUNNEL_UDP_OVERHEAD + 4096)

struct pair {
    struct tunnel_udp_grant g;
    struct tunnel_udp_dir tx, rx; /* client -> server */
};

static void pair_new(struct pair *p)
{
    tunnel_udp_grant_new(&p->g);
    tunnel_udp_dir_init(&p->tx, p->g.id, p->g.up);
    tunnel_udp_dir_init(&p->rx, p->g.id, p->g.up);
}

/* Seal text into buf; the datagram's length. */
static size_t seal(struct tunnel_udp_dir *tx, const void *text, size_t len, uint8_t *buf)
{
    memcpy(buf + TUNNEL_UDP_HEAD, text, len);
    ck_assert_int_eq(tunnel_udp_seal(tx, buf, len), TUNNEL_UDP_OK);
    return len + TUNNEL_UDP_OVERHEAD;
}

START_TEST(test_seal_open_round_trip_and_layout)
{
    static const char msg[] = "\x00\x00\x00\x01\x7f\x00\x00\x01\x00\x35hello";
    uint8_t buf[ROOM];
    struct pair p;
    size_t n;

    pair_new(&p);
    n = seal(&p.tx, msg, sizeof(msg) - 1, buf);
    ck_assert_uint_eq(n, sizeof(msg) - 1 + 28);
    ck_assert_uint_eq((uint32_t)buf[0] << 24 | (uint32_t)buf[1] << 16 | buf[2] << 8 | buf[3],
                      p.g.id);
    for (int i = 4; i < 12; i++)
        ck_assert_uint_eq(buf[i], 0);                       /* counter 0 */
    ck_assert(memcmp(buf + 12, msg, sizeof(msg) - 1) != 0); /* encrypted */
    ck_assert_int_eq(tunnel_udp_open(&p.rx, buf, n), TUNNEL_UDP_OK);
    ck_assert_mem_eq(buf + 12, msg, sizeof(msg) - 1);
    /* The second is counter 1, little-endian. */
    n = seal(&p.tx, msg, sizeof(msg) - 1, buf);
    ck_assert_uint_eq(buf[4], 1);
    ck_assert_int_eq(tunnel_udp_open(&p.rx, buf, n), TUNNEL_UDP_OK);
    /* An empty plaintext is 28 bytes and opens. */
    n = seal(&p.tx, "", 0, buf);
    ck_assert_uint_eq(n, 28);
    ck_assert_int_eq(tunnel_udp_open(&p.rx, buf, n), TUNNEL_UDP_OK);
}
END_TEST

/* The same nonce layout as Noise's ChaChaPoly: checked against libsodium's combined mode. */
START_TEST(test_wire_form_matches_the_spec)
{
    uint8_t buf[ROOM], expect[64], nonce[12] = {0}, ad[12];
    struct pair p;
    unsigned long long clen;

    pair_new(&p);
    p.tx.counter = 0x0102030405060708ull;
    seal(&p.tx, "abc", 3, buf);
    memcpy(ad, buf, 12);
    for (int i = 0; i < 8; i++)
        nonce[4 + i] = (uint8_t)(0x0102030405060708ull >> (8 * i));
    ck_assert_mem_eq(buf + 4, nonce + 4, 8);
    crypto_aead_chacha20poly1305_ietf_encrypt(expect, &clen, (const uint8_t *)"abc", 3, ad, 12,
                                              NULL, nonce, p.g.up);
    ck_assert_uint_eq(clen, 3 + 16);
    ck_assert_mem_eq(buf + 12, expect, clen);
}
END_TEST

START_TEST(test_every_bit_flip_fails)
{
    uint8_t orig[ROOM], buf[ROOM];
    struct pair p;
    size_t n;

    pair_new(&p);
    n = seal(&p.tx, "a datagram", 10, orig);
    for (size_t bit = 0; bit < n * 8; bit++) {
        memcpy(buf, orig, n);
        buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        ck_assert_int_eq(tunnel_udp_open(&p.rx, buf, n), TUNNEL_UDP_ERR_AUTH);
    }
    ck_assert(!p.rx.any); /* no forgery moved the window */
    /* Every truncation and an extension fail too. */
    for (size_t len = 0; len < n; len++) {
        memcpy(buf, orig, n);
        ck_assert_int_eq(tunnel_udp_open(&p.rx, buf, len), TUNNEL_UDP_ERR_AUTH);
    }
    memcpy(buf, orig, n);
    buf[n] = 0;
    ck_assert_int_eq(tunnel_udp_open(&p.rx, buf, n + 1), TUNNEL_UDP_ERR_AUTH);
    memcpy(buf, orig, n);
    ck_assert_int_eq(tunnel_udp_open(&p.rx, buf, n), TUNNEL_UDP_OK);
}
END_TEST

START_TEST(test_wrong_key_direction_or_id_fails)
{
    uint8_t orig[ROOM], buf[ROOM];
    struct tunnel_udp_dir down, other_id;
    struct pair p, q;
    size_t n;

    pair_new(&p);
    pair_new(&q);
    n = seal(&p.tx, "x", 1, orig);
    /* Another association's key, same id. */
    memcpy(buf, orig, n);
    q.rx.id = p.g.id;
    ck_assert_int_eq(tunnel_udp_open(&q.rx, buf, n), TUNNEL_UDP_ERR_AUTH);
    /* The other direction's key (a datagram reflected back to its sender). */
    tunnel_udp_dir_init(&down, p.g.id, p.g.down);
    memcpy(buf, orig, n);
    ck_assert_int_eq(tunnel_udp_open(&down, buf, n), TUNNEL_UDP_ERR_AUTH);
    /* The right key under another id: refused, and the id is in the associated data. */
    tunnel_udp_dir_init(&other_id, p.g.id + 1, p.g.up);
    memcpy(buf, orig, n);
    ck_assert_int_eq(tunnel_udp_open(&other_id, buf, n), TUNNEL_UDP_ERR_AUTH);
    memcpy(buf, orig, n);
    buf[3] ^= 1;
    ck_assert_int_eq(tunnel_udp_open(&other_id, buf, n), TUNNEL_UDP_ERR_AUTH);
    memcpy(buf, orig, n);
    ck_assert_int_eq(tunnel_udp_open(&p.rx, buf, n), TUNNEL_UDP_OK);
    tunnel_udp_dir_wipe(&down);
    ck_assert_uint_eq(down.key[0] | down.key[31] | down.id, 0);
}
END_TEST

START_TEST(test_duplicate_refused_after_authentication)
{
    uint8_t orig[ROOM], buf[ROOM];
    struct pair p;
    size_t n;

    pair_new(&p);
    n = seal(&p.tx, "once", 4, orig);
    memcpy(buf, orig, n);
    ck_assert_int_eq(tunnel_udp_open(&p.rx, buf, n), TUNNEL_UDP_OK);
    memcpy(buf, orig, n);
    ck_assert_int_eq(tunnel_udp_open(&p.rx, buf, n), TUNNEL_UDP_ERR_DUPLICATE);
    /* A forged copy with a flipped tag is an authentication failure, not a duplicate. */
    memcpy(buf, orig, n);
    buf[n - 1] ^= 0x80;
    ck_assert_int_eq(tunnel_udp_open(&p.rx, buf, n), TUNNEL_UDP_ERR_AUTH);
}
END_TEST

START_TEST(test_reordering_inside_the_window_taken_once)
{
    static uint8_t dgram[100][64];
    size_t len[100];
    uint8_t buf[64];
    struct pair p;

    pair_new(&p);
    for (int i = 0; i < 100; i++)
        len[i] = seal(&p.tx, "reorder", 7, dgram[i]);
    /* Odd ones first, then even ones backwards, then all again. */
    for (int i = 1; i < 100; i += 2) {
        memcpy(buf, dgram[i], len[i]);
        ck_assert_int_eq(tunnel_udp_open(&p.rx, buf, len[i]), TUNNEL_UDP_OK);
    }
    for (int i = 98; i >= 0; i -= 2) {
        memcpy(buf, dgram[i], len[i]);
        ck_assert_int_eq(tunnel_udp_open(&p.rx, buf, len[i]), TUNNEL_UDP_OK);
    }
    for (int i = 0; i < 100; i++) {
        memcpy(buf, dgram[i], len[i]);
        ck_assert_int_eq(tunnel_udp_open(&p.rx, buf, len[i]), TUNNEL_UDP_ERR_DUPLICATE);
    }
}
END_TEST

START_TEST(test_window_edges)
{
    struct tunnel_udp_dir rx;
    uint8_t key[32] = {0};

    tunnel_udp_dir_init(&rx, 1, key);
    ck_assert_int_eq(tunnel_udp_window_take(&rx, 5000), TUNNEL_UDP_OK);
    /* 5000 - 2047 is the oldest inside; 5000 - 2048 is behind. */
    ck_assert_int_eq(tunnel_udp_window_take(&rx, 5000 - 2047), TUNNEL_UDP_OK);
    ck_assert_int_eq(tunnel_udp_window_take(&rx, 5000 - 2048), TUNNEL_UDP_ERR_OLD);
    ck_assert_int_eq(tunnel_udp_window_take(&rx, 0), TUNNEL_UDP_ERR_OLD);
    ck_assert_int_eq(tunnel_udp_window_take(&rx, 5000 - 2047), TUNNEL_UDP_ERR_DUPLICATE);
    ck_assert_int_eq(tunnel_udp_window_take(&rx, 5000), TUNNEL_UDP_ERR_DUPLICATE);
    /* Every counter of the window once, the ones taken refused. */
    for (uint64_t c = 5000 - 2046; c < 5000; c++)
        ck_assert_int_eq(tunnel_udp_window_take(&rx, c), TUNNEL_UDP_OK);
    for (uint64_t c = 5000 - 2047; c <= 5000; c++)
        ck_assert_int_eq(tunnel_udp_window_take(&rx, c), TUNNEL_UDP_ERR_DUPLICATE);
}
END_TEST

/* Sliding one at a time across many 64-bit words: the bit of each new counter is clear, the
 * ones still inside stay set, the ones that left are old. */
START_TEST(test_window_slides_across_word_boundaries)
{
    struct tunnel_udp_dir rx;
    uint8_t key[32] = {0};

    tunnel_udp_dir_init(&rx, 1, key);
    for (uint64_t c = 0; c < 3 * TUNNEL_UDP_WINDOW + 130; c += 1) {
        ck_assert_int_eq(tunnel_udp_window_take(&rx, c), TUNNEL_UDP_OK);
        ck_assert_int_eq(tunnel_udp_window_take(&rx, c), TUNNEL_UDP_ERR_DUPLICATE);
        if (c >= 2047)
            ck_assert_int_eq(tunnel_udp_window_take(&rx, c - 2047), TUNNEL_UDP_ERR_DUPLICATE);
        if (c >= 2048)
            ck_assert_int_eq(tunnel_udp_window_take(&rx, c - 2048), TUNNEL_UDP_ERR_OLD);
    }
    /* Steps of 63 and 65 (never on a word boundary twice): skipped counters stay takeable. */
    tunnel_udp_dir_init(&rx, 1, key);
    for (uint64_t c = 0; c < 20000; c += 63)
        ck_assert_int_eq(tunnel_udp_window_take(&rx, c), TUNNEL_UDP_OK);
    for (uint64_t c = rx.counter - 2047; c < rx.counter; c++) {
        int want = (c % 63 == 0) ? TUNNEL_UDP_ERR_DUPLICATE : TUNNEL_UDP_OK;
        ck_assert_int_eq(tunnel_udp_window_take(&rx, c), want);
    }
}
END_TEST

START_TEST(test_window_large_jumps)
{
    struct tunnel_udp_dir rx;
    uint8_t key[32] = {0};
    uint64_t top;

    tunnel_udp_dir_init(&rx, 1, key);
    for (uint64_t c = 0; c < 2048; c++)
        ck_assert_int_eq(tunnel_udp_window_take(&rx, c), TUNNEL_UDP_OK);
    /* A jump of more than the ring: every word is cleared, nothing of before is inside. */
    top = 1000000;
    ck_assert_int_eq(tunnel_udp_window_take(&rx, top), TUNNEL_UDP_OK);
    for (uint64_t c = top - 2047; c < top; c++)
        ck_assert_int_eq(tunnel_udp_window_take(&rx, c), TUNNEL_UDP_OK);
    ck_assert_int_eq(tunnel_udp_window_take(&rx, 2047), TUNNEL_UDP_ERR_OLD);
    /* A jump of exactly one window. */
    ck_assert_int_eq(tunnel_udp_window_take(&rx, top + 2048), TUNNEL_UDP_OK);
    ck_assert_int_eq(tunnel_udp_window_take(&rx, top), TUNNEL_UDP_ERR_OLD);
    ck_assert_int_eq(tunnel_udp_window_take(&rx, top + 1), TUNNEL_UDP_OK);
    ck_assert_int_eq(tunnel_udp_window_take(&rx, top + 1), TUNNEL_UDP_ERR_DUPLICATE);
    /* Up to the top of the counter space. */
    ck_assert_int_eq(tunnel_udp_window_take(&rx, UINT64_MAX - 1), TUNNEL_UDP_OK);
    ck_assert_int_eq(tunnel_udp_window_take(&rx, UINT64_MAX - 2), TUNNEL_UDP_OK);
    ck_assert_int_eq(tunnel_udp_window_take(&rx, UINT64_MAX - 1), TUNNEL_UDP_ERR_DUPLICATE);
    ck_assert_int_eq(tunnel_udp_window_take(&rx, top + 2048), TUNNEL_UDP_ERR_OLD);
}
END_TEST

START_TEST(test_old_datagram_dropped_after_the_window_moved)
{
    uint8_t first[64], buf[ROOM];
    struct pair p;
    size_t n0, n;

    pair_new(&p);
    n0 = seal(&p.tx, "first", 5, first);
    for (int i = 0; i < TUNNEL_UDP_WINDOW; i++) {
        n = seal(&p.tx, "next", 4, buf);
        ck_assert_int_eq(tunnel_udp_open(&p.rx, buf, n), TUNNEL_UDP_OK);
    }
    /* Counter 0 arrives after 2048: behind the window. */
    ck_assert_int_eq(tunnel_udp_open(&p.rx, first, n0), TUNNEL_UDP_ERR_OLD);
}
END_TEST

START_TEST(test_counter_never_wraps)
{
    uint8_t buf[ROOM], before[ROOM];
    struct pair p;
    size_t n;

    pair_new(&p);
    p.tx.counter = UINT64_MAX - 1;
    n = seal(&p.tx, "last", 4, buf);
    ck_assert_int_eq(tunnel_udp_open(&p.rx, buf, n), TUNNEL_UDP_OK);
    memset(buf, 0xaa, sizeof(buf));
    memcpy(buf + TUNNEL_UDP_HEAD, "more", 4);
    memcpy(before, buf, sizeof(buf));
    ck_assert_int_eq(tunnel_udp_seal(&p.tx, buf, 4), TUNNEL_UDP_ERR_NONCE);
    ck_assert_mem_eq(buf, before, sizeof(buf)); /* nothing written */
    ck_assert_uint_eq(p.tx.counter, UINT64_MAX);
    ck_assert_str_eq(tunnel_udp_strerror(TUNNEL_UDP_ERR_NONCE), "counters spent");
}
END_TEST

START_TEST(test_grant_round_trip)
{
    struct tunnel_udp_grant g, h;
    uint8_t wire[TUNNEL_UDP_GRANT_LEN];

    tunnel_udp_grant_new(&g);
    ck_assert(memcmp(g.up, g.down, 32) != 0);
    tunnel_udp_grant_encode(&g, wire);
    ck_assert_int_eq(tunnel_udp_grant_decode(wire, sizeof(wire), &h), 0);
    ck_assert_uint_eq(h.id, g.id);
    ck_assert_mem_eq(h.up, g.up, 32);
    ck_assert_mem_eq(h.down, g.down, 32);
    ck_assert_uint_eq(wire[0], g.id >> 24);
    ck_assert_mem_eq(wire + 4, g.up, 32);
    ck_assert_mem_eq(wire + 36, g.down, 32);
    ck_assert_int_eq(tunnel_udp_grant_decode(wire, sizeof(wire) - 1, &h), -1);
    ck_assert_int_eq(tunnel_udp_grant_decode(wire, sizeof(wire) + 1, &h), -1);
}
END_TEST

static Suite *tunnel_udp_suite(void)
{
    Suite *s = suite_create("tunnel_udp");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_seal_open_round_trip_and_layout);
    tcase_add_test(tc, test_wire_form_matches_the_spec);
    tcase_add_test(tc, test_every_bit_flip_fails);
    tcase_add_test(tc, test_wrong_key_direction_or_id_fails);
    tcase_add_test(tc, test_duplicate_refused_after_authentication);
    tcase_add_test(tc, test_reordering_inside_the_window_taken_once);
    tcase_add_test(tc, test_window_edges);
    tcase_add_test(tc, test_window_slides_across_word_boundaries);
    tcase_add_test(tc, test_window_large_jumps);
    tcase_add_test(tc, test_old_datagram_dropped_after_the_window_moved);
    tcase_add_test(tc, test_counter_never_wraps);
    tcase_add_test(tc, test_grant_round_trip);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr;
    int failed;

    if (sodium_init() < 0)
        return 1;
    sr = srunner_create(tunnel_udp_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
