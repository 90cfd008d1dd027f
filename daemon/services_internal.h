/* Accessors to the subsystem handles that services.c owns, for the daemon's other files. */
#ifndef SAMDA_DAEMON_SERVICES_INTERNAL_H
#define SAMDA_DAEMON_SERVICES_INTERNAL_H

#include "context.h"
#include "dicom.h"
#include "storage.h"

/** The open store (borrowed; valid while the services run). */
samda_store *samdad_store(samdad_ctx *ctx);

/** Why the configured model could not be loaded: a message owned by the services, valid until
 *  they stop; NULL when it loaded or none is configured. Thread-safety: set once at start-up. */
const char *samdad_model_error(samdad_ctx *ctx);
/** Is a model loaded (segmentation jobs can run)? */
bool samdad_model_loaded(samdad_ctx *ctx);
/** The segmentation worker (NULL without a model); an opaque samdad_worker *. */
struct samdad_worker *samdad_worker_of(samdad_ctx *ctx);
/** Port the DICOM listener listens on; 0 when it is not running. */
unsigned samdad_dicom_port(samdad_ctx *ctx);
/** This node's name ([cluster] node, else the host name); "" before start. Borrowed. Thread-safe. */
const char *samdad_node(samdad_ctx *ctx);
/** The SAMDA_NODE_* bits this node started with. Thread-safe. */
unsigned samdad_roles(samdad_ctx *ctx);
/** Whether this node leads now (its scheduler held the leader lock at its last tick). Thread-safe. */
bool samdad_leads(samdad_ctx *ctx);
/** Copy the DICOM listener's counters; false when it is not running. */
bool samdad_dicom_counters(samdad_ctx *ctx, samda_scp_counters *out);

/** msg fit for a log line under [daemon] log_uids (samda_log_scrub with the store's data
 *  directory): buf is used when something is replaced. Thread-safe. */
const char *samdad_scrub(samdad_ctx *ctx, const char *msg, char *buf, unsigned size);

#endif
