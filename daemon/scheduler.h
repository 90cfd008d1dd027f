/* The scheduler thread: series completion timers, job lease expiry.
 * Thread-safety: start/stop from the main thread; the thread itself only uses the store and
 * configuration snapshots. */
#ifndef SAMDA_DAEMON_SCHEDULER_H
#define SAMDA_DAEMON_SCHEDULER_H

#include "context.h"
#include "storage.h"

typedef struct samdad_scheduler samdad_scheduler;

/** Start the scheduler thread. @return NULL with err on failure (SAMDA_ENOMEM, SAMDA_EINTERNAL). */
samdad_scheduler *samdad_scheduler_start(samdad_ctx *ctx, samda_error *err);
/** Wake the thread for an immediate pass (after a reload, or a STOW request completing). */
void samdad_scheduler_kick(samdad_scheduler *s);
/** Whether this node held the leader lock at its scheduler's last tick (false for NULL). Thread-safe. */
bool samdad_scheduler_leads(const samdad_scheduler *s);
/** Stop and join the thread. NULL-safe. */
void samdad_scheduler_stop(samdad_scheduler *s);

/** One pass over the receiving series at time now_ms (exposed for tests): completes series whose
 *  timers ran out and queues jobs for those the site's rules select. Returns the number of series
 *  whose state changed. */
size_t samdad_scheduler_pass(samdad_ctx *ctx, samda_store *store, int64_t now_ms);

/** Declare a series complete now (reason `why`, e.g. "complete: STOW request"), apply its site's
 *  rules and queue its segmentation job (or record why not). sum: from
 *  samda_store_series_assoc_summary. Returns true if the series' state changed. Thread-safe. */
bool samdad_series_complete(samdad_ctx *ctx, samda_store *store, const samda_config *cfg,
                            const samda_series_info *se, const samda_series_assoc_summary *sum, const char *why);

#endif
