/* daemon/ internal: the model worker's parts (worker.c and the files it is made of), never included
 * elsewhere. The worker is split by concern:
 *   worker.c          the two lanes (threads), the claim loop, leases and failures, start and stop
 *   worker_sessions.c interactive sessions: the call queue the segmentation lane serves
 *   worker_adapters.c the adapter cache and choice, test-time adaptation, new adapter versions
 *   segment.c         a segmentation job: one series to a DICOM-SEG, in seven steps
 *   training.c        training and evaluation jobs from DICOM-SEGs in the index
 * Thread-safety: as worker.h; what each part may touch from which lane is said beside it. */
#ifndef SAMDA_DAEMON_WORKER_INTERNAL_H
#define SAMDA_DAEMON_WORKER_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <time.h>

#include <jansson.h>

#include "dicom.h"
#include "histogram.h"
#include "loop.h"
#include "model.h"
#include "services_internal.h"
#include "storage.h"
#include "worker.h"

#define TTA_MAX_SLICES 16 /* slices sampled for test-time adaptation (each encoded twice: as is, mirrored) */
#define ADAPTER_CACHE 8

typedef struct cached_adapter {
    char site[SAMDA_NAME_SIZE]; /* "" = the [model] default */
    int version;                /* 0 = the [model] default */
    char sha256[SAMDA_SHA256_HEX_SIZE];
    samda_adapter *a;
    uint64_t used;
} cached_adapter;

#define MAX_SESSIONS 64
#define SESSION_TTL_S 1800.0

typedef struct session {
    char id[SAMDAD_SESSION_ID_SIZE]; /* "" = free slot */
    char site[SAMDA_NAME_SIZE];
    samda_embedding *emb;
    float *prev;                     /* last low-res logits (L x L), NULL before the first predict */
    int rows, cols;
    double used;
} session;

typedef enum { CALL_CREATE, CALL_PREDICT, CALL_DELETE } call_op;
typedef enum { CALL_QUEUED, CALL_RUNNING, CALL_DONE } call_state;

typedef struct call {
    call_op op;
    call_state state;
    /* create */
    const char *site;
    const float *pixels;
    int rows, cols;
    char *id;                        /* create: OUT; predict/delete: IN */
    /* predict */
    const samdad_prompt *prompt;
    samdad_prediction *pred;
    samda_status st;
    samda_error err;
    struct call *next;
} call;

/* One lane: a thread, the job kinds it claims under its own lease owner, and the failure it could
 * not record yet. */
typedef struct lane {
    struct samdad_worker *w;
    const char *name;           /* "interactive", "segmentation" or "training" */
    const char *const *kinds;   /* job kinds it claims, NULL-terminated (none for the interactive lane) */
    bool serves_calls;          /* the interactive lane answers session calls */
    int nice;                   /* the lane's thread (and the threads it starts) yield the CPU to
                                   lower values: interactive 0, segmentation 5, training 10 */
    char owner[128]; /* lease owner: "<node>:<pid>:<lane>" */
    samdad_loop loop;           /* the interactive lane's mu also guards the worker's call queue */
    cached_adapter cache[ADAPTER_CACHE]; /* this lane's own: no adapter in use is freed by another */
    uint64_t tick;
    /* A job failure the index could not take (a full disk): recorded again before any new job is
     * taken, so the job ends with its own cause, not "lease expired". This lane's thread only. */
    struct {
        bool active;
        int64_t job_id;
        bool permanent;
        char error[SAMDA_ERROR_MESSAGE_SIZE];
    } unrecorded;
    samda_log_gate unrecorded_gate;
} lane;

struct samdad_worker {
    samdad_ctx *ctx;
    samdad_hist h_encode;            /* one encoder call (a batch of slices) */
    samdad_hist h_decode;            /* prompt-free decoding of one slice (all labels of a window) */
    samdad_hist h_predict;           /* one interactive prediction */
    samdad_hist h_job;               /* a whole segmentation of a series */
    _Atomic uint64_t slices_done;
    _Atomic uint64_t tta_versions;   /* adapter versions continual TTA made active */
    call *calls;                     /* queued interactive calls (under ia.loop.mu) */
    pthread_cond_t done_cv;          /* a call finished */
    session sessions[MAX_SESSIONS];  /* touched by the interactive lane only */
    samda_model *model;
    samda_model_info info;
    lane ia;                         /* interactive: session calls */
    lane seg;                        /* segmentation jobs */
    lane trn;                        /* training and evaluation jobs */
};

typedef struct adapter_choice {
    samda_adapter *a;       /* borrowed from the choosing lane's cache: valid until that lane chooses again */
    char site[SAMDA_NAME_SIZE];
    int version;            /* 0: the [model] default */
    char file_version[17];  /* the file's own version (payload hash prefix) */
    char source[16];        /* "site" or "default" */
} adapter_choice;

static inline double worker_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static inline char *q(char *buf, unsigned size, const char *v) { return samda_log_quote(buf, size, v); }

static inline bool worker_stopping(const lane *ln)
{
    return samdad_loop_stopping((samdad_loop *)&ln->loop) || atomic_load(&ln->w->ctx->stopping);
}

/* Object paths and UIDs: in log lines (not in the job's error, which the index keeps) they become
 * "[object]" and "[uid]" unless [daemon] log_uids is on. */
static inline const char *worker_redact(samdad_worker *w, const char *msg, char *buf, size_t size)
{
    return samdad_scrub(w->ctx, msg, buf, (unsigned)size);
}

/* ---- worker.c ---------------------------------------------------------------------------------- */

/** Between two steps of a job: renew the lease, record progress; false (with *why) when the job was
 *  cancelled, its lease lost or the worker stops. */
bool worker_keep_going(lane *ln, const samda_job *job, double progress, const char *msg, samda_status *why);

/* ---- worker_sessions.c (interactive lane only) ------------------------------------------------- */

/** Run every queued interactive call. */
void worker_serve_calls(samdad_worker *w);
/** Drop one session (its embedding and mask). */
void worker_session_drop(session *x);

/* ---- worker_adapters.c ------------------------------------------------------------------------- */

/** The adapter a job or call of site uses (a version, or the active one with version 0, or [model]
 *  adapter), from the lane's cache or loaded into it. Call from ln's thread only. */
samda_status worker_choose_adapter(lane *ln, const samda_config *cfg, const char *site, int version, adapter_choice *out,
                                   samda_error *err);
/** Put an adapter into ln's cache (from ln's thread, or before the lanes start); takes a. */
void worker_cache_put(lane *ln, const char *site, int version, const char *sha, samda_adapter *a);
/** Free ln's cache (after its thread stopped). */
void worker_cache_free(lane *ln);
/** Test-time adaptation of a copy of a on a sample of vol's slices; NULL (with err) on failure. The
 *  caller frees the copy. Its report goes into report["tta"]. */
samda_adapter *worker_run_tta(samdad_worker *w, const samda_adapter *a, const samda_volume *vol, json_t *report,
                              samda_error *err);
/** Record a as site's next version (parent given), optionally active; audited. */
samda_status worker_store_new_version(samdad_worker *w, samda_adapter *a, const char *site, int parent, json_t *meta,
                                      bool activate, int *version_out, samda_error *err);
/** Continual TTA: keep the adapted copy as the site's next version, active (warn, audit, metric). */
samda_status worker_save_continual(samdad_worker *w, samda_adapter *copy, const adapter_choice *ch,
                                   const samda_job *job, json_t *report, samda_error *err);
/** At start: say once, per site, when its active adapter was made for another base model. */
void worker_warn_foreign_adapters(samdad_worker *w, const samda_config *cfg);

/* ---- segment.c (segmentation lane) ------------------------------------------------------------- */

/** A "segment" job: its series (or the study's segmentable series) to DICOM-SEGs. */
samda_status worker_run_segment(lane *ln, const samda_job *job, const json_t *params, samda_error *err);

/* ---- training.c (training lane) ---------------------------------------------------------------- */

/** A "train" (train true) or "evaluate" job. */
samda_status worker_run_train_eval(lane *ln, const samda_job *job, const json_t *params, bool train,
                                   samda_error *err);

#endif
