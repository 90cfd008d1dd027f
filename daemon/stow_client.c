/* daemon/stow_client.c: a small HTTP/1.1 client for one thing, STOW-RS (stow_client.h). One
 * connection per request (Connection: close), TLS through OpenSSL with the server's certificate and
 * host name verified, the body streamed from the files with its length announced, the answer read
 * bounded. */
#include "stow_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "random.h"

#define STOW_SECRET_MAX 4096
#define STOW_HEAD_MAX 16384
#define STOW_BODY_MAX 65536

typedef struct conn {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
} conn;

/* An outcome for every instance at once. */
static void all(samda_store_result *res, size_t n, samda_status st, bool transient, const char *fmt, const char *a)
{
    for (size_t i = 0; i < n; i++) {
        res[i].status = st;
        res[i].is_transient = transient;
        snprintf(res[i].message, sizeof res[i].message, fmt, a);
    }
}

/* The secret, without trailing white space. */
static bool read_secret(const char *path, char *out, size_t size, char *why, size_t why_size)
{
    FILE *f = path ? fopen(path, "r") : NULL;
    if (!f) {
        snprintf(why, why_size, "cannot read secret_file %s: %s", path ? path : "(none)", strerror(errno));
        return false;
    }
    size_t n = fread(out, 1, size - 1, f);
    bool more = fgetc(f) != EOF;
    fclose(f);
    if (more) {
        snprintf(why, why_size, "secret_file %s is longer than %d bytes", path, STOW_SECRET_MAX - 1);
        return false;
    }
    while (n && (out[n - 1] == '\n' || out[n - 1] == '\r' || out[n - 1] == ' ' || out[n - 1] == '\t')) n--;
    out[n] = 0;
    if (!n || strpbrk(out, "\r\n")) {
        snprintf(why, why_size, "secret_file %s is empty or holds more than one line", path);
        return false;
    }
    return true;
}

/* TCP connection with a timeout; reads and writes time out too. */
static bool tcp_connect(const samdad_stow_target *t, int *fd_out, char *why, size_t why_size)
{
    char port[8];
    snprintf(port, sizeof port, "%u", t->url.port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    int g = getaddrinfo(t->url.host, port, &hints, &ai);
    if (g) {
        snprintf(why, why_size, "cannot resolve %s: %s", t->url.host, gai_strerror(g));
        return false;
    }
    int fd = -1, err = 0;
    for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
        if (fd < 0) continue;
        int rc = connect(fd, a->ai_addr, a->ai_addrlen);
        if (rc < 0 && errno == EINPROGRESS) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            socklen_t len = sizeof err;
            rc = poll(&p, 1, (int)t->timeout_s * 1000) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && !err
                     ? 0 : -1;
            if (rc < 0 && !err) err = ETIMEDOUT;
        } else if (rc < 0) {
            err = errno;
        }
        if (rc < 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(ai);
    if (fd < 0) {
        snprintf(why, why_size, "cannot connect to %s:%u: %s", t->url.host, t->url.port, strerror(err ? err : EIO));
        return false;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    struct timeval tv = {.tv_sec = (time_t)t->timeout_s};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    *fd_out = fd;
    return true;
}

/* TLS over c->fd: TLS 1.2 or later, the server's certificate verified against the CAs and its
 * name against the URL's host. A failed verification is permanent (*permanent). */
static bool tls_start(const samdad_stow_target *t, conn *c, bool *permanent, char *why, size_t why_size)
{
    c->ctx = SSL_CTX_new(TLS_client_method());
    if (!c->ctx || !SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION)) goto fail;
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    int ok = (t->ca_file || t->ca_dir) ? SSL_CTX_load_verify_locations(c->ctx, t->ca_file, t->ca_dir)
                                       : SSL_CTX_set_default_verify_paths(c->ctx);
    if (!ok) {
        *permanent = true;
        snprintf(why, why_size, "cannot load the trusted CAs (tls_ca_file/tls_ca_dir)");
        return false;
    }
    if (!(c->ssl = SSL_new(c->ctx)) || !SSL_set_fd(c->ssl, c->fd)) goto fail;
    unsigned char ip[16];
    bool literal = inet_pton(AF_INET, t->url.host, ip) == 1 || inet_pton(AF_INET6, t->url.host, ip) == 1;
    if (literal) X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), t->url.host);
    else if (!SSL_set_tlsext_host_name(c->ssl, t->url.host) || !SSL_set1_host(c->ssl, t->url.host)) goto fail;
    if (SSL_connect(c->ssl) == 1) return true;
    long v = SSL_get_verify_result(c->ssl);
    if (v != X509_V_OK) {
        *permanent = true;
        snprintf(why, why_size, "TLS: the server's certificate does not verify: %s", X509_verify_cert_error_string(v));
        return false;
    }
fail:
    snprintf(why, why_size, "TLS with %s:%u failed: %s", t->url.host, t->url.port,
             ERR_reason_error_string(ERR_peek_last_error()) ? ERR_reason_error_string(ERR_peek_last_error())
                                                             : "handshake failed");
    ERR_clear_error();
    return false;
}

static void conn_close(conn *c)
{
    if (c->ssl) {
        SSL_shutdown(c->ssl);
        SSL_free(c->ssl);
    }
    SSL_CTX_free(c->ctx);
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    c->ssl = NULL;
    c->ctx = NULL;
}

static bool conn_write(conn *c, const void *buf, size_t n)
{
    const char *p = buf;
    while (n) {
        ssize_t w = c->ssl ? SSL_write(c->ssl, p, n > 1 << 30 ? 1 << 30 : (int)n) : write(c->fd, p, n);
        if (w <= 0) {
            if (!c->ssl && w < 0 && errno == EINTR) continue;
            return false;
        }
        p += w;
        n -= (size_t)w;
    }
    return true;
}

static ssize_t conn_read(conn *c, void *buf, size_t n)
{
    if (c->ssl) {
        int r = SSL_read(c->ssl, buf, (int)n);
        return r > 0 ? r : (SSL_get_error(c->ssl, r) == SSL_ERROR_ZERO_RETURN ? 0 : -1);
    }
    ssize_t r;
    do r = read(c->fd, buf, n);
    while (r < 0 && errno == EINTR);
    return r;
}

/* ---- the request --------------------------------------------------------------------------- */

typedef struct request {
    char boundary[40];
    char part_head[128];
    size_t part_head_len;
    off_t *sizes;
    unsigned long long length; /* of the body */
} request;

static bool plan_body(request *rq, const char *const *paths, size_t n, char *why, size_t why_size)
{
    char hex[25];
    if (samda_random_hex(hex, sizeof hex, 12, NULL) != SAMDA_OK) snprintf(hex, sizeof hex, "%08x", (unsigned)getpid());
    snprintf(rq->boundary, sizeof rq->boundary, "samda-stow-%s", hex);
    rq->part_head_len = (size_t)snprintf(rq->part_head, sizeof rq->part_head,
                                         "--%s\r\nContent-Type: application/dicom\r\n\r\n", rq->boundary);
    rq->length = strlen(rq->boundary) + 6; /* "--B--\r\n" */
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        if (stat(paths[i], &st) != 0) {
            snprintf(why, why_size, "cannot read the stored object: %s", strerror(errno));
            return false;
        }
        rq->sizes[i] = st.st_size;
        rq->length += rq->part_head_len + (unsigned long long)st.st_size + 2;
    }
    return true;
}

/* "Authorization: ...\r\n" or "" into out. */
static bool auth_header(const samdad_stow_target *t, char *out, size_t size, char *why, size_t why_size)
{
    out[0] = 0;
    if (t->auth == SAMDAD_STOW_AUTH_NONE) return true;
    char secret[STOW_SECRET_MAX];
    if (!read_secret(t->secret_file, secret, sizeof secret, why, why_size)) return false;
    if (t->auth == SAMDAD_STOW_AUTH_BEARER) {
        snprintf(out, size, "Authorization: Bearer %s\r\n", secret);
    } else {
        char plain[STOW_SECRET_MAX + 128];
        int n = snprintf(plain, sizeof plain, "%s:%s", t->username ? t->username : "", secret);
        unsigned char b64[((STOW_SECRET_MAX + 128) / 3 + 2) * 4 + 1];
        EVP_EncodeBlock(b64, (const unsigned char *)plain, n);
        snprintf(out, size, "Authorization: Basic %s\r\n", b64);
        OPENSSL_cleanse(plain, sizeof plain);
    }
    OPENSSL_cleanse(secret, sizeof secret);
    return true;
}

static bool send_file(conn *c, const char *path, off_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    static const size_t chunk = 65536;
    char *buf = malloc(chunk);
    off_t left = size;
    bool ok = buf != NULL;
    while (ok && left > 0) {
        ssize_t r = read(fd, buf, (size_t)left < chunk ? (size_t)left : chunk);
        ok = r > 0 && conn_write(c, buf, (size_t)r);
        if (ok) left -= r;
    }
    free(buf);
    close(fd);
    return ok;
}

static bool send_request(conn *c, const samdad_stow_target *t, const request *rq, const char *auth,
                         const char *const *paths, size_t n)
{
    char head[2048 + STOW_SECRET_MAX * 2];
    int hn = snprintf(head, sizeof head,
                      "POST %s/studies HTTP/1.1\r\nHost: %s%s%s:%u\r\nUser-Agent: samdad\r\nAccept: application/dicom+json\r\n"
                      "Content-Type: multipart/related; type=\"application/dicom\"; boundary=%s\r\n"
                      "Content-Length: %llu\r\n%sConnection: close\r\n\r\n",
                      t->url.path, strchr(t->url.host, ':') ? "[" : "", t->url.host, strchr(t->url.host, ':') ? "]" : "",
                      t->url.port, rq->boundary, rq->length, auth);
    bool ok = hn > 0 && (size_t)hn < sizeof head && conn_write(c, head, (size_t)hn);
    OPENSSL_cleanse(head, sizeof head);
    for (size_t i = 0; ok && i < n; i++)
        ok = conn_write(c, rq->part_head, rq->part_head_len) && send_file(c, paths[i], rq->sizes[i]) &&
             conn_write(c, "\r\n", 2);
    char tail[64];
    int tn = snprintf(tail, sizeof tail, "--%s--\r\n", rq->boundary);
    return ok && conn_write(c, tail, (size_t)tn);
}

/* ---- the answer ---------------------------------------------------------------------------- */

typedef struct answer {
    int status;
    char *body;
    size_t body_len;
    bool readable; /* the body could be decoded (a malformed chunked answer: false) */
} answer;

/* The value of header name in the head (lower-case compare), or NULL. */
static const char *header(const char *head, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = strstr(head, "\r\n"); p && p[2] && !(p[2] == '\r' && p[3] == '\n'); p = strstr(p + 2, "\r\n"))
        if (strncasecmp(p + 2, name, n) == 0 && p[2 + n] == ':') return p + 3 + n;
    return NULL;
}

/* How many body bytes the answer holds when it is complete: its Content-Length; 0 for a bodiless
 * answer; SIZE_MAX when only the end of the connection (or of the chunks) tells. */
static size_t body_length(const char *head)
{
    const char *cl = header(head, "content-length");
    if (header(head, "transfer-encoding") || !cl) return SIZE_MAX;
    return (size_t)strtoull(cl, NULL, 10);
}

/* Chunked transfer coding undone in place (RFC 9112 7.1); false when malformed. */
static bool dechunk(char *body, size_t *len)
{
    size_t in = 0, out = 0;
    for (;;) {
        char *end;
        unsigned long long n = strtoull(body + in, &end, 16);
        char *crlf = strstr(end, "\r\n");
        if (end == body + in || !crlf || (size_t)(crlf - body) > *len) return false;
        in = (size_t)(crlf - body) + 2;
        if (n == 0) break;
        if (n > *len - in) return false;
        memmove(body + out, body + in, n);
        out += n;
        in += n + 2;
        if (in > *len) return false;
    }
    *len = out;
    body[out] = 0;
    return true;
}

/* Whether the head (buf up to end, the blank line) announces chunked transfer coding. */
static bool header_chunked(char *buf, char *end)
{
    char keep = end[2];
    end[2] = 0;
    const char *te = header(buf, "transfer-encoding");
    bool chunked = te && strstr(te, "chunked") && (size_t)(strstr(te, "chunked") - buf) < (size_t)(end - buf);
    end[2] = keep;
    return chunked;
}

/* Status line and body (at most STOW_BODY_MAX bytes of it): read until the announced length, the
 * last chunk or the end of the connection. */
static bool read_answer(conn *c, answer *a, char *why, size_t why_size)
{
    size_t cap = STOW_HEAD_MAX + STOW_BODY_MAX, len = 0, want = SIZE_MAX;
    char *buf = malloc(cap + 1), *end = NULL;
    if (!buf) return false;
    ssize_t r;
    while (len < cap && (r = conn_read(c, buf + len, cap - len)) > 0) {
        len += (size_t)r;
        buf[len] = 0;
        if (!end && (end = strstr(buf, "\r\n\r\n"))) {
            end[2] = 0; /* the head alone, for header() */
            want = body_length(buf);
            end[2] = '\r';
        }
        size_t have = end ? len - (size_t)(end + 4 - buf) : 0;
        if (end && want != SIZE_MAX && have >= want) break;
        if (end && want == SIZE_MAX && header_chunked(buf, end) &&
            (strncmp(end + 4, "0\r\n\r\n", 5) == 0 || strstr(end + 4, "\r\n0\r\n\r\n")))
            break; /* the last chunk */
    }
    buf[len] = 0;
    if (!len || strncmp(buf, "HTTP/1.", 7) != 0 || !end || sscanf(buf + 8, " %d", &a->status) != 1) {
        snprintf(why, why_size, len ? "the server's answer is not HTTP" : "the server closed the connection without an answer");
        free(buf);
        return false;
    }
    bool chunked = header_chunked(buf, end);
    a->body_len = len - (size_t)(end + 4 - buf);
    memmove(buf, end + 4, a->body_len + 1);
    a->body = buf;
    a->readable = !chunked || dechunk(a->body, &a->body_len);
    return true;
}

/* PS3.18 10.5.3: the instances listed in FailedSOPSequence (0008,1198) with their FailureReason. */
static void mark_failed(const answer *a, const char *const *sop_uids, size_t n, samda_store_result *res)
{
    json_t *j = a->readable ? json_loadb(a->body, a->body_len, 0, NULL) : NULL;
    json_t *seq = json_object_get(json_object_get(j, "00081198"), "Value");
    if (a->status == 202 && !json_is_array(seq)) { /* some failed, and we cannot tell which: send all again */
        all(res, n, SAMDA_ENETWORK, true, "%s",
            "STOW-RS: HTTP 202 (some instances not stored) without a readable FailedSOPSequence: sent again");
        json_decref(j);
        return;
    }
    size_t i;
    json_t *item;
    json_array_foreach(seq, i, item) {
        const char *uid = json_string_value(json_array_get(json_object_get(json_object_get(item, "00081155"), "Value"), 0));
        json_int_t reason = json_integer_value(json_array_get(json_object_get(json_object_get(item, "00081197"), "Value"), 0));
        for (size_t k = 0; uid && k < n; k++) {
            if (strcmp(uid, sop_uids[k]) != 0) continue;
            res[k].status = SAMDA_ECONFLICT;
            res[k].is_transient = false;
            snprintf(res[k].message, sizeof res[k].message, "STOW-RS: the server refused the instance (FailureReason %04llX)",
                     (unsigned long long)reason);
        }
    }
    json_decref(j);
}

static void judge(const answer *a, const char *const *sop_uids, size_t n, samda_store_result *res)
{
    char code[64];
    snprintf(code, sizeof code, "%d", a->status);
    if (a->status == 200 || a->status == 202) {
        all(res, n, SAMDA_OK, false, "%s", "");
        if (a->status == 202) mark_failed(a, sop_uids, n, res);
        return;
    }
    bool transient = a->status == 408 || a->status == 429 || a->status >= 500;
    samda_status st = a->status == 401 || a->status == 403 ? SAMDA_EFORBIDDEN
                      : a->status == 409                   ? SAMDA_ECONFLICT
                      : a->status == 413                   ? SAMDA_ETOOBIG
                      : a->status == 415                   ? SAMDA_ENOTSUP
                                                           : SAMDA_ENETWORK;
    all(res, n, st, transient,
        a->status == 401 ? "STOW-RS: HTTP %s: the server did not accept the credentials (auth, username, secret_file)"
                         : "STOW-RS: the server answered HTTP %s", code);
    if (a->status == 409) mark_failed(a, sop_uids, n, res);
}

void samdad_stow_send(const samdad_stow_target *t, const char *const *paths, const char *const *sop_uids, size_t n,
                      samda_store_result *res)
{
    memset(res, 0, n * sizeof *res);
    char why[SAMDA_ERROR_MESSAGE_SIZE] = "";
    char auth[STOW_SECRET_MAX * 2];
    request rq = {.sizes = calloc(n ? n : 1, sizeof(off_t))};
    conn c = {.fd = -1};
    bool permanent = false;
    answer a = {0};
    if (!rq.sizes) {
        all(res, n, SAMDA_ENOMEM, true, "%s", "STOW-RS: out of memory");
        return;
    }
    if (!plan_body(&rq, paths, n, why, sizeof why) || !auth_header(t, auth, sizeof auth, why, sizeof why)) {
        all(res, n, SAMDA_EIO, true, "STOW-RS: %s", why);
    } else if (!tcp_connect(t, &c.fd, why, sizeof why) || (t->url.https && !tls_start(t, &c, &permanent, why, sizeof why))) {
        all(res, n, SAMDA_ENETWORK, !permanent, "STOW-RS: %s", why);
    } else if (!send_request(&c, t, &rq, auth, paths, n)) {
        all(res, n, SAMDA_ENETWORK, true, "%s", "STOW-RS: the connection broke while sending (or timed out)");
    } else if (!read_answer(&c, &a, why, sizeof why)) {
        all(res, n, SAMDA_ENETWORK, true, "STOW-RS: %s", why);
    } else {
        judge(&a, sop_uids, n, res);
    }
    OPENSSL_cleanse(auth, sizeof auth);
    free(a.body);
    conn_close(&c);
    free(rq.sizes);
}
