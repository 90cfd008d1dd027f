#include "histogram.h"

static const double bounds[SAMDAD_HIST_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                   0.25,  0.5,    1,     2.5,  5,     10,  30};

void samdad_hist_record(samdad_hist *h, double seconds)
{
    if (!(seconds >= 0)) seconds = 0;
    int i = 0;
    while (i < SAMDAD_HIST_BUCKETS && seconds > bounds[i]) i++;
    if (i < SAMDAD_HIST_BUCKETS) atomic_fetch_add_explicit(&h->bucket[i], 1, memory_order_relaxed);
    else atomic_fetch_add_explicit(&h->inf, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_us, (uint64_t)(seconds * 1e6), memory_order_relaxed);
}

void samdad_hist_write(const samdad_hist *h, FILE *out, const char *name, const char *help)
{
    fprintf(out, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int i = 0; i < SAMDAD_HIST_BUCKETS; i++) {
        cum += atomic_load_explicit(&h->bucket[i], memory_order_relaxed);
        fprintf(out, "%s_bucket{le=\"%g\"} %llu\n", name, bounds[i], (unsigned long long)cum);
    }
    cum += atomic_load_explicit(&h->inf, memory_order_relaxed);
    fprintf(out, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name, (unsigned long long)cum, name,
            (double)atomic_load_explicit(&h->sum_us, memory_order_relaxed) / 1e6, name, (unsigned long long)cum);
}
