/* Series completion and job housekeeping, on one thread.
 *
 * DICOM has no end-of-study signal. A series is complete when (a) no instance arrived for the
 * site's series_idle, (b) its study saw no instance for study_idle, and (c) no association that
 * brought instances of it is still open; or, whatever else, when max_wait has passed since its
 * first instance. A series whose every instance came over aborted associations is marked
 * incomplete and starts no work. A complete series becomes a "segment" job when the site's rules
 * select it (modality, minimum instance count); otherwise the reason is recorded on the series.
 * The job carries the series' content hash, so re-sending identical instances finds the same job
 * while a changed series gets a new one. */
#include "scheduler.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "loop.h"
#include "retention.h"
#include "services_internal.h"

struct samdad_scheduler {
    samdad_ctx *ctx;
    samdad_loop loop;
    int64_t next_retention_ms; /* when the next retention pass is due (0: at the first tick) */
};

static bool list_has(const samda_strlist *l, const char *s)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcasecmp(l->v[i], s) == 0) return true;
    return false;
}

static void join_list(const samda_strlist *l, char *out, size_t size)
{
    size_t n = 0;
    out[0] = 0;
    for (size_t i = 0; i < l->n && n < size; i++)
        n += (size_t)snprintf(out + n, size - n, "%s%s", i ? "," : "", l->v[i]);
}

/* A failure to read or write the index for one series. The same failure usually hits every series
 * on every tick (a full disk, a locked index): one line a minute, with the count held back. */
static void index_failure(samdad_ctx *ctx, const char *what, int64_t series_id, const samda_error *err)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    unsigned held = 0;
    if (!samda_log_gate_pass(&ctx->sched_gate, (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, 60000, &held))
        return;
    samda_log(&ctx->log, SAMDA_LOG_ERROR, "scheduler", what, "series=%lld error=%s held_back=%u", (long long)series_id,
              samda_log_quote((char[600]){0}, 600, samdad_scrub(ctx, err->message, (char[512]){0}, 512)), held);
}

/* Decide one series. Returns true if its state changed. */
static bool decide(samdad_ctx *ctx, samda_store *store, const samda_config *cfg, const samda_series_info *se,
                   int64_t now)
{
    const samda_site_cfg *site = samda_config_site(cfg, se->site[0] ? se->site : "default");
    if (!site) site = samda_config_site(cfg, "default");
    if (!site) return false; /* cannot happen: the configuration always has a default site */
    samda_error err;

    bool forced = now - se->first_received_ms >= site->max_wait_ms;
    if (!forced) {
        if (now - se->last_received_ms < site->series_idle_ms) return false;
        samda_study_info study;
        if (samda_store_study_get(store, se->study_uid, &study, &err) == SAMDA_OK &&
            now - study.last_received_ms < site->study_idle_ms)
            return false;
    }
    samda_series_assoc_summary sum;
    if (samda_store_series_assoc_summary(store, se->series_uid, &sum, &err) != SAMDA_OK) {
        index_failure(ctx, "cannot read series associations", se->id, &err);
        return false;
    }
    if (!forced && sum.n_from_open > 0) return false; /* an association is still sending it */

    return samdad_series_complete(ctx, store, cfg, se, &sum, forced ? "complete: max_wait reached" : "complete: idle");
}

bool samdad_series_complete(samdad_ctx *ctx, samda_store *store, const samda_config *cfg,
                            const samda_series_info *se, const samda_series_assoc_summary *sum, const char *why)
{
    samda_error err;
    const samda_site_cfg *site = samda_config_site(cfg, se->site[0] ? se->site : "default");
    if (!site) site = samda_config_site(cfg, "default");
    if (!site) return false;
    bool forced = strstr(why, "max_wait") != NULL;
    if (sum->n_instances > 0 && sum->n_from_aborted == sum->n_instances) {
        if (samda_store_series_set_state(store, se->series_uid, SAMDA_SERIES_INCOMPLETE,
                                         "every instance came over an aborted association", &err) != SAMDA_OK) {
            index_failure(ctx, "cannot mark series incomplete", se->id, &err);
            return false;
        }
        samda_log(&ctx->log, SAMDA_LOG_WARN, "scheduler", "series incomplete: only aborted associations",
                  "series=%lld instances=%lld", (long long)se->id, (long long)sum->n_instances);
        return true;
    }

    char reason[256];
    bool selected = true;
    char mods[128];
    if (!list_has(&site->modalities, se->modality)) {
        join_list(&site->modalities, mods, sizeof mods);
        snprintf(reason, sizeof reason, "not selected: modality '%s' not in [site %s] modalities (%s)", se->modality,
                 site->name, mods);
        selected = false;
    } else if (sum->n_instances < site->min_slices) {
        snprintf(reason, sizeof reason, "not selected: %lld instances, [site %s] min_slices is %lld",
                 (long long)sum->n_instances, site->name, (long long)site->min_slices);
        selected = false;
    } else {
        snprintf(reason, sizeof reason, "%s", why);
    }
    if (samda_store_series_set_state(store, se->series_uid, SAMDA_SERIES_COMPLETE, reason, &err) != SAMDA_OK) {
        index_failure(ctx, "cannot mark series complete", se->id, &err);
        return false;
    }
    if (!selected) {
        samda_log(&ctx->log, SAMDA_LOG_INFO, "scheduler", "series complete, not segmented", "series=%lld reason=%s",
                  (long long)se->id, samda_log_quote((char[600]){0}, 600, reason));
        return true;
    }
    char hash[SAMDA_SHA256_HEX_SIZE];
    if (samda_store_series_content_hash(store, se->series_uid, hash, &err) != SAMDA_OK) {
        index_failure(ctx, "cannot hash series content", se->id, &err);
        return true;
    }
    samda_job_spec spec = {
        .kind = "segment",
        .priority = 0, /* batch: interactive work uses higher priorities */
        .site = site->name,
        .study_uid = se->study_uid,
        .series_uid = se->series_uid,
        .content_hash = hash,
        .max_attempts = (int)cfg->job_max_attempts,
    };
    int64_t job_id = 0;
    bool existed = false;
    if (samda_store_job_enqueue(store, &spec, &job_id, &existed, &err) != SAMDA_OK) {
        index_failure(ctx, "cannot queue segmentation job", se->id, &err);
        return true;
    }
    samda_log(&ctx->log, SAMDA_LOG_INFO, "scheduler",
              existed ? "series complete, unchanged: existing job kept" : "series complete, job queued",
              "series=%lld job=%lld site=%s instances=%lld%s", (long long)se->id, (long long)job_id, site->name,
              (long long)sum->n_instances, forced ? " forced=max_wait" : "");
    return true;
}

size_t samdad_scheduler_pass(samdad_ctx *ctx, samda_store *store, int64_t now)
{
    samda_config *cfg = samdad_config_get(ctx);
    samda_error err;
    samda_series_info *rows = NULL;
    size_t n = 0, changed = 0;
    if (samda_store_series_idle(store, now, 1000, &rows, &n, &err) != SAMDA_OK) {
        index_failure(ctx, "cannot list receiving series", 0, &err);
    }
    for (size_t i = 0; i < n; i++)
        if (decide(ctx, store, cfg, &rows[i], now)) changed++;
    samda_store_free(rows);

    size_t requeued = 0, failed = 0;
    if (samda_store_job_reclaim_expired(store, &requeued, &failed, &err) != SAMDA_OK)
        index_failure(ctx, "cannot reclaim expired job leases", 0, &err);
    else if (requeued || failed)
        samda_log(&ctx->log, SAMDA_LOG_WARN, "scheduler", "jobs of a dead worker taken back",
                  "requeued=%zu failed=%zu", requeued, failed);
    samda_config_unref(cfg);
    return changed;
}

/* The retention pass, every [storage] retention_interval (its failures: one line a minute). */
static void retention_tick(samdad_scheduler *s, int64_t now)
{
    samda_config *cfg = samdad_config_get(s->ctx);
    s->next_retention_ms = now + cfg->storage_retention_interval_ms;
    samda_config_unref(cfg);
    samda_error err;
    if (samdad_retention_pass(s->ctx, now, NULL, &err) != SAMDA_OK)
        index_failure(s->ctx, "retention pass failed", 0, &err);
}

static void *scheduler_main(void *arg)
{
    samdad_scheduler *s = arg;
    samdad_ctx *ctx = s->ctx;
    pthread_mutex_lock(&s->loop.mu);
    for (;;) {
        samda_config *cfg = samdad_config_get(ctx);
        int64_t tick = cfg->sched_tick_ms;
        samda_config_unref(cfg);
        if (!samdad_loop_wait(&s->loop, tick)) break;
        pthread_mutex_unlock(&s->loop.mu);
        samda_store *store = samdad_store(ctx);
        int64_t now = samda_store_now_ms(store);
        samdad_scheduler_pass(ctx, store, now);
        if (now >= s->next_retention_ms) retention_tick(s, now);
        pthread_mutex_lock(&s->loop.mu);
    }
    pthread_mutex_unlock(&s->loop.mu);
    return NULL;
}

samdad_scheduler *samdad_scheduler_start(samdad_ctx *ctx, samda_error *err)
{
    samdad_scheduler *s = calloc(1, sizeof *s);
    if (!s) {
        samda_fail(err, SAMDA_ENOMEM, "starting scheduler: out of memory");
        return NULL;
    }
    s->ctx = ctx;
    if (samdad_loop_start(&s->loop, scheduler_main, s, "scheduler", err) != SAMDA_OK) {
        free(s);
        return NULL;
    }
    return s;
}

void samdad_scheduler_kick(samdad_scheduler *s)
{
    if (s) samdad_loop_kick(&s->loop);
}

void samdad_scheduler_stop(samdad_scheduler *s)
{
    if (!s) return;
    samdad_loop_stop(&s->loop);
    free(s);
}
