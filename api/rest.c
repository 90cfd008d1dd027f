/* /health, /metrics and the /api/v1 routes: each a thin mapping from HTTP (validated query,
 * path and body) to one service function and back to JSON. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

bool api_call_ok(api_request *r, samda_status st, samda_error *e, json_t **out)
{
    if (st == SAMDA_OK && (!out || *out)) return true;
    if (out && *out) {
        json_decref(*out);
        *out = NULL;
    }
    if (st == SAMDA_OK) samda_fail(e, SAMDA_EINTERNAL, "the core returned no result");
    else e->code = st;
    api_reply_error(r, e);
    return false;
}

/* Refuse query parameters other than the listed ones (NULL-terminated). */
bool api_only_params(api_request *r, const char *const *allowed)
{
    for (unsigned i = 0; i < r->args.n; i++) {
        bool ok = false;
        for (const char *const *a = allowed; *a; a++) ok |= strcmp(*a, r->args.kv[i].key) == 0;
        for (unsigned j = 0; j < i; j++) {
            if (strcmp(r->args.kv[j].key, r->args.kv[i].key) == 0) {
                api_reply_problem(r, SAMDA_EINVAL, 0, "query parameter %.64s given twice", r->args.kv[i].key);
                return false;
            }
        }
        if (!ok) {
            api_reply_problem(r, SAMDA_EINVAL, 0, "query parameter %.64s is not supported here", r->args.kv[i].key);
            return false;
        }
    }
    return true;
}

bool api_uparam(api_request *r, const char *name, uint64_t min, uint64_t max, uint64_t def, uint64_t *out)
{
    const char *v = api_query_get(&r->args, name);
    if (!v) {
        *out = def;
        return true;
    }
    if (!api_parse_u64(v, min, max, out)) {
        api_reply_problem(r, SAMDA_EINVAL, 0, "query parameter %s must be an integer from %llu to %llu", name,
                          (unsigned long long)min, (unsigned long long)max);
        return false;
    }
    return true;
}

static bool path_id(api_request *r, int64_t *id)
{
    uint64_t v;
    if (!api_parse_u64(api_match_param(&r->match, "id"), 0, INT64_MAX, &v)) {
        api_reply_problem(r, SAMDA_EINVAL, 0, "path parameter id must be a decimal id");
        return false;
    }
    *id = (int64_t)v;
    return true;
}

/* ---- operations ------------------------------------------------------------------------------ */

void api_h_health(api_request *r)
{
    samda_api *api = r->api;
    json_t *checks = NULL;
    bool healthy = false;
    samda_error e = {SAMDA_OK, ""};
    if (!api_call_ok(r, api->svc.health(api->svc.ctx, &checks, &healthy, &e), &e, &checks)) return;
    if (!json_is_object(checks)) {
        json_decref(checks);
        checks = json_object();
    }
    json_object_set_new(checks, "http", json_pack("{s:s, s:i}", "status", "ok", "port", (int)api->port));
    api_reply_json(r, healthy ? 200 : 503, json_pack("{s:s, s:o}", "status", healthy ? "ok" : "fail", "checks", checks), NULL);
}

void api_h_metrics(api_request *r)
{
    samda_api *api = r->api;
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    if (!out) {
        api_reply_problem(r, SAMDA_ENOMEM, 0, "out of memory");
        return;
    }
    api_metrics_write(api, out);
    if (api->svc.metrics) {
        samda_error e = {SAMDA_OK, ""};
        samda_status st = api->svc.metrics(api->svc.ctx, out, &e);
        if (st != SAMDA_OK) { /* the api's own families still go out; say why the rest is missing */
            for (char *c = e.message; *c; c++)
                if (*c == '\n') *c = ' ';
            fprintf(out, "\n# samda core metrics unavailable: %s\n", e.message[0] ? e.message : samda_status_str(st));
        }
    }
    if (fclose(out) != 0) {
        free(text);
        api_reply_problem(r, SAMDA_ENOMEM, 0, "out of memory");
        return;
    }
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(text);
        api_reply_problem(r, SAMDA_ENOMEM, 0, "out of memory");
        return;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
    api_reply_response(r, 200, resp);
}

/* ---- /api/v1 --------------------------------------------------------------------------------- */

/* GET /api/v1/me: the role of the token that asks (the console shows the pages it may use). */
void api_h_me(api_request *r)
{
    static const char *const none[] = {NULL};
    if (!api_only_params(r, none)) return;
    static const char *const names[] = {"none", "ingest", "user", "admin"};
    const char *role = names[r->role <= SAMDA_API_ROLE_ADMIN ? r->role : 0];
    api_reply_json(r, 200, json_pack("{s:s, s:I}", "role", role, "token_id", (json_int_t)r->token_id), NULL);
}

void api_h_changes(api_request *r)
{
    static const char *const allowed[] = {"since", "limit", NULL};
    uint64_t since, limit;
    if (!api_only_params(r, allowed) || !api_uparam(r, "since", 0, INT64_MAX, 0, &since) || !api_uparam(r, "limit", 1, 1000, 100, &limit)) return;
    samda_api *api = r->api;
    json_t *out = NULL;
    samda_error e = {SAMDA_OK, ""};
    if (!api_call_ok(r, api->svc.changes(api->svc.ctx, (int64_t)since, (unsigned)limit, &out, &e), &e, &out)) return;
    api_reply_json(r, 200, out, NULL);
}

void api_h_jobs_list(api_request *r)
{
    static const char *const allowed[] = {"state", "limit", "offset", NULL};
    uint64_t limit, offset;
    if (!api_only_params(r, allowed) || !api_uparam(r, "limit", 1, 1000, 100, &limit) || !api_uparam(r, "offset", 0, INT32_MAX, 0, &offset)) return;
    const char *state = api_query_get(&r->args, "state");
    if (state && !api_valid_name(state)) {
        api_reply_problem(r, SAMDA_EINVAL, 0, "query parameter state must be a name ([A-Za-z0-9._-], 1 to 63)");
        return;
    }
    samda_api *api = r->api;
    json_t *out = NULL;
    samda_error e = {SAMDA_OK, ""};
    if (!api_call_ok(r, api->svc.jobs_list(api->svc.ctx, state, (unsigned)limit, (unsigned)offset, &out, &e), &e, &out)) return;
    api_reply_json(r, 200, out, NULL);
}

void api_h_job_get(api_request *r)
{
    int64_t id;
    if (!path_id(r, &id)) return;
    samda_api *api = r->api;
    json_t *out = NULL;
    samda_error e = {SAMDA_OK, ""};
    if (!api_call_ok(r, api->svc.job_get(api->svc.ctx, id, &out, &e), &e, &out)) return;
    api_reply_json(r, 200, out, NULL);
}

void api_h_job_cancel(api_request *r)
{
    int64_t id;
    if (!path_id(r, &id)) return;
    samda_api *api = r->api;
    json_t *out = NULL;
    samda_error e = {SAMDA_OK, ""};
    if (!api_call_ok(r, api->svc.job_cancel(api->svc.ctx, id, r->token_id, &out, &e), &e, &out)) return;
    api_reply_json(r, 200, out, NULL);
}

void api_h_job_retry(api_request *r)
{
    int64_t id;
    if (!path_id(r, &id)) return;
    samda_api *api = r->api;
    json_t *out = NULL;
    samda_error e = {SAMDA_OK, ""};
    if (!api_call_ok(r, api->svc.job_retry(api->svc.ctx, id, r->token_id, &out, &e), &e, &out)) return;
    api_reply_json(r, 200, out, NULL);
}

#define API_MAX_LABELS 64

void api_h_segment(api_request *r)
{
    samda_api *api = r->api;
    json_t *body = NULL;
    if (r->body_len) {
        json_error_t je;
        body = json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES, &je);
        if (!body) {
            api_reply_problem(r, SAMDA_EINVAL, 0, "invalid JSON body at line %d column %d: %s", je.line, je.column, je.text);
            return;
        }
        if (!json_is_object(body)) {
            json_decref(body);
            api_reply_problem(r, SAMDA_EINVAL, 0, "JSON body must be an object");
            return;
        }
    }
    samda_api_segment_request req;
    memset(&req, 0, sizeof req);
    req.study_uid = api_match_param(&r->match, "study");
    req.token_id = r->token_id;
    const char *labels[API_MAX_LABELS];
    const char *key;
    json_t *v;
    const char *bad = NULL, *why = NULL;
    json_object_foreach(body, key, v) {
        if (strcmp(key, "labels") == 0) {
            size_t i;
            json_t *l;
            if (!json_is_array(v) || json_array_size(v) > API_MAX_LABELS) { bad = key; why = "an array of at most 64 label names"; break; }
            json_array_foreach(v, i, l) {
                if (!json_is_string(l) || !api_valid_name(json_string_value(l))) { bad = key; why = "an array of names ([A-Za-z0-9._-], 1 to 63)"; break; }
                labels[i] = json_string_value(l);
            }
            if (bad) break;
            req.n_labels = (unsigned)json_array_size(v);
            req.labels = req.n_labels ? labels : NULL;
        } else if (strcmp(key, "adapter_version") == 0 || strcmp(key, "transaction_id") == 0) {
            if (!json_is_string(v) || !api_valid_name(json_string_value(v))) { bad = key; why = "a name ([A-Za-z0-9._-], 1 to 63)"; break; }
            if (key[0] == 'a') req.adapter_version = json_string_value(v);
            else req.transaction_id = json_string_value(v);
        } else if (strcmp(key, "tta") == 0) {
            const char *t = json_string_value(v);
            if (!t || (strcmp(t, "off") && strcmp(t, "episodic") && strcmp(t, "continual"))) { bad = key; why = "one of \"off\", \"episodic\", \"continual\""; break; }
            req.tta = t;
        } else {
            bad = key;
            why = NULL;
            break;
        }
    }
    if (bad) {
        if (why) api_reply_problem(r, SAMDA_EINVAL, 0, "body member %.64s must be %s", bad, why);
        else api_reply_problem(r, SAMDA_EINVAL, 0, "unknown body member %.64s (known: labels, adapter_version, tta, transaction_id)", bad);
        json_decref(body);
        return;
    }
    json_t *out = NULL;
    samda_error e = {SAMDA_OK, ""};
    samda_status st = api->svc.segment(api->svc.ctx, &req, &out, &e);
    json_decref(body); /* the request's strings pointed into it */
    if (!api_call_ok(r, st, &e, &out)) return;
    json_t *id = json_object_get(out, "id");
    char loc[64] = "";
    if (json_is_integer(id)) snprintf(loc, sizeof loc, "/api/v1/jobs/%lld", (long long)json_integer_value(id));
    api_reply_json(r, 202, out, NULL);
    if (loc[0] && r->resp) MHD_add_response_header(r->resp, MHD_HTTP_HEADER_LOCATION, loc);
}

void api_h_results(api_request *r)
{
    samda_api *api = r->api;
    json_t *out = NULL;
    samda_error e = {SAMDA_OK, ""};
    if (!api_call_ok(r, api->svc.results(api->svc.ctx, api_match_param(&r->match, "study"), &out, &e), &e, &out)) return;
    api_reply_json(r, 200, out, NULL);
}

bool api_json_body(api_request *r, bool required, json_t **out)
{
    *out = NULL;
    if (!r->body_len) {
        if (!required) return true;
        api_reply_problem(r, SAMDA_EINVAL, 0, "%s %s needs a JSON object body (Content-Type: application/json)", r->method,
                          r->match.route->pattern);
        return false;
    }
    json_error_t je;
    json_t *body = json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES, &je);
    if (!body) {
        api_reply_problem(r, SAMDA_EINVAL, 0, "invalid JSON body at line %d column %d: %s", je.line, je.column, je.text);
        return false;
    }
    if (!json_is_object(body)) {
        json_decref(body);
        api_reply_problem(r, SAMDA_EINVAL, 0, "JSON body must be an object");
        return false;
    }
    *out = body;
    return true;
}

/* ---- interactive sessions ------------------------------------------------------------------------ */

static const char *const session_no_params[] = {NULL};

void api_h_session_create(api_request *r)
{
    json_t *body;
    if (!api_only_params(r, session_no_params) || !api_json_body(r, true, &body)) return;
    samda_api *api = r->api;
    json_t *out = NULL;
    samda_error e = {SAMDA_OK, ""};
    samda_status st = api->svc.session_create(api->svc.ctx, body, r->token_id, &out, &e);
    json_decref(body);
    if (!api_call_ok(r, st, &e, &out)) return;
    char loc[128] = "";
    const char *id = json_string_value(json_object_get(out, "id"));
    if (id) snprintf(loc, sizeof loc, "/api/v1/sessions/%.40s", id);
    api_reply_json(r, 201, out, NULL);
    if (loc[0] && r->resp) MHD_add_response_header(r->resp, MHD_HTTP_HEADER_LOCATION, loc);
}

void api_h_session_predict(api_request *r)
{
    json_t *body;
    if (!api_only_params(r, session_no_params) || !api_json_body(r, true, &body)) return;
    samda_api *api = r->api;
    json_t *out = NULL;
    samda_error e = {SAMDA_OK, ""};
    samda_status st = api->svc.session_predict(api->svc.ctx, api_match_param(&r->match, "session"), body, r->token_id,
                                               &out, &e);
    json_decref(body);
    if (!api_call_ok(r, st, &e, &out)) return;
    api_reply_json(r, 200, out, NULL);
}

void api_h_session_delete(api_request *r)
{
    if (!api_only_params(r, session_no_params)) return;
    samda_api *api = r->api;
    samda_error e = {SAMDA_OK, ""};
    samda_status st = api->svc.session_delete(api->svc.ctx, api_match_param(&r->match, "session"), r->token_id, &e);
    if (st != SAMDA_OK) {
        api_call_ok(r, st, &e, NULL);
        return;
    }
    api_reply_no_content(r);
}

/* ---- results ---------------------------------------------------------------------------------------- */

void api_h_result_correction(api_request *r)
{
    int64_t id;
    json_t *body;
    if (!api_only_params(r, session_no_params) || !path_id(r, &id) || !api_json_body(r, true, &body)) return;
    samda_api *api = r->api;
    json_t *out = NULL;
    samda_error e = {SAMDA_OK, ""};
    samda_status st = api->svc.result_correction(api->svc.ctx, id, body, r->token_id, &out, &e);
    json_decref(body);
    if (!api_call_ok(r, st, &e, &out)) return;
    api_reply_json(r, 201, out, NULL);
}

void api_h_result_get(api_request *r)
{
    int64_t id;
    if (!api_only_params(r, session_no_params) || !path_id(r, &id)) return;
    samda_api *api = r->api;
    json_t *out = NULL;
    samda_error e = {SAMDA_OK, ""};
    if (!api_call_ok(r, api->svc.result_get(api->svc.ctx, id, &out, &e), &e, &out)) return;
    api_reply_json(r, 200, out, NULL);
}

void api_h_result_seg(api_request *r)
{
    int64_t id;
    if (!api_only_params(r, session_no_params) || !path_id(r, &id)) return;
    samda_api *api = r->api;
    void *data = NULL;
    size_t len = 0;
    samda_error e = {SAMDA_OK, ""};
    samda_status st = api->svc.result_seg(api->svc.ctx, id, &data, &len, &e);
    if (st != SAMDA_OK) {
        api_call_ok(r, st, &e, NULL);
        return;
    }
    api_reply_bytes(r, 200, data, len, "application/dicom");
    free(data);
}

static void result_png(api_request *r, bool overlay)
{
    static const char *const label_param[] = {"label", NULL};
    int64_t id;
    if (!api_only_params(r, overlay ? session_no_params : label_param) || !path_id(r, &id)) return;
    uint64_t slice;
    if (!api_parse_u64(api_match_param(&r->match, "slice"), 0, 99999, &slice)) {
        api_reply_problem(r, SAMDA_EINVAL, 0, "path parameter slice must be 0..99999");
        return;
    }
    samda_api *api = r->api;
    void *png = NULL;
    size_t len = 0;
    samda_error e = {SAMDA_OK, ""};
    samda_status st = api->svc.result_png(api->svc.ctx, id, (unsigned)slice, api_query_get(&r->args, "label"), overlay,
                                          &png, &len, &e);
    if (st != SAMDA_OK) {
        api_call_ok(r, st, &e, NULL);
        return;
    }
    api_reply_bytes(r, 200, png, len, "image/png");
    free(png);
}

void api_h_result_mask_png(api_request *r) { result_png(r, false); }
void api_h_result_overlay_png(api_request *r) { result_png(r, true); }
