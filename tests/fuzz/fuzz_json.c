/* libFuzzer target for the JSON request bodies of the REST API (api/rest.c, api/admin.c). The
 * first input byte picks one of the routes that take a JSON body (segment, session create and
 * predict, site put, destination add, adapter train and evaluate) and whether the stub core
 * answers with a result or an error; the rest is the body. The request goes through the real
 * router match and the real handler; the core is a set of stubs that walk the json_t they are
 * handed (re-encoding it) so that whatever the handler passes on is a well-formed value. The
 * daemon-side interpretation of these bodies (daemon/api_services.c) needs the store and is not
 * reached here. Memory errors, leaks and UB are caught by ASan/UBSan (the build adds them). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static int stub_ok; /* per-run: 1 = the core answers with a result */

static samda_status answer(const json_t *body, json_t **out, samda_error *err)
{
    if (body) {
        char *t = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!t) abort(); /* the handler handed on a value jansson cannot encode */
        free(t);
    }
    if (!stub_ok) return samda_fail(err, SAMDA_EINVAL, "stub core: rejected\n(with a control character)");
    *out = json_pack("{s:i, s:s}", "id", 7, "name", "x");
    return *out ? SAMDA_OK : SAMDA_ENOMEM;
}

static samda_status s_segment(void *c, const samda_api_segment_request *q, json_t **out, samda_error *err)
{
    (void)c;
    if (!q->study_uid) abort();
    for (unsigned i = 0; i < q->n_labels; i++)
        if (!q->labels[i] || !api_valid_name(q->labels[i])) abort();
    if (q->adapter_version && !api_valid_name(q->adapter_version)) abort();
    if (q->transaction_id && !api_valid_name(q->transaction_id)) abort();
    return answer(NULL, out, err);
}
static samda_status s_site_put(void *c, const char *site, const json_t *b, int64_t t, json_t **out, bool *created,
                               samda_error *err)
{
    (void)c, (void)site, (void)t;
    *created = stub_ok;
    return answer(b, out, err);
}
static samda_status s_dest_add(void *c, const json_t *b, int64_t t, json_t **out, samda_error *err)
{
    (void)c, (void)t;
    return answer(b, out, err);
}
static samda_status s_train(void *c, const char *site, const json_t *b, int64_t t, json_t **out, samda_error *err)
{
    (void)c, (void)site, (void)t;
    return answer(b, out, err);
}
static samda_status s_eval(void *c, const char *site, int v, const json_t *b, int64_t t, json_t **out,
                           samda_error *err)
{
    (void)c, (void)site, (void)t;
    if (v < 1) abort();
    return answer(b, out, err);
}
static samda_status s_sess_create(void *c, const json_t *b, int64_t t, json_t **out, samda_error *err)
{
    (void)c, (void)t;
    return answer(b, out, err);
}
static samda_status s_sess_predict(void *c, const char *s, const json_t *b, int64_t t, json_t **out, samda_error *err)
{
    (void)c, (void)s, (void)t;
    return answer(b, out, err);
}

/* Concrete paths for the patterns' parameters. */
static void concrete(const char *pattern, char *out, size_t size)
{
    size_t o = 0;
    for (const char *p = pattern; *p && o + 16 < size;) {
        if (*p == '{') {
            const char *e = strchr(p, '}');
            const char *v = strncmp(p, "{study}", 7) == 0     ? "1.2.3"
                            : strncmp(p, "{version}", 9) == 0 ? "2"
                            : strncmp(p, "{session}", 9) == 0 ? "0123456789abcdef0123456789abcdef"
                                                              : "site-a";
            o += (size_t)snprintf(out + o, size - o, "%s", v);
            p = e ? e + 1 : p + strlen(p);
        } else {
            out[o++] = *p++;
        }
    }
    out[o] = 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct samda_api api;
    static size_t json_routes[32], n_json;
    if (!n_json) {
        api.svc.segment = s_segment;
        api.svc.site_put = s_site_put;
        api.svc.destination_add = s_dest_add;
        api.svc.adapter_train = s_train;
        api.svc.adapter_evaluate = s_eval;
        api.svc.session_create = s_sess_create;
        api.svc.session_predict = s_sess_predict;
        for (size_t i = 0; i < api_n_routes && n_json < 32; i++) {
            const api_route *rt = &api_routes[i];
            if (!(rt->flags & API_F_JSON_BODY) || rt->service == API_NO_SERVICE) continue;
            void *fn;
            memcpy(&fn, (const char *)&api.svc + rt->service, sizeof fn);
            if (fn) json_routes[n_json++] = i;
        }
        if (n_json < 7) abort(); /* a JSON route lost its stub: update this target */
    }
    if (size < 1) return 0;
    const api_route *rt = &api_routes[json_routes[data[0] % n_json]];
    stub_ok = (data[0] / n_json) & 1;

    api_request r;
    memset(&r, 0, sizeof r);
    r.api = &api;
    r.token_id = -1;
    r.file_fd = -1;
    char path[256];
    concrete(rt->pattern, path, sizeof path);
    r.uri = path;
    snprintf(r.method, sizeof r.method, "%s", rt->method == API_PUT ? "PUT" : "POST");
    r.method_bit = rt->method;
    samda_error e = {SAMDA_OK, ""};
    if (api_route_match(api_routes, api_n_routes, rt->method, path, &r.match, &e) != API_MATCH_OK) abort();
    if (r.match.route != rt) abort();
    /* The body as the server keeps it: a heap copy of exactly the bytes received. */
    r.body_len = size - 1;
    r.body = malloc(r.body_len ? r.body_len : 1);
    if (!r.body) return 0;
    memcpy(r.body, data + 1, r.body_len);
    rt->handler(&r);
    if (!r.resp || r.status < 200 || r.status > 599) abort(); /* every request is answered */
    MHD_destroy_response(r.resp);
    free(r.body);
    return 0;
}
