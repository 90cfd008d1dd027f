#include "loop.h"

#include <string.h>
#include <time.h>

samda_status samdad_loop_start(samdad_loop *l, void *(*fn)(void *), void *arg, const char *what, samda_error *err)
{
    l->stop = l->kicked = false;
    pthread_mutex_init(&l->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&l->cv, &ca);
    pthread_condattr_destroy(&ca);
    int rc = pthread_create(&l->thread, NULL, fn, arg);
    if (rc != 0) {
        pthread_cond_destroy(&l->cv);
        pthread_mutex_destroy(&l->mu);
        return samda_fail(err, SAMDA_EINTERNAL, "starting the %s thread: %s", what, strerror(rc));
    }
    return SAMDA_OK;
}

void samdad_loop_kick(samdad_loop *l)
{
    pthread_mutex_lock(&l->mu);
    l->kicked = true;
    pthread_cond_signal(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

bool samdad_loop_wait(samdad_loop *l, int64_t tick_ms)
{
    if (!l->kicked && !l->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += tick_ms / 1000;
        ts.tv_nsec += (tick_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&l->cv, &l->mu, &ts);
    }
    l->kicked = false;
    return !l->stop;
}

bool samdad_loop_stopping(samdad_loop *l)
{
    pthread_mutex_lock(&l->mu);
    bool s = l->stop;
    pthread_mutex_unlock(&l->mu);
    return s;
}

void samdad_loop_stop(samdad_loop *l)
{
    pthread_mutex_lock(&l->mu);
    l->stop = true;
    pthread_cond_signal(&l->cv);
    pthread_mutex_unlock(&l->mu);
    pthread_join(l->thread, NULL);
    pthread_cond_destroy(&l->cv);
    pthread_mutex_destroy(&l->mu);
}
