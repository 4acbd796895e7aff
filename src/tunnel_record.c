/*
 * The tunnel's transport records, handshake payloads and first-message replay check
 * (include/ferry/tunnel_record.h, doc/tunnel-protocol.md). Pure.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "ferry/tunnel_record.h"

const char *tunnel_record_strerror(int status)
{
    switch (status) {
    case TUNNEL_REC_OK:
        return "ok";
    case TUNNEL_REC_NEED_MORE:
        return "incomplete record";
    case TUNNEL_REC_ERR_AUTH:
        return "record failed authentication";
    case TUNNEL_REC_ERR_PROTO:
        return "record not allowed by the protocol";
    case TUNNEL_REC_ERR_NONCE:
        return "nonces exhausted";
    case TUNNEL_REC_ERR_SPACE:
        return "buffer too small";
    case TUNNEL_REC_ERR_STATE:
        return "direction closed or failed";
    case TUNNEL_REC_ERR_TRUNCATED:
        return "connection cut without a close record";
    }
    return "unknown error";
}

bool tunnel_record_valid(uint8_t type, uint32_t stream, size_t len)
{
    if (len > TUNNEL_RECORD_PAYLOAD_MAX)
        return false;
    switch (type) {
    case TUNNEL_REC_DATA:
    case TUNNEL_REC_OPEN:
    case TUNNEL_REC_REPLY:
        return stream != 0 && len >= 1;
    case TUNNEL_REC_EOF:
        return stream != 0 && len == 0;
    case TUNNEL_REC_RESET:
        return stream != 0 && len == 1;
    case TUNNEL_REC_WINDOW:
        return stream != 0 && len == 4;
    case TUNNEL_REC_PING:
    case TUNNEL_REC_PONG:
        return stream == 0 && len == 8;
    case TUNNEL_REC_REKEY:
    case TUNNEL_REC_CLOSE:
        return stream == 0 && len == 0;
    }
    return false;
}

void tunnel_record_tx_init(struct tunnel_record_tx *tx, struct tunnel_cipher *send)
{
    memset(tx, 0, sizeof(*tx));
    tx->cipher = *send;
    tunnel_cipher_wipe(send);
    tx->rekey_records = TUNNEL_RECORD_REKEY_RECORDS;
    tx->rekey_bytes = TUNNEL_RECORD_REKEY_BYTES;
}

void tunnel_record_rx_init(struct tunnel_record_rx *rx, struct tunnel_cipher *recv)
{
    memset(rx, 0, sizeof(*rx));
    rx->cipher = *recv;
    tunnel_cipher_wipe(recv);
    rx->limit_records = TUNNEL_RECORD_LIMIT_RECORDS;
}

void tunnel_record_tx_rekey_after(struct tunnel_record_tx *tx, uint64_t records, uint64_t bytes)
{
    if (records > 0)
        tx->rekey_records = records;
    if (bytes > 0)
        tx->rekey_bytes = bytes;
}

void tunnel_record_rx_limit(struct tunnel_record_rx *rx, uint64_t records)
{
    if (records > 0)
        rx->limit_records = records;
}

void tunnel_record_tx_wipe(struct tunnel_record_tx *tx)
{
    sodium_memzero(tx, sizeof(*tx));
}

void tunnel_record_rx_wipe(struct tunnel_record_rx *rx)
{
    sodium_memzero(rx, sizeof(*rx));
}

static void header_encode(uint8_t type, uint32_t stream, size_t len,
                          uint8_t hdr[TUNNEL_RECORD_HEADER])
{
    hdr[0] = type;
    hdr[1] = (uint8_t)(stream >> 24);
    hdr[2] = (uint8_t)(stream >> 16);
    hdr[3] = (uint8_t)(stream >> 8);
    hdr[4] = (uint8_t)stream;
    hdr[5] = (uint8_t)(len >> 8);
    hdr[6] = (uint8_t)len;
}

/* One record, no rekey check; out has room. */
static int seal_one(struct tunnel_record_tx *tx, uint8_t type, uint32_t stream,
                    const uint8_t *payload, size_t len, uint8_t *out, size_t *outlen)
{
    uint8_t hdr[TUNNEL_RECORD_HEADER];
    int r;

    header_encode(type, stream, len, hdr);
    r = tunnel_cipher_encrypt(&tx->cipher, NULL, 0, hdr, sizeof(hdr), out);
    if (r == TUNNEL_OK && len > 0)
        r = tunnel_cipher_encrypt(&tx->cipher, NULL, 0, payload, len,
                                  out + TUNNEL_RECORD_HEADER_SEALED);
    if (r != TUNNEL_OK) {
        tx->failed = true;
        return TUNNEL_REC_ERR_NONCE;
    }
    *outlen = TUNNEL_RECORD_SIZE(len);
    tx->records++;
    tx->bytes += len;
    if (type == TUNNEL_REC_REKEY) {
        tunnel_cipher_rekey(&tx->cipher);
        tx->records = tx->bytes = 0;
    } else if (type == TUNNEL_REC_CLOSE) {
        tx->closed = true;
    }
    return TUNNEL_REC_OK;
}

int tunnel_record_seal(struct tunnel_record_tx *tx, uint8_t type, uint32_t stream,
                       const uint8_t *payload, size_t len, uint8_t *out, size_t outsize,
                       size_t *outlen)
{
    size_t pre = 0, n = 0;
    bool rekey;
    int r;

    *outlen = 0;
    if (tx->closed || tx->failed)
        return TUNNEL_REC_ERR_STATE;
    if (!tunnel_record_valid(type, stream, len))
        return TUNNEL_REC_ERR_PROTO;
    rekey = type != TUNNEL_REC_REKEY &&
            (tx->records >= tx->rekey_records || tx->bytes + len > tx->rekey_bytes) &&
            tx->records > 0;
    if (outsize < TUNNEL_RECORD_SIZE(len) + (rekey ? TUNNEL_RECORD_HEADER_SEALED : 0))
        return TUNNEL_REC_ERR_SPACE;
    if (rekey) {
        r = seal_one(tx, TUNNEL_REC_REKEY, 0, NULL, 0, out, &pre);
        if (r != TUNNEL_REC_OK)
            return r;
    }
    r = seal_one(tx, type, stream, payload, len, out + pre, &n);
    if (r != TUNNEL_REC_OK)
        return r;
    *outlen = pre + n;
    return TUNNEL_REC_OK;
}

int tunnel_record_open(struct tunnel_record_rx *rx, uint8_t *buf, size_t avail,
                       struct tunnel_record *rec, size_t *consumed)
{
    struct tunnel_cipher c;
    uint8_t hdr[TUNNEL_RECORD_HEADER];
    uint8_t type;
    uint32_t stream;
    size_t len, total;
    int r;

    *consumed = 0;
    memset(rec, 0, sizeof(*rec));
    if (rx->failed)
        return TUNNEL_REC_ERR_STATE;
    if (rx->closed) {
        if (avail == 0)
            return TUNNEL_REC_NEED_MORE;
        rx->failed = true;
        return TUNNEL_REC_ERR_PROTO;
    }
    if (avail < TUNNEL_RECORD_HEADER_SEALED)
        return TUNNEL_REC_NEED_MORE;
    if (rx->records >= rx->limit_records) {
        rx->failed = true;
        return TUNNEL_REC_ERR_PROTO;
    }
    /* Work on a copy of the CipherState: it is committed only with a whole record. */
    c = rx->cipher;
    r = tunnel_cipher_decrypt(&c, NULL, 0, buf, TUNNEL_RECORD_HEADER_SEALED, hdr);
    if (r != TUNNEL_OK) {
        tunnel_cipher_wipe(&c);
        rx->failed = true;
        return r == TUNNEL_ERR_NONCE ? TUNNEL_REC_ERR_NONCE : TUNNEL_REC_ERR_AUTH;
    }
    type = hdr[0];
    stream = (uint32_t)hdr[1] << 24 | (uint32_t)hdr[2] << 16 | (uint32_t)hdr[3] << 8 | hdr[4];
    len = (size_t)hdr[5] << 8 | hdr[6];
    if (!tunnel_record_valid(type, stream, len)) {
        tunnel_cipher_wipe(&c);
        rx->failed = true;
        return TUNNEL_REC_ERR_PROTO;
    }
    total = TUNNEL_RECORD_SIZE(len);
    if (avail < total) {
        tunnel_cipher_wipe(&c);
        return TUNNEL_REC_NEED_MORE;
    }
    if (len > 0) {
        uint8_t *body = buf + TUNNEL_RECORD_HEADER_SEALED;

        r = tunnel_cipher_decrypt(&c, NULL, 0, body, len + TUNNEL_TAGLEN, body);
        if (r != TUNNEL_OK) {
            tunnel_cipher_wipe(&c);
            rx->failed = true;
            return r == TUNNEL_ERR_NONCE ? TUNNEL_REC_ERR_NONCE : TUNNEL_REC_ERR_AUTH;
        }
        rec->payload = body;
    }
    rx->cipher = c;
    tunnel_cipher_wipe(&c);
    rx->records++;
    if (type == TUNNEL_REC_REKEY) {
        tunnel_cipher_rekey(&rx->cipher);
        rx->records = 0;
    } else if (type == TUNNEL_REC_CLOSE) {
        rx->closed = true;
    }
    rec->type = type;
    rec->stream = stream;
    rec->len = len;
    *consumed = total;
    return TUNNEL_REC_OK;
}

int tunnel_record_eof(const struct tunnel_record_rx *rx, size_t pending)
{
    return rx->closed && !rx->failed && pending == 0 ? TUNNEL_REC_OK : TUNNEL_REC_ERR_TRUNCATED;
}

/* --- handshake payloads ------------------------------------------------------------------- */

void tunnel_msg1_prefix_encode(enum tunnel_suite suite, size_t len, uint8_t out[TUNNEL_MSG1_PREFIX])
{
    unsigned v = (unsigned)suite << 12 | ((unsigned)len & TUNNEL_MSG1_LEN_MASK);

    out[0] = (uint8_t)(v >> 8);
    out[1] = (uint8_t)v;
}

int tunnel_msg1_prefix_parse(const uint8_t in[TUNNEL_MSG1_PREFIX], enum tunnel_suite *suite,
                             size_t *len)
{
    unsigned v = (unsigned)in[0] << 8 | in[1];

    *len = v & TUNNEL_MSG1_LEN_MASK;
    *suite = TUNNEL_CHACHAPOLY;
    switch (v >> 12) {
    case 0:
        return 0;
    case 1:
        *suite = TUNNEL_AESGCM;
        return 0;
    }
    return -1;
}

/* TAI64: 2^62 + TAI seconds; TAI was 10 s ahead of UTC in 1970 (leap seconds since ignored). */
#define TAI64_BASE (UINT64_C(1) << 62)
#define TAI64_UNIX_OFFSET 10

void tunnel_tai64n(uint64_t unix_sec, uint32_t nsec, uint8_t out[TUNNEL_TAI64N_LEN])
{
    uint64_t label = TAI64_BASE + TAI64_UNIX_OFFSET + unix_sec;

    for (int i = 0; i < 8; i++)
        out[i] = (uint8_t)(label >> (56 - 8 * i));
    out[8] = (uint8_t)(nsec >> 24);
    out[9] = (uint8_t)(nsec >> 16);
    out[10] = (uint8_t)(nsec >> 8);
    out[11] = (uint8_t)nsec;
}

int64_t tunnel_tai64n_unix(const uint8_t ts[TUNNEL_TAI64N_LEN])
{
    uint64_t label = 0;

    for (int i = 0; i < 8; i++)
        label = label << 8 | ts[i];
    if (label < TAI64_BASE + TAI64_UNIX_OFFSET || label - TAI64_BASE >= (UINT64_C(1) << 62))
        return -1;
    return (int64_t)(label - TAI64_BASE - TAI64_UNIX_OFFSET);
}

void tunnel_hello_encode(const struct tunnel_hello *h, uint8_t out[TUNNEL_HELLO_LEN])
{
    memcpy(out, h->timestamp, TUNNEL_TAI64N_LEN);
    out[12] = (uint8_t)(h->flags >> 8);
    out[13] = (uint8_t)h->flags;
}

int tunnel_hello_parse(const uint8_t *buf, size_t len, struct tunnel_hello *h)
{
    memset(h, 0, sizeof(*h));
    if (len < TUNNEL_HELLO_LEN || len > TUNNEL_HELLO_MAX)
        return -1;
    memcpy(h->timestamp, buf, TUNNEL_TAI64N_LEN);
    h->flags = (uint16_t)(buf[12] << 8 | buf[13]);
    return 0;
}

/* --- replay table: a linear array, as many entries as keys that ever completed a hello --- */

struct replay_entry {
    uint8_t key[TUNNEL_DHLEN];
    uint8_t latest[TUNNEL_TAI64N_LEN];
};

struct tunnel_replay {
    struct replay_entry *v;
    size_t n, cap;
};

struct tunnel_replay *tunnel_replay_new(void)
{
    return calloc(1, sizeof(struct tunnel_replay));
}

void tunnel_replay_free(struct tunnel_replay *t)
{
    if (t == NULL)
        return;
    free(t->v);
    free(t);
}

size_t tunnel_replay_count(const struct tunnel_replay *t)
{
    return t->n;
}

bool tunnel_replay_newer(const uint8_t latest[TUNNEL_TAI64N_LEN],
                         const uint8_t got[TUNNEL_TAI64N_LEN])
{
    return memcmp(got, latest, TUNNEL_TAI64N_LEN) > 0;
}

int tunnel_replay_check(struct tunnel_replay *t, const uint8_t key[TUNNEL_DHLEN],
                        const uint8_t ts[TUNNEL_TAI64N_LEN], uint64_t now_unix, uint64_t window)
{
    struct replay_entry *e = NULL;

    if (window > 0) {
        int64_t sec = tunnel_tai64n_unix(ts);

        if (sec < 0 || (uint64_t)sec + window < now_unix || (uint64_t)sec > now_unix + window)
            return TUNNEL_REPLAY_SKEW;
    }
    for (size_t i = 0; i < t->n; i++) {
        if (sodium_memcmp(t->v[i].key, key, TUNNEL_DHLEN) == 0) {
            e = &t->v[i];
            break;
        }
    }
    if (e != NULL) {
        if (!tunnel_replay_newer(e->latest, ts))
            return TUNNEL_REPLAY_OLD;
        memcpy(e->latest, ts, TUNNEL_TAI64N_LEN);
        return TUNNEL_REPLAY_OK;
    }
    if (t->n == t->cap) {
        size_t cap = t->cap > 0 ? t->cap * 2 : 16;
        struct replay_entry *v = realloc(t->v, cap * sizeof(*v));

        if (v == NULL)
            return TUNNEL_REPLAY_NOMEM;
        t->v = v;
        t->cap = cap;
    }
    memcpy(t->v[t->n].key, key, TUNNEL_DHLEN);
    memcpy(t->v[t->n].latest, ts, TUNNEL_TAI64N_LEN);
    t->n++;
    return TUNNEL_REPLAY_OK;
}
