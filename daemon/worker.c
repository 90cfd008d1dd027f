/* The model worker: three lanes over one read-only model, each a thread of its own (the model's
 * intra-op threads do the parallel work). The interactive lane answers session calls (create,
 * predict, delete) and nothing else, so a prompt never waits for a batch; the segmentation lane
 * takes "segment" jobs; the training lane takes "train" and "evaluate" jobs, so an adapter that
 * trains for minutes never holds up a prompt or a clinical series. Each lane has its own adapter
 * cache; only the interactive lane touches the sessions.
 *
 * A segmentation job (segment.c), in order: (1) if a result of this job is already recorded (a previous attempt died after
 * recording it) finish with that one, so a series gets exactly one result per job; (2) load the
 * series as a volume; (3) pick the site's active adapter (else [model] adapter); (4) with TTA on,
 * adapt a copy on a sample of this series' slices (episodic: use it and discard; continual: save it
 * as the site's next adapter version when the guards accept it); (5) per window group, encode the
 * slices in batches and decode every label prompt-free; (6) clean up in 3-D; (7) write the SEG,
 * commit it as an object, record the result, queue it for the site's destinations, finish the job.
 * Heartbeats after every batch keep the lease; a cancelled job or a lost lease stops the work. */
#include "worker_internal.h"
#include "routing.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* ---- one job --------------------------------------------------------------------------------- */

static bool permanent_error(samda_status st)
{
    return st == SAMDA_EBADDICOM || st == SAMDA_ENOTSUP || st == SAMDA_ETOOBIG || st == SAMDA_EBADUID ||
           st == SAMDA_EINVAL || st == SAMDA_ECONFLICT;
}

/* Keep the lease and learn about cancellation. false: stop working on this job. */
bool worker_keep_going(lane *ln, const samda_job *job, double progress, const char *msg, samda_status *why)
{
    samdad_worker *w = ln->w;
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
    if (worker_stopping(ln)) {
        *why = SAMDA_ECANCELED;
        return false;
    }
    return true;
}

static samda_status run_job(lane *ln, const samda_job *job, samda_error *err)
{
    json_t *params = job->params_json ? json_loads(job->params_json, 0, NULL) : json_object();
    if (!params) params = json_object();
    samda_status st;
    if (!strcmp(job->kind, "segment")) st = worker_run_segment(ln, job, params, err);
    else if (!strcmp(job->kind, "train")) st = worker_run_train_eval(ln, job, params, true, err);
    else if (!strcmp(job->kind, "evaluate")) st = worker_run_train_eval(ln, job, params, false, err);
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

/* Claim the next due job of one of the lane's kinds (in the order listed). Off-peak jobs (routing
 * rules with priority = off-peak) are taken only inside [routing] off_peak. */
static samda_status claim(lane *ln, int64_t lease, bool off_peak_open, samda_job *job, bool *found, samda_error *err)
{
    *found = false;
    int min_priority = off_peak_open ? INT_MIN : SAMDAD_PRIORITY_OFF_PEAK + 1;
    for (const char *const *k = ln->kinds; *k && !*found; k++) {
        samda_status st = samda_store_job_claim(samdad_store(ln->w->ctx), ln->owner, lease, *k, min_priority, job,
                                                found, err);
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
    bool off_peak = samdad_off_peak_open(cfg, samda_store_now_ms(samdad_store(w->ctx)));
    samda_config_unref(cfg);
    samda_job job;
    bool found = false;
    samda_error err;
    if (claim(ln, lease, off_peak, &job, &found, &err) != SAMDA_OK) {
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
                  perm ? "true" : "false", q((char[600]){0}, 600, worker_redact(w, jerr.message, (char[512]){0}, 512)));
    }
    samda_job_clear(&job);
}

/* A lane's thread: jobs of its kinds, one after the other; the interactive lane answers session
 * calls as they come. */
static void *lane_main(void *arg)
{
    lane *ln = arg;
    samdad_worker *w = ln->w;
    /* Clinical work first on a busy CPU: a prompt before a series, a series before training. The
     * nice value is per thread on Linux and inherited by the threads this one starts (libtorch's
     * intra-op team), so a training epoch takes only the CPU the other lanes leave. */
    if (ln->nice && setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), ln->nice) != 0)
        samda_log(&w->ctx->log, SAMDA_LOG_WARN, "worker", "cannot lower the lane's CPU priority", "lane=%s error=%s",
                  ln->name, strerror(errno));
    for (;;) {
        if (worker_stopping(ln)) break;
        if (ln->serves_calls) worker_serve_calls(w);
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
    static const char *const no_kinds[] = {NULL}, *const seg_kinds[] = {"segment", NULL},
                             *const trn_kinds[] = {"train", "evaluate", NULL};
    w->ia = (lane){.w = w, .name = "interactive", .kinds = no_kinds, .serves_calls = true};
    w->seg = (lane){.w = w, .name = "segmentation", .kinds = seg_kinds, .nice = 5};
    w->trn = (lane){.w = w, .name = "training", .kinds = trn_kinds, .nice = 10};
    /* The lease owner names the node and process, so that a cluster's job list says who runs what. */
    snprintf(w->ia.owner, sizeof w->ia.owner, "%s:%ld:interactive", samdad_node(ctx), (long)getpid());
    snprintf(w->seg.owner, sizeof w->seg.owner, "%s:%ld:worker", samdad_node(ctx), (long)getpid());
    snprintf(w->trn.owner, sizeof w->trn.owner, "%s:%ld:trainer", samdad_node(ctx), (long)getpid());
    samda_model_params mp;
    samda_model_params_init(&mp);
    mp.checkpoint_path = cfg->model_checkpoint;
    mp.device = parse_device(cfg->model_device);
    mp.n_threads = (int)cfg->model_threads;
    mp.max_batch = (int)cfg->model_max_batch;
    mp.convention = cfg->model_convention == SAMDA_CFG_CONVENTION_MEDSAM ? SAMDA_MODEL_CONVENTION_MEDSAM
                                                                        : SAMDA_MODEL_CONVENTION_SAM;
    double t = worker_now_s();
    w->model = samda_model_open(&mp, err);
    if (!w->model) {
        samda_error_prefix(err, "opening [model] checkpoint %s: ", cfg->model_checkpoint);
        goto fail;
    }
    samda_model_get_info(w->model, &w->info, NULL);
    samda_log(&ctx->log, SAMDA_LOG_INFO, "model", "model loaded",
              "arch=%s convention=%s device=%s threads=%d max_batch=%d blas=%s params=%lld fingerprint=%.16s seconds=%.2f",
              w->info.arch, convention_name(w->info.convention), w->info.device, w->info.n_threads, w->info.max_batch,
              w->info.blas, (long long)w->info.n_params_total, w->info.fingerprint, worker_now_s() - t);
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
        worker_cache_put(&w->seg, "", 0, cfg->model_adapter, a);
    }
    worker_warn_foreign_adapters(w, cfg);
    size_t req = 0, failed = 0;
    /* In a cluster only this node's jobs: the other nodes' running jobs are alive, or return when
     * their leases expire. */
    char prefix[SAMDA_NODE_NAME_SIZE + 1] = "";
    if (cfg->storage_index == SAMDA_CFG_INDEX_POSTGRESQL) snprintf(prefix, sizeof prefix, "%s:", samdad_node(ctx));
    if (samda_store_job_reclaim_all(samdad_store(ctx), prefix[0] ? prefix : NULL, &req, &failed, err) != SAMDA_OK)
        goto fail;
    if (req || failed)
        samda_log(&ctx->log, SAMDA_LOG_WARN, "worker", "jobs an earlier run left running were taken back",
                  "requeued=%zu failed=%zu", req, failed);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->done_cv, &ca);
    pthread_condattr_destroy(&ca);
    if (samdad_loop_start(&w->ia.loop, lane_main, &w->ia, "interactive lane", err) != SAMDA_OK) {
        pthread_cond_destroy(&w->done_cv);
        goto fail;
    }
    if (samdad_loop_start(&w->seg.loop, lane_main, &w->seg, "segmentation lane", err) != SAMDA_OK) {
        samdad_loop_stop(&w->ia.loop);
        pthread_cond_destroy(&w->done_cv);
        goto fail;
    }
    if (samdad_loop_start(&w->trn.loop, lane_main, &w->trn, "training lane", err) != SAMDA_OK) {
        samdad_loop_stop(&w->seg.loop);
        samdad_loop_stop(&w->ia.loop);
        pthread_cond_destroy(&w->done_cv);
        goto fail;
    }
    samda_config_unref(cfg);
    return w;
fail:
    worker_cache_free(&w->seg);
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
    samdad_loop_kick(&w->ia.loop);
}

void samdad_worker_stop(samdad_worker *w)
{
    if (!w) return;
    samdad_loop_stop(&w->trn.loop); /* a job is abandoned at its next step */
    samdad_loop_stop(&w->seg.loop);
    pthread_mutex_lock(&w->ia.loop.mu);
    w->ia.loop.stop = true;
    pthread_cond_signal(&w->ia.loop.cv);
    pthread_mutex_unlock(&w->ia.loop.mu);
    pthread_join(w->ia.loop.thread, NULL);
    worker_serve_calls(w); /* callers still waiting get their answer */
    pthread_cond_destroy(&w->ia.loop.cv);
    pthread_cond_destroy(&w->done_cv);
    pthread_mutex_destroy(&w->ia.loop.mu);
    for (int i = 0; i < MAX_SESSIONS; i++)
        if (w->sessions[i].id[0]) worker_session_drop(&w->sessions[i]);
    worker_cache_free(&w->ia);
    worker_cache_free(&w->seg);
    worker_cache_free(&w->trn);
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
