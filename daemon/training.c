/* Training and evaluation jobs in the model worker's training lane: DICOM-SEGs in the index and
 * their source series become image/mask slices (trainset.c), a copy of the site's adapter trains on
 * them (the base model frozen) and is recorded as the next version, or a version is scored. */
#include "worker_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "trainset.h"

/* The studies of params.studies that hold a DICOM-SEG (ground truth sent to samdad) become
 * NAME.image.npy + NAME.mask.npy pairs in dir, segments mapped onto the schema's labels (by coded
 * type, else by name), or, with SAMDAD_TRAINSET_GROW, defining the schema (trainset.h). */
static samda_status build_trainset(samdad_worker *w, const json_t *params, samdad_label_schema *schema,
                                   unsigned flags, const char *dir, json_t *report, samda_error *err)
{
    samda_store *store = samdad_store(w->ctx);
    const json_t *studies = json_object_get(params, "studies");
    if (!json_is_array(studies) || !json_array_size(studies))
        return samda_fail(err, SAMDA_EINVAL, "params.studies: a non-empty array of StudyInstanceUIDs that hold a "
                          "ground-truth DICOM-SEG is required");
    size_t total = 0, n_seg = 0, k = 0;
    samda_status st = SAMDA_OK;
    size_t i;
    const json_t *v;
    json_array_foreach(studies, i, v) {
        const char *study = json_string_value(v);
        if (!study || !samda_dicom_uid_is_valid(study))
            return samda_fail(err, SAMDA_EBADUID, "params.studies[%zu]: not a valid UID", i);
        samda_series_info *rows = NULL;
        size_t n = 0;
        if ((st = samda_store_series_list(store, study, &rows, &n, err)) != SAMDA_OK) return st;
        if (!n) {
            samda_store_free(rows);
            return samda_fail(err, SAMDA_ENOENT, "params.studies[%zu]: unknown study %s", i, study);
        }
        for (size_t r = 0; r < n && st == SAMDA_OK; r++) {
            if (strcmp(rows[r].modality, "SEG") != 0) continue;
            samda_instance_row *segs = NULL;
            size_t ns = 0;
            if ((st = samda_store_instance_list(store, rows[r].series_uid, 0, 0, &segs, &ns, err)) != SAMDA_OK) break;
            for (size_t q2 = 0; q2 < ns && st == SAMDA_OK; q2++) {
                char seg_path[PATH_MAX];
                if ((st = samda_store_object_path(store, segs[q2].object.relpath, seg_path, sizeof seg_path, err)) != SAMDA_OK)
                    break;
                samda_seg *sg = NULL;
                if ((st = samda_seg_read(seg_path, &sg, err)) != SAMDA_OK) break;
                char ref[SAMDA_DICOM_UID_SIZE];
                snprintf(ref, sizeof ref, "%s", samda_seg_get_info(sg)->referenced_series_instance_uid);
                samda_seg_free(sg);
                char **paths = NULL;
                size_t nsrc = 0;
                if ((st = samda_store_series_paths(store, ref, &paths, &nsrc, err)) != SAMDA_OK) break;
                if (!nsrc)
                    st = samda_fail(err, SAMDA_ENOENT, "a DICOM-SEG of study %s refers to a series samdad does not hold",
                                    study);
                char prefix[32];
                snprintf(prefix, sizeof prefix, "case%04zu", k++);
                size_t written = 0;
                if (st == SAMDA_OK)
                    st = samdad_trainset_write((const char *const *)paths, nsrc, seg_path, schema, flags, dir, prefix,
                                               &written, NULL, err);
                samda_store_paths_free(paths, nsrc);
                total += written;
                n_seg++;
            }
            samda_store_free(segs);
        }
        samda_store_free(rows);
        if (st != SAMDA_OK) return st;
    }
    if (!n_seg) return samda_fail(err, SAMDA_ENOENT, "none of the studies holds a DICOM-SEG to learn from");
    /* the labels used, as the adapter will list them */
    json_t *labels = json_array();
    for (size_t l = 0; l < schema->n; l++) {
        const samda_adapter_label *lb = &schema->labels[l];
        json_t *o = json_pack("{s:s, s:i, s:{s:s, s:s, s:s}, s:s}", "name", lb->name, "value", lb->value, "type",
                              "scheme", lb->type_scheme, "code", lb->type_code, "meaning", lb->type_meaning, "window",
                              lb->window_kind == SAMDA_WINDOW_CT ? "ct" : "mr");
        if (o && lb->region_code[0])
            json_object_set_new(o, "region", json_pack("{s:s, s:s, s:s}", "scheme", lb->region_scheme, "code",
                                                       lb->region_code, "meaning", lb->region_meaning));
        json_array_append_new(labels, o ? o : json_null());
    }
    json_object_set_new(report, "labels", labels);
    json_object_set_new(report, "data", json_pack("{s:I, s:I, s:I}", "studies", (json_int_t)json_array_size(studies),
                                                  "segmentations", (json_int_t)n_seg, "slices", (json_int_t)total));
    return SAMDA_OK;
}

static void rm_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char p[PATH_MAX];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static int param_int(const json_t *params, const char *key, int def, int lo, int hi)
{
    const json_t *v = json_object_get(params, key);
    if (!json_is_integer(v)) return def;
    json_int_t x = json_integer_value(v);
    return x < lo ? lo : x > hi ? hi : (int)x;
}

static double param_real(const json_t *params, const char *key, double def, double lo, double hi)
{
    const json_t *v = json_object_get(params, key);
    if (!json_is_number(v)) return def;
    double x = json_number_value(v);
    return x < lo ? lo : x > hi ? hi : x;
}

/* "train" (POST /sites/{site}/adapters/train) and "evaluate" (.../{version}/evaluate). */
samda_status worker_run_train_eval(lane *ln, const samda_job *job, const json_t *params, bool train,
                                   samda_error *err)
{
    samdad_worker *w = ln->w;
    samda_store *store = samdad_store(w->ctx);
    samda_config *cfg = samdad_config_get(w->ctx);
    json_t *report = json_object();
    samda_adapter *copy = NULL;
    char dir[PATH_MAX] = "";
    samda_status st = SAMDA_OK, why = SAMDA_OK;
    adapter_choice ch;
    int version = param_int(params, "version", 0, 0, INT_MAX);
    samdad_label_schema *schema = calloc(1, sizeof *schema);
    if (!schema) {
        st = samda_fail(err, SAMDA_ENOMEM, "out of memory for a label schema");
        goto out;
    }
    /* A new adapter with the labels of the studies' SEGs: when asked ("labels": "from_segs"), or when
     * the site has nothing to train from (no active version, no [model] adapter). Else the parent's
     * labels, onto which the SEGs' segments map. */
    const char *labels_mode = json_string_value(json_object_get(params, "labels"));
    bool from_segs = train && labels_mode && !strcmp(labels_mode, "from_segs");
    if (!from_segs) {
        st = worker_choose_adapter(ln, cfg, job->site, version, &ch, err);
        if (st == SAMDA_ENOENT && train && version == 0 && !(labels_mode && !strcmp(labels_mode, "parent"))) {
            memset(&ch, 0, sizeof ch);
            from_segs = true;
            st = SAMDA_OK;
        }
        if (st != SAMDA_OK) goto out;
    }
    if (from_segs) {
        memset(&ch, 0, sizeof ch);
        snprintf(ch.source, sizeof ch.source, "none");
    } else {
        samda_adapter_info ai;
        samda_adapter_get_info(ch.a, &ai, NULL);
        for (size_t l = 0; l < ai.n_labels; l++) schema->labels[l] = *samda_adapter_label_at(ch.a, l);
        schema->n = ai.n_labels;
    }
    snprintf(dir, sizeof dir, "%s/tmp/%s-%lld", samda_store_data_dir(store), train ? "train" : "eval", (long long)job->id);
    rm_tree(dir);
    if (mkdir(dir, 0700) != 0) {
        st = samda_fail(err, SAMDA_EIO, "creating %s: %s", dir, strerror(errno));
        goto out;
    }
    if (!worker_keep_going(ln, job, 0.02, "preparing the data from DICOM-SEGs", &why)) goto out;
    if ((st = build_trainset(w, params, schema, from_segs ? SAMDAD_TRAINSET_GROW : 0, dir, report, err)) != SAMDA_OK)
        goto out;
    if (!worker_keep_going(ln, job, 0.1, train ? "training" : "evaluating", &why)) goto out;
    json_object_set_new(report, "from", json_pack("{s:s, s:i, s:s}", "source", ch.source, "version", ch.version,
                                                  "file_version", ch.file_version));
    json_object_set_new(report, "labels_from", json_string(from_segs ? "segs" : "parent"));
    if (train && from_segs) {
        /* a new adapter from the base model, its labels those of the SEGs */
        samda_adapter_params ap;
        samda_adapter_params_init(&ap);
        ap.labels = schema->labels;
        ap.n_labels = schema->n;
        ap.seed = (uint64_t)param_int(params, "seed", 1, 0, INT_MAX);
        if (!(copy = samda_adapter_new(w->model, &ap, err))) {
            st = err->code ? err->code : SAMDA_EMODEL;
            goto out;
        }
    } else if (train && !(copy = samda_adapter_clone(ch.a, err))) {
        st = err->code;
        goto out;
    }
    if (train) {
        /* the new version gets every part the parent lacks (e.g. the embedding bottleneck), freshly
         * initialised so training starts from the parent's outputs */
        if ((st = samda_adapter_extend(copy, SAMDA_ADAPTER_PLACE_ALL, err)) != SAMDA_OK) goto out;
        samda_train_params tp;
        samda_train_params_init(&tp);
        tp.data_dir = dir;
        tp.epochs = param_int(params, "epochs", 20, 1, 1000);
        tp.lr = param_real(params, "lr", 2e-3, 1e-6, 1.0);
        tp.val_split = param_real(params, "val_split", 0.2, 0.0, 0.9);
        tp.seed = (uint64_t)param_int(params, "seed", 1, 0, INT_MAX);
        tp.max_seconds = param_real(params, "max_seconds", 0, 0, 7 * 86400.0);
        tp.progress = 0;
        const char *pr = json_string_value(json_object_get(params, "prompt"));
        tp.prompt = pr && !strcmp(pr, "free") ? SAMDA_TRAIN_PROMPT_FREE
                    : pr && !strcmp(pr, "box") ? SAMDA_TRAIN_PROMPT_BOX
                                               : SAMDA_TRAIN_PROMPT_MIXED;
        samda_train_report tr;
        memset(&tr, 0, sizeof tr);
        if ((st = samda_adapter_train(w->model, copy, &tp, &tr, err)) != SAMDA_OK) goto out;
        json_object_set_new(report, "train",
                            json_pack("{s:i, s:i, s:i, s:i, s:i, s:o, s:f, s:f, s:I}", "cases", tr.n_cases, "train",
                                      tr.n_train, "validation", tr.n_val, "epochs_run", tr.epochs_run, "best_epoch",
                                      tr.best_epoch, "best_val_dice",
                                      /* no validation cases (val_split 0): no Dice, and jansson refuses NaN */
                                      isfinite(tr.best_val_dice) ? json_real(tr.best_val_dice) : json_null(),
                                      "seconds_per_epoch",
                                      tr.seconds_per_epoch, "seconds", tr.total_seconds, "trainable",
                                      (json_int_t)tr.n_trainable));
        if (!worker_keep_going(ln, job, 0.95, "saving the new version", &why)) goto out;
        if (!job->site[0]) {
            st = samda_fail(err, SAMDA_EINVAL, "a training job needs a site");
            goto out;
        }
        bool activate = json_is_true(json_object_get(params, "activate"));
        json_t *meta = json_pack("{s:s, s:I, s:O}", "origin", "train", "job", (json_int_t)job->id, "metrics",
                                 json_object_get(report, "train"));
        if (!meta) {
            st = samda_fail(err, SAMDA_ENOMEM, "out of memory for the new version's metadata");
            goto out;
        }
        int nv = 0;
        st = worker_store_new_version(w, copy, job->site, ch.version, meta, activate, &nv, err);
        json_decref(meta);
        if (st != SAMDA_OK) goto out;
        json_object_set_new(report, "version", json_integer(nv));
        json_object_set_new(report, "parent", json_integer(ch.version));
        json_object_set_new(report, "active", json_boolean(activate));
        samda_log(&w->ctx->log, SAMDA_LOG_INFO, "worker", "adapter trained: new version recorded",
                  "job=%lld site=%s version=%d parent=%d val_dice=%.4f active=%s", (long long)job->id, job->site, nv,
                  ch.version, tr.best_val_dice, activate ? "true" : "false");
    } else {
        char *json = NULL;
        double mean = 0;
        if ((st = samda_adapter_evaluate(w->model, ch.a, dir, SAMDA_TRAIN_PROMPT_FREE, 0, &json, &mean, err)) != SAMDA_OK)
            goto out;
        json_t *ej = json_loads(json, 0, NULL);
        free(json);
        json_object_set_new(report, "evaluation", ej ? ej : json_null());
        samda_log(&w->ctx->log, SAMDA_LOG_INFO, "worker", "adapter evaluated", "job=%lld site=%s version=%d mean_dice=%.4f",
                  (long long)job->id, job->site, ch.version, mean);
    }
    char *rep_s = json_dumps(report, JSON_COMPACT);
    st = samda_store_job_complete(store, job->id, ln->owner, rep_s, err);
    free(rep_s);
out:
    if (why != SAMDA_OK) {
        st = why;
        samda_fail(err, why, why == SAMDA_ELOCKED ? "the job's lease was lost" : "cancelled or stopping");
    }
    if (dir[0]) rm_tree(dir);
    free(schema);
    samda_adapter_free(copy);
    json_decref(report);
    samda_config_unref(cfg);
    return st;
}
