/* The HTTP server: libmicrohttpd set-up, one request's life (match, auth, body, handler, response,
 * audit, metrics), problem+json errors and the api's own metrics.
 *
 * libmicrohttpd is told not to unescape URLs (a no-op unescape callback): the router decodes each
 * path segment itself so that an encoded "/" or ".." inside a parameter can be refused rather
 * than silently becoming part of a path. The query string is likewise parsed from the raw request
 * target captured by the URI log callback, which also allocates the per-request state. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

const double api_hist_bounds[API_HIST_BUCKETS] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                  0.25,  0.5,   1,    2.5,   5,    10};

void samda_api_params_init(samda_api_params *p)
{
    memset(p, 0, sizeof *p);
    p->bind_address = "127.0.0.1";
    p->port = 8080;
    p->threads = 4;
    p->handler_threads = 8;
    p->max_connections = 256;
    p->connection_timeout_s = 60;
    p->header_timeout_s = 30;
    p->body_timeout_s = 60;
    p->body_min_rate = 1024;
    p->max_header_bytes = 64 * 1024;
    p->max_body_bytes = 2ull * 1024 * 1024 * 1024;
    p->max_file_bytes = 1ull * 1024 * 1024 * 1024;
    p->auth_required = true;
    p->shutdown_timeout_ms = 10000;
}

bool samda_api_tls_supported(void) { return MHD_is_feature_supported(MHD_FEATURE_TLS) == MHD_YES; }

/* What HTTPS offers (GnuTLS priority string, given to libmicrohttpd as MHD_OPTION_HTTPS_PRIORITIES).
 * BCP 195 (RFC 9325 4.1, 4.2): TLS 1.2 and 1.3 only, key exchange with forward secrecy (ECDHE; TLS 1.3
 * always has it) and AEAD ciphers only, no SHA-1 signatures (RFC 9155), safe renegotiation (RFC 5746).
 * Without it GnuTLS's NORMAL also offers TLS 1.0/1.1, static-RSA key exchange and CBC suites. DHE is
 * left out: every client samda serves has ECDHE, and DHE would need parameters of at least 2048 bits
 * chosen here. With Debian 12's GnuTLS 3.7 this leaves TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384,
 * TLS_CHACHA20_POLY1305_SHA256 (1.3) and ECDHE-{RSA,ECDSA} with AES-128/256-GCM or ChaCha20-Poly1305
 * (1.2). */
static const char tls_priorities[] = "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:"
                                    "-KX-ALL:+ECDHE-RSA:+ECDHE-ECDSA:"
                                    "-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:+CHACHA20-POLY1305:-MAC-ALL:+AEAD:"
                                    "-SIGN-RSA-SHA1:-SIGN-ECDSA-SHA1:-SIGN-DSA-SHA1:%SAFE_RENEGOTIATION";

/* ---- logging -------------------------------------------------------------------------------- */

void api_log(samda_api *api, samda_api_log_level level, const char *msg, const char *fields_fmt, ...)
{
    if (!api->p.log) return;
    char fields[1024] = "";
    if (fields_fmt) {
        va_list ap;
        va_start(ap, fields_fmt);
        vsnprintf(fields, sizeof fields, fields_fmt, ap);
        va_end(ap);
    }
    api->p.log(api->p.log_ctx, level, msg, fields);
}

static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
    samda_api *api = cls;
    if (!api->p.log) return;
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = '\0';
    for (char *c = line; *c; c++)
        if ((unsigned char)*c < 0x20) *c = ' ';
    api->p.log(api->p.log_ctx, SAMDA_API_LOG_INFO, line, "mod=microhttpd");
}

/* ---- responses ------------------------------------------------------------------------------ */

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

/* ---- small helpers -------------------------------------------------------------------------- */

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

static void timespec_now(struct timespec *t) { clock_gettime(CLOCK_MONOTONIC, t); }

/* ---- metrics -------------------------------------------------------------------------------- */

static bool metrics_init(api_metrics *m)
{
    m->rows = api_n_routes + 1;
    m->by_class = calloc(m->rows * 5, sizeof *m->by_class);
    m->hist = calloc(m->rows * API_HIST_BUCKETS, sizeof *m->hist);
    m->over = calloc(m->rows, sizeof *m->over);
    m->sum_us = calloc(m->rows, sizeof *m->sum_us);
    m->count = calloc(m->rows, sizeof *m->count);
    return m->by_class && m->hist && m->over && m->sum_us && m->count;
}

static void metrics_free(api_metrics *m)
{
    free((void *)m->by_class);
    free((void *)m->hist);
    free((void *)m->over);
    free((void *)m->sum_us);
    free((void *)m->count);
}

static void metrics_record(api_metrics *m, size_t row, unsigned status, double seconds)
{
    if (status >= 100 && status < 600) atomic_fetch_add_explicit(&m->by_class[row * 5 + status / 100 - 1], 1, memory_order_relaxed);
    size_t b = 0;
    while (b < API_HIST_BUCKETS && seconds > api_hist_bounds[b]) b++;
    if (b < API_HIST_BUCKETS) atomic_fetch_add_explicit(&m->hist[row * API_HIST_BUCKETS + b], 1, memory_order_relaxed);
    else atomic_fetch_add_explicit(&m->over[row], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->sum_us[row], (uint64_t)(seconds * 1e6), memory_order_relaxed);
    atomic_fetch_add_explicit(&m->count[row], 1, memory_order_relaxed);
}

static const char *row_label(size_t row) { return row < api_n_routes ? api_routes[row].pattern : "unmatched"; }
static const char *row_method(size_t row)
{
    if (row >= api_n_routes) return "";
    switch (api_routes[row].method) {
    case API_POST: return "POST";
    case API_PUT: return "PUT";
    case API_DELETE: return "DELETE";
    case API_PATCH: return "PATCH";
    default: return "GET";
    }
}

void api_metrics_write(samda_api *api, FILE *out)
{
    api_metrics *m = &api->metrics;
    fputs("# HELP samda_http_requests_total HTTP requests answered, by route pattern and status class.\n"
          "# TYPE samda_http_requests_total counter\n", out);
    for (size_t row = 0; row < m->rows; row++)
        for (int c = 0; c < 5; c++) {
            uint64_t v = atomic_load_explicit(&m->by_class[row * 5 + c], memory_order_relaxed);
            if (v) fprintf(out, "samda_http_requests_total{method=\"%s\",route=\"%s\",code=\"%dxx\"} %llu\n",
                           row_method(row), row_label(row), c + 1, (unsigned long long)v);
        }
    fputs("# HELP samda_http_request_duration_seconds Time from request line to response queued.\n"
          "# TYPE samda_http_request_duration_seconds histogram\n", out);
    for (size_t row = 0; row < m->rows; row++) {
        uint64_t count = atomic_load_explicit(&m->count[row], memory_order_relaxed);
        if (!count) continue;
        uint64_t cum = 0;
        for (size_t b = 0; b < API_HIST_BUCKETS; b++) {
            cum += atomic_load_explicit(&m->hist[row * API_HIST_BUCKETS + b], memory_order_relaxed);
            fprintf(out, "samda_http_request_duration_seconds_bucket{method=\"%s\",route=\"%s\",le=\"%g\"} %llu\n",
                    row_method(row), row_label(row), api_hist_bounds[b], (unsigned long long)cum);
        }
        cum += atomic_load_explicit(&m->over[row], memory_order_relaxed);
        fprintf(out, "samda_http_request_duration_seconds_bucket{method=\"%s\",route=\"%s\",le=\"+Inf\"} %llu\n",
                row_method(row), row_label(row), (unsigned long long)cum);
        fprintf(out, "samda_http_request_duration_seconds_sum{method=\"%s\",route=\"%s\"} %.6f\n", row_method(row),
                row_label(row), (double)atomic_load_explicit(&m->sum_us[row], memory_order_relaxed) / 1e6);
        /* count from the buckets so that +Inf == _count even while other threads record */
        fprintf(out, "samda_http_request_duration_seconds_count{method=\"%s\",route=\"%s\"} %llu\n", row_method(row),
                row_label(row), (unsigned long long)cum);
    }
    fprintf(out, "# HELP samda_http_requests_in_flight Requests being processed.\n"
                 "# TYPE samda_http_requests_in_flight gauge\nsamda_http_requests_in_flight %d\n",
            atomic_load(&api->inflight));
    fprintf(out, "# HELP samda_http_requests_queued Requests waiting for a handler thread.\n"
                 "# TYPE samda_http_requests_queued gauge\nsamda_http_requests_queued %u\n",
            samda_api_queued(api));
    fprintf(out, "# HELP samda_http_header_timeouts_total Connections closed because their request head was not "
                 "complete within header_timeout.\n"
                 "# TYPE samda_http_header_timeouts_total counter\nsamda_http_header_timeouts_total %llu\n",
            (unsigned long long)atomic_load(&api->header_timeouts));
    fprintf(out, "# HELP samda_http_body_timeouts_total Connections closed because their request body arrived more slowly "
                 "than body_timeout and body_min_rate allow.\n"
                 "# TYPE samda_http_body_timeouts_total counter\nsamda_http_body_timeouts_total %llu\n",
            (unsigned long long)atomic_load(&api->body_timeouts));
    fprintf(out, "# HELP samda_http_request_body_bytes_total Request body bytes received.\n"
                 "# TYPE samda_http_request_body_bytes_total counter\nsamda_http_request_body_bytes_total %llu\n",
            (unsigned long long)atomic_load(&m->bytes_in));
    fprintf(out, "# HELP samda_http_stow_parts_total STOW-RS parts offered to the core, and failed.\n"
                 "# TYPE samda_http_stow_parts_total counter\nsamda_http_stow_parts_total %llu\n"
                 "# HELP samda_http_stow_failed_total STOW-RS parts that failed.\n"
                 "# TYPE samda_http_stow_failed_total counter\nsamda_http_stow_failed_total %llu\n",
            (unsigned long long)atomic_load(&m->stow_parts), (unsigned long long)atomic_load(&m->stow_failed));
    fprintf(out, "# HELP samda_http_auth_failures_total Requests refused with 401.\n"
                 "# TYPE samda_http_auth_failures_total counter\nsamda_http_auth_failures_total %llu\n",
            (unsigned long long)atomic_load(&m->auth_failures));
}

/* ---- request life --------------------------------------------------------------------------- */

static size_t no_unescape(void *cls, struct MHD_Connection *c, char *s)
{
    (void)cls;
    (void)c;
    return strlen(s);
}

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    samda_api *api = cls;
    api_request *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->api = api;
    r->conn = conn;
    r->uri = strdup(uri ? uri : "");
    r->token_id = -1;
    r->file_fd = -1;
    timespec_now(&r->t0);
    if (r->uri) {
        char *q = strchr(r->uri, '?');
        if (q) r->query = q + 1;
    }
    atomic_fetch_add(&api->inflight, 1);
    return r;
}

static void request_free(api_request *r)
{
    api_stow_free(r);
    api_file_body_free(r);
    api_query_args_free(&r->args);
    free(r->body);
    if (r->resp) MHD_destroy_response(r->resp);
    free(r->uri);
    free(r);
}

/* ---- request-head and request-body deadlines ---------------------------------------------------
 * libmicrohttpd's connection timeout is an idle timeout: a client that sends a byte now and then
 * never reaches it and holds a connection slot for as long as it likes. Each connection is tracked
 * from connect (and again after each answer, for the next request on a kept-alive connection) until
 * its request head is complete; a watchdog shuts down those still in their head after
 * header_timeout. From then until its body is complete the request may take body_timeout plus one
 * second per body_min_rate bytes received (Apache mod_reqtimeout's rule: an upload at a fair rate
 * may take as long as it needs, a trickle may not). The watchdog acts on its own dup of the socket,
 * so a connection MHD closes meanwhile can never make it touch another file. */

static int64_t mono_ms(void)
{
    struct timespec t;
    timespec_now(&t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    samda_api *api = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        api_conn *c = calloc(1, sizeof *c);
        if (!c) return;
        const union MHD_ConnectionInfo *fi = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        c->fd = fi ? fcntl(fi->connect_fd, F_DUPFD_CLOEXEC, 0) : -1;
        if (c->fd < 0) {
            free(c);
            return; /* untracked: only the idle timeout applies to it */
        }
        const union MHD_ConnectionInfo *ai = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        snprintf(c->peer, sizeof c->peer, "?");
        if (ai && ai->client_addr) {
            const struct sockaddr *sa = ai->client_addr;
            if (sa->sa_family == AF_INET)
                inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, c->peer, sizeof c->peer);
            else if (sa->sa_family == AF_INET6)
                inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, c->peer, sizeof c->peer);
        }
        atomic_init(&c->head_since_ms, mono_ms());
        atomic_init(&c->in_head, true);
        pthread_mutex_lock(&api->conn_mu);
        c->next = api->conns;
        if (api->conns) api->conns->prev = c;
        api->conns = c;
        pthread_mutex_unlock(&api->conn_mu);
        *socket_context = c;
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        api_conn *c = *socket_context;
        if (!c) return;
        *socket_context = NULL;
        pthread_mutex_lock(&api->conn_mu);
        if (c->prev) c->prev->next = c->next;
        else api->conns = c->next;
        if (c->next) c->next->prev = c->prev;
        pthread_mutex_unlock(&api->conn_mu);
        close(c->fd);
        free(c);
    }
}

/* The request head of conn is complete (first access-handler call) or a new one begins (answer sent). */
static api_conn *conn_tracked(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

static void conn_mark_head(struct MHD_Connection *conn, bool in_head)
{
    api_conn *c = conn_tracked(conn);
    if (!c) return;
    if (in_head) {
        atomic_store(&c->in_body, false);
        atomic_store(&c->head_since_ms, mono_ms());
    } else {
        atomic_store(&c->body_bytes, 0);
        atomic_store(&c->body_since_ms, mono_ms());
        atomic_store(&c->in_body, true);
    }
    atomic_store(&c->in_head, in_head);
}

/* Whether a tracked connection is past its deadline now (and so is to be closed). */
static bool conn_late(const samda_api *api, api_conn *c, int64_t now, bool *in_body)
{
    *in_body = false;
    if (atomic_load(&c->in_head))
        return api->p.header_timeout_s > 0 && now - atomic_load(&c->head_since_ms) >= (int64_t)api->p.header_timeout_s * 1000;
    if (!atomic_load(&c->in_body) || api->p.body_timeout_s == 0) return false;
    *in_body = true;
    const uint64_t allowance = (uint64_t)api->p.body_timeout_s * 1000 + atomic_load(&c->body_bytes) * 1000 / api->p.body_min_rate;
    return now - atomic_load(&c->body_since_ms) >= (int64_t)allowance;
}

static void *watchdog_thread(void *arg)
{
    samda_api *api = arg;
    pthread_mutex_lock(&api->conn_mu);
    while (!api->watchdog_stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 250 * 1000 * 1000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&api->conn_cv, &api->conn_mu, &until);
        if (api->watchdog_stop) break;
        const int64_t now = mono_ms();
        unsigned closed[2] = {0, 0}; /* head, body */
        char first[2][64] = {"", ""};
        for (api_conn *c = api->conns; c; c = c->next) {
            bool body;
            if (!conn_late(api, c, now, &body)) continue;
            atomic_store(&c->in_head, false); /* once */
            atomic_store(&c->in_body, false);
            shutdown(c->fd, SHUT_RDWR); /* MHD sees the connection end and closes it */
            if (!closed[body]++) snprintf(first[body], sizeof first[body], "%s", c->peer);
        }
        if (closed[0]) {
            atomic_fetch_add(&api->header_timeouts, closed[0]);
            api_log(api, SAMDA_API_LOG_WARN, "closed connections whose request head was late",
                    "count=%u first_peer=%s header_timeout_s=%u", closed[0], first[0], api->p.header_timeout_s);
        }
        if (closed[1]) {
            atomic_fetch_add(&api->body_timeouts, closed[1]);
            api_log(api, SAMDA_API_LOG_WARN, "closed connections whose request body was too slow",
                    "count=%u first_peer=%s body_timeout_s=%u body_min_rate=%u", closed[1], first[1],
                    api->p.body_timeout_s, api->p.body_min_rate);
        }
    }
    pthread_mutex_unlock(&api->conn_mu);
    return NULL;
}

/* Audit a request of an AUDIT route once, with the status it is answered with. */
static samda_status audit_request(api_request *r, unsigned status, samda_error *err)
{
    samda_api *api = r->api;
    r->audited = true;
    if (!r->matched || !(r->match.route->flags & API_F_AUDIT) || !api->svc.audit) return SAMDA_OK;
    const char *names[API_MAX_PARAMS], *values[API_MAX_PARAMS];
    for (unsigned i = 0; i < r->match.n; i++) {
        names[i] = r->match.names[i];
        values[i] = r->match.values[i];
    }
    samda_api_audit_record rec = {r->token_id, r->method, r->match.route->pattern, r->match.n, names, values, (int)status};
    samda_error local;
    if (!err) err = &local;
    samda_error_clear(err);
    return api->svc.audit(api->svc.ctx, &rec, err);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    samda_api *api = cls;
    conn_mark_head(conn, true); /* the next request on this connection starts its head now */
    api_request *r = *con_cls;
    if (!r) return;
    *con_cls = NULL;
    struct timespec t1;
    timespec_now(&t1);
    double secs = (double)(t1.tv_sec - r->t0.tv_sec) + (double)(t1.tv_nsec - r->t0.tv_nsec) / 1e9;
    unsigned status = r->queued ? r->status : 0;
    size_t row = r->matched ? r->match.index : api_n_routes;
    if (r->started) metrics_record(&api->metrics, row, status, secs);
    if (!r->audited) audit_request(r, status, NULL); /* no response went out: recorded as 0 */
    if (r->started)
        api_log(api, status >= 500 || status == 0 ? SAMDA_API_LOG_WARN : SAMDA_API_LOG_DEBUG, "http request",
                "method=%s route=\"%s\" status=%u ms=%.1f token=%lld end=%d", r->method, row_label(row), status,
                secs * 1000.0, (long long)r->token_id, (int)toe);
    request_free(r);
    atomic_fetch_sub(&api->inflight, 1);
}

static void add_common_headers(api_request *r)
{
    samda_api *api = r->api;
    struct MHD_Response *resp = r->resp;
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (r->warning[0]) MHD_add_response_header(resp, "Warning", r->warning);
    if (r->status == 405) {
        char allow[96];
        api_methods_str(r->match.allowed, allow, sizeof allow);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
    }
    if (api->cors_origin) {
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", api->cors_origin);
        MHD_add_response_header(resp, "Vary", "Origin");
        MHD_add_response_header(resp, "Access-Control-Expose-Headers", "Location, Warning, WWW-Authenticate");
    }
}

static enum MHD_Result queue(api_request *r)
{
    if (!r->resp) api_reply_problem(r, SAMDA_EINTERNAL, 0, "no response produced");
    /* Audited before it is answered: an access that cannot be recorded is refused (a refusal or an
     * error that cannot be recorded still goes out: it gives nothing away). */
    if (!r->audited) {
        samda_error ae;
        if (audit_request(r, r->status, &ae) != SAMDA_OK && r->status < 400) {
            MHD_destroy_response(r->resp);
            r->resp = NULL;
            api_log(r->api, SAMDA_API_LOG_ERROR, "access refused: the audit log cannot record it", "route=\"%s\" error=\"%s\"",
                    r->match.route->pattern, ae.message);
            api_reply_problem(r, SAMDA_EBUSY, 503, "access not audited, so refused: the audit log cannot be written (%s)",
                              samda_status_str(ae.code));
        }
    }
    add_common_headers(r);
    if (r->close_conn) MHD_add_response_header(r->resp, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ret = MHD_queue_response(r->conn, r->status, r->resp);
    if (ret == MHD_YES) r->queued = true;
    return ret;
}

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

/* First call for a request: everything decided from the request line and headers. */
static void begin(api_request *r, const char *method)
{
    samda_api *api = r->api;
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

    samda_error e = {SAMDA_OK, ""};
    unsigned mb = r->method_bit ? r->method_bit : (1u << 30);
    api_match_result mr = api_route_match(api_routes, api_n_routes, mb == API_OPTIONS ? API_GET : mb, path, &r->match, &e);
    /* A route whose path parameters are wrong is still that route (router.h): its 400 comes after
     * authentication and authorisation, so anonymous clients do not learn the parameter rules. */
    const bool bad_params = mr == API_MATCH_BAD_PATH && r->match.route;
    if (mb == API_OPTIONS && (mr == API_MATCH_OK || mr == API_MATCH_METHOD || bad_params)) {
        /* CORS preflight / capability probe: answered for every known path, no auth. */
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
        return;
    }
    switch (mr) {
    case API_MATCH_NOT_FOUND:
        api_reply_problem(r, SAMDA_ENOENT, 0, "no such route: %s %.200s", r->method, path);
        return;
    case API_MATCH_METHOD: {
        char allow[96];
        api_methods_str(r->match.allowed, allow, sizeof allow);
        api_reply_problem(r, SAMDA_ENOTSUP, 405, "method %s not allowed here (allowed: %s)", r->method, allow);
        return;
    }
    case API_MATCH_BAD_PATH:
        if (bad_params) break;
        api_reply_problem(r, SAMDA_EINVAL, 0, "%s", e.message);
        return;
    case API_MATCH_OK:
        break;
    }
    r->matched = true;
    const api_route *rt = r->match.route;

    if (!authenticate(r)) return;
    if (bad_params) {
        api_reply_problem(r, SAMDA_EINVAL, 0, "%s", e.message);
        return;
    }

    if (rt->service != API_NO_SERVICE) {
        void *fn;
        memcpy(&fn, (const char *)&api->svc + rt->service, sizeof fn);
        if (!fn) {
            api_reply_unavailable(r);
            return;
        }
    }

    if (api_query_args_parse(r->query, &r->args, &e) != SAMDA_OK) {
        api_reply_error(r, &e);
        return;
    }

    int64_t cl = content_length(r);
    if (cl == -2) {
        api_reply_problem(r, SAMDA_EINVAL, 0, "Content-Length is not a number");
        return;
    }
    if (rt->flags & API_F_STREAM_BODY) {
        if (cl >= 0 && (uint64_t)cl > atomic_load(&api->max_body)) {
            api_reply_problem(r, SAMDA_ETOOBIG, 0, "body larger than http.max_body (%llu bytes)",
                              (unsigned long long)atomic_load(&api->max_body));
            return;
        }
        r->body_mode = BODY_STREAM;
        api_stow_begin(r); /* replies itself on a bad Content-Type */
        return;
    }
    if (rt->flags & API_F_FILE_BODY) {
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
        return;
    }
    if (rt->flags & API_F_JSON_BODY) {
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
        return;
    }
    if (has_body(r, cl)) {
        if (cl > 0) {
            api_reply_problem(r, SAMDA_EINVAL, 0, "%s %s takes no request body", r->method, rt->pattern);
            return;
        }
        r->body_mode = BODY_REJECT; /* chunked: refuse once data shows up */
    }
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    (void)url;
    (void)version;
    samda_api *api = cls;
    api_request *r = *con_cls;
    if (!r) return MHD_NO; /* allocation failed in on_uri: drop the connection */
    r->conn = conn;
    if (!r->started) {
        r->started = true;
        r->tracked = conn_tracked(conn);
        conn_mark_head(conn, false);
        begin(r, method);
        if (r->resp) return queue(r); /* answered from the headers: the body is never read */
        return MHD_YES;
    }
    if (r->queued) { /* answered from the headers; libmicrohttpd discards the rest */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        atomic_fetch_add_explicit(&api->metrics.bytes_in, n, memory_order_relaxed);
        r->body_total += n;
        if (r->tracked) atomic_fetch_add_explicit(&r->tracked->body_bytes, n, memory_order_relaxed);
        if (r->upload_failed) return MHD_YES; /* drain (bounded below) and answer at the end */
        samda_error e = {SAMDA_OK, ""};
        bool over_limit = false; /* the body outgrew a size limit (not: its content is wrong) */
        switch (r->body_mode) {
        case BODY_JSON:
            if (r->body_len + n > API_JSON_BODY_MAX) {
                samda_fail(&e, SAMDA_ETOOBIG, "JSON body larger than %u bytes", API_JSON_BODY_MAX);
                over_limit = true;
                break;
            }
            if (r->body_len + n + 1 > r->body_cap) {
                size_t cap = r->body_cap ? r->body_cap : 4096;
                while (cap < r->body_len + n + 1) cap *= 2;
                char *nb = realloc(r->body, cap);
                if (!nb) {
                    samda_fail(&e, SAMDA_ENOMEM, "out of memory reading the request body");
                    break;
                }
                r->body = nb;
                r->body_cap = cap;
            }
            memcpy(r->body + r->body_len, upload_data, n);
            r->body_len += n;
            r->body[r->body_len] = '\0';
            break;
        case BODY_STREAM:
            if (r->body_total > atomic_load(&api->max_body)) {
                samda_fail(&e, SAMDA_ETOOBIG, "body larger than http.max_body (%llu bytes)", (unsigned long long)atomic_load(&api->max_body));
                over_limit = true;
                break;
            }
            api_stow_feed(r, upload_data, n, &e);
            break;
        case BODY_FILE:
            if (r->body_total > r->file_limit) {
                samda_fail(&e, SAMDA_ETOOBIG, "upload larger than %llu bytes (the smaller of http.max_body and the file limit)",
                           (unsigned long long)r->file_limit);
                over_limit = true;
                break;
            }
            file_body_feed(r, upload_data, n, &e);
            break;
        case BODY_REJECT:
        case BODY_NONE:
            samda_fail(&e, SAMDA_EINVAL, "%s %s takes no request body", r->method, r->match.route ? r->match.route->pattern : "");
            break;
        }
        if (e.code != SAMDA_OK) {
            r->upload_failed = true;
            r->upload_err = e;
            api_stow_free(r); /* temp files go now, not at the end of the drain */
            api_file_body_free(r);
            if (over_limit) {
                /* Do not read the rest of an oversized body: answer now if libmicrohttpd lets us
                 * (the connection is then closed), else drop the connection. Any other error (a
                 * malformed multipart body, part headers over their limit, too many parts, a full
                 * disk) is answered once the body is in: libmicrohttpd 0.9.75 cannot queue a
                 * response while a body arrives, and the client deserves to learn why. */
                api_reply_error(r, &e);
                if (queue(r) == MHD_YES) return MHD_YES;
                api_log(api, SAMDA_API_LOG_INFO, "request body too large: connection closed", "route=\"%s\"",
                        r->match.route ? r->match.route->pattern : "");
                return MHD_NO;
            }
        }
        if (r->upload_failed && r->body_total > atomic_load(&api->max_body)) return MHD_NO;
        if (r->upload_failed && r->body_mode == BODY_FILE && r->body_total > r->file_limit) return MHD_NO;
        return MHD_YES;
    }
    /* The whole request is here. */
    if (r->tracked) atomic_store(&r->tracked->in_body, false);
    if (r->dispatched || r->resp) return queue(r); /* back from the handler pool */
    if (r->upload_failed) {
        api_reply_error(r, &r->upload_err);
        return queue(r);
    }
    /* Run the handler on the pool, the connection parked meanwhile, so that a slow service
     * call never stalls this network thread's other connections. */
    pthread_mutex_lock(&api->qmu);
    if (api->qstop) {
        pthread_mutex_unlock(&api->qmu);
        api_reply_problem(r, SAMDA_EBUSY, 0, "server is stopping");
        return queue(r);
    }
    MHD_suspend_connection(conn);
    r->dispatched = true;
    r->qnext = NULL;
    if (api->qtail) api->qtail->qnext = r;
    else api->qhead = r;
    api->qtail = r;
    api->qlen++;
    pthread_cond_signal(&api->qcv);
    pthread_mutex_unlock(&api->qmu);
    return MHD_YES;
}

static void *handler_thread(void *arg)
{
    samda_api *api = arg;
    for (;;) {
        pthread_mutex_lock(&api->qmu);
        while (!api->qhead && !api->qstop) pthread_cond_wait(&api->qcv, &api->qmu);
        api_request *r = api->qhead;
        if (!r) { /* stopping and nothing left */
            pthread_mutex_unlock(&api->qmu);
            return NULL;
        }
        api->qhead = r->qnext;
        if (!api->qhead) api->qtail = NULL;
        api->qlen--;
        bool run = !api->qstop;
        pthread_mutex_unlock(&api->qmu);
        if (run) r->match.route->handler(r);
        else api_reply_problem(r, SAMDA_EBUSY, 0, "server is stopping");
        /* Every parked connection must be resumed, or MHD_stop_daemon() aborts. */
        MHD_resume_connection(r->conn);
    }
}

unsigned samda_api_queued(samda_api *api)
{
    if (!api) return 0;
    pthread_mutex_lock(&api->qmu);
    unsigned n = api->qlen;
    pthread_mutex_unlock(&api->qmu);
    return n;
}

static void handlers_stop(samda_api *api)
{
    pthread_mutex_lock(&api->qmu);
    api->qstop = true;
    pthread_cond_broadcast(&api->qcv);
    pthread_mutex_unlock(&api->qmu);
    for (unsigned i = 0; i < api->n_handlers; i++) pthread_join(api->handlers[i], NULL);
    api->n_handlers = 0;
}

/* ---- start / stop --------------------------------------------------------------------------- */

static char *read_pem(const char *path, samda_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        samda_fail(err, SAMDA_EIO, "reading TLS file %s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || sb.st_size <= 0 || sb.st_size > 1024 * 1024) {
        close(fd);
        samda_fail(err, SAMDA_EIO, "reading TLS file %s: empty, unreadable or larger than 1 MiB", path);
        return NULL;
    }
    char *buf = malloc((size_t)sb.st_size + 1);
    size_t got = 0;
    while (buf && got < (size_t)sb.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)sb.st_size - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got += (size_t)n;
    }
    close(fd);
    if (!buf || got != (size_t)sb.st_size) {
        free(buf);
        samda_fail(err, SAMDA_EIO, "reading TLS file %s: short read", path);
        return NULL;
    }
    buf[got] = '\0';
    return buf;
}

static void watchdog_stop(samda_api *api)
{
    if (!api->watchdog_running) return;
    pthread_mutex_lock(&api->conn_mu);
    api->watchdog_stop = true;
    pthread_cond_signal(&api->conn_cv);
    pthread_mutex_unlock(&api->conn_mu);
    pthread_join(api->watchdog, NULL);
    api->watchdog_running = false;
}

static void api_free(samda_api *api)
{
    if (!api) return;
    watchdog_stop(api);
    handlers_stop(api);
    free(api->handlers);
    pthread_cond_destroy(&api->qcv);
    pthread_mutex_destroy(&api->qmu);
    pthread_cond_destroy(&api->conn_cv);
    pthread_mutex_destroy(&api->conn_mu);
    metrics_free(&api->metrics);
    free(api->bind_address);
    free(api->tmp_dir);
    free(api->cors_origin);
    free(api->public_url);
    free(api->private_dir);
    if (api->tls_key_pem) explicit_bzero(api->tls_key_pem, strlen(api->tls_key_pem));
    free(api->tls_key_pem);
    free(api->tls_cert_pem);
    free(api);
}

static char *dup_opt(const char *s, bool *ok)
{
    if (!s) return NULL;
    char *d = strdup(s);
    if (!d) *ok = false;
    return d;
}

samda_api *samda_api_start(const samda_api_params *p, const samda_api_services *svc, samda_error *err)
{
    samda_api_params defaults;
    if (!p) {
        samda_api_params_init(&defaults);
        p = &defaults;
    }
    static const samda_api_services no_services;
    if (!svc) svc = &no_services;
    if (p->threads < 1 || p->threads > 256) {
        samda_fail(err, SAMDA_EINVAL, "starting HTTP server: threads must be 1..256 (got %u)", p->threads);
        return NULL;
    }
    if (p->port > 65535) {
        samda_fail(err, SAMDA_EINVAL, "starting HTTP server: port must be 0..65535 (got %u)", p->port);
        return NULL;
    }
    if (p->handler_threads < 1 || p->handler_threads > 256) {
        samda_fail(err, SAMDA_EINVAL, "starting HTTP server: handler_threads must be 1..256 (got %u)", p->handler_threads);
        return NULL;
    }
    if (p->max_connections < 1) {
        samda_fail(err, SAMDA_EINVAL, "starting HTTP server: max_connections must be at least 1");
        return NULL;
    }
    if (p->body_timeout_s > 0 && p->body_min_rate < 1) {
        samda_fail(err, SAMDA_EINVAL, "starting HTTP server: body_min_rate must be at least 1 byte per second");
        return NULL;
    }
    if (p->max_header_bytes < 8192) {
        samda_fail(err, SAMDA_EINVAL, "starting HTTP server: max_header_bytes must be at least 8192");
        return NULL;
    }
    if (p->public_url && *p->public_url && strncmp(p->public_url, "http://", 7) != 0 && strncmp(p->public_url, "https://", 8) != 0) {
        samda_fail(err, SAMDA_EINVAL, "starting HTTP server: public_url must start with http:// or https://");
        return NULL;
    }
    if (p->auth_required && !svc->auth_check) {
        samda_fail(err, SAMDA_ECONFIG, "starting HTTP server: auth is required but the core has no auth_check");
        return NULL;
    }
    if ((p->tls_cert_path == NULL) != (p->tls_key_path == NULL)) {
        samda_fail(err, SAMDA_ECONFIG, "starting HTTP server: TLS needs both a certificate and a key");
        return NULL;
    }
    bool tls = p->tls_cert_path != NULL;
    if (tls && !samda_api_tls_supported()) {
        samda_fail(err, SAMDA_ECONFIG, "starting HTTP server: this libmicrohttpd was built without TLS support");
        return NULL;
    }

    const char *bind = p->bind_address ? p->bind_address : "127.0.0.1";
    struct sockaddr_in sin;
    struct sockaddr_in6 sin6;
    memset(&sin, 0, sizeof sin);
    memset(&sin6, 0, sizeof sin6);
    struct sockaddr *sa;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (inet_pton(AF_INET, bind, &sin.sin_addr) == 1) {
        sin.sin_family = AF_INET;
        sin.sin_port = htons((uint16_t)p->port);
        sa = (struct sockaddr *)&sin;
    } else if (inet_pton(AF_INET6, bind, &sin6.sin6_addr) == 1) {
        sin6.sin6_family = AF_INET6;
        sin6.sin6_port = htons((uint16_t)p->port);
        sa = (struct sockaddr *)&sin6;
        flags |= IN6_IS_ADDR_UNSPECIFIED(&sin6.sin6_addr) ? MHD_USE_DUAL_STACK : MHD_USE_IPv6;
    } else {
        samda_fail(err, SAMDA_EINVAL, "starting HTTP server: bind address %.64s is not an IPv4 or IPv6 literal", bind);
        return NULL;
    }
    if (MHD_is_feature_supported(MHD_FEATURE_EPOLL) == MHD_YES) flags |= MHD_USE_EPOLL;
    else flags |= MHD_USE_POLL;
    if (tls) flags |= MHD_USE_TLS;

    samda_api *api = calloc(1, sizeof *api);
    if (!api) {
        samda_fail(err, SAMDA_ENOMEM, "starting HTTP server: out of memory");
        return NULL;
    }
    pthread_mutex_init(&api->qmu, NULL);
    pthread_cond_init(&api->qcv, NULL);
    pthread_mutex_init(&api->conn_mu, NULL);
    pthread_cond_init(&api->conn_cv, NULL);
    api->p = *p;
    api->svc = *svc;
    atomic_store(&api->max_body, p->max_body_bytes);
    api->tls = tls;
    bool ok = true;
    api->bind_address = dup_opt(bind, &ok);
    const char *tmp = p->tmp_dir ? p->tmp_dir : getenv("TMPDIR");
    api->tmp_dir = dup_opt(tmp && *tmp ? tmp : "/tmp", &ok);
    api->cors_origin = dup_opt(p->cors_origin, &ok);
    api->public_url = dup_opt(p->public_url && *p->public_url ? p->public_url : NULL, &ok);
    api->private_dir = dup_opt(p->private_dir && *p->private_dir ? p->private_dir : NULL, &ok);
    if (!ok || !metrics_init(&api->metrics)) {
        api_free(api);
        samda_fail(err, SAMDA_ENOMEM, "starting HTTP server: out of memory");
        return NULL;
    }
    /* the copies replace the caller's pointers, which need not outlive this call */
    api->p.bind_address = api->bind_address;
    api->p.tmp_dir = api->tmp_dir;
    api->p.cors_origin = api->cors_origin;
    api->p.public_url = api->public_url;
    api->p.private_dir = api->private_dir;
    api->p.tls_cert_path = api->p.tls_key_path = NULL;
    if (access(api->tmp_dir, W_OK | X_OK) != 0) {
        samda_fail(err, SAMDA_EIO, "starting HTTP server: upload directory %s is not writable: %s", api->tmp_dir, strerror(errno));
        api_free(api);
        return NULL;
    }
    if (tls) {
        api->tls_cert_pem = read_pem(p->tls_cert_path, err);
        api->tls_key_pem = api->tls_cert_pem ? read_pem(p->tls_key_path, err) : NULL;
        if (!api->tls_key_pem) {
            api_free(api);
            return NULL;
        }
    }

    api->handlers = calloc(p->handler_threads, sizeof *api->handlers);
    if (!api->handlers) {
        api_free(api);
        samda_fail(err, SAMDA_ENOMEM, "starting HTTP server: out of memory");
        return NULL;
    }
    for (unsigned i = 0; i < p->handler_threads; i++) {
        if (pthread_create(&api->handlers[i], NULL, handler_thread, api) != 0) {
            api_free(api);
            samda_fail(err, SAMDA_ENOMEM, "starting HTTP server: cannot create handler thread %u", i + 1);
            return NULL;
        }
        api->n_handlers++;
    }

    struct MHD_OptionItem ops[8];
    size_t k = 0;
    if (p->threads > 1) ops[k++] = (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE, (intptr_t)p->threads, NULL};
    if (tls) {
        ops[k++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, api->tls_cert_pem};
        ops[k++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, api->tls_key_pem};
        ops[k++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_PRIORITIES, 0, (void *)tls_priorities};
    }
    /* connections are tracked only for the request-head and body deadlines (the watchdog below) */
    if (p->header_timeout_s > 0 || p->body_timeout_s > 0)
        ops[k++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)on_connection, api};
    ops[k++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};

    api->mhd = MHD_start_daemon(flags, (uint16_t)p->port, NULL, NULL, on_request, api,
                                MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, api, /* first, so it gets every message */
                                MHD_OPTION_SOCK_ADDR, sa,
                                MHD_OPTION_CONNECTION_LIMIT, (unsigned)p->max_connections,
                                MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)p->connection_timeout_s,
                                MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)p->max_header_bytes,
                                MHD_OPTION_URI_LOG_CALLBACK, on_uri, api,
                                MHD_OPTION_NOTIFY_COMPLETED, on_completed, api,
                                MHD_OPTION_UNESCAPE_CALLBACK, no_unescape, api,
                                MHD_OPTION_ARRAY, ops,
                                MHD_OPTION_END);
    if (!api->mhd) {
        samda_fail(err, SAMDA_ENETWORK, "starting HTTP server on %s port %u: bind or listen failed (address in use or not local?)",
                   bind, p->port);
        api_free(api);
        return NULL;
    }
    if (p->header_timeout_s > 0 || p->body_timeout_s > 0) {
        if (pthread_create(&api->watchdog, NULL, watchdog_thread, api) != 0) {
            MHD_stop_daemon(api->mhd);
            api_free(api);
            samda_fail(err, SAMDA_ENOMEM, "starting HTTP server: cannot create the request-head watchdog thread");
            return NULL;
        }
        api->watchdog_running = true;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(api->mhd, MHD_DAEMON_INFO_BIND_PORT);
    api->port = info ? info->port : p->port;
    api_log(api, SAMDA_API_LOG_INFO, "http listening", "addr=%s port=%u tls=%s threads=%u auth=%s", bind, api->port,
            tls ? "yes" : "no", p->threads, p->auth_required ? "required" : "off");
    return api;
}

unsigned samda_api_port(const samda_api *api) { return api ? api->port : 0; }

void samda_api_set_max_body(samda_api *api, uint64_t bytes)
{
    if (api) atomic_store(&api->max_body, bytes);
}

void samda_api_stop(samda_api *api)
{
    if (!api) return;
    MHD_socket ls = MHD_quiesce_daemon(api->mhd);
    /* In-flight requests get up to shutdown_timeout_ms to finish. */
    for (unsigned waited = 0; atomic_load(&api->inflight) > 0 && waited < api->p.shutdown_timeout_ms; waited += 10) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    int left = atomic_load(&api->inflight);
    handlers_stop(api); /* queued requests get 503; calls in progress are waited for */
    /* The 503s (and answers of calls that just returned) are sent by the network threads once their
     * connections are resumed: give them a moment before the daemon closes every connection. */
    for (unsigned waited = 0; atomic_load(&api->inflight) > 0 && waited < 1000; waited += 5) {
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    MHD_stop_daemon(api->mhd);
    watchdog_stop(api);
    if (ls != MHD_INVALID_SOCKET) close(ls);
    api_log(api, left ? SAMDA_API_LOG_WARN : SAMDA_API_LOG_INFO, "http stopped", "unfinished=%d", left);
    api_free(api);
}
