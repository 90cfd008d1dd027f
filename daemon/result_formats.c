/* The result objects beside the DICOM-SEG ([site] outputs = rtstruct, sr): each written by the
 * dicom module from the masks the SEG was made of, into the store's tmp/, then committed in place
 * (fsync, hash, rename into objects/seg/...), after the checks the ingest entry makes of an instance;
 * indexed as instances of their study and recorded with the result, in its transaction.
 * Sending them is segment.c's queue_exports, as for the SEG. */
#include "result_formats.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "ingest.h"

#ifndef SAMDA_VERSION
#define SAMDA_VERSION "0.0.0"
#endif

typedef samda_status (*write_fn)(const samdad_result_masks *m, const char *path, char *series_uid, char *sop_uid,
                                 samda_error *err);

static samda_seg_code code(const char *value, const char *scheme, const char *meaning)
{
    return (samda_seg_code){value, scheme, meaning};
}

static size_t label_bytes(const samdad_result_masks *m)
{
    const samda_volume_info *vi = samda_volume_get_info(m->vol);
    return vi->n_slices * vi->rows * vi->cols;
}

static samda_status write_rtstruct(const samdad_result_masks *m, const char *path, char *series_uid, char *sop_uid,
                                   samda_error *err)
{
    samda_rtstruct_roi rois[SAMDA_ADAPTER_MAX_LABELS];
    size_t n = 0;
    for (size_t l = 0; l < m->n_labels && n < SAMDA_ADAPTER_MAX_LABELS; l++) {
        if (!m->wanted[l]) continue;
        const samda_adapter_label *lab = samda_adapter_label_at(m->labels, l);
        samda_rtstruct_roi *r = &rois[n++];
        samda_rtstruct_roi_init(r);
        r->name = lab->name;
        r->category = code(lab->category_code, lab->category_scheme, lab->category_meaning);
        r->type = code(lab->type_code, lab->type_scheme, lab->type_meaning);
        r->type_modifier = code(lab->type_modifier_code, lab->type_modifier_scheme, lab->type_modifier_meaning);
        r->has_color = true;
        memcpy(r->rgb, lab->rgb, 3);
        r->algorithm_name = "samda SAM-DA";
        r->mask = m->masks + l * label_bytes(m);
    }
    char desc[80];
    snprintf(desc, sizeof desc, "AI structures (samda%s%.30s)", m->site && *m->site ? ", site " : "",
             m->site ? m->site : "");
    samda_rtstruct_params p;
    samda_rtstruct_params_init(&p);
    p.series_description = desc;
    p.description = "SAM + site decoder adapter (SAM-DA), automatic, not reviewed";
    p.software_version = SAMDA_VERSION;
    samda_rtstruct_result res;
    samda_status st = samda_rtstruct_write(m->vol, &p, rois, n, path, &res, err);
    if (st == SAMDA_OK) {
        snprintf(series_uid, SAMDA_UID_SIZE, "%s", res.series_instance_uid);
        snprintf(sop_uid, SAMDA_UID_SIZE, "%s", res.sop_instance_uid);
    }
    return st;
}

static samda_status write_sr(const samdad_result_masks *m, const char *path, char *series_uid, char *sop_uid,
                             samda_error *err)
{
    samda_sr_group groups[SAMDA_ADAPTER_MAX_LABELS];
    size_t n = 0;
    for (size_t l = 0; l < m->n_labels && n < SAMDA_ADAPTER_MAX_LABELS; l++) {
        if (!m->wanted[l] || !m->segment_numbers[l]) continue;
        const samda_adapter_label *lab = samda_adapter_label_at(m->labels, l);
        samda_sr_group *g = &groups[n++];
        memset(g, 0, sizeof *g);
        g->name = lab->name;
        g->type = code(lab->type_code, lab->type_scheme, lab->type_meaning);
        g->region = code(lab->region_code, lab->region_scheme, lab->region_meaning);
        g->segment_number = m->segment_numbers[l];
        g->mask = m->masks + l * label_bytes(m);
    }
    char desc[80];
    snprintf(desc, sizeof desc, "AI measurements (samda%s%.30s)", m->site && *m->site ? ", site " : "",
             m->site ? m->site : "");
    samda_sr_params p;
    samda_sr_params_init(&p);
    p.series_description = desc;
    p.software_version = SAMDA_VERSION;
    p.seg_sop_instance_uid = m->seg_sop_uid;
    p.seg_series_instance_uid = m->seg_series_uid;
    samda_sr_result res;
    samda_status st = samda_sr_write(m->vol, &p, groups, n, path, &res, err);
    if (st == SAMDA_OK) {
        snprintf(series_uid, SAMDA_UID_SIZE, "%s", res.series_instance_uid);
        snprintf(sop_uid, SAMDA_UID_SIZE, "%s", res.sop_instance_uid);
    }
    return st;
}

/* Write one object into a temporary file of the store and commit it in place. */
static samda_status make_one(samda_store *store, const char *kind, write_fn fn, const char *study_uid,
                             const samdad_result_masks *m, samdad_result_object *o, samda_error *err)
{
    memset(o, 0, sizeof *o);
    snprintf(o->kind, sizeof o->kind, "%s", kind);
    samda_tmp_file tmp;
    samda_status st = samda_store_object_tmp_open(store, &tmp, err);
    if (st != SAMDA_OK) return st;
    close(tmp.fd);
    tmp.fd = -1;
    samda_dicom_header h;
    if ((st = fn(m, tmp.path, o->series_uid, o->sop_uid, err)) == SAMDA_OK &&
        (st = samda_dicom_read_header(tmp.path, &h, err)) == SAMDA_OK &&
        (st = samda_dicom_check_instance(tmp.path, &h, err)) == SAMDA_OK &&
        (tmp.fd = open(tmp.path, O_RDWR | O_CLOEXEC)) < 0)
        st = samda_fail(err, SAMDA_EIO, "reopening the written %s: %s", kind, strerror(errno));
    if (st != SAMDA_OK) {
        unlink(tmp.path);
        return st;
    }
    /* what the ingest entry records of an instance, with the result's site */
    samdad_meta_from_header(&h, &o->meta);
    if (m->site) snprintf(o->meta.site, sizeof o->meta.site, "%s", m->site);
    return samda_store_object_commit(store, &tmp, SAMDA_OBJECT_SEG, study_uid, o->series_uid, o->sop_uid, &o->obj,
                                     err); /* consumes tmp */
}

samda_status samdad_result_formats_write(samda_store *store, unsigned outputs, const char *study_uid,
                                         const samdad_result_masks *m, samdad_result_objects *out, samda_error *err)
{
    out->n = 0;
    samda_status st = SAMDA_OK;
    if (outputs & SAMDA_OUTPUT_RTSTRUCT) {
        if ((st = make_one(store, "rtstruct", write_rtstruct, study_uid, m, &out->v[out->n], err)) != SAMDA_OK)
            return st;
        out->n++;
    }
    if (outputs & SAMDA_OUTPUT_SR) {
        if ((st = make_one(store, "sr", write_sr, study_uid, m, &out->v[out->n], err)) != SAMDA_OK) return st;
        out->n++;
    }
    return SAMDA_OK;
}

size_t samdad_result_formats_specs(const samdad_result_objects *objs, samda_result_object_spec *out)
{
    for (size_t i = 0; i < objs->n; i++) {
        const samdad_result_object *o = &objs->v[i];
        out[i] = (samda_result_object_spec){.kind = o->kind, .series_uid = o->series_uid, .sop_uid = o->sop_uid,
                                            .object = &o->obj, .meta = &o->meta};
    }
    return objs->n;
}

samda_status samdad_result_formats_recorded(samda_store *store, int64_t result_id, samdad_result_objects *out,
                                            samda_error *err)
{
    out->n = 0;
    samda_result_object *rows = NULL;
    size_t n = 0;
    samda_status st = samda_store_result_object_list(store, result_id, &rows, &n, err);
    for (size_t i = 0; st == SAMDA_OK && i < n && out->n < 2; i++) {
        samdad_result_object *o = &out->v[out->n++];
        snprintf(o->kind, sizeof o->kind, "%s", rows[i].kind);
        snprintf(o->series_uid, sizeof o->series_uid, "%s", rows[i].series_uid);
        snprintf(o->sop_uid, sizeof o->sop_uid, "%s", rows[i].sop_uid);
        o->obj = rows[i].object;
    }
    samda_store_free(rows);
    return st;
}

json_t *samdad_result_formats_json(const samdad_result_objects *objs)
{
    json_t *a = json_array();
    for (size_t i = 0; i < objs->n; i++)
        json_array_append_new(a, json_pack("{s:s, s:s, s:s}", "kind", objs->v[i].kind, "series_uid",
                                           objs->v[i].series_uid, "sop_uid", objs->v[i].sop_uid));
    return a;
}
