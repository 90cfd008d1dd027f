/* .safetensors validation: header length, JSON header, tensors against the data section. */
#include "safetensors.h"

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

static const struct {
    const char *name;
    unsigned size;
} dtypes[] = {
    {"BOOL", 1}, {"U8", 1}, {"I8", 1}, {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"I16", 2}, {"U16", 2}, {"F16", 2},
    {"BF16", 2}, {"I32", 4}, {"U32", 4}, {"F32", 4}, {"I64", 8}, {"U64", 8}, {"F64", 8},
};

static unsigned dtype_size(const char *name)
{
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (strcmp(dtypes[i].name, name) == 0) return dtypes[i].size;
    return 0;
}

typedef struct span {
    uint64_t begin, end;
    const char *name;
} span;

static int span_cmp(const void *a, const void *b)
{
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
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

/* A JSON integer usable as a size or offset. */
static bool json_u64(const json_t *v, uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0) return false;
    *out = (uint64_t)json_integer_value(v);
    return true;
}

/* Check one tensor entry; on success fill s. */
static samda_status check_tensor(const char *name, const json_t *t, const samda_safetensors_params *p,
                                 uint64_t data_bytes, span *s, samda_error *err)
{
    if (!*name) return samda_fail(err, SAMDA_EINVAL, "safetensors header: a tensor has an empty name");
    if (!json_is_object(t))
        return samda_fail(err, SAMDA_EINVAL, "safetensors header: tensor '%.64s' is not an object", name);
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)t, key, v) {
        if (strcmp(key, "dtype") && strcmp(key, "shape") && strcmp(key, "data_offsets"))
            return samda_fail(err, SAMDA_EINVAL, "safetensors header: tensor '%.64s' has unknown member '%.32s'", name, key);
    }
    const char *dt = json_string_value(json_object_get(t, "dtype"));
    if (!dt) return samda_fail(err, SAMDA_EINVAL, "safetensors header: tensor '%.64s' has no dtype string", name);
    unsigned esize = dtype_size(dt);
    if (!esize) return samda_fail(err, SAMDA_EINVAL, "safetensors header: tensor '%.64s' has unknown dtype '%.16s'", name, dt);
    json_t *shape = json_object_get(t, "shape");
    if (!json_is_array(shape))
        return samda_fail(err, SAMDA_EINVAL, "safetensors header: tensor '%.64s' has no shape array", name);
    if (json_array_size(shape) > p->max_dims)
        return samda_fail(err, SAMDA_ETOOBIG, "safetensors header: tensor '%.64s' has %zu dimensions (at most %u)", name,
                          json_array_size(shape), p->max_dims);
    uint64_t count = 1;
    char dims[96] = "";
    size_t dl = 0;
    size_t i;
    json_t *d;
    json_array_foreach(shape, i, d) {
        uint64_t n;
        if (!json_u64(d, &n))
            return samda_fail(err, SAMDA_EINVAL, "safetensors header: tensor '%.64s': shape must hold non-negative integers", name);
        if (n && count > UINT64_MAX / n)
            return samda_fail(err, SAMDA_EINVAL, "safetensors header: tensor '%.64s': shape overflows", name);
        count *= n;
        if (dl < sizeof dims)
            dl += (size_t)snprintf(dims + dl, sizeof dims - dl, "%s%llu", i ? ", " : "", (unsigned long long)n);
    }
    if (count > UINT64_MAX / esize)
        return samda_fail(err, SAMDA_EINVAL, "safetensors header: tensor '%.64s': shape overflows", name);
    uint64_t bytes = count * esize;
    json_t *off = json_object_get(t, "data_offsets");
    uint64_t b, e;
    if (!json_is_array(off) || json_array_size(off) != 2 || !json_u64(json_array_get(off, 0), &b) ||
        !json_u64(json_array_get(off, 1), &e))
        return samda_fail(err, SAMDA_EINVAL, "safetensors header: tensor '%.64s': data_offsets must be [begin, end]", name);
    if (b > e || e > data_bytes)
        return samda_fail(err, SAMDA_EINVAL,
                          "safetensors header: tensor '%.64s': data_offsets [%llu, %llu] outside the data section (%llu bytes)",
                          name, (unsigned long long)b, (unsigned long long)e, (unsigned long long)data_bytes);
    if (e - b != bytes)
        return samda_fail(err, SAMDA_EINVAL,
                          "safetensors header: tensor '%.64s': data_offsets [%llu, %llu] do not match dtype %s and shape [%s] (%llu bytes)",
                          name, (unsigned long long)b, (unsigned long long)e, dt, dims, (unsigned long long)bytes);
    s->begin = b;
    s->end = e;
    s->name = name;
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
    struct stat sb;
    if (fstat(fd, &sb) != 0) return samda_fail(err, SAMDA_EIO, "reading the safetensors file: %s", strerror(errno));
    uint64_t fsize = (uint64_t)sb.st_size;
    if (fsize > p->max_file_bytes)
        return samda_fail(err, SAMDA_ETOOBIG, "safetensors file of %llu bytes is larger than %llu bytes",
                          (unsigned long long)fsize, (unsigned long long)p->max_file_bytes);
    if (fsize < 10)
        return samda_fail(err, SAMDA_EINVAL, "not a safetensors file: %llu bytes, too short for a header",
                          (unsigned long long)fsize);
    unsigned char lenb[8];
    if (!read_all(fd, lenb, 8, 0)) return samda_fail(err, SAMDA_EIO, "reading the safetensors header length: short read");
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | lenb[i];
    if (n > fsize - 8)
        return samda_fail(err, SAMDA_EINVAL, "not a safetensors file: header length %llu is larger than the file (%llu bytes)",
                          (unsigned long long)n, (unsigned long long)fsize);
    if (n > p->max_header_bytes)
        return samda_fail(err, SAMDA_ETOOBIG, "safetensors header of %llu bytes is larger than %llu bytes",
                          (unsigned long long)n, (unsigned long long)p->max_header_bytes);
    if (n < 2) return samda_fail(err, SAMDA_EINVAL, "not a safetensors file: header length %llu is too short", (unsigned long long)n);
    char *buf = malloc((size_t)n);
    if (!buf) return samda_fail(err, SAMDA_ENOMEM, "reading the safetensors header: out of memory");
    if (!read_all(fd, buf, (size_t)n, 8)) {
        free(buf);
        return samda_fail(err, SAMDA_EIO, "reading the safetensors header: short read");
    }
    if (buf[0] != '{') {
        free(buf);
        return samda_fail(err, SAMDA_EINVAL, "not a safetensors file: the header does not start with '{'");
    }
    json_error_t je;
    json_t *h = json_loadb(buf, (size_t)n, JSON_REJECT_DUPLICATES, &je);
    free(buf);
    if (!h)
        return samda_fail(err, SAMDA_EINVAL, "not a safetensors file: the header is not JSON (line %d column %d: %s)", je.line,
                          je.column, je.text);
    if (!json_is_object(h)) {
        json_decref(h);
        return samda_fail(err, SAMDA_EINVAL, "not a safetensors file: the header is not a JSON object");
    }
    uint64_t data_bytes = fsize - 8 - n;
    size_t nt = json_object_size(h);
    json_t *meta = json_object_get(h, "__metadata__");
    if (meta) nt--;
    samda_status st = SAMDA_OK;
    span *spans = NULL;
    if (nt == 0) {
        st = samda_fail(err, SAMDA_EINVAL, "safetensors header lists no tensor");
        goto out;
    }
    if (nt > p->max_tensors) {
        st = samda_fail(err, SAMDA_ETOOBIG, "safetensors header lists %zu tensors (at most %zu)", nt, p->max_tensors);
        goto out;
    }
    if (meta) {
        if (!json_is_object(meta)) {
            st = samda_fail(err, SAMDA_EINVAL, "safetensors header: __metadata__ must be an object of strings");
            goto out;
        }
        const char *k;
        json_t *v;
        json_object_foreach(meta, k, v) {
            if (!json_is_string(v)) {
                st = samda_fail(err, SAMDA_EINVAL, "safetensors header: __metadata__ member '%.64s' is not a string", k);
                goto out;
            }
        }
    }
    spans = calloc(nt, sizeof *spans);
    if (!spans) {
        st = samda_fail(err, SAMDA_ENOMEM, "checking the safetensors header: out of memory");
        goto out;
    }
    size_t k = 0;
    const char *name;
    json_t *t;
    json_object_foreach(h, name, t) {
        if (strcmp(name, "__metadata__") == 0) continue;
        if ((st = check_tensor(name, t, p, data_bytes, &spans[k], err)) != SAMDA_OK) goto out;
        k++;
    }
    /* The data section is covered exactly: sorted spans follow each other from 0 to its end. */
    qsort(spans, nt, sizeof *spans, span_cmp);
    uint64_t at = 0;
    for (size_t i = 0; i < nt; i++) {
        if (spans[i].begin != at) {
            st = samda_fail(err, SAMDA_EINVAL,
                            spans[i].begin < at ? "safetensors header: tensor '%.64s' overlaps another tensor (offset %llu)"
                                                : "safetensors header: hole in the data section before tensor '%.64s' (offset %llu)",
                            spans[i].name, (unsigned long long)spans[i].begin);
            goto out;
        }
        at = spans[i].end;
    }
    if (at != data_bytes) {
        st = samda_fail(err, SAMDA_EINVAL, "safetensors file: %llu bytes after the last tensor (data section %llu bytes)",
                        (unsigned long long)(data_bytes - at), (unsigned long long)data_bytes);
        goto out;
    }
    info->file_bytes = fsize;
    info->header_bytes = n;
    info->data_bytes = data_bytes;
    info->n_tensors = nt;
    info->metadata = meta ? json_incref(meta) : NULL;
out:
    free(spans);
    json_decref(h);
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
