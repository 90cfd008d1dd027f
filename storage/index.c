/* storage/index.c: indexing one instance: its patient, study, series and instance rows.
 *
 * An instance is indexed in one transaction together with its patient/study/series upserts, its
 * association counter and change-feed rows, so a reader never sees a half-indexed instance. The ingest
 * path (samda_store_instance_ingest) adds the object commit and the duplicate policy around it.
 * Reading the index is index_query.c's, associations are assoc.c's (all three are tested by
 * tests/unit/storage/test_index.c). Every statement is prepared with bound parameters. */
#include <math.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

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

samda_status storage_validate_meta(const samda_instance_meta *m, samda_error *err)
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
    "ON CONFLICT(patient_id) DO UPDATE SET patient_name = coalesce(excluded.patient_name, patients.patient_name) "
    "RETURNING id";
static const char SQL_STUDY_FIND[] = "SELECT id, patient_ref FROM studies WHERE study_uid = ?1";
static const char SQL_STUDY_INSERT[] =
    "INSERT INTO studies(patient_ref, study_uid, study_date, study_description, accession_number, created_ms,"
    " last_received_ms) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?6) RETURNING id";
/* The study touched when it is indexed with this patient (?6): one round trip for every instance
 * after a study's first. No row: a new study, or one of another patient (SQL_STUDY_FIND tells). */
static const char SQL_STUDY_TOUCH[] =
    "UPDATE studies SET last_received_ms = greatest(last_received_ms, ?2),"
    " study_date = coalesce(study_date, ?3), study_description = coalesce(study_description, ?4),"
    " accession_number = coalesce(accession_number, ?5) WHERE study_uid = ?1 AND patient_ref = ?6 RETURNING id";
static const char SQL_SERIES_FIND[] =
    "SELECT id, study_ref, state, modality, sop_class_uid FROM series WHERE series_uid = ?1";
/* Another SOP class among the series' instances (the instance itself excluded: a replaced copy); asked
 * only when the instance's class differs from the one the series records. */
static const char SQL_SERIES_OTHER_CLASS[] =
    "SELECT sop_class_uid FROM instances WHERE series_ref = ?1 AND sop_class_uid <> ?2 AND sop_uid <> ?3 LIMIT 1";
/* ?9, ?10: the state and its reason ('receiving' and NULL for a received instance). */
static const char SQL_SERIES_INSERT[] =
    "INSERT INTO series(study_ref, series_uid, modality, body_part, series_description, series_number, site_id,"
    " first_received_ms, last_received_ms, state_changed_ms, state, state_reason, sop_class_uid)"
    " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?8, ?9, ?10, ?11) RETURNING id";
static const char SQL_SERIES_TOUCH[] =
    "UPDATE series SET last_received_ms = greatest(last_received_ms, ?2), n_instances = n_instances + ?3,"
    " modality = coalesce(modality, ?4), body_part = coalesce(body_part, ?5),"
    " series_description = coalesce(series_description, ?6), series_number = coalesce(series_number, ?7),"
    " site_id = coalesce(site_id, ?8), sop_class_uid = ?10,"
    " state_reason = CASE WHEN state = 'receiving' OR ?9 THEN state_reason ELSE 'new instance after completion' END,"
    " state_changed_ms = CASE WHEN state = 'receiving' OR ?9 THEN state_changed_ms ELSE ?2 END,"
    " state = CASE WHEN ?9 THEN state ELSE 'receiving' END WHERE id = ?1";
static const char SQL_INSTANCE_FIND[] =
    "SELECT id, series_ref, file_relpath, flags FROM instances WHERE sop_uid = ?1";
/* ?1 series_ref ... column order shared by INSERT and UPDATE */
static const char SQL_INSTANCE_INSERT[] =
    "INSERT INTO instances(series_ref, sop_uid, sop_class_uid, transfer_syntax_uid, instance_number, rows,"
    " columns, bits_allocated, number_of_frames, pixel_spacing_row, pixel_spacing_col, ipp_x, ipp_y, ipp_z,"
    " iop_rx, iop_ry, iop_rz, iop_cx, iop_cy, iop_cz, slice_thickness, rescale_slope, rescale_intercept,"
    " window_center, window_width, file_relpath, file_size, sha256, received_ms, calling_ae, site_id,"
    " association_id, flags) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,"
    " ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31, ?32, ?33) RETURNING id";
static const char SQL_INSTANCE_UPDATE[] =
    "UPDATE instances SET series_ref = ?1, sop_class_uid = ?3, transfer_syntax_uid = ?4,"
    " instance_number = ?5, rows = ?6, columns = ?7, bits_allocated = ?8, number_of_frames = ?9,"
    " pixel_spacing_row = ?10, pixel_spacing_col = ?11, ipp_x = ?12, ipp_y = ?13, ipp_z = ?14,"
    " iop_rx = ?15, iop_ry = ?16, iop_rz = ?17, iop_cx = ?18, iop_cy = ?19, iop_cz = ?20,"
    " slice_thickness = ?21, rescale_slope = ?22, rescale_intercept = ?23, window_center = ?24,"
    " window_width = ?25, file_relpath = ?26, file_size = ?27, sha256 = ?28, received_ms = ?29,"
    " calling_ae = ?30, site_id = ?31, association_id = ?32, flags = ?33 WHERE sop_uid = ?2";
/* ?2: 1 for a new instance, 0 for a replaced copy; no row changed: no such association. */
static const char SQL_ASSOC_COUNT[] =
    "UPDATE associations SET n_instances = n_instances + ?2 WHERE id = ?1";

static int64_t step_id(samda_store *s, sql_stmt *st, int *rc)
{
    *rc = storage_step(s, st);
    int64_t id = 0;
    if (*rc == SQL_ROW) {
        id = sql_col_int64(st, 0);
        *rc = SQL_OK;
    } else if (*rc == SQL_DONE) {
        *rc = SQL_OK;
    }
    sql_reset(st);
    return id;
}

static void bind_int_or_null(sql_stmt *st, int i, int v)
{
    if (v) sql_bind_int64(st, i, v);
    else sql_bind_null(st, i);
}

static void bind_instance(sql_stmt *st, const samda_instance_meta *m, const samda_object_info *o,
                          int64_t series_id, int64_t site_id, int64_t now)
{
    sql_bind_int64(st, 1, series_id);
    sql_bind_text(st, 2, m->sop_uid);
    sql_bind_text(st, 3, m->sop_class_uid);
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
    sql_bind_text(st, 26, o->relpath);
    sql_bind_int64(st, 27, (int64_t)o->size);
    sql_bind_text(st, 28, o->sha256);
    sql_bind_int64(st, 29, now);
    storage_bind_text(st, 30, m->calling_ae);
    storage_bind_int64_or_null(st, 31, site_id);
    storage_bind_int64_or_null(st, 32, m->association_id);
    sql_bind_int64(st, 33, (int)m->flags);
}

/* What the steps of indexing one instance share (all on one connection, in one write transaction). */
typedef struct index_step {
    samda_store *s;
    storage_conn *c;
    const samda_instance_meta *m;
    int64_t now;             /* the store's clock, read once per instance */
    int64_t site_id;         /* 0: no site */
    int64_t patient_id;      /* patients.id */
    int64_t existing;        /* instances.id of an indexed copy of this SOP instance, 0 if none */
    int64_t existing_series; /* its series */
    unsigned existing_flags; /* its flags (SAMDA_INSTANCE_*) */
    bool reopened;           /* the series was complete or incomplete, and receives again */
} index_step;

static const char INDEXING[] = "indexing instance";
/* The state reason of a result's series (samda_store_result_ingest). */
static const char RESULT_SERIES_REASON[] = "a DICOM-SEG samda produced: complete as written, never segmented";
static const char UPLOAD_SERIES_REASON[] = "a volume uploaded to a MONAI Label session: complete as written, segmented on request";

/* The site named by the instance must exist (its association: count_association). */
static samda_status check_refs(index_step *x, samda_error *err)
{
    const samda_instance_meta *m = x->m;
    if (m->site[0]) {
        samda_status ss = storage_site_lookup(x->s, x->c, m->site, &x->site_id, err);
        if (ss == SAMDA_ENOENT) return samda_fail(err, SAMDA_EINVAL, "%s %s: unknown site", INDEXING, m->sop_uid);
        if (ss != SAMDA_OK) return ss;
    }
    return SAMDA_OK;
}

/* The association the instance came over must exist, and counts a new instance: one statement, which
 * says by the rows it changed whether the association is there. */
static samda_status count_association(index_step *x, samda_error *err)
{
    const samda_instance_meta *m = x->m;
    if (!m->association_id) return SAMDA_OK;
    sql_stmt *st = storage_stmt(x->c, SQL_ASSOC_COUNT, err);
    if (!st) return err->code;
    sql_bind_int64(st, 1, m->association_id);
    sql_bind_int64(st, 2, x->existing ? 0 : 1);
    int rc = storage_exec_stmt(x->s, st);
    if (rc != SQL_OK) return storage_db_fail(err, x->c, rc, INDEXING);
    if (sql_changes(x->c->q) == 0)
        return samda_fail(err, SAMDA_EINVAL, "%s %s: unknown association %lld", INDEXING, m->sop_uid,
                          (long long)m->association_id);
    return SAMDA_OK;
}

/* The patient row, created or its name filled in. */
static samda_status upsert_patient(index_step *x, samda_error *err)
{
    sql_stmt *st = storage_stmt(x->c, SQL_PATIENT_UPSERT, err);
    if (!st) return err->code;
    sql_bind_text(st, 1, x->m->patient_id); /* '' is the "no PatientID" patient */
    storage_bind_text(st, 2, x->m->patient_name);
    int rc = SQL_OK;
    x->patient_id = step_id(x->s, st, &rc);
    return rc != SQL_OK ? storage_db_fail(err, x->c, rc, INDEXING) : SAMDA_OK;
}

/* The study row, created or touched; one study, one patient (a PACS flags instances that disagree;
 * samda refuses them). */
static samda_status upsert_study(index_step *x, samda_ingest_result *res, samda_error *err)
{
    const samda_instance_meta *m = x->m;
    res->study_id = 0;
    sql_stmt *st = storage_stmt(x->c, SQL_STUDY_TOUCH, err);
    if (!st) return err->code;
    sql_bind_text(st, 1, m->study_uid);
    /* a result is not a receive: the study's idle timer (study_idle) does not restart */
    sql_bind_int64(st, 2, (m->flags & SAMDA_INSTANCE_RESULT) ? 0 : x->now);
    storage_bind_text(st, 3, m->study_date);
    storage_bind_text(st, 4, m->study_description);
    storage_bind_text(st, 5, m->accession_number);
    sql_bind_int64(st, 6, x->patient_id);
    int64_t id = 0;
    int rc = storage_exec_insert(x->s, st, &id);
    if (rc != SQL_OK) return storage_db_fail(err, x->c, rc, INDEXING);
    if (id) {
        res->study_id = id;
        return SAMDA_OK;
    }
    if (!(st = storage_stmt(x->c, SQL_STUDY_FIND, err))) return err->code;
    sql_bind_text(st, 1, m->study_uid);
    rc = storage_step(x->s, st);
    sql_reset(st);
    if (rc == SQL_ROW) /* indexed, with another patient */
        return samda_fail(err, SAMDA_ECONFLICT,
                          "(0010,0020) PatientID differs from the one study %s is indexed with: the instances of "
                          "one study must name one patient (instance %s refused)", m->study_uid, m->sop_uid);
    if (rc != SQL_DONE) return storage_db_fail(err, x->c, rc, INDEXING);
    if (!(st = storage_stmt(x->c, SQL_STUDY_INSERT, err))) return err->code;
    sql_bind_int64(st, 1, x->patient_id);
    sql_bind_text(st, 2, m->study_uid);
    storage_bind_text(st, 3, m->study_date);
    storage_bind_text(st, 4, m->study_description);
    storage_bind_text(st, 5, m->accession_number);
    sql_bind_int64(st, 6, x->now);
    if ((rc = storage_exec_insert(x->s, st, &id)) != SQL_OK) return storage_db_fail(err, x->c, rc, INDEXING);
    res->study_id = id;
    res->new_study = true;
    return SAMDA_OK;
}

/* An indexed copy of the instance, looked up before the series so that a replaced instance does not
 * count twice; old_relpath gets its file. Refused unless replace. */
static samda_status find_instance(index_step *x, bool replace, char old_relpath[SAMDA_RELPATH_SIZE],
                                  samda_error *err)
{
    sql_stmt *st = storage_stmt(x->c, SQL_INSTANCE_FIND, err);
    if (!st) return err->code;
    sql_bind_text(st, 1, x->m->sop_uid);
    int rc = storage_step(x->s, st);
    if (rc == SQL_ROW) {
        x->existing = sql_col_int64(st, 0);
        x->existing_series = sql_col_int64(st, 1);
        storage_col_text(st, 2, old_relpath, SAMDA_RELPATH_SIZE);
        x->existing_flags = (unsigned)(int)sql_col_int64(st, 3);
        rc = SQL_DONE;
    }
    sql_reset(st);
    if (rc != SQL_DONE) return storage_db_fail(err, x->c, rc, INDEXING);
    if (x->existing && !replace)
        return samda_fail(err, SAMDA_EEXIST, "%s %s: already indexed", INDEXING, x->m->sop_uid);
    /* A result's file is also its results row's: replacing it would leave that row pointing at a
     * removed file. samda's results are never replaced; a changed copy needs a new SOP Instance UID. */
    if (x->existing && (x->existing_flags & SAMDA_INSTANCE_RESULT))
        return samda_fail(err, SAMDA_EEXIST, "%s %s: a DICOM-SEG samda produced (a result) is never replaced; "
                          "send a changed copy under a new SOP Instance UID", INDEXING, x->m->sop_uid);
    return SAMDA_OK;
}

/* An indexed series takes the instance only if it agrees: same study, same modality, one SOP class. */
static samda_status check_series_fits(index_step *x, int64_t series_id, int64_t study_ref, int64_t study_id,
                                      const char *series_modality, const char *series_class, samda_error *err)
{
    const samda_instance_meta *m = x->m;
    if (study_ref != study_id)
        return samda_fail(err, SAMDA_ECONFLICT, "(0020,000D) StudyInstanceUID differs from the study that series "
                          "%s is indexed in (instance %s refused)", m->series_uid, m->sop_uid);
    if (series_modality[0] && m->modality[0] && strcmp(series_modality, m->modality) != 0)
        return samda_fail(err, SAMDA_ECONFLICT, "(0008,0060) Modality %s differs from the %s of series %s: one "
                          "series, one modality (instance %s refused)", m->modality, series_modality,
                          m->series_uid, m->sop_uid);
    /* The series' class is the instance's: nothing to read. Otherwise (or none recorded) the instances
     * decide, since the only one of the recorded class may be this SOP itself, being replaced. */
    if (series_class[0] && strcmp(series_class, m->sop_class_uid) == 0) return SAMDA_OK;
    sql_stmt *st = storage_stmt(x->c, SQL_SERIES_OTHER_CLASS, err);
    if (!st) return err->code;
    sql_bind_int64(st, 1, series_id);
    sql_bind_text(st, 2, m->sop_class_uid);
    sql_bind_text(st, 3, m->sop_uid);
    int rc = storage_step(x->s, st);
    if (rc == SQL_ROW) {
        char other[SAMDA_UID_SIZE];
        storage_col_text(st, 0, other, sizeof other);
        sql_reset(st);
        return samda_fail(err, SAMDA_ECONFLICT, "(0008,0016) SOPClassUID %s differs from the %s of series %s: one "
                          "series, one kind of image (instance %s refused)", m->sop_class_uid, other,
                          m->series_uid, m->sop_uid);
    }
    sql_reset(st);
    return rc != SQL_DONE ? storage_db_fail(err, x->c, rc, INDEXING) : SAMDA_OK;
}

/* An indexed series receives again: its counters, missing attributes and state. */
static samda_status touch_series(index_step *x, int64_t series_id, samda_error *err)
{
    const samda_instance_meta *m = x->m;
    sql_stmt *st = storage_stmt(x->c, SQL_SERIES_TOUCH, err);
    if (!st) return err->code;
    sql_bind_int64(st, 1, series_id);
    sql_bind_int64(st, 2, x->now);
    sql_bind_int64(st, 3, x->existing ? 0 : 1);
    storage_bind_text(st, 4, m->modality);
    storage_bind_text(st, 5, m->body_part);
    storage_bind_text(st, 6, m->series_description);
    bind_int_or_null(st, 7, m->series_number);
    storage_bind_int64_or_null(st, 8, x->site_id);
    sql_bind_int64(st, 9, (m->flags & SAMDA_INSTANCE_UPLOAD) ? 1 : 0); /* an upload's series stays as it is */
    sql_bind_text(st, 10, m->sop_class_uid); /* checked: every other instance has this class */
    int rc = storage_exec_stmt(x->s, st);
    return rc != SQL_OK ? storage_db_fail(err, x->c, rc, INDEXING) : SAMDA_OK;
}

/* A new series row, counting this instance unless it moved here from another series. */
static samda_status insert_series(index_step *x, samda_ingest_result *res, samda_error *err)
{
    const samda_instance_meta *m = x->m;
    sql_stmt *st = storage_stmt(x->c, SQL_SERIES_INSERT, err);
    if (!st) return err->code;
    sql_bind_int64(st, 1, res->study_id);
    sql_bind_text(st, 2, m->series_uid);
    storage_bind_text(st, 3, m->modality);
    storage_bind_text(st, 4, m->body_part);
    storage_bind_text(st, 5, m->series_description);
    bind_int_or_null(st, 6, m->series_number);
    storage_bind_int64_or_null(st, 7, x->site_id);
    sql_bind_int64(st, 8, x->now);
    /* A result's series is complete as it is written, so the completion timers never see it (and
     * no segmentation job is ever queued for it). */
    bool result = (m->flags & SAMDA_INSTANCE_RESULT) != 0, upload = (m->flags & SAMDA_INSTANCE_UPLOAD) != 0;
    sql_bind_text(st, 9, result || upload ? "complete" : "receiving");
    if (result || upload) sql_bind_text(st, 10, result ? RESULT_SERIES_REASON : UPLOAD_SERIES_REASON);
    else sql_bind_null(st, 10);
    sql_bind_text(st, 11, m->sop_class_uid);
    int rc = storage_exec_insert(x->s, st, &res->series_id);
    if (rc != SQL_OK) return storage_db_fail(err, x->c, rc, INDEXING);
    res->new_series = true;
    if (!x->existing) { /* count the first instance */
        if (!(st = storage_stmt(x->c, "UPDATE series SET n_instances = 1 WHERE id = ?1", err))) return err->code;
        sql_bind_int64(st, 1, res->series_id);
        if ((rc = storage_exec_stmt(x->s, st)) != SQL_OK) return storage_db_fail(err, x->c, rc, INDEXING);
    }
    return SAMDA_OK;
}

/* The series row: an indexed one checked and touched, or a new one. */
static samda_status upsert_series(index_step *x, samda_ingest_result *res, samda_error *err)
{
    sql_stmt *st = storage_stmt(x->c, SQL_SERIES_FIND, err);
    if (!st) return err->code;
    sql_bind_text(st, 1, x->m->series_uid);
    int rc = storage_step(x->s, st);
    if (rc == SQL_ROW) {
        res->series_id = sql_col_int64(st, 0);
        int64_t study_ref = sql_col_int64(st, 1);
        x->reopened = strcmp(sql_col_text(st, 2), "receiving") != 0;
        char series_modality[SAMDA_CS_SIZE];
        storage_col_text(st, 3, series_modality, sizeof series_modality);
        char series_class[SAMDA_UID_SIZE];
        storage_col_text(st, 4, series_class, sizeof series_class);
        sql_reset(st);
        samda_status ss =
            check_series_fits(x, res->series_id, study_ref, res->study_id, series_modality, series_class, err);
        return ss != SAMDA_OK ? ss : touch_series(x, res->series_id, err);
    }
    sql_reset(st);
    if (rc == SQL_DONE) return insert_series(x, res, err);
    return storage_db_fail(err, x->c, rc, INDEXING);
}

/* The instance row, inserted or (a replaced copy) updated in place. */
static samda_status write_instance(index_step *x, const samda_object_info *o, samda_ingest_result *res,
                                   samda_error *err)
{
    sql_stmt *st = storage_stmt(x->c, x->existing ? SQL_INSTANCE_UPDATE : SQL_INSTANCE_INSERT, err);
    if (!st) return err->code;
    bind_instance(st, x->m, o, res->series_id, x->site_id, x->now);
    int64_t id = 0; /* the new row's (SQL_INSTANCE_UPDATE returns no row) */
    int rc = storage_exec_insert(x->s, st, &id);
    if (rc != SQL_OK) return storage_db_fail(err, x->c, rc, INDEXING);
    res->instance_id = x->existing ? x->existing : id;
    res->outcome = x->existing ? SAMDA_INGEST_REPLACED : SAMDA_INGEST_NEW;
    return SAMDA_OK;
}

/* The change-feed rows, the new object's intent claimed, and the replaced file's intent added (it is
 * removed after commit; a crash leaves it to the next open). old_relpath is cleared unless the caller
 * must unlink it. */
static samda_status record_changes(index_step *x, const samda_object_info *o, const samda_ingest_result *res,
                                   char old_relpath[SAMDA_RELPATH_SIZE], samda_error *err)
{
    samda_store *s = x->s;
    storage_conn *c = x->c;
    const samda_instance_meta *m = x->m;
    samda_status ss = storage_change_add(s, c, "instance", m->sop_uid,
                                         x->existing ? SAMDA_CHANGE_UPDATED : SAMDA_CHANGE_NEW, err);
    if (ss == SAMDA_OK && res->new_series) ss = storage_change_add(s, c, "series", m->series_uid, SAMDA_CHANGE_NEW, err);
    if (ss == SAMDA_OK && x->reopened) ss = storage_change_add(s, c, "series", m->series_uid, SAMDA_CHANGE_STATE, err);
    if (ss == SAMDA_OK && res->new_study) ss = storage_change_add(s, c, "study", m->study_uid, SAMDA_CHANGE_NEW, err);
    if (ss == SAMDA_OK) ss = storage_intent_claim(s, c, o->relpath, err);
    if (ss == SAMDA_OK && x->existing && strcmp(old_relpath, o->relpath) != 0)
        ss = storage_intent_add(s, c, old_relpath, err);
    else if (ss == SAMDA_OK)
        old_relpath[0] = '\0';
    return ss;
}

/* Index meta + object on c (in a write transaction); see internal.h. */
samda_status storage_index_instance(samda_store *s, storage_conn *c, const samda_instance_meta *m,
                                   const samda_object_info *o, bool replace, samda_ingest_result *res,
                                   char old_relpath[SAMDA_RELPATH_SIZE], samda_error *err)
{
    index_step x = {.s = s, .c = c, .m = m, .now = samda_store_now_ms(s)};
    old_relpath[0] = '\0';
    memset(res, 0, sizeof *res);
    res->object = *o;

    samda_status ss = check_refs(&x, err);
    if (ss == SAMDA_OK) ss = upsert_patient(&x, err);
    if (ss == SAMDA_OK) ss = upsert_study(&x, res, err);
    if (ss == SAMDA_OK) ss = find_instance(&x, replace, old_relpath, err);
    if (ss == SAMDA_OK) ss = count_association(&x, err);
    if (ss == SAMDA_OK) ss = upsert_series(&x, res, err);
    if (ss == SAMDA_OK && x.existing && x.existing_series != res->series_id)
        ss = samda_fail(err, SAMDA_EINVAL, "%s %s: SOP instance already indexed in another series", INDEXING,
                        m->sop_uid);
    if (ss == SAMDA_OK) ss = write_instance(&x, o, res, err);
    if (ss == SAMDA_OK) ss = record_changes(&x, o, res, old_relpath, err);
    if (ss != SAMDA_OK) old_relpath[0] = '\0';
    return ss;
}

typedef struct {
    const samda_instance_meta *meta;
    const samda_object_info *obj;
    bool replace;
    samda_ingest_result *res;
    char old[SAMDA_RELPATH_SIZE]; /* the replaced file, removed after commit */
} index_args;

static samda_status index_fn(samda_store *s, storage_conn *c, void *arg, samda_error *err)
{
    index_args *a = arg;
    return storage_index_instance(s, c, a->meta, a->obj, a->replace, a->res, a->old, err);
}

/* The instance's rows in a transaction: shared with the instances other associations index now, or
 * (shared false) its own. */
static samda_status index_tx(samda_store *s, const samda_instance_meta *meta, const samda_object_info *obj,
                             bool replace, samda_ingest_result *res, bool shared, samda_error *err)
{
    index_args a = {.meta = meta, .obj = obj, .replace = replace, .res = res};
    samda_status st = shared ? storage_tx_shared(s, index_fn, &a, err) : storage_tx_run(s, index_fn, &a, err);
    if (st == SAMDA_OK && a.old[0]) storage_object_unlink(s, a.old); /* the replaced file */
    return st;
}

samda_status samda_store_instance_insert(samda_store *s, const samda_instance_meta *meta,
                                         const samda_object_info *object, bool replace,
                                         samda_ingest_result *res, samda_error *err)
{
    STORAGE_ERR(err);
    samda_status st = storage_validate_meta(meta, err);
    if (st != SAMDA_OK) return st;
    if (!object || !samda_store_relpath_is_valid(object->relpath) || strlen(object->sha256) != 64)
        return samda_fail(err, SAMDA_EINVAL, "indexing instance %s: object info incomplete", meta->sop_uid);
    samda_ingest_result local;
    return index_tx(s, meta, object, replace, res ? res : &local, false, err);
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
    sql_stmt *st = storage_stmt(c, "UPDATE instances SET association_id = ?2, flags = flags & ~1"
                                       " WHERE sop_uid = ?1 AND (flags & 1) != 0", err);
    int rc = SQL_OK;
    if (!st) res = err->code;
    else {
        sql_bind_text(st, 1, meta->sop_uid);
        sql_bind_int64(st, 2, meta->association_id);
        rc = storage_exec_stmt(s, st);
        if (rc != SQL_OK) res = storage_db_fail(err, c, rc, "re-linking a re-sent instance");
    }
    if (res == SAMDA_OK && sql_changes(c->q) > 0) {
        st = storage_stmt(c, "UPDATE series SET state = 'receiving', state_reason = 're-sent after an aborted association',"
                             " state_changed_ms = ?2, last_received_ms = greatest(last_received_ms, ?2)"
                             " WHERE id = (SELECT series_ref FROM instances WHERE sop_uid = ?1) AND state = 'incomplete'",
                          err);
        if (!st) res = err->code;
        else {
            sql_bind_text(st, 1, meta->sop_uid);
            sql_bind_int64(st, 2, now);
            rc = storage_exec_stmt(s, st);
            if (rc != SQL_OK) res = storage_db_fail(err, c, rc, "re-opening a series set aside as incomplete");
            else if (sql_changes(c->q) > 0)
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

samda_status samda_store_instance_ingest(samda_store *s, samda_tmp_file *tmp, const samda_instance_meta *meta,
                                         samda_dup_policy policy, samda_ingest_result *res, samda_error *err)
{
    return samda_store_instance_ingest_hashed(s, tmp, NULL, 0, meta, policy, res, err);
}

/* The writer's hash when it is well-formed and the file has the size it hashed. */
static bool known_hash(const samda_tmp_file *tmp, const char *sha256, uint64_t size, samda_object_info *obj)
{
    if (!sha256 || strlen(sha256) != 64 || strspn(sha256, "0123456789abcdef") != 64) return false;
    struct stat sb;
    if (fstat(tmp->fd, &sb) != 0 || !S_ISREG(sb.st_mode) || (uint64_t)sb.st_size != size) return false;
    memcpy(obj->sha256, sha256, SAMDA_SHA256_HEX_SIZE);
    obj->size = size;
    return true;
}

samda_status samda_store_instance_ingest_hashed(samda_store *s, samda_tmp_file *tmp, const char *sha256,
                                                uint64_t size, const samda_instance_meta *meta,
                                                samda_dup_policy policy, samda_ingest_result *res, samda_error *err)
{
    STORAGE_ERR(err);
    samda_ingest_result local;
    if (!res) res = &local;
    memset(res, 0, sizeof *res);
    if (!tmp || tmp->fd < 0) return samda_fail(err, SAMDA_EINVAL, "storing instance: temporary file not open");
    samda_status st = storage_validate_meta(meta, err);
    if (st != SAMDA_OK) {
        samda_store_object_tmp_discard(s, tmp);
        return st;
    }
    samda_object_info obj;
    st = known_hash(tmp, sha256, size, &obj) ? SAMDA_OK : storage_sha256_fd(tmp->fd, obj.sha256, &obj.size, err);
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
        /* A DICOM-SEG samda produced, coming back (a PACS echoing the export, with its own file meta
         * or coercions): the result samda wrote stays as it is, and the copy is acknowledged as
         * held. Results are the only objects under seg/ (samda_store_result_ingest). */
        if (strncmp(have.relpath, "seg/", 4) == 0) {
            samda_store_object_tmp_discard(s, tmp);
            return identical_result(s, meta, res, err);
        }
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
                                       meta->sop_uid, rev, &obj, true /* hashed above */, err);
        if (st != SAMDA_EEXIST || tries >= 8) break;
        rev = rev < 2 ? 2 : rev + 1;
    }
    if (tmp->path[0]) samda_store_object_tmp_discard(s, tmp);
    if (st != SAMDA_OK) return st;

    st = index_tx(s, meta, &obj, exists, res, true, err);
    if (st == SAMDA_EEXIST && !exists) {
        /* Another thread indexed the same SOP between our lookup and our transaction. */
        samda_status again = samda_store_instance_lookup(s, meta->sop_uid, &have, NULL, err);
        bool identical = again == SAMDA_OK && have.size == obj.size && strcmp(have.sha256, obj.sha256) == 0;
        if (again == SAMDA_OK && identical && policy != SAMDA_DUP_REJECT) {
            storage_object_unlink(s, obj.relpath);
            return identical_result(s, meta, res, err);
        }
        if (again == SAMDA_OK && policy == SAMDA_DUP_OVERWRITE) st = index_tx(s, meta, &obj, true, res, true, err);
        else if (again == SAMDA_OK) samda_fail(err, SAMDA_EEXIST, "storing instance %s: stored concurrently with "
                                                "different content (duplicate policy)", meta->sop_uid);
    }
    if (st != SAMDA_OK) storage_object_unlink(s, obj.relpath);
    return st;
}

