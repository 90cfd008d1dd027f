/* storage/objects.c: the on-disk object store: UID validation, object paths, temporary files, the
 * crash-safe commit (fsync file, rename into place, fsync directory), reads, and crash recovery at open.
 *
 * Crash safety rests on one rule: a file under objects/ must be claimed by an index row. Before a
 * file is renamed into objects/, its path is recorded in object_intents (a committed transaction);
 * the index transaction that references the file deletes the intent. At open, with no other process
 * using the store, every file still listed in object_intents and claimed by no row is removed, and
 * tmp/ is emptied. Indexing (which tables claim a file) is index.c's, results'/adapters' own files. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

static bool all_digits(const char *p, size_t n)
{
    if (n == 0 || n > 19) return false;
    for (size_t i = 0; i < n; i++)
        if (p[i] < '0' || p[i] > '9') return false;
    return true;
}

/* Build a relpath; rev > 1 adds ".r<rev>" before the extension (a replaced instance's new file, so
 * that the old file stays valid until the index no longer points at it). */
static samda_status build_relpath(samda_object_kind kind, const char *a, const char *b, const char *c,
                                  unsigned rev, char out[SAMDA_RELPATH_SIZE], samda_error *err)
{
    out[0] = '\0';
    const char *names[3] = {"study UID", "series UID", "SOP instance UID"};
    const char *comps[3] = {a, b, c};
    int n_comps = 3;
    const char *prefix = "", *ext = ".dcm";
    switch (kind) {
    case SAMDA_OBJECT_INSTANCE: break;
    case SAMDA_OBJECT_SEG: prefix = "seg/"; break;
    case SAMDA_OBJECT_ADAPTER:
        prefix = "adapters/";
        ext = ".safetensors";
        n_comps = 2;
        names[0] = "site id";
        names[1] = "adapter version";
        break;
    default: return samda_fail(err, SAMDA_EINVAL, "building object path: unknown object kind %d", (int)kind);
    }
    for (int i = 0; i < n_comps; i++) {
        if (!samda_uid_is_valid(comps[i]))
            return samda_fail(err, SAMDA_EBADUID, "building object path: %s is not a valid UID (digits and "
                              "dots, 1..64 characters)", names[i]);
        if (kind == SAMDA_OBJECT_ADAPTER && !all_digits(comps[i], strlen(comps[i])))
            return samda_fail(err, SAMDA_EBADUID, "building object path: %s must be a positive integer", names[i]);
    }
    char revs[16] = "";
    if (rev > 1) snprintf(revs, sizeof revs, ".r%u", rev);
    int w = n_comps == 3 ? snprintf(out, SAMDA_RELPATH_SIZE, "%s%s/%s/%s%s%s", prefix, a, b, c, revs, ext)
                         : snprintf(out, SAMDA_RELPATH_SIZE, "%s%s/%s%s%s", prefix, a, b, revs, ext);
    if (w < 0 || w >= SAMDA_RELPATH_SIZE) { /* cannot happen with 64-character UIDs; keep the bound */
        out[0] = '\0';
        return samda_fail(err, SAMDA_EINVAL, "building object path: longer than %d bytes", SAMDA_RELPATH_SIZE - 1);
    }
    return SAMDA_OK;
}

samda_status samda_store_object_relpath(samda_object_kind kind, const char *a, const char *b, const char *c,
                                        char out[SAMDA_RELPATH_SIZE], samda_error *err)
{
    return build_relpath(kind, a, b, c, 0, out, err);
}

/* Last component: <uid>[.r<digits>]<ext>. */
static bool file_component_ok(const char *p, size_t n, const char *ext, bool digits_only)
{
    size_t el = strlen(ext);
    if (n <= el || memcmp(p + n - el, ext, el) != 0) return false;
    n -= el;
    /* optional revision suffix */
    for (size_t i = n; i > 0; i--) {
        if (p[i - 1] == '.') break;
        if (p[i - 1] == 'r' && i >= 2 && p[i - 2] == '.' && all_digits(p + i, n - i)) {
            n = i - 2;
            break;
        }
    }
    char buf[SAMDA_UID_SIZE];
    if (n == 0 || n >= sizeof buf) return false;
    memcpy(buf, p, n);
    buf[n] = '\0';
    return samda_uid_is_valid(buf) && (!digits_only || all_digits(buf, n));
}

static bool uid_component_ok(const char *p, size_t n, bool digits_only)
{
    char buf[SAMDA_UID_SIZE];
    if (n == 0 || n >= sizeof buf) return false;
    memcpy(buf, p, n);
    buf[n] = '\0';
    return samda_uid_is_valid(buf) && (!digits_only || all_digits(buf, n));
}

bool samda_store_relpath_is_valid(const char *relpath)
{
    if (!relpath || strnlen(relpath, SAMDA_RELPATH_SIZE) >= SAMDA_RELPATH_SIZE) return false;
    const char *p = relpath;
    int want = 3;
    bool adapter = false;
    if (strncmp(p, "seg/", 4) == 0) {
        p += 4;
    } else if (strncmp(p, "adapters/", 9) == 0) {
        p += 9;
        want = 2;
        adapter = true;
    }
    for (int i = 0; i < want; i++) {
        const char *slash = strchr(p, '/');
        bool last = i == want - 1;
        if (last != (slash == NULL)) return false;
        size_t n = last ? strlen(p) : (size_t)(slash - p);
        bool ok = last ? file_component_ok(p, n, adapter ? ".safetensors" : ".dcm", adapter)
                       : uid_component_ok(p, n, adapter);
        if (!ok) return false;
        p += n + (last ? 0 : 1);
    }
    return true;
}

/* Hashing ------------------------------------------------------------------------------------- */

static void to_hex(const unsigned char *d, size_t n, char *hex)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        hex[2 * i] = digits[d[i] >> 4];
        hex[2 * i + 1] = digits[d[i] & 15];
    }
    hex[2 * n] = '\0';
}

void storage_sha256_hex(const void *buf, size_t len, char hex[SAMDA_SHA256_HEX_SIZE])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!EVP_Digest(buf, len, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32) {
        hex[0] = '\0';
        return;
    }
    to_hex(md, 32, hex);
}

samda_status storage_sha256_fd(int fd, char hex[SAMDA_SHA256_HEX_SIZE], uint64_t *size, samda_error *err)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) {
        EVP_MD_CTX_free(ctx);
        return samda_fail(err, SAMDA_EINTERNAL, "hashing object: SHA-256 unavailable in OpenSSL");
    }
    unsigned char buf[65536];
    uint64_t total = 0;
    for (;;) {
        ssize_t r = pread(fd, buf, sizeof buf, (off_t)total);
        if (r < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            EVP_MD_CTX_free(ctx);
            return samda_fail(err, SAMDA_EIO, "hashing object: read failed: %s", strerror(e));
        }
        if (r == 0) break;
        total += (uint64_t)r;
        if (total > SAMDA_OBJECT_MAX_BYTES) {
            EVP_MD_CTX_free(ctx);
            return samda_fail(err, SAMDA_ETOOBIG, "hashing object: larger than %llu bytes",
                              (unsigned long long)SAMDA_OBJECT_MAX_BYTES);
        }
        EVP_DigestUpdate(ctx, buf, (size_t)r);
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_DigestFinal_ex(ctx, md, &mdlen);
    EVP_MD_CTX_free(ctx);
    to_hex(md, 32, hex);
    if (size) *size = total;
    return SAMDA_OK;
}

/* File system steps, each through the fault hook --------------------------------------------- */

static samda_status io_fail(samda_error *err, int e, const char *what, const char *path)
{
    samda_status code = (e == ENOSPC || e == EDQUOT) ? SAMDA_ENOSPC : SAMDA_EIO;
    return samda_fail(err, code, "%s %s: %s", what, path, strerror(e));
}

static int do_fsync(samda_store *s, int fd)
{
    int e = storage_fault(s, SAMDA_FAULT_FSYNC);
    if (e) return e;
    return fsync(fd) == 0 ? 0 : errno;
}

static int fsync_dir_path(samda_store *s, const char *path, bool faultable)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return errno;
    int e = faultable ? do_fsync(s, fd) : (fsync(fd) == 0 ? 0 : errno);
    close(fd);
    return e;
}

/* Create objects/<...>/ for relpath's directory, fsyncing each parent that gained an entry. */
static samda_status make_object_dirs(samda_store *s, const char *relpath, samda_error *err)
{
    char path[STORAGE_PATH_MAX];
    int w = snprintf(path, sizeof path, "%s/%s", s->objects_dir, relpath);
    if (w < 0 || (size_t)w >= sizeof path) return samda_fail(err, SAMDA_EINVAL, "object path too long");
    size_t base = strlen(s->objects_dir) + 1;
    char *last = strrchr(path, '/');
    for (char *q = path + base; q && q <= last; q = strchr(q + 1, '/')) {
        if (*q != '/') continue;
        *q = '\0';
        struct stat sb;
        if (stat(path, &sb) != 0) {
            int e = storage_fault(s, SAMDA_FAULT_MKDIR);
            if (!e && mkdir(path, 0700) != 0 && errno != EEXIST) e = errno;
            if (e) return io_fail(err, e, "creating object directory", path);
            char *parent_end = strrchr(path, '/');
            *parent_end = '\0';
            e = fsync_dir_path(s, path, true);
            *parent_end = '/';
            if (e) return io_fail(err, e, "syncing object directory", path);
        }
        *q = '/';
        if (q == last) break;
    }
    return SAMDA_OK;
}

static void abs_path(const samda_store *s, const char *relpath, char out[STORAGE_PATH_MAX])
{
    /* relpath < SAMDA_RELPATH_SIZE and objects_dir < 3010 bytes: always fits STORAGE_PATH_MAX */
    int w = snprintf(out, STORAGE_PATH_MAX, "%s/%s", s->objects_dir, relpath);
    if (w < 0 || w >= STORAGE_PATH_MAX) out[0] = '\0';
}

samda_status samda_store_object_path(const samda_store *s, const char *relpath, char *out, size_t out_size,
                                     samda_error *err)
{
    if (!samda_store_relpath_is_valid(relpath))
        return samda_fail(err, SAMDA_EINVAL, "resolving object path: not a valid object path");
    int w = snprintf(out, out_size, "%s/%s", s->objects_dir, relpath);
    if (w < 0 || (size_t)w >= out_size)
        return samda_fail(err, SAMDA_EINVAL, "resolving object path: buffer of %zu bytes too small", out_size);
    return SAMDA_OK;
}

/* Temporary files ----------------------------------------------------------------------------- */

samda_status samda_store_object_tmp_open(samda_store *s, samda_tmp_file *tmp, samda_error *err)
{
    tmp->fd = -1;
    int w = snprintf(tmp->path, sizeof tmp->path, "%s/obj-XXXXXX", s->tmp_dir);
    if (w < 0 || (size_t)w >= sizeof tmp->path) return samda_fail(err, SAMDA_EINVAL, "temporary path too long");
    int fd = mkostemp(tmp->path, O_CLOEXEC);
    if (fd < 0) {
        tmp->path[0] = '\0';
        return io_fail(err, errno, "creating temporary file in", s->tmp_dir);
    }
    tmp->fd = fd;
    return SAMDA_OK;
}

samda_status samda_store_object_tmp_write(samda_store *s, samda_tmp_file *tmp, const void *buf, size_t len,
                                          samda_error *err)
{
    if (!tmp || tmp->fd < 0) return samda_fail(err, SAMDA_EINVAL, "writing temporary file: not open");
    const char *p = buf;
    off_t pos = lseek(tmp->fd, 0, SEEK_CUR);
    if (pos < 0) return io_fail(err, errno, "writing temporary file", tmp->path);
    if ((uint64_t)pos + len > SAMDA_OBJECT_MAX_BYTES)
        return samda_fail(err, SAMDA_ETOOBIG, "writing temporary file: object larger than %llu bytes",
                          (unsigned long long)SAMDA_OBJECT_MAX_BYTES);
    while (len > 0) {
        int e = storage_fault(s, SAMDA_FAULT_WRITE);
        if (e) return io_fail(err, e, "writing temporary file", tmp->path);
        ssize_t n = write(tmp->fd, p, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return io_fail(err, errno, "writing temporary file", tmp->path);
        }
        p += n;
        len -= (size_t)n;
    }
    return SAMDA_OK;
}

void samda_store_object_tmp_discard(samda_store *s, samda_tmp_file *tmp)
{
    (void)s;
    if (!tmp || tmp->path[0] == '\0') return;
    if (tmp->fd >= 0) close(tmp->fd);
    tmp->fd = -1;
    unlink(tmp->path);
    tmp->path[0] = '\0';
}

/* Intents ------------------------------------------------------------------------------------- */

/* OR IGNORE: an intent already there belongs to someone else's unfinished commit of the same path
 * (which will fail with SAMDA_EEXIST for one of the two); it must outlive our attempt. */
static const char SQL_INTENT_ADD[] =
    "INSERT INTO object_intents(relpath, created_ms) VALUES(?1, ?2) ON CONFLICT DO NOTHING";
static const char SQL_INTENT_DEL[] = "DELETE FROM object_intents WHERE relpath = ?1";

samda_status storage_intent_add(samda_store *s, storage_conn *c, const char *relpath, samda_error *err)
{
    sql_stmt *st = storage_stmt(c, SQL_INTENT_ADD, err);
    if (!st) return err->code;
    sql_bind_text(st, 1, relpath);
    sql_bind_int64(st, 2, samda_store_now_ms(s));
    int rc = storage_exec_stmt(s, st);
    return rc == SQL_OK ? SAMDA_OK : storage_db_fail(err, c, rc, "recording object intent");
}

samda_status storage_intent_claim(samda_store *s, storage_conn *c, const char *relpath, samda_error *err)
{
    sql_stmt *st = storage_stmt(c, SQL_INTENT_DEL, err);
    if (!st) return err->code;
    sql_bind_text(st, 1, relpath);
    int rc = storage_exec_stmt(s, st);
    return rc == SQL_OK ? SAMDA_OK : storage_db_fail(err, c, rc, "clearing object intent");
}

/* Add an intent in its own committed transaction (before a file appears under objects/).
 * *ours: the row was created by this call (so our failure may drop it). */
typedef struct {
    const char *relpath;
    bool ours; /* the intent row is this call's (none was there) */
} intent_args;

static samda_status intent_fn(samda_store *s, storage_conn *c, void *arg, samda_error *err)
{
    intent_args *a = arg;
    samda_status st = storage_intent_add(s, c, a->relpath, err);
    a->ours = st == SAMDA_OK && sql_changes(c->q) > 0;
    return st;
}

/* The intent, durable, in a transaction shared with the other objects being committed now. */
static samda_status intent_add_tx(samda_store *s, const char *relpath, bool *ours, samda_error *err)
{
    intent_args a = {.relpath = relpath};
    samda_status st = storage_tx_shared(s, intent_fn, &a, err);
    *ours = st == SAMDA_OK && a.ours;
    return st;
}

/* Drop an intent outside any transaction; never fault-injected, because cleanup must not fail on
 * purpose. If it fails anyway the intent stays and the next open re-checks the path. */
static void intent_drop(samda_store *s, const char *relpath)
{
    storage_conn *c = storage_conn_get(s, NULL);
    if (!c) return;
    sql_stmt *st = storage_stmt(c, SQL_INTENT_DEL, NULL);
    if (st) {
        sql_bind_text(st, 1, relpath);
        pthread_mutex_lock(&s->write_mu);
        sql_step(st);
        sql_reset(st);
        pthread_mutex_unlock(&s->write_mu);
    }
    storage_conn_put(s, c);
}

void storage_object_unlink(samda_store *s, const char *relpath)
{
    char path[STORAGE_PATH_MAX];
    abs_path(s, relpath, path);
    if (unlink(path) == 0) {
        /* make the removal durable before the intent goes, so that a crash cannot resurrect the file
         * without its intent */
        char *slash = strrchr(path, '/');
        *slash = '\0';
        fsync_dir_path(s, path, false);
    }
    intent_drop(s, relpath);
}

/* Commit -------------------------------------------------------------------------------------- */

/* The data of a file about to be renamed into place: fdatasync flushes it and the size that reads it
 * back (the name is made durable by the directory's fsync after the rename). */
static int do_fdatasync(samda_store *s, int fd)
{
    int e = storage_fault(s, SAMDA_FAULT_FSYNC);
    if (e) return e;
    return fdatasync(fd) == 0 ? 0 : errno;
}

/* Commit tmp under relpath (already built and validated). If tmp->fd is open the file is synced and,
 * unless hashed says info holds its hash already, hashed into info first; if it is closed, info
 * already holds the hash (an earlier try). On
 * SAMDA_EEXIST the temporary file is kept (closed) so that the caller may try another name; on any
 * other failure it is removed. */
static samda_status commit_at(samda_store *s, samda_tmp_file *tmp, const char *relpath, samda_object_info *info,
                              bool hashed, samda_error *err)
{
    samda_status st;
    int e;
    if (tmp->fd >= 0) {
        e = do_fdatasync(s, tmp->fd);
        if (e) {
            st = io_fail(err, e, "syncing temporary file", tmp->path);
            samda_store_object_tmp_discard(s, tmp);
            return st;
        }
        st = hashed ? SAMDA_OK : storage_sha256_fd(tmp->fd, info->sha256, &info->size, err);
        if (st != SAMDA_OK) {
            samda_store_object_tmp_discard(s, tmp);
            return st;
        }
        close(tmp->fd);
        tmp->fd = -1;
    }
    snprintf(info->relpath, sizeof info->relpath, "%s", relpath);

    bool ours = false;
    st = intent_add_tx(s, relpath, &ours, err);
    if (st != SAMDA_OK) {
        samda_error_prefix(err, "committing object: ");
        samda_store_object_tmp_discard(s, tmp);
        return st;
    }
    char final[STORAGE_PATH_MAX];
    abs_path(s, relpath, final);
    bool renamed = false;
    st = make_object_dirs(s, relpath, err);
    if (st == SAMDA_OK) {
        e = storage_fault(s, SAMDA_FAULT_RENAME);
        if (!e && renameat2(AT_FDCWD, tmp->path, AT_FDCWD, final, RENAME_NOREPLACE) != 0) {
            e = errno;
            if (e == EINVAL || e == ENOSYS) { /* file system without RENAME_NOREPLACE: link fails on EEXIST */
                e = link(tmp->path, final) == 0 ? 0 : errno;
                if (!e) unlink(tmp->path);
            }
        }
        if (e == EEXIST) {
            st = samda_fail(err, SAMDA_EEXIST, "committing object: a file already exists at %s", relpath);
        } else if (e) {
            st = io_fail(err, e, "renaming object into", relpath);
        } else {
            renamed = true;
            tmp->path[0] = '\0';
            char dir[STORAGE_PATH_MAX];
            memcpy(dir, final, sizeof dir);
            *strrchr(dir, '/') = '\0';
            e = fsync_dir_path(s, dir, true);
            if (e) st = io_fail(err, e, "syncing object directory", dir);
        }
    }
    if (st != SAMDA_OK) {
        if (st != SAMDA_EEXIST) samda_store_object_tmp_discard(s, tmp);
        if (renamed) storage_object_unlink(s, relpath); /* removes the file, then the intent */
        else if (ours) intent_drop(s, relpath);         /* never touch a file we did not place */
        return st;
    }
    return SAMDA_OK;
}

samda_status storage_object_commit_rev(samda_store *s, samda_tmp_file *tmp, samda_object_kind kind, const char *a,
                                       const char *b, const char *c, unsigned rev, samda_object_info *info,
                                       bool hashed, samda_error *err)
{
    char relpath[SAMDA_RELPATH_SIZE];
    samda_status st = build_relpath(kind, a, b, c, rev, relpath, err);
    if (st != SAMDA_OK) {
        samda_store_object_tmp_discard(s, tmp);
        return st;
    }
    return commit_at(s, tmp, relpath, info, hashed, err);
}

samda_status samda_store_object_commit(samda_store *s, samda_tmp_file *tmp, samda_object_kind kind,
                                       const char *a, const char *b, const char *c, samda_object_info *info,
                                       samda_error *err)
{
    STORAGE_ERR(err);
    if (!tmp || tmp->fd < 0) return samda_fail(err, SAMDA_EINVAL, "committing object: temporary file not open");
    samda_object_info local;
    samda_status st = storage_object_commit_rev(s, tmp, kind, a, b, c, 0, info ? info : &local, false, err);
    samda_store_object_tmp_discard(s, tmp); /* no-op after success; consumes it after SAMDA_EEXIST */
    return st;
}

samda_status samda_store_object_put(samda_store *s, samda_object_kind kind, const char *a, const char *b,
                                    const char *c, const void *buf, size_t len, samda_object_info *info,
                                    samda_error *err)
{
    STORAGE_ERR(err);
    char relpath[SAMDA_RELPATH_SIZE];
    samda_status st = build_relpath(kind, a, b, c, 0, relpath, err);
    if (st != SAMDA_OK) return st;
    samda_tmp_file tmp;
    st = samda_store_object_tmp_open(s, &tmp, err);
    if (st != SAMDA_OK) return st;
    st = samda_store_object_tmp_write(s, &tmp, buf, len, err);
    if (st != SAMDA_OK) {
        samda_store_object_tmp_discard(s, &tmp);
        return st;
    }
    samda_object_info local;
    st = commit_at(s, &tmp, relpath, info ? info : &local, false, err);
    samda_store_object_tmp_discard(s, &tmp);
    return st;
}

/* Reading ------------------------------------------------------------------------------------- */

samda_status samda_store_object_open_read(samda_store *s, const char *relpath, int *fd, samda_error *err)
{
    *fd = -1;
    if (!samda_store_relpath_is_valid(relpath))
        return samda_fail(err, SAMDA_EINVAL, "opening object: not a valid object path");
    char path[STORAGE_PATH_MAX];
    abs_path(s, relpath, path);
    int f = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (f < 0) {
        int e = errno;
        if (e == ENOENT) return samda_fail(err, SAMDA_ENOENT, "opening object %s: no such file", relpath);
        return io_fail(err, e, "opening object", relpath);
    }
    *fd = f;
    return SAMDA_OK;
}

samda_status storage_object_verify_fd(int fd, const samda_object_info *obj, samda_error *err)
{
    char got[SAMDA_SHA256_HEX_SIZE];
    uint64_t size = 0;
    samda_status st = storage_sha256_fd(fd, got, &size, err);
    if (st != SAMDA_OK) return st;
    if (size != obj->size || strcmp(got, obj->sha256) != 0)
        return samda_fail(err, SAMDA_EIO,
                          "object %s changed on disk since it was stored: %llu bytes with SHA-256 %.12s..., "
                          "the index recorded %llu bytes with %.12s... (restore it from a backup or store it again)",
                          obj->relpath, (unsigned long long)size, got, (unsigned long long)obj->size, obj->sha256);
    return SAMDA_OK;
}

samda_status samda_store_object_verify(samda_store *s, const samda_object_info *obj, samda_error *err)
{
    STORAGE_ERR(err);
    int fd;
    samda_status st = samda_store_object_open_read(s, obj->relpath, &fd, err);
    if (st != SAMDA_OK) return st;
    st = storage_object_verify_fd(fd, obj, err);
    close(fd);
    return st;
}

samda_status samda_store_object_read(samda_store *s, const char *relpath, size_t max_bytes, void **buf,
                                     size_t *len, samda_error *err)
{
    STORAGE_ERR(err);
    *buf = NULL;
    *len = 0;
    int fd;
    samda_status st = samda_store_object_open_read(s, relpath, &fd, err);
    if (st != SAMDA_OK) return st;
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        st = io_fail(err, errno, "reading object", relpath);
        close(fd);
        return st;
    }
    if ((uint64_t)sb.st_size > max_bytes) {
        close(fd);
        return samda_fail(err, SAMDA_ETOOBIG, "reading object %s: %lld bytes, more than the %zu allowed", relpath,
                          (long long)sb.st_size, max_bytes);
    }
    size_t n = (size_t)sb.st_size;
    char *p = malloc(n ? n : 1);
    if (!p) {
        close(fd);
        return samda_fail(err, SAMDA_ENOMEM, "reading object %s: out of memory (%zu bytes)", relpath, n);
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, p + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            st = r < 0 ? io_fail(err, errno, "reading object", relpath)
                       : samda_fail(err, SAMDA_EIO, "reading object %s: file shrank while read", relpath);
            free(p);
            close(fd);
            return st;
        }
        got += (size_t)r;
    }
    close(fd);
    *buf = p;
    *len = n;
    return SAMDA_OK;
}

/* Recovery ------------------------------------------------------------------------------------ */

static const char SQL_CLAIMED[] =
    "SELECT 1 FROM instances WHERE file_relpath = ?1 UNION ALL "
    "SELECT 1 FROM results WHERE file_relpath = ?1 UNION ALL "
    "SELECT 1 FROM result_objects WHERE file_relpath = ?1 UNION ALL "
    "SELECT 1 FROM adapters WHERE file_relpath = ?1 LIMIT 1";

int storage_relpath_claimed(samda_store *s, storage_conn *c, const char *relpath, samda_error *err)
{
    sql_stmt *st = storage_stmt(c, SQL_CLAIMED, err);
    if (!st) return -1;
    sql_bind_text(st, 1, relpath);
    int rc = storage_step(s, st);
    sql_reset(st);
    if (rc == SQL_ROW) return 1;
    if (rc == SQL_DONE) return 0;
    storage_db_fail(err, c, rc, "checking object ownership");
    return -1;
}

static void read_intent(sql_stmt *st, void *row) { storage_col_text(st, 0, row, SAMDA_RELPATH_SIZE); }

samda_status storage_recover(samda_store *s, storage_conn *c, samda_error *err)
{
    s->tmp_removed = 0;
    s->orphans_removed = 0;
    DIR *d = opendir(s->tmp_dir);
    if (!d) return io_fail(err, errno, "opening", s->tmp_dir);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        if (unlinkat(dirfd(d), de->d_name, 0) == 0) s->tmp_removed++;
    }
    closedir(d);
    if (s->tmp_removed) fsync_dir_path(s, s->tmp_dir, false);

    /* Read the intents first, then decide: the statement must not be stepping while we delete. */
    sql_stmt *st = storage_stmt(c, "SELECT relpath FROM object_intents", err);
    if (!st) return err->code;
    size_t n = 0;
    char (*paths)[SAMDA_RELPATH_SIZE] = NULL;
    samda_status cs = storage_collect(s, c, st, sizeof *paths, read_intent, NULL, (void **)&paths, &n,
                                      "reading object intents", err);
    if (cs != SAMDA_OK) return cs;
    samda_status result = SAMDA_OK;
    for (size_t i = 0; i < n; i++) {
        if (!samda_store_relpath_is_valid(paths[i])) continue; /* never unlink outside objects/ */
        int claimed = storage_relpath_claimed(s, c, paths[i], err);
        if (claimed < 0) {
            result = err->code;
            break;
        }
        if (!claimed) {
            char path[STORAGE_PATH_MAX];
            abs_path(s, paths[i], path);
            if (unlink(path) == 0) {
                s->orphans_removed++;
                *strrchr(path, '/') = '\0';
                fsync_dir_path(s, path, false);
            }
        }
    }
    free(paths);
    if (result != SAMDA_OK) return result;
    if (n) {
        samda_status tx = storage_tx_begin(s, c, err);
        if (tx != SAMDA_OK) return tx;
        st = storage_stmt(c, "DELETE FROM object_intents", err);
        int rc = st ? storage_exec_stmt(s, st) : SQL_ERROR;
        if (rc != SQL_OK) {
            storage_tx_rollback(s, c);
            return st ? storage_db_fail(err, c, rc, "clearing object intents") : err->code;
        }
        return storage_tx_commit(s, c, err);
    }
    return SAMDA_OK;
}
