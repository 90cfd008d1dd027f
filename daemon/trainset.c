/* Ground-truth DICOM-SEGs and their source series as training pairs; the one rule that turns
 * ground-truth segments into labels (trainset.h). */
#include "trainset.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <ctype.h>
#include <dirent.h>
#include <unistd.h>

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

/* Display colours for labels whose SEG gives none (value 1 first), distinct on a grey image. */
static const uint8_t palette[][3] = {{230, 25, 75},  {60, 180, 75},  {255, 225, 25}, {0, 130, 200},
                                     {245, 130, 48}, {145, 30, 180}, {70, 240, 240}, {240, 50, 230},
                                     {210, 245, 60}, {250, 190, 212}, {0, 128, 128}, {220, 190, 255}};

/* src into dst[cap], or false when it does not fit. */
static bool put(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n >= cap) return false;
    memcpy(dst, src, n + 1);
    return true;
}

samda_status samdad_label_from_segment(const samda_seg_segment_info *si, const char *modality, int value,
                                       const char *where, samda_adapter_label *out, samda_error *err)
{
    memset(out, 0, sizeof *out);
    if (value < 1 || value > 255) return samda_fail(err, SAMDA_EINVAL, "%s: label value %d outside 1..255", where, value);
    if (!si->type_value[0] || !si->type_scheme[0] || !si->type_meaning[0])
        return samda_fail(err, SAMDA_EINVAL, "%s: segment %u (\"%.64s\"): no SegmentedPropertyTypeCodeSequence "
                          "(value, scheme and meaning are needed to make it a label)", where, si->number, si->label);
    if (!si->category_value[0] || !si->category_scheme[0] || !si->category_meaning[0])
        return samda_fail(err, SAMDA_EINVAL, "%s: segment %u (\"%.64s\"): no SegmentedPropertyCategoryCodeSequence",
                          where, si->number, si->label);
    if (si->modifier_value[0] && !si->region_value[0])
        return samda_fail(err, SAMDA_EINVAL, "%s: segment %u: a region modifier without a region", where, si->number);
    const struct {
        char *dst;
        size_t cap;
        const char *src, *field;
    } f[] = {{out->category_scheme, sizeof out->category_scheme, si->category_scheme, "category scheme"},
             {out->category_code, sizeof out->category_code, si->category_value, "category code"},
             {out->category_meaning, sizeof out->category_meaning, si->category_meaning, "category meaning"},
             {out->type_scheme, sizeof out->type_scheme, si->type_scheme, "type scheme"},
             {out->type_code, sizeof out->type_code, si->type_value, "type code"},
             {out->type_meaning, sizeof out->type_meaning, si->type_meaning, "type meaning"},
             {out->region_scheme, sizeof out->region_scheme, si->region_scheme, "region scheme"},
             {out->region_code, sizeof out->region_code, si->region_value, "region code"},
             {out->region_meaning, sizeof out->region_meaning, si->region_meaning, "region meaning"},
             {out->modifier_scheme, sizeof out->modifier_scheme, si->modifier_scheme, "region modifier scheme"},
             {out->modifier_code, sizeof out->modifier_code, si->modifier_value, "region modifier code"},
             {out->modifier_meaning, sizeof out->modifier_meaning, si->modifier_meaning, "region modifier meaning"},
             {out->type_modifier_scheme, sizeof out->type_modifier_scheme, si->type_modifier_scheme,
              "type modifier scheme"},
             {out->type_modifier_code, sizeof out->type_modifier_code, si->type_modifier_value, "type modifier code"},
             {out->type_modifier_meaning, sizeof out->type_modifier_meaning, si->type_modifier_meaning,
              "type modifier meaning"}};
    for (size_t k = 0; k < sizeof f / sizeof *f; k++)
        if (!put(f[k].dst, f[k].cap, f[k].src))
            return samda_fail(err, SAMDA_EINVAL, "%s: segment %u: %s \"%.40s\" is longer than %zu characters", where,
                              si->number, f[k].field, f[k].src, f[k].cap - 1);
    if (si->region_value[0] && (!si->region_scheme[0] || !si->region_meaning[0]))
        return samda_fail(err, SAMDA_EINVAL, "%s: segment %u: region code without scheme or meaning", where, si->number);
    if (si->modifier_value[0] && (!si->modifier_scheme[0] || !si->modifier_meaning[0]))
        return samda_fail(err, SAMDA_EINVAL, "%s: segment %u: region modifier without scheme or meaning", where,
                          si->number);
    if (si->type_modifier_value[0] && (!si->type_modifier_scheme[0] || !si->type_modifier_meaning[0]))
        return samda_fail(err, SAMDA_EINVAL, "%s: segment %u: type modifier without scheme or meaning", where,
                          si->number);
    size_t n = 0;
    for (const char *p = si->label; *p && n < sizeof out->name - 1; p++) {
        unsigned char c = (unsigned char)tolower((unsigned char)*p);
        out->name[n++] = (char)((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'
                                    ? c : '_');
    }
    out->name[n] = '\0';
    if (!n) snprintf(out->name, sizeof out->name, "segment_%u", si->number);
    out->value = value;
    if (si->has_cielab) memcpy(out->rgb, si->rgb, 3);
    else memcpy(out->rgb, palette[(size_t)(value - 1) % (sizeof palette / sizeof *palette)], 3);
    if (modality && !strcmp(modality, "CT")) {
        out->window_kind = SAMDA_WINDOW_CT;
        out->window_a = 50;
        out->window_b = 400;
    } else {
        out->window_kind = SAMDA_WINDOW_MR;
        out->window_a = 1;
        out->window_b = 99;
    }
    return SAMDA_OK;
}

/* Is segment si label l? Its coded type with its modifier (left and right kidney are two labels), and
 * its region and region modifier when either has one. */
bool samdad_segment_is_label(const samda_seg_segment_info *si, const samda_adapter_label *l)
{
    return !strcmp(si->type_scheme, l->type_scheme) && !strcmp(si->type_value, l->type_code) &&
           !strcmp(si->type_modifier_scheme, l->type_modifier_scheme) &&
           !strcmp(si->type_modifier_value, l->type_modifier_code) &&
           !strcmp(si->region_scheme, l->region_scheme) && !strcmp(si->region_value, l->region_code) &&
           !strcmp(si->modifier_scheme, l->modifier_scheme) && !strcmp(si->modifier_value, l->modifier_code);
}

/* A new label for si, appended to s (name made unique with _2, _3, ...). */
static samda_status grow(samdad_label_schema *s, const samda_seg_segment_info *si, const char *modality,
                         const char *where, int *value_out, samda_error *err)
{
    if (s->n >= SAMDA_ADAPTER_MAX_LABELS)
        return samda_fail(err, SAMDA_EINVAL, "%s: segment %u (\"%.64s\") would be label %d; an adapter holds at most %d",
                          where, si->number, si->label, (int)s->n + 1, SAMDA_ADAPTER_MAX_LABELS);
    int value = 1;
    for (size_t k = 0; k < s->n; k++)
        if (s->labels[k].value >= value) value = s->labels[k].value + 1;
    samda_adapter_label l;
    samda_status st = samdad_label_from_segment(si, modality, value, where, &l, err);
    if (st != SAMDA_OK) return st;
    char base[48];
    snprintf(base, sizeof base, "%.40s", l.name);
    for (int dup = 2;; dup++) {
        bool taken = false;
        for (size_t k = 0; k < s->n; k++) taken |= !strcmp(s->labels[k].name, l.name);
        if (!taken) break;
        snprintf(l.name, sizeof l.name, "%s_%d", base, dup);
    }
    s->labels[s->n++] = l;
    *value_out = value;
    return SAMDA_OK;
}

samda_status samdad_trainset_write(const char *const *series_paths, size_t n, const char *seg_path,
                                   samdad_label_schema *schema, unsigned flags, const char *out_dir,
                                   const char *prefix, size_t *n_written, size_t *n_matched, samda_error *err)
{
    if (n_written) *n_written = 0;
    if (n_matched) *n_matched = 0;
    if (!prefix_ok(prefix)) return samda_fail(err, SAMDA_EINVAL, "training data: prefix must be [A-Za-z0-9_-]{1,32}");
    samda_volume *vol = NULL;
    samda_seg *seg = NULL;
    uint8_t *numbers = NULL, *mask = NULL;
    const size_t n_before = schema->n;
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
        int value = 0;
        for (size_t k = 0; k < schema->n && !value; k++)
            if (samdad_segment_is_label(si, &schema->labels[k])) value = schema->labels[k].value;
        for (size_t k = 0; k < schema->n && !value && !(flags & SAMDAD_TRAINSET_GROW); k++)
            if (!strcasecmp(schema->labels[k].name, si->label)) value = schema->labels[k].value;
        if (!value && (flags & SAMDAD_TRAINSET_GROW) &&
            (st = grow(schema, si, vi->modality, seg_path, &value, err)) != SAMDA_OK)
            goto out;
        if (!value) continue;
        map[si->number] = value;
        matched++;
    }
    if (!matched) {
        char want[512] = "";
        for (size_t k = 0; k < schema->n; k++) {
            size_t len = strlen(want);
            snprintf(want + len, sizeof want - len, "%s%s", len ? ", " : "", schema->labels[k].name);
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
    if (st != SAMDA_OK) schema->n = n_before;
    free(numbers);
    free(mask);
    samda_seg_free(seg);
    samda_volume_free(vol);
    return st;
}

void samdad_trainset_remove(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char p[PATH_MAX];
        snprintf(p, sizeof p, "%s/%.255s", dir, e->d_name);
        unlink(p);
    }
    if (d) closedir(d);
    rmdir(dir);
}
