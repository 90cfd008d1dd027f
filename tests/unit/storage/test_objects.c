/* Tests of storage/objects.c: UID validation, object paths, temporary files, commit, reads, and the
 * removal at open of committed objects that no index row claims. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>

#include "store_fixture.h"

static void test_uid_validation(void **state)
{
    (void)state;
    const char *good[] = {"1", "1.2", "1.2.840.10008.5.1.4.1.1.2", "0.0",
                          "1234567890123456789012345678901234567890123456789012345678901234"}; /* 64 */
    const char *bad[] = {NULL, "", ".", "1.", ".1", "1..2", "1.a", "1/2", "../1", "1 2", "1.2\n",
                         "12345678901234567890123456789012345678901234567890123456789012345"}; /* 65 */
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        if (!samda_uid_is_valid(good[i])) fail_msg("rejected valid UID %s", good[i]);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (samda_uid_is_valid(bad[i])) fail_msg("accepted invalid UID #%zu", i);
}

static void test_relpaths(void **state)
{
    (void)state;
    samda_error e;
    char rp[SAMDA_RELPATH_SIZE];
    CHECK_OK(samda_store_object_relpath(SAMDA_OBJECT_INSTANCE, "1.2", "1.2.3", "1.2.3.4", rp, &e));
    assert_string_equal(rp, "1.2/1.2.3/1.2.3.4.dcm");
    assert_true(samda_store_relpath_is_valid(rp));
    CHECK_OK(samda_store_object_relpath(SAMDA_OBJECT_SEG, "1.2", "1.2.3", "1.2.3.4", rp, &e));
    assert_string_equal(rp, "seg/1.2/1.2.3/1.2.3.4.dcm");
    assert_true(samda_store_relpath_is_valid(rp));
    CHECK_OK(samda_store_object_relpath(SAMDA_OBJECT_ADAPTER, "7", "3", NULL, rp, &e));
    assert_string_equal(rp, "adapters/7/3.safetensors");
    assert_true(samda_store_relpath_is_valid(rp));
    CHECK_ST(SAMDA_EBADUID, samda_store_object_relpath(SAMDA_OBJECT_INSTANCE, "1.2", "../..", "1", rp, &e));
    assert_string_equal(rp, "");
    CHECK_ST(SAMDA_EBADUID, samda_store_object_relpath(SAMDA_OBJECT_ADAPTER, "1.2", "3", NULL, rp, &e));
    CHECK_ST(SAMDA_EINVAL, samda_store_object_relpath((samda_object_kind)42, "1", "2", "3", rp, &e));
    assert_true(samda_store_relpath_is_valid("1.2/1.2.3/1.2.3.4.r2.dcm"));
    const char *bad[] = {"", "/etc/passwd", "../1/2/3.dcm", "1/2/../3.dcm", "1/2/3", "1/2/3.txt", "1/2.dcm",
                         "1/2/3/4.dcm", "seg/1/2.dcm", "adapters/1.2/3.safetensors", "adapters/1/x.safetensors",
                         "1//2/3.dcm", "1/2/3.r.dcm", "1/2/.dcm", "index.sqlite3"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (samda_store_relpath_is_valid(bad[i])) fail_msg("accepted relpath %s", bad[i]);
}

static void test_put_read_commit(void **state)
{
    (void)state;
    fx *f = fx_open();
    assert_non_null(f);
    samda_error e;
    samda_object_info info;
    const char data[] = "hello object";
    CHECK_OK(samda_store_object_put(f->s, SAMDA_OBJECT_SEG, "1.2", "1.2.9", "1.2.9.1", data, sizeof data - 1, &info, &e));
    assert_string_equal(info.relpath, "seg/1.2/1.2.9/1.2.9.1.dcm");
    assert_int_equal(info.size, sizeof data - 1);
    /* sha256("hello object") */
    assert_int_equal(strlen(info.sha256), 64);
    void *buf;
    size_t len;
    CHECK_OK(samda_store_object_read(f->s, info.relpath, 1024, &buf, &len, &e));
    assert_int_equal(len, sizeof data - 1);
    assert_memory_equal(buf, data, len);
    samda_store_free(buf);
    CHECK_ST(SAMDA_ETOOBIG, samda_store_object_read(f->s, info.relpath, 4, &buf, &len, &e));
    CHECK_ST(SAMDA_ENOENT, samda_store_object_read(f->s, "1/2/3.dcm", 4, &buf, &len, &e));
    CHECK_ST(SAMDA_EINVAL, samda_store_object_read(f->s, "../index.sqlite3", 1 << 20, &buf, &len, &e));
    int fd;
    CHECK_OK(samda_store_object_open_read(f->s, info.relpath, &fd, &e));
    char rb[64];
    assert_int_equal(read(fd, rb, sizeof rb), (ssize_t)(sizeof data - 1));
    close(fd);
    char path[4096];
    CHECK_OK(samda_store_object_path(f->s, info.relpath, path, sizeof path, &e));
    assert_int_equal(access(path, R_OK), 0);
    CHECK_ST(SAMDA_EINVAL, samda_store_object_path(f->s, info.relpath, path, 8, &e));

    /* same path again: refused, the first file untouched, no temporary file left */
    CHECK_ST(SAMDA_EEXIST, samda_store_object_put(f->s, SAMDA_OBJECT_SEG, "1.2", "1.2.9", "1.2.9.1", "x", 1, &info, &e));
    CHECK_OK(samda_store_object_read(f->s, "seg/1.2/1.2.9/1.2.9.1.dcm", 1024, &buf, &len, &e));
    assert_int_equal(len, sizeof data - 1);
    samda_store_free(buf);
    char tmpdir[512];
    snprintf(tmpdir, sizeof tmpdir, "%s/tmp", f->dir);
    assert_int_equal(fx_count_files(tmpdir), 0);

    /* streaming writer + commit */
    samda_tmp_file t;
    CHECK_OK(samda_store_object_tmp_open(f->s, &t, &e));
    for (int i = 0; i < 100; i++) CHECK_OK(samda_store_object_tmp_write(f->s, &t, "0123456789", 10, &e));
    CHECK_OK(samda_store_object_commit(f->s, &t, SAMDA_OBJECT_INSTANCE, "1.2", "1.2.3", "1.2.3.4", &info, &e));
    assert_int_equal(t.fd, -1);
    assert_int_equal(info.size, 1000);
    /* bad UID: refused, the temporary file is consumed */
    CHECK_OK(samda_store_object_tmp_open(f->s, &t, &e));
    CHECK_ST(SAMDA_EBADUID, samda_store_object_commit(f->s, &t, SAMDA_OBJECT_INSTANCE, "1.2", "1..3", "1", &info, &e));
    assert_int_equal(fx_count_files(tmpdir), 0);
    CHECK_ST(SAMDA_EINVAL, samda_store_object_tmp_write(f->s, &t, "x", 1, &e));
    samda_store_object_tmp_discard(f->s, &t); /* no-op */
    samda_store_object_tmp_discard(f->s, NULL);

    /* neither object was indexed: the next open removes both */
    assert_non_null(fx_reopen(f));
    assert_int_equal(samda_store_orphans_removed(f->s), 2);
    char objects[512];
    snprintf(objects, sizeof objects, "%s/objects", f->dir);
    assert_int_equal(fx_count_files(objects), 0);
    samda_store_check_report r;
    CHECK_OK(samda_store_check(f->s, &r, &e));
    fx_close(f);
}

/* samda_store_object_verify: the stored file as recorded passes; a flipped byte, a truncation or a
 * missing file are refused naming the object. */
static void test_verify(void **state)
{
    (void)state;
    fx *f = fx_open();
    assert_non_null(f);
    samda_error e;
    samda_object_info info;
    const char data[] = "adapter bytes, as registered";
    CHECK_OK(samda_store_object_put(f->s, SAMDA_OBJECT_SEG, "1.2", "1.2.9", "1.2.10", data, sizeof data - 1, &info, &e));
    CHECK_OK(samda_store_object_verify(f->s, &info, &e));
    char path[4096];
    CHECK_OK(samda_store_object_path(f->s, info.relpath, path, sizeof path, &e));
    chmod(path, 0600);
    FILE *fp = fopen(path, "r+b");
    assert_non_null(fp);
    fseek(fp, 5, SEEK_SET);
    fputc('X', fp);
    fclose(fp);
    CHECK_ST(SAMDA_EIO, samda_store_object_verify(f->s, &info, &e));
    assert_non_null(strstr(e.message, info.relpath));
    assert_non_null(strstr(e.message, "changed on disk"));
    assert_int_equal(truncate(path, 4), 0);
    CHECK_ST(SAMDA_EIO, samda_store_object_verify(f->s, &info, &e));
    assert_non_null(strstr(e.message, "4 bytes"));
    unlink(path);
    CHECK_ST(SAMDA_ENOENT, samda_store_object_verify(f->s, &info, &e));
    fx_close(f);
}

static void test_indexed_object_survives_reopen(void **state)
{
    (void)state;
    fx *f = fx_open();
    assert_non_null(f);
    samda_error e;
    CHECK_OK(fx_ingest_simple(f->s, "1.2", "1.2.3", "1.2.3.4", &e));
    assert_non_null(fx_reopen(f));
    assert_int_equal(samda_store_orphans_removed(f->s), 0);
    samda_object_info o;
    CHECK_OK(samda_store_instance_lookup(f->s, "1.2.3.4", &o, NULL, &e));
    void *buf;
    size_t len;
    CHECK_OK(samda_store_object_read(f->s, o.relpath, 1 << 20, &buf, &len, &e));
    assert_int_equal(len, o.size);
    samda_store_free(buf);
    fx_close(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uid_validation),
        cmocka_unit_test(test_relpaths),
        cmocka_unit_test(test_put_read_commit),
        cmocka_unit_test(test_indexed_object_survives_reopen),
        cmocka_unit_test(test_verify),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
