/* Corrections for samdad: a mask drawn by hand on one slice of a result's source series (the
 * console's Interactive page, from a session's prediction) stored as a DICOM-SEG of the study,
 * through the one ingest entry like a SEG received over STOW-RS. It carries the result's segment
 * (label and codes) with algorithm type SEMIAUTOMATIC, so that adapter training on the study
 * (POST /api/v1/sites/{site}/adapters/train) takes it as ground truth: one training slice. */
#include "api_core.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dicom.h"
#include "ingest.h"
#include "services_internal.h"

/* The body: {"slice": n, "label": name, "mask": {"rows", "columns", "counts": [background, inside, ...]}}. */
typedef struct correction_req {
    unsigned slice;
    const char *label;
    unsigned rows, cols;
    const json_t *counts;
} correction_req;

static samda_status parse_body(const json_t *body, correction_req *q, samda_error *err)
{
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)body, k, v) {
        if (strcmp(k, "slice") && strcmp(k, "label") && strcmp(k, "mask"))
            return samda_fail(err, SAMDA_EINVAL, "correction: unknown member %.64s (slice, label, mask)", k);
    }
    const json_t *s = json_object_get(body, "slice"), *l = json_object_get(body, "label"), *m = json_object_get(body, "mask");
    if (!json_is_integer(s) || json_integer_value(s) < 0 || json_integer_value(s) > 99999)
        return samda_fail(err, SAMDA_EINVAL, "correction: slice must be an integer 0..99999");
    if (!json_is_string(l) || json_string_length(l) < 1 || json_string_length(l) > 64)
        return samda_fail(err, SAMDA_EINVAL, "correction: label must be the name of one of the result's segments");
    const json_t *r = json_object_get(m, "rows"), *c = json_object_get(m, "columns");
    q->counts = json_object_get(m, "counts");
    if (!json_is_object(m) || !json_is_integer(r) || !json_is_integer(c) || !json_is_array(q->counts) ||
        json_integer_value(r) < 1 || json_integer_value(r) > 16384 || json_integer_value(c) < 1 || json_integer_value(c) > 16384)
        return samda_fail(err, SAMDA_EINVAL, "correction: mask must be {\"rows\", \"columns\", \"counts\"} (run lengths, "
                                             "row-major, the first run background), as a session's predict answers");
    q->slice = (unsigned)json_integer_value(s);
    q->label = json_string_value(l);
    q->rows = (unsigned)json_integer_value(r);
    q->cols = (unsigned)json_integer_value(c);
    return SAMDA_OK;
}

/* Run lengths into plane (rows * cols bytes, 0/1); they must cover it exactly. *inside: pixels set. */
static samda_status decode_runs(const json_t *counts, uint8_t *plane, size_t n, size_t *inside, samda_error *err)
{
    size_t at = 0, i;
    const json_t *c;
    *inside = 0;
    json_array_foreach(counts, i, c) {
        if (!json_is_integer(c) || json_integer_value(c) < 0 || (uint64_t)json_integer_value(c) > n - at)
            return samda_fail(err, SAMDA_EINVAL, "correction: mask run %zu is not a count within the slice", i);
        size_t len = (size_t)json_integer_value(c);
        if (i % 2) {
            memset(plane + at, 1, len);
            *inside += len;
        }
        at += len;
    }
    if (at != n) return samda_fail(err, SAMDA_EINVAL, "correction: mask runs cover %zu pixels, the slice has %zu", at, n);
    if (!*inside) return samda_fail(err, SAMDA_EINVAL, "correction: the mask is empty");
    return SAMDA_OK;
}

/* The result's segment called label, copied out of its SEG (codes and colour for the correction). */
static samda_status result_segment(samda_store *store, const samda_result *r, const char *label,
                                   samda_seg_segment_info *out, samda_error *err)
{
    char seg_path[PATH_MAX];
    samda_status st = samda_store_object_path(store, r->object.relpath, seg_path, sizeof seg_path, err);
    samda_seg *seg = NULL;
    if (st == SAMDA_OK) st = samda_seg_read(seg_path, &seg, err);
    if (st != SAMDA_OK) return st;
    char names[512] = "";
    bool found = false;
    for (size_t i = 0; i < samda_seg_get_info(seg)->n_segments && !found; i++) {
        const samda_seg_segment_info *si = samda_seg_segment_get(seg, i);
        if (!si) continue;
        if (strcmp(si->label, label) == 0) {
            *out = *si;
            found = true;
        }
        size_t len = strlen(names);
        snprintf(names + len, sizeof names - len, "%s%s", len ? ", " : "", si->label);
    }
    samda_seg_free(seg);
    if (!found)
        return samda_fail(err, SAMDA_ENOENT, "correction: the result has no segment %.64s (it has %s)", label, names);
    return SAMDA_OK;
}

/* The SEG: one segment, the corrected slice its only frame, written to a temporary file of the store. */
static samda_status write_seg(samda_store *store, const samda_volume *vol, const samda_seg_segment_info *si,
                              const uint8_t *mask, int64_t result_id, char *path, size_t path_size,
                              samda_seg_save_result *sr, samda_error *err)
{
    char desc[64], algo_version[32];
    snprintf(desc, sizeof desc, "Correction of samda result %lld", (long long)result_id);
    snprintf(algo_version, sizeof algo_version, "result %lld", (long long)result_id);
    samda_seg_params sp;
    samda_seg_params_init(&sp);
    sp.series_description = desc;
    sp.series_number = 998;
    sp.content_label = "CORRECTION";
    sp.content_description = "drawn in the samda console from an interactive session, accepted by a person";
    samda_seg_writer *wr = samda_seg_writer_new(vol, &sp, err);
    if (!wr) return err->code ? err->code : SAMDA_EINTERNAL;
    samda_seg_segment seg;
    samda_seg_segment_init(&seg);
    seg.label = si->label;
    seg.category = (samda_seg_code){si->category_value, si->category_scheme, si->category_meaning};
    seg.type = (samda_seg_code){si->type_value, si->type_scheme, si->type_meaning};
    seg.region = (samda_seg_code){si->region_value, si->region_scheme, si->region_meaning};
    seg.region_modifier = (samda_seg_code){si->modifier_value, si->modifier_scheme, si->modifier_meaning};
    seg.type_modifier = (samda_seg_code){si->type_modifier_value, si->type_modifier_scheme, si->type_modifier_meaning};
    seg.has_color = si->has_cielab;
    memcpy(seg.rgb, si->rgb, 3);
    seg.algorithm_type = SAMDA_SEG_ALGORITHM_SEMIAUTOMATIC;
    seg.algorithm_name = "samda SAM-DA interactive";
    seg.algorithm_version = algo_version;
    samda_status st = samda_seg_writer_add_segment(wr, &seg, mask, NULL, err);
    samda_tmp_file tmp;
    if (st == SAMDA_OK && (st = samda_store_object_tmp_open(store, &tmp, err)) == SAMDA_OK) {
        close(tmp.fd);
        if ((st = samda_seg_writer_save(wr, tmp.path, sr, err)) == SAMDA_OK) snprintf(path, path_size, "%s", tmp.path);
        else unlink(tmp.path);
    }
    samda_seg_writer_free(wr);
    return st;
}

static samda_status result_correction(void *v, int64_t id, const json_t *body, int64_t token_id, json_t **out,
                                      samda_error *err)
{
    samdad_ctx *ctx = CORE(v)->ctx;
    samda_store *store = samdad_store(ctx);
    correction_req q = {0};
    samda_status st = parse_body(body, &q, err);
    if (st != SAMDA_OK) return st;
    samda_result r;
    if ((st = samda_store_result_get(store, id, &r, err)) == SAMDA_ENOENT)
        return samda_fail(err, SAMDA_ENOENT, "unknown result %lld", (long long)id);
    if (st != SAMDA_OK) return st;
    samda_seg_segment_info si;
    samda_series_info series;
    char **paths = NULL;
    size_t n = 0;
    samda_volume *vol = NULL;
    uint8_t *mask = NULL;
    char seg_path[PATH_MAX] = "";
    samda_seg_save_result sr;
    size_t inside = 0;
    if ((st = result_segment(store, &r, q.label, &si, err)) != SAMDA_OK) goto out;
    if ((st = samda_store_series_get(store, r.series_uid, &series, err)) != SAMDA_OK) goto out;
    if ((st = samda_store_series_paths(store, r.series_uid, &paths, &n, err)) != SAMDA_OK) goto out;
    if ((st = samda_dicom_volume_load((const char *const *)paths, n, NULL, &vol, err)) != SAMDA_OK) goto out;
    const samda_volume_info *vi = samda_volume_get_info(vol);
    const size_t plane = (size_t)vi->rows * vi->cols;
    if (q.slice >= vi->n_slices) {
        st = samda_fail(err, SAMDA_EINVAL, "correction: slice %u is out of range (the series has %zu: 0..%zu)", q.slice,
                        vi->n_slices, vi->n_slices - 1);
        goto out;
    }
    if (q.rows != vi->rows || q.cols != vi->cols) {
        st = samda_fail(err, SAMDA_EINVAL, "correction: the mask is %ux%u, the series' slices %ux%u", q.rows, q.cols,
                        vi->rows, vi->cols);
        goto out;
    }
    if (!(mask = calloc(vi->n_slices, plane))) {
        st = samda_fail(err, SAMDA_ENOMEM, "correction: out of memory");
        goto out;
    }
    if ((st = decode_runs(q.counts, mask + (size_t)q.slice * plane, plane, &inside, err)) != SAMDA_OK) goto out;
    if ((st = write_seg(store, vol, &si, mask, id, seg_path, sizeof seg_path, &sr, err)) != SAMDA_OK) goto out;
    samda_dicom_header h;
    if ((st = samda_dicom_read_header(seg_path, &h, err)) != SAMDA_OK) {
        unlink(seg_path);
        samda_error_prefix(err, "correction: reading back the written DICOM-SEG: ");
        goto out;
    }
    /* as if it arrived over STOW-RS: ground truth of the study, for training */
    samdad_ingest_origin o = {.kind = SAMDAD_ORIGIN_STOW, .site = series.site};
    if ((st = samdad_ingest_file(ctx, &o, seg_path, &h, NULL, err)) != SAMDA_OK) goto out;
    samda_log(&ctx->log, SAMDA_LOG_INFO, "api", "correction stored as a DICOM-SEG", "result=%lld slice=%u pixels=%zu token=%lld",
              (long long)id, q.slice, inside, (long long)token_id);
    *out = json_pack("{s:I, s:s, s:s, s:s, s:s, s:i, s:I}", "result", (json_int_t)id, "study_uid", series.study_uid,
                     "series_uid", sr.series_instance_uid, "sop_uid", sr.sop_instance_uid, "label", si.label, "slice",
                     (int)q.slice, "pixels", (json_int_t)inside);
    if (!*out) st = samda_fail(err, SAMDA_ENOMEM, "correction: out of memory");
out:
    free(mask);
    samda_volume_free(vol);
    if (paths) samda_store_paths_free(paths, n);
    samda_result_clear(&r);
    return st;
}

void samdad_api_bind_corrections(samda_api_services *svc) { svc->result_correction = result_correction; }
