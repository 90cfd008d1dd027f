/* `samda series | jobs | audit | check`: what a data directory holds, read from its index and object
 * store (as JSON, without patient data) and verified. Read-only: these commands change nothing. */
#include "cli.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_out.h"
#include "storage.h"

#define STORE_JSON_FLAGS (JSON_INDENT(2) | JSON_SORT_KEYS)
#define LIST_DEFAULT 1000
#define LIST_MAX 100000 /* the index's own bound on one list */

/* --limit N of a listing command: 1..LIST_MAX, else a message naming cmd. */
static bool take_limit(const char *cmd, const char *v, size_t *out)
{
    long long n = 0;
    if (!cli_parse_id(cmd, "a --limit (a positive number)", v, &n)) return false;
    if (n > LIST_MAX) {
        fprintf(stderr, "%s: --limit %lld is above %d\n", cmd, n, LIST_MAX);
        return false;
    }
    *out = (size_t)n;
    return true;
}

/* A listing that filled its limit may have more rows: say so on stderr, so that a script counting the
 * JSON array is not misled. */
static void note_limit(const char *cmd, size_t n, size_t limit)
{
    if (n >= limit)
        fprintf(stderr, "%s: the first %zu shown; there may be more (--limit N, at most %d)\n", cmd, n, LIST_MAX);
}

/* samda series [--study UID] [--site NAME] [--limit N]: the index's view of series. */
int cli_cmd_series(int argc, char **argv)
{
    cli_data_opts o = {0};
    cli_take_data_opts(&argc, argv, &o);
    samda_index_query q = {.limit = LIST_DEFAULT};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--study") && i + 1 < argc) q.study_uid = argv[++i];
        else if (!strcmp(argv[i], "--site") && i + 1 < argc) q.site = argv[++i];
        else if (!strcmp(argv[i], "--limit") && i + 1 < argc) {
            if (!take_limit("samda series", argv[++i], &q.limit)) return CLI_EXIT_USAGE;
        } else {
            fprintf(stderr, "usage: samda series [--study UID] [--site NAME] [--limit N] [--config F | --data-dir D]\n");
            return CLI_EXIT_USAGE;
        }
    }
    samda_store *s = cli_open_store(&o);
    if (!s) return CLI_EXIT_FAIL;
    samda_series_info *rows = NULL;
    size_t n = 0;
    samda_error err;
    samda_status st = samda_store_series_query(s, &q, &rows, &n, &err);
    samda_store_close(s);
    if (st != SAMDA_OK) {
        fprintf(stderr, "samda series: %s\n", err.message);
        return CLI_EXIT_FAIL;
    }
    note_limit("samda series", n, q.limit);
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, samdad_series_json(&rows[i]));
    samda_store_free(rows);
    return cli_print_json(a, STORE_JSON_FLAGS);
}

/* samda jobs [--state S] [--kind K] [--limit N]: jobs with state, attempts and errors. */
int cli_cmd_jobs(int argc, char **argv)
{
    cli_data_opts o = {0};
    cli_take_data_opts(&argc, argv, &o);
    samda_job_filter f = {.state = -1, .limit = LIST_DEFAULT};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--state") && i + 1 < argc) {
            const char *w = argv[++i];
            f.state = -2;
            for (int k = SAMDA_JOB_PENDING; k <= SAMDA_JOB_CANCELLED; k++)
                if (!strcmp(w, samda_job_state_name((samda_job_state)k))) f.state = k;
            if (f.state == -2) {
                fprintf(stderr, "samda jobs: --state %s: must be pending, running, done, failed or cancelled\n", w);
                return CLI_EXIT_USAGE;
            }
        } else if (!strcmp(argv[i], "--kind") && i + 1 < argc) {
            f.kind = argv[++i];
        } else if (!strcmp(argv[i], "--limit") && i + 1 < argc) {
            if (!take_limit("samda jobs", argv[++i], &f.limit)) return CLI_EXIT_USAGE;
        } else {
            fprintf(stderr, "usage: samda jobs [--state S] [--kind K] [--limit N] [--config F | --data-dir D]\n");
            return CLI_EXIT_USAGE;
        }
    }
    samda_store *s = cli_open_store(&o);
    if (!s) return CLI_EXIT_FAIL;
    samda_job *jobs = NULL;
    size_t n = 0;
    samda_error err;
    samda_status st = samda_store_job_list(s, &f, &jobs, &n, &err);
    samda_store_close(s);
    if (st != SAMDA_OK) {
        fprintf(stderr, "samda jobs: %s\n", err.message);
        return CLI_EXIT_FAIL;
    }
    note_limit("samda jobs", n, f.limit);
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, samdad_job_json(&jobs[i]));
    samda_job_list_free(jobs, n);
    return cli_print_json(a, STORE_JSON_FLAGS);
}

/* samda audit [--after ID] [--limit N]: the audit log, oldest first. */
int cli_cmd_audit(int argc, char **argv)
{
    cli_data_opts o = {0};
    cli_take_data_opts(&argc, argv, &o);
    long long after = 0;
    size_t limit = LIST_DEFAULT;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--after") && i + 1 < argc) after = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--limit") && i + 1 < argc) {
            if (!take_limit("samda audit", argv[++i], &limit)) return CLI_EXIT_USAGE;
        } else {
            fprintf(stderr, "usage: samda audit [--after ID] [--limit N] [--config F | --data-dir D]\n");
            return CLI_EXIT_USAGE;
        }
    }
    samda_store *s = cli_open_store(&o);
    if (!s) return CLI_EXIT_FAIL;
    samda_audit_entry *e = NULL;
    size_t n = 0;
    samda_error err;
    samda_status st = samda_store_audit_list(s, after, limit, &e, &n, &err);
    samda_store_close(s);
    if (st != SAMDA_OK) {
        fprintf(stderr, "samda audit: %s\n", err.message);
        return CLI_EXIT_FAIL;
    }
    note_limit("samda audit", n, limit);
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *j = json_pack("{s:I, s:I, s:s, s:s, s:s, s:s}", "id", (json_int_t)e[i].id, "time_ms",
                              (json_int_t)e[i].time_ms, "actor", e[i].actor, "action", e[i].action, "resource",
                              e[i].resource, "outcome", e[i].outcome);
        if (j && e[i].details_json) {
            json_t *d = json_loads(e[i].details_json, 0, NULL);
            if (d) json_object_set_new(j, "details", d);
        }
        json_array_append_new(a, j);
    }
    samda_audit_list_free(e, n);
    return cli_print_json(a, STORE_JSON_FLAGS);
}

/* samda check: index integrity, every indexed object present with its hash, leftovers counted. */
int cli_cmd_check(int argc, char **argv)
{
    cli_data_opts o = {0};
    cli_take_data_opts(&argc, argv, &o);
    samda_store *s = cli_open_store(&o);
    if (!s) return CLI_EXIT_FAIL;
    samda_store_check_report r;
    samda_error err;
    samda_status st = samda_store_check(s, &r, &err);
    samda_store_close(s);
    printf("integrity_ok=%s objects=%zu missing=%zu mismatch=%zu unindexed=%zu tmp_files=%zu\n",
           r.integrity_ok ? "yes" : "no", r.n_objects_indexed, r.n_missing, r.n_mismatch, r.n_unindexed,
           r.n_tmp_files);
    if (st != SAMDA_OK) {
        fprintf(stderr, "samda check: %s\n", r.first_problem[0] ? r.first_problem : err.message);
        return CLI_EXIT_FAIL;
    }
    return CLI_EXIT_OK;
}
