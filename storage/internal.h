/* storage/internal.h: what the .c files of storage/ share and nothing outside storage/ may use.
 * The store struct, the connection pool, statement cache, transaction and binding helpers, and the
 * cross-file hooks (migrations, crash recovery, change feed, object intents). Never installed. */
#ifndef SAMDA_STORAGE_INTERNAL_H
#define SAMDA_STORAGE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "sql.h"
#include "storage.h"

#define STORAGE_PATH_MAX 4096
#define STORAGE_DATA_DIR_MAX 3000
#define STORAGE_LIST_MAX 100000 /* bound on every list a caller can ask for */

#define STORAGE_CONNINFO_MAX 1024

typedef struct storage_conn {
    sql_conn *q;
    struct storage_conn *next_free;
} storage_conn;

struct samda_store {
    samda_store_params p; /* copy; p.data_dir points at data_dir below */
    char data_dir[STORAGE_DATA_DIR_MAX + 1];
    char db_path[STORAGE_PATH_MAX];
    char objects_dir[STORAGE_PATH_MAX];
    char tmp_dir[STORAGE_PATH_MAX];
    char conninfo[STORAGE_CONNINFO_MAX + 1]; /* p.postgresql points here */
    char node[SAMDA_NODE_NAME_SIZE];         /* p.node points here; "" when none */
    sql_conn *leader_conn;                   /* PostgreSQL: the session holding the leader lock */

    pthread_mutex_t pool_mu;
    pthread_cond_t pool_cv;
    storage_conn *free_list;
    int n_open; /* connections opened (free or lent) */

    /* Serialises write transactions of this process: with BEGIN IMMEDIATE under it, threads never see
     * SQLITE_BUSY from each other (a deferred transaction upgraded to a writer can deadlock and returns
     * BUSY without waiting; taking the lock up front avoids that). */
    pthread_mutex_t write_mu;

    /* Group commit (SAMDA_SYNC_FULL): a transaction commits without SQLite's own WAL fsync, takes a
     * sequence number under write_mu, and waits outside it until one fsync of the WAL covers its
     * number. Threads committing at once share that fsync, instead of each holding write_mu across
     * its own (storage_tx_commit). */
    pthread_mutex_t sync_mu;
    pthread_cond_t sync_cv;
    uint64_t commit_seq;      /* commits whose frames are in the WAL (under write_mu) */
    uint64_t synced_seq;      /* commits known durable */
    bool syncing;             /* a thread is in fsync(WAL) now */
    char wal_path[STORAGE_PATH_MAX];

    /* Shared transactions (storage_tx_shared): the calls waiting to run, and whether a thread is running
     * a batch of them now. */
    pthread_mutex_t batch_mu;
    pthread_cond_t batch_cv;
    struct storage_shared_item *batch_head, **batch_tail;
    bool batch_running;

    samda_fault_fn fault;
    void *fault_ctx;
    atomic_ulong fault_calls[SAMDA_FAULT_POINT_COUNT_];

    /* Retry policy: set at open and by samda_store_set_retries (a reload) while other threads read it. */
    atomic_int job_max_attempts, export_max_attempts;
    _Atomic int64_t export_backoff_base_ms, export_backoff_max_ms;

    size_t tmp_removed, orphans_removed;
    /* data_dir/lock: every open store holds a shared flock; crash recovery runs only when an open can
     * take it exclusively, i.e. no other store (this process or another) is using the directory. */
    int lock_fd;
};

/** Make err non-NULL (a local that is thrown away) so that err->code can be read back. */
#define STORAGE_ERR(err)                                                                             \
    samda_error storage_err_local_;                                                                  \
    if (!(err)) (err) = &storage_err_local_

/* db.c ----------------------------------------------------------------------------------------- */
/** errno to inject at point (0 = run the operation). */
int storage_fault(samda_store *s, samda_fault_point point);
/** Borrow a connection (opens one when none is free and the pool has room, else waits). NULL + err. */
storage_conn *storage_conn_get(samda_store *s, samda_error *err);
/** Give a connection back; resets statements still running. NULL is a no-op. */
void storage_conn_put(samda_store *s, storage_conn *c);
/** A cached prepared statement for sql (a string literal), reset with bindings cleared. NULL + err. */
sql_stmt *storage_stmt(storage_conn *c, const char *sql, samda_error *err);
/** The SQL text for c's engine: lite for SQLite, pg for PostgreSQL (both string literals). */
const char *storage_sql(const storage_conn *c, const char *lite, const char *pg);
/** True when c talks to PostgreSQL. */
bool storage_is_pg(const storage_conn *c);
/** sql_step through the fault hook (an injected fault returns SQL_IOERR). */
int storage_step(samda_store *s, sql_stmt *st);
/** Step a statement that returns no rows to completion, then reset it. SQL_OK or the error code. */
int storage_exec_stmt(samda_store *s, sql_stmt *st);
/** Step an INSERT ... RETURNING id (valid on both engines) to completion, then reset it: SQL_OK with
 *  *id the new row's id (0 when the statement returned no row), or the error code. id may be NULL. */
int storage_exec_insert(samda_store *s, sql_stmt *st, int64_t *id);
/** Take the write lock and BEGIN IMMEDIATE. On failure the lock is released. With SAMDA_SYNC_FULL the
 *  transaction's own commit skips SQLite's fsync; storage_tx_commit makes it durable (group commit). */
samda_status storage_tx_begin(samda_store *s, storage_conn *c, samda_error *err);
/** COMMIT and release the write lock; on failure ROLLBACK, release, and fill err. With SAMDA_SYNC_FULL,
 *  returns once an fsync of the WAL covers the commit (shared with the threads committing at the same
 *  time); a failed fsync of the WAL stops the process (abort), as a crash would (db.c: wait_durable). */
samda_status storage_tx_commit(samda_store *s, storage_conn *c, samda_error *err);
/** ROLLBACK (never fault-injected) and release the write lock. */
void storage_tx_rollback(samda_store *s, storage_conn *c);
/** The writes of one storage_tx_shared call, made on c inside a write transaction: SAMDA_OK, or the
 *  error in err (the transaction is then rolled back). Run again from the start when a batch it was in
 *  is rolled back, so it must only write to the index and to what arg points at. */
typedef samda_status (*storage_tx_fn)(samda_store *s, storage_conn *c, void *arg, samda_error *err);
/** Run fn in a write transaction of its own on a borrowed connection (commit when it returns SAMDA_OK,
 *  else roll back); durable on return like storage_tx_commit's. Thread-safe. */
samda_status storage_tx_run(samda_store *s, storage_tx_fn fn, void *arg, samda_error *err);
/** Run fn in a write transaction, durable on return like storage_tx_commit's. Calls made by several
 *  threads at once share one transaction (group commit of rows, not only of the WAL fsync): one BEGIN,
 *  one COMMIT, each page written once for all of them. When one of a batch fails, the batch is rolled
 *  back and each call runs again in a transaction of its own, so every call sees exactly its own
 *  outcome. A call made alone runs as storage_tx_begin/commit would. Thread-safe. */
samda_status storage_tx_shared(samda_store *s, storage_tx_fn fn, void *arg, samda_error *err);
/** Translate an index failure into err: BUSY/LOCKED -> ELOCKED, FULL -> ENOSPC, else EDB. */
samda_status storage_db_fail(samda_error *err, storage_conn *c, int rc, const char *what);

/** Fills the zeroed row from the statement's current result row. */
typedef void (*storage_row_reader)(sql_stmt *st, void *row);
/** Frees what the rows own (not the array); NULL when rows own nothing. */
typedef void (*storage_rows_clear)(void *rows, size_t n);
/** The one loop that turns a bound SELECT into an array: steps st to the end, appending a zeroed
 *  elem_size row per result filled by read, then resets st. *rows (malloc'd; NULL when empty) and
 *  *n belong to the caller. On failure clears and frees what it collected, leaves *rows NULL and
 *  *n 0, and returns SAMDA_ENOMEM or the database error, naming what. */
samda_status storage_collect(samda_store *s, storage_conn *c, sql_stmt *st, size_t elem_size,
                             storage_row_reader read, storage_rows_clear clear, void **rows, size_t *n,
                             const char *what, samda_error *err);
/** A caller's list limit bounded: 0 means 1000, never more than STORAGE_LIST_MAX. */
size_t storage_list_limit(size_t limit);

/* Binding and reading helpers: "" and NULL bind as NULL; NAN binds as NULL; NULL reads as ""/NAN. */
int storage_bind_text(sql_stmt *st, int i, const char *v);
int storage_bind_double(sql_stmt *st, int i, double v);
int storage_bind_int64_or_null(sql_stmt *st, int i, int64_t v); /* 0 binds NULL */
void storage_col_text(sql_stmt *st, int i, char *dst, size_t size);
char *storage_col_dup(sql_stmt *st, int i); /* NULL for SQL NULL or out of memory */
double storage_col_double(sql_stmt *st, int i);

/** True when v is NULL or shorter than max bytes (a NUL within max). */
bool storage_len_ok(const char *v, size_t max);
/** Validate an optional JSON text field's size (SAMDA_JSON_MAX); fills err with `what`. */
samda_status storage_check_json(const char *v, const char *what, samda_error *err);
/** out = dir + "/" + rel (just dir when rel is ""); "" if it does not fit STORAGE_PATH_MAX. */
void storage_path_join(char out[STORAGE_PATH_MAX], const char *dir, const char *rel);
/** Default clock. */
int64_t storage_realtime_ms(void *ctx);

/* result_objects.c ----------------------------------------------------------------------------- */
/** Check a result object's spec (result_id not looked at). */
samda_status storage_result_object_check(const samda_result_object_spec *spec, samda_error *err);
/** In a write transaction: insert the row for spec under result_id and claim its file. */
samda_status storage_result_object_insert(samda_store *s, storage_conn *c, const samda_result_object_spec *spec,
                                          int64_t result_id, int64_t *id, samda_error *err);
/** As storage_result_object_check, and its meta (required) valid and naming its series and SOP. */
samda_status storage_result_object_check_meta(const samda_result_object_spec *spec, samda_error *err);
/** In a write transaction: index the object as an instance of its study (flagged
 *  SAMDA_INSTANCE_RESULT, its series complete) and insert its row under result_id. */
samda_status storage_result_object_index(samda_store *s, storage_conn *c, const samda_result_object_spec *spec,
                                         int64_t result_id, samda_error *err);

/* migrate.c ------------------------------------------------------------------------------------ */
/** Bring the schema to SAMDA_STORE_SCHEMA_VERSION; refuse a newer one. */
samda_status storage_migrate(samda_store *s, storage_conn *c, samda_error *err);

/* objects.c ------------------------------------------------------------------------------------ */
/** At open: empty tmp/ and remove committed objects no index row claims. */
samda_status storage_recover(samda_store *s, storage_conn *c, samda_error *err);
/** In a write transaction: the object at relpath is now claimed by an index row. */
samda_status storage_intent_claim(samda_store *s, storage_conn *c, const char *relpath, samda_error *err);
/** In a write transaction: relpath is about to be unlinked by the caller after commit (so that a
 *  crash in between lets the next open remove it). */
samda_status storage_intent_add(samda_store *s, storage_conn *c, const char *relpath, samda_error *err);
/** Commit with a revision suffix (rev > 1: "<sop>.r<rev>.dcm"); as samda_store_object_commit. hashed: info
 *  already holds the file's SHA-256 and size (the caller hashed it), so it is not read again. */
samda_status storage_object_commit_rev(samda_store *s, samda_tmp_file *tmp, samda_object_kind kind, const char *a,
                                       const char *b, const char *c, unsigned rev, samda_object_info *info,
                                       bool hashed, samda_error *err);
/** 1 if an index row claims relpath, 0 if none, -1 on error (err filled). */
int storage_relpath_claimed(samda_store *s, storage_conn *c, const char *relpath, samda_error *err);
/** Unlink objects/relpath (best effort) and drop its intent row outside a transaction. */
void storage_object_unlink(samda_store *s, const char *relpath);
/** Hash the fd's whole content (from offset 0). */
samda_status storage_sha256_fd(int fd, char hex[SAMDA_SHA256_HEX_SIZE], uint64_t *size, samda_error *err);
/* Whether the open file fd holds what obj records (size and SHA-256): SAMDA_OK; SAMDA_EIO naming
 * obj->relpath and both hashes when it differs or cannot be read. */
samda_status storage_object_verify_fd(int fd, const samda_object_info *obj, samda_error *err);
/** Lower-case hex SHA-256 of a buffer. */
void storage_sha256_hex(const void *buf, size_t len, char hex[SAMDA_SHA256_HEX_SIZE]);

/* audit.c -------------------------------------------------------------------------------------- */
/** In a write transaction: append a change-feed row. */
samda_status storage_change_add(samda_store *s, storage_conn *c, const char *kind, const char *resource,
                                samda_change_type type, samda_error *err);

/* index.c -------------------------------------------------------------------------------------- */

/** Index meta + an already committed object on c, inside the caller's write transaction: patient,
 *  study, series and instance rows, the association count, the change-feed rows and the object's
 *  intent claimed (the one indexing path: received instances and results alike). replace: an
 *  indexed copy is updated (never one flagged SAMDA_INSTANCE_RESULT). old_relpath gets the replaced
 *  file's path, to unlink after commit; "" on failure and when nothing was replaced. meta must have
 *  passed validation (samda_store_instance_insert's). */
samda_status storage_index_instance(samda_store *s, storage_conn *c, const samda_instance_meta *m,
                                    const samda_object_info *o, bool replace, samda_ingest_result *res,
                                    char old_relpath[SAMDA_RELPATH_SIZE], samda_error *err);
/** Check an instance description before indexing (text fields terminated, UIDs valid, date). */
samda_status storage_validate_meta(const samda_instance_meta *m, samda_error *err);

/* index_query.c -------------------------------------------------------------------------------- */
/** Position of v in names[0..n) (a state column read back); 0 when v is NULL or not listed. */
int storage_name_index(const char *const *names, int n, const char *v);

/* sites.c -------------------------------------------------------------------------------------- */
/** Site id by name on c; SAMDA_ENOENT when unknown (message names what). */
samda_status storage_site_lookup(samda_store *s, storage_conn *c, const char *name, int64_t *id,
                                 samda_error *err);

#endif
