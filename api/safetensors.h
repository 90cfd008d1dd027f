/* A validator for .safetensors files (the format of samda's decoder adapters) as uploaded, with no
 * model dependency: it reads the 8-byte header length and the JSON header of an open file and checks
 * every tensor's dtype, shape and data offsets against the file, without reading the tensor data.
 * The format and its checks are common/safetensors_format.h's; this adds a file size bound, the rule
 * that an adapter holds at least one tensor, and the metadata as a jansson object.
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
 *              "not a safetensors file: header length 5000000000 runs past the end of the
 *              file (larger than the file of 812 bytes; truncated?)" or "safetensors header:
 *              tensor 'w': data_offsets [0, 96] do not match dtype F32 and shape [4, 4] (64
 *              bytes): ...".
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
