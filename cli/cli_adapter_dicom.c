/* `samda adapter ... --dicom SERIES_DIR,SEG_FILE` (repeatable; for train, eval and tta): each series
 * and a DICOM-SEG of it become NAME.image.npy + NAME.mask.npy pairs in a temporary folder
 * (daemon/trainset.c, as the daemon's training lane does), which is then passed on to
 * cli_adapter_main() as --data and removed afterwards. Segments map by SegmentLabel onto the
 * built-in label ids. Without --dicom the arguments go through unchanged. */
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

static const char *const label_names[] = {"liver", "kidney", "spleen", "aorta", "inferior_vena_cava"};
static const int label_values[] = {1, 2, 3, 4, 5};

/* One --dicom SPEC into DIR as PREFIX.*.npy. Returns CLI_EXIT_OK, or the exit status after a message. */
static int convert_one(const char *spec, const char *tmp, const char *prefix)
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
    samda_status st = samdad_trainset_write((const char *const *)paths, np, comma + 1, label_names, label_values, 5,
                                            tmp, prefix, &written, &matched, &e);
    for (size_t i = 0; i < np; i++) free(paths[i]);
    free(paths);
    if (st != SAMDA_OK) {
        fprintf(stderr, "samda adapter: --dicom %s: %s\n", spec, e.message);
        return CLI_EXIT_FAIL;
    }
    fprintf(stderr, "samda adapter: %s: %zu labelled slices (%zu segments matched)\n", spec, written, matched);
    return CLI_EXIT_OK;
}

static void remove_folder(const char *tmp)
{
    DIR *d = opendir(tmp);
    struct dirent *ent;
    while (d && (ent = readdir(d))) {
        if (ent->d_name[0] == '.') continue;
        char p[PATH_MAX];
        snprintf(p, sizeof p, "%s/%.255s", tmp, ent->d_name);
        unlink(p);
    }
    if (d) closedir(d);
    rmdir(tmp);
}

int cli_cmd_adapter(int argc, char **argv)
{
    char tmp[] = "/tmp/samda-adapter-dicom-XXXXXX";
    bool made = false;
    char **args = calloc((size_t)argc + 3, sizeof *args);
    int n = 0, k = 0, rc = CLI_EXIT_FAIL;
    if (!args) return CLI_EXIT_FAIL;
    for (int i = 0; i < argc; i++) {
        const char *spec = NULL;
        if (!strcmp(argv[i], "--dicom") && i + 1 < argc) spec = argv[++i];
        else if (!strncmp(argv[i], "--dicom=", 8)) spec = argv[i] + 8;
        if (!spec) {
            args[n++] = argv[i];
            continue;
        }
        if (!made) {
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
        }
        char prefix[32];
        snprintf(prefix, sizeof prefix, "dicom%03d", k++);
        if ((rc = convert_one(spec, tmp, prefix)) != CLI_EXIT_OK) goto out;
    }
    if (made) {
        args[n++] = "--data";
        args[n++] = tmp;
    }
    rc = cli_adapter_main(n, args);
out:
    if (made) remove_folder(tmp);
    free(args);
    return rc;
}
