/* `samda phantom`: the phantom generator's command (phantom/phantom_main.c) with its `--dicom`
 * output added here, where dicom/ may be used: each generated body as a CT series plus its ground
 * truth as a DICOM-SEG that references the series (phantom/ itself knows no DICOM).
 * The CT writer places slice k at origin + k * spacing along the normal while the phantom's slices
 * go down in z: the series is the body mirrored in z, which changes nothing for a synthetic test
 * body, and the masks follow the slices through the loader's path index, whatever order it sorts
 * them in. */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dicom.h"
#include "phantom.h"

static samda_status mkdir_one(const char *p, samda_error *err)
{
    if (mkdir(p, 0755) != 0 && errno != EEXIST) return samda_fail(err, SAMDA_EIO, "creating %s: %s", p, strerror(errno));
    return SAMDA_OK;
}

/* samda_phantom_dicom_fn (ctx unused): DIR/dicom/<site>_<body>/IMG*.dcm and DIR/dicom/<site>_<body>.seg.dcm. */
static samda_status write_dicom(void *ctx, const samda_phantom_volume *v, const char *site, long body, const char *dir,
                                samda_error *err)
{
    (void)ctx;
    char top[4096], sdir[4200], segpath[4200], name[96], pid[96], desc[96];
    if (snprintf(top, sizeof top, "%s/dicom", dir) >= (int)sizeof top)
        return samda_fail(err, SAMDA_EINVAL, "--out path too long");
    snprintf(sdir, sizeof sdir, "%s/%.64s_%05ld", top, site, body);
    snprintf(segpath, sizeof segpath, "%s/%.64s_%05ld.seg.dcm", top, site, body);
    samda_status st;
    if ((st = mkdir_one(top, err)) != SAMDA_OK || (st = mkdir_one(sdir, err)) != SAMDA_OK) return st;

    samda_dicom_init_params ip;
    samda_dicom_init_params_init(&ip);
    if ((st = samda_dicom_init(&ip, err)) != SAMDA_OK) return st;

    snprintf(name, sizeof name, "PHANTOM^%.32s", site);
    snprintf(pid, sizeof pid, "PH-%.32s-%05ld", site, body);
    snprintf(desc, sizeof desc, "samda phantom, site %.32s", site);
    samda_ct_series_params cp;
    samda_ct_series_params_init(&cp);
    cp.dir = sdir;
    cp.hu = v->image;
    cp.n_slices = (size_t)v->n_slices;
    cp.rows = (unsigned)v->rows;
    cp.cols = (unsigned)v->cols;
    cp.pixel_spacing[0] = cp.pixel_spacing[1] = v->pixel_spacing_mm;
    cp.slice_spacing = v->slice_spacing_mm;
    cp.origin[0] = -0.5 * (v->cols - 1) * v->pixel_spacing_mm;
    cp.origin[1] = -0.5 * (v->rows - 1) * v->pixel_spacing_mm;
    cp.origin[2] = v->slice_z_mm[v->n_slices - 1];
    cp.patient_name = name;
    cp.patient_id = pid;
    cp.study_description = "samda synthetic abdomen";
    cp.series_description = desc;
    samda_ct_series_result cr;
    if ((st = samda_dicom_write_ct_series(&cp, &cr, err)) != SAMDA_OK) goto out;

    /* Read the series back: the SEG is built over what a PACS would hold. */
    size_t n = cr.n_files;
    char **paths = calloc(n, sizeof *paths);
    samda_volume *vol = NULL;
    if (!paths) {
        st = samda_fail(err, SAMDA_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t k = 0; k < n; k++) {
        paths[k] = malloc(strlen(sdir) + 32);
        if (!paths[k]) {
            st = samda_fail(err, SAMDA_ENOMEM, "out of memory");
            goto free_paths;
        }
        sprintf(paths[k], "%s/IMG%05zu.dcm", sdir, k + 1);
    }
    samda_volume_params vp;
    samda_volume_params_init(&vp);
    if ((st = samda_dicom_volume_load((const char *const *)paths, n, &vp, &vol, err)) != SAMDA_OK) goto free_paths;

    const samda_volume_info *vi = samda_volume_get_info(vol);
    size_t plane = (size_t)v->rows * (size_t)v->cols;
    uint8_t *mask = malloc(vi->n_slices * plane);
    samda_seg_writer *w = NULL;
    if (!mask) {
        st = samda_fail(err, SAMDA_ENOMEM, "out of memory");
        goto free_vol;
    }
    samda_seg_params sp;
    samda_seg_params_init(&sp);
    sp.series_description = "Ground truth (samda phantom)";
    sp.content_label = "GROUND_TRUTH";
    sp.empty_segment = SAMDA_SEG_EMPTY_SKIP;
    if (!(w = samda_seg_writer_new(vol, &sp, err))) {
        st = err ? err->code : SAMDA_EINTERNAL;
        goto free_mask;
    }
    for (int l = 0; l < SAMDA_PHANTOM_N_LABELS; l++) {
        const samda_phantom_label *lab = &samda_phantom_labels[l];
        bool any = false;
        for (size_t i = 0; i < vi->n_slices; i++) {
            /* the phantom slice behind sorted slice i is the file's index (the CT writer's k) */
            size_t k = samda_volume_slice_get(vol, i)->path_index;
            const uint8_t *src = v->mask + k * plane;
            uint8_t *dst = mask + i * plane;
            for (size_t p = 0; p < plane; p++) any |= (dst[p] = src[p] == lab->id);
        }
        if (!any) continue;
        samda_seg_segment seg;
        samda_seg_segment_init(&seg);
        seg.label = lab->name;
        seg.category = (samda_seg_code){SAMDA_PHANTOM_CATEGORY_CODE, "SCT", SAMDA_PHANTOM_CATEGORY_MEANING};
        seg.type = (samda_seg_code){lab->snomed_code, "SCT", lab->snomed_meaning};
        seg.has_color = true;
        memcpy(seg.rgb, lab->rgb, 3);
        seg.algorithm_type = SAMDA_SEG_ALGORITHM_MANUAL; /* exact by construction: ground truth */
        if ((st = samda_seg_writer_add_segment(w, &seg, mask, NULL, err)) != SAMDA_OK) goto free_writer;
    }
    st = samda_seg_writer_save(w, segpath, NULL, err);
free_writer:
    samda_seg_writer_free(w);
free_mask:
    free(mask);
free_vol:
    samda_volume_free(vol);
free_paths:
    for (size_t k = 0; k < n; k++) free(paths[k]);
    free(paths);
out:
    samda_dicom_shutdown();
    return st;
}

int cli_cmd_phantom(int argc, char **argv) { return samda_phantom_main_ex(argc, argv, write_dicom, NULL); }
