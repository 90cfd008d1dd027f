/* Composition of samdad's subsystems. The leaf modules (storage, dicom, model, api) know nothing
 * of each other; this file wires them together and owns their handles. Start order: store,
 * DICOM listener, scheduler; stop order is the reverse, so no callback ever sees a closed store. */
#include "services.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "api_services.h"
#include "dicom.h"
#include "exporter.h"
#include "ingest.h"
#include "scheduler.h"
#include "services_internal.h"
#include "storage.h"
#ifdef SAMDA_HAVE_MODEL
#include "worker.h"
#endif

struct samdad_services {
    samda_store *store;
    bool dicom_inited;
    samda_scp *scp;
    samdad_scheduler *sched;
    samdad_exporter *exporter;
#ifdef SAMDA_HAVE_MODEL
    samdad_worker *worker;
#endif
    samdad_api_core *api_core;
    samda_api *api;
    char tmp_dir[PATH_MAX];
    char node[SAMDA_CONFIG_NODE_SIZE]; /* this node's name ([cluster] node or the host name) */
    unsigned roles;                    /* SAMDA_NODE_* of [cluster] roles, as started */
    char model_error[SAMDA_ERROR_MESSAGE_SIZE]; /* why the configured model did not load ("" if it did) */
};

samda_store *samdad_store(samdad_ctx *ctx) { return ctx->svc ? ctx->svc->store : NULL; }
const char *samdad_scrub(samdad_ctx *ctx, const char *msg, char *buf, unsigned size)
{
    samda_store *store = samdad_store(ctx);
    return samda_log_scrub(msg, __atomic_load_n(&ctx->log.log_uids, __ATOMIC_RELAXED) != 0,
                           store ? samda_store_data_dir(store) : NULL, buf, size);
}
const char *samdad_model_error(samdad_ctx *ctx)
{
    return ctx->svc && ctx->svc->model_error[0] ? ctx->svc->model_error : NULL;
}
bool samdad_model_loaded(samdad_ctx *ctx)
{
#ifdef SAMDA_HAVE_MODEL
    return ctx->svc && ctx->svc->worker;
#else
    (void)ctx;
    return false;
#endif
}
struct samdad_worker *samdad_worker_of(samdad_ctx *ctx)
{
#ifdef SAMDA_HAVE_MODEL
    return ctx->svc ? ctx->svc->worker : NULL;
#else
    (void)ctx;
    return NULL;
#endif
}
const char *samdad_node(samdad_ctx *ctx) { return ctx->svc ? ctx->svc->node : ""; }
unsigned samdad_roles(samdad_ctx *ctx) { return ctx->svc ? ctx->svc->roles : 0; }
bool samdad_leads(samdad_ctx *ctx) { return ctx->svc && samdad_scheduler_leads(ctx->svc->sched); }
unsigned samdad_dicom_port(samdad_ctx *ctx) { return ctx->svc && ctx->svc->scp ? samda_scp_port(ctx->svc->scp) : 0; }

bool samdad_dicom_counters(samdad_ctx *ctx, samda_scp_counters *out)
{
    if (!ctx->svc || !ctx->svc->scp) return false;
    samda_scp_counters_get(ctx->svc->scp, out);
    return true;
}

static void api_log(void *vctx, samda_api_log_level level, const char *msg, const char *fields)
{
    samdad_ctx *ctx = vctx;
    samda_log_level l = level == SAMDA_API_LOG_ERROR ? SAMDA_LOG_ERROR
                      : level == SAMDA_API_LOG_WARN  ? SAMDA_LOG_WARN
                      : level == SAMDA_API_LOG_INFO  ? SAMDA_LOG_INFO
                                                     : SAMDA_LOG_DEBUG;
    if (fields && *fields) samda_log(&ctx->log, l, "http", msg, "%s", fields);
    else samda_log(&ctx->log, l, "http", msg, NULL);
}

static void dcmtk_log(void *vctx, samda_dicom_log_level level, const char *logger, const char *msg)
{
    samdad_ctx *ctx = vctx;
    samda_log_level l = level >= SAMDA_DICOM_LOG_ERROR ? SAMDA_LOG_ERROR
                      : level == SAMDA_DICOM_LOG_WARN  ? SAMDA_LOG_WARN
                                                       : SAMDA_LOG_DEBUG;
    samda_log(&ctx->log, l, "dcmtk", msg, "logger=%s", logger);
}

/* The DICOM listener's own rejections and aborts (limits, deadlines, protocol errors): one line
 * each, naming the peer. */
static void scp_event(void *vctx, const samda_assoc_info *a, const char *what, const char *reason)
{
    samdad_ctx *ctx = vctx;
    char q1[40], q2[40], q3[200];
    samda_log(&ctx->log, SAMDA_LOG_WARN, "dicom", what, "assoc=%llu calling_ae=%s called_ae=%s peer=%s reason=%s",
              (unsigned long long)a->id, samda_log_quote(q1, sizeof q1, a->calling_ae),
              samda_log_quote(q2, sizeof q2, a->called_ae), a->peer_address, samda_log_quote(q3, sizeof q3, reason));
}

/* Step 1: the index and object store, crash leftovers reported, sites synced, associations of a
 * crashed run marked aborted. */
static samda_status open_store(samdad_ctx *ctx, struct samdad_services *svc, const samda_config *cfg,
                               samda_error *err)
{
    samda_status st;
    samda_store_params sp;
    samda_store_params_init(&sp);
    sp.data_dir = cfg->data_dir;
    sp.busy_timeout_ms = (int)cfg->storage_busy_timeout_ms;
    sp.node = samda_config_node_name(cfg, svc->node);
    if (cfg->storage_index == SAMDA_CFG_INDEX_POSTGRESQL) {
        sp.index = SAMDA_INDEX_POSTGRESQL;
        sp.postgresql = cfg->storage_postgresql;
    }
    sp.job_max_attempts = (int)cfg->job_max_attempts;
    sp.export_max_attempts = (int)cfg->export_max_attempts;
    sp.export_backoff_base_ms = cfg->export_backoff_base_ms;
    sp.export_backoff_max_ms = cfg->export_backoff_max_ms;
    svc->store = samda_store_open(&sp, err);
    if (!svc->store) {
        samda_error_prefix(err, "opening the index: ");
        return err ? err->code : SAMDA_EDB;
    }
    if (samda_store_tmp_removed(svc->store) || samda_store_orphans_removed(svc->store))
        samda_log(&ctx->log, SAMDA_LOG_WARN, "storage", "removed leftovers of an interrupted run",
                  "tmp_files=%zu unindexed_objects=%zu", samda_store_tmp_removed(svc->store),
                  samda_store_orphans_removed(svc->store));
    snprintf(svc->tmp_dir, sizeof svc->tmp_dir, "%s/tmp", samda_store_data_dir(svc->store));
    if ((st = samdad_sync_sites(ctx, svc->store, cfg, err)) != SAMDA_OK) return st;
    /* Associations a previous run left open (it crashed) were aborted: their instances count as
     * such, and their series are no longer waiting for them. We hold the data-dir lock. */
    size_t stale = 0;
    if ((st = samda_store_assoc_abort_stale(svc->store, &stale, err)) != SAMDA_OK) return st;
    if (stale)
        samda_log(&ctx->log, SAMDA_LOG_WARN, "dicom", "associations of an interrupted run marked aborted",
                  "count=%zu", stale);
    return SAMDA_OK;
}

/* Step 2: DCMTK set up (dictionary, logging), before anything reads or writes DICOM. */
static samda_status init_dicom(samdad_ctx *ctx, struct samdad_services *svc, samda_error *err)
{
    samda_dicom_init_params dp;
    samda_dicom_init_params_init(&dp);
    dp.debug = ctx->log.level >= SAMDA_LOG_DEBUG;
    dp.log = dcmtk_log;
    dp.log_ctx = ctx;
    samda_status st = samda_dicom_init(&dp, err);
    if (st == SAMDA_OK) svc->dicom_inited = true;
    return st;
}

/* Step 3: the model and the segmentation worker (needs the store). A checkpoint or default
 * adapter that cannot be opened does not stop the start-up: ingest and the API still run, the
 * reason is logged once and shown by /health and /metrics, and segmentation jobs stay pending (not
 * failed) until a restart with a working [model] picks them up. */
static void start_model(samdad_ctx *ctx, struct samdad_services *svc, const samda_config *cfg)
{
    if (!cfg->model_checkpoint || !*cfg->model_checkpoint) {
        samda_log(&ctx->log, SAMDA_LOG_WARN, "model", "no model configured: segmentation jobs stay pending",
                  "hint=\"set [model] checkpoint\"");
    } else {
#ifdef SAMDA_HAVE_MODEL
        samda_error merr;
        samda_error_clear(&merr);
        svc->worker = samdad_worker_start(ctx, &merr);
        if (!svc->worker) {
            snprintf(svc->model_error, sizeof svc->model_error, "%s", merr.message[0] ? merr.message : "unknown error");
            samda_log(&ctx->log, SAMDA_LOG_ERROR, "model",
                      "model not loaded: segmentation jobs stay pending until a restart with a working [model]",
                      "checkpoint=%s error=%s", samda_log_quote((char[PATH_MAX + 2]){0}, PATH_MAX + 2,
                                                                cfg->model_checkpoint),
                      samda_log_quote((char[SAMDA_ERROR_MESSAGE_SIZE + 2]){0}, SAMDA_ERROR_MESSAGE_SIZE + 2,
                                      svc->model_error));
        }
#else
        samda_log(&ctx->log, SAMDA_LOG_WARN, "model", "built without the model (SAMDA_WITH_MODEL=OFF): "
                  "segmentation jobs stay pending", NULL);
#endif
    }
#ifndef SAMDA_HAVE_MODEL
    (void)svc;
#endif
}

/* Step 4: the DICOM listener. Received files land in the store's tmp/ so that committing is a
 * rename. */
static samda_status start_dicom(samdad_ctx *ctx, struct samdad_services *svc, const samda_config *cfg,
                                samda_error *err)
{
    samda_scp_params scp;
    samda_scp_params_init(&scp);
    scp.bind_address = cfg->dicom_bind;
    scp.port = (unsigned)cfg->dicom_port;
    scp.max_associations = (unsigned)cfg->dicom_max_associations;
    scp.max_associations_per_peer = (unsigned)cfg->dicom_max_associations_per_peer;
    scp.acse_timeout_s = (unsigned)((cfg->dicom_acse_timeout_ms + 999) / 1000);
    scp.dimse_timeout_s = (unsigned)((cfg->dicom_dimse_timeout_ms + 999) / 1000);
    scp.message_timeout_s = (unsigned)((cfg->dicom_message_timeout_ms + 999) / 1000);
    scp.idle_timeout_s = (unsigned)((cfg->dicom_idle_timeout_ms + 999) / 1000);
    scp.max_pdu_bytes = (unsigned)cfg->dicom_max_pdu;
    scp.temp_dir = svc->tmp_dir;
    samda_dicom_tls tls; /* [dicom] tls: this port speaks DICOM TLS only (read by samda_scp_start) */
    if (cfg->dicom_tls) {
        samda_dicom_tls_init(&tls);
        tls.certificate_file = cfg->dicom_tls_cert;
        tls.private_key_file = cfg->dicom_tls_key;
        tls.ca_file = cfg->dicom_tls_ca_file;
        tls.ca_dir = cfg->dicom_tls_ca_dir;
        tls.require_peer_certificate = cfg->dicom_tls_require_client_cert;
        scp.tls = &tls;
    }
    samdad_ingest_bind(ctx, &scp);
    scp.on_event = scp_event; /* its ctx is samdad_ingest_bind's: this ctx */
    svc->scp = samda_scp_start(&scp, err);
    if (!svc->scp) {
        samda_error_prefix(err, "starting the DICOM listener on %s:%lld: ", cfg->dicom_bind,
                           (long long)cfg->dicom_port);
        return err ? err->code : SAMDA_ENETWORK;
    }
    return SAMDA_OK;
}

/* Step 5: HTTP, REST and DICOMweb (on a node without the api role: /health and /metrics only).
 * Uploads are spooled in the store's tmp/ (same file system). */
static samda_status start_http(samdad_ctx *ctx, struct samdad_services *svc, const samda_config *cfg,
                               samda_error *err)
{
    samda_api_services api_svc;
    svc->api_core = samdad_api_core_new(ctx, &api_svc, err);
    if (!svc->api_core) return err ? err->code : SAMDA_ENOMEM;
    samda_api_params ap;
    samda_api_params_init(&ap);
    ap.bind_address = cfg->http_bind;
    ap.port = (unsigned)cfg->http_port;
    ap.threads = (unsigned)cfg->http_threads;
    ap.max_connections = (unsigned)cfg->http_max_connections;
    ap.connection_timeout_s = (unsigned)((cfg->http_timeout_ms + 999) / 1000);
    ap.header_timeout_s = (unsigned)((cfg->http_header_timeout_ms + 999) / 1000);
    ap.body_timeout_s = (unsigned)((cfg->http_body_timeout_ms + 999) / 1000);
    ap.body_min_rate = (unsigned)cfg->http_body_min_rate;
    ap.max_body_bytes = cfg->http_max_body_bytes;
    ap.tmp_dir = svc->tmp_dir;
    ap.tls_cert_path = cfg->http_tls_cert;
    ap.tls_key_path = cfg->http_tls_key;
    ap.auth_required = cfg->http_auth;
    ap.ops_only = !(svc->roles & SAMDA_NODE_API); /* /health and /metrics on every node */
    ap.node_name = svc->node;
    ap.cors_origin = cfg->http_cors_origin;
    ap.private_dir = samda_store_data_dir(svc->store); /* never in an HTTP error */
    ap.public_url = cfg->http_public_url;
    ap.shutdown_timeout_ms = (unsigned)cfg->shutdown_timeout_ms;
    ap.log = api_log;
    ap.log_ctx = ctx;
    if (!cfg->http_auth)
        samda_log(&ctx->log, SAMDA_LOG_WARN, "http", "authentication is OFF: every client may read and write",
                  "hint=\"set [http] auth = true and create tokens with samda token create\"");
    svc->api = samda_api_start(&ap, &api_svc, err);
    if (!svc->api) {
        samda_error_prefix(err, "starting the HTTP listener on %s:%lld: ", cfg->http_bind, (long long)cfg->http_port);
        return err ? err->code : SAMDA_ENETWORK;
    }
    return SAMDA_OK;
}

/* Start-up reads as its steps; a failed step leaves what started for samdad_services_stop. */
samda_status samdad_services_start(samdad_ctx *ctx, samda_error *err)
{
    samda_status st;
    struct samdad_services *svc = calloc(1, sizeof *svc);
    if (!svc) return samda_fail(err, SAMDA_ENOMEM, "starting services: out of memory");
    ctx->svc = svc;
    samda_config *cfg = samdad_config_get(ctx);
    /* [cluster] roles choose the steps; the scheduler always runs (heartbeat, and the leader's timers). */
    svc->roles = samda_cluster_roles(cfg);
    if ((st = open_store(ctx, svc, cfg, err)) != SAMDA_OK) goto fail;
    if ((st = init_dicom(ctx, svc, err)) != SAMDA_OK) goto fail;
    if (svc->roles & SAMDA_NODE_WORKER) start_model(ctx, svc, cfg);
    if ((svc->roles & SAMDA_NODE_INGEST) && (st = start_dicom(ctx, svc, cfg, err)) != SAMDA_OK) goto fail;
    if ((st = start_http(ctx, svc, cfg, err)) != SAMDA_OK) goto fail;
    svc->sched = samdad_scheduler_start(ctx, err);
    if (!svc->sched) {
        st = err ? err->code : SAMDA_EINTERNAL;
        goto fail;
    }
    if (svc->roles & SAMDA_NODE_EXPORT) {
        svc->exporter = samdad_exporter_start(ctx, err);
        if (!svc->exporter) {
            st = err ? err->code : SAMDA_EINTERNAL;
            goto fail;
        }
    }
    samda_config_unref(cfg);
    return SAMDA_OK;
fail:
    samda_config_unref(cfg);
    return st;
}

void samdad_services_reload(samdad_ctx *ctx)
{
    if (!ctx->svc || !ctx->svc->store) return;
    samda_config *cfg = samdad_config_get(ctx);
    samda_error err;
    if (samdad_sync_sites(ctx, ctx->svc->store, cfg, &err) != SAMDA_OK)
        samda_log(&ctx->log, SAMDA_LOG_ERROR, "config", "cannot apply sites", "error=%s",
                  samda_log_quote((char[600]){0}, 600, err.message));
    samda_api_set_max_body(ctx->svc->api, cfg->http_max_body_bytes);
    samda_store_set_retries(ctx->svc->store, (int)cfg->job_max_attempts, (int)cfg->export_max_attempts,
                            cfg->export_backoff_base_ms, cfg->export_backoff_max_ms);
    samda_config_unref(cfg);
    samdad_scheduler_kick(ctx->svc->sched);
    samdad_exporter_kick(ctx->svc->exporter);
}

void samdad_services_stop(samdad_ctx *ctx)
{
    struct samdad_services *svc = ctx->svc;
    if (!svc) return;
    samda_config *cfg = samdad_config_get(ctx);
    unsigned grace_ms = (unsigned)cfg->shutdown_timeout_ms;
    samda_config_unref(cfg);
    if (svc->scp) {
        samda_scp_counters c;
        samda_scp_counters_get(svc->scp, &c);
        if (c.associations_active)
            samda_log(&ctx->log, SAMDA_LOG_INFO, "dicom", "draining associations", "active=%llu grace_ms=%u",
                      (unsigned long long)c.associations_active, grace_ms);
        samda_scp_stop(svc->scp, grace_ms);
    }
    samda_api_stop(svc->api);
    samdad_api_core_free(svc->api_core);
    samdad_scheduler_stop(svc->sched);
    samdad_exporter_stop(svc->exporter);
#ifdef SAMDA_HAVE_MODEL
    samdad_worker_stop(svc->worker);
#endif
    if (svc->dicom_inited) samda_dicom_shutdown();
    samda_store_close(svc->store);
    free(svc);
    ctx->svc = NULL;
}

void samdad_services_status(samdad_ctx *ctx, char *buf, unsigned size)
{
    samda_config *cfg = samdad_config_get(ctx);
    unsigned port = ctx->svc && ctx->svc->scp ? samda_scp_port(ctx->svc->scp) : 0;
    unsigned hport = ctx->svc && ctx->svc->api ? samda_api_port(ctx->svc->api) : 0;
    snprintf(buf, size, "dicom=%s:%u dicom_tls=%s ae_title=%s http=%s:%u data_dir=%s", cfg->dicom_bind, port,
             cfg->dicom_tls ? "true" : "false", cfg->dicom_ae_title, cfg->http_bind, hport, cfg->data_dir);
    samda_config_unref(cfg);
}
