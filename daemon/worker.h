/* The segmentation worker (daemon/worker.c): owns the SAM model, takes "segment" jobs from the
 * durable queue under a lease, turns a completed series into a DICOM-SEG (volume, windows per
 * label, batched encoding, prompt-free adapter decoding, test-time adaptation per site, 3-D
 * clean-up), records the result and queues it for the site's destinations. */
#ifndef SAMDA_DAEMON_WORKER_H
#define SAMDA_DAEMON_WORKER_H

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

/** One line describing the model ("vit_b cpu 4 threads fingerprint 1a2b..."), for /health. */
void samdad_worker_describe(samdad_worker *w, char *buf, size_t size);

#endif
