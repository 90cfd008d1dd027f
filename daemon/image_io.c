/* Image reading and mask writing for the CLI (see image_io.h). */
#include "image_io.h"

#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "atomic_file.h"
#include "dicom.h"
#include "npy_format.h"

#define MAX_SIDE 16384

static const char *ext_of(const char *path)
{
    const char *dot = strrchr(path, '.');
    return dot ? dot : "";
}

/* Min-max map to 0..255 (constant images become 0). */
static void minmax_scale(float *v, size_t n)
{
    float lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < lo) lo = v[i];
        if (v[i] > hi) hi = v[i];
    }
    float s = hi > lo ? 255.0f / (hi - lo) : 0.0f;
    for (size_t i = 0; i < n; i++) v[i] = (v[i] - lo) * s;
}

static void window_scale(float *v, size_t n, double c, double w)
{
    double lo = c - w / 2;
    for (size_t i = 0; i < n; i++) {
        double x = (v[i] - lo) / w * 255.0;
        v[i] = (float)(x < 0 ? 0 : x > 255 ? 255 : x);
    }
}

/* NumPy .npy (common/npy_format.h: any version, numeric dtype, byte order and memory order), 2-D or
 * 3-D with 1 or 3 channels. */
static samda_status read_npy(const char *path, samdad_image *out, samda_error *err)
{
    samda_npy_header h;
    void *data = NULL;
    samda_status st = samda_npy_load(path, (uint64_t)MAX_SIDE * MAX_SIDE * 3 * 8, &h, &data, err);
    if (st != SAMDA_OK) return st;
    uint64_t ch = h.ndim == 3 ? h.shape[2] : 1;
    if ((h.ndim != 2 && h.ndim != 3) || h.shape[0] < 1 || h.shape[1] < 1 || h.shape[0] > MAX_SIDE ||
        h.shape[1] > MAX_SIDE || (ch != 1 && ch != 3)) {
        free(data);
        return samda_fail(err, SAMDA_EINVAL, "%s: .npy shape must be (H, W) or (H, W, 3) with sides up to %d", path,
                          MAX_SIDE);
    }
    size_t n = (size_t)h.numel;
    out->pixels = malloc(n * sizeof(float));
    if (!out->pixels) {
        free(data);
        return samda_fail(err, SAMDA_ENOMEM, "%s: out of memory", path);
    }
    samda_npy_to_float(h.dtype, data, n, out->pixels);
    free(data);
    for (size_t i = 0; i < n; i++)
        if (!isfinite(out->pixels[i])) out->pixels[i] = 0.0f;
    out->height = (int)h.shape[0];
    out->width = (int)h.shape[1];
    out->channels = (int)ch;
    if (h.dtype != SAMDA_NPY_U8) minmax_scale(out->pixels, n);
    return SAMDA_OK;
}

static samda_status read_png(const char *path, samdad_image *out, samda_error *err)
{
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&im, path))
        return samda_fail(err, access(path, R_OK) ? SAMDA_ENOENT : SAMDA_EINVAL, "%s: %s", path, im.message);
    if (im.width < 1 || im.height < 1 || im.width > MAX_SIDE || im.height > MAX_SIDE) {
        png_image_free(&im);
        return samda_fail(err, SAMDA_ETOOBIG, "%s: %ux%u is outside 1..%d per side", path, im.width, im.height,
                          MAX_SIDE);
    }
    int grey = !(im.format & PNG_FORMAT_FLAG_COLOR);
    im.format = grey ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
    size_t n = PNG_IMAGE_SIZE(im);
    uint8_t *buf = malloc(n);
    out->pixels = malloc(n * sizeof(float));
    if (!buf || !out->pixels || !png_image_finish_read(&im, NULL, buf, 0, NULL)) {
        free(buf);
        free(out->pixels);
        out->pixels = NULL;
        png_image_free(&im);
        return samda_fail(err, SAMDA_EINVAL, "%s: cannot decode PNG: %s", path, im.message);
    }
    for (size_t i = 0; i < n; i++) out->pixels[i] = buf[i];
    free(buf);
    out->height = (int)im.height;
    out->width = (int)im.width;
    out->channels = grey ? 1 : 3;
    return SAMDA_OK;
}

static samda_status read_dicom(const char *path, double wc, double ww, samdad_image *out, samda_error *err)
{
    samda_dicom_init_params ip;
    samda_dicom_init_params_init(&ip);
    samda_status st = samda_dicom_init(&ip, err);
    if (st != SAMDA_OK) return st;
    samda_dicom_header h;
    samda_volume *vol = NULL;
    if ((st = samda_dicom_read_header(path, &h, err)) != SAMDA_OK) goto out;
    samda_volume_params vp;
    samda_volume_params_init(&vp);
    if ((st = samda_dicom_volume_load(&path, 1, &vp, &vol, err)) != SAMDA_OK) goto out;
    const samda_volume_info *vi = samda_volume_get_info(vol);
    size_t n = (size_t)vi->rows * vi->cols; /* first frame */
    out->pixels = malloc(n * sizeof(float));
    if (!out->pixels) {
        st = samda_fail(err, SAMDA_ENOMEM, "out of memory");
        goto out;
    }
    memcpy(out->pixels, samda_volume_voxels(vol), n * sizeof(float));
    out->height = (int)vi->rows;
    out->width = (int)vi->cols;
    out->channels = 1;
    if (ww > 0) window_scale(out->pixels, n, wc, ww);
    else if (h.has_window && h.window_width > 0) window_scale(out->pixels, n, h.window_center, h.window_width);
    else minmax_scale(out->pixels, n);
out:
    samda_volume_free(vol);
    samda_dicom_shutdown();
    return st;
}

samda_status samdad_image_read(const char *path, double wc, double ww, samdad_image *out, samda_error *err)
{
    memset(out, 0, sizeof *out);
    const char *e = ext_of(path);
    samda_status st;
    if (!strcasecmp(e, ".npy")) st = read_npy(path, out, err);
    else if (!strcasecmp(e, ".png")) st = read_png(path, out, err);
    else if (!strcasecmp(e, ".dcm") || !*e) return read_dicom(path, wc, ww, out, err);
    else return samda_fail(err, SAMDA_EINVAL, "%s: unsupported image type '%s' (use .npy, .png or .dcm)", path, e);
    if (st == SAMDA_OK && ww > 0) window_scale(out->pixels, (size_t)out->height * out->width * out->channels, wc, ww);
    return st;
}

samda_status samdad_png_encode(const uint8_t *px, unsigned w, unsigned h, bool rgb, void **out, size_t *len,
                               samda_error *err)
{
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    im.width = w;
    im.height = h;
    im.format = rgb ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
    png_alloc_size_t size = 0;
    if (!png_image_write_to_memory(&im, NULL, &size, 0, px, 0, NULL))
        return samda_fail(err, SAMDA_EINTERNAL, "PNG encoding: %s", im.message);
    void *buf = malloc(size);
    if (!buf) return samda_fail(err, SAMDA_ENOMEM, "PNG encoding: out of memory");
    if (!png_image_write_to_memory(&im, buf, &size, 0, px, 0, NULL)) {
        free(buf);
        return samda_fail(err, SAMDA_EINTERNAL, "PNG encoding: %s", im.message);
    }
    *out = buf;
    *len = size;
    return SAMDA_OK;
}

samda_status samdad_mask_write(const char *path, const uint8_t *mask, int h, int w, samda_error *err)
{
    const char *e = ext_of(path);
    if (!strcasecmp(e, ".npy")) {
        uint64_t shape[2] = {(uint64_t)h, (uint64_t)w};
        return samda_npy_save(path, SAMDA_NPY_U8, 2, shape, mask, err);
    }
    if (strcasecmp(e, ".png") != 0)
        return samda_fail(err, SAMDA_EINVAL, "%s: masks are written as .png or .npy", path);
    size_t n = (size_t)h * (size_t)w;
    uint8_t *buf = malloc(n);
    if (!buf) return samda_fail(err, SAMDA_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) buf[i] = mask[i] ? 255 : 0;
    void *png = NULL;
    size_t len = 0;
    samda_status st = samdad_png_encode(buf, (unsigned)w, (unsigned)h, false, &png, &len, err);
    free(buf);
    if (st != SAMDA_OK) {
        samda_error_prefix(err, "%s: ", path);
        return st;
    }
    samda_afile f;
    if ((st = samda_afile_open(&f, path, 0, err)) == SAMDA_OK && (st = samda_afile_write(&f, png, len, err)) != SAMDA_OK)
        samda_afile_abort(&f);
    else if (st == SAMDA_OK)
        st = samda_afile_commit(&f, err);
    free(png);
    return st;
}
