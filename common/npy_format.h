/* The NumPy .npy format (numpy.lib.format, NEP 1), once for every module: parse a header (versions
 * 1.0, 2.0, 3.0), bring the array's bytes into native byte order and C order, convert elements to
 * float, build a version 1.0 header and write a whole file crash-safely (through atomic_file.h).
 * model/npy.cpp is the C++ face over it; daemon/image_io.c reads CLI images and phantom/npy_write.c
 * writes arrays with it. Plain C, libc only; C++ callers include it as is.
 *
 * The header is a Python dict literal. It is read by a small tokenizer that accepts only quoted
 * strings, True/False and tuples of non-negative integers, the three things numpy writes there
 * ('descr', 'fortran_order', 'shape'); nothing is evaluated. Only plain numeric dtypes are read
 * (f2 f4 f8, i1 i2 i4 i8, u1 u2 u4 u8, b1; '<', '>', '|' or '=' byte order; C or Fortran order):
 * structured, string, complex and object arrays are refused. Sizes are checked for overflow before
 * anything is allocated. Failure messages name the field ("header: 'shape': expected a tuple of
 * integers", "data: shape (2,) of <f4 needs 8 bytes but 4 follow the header (truncated?)") and no
 * file: callers prefix the path. Not handled: .npz archives, pickled object arrays, writing Fortran
 * order or big-endian data.
 *
 * Thread-safety: no shared state; every function may be called from several threads at once. */
#ifndef SAMDA_NPY_FORMAT_H
#define SAMDA_NPY_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SAMDA_NPY_MAX_NDIM 64                   /* most dimensions a header may give */
#define SAMDA_NPY_MAX_HEADER_BYTES (1u << 20)   /* longest header accepted (numpy writes < 2 KiB) */
#define SAMDA_NPY_HEADER_BUILD_CAP 2048         /* enough for any header samda_npy_header_build makes */

/* Element types, in model/npy.h's DType order (model/npy.cpp casts between them). */
typedef enum samda_npy_dtype {
    SAMDA_NPY_F16, SAMDA_NPY_F32, SAMDA_NPY_F64,
    SAMDA_NPY_I8, SAMDA_NPY_I16, SAMDA_NPY_I32, SAMDA_NPY_I64,
    SAMDA_NPY_U8, SAMDA_NPY_U16, SAMDA_NPY_U32, SAMDA_NPY_U64,
    SAMDA_NPY_BOOL
} samda_npy_dtype;

/* A parsed header. */
typedef struct samda_npy_header {
    unsigned major, minor;             /* format version */
    samda_npy_dtype dtype;
    bool swap;                         /* the file's elements are in the other byte order than the host's */
    bool fortran_order;                /* the file's elements are in Fortran (first index fastest) order */
    int ndim;                          /* 0 = a scalar (one element) */
    uint64_t shape[SAMDA_NPY_MAX_NDIM];
    uint64_t numel;                    /* product of shape; 1 when ndim is 0 */
    uint64_t data_bytes;               /* numel * element size; at most INT64_MAX */
    size_t data_offset;                /* the array starts this many bytes into the file */
} samda_npy_header;

/** Bytes per element of dt (1 for an out-of-range value). */
size_t samda_npy_dtype_size(samda_npy_dtype dt);
/** numpy's little-endian descr of dt ("<f4", "|u1", "|b1"); "?" for an out-of-range value.
 *  Ownership: static string. */
const char *samda_npy_dtype_descr(samda_npy_dtype dt);
/** The dtype whose samda_npy_dtype_descr is exactly descr (so "<i2" but not ">i2" or "i2").
 *  Returns false, *dt untouched, when there is none or descr is NULL. */
bool samda_npy_dtype_from_descr(const char *descr, samda_npy_dtype *dt);

/** Where the array starts: reads the magic, version and header length at the start of a file of
 *  file_bytes bytes, of which buf holds the first n (n >= 12, or the whole file when shorter).
 *  @param header_bytes OUT: the data offset (magic through the dict's closing '\n').
 *  @return SAMDA_OK; SAMDA_EINVAL: no magic, truncated length field, unknown version, a length past
 *          the end of the file or over SAMDA_NPY_MAX_HEADER_BYTES (err names which). */
samda_status samda_npy_header_size(const void *buf, size_t n, uint64_t file_bytes, size_t *header_bytes,
                                   samda_error *err);

/** Parse the header at the start of a file of file_bytes bytes, of which buf holds the first n
 *  (at least the whole header; the array bytes are not looked at).
 *  @param h OUT: the header; unspecified on failure.
 *  @return SAMDA_OK; SAMDA_EINVAL naming the field (magic, version, length, a dict token, 'descr',
 *          'fortran_order', 'shape', a missing, repeated or unexpected key, a size that overflows). */
samda_status samda_npy_header_parse(const void *buf, size_t n, uint64_t file_bytes, samda_npy_header *h,
                                    samda_error *err);

/** Check that exactly h->data_bytes follow the header when avail bytes do.
 *  @return SAMDA_OK; SAMDA_EINVAL ("data: ... needs N bytes but M follow the header (truncated?)",
 *          "data: K unexpected bytes after the array"). */
samda_status samda_npy_data_check(const samda_npy_header *h, uint64_t avail, samda_error *err);

/** Copy the array's bytes as stored (src, h->data_bytes) into dst (h->data_bytes) in native byte
 *  order and C (row-major) order. src and dst must not overlap. Pure function. */
void samda_npy_data_to_native(const samda_npy_header *h, const void *src, void *dst);

/** Convert n native-order elements of dt at src to float into dst: float16 decoded, 64-bit integers
 *  rounded, bool as 0/1. Pure function. */
void samda_npy_to_float(samda_npy_dtype dt, const void *src, size_t n, float *dst);

/** IEEE half to float, and float to half rounding to nearest even (overflow gives infinity). */
float samda_npy_half_to_float(uint16_t h);
uint16_t samda_npy_float_to_half(float f);

/** Read and check a whole .npy file, returning its array in native byte order and C order.
 *  @param path           IN: the file (a regular file).
 *  @param max_data_bytes IN: larger arrays are refused before anything is read (UINT64_MAX: no bound).
 *  @param h              OUT: its header (shape, dtype; swap and fortran_order as stored).
 *  @param data           OUT: h->data_bytes bytes (at least one allocated byte); NULL on failure.
 *  @return SAMDA_OK; SAMDA_ENOENT: no such file; SAMDA_EIO: cannot open or read, not a regular file;
 *          SAMDA_EINVAL: not a valid .npy file (the message names the field); SAMDA_ETOOBIG: over
 *          max_data_bytes; SAMDA_ENOMEM. Every message starts with path.
 *  Ownership: caller owns *data, release with free(). */
samda_status samda_npy_load(const char *path, uint64_t max_data_bytes, samda_npy_header *h, void **data,
                            samda_error *err);

/** Build the version 1.0 header of a little-endian, C-order array of dt with ndim dimensions (numpy's
 *  own layout: "{'descr': '<i2', 'fortran_order': False, 'shape': (3, 5), }", space-padded, '\n',
 *  so that the array starts at a multiple of 64 bytes).
 *  @param buf OUT: cap bytes; SAMDA_NPY_HEADER_BUILD_CAP is always enough.   @param len OUT: bytes used.
 *  @return SAMDA_OK; SAMDA_EINVAL: dt or ndim (0..SAMDA_NPY_MAX_NDIM) out of range, shape NULL with
 *          ndim > 0, numel * element size over INT64_MAX or SIZE_MAX ("shape overflows"), cap too small. */
samda_status samda_npy_header_build(samda_npy_dtype dt, int ndim, const uint64_t *shape, char *buf, size_t cap,
                                    size_t *len, samda_error *err);

/** Write an array to path as .npy v1.0 through samda_afile (temporary file, fsync, rename, directory
 *  fsync); on a big-endian host the elements are swapped on the way out, in bounded chunks.
 *  @param data IN: prod(shape) native elements in C order; may be NULL when the array is empty.
 *  @return SAMDA_OK; SAMDA_EINVAL (as samda_npy_header_build; NULL path or data; nothing written);
 *          SAMDA_ENOENT: the directory is missing; SAMDA_ENOSPC; SAMDA_EIO. After a failure the
 *          temporary file is gone and path untouched; a retry is safe. Messages name path.
 *  Ownership: nothing is kept; data is only read during the call. */
samda_status samda_npy_save(const char *path, samda_npy_dtype dt, int ndim, const uint64_t *shape,
                            const void *data, samda_error *err);

#ifdef __cplusplus
}
#endif
#endif
