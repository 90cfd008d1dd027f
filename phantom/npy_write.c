/* .npy writer (see npy_write.h): argument checks, then common/npy_format.c's samda_npy_save. */
#include "npy_write.h"

#include <stdint.h>

#include "npy_format.h"

samda_status samda_npy_write(const char *path, const char *dtype, int ndim, const size_t *shape,
                             const void *data, samda_error *err)
{
    if (!path || !*path)
        return samda_fail(err, SAMDA_EINVAL, "writing .npy: no path given");
    if (!dtype)
        return samda_fail(err, SAMDA_EINVAL, "writing .npy %s: no dtype given", path);
    samda_npy_dtype dt;
    if (!samda_npy_dtype_from_descr(dtype, &dt))
        return samda_fail(err, SAMDA_EINVAL,
                          "writing .npy %s: dtype '%.16s' not supported (use <i2, |u1, <f4, <u2, <i4, <f8 or another "
                          "little-endian numeric descr)",
                          path, dtype);
    if (ndim < 0 || ndim > SAMDA_NPY_MAX_DIMS)
        return samda_fail(err, SAMDA_EINVAL, "writing .npy %s: ndim %d outside 0..%d", path, ndim,
                          SAMDA_NPY_MAX_DIMS);
    if (ndim > 0 && !shape)
        return samda_fail(err, SAMDA_EINVAL, "writing .npy %s: no shape given for ndim %d", path, ndim);
    uint64_t dims[SAMDA_NPY_MAX_DIMS];
    for (int i = 0; i < ndim; i++)
        dims[i] = shape[i];
    return samda_npy_save(path, dt, ndim, dims, data, err);
}
