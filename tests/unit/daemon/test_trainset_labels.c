/* daemon/trainset.c's one rule for labels from ground-truth DICOM-SEG segments
 * (samdad_label_from_segment): codes copied as coded, the name made safe, colour from
 * RecommendedDisplayCIELabValue else the palette, the window from the modality, and refusals that
 * name the SEG, the segment number and the field. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "trainset.h"

static samda_seg_segment_info lesion(void)
{
    samda_seg_segment_info si;
    memset(&si, 0, sizeof si);
    si.number = 3;
    snprintf(si.label, sizeof si.label, "Liver Lesion #1");
    snprintf(si.category_value, sizeof si.category_value, "49755003");
    snprintf(si.category_scheme, sizeof si.category_scheme, "SCT");
    snprintf(si.category_meaning, sizeof si.category_meaning, "Morphologically Abnormal Structure");
    snprintf(si.type_value, sizeof si.type_value, "52988006");
    snprintf(si.type_scheme, sizeof si.type_scheme, "SCT");
    snprintf(si.type_meaning, sizeof si.type_meaning, "Lesion");
    snprintf(si.region_value, sizeof si.region_value, "10200004");
    snprintf(si.region_scheme, sizeof si.region_scheme, "SCT");
    snprintf(si.region_meaning, sizeof si.region_meaning, "Liver");
    snprintf(si.modifier_value, sizeof si.modifier_value, "24028007");
    snprintf(si.modifier_scheme, sizeof si.modifier_scheme, "SCT");
    snprintf(si.modifier_meaning, sizeof si.modifier_meaning, "Right");
    si.has_cielab = true;
    si.rgb[0] = 200, si.rgb[1] = 40, si.rgb[2] = 10;
    return si;
}

static void test_ct_lesion_copied_as_coded(void **state)
{
    (void)state;
    samda_seg_segment_info si = lesion();
    samda_adapter_label l;
    samda_error err = {0};
    assert_int_equal(samdad_label_from_segment(&si, "CT", 4, "gt.dcm", &l, &err), SAMDA_OK);
    assert_string_equal(l.name, "liver_lesion__1");
    assert_int_equal(l.value, 4);
    assert_string_equal(l.category_code, "49755003");
    assert_string_equal(l.category_meaning, "Morphologically Abnormal Structure");
    assert_string_equal(l.type_scheme, "SCT");
    assert_string_equal(l.type_code, "52988006");
    assert_string_equal(l.type_meaning, "Lesion");
    assert_string_equal(l.region_code, "10200004");
    assert_string_equal(l.region_meaning, "Liver");
    assert_string_equal(l.modifier_code, "24028007");
    assert_string_equal(l.modifier_meaning, "Right");
    assert_int_equal(l.rgb[0], 200);
    assert_int_equal(l.rgb[1], 40);
    assert_int_equal(l.rgb[2], 10);
    assert_int_equal(l.window_kind, SAMDA_WINDOW_CT);
    assert_true(l.window_a == 50 && l.window_b == 400);
}

static void test_mr_palette_and_percentiles(void **state)
{
    (void)state;
    samda_seg_segment_info si = lesion();
    si.has_cielab = false;
    si.region_value[0] = si.modifier_value[0] = '\0';
    samda_adapter_label a, b;
    samda_error err = {0};
    assert_int_equal(samdad_label_from_segment(&si, "MR", 1, "gt.dcm", &a, &err), SAMDA_OK);
    assert_int_equal(samdad_label_from_segment(&si, "MR", 2, "gt.dcm", &b, &err), SAMDA_OK);
    assert_int_equal(a.window_kind, SAMDA_WINDOW_MR);
    assert_true(a.window_a == 1 && a.window_b == 99);
    assert_string_equal(a.region_code, "");
    /* palette colours: set, and different for consecutive values */
    assert_true(a.rgb[0] || a.rgb[1] || a.rgb[2]);
    assert_memory_not_equal(a.rgb, b.rgb, 3);
    /* no SegmentLabel: named by its number */
    si.label[0] = '\0';
    assert_int_equal(samdad_label_from_segment(&si, NULL, 1, "gt.dcm", &a, &err), SAMDA_OK);
    assert_string_equal(a.name, "segment_3");
    assert_int_equal(a.window_kind, SAMDA_WINDOW_MR);
}

/* Left and right kidney (one coded type, two type modifiers) are two labels; the same type with the
 * same modifier is one label across studies. */
static void test_type_modifier_in_identity(void **state)
{
    (void)state;
    samda_seg_segment_info si = lesion();
    si.region_value[0] = si.region_scheme[0] = si.region_meaning[0] = '\0';
    si.modifier_value[0] = si.modifier_scheme[0] = si.modifier_meaning[0] = '\0';
    snprintf(si.type_value, sizeof si.type_value, "64033007");
    snprintf(si.type_meaning, sizeof si.type_meaning, "Kidney");
    snprintf(si.type_modifier_value, sizeof si.type_modifier_value, "7771000");
    snprintf(si.type_modifier_scheme, sizeof si.type_modifier_scheme, "SCT");
    snprintf(si.type_modifier_meaning, sizeof si.type_modifier_meaning, "Left");
    samda_adapter_label left;
    samda_error err = {0};
    assert_int_equal(samdad_label_from_segment(&si, "CT", 1, "gt.dcm", &left, &err), SAMDA_OK);
    assert_string_equal(left.type_modifier_code, "7771000");
    assert_string_equal(left.type_modifier_meaning, "Left");
    assert_true(samdad_segment_is_label(&si, &left));
    samda_seg_segment_info right = si;
    snprintf(right.type_modifier_value, sizeof right.type_modifier_value, "24028007");
    snprintf(right.type_modifier_meaning, sizeof right.type_modifier_meaning, "Right");
    assert_false(samdad_segment_is_label(&right, &left));
    samda_seg_segment_info plain = si;
    plain.type_modifier_value[0] = plain.type_modifier_scheme[0] = plain.type_modifier_meaning[0] = '\0';
    assert_false(samdad_segment_is_label(&plain, &left));
    /* a modifier with no meaning is refused, naming the field */
    right.type_modifier_meaning[0] = '\0';
    assert_int_equal(samdad_label_from_segment(&right, "CT", 2, "gt.dcm", &left, &err), SAMDA_EINVAL);
    assert_non_null(strstr(err.message, "type modifier"));
}

static void expect_refusal(samda_seg_segment_info si, int value, const char *needle)
{
    samda_adapter_label l;
    samda_error err = {0};
    assert_int_equal(samdad_label_from_segment(&si, "CT", value, "site/gt.dcm", &l, &err), SAMDA_EINVAL);
    if (!strstr(err.message, "site/gt.dcm") || !strstr(err.message, needle))
        fail_msg("message \"%s\" should name the SEG and \"%s\"", err.message, needle);
}

static void test_refusals_name_what_is_wrong(void **state)
{
    (void)state;
    samda_seg_segment_info si = lesion();
    si.type_value[0] = '\0';
    expect_refusal(si, 1, "segment 3");
    si = lesion();
    si.category_scheme[0] = '\0';
    expect_refusal(si, 1, "SegmentedPropertyCategoryCodeSequence");
    si = lesion();
    si.region_value[0] = '\0';
    expect_refusal(si, 1, "modifier without a region");
    si = lesion();
    memset(si.type_value, '7', 40);
    si.type_value[40] = '\0';
    expect_refusal(si, 1, "type code");
    si = lesion();
    si.region_meaning[0] = '\0';
    expect_refusal(si, 1, "region code without scheme or meaning");
    expect_refusal(lesion(), 0, "outside 1..255");
    expect_refusal(lesion(), 256, "outside 1..255");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ct_lesion_copied_as_coded),
        cmocka_unit_test(test_mr_palette_and_percentiles),
        cmocka_unit_test(test_refusals_name_what_is_wrong),
        cmocka_unit_test(test_type_modifier_in_identity),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
