/* storage/migrate.c: the index schema and its forward migrations.
 *
 * SQLite's PRAGMA user_version holds the number of the last migration applied (PostgreSQL: the highest
 * version in schema_migrations); schema_migrations records when each ran. Migrations only ever append:
 * to change the schema add an entry to `migrations` below with the next number, in both engines' words
 * (never edit a released one). A database whose user_version is higher than this code
 * knows was written by a newer samda and is refused, because this code could silently misread it.
 * No downgrade path exists: restore the backup taken before the upgrade. */
#include <stdio.h>
#include <string.h>

#include "internal.h"

/* Migration 1: the initial schema.
 *
 * Conventions: times are Unix milliseconds (INTEGER, *_ms); UIDs are TEXT checked to 1..64 characters
 * (their syntax is checked in C before they reach SQL or a path); optional values are NULL; JSON is
 * TEXT kept verbatim. Object files are referenced by file_relpath relative to objects/, unique across
 * the tables that own files (instances, results, adapters).
 *
 *  sites          a sending hospital/department: unique name, AE title mappings and settings (JSON).
 *  patients       one row per PatientID ('' when absent); the name is kept for QIDO only, never logged.
 *  studies        StudyInstanceUID, date (YYYYMMDD), description, accession, last receive time.
 *  series         SeriesInstanceUID, modality, body part, description, number, site, an instance
 *                 counter, first/last receive times, and the completion state (receiving, complete,
 *                 incomplete) with its reason and time.
 *  associations   one DICOM association: AEs, peer, site, times, final state and instances received.
 *  instances      SOP instance: classes, syntax, geometry (pixel spacing, ImagePositionPatient,
 *                 ImageOrientationPatient, slice thickness), rescale and window, file (relpath, size,
 *                 SHA-256), receive time, calling AE, site, association, flags (1 = came with an
 *                 aborted association).
 *  jobs           durable work queue: kind, state, priority (higher first), site, study/series, params,
 *                 attempts/max_attempts, lease owner/expiry, progress and message, error, result,
 *                 times, unique idempotency key, and a content hash: (kind, series, content_hash) is
 *                 unique among jobs not cancelled, so re-sending the same data does not queue new work.
 *  results        a DICOM-SEG produced by a job: source series, SEG series/SOP, file, model and adapter
 *                 versions, timings and label statistics (JSON).
 *  destinations   DICOM peers to send results to: name, AE, host, port, settings.
 *  exports        per-destination send queue: object, state (pending, sending, done, failed), attempts,
 *                 next attempt time, last error, permanent flag.
 *  adapters       per-site decoder adapter versions: version (1, 2... per site), parent, file, base
 *                 checkpoint fingerprint, metadata, active flag; a partial unique index allows at most
 *                 one active adapter per site.
 *  api_tokens     bearer tokens: name, role (admin, user, ingest), SHA-256 of the secret (the secret
 *                 itself is never stored), created/revoked times.
 *  audit_log      append-only record of accesses: time, actor, action, resource, outcome, details;
 *                 triggers refuse UPDATE and DELETE.
 *  changes        change feed: seq (AUTOINCREMENT: strictly increasing, never reused), time, kind,
 *                 resource, change type (new, updated, deleted, state).
 *  object_intents files committed (or about to be unlinked) whose index row is not yet written; at
 *                 open, every listed file that no row claims is removed (crash recovery). */
static const char migration_1[] =
    "CREATE TABLE sites("
    " id INTEGER PRIMARY KEY,"
    " name TEXT NOT NULL UNIQUE CHECK(length(name) BETWEEN 1 AND 64),"
    " ae_json TEXT, settings_json TEXT,"
    " created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL);"

    "CREATE TABLE patients("
    " id INTEGER PRIMARY KEY,"
    " patient_id TEXT NOT NULL UNIQUE CHECK(length(patient_id) <= 64),"
    " patient_name TEXT CHECK(patient_name IS NULL OR length(patient_name) <= 255));"

    "CREATE TABLE studies("
    " id INTEGER PRIMARY KEY,"
    " patient_ref INTEGER NOT NULL REFERENCES patients(id),"
    " study_uid TEXT NOT NULL UNIQUE CHECK(length(study_uid) BETWEEN 1 AND 64),"
    " study_date TEXT CHECK(study_date IS NULL OR length(study_date) = 8),"
    " study_description TEXT, accession_number TEXT,"
    " created_ms INTEGER NOT NULL, last_received_ms INTEGER NOT NULL);"
    "CREATE INDEX studies_date ON studies(study_date);"
    "CREATE INDEX studies_patient ON studies(patient_ref);"

    "CREATE TABLE series("
    " id INTEGER PRIMARY KEY,"
    " study_ref INTEGER NOT NULL REFERENCES studies(id),"
    " series_uid TEXT NOT NULL UNIQUE CHECK(length(series_uid) BETWEEN 1 AND 64),"
    " modality TEXT, body_part TEXT, series_description TEXT, series_number INTEGER,"
    " site_id INTEGER REFERENCES sites(id),"
    " n_instances INTEGER NOT NULL DEFAULT 0,"
    " first_received_ms INTEGER NOT NULL, last_received_ms INTEGER NOT NULL,"
    " state TEXT NOT NULL DEFAULT 'receiving' CHECK(state IN ('receiving','complete','incomplete')),"
    " state_reason TEXT, state_changed_ms INTEGER);"
    "CREATE INDEX series_study ON series(study_ref);"
    "CREATE INDEX series_idle ON series(state, last_received_ms);"

    "CREATE TABLE associations("
    " id INTEGER PRIMARY KEY,"
    " calling_ae TEXT NOT NULL, called_ae TEXT NOT NULL, peer TEXT,"
    " site_id INTEGER REFERENCES sites(id),"
    " started_ms INTEGER NOT NULL, ended_ms INTEGER,"
    " state TEXT NOT NULL DEFAULT 'open' CHECK(state IN ('open','released','aborted','rejected')),"
    " n_instances INTEGER NOT NULL DEFAULT 0);"

    "CREATE TABLE instances("
    " id INTEGER PRIMARY KEY,"
    " series_ref INTEGER NOT NULL REFERENCES series(id),"
    " sop_uid TEXT NOT NULL UNIQUE CHECK(length(sop_uid) BETWEEN 1 AND 64),"
    " sop_class_uid TEXT NOT NULL, transfer_syntax_uid TEXT,"
    " instance_number INTEGER, rows INTEGER, columns INTEGER, bits_allocated INTEGER,"
    " number_of_frames INTEGER,"
    " pixel_spacing_row REAL, pixel_spacing_col REAL,"
    " ipp_x REAL, ipp_y REAL, ipp_z REAL,"
    " iop_rx REAL, iop_ry REAL, iop_rz REAL, iop_cx REAL, iop_cy REAL, iop_cz REAL,"
    " slice_thickness REAL, rescale_slope REAL, rescale_intercept REAL,"
    " window_center REAL, window_width REAL,"
    " file_relpath TEXT NOT NULL UNIQUE, file_size INTEGER NOT NULL,"
    " sha256 TEXT NOT NULL CHECK(length(sha256) = 64),"
    " received_ms INTEGER NOT NULL, calling_ae TEXT,"
    " site_id INTEGER REFERENCES sites(id),"
    " association_id INTEGER REFERENCES associations(id),"
    " flags INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX instances_series ON instances(series_ref, instance_number);"
    "CREATE INDEX instances_assoc ON instances(association_id);"

    "CREATE TABLE jobs("
    " id INTEGER PRIMARY KEY,"
    " kind TEXT NOT NULL CHECK(length(kind) BETWEEN 1 AND 128),"
    " state TEXT NOT NULL DEFAULT 'pending'"
    "  CHECK(state IN ('pending','running','done','failed','cancelled')),"
    " priority INTEGER NOT NULL DEFAULT 0,"
    " site_id INTEGER REFERENCES sites(id),"
    " study_uid TEXT, series_uid TEXT, params_json TEXT,"
    " attempts INTEGER NOT NULL DEFAULT 0, max_attempts INTEGER NOT NULL CHECK(max_attempts >= 1),"
    " lease_owner TEXT, lease_expires_ms INTEGER,"
    " progress REAL NOT NULL DEFAULT 0 CHECK(progress BETWEEN 0 AND 1), progress_message TEXT,"
    " error TEXT, result_json TEXT,"
    " created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL, finished_ms INTEGER,"
    " idempotency_key TEXT UNIQUE, content_hash TEXT);"
    "CREATE INDEX jobs_queue ON jobs(state, priority DESC, created_ms, id);"
    "CREATE INDEX jobs_lease ON jobs(state, lease_expires_ms);"
    "CREATE INDEX jobs_series ON jobs(series_uid);"
    "CREATE UNIQUE INDEX jobs_content ON jobs(kind, ifnull(series_uid, ''), content_hash)"
    " WHERE content_hash IS NOT NULL AND state <> 'cancelled';"

    "CREATE TABLE results("
    " id INTEGER PRIMARY KEY,"
    " job_id INTEGER REFERENCES jobs(id),"
    " series_uid TEXT NOT NULL, seg_series_uid TEXT NOT NULL, seg_sop_uid TEXT NOT NULL UNIQUE,"
    " file_relpath TEXT NOT NULL UNIQUE, file_size INTEGER NOT NULL,"
    " sha256 TEXT NOT NULL CHECK(length(sha256) = 64),"
    " model_version TEXT, adapter_version INTEGER, timings_json TEXT, label_stats_json TEXT,"
    " created_ms INTEGER NOT NULL);"
    "CREATE INDEX results_series ON results(series_uid);"

    "CREATE TABLE destinations("
    " id INTEGER PRIMARY KEY,"
    " name TEXT NOT NULL UNIQUE CHECK(length(name) BETWEEN 1 AND 64),"
    " ae_title TEXT NOT NULL, host TEXT NOT NULL,"
    " port INTEGER NOT NULL CHECK(port BETWEEN 1 AND 65535),"
    " settings_json TEXT, created_ms INTEGER NOT NULL);"

    "CREATE TABLE exports("
    " id INTEGER PRIMARY KEY,"
    " destination_id INTEGER NOT NULL REFERENCES destinations(id) ON DELETE CASCADE,"
    " relpath TEXT NOT NULL, sop_uid TEXT,"
    " state TEXT NOT NULL DEFAULT 'pending' CHECK(state IN ('pending','sending','done','failed')),"
    " attempts INTEGER NOT NULL DEFAULT 0, next_attempt_ms INTEGER NOT NULL,"
    " last_error TEXT, permanent INTEGER NOT NULL DEFAULT 0,"
    " created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL);"
    "CREATE INDEX exports_due ON exports(state, next_attempt_ms);"
    "CREATE INDEX exports_dest ON exports(destination_id, state);"

    "CREATE TABLE adapters("
    " id INTEGER PRIMARY KEY,"
    " site_id INTEGER NOT NULL REFERENCES sites(id),"
    " version INTEGER NOT NULL CHECK(version >= 1), parent_version INTEGER,"
    " file_relpath TEXT NOT NULL UNIQUE, file_size INTEGER NOT NULL,"
    " sha256 TEXT NOT NULL CHECK(length(sha256) = 64),"
    " base_fingerprint TEXT, metadata_json TEXT,"
    " active INTEGER NOT NULL DEFAULT 0 CHECK(active IN (0, 1)),"
    " created_ms INTEGER NOT NULL, activated_ms INTEGER,"
    " UNIQUE(site_id, version));"
    "CREATE UNIQUE INDEX adapters_one_active ON adapters(site_id) WHERE active = 1;"

    "CREATE TABLE api_tokens("
    " id INTEGER PRIMARY KEY,"
    " name TEXT NOT NULL UNIQUE CHECK(length(name) BETWEEN 1 AND 64),"
    " role TEXT NOT NULL CHECK(role IN ('admin','user','ingest')),"
    " secret_sha256 TEXT NOT NULL UNIQUE CHECK(length(secret_sha256) = 64),"
    " created_ms INTEGER NOT NULL, revoked_ms INTEGER);"

    "CREATE TABLE audit_log("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " time_ms INTEGER NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL, resource TEXT,"
    " outcome TEXT NOT NULL, details_json TEXT);"
    "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log"
    " BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;"
    "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log"
    " BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;"

    "CREATE TABLE changes("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " time_ms INTEGER NOT NULL, kind TEXT NOT NULL, resource TEXT NOT NULL,"
    " change_type TEXT NOT NULL CHECK(change_type IN ('new','updated','deleted','state')));"

    "CREATE TABLE object_intents(relpath TEXT PRIMARY KEY, created_ms INTEGER NOT NULL) WITHOUT ROWID;";

/* Objects made beside a result's DICOM-SEG (RT Structure Set, Measurement Report SR): each row
 * claims its file as results rows claim theirs. */
static const char migration_2[] =
    "CREATE TABLE result_objects("
    " id INTEGER PRIMARY KEY,"
    " result_id INTEGER NOT NULL REFERENCES results(id),"
    " kind TEXT NOT NULL CHECK(kind IN ('rtstruct','sr')),"
    " series_uid TEXT NOT NULL, sop_uid TEXT NOT NULL UNIQUE,"
    " file_relpath TEXT NOT NULL UNIQUE, file_size INTEGER NOT NULL,"
    " sha256 TEXT NOT NULL CHECK(length(sha256) = 64),"
    " created_ms INTEGER NOT NULL,"
    " UNIQUE(result_id, kind));"
    "CREATE INDEX result_objects_result ON result_objects(result_id);";

/* Series the routing rules hold until their study has the series a rule requires. */
static const char migration_3[] =
    "CREATE TABLE series_holds("
    " series_ref INTEGER PRIMARY KEY REFERENCES series(id),"
    " since_ms INTEGER NOT NULL, reason TEXT NOT NULL);";


/* The same schema in PostgreSQL's words: BIGINT for INTEGER (SQLite's are 64-bit), DOUBLE PRECISION
 * for REAL, identity columns for INTEGER PRIMARY KEY (never reused, as AUTOINCREMENT), a PL/pgSQL
 * trigger for the append-only audit log. Same numbering: migration N here is migration N above. */
static const char migration_1_pg[] =
    "CREATE TABLE sites("
    " id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
    " name TEXT NOT NULL UNIQUE CHECK(length(name) BETWEEN 1 AND 64),"
    " ae_json TEXT, settings_json TEXT,"
    " created_ms BIGINT NOT NULL, updated_ms BIGINT NOT NULL);"

    "CREATE TABLE patients("
    " id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
    " patient_id TEXT NOT NULL UNIQUE CHECK(length(patient_id) <= 64),"
    " patient_name TEXT CHECK(patient_name IS NULL OR length(patient_name) <= 255));"

    "CREATE TABLE studies("
    " id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
    " patient_ref BIGINT NOT NULL REFERENCES patients(id),"
    " study_uid TEXT NOT NULL UNIQUE CHECK(length(study_uid) BETWEEN 1 AND 64),"
    " study_date TEXT CHECK(study_date IS NULL OR length(study_date) = 8),"
    " study_description TEXT, accession_number TEXT,"
    " created_ms BIGINT NOT NULL, last_received_ms BIGINT NOT NULL);"
    "CREATE INDEX studies_date ON studies(study_date);"
    "CREATE INDEX studies_patient ON studies(patient_ref);"

    "CREATE TABLE series("
    " id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
    " study_ref BIGINT NOT NULL REFERENCES studies(id),"
    " series_uid TEXT NOT NULL UNIQUE CHECK(length(series_uid) BETWEEN 1 AND 64),"
    " modality TEXT, body_part TEXT, series_description TEXT, series_number BIGINT,"
    " site_id BIGINT REFERENCES sites(id),"
    " n_instances BIGINT NOT NULL DEFAULT 0,"
    " first_received_ms BIGINT NOT NULL, last_received_ms BIGINT NOT NULL,"
    " state TEXT NOT NULL DEFAULT 'receiving' CHECK(state IN ('receiving','complete','incomplete')),"
    " state_reason TEXT, state_changed_ms BIGINT);"
    "CREATE INDEX series_study ON series(study_ref);"
    "CREATE INDEX series_idle ON series(state, last_received_ms);"

    "CREATE TABLE associations("
    " id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
    " calling_ae TEXT NOT NULL, called_ae TEXT NOT NULL, peer TEXT,"
    " site_id BIGINT REFERENCES sites(id),"
    " started_ms BIGINT NOT NULL, ended_ms BIGINT,"
    " state TEXT NOT NULL DEFAULT 'open' CHECK(state IN ('open','released','aborted','rejected')),"
    " n_instances BIGINT NOT NULL DEFAULT 0);"

    "CREATE TABLE instances("
    " id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
    " series_ref BIGINT NOT NULL REFERENCES series(id),"
    " sop_uid TEXT NOT NULL UNIQUE CHECK(length(sop_uid) BETWEEN 1 AND 64),"
    " sop_class_uid TEXT NOT NULL, transfer_syntax_uid TEXT,"
    " instance_number BIGINT, rows BIGINT, columns BIGINT, bits_allocated BIGINT,"
    " number_of_frames BIGINT,"
    " pixel_spacing_row DOUBLE PRECISION, pixel_spacing_col DOUBLE PRECISION,"
    " ipp_x DOUBLE PRECISION, ipp_y DOUBLE PRECISION, ipp_z DOUBLE PRECISION,"
    " iop_rx DOUBLE PRECISION, iop_ry DOUBLE PRECISION, iop_rz DOUBLE PRECISION, iop_cx DOUBLE PRECISION, iop_cy DOUBLE PRECISION, iop_cz DOUBLE PRECISION,"
    " slice_thickness DOUBLE PRECISION, rescale_slope DOUBLE PRECISION, rescale_intercept DOUBLE PRECISION,"
    " window_center DOUBLE PRECISION, window_width DOUBLE PRECISION,"
    " file_relpath TEXT NOT NULL UNIQUE, file_size BIGINT NOT NULL,"
    " sha256 TEXT NOT NULL CHECK(length(sha256) = 64),"
    " received_ms BIGINT NOT NULL, calling_ae TEXT,"
    " site_id BIGINT REFERENCES sites(id),"
    " association_id BIGINT REFERENCES associations(id),"
    " flags BIGINT NOT NULL DEFAULT 0);"
    "CREATE INDEX instances_series ON instances(series_ref, instance_number);"
    "CREATE INDEX instances_assoc ON instances(association_id);"

    "CREATE TABLE jobs("
    " id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
    " kind TEXT NOT NULL CHECK(length(kind) BETWEEN 1 AND 128),"
    " state TEXT NOT NULL DEFAULT 'pending'"
    "  CHECK(state IN ('pending','running','done','failed','cancelled')),"
    " priority BIGINT NOT NULL DEFAULT 0,"
    " site_id BIGINT REFERENCES sites(id),"
    " study_uid TEXT, series_uid TEXT, params_json TEXT,"
    " attempts BIGINT NOT NULL DEFAULT 0, max_attempts BIGINT NOT NULL CHECK(max_attempts >= 1),"
    " lease_owner TEXT, lease_expires_ms BIGINT,"
    " progress DOUBLE PRECISION NOT NULL DEFAULT 0 CHECK(progress BETWEEN 0 AND 1), progress_message TEXT,"
    " error TEXT, result_json TEXT,"
    " created_ms BIGINT NOT NULL, updated_ms BIGINT NOT NULL, finished_ms BIGINT,"
    " idempotency_key TEXT UNIQUE, content_hash TEXT);"
    "CREATE INDEX jobs_queue ON jobs(state, priority DESC, created_ms, id);"
    "CREATE INDEX jobs_lease ON jobs(state, lease_expires_ms);"
    "CREATE INDEX jobs_series ON jobs(series_uid);"
    "CREATE UNIQUE INDEX jobs_content ON jobs(kind, coalesce(series_uid, ''), content_hash)"
    " WHERE content_hash IS NOT NULL AND state <> 'cancelled';"

    "CREATE TABLE results("
    " id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
    " job_id BIGINT REFERENCES jobs(id),"
    " series_uid TEXT NOT NULL, seg_series_uid TEXT NOT NULL, seg_sop_uid TEXT NOT NULL UNIQUE,"
    " file_relpath TEXT NOT NULL UNIQUE, file_size BIGINT NOT NULL,"
    " sha256 TEXT NOT NULL CHECK(length(sha256) = 64),"
    " model_version TEXT, adapter_version BIGINT, timings_json TEXT, label_stats_json TEXT,"
    " created_ms BIGINT NOT NULL);"
    "CREATE INDEX results_series ON results(series_uid);"

    "CREATE TABLE destinations("
    " id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
    " name TEXT NOT NULL UNIQUE CHECK(length(name) BETWEEN 1 AND 64),"
    " ae_title TEXT NOT NULL, host TEXT NOT NULL,"
    " port BIGINT NOT NULL CHECK(port BETWEEN 1 AND 65535),"
    " settings_json TEXT, created_ms BIGINT NOT NULL);"

    "CREATE TABLE exports("
    " id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
    " destination_id BIGINT NOT NULL REFERENCES destinations(id) ON DELETE CASCADE,"
    " relpath TEXT NOT NULL, sop_uid TEXT,"
    " state TEXT NOT NULL DEFAULT 'pending' CHECK(state IN ('pending','sending','done','failed')),"
    " attempts BIGINT NOT NULL DEFAULT 0, next_attempt_ms BIGINT NOT NULL,"
    " last_error TEXT, permanent BIGINT NOT NULL DEFAULT 0,"
    " created_ms BIGINT NOT NULL, updated_ms BIGINT NOT NULL);"
    "CREATE INDEX exports_due ON exports(state, next_attempt_ms);"
    "CREATE INDEX exports_dest ON exports(destination_id, state);"

    "CREATE TABLE adapters("
    " id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
    " site_id BIGINT NOT NULL REFERENCES sites(id),"
    " version BIGINT NOT NULL CHECK(version >= 1), parent_version BIGINT,"
    " file_relpath TEXT NOT NULL UNIQUE, file_size BIGINT NOT NULL,"
    " sha256 TEXT NOT NULL CHECK(length(sha256) = 64),"
    " base_fingerprint TEXT, metadata_json TEXT,"
    " active BIGINT NOT NULL DEFAULT 0 CHECK(active IN (0, 1)),"
    " created_ms BIGINT NOT NULL, activated_ms BIGINT,"
    " UNIQUE(site_id, version));"
    "CREATE UNIQUE INDEX adapters_one_active ON adapters(site_id) WHERE active = 1;"

    "CREATE TABLE api_tokens("
    " id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
    " name TEXT NOT NULL UNIQUE CHECK(length(name) BETWEEN 1 AND 64),"
    " role TEXT NOT NULL CHECK(role IN ('admin','user','ingest')),"
    " secret_sha256 TEXT NOT NULL UNIQUE CHECK(length(secret_sha256) = 64),"
    " created_ms BIGINT NOT NULL, revoked_ms BIGINT);"

    "CREATE TABLE audit_log("
    " id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
    " time_ms BIGINT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL, resource TEXT,"
    " outcome TEXT NOT NULL, details_json TEXT);"
    "CREATE FUNCTION samda_audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS"
    " $$BEGIN RAISE EXCEPTION 'audit_log is append-only'; END$$;"
    "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log"
    " FOR EACH ROW EXECUTE FUNCTION samda_audit_log_append_only();"
    "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log"
    " FOR EACH ROW EXECUTE FUNCTION samda_audit_log_append_only();"
    /* TRUNCATE skips row triggers (SQLite has no TRUNCATE: its DELETE always runs them) */
    "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log"
    " FOR EACH STATEMENT EXECUTE FUNCTION samda_audit_log_append_only();"

    "CREATE TABLE changes("
    " seq BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
    " time_ms BIGINT NOT NULL, kind TEXT NOT NULL, resource TEXT NOT NULL,"
    " change_type TEXT NOT NULL CHECK(change_type IN ('new','updated','deleted','state')));"

    "CREATE TABLE object_intents(relpath TEXT PRIMARY KEY, created_ms BIGINT NOT NULL);";

static const char migration_2_pg[] =
    "CREATE TABLE result_objects("
    " id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
    " result_id BIGINT NOT NULL REFERENCES results(id),"
    " kind TEXT NOT NULL CHECK(kind IN ('rtstruct','sr')),"
    " series_uid TEXT NOT NULL, sop_uid TEXT NOT NULL UNIQUE,"
    " file_relpath TEXT NOT NULL UNIQUE, file_size BIGINT NOT NULL,"
    " sha256 TEXT NOT NULL CHECK(length(sha256) = 64),"
    " created_ms BIGINT NOT NULL,"
    " UNIQUE(result_id, kind));"
    "CREATE INDEX result_objects_result ON result_objects(result_id);";

static const char migration_3_pg[] =
    "CREATE TABLE series_holds("
    " series_ref BIGINT PRIMARY KEY REFERENCES series(id),"
    " since_ms BIGINT NOT NULL, reason TEXT NOT NULL);";

/* The nodes of a cluster (several samdad over one PostgreSQL index; one row on SQLite): name, roles,
 * version, process id, start, last heartbeat, and whether it held the leader lock at that beat. An
 * association records the node that holds it, so that only that node's restart, or its death seen by
 * the leader, ends it as aborted. */
static const char migration_4[] =
    "CREATE TABLE nodes("
    " name TEXT PRIMARY KEY CHECK(length(name) BETWEEN 1 AND 64),"
    " roles TEXT NOT NULL, version TEXT, pid INTEGER,"
    " started_ms INTEGER NOT NULL, heartbeat_ms INTEGER NOT NULL,"
    " leader INTEGER NOT NULL DEFAULT 0 CHECK(leader IN (0, 1)));"
    "ALTER TABLE associations ADD COLUMN node TEXT;"
    "CREATE INDEX associations_open ON associations(state, node);";
static const char migration_4_pg[] =
    "CREATE TABLE nodes("
    " name TEXT PRIMARY KEY CHECK(length(name) BETWEEN 1 AND 64),"
    " roles TEXT NOT NULL, version TEXT, pid BIGINT,"
    " started_ms BIGINT NOT NULL, heartbeat_ms BIGINT NOT NULL,"
    " leader BIGINT NOT NULL DEFAULT 0 CHECK(leader IN (0, 1)));"
    "ALTER TABLE associations ADD COLUMN node TEXT;"
    "CREATE INDEX associations_open ON associations(state, node);";

/* The SOP class of a series' instances, kept on the series so that "one series, one kind of image" is
 * checked per instance without reading the series' other instances (that read grew with the series:
 * quadratic over a study of thousands of slices). Filled from the instances already indexed. */
static const char migration_5[] =
    "ALTER TABLE series ADD COLUMN sop_class_uid TEXT;"
    "UPDATE series SET sop_class_uid = (SELECT min(i.sop_class_uid) FROM instances i WHERE i.series_ref = series.id);";
#define migration_5_pg migration_5

static const struct {
    int version;
    const char *description;
    const char *sql, *pg;
} migrations[] = {
    {1, "initial schema", migration_1, migration_1_pg},
    {2, "objects beside a result's DICOM-SEG (RT Structure Set, SR)", migration_2, migration_2_pg},
    {3, "series held by routing rules", migration_3, migration_3_pg},
    {4, "cluster nodes; the node of an association", migration_4, migration_4_pg},
    {5, "the SOP class of each series", migration_5, migration_5_pg},
};
#define N_MIGRATIONS ((int)(sizeof migrations / sizeof migrations[0]))
_Static_assert(N_MIGRATIONS == SAMDA_STORE_SCHEMA_VERSION, "SAMDA_STORE_SCHEMA_VERSION must match migrations");

/* The number of the last migration applied: SQLite's user_version, or the highest version recorded in
 * PostgreSQL's schema_migrations (0 before the first migration). */
static int read_version(storage_conn *c, int *v)
{
    *v = 0;
    if (storage_is_pg(c)) {
        sql_stmt *st = storage_stmt(c, "SELECT to_regclass('schema_migrations') IS NOT NULL", NULL);
        if (!st) return SQL_ERROR;
        int rc = sql_step(st);
        bool exists = rc == SQL_ROW && sql_col_int64(st, 0) == 1;
        sql_reset(st);
        if (rc != SQL_ROW) return rc;
        if (!exists) return SQL_OK;
    }
    sql_stmt *st = storage_stmt(c, storage_sql(c, "PRAGMA user_version",
                                               "SELECT coalesce(max(version), 0) FROM schema_migrations"), NULL);
    if (!st) return SQL_ERROR;
    int rc = sql_step(st);
    if (rc == SQL_ROW) {
        *v = (int)sql_col_int64(st, 0);
        rc = SQL_OK;
    }
    sql_reset(st);
    return rc;
}

static samda_status refuse_newer(samda_store *s, int v, samda_error *err)
{
    return samda_fail(err, SAMDA_EDB,
                      "opening index %s: schema version %d is newer than this samda supports (%d): "
                      "upgrade samda, or restore the backup taken before the upgrade",
                      s->db_path, v, SAMDA_STORE_SCHEMA_VERSION);
}

samda_status storage_migrate(samda_store *s, storage_conn *c, samda_error *err)
{
    int v = 0;
    int rc = read_version(c, &v);
    if (rc != SQL_OK) return storage_db_fail(err, c, rc, "reading index schema version");
    if (v > SAMDA_STORE_SCHEMA_VERSION) return refuse_newer(s, v, err);
    if (v < 0) return samda_fail(err, SAMDA_EDB, "opening index %s: invalid schema version %d", s->db_path, v);
    if (v == SAMDA_STORE_SCHEMA_VERSION) return SAMDA_OK;

    for (int i = 0; i < N_MIGRATIONS; i++) {
        samda_status st = storage_tx_begin(s, c, err);
        if (st != SAMDA_OK) return st;
        /* Another process may have migrated between our read and our write lock. */
        rc = read_version(c, &v);
        if (rc != SQL_OK) {
            storage_tx_rollback(s, c);
            return storage_db_fail(err, c, rc, "reading index schema version");
        }
        if (v > SAMDA_STORE_SCHEMA_VERSION) {
            storage_tx_rollback(s, c);
            return refuse_newer(s, v, err);
        }
        if (v >= migrations[i].version) {
            storage_tx_rollback(s, c);
            continue;
        }
        if (migrations[i].version == 1)
            rc = sql_exec(c->q, storage_sql(c, "CREATE TABLE IF NOT EXISTS schema_migrations(version INTEGER PRIMARY KEY,"
                                               " applied_ms INTEGER NOT NULL, description TEXT NOT NULL);",
                                               "CREATE TABLE IF NOT EXISTS schema_migrations(version BIGINT PRIMARY KEY,"
                                               " applied_ms BIGINT NOT NULL, description TEXT NOT NULL);"));
        if (rc == SQL_OK) rc = sql_exec(c->q, storage_is_pg(c) ? migrations[i].pg : migrations[i].sql);
        if (rc != SQL_OK) {
            samda_fail(err, SAMDA_EDB, "migrating index %s to schema version %d: %s", s->db_path,
                       migrations[i].version, sql_errmsg(c->q));
            storage_tx_rollback(s, c);
            return SAMDA_EDB;
        }
        sql_stmt *ins = storage_stmt(c, "INSERT INTO schema_migrations(version, applied_ms, description)"
                                            " VALUES(?1, ?2, ?3)", err);
        if (!ins) {
            storage_tx_rollback(s, c);
            return err->code;
        }
        sql_bind_int64(ins, 1, migrations[i].version);
        sql_bind_int64(ins, 2, samda_store_now_ms(s));
        sql_bind_text(ins, 3, migrations[i].description);
        rc = storage_exec_stmt(s, ins);
        if (rc == SQL_OK && !storage_is_pg(c)) {
            char pragma[64];
            snprintf(pragma, sizeof pragma, "PRAGMA user_version=%d", migrations[i].version);
            rc = sql_exec(c->q, pragma);
        }
        if (rc != SQL_OK) {
            st = storage_db_fail(err, c, rc, "recording index migration");
            storage_tx_rollback(s, c);
            return st;
        }
        st = storage_tx_commit(s, c, err);
        if (st != SAMDA_OK) return st;
    }
    return SAMDA_OK;
}
