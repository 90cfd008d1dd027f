/* dicom/intake.cpp (samda_dicom_check_instance) and the volume loader's refusals, on the hostile
 * instances of tests/integration/hostile_dicom.py (made at test time with pydicom): what must not be
 * acknowledged is refused naming the attribute; what a real archive may hold is accepted; nothing is
 * sized by a declared NumberOfFrames. The same cases go through samdad in it_hostile_dicom. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dicom.h"
#include "dicom_test_util.h"

static char scratch[4096];

static int have_pydicom(void)
{
    static int known = -1;
    if (known < 0) known = system("/usr/bin/python3 -c 'import pydicom, numpy' >/dev/null 2>&1") == 0;
    return known;
}

static int setup(void **state)
{
    (void)state;
    if (samda_dicom_init(NULL, NULL) != SAMDA_OK) return -1;
    if (!scratch_make(scratch, sizeof scratch, "intake")) return -1;
    if (!have_pydicom()) return 0;
    const char *src = getenv("SAMDA_SOURCE_DIR");
    char cmd[9000], out[4096];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/tests/integration/hostile_dicom.py' '%s'", src ? src : ".",
             scratch);
    if (run_capture(cmd, out, sizeof out) != 0) {
        fprintf(stderr, "hostile_dicom.py: %s\n", out);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    scratch_remove(scratch);
    samda_dicom_shutdown();
    return 0;
}

static const char *file_of(const char *c, int i)
{
    static char p[4][4300];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s/IMG%04d.dcm", scratch, c, i);
    return p[k];
}

/* Header read then intake check of one file: the status and message of the first that fails. */
static samda_status intake(const char *path, samda_error *e)
{
    samda_dicom_header h;
    samda_status st = samda_dicom_read_header(path, &h, e);
    if (st != SAMDA_OK) return st;
    return samda_dicom_check_instance(path, &h, e);
}

static void refused(const char *c, samda_status want, const char *must_contain)
{
    samda_error e = {0};
    samda_status st = intake(file_of(c, 1), &e);
    if (st != want) fail_msg("%s: want %s, got %s: %s", c, samda_status_name(want), samda_status_name(st), e.message);
    if (!strstr(e.message, must_contain)) fail_msg("%s: message \"%s\" lacks \"%s\"", c, e.message, must_contain);
    /* The cause comes first: the message starts with the attribute, never with a path. */
    if (e.message[0] == '/') fail_msg("%s: message starts with a path: %s", c, e.message);
}

static void test_refused_at_intake(void **state)
{
    (void)state;
    if (!have_pydicom()) skip();
    refused("frames_bomb", SAMDA_EBADDICOM, "(7FE0,0010) PixelData holds 8192 bytes; NumberOfFrames 2147483647");
    refused("enhanced_no_groups", SAMDA_EBADDICOM, "NumberOfFrames 100000");
    refused("truncated", SAMDA_EBADDICOM, "does not parse to its end");
    refused("zero_spacing", SAMDA_EBADDICOM, "(0028,0030) PixelSpacing \"0\\0\" is impossible");
    refused("negative_spacing", SAMDA_EBADDICOM, "(0028,0030) PixelSpacing \"-1\\-1\" is impossible");
    refused("huge_position", SAMDA_EBADDICOM, "(0020,0032) ImagePositionPatient");
    refused("slope_zero", SAMDA_EBADDICOM, "(0028,1053) RescaleSlope \"0\"");
    refused("nul_uid", SAMDA_EBADUID, "(0008,0018) SOPInstanceUID contains a NUL");
}

static void test_accepted_at_intake(void **state)
{
    (void)state;
    if (!have_pydicom()) skip();
    /* Valid series, a series without PixelSpacing (stored; the daemon will not segment it), and
     * the instances of the series-consistency cases (each is valid alone). */
    static const char *const ok[] = {"ok_bits32", "ok_leading_zero", "ok_long_uids", "no_spacing", "two_patients",
                                     "ct_mr_mix"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        for (int k = 1; k <= 4; k++) {
            samda_error e = {0};
            samda_status st = intake(file_of(ok[i], k), &e);
            if (st != SAMDA_OK) fail_msg("%s/%d refused: %s", ok[i], k, e.message);
        }
}

static void load_fails(const char *c, int n, samda_status want, const char *must_contain)
{
    const char *paths[4];
    for (int i = 0; i < n; i++) paths[i] = file_of(c, i + 1);
    samda_volume *v = NULL;
    samda_error e = {0};
    samda_status st = samda_dicom_volume_load(paths, (size_t)n, NULL, &v, &e);
    if (st != want) fail_msg("%s: want %s, got %s: %s", c, samda_status_name(want), samda_status_name(st), e.message);
    assert_null(v);
    if (!strstr(e.message, must_contain)) fail_msg("%s: message \"%s\" lacks \"%s\"", c, e.message, must_contain);
    /* Instances are named by number and UID, never by the path of samda's copy. */
    if (strstr(e.message, scratch)) fail_msg("%s: message names a path: %s", c, e.message);
}

/* The loader meets instances stored before the intake check existed: it refuses them before it
 * sizes anything by NumberOfFrames. Under a 1 GiB address-space limit (the bomb used to allocate
 * per declared frame until the kernel killed samdad), in a child so the limit stays there. */
static void test_loader_refuses_under_memory_limit(void **state)
{
    (void)state;
    if (!have_pydicom()) skip();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
#if !defined(__SANITIZE_ADDRESS__)
        /* (AddressSanitizer reserves terabytes of address space: no limit under it.) */
        struct rlimit rl = {(rlim_t)3 << 30, (rlim_t)3 << 30};
        setrlimit(RLIMIT_AS, &rl);
#endif
        const char *paths[2] = {file_of("frames_bomb", 1), NULL};
        samda_volume *v = NULL;
        samda_error e = {0};
        samda_status st = samda_dicom_volume_load(paths, 1, NULL, &v, &e);
        int bad = st != SAMDA_EBADDICOM || !strstr(e.message, "NumberOfFrames 2147483647");
        if (bad) fprintf(stderr, "frames_bomb: %s: %s\n", samda_status_name(st), e.message);
        paths[0] = file_of("enhanced_no_groups", 1);
        st = samda_dicom_volume_load(paths, 1, NULL, &v, &e);
        if (st != SAMDA_EBADDICOM || !strstr(e.message, "NumberOfFrames 100000")) {
            fprintf(stderr, "enhanced_no_groups: %s: %s\n", samda_status_name(st), e.message);
            bad = 1;
        }
        _exit(bad);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) fail_msg("the loader did not refuse the frame bombs in bounds");
}

static void test_loader_refusals(void **state)
{
    (void)state;
    if (!have_pydicom()) skip();
    load_fails("two_patients", 4, SAMDA_EBADDICOM, "(0010,0020) PatientID differs between instance 4 (SOP");
    load_fails("ct_mr_mix", 4, SAMDA_EBADDICOM, "(0008,0016) SOPClassUID or (0008,0060) Modality differs");
    load_fails("zero_spacing", 1, SAMDA_EBADDICOM, "(0028,0030) PixelSpacing 0\\0 is impossible");
    load_fails("slope_zero", 1, SAMDA_EBADDICOM, "(0028,1053) RescaleSlope 0");
    load_fails("huge_position", 1, SAMDA_EBADDICOM, "(0020,0032) ImagePositionPatient 1e+300");
    load_fails("truncated", 1, SAMDA_EBADDICOM, "does not parse to its end");
}

static void test_loader_accepts(void **state)
{
    (void)state;
    if (!have_pydicom()) skip();
    /* 32 bits allocated: decoded (was refused for every file), values as stored. */
    const char *paths[4];
    for (int i = 0; i < 4; i++) paths[i] = file_of("ok_bits32", i + 1);
    samda_volume *v = NULL;
    samda_error e = {0};
    if (samda_dicom_volume_load(paths, 4, NULL, &v, &e) != SAMDA_OK) fail_msg("ok_bits32: %s", e.message);
    const samda_volume_info *in = samda_volume_get_info(v);
    assert_int_equal(in->n_slices, 4);
    const float *vox = samda_volume_voxels(v);
    size_t centre = (size_t)(in->rows / 2) * in->cols + in->cols / 2;
    assert_true(vox[centre] > 59.5f && vox[centre] < 60.5f); /* the disc: 60 HU */
    assert_true(vox[0] > -1000.5f && vox[0] < -999.5f);      /* air */
    samda_volume_free(v);
    /* Without PixelSpacing: loaded, and said so (the daemon refuses to segment it). */
    for (int i = 0; i < 4; i++) paths[i] = file_of("no_spacing", i + 1);
    if (samda_dicom_volume_load(paths, 4, NULL, &v, &e) != SAMDA_OK) fail_msg("no_spacing: %s", e.message);
    assert_false(samda_volume_get_info(v)->has_pixel_spacing);
    samda_volume_free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refused_at_intake),
        cmocka_unit_test(test_accepted_at_intake),
        cmocka_unit_test(test_loader_refuses_under_memory_limit),
        cmocka_unit_test(test_loader_refusals),
        cmocka_unit_test(test_loader_accepts),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
