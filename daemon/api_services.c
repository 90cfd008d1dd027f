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
#include <limits.h>
#include <sys/mman.h>
#include <time.h>
#include <fnmatch.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <png.h>

#include "dicom.h"
#include "export_admin.h"
#include "exporter.h"
#include "ingest.h"
#include "json_out.h"
#include "safetensors.h"
#include "scheduler.h"
#include "services_internal.h"
#ifdef SAMDA_HAVE_MODEL
#include "model.h"
#include "worker.h"
#endif
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
    /* site overlay (see "administration: sites") */
    pthread_mutex_t overlay_mu;  /* serialises overlays and site changes; guards the two below */
    samda_config *base;          /* the file's configuration the overlay was built on (ref) */
    samda_config *installed;     /* the snapshot the core last installed or saw (ref) */
    samda_config *defaults;      /* the configuration table's defaults, for new sites (ref) */
    pthread_mutex_t watch_mu;
    pthread_cond_t watch_cv;
    bool watch_stop, watching;
    pthread_t watcher;
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
    fprintf(out, "# HELP samda_model_loaded 1 when a model is loaded (segmentation jobs run).\n"
                 "# TYPE samda_model_loaded gauge\nsamda_model_loaded %d\n", samdad_model_loaded(ctx) ? 1 : 0);
#ifdef SAMDA_HAVE_MODEL
    samdad_worker_metrics(samdad_worker_of(ctx), out);
#endif
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
    samda_config *cfg = samdad_config_get(ctx);
    samda_status st;
    samda_dicom_header h;

    if (part->site && !samda_config_site(cfg, part->site)) {
        st = samda_fail(err, SAMDA_ENOENT, "unknown site '%s' (no [site %s] section)", part->site, part->site);
        out->failure_reason = 0x0110;
        goto done;
    }
    st = samda_dicom_read_header(part->path, &h, err);
    /* The response's FailedSOPSequence names the instance whenever its UIDs could be read (after a
     * refused UID the header holds the others). */
    snprintf(out->sop_class_uid, sizeof out->sop_class_uid, "%s", h.sop_class_uid);
    snprintf(out->sop_instance_uid, sizeof out->sop_instance_uid, "%s", h.sop_instance_uid);
    if (st != SAMDA_OK) {
        out->failure_reason = 0xC000;
        goto done;
    }
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
    const samda_site_cfg *site = part->site ? samda_config_site(cfg, part->site) : samda_config_site(cfg, "default");
    samdad_ingest_origin o = {.kind = SAMDAD_ORIGIN_STOW, .site = site ? site->name : NULL};
    if ((st = samdad_ingest_file(ctx, &o, part->path, &h, NULL, err)) == SAMDA_OK) {
        snprintf(out->study_uid, sizeof out->study_uid, "%s", h.study_instance_uid);
        snprintf(out->series_uid, sizeof out->series_uid, "%s", h.series_instance_uid);
        stow_note_series(core, part->request_id, h.series_instance_uid);
    }
done:
    if (st != SAMDA_OK)
        samda_log(&ctx->log, st == SAMDA_EEXIST ? SAMDA_LOG_WARN : SAMDA_LOG_ERROR, "stow", "part refused",
                  "request=%llu part=%u error=%s", (unsigned long long)part->request_id, part->index,
                  samda_log_quote((char[600]){0}, 600, samdad_scrub(ctx, err->message, (char[512]){0}, 512)));
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

/* PatientName (PS3.4 C.2.2.2.1, C.2.2.2.4): wildcard matching on the whole value, case-insensitive
 * (PN matching may ignore case). With fuzzymatching=true, a value without wildcards also matches a
 * name one of whose components (separated by ^, = or space) starts with it. */
static bool match_pn(const char *pattern, const char *name, bool fuzzy)
{
    if (!pattern || !*pattern) return true;
    if (!name) name = "";
    if (fnmatch(pattern, name, FNM_NOESCAPE | FNM_CASEFOLD) == 0) return true;
    if (!fuzzy || strpbrk(pattern, "*?")) return false;
    size_t n = strlen(pattern);
    for (const char *c = name; *c;) {
        if (strncasecmp(c, pattern, n) == 0) return true;
        c += strcspn(c, "^= ");
        c += strspn(c, "^= ");
    }
    return false;
}

/* Text matching of LO values (StudyDescription): wildcards, case-sensitive as PS3.4 says. */
static bool match_text(const char *pattern, const char *value) { return match_value(pattern, value); }

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
    put_str(o, "00080030", "TM", NULL); /* not indexed: filled from a file when it has one */
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
    put_str(o, "00080021", "DA", NULL); /* SeriesDate, SeriesTime: not indexed; filled from a file */
    put_str(o, "00080031", "TM", NULL);
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

/* Attributes the index does not keep (StudyTime, SeriesDate, SeriesTime), read from the first
 * instance of a series: they replace the empty placeholders of o. Best effort: a file that cannot
 * be read leaves them empty. */
static void fill_from_file(samda_store *store, const char *series_uid, const uint32_t *tags, size_t n, json_t *o)
{
    samda_instance_row *rows = NULL;
    size_t k = 0;
    samda_error e;
    if (samda_store_instance_list(store, series_uid, 1, 0, &rows, &k, &e) != SAMDA_OK || k == 0) {
        samda_store_free(rows);
        return;
    }
    char path[4096], *text = NULL;
    if (samda_store_object_path(store, rows[0].object.relpath, path, sizeof path, &e) == SAMDA_OK &&
        samda_dicom_dataset_json_attrs(path, tags, n, &text, &e) == SAMDA_OK) {
        json_t *j = json_loads(text, 0, NULL);
        const char *key;
        json_t *v;
        json_object_foreach(j, key, v) if (json_object_get(v, "Value")) json_object_set(o, key, v);
        json_decref(j);
    }
    free(text);
    samda_store_free(rows);
}

/* Study-level keys (PatientName, AccessionNumber, StudyDescription, wildcard PatientID) in a series
 * or instance search: checked against the series' study (the last one looked up is remembered:
 * rows come grouped by study). */
typedef struct study_cache {
    char uid[SAMDA_UID_SIZE];
    bool match;
} study_cache;

static bool study_matches(samda_store *store, const samda_api_query *q, const char *study_uid, study_cache *c)
{
    bool wild_pid = strpbrk(q->patient_id, "*?") != NULL;
    if (!q->patient_name[0] && !q->study_description[0] && !q->accession_number[0] && !wild_pid) return true;
    if (strcmp(c->uid, study_uid) == 0) return c->match;
    samda_study_info st;
    samda_error e;
    snprintf(c->uid, sizeof c->uid, "%s", study_uid);
    c->match = samda_store_study_get(store, study_uid, &st, &e) == SAMDA_OK && match_value(q->patient_id, st.patient_id) &&
               match_value(q->accession_number, st.accession_number) && match_pn(q->patient_name, st.patient_name, q->fuzzy) &&
               match_text(q->study_description, st.study_description);
    return c->match;
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
    study_cache cache = {"", false};

    if (q->level == SAMDA_API_LEVEL_STUDY) {
        samda_study_info *rows = NULL;
        size_t n = 0;
        if ((st = samda_store_study_query(store, &iq, &rows, &n, err)) != SAMDA_OK) goto fail;
        for (size_t i = 0; i < n && json_array_size(out) < q->limit; i++) {
            if (!match_value(q->patient_id, rows[i].patient_id) ||
                !match_value(q->accession_number, rows[i].accession_number) ||
                !match_pn(q->patient_name, rows[i].patient_name, q->fuzzy) ||
                !match_text(q->study_description, rows[i].study_description) ||
                !match_modalities(q, rows[i].modalities))
                continue;
            if (skipped++ < q->offset) continue;
            json_t *o = study_json(&rows[i]);
            static const uint32_t study_tags[] = {0x00080030};
            samda_series_info *ser = NULL;
            size_t nser = 0;
            samda_error fe;
            if (samda_store_series_list(store, rows[i].study_uid, &ser, &nser, &fe) == SAMDA_OK && nser)
                fill_from_file(store, ser[0].series_uid, study_tags, 1, o);
            samda_store_free(ser);
            json_array_append_new(out, o);
        }
        samda_store_free(rows);
    } else if (q->level == SAMDA_API_LEVEL_SERIES) {
        if (q->n_modalities == 1) iq.modality = q->modalities[0];
        samda_series_info *rows = NULL;
        size_t n = 0;
        if ((st = samda_store_series_query(store, &iq, &rows, &n, err)) != SAMDA_OK) goto fail;
        for (size_t i = 0; i < n && json_array_size(out) < q->limit; i++) {
            if (!match_modalities(q, rows[i].modality)) continue;
            if (!study_matches(store, q, rows[i].study_uid, &cache)) continue;
            if (skipped++ < q->offset) continue;
            json_t *o = series_json_dicom(&rows[i]);
            static const uint32_t series_tags[] = {0x00080021, 0x00080031};
            fill_from_file(store, rows[i].series_uid, series_tags, 2, o);
            json_array_append_new(out, o);
        }
        samda_store_free(rows);
    } else {
        samda_series_info *series = NULL;
        size_t ns = 0;
        if ((st = samda_store_series_query(store, &iq, &series, &ns, err)) != SAMDA_OK) goto fail;
        for (size_t s = 0; s < ns && json_array_size(out) < q->limit; s++) {
            if (!study_matches(store, q, series[s].study_uid, &cache)) continue;
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

/* ---------- WADO-RS metadata and frames ---------- */

/* The instances a reference names, in retrieval order. Free with samda_store_free. */
static samda_status ref_instances(samda_store *store, const samda_api_ref *ref, samda_instance_row **out, size_t *n_out,
                                  samda_error *err)
{
    *out = NULL;
    *n_out = 0;
    samda_status st;
    if (ref->level == SAMDA_API_LEVEL_INSTANCE) {
        samda_instance_row *r = malloc(sizeof *r);
        if (!r) return samda_fail(err, SAMDA_ENOMEM, "out of memory");
        st = samda_store_instance_get(store, ref->instance, r, err);
        if (st == SAMDA_OK && (strcmp(r->meta.series_uid, ref->series) != 0 || strcmp(r->meta.study_uid, ref->study) != 0))
            st = SAMDA_ENOENT;
        if (st == SAMDA_ENOENT) st = samda_fail(err, SAMDA_ENOENT, "unknown instance %s in series %s", ref->instance, ref->series);
        if (st != SAMDA_OK) {
            free(r);
            return st;
        }
        *out = r;
        *n_out = 1;
        return SAMDA_OK;
    }
    samda_series_info *series = NULL;
    size_t ns = 0;
    if (ref->level == SAMDA_API_LEVEL_SERIES) {
        series = malloc(sizeof *series);
        if (!series) return samda_fail(err, SAMDA_ENOMEM, "out of memory");
        st = samda_store_series_get(store, ref->series, series, err);
        if (st == SAMDA_OK && strcmp(series->study_uid, ref->study) != 0) st = SAMDA_ENOENT;
        if (st == SAMDA_ENOENT) st = samda_fail(err, SAMDA_ENOENT, "unknown series %s in study %s", ref->series, ref->study);
        if (st != SAMDA_OK) {
            free(series);
            return st;
        }
        ns = 1;
    } else {
        if ((st = samda_store_series_list(store, ref->study, &series, &ns, err)) != SAMDA_OK) return st;
        if (ns == 0) return samda_fail(err, SAMDA_ENOENT, "unknown study %s", ref->study);
    }
    samda_instance_row *all = NULL;
    size_t n = 0;
    for (size_t i = 0; i < ns && st == SAMDA_OK; i++) {
        samda_instance_row *rows = NULL;
        size_t k = 0;
        if ((st = samda_store_instance_list(store, series[i].series_uid, 0, 0, &rows, &k, err)) != SAMDA_OK) break;
        samda_instance_row *na = k ? realloc(all, (n + k) * sizeof *all) : all;
        if (k && !na) {
            st = samda_fail(err, SAMDA_ENOMEM, "out of memory");
        } else if (k) {
            all = na;
            memcpy(all + n, rows, k * sizeof *rows);
            n += k;
        }
        samda_store_free(rows);
    }
    if (ref->level == SAMDA_API_LEVEL_SERIES) free(series);
    else samda_store_free(series);
    if (st != SAMDA_OK) {
        free(all);
        return st;
    }
    *out = all;
    *n_out = n;
    return SAMDA_OK;
}

/* The JSON writer names bulk data under the instance URL (".../pixeldata", ".../bulkdata/<path>");
 * this server serves frames and whole instances: point the top-level Pixel Data at its frames
 * (".../frames/1,2,...", at most 256, the frames route's limit) and other bulk data at the
 * instance. */
#define METADATA_MAX_FRAME_LIST 256

static void bulk_rewrite(json_t *obj, const char *inst_url, const char *frames_url, bool top)
{
    const char *key;
    json_t *attr;
    json_object_foreach(obj, key, attr) {
        json_t *uri = json_object_get(attr, "BulkDataURI");
        if (json_is_string(uri)) {
            bool pixel = top && strcmp(key, "7FE00010") == 0;
            json_object_set_new(attr, "BulkDataURI", json_string(pixel ? frames_url : inst_url));
        }
        json_t *items = json_object_get(attr, "Value");
        const char *vr = json_string_value(json_object_get(attr, "vr"));
        if (vr && strcmp(vr, "SQ") == 0 && json_is_array(items)) {
            size_t i;
            json_t *item;
            json_array_foreach(items, i, item) if (json_is_object(item)) bulk_rewrite(item, inst_url, frames_url, false);
        }
    }
}

static samda_status metadata(void *v, const samda_api_ref *ref, json_t **out, samda_error *err)
{
    samda_store *store = samdad_store(CORE(v)->ctx);
    samda_instance_row *rows = NULL;
    size_t n = 0;
    samda_status st = ref_instances(store, ref, &rows, &n, err);
    if (st != SAMDA_OK) return st;
    json_t *arr = json_array();
    char *frames = malloc(sizeof "/frames/" + METADATA_MAX_FRAME_LIST * 4 + 1024 + 8);
    if (!frames) st = samda_fail(err, SAMDA_ENOMEM, "out of memory");
    for (size_t i = 0; i < n && st == SAMDA_OK; i++) {
        char path[4096], url[1024];
        if ((st = samda_store_object_path(store, rows[i].object.relpath, path, sizeof path, err)) != SAMDA_OK) break;
        snprintf(url, sizeof url, "%s/dicomweb/studies/%s/series/%s/instances/%s", ref->base_url ? ref->base_url : "",
                 rows[i].meta.study_uid, rows[i].meta.series_uid, rows[i].meta.sop_uid);
        char *text = NULL;
        if ((st = samda_dicom_file_to_json(path, url, &text, err)) != SAMDA_OK) {
            samda_error_prefix(err, "metadata of instance %s: ", rows[i].meta.sop_uid);
            break;
        }
        json_error_t je;
        json_t *obj = json_loads(text, 0, &je);
        free(text);
        if (!json_is_object(obj)) {
            json_decref(obj);
            st = samda_fail(err, SAMDA_EINTERNAL, "metadata of instance %s: the DICOM JSON writer produced invalid JSON", rows[i].meta.sop_uid);
            break;
        }
        json_t *nf = json_array_get(json_object_get(json_object_get(obj, "00280008"), "Value"), 0);
        long long nframes = json_is_integer(nf) ? json_integer_value(nf) : json_is_real(nf) ? (long long)json_real_value(nf) : 1;
        if (nframes < 1) nframes = 1;
        if (nframes > METADATA_MAX_FRAME_LIST) nframes = METADATA_MAX_FRAME_LIST;
        size_t o = (size_t)snprintf(frames, 1024 + 8, "%s/frames/", url);
        for (long long f = 1; f <= nframes; f++) o += (size_t)sprintf(frames + o, "%s%lld", f > 1 ? "," : "", f);
        bulk_rewrite(obj, url, frames, true);
        json_array_append_new(arr, obj);
    }
    free(frames);
    free(rows);
    if (st != SAMDA_OK) {
        json_decref(arr);
        return st;
    }
    *out = arr;
    return SAMDA_OK;
}

static samda_status frame(void *v, const samda_api_ref *ref, unsigned frame_no, void **data, size_t *size, samda_error *err)
{
    samda_store *store = samdad_store(CORE(v)->ctx);
    samda_instance_row *rows = NULL;
    size_t n = 0;
    samda_status st = ref_instances(store, ref, &rows, &n, err);
    if (st != SAMDA_OK) return st;
    char path[4096];
    st = samda_store_object_path(store, rows[0].object.relpath, path, sizeof path, err);
    free(rows);
    if (st != SAMDA_OK) return st;
    st = samda_dicom_frame_read(path, frame_no, data, size, NULL, err);
    if (st != SAMDA_OK) samda_error_prefix(err, "frame %u of instance %s: ", frame_no, ref->instance);
    return st;
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

/* ---------- administration: sites ----------
 *
 * Precedence. The configuration file's [site NAME] sections are copied into the index at start
 * and at every reload (samdad_sync_sites) and always win: such a site cannot be changed through
 * the API (409), and a site created through the API is replaced by a [site] section of the same
 * name as soon as the file defines one. Sites created or changed through the API carry
 * "origin": "api" in their stored settings; they take effect at once without a restart: the core
 * installs a configuration snapshot made of the file's configuration (as last loaded) plus one
 * [site] section per API site (site overlay). A reload (SIGHUP) installs a fresh snapshot from
 * the file; the core notices within half a second and lays its API sites over it again. */

#define SITE_ORIGIN_API "api"
#define OVERLAY_POLL_MS 500

/* Is settings_json marked as written through the API? */
static bool origin_is_api(const char *settings_json)
{
    if (!settings_json) return false;
    json_t *j = json_loads(settings_json, 0, NULL);
    bool api = j && json_is_string(json_object_get(j, "origin")) &&
               strcmp(json_string_value(json_object_get(j, "origin")), SITE_ORIGIN_API) == 0;
    json_decref(j);
    return api;
}

/* Write a JSON string array as an INI list value ("a,b"); false when empty. */
static bool ini_list(FILE *f, const char *key, const json_t *arr)
{
    if (!json_is_array(arr) || json_array_size(arr) == 0) return false;
    fprintf(f, "%s = ", key);
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) fprintf(f, "%s%s", i ? "," : "", json_string_value(v));
    fputc('\n', f);
    return true;
}

/* One [site] section from the stored JSON (validated when it was written). Destinations that the
 * configuration does not define are left out: the file's [site] sections may name only [destination]
 * sections; the API's own destinations stay in the index. */
static void ini_site(FILE *f, const samda_config *base, const char *name, const char *ae_json, const char *settings_json)
{
    json_t *ae = ae_json ? json_loads(ae_json, 0, NULL) : NULL;
    json_t *set = settings_json ? json_loads(settings_json, 0, NULL) : NULL;
    fprintf(f, "\n[site %s]\n", name);
    ini_list(f, "called_ae", json_object_get(ae, "called_ae"));
    ini_list(f, "calling_ae", json_object_get(ae, "calling_ae"));
    ini_list(f, "modalities", json_object_get(set, "modalities"));
    json_t *v;
    if (json_is_integer(v = json_object_get(set, "min_slices"))) fprintf(f, "min_slices = %lld\n", (long long)json_integer_value(v));
    if (json_is_integer(v = json_object_get(set, "series_idle_ms"))) fprintf(f, "series_idle = %lldms\n", (long long)json_integer_value(v));
    if (json_is_integer(v = json_object_get(set, "study_idle_ms"))) fprintf(f, "study_idle = %lldms\n", (long long)json_integer_value(v));
    if (json_is_integer(v = json_object_get(set, "max_wait_ms"))) fprintf(f, "max_wait = %lldms\n", (long long)json_integer_value(v));
    if (json_is_string(v = json_object_get(set, "tta"))) fprintf(f, "tta = %s\n", json_string_value(v));
    json_t *dests = json_array();
    size_t i;
    json_array_foreach(json_object_get(set, "destinations"), i, v)
        if (json_is_string(v) && samda_config_dest(base, json_string_value(v))) json_array_append(dests, v);
    ini_list(f, "destinations", dests);
    json_decref(dests);
    json_decref(ae);
    json_decref(set);
}

/* A candidate site not yet in the index (site_put), laid over the stored ones. */
typedef struct site_candidate {
    const char *name, *ae_json, *settings_json;
} site_candidate;

/* Build the overlay snapshot: base + every API site of the index (+ cand). *next = NULL when
 * there is nothing to lay over base. */
static samda_status overlay_build(samdad_api_core *core, const samda_config *base, const site_candidate *cand,
                                  samda_config **next, samda_error *err)
{
    *next = NULL;
    samda_site *sites = NULL;
    size_t n = 0;
    samda_status st = samda_store_site_list(samdad_store(core->ctx), &sites, &n, err);
    if (st != SAMDA_OK) return st;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) {
        samda_site_list_free(sites, n);
        return samda_fail(err, SAMDA_ENOMEM, "applying API sites: out of memory");
    }
    samda_config_write_effective(base, f);
    size_t added = 0;
    for (size_t i = 0; i < n; i++) {
        if (cand && strcmp(sites[i].name, cand->name) == 0) continue;
        if (samda_config_site(base, sites[i].name) || !origin_is_api(sites[i].settings_json)) continue;
        ini_site(f, base, sites[i].name, sites[i].ae_json, sites[i].settings_json);
        added++;
    }
    if (cand) {
        ini_site(f, base, cand->name, cand->ae_json, cand->settings_json);
        added++;
    }
    samda_site_list_free(sites, n);
    if (fclose(f) != 0) {
        free(text);
        return samda_fail(err, SAMDA_ENOMEM, "applying API sites: out of memory");
    }
    if (!added) {
        free(text);
        return SAMDA_OK;
    }
    /* samda_config_load reads a file: hand it an anonymous one. */
    int fd = memfd_create("samda-site-overlay", MFD_CLOEXEC);
    bool wrote = fd >= 0;
    for (size_t off = 0; wrote && off < len;) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) wrote = false;
        else off += (size_t)w;
    }
    free(text);
    if (!wrote) {
        if (fd >= 0) close(fd);
        return samda_fail(err, SAMDA_EIO, "applying API sites: cannot write the overlay configuration");
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    samda_error le;
    samda_config *c = samda_config_load(path, NULL, &le);
    close(fd);
    if (!c) return samda_fail(err, SAMDA_EINVAL, "site settings refused by the configuration rules: %s", le.message);
    /* Restart-only options (and the sensitive ones, written as ***) stay exactly as running. */
    if ((st = samda_config_merge_reload(c, base, NULL, NULL, err)) != SAMDA_OK) {
        samda_config_unref(c);
        return st;
    }
    char *src = base->source ? strdup(base->source) : NULL;
    if (base->source && !src) {
        samda_config_unref(c);
        return samda_fail(err, SAMDA_ENOMEM, "applying API sites: out of memory");
    }
    free(c->source);
    c->source = src;
    *next = c;
    return SAMDA_OK;
}

/* Install next if the running snapshot is still expected (a reload may have raced us). Takes
 * ownership of next. Returns false when the snapshot changed meanwhile (next is dropped). */
static bool overlay_install(samdad_api_core *core, samda_config *expected, samda_config *next)
{
    samdad_ctx *ctx = core->ctx;
    /* samdad_config_set has no compare-and-swap: do it under the context's own lock. */
    pthread_mutex_lock(&ctx->cfg_mu);
    bool ok = ctx->cfg == expected;
    if (ok) ctx->cfg = next;
    pthread_mutex_unlock(&ctx->cfg_mu);
    if (!ok) {
        samda_config_unref(next);
        return false;
    }
    samda_config_unref(expected); /* the context's reference */
    samda_config_unref(core->installed);
    core->installed = samda_config_ref(next);
    return true;
}

/* Make the running snapshot = base + API sites. Caller holds core->overlay_mu. cand: a site
 * about to be written (NULL = just the index). With dry_run, only check that the overlay loads. */
static samda_status overlay_apply_locked(samdad_api_core *core, const site_candidate *cand, bool dry_run, samda_error *err)
{
    for (int attempt = 0; attempt < 5; attempt++) {
        samda_config *cur = samdad_config_get(core->ctx);
        if (cur != core->installed) { /* started or reloaded since: cur is the file's configuration */
            samda_config_unref(core->base);
            core->base = samda_config_ref(cur);
        }
        samda_config *next = NULL;
        samda_status st = overlay_build(core, core->base, cand, &next, err);
        if (st != SAMDA_OK || dry_run) {
            samda_config_unref(next);
            samda_config_unref(cur);
            return st;
        }
        if (!next) { /* nothing to lay over: the base itself runs */
            if (cur == core->base) {
                samda_config_unref(core->installed);
                core->installed = cur; /* our reference */
                return SAMDA_OK;
            }
            next = samda_config_ref(core->base);
        }
        bool ok = overlay_install(core, cur, next);
        samda_config_unref(cur);
        if (ok) return SAMDA_OK;
    }
    return samda_fail(err, SAMDA_EBUSY, "applying API sites: the configuration kept changing, try again");
}

static samda_status overlay_apply(samdad_api_core *core, const site_candidate *cand, bool dry_run, samda_error *err)
{
    pthread_mutex_lock(&core->overlay_mu);
    samda_status st = overlay_apply_locked(core, cand, dry_run, err);
    pthread_mutex_unlock(&core->overlay_mu);
    return st;
}

/* Re-applies the API sites after a reload replaced the snapshot. */
static void *overlay_watch(void *arg)
{
    samdad_api_core *core = arg;
    pthread_mutex_lock(&core->watch_mu);
    while (!core->watch_stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += OVERLAY_POLL_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&core->watch_cv, &core->watch_mu, &ts);
        if (core->watch_stop) break;
        pthread_mutex_unlock(&core->watch_mu);
        pthread_mutex_lock(&core->overlay_mu);
        samda_config *cur = samdad_config_get(core->ctx);
        bool changed = cur != core->installed;
        samda_config_unref(cur);
        if (changed) {
            samda_error e;
            if (overlay_apply_locked(core, NULL, false, &e) != SAMDA_OK)
                samda_log(&core->ctx->log, SAMDA_LOG_ERROR, "api", "cannot apply API sites after a reload", "error=%s",
                          samda_log_quote((char[600]){0}, 600, e.message));
            else
                samda_log(&core->ctx->log, SAMDA_LOG_DEBUG, "api", "API sites laid over the new configuration", NULL);
        }
        pthread_mutex_unlock(&core->overlay_mu);
        pthread_mutex_lock(&core->watch_mu);
    }
    pthread_mutex_unlock(&core->watch_mu);
    return NULL;
}

static json_t *json_from_text(const char *s)
{
    json_t *j = s ? json_loads(s, 0, NULL) : NULL;
    return j ? j : json_object();
}

static const char *site_source(const samda_config *base, const samda_site *s)
{
    if (base && samda_config_site(base, s->name)) return "configuration";
    return origin_is_api(s->settings_json) ? "api" : "index";
}

static json_t *site_json(samdad_api_core *core, const samda_site *s, const samda_config *base)
{
    json_t *set = json_from_text(s->settings_json);
    json_object_del(set, "origin");
    const char *src = site_source(base, s);
    json_t *o = json_pack("{s:s, s:s, s:o, s:o, s:I, s:I}", "name", s->name, "source", src, "ae",
                          json_from_text(s->ae_json), "settings", set, "created_ms", (json_int_t)s->created_ms,
                          "updated_ms", (json_int_t)s->updated_ms);
    json_object_set_new(o, "note",
                        json_string(strcmp(src, "configuration") == 0
                                        ? "defined by the configuration file: it wins over the API; change it there and reload"
                                    : strcmp(src, "api") == 0
                                        ? "managed through the API, in effect now; a [site] section of the same name in the configuration file would replace it"
                                        : "left in the index by an earlier configuration: not in effect until defined again (PUT or [site] section)"));
    samda_adapter_row a;
    samda_error e;
    if (samda_store_adapter_get_active(samdad_store(core->ctx), s->name, &a, &e) == SAMDA_OK) {
        json_object_set_new(o, "active_adapter", json_integer(a.version));
        samda_adapter_clear(&a);
    } else {
        json_object_set_new(o, "active_adapter", json_null());
    }
    return o;
}

/* The file's configuration (without API sites), referenced. */
static samda_config *base_config(samdad_api_core *core)
{
    pthread_mutex_lock(&core->overlay_mu);
    samda_config *cur = samdad_config_get(core->ctx);
    samda_config *b;
    if (cur == core->installed && core->base) {
        b = samda_config_ref(core->base);
        samda_config_unref(cur);
    } else {
        b = cur;
    }
    pthread_mutex_unlock(&core->overlay_mu);
    return b;
}

static samda_status sites_list(void *v, json_t **out, samda_error *err)
{
    samdad_api_core *core = CORE(v);
    samda_site *sites = NULL;
    size_t n = 0;
    samda_status st = samda_store_site_list(samdad_store(core->ctx), &sites, &n, err);
    if (st != SAMDA_OK) return st;
    samda_config *base = base_config(core);
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(a, site_json(core, &sites[i], base));
    samda_config_unref(base);
    samda_site_list_free(sites, n);
    *out = a;
    return SAMDA_OK;
}

static samda_status site_get(void *v, const char *name, json_t **out, samda_error *err)
{
    samdad_api_core *core = CORE(v);
    samda_site s;
    samda_status st = samda_store_site_get(samdad_store(core->ctx), name, &s, err);
    if (st == SAMDA_ENOENT) return samda_fail(err, SAMDA_ENOENT, "unknown site %s", name);
    if (st != SAMDA_OK) return st;
    samda_config *base = base_config(core);
    *out = site_json(core, &s, base);
    samda_config_unref(base);
    samda_site_clear(&s);
    return SAMDA_OK;
}

/* A JSON array of at most max strings, each passing ok(); NULL member = absent (empty). */
static bool str_array(const json_t *a, size_t max, bool (*ok)(const char *))
{
    if (!a) return true;
    if (!json_is_array(a) || json_array_size(a) > max) return false;
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v) if (!json_is_string(v) || !ok(json_string_value(v))) return false;
    return true;
}

static bool modality_ok(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 16) return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_')) return false;
    return true;
}

static bool label_ok(const char *s) { return samda_store_name_is_valid(s) && strlen(s) <= 63; }

static bool int_member(const json_t *o, const char *key, int64_t min, int64_t max, int64_t def, int64_t *out)
{
    const json_t *v = json_object_get(o, key);
    if (!v) {
        *out = def;
        return true;
    }
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) return false;
    *out = json_integer_value(v);
    return true;
}

/* Validate a PUT body and build the stored JSON (ae, settings with origin "api"), defaults from
 * the configuration table's [site] defaults. */
static samda_status site_body(samdad_api_core *core, const char *name, const json_t *body, const samda_config *running,
                              char **ae_s, char **set_s, samda_error *err)
{
    static const char *const top[] = {"ae", "settings", "name", "source", "note", "created_ms", "updated_ms", "active_adapter", NULL};
    static const char *const ae_keys[] = {"called_ae", "calling_ae", NULL};
    static const char *const set_keys[] = {"modalities", "min_slices", "series_idle_ms", "study_idle_ms", "max_wait_ms",
                                           "tta", "labels", "destinations", NULL};
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)body, key, v) {
        bool known = false;
        for (const char *const *k = top; *k; k++) known |= strcmp(*k, key) == 0;
        if (!known) return samda_fail(err, SAMDA_EINVAL, "unknown body member %.64s (known: ae, settings)", key);
    }
    const json_t *nm = json_object_get(body, "name");
    if (nm && (!json_is_string(nm) || strcmp(json_string_value(nm), name) != 0))
        return samda_fail(err, SAMDA_EINVAL, "body member name must match the site in the path (%s)", name);
    const json_t *ae = json_object_get(body, "ae"), *set = json_object_get(body, "settings");
    if (ae && !json_is_object(ae)) return samda_fail(err, SAMDA_EINVAL, "body member ae must be an object");
    if (set && !json_is_object(set)) return samda_fail(err, SAMDA_EINVAL, "body member settings must be an object");
    json_object_foreach((json_t *)ae, key, v) {
        bool known = false;
        for (const char *const *k = ae_keys; *k; k++) known |= strcmp(*k, key) == 0;
        if (!known) return samda_fail(err, SAMDA_EINVAL, "unknown member ae.%.64s (known: called_ae, calling_ae)", key);
    }
    json_object_foreach((json_t *)set, key, v) {
        bool known = false;
        for (const char *const *k = set_keys; *k; k++) known |= strcmp(*k, key) == 0;
        if (!known)
            return samda_fail(err, SAMDA_EINVAL, "unknown member settings.%.64s (known: modalities, min_slices, series_idle_ms, "
                                                 "study_idle_ms, max_wait_ms, tta, labels, destinations)", key);
    }
    const json_t *called = json_object_get(ae, "called_ae"), *calling = json_object_get(ae, "calling_ae");
    if (!str_array(called, 16, samda_ae_title_is_valid))
        return samda_fail(err, SAMDA_EINVAL, "ae.called_ae must be an array of at most 16 AE titles (1 to 16 characters, no backslash)");
    if (!str_array(calling, 16, samda_ae_title_is_valid))
        return samda_fail(err, SAMDA_EINVAL, "ae.calling_ae must be an array of at most 16 AE titles (1 to 16 characters, no backslash)");
    /* An AE title that already selects another site would make the mapping ambiguous. */
    for (size_t i = 0; i < running->n_sites; i++) {
        const samda_site_cfg *o = &running->sites[i];
        if (strcmp(o->name, name) == 0) continue;
        size_t k;
        json_t *t;
        json_array_foreach(called, k, t) for (size_t j = 0; j < o->called_ae.n; j++) if (strcmp(o->called_ae.v[j], json_string_value(t)) == 0)
            return samda_fail(err, SAMDA_ECANCELED, "called AE title %s already selects site %s", json_string_value(t), o->name);
        json_array_foreach(calling, k, t) for (size_t j = 0; j < o->calling_ae.n; j++) if (strcmp(o->calling_ae.v[j], json_string_value(t)) == 0)
            return samda_fail(err, SAMDA_ECANCELED, "calling AE title %s already selects site %s", json_string_value(t), o->name);
    }
    const samda_site_cfg *def = samda_config_site(core->defaults, "default");
    const json_t *mods = json_object_get(set, "modalities");
    if (mods && (!str_array(mods, 16, modality_ok) || json_array_size(mods) == 0))
        return samda_fail(err, SAMDA_EINVAL, "settings.modalities must be an array of 1 to 16 modality codes (A-Z, 0-9, _)");
    size_t mi;
    const json_t *mv;
    json_array_foreach(mods, mi, mv) if (!samda_modality_is_segmentable(json_string_value(mv)))
        return samda_fail(err, SAMDA_EINVAL, "settings.modalities: %s is not a modality samda segments (CT, MR)",
                          json_string_value(mv));
    int64_t min_slices, series_idle, study_idle, max_wait;
    if (!int_member(set, "min_slices", 1, 100000, def->min_slices, &min_slices))
        return samda_fail(err, SAMDA_EINVAL, "settings.min_slices must be an integer from 1 to 100000");
    if (!int_member(set, "series_idle_ms", 100, 86400000, def->series_idle_ms, &series_idle))
        return samda_fail(err, SAMDA_EINVAL, "settings.series_idle_ms must be an integer from 100 to 86400000");
    if (!int_member(set, "study_idle_ms", 100, 86400000, def->study_idle_ms, &study_idle))
        return samda_fail(err, SAMDA_EINVAL, "settings.study_idle_ms must be an integer from 100 to 86400000");
    if (!int_member(set, "max_wait_ms", 1000, 604800000, def->max_wait_ms, &max_wait))
        return samda_fail(err, SAMDA_EINVAL, "settings.max_wait_ms must be an integer from 1000 to 604800000");
    if (series_idle > max_wait) return samda_fail(err, SAMDA_EINVAL, "settings.series_idle_ms must not exceed settings.max_wait_ms");
    const json_t *tta = json_object_get(set, "tta");
    const char *tta_s = def->tta == SAMDA_CFG_TTA_EPISODIC ? "episodic" : def->tta == SAMDA_CFG_TTA_CONTINUAL ? "continual" : "off";
    if (tta) {
        tta_s = json_string_value(tta);
        if (!tta_s || (strcmp(tta_s, "off") && strcmp(tta_s, "episodic") && strcmp(tta_s, "continual")))
            return samda_fail(err, SAMDA_EINVAL, "settings.tta must be one of \"off\", \"episodic\", \"continual\"");
    }
    const json_t *labels = json_object_get(set, "labels");
    if (!str_array(labels, 64, label_ok))
        return samda_fail(err, SAMDA_EINVAL, "settings.labels must be an array of at most 64 names ([A-Za-z0-9._-], 1 to 63)");
    const json_t *dests = json_object_get(set, "destinations");
    if (!str_array(dests, 16, label_ok))
        return samda_fail(err, SAMDA_EINVAL, "settings.destinations must be an array of at most 16 destination names");
    size_t i;
    json_array_foreach(dests, i, v) {
        samda_destination d;
        samda_error e;
        const char *dn = json_string_value(v);
        if (samda_config_dest(running, dn)) continue;
        if (samda_store_destination_get(samdad_store(core->ctx), dn, &d, &e) != SAMDA_OK)
            return samda_fail(err, SAMDA_EINVAL, "settings.destinations: unknown destination %s", dn);
        samda_destination_clear(&d);
    }
    json_t *mods_out = json_array();
    if (mods) json_array_extend(mods_out, (json_t *)mods);
    else for (size_t k = 0; k < def->modalities.n; k++) json_array_append_new(mods_out, json_string(def->modalities.v[k]));
    json_t *aej = json_pack("{s:o, s:o}", "called_ae", called ? json_deep_copy(called) : json_array(), "calling_ae",
                            calling ? json_deep_copy(calling) : json_array());
    json_t *setj = json_pack("{s:s, s:o, s:I, s:I, s:I, s:I, s:s, s:o, s:o}", "origin", SITE_ORIGIN_API, "modalities", mods_out,
                             "min_slices", (json_int_t)min_slices, "series_idle_ms", (json_int_t)series_idle,
                             "study_idle_ms", (json_int_t)study_idle, "max_wait_ms", (json_int_t)max_wait, "tta", tta_s,
                             "labels", labels ? json_deep_copy(labels) : json_array(), "destinations",
                             dests ? json_deep_copy(dests) : json_array());
    *ae_s = aej ? json_dumps(aej, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    *set_s = setj ? json_dumps(setj, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(aej);
    json_decref(setj);
    if (!*ae_s || !*set_s) {
        free(*ae_s);
        free(*set_s);
        return samda_fail(err, SAMDA_ENOMEM, "site %s: out of memory", name);
    }
    return SAMDA_OK;
}

static samda_status site_put(void *v, const char *name, const json_t *body, int64_t token_id, json_t **out, bool *created,
                             samda_error *err)
{
    samdad_api_core *core = CORE(v);
    samdad_ctx *ctx = core->ctx;
    samda_store *store = samdad_store(ctx);
    if (!samda_store_name_is_valid(name)) return samda_fail(err, SAMDA_EINVAL, "site name %s: must not start with '.'", name);
    pthread_mutex_lock(&core->overlay_mu); /* one site change at a time, against one base */
    samda_config *running = samdad_config_get(ctx);
    if (running != core->installed) { /* reloaded since the last overlay: running is the file's configuration */
        samda_config_unref(core->base);
        core->base = samda_config_ref(running);
    }
    samda_status st;
    char *ae_s = NULL, *set_s = NULL;
    if (samda_config_site(core->base, name)) {
        st = samda_fail(err, SAMDA_ECANCELED, "site %s is defined by the configuration file ([site %s]), which takes precedence: "
                                              "change it there and reload", name, name);
        goto out;
    }
    if ((st = site_body(core, name, body, running, &ae_s, &set_s, err)) != SAMDA_OK) goto out;
    site_candidate cand = {name, ae_s, set_s};
    if ((st = overlay_apply_locked(core, &cand, true, err)) != SAMDA_OK) goto out; /* refused before anything is written */
    *created = false;
    st = samda_store_site_update(store, name, ae_s, set_s, err);
    if (st == SAMDA_ENOENT) {
        st = samda_store_site_add(store, name, ae_s, set_s, NULL, err);
        *created = st == SAMDA_OK;
    }
    if (st != SAMDA_OK) goto out;
    if ((st = overlay_apply_locked(core, NULL, false, err)) != SAMDA_OK) goto out;
    samda_log(&ctx->log, SAMDA_LOG_INFO, "api", *created ? "site created" : "site updated", "site=%s token=%lld", name,
              (long long)token_id);
out:
    samda_config_unref(running);
    pthread_mutex_unlock(&core->overlay_mu);
    free(ae_s);
    free(set_s);
    if (st != SAMDA_OK) return st;
    return site_get(v, name, out, err);
}

/* ---------- administration: destinations ---------- */

static json_t *dest_json_store(const samda_destination *d)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:i, s:b, s:I}", "name", d->name, "source", "api", "ae_title", d->ae_title,
                          "host", d->host, "port", d->port, "tls", 0 /* API destinations: plain TCP */, "created_ms",
                          (json_int_t)d->created_ms);
    json_object_set_new(o, "settings", json_from_text(d->settings_json));
    return o;
}

static json_t *dest_json_cfg(const samda_dest_cfg *d)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:I, s:b, s:o}", "name", d->name, "source", "configuration", "ae_title",
                     d->ae_title, "host", d->host, "port", (json_int_t)d->port, "tls", d->tls, "settings", json_object());
}

static samda_status destinations_list(void *v, json_t **out, samda_error *err)
{
    samdad_api_core *core = CORE(v);
    samda_destination *d = NULL;
    size_t n = 0;
    samda_status st = samda_store_destination_list(samdad_store(core->ctx), &d, &n, err);
    if (st != SAMDA_OK) return st;
    samda_config *cfg = samdad_config_get(core->ctx);
    json_t *a = json_array();
    for (size_t i = 0; i < cfg->n_dests; i++) json_array_append_new(a, dest_json_cfg(&cfg->dests[i]));
    for (size_t i = 0; i < n; i++)
        if (!samda_config_dest(cfg, d[i].name)) json_array_append_new(a, dest_json_store(&d[i]));
    samda_config_unref(cfg);
    samda_destination_list_free(d, n);
    *out = a;
    return SAMDA_OK;
}

static samda_status destination_get(void *v, const char *name, json_t **out, samda_error *err)
{
    samdad_api_core *core = CORE(v);
    samda_config *cfg = samdad_config_get(core->ctx);
    const samda_dest_cfg *c = samda_config_dest(cfg, name);
    if (c) {
        *out = dest_json_cfg(c);
        samda_config_unref(cfg);
        return SAMDA_OK;
    }
    samda_config_unref(cfg);
    samda_destination d;
    samda_status st = samda_store_destination_get(samdad_store(core->ctx), name, &d, err);
    if (st == SAMDA_ENOENT) return samda_fail(err, SAMDA_ENOENT, "unknown destination %s", name);
    if (st != SAMDA_OK) return st;
    *out = dest_json_store(&d);
    samda_destination_clear(&d);
    return SAMDA_OK;
}

static bool host_ok(const char *h)
{
    size_t n = strlen(h);
    return n >= 1 && n <= 253 && strspn(h, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") == n && h[0] != '-' &&
           h[0] != '.';
}

static samda_status destination_add(void *v, const json_t *body, int64_t token_id, json_t **out, samda_error *err)
{
    samdad_api_core *core = CORE(v);
    const char *key;
    json_t *m;
    json_object_foreach((json_t *)body, key, m) {
        if (strcmp(key, "name") && strcmp(key, "ae_title") && strcmp(key, "host") && strcmp(key, "port") && strcmp(key, "settings"))
            return samda_fail(err, SAMDA_EINVAL, "unknown body member %.64s (known: name, ae_title, host, port, settings)", key);
    }
    const char *name = json_string_value(json_object_get(body, "name"));
    const char *ae = json_string_value(json_object_get(body, "ae_title"));
    const char *host = json_string_value(json_object_get(body, "host"));
    const json_t *port = json_object_get(body, "port"), *settings = json_object_get(body, "settings");
    if (!name || !samda_store_name_is_valid(name) || strlen(name) > 63)
        return samda_fail(err, SAMDA_EINVAL, "body member name must be a name ([A-Za-z0-9._-], 1 to 63, not starting with '.')");
    if (!ae || !samda_ae_title_is_valid(ae))
        return samda_fail(err, SAMDA_EINVAL, "body member ae_title must be an AE title (1 to 16 characters, no backslash)");
    if (!host || !host_ok(host))
        return samda_fail(err, SAMDA_EINVAL, "body member host must be a host name or IPv4 address (letters, digits, '.', '-')");
    if (!json_is_integer(port) || json_integer_value(port) < 1 || json_integer_value(port) > 65535)
        return samda_fail(err, SAMDA_EINVAL, "body member port must be an integer from 1 to 65535");
    if (settings && !json_is_object(settings)) return samda_fail(err, SAMDA_EINVAL, "body member settings must be an object");
    if (json_object_get(settings, "tls"))
        return samda_fail(err, SAMDA_EINVAL, "body member settings.tls: DICOM TLS destinations are defined in the "
                          "configuration file ([destination NAME] tls = true); destinations added here use plain TCP");
    samda_config *cfg = samdad_config_get(core->ctx);
    bool in_cfg = samda_config_dest(cfg, name) != NULL;
    samda_config_unref(cfg);
    if (in_cfg)
        return samda_fail(err, SAMDA_EEXIST, "destination %s is defined by the configuration file ([destination %s])", name, name);
    char *set_s = settings ? json_dumps(settings, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    samda_status st = samda_store_destination_add(samdad_store(core->ctx), name, ae, host, (int)json_integer_value(port), set_s,
                                                  NULL, err);
    free(set_s);
    if (st == SAMDA_EEXIST) return samda_fail(err, SAMDA_EEXIST, "destination %s already exists", name);
    if (st != SAMDA_OK) return st;
    samda_log(&core->ctx->log, SAMDA_LOG_INFO, "api", "destination added", "destination=%s token=%lld", name, (long long)token_id);
    return destination_get(v, name, out, err);
}

static samda_status destination_delete(void *v, const char *name, int64_t token_id, samda_error *err)
{
    samdad_api_core *core = CORE(v);
    samda_config *cfg = samdad_config_get(core->ctx);
    bool in_cfg = samda_config_dest(cfg, name) != NULL;
    samda_config_unref(cfg);
    if (in_cfg)
        return samda_fail(err, SAMDA_ECANCELED, "destination %s is defined by the configuration file: remove it there and reload", name);
    samda_status st = samda_store_destination_delete(samdad_store(core->ctx), name, err);
    if (st == SAMDA_ENOENT) return samda_fail(err, SAMDA_ENOENT, "unknown destination %s", name);
    if (st != SAMDA_OK) return st;
    samda_log(&core->ctx->log, SAMDA_LOG_INFO, "api", "destination deleted", "destination=%s token=%lld", name, (long long)token_id);
    return SAMDA_OK;
}

#define ECHO_TIMEOUT_S 10

static samda_status destination_echo(void *v, const char *name, int64_t token_id, json_t **out, samda_error *err)
{
    samdad_api_core *core = CORE(v);
    json_t *d = NULL;
    samda_status st = destination_get(v, name, &d, err);
    if (st != SAMDA_OK) return st;
    samda_config *cfg = samdad_config_get(core->ctx);
    samda_dicom_tls tls; /* a [destination] section's TLS, as for its exports; API destinations: plain TCP */
    samda_dicom_peer peer = {cfg->dicom_ae_title, json_string_value(json_object_get(d, "ae_title")),
                             json_string_value(json_object_get(d, "host")), (unsigned)json_integer_value(json_object_get(d, "port")),
                             samdad_dest_tls(samda_config_dest(cfg, name), &tls)};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    samda_error e = {SAMDA_OK, ""};
    samda_status es = samda_dicom_echo(&peer, ECHO_TIMEOUT_S, &e);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    json_t *o = json_pack("{s:s, s:b, s:f, s:s, s:s, s:s, s:s, s:i, s:b}", "destination", name, "ok", es == SAMDA_OK, "ms", ms,
                          "status", samda_status_name(es), "calling_ae", peer.calling_ae, "called_ae", peer.called_ae, "host",
                          peer.host, "port", (int)peer.port, "tls", peer.tls != NULL);
    if (es != SAMDA_OK) json_object_set_new(o, "error", json_string(e.message[0] ? e.message : samda_status_str(es)));
    samda_log(&core->ctx->log, es == SAMDA_OK ? SAMDA_LOG_INFO : SAMDA_LOG_WARN, "api", "C-ECHO", "destination=%s status=%s ms=%.1f token=%lld",
              name, samda_status_name(es), ms, (long long)token_id);
    samda_config_unref(cfg);
    json_decref(d);
    *out = o;
    return SAMDA_OK;
}

/* ---------- administration: the export queue (daemon/export_admin.c, shared with samda exports) ---------- */

static samda_status exports_list(void *v, const samda_api_export_filter *f, json_t **out, samda_error *err)
{
    samdad_export_query q = {f->state, f->destination, f->result_id, f->limit, f->offset};
    return samdad_exports_list(samdad_store(CORE(v)->ctx), &q, out, err);
}

static samda_status export_retry(void *v, int64_t id, int64_t token_id, json_t **out, samda_error *err)
{
    samdad_ctx *ctx = CORE(v)->ctx;
    char actor[48];
    if (token_id >= 0) snprintf(actor, sizeof actor, "token:%lld", (long long)token_id);
    else snprintf(actor, sizeof actor, "anonymous");
    samda_status st = samdad_export_retry(samdad_store(ctx), id, actor, out, err);
    if (st == SAMDA_OK)
        samda_log(&ctx->log, SAMDA_LOG_INFO, "api", "export retried by hand", "item=%lld token=%lld", (long long)id,
                  (long long)token_id);
    return st;
}

/* ---------- administration: adapters ---------- */

/* An adapter's labels into names (and, for label objects, codes). samda's own adapters list label
 * objects ({"name": "liver", "value": 1, "category": {...}, "type": {"scheme": "SCT", "code": ...},
 * "rgb", "window"}); other tools may give a JSON array of names or a comma list. labels: the
 * metadata's text, or the JSON array a version recorded. codes gets {name, value, category, type}
 * of each label object. */
static void labels_collect(const json_t *labels, json_t *names, json_t *codes)
{
    const char *s = json_string_value(labels);
    json_t *j = s && s[0] == '[' ? json_loads(s, 0, NULL) : json_is_array(labels) ? json_incref((json_t *)labels) : NULL;
    if (json_is_array(j)) {
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v) {
            const char *name = json_is_string(v) ? json_string_value(v) : json_string_value(json_object_get(v, "name"));
            if (!name || !label_ok(name)) continue;
            json_array_append_new(names, json_string(name));
            if (!json_is_object(v)) continue;
            json_t *c = json_pack("{s:s}", "name", name);
            static const char *const keep[] = {"value", "category", "type"};
            for (size_t k = 0; c && k < sizeof keep / sizeof *keep; k++)
                if (json_object_get(v, keep[k])) json_object_set(c, keep[k], json_object_get(v, keep[k]));
            json_array_append_new(codes, c);
        }
    } else if (s) {
        char buf[4096];
        snprintf(buf, sizeof buf, "%s", s);
        char *save = NULL;
        for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            while (*t == ' ') t++;
            size_t n = strlen(t);
            while (n && t[n - 1] == ' ') t[--n] = '\0';
            if (label_ok(t)) json_array_append_new(names, json_string(t));
        }
    }
    json_decref(j);
}

static json_t *adapter_json(const samda_adapter_row *a)
{
    json_t *meta = json_from_text(a->metadata_json);
    json_t *metrics = json_object_get(meta, "metrics");
    json_t *st = json_object_get(meta, "safetensors");
    /* The file's own metadata when it was uploaded (versions recorded before label objects were
     * understood list theirs too), else what the worker recorded for a version it made. */
    json_t *labels = json_array(), *codes = json_array();
    const json_t *raw = json_object_get(st, "labels");
    labels_collect(raw ? raw : json_object_get(meta, "labels"), labels, codes);
    json_t *o = json_pack("{s:s, s:i, s:o, s:b, s:s, s:I, s:s, s:o, s:o, s:o, s:I}", "site", a->site, "version", a->version,
                          "parent_version", a->parent_version ? json_integer(a->parent_version) : json_null(), "active",
                          a->active, "sha256", a->object.sha256, "size", (json_int_t)a->object.size, "base_fingerprint",
                          a->base_fingerprint, "labels", labels, "metrics",
                          json_is_object(metrics) ? json_incref(metrics) : json_null(), "metadata",
                          json_is_object(st) ? json_incref(st) : json_object(), "created_ms", (json_int_t)a->created_ms);
    json_object_set_new(o, "activated_ms", a->activated_ms ? json_integer(a->activated_ms) : json_null());
    if (json_array_size(codes)) json_object_set_new(o, "label_codes", codes);
    else json_decref(codes);
    json_decref(meta);
    return o;
}

static samda_status require_site(samda_store *store, const char *site, samda_error *err)
{
    samda_site s;
    samda_status st = samda_store_site_get(store, site, &s, err);
    if (st == SAMDA_ENOENT) return samda_fail(err, SAMDA_ENOENT, "unknown site %s", site);
    if (st == SAMDA_OK) samda_site_clear(&s);
    return st;
}

static samda_status adapters_list(void *v, const char *site, json_t **out, samda_error *err)
{
    samda_store *store = samdad_store(CORE(v)->ctx);
    samda_status st = require_site(store, site, err);
    if (st != SAMDA_OK) return st;
    samda_adapter_row *a = NULL;
    size_t n = 0;
    if ((st = samda_store_adapter_list(store, site, &a, &n, err)) != SAMDA_OK) return st;
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(arr, adapter_json(&a[i]));
    samda_adapter_list_free(a, n);
    *out = arr;
    return SAMDA_OK;
}

static samda_status adapter_get_json(samda_store *store, const char *site, int version, json_t **out, samda_error *err)
{
    samda_adapter_row a;
    samda_status st = samda_store_adapter_get(store, site, version, &a, err);
    if (st == SAMDA_ENOENT) return samda_fail(err, SAMDA_ENOENT, "unknown adapter version %d of site %s", version, site);
    if (st != SAMDA_OK) return st;
    *out = adapter_json(&a);
    samda_adapter_clear(&a);
    return SAMDA_OK;
}

/* The loaded model's fingerprint, which an adapter's base_fingerprint must equal; NULL while no model
 * is loaded (nothing to compare with: the worker checks the sites' active adapters when it loads). */
static const char *loaded_fingerprint(samdad_ctx *ctx)
{
#ifdef SAMDA_HAVE_MODEL
    return samdad_worker_fingerprint(samdad_worker_of(ctx));
#else
    (void)ctx;
    return NULL;
#endif
}

/* The label names an upload records (adapter_json reads the file's metadata again). */
static json_t *upload_labels(const json_t *labels)
{
    json_t *names = json_array(), *codes = json_array();
    labels_collect(labels, names, codes);
    json_decref(codes);
    return names;
}

static samda_status adapter_upload(void *v, const samda_api_upload *up, json_t **out, samda_error *err)
{
    samdad_api_core *core = CORE(v);
    samda_store *store = samdad_store(core->ctx);
    samda_status st = require_site(store, up->site, err);
    if (st != SAMDA_OK) return st;
    if (up->parent_version) {
        samda_adapter_row p;
        if ((st = samda_store_adapter_get(store, up->site, up->parent_version, &p, err)) == SAMDA_ENOENT)
            return samda_fail(err, SAMDA_EINVAL, "parent version %d of site %s does not exist", up->parent_version, up->site);
        if (st != SAMDA_OK) return st;
        samda_adapter_clear(&p);
    }
    samda_tmp_file tmp;
    tmp.fd = open(up->path, O_RDWR | O_CLOEXEC);
    if (tmp.fd < 0) return samda_fail(err, SAMDA_EIO, "opening the uploaded adapter: %s", strerror(errno));
    snprintf(tmp.path, sizeof tmp.path, "%s", up->path);
    samda_safetensors_info info;
    if ((st = samda_safetensors_check_fd(tmp.fd, NULL, &info, err)) != SAMDA_OK) {
        close(tmp.fd);
        return st;
    }
    const char *fp = json_string_value(json_object_get(info.metadata, "base_fingerprint"));
    if (!fp) fp = json_string_value(json_object_get(info.metadata, "base_model_fingerprint"));
    if (fp && strlen(fp) >= SAMDA_KEY_SIZE) {
        close(tmp.fd);
        samda_safetensors_info_clear(&info);
        return samda_fail(err, SAMDA_EINVAL, "safetensors metadata base_fingerprint is longer than %d characters", SAMDA_KEY_SIZE - 1);
    }
    const char *model_fp = loaded_fingerprint(core->ctx);
    if (model_fp && strcmp(fp ? fp : "", model_fp) != 0) {
        samda_fail(err, SAMDA_ECONFLICT, "the adapter was made for base model %s, but the loaded model is %s: upload an adapter "
                   "trained on this model", fp ? fp : "(none: its metadata has no base_fingerprint)", model_fp);
        close(tmp.fd);
        samda_safetensors_info_clear(&info);
        return SAMDA_ECONFLICT;
    }
    json_t *metrics = NULL;
    const char *ms = json_string_value(json_object_get(info.metadata, "metrics"));
    if (ms) metrics = json_loads(ms, 0, NULL);
    json_t *meta = json_pack("{s:o, s:o, s:o, s:I, s:I, s:I}", "safetensors", info.metadata ? json_incref(info.metadata) : json_object(),
                             "labels", upload_labels(json_object_get(info.metadata, "labels")), "metrics",
                             json_is_object(metrics) ? json_incref(metrics) : json_null(), "tensors", (json_int_t)info.n_tensors,
                             "header_bytes", (json_int_t)info.header_bytes, "uploaded_by", (json_int_t)up->token_id);
    json_decref(metrics);
    char *meta_s = meta ? json_dumps(meta, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(meta);
    char fpbuf[SAMDA_KEY_SIZE];
    snprintf(fpbuf, sizeof fpbuf, "%s", fp ? fp : "");
    samda_safetensors_info_clear(&info);
    if (!meta_s || strlen(meta_s) > SAMDA_JSON_MAX) {
        close(tmp.fd);
        free(meta_s);
        return samda_fail(err, SAMDA_ETOOBIG, "adapter metadata too large");
    }
    int64_t site_id;
    int version = 0;
    if ((st = samda_store_site_id(store, up->site, &site_id, err)) != SAMDA_OK ||
        (st = samda_store_adapter_next_version(store, up->site, &version, err)) != SAMDA_OK) {
        close(tmp.fd);
        free(meta_s);
        return st;
    }
    char a[24], b[24];
    snprintf(a, sizeof a, "%lld", (long long)site_id);
    snprintf(b, sizeof b, "%d", version);
    samda_object_info obj;
    st = samda_store_object_commit(store, &tmp, SAMDA_OBJECT_ADAPTER, a, b, NULL, &obj, err); /* consumes tmp */
    if (st == SAMDA_EEXIST) st = samda_fail(err, SAMDA_EBUSY, "adapter version %d of site %s was taken meanwhile: upload again", version, up->site);
    if (st == SAMDA_OK) {
        st = samda_store_adapter_add(store, up->site, version, up->parent_version, &obj, fpbuf, meta_s, err);
        /* on failure the committed file is unclaimed and goes at the next open */
        if (st == SAMDA_EEXIST) st = samda_fail(err, SAMDA_EBUSY, "adapter version %d of site %s was taken meanwhile: upload again", version, up->site);
    }
    free(meta_s);
    if (st != SAMDA_OK) return st;
    samda_log(&core->ctx->log, SAMDA_LOG_INFO, "api", "adapter uploaded", "site=%s version=%d parent=%d bytes=%llu token=%lld", up->site,
              version, up->parent_version, (unsigned long long)obj.size, (long long)up->token_id);
    return adapter_get_json(store, up->site, version, out, err);
}

static samda_status adapter_activate(void *v, const char *site, int version, int64_t token_id, json_t **out, samda_error *err)
{
    samdad_api_core *core = CORE(v);
    samda_store *store = samdad_store(core->ctx);
    samda_status st = require_site(store, site, err);
    if (st != SAMDA_OK) return st;
    const char *model_fp = loaded_fingerprint(core->ctx);
    if (model_fp) {
        samda_adapter_row row;
        st = samda_store_adapter_get(store, site, version, &row, err);
        if (st == SAMDA_ENOENT) return samda_fail(err, SAMDA_ENOENT, "unknown adapter version %d of site %s", version, site);
        if (st != SAMDA_OK) return st;
        if (strcmp(row.base_fingerprint, model_fp) != 0)
            st = samda_fail(err, SAMDA_ECONFLICT, "adapter version %d of site %s was made for base model %s, but the loaded "
                            "model is %s: it cannot be activated", version, site,
                            row.base_fingerprint[0] ? row.base_fingerprint : "(none)", model_fp);
        samda_adapter_clear(&row);
        if (st != SAMDA_OK) return st;
    }
    st = samda_store_adapter_activate(store, site, version, err);
    if (st == SAMDA_ENOENT) return samda_fail(err, SAMDA_ENOENT, "unknown adapter version %d of site %s", version, site);
    if (st != SAMDA_OK) return st;
    samda_log(&core->ctx->log, SAMDA_LOG_INFO, "api", "adapter activated", "site=%s version=%d token=%lld", site, version,
              (long long)token_id);
    return adapter_get_json(store, site, version, out, err);
}

static samda_status adapter_rollback(void *v, const char *site, int64_t token_id, json_t **out, samda_error *err)
{
    samdad_api_core *core = CORE(v);
    samda_store *store = samdad_store(core->ctx);
    samda_status st = require_site(store, site, err);
    if (st != SAMDA_OK) return st;
    int version = 0;
    st = samda_store_adapter_rollback(store, site, &version, err);
    if (st == SAMDA_ENOENT)
        return samda_fail(err, SAMDA_ENOENT, "site %s: nothing to roll back to (no active adapter, or no earlier version)", site);
    if (st != SAMDA_OK) return st;
    samda_log(&core->ctx->log, SAMDA_LOG_INFO, "api", "adapter rolled back", "site=%s version=%d token=%lld", site, version,
              (long long)token_id);
    return adapter_get_json(store, site, version, out, err);
}

#ifdef SAMDA_HAVE_MODEL
/* ---- interactive sessions: the slice is read here (an HTTP handler thread), encoded and decoded in
 * the model worker ---------------------------------------------------------------------------------- */

#define SESSION_WAIT_MS 10000

static samda_status session_create(void *v, const json_t *body, int64_t token_id, json_t **out, samda_error *err)
{
    samdad_api_core *core = CORE(v);
    samda_store *store = samdad_store(core->ctx);
    const char *series = json_string_value(json_object_get(body, "series"));
    const char *instance = json_string_value(json_object_get(body, "instance"));
    const json_t *win = json_object_get(body, "window");
    const char *key;
    const json_t *val;
    json_object_foreach((json_t *)body, key, val) {
        if (strcmp(key, "series") && strcmp(key, "slice") && strcmp(key, "instance") && strcmp(key, "frame") &&
            strcmp(key, "window"))
            return samda_fail(err, SAMDA_EINVAL, "body.%s: unknown member (allowed: series, slice, instance, frame, window)", key);
    }
    if (!!series == !!instance) return samda_fail(err, SAMDA_EINVAL, "body: give either \"series\" (with \"slice\") or \"instance\" (with \"frame\")");
    const char *uid = series ? series : instance;
    if (!samda_uid_is_valid(uid)) return samda_fail(err, SAMDA_EBADUID, "body.%s: not a valid UID", series ? "series" : "instance");
    json_int_t index = json_integer_value(json_object_get(body, series ? "slice" : "frame"));
    if (!series && !json_object_get(body, "frame")) index = 1;
    if (json_object_get(body, series ? "slice" : "frame") && !json_is_integer(json_object_get(body, series ? "slice" : "frame")))
        return samda_fail(err, SAMDA_EINVAL, "body.%s: an integer", series ? "slice" : "frame");
    double level = 0, width = 0;
    if (win) {
        if (!json_is_number(json_object_get(win, "level")) || !json_is_number(json_object_get(win, "width")) ||
            json_number_value(json_object_get(win, "width")) <= 0)
            return samda_fail(err, SAMDA_EINVAL, "body.window: {\"level\": number, \"width\": number > 0}");
        level = json_number_value(json_object_get(win, "level"));
        width = json_number_value(json_object_get(win, "width"));
    }
    /* the files */
    char **paths = NULL;
    size_t n = 0;
    char site[SAMDA_NAME_SIZE] = "";
    samda_status st;
    samda_series_info si;
    if (series) {
        st = samda_store_series_get(store, series, &si, err);
        if (st == SAMDA_ENOENT) return samda_fail(err, SAMDA_ENOENT, "unknown series %s", series);
        if (st != SAMDA_OK) return st;
        if ((st = samda_store_series_paths(store, series, &paths, &n, err)) != SAMDA_OK) return st;
    } else {
        samda_instance_row row;
        st = samda_store_instance_get(store, instance, &row, err);
        if (st == SAMDA_ENOENT) return samda_fail(err, SAMDA_ENOENT, "unknown instance %s", instance);
        if (st != SAMDA_OK) return st;
        if (samda_store_series_get(store, row.meta.series_uid, &si, err) != SAMDA_OK) si.site[0] = 0;
        paths = calloc(1, sizeof *paths);
        if (paths) paths[0] = malloc(PATH_MAX);
        n = paths ? 1 : 0;
        st = paths && paths[0] ? samda_store_object_path(store, row.object.relpath, paths[0], PATH_MAX, err)
                               : samda_fail(err, SAMDA_ENOMEM, "out of memory");
    }
    snprintf(site, sizeof site, "%s", si.site);
    samda_volume *vol = NULL;
    if (st == SAMDA_OK) st = samda_dicom_volume_load((const char *const *)paths, n, NULL, &vol, err);
    samda_store_paths_free(paths, n);
    if (st != SAMDA_OK) return st;
    const samda_volume_info *vi = samda_volume_get_info(vol);
    size_t s_index = series ? (size_t)index : (size_t)(index - 1);
    if (index < (series ? 0 : 1) || s_index >= vi->n_slices) {
        size_t ns = vi->n_slices;
        samda_volume_free(vol);
        return samda_fail(err, SAMDA_EINVAL, "body.%s: %lld is out of range (%s%zu)", series ? "slice" : "frame",
                          (long long)index, series ? "0.." : "1..", series ? ns - 1 : ns);
    }
    const size_t plane = (size_t)vi->rows * vi->cols;
    float *img = malloc(plane * sizeof *img);
    if (!img) {
        samda_volume_free(vol);
        return samda_fail(err, SAMDA_ENOMEM, "out of memory");
    }
    samda_adapter_label lab;
    memset(&lab, 0, sizeof lab);
    snprintf(lab.name, sizeof lab.name, "session");
    if (width > 0) {
        lab.window_kind = SAMDA_WINDOW_CT;
        lab.window_a = level;
        lab.window_b = width;
    } else if (!strcmp(vi->modality, "CT")) {
        lab.window_kind = SAMDA_WINDOW_CT;
        lab.window_a = 40;
        lab.window_b = 400;
    } else {
        lab.window_kind = SAMDA_WINDOW_MR;
        lab.window_a = 1;
        lab.window_b = 99;
    }
    st = samda_adapter_window(&lab, samda_volume_voxels(vol) + s_index * plane, plane, img, err);
    int r = (int)vi->rows, c = (int)vi->cols;
    samda_volume_free(vol);
    char id[SAMDAD_SESSION_ID_SIZE] = "";
    if (st == SAMDA_OK) st = samdad_worker_session_create(samdad_worker_of(core->ctx), site, img, r, c, SESSION_WAIT_MS, id, err);
    free(img);
    if (st != SAMDA_OK) return st;
    samda_log(&core->ctx->log, SAMDA_LOG_INFO, "api", "interactive session created", "token=%lld", (long long)token_id);
    *out = json_pack("{s:s, s:i, s:i, s:s, s:I}", "id", id, "rows", r, "columns", c, "site", site, "index", (json_int_t)index);
    return *out ? SAMDA_OK : samda_fail(err, SAMDA_ENOMEM, "out of memory");
}

static bool num2(const json_t *a, size_t i, float *x) { return json_is_number(json_array_get(a, i)) && (*x = (float)json_number_value(json_array_get(a, i)), true); }

static samda_status session_predict(void *v, const char *id, const json_t *body, int64_t token_id, json_t **out,
                                    samda_error *err)
{
    (void)token_id;
    samdad_api_core *core = CORE(v);
    samdad_prompt p;
    memset(&p, 0, sizeof p);
    const char *key;
    const json_t *val;
    json_object_foreach((json_t *)body, key, val) {
        if (strcmp(key, "points") && strcmp(key, "box") && strcmp(key, "use_previous") && strcmp(key, "multimask"))
            return samda_fail(err, SAMDA_EINVAL, "body.%s: unknown member (allowed: points, box, use_previous, multimask)", key);
    }
    const json_t *pts = json_object_get(body, "points");
    if (pts) {
        if (!json_is_array(pts) || json_array_size(pts) > 64)
            return samda_fail(err, SAMDA_EINVAL, "body.points: an array of at most 64 [x, y, label] triples");
        size_t i;
        const json_t *pt;
        json_array_foreach(pts, i, pt) {
            float lbl;
            if (!json_is_array(pt) || json_array_size(pt) != 3 || !num2(pt, 0, &p.points[i][0]) || !num2(pt, 1, &p.points[i][1]) ||
                !num2(pt, 2, &lbl) || (lbl != 0 && lbl != 1))
                return samda_fail(err, SAMDA_EINVAL, "body.points[%zu]: [x, y, label] with label 1 (inside) or 0 (outside)", i);
            p.labels[i] = (int)lbl;
        }
        p.n_points = json_array_size(pts);
    }
    const json_t *box = json_object_get(body, "box");
    if (box) {
        if (!json_is_array(box) || json_array_size(box) != 4 || !num2(box, 0, &p.box[0]) || !num2(box, 1, &p.box[1]) ||
            !num2(box, 2, &p.box[2]) || !num2(box, 3, &p.box[3]) || p.box[2] <= p.box[0] || p.box[3] <= p.box[1])
            return samda_fail(err, SAMDA_EINVAL, "body.box: [x0, y0, x1, y1] with x1 > x0 and y1 > y0");
        p.has_box = true;
    }
    p.use_previous = json_is_true(json_object_get(body, "use_previous"));
    p.multimask = json_is_true(json_object_get(body, "multimask"));
    samdad_prediction pr;
    samda_status st = samdad_worker_session_predict(samdad_worker_of(core->ctx), id, &p, SESSION_WAIT_MS, &pr, err);
    if (st != SAMDA_OK) return st;
    /* row-major run lengths, the first run counting zeros */
    json_t *counts = json_array();
    size_t n = (size_t)pr.rows * pr.cols, run = 0, area = 0;
    uint8_t cur = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t b = pr.mask[i] ? 1 : 0;
        area += b;
        if (b != cur) {
            json_array_append_new(counts, json_integer((json_int_t)run));
            run = 0;
            cur = b;
        }
        run++;
    }
    json_array_append_new(counts, json_integer((json_int_t)run));
    free(pr.mask);
    json_t *iou = json_array();
    for (int i = 0; i < pr.n_masks; i++) json_array_append_new(iou, json_real(pr.iou[i]));
    *out = json_pack("{s:o, s:i, s:I, s:f, s:{s:i, s:i, s:s, s:o}}", "iou", iou, "best", pr.best, "area", (json_int_t)area,
                     "decode_ms", pr.decode_ms, "mask", "rows", pr.rows, "columns", pr.cols, "encoding",
                     "row-major run lengths, first run = background", "counts", counts);
    return *out ? SAMDA_OK : samda_fail(err, SAMDA_ENOMEM, "out of memory");
}

static samda_status session_delete(void *v, const char *id, int64_t token_id, samda_error *err)
{
    (void)token_id;
    return samdad_worker_session_delete(samdad_worker_of(CORE(v)->ctx), id, SESSION_WAIT_MS, err);
}
#endif

/* ---- results: the SEG file, and PNG views of one slice ---------------------------------------------- */

static samda_status result_get(void *v, int64_t id, json_t **out, samda_error *err)
{
    samda_result r;
    samda_status st = samda_store_result_get(samdad_store(CORE(v)->ctx), id, &r, err);
    if (st == SAMDA_ENOENT) return samda_fail(err, SAMDA_ENOENT, "unknown result %lld", (long long)id);
    if (st != SAMDA_OK) return st;
    *out = samdad_result_json(&r);
    samda_result_clear(&r);
    return *out ? SAMDA_OK : samda_fail(err, SAMDA_ENOMEM, "out of memory");
}

static samda_status result_seg(void *v, int64_t id, void **data, size_t *len, samda_error *err)
{
    samda_store *store = samdad_store(CORE(v)->ctx);
    samda_result r;
    samda_status st = samda_store_result_get(store, id, &r, err);
    if (st == SAMDA_ENOENT) return samda_fail(err, SAMDA_ENOENT, "unknown result %lld", (long long)id);
    if (st != SAMDA_OK) return st;
    st = samda_store_object_read(store, r.object.relpath, (size_t)1 << 30, data, len, err);
    samda_result_clear(&r);
    return st;
}

static samda_status png_encode(const uint8_t *px, unsigned w, unsigned h, bool rgb, void **out, size_t *len,
                               samda_error *err)
{
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    im.width = w;
    im.height = h;
    im.format = rgb ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
    png_alloc_size_t size = 0;
    if (!png_image_write_to_memory(&im, NULL, &size, 0, px, 0, NULL))
        return samda_fail(err, SAMDA_EINTERNAL, "PNG encoding: %s", im.message);
    void *buf = malloc(size);
    if (!buf) return samda_fail(err, SAMDA_ENOMEM, "PNG encoding: out of memory");
    if (!png_image_write_to_memory(&im, buf, &size, 0, px, 0, NULL)) {
        free(buf);
        return samda_fail(err, SAMDA_EINTERNAL, "PNG encoding: %s", im.message);
    }
    *out = buf;
    *len = size;
    return SAMDA_OK;
}

static samda_status result_png(void *v, int64_t id, unsigned slice, const char *label, bool overlay, void **png,
                               size_t *len, samda_error *err)
{
    samda_store *store = samdad_store(CORE(v)->ctx);
    samda_result r;
    samda_status st = samda_store_result_get(store, id, &r, err);
    if (st == SAMDA_ENOENT) return samda_fail(err, SAMDA_ENOENT, "unknown result %lld", (long long)id);
    if (st != SAMDA_OK) return st;
    char **paths = NULL;
    size_t n = 0;
    char seg_path[PATH_MAX];
    st = samda_store_object_path(store, r.object.relpath, seg_path, sizeof seg_path, err);
    if (st == SAMDA_OK) st = samda_store_series_paths(store, r.series_uid, &paths, &n, err);
    samda_result_clear(&r);
    if (st != SAMDA_OK) return st;
    samda_volume *vol = NULL;
    samda_seg *seg = NULL;
    uint8_t *numbers = NULL, *img = NULL;
    st = samda_dicom_volume_load((const char *const *)paths, n, NULL, &vol, err);
    samda_store_paths_free(paths, n);
    if (st == SAMDA_OK) st = samda_seg_read(seg_path, &seg, err);
    if (st != SAMDA_OK) goto out;
    const samda_volume_info *vi = samda_volume_get_info(vol);
    if (slice >= vi->n_slices) {
        st = samda_fail(err, SAMDA_EINVAL, "slice %u is out of range (the series has %zu: 0..%zu)", slice, vi->n_slices,
                        vi->n_slices - 1);
        goto out;
    }
    unsigned want = 0;
    if (label && *label) {
        for (size_t i = 0; i < samda_seg_get_info(seg)->n_segments; i++)
            if (!strcasecmp(samda_seg_segment_get(seg, i)->label, label)) want = samda_seg_segment_get(seg, i)->number;
        if (!want) {
            st = samda_fail(err, SAMDA_ENOENT, "the result has no segment labelled \"%.64s\"", label);
            goto out;
        }
    }
    const size_t plane = (size_t)vi->rows * vi->cols;
    numbers = malloc(vi->n_slices * plane);
    img = malloc(plane * 3);
    if (!numbers || !img) {
        st = samda_fail(err, SAMDA_ENOMEM, "out of memory");
        goto out;
    }
    if ((st = samda_seg_to_label_volume(seg, vol, numbers, NULL, err)) != SAMDA_OK) goto out;
    const uint8_t *num = numbers + (size_t)slice * plane;
    if (!overlay) {
        for (size_t i = 0; i < plane; i++) img[i] = want ? (num[i] == want ? 255 : 0) : num[i];
        st = png_encode(img, vi->cols, vi->rows, false, png, len, err);
        goto out;
    }
    /* grey: CT soft-tissue window, else the slice's own range */
    const float *px = samda_volume_voxels(vol) + (size_t)slice * plane;
    float lo = -160, hi = 240;
    if (strcmp(vi->modality, "CT") != 0) {
        lo = px[0];
        hi = px[0];
        for (size_t i = 1; i < plane; i++) {
            if (px[i] < lo) lo = px[i];
            if (px[i] > hi) hi = px[i];
        }
        if (hi <= lo) hi = lo + 1;
    }
    static const uint8_t palette[8][3] = {{255, 64, 64}, {64, 200, 64}, {64, 128, 255}, {255, 200, 0},
                                          {200, 64, 255}, {0, 220, 220}, {255, 128, 0}, {255, 255, 255}};
    for (size_t i = 0; i < plane; i++) {
        float g = (px[i] - lo) / (hi - lo) * 255.0f;
        uint8_t gv = (uint8_t)(g < 0 ? 0 : g > 255 ? 255 : g);
        img[3 * i] = img[3 * i + 1] = img[3 * i + 2] = gv;
        uint8_t k = num[i];
        if (!k) continue;
        size_t rr = i / vi->cols, cc = i % vi->cols;
        bool edge = rr == 0 || cc == 0 || rr + 1 == vi->rows || cc + 1 == vi->cols || num[i - 1] != k || num[i + 1] != k ||
                    num[i - vi->cols] != k || num[i + vi->cols] != k;
        if (edge) memcpy(img + 3 * i, palette[(k - 1) % 8], 3);
    }
    st = png_encode(img, vi->cols, vi->rows, true, png, len, err);
out:
    free(numbers);
    free(img);
    samda_seg_free(seg);
    samda_volume_free(vol);
    return st;
}

/* Training and evaluation run in the model worker as jobs ("train", "evaluate"); the body's members
 * are the job's parameters (studies, epochs, lr, prompt, val_split, seed, max_seconds, activate). */
static samda_status adapter_job(samdad_api_core *core, const char *kind, const char *site, int version,
                                const json_t *body, int64_t token_id, json_t **out, samda_error *err)
{
    samda_store *store = samdad_store(core->ctx);
    samda_status st = require_site(store, site, err);
    if (st != SAMDA_OK) return st;
    if (version > 0) {
        samda_adapter_row row;
        st = samda_store_adapter_get(store, site, version, &row, err);
        if (st == SAMDA_ENOENT) return samda_fail(err, SAMDA_ENOENT, "unknown adapter version %d of site %s", version, site);
        if (st != SAMDA_OK) return st;
        samda_adapter_clear(&row);
    }
    const json_t *studies = body ? json_object_get(body, "studies") : NULL;
    if (!json_is_array(studies) || json_array_size(studies) == 0 || json_array_size(studies) > 10000)
        return samda_fail(err, SAMDA_EINVAL, "body.studies: an array of 1..10000 StudyInstanceUIDs whose studies hold a "
                          "ground-truth DICOM-SEG is required");
    size_t i;
    const json_t *u;
    json_array_foreach(studies, i, u) {
        if (!json_is_string(u) || !samda_uid_is_valid(json_string_value(u)))
            return samda_fail(err, SAMDA_EBADUID, "body.studies[%zu]: not a valid UID", i);
    }
    static const char *const allowed[] = {"studies", "epochs", "lr", "prompt", "val_split", "seed", "max_seconds",
                                          "activate"};
    const char *key;
    const json_t *val;
    json_object_foreach((json_t *)body, key, val) {
        bool ok = false;
        for (size_t k = 0; k < sizeof allowed / sizeof *allowed; k++) ok |= !strcmp(key, allowed[k]);
        if (!ok || (!strcmp(kind, "evaluate") && strcmp(key, "studies") != 0))
            return samda_fail(err, SAMDA_EINVAL, "body.%s: unknown member for %s (allowed: %s)", key, kind,
                              !strcmp(kind, "evaluate") ? "studies"
                                                        : "studies, epochs, lr, prompt, val_split, seed, max_seconds, activate");
    }
    json_t *params = json_deep_copy(body);
    if (version > 0) json_object_set_new(params, "version", json_integer(version));
    json_object_set_new(params, "requested_by", json_integer(token_id));
    char *params_s = json_dumps(params, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(params);
    samda_job_spec spec = {
        .kind = kind,
        .priority = 5, /* after on-demand segmentation, before batch work */
        .site = site,
        .params_json = params_s,
        .max_attempts = 1, /* a failed training is looked at, not repeated */
    };
    int64_t id = 0;
    st = samda_store_job_enqueue(store, &spec, &id, NULL, err);
    free(params_s);
    if (st != SAMDA_OK) return st;
    samda_log(&core->ctx->log, SAMDA_LOG_INFO, "api", !strcmp(kind, "train") ? "adapter training queued" : "adapter evaluation queued",
              "site=%s version=%d job=%lld token=%lld", site, version, (long long)id, (long long)token_id);
    return job_get(core, id, out, err);
}

static samda_status adapter_train(void *v, const char *site, const json_t *body, int64_t token_id, json_t **out,
                                  samda_error *err)
{
    return adapter_job(CORE(v), "train", site, 0, body, token_id, out, err);
}

static samda_status adapter_evaluate(void *v, const char *site, int version, const json_t *body, int64_t token_id,
                                     json_t **out, samda_error *err)
{
    return adapter_job(CORE(v), "evaluate", site, version, body, token_id, out, err);
}

static samda_status adapter_delete(void *v, const char *site, int version, int64_t token_id, samda_error *err)
{
    samdad_api_core *core = CORE(v);
    samda_store *store = samdad_store(core->ctx);
    samda_status st = require_site(store, site, err);
    if (st != SAMDA_OK) return st;
    st = samda_store_adapter_delete(store, site, version, err);
    if (st == SAMDA_ENOENT) return samda_fail(err, SAMDA_ENOENT, "unknown adapter version %d of site %s", version, site);
    if (st == SAMDA_EBUSY)
        return samda_fail(err, SAMDA_ECANCELED, "adapter version %d of site %s is active: activate another version or roll back first",
                          version, site);
    if (st != SAMDA_OK) return st;
    samda_log(&core->ctx->log, SAMDA_LOG_INFO, "api", "adapter deleted", "site=%s version=%d token=%lld", site, version,
              (long long)token_id);
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
    pthread_mutex_init(&core->overlay_mu, NULL);
    pthread_mutex_init(&core->watch_mu, NULL);
    pthread_cond_init(&core->watch_cv, NULL);
    core->defaults = samda_config_load(NULL, NULL, err);
    if (!core->defaults) {
        samdad_api_core_free(core);
        return NULL;
    }
    /* Sites created through the API in earlier runs take effect now. */
    if (overlay_apply(core, NULL, false, err) != SAMDA_OK) {
        samda_error_prefix(err, "applying the sites created through the API: ");
        samdad_api_core_free(core);
        return NULL;
    }
    if (pthread_create(&core->watcher, NULL, overlay_watch, core) != 0) {
        samda_fail(err, SAMDA_ENOMEM, "starting the HTTP core: cannot create the site overlay thread");
        samdad_api_core_free(core);
        return NULL;
    }
    core->watching = true;
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
    svc->metadata = metadata;
    svc->frame = frame;
    svc->changes = changes;
    svc->jobs_list = jobs_list;
    svc->job_get = job_get;
    svc->job_cancel = job_cancel;
    svc->job_retry = job_retry;
    svc->segment = segment;
    svc->results = results;
    svc->sites_list = sites_list;
    svc->site_get = site_get;
    svc->site_put = site_put;
    svc->destinations_list = destinations_list;
    svc->destination_get = destination_get;
    svc->destination_add = destination_add;
    svc->destination_delete = destination_delete;
    svc->destination_echo = destination_echo;
    svc->exports_list = exports_list;
    svc->export_retry = export_retry;
    svc->adapters_list = adapters_list;
    svc->adapter_upload = adapter_upload;
    svc->adapter_activate = adapter_activate;
    svc->adapter_rollback = adapter_rollback;
    svc->result_get = result_get;
    svc->result_seg = result_seg;
    svc->result_png = result_png;
    svc->adapter_delete = adapter_delete;
    /* Training and evaluation need the model worker: without a model the routes answer 501. */
    if (samdad_model_loaded(ctx)) {
        svc->adapter_train = adapter_train;
        svc->adapter_evaluate = adapter_evaluate;
#ifdef SAMDA_HAVE_MODEL
        svc->session_create = session_create;
        svc->session_predict = session_predict;
        svc->session_delete = session_delete;
#endif
    }
    return core;
}

void samdad_api_core_free(samdad_api_core *core)
{
    if (!core) return;
    if (core->watching) {
        pthread_mutex_lock(&core->watch_mu);
        core->watch_stop = true;
        pthread_cond_broadcast(&core->watch_cv);
        pthread_mutex_unlock(&core->watch_mu);
        pthread_join(core->watcher, NULL);
    }
    samda_config_unref(core->base);
    samda_config_unref(core->installed);
    samda_config_unref(core->defaults);
    pthread_cond_destroy(&core->watch_cv);
    pthread_mutex_destroy(&core->watch_mu);
    pthread_mutex_destroy(&core->overlay_mu);
    while (core->reqs) {
        stow_req *r = core->reqs;
        core->reqs = r->next;
        free(r->series);
        free(r);
    }
    pthread_mutex_destroy(&core->mu);
    free(core);
}
