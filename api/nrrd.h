/* NRRD 0004 (teem's "nearly raw raster data") for the MONAI Label compatible routes: a 3-D volume
 * with its geometry written as one buffer (header + raw data), and a 3-D volume read back from one
 * buffer (raw or gzip encoding), the format 3D Slicer and OHIF exchange labels in, and an image
 * volume read back the same way (3D Slicer's MONAI Label session upload).
 *
 * Geometry is in the DICOM patient coordinate system: "space: left-posterior-superior", "space
 * directions" the step in mm of one voxel along each axis, "space origin" the centre of voxel 0.
 * Axis 0 (i) varies fastest in the data.
 *
 * Thread-safety: every function is reentrant; nothing is shared. */
#ifndef SAMDA_API_NRRD_H
#define SAMDA_API_NRRD_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum samda_nrrd_type {
    SAMDA_NRRD_U8 = 0, /* "uint8" (unsigned char) */
    SAMDA_NRRD_I16,    /* "int16" (short), little-endian */
    SAMDA_NRRD_U16,    /* "uint16" (unsigned short), little-endian */
    SAMDA_NRRD_F32     /* "float", little-endian */
} samda_nrrd_type;

/** A 3-D volume and its geometry. */
typedef struct samda_nrrd_volume {
    samda_nrrd_type type;
    size_t sizes[3];          /* voxels along i, j, k (each >= 1) */
    double directions[3][3];  /* directions[a]: LPS vector (mm) of one step along axis a */
    double origin[3];         /* LPS position (mm) of voxel (0, 0, 0) */
    void *data;               /* sizes[0]*sizes[1]*sizes[2] values of type, i fastest */
} samda_nrrd_volume;

/** Bytes of one value of type t. */
size_t samda_nrrd_type_size(samda_nrrd_type t);

/** Write v as an attached-header NRRD ("encoding: raw", little-endian).
 *  OUT out/len: malloc'd buffer, caller frees. SAMDA_EINVAL: a size is 0 or the volume is larger than
 *  2^40 values; SAMDA_ENOMEM. */
samda_status samda_nrrd_write(const samda_nrrd_volume *v, void **out, size_t *len, samda_error *err);

/** Read a 3-D attached-header NRRD (encoding raw or gzip; types uint8/int8/int16/uint16/int32/uint32/
 *  float; endian little, or big for raw). The voxels are converted to uint8: a value outside 0..255
 *  is refused (a label map). Missing geometry fields are left as the identity and 0.
 *  @param max_voxels refuse volumes larger than this.
 *  OUT v: type SAMDA_NRRD_U8, v->data malloc'd (free with samda_nrrd_volume_clear).
 *  SAMDA_EINVAL: not NRRD, not 3-D, a malformed or unsupported field (message names it), data
 *  shorter than the sizes; SAMDA_ETOOBIG; SAMDA_ENOMEM. */
samda_status samda_nrrd_read_labels(const void *buf, size_t len, size_t max_voxels, samda_nrrd_volume *v,
                                    samda_error *err);

/** Read a 3-D attached-header image volume (encoding raw or gzip; the types of
 *  samda_nrrd_read_labels, int16/uint16/int32/float among them; space left-posterior-superior or
 *  right-anterior-superior, turned into LPS). "space directions" is required (an image without its
 *  geometry cannot be placed in a patient). @param max_voxels refuse volumes larger than this.
 *  OUT v: type SAMDA_NRRD_F32 (every value converted to float), v->data malloc'd (free with
 *  samda_nrrd_volume_clear). SAMDA_EINVAL: as samda_nrrd_read_labels, a value not finite, no space
 *  directions; SAMDA_ETOOBIG; SAMDA_ENOMEM. */
samda_status samda_nrrd_read_image(const void *buf, size_t len, size_t max_voxels, samda_nrrd_volume *v, samda_error *err);

/** Free v->data and zero v. NULL-safe. */
void samda_nrrd_volume_clear(samda_nrrd_volume *v);

#ifdef __cplusplus
}
#endif
#endif
