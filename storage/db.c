/* storage/db.c: opening and closing a store: the data directory, SQLite connections (a small pool,
 * pragmas, busy timeout), the statement cache, transactions and the fault hook. Schema creation is
 * migrate.c's; crash recovery is objects.c's. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

void samda_store_params_init(samda_store_params *p)
{
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->busy_timeout_ms = 5000;
    /* FULL by default: in WAL mode NORMAL skips the fsync at each commit, so a power loss may undo
     * commits that samda already acknowledged to a PACS (C-STORE success) and the PACS will not
     * send those instances again. FULL keeps "acknowledged means durable" at one WAL fsync per
     * commit. NORMAL remains safe against process crashes (kill -9) and is offered for sites that
     * prefer throughput. */
    p->sync = SAMDA_SYNC_FULL;
    p->max_connections = 16;
    p->export_backoff_base_ms = 60000;
    p->export_backoff_max_ms = 3600000;
    p->export_max_attempts = 10;
    p->export_lease_ms = 600000;
    p->job_max_attempts = 3;
}

void samda_store_set_retries(samda_store *s, int job_max_attempts, int export_max_attempts,
                             int64_t export_backoff_base_ms, int64_t export_backoff_max_ms)
{
    if (!s) return;
    if (job_max_attempts > 0) atomic_store(&s->job_max_attempts, job_max_attempts);
    if (export_max_attempts > 0) atomic_store(&s->export_max_attempts, export_max_attempts);
    if (export_backoff_base_ms > 0) atomic_store(&s->export_backoff_base_ms, export_backoff_base_ms);
    if (export_backoff_max_ms > 0) atomic_store(&s->export_backoff_max_ms, export_backoff_max_ms);
}

int64_t storage_realtime_ms(void *ctx)
{
    (void)ctx;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t samda_store_now_ms(const samda_store *s) { return s->p.clock(s->p.clock_ctx); }
size_t samda_store_tmp_removed(const samda_store *s) { return s ? s->tmp_removed : 0; }
size_t samda_store_orphans_removed(const samda_store *s) { return s ? s->orphans_removed : 0; }
const char *samda_store_data_dir(const samda_store *s) { return s->data_dir; }

samda_status samda_store_index_version(samda_store *s, char *out, size_t size, samda_error *err)
{
    STORAGE_ERR(err);
    if (size) out[0] = '\0';
    storage_conn *c = storage_conn_get(s, err); /* on PostgreSQL a connection opens only if the server answers */
    if (!c) return err->code;
    sql_version(c->q, out, size);
    storage_conn_put(s, c);
    return SAMDA_OK;
}
void samda_store_free(void *p) { free(p); }

bool storage_len_ok(const char *v, size_t max) { return !v || strnlen(v, max) < max; }

samda_status storage_check_json(const char *v, const char *what, samda_error *err)
{
    if (!storage_len_ok(v, SAMDA_JSON_MAX + 1))
        return samda_fail(err, SAMDA_EINVAL, "storing %s: JSON text longer than %d bytes", what, SAMDA_JSON_MAX);
    return SAMDA_OK;
}

void storage_path_join(char out[STORAGE_PATH_MAX], const char *dir, const char *rel)
{
    int w = snprintf(out, STORAGE_PATH_MAX, "%s%s%s", dir, *rel ? "/" : "", rel);
    if (w < 0 || w >= STORAGE_PATH_MAX) out[0] = '\0';
}

/* Binding and reading ------------------------------------------------------------------------- */

int storage_bind_text(sql_stmt *st, int i, const char *v) { return sql_bind_text(st, i, v && *v ? v : NULL); }

int storage_bind_double(sql_stmt *st, int i, double v)
{
    if (isnan(v)) return sql_bind_null(st, i);
    return sql_bind_double(st, i, v);
}

int storage_bind_int64_or_null(sql_stmt *st, int i, int64_t v)
{
    if (v == 0) return sql_bind_null(st, i);
    return sql_bind_int64(st, i, v);
}

void storage_col_text(sql_stmt *st, int i, char *dst, size_t size)
{
    const char *t = sql_col_text(st, i);
    if (!t || size == 0) {
        if (size) dst[0] = '\0';
        return;
    }
    size_t n = sql_col_bytes(st, i);
    if (n >= size) n = size - 1; /* bounded by the schema's CHECKs; truncation only guards memory */
    memcpy(dst, t, n);
    dst[n] = '\0';
}

char *storage_col_dup(sql_stmt *st, int i)
{
    const char *t = sql_col_text(st, i);
    if (!t) return NULL;
    size_t n = sql_col_bytes(st, i);
    char *r = malloc(n + 1);
    if (!r) return NULL;
    memcpy(r, t, n);
    r[n] = '\0';
    return r;
}

double storage_col_double(sql_stmt *st, int i)
{
    if (sql_col_null(st, i)) return NAN;
    return sql_col_double(st, i);
}

/* Connections ---------------------------------------------------------------------------------- */

samda_status storage_db_fail(samda_error *err, storage_conn *c, int rc, const char *what)
{
    const char *msg = c && c->q ? sql_errmsg(c->q) : "";
    if (rc == SQL_IOERR && (!msg || !*msg || (c && c->q && sql_engine_of(c->q) == SQL_SQLITE && !strstr(msg, "I/O"))))
        msg = "I/O error (injected or from the OS)";
    switch (rc & 0xff) {
    case SQL_BUSY:
    case SQL_LOCKED:
        return samda_fail(err, SAMDA_ELOCKED, "%s: index locked by another process: %s (raise [storage] busy_timeout)",
                          what, msg);
    case SQL_FULL:
        return samda_fail(err, SAMDA_ENOSPC, "%s: disk full: %s", what, msg);
    default:
        return samda_fail(err, SAMDA_EDB, "%s: %s", what, msg);
    }
}

samda_status storage_collect(samda_store *s, storage_conn *c, sql_stmt *st, size_t elem_size,
                             storage_row_reader read, storage_rows_clear clear, void **rows, size_t *n,
                             const char *what, samda_error *err)
{
    *rows = NULL;
    *n = 0;
    size_t cap = 0, got = 0;
    char *buf = NULL;
    samda_status res = SAMDA_OK;
    int rc;
    while ((rc = storage_step(s, st)) == SQL_ROW) {
        if (got == cap) {
            size_t nc = cap ? cap * 2 : 16;
            char *nb = realloc(buf, nc * elem_size);
            if (!nb) {
                res = samda_fail(err, SAMDA_ENOMEM, "%s: out of memory", what);
                break;
            }
            buf = nb;
            cap = nc;
        }
        memset(buf + got * elem_size, 0, elem_size);
        read(st, buf + got * elem_size);
        got++;
    }
    sql_reset(st);
    if (res == SAMDA_OK && rc != SQL_DONE) res = storage_db_fail(err, c, rc, what);
    if (res != SAMDA_OK) {
        if (clear && buf) clear(buf, got);
        free(buf);
        return res;
    }
    *rows = buf;
    *n = got;
    return SAMDA_OK;
}

size_t storage_list_limit(size_t limit)
{
    if (limit == 0) return 1000;
    return limit > STORAGE_LIST_MAX ? STORAGE_LIST_MAX : limit;
}

static void conn_close(storage_conn *c)
{
    if (!c) return;
    sql_close(c->q);
    free(c);
}

static storage_conn *conn_open(samda_store *s, samda_error *err)
{
    storage_conn *c = calloc(1, sizeof *c);
    if (!c) {
        samda_fail(err, SAMDA_ENOMEM, "opening index connection: out of memory");
        return NULL;
    }
    if (s->p.index == SAMDA_INDEX_POSTGRESQL) c->q = sql_open_pg(s->conninfo, s->p.busy_timeout_ms, err);
    else c->q = sql_open_sqlite(s->db_path, s->p.busy_timeout_ms, err);
    if (!c->q) {
        free(c);
        return NULL;
    }
    return c;
}

storage_conn *storage_conn_get(samda_store *s, samda_error *err)
{
    pthread_mutex_lock(&s->pool_mu);
    for (;;) {
        if (s->free_list) {
            storage_conn *c = s->free_list;
            s->free_list = c->next_free;
            pthread_mutex_unlock(&s->pool_mu);
            return c;
        }
        if (s->n_open < s->p.max_connections) {
            s->n_open++;
            pthread_mutex_unlock(&s->pool_mu);
            storage_conn *c = conn_open(s, err);
            if (!c) {
                pthread_mutex_lock(&s->pool_mu);
                s->n_open--;
                pthread_cond_signal(&s->pool_cv);
                pthread_mutex_unlock(&s->pool_mu);
            }
            return c;
        }
        pthread_cond_wait(&s->pool_cv, &s->pool_mu);
    }
}

void storage_conn_put(samda_store *s, storage_conn *c)
{
    if (!c) return;
    sql_release(c->q);
    pthread_mutex_lock(&s->pool_mu);
    c->next_free = s->free_list;
    s->free_list = c;
    pthread_cond_signal(&s->pool_cv);
    pthread_mutex_unlock(&s->pool_mu);
}

sql_stmt *storage_stmt(storage_conn *c, const char *sql, samda_error *err) { return sql_stmt_get(c->q, sql, err); }

bool storage_is_pg(const storage_conn *c) { return sql_engine_of(c->q) == SQL_POSTGRESQL; }

const char *storage_sql(const storage_conn *c, const char *lite, const char *pg) { return storage_is_pg(c) ? pg : lite; }

int storage_step(samda_store *s, sql_stmt *st)
{
    if (storage_fault(s, SAMDA_FAULT_DB_STEP)) return SQL_IOERR;
    return sql_step(st);
}

int storage_exec_stmt(samda_store *s, sql_stmt *st)
{
    int rc;
    do rc = storage_step(s, st);
    while (rc == SQL_ROW);
    sql_reset(st);
    return rc == SQL_DONE ? SQL_OK : rc;
}

int storage_exec_insert(samda_store *s, sql_stmt *st, int64_t *id)
{
    int64_t got = 0;
    int rc = storage_step(s, st); /* the one step that writes (a fault point, as any statement's) */
    if (rc == SQL_ROW) {
        got = sql_col_int64(st, 0);
        do rc = sql_step(st); /* the rest of RETURNING's rows: nothing is written any more */
        while (rc == SQL_ROW);
    }
    sql_reset(st);
    if (rc != SQL_DONE) return rc;
    if (id) *id = got;
    return SQL_OK;
}

/* A statement without parameters or rows (BEGIN, COMMIT, a PRAGMA): SQL_OK or the error code. */
static int exec_sql(samda_store *s, storage_conn *c, const char *sql, bool faultable)
{
    if (faultable && storage_fault(s, SAMDA_FAULT_DB_STEP)) return SQL_IOERR;
    return sql_exec(c->q, sql);
}

/* With synchronous=FULL asked of an SQLite index, its connections run at NORMAL (sql_open_sqlite)
 * and every transaction of storage_tx_begin is made durable by one shared fsync of the WAL after its
 * commit (wait_durable). The one write outside a transaction, dropping an intent (objects.c), needs no
 * durability of its own: an intent left behind is checked again at the next open. */
static bool group_commit(const samda_store *s) { return s->p.sync == SAMDA_SYNC_FULL && s->p.index == SAMDA_INDEX_SQLITE; }

/* PostgreSQL: every write transaction of every node takes this transaction-scoped advisory lock first,
 * so that writers across the cluster are serialised as SQLite serialises them (the read-then-write
 * steps of storage/ rely on it, and the change feed's seq then grows in commit order). Readers never
 * take it. The transaction commits without waiting for its WAL flush, so that the lock is not held
 * across an fsync; storage_tx_commit then waits for the flush outside the lock (pg_durable), where
 * PostgreSQL flushes once for every session waiting at the same time: group commit across nodes. */
#define STORAGE_PG_BEGIN                                                                             \
    "BEGIN; SELECT pg_advisory_xact_lock(7526745370355441921); SET LOCAL synchronous_commit = off"

/* PostgreSQL: make the commits of this session durable. A transaction that takes an xid writes a
 * commit record, and with synchronous_commit on (the session's setting, pg.c) its commit returns only
 * once the WAL is flushed up to that record, which lies after ours. */
static int pg_durable(samda_store *s, storage_conn *c)
{
    return exec_sql(s, c, "SELECT pg_current_xact_id()", false);
}

samda_status storage_tx_begin(samda_store *s, storage_conn *c, samda_error *err)
{
    pthread_mutex_lock(&s->write_mu);
    /* PostgreSQL: BEGIN, the lock and the setting in one round trip */
    int rc = exec_sql(s, c, storage_sql(c, "BEGIN IMMEDIATE", STORAGE_PG_BEGIN), true);
    if (rc != SQL_OK) {
        if (sql_in_tx(c->q)) exec_sql(s, c, "ROLLBACK", false); /* the lock timed out inside the BEGIN */
        pthread_mutex_unlock(&s->write_mu);
        return storage_db_fail(err, c, rc, "starting index transaction");
    }
    return SAMDA_OK;
}

/* fsync the WAL file (errno, 0 when done). No WAL file: every commit was checkpointed into the
 * database file, which the checkpoint synced. */
static int wal_fsync(samda_store *s)
{
    int fd = open(s->wal_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? 0 : errno;
    int e = fdatasync(fd) == 0 ? 0 : errno;
    close(fd);
    return e;
}

/* Wait until commit number seq is durable: the first thread to find no fsync under way runs one for
 * every commit made so far; the others wait for it, and one fsync serves them all.
 * A failed fsync of the WAL cannot be undone or retried (the kernel may have dropped the pages and
 * reports the error once), and the commits it covered are already visible: like PostgreSQL, the
 * process stops at once, as a kill -9 would stop it, and the next start recovers from what is on
 * disk. Nothing was acknowledged for those commits, since the callers are still waiting. */
static void wait_durable(samda_store *s, uint64_t seq)
{
    pthread_mutex_lock(&s->sync_mu);
    while (s->synced_seq < seq) {
        if (s->syncing) {
            pthread_cond_wait(&s->sync_cv, &s->sync_mu);
            continue;
        }
        s->syncing = true;
        uint64_t target = s->commit_seq;
        pthread_mutex_unlock(&s->sync_mu);
        int e = wal_fsync(s);
        if (e) {
            fprintf(stderr, "samda storage: fsync of %s failed (%s): committed index changes may not be durable; "
                            "stopping now so that the next start recovers from the disk\n", s->wal_path, strerror(e));
            abort();
        }
        pthread_mutex_lock(&s->sync_mu);
        s->syncing = false;
        if (target > s->synced_seq) s->synced_seq = target;
        pthread_cond_broadcast(&s->sync_cv);
    }
    pthread_mutex_unlock(&s->sync_mu);
}

samda_status storage_tx_commit(samda_store *s, storage_conn *c, samda_error *err)
{
    int rc = exec_sql(s, c, "COMMIT", true);
    if (rc != SQL_OK) {
        samda_status st = storage_db_fail(err, c, rc, "committing index transaction");
        if (sql_in_tx(c->q)) exec_sql(s, c, "ROLLBACK", false);
        pthread_mutex_unlock(&s->write_mu);
        return st;
    }
    if (storage_is_pg(c)) {
        pthread_mutex_unlock(&s->write_mu);
        if (s->p.sync == SAMDA_SYNC_NORMAL || (rc = pg_durable(s, c)) == SQL_OK) return SAMDA_OK;
        /* Committed, but not known to be durable: the caller must not acknowledge it as stored. */
        return storage_db_fail(err, c, rc, "waiting for the index commit to reach the disk");
    }
    if (!group_commit(s)) {
        pthread_mutex_unlock(&s->write_mu);
        return SAMDA_OK;
    }
    pthread_mutex_lock(&s->sync_mu);
    uint64_t seq = ++s->commit_seq;
    pthread_mutex_unlock(&s->sync_mu);
    pthread_mutex_unlock(&s->write_mu);
    wait_durable(s, seq);
    return SAMDA_OK;
}

void storage_tx_rollback(samda_store *s, storage_conn *c)
{
    if (sql_in_tx(c->q)) exec_sql(s, c, "ROLLBACK", false);
    pthread_mutex_unlock(&s->write_mu);
}

/* Shared transactions ------------------------------------------------------------------------------ */

/* The most calls one transaction runs: enough to cover every association in flight, few enough that
 * the write lock is never held for long. */
#define SHARED_BATCH_MAX 32

typedef struct storage_shared_item {
    storage_tx_fn fn;
    void *arg;
    samda_error *err;
    samda_status st;
    bool done;
    struct storage_shared_item *next;
} storage_shared_item;

/* fn in a write transaction of its own on c. */
static samda_status tx_run_on(samda_store *s, storage_conn *c, storage_tx_fn fn, void *arg, samda_error *err)
{
    samda_status st = storage_tx_begin(s, c, err);
    if (st != SAMDA_OK) return st;
    st = fn(s, c, arg, err);
    if (st == SAMDA_OK) return storage_tx_commit(s, c, err);
    storage_tx_rollback(s, c);
    return st;
}

samda_status storage_tx_run(samda_store *s, storage_tx_fn fn, void *arg, samda_error *err)
{
    STORAGE_ERR(err);
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    samda_status st = tx_run_on(s, c, fn, arg, err);
    storage_conn_put(s, c);
    return st;
}

/* One call of a batch in a transaction of its own. */
static void run_alone(samda_store *s, storage_conn *c, storage_shared_item *it)
{
    it->st = tx_run_on(s, c, it->fn, it->arg, it->err);
}

/* Run the batch starting at first (n calls) on one connection. */
static void run_batch(samda_store *s, storage_shared_item *first, size_t n)
{
    samda_error e;
    storage_conn *c = storage_conn_get(s, &e);
    if (!c) {
        for (storage_shared_item *it = first; n--; it = it->next) {
            *it->err = e;
            it->st = e.code;
        }
        return;
    }
    if (n == 1) {
        run_alone(s, c, first);
        storage_conn_put(s, c);
        return;
    }
    samda_status st = storage_tx_begin(s, c, &e);
    bool all_ok = st == SAMDA_OK;
    size_t k = 0;
    for (storage_shared_item *it = first; all_ok && k < n; it = it->next, k++)
        all_ok = (it->st = it->fn(s, c, it->arg, it->err)) == SAMDA_OK;
    if (all_ok) {
        /* A failed commit is not retried: on PostgreSQL it may have committed without being known
         * durable, which every call of the batch must report, as a lone call would. */
        st = storage_tx_commit(s, c, &e);
        for (storage_shared_item *it = first; k--; it = it->next) {
            it->st = st;
            if (st != SAMDA_OK) *it->err = e;
        }
    } else {
        if (st == SAMDA_OK) storage_tx_rollback(s, c);
        for (storage_shared_item *it = first; n--; it = it->next) run_alone(s, c, it);
    }
    storage_conn_put(s, c);
}

samda_status storage_tx_shared(samda_store *s, storage_tx_fn fn, void *arg, samda_error *err)
{
    STORAGE_ERR(err);
    storage_shared_item me = {.fn = fn, .arg = arg, .err = err};
    pthread_mutex_lock(&s->batch_mu);
    *s->batch_tail = &me;
    s->batch_tail = &me.next;
    while (!me.done) {
        if (s->batch_running) {
            pthread_cond_wait(&s->batch_cv, &s->batch_mu);
            continue;
        }
        /* No batch under way: this thread runs the calls waiting now, its own among them. */
        s->batch_running = true;
        storage_shared_item *first = s->batch_head, *last = first;
        size_t n = 1;
        while (n < SHARED_BATCH_MAX && last->next) {
            last = last->next;
            n++;
        }
        s->batch_head = last->next;
        if (!s->batch_head) s->batch_tail = &s->batch_head;
        last->next = NULL; /* the batch is its own list now: later calls queue behind batch_head */
        pthread_mutex_unlock(&s->batch_mu);
        run_batch(s, first, n);
        pthread_mutex_lock(&s->batch_mu);
        for (storage_shared_item *it = first; n--;) {
            storage_shared_item *next = it->next;
            it->done = true; /* from here on the waiting thread may return and it goes away */
            it = next;
        }
        s->batch_running = false;
        pthread_cond_broadcast(&s->batch_cv);
    }
    pthread_mutex_unlock(&s->batch_mu);
    return me.st;
}

/* Open and close -------------------------------------------------------------------------------- */

static samda_status make_dir(const char *path, samda_error *err)
{
    if (mkdir(path, 0700) == 0) return SAMDA_OK;
    int e = errno;
    struct stat sb;
    if (e == EEXIST && stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) return SAMDA_OK;
    return samda_fail(err, e == ENOSPC ? SAMDA_ENOSPC : SAMDA_EIO, "creating directory %s: %s", path,
                      e == EEXIST ? "exists and is not a directory" : strerror(e));
}

/* mkdir -p for the data directory itself (its parents may be missing on a fresh install). */
static samda_status make_dirs(char *path, samda_error *err)
{
    for (char *q = path + 1; *q; q++) {
        if (*q != '/') continue;
        *q = '\0';
        samda_status st = make_dir(path, err);
        *q = '/';
        if (st != SAMDA_OK) return st;
    }
    return make_dir(path, err);
}

void samda_store_close(samda_store *s)
{
    if (!s) return;
    storage_conn *c = s->free_list;
    while (c) {
        storage_conn *next = c->next_free;
        conn_close(c);
        c = next;
    }
    sql_close(s->leader_conn); /* releases the leader lock with its session */
    pthread_mutex_destroy(&s->pool_mu);
    pthread_cond_destroy(&s->pool_cv);
    pthread_mutex_destroy(&s->write_mu);
    pthread_mutex_destroy(&s->sync_mu);
    pthread_cond_destroy(&s->sync_cv);
    pthread_mutex_destroy(&s->batch_mu);
    pthread_cond_destroy(&s->batch_cv);
    if (s->lock_fd >= 0) close(s->lock_fd); /* releases the shared lock */
    free(s);
}

samda_store *samda_store_open(const samda_store_params *p, samda_error *err)
{
    STORAGE_ERR(err);
    if (!p || !p->data_dir || !*p->data_dir) {
        samda_fail(err, SAMDA_EINVAL, "opening store: params.data_dir is required");
        return NULL;
    }
    size_t dl = strnlen(p->data_dir, STORAGE_DATA_DIR_MAX + 1);
    if (dl > STORAGE_DATA_DIR_MAX) {
        samda_fail(err, SAMDA_EINVAL, "opening store: data_dir longer than %d bytes", STORAGE_DATA_DIR_MAX);
        return NULL;
    }
    samda_store *s = calloc(1, sizeof *s);
    if (!s) {
        samda_fail(err, SAMDA_ENOMEM, "opening store: out of memory");
        return NULL;
    }
    s->lock_fd = -1;
    s->p = *p;
    memcpy(s->data_dir, p->data_dir, dl);
    while (dl > 1 && s->data_dir[dl - 1] == '/') s->data_dir[--dl] = '\0';
    s->p.data_dir = s->data_dir;
    if (p->index == SAMDA_INDEX_POSTGRESQL) {
        size_t cl = p->postgresql ? strnlen(p->postgresql, STORAGE_CONNINFO_MAX + 1) : 0;
        if (cl == 0 || cl > STORAGE_CONNINFO_MAX) {
            samda_fail(err, SAMDA_EINVAL, "opening store: [storage] postgresql must be a libpq connection string "
                                          "of 1..%d bytes when [storage] index = postgresql", STORAGE_CONNINFO_MAX);
            free(s);
            return NULL;
        }
        memcpy(s->conninfo, p->postgresql, cl);
    }
    s->p.postgresql = s->conninfo;
    if (p->node && *p->node) {
        if (!samda_node_name_is_valid(p->node)) {
            samda_fail(err, SAMDA_EINVAL, "opening store: node name must be 1..64 characters of [A-Za-z0-9._-]");
            free(s);
            return NULL;
        }
        snprintf(s->node, sizeof s->node, "%s", p->node);
    }
    s->p.node = s->node;
    if (s->p.busy_timeout_ms <= 0) s->p.busy_timeout_ms = 5000;
    if (s->p.max_connections <= 0) s->p.max_connections = 16;
    if (!s->p.clock) s->p.clock = storage_realtime_ms;
    if (s->p.export_lease_ms <= 0) s->p.export_lease_ms = 600000;
    samda_store_params d; /* the defaults, for what p leaves at <= 0 */
    samda_store_params_init(&d);
    atomic_init(&s->job_max_attempts, d.job_max_attempts);
    atomic_init(&s->export_max_attempts, d.export_max_attempts);
    atomic_init(&s->export_backoff_base_ms, d.export_backoff_base_ms);
    atomic_init(&s->export_backoff_max_ms, d.export_backoff_max_ms);
    samda_store_set_retries(s, p->job_max_attempts, p->export_max_attempts, p->export_backoff_base_ms,
                            p->export_backoff_max_ms);
    s->fault = p->fault;
    s->fault_ctx = p->fault_ctx;
    pthread_mutex_init(&s->pool_mu, NULL);
    pthread_cond_init(&s->pool_cv, NULL);
    pthread_mutex_init(&s->write_mu, NULL);
    pthread_mutex_init(&s->sync_mu, NULL);
    pthread_cond_init(&s->sync_cv, NULL);
    pthread_mutex_init(&s->batch_mu, NULL);
    pthread_cond_init(&s->batch_cv, NULL);
    s->batch_tail = &s->batch_head;
    if (s->p.index == SAMDA_INDEX_POSTGRESQL) snprintf(s->db_path, sizeof s->db_path, "(PostgreSQL index)");
    else snprintf(s->db_path, sizeof s->db_path, "%s/index.sqlite3", s->data_dir);
    snprintf(s->wal_path, sizeof s->wal_path, "%s/index.sqlite3-wal", s->data_dir);
    snprintf(s->objects_dir, sizeof s->objects_dir, "%s/objects", s->data_dir);
    snprintf(s->tmp_dir, sizeof s->tmp_dir, "%s/tmp", s->data_dir);

    if (make_dirs(s->data_dir, err) != SAMDA_OK || make_dir(s->objects_dir, err) != SAMDA_OK ||
        make_dir(s->tmp_dir, err) != SAMDA_OK) {
        samda_error_prefix(err, "opening store: ");
        samda_store_close(s);
        return NULL;
    }
    char lock_path[STORAGE_PATH_MAX];
    snprintf(lock_path, sizeof lock_path, "%s/lock", s->data_dir);
    s->lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (s->lock_fd < 0) {
        samda_fail(err, SAMDA_EIO, "opening store: creating %s: %s", lock_path, strerror(errno));
        samda_store_close(s);
        return NULL;
    }
    bool alone = flock(s->lock_fd, LOCK_EX | LOCK_NB) == 0;
    storage_conn *c = storage_conn_get(s, err);
    if (!c) {
        samda_store_close(s);
        return NULL;
    }
    samda_status st = storage_migrate(s, c, err);
    if (st == SAMDA_OK && alone) st = storage_recover(s, c, err);
    /* From now on others may open too (they will not run recovery while we hold this). */
    if (st == SAMDA_OK && flock(s->lock_fd, LOCK_SH) != 0)
        st = samda_fail(err, SAMDA_EIO, "opening store: locking %s: %s", lock_path, strerror(errno));
    storage_conn_put(s, c);
    if (st != SAMDA_OK) {
        samda_store_close(s);
        return NULL;
    }
    return s;
}
