/* dicom/contour.c: contours traced from binary slices give back the slice exactly when filled with
 * the even-odd rule at pixel centres (the way tests/unit/dicom/rtstruct_tool.py and viewers fill
 * RT Structure Set contours), parts and holes come out as separate polygons, and corners only. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "dicom.h"

/* Even-odd rule: is the point (px, py) inside the polygons? */
static int inside_even_odd(const samda_contour_set *cs, double px, double py)
{
    int in = 0;
    for (size_t k = 0; k < cs->n_contours; k++) {
        const double *p = cs->xy + 2 * cs->first[k];
        size_t n = cs->count[k];
        for (size_t i = 0, j = n - 1; i < n; j = i++) {
            double xi = p[2 * i], yi = p[2 * i + 1], xj = p[2 * j], yj = p[2 * j + 1];
            if ((yi > py) != (yj > py) && px < (xj - xi) * (py - yi) / (yj - yi) + xi) in = !in;
        }
    }
    return in;
}

static void assert_round_trip(const uint8_t *m, unsigned rows, unsigned cols, samda_contour_set *cs)
{
    samda_error e = {0};
    assert_int_equal(samda_contour_trace(m, rows, cols, cs, &e), SAMDA_OK);
    for (unsigned r = 0; r < rows; r++)
        for (unsigned c = 0; c < cols; c++)
            if (inside_even_odd(cs, c, r) != (m[r * cols + c] != 0))
                fail_msg("pixel (%u, %u): mask %d, contours %d", r, c, m[r * cols + c] != 0, !m[r * cols + c]);
    for (size_t k = 0; k < cs->n_contours; k++) assert_true(cs->count[k] >= 4);
}

static void square_is_four_corners(void **state)
{
    (void)state;
    uint8_t m[5 * 6] = {0};
    for (int r = 1; r <= 3; r++)
        for (int c = 2; c <= 4; c++) m[r * 6 + c] = 1;
    samda_contour_set cs;
    assert_round_trip(m, 5, 6, &cs);
    assert_int_equal(cs.n_contours, 1);
    assert_int_equal(cs.count[0], 4);
    /* the corners lie half a pixel outside the outermost pixel centres */
    double minx = 1e9, maxx = -1e9;
    for (size_t i = 0; i < 4; i++) {
        minx = cs.xy[2 * i] < minx ? cs.xy[2 * i] : minx;
        maxx = cs.xy[2 * i] > maxx ? cs.xy[2 * i] : maxx;
    }
    assert_true(minx == 1.5 && maxx == 4.5);
    samda_contour_set_clear(&cs);
}

static void ring_gives_outer_and_hole(void **state)
{
    (void)state;
    enum { R = 9, C = 9 };
    uint8_t m[R * C] = {0};
    for (int r = 1; r < 8; r++)
        for (int c = 1; c < 8; c++) m[r * C + c] = !(r >= 3 && r <= 5 && c >= 3 && c <= 5);
    samda_contour_set cs;
    assert_round_trip(m, R, C, &cs);
    assert_int_equal(cs.n_contours, 2);
    samda_contour_set_clear(&cs);
}

static void diagonal_pixels_stay_two_polygons(void **state)
{
    (void)state;
    uint8_t m[4 * 4] = {0};
    m[1 * 4 + 1] = m[2 * 4 + 2] = 1;
    samda_contour_set cs;
    assert_round_trip(m, 4, 4, &cs);
    assert_int_equal(cs.n_contours, 2);
    assert_int_equal(cs.count[0], 4);
    assert_int_equal(cs.count[1], 4);
    samda_contour_set_clear(&cs);
}

static void edges_and_empty(void **state)
{
    (void)state;
    uint8_t full[3 * 3];
    memset(full, 1, sizeof full);
    samda_contour_set cs;
    assert_round_trip(full, 3, 3, &cs); /* touching every image border */
    assert_int_equal(cs.n_contours, 1);
    samda_contour_set_clear(&cs);
    uint8_t none[3 * 3] = {0};
    assert_round_trip(none, 3, 3, &cs);
    assert_int_equal(cs.n_contours, 0);
    samda_contour_set_clear(&cs);
    samda_error e = {0};
    assert_int_equal(samda_contour_trace(NULL, 3, 3, &cs, &e), SAMDA_EINVAL);
    assert_int_equal(samda_contour_trace(full, 0, 3, &cs, &e), SAMDA_EINVAL);
    samda_contour_set_clear(NULL);
}

/* Noise at several densities: every pattern of parts, holes, holes in parts and diagonal contacts. */
static void random_masks_round_trip(void **state)
{
    (void)state;
    srand(7);
    enum { R = 37, C = 41 };
    static uint8_t m[R * C];
    for (int trial = 0; trial < 60; trial++) {
        int density = 10 + trial % 8 * 10;
        for (size_t i = 0; i < sizeof m; i++) m[i] = rand() % 100 < density;
        samda_contour_set cs;
        assert_round_trip(m, R, C, &cs);
        samda_contour_set_clear(&cs);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(square_is_four_corners),       cmocka_unit_test(ring_gives_outer_and_hole),
        cmocka_unit_test(diagonal_pixels_stay_two_polygons), cmocka_unit_test(edges_and_empty),
        cmocka_unit_test(random_masks_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
