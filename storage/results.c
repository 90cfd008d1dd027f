/* storage/results.c: results of segmentation jobs: which DICOM-SEG (file, SOP UID) was produced for
 * which source series, by which model and adapter version, with timings and label statistics.
 * The SEG file itself is committed through objects.c (SAMDA_OBJECT_SEG); recording the result claims
 * it, so a crash between the two leaves no unclaimed file after the next open. samdad records its
 * results with samda_store_result_ingest, which also indexes the SEG as an instance of its study
 * (index.c's indexing path, in the same transaction): the results row and the instance row share
 * the file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

void samda_result_clear(samda_result *r)
{
    if (!r) return;
    free(r->timings_json);
    free(r->label_stats_json);
    memset(r, 0, sizeof *r);
}

void samda_result_list_free(samda_result *r, size_t n)
{
    if (!r) return;
    for (size_t i = 0; i < n; i++) samda_result_clear(&r[i]);
    free(r);
}

/* The spec's own checks; the object is checked only when the caller passes one (result_add). */
static samda_status check_spec(const samda_result_spec *spec, bool with_object, samda_error *err)
{
    if (!spec || (with_object && !spec->object))
        return samda_fail(err, SAMDA_EINVAL, "recording result: spec and object required");
    if (!samda_uid_is_valid(spec->series_uid) || !samda_uid_is_valid(spec->seg_series_uid) ||
        !samda_uid_is_valid(spec->seg_sop_uid))
        return samda_fail(err, SAMDA_EBADUID, "recording result: series, SEG series and SEG SOP UIDs must be valid");
    if (with_object && (!samda_store_relpath_is_valid(spec->object->relpath) ||
                        strncmp(spec->object->relpath, "seg/", 4) != 0 || strlen(spec->object->sha256) != 64))
        return samda_fail(err, SAMDA_EINVAL, "recording result %s: object must be committed as SAMDA_OBJECT_SEG",
                          spec->seg_sop_uid);
    if (!storage_len_ok(spec->model_version, SAMDA_KEY_SIZE))
        return samda_fail(err, SAMDA_EINVAL, "recording result %s: model version too long", spec->seg_sop_uid);
    samda_status res = storage_check_json(spec->timings_json, "result timings", err);
    if (res == SAMDA_OK) res = storage_check_json(spec->label_stats_json, "result label statistics", err);
    for (size_t i = 0; res == SAMDA_OK && i < spec->n_objects; i++)
        res = storage_result_object_check(&spec->objects[i], err);
    return res;
}

/* The results row of spec with object o, its change-feed row and its object's intent claimed, on c
 * inside the caller's write transaction. */
static samda_status insert_result(samda_store *s, storage_conn *c, const samda_result_spec *spec,
                                  const samda_object_info *o, int64_t *id, samda_error *err)
{
    sql_stmt *st = storage_stmt(c, "INSERT INTO results(job_id, series_uid, seg_series_uid, seg_sop_uid,"
                                       " file_relpath, file_size, sha256, model_version, adapter_version,"
                                       " timings_json, label_stats_json, created_ms)"
                                       " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) RETURNING id", err);
    if (!st) return err->code;
    storage_bind_int64_or_null(st, 1, spec->job_id);
    sql_bind_text(st, 2, spec->series_uid);
    sql_bind_text(st, 3, spec->seg_series_uid);
    sql_bind_text(st, 4, spec->seg_sop_uid);
    sql_bind_text(st, 5, o->relpath);
    sql_bind_int64(st, 6, (int64_t)o->size);
    sql_bind_text(st, 7, o->sha256);
    storage_bind_text(st, 8, spec->model_version);
    storage_bind_int64_or_null(st, 9, spec->adapter_version);
    storage_bind_text(st, 10, spec->timings_json);
    storage_bind_text(st, 11, spec->label_stats_json);
    sql_bind_int64(st, 12, samda_store_now_ms(s));
    int rc = storage_exec_insert(s, st, id);
    if (rc == SQL_CONSTRAINT_FOREIGNKEY)
        return samda_fail(err, SAMDA_EINVAL, "recording result %s: job %lld does not exist", spec->seg_sop_uid,
                          (long long)spec->job_id);
    if ((rc & 0xff) == SQL_CONSTRAINT)
        return samda_fail(err, SAMDA_EEXIST, "recording result %s: SEG SOP UID or file already recorded",
                          spec->seg_sop_uid);
    if (rc != SQL_OK) return storage_db_fail(err, c, rc, "recording result");
    samda_status res = storage_change_add(s, c, "result", spec->seg_sop_uid, SAMDA_CHANGE_NEW, err);
    if (res == SAMDA_OK) res = storage_intent_claim(s, c, o->relpath, err);
    return res;
}

samda_status samda_store_result_add(samda_store *s, const samda_result_spec *spec, int64_t *id, samda_error *err)
{
    STORAGE_ERR(err);
    samda_status res = check_spec(spec, true, err);
    if (res != SAMDA_OK) return res;
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    int64_t result_id = 0;
    res = storage_tx_begin(s, c, err);
    if (res == SAMDA_OK) {
        res = insert_result(s, c, spec, spec->object, &result_id, err);
        for (size_t i = 0; res == SAMDA_OK && i < spec->n_objects; i++)
            res = storage_result_object_insert(s, c, &spec->objects[i], result_id, NULL, err);
        if (res == SAMDA_OK) res = storage_tx_commit(s, c, err);
        else storage_tx_rollback(s, c);
        if (res == SAMDA_OK && id) *id = result_id;
    }
    storage_conn_put(s, c);
    return res;
}

samda_status samda_store_result_ingest(samda_store *s, samda_tmp_file *tmp, const samda_instance_meta *meta,
                                       const samda_result_spec *spec, samda_ingest_result *res, int64_t *id,
                                       samda_error *err)
{
    STORAGE_ERR(err);
    samda_ingest_result local;
    if (!res) res = &local;
    memset(res, 0, sizeof *res);
    if (!tmp || tmp->fd < 0) return samda_fail(err, SAMDA_EINVAL, "storing result: temporary file not open");
    samda_status st = check_spec(spec, false, err);
    if (st == SAMDA_OK) st = storage_validate_meta(meta, err);
    if (st == SAMDA_OK && (strcmp(meta->sop_uid, spec->seg_sop_uid) != 0 ||
                           strcmp(meta->series_uid, spec->seg_series_uid) != 0))
        st = samda_fail(err, SAMDA_EINVAL, "storing result %s: the SEG's SOP Instance or Series UID is not the "
                        "result's", spec->seg_sop_uid);
    for (size_t i = 0; st == SAMDA_OK && i < spec->n_objects; i++)
        st = storage_result_object_check_meta(&spec->objects[i], err);
    if (st != SAMDA_OK) {
        samda_store_object_tmp_discard(s, tmp);
        return st;
    }
    samda_instance_meta m = *meta;
    m.flags |= SAMDA_INSTANCE_RESULT;
    samda_object_info obj;
    st = samda_store_object_commit(s, tmp, SAMDA_OBJECT_SEG, m.study_uid, m.series_uid, m.sop_uid, &obj, err);
    if (st != SAMDA_OK) return st; /* tmp consumed, nothing left */

    storage_conn *c = storage_conn_get(s, err);
    if (!c) st = err->code;
    else {
        char old[SAMDA_RELPATH_SIZE];
        st = storage_tx_begin(s, c, err);
        if (st == SAMDA_OK) {
            int64_t result_id = 0;
            st = storage_index_instance(s, c, &m, &obj, false, res, old, err);
            if (st == SAMDA_OK) st = insert_result(s, c, spec, &obj, &result_id, err);
            for (size_t i = 0; st == SAMDA_OK && i < spec->n_objects; i++)
                st = storage_result_object_index(s, c, &spec->objects[i], result_id, err);
            if (st == SAMDA_OK) st = storage_tx_commit(s, c, err);
            else storage_tx_rollback(s, c);
            if (st == SAMDA_OK && id) *id = result_id;
        }
        storage_conn_put(s, c);
    }
    if (st != SAMDA_OK) {
        storage_object_unlink(s, obj.relpath);
        for (size_t i = 0; i < spec->n_objects; i++) storage_object_unlink(s, spec->objects[i].object->relpath);
    }
    return st;
}

#define RESULT_COLS                                                                                        \
    "SELECT id, job_id, series_uid, seg_series_uid, seg_sop_uid, file_relpath, file_size, sha256,"         \
    " model_version, adapter_version, timings_json, label_stats_json, created_ms FROM results "

static void read_result(sql_stmt *st, void *row)
{
    samda_result *r = row;
    r->id = sql_col_int64(st, 0);
    r->job_id = sql_col_int64(st, 1);
    storage_col_text(st, 2, r->series_uid, sizeof r->series_uid);
    storage_col_text(st, 3, r->seg_series_uid, sizeof r->seg_series_uid);
    storage_col_text(st, 4, r->seg_sop_uid, sizeof r->seg_sop_uid);
    storage_col_text(st, 5, r->object.relpath, sizeof r->object.relpath);
    r->object.size = (uint64_t)sql_col_int64(st, 6);
    storage_col_text(st, 7, r->object.sha256, sizeof r->object.sha256);
    storage_col_text(st, 8, r->model_version, sizeof r->model_version);
    r->adapter_version = (int)sql_col_int64(st, 9);
    r->timings_json = storage_col_dup(st, 10);
    r->label_stats_json = storage_col_dup(st, 11);
    r->created_ms = sql_col_int64(st, 12);
}

static void clear_results(void *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) samda_result_clear((samda_result *)rows + i);
}

static samda_status result_select(samda_store *s, const char *sql, int64_t id, const char *uid, samda_result **out,
                                  size_t *n, samda_error *err)
{
    *out = NULL;
    *n = 0;
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    samda_status res = SAMDA_OK;
    sql_stmt *st = storage_stmt(c, sql, err);
    if (!st) res = err->code;
    else {
        if (uid) sql_bind_text(st, 1, uid);
        else sql_bind_int64(st, 1, id);
        res = storage_collect(s, c, st, sizeof **out, read_result, clear_results, (void **)out, n, "listing results",
                              err);
    }
    storage_conn_put(s, c);
    return res;
}

samda_status samda_store_result_get(samda_store *s, int64_t id, samda_result *out, samda_error *err)
{
    STORAGE_ERR(err);
    memset(out, 0, sizeof *out);
    samda_result *rows;
    size_t n;
    samda_status st = result_select(s, RESULT_COLS "WHERE id = ?1", id, NULL, &rows, &n, err);
    if (st != SAMDA_OK) return st;
    if (n == 0) st = samda_fail(err, SAMDA_ENOENT, "result %lld: no such result", (long long)id);
    else *out = rows[0];
    free(rows);
    return st;
}

samda_status samda_store_result_list(samda_store *s, const char *series_uid, samda_result **rows, size_t *n,
                                     samda_error *err)
{
    STORAGE_ERR(err);
    *rows = NULL;
    *n = 0;
    if (!samda_uid_is_valid(series_uid))
        return samda_fail(err, SAMDA_EBADUID, "listing results: series UID is not a valid UID");
    return result_select(s, RESULT_COLS "WHERE series_uid = ?1 ORDER BY id DESC", 0, series_uid, rows, n, err);
}
