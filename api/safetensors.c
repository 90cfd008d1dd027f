/* .safetensors validation for adapter uploads: reads the header of an open file and hands it to
 * common/safetensors_format.c, which holds every rule of the format; adds what an upload needs on
 * top (a file size bound, at least one tensor, the metadata as JSON). */
#include "safetensors.h"

#include "safetensors_format.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void samda_safetensors_params_init(samda_safetensors_params *p)
{
    memset(p, 0, sizeof *p);
    p->max_header_bytes = 16u * 1024 * 1024;
    p->max_tensors = 65536;
    p->max_dims = 8;
    p->max_file_bytes = (uint64_t)4 << 30;
}

void samda_safetensors_info_clear(samda_safetensors_info *info)
{
    if (!info) return;
    json_decref(info->metadata);
    memset(info, 0, sizeof *info);
}

static bool read_all(int fd, void *buf, size_t len, uint64_t off)
{
    char *p = buf;
    while (len) {
        ssize_t n = pread(fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return true;
}

/* The "__metadata__" members as a JSON object for the HTTP layer. */
static samda_status metadata_json(const samda_safetensors_header *h, json_t **out, samda_error *err)
{
    json_t *m = json_object();
    for (size_t i = 0; m && i < h->n_metadata; i++)
        if (json_object_set_new(m, h->metadata[i].key, json_string(h->metadata[i].value)) != 0) {
            json_decref(m);
            m = NULL;
        }
    if (!m) return samda_fail(err, SAMDA_ENOMEM, "checking the safetensors header: out of memory");
    *out = m;
    return SAMDA_OK;
}

samda_status samda_safetensors_check_fd(int fd, const samda_safetensors_params *p_in, samda_safetensors_info *info,
                                        samda_error *err)
{
    samda_safetensors_params defaults;
    const samda_safetensors_params *p = p_in;
    if (!p) {
        samda_safetensors_params_init(&defaults);
        p = &defaults;
    }
    memset(info, 0, sizeof *info);
    samda_safetensors_limits lim;
    samda_safetensors_limits_init(&lim);
    lim.max_header_bytes = p->max_header_bytes;
    lim.max_tensors = p->max_tensors;
    lim.max_dims = p->max_dims;
    struct stat sb;
    if (fstat(fd, &sb) != 0) return samda_fail(err, SAMDA_EIO, "reading the safetensors file: %s", strerror(errno));
    uint64_t fsize = (uint64_t)sb.st_size;
    if (fsize > p->max_file_bytes)
        return samda_fail(err, SAMDA_ETOOBIG, "safetensors file of %llu bytes is larger than %llu bytes",
                          (unsigned long long)fsize, (unsigned long long)p->max_file_bytes);
    unsigned char lenb[8];
    size_t nl = fsize < 8 ? (size_t)fsize : 8;
    if (!read_all(fd, lenb, nl, 0)) return samda_fail(err, SAMDA_EIO, "reading the safetensors header length: short read");
    uint64_t n;
    samda_status st = samda_safetensors_header_length(lenb, nl, fsize, &lim, &n, err);
    if (st != SAMDA_OK) return st;
    char *buf = malloc((size_t)n);
    if (!buf) return samda_fail(err, SAMDA_ENOMEM, "reading the safetensors header: out of memory");
    if (!read_all(fd, buf, (size_t)n, 8)) {
        free(buf);
        return samda_fail(err, SAMDA_EIO, "reading the safetensors header: short read");
    }
    samda_safetensors_header h;
    st = samda_safetensors_header_parse(buf, n, fsize - 8 - n, &lim, &h, err);
    free(buf);
    if (st != SAMDA_OK) return st;
    /* A valid file may hold no tensor; an adapter cannot. */
    if (h.n_tensors == 0)
        st = samda_fail(err, SAMDA_EINVAL, "safetensors header lists no tensor");
    else if (h.has_metadata)
        st = metadata_json(&h, &info->metadata, err);
    if (st == SAMDA_OK) {
        info->file_bytes = fsize;
        info->header_bytes = n;
        info->data_bytes = h.data_bytes;
        info->n_tensors = h.n_tensors;
    }
    samda_safetensors_header_free(&h);
    return st;
}

samda_status samda_safetensors_check_file(const char *path, const samda_safetensors_params *p, samda_safetensors_info *info,
                                          samda_error *err)
{
    memset(info, 0, sizeof *info);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return samda_fail(err, errno == ENOENT ? SAMDA_ENOENT : SAMDA_EIO, "opening the safetensors file: %s", strerror(errno));
    samda_status st = samda_safetensors_check_fd(fd, p, info, err);
    close(fd);
    return st;
}
