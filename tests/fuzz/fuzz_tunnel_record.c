/*
 * The tunnel's wire parsers: tunnel_record_open, tunnel_handshake_read and tunnel_hello_parse.
 *
 * The first two bytes also go through tunnel_msg1_prefix_parse (doc 2.2): it accepts exactly
 * the suite codes 0 and 1, the length is the low 12 bits, encoding gives the bytes back; the rest
 * as the first message of a responder of that suite never passes.
 *
 * Input: two bytes of position and one of XOR mask (a tampering), one byte of read size, then
 * records as TYPE STREAM LEN PAYLOAD[LEN] (stream and length one byte each). The valid ones are
 * sealed by a sender that rekeys every 3 records and read back by a receiver fed in reads of the
 * chosen size: untouched, every record comes back as sealed (REKEY records between them), and
 * NEED_MORE never consumes; with the tampering, every record wholly before the changed byte
 * comes back and the record holding it fails authentication. The raw input, as records of a
 * fresh receiver and as the first handshake message of a responder, never passes.
 */
#include "config.h"

#include <sodium.h>

#include "ferry/tunnel_noise.h"
#include "ferry/tunnel_record.h"
#include "fuzz.h"

#define MAX_RECORDS 64

struct sent {
    uint8_t type;
    uint32_t stream;
    const uint8_t *payload;
    size_t len;
    size_t end; /* where its bytes end in the wire buffer */
};

static void keys(struct tunnel_cipher *c)
{
    uint8_t k[TUNNEL_KEYLEN];

    memset(k, 0x42, sizeof(k));
    tunnel_cipher_init(c, k);
}

static void check_raw(const uint8_t *data, size_t size)
{
    struct tunnel_record_rx rx;
    struct tunnel_cipher c;
    struct tunnel_record rec;
    uint8_t *copy = fuzz_dup(data, size);
    size_t used;
    int r;

    keys(&c);
    tunnel_record_rx_init(&rx, &c);
    r = tunnel_record_open(&rx, copy, size, &rec, &used);
    FUZZ_CHECK(r == TUNNEL_REC_NEED_MORE || r == TUNNEL_REC_ERR_AUTH);
    FUZZ_CHECK(r != TUNNEL_REC_NEED_MORE || used == 0);
    free(copy);
}

static void check_handshake(const uint8_t *data, size_t size)
{
    static const uint8_t spriv[TUNNEL_KEYLEN] = {1, 2, 3};
    struct tunnel_handshake hs;
    uint8_t *copy = fuzz_dup(data, size), *payload = malloc(size + 1);
    size_t plen = 0;
    struct tunnel_hello hello;
    int r;

    FUZZ_CHECK(payload != NULL);
    FUZZ_CHECK(tunnel_handshake_init(&hs, TUNNEL_RESPONDER, TUNNEL_CHACHAPOLY,
                                     (const uint8_t *)TUNNEL_PROLOGUE, strlen(TUNNEL_PROLOGUE),
                                     spriv, NULL, NULL) == TUNNEL_OK);
    r = tunnel_handshake_read(&hs, copy, size, payload, size + 1, &plen);
    if (r == TUNNEL_OK) {
        FUZZ_CHECK(plen == size - TUNNEL_MSG1_OVERHEAD);
        FUZZ_CHECK(tunnel_handshake_remote_static(&hs) != NULL);
    } else {
        FUZZ_CHECK(r < 0 && plen == 0);
        FUZZ_CHECK(tunnel_handshake_remote_static(&hs) == NULL);
    }
    if (tunnel_hello_parse(copy, size, &hello) == 0)
        FUZZ_CHECK(size >= TUNNEL_HELLO_LEN && size <= TUNNEL_HELLO_MAX);
    tunnel_handshake_wipe(&hs);
    free(copy);
    free(payload);
}

static void check_prefix(const uint8_t *data, size_t size)
{
    static const uint8_t spriv[TUNNEL_KEYLEN] = {1, 2, 3};
    struct tunnel_handshake hs;
    enum tunnel_suite suite;
    uint8_t back[TUNNEL_MSG1_PREFIX], payload[TUNNEL_HELLO_MAX];
    size_t len, plen;
    int r;

    if (size < TUNNEL_MSG1_PREFIX)
        return;
    r = tunnel_msg1_prefix_parse(data, &suite, &len);
    FUZZ_CHECK(len == (((size_t)data[0] << 8 | data[1]) & 0x0fff));
    FUZZ_CHECK((r == 0) == (data[0] >> 4 <= 1));
    if (r < 0 || !tunnel_suite_available(suite))
        return;
    FUZZ_CHECK(suite == (data[0] >> 4 == 1 ? TUNNEL_AESGCM : TUNNEL_CHACHAPOLY));
    tunnel_msg1_prefix_encode(suite, len, back);
    FUZZ_CHECK(memcmp(back, data, TUNNEL_MSG1_PREFIX) == 0);
    FUZZ_CHECK(tunnel_handshake_init(&hs, TUNNEL_RESPONDER, suite, (const uint8_t *)TUNNEL_PROLOGUE,
                                     strlen(TUNNEL_PROLOGUE), spriv, NULL, NULL) == TUNNEL_OK);
    if (size - TUNNEL_MSG1_PREFIX <= TUNNEL_MSG1_OVERHEAD + sizeof(payload)) {
        r = tunnel_handshake_read(&hs, data + TUNNEL_MSG1_PREFIX, size - TUNNEL_MSG1_PREFIX,
                                  payload, sizeof(payload), &plen);
        FUZZ_CHECK(r < 0 && plen == 0);
    }
    tunnel_handshake_wipe(&hs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct tunnel_record_tx tx;
    struct tunnel_record_rx rx;
    struct tunnel_cipher c;
    struct sent sent[MAX_RECORDS];
    size_t nsent = 0, wire_len = 0, pos, flip_pos, chunk, have, got, next;
    uint8_t mask, *wire;
    bool tampered;

    if (sodium_init() < 0)
        abort();
    check_raw(data, size);
    check_handshake(data, size);
    check_prefix(data, size);
    if (size < 4)
        return 0;
    flip_pos = (size_t)data[0] << 8 | data[1];
    mask = data[2];
    chunk = (size_t)data[3] + 1;

    keys(&c);
    tunnel_record_tx_init(&tx, &c);
    tunnel_record_tx_rekey_after(&tx, 3, 0);
    wire = malloc(MAX_RECORDS * TUNNEL_RECORD_SEAL_MAX(255));
    FUZZ_CHECK(wire != NULL);
    pos = 4;
    while (pos + 3 <= size && nsent < MAX_RECORDS) {
        uint8_t type = data[pos];
        uint32_t stream = data[pos + 1];
        size_t len = data[pos + 2], n;
        bool was_closed = tx.closed;
        int r;

        pos += 3;
        if (len > size - pos)
            len = size - pos;
        r = tunnel_record_seal(&tx, type, stream, data + pos, len, wire + wire_len,
                               TUNNEL_RECORD_SEAL_MAX(len), &n);
        if (tunnel_record_valid(type, stream, len) && !was_closed) {
            FUZZ_CHECK(r == TUNNEL_REC_OK);
        } else {
            FUZZ_CHECK(r != TUNNEL_REC_OK && n == 0);
            if (was_closed)
                FUZZ_CHECK(r == TUNNEL_REC_ERR_STATE);
        }
        if (r == TUNNEL_REC_OK) {
            FUZZ_CHECK(n == TUNNEL_RECORD_SIZE(len) ||
                       n == TUNNEL_RECORD_SIZE(len) + TUNNEL_RECORD_HEADER_SEALED);
            wire_len += n;
            sent[nsent++] = (struct sent){type, stream, data + pos, len, wire_len};
        }
        pos += len;
    }
    tunnel_record_tx_wipe(&tx);

    tampered = mask != 0 && flip_pos < wire_len;
    if (tampered)
        wire[flip_pos] ^= mask;

    /* Read back in reads of `chunk` bytes. */
    keys(&c);
    tunnel_record_rx_init(&rx, &c);
    have = 0;
    got = 0;
    next = 0;
    for (;;) {
        struct tunnel_record rec;
        size_t used;
        int r;

        r = tunnel_record_open(&rx, wire + got, have - got, &rec, &used);
        if (r == TUNNEL_REC_NEED_MORE) {
            FUZZ_CHECK(used == 0);
            if (have == wire_len)
                break;
            have = have + chunk < wire_len ? have + chunk : wire_len;
            continue;
        }
        if (r != TUNNEL_REC_OK) {
            /* Only a tampering fails, and in the record holding the changed byte. */
            FUZZ_CHECK(tampered && r == TUNNEL_REC_ERR_AUTH);
            FUZZ_CHECK(flip_pos >= got);
            FUZZ_CHECK(next < nsent && flip_pos < sent[next].end);
            break;
        }
        FUZZ_CHECK(used >= TUNNEL_RECORD_HEADER_SEALED && used <= have - got);
        got += used;
        if (rec.type == TUNNEL_REC_REKEY &&
            !(next < nsent && sent[next].type == TUNNEL_REC_REKEY && got == sent[next].end))
            continue; /* one the sender added */
        FUZZ_CHECK(next < nsent);
        FUZZ_CHECK(!tampered || flip_pos >= sent[next].end);
        FUZZ_CHECK(rec.type == sent[next].type && rec.stream == sent[next].stream);
        FUZZ_CHECK(rec.len == sent[next].len && got == sent[next].end);
        FUZZ_CHECK(rec.len == 0 || memcmp(rec.payload, sent[next].payload, rec.len) == 0);
        next++;
    }
    if (!tampered) {
        FUZZ_CHECK(next == nsent && got == wire_len);
        FUZZ_CHECK(tunnel_record_eof(&rx, 0) ==
                   (nsent > 0 && sent[nsent - 1].type == TUNNEL_REC_CLOSE
                        ? TUNNEL_REC_OK
                        : TUNNEL_REC_ERR_TRUNCATED));
    }
    tunnel_record_rx_wipe(&rx);
    free(wire);
    return 0;
}
