/* samdad configuration: one INI file, defined once in a table (daemon/config.c).
 *
 * Every option is one row of that table: section, key, type, default, bounds, flags and a doc string.
 * The parser, the validation messages ("samdad.conf:42: [dicom] port = 70000: must be between 1 and
 * 65535"), the example file deploy/samdad.conf.example and the reload rules all come from it.
 * Repeated sections ([site NAME], [peer NAME], [destination NAME]) have tables of their own.
 *
 * Thread-safety: a samda_config is immutable once loaded; share it between threads through
 * samda_config_ref()/samda_config_unref(). Loading functions are reentrant. */
#ifndef SAMDA_DAEMON_CONFIG_H
#define SAMDA_DAEMON_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct samda_strlist {
    char **v;   /* owned */
    size_t n;
} samda_strlist;

typedef enum samda_cfg_tta { SAMDA_CFG_TTA_OFF = 0, SAMDA_CFG_TTA_EPISODIC, SAMDA_CFG_TTA_CONTINUAL } samda_cfg_tta;
typedef enum samda_cfg_auth { SAMDA_CFG_AUTH_NONE = 0, SAMDA_CFG_AUTH_BEARER, SAMDA_CFG_AUTH_BASIC } samda_cfg_auth;
typedef enum samda_cfg_index { SAMDA_CFG_INDEX_SQLITE = 0, SAMDA_CFG_INDEX_POSTGRESQL } samda_cfg_index;
typedef enum samda_cfg_dup { SAMDA_CFG_DUP_IGNORE = 0, SAMDA_CFG_DUP_OVERWRITE, SAMDA_CFG_DUP_REJECT } samda_cfg_dup;
typedef enum samda_cfg_convention { SAMDA_CFG_CONVENTION_SAM = 0, SAMDA_CFG_CONVENTION_MEDSAM } samda_cfg_convention;

/* [site NAME]: the unit that owns an adapter and its settings. */
typedef struct samda_site_cfg {
    char *name;
    samda_strlist called_ae;     /* called AE titles that map to this site */
    samda_strlist calling_ae;    /* calling AE titles that map to this site */
    samda_strlist modalities;    /* series of these modalities become jobs */
    int64_t min_slices;
    int64_t series_idle_ms, study_idle_ms, max_wait_ms;
    int64_t tta;                 /* samda_cfg_tta */
    int64_t min_component;       /* voxels: smaller 3-D components are removed */
    bool largest_component;      /* keep only the largest component per label */
    samda_strlist destinations;  /* names of [destination] sections */
    samda_strlist outputs;       /* result formats sent: seg, rtstruct, sr (each at most once) */
    int64_t retain_source_ms;    /* delete source series this long after their results were delivered; 0 = keep */
    int64_t retain_results_ms;   /* delete result SEGs this long after they were made (once delivered); 0 = keep */
    int line;                    /* where the section started, for messages */
} samda_site_cfg;

/* [peer NAME]: a calling AE that may send, optionally only from one host. */
typedef struct samda_peer_cfg {
    char *name;
    char *ae_title;
    char *host;                  /* NULL: any address */
    char *site;                  /* NULL: decided by AE mapping or the default site */
    int line;
} samda_peer_cfg;

/* [destination NAME]: where DICOM-SEG results are sent. */
typedef struct samda_dest_cfg {
    char *name;
    char *ae_title;
    char *host;
    int64_t port;
    bool tls;                    /* DICOM TLS: verify the destination against tls_ca_file/tls_ca_dir */
    char *tls_cert, *tls_key;    /* optional client certificate and its key (PEM); NULL: none */
    char *tls_ca_file, *tls_ca_dir; /* CAs trusted to sign the destination's certificate */
    char *url;                   /* STOW-RS: the DICOMweb root (http or https); NULL: DICOM C-STORE */
    int64_t auth;                /* samda_cfg_auth (STOW-RS) */
    char *username;              /* basic */
    char *secret_file;           /* the bearer token or basic password (read at each send, never logged) */
    int line;
} samda_dest_cfg;

typedef enum samda_cfg_priority { SAMDA_CFG_PRIORITY_NORMAL = 0, SAMDA_CFG_PRIORITY_URGENT, SAMDA_CFG_PRIORITY_OFF_PEAK } samda_cfg_priority;
typedef enum samda_cfg_route_mode { SAMDA_CFG_ROUTE_FIRST = 0, SAMDA_CFG_ROUTE_ALL } samda_cfg_route_mode;
typedef enum samda_cfg_unmatched { SAMDA_CFG_UNMATCHED_SITE = 0, SAMDA_CFG_UNMATCHED_SKIP } samda_cfg_unmatched;

/* [rule NAME]: a routing rule (daemon/routing.h), in file order. Unset lists mean "the site's". */
typedef struct samda_rule_cfg {
    char *name;
    char *match;                 /* expression (daemon/route_expr.h), checked at load */
    char *site;                  /* NULL: the site the series' association maps to */
    samda_strlist labels;        /* labels to segment; empty: all of the adapter's */
    samda_strlist outputs;       /* seg, rtstruct, sr; empty: the site's */
    samda_strlist destinations;  /* [destination] names; empty: the site's */
    int64_t priority;            /* samda_cfg_priority */
    char *requires;              /* NULL, or expressions separated by top-level commas: each must match a
                                    complete series of the study before the job is queued */
    int64_t requires_timeout_ms; /* held this long at most, then not segmented (reason recorded) */
    int line;
} samda_rule_cfg;

typedef struct samda_config {
    /* [daemon] */
    char *data_dir;
    int64_t log_level;           /* 0 error .. 3 debug */
    bool log_uids;
    int64_t shutdown_timeout_ms;
    /* [dicom] */
    char *dicom_bind;
    int64_t dicom_port;
    char *dicom_ae_title;
    int64_t dicom_max_associations;
    int64_t dicom_max_associations_per_peer; /* 0 = only dicom_max_associations applies */
    bool dicom_allow_any_peer;
    int64_t dicom_acse_timeout_ms, dicom_dimse_timeout_ms, dicom_idle_timeout_ms;
    int64_t dicom_message_timeout_ms; /* a C-STORE data set, all its PDVs, from its command on */
    int64_t dicom_max_pdu;
    bool dicom_tls;              /* the listener speaks DICOM TLS only */
    char *dicom_tls_cert, *dicom_tls_key; /* PEM certificate and its unencrypted key */
    char *dicom_tls_ca_file, *dicom_tls_ca_dir; /* CAs that sign the clients' certificates */
    bool dicom_tls_require_client_cert;
    /* [http] */
    char *http_bind;
    int64_t http_port;
    bool http_auth;
    int64_t http_threads;
    uint64_t http_max_body_bytes;
    int64_t http_max_connections;
    int64_t http_timeout_ms, http_header_timeout_ms, http_body_timeout_ms;
    uint64_t http_body_min_rate;
    char *http_cors_origin;
    char *http_public_url; /* base of handed-out URLs; NULL = the connection's local address */
    char *http_tls_cert, *http_tls_key;
    /* [storage] */
    uint64_t storage_min_free_bytes;
    int64_t storage_duplicates;  /* samda_cfg_dup */
    int64_t storage_index;       /* samda_cfg_index */
    char *storage_postgresql;    /* libpq connection string (sensitive: may hold a password) */
    int64_t storage_busy_timeout_ms;
    uint64_t storage_quota_bytes;       /* 0 = none: above it, delivered data is deleted oldest first */
    int64_t storage_retention_interval_ms;
    /* [cluster] */
    char *cluster_node;              /* NULL: the host name (samda_config_node_name) */
    samda_strlist cluster_roles;     /* ingest, worker, export, api (samda_cluster_roles) */
    int64_t cluster_node_timeout_ms; /* a node silent this long is dead */
    /* [model] */
    char *model_checkpoint;
    char *model_adapter;
    char *model_device;
    int64_t model_convention;    /* samda_cfg_convention: the encoder's input convention */
    int64_t model_threads;
    int64_t model_max_batch;
    uint64_t model_cache_bytes;
    /* [scheduler] */
    int64_t sched_tick_ms;
    int64_t job_lease_ms;
    int64_t job_max_attempts;
    int64_t export_backoff_base_ms, export_backoff_max_ms;
    int64_t export_max_attempts;
    /* [routing] */
    int64_t route_mode;          /* samda_cfg_route_mode */
    int64_t route_unmatched;     /* samda_cfg_unmatched */
    char *route_off_peak;        /* "HH:MM-HH:MM", local time, checked at load */

    samda_site_cfg *sites; size_t n_sites;
    samda_peer_cfg *peers; size_t n_peers;
    samda_dest_cfg *dests; size_t n_dests;
    samda_rule_cfg *rules; size_t n_rules;

    char *source;                /* file the configuration came from, or "(defaults)" */
    int refs_;                   /* private: reference count */
} samda_config;

/** Load a configuration: embedded defaults, then the file (if path is not NULL), then overrides
 *  ("section.key=value" strings, as given by --set on the command line; NULL-terminated, may be NULL).
 *  Relative paths in the file are resolved against the file's directory.
 *  @return the configuration, or NULL with err set (SAMDA_ECONFIG: the message names
 *          file:line, [section] key, the value and the rule; SAMDA_ENOENT: file missing).
 *  Ownership: caller owns the result; release with samda_config_unref(). */
samda_config *samda_config_load(const char *path, const char *const *overrides, samda_error *err);

/** Take a reference (returns c). Thread-safe. */
samda_config *samda_config_ref(samda_config *c);
/** Drop a reference; frees at zero. NULL-safe. Thread-safe. */
void samda_config_unref(samda_config *c);

/** Build the configuration to run after a reload: `next` with every restart-only option copied
 *  from `current`. Each restart-only option whose value differed is reported through note()
 *  (one call per key, "[dicom] port"), so the caller can log that a restart is needed.
 *  @return SAMDA_OK, or SAMDA_ENOMEM. */
samda_status samda_config_merge_reload(samda_config *next, const samda_config *current,
                                       void (*note)(void *ctx, const char *section, const char *key),
                                       void *ctx, samda_error *err);

/** Write the documented example configuration (every key, its default, bounds and doc) to f. */
void samda_config_write_example(FILE *f);
/** Write the effective configuration (sensitive values as ***) to f. */
void samda_config_write_effective(const samda_config *c, FILE *f);

/** Find the site a calling/called AE pair maps to (calling AE first, then called AE); NULL if none.
 *  Ownership: borrowed from c. */
const samda_site_cfg *samda_config_site_for(const samda_config *c, const char *calling_ae, const char *called_ae);
/** Find a site/destination/peer by name; NULL if none. Ownership: borrowed from c. */
const samda_site_cfg *samda_config_site(const samda_config *c, const char *name);
const samda_dest_cfg *samda_config_dest(const samda_config *c, const char *name);

/* Result formats a site's `outputs` lists, as bits. */
enum { SAMDA_OUTPUT_SEG = 1u << 0, SAMDA_OUTPUT_RTSTRUCT = 1u << 1, SAMDA_OUTPUT_SR = 1u << 2 };
/** The SAMDA_OUTPUT_* bits of s->outputs (validated at load; SAMDA_OUTPUT_SEG for NULL s). Pure. */
unsigned samda_site_outputs(const samda_site_cfg *s);
/** The SAMDA_OUTPUT_* bits of a list of output names (unknown names ignored). Pure. */
unsigned samda_outputs_of(const samda_strlist *l);
/** l's items joined with commas into out (size bytes, cut to fit); returns out. Pure. */
const char *samda_strlist_join(const samda_strlist *l, char *out, size_t size);

/* [cluster] roles of this node. */
enum { SAMDA_NODE_INGEST = 1u << 0, SAMDA_NODE_WORKER = 1u << 1, SAMDA_NODE_EXPORT = 1u << 2, SAMDA_NODE_API = 1u << 3 };
/** The SAMDA_NODE_* bits of c->cluster_roles (validated at load). Pure. */
unsigned samda_cluster_roles(const samda_config *c);
/** This node's name: [cluster] node, else the host name cut to its first label and to the characters
 *  a node name allows ("samdad" when nothing is left). Writes out (SAMDA_CONFIG_NODE_SIZE) and
 *  returns it. Pure but for gethostname. */
#define SAMDA_CONFIG_NODE_SIZE 65
const char *samda_config_node_name(const samda_config *c, char out[SAMDA_CONFIG_NODE_SIZE]);
/** Find a [rule] by name; NULL if none. Ownership: borrowed from c. */
const samda_rule_cfg *samda_config_rule(const samda_config *c, const char *name);
/** Parse an off-peak window "HH:MM-HH:MM" into minutes of the day (start may exceed end: the
 *  window spans midnight; equal: always open). Pure. */
bool samda_parse_window(const char *s, int *start_min, int *end_min);

/** Parse "2GiB", "512MB", "100k", "4096" into bytes. Returns false on a malformed value. */
bool samda_parse_size(const char *s, uint64_t *out);
/** Parse "30s", "2m", "1h", "500ms", "1d" or a bare number of seconds into milliseconds. */
bool samda_parse_duration(const char *s, int64_t *out_ms);
/** Is s a valid DICOM AE title (1..16 chars of the default repertoire, no backslash or controls,
 *  not all spaces)? */
bool samda_ae_title_is_valid(const char *s);
/** Whether samda can segment series of this Modality (0008,0060): CT and MR, the kinds of image
 *  its models take. A [site] (or an API site) listing another modality is refused, naming it.
 *  Thread-safety: pure function. */
bool samda_modality_is_segmentable(const char *modality);

#ifdef __cplusplus
}
#endif
#endif
