/* storage/tokens.c: API bearer tokens. A token's secret is generated here, shown once to the caller
 * and never stored: the table keeps its SHA-256 only. Verification looks the hash up and compares
 * the stored hash with CRYPTO_memcmp, so that no timing depends on how much of a guess matched. */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "random.h"

static const char *const role_names[] = {"admin", "user", "ingest"};
#define TOKEN_PREFIX "samda_"

const char *samda_role_name(samda_role r)
{
    if ((int)r < 0 || (int)r > SAMDA_ROLE_INGEST) return "unknown";
    return role_names[r];
}

static samda_role role_from(const char *v)
{
    for (int i = 0; i <= SAMDA_ROLE_INGEST; i++)
        if (v && strcmp(v, role_names[i]) == 0) return (samda_role)i;
    return SAMDA_ROLE_INGEST; /* the least privileged, should the column ever hold something else */
}

samda_status samda_store_token_create(samda_store *s, const char *name, samda_role role,
                                      char secret[SAMDA_TOKEN_SECRET_SIZE], int64_t *id, samda_error *err)
{
    STORAGE_ERR(err);
    secret[0] = '\0';
    if (!samda_store_name_is_valid(name))
        return samda_fail(err, SAMDA_EINVAL, "creating token: name must be 1..64 of letters, digits, '.', '_' or '-'");
    if ((int)role < 0 || (int)role > SAMDA_ROLE_INGEST)
        return samda_fail(err, SAMDA_EINVAL, "creating token '%s': unknown role %d", name, (int)role);
    unsigned char raw[32];
    if (samda_random_bytes(raw, sizeof raw, err) != SAMDA_OK) {
        samda_error_prefix(err, "creating token '%s': ", name);
        return SAMDA_EIO;
    }
    static const char hexd[] = "0123456789abcdef";
    char candidate[SAMDA_TOKEN_SECRET_SIZE];
    size_t p = (size_t)snprintf(candidate, sizeof candidate, "%s", TOKEN_PREFIX);
    for (size_t i = 0; i < sizeof raw; i++) {
        candidate[p++] = hexd[raw[i] >> 4];
        candidate[p++] = hexd[raw[i] & 15];
    }
    candidate[p] = '\0';
    char hash[SAMDA_SHA256_HEX_SIZE];
    storage_sha256_hex(candidate, p, hash);

    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    samda_status st = storage_tx_begin(s, c, err);
    if (st == SAMDA_OK) {
        sql_stmt *q = storage_stmt(c, "INSERT INTO api_tokens(name, role, secret_sha256, created_ms)"
                                          " VALUES(?1, ?2, ?3, ?4) RETURNING id", err);
        if (!q) st = err->code;
        else {
            sql_bind_text(q, 1, name);
            sql_bind_text(q, 2, role_names[role]);
            sql_bind_text(q, 3, hash);
            sql_bind_int64(q, 4, samda_store_now_ms(s));
            int rc = storage_exec_insert(s, q, id);
            if ((rc & 0xff) == SQL_CONSTRAINT)
                st = samda_fail(err, SAMDA_EEXIST, "creating token '%s': name already taken", name);
            else if (rc != SQL_OK) st = storage_db_fail(err, c, rc, "creating token");
        }
        if (st == SAMDA_OK) st = storage_tx_commit(s, c, err);
        else storage_tx_rollback(s, c);
    }
    storage_conn_put(s, c);
    if (st == SAMDA_OK) memcpy(secret, candidate, p + 1);
    OPENSSL_cleanse(candidate, sizeof candidate);
    OPENSSL_cleanse(raw, sizeof raw);
    return st;
}

samda_status samda_store_token_verify(samda_store *s, const char *secret, samda_token_info *info, samda_error *err)
{
    STORAGE_ERR(err);
    if (!secret || !storage_len_ok(secret, SAMDA_TOKEN_SECRET_SIZE))
        return samda_fail(err, SAMDA_EAUTH, "bearer token not recognised");
    char hash[SAMDA_SHA256_HEX_SIZE];
    storage_sha256_hex(secret, strlen(secret), hash);
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    samda_status st = SAMDA_OK;
    sql_stmt *q = storage_stmt(c, "SELECT id, name, role, secret_sha256, created_ms, revoked_ms FROM api_tokens"
                                      " WHERE secret_sha256 = ?1", err);
    if (!q) st = err->code;
    else {
        sql_bind_text(q, 1, hash);
        int rc = storage_step(s, q);
        if (rc == SQL_ROW) {
            const char *stored = sql_col_text(q, 3);
            bool match = stored && sql_col_bytes(q, 3) == 64 && CRYPTO_memcmp(stored, hash, 64) == 0;
            bool revoked = !sql_col_null(q, 5);
            if (!match || revoked) {
                st = samda_fail(err, SAMDA_EAUTH, "bearer token not recognised");
            } else if (info) {
                memset(info, 0, sizeof *info);
                info->id = sql_col_int64(q, 0);
                storage_col_text(q, 1, info->name, sizeof info->name);
                info->role = role_from(sql_col_text(q, 2));
                info->created_ms = sql_col_int64(q, 4);
            }
        } else if (rc == SQL_DONE) {
            st = samda_fail(err, SAMDA_EAUTH, "bearer token not recognised");
        } else {
            st = storage_db_fail(err, c, rc, "verifying token");
        }
        sql_reset(q);
    }
    storage_conn_put(s, c);
    return st;
}

samda_status samda_store_token_revoke(samda_store *s, int64_t id, samda_error *err)
{
    STORAGE_ERR(err);
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    samda_status st = storage_tx_begin(s, c, err);
    if (st == SAMDA_OK) {
        sql_stmt *q = storage_stmt(c, "UPDATE api_tokens SET revoked_ms = coalesce(revoked_ms, ?2) WHERE id = ?1",
                                       err);
        if (!q) st = err->code;
        else {
            sql_bind_int64(q, 1, id);
            sql_bind_int64(q, 2, samda_store_now_ms(s));
            int rc = storage_exec_stmt(s, q);
            if (rc != SQL_OK) st = storage_db_fail(err, c, rc, "revoking token");
            else if (sql_changes(c->q) == 0)
                st = samda_fail(err, SAMDA_ENOENT, "revoking token %lld: no such token", (long long)id);
        }
        if (st == SAMDA_OK) st = storage_tx_commit(s, c, err);
        else storage_tx_rollback(s, c);
    }
    storage_conn_put(s, c);
    return st;
}

static void read_token(sql_stmt *q, void *row)
{
    samda_token_info *r = row;
    r->id = sql_col_int64(q, 0);
    storage_col_text(q, 1, r->name, sizeof r->name);
    r->role = role_from(sql_col_text(q, 2));
    r->created_ms = sql_col_int64(q, 3);
    r->revoked_ms = sql_col_int64(q, 4);
}

samda_status samda_store_token_list(samda_store *s, samda_token_info **t, size_t *n, samda_error *err)
{
    STORAGE_ERR(err);
    *t = NULL;
    *n = 0;
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    samda_status st = SAMDA_OK;
    sql_stmt *q = storage_stmt(c, "SELECT id, name, role, created_ms, revoked_ms FROM api_tokens ORDER BY id", err);
    if (!q) st = err->code;
    else {
        st = storage_collect(s, c, q, sizeof **t, read_token, NULL, (void **)t, n, "listing tokens", err);
    }
    storage_conn_put(s, c);
    return st;
}
