/* daemon/route_expr.c: the routing rules' expression language. Parsing (what is accepted, what is
 * refused and where), evaluation on a series' attributes, the trace the rule tester shows, the
 * split of a rule's requires, and the bounds that keep it safe. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "route_expr.h"

static samda_route_attrs ct(void)
{
    return (samda_route_attrs){.modality = "CT", .body_part = "ABDOMEN", .series_description = " CT ARTERIAL 1.0 B30f ",
                               .study_description = "CT Abdomen", .calling_ae = "MODALITY1", .called_ae = "SAMDA",
                               .has_slice_thickness = true, .slice_thickness = 1.0, .has_rows = true, .rows = 512,
                               .has_columns = true, .columns = 512, .has_series_number = true, .series_number = 3,
                               .instances = 240};
}

/* Evaluate text on a; the test fails if it does not parse. */
static bool ev(const char *text, const samda_route_attrs *a)
{
    char why[256];
    samda_route_expr *e = samda_route_expr_parse(text, why, sizeof why);
    if (!e) fail_msg("'%s' refused: %s", text, why);
    bool r = samda_route_expr_eval(e, a, NULL, NULL);
    samda_route_expr_free(e);
    return r;
}

/* The message for a refused text. */
static const char *refused(const char *text)
{
    static char why[256];
    samda_route_expr *e = samda_route_expr_parse(text, why, sizeof why);
    if (e) fail_msg("'%s' accepted", text);
    return why;
}

static void text_tests(void **state)
{
    (void)state;
    samda_route_attrs a = ct();
    assert_true(ev("Modality = CT", &a));
    assert_true(ev("modality = ct", &a));          /* keywords and text compare case-insensitively */
    assert_true(ev("Modality == \"CT\"", &a));
    assert_false(ev("Modality != CT", &a));
    assert_true(ev("SeriesDescription like \"*ARTERIAL*\"", &a));
    assert_true(ev("SeriesDescription like *arterial*", &a));
    assert_true(ev("SeriesDescription = \"CT ARTERIAL 1.0 B30f\"", &a)); /* surrounding spaces ignored */
    assert_false(ev("SeriesDescription like \"*VENOUS*\"", &a));
    assert_true(ev("SeriesDescription like \"CT?ART*\"", &a));
    assert_true(ev("SeriesDescription matches \"art(erial)? [0-9.]+\"", &a));
    assert_false(ev("SeriesDescription matches \"^venous\"", &a));
    assert_true(ev("CallingAETitle in (PACS, MODALITY1)", &a));
    assert_false(ev("CallingAETitle not in (PACS, MODALITY1)", &a));
    assert_true(ev("CalledAETitle = SAMDA and StudyDescription like \"CT*\"", &a));
    assert_true(ev("BodyPartExamined in (\"ABDOMEN\", \"CHEST\")", &a));
    /* an absent text is the empty text */
    samda_route_attrs b = a;
    b.body_part = NULL;
    assert_true(ev("BodyPartExamined = \"\"", &b));
    assert_false(ev("BodyPartExamined like \"?*\"", &b));
}

static void number_tests(void **state)
{
    (void)state;
    samda_route_attrs a = ct();
    assert_true(ev("SliceThickness <= 2.5", &a));
    assert_true(ev("SliceThickness = 1", &a));
    assert_true(ev("SliceThickness >= 1.0 and SliceThickness < 1.5", &a));
    assert_false(ev("SliceThickness > 1", &a));
    assert_true(ev("Rows = 512 and Columns in (256, 512)", &a));
    assert_true(ev("NumberOfSeriesRelatedInstances >= 100", &a));
    assert_true(ev("SeriesNumber != 4", &a));
    /* a number the series lacks makes every test on it false */
    samda_route_attrs b = a;
    b.has_slice_thickness = false;
    assert_false(ev("SliceThickness <= 5", &b));
    assert_false(ev("SliceThickness > 5", &b));
    assert_false(ev("SliceThickness != 5", &b));
    assert_true(ev("not SliceThickness <= 5", &b));
}

static void logic_tests(void **state)
{
    (void)state;
    samda_route_attrs a = ct();
    assert_true(ev("Modality = MR or Modality = CT", &a));
    assert_false(ev("Modality = MR and Modality = CT", &a));
    assert_true(ev("not Modality = MR", &a));
    assert_true(ev("Modality = CT and (SliceThickness > 3 or SeriesDescription like \"*ART*\")", &a));
    assert_false(ev("Modality = CT and not (SliceThickness > 3 or SeriesDescription like \"*ART*\")", &a));
    /* and binds tighter than or */
    assert_true(ev("Modality = MR and Rows = 1 or Modality = CT", &a));
    assert_false(ev("Modality = MR and (Rows = 1 or Modality = CT)", &a));
}

static void errors_name_the_column(void **state)
{
    (void)state;
    assert_string_equal(refused(""), "column 1: the expression is empty");
    assert_non_null(strstr(refused("Modality = CT and Foo = 1"), "column 19: unknown attribute 'Foo'"));
    assert_string_equal(refused("SeriesDescription like"),
                        "column 23: a value (a number, a word or \"quoted text\") must follow");
    assert_string_equal(refused("SliceThickness like 2"),
                        "column 16: SliceThickness is a number: like and matches compare text");
    assert_string_equal(refused("Modality < CT"),
                        "column 10: Modality is text: it takes =, !=, like, matches or in, not <");
    assert_string_equal(refused("Rows = big"), "column 8: Rows is a number: 'big' is not one");
    assert_string_equal(refused("(Modality = CT"), "column 15: the ( at column 1 is not closed");
    assert_string_equal(refused("Modality = CT)"), "column 14: this ) closes nothing");
    assert_string_equal(refused("Modality = CT Rows = 1"), "column 15: 'and' or 'or' must join two tests, found 'Rows'");
    assert_string_equal(refused("Modality = \"CT"), "column 12: text opened with \" is not closed");
    assert_string_equal(refused("Modality = 'CT'"), "column 12: unexpected character ''' (quote text with \")");
    assert_non_null(strstr(refused("SeriesDescription matches \"(a\""), "column 27: not a valid regular expression"));
    assert_string_equal(refused("SeriesDescription matches \"(a)\\\\1\""),
                        "column 27: back-references (\\1) are not allowed in matches");
    assert_string_equal(refused("SeriesDescription matches \"a{2,}\""),
                        "column 27: counted repetition {m,n} is not allowed in matches (write it out, or use like)");
    assert_string_equal(refused("SeriesDescription matches \"a*b*c*d*e*f*g*h*i*\""),
                        "column 27: a matches pattern has at most 100 characters and 8 of * + ?");
    assert_true(ev("SeriesDescription matches \"a\\\\*b*c*d*e*f*g*h*i*\"", &(samda_route_attrs){0}) == false);
    assert_non_null(strstr(refused("Modality in CT"), "in takes a list in parentheses"));
    assert_non_null(strstr(refused("Modality ~ CT"), "unexpected character '~'"));
}

static void bounds(void **state)
{
    (void)state;
    char big[2048];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = 0;
    assert_non_null(strstr(refused(big), "longer than 1000 characters"));
    /* 65 tests */
    char many[1000] = "";
    for (int i = 0; i < 65; i++) strcat(many, i ? " or Rows=1" : "Rows=1");
    assert_non_null(strstr(refused(many), "more than 64 tests"));
    /* 17 levels of parentheses */
    char deep[200] = "";
    for (int i = 0; i < 17; i++) strcat(deep, "(");
    strcat(deep, "Rows=1");
    for (int i = 0; i < 17; i++) strcat(deep, ")");
    assert_non_null(strstr(refused(deep), "nested more than 16 deep"));
    char nots[200] = "";
    for (int i = 0; i < 17; i++) strcat(nots, "not ");
    strcat(nots, "Rows=1");
    assert_non_null(strstr(refused(nots), "nested more than 16 deep"));
    /* 33 list values */
    char list[400] = "Rows in (";
    for (int i = 0; i < 33; i++) sprintf(list + strlen(list), "%s%d", i ? "," : "", i);
    strcat(list, ")");
    assert_non_null(strstr(refused(list), "more than 32 values"));
}

typedef struct seen {
    char lines[8][160];
    int n;
} seen;

static void record(void *ctx, const char *test, const char *value, bool result)
{
    seen *s = ctx;
    if (s->n < 8) snprintf(s->lines[s->n++], 160, "%s | %s | %d", test, value, result);
}

static void trace_shows_tests_as_written(void **state)
{
    (void)state;
    samda_route_attrs a = ct();
    a.has_rows = false;
    samda_route_expr *e = samda_route_expr_parse("Modality = CT and  ( Rows >= 256  or SeriesDescription like \"*ART*\" )",
                                                 NULL, 0);
    assert_non_null(e);
    seen s = {0};
    assert_true(samda_route_expr_eval(e, &a, record, &s));
    samda_route_expr_free(e);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.lines[0], "Modality = CT | CT | 1");
    assert_string_equal(s.lines[1], "Rows >= 256 | (absent) | 0");
    assert_string_equal(s.lines[2], "SeriesDescription like \"*ART*\" | CT ARTERIAL 1.0 B30f | 1");
    /* short-circuit: the second test of a false and is not evaluated */
    e = samda_route_expr_parse("Modality = MR and Rows = 1", NULL, 0);
    memset(&s, 0, sizeof s);
    assert_false(samda_route_expr_eval(e, &a, record, &s));
    samda_route_expr_free(e);
    assert_int_equal(s.n, 1);
}

static void split_requires(void **state)
{
    (void)state;
    const char *t = " SeriesDescription like \"*A,B*\" , Rows in (1, 2),Modality = CT ";
    samda_route_part p[SAMDA_ROUTE_MAX_PARTS];
    assert_int_equal(samda_route_expr_split(t, p, SAMDA_ROUTE_MAX_PARTS), 3);
    char buf[100];
    snprintf(buf, sizeof buf, "%.*s", (int)p[0].len, t + p[0].start);
    assert_string_equal(buf, "SeriesDescription like \"*A,B*\"");
    snprintf(buf, sizeof buf, "%.*s", (int)p[1].len, t + p[1].start);
    assert_string_equal(buf, "Rows in (1, 2)");
    snprintf(buf, sizeof buf, "%.*s", (int)p[2].len, t + p[2].start);
    assert_string_equal(buf, "Modality = CT");
    assert_int_equal(samda_route_expr_split("a,b,c,d,e,f,g,h,i", p, SAMDA_ROUTE_MAX_PARTS), 9);
    /* an empty part is kept, so that the parser names it */
    assert_int_equal(samda_route_expr_split("Rows = 1,", p, SAMDA_ROUTE_MAX_PARTS), 2);
    assert_int_equal(p[1].len, 0);
}

/* Pathological patterns stay fast on the longest values a series has (64 characters). */
static void patterns_stay_bounded(void **state)
{
    (void)state;
    samda_route_attrs a = ct();
    a.series_description = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab";
    assert_false(ev("SeriesDescription like \"*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*c\"", &a));
    assert_false(ev("SeriesDescription matches \"^(a+)+c$\"", &a));
    assert_true(ev("SeriesDescription like \"*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b\"", &a));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(text_tests),
        cmocka_unit_test(number_tests),
        cmocka_unit_test(logic_tests),
        cmocka_unit_test(errors_name_the_column),
        cmocka_unit_test(bounds),
        cmocka_unit_test(trace_shows_tests_as_written),
        cmocka_unit_test(split_requires),
        cmocka_unit_test(patterns_stay_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
