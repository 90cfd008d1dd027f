/* storage/fault.c: fault injection. The store keeps a hook and a call counter per fault point (no
 * global state); the file, directory and SQLite steps of objects.c, index.c and the rest ask
 * storage_fault() before running, so a test can fail the Nth write, fsync, rename, mkdir or SQLite
 * step and then check that nothing was left half done. Without a hook the cost is one branch. */
#include "internal.h"

const char *samda_fault_point_name(samda_fault_point point)
{
    static const char *const names[SAMDA_FAULT_POINT_COUNT_] = {"write", "fsync", "rename", "mkdir", "db_step", "unlink"};
    if ((int)point < 0 || (int)point >= SAMDA_FAULT_POINT_COUNT_) return "unknown";
    return names[point];
}

void samda_store_set_fault(samda_store *s, samda_fault_fn fn, void *ctx)
{
    if (!s) return;
    s->fault = fn;
    s->fault_ctx = ctx;
    for (int i = 0; i < SAMDA_FAULT_POINT_COUNT_; i++) atomic_store(&s->fault_calls[i], 0);
}

int storage_fault(samda_store *s, samda_fault_point point)
{
    if (!s->fault) return 0;
    unsigned long n = atomic_fetch_add(&s->fault_calls[point], 1) + 1;
    return s->fault(s->fault_ctx, point, n);
}
