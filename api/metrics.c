/* api/metrics.c: the HTTP server's own metrics: requests by route and status class, a duration
 * histogram per route, and the server's gauges and counters, written as Prometheus text.
 *
 * Counters are atomics updated without a lock by every network thread; a scrape reads them one by
 * one, so it may see one request counted in a histogram and not yet in another. Tested through
 * GET /metrics in tests/unit/api/test_server.c. */
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"

const double api_hist_bounds[API_HIST_BUCKETS] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                  0.25,  0.5,   1,    2.5,   5,    10};

bool api_metrics_init(api_metrics *m)
{
    m->rows = api_n_routes + 1;
    m->by_class = calloc(m->rows * 5, sizeof *m->by_class);
    m->hist = calloc(m->rows * API_HIST_BUCKETS, sizeof *m->hist);
    m->over = calloc(m->rows, sizeof *m->over);
    m->sum_us = calloc(m->rows, sizeof *m->sum_us);
    m->count = calloc(m->rows, sizeof *m->count);
    return m->by_class && m->hist && m->over && m->sum_us && m->count;
}

void api_metrics_free(api_metrics *m)
{
    free((void *)m->by_class);
    free((void *)m->hist);
    free((void *)m->over);
    free((void *)m->sum_us);
    free((void *)m->count);
}

void api_metrics_record(api_metrics *m, size_t row, unsigned status, double seconds)
{
    if (status >= 100 && status < 600) atomic_fetch_add_explicit(&m->by_class[row * 5 + status / 100 - 1], 1, memory_order_relaxed);
    size_t b = 0;
    while (b < API_HIST_BUCKETS && seconds > api_hist_bounds[b]) b++;
    if (b < API_HIST_BUCKETS) atomic_fetch_add_explicit(&m->hist[row * API_HIST_BUCKETS + b], 1, memory_order_relaxed);
    else atomic_fetch_add_explicit(&m->over[row], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->sum_us[row], (uint64_t)(seconds * 1e6), memory_order_relaxed);
    atomic_fetch_add_explicit(&m->count[row], 1, memory_order_relaxed);
}

const char *api_metrics_row_label(size_t row)
{
    return row < api_n_routes ? api_routes[row].pattern : "unmatched";
}

static const char *row_method(size_t row)
{
    if (row >= api_n_routes) return "";
    switch (api_routes[row].method) {
    case API_POST: return "POST";
    case API_PUT: return "PUT";
    case API_DELETE: return "DELETE";
    case API_PATCH: return "PATCH";
    default: return "GET";
    }
}

void api_metrics_write(samda_api *api, FILE *out)
{
    api_metrics *m = &api->metrics;
    fputs("# HELP samda_http_requests_total HTTP requests answered, by route pattern and status class.\n"
          "# TYPE samda_http_requests_total counter\n", out);
    for (size_t row = 0; row < m->rows; row++)
        for (int c = 0; c < 5; c++) {
            uint64_t v = atomic_load_explicit(&m->by_class[row * 5 + c], memory_order_relaxed);
            if (v) fprintf(out, "samda_http_requests_total{method=\"%s\",route=\"%s\",code=\"%dxx\"} %llu\n",
                           row_method(row), api_metrics_row_label(row), c + 1, (unsigned long long)v);
        }
    fputs("# HELP samda_http_request_duration_seconds Time from request line to response queued.\n"
          "# TYPE samda_http_request_duration_seconds histogram\n", out);
    for (size_t row = 0; row < m->rows; row++) {
        uint64_t count = atomic_load_explicit(&m->count[row], memory_order_relaxed);
        if (!count) continue;
        uint64_t cum = 0;
        for (size_t b = 0; b < API_HIST_BUCKETS; b++) {
            cum += atomic_load_explicit(&m->hist[row * API_HIST_BUCKETS + b], memory_order_relaxed);
            fprintf(out, "samda_http_request_duration_seconds_bucket{method=\"%s\",route=\"%s\",le=\"%g\"} %llu\n",
                    row_method(row), api_metrics_row_label(row), api_hist_bounds[b], (unsigned long long)cum);
        }
        cum += atomic_load_explicit(&m->over[row], memory_order_relaxed);
        fprintf(out, "samda_http_request_duration_seconds_bucket{method=\"%s\",route=\"%s\",le=\"+Inf\"} %llu\n",
                row_method(row), api_metrics_row_label(row), (unsigned long long)cum);
        fprintf(out, "samda_http_request_duration_seconds_sum{method=\"%s\",route=\"%s\"} %.6f\n", row_method(row),
                api_metrics_row_label(row),
                (double)atomic_load_explicit(&m->sum_us[row], memory_order_relaxed) / 1e6);
        /* count from the buckets so that +Inf == _count even while other threads record */
        fprintf(out, "samda_http_request_duration_seconds_count{method=\"%s\",route=\"%s\"} %llu\n", row_method(row),
                api_metrics_row_label(row), (unsigned long long)cum);
    }
    fprintf(out, "# HELP samda_http_requests_in_flight Requests being processed.\n"
                 "# TYPE samda_http_requests_in_flight gauge\nsamda_http_requests_in_flight %d\n",
            atomic_load(&api->inflight));
    fprintf(out, "# HELP samda_http_requests_queued Requests waiting for a handler thread.\n"
                 "# TYPE samda_http_requests_queued gauge\nsamda_http_requests_queued %u\n",
            samda_api_queued(api));
    fprintf(out, "# HELP samda_http_header_timeouts_total Connections closed because their request head was not "
                 "complete within header_timeout.\n"
                 "# TYPE samda_http_header_timeouts_total counter\nsamda_http_header_timeouts_total %llu\n",
            (unsigned long long)atomic_load(&api->header_timeouts));
    fprintf(out, "# HELP samda_http_body_timeouts_total Connections closed because their request body arrived more slowly "
                 "than body_timeout and body_min_rate allow.\n"
                 "# TYPE samda_http_body_timeouts_total counter\nsamda_http_body_timeouts_total %llu\n",
            (unsigned long long)atomic_load(&api->body_timeouts));
    fprintf(out, "# HELP samda_http_request_body_bytes_total Request body bytes received.\n"
                 "# TYPE samda_http_request_body_bytes_total counter\nsamda_http_request_body_bytes_total %llu\n",
            (unsigned long long)atomic_load(&m->bytes_in));
    fprintf(out, "# HELP samda_http_stow_parts_total STOW-RS parts offered to the core, and failed.\n"
                 "# TYPE samda_http_stow_parts_total counter\nsamda_http_stow_parts_total %llu\n"
                 "# HELP samda_http_stow_failed_total STOW-RS parts that failed.\n"
                 "# TYPE samda_http_stow_failed_total counter\nsamda_http_stow_failed_total %llu\n",
            (unsigned long long)atomic_load(&m->stow_parts), (unsigned long long)atomic_load(&m->stow_failed));
    fprintf(out, "# HELP samda_http_auth_failures_total Requests refused with 401.\n"
                 "# TYPE samda_http_auth_failures_total counter\nsamda_http_auth_failures_total %llu\n",
            (unsigned long long)atomic_load(&m->auth_failures));
}
