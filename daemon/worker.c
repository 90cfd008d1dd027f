/* The model worker: two lanes over one read-only model, each a thread of its own (the model's
 * intra-op threads do the parallel work). The segmentation lane takes "segment" jobs and answers
 * interactive session calls between its batches; the training lane takes "train" and "evaluate"
 * jobs, so an adapter that trains for minutes never holds up a prompt or a clinical series. The
 * training lane keeps no adapter cache of its own and never touches the sessions.
 *
 * A segmentation job, in order: *
 (1) if a result of this job is already recorded (a previous attempt died after
 * recording it) finish with that one, so a series gets exactly one result per job; (2) load the
 * series as a volume; (3) pick the site's active adapter (else [model] adapter); (4) with TTA on,
 * adapt a copy on a sample of this series' slices (episodic: use it and discard; continual: save it
 * as the site's next adapter version when the guards accept it); (5) per window group, encode the
 * slices in batches and decode every label prompt-free; (6) clean up in 3-D; (7) write the SEG,
 * commit it as an object, record the result, queue it for the site's destinations, finish the job.
 * Heartbeats after every batch keep the lease; a cancelled job or a lost lease stops the work. */
#include "worker.h"

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

#include <jansson.h>

#include "dicom.h"
#include "model.h"
#include "histogram.h"
#include "loop.h"
#include "postproc.h"
#include "trainset.h"
#include "services_internal.h"
#include "storage.h"

#define TTA_MAX_SLICES 16 /* slices sampled for test-time adaptation (each encoded twice: as is, mirrored) */
#define ADAPTER_CACHE 8

typedef struct cached_adapter {
    char site[SAMDA_NAME_SIZE]; /* "" = the [model] default */
    int version;                /* 0 = the [model] default */
    char sha256[SAMDA_SHA256_HEX_SIZE];
    samda_adapter *a;
    uint64_t used;
} cached_adapter;

#define MAX_SESSIONS 64
#define SESSION_TTL_S 1800.0

typedef struct session {
    char id[SAMDAD_SESSION_ID_SIZE]; /* "" = free slot */
    char site[SAMDA_NAME_SIZE];
    samda_embedding *emb;
    float *prev;                     /* last low-res logits (L x L), NULL before the first predict */
    int rows, cols;
    double used;
} session;

typedef enum { CALL_CREATE, CALL_PREDICT, CALL_DELETE } call_op;
typedef enum { CALL_QUEUED, CALL_RUNNING, CALL_DONE } call_state;

typedef struct call {
    call_op op;
    call_state state;
    /* create */
    const char *site;
    const float *pixels;
    int rows, cols;
    char *id;                        /* create: OUT; predict/delete: IN */
    /* predict */
    const samdad_prompt *prompt;
    samdad_prediction *pred;
    samda_status st;
    samda_error err;
    struct call *next;
} call;

/* One lane: a thread, the job kinds it claims under its own lease owner, and the failure it could
 * not record yet. */
typedef struct lane {
    struct samdad_worker *w;
    const char *name;           /* "segmentation" or "training" */
    const char *const *kinds;   /* NULL-terminated */
    bool serves_calls;          /* the segmentation lane answers session calls */
    bool uses_cache;            /* the segmentation lane owns the adapter cache */
    char owner[64];
    samdad_loop loop;
    /* A job failure the index could not take (a full disk): recorded again before any new job is
     * taken, so the job ends with its own cause, not "lease expired". This lane's thread only. */
    struct {
        bool active;
        int64_t job_id;
        bool permanent;
        char error[SAMDA_ERROR_MESSAGE_SIZE];
    } unrecorded;
    samda_log_gate unrecorded_gate;
} lane;

struct samdad_worker {
    samdad_ctx *ctx;
    samdad_hist h_encode;            /* one encoder call (a batch of slices) */
    samdad_hist h_decode;            /* prompt-free decoding of one slice (all labels of a window) */
    samdad_hist h_predict;           /* one interactive prediction */
    samdad_hist h_job;               /* a whole segmentation of a series */
    _Atomic uint64_t slices_done;
    _Atomic uint64_t tta_versions;   /* adapter versions continual TTA made active */
    call *calls;                     /* queued interactive calls (under mu) */
    pthread_cond_t done_cv;          /* a call finished */
    session sessions[MAX_SESSIONS];  /* touched by the worker thread only */
    samda_model *model;
    samda_model_info info;
    lane seg;                        /* its loop.mu also guards calls; it owns sessions and cache */
    lane trn;
    cached_adapter cache[ADAPTER_CACHE]; /* the segmentation lane's only */
    uint64_t tick;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static char *q(char *buf, unsigned size, const char *v) { return samda_log_quote(buf, size, v); }

static bool stopping(const lane *ln)
{
    return samdad_loop_stopping((samdad_loop *)&ln->loop) || atomic_load(&ln->w->ctx->stopping);
}

/* Object paths and UIDs: in log lines (not in the job's error, which the index keeps) they become
 * "[object]" and "[uid]" unless [daemon] log_uids is on. */
static const char *redact(samdad_worker *w, const char *msg, char *buf, size_t size)
{
    return samdad_scrub(w->ctx, msg, buf, (unsigned)size);
}

/* ---- site settings --------------------------------------------------------------------------- */

typedef struct site_settings {
    int tta;                 /* samda_cfg_tta */
    int64_t min_component;
    bool largest_component;
    char dest[16][SAMDA_NAME_SIZE];
    size_t n_dest;
} site_settings;

/* A [site] section wins; a site made over the API has its settings in the index. */
static void site_settings_get(samdad_worker *w, const samda_config *cfg, const char *site, site_settings *out)
{
    memset(out, 0, sizeof *out);
    out->min_component = 20;
    const samda_site_cfg *sc = site && *site ? samda_config_site(cfg, site) : NULL;
    if (sc) {
        out->tta = (int)sc->tta;
        out->min_component = sc->min_component;
        out->largest_component = sc->largest_component;
        for (size_t i = 0; i < sc->destinations.n && out->n_dest < 16; i++)
            snprintf(out->dest[out->n_dest++], SAMDA_NAME_SIZE, "%s", sc->destinations.v[i]);
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
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(set, "destinations"), i, v) {
        if (json_is_string(v) && out->n_dest < 16)
            snprintf(out->dest[out->n_dest++], SAMDA_NAME_SIZE, "%s", json_string_value(v));
    }
    json_decref(set);
    samda_site_clear(&row);
}

/* ---- adapters -------------------------------------------------------------------------------- */

typedef struct adapter_choice {
    samda_adapter *a;       /* borrowed from the cache, or the caller's when owned */
    bool owned;             /* loaded for this job only (training lane): free with samda_adapter_free */
    char site[SAMDA_NAME_SIZE];
    int version;            /* 0: the [model] default */
    char file_version[17];  /* the file's own version (payload hash prefix) */
    char source[16];        /* "site" or "default" */
} adapter_choice;

static samda_adapter *cache_get(samdad_worker *w, const char *site, int version, const char *sha)
{
    for (int i = 0; i < ADAPTER_CACHE; i++) {
        cached_adapter *c = &w->cache[i];
        if (c->a && !strcmp(c->site, site) && c->version == version && !strcmp(c->sha256, sha)) {
            c->used = ++w->tick;
            return c->a;
        }
    }
    return NULL;
}

static void cache_put(samdad_worker *w, const char *site, int version, const char *sha, samda_adapter *a)
{
    int slot = 0;
    for (int i = 0; i < ADAPTER_CACHE; i++) {
        if (!w->cache[i].a) {
            slot = i;
            break;
        }
        if (w->cache[i].used < w->cache[slot].used) slot = i;
    }
    cached_adapter *c = &w->cache[slot];
    samda_adapter_free(c->a);
    snprintf(c->site, sizeof c->site, "%s", site);
    c->version = version;
    snprintf(c->sha256, sizeof c->sha256, "%s", sha);
    c->a = a;
    c->used = ++w->tick;
}

/* The adapter a job of site uses. With use_cache (the segmentation lane) it comes from and goes to
 * the cache; without (the training lane) it is loaded for the caller, who frees it (out->owned). */
static samda_status choose_adapter(samdad_worker *w, bool use_cache, const samda_config *cfg, const char *site,
                                   int version, adapter_choice *out, samda_error *err)
{
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
        samda_adapter *a = use_cache ? cache_get(w, site, row.version, row.object.sha256) : NULL;
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
            if (use_cache) cache_put(w, site, row.version, row.object.sha256, a);
            else out->owned = true;
        }
        out->a = a;
        snprintf(out->site, sizeof out->site, "%s", site);
        out->version = row.version;
        snprintf(out->source, sizeof out->source, "site");
        samda_adapter_clear(&row);
    } else if (st != SAMDA_ENOENT) {
        return st;
    } else if (cfg->model_adapter && *cfg->model_adapter) {
        samda_adapter *a = use_cache ? cache_get(w, "", 0, cfg->model_adapter) : NULL;
        if (!a) {
            a = samda_adapter_load(w->model, cfg->model_adapter, err);
            if (!a) {
                samda_error_prefix(err, "loading [model] adapter %s: ", cfg->model_adapter);
                return err->code ? err->code : SAMDA_EMODEL;
            }
            if (use_cache) cache_put(w, "", 0, cfg->model_adapter, a);
            else out->owned = true;
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

/* ---- interactive calls ------------------------------------------------------------------------ */

static session *session_find(samdad_worker *w, const char *id)
{
    double now = now_s();
    for (int i = 0; i < MAX_SESSIONS; i++) {
        session *x = &w->sessions[i];
        if (!x->id[0]) continue;
        if (now - x->used > SESSION_TTL_S) { /* expired */
            samda_embedding_release(x->emb);
            free(x->prev);
            memset(x, 0, sizeof *x);
            continue;
        }
        if (!strcmp(x->id, id)) return x;
    }
    return NULL;
}

static void session_drop(session *x)
{
    samda_embedding_release(x->emb);
    free(x->prev);
    memset(x, 0, sizeof *x);
}

static samda_status random_id(char id[SAMDAD_SESSION_ID_SIZE], samda_error *err)
{
    unsigned char b[16];
    FILE *f = fopen("/dev/urandom", "rb");
    size_t got = f ? fread(b, 1, sizeof b, f) : 0;
    if (f) fclose(f);
    if (got != sizeof b) return samda_fail(err, SAMDA_EIO, "reading /dev/urandom for a session id");
    for (int i = 0; i < 16; i++) snprintf(id + 2 * i, 3, "%02x", b[i]);
    return SAMDA_OK;
}

static void do_create(samdad_worker *w, call *c)
{
    session *slot = NULL;
    session_find(w, ""); /* expire old ones */
    for (int i = 0; i < MAX_SESSIONS && !slot; i++)
        if (!w->sessions[i].id[0]) slot = &w->sessions[i];
    if (!slot) { /* least recently used */
        slot = &w->sessions[0];
        for (int i = 1; i < MAX_SESSIONS; i++)
            if (w->sessions[i].used < slot->used) slot = &w->sessions[i];
        session_drop(slot);
    }
    samda_model_image im = {c->pixels, c->rows, c->cols, 1, SAMDA_MODEL_PIXEL_F32};
    samda_model_encode_item it = {.image = &im};
    samda_embedding *e = NULL;
    if ((c->st = samda_model_encode(w->model, &it, 1, &e, &c->err)) != SAMDA_OK) return;
    if ((c->st = random_id(slot->id, &c->err)) != SAMDA_OK) {
        samda_embedding_release(e);
        slot->id[0] = 0;
        return;
    }
    slot->emb = e;
    slot->rows = c->rows;
    slot->cols = c->cols;
    slot->used = now_s();
    snprintf(slot->site, sizeof slot->site, "%s", c->site ? c->site : "");
    memcpy(c->id, slot->id, SAMDAD_SESSION_ID_SIZE);
}

static void do_predict(samdad_worker *w, call *c)
{
    session *x = session_find(w, c->id);
    if (!x) {
        c->st = samda_fail(&c->err, SAMDA_ENOENT, "unknown or expired session %s", c->id);
        return;
    }
    x->used = now_s();
    const samdad_prompt *p = c->prompt;
    int lr = w->info.low_res_size;
    int nm = p->multimask ? w->info.n_multimask : 1;
    size_t plane = (size_t)x->rows * x->cols;
    uint8_t *masks = malloc((size_t)nm * plane);
    float *low = malloc((size_t)nm * lr * lr * sizeof *low);
    float iou[8] = {0};
    if (!masks || !low) {
        free(masks);
        free(low);
        c->st = samda_fail(&c->err, SAMDA_ENOMEM, "out of memory");
        return;
    }
    samda_model_prompt mp = {0};
    float pts[64 * 2];
    for (size_t i = 0; i < p->n_points; i++) {
        pts[2 * i] = p->points[i][0];
        pts[2 * i + 1] = p->points[i][1];
    }
    mp.points = p->n_points ? pts : NULL;
    mp.point_labels = p->n_points ? p->labels : NULL;
    mp.n_points = p->n_points;
    mp.box = p->has_box ? p->box : NULL;
    mp.mask_input = p->use_previous ? x->prev : NULL;
    samda_model_decode_out o = {low, (size_t)nm * lr * lr, iou, (size_t)nm, NULL, 0, masks, (size_t)nm * plane};
    unsigned flags = p->multimask ? SAMDA_MODEL_DECODE_MULTIMASK : 0;
    double t = now_s();
    adapter_choice ch;
    samda_config *cfg = samdad_config_get(w->ctx);
    samda_error e2;
    bool with_adapter = x->site[0] && choose_adapter(w, true, cfg, x->site, 0, &ch, &e2) == SAMDA_OK;
    samda_config_unref(cfg);
    c->st = with_adapter ? samda_adapter_decode(w->model, ch.a, x->emb, &mp, 1, flags, -1, &o, &c->err)
                         : samda_model_decode(w->model, x->emb, &mp, 1, flags, &o, &c->err);
    if (c->st != SAMDA_OK) {
        free(masks);
        free(low);
        return;
    }
    int best = 0;
    for (int i = 1; i < nm; i++)
        if (iou[i] > iou[best]) best = i;
    samdad_prediction *r = c->pred;
    r->rows = x->rows;
    r->cols = x->cols;
    r->n_masks = nm;
    r->best = best;
    for (int i = 0; i < nm && i < 3; i++) r->iou[i] = iou[i];
    r->mask = malloc(plane);
    if (!r->mask) {
        free(masks);
        free(low);
        c->st = samda_fail(&c->err, SAMDA_ENOMEM, "out of memory");
        return;
    }
    memcpy(r->mask, masks + (size_t)best * plane, plane);
    free(x->prev);
    x->prev = malloc((size_t)lr * lr * sizeof *x->prev);
    if (x->prev) memcpy(x->prev, low + (size_t)best * lr * lr, (size_t)lr * lr * sizeof *x->prev);
    r->decode_ms = (now_s() - t) * 1000.0;
    samdad_hist_record(&w->h_predict, now_s() - t);
    free(masks);
    free(low);
}

/* Run every queued interactive call (segmentation lane only). */
static void serve_calls(samdad_worker *w)
{
    pthread_mutex_lock(&w->seg.loop.mu);
    while (w->calls) {
        call *c = w->calls;
        w->calls = c->next;
        c->state = CALL_RUNNING;
        pthread_mutex_unlock(&w->seg.loop.mu);
        c->st = SAMDA_OK;
        if (c->op == CALL_CREATE) do_create(w, c);
        else if (c->op == CALL_PREDICT) do_predict(w, c);
        else {
            session *x = session_find(w, c->id);
            if (x) session_drop(x);
            else c->st = samda_fail(&c->err, SAMDA_ENOENT, "unknown or expired session %s", c->id);
        }
        pthread_mutex_lock(&w->seg.loop.mu);
        c->state = CALL_DONE;
        pthread_cond_broadcast(&w->done_cv);
    }
    pthread_mutex_unlock(&w->seg.loop.mu);
}

/* Queue a call and wait: withdrawn with SAMDA_EBUSY if not taken within wait_ms. */
static samda_status submit(samdad_worker *w, call *c, unsigned wait_ms, samda_error *err)
{
    if (!w) return samda_fail(err, SAMDA_EMODEL, "no model loaded");
    c->state = CALL_QUEUED;
    c->next = NULL;
    memset(&c->err, 0, sizeof c->err);
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += wait_ms / 1000;
    until.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&w->seg.loop.mu);
    if (w->seg.loop.stop) {
        pthread_mutex_unlock(&w->seg.loop.mu);
        return samda_fail(err, SAMDA_EBUSY, "the model worker is stopping");
    }
    call **tail = &w->calls;
    while (*tail) tail = &(*tail)->next;
    *tail = c;
    w->seg.loop.kicked = true;
    pthread_cond_signal(&w->seg.loop.cv);
    while (c->state != CALL_DONE) {
        if (c->state == CALL_QUEUED && pthread_cond_timedwait(&w->done_cv, &w->seg.loop.mu, &until) != 0 &&
            c->state == CALL_QUEUED) {
            for (call **pp = &w->calls; *pp; pp = &(*pp)->next)
                if (*pp == c) {
                    *pp = c->next;
                    break;
                }
            pthread_mutex_unlock(&w->seg.loop.mu);
            return samda_fail(err, SAMDA_EBUSY, "the model worker is busy with a long step (training?) and did not take "
                              "the request within %u ms: try again", wait_ms);
        }
        if (c->state == CALL_RUNNING) pthread_cond_wait(&w->done_cv, &w->seg.loop.mu);
    }
    pthread_mutex_unlock(&w->seg.loop.mu);
    if (c->st != SAMDA_OK && err) *err = c->err;
    return c->st;
}

samda_status samdad_worker_session_create(samdad_worker *w, const char *site, const float *pixels, int rows, int cols,
                                          unsigned wait_ms, char id[SAMDAD_SESSION_ID_SIZE], samda_error *err)
{
    if (!pixels || rows < 1 || cols < 1 || rows > 16384 || cols > 16384)
        return samda_fail(err, SAMDA_EINVAL, "session image must be 1..16384 pixels each way");
    call c = {.op = CALL_CREATE, .site = site, .pixels = pixels, .rows = rows, .cols = cols, .id = id};
    return submit(w, &c, wait_ms, err);
}

samda_status samdad_worker_session_predict(samdad_worker *w, const char *id, const samdad_prompt *p, unsigned wait_ms,
                                           samdad_prediction *out, samda_error *err)
{
    memset(out, 0, sizeof *out);
    if (!p || (p->n_points == 0 && !p->has_box && !p->use_previous))
        return samda_fail(err, SAMDA_EINVAL, "a prediction needs points, a box or the previous mask");
    if (p->n_points > 64) return samda_fail(err, SAMDA_EINVAL, "at most 64 points");
    char idc[SAMDAD_SESSION_ID_SIZE];
    snprintf(idc, sizeof idc, "%s", id);
    call c = {.op = CALL_PREDICT, .id = idc, .prompt = p, .pred = out};
    return submit(w, &c, wait_ms, err);
}

samda_status samdad_worker_session_delete(samdad_worker *w, const char *id, unsigned wait_ms, samda_error *err)
{
    char idc[SAMDAD_SESSION_ID_SIZE];
    snprintf(idc, sizeof idc, "%s", id);
    call c = {.op = CALL_DELETE, .id = idc};
    return submit(w, &c, wait_ms, err);
}

/* ---- helpers --------------------------------------------------------------------------------- */

static bool same_window(const samda_adapter_label *x, const samda_adapter_label *y)
{
    return x->window_kind == y->window_kind && x->window_a == y->window_a && x->window_b == y->window_b;
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

/* Keep the lease and learn about cancellation. false: stop working on this job. */
static bool keep_going(lane *ln, const samda_job *job, double progress, const char *msg, samda_status *why)
{
    samdad_worker *w = ln->w;
    if (ln->serves_calls) serve_calls(w); /* interactive requests go before the next batch */
    samda_store *store = samdad_store(w->ctx);
    samda_config *cfg = samdad_config_get(w->ctx);
    int64_t lease = cfg->job_lease_ms;
    samda_config_unref(cfg);
    samda_error err;
    samda_status st = samda_store_job_heartbeat(store, job->id, ln->owner, lease, &err);
    if (st == SAMDA_OK) st = samda_store_job_progress(store, job->id, ln->owner, progress, msg, &err);
    if (st == SAMDA_ECANCELED || st == SAMDA_ELOCKED) {
        *why = st;
        return false;
    }
    if (stopping(ln)) {
        *why = SAMDA_ECANCELED;
        return false;
    }
    return true;
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

/* ---- test-time adaptation ---------------------------------------------------------------------- */

/* Adapt a copy of a on up to TTA_MAX_SLICES evenly spaced slices (windowed with the first label's
 * window; mirrored copies for the consistency term). Returns the adapted copy (caller frees) or NULL
 * when nothing was adapted; report gets what happened. */
static samda_adapter *run_tta(samdad_worker *w, const samda_adapter *a, const samda_volume *vol, json_t *report,
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
static samda_status store_new_version(samdad_worker *w, samda_adapter *a, const char *site, int parent,
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
static samda_status save_continual(samdad_worker *w, samda_adapter *copy, const adapter_choice *ch,
                                   const samda_job *job, json_t *report, samda_error *err)
{
    json_t *meta = json_pack("{s:s, s:I, s:s}", "origin", "tta-continual", "job", (json_int_t)job->id,
                             "parent_file_version", ch->file_version);
    int version = 0;
    samda_status st = store_new_version(w, copy, job->site, ch->version, meta, true, &version, err);
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

/* ---- one job --------------------------------------------------------------------------------- */

static bool permanent_error(samda_status st)
{
    return st == SAMDA_EBADDICOM || st == SAMDA_ENOTSUP || st == SAMDA_ETOOBIG || st == SAMDA_EBADUID ||
           st == SAMDA_EINVAL || st == SAMDA_ECONFLICT;
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
        queue_exports(w, ss, rows[i].object.relpath, rows[i].seg_sop_uid, report);
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

static samda_status run_series(lane *ln, const samda_job *job, const char *series_uid, const json_t *params,
                                json_t *report, samda_error *err)
{
    samdad_worker *w = ln->w;
    samda_store *store = samdad_store(w->ctx);
    samda_config *cfg = samdad_config_get(w->ctx);
    samda_status st = SAMDA_OK, why = SAMDA_OK;
    site_settings ss;
    site_settings_get(w, cfg, job->site, &ss);
    size_t n_inst = 0;
    char **paths = NULL;
    samda_volume *vol = NULL;
    samda_adapter *tta_copy = NULL;
    uint8_t *masks = NULL;
    float *win = NULL;
    samda_model_image *ims = NULL;
    samda_model_encode_item *items = NULL;
    samda_embedding **emb = NULL;
    samda_seg_writer *wr = NULL;
    size_t batch = (size_t)(w->info.max_batch > 0 ? w->info.max_batch : 2);
    const double t0 = now_s();
    double t_load = 0, t_tta = 0, t_encode = 0, t_decode = 0, t_post = 0, t_seg = 0;

    const char *tta_req = json_string_value(json_object_get(params, "tta"));
    if (tta_req && !strcmp(tta_req, "off")) ss.tta = SAMDA_CFG_TTA_OFF;
    if (tta_req && !strcmp(tta_req, "episodic")) ss.tta = SAMDA_CFG_TTA_EPISODIC;
    if (tta_req && !strcmp(tta_req, "continual")) ss.tta = SAMDA_CFG_TTA_CONTINUAL;
    if (recorded_result(w, job, series_uid, &ss, report)) goto done_quiet;

    /* (2) the volume */
    if ((st = samda_store_series_paths(store, series_uid, &paths, &n_inst, err)) != SAMDA_OK) goto out;
    if (!n_inst) {
        st = samda_fail(err, SAMDA_ENOENT, "series has no stored instance");
        goto out;
    }
    if (!keep_going(ln, job, 0.02, "loading the series", &why)) goto out;
    /* The volume loader's messages name the attribute and the instance: no prefix before the cause. */
    if ((st = samda_dicom_volume_load((const char *const *)paths, n_inst, NULL, &vol, err)) != SAMDA_OK) goto out;
    const samda_volume_info *vi = samda_volume_get_info(vol);
    if (!vi->has_pixel_spacing) {
        /* The SEG's Pixel Measures and every volume would be invented. */
        st = samda_fail(err, SAMDA_EBADDICOM, "(0028,0030) PixelSpacing missing: samda segments only images whose "
                        "pixel size is known (the DICOM-SEG's pixel measures and the volumes need it)");
        goto out;
    }
    const size_t plane = (size_t)vi->rows * vi->cols, S = vi->n_slices;
    t_load = now_s() - t0;

    /* (3) adapter */
    adapter_choice ch;
    const json_t *av = json_object_get(params, "adapter_version");
    int want_version = json_is_integer(av) ? (int)json_integer_value(av) : json_is_string(av) ? atoi(json_string_value(av)) : 0;
    if ((st = choose_adapter(w, ln->uses_cache, cfg, job->site, want_version, &ch, err)) != SAMDA_OK) goto out;
    samda_adapter_info ai;
    samda_adapter_get_info(ch.a, &ai, NULL);
    const size_t L = ai.n_labels;
    json_object_set_new(report, "adapter", json_pack("{s:s, s:s, s:i, s:s, s:s}", "source", ch.source, "site",
                                                     ch.site, "version", ch.version, "file_version", ch.file_version,
                                                     "tta_mode", ss.tta == SAMDA_CFG_TTA_EPISODIC    ? "episodic"
                                                                 : ss.tta == SAMDA_CFG_TTA_CONTINUAL ? "continual"
                                                                                                     : "off"));
    const samda_adapter *use = ch.a;

    /* (4) test-time adaptation */
    if (ss.tta != SAMDA_CFG_TTA_OFF) {
        if (!keep_going(ln, job, 0.05, "test-time adaptation", &why)) goto out;
        double t = now_s();
        tta_copy = run_tta(w, ch.a, vol, report, err);
        t_tta = now_s() - t;
        if (!tta_copy) {
            samda_log(&w->ctx->log, SAMDA_LOG_WARN, "worker", "test-time adaptation failed: segmenting with the "
                      "site adapter as is", "job=%lld error=%s", (long long)job->id,
                      q((char[600]){0}, 600, redact(w, err->message, (char[600]){0}, 600)));
            json_object_set_new(report, "tta", json_pack("{s:s}", "error", err->message));
        } else {
            json_t *tr = json_object_get(report, "tta");
            bool reverted = json_is_true(json_object_get(tr, "reverted"));
            if (reverted)
                samda_log(&w->ctx->log, SAMDA_LOG_WARN, "worker", "test-time adaptation reverted by its guards",
                          "job=%lld reason=%s", (long long)job->id,
                          q((char[600]){0}, 600, json_string_value(json_object_get(tr, "reason"))));
            use = tta_copy;
            if (ss.tta == SAMDA_CFG_TTA_CONTINUAL && !reverted && ch.source[0] == 's') {
                samda_error e2;
                if (save_continual(w, tta_copy, &ch, job, report, &e2) != SAMDA_OK)
                    samda_log(&w->ctx->log, SAMDA_LOG_ERROR, "worker", "continual TTA: cannot keep the new version",
                              "job=%lld error=%s", (long long)job->id, q((char[600]){0}, 600, e2.message));
            } else if (ss.tta == SAMDA_CFG_TTA_CONTINUAL && ch.source[0] != 's') {
                json_object_set_new(tr, "note", json_string("continual TTA keeps versions of a site's own adapter; "
                                                            "the [model] default was adapted for this series only"));
            }
        }
    }

    /* (5) encode and decode, per window group */
    masks = calloc(L * S * plane, 1);
    win = malloc(batch * plane * sizeof *win);
    ims = calloc(batch, sizeof *ims);
    items = calloc(batch, sizeof *items);
    emb = calloc(batch, sizeof *emb);
    if (!masks || !win || !ims || !items || !emb) {
        st = samda_fail(err, SAMDA_ENOMEM, "out of memory for %zu labels x %zu slices of %u x %u", L, S, vi->rows,
                        vi->cols);
        goto out;
    }
    bool done_label[SAMDA_ADAPTER_MAX_LABELS] = {0}, wanted[SAMDA_ADAPTER_MAX_LABELS] = {0};
    size_t group_labels[SAMDA_ADAPTER_MAX_LABELS];
    size_t total_steps = 0, steps = 0, n_wanted = 0;
    for (size_t l = 0; l < L; l++) {
        wanted[l] = label_wanted(params, samda_adapter_label_at(use, l)->name);
        done_label[l] = !wanted[l];
        n_wanted += wanted[l];
    }
    if (!n_wanted) {
        st = samda_fail(err, SAMDA_EINVAL, "none of the requested labels is a label of the adapter");
        goto out;
    }
    for (size_t l = 0; l < L; l++) {
        bool first = wanted[l];
        for (size_t k = 0; k < l; k++)
            if (wanted[k] && same_window(samda_adapter_label_at(use, k), samda_adapter_label_at(use, l))) first = false;
        if (first) total_steps += (S + batch - 1) / batch;
    }
    for (size_t l0 = 0; l0 < L; l0++) {
        if (done_label[l0]) continue;
        const samda_adapter_label *lab0 = samda_adapter_label_at(use, l0);
        size_t ng = 0;
        for (size_t l = l0; l < L; l++)
            if (!done_label[l] && same_window(lab0, samda_adapter_label_at(use, l))) {
                group_labels[ng++] = l;
                done_label[l] = true;
            }
        for (size_t s0 = 0; s0 < S; s0 += batch) {
            size_t nb = S - s0 < batch ? S - s0 : batch;
            char msg[96];
            snprintf(msg, sizeof msg, "segmenting: slices %zu-%zu of %zu", s0 + 1, s0 + nb, S);
            if (!keep_going(ln, job, 0.1 + 0.8 * (double)steps / (double)(total_steps ? total_steps : 1), msg, &why))
                goto out;
            double t = now_s();
            for (size_t i = 0; i < nb; i++) {
                if ((st = samda_adapter_window(lab0, samda_volume_voxels(vol) + (s0 + i) * plane, plane,
                                               win + i * plane, err)) != SAMDA_OK)
                    goto out;
                ims[i] = (samda_model_image){win + i * plane, (int)vi->rows, (int)vi->cols, 1, SAMDA_MODEL_PIXEL_F32};
                items[i] = (samda_model_encode_item){.image = &ims[i]};
            }
            if ((st = samda_model_encode(w->model, items, nb, emb, err)) != SAMDA_OK) goto out;
            samdad_hist_record(&w->h_encode, now_s() - t);
            t_encode += now_s() - t;
            t = now_s();
            for (size_t i = 0; i < nb && st == SAMDA_OK; i++) {
                double td = now_s();
                uint8_t *tmp = malloc(ng * plane);
                if (!tmp) {
                    st = samda_fail(err, SAMDA_ENOMEM, "out of memory");
                    break;
                }
                samda_model_decode_out o = {0};
                o.masks = tmp;
                o.masks_len = ng * plane;
                st = samda_adapter_decode_labels(w->model, use, emb[i], group_labels, ng, &o, err);
                for (size_t g = 0; g < ng && st == SAMDA_OK; g++)
                    memcpy(masks + (group_labels[g] * S + s0 + i) * plane, tmp + g * plane, plane);
                free(tmp);
                samdad_hist_record(&w->h_decode, now_s() - td);
                atomic_fetch_add(&w->slices_done, 1);
            }
            for (size_t i = 0; i < nb; i++) {
                samda_embedding_release(emb[i]);
                emb[i] = NULL;
            }
            t_decode += now_s() - t;
            if (st != SAMDA_OK) goto out;
            steps++;
        }
    }

    /* (6) 3-D clean-up */
    double t = now_s();
    json_t *labels_js = json_array();
    json_object_set_new(report, "labels", labels_js);
    for (size_t l = 0; l < L; l++) {
        if (!wanted[l]) continue;
        samdad_mask_stats ms;
        if ((st = samdad_mask_clean(masks + l * S * plane, S, vi->rows, vi->cols, (size_t)ss.min_component,
                                    ss.largest_component, &ms, err)) != SAMDA_OK)
            goto out;
        /* A volume only from a known slice spacing (or, for one slice, its thickness): never from an
         * invented 1 mm. */
        json_t *vol_ml = vi->slice_spacing > 0 ? json_real((double)ms.voxels_after * vi->pixel_spacing[0] *
                                                           vi->pixel_spacing[1] * vi->slice_spacing / 1000.0)
                                               : json_null();
        json_array_append_new(labels_js, json_pack("{s:s, s:I, s:I, s:I, s:o}", "label",
                                                   samda_adapter_label_at(use, l)->name, "voxels",
                                                   (json_int_t)ms.voxels_after, "components", (json_int_t)ms.components,
                                                   "components_removed", (json_int_t)ms.removed, "volume_ml", vol_ml));
    }
    t_post = now_s() - t;
    if (!keep_going(ln, job, 0.92, "writing the DICOM-SEG", &why)) goto out;

    /* (7) the SEG */
    t = now_s();
    char desc[80], version[64], algo_version[160];
    snprintf(desc, sizeof desc, "AI segmentation (samda%s%.30s)", job->site[0] ? ", site " : "", job->site);
    snprintf(version, sizeof version, "%s", SAMDA_VERSION);
    /* "samda SAM-DA " + this must fit SoftwareVersions (LO, 64): the full fingerprint and adapter
     * file version are in the job's result. */
    snprintf(algo_version, sizeof algo_version, "base %.8s %.20s v%d%s", samda_model_fingerprint(w->model),
             ch.site[0] ? ch.site : "default", ch.version,
             tta_copy ? (ss.tta == SAMDA_CFG_TTA_CONTINUAL ? " tta-c" : " tta-e") : "");
    samda_seg_params sp;
    samda_seg_params_init(&sp);
    sp.series_description = desc;
    sp.content_label = "SAMDA";
    sp.content_description = "SAM + site decoder adapter (SAM-DA), automatic, not reviewed";
    sp.software_version = version;
    if (!(wr = samda_seg_writer_new(vol, &sp, err))) {
        st = err->code ? err->code : SAMDA_EINTERNAL;
        goto out;
    }
    for (size_t l = 0; l < L; l++) {
        if (!wanted[l]) continue;
        const samda_adapter_label *lab = samda_adapter_label_at(use, l);
        samda_seg_segment seg;
        samda_seg_segment_init(&seg);
        seg.label = lab->name;
        seg.category = (samda_seg_code){lab->category_code, lab->category_scheme, lab->category_meaning};
        seg.type = (samda_seg_code){lab->type_code, lab->type_scheme, lab->type_meaning};
        seg.has_color = true;
        memcpy(seg.rgb, lab->rgb, 3);
        seg.algorithm_type = SAMDA_SEG_ALGORITHM_AUTOMATIC;
        seg.algorithm_name = "samda SAM-DA";
        seg.algorithm_version = algo_version;
        if ((st = samda_seg_writer_add_segment(wr, &seg, masks + l * S * plane, NULL, err)) != SAMDA_OK) goto out;
    }
    char seg_path[PATH_MAX];
    snprintf(seg_path, sizeof seg_path, "%s/tmp/seg-job-%lld.dcm", samda_store_data_dir(store), (long long)job->id);
    samda_seg_save_result sr;
    if ((st = samda_seg_writer_save(wr, seg_path, &sr, err)) != SAMDA_OK) goto out;
    void *buf = NULL;
    size_t len = 0;
    st = read_file(seg_path, &buf, &len, err);
    unlink(seg_path);
    if (st != SAMDA_OK) goto out;
    samda_object_info obj;
    st = samda_store_object_put(store, SAMDA_OBJECT_SEG, job->study_uid, sr.series_instance_uid, sr.sop_instance_uid,
                                buf, len, &obj, err);
    free(buf);
    if (st != SAMDA_OK) goto out;
    t_seg = now_s() - t;
    json_t *timings = json_pack("{s:f, s:f, s:f, s:f, s:f, s:f, s:f}", "load", t_load, "tta", t_tta, "encode", t_encode,
                                "decode", t_decode, "postprocess", t_post, "seg", t_seg, "total", now_s() - t0);
    char *timings_s = json_dumps(timings, JSON_COMPACT);
    char *labels_s = json_dumps(json_object_get(report, "labels"), JSON_COMPACT);
    char model_version[80];
    snprintf(model_version, sizeof model_version, "%.16s", samda_model_fingerprint(w->model));
    samda_result_spec rs = {
        .job_id = job->id,
        .series_uid = series_uid,
        .seg_series_uid = sr.series_instance_uid,
        .seg_sop_uid = sr.sop_instance_uid,
        .object = &obj,
        .model_version = model_version,
        .adapter_version = ch.version,
        .timings_json = timings_s,
        .label_stats_json = labels_s,
    };
    int64_t result_id = 0;
    st = samda_store_result_add(store, &rs, &result_id, err);
    free(timings_s);
    free(labels_s);
    json_object_set_new(report, "timings", timings);
    if (st != SAMDA_OK) goto out;
    json_object_set_new(report, "result_id", json_integer(result_id));
    json_object_set_new(report, "seg_series_uid", json_string(sr.series_instance_uid));
    json_object_set_new(report, "seg_sop_uid", json_string(sr.sop_instance_uid));
    json_object_set_new(report, "frames", json_integer((json_int_t)sr.n_frames));
    json_object_set_new(report, "slices", json_integer((json_int_t)S));
    json_object_set_new(report, "model", json_string(samda_model_fingerprint(w->model)));
    queue_exports(w, &ss, obj.relpath, sr.sop_instance_uid, report);
    samdad_hist_record(&w->h_job, now_s() - t0);
    samda_log(&w->ctx->log, SAMDA_LOG_INFO, "worker", "DICOM-SEG recorded",
                  "job=%lld result=%lld slices=%zu labels=%zu frames=%zu seconds=%.2f encode_s=%.2f decode_s=%.2f",
                  (long long)job->id, (long long)result_id, S, L, sr.n_frames, now_s() - t0, t_encode, t_decode);
    goto out;
done_quiet:
    st = SAMDA_OK;
out:
    if (why != SAMDA_OK) {
        st = why;
        samda_fail(err, why, why == SAMDA_ELOCKED ? "the job's lease was lost" : "cancelled or stopping");
    }
    samda_seg_writer_free(wr);
    if (emb)
        for (size_t i = 0; i < batch; i++) samda_embedding_release(emb[i]);
    free(emb);
    free(items);
    free(ims);
    free(win);
    free(masks);
    samda_adapter_free(tta_copy);
    samda_volume_free(vol);
    samda_store_paths_free(paths, n_inst);
    samda_config_unref(cfg);
    return st;
}

/* ---- job kinds ------------------------------------------------------------------------------- */


/* "segment": the job's series, or (an on-demand request for a study) each CT/MR series of the study. */
static samda_status run_segment(lane *ln, const samda_job *job, const json_t *params, samda_error *err)
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

/* The studies of params.studies that hold a DICOM-SEG (ground truth sent to samdad) become
 * NAME.image.npy + NAME.mask.npy pairs in dir, labels mapped by name onto a's. */
static samda_status build_trainset(samdad_worker *w, const json_t *params, const samda_adapter *a, const char *dir,
                                   json_t *report, samda_error *err)
{
    samda_store *store = samdad_store(w->ctx);
    const json_t *studies = json_object_get(params, "studies");
    if (!json_is_array(studies) || !json_array_size(studies))
        return samda_fail(err, SAMDA_EINVAL, "params.studies: a non-empty array of StudyInstanceUIDs that hold a "
                          "ground-truth DICOM-SEG is required");
    samda_adapter_info ai;
    samda_adapter_get_info(a, &ai, NULL);
    const char *names[SAMDA_ADAPTER_MAX_LABELS];
    int values[SAMDA_ADAPTER_MAX_LABELS];
    for (size_t l = 0; l < ai.n_labels; l++) {
        names[l] = samda_adapter_label_at(a, l)->name;
        values[l] = samda_adapter_label_at(a, l)->value;
    }
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
                    st = samdad_trainset_write((const char *const *)paths, nsrc, seg_path, names, values, ai.n_labels,
                                               dir, prefix, &written, NULL, err);
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
static samda_status run_train_eval(lane *ln, const samda_job *job, const json_t *params, bool train,
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
    ch.owned = false;
    ch.a = NULL;
    if ((st = choose_adapter(w, ln->uses_cache, cfg, job->site, version, &ch, err)) != SAMDA_OK) goto out;
    snprintf(dir, sizeof dir, "%s/tmp/%s-%lld", samda_store_data_dir(store), train ? "train" : "eval", (long long)job->id);
    rm_tree(dir);
    if (mkdir(dir, 0700) != 0) {
        st = samda_fail(err, SAMDA_EIO, "creating %s: %s", dir, strerror(errno));
        goto out;
    }
    if (!keep_going(ln, job, 0.02, "preparing the data from DICOM-SEGs", &why)) goto out;
    if ((st = build_trainset(w, params, ch.a, dir, report, err)) != SAMDA_OK) goto out;
    if (!keep_going(ln, job, 0.1, train ? "training" : "evaluating", &why)) goto out;
    json_object_set_new(report, "from", json_pack("{s:s, s:i, s:s}", "source", ch.source, "version", ch.version,
                                                  "file_version", ch.file_version));
    if (train) {
        if (!(copy = samda_adapter_clone(ch.a, err))) {
            st = err->code;
            goto out;
        }
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
                            json_pack("{s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:f, s:I}", "cases", tr.n_cases, "train",
                                      tr.n_train, "validation", tr.n_val, "epochs_run", tr.epochs_run, "best_epoch",
                                      tr.best_epoch, "best_val_dice", tr.best_val_dice, "seconds_per_epoch",
                                      tr.seconds_per_epoch, "seconds", tr.total_seconds, "trainable",
                                      (json_int_t)tr.n_trainable));
        if (!keep_going(ln, job, 0.95, "saving the new version", &why)) goto out;
        if (!job->site[0]) {
            st = samda_fail(err, SAMDA_EINVAL, "a training job needs a site");
            goto out;
        }
        bool activate = json_is_true(json_object_get(params, "activate"));
        json_t *meta = json_pack("{s:s, s:I, s:O}", "origin", "train", "job", (json_int_t)job->id, "metrics",
                                 json_object_get(report, "train"));
        int nv = 0;
        st = store_new_version(w, copy, job->site, ch.version, meta, activate, &nv, err);
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
    if (ch.owned) samda_adapter_free(ch.a);
    if (why != SAMDA_OK) {
        st = why;
        samda_fail(err, why, why == SAMDA_ELOCKED ? "the job's lease was lost" : "cancelled or stopping");
    }
    if (dir[0]) rm_tree(dir);
    samda_adapter_free(copy);
    json_decref(report);
    samda_config_unref(cfg);
    return st;
}

static samda_status run_job(lane *ln, const samda_job *job, samda_error *err)
{
    json_t *params = job->params_json ? json_loads(job->params_json, 0, NULL) : json_object();
    if (!params) params = json_object();
    samda_status st;
    if (!strcmp(job->kind, "segment")) st = run_segment(ln, job, params, err);
    else if (!strcmp(job->kind, "train")) st = run_train_eval(ln, job, params, true, err);
    else if (!strcmp(job->kind, "evaluate")) st = run_train_eval(ln, job, params, false, err);
    else st = samda_fail(err, SAMDA_ENOTSUP, "unknown job kind '%s'", job->kind);
    json_decref(params);
    return st;
}

/* ---- thread ---------------------------------------------------------------------------------- */

/* Record a failed attempt; when the index cannot take it, keep it in the lane for take_one(). */
static samda_status record_failure(lane *ln, int64_t job_id, bool perm, const char *error, bool *requeued)
{
    samdad_worker *w = ln->w;
    samda_error err;
    *requeued = false;
    /* The job's error is read through the API: the data directory's paths stay out of it. */
    char shown[SAMDA_ERROR_MESSAGE_SIZE];
    samda_hide_dir(shown, sizeof shown, error, samda_store_data_dir(samdad_store(w->ctx)));
    samda_status st = samda_store_job_fail(samdad_store(w->ctx), job_id, ln->owner, shown, perm, requeued, &err);
    if (st == SAMDA_OK || st == SAMDA_ELOCKED || st == SAMDA_ENOENT || st == SAMDA_ECANCELED) {
        if (st != SAMDA_OK)
            samda_log(&w->ctx->log, SAMDA_LOG_WARN, "worker", "job failure not recorded: the job is no longer ours",
                      "job=%lld error=%s", (long long)job_id, q((char[600]){0}, 600, err.message));
        ln->unrecorded.active = false;
        return st;
    }
    if (!ln->unrecorded.active || ln->unrecorded.job_id != job_id) {
        ln->unrecorded.active = true;
        ln->unrecorded.job_id = job_id;
        ln->unrecorded.permanent = perm;
        snprintf(ln->unrecorded.error, sizeof ln->unrecorded.error, "%s", error);
    }
    unsigned held = 0;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    if (samda_log_gate_pass(&ln->unrecorded_gate, (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, 60000, &held))
        samda_log(&w->ctx->log, SAMDA_LOG_ERROR, "worker", "cannot record a job failure: trying again before any new job",
                  "job=%lld lane=%s error=%s held_back=%u", (long long)job_id, ln->name,
                  q((char[600]){0}, 600, err.message), held);
    return st;
}

/* Claim the next due job of one of the lane's kinds (in the order listed). */
static samda_status claim(lane *ln, int64_t lease, samda_job *job, bool *found, samda_error *err)
{
    *found = false;
    for (const char *const *k = ln->kinds; *k && !*found; k++) {
        samda_status st = samda_store_job_claim(samdad_store(ln->w->ctx), ln->owner, lease, *k, job, found, err);
        if (st != SAMDA_OK) return st;
    }
    return SAMDA_OK;
}

static void take_one(lane *ln, bool *worked)
{
    samdad_worker *w = ln->w;
    *worked = false;
    if (ln->unrecorded.active) {
        bool requeued;
        int64_t id = ln->unrecorded.job_id;
        samda_status st = record_failure(ln, id, ln->unrecorded.permanent, ln->unrecorded.error, &requeued);
        if (ln->unrecorded.active) return; /* the index still refuses writes: take nothing new */
        if (st == SAMDA_OK)
            samda_log(&w->ctx->log, SAMDA_LOG_INFO, "worker", "job failure recorded late", "job=%lld requeued=%s",
                      (long long)id, requeued ? "true" : "false");
    }
    samda_config *cfg = samdad_config_get(w->ctx);
    int64_t lease = cfg->job_lease_ms;
    samda_config_unref(cfg);
    samda_job job;
    bool found = false;
    samda_error err;
    if (claim(ln, lease, &job, &found, &err) != SAMDA_OK) {
        samda_log(&w->ctx->log, SAMDA_LOG_ERROR, "worker", "cannot take a job", "lane=%s error=%s", ln->name,
                  q((char[600]){0}, 600, err.message));
        return;
    }
    if (!found) return;
    *worked = true;
    samda_log(&w->ctx->log, SAMDA_LOG_INFO, "worker", "job started", "job=%lld kind=%s site=%s attempt=%d/%d lane=%s",
              (long long)job.id, job.kind, job.site, job.attempts, job.max_attempts, ln->name);
    samda_error jerr;
    memset(&jerr, 0, sizeof jerr);
    samda_status st = run_job(ln, &job, &jerr);
    if (st == SAMDA_ECANCELED || st == SAMDA_ELOCKED) {
        samda_log(&w->ctx->log, SAMDA_LOG_WARN, "worker", "job abandoned", "job=%lld reason=%s", (long long)job.id,
                  q((char[600]){0}, 600, jerr.message));
    } else if (st != SAMDA_OK) {
        bool requeued = false;
        bool perm = permanent_error(st);
        record_failure(ln, job.id, perm, jerr.message, &requeued);
        samda_log(&w->ctx->log, SAMDA_LOG_ERROR, "worker", requeued ? "job attempt failed, will retry" : "job failed",
                  "job=%lld code=%s permanent=%s error=%s", (long long)job.id, samda_status_name(st),
                  perm ? "true" : "false", q((char[600]){0}, 600, redact(w, jerr.message, (char[512]){0}, 512)));
    }
    samda_job_clear(&job);
}

/* A lane's thread: jobs of its kinds, one after the other; the segmentation lane answers session
 * calls between them (and between the batches of a job, in keep_going). */
static void *run_lane(void *arg)
{
    lane *ln = arg;
    samdad_worker *w = ln->w;
    for (;;) {
        if (stopping(ln)) break;
        if (ln->serves_calls) serve_calls(w);
        bool worked = false;
        take_one(ln, &worked);
        if (worked) continue;
        samda_config *cfg = samdad_config_get(w->ctx);
        int64_t tick = cfg->sched_tick_ms;
        samda_config_unref(cfg);
        pthread_mutex_lock(&ln->loop.mu);
        if (!ln->serves_calls || !w->calls) samdad_loop_wait(&ln->loop, tick);
        pthread_mutex_unlock(&ln->loop.mu);
    }
    return NULL;
}

static int parse_device(const char *s)
{
    if (!s || !strcmp(s, "auto")) return SAMDA_MODEL_DEVICE_AUTO;
    if (!strcmp(s, "cpu")) return SAMDA_MODEL_DEVICE_CPU;
    if (!strncmp(s, "cuda:", 5)) return atoi(s + 5);
    if (!strcmp(s, "cuda")) return 0;
    return SAMDA_MODEL_DEVICE_AUTO;
}

static const char *convention_name(samda_model_convention c)
{
    return c == SAMDA_MODEL_CONVENTION_MEDSAM ? "medsam" : "sam";
}

/* A site whose active adapter was made for another base model (activated while no model was
 * loaded, or before [model] checkpoint changed) cannot use it: choose_adapter passes it over, so
 * say so once here, naming both fingerprints and what the site's jobs use instead. */
static void warn_foreign_adapters(samdad_worker *w, const samda_config *cfg)
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

samdad_worker *samdad_worker_start(samdad_ctx *ctx, samda_error *err)
{
    samda_config *cfg = samdad_config_get(ctx);
    samdad_worker *w = calloc(1, sizeof *w);
    if (!w) {
        samda_config_unref(cfg);
        samda_fail(err, SAMDA_ENOMEM, "starting the worker: out of memory");
        return NULL;
    }
    w->ctx = ctx;
    static const char *const seg_kinds[] = {"segment", NULL}, *const trn_kinds[] = {"train", "evaluate", NULL};
    w->seg = (lane){.w = w, .name = "segmentation", .kinds = seg_kinds, .serves_calls = true, .uses_cache = true};
    w->trn = (lane){.w = w, .name = "training", .kinds = trn_kinds};
    snprintf(w->seg.owner, sizeof w->seg.owner, "samdad-%ld-worker", (long)getpid());
    snprintf(w->trn.owner, sizeof w->trn.owner, "samdad-%ld-trainer", (long)getpid());
    samda_model_params mp;
    samda_model_params_init(&mp);
    mp.checkpoint_path = cfg->model_checkpoint;
    mp.device = parse_device(cfg->model_device);
    mp.n_threads = (int)cfg->model_threads;
    mp.max_batch = (int)cfg->model_max_batch;
    mp.convention = cfg->model_convention == SAMDA_CFG_CONVENTION_MEDSAM ? SAMDA_MODEL_CONVENTION_MEDSAM
                                                                        : SAMDA_MODEL_CONVENTION_SAM;
    double t = now_s();
    w->model = samda_model_open(&mp, err);
    if (!w->model) {
        samda_error_prefix(err, "opening [model] checkpoint %s: ", cfg->model_checkpoint);
        goto fail;
    }
    samda_model_get_info(w->model, &w->info, NULL);
    samda_log(&ctx->log, SAMDA_LOG_INFO, "model", "model loaded",
              "arch=%s convention=%s device=%s threads=%d max_batch=%d blas=%s params=%lld fingerprint=%.16s seconds=%.2f",
              w->info.arch, convention_name(w->info.convention), w->info.device, w->info.n_threads, w->info.max_batch,
              w->info.blas, (long long)w->info.n_params_total, w->info.fingerprint, now_s() - t);
    if (cfg->model_adapter && *cfg->model_adapter) {
        samda_adapter *a = samda_adapter_load(w->model, cfg->model_adapter, err);
        if (!a) {
            samda_error_prefix(err, "loading [model] adapter %s: ", cfg->model_adapter);
            goto fail;
        }
        samda_adapter_info ai;
        samda_adapter_get_info(a, &ai, NULL);
        samda_log(&ctx->log, SAMDA_LOG_INFO, "model", "default adapter loaded", "labels=%zu params=%lld version=%s",
                  ai.n_labels, (long long)ai.n_trainable, ai.version);
        cache_put(w, "", 0, cfg->model_adapter, a);
    }
    warn_foreign_adapters(w, cfg);
    size_t req = 0, failed = 0;
    if (samda_store_job_reclaim_all(samdad_store(ctx), &req, &failed, err) != SAMDA_OK) goto fail;
    if (req || failed)
        samda_log(&ctx->log, SAMDA_LOG_WARN, "worker", "jobs an earlier run left running were taken back",
                  "requeued=%zu failed=%zu", req, failed);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->done_cv, &ca);
    pthread_condattr_destroy(&ca);
    if (samdad_loop_start(&w->seg.loop, run_lane, &w->seg, "segmentation lane", err) != SAMDA_OK) {
        pthread_cond_destroy(&w->done_cv);
        goto fail;
    }
    if (samdad_loop_start(&w->trn.loop, run_lane, &w->trn, "training lane", err) != SAMDA_OK) {
        samdad_loop_stop(&w->seg.loop);
        pthread_cond_destroy(&w->done_cv);
        goto fail;
    }
    samda_config_unref(cfg);
    return w;
fail:
    for (int i = 0; i < ADAPTER_CACHE; i++) samda_adapter_free(w->cache[i].a);
    samda_model_close(w->model);
    free(w);
    samda_config_unref(cfg);
    return NULL;
}

void samdad_worker_kick(samdad_worker *w)
{
    if (!w) return;
    samdad_loop_kick(&w->seg.loop);
    samdad_loop_kick(&w->trn.loop);
}

void samdad_worker_stop(samdad_worker *w)
{
    if (!w) return;
    samdad_loop_stop(&w->trn.loop); /* a training job is abandoned at its next step, as a segmentation one */
    pthread_mutex_lock(&w->seg.loop.mu);
    w->seg.loop.stop = true;
    pthread_cond_signal(&w->seg.loop.cv);
    pthread_mutex_unlock(&w->seg.loop.mu);
    pthread_join(w->seg.loop.thread, NULL);
    serve_calls(w); /* callers still waiting get their answer */
    pthread_cond_destroy(&w->seg.loop.cv);
    pthread_cond_destroy(&w->done_cv);
    pthread_mutex_destroy(&w->seg.loop.mu);
    for (int i = 0; i < MAX_SESSIONS; i++)
        if (w->sessions[i].id[0]) session_drop(&w->sessions[i]);
    for (int i = 0; i < ADAPTER_CACHE; i++) samda_adapter_free(w->cache[i].a);
    samda_model_close(w->model);
    free(w);
}

void samdad_worker_describe(samdad_worker *w, char *buf, size_t size)
{
    if (!w) {
        snprintf(buf, size, "none");
        return;
    }
    snprintf(buf, size, "%s %s convention=%s threads=%d fingerprint=%.16s", w->info.arch, w->info.device,
             convention_name(w->info.convention), w->info.n_threads, w->info.fingerprint);
}

const char *samdad_worker_fingerprint(const samdad_worker *w) { return w ? w->info.fingerprint : NULL; }

void samdad_worker_metrics(samdad_worker *w, FILE *out)
{
    if (!w) return;
    samdad_hist_write(&w->h_encode, out, "samda_model_encode_seconds", "Encoder calls (one batch of slices).");
    samdad_hist_write(&w->h_decode, out, "samda_model_decode_seconds",
                      "Prompt-free decoding of one slice (every label of one window).");
    samdad_hist_write(&w->h_predict, out, "samda_session_predict_seconds", "Interactive predictions (decoder only).");
    samdad_hist_write(&w->h_job, out, "samda_series_segmentation_seconds", "Segmentation of a series, load to SEG recorded.");
    fprintf(out, "# HELP samda_slices_segmented_total Slices decoded by segmentation jobs.\n"
                 "# TYPE samda_slices_segmented_total counter\nsamda_slices_segmented_total %llu\n",
            (unsigned long long)atomic_load(&w->slices_done));
    fprintf(out, "# HELP samda_tta_continual_versions_total Adapter versions continual test-time adaptation made "
                 "active.\n# TYPE samda_tta_continual_versions_total counter\nsamda_tta_continual_versions_total %llu\n",
            (unsigned long long)atomic_load(&w->tta_versions));
    size_t used = 0, total = 0;
    if (samda_model_get_device_memory(w->model, &used, &total, NULL) == SAMDA_OK)
        fprintf(out, "# HELP samda_model_device_memory_bytes Device memory of the model's GPU: used and total.\n"
                     "# TYPE samda_model_device_memory_bytes gauge\n"
                     "samda_model_device_memory_bytes{kind=\"used\"} %zu\nsamda_model_device_memory_bytes{kind=\"total\"} %zu\n",
                used, total);
    fprintf(out, "# HELP samda_model_parameters Parameters of the loaded base model.\n"
                 "# TYPE samda_model_parameters gauge\nsamda_model_parameters %lld\n",
            (long long)w->info.n_params_total);
}
