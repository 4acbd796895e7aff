/* Unit tests for the users file. */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "ferry/auth_users.h"

static char err[512], warn[512];
static char hash_alice[crypto_pwhash_STRBYTES];
static char hash_bob[crypto_pwhash_STRBYTES];

/* Real hashes, made at the cheapest cost so the suite stays fast. */
static void make_hashes(void)
{
    ck_assert_int_ge(sodium_init(), 0);
    ck_assert_int_eq(crypto_pwhash_str(hash_alice, "wonderland", 10, crypto_pwhash_OPSLIMIT_MIN,
                                       crypto_pwhash_MEMLIMIT_MIN),
                     0);
    ck_assert_int_eq(crypto_pwhash_str(hash_bob, "builder", 7, crypto_pwhash_OPSLIMIT_MIN,
                                       crypto_pwhash_MEMLIMIT_MIN),
                     0);
}

static void parse_err(const char *text, const char *want)
{
    struct auth_users *db = auth_users_parse(text, "u.txt", err, sizeof(err));

    ck_assert_ptr_null(db);
    ck_assert_str_eq(err, want);
}

START_TEST(test_good_file_and_lookup)
{
    char text[1024];
    struct auth_users *db;
    const char *h;

    snprintf(text, sizeof(text), "# users\n\nalice:%s\n  # indented comment\nbob:%s\n", hash_alice,
             hash_bob);
    db = auth_users_parse(text, "u.txt", err, sizeof(err));
    ck_assert_msg(db != NULL, "%s", err);
    ck_assert_uint_eq(auth_users_count(db), 2);

    h = auth_users_lookup(db, "alice", 5);
    ck_assert_ptr_nonnull(h);
    ck_assert_str_eq(h, hash_alice);
    ck_assert_int_eq(crypto_pwhash_str_verify(h, "wonderland", 10), 0);
    ck_assert_int_ne(crypto_pwhash_str_verify(h, "builder", 7), 0);
    h = auth_users_lookup(db, "bob", 3);
    ck_assert_ptr_nonnull(h);
    ck_assert_str_eq(h, hash_bob);
    auth_users_free(db);
}
END_TEST

START_TEST(test_lookup_absent_and_prefixes)
{
    char text[512];
    struct auth_users *db;

    snprintf(text, sizeof(text), "alice:%s\n", hash_alice);
    db = auth_users_parse(text, "u.txt", err, sizeof(err));
    ck_assert_msg(db != NULL, "%s", err);
    ck_assert_ptr_null(auth_users_lookup(db, "bob", 3));
    ck_assert_ptr_null(auth_users_lookup(db, "alic", 4));
    ck_assert_ptr_null(auth_users_lookup(db, "alicex", 6));
    ck_assert_ptr_null(auth_users_lookup(db, "ALICE", 5));
    ck_assert_ptr_null(auth_users_lookup(db, "", 0));
    /* A length shorter than the string: only the first bytes count. */
    ck_assert_ptr_null(auth_users_lookup(db, "alice", 4));
    ck_assert_ptr_nonnull(auth_users_lookup(db, "alice and more", 5));
    auth_users_free(db);
}
END_TEST

START_TEST(test_lookup_binary_names)
{
    char text[512];
    struct auth_users *db;

    /* UTF-8 and other high bytes are fine in a name. */
    snprintf(text, sizeof(text), "j\xc3\xb6rg:%s\n\xff\xfe:%s\n", hash_alice, hash_bob);
    db = auth_users_parse(text, "u.txt", err, sizeof(err));
    ck_assert_msg(db != NULL, "%s", err);
    ck_assert_ptr_nonnull(auth_users_lookup(db, "j\xc3\xb6rg", 5));
    ck_assert_ptr_nonnull(auth_users_lookup(db, "\xff\xfe", 2));
    /* An embedded NUL is part of the name, not its end. */
    ck_assert_ptr_null(auth_users_lookup(db, "j\xc3\xb6rg\0x", 7));
    ck_assert_ptr_null(auth_users_lookup(db, "\xff\xfe\0", 3));
    ck_assert_ptr_null(auth_users_lookup(db, "\0", 1));
    auth_users_free(db);
}
END_TEST

START_TEST(test_many_users_grow_the_table)
{
    size_t n = 1000, cap = n * (16 + crypto_pwhash_STRBYTES);
    char *text = malloc(cap), name[32];
    size_t off = 0;
    struct auth_users *db;

    for (size_t i = 0; i < n; i++)
        off += (size_t)snprintf(text + off, cap - off, "user%zu:%s\n", i,
                                i % 2 ? hash_alice : hash_bob);
    db = auth_users_parse(text, "u.txt", err, sizeof(err));
    ck_assert_msg(db != NULL, "%s", err);
    ck_assert_uint_eq(auth_users_count(db), n);
    for (size_t i = 0; i < n; i++) {
        int len = snprintf(name, sizeof(name), "user%zu", i);
        const char *h = auth_users_lookup(db, name, (size_t)len);
        ck_assert_ptr_nonnull(h);
        ck_assert_str_eq(h, i % 2 ? hash_alice : hash_bob);
    }
    ck_assert_ptr_null(auth_users_lookup(db, "user1000", 8));
    auth_users_free(db);
    free(text);
}
END_TEST

START_TEST(test_empty_file_has_no_users)
{
    struct auth_users *db = auth_users_parse("# nobody yet\n\n", "u.txt", err, sizeof(err));

    ck_assert_ptr_nonnull(db);
    ck_assert_uint_eq(auth_users_count(db), 0);
    ck_assert_ptr_null(auth_users_lookup(db, "alice", 5));
    auth_users_free(db);
}
END_TEST

START_TEST(test_crlf_and_trailing_blanks)
{
    char text[512];
    struct auth_users *db;

    snprintf(text, sizeof(text), "alice:%s \r\nbob:%s", hash_alice, hash_bob);
    db = auth_users_parse(text, "u.txt", err, sizeof(err));
    ck_assert_msg(db != NULL, "%s", err);
    ck_assert_str_eq(auth_users_lookup(db, "alice", 5), hash_alice);
    ck_assert_str_eq(auth_users_lookup(db, "bob", 3), hash_bob);
    auth_users_free(db);
}
END_TEST

START_TEST(test_line_without_colon)
{
    parse_err("# c\nalice\n", "u.txt:2: expected 'user:hash', found no ':'");
}
END_TEST

START_TEST(test_empty_user_name)
{
    char text[512];

    snprintf(text, sizeof(text), ":%s\n", hash_alice);
    parse_err(text, "u.txt:1: empty user name");
}
END_TEST

START_TEST(test_overlong_user_name)
{
    char text[1024];

    memset(text, 'a', 256);
    snprintf(text + 256, sizeof(text) - 256, ":%s\n", hash_alice);
    parse_err(text, "u.txt:1: user name longer than 255 bytes");

    /* 255 is fine. */
    memset(text, 'a', 255);
    snprintf(text + 255, sizeof(text) - 255, ":%s\n", hash_alice);
    {
        struct auth_users *db = auth_users_parse(text, "u.txt", err, sizeof(err));
        ck_assert_msg(db != NULL, "%s", err);
        auth_users_free(db);
    }
}
END_TEST

START_TEST(test_user_name_with_whitespace_or_control)
{
    char text[512];

    snprintf(text, sizeof(text), "al ice:%s\n", hash_alice);
    parse_err(text, "u.txt:1: user name 'al ice' holds whitespace or control characters");
    snprintf(text, sizeof(text), " alice:%s\n", hash_alice);
    parse_err(text, "u.txt:1: user name ' alice' holds whitespace or control characters");
    snprintf(text, sizeof(text), "al\x01ice:%s\n", hash_alice);
    parse_err(text, "u.txt:1: user name 'al\\x01ice' holds whitespace or control characters");
    snprintf(text, sizeof(text), "al\tice:%s\n", hash_alice);
    parse_err(text, "u.txt:1: user name 'al\\x09ice' holds whitespace or control characters");
    /* A long name is cut short in the message. */
    snprintf(text, sizeof(text), "%.100d\x01:%s\n", 0, hash_alice);
    parse_err(text, "u.txt:1: user name '"
                    "0000000000000000000000000000000000000000000000000000000000000000000000000000"
                    "000000000000...' holds whitespace or control characters");
}
END_TEST

START_TEST(test_hash_that_is_not_argon2)
{
    parse_err("alice:secret\n", "u.txt:1: hash of user 'alice' is not an Argon2 hash from "
                                "ferry-passwd ($argon2id$...)");
    parse_err("alice:\n", "u.txt:1: hash of user 'alice' is not an Argon2 hash from "
                          "ferry-passwd ($argon2id$...)");
    parse_err("alice:$2y$10$abcdefghijklmnopqrstuv\n",
              "u.txt:1: hash of user 'alice' is not an Argon2 hash from ferry-passwd "
              "($argon2id$...)");
    parse_err("alice:$argon2id$v=19$m=65536 t=2\n",
              "u.txt:1: hash of user 'alice' is not an Argon2 hash from ferry-passwd "
              "($argon2id$...)");
}
END_TEST

START_TEST(test_argon2i_hash_is_accepted)
{
    char h[crypto_pwhash_argon2i_STRBYTES], text[512];
    struct auth_users *db;

    ck_assert_int_eq(crypto_pwhash_argon2i_str(h, "pw", 2, crypto_pwhash_argon2i_OPSLIMIT_MIN,
                                               crypto_pwhash_argon2i_MEMLIMIT_MIN),
                     0);
    ck_assert(strncmp(h, "$argon2i$", 9) == 0);
    snprintf(text, sizeof(text), "carol:%s\n", h);
    db = auth_users_parse(text, "u.txt", err, sizeof(err));
    ck_assert_msg(db != NULL, "%s", err);
    ck_assert_int_eq(crypto_pwhash_str_verify(auth_users_lookup(db, "carol", 5), "pw", 2), 0);
    auth_users_free(db);
}
END_TEST

START_TEST(test_duplicate_user)
{
    char text[1024];

    snprintf(text, sizeof(text), "alice:%s\n# x\nbob:%s\nalice:%s\n", hash_alice, hash_bob,
             hash_bob);
    parse_err(text, "u.txt:4: duplicate user 'alice' (first on line 1)");
}
END_TEST

START_TEST(test_long_line)
{
    char *text = malloc(6000);

    memset(text, '#', 5000);
    strcpy(text + 5000, "\n");
    parse_err(text, "u.txt:1: line too long (more than 4096 bytes)");
    free(text);
}
END_TEST

START_TEST(test_load_reads_a_file_and_reports_nul)
{
    char path[] = "/tmp/ferry-test-users-XXXXXX", want[256], line[512];
    struct auth_users *db;
    int fd = mkstemp(path);
    int n;

    ck_assert_int_ge(fd, 0);
    n = snprintf(line, sizeof(line), "alice:%s\n", hash_alice);
    ck_assert_int_eq(write(fd, line, (size_t)n), n);
    db = auth_users_load(path, err, sizeof(err), warn, sizeof(warn));
    ck_assert_msg(db != NULL, "%s", err);
    ck_assert_str_eq(auth_users_lookup(db, "alice", 5), hash_alice);
    auth_users_free(db);

    ck_assert_int_eq(write(fd, "bob\0:x\n", 7), 7);
    close(fd);
    db = auth_users_load(path, err, sizeof(err), warn, sizeof(warn));
    ck_assert_ptr_null(db);
    snprintf(want, sizeof(want), "%s:2: NUL byte in line", path);
    ck_assert_str_eq(err, want);
    unlink(path);
}
END_TEST

START_TEST(test_file_others_may_write_is_refused_world_readable_warned)
{
    char path[] = "/tmp/ferry-test-users-XXXXXX", want[512], line[512];
    struct auth_users *db;
    int fd = mkstemp(path);
    int n;

    ck_assert_int_ge(fd, 0);
    n = snprintf(line, sizeof(line), "alice:%s\n", hash_alice);
    ck_assert_int_eq(write(fd, line, (size_t)n), n);
    close(fd);

    ck_assert_int_eq(chmod(path, 0600), 0);
    db = auth_users_load(path, err, sizeof(err), warn, sizeof(warn));
    ck_assert_msg(db != NULL, "%s", err);
    ck_assert_str_eq(warn, "");
    auth_users_free(db);

    ck_assert_int_eq(chmod(path, 0640), 0);
    db = auth_users_load(path, err, sizeof(err), warn, sizeof(warn));
    ck_assert_msg(db != NULL, "%s", err);
    ck_assert_str_eq(warn, "");
    auth_users_free(db);

    ck_assert_int_eq(chmod(path, 0644), 0);
    db = auth_users_load(path, err, sizeof(err), warn, sizeof(warn));
    ck_assert_msg(db != NULL, "%s", err);
    snprintf(want, sizeof(want),
             "%s is readable by every user (mode 0644): its hashes can be guessed offline; "
             "chmod o-r %s",
             path, path);
    ck_assert_str_eq(warn, want);
    auth_users_free(db);

    ck_assert_int_eq(chmod(path, 0660), 0);
    ck_assert_ptr_null(auth_users_load(path, err, sizeof(err), warn, sizeof(warn)));
    snprintf(want, sizeof(want),
             "%s: writable by its group (mode 0660): anyone who can write it can add users; "
             "chmod go-w %s",
             path, path);
    ck_assert_str_eq(err, want);

    ck_assert_int_eq(chmod(path, 0602), 0);
    ck_assert_ptr_null(auth_users_load(path, err, sizeof(err), warn, sizeof(warn)));
    ck_assert_msg(strstr(err, "writable by every user (mode 0602)") != NULL, "%s", err);
    unlink(path);
}
END_TEST

START_TEST(test_unreadable_file)
{
    ck_assert_ptr_null(auth_users_load("/nonexistent/users", err, sizeof(err), warn, sizeof(warn)));
    ck_assert_str_eq(err, "/nonexistent/users: No such file or directory");
}
END_TEST

START_TEST(test_valid_name_rules)
{
    ck_assert(auth_users_valid_name("alice", 5));
    ck_assert(auth_users_valid_name("a.b-c_d@example.com", 19));
    ck_assert(auth_users_valid_name("j\xc3\xb6rg", 5));
    ck_assert(auth_users_valid_name("a#b", 3));
    ck_assert(!auth_users_valid_name("", 0));
    ck_assert(!auth_users_valid_name("a:b", 3));
    ck_assert(!auth_users_valid_name("a b", 3));
    ck_assert(!auth_users_valid_name("a\nb", 3));
    ck_assert(!auth_users_valid_name("a\x7f", 2));
    ck_assert(!auth_users_valid_name("a\0b", 3));
    ck_assert(!auth_users_valid_name("#a", 2));
    {
        char big[256];
        memset(big, 'x', sizeof(big));
        ck_assert(auth_users_valid_name(big, 255));
        ck_assert(!auth_users_valid_name(big, 256));
    }
}
END_TEST

START_TEST(test_free_null_is_harmless)
{
    auth_users_free(NULL);
    ck_assert_uint_eq(auth_users_count(NULL), 0);
    ck_assert_ptr_null(auth_users_lookup(NULL, "a", 1));
}
END_TEST

static Suite *auth_users_suite(void)
{
    Suite *s = suite_create("auth_users");
    TCase *tc = tcase_create("core");

    tcase_add_unchecked_fixture(tc, make_hashes, NULL);
    tcase_add_test(tc, test_good_file_and_lookup);
    tcase_add_test(tc, test_lookup_absent_and_prefixes);
    tcase_add_test(tc, test_lookup_binary_names);
    tcase_add_test(tc, test_many_users_grow_the_table);
    tcase_add_test(tc, test_empty_file_has_no_users);
    tcase_add_test(tc, test_crlf_and_trailing_blanks);
    tcase_add_test(tc, test_line_without_colon);
    tcase_add_test(tc, test_empty_user_name);
    tcase_add_test(tc, test_overlong_user_name);
    tcase_add_test(tc, test_user_name_with_whitespace_or_control);
    tcase_add_test(tc, test_hash_that_is_not_argon2);
    tcase_add_test(tc, test_argon2i_hash_is_accepted);
    tcase_add_test(tc, test_duplicate_user);
    tcase_add_test(tc, test_long_line);
    tcase_add_test(tc, test_load_reads_a_file_and_reports_nul);
    tcase_add_test(tc, test_file_others_may_write_is_refused_world_readable_warned);
    tcase_add_test(tc, test_unreadable_file);
    tcase_add_test(tc, test_valid_name_rules);
    tcase_add_test(tc, test_free_null_is_harmless);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(auth_users_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
