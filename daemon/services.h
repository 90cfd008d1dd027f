/* samdad's subsystems, started and stopped in dependency order: storage, model, DICOM listener,
 * HTTP API, scheduler. Each start function logs its own failure once and returns its status. */
#ifndef SAMDA_DAEMON_SERVICES_H
#define SAMDA_DAEMON_SERVICES_H

#include "context.h"

/** Start every subsystem. On failure the ones already started are stopped again. */
samda_status samdad_services_start(samdad_ctx *ctx, samda_error *err);
/** Apply a reloaded configuration to running subsystems (live options only). */
void samdad_services_reload(samdad_ctx *ctx);
/** Stop everything, draining work for at most daemon.shutdown_timeout. NULL-safe on a context
 *  whose services never started. */
void samdad_services_stop(samdad_ctx *ctx);
/** One line for sd_notify STATUS= ("listening dicom=127.0.0.1:11112 http=127.0.0.1:8080"). */
void samdad_services_status(samdad_ctx *ctx, char *buf, unsigned size);

#endif
