/* Tests of common/atomic_file.c: commit publishes the whole file, abort and failures leave nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "atomic_file.h"
#include "phantom/test_util.h" /* scratch directories, file reading */

static void test_commit_and_abort(void **state)
{
    (void)state;
    char *dir = make_tmpdir("afile");
    assert_non_null(dir);
    char path[512];
    snprintf(path, sizeof path, "%s/out.txt", dir);
    samda_error err;
    samda_afile f;

    assert_int_equal(samda_afile_open(&f, path, 0, &err), SAMDA_OK);
    assert_int_equal(samda_afile_write(&f, "hello ", 6, &err), SAMDA_OK);
    assert_int_equal(count_entries(dir, "out.txt"), 1); /* only the temporary file so far */
    assert_int_equal(count_entries(dir, ".tmp."), 1);
    assert_int_equal(samda_afile_write(&f, "world", 5, &err), SAMDA_OK);
    assert_int_equal(samda_afile_commit(&f, &err), SAMDA_OK);
    assert_int_equal(f.fd, -1);
    assert_int_equal(count_entries(dir, ".tmp."), 0);
    char *s = read_all(path, NULL);
    assert_string_equal(s, "hello world");
    free(s);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(st.st_mode & S_IRGRP); /* not mkstemp's 0600 */

    /* abort keeps the old content */
    assert_int_equal(samda_afile_open(&f, path, 0, &err), SAMDA_OK);
    assert_int_equal(samda_afile_write(&f, "partial", 7, &err), SAMDA_OK);
    samda_afile_abort(&f);
    samda_afile_abort(&f); /* twice is harmless */
    s = read_all(path, NULL);
    assert_string_equal(s, "hello world");
    free(s);
    assert_int_equal(count_entries(dir, ".tmp."), 0);

    /* using a closed file is refused */
    assert_int_equal(samda_afile_write(&f, "x", 1, &err), SAMDA_EINVAL);
    assert_int_equal(samda_afile_commit(&f, &err), SAMDA_EINVAL);

    /* bad paths */
    assert_int_equal(samda_afile_open(&f, "", 0, &err), SAMDA_EINVAL);
    assert_int_equal(samda_afile_open(&f, NULL, 0, &err), SAMDA_EINVAL);
    assert_int_equal(samda_afile_open(NULL, path, 0, &err), SAMDA_EINVAL);
    char missing[600];
    snprintf(missing, sizeof missing, "%s/missing/out.txt", dir);
    assert_int_equal(samda_afile_open(&f, missing, 0, &err), SAMDA_ENOENT);
    assert_non_null(strstr(err.message, "missing/out.txt"));
    samda_afile_abort(&f);

    /* a file name without a directory part syncs "." */
    char cwd[1024];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(dir), 0);
    assert_int_equal(samda_afile_open(&f, "rel.txt", 0, &err), SAMDA_OK);
    assert_int_equal(samda_afile_commit(&f, &err), SAMDA_OK);
    assert_int_equal(chdir(cwd), 0);
    assert_int_equal(count_entries(dir, "rel.txt"), 1);

    remove_tree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_commit_and_abort),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
