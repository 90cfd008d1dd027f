/* Prometheus-style latency histogram with fixed buckets (seconds), lock-free (atomics), for the
 * worker's and exporter's metrics. Thread-safety: record from any thread, write from any thread. */
#ifndef SAMDA_DAEMON_HISTOGRAM_H
#define SAMDA_DAEMON_HISTOGRAM_H

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

#define SAMDAD_HIST_BUCKETS 14
typedef struct samdad_hist {
    _Atomic uint64_t bucket[SAMDAD_HIST_BUCKETS]; /* counts per bucket (not cumulative) */
    _Atomic uint64_t inf;                         /* above the last bound */
    _Atomic uint64_t sum_us;
} samdad_hist;

/** Record one observation (seconds). */
void samdad_hist_record(samdad_hist *h, double seconds);
/** Write HELP, TYPE and the series of metric name (cumulative buckets, +Inf, _sum, _count). */
void samdad_hist_write(const samdad_hist *h, FILE *out, const char *name, const char *help);

#endif
