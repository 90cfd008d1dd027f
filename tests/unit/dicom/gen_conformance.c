/* Regenerates the tables of docs/conformance.md from dicom/'s SOP class and transfer syntax table.
 *
 * usage: gen_conformance                 print the tables to stdout
 *        gen_conformance docs/conformance.md
 *                                        replace the text between the GENERATED markers in place
 * Run from the build tree: build/tests/unit/dicom/gen_conformance docs/conformance.md */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dicom.h"

#define BEGIN_MARK "<!-- BEGIN GENERATED: samda_dicom_conformance_tables() -->\n"
#define END_MARK "<!-- END GENERATED -->"

int main(int argc, char **argv)
{
    samda_error e;
    if (argc < 2) return samda_dicom_conformance_tables(stdout, &e) == SAMDA_OK ? 0 : 1;
    FILE *f = fopen(argv[1], "rb");
    if (!f) {
        perror(argv[1]);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *doc = calloc(1, (size_t)n + 1);
    if (!doc || fread(doc, 1, (size_t)n, f) != (size_t)n) return 1;
    fclose(f);
    char *b = strstr(doc, BEGIN_MARK), *end = b ? strstr(b, END_MARK) : NULL;
    if (!b || !end) {
        fprintf(stderr, "%s: markers %s/%s not found\n", argv[1], "BEGIN GENERATED", "END GENERATED");
        return 1;
    }
    char *tables = NULL;
    size_t tn = 0;
    FILE *m = open_memstream(&tables, &tn);
    if (!m || samda_dicom_conformance_tables(m, &e) != SAMDA_OK) return 1;
    fclose(m);
    f = fopen(argv[1], "wb");
    if (!f) {
        perror(argv[1]);
        return 1;
    }
    fwrite(doc, 1, (size_t)(b - doc) + strlen(BEGIN_MARK), f);
    fwrite(tables, 1, tn, f);
    fputs(end, f);
    fclose(f);
    free(tables);
    free(doc);
    return 0;
}
