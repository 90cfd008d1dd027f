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

/* ---- the datastore: series, and which have ground truth --------------------------------------- */

static bool is_image_series(const samda_series_info *s) { return !strcmp(s->modality, "CT") || !strcmp(s->modality, "MR"); }

/* Every series in the index (at most 100000), oldest study first as the index returns them. */
static samda_status all_series(samda_store *store, samda_series_info **rows, size_t *n, samda_error *err)
{
    samda_index_query q = {.limit = 100000};
    return samda_store_series_query(store, &q, rows, n, err);
}

/* The series that a stored DICOM-SEG (ground truth: received, not a result samdad wrote) refers to, as an
 * object {series UID: SEG series UID}. */
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
        /* samda's own results are SEG instances of the study too: never ground truth */
        bool result = ns && (segs[0].meta.flags & SAMDA_INSTANCE_RESULT);
        if (ns && !result && samda_store_object_path(store, segs[0].object.relpath, path, sizeof path, &e) == SAMDA_OK &&
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

/* A site's automatic model (labels {name: value} of its adapter) and trainer; its label names
 * join all. */
static void site_model(samdad_api_core *core, const char *site, json_t *models, json_t *trainers, json_t *all)
{
    json_t *names = samdad_ml_site_labels(core, site), *map = json_object();
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
    snprintf(name, sizeof name, SAMDAD_ML_AUTO_PREFIX "%s", site);
    snprintf(desc, sizeof desc, "samda SAM + decoder adapter of site %s, whole series (newest result, else a queued job)", site);
    json_object_set_new(models, name, json_pack("{s:s, s:i, s:s, s:o, s:{}}", "type", "segmentation", "dimension", 3,
                                                "description", desc, "labels", map, "config"));
    snprintf(desc, sizeof desc, "adapter training of site %s from its series' ground-truth DICOM-SEGs", site);
    json_object_set_new(trainers, name, json_pack("{s:s, s:{}}", "description", desc, "config"));
}

/* The image series in the index and how many have a ground-truth DICOM-SEG (a session's upload is
 * the client's own volume, not a datastore object). */
static samda_status series_counts(samdad_api_core *core, size_t *total, size_t *done, samda_error *err)
{
    samda_store *store = samdad_store(core->ctx);
    samda_series_info *rows = NULL;
    size_t n = 0;
    samda_status st = all_series(store, &rows, &n, err);
    if (st != SAMDA_OK) return st;
    json_t *gt = labelled_series(store, rows, n);
    *total = *done = 0;
    for (size_t i = 0; i < n; i++)
        if (is_image_series(&rows[i]) && !samdad_ml_is_session(core, rows[i].series_uid)) {
            (*total)++;
            *done += json_object_get(gt, rows[i].series_uid) != NULL;
        }
    json_decref(gt);
    samda_store_free(rows);
    return SAMDA_OK;
}

static samda_status ml_info(void *v, json_t **out, samda_error *err)
{
    samdad_api_core *core = CORE(v);
    samda_store *store = samdad_store(core->ctx);
    samda_site *sites = NULL;
    size_t ns = 0, total = 0, done = 0;
    samda_status st = samda_store_site_list(store, &sites, &ns, err);
    if (st == SAMDA_OK) st = series_counts(core, &total, &done, err);
    if (st != SAMDA_OK) {
        samda_site_list_free(sites, ns);
        return st;
    }
    json_t *models = json_object(), *all = json_array(), *trainers = json_object();
    for (size_t i = 0; i < ns; i++) site_model(core, sites[i].name, models, trainers, all);
    samda_site_list_free(sites, ns);
#ifdef SAMDA_HAVE_MODEL
    if (samdad_model_loaded(core->ctx))
        json_object_set_new(models, SAMDAD_ML_CLICK_MODEL,
                            json_pack("{s:s, s:i, s:s, s:O, s:{}}", "type", "deepgrow", "dimension", 2, "description",
                                      "SAM on one slice: foreground/background clicks [i, j, k] and an optional roi box",
                                      "labels", all, "config"));
#endif
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
        if (!is_image_series(&rows[i]) || samdad_ml_is_session(CORE(v), rows[i].series_uid)) continue;
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
        if (is_image_series(&rows[i]) && !json_object_get(gt, rows[i].series_uid) && !samdad_ml_is_session(CORE(v), rows[i].series_uid))
            cand[m++] = i;
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
        if (!site[0]) return samda_fail(err, SAMDA_EINVAL, "name the model to train: POST /monailabel/train/" SAMDAD_ML_AUTO_PREFIX "SITE");
    } else if (!strncmp(model, SAMDAD_ML_AUTO_PREFIX, strlen(SAMDAD_ML_AUTO_PREFIX))) {
        snprintf(site, sizeof site, "%s", model + strlen(SAMDAD_ML_AUTO_PREFIX));
    } else {
        return samda_fail(err, SAMDA_ENOENT, "model %s cannot be trained: train an " SAMDAD_ML_AUTO_PREFIX "SITE model", model);
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
        svc->ml_infer = samdad_ml_infer;
        svc->ml_train_start = ml_train_start;
    }
}
