/* The daemon's context: the one place that holds samdad's mutable state (no globals elsewhere).
 * Created by samdad.c's main, passed to every daemon thread. */
#ifndef SAMDA_DAEMON_CONTEXT_H
#define SAMDA_DAEMON_CONTEXT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "config.h"
#include "log.h"

typedef struct samdad_ctx {
    samda_logger log;
    pthread_mutex_t cfg_mu;
    samda_config *cfg;          /* current snapshot; take with samdad_config_get() */
    int lock_fd;
    atomic_bool stopping;
    struct samdad_services *svc; /* subsystems (services.c) */
    samda_log_gate sched_gate;   /* the scheduler's failures to read or write the index: one line a minute */
    struct {                     /* what retention passes deleted (retention.c), for /metrics */
        atomic_ullong series, instances, bytes;
    } retained;
} samdad_ctx;

/** Current configuration snapshot, referenced: release with samda_config_unref(). Thread-safe. */
samda_config *samdad_config_get(samdad_ctx *ctx);
/** Install a new snapshot (takes ownership of c). Thread-safe. */
void samdad_config_set(samdad_ctx *ctx, samda_config *c);

#endif
