/* api/reply.c: how a handler answers: problem+json errors (RFC 9457) with the status table's type
 * and title, JSON, bytes, a prepared response or 204. The first reply of a request wins.
 *
 * Titles that quote client input are kept printable ASCII; titles that come from the core have
 * samda's own directories hidden. Tested through the server, in tests/unit/api/test_server.c. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static bool set_response(api_request *r, unsigned status, struct MHD_Response *resp)
{
    if (r->resp) { /* first reply wins */
        if (resp) MHD_destroy_response(resp);
        return false;
    }
    if (!resp) { /* out of memory: a bare 500 is all that is left */
        resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        status = 500;
        if (!resp) return false;
    }
    r->resp = resp;
    r->status = status;
    return true;
}

void api_reply_response(api_request *r, unsigned status, struct MHD_Response *resp)
{
    set_response(r, status, resp);
}

void api_reply_bytes(api_request *r, unsigned status, const void *data, size_t len, const char *content_type)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, (void *)data, MHD_RESPMEM_MUST_COPY);
    if (resp && content_type) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    set_response(r, status, resp);
}

void api_reply_json(api_request *r, unsigned status, json_t *j, const char *content_type)
{
    char *text = j ? json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref(j);
    if (!text) {
        set_response(r, 500, NULL);
        return;
    }
    size_t len = strlen(text);
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(text);
        set_response(r, 500, NULL);
        return;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type ? content_type : "application/json");
    set_response(r, status, resp);
}

static void reply_problem_text(api_request *r, samda_status st, unsigned http, const char *title_in)
{
    if (r->resp) return;
    /* Titles may quote client input (a path, a parameter name): keep them printable ASCII so
     * the document is valid UTF-8 JSON whatever was sent. */
    char title[SAMDA_ERROR_MESSAGE_SIZE];
    snprintf(title, sizeof title, "%s", title_in);
    for (char *c = title; *c; c++)
        if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f) *c = '?';
    if (!http) http = (unsigned)samda_status_http(st);
    char type[64];
    snprintf(type, sizeof type, "urn:samda:status:%s", samda_status_name(st));
    /* instance: the path only (the query may carry search values) */
    const char *path = r->uri ? r->uri : "";
    size_t plen = r->query ? (size_t)(r->query - 1 - path) : strlen(path);
    char instance[1024];
    snprintf(instance, sizeof instance, "%.*s", (int)(plen < sizeof instance ? plen : sizeof instance - 1), path);
    for (char *c = instance; *c; c++)
        if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f) *c = '?';
    json_t *j = json_pack("{s:s, s:s, s:i, s:s, s:s, s:s}", "type", type, "title", title, "status", (int)http,
                          "detail", samda_status_str(st), "instance", instance, "code", samda_status_name(st));
    api_reply_json(r, http, j, "application/problem+json");
    if (http == 401 && r->resp) {
        const char *hdr = strstr(title, "invalid") ? "Bearer realm=\"samda\", error=\"invalid_token\"" : "Bearer realm=\"samda\"";
        MHD_add_response_header(r->resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, hdr);
    }
}

void api_reply_problem(api_request *r, samda_status st, unsigned http, const char *fmt, ...)
{
    char title[SAMDA_ERROR_MESSAGE_SIZE];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(title, sizeof title, fmt, ap);
    va_end(ap);
    reply_problem_text(r, st, http, title);
}

void api_reply_error(api_request *r, const samda_error *e)
{
    samda_status st = e->code == SAMDA_OK ? SAMDA_EINTERNAL : e->code;
    /* Service messages are for the client but arrive from elsewhere: keep them one line, and keep
     * samda's own paths (data directory, upload spool) out of them. */
    char title[SAMDA_ERROR_MESSAGE_SIZE], tmp[SAMDA_ERROR_MESSAGE_SIZE];
    samda_hide_dir(tmp, sizeof tmp, e->message[0] ? e->message : samda_status_str(st), r->api->tmp_dir);
    samda_hide_dir(title, sizeof title, tmp, r->api->private_dir);
    for (char *c = title; *c; c++)
        if ((unsigned char)*c < 0x20) *c = ' ';
    reply_problem_text(r, st, 0, title);
}

void api_reply_unavailable(api_request *r)
{
    const api_route *rt = r->match.route;
    if (rt && rt->unavailable) api_reply_problem(r, SAMDA_ENOTSUP, 501, "%s %s: %s", r->method, rt->pattern, rt->unavailable);
    else api_reply_problem(r, SAMDA_ENOTSUP, 501, "%s %s: not available in this build", r->method, rt ? rt->pattern : "");
}

void api_reply_no_content(api_request *r)
{
    set_response(r, 204, MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT));
}
