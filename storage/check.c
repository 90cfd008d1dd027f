/* storage/check.c: the whole-store consistency check (`samda check`, the crash test's checker):
 * SQLite integrity, every indexed file present with its size and SHA-256, no file under objects/
 * that no row claims, tmp/ empty. It only reads; it repairs nothing (opening the store does the
 * repairs that are safe). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

static void problem(samda_store_check_report *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(samda_store_check_report *r, const char *fmt, ...)
{
    if (r->first_problem[0]) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->first_problem, sizeof r->first_problem, fmt, ap); /* truncation is fine: one line */
    va_end(ap);
}

/* Walk objects/ (depth bounded by the layout: at most 4 levels). */
static samda_status walk(samda_store *s, storage_conn *c, char *rel, size_t rel_len, int depth,
                         samda_store_check_report *r, samda_error *err)
{
    char path[STORAGE_PATH_MAX];
    storage_path_join(path, s->objects_dir, rel);
    DIR *d = opendir(path);
    if (!d) return samda_fail(err, SAMDA_EIO, "checking store: cannot open %s: %s", path, strerror(errno));
    samda_status res = SAMDA_OK;
    struct dirent *de;
    while (res == SAMDA_OK && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        size_t nl = strlen(de->d_name);
        if (rel_len + 1 + nl >= SAMDA_RELPATH_SIZE) {
            r->n_unindexed++;
            problem(r, "unexpected long path under objects/%s", rel);
            continue;
        }
        size_t nlen = rel_len;
        if (rel_len) rel[nlen++] = '/';
        memcpy(rel + nlen, de->d_name, nl + 1);
        struct stat sb;
        char full[STORAGE_PATH_MAX];
        storage_path_join(full, s->objects_dir, rel);
        if (lstat(full, &sb) != 0) {
            /* vanished meanwhile */
        } else if (S_ISDIR(sb.st_mode) && depth < 4) {
            res = walk(s, c, rel, nlen + nl, depth + 1, r, err);
        } else {
            int claimed = samda_store_relpath_is_valid(rel) ? storage_relpath_claimed(s, c, rel, err) : 0;
            if (claimed < 0) res = err->code;
            else if (!claimed) {
                r->n_unindexed++;
                problem(r, "objects/%s is not claimed by the index", rel);
            }
        }
        rel[rel_len] = '\0';
    }
    closedir(d);
    return res;
}

samda_status samda_store_check(samda_store *s, samda_store_check_report *report, samda_error *err)
{
    STORAGE_ERR(err);
    samda_store_check_report local;
    samda_store_check_report *r = report ? report : &local;
    memset(r, 0, sizeof *r);
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    samda_status res = SAMDA_OK;

    /* PostgreSQL keeps its own pages' integrity (data checksums, amcheck): only SQLite's is checked here. */
    sql_stmt *st = storage_stmt(c, storage_sql(c, "PRAGMA integrity_check", "SELECT 'ok'"), err);
    if (!st) res = err->code;
    else {
        int rc = sql_step(st);
        const char *v = rc == SQL_ROW ? sql_col_text(st, 0) : NULL;
        r->integrity_ok = v && strcmp(v, "ok") == 0;
        if (!r->integrity_ok) problem(r, "index integrity check: %s", v ? v : sql_errmsg(c->q));
        sql_reset(st);
    }

    if (res == SAMDA_OK) {
        /* UNION: a result's SEG (and its RTSTRUCT and SR) is also an instance of its study, one file
         * for both rows */
        st = storage_stmt(c, "SELECT file_relpath, file_size, sha256 FROM instances UNION"
                             " SELECT file_relpath, file_size, sha256 FROM results UNION"
                             " SELECT file_relpath, file_size, sha256 FROM result_objects UNION"
                             " SELECT file_relpath, file_size, sha256 FROM adapters", err);
        if (!st) res = err->code;
        int rc = SQL_DONE;
        while (res == SAMDA_OK && (rc = sql_step(st)) == SQL_ROW) {
            samda_object_info obj;
            const char *rel = obj.relpath;
            storage_col_text(st, 0, obj.relpath, sizeof obj.relpath);
            obj.size = (uint64_t)sql_col_int64(st, 1);
            storage_col_text(st, 2, obj.sha256, sizeof obj.sha256);
            r->n_objects_indexed++;
            char path[STORAGE_PATH_MAX];
            storage_path_join(path, s->objects_dir, rel);
            int fd = samda_store_relpath_is_valid(rel) ? open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW) : -1;
            if (fd < 0) {
                r->n_missing++;
                problem(r, "indexed file objects/%s is missing", rel);
                continue;
            }
            samda_error e2;
            if (storage_object_verify_fd(fd, &obj, &e2) != SAMDA_OK) {
                r->n_mismatch++;
                problem(r, "indexed file objects/%s differs from its index row (size or SHA-256)", rel);
            }
            close(fd);
        }
        if (st) sql_reset(st);
        if (res == SAMDA_OK && rc != SQL_DONE) res = storage_db_fail(err, c, rc, "checking indexed files");
    }

    if (res == SAMDA_OK) {
        char rel[SAMDA_RELPATH_SIZE] = "";
        res = walk(s, c, rel, 0, 0, r, err);
    }
    storage_conn_put(s, c);

    if (res == SAMDA_OK) {
        DIR *d = opendir(s->tmp_dir);
        if (!d) return samda_fail(err, SAMDA_EIO, "checking store: cannot open %s: %s", s->tmp_dir, strerror(errno));
        struct dirent *de;
        while ((de = readdir(d)) != NULL)
            if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
                r->n_tmp_files++;
                problem(r, "tmp/%s left behind", de->d_name);
            }
        closedir(d);
    }
    if (res != SAMDA_OK) return res;
    if (!r->integrity_ok) return samda_fail(err, SAMDA_EDB, "checking store: %s", r->first_problem);
    if (r->n_missing || r->n_mismatch || r->n_unindexed || r->n_tmp_files)
        return samda_fail(err, SAMDA_EIO, "checking store: %zu missing, %zu differing, %zu unindexed, %zu in tmp/; "
                          "first: %s", r->n_missing, r->n_mismatch, r->n_unindexed, r->n_tmp_files, r->first_problem);
    return SAMDA_OK;
}
