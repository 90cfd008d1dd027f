/* api/request.c: the request head, before any handler runs: the message framing (request
 * smuggling refused), the route, the bearer token and its role, the service behind the route and
 * the query string; then how the body will be read (body.c). Also what handlers read from the
 * request: a header, a number, the base of the URLs they hand out.
 *
 * Tested through the server in tests/unit/api/test_server.c (not_found_and_method,
 * auth_roles_and_audit, ambiguous_framing_refused, path_params_checked_after_auth, cors). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "internal.h"
#include "ui.h"

/* ---- what handlers read from a request ------------------------------------------------------ */

const char *api_header(api_request *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

bool api_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    if (!s || !*s || strlen(s) > 19 || strspn(s, "0123456789") != strlen(s)) return false;
    errno = 0;
    unsigned long long v = strtoull(s, NULL, 10);
    if (errno || v < min || v > max) return false;
    *out = v;
    return true;
}

/* The base of absolute URLs samda hands out (RetrieveURL, BulkDataURI). The Host header is the
 * client's word: a URL built from it would let any client make samda name another server (cache
 * poisoning, links to an attacker's host in responses that others read). Without public_url the base
 * is the address and port the connection actually arrived on, and the listener's scheme. */
void api_base_url(api_request *r, char *buf, size_t size)
{
    samda_api *api = r->api;
    buf[0] = '\0';
    if (api->public_url) {
        snprintf(buf, size, "%s", api->public_url);
        size_t n = strlen(buf);
        while (n && buf[n - 1] == '/') buf[--n] = '\0';
        return;
    }
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (!ci || getsockname(ci->connect_fd, (struct sockaddr *)&ss, &sl) != 0) return;
    const char *scheme = api->tls ? "https" : "http";
    char host[INET6_ADDRSTRLEN];
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;
        if (!inet_ntop(AF_INET, &sin->sin_addr, host, sizeof host)) return;
        snprintf(buf, size, "%s://%s:%u", scheme, host, (unsigned)ntohs(sin->sin_port));
    } else if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&ss;
        if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) { /* an IPv4 client of a dual-stack listener */
            if (!inet_ntop(AF_INET, &sin6->sin6_addr.s6_addr[12], host, sizeof host)) return;
            snprintf(buf, size, "%s://%s:%u", scheme, host, (unsigned)ntohs(sin6->sin6_port));
        } else {
            if (!inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof host)) return;
            snprintf(buf, size, "%s://[%s]:%u", scheme, host, (unsigned)ntohs(sin6->sin6_port));
        }
    }
}

/* ---- authentication ------------------------------------------------------------------------- */

static bool authenticate(api_request *r)
{
    samda_api *api = r->api;
    const api_route *rt = r->match.route;
    if (!rt->roles) return true;
    if (!api->p.auth_required) {
        r->role = SAMDA_API_ROLE_ADMIN;
        return true;
    }
    const char *h = api_header(r, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h) {
        atomic_fetch_add(&api->metrics.auth_failures, 1);
        api_reply_problem(r, SAMDA_EAUTH, 0, "authentication required: send Authorization: Bearer <token>");
        return false;
    }
    if (strncasecmp(h, "Bearer ", 7) != 0) {
        atomic_fetch_add(&api->metrics.auth_failures, 1);
        api_reply_problem(r, SAMDA_EAUTH, 0, "invalid credentials: only the Bearer scheme is accepted");
        return false;
    }
    const char *tok = h + 7;
    while (*tok == ' ') tok++;
    size_t n = strlen(tok);
    /* RFC 6750 2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=" */
    size_t body = strspn(tok, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/");
    if (n == 0 || n > 512 || body == 0 || strspn(tok + body, "=") != n - body) {
        atomic_fetch_add(&api->metrics.auth_failures, 1);
        api_reply_problem(r, SAMDA_EAUTH, 0, "invalid bearer token syntax");
        return false;
    }
    samda_api_role role = SAMDA_API_ROLE_NONE;
    int64_t id = -1;
    samda_error e = {SAMDA_OK, ""};
    samda_status st = api->svc.auth_check(api->svc.ctx, tok, &role, &id, &e);
    if (st == SAMDA_EAUTH || (st == SAMDA_OK && role == SAMDA_API_ROLE_NONE)) {
        atomic_fetch_add(&api->metrics.auth_failures, 1);
        api_reply_problem(r, SAMDA_EAUTH, 0, "invalid or revoked bearer token");
        return false;
    }
    if (st != SAMDA_OK) {
        e.code = st;
        api_reply_error(r, &e);
        return false;
    }
    r->role = role;
    r->token_id = id;
    if (!(rt->roles & API_ROLE_BIT(role))) {
        static const char *names[] = {"none", "ingest", "user", "admin"};
        const char *need = rt->roles == API_ROLES_INGEST ? "ingest or admin" : rt->roles == API_ROLES_USER ? "user or admin" : "admin";
        api_reply_problem(r, SAMDA_EFORBIDDEN, 0, "%s %s needs role %s (token has role %s)", r->method, rt->pattern, need,
                          names[(unsigned)role < 4 ? role : 0]);
        return false;
    }
    return true;
}


/* ---- message framing ------------------------------------------------------------------------
 * libmicrohttpd 0.9.75 takes the first of several Content-Length headers, ignores Content-Length when
 * Transfer-Encoding is present, and keeps such connections open. Behind a proxy that frames the
 * message the other way, the rest of the body would then be read as a next request (request
 * smuggling). So, before anything else: differing Content-Length values are refused (RFC 9110 8.6,
 * RFC 9112 6.3 item 5), identical repeats are one value; a request with both Transfer-Encoding and
 * Content-Length is refused (RFC 9112 6.1 allows that or processing it as chunked, and in both cases
 * the connection must close); a Transfer-Encoding other than "chunked" is refused, with 400 when
 * chunked is not its final coding (RFC 9112 6.3 item 4) and 501 otherwise (6.1). Each of these
 * answers closes the connection. */

typedef struct framing {
    unsigned n_cl, n_te;
    uint64_t cl;          /* first Content-Length value */
    bool cl_bad;          /* a Content-Length value that is not a number */
    bool cl_differ;       /* two Content-Length values differ */
    const char *te;       /* last Transfer-Encoding value */
} framing;

static enum MHD_Result framing_header(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    framing *f = cls;
    if (!key) return MHD_YES;
    if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
        uint64_t v;
        if (!api_parse_u64(value, 0, INT64_MAX, &v)) f->cl_bad = true;
        else if (f->n_cl && v != f->cl) f->cl_differ = true;
        else if (!f->n_cl) f->cl = v;
        f->n_cl++;
    } else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
        f->n_te++;
        f->te = value ? value : "";
    }
    return MHD_YES;
}

/* Whether the last coding of a Transfer-Encoding list is "chunked". */
static bool te_ends_chunked(const char *te)
{
    const char *comma = strrchr(te, ',');
    const char *last = comma ? comma + 1 : te;
    while (*last == ' ' || *last == '\t') last++;
    size_t n = strlen(last);
    while (n && (last[n - 1] == ' ' || last[n - 1] == '\t')) n--;
    return n == 7 && strncasecmp(last, "chunked", 7) == 0;
}

/* False after replying (and marking the connection to close) when the request's framing is ambiguous. */
static bool framing_ok(api_request *r)
{
    framing f = {0};
    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, framing_header, &f);
    if (f.n_cl && f.n_te)
        api_reply_problem(r, SAMDA_EINVAL, 400, "request has both Transfer-Encoding and Content-Length (RFC 9112 6.1): refused");
    else if (f.cl_bad)
        api_reply_problem(r, SAMDA_EINVAL, 400, "Content-Length is not a number");
    else if (f.cl_differ)
        api_reply_problem(r, SAMDA_EINVAL, 400, "request has differing Content-Length headers (RFC 9110 8.6): refused");
    else if (f.n_te && (f.n_te > 1 || strcasecmp(f.te, "chunked") != 0)) {
        if (f.n_te > 1 || !te_ends_chunked(f.te))
            api_reply_problem(r, SAMDA_EINVAL, 400, "Transfer-Encoding must end with chunked (RFC 9112 6.3)");
        else
            api_reply_problem(r, SAMDA_ENOTSUP, 501, "Transfer-Encoding other than chunked is not supported");
    } else
        return true;
    r->close_conn = true;
    return false;
}


/* ---- the request head ----------------------------------------------------------------------- */

/* OPTIONS on a known path (CORS preflight, capability probe): answered for every such path, no auth. */
static void answer_options(api_request *r)
{
    samda_api *api = r->api;
    char allow[96];
    api_methods_str(r->match.allowed, allow, sizeof allow);
    struct MHD_Response *resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (resp) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
        if (api->cors_origin) {
            MHD_add_response_header(resp, "Access-Control-Allow-Methods", allow);
            MHD_add_response_header(resp, "Access-Control-Allow-Headers", "Authorization, Content-Type, Accept");
            MHD_add_response_header(resp, "Access-Control-Max-Age", "600");
        }
    }
    r->match.route = NULL;
    api_reply_response(r, 204, resp);
}

/* True after replying when the request line names no route: no such path (404), another method
 * (405), or a path that is no route's (400). A known route with bad parameters goes on. */
static bool refuse_unmatched(api_request *r, api_match_result mr, bool bad_params, const char *path,
                             const samda_error *e)
{
    switch (mr) {
    case API_MATCH_NOT_FOUND:
        api_reply_problem(r, SAMDA_ENOENT, 0, "no such route: %s %.200s", r->method, path);
        return true;
    case API_MATCH_METHOD: {
        char allow[96];
        api_methods_str(r->match.allowed, allow, sizeof allow);
        api_reply_problem(r, SAMDA_ENOTSUP, 405, "method %s not allowed here (allowed: %s)", r->method, allow);
        return true;
    }
    case API_MATCH_BAD_PATH:
        if (bad_params) return false;
        api_reply_problem(r, SAMDA_EINVAL, 0, "%s", e->message);
        return true;
    case API_MATCH_OK:
        break;
    }
    return false;
}

/* False after replying 501 when the core left the route's service out of its table. */
static bool service_available(api_request *r)
{
    const api_route *rt = r->match.route;
    if (rt->service == API_NO_SERVICE) return true;
    void *fn;
    memcpy(&fn, (const char *)&r->api->svc + rt->service, sizeof fn);
    if (!fn) {
        api_reply_unavailable(r);
        return false;
    }
    return true;
}

void api_request_begin(api_request *r, const char *method)
{
    snprintf(r->method, sizeof r->method, "%s", method);
    r->method_bit = api_method_bit(method);
    if (!r->uri) {
        api_reply_problem(r, SAMDA_ENOMEM, 0, "out of memory");
        return;
    }
    if (!framing_ok(r)) return;
    char path[4096];
    size_t plen = r->query ? (size_t)(r->query - 1 - r->uri) : strlen(r->uri);
    if (plen >= sizeof path) {
        api_reply_problem(r, SAMDA_EINVAL, 414, "request path longer than %zu bytes", sizeof path - 1);
        return;
    }
    memcpy(path, r->uri, plen);
    path[plen] = '\0';

    if (r->api->p.ops_only && strcmp(path, "/health") != 0 && strcmp(path, "/metrics") != 0) {
        api_reply_problem(r, SAMDA_ENOENT, 404, "%s", "this node serves /health and /metrics only ([cluster] "
                                                      "roles has no api): send this request to a node with the api role");
        return;
    }
    if (api_ui_serve(r, path)) return; /* the console's files: public, no route of the API */

    samda_error e = {SAMDA_OK, ""};
    unsigned mb = r->method_bit ? r->method_bit : (1u << 30);
    api_match_result mr = api_route_match(api_routes, api_n_routes, mb == API_OPTIONS ? API_GET : mb, path, &r->match, &e);
    /* A route whose path parameters are wrong is still that route (router.h): its 400 comes after
     * authentication and authorisation, so anonymous clients do not learn the parameter rules. */
    const bool bad_params = mr == API_MATCH_BAD_PATH && r->match.route;
    if (mb == API_OPTIONS && (mr == API_MATCH_OK || mr == API_MATCH_METHOD || bad_params)) {
        answer_options(r);
        return;
    }
    if (refuse_unmatched(r, mr, bad_params, path, &e)) return;
    r->matched = true;

    if (!authenticate(r)) return;
    if (bad_params) {
        api_reply_problem(r, SAMDA_EINVAL, 0, "%s", e.message);
        return;
    }
    if (!service_available(r)) return;
    if (api_query_args_parse(r->query, &r->args, &e) != SAMDA_OK) {
        api_reply_error(r, &e);
        return;
    }
    api_body_expect(r);
}
