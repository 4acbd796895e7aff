/*
 * The tunnel's sealed datagrams (src/tunnel_udp.c, doc/tunnel-protocol.md 4.3): what the UDP
 * relay does with every datagram from the other ferry (tunnel_udp_open) checked against a
 * model of the replay window.
 *
 * The raw input, opened by a fresh receiver, never authenticates and leaves its window empty.
 * Then the input is a program of 4-byte steps `OP A B C`:
 *   OP % 4 == 0  seal a datagram of A bytes (at most 64 kept, the oldest replaced);
 *   OP % 4 == 1  deliver kept datagram A (a copy), with byte B % length XORed with C;
 *   OP % 4 == 2  move the sender's counter forward by A << (B % 64) (saturating), so large
 *                jumps and the counter's end are reached;
 *   OP % 4 == 3  deliver the step's own 4 bytes, then 28 more of the input, as a datagram.
 * A delivered datagram must open exactly when it is untouched and the model says its counter
 * is new and inside the window (2048 behind the highest taken), with its plaintext back;
 * duplicates and old ones give their reasons; anything changed fails authentication and moves
 * nothing. Sealing at counter 2^64 - 1 is refused with nothing written.
 */
#include "config.h"

#include <sodium.h>

#include "ferry/tunnel_udp.h"
#include "fuzz.h"

#define KEPT 64
#define TAKEN_MAX 4096

struct kept {
    uint64_t counter;
    size_t len; /* sealed length; 0: empty slot */
    uint8_t plain[255];
    uint8_t wire[255 + TUNNEL_UDP_OVERHEAD];
};

static struct kept kept[KEPT];
static uint64_t taken[TAKEN_MAX];
static size_t ntaken;
static bool any;
static uint64_t top;

static bool model_taken(uint64_t c)
{
    for (size_t i = 0; i < ntaken; i++) {
        if (taken[i] == c)
            return true;
    }
    return false;
}

/* What the window must answer for counter c, and the model updated on OK. */
static int model_take(uint64_t c)
{
    if (!any || c > top) {
        any = true;
        top = c;
    } else if (top - c >= TUNNEL_UDP_WINDOW) {
        return TUNNEL_UDP_ERR_OLD;
    } else if (model_taken(c)) {
        return TUNNEL_UDP_ERR_DUPLICATE;
    }
    if (ntaken < TAKEN_MAX)
        taken[ntaken++] = c;
    return TUNNEL_UDP_OK;
}

/* The receiver's state is what it was (padding aside). */
static bool same_dir(const struct tunnel_udp_dir *a, const struct tunnel_udp_dir *b)
{
    return a->id == b->id && a->counter == b->counter && a->any == b->any &&
           memcmp(a->key, b->key, sizeof(a->key)) == 0 &&
           memcmp(a->bitmap, b->bitmap, sizeof(a->bitmap)) == 0;
}

static void deliver(struct tunnel_udp_dir *rx, const struct kept *k, size_t pos, uint8_t mask)
{
    uint8_t *copy = fuzz_dup(k->wire, k->len);
    struct tunnel_udp_dir before = *rx;
    int st, want;

    copy[pos % k->len] ^= mask;
    st = tunnel_udp_open(rx, copy, k->len);
    if (mask != 0) {
        FUZZ_CHECK(st == TUNNEL_UDP_ERR_AUTH);
        FUZZ_CHECK(same_dir(&before, rx));
    } else {
        want = model_take(k->counter);
        FUZZ_CHECK(st == want);
        if (st == TUNNEL_UDP_OK) {
            FUZZ_CHECK(memcmp(copy + TUNNEL_UDP_HEAD, k->plain, k->len - TUNNEL_UDP_OVERHEAD) == 0);
            FUZZ_CHECK(rx->any && rx->counter == top);
        } else {
            FUZZ_CHECK(same_dir(&before, rx));
        }
    }
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t key[TUNNEL_UDP_KEYLEN] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    struct tunnel_udp_dir tx, rx, fresh;
    size_t next = 0, i = 0;

    if (sodium_init() < 0)
        abort();
    memset(kept, 0, sizeof(kept));
    ntaken = 0;
    any = false;
    top = 0;
    tunnel_udp_dir_init(&tx, 0x01020304, key);
    tunnel_udp_dir_init(&rx, 0x01020304, key);

    /* The input as it is: never authentic (a forgery would need the key). */
    {
        uint8_t *copy = fuzz_dup(data, size);

        tunnel_udp_dir_init(&fresh, 0x01020304, key);
        FUZZ_CHECK(tunnel_udp_open(&fresh, copy, size) == TUNNEL_UDP_ERR_AUTH);
        FUZZ_CHECK(!fresh.any && fresh.counter == 0);
        free(copy);
    }

    while (i + 4 <= size) {
        const uint8_t *op = data + i;
        struct kept *k;

        i += 4;
        switch (op[0] % 4) {
        case 0: {
            uint8_t buf[255 + TUNNEL_UDP_OVERHEAD], plain[255];
            size_t len = op[1];
            uint64_t c = tx.counter;
            int st;

            memset(buf, 0xee, sizeof(buf));
            for (size_t j = 0; j < len; j++)
                buf[TUNNEL_UDP_HEAD + j] = (uint8_t)(op[2] + j * op[3]);
            memcpy(plain, buf + TUNNEL_UDP_HEAD, len);
            st = tunnel_udp_seal(&tx, buf, len);
            if (c == UINT64_MAX) {
                FUZZ_CHECK(st == TUNNEL_UDP_ERR_NONCE && tx.counter == UINT64_MAX);
                FUZZ_CHECK(buf[0] == 0xee && buf[TUNNEL_UDP_HEAD + len] == 0xee);
                break;
            }
            FUZZ_CHECK(st == TUNNEL_UDP_OK && tx.counter == c + 1);
            k = &kept[next % KEPT];
            memcpy(k->plain, plain, len);
            k->counter = c;
            k->len = len + TUNNEL_UDP_OVERHEAD;
            memcpy(k->wire, buf, k->len);
            next++;
            break;
        }
        case 1:
            k = &kept[op[1] % KEPT];
            if (k->len > 0)
                deliver(&rx, k, op[2], op[3]);
            break;
        case 2: {
            unsigned shift = op[2] % 64;
            uint64_t add = (uint64_t)op[1] << shift;

            if (op[1] != 0 && (add >> shift) != op[1])
                add = UINT64_MAX; /* shifted out: saturate */
            tx.counter = add > UINT64_MAX - tx.counter ? UINT64_MAX : tx.counter + add;
            break;
        }
        default: {
            size_t len = size - (i - 4) < 32 ? size - (i - 4) : 32;
            uint8_t *copy = fuzz_dup(op, len);
            struct tunnel_udp_dir before = rx;

            FUZZ_CHECK(tunnel_udp_open(&rx, copy, len) == TUNNEL_UDP_ERR_AUTH);
            FUZZ_CHECK(same_dir(&before, &rx));
            free(copy);
            break;
        }
        }
    }
    tunnel_udp_dir_wipe(&tx);
    tunnel_udp_dir_wipe(&rx);
    return 0;
}
