/* See api_test_util.h. */
#include "api_test_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

/* ---- fake core ---------------------------------------------------------------------------- */

static samda_status f_auth(void *ctx, const char *token, samda_api_role *role, int64_t *id, samda_error *err)
{
    (void)ctx;
    static const struct { const char *tok; samda_api_role role; int64_t id; } t[] = {
        {"admin-token", SAMDA_API_ROLE_ADMIN, 1}, {"user-token", SAMDA_API_ROLE_USER, 2}, {"ingest-token", SAMDA_API_ROLE_INGEST, 3}};
    for (size_t i = 0; i < 3; i++)
        if (strcmp(token, t[i].tok) == 0) {
            *role = t[i].role;
            *id = t[i].id;
            return SAMDA_OK;
        }
    return samda_fail(err, SAMDA_EAUTH, "unknown token");
}

static samda_status f_audit(void *ctx, const samda_api_audit_record *rec, samda_error *err)
{
    fake_core *fc = ctx;
    if (fc->audit_fails) return samda_fail(err, SAMDA_EDB, "database or disk is full");
    pthread_mutex_lock(&fc->mu);
    fc->audits++;
    snprintf(fc->last_audit_route, sizeof fc->last_audit_route, "%s %s", rec->method, rec->route);
    fc->last_audit_param[0] = '\0';
    if (rec->n_params) snprintf(fc->last_audit_param, sizeof fc->last_audit_param, "%s=%s", rec->param_names[0], rec->param_values[0]);
    fc->last_audit_status = rec->http_status;
    fc->last_audit_token = rec->token_id;
    pthread_mutex_unlock(&fc->mu);
    return SAMDA_OK;
}

static samda_status f_health(void *ctx, json_t **checks, bool *healthy, samda_error *err)
{
    (void)err;
    fake_core *fc = ctx;
    *healthy = fc->healthy;
    *checks = json_pack("{s:{s:s}, s:{s:s}}", "database", "status", "ok", "disk", "status", fc->healthy ? "ok" : "fail");
    return SAMDA_OK;
}

static samda_status f_metrics(void *ctx, FILE *out, samda_error *err)
{
    (void)ctx;
    (void)err;
    fputs("# HELP samda_core_up Core is up.\n# TYPE samda_core_up gauge\nsamda_core_up 1\n", out);
    return SAMDA_OK;
}

/* A fake "DICOM" part is text: "class|instance|study|series", or "BAD" (cannot be parsed). */
static samda_status f_stow(void *ctx, const samda_api_stow_part *part, samda_api_stow_outcome *out, samda_error *err)
{
    fake_core *fc = ctx;
    char buf[256] = "";
    FILE *f = fopen(part->path, "rb");
    if (!f) return samda_fail(err, SAMDA_EIO, "fake: cannot open part");
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    pthread_mutex_lock(&fc->mu);
    if (fc->stow_parts < 32) snprintf(fc->stow_data[fc->stow_parts], sizeof fc->stow_data[0], "%s", buf);
    fc->stow_parts++;
    snprintf(fc->stow_site, sizeof fc->stow_site, "%s", part->site ? part->site : "");
    snprintf(fc->stow_study, sizeof fc->stow_study, "%s", part->study_uid ? part->study_uid : "");
    pthread_mutex_unlock(&fc->mu);
    if (part->size < sizeof buf && n != part->size) return samda_fail(err, SAMDA_EINTERNAL, "fake: size mismatch");
    if (strcmp(buf, "BAD") == 0) return samda_fail(err, SAMDA_EBADDICOM, "fake: cannot parse");
    char *save = NULL;
    char *cls = strtok_r(buf, "|", &save), *ins = strtok_r(NULL, "|", &save);
    char *study = strtok_r(NULL, "|", &save), *series = strtok_r(NULL, "|", &save);
    if (!cls || !ins || !study || !series) return samda_fail(err, SAMDA_EBADDICOM, "fake: malformed");
    snprintf(out->sop_class_uid, sizeof out->sop_class_uid, "%s", cls);
    snprintf(out->sop_instance_uid, sizeof out->sop_instance_uid, "%s", ins);
    if (part->study_uid && strcmp(part->study_uid, study) != 0) {
        out->failure_reason = 0xA900;
        return samda_fail(err, SAMDA_EINVAL, "fake: wrong study");
    }
    snprintf(out->study_uid, sizeof out->study_uid, "%s", study);
    snprintf(out->series_uid, sizeof out->series_uid, "%s", series);
    return SAMDA_OK;
}

static void f_stow_complete(void *ctx, const samda_api_stow_summary *s)
{
    fake_core *fc = ctx;
    pthread_mutex_lock(&fc->mu);
    fc->stow_completes++;
    fc->last_summary = *s;
    fc->last_summary.site = fc->last_summary.study_uid = NULL;
    pthread_mutex_unlock(&fc->mu);
}

static samda_status f_qido(void *ctx, const samda_api_query *q, json_t **out, samda_error *err)
{
    (void)err;
    fake_core *fc = ctx;
    pthread_mutex_lock(&fc->mu);
    if (++fc->qido_active > fc->qido_max_active) fc->qido_max_active = fc->qido_active;
    pthread_mutex_unlock(&fc->mu);
    if (fc->slow_ms) {
        struct timespec ts = {fc->slow_ms / 1000, (long)(fc->slow_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    pthread_mutex_lock(&fc->mu);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 60;
    while (fc->hold && pthread_cond_timedwait(&fc->cv, &fc->mu, &until) == 0) {
    }
    fc->last_query = *q;
    fc->qido_calls++;
    fc->qido_active--;
    pthread_mutex_unlock(&fc->mu);
    if (strcmp(q->study_uid, "9.9.9") == 0) return samda_fail(err, SAMDA_ENOENT, "unknown study 9.9.9");
    *out = json_pack("[{s:{s:s, s:[s]}}]", "0020000D", "vr", "UI", "Value", q->study_uid[0] ? q->study_uid : "1.2.3");
    return SAMDA_OK;
}

static samda_status f_retrieve(void *ctx, const samda_api_ref *ref, json_t **paths, samda_error *err)
{
    fake_core *fc = ctx;
    if (strcmp(ref->study, "1.2.3") != 0) return samda_fail(err, SAMDA_ENOENT, "unknown study %s", ref->study);
    *paths = json_array();
    for (int i = 0; i < fc->n_files; i++) json_array_append_new(*paths, json_string(fc->files[i]));
    return SAMDA_OK;
}

static samda_status f_metadata(void *ctx, const samda_api_ref *ref, json_t **out, samda_error *err)
{
    (void)ctx;
    if (strcmp(ref->study, "1.2.3") != 0) return samda_fail(err, SAMDA_ENOENT, "unknown study %s", ref->study);
    /* like the real core: bulk data by reference, on the base URL the api gives */
    char uri[512];
    snprintf(uri, sizeof uri, "%s/dicomweb/studies/%s/bulk", ref->base_url, ref->study);
    *out = json_pack("[{s:{s:s, s:[s]}, s:{s:s, s:s}}]", "0020000D", "vr", "UI", "Value", ref->study, "7FE00010", "vr", "OW",
                     "BulkDataURI", uri);
    return SAMDA_OK;
}

static samda_status f_frame(void *ctx, const samda_api_ref *ref, unsigned frame, void **data, size_t *size, samda_error *err)
{
    (void)ctx;
    if (!ref->instance || frame > 3) return samda_fail(err, SAMDA_ENOENT, "frame %u out of range", frame);
    char buf[32];
    int n = snprintf(buf, sizeof buf, "frame-%u", frame);
    *data = malloc((size_t)n);
    memcpy(*data, buf, (size_t)n);
    *size = (size_t)n;
    return SAMDA_OK;
}

static samda_status f_changes(void *ctx, int64_t since, unsigned limit, json_t **out, samda_error *err)
{
    (void)ctx;
    (void)err;
    *out = json_pack("{s:[], s:I, s:b, s:i}", "changes", "last", (json_int_t)since, "done", 1, "limit", (int)limit);
    return SAMDA_OK;
}

static samda_status f_jobs(void *ctx, const char *state, unsigned limit, unsigned offset, json_t **out, samda_error *err)
{
    (void)ctx;
    (void)err;
    *out = json_pack("[{s:i, s:s, s:i, s:i}]", "id", 7, "state", state ? state : "any", "limit", (int)limit, "offset", (int)offset);
    return SAMDA_OK;
}

static samda_status f_job_get(void *ctx, int64_t id, json_t **out, samda_error *err)
{
    (void)ctx;
    if (id == 9) /* a core error that names samda's own files (see private_dir) */
        return samda_fail(err, SAMDA_EIO, "object /var/lib/samda-test/objects/1.2/3.4/5.6.dcm: cannot read it: I/O "
                          "error (also /var/lib/samda-test)");
    if (id != 7) return samda_fail(err, SAMDA_ENOENT, "unknown job %lld", (long long)id);
    *out = json_pack("{s:I, s:s}", "id", (json_int_t)id, "state", "running");
    return SAMDA_OK;
}

static samda_status f_job_cancel(void *ctx, int64_t id, int64_t tok, json_t **out, samda_error *err)
{
    (void)ctx;
    (void)tok;
    if (id == 8) return samda_fail(err, SAMDA_ECANCELED, "job 8 already finished");
    *out = json_pack("{s:I, s:s}", "id", (json_int_t)id, "state", "cancelled");
    return SAMDA_OK;
}

static samda_status f_job_retry(void *ctx, int64_t id, int64_t tok, json_t **out, samda_error *err)
{
    (void)ctx;
    (void)tok;
    (void)err;
    *out = json_pack("{s:I, s:s}", "id", (json_int_t)id, "state", "queued");
    return SAMDA_OK;
}

static samda_status f_segment(void *ctx, const samda_api_segment_request *req, json_t **out, samda_error *err)
{
    (void)err;
    fake_core *fc = ctx;
    pthread_mutex_lock(&fc->mu);
    int n = snprintf(fc->last_segment, sizeof fc->last_segment, "study=%s labels=", req->study_uid);
    for (unsigned i = 0; i < req->n_labels && n < 400; i++) n += snprintf(fc->last_segment + n, sizeof fc->last_segment - (size_t)n, "%s%s", i ? "," : "", req->labels[i]);
    snprintf(fc->last_segment + n, sizeof fc->last_segment - (size_t)n, " adapter=%s tta=%s tx=%s", req->adapter_version ? req->adapter_version : "-",
             req->tta ? req->tta : "-", req->transaction_id ? req->transaction_id : "-");
    pthread_mutex_unlock(&fc->mu);
    *out = json_pack("{s:i, s:s}", "id", 42, "state", "queued");
    return SAMDA_OK;
}

static samda_status f_results(void *ctx, const char *study, json_t **out, samda_error *err)
{
    (void)ctx;
    if (strcmp(study, "1.2.3") != 0) return samda_fail(err, SAMDA_ENOENT, "unknown study %s", study);
    *out = json_pack("{s:s, s:[]}", "study", study, "segmentations");
    return SAMDA_OK;
}

void fake_core_init(fake_core *fc, samda_api_services *svc)
{
    memset(fc, 0, sizeof *fc);
    pthread_mutex_init(&fc->mu, NULL);
    pthread_cond_init(&fc->cv, NULL);
    fc->healthy = true;
    memset(svc, 0, sizeof *svc);
    svc->ctx = fc;
    svc->auth_check = f_auth;
    svc->audit = f_audit;
    svc->health = f_health;
    svc->metrics = f_metrics;
    svc->stow_instance = f_stow;
    svc->stow_complete = f_stow_complete;
    svc->qido = f_qido;
    svc->retrieve = f_retrieve;
    svc->metadata = f_metadata;
    svc->frame = f_frame;
    svc->changes = f_changes;
    svc->jobs_list = f_jobs;
    svc->job_get = f_job_get;
    svc->job_cancel = f_job_cancel;
    svc->job_retry = f_job_retry;
    svc->segment = f_segment;
    svc->results = f_results;
}

void fake_core_destroy(fake_core *fc)
{
    pthread_cond_destroy(&fc->cv);
    pthread_mutex_destroy(&fc->mu);
}

void fake_core_release(fake_core *fc)
{
    pthread_mutex_lock(&fc->mu);
    fc->hold = false;
    pthread_cond_broadcast(&fc->cv);
    pthread_mutex_unlock(&fc->mu);
}

static void test_log(void *ctx, samda_api_log_level level, const char *msg, const char *fields)
{
    (void)ctx;
    if (getenv("SAMDA_TEST_VERBOSE")) fprintf(stderr, "[api %d] %s %s\n", (int)level, msg, fields);
}

samda_api *test_server_start(const samda_api_params *p, const samda_api_services *svc)
{
    samda_api_params d;
    if (p) d = *p;
    else samda_api_params_init(&d);
    d.port = 0;
    d.threads = d.threads ? d.threads : 4;
    if (!d.log) d.log = test_log;
    samda_error err = {SAMDA_OK, ""};
    samda_api *api = samda_api_start(&d, svc, &err);
    if (!api) fail_msg("samda_api_start: %s", err.message);
    assert_true(samda_api_port(api) > 0);
    return api;
}

/* ---- curl --------------------------------------------------------------------------------- */

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t n = 0, cap = 0;
    if (f) {
        char tmp[65536];
        size_t k;
        while ((k = fread(tmp, 1, sizeof tmp, f)) > 0) {
            if (n + k + 1 > cap) {
                cap = (n + k + 1) * 2;
                buf = realloc(buf, cap);
            }
            memcpy(buf + n, tmp, k);
            n += k;
        }
        fclose(f);
    }
    if (!buf) buf = calloc(1, 1);
    buf[n] = '\0';
    if (len) *len = n;
    return buf;
}

http_result http_curl(unsigned port, const char *method, const char *path, const char *extra)
{
    http_result r = {0, NULL, NULL, 0};
    char hdr[] = "/tmp/samda-test-hdr-XXXXXX", body[] = "/tmp/samda-test-body-XXXXXX";
    int h = mkstemp(hdr), b = mkstemp(body);
    assert_true(h >= 0 && b >= 0);
    close(h);
    close(b);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "curl -s -g --max-time 30 -X %s -D %s -o %s -w '%%{http_code}' %s 'http://127.0.0.1:%u%s'", method, hdr,
             body, extra ? extra : "", port, path);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char code[16] = "";
    if (!fgets(code, sizeof code, p)) code[0] = '\0';
    pclose(p);
    r.status = atoi(code);
    r.headers = slurp(hdr, NULL);
    r.body = slurp(body, &r.body_len);
    unlink(hdr);
    unlink(body);
    return r;
}

void http_result_free(http_result *r)
{
    free(r->headers);
    free(r->body);
    r->headers = r->body = NULL;
}

bool http_header(const http_result *r, const char *name, char *buf, size_t size)
{
    size_t nl = strlen(name);
    const char *s = r->headers;
    while (s && *s) {
        const char *eol = strstr(s, "\r\n");
        if (!eol) eol = s + strlen(s);
        if ((size_t)(eol - s) > nl && strncasecmp(s, name, nl) == 0 && s[nl] == ':') {
            const char *v = s + nl + 1;
            while (*v == ' ') v++;
            snprintf(buf, size, "%.*s", (int)(eol - v), v);
            return true;
        }
        s = *eol ? eol + 2 : eol;
    }
    return false;
}

/* ---- raw sockets -------------------------------------------------------------------------- */

int raw_connect(unsigned port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    return fd;
}

char *raw_http(unsigned port, const void *req, size_t len, int timeout_ms, int *status)
{
    int fd = raw_connect(port);
    const char *p = req;
    while (len) {
        ssize_t w = send(fd, p, len, MSG_NOSIGNAL);
        if (w <= 0) break; /* the server may close early (413): read what it said */
        p += w;
        len -= (size_t)w;
    }
    size_t n = 0, cap = 65536;
    char *buf = malloc(cap);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &t1);
        long el = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
        if (el >= timeout_ms) break;
        struct pollfd pf = {fd, POLLIN, 0};
        if (poll(&pf, 1, (int)(timeout_ms - el)) <= 0) break;
        if (n + 4096 > cap) buf = realloc(buf, cap *= 2);
        ssize_t k = recv(fd, buf + n, cap - n - 1, 0);
        if (k <= 0) break;
        n += (size_t)k;
    }
    buf[n] = '\0';
    close(fd);
    *status = 0;
    if (n > 12 && strncmp(buf, "HTTP/1.", 7) == 0) *status = atoi(buf + 9);
    return buf;
}

char *make_temp_dir(void)
{
    char tmpl[] = "/tmp/samda-api-test-XXXXXX";
    assert_non_null(mkdtemp(tmpl));
    return strdup(tmpl);
}

char *write_temp(const char *dir, const void *data, size_t len)
{
    char *path = malloc(strlen(dir) + 32);
    sprintf(path, "%s/file-XXXXXX", dir);
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
    return path;
}
