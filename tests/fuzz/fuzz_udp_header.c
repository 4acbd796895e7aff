/*
 * SOCKS5 UDP datagram header (RFC 1928 section 7), as src/udp.c uses it for every datagram
 * from a client: socks5_parse_udp_header on the whole datagram and on every truncation of it,
 * and the header the relay builds for an address (socks5_encode_udp_header) parsing back to
 * that address: a build/parse round trip.
 */
#include "config.h"

#include <sys/un.h>

#include "ferry/socks5.h"
#include "fuzz.h"

static const uint8_t v4mapped[12] = {[10] = 0xff, [11] = 0xff};

static bool same_dest(const struct socks_dest *x, const struct socks_dest *y)
{
    if (x->type != y->type || x->port != y->port)
        return false;
    if (x->type == DEST_NAME)
        return strcmp(x->name, y->name) == 0;
    return memcmp(x->ip, y->ip, x->type == DEST_IPV4 ? 4 : 16) == 0;
}

static enum proto_status parse_exact(const uint8_t *data, size_t len, struct socks5_udp_header *h,
                                     size_t *hdrlen)
{
    uint8_t *copy = fuzz_dup(data, len);
    enum proto_status st;

    memset(h, 0, sizeof(*h));
    st = socks5_parse_udp_header(copy, len, h, hdrlen);
    free(copy);
    return st;
}

/* Build the header for the parsed address, as the relay does for a reply, and read it back. */
static void check_round_trip(const struct socks5_udp_header *h, const uint8_t *wire, size_t hdrlen)
{
    struct socks5_udp_header back;
    struct socks_dest want = h->dest;
    uint8_t out[22];
    struct addr a;
    size_t n, blen = 0;

    if (socks_dest_to_addr(&h->dest, &a) != 0) {
        FUZZ_CHECK(h->dest.type == DEST_NAME);
        return;
    }
    n = socks5_encode_udp_header(out, &a.u.sa);
    FUZZ_CHECK(n == 10 || n == 22);
    FUZZ_CHECK(out[0] == 0 && out[1] == 0 && out[2] == 0);
    if (want.type == DEST_IPV6 && memcmp(want.ip, v4mapped, 12) == 0) {
        /* Sent as the IPv4 address it maps. */
        want.type = DEST_IPV4;
        memmove(want.ip, want.ip + 12, 4);
        memset(want.ip + 4, 0, 12);
        FUZZ_CHECK(n == 10);
    } else {
        /* Same bytes from ATYP on: the header names the address the client named. */
        FUZZ_CHECK(n == hdrlen && memcmp(out + 3, wire + 3, n - 3) == 0);
    }
    FUZZ_CHECK(parse_exact(out, n, &back, &blen) == PROTO_OK);
    FUZZ_CHECK(blen == n && back.frag == 0);
    FUZZ_CHECK(same_dest(&back.dest, &want));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct socks5_udp_header h, again;
    size_t hdrlen = 0, len2 = 0;
    enum proto_status st = parse_exact(data, size, &h, &hdrlen);
    struct sockaddr_un sun;
    uint8_t out[22];

    /* A datagram is whole: never NEED_MORE. */
    FUZZ_CHECK(st == PROTO_OK || st == PROTO_ERROR);
    if (st == PROTO_OK) {
        FUZZ_CHECK(hdrlen >= 8 && hdrlen <= size && hdrlen <= SOCKS5_UDP_HEADER_MAX);
        FUZZ_CHECK(h.frag == data[2]);
        if (h.dest.type == DEST_NAME) {
            size_t n = strnlen(h.dest.name, sizeof(h.dest.name));
            FUZZ_CHECK(n >= 1 && n <= DEST_NAME_MAX && hdrlen == 7 + n);
        }
        /* The header alone parses the same; any shorter datagram is refused. */
        FUZZ_CHECK(parse_exact(data, hdrlen, &again, &len2) == PROTO_OK);
        FUZZ_CHECK(len2 == hdrlen && again.frag == h.frag && same_dest(&again.dest, &h.dest));
        for (size_t k = 0; k < hdrlen; k++)
            FUZZ_CHECK(parse_exact(data, k, &again, &len2) == PROTO_ERROR);
        fuzz_check_dest_format(&h.dest);
        check_round_trip(&h, data, hdrlen);
    }

    /* Another family gives no header. */
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    FUZZ_CHECK(socks5_encode_udp_header(out, (const struct sockaddr *)&sun) == 0);
    return 0;
}
