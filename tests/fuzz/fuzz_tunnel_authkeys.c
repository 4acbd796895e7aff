/*
 * The tunnel's key files: tunnel_authkeys_parse and tunnel_key_parse_private on the input as
 * text. An authorized-keys file that parses has, on every line that is not blank or a
 * comment, a key (one of its two fields) whose lookup is the other field, and as many keys as
 * such lines; a private key file that parses decodes to a key whose base64 is on one line.
 * Failures name the file (and the line).
 */
#include "config.h"

#include <sodium.h>

#include "ferry/tunnel_keys.h"
#include "fuzz.h"

#define FUZZ_NAME "fuzz.keys"

static bool is_blank(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r';
}

/* Walk the lines by the documented format and compare with what the parser stored. */
static void check_db(const struct tunnel_authkeys *db, const uint8_t *data, size_t size)
{
    size_t pos = 0, keys = 0;

    while (pos < size) {
        const char *s = (const char *)data + pos;
        const char *nl = memchr(s, '\n', size - pos);
        size_t n = nl != NULL ? (size_t)(nl - s) : size - pos;
        const char *f[2] = {NULL, NULL};
        size_t flen[2] = {0, 0}, count = 0, i = 0;

        pos += n + (nl != NULL ? 1 : 0);
        while (i < n) {
            size_t start;

            while (i < n && is_blank(s[i]))
                i++;
            if (i == n || s[i] == '#')
                break;
            start = i;
            while (i < n && !is_blank(s[i]))
                i++;
            FUZZ_CHECK(count < 2);
            f[count] = s + start;
            flen[count++] = i - start;
        }
        if (count == 0)
            continue;
        FUZZ_CHECK(count == 2);
        for (int k = 0; k < 2; k++) {
            uint8_t key[TUNNEL_KEY_BYTES];
            const char *user;

            if (tunnel_key_decode(f[k], flen[k], key) != 0)
                continue;
            user = tunnel_authkeys_lookup(db, key);
            FUZZ_CHECK(user != NULL);
            FUZZ_CHECK(strlen(user) == flen[1 - k] && memcmp(user, f[1 - k], flen[1 - k]) == 0);
            keys++;
        }
    }
    FUZZ_CHECK(tunnel_authkeys_count(db) == keys);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512], small[12];
    struct tunnel_authkeys *db;
    uint8_t priv[TUNNEL_KEY_BYTES];

    if (sodium_init() < 0)
        abort();
    db = tunnel_authkeys_parse((const char *)data, size, FUZZ_NAME, err, sizeof(err));
    FUZZ_CHECK(strnlen(err, sizeof(err)) < sizeof(err));
    if (db != NULL) {
        FUZZ_CHECK(err[0] == '\0');
        check_db(db, data, size);
        tunnel_authkeys_free(db);
    } else {
        FUZZ_CHECK(strncmp(err, FUZZ_NAME ":", strlen(FUZZ_NAME) + 1) == 0);
    }
    /* A short message buffer is never overrun and the answer is the same. */
    db = tunnel_authkeys_parse((const char *)data, size, FUZZ_NAME, small, sizeof(small));
    FUZZ_CHECK(strnlen(small, sizeof(small)) < sizeof(small));
    tunnel_authkeys_free(db);

    if (tunnel_key_parse_private((const char *)data, size, FUZZ_NAME, priv, err, sizeof(err)) ==
        0) {
        char text[TUNNEL_KEY_B64 + 1];

        tunnel_key_encode(priv, text);
        FUZZ_CHECK(memmem(data, size, text, TUNNEL_KEY_B64) != NULL);
    } else {
        FUZZ_CHECK(strncmp(err, FUZZ_NAME ":", strlen(FUZZ_NAME) + 1) == 0);
        for (size_t i = 0; i < sizeof(priv); i++)
            FUZZ_CHECK(priv[i] == 0);
    }
    return 0;
}
