/* Unit tests for src/units.c: comma-separated lists and reading whole files. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ferry/units.h"

START_TEST(test_list_items_in_order_then_null)
{
    const char *list = "a,bc,,d";
    char item[8];

    ck_assert_uint_eq(units_list_count(list), 4);
    ck_assert_uint_eq(units_list_next(&list, item, sizeof(item)), 1);
    ck_assert_str_eq(item, "a");
    ck_assert_uint_eq(units_list_next(&list, item, sizeof(item)), 2);
    ck_assert_str_eq(item, "bc");
    ck_assert_uint_eq(units_list_next(&list, item, sizeof(item)), 0);
    ck_assert_str_eq(item, "");
    ck_assert_ptr_nonnull(list);
    ck_assert_uint_eq(units_list_next(&list, item, sizeof(item)), 1);
    ck_assert_str_eq(item, "d");
    ck_assert_ptr_null(list);
}
END_TEST

START_TEST(test_list_empty_text_and_trailing_comma_have_empty_items)
{
    const char *list = "";
    char item[8];

    ck_assert_uint_eq(units_list_count(list), 1);
    ck_assert_uint_eq(units_list_next(&list, item, sizeof(item)), 0);
    ck_assert_ptr_null(list);
    list = "x,";
    ck_assert_uint_eq(units_list_count(list), 2);
    ck_assert_uint_eq(units_list_next(&list, item, sizeof(item)), 1);
    ck_assert_uint_eq(units_list_next(&list, item, sizeof(item)), 0);
    ck_assert_ptr_null(list);
}
END_TEST

START_TEST(test_list_item_too_long_is_cut_and_measured)
{
    const char *list = "abcdefgh,ij";
    char item[4];

    ck_assert_uint_eq(units_list_next(&list, item, sizeof(item)), 8);
    ck_assert_str_eq(item, "abc");
    ck_assert_uint_eq(units_list_next(&list, item, sizeof(item)), 2);
    ck_assert_str_eq(item, "ij");
    list = "abcd";
    ck_assert_uint_eq(units_list_next(&list, item, sizeof(item)), 4); /* exactly size: too long */
    ck_assert_str_eq(item, "abc");
}
END_TEST

/* A temporary file holding len bytes of text; its path is written into path. */
static void temp_file(char *path, size_t size, const char *text, size_t len)
{
    FILE *f;
    int fd;

    snprintf(path, size, "/tmp/test_units.XXXXXX");
    fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    f = fdopen(fd, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(text, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
}

START_TEST(test_read_file_whole_with_nul_bytes_and_terminator)
{
    char path[64];
    size_t len = 0;
    char *buf;

    temp_file(path, sizeof(path), "ab\0cd\n", 6);
    buf = units_read_file(path, 6, &len);
    ck_assert_ptr_nonnull(buf);
    ck_assert_uint_eq(len, 6);
    ck_assert_mem_eq(buf, "ab\0cd\n", 7);
    free(buf);
    unlink(path);
}
END_TEST

START_TEST(test_read_file_larger_than_max_is_efbig)
{
    char path[64], *text = malloc(10000);
    size_t len = 0;

    ck_assert_ptr_nonnull(text);
    memset(text, 'x', 10000);
    temp_file(path, sizeof(path), text, 10000);
    errno = 0;
    ck_assert_ptr_null(units_read_file(path, 9999, &len));
    ck_assert_int_eq(errno, EFBIG);
    free(units_read_file(path, 10000, &len)); /* exactly max is fine */
    ck_assert_uint_eq(len, 10000);
    free(text);
    unlink(path);
}
END_TEST

START_TEST(test_path_join)
{
    char *p = units_path_join("/etc/ferry", "users");

    ck_assert_str_eq(p, "/etc/ferry/users");
    free(p);
    p = units_path_join("/etc/ferry", "/var/lib/cred");
    ck_assert_str_eq(p, "/var/lib/cred");
    free(p);
    p = units_path_join(NULL, "cred");
    ck_assert_str_eq(p, "cred");
    free(p);
}
END_TEST

START_TEST(test_read_missing_file_sets_errno)
{
    size_t len = 0;

    errno = 0;
    ck_assert_ptr_null(units_read_file("/nonexistent/ferry/units", 100, &len));
    ck_assert_int_eq(errno, ENOENT);
}
END_TEST

static Suite *units_suite(void)
{
    Suite *s = suite_create("units");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_list_items_in_order_then_null);
    tcase_add_test(tc, test_list_empty_text_and_trailing_comma_have_empty_items);
    tcase_add_test(tc, test_list_item_too_long_is_cut_and_measured);
    tcase_add_test(tc, test_read_file_whole_with_nul_bytes_and_terminator);
    tcase_add_test(tc, test_read_file_larger_than_max_is_efbig);
    tcase_add_test(tc, test_read_missing_file_sets_errno);
    tcase_add_test(tc, test_path_join);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(units_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
