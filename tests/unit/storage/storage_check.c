/* storage_check DATA_DIR [ACKED_UIDS_FILE...]
 *
 * Opens the store at DATA_DIR (which runs crash recovery), then checks it: PRAGMA integrity_check,
 * every indexed file present with its size and SHA-256, no file under objects/ that the index does
 * not claim, tmp/ empty; and every SOP Instance UID listed in the given files (one per line, as
 * printed by storage_crash_writer) is indexed. Exit 0 when all holds, 1 with a message otherwise,
 * 2 on usage errors. */
#include <stdio.h>
#include <string.h>

#include "storage.h"

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
    size_t acked = 0, missing = 0;
    for (int i = 2; i < argc; i++) {
        FILE *fp = fopen(argv[i], "r");
        if (!fp) {
            fprintf(stderr, "storage_check: cannot read %s\n", argv[i]);
            samda_store_close(s);
            return 2;
        }
        char line[256];
        while (fgets(line, sizeof line, fp)) {
            line[strcspn(line, "\r\n")] = '\0';
            if (!line[0]) continue;
            acked++;
            if (samda_store_instance_lookup(s, line, NULL, NULL, &e) != SAMDA_OK) {
                if (!missing) fprintf(stderr, "storage_check: acknowledged instance %s: %s\n", line, e.message);
                missing++;
            }
        }
        fclose(fp);
    }
    samda_store_close(s);
    printf("storage_check: ok=%s indexed_objects=%zu acknowledged=%zu missing=%zu tmp_removed=%zu "
           "orphans_removed=%zu\n", missing ? "no" : "yes", r.n_objects_indexed, acked, missing, tmp_removed, orphans);
    return missing ? 1 : 0;
}
