/* storage/index.c: the DICOM index: patients, studies, series, instances and associations.
 *
 * An instance is indexed in one transaction together with its patient/study/series upserts, its
 * association counter and change-feed rows, so a reader never sees a half-indexed instance. The ingest
 * path (samda_store_instance_ingest) adds the object commit and the duplicate policy around it.
 * Every statement is prepared with bound parameters; optional filters are written as
 * "(?n IS NULL OR col = ?n)" so that no SQL text is ever built from values. */
#include <math.h>
#include <stdio.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

static const char *const series_state_names[] = {"receiving", "complete", "incomplete"};
static const char *const assoc_state_names[] = {"open", "released", "aborted", "rejected"};

static int name_index(const char *const *names, int n, const char *v)
{
    for (int i = 0; i < n; i++)
        if (v && strcmp(names[i], v) == 0) return i;
    return 0;
}

void samda_instance_meta_init(samda_instance_meta *m)
{
    memset(m, 0, sizeof *m);
    m->pixel_spacing[0] = m->pixel_spacing[1] = NAN;
    for (int i = 0; i < 3; i++) m->image_position[i] = NAN;
    for (int i = 0; i < 6; i++) m->image_orientation[i] = NAN;
    m->slice_thickness = m->rescale_slope = m->rescale_intercept = NAN;
    m->window_center = m->window_width = NAN;
}

#define TERMINATED(field) (strnlen((field), sizeof(field)) < sizeof(field))

static samda_status validate_meta(const samda_instance_meta *m, samda_error *err)
{
    if (!m) return samda_fail(err, SAMDA_EINVAL, "indexing instance: no metadata");
    if (!TERMINATED(m->patient_id) || !TERMINATED(m->patient_name) || !TERMINATED(m->study_uid) ||
        !TERMINATED(m->study_date) || !TERMINATED(m->study_description) || !TERMINATED(m->accession_number) ||
        !TERMINATED(m->series_uid) || !TERMINATED(m->modality) || !TERMINATED(m->body_part) ||
        !TERMINATED(m->series_description) || !TERMINATED(m->sop_uid) || !TERMINATED(m->sop_class_uid) ||
        !TERMINATED(m->transfer_syntax_uid) || !TERMINATED(m->calling_ae) || !TERMINATED(m->site))
        return samda_fail(err, SAMDA_EINVAL, "indexing instance: a text field is not NUL-terminated");
    if (!samda_uid_is_valid(m->study_uid))
        return samda_fail(err, SAMDA_EBADUID, "indexing instance: StudyInstanceUID is not a valid UID");
    if (!samda_uid_is_valid(m->series_uid))
        return samda_fail(err, SAMDA_EBADUID, "indexing instance: SeriesInstanceUID is not a valid UID");
    if (!samda_uid_is_valid(m->sop_uid))
        return samda_fail(err, SAMDA_EBADUID, "indexing instance: SOPInstanceUID is not a valid UID");
    if (!samda_uid_is_valid(m->sop_class_uid))
        return samda_fail(err, SAMDA_EBADUID, "indexing instance %s: SOPClassUID is not a valid UID", m->sop_uid);
    if (m->transfer_syntax_uid[0] && !samda_uid_is_valid(m->transfer_syntax_uid))
        return samda_fail(err, SAMDA_EBADUID, "indexing instance %s: TransferSyntaxUID is not a valid UID",
                          m->sop_uid);
    if (m->study_date[0]) {
        bool ok = strlen(m->study_date) == 8;
        for (int i = 0; ok && i < 8; i++) ok = m->study_date[i] >= '0' && m->study_date[i] <= '9';
        if (!ok) return samda_fail(err, SAMDA_EINVAL, "indexing instance %s: StudyDate is not YYYYMMDD", m->sop_uid);
    }
    return SAMDA_OK;
}

/* Indexing one instance (inside a write transaction) ------------------------------------------- */

static const char SQL_PATIENT_UPSERT[] =
    "INSERT INTO patients(patient_id, patient_name) VALUES(?1, ?2) "
    "ON CONFLICT(patient_id) DO UPDATE SET patient_name = coalesce(excluded.patient_name, patient_name) "
    "RETURNING id";
static const char SQL_STUDY_FIND[] = "SELECT id, patient_ref FROM studies WHERE study_uid = ?1";
static const char SQL_STUDY_INSERT[] =
    "INSERT INTO studies(patient_ref, study_uid, study_date, study_description, accession_number, created_ms,"
    " last_received_ms) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?6)";
static const char SQL_STUDY_TOUCH[] =
    "UPDATE studies SET last_received_ms = max(last_received_ms, ?2),"
    " study_date = coalesce(study_date, ?3), study_description = coalesce(study_description, ?4),"
    " accession_number = coalesce(accession_number, ?5) WHERE id = ?1";
static const char SQL_SERIES_FIND[] = "SELECT id, study_ref, state, modality FROM series WHERE series_uid = ?1";
/* Another SOP class among the series' instances (the instance itself excluded: a replaced copy). */
static const char SQL_SERIES_OTHER_CLASS[] =
    "SELECT sop_class_uid FROM instances WHERE series_ref = ?1 AND sop_class_uid <> ?2 AND sop_uid <> ?3 LIMIT 1";
static const char SQL_SERIES_INSERT[] =
    "INSERT INTO series(study_ref, series_uid, modality, body_part, series_description, series_number, site_id,"
    " first_received_ms, last_received_ms, state_changed_ms) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?8)";
static const char SQL_SERIES_TOUCH[] =
    "UPDATE series SET last_received_ms = max(last_received_ms, ?2), n_instances = n_instances + ?3,"
    " modality = coalesce(modality, ?4), body_part = coalesce(body_part, ?5),"
    " series_description = coalesce(series_description, ?6), series_number = coalesce(series_number, ?7),"
    " site_id = coalesce(site_id, ?8),"
    " state_reason = CASE WHEN state = 'receiving' THEN state_reason ELSE 'new instance after completion' END,"
    " state_changed_ms = CASE WHEN state = 'receiving' THEN state_changed_ms ELSE ?2 END,"
    " state = 'receiving' WHERE id = ?1";
static const char SQL_INSTANCE_FIND[] = "SELECT id, series_ref, file_relpath FROM instances WHERE sop_uid = ?1";
/* ?1 series_ref ... column order shared by INSERT and UPDATE */
static const char SQL_INSTANCE_INSERT[] =
    "INSERT INTO instances(series_ref, sop_uid, sop_class_uid, transfer_syntax_uid, instance_number, rows,"
    " columns, bits_allocated, number_of_frames, pixel_spacing_row, pixel_spacing_col, ipp_x, ipp_y, ipp_z,"
    " iop_rx, iop_ry, iop_rz, iop_cx, iop_cy, iop_cz, slice_thickness, rescale_slope, rescale_intercept,"
    " window_center, window_width, file_relpath, file_size, sha256, received_ms, calling_ae, site_id,"
    " association_id, flags) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,"
    " ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31, ?32, ?33)";
static const char SQL_INSTANCE_UPDATE[] =
    "UPDATE instances SET series_ref = ?1, sop_class_uid = ?3, transfer_syntax_uid = ?4,"
    " instance_number = ?5, rows = ?6, columns = ?7, bits_allocated = ?8, number_of_frames = ?9,"
    " pixel_spacing_row = ?10, pixel_spacing_col = ?11, ipp_x = ?12, ipp_y = ?13, ipp_z = ?14,"
    " iop_rx = ?15, iop_ry = ?16, iop_rz = ?17, iop_cx = ?18, iop_cy = ?19, iop_cz = ?20,"
    " slice_thickness = ?21, rescale_slope = ?22, rescale_intercept = ?23, window_center = ?24,"
    " window_width = ?25, file_relpath = ?26, file_size = ?27, sha256 = ?28, received_ms = ?29,"
    " calling_ae = ?30, site_id = ?31, association_id = ?32, flags = ?33 WHERE sop_uid = ?2";
static const char SQL_ASSOC_COUNT[] =
    "UPDATE associations SET n_instances = n_instances + 1 WHERE id = ?1";
static const char SQL_ASSOC_EXISTS[] = "SELECT state FROM associations WHERE id = ?1";

static int64_t step_id(samda_store *s, sqlite3_stmt *st, int *rc)
{
    *rc = storage_step(s, st);
    int64_t id = 0;
    if (*rc == SQLITE_ROW) {
        id = sqlite3_column_int64(st, 0);
        *rc = SQLITE_OK;
    } else if (*rc == SQLITE_DONE) {
        *rc = SQLITE_OK;
    }
    sqlite3_reset(st);
    return id;
}

static void bind_int_or_null(sqlite3_stmt *st, int i, int v)
{
    if (v) sqlite3_bind_int(st, i, v);
    else sqlite3_bind_null(st, i);
}

static void bind_instance(sqlite3_stmt *st, const samda_instance_meta *m, const samda_object_info *o,
                          int64_t series_id, int64_t site_id, int64_t now)
{
    sqlite3_bind_int64(st, 1, series_id);
    sqlite3_bind_text(st, 2, m->sop_uid, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, m->sop_class_uid, -1, SQLITE_TRANSIENT);
    storage_bind_text(st, 4, m->transfer_syntax_uid);
    bind_int_or_null(st, 5, m->instance_number);
    bind_int_or_null(st, 6, m->rows);
    bind_int_or_null(st, 7, m->columns);
    bind_int_or_null(st, 8, m->bits_allocated);
    bind_int_or_null(st, 9, m->number_of_frames);
    storage_bind_double(st, 10, m->pixel_spacing[0]);
    storage_bind_double(st, 11, m->pixel_spacing[1]);
    for (int i = 0; i < 3; i++) storage_bind_double(st, 12 + i, m->image_position[i]);
    for (int i = 0; i < 6; i++) storage_bind_double(st, 15 + i, m->image_orientation[i]);
    storage_bind_double(st, 21, m->slice_thickness);
    storage_bind_double(st, 22, m->rescale_slope);
    storage_bind_double(st, 23, m->rescale_intercept);
    storage_bind_double(st, 24, m->window_center);
    storage_bind_double(st, 25, m->window_width);
    sqlite3_bind_text(st, 26, o->relpath, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 27, (sqlite3_int64)o->size);
    sqlite3_bind_text(st, 28, o->sha256, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 29, now);
    storage_bind_text(st, 30, m->calling_ae);
    storage_bind_int64_or_null(st, 31, site_id);
    storage_bind_int64_or_null(st, 32, m->association_id);
    sqlite3_bind_int(st, 33, (int)m->flags);
}

/* Index meta + object on c (in a write transaction). old_relpath gets the replaced file's path. */
static samda_status index_instance(samda_store *s, storage_conn *c, const samda_instance_meta *m,
                                   const samda_object_info *o, bool replace, samda_ingest_result *res,
                                   char old_relpath[SAMDA_RELPATH_SIZE], samda_error *err)
{
    const char *what = "indexing instance";
    int rc = SQLITE_OK;
    sqlite3_stmt *st;
    int64_t now = samda_store_now_ms(s);
    old_relpath[0] = '\0';
    memset(res, 0, sizeof *res);
    res->object = *o;

    int64_t site_id = 0;
    if (m->site[0]) {
        samda_status ss = storage_site_lookup(s, c, m->site, &site_id, err);
        if (ss == SAMDA_ENOENT) return samda_fail(err, SAMDA_EINVAL, "%s %s: unknown site", what, m->sop_uid);
        if (ss != SAMDA_OK) return ss;
    }
    if (m->association_id) {
        if (!(st = storage_stmt(c, SQL_ASSOC_EXISTS, err))) return err->code;
        sqlite3_bind_int64(st, 1, m->association_id);
        rc = storage_step(s, st);
        sqlite3_reset(st);
        if (rc == SQLITE_DONE)
            return samda_fail(err, SAMDA_EINVAL, "%s %s: unknown association %lld", what, m->sop_uid,
                              (long long)m->association_id);
        if (rc != SQLITE_ROW) return storage_db_fail(err, c, rc, what);
    }

    /* patient */
    if (!(st = storage_stmt(c, SQL_PATIENT_UPSERT, err))) return err->code;
    sqlite3_bind_text(st, 1, m->patient_id, -1, SQLITE_TRANSIENT); /* '' is the "no PatientID" patient */
    storage_bind_text(st, 2, m->patient_name);
    int64_t patient = step_id(s, st, &rc);
    if (rc != SQLITE_OK) return storage_db_fail(err, c, rc, what);

    /* study: one study, one patient (a PACS flags instances that disagree; samda refuses them) */
    if (!(st = storage_stmt(c, SQL_STUDY_FIND, err))) return err->code;
    sqlite3_bind_text(st, 1, m->study_uid, -1, SQLITE_TRANSIENT);
    rc = storage_step(s, st);
    int64_t study_patient = 0;
    res->study_id = 0;
    if (rc == SQLITE_ROW) {
        res->study_id = sqlite3_column_int64(st, 0);
        study_patient = sqlite3_column_int64(st, 1);
        rc = SQLITE_DONE;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) return storage_db_fail(err, c, rc, what);
    if (res->study_id && study_patient != patient)
        return samda_fail(err, SAMDA_ECONFLICT,
                          "(0010,0020) PatientID differs from the one study %s is indexed with: the instances of "
                          "one study must name one patient (instance %s refused)", m->study_uid, m->sop_uid);
    if (!res->study_id) {
        if (!(st = storage_stmt(c, SQL_STUDY_INSERT, err))) return err->code;
        sqlite3_bind_int64(st, 1, patient);
        sqlite3_bind_text(st, 2, m->study_uid, -1, SQLITE_TRANSIENT);
        storage_bind_text(st, 3, m->study_date);
        storage_bind_text(st, 4, m->study_description);
        storage_bind_text(st, 5, m->accession_number);
        sqlite3_bind_int64(st, 6, now);
        if ((rc = storage_exec_stmt(s, st)) != SQLITE_OK) return storage_db_fail(err, c, rc, what);
        res->study_id = sqlite3_last_insert_rowid(c->db);
        res->new_study = true;
    } else {
        if (!(st = storage_stmt(c, SQL_STUDY_TOUCH, err))) return err->code;
        sqlite3_bind_int64(st, 1, res->study_id);
        sqlite3_bind_int64(st, 2, now);
        storage_bind_text(st, 3, m->study_date);
        storage_bind_text(st, 4, m->study_description);
        storage_bind_text(st, 5, m->accession_number);
        if ((rc = storage_exec_stmt(s, st)) != SQLITE_OK) return storage_db_fail(err, c, rc, what);
    }

    /* instance lookup first: a replaced instance does not count twice */
    if (!(st = storage_stmt(c, SQL_INSTANCE_FIND, err))) return err->code;
    sqlite3_bind_text(st, 1, m->sop_uid, -1, SQLITE_TRANSIENT);
    rc = storage_step(s, st);
    int64_t existing = 0, existing_series = 0;
    if (rc == SQLITE_ROW) {
        existing = sqlite3_column_int64(st, 0);
        existing_series = sqlite3_column_int64(st, 1);
        storage_col_text(st, 2, old_relpath, SAMDA_RELPATH_SIZE);
        rc = SQLITE_DONE;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) return storage_db_fail(err, c, rc, what);
    if (existing && !replace) {
        old_relpath[0] = '\0';
        return samda_fail(err, SAMDA_EEXIST, "%s %s: already indexed", what, m->sop_uid);
    }

    /* series */
    if (!(st = storage_stmt(c, SQL_SERIES_FIND, err))) return err->code;
    sqlite3_bind_text(st, 1, m->series_uid, -1, SQLITE_TRANSIENT);
    rc = storage_step(s, st);
    bool reopened = false;
    if (rc == SQLITE_ROW) {
        res->series_id = sqlite3_column_int64(st, 0);
        int64_t study_ref = sqlite3_column_int64(st, 1);
        reopened = strcmp((const char *)sqlite3_column_text(st, 2), "receiving") != 0;
        char series_modality[SAMDA_CS_SIZE];
        storage_col_text(st, 3, series_modality, sizeof series_modality);
        sqlite3_reset(st);
        if (study_ref != res->study_id) {
            old_relpath[0] = '\0';
            return samda_fail(err, SAMDA_ECONFLICT, "(0020,000D) StudyInstanceUID differs from the study that series "
                              "%s is indexed in (instance %s refused)", m->series_uid, m->sop_uid);
        }
        if (series_modality[0] && m->modality[0] && strcmp(series_modality, m->modality) != 0) {
            old_relpath[0] = '\0';
            return samda_fail(err, SAMDA_ECONFLICT, "(0008,0060) Modality %s differs from the %s of series %s: one "
                              "series, one modality (instance %s refused)", m->modality, series_modality,
                              m->series_uid, m->sop_uid);
        }
        if (!(st = storage_stmt(c, SQL_SERIES_OTHER_CLASS, err))) return err->code;
        sqlite3_bind_int64(st, 1, res->series_id);
        sqlite3_bind_text(st, 2, m->sop_class_uid, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 3, m->sop_uid, -1, SQLITE_TRANSIENT);
        rc = storage_step(s, st);
        if (rc == SQLITE_ROW) {
            char other[SAMDA_UID_SIZE];
            storage_col_text(st, 0, other, sizeof other);
            sqlite3_reset(st);
            old_relpath[0] = '\0';
            return samda_fail(err, SAMDA_ECONFLICT, "(0008,0016) SOPClassUID %s differs from the %s of series %s: one "
                              "series, one kind of image (instance %s refused)", m->sop_class_uid, other,
                              m->series_uid, m->sop_uid);
        }
        sqlite3_reset(st);
        if (rc != SQLITE_DONE) return storage_db_fail(err, c, rc, what);
        if (!(st = storage_stmt(c, SQL_SERIES_TOUCH, err))) return err->code;
        sqlite3_bind_int64(st, 1, res->series_id);
        sqlite3_bind_int64(st, 2, now);
        sqlite3_bind_int(st, 3, existing ? 0 : 1);
        storage_bind_text(st, 4, m->modality);
        storage_bind_text(st, 5, m->body_part);
        storage_bind_text(st, 6, m->series_description);
        bind_int_or_null(st, 7, m->series_number);
        storage_bind_int64_or_null(st, 8, site_id);
        if ((rc = storage_exec_stmt(s, st)) != SQLITE_OK) return storage_db_fail(err, c, rc, what);
    } else if (rc == SQLITE_DONE) {
        sqlite3_reset(st);
        if (!(st = storage_stmt(c, SQL_SERIES_INSERT, err))) return err->code;
        sqlite3_bind_int64(st, 1, res->study_id);
        sqlite3_bind_text(st, 2, m->series_uid, -1, SQLITE_TRANSIENT);
        storage_bind_text(st, 3, m->modality);
        storage_bind_text(st, 4, m->body_part);
        storage_bind_text(st, 5, m->series_description);
        bind_int_or_null(st, 6, m->series_number);
        storage_bind_int64_or_null(st, 7, site_id);
        sqlite3_bind_int64(st, 8, now);
        if ((rc = storage_exec_stmt(s, st)) != SQLITE_OK) return storage_db_fail(err, c, rc, what);
        res->series_id = sqlite3_last_insert_rowid(c->db);
        res->new_series = true;
        if (!existing) { /* count the first instance */
            if (!(st = storage_stmt(c, "UPDATE series SET n_instances = 1 WHERE id = ?1", err))) return err->code;
            sqlite3_bind_int64(st, 1, res->series_id);
            if ((rc = storage_exec_stmt(s, st)) != SQLITE_OK) return storage_db_fail(err, c, rc, what);
        }
    } else {
        sqlite3_reset(st);
        return storage_db_fail(err, c, rc, what);
    }
    if (existing && existing_series != res->series_id) {
        old_relpath[0] = '\0';
        return samda_fail(err, SAMDA_EINVAL, "%s %s: SOP instance already indexed in another series", what,
                          m->sop_uid);
    }

    /* instance */
    if (!(st = storage_stmt(c, existing ? SQL_INSTANCE_UPDATE : SQL_INSTANCE_INSERT, err))) return err->code;
    bind_instance(st, m, o, res->series_id, site_id, now);
    rc = storage_exec_stmt(s, st);
    if (rc != SQLITE_OK) {
        old_relpath[0] = '\0';
        return storage_db_fail(err, c, rc, what);
    }
    res->instance_id = existing ? existing : sqlite3_last_insert_rowid(c->db);
    res->outcome = existing ? SAMDA_INGEST_REPLACED : SAMDA_INGEST_NEW;
    if (m->association_id && !existing) {
        if (!(st = storage_stmt(c, SQL_ASSOC_COUNT, err))) return err->code;
        sqlite3_bind_int64(st, 1, m->association_id);
        if ((rc = storage_exec_stmt(s, st)) != SQLITE_OK) return storage_db_fail(err, c, rc, what);
    }

    /* change feed and intents */
    samda_status ss = storage_change_add(s, c, "instance", m->sop_uid,
                                         existing ? SAMDA_CHANGE_UPDATED : SAMDA_CHANGE_NEW, err);
    if (ss == SAMDA_OK && res->new_series) ss = storage_change_add(s, c, "series", m->series_uid, SAMDA_CHANGE_NEW, err);
    if (ss == SAMDA_OK && reopened) ss = storage_change_add(s, c, "series", m->series_uid, SAMDA_CHANGE_STATE, err);
    if (ss == SAMDA_OK && res->new_study) ss = storage_change_add(s, c, "study", m->study_uid, SAMDA_CHANGE_NEW, err);
    if (ss == SAMDA_OK) ss = storage_intent_claim(s, c, o->relpath, err);
    if (ss == SAMDA_OK && existing && strcmp(old_relpath, o->relpath) != 0)
        ss = storage_intent_add(s, c, old_relpath, err); /* removed after commit; a crash leaves it to open */
    else if (ss == SAMDA_OK)
        old_relpath[0] = '\0';
    if (ss != SAMDA_OK) old_relpath[0] = '\0';
    return ss;
}

samda_status samda_store_instance_insert(samda_store *s, const samda_instance_meta *meta,
                                         const samda_object_info *object, bool replace,
                                         samda_ingest_result *res, samda_error *err)
{
    STORAGE_ERR(err);
    samda_status st = validate_meta(meta, err);
    if (st != SAMDA_OK) return st;
    if (!object || !samda_store_relpath_is_valid(object->relpath) || strlen(object->sha256) != 64)
        return samda_fail(err, SAMDA_EINVAL, "indexing instance %s: object info incomplete", meta->sop_uid);
    samda_ingest_result local;
    if (!res) res = &local;
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    char old[SAMDA_RELPATH_SIZE];
    st = storage_tx_begin(s, c, err);
    if (st == SAMDA_OK) {
        st = index_instance(s, c, meta, object, replace, res, old, err);
        if (st == SAMDA_OK) st = storage_tx_commit(s, c, err);
        else storage_tx_rollback(s, c);
    }
    storage_conn_put(s, c);
    if (st == SAMDA_OK && old[0]) storage_object_unlink(s, old);
    return st;
}

/* Highest ".r<n>" revision in a relpath (1 when none). */
static unsigned relpath_rev(const char *relpath)
{
    const char *r = strstr(relpath, ".r");
    const char *last = NULL;
    while (r) {
        last = r;
        r = strstr(r + 2, ".r");
    }
    if (!last) return 1;
    unsigned v = (unsigned)strtoul(last + 2, NULL, 10);
    return v > 1 ? v : 1;
}

/* An identical copy of an instance that came over an aborted association arrives again over a live
 * one (a PACS re-sending after a dropped association): the instance now belongs to the new
 * association and loses its aborted flag, and a series that was set aside as incomplete (every
 * instance from aborted associations) is receiving again, so the scheduler decides it anew. Without
 * this a fully re-sent series would stay incomplete for good, its bytes being unchanged. */
static samda_status adopt_identical(samda_store *s, const samda_instance_meta *meta, samda_error *err)
{
    if (meta->association_id <= 0) return SAMDA_OK;
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    samda_status res = storage_tx_begin(s, c, err);
    if (res != SAMDA_OK) {
        storage_conn_put(s, c);
        return res;
    }
    int64_t now = samda_store_now_ms(s);
    sqlite3_stmt *st = storage_stmt(c, "UPDATE instances SET association_id = ?2, flags = flags & ~1"
                                       " WHERE sop_uid = ?1 AND (flags & 1) != 0", err);
    int rc = SQLITE_OK;
    if (!st) res = err->code;
    else {
        sqlite3_bind_text(st, 1, meta->sop_uid, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 2, meta->association_id);
        rc = storage_exec_stmt(s, st);
        if (rc != SQLITE_OK) res = storage_db_fail(err, c, rc, "re-linking a re-sent instance");
    }
    if (res == SAMDA_OK && sqlite3_changes(c->db) > 0) {
        st = storage_stmt(c, "UPDATE series SET state = 'receiving', state_reason = 're-sent after an aborted association',"
                             " state_changed_ms = ?2, last_received_ms = max(last_received_ms, ?2)"
                             " WHERE id = (SELECT series_ref FROM instances WHERE sop_uid = ?1) AND state = 'incomplete'",
                          err);
        if (!st) res = err->code;
        else {
            sqlite3_bind_text(st, 1, meta->sop_uid, -1, SQLITE_TRANSIENT);
            sqlite3_bind_int64(st, 2, now);
            rc = storage_exec_stmt(s, st);
            if (rc != SQLITE_OK) res = storage_db_fail(err, c, rc, "re-opening a series set aside as incomplete");
            else if (sqlite3_changes(c->db) > 0)
                res = storage_change_add(s, c, "series", meta->series_uid, SAMDA_CHANGE_STATE, err);
        }
    }
    if (res == SAMDA_OK) res = storage_tx_commit(s, c, err);
    else storage_tx_rollback(s, c);
    storage_conn_put(s, c);
    return res;
}

/* Fill res for an instance that is already indexed with identical content. */
static samda_status identical_result(samda_store *s, const samda_instance_meta *meta, samda_ingest_result *res,
                                     samda_error *err)
{
    samda_status ast = adopt_identical(s, meta, err);
    if (ast != SAMDA_OK) return ast;
    const char *sop_uid = meta->sop_uid;
    samda_instance_row row;
    samda_status st = samda_store_instance_get(s, sop_uid, &row, err);
    if (st != SAMDA_OK) return st;
    memset(res, 0, sizeof *res);
    res->outcome = SAMDA_INGEST_IDENTICAL;
    res->instance_id = row.id;
    res->series_id = row.series_id;
    res->object = row.object;
    samda_series_info si;
    if (samda_store_series_get(s, row.meta.series_uid, &si, NULL) == SAMDA_OK) res->study_id = si.study_id;
    return SAMDA_OK;
}

static samda_status index_tx(samda_store *s, const samda_instance_meta *meta, const samda_object_info *obj,
                             bool replace, samda_ingest_result *res, samda_error *err)
{
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    char old[SAMDA_RELPATH_SIZE] = "";
    samda_status st = storage_tx_begin(s, c, err);
    if (st == SAMDA_OK) {
        st = index_instance(s, c, meta, obj, replace, res, old, err);
        if (st == SAMDA_OK) st = storage_tx_commit(s, c, err);
        else storage_tx_rollback(s, c);
    }
    storage_conn_put(s, c);
    if (st == SAMDA_OK && old[0]) storage_object_unlink(s, old); /* the replaced file */
    return st;
}

samda_status samda_store_instance_ingest(samda_store *s, samda_tmp_file *tmp, const samda_instance_meta *meta,
                                         samda_dup_policy policy, samda_ingest_result *res, samda_error *err)
{
    STORAGE_ERR(err);
    samda_ingest_result local;
    if (!res) res = &local;
    memset(res, 0, sizeof *res);
    if (!tmp || tmp->fd < 0) return samda_fail(err, SAMDA_EINVAL, "storing instance: temporary file not open");
    samda_status st = validate_meta(meta, err);
    if (st != SAMDA_OK) {
        samda_store_object_tmp_discard(s, tmp);
        return st;
    }
    samda_object_info obj;
    st = storage_sha256_fd(tmp->fd, obj.sha256, &obj.size, err);
    if (st != SAMDA_OK) {
        samda_store_object_tmp_discard(s, tmp);
        return st;
    }

    samda_object_info have;
    st = samda_store_instance_lookup(s, meta->sop_uid, &have, NULL, err);
    bool exists = st == SAMDA_OK;
    if (st != SAMDA_OK && st != SAMDA_ENOENT) {
        samda_store_object_tmp_discard(s, tmp);
        return st;
    }
    unsigned rev = 0;
    if (exists) {
        bool identical = have.size == obj.size && strcmp(have.sha256, obj.sha256) == 0;
        if (policy == SAMDA_DUP_REJECT || (!identical && policy == SAMDA_DUP_IGNORE_IDENTICAL)) {
            samda_store_object_tmp_discard(s, tmp);
            return samda_fail(err, SAMDA_EEXIST, "storing instance %s: already stored%s (duplicate policy)",
                              meta->sop_uid, identical ? "" : " with different content");
        }
        if (identical) {
            samda_store_object_tmp_discard(s, tmp);
            return identical_result(s, meta, res, err);
        }
        rev = relpath_rev(have.relpath) + 1;
    }
    /* A file already at the name (a concurrent writer of the same SOP, or a replaced revision not yet
     * removed) moves us to the next revision name; the temporary file survives SAMDA_EEXIST. */
    for (int tries = 0;; tries++) {
        st = storage_object_commit_rev(s, tmp, SAMDA_OBJECT_INSTANCE, meta->study_uid, meta->series_uid,
                                       meta->sop_uid, rev, &obj, err);
        if (st != SAMDA_EEXIST || tries >= 8) break;
        rev = rev < 2 ? 2 : rev + 1;
    }
    if (tmp->path[0]) samda_store_object_tmp_discard(s, tmp);
    if (st != SAMDA_OK) return st;

    st = index_tx(s, meta, &obj, exists, res, err);
    if (st == SAMDA_EEXIST && !exists) {
        /* Another thread indexed the same SOP between our lookup and our transaction. */
        samda_status again = samda_store_instance_lookup(s, meta->sop_uid, &have, NULL, err);
        bool identical = again == SAMDA_OK && have.size == obj.size && strcmp(have.sha256, obj.sha256) == 0;
        if (again == SAMDA_OK && identical && policy != SAMDA_DUP_REJECT) {
            storage_object_unlink(s, obj.relpath);
            return identical_result(s, meta, res, err);
        }
        if (again == SAMDA_OK && policy == SAMDA_DUP_OVERWRITE) st = index_tx(s, meta, &obj, true, res, err);
        else if (again == SAMDA_OK) samda_fail(err, SAMDA_EEXIST, "storing instance %s: stored concurrently with "
                                                "different content (duplicate policy)", meta->sop_uid);
    }
    if (st != SAMDA_OK) storage_object_unlink(s, obj.relpath);
    return st;
}

/* Reading -------------------------------------------------------------------------------------- */

samda_status samda_store_instance_lookup(samda_store *s, const char *sop_uid, samda_object_info *object,
                                         int64_t *instance_id, samda_error *err)
{
    STORAGE_ERR(err);
    if (!samda_uid_is_valid(sop_uid))
        return samda_fail(err, SAMDA_EBADUID, "looking up instance: SOP instance UID is not a valid UID");
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    samda_status res = SAMDA_OK;
    sqlite3_stmt *st = storage_stmt(c, "SELECT id, file_relpath, file_size, sha256 FROM instances WHERE sop_uid = ?1",
                                    err);
    if (!st) {
        storage_conn_put(s, c);
        return err->code;
    }
    sqlite3_bind_text(st, 1, sop_uid, -1, SQLITE_TRANSIENT);
    int rc = storage_step(s, st);
    if (rc == SQLITE_ROW) {
        if (instance_id) *instance_id = sqlite3_column_int64(st, 0);
        if (object) {
            storage_col_text(st, 1, object->relpath, sizeof object->relpath);
            object->size = (uint64_t)sqlite3_column_int64(st, 2);
            storage_col_text(st, 3, object->sha256, sizeof object->sha256);
        }
    } else if (rc == SQLITE_DONE) {
        res = samda_fail(err, SAMDA_ENOENT, "looking up instance %s: not indexed", sop_uid);
    } else {
        res = storage_db_fail(err, c, rc, "looking up instance");
    }
    sqlite3_reset(st);
    storage_conn_put(s, c);
    return res;
}

#define INSTANCE_COLS                                                                                       \
    "SELECT i.id, i.series_ref, p.patient_id, p.patient_name, st.study_uid, st.study_date,"                 \
    " st.study_description, st.accession_number, se.series_uid, se.modality, se.body_part,"                 \
    " se.series_description, se.series_number, i.sop_uid, i.sop_class_uid, i.transfer_syntax_uid,"          \
    " i.instance_number, i.rows, i.columns, i.bits_allocated, i.number_of_frames, i.pixel_spacing_row,"     \
    " i.pixel_spacing_col, i.ipp_x, i.ipp_y, i.ipp_z, i.iop_rx, i.iop_ry, i.iop_rz, i.iop_cx, i.iop_cy,"    \
    " i.iop_cz, i.slice_thickness, i.rescale_slope, i.rescale_intercept, i.window_center, i.window_width,"  \
    " i.calling_ae, si.name, i.association_id, i.flags, i.file_relpath, i.sha256, i.file_size,"             \
    " i.received_ms FROM instances i JOIN series se ON se.id = i.series_ref"                                \
    " JOIN studies st ON st.id = se.study_ref JOIN patients p ON p.id = st.patient_ref"                     \
    " LEFT JOIN sites si ON si.id = i.site_id "

static const char SQL_INSTANCE_GET[] = INSTANCE_COLS "WHERE i.sop_uid = ?1";
static const char SQL_INSTANCE_LIST[] = INSTANCE_COLS
    "WHERE se.series_uid = ?1 ORDER BY i.instance_number IS NULL, i.instance_number, i.sop_uid LIMIT ?2 OFFSET ?3";

static void read_instance(sqlite3_stmt *st, samda_instance_row *r)
{
    memset(r, 0, sizeof *r);
    samda_instance_meta *m = &r->meta;
    samda_instance_meta_init(m);
    r->id = sqlite3_column_int64(st, 0);
    r->series_id = sqlite3_column_int64(st, 1);
    storage_col_text(st, 2, m->patient_id, sizeof m->patient_id);
    storage_col_text(st, 3, m->patient_name, sizeof m->patient_name);
    storage_col_text(st, 4, m->study_uid, sizeof m->study_uid);
    storage_col_text(st, 5, m->study_date, sizeof m->study_date);
    storage_col_text(st, 6, m->study_description, sizeof m->study_description);
    storage_col_text(st, 7, m->accession_number, sizeof m->accession_number);
    storage_col_text(st, 8, m->series_uid, sizeof m->series_uid);
    storage_col_text(st, 9, m->modality, sizeof m->modality);
    storage_col_text(st, 10, m->body_part, sizeof m->body_part);
    storage_col_text(st, 11, m->series_description, sizeof m->series_description);
    m->series_number = sqlite3_column_int(st, 12);
    storage_col_text(st, 13, m->sop_uid, sizeof m->sop_uid);
    storage_col_text(st, 14, m->sop_class_uid, sizeof m->sop_class_uid);
    storage_col_text(st, 15, m->transfer_syntax_uid, sizeof m->transfer_syntax_uid);
    m->instance_number = sqlite3_column_int(st, 16);
    m->rows = sqlite3_column_int(st, 17);
    m->columns = sqlite3_column_int(st, 18);
    m->bits_allocated = sqlite3_column_int(st, 19);
    m->number_of_frames = sqlite3_column_int(st, 20);
    m->pixel_spacing[0] = storage_col_double(st, 21);
    m->pixel_spacing[1] = storage_col_double(st, 22);
    for (int i = 0; i < 3; i++) m->image_position[i] = storage_col_double(st, 23 + i);
    for (int i = 0; i < 6; i++) m->image_orientation[i] = storage_col_double(st, 26 + i);
    m->slice_thickness = storage_col_double(st, 32);
    m->rescale_slope = storage_col_double(st, 33);
    m->rescale_intercept = storage_col_double(st, 34);
    m->window_center = storage_col_double(st, 35);
    m->window_width = storage_col_double(st, 36);
    storage_col_text(st, 37, m->calling_ae, sizeof m->calling_ae);
    storage_col_text(st, 38, m->site, sizeof m->site);
    m->association_id = sqlite3_column_int64(st, 39);
    m->flags = (unsigned)sqlite3_column_int(st, 40);
    storage_col_text(st, 41, r->object.relpath, sizeof r->object.relpath);
    storage_col_text(st, 42, r->object.sha256, sizeof r->object.sha256);
    r->object.size = (uint64_t)sqlite3_column_int64(st, 43);
    r->received_at_ms = sqlite3_column_int64(st, 44);
}

static void read_instance_v(sqlite3_stmt *st, void *row) { read_instance(st, row); }

samda_status samda_store_instance_get(samda_store *s, const char *sop_uid, samda_instance_row *out,
                                      samda_error *err)
{
    STORAGE_ERR(err);
    if (!samda_uid_is_valid(sop_uid))
        return samda_fail(err, SAMDA_EBADUID, "reading instance: SOP instance UID is not a valid UID");
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    sqlite3_stmt *st = storage_stmt(c, SQL_INSTANCE_GET, err);
    samda_status res = err->code;
    if (st) {
        sqlite3_bind_text(st, 1, sop_uid, -1, SQLITE_TRANSIENT);
        void *rows;
        size_t n;
        res = storage_collect(s, c, st, sizeof *out, read_instance_v, NULL, &rows, &n, "reading instance", err);
        if (res == SAMDA_OK && n == 0) res = samda_fail(err, SAMDA_ENOENT, "reading instance %s: not indexed", sop_uid);
        if (res == SAMDA_OK) memcpy(out, rows, sizeof *out);
        free(rows);
    }
    storage_conn_put(s, c);
    return res;
}

samda_status samda_store_instance_list(samda_store *s, const char *series_uid, size_t limit, size_t offset,
                                       samda_instance_row **rows, size_t *n, samda_error *err)
{
    STORAGE_ERR(err);
    *rows = NULL;
    *n = 0;
    if (!samda_uid_is_valid(series_uid))
        return samda_fail(err, SAMDA_EBADUID, "listing instances: series UID is not a valid UID");
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    sqlite3_stmt *st = storage_stmt(c, SQL_INSTANCE_LIST, err);
    samda_status res = err->code;
    if (st) {
        sqlite3_bind_text(st, 1, series_uid, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)(limit ? storage_list_limit(limit) : STORAGE_LIST_MAX));
        sqlite3_bind_int64(st, 3, (sqlite3_int64)offset);
        res = storage_collect(s, c, st, sizeof **rows, read_instance_v, NULL, (void **)rows, n, "listing instances", err);
    }
    storage_conn_put(s, c);
    return res;
}

/* Series ----------------------------------------------------------------------------------------- */

#define SERIES_COLS                                                                                         \
    "SELECT se.id, se.study_ref, st.study_uid, se.series_uid, se.modality, se.body_part,"                   \
    " se.series_description, se.series_number, si.name, se.n_instances, se.first_received_ms,"              \
    " se.last_received_ms, se.state, se.state_reason, se.state_changed_ms FROM series se"                   \
    " JOIN studies st ON st.id = se.study_ref JOIN patients p ON p.id = st.patient_ref"                     \
    " LEFT JOIN sites si ON si.id = se.site_id "

static const char SQL_SERIES_QUERY[] = SERIES_COLS
    "WHERE (?1 IS NULL OR st.study_uid = ?1) AND (?2 IS NULL OR se.series_uid = ?2)"
    " AND (?3 IS NULL OR p.patient_id = ?3) AND (?4 IS NULL OR se.modality = ?4)"
    " AND (?5 IS NULL OR st.study_date >= ?5) AND (?6 IS NULL OR st.study_date <= ?6)"
    " AND (?7 IS NULL OR si.name = ?7)"
    " ORDER BY st.id, se.series_number IS NULL, se.series_number, se.id LIMIT ?8 OFFSET ?9";
static const char SQL_SERIES_IDLE[] = SERIES_COLS
    "WHERE se.state = 'receiving' AND se.last_received_ms <= ?1 ORDER BY se.last_received_ms LIMIT ?2";

static void read_series(sqlite3_stmt *st, void *row)
{
    samda_series_info *r = row;
    memset(r, 0, sizeof *r);
    r->id = sqlite3_column_int64(st, 0);
    r->study_id = sqlite3_column_int64(st, 1);
    storage_col_text(st, 2, r->study_uid, sizeof r->study_uid);
    storage_col_text(st, 3, r->series_uid, sizeof r->series_uid);
    storage_col_text(st, 4, r->modality, sizeof r->modality);
    storage_col_text(st, 5, r->body_part, sizeof r->body_part);
    storage_col_text(st, 6, r->series_description, sizeof r->series_description);
    r->series_number = sqlite3_column_int(st, 7);
    storage_col_text(st, 8, r->site, sizeof r->site);
    r->n_instances = sqlite3_column_int64(st, 9);
    r->first_received_ms = sqlite3_column_int64(st, 10);
    r->last_received_ms = sqlite3_column_int64(st, 11);
    r->state = (samda_series_state)name_index(series_state_names, 3, (const char *)sqlite3_column_text(st, 12));
    storage_col_text(st, 13, r->state_reason, sizeof r->state_reason);
    r->state_changed_ms = sqlite3_column_int64(st, 14);
}

static samda_status check_query(const samda_index_query *q, const char *what, samda_error *err)
{
    if (!q) return SAMDA_OK;
    const char *uids[2] = {q->study_uid, q->series_uid};
    for (int i = 0; i < 2; i++)
        if (uids[i] && *uids[i] && !samda_uid_is_valid(uids[i]))
            return samda_fail(err, SAMDA_EBADUID, "%s: filter UID is not a valid UID", what);
    const char *texts[5] = {q->patient_id, q->modality, q->date_from, q->date_to, q->site};
    for (int i = 0; i < 5; i++)
        if (!storage_len_ok(texts[i], SAMDA_PN_SIZE))
            return samda_fail(err, SAMDA_EINVAL, "%s: filter value too long", what);
    return SAMDA_OK;
}

static samda_status series_select(samda_store *s, const samda_index_query *q, samda_series_info **rows, size_t *n,
                                  samda_error *err)
{
    static const samda_index_query none = {0};
    if (!q) q = &none;
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    sqlite3_stmt *st = storage_stmt(c, SQL_SERIES_QUERY, err);
    samda_status res = err->code;
    if (st) {
        storage_bind_text(st, 1, q->study_uid);
        storage_bind_text(st, 2, q->series_uid);
        storage_bind_text(st, 3, q->patient_id);
        storage_bind_text(st, 4, q->modality);
        storage_bind_text(st, 5, q->date_from);
        storage_bind_text(st, 6, q->date_to);
        storage_bind_text(st, 7, q->site);
        sqlite3_bind_int64(st, 8, (sqlite3_int64)storage_list_limit(q->limit));
        sqlite3_bind_int64(st, 9, (sqlite3_int64)q->offset);
        res = storage_collect(s, c, st, sizeof **rows, read_series, NULL, (void **)rows, n, "querying series", err);
    }
    storage_conn_put(s, c);
    return res;
}

samda_status samda_store_series_query(samda_store *s, const samda_index_query *q, samda_series_info **rows,
                                      size_t *n, samda_error *err)
{
    STORAGE_ERR(err);
    *rows = NULL;
    *n = 0;
    samda_status st = check_query(q, "querying series", err);
    return st != SAMDA_OK ? st : series_select(s, q, rows, n, err);
}

samda_status samda_store_series_list(samda_store *s, const char *study_uid, samda_series_info **rows, size_t *n,
                                     samda_error *err)
{
    STORAGE_ERR(err);
    *rows = NULL;
    *n = 0;
    if (!samda_uid_is_valid(study_uid))
        return samda_fail(err, SAMDA_EBADUID, "listing series: study UID is not a valid UID");
    samda_index_query q = {.study_uid = study_uid, .limit = STORAGE_LIST_MAX};
    return series_select(s, &q, rows, n, err);
}

samda_status samda_store_series_get(samda_store *s, const char *series_uid, samda_series_info *out,
                                    samda_error *err)
{
    STORAGE_ERR(err);
    if (!samda_uid_is_valid(series_uid))
        return samda_fail(err, SAMDA_EBADUID, "reading series: series UID is not a valid UID");
    samda_index_query q = {.series_uid = series_uid, .limit = 1};
    samda_series_info *rows;
    size_t n;
    samda_status st = series_select(s, &q, &rows, &n, err);
    if (st != SAMDA_OK) return st;
    if (n == 0) st = samda_fail(err, SAMDA_ENOENT, "reading series %s: not indexed", series_uid);
    else *out = rows[0];
    free(rows);
    return st;
}

samda_status samda_store_series_idle(samda_store *s, int64_t idle_before_ms, size_t limit,
                                     samda_series_info **rows, size_t *n, samda_error *err)
{
    STORAGE_ERR(err);
    *rows = NULL;
    *n = 0;
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    sqlite3_stmt *st = storage_stmt(c, SQL_SERIES_IDLE, err);
    samda_status res = err->code;
    if (st) {
        sqlite3_bind_int64(st, 1, idle_before_ms);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)storage_list_limit(limit));
        res = storage_collect(s, c, st, sizeof **rows, read_series, NULL, (void **)rows, n, "listing idle series", err);
    }
    storage_conn_put(s, c);
    return res;
}

samda_status samda_store_series_set_state(samda_store *s, const char *series_uid, samda_series_state state,
                                          const char *reason, samda_error *err)
{
    STORAGE_ERR(err);
    if (!samda_uid_is_valid(series_uid))
        return samda_fail(err, SAMDA_EBADUID, "setting series state: series UID is not a valid UID");
    if ((int)state < 0 || (int)state > SAMDA_SERIES_INCOMPLETE)
        return samda_fail(err, SAMDA_EINVAL, "setting series state: unknown state %d", (int)state);
    char why[SAMDA_MESSAGE_SIZE] = "";
    if (reason) snprintf(why, sizeof why, "%s", reason);
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    samda_status res = storage_tx_begin(s, c, err);
    if (res == SAMDA_OK) {
        sqlite3_stmt *st = storage_stmt(c, "UPDATE series SET state = ?2, state_reason = ?3, state_changed_ms = ?4"
                                           " WHERE series_uid = ?1", err);
        if (!st) {
            res = err->code;
        } else {
            sqlite3_bind_text(st, 1, series_uid, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(st, 2, series_state_names[state], -1, SQLITE_STATIC);
            storage_bind_text(st, 3, why);
            sqlite3_bind_int64(st, 4, samda_store_now_ms(s));
            int rc = storage_exec_stmt(s, st);
            if (rc != SQLITE_OK) res = storage_db_fail(err, c, rc, "setting series state");
            else if (sqlite3_changes(c->db) == 0)
                res = samda_fail(err, SAMDA_ENOENT, "setting series state: series %s not indexed", series_uid);
            else res = storage_change_add(s, c, "series", series_uid, SAMDA_CHANGE_STATE, err);
        }
        if (res == SAMDA_OK) res = storage_tx_commit(s, c, err);
        else storage_tx_rollback(s, c);
    }
    storage_conn_put(s, c);
    return res;
}

samda_status samda_store_series_content_hash(samda_store *s, const char *series_uid,
                                             char out[SAMDA_SHA256_HEX_SIZE], samda_error *err)
{
    STORAGE_ERR(err);
    out[0] = '\0';
    if (!samda_uid_is_valid(series_uid))
        return samda_fail(err, SAMDA_EBADUID, "hashing series: series UID is not a valid UID");
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    sqlite3_stmt *st = storage_stmt(c, "SELECT group_concat(sop_uid || ':' || sha256, char(10)) FROM"
                                       " (SELECT i.sop_uid, i.sha256 FROM instances i JOIN series se"
                                       " ON se.id = i.series_ref WHERE se.series_uid = ?1 ORDER BY i.sop_uid)", err);
    samda_status res = err->code;
    if (st) {
        sqlite3_bind_text(st, 1, series_uid, -1, SQLITE_TRANSIENT);
        int rc = storage_step(s, st);
        if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL) {
            storage_sha256_hex(sqlite3_column_text(st, 0), (size_t)sqlite3_column_bytes(st, 0), out);
            res = SAMDA_OK;
        } else if (rc == SQLITE_ROW) {
            res = samda_fail(err, SAMDA_ENOENT, "hashing series %s: no instance indexed", series_uid);
        } else {
            res = storage_db_fail(err, c, rc, "hashing series");
        }
        sqlite3_reset(st);
    }
    storage_conn_put(s, c);
    return res;
}

/* Studies ---------------------------------------------------------------------------------------- */

static const char SQL_STUDY_QUERY[] =
    "SELECT st.id, st.study_uid, p.patient_id, p.patient_name, st.study_date, st.study_description,"
    " st.accession_number,"
    " (SELECT group_concat(m, '\\') FROM (SELECT DISTINCT modality AS m FROM series"
    "   WHERE study_ref = st.id AND modality IS NOT NULL ORDER BY m)),"
    " (SELECT count(*) FROM series WHERE study_ref = st.id),"
    " (SELECT coalesce(sum(n_instances), 0) FROM series WHERE study_ref = st.id),"
    " st.last_received_ms"
    " FROM studies st JOIN patients p ON p.id = st.patient_ref"
    " WHERE (?1 IS NULL OR st.study_uid = ?1)"
    " AND (?2 IS NULL OR EXISTS (SELECT 1 FROM series x WHERE x.study_ref = st.id AND x.series_uid = ?2))"
    " AND (?3 IS NULL OR p.patient_id = ?3)"
    " AND (?4 IS NULL OR EXISTS (SELECT 1 FROM series x WHERE x.study_ref = st.id AND x.modality = ?4))"
    " AND (?5 IS NULL OR st.study_date >= ?5) AND (?6 IS NULL OR st.study_date <= ?6)"
    " AND (?7 IS NULL OR EXISTS (SELECT 1 FROM series x JOIN sites y ON y.id = x.site_id"
    "   WHERE x.study_ref = st.id AND y.name = ?7))"
    " ORDER BY st.study_date DESC, st.id DESC LIMIT ?8 OFFSET ?9";

static void read_study(sqlite3_stmt *st, void *row)
{
    samda_study_info *r = row;
    memset(r, 0, sizeof *r);
    r->id = sqlite3_column_int64(st, 0);
    storage_col_text(st, 1, r->study_uid, sizeof r->study_uid);
    storage_col_text(st, 2, r->patient_id, sizeof r->patient_id);
    storage_col_text(st, 3, r->patient_name, sizeof r->patient_name);
    storage_col_text(st, 4, r->study_date, sizeof r->study_date);
    storage_col_text(st, 5, r->study_description, sizeof r->study_description);
    storage_col_text(st, 6, r->accession_number, sizeof r->accession_number);
    storage_col_text(st, 7, r->modalities, sizeof r->modalities);
    r->n_series = sqlite3_column_int64(st, 8);
    r->n_instances = sqlite3_column_int64(st, 9);
    r->last_received_ms = sqlite3_column_int64(st, 10);
}

samda_status samda_store_study_query(samda_store *s, const samda_index_query *q, samda_study_info **rows,
                                     size_t *n, samda_error *err)
{
    STORAGE_ERR(err);
    *rows = NULL;
    *n = 0;
    static const samda_index_query none = {0};
    if (!q) q = &none;
    samda_status res = check_query(q, "querying studies", err);
    if (res != SAMDA_OK) return res;
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    sqlite3_stmt *st = storage_stmt(c, SQL_STUDY_QUERY, err);
    res = err->code;
    if (st) {
        storage_bind_text(st, 1, q->study_uid);
        storage_bind_text(st, 2, q->series_uid);
        storage_bind_text(st, 3, q->patient_id);
        storage_bind_text(st, 4, q->modality);
        storage_bind_text(st, 5, q->date_from);
        storage_bind_text(st, 6, q->date_to);
        storage_bind_text(st, 7, q->site);
        sqlite3_bind_int64(st, 8, (sqlite3_int64)storage_list_limit(q->limit));
        sqlite3_bind_int64(st, 9, (sqlite3_int64)q->offset);
        res = storage_collect(s, c, st, sizeof **rows, read_study, NULL, (void **)rows, n, "querying studies", err);
    }
    storage_conn_put(s, c);
    return res;
}

samda_status samda_store_study_get(samda_store *s, const char *study_uid, samda_study_info *out, samda_error *err)
{
    STORAGE_ERR(err);
    if (!samda_uid_is_valid(study_uid))
        return samda_fail(err, SAMDA_EBADUID, "reading study: study UID is not a valid UID");
    samda_index_query q = {.study_uid = study_uid, .limit = 1};
    samda_study_info *rows;
    size_t n;
    samda_status st = samda_store_study_query(s, &q, &rows, &n, err);
    if (st != SAMDA_OK) return st;
    if (n == 0) st = samda_fail(err, SAMDA_ENOENT, "reading study %s: not indexed", study_uid);
    else *out = rows[0];
    free(rows);
    return st;
}

/* Associations ----------------------------------------------------------------------------------- */

samda_status samda_store_assoc_begin(samda_store *s, const char *calling_ae, const char *called_ae,
                                     const char *peer, const char *site, int64_t *id, samda_error *err)
{
    STORAGE_ERR(err);
    if (!calling_ae || !called_ae || !storage_len_ok(calling_ae, SAMDA_AE_SIZE) ||
        !storage_len_ok(called_ae, SAMDA_AE_SIZE) || !storage_len_ok(peer, SAMDA_NAME_SIZE) ||
        !storage_len_ok(site, SAMDA_NAME_SIZE))
        return samda_fail(err, SAMDA_EINVAL, "recording association: AE title missing or a field too long");
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    samda_status res = storage_tx_begin(s, c, err);
    if (res == SAMDA_OK) {
        int64_t site_id = 0;
        if (site && *site) {
            res = storage_site_lookup(s, c, site, &site_id, err);
            if (res == SAMDA_ENOENT) res = samda_fail(err, SAMDA_EINVAL, "recording association: unknown site");
        }
        sqlite3_stmt *st = NULL;
        if (res == SAMDA_OK && !(st = storage_stmt(c, "INSERT INTO associations(calling_ae, called_ae, peer,"
                                                      " site_id, started_ms) VALUES(?1, ?2, ?3, ?4, ?5)", err)))
            res = err->code;
        if (res == SAMDA_OK) {
            sqlite3_bind_text(st, 1, calling_ae, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(st, 2, called_ae, -1, SQLITE_TRANSIENT);
            storage_bind_text(st, 3, peer);
            storage_bind_int64_or_null(st, 4, site_id);
            sqlite3_bind_int64(st, 5, samda_store_now_ms(s));
            int rc = storage_exec_stmt(s, st);
            if (rc != SQLITE_OK) res = storage_db_fail(err, c, rc, "recording association");
            else if (id) *id = sqlite3_last_insert_rowid(c->db);
        }
        if (res == SAMDA_OK) res = storage_tx_commit(s, c, err);
        else storage_tx_rollback(s, c);
    }
    storage_conn_put(s, c);
    return res;
}

samda_status samda_store_assoc_end(samda_store *s, int64_t id, samda_assoc_state state, samda_error *err)
{
    STORAGE_ERR(err);
    if (state != SAMDA_ASSOC_STATE_RELEASED && state != SAMDA_ASSOC_STATE_ABORTED && state != SAMDA_ASSOC_STATE_REJECTED)
        return samda_fail(err, SAMDA_EINVAL, "ending association %lld: final state must be released, aborted "
                          "or rejected", (long long)id);
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    samda_status res = storage_tx_begin(s, c, err);
    if (res == SAMDA_OK) {
        sqlite3_stmt *st = storage_stmt(c, "UPDATE associations SET state = ?2, ended_ms = ?3 WHERE id = ?1"
                                           " AND state = 'open'", err);
        int rc = SQLITE_OK;
        if (!st) res = err->code;
        else {
            sqlite3_bind_int64(st, 1, id);
            sqlite3_bind_text(st, 2, assoc_state_names[state], -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 3, samda_store_now_ms(s));
            rc = storage_exec_stmt(s, st);
            if (rc != SQLITE_OK) res = storage_db_fail(err, c, rc, "ending association");
        }
        if (res == SAMDA_OK && sqlite3_changes(c->db) == 0) {
            st = storage_stmt(c, SQL_ASSOC_EXISTS, err);
            if (!st) res = err->code;
            else {
                sqlite3_bind_int64(st, 1, id);
                rc = storage_step(s, st);
                sqlite3_reset(st);
                res = rc == SQLITE_ROW ? samda_fail(err, SAMDA_EINVAL, "ending association %lld: already ended",
                                                    (long long)id)
                      : rc == SQLITE_DONE ? samda_fail(err, SAMDA_ENOENT, "ending association %lld: unknown",
                                                       (long long)id)
                                          : storage_db_fail(err, c, rc, "ending association");
            }
        }
        if (res == SAMDA_OK && state == SAMDA_ASSOC_STATE_ABORTED) {
            st = storage_stmt(c, "UPDATE instances SET flags = flags | 1 WHERE association_id = ?1", err);
            if (!st) res = err->code;
            else {
                sqlite3_bind_int64(st, 1, id);
                rc = storage_exec_stmt(s, st);
                if (rc != SQLITE_OK) res = storage_db_fail(err, c, rc, "flagging instances of aborted association");
            }
        }
        if (res == SAMDA_OK) res = storage_tx_commit(s, c, err);
        else storage_tx_rollback(s, c);
    }
    storage_conn_put(s, c);
    return res;
}

samda_status samda_store_assoc_get(samda_store *s, int64_t id, samda_association *out, samda_error *err)
{
    STORAGE_ERR(err);
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    sqlite3_stmt *st = storage_stmt(c, "SELECT a.id, a.calling_ae, a.called_ae, a.peer, si.name, a.started_ms,"
                                       " a.ended_ms, a.state, a.n_instances FROM associations a"
                                       " LEFT JOIN sites si ON si.id = a.site_id WHERE a.id = ?1", err);
    samda_status res = err->code;
    if (st) {
        sqlite3_bind_int64(st, 1, id);
        int rc = storage_step(s, st);
        if (rc == SQLITE_ROW) {
            memset(out, 0, sizeof *out);
            out->id = sqlite3_column_int64(st, 0);
            storage_col_text(st, 1, out->calling_ae, sizeof out->calling_ae);
            storage_col_text(st, 2, out->called_ae, sizeof out->called_ae);
            storage_col_text(st, 3, out->peer, sizeof out->peer);
            storage_col_text(st, 4, out->site, sizeof out->site);
            out->started_ms = sqlite3_column_int64(st, 5);
            out->ended_ms = sqlite3_column_int64(st, 6);
            out->state = (samda_assoc_state)name_index(assoc_state_names, 4, (const char *)sqlite3_column_text(st, 7));
            out->n_instances = sqlite3_column_int64(st, 8);
            res = SAMDA_OK;
        } else if (rc == SQLITE_DONE) {
            res = samda_fail(err, SAMDA_ENOENT, "reading association %lld: unknown", (long long)id);
        } else {
            res = storage_db_fail(err, c, rc, "reading association");
        }
        sqlite3_reset(st);
    }
    storage_conn_put(s, c);
    return res;
}

samda_status samda_store_series_assoc_summary(samda_store *s, const char *series_uid,
                                              samda_series_assoc_summary *out, samda_error *err)
{
    STORAGE_ERR(err);
    memset(out, 0, sizeof *out);
    if (!samda_uid_is_valid(series_uid))
        return samda_fail(err, SAMDA_EBADUID, "summarising series associations: series UID is not a valid UID");
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    sqlite3_stmt *st = storage_stmt(c, "SELECT count(*), coalesce(sum(a.state = 'open'), 0),"
                                       " coalesce(sum((i.flags & 1) != 0), 0) FROM instances i"
                                       " JOIN series se ON se.id = i.series_ref"
                                       " LEFT JOIN associations a ON a.id = i.association_id"
                                       " WHERE se.series_uid = ?1", err);
    samda_status res = err->code;
    if (st) {
        sqlite3_bind_text(st, 1, series_uid, -1, SQLITE_TRANSIENT);
        int rc = storage_step(s, st);
        if (rc == SQLITE_ROW) {
            out->n_instances = sqlite3_column_int64(st, 0);
            out->n_from_open = sqlite3_column_int64(st, 1);
            out->n_from_aborted = sqlite3_column_int64(st, 2);
            res = SAMDA_OK;
        } else {
            res = storage_db_fail(err, c, rc, "summarising series associations");
        }
        sqlite3_reset(st);
    }
    storage_conn_put(s, c);
    return res;
}

samda_status samda_store_assoc_abort_stale(samda_store *s, size_t *n, samda_error *err)
{
    STORAGE_ERR(err);
    if (n) *n = 0;
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    samda_status res = storage_tx_begin(s, c, err);
    if (res == SAMDA_OK) {
        /* Flag first: the instances of associations about to change state. */
        sqlite3_stmt *st = storage_stmt(c, "UPDATE instances SET flags = flags | 1 WHERE association_id IN"
                                           " (SELECT id FROM associations WHERE state = 'open')", err);
        int rc = st ? storage_exec_stmt(s, st) : SQLITE_ERROR;
        if (!st) res = err->code;
        else if (rc != SQLITE_OK) res = storage_db_fail(err, c, rc, "flagging instances of stale associations");
        if (res == SAMDA_OK) {
            st = storage_stmt(c, "UPDATE associations SET state = 'aborted', ended_ms = ?1 WHERE state = 'open'", err);
            if (!st) {
                res = err->code;
            } else {
                sqlite3_bind_int64(st, 1, samda_store_now_ms(s));
                rc = storage_exec_stmt(s, st);
                if (rc != SQLITE_OK) res = storage_db_fail(err, c, rc, "aborting stale associations");
                else if (n) *n = (size_t)sqlite3_changes(c->db);
            }
        }
        if (res == SAMDA_OK) res = storage_tx_commit(s, c, err);
        else storage_tx_rollback(s, c);
    }
    storage_conn_put(s, c);
    return res;
}

samda_status samda_store_series_paths(samda_store *s, const char *series_uid, char ***paths, size_t *n,
                                      samda_error *err)
{
    *paths = NULL;
    *n = 0;
    samda_instance_row *rows = NULL;
    size_t nr = 0;
    samda_status st = samda_store_instance_list(s, series_uid, 0, 0, &rows, &nr, err);
    if (st != SAMDA_OK) return st;
    char **p = calloc(nr ? nr : 1, sizeof *p);
    if (!p) st = samda_fail(err, SAMDA_ENOMEM, "listing the files of a series: out of memory");
    for (size_t i = 0; st == SAMDA_OK && i < nr; i++) {
        p[i] = malloc(PATH_MAX);
        st = p[i] ? samda_store_object_path(s, rows[i].object.relpath, p[i], PATH_MAX, err)
                  : samda_fail(err, SAMDA_ENOMEM, "listing the files of a series: out of memory");
    }
    samda_store_free(rows);
    if (st != SAMDA_OK) {
        samda_store_paths_free(p, nr);
        return st;
    }
    *paths = p;
    *n = nr;
    return SAMDA_OK;
}

void samda_store_paths_free(char **paths, size_t n)
{
    if (!paths) return;
    for (size_t i = 0; i < n; i++) free(paths[i]);
    free(paths);
}
