/* PUT/GET/DELETE /monailabel/session/ for samdad: 3D Slicer's MONAILabel module uploads the volume
 * the user segments when it was not loaded with Next Sample (MONAILabelClient.create_session) and
 * then names the session in infer. samda segments stored series only, so the upload becomes one:
 * the NRRD's voxels are written as a CT or MR series (dicom/ct_write.cpp) in a new study of a
 * synthetic patient ("SESSION-" + the series UID; no patient data comes with an upload) and go
 * into the store through the one ingest entry (origin SAMDAD_ORIGIN_SESSION), in the site the
 * request names or the default site. The session id is that SeriesInstanceUID.
 *
 * The sessions themselves (expiry, last use, the uploaded geometry) live in a map in the API core,
 * not in the index: a session is a client's scratch space, as in MONAI Label. Expired sessions are
 * deleted with their study (the series, its results, any saved label) whenever a session route or
 * an infer naming a session runs; the first such call after samdad starts also deletes the studies
 * of sessions a previous run left behind (marked by their study description and patient id). */
#include "api_core.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "dicom.h"
#include "ingest.h"
#include "random.h"
#include "retention.h"
#include "services_internal.h"

#define SESSION_STUDY_DESCRIPTION "samda MONAI Label session"
#define SESSION_PATIENT_PREFIX "SESSION-"
#define SESSION_EXPIRY_DEFAULT_S 3600
#define SESSION_EXPIRY_MAX_S (31 * 86400)
#define SESSIONS_MAX 64

struct samdad_ml_session {
    char id[SAMDA_UID_SIZE];     /* the SeriesInstanceUID */
    char study[SAMDA_UID_SIZE];
    char site[SAMDA_NAME_SIZE];
    char modality[4];
    int64_t create_s, last_access_s, expiry_s;
    int64_t token_id;
    samda_api_volume geometry;   /* as uploaded (LPS); data unused */
    bool flip_k;                 /* the upload's k runs against the stored series' slice order */
    bool dead;                   /* expired or deleted, its study not deleted yet (retried) */
    bool pending;                /* being written and stored: its study is not an orphan yet */
    struct samdad_ml_session *next;
};

static int64_t now_s(samdad_api_core *core) { return samda_store_now_ms(samdad_store(core->ctx)) / 1000; }

static json_t *session_json(const samdad_ml_session *s)
{
    json_t *sizes = json_pack("[I, I, I]", (json_int_t)s->geometry.sizes[0], (json_int_t)s->geometry.sizes[1],
                              (json_int_t)s->geometry.sizes[2]);
    return json_pack("{s:s, s:s, s:s, s:{s:s, s:s, s:s, s:s, s:o}, s:I, s:I, s:I}", "name", s->id, "path", "", "image", s->id,
                     "meta", "study_uid", s->study, "series_uid", s->id, "site", s->site, "modality", s->modality, "sizes", sizes,
                     "create_ts", (json_int_t)s->create_s, "last_access_ts", (json_int_t)s->last_access_s, "expiry",
                     (json_int_t)s->expiry_s);
}

/* ---- the map and its expiry --------------------------------------------------------------------- */

/* Delete a session's study (one already gone counts as deleted); the caller logs a failure. */
static samda_status delete_study(samdad_api_core *core, const char *actor, const char *study, samda_error *err)
{
    samda_status st = samdad_delete(core->ctx, actor, study, NULL, NULL, err);
    if (st == SAMDA_ENOENT) return SAMDA_OK; /* already gone (DELETE of the study, retention) */
    return st;
}

/* The studies of sessions a previous run of samdad left (the map lives in memory only). Returns
 * false when one could not be deleted yet (then the next session request tries again). */
static bool sweep_orphans(samdad_api_core *core)
{
    bool all = true;
    samda_store *store = samdad_store(core->ctx);
    samda_index_query q = {.limit = 100000};
    samda_study_info *rows = NULL;
    size_t n = 0;
    samda_error e;
    if (samda_store_study_query(store, &q, &rows, &n, &e) != SAMDA_OK) return false;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(rows[i].study_description, SESSION_STUDY_DESCRIPTION) ||
            strncmp(rows[i].patient_id, SESSION_PATIENT_PREFIX, strlen(SESSION_PATIENT_PREFIX)))
            continue;
        pthread_mutex_lock(&core->ml_mu);
        bool live = false;
        for (samdad_ml_session *s = core->ml_sessions; s && !live; s = s->next) live = !strcmp(s->study, rows[i].study_uid);
        pthread_mutex_unlock(&core->ml_mu);
        if (!live && delete_study(core, "session-expiry", rows[i].study_uid, &e) != SAMDA_OK) {
            samda_log(&core->ctx->log, SAMDA_LOG_WARN, "api", "a former MONAI Label session's study not deleted yet", "error=%s",
                      samda_log_quote((char[600]){0}, 600, e.message));
            all = false;
        }
    }
    samda_store_free(rows);
    return all;
}

/* End the sessions idle longer than their expiry, deleting their studies. One whose study cannot be
 * deleted now (a job still running on it) stays in the map as dead, unknown to every route, and is
 * tried again at the next sweep. */
static void sweep(samdad_api_core *core)
{
    bool first = false;
    pthread_mutex_lock(&core->ml_mu);
    if (!core->ml_swept_orphans) first = core->ml_swept_orphans = true;
    pthread_mutex_unlock(&core->ml_mu);
    if (first && !sweep_orphans(core)) {
        pthread_mutex_lock(&core->ml_mu);
        core->ml_swept_orphans = false;
        pthread_mutex_unlock(&core->ml_mu);
    }
    int64_t now = now_s(core);
    samdad_ml_session *due = NULL;
    pthread_mutex_lock(&core->ml_mu);
    for (samdad_ml_session **pp = &core->ml_sessions; *pp;) {
        samdad_ml_session *s = *pp;
        if (!s->pending && (s->dead || now - s->last_access_s > s->expiry_s)) {
            *pp = s->next;
            s->next = due;
            due = s;
        } else {
            pp = &s->next;
        }
    }
    pthread_mutex_unlock(&core->ml_mu);
    while (due) {
        samdad_ml_session *s = due;
        due = s->next;
        samda_error e;
        if (delete_study(core, "session-expiry", s->study, &e) != SAMDA_OK) {
            samda_log(&core->ctx->log, SAMDA_LOG_WARN, "api", "expired MONAI Label session not deleted yet", "error=%s",
                      samda_log_quote((char[600]){0}, 600, e.message));
            s->dead = true;
            pthread_mutex_lock(&core->ml_mu);
            s->next = core->ml_sessions;
            core->ml_sessions = s;
            pthread_mutex_unlock(&core->ml_mu);
            continue;
        }
        samda_log(&core->ctx->log, SAMDA_LOG_INFO, "api", "MONAI Label session expired, its study deleted", "idle_s=%lld",
                  (long long)(now - s->last_access_s));
        free(s);
    }
}

/* Take session id out of the map (its study is gone or going). */
static void forget(samdad_api_core *core, const char *id)
{
    pthread_mutex_lock(&core->ml_mu);
    for (samdad_ml_session **pp = &core->ml_sessions; *pp; pp = &(*pp)->next)
        if (!strcmp((*pp)->id, id)) {
            samdad_ml_session *gone = *pp;
            *pp = gone->next;
            free(gone);
            break;
        }
    pthread_mutex_unlock(&core->ml_mu);
}

samda_status samdad_ml_session_find(samdad_api_core *core, const char *id, bool touch, samdad_ml_session *out,
                                    samda_error *err)
{
    sweep(core);
    pthread_mutex_lock(&core->ml_mu);
    samdad_ml_session *s = core->ml_sessions;
    while (s && (s->dead || s->pending || strcmp(s->id, id))) s = s->next;
    if (s && touch) s->last_access_s = now_s(core);
    if (s) {
        *out = *s;
        out->next = NULL;
    }
    pthread_mutex_unlock(&core->ml_mu);
    if (!s) return samda_fail(err, SAMDA_ENOENT, "session %s is unknown or expired: create one with PUT /monailabel/session/", id);
    /* the study may have been deleted behind the session's back (DELETE /api/v1/studies, retention) */
    samda_series_info si;
    samda_status st = samda_store_series_get(samdad_store(core->ctx), id, &si, err);
    if (st == SAMDA_ENOENT) {
        forget(core, id);
        return samda_fail(err, SAMDA_ENOENT, "session %s: its series was deleted: create a new session with PUT /monailabel/session/", id);
    }
    return st;
}

void samdad_ml_sessions_free(samdad_api_core *core)
{
    while (core->ml_sessions) {
        samdad_ml_session *s = core->ml_sessions;
        core->ml_sessions = s->next;
        free(s);
    }
}

bool samdad_ml_is_session(samdad_api_core *core, const char *series_uid)
{
    pthread_mutex_lock(&core->ml_mu);
    samdad_ml_session *s = core->ml_sessions;
    while (s && strcmp(s->id, series_uid)) s = s->next;
    pthread_mutex_unlock(&core->ml_mu);
    return s != NULL;
}

/* ---- the upload as a DICOM series ----------------------------------------------------------------- */

static double dot3(const double *a, const double *b) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }

/* The series' geometry from the upload's: row/column directions, spacings, whether k runs against
 * the normal (then slices are written in reverse so that they sort along it). */
static samda_status check_geometry(const samda_api_volume *v, samda_ct_series_params *p, bool *flip, samda_error *err)
{
    if (v->sizes[0] > 65535 || v->sizes[1] > 65535 || v->sizes[2] > 99999)
        return samda_fail(err, SAMDA_EINVAL, "image of %zux%zux%zu voxels: at most 65535 x 65535 x 99999", v->sizes[0], v->sizes[1],
                          v->sizes[2]);
    double len[3];
    for (int a = 0; a < 3; a++) {
        len[a] = sqrt(dot3(v->directions[a], v->directions[a]));
        if (!(len[a] > 1e-6 && len[a] < 1e4))
            return samda_fail(err, SAMDA_EINVAL, "image: space direction %d has length %g mm (a voxel step of 1e-6 to 1e4 mm)", a, len[a]);
        if (!isfinite(v->origin[a])) return samda_fail(err, SAMDA_EINVAL, "image: space origin is not finite");
    }
    double row[3], col[3], nrm[3];
    for (int c = 0; c < 3; c++) {
        row[c] = v->directions[0][c] / len[0];
        col[c] = v->directions[1][c] / len[1];
    }
    if (fabs(dot3(row, col)) > 1e-4)
        return samda_fail(err, SAMDA_EINVAL, "image: the i and j axes are not perpendicular (a sheared volume cannot be a DICOM series)");
    nrm[0] = row[1] * col[2] - row[2] * col[1];
    nrm[1] = row[2] * col[0] - row[0] * col[2];
    nrm[2] = row[0] * col[1] - row[1] * col[0];
    double along = dot3(v->directions[2], nrm) / len[2];
    if (fabs(along) < 1 - 1e-4)
        return samda_fail(err, SAMDA_EINVAL, "image: the k axis is not perpendicular to the slices (tilted or sheared volume): resample it first");
    *flip = along < 0;
    for (int c = 0; c < 3; c++) {
        p->orientation[c] = row[c];
        p->orientation[3 + c] = col[c];
        p->origin[c] = v->origin[c] + (*flip ? (double)(v->sizes[2] - 1) * v->directions[2][c] : 0);
    }
    p->pixel_spacing[0] = len[1]; /* between rows: along j */
    p->pixel_spacing[1] = len[0]; /* between columns: along i */
    p->slice_spacing = len[2];
    p->n_slices = v->sizes[2];
    p->rows = (unsigned)v->sizes[1];
    p->cols = (unsigned)v->sizes[0];
    return SAMDA_OK;
}

/* The values as int16 (exact when whole and in range, else scaled: OUT slope) and which modality
 * they are: the site's when it selects only CT or only MR, else CT when they look like HU. */
static samda_status to_int16(const samda_api_volume *v, const samda_config *cfg, const char *site, int16_t **out,
                             double *slope, const char **modality, samda_error *err)
{
    size_t n = v->sizes[0] * v->sizes[1] * v->sizes[2];
    const float *f = v->data;
    double lo = INFINITY, hi = -INFINITY;
    bool whole = true;
    for (size_t i = 0; i < n; i++) {
        lo = fmin(lo, f[i]);
        hi = fmax(hi, f[i]);
        whole = whole && f[i] == floorf(f[i]);
    }
    bool fits = whole && lo >= -32768 && hi <= 32767;
    *slope = fits ? 1.0 : fmax(fmax(fabs(lo), fabs(hi)) / 32767.0, 1e-30);
    const samda_site_cfg *sc = samda_config_site(cfg, site);
    bool ct = false, mr = false;
    for (size_t i = 0; sc && i < sc->modalities.n; i++) {
        ct |= !strcasecmp(sc->modalities.v[i], "CT");
        mr |= !strcasecmp(sc->modalities.v[i], "MR");
    }
    if (ct != mr) *modality = ct ? "CT" : "MR";
    else *modality = whole && lo <= -500 && lo >= -3100 && hi <= 32767 ? "CT" : "MR";
    int16_t *o = malloc((n ? n : 1) * sizeof *o);
    if (!o) return samda_fail(err, SAMDA_ENOMEM, "out of memory for %zu voxels", n);
    for (size_t i = 0; i < n; i++) o[i] = (int16_t)lrint(fits ? f[i] : f[i] / *slope);
    *out = o;
    return SAMDA_OK;
}

/* Write the series into the store's tmp/ and pass each file to the one ingest entry. */
static samda_status write_and_ingest(samdad_api_core *core, samda_ct_series_params *p, const char *site, samda_error *err)
{
    samda_store *store = samdad_store(core->ctx);
    char dir[4096], prefix[40];
    uint32_t r = 0;
    samda_random_bytes(&r, sizeof r, NULL);
    snprintf(dir, sizeof dir, "%s/tmp", samda_store_data_dir(store));
    snprintf(prefix, sizeof prefix, "session-%08x-", r);
    p->dir = dir;
    p->file_prefix = prefix;
    samda_ct_series_result res;
    samda_status st = samda_dicom_write_ct_series(p, &res, err);
    size_t k = 0;
    char path[4200];
    for (; st == SAMDA_OK && k < p->n_slices; k++) {
        snprintf(path, sizeof path, "%s/%sIMG%05zu.dcm", dir, prefix, k + 1);
        samda_dicom_header h;
        if ((st = samda_dicom_read_header(path, &h, err)) != SAMDA_OK) {
            unlink(path);
            break;
        }
        samdad_ingest_origin o = {.kind = SAMDAD_ORIGIN_SESSION, .site = site};
        st = samdad_ingest_file(core->ctx, &o, path, &h, NULL, err); /* consumes the file */
    }
    for (; k < p->n_slices; k++) { /* after a failure: the files not ingested (written or not) */
        snprintf(path, sizeof path, "%s/%sIMG%05zu.dcm", dir, prefix, k + 1);
        unlink(path);
    }
    return st;
}

static samda_status session_create(void *v, const samda_api_ml_session *req, json_t **out, samda_error *err)
{
    samdad_api_core *core = CORE(v);
    sweep(core);
    samda_store *store = samdad_store(core->ctx);
    const char *site = req->site && *req->site ? req->site : "default";
    samda_status st = samdad_require_site(store, site, err);
    if (st != SAMDA_OK) return st;
    pthread_mutex_lock(&core->ml_mu);
    size_t live = 0;
    for (samdad_ml_session *s = core->ml_sessions; s; s = s->next) live++;
    pthread_mutex_unlock(&core->ml_mu);
    if (live >= SESSIONS_MAX)
        return samda_fail(err, SAMDA_EBUSY, "%d MONAI Label sessions are open: delete one (DELETE /monailabel/session/ID) or wait for expiry",
                          SESSIONS_MAX);

    samdad_ml_session *s = calloc(1, sizeof *s);
    if (!s) return samda_fail(err, SAMDA_ENOMEM, "out of memory");
    samda_ct_series_params p;
    samda_ct_series_params_init(&p);
    int16_t *vals = NULL;
    double slope = 1;
    const char *modality = "CT";
    samda_config *cfg = samdad_config_get(core->ctx);
    st = check_geometry(req->image, &p, &s->flip_k, err);
    if (st == SAMDA_OK) st = to_int16(req->image, cfg, site, &vals, &slope, &modality, err);
    samda_config_unref(cfg);
    if (st == SAMDA_OK) st = samda_dicom_uid_generate(s->id, NULL, err);
    if (st == SAMDA_OK) st = samda_dicom_uid_generate(s->study, NULL, err);
    if (st != SAMDA_OK) {
        free(vals);
        free(s);
        return st;
    }
    if (s->flip_k) { /* slice k of the upload is slice n-1-k of the series */
        size_t plane = (size_t)p.rows * p.cols;
        for (size_t a = 0, b = p.n_slices - 1; a < b; a++, b--)
            for (size_t i = 0; i < plane; i++) {
                int16_t t = vals[a * plane + i];
                vals[a * plane + i] = vals[b * plane + i];
                vals[b * plane + i] = t;
            }
    }
    /* in the map from now on, as pending: a first sweep running meanwhile must not take its study
     * for a previous run's */
    s->pending = true;
    s->create_s = s->last_access_s = now_s(core);
    s->expiry_s = SESSION_EXPIRY_DEFAULT_S;
    pthread_mutex_lock(&core->ml_mu);
    s->next = core->ml_sessions;
    core->ml_sessions = s;
    pthread_mutex_unlock(&core->ml_mu);
    char patient[SAMDA_UID_SIZE + 16];
    snprintf(patient, sizeof patient, SESSION_PATIENT_PREFIX "%s", s->id);
    p.hu = vals;
    p.modality = modality;
    p.rescale_slope = slope;
    p.patient_id = patient;
    p.patient_name = "SESSION^MONAI Label";
    p.study_instance_uid = s->study;
    p.series_instance_uid = s->id;
    p.study_description = SESSION_STUDY_DESCRIPTION;
    p.series_description = "volume uploaded by a MONAI Label client";
    if (!strcmp(modality, "MR")) { /* no window is known: the whole range of the stored values */
        int lo = INT16_MAX, hi = INT16_MIN;
        for (size_t i = 0; i < p.n_slices * p.rows * p.cols; i++) {
            lo = vals[i] < lo ? vals[i] : lo;
            hi = vals[i] > hi ? vals[i] : hi;
        }
        p.window_center = ((double)lo + hi) / 2 * slope;
        p.window_width = hi > lo ? ((double)hi - lo) * slope : 1;
    }
    st = write_and_ingest(core, &p, site, err);
    free(vals);
    /* the series was created complete (SAMDA_INSTANCE_UPLOAD): segmented when a client asks (infer) */
    if (st != SAMDA_OK) {
        samda_error e2;
        pthread_mutex_lock(&core->ml_mu);
        for (samdad_ml_session **pp = &core->ml_sessions; *pp; pp = &(*pp)->next)
            if (*pp == s) {
                *pp = s->next;
                break;
            }
        pthread_mutex_unlock(&core->ml_mu);
        delete_study(core, "session-expiry", s->study, &e2); /* what was stored before the failure */
        free(s);
        return st;
    }
    pthread_mutex_lock(&core->ml_mu);
    snprintf(s->site, sizeof s->site, "%s", site);
    snprintf(s->modality, sizeof s->modality, "%s", modality);
    s->create_s = s->last_access_s = now_s(core);
    s->expiry_s = req->expiry_s > 0 ? (req->expiry_s < SESSION_EXPIRY_MAX_S ? req->expiry_s : SESSION_EXPIRY_MAX_S)
                                    : SESSION_EXPIRY_DEFAULT_S;
    s->token_id = req->token_id;
    s->geometry = *req->image;
    s->geometry.data = NULL;
    s->geometry.type = SAMDA_API_VOXEL_U8;
    s->pending = false;
    *out = json_pack("{s:s, s:o}", "session_id", s->id, "session_info", session_json(s));
    pthread_mutex_unlock(&core->ml_mu);
    samda_log(&core->ctx->log, SAMDA_LOG_INFO, "api", "MONAI Label session created", "modality=%s slices=%zu site=%s token=%lld",
              modality, p.n_slices, site, (long long)req->token_id);
    return *out ? SAMDA_OK : samda_fail(err, SAMDA_ENOMEM, "out of memory");
}

static samda_status session_get(void *v, const char *id, bool update_ts, json_t **out, samda_error *err)
{
    samdad_ml_session s;
    samda_status st = samdad_ml_session_find(CORE(v), id, update_ts, &s, err);
    if (st != SAMDA_OK) return st;
    *out = session_json(&s);
    return *out ? SAMDA_OK : samda_fail(err, SAMDA_ENOMEM, "out of memory");
}

static samda_status session_delete(void *v, const char *id, int64_t token_id, json_t **out, samda_error *err)
{
    samdad_api_core *core = CORE(v);
    samdad_ml_session s;
    samda_status st = samdad_ml_session_find(core, id, false, &s, err);
    if (st != SAMDA_OK) return st;
    char actor[48];
    snprintf(actor, sizeof actor, token_id >= 0 ? "token:%lld" : "anonymous", (long long)token_id);
    if ((st = delete_study(core, actor, s.study, err)) != SAMDA_OK) return st; /* 409 while a job runs on it */
    forget(core, id);
    *out = session_json(&s);
    return *out ? SAMDA_OK : samda_fail(err, SAMDA_ENOMEM, "out of memory");
}

/* ---- inference on a session ------------------------------------------------------------------- */

/* A copy of the click params with every k (points, roi, slice) turned into the series' slice order. */
static json_t *flip_params(const json_t *params, size_t n_slices)
{
    json_t *c = json_deep_copy(params);
    long last = (long)n_slices - 1;
    static const char *const keys[] = {"foreground", "background"};
    for (int i = 0; i < 2; i++) {
        size_t x;
        json_t *pt;
        json_array_foreach(json_object_get(c, keys[i]), x, pt) {
            json_t *k = json_array_get(pt, 2);
            if (json_is_number(k)) json_array_set_new(pt, 2, json_real((double)last - json_number_value(k)));
        }
    }
    json_t *roi = json_object_get(c, "roi");
    if (json_array_size(roi) == 6 && json_is_number(json_array_get(roi, 4)) && json_is_number(json_array_get(roi, 5))) {
        double k0 = json_number_value(json_array_get(roi, 4)), k1 = json_number_value(json_array_get(roi, 5));
        json_array_set_new(roi, 4, json_real((double)last - k1));
        json_array_set_new(roi, 5, json_real((double)last - k0));
    }
    json_t *sl = json_object_get(c, "slice");
    if (json_is_integer(sl)) json_object_set_new(c, "slice", json_integer(last - json_integer_value(sl)));
    return c;
}

samda_status samdad_ml_session_infer(samdad_api_core *core, const samda_api_ml_infer *req, samda_api_volume *label,
                                     json_t **params, void **seg, size_t *seg_len, samda_error *err)
{
    samdad_ml_session s;
    samda_status st = samdad_ml_session_find(core, req->session_id, true, &s, err);
    if (st != SAMDA_OK) return st;
    samda_api_ml_infer r = *req;
    r.session_id = NULL;
    r.series_uid = s.id;
    json_t *flipped = s.flip_k ? flip_params(req->params, s.geometry.sizes[2]) : NULL;
    if (flipped) r.params = flipped;
    st = samdad_ml_infer(core, &r, label, params, seg, seg_len, err);
    json_decref(flipped);
    if (st != SAMDA_OK || req->want_seg || !label->data) return st;
    if (memcmp(label->sizes, s.geometry.sizes, sizeof label->sizes)) {
        free(label->data);
        label->data = NULL;
        return samda_fail(err, SAMDA_EINTERNAL, "session %s: the stored series is %zux%zux%zu, the upload was %zux%zux%zu",
                          s.id, label->sizes[0], label->sizes[1], label->sizes[2], s.geometry.sizes[0], s.geometry.sizes[1],
                          s.geometry.sizes[2]);
    }
    if (s.flip_k) { /* back into the upload's slice order */
        size_t plane = label->sizes[0] * label->sizes[1];
        uint8_t *d = label->data;
        for (size_t a = 0, b = label->sizes[2] - 1; a < b; a++, b--)
            for (size_t i = 0; i < plane; i++) {
                uint8_t t = d[a * plane + i];
                d[a * plane + i] = d[b * plane + i];
                d[b * plane + i] = t;
            }
        json_t *k = json_object_get(*params, "slice");
        if (json_is_integer(k)) json_object_set_new(*params, "slice", json_integer((json_int_t)label->sizes[2] - 1 - json_integer_value(k)));
    }
    /* the upload's geometry exactly (the series' is the same, through DICOM's decimal strings) */
    memcpy(label->directions, s.geometry.directions, sizeof label->directions);
    memcpy(label->origin, s.geometry.origin, sizeof label->origin);
    json_object_set_new(*params, "session_id", json_string(s.id));
    return SAMDA_OK;
}

void samdad_api_bind_ml_sessions(samda_api_services *svc)
{
    svc->ml_session_create = session_create;
    svc->ml_session_get = session_get;
    svc->ml_session_delete = session_delete;
}
