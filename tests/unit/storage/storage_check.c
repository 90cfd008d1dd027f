/* storage_check DATA_DIR [ACKED_UIDS_FILE...]
 *
 * Opens the store at DATA_DIR (which runs crash recovery), then checks it: PRAGMA integrity_check,
 * every indexed file present with its size and SHA-256, no file under objects/ that the index does
 * not claim, tmp/ empty; and every SOP Instance UID listed in the given files (one per line, as
 * printed by storage_crash_writer) is indexed, unless a deletion line of the files covers it:
 * "-UID" (a study or series deleted: its instances must be gone) or "?-UID" (a deletion that may
 * or may not have happened: either is right). Exit 0 when all holds, 1 with a message otherwise,
 * 2 on usage errors. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage.h"

typedef struct lines {
    char (*v)[80];
    size_t n, cap;
} lines;

static bool read_lines(const char *path, lines *l)
{
    FILE *fp = fopen(path, "r");
    if (!fp) {
        fprintf(stderr, "storage_check: cannot read %s\n", path);
        return false;
    }
    char line[256];
    while (fgets(line, sizeof line, fp)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (!line[0] || strlen(line) >= sizeof l->v[0]) continue;
        if (l->n == l->cap) {
            size_t cap = l->cap ? 2 * l->cap : 1024;
            void *p = realloc(l->v, cap * sizeof l->v[0]);
            if (!p) break;
            l->v = p;
            l->cap = cap;
        }
        snprintf(l->v[l->n++], sizeof l->v[0], "%s", line);
    }
    fclose(fp);
    return true;
}

/* 2: a "-UID" line deletes uid's study or series; 1: only a "?-UID" line may have; 0: none. */
static int covered(const lines *l, const char *uid)
{
    int best = 0;
    for (size_t i = 0; i < l->n; i++) {
        const char *d = l->v[i];
        int kind = d[0] == '-' ? 2 : (d[0] == '?' && d[1] == '-') ? 1 : 0;
        if (!kind) continue;
        d += kind == 2 ? 1 : 2;
        size_t n = strlen(d);
        if (strncmp(uid, d, n) == 0 && uid[n] == '.' && kind > best) best = kind;
    }
    return best;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s DATA_DIR [ACKED_UIDS_FILE...]\n", argv[0]);
        return 2;
    }
    samda_store_params p;
    samda_store_params_init(&p);
    p.data_dir = argv[1];
    samda_error e;
    samda_store *s = samda_store_open(&p, &e);
    if (!s) {
        fprintf(stderr, "storage_check: %s\n", e.message);
        return 1;
    }
    size_t tmp_removed = samda_store_tmp_removed(s), orphans = samda_store_orphans_removed(s);
    samda_store_check_report r;
    if (samda_store_check(s, &r, &e) != SAMDA_OK) {
        fprintf(stderr, "storage_check: %s\n", e.message);
        samda_store_close(s);
        return 1;
    }
    lines all = {0};
    for (int i = 2; i < argc; i++)
        if (!read_lines(argv[i], &all)) {
            samda_store_close(s);
            return 2;
        }
    size_t acked = 0, missing = 0, deleted = 0, undeleted = 0;
    for (size_t i = 0; i < all.n; i++) {
        const char *uid = all.v[i];
        if (uid[0] == '-' || uid[0] == '?') continue;
        acked++;
        int cover = covered(&all, uid);
        bool present = samda_store_instance_lookup(s, uid, NULL, NULL, &e) == SAMDA_OK;
        if (cover == 2 && present) {
            if (!undeleted) fprintf(stderr, "storage_check: instance %s of a deleted study or series is indexed\n", uid);
            undeleted++;
        } else if (cover == 2) {
            deleted++;
        } else if (cover == 0 && !present) {
            if (!missing) fprintf(stderr, "storage_check: acknowledged instance %s: %s\n", uid, e.message);
            missing++;
        }
    }
    free(all.v);
    missing += undeleted;
    samda_store_close(s);
    printf("storage_check: ok=%s indexed_objects=%zu acknowledged=%zu deleted=%zu missing=%zu tmp_removed=%zu "
           "orphans_removed=%zu\n", missing ? "no" : "yes", r.n_objects_indexed, acked, deleted, missing, tmp_removed,
           orphans);
    return missing ? 1 : 0;
}
