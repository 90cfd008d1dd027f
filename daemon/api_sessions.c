/* Interactive sessions for samdad: the slice is read here (an HTTP handler thread), encoded and
 * decoded in the model worker's segmentation lane. */
#include "api_core.h"

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
#ifdef SAMDA_HAVE_MODEL
#include "model.h"
#include "worker.h"
#endif

#ifdef SAMDA_HAVE_MODEL
/* ---- interactive sessions: the slice is read here (an HTTP handler thread), encoded and decoded in
 * the model worker ---------------------------------------------------------------------------------- */

#define SESSION_WAIT_MS 10000

samda_status samdad_session_on_slice(samdad_api_core *core, const samda_volume *vol, size_t slice, const char *site,
                                     double level, double width, char id[SAMDAD_SESSION_ID_SIZE], samda_error *err)
{
    const samda_volume_info *vi = samda_volume_get_info(vol);
    if (slice >= vi->n_slices) return samda_fail(err, SAMDA_EINVAL, "slice %zu is out of range (0..%zu)", slice, vi->n_slices - 1);
    const size_t plane = (size_t)vi->rows * vi->cols;
    float *img = malloc(plane * sizeof *img);
    if (!img) return samda_fail(err, SAMDA_ENOMEM, "out of memory");
    samda_adapter_label lab;
    memset(&lab, 0, sizeof lab);
    snprintf(lab.name, sizeof lab.name, "session");
    if (width > 0) {
        lab.window_kind = SAMDA_WINDOW_CT;
        lab.window_a = level;
        lab.window_b = width;
    } else if (!strcmp(vi->modality, "CT")) {
        lab.window_kind = SAMDA_WINDOW_CT;
        lab.window_a = 40;
        lab.window_b = 400;
    } else {
        lab.window_kind = SAMDA_WINDOW_MR;
        lab.window_a = 1;
        lab.window_b = 99;
    }
    samda_status st = samda_adapter_window(&lab, samda_volume_voxels(vol) + slice * plane, plane, img, err);
    if (st == SAMDA_OK)
        st = samdad_worker_session_create(samdad_worker_of(core->ctx), site, img, (int)vi->rows, (int)vi->cols, SESSION_WAIT_MS,
                                          id, err);
    free(img);
    return st;
}

samda_status samdad_session_predict(samdad_api_core *core, const char *id, const samdad_prompt *p, samdad_prediction *out,
                                    samda_error *err)
{
    return samdad_worker_session_predict(samdad_worker_of(core->ctx), id, p, SESSION_WAIT_MS, out, err);
}

samda_status samdad_session_drop(samdad_api_core *core, const char *id, samda_error *err)
{
    return samdad_worker_session_delete(samdad_worker_of(core->ctx), id, SESSION_WAIT_MS, err);
}

static samda_status session_create(void *v, const json_t *body, int64_t token_id, json_t **out, samda_error *err)
{
    samdad_api_core *core = CORE(v);
    samda_store *store = samdad_store(core->ctx);
    const char *series = json_string_value(json_object_get(body, "series"));
    const char *instance = json_string_value(json_object_get(body, "instance"));
    const json_t *win = json_object_get(body, "window");
    const char *key;
    const json_t *val;
    json_object_foreach((json_t *)body, key, val) {
        if (strcmp(key, "series") && strcmp(key, "slice") && strcmp(key, "instance") && strcmp(key, "frame") &&
            strcmp(key, "window"))
            return samda_fail(err, SAMDA_EINVAL, "body.%s: unknown member (allowed: series, slice, instance, frame, window)", key);
    }
    if (!!series == !!instance) return samda_fail(err, SAMDA_EINVAL, "body: give either \"series\" (with \"slice\") or \"instance\" (with \"frame\")");
    const char *uid = series ? series : instance;
    if (!samda_uid_is_valid(uid)) return samda_fail(err, SAMDA_EBADUID, "body.%s: not a valid UID", series ? "series" : "instance");
    json_int_t index = json_integer_value(json_object_get(body, series ? "slice" : "frame"));
    if (!series && !json_object_get(body, "frame")) index = 1;
    if (json_object_get(body, series ? "slice" : "frame") && !json_is_integer(json_object_get(body, series ? "slice" : "frame")))
        return samda_fail(err, SAMDA_EINVAL, "body.%s: an integer", series ? "slice" : "frame");
    double level = 0, width = 0;
    if (win) {
        if (!json_is_number(json_object_get(win, "level")) || !json_is_number(json_object_get(win, "width")) ||
            json_number_value(json_object_get(win, "width")) <= 0)
            return samda_fail(err, SAMDA_EINVAL, "body.window: {\"level\": number, \"width\": number > 0}");
        level = json_number_value(json_object_get(win, "level"));
        width = json_number_value(json_object_get(win, "width"));
    }
    /* the files */
    char **paths = NULL;
    size_t n = 0;
    char site[SAMDA_NAME_SIZE] = "";
    samda_status st;
    samda_series_info si;
    if (series) {
        st = samda_store_series_get(store, series, &si, err);
        if (st == SAMDA_ENOENT) return samda_fail(err, SAMDA_ENOENT, "unknown series %s", series);
        if (st != SAMDA_OK) return st;
        if ((st = samda_store_series_paths(store, series, &paths, &n, err)) != SAMDA_OK) return st;
    } else {
        samda_instance_row row;
        st = samda_store_instance_get(store, instance, &row, err);
        if (st == SAMDA_ENOENT) return samda_fail(err, SAMDA_ENOENT, "unknown instance %s", instance);
        if (st != SAMDA_OK) return st;
        if (samda_store_series_get(store, row.meta.series_uid, &si, err) != SAMDA_OK) si.site[0] = 0;
        paths = calloc(1, sizeof *paths);
        if (paths) paths[0] = malloc(PATH_MAX);
        n = paths ? 1 : 0;
        st = paths && paths[0] ? samda_store_object_path(store, row.object.relpath, paths[0], PATH_MAX, err)
                               : samda_fail(err, SAMDA_ENOMEM, "out of memory");
    }
    snprintf(site, sizeof site, "%s", si.site);
    samda_volume *vol = NULL;
    if (st == SAMDA_OK) st = samda_dicom_volume_load((const char *const *)paths, n, NULL, &vol, err);
    samda_store_paths_free(paths, n);
    if (st != SAMDA_OK) return st;
    const samda_volume_info *vi = samda_volume_get_info(vol);
    size_t s_index = series ? (size_t)index : (size_t)(index - 1);
    if (index < (series ? 0 : 1) || s_index >= vi->n_slices) {
        size_t ns = vi->n_slices;
        samda_volume_free(vol);
        return samda_fail(err, SAMDA_EINVAL, "body.%s: %lld is out of range (%s%zu)", series ? "slice" : "frame",
                          (long long)index, series ? "0.." : "1..", series ? ns - 1 : ns);
    }
    char id[SAMDAD_SESSION_ID_SIZE] = "";
    int r = (int)vi->rows, c = (int)vi->cols;
    st = samdad_session_on_slice(core, vol, s_index, site, level, width, id, err);
    samda_volume_free(vol);
    if (st != SAMDA_OK) return st;
    samda_log(&core->ctx->log, SAMDA_LOG_INFO, "api", "interactive session created", "token=%lld", (long long)token_id);
    *out = json_pack("{s:s, s:i, s:i, s:s, s:I}", "id", id, "rows", r, "columns", c, "site", site, "index", (json_int_t)index);
    return *out ? SAMDA_OK : samda_fail(err, SAMDA_ENOMEM, "out of memory");
}

static bool num2(const json_t *a, size_t i, float *x) { return json_is_number(json_array_get(a, i)) && (*x = (float)json_number_value(json_array_get(a, i)), true); }

static samda_status session_predict(void *v, const char *id, const json_t *body, int64_t token_id, json_t **out,
                                    samda_error *err)
{
    (void)token_id;
    samdad_api_core *core = CORE(v);
    samdad_prompt p;
    memset(&p, 0, sizeof p);
    const char *key;
    const json_t *val;
    json_object_foreach((json_t *)body, key, val) {
        if (strcmp(key, "points") && strcmp(key, "box") && strcmp(key, "use_previous") && strcmp(key, "multimask"))
            return samda_fail(err, SAMDA_EINVAL, "body.%s: unknown member (allowed: points, box, use_previous, multimask)", key);
    }
    const json_t *pts = json_object_get(body, "points");
    if (pts) {
        if (!json_is_array(pts) || json_array_size(pts) > 64)
            return samda_fail(err, SAMDA_EINVAL, "body.points: an array of at most 64 [x, y, label] triples");
        size_t i;
        const json_t *pt;
        json_array_foreach(pts, i, pt) {
            float lbl;
            if (!json_is_array(pt) || json_array_size(pt) != 3 || !num2(pt, 0, &p.points[i][0]) || !num2(pt, 1, &p.points[i][1]) ||
                !num2(pt, 2, &lbl) || (lbl != 0 && lbl != 1))
                return samda_fail(err, SAMDA_EINVAL, "body.points[%zu]: [x, y, label] with label 1 (inside) or 0 (outside)", i);
            p.labels[i] = (int)lbl;
        }
        p.n_points = json_array_size(pts);
    }
    const json_t *box = json_object_get(body, "box");
    if (box) {
        if (!json_is_array(box) || json_array_size(box) != 4 || !num2(box, 0, &p.box[0]) || !num2(box, 1, &p.box[1]) ||
            !num2(box, 2, &p.box[2]) || !num2(box, 3, &p.box[3]) || p.box[2] <= p.box[0] || p.box[3] <= p.box[1])
            return samda_fail(err, SAMDA_EINVAL, "body.box: [x0, y0, x1, y1] with x1 > x0 and y1 > y0");
        p.has_box = true;
    }
    p.use_previous = json_is_true(json_object_get(body, "use_previous"));
    p.multimask = json_is_true(json_object_get(body, "multimask"));
    samdad_prediction pr;
    samda_status st = samdad_worker_session_predict(samdad_worker_of(core->ctx), id, &p, SESSION_WAIT_MS, &pr, err);
    if (st != SAMDA_OK) return st;
    /* row-major run lengths, the first run counting zeros */
    json_t *counts = json_array();
    size_t n = (size_t)pr.rows * pr.cols, run = 0, area = 0;
    uint8_t cur = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t b = pr.mask[i] ? 1 : 0;
        area += b;
        if (b != cur) {
            json_array_append_new(counts, json_integer((json_int_t)run));
            run = 0;
            cur = b;
        }
        run++;
    }
    json_array_append_new(counts, json_integer((json_int_t)run));
    free(pr.mask);
    json_t *iou = json_array();
    for (int i = 0; i < pr.n_masks; i++) json_array_append_new(iou, json_real(pr.iou[i]));
    *out = json_pack("{s:o, s:i, s:I, s:f, s:{s:i, s:i, s:s, s:o}}", "iou", iou, "best", pr.best, "area", (json_int_t)area,
                     "decode_ms", pr.decode_ms, "mask", "rows", pr.rows, "columns", pr.cols, "encoding",
                     "row-major run lengths, first run = background", "counts", counts);
    return *out ? SAMDA_OK : samda_fail(err, SAMDA_ENOMEM, "out of memory");
}

static samda_status session_delete(void *v, const char *id, int64_t token_id, samda_error *err)
{
    (void)token_id;
    return samdad_worker_session_delete(samdad_worker_of(CORE(v)->ctx), id, SESSION_WAIT_MS, err);
}
#endif

void samdad_api_bind_sessions(samda_api_services *svc, bool with_model)
{
#ifdef SAMDA_HAVE_MODEL
    if (with_model) {
        svc->session_create = session_create;
        svc->session_predict = session_predict;
        svc->session_delete = session_delete;
    }
#else
    (void)svc;
    (void)with_model;
#endif
}
