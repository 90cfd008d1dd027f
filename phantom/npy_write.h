/* samda npy_write: write NumPy .npy (format version 1.0) files, crash-safely, naming the dtype
 * as numpy does ("<i2").
 *
 * Used by `samda phantom` and by anything that hands arrays to Python tooling (numpy.load). A thin
 * face of common/npy_format.h (samda_npy_save), which holds the format: the header layout
 * ("{'descr': '<i2', 'fortran_order': False, 'shape': (H, W), }" padded with spaces and ended by
 * '\n' so that the data starts at a multiple of 64 bytes) and the crash-safe write. Writes only
 * C-order little-endian arrays; it does not read .npy, write .npz, Fortran order or object arrays.
 *
 * Thread-safety: thread-safe (no shared state); two writers of the same path race, the last
 * rename wins, and neither leaves a partial file at path. */
#ifndef SAMDA_NPY_WRITE_H
#define SAMDA_NPY_WRITE_H

#include <stddef.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Largest ndim accepted by samda_npy_write. */
#define SAMDA_NPY_MAX_DIMS 8

/** Write an array to path as .npy v1.0: to a temporary file in the same directory, fsync, rename
 *  over path, fsync the directory.
 *  @param path  IN: destination; its directory must exist.
 *  @param dtype IN: a little-endian descr: "<i2" (int16), "|u1" (uint8), "<f4" (float32), "<u2",
 *                   "<i4", "<f8", or any other of samda_npy_dtype_descr ("<f2", "|i1", "<i8",
 *                   "<u4", "<u8", "|b1"). data holds native values; on a big-endian host they are
 *                   swapped on the way out.
 *  @param ndim  IN: 0..SAMDA_NPY_MAX_DIMS (0 = a scalar, one element).
 *  @param shape IN: ndim extents; 0 is allowed (empty array, data may then be NULL).
 *  @param data  IN: prod(shape) elements in C order.
 *  @param err   OUT: reason on failure; may be NULL.
 *  @return SAMDA_OK; SAMDA_EINVAL: NULL path/dtype/shape (ndim > 0)/data (non-empty), unknown
 *          dtype, ndim out of range, or a size that overflows; nothing written.
 *          SAMDA_ENOENT: path's directory is missing; SAMDA_ENOSPC: the file system is full;
 *          SAMDA_EIO: any other file error (the message has
 *          the operation and strerror). After either, the temporary file is removed and path is
 *          untouched (its old content, if any, stays); a retry is safe.
 *  Ownership: nothing is kept; data is only read during the call.
 *  Thread-safety: thread-safe. */
samda_status samda_npy_write(const char *path, const char *dtype, int ndim, const size_t *shape,
                             const void *data, samda_error *err);

#ifdef __cplusplus
}
#endif
#endif
