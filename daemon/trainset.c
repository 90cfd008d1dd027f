#include "trainset.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "atomic_file.h"
#include "dicom.h"
#include "npy_write.h"

/* NAME.json beside a training slice: {"spacing":[row_mm,col_mm]} (DICOM PixelSpacing order), read by
 * model/'s evaluation for HD95 in mm. Crash-safe like the .npy files. */
static samda_status write_spacing_sidecar(const char *path, const double spacing[2], samda_error *err)
{
    char text[96];
    int n = snprintf(text, sizeof text, "{\"spacing\":[%.9g,%.9g]}\n", spacing[0], spacing[1]);
    samda_afile f;
    samda_status st = samda_afile_open(&f, path, 0, err);
    if (st != SAMDA_OK) return st;
    if ((st = samda_afile_write(&f, text, (size_t)n, err)) != SAMDA_OK) {
        samda_afile_abort(&f);
        return st;
    }
    return samda_afile_commit(&f, err);
}

static bool prefix_ok(const char *p)
{
    size_t n = p ? strlen(p) : 0;
    if (n == 0 || n > 32) return false;
    for (size_t i = 0; i < n; i++)
        if (!((p[i] >= 'A' && p[i] <= 'Z') || (p[i] >= 'a' && p[i] <= 'z') || (p[i] >= '0' && p[i] <= '9') ||
              p[i] == '_' || p[i] == '-'))
            return false;
    return true;
}

samda_status samdad_trainset_write(const char *const *series_paths, size_t n, const char *seg_path,
                                   const char *const *label_names, const int *label_values, size_t n_labels,
                                   const char *out_dir, const char *prefix, size_t *n_written, size_t *n_matched,
                                   samda_error *err)
{
    if (n_written) *n_written = 0;
    if (n_matched) *n_matched = 0;
    if (!prefix_ok(prefix)) return samda_fail(err, SAMDA_EINVAL, "training data: prefix must be [A-Za-z0-9_-]{1,32}");
    samda_volume *vol = NULL;
    samda_seg *seg = NULL;
    uint8_t *numbers = NULL, *mask = NULL;
    samda_status st = samda_dicom_volume_load(series_paths, n, NULL, &vol, err);
    if (st != SAMDA_OK) {
        samda_error_prefix(err, "training data, source series: ");
        return st;
    }
    if ((st = samda_seg_read(seg_path, &seg, err)) != SAMDA_OK) {
        samda_error_prefix(err, "training data, DICOM-SEG: ");
        goto out;
    }
    const samda_volume_info *vi = samda_volume_get_info(vol);
    const size_t plane = (size_t)vi->rows * vi->cols, S = vi->n_slices;
    numbers = malloc(S * plane);
    mask = malloc(plane);
    if (!numbers || !mask) {
        st = samda_fail(err, SAMDA_ENOMEM, "training data: out of memory");
        goto out;
    }
    if ((st = samda_seg_to_label_volume(seg, vol, numbers, NULL, err)) != SAMDA_OK) {
        samda_error_prefix(err, "training data, DICOM-SEG on the series: ");
        goto out;
    }
    /* segment number -> label value */
    int map[256] = {0};
    size_t matched = 0;
    char seen[512] = "";
    for (size_t i = 0; i < samda_seg_get_info(seg)->n_segments; i++) {
        const samda_seg_segment_info *si = samda_seg_segment_get(seg, i);
        if (!si || si->number == 0 || si->number > 255) continue;
        size_t len = strlen(seen);
        snprintf(seen + len, sizeof seen - len, "%s%s", len ? ", " : "", si->label);
        if (!n_labels) {
            map[si->number] = (int)si->number;
            matched++;
            continue;
        }
        for (size_t k = 0; k < n_labels; k++)
            if (label_names[k] && !strcasecmp(label_names[k], si->label)) {
                map[si->number] = label_values[k];
                matched++;
                break;
            }
    }
    if (!matched) {
        char want[512] = "";
        for (size_t k = 0; k < n_labels; k++) {
            size_t len = strlen(want);
            snprintf(want + len, sizeof want - len, "%s%s", len ? ", " : "", label_names[k]);
        }
        st = samda_fail(err, SAMDA_EINVAL, "training data: no segment of the DICOM-SEG (%s) is a label of the adapter (%s)",
                        seen, want);
        goto out;
    }
    size_t written = 0;
    for (size_t s = 0; s < S; s++) {
        bool any = false;
        const uint8_t *num = numbers + s * plane;
        for (size_t i = 0; i < plane; i++) {
            mask[i] = (uint8_t)map[num[i]];
            any |= mask[i] != 0;
        }
        if (!any) continue;
        char path[PATH_MAX];
        size_t shape[2] = {vi->rows, vi->cols};
        snprintf(path, sizeof path, "%s/%s_%04zu.image.npy", out_dir, prefix, s);
        if ((st = samda_npy_write(path, "<f4", 2, shape, samda_volume_voxels(vol) + s * plane, err)) != SAMDA_OK) goto out;
        snprintf(path, sizeof path, "%s/%s_%04zu.mask.npy", out_dir, prefix, s);
        if ((st = samda_npy_write(path, "|u1", 2, shape, mask, err)) != SAMDA_OK) goto out;
        if (vi->has_pixel_spacing) { /* the slice's spacing, for HD95 in mm (samda_adapter_evaluate) */
            snprintf(path, sizeof path, "%s/%s_%04zu.json", out_dir, prefix, s);
            if ((st = write_spacing_sidecar(path, vi->pixel_spacing, err)) != SAMDA_OK) goto out;
        }
        written++;
    }
    if (n_written) *n_written = written;
    if (n_matched) *n_matched = matched;
out:
    free(numbers);
    free(mask);
    samda_seg_free(seg);
    samda_volume_free(vol);
    return st;
}
