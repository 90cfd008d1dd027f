/* daemon/ internal: the state shared by the files that implement the HTTP API's services table
 * (api/api.h) for samdad, one file per family of routes as api/ groups them:
 *   api_ops.c       authentication, the audit hook, /health, /metrics
 *   api_dicomweb.c  STOW-RS (through the one ingest entry), QIDO-RS, WADO-RS
 *   api_jobs.c      the change feed, jobs, segmentation requests, results (SEG, PNG views)
 *   api_corrections.c  a hand-corrected slice of a result stored as a DICOM-SEG
 *   api_admin.c     sites, destinations, the export queue, adapters (upload, activation, training)
 *   api_sessions.c  interactive sessions (in the model worker)
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
#include "storage.h"

/* Series touched by a STOW request still in flight (request id -> series UIDs). */
typedef struct stow_req {
    uint64_t id;
    char (*series)[SAMDA_UID_SIZE];
    size_t n, cap;
    struct stow_req *next;
} stow_req;

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

/** GET /api/v1/jobs/{id} (api_jobs.c), also what a training request answers with (api_admin.c). */
samda_status samdad_api_job_get(void *core, int64_t id, json_t **out, samda_error *err);
/** Free the STOW requests still in flight (core teardown). */
void samdad_api_stow_free(samdad_api_core *core);

/* ---- helpers shared by the families ------------------------------------------------------------ */

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
