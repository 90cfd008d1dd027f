/* storage/result_objects.c: the objects made beside a result's DICOM-SEG (RT Structure Set,
 * Measurement Report SR), which file holds each and which result it belongs to. The files are
 * committed through objects.c (SAMDA_OBJECT_SEG); recording a row claims its file, so a crash
 * between the two leaves no unclaimed file after the next open. samda_store_result_ingest records
 * them with their result and indexes each as an instance of its study, as it does the SEG (the
 * instance row and this row share the file). Export goes through export.c like any object. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static bool kind_ok(const char *k) { return k && (!strcmp(k, "rtstruct") || !strcmp(k, "sr")); }

samda_status storage_result_object_check(const samda_result_object_spec *spec, samda_error *err)
{
    if (!spec || !spec->object || !kind_ok(spec->kind))
        return samda_fail(err, SAMDA_EINVAL, "recording a result object: spec, object and kind (rtstruct, sr) required");
    if (!samda_uid_is_valid(spec->series_uid) || !samda_uid_is_valid(spec->sop_uid))
        return samda_fail(err, SAMDA_EBADUID, "recording a %s: series and SOP UIDs must be valid", spec->kind);
    if (!samda_store_relpath_is_valid(spec->object->relpath) || strncmp(spec->object->relpath, "seg/", 4) != 0 ||
        strlen(spec->object->sha256) != 64)
        return samda_fail(err, SAMDA_EINVAL, "recording %s %s: object must be committed as SAMDA_OBJECT_SEG",
                          spec->kind, spec->sop_uid);
    return SAMDA_OK;
}

samda_status storage_result_object_insert(samda_store *s, storage_conn *c, const samda_result_object_spec *spec,
                                          int64_t result_id, int64_t *id, samda_error *err)
{
    sql_stmt *st = storage_stmt(c, "INSERT INTO result_objects(result_id, kind, series_uid, sop_uid, file_relpath,"
                                       " file_size, sha256, created_ms) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING id", err);
    if (!st) return err->code;
    sql_bind_int64(st, 1, result_id);
    sql_bind_text(st, 2, spec->kind);
    sql_bind_text(st, 3, spec->series_uid);
    sql_bind_text(st, 4, spec->sop_uid);
    sql_bind_text(st, 5, spec->object->relpath);
    sql_bind_int64(st, 6, (int64_t)spec->object->size);
    sql_bind_text(st, 7, spec->object->sha256);
    sql_bind_int64(st, 8, samda_store_now_ms(s));
    int rc = storage_exec_insert(s, st, id);
    if (rc == SQL_CONSTRAINT_FOREIGNKEY)
        return samda_fail(err, SAMDA_EINVAL, "recording %s %s: result %lld does not exist", spec->kind, spec->sop_uid,
                          (long long)result_id);
    if ((rc & 0xff) == SQL_CONSTRAINT)
        return samda_fail(err, SAMDA_EEXIST, "recording %s %s: SOP UID or file already recorded, or result %lld "
                          "already has a %s", spec->kind, spec->sop_uid, (long long)result_id, spec->kind);
    if (rc != SQL_OK) return storage_db_fail(err, c, rc, "recording a result object");
    return storage_intent_claim(s, c, spec->object->relpath, err);
}

samda_status storage_result_object_check_meta(const samda_result_object_spec *spec, samda_error *err)
{
    samda_status st = storage_result_object_check(spec, err);
    if (st != SAMDA_OK) return st;
    if (!spec->meta)
        return samda_fail(err, SAMDA_EINVAL, "storing %s %s: its header is needed to index it", spec->kind,
                          spec->sop_uid);
    if ((st = storage_validate_meta(spec->meta, err)) != SAMDA_OK) return st;
    if (strcmp(spec->meta->sop_uid, spec->sop_uid) != 0 || strcmp(spec->meta->series_uid, spec->series_uid) != 0)
        return samda_fail(err, SAMDA_EINVAL, "storing %s %s: its header names another SOP Instance or Series UID",
                          spec->kind, spec->sop_uid);
    return SAMDA_OK;
}

samda_status storage_result_object_index(samda_store *s, storage_conn *c, const samda_result_object_spec *spec,
                                         int64_t result_id, samda_error *err)
{
    samda_instance_meta m = *spec->meta;
    m.flags |= SAMDA_INSTANCE_RESULT;
    samda_ingest_result r;
    char old[SAMDA_RELPATH_SIZE];
    samda_status st = storage_index_instance(s, c, &m, spec->object, false, &r, old, err);
    if (st == SAMDA_OK) st = storage_result_object_insert(s, c, spec, result_id, NULL, err);
    return st;
}

samda_status samda_store_result_object_add(samda_store *s, const samda_result_object_spec *spec, int64_t *id,
                                           samda_error *err)
{
    STORAGE_ERR(err);
    samda_status res = storage_result_object_check(spec, err);
    if (res != SAMDA_OK) return res;
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    res = storage_tx_begin(s, c, err);
    if (res == SAMDA_OK) {
        res = storage_result_object_insert(s, c, spec, spec->result_id, id, err);
        if (res == SAMDA_OK) res = storage_tx_commit(s, c, err);
        else storage_tx_rollback(s, c);
    }
    storage_conn_put(s, c);
    return res;
}

static void read_row(sql_stmt *st, void *row)
{
    samda_result_object *r = row;
    r->id = sql_col_int64(st, 0);
    r->result_id = sql_col_int64(st, 1);
    storage_col_text(st, 2, r->kind, sizeof r->kind);
    storage_col_text(st, 3, r->series_uid, sizeof r->series_uid);
    storage_col_text(st, 4, r->sop_uid, sizeof r->sop_uid);
    storage_col_text(st, 5, r->object.relpath, sizeof r->object.relpath);
    r->object.size = (uint64_t)sql_col_int64(st, 6);
    storage_col_text(st, 7, r->object.sha256, sizeof r->object.sha256);
    r->created_ms = sql_col_int64(st, 8);
}

samda_status samda_store_result_object_list(samda_store *s, int64_t result_id, samda_result_object **rows,
                                            size_t *n, samda_error *err)
{
    STORAGE_ERR(err);
    *rows = NULL;
    *n = 0;
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    samda_status res = SAMDA_OK;
    sql_stmt *st = storage_stmt(c, "SELECT id, result_id, kind, series_uid, sop_uid, file_relpath, file_size,"
                                       " sha256, created_ms FROM result_objects WHERE result_id = ?1 ORDER BY id", err);
    if (!st) res = err->code;
    else {
        sql_bind_int64(st, 1, result_id);
        res = storage_collect(s, c, st, sizeof **rows, read_row, NULL, (void **)rows, n, "listing result objects", err);
    }
    storage_conn_put(s, c);
    return res;
}
