#include "exporter.h"

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dicom.h"
#include "loop.h"
#include "services_internal.h"
#include "storage.h"

#define EXPORT_BATCH 32

struct samdad_exporter {
    samdad_ctx *ctx;
    samdad_loop loop;
};

static char *q(char *buf, unsigned size, const char *v) { return samda_log_quote(buf, size, v); }

/* Send the items of one destination over one association and record each outcome. */
static void send_group(samdad_ctx *ctx, const samda_config *cfg, const samda_destination *d, samda_export_item *items,
                       size_t n)
{
    samda_store *store = samdad_store(ctx);
    char **paths = calloc(n, sizeof *paths);
    samda_store_result *res = calloc(n, sizeof *res);
    samda_error err;
    if (!paths || !res) goto out;
    for (size_t i = 0; i < n; i++) {
        paths[i] = malloc(PATH_MAX);
        if (!paths[i] || samda_store_object_path(store, items[i].relpath, paths[i], PATH_MAX, &err) != SAMDA_OK)
            goto out;
    }
    samda_dicom_peer peer = {
        .calling_ae = cfg->dicom_ae_title, .called_ae = d->ae_title, .host = d->host, .port = (unsigned)d->port};
    unsigned timeout = (unsigned)((cfg->dicom_dimse_timeout_ms + 999) / 1000);
    samda_store_outcome outcome = SAMDA_STORE_TRANSIENT;
    memset(&err, 0, sizeof err);
    samda_dicom_store(&peer, (const char *const *)paths, n, timeout, res, &outcome, &err);
    size_t ok = 0, failed = 0;
    for (size_t i = 0; i < n; i++) {
        samda_error e2;
        char details[512];
        if (res[i].status == SAMDA_OK) {
            ok++;
            if (samda_store_export_done(store, items[i].id, &e2) != SAMDA_OK)
                samda_log(&ctx->log, SAMDA_LOG_ERROR, "export", "cannot record a sent item", "item=%lld error=%s",
                          (long long)items[i].id, q((char[300]){0}, 300, e2.message));
            snprintf(details, sizeof details, "{\"destination\":\"%s\",\"item\":%lld}", d->name, (long long)items[i].id);
            samda_store_audit_append(store, "system", "export.seg", items[i].relpath, "ok", details, &e2);
            continue;
        }
        failed++;
        bool permanent = !res[i].is_transient;
        int64_t next = 0;
        char msg[SAMDA_ERROR_MESSAGE_SIZE + 320];
        snprintf(msg, sizeof msg, "%.400s (%.255s:%d %.16s)", res[i].message[0] ? res[i].message : err.message, d->host, d->port,
                 d->ae_title);
        if (samda_store_export_fail(store, items[i].id, msg, permanent, &next, &e2) != SAMDA_OK)
            samda_log(&ctx->log, SAMDA_LOG_ERROR, "export", "cannot record a failed send", "item=%lld error=%s",
                      (long long)items[i].id, q((char[300]){0}, 300, e2.message));
        else
            samda_log(&ctx->log, permanent || !next ? SAMDA_LOG_ERROR : SAMDA_LOG_WARN, "export",
                      permanent ? "refused by the destination: failed (retry by hand)"
                      : next    ? "send failed, will retry"
                                : "send failed, out of attempts",
                      "destination=%s item=%lld attempt=%d error=%s", d->name, (long long)items[i].id,
                      items[i].attempts + 1, q((char[400]){0}, 400, msg));
        samda_store_audit_append(store, "system", "export.seg", items[i].relpath, "error", NULL, &e2);
    }
    if (ok)
        samda_log(&ctx->log, SAMDA_LOG_INFO, "export", "sent", "destination=%s stored=%zu failed=%zu", d->name, ok,
                  failed);
out:
    if (paths)
        for (size_t i = 0; i < n; i++) free(paths[i]);
    free(paths);
    free(res);
}

size_t samdad_exporter_pass(samdad_ctx *ctx)
{
    samda_store *store = samdad_store(ctx);
    samda_export_item *items = NULL;
    size_t n = 0;
    samda_error err;
    if (samda_store_export_claim(store, 0, EXPORT_BATCH, &items, &n, &err) != SAMDA_OK) {
        samda_log(&ctx->log, SAMDA_LOG_ERROR, "export", "cannot read the export queue", "error=%s",
                  q((char[300]){0}, 300, err.message));
        return 0;
    }
    if (!n) return 0;
    samda_config *cfg = samdad_config_get(ctx);
    samda_destination *dests = NULL;
    size_t nd = 0;
    if (samda_store_destination_list(store, &dests, &nd, &err) != SAMDA_OK) nd = 0;
    bool *done = calloc(n, sizeof *done);
    samda_export_item *group = calloc(n, sizeof *group);
    for (size_t i = 0; done && group && i < n; i++) {
        if (done[i]) continue;
        size_t g = 0;
        for (size_t k = i; k < n; k++)
            if (!done[k] && items[k].destination_id == items[i].destination_id) {
                group[g++] = items[k];
                done[k] = true;
            }
        const samda_destination *d = NULL;
        for (size_t k = 0; k < nd; k++)
            if (dests[k].id == items[i].destination_id) d = &dests[k];
        if (d) send_group(ctx, cfg, d, group, g);
    }
    free(done);
    free(group);
    samda_destination_list_free(dests, nd);
    samda_config_unref(cfg);
    samda_store_free(items);
    return n;
}

static void *run(void *arg)
{
    samdad_exporter *e = arg;
    pthread_mutex_lock(&e->loop.mu);
    while (!e->loop.stop) {
        pthread_mutex_unlock(&e->loop.mu);
        size_t handled = samdad_exporter_pass(e->ctx);
        samda_config *cfg = samdad_config_get(e->ctx);
        int64_t tick = cfg->sched_tick_ms;
        samda_config_unref(cfg);
        pthread_mutex_lock(&e->loop.mu);
        if (!handled && !samdad_loop_wait(&e->loop, tick)) break;
    }
    pthread_mutex_unlock(&e->loop.mu);
    return NULL;
}

samdad_exporter *samdad_exporter_start(samdad_ctx *ctx, samda_error *err)
{
    samdad_exporter *e = calloc(1, sizeof *e);
    if (!e) {
        samda_fail(err, SAMDA_ENOMEM, "starting the exporter: out of memory");
        return NULL;
    }
    e->ctx = ctx;
    if (samdad_loop_start(&e->loop, run, e, "export", err) != SAMDA_OK) {
        free(e);
        return NULL;
    }
    return e;
}

void samdad_exporter_kick(samdad_exporter *e)
{
    if (e) samdad_loop_kick(&e->loop);
}

void samdad_exporter_stop(samdad_exporter *e)
{
    if (!e) return;
    samdad_loop_stop(&e->loop);
    free(e);
}
