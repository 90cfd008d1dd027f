/* The route table and URL handling: pattern matching segment by segment, percent-decoding,
 * parameter validation, query-string parsing. Every route the server answers is in api_routes;
 * tests/unit/api/test_router.c holds the table and docs/openapi.yaml together. */
#include "router.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dicom_rules.h"
#include "internal.h"

#define SVC(fn) offsetof(samda_api_services, fn)

const api_route api_routes[] = {
    /* operations */
    {API_GET, "/health", api_h_health, 0, 0, SVC(health), 0, NULL},
    {API_GET, "/metrics", api_h_metrics, 0, 0, API_NO_SERVICE, 0, NULL},
    /* DICOMweb STOW-RS (PS3.18 10.5) */
    {API_POST, "/dicomweb/studies", api_h_stow, API_ROLES_INGEST, API_F_STREAM_BODY | API_F_AUDIT, SVC(stow_instance), 0, NULL},
    {API_POST, "/dicomweb/studies/{study}", api_h_stow, API_ROLES_INGEST, API_F_STREAM_BODY | API_F_AUDIT, SVC(stow_instance), 0, NULL},
    {API_POST, "/dicomweb/sites/{site}/studies", api_h_stow, API_ROLES_INGEST, API_F_STREAM_BODY | API_F_AUDIT, SVC(stow_instance), 0, NULL},
    /* QIDO-RS (PS3.18 10.6) */
    {API_GET, "/dicomweb/studies", api_h_qido, API_ROLES_USER, API_F_AUDIT, SVC(qido), SAMDA_API_LEVEL_STUDY, NULL},
    {API_GET, "/dicomweb/series", api_h_qido, API_ROLES_USER, API_F_AUDIT, SVC(qido), SAMDA_API_LEVEL_SERIES, NULL},
    {API_GET, "/dicomweb/studies/{study}/series", api_h_qido, API_ROLES_USER, API_F_AUDIT, SVC(qido), SAMDA_API_LEVEL_SERIES, NULL},
    {API_GET, "/dicomweb/studies/{study}/instances", api_h_qido, API_ROLES_USER, API_F_AUDIT, SVC(qido), SAMDA_API_LEVEL_INSTANCE, NULL},
    {API_GET, "/dicomweb/studies/{study}/series/{series}/instances", api_h_qido, API_ROLES_USER, API_F_AUDIT, SVC(qido), SAMDA_API_LEVEL_INSTANCE, NULL},
    /* WADO-RS (PS3.18 10.4) */
    {API_GET, "/dicomweb/studies/{study}", api_h_wado, API_ROLES_USER, API_F_AUDIT, SVC(retrieve), SAMDA_API_LEVEL_STUDY, NULL},
    {API_GET, "/dicomweb/studies/{study}/series/{series}", api_h_wado, API_ROLES_USER, API_F_AUDIT, SVC(retrieve), SAMDA_API_LEVEL_SERIES, NULL},
    {API_GET, "/dicomweb/studies/{study}/series/{series}/instances/{instance}", api_h_wado, API_ROLES_USER, API_F_AUDIT, SVC(retrieve), SAMDA_API_LEVEL_INSTANCE, NULL},
    {API_GET, "/dicomweb/studies/{study}/metadata", api_h_metadata, API_ROLES_USER, API_F_AUDIT, SVC(metadata), SAMDA_API_LEVEL_STUDY, NULL},
    {API_GET, "/dicomweb/studies/{study}/series/{series}/metadata", api_h_metadata, API_ROLES_USER, API_F_AUDIT, SVC(metadata), SAMDA_API_LEVEL_SERIES, NULL},
    {API_GET, "/dicomweb/studies/{study}/series/{series}/instances/{instance}/metadata", api_h_metadata, API_ROLES_USER, API_F_AUDIT, SVC(metadata), SAMDA_API_LEVEL_INSTANCE, NULL},
    {API_GET, "/dicomweb/studies/{study}/series/{series}/instances/{instance}/frames/{frames}", api_h_frames, API_ROLES_USER, API_F_AUDIT, SVC(frame), SAMDA_API_LEVEL_INSTANCE, NULL},
    /* REST /api/v1 */
    {API_GET, "/api/v1/me", api_h_me, API_ROLES_INGEST | API_ROLES_USER, 0, API_NO_SERVICE, 0, NULL},
    {API_GET, "/api/v1/changes", api_h_changes, API_ROLES_USER, 0, SVC(changes), 0, NULL},
    {API_GET, "/api/v1/jobs", api_h_jobs_list, API_ROLES_USER, 0, SVC(jobs_list), 0, NULL},
    {API_GET, "/api/v1/jobs/{id}", api_h_job_get, API_ROLES_USER, 0, SVC(job_get), 0, NULL},
    {API_POST, "/api/v1/jobs/{id}/cancel", api_h_job_cancel, API_ROLES_USER, API_F_AUDIT, SVC(job_cancel), 0, NULL},
    {API_POST, "/api/v1/jobs/{id}/retry", api_h_job_retry, API_ROLES_USER, API_F_AUDIT, SVC(job_retry), 0, NULL},
    {API_POST, "/api/v1/studies/{study}/segment", api_h_segment, API_ROLES_USER, API_F_AUDIT | API_F_JSON_BODY, SVC(segment), 0, NULL},
    {API_GET, "/api/v1/studies/{study}/results", api_h_results, API_ROLES_USER, API_F_AUDIT, SVC(results), 0, NULL},
    {API_GET, "/api/v1/results/{id}", api_h_result_get, API_ROLES_USER, API_F_AUDIT, SVC(result_get), 0, NULL},
    {API_GET, "/api/v1/results/{id}/seg", api_h_result_seg, API_ROLES_USER, API_F_AUDIT, SVC(result_seg), 0, NULL},
    {API_GET, "/api/v1/results/{id}/slices/{slice}/mask.png", api_h_result_mask_png, API_ROLES_USER, API_F_AUDIT, SVC(result_png), 0, NULL},
    {API_GET, "/api/v1/results/{id}/slices/{slice}/overlay.png", api_h_result_overlay_png, API_ROLES_USER, API_F_AUDIT, SVC(result_png), 0, NULL},
    {API_POST, "/api/v1/results/{id}/corrections", api_h_result_correction, API_ROLES_USER, API_F_AUDIT | API_F_JSON_BODY, SVC(result_correction), 0, NULL},
    /* interactive sessions */
    {API_POST, "/api/v1/sessions", api_h_session_create, API_ROLES_USER, API_F_AUDIT | API_F_JSON_BODY, SVC(session_create), 0,
     "interactive sessions need the model worker: set [model] checkpoint"},
    {API_POST, "/api/v1/sessions/{session}/predict", api_h_session_predict, API_ROLES_USER, API_F_AUDIT | API_F_JSON_BODY,
     SVC(session_predict), 0, "interactive sessions need the model worker: set [model] checkpoint"},
    {API_DELETE, "/api/v1/sessions/{session}", api_h_session_delete, API_ROLES_USER, API_F_AUDIT, SVC(session_delete), 0,
     "interactive sessions need the model worker: set [model] checkpoint"},
    /* administration: admin only, every call audited */
    {API_GET, "/api/v1/sites", api_h_sites_list, API_ROLES_ADMIN, API_F_AUDIT, SVC(sites_list), 0, NULL},
    {API_GET, "/api/v1/sites/{site}", api_h_site_get, API_ROLES_ADMIN, API_F_AUDIT, SVC(site_get), 0, NULL},
    {API_PUT, "/api/v1/sites/{site}", api_h_site_put, API_ROLES_ADMIN, API_F_AUDIT | API_F_JSON_BODY, SVC(site_put), 0, NULL},
    {API_GET, "/api/v1/destinations", api_h_destinations_list, API_ROLES_ADMIN, API_F_AUDIT, SVC(destinations_list), 0, NULL},
    {API_POST, "/api/v1/destinations", api_h_destination_add, API_ROLES_ADMIN, API_F_AUDIT | API_F_JSON_BODY, SVC(destination_add), 0, NULL},
    {API_GET, "/api/v1/destinations/{name}", api_h_destination_get, API_ROLES_ADMIN, API_F_AUDIT, SVC(destination_get), 0, NULL},
    {API_DELETE, "/api/v1/destinations/{name}", api_h_destination_delete, API_ROLES_ADMIN, API_F_AUDIT, SVC(destination_delete), 0, NULL},
    {API_POST, "/api/v1/destinations/{name}/echo", api_h_destination_echo, API_ROLES_ADMIN, API_F_AUDIT, SVC(destination_echo), 0, NULL},
    {API_GET, "/api/v1/exports", api_h_exports_list, API_ROLES_ADMIN, API_F_AUDIT, SVC(exports_list), 0, NULL},
    {API_POST, "/api/v1/exports/{id}/retry", api_h_export_retry, API_ROLES_ADMIN, API_F_AUDIT, SVC(export_retry), 0, NULL},
    {API_GET, "/api/v1/audit", api_h_audit_list, API_ROLES_ADMIN, API_F_AUDIT, SVC(audit_list), 0, NULL},
    {API_GET, "/api/v1/sites/{site}/adapters", api_h_adapters_list, API_ROLES_ADMIN, API_F_AUDIT, SVC(adapters_list), 0, NULL},
    {API_POST, "/api/v1/sites/{site}/adapters", api_h_adapter_upload, API_ROLES_ADMIN, API_F_AUDIT | API_F_FILE_BODY, SVC(adapter_upload), 0, NULL},
    {API_POST, "/api/v1/sites/{site}/adapters/rollback", api_h_adapter_rollback, API_ROLES_ADMIN, API_F_AUDIT, SVC(adapter_rollback), 0, NULL},
    {API_POST, "/api/v1/sites/{site}/adapters/train", api_h_adapter_train, API_ROLES_ADMIN, API_F_AUDIT | API_F_JSON_BODY, SVC(adapter_train), 0,
     "training needs the model worker, which this build does not run"},
    {API_POST, "/api/v1/sites/{site}/adapters/{version}/activate", api_h_adapter_activate, API_ROLES_ADMIN, API_F_AUDIT, SVC(adapter_activate), 0, NULL},
    {API_POST, "/api/v1/sites/{site}/adapters/{version}/evaluate", api_h_adapter_evaluate, API_ROLES_ADMIN, API_F_AUDIT | API_F_JSON_BODY, SVC(adapter_evaluate), 0,
     "evaluation needs the model worker, which this build does not run"},
    {API_DELETE, "/api/v1/sites/{site}/adapters/{version}", api_h_adapter_delete, API_ROLES_ADMIN, API_F_AUDIT, SVC(adapter_delete), 0, NULL},
    {API_DELETE, "/api/v1/studies/{study}", api_h_study_delete, API_ROLES_ADMIN, API_F_AUDIT, SVC(study_delete), 0, NULL},
    {API_DELETE, "/api/v1/studies/{study}/series/{series}", api_h_study_delete, API_ROLES_ADMIN, API_F_AUDIT, SVC(study_delete), 0, NULL},
    {API_POST, "/api/v1/retention/run", api_h_retention_run, API_ROLES_ADMIN, API_F_AUDIT, SVC(retention_run), 0, NULL},
    {API_GET, "/api/v1/cluster", api_h_cluster, API_ROLES_ADMIN, 0, SVC(cluster), 0, NULL},
    {API_GET, "/api/v1/rules", api_h_rules_list, API_ROLES_ADMIN, API_F_AUDIT, SVC(rules_list), 0, NULL},
    {API_POST, "/api/v1/rules/test", api_h_rules_test, API_ROLES_ADMIN, API_F_AUDIT | API_F_JSON_BODY, SVC(rules_test), 0, NULL},
    /* MONAI Label compatibility (api/monailabel.c): 3D Slicer's and OHIF's MONAI Label clients */
    {API_GET, "/monailabel/info/", api_h_ml_info, API_ROLES_USER, API_F_STRAY_BODY, SVC(ml_info), 0, NULL},
    {API_GET, "/monailabel/auth/", api_h_ml_auth, 0, API_F_STRAY_BODY, API_NO_SERVICE, 0, NULL},
    {API_POST, "/monailabel/auth/token", api_h_ml_auth_token, 0, API_F_FORM_BODY, API_NO_SERVICE, 0, NULL},
    {API_GET, "/monailabel/auth/token/valid", api_h_ml_auth_valid, API_ROLES_USER, API_F_STRAY_BODY, API_NO_SERVICE, 0, NULL},
    {API_GET, "/monailabel/datastore/", api_h_ml_datastore, API_ROLES_USER, API_F_AUDIT | API_F_STRAY_BODY, SVC(ml_datastore), 0, NULL},
    {API_GET, "/monailabel/datastore/image", api_h_ml_image, API_ROLES_USER, API_F_AUDIT | API_F_STRAY_BODY, SVC(ml_image), 0, NULL},
    {API_PUT, "/monailabel/datastore/label", api_h_ml_save_label, API_ROLES_USER, API_F_AUDIT | API_F_FORM_BODY, SVC(ml_save_label), 0, NULL},
    {API_POST, "/monailabel/infer/{model}", api_h_ml_infer, API_ROLES_USER, API_F_AUDIT | API_F_FORM_BODY, SVC(ml_infer), 0,
     "inference needs the model worker: set [model] checkpoint"},
    {API_PUT, "/monailabel/session/", api_h_ml_session_put, API_ROLES_USER, API_F_AUDIT | API_F_FORM_BODY, SVC(ml_session_create), 0, NULL},
    {API_GET, "/monailabel/session/{session_id}", api_h_ml_session_get, API_ROLES_USER, API_F_AUDIT | API_F_STRAY_BODY, SVC(ml_session_get), 0, NULL},
    {API_DELETE, "/monailabel/session/{session_id}", api_h_ml_session_delete, API_ROLES_USER, API_F_AUDIT | API_F_STRAY_BODY, SVC(ml_session_delete), 0, NULL},
    {API_POST, "/monailabel/activelearning/{strategy}", api_h_ml_next_sample, API_ROLES_USER, API_F_AUDIT | API_F_JSON_BODY, SVC(ml_next_sample), 0, NULL},
    {API_GET, "/monailabel/train/", api_h_ml_train_status, API_ROLES_USER, API_F_STRAY_BODY, SVC(ml_train_status), 0, NULL},
    {API_POST, "/monailabel/train/", api_h_ml_train_start, API_ROLES_ADMIN, API_F_AUDIT | API_F_JSON_BODY, SVC(ml_train_start), 0,
     "training needs the model worker, which this build does not run"},
    {API_POST, "/monailabel/train/{model}", api_h_ml_train_start, API_ROLES_ADMIN, API_F_AUDIT | API_F_JSON_BODY, SVC(ml_train_start), 0,
     "training needs the model worker, which this build does not run"},
};
const size_t api_n_routes = sizeof api_routes / sizeof api_routes[0];

/* ---- parameter kinds ------------------------------------------------------------------------ */

/* The one UID rule (common/dicom_rules.h). */
bool api_valid_uid(const char *s) { return samda_uid_is_valid(s); }

bool api_valid_id(const char *s)
{
    size_t n = strlen(s);
    return n >= 1 && n <= 18 && strspn(s, "0123456789") == n;
}

bool api_valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 63) return false;
    if (strcmp(s, ".") == 0 || strcmp(s, "..") == 0) return false;
    for (size_t i = 0; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '.' || s[i] == '_' || s[i] == '-')) return false;
    return true;
}

bool api_valid_version(const char *s)
{
    size_t n = strlen(s);
    return n >= 1 && n <= 9 && strspn(s, "0123456789") == n && s[0] != '0';
}

/* {frames}: comma-separated 1-based frame numbers (PS3.18 10.4.1.1.4). */
static bool valid_frames(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 255 || strspn(s, "0123456789,") != n) return false;
    if (s[0] == ',' || s[n - 1] == ',' || strstr(s, ",,")) return false;
    return true;
}

static bool valid_slice(const char *s) { size_t n = strlen(s); return n >= 1 && n <= 5 && strspn(s, "0123456789") == n; }

static bool valid_session(const char *s) { return strlen(s) == 32 && strspn(s, "0123456789abcdef") == 32; }

typedef bool (*param_check)(const char *);
static const struct {
    const char *name;
    param_check check;
    const char *rule;
} param_kinds[] = {
    {"study", api_valid_uid, "a DICOM UID (digits and dots, at most 64)"},
    {"series", api_valid_uid, "a DICOM UID (digits and dots, at most 64)"},
    {"instance", api_valid_uid, "a DICOM UID (digits and dots, at most 64)"},
    {"id", api_valid_id, "a decimal id"},
    {"site", api_valid_name, "a name ([A-Za-z0-9._-], 1 to 63)"},
    {"name", api_valid_name, "a name ([A-Za-z0-9._-], 1 to 63)"},
    {"version", api_valid_version, "a version number (1 to 999999999)"},
    {"frames", valid_frames, "comma-separated frame numbers"},
    {"session", valid_session, "a session id (32 hex digits)"},
    {"slice", valid_slice, "a slice index (0 to 99999)"},
    {"model", api_valid_name, "a model name ([A-Za-z0-9._-], 1 to 63; GET /monailabel/info/ lists them)"},
    {"session_id", api_valid_uid, "a MONAI Label session id (the UID PUT /monailabel/session/ answered)"},
    {"strategy", api_valid_name, "a strategy name ([A-Za-z0-9._-], 1 to 63)"},
};

static const char *param_rule(const char *name, param_check *check)
{
    for (size_t i = 0; i < sizeof param_kinds / sizeof param_kinds[0]; i++)
        if (strcmp(param_kinds[i].name, name) == 0) {
            *check = param_kinds[i].check;
            return param_kinds[i].rule;
        }
    *check = api_valid_name; /* unknown kinds get the strictest generic rule */
    return "a name ([A-Za-z0-9._-], 1 to 63)";
}

/* ---- decoding ------------------------------------------------------------------------------- */

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

long api_pct_decode(const char *in, size_t len, char *out, size_t size, bool plus_is_space)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int c = (unsigned char)in[i];
        if (c == '%') {
            if (i + 2 >= len) return -1;
            int h = hexval((unsigned char)in[i + 1]), l = hexval((unsigned char)in[i + 2]);
            if (h < 0 || l < 0) return -1;
            c = h * 16 + l;
            i += 2;
        } else if (c == '+' && plus_is_space) {
            c = ' ';
        }
        if (c == 0) return -2;
        if (o + 1 >= size) return -3;
        out[o++] = (char)c;
    }
    if (size) out[o] = '\0';
    return (long)o;
}

/* ---- matching ------------------------------------------------------------------------------- */

unsigned api_method_bit(const char *m)
{
    static const struct { const char *name; unsigned bit; } t[] = {
        {"GET", API_GET}, {"POST", API_POST}, {"PUT", API_PUT}, {"DELETE", API_DELETE},
        {"PATCH", API_PATCH}, {"OPTIONS", API_OPTIONS}, {"HEAD", API_HEAD},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (strcmp(m, t[i].name) == 0) return t[i].bit;
    return 0;
}

void api_methods_str(unsigned mask, char *buf, size_t size)
{
    static const char *names[] = {"GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"};
    size_t o = 0;
    buf[0] = '\0';
    for (unsigned i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!(mask & (1u << i))) continue;
        int w = snprintf(buf + o, size - o, "%s%s", o ? ", " : "", names[i]);
        if (w < 0 || (size_t)w >= size - o) break;
        o += (size_t)w;
    }
}

const char *api_match_param(const api_match *m, const char *name)
{
    for (unsigned i = 0; i < m->n; i++)
        if (strcmp(m->names[i], name) == 0) return m->values[i];
    return NULL;
}

/* Does the path have this pattern's shape (same segment count, equal literals)? Path segments
 * are decoded once, by the caller, into segs; a segment that failed to decode (bad[k] != 0) can
 * only stand where the pattern has a parameter. */
#define MAX_SEGS 16
static bool shape_matches(const char *pattern, char segs[][API_PARAM_MAX + 1], const int *bad, unsigned nseg)
{
    const char *p = pattern;
    unsigned k = 0;
    while (*p == '/') {
        p++;
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (k >= nseg) return false;
        if (len >= 2 && p[0] == '{' && p[len - 1] == '}') {
            if (!bad[k] && !segs[k][0]) return false; /* an empty segment is never a parameter */
        } else {
            if (bad[k] || strlen(segs[k]) != len || memcmp(segs[k], p, len) != 0) return false;
        }
        k++;
        p += len;
    }
    return k == nseg;
}

/* Why segment k (0-based) could not be decoded. */
enum { SEG_OK = 0, SEG_ESCAPE, SEG_NUL, SEG_LONG, SEG_DOTS };
static api_match_result bad_segment(int why, unsigned k, samda_error *err)
{
    switch (why) {
    case SEG_ESCAPE: samda_fail(err, SAMDA_EINVAL, "malformed percent-encoding in path segment %u", k + 1); break;
    case SEG_NUL: samda_fail(err, SAMDA_EINVAL, "NUL byte in path segment %u", k + 1); break;
    case SEG_LONG: samda_fail(err, SAMDA_EINVAL, "path segment %u longer than %d bytes", k + 1, API_PARAM_MAX); break;
    default: samda_fail(err, SAMDA_EINVAL, "path segment %u contains '/' or '..'", k + 1); break;
    }
    return API_MATCH_BAD_PATH;
}

api_match_result api_route_match(const api_route *routes, size_t n, unsigned method,
                                 const char *raw_path, api_match *m, samda_error *err)
{
    char segs[MAX_SEGS][API_PARAM_MAX + 1];
    int bad[MAX_SEGS];
    unsigned nseg = 0;
    memset(m, 0, sizeof *m);
    if (method == API_HEAD) method = API_GET;
    if (raw_path[0] != '/') return samda_fail(err, SAMDA_EINVAL, "request path must start with '/'"), API_MATCH_BAD_PATH;

    /* Decode every segment; a decoded '/' (%2F), NUL, "." or ".." is refused whatever route it
     * would reach: such a value must never get near a file name. The refusal waits until the
     * route is known (it may only stand for a parameter), so that the server can authenticate
     * first: the rules of a route's parameters are for its authorised clients. */
    const char *p = raw_path;
    while (*p == '/') {
        p++;
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (nseg >= MAX_SEGS) return API_MATCH_NOT_FOUND;
        long d = api_pct_decode(p, len, segs[nseg], sizeof segs[nseg], false);
        bad[nseg] = d == -1 ? SEG_ESCAPE : d == -2 ? SEG_NUL : d == -3 ? SEG_LONG : SEG_OK;
        if (!bad[nseg] && (strchr(segs[nseg], '/') || strstr(segs[nseg], "..") || strcmp(segs[nseg], ".") == 0))
            bad[nseg] = SEG_DOTS;
        if (bad[nseg]) segs[nseg][0] = '\0';
        nseg++;
        p += len;
    }
    if (*p != '\0') return API_MATCH_NOT_FOUND;

    const api_route *hit = NULL;
    for (size_t i = 0; i < n; i++) {
        if (!shape_matches(routes[i].pattern, segs, bad, nseg)) continue;
        m->allowed |= routes[i].method;
        if (routes[i].method == method && !hit) {
            hit = &routes[i];
            m->index = i;
        }
    }
    if (!m->allowed) {
        /* No route has this shape; a segment that did not decode is still a bad request. */
        for (unsigned k = 0; k < nseg; k++)
            if (bad[k]) return bad_segment(bad[k], k, err);
        return API_MATCH_NOT_FOUND;
    }
    if (m->allowed & API_GET) m->allowed |= API_HEAD;
    m->allowed |= API_OPTIONS;
    if (!hit) return API_MATCH_METHOD;
    m->route = hit;

    /* Bind and validate the parameters of the route found. On failure m->route stays set (with
     * the parameters validated so far) so that the caller can authenticate before it answers. */
    const char *q = hit->pattern;
    unsigned k = 0;
    while (*q == '/') {
        q++;
        const char *e = strchr(q, '/');
        size_t len = e ? (size_t)(e - q) : strlen(q);
        if (len >= 2 && q[0] == '{' && q[len - 1] == '}' && m->n < API_MAX_PARAMS) {
            char name[sizeof m->names[0]];
            size_t nl = len - 2 < sizeof name - 1 ? len - 2 : sizeof name - 1;
            memcpy(name, q + 1, nl);
            name[nl] = '\0';
            if (bad[k]) return bad_segment(bad[k], k, err);
            param_check check;
            const char *rule = param_rule(name, &check);
            if (!check(segs[k]))
                return samda_fail(err, SAMDA_EINVAL, "path parameter %s must be %s", name, rule), API_MATCH_BAD_PATH;
            memcpy(m->names[m->n], name, nl + 1);
            memcpy(m->values[m->n], segs[k], strlen(segs[k]) + 1);
            m->n++;
        }
        k++;
        q += len;
    }
    return API_MATCH_OK;
}

/* ---- query strings -------------------------------------------------------------------------- */

samda_status api_query_args_parse(const char *qs, api_query_args *q, samda_error *err)
{
    memset(q, 0, sizeof *q);
    if (!qs || !*qs) return SAMDA_OK;
    size_t len = strlen(qs);
    if (len > API_QUERY_MAX_LEN)
        return samda_fail(err, SAMDA_EINVAL, "query string longer than %d bytes", API_QUERY_MAX_LEN);
    q->buf = malloc(2 * len + 2); /* decoded keys and values, each NUL-terminated */
    if (!q->buf) return samda_fail(err, SAMDA_ENOMEM, "query string: out of memory");
    char *out = q->buf;
    const char *s = qs;
    while (*s) {
        const char *amp = strchr(s, '&');
        size_t plen = amp ? (size_t)(amp - s) : strlen(s);
        if (plen > 0) {
            if (q->n >= API_QUERY_MAX_PAIRS) {
                api_query_args_free(q);
                return samda_fail(err, SAMDA_EINVAL, "query string has more than %d parameters", API_QUERY_MAX_PAIRS);
            }
            const char *eq = memchr(s, '=', plen);
            size_t klen = eq ? (size_t)(eq - s) : plen;
            size_t vlen = eq ? plen - klen - 1 : 0;
            long kd = api_pct_decode(s, klen, out, API_QUERY_MAX_KEY + 1, true);
            if (kd < 0 || kd == 0) {
                api_query_args_free(q);
                return samda_fail(err, SAMDA_EINVAL, kd == -3 ? "query parameter name longer than %d bytes"
                                                              : "malformed query parameter name (empty, bad escape or NUL; limit %d bytes)",
                                  API_QUERY_MAX_KEY);
            }
            char *key = out;
            out += kd + 1;
            long vd = api_pct_decode(eq ? eq + 1 : "", vlen, out, API_QUERY_MAX_VALUE + 1, true);
            if (vd < 0) {
                samda_fail(err, SAMDA_EINVAL, vd == -3 ? "query parameter %.64s: value longer than %d bytes"
                                                       : "query parameter %.64s: malformed value (bad escape or NUL; limit %d bytes)",
                           key, API_QUERY_MAX_VALUE);
                api_query_args_free(q);
                return SAMDA_EINVAL;
            }
            q->kv[q->n].key = key;
            q->kv[q->n].value = out;
            q->n++;
            out += vd + 1;
        }
        s += plen;
        if (*s == '&') s++;
    }
    return SAMDA_OK;
}

void api_query_args_free(api_query_args *q)
{
    if (!q) return;
    free(q->buf);
    memset(q, 0, sizeof *q);
}

const char *api_query_get(const api_query_args *q, const char *key)
{
    for (unsigned i = 0; i < q->n; i++)
        if (strcmp(q->kv[i].key, key) == 0) return q->kv[i].value;
    return NULL;
}
