/* daemon/postproc.c: 3-D components (6-connected), small ones removed, largest only. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "postproc.h"

#define S 4
#define R 8
#define C 8
#define AT(m, s, r, c) (m)[((s) * R + (r)) * C + (c)]

static void components_and_small_ones(void **state)
{
    (void)state;
    uint8_t m[S * R * C] = {0};
    /* a 2x2x3 block across slices 0..2 (12 voxels) */
    for (int s = 0; s < 3; s++)
        for (int r = 1; r < 3; r++)
            for (int c = 1; c < 3; c++) AT(m, s, r, c) = 255;
    /* a lone voxel on slice 3 */
    AT(m, 3, 6, 6) = 1;
    /* two voxels touching only diagonally: two components of 1 voxel each under 6-connectivity */
    AT(m, 0, 6, 0) = 1;
    AT(m, 0, 7, 1) = 1;
    samdad_mask_stats st;
    samda_error err;
    assert_int_equal(samdad_mask_clean(m, S, R, C, 2, false, &st, &err), SAMDA_OK);
    assert_int_equal(st.components, 4);
    assert_int_equal(st.removed, 3);
    assert_int_equal(st.voxels_before, 15);
    assert_int_equal(st.voxels_after, 12);
    assert_int_equal(st.largest, 12);
    assert_int_equal(AT(m, 1, 1, 1), 1); /* kept, and normalised to 1 */
    assert_int_equal(AT(m, 3, 6, 6), 0);
    assert_int_equal(AT(m, 0, 6, 0), 0);
}

static void largest_only(void **state)
{
    (void)state;
    uint8_t m[S * R * C] = {0};
    for (int c = 0; c < 5; c++) AT(m, 0, 0, c) = 1; /* 5 voxels */
    for (int s = 0; s < 3; s++) AT(m, s, 5, 5) = 1; /* 3 voxels, through slices */
    samdad_mask_stats st;
    assert_int_equal(samdad_mask_clean(m, S, R, C, 0, true, &st, NULL), SAMDA_OK);
    assert_int_equal(st.components, 2);
    assert_int_equal(st.voxels_after, 5);
    assert_int_equal(AT(m, 0, 0, 4), 1);
    assert_int_equal(AT(m, 1, 5, 5), 0);
}

static void everything_too_small_and_empty(void **state)
{
    (void)state;
    uint8_t m[S * R * C] = {0};
    samdad_mask_stats st;
    assert_int_equal(samdad_mask_clean(m, S, R, C, 10, true, &st, NULL), SAMDA_OK);
    assert_int_equal(st.components, 0);
    AT(m, 2, 2, 2) = 1;
    assert_int_equal(samdad_mask_clean(m, S, R, C, 10, false, &st, NULL), SAMDA_OK);
    assert_int_equal(st.voxels_after, 0);
    assert_int_equal(st.largest, 0);
    samda_error err;
    assert_int_equal(samdad_mask_clean(NULL, S, R, C, 1, false, &st, &err), SAMDA_EINVAL);
    assert_int_equal(samdad_mask_clean(m, 0, R, C, 1, false, &st, &err), SAMDA_EINVAL);
    assert_int_equal(samdad_mask_clean(m, SIZE_MAX / 2, 1024, 1024, 1, false, &st, &err), SAMDA_EINVAL);
}

static void large_volume_no_recursion(void **state)
{
    (void)state;
    /* one snake through a 64 x 128 x 128 volume: a single component of 1M voxels */
    const size_t s = 64, r = 128, c = 128;
    uint8_t *m = malloc(s * r * c);
    assert_non_null(m);
    memset(m, 1, s * r * c);
    samdad_mask_stats st;
    assert_int_equal(samdad_mask_clean(m, s, r, c, 100, true, &st, NULL), SAMDA_OK);
    assert_int_equal(st.components, 1);
    assert_int_equal(st.voxels_after, s * r * c);
    free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(components_and_small_ones),
        cmocka_unit_test(largest_only),
        cmocka_unit_test(everything_too_small_and_empty),
        cmocka_unit_test(large_volume_no_recursion),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
