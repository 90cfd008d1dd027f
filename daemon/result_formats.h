/* daemon/ internal: the result objects made beside a result's DICOM-SEG as a site's `outputs` asks
 * (an RT Structure Set, a TID 1500 Measurement Report SR), from the same masks, committed into the
 * store and recorded beside the result. segment.c calls these on the segmentation lane; they touch
 * only the store (thread-safe) and the arguments. */
#ifndef SAMDA_DAEMON_RESULT_FORMATS_H
#define SAMDA_DAEMON_RESULT_FORMATS_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "dicom.h"
#include "model.h"
#include "storage.h"

/* What the DICOM-SEG was made from, and what it became. Everything is borrowed for the call. */
typedef struct samdad_result_masks {
    const samda_volume *vol;
    const samda_adapter *labels;     /* the adapter whose labels the masks are */
    const uint8_t *masks;            /* n_labels x n_slices x rows x cols, non-zero inside */
    const bool *wanted;              /* n_labels: the label was segmented */
    const unsigned *segment_numbers; /* n_labels: its SegmentNumber in the DICOM-SEG (0: not there) */
    size_t n_labels;
    const char *seg_sop_uid, *seg_series_uid;
    const char *site;                /* for the series descriptions; NULL or "" = none */
} samdad_result_masks;

/* One object made (kind "rtstruct" or "sr"), committed under seg/<study>/<series>/<sop>.dcm. */
typedef struct samdad_result_object {
    char kind[16];
    char series_uid[SAMDA_UID_SIZE], sop_uid[SAMDA_UID_SIZE];
    samda_object_info obj;
    samda_instance_meta meta;        /* its header, to index it as an instance of its study (the
                                        result's site); only after samdad_result_formats_write */
} samdad_result_object;

typedef struct samdad_result_objects {
    samdad_result_object v[2];
    size_t n;
} samdad_result_objects;

/** Make the objects that outputs (SAMDA_OUTPUT_* bits) asks for besides the SEG, in the order RT
 *  Structure Set, SR: each written, read back and checked as the ingest entry checks an instance
 *  (samda_dicom_check_instance), then committed. @param out OUT: those committed (also after a failure: they are
 *  unclaimed until the result records them, so the store removes them at its next open).
 *  @return SAMDA_OK; the writers' and the store's failures, the message naming the object. */
samda_status samdad_result_formats_write(samda_store *store, unsigned outputs, const char *study_uid,
                                         const samdad_result_masks *m, samdad_result_objects *out,
                                         samda_error *err);

/** The committed objects as the specs samda_result_spec.objects takes (the result records them in
 *  its own transaction, claiming their files). @param out OUT: room for 2. @return their number.
 *  Ownership: out borrows from objs. */
size_t samdad_result_formats_specs(const samdad_result_objects *objs, samda_result_object_spec *out);

/** The objects recorded beside result_id (an interrupted attempt's), at most two.
 *  @return SAMDA_OK; as samda_store_result_object_list. */
samda_status samdad_result_formats_recorded(samda_store *store, int64_t result_id, samdad_result_objects *out,
                                            samda_error *err);

/** [{"kind", "series_uid", "sop_uid"}, ...] for the job's report. Caller owns the reference. */
json_t *samdad_result_formats_json(const samdad_result_objects *objs);

#endif
