/* .npy v1.0 writer (see npy_write.h): builds the header, streams the data through samda_afile.
 * The byte swap for big-endian hosts is done in bounded chunks so a large array is never copied. */
#include "npy_write.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "atomic_file.h"

typedef struct npy_dtype {
    const char *descr;
    size_t      size;
} npy_dtype;

static const npy_dtype npy_dtypes[] = {
    {"<i2", 2}, {"|u1", 1}, {"<f4", 4}, {"<u2", 2}, {"<i4", 4}, {"<f8", 8},
};

static int host_is_little_endian(void)
{
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

/* Build the header; returns its total length (a multiple of 64) or 0 if it does not fit v1.0. */
static size_t npy_header(char *buf, size_t cap, const char *descr, int ndim, const size_t *shape)
{
    char dict[1024];
    size_t n = 0;
    int w = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    if (w < 0)
        return 0;
    n = (size_t)w;
    for (int i = 0; i < ndim; i++) {
        w = snprintf(dict + n, sizeof dict - n, "%zu,%s", shape[i], (ndim > 1 && i + 1 < ndim) ? " " : "");
        if (w < 0 || (size_t)w >= sizeof dict - n)
            return 0;
        n += (size_t)w;
    }
    /* NumPy writes (3,) for one dimension and (3, 4) for two: drop the trailing comma unless ndim == 1. */
    if (ndim > 1)
        n--; /* the last "," */
    w = snprintf(dict + n, sizeof dict - n, "), }");
    if (w < 0 || (size_t)w >= sizeof dict - n)
        return 0;
    n += (size_t)w;
    /* magic(6) + version(2) + header length(2) + dict + padding + '\n' = multiple of 64 */
    size_t total = 10 + n + 1;
    total = (total + 63) / 64 * 64;
    if (total > cap || total - 10 > 65535)
        return 0;
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    size_t hlen = total - 10;
    buf[8] = (char)(hlen & 0xff);
    buf[9] = (char)(hlen >> 8);
    memcpy(buf + 10, dict, n);
    memset(buf + 10 + n, ' ', total - 10 - n - 1);
    buf[total - 1] = '\n';
    return total;
}

samda_status samda_npy_write(const char *path, const char *dtype, int ndim, const size_t *shape,
                             const void *data, samda_error *err)
{
    if (!path || !*path)
        return samda_fail(err, SAMDA_EINVAL, "writing .npy: no path given");
    if (!dtype)
        return samda_fail(err, SAMDA_EINVAL, "writing .npy %s: no dtype given", path);
    const npy_dtype *dt = NULL;
    for (size_t i = 0; i < sizeof npy_dtypes / sizeof npy_dtypes[0]; i++)
        if (strcmp(npy_dtypes[i].descr, dtype) == 0)
            dt = &npy_dtypes[i];
    if (!dt)
        return samda_fail(err, SAMDA_EINVAL,
                          "writing .npy %s: dtype '%.16s' not supported (use <i2, |u1, <f4, <u2, <i4 or <f8)", path,
                          dtype);
    if (ndim < 0 || ndim > SAMDA_NPY_MAX_DIMS)
        return samda_fail(err, SAMDA_EINVAL, "writing .npy %s: ndim %d outside 0..%d", path, ndim,
                          SAMDA_NPY_MAX_DIMS);
    if (ndim > 0 && !shape)
        return samda_fail(err, SAMDA_EINVAL, "writing .npy %s: no shape given for ndim %d", path, ndim);
    size_t count = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] != 0 && count > SIZE_MAX / dt->size / shape[i])
            return samda_fail(err, SAMDA_EINVAL, "writing .npy %s: shape overflows the address space", path);
        count *= shape[i];
    }
    size_t bytes = count * dt->size;
    if (bytes > 0 && !data)
        return samda_fail(err, SAMDA_EINVAL, "writing .npy %s: no data for %zu elements", path, count);

    char header[1152];
    size_t hlen = npy_header(header, sizeof header, dt->descr, ndim, shape);
    if (hlen == 0)
        return samda_fail(err, SAMDA_EINVAL, "writing .npy %s: header too long", path);

    samda_afile f;
    samda_status s = samda_afile_open(&f, path, 0, err);
    if (s != SAMDA_OK)
        return s;
    s = samda_afile_write(&f, header, hlen, err);
    if (s == SAMDA_OK && bytes > 0) {
        if (dt->size == 1 || host_is_little_endian()) {
            s = samda_afile_write(&f, data, bytes, err);
        } else {
            unsigned char chunk[65536];
            const unsigned char *src = data;
            size_t per = sizeof chunk / dt->size * dt->size;
            for (size_t off = 0; s == SAMDA_OK && off < bytes; off += per) {
                size_t len = bytes - off < per ? bytes - off : per;
                for (size_t e = 0; e < len; e += dt->size)
                    for (size_t b = 0; b < dt->size; b++)
                        chunk[e + b] = src[off + e + dt->size - 1 - b];
                s = samda_afile_write(&f, chunk, len, err);
            }
        }
    }
    if (s != SAMDA_OK) {
        samda_afile_abort(&f);
        return s;
    }
    return samda_afile_commit(&f, err);
}
