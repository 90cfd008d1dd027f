/* The safetensors format (huggingface/safetensors), once for every module: read the 8-byte header
 * length and the JSON header, check every tensor against the data section, and build the header of
 * a new file. model/safetensors.cpp (adapter files) and api/safetensors.c (adapter uploads) are thin
 * faces over it. Plain C, libc only (the JSON reader is the small one below, not a library); C++
 * callers include it as is.
 *
 * Layout: u64 little-endian N; N bytes of UTF-8 JSON starting with '{' (an object, possibly padded
 * with trailing spaces); then the data section. Each member of the object except "__metadata__" is
 * a tensor {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]} with offsets relative to
 * the data section; "__metadata__", when present, maps strings to strings. The parser refuses, with
 * a message naming the field: a file too short for a header, a header length past the end of the
 * file or over the limit, text that is not JSON (syntax, invalid UTF-8, "\u0000", duplicate keys),
 * a non-object header or metadata, a non-string metadata value, an empty tensor name, a member other
 * than the three, an unknown dtype, a shape that is not non-negative integers or is impossibly large
 * (over 2^40 elements), data_offsets that are not [begin, end], reversed, outside the data section or
 * disagreeing with dtype x shape, overlapping tensors, and data bytes that no tensor covers. It reads
 * neither the tensor bytes nor anything after the header, so it can check a file it has not loaded.
 *
 * Messages start with "not a safetensors file: " (length, JSON) or "safetensors header: " (a tensor
 * or the metadata) and quote names as 'name'; callers prefix the file name.
 *
 * Thread-safety: no shared state; every function may be called from several threads at once. */
#ifndef SAMDA_SAFETENSORS_FORMAT_H
#define SAMDA_SAFETENSORS_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SAMDA_SAFETENSORS_MAX_DIMS 64 /* hard bound on samda_safetensors_limits.max_dims */

/* Element types of the format. */
typedef enum samda_safetensors_dtype {
    SAMDA_SAFETENSORS_BOOL, SAMDA_SAFETENSORS_U8, SAMDA_SAFETENSORS_I8, SAMDA_SAFETENSORS_F8_E5M2,
    SAMDA_SAFETENSORS_F8_E4M3, SAMDA_SAFETENSORS_I16, SAMDA_SAFETENSORS_U16, SAMDA_SAFETENSORS_F16,
    SAMDA_SAFETENSORS_BF16, SAMDA_SAFETENSORS_I32, SAMDA_SAFETENSORS_U32, SAMDA_SAFETENSORS_F32,
    SAMDA_SAFETENSORS_I64, SAMDA_SAFETENSORS_U64, SAMDA_SAFETENSORS_F64
} samda_safetensors_dtype;

/** Bytes per element of dt (0 for an out-of-range value). */
size_t samda_safetensors_dtype_size(samda_safetensors_dtype dt);
/** The format's name of dt ("F32"); "?" for an out-of-range value. Ownership: static string. */
const char *samda_safetensors_dtype_name(samda_safetensors_dtype dt);
/** The dtype named name ("BF16"). Returns false, *dt untouched, for an unknown or NULL name. */
bool samda_safetensors_dtype_from_name(const char *name, samda_safetensors_dtype *dt);

/* Bounds of the parser; exceeding one gives SAMDA_ETOOBIG. */
typedef struct samda_safetensors_limits {
    uint64_t max_header_bytes; /* longest JSON header (N); default 64 MiB */
    size_t max_tensors;        /* most tensors; default SIZE_MAX (the header length bounds them) */
    unsigned max_dims;         /* most dimensions of one tensor, <= SAMDA_SAFETENSORS_MAX_DIMS; default 16 */
} samda_safetensors_limits;

/** Fill l with the defaults above. The only correct way to start a samda_safetensors_limits. */
void samda_safetensors_limits_init(samda_safetensors_limits *l);

/* One tensor of a parsed header. */
typedef struct samda_safetensors_tensor {
    const char *name;        /* NUL-terminated UTF-8 */
    samda_safetensors_dtype dtype;
    unsigned ndim;           /* 0 = a scalar */
    const uint64_t *shape;   /* ndim extents */
    uint64_t begin, end;     /* byte range within the data section */
} samda_safetensors_tensor;

/* One "__metadata__" member. */
typedef struct samda_safetensors_entry {
    const char *key, *value; /* NUL-terminated UTF-8 */
} samda_safetensors_entry;

/* A parsed header. Every pointer in it is owned by it: valid until samda_safetensors_header_free. */
typedef struct samda_safetensors_header {
    uint64_t header_bytes;              /* N */
    uint64_t data_bytes;                /* size of the data section */
    bool has_metadata;                  /* "__metadata__" was present (perhaps empty) */
    size_t n_metadata;
    samda_safetensors_entry *metadata;  /* in file order */
    size_t n_tensors;
    samda_safetensors_tensor *tensors;  /* in data order: by begin, then end, then name */
    void *storage_;                     /* private */
} samda_safetensors_header;

/** Read the header length N from the first 8 bytes of a file of file_bytes bytes (buf holds the
 *  first n of them) and check it against the file and lim (NULL: defaults).
 *  @return SAMDA_OK; SAMDA_EINVAL: file too short for a header (under 10 bytes), N past the end of
 *          the file, N < 2; SAMDA_ETOOBIG: N over lim->max_header_bytes. */
samda_status samda_safetensors_header_length(const void *buf, size_t n, uint64_t file_bytes,
                                             const samda_safetensors_limits *lim, uint64_t *header_bytes,
                                             samda_error *err);

/** Parse and check the JSON header text (the file's bytes 8 .. 8+header_bytes) of a file whose
 *  data section has data_bytes bytes.
 *  @param h OUT: the header; zeroed on failure (freeing it is then harmless).
 *  @return SAMDA_OK; SAMDA_EINVAL: not a valid header (err names the field and tensor);
 *          SAMDA_ETOOBIG: a bound of lim (NULL: defaults) is exceeded; SAMDA_ENOMEM.
 *  Ownership: text is only read during the call; release h with samda_safetensors_header_free. */
samda_status samda_safetensors_header_parse(const char *text, uint64_t header_bytes, uint64_t data_bytes,
                                            const samda_safetensors_limits *lim, samda_safetensors_header *h,
                                            samda_error *err);

/** samda_safetensors_header_length and _header_parse over a whole file image in memory (file may be
 *  NULL when n is 0). The data section is file + 8 + h->header_bytes, h->data_bytes long.
 *  @return as those two. Ownership: as samda_safetensors_header_parse. */
samda_status samda_safetensors_parse(const void *file, size_t n, const samda_safetensors_limits *lim,
                                     samda_safetensors_header *h, samda_error *err);

/** Release what h owns and zero it. Harmless on NULL or on a zeroed header. */
void samda_safetensors_header_free(samda_safetensors_header *h);

/* One tensor to write (samda_safetensors_header_build). */
typedef struct samda_safetensors_out {
    const char *name;          /* non-empty UTF-8, not starting with "__" */
    samda_safetensors_dtype dtype;
    unsigned ndim;             /* <= SAMDA_SAFETENSORS_MAX_DIMS */
    const uint64_t *shape;     /* ndim extents */
    uint64_t nbytes;           /* must equal prod(shape) * dtype size */
} samda_safetensors_out;

/** Build the start of a file: the 8-byte length and the JSON header ("__metadata__" first when
 *  n_metadata > 0, in the given order; then the tensors, packed in the given order from offset 0),
 *  compact and padded with spaces to a multiple of 8 bytes. The caller then writes each tensor's
 *  nbytes in the same order.
 *  @param out OUT: the bytes, *out_len of them.
 *  @return SAMDA_OK; SAMDA_EINVAL (nothing built): an empty name, a name starting with "__", a
 *          duplicate name or metadata key, text that is not UTF-8, a dtype or ndim out of range,
 *          nbytes disagreeing with dtype x shape ("tensor 'x' has N bytes for its dtype and shape");
 *          SAMDA_ENOMEM.
 *  Ownership: caller owns *out, release with free(); the arguments are only read during the call. */
samda_status samda_safetensors_header_build(const samda_safetensors_entry *metadata, size_t n_metadata,
                                            const samda_safetensors_out *tensors, size_t n_tensors, char **out,
                                            size_t *out_len, samda_error *err);

#ifdef __cplusplus
}
#endif
#endif
