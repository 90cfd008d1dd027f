/* Jobs and results for samdad: the change feed, the job queue (list, cancel, retry), segmentation
 * requests, and results: a series' SEGs, the SEG file, and PNG views of one slice (mask, overlay). */
#include "api_core.h"
#include "image_io.h"

#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "dicom.h"
#include "json_out.h"
#include "services_internal.h"

#include <png.h>

/* ---------- REST ---------- */

static samda_status changes(void *v, int64_t since, unsigned limit, json_t **out, samda_error *err)
{
    samda_change *c = NULL;
    size_t n = 0;
    int64_t last = 0;
    samda_status st = samda_store_change_list(samdad_store(CORE(v)->ctx), since, limit, &c, &n, &last, err);
    if (st != SAMDA_OK) return st;
    json_t *a = json_array();
    int64_t seen = since;
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(a, json_pack("{s:I, s:I, s:s, s:s, s:s}", "seq", (json_int_t)c[i].seq, "time_ms",
                                           (json_int_t)c[i].time_ms, "kind", c[i].kind, "resource", c[i].resource,
                                           "type", samda_change_type_name(c[i].type)));
        seen = c[i].seq;
    }
    samda_store_free(c);
    *out = json_pack("{s:o, s:I, s:b}", "changes", a, "last", (json_int_t)seen, "done", seen >= last);
    return SAMDA_OK;
}

static samda_status jobs_list(void *v, const char *state, unsigned limit, unsigned offset, json_t **out,
                              samda_error *err)
{
    samda_job_filter f = {.state = -1, .limit = limit, .offset = offset};
    if (state) {
        f.state = -2;
        for (int k = SAMDA_JOB_PENDING; k <= SAMDA_JOB_CANCELLED; k++)
            if (!strcmp(state, samda_job_state_name((samda_job_state)k))) f.state = k;
        if (f.state == -2)
            return samda_fail(err, SAMDA_EINVAL, "state '%s': must be pending, running, done, failed or cancelled",
                              state);
    }
    samda_job *jobs = NULL;
    size_t n = 0;
    samda_status st = samda_store_job_list(samdad_store(CORE(v)->ctx), &f, &jobs, &n, err);
    if (st != SAMDA_OK) return st;
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(a, samdad_job_json(&jobs[i]));
    samda_job_list_free(jobs, n);
    *out = a;
    return SAMDA_OK;
}

samda_status samdad_api_job_get(void *v, int64_t id, json_t **out, samda_error *err)
{
    samda_job j;
    samda_status st = samda_store_job_get(samdad_store(CORE(v)->ctx), id, &j, err);
    if (st == SAMDA_ENOENT) samda_fail(err, SAMDA_ENOENT, "unknown job %lld", (long long)id);
    if (st != SAMDA_OK) return st;
    *out = samdad_job_json(&j);
    samda_job_clear(&j);
    return SAMDA_OK;
}

static samda_status job_change(void *v, int64_t id, int64_t token_id, json_t **out, samda_error *err, bool cancel)
{
    samdad_ctx *ctx = CORE(v)->ctx;
    samda_store *store = samdad_store(ctx);
    samda_status st = cancel ? samda_store_job_cancel(store, id, err) : samda_store_job_retry(store, id, err);
    if (st == SAMDA_EINVAL) st = samda_fail(err, SAMDA_ECANCELED, "job %lld: %s", (long long)id, err->message);
    if (st != SAMDA_OK) return st;
    samda_log(&ctx->log, SAMDA_LOG_INFO, "api", cancel ? "job cancelled" : "job retried", "job=%lld token=%lld",
              (long long)id, (long long)token_id);
    return samdad_api_job_get(v, id, out, err);
}

static samda_status job_cancel(void *v, int64_t id, int64_t token_id, json_t **out, samda_error *err)
{
    return job_change(v, id, token_id, out, err, true);
}

static samda_status job_retry(void *v, int64_t id, int64_t token_id, json_t **out, samda_error *err)
{
    return job_change(v, id, token_id, out, err, false);
}

/* On-demand segmentation of a study: one job above batch priority; the transaction id makes a
 * repeated request return the same job. */
static samda_status segment(void *v, const samda_api_segment_request *req, json_t **out, samda_error *err)
{
    samdad_ctx *ctx = CORE(v)->ctx;
    samda_store *store = samdad_store(ctx);
    samda_study_info study;
    samda_status st = samda_store_study_get(store, req->study_uid, &study, err);
    if (st == SAMDA_ENOENT) return samda_fail(err, SAMDA_ENOENT, "unknown study %s", req->study_uid);
    if (st != SAMDA_OK) return st;
    samda_series_info *rows = NULL;
    size_t n = 0;
    if ((st = samda_store_series_list(store, req->study_uid, &rows, &n, err)) != SAMDA_OK) return st;
    char site[SAMDA_NAME_SIZE] = "";
    if (n) snprintf(site, sizeof site, "%s", rows[0].site);
    samda_store_free(rows);

    json_t *params = json_object();
    if (req->n_labels) {
        json_t *l = json_array();
        for (unsigned i = 0; i < req->n_labels; i++) json_array_append_new(l, json_string(req->labels[i]));
        json_object_set_new(params, "labels", l);
    }
    if (req->adapter_version) json_object_set_new(params, "adapter_version", json_string(req->adapter_version));
    if (req->tta) json_object_set_new(params, "tta", json_string(req->tta));
    json_object_set_new(params, "requested_by", json_integer(req->token_id));
    char *params_s = json_dumps(params, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(params);
    samda_config *cfg = samdad_config_get(ctx);
    char key[SAMDA_KEY_SIZE];
    if (req->transaction_id) snprintf(key, sizeof key, "segment:%s", req->transaction_id);
    samda_job_spec spec = {
        .kind = "segment",
        .priority = 10, /* on demand: before batch work from completed series */
        .site = site[0] ? site : NULL,
        .study_uid = req->study_uid,
        .params_json = params_s,
        .idempotency_key = req->transaction_id ? key : NULL,
        .max_attempts = (int)cfg->job_max_attempts,
    };
    samda_config_unref(cfg);
    int64_t id = 0;
    bool existed = false;
    st = samda_store_job_enqueue(store, &spec, &id, &existed, err);
    free(params_s);
    if (st != SAMDA_OK) return st;
    samda_log(&ctx->log, SAMDA_LOG_INFO, "api", existed ? "segmentation already requested" : "segmentation requested",
              "job=%lld token=%lld", (long long)id, (long long)req->token_id);
    return samdad_api_job_get(v, id, out, err);
}

static samda_status results(void *v, const char *study_uid, json_t **out, samda_error *err)
{
    samda_store *store = samdad_store(CORE(v)->ctx);
    samda_series_info *rows = NULL;
    size_t n = 0;
    samda_status st = samda_store_series_list(store, study_uid, &rows, &n, err);
    if (st != SAMDA_OK) return st;
    if (n == 0) return samda_fail(err, SAMDA_ENOENT, "unknown study %s", study_uid);
    json_t *series = json_array();
    for (size_t i = 0; i < n; i++) {
        samda_result *r = NULL;
        size_t nr = 0;
        if ((st = samda_store_result_list(store, rows[i].series_uid, &r, &nr, err)) != SAMDA_OK) break;
        json_t *s = samdad_series_json(&rows[i]);
        json_t *ra = json_array();
        for (size_t k = 0; k < nr; k++) json_array_append_new(ra, samdad_result_json(&r[k]));
        samda_result_list_free(r, nr);
        json_object_set_new(s, "results", ra);
        json_array_append_new(series, s);
    }
    samda_store_free(rows);
    if (st != SAMDA_OK) {
        json_decref(series);
        return st;
    }
    *out = json_pack("{s:s, s:o}", "study_uid", study_uid, "series", series);
    return SAMDA_OK;
}

/* ---- results: the SEG file, and PNG views of one slice ---------------------------------------------- */

static samda_status result_get(void *v, int64_t id, json_t **out, samda_error *err)
{
    samda_result r;
    samda_status st = samda_store_result_get(samdad_store(CORE(v)->ctx), id, &r, err);
    if (st == SAMDA_ENOENT) return samda_fail(err, SAMDA_ENOENT, "unknown result %lld", (long long)id);
    if (st != SAMDA_OK) return st;
    *out = samdad_result_json(&r);
    samda_result_clear(&r);
    return *out ? SAMDA_OK : samda_fail(err, SAMDA_ENOMEM, "out of memory");
}

static samda_status result_seg(void *v, int64_t id, void **data, size_t *len, samda_error *err)
{
    samda_store *store = samdad_store(CORE(v)->ctx);
    samda_result r;
    samda_status st = samda_store_result_get(store, id, &r, err);
    if (st == SAMDA_ENOENT) return samda_fail(err, SAMDA_ENOENT, "unknown result %lld", (long long)id);
    if (st != SAMDA_OK) return st;
    st = samda_store_object_read(store, r.object.relpath, (size_t)1 << 30, data, len, err);
    samda_result_clear(&r);
    return st;
}

static samda_status result_png(void *v, int64_t id, unsigned slice, const char *label, bool overlay, void **png,
                               size_t *len, samda_error *err)
{
    samda_store *store = samdad_store(CORE(v)->ctx);
    samda_result r;
    samda_status st = samda_store_result_get(store, id, &r, err);
    if (st == SAMDA_ENOENT) return samda_fail(err, SAMDA_ENOENT, "unknown result %lld", (long long)id);
    if (st != SAMDA_OK) return st;
    char **paths = NULL;
    size_t n = 0;
    char seg_path[PATH_MAX];
    st = samda_store_object_path(store, r.object.relpath, seg_path, sizeof seg_path, err);
    if (st == SAMDA_OK) st = samda_store_series_paths(store, r.series_uid, &paths, &n, err);
    samda_result_clear(&r);
    if (st != SAMDA_OK) return st;
    samda_volume *vol = NULL;
    samda_seg *seg = NULL;
    uint8_t *numbers = NULL, *img = NULL;
    st = samda_dicom_volume_load((const char *const *)paths, n, NULL, &vol, err);
    samda_store_paths_free(paths, n);
    if (st == SAMDA_OK) st = samda_seg_read(seg_path, &seg, err);
    if (st != SAMDA_OK) goto out;
    const samda_volume_info *vi = samda_volume_get_info(vol);
    if (slice >= vi->n_slices) {
        st = samda_fail(err, SAMDA_EINVAL, "slice %u is out of range (the series has %zu: 0..%zu)", slice, vi->n_slices,
                        vi->n_slices - 1);
        goto out;
    }
    unsigned want = 0;
    if (label && *label) {
        for (size_t i = 0; i < samda_seg_get_info(seg)->n_segments; i++)
            if (!strcasecmp(samda_seg_segment_get(seg, i)->label, label)) want = samda_seg_segment_get(seg, i)->number;
        if (!want) {
            st = samda_fail(err, SAMDA_ENOENT, "the result has no segment labelled \"%.64s\"", label);
            goto out;
        }
    }
    const size_t plane = (size_t)vi->rows * vi->cols;
    numbers = malloc(vi->n_slices * plane);
    img = malloc(plane * 3);
    if (!numbers || !img) {
        st = samda_fail(err, SAMDA_ENOMEM, "out of memory");
        goto out;
    }
    if ((st = samda_seg_to_label_volume(seg, vol, numbers, NULL, err)) != SAMDA_OK) goto out;
    const uint8_t *num = numbers + (size_t)slice * plane;
    if (!overlay) {
        for (size_t i = 0; i < plane; i++) img[i] = want ? (num[i] == want ? 255 : 0) : num[i];
        st = samdad_png_encode(img, vi->cols, vi->rows, false, png, len, err);
        goto out;
    }
    /* grey: CT soft-tissue window, else the slice's own range */
    const float *px = samda_volume_voxels(vol) + (size_t)slice * plane;
    float lo = -160, hi = 240;
    if (strcmp(vi->modality, "CT") != 0) {
        lo = px[0];
        hi = px[0];
        for (size_t i = 1; i < plane; i++) {
            if (px[i] < lo) lo = px[i];
            if (px[i] > hi) hi = px[i];
        }
        if (hi <= lo) hi = lo + 1;
    }
    static const uint8_t palette[8][3] = {{255, 64, 64}, {64, 200, 64}, {64, 128, 255}, {255, 200, 0},
                                          {200, 64, 255}, {0, 220, 220}, {255, 128, 0}, {255, 255, 255}};
    for (size_t i = 0; i < plane; i++) {
        float g = (px[i] - lo) / (hi - lo) * 255.0f;
        uint8_t gv = (uint8_t)(g < 0 ? 0 : g > 255 ? 255 : g);
        img[3 * i] = img[3 * i + 1] = img[3 * i + 2] = gv;
        uint8_t k = num[i];
        if (!k) continue;
        size_t rr = i / vi->cols, cc = i % vi->cols;
        bool edge = rr == 0 || cc == 0 || rr + 1 == vi->rows || cc + 1 == vi->cols || num[i - 1] != k || num[i + 1] != k ||
                    num[i - vi->cols] != k || num[i + vi->cols] != k;
        if (edge) memcpy(img + 3 * i, palette[(k - 1) % 8], 3);
    }
    st = samdad_png_encode(img, vi->cols, vi->rows, true, png, len, err);
out:
    free(numbers);
    free(img);
    samda_seg_free(seg);
    samda_volume_free(vol);
    return st;
}

void samdad_api_bind_jobs(samda_api_services *svc)
{
    svc->changes = changes;
    svc->jobs_list = jobs_list;
    svc->job_get = samdad_api_job_get;
    svc->job_cancel = job_cancel;
    svc->job_retry = job_retry;
    svc->segment = segment;
    svc->results = results;
    svc->result_get = result_get;
    svc->result_seg = result_seg;
    svc->result_png = result_png;
}
