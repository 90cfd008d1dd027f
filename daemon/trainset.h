/* Training data from the PACS (daemon/trainset.c): a source series plus a DICOM-SEG of it (a
 * radiologist's ground truth, or a corrected result sent back) become the NAME.image.npy +
 * NAME.mask.npy pairs that supervised adaptation and evaluation read. */
#ifndef SAMDA_DAEMON_TRAINSET_H
#define SAMDA_DAEMON_TRAINSET_H

#include <stddef.h>

#include "status.h"

/** Write one pair per slice that the SEG marks: DIR/PREFIX_NNNN.image.npy (float32 H x W, the
 *  volume's values: HU for CT) and DIR/PREFIX_NNNN.mask.npy (uint8 H x W label values).
 *  A segment maps to label_values[i] when its SegmentLabel equals label_names[i] (ignoring case),
 *  else, with n_labels = 0, to its segment number; segments that map to no label are ignored.
 *  @param series_paths IN: the source series' files. @param seg_path IN: the DICOM-SEG.
 *  @param out_dir IN: existing directory. @param prefix IN: [A-Za-z0-9_-]{1,32}.
 *  @param n_written OUT (may be NULL): pairs written. @param n_matched OUT (may be NULL): segments used.
 *  @return SAMDA_OK; SAMDA_EINVAL (bad prefix; no segment matches a label: message lists both);
 *          the errors of samda_dicom_volume_load, samda_seg_read and samda_seg_to_label_volume
 *          (a SEG of another series: SAMDA_ENOENT); SAMDA_EIO. Thread-safety: safe. */
samda_status samdad_trainset_write(const char *const *series_paths, size_t n, const char *seg_path,
                                   const char *const *label_names, const int *label_values, size_t n_labels,
                                   const char *out_dir, const char *prefix, size_t *n_written, size_t *n_matched,
                                   samda_error *err);

#endif
