/* Test support for the api tests: an in-memory fake of the daemon core (the real one does not
 * exist yet; it fakes only what routing, auth, limits and response building need), a curl-CLI
 * HTTP client and a raw-socket client for requests curl will not send. */
#ifndef SAMDA_TEST_API_UTIL_H
#define SAMDA_TEST_API_UTIL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "api.h"

/* Tokens the fake accepts: "admin-token" (admin, id 1), "user-token" (user, id 2),
 * "ingest-token" (ingest, id 3). */
typedef struct fake_core {
    pthread_mutex_t mu;
    /* last QIDO query */
    samda_api_query last_query;
    int qido_calls;
    /* STOW: contents of the parts, in order */
    char stow_data[32][256];
    char stow_site[64], stow_study[65];
    int stow_parts;
    int stow_completes;
    samda_api_stow_summary last_summary;
    /* audit */
    int audits;
    bool audit_fails; /* the audit callback fails (a full disk) */
    char last_audit_route[128];
    char last_audit_param[128];
    int last_audit_status;
    int64_t last_audit_token;
    /* WADO: files to serve */
    const char *files[4];
    int n_files;
    /* segment */
    char last_segment[512];
    bool healthy;
    unsigned slow_ms; /* qido sleeps this long (concurrency tests) */
    int qido_active, qido_max_active; /* calls inside qido now / at most */
    bool hold;        /* qido waits (at most 60 s) until fake_core_release() */
    pthread_cond_t cv;
} fake_core;

/** Fill svc with every service of the fake, ctx = fc. */
void fake_core_init(fake_core *fc, samda_api_services *svc);
void fake_core_destroy(fake_core *fc);
/** Let qido calls waiting on fc->hold go on. */
void fake_core_release(fake_core *fc);

/** Start a server on 127.0.0.1, ephemeral port, with the fake; asserts on failure.
 *  p may be NULL (defaults; auth required). */
samda_api *test_server_start(const samda_api_params *p, const samda_api_services *svc);

typedef struct http_result {
    int status;        /* 0 = curl failed */
    char *headers;     /* raw header block (NUL-terminated) */
    char *body;        /* NUL-terminated (may contain NULs before) */
    size_t body_len;
} http_result;

/** Run curl with extra arguments (a shell fragment, already quoted) against
 *  http://127.0.0.1:port<path>. */
http_result http_curl(unsigned port, const char *method, const char *path, const char *extra);
void http_result_free(http_result *r);
/** Header value (case-insensitive name) from r->headers, copied into buf; false if absent. */
bool http_header(const http_result *r, const char *name, char *buf, size_t size);

/** Send raw bytes, read the reply until the peer closes or timeout_ms passes. Returns the
 *  bytes read (malloc'd, NUL-terminated) and sets *status from the status line (0 if none). */
char *raw_http(unsigned port, const void *req, size_t len, int timeout_ms, int *status);
/** Connect to 127.0.0.1:port, return the socket fd (asserts). */
int raw_connect(unsigned port);

/** Write bytes to a fresh file under dir; returns malloc'd path. */
char *write_temp(const char *dir, const void *data, size_t len);
/** A fresh temp directory (malloc'd path). */
char *make_temp_dir(void);

#endif
