/* Internals shared by the api/ sources: the server and request structures, response helpers, handlers.
 * Not installed; tests include it only to reach the pure functions (query parsing). */
#ifndef SAMDA_API_INTERNAL_H
#define SAMDA_API_INTERNAL_H

#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "api.h"
#include "multipart.h"
#include "router.h"

/* Request duration histogram buckets (seconds), Prometheus style. */
#define API_HIST_BUCKETS 12
extern const double api_hist_bounds[API_HIST_BUCKETS];

/* Counters per route (plus one row for unmatched requests), lock-free. */
typedef struct api_metrics {
    size_t rows;                        /* api_n_routes + 1 */
    _Atomic uint64_t *by_class;         /* rows * 5: 1xx..5xx */
    _Atomic uint64_t *hist;             /* rows * API_HIST_BUCKETS (non-cumulative) */
    _Atomic uint64_t *over;             /* rows: slower than the last bound */
    _Atomic uint64_t *sum_us;           /* rows */
    _Atomic uint64_t *count;            /* rows */
    _Atomic uint64_t bytes_in;
    _Atomic uint64_t stow_parts;
    _Atomic uint64_t stow_failed;
    _Atomic uint64_t auth_failures;
} api_metrics;

typedef struct api_conn api_conn; /* deadlines.c */

struct samda_api {
    samda_api_params p;           /* strings below are our copies */
    char *bind_address, *tmp_dir, *cors_origin, *public_url, *private_dir, *node_name;
    char *tls_cert_pem, *tls_key_pem;
    samda_api_services svc;
    struct MHD_Daemon *mhd;
    unsigned port;
    bool tls;
    _Atomic uint64_t next_request_id;
    _Atomic int inflight;
    _Atomic uint64_t max_body;    /* params.max_body_bytes, changed by samda_api_set_max_body */
    api_metrics metrics;
    /* handler pool: requests whose headers and body are in, waiting for a handler thread */
    pthread_mutex_t qmu;
    pthread_cond_t qcv;
    api_request *qhead, *qtail;
    unsigned qlen;                /* requests in the queue (not those a handler runs) */
    bool qstop;                   /* set by samda_api_stop: run nothing more */
    pthread_t *handlers;
    unsigned n_handlers;
    /* request-head deadline ([http] header_timeout): every open connection, and a watchdog thread
     * that shuts down those whose request head is late (deadlines.c) */
    pthread_mutex_t conn_mu;
    pthread_cond_t conn_cv;
    api_conn *conns;
    bool watchdog_running, watchdog_stop;
    pthread_t watchdog;
    _Atomic uint64_t header_timeouts; /* connections closed for a late request head */
    _Atomic uint64_t body_timeouts;   /* connections closed for a request body sent too slowly */
};

typedef struct api_stow api_stow; /* dicomweb.c */

/* One open HTTP connection (deadlines.c), linked into samda_api.conns while MHD holds it. */
struct api_conn {
    api_conn *prev, *next;
    int fd;                         /* our dup of the socket: shutdown(2) on it is always safe */
    _Atomic int64_t head_since_ms;  /* when the current request head began (connect or last answer) */
    atomic_bool in_head;            /* the request head is not complete yet */
    _Atomic int64_t body_since_ms;  /* when the current request's head was complete */
    _Atomic uint64_t body_bytes;    /* body bytes of the current request received so far */
    atomic_bool in_body;            /* the head is complete, the body not yet */
    char peer[64];                  /* address, for the log */
};

enum api_body_mode { BODY_NONE, BODY_JSON, BODY_STREAM, BODY_FILE, BODY_FORM, BODY_REJECT };

struct api_request {
    samda_api *api;
    struct MHD_Connection *conn;
    char *uri;                     /* raw request target, as received */
    const char *query;             /* raw query string inside uri (after '?'), or NULL */
    api_conn *tracked;             /* the connection's watchdog entry, or NULL (deadlines.c) */
    char method[12];
    unsigned method_bit;
    struct timespec t0;
    bool started;
    api_match match;
    bool matched;
    api_query_args args;
    samda_api_role role;
    int64_t token_id;
    /* body */
    enum api_body_mode body_mode;
    char *body;
    size_t body_len, body_cap;
    uint64_t body_total;
    api_stow *stow;
    int file_fd;                   /* BODY_FILE: the spool file, -1 when closed */
    char *file_path;               /* BODY_FILE: its path (NULL when none); unlinked at the end */
    uint64_t file_limit;           /* BODY_FILE: largest body accepted */
    dev_t file_dev;                /* BODY_FILE: identity of the spool file, so that only it is */
    ino_t file_ino;                /* unlinked (the core may have renamed it away meanwhile) */
    bool upload_failed;            /* an error was found while the body streamed in */
    samda_error upload_err;
    /* response */
    struct MHD_Response *resp;
    unsigned status;
    char warning[128];             /* Warning header to add, or "" */
    bool queued;
    bool audited;                  /* the audit callback ran for this request */
    bool close_conn;               /* answer with Connection: close (ambiguous framing) */
    bool dispatched;               /* handed to the handler pool (connection suspended) */
    api_request *qnext;
};

/* ---- response helpers (reply.c) -------------------------------------------------------------
 * Each sets r->resp/r->status; the first one called wins (later calls are ignored). */

/** problem+json from st (HTTP status samda_status_http(st) unless http != 0); title = fmt. */
void api_reply_problem(api_request *r, samda_status st, unsigned http, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/** problem+json from a samda_error returned by a service (empty message: status text). */
void api_reply_error(api_request *r, const samda_error *e);
/** 501: the service behind this route is not available. */
void api_reply_unavailable(api_request *r);
/** JSON body; takes ownership of j (decref'd). content_type NULL = application/json. */
void api_reply_json(api_request *r, unsigned status, json_t *j, const char *content_type);
/** Body copied from data. */
void api_reply_bytes(api_request *r, unsigned status, const void *data, size_t len, const char *content_type);
/** Take ownership of a prepared MHD response. */
void api_reply_response(api_request *r, unsigned status, struct MHD_Response *resp);

/** Request header value or NULL (request.c). */
const char *api_header(api_request *r, const char *name);
/** Base of absolute URLs: params.public_url (trailing '/' removed), else "http(s)://ADDR:PORT" of
 *  the local address the connection arrived on (IPv6 in brackets), else "". Never the Host header. */
void api_base_url(api_request *r, char *buf, size_t size);
/** One log line through params.log (server.c); fields_fmt gives the key=value fields. */
void api_log(samda_api *api, samda_api_log_level level, const char *msg, const char *fields_fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---- metrics (metrics.c) ---------------------------------------------------------------- */
/** Allocate the per-route counters (api_n_routes + 1 rows); false when out of memory (free anyway). */
bool api_metrics_init(api_metrics *m);
/** Free what api_metrics_init allocated; safe after a failed init. */
void api_metrics_free(api_metrics *m);
/** Count one answered request of route row (api_n_routes: unmatched); status 0: none went out. */
void api_metrics_record(api_metrics *m, size_t row, unsigned status, double seconds);
/** The route pattern of row, or "unmatched"; static storage. */
const char *api_metrics_row_label(size_t row);
/** Write the api's own metrics (Prometheus text) to out. */
void api_metrics_write(samda_api *api, FILE *out);

/* ---- request head and body deadlines (deadlines.c) -------------------------------------- */
/** MHD_OPTION_NOTIFY_CONNECTION callback (cls: the samda_api): tracks each connection from connect. */
void api_conn_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                     enum MHD_ConnectionNotificationCode code);
/** The tracked entry of conn, or NULL (not tracked: deadlines off, or out of memory at connect). */
api_conn *api_conn_tracked(struct MHD_Connection *conn);
/** in_head: a request head begins now (connect, or the last answer went out); false: the head is
 *  complete and the body's deadline starts. */
void api_conn_mark_head(struct MHD_Connection *conn, bool in_head);
/** Start the thread that cuts connections past their deadline; false when it cannot be created. */
bool api_watchdog_start(samda_api *api);
/** Stop and join it; a no-op when it is not running. */
void api_watchdog_stop(samda_api *api);

/* ---- the request head and body (request.c, body.c) -------------------------------------- */
/** First call for a request: framing, route, auth, service, query, then api_body_expect. Replies
 *  (sets r->resp) when the request is answered from its head. */
void api_request_begin(api_request *r, const char *method);
/** Decide r->body_mode from the route's flags and the headers; replies when the body is refused. */
void api_body_expect(api_request *r);
/** Feed n body bytes to the reader of r->body_mode (r->body_total already counts them). On failure
 *  *e is filled; returns true when the failure is that the body outgrew a size limit. */
bool api_body_feed(api_request *r, const char *data, size_t n, samda_error *e);

/* ---- body hooks for streamed routes (dicomweb.c) ---------------------------------------- */
/** First call of a STREAM_BODY route: check Content-Type, create the parser. Returns false
 *  after replying with an error. */
bool api_stow_begin(api_request *r);
/** Feed upload bytes. Returns SAMDA_OK or an error (in err). */
samda_status api_stow_feed(api_request *r, const char *data, size_t len, samda_error *err);
/** Free temp files and parser; NULL-safe on r->stow. */
void api_stow_free(api_request *r);
/** Close and unlink a raw file body's spool file (body.c); safe when there is none. */
void api_file_body_free(api_request *r);

/* ---- handlers (one per route kind) ------------------------------------------------------ */
void api_h_health(api_request *r);
void api_h_metrics(api_request *r);
void api_h_stow(api_request *r);
void api_h_qido(api_request *r);
void api_h_wado(api_request *r);
void api_h_metadata(api_request *r);
void api_h_frames(api_request *r);
void api_h_changes(api_request *r);
void api_h_me(api_request *r);
void api_h_jobs_list(api_request *r);
void api_h_job_get(api_request *r);
void api_h_job_cancel(api_request *r);
void api_h_job_retry(api_request *r);
void api_h_segment(api_request *r);
void api_h_results(api_request *r);
void api_h_result_get(api_request *r);
void api_h_result_seg(api_request *r);
void api_h_result_mask_png(api_request *r);
void api_h_result_overlay_png(api_request *r);
void api_h_result_correction(api_request *r);
void api_h_session_create(api_request *r);
void api_h_session_predict(api_request *r);
void api_h_session_delete(api_request *r);
void api_h_sites_list(api_request *r);
void api_h_site_get(api_request *r);
void api_h_site_put(api_request *r);
void api_h_destinations_list(api_request *r);
void api_h_destination_add(api_request *r);
void api_h_destination_get(api_request *r);
void api_h_destination_delete(api_request *r);
void api_h_destination_echo(api_request *r);
void api_h_exports_list(api_request *r);
void api_h_export_retry(api_request *r);
void api_h_audit_list(api_request *r);
void api_h_adapters_list(api_request *r);
void api_h_adapter_upload(api_request *r);
void api_h_adapter_rollback(api_request *r);
void api_h_adapter_train(api_request *r);
void api_h_adapter_activate(api_request *r);
void api_h_adapter_evaluate(api_request *r);
void api_h_adapter_delete(api_request *r);
void api_h_study_delete(api_request *r);
void api_h_retention_run(api_request *r);
void api_h_rules_list(api_request *r);
void api_h_cluster(api_request *r);
void api_h_rules_test(api_request *r);
/** A fresh MIME boundary "samda-" + 24 hex digits into out (dicomweb.c). */
void api_random_boundary(char *out, size_t size);
/* MONAI Label compatibility (monailabel.c) */
void api_h_ml_info(api_request *r);
void api_h_ml_auth(api_request *r);
void api_h_ml_auth_token(api_request *r);
void api_h_ml_auth_valid(api_request *r);
void api_h_ml_datastore(api_request *r);
void api_h_ml_image(api_request *r);
void api_h_ml_infer(api_request *r);
void api_h_ml_save_label(api_request *r);
void api_h_ml_next_sample(api_request *r);
void api_h_ml_session_put(api_request *r);
void api_h_ml_session_get(api_request *r);
void api_h_ml_session_delete(api_request *r);
void api_h_ml_train_status(api_request *r);
void api_h_ml_train_start(api_request *r);

/* ---- helpers shared by the handlers (rest.c) -------------------------------------------- */
/** True when a service call succeeded with a result; otherwise replies with the error (or
 *  500 when the core returned no result) and releases *out. out may be NULL. */
bool api_call_ok(api_request *r, samda_status st, samda_error *e, json_t **out);
/** Refuse query parameters other than the listed ones (NULL-terminated) or given twice. */
bool api_only_params(api_request *r, const char *const *allowed);
/** Query parameter name as an unsigned in [min, max] (def when absent); replies 400 if not. */
bool api_uparam(api_request *r, const char *name, uint64_t min, uint64_t max, uint64_t def, uint64_t *out);
/** Parse the JSON body into *out (an object). required: an absent body is an error; when not
 *  required and absent, *out = NULL. Replies 400 (with line and column) and returns false on
 *  malformed JSON or a non-object. */
bool api_json_body(api_request *r, bool required, json_t **out);
/** 204 No Content. */
void api_reply_no_content(api_request *r);

/** Parse and validate QIDO query arguments for level into q (path UIDs already set by the caller
 *  in q->study_uid/series_uid). Returns SAMDA_OK, or SAMDA_EINVAL naming the parameter. *clamped
 *  is set when limit was above the maximum and was reduced. */
samda_status api_qido_parse(samda_api_level level, const api_query_args *args, samda_api_query *q,
                            bool *clamped, samda_error *err);

/** Parse an unsigned decimal in [min, max]; false when malformed or out of range. */
bool api_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);

#endif
