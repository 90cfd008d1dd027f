/* A validator for .safetensors files (the format of samda's decoder adapters), with no model
 * dependency: it reads the 8-byte header length and the JSON header, and checks every tensor's
 * dtype, shape and data offsets against the file, without reading the tensor data.
 *
 * Format (huggingface/safetensors): u64 little-endian N; N bytes of UTF-8 JSON (an object; may be
 * padded with trailing spaces); then the data section. Each member of the header except
 * "__metadata__" is a tensor {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]} with
 * offsets relative to the data section; "__metadata__", when present, maps strings to strings.
 * The data section must be covered exactly by the tensors: no overlap, no hole.
 *
 * Thread-safety: every function is reentrant; nothing is shared. */
#ifndef SAMDA_API_SAFETENSORS_H
#define SAMDA_API_SAFETENSORS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Bounds the validator enforces. */
typedef struct samda_safetensors_params {
    uint64_t max_header_bytes; /* largest JSON header; default 16 MiB */
    size_t max_tensors;        /* most tensors; default 65536 */
    unsigned max_dims;         /* most dimensions of one tensor; default 8 */
    uint64_t max_file_bytes;   /* largest file; default 4 GiB */
} samda_safetensors_params;

/** Fill p with the defaults above. The only correct way to start a samda_safetensors_params. */
void samda_safetensors_params_init(samda_safetensors_params *p);

/** What a valid file holds. */
typedef struct samda_safetensors_info {
    uint64_t file_bytes;   /* size of the file */
    uint64_t header_bytes; /* N */
    uint64_t data_bytes;   /* size of the data section */
    size_t n_tensors;
    json_t *metadata;      /* the "__metadata__" object (string values), or NULL when absent.
                            * Owned: release with samda_safetensors_info_clear */
} samda_safetensors_info;

/** Release info->metadata and zero info. NULL-safe. */
void samda_safetensors_info_clear(samda_safetensors_info *info);

/** Validate the open file fd (read with pread from offset 0; the file offset is not used).
 *  @param fd   IN: readable file descriptor (borrowed).
 *  @param p    IN: bounds, or NULL for the defaults.
 *  @param info OUT: filled on success; zeroed on failure.
 *  @param err  OUT (may be NULL): on failure, one line naming the problem for the client, e.g.
 *              "not a safetensors file: header length 5000000000 is larger than the file (812
 *              bytes)" or "safetensors header: tensor 'w': data_offsets [0, 96] do not match
 *              dtype F32 and shape [4, 4] (64 bytes)".
 *  @return SAMDA_OK; SAMDA_EINVAL the file is not a valid safetensors file (err says why);
 *          SAMDA_ETOOBIG a bound of p is exceeded; SAMDA_EIO the file cannot be read;
 *          SAMDA_ENOMEM. */
samda_status samda_safetensors_check_fd(int fd, const samda_safetensors_params *p, samda_safetensors_info *info,
                                        samda_error *err);

/** As samda_safetensors_check_fd on the file at path (opened read-only, closed again).
 *  @return as samda_safetensors_check_fd, and SAMDA_ENOENT when path does not exist. */
samda_status samda_safetensors_check_file(const char *path, const samda_safetensors_params *p,
                                          samda_safetensors_info *info, samda_error *err);

#ifdef __cplusplus
}
#endif
#endif
