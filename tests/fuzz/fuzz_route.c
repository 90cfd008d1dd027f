/* libFuzzer target for the routing rules' expression language (daemon/route_expr.c): the input,
 * made a string, is split as a rule's requires and each part parsed; what parses is evaluated on
 * two series (one with every attribute, one with none) with the trace on. A refused text must say
 * why. Memory errors, leaks and UB are caught by ASan/UBSan (the build adds them). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "route_expr.h"

static void sink(void *ctx, const char *test, const char *value, bool result)
{
    size_t *n = ctx;
    *n += strlen(test) + strlen(value) + (result ? 1 : 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096) return 0;
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0;
    static const samda_route_attrs full = {
        .modality = "CT", .body_part = "ABDOMEN", .series_description = "CT ARTERIAL 1.0 B30f",
        .study_description = "CT Abdomen", .calling_ae = "MODALITY1", .called_ae = "SAMDA",
        .has_slice_thickness = true, .slice_thickness = 1.0, .has_rows = true, .rows = 512, .has_columns = true,
        .columns = 512, .has_series_number = true, .series_number = 3, .instances = 240};
    static const samda_route_attrs none = {0};
    samda_route_part parts[SAMDA_ROUTE_MAX_PARTS];
    size_t n = samda_route_expr_split(text, parts, SAMDA_ROUTE_MAX_PARTS);
    if (n > SAMDA_ROUTE_MAX_PARTS) n = SAMDA_ROUTE_MAX_PARTS;
    for (size_t i = 0; i <= n; i++) {
        /* each part, then the whole text */
        char *t = i < n ? strndup(text + parts[i].start, parts[i].len) : strdup(text);
        if (!t) break;
        char why[300] = "";
        samda_route_expr *e = samda_route_expr_parse(t, why, sizeof why);
        if (!e && !why[0]) abort(); /* a refusal always says why */
        size_t seen = 0;
        if (e) {
            samda_route_expr_eval(e, &full, sink, &seen);
            samda_route_expr_eval(e, &none, sink, &seen);
            samda_route_expr_eval(e, &full, NULL, NULL);
        }
        samda_route_expr_free(e);
        free(t);
    }
    free(text);
    return 0;
}
