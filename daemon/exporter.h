/* The export worker (daemon/exporter.c): sends queued DICOM-SEG objects to their destinations
 * with C-STORE, one association per destination and batch, destinations in parallel (a stalled
 * destination does not hold up the others), and records each outcome in the durable export queue
 * (done; transient failure: retried with exponential backoff; refused by the peer: failed for good,
 * retry by hand). */
#ifndef SAMDA_DAEMON_EXPORTER_H
#define SAMDA_DAEMON_EXPORTER_H

#include "config.h"
#include "context.h"
#include "dicom.h"

typedef struct samdad_exporter samdad_exporter;

/** The DICOM TLS settings of a [destination] section, for its exports and its C-ECHO.
 *  @param out OUT: filled when d->tls.  @return out, or NULL when d sends over plain TCP (d NULL
 *  included: destinations added through the API have no TLS).
 *  Ownership: *out borrows d's strings (valid while the configuration is referenced). */
const samda_dicom_tls *samdad_dest_tls(const samda_dest_cfg *d, samda_dicom_tls *out);

/** Start the export thread. @return it, or NULL with err (SAMDA_ENOMEM, SAMDA_EINTERNAL).
 *  Ownership: stop with samdad_exporter_stop(). */
samdad_exporter *samdad_exporter_start(samdad_ctx *ctx, samda_error *err);
/** Look at the queue now (something was queued). NULL-safe; thread-safe. */
void samdad_exporter_kick(samdad_exporter *e);
/** Stop after the sends in progress, at most one per destination (items being sent stay SENDING
 *  and are claimed again after the export lease). Frees e. NULL-safe. */
void samdad_exporter_stop(samdad_exporter *e);

#endif
