/* api/nrrd.c: a volume written with its geometry reads back with the same sizes, directions, origin
 * and voxels (raw and gzip), RAS headers are turned to LPS, and malformed files are refused with a
 * message naming the field. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include <cmocka.h>

#include "nrrd.h"

static void round_trip(void **state)
{
    (void)state;
    uint8_t vox[4 * 3 * 2];
    for (size_t i = 0; i < sizeof vox; i++) vox[i] = (uint8_t)(i % 5);
    samda_nrrd_volume v = {.type = SAMDA_NRRD_U8, .sizes = {4, 3, 2},
                           .directions = {{0.7, 0, 0}, {0, 0.7, 0.1}, {0, -0.25, 2.5}}, .origin = {-120.5, 33.25, 7}, .data = vox};
    void *buf = NULL;
    size_t len = 0;
    samda_error e = {0};
    assert_int_equal(samda_nrrd_write(&v, &buf, &len, &e), SAMDA_OK);
    const char *h = buf;
    assert_non_null(strstr(h, "space: left-posterior-superior\n"));
    assert_non_null(strstr(h, "sizes: 4 3 2\n"));
    assert_non_null(strstr(h, "space origin: (-120.5,33.25,7)\n"));
    assert_non_null(strstr(h, "space directions: (0.69999999999999996,0,0) (0,0.69999999999999996,0.10000000000000001) (0,-0.25,2.5)\n"));
    assert_int_equal(len, strstr(h, "\n\n") - h + 2 + sizeof vox);
    samda_nrrd_volume r;
    assert_int_equal(samda_nrrd_read_labels(buf, len, 1000, &r, &e), SAMDA_OK);
    assert_int_equal(r.sizes[0], 4);
    assert_int_equal(r.sizes[2], 2);
    assert_memory_equal(r.data, vox, sizeof vox);
    assert_true(r.origin[0] == -120.5 && r.directions[2][2] == 2.5 && r.directions[1][2] == 0.1);
    samda_nrrd_volume_clear(&r);
    /* the voxel limit */
    assert_int_equal(samda_nrrd_read_labels(buf, len, 23, &r, &e), SAMDA_ETOOBIG);
    /* truncated data */
    assert_int_equal(samda_nrrd_read_labels(buf, len - 1, 1000, &r, &e), SAMDA_EINVAL);
    assert_non_null(strstr(e.message, "shorter"));
    free(buf);
}

/* What 3D Slicer writes by default: gzip, short, RAS or LPS. */
static void gzip_short_ras(void **state)
{
    (void)state;
    int16_t vals[2 * 2 * 2] = {0, 1, 2, 0, 0, 0, 3, 1};
    unsigned char z[256];
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    assert_int_equal(deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
    zs.next_in = (unsigned char *)vals;
    zs.avail_in = sizeof vals;
    zs.next_out = z;
    zs.avail_out = sizeof z;
    assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
    size_t zn = sizeof z - zs.avail_out;
    deflateEnd(&zs);
    const char *head = "NRRD0004\n# Complete NRRD file format specification at:\ntype: short\ndimension: 3\n"
                       "space: right-anterior-superior\nsizes: 2 2 2\nspace directions: (-1,0,0) (0,-1,0) (0,0,3)\n"
                       "kinds: domain domain domain\nendian: little\nencoding: gzip\nspace origin: (10,20,30)\n\n";
    size_t hn = strlen(head);
    unsigned char *f = malloc(hn + zn);
    memcpy(f, head, hn);
    memcpy(f + hn, z, zn);
    samda_nrrd_volume r;
    samda_error e = {0};
    assert_int_equal(samda_nrrd_read_labels(f, hn + zn, 100, &r, &e), SAMDA_OK);
    const uint8_t want[8] = {0, 1, 2, 0, 0, 0, 3, 1};
    assert_memory_equal(r.data, want, 8);
    assert_true(r.origin[0] == -10 && r.origin[1] == -20 && r.origin[2] == 30);
    assert_true(r.directions[0][0] == 1 && r.directions[1][1] == 1 && r.directions[2][2] == 3);
    samda_nrrd_volume_clear(&r);
    free(f);
}

/* Image volumes: int16 written by samda reads back exactly as float; int32 big-endian, uint16 and
 * float in RAS; an image without space directions and a non-finite value are refused. */
static void image_volumes(void **state)
{
    (void)state;
    int16_t vox[3 * 2 * 2] = {-1024, -1000, 0, 40, 100, 3071, -5, 7, 8, 9, 10, 11};
    samda_nrrd_volume v = {.type = SAMDA_NRRD_I16, .sizes = {3, 2, 2},
                           .directions = {{0.5, 0, 0}, {0, 0.5, 0}, {0, 0, -2}}, .origin = {-10, 20, 30}, .data = vox};
    void *buf = NULL;
    size_t len = 0;
    samda_error e = {0};
    assert_int_equal(samda_nrrd_write(&v, &buf, &len, &e), SAMDA_OK);
    samda_nrrd_volume r;
    assert_int_equal(samda_nrrd_read_image(buf, len, 1000, &r, &e), SAMDA_OK);
    assert_int_equal(r.type, SAMDA_NRRD_F32);
    for (size_t i = 0; i < 12; i++) assert_true(((float *)r.data)[i] == (float)vox[i]);
    assert_true(r.directions[2][2] == -2 && r.origin[0] == -10);
    samda_nrrd_volume_clear(&r);
    assert_int_equal(samda_nrrd_read_image(buf, len, 11, &r, &e), SAMDA_ETOOBIG);
    free(buf);

    const char big32[] = "NRRD0004\ntype: int\ndimension: 3\nspace: RAS\nsizes: 1 1 2\n"
                         "space directions: (1,0,0) (0,1,0) (0,0,1)\nendian: big\nencoding: raw\nspace origin: (1,2,3)\n\n"
                         "\xff\xff\xfc\x18\x00\x01\x00\x00";
    assert_int_equal(samda_nrrd_read_image(big32, sizeof big32 - 1, 10, &r, &e), SAMDA_OK);
    assert_true(((float *)r.data)[0] == -1000 && ((float *)r.data)[1] == 65536);
    assert_true(r.origin[0] == -1 && r.origin[1] == -2 && r.origin[2] == 3 && r.directions[0][0] == -1);
    samda_nrrd_volume_clear(&r);
    const char u16[] = "NRRD0004\ntype: ushort\ndimension: 3\nsizes: 1 1 1\nspace directions: (1,0,0) (0,1,0) (0,0,1)\n"
                       "encoding: raw\n\n\xff\xff";
    assert_int_equal(samda_nrrd_read_image(u16, sizeof u16 - 1, 10, &r, &e), SAMDA_OK);
    assert_true(((float *)r.data)[0] == 65535);
    samda_nrrd_volume_clear(&r);
    const char nogeo[] = "NRRD0004\ntype: short\ndimension: 3\nsizes: 1 1 1\nencoding: raw\n\n\1\0";
    assert_int_equal(samda_nrrd_read_image(nogeo, sizeof nogeo - 1, 10, &r, &e), SAMDA_EINVAL);
    assert_non_null(strstr(e.message, "space directions"));
    const char nan[] = "NRRD0004\ntype: float\ndimension: 3\nsizes: 1 1 1\nspace directions: (1,0,0) (0,1,0) (0,0,1)\n"
                       "encoding: raw\n\n\x00\x00\xc0\x7f";
    assert_int_equal(samda_nrrd_read_image(nan, sizeof nan - 1, 10, &r, &e), SAMDA_EINVAL);
    assert_non_null(strstr(e.message, "finite"));
}

static void refused(void **state)
{
    (void)state;
    samda_nrrd_volume r;
    samda_error e = {0};
    const char *bad[][2] = {
        {"P6\n", "magic"},
        {"NRRD0004\ntype: short\ndimension: 2\nsizes: 2 2\nencoding: raw\n\n\1\0\1\0\1\0\1\0", "3-D"},
        {"NRRD0004\ntype: double\ndimension: 3\nsizes: 1 1 1\nencoding: raw\n\n12345678", "type"},
        {"NRRD0004\ntype: uchar\ndimension: 3\nsizes: 1 1 1\nencoding: bzip2\n\nx", "encoding"},
        {"NRRD0004\ntype: uchar\ndimension: 3\nsizes: 1 1 1\nspace: scanner-xyz\nencoding: raw\n\nx", "space"},
        {"NRRD0004\ntype: uchar\ndimension: 3\nsizes: 1 1 1\ndata file: /etc/passwd\nencoding: raw\n\n", "detached"},
        {"NRRD0004\ntype: short\ndimension: 3\nsizes: 1 1 1\nencoding: raw\n\n\xff\xff", "0 to 255"},
        {"NRRD0004\ntype: uchar\ndimension: 3\nsizes: 1 1 1\nencoding: raw\n", "empty line"},
        /* sizes whose product wraps 64 bits must not pass as a small volume */
        {"NRRD0004\ntype: uchar\ndimension: 3\nsizes: 4294967296 4294967296 1\nencoding: raw\n\nx", "more than allowed"},
        {"NRRD0004\ntype: uchar\ndimension: 3\nsizes: 18446744073709551615 1 1\nencoding: raw\n\nx", "sizes"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t n = strlen(bad[i][0]);
        samda_status st = samda_nrrd_read_labels(bad[i][0], n, 100, &r, &e);
        if (st == SAMDA_OK || !strstr(e.message, bad[i][1])) fail_msg("case %zu: status %d, message \"%s\"", i, st, e.message);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(round_trip), cmocka_unit_test(gzip_short_ras), cmocka_unit_test(image_volumes),
                                       cmocka_unit_test(refused)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
