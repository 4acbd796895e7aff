/*
 * The one-command mode's known-hosts file: tunnel_known_find on the input as text, for the host
 * "127.0.0.1:1081". A key found is on a line starting with that host, in its canonical base64;
 * a failure names the file and a line; a 12-byte message buffer is never overrun and gives the
 * same answer.
 */
#include "config.h"

#include <sodium.h>

#include "ferry/tunnel_keys.h"
#include "ferry/tunnel_known.h"
#include "fuzz.h"

#define FUZZ_NAME "fuzz.known"
#define FUZZ_HOST "127.0.0.1:1081"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512] = "", small[12] = "";
    uint8_t key[32] = {0}, key2[32] = {0};
    int rc, rc2;

    if (sodium_init() < 0)
        abort();
    rc = tunnel_known_find((const char *)data, size, FUZZ_NAME, FUZZ_HOST, key, err, sizeof(err));
    FUZZ_CHECK(rc >= -1 && rc <= 1);
    FUZZ_CHECK(strnlen(err, sizeof(err)) < sizeof(err));
    if (rc == 1) {
        char text[TUNNEL_KEY_B64 + 1];

        tunnel_key_encode(key, text);
        FUZZ_CHECK(memmem(data, size, text, TUNNEL_KEY_B64) != NULL);
        FUZZ_CHECK(memmem(data, size, FUZZ_HOST, strlen(FUZZ_HOST)) != NULL);
    } else if (rc == -1) {
        FUZZ_CHECK(strncmp(err, FUZZ_NAME ":", strlen(FUZZ_NAME) + 1) == 0);
    }
    rc2 = tunnel_known_find((const char *)data, size, FUZZ_NAME, FUZZ_HOST, key2, small,
                            sizeof(small));
    FUZZ_CHECK(rc2 == rc);
    FUZZ_CHECK(strnlen(small, sizeof(small)) < sizeof(small));
    FUZZ_CHECK(rc != 1 || memcmp(key, key2, sizeof(key)) == 0);
    return 0;
}
