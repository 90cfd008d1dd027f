/* The REST/DICOMweb core: what each HTTP route does, in the daemon's terms.
 *
 * STOW parts go through the same ingest path as C-STORE instances (header check, free-space
 * watermark, duplicate policy, durable commit before "stored"); a STOW request is one unit of
 * work, so its series are declared complete when the request ends. QIDO answers are built from
 * the index (no file is opened); WADO streams the stored files. Every function is safe on several
 * handler threads at once. */
#include "api_services.h"

#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dicom.h"
#include "ingest.h"
#include "json_out.h"
#include "scheduler.h"
#include "services_internal.h"
#include "storage.h"

/* Series touched by a STOW request still in flight (request id -> series UIDs). */
typedef struct stow_req {
    uint64_t id;
    char (*series)[SAMDA_UID_SIZE];
    size_t n, cap;
    struct stow_req *next;
} stow_req;

struct samdad_api_core {
    samdad_ctx *ctx;
    pthread_mutex_t mu;
    stow_req *reqs;
};

#define CORE(v) ((samdad_api_core *)(v))

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

static void audit(void *v, const samda_api_audit_record *rec)
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
    if (samda_store_audit_append(samdad_store(ctx), actor, action, resource[0] ? resource : "-", outcome, details,
                                 &err) != SAMDA_OK)
        samda_log(&ctx->log, SAMDA_LOG_ERROR, "audit", "cannot write audit entry", "error=%s",
                  samda_log_quote((char[300]){0}, 300, err.message));
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
    if (samda_store_job_list(store, &f, &jobs, &n, &e) == SAMDA_OK) {
        json_object_set_new(c, "database", check("ok", NULL));
        samda_job_list_free(jobs, n);
    } else {
        json_object_set_new(c, "database", check("fail", e.message));
        ok = false;
    }

    uint64_t free_bytes = 0;
    if (samdad_disk_free(samda_store_data_dir(store), &free_bytes, &e) != SAMDA_OK) {
        json_object_set_new(c, "disk", check("fail", e.message));
        ok = false;
    } else {
        char d[128];
        snprintf(d, sizeof d, "%llu bytes free, storage.min_free %llu", (unsigned long long)free_bytes,
                 (unsigned long long)cfg->storage_min_free_bytes);
        bool disk_ok = free_bytes >= cfg->storage_min_free_bytes;
        json_object_set_new(c, "disk", check(disk_ok ? "ok" : "fail", d));
        if (!disk_ok) ok = false;
    }
    json_object_set_new(c, "model", check(samdad_model_loaded(ctx) ? "ok" : "absent",
                                          samdad_model_loaded(ctx) ? NULL : "no model configured: jobs stay pending"));
    unsigned port = samdad_dicom_port(ctx);
    char d[64];
    snprintf(d, sizeof d, "%s:%u", cfg->dicom_bind, port);
    json_object_set_new(c, "dicom", check(port ? "ok" : "fail", d));
    if (!port) ok = false;
    samda_config_unref(cfg);
    (void)err;
    *checks = c;
    *healthy = ok;
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
    fprintf(out, "# HELP samda_jobs Jobs in the durable queue by state.\n# TYPE samda_jobs gauge\n");
    for (int st = SAMDA_JOB_PENDING; st <= SAMDA_JOB_CANCELLED; st++) {
        samda_job_filter f = {.state = st, .limit = 100000};
        samda_job *jobs = NULL;
        size_t n = 0;
        if (samda_store_job_list(store, &f, &jobs, &n, err) != SAMDA_OK) return err->code;
        samda_job_list_free(jobs, n);
        fprintf(out, "samda_jobs{state=\"%s\"} %zu\n", samda_job_state_name((samda_job_state)st), n);
    }
    uint64_t free_bytes = 0;
    samda_error e;
    if (samdad_disk_free(samda_store_data_dir(store), &free_bytes, &e) == SAMDA_OK)
        fprintf(out, "# HELP samda_disk_free_bytes Free bytes in the data directory.\n"
                     "# TYPE samda_disk_free_bytes gauge\nsamda_disk_free_bytes %llu\n",
                (unsigned long long)free_bytes);
    return SAMDA_OK;
}

/* ---------- STOW-RS ---------- */

static void stow_note_series(samdad_api_core *core, uint64_t request_id, const char *series_uid)
{
    pthread_mutex_lock(&core->mu);
    stow_req *r = core->reqs;
    while (r && r->id != request_id) r = r->next;
    if (!r && (r = calloc(1, sizeof *r))) {
        r->id = request_id;
        r->next = core->reqs;
        core->reqs = r;
    }
    if (r) {
        bool seen = false;
        for (size_t i = 0; i < r->n && !seen; i++) seen = strcmp(r->series[i], series_uid) == 0;
        if (!seen && r->n == r->cap) {
            size_t cap = r->cap ? r->cap * 2 : 4;
            void *ns = realloc(r->series, cap * sizeof *r->series);
            if (ns) {
                r->series = ns;
                r->cap = cap;
            }
        }
        if (!seen && r->n < r->cap) snprintf(r->series[r->n++], SAMDA_UID_SIZE, "%s", series_uid);
    }
    pthread_mutex_unlock(&core->mu);
}

static samda_status stow_instance(void *v, const samda_api_stow_part *part, samda_api_stow_outcome *out,
                                  samda_error *err)
{
    samdad_api_core *core = CORE(v);
    samdad_ctx *ctx = core->ctx;
    samda_store *store = samdad_store(ctx);
    samda_config *cfg = samdad_config_get(ctx);
    samda_status st;
    samda_dicom_header h;

    if (part->site && !samda_config_site(cfg, part->site)) {
        st = samda_fail(err, SAMDA_ENOENT, "unknown site '%s' (no [site %s] section)", part->site, part->site);
        out->failure_reason = 0x0110;
        goto done;
    }
    if ((st = samda_dicom_read_header(part->path, &h, err)) != SAMDA_OK) {
        out->failure_reason = 0xC000;
        goto done;
    }
    snprintf(out->sop_class_uid, sizeof out->sop_class_uid, "%s", h.sop_class_uid);
    snprintf(out->sop_instance_uid, sizeof out->sop_instance_uid, "%s", h.sop_instance_uid);
    if (part->study_uid && strcmp(part->study_uid, h.study_instance_uid) != 0) {
        st = samda_fail(err, SAMDA_EINVAL, "instance belongs to another study than the request's");
        out->failure_reason = 0xA900;
        goto done;
    }
    if (!samda_dicom_sop_class_is_accepted(h.sop_class_uid)) {
        st = samda_fail(err, SAMDA_ENOTSUP, "SOP class %s is not accepted (see docs/conformance.md)",
                        h.sop_class_uid);
        out->failure_reason = 0x0122;
        goto done;
    }
    uint64_t free_bytes = 0;
    if (samdad_disk_free(samda_store_data_dir(store), &free_bytes, err) == SAMDA_OK &&
        free_bytes < cfg->storage_min_free_bytes) {
        st = samda_fail(err, SAMDA_ENOSPC, "free space %llu bytes below storage.min_free",
                        (unsigned long long)free_bytes);
        goto done;
    }
    samda_instance_meta meta;
    samdad_meta_from_header(&h, &meta);
    const samda_site_cfg *site = part->site ? samda_config_site(cfg, part->site) : samda_config_site(cfg, "default");
    if (site) snprintf(meta.site, sizeof meta.site, "%s", site->name);
    samda_tmp_file tmp;
    tmp.fd = open(part->path, O_RDWR | O_CLOEXEC);
    if (tmp.fd < 0) {
        st = samda_fail(err, SAMDA_EIO, "opening the uploaded part: %s", strerror(errno));
        goto done;
    }
    snprintf(tmp.path, sizeof tmp.path, "%s", part->path);
    samda_ingest_result res;
    st = samda_store_instance_ingest(store, &tmp, &meta, samdad_dup_policy(cfg), &res, err);
    if (st == SAMDA_OK) {
        snprintf(out->study_uid, sizeof out->study_uid, "%s", h.study_instance_uid);
        snprintf(out->series_uid, sizeof out->series_uid, "%s", h.series_instance_uid);
        stow_note_series(core, part->request_id, h.series_instance_uid);
    }
done:
    if (st != SAMDA_OK)
        samda_log(&ctx->log, st == SAMDA_EEXIST ? SAMDA_LOG_WARN : SAMDA_LOG_ERROR, "stow", "part refused",
                  "request=%llu part=%u error=%s", (unsigned long long)part->request_id, part->index,
                  samda_log_quote((char[300]){0}, 300, err->message));
    samda_config_unref(cfg);
    return st;
}

static void stow_complete(void *v, const samda_api_stow_summary *sum)
{
    samdad_api_core *core = CORE(v);
    samdad_ctx *ctx = core->ctx;
    pthread_mutex_lock(&core->mu);
    stow_req **pp = &core->reqs, *r = NULL;
    while (*pp && (*pp)->id != sum->request_id) pp = &(*pp)->next;
    if (*pp) {
        r = *pp;
        *pp = r->next;
    }
    pthread_mutex_unlock(&core->mu);
    samda_log(&ctx->log, SAMDA_LOG_INFO, "stow", "request stored", "request=%llu parts=%u stored=%u failed=%u token=%lld",
              (unsigned long long)sum->request_id, sum->parts, sum->stored, sum->failed, (long long)sum->token_id);
    if (!r) return;
    /* A STOW request is complete by itself: its series need no idle timer. */
    samda_store *store = samdad_store(ctx);
    samda_config *cfg = samdad_config_get(ctx);
    for (size_t i = 0; i < r->n; i++) {
        samda_series_info se;
        samda_series_assoc_summary as;
        samda_error err;
        if (samda_store_series_get(store, r->series[i], &se, &err) == SAMDA_OK &&
            samda_store_series_assoc_summary(store, r->series[i], &as, &err) == SAMDA_OK)
            samdad_series_complete(ctx, store, cfg, &se, &as, "complete: STOW request");
    }
    samda_config_unref(cfg);
    free(r->series);
    free(r);
}

/* ---------- QIDO-RS (from the index) ---------- */

static void put_attr(json_t *o, const char *tag, const char *vr, json_t *value)
{
    json_t *a = json_pack("{s:s}", "vr", vr);
    if (value) json_object_set_new(a, "Value", json_pack("[o]", value));
    json_object_set_new(o, tag, a);
}

static void put_str(json_t *o, const char *tag, const char *vr, const char *s)
{
    put_attr(o, tag, vr, s && *s ? json_string(s) : NULL);
}

static void put_int(json_t *o, const char *tag, const char *vr, long long v) { put_attr(o, tag, vr, json_integer(v)); }

static void put_pn(json_t *o, const char *tag, const char *name)
{
    put_attr(o, tag, "PN", name && *name ? json_pack("{s:s}", "Alphabetic", name) : NULL);
}

/* DICOM matching of a single value with * and ? wildcards (PS3.4 C.2.2.2.4). */
static bool match_value(const char *pattern, const char *value)
{
    if (!pattern || !*pattern) return true;
    return fnmatch(pattern, value ? value : "", FNM_NOESCAPE) == 0;
}

static bool match_modalities(const samda_api_query *q, const char *mods /* backslash-separated */)
{
    if (q->n_modalities == 0) return true;
    for (unsigned i = 0; i < q->n_modalities; i++) {
        const char *p = mods;
        size_t len = strlen(q->modalities[i]);
        while (p && *p) {
            if (strncmp(p, q->modalities[i], len) == 0 && (p[len] == 0 || p[len] == '\\')) return true;
            p = strchr(p, '\\');
            if (p) p++;
        }
    }
    return false;
}

static json_t *study_json(const samda_study_info *s)
{
    json_t *o = json_object();
    put_str(o, "00080020", "DA", s->study_date);
    put_str(o, "00080050", "SH", s->accession_number);
    json_t *mods = json_array();
    for (const char *p = s->modalities; p && *p;) {
        const char *e = strchr(p, '\\');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        json_array_append_new(mods, json_stringn(p, len));
        p = e ? e + 1 : NULL;
    }
    json_t *a = json_pack("{s:s}", "vr", "CS");
    if (json_array_size(mods)) json_object_set_new(a, "Value", mods);
    else json_decref(mods);
    json_object_set_new(o, "00080061", a);
    put_str(o, "00081030", "LO", s->study_description);
    put_pn(o, "00100010", s->patient_name);
    put_str(o, "00100020", "LO", s->patient_id);
    put_str(o, "0020000D", "UI", s->study_uid);
    put_int(o, "00201206", "IS", s->n_series);
    put_int(o, "00201208", "IS", s->n_instances);
    return o;
}

static json_t *series_json_dicom(const samda_series_info *s)
{
    json_t *o = json_object();
    put_str(o, "00080060", "CS", s->modality);
    put_str(o, "0008103E", "LO", s->series_description);
    put_str(o, "00180015", "CS", s->body_part);
    put_str(o, "0020000D", "UI", s->study_uid);
    put_str(o, "0020000E", "UI", s->series_uid);
    put_int(o, "00200011", "IS", s->series_number);
    put_int(o, "00201209", "IS", s->n_instances);
    return o;
}

static json_t *instance_json_dicom(const samda_instance_row *r)
{
    json_t *o = json_object();
    put_str(o, "00080016", "UI", r->meta.sop_class_uid);
    put_str(o, "00080018", "UI", r->meta.sop_uid);
    put_str(o, "00080060", "CS", r->meta.modality);
    put_str(o, "0020000D", "UI", r->meta.study_uid);
    put_str(o, "0020000E", "UI", r->meta.series_uid);
    put_int(o, "00200013", "IS", r->meta.instance_number);
    if (r->meta.rows) put_int(o, "00280010", "US", r->meta.rows);
    if (r->meta.columns) put_int(o, "00280011", "US", r->meta.columns);
    put_int(o, "00280008", "IS", r->meta.number_of_frames > 0 ? r->meta.number_of_frames : 1);
    return o;
}

/* Results come from exact-match index queries, then DICOM wildcard matching and paging here. */
#define QIDO_SCAN_MAX 100000

static samda_status qido(void *v, const samda_api_query *q, json_t **matches, samda_error *err)
{
    samda_store *store = samdad_store(CORE(v)->ctx);
    samda_index_query iq = {0};
    bool wild_pid = strpbrk(q->patient_id, "*?") != NULL;
    iq.study_uid = q->study_uid[0] ? q->study_uid : NULL;
    iq.series_uid = q->series_uid[0] ? q->series_uid : NULL;
    iq.patient_id = q->patient_id[0] && !wild_pid ? q->patient_id : NULL;
    iq.date_from = q->has_date && q->date_from[0] ? q->date_from : NULL;
    iq.date_to = q->has_date && q->date_to[0] ? q->date_to : NULL;
    iq.limit = QIDO_SCAN_MAX;
    json_t *out = json_array();
    size_t skipped = 0;
    samda_status st = SAMDA_OK;

    if (q->level == SAMDA_API_LEVEL_STUDY) {
        samda_study_info *rows = NULL;
        size_t n = 0;
        if ((st = samda_store_study_query(store, &iq, &rows, &n, err)) != SAMDA_OK) goto fail;
        for (size_t i = 0; i < n && json_array_size(out) < q->limit; i++) {
            if (!match_value(q->patient_id, rows[i].patient_id) ||
                !match_value(q->accession_number, rows[i].accession_number) ||
                !match_modalities(q, rows[i].modalities))
                continue;
            if (skipped++ < q->offset) continue;
            json_array_append_new(out, study_json(&rows[i]));
        }
        samda_store_free(rows);
    } else if (q->level == SAMDA_API_LEVEL_SERIES) {
        if (q->n_modalities == 1) iq.modality = q->modalities[0];
        samda_series_info *rows = NULL;
        size_t n = 0;
        if ((st = samda_store_series_query(store, &iq, &rows, &n, err)) != SAMDA_OK) goto fail;
        for (size_t i = 0; i < n && json_array_size(out) < q->limit; i++) {
            if (!match_modalities(q, rows[i].modality)) continue;
            if (skipped++ < q->offset) continue;
            json_array_append_new(out, series_json_dicom(&rows[i]));
        }
        samda_store_free(rows);
    } else {
        samda_series_info *series = NULL;
        size_t ns = 0;
        if ((st = samda_store_series_query(store, &iq, &series, &ns, err)) != SAMDA_OK) goto fail;
        for (size_t s = 0; s < ns && json_array_size(out) < q->limit; s++) {
            samda_instance_row *rows = NULL;
            size_t n = 0;
            if ((st = samda_store_instance_list(store, series[s].series_uid, 0, 0, &rows, &n, err)) != SAMDA_OK) {
                samda_store_free(series);
                goto fail;
            }
            for (size_t i = 0; i < n && json_array_size(out) < q->limit; i++) {
                if (q->sop_instance_uid[0] && strcmp(q->sop_instance_uid, rows[i].meta.sop_uid) != 0) continue;
                if (!match_modalities(q, rows[i].meta.modality)) continue;
                if (skipped++ < q->offset) continue;
                json_array_append_new(out, instance_json_dicom(&rows[i]));
            }
            samda_store_free(rows);
        }
        samda_store_free(series);
    }
    *matches = out;
    return SAMDA_OK;
fail:
    json_decref(out);
    return st;
}

/* ---------- WADO-RS ---------- */

static samda_status add_series_paths(samda_store *store, const char *series_uid, json_t *paths, samda_error *err)
{
    samda_instance_row *rows = NULL;
    size_t n = 0;
    samda_status st = samda_store_instance_list(store, series_uid, 0, 0, &rows, &n, err);
    for (size_t i = 0; st == SAMDA_OK && i < n; i++) {
        char p[4096];
        st = samda_store_object_path(store, rows[i].object.relpath, p, sizeof p, err);
        if (st == SAMDA_OK) json_array_append_new(paths, json_string(p));
    }
    samda_store_free(rows);
    return st;
}

static samda_status retrieve(void *v, const samda_api_ref *ref, json_t **paths, samda_error *err)
{
    samda_store *store = samdad_store(CORE(v)->ctx);
    json_t *out = json_array();
    samda_status st = SAMDA_OK;
    if (ref->level == SAMDA_API_LEVEL_INSTANCE) {
        samda_instance_row r;
        if ((st = samda_store_instance_get(store, ref->instance, &r, err)) == SAMDA_OK) {
            if (strcmp(r.meta.series_uid, ref->series) != 0 || strcmp(r.meta.study_uid, ref->study) != 0)
                st = samda_fail(err, SAMDA_ENOENT, "unknown instance %s in series %s", ref->instance, ref->series);
            else {
                char p[4096];
                if ((st = samda_store_object_path(store, r.object.relpath, p, sizeof p, err)) == SAMDA_OK)
                    json_array_append_new(out, json_string(p));
            }
        }
    } else if (ref->level == SAMDA_API_LEVEL_SERIES) {
        samda_series_info se;
        if ((st = samda_store_series_get(store, ref->series, &se, err)) == SAMDA_OK) {
            if (strcmp(se.study_uid, ref->study) != 0)
                st = samda_fail(err, SAMDA_ENOENT, "unknown series %s in study %s", ref->series, ref->study);
            else st = add_series_paths(store, ref->series, out, err);
        }
    } else {
        samda_series_info *rows = NULL;
        size_t n = 0;
        if ((st = samda_store_series_list(store, ref->study, &rows, &n, err)) == SAMDA_OK && n == 0)
            st = samda_fail(err, SAMDA_ENOENT, "unknown study %s", ref->study);
        for (size_t i = 0; st == SAMDA_OK && i < n; i++) st = add_series_paths(store, rows[i].series_uid, out, err);
        samda_store_free(rows);
    }
    if (st != SAMDA_OK) {
        json_decref(out);
        return st;
    }
    *paths = out;
    return SAMDA_OK;
}

/* ---------- REST ---------- */

static samda_status changes(void *v, int64_t since, unsigned limit, json_t **out, samda_error *err)
{
    samda_change *c = NULL;
    size_t n = 0;
    int64_t last = 0;
    samda_status st = samda_store_change_list(samdad_store(CORE(v)->ctx), since, limit, &c, &n, &last, err);
    if (st != SAMDA_OK) return st;
    json_t *a = json_array();
    int64_t seen = since;
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(a, json_pack("{s:I, s:I, s:s, s:s, s:s}", "seq", (json_int_t)c[i].seq, "time_ms",
                                           (json_int_t)c[i].time_ms, "kind", c[i].kind, "resource", c[i].resource,
                                           "type", samda_change_type_name(c[i].type)));
        seen = c[i].seq;
    }
    samda_store_free(c);
    *out = json_pack("{s:o, s:I, s:b}", "changes", a, "last", (json_int_t)seen, "done", seen >= last);
    return SAMDA_OK;
}

static samda_status jobs_list(void *v, const char *state, unsigned limit, unsigned offset, json_t **out,
                              samda_error *err)
{
    samda_job_filter f = {.state = -1, .limit = limit, .offset = offset};
    if (state) {
        f.state = -2;
        for (int k = SAMDA_JOB_PENDING; k <= SAMDA_JOB_CANCELLED; k++)
            if (!strcmp(state, samda_job_state_name((samda_job_state)k))) f.state = k;
        if (f.state == -2)
            return samda_fail(err, SAMDA_EINVAL, "state '%s': must be pending, running, done, failed or cancelled",
                              state);
    }
    samda_job *jobs = NULL;
    size_t n = 0;
    samda_status st = samda_store_job_list(samdad_store(CORE(v)->ctx), &f, &jobs, &n, err);
    if (st != SAMDA_OK) return st;
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(a, samdad_job_json(&jobs[i]));
    samda_job_list_free(jobs, n);
    *out = a;
    return SAMDA_OK;
}

static samda_status job_get(void *v, int64_t id, json_t **out, samda_error *err)
{
    samda_job j;
    samda_status st = samda_store_job_get(samdad_store(CORE(v)->ctx), id, &j, err);
    if (st == SAMDA_ENOENT) samda_fail(err, SAMDA_ENOENT, "unknown job %lld", (long long)id);
    if (st != SAMDA_OK) return st;
    *out = samdad_job_json(&j);
    samda_job_clear(&j);
    return SAMDA_OK;
}

static samda_status job_change(void *v, int64_t id, int64_t token_id, json_t **out, samda_error *err, bool cancel)
{
    samdad_ctx *ctx = CORE(v)->ctx;
    samda_store *store = samdad_store(ctx);
    samda_status st = cancel ? samda_store_job_cancel(store, id, err) : samda_store_job_retry(store, id, err);
    if (st == SAMDA_EINVAL) st = samda_fail(err, SAMDA_ECANCELED, "job %lld: %s", (long long)id, err->message);
    if (st != SAMDA_OK) return st;
    samda_log(&ctx->log, SAMDA_LOG_INFO, "api", cancel ? "job cancelled" : "job retried", "job=%lld token=%lld",
              (long long)id, (long long)token_id);
    return job_get(v, id, out, err);
}

static samda_status job_cancel(void *v, int64_t id, int64_t token_id, json_t **out, samda_error *err)
{
    return job_change(v, id, token_id, out, err, true);
}

static samda_status job_retry(void *v, int64_t id, int64_t token_id, json_t **out, samda_error *err)
{
    return job_change(v, id, token_id, out, err, false);
}

/* On-demand segmentation of a study: one job above batch priority; the transaction id makes a
 * repeated request return the same job. */
static samda_status segment(void *v, const samda_api_segment_request *req, json_t **out, samda_error *err)
{
    samdad_ctx *ctx = CORE(v)->ctx;
    samda_store *store = samdad_store(ctx);
    samda_study_info study;
    samda_status st = samda_store_study_get(store, req->study_uid, &study, err);
    if (st == SAMDA_ENOENT) return samda_fail(err, SAMDA_ENOENT, "unknown study %s", req->study_uid);
    if (st != SAMDA_OK) return st;
    samda_series_info *rows = NULL;
    size_t n = 0;
    if ((st = samda_store_series_list(store, req->study_uid, &rows, &n, err)) != SAMDA_OK) return st;
    char site[SAMDA_NAME_SIZE] = "";
    if (n) snprintf(site, sizeof site, "%s", rows[0].site);
    samda_store_free(rows);

    json_t *params = json_object();
    if (req->n_labels) {
        json_t *l = json_array();
        for (unsigned i = 0; i < req->n_labels; i++) json_array_append_new(l, json_string(req->labels[i]));
        json_object_set_new(params, "labels", l);
    }
    if (req->adapter_version) json_object_set_new(params, "adapter_version", json_string(req->adapter_version));
    if (req->tta) json_object_set_new(params, "tta", json_string(req->tta));
    json_object_set_new(params, "requested_by", json_integer(req->token_id));
    char *params_s = json_dumps(params, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(params);
    samda_config *cfg = samdad_config_get(ctx);
    char key[SAMDA_KEY_SIZE];
    if (req->transaction_id) snprintf(key, sizeof key, "segment:%s", req->transaction_id);
    samda_job_spec spec = {
        .kind = "segment",
        .priority = 10, /* on demand: before batch work from completed series */
        .site = site[0] ? site : NULL,
        .study_uid = req->study_uid,
        .params_json = params_s,
        .idempotency_key = req->transaction_id ? key : NULL,
        .max_attempts = (int)cfg->job_max_attempts,
    };
    samda_config_unref(cfg);
    int64_t id = 0;
    bool existed = false;
    st = samda_store_job_enqueue(store, &spec, &id, &existed, err);
    free(params_s);
    if (st != SAMDA_OK) return st;
    samda_log(&ctx->log, SAMDA_LOG_INFO, "api", existed ? "segmentation already requested" : "segmentation requested",
              "job=%lld token=%lld", (long long)id, (long long)req->token_id);
    return job_get(v, id, out, err);
}

static samda_status results(void *v, const char *study_uid, json_t **out, samda_error *err)
{
    samda_store *store = samdad_store(CORE(v)->ctx);
    samda_series_info *rows = NULL;
    size_t n = 0;
    samda_status st = samda_store_series_list(store, study_uid, &rows, &n, err);
    if (st != SAMDA_OK) return st;
    if (n == 0) return samda_fail(err, SAMDA_ENOENT, "unknown study %s", study_uid);
    json_t *series = json_array();
    for (size_t i = 0; i < n; i++) {
        samda_result *r = NULL;
        size_t nr = 0;
        if ((st = samda_store_result_list(store, rows[i].series_uid, &r, &nr, err)) != SAMDA_OK) break;
        json_t *s = samdad_series_json(&rows[i]);
        json_t *ra = json_array();
        for (size_t k = 0; k < nr; k++) json_array_append_new(ra, samdad_result_json(&r[k]));
        samda_result_list_free(r, nr);
        json_object_set_new(s, "results", ra);
        json_array_append_new(series, s);
    }
    samda_store_free(rows);
    if (st != SAMDA_OK) {
        json_decref(series);
        return st;
    }
    *out = json_pack("{s:s, s:o}", "study_uid", study_uid, "series", series);
    return SAMDA_OK;
}

samdad_api_core *samdad_api_core_new(samdad_ctx *ctx, samda_api_services *svc, samda_error *err)
{
    samdad_api_core *core = calloc(1, sizeof *core);
    if (!core) {
        samda_fail(err, SAMDA_ENOMEM, "starting the HTTP core: out of memory");
        return NULL;
    }
    core->ctx = ctx;
    pthread_mutex_init(&core->mu, NULL);
    memset(svc, 0, sizeof *svc);
    svc->ctx = core;
    svc->auth_check = auth_check;
    svc->audit = audit;
    svc->health = health;
    svc->metrics = metrics;
    svc->stow_instance = stow_instance;
    svc->stow_complete = stow_complete;
    svc->qido = qido;
    svc->retrieve = retrieve;
    svc->changes = changes;
    svc->jobs_list = jobs_list;
    svc->job_get = job_get;
    svc->job_cancel = job_cancel;
    svc->job_retry = job_retry;
    svc->segment = segment;
    svc->results = results;
    return core;
}

void samdad_api_core_free(samdad_api_core *core)
{
    if (!core) return;
    while (core->reqs) {
        stow_req *r = core->reqs;
        core->reqs = r->next;
        free(r->series);
        free(r);
    }
    pthread_mutex_destroy(&core->mu);
    free(core);
}
