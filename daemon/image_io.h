/* 2-D images for the samda CLI and the result previews: read .npy (numeric, HxW or HxWx3), .png (8-bit grey/RGB) and DICOM
 * (one instance, rescaled and windowed), write masks as .png or .npy, encode PNG previews. Inputs are untrusted: sizes
 * are bounded (16384 x 16384) and every header field is checked.
 * Thread-safety: every function is reentrant. */
#ifndef SAMDA_DAEMON_IMAGE_IO_H
#define SAMDA_DAEMON_IMAGE_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

typedef struct samdad_image {
    int height, width, channels; /* channels 1 or 3 */
    float *pixels;               /* H x W x C, values 0..255 after windowing; caller frees with free() */
} samdad_image;

/** Read an image by extension (.npy, .png, .dcm). Values are mapped to 0..255: .png as is; .npy
 *  uint8 as is, other types min-max scaled; DICOM through its window (WindowCenter/Width) if present,
 *  else min-max. window_center/width override when width > 0.
 *  @return SAMDA_OK; SAMDA_ENOENT; SAMDA_EINVAL (unsupported format, named); SAMDA_ETOOBIG; SAMDA_EIO. */
samda_status samdad_image_read(const char *path, double window_center, double window_width, samdad_image *out,
                               samda_error *err);

/** Encode 8-bit grey (rgb false) or RGB pixels, row-major w x h, as PNG into *out (malloc'd; the
 *  caller frees it). Returns SAMDA_OK, SAMDA_ENOMEM or SAMDA_EINTERNAL (libpng's message). */
samda_status samdad_png_encode(const uint8_t *px, unsigned w, unsigned h, bool rgb, void **out, size_t *len,
                               samda_error *err);

/** Write a 0/1 mask as an 8-bit PNG (0/255) or a .npy (uint8 0/1), by extension; crash-safe. */
samda_status samdad_mask_write(const char *path, const uint8_t *mask, int height, int width, samda_error *err);

#endif
