/* Administration of the export queue (daemon/export_admin.c): listing items with filters and the
 * manual retry of a failed one, shared by GET /api/v1/exports, POST /api/v1/exports/{id}/retry and
 * `samda exports`. It works on a store only, so the CLI uses it beside a running samdad: a retried
 * item is due at once and the exporter's next look at the queue (every [scheduler] tick) sends it.
 * Thread-safety: as the store (any thread). */
#ifndef SAMDA_DAEMON_EXPORT_ADMIN_H
#define SAMDA_DAEMON_EXPORT_ADMIN_H

#include <jansson.h>
#include <stdint.h>

#include "config.h"
#include "storage.h"

/** What to list. Zero-initialise, then set what you filter on. Strings borrowed for the call. */
typedef struct samdad_export_query {
    const char *state;       /* "pending", "sending", "done" or "failed"; NULL = any */
    const char *destination; /* destination name; NULL = any */
    int64_t result_id;       /* only the items sending this result's DICOM-SEG; 0 = any */
    unsigned limit;          /* 0 = 100 */
    unsigned offset;         /* items to skip, newest first */
} samdad_export_query;

/** Export items as a JSON array, newest first; each item: id, destination, result (id or null),
 *  sop_uid, state, attempts, permanent, error, next_attempt_ms, created_ms, updated_ms (no paths).
 *  @param out OUT: a new reference. @return SAMDA_OK; SAMDA_EINVAL: unknown state (the message
 *  lists the states); SAMDA_ENOENT: unknown destination or result (named); SAMDA_ENOMEM; SAMDA_EDB.
 *  Nothing changes on failure. */
samda_status samdad_exports_list(samda_store *s, const samdad_export_query *q, json_t **out, samda_error *err);

/** Make a failed (or waiting) item pending and due now with its attempts reset, and record
 *  "export.retry" in the audit log under actor ("token:N", "cli").
 *  @param out OUT (may be NULL): the item after the change, as in samdad_exports_list.
 *  @return SAMDA_OK; SAMDA_ENOENT: no such item; SAMDA_ECONFLICT: the item is done or being sent
 *  (unchanged); SAMDA_EDB; SAMDA_EIO: the item was retried but the audit log could not record it
 *  (the message says so). Safe to repeat: a second retry of a pending item only makes it due now. */
samda_status samdad_export_retry(samda_store *s, int64_t id, const char *actor, json_t **out, samda_error *err);

/** The names of site's destinations, the one rule for where a site's SEGs go: its [site] section's
 *  `destinations` when the configuration file defines it, else (a site made over the API) the
 *  "destinations" of its settings in the index. Writes at most max names to out; returns how many. */
size_t samdad_site_destinations(samda_store *s, const samda_config *cfg, const char *site, char (*out)[SAMDA_NAME_SIZE],
                                size_t max);

#endif
