/* samda: the command-line tool for offline work on a samdad data directory and for the model.
 * Each subcommand is one row of the table at the bottom; `samda help` lists them.
 * Commands that open the data directory work beside a running samdad (SQLite WAL allows it). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "config.h"
#include "cli_model.h"
#include "export_admin.h"
#include "json_out.h"
#ifdef SAMDA_HAVE_MODEL
#include <dirent.h>
#include <limits.h>
#include <unistd.h>
#include "dicom.h"
#include "model.h"
#include "trainset.h"
#endif
#include "phantom.h"
#include "phantom_dicom.h"
#include "storage.h"

#ifndef SAMDA_VERSION
#define SAMDA_VERSION "0.0.0"
#endif

typedef struct common_opts {
    const char *config;
    const char *data_dir;
} common_opts;

/* Parse --config/--data-dir (shared by every store command); other options are left in argv. */
static int parse_common(int *argc, char **argv, common_opts *o)
{
    int out = 1;
    for (int i = 1; i < *argc; i++) {
        if ((!strcmp(argv[i], "--config") || !strcmp(argv[i], "-c")) && i + 1 < *argc) o->config = argv[++i];
        else if ((!strcmp(argv[i], "--data-dir") || !strcmp(argv[i], "-d")) && i + 1 < *argc) o->data_dir = argv[++i];
        else argv[out++] = argv[i];
    }
    *argc = out;
    argv[out] = NULL;
    return 0;
}

static samda_store *open_store(const common_opts *o)
{
    samda_error err;
    const char *sets[2] = {NULL, NULL};
    char buf[4200];
    if (o->data_dir) {
        snprintf(buf, sizeof buf, "daemon.data_dir=%s", o->data_dir);
        sets[0] = buf;
    }
    samda_config *cfg = samda_config_load(o->config, sets, &err);
    if (!cfg) {
        fprintf(stderr, "samda: %s\n", err.message);
        return NULL;
    }
    samda_store_params p;
    samda_store_params_init(&p);
    p.data_dir = cfg->data_dir;
    samda_store *s = samda_store_open(&p, &err);
    if (!s) fprintf(stderr, "samda: opening data directory %s: %s\n", cfg->data_dir, err.message);
    samda_config_unref(cfg);
    return s;
}

static int cmd_token(int argc, char **argv)
{
    common_opts o = {0};
    parse_common(&argc, argv, &o);
    if (argc < 2) {
        fprintf(stderr, "usage: samda token create NAME --role admin|user|ingest | list | revoke ID "
                        "[--config F | --data-dir D]\n");
        return 2;
    }
    samda_error err;
    const char *verb = argv[1];
    if (!strcmp(verb, "create")) {
        const char *name = NULL, *role_s = "user";
        for (int i = 2; i < argc; i++) {
            if (!strcmp(argv[i], "--role") && i + 1 < argc) role_s = argv[++i];
            else if (!name) name = argv[i];
            else {
                fprintf(stderr, "samda token create: unexpected argument '%s'\n", argv[i]);
                return 2;
            }
        }
        samda_role role;
        if (!strcmp(role_s, "admin")) role = SAMDA_ROLE_ADMIN;
        else if (!strcmp(role_s, "user")) role = SAMDA_ROLE_USER;
        else if (!strcmp(role_s, "ingest")) role = SAMDA_ROLE_INGEST;
        else {
            fprintf(stderr, "samda token create: --role %s: must be admin, user or ingest\n", role_s);
            return 2;
        }
        if (!name) {
            fprintf(stderr, "samda token create: a NAME is required\n");
            return 2;
        }
        samda_store *s = open_store(&o);
        if (!s) return 1;
        char secret[SAMDA_TOKEN_SECRET_SIZE];
        int64_t id;
        samda_status st = samda_store_token_create(s, name, role, secret, &id, &err);
        if (st == SAMDA_OK)
            samda_store_audit_append(s, "cli", "token.create", "token", "ok", NULL, NULL);
        samda_store_close(s);
        if (st != SAMDA_OK) {
            fprintf(stderr, "samda token create: %s\n", err.message);
            return 1;
        }
        printf("%s\n", secret);
        fprintf(stderr, "token %lld '%s' (role %s) created; the secret above is shown once and cannot be "
                        "recovered\n", (long long)id, name, samda_role_name(role));
        return 0;
    }
    if (!strcmp(verb, "list")) {
        samda_store *s = open_store(&o);
        if (!s) return 1;
        samda_token_info *t = NULL;
        size_t n = 0;
        samda_status st = samda_store_token_list(s, &t, &n, &err);
        samda_store_close(s);
        if (st != SAMDA_OK) {
            fprintf(stderr, "samda token list: %s\n", err.message);
            return 1;
        }
        printf("%-6s %-24s %-7s %-20s %s\n", "ID", "NAME", "ROLE", "CREATED", "STATE");
        for (size_t i = 0; i < n; i++) {
            char when[32];
            time_t sec = (time_t)(t[i].created_ms / 1000);
            struct tm tm;
            gmtime_r(&sec, &tm);
            strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
            printf("%-6lld %-24s %-7s %-20s %s\n", (long long)t[i].id, t[i].name, samda_role_name(t[i].role), when,
                   t[i].revoked_ms ? "revoked" : "valid");
        }
        samda_store_free(t);
        return 0;
    }
    if (!strcmp(verb, "revoke")) {
        if (argc != 3) {
            fprintf(stderr, "usage: samda token revoke ID\n");
            return 2;
        }
        char *end;
        errno = 0;
        long long id = strtoll(argv[2], &end, 10);
        if (*end || errno || id <= 0) {
            fprintf(stderr, "samda token revoke: '%s' is not a token id (see samda token list)\n", argv[2]);
            return 2;
        }
        samda_store *s = open_store(&o);
        if (!s) return 1;
        samda_status st = samda_store_token_revoke(s, id, &err);
        if (st == SAMDA_OK) samda_store_audit_append(s, "cli", "token.revoke", "token", "ok", NULL, NULL);
        samda_store_close(s);
        if (st != SAMDA_OK) {
            fprintf(stderr, "samda token revoke: %s\n", err.message);
            return 1;
        }
        fprintf(stderr, "token %lld revoked\n", id);
        return 0;
    }
    fprintf(stderr, "samda token: unknown verb '%s' (create, list, revoke)\n", verb);
    return 2;
}

static int cmd_check(int argc, char **argv)
{
    common_opts o = {0};
    parse_common(&argc, argv, &o);
    samda_store *s = open_store(&o);
    if (!s) return 1;
    samda_store_check_report r;
    samda_error err;
    samda_status st = samda_store_check(s, &r, &err);
    samda_store_close(s);
    printf("integrity_ok=%s objects=%zu missing=%zu mismatch=%zu unindexed=%zu tmp_files=%zu\n",
           r.integrity_ok ? "yes" : "no", r.n_objects_indexed, r.n_missing, r.n_mismatch, r.n_unindexed,
           r.n_tmp_files);
    if (st != SAMDA_OK) {
        fprintf(stderr, "samda check: %s\n", r.first_problem[0] ? r.first_problem : err.message);
        return 1;
    }
    return 0;
}

static int print_json(json_t *j)
{
    if (!j) {
        fprintf(stderr, "samda: out of memory\n");
        return 1;
    }
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(j);
    if (!s) return 1;
    printf("%s\n", s);
    free(s);
    return 0;
}

/* samda series [--study UID]: the index's view of series (no patient data), as JSON. */
static int cmd_series(int argc, char **argv)
{
    common_opts o = {0};
    parse_common(&argc, argv, &o);
    samda_index_query q = {0};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--study") && i + 1 < argc) q.study_uid = argv[++i];
        else if (!strcmp(argv[i], "--site") && i + 1 < argc) q.site = argv[++i];
        else {
            fprintf(stderr, "usage: samda series [--study UID] [--site NAME] [--config F | --data-dir D]\n");
            return 2;
        }
    }
    samda_store *s = open_store(&o);
    if (!s) return 1;
    samda_series_info *rows = NULL;
    size_t n = 0;
    samda_error err;
    samda_status st = samda_store_series_query(s, &q, &rows, &n, &err);
    samda_store_close(s);
    if (st != SAMDA_OK) {
        fprintf(stderr, "samda series: %s\n", err.message);
        return 1;
    }
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, samdad_series_json(&rows[i]));
    samda_store_free(rows);
    return print_json(a);
}

/* samda jobs [--state S]: jobs as JSON. */
static int cmd_jobs(int argc, char **argv)
{
    common_opts o = {0};
    parse_common(&argc, argv, &o);
    samda_job_filter f = {.state = -1};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--state") && i + 1 < argc) {
            const char *w = argv[++i];
            f.state = -2;
            for (int k = SAMDA_JOB_PENDING; k <= SAMDA_JOB_CANCELLED; k++)
                if (!strcmp(w, samda_job_state_name((samda_job_state)k))) f.state = k;
            if (f.state == -2) {
                fprintf(stderr, "samda jobs: --state %s: must be pending, running, done, failed or cancelled\n", w);
                return 2;
            }
        } else if (!strcmp(argv[i], "--kind") && i + 1 < argc) {
            f.kind = argv[++i];
        } else {
            fprintf(stderr, "usage: samda jobs [--state S] [--kind K] [--config F | --data-dir D]\n");
            return 2;
        }
    }
    samda_store *s = open_store(&o);
    if (!s) return 1;
    samda_job *jobs = NULL;
    size_t n = 0;
    samda_error err;
    samda_status st = samda_store_job_list(s, &f, &jobs, &n, &err);
    samda_store_close(s);
    if (st != SAMDA_OK) {
        fprintf(stderr, "samda jobs: %s\n", err.message);
        return 1;
    }
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *j = samdad_job_json(&jobs[i]);
        json_array_append_new(a, j);
    }
    samda_job_list_free(jobs, n);
    return print_json(a);
}

/* Parse a positive decimal id; false (with a message naming what) when it is not one. */
static bool parse_id(const char *cmd, const char *what, const char *s, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno || v <= 0) {
        fprintf(stderr, "%s: '%s' is not %s\n", cmd, s, what);
        return false;
    }
    *out = v;
    return true;
}

/* samda exports [--state S] [--destination NAME] [--result ID] [--limit N]: the export queue as JSON;
 * samda exports retry ID: a failed item is sent again (the running samdad's exporter picks it up at
 * its next tick), audited as actor "cli". */
static int cmd_exports(int argc, char **argv)
{
    static const char *usage = "usage: samda exports [--state pending|sending|done|failed] [--destination NAME] "
                               "[--result ID] [--limit N] | samda exports retry ID [--config F | --data-dir D]\n";
    common_opts o = {0};
    parse_common(&argc, argv, &o);
    samda_error err;
    if (argc >= 2 && !strcmp(argv[1], "retry")) {
        long long id;
        if (argc != 3) {
            fprintf(stderr, "%s", usage);
            return 2;
        }
        if (!parse_id("samda exports retry", "an export id (see samda exports)", argv[2], &id)) return 2;
        samda_store *s = open_store(&o);
        if (!s) return 1;
        json_t *item = NULL;
        samda_status st = samdad_export_retry(s, id, "cli", &item, &err);
        samda_store_close(s);
        if (st != SAMDA_OK) {
            fprintf(stderr, "samda exports retry: %s\n", err.message);
            return 1;
        }
        fprintf(stderr, "export %lld is pending again; a running samdad sends it within a [scheduler] tick\n", id);
        return print_json(item);
    }
    samdad_export_query q = {.limit = 1000};
    for (int i = 1; i < argc; i++) {
        long long v;
        if (!strcmp(argv[i], "--state") && i + 1 < argc) q.state = argv[++i];
        else if (!strcmp(argv[i], "--destination") && i + 1 < argc) q.destination = argv[++i];
        else if (!strcmp(argv[i], "--result") && i + 1 < argc) {
            if (!parse_id("samda exports", "a result id", argv[++i], &v)) return 2;
            q.result_id = v;
        } else if (!strcmp(argv[i], "--limit") && i + 1 < argc) {
            if (!parse_id("samda exports", "a limit from 1 to 100000", argv[++i], &v)) return 2;
            if (v > 100000) {
                fprintf(stderr, "samda exports: --limit %lld: must be between 1 and 100000\n", v);
                return 2;
            }
            q.limit = (unsigned)v;
        } else {
            fprintf(stderr, "%s", usage);
            return 2;
        }
    }
    samda_store *s = open_store(&o);
    if (!s) return 1;
    json_t *a = NULL;
    samda_status st = samdad_exports_list(s, &q, &a, &err);
    samda_store_close(s);
    if (st != SAMDA_OK) {
        fprintf(stderr, "samda exports: %s\n", err.message);
        return st == SAMDA_EINVAL ? 2 : 1;
    }
    return print_json(a);
}

/* samda audit [--after ID] [--limit N]: the audit log as JSON lines' array. */
static int cmd_audit(int argc, char **argv)
{
    common_opts o = {0};
    parse_common(&argc, argv, &o);
    long long after = 0, limit = 1000;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--after") && i + 1 < argc) after = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--limit") && i + 1 < argc) limit = atoll(argv[++i]);
        else {
            fprintf(stderr, "usage: samda audit [--after ID] [--limit N] [--config F | --data-dir D]\n");
            return 2;
        }
    }
    if (limit <= 0 || limit > 100000) {
        fprintf(stderr, "samda audit: --limit must be between 1 and 100000\n");
        return 2;
    }
    samda_store *s = open_store(&o);
    if (!s) return 1;
    samda_audit_entry *e = NULL;
    size_t n = 0;
    samda_error err;
    samda_status st = samda_store_audit_list(s, after, (size_t)limit, &e, &n, &err);
    samda_store_close(s);
    if (st != SAMDA_OK) {
        fprintf(stderr, "samda audit: %s\n", err.message);
        return 1;
    }
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
    return print_json(a);
}

static int cmd_phantom(int argc, char **argv) { return samda_phantom_main_ex(argc, argv, samdad_phantom_write_dicom, NULL); }

#ifdef SAMDA_HAVE_MODEL
/* `samda adapter ... --dicom SERIES_DIR,SEG_FILE` (repeatable, for train, eval and tta): a series
 * and a DICOM-SEG of it become NAME.image.npy + NAME.mask.npy pairs in a temporary folder, which
 * is then passed on as --data. Segments map by SegmentLabel onto the built-in label ids. */
static int cmd_adapter(int argc, char **argv)
{
    static const char *const names[] = {"liver", "kidney", "spleen", "aorta", "inferior_vena_cava"};
    static const int values[] = {1, 2, 3, 4, 5};
    char tmp[] = "/tmp/samda-adapter-dicom-XXXXXX";
    bool made = false;
    char **args = calloc((size_t)argc + 3, sizeof *args);
    int n = 0, k = 0, rc = 1;
    if (!args) return 1;
    for (int i = 0; i < argc; i++) {
        const char *spec = NULL;
        if (!strcmp(argv[i], "--dicom") && i + 1 < argc) spec = argv[++i];
        else if (!strncmp(argv[i], "--dicom=", 8)) spec = argv[i] + 8;
        if (!spec) {
            args[n++] = argv[i];
            continue;
        }
        if (!made) {
            if (!mkdtemp(tmp)) {
                fprintf(stderr, "samda adapter: cannot create a temporary folder: %s\n", strerror(errno));
                goto out;
            }
            made = true;
            samda_dicom_init_params ip;
            samda_dicom_init_params_init(&ip);
            samda_error e;
            if (samda_dicom_init(&ip, &e) != SAMDA_OK) {
                fprintf(stderr, "samda adapter: %s\n", e.message);
                goto out;
            }
        }
        const char *comma = strchr(spec, ',');
        if (!comma || comma == spec || !comma[1]) {
            fprintf(stderr, "samda adapter: --dicom needs SERIES_DIR,SEG_FILE (got '%s')\n", spec);
            rc = 2;
            goto out;
        }
        char dir[2048];
        snprintf(dir, sizeof dir, "%.*s", (int)(comma - spec), spec);
        DIR *d = opendir(dir);
        if (!d) {
            fprintf(stderr, "samda adapter: --dicom %s: %s\n", dir, strerror(errno));
            goto out;
        }
        char **paths = NULL;
        size_t np = 0, cap = 0;
        struct dirent *ent;
        while ((ent = readdir(d))) {
            if (ent->d_name[0] == '.') continue;
            if (np == cap) {
                cap = cap ? cap * 2 : 64;
                char **nv = realloc(paths, cap * sizeof *nv);
                if (!nv) break;
                paths = nv;
            }
            paths[np] = malloc(PATH_MAX);
            if (!paths[np]) break;
            snprintf(paths[np], PATH_MAX, "%.2047s/%.255s", dir, ent->d_name);
            np++;
        }
        closedir(d);
        char prefix[32];
        snprintf(prefix, sizeof prefix, "dicom%03d", k++);
        size_t written = 0, matched = 0;
        samda_error e;
        samda_status st = samdad_trainset_write((const char *const *)paths, np, comma + 1, names, values, 5, tmp, prefix,
                                                &written, &matched, &e);
        for (size_t i = 0; i < np; i++) free(paths[i]);
        free(paths);
        if (st != SAMDA_OK) {
            fprintf(stderr, "samda adapter: --dicom %s: %s\n", spec, e.message);
            goto out;
        }
        fprintf(stderr, "samda adapter: %s: %zu labelled slices (%zu segments matched)\n", spec, written, matched);
    }
    if (made) {
        args[n++] = "--data";
        args[n++] = tmp;
    }
    rc = samda_adapter_cli_main(n, args);
out:
    if (made) {
        DIR *d = opendir(tmp);
        struct dirent *ent;
        while (d && (ent = readdir(d))) {
            if (ent->d_name[0] == '.') continue;
            char p[PATH_MAX];
            snprintf(p, sizeof p, "%s/%.255s", tmp, ent->d_name);
            unlink(p);
        }
        if (d) closedir(d);
        rmdir(tmp);
    }
    free(args);
    return rc;
}
#endif

typedef struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
} command;

static int cmd_help(int argc, char **argv);

static const command commands[] = {
    {"token", cmd_token, "create|list|revoke API bearer tokens (only SHA-256 hashes are stored)"},
    {"series", cmd_series, "list series in the index with their completion state (JSON)"},
    {"jobs", cmd_jobs, "list jobs with state, attempts and errors (JSON)"},
    {"exports", cmd_exports, "list the export queue (JSON); exports retry ID sends a failed item again"},
    {"audit", cmd_audit, "print the audit log (JSON)"},
#ifdef SAMDA_HAVE_MODEL
    {"model", samda_cmd_model, "describe a SAM/MedSAM checkpoint: architecture, parameters, fingerprint, BLAS"},
    {"segment", samda_cmd_segment, "segment one image (.npy, .png, .dcm) with point/box prompts; write the mask"},
    {"adapter", cmd_adapter, "train | eval | tta | info | pretrain: the SAM-DA decoder adapter (--dicom SERIES,SEG for DICOM data)"},
    {"bench", samda_cmd_bench, "bench model: encoder images/s, decoder ms per prompt, peak memory (JSON)"},
#endif
    {"phantom", cmd_phantom, "generate synthetic CT-like slices with exact masks, per-site styles"},
    {"check", cmd_check, "verify the data directory: index integrity, every object present with its hash"},
    {"help", cmd_help, "this list"},
};

static int cmd_help(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    printf("Usage: samda COMMAND [ARGS] [--config FILE | --data-dir DIR]\n\nCommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        printf("  %-8s %s\n", commands[i].name, commands[i].help);
    return 0;
}

int main(int argc, char **argv)
{
#ifdef SAMDA_HAVE_MODEL
    samda_model_tune_allocator();  /* before any thread: the model's tensors (model.h says why) */
#endif
    if (argc < 2) {
        cmd_help(argc, argv);
        return 2;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("samda %s\n", SAMDA_VERSION);
        return 0;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) return cmd_help(argc, argv);
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "samda: unknown command '%s' (see samda help)\n", argv[1]);
    return 2;
}
