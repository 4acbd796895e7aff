/*
 * The users file: auth_users_parse on the input as text. When it succeeds, every line that is not
 * blank or a comment must be a user whose lookup gives exactly the hash written after the
 * first ':' (trailing blanks and a CR cut), and the count must match; when it fails, the
 * message names file and line.
 */
#include "config.h"

#include "ferry/auth_users.h"
#include "fuzz.h"

#define FUZZ_USERS_NAME "fuzz.users"

static bool is_blank(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r';
}

/* Walk the lines again by the documented format and compare with what the parser stored. */
static void check_db(const struct auth_users *db, const char *text)
{
    size_t users = 0;

    for (const char *s = text; *s != '\0';) {
        const char *nl = strchr(s, '\n');
        size_t n = nl != NULL ? (size_t)(nl - s) : strlen(s);
        const char *colon, *hash;
        size_t i = 0;

        while (n > 0 && is_blank(s[n - 1]))
            n--;
        while (i < n && is_blank(s[i]))
            i++;
        if (i < n && s[i] != '#') {
            colon = memchr(s, ':', n);
            FUZZ_CHECK(colon != NULL);
            FUZZ_CHECK(auth_users_valid_name(s, (size_t)(colon - s)));
            hash = auth_users_lookup(db, s, (size_t)(colon - s));
            FUZZ_CHECK(hash != NULL);
            FUZZ_CHECK(strlen(hash) == n - (size_t)(colon - s) - 1);
            FUZZ_CHECK(memcmp(hash, colon + 1, strlen(hash)) == 0);
            users++;
        }
        if (nl == NULL)
            break;
        s = nl + 1;
    }
    FUZZ_CHECK(auth_users_count(db) == users);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_strdup(data, size);
    char err[512];
    struct auth_users *db = auth_users_parse(text, FUZZ_USERS_NAME, err, sizeof(err));

    FUZZ_CHECK(strnlen(err, sizeof(err)) < sizeof(err));
    if (db != NULL) {
        FUZZ_CHECK(err[0] == '\0');
        check_db(db, text);
        /* A name the file cannot hold is never found. */
        FUZZ_CHECK(auth_users_lookup(db, "", 0) == NULL);
        FUZZ_CHECK(auth_users_lookup(db, "a:b", 3) == NULL);
        auth_users_free(db);
    } else {
        FUZZ_CHECK(strncmp(err, FUZZ_USERS_NAME ":", strlen(FUZZ_USERS_NAME) + 1) == 0);
    }
    free(text);
    return 0;
}
