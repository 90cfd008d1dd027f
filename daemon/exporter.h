/* The export worker (daemon/exporter.c): sends queued DICOM-SEG objects to their destinations
 * with C-STORE, one association per destination and batch, destinations in parallel (a stalled
 * destination does not hold up the others), and records each outcome in the durable export queue
 * (done; transient failure: retried with exponential backoff; refused by the peer: failed for good,
 * retry by hand). */
#ifndef SAMDA_DAEMON_EXPORTER_H
#define SAMDA_DAEMON_EXPORTER_H

#include "context.h"

typedef struct samdad_exporter samdad_exporter;

/** Start the export thread. @return it, or NULL with err (SAMDA_ENOMEM, SAMDA_EINTERNAL).
 *  Ownership: stop with samdad_exporter_stop(). */
samdad_exporter *samdad_exporter_start(samdad_ctx *ctx, samda_error *err);
/** Look at the queue now (something was queued). NULL-safe; thread-safe. */
void samdad_exporter_kick(samdad_exporter *e);
/** Stop after the sends in progress, at most one per destination (items being sent stay SENDING
 *  and are claimed again after the export lease). Frees e. NULL-safe. */
void samdad_exporter_stop(samdad_exporter *e);

#endif
