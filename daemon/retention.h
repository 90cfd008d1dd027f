/* daemon/retention.c: the retention pass ([site] retain_source, retain_results; [storage] quota)
 * and the deletions it shares with DELETE /api/v1/studies/... */
#ifndef SAMDA_DAEMON_RETENTION_H
#define SAMDA_DAEMON_RETENTION_H

#include <jansson.h>

#include "context.h"
#include "storage.h"

/** Delete a study, or one of its series (series_uid non-NULL), as the actor named (an API token's
 *  name, or "retention"): the store's deletion, one audit entry, one log line, the counters of
 *  /metrics when by retention. @param rep OUT: accumulated, may be NULL.
 *  @return as samda_store_study_delete; SAMDA_ECONFLICT (409) for the store's SAMDA_EBUSY, saying
 *  why; SAMDA_ENOENT naming the UID. Thread-safe. */
samda_status samdad_delete(samdad_ctx *ctx, const char *actor, const char *study_uid, const char *series_uid,
                           samda_purge_report *rep, samda_error *err);

/** One retention pass at now: per site, source series due after retain_source and result series
 *  due after retain_results; then, while the store is above [storage] quota, what was delivered,
 *  oldest first. Series that are busy (a running job, a send in flight) wait for the next pass.
 *  @param report OUT (may be NULL): {"deleted": {series, instances, results, bytes}, "by": {...},
 *  "bytes_stored": n, "quota": n, "over_quota": bool}, new reference.
 *  @return SAMDA_OK, or the first index error (what was deleted before it stays deleted).
 *  Thread-safe; the scheduler calls it every [storage] retention_interval. */
samda_status samdad_retention_pass(samdad_ctx *ctx, int64_t now, json_t **report, samda_error *err);

#endif
