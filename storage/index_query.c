/* storage/index_query.c: reading the index: instances, series and studies, by key or by filter,
 * and the series state that the scheduler moves (receiving, complete, incomplete).
 *
 * Optional filters are written as "(col = ?n OR ?n IS NULL)" so that no SQL text is ever built from
 * values. Rows are written by index.c; tests are in tests/unit/storage/test_index.c. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static const char *const series_state_names[] = {"receiving", "complete", "incomplete"};

int storage_name_index(const char *const *names, int n, const char *v)
{
    for (int i = 0; i < n; i++)
        if (v && strcmp(names[i], v) == 0) return i;
    return 0;
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
    sql_stmt *st = storage_stmt(c, "SELECT id, file_relpath, file_size, sha256 FROM instances WHERE sop_uid = ?1",
                                    err);
    if (!st) {
        storage_conn_put(s, c);
        return err->code;
    }
    sql_bind_text(st, 1, sop_uid);
    int rc = storage_step(s, st);
    if (rc == SQL_ROW) {
        if (instance_id) *instance_id = sql_col_int64(st, 0);
        if (object) {
            storage_col_text(st, 1, object->relpath, sizeof object->relpath);
            object->size = (uint64_t)sql_col_int64(st, 2);
            storage_col_text(st, 3, object->sha256, sizeof object->sha256);
        }
    } else if (rc == SQL_DONE) {
        res = samda_fail(err, SAMDA_ENOENT, "looking up instance %s: not indexed", sop_uid);
    } else {
        res = storage_db_fail(err, c, rc, "looking up instance");
    }
    sql_reset(st);
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
/* UIDs in byte order on both engines (a PostgreSQL database's default collation may ignore the dots). */
static const char SQL_INSTANCE_LIST[] = INSTANCE_COLS
    "WHERE se.series_uid = ?1 ORDER BY i.instance_number IS NULL, i.instance_number, i.sop_uid COLLATE \"C\""
    " LIMIT ?2 OFFSET ?3";

static void read_instance(sql_stmt *st, samda_instance_row *r)
{
    memset(r, 0, sizeof *r);
    samda_instance_meta *m = &r->meta;
    samda_instance_meta_init(m);
    r->id = sql_col_int64(st, 0);
    r->series_id = sql_col_int64(st, 1);
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
    m->series_number = (int)sql_col_int64(st, 12);
    storage_col_text(st, 13, m->sop_uid, sizeof m->sop_uid);
    storage_col_text(st, 14, m->sop_class_uid, sizeof m->sop_class_uid);
    storage_col_text(st, 15, m->transfer_syntax_uid, sizeof m->transfer_syntax_uid);
    m->instance_number = (int)sql_col_int64(st, 16);
    m->rows = (int)sql_col_int64(st, 17);
    m->columns = (int)sql_col_int64(st, 18);
    m->bits_allocated = (int)sql_col_int64(st, 19);
    m->number_of_frames = (int)sql_col_int64(st, 20);
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
    m->association_id = sql_col_int64(st, 39);
    m->flags = (unsigned)(int)sql_col_int64(st, 40);
    storage_col_text(st, 41, r->object.relpath, sizeof r->object.relpath);
    storage_col_text(st, 42, r->object.sha256, sizeof r->object.sha256);
    r->object.size = (uint64_t)sql_col_int64(st, 43);
    r->received_at_ms = sql_col_int64(st, 44);
}

static void read_instance_v(sql_stmt *st, void *row) { read_instance(st, row); }

samda_status samda_store_instance_get(samda_store *s, const char *sop_uid, samda_instance_row *out,
                                      samda_error *err)
{
    STORAGE_ERR(err);
    if (!samda_uid_is_valid(sop_uid))
        return samda_fail(err, SAMDA_EBADUID, "reading instance: SOP instance UID is not a valid UID");
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    sql_stmt *st = storage_stmt(c, SQL_INSTANCE_GET, err);
    samda_status res = err->code;
    if (st) {
        sql_bind_text(st, 1, sop_uid);
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
    sql_stmt *st = storage_stmt(c, SQL_INSTANCE_LIST, err);
    samda_status res = err->code;
    if (st) {
        sql_bind_text(st, 1, series_uid);
        sql_bind_int64(st, 2, (int64_t)(limit ? storage_list_limit(limit) : STORAGE_LIST_MAX));
        sql_bind_int64(st, 3, (int64_t)offset);
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
    "WHERE (st.study_uid = ?1 OR ?1 IS NULL) AND (se.series_uid = ?2 OR ?2 IS NULL)"
    " AND (p.patient_id = ?3 OR ?3 IS NULL) AND (se.modality = ?4 OR ?4 IS NULL)"
    " AND (st.study_date >= ?5 OR ?5 IS NULL) AND (st.study_date <= ?6 OR ?6 IS NULL)"
    " AND (si.name = ?7 OR ?7 IS NULL)"
    " ORDER BY st.id, se.series_number IS NULL, se.series_number, se.id LIMIT ?8 OFFSET ?9";
static const char SQL_SERIES_IDLE[] = SERIES_COLS
    "WHERE se.state = 'receiving' AND se.last_received_ms <= ?1 ORDER BY se.last_received_ms LIMIT ?2";

static void read_series(sql_stmt *st, void *row)
{
    samda_series_info *r = row;
    memset(r, 0, sizeof *r);
    r->id = sql_col_int64(st, 0);
    r->study_id = sql_col_int64(st, 1);
    storage_col_text(st, 2, r->study_uid, sizeof r->study_uid);
    storage_col_text(st, 3, r->series_uid, sizeof r->series_uid);
    storage_col_text(st, 4, r->modality, sizeof r->modality);
    storage_col_text(st, 5, r->body_part, sizeof r->body_part);
    storage_col_text(st, 6, r->series_description, sizeof r->series_description);
    r->series_number = (int)sql_col_int64(st, 7);
    storage_col_text(st, 8, r->site, sizeof r->site);
    r->n_instances = sql_col_int64(st, 9);
    r->first_received_ms = sql_col_int64(st, 10);
    r->last_received_ms = sql_col_int64(st, 11);
    r->state = (samda_series_state)storage_name_index(series_state_names, 3,
                                                      sql_col_text(st, 12));
    storage_col_text(st, 13, r->state_reason, sizeof r->state_reason);
    r->state_changed_ms = sql_col_int64(st, 14);
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
    sql_stmt *st = storage_stmt(c, SQL_SERIES_QUERY, err);
    samda_status res = err->code;
    if (st) {
        storage_bind_text(st, 1, q->study_uid);
        storage_bind_text(st, 2, q->series_uid);
        storage_bind_text(st, 3, q->patient_id);
        storage_bind_text(st, 4, q->modality);
        storage_bind_text(st, 5, q->date_from);
        storage_bind_text(st, 6, q->date_to);
        storage_bind_text(st, 7, q->site);
        sql_bind_int64(st, 8, (int64_t)storage_list_limit(q->limit));
        sql_bind_int64(st, 9, (int64_t)q->offset);
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
    sql_stmt *st = storage_stmt(c, SQL_SERIES_IDLE, err);
    samda_status res = err->code;
    if (st) {
        sql_bind_int64(st, 1, idle_before_ms);
        sql_bind_int64(st, 2, (int64_t)storage_list_limit(limit));
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
        sql_stmt *st = storage_stmt(c, "UPDATE series SET state = ?2, state_reason = ?3, state_changed_ms = ?4"
                                           " WHERE series_uid = ?1", err);
        if (!st) {
            res = err->code;
        } else {
            sql_bind_text(st, 1, series_uid);
            sql_bind_text(st, 2, series_state_names[state]);
            storage_bind_text(st, 3, why);
            sql_bind_int64(st, 4, samda_store_now_ms(s));
            int rc = storage_exec_stmt(s, st);
            if (rc != SQL_OK) res = storage_db_fail(err, c, rc, "setting series state");
            else if (sql_changes(c->q) == 0)
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
    /* "sop:sha256" lines in byte order of the SOP UIDs, the same text on both engines */
    sql_stmt *st = storage_stmt(c, storage_sql(c,
                                    "SELECT group_concat(sop_uid || ':' || sha256, char(10)) FROM"
                                    " (SELECT i.sop_uid, i.sha256 FROM instances i JOIN series se"
                                    " ON se.id = i.series_ref WHERE se.series_uid = ?1 ORDER BY i.sop_uid)",
                                    "SELECT string_agg(i.sop_uid || ':' || i.sha256, chr(10) ORDER BY i.sop_uid COLLATE \"C\")"
                                    " FROM instances i JOIN series se ON se.id = i.series_ref WHERE se.series_uid = ?1"),
                                err);
    samda_status res = err->code;
    if (st) {
        sql_bind_text(st, 1, series_uid);
        int rc = storage_step(s, st);
        if (rc == SQL_ROW && !sql_col_null(st, 0)) {
            storage_sha256_hex(sql_col_text(st, 0), (size_t)sql_col_bytes(st, 0), out);
            res = SAMDA_OK;
        } else if (rc == SQL_ROW) {
            res = samda_fail(err, SAMDA_ENOENT, "hashing series %s: no instance indexed", series_uid);
        } else {
            res = storage_db_fail(err, c, rc, "hashing series");
        }
        sql_reset(st);
    }
    storage_conn_put(s, c);
    return res;
}

/* Studies ---------------------------------------------------------------------------------------- */

/* One study query; the engines differ only in how ModalitiesInStudy is joined. */
#define STUDY_QUERY(MODALITIES) \
    "SELECT st.id, st.study_uid, p.patient_id, p.patient_name, st.study_date, st.study_description," \
    " st.accession_number," \
    MODALITIES \
    " (SELECT count(*) FROM series WHERE study_ref = st.id)," \
    " (SELECT coalesce(sum(n_instances), 0) FROM series WHERE study_ref = st.id)," \
    " st.last_received_ms" \
    " FROM studies st JOIN patients p ON p.id = st.patient_ref" \
    " WHERE (st.study_uid = ?1 OR ?1 IS NULL)" \
    " AND (EXISTS (SELECT 1 FROM series x WHERE x.study_ref = st.id AND x.series_uid = ?2) OR ?2 IS NULL)" \
    " AND (p.patient_id = ?3 OR ?3 IS NULL)" \
    " AND (EXISTS (SELECT 1 FROM series x WHERE x.study_ref = st.id AND x.modality = ?4) OR ?4 IS NULL)" \
    " AND (st.study_date >= ?5 OR ?5 IS NULL) AND (st.study_date <= ?6 OR ?6 IS NULL)" \
    " AND (EXISTS (SELECT 1 FROM series x JOIN sites y ON y.id = x.site_id" \
    "   WHERE x.study_ref = st.id AND y.name = ?7) OR ?7 IS NULL)" \
    " ORDER BY st.study_date DESC NULLS LAST, st.id DESC LIMIT ?8 OFFSET ?9"
static const char SQL_STUDY_QUERY[] = STUDY_QUERY(
    " (SELECT group_concat(m, '\\') FROM (SELECT DISTINCT modality AS m FROM series"
    "   WHERE study_ref = st.id AND modality IS NOT NULL ORDER BY m)),");
static const char SQL_STUDY_QUERY_PG[] =
    STUDY_QUERY(" (SELECT string_agg(DISTINCT modality COLLATE \"C\", '\\' ORDER BY modality COLLATE \"C\") FROM series"
                "   WHERE study_ref = st.id AND modality IS NOT NULL),");
#undef STUDY_QUERY

static void read_study(sql_stmt *st, void *row)
{
    samda_study_info *r = row;
    memset(r, 0, sizeof *r);
    r->id = sql_col_int64(st, 0);
    storage_col_text(st, 1, r->study_uid, sizeof r->study_uid);
    storage_col_text(st, 2, r->patient_id, sizeof r->patient_id);
    storage_col_text(st, 3, r->patient_name, sizeof r->patient_name);
    storage_col_text(st, 4, r->study_date, sizeof r->study_date);
    storage_col_text(st, 5, r->study_description, sizeof r->study_description);
    storage_col_text(st, 6, r->accession_number, sizeof r->accession_number);
    storage_col_text(st, 7, r->modalities, sizeof r->modalities);
    r->n_series = sql_col_int64(st, 8);
    r->n_instances = sql_col_int64(st, 9);
    r->last_received_ms = sql_col_int64(st, 10);
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
    sql_stmt *st = storage_stmt(c, storage_sql(c, SQL_STUDY_QUERY, SQL_STUDY_QUERY_PG), err);
    res = err->code;
    if (st) {
        storage_bind_text(st, 1, q->study_uid);
        storage_bind_text(st, 2, q->series_uid);
        storage_bind_text(st, 3, q->patient_id);
        storage_bind_text(st, 4, q->modality);
        storage_bind_text(st, 5, q->date_from);
        storage_bind_text(st, 6, q->date_to);
        storage_bind_text(st, 7, q->site);
        sql_bind_int64(st, 8, (int64_t)storage_list_limit(q->limit));
        sql_bind_int64(st, 9, (int64_t)q->offset);
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
