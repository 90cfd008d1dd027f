/* MONAI Label compatibility for samdad (api/monailabel.c has the wire): what 3D Slicer and OHIF
 * see as a MONAI Label app. Its models: "segmentation_SITE" per site (the site's adapter, run by
 * the job queue; the newest result of a series answers), and "sam_2d" (deepgrow type: clicks on one
 * slice, answered by an interactive session). Its datastore: the CT and MR series samdad holds; a
 * series is labelled once a ground-truth DICOM-SEG of it is stored. */
#include "api_core.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "dicom.h"
#include "json_out.h"
#include "random.h"
#include "safetensors.h"
#include "services_internal.h"

#define ML_PREFIX "segmentation_"
#define ML_CLICK_MODEL "sam_2d"
#define ML_JOB_WAIT_MS 300000 /* an automatic inference waits this long for a queued job */

/* ---- the datastore: series, and which have ground truth --------------------------------------- */

static bool is_image_series(const samda_series_info *s) { return !strcmp(s->modality, "CT") || !strcmp(s->modality, "MR"); }

/* Every series in the index (at most 100000), oldest study first as the index returns them. */
static samda_status all_series(samda_store *store, samda_series_info **rows, size_t *n, samda_error *err)
{
    samda_index_query q = {.limit = 100000};
    return samda_store_series_query(store, &q, rows, n, err);
}

/* The series that a stored DICOM-SEG (ground truth) refers to, as an object {series UID: SEG series UID}. */
static json_t *labelled_series(samda_store *store, const samda_series_info *rows, size_t n)
{
    json_t *set = json_object();
    for (size_t i = 0; i < n; i++) {
        if (strcmp(rows[i].modality, "SEG")) continue;
        samda_instance_row *segs = NULL;
        size_t ns = 0;
        samda_error e;
        if (samda_store_instance_list(store, rows[i].series_uid, 1, 0, &segs, &ns, &e) != SAMDA_OK) continue;
        char path[PATH_MAX];
        samda_seg *sg = NULL;
        if (ns && samda_store_object_path(store, segs[0].object.relpath, path, sizeof path, &e) == SAMDA_OK &&
            samda_seg_read(path, &sg, &e) == SAMDA_OK)
            json_object_set_new(set, samda_seg_get_info(sg)->referenced_series_instance_uid, json_string(rows[i].series_uid));
        samda_seg_free(sg);
        samda_store_free(segs);
    }
    return set;
}

/* The label names of a site: its active adapter's, else the configured default adapter's. */
json_t *samdad_ml_site_labels(samdad_api_core *core, const char *site)
{
    samda_store *store = samdad_store(core->ctx);
    json_t *names = json_array(), *codes = json_array();
    samda_adapter_row row;
    samda_error e;
    if (samda_store_adapter_get_active(store, site, &row, &e) == SAMDA_OK) {
        json_t *a = samdad_adapter_json(&row);
        json_array_extend(names, json_object_get(a, "labels"));
        json_decref(a);
        samda_adapter_clear(&row);
    } else {
        samda_config *cfg = samdad_config_get(core->ctx);
        samda_safetensors_info si;
        if (cfg->model_adapter && cfg->model_adapter[0] &&
            samda_safetensors_check_file(cfg->model_adapter, NULL, &si, &e) == SAMDA_OK) {
            samdad_labels_collect(json_object_get(si.metadata, "labels"), names, codes);
            samda_safetensors_info_clear(&si);
        }
        samda_config_unref(cfg);
    }
    json_decref(codes);
    return names;
}

static samda_status ml_info(void *v, json_t **out, samda_error *err)
{
    samdad_api_core *core = CORE(v);
    samda_store *store = samdad_store(core->ctx);
    samda_site *sites = NULL;
    size_t ns = 0;
    samda_status st = samda_store_site_list(store, &sites, &ns, err);
    if (st != SAMDA_OK) return st;
    json_t *models = json_object(), *all = json_array(), *trainers = json_object();
    for (size_t i = 0; i < ns; i++) {
        json_t *names = samdad_ml_site_labels(core, sites[i].name), *map = json_object();
        size_t k;
        json_t *nm;
        json_array_foreach(names, k, nm) {
            json_object_set_new(map, json_string_value(nm), json_integer((json_int_t)k + 1));
            bool seen = false;
            for (size_t a = 0; a < json_array_size(all); a++) seen |= json_equal(json_array_get(all, a), nm);
            if (!seen) json_array_append(all, nm);
        }
        json_decref(names);
        char name[SAMDA_NAME_SIZE + 16], desc[200];
        snprintf(name, sizeof name, ML_PREFIX "%s", sites[i].name);
        snprintf(desc, sizeof desc, "samda SAM + decoder adapter of site %s, whole series (newest result, else a queued job)",
                 sites[i].name);
        json_object_set_new(models, name, json_pack("{s:s, s:i, s:s, s:o, s:{}}", "type", "segmentation", "dimension", 3,
                                                    "description", desc, "labels", map, "config"));
        snprintf(desc, sizeof desc, "adapter training of site %s from its series' ground-truth DICOM-SEGs", sites[i].name);
        json_object_set_new(trainers, name, json_pack("{s:s, s:{}}", "description", desc, "config"));
    }
    samda_site_list_free(sites, ns);
#ifdef SAMDA_HAVE_MODEL
    if (samdad_model_loaded(core->ctx))
        json_object_set_new(models, ML_CLICK_MODEL,
                            json_pack("{s:s, s:i, s:s, s:O, s:{}}", "type", "deepgrow", "dimension", 2, "description",
                                      "SAM on one slice: foreground/background clicks [i, j, k] and an optional roi box",
                                      "labels", all, "config"));
#endif
    samda_series_info *rows = NULL;
    size_t n = 0, total = 0, done = 0;
    if ((st = all_series(store, &rows, &n, err)) != SAMDA_OK) {
        json_decref(models);
        json_decref(all);
        json_decref(trainers);
        return st;
    }
    json_t *gt = labelled_series(store, rows, n);
    for (size_t i = 0; i < n; i++)
        if (is_image_series(&rows[i])) {
            total++;
            done += json_object_get(gt, rows[i].series_uid) != NULL;
        }
    json_decref(gt);
    samda_store_free(rows);
    *out = json_pack("{s:s, s:s, s:s, s:o, s:o, s:o, s:{s:{s:s}, s:{s:s}}, s:{}, s:{}, s:{s:I, s:I}}", "name", "samda",
                     "description", "samda: SAM with per-site decoder adapters over a PACS (MONAI Label compatible API)",
                     "version", SAMDA_VERSION, "labels", all, "models", models, "trainers", trainers, "strategies", "random",
                     "description", "a random series without a ground-truth DICOM-SEG", "first", "description",
                     "the first series received without a ground-truth DICOM-SEG", "scoring", "train_stats", "datastore",
                     "total", (json_int_t)total, "completed", (json_int_t)done);
    return *out ? SAMDA_OK : samda_fail(err, SAMDA_ENOMEM, "out of memory");
}

static samda_status ml_datastore(void *v, json_t **out, samda_error *err)
{
    samda_store *store = samdad_store(CORE(v)->ctx);
    samda_series_info *rows = NULL;
    size_t n = 0;
    samda_status st = all_series(store, &rows, &n, err);
    if (st != SAMDA_OK) return st;
    json_t *gt = labelled_series(store, rows, n), *objects = json_object();
    size_t total = 0, done = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_image_series(&rows[i])) continue;
        total++;
        const json_t *seg = json_object_get(gt, rows[i].series_uid);
        json_t *labels = json_object();
        if (seg) {
            done++;
            json_object_set_new(labels, "final", json_pack("{s:s, s:{s:O}}", "ext", ".dcm", "info", "seg_series_uid", seg));
        }
        json_object_set_new(objects, rows[i].series_uid,
                            json_pack("{s:{s:s, s:{s:s, s:s, s:s, s:I}}, s:o}", "image", "ext", ".nrrd", "info", "study_uid",
                                      rows[i].study_uid, "modality", rows[i].modality, "site", rows[i].site, "instances",
                                      (json_int_t)rows[i].n_instances, "labels", labels));
    }
    json_decref(gt);
    samda_store_free(rows);
    *out = json_pack("{s:s, s:s, s:I, s:I, s:o}", "name", "samda", "description", "the CT and MR series samdad holds", "total",
                     (json_int_t)total, "completed", (json_int_t)done, "objects", objects);
    return *out ? SAMDA_OK : samda_fail(err, SAMDA_ENOMEM, "out of memory");
}

/* ---- volumes and their geometry --------------------------------------------------------------- */

samda_status samdad_ml_load_series(samda_store *store, const char *series, samda_series_info *si, samda_volume **vol,
                                   samda_error *err)
{
    samda_status st = samda_store_series_get(store, series, si, err);
    if (st == SAMDA_ENOENT) return samda_fail(err, SAMDA_ENOENT, "unknown series %s (image must be a SeriesInstanceUID samda holds)", series);
    if (st != SAMDA_OK) return st;
    char **paths = NULL;
    size_t n = 0;
    if ((st = samda_store_series_paths(store, series, &paths, &n, err)) != SAMDA_OK) return st;
    st = samda_dicom_volume_load((const char *const *)paths, n, NULL, vol, err);
    samda_store_paths_free(paths, n);
    return st;
}

/* i along the rows' direction (columns), j along the columns' (rows), k from the first slice to the
 * last (or along the normal by the slice spacing for one slice); the origin is the first slice. */
void samdad_ml_geometry(const samda_volume *vol, samda_api_volume *out)
{
    const samda_volume_info *vi = samda_volume_get_info(vol);
    out->sizes[0] = vi->cols;
    out->sizes[1] = vi->rows;
    out->sizes[2] = vi->n_slices;
    const double *p0 = samda_volume_slice_get(vol, 0)->position, *pn = samda_volume_slice_get(vol, vi->n_slices - 1)->position;
    double dz = vi->slice_spacing > 0 ? vi->slice_spacing : 1;
    for (int c = 0; c < 3; c++) {
        out->directions[0][c] = vi->orientation[c] * vi->pixel_spacing[1];
        out->directions[1][c] = vi->orientation[3 + c] * vi->pixel_spacing[0];
        out->directions[2][c] = vi->n_slices > 1 ? (pn[c] - p0[c]) / (double)(vi->n_slices - 1) : vi->normal[c] * dz;
        out->origin[c] = p0[c];
    }
}

static samda_status ml_image(void *v, const char *series, samda_api_volume *out, samda_error *err)
{
    samda_series_info si;
    samda_volume *vol = NULL;
    samda_status st = samdad_ml_load_series(samdad_store(CORE(v)->ctx), series, &si, &vol, err);
    if (st != SAMDA_OK) return st;
    const samda_volume_info *vi = samda_volume_get_info(vol);
    size_t n = vi->n_slices * vi->rows * vi->cols;
    const float *px = samda_volume_voxels(vol);
    bool whole = true;
    for (size_t i = 0; i < n && whole; i++) whole = px[i] == floorf(px[i]) && px[i] >= -32768 && px[i] <= 32767;
    samdad_ml_geometry(vol, out);
    out->type = whole ? SAMDA_API_VOXEL_I16 : SAMDA_API_VOXEL_F32;
    out->data = malloc(n * (whole ? 2 : 4));
    if (out->data && whole)
        for (size_t i = 0; i < n; i++) ((int16_t *)out->data)[i] = (int16_t)px[i];
    else if (out->data)
        memcpy(out->data, px, n * 4);
    samda_volume_free(vol);
    return out->data ? SAMDA_OK : samda_fail(err, SAMDA_ENOMEM, "out of memory");
}

/* ---- inference --------------------------------------------------------------------------------- */

/* The newest result of a series; when there is none, a segmentation job for it, waited for. */
static samda_status newest_result(samdad_api_core *core, const samda_series_info *si, int64_t token_id, samda_result *res,
                                  samda_error *err)
{
    samda_store *store = samdad_store(core->ctx);
    for (int round = 0; round < 2; round++) {
        samda_result *rows = NULL;
        size_t n = 0;
        samda_status st = samda_store_result_list(store, si->series_uid, &rows, &n, err);
        if (st != SAMDA_OK) return st;
        if (n) {
            *res = rows[0];
            memset(&rows[0], 0, sizeof rows[0]);
            samda_result_list_free(rows, n);
            return SAMDA_OK;
        }
        samda_result_list_free(rows, n);
        if (round) break;
        char params[64];
        snprintf(params, sizeof params, "{\"requested_by\":%lld}", (long long)token_id);
        samda_config *cfg = samdad_config_get(core->ctx);
        samda_job_spec spec = {.kind = "segment", .priority = 10, .site = si->site[0] ? si->site : NULL,
                               .study_uid = si->study_uid, .series_uid = si->series_uid, .params_json = params,
                               .max_attempts = (int)cfg->job_max_attempts};
        samda_config_unref(cfg);
        int64_t id = 0;
        bool existed = false;
        if ((st = samda_store_job_enqueue(store, &spec, &id, &existed, err)) != SAMDA_OK) return st;
        samda_log(&core->ctx->log, SAMDA_LOG_INFO, "api", "MONAI Label inference queued a segmentation", "job=%lld token=%lld",
                  (long long)id, (long long)token_id);
#ifdef SAMDA_HAVE_MODEL
        samdad_worker_kick(samdad_worker_of(core->ctx));
#endif
        for (int waited = 0;; waited += 200) {
            samda_job job;
            if ((st = samda_store_job_get(store, id, &job, err)) != SAMDA_OK) return st;
            samda_job_state js = job.state;
            char why[200];
            snprintf(why, sizeof why, "%s", job.error ? job.error : "");
            samda_job_clear(&job);
            if (js == SAMDA_JOB_DONE) break;
            if (js == SAMDA_JOB_FAILED || js == SAMDA_JOB_CANCELLED)
                return samda_fail(err, SAMDA_EMODEL, "segmentation job %lld %s: %s", (long long)id,
                                  js == SAMDA_JOB_FAILED ? "failed" : "was cancelled", why);
            if (waited >= ML_JOB_WAIT_MS)
                return samda_fail(err, SAMDA_ETIMEDOUT, "segmentation job %lld is still %s: ask again later (GET /api/v1/jobs/%lld)",
                                  (long long)id, samda_job_state_name(js), (long long)id);
            nanosleep(&(struct timespec){0, 200 * 1000000L}, NULL);
        }
    }
    return samda_fail(err, SAMDA_ENOENT, "the segmentation of series %s produced no result (no label of the adapter found?)",
                      si->series_uid);
}

static samda_status infer_auto(samdad_api_core *core, const samda_api_ml_infer *req, samda_api_volume *label,
                               json_t **params, void **seg_out, size_t *seg_len, samda_error *err)
{
    samda_store *store = samdad_store(core->ctx);
    const char *site = req->model + strlen(ML_PREFIX);
    samda_series_info si;
    samda_status st = samda_store_series_get(store, req->series_uid, &si, err);
    if (st == SAMDA_ENOENT) return samda_fail(err, SAMDA_ENOENT, "unknown series %s (image must be a SeriesInstanceUID samda holds)", req->series_uid);
    if (st != SAMDA_OK) return st;
    if (strcmp(si.site, site))
        return samda_fail(err, SAMDA_EINVAL, "series %s belongs to site %s: use model " ML_PREFIX "%s", req->series_uid,
                          si.site[0] ? si.site : "(none)", si.site);
    samda_result res;
    if ((st = newest_result(core, &si, req->token_id, &res, err)) != SAMDA_OK) return st;
    if (req->want_seg) {
        st = samda_store_object_read(store, res.object.relpath, (size_t)1 << 30, seg_out, seg_len, err);
        *params = json_pack("{s:I}", "result_id", (json_int_t)res.id);
        samda_result_clear(&res);
        return st;
    }
    char seg_path[PATH_MAX];
    samda_volume *vol = NULL;
    samda_seg *seg = NULL;
    st = samda_store_object_path(store, res.object.relpath, seg_path, sizeof seg_path, err);
    json_int_t result_id = res.id;
    samda_result_clear(&res);
    if (st == SAMDA_OK) st = samdad_ml_load_series(store, req->series_uid, &si, &vol, err);
    if (st == SAMDA_OK) st = samda_seg_read(seg_path, &seg, err);
    if (st == SAMDA_OK) {
        samdad_ml_geometry(vol, label);
        label->type = SAMDA_API_VOXEL_U8;
        label->data = malloc(label->sizes[0] * label->sizes[1] * label->sizes[2]);
        st = label->data ? samda_seg_to_label_volume(seg, vol, label->data, NULL, err) : samda_fail(err, SAMDA_ENOMEM, "out of memory");
    }
    if (st == SAMDA_OK) {
        json_t *names = json_object();
        for (size_t i = 0; i < samda_seg_get_info(seg)->n_segments; i++) {
            const samda_seg_segment_info *s = samda_seg_segment_get(seg, i);
            json_object_set_new(names, s->label, json_integer(s->number));
        }
        *params = json_pack("{s:o, s:I, s:s}", "label_names", names, "result_id", result_id, "model", req->model);
    }
    samda_seg_free(seg);
    samda_volume_free(vol);
    return st;
}

#ifdef SAMDA_HAVE_MODEL
/* Points [[i, j, k], ...] of params[key] on slice k into the prompt (label 1 or 0). */
static samda_status add_points(const json_t *params, const char *key, long k, int lab, samdad_prompt *p, samda_error *err)
{
    const json_t *a = json_object_get(params, key);
    if (!a || json_is_null(a)) return SAMDA_OK;
    if (!json_is_array(a)) return samda_fail(err, SAMDA_EINVAL, "params.%s: an array of [i, j, k] voxel points", key);
    size_t i;
    const json_t *pt;
    json_array_foreach(a, i, pt) {
        if (!json_is_array(pt) || json_array_size(pt) != 3 || !json_is_number(json_array_get(pt, 0)) ||
            !json_is_number(json_array_get(pt, 1)) || !json_is_number(json_array_get(pt, 2)))
            return samda_fail(err, SAMDA_EINVAL, "params.%s[%zu]: [i, j, k] voxel indices", key, i);
        if (lround(json_number_value(json_array_get(pt, 2))) != k) continue; /* another slice's click */
        if (p->n_points >= 64) return samda_fail(err, SAMDA_EINVAL, "params: at most 64 points on one slice");
        p->points[p->n_points][0] = (float)json_number_value(json_array_get(pt, 0));
        p->points[p->n_points][1] = (float)json_number_value(json_array_get(pt, 1));
        p->labels[p->n_points++] = lab;
    }
    return SAMDA_OK;
}

/* The slice the clicks are on: params.slice, else the k of the first click, else the roi's first k. */
static bool click_slice(const json_t *params, long *k)
{
    const json_t *s = json_object_get(params, "slice");
    if (json_is_integer(s)) return *k = (long)json_integer_value(s), true;
    static const char *const keys[] = {"foreground", "background"};
    for (int i = 0; i < 2; i++) {
        const json_t *p0 = json_array_get(json_object_get(params, keys[i]), 0);
        if (json_is_number(json_array_get(p0, 2))) return *k = lround(json_number_value(json_array_get(p0, 2))), true;
    }
    const json_t *roi = json_object_get(params, "roi");
    if (json_array_size(roi) == 6 && json_is_number(json_array_get(roi, 4))) return *k = lround(json_number_value(json_array_get(roi, 4))), true;
    return false;
}

static samda_status infer_clicks(samdad_api_core *core, const samda_api_ml_infer *req, samda_api_volume *label,
                                 json_t **params, samda_error *err)
{
    if (!samdad_model_loaded(core->ctx)) return samda_fail(err, SAMDA_ENOTSUP, "model " ML_CLICK_MODEL " needs the model worker: set [model] checkpoint");
    if (req->want_seg) return samda_fail(err, SAMDA_ENOTSUP, "output=dicom_seg is given by the " ML_PREFIX "SITE models only");
    long k;
    if (!click_slice(req->params, &k))
        return samda_fail(err, SAMDA_EINVAL, "params: give foreground (or background) points [[i, j, k], ...], a roi, or slice");
    samdad_prompt p;
    memset(&p, 0, sizeof p);
    samda_status st;
    if ((st = add_points(req->params, "foreground", k, 1, &p, err)) != SAMDA_OK ||
        (st = add_points(req->params, "background", k, 0, &p, err)) != SAMDA_OK)
        return st;
    const json_t *roi = json_object_get(req->params, "roi");
    if (roi && !json_is_null(roi) && !(json_is_array(roi) && json_array_size(roi) == 0)) {
        double b[6];
        for (size_t i = 0; i < 6; i++) {
            if (json_array_size(roi) != 6 || !json_is_number(json_array_get(roi, i)))
                return samda_fail(err, SAMDA_EINVAL, "params.roi: [i0, i1, j0, j1, k0, k1] voxel bounds");
            b[i] = json_number_value(json_array_get(roi, i));
        }
        p.has_box = true;
        p.box[0] = (float)fmin(b[0], b[1]);
        p.box[1] = (float)fmin(b[2], b[3]);
        p.box[2] = (float)fmax(b[0], b[1]);
        p.box[3] = (float)fmax(b[2], b[3]);
    }
    if (!p.n_points && !p.has_box) return samda_fail(err, SAMDA_EINVAL, "params: no foreground or background point on slice %ld, and no roi", k);
    p.multimask = p.n_points == 1 && !p.has_box; /* one click is ambiguous: SAM's best of three */
    samda_series_info si;
    samda_volume *vol = NULL;
    if ((st = samdad_ml_load_series(samdad_store(core->ctx), req->series_uid, &si, &vol, err)) != SAMDA_OK) return st;
    const samda_volume_info *vi = samda_volume_get_info(vol);
    if (k < 0 || (size_t)k >= vi->n_slices) {
        size_t ns = vi->n_slices;
        samda_volume_free(vol);
        return samda_fail(err, SAMDA_EINVAL, "params: slice %ld is out of range (0..%zu)", k, ns - 1);
    }
    char id[SAMDAD_SESSION_ID_SIZE] = "";
    samdad_prediction pr;
    memset(&pr, 0, sizeof pr);
    st = samdad_session_on_slice(core, vol, (size_t)k, si.site, 0, 0, id, err);
    if (st == SAMDA_OK) {
        st = samdad_session_predict(core, id, &p, &pr, err);
        samda_error ignore;
        samdad_session_drop(core, id, &ignore);
    }
    if (st == SAMDA_OK) {
        samdad_ml_geometry(vol, label);
        label->type = SAMDA_API_VOXEL_U8;
        size_t plane = label->sizes[0] * label->sizes[1];
        label->data = calloc(plane * label->sizes[2], 1);
        if (!label->data) st = samda_fail(err, SAMDA_ENOMEM, "out of memory");
        else
            for (size_t i = 0; i < plane; i++) ((uint8_t *)label->data)[(size_t)k * plane + i] = pr.mask[i] ? 1 : 0;
    }
    if (st == SAMDA_OK) {
        const char *name = json_string_value(json_object_get(req->params, "label"));
        *params = json_pack("{s:{s:i}, s:i, s:f, s:s}", "label_names", name && *name ? name : "label", 1, "slice", (int)k,
                            "iou", pr.n_masks ? pr.iou[pr.best] : 0.0, "model", ML_CLICK_MODEL);
    }
    free(pr.mask);
    samda_volume_free(vol);
    return st;
}
#endif

static samda_status ml_infer(void *v, const samda_api_ml_infer *req, samda_api_volume *label, json_t **params, void **seg,
                             size_t *seg_len, samda_error *err)
{
    samdad_api_core *core = CORE(v);
    if (!strncmp(req->model, ML_PREFIX, strlen(ML_PREFIX)) && req->model[strlen(ML_PREFIX)]) {
        samda_status st = samdad_require_site(samdad_store(core->ctx), req->model + strlen(ML_PREFIX), err);
        if (st == SAMDA_ENOENT) return samda_fail(err, SAMDA_ENOENT, "unknown model %s: GET /monailabel/info/ lists them", req->model);
        if (st != SAMDA_OK) return st;
        return infer_auto(core, req, label, params, seg, seg_len, err);
    }
#ifdef SAMDA_HAVE_MODEL
    if (!strcmp(req->model, ML_CLICK_MODEL)) return infer_clicks(core, req, label, params, err);
#endif
    return samda_fail(err, SAMDA_ENOENT, "unknown model %s: GET /monailabel/info/ lists them", req->model);
}

/* ---- active learning and training ------------------------------------------------------------- */

static samda_status ml_next_sample(void *v, const char *strategy, const json_t *params, json_t **out, samda_error *err)
{
    (void)params;
    if (strcmp(strategy, "random") && strcmp(strategy, "first"))
        return samda_fail(err, SAMDA_ENOENT, "unknown strategy %s (random or first)", strategy);
    samda_store *store = samdad_store(CORE(v)->ctx);
    samda_series_info *rows = NULL;
    size_t n = 0, m = 0;
    samda_status st = all_series(store, &rows, &n, err);
    if (st != SAMDA_OK) return st;
    json_t *gt = labelled_series(store, rows, n);
    size_t *cand = malloc((n ? n : 1) * sizeof *cand);
    for (size_t i = 0; cand && i < n; i++)
        if (is_image_series(&rows[i]) && !json_object_get(gt, rows[i].series_uid)) cand[m++] = i;
    json_decref(gt);
    if (!cand) {
        samda_store_free(rows);
        return samda_fail(err, SAMDA_ENOMEM, "out of memory");
    }
    if (!m) {
        *out = json_object(); /* nothing left to label: the clients say so */
    } else {
        size_t pick = 0;
        if (!strcmp(strategy, "random")) {
            uint64_t r = 0;
            if (samda_random_bytes(&r, sizeof r, NULL) == SAMDA_OK) pick = (size_t)(r % m);
        }
        const samda_series_info *s = &rows[cand[pick]];
        char name[SAMDA_UID_SIZE + 8];
        snprintf(name, sizeof name, "%s.nrrd", s->series_uid);
        *out = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:I}", "id", s->series_uid, "name", name, "strategy", strategy, "study_uid",
                         s->study_uid, "modality", s->modality, "site", s->site, "remaining", (json_int_t)m);
    }
    free(cand);
    samda_store_free(rows);
    return *out ? SAMDA_OK : samda_fail(err, SAMDA_ENOMEM, "out of memory");
}

static samda_status ml_train_status(void *v, bool *running, json_t **out, samda_error *err)
{
    samda_store *store = samdad_store(CORE(v)->ctx);
    samda_job_filter f = {.state = -1, .kind = "train", .limit = 1};
    samda_job *jobs = NULL;
    size_t n = 0;
    samda_status st = samda_store_job_list(store, &f, &jobs, &n, err);
    if (st != SAMDA_OK) return st;
    *running = n && (jobs[0].state == SAMDA_JOB_PENDING || jobs[0].state == SAMDA_JOB_RUNNING);
    if (!n) {
        *out = json_pack("{s:s}", "status", "NOT_RUNNING");
    } else {
        static const char *const names[] = {"PENDING", "RUNNING", "DONE", "ERROR", "STOPPED"};
        *out = json_pack("{s:s, s:I, s:s, s:f}", "status", jobs[0].state == SAMDA_JOB_PENDING ? "RUNNING" : names[jobs[0].state],
                         "job_id", (json_int_t)jobs[0].id, "site", jobs[0].site, "progress", jobs[0].progress);
        if (jobs[0].state == SAMDA_JOB_PENDING) json_object_set_new(*out, "queued", json_true());
    }
    samda_job_list_free(jobs, n);
    return *out ? SAMDA_OK : samda_fail(err, SAMDA_ENOMEM, "out of memory");
}

/* The site's studies that hold a ground-truth DICOM-SEG of one of their series. */
static json_t *gt_studies(samda_store *store, const char *site)
{
    samda_series_info *rows = NULL;
    size_t n = 0;
    samda_error e;
    json_t *studies = json_array();
    if (all_series(store, &rows, &n, &e) != SAMDA_OK) return studies;
    json_t *gt = labelled_series(store, rows, n), *seen = json_object();
    for (size_t i = 0; i < n; i++) {
        if (!is_image_series(&rows[i]) || strcmp(rows[i].site, site) || !json_object_get(gt, rows[i].series_uid)) continue;
        if (json_object_get(seen, rows[i].study_uid)) continue;
        json_object_set_new(seen, rows[i].study_uid, json_true());
        json_array_append_new(studies, json_string(rows[i].study_uid));
    }
    json_decref(seen);
    json_decref(gt);
    samda_store_free(rows);
    return studies;
}

static samda_status ml_train_start(void *v, const char *model, const json_t *params, int64_t token_id, json_t **out,
                                   samda_error *err)
{
    samdad_api_core *core = CORE(v);
    samda_store *store = samdad_store(core->ctx);
    char site[SAMDA_NAME_SIZE] = "";
    if (!model[0]) { /* "train all": the only site */
        samda_site *sites = NULL;
        size_t ns = 0;
        samda_status st = samda_store_site_list(store, &sites, &ns, err);
        if (st != SAMDA_OK) return st;
        if (ns == 1) snprintf(site, sizeof site, "%s", sites[0].name);
        samda_site_list_free(sites, ns);
        if (!site[0]) return samda_fail(err, SAMDA_EINVAL, "name the model to train: POST /monailabel/train/" ML_PREFIX "SITE");
    } else if (!strncmp(model, ML_PREFIX, strlen(ML_PREFIX))) {
        snprintf(site, sizeof site, "%s", model + strlen(ML_PREFIX));
    } else {
        return samda_fail(err, SAMDA_ENOENT, "model %s cannot be trained: train an " ML_PREFIX "SITE model", model);
    }
    json_t *body = json_pack("{s:o}", "studies", gt_studies(store, site));
    /* the clients' own keys (client_id, max_epochs, ...) are MONAI's; samda's training takes these */
    static const char *const pass[] = {"epochs", "lr", "seed", "max_seconds", "activate", "holdout"};
    for (size_t i = 0; i < sizeof pass / sizeof *pass; i++)
        if (json_object_get(params, pass[i])) json_object_set(body, pass[i], json_object_get(params, pass[i]));
    if (!json_object_get(body, "activate")) json_object_set_new(body, "activate", json_string("if_better"));
    samda_status st = json_array_size(json_object_get(body, "studies"))
                          ? samdad_api_adapter_train(v, site, body, token_id, out, err)
                          : samda_fail(err, SAMDA_EINVAL, "site %s has no series with a ground-truth DICOM-SEG to train on: save final labels first", site);
    json_decref(body);
    return st;
}

void samdad_api_bind_monailabel(samda_api_services *svc, bool with_model)
{
    svc->ml_info = ml_info;
    svc->ml_datastore = ml_datastore;
    svc->ml_image = ml_image;
    svc->ml_next_sample = ml_next_sample;
    svc->ml_train_status = ml_train_status;
    svc->ml_save_label = samdad_ml_save_label;
    if (with_model) {
        svc->ml_infer = ml_infer;
        svc->ml_train_start = ml_train_start;
    }
}
