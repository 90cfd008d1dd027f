/* Image reading and mask writing for the CLI (see image_io.h). */
#include "image_io.h"

#include <errno.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "atomic_file.h"
#include "dicom.h"
#include "npy_write.h"

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

/* NumPy .npy v1/v2/v3: '<' or '|' little-endian numeric, C order, 2-D or 3-D with 3 channels. */
static samda_status read_npy(const char *path, samdad_image *out, samda_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) return samda_fail(err, errno == ENOENT ? SAMDA_ENOENT : SAMDA_EIO, "%s: %s", path, strerror(errno));
    unsigned char magic[10];
    samda_status st = SAMDA_OK;
    char *hdr = NULL;
    uint8_t *raw = NULL;
    if (fread(magic, 1, 8, f) != 8 || memcmp(magic, "\x93NUMPY", 6) != 0) {
        st = samda_fail(err, SAMDA_EINVAL, "%s: not a .npy file (bad magic)", path);
        goto done;
    }
    size_t hlen;
    if (magic[6] == 1) {
        unsigned char b[2];
        if (fread(b, 1, 2, f) != 2) goto trunc;
        hlen = (size_t)b[0] | (size_t)b[1] << 8;
    } else if (magic[6] == 2 || magic[6] == 3) {
        unsigned char b[4];
        if (fread(b, 1, 4, f) != 4) goto trunc;
        hlen = (size_t)b[0] | (size_t)b[1] << 8 | (size_t)b[2] << 16 | (size_t)b[3] << 24;
    } else {
        st = samda_fail(err, SAMDA_EINVAL, "%s: .npy version %d not supported", path, magic[6]);
        goto done;
    }
    if (hlen > 65536) {
        st = samda_fail(err, SAMDA_EINVAL, "%s: .npy header of %zu bytes is too long", path, hlen);
        goto done;
    }
    hdr = calloc(1, hlen + 1);
    if (!hdr || fread(hdr, 1, hlen, f) != hlen) goto trunc;
    char *d = strstr(hdr, "'descr':"), *fo = strstr(hdr, "'fortran_order':"), *sh = strstr(hdr, "'shape':");
    if (!d || !fo || !sh) {
        st = samda_fail(err, SAMDA_EINVAL, "%s: .npy header lacks descr, fortran_order or shape", path);
        goto done;
    }
    char descr[8] = "";
    if (sscanf(d, "'descr': '%7[^']'", descr) != 1) {
        st = samda_fail(err, SAMDA_EINVAL, "%s: .npy descr unreadable", path);
        goto done;
    }
    if (strstr(fo, "True")) {
        st = samda_fail(err, SAMDA_EINVAL, "%s: Fortran-ordered .npy not supported (save it C-contiguous)", path);
        goto done;
    }
    long dims[3] = {0, 0, 1};
    int nd = sscanf(sh, "'shape': (%ld, %ld, %ld", &dims[0], &dims[1], &dims[2]);
    if (nd < 2 || dims[0] < 1 || dims[1] < 1 || dims[0] > MAX_SIDE || dims[1] > MAX_SIDE ||
        !(dims[2] == 1 || dims[2] == 3)) {
        st = samda_fail(err, SAMDA_EINVAL, "%s: .npy shape must be (H, W) or (H, W, 3) with sides up to %d", path,
                        MAX_SIDE);
        goto done;
    }
    static const struct { const char *d; size_t sz; } types[] = {
        {"|u1", 1}, {"<u1", 1}, {"|i1", 1}, {"<i2", 2}, {"<u2", 2}, {"<i4", 4}, {"<u4", 4}, {"<f4", 4}, {"<f8", 8},
    };
    size_t sz = 0;
    for (size_t i = 0; i < sizeof types / sizeof *types; i++)
        if (!strcmp(descr, types[i].d)) sz = types[i].sz;
    if (!sz) {
        st = samda_fail(err, SAMDA_EINVAL, "%s: .npy dtype '%s' not supported (use uint8, int16, uint16, int32, "
                                           "float32 or float64, little-endian)", path, descr);
        goto done;
    }
    size_t n = (size_t)dims[0] * (size_t)dims[1] * (size_t)dims[2];
    raw = malloc(n * sz);
    out->pixels = malloc(n * sizeof(float));
    if (!raw || !out->pixels) {
        st = samda_fail(err, SAMDA_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    if (fread(raw, sz, n, f) != n) goto trunc;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = raw + i * sz;
        float v;
        if (descr[1] == 'u' && sz == 1) v = p[0];
        else if (descr[1] == 'i' && sz == 1) v = (int8_t)p[0];
        else if (!strcmp(descr, "<i2")) { int16_t x; memcpy(&x, p, 2); v = x; }
        else if (!strcmp(descr, "<u2")) { uint16_t x; memcpy(&x, p, 2); v = x; }
        else if (!strcmp(descr, "<i4")) { int32_t x; memcpy(&x, p, 4); v = (float)x; }
        else if (!strcmp(descr, "<u4")) { uint32_t x; memcpy(&x, p, 4); v = (float)x; }
        else if (!strcmp(descr, "<f4")) memcpy(&v, p, 4);
        else { double x; memcpy(&x, p, 8); v = (float)x; }
        out->pixels[i] = isfinite(v) ? v : 0.0f;
    }
    out->height = (int)dims[0];
    out->width = (int)dims[1];
    out->channels = (int)dims[2];
    if (sz != 1 || descr[1] != 'u') minmax_scale(out->pixels, n);
    goto done;
trunc:
    st = samda_fail(err, SAMDA_EINVAL, "%s: .npy file is truncated", path);
done:
    if (st != SAMDA_OK) {
        free(out->pixels);
        out->pixels = NULL;
    }
    free(raw);
    free(hdr);
    fclose(f);
    return st;
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
        size_t shape[2] = {(size_t)h, (size_t)w};
        return samda_npy_write(path, "|u1", 2, shape, mask, err);
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
