/* storage/sites.c: configuration rows that admins manage: sites, DICOM destinations and per-site
 * decoder adapter versions (add, list, activate exactly one, roll back, delete inactive ones).
 * Adapter files themselves go through the object store (objects.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

bool samda_store_name_is_valid(const char *name)
{
    if (!name || !*name || *name == '.') return false;
    size_t n = 0;
    for (const char *p = name; *p; p++, n++) {
        if (n >= SAMDA_NAME_SIZE - 1) return false;
        char ch = *p;
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' ||
                  ch == '_' || ch == '-';
        if (!ok) return false;
    }
    return true;
}

samda_status storage_site_lookup(samda_store *s, storage_conn *c, const char *name, int64_t *id, samda_error *err)
{
    sql_stmt *st = storage_stmt(c, "SELECT id FROM sites WHERE name = ?1", err);
    if (!st) return err->code;
    sql_bind_text(st, 1, name);
    int rc = storage_step(s, st);
    samda_status res = SAMDA_OK;
    if (rc == SQL_ROW) *id = sql_col_int64(st, 0);
    else if (rc == SQL_DONE) res = samda_fail(err, SAMDA_ENOENT, "site '%s' is not configured", name);
    else res = storage_db_fail(err, c, rc, "looking up site");
    sql_reset(st);
    return res;
}

static samda_status constraint_or_db(samda_error *err, storage_conn *c, int rc, const char *what, const char *name)
{
    if ((rc & 0xff) == SQL_CONSTRAINT)
        return samda_fail(err, SAMDA_EEXIST, "%s '%s': name already taken", what, name);
    return storage_db_fail(err, c, rc, what);
}

/* Sites ----------------------------------------------------------------------------------------- */

void samda_site_clear(samda_site *site)
{
    if (!site) return;
    free(site->ae_json);
    free(site->settings_json);
    memset(site, 0, sizeof *site);
}

void samda_site_list_free(samda_site *sites, size_t n)
{
    if (!sites) return;
    for (size_t i = 0; i < n; i++) samda_site_clear(&sites[i]);
    free(sites);
}

struct site_args {
    const char *name, *ae_json, *settings_json;
    int64_t *id;
};

static samda_status site_add_body(samda_store *s, storage_conn *c, void *arg, samda_error *err)
{
    struct site_args *a = arg;
    sql_stmt *st = storage_stmt(c, "INSERT INTO sites(name, ae_json, settings_json, created_ms, updated_ms)"
                                       " VALUES(?1, ?2, ?3, ?4, ?4) RETURNING id", err);
    if (!st) return err->code;
    sql_bind_text(st, 1, a->name);
    storage_bind_text(st, 2, a->ae_json);
    storage_bind_text(st, 3, a->settings_json);
    sql_bind_int64(st, 4, samda_store_now_ms(s));
    int rc = storage_exec_insert(s, st, a->id);
    if (rc != SQL_OK) return constraint_or_db(err, c, rc, "adding site", a->name);
    return SAMDA_OK;
}

static samda_status check_site_args(const char *name, const char *ae_json, const char *settings_json, samda_error *err)
{
    if (!samda_store_name_is_valid(name))
        return samda_fail(err, SAMDA_EINVAL, "site name must be 1..64 of letters, digits, '.', '_' or '-'");
    samda_status st = storage_check_json(ae_json, "site AE mappings", err);
    return st != SAMDA_OK ? st : storage_check_json(settings_json, "site settings", err);
}

samda_status samda_store_site_add(samda_store *s, const char *name, const char *ae_json,
                                  const char *settings_json, int64_t *id, samda_error *err)
{
    STORAGE_ERR(err);
    samda_status st = check_site_args(name, ae_json, settings_json, err);
    if (st != SAMDA_OK) return st;
    struct site_args a = {name, ae_json, settings_json, id};
    return storage_tx_run(s, site_add_body, &a, err);
}

static samda_status site_update_body(samda_store *s, storage_conn *c, void *arg, samda_error *err)
{
    struct site_args *a = arg;
    sql_stmt *st = storage_stmt(c, "UPDATE sites SET ae_json = ?2, settings_json = ?3, updated_ms = ?4"
                                       " WHERE name = ?1", err);
    if (!st) return err->code;
    sql_bind_text(st, 1, a->name);
    storage_bind_text(st, 2, a->ae_json);
    storage_bind_text(st, 3, a->settings_json);
    sql_bind_int64(st, 4, samda_store_now_ms(s));
    int rc = storage_exec_stmt(s, st);
    if (rc != SQL_OK) return storage_db_fail(err, c, rc, "updating site");
    if (sql_changes(c->q) == 0) return samda_fail(err, SAMDA_ENOENT, "updating site '%s': not configured", a->name);
    return SAMDA_OK;
}

samda_status samda_store_site_update(samda_store *s, const char *name, const char *ae_json,
                                     const char *settings_json, samda_error *err)
{
    STORAGE_ERR(err);
    samda_status st = check_site_args(name, ae_json, settings_json, err);
    if (st != SAMDA_OK) return st;
    struct site_args a = {name, ae_json, settings_json, NULL};
    return storage_tx_run(s, site_update_body, &a, err);
}

/* Names in byte order on both engines (COLLATE "C": a PostgreSQL database's default collation may be a
 * language's, which orders case and punctuation otherwise). */
static const char SQL_SITE_COLS[] = "SELECT id, name, ae_json, settings_json, created_ms, updated_ms FROM sites"
                                    " WHERE (name = ?1 OR ?1 IS NULL) ORDER BY name COLLATE \"C\"";

static void read_site(sql_stmt *st, void *row)
{
    samda_site *r = row;
    r->id = sql_col_int64(st, 0);
    storage_col_text(st, 1, r->name, sizeof r->name);
    r->ae_json = storage_col_dup(st, 2);
    r->settings_json = storage_col_dup(st, 3);
    r->created_ms = sql_col_int64(st, 4);
    r->updated_ms = sql_col_int64(st, 5);
}

static void clear_sites(void *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) samda_site_clear((samda_site *)rows + i);
}

static samda_status site_select(samda_store *s, const char *name, samda_site **out, size_t *n, samda_error *err)
{
    *out = NULL;
    *n = 0;
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    samda_status res = SAMDA_OK;
    sql_stmt *st = storage_stmt(c, SQL_SITE_COLS, err);
    if (!st) res = err->code;
    else {
        storage_bind_text(st, 1, name);
        res = storage_collect(s, c, st, sizeof **out, read_site, clear_sites, (void **)out, n, "listing sites", err);
    }
    storage_conn_put(s, c);
    return res;
}

samda_status samda_store_site_get(samda_store *s, const char *name, samda_site *out, samda_error *err)
{
    STORAGE_ERR(err);
    memset(out, 0, sizeof *out);
    if (!samda_store_name_is_valid(name)) return samda_fail(err, SAMDA_ENOENT, "reading site: invalid name");
    samda_site *rows;
    size_t n;
    samda_status st = site_select(s, name, &rows, &n, err);
    if (st != SAMDA_OK) return st;
    if (n == 0) st = samda_fail(err, SAMDA_ENOENT, "reading site '%s': not configured", name);
    else *out = rows[0]; /* takes ownership of the strings */
    free(rows);
    return st;
}

samda_status samda_store_site_list(samda_store *s, samda_site **sites, size_t *n, samda_error *err)
{
    STORAGE_ERR(err);
    return site_select(s, NULL, sites, n, err);
}

samda_status samda_store_site_id(samda_store *s, const char *site, int64_t *id, samda_error *err)
{
    STORAGE_ERR(err);
    if (!samda_store_name_is_valid(site)) return samda_fail(err, SAMDA_ENOENT, "looking up site: invalid name");
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    samda_status st = storage_site_lookup(s, c, site, id, err);
    storage_conn_put(s, c);
    return st;
}

static samda_status site_delete_body(samda_store *s, storage_conn *c, void *arg, samda_error *err)
{
    const char *name = arg;
    int64_t id;
    samda_status res = storage_site_lookup(s, c, name, &id, err);
    if (res != SAMDA_OK) return res;
    sql_stmt *st = storage_stmt(c, "SELECT (SELECT count(*) FROM series WHERE site_id = ?1)"
                                       " + (SELECT count(*) FROM instances WHERE site_id = ?1)"
                                       " + (SELECT count(*) FROM jobs WHERE site_id = ?1)"
                                       " + (SELECT count(*) FROM adapters WHERE site_id = ?1)"
                                       " + (SELECT count(*) FROM associations WHERE site_id = ?1)", err);
    if (!st) return err->code;
    sql_bind_int64(st, 1, id);
    int rc = storage_step(s, st);
    int64_t refs = rc == SQL_ROW ? sql_col_int64(st, 0) : -1;
    sql_reset(st);
    if (rc != SQL_ROW) return storage_db_fail(err, c, rc, "deleting site");
    if (refs > 0)
        return samda_fail(err, SAMDA_EBUSY, "deleting site '%s': %lld rows (series, jobs, adapters...) still refer "
                          "to it", name, (long long)refs);
    st = storage_stmt(c, "DELETE FROM sites WHERE id = ?1", err);
    if (!st) return err->code;
    sql_bind_int64(st, 1, id);
    rc = storage_exec_stmt(s, st);
    return rc == SQL_OK ? SAMDA_OK : storage_db_fail(err, c, rc, "deleting site");
}

samda_status samda_store_site_delete(samda_store *s, const char *name, samda_error *err)
{
    STORAGE_ERR(err);
    if (!samda_store_name_is_valid(name)) return samda_fail(err, SAMDA_ENOENT, "deleting site: invalid name");
    return storage_tx_run(s, site_delete_body, (void *)name, err);
}

/* Destinations ------------------------------------------------------------------------------------ */

void samda_destination_clear(samda_destination *d)
{
    if (!d) return;
    free(d->settings_json);
    memset(d, 0, sizeof *d);
}

void samda_destination_list_free(samda_destination *d, size_t n)
{
    if (!d) return;
    for (size_t i = 0; i < n; i++) samda_destination_clear(&d[i]);
    free(d);
}

struct dest_args {
    const char *name, *ae, *host, *settings;
    int port;
    int64_t *id;
    bool upsert;      /* update a destination of the same name in place instead of refusing it */
    const char *verb; /* "adding" or "recording", for messages */
};

static samda_status dest_write_body(samda_store *s, storage_conn *c, void *arg, samda_error *err)
{
    struct dest_args *a = arg;
    sql_stmt *st = storage_stmt(c, a->upsert ? "INSERT INTO destinations(name, ae_title, host, port, settings_json,"
                                                   " created_ms) VALUES(?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(name) DO UPDATE"
                                                   " SET ae_title = ?2, host = ?3, port = ?4, settings_json = ?5 RETURNING id"
                                                 : "INSERT INTO destinations(name, ae_title, host, port, settings_json,"
                                                   " created_ms) VALUES(?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
                                   err);
    if (!st) return err->code;
    sql_bind_text(st, 1, a->name);
    sql_bind_text(st, 2, a->ae);
    sql_bind_text(st, 3, a->host);
    sql_bind_int64(st, 4, a->port);
    storage_bind_text(st, 5, a->settings);
    sql_bind_int64(st, 6, samda_store_now_ms(s));
    /* RETURNING gives the row's id whether the upsert inserted or updated it */
    int rc = storage_exec_insert(s, st, a->id);
    if (rc != SQL_OK)
        return constraint_or_db(err, c, rc, a->upsert ? "recording destination" : "adding destination", a->name);
    return SAMDA_OK;
}

/* Validation shared by add and put, then one transaction. */
static samda_status dest_write(samda_store *s, struct dest_args *a, samda_error *err)
{
    if (!samda_store_name_is_valid(a->name))
        return samda_fail(err, SAMDA_EINVAL, "%s destination: name must be 1..64 of letters, digits, '.', '_' or '-'",
                          a->verb);
    if (!a->ae || !*a->ae || !storage_len_ok(a->ae, SAMDA_AE_SIZE))
        return samda_fail(err, SAMDA_EINVAL, "%s destination '%s': AE title must be 1..16 characters", a->verb, a->name);
    if (!a->host || !*a->host || !storage_len_ok(a->host, 256))
        return samda_fail(err, SAMDA_EINVAL, "%s destination '%s': host must be 1..255 characters", a->verb, a->name);
    if (a->port < 1 || a->port > 65535)
        return samda_fail(err, SAMDA_EINVAL, "%s destination '%s': port %d not in 1..65535", a->verb, a->name, a->port);
    samda_status st = storage_check_json(a->settings, "destination settings", err);
    if (st != SAMDA_OK) return st;
    return storage_tx_run(s, dest_write_body, a, err);
}

samda_status samda_store_destination_add(samda_store *s, const char *name, const char *ae_title,
                                         const char *host, int port, const char *settings_json, int64_t *id,
                                         samda_error *err)
{
    STORAGE_ERR(err);
    struct dest_args a = {name, ae_title, host, settings_json, port, id, false, "adding"};
    return dest_write(s, &a, err);
}

samda_status samda_store_destination_put(samda_store *s, const char *name, const char *ae_title, const char *host,
                                         int port, const char *settings_json, int64_t *id, samda_error *err)
{
    STORAGE_ERR(err);
    struct dest_args a = {name, ae_title, host, settings_json, port, id, true, "recording"};
    return dest_write(s, &a, err);
}

static void read_destination(sql_stmt *st, void *row)
{
    samda_destination *r = row;
    r->id = sql_col_int64(st, 0);
    storage_col_text(st, 1, r->name, sizeof r->name);
    storage_col_text(st, 2, r->ae_title, sizeof r->ae_title);
    storage_col_text(st, 3, r->host, sizeof r->host);
    r->port = (int)sql_col_int64(st, 4);
    r->settings_json = storage_col_dup(st, 5);
    r->created_ms = sql_col_int64(st, 6);
}

static void clear_destinations(void *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) samda_destination_clear((samda_destination *)rows + i);
}

static samda_status dest_select(samda_store *s, const char *name, samda_destination **out, size_t *n,
                                samda_error *err)
{
    *out = NULL;
    *n = 0;
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    samda_status res = SAMDA_OK;
    sql_stmt *st = storage_stmt(c, "SELECT id, name, ae_title, host, port, settings_json, created_ms"
                                       " FROM destinations WHERE (name = ?1 OR ?1 IS NULL) ORDER BY name COLLATE \"C\"",
                                err);
    if (!st) res = err->code;
    else {
        storage_bind_text(st, 1, name);
        res = storage_collect(s, c, st, sizeof **out, read_destination, clear_destinations, (void **)out, n,
                              "listing destinations", err);
    }
    storage_conn_put(s, c);
    return res;
}

samda_status samda_store_destination_get(samda_store *s, const char *name, samda_destination *out,
                                         samda_error *err)
{
    STORAGE_ERR(err);
    memset(out, 0, sizeof *out);
    if (!samda_store_name_is_valid(name)) return samda_fail(err, SAMDA_ENOENT, "reading destination: invalid name");
    samda_destination *rows;
    size_t n;
    samda_status st = dest_select(s, name, &rows, &n, err);
    if (st != SAMDA_OK) return st;
    if (n == 0) st = samda_fail(err, SAMDA_ENOENT, "reading destination '%s': not configured", name);
    else *out = rows[0];
    free(rows);
    return st;
}

samda_status samda_store_destination_list(samda_store *s, samda_destination **d, size_t *n, samda_error *err)
{
    STORAGE_ERR(err);
    return dest_select(s, NULL, d, n, err);
}

static samda_status dest_delete_body(samda_store *s, storage_conn *c, void *arg, samda_error *err)
{
    const char *name = arg;
    sql_stmt *st = storage_stmt(c, "DELETE FROM destinations WHERE name = ?1", err);
    if (!st) return err->code;
    sql_bind_text(st, 1, name);
    int rc = storage_exec_stmt(s, st);
    if (rc != SQL_OK) return storage_db_fail(err, c, rc, "deleting destination");
    if (sql_changes(c->q) == 0) return samda_fail(err, SAMDA_ENOENT, "deleting destination '%s': not configured", name);
    return SAMDA_OK;
}

samda_status samda_store_destination_delete(samda_store *s, const char *name, samda_error *err)
{
    STORAGE_ERR(err);
    if (!samda_store_name_is_valid(name)) return samda_fail(err, SAMDA_ENOENT, "deleting destination: invalid name");
    return storage_tx_run(s, dest_delete_body, (void *)name, err);
}

/* Adapters ---------------------------------------------------------------------------------------- */

void samda_adapter_clear(samda_adapter_row *a)
{
    if (!a) return;
    free(a->metadata_json);
    memset(a, 0, sizeof *a);
}

void samda_adapter_list_free(samda_adapter_row *a, size_t n)
{
    if (!a) return;
    for (size_t i = 0; i < n; i++) samda_adapter_clear(&a[i]);
    free(a);
}

samda_status samda_store_adapter_next_version(samda_store *s, const char *site, int *version, samda_error *err)
{
    STORAGE_ERR(err);
    if (!samda_store_name_is_valid(site)) return samda_fail(err, SAMDA_ENOENT, "adapter version: invalid site name");
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    int64_t site_id;
    samda_status res = storage_site_lookup(s, c, site, &site_id, err);
    if (res == SAMDA_OK) {
        sql_stmt *st = storage_stmt(c, "SELECT coalesce(max(version), 0) + 1 FROM adapters WHERE site_id = ?1", err);
        if (!st) res = err->code;
        else {
            sql_bind_int64(st, 1, site_id);
            int rc = storage_step(s, st);
            if (rc == SQL_ROW) *version = (int)sql_col_int64(st, 0);
            else res = storage_db_fail(err, c, rc, "reading adapter versions");
            sql_reset(st);
        }
    }
    storage_conn_put(s, c);
    return res;
}

struct adapter_args {
    const char *site;
    int version, parent;
    const samda_object_info *object;
    const char *fingerprint, *metadata;
};

static samda_status adapter_add_body(samda_store *s, storage_conn *c, void *arg, samda_error *err)
{
    struct adapter_args *a = arg;
    int64_t site_id;
    samda_status res = storage_site_lookup(s, c, a->site, &site_id, err);
    if (res != SAMDA_OK) return res;
    sql_stmt *st = storage_stmt(c, "INSERT INTO adapters(site_id, version, parent_version, file_relpath,"
                                       " file_size, sha256, base_fingerprint, metadata_json, created_ms)"
                                       " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)", err);
    if (!st) return err->code;
    sql_bind_int64(st, 1, site_id);
    sql_bind_int64(st, 2, a->version);
    storage_bind_int64_or_null(st, 3, a->parent);
    sql_bind_text(st, 4, a->object->relpath);
    sql_bind_int64(st, 5, (int64_t)a->object->size);
    sql_bind_text(st, 6, a->object->sha256);
    storage_bind_text(st, 7, a->fingerprint);
    storage_bind_text(st, 8, a->metadata);
    sql_bind_int64(st, 9, samda_store_now_ms(s));
    int rc = storage_exec_stmt(s, st);
    if ((rc & 0xff) == SQL_CONSTRAINT)
        return samda_fail(err, SAMDA_EEXIST, "adding adapter %s/%d: version or file already recorded", a->site,
                          a->version);
    if (rc != SQL_OK) return storage_db_fail(err, c, rc, "adding adapter");
    char res_name[SAMDA_KEY_SIZE];
    snprintf(res_name, sizeof res_name, "%s/%d", a->site, a->version);
    res = storage_change_add(s, c, "adapter", res_name, SAMDA_CHANGE_NEW, err);
    return res == SAMDA_OK ? storage_intent_claim(s, c, a->object->relpath, err) : res;
}

samda_status samda_store_adapter_add(samda_store *s, const char *site, int version, int parent_version,
                                     const samda_object_info *object, const char *base_fingerprint,
                                     const char *metadata_json, samda_error *err)
{
    STORAGE_ERR(err);
    if (!samda_store_name_is_valid(site)) return samda_fail(err, SAMDA_ENOENT, "adding adapter: invalid site name");
    if (version < 1 || parent_version < 0 || parent_version >= version)
        return samda_fail(err, SAMDA_EINVAL, "adding adapter %s/%d: version must be >= 1 and parent below it", site,
                          version);
    if (!object || !samda_store_relpath_is_valid(object->relpath) || strncmp(object->relpath, "adapters/", 9) != 0 ||
        strlen(object->sha256) != 64)
        return samda_fail(err, SAMDA_EINVAL, "adding adapter %s/%d: object must be committed as SAMDA_OBJECT_ADAPTER",
                          site, version);
    if (!storage_len_ok(base_fingerprint, SAMDA_KEY_SIZE))
        return samda_fail(err, SAMDA_EINVAL, "adding adapter %s/%d: base fingerprint too long", site, version);
    samda_status st = storage_check_json(metadata_json, "adapter metadata", err);
    if (st != SAMDA_OK) return st;
    struct adapter_args a = {site, version, parent_version, object, base_fingerprint, metadata_json};
    return storage_tx_run(s, adapter_add_body, &a, err);
}

static const char SQL_ADAPTER_SELECT[] =
    "SELECT a.id, si.name, a.version, a.parent_version, a.file_relpath, a.file_size, a.sha256, a.base_fingerprint,"
    " a.metadata_json, a.active, a.created_ms, a.activated_ms FROM adapters a JOIN sites si ON si.id = a.site_id"
    " WHERE si.name = ?1 AND (a.version = ?2 OR ?2 IS NULL) AND (a.active = ?3 OR ?3 IS NULL)"
    " ORDER BY a.version DESC";

static void read_adapter(sql_stmt *st, void *row)
{
    samda_adapter_row *r = row;
    r->id = sql_col_int64(st, 0);
    storage_col_text(st, 1, r->site, sizeof r->site);
    r->version = (int)sql_col_int64(st, 2);
    r->parent_version = (int)sql_col_int64(st, 3);
    storage_col_text(st, 4, r->object.relpath, sizeof r->object.relpath);
    r->object.size = (uint64_t)sql_col_int64(st, 5);
    storage_col_text(st, 6, r->object.sha256, sizeof r->object.sha256);
    storage_col_text(st, 7, r->base_fingerprint, sizeof r->base_fingerprint);
    r->metadata_json = storage_col_dup(st, 8);
    r->active = (int)sql_col_int64(st, 9) != 0;
    r->created_ms = sql_col_int64(st, 10);
    r->activated_ms = sql_col_int64(st, 11);
}

static void clear_adapters(void *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) samda_adapter_clear((samda_adapter_row *)rows + i);
}

static samda_status adapter_select(samda_store *s, const char *site, int version, int active, samda_adapter_row **out,
                                   size_t *n, samda_error *err)
{
    *out = NULL;
    *n = 0;
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    samda_status res = SAMDA_OK;
    sql_stmt *st = storage_stmt(c, SQL_ADAPTER_SELECT, err);
    if (!st) res = err->code;
    else {
        sql_bind_text(st, 1, site);
        if (version > 0) sql_bind_int64(st, 2, version);
        if (active >= 0) sql_bind_int64(st, 3, active);
        res = storage_collect(s, c, st, sizeof **out, read_adapter, clear_adapters, (void **)out, n,
                              "listing adapters", err);
    }
    storage_conn_put(s, c);
    return res;
}

samda_status samda_store_adapter_list(samda_store *s, const char *site, samda_adapter_row **a, size_t *n,
                                      samda_error *err)
{
    STORAGE_ERR(err);
    *a = NULL;
    *n = 0;
    if (!samda_store_name_is_valid(site)) return samda_fail(err, SAMDA_ENOENT, "listing adapters: invalid site name");
    return adapter_select(s, site, 0, -1, a, n, err);
}

static samda_status adapter_one(samda_store *s, const char *site, int version, int active, samda_adapter_row *out,
                                samda_error *err)
{
    memset(out, 0, sizeof *out);
    if (!samda_store_name_is_valid(site)) return samda_fail(err, SAMDA_ENOENT, "reading adapter: invalid site name");
    samda_adapter_row *rows;
    size_t n;
    samda_status st = adapter_select(s, site, version, active, &rows, &n, err);
    if (st != SAMDA_OK) return st;
    if (n == 0) {
        st = active == 1 ? samda_fail(err, SAMDA_ENOENT, "site '%s' has no active adapter", site)
                         : samda_fail(err, SAMDA_ENOENT, "adapter %s/%d: not recorded", site, version);
    } else {
        *out = rows[0];
        for (size_t i = 1; i < n; i++) samda_adapter_clear(&rows[i]);
    }
    free(rows);
    return st;
}

samda_status samda_store_adapter_get(samda_store *s, const char *site, int version, samda_adapter_row *out,
                                     samda_error *err)
{
    STORAGE_ERR(err);
    if (version < 1) {
        memset(out, 0, sizeof *out);
        return samda_fail(err, SAMDA_ENOENT, "adapter %d: versions start at 1", version);
    }
    return adapter_one(s, site, version, -1, out, err);
}

samda_status samda_store_adapter_get_active(samda_store *s, const char *site, samda_adapter_row *out, samda_error *err)
{
    STORAGE_ERR(err);
    return adapter_one(s, site, 0, 1, out, err);
}

struct activate_args {
    const char *site;
    int version;     /* to activate; 0 = deactivate only; -1 = roll back */
    int *activated;
};

static samda_status adapter_activate_body(samda_store *s, storage_conn *c, void *arg, samda_error *err)
{
    struct activate_args *a = arg;
    int64_t site_id;
    samda_status res = storage_site_lookup(s, c, a->site, &site_id, err);
    if (res != SAMDA_OK) return res;
    int rc;
    sql_stmt *st;
    int target = a->version;
    if (target < 0) { /* roll back: parent of the active one, else the highest version below it */
        st = storage_stmt(c, "SELECT a.version, coalesce((SELECT p.version FROM adapters p WHERE p.site_id = ?1"
                             " AND p.version = a.parent_version), (SELECT max(b.version) FROM adapters b"
                             " WHERE b.site_id = ?1 AND b.version < a.version)) FROM adapters a"
                             " WHERE a.site_id = ?1 AND a.active = 1", err);
        if (!st) return err->code;
        sql_bind_int64(st, 1, site_id);
        rc = storage_step(s, st);
        int active = 0;
        target = 0;
        if (rc == SQL_ROW) {
            active = (int)sql_col_int64(st, 0);
            target = (int)sql_col_int64(st, 1);
        }
        sql_reset(st);
        if (rc != SQL_ROW && rc != SQL_DONE) return storage_db_fail(err, c, rc, "rolling back adapter");
        if (!active) return samda_fail(err, SAMDA_ENOENT, "rolling back adapter of '%s': none is active", a->site);
        if (!target)
            return samda_fail(err, SAMDA_ENOENT, "rolling back adapter of '%s': version %d has no parent or "
                              "predecessor", a->site, active);
    }
    if (target > 0) {
        st = storage_stmt(c, "SELECT 1 FROM adapters WHERE site_id = ?1 AND version = ?2", err);
        if (!st) return err->code;
        sql_bind_int64(st, 1, site_id);
        sql_bind_int64(st, 2, target);
        rc = storage_step(s, st);
        sql_reset(st);
        if (rc == SQL_DONE) return samda_fail(err, SAMDA_ENOENT, "activating adapter %s/%d: not recorded", a->site, target);
        if (rc != SQL_ROW) return storage_db_fail(err, c, rc, "activating adapter");
    }
    /* deactivate first: the partial unique index would refuse two active rows even inside the
     * transaction */
    st = storage_stmt(c, "UPDATE adapters SET active = 0 WHERE site_id = ?1 AND active = 1", err);
    if (!st) return err->code;
    sql_bind_int64(st, 1, site_id);
    if ((rc = storage_exec_stmt(s, st)) != SQL_OK) return storage_db_fail(err, c, rc, "deactivating adapter");
    if (target > 0) {
        st = storage_stmt(c, "UPDATE adapters SET active = 1, activated_ms = ?3 WHERE site_id = ?1 AND version = ?2", err);
        if (!st) return err->code;
        sql_bind_int64(st, 1, site_id);
        sql_bind_int64(st, 2, target);
        sql_bind_int64(st, 3, samda_store_now_ms(s));
        if ((rc = storage_exec_stmt(s, st)) != SQL_OK) return storage_db_fail(err, c, rc, "activating adapter");
    }
    if (a->activated) *a->activated = target;
    char res_name[SAMDA_KEY_SIZE];
    snprintf(res_name, sizeof res_name, "%s/%d", a->site, target);
    return storage_change_add(s, c, "adapter", res_name, SAMDA_CHANGE_STATE, err);
}

samda_status samda_store_adapter_activate(samda_store *s, const char *site, int version, samda_error *err)
{
    STORAGE_ERR(err);
    if (!samda_store_name_is_valid(site)) return samda_fail(err, SAMDA_ENOENT, "activating adapter: invalid site name");
    if (version < 1) return samda_fail(err, SAMDA_ENOENT, "activating adapter %s/%d: versions start at 1", site, version);
    struct activate_args a = {site, version, NULL};
    return storage_tx_run(s, adapter_activate_body, &a, err);
}

samda_status samda_store_adapter_rollback(samda_store *s, const char *site, int *version, samda_error *err)
{
    STORAGE_ERR(err);
    if (!samda_store_name_is_valid(site)) return samda_fail(err, SAMDA_ENOENT, "rolling back adapter: invalid site name");
    struct activate_args a = {site, -1, version};
    return storage_tx_run(s, adapter_activate_body, &a, err);
}

samda_status samda_store_adapter_deactivate(samda_store *s, const char *site, samda_error *err)
{
    STORAGE_ERR(err);
    if (!samda_store_name_is_valid(site)) return samda_fail(err, SAMDA_ENOENT, "deactivating adapter: invalid site name");
    struct activate_args a = {site, 0, NULL};
    return storage_tx_run(s, adapter_activate_body, &a, err);
}

struct delete_args {
    const char *site;
    int version;
    char relpath[SAMDA_RELPATH_SIZE];
};

static samda_status adapter_delete_body(samda_store *s, storage_conn *c, void *arg, samda_error *err)
{
    struct delete_args *a = arg;
    int64_t site_id;
    samda_status res = storage_site_lookup(s, c, a->site, &site_id, err);
    if (res != SAMDA_OK) return res;
    sql_stmt *st = storage_stmt(c, "SELECT active, file_relpath FROM adapters WHERE site_id = ?1 AND version = ?2",
                                    err);
    if (!st) return err->code;
    sql_bind_int64(st, 1, site_id);
    sql_bind_int64(st, 2, a->version);
    int rc = storage_step(s, st);
    int active = 0;
    if (rc == SQL_ROW) {
        active = (int)sql_col_int64(st, 0);
        storage_col_text(st, 1, a->relpath, sizeof a->relpath);
    }
    sql_reset(st);
    if (rc == SQL_DONE) return samda_fail(err, SAMDA_ENOENT, "deleting adapter %s/%d: not recorded", a->site, a->version);
    if (rc != SQL_ROW) return storage_db_fail(err, c, rc, "deleting adapter");
    if (active)
        return samda_fail(err, SAMDA_EBUSY, "deleting adapter %s/%d: it is active (activate another or roll back "
                          "first)", a->site, a->version);
    st = storage_stmt(c, "DELETE FROM adapters WHERE site_id = ?1 AND version = ?2", err);
    if (!st) return err->code;
    sql_bind_int64(st, 1, site_id);
    sql_bind_int64(st, 2, a->version);
    if ((rc = storage_exec_stmt(s, st)) != SQL_OK) return storage_db_fail(err, c, rc, "deleting adapter");
    res = storage_intent_add(s, c, a->relpath, err); /* the file goes after commit, or at the next open */
    if (res != SAMDA_OK) return res;
    char res_name[SAMDA_KEY_SIZE];
    snprintf(res_name, sizeof res_name, "%s/%d", a->site, a->version);
    return storage_change_add(s, c, "adapter", res_name, SAMDA_CHANGE_DELETED, err);
}

samda_status samda_store_adapter_delete(samda_store *s, const char *site, int version, samda_error *err)
{
    STORAGE_ERR(err);
    if (!samda_store_name_is_valid(site)) return samda_fail(err, SAMDA_ENOENT, "deleting adapter: invalid site name");
    struct delete_args a = {site, version, ""};
    samda_status st = storage_tx_run(s, adapter_delete_body, &a, err);
    if (st == SAMDA_OK && a.relpath[0]) storage_object_unlink(s, a.relpath);
    return st;
}
