/* The model worker (daemon/worker.c and the files of worker_internal.h): owns the SAM model and three
 * lanes over it, each a thread. The interactive lane answers session calls; the segmentation lane
 * takes "segment" jobs from the durable queue under a lease, turns a completed series into a
 * DICOM-SEG (volume, windows per label, batched encoding, prompt-free adapter decoding, test-time
 * adaptation per site, 3-D clean-up), records the result and queues it for the site's destinations;
 * the training lane takes "train" and "evaluate" jobs. */
#ifndef SAMDA_DAEMON_WORKER_H
#define SAMDA_DAEMON_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "context.h"

typedef struct samdad_worker samdad_worker;

/** Open [model] checkpoint (and the default adapter, if configured, to check it now), return jobs
 *  left running by a previous process to the queue, and start the worker thread.
 *  @return the worker, or NULL with err (the model cannot be opened: message names the file).
 *  Ownership: stop with samdad_worker_stop(). */
samdad_worker *samdad_worker_start(samdad_ctx *ctx, samda_error *err);

/** Wake the worker (a job was queued). NULL-safe; thread-safe. */
void samdad_worker_kick(samdad_worker *w);

/** Stop: the job in progress is abandoned at its next batch and stays RUNNING; the next start (or
 *  its lease) returns it to the queue. Frees w. NULL-safe. */
void samdad_worker_stop(samdad_worker *w);

/* ---- interactive sessions: embeddings kept in the worker, prompts decoded there ------------------
 * The calls below run on the interactive lane's thread, which does nothing else: no segmentation
 * batch or training step holds them. The caller (an HTTP handler thread) waits for the answer; if
 * the lane does not take the call within wait_ms the call is withdrawn and SAMDA_EBUSY returned.
 * Thread-safe. */

#define SAMDAD_SESSION_ID_SIZE 33 /* 32 hex digits + NUL */

/** Encode a windowed image (0..255 floats, rows x cols) and keep its embedding as a new session of
 *  site (its active adapter, if any, joins the decoder). At most 64 sessions; the least recently used
 *  one is dropped for a new one; a session unused for 30 minutes expires.
 *  @param id OUT. @return SAMDA_OK; SAMDA_EINVAL; SAMDA_EBUSY; SAMDA_ENOMEM; SAMDA_EMODEL. */
samda_status samdad_worker_session_create(samdad_worker *w, const char *site, const float *pixels, int rows, int cols,
                                          unsigned wait_ms, char id[SAMDAD_SESSION_ID_SIZE], samda_error *err);

typedef struct samdad_prompt {
    float points[64][2]; /* x (column), y (row) in image pixels */
    int labels[64];      /* 1 foreground, 0 background */
    size_t n_points;     /* 0..64 */
    bool has_box;
    float box[4];        /* x0, y0, x1, y1 */
    bool use_previous;   /* the session's last low-res logits as mask input */
    bool multimask;      /* three candidate masks; the best by predicted IoU is returned */
} samdad_prompt;

typedef struct samdad_prediction {
    int rows, cols;
    uint8_t *mask;       /* rows x cols 0/1, caller frees */
    float iou[3];
    int n_masks, best;
    double decode_ms;
} samdad_prediction;

/** Decode a prompt against a session's embedding; the result's low-res logits become the session's
 *  "previous" mask. @return SAMDA_OK; SAMDA_ENOENT (unknown or expired session); SAMDA_EINVAL (no
 *  prompt; a point or box outside the image); SAMDA_EBUSY; SAMDA_EMODEL. */
samda_status samdad_worker_session_predict(samdad_worker *w, const char *id, const samdad_prompt *p, unsigned wait_ms,
                                           samdad_prediction *out, samda_error *err);

/** Drop a session. @return SAMDA_OK; SAMDA_ENOENT; SAMDA_EBUSY. */
samda_status samdad_worker_session_delete(samdad_worker *w, const char *id, unsigned wait_ms, samda_error *err);

/** Prometheus text: encode/decode/predict/series histograms, slices, model memory. NULL-safe. */
void samdad_worker_metrics(samdad_worker *w, FILE *out);

/** One line describing the model ("vit_b cpu convention=sam threads=4 fingerprint=1a2b..."), for /health. */
void samdad_worker_describe(samdad_worker *w, char *buf, size_t size);

/** The loaded model's fingerprint (64 hex digits), which an adapter's base_fingerprint must equal;
 *  NULL for NULL. Borrowed: valid until samdad_worker_stop(w). Thread-safety: any thread. */
const char *samdad_worker_fingerprint(const samdad_worker *w);

#endif
