/* `samda adapter ... --dicom SERIES_DIR,SEG_FILE` (repeatable; for train, eval and tta): each series
 * and a DICOM-SEG of it become NAME.image.npy + NAME.mask.npy pairs in a temporary folder
 * (daemon/trainset.c, as the daemon's training lane does), which is then passed on to
 * cli_adapter_main() as --data and removed afterwards. Segments map onto the labels of --labels-file
 * or --labels (by coded type, else SegmentLabel; without either the demo's five), or, with
 * `train --labels from_segs`, define the labels themselves (trainset.h's rule), written to a
 * temporary schema file passed on as --labels-file. Without --dicom the arguments go through
 * unchanged. */
#include "cli.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dicom.h"
#include "trainset.h"

#include "model.h"

/* One --dicom SPEC into DIR as PREFIX.*.npy, segments mapped onto (or, with flags GROW, growing)
 * schema. Returns CLI_EXIT_OK, or the exit status after a message. */
static int convert_one(const char *spec, const char *tmp, const char *prefix, samdad_label_schema *schema,
                       unsigned flags)
{
    const char *comma = strchr(spec, ',');
    if (!comma || comma == spec || !comma[1]) {
        fprintf(stderr, "samda adapter: --dicom needs SERIES_DIR,SEG_FILE (got '%s')\n", spec);
        return CLI_EXIT_USAGE;
    }
    char dir[2048];
    snprintf(dir, sizeof dir, "%.*s", (int)(comma - spec), spec);
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "samda adapter: --dicom %s: %s\n", dir, strerror(errno));
        return CLI_EXIT_FAIL;
    }
    char **paths = NULL;
    size_t np = 0, cap = 0;
    struct dirent *ent;
    while ((ent = readdir(d))) {
        if (ent->d_name[0] == '.') continue;
        if (np == cap) {
            cap = cap ? cap * 2 : 64;
            char **nv = realloc(paths, cap * sizeof *nv);
            if (!nv) break;
            paths = nv;
        }
        paths[np] = malloc(PATH_MAX);
        if (!paths[np]) break;
        snprintf(paths[np], PATH_MAX, "%.2047s/%.255s", dir, ent->d_name);
        np++;
    }
    closedir(d);
    size_t written = 0, matched = 0;
    samda_error e;
    samda_status st = samdad_trainset_write((const char *const *)paths, np, comma + 1, schema, flags, tmp, prefix,
                                            &written, &matched, &e);
    for (size_t i = 0; i < np; i++) free(paths[i]);
    free(paths);
    if (st != SAMDA_OK) {
        fprintf(stderr, "samda adapter: --dicom %s: %s\n", spec, e.message);
        return CLI_EXIT_FAIL;
    }
    fprintf(stderr, "samda adapter: %s: %zu labelled slices (%zu segments matched)\n", spec, written, matched);
    return CLI_EXIT_OK;
}

/* Is argv[*i] the option --name (with its value in the next argument, or after '=')? Then *value is
 * the value and *i moves past it. */
static bool take_opt(int argc, char **argv, int *i, const char *name, const char **value)
{
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n) != 0) return false;
    if (argv[*i][n] == '=') {
        *value = argv[*i] + n + 1;
        return true;
    }
    if (argv[*i][n] || *i + 1 >= argc) return false;
    *value = argv[++*i];
    return true;
}

/* The schema of --labels from_segs, as a file for cli_adapter_main's --labels-file. */
static int write_schema(const samdad_label_schema *schema, const char *path)
{
    samda_error err = {0};
    char *json = samda_adapter_labels_json(schema->labels, schema->n, &err);
    if (!json) {
        fprintf(stderr, "samda adapter: the labels of the DICOM-SEGs: %s\n", err.message);
        return CLI_EXIT_FAIL;
    }
    FILE *f = fopen(path, "w");
    bool ok = f && fputs(json, f) >= 0;
    if (f && fclose(f) != 0) ok = false;
    free(json);
    if (!ok) {
        fprintf(stderr, "samda adapter: writing %s: %s\n", path, strerror(errno));
        return CLI_EXIT_FAIL;
    }
    for (size_t i = 0; i < schema->n; i++) {
        const samda_adapter_label *l = &schema->labels[i];
        fprintf(stderr, "samda adapter: label %d %s = %s %s \"%s\"%s%s%s (%s window)\n", l->value, l->name, l->type_scheme,
                l->type_code, l->type_meaning, l->region_code[0] ? ", region \"" : "", l->region_meaning,
                l->region_code[0] ? "\"" : "", l->window_kind == SAMDA_WINDOW_CT ? "CT" : "MR");
    }
    return CLI_EXIT_OK;
}

int cli_cmd_adapter(int argc, char **argv)
{
    char tmp[] = "/tmp/samda-adapter-dicom-XXXXXX", schema_path[64] = "";
    bool made = false, from_segs = false;
    char **args = calloc((size_t)argc + 3, sizeof *args);
    const char **specs = calloc((size_t)argc + 1, sizeof *specs);
    samdad_label_schema *schema = calloc(1, sizeof *schema);
    samda_adapter_label *labels = NULL;
    size_t n_labels = 0;
    int n = 0, n_specs = 0, rc = CLI_EXIT_FAIL;
    if (!args || !specs || !schema) goto out;
    /* the --dicom specs apart; --labels from_segs is this file's, every other argument goes on */
    for (int i = 0; i < argc; i++) {
        const char *v = NULL;
        int j = i;
        if (take_opt(argc, argv, &j, "--dicom", &v)) {
            specs[n_specs++] = v;
            i = j;
        } else if (take_opt(argc, argv, &j, "--labels", &v) && !strcmp(v, "from_segs")) {
            from_segs = true;
            i = j;
        } else {
            args[n++] = argv[i];
        }
    }
    if (!n_specs) {
        if (from_segs) args[n++] = "--labels=from_segs"; /* cli_adapter_main says why it needs --dicom */
        rc = cli_adapter_main(n, args);
        goto out;
    }
    if (from_segs) {
        bool is_train = n > 1 && !strcmp(args[1], "train");
        for (int i = 2; i < n; i++)
            if (!strncmp(args[i], "--labels", 8) || !strncmp(args[i], "--adapter", 9) || !strncmp(args[i], "--window", 8))
                is_train = false;
        if (!is_train) {
            fprintf(stderr, "samda adapter: --labels from_segs makes a new adapter's labels: for train alone, without "
                            "--labels-file, --window, --adapter or --adapter-in\n");
            rc = CLI_EXIT_USAGE;
            goto out;
        }
    } else {
        if ((rc = cli_adapter_labels(n, args, &labels, &n_labels)) != CLI_EXIT_OK) goto out;
        rc = CLI_EXIT_FAIL;
        memcpy(schema->labels, labels, n_labels * sizeof *labels);
        schema->n = n_labels;
    }
    if (!mkdtemp(tmp)) {
        fprintf(stderr, "samda adapter: cannot create a temporary folder: %s\n", strerror(errno));
        goto out;
    }
    made = true;
    samda_dicom_init_params ip;
    samda_dicom_init_params_init(&ip);
    samda_error e;
    if (samda_dicom_init(&ip, &e) != SAMDA_OK) {
        fprintf(stderr, "samda adapter: %s\n", e.message);
        goto out;
    }
    for (int k = 0; k < n_specs; k++) {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "dicom%03d", k);
        if ((rc = convert_one(specs[k], tmp, prefix, schema, from_segs ? SAMDAD_TRAINSET_GROW : 0)) != CLI_EXIT_OK)
            goto out;
    }
    if (from_segs) {
        snprintf(schema_path, sizeof schema_path, "%s.labels.json", tmp);
        if ((rc = write_schema(schema, schema_path)) != CLI_EXIT_OK) goto out;
        args[n++] = "--labels-file";
        args[n++] = schema_path;
    }
    args[n++] = "--data";
    args[n++] = tmp;
    rc = cli_adapter_main(n, args);
out:
    if (made) samdad_trainset_remove(tmp);
    if (schema_path[0]) unlink(schema_path);
    free(labels);
    free(schema);
    free(specs);
    free(args);
    return rc;
}
