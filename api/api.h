/* samda's HTTP face: a libmicrohttpd server for DICOMweb (STOW-RS, QIDO-RS, WADO-RS), the /api/v1
 * REST routes, /health and /metrics.
 *
 * The api knows HTTP, DICOMweb's wire conventions and bearer tokens; it knows nothing of SQLite,
 * DCMTK or libtorch. Everything it serves comes from the daemon's core through one table of
 * function pointers, samda_api_services, defined here and implemented by the daemon. Every
 * service is optional: a NULL pointer makes the routes that need it answer 501 (a problem+json
 * document "not available in this build", or the route's own reason, such as "training needs the
 * model worker").
 *
 * Conventions for every service function:
 *  - It returns a samda_status. SAMDA_OK means the out-values are filled. Any other status becomes
 *    the HTTP status samda_status_http(status) and an RFC 7807 problem document whose title is
 *    err->message (so write it for the client: "unknown study 1.2.3"; no patient data) or, when
 *    the message is empty, samda_status_str(status). Out-values are ignored on failure, and a
 *    reference left in one is released by the api.
 *  - json_t out-values are new references owned by the api (it calls json_decref); in-values are
 *    borrowed for the duration of the call.
 *  - Strings passed in are borrowed for the duration of the call; copy what you keep.
 *  - It may be called from any of the server's threads, concurrently with itself and with every
 *    other service: the implementation must be thread-safe.
 *  - Service calls run on the api's handler threads (params.handler_threads), never on the
 *    network threads: a slow call holds one handler thread (and its request), while other
 *    connections keep being read and answered. When every handler thread is busy, further
 *    requests wait in a queue. STOW-RS calls stow_instance once per part, in order, on one
 *    handler thread. samda_api_stop waits for calls in progress to return.
 *
 * Thread-safety of the functions below: samda_api_start/stop must not race each other for one
 * server; samda_api_port may be called from any thread while the server runs. */
#ifndef SAMDA_API_H
#define SAMDA_API_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "dicom_rules.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------
 * Roles and the services table
 * ------------------------------------------------------------------------------------------- */

/** What a bearer token may do. admin > user; ingest is separate (it may only STOW).
 *  user: read DICOMweb, results, jobs, changes; run segmentation. admin: everything. */
typedef enum samda_api_role {
    SAMDA_API_ROLE_NONE = 0, /* no valid token (or auth disabled: every route is allowed) */
    SAMDA_API_ROLE_INGEST = 1,
    SAMDA_API_ROLE_USER = 2,
    SAMDA_API_ROLE_ADMIN = 3
} samda_api_role;

/** Query/retrieve level of a QIDO search or a WADO reference. */
typedef enum samda_api_level {
    SAMDA_API_LEVEL_STUDY = 0,
    SAMDA_API_LEVEL_SERIES = 1,
    SAMDA_API_LEVEL_INSTANCE = 2
} samda_api_level;

#define SAMDA_API_UID_SIZE SAMDA_VR_UI_SIZE   /* 64 characters + NUL (common/dicom_rules.h) */
#define SAMDA_API_QUERY_MAX_MODALITIES 16
#define SAMDA_API_QUERY_MAX_INCLUDEFIELDS 64
#define SAMDA_API_QIDO_LIMIT_DEFAULT 100u
#define SAMDA_API_QIDO_LIMIT_MAX 1000u

/** A validated QIDO-RS search (PS3.18 8.3.4), filled by the api from the path and query string.
 *  Every string is NUL-terminated and already checked: UIDs are digits and dots (<= 64), dates
 *  are real calendar dates, the rest contain no control characters and no backslash. An empty
 *  string means "no constraint". Values are exactly what the client sent (after
 *  percent-decoding): bind them as SQL parameters, never splice them into SQL text. */
typedef struct samda_api_query {
    samda_api_level level;       /* what to return: studies, series or instances */
    char study_uid[SAMDA_API_UID_SIZE];        /* path {study} or StudyInstanceUID (0020000D) */
    char series_uid[SAMDA_API_UID_SIZE];       /* path {series} or SeriesInstanceUID (0020000E) */
    char sop_instance_uid[SAMDA_API_UID_SIZE]; /* SOPInstanceUID (00080018) */
    char patient_id[65];         /* PatientID (00100020), LO; may hold DICOM wildcards * and ? */
    char accession_number[17];   /* AccessionNumber (00080050), SH; may hold wildcards * and ? */
    char patient_name[193];      /* PatientName (00100010), PN (up to three 64-character groups);
                                  * may hold wildcards * and ?; matched case-insensitively */
    char study_description[65];  /* StudyDescription (00081030), LO; may hold wildcards */
    bool fuzzy;                  /* fuzzymatching=true: a PatientName value without wildcards also
                                  * matches names with a component that starts with it */
    bool has_date;               /* StudyDate (00080020) given */
    char date_from[9];           /* YYYYMMDD, inclusive; "" = open start ("-YYYYMMDD") */
    char date_to[9];             /* YYYYMMDD, inclusive; "" = open end ("YYYYMMDD-") */
    /* ModalitiesInStudy (00080061) or Modality (00080060), comma list = any of; CS, upper case. */
    char modalities[SAMDA_API_QUERY_MAX_MODALITIES][17];
    unsigned n_modalities;
    /* includefield: extra attributes to return, as tags (group << 16 | element), deduplicated. */
    uint32_t includefields[SAMDA_API_QUERY_MAX_INCLUDEFIELDS];
    unsigned n_includefields;
    bool include_all;            /* includefield=all */
    unsigned limit;              /* 1..SAMDA_API_QIDO_LIMIT_MAX (default 100) */
    unsigned offset;             /* results to skip */
} samda_api_query;

/** A DICOMweb resource named by the path. study is always set; series is NULL at study level;
 *  instance is NULL above instance level. Strings are validated UIDs, borrowed for the call. */
typedef struct samda_api_ref {
    samda_api_level level;
    const char *study;
    const char *series;
    const char *instance;
    const char *base_url; /* prefix for absolute URLs such as BulkDataURI: params.public_url, else
                           * "http(s)://ADDR:PORT" of the local address and port the connection
                           * arrived on (IPv6 in brackets), "" when unknown; never derived from
                           * the client's Host header. Never NULL */
} samda_api_ref;

/** One STOW-RS part handed to the core (PS3.18 10.5). Borrowed for the call. */
typedef struct samda_api_stow_part {
    uint64_t request_id;      /* same for every part of one HTTP request, and for stow_complete */
    unsigned index;           /* 0-based position of the part in the multipart body */
    const char *site;         /* path {site} of /dicomweb/sites/{site}/studies, else NULL */
    const char *study_uid;    /* path {study} of /dicomweb/studies/{study}: the instance must belong
                               * to it (else fail it with failure_reason 0xA900), else NULL */
    const char *path;         /* temp file holding the part's bytes, in params.tmp_dir. The core
                               * may rename(2) it away (same file system) or copy it; the api
                               * unlinks whatever is left after the call. */
    uint64_t size;            /* bytes in the file */
    const char *content_type; /* the part's Content-Type ("application/dicom") */
} samda_api_stow_part;

/** What the core says about one STOW-RS part. Zeroed by the api before the call. */
typedef struct samda_api_stow_outcome {
    char sop_class_uid[SAMDA_API_UID_SIZE];    /* fill when known, stored or not */
    char sop_instance_uid[SAMDA_API_UID_SIZE]; /* fill when known, stored or not */
    char study_uid[SAMDA_API_UID_SIZE];        /* fill when stored: the api builds RetrieveURL */
    char series_uid[SAMDA_API_UID_SIZE];       /* fill when stored */
    /* On failure: the DICOM Failure Reason (PS3.18 Table 10.5.3-1 / PS3.4 Annex GG), e.g. 0xA700
     * out of resources, 0xA900 data set does not match (wrong study), 0xC000 cannot understand,
     * 0x0110 processing failure, 0x0111 duplicate. 0 = derive it from the returned status with
     * samda_status_dicom(). */
    unsigned failure_reason;
} samda_api_stow_outcome;

/** Summary of one STOW-RS request, given to stow_complete. Borrowed for the call. */
typedef struct samda_api_stow_summary {
    uint64_t request_id;
    const char *site;       /* as in samda_api_stow_part */
    const char *study_uid;  /* as in samda_api_stow_part */
    int64_t token_id;       /* who sent it (-1: auth disabled) */
    unsigned parts;         /* parts in the request (stored + failed; a part whose Content-Type
                             * is not application/dicom fails without reaching stow_instance) */
    unsigned stored;        /* of which stored */
    unsigned failed;        /* of which failed */
    int http_status;        /* 200 all stored, 202 some failed, 409 all failed */
} samda_api_stow_summary;

/** A raw file upload (POST /api/v1/sites/{site}/adapters), spooled by the api. Borrowed for
 *  the call. */
typedef struct samda_api_upload {
    const char *site;         /* path {site} */
    const char *path;         /* temp file holding the body, in params.tmp_dir; the core may
                               * rename(2) it away; the api unlinks whatever is left afterwards */
    uint64_t size;            /* bytes in the file */
    const char *content_type; /* the request's Content-Type */
    int parent_version;       /* query parameter parent (>= 1), or 0 when absent */
    int64_t token_id;         /* who sent it (-1: auth disabled) */
} samda_api_upload;

/** Tuning of POST /api/v1/studies/{study}/segment, validated by the api. Borrowed for the call. */
typedef struct samda_api_segment_request {
    const char *study_uid;             /* path {study} */
    const char *const *labels;         /* names ([A-Za-z0-9._-]{1,63}); NULL when n_labels == 0 */
    unsigned n_labels;                 /* 0 = every label of the site's adapter */
    const char *adapter_version;       /* name, or NULL = the site's active adapter */
    const char *tta;                   /* "off" | "episodic" | "continual" | NULL = site default */
    const char *transaction_id;        /* client's idempotency key (name syntax) or NULL */
    int64_t token_id;                  /* who asked (-1: auth disabled) */
} samda_api_segment_request;

/** A validated GET /api/v1/exports query. Strings borrowed for the call. */
typedef struct samda_api_export_filter {
    const char *state;       /* "pending", "sending", "done" or "failed"; NULL = any */
    const char *destination; /* a destination name ([A-Za-z0-9._-]{1,63}); NULL = any */
    int64_t result_id;       /* only the items sending this result's DICOM-SEG (>= 1); 0 = any */
    unsigned limit;          /* 1..1000 (default 100) */
    unsigned offset;         /* items to skip, newest first */
} samda_api_export_filter;

/* ---- MONAI Label compatibility (/monailabel/) ------------------------------------------------ */

/** A volume with its geometry, filled by the core for the MONAI Label routes (the api writes it as
 *  NRRD). Voxel (i, j, k) = (column, row, slice in sorted order) is at data[(k * sizes[1] + j) *
 *  sizes[0] + i]. */
typedef enum samda_api_voxel { SAMDA_API_VOXEL_U8 = 0, SAMDA_API_VOXEL_I16 = 1, SAMDA_API_VOXEL_F32 = 2 } samda_api_voxel;
typedef struct samda_api_volume {
    samda_api_voxel type;
    size_t sizes[3];          /* columns, rows, slices */
    double directions[3][3];  /* LPS step (mm) of one voxel along i, j, k */
    double origin[3];         /* LPS centre (mm) of voxel (0, 0, 0): the first slice's position */
    void *data;               /* malloc'd by the core; the api frees it */
} samda_api_volume;

/** POST /monailabel/infer/{model}, validated by the api. Borrowed for the call. */
typedef struct samda_api_ml_infer {
    const char *model;        /* path {model} */
    const char *series_uid;   /* query image (a valid UID); NULL when session_id names the image */
    const char *session_id;   /* query session_id (a valid UID, PUT /monailabel/session/'s answer) or NULL */
    const json_t *params;     /* the form's params object (may be empty) */
    bool want_seg;            /* output=dicom_seg: fill seg/seg_len instead of the volume */
    int64_t token_id;
} samda_api_ml_infer;

/** PUT /monailabel/datastore/label: a label map drawn on a series. Borrowed for the call. */
typedef struct samda_api_ml_label {
    const char *series_uid;   /* query image */
    const char *tag;          /* query tag ("final" when absent) */
    const json_t *params;     /* the form's params object (label names: "label_info" or "label_names") */
    const samda_api_volume *label; /* U8 label map with the geometry the client sent (NRRD) */
    bool raw_bin;             /* OHIF's label.bin: label->data holds label->sizes[0] bytes in the
                               * series' own voxel order, no geometry */
    int64_t token_id;
} samda_api_ml_label;
/** A validated GET /api/v1/audit query. Strings borrowed for the call. */
typedef struct samda_api_audit_filter {
    const char *actor;  /* only this actor ("token:3", "cli", "system"); NULL = any */
    const char *action; /* only actions containing this text; NULL = any */
    int64_t since_ms;   /* only entries at or after this time (ms since the epoch); 0 = open */
    int64_t until_ms;   /* only entries at or before this time; 0 = open */
    int64_t before_id;  /* only entries with a smaller id (paging back); 0 = from the newest */
    unsigned limit;     /* 1..1000 (default 100) */
} samda_api_audit_filter;

/** PUT /monailabel/session/: an image volume a client uploaded (3D Slicer's volume as NRRD).
 *  Borrowed for the call. */
typedef struct samda_api_ml_session {
    const samda_api_volume *image; /* F32 voxels and the LPS geometry the client sent */
    int64_t expiry_s;              /* query expiry: seconds of idleness before it ends; 0 = default */
    const char *site;              /* query site (a valid name) or NULL: the default site */
    int64_t token_id;
} samda_api_ml_session;

/** One audited request. Borrowed for the call. Carries no patient data: the route pattern,
 *  the resource identifiers from the path (UIDs, job ids, site names) and the outcome. */
typedef struct samda_api_audit_record {
    int64_t token_id;                 /* -1: anonymous (auth disabled or failed) */
    const char *method;               /* "GET", "POST", ... */
    const char *route;                /* pattern, e.g. "/dicomweb/studies/{study}/metadata" */
    unsigned n_params;                /* path parameters, in pattern order */
    const char *const *param_names;   /* e.g. "study" */
    const char *const *param_values;  /* validated values */
    int http_status;
} samda_api_audit_record;

/** The daemon core, as seen by the api. Zero-initialise, set ctx and the functions you have.
 *  See the file comment for the conventions every function follows. */
typedef struct samda_api_services {
    void *ctx; /* passed as the first argument of every function */

    /** Authenticate a bearer token (the text after "Bearer "; never empty, at most 512 bytes).
     *  The core compares SHA-256 hashes in constant time.
     *  OUT role, token_id (an id safe to log and audit).
     *  Returns SAMDA_OK (role and token_id set); SAMDA_EAUTH unknown/revoked/expired token (the
     *  api answers 401 with WWW-Authenticate: Bearer); another status: answered as such.
     *  Required when params.auth_required (samda_api_start refuses otherwise). */
    samda_status (*auth_check)(void *ctx, const char *token, samda_api_role *role,
                               int64_t *token_id, samda_error *err);

    /** Record one request of a route marked AUDIT (DICOMweb, results, segmentation, jobs) with
     *  the status about to be sent, BEFORE its response goes out (or, when the connection failed
     *  before any response, afterwards with http_status 0). Returns SAMDA_OK when recorded; on any
     *  other status the api refuses the access instead of answering it: a success response (status
     *  below 400) is replaced by 503 "access not audited" (docs/security.md: every access to images,
     *  masks and adapters is audited, or refused). Called once per request. */
    samda_status (*audit)(void *ctx, const samda_api_audit_record *rec, samda_error *err);

    /** GET /health. OUT checks: a JSON object, one member per subsystem
     *  ({"database": {"status": "ok"}, "disk": {"status": "fail", "detail": "..."}, ...});
     *  OUT healthy: overall verdict (200 when true, 503 when false). The api adds its own
     *  "http" member. */
    samda_status (*health)(void *ctx, json_t **checks, bool *healthy, samda_error *err);

    /** GET /metrics. Write the core's metrics in the Prometheus text format 0.0.4 to out (an
     *  in-memory stream owned by the api: do not close it). Names must not collide with the
     *  api's own samda_http_* families. */
    samda_status (*metrics)(void *ctx, FILE *out, samda_error *err);

    /** STOW-RS: store one part (called once per part, in order, after the whole body arrived and
     *  parsed). OUT outcome (pre-zeroed). Returns SAMDA_OK when stored (fill the UIDs); otherwise
     *  the part failed (fill what is known and, optionally, failure_reason) and the api goes on
     *  with the next part. A failure never aborts the request. */
    samda_status (*stow_instance)(void *ctx, const samda_api_stow_part *part,
                                  samda_api_stow_outcome *outcome, samda_error *err);

    /** STOW-RS: the request whose parts were just offered is over (called once per request
     *  that reached stow_instance, after the last part): the core treats its instances as one
     *  unit of work (e.g. marks the series complete). */
    void (*stow_complete)(void *ctx, const samda_api_stow_summary *summary);

    /** QIDO-RS: search. OUT matches: a JSON array of DICOM JSON objects (PS3.18 F.2), at most
     *  query->limit, after skipping query->offset. The api returns it as application/dicom+json
     *  (an empty array is a 200 with []). */
    samda_status (*qido)(void *ctx, const samda_api_query *query, json_t **matches,
                         samda_error *err);

    /** WADO-RS: the stored files of a study, series or instance. OUT paths: a JSON array of
     *  strings, absolute paths of Part 10 files, in the order to send them. The api opens and
     *  streams them one after another (never whole in memory); a file that vanished meanwhile
     *  ends the response with an error. SAMDA_ENOENT: unknown UID (404). */
    samda_status (*retrieve)(void *ctx, const samda_api_ref *ref, json_t **paths,
                             samda_error *err);

    /** WADO-RS metadata. OUT metadata: a JSON array of DICOM JSON objects, one per instance,
     *  without bulk data (or with BulkDataURI, built on ref->base_url). SAMDA_ENOENT: unknown
     *  UID (404). */
    samda_status (*metadata)(void *ctx, const samda_api_ref *ref, json_t **metadata,
                             samda_error *err);

    /** WADO-RS frames: the raw (native) pixel bytes of one frame of an instance (ref level is
     *  INSTANCE). frame is 1-based. OUT data, size: a buffer allocated with malloc(); the api
     *  frees it with free(). SAMDA_ENOENT: unknown instance or frame number out of range. */
    samda_status (*frame)(void *ctx, const samda_api_ref *ref, unsigned frame, void **data,
                          size_t *size, samda_error *err);

    /** GET /api/v1/changes?since=&limit=. OUT changes: a JSON object
     *  {"changes": [...], "last": <seq>, "done": bool}. since: sequence number to start after
     *  (0 = from the start); limit: 1..1000 (default 100). */
    samda_status (*changes)(void *ctx, int64_t since, unsigned limit, json_t **changes,
                            samda_error *err);

    /** GET /api/v1/jobs?state=&limit=&offset=. state: a name or NULL (any). OUT jobs: JSON
     *  array of job objects. */
    samda_status (*jobs_list)(void *ctx, const char *state, unsigned limit, unsigned offset,
                              json_t **jobs, samda_error *err);

    /** GET /api/v1/jobs/{id}. OUT job: JSON object. SAMDA_ENOENT: no such job (404). */
    samda_status (*job_get)(void *ctx, int64_t id, json_t **job, samda_error *err);

    /** POST /api/v1/jobs/{id}/cancel. OUT job: the job after the change. SAMDA_ENOENT (404);
     *  SAMDA_ECANCELED / SAMDA_EEXIST when its state does not allow it (409). */
    samda_status (*job_cancel)(void *ctx, int64_t id, int64_t token_id, json_t **job,
                               samda_error *err);

    /** POST /api/v1/jobs/{id}/retry. As job_cancel, for a failed or cancelled job. */
    samda_status (*job_retry)(void *ctx, int64_t id, int64_t token_id, json_t **job,
                              samda_error *err);

    /** POST /api/v1/studies/{study}/segment: queue segmentation of a study. OUT job: the queued
     *  (or, for a repeated transaction_id, the existing) job object, with an integer "id"
     *  member; the api answers 202 with Location: /api/v1/jobs/{id}. SAMDA_ENOENT: unknown
     *  study (404). */
    samda_status (*segment)(void *ctx, const samda_api_segment_request *req, json_t **job,
                            samda_error *err);

    /** GET /api/v1/studies/{study}/results. OUT results: JSON object describing the study's
     *  segmentation results (series, labels, DICOM-SEG instances). SAMDA_ENOENT (404). */
    samda_status (*results)(void *ctx, const char *study_uid, json_t **results,
                            samda_error *err);

    /* ---- administration: role admin; every route is audited -------------------------------
     * JSON bodies (const json_t *body) are objects the api parsed (duplicate members refused);
     * the core validates their members and answers SAMDA_EINVAL naming the member. token_id is
     * who asked (-1: auth disabled), for the core's own log. */

    /** GET /api/v1/sites. OUT sites: JSON array of site objects. */
    samda_status (*sites_list)(void *ctx, json_t **sites, samda_error *err);

    /** GET /api/v1/sites/{site}. OUT site: JSON object. SAMDA_ENOENT: unknown site (404). */
    samda_status (*site_get)(void *ctx, const char *site, json_t **out, samda_error *err);

    /** PUT /api/v1/sites/{site}: create or replace a site's AE mappings and settings (body: a
     *  JSON object). OUT site: the site after the change; OUT created: true when it is new (201,
     *  else 200). A site that the configuration file defines cannot be changed here: answer
     *  SAMDA_ECANCELED (409) saying so. */
    samda_status (*site_put)(void *ctx, const char *site, const json_t *body, int64_t token_id,
                             json_t **out, bool *created, samda_error *err);

    /** GET /api/v1/destinations. OUT destinations: JSON array. */
    samda_status (*destinations_list)(void *ctx, json_t **destinations, samda_error *err);

    /** GET /api/v1/destinations/{name}. OUT destination: JSON object. SAMDA_ENOENT (404). */
    samda_status (*destination_get)(void *ctx, const char *name, json_t **out, samda_error *err);

    /** POST /api/v1/destinations (body: a JSON object with its "name"). OUT destination: the new
     *  destination, with a string "name" (the api answers 201 with Location
     *  /api/v1/destinations/{name}). SAMDA_EEXIST: name taken (409). */
    samda_status (*destination_add)(void *ctx, const json_t *body, int64_t token_id, json_t **out,
                                    samda_error *err);

    /** DELETE /api/v1/destinations/{name} (204). SAMDA_ENOENT (404). */
    samda_status (*destination_delete)(void *ctx, const char *name, int64_t token_id,
                                       samda_error *err);

    /** POST /api/v1/destinations/{name}/echo: C-ECHO the destination. OUT result: JSON object
     *  {"ok": bool, "ms": round trip, "status": samda status name, "error": text when not ok}.
     *  The request succeeds (200) whatever the peer answered; SAMDA_ENOENT: unknown destination. */
    samda_status (*destination_echo)(void *ctx, const char *name, int64_t token_id, json_t **result,
                                     samda_error *err);

    /** GET /api/v1/exports: the export queue (DICOM-SEG results for destinations), newest first.
     *  OUT exports: JSON array of items. SAMDA_ENOENT: unknown destination or result (404). */
    samda_status (*exports_list)(void *ctx, const samda_api_export_filter *filter, json_t **exports,
                                 samda_error *err);

    /** POST /api/v1/exports/{id}/retry: a failed (or waiting) item is due again at once, its
     *  attempts reset. OUT item: the item after the change. SAMDA_ENOENT (404); SAMDA_ECONFLICT:
     *  the item is done or being sent (409). */
    samda_status (*export_retry)(void *ctx, int64_t id, int64_t token_id, json_t **item, samda_error *err);

    /** GET /api/v1/audit: the audit log's entries that match filter, newest first. OUT entries:
     *  JSON array of {id, time_ms, actor, action, resource, outcome, details}. */
    samda_status (*audit_list)(void *ctx, const samda_api_audit_filter *filter, json_t **entries, samda_error *err);

    /** GET /api/v1/sites/{site}/adapters. OUT adapters: JSON array of versions, newest first.
     *  SAMDA_ENOENT: unknown site. */
    samda_status (*adapters_list)(void *ctx, const char *site, json_t **adapters, samda_error *err);

    /** POST /api/v1/sites/{site}/adapters: a new adapter version from an uploaded .safetensors
     *  file. OUT adapter: the new version, with an integer "version" (201, Location
     *  /api/v1/sites/{site}/adapters/{version}). SAMDA_EINVAL: not a valid safetensors file (the
     *  message names the problem) or bad parent; SAMDA_ENOENT: unknown site; SAMDA_ETOOBIG. */
    samda_status (*adapter_upload)(void *ctx, const samda_api_upload *up, json_t **adapter,
                                   samda_error *err);

    /** POST /api/v1/sites/{site}/adapters/{version}/activate. OUT adapter: the version, now
     *  active. SAMDA_ENOENT (404). */
    samda_status (*adapter_activate)(void *ctx, const char *site, int version, int64_t token_id,
                                     json_t **adapter, samda_error *err);

    /** POST /api/v1/sites/{site}/adapters/rollback: activate the active version's parent (or
     *  the highest version below it). OUT adapter: the version now active. SAMDA_ENOENT: nothing
     *  active or nothing to roll back to (404). */
    samda_status (*adapter_rollback)(void *ctx, const char *site, int64_t token_id,
                                     json_t **adapter, samda_error *err);

    /** DELETE /api/v1/sites/{site}/adapters/{version} (204): an inactive version and its file.
     *  SAMDA_ENOENT (404); SAMDA_ECANCELED: the version is active (409). */
    samda_status (*adapter_delete)(void *ctx, const char *site, int version, int64_t token_id,
                                   samda_error *err);

    /** DELETE /api/v1/studies/{study} and .../series/{series} (series NULL for the whole study):
     *  the instances, the results whose DICOM-SEG is among them and their export items, files
     *  included; the study when left empty. OUT report: {"deleted": {series, instances, results,
     *  bytes}} (200). SAMDA_ENOENT (404); SAMDA_ECONFLICT: a job runs on it or a file is being sent
     *  (409, nothing deleted). */
    samda_status (*study_delete)(void *ctx, const char *study, const char *series, int64_t token_id,
                                 json_t **report, samda_error *err);

    /** POST /api/v1/retention/run: one retention pass now (the sites' retain_source and
     *  retain_results, [storage] quota). OUT report: what it deleted and the bytes stored (200). */
    samda_status (*retention_run)(void *ctx, int64_t token_id, json_t **report, samda_error *err);

    /** GET /api/v1/cluster: this node, the nodes sharing the index (roles, version, pid, heartbeat,
     *  alive, leader) and the shared queues' depths by state. OUT cluster (200). */
    samda_status (*cluster)(void *ctx, json_t **cluster, samda_error *err);

    /** GET /api/v1/rules: the routing rules in force ([routing] and each [rule], file order).
     *  OUT rules (200). */
    samda_status (*rules_list)(void *ctx, json_t **rules, samda_error *err);
    /** POST /api/v1/rules/test: body {"series_uid": UID} (a stored series): the attributes the
     *  rules read, each rule's tests with the values seen and their results, requirements, and the
     *  jobs the series would get, without queueing anything. OUT report (200). SAMDA_EINVAL
     *  (400); SAMDA_ENOENT: no such series (404). */
    samda_status (*rules_test)(void *ctx, const json_t *body, json_t **report, samda_error *err);

    /** POST /api/v1/sites/{site}/adapters/train: queue training of a new adapter version (body:
     *  optional JSON object). OUT job: the queued job with an integer "id" (202). Needs the
     *  model worker: while NULL the route answers 501. */
    samda_status (*adapter_train)(void *ctx, const char *site, const json_t *body, int64_t token_id,
                                  json_t **job, samda_error *err);

    /** POST /api/v1/sites/{site}/adapters/{version}/evaluate: queue evaluation of a version
     *  (body: optional JSON object). OUT job (202). Needs the model worker: NULL = 501. */
    samda_status (*adapter_evaluate)(void *ctx, const char *site, int version, const json_t *body,
                                     int64_t token_id, json_t **job, samda_error *err);

    /** GET /api/v1/results/{id}: one result (JSON). SAMDA_ENOENT (404). */
    samda_status (*result_get)(void *ctx, int64_t id, json_t **result, samda_error *err);
    /** GET /api/v1/results/{id}/seg: the DICOM-SEG file (application/dicom). OUT data/len: malloc'd
     *  bytes, caller frees. SAMDA_ENOENT (404). */
    samda_status (*result_seg)(void *ctx, int64_t id, void **data, size_t *len, samda_error *err);
    /** GET /api/v1/results/{id}/slices/{slice}/mask.png (label: optional segment label) and
     *  .../overlay.png: a PNG of slice (0-based, sorted along the normal) of the result's source
     *  series: the mask (grey levels = segment numbers, or 0/255 for one label), or the windowed
     *  slice with each segment's outline in its colour. OUT png/len malloc'd, caller frees.
     *  SAMDA_ENOENT unknown result or label (404); SAMDA_EINVAL slice out of range. */
    samda_status (*result_png)(void *ctx, int64_t id, unsigned slice, const char *label, bool overlay, void **png,
                               size_t *len, samda_error *err);
    /** POST /api/v1/results/{id}/corrections (body: {"slice", "label", "mask": {"rows", "columns",
     *  "counts"}}): the mask, drawn on one slice of the result's source series, stored as a
     *  DICOM-SEG of the study with the result's segment of that label. OUT correction: JSON with
     *  the new SEG's UIDs (201). SAMDA_ENOENT unknown result or label; SAMDA_EINVAL bad mask. */
    samda_status (*result_correction)(void *ctx, int64_t id, const json_t *body, int64_t token_id, json_t **correction,
                                      samda_error *err);

    /* ---- interactive sessions (role user; audited): need the model worker, NULL = 501 -------- */

    /** POST /api/v1/sessions (body: {"series": UID, "slice": 0-based index in sorted order} or
     *  {"instance": UID, "frame": 1-based}, optional "window": {"level", "width"}): encode that
     *  image in the model worker and keep its embedding. OUT session: JSON object with a string
     *  "id" (201, Location /api/v1/sessions/{id}). SAMDA_ENOENT unknown series/instance (404);
     *  SAMDA_EBUSY the worker did not take it in time (503). */
    samda_status (*session_create)(void *ctx, const json_t *body, int64_t token_id, json_t **session,
                                   samda_error *err);
    /** POST /api/v1/sessions/{session}/predict (body: "points" [[x, y, 1|0], ...], "box" [x0, y0,
     *  x1, y1], "use_previous", "multimask"): only the decoder runs. OUT result: JSON with "iou",
     *  "best" and the mask as row-major run lengths. SAMDA_ENOENT unknown or expired session. */
    samda_status (*session_predict)(void *ctx, const char *session, const json_t *body, int64_t token_id,
                                    json_t **result, samda_error *err);
    /** DELETE /api/v1/sessions/{session} (204). SAMDA_ENOENT (404). */
    samda_status (*session_delete)(void *ctx, const char *session, int64_t token_id, samda_error *err);
    /* ---- MONAI Label compatibility (/monailabel/; role user, training admin): 3D Slicer's and
     * OHIF's MONAI Label clients. "image" is a SeriesInstanceUID. ------------------------------- */

    /** GET /monailabel/info/: the app description (name, models, labels, strategies, datastore
     *  counts, train_stats). OUT info: JSON object. */
    samda_status (*ml_info)(void *ctx, json_t **info, samda_error *err);
    /** GET /monailabel/datastore/: the series samda holds as MONAI Label datastore objects. */
    samda_status (*ml_datastore)(void *ctx, json_t **ds, samda_error *err);
    /** GET /monailabel/datastore/image?image=: the series as a volume (I16 or F32). SAMDA_ENOENT. */
    samda_status (*ml_image)(void *ctx, const char *series_uid, samda_api_volume *vol, samda_error *err);
    /** POST /monailabel/infer/{model}: OUT label (U8 volume of the series, values = label
     *  numbers) and params (JSON object, "label_names": {name: number}); with want_seg OUT seg/
     *  seg_len instead (malloc'd DICOM-SEG bytes). SAMDA_ENOENT unknown model or series;
     *  SAMDA_EINVAL bad params (named); SAMDA_EBUSY / SAMDA_ETIMEDOUT the model did not answer in time. */
    samda_status (*ml_infer)(void *ctx, const samda_api_ml_infer *req, samda_api_volume *label, json_t **params,
                             void **seg, size_t *seg_len, samda_error *err);
    /** PUT /monailabel/session/: store the uploaded volume as a new DICOM series (a synthetic
     *  patient and study) in the site and open a session on it. OUT out: {"session_id": id,
     *  "session_info": {...}}. SAMDA_EINVAL bad geometry or values (named); SAMDA_ENOENT unknown
     *  site; SAMDA_ENOSPC. Needs the DICOM writer (always there). */
    samda_status (*ml_session_create)(void *ctx, const samda_api_ml_session *req, json_t **out, samda_error *err);
    /** GET /monailabel/session/{session_id}: OUT info (the session_info object); update_ts marks
     *  it used now. SAMDA_ENOENT unknown or expired (404). */
    samda_status (*ml_session_get)(void *ctx, const char *id, bool update_ts, json_t **info, samda_error *err);
    /** DELETE /monailabel/session/{session_id}: end it and delete its study (series, results).
     *  OUT info: what it was. SAMDA_ENOENT (404); SAMDA_ECONFLICT a job still runs on it (409). */
    samda_status (*ml_session_delete)(void *ctx, const char *id, int64_t token_id, json_t **info, samda_error *err);
    /** PUT /monailabel/datastore/label: store the label as a DICOM-SEG of the series' study (tag
     *  "final": reviewed, exported to the site's destinations, training data). OUT out: JSON. */
    samda_status (*ml_save_label)(void *ctx, const samda_api_ml_label *req, json_t **out, samda_error *err);
    /** POST /monailabel/activelearning/{strategy}: OUT sample: {"id": series UID, ...} of the next
     *  series without a ground-truth SEG, or {} when none. */
    samda_status (*ml_next_sample)(void *ctx, const char *strategy, const json_t *params, json_t **sample,
                                   samda_error *err);
    /** GET /monailabel/train/: OUT status: the newest training job as {"status": "RUNNING"|...};
     *  OUT running: a training job is queued or running. */
    samda_status (*ml_train_status)(void *ctx, bool *running, json_t **status, samda_error *err);
    /** POST /monailabel/train/{model} (admin): queue adapter training of the model's site.
     *  OUT job. SAMDA_ENOENT unknown model. Needs the model worker (NULL = 501). */
    samda_status (*ml_train_start)(void *ctx, const char *model, const json_t *params, int64_t token_id, json_t **job,
                                   samda_error *err);
} samda_api_services;

/* ---------------------------------------------------------------------------------------------
 * Server
 * ------------------------------------------------------------------------------------------- */

/** Log levels, numerically equal to the daemon's samda_log_level. */
typedef enum samda_api_log_level {
    SAMDA_API_LOG_ERROR = 0,
    SAMDA_API_LOG_WARN = 1,
    SAMDA_API_LOG_INFO = 2,
    SAMDA_API_LOG_DEBUG = 3
} samda_api_log_level;

/** Log sink. msg: one line, no patient data. fields: "key=value ..." with values quoted where
 *  needed, or "" (never NULL). Both borrowed for the call. Called from any server thread. */
typedef void (*samda_api_log_fn)(void *log_ctx, samda_api_log_level level, const char *msg,
                                 const char *fields);

typedef struct samda_api_params {
    const char *bind_address;      /* IPv4 or IPv6 literal; default "127.0.0.1" ("::" = all v6+v4) */
    unsigned port;                 /* default 8080; 0 = ephemeral (see samda_api_port) */
    unsigned threads;              /* network threads (epoll, thread pool); default 4, 1..256 */
    unsigned handler_threads;      /* threads that run handlers and service calls; default 8,
                                    * 1..256 */
    unsigned max_connections;      /* default 256 */
    unsigned connection_timeout_s; /* idle connection timeout, seconds; default 60; 0 = none */
    unsigned header_timeout_s;     /* a request head (request line and headers) must be complete
                                    * within this many seconds of connecting or of the previous
                                    * answer, or the connection is closed (slow clients that trickle
                                    * bytes do not hold slots); default 30; 0 = none */
    unsigned body_timeout_s;       /* a request body must be complete within this many seconds of
                                    * its head, plus one second per body_min_rate bytes received
                                    * (so a large upload at a fair rate is never cut, a trickle is);
                                    * default 60; 0 = none */
    unsigned body_min_rate;        /* bytes per second, see body_timeout_s; default 1024, >= 1 */
    size_t max_header_bytes;       /* per-connection memory for the request line, headers and I/O
                                    * buffers (MHD_OPTION_CONNECTION_MEMORY_LIMIT); headers larger
                                    * than about half of it are refused; default 64 KiB, >= 8 KiB */
    uint64_t max_body_bytes;       /* largest STOW-RS body; default 2 GiB (http.max_body). JSON
                                    * bodies are limited to 1 MiB regardless */
    uint64_t max_file_bytes;       /* largest raw file upload (an adapter); default 1 GiB. The
                                    * smaller of it and the current max_body applies */
    const char *tmp_dir;           /* where STOW parts are spooled; default NULL = $TMPDIR or /tmp.
                                    * Put it on the storage file system so the core can rename(2) */
    const char *tls_cert_path;     /* PEM certificate chain; with tls_key_path enables HTTPS:
                                    * TLS 1.2 and 1.3 only, ECDHE and AEAD suites only (BCP 195) */
    const char *tls_key_path;      /* PEM private key (unencrypted) */
    bool auth_required;            /* default true; false = every route open (daemon warns) */
    const char *node_name;         /* NULL or "": none; else sent as X-Samda-Node on every answer, so that
                                    * a load balancer can pin a client (an interactive session) to the
                                    * cluster node that answered it */
    bool ops_only;                 /* default false; true = only /health and /metrics are answered (a
                                    * cluster node without the api role), every other path 404 */
    const char *cors_origin;       /* Access-Control-Allow-Origin value; NULL = no CORS */
    const char *public_url;        /* base of absolute URLs (STOW RetrieveURL, WADO BulkDataURI),
                                    * e.g. "https://samda.example:8443" (must start with http://
                                    * or https://); NULL or "" = "http(s)://" + the local address
                                    * and port each connection arrived on (the client's Host
                                    * header is never used) */
    const char *private_dir;       /* a directory whose paths never reach a client: in a core's
                                    * error message, each path under it (and under tmp_dir) is
                                    * answered as "[file]"; NULL = tmp_dir only */
    unsigned shutdown_timeout_ms;  /* samda_api_stop waits this long for in-flight requests;
                                    * default 10000 */
    samda_api_log_fn log;          /* NULL = silent */
    void *log_ctx;
} samda_api_params;

typedef struct samda_api samda_api; /* opaque: one running server */

/** Fill p with the defaults listed in samda_api_params. The only correct way to start. */
void samda_api_params_init(samda_api_params *p);

/** Start the server: bind, listen and serve on params->threads threads.
 *  @param p   IN: parameters (strings are copied; the TLS files are read now).
 *  @param svc IN: services table (copied; svc->ctx must outlive the server).
 *  @param err OUT (may be NULL): reason on failure.
 *  @return the server, or NULL with err->code: SAMDA_EINVAL bad parameter (address not a
 *          literal, threads or handler_threads 0, public_url not http(s), ...); SAMDA_ENOMEM; SAMDA_ECONFIG auth_required without auth_check, TLS asked
 *          but not supported by this libmicrohttpd, only one of cert/key; SAMDA_EIO TLS file
 *          unreadable; SAMDA_ENETWORK bind/listen failed (port in use, address not local).
 *  Ownership: caller owns the result; release with samda_api_stop(). */
samda_api *samda_api_start(const samda_api_params *p, const samda_api_services *svc,
                           samda_error *err);

/** The port actually bound (useful with port 0). 0 for NULL. */
unsigned samda_api_port(const samda_api *api);

/** Change the STOW-RS body limit of a running server (http.max_body is a live option). It applies
 *  to new requests and to the next chunk of uploads in flight. NULL-safe. Thread-safety: any
 *  thread. */
void samda_api_set_max_body(samda_api *api, uint64_t bytes);

/** Requests received whole and waiting for a free handler thread (not those being handled).
 *  0 for NULL. Thread-safety: any thread. */
unsigned samda_api_queued(samda_api *api);

/** Stop accepting connections, let in-flight requests finish for up to
 *  params.shutdown_timeout_ms, then answer requests still queued with 503, wait for service
 *  calls in progress to return (however long they take), close every connection and free the
 *  server. NULL-safe. No service function is called after it returns. */
void samda_api_stop(samda_api *api);

/** Does this libmicrohttpd build support HTTPS? */
bool samda_api_tls_supported(void);

#ifdef __cplusplus
}
#endif
#endif
