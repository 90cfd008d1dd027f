/* Training and evaluation jobs in the model worker's training lane: DICOM-SEGs in the index and
 * their source series become image/mask slices (trainset.c), a copy of the site's adapter trains on
 * them (the base model frozen) and is recorded as the next version, or a version is scored. */
#include "worker_internal.h"

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

#include "random.h"
#include "trainset.h"

/* The studies of params.studies that hold a DICOM-SEG (ground truth sent to samdad, not a result
 * samdad wrote, SAMDA_INSTANCE_RESULT) become
 * NAME.image.npy + NAME.mask.npy pairs in dir, segments mapped onto the schema's labels (by coded
 * type, else by name), or, with SAMDAD_TRAINSET_GROW, defining the schema (trainset.h). */
static samda_status build_trainset(samdad_worker *w, const json_t *studies, samdad_label_schema *schema,
                                   unsigned flags, const char *dir, json_t *report, samda_error *err)
{
    samda_store *store = samdad_store(w->ctx);
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
                /* samda's own results are instances of the study too: never ground truth */
                if (segs[q2].meta.flags & SAMDA_INSTANCE_RESULT) continue;
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
        if (o && lb->type_modifier_code[0])
            json_object_set_new(o, "type_modifier", json_pack("{s:s, s:s, s:s}", "scheme", lb->type_modifier_scheme,
                                                              "code", lb->type_modifier_code, "meaning",
                                                              lb->type_modifier_meaning));
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

/* params.studies split into those to train on and those held out to judge the new version: a
 * fraction params.holdout (default 0.2, at most 0.5; 0 = none) of the studies, at least one when
 * there are two or more, chosen with params.seed so a repeated request splits alike. */
static void split_studies(const json_t *params, json_t *train_studies, json_t *held_studies)
{
    const json_t *studies = json_object_get(params, "studies");
    size_t n = json_array_size(studies);
    double frac = param_real(params, "holdout", 0.2, 0.0, 0.5);
    size_t n_held = frac > 0 && n >= 2 ? (size_t)ceil(frac * (double)n) : 0;
    if (n_held >= n) n_held = n ? n - 1 : 0;
    size_t *order = malloc((n ? n : 1) * sizeof *order);
    bool *held = calloc(n ? n : 1, sizeof *held);
    if (!order || !held) n_held = 0;
    if (order && held) {
        samda_rng rng;
        samda_rng_seed(&rng, (uint64_t)param_int(params, "seed", 1, 0, INT_MAX), 0x686f6c64 /* "hold" */);
        for (size_t i = 0; i < n; i++) order[i] = i;
        for (size_t i = n; i > 1; i--) {
            size_t j = (size_t)(samda_rng_next(&rng) % i), t = order[i - 1];
            order[i - 1] = order[j];
            order[j] = t;
        }
        for (size_t i = 0; i < n_held; i++) held[order[i]] = true;
    }
    for (size_t i = 0; i < n; i++)
        json_array_append(held && held[i] ? held_studies : train_studies, json_array_get(studies, i));
    free(order);
    free(held);
}

/* One evaluation as the JSON samda_adapter_evaluate writes: a prompt-free or box-prompted, or with
 * base the unadapted base model (box prompts) on a's labels. */
static samda_status score(samdad_worker *w, const samda_adapter *a, bool base, samda_train_prompt prompt,
                          const char *dir, json_t *into, const char *key, samda_error *err)
{
    char *json = NULL;
    samda_status st = base ? samda_adapter_evaluate_base(w->model, a, dir, 0, &json, NULL, err)
                           : samda_adapter_evaluate(w->model, a, dir, prompt, 0, &json, NULL, err);
    if (st != SAMDA_OK) return st;
    json_t *j = json_loads(json, 0, NULL);
    free(json);
    if (!j) return samda_fail(err, SAMDA_EMODEL, "evaluating on the held-out studies: unreadable evaluation output");
    json_object_del(j, "cases"); /* per slice: too much for a version's metadata; the per-label summary stays */
    json_object_set_new(into, key, j);
    return SAMDA_OK;
}

/* The new version, its parent (if any) and the unadapted base on the held-out slices in dir:
 * {"new":{"free":E,"box":E},"parent":{"free":E,"box":E},"base":{"box":E}}, E as samda_adapter_evaluate. */
static samda_status evaluate_held_out(samdad_worker *w, const samda_adapter *next, const samda_adapter *parent,
                                      const char *dir, json_t *out, samda_error *err)
{
    json_t *nj = json_object(), *pj = parent ? json_object() : NULL, *bj = json_object();
    json_object_set_new(out, "new", nj);
    if (pj) json_object_set_new(out, "parent", pj);
    json_object_set_new(out, "base", bj);
    samda_status st = score(w, next, false, SAMDA_TRAIN_PROMPT_FREE, dir, nj, "free", err);
    if (st == SAMDA_OK) st = score(w, next, false, SAMDA_TRAIN_PROMPT_BOX, dir, nj, "box", err);
    if (st == SAMDA_OK && pj) st = score(w, parent, false, SAMDA_TRAIN_PROMPT_FREE, dir, pj, "free", err);
    if (st == SAMDA_OK && pj) st = score(w, parent, false, SAMDA_TRAIN_PROMPT_BOX, dir, pj, "box", err);
    if (st == SAMDA_OK) st = score(w, next, true, SAMDA_TRAIN_PROMPT_BOX, dir, bj, "box", err);
    return st;
}

/* A label's Dice in one evaluation (evaluation.who.mode.per_label.name), or NAN when absent or null
 * (the label is not in the held-out ground truth). */
static double label_dice(const json_t *ev, const char *who, const char *mode, const char *name)
{
    const json_t *v = json_object_get(json_object_get(json_object_get(json_object_get(ev, who), mode), "per_label"), name);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

/* The rule of "activate": "if_better" (docs/adaptation.md): on every label scored on the held-out
 * slices, the new version's Dice is not below its parent's, prompt-free and box-prompted, nor below
 * the unadapted base's box-prompted; and it finds every label prompt-free (Dice above 0). false,
 * with the first reason in why, when one fails or nothing could be scored. */
static bool not_worse(const json_t *ev, char *why, size_t why_size)
{
    const json_t *labels = json_object_get(json_object_get(json_object_get(ev, "new"), "free"), "per_label");
    const char *name;
    const json_t *v;
    int scored = 0;
    json_object_foreach((json_t *)labels, name, v) {
        double nf = label_dice(ev, "new", "free", name), nb = label_dice(ev, "new", "box", name);
        double pf = label_dice(ev, "parent", "free", name), pb = label_dice(ev, "parent", "box", name);
        double bb = label_dice(ev, "base", "box", name);
        if (isnan(nf)) continue;
        scored++;
        const char *what = NULL;
        double mine = 0, theirs = 0;
        if (nf <= 0) what = "prompt-free Dice is 0 (the label is never found)";
        else if (!isnan(pf) && nf < pf) what = "prompt-free Dice is below the parent's", mine = nf, theirs = pf;
        else if (!isnan(nb) && !isnan(pb) && nb < pb) what = "box-prompted Dice is below the parent's", mine = nb, theirs = pb;
        else if (!isnan(nb) && !isnan(bb) && nb < bb) what = "box-prompted Dice is below the unadapted model's", mine = nb, theirs = bb;
        if (what) {
            if (nf <= 0) snprintf(why, why_size, "label %s: %s", name, what);
            else snprintf(why, why_size, "label %s: %s (%.4f < %.4f)", name, what, mine, theirs);
            return false;
        }
    }
    if (!scored) {
        snprintf(why, why_size, "no label could be scored on held-out studies (hold some out: \"holdout\" > 0 "
                 "with two or more studies)");
        return false;
    }
    snprintf(why, why_size, "not worse than the parent and the unadapted model on any of %d label(s)", scored);
    return true;
}

/* The adapter a train job starts from: a new one whose labels are the SEGs' (from_segs), else a clone
 * of the chosen version; with every part it lacks (e.g. the embedding bottleneck) added, freshly
 * initialised so training starts from the parent's outputs. */
static samda_adapter *start_adapter(samdad_worker *w, const json_t *params, const samdad_label_schema *schema,
                                    bool from_segs, const adapter_choice *ch, samda_error *err)
{
    samda_adapter *copy = NULL;
    if (from_segs) {
        samda_adapter_params ap;
        samda_adapter_params_init(&ap);
        ap.labels = schema->labels;
        ap.n_labels = schema->n;
        ap.seed = (uint64_t)param_int(params, "seed", 1, 0, INT_MAX);
        copy = samda_adapter_new(w->model, &ap, err);
        if (!copy && !err->code) samda_fail(err, SAMDA_EMODEL, "creating a new adapter failed");
    } else {
        copy = samda_adapter_clone(ch->a, err);
    }
    if (copy && samda_adapter_extend(copy, SAMDA_ADAPTER_PLACE_ALL, err) != SAMDA_OK) {
        samda_adapter_free(copy);
        copy = NULL;
    }
    return copy;
}

/* Supervised training of copy on dir with the job's parameters; the report's "train" member. */
static samda_status train_copy(samdad_worker *w, const json_t *params, samda_adapter *copy, const char *dir,
                               json_t *report, samda_error *err)
{
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
    samda_status st = samda_adapter_train(w->model, copy, &tp, &tr, err);
    if (st != SAMDA_OK) return st;
    /* no validation cases (val_split 0): no Dice, and jansson refuses NaN */
#define FINITE_OR_NULL(x) (isfinite(x) ? json_real(x) : json_null())
    json_t *t = json_pack("{s:i, s:i, s:i, s:i, s:i, s:o, s:f, s:f, s:I}", "cases", tr.n_cases, "train", tr.n_train,
                          "validation", tr.n_val, "epochs_run", tr.epochs_run, "best_epoch", tr.best_epoch,
                          "best_val_dice", FINITE_OR_NULL(tr.best_val_dice), "seconds_per_epoch",
                          tr.seconds_per_epoch, "seconds", tr.total_seconds, "trainable", (json_int_t)tr.n_trainable);
    if (t && tr.box_guard)
        json_object_set_new(t, "box_guard",
                            json_pack("{s:i, s:o, s:o, s:o, s:b}", "cases", tr.box_guard_cases, "parent",
                                      FINITE_OR_NULL(tr.box_dice_parent), "base", FINITE_OR_NULL(tr.box_dice_base),
                                      "after", FINITE_OR_NULL(tr.box_dice_after), "rolled_back", tr.box_rolled_back));
#undef FINITE_OR_NULL
    if (!t) return samda_fail(err, SAMDA_ENOMEM, "out of memory for the training report");
    json_object_set_new(report, "train", t);
    return SAMDA_OK;
}

/* Evaluate the trained copy on the held-out slices (if any), decide activation ("activate": true,
 * false or "if_better") and record the copy as the site's next version with the evaluation. */
static samda_status record_version(lane *ln, const samda_job *job, const json_t *params, samda_adapter *copy,
                                   const adapter_choice *ch, const char *held_dir, json_t *report, samda_error *err)
{
    samdad_worker *w = ln->w;
    samda_status st = SAMDA_OK;
    json_t *ev = NULL;
    if (held_dir) {
        ev = json_object();
        if ((st = evaluate_held_out(w, copy, ch->a, held_dir, ev, err)) != SAMDA_OK) {
            json_decref(ev);
            return st;
        }
        json_object_set(report, "evaluation", ev);
    }
    const json_t *act = json_object_get(params, "activate");
    bool if_better = json_is_string(act) && !strcmp(json_string_value(act), "if_better");
    bool activate = json_is_true(act);
    char why[256] = "";
    if (if_better) {
        activate = ev && not_worse(ev, why, sizeof why);
        if (!ev) snprintf(why, sizeof why, "no held-out studies (\"holdout\" is 0 or only one study was given)");
        json_object_set_new(report, "activation", json_pack("{s:s, s:b, s:s}", "rule", "if_better", "activated",
                                                            activate, "why", why));
    }
    json_t *meta = json_pack("{s:s, s:I, s:O}", "origin", "train", "job", (json_int_t)job->id, "metrics",
                             json_object_get(report, "train"));
    if (meta && ev) json_object_set(meta, "evaluation", ev);
    json_decref(ev);
    if (!meta) return samda_fail(err, SAMDA_ENOMEM, "out of memory for the new version's metadata");
    int nv = 0;
    st = worker_store_new_version(w, copy, job->site, ch->version, meta, activate, &nv, err);
    json_decref(meta);
    if (st != SAMDA_OK) return st;
    json_object_set_new(report, "version", json_integer(nv));
    json_object_set_new(report, "parent", json_integer(ch->version));
    json_object_set_new(report, "active", json_boolean(activate));
    char wq[300];
    samda_log(&w->ctx->log, if_better && !activate ? SAMDA_LOG_WARN : SAMDA_LOG_INFO, "worker",
              "adapter trained: new version recorded", "job=%lld site=%s version=%d parent=%d active=%s%s%s",
              (long long)job->id, job->site, nv, ch->version, activate ? "true" : "false", why[0] ? " why=" : "",
              why[0] ? q(wq, sizeof wq, why) : "");
    return SAMDA_OK;
}

/* The labels a job works with: the parent's (which the SEGs' segments map onto), or none yet (a new
 * adapter from the SEGs: when asked with "labels": "from_segs", or when the site has nothing to train
 * from, neither an active version nor [model] adapter). */
static samda_status choose_labels(lane *ln, const samda_config *cfg, const samda_job *job, const json_t *params,
                                  bool train, adapter_choice *ch, samdad_label_schema *schema, bool *from_segs,
                                  samda_error *err)
{
    int version = param_int(params, "version", 0, 0, INT_MAX);
    const char *labels_mode = json_string_value(json_object_get(params, "labels"));
    *from_segs = train && labels_mode && !strcmp(labels_mode, "from_segs");
    memset(ch, 0, sizeof *ch);
    if (!*from_segs) {
        samda_status st = worker_choose_adapter(ln, cfg, job->site, version, ch, err);
        if (st == SAMDA_ENOENT && train && version == 0 && !(labels_mode && !strcmp(labels_mode, "parent"))) {
            *from_segs = true;
            st = SAMDA_OK;
        }
        if (st != SAMDA_OK) return st;
    }
    if (*from_segs) {
        memset(ch, 0, sizeof *ch);
        snprintf(ch->source, sizeof ch->source, "none");
        return SAMDA_OK;
    }
    samda_adapter_info ai;
    samda_adapter_get_info(ch->a, &ai, NULL);
    for (size_t l = 0; l < ai.n_labels; l++) schema->labels[l] = *samda_adapter_label_at(ch->a, l);
    schema->n = ai.n_labels;
    return SAMDA_OK;
}

/* A fresh folder under the data directory's tmp/ for this job's slices. */
static samda_status make_dir(samda_store *store, const char *what, const samda_job *job, char *dir, size_t size,
                             samda_error *err)
{
    snprintf(dir, size, "%s/tmp/%s-%lld", samda_store_data_dir(store), what, (long long)job->id);
    samdad_trainset_remove(dir);
    if (mkdir(dir, 0700) != 0) {
        samda_status st = samda_fail(err, SAMDA_EIO, "creating %s: %s", dir, strerror(errno));
        dir[0] = 0;
        return st;
    }
    return SAMDA_OK;
}

/* "train" (POST /sites/{site}/adapters/train) and "evaluate" (.../{version}/evaluate). */
samda_status worker_run_train_eval(lane *ln, const samda_job *job, const json_t *params, bool train,
                                   samda_error *err)
{
    samdad_worker *w = ln->w;
    samda_store *store = samdad_store(w->ctx);
    samda_config *cfg = samdad_config_get(w->ctx);
    json_t *report = json_object(), *train_studies = json_array(), *held_studies = json_array();
    json_t *held_report = json_object();
    samda_adapter *copy = NULL;
    char dir[PATH_MAX] = "", held_dir[PATH_MAX] = "";
    samda_status st = SAMDA_OK, why = SAMDA_OK;
    adapter_choice ch;
    bool from_segs = false;
    samdad_label_schema *schema = calloc(1, sizeof *schema);
    if (!schema || !report || !train_studies || !held_studies || !held_report) {
        st = samda_fail(err, SAMDA_ENOMEM, "out of memory for a training job");
        goto out;
    }
    if ((st = choose_labels(ln, cfg, job, params, train, &ch, schema, &from_segs, err)) != SAMDA_OK) goto out;
    if (train) split_studies(params, train_studies, held_studies);
    else json_array_extend(train_studies, json_object_get(params, "studies"));
    if ((st = make_dir(store, train ? "train" : "eval", job, dir, sizeof dir, err)) != SAMDA_OK) goto out;
    if (!worker_keep_going(ln, job, 0.02, "preparing the data from DICOM-SEGs", &why)) goto out;
    if ((st = build_trainset(w, train_studies, schema, from_segs ? SAMDAD_TRAINSET_GROW : 0, dir, report, err)) != SAMDA_OK)
        goto out;
    if (json_array_size(held_studies)) {
        if ((st = make_dir(store, "held-out", job, held_dir, sizeof held_dir, err)) != SAMDA_OK) goto out;
        if ((st = build_trainset(w, held_studies, schema, 0, held_dir, held_report, err)) != SAMDA_OK) goto out;
        json_object_set(report, "held_out", json_object_get(held_report, "data"));
    }
    if (!worker_keep_going(ln, job, 0.1, train ? "training" : "evaluating", &why)) goto out;
    json_object_set_new(report, "from", json_pack("{s:s, s:i, s:s}", "source", ch.source, "version", ch.version,
                                                  "file_version", ch.file_version));
    json_object_set_new(report, "labels_from", json_string(from_segs ? "segs" : "parent"));
    if (train) {
        if (!job->site[0]) {
            st = samda_fail(err, SAMDA_EINVAL, "a training job needs a site");
            goto out;
        }
        if (!(copy = start_adapter(w, params, schema, from_segs, &ch, err))) {
            st = err->code ? err->code : SAMDA_EMODEL;
            goto out;
        }
        if ((st = train_copy(w, params, copy, dir, report, err)) != SAMDA_OK) goto out;
        if (!worker_keep_going(ln, job, 0.9, "evaluating on held-out studies and saving the new version", &why)) goto out;
        if ((st = record_version(ln, job, params, copy, &ch, held_dir[0] ? held_dir : NULL, report, err)) != SAMDA_OK)
            goto out;
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
    st = rep_s ? samda_store_job_complete(store, job->id, ln->owner, rep_s, err)
               : samda_fail(err, SAMDA_ENOMEM, "out of memory for the job's report");
    free(rep_s);
out:
    if (why != SAMDA_OK) {
        st = why;
        samda_fail(err, why, why == SAMDA_ELOCKED ? "the job's lease was lost" : "cancelled or stopping");
    }
    if (dir[0]) samdad_trainset_remove(dir);
    if (held_dir[0]) samdad_trainset_remove(held_dir);
    free(schema);
    samda_adapter_free(copy);
    json_decref(report);
    json_decref(train_studies);
    json_decref(held_studies);
    json_decref(held_report);
    samda_config_unref(cfg);
    return st;
}
