/* Accessors to the subsystem handles that services.c owns, for the daemon's other files. */
#ifndef SAMDA_DAEMON_SERVICES_INTERNAL_H
#define SAMDA_DAEMON_SERVICES_INTERNAL_H

#include "context.h"
#include "storage.h"

/** The open store (borrowed; valid while the services run). */
samda_store *samdad_store(samdad_ctx *ctx);

#endif
