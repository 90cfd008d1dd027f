/* daemon/retention.c: deleting studies and series (by an administrator or by retention) and the
 * retention pass. The store does the deleting, crash-safe (storage/purge.c); this file chooses
 * what, audits it and counts it. */
#include "retention.h"

#include <inttypes.h>
#include <string.h>

#include "services_internal.h"

static const char *quote(char *buf, size_t n, const char *s) { return samda_log_quote(buf, n, s); }

samda_status samdad_delete(samdad_ctx *ctx, const char *actor, const char *study_uid, const char *series_uid,
                           samda_purge_report *rep, samda_error *err)
{
    samda_store *store = samdad_store(ctx);
    samda_purge_report r = {0};
    const char *what = series_uid ? series_uid : study_uid;
    samda_status st = series_uid ? samda_store_series_delete(store, series_uid, &r, err)
                                 : samda_store_study_delete(store, study_uid, &r, err);
    if (st == SAMDA_EBUSY) {
        char msg[SAMDA_ERROR_MESSAGE_SIZE];
        snprintf(msg, sizeof msg, "%s", err->message);
        return samda_fail(err, SAMDA_ECONFLICT, "%s", msg);
    }
    if (st == SAMDA_ENOENT)
        return samda_fail(err, SAMDA_ENOENT, "%s %s is not in the index", series_uid ? "series" : "study", what);
    if (st != SAMDA_OK) return st;
    char details[256];
    snprintf(details, sizeof details, "{\"series\":%zu,\"instances\":%zu,\"results\":%zu,\"bytes\":%" PRIu64 "}",
             r.n_series, r.n_instances, r.n_results, r.bytes);
    samda_error aerr;
    if (samda_store_audit_append(store, actor, series_uid ? "series.delete" : "study.delete", what, "ok", details,
                                 &aerr) != SAMDA_OK)
        samda_log(&ctx->log, SAMDA_LOG_ERROR, "audit", "cannot write audit entry", "error=%s",
                  quote((char[600]){0}, 600, aerr.message));
    samda_log(&ctx->log, SAMDA_LOG_INFO, "retention", series_uid ? "series deleted" : "study deleted",
              "by=%s series=%zu instances=%zu results=%zu bytes=%" PRIu64 "%s%s", actor, r.n_series, r.n_instances,
              r.n_results, r.bytes, ctx->log.log_uids ? " uid=" : "", ctx->log.log_uids ? what : "");
    if (strcmp(actor, "retention") == 0) {
        atomic_fetch_add(&ctx->retained.series, r.n_series);
        atomic_fetch_add(&ctx->retained.instances, r.n_instances);
        atomic_fetch_add(&ctx->retained.bytes, r.bytes);
    }
    if (rep) {
        rep->n_series += r.n_series;
        rep->n_instances += r.n_instances;
        rep->n_results += r.n_results;
        rep->bytes += r.bytes;
    }
    return SAMDA_OK;
}

/* Delete up to 1000 due series of one kind for a site; *stop when the quota (if given) is met. */
static samda_status delete_due(samdad_ctx *ctx, const char *site, samda_retention_kind kind, int64_t before,
                               uint64_t quota, uint64_t *stored, samda_purge_report *rep, samda_error *err)
{
    char (*uids)[SAMDA_UID_SIZE] = NULL;
    size_t n = 0;
    samda_status st = samda_store_retention_due(samdad_store(ctx), site, kind, before, 1000, &uids, &n, err);
    for (size_t i = 0; i < n && st == SAMDA_OK; i++) {
        if (quota && *stored <= quota) break;
        uint64_t before = rep->bytes;
        samda_error e;
        samda_status d = samdad_delete(ctx, "retention", NULL, uids[i], rep, &e); /* adds to rep */
        if (d == SAMDA_ECONFLICT || d == SAMDA_ENOENT) continue; /* busy now, or deleted meanwhile: next pass */
        if (d != SAMDA_OK) {
            *err = e;
            st = d;
            break;
        }
        uint64_t freed = rep->bytes - before;
        *stored = *stored > freed ? *stored - freed : 0;
    }
    samda_store_free(uids);
    return st;
}

static json_t *report_json(const samda_purge_report *age, const samda_purge_report *quota, uint64_t stored,
                           uint64_t limit)
{
    json_t *by = json_pack("{s:{s:I, s:I}, s:{s:I, s:I}}", "age", "series", (json_int_t)age->n_series, "bytes",
                           (json_int_t)age->bytes, "quota", "series", (json_int_t)quota->n_series, "bytes",
                           (json_int_t)quota->bytes);
    return json_pack("{s:{s:I, s:I, s:I, s:I}, s:o, s:I, s:I, s:b}", "deleted", "series",
                     (json_int_t)(age->n_series + quota->n_series), "instances",
                     (json_int_t)(age->n_instances + quota->n_instances), "results",
                     (json_int_t)(age->n_results + quota->n_results), "bytes", (json_int_t)(age->bytes + quota->bytes),
                     "by", by ? by : json_null(), "bytes_stored", (json_int_t)stored, "quota", (json_int_t)limit,
                     "over_quota", limit && stored > limit);
}

samda_status samdad_retention_pass(samdad_ctx *ctx, int64_t now, json_t **report, samda_error *err)
{
    samda_config *cfg = samdad_config_get(ctx);
    samda_purge_report by_age = {0}, by_quota = {0};
    uint64_t stored = 0;
    samda_status st = SAMDA_OK;
    for (size_t i = 0; i < cfg->n_sites && st == SAMDA_OK; i++) {
        const samda_site_cfg *site = &cfg->sites[i];
        if (site->retain_source_ms > 0)
            st = delete_due(ctx, site->name, SAMDA_RETAIN_SOURCE, now - site->retain_source_ms, 0, &stored, &by_age,
                            err);
        if (st == SAMDA_OK && site->retain_results_ms > 0)
            st = delete_due(ctx, site->name, SAMDA_RETAIN_RESULTS, now - site->retain_results_ms, 0, &stored,
                            &by_age, err);
    }
    if (st == SAMDA_OK) st = samda_store_bytes(samdad_store(ctx), &stored, err);
    uint64_t quota = cfg->storage_quota_bytes;
    /* over quota: what every destination has, any age; sources first (results are smaller and what
     * the department looks at), each oldest first */
    for (int kind = SAMDA_RETAIN_SOURCE; quota && st == SAMDA_OK && stored > quota && kind <= SAMDA_RETAIN_RESULTS; kind++)
        for (size_t i = 0; i < cfg->n_sites && st == SAMDA_OK && stored > quota; i++)
            st = delete_due(ctx, cfg->sites[i].name, (samda_retention_kind)kind, now + 1, quota, &stored, &by_quota,
                            err);
    if (st == SAMDA_OK && quota && stored > quota)
        samda_log(&ctx->log, SAMDA_LOG_WARN, "retention", "over quota with nothing delivered left to delete",
                  "stored=%" PRIu64 " quota=%" PRIu64 " hint=\"check the exports (GET /api/v1/exports?state=failed) "
                  "or raise [storage] quota\"", stored, quota);
    if (by_age.n_series || by_quota.n_series)
        samda_log(&ctx->log, SAMDA_LOG_INFO, "retention", "retention pass",
                  "series=%zu instances=%zu bytes=%" PRIu64 " by_quota=%zu stored=%" PRIu64,
                  by_age.n_series + by_quota.n_series, by_age.n_instances + by_quota.n_instances,
                  by_age.bytes + by_quota.bytes, by_quota.n_series, stored);
    if (report) *report = report_json(&by_age, &by_quota, stored, quota);
    samda_config_unref(cfg);
    return st;
}
