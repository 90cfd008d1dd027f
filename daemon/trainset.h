/* Training data from the PACS (daemon/trainset.c): a source series plus a DICOM-SEG of it (a
 * radiologist's ground truth, or a corrected result sent back) become the NAME.image.npy +
 * NAME.mask.npy pairs that supervised adaptation and evaluation read; and the rule that turns the
 * segments of ground-truth SEGs into a label schema (used by samdad's training lane and by
 * `samda adapter --dicom`). */
#ifndef SAMDA_DAEMON_TRAINSET_H
#define SAMDA_DAEMON_TRAINSET_H

#include <stdbool.h>
#include <stddef.h>

#include "dicom.h"
#include "model.h" /* samda_adapter_label alone: no function of model/ is called here */
#include "status.h"

/** The labels segments map onto: given (an adapter's, a schema file's), or grown from SEGs. */
typedef struct samdad_label_schema {
    samda_adapter_label labels[SAMDA_ADAPTER_MAX_LABELS];
    size_t n;
} samdad_label_schema;

/* samdad_trainset_write flags */
#define SAMDAD_TRAINSET_GROW 1u /* a segment that is no label yet becomes the next label of the schema */

/** Write one pair per slice that the SEG marks: DIR/PREFIX_NNNN.image.npy (float32 H x W, the
 *  volume's values: HU for CT) and DIR/PREFIX_NNNN.mask.npy (uint8 H x W label values).
 *  A segment is a label when samdad_segment_is_label says so (coded type and type modifier, region
 *  and region modifier); otherwise, without SAMDAD_TRAINSET_GROW, when its SegmentLabel equals the label's
 *  name (ignoring case). With SAMDAD_TRAINSET_GROW any other segment becomes a new label (see
 *  samdad_label_from_segment; value n + 1); without it, segments that are no label are ignored.
 *  @param schema INOUT: the labels (grown with SAMDAD_TRAINSET_GROW; unchanged on failure).
 *  @param out_dir IN: existing directory. @param prefix IN: [A-Za-z0-9_-]{1,32}.
 *  @param n_written OUT (may be NULL): pairs written. @param n_matched OUT (may be NULL): segments used.
 *  @return SAMDA_OK; SAMDA_EINVAL (bad prefix; no segment is a label: message lists both; a new
 *          label's codes too long or missing, naming the SEG and segment number; more than
 *          SAMDA_ADAPTER_MAX_LABELS labels); the errors of samda_dicom_volume_load, samda_seg_read
 *          and samda_seg_to_label_volume (a SEG of another series: SAMDA_ENOENT); SAMDA_EIO.
 *  Thread-safety: safe (one schema per thread). */
samda_status samdad_trainset_write(const char *const *series_paths, size_t n, const char *seg_path,
                                   samdad_label_schema *schema, unsigned flags, const char *out_dir,
                                   const char *prefix, size_t *n_written, size_t *n_matched, samda_error *err);

/** Remove a folder of training slices: its entries (files; the folder holds no subfolders), then the
 *  folder itself. Errors are ignored (a scratch folder). Thread-safety: safe. */
void samdad_trainset_remove(const char *dir);

/** The label a ground-truth segment defines (the one rule for schemas from DICOM-SEGs): name =
 *  SegmentLabel lower-cased with every character outside [a-z0-9_.-] made '_' (else "segment_N");
 *  category, type and its modifier, anatomic region and its modifier copied as coded; colour from
 *  RecommendedDisplayCIELabValue, else the palette colour of value; window from the modality of
 *  the segmented series: "CT" level 50 width 400 HU, anything else (MR, ...) the 1st..99th
 *  percentiles of each slice.
 *  @param where IN: what to name in messages (the SEG file). @param value IN: 1..255.
 *  @return SAMDA_OK; SAMDA_EINVAL (no type or category code; a code longer than the label's field:
 *          the message names where, the segment number and the field). Thread-safety: safe. */
samda_status samdad_label_from_segment(const samda_seg_segment_info *si, const char *modality, int value,
                                       const char *where, samda_adapter_label *out, samda_error *err);

/** Is ground-truth segment si label l? Equal coded type (scheme and value) with equal type modifier
 *  (left and right kidney are two labels), anatomic region and region modifier (both "" counts as
 *  equal). The one identity rule of labels across studies. Thread-safety: safe. */
bool samdad_segment_is_label(const samda_seg_segment_info *si, const samda_adapter_label *l);

#endif
