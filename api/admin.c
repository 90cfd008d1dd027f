/* Administration routes (/api/v1/sites, /api/v1/destinations, /api/v1/exports, per-site adapters): role admin,
 * every call audited. Each handler validates the path and query, parses the JSON body (the core
 * validates its members) or hands over the spooled upload, and maps the service's answer to
 * HTTP: 200, 201 with Location, 202 for queued jobs, 204 for deletions. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

static const char *const no_params[] = {NULL};

static const char *site_param(api_request *r) { return api_match_param(&r->match, "site"); }

static int version_param(api_request *r)
{
    const char *v = api_match_param(&r->match, "version");
    return v ? atoi(v) : 0; /* validated by the router: 1..999999999 */
}

static void reply_created(api_request *r, json_t *out, const char *location)
{
    api_reply_json(r, 201, out, NULL);
    if (location && r->resp) MHD_add_response_header(r->resp, MHD_HTTP_HEADER_LOCATION, location);
}

/* ---- sites -------------------------------------------------------------------------------------- */

void api_h_sites_list(api_request *r)
{
    if (!api_only_params(r, no_params)) return;
    samda_api *api = r->api;
    json_t *out = NULL;
    samda_error e = {SAMDA_OK, ""};
    if (!api_call_ok(r, api->svc.sites_list(api->svc.ctx, &out, &e), &e, &out)) return;
    api_reply_json(r, 200, out, NULL);
}

void api_h_site_get(api_request *r)
{
    if (!api_only_params(r, no_params)) return;
    samda_api *api = r->api;
    json_t *out = NULL;
    samda_error e = {SAMDA_OK, ""};
    if (!api_call_ok(r, api->svc.site_get(api->svc.ctx, site_param(r), &out, &e), &e, &out)) return;
    api_reply_json(r, 200, out, NULL);
}

void api_h_site_put(api_request *r)
{
    json_t *body;
    if (!api_only_params(r, no_params) || !api_json_body(r, true, &body)) return;
    samda_api *api = r->api;
    json_t *out = NULL;
    bool created = false;
    samda_error e = {SAMDA_OK, ""};
    samda_status st = api->svc.site_put(api->svc.ctx, site_param(r), body, r->token_id, &out, &created, &e);
    json_decref(body);
    if (!api_call_ok(r, st, &e, &out)) return;
    if (created) {
        char loc[128];
        snprintf(loc, sizeof loc, "/api/v1/sites/%s", site_param(r));
        reply_created(r, out, loc);
    } else {
        api_reply_json(r, 200, out, NULL);
    }
}

/* ---- destinations ------------------------------------------------------------------------------- */

void api_h_destinations_list(api_request *r)
{
    if (!api_only_params(r, no_params)) return;
    samda_api *api = r->api;
    json_t *out = NULL;
    samda_error e = {SAMDA_OK, ""};
    if (!api_call_ok(r, api->svc.destinations_list(api->svc.ctx, &out, &e), &e, &out)) return;
    api_reply_json(r, 200, out, NULL);
}

void api_h_destination_add(api_request *r)
{
    json_t *body;
    if (!api_only_params(r, no_params) || !api_json_body(r, true, &body)) return;
    samda_api *api = r->api;
    json_t *out = NULL;
    samda_error e = {SAMDA_OK, ""};
    samda_status st = api->svc.destination_add(api->svc.ctx, body, r->token_id, &out, &e);
    json_decref(body);
    if (!api_call_ok(r, st, &e, &out)) return;
    const char *name = json_string_value(json_object_get(out, "name"));
    char loc[128] = "";
    if (name && api_valid_name(name)) snprintf(loc, sizeof loc, "/api/v1/destinations/%s", name);
    reply_created(r, out, loc[0] ? loc : NULL);
}

void api_h_destination_get(api_request *r)
{
    if (!api_only_params(r, no_params)) return;
    samda_api *api = r->api;
    json_t *out = NULL;
    samda_error e = {SAMDA_OK, ""};
    if (!api_call_ok(r, api->svc.destination_get(api->svc.ctx, api_match_param(&r->match, "name"), &out, &e), &e, &out)) return;
    api_reply_json(r, 200, out, NULL);
}

void api_h_destination_delete(api_request *r)
{
    if (!api_only_params(r, no_params)) return;
    samda_api *api = r->api;
    samda_error e = {SAMDA_OK, ""};
    samda_status st = api->svc.destination_delete(api->svc.ctx, api_match_param(&r->match, "name"), r->token_id, &e);
    if (st != SAMDA_OK) {
        api_call_ok(r, st, &e, NULL);
        return;
    }
    api_reply_no_content(r);
}

void api_h_destination_echo(api_request *r)
{
    if (!api_only_params(r, no_params)) return;
    samda_api *api = r->api;
    json_t *out = NULL;
    samda_error e = {SAMDA_OK, ""};
    if (!api_call_ok(r, api->svc.destination_echo(api->svc.ctx, api_match_param(&r->match, "name"), r->token_id, &out, &e), &e,
                     &out))
        return;
    api_reply_json(r, 200, out, NULL);
}

/* ---- exports: the queue of DICOM-SEG results for destinations ---------------------------------- */

void api_h_exports_list(api_request *r)
{
    static const char *const allowed[] = {"state", "destination", "result", "limit", "offset", NULL};
    static const char *const states[] = {"pending", "sending", "done", "failed"};
    uint64_t limit, offset, result;
    if (!api_only_params(r, allowed) || !api_uparam(r, "limit", 1, 1000, 100, &limit) ||
        !api_uparam(r, "offset", 0, INT32_MAX, 0, &offset) || !api_uparam(r, "result", 1, INT64_MAX, 0, &result))
        return;
    samda_api_export_filter f = {api_query_get(&r->args, "state"), api_query_get(&r->args, "destination"), (int64_t)result,
                                 (unsigned)limit, (unsigned)offset};
    if (f.state) {
        bool known = false;
        for (size_t i = 0; i < sizeof states / sizeof *states; i++) known |= strcmp(f.state, states[i]) == 0;
        if (!known) {
            api_reply_problem(r, SAMDA_EINVAL, 0, "query parameter state must be pending, sending, done or failed");
            return;
        }
    }
    if (f.destination && !api_valid_name(f.destination)) {
        api_reply_problem(r, SAMDA_EINVAL, 0, "query parameter destination must be a name ([A-Za-z0-9._-], 1 to 63)");
        return;
    }
    samda_api *api = r->api;
    json_t *out = NULL;
    samda_error e = {SAMDA_OK, ""};
    if (!api_call_ok(r, api->svc.exports_list(api->svc.ctx, &f, &out, &e), &e, &out)) return;
    api_reply_json(r, 200, out, NULL);
}

void api_h_export_retry(api_request *r)
{
    uint64_t id;
    if (!api_only_params(r, no_params)) return;
    if (!api_parse_u64(api_match_param(&r->match, "id"), 1, INT64_MAX, &id)) {
        api_reply_problem(r, SAMDA_EINVAL, 0, "path parameter id must be an export id (1 or more)");
        return;
    }
    samda_api *api = r->api;
    json_t *out = NULL;
    samda_error e = {SAMDA_OK, ""};
    if (!api_call_ok(r, api->svc.export_retry(api->svc.ctx, (int64_t)id, r->token_id, &out, &e), &e, &out)) return;
    api_reply_json(r, 200, out, NULL);
}

/* ---- the audit log ------------------------------------------------------------------------------- */

/* A text filter of the audit query: 1 to 128 printable ASCII characters. */
static bool audit_text_ok(api_request *r, const char *name, const char *v)
{
    size_t n = v ? strlen(v) : 0;
    bool ok = !v || n >= 1;
    for (size_t i = 0; ok && i < n; i++) ok = v[i] >= 0x20 && v[i] < 0x7f;
    if (!ok || n > 128) {
        api_reply_problem(r, SAMDA_EINVAL, 0, "query parameter %s must be 1 to 128 printable ASCII characters", name);
        return false;
    }
    return true;
}

void api_h_audit_list(api_request *r)
{
    static const char *const allowed[] = {"actor", "action", "since_ms", "until_ms", "before", "limit", NULL};
    uint64_t limit, since, until, before;
    if (!api_only_params(r, allowed) || !api_uparam(r, "limit", 1, 1000, 100, &limit) ||
        !api_uparam(r, "since_ms", 0, INT64_MAX, 0, &since) || !api_uparam(r, "until_ms", 0, INT64_MAX, 0, &until) ||
        !api_uparam(r, "before", 1, INT64_MAX, 0, &before))
        return;
    samda_api_audit_filter f = {api_query_get(&r->args, "actor"), api_query_get(&r->args, "action"), (int64_t)since,
                                (int64_t)until, (int64_t)before, (unsigned)limit};
    if (!audit_text_ok(r, "actor", f.actor) || !audit_text_ok(r, "action", f.action)) return;
    samda_api *api = r->api;
    json_t *out = NULL;
    samda_error e = {SAMDA_OK, ""};
    if (!api_call_ok(r, api->svc.audit_list(api->svc.ctx, &f, &out, &e), &e, &out)) return;
    api_reply_json(r, 200, out, NULL);
}

/* ---- adapters ----------------------------------------------------------------------------------- */

void api_h_adapters_list(api_request *r)
{
    if (!api_only_params(r, no_params)) return;
    samda_api *api = r->api;
    json_t *out = NULL;
    samda_error e = {SAMDA_OK, ""};
    if (!api_call_ok(r, api->svc.adapters_list(api->svc.ctx, site_param(r), &out, &e), &e, &out)) return;
    api_reply_json(r, 200, out, NULL);
}

void api_h_adapter_upload(api_request *r)
{
    static const char *const allowed[] = {"parent", NULL};
    uint64_t parent;
    if (!api_only_params(r, allowed) || !api_uparam(r, "parent", 1, 999999999, 0, &parent)) return;
    if (!r->file_path || r->body_total == 0) {
        api_reply_problem(r, SAMDA_EINVAL, 0, "the adapter upload is empty: send the .safetensors file as the body");
        return;
    }
    if (r->file_fd >= 0) {
        if (close(r->file_fd) != 0) {
            r->file_fd = -1;
            api_reply_problem(r, SAMDA_EIO, 0, "closing the spooled upload failed");
            return;
        }
        r->file_fd = -1;
    }
    samda_api *api = r->api;
    samda_api_upload up = {site_param(r), r->file_path, r->body_total, api_header(r, MHD_HTTP_HEADER_CONTENT_TYPE),
                           (int)parent, r->token_id};
    json_t *out = NULL;
    samda_error e = {SAMDA_OK, ""};
    samda_status st = api->svc.adapter_upload(api->svc.ctx, &up, &out, &e);
    api_file_body_free(r); /* whatever the core left of it */
    if (!api_call_ok(r, st, &e, &out)) return;
    json_t *v = json_object_get(out, "version");
    char loc[160] = "";
    if (json_is_integer(v)) snprintf(loc, sizeof loc, "/api/v1/sites/%s/adapters/%lld", site_param(r), (long long)json_integer_value(v));
    reply_created(r, out, loc[0] ? loc : NULL);
}

void api_h_adapter_activate(api_request *r)
{
    if (!api_only_params(r, no_params)) return;
    samda_api *api = r->api;
    json_t *out = NULL;
    samda_error e = {SAMDA_OK, ""};
    if (!api_call_ok(r, api->svc.adapter_activate(api->svc.ctx, site_param(r), version_param(r), r->token_id, &out, &e), &e,
                     &out))
        return;
    api_reply_json(r, 200, out, NULL);
}

void api_h_adapter_rollback(api_request *r)
{
    if (!api_only_params(r, no_params)) return;
    samda_api *api = r->api;
    json_t *out = NULL;
    samda_error e = {SAMDA_OK, ""};
    if (!api_call_ok(r, api->svc.adapter_rollback(api->svc.ctx, site_param(r), r->token_id, &out, &e), &e, &out)) return;
    api_reply_json(r, 200, out, NULL);
}

void api_h_adapter_delete(api_request *r)
{
    if (!api_only_params(r, no_params)) return;
    samda_api *api = r->api;
    samda_error e = {SAMDA_OK, ""};
    samda_status st = api->svc.adapter_delete(api->svc.ctx, site_param(r), version_param(r), r->token_id, &e);
    if (st != SAMDA_OK) {
        api_call_ok(r, st, &e, NULL);
        return;
    }
    api_reply_no_content(r);
}

void api_h_study_delete(api_request *r)
{
    if (!api_only_params(r, no_params)) return;
    samda_api *api = r->api;
    json_t *out = NULL;
    samda_error e = {SAMDA_OK, ""};
    const char *study = api_match_param(&r->match, "study"), *series = api_match_param(&r->match, "series");
    if (!api_call_ok(r, api->svc.study_delete(api->svc.ctx, study, series, r->token_id, &out, &e), &e, &out)) return;
    api_reply_json(r, 200, out, NULL);
}

void api_h_retention_run(api_request *r)
{
    if (!api_only_params(r, no_params)) return;
    samda_api *api = r->api;
    json_t *out = NULL;
    samda_error e = {SAMDA_OK, ""};
    if (!api_call_ok(r, api->svc.retention_run(api->svc.ctx, r->token_id, &out, &e), &e, &out)) return;
    api_reply_json(r, 200, out, NULL);
}

void api_h_rules_list(api_request *r)
{
    if (!api_only_params(r, no_params)) return;
    samda_api *api = r->api;
    json_t *out = NULL;
    samda_error e = {SAMDA_OK, ""};
    if (!api_call_ok(r, api->svc.rules_list(api->svc.ctx, &out, &e), &e, &out)) return;
    api_reply_json(r, 200, out, NULL);
}

void api_h_cluster(api_request *r)
{
    if (!api_only_params(r, no_params)) return;
    samda_api *api = r->api;
    json_t *out = NULL;
    samda_error e = {SAMDA_OK, ""};
    if (!api_call_ok(r, api->svc.cluster(api->svc.ctx, &out, &e), &e, &out)) return;
    api_reply_json(r, 200, out, NULL);
}

void api_h_rules_test(api_request *r)
{
    json_t *body;
    if (!api_only_params(r, no_params) || !api_json_body(r, true, &body)) return;
    samda_api *api = r->api;
    json_t *out = NULL;
    samda_error e = {SAMDA_OK, ""};
    samda_status st = api->svc.rules_test(api->svc.ctx, body, &out, &e);
    json_decref(body);
    if (!api_call_ok(r, st, &e, &out)) return;
    api_reply_json(r, 200, out, NULL);
}

static void reply_job(api_request *r, json_t *out)
{
    json_t *id = json_object_get(out, "id");
    char loc[64] = "";
    if (json_is_integer(id)) snprintf(loc, sizeof loc, "/api/v1/jobs/%lld", (long long)json_integer_value(id));
    api_reply_json(r, 202, out, NULL);
    if (loc[0] && r->resp) MHD_add_response_header(r->resp, MHD_HTTP_HEADER_LOCATION, loc);
}

void api_h_adapter_train(api_request *r)
{
    json_t *body;
    if (!api_only_params(r, no_params) || !api_json_body(r, false, &body)) return;
    samda_api *api = r->api;
    json_t *out = NULL;
    samda_error e = {SAMDA_OK, ""};
    samda_status st = api->svc.adapter_train(api->svc.ctx, site_param(r), body, r->token_id, &out, &e);
    json_decref(body);
    if (!api_call_ok(r, st, &e, &out)) return;
    reply_job(r, out);
}

void api_h_adapter_evaluate(api_request *r)
{
    json_t *body;
    if (!api_only_params(r, no_params) || !api_json_body(r, false, &body)) return;
    samda_api *api = r->api;
    json_t *out = NULL;
    samda_error e = {SAMDA_OK, ""};
    samda_status st = api->svc.adapter_evaluate(api->svc.ctx, site_param(r), version_param(r), body, r->token_id, &out, &e);
    json_decref(body);
    if (!api_call_ok(r, st, &e, &out)) return;
    reply_job(r, out);
}
