/* api/body.c: request bodies: how a route's body will be read (decided from its flags and the
 * headers, refused before a byte is read when it cannot fit), and each piece as it arrives: a JSON
 * document into memory, STOW-RS parts to the multipart parser (dicomweb.c), a raw upload to one
 * spool file.
 *
 * Limits are checked against what has arrived as well as against Content-Length, which a chunked
 * body does not have. Tested through the server in tests/unit/api/test_server.c (body_limits,
 * content_types) and test_dicomweb.c. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

/* ---- raw file bodies -------------------------------------------------------------------------- */

static samda_status file_body_feed(api_request *r, const char *data, size_t len, samda_error *err)
{
    if (!r->file_path) {
        size_t plen = strlen(r->api->tmp_dir) + 32;
        r->file_path = malloc(plen);
        if (!r->file_path) return samda_fail(err, SAMDA_ENOMEM, "out of memory spooling the upload");
        snprintf(r->file_path, plen, "%s/samda-upload-XXXXXX", r->api->tmp_dir);
        r->file_fd = mkostemp(r->file_path, O_CLOEXEC);
        if (r->file_fd < 0) {
            int e = errno;
            free(r->file_path);
            r->file_path = NULL;
            return samda_fail(err, e == ENOSPC || e == EDQUOT ? SAMDA_ENOSPC : SAMDA_EIO, "cannot create a temp file for the upload: %s",
                              strerror(e));
        }
        struct stat sb;
        if (fstat(r->file_fd, &sb) == 0) {
            r->file_dev = sb.st_dev;
            r->file_ino = sb.st_ino;
        }
    }
    while (len) {
        ssize_t w = write(r->file_fd, data, len);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) {
            int e = errno;
            return samda_fail(err, e == ENOSPC || e == EDQUOT ? SAMDA_ENOSPC : SAMDA_EIO, "writing the upload to the upload directory: %s",
                              strerror(e));
        }
        data += w;
        len -= (size_t)w;
    }
    return SAMDA_OK;
}

void api_file_body_free(api_request *r)
{
    if (r->file_fd >= 0) close(r->file_fd);
    r->file_fd = -1;
    if (r->file_path) {
        /* Unlink only our own file: after the core renamed it away, another request may have
         * been given the same name. */
        struct stat sb;
        if (lstat(r->file_path, &sb) == 0 && sb.st_dev == r->file_dev && sb.st_ino == r->file_ino) unlink(r->file_path);
        free(r->file_path);
        r->file_path = NULL;
    }
}

/* ---- what the body will be ------------------------------------------------------------------ */

/* Declared body size, or -1 when absent (chunked or none). -2 when malformed. */
static int64_t content_length(api_request *r)
{
    const char *cl = api_header(r, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (!cl) return -1;
    uint64_t v;
    if (!api_parse_u64(cl, 0, INT64_MAX, &v)) return -2;
    return (int64_t)v;
}

static bool has_body(api_request *r, int64_t cl)
{
    return cl > 0 || api_header(r, MHD_HTTP_HEADER_TRANSFER_ENCODING) != NULL;
}

/* STOW-RS: multipart parts streamed to temporary files as they arrive. */
static void expect_stream(api_request *r, int64_t cl)
{
    samda_api *api = r->api;
    if (cl >= 0 && (uint64_t)cl > atomic_load(&api->max_body)) {
        api_reply_problem(r, SAMDA_ETOOBIG, 0, "body larger than http.max_body (%llu bytes)",
                          (unsigned long long)atomic_load(&api->max_body));
        return;
    }
    r->body_mode = BODY_STREAM;
    api_stow_begin(r); /* replies itself on a bad Content-Type */
}

/* A raw upload (an adapter file) spooled to one temporary file, within the smaller of two limits. */
static void expect_file(api_request *r, int64_t cl)
{
    samda_api *api = r->api;
    uint64_t limit = atomic_load(&api->max_body);
    if (api->p.max_file_bytes && api->p.max_file_bytes < limit) limit = api->p.max_file_bytes;
    r->file_limit = limit;
    if (cl >= 0 && (uint64_t)cl > limit) {
        api_reply_problem(r, SAMDA_ETOOBIG, 0, "upload larger than %llu bytes (the smaller of http.max_body and the file limit)",
                          (unsigned long long)limit);
        return;
    }
    char media[128];
    const char *ct = api_header(r, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (!ct || samda_content_type_media(ct, media, sizeof media, NULL) != SAMDA_OK || strcmp(media, "application/octet-stream") != 0) {
        api_reply_problem(r, SAMDA_ENOTSUP, 0, "request body must be Content-Type: application/octet-stream");
        return;
    }
    r->body_mode = BODY_FILE;
}

/* A JSON document read into memory (API_JSON_BODY_MAX at most); an absent body is the handler's call. */
static void expect_json(api_request *r, int64_t cl)
{
    if (!has_body(r, cl)) return;
    if (cl > (int64_t)API_JSON_BODY_MAX) {
        api_reply_problem(r, SAMDA_ETOOBIG, 0, "JSON body larger than %u bytes", API_JSON_BODY_MAX);
        return;
    }
    char media[128];
    const char *ct = api_header(r, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (!ct || samda_content_type_media(ct, media, sizeof media, NULL) != SAMDA_OK || strcmp(media, "application/json") != 0) {
        api_reply_problem(r, SAMDA_ENOTSUP, 0, "request body must be Content-Type: application/json");
        return;
    }
    r->body_mode = BODY_JSON;
}

/* A form (multipart/form-data or application/x-www-form-urlencoded, the MONAI Label clients'
 * bodies) read into memory, within the smaller of http.max_body and API_FORM_BODY_MAX; a public
 * route's form (the login) within 64 KiB, so no one unauthenticated makes samdad hold more. */
static uint64_t form_limit(api_request *r)
{
    uint64_t limit = atomic_load(&r->api->max_body);
    uint64_t cap = r->match.route->roles ? API_FORM_BODY_MAX : 64 * 1024;
    return limit < cap ? limit : cap;
}

static void expect_form(api_request *r, int64_t cl)
{
    if (!has_body(r, cl)) return;
    if (cl >= 0 && (uint64_t)cl > form_limit(r)) {
        api_reply_problem(r, SAMDA_ETOOBIG, 0, "form body larger than %llu bytes", (unsigned long long)form_limit(r));
        return;
    }
    char media[128];
    const char *ct = api_header(r, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (!ct || samda_content_type_media(ct, media, sizeof media, NULL) != SAMDA_OK ||
        (strcmp(media, "multipart/form-data") && strcmp(media, "application/x-www-form-urlencoded"))) {
        api_reply_problem(r, SAMDA_ENOTSUP, 0,
                          "request body must be Content-Type: multipart/form-data or application/x-www-form-urlencoded");
        return;
    }
    r->body_mode = BODY_FORM;
}

void api_body_expect(api_request *r)
{
    const api_route *rt = r->match.route;
    int64_t cl = content_length(r);
    if (cl == -2) {
        api_reply_problem(r, SAMDA_EINVAL, 0, "Content-Length is not a number");
        return;
    }
    if (rt->flags & API_F_STREAM_BODY) {
        expect_stream(r, cl);
    } else if (rt->flags & API_F_FILE_BODY) {
        expect_file(r, cl);
    } else if (rt->flags & API_F_JSON_BODY) {
        expect_json(r, cl);
    } else if (rt->flags & API_F_FORM_BODY) {
        expect_form(r, cl);
    } else if (has_body(r, cl)) {
        if (cl > 0 && (rt->flags & API_F_STRAY_BODY)) {
            /* Waiting for bytes that never come would hang the client: answer now, on this
             * network thread (these handlers are index reads), and never read the body. */
            rt->handler(r);
            return;
        }
        if (cl > 0) {
            api_reply_problem(r, SAMDA_EINVAL, 0, "%s %s takes no request body", r->method, rt->pattern);
            return;
        }
        r->body_mode = BODY_REJECT; /* chunked: refuse once data shows up */
    }
}

/* Append to the in-memory JSON body (kept NUL-terminated). */
static void json_body_feed(api_request *r, const char *data, size_t n, uint64_t limit, samda_error *e, bool *over_limit)
{
    if (r->body_len + n > limit) {
        samda_fail(e, SAMDA_ETOOBIG, "%s body larger than %llu bytes", r->body_mode == BODY_FORM ? "form" : "JSON",
                   (unsigned long long)limit);
        *over_limit = true;
        return;
    }
    if (r->body_len + n + 1 > r->body_cap) {
        size_t cap = r->body_cap ? r->body_cap : 4096;
        while (cap < r->body_len + n + 1) cap *= 2;
        char *nb = realloc(r->body, cap);
        if (!nb) {
            samda_fail(e, SAMDA_ENOMEM, "out of memory reading the request body");
            return;
        }
        r->body = nb;
        r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, data, n);
    r->body_len += n;
    r->body[r->body_len] = '\0';
}

bool api_body_feed(api_request *r, const char *data, size_t n, samda_error *e)
{
    samda_api *api = r->api;
    bool over_limit = false; /* the body outgrew a size limit (not: its content is wrong) */
    switch (r->body_mode) {
    case BODY_JSON:
        json_body_feed(r, data, n, API_JSON_BODY_MAX, e, &over_limit);
        break;
    case BODY_FORM:
        json_body_feed(r, data, n, form_limit(r), e, &over_limit);
        break;
    case BODY_STREAM:
        if (r->body_total > atomic_load(&api->max_body)) {
            samda_fail(e, SAMDA_ETOOBIG, "body larger than http.max_body (%llu bytes)", (unsigned long long)atomic_load(&api->max_body));
            over_limit = true;
            break;
        }
        api_stow_feed(r, data, n, e);
        break;
    case BODY_FILE:
        if (r->body_total > r->file_limit) {
            samda_fail(e, SAMDA_ETOOBIG, "upload larger than %llu bytes (the smaller of http.max_body and the file limit)",
                       (unsigned long long)r->file_limit);
            over_limit = true;
            break;
        }
        file_body_feed(r, data, n, e);
        break;
    case BODY_REJECT:
    case BODY_NONE:
        samda_fail(e, SAMDA_EINVAL, "%s %s takes no request body", r->method, r->match.route ? r->match.route->pattern : "");
        break;
    }
    return over_limit;
}
