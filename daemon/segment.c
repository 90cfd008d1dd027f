/* A segmentation job in the model worker's segmentation lane: one completed series to a DICOM-SEG.
 * The steps of run_series are those of the file comment of worker.c. */
#include "worker_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ingest.h"
#include "export_admin.h"
#include "postproc.h"
#include "result_formats.h"

/* ---- site settings --------------------------------------------------------------------------- */

typedef struct site_settings {
    int tta;                 /* samda_cfg_tta */
    int64_t min_component;
    bool largest_component;
    char dest[16][SAMDA_NAME_SIZE];
    size_t n_dest;
    unsigned outputs;        /* SAMDA_OUTPUT_* ([site] outputs; seg for sites made over the API) */
} site_settings;

/* A [site] section wins; a site made over the API has its settings in the index. */
static void site_settings_get(samdad_worker *w, const samda_config *cfg, const char *site, site_settings *out)
{
    memset(out, 0, sizeof *out);
    out->min_component = 20;
    out->outputs = SAMDA_OUTPUT_SEG;
    const samda_site_cfg *sc = site && *site ? samda_config_site(cfg, site) : NULL;
    if (sc) {
        out->tta = (int)sc->tta;
        out->min_component = sc->min_component;
        out->largest_component = sc->largest_component;
        out->outputs = samda_site_outputs(sc);
        out->n_dest = samdad_site_destinations(samdad_store(w->ctx), cfg, site, out->dest, 16);
        return;
    }
    samda_site row;
    samda_error err;
    if (!site || !*site || samda_store_site_get(samdad_store(w->ctx), site, &row, &err) != SAMDA_OK) return;
    json_t *set = row.settings_json ? json_loads(row.settings_json, 0, NULL) : NULL;
    const char *tta = json_string_value(json_object_get(set, "tta"));
    if (tta && !strcmp(tta, "episodic")) out->tta = SAMDA_CFG_TTA_EPISODIC;
    if (tta && !strcmp(tta, "continual")) out->tta = SAMDA_CFG_TTA_CONTINUAL;
    json_t *mc = json_object_get(set, "min_component");
    if (json_is_integer(mc) && json_integer_value(mc) >= 0) out->min_component = json_integer_value(mc);
    out->largest_component = json_is_true(json_object_get(set, "largest_component"));
    json_decref(set);
    out->n_dest = samdad_site_destinations(samdad_store(w->ctx), cfg, site, out->dest, 16);
    samda_site_clear(&row);
}

/* A routing rule's choices in the job's parameters (routing.c) replace the site's outputs and
 * destinations. */
static void rule_overrides(const json_t *params, site_settings *ss)
{
    const json_t *outs = json_object_get(params, "outputs");
    if (json_is_array(outs) && json_array_size(outs) > 0) {
        samda_strlist l = {0};
        char *v[8];
        size_t i;
        json_t *it;
        json_array_foreach(outs, i, it) if (l.n < 8 && json_is_string(it)) v[l.n++] = (char *)json_string_value(it);
        l.v = v;
        unsigned bits = samda_outputs_of(&l);
        if (bits) ss->outputs = bits;
    }
    const json_t *dests = json_object_get(params, "destinations");
    if (json_is_array(dests) && json_array_size(dests) > 0) {
        ss->n_dest = 0;
        size_t i;
        json_t *it;
        json_array_foreach(dests, i, it) if (ss->n_dest < 16 && json_is_string(it))
            snprintf(ss->dest[ss->n_dest++], SAMDA_NAME_SIZE, "%s", json_string_value(it));
    }
}

static bool same_window(const samda_adapter_label *x, const samda_adapter_label *y)
{
    return x->window_kind == y->window_kind && x->window_a == y->window_a && x->window_b == y->window_b;
}
/* Queue a result's SEG for each destination that does not have it yet. */
static void queue_exports(samdad_worker *w, const site_settings *ss, const char *relpath, const char *sop_uid,
                          json_t *report)
{
    samda_store *store = samdad_store(w->ctx);
    json_t *arr = json_array();
    for (size_t i = 0; i < ss->n_dest; i++) {
        samda_destination d;
        samda_error err;
        if (samda_store_destination_get(store, ss->dest[i], &d, &err) != SAMDA_OK) {
            samda_log(&w->ctx->log, SAMDA_LOG_ERROR, "worker", "unknown destination: result not sent there",
                      "destination=%s", ss->dest[i]);
            continue;
        }
        samda_export_item *items = NULL;
        size_t n = 0;
        bool have = false;
        if (samda_store_export_list(store, d.id, -1, 100000, &items, &n, &err) == SAMDA_OK)
            for (size_t k = 0; k < n && !have; k++) have = !strcmp(items[k].sop_uid, sop_uid);
        samda_store_free(items);
        int64_t id = 0;
        if (!have && samda_store_export_enqueue(store, d.id, relpath, sop_uid, &id, &err) != SAMDA_OK)
            samda_log(&w->ctx->log, SAMDA_LOG_ERROR, "worker", "cannot queue export", "destination=%s error=%s",
                      d.name, q((char[600]){0}, 600, err.message));
        json_array_append_new(arr, json_string(d.name));
        samda_destination_clear(&d);
    }
    json_object_set_new(report, "destinations", arr);
}

/* Queue what the site's outputs send: the SEG (with seg) and the objects made beside it. */
static void queue_outputs(samdad_worker *w, const site_settings *ss, const char *seg_relpath, const char *seg_sop,
                          const samdad_result_objects *objs, json_t *report)
{
    if (ss->outputs & SAMDA_OUTPUT_SEG) queue_exports(w, ss, seg_relpath, seg_sop, report);
    for (size_t i = 0; i < objs->n; i++) queue_exports(w, ss, objs->v[i].obj.relpath, objs->v[i].sop_uid, report);
    json_object_set_new(report, "objects", samdad_result_formats_json(objs));
}

/* Was the series uploaded by a client (a MONAI Label session: SAMDA_INSTANCE_UPLOAD)? */
static bool series_is_upload(samdad_worker *w, const char *series_uid)
{
    samda_instance_row *rows = NULL;
    size_t n = 0;
    samda_error err;
    bool upload = samda_store_instance_list(samdad_store(w->ctx), series_uid, 1, 0, &rows, &n, &err) == SAMDA_OK && n &&
                  (rows[0].meta.flags & SAMDA_INSTANCE_UPLOAD);
    samda_store_free(rows);
    return upload;
}

/* A previous attempt of this job recorded the result of this series and died before finishing:
 * reuse it (and queue any export it had not queued yet). */
static bool recorded_result(samdad_worker *w, const samda_job *job, const char *series_uid, const site_settings *ss,
                            json_t *report)
{
    samda_store *store = samdad_store(w->ctx);
    samda_result *rows = NULL;
    size_t n = 0;
    samda_error err;
    if (samda_store_result_list(store, series_uid, &rows, &n, &err) != SAMDA_OK) return false;
    bool done = false;
    for (size_t i = 0; i < n && !done; i++) {
        if (rows[i].job_id != job->id) continue;
        json_object_set_new(report, "result_id", json_integer(rows[i].id));
        json_object_set_new(report, "seg_series_uid", json_string(rows[i].seg_series_uid));
        json_object_set_new(report, "seg_sop_uid", json_string(rows[i].seg_sop_uid));
        json_object_set_new(report, "recovered", json_true());
        samdad_result_objects objs = {0};
        samda_error e2;
        if (samdad_result_formats_recorded(store, rows[i].id, &objs, &e2) != SAMDA_OK) objs.n = 0;
        queue_outputs(w, ss, rows[i].object.relpath, rows[i].seg_sop_uid, &objs, report);
        samda_log(&w->ctx->log, SAMDA_LOG_INFO, "worker", "result of an interrupted attempt reused",
                  "job=%lld result=%lld", (long long)job->id, (long long)rows[i].id);
        done = true;
    }
    samda_result_list_free(rows, n);
    return done;
}

static bool label_wanted(const json_t *params, const char *name)
{
    const json_t *l = json_object_get(params, "labels");
    if (!json_is_array(l) || json_array_size(l) == 0) return true;
    size_t i;
    const json_t *v;
    json_array_foreach(l, i, v) {
        if (json_is_string(v) && !strcasecmp(json_string_value(v), name)) return true;
    }
    return false;
}

/* One series through run_series: what the steps hand each other. */
typedef struct series_run {
    lane *ln;
    samdad_worker *w;
    const samda_job *job;
    const char *series_uid;
    const json_t *params;
    json_t *report;
    samda_config *cfg;
    site_settings ss;
    samda_status why;                 /* set when worker_keep_going said stop */
    /* (2) */
    char **paths;
    size_t n_inst;
    samda_volume *vol;
    const samda_volume_info *vi;
    size_t plane, S;
    /* (3), (4) */
    adapter_choice ch;
    const samda_adapter *use;         /* ch.a, or its test-time adapted copy */
    samda_adapter *tta_copy;
    size_t L;
    bool wanted[SAMDA_ADAPTER_MAX_LABELS];
    /* (5), (6) */
    uint8_t *masks;                   /* L x S x plane */
    /* (7) */
    samda_seg_save_result sr;
    char seg_path[4096];              /* the written SEG in the store's tmp/, until store_seg */
    samda_object_info obj;
    unsigned seg_numbers[SAMDA_ADAPTER_MAX_LABELS]; /* per label: its SegmentNumber in the SEG */
    samdad_result_objects objs;       /* (7b) RT Structure Set, SR as the site's outputs ask */
    double t0, t_load, t_tta, t_encode, t_decode, t_post, t_seg;
} series_run;

/* Between steps: false (and r->why set) when the job must stop. */
static bool go_on(series_run *r, double progress, const char *msg)
{
    return worker_keep_going(r->ln, r->job, progress, msg, &r->why);
}

/* (2) The series as a volume: every stored instance, checked, sorted along the slice normal. */
static samda_status load_volume(series_run *r, samda_error *err)
{
    samda_status st = samda_store_series_paths(samdad_store(r->w->ctx), r->series_uid, &r->paths, &r->n_inst, err);
    if (st != SAMDA_OK) return st;
    if (!r->n_inst) return samda_fail(err, SAMDA_ENOENT, "series has no stored instance");
    if (!go_on(r, 0.02, "loading the series")) return r->why;
    /* The volume loader's messages name the attribute and the instance: no prefix before the cause. */
    st = samda_dicom_volume_load((const char *const *)r->paths, r->n_inst, NULL, &r->vol, err);
    if (st != SAMDA_OK) return st;
    r->vi = samda_volume_get_info(r->vol);
    if (!r->vi->has_pixel_spacing) /* the SEG's Pixel Measures and every volume would be invented */
        return samda_fail(err, SAMDA_EBADDICOM, "(0028,0030) PixelSpacing missing: samda segments only images whose "
                          "pixel size is known (the DICOM-SEG's pixel measures and the volumes need it)");
    r->plane = (size_t)r->vi->rows * r->vi->cols;
    r->S = r->vi->n_slices;
    r->t_load = worker_now_s() - r->t0;
    return SAMDA_OK;
}

/* (3) The adapter: the site's active version (or the one asked for), else [model] adapter; the labels
 *     asked for. */
static samda_status pick_adapter(series_run *r, samda_error *err)
{
    const json_t *av = json_object_get(r->params, "adapter_version");
    int want = json_is_integer(av) ? (int)json_integer_value(av) : json_is_string(av) ? atoi(json_string_value(av)) : 0;
    samda_status st = worker_choose_adapter(r->ln, r->cfg, r->job->site, want, &r->ch, err);
    if (st != SAMDA_OK) return st;
    samda_adapter_info ai;
    samda_adapter_get_info(r->ch.a, &ai, NULL);
    r->L = ai.n_labels;
    r->use = r->ch.a;
    int tta = r->ss.tta;
    json_object_set_new(r->report, "adapter",
                        json_pack("{s:s, s:s, s:i, s:s, s:s}", "source", r->ch.source, "site", r->ch.site, "version",
                                  r->ch.version, "file_version", r->ch.file_version, "tta_mode",
                                  tta == SAMDA_CFG_TTA_EPISODIC ? "episodic" : tta == SAMDA_CFG_TTA_CONTINUAL ? "continual"
                                                                                                           : "off"));
    size_t n_wanted = 0;
    for (size_t l = 0; l < r->L; l++) n_wanted += r->wanted[l] = label_wanted(r->params, samda_adapter_label_at(r->use, l)->name);
    if (n_wanted) return SAMDA_OK;
    char asked[256] = "", have[512] = "";
    size_t k = 0, i;
    json_t *it;
    json_array_foreach(json_object_get(r->params, "labels"), i, it) if (json_is_string(it) && k < sizeof asked)
        k += (size_t)snprintf(asked + k, sizeof asked - k, "%s%s", k ? ", " : "", json_string_value(it));
    k = 0;
    for (size_t l = 0; l < r->L && k < sizeof have; l++)
        k += (size_t)snprintf(have + k, sizeof have - k, "%s%s", l ? ", " : "", samda_adapter_label_at(r->use, l)->name);
    char which[96];
    if (r->ch.version > 0) snprintf(which, sizeof which, "site %s version %d", r->ch.site, r->ch.version);
    else snprintf(which, sizeof which, "the [model] adapter");
    return samda_fail(err, SAMDA_EINVAL, "none of the requested labels (%s) is a label of the adapter (%s: %s)", asked,
                      which, have);
}

/* (4) Test-time adaptation, when the site (or the request) asks for it: episodic adapts a copy for
 *     this series; continual also keeps it as the site's next version. A failure or a revert by the
 *     guards segments with the adapter as it is. */
static samda_status adapt(series_run *r, samda_error *err)
{
    if (r->ss.tta == SAMDA_CFG_TTA_OFF) return SAMDA_OK;
    if (!go_on(r, 0.05, "test-time adaptation")) return r->why;
    samdad_worker *w = r->w;
    double t = worker_now_s();
    r->tta_copy = worker_run_tta(w, r->ch.a, r->vol, r->report, err);
    r->t_tta = worker_now_s() - t;
    if (!r->tta_copy) {
        samda_log(&w->ctx->log, SAMDA_LOG_WARN, "worker", "test-time adaptation failed: segmenting with the "
                  "site adapter as is", "job=%lld error=%s", (long long)r->job->id,
                  q((char[600]){0}, 600, worker_redact(w, err->message, (char[600]){0}, 600)));
        json_object_set_new(r->report, "tta", json_pack("{s:s}", "error", err->message));
        samda_error_clear(err);
        return SAMDA_OK;
    }
    json_t *tr = json_object_get(r->report, "tta");
    bool reverted = json_is_true(json_object_get(tr, "reverted"));
    if (reverted)
        samda_log(&w->ctx->log, SAMDA_LOG_WARN, "worker", "test-time adaptation reverted by its guards", "job=%lld reason=%s",
                  (long long)r->job->id, q((char[600]){0}, 600, json_string_value(json_object_get(tr, "reason"))));
    r->use = r->tta_copy;
    if (r->ss.tta == SAMDA_CFG_TTA_CONTINUAL && !reverted && r->ch.source[0] == 's') {
        samda_error e2;
        if (worker_save_continual(w, r->tta_copy, &r->ch, r->job, r->report, &e2) != SAMDA_OK)
            samda_log(&w->ctx->log, SAMDA_LOG_ERROR, "worker", "continual TTA: cannot keep the new version",
                      "job=%lld error=%s", (long long)r->job->id, q((char[600]){0}, 600, e2.message));
    } else if (r->ss.tta == SAMDA_CFG_TTA_CONTINUAL && r->ch.source[0] != 's') {
        json_object_set_new(tr, "note", json_string("continual TTA keeps versions of a site's own adapter; "
                                                    "the [model] default was adapted for this series only"));
    }
    return SAMDA_OK;
}

/* (5) Encode and decode: per group of labels that share a window, the slices in batches through the
 *     encoder, then every label of the group prompt-free from each embedding. */
static samda_status encode_decode(series_run *r, samda_error *err)
{
    samdad_worker *w = r->w;
    const size_t plane = r->plane, S = r->S, L = r->L;
    const size_t batch = (size_t)(w->info.max_batch > 0 ? w->info.max_batch : 2);
    samda_status st = SAMDA_OK;
    r->masks = calloc(L * S * plane, 1);
    float *win = malloc(batch * plane * sizeof *win);
    samda_model_image *ims = calloc(batch, sizeof *ims);
    samda_model_encode_item *items = calloc(batch, sizeof *items);
    samda_embedding **emb = calloc(batch, sizeof *emb);
    uint8_t *group_masks = NULL;
    bool done_label[SAMDA_ADAPTER_MAX_LABELS] = {0};
    size_t group_labels[SAMDA_ADAPTER_MAX_LABELS];
    size_t total_steps = 0, steps = 0;
    if (!r->masks || !win || !ims || !items || !emb) {
        st = samda_fail(err, SAMDA_ENOMEM, "out of memory for %zu labels x %zu slices of %u x %u", L, S, r->vi->rows,
                        r->vi->cols);
        goto out;
    }
    for (size_t l = 0; l < L; l++) {
        done_label[l] = !r->wanted[l];
        bool first = r->wanted[l];
        for (size_t k = 0; k < l; k++)
            if (r->wanted[k] && same_window(samda_adapter_label_at(r->use, k), samda_adapter_label_at(r->use, l))) first = false;
        if (first) total_steps += (S + batch - 1) / batch;
    }
    for (size_t l0 = 0; l0 < L; l0++) {
        if (done_label[l0]) continue;
        const samda_adapter_label *lab0 = samda_adapter_label_at(r->use, l0);
        size_t ng = 0;
        for (size_t l = l0; l < L; l++)
            if (!done_label[l] && same_window(lab0, samda_adapter_label_at(r->use, l))) {
                group_labels[ng++] = l;
                done_label[l] = true;
            }
        free(group_masks);
        if (!(group_masks = malloc(ng * plane))) {
            st = samda_fail(err, SAMDA_ENOMEM, "out of memory");
            goto out;
        }
        for (size_t s0 = 0; s0 < S; s0 += batch) {
            size_t nb = S - s0 < batch ? S - s0 : batch;
            char msg[96];
            snprintf(msg, sizeof msg, "segmenting: slices %zu-%zu of %zu", s0 + 1, s0 + nb, S);
            if (!go_on(r, 0.1 + 0.8 * (double)steps / (double)(total_steps ? total_steps : 1), msg)) {
                st = r->why;
                goto out;
            }
            double t = worker_now_s();
            for (size_t i = 0; i < nb; i++) {
                if ((st = samda_adapter_window(lab0, samda_volume_voxels(r->vol) + (s0 + i) * plane, plane,
                                               win + i * plane, err)) != SAMDA_OK)
                    goto out;
                ims[i] = (samda_model_image){win + i * plane, (int)r->vi->rows, (int)r->vi->cols, 1, SAMDA_MODEL_PIXEL_F32};
                items[i] = (samda_model_encode_item){.image = &ims[i]};
            }
            if ((st = samda_model_encode(w->model, items, nb, emb, err)) != SAMDA_OK) goto out;
            samdad_hist_record(&w->h_encode, worker_now_s() - t);
            r->t_encode += worker_now_s() - t;
            t = worker_now_s();
            for (size_t i = 0; i < nb && st == SAMDA_OK; i++) {
                double td = worker_now_s();
                samda_model_decode_out o = {0};
                o.masks = group_masks;
                o.masks_len = ng * plane;
                st = samda_adapter_decode_labels(w->model, r->use, emb[i], group_labels, ng, &o, err);
                for (size_t g = 0; g < ng && st == SAMDA_OK; g++)
                    memcpy(r->masks + (group_labels[g] * S + s0 + i) * plane, group_masks + g * plane, plane);
                samdad_hist_record(&w->h_decode, worker_now_s() - td);
                atomic_fetch_add(&w->slices_done, 1);
            }
            for (size_t i = 0; i < nb; i++) {
                samda_embedding_release(emb[i]);
                emb[i] = NULL;
            }
            r->t_decode += worker_now_s() - t;
            if (st != SAMDA_OK) goto out;
            steps++;
        }
    }
out:
    if (emb)
        for (size_t i = 0; i < batch; i++) samda_embedding_release(emb[i]);
    free(group_masks);
    free(emb);
    free(items);
    free(ims);
    free(win);
    return st;
}

/* (6) 3-D clean-up of each label (small parts removed, or all but the largest) and its volume. */
static samda_status clean_up(series_run *r, samda_error *err)
{
    const samda_volume_info *vi = r->vi;
    double t = worker_now_s();
    json_t *labels_js = json_array();
    json_object_set_new(r->report, "labels", labels_js);
    for (size_t l = 0; l < r->L; l++) {
        if (!r->wanted[l]) continue;
        samdad_mask_stats ms;
        samda_status st = samdad_mask_clean(r->masks + l * r->S * r->plane, r->S, vi->rows, vi->cols,
                                            (size_t)r->ss.min_component, r->ss.largest_component, &ms, err);
        if (st != SAMDA_OK) return st;
        /* A volume only from a known slice spacing (or, for one slice, its thickness): never from an
         * invented 1 mm. */
        json_t *vol_ml = vi->slice_spacing > 0 ? json_real((double)ms.voxels_after * vi->pixel_spacing[0] *
                                                           vi->pixel_spacing[1] * vi->slice_spacing / 1000.0)
                                               : json_null();
        json_array_append_new(labels_js, json_pack("{s:s, s:I, s:I, s:I, s:o}", "label",
                                                   samda_adapter_label_at(r->use, l)->name, "voxels",
                                                   (json_int_t)ms.voxels_after, "components", (json_int_t)ms.components,
                                                   "components_removed", (json_int_t)ms.removed, "volume_ml", vol_ml));
    }
    r->t_post = worker_now_s() - t;
    return SAMDA_OK;
}

/* (7a) The DICOM-SEG: one segment per label, written where the store keeps its temporary files and
 *      committed in place (fsync, hash, rename into objects/), never read back and copied. */
static samda_status write_seg(series_run *r, samda_error *err)
{
    if (!go_on(r, 0.92, "writing the DICOM-SEG")) return r->why;
    samdad_worker *w = r->w;
    const samda_job *job = r->job;
    samda_store *store = samdad_store(w->ctx);
    double t = worker_now_s();
    char desc[80], version[64], algo_version[160];
    snprintf(desc, sizeof desc, "AI segmentation (samda%s%.30s)", job->site[0] ? ", site " : "", job->site);
    snprintf(version, sizeof version, "%s", SAMDA_VERSION);
    /* "samda SAM-DA " + this must fit SoftwareVersions (LO, 64): the full fingerprint and adapter
     * file version are in the job's result. */
    snprintf(algo_version, sizeof algo_version, "base %.8s %.20s v%d%s", samda_model_fingerprint(w->model),
             r->ch.site[0] ? r->ch.site : "default", r->ch.version,
             r->tta_copy ? (r->ss.tta == SAMDA_CFG_TTA_CONTINUAL ? " tta-c" : " tta-e") : "");
    samda_seg_params sp;
    samda_seg_params_init(&sp);
    sp.series_description = desc;
    sp.content_label = "SAMDA";
    sp.content_description = "SAM + site decoder adapter (SAM-DA), automatic, not reviewed";
    sp.software_version = version;
    samda_seg_writer *wr = samda_seg_writer_new(r->vol, &sp, err);
    if (!wr) return err->code ? err->code : SAMDA_EINTERNAL;
    samda_status st = SAMDA_OK;
    for (size_t l = 0; l < r->L && st == SAMDA_OK; l++) {
        if (!r->wanted[l]) continue;
        const samda_adapter_label *lab = samda_adapter_label_at(r->use, l);
        samda_seg_segment seg;
        samda_seg_segment_init(&seg);
        seg.label = lab->name;
        seg.category = (samda_seg_code){lab->category_code, lab->category_scheme, lab->category_meaning};
        seg.type = (samda_seg_code){lab->type_code, lab->type_scheme, lab->type_meaning};
        /* every code of the label passes through, so the result carries exactly the codes that came in */
        seg.region = (samda_seg_code){lab->region_code, lab->region_scheme, lab->region_meaning};
        seg.region_modifier = (samda_seg_code){lab->modifier_code, lab->modifier_scheme, lab->modifier_meaning};
        seg.type_modifier = (samda_seg_code){lab->type_modifier_code, lab->type_modifier_scheme,
                                             lab->type_modifier_meaning};
        seg.has_color = true;
        memcpy(seg.rgb, lab->rgb, 3);
        seg.algorithm_type = SAMDA_SEG_ALGORITHM_AUTOMATIC;
        seg.algorithm_name = "samda SAM-DA";
        seg.algorithm_version = algo_version;
        st = samda_seg_writer_add_segment(wr, &seg, r->masks + l * r->S * r->plane, &r->seg_numbers[l], err);
    }
    samda_tmp_file tmp;
    if (st == SAMDA_OK && (st = samda_store_object_tmp_open(store, &tmp, err)) == SAMDA_OK) {
        close(tmp.fd);
        if ((st = samda_seg_writer_save(wr, tmp.path, &r->sr, err)) == SAMDA_OK)
            snprintf(r->seg_path, sizeof r->seg_path, "%s", tmp.path); /* record() stores it */
        else
            unlink(tmp.path);
    }
    samda_seg_writer_free(wr);
    r->t_seg = worker_now_s() - t;
    return st;
}

/* (7b) The other result objects the site's outputs ask for, from the same masks: written, checked as
 *      the ingest entry checks an instance, and committed (result_formats.c); (7c) indexes and
 *      records them with the SEG. */
static samda_status write_formats(series_run *r, samda_error *err)
{
    if (!(r->ss.outputs & (SAMDA_OUTPUT_RTSTRUCT | SAMDA_OUTPUT_SR))) return SAMDA_OK;
    if (!go_on(r, 0.95, "writing the RT Structure Set and SR")) return r->why;
    double t = worker_now_s();
    samdad_result_masks m = {.vol = r->vol, .labels = r->use, .masks = r->masks, .wanted = r->wanted,
                             .segment_numbers = r->seg_numbers, .n_labels = r->L,
                             .seg_sop_uid = r->sr.sop_instance_uid, .seg_series_uid = r->sr.series_instance_uid,
                             .site = r->job->site};
    samda_status st = samdad_result_formats_write(samdad_store(r->w->ctx), r->ss.outputs, r->job->study_uid, &m,
                                                  &r->objs, err);
    r->t_seg += worker_now_s() - t;
    return st;
}

/* (7c) The SEG goes through the one ingest entry, as a result: stored, indexed as an instance of the
 *      source study (its own series, complete as written, never segmented) and recorded as the
 *      job's result, with the objects of (7b), in one transaction. The file is consumed. */
static samda_status store_seg(series_run *r, const samda_result_spec *rs, int64_t *result_id, samda_error *err)
{
    samda_dicom_header h;
    samda_status st = samda_dicom_read_header(r->seg_path, &h, err);
    if (st != SAMDA_OK) {
        unlink(r->seg_path);
        samda_error_prefix(err, "reading back the written DICOM-SEG: ");
        return st;
    }
    samdad_ingest_origin o = {.kind = SAMDAD_ORIGIN_RESULT, .site = r->job->site, .result = rs,
                              .result_id = result_id};
    samda_ingest_result res;
    st = samdad_ingest_file(r->w->ctx, &o, r->seg_path, &h, &res, err);
    r->seg_path[0] = 0;
    if (st == SAMDA_OK) r->obj = res.object;
    return st;
}

/* (7d) The result: recorded in the index (store_seg) with its timings and per-label statistics, and
 *      queued for the site's destinations. */
/* The labels segmented (a rule or request may ask for some of the adapter's). */
static size_t n_labels_wanted(const series_run *r)
{
    size_t n = 0;
    for (size_t l = 0; l < r->L; l++) n += r->wanted[l] ? 1 : 0;
    return n;
}

static samda_status record(series_run *r, samda_error *err)
{
    samdad_worker *w = r->w;
    json_t *timings = json_pack("{s:f, s:f, s:f, s:f, s:f, s:f, s:f}", "load", r->t_load, "tta", r->t_tta, "encode",
                                r->t_encode, "decode", r->t_decode, "postprocess", r->t_post, "seg", r->t_seg, "total",
                                worker_now_s() - r->t0);
    char *timings_s = json_dumps(timings, JSON_COMPACT);
    char *labels_s = json_dumps(json_object_get(r->report, "labels"), JSON_COMPACT);
    char model_version[80];
    snprintf(model_version, sizeof model_version, "%.16s", samda_model_fingerprint(w->model));
    samda_result_spec rs = {
        .job_id = r->job->id,
        .series_uid = r->series_uid,
        .seg_series_uid = r->sr.series_instance_uid,
        .seg_sop_uid = r->sr.sop_instance_uid,
        .model_version = model_version,
        .adapter_version = r->ch.version,
        .timings_json = timings_s,
        .label_stats_json = labels_s,
    };
    samda_result_object_spec objects[2];
    rs.n_objects = samdad_result_formats_specs(&r->objs, objects);
    rs.objects = objects;
    int64_t result_id = 0;
    samda_status st = store_seg(r, &rs, &result_id, err);
    free(timings_s);
    free(labels_s);
    json_object_set_new(r->report, "timings", timings);
    if (st != SAMDA_OK) return st;
    json_object_set_new(r->report, "result_id", json_integer(result_id));
    json_object_set_new(r->report, "seg_series_uid", json_string(r->sr.series_instance_uid));
    json_object_set_new(r->report, "seg_sop_uid", json_string(r->sr.sop_instance_uid));
    json_object_set_new(r->report, "frames", json_integer((json_int_t)r->sr.n_frames));
    json_object_set_new(r->report, "slices", json_integer((json_int_t)r->S));
    json_object_set_new(r->report, "model", json_string(samda_model_fingerprint(w->model)));
    queue_outputs(w, &r->ss, r->obj.relpath, r->sr.sop_instance_uid, &r->objs, r->report);
    samdad_hist_record(&w->h_job, worker_now_s() - r->t0);
    samda_log(&w->ctx->log, SAMDA_LOG_INFO, "worker", "DICOM-SEG recorded",
              "job=%lld result=%lld slices=%zu labels=%zu frames=%zu seconds=%.2f encode_s=%.2f decode_s=%.2f",
              (long long)r->job->id, (long long)result_id, r->S, n_labels_wanted(r), r->sr.n_frames, worker_now_s() - r->t0,
              r->t_encode, r->t_decode);
    return SAMDA_OK;
}

/* One series to one DICOM-SEG, the steps of worker.c's file comment. */
static samda_status run_series(lane *ln, const samda_job *job, const char *series_uid, const json_t *params,
                               json_t *report, samda_error *err)
{
    series_run r = {.ln = ln, .w = ln->w, .job = job, .series_uid = series_uid, .params = params, .report = report,
                    .cfg = samdad_config_get(ln->w->ctx), .t0 = worker_now_s()};
    site_settings_get(r.w, r.cfg, job->site, &r.ss);
    rule_overrides(params, &r.ss);
    if (series_is_upload(r.w, series_uid)) r.ss.n_dest = 0; /* a MONAI Label session's volume: its results stay here */
    const char *tta_req = json_string_value(json_object_get(params, "tta"));
    if (tta_req && !strcmp(tta_req, "off")) r.ss.tta = SAMDA_CFG_TTA_OFF;
    if (tta_req && !strcmp(tta_req, "episodic")) r.ss.tta = SAMDA_CFG_TTA_EPISODIC;
    if (tta_req && !strcmp(tta_req, "continual")) r.ss.tta = SAMDA_CFG_TTA_CONTINUAL;
    samda_status st = SAMDA_OK;
    if (!recorded_result(r.w, job, series_uid, &r.ss, report) && /* (1) an interrupted attempt's result */
        (st = load_volume(&r, err)) == SAMDA_OK &&                 /* (2) */
        (st = pick_adapter(&r, err)) == SAMDA_OK &&                /* (3) */
        (st = adapt(&r, err)) == SAMDA_OK &&                       /* (4) */
        (st = encode_decode(&r, err)) == SAMDA_OK &&               /* (5) */
        (st = clean_up(&r, err)) == SAMDA_OK &&                    /* (6) */
        (st = write_seg(&r, err)) == SAMDA_OK &&                   /* (7) */
        (st = write_formats(&r, err)) == SAMDA_OK)
        st = record(&r, err);
    if (r.why != SAMDA_OK) {
        st = r.why;
        samda_fail(err, r.why, r.why == SAMDA_ELOCKED ? "the job's lease was lost" : "cancelled or stopping");
    }
    if (r.seg_path[0]) unlink(r.seg_path); /* written, then the job stopped before storing it */
    free(r.masks);
    samda_adapter_free(r.tta_copy);
    samda_volume_free(r.vol);
    samda_store_paths_free(r.paths, r.n_inst);
    samda_config_unref(r.cfg);
    return st;
}

/* ---- job kinds ------------------------------------------------------------------------------- */


/* "segment": the job's series, or (an on-demand request for a study) each CT/MR series of the study. */
samda_status worker_run_segment(lane *ln, const samda_job *job, const json_t *params, samda_error *err)
{
    samdad_worker *w = ln->w;
    samda_store *store = samdad_store(w->ctx);
    json_t *report = json_object();
    samda_status st = SAMDA_OK;
    if (job->series_uid[0]) {
        st = run_series(ln, job, job->series_uid, params, report, err);
    } else {
        samda_series_info *rows = NULL;
        size_t n = 0;
        if ((st = samda_store_series_list(store, job->study_uid, &rows, &n, err)) == SAMDA_OK) {
            json_t *arr = json_array();
            json_object_set_new(report, "series", arr);
            for (size_t i = 0; i < n && st == SAMDA_OK; i++) {
                if (!samda_modality_is_segmentable(rows[i].modality) || rows[i].n_instances < 1) continue;
                json_t *r = json_object();
                json_object_set_new(r, "series_uid", json_string(rows[i].series_uid));
                st = run_series(ln, job, rows[i].series_uid, params, r, err);
                json_array_append_new(arr, r);
            }
            if (st == SAMDA_OK && json_array_size(arr) == 0)
                st = samda_fail(err, SAMDA_ENOENT, "the study has no CT or MR series to segment");
            samda_store_free(rows);
        }
    }
    if (st == SAMDA_OK) {
        char *rep_s = json_dumps(report, JSON_COMPACT);
        st = samda_store_job_complete(store, job->id, ln->owner, rep_s, err);
        free(rep_s);
        if (st == SAMDA_OK)
            samda_log(&w->ctx->log, SAMDA_LOG_INFO, "worker", "job done: DICOM-SEG recorded", "job=%lld",
                      (long long)job->id);
    }
    json_decref(report);
    return st;
}
