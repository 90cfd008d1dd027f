/* A background thread that wakes every tick or when kicked, until stopped (daemon/loop.c): the
 * shape the scheduler, the exporter and the segmentation worker share. */
#ifndef SAMDA_DAEMON_LOOP_H
#define SAMDA_DAEMON_LOOP_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "status.h"

typedef struct samdad_loop {
    pthread_t thread;
    pthread_mutex_t mu;  /* guards stop and kicked (and whatever the owner adds) */
    pthread_cond_t cv;   /* CLOCK_MONOTONIC */
    bool stop, kicked;
} samdad_loop;

/** Initialise l and start fn(arg) on a new thread. @return SAMDA_OK; SAMDA_EINTERNAL (message names
 *  what). On failure nothing is left to free. */
samda_status samdad_loop_start(samdad_loop *l, void *(*fn)(void *), void *arg, const char *what, samda_error *err);
/** Wake the thread. Thread-safe. */
void samdad_loop_kick(samdad_loop *l);
/** With l->mu held: sleep until kicked, stopped or tick_ms passed (returns at once if already
 *  kicked or stopped); clears kicked. Returns !stop. */
bool samdad_loop_wait(samdad_loop *l, int64_t tick_ms);
/** Is a stop asked? Thread-safe (takes mu). */
bool samdad_loop_stopping(samdad_loop *l);
/** Ask the thread to stop, join it, destroy l's mutex and condition. */
void samdad_loop_stop(samdad_loop *l);

#endif
