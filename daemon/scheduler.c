/* Series completion and job housekeeping, on one thread.
 *
 * DICOM has no end-of-study signal. A series is complete when (a) no instance arrived for the
 * site's series_idle, (b) its study saw no instance for study_idle, and (c) no association that
 * brought instances of it is still open; or, whatever else, when max_wait has passed since its
 * first instance. A series whose every instance came over aborted associations is marked
 * incomplete and starts no work. What a complete series becomes is routing.c's decision (the
 * [rule] sections, else the site's modalities and minimum instance count): "segment" jobs, a hold
 * while a rule waits for the study's other series, or the reason it is not segmented, recorded on
 * the series. A job carries the series' content hash (and its rule's name), so re-sending identical
 * instances finds the same job while a changed series gets a new one.
 *
 * In a cluster (nodes sharing one PostgreSQL index) every node's scheduler beats its heartbeat, and
 * only the leader (samda_store_leader_try: one node at a time) runs the timers above, takes back the
 * jobs of expired leases, runs retention and aborts the open associations of dead nodes. */
#include "scheduler.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "loop.h"
#include "retention.h"
#include "routing.h"
#include "services_internal.h"

struct samdad_scheduler {
    samdad_ctx *ctx;
    samdad_loop loop;
    int64_t next_retention_ms; /* when the next retention pass is due (0: at the first tick) */
    int64_t started_ms, next_beat_ms;
    bool leader;               /* held the leader lock at the last tick (scheduler thread) */
    atomic_bool leads;         /* the same, for other threads (/metrics) */
};

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

static bool queue_route(samdad_ctx *ctx, samda_store *store, const samda_config *cfg, const samda_series_info *se,
                        const samdad_route *route, bool forced);

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

    samdad_route route;
    if (samdad_route_series(store, cfg, se, 0, samda_store_now_ms(store), NULL, &route, &err) != SAMDA_OK) {
        index_failure(ctx, "cannot route series", se->id, &err);
        return false;
    }
    char reason[SAMDA_MESSAGE_SIZE + 64];
    if (route.n && route.reason[0]) snprintf(reason, sizeof reason, "%s; %s", why, route.reason);
    else if (route.n) snprintf(reason, sizeof reason, "%s", why);
    else snprintf(reason, sizeof reason, "%s", route.reason);
    if (samda_store_series_set_state(store, se->series_uid, SAMDA_SERIES_COMPLETE, reason, &err) != SAMDA_OK) {
        index_failure(ctx, "cannot mark series complete", se->id, &err);
        return false;
    }
    if (!route.n) {
        samda_log(&ctx->log, SAMDA_LOG_INFO, "scheduler", "series complete, not segmented", "series=%lld reason=%s",
                  (long long)se->id, samda_log_quote((char[600]){0}, 600, reason));
        return true;
    }
    queue_route(ctx, store, cfg, se, &route, forced);
    return true;
}

/* Queue the jobs of a decision (again: enqueueing is idempotent per series content and rule), and
 * hold the series while a rule waits for its study's other series. Returns whether a rule still
 * waits (true too when the jobs could not be queued: the series is looked at again). */
static bool queue_route(samdad_ctx *ctx, samda_store *store, const samda_config *cfg, const samda_series_info *se,
                        const samdad_route *route, bool forced)
{
    samda_error err;
    char hash[SAMDA_SHA256_HEX_SIZE];
    if (samda_store_series_content_hash(store, se->series_uid, hash, &err) != SAMDA_OK) {
        index_failure(ctx, "cannot hash series content", se->id, &err);
        return true;
    }
    const samdad_route_action *waiting = NULL;
    for (size_t i = 0; i < route->n; i++) {
        const samdad_route_action *a = &route->act[i];
        if (a->waiting) {
            if (!waiting) waiting = a;
            continue;
        }
        /* one job per series content and rule: [routing] mode = all queues one per matching rule */
        char key[SAMDA_KEY_SIZE];
        if (a->rule) snprintf(key, sizeof key, "%s:%s", hash, a->rule->name);
        else snprintf(key, sizeof key, "%s", hash);
        char *params = samdad_route_params(a);
        samda_job_spec spec = {
            .kind = "segment",
            .priority = a->priority, /* interactive work uses higher priorities */
            .site = a->site->name,
            .study_uid = se->study_uid,
            .series_uid = se->series_uid,
            .params_json = params,
            .content_hash = key,
            .max_attempts = (int)cfg->job_max_attempts,
        };
        int64_t job_id = 0;
        bool existed = false;
        samda_status st = samda_store_job_enqueue(store, &spec, &job_id, &existed, &err);
        free(params);
        if (st != SAMDA_OK) {
            index_failure(ctx, "cannot queue segmentation job", se->id, &err);
            return true;
        }
        if (existed) continue; /* a held series seen again, or identical instances sent again */
        samda_log(&ctx->log, SAMDA_LOG_INFO, "scheduler", "series complete, job queued",
                  "series=%lld job=%lld site=%s rule=%s priority=%d instances=%lld%s", (long long)se->id,
                  (long long)job_id, a->site->name, a->rule ? a->rule->name : "-", a->priority,
                  (long long)se->n_instances, forced ? " forced=max_wait" : "");
    }
    if (waiting) {
        char why[SAMDA_MESSAGE_SIZE];
        snprintf(why, sizeof why, "rule %s waits for a series of the study matching: %s", waiting->rule->name,
                 waiting->missing);
        if (samda_store_series_hold(store, se->series_uid, why, &err) != SAMDA_OK)
            index_failure(ctx, "cannot hold series", se->id, &err);
    } else if (samda_store_series_release(store, se->series_uid, &err) != SAMDA_OK) {
        index_failure(ctx, "cannot release held series", se->id, &err);
    }
    return waiting != NULL;
}

/* The series rules hold: each tick, decided again (its study may have the series they wait for
 * now, or their requires_timeout passed). A series that receives instances again is let go: its
 * next completion decides it afresh. */
static void held_pass(samdad_ctx *ctx, samda_store *store, const samda_config *cfg, int64_t now)
{
    samda_error err;
    samda_series_hold *h = NULL;
    size_t n = 0;
    if (samda_store_series_held(store, 1000, &h, &n, &err) != SAMDA_OK) {
        index_failure(ctx, "cannot list held series", 0, &err);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        samda_series_info se;
        if (samda_store_series_get(store, h[i].series_uid, &se, &err) != SAMDA_OK ||
            se.state != SAMDA_SERIES_COMPLETE) {
            samda_store_series_release(store, h[i].series_uid, &err);
            continue;
        }
        samdad_route route;
        if (samdad_route_series(store, cfg, &se, h[i].since_ms, now, NULL, &route, &err) != SAMDA_OK) {
            index_failure(ctx, "cannot route held series", se.id, &err);
            continue;
        }
        if (!route.n) {
            samda_store_series_set_state(store, se.series_uid, SAMDA_SERIES_COMPLETE, route.reason, &err);
            samda_log(&ctx->log, SAMDA_LOG_WARN, "scheduler", "held series given up", "series=%lld reason=%s",
                      (long long)se.id, samda_log_quote((char[600]){0}, 600, route.reason));
            if (samda_store_series_release(store, se.series_uid, &err) != SAMDA_OK)
                index_failure(ctx, "cannot release held series", se.id, &err);
            continue;
        }
        if (!queue_route(ctx, store, cfg, &se, &route, false)) { /* the study has what the rules waited for */
            char reason[SAMDA_MESSAGE_SIZE + 64];
            snprintf(reason, sizeof reason, "complete: the study's required series arrived; %s", route.reason);
            samda_store_series_set_state(store, se.series_uid, SAMDA_SERIES_COMPLETE, reason, &err);
        }
    }
    samda_store_free(h);
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
    held_pass(ctx, store, cfg, now);

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

/* The cluster's part of a tick: take or keep the lead, beat the heartbeat (every fifth of
 * [cluster] node_timeout, and at once when the lead changes), and, as leader, abort the open
 * associations of dead nodes. Returns whether this node leads now. */
static bool cluster_tick(samdad_scheduler *s, samda_store *store, int64_t now)
{
    samdad_ctx *ctx = s->ctx;
    samda_error err;
    bool leader = false;
    if (samda_store_leader_try(store, &leader, &err) != SAMDA_OK || (!leader && err.message[0] && !s->leader))
        index_failure(ctx, "cannot take the leader lock", 0, &err);
    samda_config *cfg = samdad_config_get(ctx);
    bool cluster = cfg->storage_index == SAMDA_CFG_INDEX_POSTGRESQL; /* SQLite: one node, always the leader */
    if (leader != s->leader && cluster)
        samda_log(&ctx->log, leader ? SAMDA_LOG_INFO : SAMDA_LOG_WARN, "scheduler",
                  leader ? "this node leads: it runs the completion timers, lease reclaims and retention"
                         : "this node lost the lead", "node=%s", samdad_node(ctx));
    int64_t timeout = cfg->cluster_node_timeout_ms;
    if (now >= s->next_beat_ms || leader != s->leader) {
        samda_node_info me;
        memset(&me, 0, sizeof me);
        snprintf(me.name, sizeof me.name, "%s", samdad_node(ctx));
        samda_strlist_join(&cfg->cluster_roles, me.roles, sizeof me.roles);
        snprintf(me.version, sizeof me.version, "%s", SAMDA_VERSION);
        me.pid = (int64_t)getpid();
        me.started_ms = s->started_ms;
        me.leader = leader;
        if (samda_store_node_beat(store, &me, &err) != SAMDA_OK) index_failure(ctx, "cannot record the heartbeat", 0, &err);
        else s->next_beat_ms = now + timeout / 5;
    }
    samda_config_unref(cfg);
    s->leader = leader;
    atomic_store(&s->leads, leader);
    if (leader) {
        size_t n = 0;
        if (samda_store_assoc_abort_dead(store, now - timeout, &n, &err) != SAMDA_OK)
            index_failure(ctx, "cannot abort the associations of dead nodes", 0, &err);
        else if (n)
            samda_log(&ctx->log, SAMDA_LOG_WARN, "scheduler", "associations of a dead node marked aborted",
                      "count=%zu", n);
    }
    return leader;
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
        if (cluster_tick(s, store, now)) {
            samdad_scheduler_pass(ctx, store, now);
            if (now >= s->next_retention_ms) retention_tick(s, now);
        }
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
    s->started_ms = samda_store_now_ms(samdad_store(ctx));
    if (samdad_loop_start(&s->loop, scheduler_main, s, "scheduler", err) != SAMDA_OK) {
        free(s);
        return NULL;
    }
    return s;
}

bool samdad_scheduler_leads(const samdad_scheduler *s) { return s && atomic_load(&s->leads); }

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
