/* 3-D clean-up of binary segmentation masks (daemon/postproc.c): connected components with
 * 6-connectivity over a slice-major volume, removal of small ones, optional largest only. */
#ifndef SAMDA_DAEMON_POSTPROC_H
#define SAMDA_DAEMON_POSTPROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

typedef struct samdad_mask_stats {
    size_t components;       /* components found before clean-up */
    size_t removed;          /* components removed (small, or not the largest) */
    size_t voxels_before;    /* foreground voxels before */
    size_t voxels_after;     /* and after */
    size_t largest;          /* voxels of the largest component */
} samdad_mask_stats;

/** Clean a mask in place: components (6-connected) smaller than min_voxels are cleared; with
 *  largest_only, every component but the largest is cleared too. Non-zero input counts as inside;
 *  the output is 0/1.
 *  @param mask IN/OUT: n_slices * rows * cols bytes, voxel (s, r, c) at (s * rows + r) * cols + c.
 *  @param stats OUT: may be NULL.
 *  @return SAMDA_OK; SAMDA_EINVAL (NULL mask, a zero or overflowing size); SAMDA_ENOMEM (work
 *          buffers of 4 bytes per voxel). Thread-safety: safe (no shared state). */
samda_status samdad_mask_clean(uint8_t *mask, size_t n_slices, size_t rows, size_t cols, size_t min_voxels,
                               bool largest_only, samdad_mask_stats *stats, samda_error *err);

#endif
