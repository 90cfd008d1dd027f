/* daemon/ internal: the state shared by the files that implement the HTTP API's services table
 * (api/api.h) for samdad, one file per family of routes as api/ groups them:
 *   api_ops.c       authentication, the audit hook, /health, /metrics
 *   api_dicomweb.c  STOW-RS (through the one ingest entry), QIDO-RS, WADO-RS
 *   api_jobs.c      the change feed, jobs, segmentation requests, results (SEG, PNG views)
 *   api_corrections.c  a hand-corrected slice of a result stored as a DICOM-SEG
 *   api_admin.c     sites, destinations, the export queue, adapters (upload, activation, training)
 *   api_sessions.c  interactive sessions (in the model worker)
 *   api_retention.c deleting studies and series, the retention pass on demand
 *   api_rules.c     the routing rules in force, and the rule tester
 *   api_monailabel.c (+ _infer.c, _label.c, _session.c)  the MONAI Label compatible API (/monailabel/)
 *   site_overlay.c  sites created through the API laid over the configuration file's
 * api_services.c creates the core and asks each family to fill its members of the table.
 * Never included outside these files. Thread-safety: as api_services.h. */
#ifndef SAMDA_DAEMON_API_CORE_H
#define SAMDA_DAEMON_API_CORE_H

#include <pthread.h>
#include <stdbool.h>

#include <jansson.h>

#include "api.h"
#include "api_services.h"
#include "context.h"
#include "dicom.h"
#include "storage.h"

/* Series touched by a STOW request still in flight (request id -> series UIDs). */
typedef struct stow_req {
    uint64_t id;
    char (*series)[SAMDA_UID_SIZE];
    size_t n, cap;
    struct stow_req *next;
} stow_req;

typedef struct samdad_ml_session samdad_ml_session; /* api_monailabel_session.c */

struct samdad_api_core {
    samdad_ctx *ctx;
    pthread_mutex_t mu;
    stow_req *reqs;              /* under mu (api_dicomweb.c) */
    /* site overlay (site_overlay.c) */
    pthread_mutex_t overlay_mu;  /* serialises overlays and site changes; guards the two below */
    samda_config *base;          /* the file's configuration the overlay was built on (ref) */
    samda_config *installed;     /* the snapshot the core last installed or saw (ref) */
    samda_config *defaults;      /* the configuration table's defaults, for new sites (ref) */
    pthread_mutex_t watch_mu;
    pthread_cond_t watch_cv;
    bool watch_stop, watching;
    pthread_t watcher;
    /* MONAI Label sessions (api_monailabel_session.c) */
    pthread_mutex_t ml_mu;       /* guards the two below */
    samdad_ml_session *ml_sessions;
    bool ml_swept_orphans;       /* the studies of a previous run's sessions were deleted */
};

#define CORE(v) ((samdad_api_core *)(v))

/* ---- the families: each sets its members of svc ----------------------------------------------- */

void samdad_api_bind_ops(samda_api_services *svc);
void samdad_api_bind_dicomweb(samda_api_services *svc);
void samdad_api_bind_jobs(samda_api_services *svc);
/** POST /api/v1/results/{id}/corrections (api_corrections.c). */
void samdad_api_bind_corrections(samda_api_services *svc);
/** with_model: training and evaluation routes (they need the model worker; else 501). */
void samdad_api_bind_admin(samda_api_services *svc, bool with_model);
void samdad_api_bind_sessions(samda_api_services *svc, bool with_model);
void samdad_api_bind_retention(samda_api_services *svc);
void samdad_api_bind_rules(samda_api_services *svc);

/** GET /api/v1/jobs/{id} (api_jobs.c), also what a training request answers with (api_admin.c). */
samda_status samdad_api_job_get(void *core, int64_t id, json_t **out, samda_error *err);
/** Free the STOW requests still in flight (core teardown). */
void samdad_api_stow_free(samdad_api_core *core);

/* ---- helpers shared by the families ------------------------------------------------------------ */

/** An adapter version as JSON, its "labels" the names it segments (api_admin.c). Caller owns it. */
json_t *samdad_adapter_json(const samda_adapter_row *a);
/** Append the label names of an adapter's "labels" metadata (JSON text, array, or comma list) to
 *  names, and their codes (objects) to codes (api_admin.c). */
void samdad_labels_collect(const json_t *labels, json_t *names, json_t *codes);
/** POST /api/v1/sites/{site}/adapters/train (api_admin.c), also behind MONAI Label's /train/. */
samda_status samdad_api_adapter_train(void *core, const char *site, const json_t *body, int64_t token_id, json_t **out,
                                      samda_error *err);
/** MONAI Label compatibility (api_monailabel.c); with_model: inference and training routes. */
void samdad_api_bind_monailabel(samda_api_services *svc, bool with_model);
/** MONAI Label model names: a site's adapter is PREFIX + site; the click model (api_monailabel*.c). */
#define SAMDAD_ML_AUTO_PREFIX "segmentation_"
#define SAMDAD_ML_CLICK_MODEL "sam_2d"
/** POST /monailabel/infer/{model} (api_monailabel_infer.c), as the ml_infer service. */
samda_status samdad_ml_infer(void *core, const samda_api_ml_infer *req, samda_api_volume *label, json_t **params,
                             void **seg, size_t *seg_len, samda_error *err);
/** PUT /monailabel/datastore/label (api_monailabel_label.c): the label as a DICOM-SEG in the study. */
samda_status samdad_ml_save_label(void *core, const samda_api_ml_label *req, json_t **out, samda_error *err);
/** The series' index row and its volume (api_monailabel.c). SAMDA_ENOENT names the series.
 *  OUT vol: caller frees with samda_volume_free. */
samda_status samdad_ml_load_series(samda_store *store, const char *series, samda_series_info *si,
                                   samda_volume **vol, samda_error *err);
/** The LPS geometry of vol as MONAI Label's clients see it (api_monailabel.c): i = column, j = row,
 *  k = sorted slice; sizes, directions, origin of out are set, type and data are not. */
void samdad_ml_geometry(const samda_volume *vol, samda_api_volume *out);
/** PUT/GET/DELETE /monailabel/session/ (api_monailabel_session.c). */
void samdad_api_bind_ml_sessions(samda_api_services *svc);
/** infer naming a session (api_monailabel_session.c): samdad_ml_infer on the session's series, the
 *  label answered in the uploaded volume's geometry and slice order. SAMDA_ENOENT unknown/expired. */
samda_status samdad_ml_session_infer(samdad_api_core *core, const samda_api_ml_infer *req, samda_api_volume *label,
                                     json_t **params, void **seg, size_t *seg_len, samda_error *err);
/** Is series_uid a live session's series? Thread-safe. */
bool samdad_ml_is_session(samdad_api_core *core, const char *series_uid);
/** Free the session map (core teardown; the studies stay, deleted by the next run's first sweep). */
void samdad_ml_sessions_free(samdad_api_core *core);
/** The label names of a site: its active adapter's, else [model] adapter's (api_monailabel.c).
 *  Caller owns the array. */
json_t *samdad_ml_site_labels(samdad_api_core *core, const char *site);

#ifdef SAMDA_HAVE_MODEL
#include "dicom.h"
#include "worker.h"
/** A session (api_sessions.c) on slice of vol, windowed (width > 0: level/width; else CT 40/400,
 *  MR the 1st..99th percentiles), with site's adapter. OUT id. Waits for the worker at most 10 s. */
samda_status samdad_session_on_slice(samdad_api_core *core, const samda_volume *vol, size_t slice, const char *site,
                                     double level, double width, char id[SAMDAD_SESSION_ID_SIZE], samda_error *err);
/** Decode a prompt in a session (samdad_worker_session_predict with the sessions' wait). */
samda_status samdad_session_predict(samdad_api_core *core, const char *id, const samdad_prompt *p, samdad_prediction *out,
                                    samda_error *err);
/** Drop a session. */
samda_status samdad_session_drop(samdad_api_core *core, const char *id, samda_error *err);
#endif

/** SAMDA_OK when site is in the index, else SAMDA_ENOENT "unknown site NAME" (api_admin.c). */
samda_status samdad_require_site(samda_store *store, const char *site, samda_error *err);

/* ---- site overlay (site_overlay.c) ------------------------------------------------------------- */

#define SITE_ORIGIN_API "api"

/** A site not yet in the index (a PUT being checked), laid over the stored ones. */
typedef struct site_candidate {
    const char *name, *ae_json, *settings_json;
} site_candidate;

/** Is settings_json marked as written through the API ("origin": "api")? */
bool samdad_site_origin_is_api(const char *settings_json);
/** As samdad_overlay_apply, the caller holding core->overlay_mu (a change checked and written
 *  under one lock). */
samda_status samdad_overlay_apply_locked(samdad_api_core *core, const site_candidate *cand, bool dry_run,
                                         samda_error *err);
/** Install the configuration file's snapshot with every API site (and cand) laid over it; with
 *  dry_run only check that it would load. Serialised with every other overlay. */
samda_status samdad_overlay_apply(samdad_api_core *core, const site_candidate *cand, bool dry_run, samda_error *err);
/** The file's configuration (without API sites), referenced: release with samda_config_unref(). */
samda_config *samdad_overlay_base(samdad_api_core *core);
/** Apply the API sites stored by earlier runs, then start the thread that lays them over the
 *  configuration again after each reload. */
samda_status samdad_overlay_start(samdad_api_core *core, samda_error *err);
/** Stop that thread (NULL-safe on a core whose overlay never started). */
void samdad_overlay_stop(samdad_api_core *core);

#endif
