/* storage_crash_writer DATA_DIR ROUND [COUNT]
 *
 * Crash-test writer (not a cmocka test): opens a store at DATA_DIR and ingests instances in a loop
 * (some with a queued job and a recorded SEG result), printing each SOP Instance UID on stdout,
 * flushed, only after samda_store_instance_ingest returned success, i.e. once it must survive a
 * crash. Each finished study (8 instances, 2 series, a result per series) is then partly deleted:
 * the whole study every third time, else its first series (samda_store_study_delete / _series_delete),
 * printing "?-UID" before the call (it may or may not have happened when a kill comes) and "-UID"
 * after it returned (it must have). A test kills it with SIGKILL at random moments and runs
 * storage_check afterwards. ROUND keeps UIDs unique across runs on the same directory. COUNT bounds
 * the loop (default: endless). */
#include <stdio.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>

#include "storage.h"

static int fail(samda_store *s, const samda_error *e)
{
    fprintf(stderr, "storage_crash_writer: %s\n", e->message);
    samda_store_close(s);
    return 1;
}

/* After study k is complete: delete part of it (see above). */
static samda_status delete_some(samda_store *s, int round, long k, samda_error *e)
{
    char uid[SAMDA_UID_SIZE];
    bool whole = k % 3 == 0;
    if (whole) snprintf(uid, sizeof uid, "1.2.826.0.1.3680043.10.%d.%ld", round, k);
    else snprintf(uid, sizeof uid, "1.2.826.0.1.3680043.10.%d.%ld.0", round, k);
    printf("?-%s\n", uid);
    fflush(stdout);
    samda_status st = whole ? samda_store_study_delete(s, uid, NULL, e) : samda_store_series_delete(s, uid, NULL, e);
    if (st == SAMDA_OK) {
        printf("-%s\n", uid);
        fflush(stdout);
    }
    return st;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s DATA_DIR ROUND [COUNT]\n", argv[0]);
        return 2;
    }
    int round = atoi(argv[2]);
    long count = argc > 3 ? atol(argv[3]) : -1;
    samda_store_params p;
    samda_store_params_init(&p); /* synchronous FULL, as in production */
    p.data_dir = argv[1];
    samda_error e;
    samda_store *s = samda_store_open(&p, &e);
    if (!s) {
        fprintf(stderr, "storage_crash_writer: %s\n", e.message);
        return 1;
    }
    static unsigned char buf[32768];
    unsigned seed = (unsigned)round * 2654435761u;
    for (long i = 0; count < 0 || i < count; i++) {
        samda_instance_meta m;
        samda_instance_meta_init(&m);
        snprintf(m.study_uid, sizeof m.study_uid, "1.2.826.0.1.3680043.10.%d.%ld", round, i / 8);
        snprintf(m.series_uid, sizeof m.series_uid, "%s.%ld", m.study_uid, (i / 4) % 2);
        snprintf(m.sop_uid, sizeof m.sop_uid, "%s.%ld", m.series_uid, i);
        snprintf(m.sop_class_uid, sizeof m.sop_class_uid, "1.2.840.10008.5.1.4.1.1.2");
        snprintf(m.modality, sizeof m.modality, "CT");
        m.instance_number = (int)i;
        size_t len = 1 + (seed = seed * 1103515245u + 12345u) % sizeof buf;
        for (size_t k = 0; k < len; k++) buf[k] = (unsigned char)(k * 31 + i);
        samda_tmp_file t;
        samda_status st = samda_store_object_tmp_open(s, &t, &e);
        for (size_t off = 0; st == SAMDA_OK && off < len; off += 4096)
            st = samda_store_object_tmp_write(s, &t, buf + off, len - off < 4096 ? len - off : 4096, &e);
        if (st == SAMDA_OK) st = samda_store_instance_ingest(s, &t, &m, SAMDA_DUP_IGNORE_IDENTICAL, NULL, &e);
        else samda_store_object_tmp_discard(s, &t);
        if (st != SAMDA_OK) {
            fprintf(stderr, "storage_crash_writer: %s\n", e.message);
            samda_store_close(s);
            return 1;
        }
        printf("%s\n", m.sop_uid);
        fflush(stdout);
        if (i % 4 == 3) { /* a finished series: queue work and record a result for it */
            char hash[SAMDA_SHA256_HEX_SIZE];
            samda_job_spec js = {.kind = "segment", .series_uid = m.series_uid, .content_hash = hash};
            int64_t job = 0;
            if (samda_store_series_content_hash(s, m.series_uid, hash, &e) != SAMDA_OK ||
                samda_store_job_enqueue(s, &js, &job, NULL, &e) != SAMDA_OK) {
                fprintf(stderr, "storage_crash_writer: %s\n", e.message);
                return 1;
            }
            /* the result as samdad records it: the SEG an instance of the study, in its own series */
            samda_instance_meta sm = m;
            snprintf(sm.series_uid, sizeof sm.series_uid, "%s.99", m.series_uid);
            snprintf(sm.sop_uid, sizeof sm.sop_uid, "%s.1", sm.series_uid);
            snprintf(sm.sop_class_uid, sizeof sm.sop_class_uid, "1.2.840.10008.5.1.4.1.1.66.4");
            snprintf(sm.modality, sizeof sm.modality, "SEG");
            samda_result_spec rs = {.job_id = job, .series_uid = m.series_uid, .seg_series_uid = sm.series_uid,
                                    .seg_sop_uid = sm.sop_uid};
            st = samda_store_object_tmp_open(s, &t, &e);
            if (st == SAMDA_OK) st = samda_store_object_tmp_write(s, &t, buf, len / 2 + 1, &e);
            if (st == SAMDA_OK) st = samda_store_result_ingest(s, &t, &sm, &rs, NULL, NULL, &e);
            else samda_store_object_tmp_discard(s, &t);
            if (st != SAMDA_OK) return fail(s, &e);
        }
        if (i % 8 == 7 && delete_some(s, round, i / 8, &e) != SAMDA_OK) return fail(s, &e);
    }
    samda_store_close(s);
    return 0;
}
