/* api/server.c: the HTTP server's life and one request's path through it: libmicrohttpd set-up
 * (address, TLS, limits) and shutdown, the callbacks that carry a request from its request line
 * through its head (request.c) and body (body.c) to the handler pool and back, and the audit record
 * and metrics taken as it is answered.
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
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"


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

static void timespec_now(struct timespec *t) { clock_gettime(CLOCK_MONOTONIC, t); }

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
    api_conn_mark_head(conn, true); /* the next request on this connection starts its head now */
    api_request *r = *con_cls;
    if (!r) return;
    *con_cls = NULL;
    struct timespec t1;
    timespec_now(&t1);
    double secs = (double)(t1.tv_sec - r->t0.tv_sec) + (double)(t1.tv_nsec - r->t0.tv_nsec) / 1e9;
    unsigned status = r->queued ? r->status : 0;
    size_t row = r->matched ? r->match.index : api_n_routes;
    if (r->started) api_metrics_record(&api->metrics, row, status, secs);
    if (!r->audited) audit_request(r, status, NULL); /* no response went out: recorded as 0 */
    if (r->started)
        api_log(api, status >= 500 || status == 0 ? SAMDA_API_LOG_WARN : SAMDA_API_LOG_DEBUG, "http request",
                "method=%s route=\"%s\" status=%u ms=%.1f token=%lld end=%d", r->method, api_metrics_row_label(row), status,
                secs * 1000.0, (long long)r->token_id, (int)toe);
    request_free(r);
    atomic_fetch_sub(&api->inflight, 1);
}

/* Caching (docs/security.md, "HTTP caching"). DICOMweb reads (QIDO, WADO, metadata, frames) may be
 * kept by the one browser that asked, and only revalidated: a viewer such as OHIF fetches them by the
 * hundred, and Chrome drops a no-store frame answer it has already received. Everything else (tokens,
 * jobs, administration, results, errors included) is no-store. */
static const char *cache_control(const api_request *r)
{
    bool dicomweb_read = r->matched && r->match.route && r->method_bit == API_GET &&
                         strncmp(r->match.route->pattern, "/dicomweb/", 10) == 0;
    return dicomweb_read ? "private, no-cache" : "no-store";
}

static void add_common_headers(api_request *r)
{
    samda_api *api = r->api;
    struct MHD_Response *resp = r->resp;
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    if (api->node_name) MHD_add_response_header(resp, "X-Samda-Node", api->node_name);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, cache_control(r));
    if (r->warning[0]) MHD_add_response_header(resp, "Warning", r->warning);
    if (r->status == 405) {
        char allow[96];
        api_methods_str(r->match.allowed, allow, sizeof allow);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
    }
    if (api->cors_origin) {
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", api->cors_origin);
        MHD_add_response_header(resp, "Vary", "Origin");
        MHD_add_response_header(resp, "Access-Control-Expose-Headers",
                                "Location, Warning, WWW-Authenticate, X-Samda-Node");
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

/* A piece of the request body: counted, then fed to the body's reader. An error stops the reading:
 * an oversized body is answered at once, anything else once the rest has been drained. */
static enum MHD_Result on_body_data(api_request *r, const char *data, size_t n)
{
    samda_api *api = r->api;
    atomic_fetch_add_explicit(&api->metrics.bytes_in, n, memory_order_relaxed);
    r->body_total += n;
    if (r->tracked) atomic_fetch_add_explicit(&r->tracked->body_bytes, n, memory_order_relaxed);
    if (r->upload_failed) return MHD_YES; /* drain (bounded below) and answer at the end */
    samda_error e = {SAMDA_OK, ""};
    bool over_limit = api_body_feed(r, data, n, &e);
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

/* The whole request is in: run its handler on the pool, the connection parked meanwhile, so that a
 * slow service call never stalls this network thread's other connections. */
static enum MHD_Result dispatch(api_request *r)
{
    samda_api *api = r->api;
    pthread_mutex_lock(&api->qmu);
    if (api->qstop) {
        pthread_mutex_unlock(&api->qmu);
        api_reply_problem(r, SAMDA_EBUSY, 0, "server is stopping");
        return queue(r);
    }
    MHD_suspend_connection(r->conn);
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

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    (void)cls;
    (void)url;
    (void)version;
    api_request *r = *con_cls;
    if (!r) return MHD_NO; /* allocation failed in on_uri: drop the connection */
    r->conn = conn;
    if (!r->started) {
        r->started = true;
        r->tracked = api_conn_tracked(conn);
        api_conn_mark_head(conn, false);
        api_request_begin(r, method);
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
        return on_body_data(r, upload_data, n);
    }
    /* The whole request is here. */
    if (r->tracked) atomic_store(&r->tracked->in_body, false);
    if (r->dispatched || r->resp) return queue(r); /* back from the handler pool */
    if (r->upload_failed) {
        api_reply_error(r, &r->upload_err);
        return queue(r);
    }
    return dispatch(r);
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

static void api_free(samda_api *api)
{
    if (!api) return;
    api_watchdog_stop(api);
    handlers_stop(api);
    free(api->handlers);
    pthread_cond_destroy(&api->qcv);
    pthread_mutex_destroy(&api->qmu);
    pthread_cond_destroy(&api->conn_cv);
    pthread_mutex_destroy(&api->conn_mu);
    api_metrics_free(&api->metrics);
    free(api->bind_address);
    free(api->tmp_dir);
    free(api->cors_origin);
    free(api->public_url);
    free(api->node_name);
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

/* The parameters a server cannot start with, refused with the rule they break. */
static bool params_ok(const samda_api_params *p, const samda_api_services *svc, samda_error *err)
{
    if (p->threads < 1 || p->threads > 256) {
        samda_fail(err, SAMDA_EINVAL, "starting HTTP server: threads must be 1..256 (got %u)", p->threads);
        return false;
    }
    if (p->port > 65535) {
        samda_fail(err, SAMDA_EINVAL, "starting HTTP server: port must be 0..65535 (got %u)", p->port);
        return false;
    }
    if (p->handler_threads < 1 || p->handler_threads > 256) {
        samda_fail(err, SAMDA_EINVAL, "starting HTTP server: handler_threads must be 1..256 (got %u)", p->handler_threads);
        return false;
    }
    if (p->max_connections < 1) {
        samda_fail(err, SAMDA_EINVAL, "starting HTTP server: max_connections must be at least 1");
        return false;
    }
    if (p->body_timeout_s > 0 && p->body_min_rate < 1) {
        samda_fail(err, SAMDA_EINVAL, "starting HTTP server: body_min_rate must be at least 1 byte per second");
        return false;
    }
    if (p->max_header_bytes < 8192) {
        samda_fail(err, SAMDA_EINVAL, "starting HTTP server: max_header_bytes must be at least 8192");
        return false;
    }
    if (p->public_url && *p->public_url && strncmp(p->public_url, "http://", 7) != 0 && strncmp(p->public_url, "https://", 8) != 0) {
        samda_fail(err, SAMDA_EINVAL, "starting HTTP server: public_url must start with http:// or https://");
        return false;
    }
    if (p->auth_required && !svc->auth_check) {
        samda_fail(err, SAMDA_ECONFIG, "starting HTTP server: auth is required but the core has no auth_check");
        return false;
    }
    if ((p->tls_cert_path == NULL) != (p->tls_key_path == NULL)) {
        samda_fail(err, SAMDA_ECONFIG, "starting HTTP server: TLS needs both a certificate and a key");
        return false;
    }
    if (p->tls_cert_path != NULL && !samda_api_tls_supported()) {
        samda_fail(err, SAMDA_ECONFIG, "starting HTTP server: this libmicrohttpd was built without TLS support");
        return false;
    }
    return true;
}

/* Where to listen, and the libmicrohttpd flags that follow from it and from TLS. */
typedef struct listen_addr {
    struct sockaddr_in sin;
    struct sockaddr_in6 sin6;
    struct sockaddr *sa; /* &sin or &sin6 */
    unsigned flags;      /* MHD_USE_* */
} listen_addr;

/* bind must be an IPv4 or IPv6 literal; "::" listens on both families. */
static bool listen_addr_init(listen_addr *la, const char *bind, unsigned port, bool tls, samda_error *err)
{
    memset(&la->sin, 0, sizeof la->sin);
    memset(&la->sin6, 0, sizeof la->sin6);
    la->flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (inet_pton(AF_INET, bind, &la->sin.sin_addr) == 1) {
        la->sin.sin_family = AF_INET;
        la->sin.sin_port = htons((uint16_t)port);
        la->sa = (struct sockaddr *)&la->sin;
    } else if (inet_pton(AF_INET6, bind, &la->sin6.sin6_addr) == 1) {
        la->sin6.sin6_family = AF_INET6;
        la->sin6.sin6_port = htons((uint16_t)port);
        la->sa = (struct sockaddr *)&la->sin6;
        la->flags |= IN6_IS_ADDR_UNSPECIFIED(&la->sin6.sin6_addr) ? MHD_USE_DUAL_STACK : MHD_USE_IPv6;
    } else {
        samda_fail(err, SAMDA_EINVAL, "starting HTTP server: bind address %.64s is not an IPv4 or IPv6 literal", bind);
        return false;
    }
    if (MHD_is_feature_supported(MHD_FEATURE_EPOLL) == MHD_YES) la->flags |= MHD_USE_EPOLL;
    else la->flags |= MHD_USE_POLL;
    if (tls) la->flags |= MHD_USE_TLS;
    return true;
}

/* A server object holding its own copies of the parameters' strings and the TLS files' contents,
 * its upload directory checked; nothing started. NULL + err. */
static samda_api *api_new(const samda_api_params *p, const samda_api_services *svc, const char *bind, bool tls,
                          samda_error *err)
{
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
    api->node_name = dup_opt(p->node_name && *p->node_name ? p->node_name : NULL, &ok);
    if (!ok || !api_metrics_init(&api->metrics)) {
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
    api->p.node_name = api->node_name;
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
    return api;
}

/* The handler pool's threads; false + err (the caller frees api, which joins those started). */
static bool handlers_start(samda_api *api, samda_error *err)
{
    api->handlers = calloc(api->p.handler_threads, sizeof *api->handlers);
    if (!api->handlers) {
        samda_fail(err, SAMDA_ENOMEM, "starting HTTP server: out of memory");
        return false;
    }
    for (unsigned i = 0; i < api->p.handler_threads; i++) {
        if (pthread_create(&api->handlers[i], NULL, handler_thread, api) != 0) {
            samda_fail(err, SAMDA_ENOMEM, "starting HTTP server: cannot create handler thread %u", i + 1);
            return false;
        }
        api->n_handlers++;
    }
    return true;
}

/* libmicrohttpd listening on la, with samda's callbacks, TLS and limits; false + err. */
static bool mhd_start(samda_api *api, const listen_addr *la, samda_error *err)
{
    const samda_api_params *p = &api->p;
    struct MHD_OptionItem ops[8];
    size_t k = 0;
    if (p->threads > 1) ops[k++] = (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE, (intptr_t)p->threads, NULL};
    if (api->tls) {
        ops[k++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, api->tls_cert_pem};
        ops[k++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, api->tls_key_pem};
        ops[k++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_PRIORITIES, 0, (void *)tls_priorities};
    }
    /* connections are tracked only for the request-head and body deadlines (deadlines.c) */
    if (p->header_timeout_s > 0 || p->body_timeout_s > 0)
        ops[k++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)api_conn_notify, api};
    ops[k++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};

    api->mhd = MHD_start_daemon(la->flags, (uint16_t)p->port, NULL, NULL, on_request, api,
                                MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, api, /* first, so it gets every message */
                                MHD_OPTION_SOCK_ADDR, la->sa,
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
                   api->bind_address, p->port);
        return false;
    }
    return true;
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
    if (!params_ok(p, svc, err)) return NULL;
    bool tls = p->tls_cert_path != NULL;
    const char *bind = p->bind_address ? p->bind_address : "127.0.0.1";
    listen_addr la;
    if (!listen_addr_init(&la, bind, p->port, tls, err)) return NULL;

    samda_api *api = api_new(p, svc, bind, tls, err);
    if (!api) return NULL;
    if (!handlers_start(api, err) || !mhd_start(api, &la, err)) {
        api_free(api);
        return NULL;
    }
    if ((p->header_timeout_s > 0 || p->body_timeout_s > 0) && !api_watchdog_start(api)) {
        MHD_stop_daemon(api->mhd);
        api_free(api);
        samda_fail(err, SAMDA_ENOMEM, "starting HTTP server: cannot create the request-head watchdog thread");
        return NULL;
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
    api_watchdog_stop(api);
    if (ls != MHD_INVALID_SOCKET) close(ls);
    api_log(api, left ? SAMDA_API_LOG_WARN : SAMDA_API_LOG_INFO, "http stopped", "unfinished=%d", left);
    api_free(api);
}
