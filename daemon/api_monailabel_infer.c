/* POST /monailabel/infer/{model} for samdad: the automatic models (segmentation_SITE: the series'
 * newest result, else a segmentation job waited for) and the click model (sam_2d: an interactive
 * session on one slice), both answered as a label volume on the series' grid. */
#include "api_core.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dicom.h"
#include "services_internal.h"

#define ML_JOB_WAIT_MS 300000 /* an automatic inference waits this long for a queued job */

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
    const char *site = req->model + strlen(SAMDAD_ML_AUTO_PREFIX);
    samda_series_info si;
    samda_status st = samda_store_series_get(store, req->series_uid, &si, err);
    if (st == SAMDA_ENOENT) return samda_fail(err, SAMDA_ENOENT, "unknown series %s (image must be a SeriesInstanceUID samda holds)", req->series_uid);
    if (st != SAMDA_OK) return st;
    if (strcmp(si.site, site))
        return samda_fail(err, SAMDA_EINVAL, "series %s belongs to site %s: use model " SAMDAD_ML_AUTO_PREFIX "%s", req->series_uid,
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

/* The prompt on slice *k from MONAI Label's params: points of that slice, the roi as a box, and
 * SAM's best of three masks for one lone click (it is ambiguous). */
static samda_status click_prompt(const json_t *params, long *k, samdad_prompt *p, samda_error *err)
{
    if (!click_slice(params, k))
        return samda_fail(err, SAMDA_EINVAL, "params: give foreground (or background) points [[i, j, k], ...], a roi, or slice");
    memset(p, 0, sizeof *p);
    samda_status st;
    if ((st = add_points(params, "foreground", *k, 1, p, err)) != SAMDA_OK ||
        (st = add_points(params, "background", *k, 0, p, err)) != SAMDA_OK)
        return st;
    const json_t *roi = json_object_get(params, "roi");
    if (roi && !json_is_null(roi) && !(json_is_array(roi) && json_array_size(roi) == 0)) {
        double b[6];
        for (size_t i = 0; i < 6; i++) {
            if (json_array_size(roi) != 6 || !json_is_number(json_array_get(roi, i)))
                return samda_fail(err, SAMDA_EINVAL, "params.roi: [i0, i1, j0, j1, k0, k1] voxel bounds");
            b[i] = json_number_value(json_array_get(roi, i));
        }
        p->has_box = true;
        p->box[0] = (float)fmin(b[0], b[1]);
        p->box[1] = (float)fmin(b[2], b[3]);
        p->box[2] = (float)fmax(b[0], b[1]);
        p->box[3] = (float)fmax(b[2], b[3]);
    }
    if (!p->n_points && !p->has_box)
        return samda_fail(err, SAMDA_EINVAL, "params: no foreground or background point on slice %ld, and no roi", *k);
    p->multimask = p->n_points == 1 && !p->has_box;
    return SAMDA_OK;
}

/* One prediction in a session opened on slice k and dropped after it; the mask painted on that
 * slice of a label volume of vol's grid (other slices 0). */
static samda_status predict_on_slice(samdad_api_core *core, const samda_volume *vol, long k, const char *site,
                                     const samdad_prompt *p, samda_api_volume *label, float *iou, samda_error *err)
{
    const samda_volume_info *vi = samda_volume_get_info(vol);
    if (k < 0 || (size_t)k >= vi->n_slices)
        return samda_fail(err, SAMDA_EINVAL, "params: slice %ld is out of range (0..%zu)", k, vi->n_slices - 1);
    char id[SAMDAD_SESSION_ID_SIZE] = "";
    samdad_prediction pr;
    memset(&pr, 0, sizeof pr);
    samda_status st = samdad_session_on_slice(core, vol, (size_t)k, site, 0, 0, id, err);
    if (st == SAMDA_OK) {
        st = samdad_session_predict(core, id, p, &pr, err);
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
        *iou = pr.n_masks ? pr.iou[pr.best] : 0.0f;
    }
    free(pr.mask);
    return st;
}

static samda_status infer_clicks(samdad_api_core *core, const samda_api_ml_infer *req, samda_api_volume *label,
                                 json_t **params, samda_error *err)
{
    if (!samdad_model_loaded(core->ctx))
        return samda_fail(err, SAMDA_ENOTSUP, "model " SAMDAD_ML_CLICK_MODEL " needs the model worker: set [model] checkpoint");
    if (req->want_seg)
        return samda_fail(err, SAMDA_ENOTSUP, "output=dicom_seg is given by the " SAMDAD_ML_AUTO_PREFIX "SITE models only");
    long k = -1;
    samdad_prompt p;
    samda_status st = click_prompt(req->params, &k, &p, err);
    if (st != SAMDA_OK) return st;
    samda_series_info si;
    samda_volume *vol = NULL;
    if ((st = samdad_ml_load_series(samdad_store(core->ctx), req->series_uid, &si, &vol, err)) != SAMDA_OK) return st;
    float iou = 0;
    st = predict_on_slice(core, vol, k, si.site, &p, label, &iou, err);
    samda_volume_free(vol);
    if (st != SAMDA_OK) return st;
    const char *name = json_string_value(json_object_get(req->params, "label"));
    *params = json_pack("{s:{s:i}, s:i, s:f, s:s}", "label_names", name && *name ? name : "label", 1, "slice", (int)k, "iou",
                        (double)iou, "model", SAMDAD_ML_CLICK_MODEL);
    return *params ? SAMDA_OK : samda_fail(err, SAMDA_ENOMEM, "out of memory");
}
#endif

samda_status samdad_ml_infer(void *v, const samda_api_ml_infer *req, samda_api_volume *label, json_t **params, void **seg,
                             size_t *seg_len, samda_error *err)
{
    samdad_api_core *core = CORE(v);
    if (req->session_id) return samdad_ml_session_infer(core, req, label, params, seg, seg_len, err);
    if (!strncmp(req->model, SAMDAD_ML_AUTO_PREFIX, strlen(SAMDAD_ML_AUTO_PREFIX)) && req->model[strlen(SAMDAD_ML_AUTO_PREFIX)]) {
        samda_status st = samdad_require_site(samdad_store(core->ctx), req->model + strlen(SAMDAD_ML_AUTO_PREFIX), err);
        if (st == SAMDA_ENOENT) return samda_fail(err, SAMDA_ENOENT, "unknown model %s: GET /monailabel/info/ lists them", req->model);
        if (st != SAMDA_OK) return st;
        return infer_auto(core, req, label, params, seg, seg_len, err);
    }
#ifdef SAMDA_HAVE_MODEL
    if (!strcmp(req->model, SAMDAD_ML_CLICK_MODEL)) return infer_clicks(core, req, label, params, err);
#endif
    return samda_fail(err, SAMDA_ENOENT, "unknown model %s: GET /monailabel/info/ lists them", req->model);
}

