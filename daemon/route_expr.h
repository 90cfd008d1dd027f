/* The routing rules' expression language: a small, safe boolean language over a series' indexed
 * attributes, parsed once into a tree and evaluated without side effects.
 *
 *   expr  := term { "or" term }            term := factor { "and" factor }
 *   factor:= "not" factor | "(" expr ")" | test
 *   test  := FIELD op VALUE | FIELD ["not"] "in" "(" VALUE { "," VALUE } ")"
 *   op    := "=" | "!=" | "<" | "<=" | ">" | ">=" | "like" | "matches"
 *   VALUE := "quoted text" (\" and \\ escape) | a number | a bare word of letters, digits, _ . -
 *
 * FIELDs (DICOM keywords, case-insensitive): Modality, BodyPartExamined, SeriesDescription,
 * StudyDescription, CallingAETitle, CalledAETitle (text); SliceThickness, Rows, Columns,
 * SeriesNumber, NumberOfSeriesRelatedInstances (numbers). Text compares case-insensitively with
 * surrounding spaces ignored; `like` takes * and ? wildcards; `matches` a POSIX extended regular
 * expression (case-insensitive, searched anywhere in the value; at most 100 characters and 8 of
 * * + ?, no {m,n} and no back-references, so that compiling it stays fast). Numbers
 * take = != < <= > >= and in. A text attribute the series lacks is the empty text; a number it
 * lacks makes every test on it false. Keywords (and, or, not, in, like, matches) are
 * case-insensitive. Bounds: 1000 characters, 64 tests, nesting 16 deep, 32 values per list,
 * patterns of 200 characters.
 *
 * Thread-safety: a parsed expression is immutable; evaluate it from any thread. */
#ifndef SAMDA_DAEMON_ROUTE_EXPR_H
#define SAMDA_DAEMON_ROUTE_EXPR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What an expression reads: one series (borrowed strings; NULL = absent). */
typedef struct samda_route_attrs {
    const char *modality, *body_part, *series_description, *study_description, *calling_ae, *called_ae;
    bool has_slice_thickness, has_rows, has_columns, has_series_number;
    double slice_thickness;
    int64_t rows, columns, series_number;
    int64_t instances; /* NumberOfSeriesRelatedInstances: instances indexed for the series */
} samda_route_attrs;

typedef struct samda_route_expr samda_route_expr;

/** Parse text. @return the expression (caller frees with samda_route_expr_free), or NULL with why
 *  set to "column N: <what is wrong>" (a parse never evaluates anything). Thread-safe. */
samda_route_expr *samda_route_expr_parse(const char *text, char *why, size_t why_size);

/** Called for each test evaluated (left to right, short-circuit): test is the test's own text as
 *  written, value the attribute as the series has it ("(absent)" when missing). */
typedef void (*samda_route_trace_fn)(void *ctx, const char *test, const char *value, bool result);

/** Evaluate e on a; trace (may be NULL) sees each test evaluated. Pure; thread-safe. */
bool samda_route_expr_eval(const samda_route_expr *e, const samda_route_attrs *a, samda_route_trace_fn trace,
                           void *ctx);

/* One part of a comma-separated list of expressions (a rule's requires): its span in the text. */
typedef struct samda_route_part {
    size_t start, len;
} samda_route_part;
#define SAMDA_ROUTE_MAX_PARTS 8

/** Split text at its commas outside parentheses and quotes into parts (spaces trimmed, empty parts
 *  kept so that the parser names them). @return the number of parts; more than max means too many
 *  (only max are filled). Pure; thread-safe. */
size_t samda_route_expr_split(const char *text, samda_route_part *parts, size_t max);

/** Free an expression. NULL-safe. */
void samda_route_expr_free(samda_route_expr *e);

#endif
