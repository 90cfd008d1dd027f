/* The export queue seen by people (see export_admin.h): items with the name of their destination
 * and the result they send, and the manual retry the README promises for a refused export. The
 * sending itself is daemon/exporter.c's. */
#include "export_admin.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const state_names[] = {"pending", "sending", "done", "failed"};

static const char *dest_name(const samda_destination *d, size_t n, int64_t id)
{
    for (size_t i = 0; i < n; i++)
        if (d[i].id == id) return d[i].name;
    return NULL;
}

/* The sender's error names the object it could not read by its path: answers show "[file]" for
 * every path under the data directory instead (as problem titles do), never a local path. */
static void scrub_paths(const char *msg, const char *data_dir, char *out, size_t size)
{
    size_t dl = data_dir ? strlen(data_dir) : 0, o = 0;
    for (const char *p = msg; *p && o + 1 < size;) {
        bool at_token = p == msg || strchr(" \t(\"'=", p[-1]);
        if (dl && at_token && !strncmp(p, data_dir, dl) && p[dl] == '/') {
            int w = snprintf(out + o, size - o, "[file]");
            o += w > 0 && (size_t)w < size - o ? (size_t)w : size - o - 1;
            while (*p && !strchr(" \t:)\"',", *p)) p++;
        } else {
            out[o++] = *p++;
        }
    }
    out[o] = '\0';
}

static json_t *item_json(const samda_export_item *it, const char *destination, const char *data_dir)
{
    json_t *o = json_pack("{s:I, s:s?, s:s, s:i, s:b, s:I, s:I, s:I}", "id", (json_int_t)it->id, "destination",
                          destination, "state", state_names[it->state], "attempts", it->attempts, "permanent",
                          it->permanent, "next_attempt_ms", (json_int_t)it->next_attempt_ms, "created_ms",
                          (json_int_t)it->created_ms, "updated_ms", (json_int_t)it->updated_ms);
    if (!o) return NULL;
    json_object_set_new(o, "result", it->result_id ? json_integer(it->result_id) : json_null());
    json_object_set_new(o, "sop_uid", it->sop_uid[0] ? json_string(it->sop_uid) : json_null());
    char error[sizeof it->last_error + 64];
    scrub_paths(it->last_error, data_dir, error, sizeof error);
    json_object_set_new(o, "error", error[0] ? json_string(error) : json_null());
    return o;
}

samda_status samdad_exports_list(samda_store *s, const samdad_export_query *q, json_t **out, samda_error *err)
{
    *out = NULL;
    samda_export_filter f = {.state = -1, .result_id = q->result_id, .limit = q->limit ? q->limit : 100,
                             .offset = q->offset};
    if (q->state) {
        f.state = -2;
        for (int k = 0; k <= SAMDA_EXPORT_FAILED; k++)
            if (!strcmp(q->state, state_names[k])) f.state = k;
        if (f.state == -2)
            return samda_fail(err, SAMDA_EINVAL, "export state '%.64s': must be pending, sending, done or failed", q->state);
    }
    samda_destination *d = NULL;
    size_t nd = 0;
    samda_status st = samda_store_destination_list(s, &d, &nd, err);
    if (st != SAMDA_OK) return st;
    if (q->destination) {
        for (size_t i = 0; i < nd; i++)
            if (!strcmp(d[i].name, q->destination)) f.destination_id = d[i].id;
        if (!f.destination_id) {
            samda_destination_list_free(d, nd);
            return samda_fail(err, SAMDA_ENOENT, "unknown destination %.64s", q->destination);
        }
    }
    if (q->result_id) {
        samda_result r;
        st = samda_store_result_get(s, q->result_id, &r, err);
        if (st == SAMDA_ENOENT) st = samda_fail(err, SAMDA_ENOENT, "unknown result %lld", (long long)q->result_id);
        if (st != SAMDA_OK) {
            samda_destination_list_free(d, nd);
            return st;
        }
        samda_result_clear(&r);
    }
    samda_export_item *items = NULL;
    size_t n = 0;
    st = samda_store_export_find(s, &f, &items, &n, err);
    if (st == SAMDA_OK) {
        json_t *a = json_array();
        for (size_t i = 0; a && i < n; i++) {
            json_t *o = item_json(&items[i], dest_name(d, nd, items[i].destination_id), samda_store_data_dir(s));
            if (!o || json_array_append_new(a, o) != 0) {
                json_decref(a);
                a = NULL;
            }
        }
        if (!a) st = samda_fail(err, SAMDA_ENOMEM, "listing exports: out of memory");
        *out = a;
    }
    samda_store_free(items);
    samda_destination_list_free(d, nd);
    return st;
}

/* The item with its destination name and result, as listed. */
static samda_status item_get_json(samda_store *s, int64_t id, json_t **out, samda_error *err)
{
    samda_export_filter f = {.id = id, .state = -1};
    samda_export_item *it = NULL;
    size_t n = 0;
    samda_status st = samda_store_export_find(s, &f, &it, &n, err);
    if (st == SAMDA_OK && n == 0) st = samda_fail(err, SAMDA_ENOENT, "unknown export %lld", (long long)id);
    samda_destination *d = NULL;
    size_t nd = 0;
    if (st == SAMDA_OK) st = samda_store_destination_list(s, &d, &nd, err);
    if (st == SAMDA_OK) {
        *out = item_json(&it[0], dest_name(d, nd, it[0].destination_id), samda_store_data_dir(s));
        if (!*out) st = samda_fail(err, SAMDA_ENOMEM, "export %lld: out of memory", (long long)id);
        samda_destination_list_free(d, nd);
    }
    samda_store_free(it);
    return st;
}

samda_status samdad_export_retry(samda_store *s, int64_t id, const char *actor, json_t **out, samda_error *err)
{
    if (out) *out = NULL;
    samda_export_item before;
    samda_status st = samda_store_export_get(s, id, &before, err);
    if (st == SAMDA_ENOENT) return samda_fail(err, SAMDA_ENOENT, "unknown export %lld", (long long)id);
    if (st != SAMDA_OK) return st;
    st = samda_store_export_retry(s, id, err);
    if (st == SAMDA_EINVAL) { /* done, or claimed by a sender since it was read */
        samda_export_item now;
        if (samda_store_export_get(s, id, &now, err) == SAMDA_OK) before.state = now.state;
        return samda_fail(err, SAMDA_ECONFLICT, "export %lld is %s: only a failed or pending item can be retried",
                          (long long)id, state_names[before.state]);
    }
    if (st == SAMDA_ENOENT) return samda_fail(err, SAMDA_ENOENT, "unknown export %lld", (long long)id);
    if (st != SAMDA_OK) return st;
    samda_destination *d = NULL;
    size_t nd = 0;
    if (samda_store_destination_list(s, &d, &nd, err) != SAMDA_OK) nd = 0;
    const char *dn = dest_name(d, nd, before.destination_id);
    json_t *details = json_pack("{s:I, s:s?, s:s, s:i}", "item", (json_int_t)id, "destination", dn, "was",
                                state_names[before.state], "attempts", before.attempts);
    char *details_s = details ? json_dumps(details, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(details);
    samda_destination_list_free(d, nd);
    samda_error aerr;
    st = samda_store_audit_append(s, actor, "export.retry", before.relpath, "ok", details_s, &aerr);
    free(details_s);
    if (st != SAMDA_OK)
        return samda_fail(err, SAMDA_EIO, "export %lld was retried, but the audit log could not record it: %s",
                          (long long)id, aerr.message);
    if (out) return item_get_json(s, id, out, err);
    return SAMDA_OK;
}

size_t samdad_site_destinations(samda_store *s, const samda_config *cfg, const char *site, char (*out)[SAMDA_NAME_SIZE],
                                size_t max)
{
    size_t n = 0;
    const samda_site_cfg *sc = site && *site ? samda_config_site(cfg, site) : NULL;
    if (sc) {
        for (size_t i = 0; i < sc->destinations.n && n < max; i++) snprintf(out[n++], SAMDA_NAME_SIZE, "%s", sc->destinations.v[i]);
        return n;
    }
    samda_site row;
    samda_error err;
    if (!site || !*site || samda_store_site_get(s, site, &row, &err) != SAMDA_OK) return 0;
    json_t *set = row.settings_json ? json_loads(row.settings_json, 0, NULL) : NULL;
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(set, "destinations"), i, v) {
        if (json_is_string(v) && n < max) snprintf(out[n++], SAMDA_NAME_SIZE, "%s", json_string_value(v));
    }
    json_decref(set);
    samda_site_clear(&row);
    return n;
}
