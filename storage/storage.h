/* samda storage: the SQLite index and the on-disk object store.
 *
 * One data directory holds everything durable:
 *   <data_dir>/index.sqlite3   the index (WAL mode, foreign keys on), schema versioned by migrations
 *   <data_dir>/objects/        immutable files: <study>/<series>/<sop>.dcm, seg/<study>/<series>/<sop>.dcm,
 *                              adapters/<site id>/<version>.safetensors
 *   <data_dir>/tmp/            files being written; anything left there after a crash is removed at open
 * Object paths are built only from validated UIDs (samda_uid_is_valid) and internal integer ids, never
 * from other input. An object is written to tmp/, fsynced, renamed into objects/ and its directory fsynced;
 * only then is it indexed. Every object file must be referenced by the index (an instance, a result or
 * an adapter): a committed object that no index row claims is removed at the next open, so a crash at any
 * instant leaves neither a half-indexed instance nor an unindexed file (see samda_store_check).
 *
 * Conventions. Times are Unix milliseconds (int64_t, `_ms`), read from the store's clock (params.clock)
 * so that tests can move time. Strings in returned structs are NUL-terminated; "" means absent. A double
 * field set to NAN means absent. Text fields named `*_json` hold JSON text that this module stores and
 * returns verbatim (it checks only the size bound).
 *
 * Thread-safety: a samda_store handle is safe to share between threads, and every function may be called
 * concurrently on the same handle, except samda_store_close (no call may be in flight) and
 * samda_store_set_fault (set it before sharing the handle). Internally each call borrows one SQLite
 * connection from a pool (readers run in parallel thanks to WAL) and write transactions are serialised
 * by a mutex and opened with BEGIN IMMEDIATE, so SQLITE_BUSY does not surface between threads of one
 * process; between processes the busy timeout applies. Structs passed in and out are the caller's.
 *
 * Anything not declared in this file is not public API. */
#ifndef SAMDA_STORAGE_H
#define SAMDA_STORAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dicom_rules.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------- */
/* Sizes                                                                                          */

#define SAMDA_UID_SIZE SAMDA_VR_UI_SIZE /* a DICOM UID (common/dicom_rules.h: every module's sizes) */
#define SAMDA_AE_SIZE SAMDA_VR_AE_SIZE   /* an AE title */
#define SAMDA_CS_SIZE SAMDA_VR_CS_SIZE   /* a code string (modality, body part) */
#define SAMDA_DA_SIZE SAMDA_VR_DA_SIZE   /* a DICOM date YYYYMMDD */
#define SAMDA_LO_SIZE SAMDA_VR_LO_SIZE   /* a long string (descriptions, patient ID) */
#define SAMDA_PN_SIZE SAMDA_VR_PN_SIZE   /* a person name with its component groups, as UTF-8 */
#define SAMDA_NAME_SIZE 65         /* names of sites, destinations, tokens */
#define SAMDA_SHA256_HEX_SIZE 65   /* lower-case hex SHA-256 + NUL */
#define SAMDA_RELPATH_SIZE 256     /* an object path relative to objects/ */
#define SAMDA_KEY_SIZE 129         /* job kinds, idempotency keys, content hashes, lease owners */
#define SAMDA_MESSAGE_SIZE 256     /* progress messages, errors kept in rows */
#define SAMDA_TOKEN_SECRET_SIZE 72 /* "samda_" + 64 hex + NUL, rounded up */
#define SAMDA_JSON_MAX (1024 * 1024) /* bound on every *_json field, bytes */
#define SAMDA_OBJECT_MAX_BYTES ((uint64_t)4 << 30) /* bound on one object file */

/** Schema version this code writes (PRAGMA user_version after migrations). */
#define SAMDA_STORE_SCHEMA_VERSION 5

/* ---------------------------------------------------------------------------------------------- */
/* UIDs                                                                                           */

/* samda_uid_is_valid (common/dicom_rules.h): a DICOM UID usable in a path, 1..64 characters of
 * digits and dots, no empty component. The one rule, shared with dicom/ and api/. */

/* ---------------------------------------------------------------------------------------------- */
/* Opening                                                                                        */

typedef struct samda_store samda_store; /* opaque; storage/internal.h */

/** Points at which samda_store can be made to fail (tests; see samda_store_set_fault). */
typedef enum samda_fault_point {
    SAMDA_FAULT_WRITE = 0, /* write(2) of object data */
    SAMDA_FAULT_FSYNC,     /* fsync of a file or a directory */
    SAMDA_FAULT_RENAME,    /* rename of an object into place */
    SAMDA_FAULT_MKDIR,     /* creation of an object directory */
    SAMDA_FAULT_DB_STEP,   /* one sqlite3_step (BEGIN and COMMIT included; ROLLBACK never fails) */
    SAMDA_FAULT_UNLINK,    /* unlink of a deleted object after its rows are gone (a crash between) */
    SAMDA_FAULT_POINT_COUNT_
} samda_fault_point;

/** Fault hook: called before each operation at `point`; call_no counts calls at that point from 1
 *  (per store). Return 0 to let the operation run, or an errno value (EIO, ENOSPC...) to make it fail
 *  with that error without running. */
typedef int (*samda_fault_fn)(void *ctx, samda_fault_point point, unsigned long call_no);

/** "write", "fsync", "rename", "mkdir", "db_step"; "unknown" out of range. Static string. */
const char *samda_fault_point_name(samda_fault_point point);

/** Clock: current time in Unix milliseconds. */
typedef int64_t (*samda_clock_fn)(void *ctx);

typedef enum samda_sync_mode {
    SAMDA_SYNC_FULL = 0, /* PRAGMA synchronous=FULL: a commit is durable across power loss (default) */
    SAMDA_SYNC_NORMAL    /* NORMAL: durable across process crashes; the last commits may roll back
                            after a power loss (faster; only when acknowledged data may be re-sent) */
} samda_sync_mode;

/** Which engine holds the index. */
typedef enum {
    SAMDA_INDEX_SQLITE = 0,  /* one file in the data directory; one machine */
    SAMDA_INDEX_POSTGRESQL,  /* a PostgreSQL database shared by several samdad nodes */
} samda_index_engine;

typedef struct samda_store_params {
    const char *data_dir;        /* required; created (mode 0700) if missing; at most 3000 bytes */
    int busy_timeout_ms;         /* wait for other processes' locks; default 5000; <= 0: default */
    samda_sync_mode sync;        /* default SAMDA_SYNC_FULL */
    int max_connections;         /* index connections in the pool; default 16; <= 0: default */
    samda_clock_fn clock;        /* NULL: CLOCK_REALTIME */
    void *clock_ctx;             /* passed to clock */
    samda_fault_fn fault;        /* NULL: no fault injection */
    void *fault_ctx;             /* passed to fault */
    int64_t export_backoff_base_ms; /* export retry delay after the first failure, doubling; default 60000 */
    int64_t export_backoff_max_ms;  /* cap of the export retry delay; default 3600000 */
    int export_max_attempts;     /* transient failures before an export item fails; default 10 */
    int export_lease_ms;         /* a claimed export item is claimable again after this; default 600000 */
    int job_max_attempts;        /* default max_attempts of a job; default 3 */
    samda_index_engine index;    /* default SAMDA_INDEX_SQLITE (<data_dir>/index.sqlite3) */
    const char *postgresql;      /* libpq connection string when index is SAMDA_INDEX_POSTGRESQL (copied;
                                  * at most 1024 bytes; never logged, it may hold a password) */
    const char *node;            /* this process's node name in a cluster (1..64 of [A-Za-z0-9._-]; copied);
                                  * NULL or "": none (associations then belong to this process alone) */
} samda_store_params;

/** Fill p with defaults (data_dir NULL). The only correct way to start a samda_store_params. */
void samda_store_params_init(samda_store_params *p);

/** Change the retry policy of an open store (a configuration reload): job_max_attempts (for jobs
 *  queued from now on), export_max_attempts, export_backoff_base_ms, export_backoff_max_ms; a value
 *  <= 0 keeps the current one. Applies to failures recorded from now on. Thread-safe. */
void samda_store_set_retries(samda_store *s, int job_max_attempts, int export_max_attempts,
                             int64_t export_backoff_base_ms, int64_t export_backoff_max_ms);

/** Open (creating if needed) the data directory and its index; run pending schema migrations; remove
 *  files left in tmp/ and committed objects that no index row claims (crash leftovers). The removal
 *  runs only when no other store (in this or another process) has the directory open: every open
 *  store holds a shared flock on <data_dir>/lock, and recovery needs it exclusively.
 *  @param p    IN: parameters; data_dir required.   @param err OUT: reason on failure (may be NULL).
 *  @return the store, or NULL with err: SAMDA_EINVAL (no data_dir, too long), SAMDA_EIO (directory or
 *          file cannot be created: permission, disk), SAMDA_EDB (index cannot be opened, is corrupt, or
 *          has a schema newer than this program: upgrade samda), SAMDA_ELOCKED (busy timeout expired).
 *          Nothing is left open on failure.
 *  Ownership: caller owns the store; release with samda_store_close(). p is copied (data_dir too).
 *  Thread-safety: any thread; several stores on one directory work (in one or several processes). */
samda_store *samda_store_open(const samda_store_params *p, samda_error *err);

/** Close the store and all its connections. NULL is a no-op.
 *  Thread-safety: no other call on s may be in flight. */
void samda_store_close(samda_store *s);

/** Files removed from tmp/ by the last open (crash leftovers). */
size_t samda_store_tmp_removed(const samda_store *s);
/** Unclaimed committed objects removed from objects/ by the last open. */
size_t samda_store_orphans_removed(const samda_store *s);
/** The data directory (borrowed; valid until close). */
const char *samda_store_data_dir(const samda_store *s);
/** The index engine and its version ("SQLite 3.40.1", "PostgreSQL 15.18", as the server said at
 *  connect) into out (size bytes). @return SAMDA_OK; SAMDA_EDB (no connection can be opened).
 *  Thread-safety: safe. */
samda_status samda_store_index_version(samda_store *s, char *out, size_t size, samda_error *err);
/** Current time from the store's clock, Unix ms. */
int64_t samda_store_now_ms(const samda_store *s);

/** Install (fn non-NULL) or remove (fn NULL) the fault hook and reset the per-point call counters.
 *  Thread-safety: call while no other call on s is in flight. */
void samda_store_set_fault(samda_store *s, samda_fault_fn fn, void *ctx);

/** Free memory returned by this module where a function says "free with samda_store_free" (arrays of
 *  plain structs). NULL is a no-op. */
void samda_store_free(void *p);

/* ---------------------------------------------------------------------------------------------- */
/* Object store                                                                                   */

typedef enum samda_object_kind {
    SAMDA_OBJECT_INSTANCE = 0, /* <a study>/<b series>/<c sop>.dcm */
    SAMDA_OBJECT_SEG,          /* seg/<a study>/<b series>/<c sop>.dcm */
    SAMDA_OBJECT_ADAPTER       /* adapters/<a site id>/<b version>.safetensors (c unused, NULL) */
} samda_object_kind;

/** A temporary file being written under tmp/. */
typedef struct samda_tmp_file {
    int fd;          /* open for writing; -1 when closed */
    char path[4096]; /* absolute path */
} samda_tmp_file;

/** Where a committed object lies and what it holds. */
typedef struct samda_object_info {
    char relpath[SAMDA_RELPATH_SIZE];     /* relative to objects/ */
    char sha256[SAMDA_SHA256_HEX_SIZE];   /* lower-case hex */
    uint64_t size;                        /* bytes */
} samda_object_info;

/** Build the relative path of an object from validated components (no file is touched).
 *  @param a,b,c IN: see samda_object_kind; each must pass samda_uid_is_valid (ids are digits).
 *  @param out   OUT: the path, relative to objects/.
 *  @return SAMDA_OK; SAMDA_EBADUID: a component is invalid (out is ""); SAMDA_EINVAL: unknown kind.
 *  Thread-safety: pure function. */
samda_status samda_store_object_relpath(samda_object_kind kind, const char *a, const char *b, const char *c,
                                        char out[SAMDA_RELPATH_SIZE], samda_error *err);

/** True if relpath has the form of an object path this module builds (no "..", no absolute path). */
bool samda_store_relpath_is_valid(const char *relpath);

/** Create a temporary file under tmp/ for a writer (the DICOM receiver streams into it).
 *  @param tmp OUT: fd and path. @return SAMDA_OK; SAMDA_EIO (tmp->fd = -1).
 *  Ownership: the caller owns the file until it passes it to samda_store_object_commit,
 *  samda_store_instance_ingest or samda_store_object_tmp_discard (one of them must be called). */
samda_status samda_store_object_tmp_open(samda_store *s, samda_tmp_file *tmp, samda_error *err);

/** Append len bytes to a temporary file (goes through the fault hook; loops over short writes).
 *  @return SAMDA_OK; SAMDA_ENOSPC (disk full); SAMDA_ETOOBIG (over SAMDA_OBJECT_MAX_BYTES); SAMDA_EIO.
 *  The file stays open after a failure; discard it. */
samda_status samda_store_object_tmp_write(samda_store *s, samda_tmp_file *tmp, const void *buf, size_t len,
                                          samda_error *err);

/** Close and remove a temporary file. NULL or an already closed file are no-ops. */
void samda_store_object_tmp_discard(samda_store *s, samda_tmp_file *tmp);

/** Make a temporary file a committed object: fsync it, hash it, create the directories, rename it
 *  into objects/ (never over an existing file) and fsync the directory.
 *  The object must then be referenced by an index row (samda_store_instance_insert,
 *  samda_store_result_add, samda_store_adapter_add) or it is removed at the next open.
 *  @param tmp  INOUT: from samda_store_object_tmp_open; always consumed (closed, fd = -1).
 *  @param info OUT: relpath, sha256, size.
 *  @return SAMDA_OK; SAMDA_EBADUID (bad component); SAMDA_EEXIST (an object already lies there);
 *          SAMDA_ENOSPC; SAMDA_ETOOBIG; SAMDA_EIO; SAMDA_EDB. On failure nothing is left in objects/
 *          or tmp/ and a retry with a new temporary file is safe. */
samda_status samda_store_object_commit(samda_store *s, samda_tmp_file *tmp, samda_object_kind kind,
                                       const char *a, const char *b, const char *c, samda_object_info *info,
                                       samda_error *err);

/** Write buf as a new object (temporary file + samda_store_object_commit).
 *  @return as samda_store_object_commit. Ownership: buf is copied. */
samda_status samda_store_object_put(samda_store *s, samda_object_kind kind, const char *a, const char *b,
                                    const char *c, const void *buf, size_t len, samda_object_info *info,
                                    samda_error *err);

/** Absolute path of an object (for readers that need a file name, such as DCMTK).
 *  @return SAMDA_OK; SAMDA_EINVAL (relpath not valid, or out too small). */
samda_status samda_store_object_path(const samda_store *s, const char *relpath, char *out, size_t out_size,
                                     samda_error *err);

/** Open an object for reading. @param fd OUT: read-only descriptor; caller closes it.
 *  @return SAMDA_OK; SAMDA_EINVAL (relpath not valid); SAMDA_ENOENT; SAMDA_EIO. */
samda_status samda_store_object_open_read(samda_store *s, const char *relpath, int *fd, samda_error *err);

/** Check that an object's file still holds what the index recorded (size and SHA-256).
 *  @return SAMDA_OK; SAMDA_EIO naming the object and both hashes when it differs (or cannot be read);
 *          SAMDA_ENOENT; SAMDA_EINVAL (relpath not valid). Thread-safe. */
samda_status samda_store_object_verify(samda_store *s, const samda_object_info *obj, samda_error *err);

/** Read a whole object into memory. @param max_bytes IN: refuse larger files (SAMDA_ETOOBIG).
 *  @param buf OUT: caller frees with samda_store_free. @param len OUT: bytes.
 *  @return SAMDA_OK; SAMDA_EINVAL; SAMDA_ENOENT; SAMDA_ETOOBIG; SAMDA_ENOMEM; SAMDA_EIO. */
samda_status samda_store_object_read(samda_store *s, const char *relpath, size_t max_bytes, void **buf,
                                     size_t *len, samda_error *err);

/* ---------------------------------------------------------------------------------------------- */
/* Consistency check (used by tests, the crash checker and `samda check`)                          */

typedef struct samda_store_check_report {
    bool integrity_ok;       /* PRAGMA integrity_check said ok */
    size_t n_objects_indexed;/* indexed files checked (a result's SEG, also an instance, once) */
    size_t n_missing;        /* indexed objects without a file */
    size_t n_mismatch;       /* size or SHA-256 differs */
    size_t n_unindexed;      /* files under objects/ that no row claims */
    size_t n_tmp_files;      /* files under tmp/ */
    char first_problem[SAMDA_MESSAGE_SIZE]; /* the first problem found, "" if none */
} samda_store_check_report;

/** Check the whole data directory: index integrity, every indexed file present with its size and
 *  SHA-256, no unindexed file under objects/, tmp/ empty. Reads every object (slow on big stores).
 *  @return SAMDA_OK if consistent; SAMDA_EIO (a problem; see report); SAMDA_EDB (integrity failure or
 *          query error). report is filled in every case. */
samda_status samda_store_check(samda_store *s, samda_store_check_report *report, samda_error *err);

/* ---------------------------------------------------------------------------------------------- */
/* Index: patients, studies, series, instances                                                    */

#define SAMDA_INSTANCE_FROM_ABORTED_ASSOCIATION 0x1u /* the association it came with was aborted */
#define SAMDA_INSTANCE_RESULT 0x2u /* a DICOM-SEG samda produced (samda_store_result_ingest): a results
                                      row shares its file, so it is never replaced; its series is
                                      complete as written */
#define SAMDA_INSTANCE_UPLOAD 0x4u /* written by samda from a volume a client uploaded (a MONAI Label
                                      session): its series is created complete and stays so while
                                      the upload's other instances arrive (no completion timer, no
                                      segmentation job unless one is asked for) */

/** Everything the index keeps about an instance. Strings "" = absent, doubles NAN = absent,
 *  integers 0 = absent unless said otherwise. */
typedef struct samda_instance_meta {
    char patient_id[SAMDA_LO_SIZE];
    char patient_name[SAMDA_PN_SIZE];
    char study_uid[SAMDA_UID_SIZE];          /* required */
    char study_date[SAMDA_DA_SIZE];          /* YYYYMMDD */
    char study_description[SAMDA_LO_SIZE];
    char accession_number[SAMDA_CS_SIZE];
    char series_uid[SAMDA_UID_SIZE];         /* required */
    char modality[SAMDA_CS_SIZE];
    char body_part[SAMDA_CS_SIZE];
    char series_description[SAMDA_LO_SIZE];
    int series_number;
    char sop_uid[SAMDA_UID_SIZE];            /* required */
    char sop_class_uid[SAMDA_UID_SIZE];      /* required */
    char transfer_syntax_uid[SAMDA_UID_SIZE];
    int instance_number;
    int rows, columns, bits_allocated, number_of_frames;
    double pixel_spacing[2];                 /* row spacing, column spacing (mm) */
    double image_position[3];                /* ImagePositionPatient (mm) */
    double image_orientation[6];             /* ImageOrientationPatient */
    double slice_thickness;
    double rescale_slope, rescale_intercept;
    double window_center, window_width;
    char calling_ae[SAMDA_AE_SIZE];
    char site[SAMDA_NAME_SIZE];              /* site name ("" = none) */
    int64_t association_id;                  /* 0 = not from an association (STOW, import) */
    unsigned flags;                          /* SAMDA_INSTANCE_* */
} samda_instance_meta;

/** Reset m: strings "", doubles NAN, integers 0. Call before filling a meta. */
void samda_instance_meta_init(samda_instance_meta *m);

/** What happened to an instance that was offered to the index. */
typedef enum samda_ingest_outcome {
    SAMDA_INGEST_NEW = 0,        /* indexed for the first time */
    SAMDA_INGEST_IDENTICAL,      /* same SOP UID, same bytes: nothing changed */
    SAMDA_INGEST_REPLACED        /* same SOP UID, different bytes: replaced (SAMDA_DUP_OVERWRITE) */
} samda_ingest_outcome;

/** Duplicate policy for an instance whose SOP Instance UID is already indexed. */
typedef enum samda_dup_policy {
    SAMDA_DUP_IGNORE_IDENTICAL = 0, /* identical bytes: accept, change nothing; different: SAMDA_EEXIST */
    SAMDA_DUP_OVERWRITE,            /* identical: change nothing; different: replace file and row */
    SAMDA_DUP_REJECT                /* any duplicate: SAMDA_EEXIST */
} samda_dup_policy;

typedef struct samda_ingest_result {
    samda_ingest_outcome outcome;
    int64_t instance_id, series_id, study_id;
    bool new_study, new_series;  /* rows created by this call */
    samda_object_info object;    /* the indexed file */
} samda_ingest_result;

/** Store an instance durably and index it: the whole ingest path of one DICOM instance.
 *  Hashes the temporary file, applies the duplicate policy, commits the object (fsync, rename, fsync
 *  dir) and, in one transaction, upserts patient/study/series, inserts the instance, counts it on its
 *  association, re-opens a completed series and appends change-feed rows (instance; series and study
 *  when new). Success means the instance survives a crash. An identical duplicate of an instance
 *  flagged SAMDA_INSTANCE_FROM_ABORTED_ASSOCIATION that comes over an association (meta->association_id)
 *  moves to that association, loses the flag, and re-opens its series if it was INCOMPLETE (change-feed
 *  row), so a series re-sent after a dropped association is decided again.
 *  @param tmp  INOUT: the written temporary file; always consumed.
 *  @param meta IN: required: study_uid, series_uid, sop_uid, sop_class_uid (valid UIDs).
 *  @param res  OUT: outcome and ids (may be NULL).
 *  @return SAMDA_OK (see res->outcome); SAMDA_EBADUID; SAMDA_EINVAL (bad meta, unknown site or
 *          association); SAMDA_EEXIST (duplicate refused by policy); SAMDA_ECONFLICT (the instance
 *          disagrees with what is indexed: its study names another PatientID, its series lies in
 *          another study, has another Modality, or holds another SOP class; the message names the
 *          attribute); SAMDA_ENOSPC; SAMDA_EIO; SAMDA_EDB.
 *          On failure nothing is indexed, no new file is visible, tmp/ holds nothing of it; the
 *          caller may retry with a new temporary file. */
samda_status samda_store_instance_ingest(samda_store *s, samda_tmp_file *tmp, const samda_instance_meta *meta,
                                         samda_dup_policy policy, samda_ingest_result *res, samda_error *err);
/** samda_store_instance_ingest for a file whose writer hashed it as it wrote it (the DICOM receiver):
 *  sha256 (lower-case hex) and size are its SHA-256 and length, so the store does not read it back to
 *  hash it. The size is checked against the file (a mismatch, or sha256 NULL: the file is hashed as
 *  samda_store_instance_ingest does); the hash is trusted. Thread-safe. */
samda_status samda_store_instance_ingest_hashed(samda_store *s, samda_tmp_file *tmp, const char *sha256,
                                                uint64_t size, const samda_instance_meta *meta,
                                                samda_dup_policy policy, samda_ingest_result *res, samda_error *err);

/** Index an instance whose object is already committed (the parts of samda_store_instance_ingest
 *  after the file), in one transaction. replace: an existing row with this SOP UID is updated
 *  (its old file is the caller's), otherwise SAMDA_EEXIST.
 *  @return SAMDA_OK; SAMDA_EBADUID; SAMDA_EINVAL; SAMDA_EEXIST; SAMDA_ECONFLICT (as for
 *          samda_store_instance_ingest); SAMDA_EDB. Nothing changes on failure. */
samda_status samda_store_instance_insert(samda_store *s, const samda_instance_meta *meta,
                                         const samda_object_info *object, bool replace,
                                         samda_ingest_result *res, samda_error *err);

/** Look up an indexed instance's file hash and path (for duplicate policies).
 *  @return SAMDA_OK; SAMDA_EBADUID; SAMDA_ENOENT (not indexed); SAMDA_EDB. */
samda_status samda_store_instance_lookup(samda_store *s, const char *sop_uid, samda_object_info *object,
                                         int64_t *instance_id, samda_error *err);

/** A row of the instances table, joined with its series, study and patient. */
typedef struct samda_instance_row {
    int64_t id, series_id;
    samda_instance_meta meta;
    samda_object_info object;
    int64_t received_at_ms;
} samda_instance_row;

/** The state of a series as the completion logic sees it. */
typedef enum samda_series_state {
    SAMDA_SERIES_RECEIVING = 0, /* instances may still arrive */
    SAMDA_SERIES_COMPLETE,      /* declared complete (idle timer, STOW, API) */
    SAMDA_SERIES_INCOMPLETE     /* given up on (aborted association, forced maximum) */
} samda_series_state;

typedef struct samda_series_info {
    int64_t id, study_id;
    char study_uid[SAMDA_UID_SIZE];
    char series_uid[SAMDA_UID_SIZE];
    char modality[SAMDA_CS_SIZE];
    char body_part[SAMDA_CS_SIZE];
    char series_description[SAMDA_LO_SIZE];
    int series_number;
    char site[SAMDA_NAME_SIZE];
    int64_t n_instances;
    int64_t first_received_ms, last_received_ms;
    samda_series_state state;
    char state_reason[SAMDA_MESSAGE_SIZE];
    int64_t state_changed_ms;
} samda_series_info;

typedef struct samda_study_info {
    int64_t id;
    char study_uid[SAMDA_UID_SIZE];
    char patient_id[SAMDA_LO_SIZE];
    char patient_name[SAMDA_PN_SIZE];
    char study_date[SAMDA_DA_SIZE];
    char study_description[SAMDA_LO_SIZE];
    char accession_number[SAMDA_CS_SIZE];
    char modalities[SAMDA_MESSAGE_SIZE]; /* distinct modalities of its series, backslash-separated */
    int64_t n_series, n_instances;
    int64_t last_received_ms;
} samda_study_info;

/** Filters for study and series queries. NULL or "" = no filter. Values are bound, never spliced. */
typedef struct samda_index_query {
    const char *study_uid;
    const char *series_uid;
    const char *patient_id;
    const char *modality;
    const char *date_from; /* YYYYMMDD inclusive */
    const char *date_to;   /* YYYYMMDD inclusive */
    const char *site;
    size_t limit;          /* 0 = 1000; at most 100000 */
    size_t offset;
} samda_index_query;

/** Studies matching q, newest study date first.
 *  @param rows OUT: array, caller frees with samda_store_free (NULL when n is 0).
 *  @return SAMDA_OK (possibly n = 0); SAMDA_EINVAL; SAMDA_ENOMEM; SAMDA_EDB. */
samda_status samda_store_study_query(samda_store *s, const samda_index_query *q, samda_study_info **rows,
                                     size_t *n, samda_error *err);
/** One study by UID. @return SAMDA_OK; SAMDA_ENOENT; SAMDA_EDB. */
samda_status samda_store_study_get(samda_store *s, const char *study_uid, samda_study_info *out,
                                   samda_error *err);
/** Series matching q (study_uid, series_uid, modality, site, patient_id, dates), by series number.
 *  Ownership and returns as samda_store_study_query. */
samda_status samda_store_series_query(samda_store *s, const samda_index_query *q, samda_series_info **rows,
                                      size_t *n, samda_error *err);
/** All series of a study. Ownership and returns as samda_store_study_query. */
samda_status samda_store_series_list(samda_store *s, const char *study_uid, samda_series_info **rows,
                                     size_t *n, samda_error *err);
/** One series by UID. @return SAMDA_OK; SAMDA_ENOENT; SAMDA_EDB. */
samda_status samda_store_series_get(samda_store *s, const char *series_uid, samda_series_info *out,
                                    samda_error *err);
/** Instances of a series by instance number, then SOP UID; limit 0 = all (at most 100000).
 *  Ownership and returns as samda_store_study_query. */
samda_status samda_store_instance_list(samda_store *s, const char *series_uid, size_t limit, size_t offset,
                                       samda_instance_row **rows, size_t *n, samda_error *err);
/** Absolute paths of every instance file of a series (in samda_store_instance_list order), for
 *  readers that open files (DCMTK). @param paths OUT: free with samda_store_paths_free(paths, n).
 *  @return SAMDA_OK (n may be 0); SAMDA_ENOMEM; SAMDA_EDB; SAMDA_EINVAL (a path too long). */
samda_status samda_store_series_paths(samda_store *s, const char *series_uid, char ***paths, size_t *n,
                                      samda_error *err);
void samda_store_paths_free(char **paths, size_t n);
/** One instance by SOP UID. @return SAMDA_OK; SAMDA_ENOENT; SAMDA_EDB. */
samda_status samda_store_instance_get(samda_store *s, const char *sop_uid, samda_instance_row *out,
                                      samda_error *err);
/** Set a series' completion state with a reason (one line, truncated to SAMDA_MESSAGE_SIZE) and
 *  append a change-feed row. @return SAMDA_OK; SAMDA_ENOENT; SAMDA_EINVAL; SAMDA_EDB. */
samda_status samda_store_series_set_state(samda_store *s, const char *series_uid, samda_series_state state,
                                          const char *reason, samda_error *err);
/** Series in state RECEIVING whose last instance arrived at or before idle_before_ms (for the
 *  completion timers). Ownership and returns as samda_store_study_query. */
samda_status samda_store_series_idle(samda_store *s, int64_t idle_before_ms, size_t limit,
                                     samda_series_info **rows, size_t *n, samda_error *err);
/** A digest of a series' content: SHA-256 over its instances' SOP UIDs and file hashes in SOP UID
 *  order (the job queue's content hash). @return SAMDA_OK; SAMDA_ENOENT (no instance); SAMDA_EDB. */
samda_status samda_store_series_content_hash(samda_store *s, const char *series_uid,
                                             char out[SAMDA_SHA256_HEX_SIZE], samda_error *err);

/* What a routing rule reads of a series beyond its row: its first instance's (lowest instance
 * number) acquisition attributes and the AE titles of the association that brought it. */
typedef struct samda_series_acq {
    bool has_rows, has_columns, has_slice_thickness;
    int64_t rows, columns;
    double slice_thickness;
    char calling_ae[SAMDA_AE_SIZE], called_ae[SAMDA_AE_SIZE]; /* "" when unknown (STOW, results) */
} samda_series_acq;
/** Read them. @return SAMDA_OK; SAMDA_ENOENT (no instance); SAMDA_EBADUID; SAMDA_EDB. Thread-safe. */
samda_status samda_store_series_acquisition(samda_store *s, const char *series_uid, samda_series_acq *out,
                                            samda_error *err);

/* A complete series a routing rule holds until its study has the series the rule requires. */
typedef struct samda_series_hold {
    char series_uid[SAMDA_UID_SIZE];
    int64_t since_ms;                 /* when it was first held */
    char reason[SAMDA_MESSAGE_SIZE];  /* what it waits for */
} samda_series_hold;
/** Hold a series (again: the reason is replaced, since_ms kept). @return SAMDA_OK; SAMDA_ENOENT;
 *  SAMDA_EBADUID; SAMDA_EDB. Thread-safe. */
samda_status samda_store_series_hold(samda_store *s, const char *series_uid, const char *reason, samda_error *err);
/** Stop holding a series (no-op when not held). @return SAMDA_OK; SAMDA_EBADUID; SAMDA_EDB. Thread-safe. */
samda_status samda_store_series_release(samda_store *s, const char *series_uid, samda_error *err);
/** Held series, oldest hold first; limit 0 = 1000. Rows: caller frees with samda_store_free.
 *  @return SAMDA_OK; SAMDA_ENOMEM; SAMDA_EDB. Thread-safe. */
samda_status samda_store_series_held(samda_store *s, size_t limit, samda_series_hold **rows, size_t *n,
                                     samda_error *err);

/* Associations ---------------------------------------------------------------------------------- */

typedef enum samda_assoc_state {
    SAMDA_ASSOC_STATE_OPEN = 0, SAMDA_ASSOC_STATE_RELEASED, SAMDA_ASSOC_STATE_ABORTED, SAMDA_ASSOC_STATE_REJECTED
} samda_assoc_state;

typedef struct samda_association {
    int64_t id;
    char calling_ae[SAMDA_AE_SIZE], called_ae[SAMDA_AE_SIZE];
    char peer[SAMDA_NAME_SIZE];   /* address:port */
    char site[SAMDA_NAME_SIZE];
    int64_t started_ms, ended_ms; /* ended 0 while open */
    samda_assoc_state state;
    int64_t n_instances;
} samda_association;

/** Record a new association (state OPEN). site may be NULL/"" or must name a site.
 *  @return SAMDA_OK; SAMDA_EINVAL (unknown site, strings too long); SAMDA_EDB. */
samda_status samda_store_assoc_begin(samda_store *s, const char *calling_ae, const char *called_ae,
                                     const char *peer, const char *site, int64_t *id, samda_error *err);
/** End an association as RELEASED, ABORTED or REJECTED. ABORTED also flags its instances with
 *  SAMDA_INSTANCE_FROM_ABORTED_ASSOCIATION. @return SAMDA_OK; SAMDA_ENOENT; SAMDA_EINVAL (already
 *  ended, or state OPEN); SAMDA_EDB. */
samda_status samda_store_assoc_end(samda_store *s, int64_t id, samda_assoc_state state, samda_error *err);
/** @return SAMDA_OK; SAMDA_ENOENT; SAMDA_EDB. */
samda_status samda_store_assoc_get(samda_store *s, int64_t id, samda_association *out, samda_error *err);

/** How a series' instances arrived, for the completion logic: instances in the series, those whose
 *  association is still open, and those flagged as coming over an aborted association. */
typedef struct samda_series_assoc_summary {
    int64_t n_instances;
    int64_t n_from_open;     /* association state 'open' */
    int64_t n_from_aborted;  /* SAMDA_INSTANCE_FROM_ABORTED_ASSOCIATION set */
} samda_series_assoc_summary;
/** Summarise a series' instances by association state.
 *  @return SAMDA_OK (all zero for an unknown series); SAMDA_EBADUID; SAMDA_EDB.
 *  Thread-safety: safe. */
samda_status samda_store_series_assoc_summary(samda_store *s, const char *series_uid,
                                              samda_series_assoc_summary *out, samda_error *err);
/** Mark every association still 'open' as aborted (and flag its instances), as after a crash:
 *  call at start-up, before accepting associations, while no other process serves this store.
 *  @param n OUT (may be NULL): associations changed. @return SAMDA_OK; SAMDA_EDB (nothing changed). */
samda_status samda_store_assoc_abort_stale(samda_store *s, size_t *n, samda_error *err);
/** Mark as aborted (and flag their instances) the open associations of other nodes whose last
 *  heartbeat (samda_store_node_beat) is before beat_before_ms: a node that died holding them will
 *  never end them. For the cluster's leader. @param n OUT (may be NULL): associations changed.
 *  @return SAMDA_OK; SAMDA_EINVAL (beat_before_ms <= 0); SAMDA_EDB. Thread-safety: safe. */
samda_status samda_store_assoc_abort_dead(samda_store *s, int64_t beat_before_ms, size_t *n, samda_error *err);

/* ---------------------------------------------------------------------------------------------- */
/* Cluster nodes                                                                                   */

#define SAMDA_NODE_NAME_SIZE 65
#define SAMDA_NODE_ROLES_SIZE 64

/** True for a node name: 1..64 characters of [A-Za-z0-9._-]. */
bool samda_node_name_is_valid(const char *name);

typedef struct samda_node_info {
    char name[SAMDA_NODE_NAME_SIZE];
    char roles[SAMDA_NODE_ROLES_SIZE]; /* comma-separated: ingest, worker, export, api */
    char version[32];
    int64_t pid;
    int64_t started_ms, heartbeat_ms;
    bool leader;                       /* held the leader lock at its last heartbeat */
} samda_node_info;

/** Record this node's heartbeat: me->name must be the store's node (params.node); its row is created
 *  on the first beat; heartbeat_ms is the store's clock now (me->heartbeat_ms is not read).
 *  @return SAMDA_OK; SAMDA_EINVAL (no node name, or not the store's); SAMDA_EDB. Thread-safety: safe. */
samda_status samda_store_node_beat(samda_store *s, const samda_node_info *me, samda_error *err);
/** Every node that ever beat, by name. *out (free with samda_store_free) and *n belong to the caller.
 *  @return SAMDA_OK; SAMDA_ENOMEM; SAMDA_EDB. Thread-safety: safe. */
samda_status samda_store_node_list(samda_store *s, samda_node_info **out, size_t *n, samda_error *err);
/** Whether this store is the cluster's leader, taking the lead when no one holds it. PostgreSQL: a
 *  session advisory lock on a connection of its own, held until the store closes or that connection
 *  is lost (a dead node's lock is released by the server with its session); SQLite: always true (one
 *  samdad per data directory). @return SAMDA_OK (*leader set; false also when the server cannot be
 *  reached, which err then explains); SAMDA_EDB. Thread-safety: call from one thread. */
samda_status samda_store_leader_try(samda_store *s, bool *leader, samda_error *err);

/** Jobs by samda_job_state and export items by samda_export_state, counted. */
typedef struct samda_queue_depths {
    int64_t jobs[5];
    int64_t exports[4];
} samda_queue_depths;
/** Count the job queue and the export queue by state (the cluster view). @return SAMDA_OK; SAMDA_EDB.
 *  Thread-safety: safe. */
samda_status samda_store_queue_depths(samda_store *s, samda_queue_depths *out, samda_error *err);

/* ---------------------------------------------------------------------------------------------- */
/* Job queue                                                                                      */

typedef enum samda_job_state {
    SAMDA_JOB_PENDING = 0, SAMDA_JOB_RUNNING, SAMDA_JOB_DONE, SAMDA_JOB_FAILED, SAMDA_JOB_CANCELLED
} samda_job_state;

/** Name of a job state ("pending"...); "unknown" out of range. Static string. */
const char *samda_job_state_name(samda_job_state st);

typedef struct samda_job_spec {
    const char *kind;            /* required, e.g. "segment", "train"; < SAMDA_KEY_SIZE */
    int priority;                /* higher runs first */
    const char *site;            /* NULL or a site name */
    const char *study_uid;       /* NULL or a valid UID */
    const char *series_uid;      /* NULL or a valid UID */
    const char *params_json;     /* NULL or JSON text */
    const char *idempotency_key; /* NULL, or unique: a second enqueue returns the first job */
    const char *content_hash;    /* NULL, or digest of the input: same kind + series + hash returns the
                                    existing job unless that one was cancelled */
    int max_attempts;            /* <= 0: params.job_max_attempts */
} samda_job_spec;

/** A job row. Ownership: the three JSON/text pointers are owned by the struct; release with
 *  samda_job_clear (single) or samda_job_list_free (arrays). */
typedef struct samda_job {
    int64_t id;
    char kind[SAMDA_KEY_SIZE];
    samda_job_state state;
    int priority;
    char site[SAMDA_NAME_SIZE];
    char study_uid[SAMDA_UID_SIZE], series_uid[SAMDA_UID_SIZE];
    char *params_json;   /* NULL if none */
    char *result_json;   /* NULL if none */
    char *error;         /* last error, NULL if none */
    int attempts, max_attempts;
    char lease_owner[SAMDA_KEY_SIZE];
    int64_t lease_expires_ms;
    double progress;     /* 0..1 */
    char progress_message[SAMDA_MESSAGE_SIZE];
    char idempotency_key[SAMDA_KEY_SIZE];
    char content_hash[SAMDA_KEY_SIZE];
    int64_t created_ms, updated_ms, finished_ms;
} samda_job;

/** Free the members of job (not job itself) and zero it. NULL is a no-op. */
void samda_job_clear(samda_job *job);
/** Free an array of n jobs returned by samda_store_job_list. NULL is a no-op. */
void samda_job_list_free(samda_job *jobs, size_t n);

/** Add a job (state PENDING), or find the one it duplicates (idempotency key; or kind + series +
 *  content hash). A job with a content hash and no idempotency key whose series already has such a
 *  job still PENDING (same kind and parameters) with another hash updates that job instead (its hash
 *  becomes the new one, its priority the higher of the two): the waiting job reads the series when
 *  it runs, so a second one would do the same work twice. Appends a change-feed row for a new job
 *  (SAMDA_CHANGE_NEW) or an updated one (SAMDA_CHANGE_UPDATED).
 *  @param id OUT: the job id. @param existed OUT (may be NULL): true when an existing job was returned
 *  (a duplicate, or the pending job updated to the new content).
 *  @return SAMDA_OK; SAMDA_EINVAL (no kind, string too long, unknown site); SAMDA_EBADUID; SAMDA_EDB. */
samda_status samda_store_job_enqueue(samda_store *s, const samda_job_spec *spec, int64_t *id, bool *existed,
                                     samda_error *err);

/** Take the next job: first every RUNNING job whose lease expired goes back to PENDING (or FAILED once
 *  it used all attempts), then the PENDING job with the highest priority (at least min_priority:
 *  INT_MIN takes any; the worker raises it while off-peak work must wait), oldest first, becomes
 *  RUNNING with lease_owner = owner and lease_expires = now + lease_ms, attempts + 1; all in one
 *  transaction.
 *  @param kind  IN: NULL = any kind, else only jobs of this kind.
 *  @param job   OUT: the claimed job when *found (caller clears it with samda_job_clear).
 *  @param found OUT: false when no job is due.
 *  @return SAMDA_OK; SAMDA_EINVAL (owner empty, lease_ms <= 0); SAMDA_EDB (nothing changed). */
samda_status samda_store_job_claim(samda_store *s, const char *owner, int64_t lease_ms, const char *kind,
                                   int min_priority, samda_job *job, bool *found, samda_error *err);

/** Return expired leases to the queue as samda_store_job_claim does. @param n_requeued, n_failed OUT
 *  (may be NULL). @return SAMDA_OK; SAMDA_EDB. */
samda_status samda_store_job_reclaim_expired(samda_store *s, size_t *n_requeued, size_t *n_failed,
                                             samda_error *err);

/** Return every RUNNING job whose lease owner starts with owner_prefix (NULL or "": every running job)
 *  to the queue (or FAIL it when out of attempts), whatever its lease: for a daemon starting up, which
 *  holds the data-dir lock (a cluster node: its node's lock, and its owners start "NODE:"), every such
 *  job belongs to a process that died or stopped. The interrupted attempt counts.
 *  @return as samda_store_job_reclaim_expired; SAMDA_EINVAL (prefix too long). */
samda_status samda_store_job_reclaim_all(samda_store *s, const char *owner_prefix, size_t *n_requeued,
                                         size_t *n_failed, samda_error *err);

/** Extend the lease of a running job to now + lease_ms.
 *  @return SAMDA_OK; SAMDA_ECANCELED (the job was cancelled: stop working on it); SAMDA_ELOCKED (not
 *          running under owner: the lease was lost, stop); SAMDA_ENOENT; SAMDA_EDB. */
samda_status samda_store_job_heartbeat(samda_store *s, int64_t id, const char *owner, int64_t lease_ms,
                                       samda_error *err);
/** Record progress (clamped to 0..1) and a message (may be NULL); also extends nothing.
 *  @return as samda_store_job_heartbeat. */
samda_status samda_store_job_progress(samda_store *s, int64_t id, const char *owner, double progress,
                                      const char *message, samda_error *err);
/** Finish a running job as DONE with result_json (may be NULL); progress becomes 1.
 *  @return as samda_store_job_heartbeat; SAMDA_EINVAL (result too large). */
samda_status samda_store_job_complete(samda_store *s, int64_t id, const char *owner, const char *result_json,
                                      samda_error *err);
/** Record a failed attempt: PENDING again if attempts < max_attempts (and permanent is false), else
 *  FAILED. @param requeued OUT (may be NULL). @return as samda_store_job_heartbeat. */
samda_status samda_store_job_fail(samda_store *s, int64_t id, const char *owner, const char *error,
                                  bool permanent, bool *requeued, samda_error *err);
/** Cancel a PENDING or RUNNING job (a running worker learns it at its next heartbeat).
 *  @return SAMDA_OK; SAMDA_ENOENT; SAMDA_EINVAL (already finished); SAMDA_EDB. */
samda_status samda_store_job_cancel(samda_store *s, int64_t id, samda_error *err);
/** Put a FAILED or CANCELLED job back to PENDING with attempts 0 and no error.
 *  @return SAMDA_OK; SAMDA_ENOENT; SAMDA_EINVAL (not failed or cancelled); SAMDA_EDB. */
samda_status samda_store_job_retry(samda_store *s, int64_t id, samda_error *err);
/** @return SAMDA_OK (clear job after use); SAMDA_ENOENT; SAMDA_ENOMEM; SAMDA_EDB. */
samda_status samda_store_job_get(samda_store *s, int64_t id, samda_job *job, samda_error *err);

typedef struct samda_job_filter {
    int state;              /* a samda_job_state, or -1 for any */
    const char *kind;       /* NULL = any */
    const char *site;       /* NULL = any */
    const char *series_uid; /* NULL = any */
    size_t limit;           /* 0 = 1000 */
    size_t offset;
} samda_job_filter;
/** Jobs matching f (NULL = all), newest first. @param jobs OUT: free with samda_job_list_free.
 *  @return SAMDA_OK; SAMDA_ENOMEM; SAMDA_EDB. */
samda_status samda_store_job_list(samda_store *s, const samda_job_filter *f, samda_job **jobs, size_t *n,
                                  samda_error *err);

/* Results ---------------------------------------------------------------------------------------- */

typedef struct samda_result_spec {
    int64_t job_id;            /* 0 = none */
    const char *series_uid;    /* required: the source series */
    const char *seg_series_uid;/* required: the SEG's series */
    const char *seg_sop_uid;   /* required */
    const samda_object_info *object; /* required: committed with SAMDA_OBJECT_SEG */
    const char *model_version; /* NULL or text */
    int adapter_version;       /* 0 = none */
    const char *timings_json;  /* NULL or JSON */
    const char *label_stats_json;
    const struct samda_result_object_spec *objects; /* NULL or n_objects objects made beside the SEG
                                  (RT Structure Set, SR), recorded in the same transaction
                                  (their result_id is ignored) */
    size_t n_objects;
} samda_result_spec;

/** A result row. Ownership: JSON pointers owned; release with samda_result_clear / _list_free. */
typedef struct samda_result {
    int64_t id, job_id;
    char series_uid[SAMDA_UID_SIZE], seg_series_uid[SAMDA_UID_SIZE], seg_sop_uid[SAMDA_UID_SIZE];
    samda_object_info object;
    char model_version[SAMDA_KEY_SIZE];
    int adapter_version;
    char *timings_json, *label_stats_json;
    int64_t created_ms;
} samda_result;

void samda_result_clear(samda_result *r);
void samda_result_list_free(samda_result *r, size_t n);
/** Record a result whose SEG object is already committed (and the objects beside it, spec->objects:
 *  all or nothing), and append a change-feed row. Neither is indexed as an instance of its study
 *  (samda_store_result_ingest does both; samdad uses it).
 *  @return SAMDA_OK; SAMDA_EBADUID; SAMDA_EINVAL (missing field, unknown job, an object's spec as
 *  samda_store_result_object_add checks it); SAMDA_EEXIST (seg SOP UID, or an object's, already
 *  recorded); SAMDA_EDB. */
samda_status samda_store_result_add(samda_store *s, const samda_result_spec *spec, int64_t *id,
                                    samda_error *err);
/** Store a DICOM-SEG a job produced and record it as a result AND as an instance of its study, in
 *  its own series (the SEG's): the file is committed as SAMDA_OBJECT_SEG, then one transaction
 *  indexes the instance as samda_store_instance_ingest does (patient, study, series, instance and
 *  change-feed rows), flagged SAMDA_INSTANCE_RESULT (its series is created complete, so the
 *  completion timers never queue a job for it, and the study's last receive time is not moved),
 *  and inserts the results row with its change-feed row; each of spec->objects (committed by the
 *  caller, each with its meta) is indexed the same way (its own series, SAMDA_INSTANCE_RESULT) and
 *  recorded beside the result. A reader sees all or nothing; a crash after the files leaves them to
 *  the next open's recovery.
 *  @param tmp  INOUT: the written SEG; always consumed.
 *  @param meta IN: the SEG's header (samda_store_instance_ingest's requirements); its series and
 *              SOP UIDs must be spec's seg_series_uid and seg_sop_uid; flags gain SAMDA_INSTANCE_RESULT.
 *  @param spec IN: as for samda_store_result_add; spec->object is not read (the commit fills it).
 *  @param res  OUT: the instance's ids and file (may be NULL). @param id OUT: the result (may be NULL).
 *  @return SAMDA_OK; SAMDA_EBADUID; SAMDA_EINVAL (meta and spec disagree, unknown job or site);
 *          SAMDA_EEXIST (the SOP Instance UID is already indexed or recorded); SAMDA_ECONFLICT (as
 *          samda_store_instance_ingest: the SEG names another patient than its study); SAMDA_ENOSPC;
 *          SAMDA_EIO; SAMDA_EDB. On failure nothing is indexed or recorded and no file remains (the
 *          objects' files are removed too; those of a spec refused before the transaction are left
 *          to the next open's recovery, as every unclaimed object is).
 *  Thread-safety: safe. */
samda_status samda_store_result_ingest(samda_store *s, samda_tmp_file *tmp, const samda_instance_meta *meta,
                                       const samda_result_spec *spec, samda_ingest_result *res, int64_t *id,
                                       samda_error *err);
/** @return SAMDA_OK; SAMDA_ENOENT; SAMDA_EDB. */
samda_status samda_store_result_get(samda_store *s, int64_t id, samda_result *out, samda_error *err);
/** Results of a source series, newest first. Free with samda_result_list_free. */
samda_status samda_store_result_list(samda_store *s, const char *series_uid, samda_result **rows, size_t *n,
                                     samda_error *err);

/* Objects beside a result's DICOM-SEG (storage/result_objects.c): an RT Structure Set or a
 * Measurement Report SR made from the same masks, committed with SAMDA_OBJECT_SEG (seg/<study>/
 * <its series>/<its SOP>.dcm). Recording one claims its file, as samda_store_result_add does. */

typedef struct samda_result_object_spec { /* also samda_result_spec.objects */
    int64_t result_id;               /* required: the result whose masks it shows */
    const char *kind;                /* required: "rtstruct" or "sr" */
    const char *series_uid;          /* required: its series */
    const char *sop_uid;             /* required: its SOP instance */
    const samda_object_info *object; /* required: committed with SAMDA_OBJECT_SEG */
    const samda_instance_meta *meta; /* samda_store_result_ingest: required, its header, to index it as
                                        an instance of its study (series and SOP UIDs as above);
                                        samda_store_result_add and _object_add ignore it */
} samda_result_object_spec;

typedef struct samda_result_object {
    int64_t id, result_id;
    char kind[16];
    char series_uid[SAMDA_UID_SIZE], sop_uid[SAMDA_UID_SIZE];
    samda_object_info object;
    int64_t created_ms;
} samda_result_object;

/** Record an object beside a result. @return SAMDA_OK; SAMDA_EBADUID; SAMDA_EINVAL (missing field,
 *  unknown kind or result, object not under seg/); SAMDA_EEXIST (SOP UID or file already recorded,
 *  or the result already has one of this kind); SAMDA_EDB. Thread-safe. */
samda_status samda_store_result_object_add(samda_store *s, const samda_result_object_spec *spec, int64_t *id,
                                           samda_error *err);
/** The objects beside a result, oldest first. @param rows OUT: free with samda_store_free.
 *  @return SAMDA_OK; SAMDA_ENOMEM; SAMDA_EDB. Thread-safe. */
samda_status samda_store_result_object_list(samda_store *s, int64_t result_id, samda_result_object **rows,
                                            size_t *n, samda_error *err);

/* ---------------------------------------------------------------------------------------------- */
/* Deletion and retention (purge.c)                                                                */

/** What a deletion removed (accumulated by the calls below). */
typedef struct samda_purge_report {
    size_t n_series, n_instances, n_results;
    uint64_t bytes; /* file bytes of the removed objects */
} samda_purge_report;

/** Delete a series: its instances, the results whose DICOM-SEG is one of them and their export
 *  items (one transaction, with change-feed rows "series"/"study" deleted); its pending jobs are
 *  cancelled; its study and patient go too when left empty. Results made FROM the series (SEGs in
 *  other series) stay. The files are unlinked after commit; a crash in between leaves them to the
 *  next open's recovery. @param rep OUT: accumulated, may be NULL.
 *  @return SAMDA_OK; SAMDA_EBADUID; SAMDA_ENOENT; SAMDA_EBUSY (a job runs on it, or one of its files
 *  is being sent; nothing changed); SAMDA_ENOMEM; SAMDA_EDB. Thread-safety: safe. */
samda_status samda_store_series_delete(samda_store *s, const char *series_uid, samda_purge_report *rep,
                                       samda_error *err);
/** Delete every series of a study as samda_store_series_delete does, all or nothing. Same returns. */
samda_status samda_store_study_delete(samda_store *s, const char *study_uid, samda_purge_report *rep,
                                      samda_error *err);

typedef enum samda_retention_kind {
    SAMDA_RETAIN_SOURCE = 0, /* source series whose results were all delivered */
    SAMDA_RETAIN_RESULTS     /* result SEG series, once delivered (or with nothing to deliver) */
} samda_retention_kind;
/** Series of a site a retention policy may delete, oldest first: SOURCE: received series (no
 *  result among their instances) with at least one result, every export item of every result (and
 *  of the RTSTRUCT and SR beside it) done,
 *  the last delivered before before_ms; RESULTS: result SEG series made before before_ms whose
 *  export items are all done. @param uids OUT: n UIDs, free with samda_store_free.
 *  @return SAMDA_OK; SAMDA_ENOENT (invalid site name); SAMDA_ENOMEM; SAMDA_EDB. Thread-safe. */
samda_status samda_store_retention_due(samda_store *s, const char *site, samda_retention_kind kind, int64_t before_ms,
                                       size_t limit, char (**uids)[SAMDA_UID_SIZE], size_t *n, samda_error *err);
/** Bytes of every stored object the index claims (instances, results, adapters; a file once).
 *  @return SAMDA_OK; SAMDA_EDB. Thread-safe. */
samda_status samda_store_bytes(samda_store *s, uint64_t *bytes, samda_error *err);

/* ---------------------------------------------------------------------------------------------- */
/* Export queue                                                                                   */

typedef enum samda_export_state {
    SAMDA_EXPORT_PENDING = 0, SAMDA_EXPORT_SENDING, SAMDA_EXPORT_DONE, SAMDA_EXPORT_FAILED
} samda_export_state;

typedef struct samda_export_item {
    int64_t id, destination_id;
    char relpath[SAMDA_RELPATH_SIZE];
    char sop_uid[SAMDA_UID_SIZE];
    samda_export_state state;
    int attempts;
    int64_t next_attempt_ms;
    char last_error[SAMDA_MESSAGE_SIZE];
    bool permanent;          /* failed for good (refused by the peer) */
    int64_t created_ms, updated_ms;
    int64_t result_id;       /* the result whose DICOM-SEG this item sends, 0 when none; filled by
                              * samda_store_export_find only (0 from the other functions) */
} samda_export_item;

/** Queue an object for a destination (state PENDING, due now).
 *  @return SAMDA_OK; SAMDA_EINVAL (unknown destination, bad relpath); SAMDA_EBADUID; SAMDA_EDB. */
samda_status samda_store_export_enqueue(samda_store *s, int64_t destination_id, const char *relpath,
                                        const char *sop_uid, int64_t *id, samda_error *err);
/** Claim up to max due items (PENDING with next_attempt <= now, or SENDING whose claim is older than
 *  params.export_lease_ms), oldest first, for one destination (0 = any); they become SENDING.
 *  @param items OUT: free with samda_store_free. @return SAMDA_OK; SAMDA_EINVAL; SAMDA_EDB. */
samda_status samda_store_export_claim(samda_store *s, int64_t destination_id, size_t max,
                                      samda_export_item **items, size_t *n, samda_error *err);
/** Mark a claimed item DONE. @return SAMDA_OK; SAMDA_ENOENT; SAMDA_EINVAL (not SENDING); SAMDA_EDB. */
samda_status samda_store_export_done(samda_store *s, int64_t id, samda_error *err);
/** Record a failed send. Transient: attempts + 1 and PENDING again after
 *  min(base * 2^(attempts-1), max) minutes, or FAILED when attempts reach export_max_attempts.
 *  Permanent: FAILED with permanent = true.
 *  @param next_attempt_ms OUT (may be NULL): when it is due again, 0 if failed.
 *  @return SAMDA_OK; SAMDA_ENOENT; SAMDA_EINVAL (not SENDING); SAMDA_EDB. */
samda_status samda_store_export_fail(samda_store *s, int64_t id, const char *error, bool permanent,
                                     int64_t *next_attempt_ms, samda_error *err);
/** Manual retry: a FAILED (or PENDING waiting) item becomes PENDING, due now, attempts 0.
 *  @return SAMDA_OK; SAMDA_ENOENT; SAMDA_EINVAL (DONE or SENDING); SAMDA_EDB. */
samda_status samda_store_export_retry(samda_store *s, int64_t id, samda_error *err);
/** @return SAMDA_OK; SAMDA_ENOENT; SAMDA_EDB. */
samda_status samda_store_export_get(samda_store *s, int64_t id, samda_export_item *out, samda_error *err);
/** Items of a destination (0 = any) in a state (-1 = any), newest first; limit 0 = 1000.
 *  @param items OUT: free with samda_store_free. */
samda_status samda_store_export_list(samda_store *s, int64_t destination_id, int state, size_t limit,
                                     samda_export_item **items, size_t *n, samda_error *err);

/** Which items samda_store_export_find returns. Zero-initialise, then set what you filter on. */
typedef struct samda_export_filter {
    int64_t id;              /* 0 = any; else only that item */
    int64_t destination_id;  /* 0 = any destination */
    int state;               /* a samda_export_state, or -1 = any */
    int64_t result_id;       /* 0 = any; else only the items sending that result's DICOM-SEG */
    size_t limit;            /* 0 = 1000; at most 100000 */
    size_t offset;           /* items to skip (newest first) */
} samda_export_filter;
/** Items matching every set member of f, newest first, each with its result_id.
 *  @param items OUT: free with samda_store_free. @return SAMDA_OK (n may be 0); SAMDA_EINVAL (f NULL
 *  or state out of range); SAMDA_ENOMEM; SAMDA_EDB (items NULL, n 0 on failure).
 *  Thread-safety: as every store function. */
samda_status samda_store_export_find(samda_store *s, const samda_export_filter *f, samda_export_item **items,
                                     size_t *n, samda_error *err);

/* ---------------------------------------------------------------------------------------------- */
/* Sites and destinations                                                                         */

/** A site. Ownership: JSON pointers owned; release with samda_site_clear / samda_site_list_free. */
typedef struct samda_site {
    int64_t id;
    char name[SAMDA_NAME_SIZE];
    char *ae_json;        /* AE title mappings, JSON text (NULL = none) */
    char *settings_json;  /* per-site settings, JSON text (NULL = none) */
    int64_t created_ms, updated_ms;
} samda_site;
void samda_site_clear(samda_site *site);
void samda_site_list_free(samda_site *sites, size_t n);

/** True if name is usable for a site or destination: 1..64 of [A-Za-z0-9._-], not starting with '.'. */
bool samda_store_name_is_valid(const char *name);

/** @return SAMDA_OK; SAMDA_EINVAL (bad name, JSON too large); SAMDA_EEXIST; SAMDA_EDB. */
samda_status samda_store_site_add(samda_store *s, const char *name, const char *ae_json,
                                  const char *settings_json, int64_t *id, samda_error *err);
/** Replace a site's AE mappings and settings. @return SAMDA_OK; SAMDA_ENOENT; SAMDA_EINVAL; SAMDA_EDB. */
samda_status samda_store_site_update(samda_store *s, const char *name, const char *ae_json,
                                     const char *settings_json, samda_error *err);
/** @return SAMDA_OK (clear out after use); SAMDA_ENOENT; SAMDA_ENOMEM; SAMDA_EDB. */
samda_status samda_store_site_get(samda_store *s, const char *name, samda_site *out, samda_error *err);
/** All sites by name. Free with samda_site_list_free. */
samda_status samda_store_site_list(samda_store *s, samda_site **sites, size_t *n, samda_error *err);
/** Delete a site that nothing refers to. @return SAMDA_OK; SAMDA_ENOENT; SAMDA_EBUSY (instances,
 *  jobs or adapters still refer to it); SAMDA_EDB. */
samda_status samda_store_site_delete(samda_store *s, const char *name, samda_error *err);

/** A DICOM destination. Ownership: settings_json owned; samda_destination_clear / _list_free. */
typedef struct samda_destination {
    int64_t id;
    char name[SAMDA_NAME_SIZE];
    char ae_title[SAMDA_AE_SIZE];
    char host[256];
    int port;
    char *settings_json;
    int64_t created_ms;
} samda_destination;
void samda_destination_clear(samda_destination *d);
void samda_destination_list_free(samda_destination *d, size_t n);

/** @return SAMDA_OK; SAMDA_EINVAL (bad name, AE, host or port 1..65535); SAMDA_EEXIST; SAMDA_EDB. */
samda_status samda_store_destination_add(samda_store *s, const char *name, const char *ae_title,
                                         const char *host, int port, const char *settings_json, int64_t *id,
                                         samda_error *err);
/** Add or update (same id, export items kept) a destination by name, e.g. from a [destination] section.
 *  @param id OUT (may be NULL). @return as samda_store_destination_add, without SAMDA_EEXIST. */
samda_status samda_store_destination_put(samda_store *s, const char *name, const char *ae_title, const char *host,
                                         int port, const char *settings_json, int64_t *id, samda_error *err);
/** @return SAMDA_OK; SAMDA_ENOENT; SAMDA_ENOMEM; SAMDA_EDB. */
samda_status samda_store_destination_get(samda_store *s, const char *name, samda_destination *out,
                                         samda_error *err);
samda_status samda_store_destination_list(samda_store *s, samda_destination **d, size_t *n, samda_error *err);
/** Delete a destination and its export items. @return SAMDA_OK; SAMDA_ENOENT; SAMDA_EDB. */
samda_status samda_store_destination_delete(samda_store *s, const char *name, samda_error *err);

/* ---------------------------------------------------------------------------------------------- */
/* Adapters (per-site decoder adapter versions)                                                   */

typedef struct samda_adapter_row {
    int64_t id;
    char site[SAMDA_NAME_SIZE];
    int version;                 /* 1, 2, ... per site */
    int parent_version;          /* 0 = none */
    samda_object_info object;    /* committed with SAMDA_OBJECT_ADAPTER */
    char base_fingerprint[SAMDA_KEY_SIZE];
    char *metadata_json;         /* owned; NULL if none */
    bool active;
    int64_t created_ms, activated_ms;
} samda_adapter_row;
void samda_adapter_clear(samda_adapter_row *a);
void samda_adapter_list_free(samda_adapter_row *a, size_t n);

/** Reserve the next version number of a site (to name the file before committing it). The number is
 *  only a hint under concurrency: samda_store_adapter_add refuses a version already taken.
 *  @return SAMDA_OK; SAMDA_ENOENT (unknown site); SAMDA_EDB. */
samda_status samda_store_adapter_next_version(samda_store *s, const char *site, int *version,
                                              samda_error *err);
/** Record an adapter version whose file was committed (kind SAMDA_OBJECT_ADAPTER with a = site id,
 *  b = version). Inactive until activated.
 *  @return SAMDA_OK; SAMDA_ENOENT (site); SAMDA_EEXIST (version taken); SAMDA_EINVAL; SAMDA_EDB. */
samda_status samda_store_adapter_add(samda_store *s, const char *site, int version, int parent_version,
                                     const samda_object_info *object, const char *base_fingerprint,
                                     const char *metadata_json, samda_error *err);
/** Site id for object paths. @return SAMDA_OK; SAMDA_ENOENT; SAMDA_EDB. */
samda_status samda_store_site_id(samda_store *s, const char *site, int64_t *id, samda_error *err);
/** Versions of a site, newest first. Free with samda_adapter_list_free. */
samda_status samda_store_adapter_list(samda_store *s, const char *site, samda_adapter_row **a, size_t *n,
                                      samda_error *err);
/** @return SAMDA_OK; SAMDA_ENOENT; SAMDA_EDB. */
samda_status samda_store_adapter_get(samda_store *s, const char *site, int version, samda_adapter_row *out,
                                     samda_error *err);
/** The active version. @return SAMDA_OK; SAMDA_ENOENT (none active); SAMDA_EDB. */
samda_status samda_store_adapter_get_active(samda_store *s, const char *site, samda_adapter_row *out,
                                            samda_error *err);
/** Make version the only active one of its site (one transaction; a unique index enforces it).
 *  @return SAMDA_OK; SAMDA_ENOENT; SAMDA_EDB. */
samda_status samda_store_adapter_activate(samda_store *s, const char *site, int version, samda_error *err);
/** Activate the active version's parent, or if it has none the highest version below it.
 *  @param version OUT (may be NULL): now active.
 *  @return SAMDA_OK; SAMDA_ENOENT (nothing active, or nothing to roll back to); SAMDA_EDB. */
samda_status samda_store_adapter_rollback(samda_store *s, const char *site, int *version, samda_error *err);
/** Deactivate the site's adapter (base model alone). @return SAMDA_OK; SAMDA_EDB. */
samda_status samda_store_adapter_deactivate(samda_store *s, const char *site, samda_error *err);
/** Delete an inactive version and its file. @return SAMDA_OK; SAMDA_ENOENT; SAMDA_EBUSY (active);
 *  SAMDA_EDB. The file is removed after the row; a crash in between leaves an unclaimed file that the
 *  next open removes. */
samda_status samda_store_adapter_delete(samda_store *s, const char *site, int version, samda_error *err);

/* ---------------------------------------------------------------------------------------------- */
/* API tokens                                                                                     */

typedef enum samda_role { SAMDA_ROLE_ADMIN = 0, SAMDA_ROLE_USER, SAMDA_ROLE_INGEST } samda_role;
/** "admin", "user", "ingest"; "unknown" out of range. Static string. */
const char *samda_role_name(samda_role r);

typedef struct samda_token_info {
    int64_t id;
    char name[SAMDA_NAME_SIZE];
    samda_role role;
    int64_t created_ms, revoked_ms; /* revoked 0 = valid */
} samda_token_info;

/** Create a token: a random secret (shown once) whose SHA-256 alone is stored.
 *  @param secret OUT: "samda_" + 64 hex characters; give it to the user, it cannot be recovered.
 *  @return SAMDA_OK; SAMDA_EINVAL (bad name or role); SAMDA_EEXIST (name taken); SAMDA_EIO (no
 *  randomness); SAMDA_EDB. */
samda_status samda_store_token_create(samda_store *s, const char *name, samda_role role,
                                      char secret[SAMDA_TOKEN_SECRET_SIZE], int64_t *id, samda_error *err);
/** Check a presented secret: hash lookup, then constant-time comparison of the hashes.
 *  @param info OUT (may be NULL): the token. @return SAMDA_OK; SAMDA_EAUTH (unknown or revoked: the
 *  message does not say which); SAMDA_EDB. */
samda_status samda_store_token_verify(samda_store *s, const char *secret, samda_token_info *info,
                                      samda_error *err);
/** @return SAMDA_OK; SAMDA_ENOENT; SAMDA_EDB. Revoking twice keeps the first time. */
samda_status samda_store_token_revoke(samda_store *s, int64_t id, samda_error *err);
/** All tokens (never secrets or hashes). @param t OUT: free with samda_store_free. */
samda_status samda_store_token_list(samda_store *s, samda_token_info **t, size_t *n, samda_error *err);

/* ---------------------------------------------------------------------------------------------- */
/* Audit log and change feed                                                                      */

typedef struct samda_audit_entry {
    int64_t id, time_ms;
    char actor[SAMDA_NAME_SIZE];      /* token name, "system", AE title */
    char action[SAMDA_KEY_SIZE];      /* "wado.instance", "adapter.activate"... */
    char resource[SAMDA_MESSAGE_SIZE];/* "series/1.2.3", "adapter/site/4" */
    char outcome[SAMDA_CS_SIZE];      /* "ok", "denied", "error" */
    char *details_json;               /* owned; NULL if none */
} samda_audit_entry;
void samda_audit_list_free(samda_audit_entry *e, size_t n);

/** Append an audit entry (the table refuses UPDATE and DELETE).
 *  @return SAMDA_OK; SAMDA_EINVAL (actor/action/outcome missing or too long); SAMDA_EDB. */
samda_status samda_store_audit_append(samda_store *s, const char *actor, const char *action,
                                      const char *resource, const char *outcome, const char *details_json,
                                      samda_error *err);
/** Entries with id > after_id, oldest first, at most limit (0 = 1000). Free with samda_audit_list_free. */
samda_status samda_store_audit_list(samda_store *s, int64_t after_id, size_t limit, samda_audit_entry **e,
                                    size_t *n, samda_error *err);

typedef enum samda_change_type {
    SAMDA_CHANGE_NEW = 0, SAMDA_CHANGE_UPDATED, SAMDA_CHANGE_DELETED, SAMDA_CHANGE_STATE
} samda_change_type;
/** "new", "updated", "deleted", "state". Static string. */
const char *samda_change_type_name(samda_change_type t);

typedef struct samda_change {
    int64_t seq, time_ms;
    char kind[SAMDA_CS_SIZE];          /* instance, series, study, job, result, adapter */
    char resource[SAMDA_KEY_SIZE];     /* UID or id */
    samda_change_type type;
} samda_change;

/** Append a change (the index, job and result functions do it themselves).
 *  @return SAMDA_OK; SAMDA_EINVAL; SAMDA_EDB. */
samda_status samda_store_change_append(samda_store *s, const char *kind, const char *resource,
                                       samda_change_type type, samda_error *err);
/** Changes with seq > since, in seq order, at most limit (0 = 1000). @param c OUT: free with
 *  samda_store_free. @param last_seq OUT (may be NULL): highest seq in the feed (for "done" checks). */
samda_status samda_store_change_list(samda_store *s, int64_t since, size_t limit, samda_change **c, size_t *n,
                                     int64_t *last_seq, samda_error *err);

#ifdef __cplusplus
}
#endif
#endif
