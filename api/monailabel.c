/* The MONAI Label server API under /monailabel/, so that 3D Slicer's MONAILabel module and OHIF's
 * MONAI Label extension are samda clients: the wire (multipart forms in, NRRD and multipart out,
 * the OAuth2-style token routes, the session upload) is here; what each route means is the core's
 * (ml_* services).
 *
 * Wire rules the clients need: their form boundary ends with '$' (accepted), and their multipart
 * reader breaks on chunked answers (every answer here is one buffer with its Content-Length). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"
#include "nrrd.h"

#define FORM_MAX_PARTS 8
#define LABEL_MAX_VOXELS ((size_t)1 << 30)
#define IMAGE_MAX_VOXELS ((size_t)1 << 28) /* an uploaded image: 1 GiB of float voxels at most */

/* ---- forms in ------------------------------------------------------------------------------ */

typedef struct form_part {
    char name[64];
    char filename[128];
    char *data;
    size_t len, cap;
} form_part;

typedef struct form {
    form_part parts[FORM_MAX_PARTS];
    unsigned n;
    api_query_args url; /* application/x-www-form-urlencoded */
    bool is_url;
} form;

static void form_free(form *f)
{
    for (unsigned i = 0; i < f->n; i++) free(f->parts[i].data);
    if (f->is_url) api_query_args_free(&f->url);
    memset(f, 0, sizeof *f);
}

/* A parameter of a Content-Disposition value ('form-data; name="params"; filename="x.nrrd"'). */
static bool disposition_param(const char *d, const char *key, char *out, size_t size)
{
    size_t kl = strlen(key);
    for (const char *p = d; (p = strcasestr(p, key)) != NULL; p += kl) {
        if (p != d && p[-1] != ' ' && p[-1] != ';') continue;
        const char *v = p + kl;
        if (*v != '=') continue;
        v++;
        size_t n = 0;
        if (*v == '"') {
            v++;
            while (v[n] && v[n] != '"') n++;
        } else {
            n = strcspn(v, "; ");
        }
        if (n >= size) n = size - 1;
        memcpy(out, v, n);
        out[n] = '\0';
        return true;
    }
    return false;
}

static samda_status on_begin(void *user, const samda_multipart_part *pt, samda_error *err)
{
    form *f = user;
    if (f->n >= FORM_MAX_PARTS) return samda_fail(err, SAMDA_EINVAL, "form has more than %d parts", FORM_MAX_PARTS);
    form_part *p = &f->parts[f->n++];
    if (!disposition_param(pt->disposition, "name", p->name, sizeof p->name))
        return samda_fail(err, SAMDA_EINVAL, "form part %u has no Content-Disposition name", pt->index + 1);
    disposition_param(pt->disposition, "filename", p->filename, sizeof p->filename);
    return SAMDA_OK;
}

static samda_status on_data(void *user, const void *data, size_t len, samda_error *err)
{
    form *f = user;
    form_part *p = &f->parts[f->n - 1];
    if (p->len + len + 1 > p->cap) {
        size_t cap = p->cap ? p->cap : 4096;
        while (cap < p->len + len + 1) cap *= 2;
        char *nb = realloc(p->data, cap);
        if (!nb) return samda_fail(err, SAMDA_ENOMEM, "out of memory reading form part %s", p->name);
        p->data = nb;
        p->cap = cap;
    }
    memcpy(p->data + p->len, data, len);
    p->len += len;
    p->data[p->len] = '\0';
    return SAMDA_OK;
}

/* Parse the request's form body (none is an empty form). Replies and returns false when malformed. */
static bool form_read(api_request *r, form *f)
{
    memset(f, 0, sizeof *f);
    if (!r->body_len) return true;
    const char *ct = api_header(r, MHD_HTTP_HEADER_CONTENT_TYPE);
    char media[128], boundary[SAMDA_MULTIPART_BOUNDARY_MAX + 1];
    samda_error e = {SAMDA_OK, ""};
    if (samda_content_type_media(ct, media, sizeof media, &e) != SAMDA_OK) {
        api_reply_error(r, &e);
        return false;
    }
    if (!strcmp(media, "application/x-www-form-urlencoded")) {
        f->is_url = true;
        if (api_query_args_parse(r->body, &f->url, &e) != SAMDA_OK) {
            f->is_url = false;
            api_reply_error(r, &e);
            return false;
        }
        return true;
    }
    if (samda_content_type_param(ct, "boundary", boundary, sizeof boundary, &e) != SAMDA_OK) {
        api_reply_problem(r, SAMDA_EINVAL, 0, "multipart/form-data without a valid boundary: %s", e.message);
        return false;
    }
    samda_multipart_params mp;
    samda_multipart_params_init(&mp);
    mp.max_parts = FORM_MAX_PARTS;
    mp.extra_bchars = "$"; /* MONAILabelClient's "----------lImIt_of_THE_fIle_eW_$" */
    samda_multipart_callbacks cb = {.user = f, .part_begin = on_begin, .part_data = on_data};
    samda_multipart *m = samda_multipart_new(boundary, &mp, &cb, &e);
    samda_status st = m ? samda_multipart_feed(m, r->body, r->body_len, &e) : e.code;
    if (st == SAMDA_OK) st = samda_multipart_finish(m, &e);
    samda_multipart_free(m);
    if (st != SAMDA_OK) {
        e.code = st == SAMDA_ENOMEM ? st : SAMDA_EINVAL;
        form_free(f);
        api_reply_error(r, &e);
        return false;
    }
    return true;
}

static const form_part *form_get(const form *f, const char *name)
{
    for (unsigned i = 0; i < f->n; i++)
        if (!strcmp(f->parts[i].name, name)) return &f->parts[i];
    return NULL;
}

/* The form's "params" field as a JSON object ({} when absent). Replies and returns NULL when bad. */
static json_t *form_params(api_request *r, const form *f)
{
    const form_part *p = form_get(f, "params");
    if (!p || !p->len) return json_object();
    json_error_t je;
    json_t *j = json_loadb(p->data, p->len, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(j)) {
        json_decref(j);
        api_reply_problem(r, SAMDA_EINVAL, 0, "form field params must be a JSON object (%s)", j ? "not an object" : je.text);
        return NULL;
    }
    return j;
}

static void audit_param(api_request *r, const char *name, const char *value);

/* The query parameter image: a SeriesInstanceUID. */
static const char *image_param(api_request *r)
{
    const char *image = api_query_get(&r->args, "image");
    if (!image || !api_valid_uid(image)) {
        api_reply_problem(r, SAMDA_EINVAL, 0, "query parameter image must be a SeriesInstanceUID stored in samda");
        return NULL;
    }
    audit_param(r, "image", image); /* the series goes to the audit log with the path's parameters */
    return image;
}

/* ---- answers out --------------------------------------------------------------------------- */

static samda_status to_nrrd(samda_api_volume *v, void **buf, size_t *len, samda_error *e)
{
    samda_nrrd_volume n = {.type = v->type == SAMDA_API_VOXEL_U8    ? SAMDA_NRRD_U8
                                   : v->type == SAMDA_API_VOXEL_I16 ? SAMDA_NRRD_I16
                                                                    : SAMDA_NRRD_F32,
                           .data = v->data};
    memcpy(n.sizes, v->sizes, sizeof n.sizes);
    memcpy(n.directions, v->directions, sizeof n.directions);
    memcpy(n.origin, v->origin, sizeof n.origin);
    return samda_nrrd_write(&n, buf, len, e);
}

static void reply_file(api_request *r, void *data, size_t len, const char *type, const char *filename)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(data);
        api_reply_problem(r, SAMDA_ENOMEM, 0, "out of memory");
        return;
    }
    char cd[200];
    snprintf(cd, sizeof cd, "attachment; filename=\"%s\"", filename);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(resp, "Content-Disposition", cd);
    api_reply_response(r, 200, resp);
}

/* multipart/form-data: "params" (JSON) and the file, as MONAI Label's server answers output=all. */
static void reply_multipart(api_request *r, json_t *params, void *file, size_t flen, const char *filename)
{
    char boundary[64];
    api_random_boundary(boundary, sizeof boundary);
    char *pj = json_dumps(params, JSON_COMPACT);
    char *head = NULL, *mid = NULL;
    int hn = pj ? asprintf(&head,
                           "--%s\r\nContent-Disposition: form-data; name=\"params\"\r\nContent-Type: application/json\r\n\r\n%s\r\n"
                           "--%s\r\nContent-Disposition: form-data; name=\"image\"; filename=\"%s\"\r\n"
                           "Content-Type: application/octet-stream\r\n\r\n",
                           boundary, pj, boundary, filename)
                : -1;
    int mn = hn >= 0 ? asprintf(&mid, "\r\n--%s--\r\n", boundary) : -1;
    free(pj);
    char *body = hn >= 0 && mn >= 0 ? malloc((size_t)hn + flen + (size_t)mn) : NULL;
    if (!body) {
        free(head);
        free(mid);
        free(file);
        api_reply_problem(r, SAMDA_ENOMEM, 0, "out of memory");
        return;
    }
    memcpy(body, head, (size_t)hn);
    memcpy(body + hn, file, flen);
    memcpy(body + hn + flen, mid, (size_t)mn);
    free(head);
    free(mid);
    free(file);
    char ct[100];
    snprintf(ct, sizeof ct, "multipart/form-data; boundary=%s", boundary);
    struct MHD_Response *resp = MHD_create_response_from_buffer((size_t)hn + flen + (size_t)mn, body, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(body);
        api_reply_problem(r, SAMDA_ENOMEM, 0, "out of memory");
        return;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ct);
    api_reply_response(r, 200, resp);
}

/* ---- routes -------------------------------------------------------------------------------- */

void api_h_ml_info(api_request *r)
{
    samda_api *api = r->api;
    json_t *out = NULL;
    samda_error e = {SAMDA_OK, ""};
    if (!api_call_ok(r, api->svc.ml_info(api->svc.ctx, &out, &e), &e, &out)) return;
    api_reply_json(r, 200, out, NULL);
}

/* GET /monailabel/auth/: whether the clients must log in (public). */
void api_h_ml_auth(api_request *r)
{
    api_reply_json(r, 200,
                   json_pack("{s:b, s:s, s:s}", "enabled", r->api->p.auth_required, "client_id", "samda", "realm", ""), NULL);
}

/* POST /monailabel/auth/token: the clients' login form. The password is a samda API token; it is
 * checked and handed back as the bearer token the clients then send. */
void api_h_ml_auth_token(api_request *r)
{
    samda_api *api = r->api;
    if (!api->p.auth_required) {
        api_reply_json(r, 200, json_pack("{s:n, s:n}", "access_token", "token_type"), NULL);
        return;
    }
    form f;
    if (!form_read(r, &f)) return;
    const char *pw = NULL;
    const form_part *pp = form_get(&f, "password");
    if (f.is_url) pw = api_query_get(&f.url, "password");
    else if (pp) pw = pp->data;
    size_t n = pw ? strlen(pw) : 0;
    samda_api_role role = SAMDA_API_ROLE_NONE;
    int64_t id = -1;
    samda_error e = {SAMDA_OK, ""};
    samda_status st = SAMDA_EAUTH;
    if (n >= 1 && n <= 512 && strspn(pw, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/=") == n)
        st = api->svc.auth_check(api->svc.ctx, pw, &role, &id, &e);
    if (st == SAMDA_OK && role != SAMDA_API_ROLE_NONE) {
        r->token_id = id;
        api_reply_json(r, 200, json_pack("{s:s, s:s}", "access_token", pw, "token_type", "Bearer"), NULL);
    } else if (st == SAMDA_OK || st == SAMDA_EAUTH) {
        atomic_fetch_add(&api->metrics.auth_failures, 1);
        api_reply_problem(r, SAMDA_EAUTH, 0, "invalid credentials: the password must be a samda API token (samda token create)");
    } else {
        e.code = st;
        api_reply_error(r, &e);
    }
    form_free(&f);
}

void api_h_ml_auth_valid(api_request *r)
{
    static const char *const names[] = {"none", "ingest", "user", "admin"};
    char user[40];
    snprintf(user, sizeof user, "token-%lld", (long long)r->token_id);
    json_t *roles = json_array();
    json_array_append_new(roles, json_string(names[r->role <= SAMDA_API_ROLE_ADMIN ? r->role : 0]));
    api_reply_json(r, 200, json_pack("{s:s, s:o}", "username", user, "roles", roles), NULL);
}

void api_h_ml_datastore(api_request *r)
{
    static const char *const allowed[] = {"output", NULL};
    if (!api_only_params(r, allowed)) return;
    samda_api *api = r->api;
    json_t *out = NULL;
    samda_error e = {SAMDA_OK, ""};
    if (!api_call_ok(r, api->svc.ml_datastore(api->svc.ctx, &out, &e), &e, &out)) return;
    api_reply_json(r, 200, out, NULL);
}

void api_h_ml_image(api_request *r)
{
    static const char *const allowed[] = {"image", "check_only", NULL};
    const char *image;
    if (!api_only_params(r, allowed) || !(image = image_param(r))) return;
    samda_api *api = r->api;
    samda_api_volume v;
    memset(&v, 0, sizeof v);
    samda_error e = {SAMDA_OK, ""};
    samda_status st = api->svc.ml_image(api->svc.ctx, image, &v, &e);
    void *buf = NULL;
    size_t len = 0;
    if (st == SAMDA_OK) st = to_nrrd(&v, &buf, &len, &e);
    free(v.data);
    if (st != SAMDA_OK) {
        e.code = st;
        api_reply_error(r, &e);
        return;
    }
    char fn[80];
    snprintf(fn, sizeof fn, "%s.nrrd", image);
    reply_file(r, buf, len, "application/octet-stream", fn);
}

/* The infer form's params; NULL when the form is bad or uploads an image or label (replied). */
static json_t *infer_params(api_request *r)
{
    form f;
    if (!form_read(r, &f)) return NULL;
    json_t *params = form_params(r, &f);
    bool has_file = form_get(&f, "file") != NULL, has_label = form_get(&f, "label") != NULL;
    form_free(&f);
    if (params && (has_file || has_label)) {
        json_decref(params);
        api_reply_problem(r, SAMDA_EINVAL, 0, "infer takes no %s upload: samda segments stored series (send it by C-STORE or STOW-RS, then name it in image)",
                          has_file ? "image" : "label");
        return NULL;
    }
    return params;
}

/* The label volume as output asks: params alone (json), the NRRD alone (image), else both. Takes
 * v->data and res. */
static void reply_label(api_request *r, const char *output, samda_api_volume *v, json_t *res)
{
    if (output && !strcmp(output, "json")) {
        free(v->data);
        api_reply_json(r, 200, res, NULL);
        return;
    }
    void *buf = NULL;
    size_t len = 0;
    samda_error e = {SAMDA_OK, ""};
    samda_status st = to_nrrd(v, &buf, &len, &e);
    free(v->data);
    if (st != SAMDA_OK) {
        e.code = st;
        api_reply_error(r, &e);
    } else if (output && !strcmp(output, "image")) {
        reply_file(r, buf, len, "application/octet-stream", "label.nrrd");
    } else {
        reply_multipart(r, res, buf, len, "label.nrrd");
    }
    json_decref(res);
}

/* Put a request parameter into the path's parameters: the audit log records it. */
static void audit_param(api_request *r, const char *name, const char *value)
{
    api_match *m = &r->match;
    if (m->n >= API_MAX_PARAMS) return;
    snprintf(m->names[m->n], sizeof m->names[m->n], "%s", name);
    snprintf(m->values[m->n], sizeof m->values[m->n], "%s", value);
    m->n++;
}

/* infer's image: the query parameter image, a stored SeriesInstanceUID, unless session_id names the
 * image (then image is the client's own name for it, e.g. 3D Slicer's volume name, and unused).
 * OUT *session. Replies and returns false when bad. */
static bool infer_image(api_request *r, const char **image, const char **session)
{
    *image = NULL;
    *session = api_query_get(&r->args, "session_id");
    if (*session && *session[0]) {
        if (!api_valid_uid(*session)) {
            api_reply_problem(r, SAMDA_EINVAL, 0, "query parameter session_id must be a session id PUT /monailabel/session/ answered");
            return false;
        }
        audit_param(r, "session_id", *session);
        return true;
    }
    *session = NULL;
    return (*image = image_param(r)) != NULL;
}

void api_h_ml_infer(api_request *r)
{
    static const char *const allowed[] = {"image", "output", "session_id", NULL};
    const char *image, *session;
    if (!api_only_params(r, allowed) || !infer_image(r, &image, &session)) return;
    const char *output = api_query_get(&r->args, "output");
    if (output && strcmp(output, "all") && strcmp(output, "image") && strcmp(output, "dicom_seg") && strcmp(output, "json")) {
        api_reply_problem(r, SAMDA_EINVAL, 0, "query parameter output must be all, image, json or dicom_seg");
        return;
    }
    json_t *params = infer_params(r);
    if (!params) return;
    samda_api *api = r->api;
    samda_api_ml_infer req = {.model = api_match_param(&r->match, "model"), .series_uid = image, .session_id = session,
                              .params = params, .want_seg = output && !strcmp(output, "dicom_seg"), .token_id = r->token_id};
    samda_api_volume v;
    memset(&v, 0, sizeof v);
    json_t *res = NULL;
    void *seg = NULL;
    size_t seg_len = 0;
    samda_error e = {SAMDA_OK, ""};
    samda_status st = api->svc.ml_infer(api->svc.ctx, &req, &v, &res, &seg, &seg_len, &e);
    json_decref(params);
    if (st == SAMDA_OK && req.want_seg && !seg) st = samda_fail(&e, SAMDA_EINTERNAL, "the core returned no DICOM-SEG");
    if (st != SAMDA_OK || req.want_seg) {
        free(v.data);
        json_decref(res);
        if (st == SAMDA_OK) {
            reply_file(r, seg, seg_len, "application/dicom", "seg.dcm");
            return;
        }
        free(seg);
        e.code = st;
        api_reply_error(r, &e);
        return;
    }
    free(seg);
    reply_label(r, output, &v, res ? res : json_object());
}

/* ---- sessions: an image volume uploaded by the client (3D Slicer's volume, not from Next Sample) - */

/* PUT /monailabel/session/?expiry=N: MONAILabelClient.create_session's multipart form, the image in
 * a part named "files" (other fields, e.g. client_id, are ignored). */
void api_h_ml_session_put(api_request *r)
{
    static const char *const allowed[] = {"expiry", "uncompress", "site", NULL};
    if (!api_only_params(r, allowed)) return;
    const char *ex = api_query_get(&r->args, "expiry"), *unc = api_query_get(&r->args, "uncompress"),
               *site = api_query_get(&r->args, "site");
    char *end = NULL;
    long long expiry = ex && *ex ? strtoll(ex, &end, 10) : 0;
    if (ex && *ex && (*end || expiry < 0 || expiry > 31 * 86400)) {
        api_reply_problem(r, SAMDA_EINVAL, 0, "query parameter expiry must be seconds, 0 to 2678400 (0: the default)");
        return;
    }
    if (unc && strcasecmp(unc, "false") && strcmp(unc, "0")) {
        api_reply_problem(r, SAMDA_EINVAL, 0, "uncompress: samda takes one NRRD image file, not an archive");
        return;
    }
    if (site && !api_valid_name(site)) {
        api_reply_problem(r, SAMDA_EINVAL, 0, "query parameter site must be a site name ([A-Za-z0-9._-], 1 to 63)");
        return;
    }
    form f;
    if (!form_read(r, &f)) return;
    const form_part *img = NULL;
    unsigned n_files = 0;
    for (unsigned i = 0; i < f.n; i++)
        if (!strcmp(f.parts[i].name, "files") || !strcmp(f.parts[i].name, "file")) {
            img = &f.parts[i];
            n_files++;
        }
    if (n_files != 1 || !img->len) {
        api_reply_problem(r, SAMDA_EINVAL, 0, "form field files must hold one image volume file (.nrrd; %u given): in 3D Slicer set "
                          "the MONAI Label File Extension to .nrrd", n_files);
        form_free(&f);
        return;
    }
    samda_nrrd_volume nv;
    samda_error e = {SAMDA_OK, ""};
    samda_status st = samda_nrrd_read_image(img->data, img->len, IMAGE_MAX_VOXELS, &nv, &e);
    form_free(&f);
    if (st != SAMDA_OK) {
        size_t n = strlen(e.message);
        snprintf(e.message + n, sizeof e.message - n, " (form field files: samda reads NRRD image volumes; in 3D Slicer set the "
                 "MONAI Label File Extension to .nrrd)");
        e.code = st;
        api_reply_error(r, &e);
        return;
    }
    samda_api_volume v = {.type = SAMDA_API_VOXEL_F32, .data = nv.data};
    memcpy(v.sizes, nv.sizes, sizeof v.sizes);
    memcpy(v.directions, nv.directions, sizeof v.directions);
    memcpy(v.origin, nv.origin, sizeof v.origin);
    samda_api *api = r->api;
    samda_api_ml_session req = {.image = &v, .expiry_s = expiry, .site = site, .token_id = r->token_id};
    json_t *out = NULL;
    st = api->svc.ml_session_create(api->svc.ctx, &req, &out, &e);
    samda_nrrd_volume_clear(&nv);
    if (!api_call_ok(r, st, &e, &out)) return;
    const char *id = json_string_value(json_object_get(out, "session_id"));
    if (id) audit_param(r, "session_id", id);
    api_reply_json(r, 200, out, NULL);
}

void api_h_ml_session_get(api_request *r)
{
    static const char *const allowed[] = {"update_ts", "image", NULL};
    if (!api_only_params(r, allowed)) return;
    const char *u = api_query_get(&r->args, "update_ts"), *im = api_query_get(&r->args, "image");
    if (im && strcasecmp(im, "false") && strcmp(im, "0")) {
        api_reply_problem(r, SAMDA_EINVAL, 0, "image=true: samda answers a session's volume at GET /monailabel/datastore/image?image=SESSION_ID");
        return;
    }
    samda_api *api = r->api;
    json_t *out = NULL;
    samda_error e = {SAMDA_OK, ""};
    samda_status st = api->svc.ml_session_get(api->svc.ctx, api_match_param(&r->match, "session_id"),
                                              u && (!strcasecmp(u, "true") || !strcmp(u, "1")), &out, &e);
    if (api_call_ok(r, st, &e, &out)) api_reply_json(r, 200, out, NULL);
}

void api_h_ml_session_delete(api_request *r)
{
    samda_api *api = r->api;
    json_t *out = NULL;
    samda_error e = {SAMDA_OK, ""};
    samda_status st = api->svc.ml_session_delete(api->svc.ctx, api_match_param(&r->match, "session_id"), r->token_id, &out, &e);
    if (api_call_ok(r, st, &e, &out)) api_reply_json(r, 200, out, NULL);
}

/* The uploaded label as a volume: OHIF's label.bin (the series' voxels, no geometry; v borrows the
 * part's bytes) or an NRRD (nv owns the voxels, v borrows them). */
static samda_status label_volume(const form_part *lp, samda_api_volume *v, samda_nrrd_volume *nv, bool *raw,
                                 samda_error *e)
{
    memset(v, 0, sizeof *v);
    memset(nv, 0, sizeof *nv);
    size_t fl = strlen(lp->filename);
    *raw = fl >= 4 && !strcasecmp(lp->filename + fl - 4, ".bin");
    v->type = SAMDA_API_VOXEL_U8;
    if (*raw) {
        v->sizes[0] = lp->len;
        v->data = lp->data;
        return SAMDA_OK;
    }
    samda_status st = samda_nrrd_read_labels(lp->data, lp->len, LABEL_MAX_VOXELS, nv, e);
    if (st != SAMDA_OK) {
        size_t n = strlen(e->message);
        snprintf(e->message + n, sizeof e->message - n, " (form field label: samda reads NRRD label maps; in 3D Slicer set "
                 "the MONAI Label File Extension to .nrrd)");
        return st;
    }
    memcpy(v->sizes, nv->sizes, sizeof v->sizes);
    memcpy(v->directions, nv->directions, sizeof v->directions);
    memcpy(v->origin, nv->origin, sizeof v->origin);
    v->data = nv->data;
    return SAMDA_OK;
}

void api_h_ml_save_label(api_request *r)
{
    static const char *const allowed[] = {"image", "tag", NULL};
    const char *image;
    if (!api_only_params(r, allowed) || !(image = image_param(r))) return;
    const char *tag = api_query_get(&r->args, "tag");
    if (tag && !api_valid_name(tag)) {
        api_reply_problem(r, SAMDA_EINVAL, 0, "query parameter tag must be a name ([A-Za-z0-9._-], 1 to 63)");
        return;
    }
    form f;
    if (!form_read(r, &f)) return;
    json_t *params = form_params(r, &f);
    const form_part *lp = form_get(&f, "label");
    if (!params || !lp || !lp->len) {
        if (params) api_reply_problem(r, SAMDA_EINVAL, 0, "form field label (the label map file: .nrrd, or OHIF's label.bin) is missing");
        json_decref(params);
        form_free(&f);
        return;
    }
    samda_api_volume v;
    samda_nrrd_volume nv;
    samda_error e = {SAMDA_OK, ""};
    bool raw = false;
    samda_status st = label_volume(lp, &v, &nv, &raw, &e);
    json_t *out = NULL;
    if (st == SAMDA_OK) {
        samda_api *api = r->api;
        samda_api_ml_label req = {.series_uid = image, .tag = tag ? tag : "final", .params = params, .label = &v,
                                  .raw_bin = raw, .token_id = r->token_id};
        st = api->svc.ml_save_label(api->svc.ctx, &req, &out, &e);
    }
    samda_nrrd_volume_clear(&nv);
    json_decref(params);
    form_free(&f);
    if (api_call_ok(r, st, &e, &out)) api_reply_json(r, 200, out, NULL);
}

void api_h_ml_next_sample(api_request *r)
{
    json_t *body = NULL;
    if (!api_json_body(r, false, &body)) return;
    samda_api *api = r->api;
    json_t *out = NULL;
    samda_error e = {SAMDA_OK, ""};
    samda_status st = api->svc.ml_next_sample(api->svc.ctx, api_match_param(&r->match, "strategy"), body, &out, &e);
    json_decref(body);
    if (api_call_ok(r, st, &e, &out)) api_reply_json(r, 200, out, NULL);
}

void api_h_ml_train_status(api_request *r)
{
    static const char *const allowed[] = {"check_if_running", "all", NULL};
    if (!api_only_params(r, allowed)) return;
    const char *c = api_query_get(&r->args, "check_if_running");
    bool check = c && (!strcasecmp(c, "true") || !strcmp(c, "1"));
    samda_api *api = r->api;
    bool running = false;
    json_t *out = NULL;
    samda_error e = {SAMDA_OK, ""};
    if (!api_call_ok(r, api->svc.ml_train_status(api->svc.ctx, &running, &out, &e), &e, &out)) return;
    if (check && !running) { /* MONAI Label's answer: 404 when nothing runs (clients test the status) */
        json_decref(out);
        api_reply_problem(r, SAMDA_ENOENT, 0, "no adapter training is queued or running");
        return;
    }
    api_reply_json(r, 200, out, NULL);
}

void api_h_ml_train_start(api_request *r)
{
    static const char *const allowed[] = {"run_sync", "enqueue", NULL};
    if (!api_only_params(r, allowed)) return;
    json_t *body = NULL;
    if (!api_json_body(r, false, &body)) return;
    samda_api *api = r->api;
    const char *model = api_match_param(&r->match, "model");
    json_t *out = NULL;
    samda_error e = {SAMDA_OK, ""};
    samda_status st = api->svc.ml_train_start(api->svc.ctx, model ? model : "", body, r->token_id, &out, &e);
    json_decref(body);
    if (api_call_ok(r, st, &e, &out)) api_reply_json(r, 200, out, NULL);
}
