/* The daemon's implementation of the HTTP API's services table (api/api.h), over the store, the
 * DICOM module and the scheduler. Thread-safety: every function may run on several HTTP handler
 * threads at once; shared state (the STOW request map) is under a mutex. */
#ifndef SAMDA_DAEMON_API_SERVICES_H
#define SAMDA_DAEMON_API_SERVICES_H

#include "api.h"
#include "context.h"

typedef struct samdad_api_core samdad_api_core;

/** Create the core behind the API and fill *svc with its functions (svc->ctx set). */
samdad_api_core *samdad_api_core_new(samdad_ctx *ctx, samda_api_services *svc, samda_error *err);
/** Free it (after samda_api_stop). NULL-safe. */
void samdad_api_core_free(samdad_api_core *core);

#endif
