/* DICOMweb for samdad. STOW parts go through the one ingest entry (samdad_ingest_file), as C-STORE
 * instances do; a STOW request is one unit of work, so its series are declared complete when the
 * request ends. QIDO answers are built from the index (no file is opened unless an attribute asked
 * for is not indexed); WADO streams the stored files. */
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
#include "ingest.h"
#include "scheduler.h"

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

void samdad_api_stow_free(samdad_api_core *core)
{
    while (core->reqs) {
        stow_req *r = core->reqs;
        core->reqs = r->next;
        free(r->series);
        free(r);
    }
}

void samdad_api_bind_dicomweb(samda_api_services *svc)
{
    svc->stow_instance = stow_instance;
    svc->stow_complete = stow_complete;
    svc->qido = qido;
    svc->retrieve = retrieve;
    svc->metadata = metadata;
    svc->frame = frame;
}
