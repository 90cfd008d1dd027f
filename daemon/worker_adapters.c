/* Adapters in the model worker: each lane's cache and the choice of a job's (or a call's) adapter
 * (a site's version, its active one, or [model] adapter; versions made for another base model
 * passed over), test-time adaptation, and the new versions training and continual TTA record. */
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

/* ---- adapters -------------------------------------------------------------------------------- */


static samda_adapter *worker_cache_get(lane *ln, const char *site, int version, const char *sha)
{
    for (int i = 0; i < ADAPTER_CACHE; i++) {
        cached_adapter *c = &ln->cache[i];
        if (c->a && !strcmp(c->site, site) && c->version == version && !strcmp(c->sha256, sha)) {
            c->used = ++ln->tick;
            return c->a;
        }
    }
    return NULL;
}

void worker_cache_put(lane *ln, const char *site, int version, const char *sha, samda_adapter *a)
{
    int slot = 0;
    for (int i = 0; i < ADAPTER_CACHE; i++) {
        if (!ln->cache[i].a) {
            slot = i;
            break;
        }
        if (ln->cache[i].used < ln->cache[slot].used) slot = i;
    }
    cached_adapter *c = &ln->cache[slot];
    samda_adapter_free(c->a);
    snprintf(c->site, sizeof c->site, "%s", site);
    c->version = version;
    snprintf(c->sha256, sizeof c->sha256, "%s", sha);
    c->a = a;
    c->used = ++ln->tick;
}

void worker_cache_free(lane *ln)
{
    for (int i = 0; i < ADAPTER_CACHE; i++) {
        samda_adapter_free(ln->cache[i].a);
        ln->cache[i].a = NULL;
    }
}

samda_status worker_choose_adapter(lane *ln, const samda_config *cfg, const char *site, int version, adapter_choice *out,
                                   samda_error *err)
{
    samdad_worker *w = ln->w;
    memset(out, 0, sizeof *out);
    samda_store *store = samdad_store(w->ctx);
    samda_adapter_row row;
    samda_status st = !site || !*site ? SAMDA_ENOENT
                      : version > 0       ? samda_store_adapter_get(store, site, version, &row, err)
                                          : samda_store_adapter_get_active(store, site, &row, err);
    if (st == SAMDA_ENOENT && version > 0)
        return samda_fail(err, SAMDA_ENOENT, "site %s has no adapter version %d", site ? site : "", version);
    /* An active version made for another base model is passed over (warn_foreign_adapters said so
     * at start): the site falls back as if it had none. */
    char foreign[200] = "";
    if (st == SAMDA_OK && version <= 0 && strcmp(row.base_fingerprint, w->info.fingerprint) != 0) {
        snprintf(foreign, sizeof foreign, "its active adapter version %d was made for base model %.64s, not the loaded %.64s",
                 row.version, row.base_fingerprint[0] ? row.base_fingerprint : "(none)", w->info.fingerprint);
        samda_adapter_clear(&row);
        st = SAMDA_ENOENT;
    }
    if (st == SAMDA_OK) {
        samda_adapter *a = worker_cache_get(ln, site, row.version, row.object.sha256);
        if (!a) {
            char path[PATH_MAX];
            st = samda_store_object_path(store, row.object.relpath, path, sizeof path, err);
            /* The file must still be the one registered: a damaged or replaced file is refused
             * before it is parsed (a version already in the cache keeps being used). */
            if (st == SAMDA_OK) st = samda_store_object_verify(store, &row.object, err);
            if (st == SAMDA_OK) a = samda_adapter_load(w->model, path, err);
            if (!a) {
                samda_error_prefix(err, "loading adapter version %d of site %s: ", row.version, site);
                samda_adapter_clear(&row);
                return err->code ? err->code : SAMDA_EMODEL;
            }
            worker_cache_put(ln, site, row.version, row.object.sha256, a);
        }
        out->a = a;
        snprintf(out->site, sizeof out->site, "%s", site);
        out->version = row.version;
        snprintf(out->source, sizeof out->source, "site");
        samda_adapter_clear(&row);
    } else if (st != SAMDA_ENOENT) {
        return st;
    } else if (cfg->model_adapter && *cfg->model_adapter) {
        samda_adapter *a = worker_cache_get(ln, "", 0, cfg->model_adapter);
        if (!a) {
            a = samda_adapter_load(w->model, cfg->model_adapter, err);
            if (!a) {
                samda_error_prefix(err, "loading [model] adapter %s: ", cfg->model_adapter);
                return err->code ? err->code : SAMDA_EMODEL;
            }
            worker_cache_put(ln, "", 0, cfg->model_adapter, a);
        }
        out->a = a;
        snprintf(out->source, sizeof out->source, "default");
    } else if (foreign[0]) {
        return samda_fail(err, SAMDA_ECONFLICT, "site %s: %s, and [model] adapter is not set to fall back on (upload an "
                          "adapter made for this model and activate it)", site, foreign);
    } else {
        return samda_fail(err, SAMDA_ENOENT,
                          "site %s has no active adapter and [model] adapter is not set: prompt-free segmentation "
                          "needs an adapter with labels (samda adapter train, then POST /api/v1/sites/%s/adapters)",
                          site && *site ? site : "(none)", site && *site ? site : "NAME");
    }
    samda_adapter_info ai;
    if (samda_adapter_get_info(out->a, &ai, NULL) == SAMDA_OK) snprintf(out->file_version, sizeof out->file_version, "%s", ai.version);
    return SAMDA_OK;
}

static samda_status read_file(const char *path, void **buf, size_t *len, samda_error *err)
{
    *buf = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return samda_fail(err, SAMDA_EIO, "reading %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || sb.st_size <= 0) {
        close(fd);
        return samda_fail(err, SAMDA_EIO, "reading %s: empty or unreadable", path);
    }
    char *b = malloc((size_t)sb.st_size);
    size_t got = 0;
    while (b && got < (size_t)sb.st_size) {
        ssize_t n = read(fd, b + got, (size_t)sb.st_size - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got += (size_t)n;
    }
    close(fd);
    if (!b || got != (size_t)sb.st_size) {
        free(b);
        return samda_fail(err, b ? SAMDA_EIO : SAMDA_ENOMEM, "reading %s: short read", path);
    }
    *buf = b;
    *len = got;
    return SAMDA_OK;
}

/* ---- test-time adaptation ---------------------------------------------------------------------- */

/* Adapt a copy of a on up to TTA_MAX_SLICES evenly spaced slices (windowed with the first label's
 * window; mirrored copies for the consistency term). Returns the adapted copy (caller frees) or NULL
 * when nothing was adapted; report gets what happened. */
samda_adapter *worker_run_tta(samdad_worker *w, const samda_adapter *a, const samda_volume *vol, json_t *report,
                              samda_error *err)
{
    const samda_volume_info *vi = samda_volume_get_info(vol);
    const samda_adapter_label *l0 = samda_adapter_label_at(a, 0);
    const size_t plane = (size_t)vi->rows * vi->cols;
    size_t n = vi->n_slices < TTA_MAX_SLICES ? vi->n_slices : TTA_MAX_SLICES;
    float *img = malloc(plane * sizeof *img * 2 * n);
    samda_model_image *ims = calloc(2 * n, sizeof *ims);
    samda_model_encode_item *items = calloc(2 * n, sizeof *items);
    samda_embedding **emb = calloc(2 * n, sizeof *emb);
    samda_adapter *copy = NULL;
    if (!img || !ims || !items || !emb) {
        samda_fail(err, SAMDA_ENOMEM, "test-time adaptation: out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        size_t s = n == 1 ? 0 : i * (vi->n_slices - 1) / (n - 1);
        float *x = img + 2 * i * plane, *xf = x + plane;
        if (samda_adapter_window(l0, samda_volume_voxels(vol) + s * plane, plane, x, err) != SAMDA_OK) goto out;
        for (size_t r = 0; r < vi->rows; r++)
            for (size_t c = 0; c < vi->cols; c++) xf[r * vi->cols + c] = x[r * vi->cols + (vi->cols - 1 - c)];
        for (int f = 0; f < 2; f++) {
            ims[2 * i + f] = (samda_model_image){f ? xf : x, (int)vi->rows, (int)vi->cols, 1, SAMDA_MODEL_PIXEL_F32};
            items[2 * i + f].image = &ims[2 * i + f];
        }
    }
    if (samda_model_encode(w->model, items, 2 * n, emb, err) != SAMDA_OK) goto out;
    samda_embedding **e0 = calloc(n, sizeof *e0), **e1 = calloc(n, sizeof *e1);
    if (!e0 || !e1) {
        free(e0);
        free(e1);
        samda_fail(err, SAMDA_ENOMEM, "test-time adaptation: out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        e0[i] = emb[2 * i];
        e1[i] = emb[2 * i + 1];
    }
    copy = samda_adapter_clone(a, err);
    samda_tta_params tp;
    samda_tta_params_init(&tp);
    tp.progress = 0;
    samda_tta_report tr;
    memset(&tr, 0, sizeof tr);
    if (copy && samda_adapter_tta(w->model, copy, e0, e1, n, &tp, &tr, err) != SAMDA_OK) {
        samda_adapter_free(copy);
        copy = NULL;
    }
    free(e0);
    free(e1);
    if (copy)
        json_object_set_new(report, "tta",
                            json_pack("{s:I, s:I, s:b, s:s, s:f, s:f, s:f, s:f, s:f}", "slices", (json_int_t)n, "steps",
                                      (json_int_t)tr.steps_run, "reverted", tr.reverted, "reason", tr.reason,
                                      "iou_before", tr.iou_before, "iou_after", tr.iou_after, "area_ratio_min",
                                      tr.area_ratio_min, "area_ratio_max", tr.area_ratio_max, "seconds", tr.seconds));
out:
    if (emb)
        for (size_t i = 0; i < 2 * n; i++) samda_embedding_release(emb[i]);
    free(emb);
    free(items);
    free(ims);
    free(img);
    return copy;
}

/* Record an adapter as the site's next version (parent given) and optionally activate it. */
samda_status worker_store_new_version(samdad_worker *w, samda_adapter *a, const char *site, int parent,
                                      json_t *meta, bool activate, int *version_out, samda_error *err)
{
    samda_store *store = samdad_store(w->ctx);
    int64_t site_id = 0;
    int version = 0;
    samda_status st = samda_store_site_id(store, site, &site_id, err);
    if (st == SAMDA_OK) st = samda_store_adapter_next_version(store, site, &version, err);
    if (st != SAMDA_OK) return st;
    char path[PATH_MAX];
    /* both lanes may save at once (continual TTA, training): a name of this thread's own */
    snprintf(path, sizeof path, "%s/tmp/adapter-%s-%d-%lx.safetensors", samda_store_data_dir(store), site, version,
             (unsigned long)pthread_self());
    if ((st = samda_adapter_save(a, path, err)) != SAMDA_OK) return st;
    void *buf = NULL;
    size_t len = 0;
    st = read_file(path, &buf, &len, err);
    unlink(path);
    if (st != SAMDA_OK) return st;
    char ida[32], idb[32];
    snprintf(ida, sizeof ida, "%lld", (long long)site_id);
    snprintf(idb, sizeof idb, "%d", version);
    samda_object_info obj;
    st = samda_store_object_put(store, SAMDA_OBJECT_ADAPTER, ida, idb, NULL, buf, len, &obj, err);
    free(buf);
    if (st != SAMDA_OK) return st;
    const char *prov = samda_adapter_metadata(a, "provenance");
    json_t *pj = prov ? json_loads(prov, 0, NULL) : NULL;
    if (pj) json_object_set_new(meta, "provenance", pj);
    const char *labels = samda_adapter_metadata(a, "labels"); /* listed by GET .../adapters */
    json_t *lj = labels ? json_loads(labels, 0, NULL) : NULL;
    if (lj) json_object_set_new(meta, "labels", lj);
    char *meta_s = json_dumps(meta, JSON_COMPACT | JSON_SORT_KEYS);
    st = samda_store_adapter_add(store, site, version, parent, &obj, samda_model_fingerprint(w->model), meta_s, err);
    free(meta_s);
    if (st == SAMDA_OK && activate) st = samda_store_adapter_activate(store, site, version, err);
    if (st == SAMDA_OK) {
        *version_out = version;
        json_t *d = json_pack("{s:s, s:i, s:i, s:O}", "site", site, "version", version, "parent", parent, "origin",
                              json_object_get(meta, "origin") ? json_object_get(meta, "origin") : json_null());
        char *ds = d ? json_dumps(d, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        json_decref(d);
        samda_error aerr;
        if (samda_store_audit_append(store, "system", activate ? "adapter.add+activate" : "adapter.add", obj.relpath,
                                     "ok", ds, &aerr) != SAMDA_OK)
            samda_log(&w->ctx->log, SAMDA_LOG_ERROR, "audit", "cannot write audit entry", "error=%s",
                      q((char[600]){0}, 600, aerr.message));
        free(ds);
    }
    return st;
}

/* Continual TTA: keep the adapted copy as the site's next version (parent = the one it came from)
 * and make it active. */
samda_status worker_save_continual(samdad_worker *w, samda_adapter *copy, const adapter_choice *ch,
                                   const samda_job *job, json_t *report, samda_error *err)
{
    json_t *meta = json_pack("{s:s, s:I, s:s}", "origin", "tta-continual", "job", (json_int_t)job->id,
                             "parent_file_version", ch->file_version);
    int version = 0;
    samda_status st = worker_store_new_version(w, copy, job->site, ch->version, meta, true, &version, err);
    json_decref(meta);
    if (st == SAMDA_OK) {
        /* No one asked for this version by hand: say so loudly (warn), count it; store_new_version
         * audited it ("adapter.add+activate" by "system"). */
        json_object_set_new(json_object_get(report, "tta"), "saved_version", json_integer(version));
        atomic_fetch_add(&w->tta_versions, 1);
        samda_log(&w->ctx->log, SAMDA_LOG_WARN, "worker", "continual TTA: new adapter version active",
                  "job=%lld site=%s version=%d parent=%d hint=\"POST /api/v1/sites/%s/adapters/rollback returns to "
                  "the previous version\"", (long long)job->id, job->site, version, ch->version, job->site);
    }
    return st;
}

/* A site whose active adapter was made for another base model (activated while no model was
 * loaded, or before [model] checkpoint changed) cannot use it: choose_adapter passes it over, so
 * say so once here, naming both fingerprints and what the site's jobs use instead. */
void worker_warn_foreign_adapters(samdad_worker *w, const samda_config *cfg)
{
    samda_store *store = samdad_store(w->ctx);
    samda_site *sites = NULL;
    size_t n = 0;
    samda_error err;
    if (samda_store_site_list(store, &sites, &n, &err) != SAMDA_OK) return; /* the jobs say it then */
    for (size_t i = 0; i < n; i++) {
        samda_adapter_row row;
        if (samda_store_adapter_get_active(store, sites[i].name, &row, &err) != SAMDA_OK) continue;
        if (strcmp(row.base_fingerprint, w->info.fingerprint) != 0)
            samda_log(&w->ctx->log, SAMDA_LOG_WARN, "model",
                      "a site's active adapter was made for another base model: the site falls back",
                      "site=%s version=%d adapter_base=%s model=%s fallback=%s", sites[i].name, row.version,
                      row.base_fingerprint[0] ? row.base_fingerprint : "none", w->info.fingerprint,
                      cfg->model_adapter && *cfg->model_adapter ? "default_adapter" : "none");
        samda_adapter_clear(&row);
    }
    samda_site_list_free(sites, n);
}
