/* The HTTP API's operations family for samdad: bearer-token checks against the store, the audit hook
 * (every audited route recorded before it is answered), /health and /metrics. */
#include "api_core.h"

#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "dicom.h"
#include "json_out.h"
#include "services_internal.h"
#include "exporter.h"
#include "ingest.h"
#include "scheduler.h"
#ifdef SAMDA_HAVE_MODEL
#include "worker.h"
#endif

/* ---------- auth and audit ---------- */

static samda_status auth_check(void *v, const char *token, samda_api_role *role, int64_t *token_id, samda_error *err)
{
    samda_token_info info;
    samda_status st = samda_store_token_verify(samdad_store(CORE(v)->ctx), token, &info, err);
    if (st != SAMDA_OK) return st;
    *token_id = info.id;
    *role = info.role == SAMDA_ROLE_ADMIN ? SAMDA_API_ROLE_ADMIN
          : info.role == SAMDA_ROLE_USER  ? SAMDA_API_ROLE_USER
                                          : SAMDA_API_ROLE_INGEST;
    return SAMDA_OK;
}

static samda_status audit(void *v, const samda_api_audit_record *rec, samda_error *aerr)
{
    samdad_ctx *ctx = CORE(v)->ctx;
    char actor[48], action[SAMDA_KEY_SIZE], resource[SAMDA_MESSAGE_SIZE] = "";
    if (rec->token_id >= 0) snprintf(actor, sizeof actor, "token:%lld", (long long)rec->token_id);
    else snprintf(actor, sizeof actor, "anonymous");
    snprintf(action, sizeof action, "http %s %s", rec->method, rec->route);
    size_t n = 0;
    for (unsigned i = 0; i < rec->n_params && n < sizeof resource; i++)
        n += (size_t)snprintf(resource + n, sizeof resource - n, "%s%s=%s", i ? " " : "", rec->param_names[i],
                              rec->param_values[i]);
    const char *outcome = rec->http_status == 0 ? "error"
                        : rec->http_status == 401 || rec->http_status == 403 ? "denied"
                        : rec->http_status < 400 ? "ok"
                                                 : "error";
    char details[64];
    snprintf(details, sizeof details, "{\"http_status\":%d}", rec->http_status);
    samda_error err;
    samda_status st =
        samda_store_audit_append(samdad_store(ctx), actor, action, resource[0] ? resource : "-", outcome, details, &err);
    if (st != SAMDA_OK) {
        samda_log(&ctx->log, SAMDA_LOG_ERROR, "audit", "cannot write audit entry", "route=%s status=%d error=%s",
                  samda_log_quote((char[200]){0}, 200, rec->route), rec->http_status,
                  samda_log_quote((char[600]){0}, 600, err.message));
        if (aerr) *aerr = err;
    }
    return st;
}

/* ---------- health and metrics ---------- */

static json_t *check(const char *status, const char *detail)
{
    json_t *o = json_pack("{s:s}", "status", status);
    if (o && detail) json_object_set_new(o, "detail", json_string(detail));
    return o;
}

static samda_status health(void *v, json_t **checks, bool *healthy, samda_error *err)
{
    samdad_ctx *ctx = CORE(v)->ctx;
    samda_store *store = samdad_store(ctx);
    samda_config *cfg = samdad_config_get(ctx);
    json_t *c = json_object();
    bool ok = true;
    samda_error e;

    samda_job_filter f = {.state = -1, .limit = 1};
    samda_job *jobs = NULL;
    size_t n = 0;
    char version[64];
    if (samda_store_job_list(store, &f, &jobs, &n, &e) == SAMDA_OK &&
        samda_store_index_version(store, version, sizeof version, &e) == SAMDA_OK) {
        json_object_set_new(c, "database", check("ok", version));
        samda_job_list_free(jobs, n);
    } else {
        samda_job_list_free(jobs, n);
        json_object_set_new(c, "database", check("fail", e.message));
        ok = false;
    }

    uint64_t free_bytes = 0;
    if (samdad_disk_free(samda_store_data_dir(store), &free_bytes, &e) != SAMDA_OK) {
        json_object_set_new(c, "disk", check("fail", e.message));
        ok = false;
    } else {
        char d[160];
        /* Whatever min_free says (0 turns the watermark off), the index, its journal and the audit log
         * need room to write: below SAMDAD_DISK_FLOOR_BYTES the disk is not healthy. */
        bool disk_ok = free_bytes >= cfg->storage_min_free_bytes && free_bytes >= SAMDAD_DISK_FLOOR_BYTES;
        snprintf(d, sizeof d, "%llu bytes free, storage.min_free %llu%s", (unsigned long long)free_bytes,
                 (unsigned long long)cfg->storage_min_free_bytes,
                 free_bytes < SAMDAD_DISK_FLOOR_BYTES ? ": below the 1 MiB the index and audit log need" : "");
        json_object_set_new(c, "disk", check(disk_ok ? "ok" : "fail", d));
        if (!disk_ok) ok = false;
    }
    if (samdad_model_loaded(ctx)) {
        char md[256] = ""; /* which model, and how its input is prepared ([model] convention) */
#ifdef SAMDA_HAVE_MODEL
        samdad_worker_describe(samdad_worker_of(ctx), md, sizeof md);
#endif
        json_object_set_new(c, "model", check("ok", md[0] ? md : NULL));
    } else if (samdad_model_error(ctx)) {
        char md[SAMDA_ERROR_MESSAGE_SIZE + 64];
        snprintf(md, sizeof md, "model not loaded: %s: jobs stay pending", samdad_model_error(ctx));
        json_object_set_new(c, "model", check("fail", md));
    } else {
        json_object_set_new(c, "model", check("absent", "no model configured: jobs stay pending"));
    }
    if (samdad_roles(ctx) & SAMDA_NODE_INGEST) { /* a node without the ingest role has no listener */
        unsigned port = samdad_dicom_port(ctx);
        char d[64];
        snprintf(d, sizeof d, "%s:%u", cfg->dicom_bind, port);
        json_object_set_new(c, "dicom", check(port ? "ok" : "fail", d));
        if (!port) ok = false;
    }
    char nd[160];
    snprintf(nd, sizeof nd, "node %s, roles %s", samdad_node(ctx), samda_strlist_join(&cfg->cluster_roles, (char[64]){0}, 64));
    json_object_set_new(c, "node", check("ok", nd));
    samda_config_unref(cfg);
    (void)err;
    *checks = c;
    *healthy = ok;
    return SAMDA_OK;
}

/* samda_jobs by state; the age of the oldest pending job and, of the running jobs, the longest time
 * since one last reported progress (a stuck job: deploy/prometheus/samda-alerts.yml). */
static samda_status metrics_jobs(samda_store *store, FILE *out, samda_error *err)
{
    int64_t now = samda_store_now_ms(store);
    double oldest_pending = 0, stalled = 0;
    fprintf(out, "# HELP samda_jobs Jobs in the durable queue by state.\n# TYPE samda_jobs gauge\n");
    for (int st = SAMDA_JOB_PENDING; st <= SAMDA_JOB_CANCELLED; st++) {
        samda_job_filter f = {.state = st, .limit = 100000};
        samda_job *jobs = NULL;
        size_t n = 0;
        if (samda_store_job_list(store, &f, &jobs, &n, err) != SAMDA_OK) return err->code;
        for (size_t i = 0; i < n; i++) {
            if (st == SAMDA_JOB_PENDING && now - jobs[i].created_ms > oldest_pending * 1000)
                oldest_pending = (double)(now - jobs[i].created_ms) / 1000.0;
            if (st == SAMDA_JOB_RUNNING && now - jobs[i].updated_ms > stalled * 1000)
                stalled = (double)(now - jobs[i].updated_ms) / 1000.0;
        }
        samda_job_list_free(jobs, n);
        fprintf(out, "samda_jobs{state=\"%s\"} %zu\n", samda_job_state_name((samda_job_state)st), n);
    }
    fprintf(out, "# HELP samda_jobs_oldest_pending_seconds Age of the oldest pending job (0: none).\n"
                 "# TYPE samda_jobs_oldest_pending_seconds gauge\nsamda_jobs_oldest_pending_seconds %.3f\n"
                 "# HELP samda_jobs_running_stalled_seconds Of the running jobs, the longest time since one last "
                 "reported progress (0: none running).\n"
                 "# TYPE samda_jobs_running_stalled_seconds gauge\nsamda_jobs_running_stalled_seconds %.3f\n",
            oldest_pending, stalled);
    return SAMDA_OK;
}

/* Series routing rules hold for the rest of their study (requires), and how long the oldest has
 * waited: a study that never gets its expected series shows here before requires_timeout. */
static samda_status metrics_held(samda_store *store, FILE *out, samda_error *err)
{
    samda_series_hold *h = NULL;
    size_t n = 0;
    if (samda_store_series_held(store, 100000, &h, &n, err) != SAMDA_OK) return err->code;
    double oldest = n ? (double)(samda_store_now_ms(store) - h[0].since_ms) / 1000.0 : 0;
    samda_store_free(h);
    fprintf(out, "# HELP samda_series_held Complete series a routing rule holds until their study has the series it "
                 "requires.\n# TYPE samda_series_held gauge\nsamda_series_held %zu\n"
                 "# HELP samda_series_held_oldest_seconds How long the longest-held series has waited.\n"
                 "# TYPE samda_series_held_oldest_seconds gauge\nsamda_series_held_oldest_seconds %.3f\n",
            n, oldest < 0 ? 0 : oldest);
    return SAMDA_OK;
}

/* Free space of the data directory and the watermark below which ingest refuses ([storage] min_free);
 * the bytes stored against [storage] quota and what retention deleted. */
static samda_status metrics_disk(samdad_ctx *ctx, samda_store *store, FILE *out)
{
    uint64_t free_bytes = 0;
    samda_error e;
    if (samdad_disk_free(samda_store_data_dir(store), &free_bytes, &e) == SAMDA_OK)
        fprintf(out, "# HELP samda_disk_free_bytes Free bytes in the data directory.\n"
                     "# TYPE samda_disk_free_bytes gauge\nsamda_disk_free_bytes %llu\n",
                (unsigned long long)free_bytes);
    samda_config *cfg = samdad_config_get(ctx);
    fprintf(out, "# HELP samda_disk_min_free_bytes The watermark ([storage] min_free): below it new instances "
                 "are refused.\n# TYPE samda_disk_min_free_bytes gauge\nsamda_disk_min_free_bytes %llu\n",
            (unsigned long long)cfg->storage_min_free_bytes);
    uint64_t stored = 0;
    if (samda_store_bytes(store, &stored, &e) == SAMDA_OK)
        fprintf(out, "# HELP samda_store_bytes Bytes of the stored objects the index claims.\n"
                     "# TYPE samda_store_bytes gauge\nsamda_store_bytes %llu\n"
                     "# HELP samda_store_quota_bytes [storage] quota (0: none).\n"
                     "# TYPE samda_store_quota_bytes gauge\nsamda_store_quota_bytes %llu\n",
                (unsigned long long)stored, (unsigned long long)cfg->storage_quota_bytes);
    samda_config_unref(cfg);
    fprintf(out, "# HELP samda_retention_deleted_series_total Series the retention pass deleted.\n"
                 "# TYPE samda_retention_deleted_series_total counter\nsamda_retention_deleted_series_total %llu\n"
                 "# HELP samda_retention_deleted_instances_total Instances the retention pass deleted.\n"
                 "# TYPE samda_retention_deleted_instances_total counter\nsamda_retention_deleted_instances_total %llu\n"
                 "# HELP samda_retention_freed_bytes_total Bytes the retention pass freed.\n"
                 "# TYPE samda_retention_freed_bytes_total counter\nsamda_retention_freed_bytes_total %llu\n",
            (unsigned long long)atomic_load(&ctx->retained.series), (unsigned long long)atomic_load(&ctx->retained.instances),
            (unsigned long long)atomic_load(&ctx->retained.bytes));
    return SAMDA_OK;
}

static samda_status metrics_exports(samda_store *store, FILE *out, samda_error *err)
{
    fprintf(out, "# HELP samda_exports Export queue items (DICOM-SEG to destinations) by state.\n# TYPE samda_exports gauge\n");
    static const char *const ex_states[] = {"pending", "sending", "done", "failed"};
    for (int st = SAMDA_EXPORT_PENDING; st <= SAMDA_EXPORT_FAILED; st++) {
        samda_export_item *items = NULL;
        size_t n = 0;
        if (samda_store_export_list(store, 0, st, 100000, &items, &n, err) != SAMDA_OK) return err->code;
        size_t retried = 0;
        for (size_t i = 0; i < n; i++) retried += items[i].attempts > 0;
        samda_store_free(items);
        fprintf(out, "samda_exports{state=\"%s\"} %zu\n", ex_states[st], n);
        if (st == SAMDA_EXPORT_PENDING)
            fprintf(out, "samda_exports{state=\"pending_after_failure\"} %zu\n", retried);
    }
    return SAMDA_OK;
}

/* Per destination: items not yet delivered (pending or sending), failed for good, and the age of the
 * oldest undelivered one: the export backlog of each PACS. Destination names are [a-zA-Z0-9_.-]
 * (validated when created), so they need no escaping in a label. */
static samda_status metrics_destinations(samda_store *store, FILE *out, samda_error *err)
{
    samda_destination *d = NULL;
    size_t nd = 0;
    if (samda_store_destination_list(store, &d, &nd, err) != SAMDA_OK) return err->code;
    int64_t now = samda_store_now_ms(store);
    fprintf(out, "# HELP samda_export_backlog Items not yet delivered to a destination (pending or sending).\n"
                 "# TYPE samda_export_backlog gauge\n"
                 "# HELP samda_export_failed Items a destination refused for good, or that ran out of attempts.\n"
                 "# TYPE samda_export_failed gauge\n"
                 "# HELP samda_export_oldest_undelivered_seconds Age of a destination's oldest undelivered item.\n"
                 "# TYPE samda_export_oldest_undelivered_seconds gauge\n");
    samda_status st = SAMDA_OK;
    for (size_t k = 0; k < nd && st == SAMDA_OK; k++) {
        size_t count[SAMDA_EXPORT_FAILED + 1] = {0};
        double oldest = 0;
        for (int s = SAMDA_EXPORT_PENDING; s <= SAMDA_EXPORT_FAILED && st == SAMDA_OK; s++) {
            if (s == SAMDA_EXPORT_DONE) continue;
            samda_export_item *items = NULL;
            size_t n = 0;
            if ((st = samda_store_export_list(store, d[k].id, s, 100000, &items, &n, err)) != SAMDA_OK) break;
            count[s] = n;
            for (size_t i = 0; i < n; i++)
                if (s != SAMDA_EXPORT_FAILED && now - items[i].created_ms > oldest * 1000)
                    oldest = (double)(now - items[i].created_ms) / 1000.0;
            samda_store_free(items);
        }
        if (st != SAMDA_OK) break;
        fprintf(out, "samda_export_backlog{destination=\"%s\"} %zu\nsamda_export_failed{destination=\"%s\"} %zu\n"
                     "samda_export_oldest_undelivered_seconds{destination=\"%s\"} %.3f\n",
                d[k].name, count[SAMDA_EXPORT_PENDING] + count[SAMDA_EXPORT_SENDING], d[k].name,
                count[SAMDA_EXPORT_FAILED], d[k].name, oldest);
    }
    samda_store_free(d);
    return st;
}

/* The nodes sharing the index by heartbeat, and whether this one leads (one row on SQLite). */
static samda_status metrics_cluster(samdad_ctx *ctx, samda_store *store, FILE *out, samda_error *err)
{
    samda_node_info *nodes = NULL;
    size_t n = 0, alive = 0;
    if (samda_store_node_list(store, &nodes, &n, err) != SAMDA_OK) return err->code;
    samda_config *cfg = samdad_config_get(ctx);
    int64_t now = samda_store_now_ms(store);
    for (size_t i = 0; i < n; i++)
        if (now - nodes[i].heartbeat_ms <= cfg->cluster_node_timeout_ms) alive++;
    samda_config_unref(cfg);
    samda_store_free(nodes);
    fprintf(out, "# HELP samda_cluster_nodes Nodes sharing the index, by heartbeat (dead: none within "
                 "[cluster] node_timeout).\n# TYPE samda_cluster_nodes gauge\n"
                 "samda_cluster_nodes{state=\"alive\"} %zu\nsamda_cluster_nodes{state=\"dead\"} %zu\n"
                 "# HELP samda_node_leader 1 when this node leads (completion timers, lease reclaims, retention): "
                 "it held the leader lock at its last scheduler tick.\n"
                 "# TYPE samda_node_leader gauge\nsamda_node_leader %d\n",
            alive, n - alive, samdad_leads(ctx) ? 1 : 0);
    return SAMDA_OK;
}

static samda_status metrics(void *v, FILE *out, samda_error *err)
{
    samdad_ctx *ctx = CORE(v)->ctx;
    samda_store *store = samdad_store(ctx);
    samda_scp_counters sc;
    if (samdad_dicom_counters(ctx, &sc)) {
        fprintf(out, "# HELP samda_dicom_instances_received_total C-STORE instances stored.\n"
                     "# TYPE samda_dicom_instances_received_total counter\n"
                     "samda_dicom_instances_received_total %llu\n",
                (unsigned long long)sc.stores_ok);
        fprintf(out, "# HELP samda_dicom_instances_failed_total C-STORE instances refused or failed.\n"
                     "# TYPE samda_dicom_instances_failed_total counter\n"
                     "samda_dicom_instances_failed_total %llu\n",
                (unsigned long long)sc.stores_failed);
        fprintf(out, "# HELP samda_dicom_bytes_received_total Bytes of received instances.\n"
                     "# TYPE samda_dicom_bytes_received_total counter\n"
                     "samda_dicom_bytes_received_total %llu\n",
                (unsigned long long)sc.bytes_received);
        fprintf(out, "# HELP samda_dicom_associations Associations by outcome.\n"
                     "# TYPE samda_dicom_associations counter\n"
                     "samda_dicom_associations{outcome=\"accepted\"} %llu\n"
                     "samda_dicom_associations{outcome=\"rejected\"} %llu\n"
                     "samda_dicom_associations{outcome=\"aborted\"} %llu\n",
                (unsigned long long)sc.associations_accepted, (unsigned long long)sc.associations_rejected,
                (unsigned long long)sc.associations_aborted);
        fprintf(out, "# HELP samda_dicom_associations_active Associations open now.\n"
                     "# TYPE samda_dicom_associations_active gauge\n"
                     "samda_dicom_associations_active %llu\n",
                (unsigned long long)sc.associations_active);
    }
    samda_status st = metrics_jobs(store, out, err);
    if (st == SAMDA_OK) st = metrics_held(store, out, err);
    if (st == SAMDA_OK) st = metrics_disk(ctx, store, out);
    if (st == SAMDA_OK) st = metrics_exports(store, out, err);
    if (st == SAMDA_OK) st = metrics_cluster(ctx, store, out, err);
    if (st == SAMDA_OK) st = metrics_destinations(store, out, err);
    if (st != SAMDA_OK) return st;
    fprintf(out, "# HELP samda_model_loaded 1 when a model is loaded (segmentation jobs run).\n"
                 "# TYPE samda_model_loaded gauge\nsamda_model_loaded %d\n", samdad_model_loaded(ctx) ? 1 : 0);
#ifdef SAMDA_HAVE_MODEL
    samdad_worker_metrics(samdad_worker_of(ctx), out);
#endif
    return SAMDA_OK;
}

/* GET /api/v1/cluster: the nodes that share the index, their roles and heartbeats, which one leads,
 * and the queues they share. */
static samda_status cluster(void *v, json_t **out, samda_error *err)
{
    samdad_ctx *ctx = CORE(v)->ctx;
    samda_store *store = samdad_store(ctx);
    samda_node_info *nodes = NULL;
    size_t n = 0;
    samda_queue_depths q;
    if (samda_store_node_list(store, &nodes, &n, err) != SAMDA_OK) return err->code;
    if (samda_store_queue_depths(store, &q, err) != SAMDA_OK) {
        samda_store_free(nodes);
        return err->code;
    }
    samda_config *cfg = samdad_config_get(ctx);
    int64_t now = samda_store_now_ms(store), timeout = cfg->cluster_node_timeout_ms;
    json_t *arr = json_array();
    const char *leader = NULL; /* while the lead passes, two rows may say so: the latest beat wins */
    int64_t leader_beat = 0;
    for (size_t i = 0; arr && i < n; i++) {
        bool alive = now - nodes[i].heartbeat_ms <= timeout;
        if (alive && nodes[i].leader && nodes[i].heartbeat_ms >= leader_beat) {
            leader = nodes[i].name;
            leader_beat = nodes[i].heartbeat_ms;
        }
        json_t *roles = json_array();
        char buf[SAMDA_NODE_ROLES_SIZE], *save = NULL;
        snprintf(buf, sizeof buf, "%s", nodes[i].roles);
        for (char *t = strtok_r(buf, ",", &save); roles && t; t = strtok_r(NULL, ",", &save))
            json_array_append_new(roles, json_string(t));
        json_array_append_new(arr, json_pack("{s:s, s:o, s:s, s:I, s:I, s:I, s:f, s:b, s:b, s:b}", "name", nodes[i].name,
                                             "roles", roles ? roles : json_array(), "version", nodes[i].version,
                                             "pid", (json_int_t)nodes[i].pid, "started_ms",
                                             (json_int_t)nodes[i].started_ms, "heartbeat_ms",
                                             (json_int_t)nodes[i].heartbeat_ms, "heartbeat_age_s",
                                             (double)(now - nodes[i].heartbeat_ms) / 1000.0, "alive", alive,
                                             "leader", alive && nodes[i].leader, "this",
                                             strcmp(nodes[i].name, samdad_node(ctx)) == 0));
    }
    *out = json_pack("{s:s, s:s, s:s?, s:I, s:o, s:{s:{s:I, s:I, s:I, s:I}, s:{s:I, s:I, s:I, s:I}}}", "node",
                     samdad_node(ctx), "index", cfg->storage_index == SAMDA_CFG_INDEX_POSTGRESQL ? "postgresql" : "sqlite",
                     "leader", leader, "node_timeout_s", (json_int_t)(timeout / 1000), "nodes", arr ? arr : json_array(),
                     "queues", "jobs", "pending", (json_int_t)q.jobs[SAMDA_JOB_PENDING], "running",
                     (json_int_t)q.jobs[SAMDA_JOB_RUNNING], "done", (json_int_t)q.jobs[SAMDA_JOB_DONE], "failed",
                     (json_int_t)q.jobs[SAMDA_JOB_FAILED], "exports", "pending",
                     (json_int_t)q.exports[SAMDA_EXPORT_PENDING], "sending", (json_int_t)q.exports[SAMDA_EXPORT_SENDING],
                     "done", (json_int_t)q.exports[SAMDA_EXPORT_DONE], "failed",
                     (json_int_t)q.exports[SAMDA_EXPORT_FAILED]);
    samda_config_unref(cfg);
    samda_store_free(nodes);
    return *out ? SAMDA_OK : samda_fail(err, SAMDA_ENOMEM, "describing the cluster: out of memory");
}

void samdad_api_bind_ops(samda_api_services *svc)
{
    svc->cluster = cluster;
    svc->auth_check = auth_check;
    svc->audit = audit;
    svc->health = health;
    svc->metrics = metrics;
}
