/* PUT /monailabel/datastore/label for samdad: a label map drawn in 3D Slicer or OHIF becomes a
 * DICOM-SEG of the series' study. The SEG goes through the one ingest entry (so it is in the index
 * like a SEG sent by C-STORE: ground truth for active learning and adapter training) and is queued
 * for the site's destinations. */
#include "api_core.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dicom.h"
#include "export_admin.h"
#include "ingest.h"
#include "services_internal.h"

#define MAX_DEST 16
#define MAX_SEGMENTS 64 /* label values in one saved label (one pass over the voxels each) */

/* ---- the label map on the series' grid ------------------------------------------------------------ */

static bool invert3(const double m[3][3], double r[3][3])
{
    double det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0]) +
                 m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
    if (!isfinite(det) || fabs(det) < 1e-12) return false;
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) {
            int a = (j + 1) % 3, b = (j + 2) % 3, c = (i + 1) % 3, d = (i + 2) % 3;
            r[i][j] = (m[a][c] * m[b][d] - m[a][d] * m[b][c]) / det;
        }
    return true;
}

/* Sample the client's label (nearest voxel, by LPS position) at every voxel of the series: the same
 * grid maps one to one, a flipped or permuted axis order is undone. Returns the voxels that fell
 * inside the label's grid. */
static size_t resample(const samda_api_volume *g, const samda_api_volume *l, const double inv[3][3], uint8_t *out)
{
    size_t mapped = 0, n0 = g->sizes[0], n1 = g->sizes[1], n2 = g->sizes[2];
    const uint8_t *src = l->data;
    for (size_t k = 0; k < n2; k++)
        for (size_t j = 0; j < n1; j++)
            for (size_t i = 0; i < n0; i++) {
                double d[3], x[3];
                for (int c = 0; c < 3; c++)
                    d[c] = g->origin[c] + (double)i * g->directions[0][c] + (double)j * g->directions[1][c] +
                           (double)k * g->directions[2][c] - l->origin[c];
                bool in = true;
                size_t idx[3];
                for (int a = 0; a < 3 && in; a++) {
                    x[a] = round(inv[a][0] * d[0] + inv[a][1] * d[1] + inv[a][2] * d[2]);
                    in = x[a] >= 0 && x[a] < (double)l->sizes[a];
                    idx[a] = in ? (size_t)x[a] : 0;
                }
                uint8_t v = 0;
                if (in) {
                    v = src[(idx[2] * l->sizes[1] + idx[1]) * l->sizes[0] + idx[0]];
                    mapped++;
                }
                out[(k * n1 + j) * n0 + i] = v;
            }
    return mapped;
}

static samda_status to_series_grid(const samda_api_volume *g, const samda_api_ml_label *req, uint8_t *out, samda_error *err)
{
    const samda_api_volume *l = req->label;
    size_t n = g->sizes[0] * g->sizes[1] * g->sizes[2];
    if (req->raw_bin) { /* OHIF's label.bin: the series' voxels in its own order */
        if (l->sizes[0] != n)
            return samda_fail(err, SAMDA_EINVAL, "label.bin holds %zu bytes; series %s has %zu x %zu x %zu voxels", l->sizes[0],
                              req->series_uid, g->sizes[0], g->sizes[1], g->sizes[2]);
        memcpy(out, l->data, n);
        return SAMDA_OK;
    }
    double m[3][3], inv[3][3];
    for (int a = 0; a < 3; a++)
        for (int c = 0; c < 3; c++) m[c][a] = l->directions[a][c];
    if (!invert3(m, inv)) return samda_fail(err, SAMDA_EINVAL, "label NRRD: its space directions do not span 3-D space");
    if (!resample(g, l, inv, out))
        return samda_fail(err, SAMDA_EINVAL, "label NRRD does not overlap series %s: send it in the series' geometry "
                          "(GET /monailabel/datastore/image?image=%s)", req->series_uid, req->series_uid);
    return SAMDA_OK;
}

/* ---- segment names -------------------------------------------------------------------------------- */

static bool name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n < 1 || n > 63) return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e || s[i] == '\\') return false;
    return true;
}

/* The name of label value v: params.label_info [{"name", "idx" (Slicer) or "id"}], else
 * params.label_names {name: v}, else the site's labels in order (value 1 first), else "label v". */
static void label_name(const json_t *params, const json_t *site_names, unsigned v, char *out, size_t size)
{
    size_t i;
    const json_t *e;
    json_array_foreach(json_object_get(params, "label_info"), i, e) {
        const json_t *idx = json_object_get(e, "idx") ? json_object_get(e, "idx") : json_object_get(e, "id");
        const char *nm = json_string_value(json_object_get(e, "name"));
        if (json_is_integer(idx) && json_integer_value(idx) == v && name_ok(nm)) {
            snprintf(out, size, "%s", nm);
            return;
        }
    }
    const char *key;
    json_object_foreach((json_t *)json_object_get(params, "label_names"), key, e) {
        if (json_is_integer(e) && json_integer_value(e) == v && name_ok(key)) {
            snprintf(out, size, "%s", key);
            return;
        }
    }
    const char *site = json_string_value(json_array_get(site_names, v - 1));
    if (name_ok(site)) snprintf(out, size, "%s", site);
    else snprintf(out, size, "label %u", v);
}

/* ---- the SEG ------------------------------------------------------------------------------------- */

/* One MANUAL segment per label value present (a person reviewed it in a viewer). OUT names. */
static samda_status add_segments(samda_seg_writer *wr, const uint8_t *labels, size_t n, const json_t *params,
                                 const json_t *site_names, json_t *names, samda_error *err)
{
    bool present[256] = {false};
    unsigned distinct = 0;
    for (size_t i = 0; i < n; i++) {
        distinct += !present[labels[i]] && labels[i];
        present[labels[i]] = true;
    }
    if (distinct > MAX_SEGMENTS)
        return samda_fail(err, SAMDA_EINVAL, "the label map holds %u label values: at most %d segments in one label", distinct,
                          MAX_SEGMENTS);
    uint8_t *mask = malloc(n ? n : 1);
    if (!mask) return samda_fail(err, SAMDA_ENOMEM, "out of memory");
    samda_status st = SAMDA_OK;
    for (unsigned v = 1; v < 256 && st == SAMDA_OK; v++) {
        if (!present[v]) continue;
        for (size_t i = 0; i < n; i++) mask[i] = labels[i] == v;
        char name[64];
        label_name(params, site_names, v, name, sizeof name);
        samda_seg_segment s;
        samda_seg_segment_init(&s);
        s.label = name;
        s.type = (samda_seg_code){"85756007", "SCT", "Tissue"};
        s.algorithm_type = SAMDA_SEG_ALGORITHM_MANUAL;
        unsigned number = 0;
        st = samda_seg_writer_add_segment(wr, &s, mask, &number, err);
        if (st == SAMDA_OK) json_object_set_new(names, name, json_integer(v));
    }
    free(mask);
    if (st == SAMDA_OK && !json_object_size(names))
        st = samda_fail(err, SAMDA_EINVAL, "the label map is empty: nothing to save");
    return st;
}

/* Write the SEG into the store's tmp/ and hand it to the one ingest entry. OUT sr, res. */
static samda_status write_and_ingest(samdad_api_core *core, const samda_volume *vol, const samda_series_info *si,
                                     const uint8_t *labels, const json_t *params, json_t *names, samda_seg_save_result *sr,
                                     samda_ingest_result *res, samda_error *err)
{
    samda_store *store = samdad_store(core->ctx);
    samda_seg_params sp;
    samda_seg_params_init(&sp);
    sp.series_description = "Reviewed label (MONAI Label client)";
    sp.content_label = "FINAL";
    sp.content_description = "label map reviewed in a MONAI Label client (3D Slicer, OHIF), saved as final";
    samda_seg_writer *wr = samda_seg_writer_new(vol, &sp, err);
    if (!wr) return err->code ? err->code : SAMDA_EINTERNAL;
    const samda_volume_info *vi = samda_volume_get_info(vol);
    json_t *site_names = samdad_ml_site_labels(core, si->site);
    samda_status st = add_segments(wr, labels, vi->n_slices * vi->rows * vi->cols, params, site_names, names, err);
    json_decref(site_names);
    samda_tmp_file tmp;
    if (st == SAMDA_OK && (st = samda_store_object_tmp_open(store, &tmp, err)) == SAMDA_OK) {
        close(tmp.fd);
        samda_dicom_header h;
        if ((st = samda_seg_writer_save(wr, tmp.path, sr, err)) == SAMDA_OK &&
            (st = samda_dicom_read_header(tmp.path, &h, err)) == SAMDA_OK) {
            samdad_ingest_origin o = {.kind = SAMDAD_ORIGIN_STOW, .site = si->site[0] ? si->site : NULL};
            st = samdad_ingest_file(core->ctx, &o, tmp.path, &h, res, err); /* consumes the file */
        } else {
            unlink(tmp.path);
        }
    }
    samda_seg_writer_free(wr);
    return st;
}

/* Queue the SEG for each of the site's destinations. OUT the names queued. */
static json_t *queue_exports(samdad_api_core *core, const char *site, const char *relpath, const char *sop_uid)
{
    samda_store *store = samdad_store(core->ctx);
    samda_config *cfg = samdad_config_get(core->ctx);
    char dest[MAX_DEST][SAMDA_NAME_SIZE];
    size_t n = samdad_site_destinations(store, cfg, site, dest, MAX_DEST);
    samda_config_unref(cfg);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        samda_destination d;
        samda_error e;
        int64_t id = 0;
        samda_status st = samda_store_destination_get(store, dest[i], &d, &e);
        if (st == SAMDA_OK) {
            st = samda_store_export_enqueue(store, d.id, relpath, sop_uid, &id, &e);
            samda_destination_clear(&d);
        }
        if (st == SAMDA_OK) json_array_append_new(arr, json_string(dest[i]));
        else
            samda_log(&core->ctx->log, SAMDA_LOG_ERROR, "api", "label SEG not queued for a destination", "destination=%s error=%s",
                      dest[i], samda_log_quote((char[600]){0}, 600, e.message));
    }
    return arr;
}

samda_status samdad_ml_save_label(void *v, const samda_api_ml_label *req, json_t **out, samda_error *err)
{
    samdad_api_core *core = CORE(v);
    if (strcmp(req->tag, "final"))
        return samda_fail(err, SAMDA_EINVAL, "tag %s: samda keeps reviewed labels only: save with tag final (or none)", req->tag);
    samda_series_info si;
    samda_volume *vol = NULL;
    samda_status st = samdad_ml_load_series(samdad_store(core->ctx), req->series_uid, &si, &vol, err);
    if (st != SAMDA_OK) return st;
    samda_api_volume g;
    memset(&g, 0, sizeof g);
    samdad_ml_geometry(vol, &g);
    uint8_t *labels = malloc(g.sizes[0] * g.sizes[1] * g.sizes[2]);
    json_t *names = json_object();
    samda_seg_save_result sr;
    samda_ingest_result res;
    memset(&res, 0, sizeof res);
    if (!labels) st = samda_fail(err, SAMDA_ENOMEM, "out of memory");
    if (st == SAMDA_OK) st = to_series_grid(&g, req, labels, err);
    if (st == SAMDA_OK) st = write_and_ingest(core, vol, &si, labels, req->params, names, &sr, &res, err);
    free(labels);
    samda_volume_free(vol);
    if (st != SAMDA_OK) {
        json_decref(names);
        return st;
    }
    json_t *dest = queue_exports(core, si.site, res.object.relpath, sr.sop_instance_uid);
    samda_log(&core->ctx->log, SAMDA_LOG_INFO, "api", "MONAI Label final label stored as a DICOM-SEG",
              "segments=%zu destinations=%zu token=%lld", json_object_size(names), json_array_size(dest), (long long)req->token_id);
    *out = json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:b}", "image", req->series_uid, "tag", req->tag, "seg_series_uid",
                     sr.series_instance_uid, "seg_sop_uid", sr.sop_instance_uid, "label_names", names, "destinations", dest,
                     "training_data", true);
    return *out ? SAMDA_OK : samda_fail(err, SAMDA_ENOMEM, "out of memory");
}
