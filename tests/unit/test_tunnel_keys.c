/*
 * Unit tests for src/tunnel_keys.c: base64 keys and fingerprints (checked against Python's
 * base64 and hashlib.blake2b), the private key file (format, mode and owner checks, loading)
 * and the authorized-keys file.
 */
#include "config.h"

#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "ferry/tunnel_keys.h"
#include "ferry/tunnel_known.h"

#define KEY0 "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=" /* bytes 0..31 */
#define KEYF "//////////////////////////////////////////8=" /* 32 x 0xff */

static char err[512];

START_TEST(test_key_base64_round_trip_and_strictness)
{
    uint8_t key[32], back[32];
    char text[TUNNEL_KEY_B64 + 1];

    for (int i = 0; i < 32; i++)
        key[i] = (uint8_t)i;
    tunnel_key_encode(key, text);
    ck_assert_str_eq(text, KEY0);
    ck_assert_int_eq(tunnel_key_decode(text, strlen(text), back), 0);
    ck_assert_mem_eq(back, key, 32);
    ck_assert_int_eq(tunnel_key_decode(text, 43, back), -1);
    ck_assert_int_eq(tunnel_key_decode(KEY0 "A", 45, back), -1);
    /* The last character holds 2 spare bits, which must be zero: one text per key. */
    ck_assert_int_eq(tunnel_key_decode("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9=", 44, back),
                     -1);
    ck_assert_int_eq(tunnel_key_decode("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8A", 44, back),
                     -1);
    ck_assert_int_eq(tunnel_key_decode("_____________________________________________", 44, back),
                     -1);
    ck_assert_int_eq(tunnel_key_decode("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaG xwdHh8=", 44, back),
                     -1);
    /* A byte above 0x7f is not a base64 digit (libsodium 1.0.18 took this one; fuzzing found it).
     */
    ck_assert_int_eq(tunnel_key_decode("A\xc2"
                                       "ECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
                                       44, back),
                     -1);
}
END_TEST

START_TEST(test_fingerprint_is_blake2b_512_first_8_bytes)
{
    uint8_t key[32];
    char fp[TUNNEL_FINGERPRINT_SIZE];

    for (int i = 0; i < 32; i++)
        key[i] = (uint8_t)i;
    /* 'BLAKE2b:' + base64(hashlib.blake2b(key).digest()[:8]) without '=' */
    tunnel_key_fingerprint(key, fp);
    ck_assert_str_eq(fp, "BLAKE2b:XFKSCnJj450");
    memset(key, 0xff, sizeof(key));
    tunnel_key_fingerprint(key, fp);
    ck_assert_str_eq(fp, "BLAKE2b:g7Wt5pkTQu0");
    ck_assert_uint_eq(strlen(fp) + 1, TUNNEL_FINGERPRINT_SIZE);
}
END_TEST

START_TEST(test_private_key_text)
{
    uint8_t priv[32];
    const char *good = "# ferry-keygen private key\n\n  " KEY0 "  \r\n# end\n";

    ck_assert_int_eq(tunnel_key_parse_private(good, strlen(good), "k", priv, err, sizeof(err)), 0);
    ck_assert_uint_eq(priv[31], 31);
    ck_assert_int_eq(tunnel_key_parse_private("", 0, "k", priv, err, sizeof(err)), -1);
    ck_assert_str_eq(err, "k: no key in the file");
    ck_assert_int_eq(tunnel_key_parse_private(KEY0 "\n" KEYF "\n", 90, "k", priv, err, sizeof(err)),
                     -1);
    ck_assert_str_eq(err, "k:2: a second key (the first is on line 1)");
    ck_assert_int_eq(
        tunnel_key_parse_private("\nnot a key\n", 11, "/etc/k", priv, err, sizeof(err)), -1);
    ck_assert_str_eq(err,
                     "/etc/k:2: not a private key (44 characters of base64 from ferry-keygen)");
    /* A NUL inside: the length counts, the line is not a key. */
    ck_assert_int_eq(tunnel_key_parse_private(KEY0 "\0x", 46, "k", priv, err, sizeof(err)), -1);
}
END_TEST

START_TEST(test_private_key_mode_refused_when_others_may_read)
{
    ck_assert_int_eq(tunnel_key_check_mode("k", S_IFREG | 0600, 1000, 1000, err, sizeof(err)), 0);
    ck_assert_int_eq(tunnel_key_check_mode("k", S_IFREG | 0400, 1000, 1000, err, sizeof(err)), 0);
    ck_assert_int_eq(tunnel_key_check_mode("k", S_IFREG | 0600, 0, 1000, err, sizeof(err)), 0);
    ck_assert_int_eq(tunnel_key_check_mode("k", S_IFREG | 0644, 1000, 1000, err, sizeof(err)), -1);
    ck_assert_str_eq(err, "k: UNPROTECTED PRIVATE KEY FILE: mode 0644 lets every user at it; it "
                          "must be its owner's only: chmod 600 k");
    ck_assert_int_eq(tunnel_key_check_mode("k", S_IFREG | 0640, 1000, 1000, err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, "lets its group at it"));
    ck_assert_int_eq(tunnel_key_check_mode("k", S_IFREG | 0610, 1000, 1000, err, sizeof(err)), -1);
    ck_assert_int_eq(tunnel_key_check_mode("k", S_IFREG | 0601, 1000, 1000, err, sizeof(err)), -1);
    ck_assert_int_eq(tunnel_key_check_mode("k", S_IFREG | 0600, 1001, 1000, err, sizeof(err)), -1);
    ck_assert_str_eq(err, "k: belongs to user 1001, not to this process' user 1000");
    /* root (before it drops to the configured user) may use that user's key; not loose ones */
    ck_assert_int_eq(tunnel_key_check_mode("k", S_IFREG | 0600, 1001, 0, err, sizeof(err)), 0);
    ck_assert_int_eq(tunnel_key_check_mode("k", S_IFREG | 0640, 1001, 0, err, sizeof(err)), -1);
}
END_TEST

START_TEST(test_private_key_load_checks_the_file_mode)
{
    char path[] = "/tmp/ferry-test-key-XXXXXX";
    uint8_t priv[32];
    int fd = mkstemp(path);

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, KEY0 "\n", 45), 45);
    close(fd);
    ck_assert_int_eq(chmod(path, 0600), 0);
    ck_assert_int_eq(tunnel_key_load_private(path, priv, err, sizeof(err)), 0);
    ck_assert_uint_eq(priv[1], 1);
    ck_assert_int_eq(chmod(path, 0644), 0);
    ck_assert_int_eq(tunnel_key_load_private(path, priv, err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, "UNPROTECTED PRIVATE KEY FILE"));
    ck_assert_int_eq(strncmp(err, path, strlen(path)), 0);
    unlink(path);
    ck_assert_int_eq(tunnel_key_load_private(path, priv, err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, "No such file"));
    ck_assert_int_eq(tunnel_key_load_private("/tmp", priv, err, sizeof(err)), -1);
    ck_assert_str_eq(err, "/tmp: not a regular file");
}
END_TEST

static struct tunnel_authkeys *parse(const char *text)
{
    return tunnel_authkeys_parse(text, strlen(text), "authorized_keys", err, sizeof(err));
}

START_TEST(test_authorized_keys_both_orders_and_comments)
{
    uint8_t k0[32], kf[32], other[32] = {7};
    struct tunnel_authkeys *db;

    ck_assert_int_eq(tunnel_key_decode(KEY0, 44, k0), 0);
    ck_assert_int_eq(tunnel_key_decode(KEYF, 44, kf), 0);
    db = parse("# client keys\n"
               "\n" KEY0 " alice\r\n"
               "\tbob\t" KEYF "   # bob's laptop\n");
    ck_assert_msg(db != NULL, "%s", err);
    ck_assert_str_eq(err, "");
    ck_assert_uint_eq(tunnel_authkeys_count(db), 2);
    ck_assert_str_eq(tunnel_authkeys_lookup(db, k0), "alice");
    ck_assert_str_eq(tunnel_authkeys_lookup(db, kf), "bob");
    ck_assert_ptr_null(tunnel_authkeys_lookup(db, other));
    tunnel_authkeys_free(db);

    /* One user, two keys; an empty file. */
    db = parse("alice " KEY0 "\nalice " KEYF);
    ck_assert_ptr_nonnull(db);
    ck_assert_str_eq(tunnel_authkeys_lookup(db, kf), "alice");
    tunnel_authkeys_free(db);
    db = parse("");
    ck_assert_ptr_nonnull(db);
    ck_assert_uint_eq(tunnel_authkeys_count(db), 0);
    tunnel_authkeys_free(db);
}
END_TEST

START_TEST(test_authorized_keys_errors_name_file_and_line)
{
    ck_assert_ptr_null(parse("\n" KEY0 "\n"));
    ck_assert_str_eq(err, "authorized_keys:2: expected 'KEY USER' or 'USER KEY', found one field");
    ck_assert_ptr_null(parse(KEY0 " alice extra\n"));
    ck_assert_str_eq(err, "authorized_keys:1: expected 'KEY USER' or 'USER KEY', found more "
                          "fields (a comment starts with '#')");
    ck_assert_ptr_null(parse("alice bob\n"));
    ck_assert_str_eq(err, "authorized_keys:1: no public key (44 characters of base64, as "
                          "ferry-keygen prints it)");
    ck_assert_ptr_null(parse(KEY0 " " KEYF "\n"));
    ck_assert_str_eq(err, "authorized_keys:1: both fields are keys: which is the user?");
    ck_assert_ptr_null(parse(KEY0 " al:ice\n"));
    ck_assert_str_eq(err, "authorized_keys:1: 'al:ice' is not a valid user name (1 to 255 bytes, "
                          "no ':' or control characters)");
    ck_assert_ptr_null(parse(KEY0 " alice\n#\nbob " KEY0 "\n"));
    ck_assert_str_eq(err, "authorized_keys:3: key already given on line 1 (for user alice)");
    ck_assert_ptr_null(tunnel_authkeys_parse("alice " KEY0 "\0", 51, "f", err, sizeof(err)));
    ck_assert_str_eq(err, "f:1: NUL byte in line");
    {
        char *longline = malloc(5000);
        memset(longline, 'a', 4999);
        longline[4999] = '\0';
        ck_assert_ptr_null(parse(longline));
        ck_assert_str_eq(err, "authorized_keys:1: line too long (more than 4096 bytes)");
        free(longline);
    }
}
END_TEST

START_TEST(test_authorized_keys_load_refuses_a_group_writable_file)
{
    char path[] = "/tmp/ferry-test-authkeys-XXXXXX";
    struct tunnel_authkeys *db;
    int fd = mkstemp(path);

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "carol " KEY0 "\n", 51), 51);
    close(fd);
    ck_assert_int_eq(chmod(path, 0644), 0);
    db = tunnel_authkeys_load(path, err, sizeof(err));
    ck_assert_msg(db != NULL, "%s", err);
    ck_assert_uint_eq(tunnel_authkeys_count(db), 1);
    tunnel_authkeys_free(db);
    ck_assert_int_eq(chmod(path, 0664), 0);
    ck_assert_ptr_null(tunnel_authkeys_load(path, err, sizeof(err)));
    ck_assert_ptr_nonnull(strstr(err, "writable by its group (mode 0664)"));
    unlink(path);
    ck_assert_ptr_null(tunnel_authkeys_load(path, err, sizeof(err)));
}
END_TEST

/* The one-command mode's known_hosts: the line of the host asked, exact match only. */
START_TEST(test_known_hosts_find)
{
    const char *k1 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const char *k2 = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";
    char text[512];
    uint8_t key[32];

    snprintf(text, sizeof(text), "# hosts\n\n127.0.0.1:10810 %s\n  127.0.0.1:1081\t%s \r\n", k1,
             k2);
    ck_assert_int_eq(
        tunnel_known_find(text, strlen(text), "kh", "127.0.0.1:1081", key, err, sizeof(err)), 1);
    ck_assert_uint_eq(key[0], 1);
    ck_assert_uint_eq(key[31], 32);
    ck_assert_int_eq(
        tunnel_known_find(text, strlen(text), "kh", "127.0.0.1:10810", key, err, sizeof(err)), 1);
    ck_assert_uint_eq(key[0], 0);
    ck_assert_int_eq(
        tunnel_known_find(text, strlen(text), "kh", "127.0.0.1:108", key, err, sizeof(err)), 0);
    ck_assert_int_eq(tunnel_known_find("", 0, "kh", "h:1", key, err, sizeof(err)), 0);
    ck_assert_int_eq(tunnel_known_find("a:1\n", 4, "kh", "h:1", key, err, sizeof(err)), -1);
    ck_assert_str_eq(err, "kh:1: expected HOST:PORT KEY");
    ck_assert_int_eq(tunnel_known_find("# x\nh:1 nokey\n", 14, "kh", "h:1", key, err, sizeof(err)),
                     -1);
    ck_assert_str_eq(err, "kh:2: not a key");
}
END_TEST

static Suite *tunnel_keys_suite(void)
{
    Suite *s = suite_create("tunnel_keys");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_key_base64_round_trip_and_strictness);
    tcase_add_test(tc, test_fingerprint_is_blake2b_512_first_8_bytes);
    tcase_add_test(tc, test_private_key_text);
    tcase_add_test(tc, test_private_key_mode_refused_when_others_may_read);
    tcase_add_test(tc, test_private_key_load_checks_the_file_mode);
    tcase_add_test(tc, test_authorized_keys_both_orders_and_comments);
    tcase_add_test(tc, test_authorized_keys_errors_name_file_and_line);
    tcase_add_test(tc, test_authorized_keys_load_refuses_a_group_writable_file);
    tcase_add_test(tc, test_known_hosts_find);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr;
    int failed;

    if (sodium_init() < 0)
        return 1;
    sr = srunner_create(tunnel_keys_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
