/*
 * The tunnel's handshake parsers (doc/tunnel-protocol.md 2.2): tunnel_handshake_read on the
 * responder's side (msg1, with the server's fixed static key) and on the initiator's (msg2,
 * after a real msg1), tunnel_hello_parse and the replay table on what a msg1 carried.
 *
 * Input: a first byte whose low two bits choose the mode, and bit 2 the cipher suite
 * (AES-256-GCM where this machine has it, else ChaChaPoly); the keys, the ephemeral keys and
 * the hello are fixed, so each side's messages are the same on every run:
 *   0  the rest is a msg1 for the responder;
 *   1  the rest is a msg2 for an initiator that has written its msg1;
 *   2  two bytes of position and one of XOR mask (a tampering), then the payload of a msg1
 *      that a real initiator writes; the responder reads it, tampered or not;
 *   3  the same for a msg2 written by a real responder after the real msg1.
 * Checked: a message either fails (a status below 0, no payload, the state wiped: later calls
 * answer TUNNEL_ERR_STATE, no remote key) or gives a payload of its length minus the
 * overhead; one shorter than the fixed part is TUNNEL_ERR_SHORT; the fixed sides' own
 * messages (modes 0 and 1 with the seeds) pass with the fixed payloads; made messages pass
 * exactly when untampered, with the payload sent and the initiator's static key, and tampered
 * ones fail authentication (or give a small-order key); both sides then split into matching
 * cipher states and hashes. A hello that parses (14 to 1024 bytes) is accepted once by a fresh
 * replay table and refused the second time.
 */
#include "config.h"

#include <sodium.h>

#include "ferry/tunnel_noise.h"
#include "ferry/tunnel_record.h"
#include "fuzz.h"

#define PAYLOAD_MAX (TUNNEL_MSG_MAX - TUNNEL_MSG1_OVERHEAD)

static uint8_t server_priv[TUNNEL_KEYLEN], server_pub[TUNNEL_DHLEN];
static uint8_t client_priv[TUNNEL_KEYLEN], client_pub[TUNNEL_DHLEN];
static uint8_t ie_priv[TUNNEL_KEYLEN], re_priv[TUNNEL_KEYLEN];
static uint8_t hello[TUNNEL_HELLO_LEN];
static const uint8_t welcome[TUNNEL_WELCOME_LEN];

/* The fixed keys (the seeds' make_seeds.py uses the same) and hello: 2023-11-14T22:13:20Z. */
static void setup(void)
{
    static bool done;
    struct tunnel_hello h = {.flags = 0};

    if (done)
        return;
    if (sodium_init() < 0)
        abort();
    memset(server_priv, 0x53, sizeof(server_priv));
    memset(client_priv, 0x43, sizeof(client_priv));
    memset(ie_priv, 0x45, sizeof(ie_priv));
    memset(re_priv, 0x65, sizeof(re_priv));
    FUZZ_CHECK(tunnel_public_key(server_priv, server_pub) == 0);
    FUZZ_CHECK(tunnel_public_key(client_priv, client_pub) == 0);
    tunnel_tai64n(1700000000, 0, h.timestamp);
    tunnel_hello_encode(&h, hello);
    done = true;
}

static void init(struct tunnel_handshake *hs, enum tunnel_role role, enum tunnel_suite suite)
{
    bool initiator = role == TUNNEL_INITIATOR;

    FUZZ_CHECK(tunnel_handshake_init(hs, role, suite, (const uint8_t *)TUNNEL_PROLOGUE,
                                     strlen(TUNNEL_PROLOGUE), initiator ? client_priv : server_priv,
                                     NULL, initiator ? server_pub : NULL) == TUNNEL_OK);
    FUZZ_CHECK(tunnel_handshake_fix_ephemeral(hs, initiator ? ie_priv : re_priv) == TUNNEL_OK);
}

/* What the fixed initiator writes with payload: the message in out, its length returned. */
static size_t write_msg1(struct tunnel_handshake *hs, enum tunnel_suite suite,
                         const uint8_t *payload, size_t plen, uint8_t *out, size_t outsize)
{
    size_t n = 0;

    init(hs, TUNNEL_INITIATOR, suite);
    FUZZ_CHECK(tunnel_handshake_write(hs, payload, plen, out, outsize, &n) == TUNNEL_OK);
    FUZZ_CHECK(n == plen + TUNNEL_MSG1_OVERHEAD);
    return n;
}

/* After a failed read: no payload, the state wiped, the handshake over. */
static void check_failed(struct tunnel_handshake *hs, int rc, size_t plen, size_t len, size_t fixed)
{
    uint8_t again[1];
    size_t n = 0;

    FUZZ_CHECK(rc < 0 && plen == 0);
    FUZZ_CHECK(len >= fixed || rc == TUNNEL_ERR_SHORT);
    FUZZ_CHECK(!tunnel_handshake_done(hs));
    FUZZ_CHECK(tunnel_handshake_read(hs, again, 0, again, sizeof(again), &n) == TUNNEL_ERR_STATE);
    FUZZ_CHECK(tunnel_handshake_write(hs, NULL, 0, again, sizeof(again), &n) == TUNNEL_ERR_STATE);
}

/* A msg1 payload that was opened: as the daemon's server reads it (doc 2.4, 2.5). */
static void check_hello(const uint8_t *payload, size_t plen, const uint8_t *rs)
{
    struct tunnel_hello h;
    struct tunnel_replay *t;

    if (tunnel_hello_parse(payload, plen, &h) < 0) {
        FUZZ_CHECK(plen < TUNNEL_HELLO_LEN || plen > TUNNEL_HELLO_MAX);
        return;
    }
    FUZZ_CHECK(plen >= TUNNEL_HELLO_LEN && plen <= TUNNEL_HELLO_MAX);
    FUZZ_CHECK(memcmp(h.timestamp, payload, TUNNEL_TAI64N_LEN) == 0);
    t = tunnel_replay_new();
    FUZZ_CHECK(t != NULL);
    FUZZ_CHECK(tunnel_replay_check(t, rs, h.timestamp, 0, 0) == TUNNEL_REPLAY_OK);
    FUZZ_CHECK(tunnel_replay_check(t, rs, h.timestamp, 0, 0) == TUNNEL_REPLAY_OLD);
    FUZZ_CHECK(tunnel_replay_count(t) == 1);
    tunnel_replay_free(t);
}

/* Both sides done: they split into crossed cipher states and the same hash. */
static void check_split(struct tunnel_handshake *ini, struct tunnel_handshake *resp)
{
    struct tunnel_cipher is, ir, rs, rr;
    uint8_t ih[TUNNEL_HASHLEN], rh[TUNNEL_HASHLEN];

    FUZZ_CHECK(tunnel_handshake_done(ini) && tunnel_handshake_done(resp));
    FUZZ_CHECK(tunnel_handshake_split(ini, &is, &ir, ih) == TUNNEL_OK);
    FUZZ_CHECK(tunnel_handshake_split(resp, &rs, &rr, rh) == TUNNEL_OK);
    FUZZ_CHECK(memcmp(is.k, rr.k, TUNNEL_KEYLEN) == 0 && memcmp(ir.k, rs.k, TUNNEL_KEYLEN) == 0);
    FUZZ_CHECK(memcmp(is.k, ir.k, TUNNEL_KEYLEN) != 0);
    FUZZ_CHECK(memcmp(ih, rh, TUNNEL_HASHLEN) == 0);
    FUZZ_CHECK(is.n == 0 && ir.n == 0 && rs.n == 0 && rr.n == 0);
    tunnel_cipher_wipe(&is);
    tunnel_cipher_wipe(&ir);
    tunnel_cipher_wipe(&rs);
    tunnel_cipher_wipe(&rr);
}

/* Mode 0: an arbitrary msg1. */
static void raw_msg1(enum tunnel_suite suite, const uint8_t *data, size_t size)
{
    struct tunnel_handshake ini, resp;
    uint8_t ref[TUNNEL_MSG1_OVERHEAD + TUNNEL_HELLO_LEN];
    uint8_t *msg = fuzz_dup(data, size), *payload = malloc(size + 1);
    uint8_t msg2[TUNNEL_MSG2_OVERHEAD + TUNNEL_WELCOME_LEN], got[TUNNEL_WELCOME_LEN];
    size_t plen = 0, n = 0;
    bool is_ref;
    int rc;

    FUZZ_CHECK(payload != NULL);
    is_ref = write_msg1(&ini, suite, hello, sizeof(hello), ref, sizeof(ref)) == size &&
             memcmp(ref, data, size) == 0;
    init(&resp, TUNNEL_RESPONDER, suite);
    rc = tunnel_handshake_read(&resp, msg, size, payload, size + 1, &plen);
    if (rc != TUNNEL_OK) {
        FUZZ_CHECK(!is_ref);
        FUZZ_CHECK(tunnel_handshake_remote_static(&resp) == NULL);
        check_failed(&resp, rc, plen, size, TUNNEL_MSG1_OVERHEAD);
    } else {
        const uint8_t *rs = tunnel_handshake_remote_static(&resp);

        FUZZ_CHECK(size >= TUNNEL_MSG1_OVERHEAD && plen == size - TUNNEL_MSG1_OVERHEAD);
        FUZZ_CHECK(rs != NULL);
        if (is_ref)
            FUZZ_CHECK(plen == sizeof(hello) && memcmp(payload, hello, plen) == 0 &&
                       memcmp(rs, client_pub, TUNNEL_DHLEN) == 0);
        check_hello(payload, plen, rs);
        FUZZ_CHECK(tunnel_handshake_write(&resp, welcome, sizeof(welcome), msg2, sizeof(msg2),
                                          &n) == TUNNEL_OK);
        FUZZ_CHECK(n == sizeof(msg2));
        if (is_ref) {
            /* The fixed initiator takes the answer to its own message. */
            FUZZ_CHECK(tunnel_handshake_read(&ini, msg2, n, got, sizeof(got), &plen) == TUNNEL_OK);
            FUZZ_CHECK(plen == sizeof(welcome) && memcmp(got, welcome, plen) == 0);
            check_split(&ini, &resp);
        }
    }
    tunnel_handshake_wipe(&ini);
    tunnel_handshake_wipe(&resp);
    free(msg);
    free(payload);
}

/* Mode 1: an arbitrary msg2, after the fixed msg1. */
static void raw_msg2(enum tunnel_suite suite, const uint8_t *data, size_t size)
{
    struct tunnel_handshake ini, resp;
    uint8_t msg1[TUNNEL_MSG1_OVERHEAD + TUNNEL_HELLO_LEN], ref[TUNNEL_MSG2_OVERHEAD + 2];
    uint8_t opened[TUNNEL_HELLO_LEN];
    uint8_t *msg = fuzz_dup(data, size), *payload = malloc(size + 1);
    size_t n1, plen = 0, n = 0;
    bool is_ref;
    int rc;

    FUZZ_CHECK(payload != NULL);
    n1 = write_msg1(&ini, suite, hello, sizeof(hello), msg1, sizeof(msg1));
    init(&resp, TUNNEL_RESPONDER, suite);
    FUZZ_CHECK(tunnel_handshake_read(&resp, msg1, n1, opened, sizeof(opened), &plen) == TUNNEL_OK);
    FUZZ_CHECK(tunnel_handshake_write(&resp, welcome, sizeof(welcome), ref, sizeof(ref), &n) ==
               TUNNEL_OK);
    is_ref = n == size && memcmp(ref, data, size) == 0;
    plen = 0;
    rc = tunnel_handshake_read(&ini, msg, size, payload, size + 1, &plen);
    if (rc != TUNNEL_OK) {
        FUZZ_CHECK(!is_ref);
        check_failed(&ini, rc, plen, size, TUNNEL_MSG2_OVERHEAD);
    } else {
        FUZZ_CHECK(size >= TUNNEL_MSG2_OVERHEAD && plen == size - TUNNEL_MSG2_OVERHEAD);
        FUZZ_CHECK(tunnel_handshake_done(&ini));
        if (is_ref) {
            FUZZ_CHECK(plen == sizeof(welcome) && memcmp(payload, welcome, plen) == 0);
            check_split(&ini, &resp);
        }
    }
    tunnel_handshake_wipe(&ini);
    tunnel_handshake_wipe(&resp);
    free(msg);
    free(payload);
}

/* Modes 2 and 3: a real message with the input as payload, maybe tampered. */
static void made(enum tunnel_suite suite, bool second, const uint8_t *data, size_t size)
{
    struct tunnel_handshake ini, resp;
    size_t pos, plen, len, n = 0, got_len = 0;
    uint8_t mask, *msg, *got;
    uint8_t msg1[TUNNEL_MSG1_OVERHEAD + TUNNEL_HELLO_LEN], opened[TUNNEL_HELLO_LEN];
    bool tampered;
    int rc;

    if (size < 3)
        return;
    pos = (size_t)data[0] << 8 | data[1];
    mask = data[2];
    data += 3;
    plen = size - 3 < PAYLOAD_MAX ? size - 3 : PAYLOAD_MAX;
    len = plen + (second ? TUNNEL_MSG2_OVERHEAD : TUNNEL_MSG1_OVERHEAD);
    msg = malloc(len);
    got = malloc(plen + TUNNEL_WELCOME_LEN + 1);
    FUZZ_CHECK(msg != NULL && got != NULL);
    if (!second) {
        FUZZ_CHECK(write_msg1(&ini, suite, data, plen, msg, len) == len);
        init(&resp, TUNNEL_RESPONDER, suite);
    } else {
        size_t n1 = write_msg1(&ini, suite, hello, sizeof(hello), msg1, sizeof(msg1));

        init(&resp, TUNNEL_RESPONDER, suite);
        FUZZ_CHECK(tunnel_handshake_read(&resp, msg1, n1, opened, sizeof(opened), &n) == TUNNEL_OK);
        FUZZ_CHECK(tunnel_handshake_write(&resp, data, plen, msg, len, &n) == TUNNEL_OK);
        FUZZ_CHECK(n == len);
    }
    tampered = mask != 0 && pos < len;
    if (tampered)
        msg[pos] ^= mask;
    rc = tunnel_handshake_read(second ? &ini : &resp, msg, len, got, plen + TUNNEL_WELCOME_LEN + 1,
                               &got_len);
    if (tampered) {
        FUZZ_CHECK(rc == TUNNEL_ERR_DECRYPT || rc == TUNNEL_ERR_DH);
        check_failed(second ? &ini : &resp, rc, got_len, len, 0);
    } else {
        FUZZ_CHECK(rc == TUNNEL_OK);
        FUZZ_CHECK(got_len == plen && memcmp(got, data, plen) == 0);
        if (!second) {
            const uint8_t *rs = tunnel_handshake_remote_static(&resp);

            FUZZ_CHECK(rs != NULL && memcmp(rs, client_pub, TUNNEL_DHLEN) == 0);
            check_hello(got, got_len, rs);
            FUZZ_CHECK(tunnel_handshake_write(&resp, welcome, sizeof(welcome), msg, len, &n) ==
                       TUNNEL_OK);
            FUZZ_CHECK(tunnel_handshake_read(&ini, msg, n, got, plen + TUNNEL_WELCOME_LEN + 1,
                                             &got_len) == TUNNEL_OK);
            FUZZ_CHECK(got_len == sizeof(welcome));
        }
        check_split(&ini, &resp);
    }
    tunnel_handshake_wipe(&ini);
    tunnel_handshake_wipe(&resp);
    free(msg);
    free(got);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    enum tunnel_suite suite = TUNNEL_CHACHAPOLY;

    setup();
    if (size < 1)
        return 0;
    if ((data[0] & 4) && tunnel_suite_available(TUNNEL_AESGCM))
        suite = TUNNEL_AESGCM;
    switch (data[0] & 3) {
    case 0:
        raw_msg1(suite, data + 1, size - 1);
        break;
    case 1:
        raw_msg2(suite, data + 1, size - 1);
        break;
    default:
        made(suite, (data[0] & 3) == 3, data + 1, size - 1);
        break;
    }
    return 0;
}
