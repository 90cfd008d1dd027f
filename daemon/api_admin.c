/* Administration for samdad (role admin; every call audited): sites (through the site overlay),
 * destinations, the export queue (export_admin.c, shared with `samda exports`), and adapters: upload
 * (checked against the loaded base model), activation, rollback, deletion, and training and
 * evaluation jobs. */
#include "api_core.h"

#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "dicom.h"
#include "json_out.h"
#include "services_internal.h"
#include "export_admin.h"
#include "exporter.h"
#include "safetensors.h"
#ifdef SAMDA_HAVE_MODEL
#include "worker.h"
#endif

static json_t *json_from_text(const char *s)
{
    json_t *j = s ? json_loads(s, 0, NULL) : NULL;
    return j ? j : json_object();
}

static const char *site_source(const samda_config *base, const samda_site *s)
{
    if (base && samda_config_site(base, s->name)) return "configuration";
    return samdad_site_origin_is_api(s->settings_json) ? "api" : "index";
}

static json_t *site_json(samdad_api_core *core, const samda_site *s, const samda_config *base)
{
    json_t *set = json_from_text(s->settings_json);
    json_object_del(set, "origin");
    const char *src = site_source(base, s);
    json_t *o = json_pack("{s:s, s:s, s:o, s:o, s:I, s:I}", "name", s->name, "source", src, "ae",
                          json_from_text(s->ae_json), "settings", set, "created_ms", (json_int_t)s->created_ms,
                          "updated_ms", (json_int_t)s->updated_ms);
    json_object_set_new(o, "note",
                        json_string(strcmp(src, "configuration") == 0
                                        ? "defined by the configuration file: it wins over the API; change it there and reload"
                                    : strcmp(src, "api") == 0
                                        ? "managed through the API, in effect now; a [site] section of the same name in the configuration file would replace it"
                                        : "left in the index by an earlier configuration: not in effect until defined again (PUT or [site] section)"));
    samda_adapter_row a;
    samda_error e;
    if (samda_store_adapter_get_active(samdad_store(core->ctx), s->name, &a, &e) == SAMDA_OK) {
        json_object_set_new(o, "active_adapter", json_integer(a.version));
        samda_adapter_clear(&a);
    } else {
        json_object_set_new(o, "active_adapter", json_null());
    }
    return o;
}

static samda_status sites_list(void *v, json_t **out, samda_error *err)
{
    samdad_api_core *core = CORE(v);
    samda_site *sites = NULL;
    size_t n = 0;
    samda_status st = samda_store_site_list(samdad_store(core->ctx), &sites, &n, err);
    if (st != SAMDA_OK) return st;
    samda_config *base = samdad_overlay_base(core);
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(a, site_json(core, &sites[i], base));
    samda_config_unref(base);
    samda_site_list_free(sites, n);
    *out = a;
    return SAMDA_OK;
}

static samda_status site_get(void *v, const char *name, json_t **out, samda_error *err)
{
    samdad_api_core *core = CORE(v);
    samda_site s;
    samda_status st = samda_store_site_get(samdad_store(core->ctx), name, &s, err);
    if (st == SAMDA_ENOENT) return samda_fail(err, SAMDA_ENOENT, "unknown site %s", name);
    if (st != SAMDA_OK) return st;
    samda_config *base = samdad_overlay_base(core);
    *out = site_json(core, &s, base);
    samda_config_unref(base);
    samda_site_clear(&s);
    return SAMDA_OK;
}

/* A JSON array of at most max strings, each passing ok(); NULL member = absent (empty). */
static bool str_array(const json_t *a, size_t max, bool (*ok)(const char *))
{
    if (!a) return true;
    if (!json_is_array(a) || json_array_size(a) > max) return false;
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v) if (!json_is_string(v) || !ok(json_string_value(v))) return false;
    return true;
}

static bool modality_ok(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 16) return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_')) return false;
    return true;
}

static bool label_ok(const char *s) { return samda_store_name_is_valid(s) && strlen(s) <= 63; }

static bool int_member(const json_t *o, const char *key, int64_t min, int64_t max, int64_t def, int64_t *out)
{
    const json_t *v = json_object_get(o, key);
    if (!v) {
        *out = def;
        return true;
    }
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) return false;
    *out = json_integer_value(v);
    return true;
}

/* Validate a PUT body and build the stored JSON (ae, settings with origin "api"), defaults from
 * the configuration table's [site] defaults. */
static samda_status site_body(samdad_api_core *core, const char *name, const json_t *body, const samda_config *running,
                              char **ae_s, char **set_s, samda_error *err)
{
    static const char *const top[] = {"ae", "settings", "name", "source", "note", "created_ms", "updated_ms", "active_adapter", NULL};
    static const char *const ae_keys[] = {"called_ae", "calling_ae", NULL};
    static const char *const set_keys[] = {"modalities", "min_slices", "series_idle_ms", "study_idle_ms", "max_wait_ms",
                                           "tta", "labels", "destinations", NULL};
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)body, key, v) {
        bool known = false;
        for (const char *const *k = top; *k; k++) known |= strcmp(*k, key) == 0;
        if (!known) return samda_fail(err, SAMDA_EINVAL, "unknown body member %.64s (known: ae, settings)", key);
    }
    const json_t *nm = json_object_get(body, "name");
    if (nm && (!json_is_string(nm) || strcmp(json_string_value(nm), name) != 0))
        return samda_fail(err, SAMDA_EINVAL, "body member name must match the site in the path (%s)", name);
    const json_t *ae = json_object_get(body, "ae"), *set = json_object_get(body, "settings");
    if (ae && !json_is_object(ae)) return samda_fail(err, SAMDA_EINVAL, "body member ae must be an object");
    if (set && !json_is_object(set)) return samda_fail(err, SAMDA_EINVAL, "body member settings must be an object");
    json_object_foreach((json_t *)ae, key, v) {
        bool known = false;
        for (const char *const *k = ae_keys; *k; k++) known |= strcmp(*k, key) == 0;
        if (!known) return samda_fail(err, SAMDA_EINVAL, "unknown member ae.%.64s (known: called_ae, calling_ae)", key);
    }
    json_object_foreach((json_t *)set, key, v) {
        bool known = false;
        for (const char *const *k = set_keys; *k; k++) known |= strcmp(*k, key) == 0;
        if (!known)
            return samda_fail(err, SAMDA_EINVAL, "unknown member settings.%.64s (known: modalities, min_slices, series_idle_ms, "
                                                 "study_idle_ms, max_wait_ms, tta, labels, destinations)", key);
    }
    const json_t *called = json_object_get(ae, "called_ae"), *calling = json_object_get(ae, "calling_ae");
    if (!str_array(called, 16, samda_ae_title_is_valid))
        return samda_fail(err, SAMDA_EINVAL, "ae.called_ae must be an array of at most 16 AE titles (1 to 16 characters, no backslash)");
    if (!str_array(calling, 16, samda_ae_title_is_valid))
        return samda_fail(err, SAMDA_EINVAL, "ae.calling_ae must be an array of at most 16 AE titles (1 to 16 characters, no backslash)");
    /* An AE title that already selects another site would make the mapping ambiguous. */
    for (size_t i = 0; i < running->n_sites; i++) {
        const samda_site_cfg *o = &running->sites[i];
        if (strcmp(o->name, name) == 0) continue;
        size_t k;
        json_t *t;
        json_array_foreach(called, k, t) for (size_t j = 0; j < o->called_ae.n; j++) if (strcmp(o->called_ae.v[j], json_string_value(t)) == 0)
            return samda_fail(err, SAMDA_ECANCELED, "called AE title %s already selects site %s", json_string_value(t), o->name);
        json_array_foreach(calling, k, t) for (size_t j = 0; j < o->calling_ae.n; j++) if (strcmp(o->calling_ae.v[j], json_string_value(t)) == 0)
            return samda_fail(err, SAMDA_ECANCELED, "calling AE title %s already selects site %s", json_string_value(t), o->name);
    }
    const samda_site_cfg *def = samda_config_site(core->defaults, "default");
    const json_t *mods = json_object_get(set, "modalities");
    if (mods && (!str_array(mods, 16, modality_ok) || json_array_size(mods) == 0))
        return samda_fail(err, SAMDA_EINVAL, "settings.modalities must be an array of 1 to 16 modality codes (A-Z, 0-9, _)");
    size_t mi;
    const json_t *mv;
    json_array_foreach(mods, mi, mv) if (!samda_modality_is_segmentable(json_string_value(mv)))
        return samda_fail(err, SAMDA_EINVAL, "settings.modalities: %s is not a modality samda segments (CT, MR)",
                          json_string_value(mv));
    int64_t min_slices, series_idle, study_idle, max_wait;
    if (!int_member(set, "min_slices", 1, 100000, def->min_slices, &min_slices))
        return samda_fail(err, SAMDA_EINVAL, "settings.min_slices must be an integer from 1 to 100000");
    if (!int_member(set, "series_idle_ms", 100, 86400000, def->series_idle_ms, &series_idle))
        return samda_fail(err, SAMDA_EINVAL, "settings.series_idle_ms must be an integer from 100 to 86400000");
    if (!int_member(set, "study_idle_ms", 100, 86400000, def->study_idle_ms, &study_idle))
        return samda_fail(err, SAMDA_EINVAL, "settings.study_idle_ms must be an integer from 100 to 86400000");
    if (!int_member(set, "max_wait_ms", 1000, 604800000, def->max_wait_ms, &max_wait))
        return samda_fail(err, SAMDA_EINVAL, "settings.max_wait_ms must be an integer from 1000 to 604800000");
    if (series_idle > max_wait) return samda_fail(err, SAMDA_EINVAL, "settings.series_idle_ms must not exceed settings.max_wait_ms");
    const json_t *tta = json_object_get(set, "tta");
    const char *tta_s = def->tta == SAMDA_CFG_TTA_EPISODIC ? "episodic" : def->tta == SAMDA_CFG_TTA_CONTINUAL ? "continual" : "off";
    if (tta) {
        tta_s = json_string_value(tta);
        if (!tta_s || (strcmp(tta_s, "off") && strcmp(tta_s, "episodic") && strcmp(tta_s, "continual")))
            return samda_fail(err, SAMDA_EINVAL, "settings.tta must be one of \"off\", \"episodic\", \"continual\"");
    }
    const json_t *labels = json_object_get(set, "labels");
    if (!str_array(labels, 64, label_ok))
        return samda_fail(err, SAMDA_EINVAL, "settings.labels must be an array of at most 64 names ([A-Za-z0-9._-], 1 to 63)");
    const json_t *dests = json_object_get(set, "destinations");
    if (!str_array(dests, 16, label_ok))
        return samda_fail(err, SAMDA_EINVAL, "settings.destinations must be an array of at most 16 destination names");
    size_t i;
    json_array_foreach(dests, i, v) {
        samda_destination d;
        samda_error e;
        const char *dn = json_string_value(v);
        if (samda_config_dest(running, dn)) continue;
        if (samda_store_destination_get(samdad_store(core->ctx), dn, &d, &e) != SAMDA_OK)
            return samda_fail(err, SAMDA_EINVAL, "settings.destinations: unknown destination %s", dn);
        samda_destination_clear(&d);
    }
    json_t *mods_out = json_array();
    if (mods) json_array_extend(mods_out, (json_t *)mods);
    else for (size_t k = 0; k < def->modalities.n; k++) json_array_append_new(mods_out, json_string(def->modalities.v[k]));
    json_t *aej = json_pack("{s:o, s:o}", "called_ae", called ? json_deep_copy(called) : json_array(), "calling_ae",
                            calling ? json_deep_copy(calling) : json_array());
    json_t *setj = json_pack("{s:s, s:o, s:I, s:I, s:I, s:I, s:s, s:o, s:o}", "origin", SITE_ORIGIN_API, "modalities", mods_out,
                             "min_slices", (json_int_t)min_slices, "series_idle_ms", (json_int_t)series_idle,
                             "study_idle_ms", (json_int_t)study_idle, "max_wait_ms", (json_int_t)max_wait, "tta", tta_s,
                             "labels", labels ? json_deep_copy(labels) : json_array(), "destinations",
                             dests ? json_deep_copy(dests) : json_array());
    *ae_s = aej ? json_dumps(aej, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    *set_s = setj ? json_dumps(setj, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(aej);
    json_decref(setj);
    if (!*ae_s || !*set_s) {
        free(*ae_s);
        free(*set_s);
        return samda_fail(err, SAMDA_ENOMEM, "site %s: out of memory", name);
    }
    return SAMDA_OK;
}

static samda_status site_put(void *v, const char *name, const json_t *body, int64_t token_id, json_t **out, bool *created,
                             samda_error *err)
{
    samdad_api_core *core = CORE(v);
    samdad_ctx *ctx = core->ctx;
    samda_store *store = samdad_store(ctx);
    if (!samda_store_name_is_valid(name)) return samda_fail(err, SAMDA_EINVAL, "site name %s: must not start with '.'", name);
    pthread_mutex_lock(&core->overlay_mu); /* one site change at a time, against one base */
    samda_config *running = samdad_config_get(ctx);
    if (running != core->installed) { /* reloaded since the last overlay: running is the file's configuration */
        samda_config_unref(core->base);
        core->base = samda_config_ref(running);
    }
    samda_status st;
    char *ae_s = NULL, *set_s = NULL;
    if (samda_config_site(core->base, name)) {
        st = samda_fail(err, SAMDA_ECANCELED, "site %s is defined by the configuration file ([site %s]), which takes precedence: "
                                              "change it there and reload", name, name);
        goto out;
    }
    if ((st = site_body(core, name, body, running, &ae_s, &set_s, err)) != SAMDA_OK) goto out;
    site_candidate cand = {name, ae_s, set_s};
    if ((st = samdad_overlay_apply_locked(core, &cand, true, err)) != SAMDA_OK) goto out; /* refused before anything is written */
    *created = false;
    st = samda_store_site_update(store, name, ae_s, set_s, err);
    if (st == SAMDA_ENOENT) {
        st = samda_store_site_add(store, name, ae_s, set_s, NULL, err);
        *created = st == SAMDA_OK;
    }
    if (st != SAMDA_OK) goto out;
    if ((st = samdad_overlay_apply_locked(core, NULL, false, err)) != SAMDA_OK) goto out;
    samda_log(&ctx->log, SAMDA_LOG_INFO, "api", *created ? "site created" : "site updated", "site=%s token=%lld", name,
              (long long)token_id);
out:
    samda_config_unref(running);
    pthread_mutex_unlock(&core->overlay_mu);
    free(ae_s);
    free(set_s);
    if (st != SAMDA_OK) return st;
    return site_get(v, name, out, err);
}

/* ---------- administration: destinations ---------- */

static json_t *dest_json_store(const samda_destination *d)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:i, s:b, s:I}", "name", d->name, "source", "api", "ae_title", d->ae_title,
                          "host", d->host, "port", d->port, "tls", 0 /* API destinations: plain TCP */, "created_ms",
                          (json_int_t)d->created_ms);
    json_object_set_new(o, "settings", json_from_text(d->settings_json));
    return o;
}

static json_t *dest_json_cfg(const samda_dest_cfg *d)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:I, s:b, s:o}", "name", d->name, "source", "configuration", "ae_title",
                     d->ae_title, "host", d->host, "port", (json_int_t)d->port, "tls", d->tls, "settings", json_object());
}

static samda_status destinations_list(void *v, json_t **out, samda_error *err)
{
    samdad_api_core *core = CORE(v);
    samda_destination *d = NULL;
    size_t n = 0;
    samda_status st = samda_store_destination_list(samdad_store(core->ctx), &d, &n, err);
    if (st != SAMDA_OK) return st;
    samda_config *cfg = samdad_config_get(core->ctx);
    json_t *a = json_array();
    for (size_t i = 0; i < cfg->n_dests; i++) json_array_append_new(a, dest_json_cfg(&cfg->dests[i]));
    for (size_t i = 0; i < n; i++)
        if (!samda_config_dest(cfg, d[i].name)) json_array_append_new(a, dest_json_store(&d[i]));
    samda_config_unref(cfg);
    samda_destination_list_free(d, n);
    *out = a;
    return SAMDA_OK;
}

static samda_status destination_get(void *v, const char *name, json_t **out, samda_error *err)
{
    samdad_api_core *core = CORE(v);
    samda_config *cfg = samdad_config_get(core->ctx);
    const samda_dest_cfg *c = samda_config_dest(cfg, name);
    if (c) {
        *out = dest_json_cfg(c);
        samda_config_unref(cfg);
        return SAMDA_OK;
    }
    samda_config_unref(cfg);
    samda_destination d;
    samda_status st = samda_store_destination_get(samdad_store(core->ctx), name, &d, err);
    if (st == SAMDA_ENOENT) return samda_fail(err, SAMDA_ENOENT, "unknown destination %s", name);
    if (st != SAMDA_OK) return st;
    *out = dest_json_store(&d);
    samda_destination_clear(&d);
    return SAMDA_OK;
}

static bool host_ok(const char *h)
{
    size_t n = strlen(h);
    return n >= 1 && n <= 253 && strspn(h, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") == n && h[0] != '-' &&
           h[0] != '.';
}

static samda_status destination_add(void *v, const json_t *body, int64_t token_id, json_t **out, samda_error *err)
{
    samdad_api_core *core = CORE(v);
    const char *key;
    json_t *m;
    json_object_foreach((json_t *)body, key, m) {
        if (strcmp(key, "name") && strcmp(key, "ae_title") && strcmp(key, "host") && strcmp(key, "port") && strcmp(key, "settings"))
            return samda_fail(err, SAMDA_EINVAL, "unknown body member %.64s (known: name, ae_title, host, port, settings)", key);
    }
    const char *name = json_string_value(json_object_get(body, "name"));
    const char *ae = json_string_value(json_object_get(body, "ae_title"));
    const char *host = json_string_value(json_object_get(body, "host"));
    const json_t *port = json_object_get(body, "port"), *settings = json_object_get(body, "settings");
    if (!name || !samda_store_name_is_valid(name) || strlen(name) > 63)
        return samda_fail(err, SAMDA_EINVAL, "body member name must be a name ([A-Za-z0-9._-], 1 to 63, not starting with '.')");
    if (!ae || !samda_ae_title_is_valid(ae))
        return samda_fail(err, SAMDA_EINVAL, "body member ae_title must be an AE title (1 to 16 characters, no backslash)");
    if (!host || !host_ok(host))
        return samda_fail(err, SAMDA_EINVAL, "body member host must be a host name or IPv4 address (letters, digits, '.', '-')");
    if (!json_is_integer(port) || json_integer_value(port) < 1 || json_integer_value(port) > 65535)
        return samda_fail(err, SAMDA_EINVAL, "body member port must be an integer from 1 to 65535");
    if (settings && !json_is_object(settings)) return samda_fail(err, SAMDA_EINVAL, "body member settings must be an object");
    if (json_object_get(settings, "tls"))
        return samda_fail(err, SAMDA_EINVAL, "body member settings.tls: DICOM TLS destinations are defined in the "
                          "configuration file ([destination NAME] tls = true); destinations added here use plain TCP");
    samda_config *cfg = samdad_config_get(core->ctx);
    bool in_cfg = samda_config_dest(cfg, name) != NULL;
    samda_config_unref(cfg);
    if (in_cfg)
        return samda_fail(err, SAMDA_EEXIST, "destination %s is defined by the configuration file ([destination %s])", name, name);
    char *set_s = settings ? json_dumps(settings, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    samda_status st = samda_store_destination_add(samdad_store(core->ctx), name, ae, host, (int)json_integer_value(port), set_s,
                                                  NULL, err);
    free(set_s);
    if (st == SAMDA_EEXIST) return samda_fail(err, SAMDA_EEXIST, "destination %s already exists", name);
    if (st != SAMDA_OK) return st;
    samda_log(&core->ctx->log, SAMDA_LOG_INFO, "api", "destination added", "destination=%s token=%lld", name, (long long)token_id);
    return destination_get(v, name, out, err);
}

static samda_status destination_delete(void *v, const char *name, int64_t token_id, samda_error *err)
{
    samdad_api_core *core = CORE(v);
    samda_config *cfg = samdad_config_get(core->ctx);
    bool in_cfg = samda_config_dest(cfg, name) != NULL;
    samda_config_unref(cfg);
    if (in_cfg)
        return samda_fail(err, SAMDA_ECANCELED, "destination %s is defined by the configuration file: remove it there and reload", name);
    samda_status st = samda_store_destination_delete(samdad_store(core->ctx), name, err);
    if (st == SAMDA_ENOENT) return samda_fail(err, SAMDA_ENOENT, "unknown destination %s", name);
    if (st != SAMDA_OK) return st;
    samda_log(&core->ctx->log, SAMDA_LOG_INFO, "api", "destination deleted", "destination=%s token=%lld", name, (long long)token_id);
    return SAMDA_OK;
}

#define ECHO_TIMEOUT_S 10

static samda_status destination_echo(void *v, const char *name, int64_t token_id, json_t **out, samda_error *err)
{
    samdad_api_core *core = CORE(v);
    json_t *d = NULL;
    samda_status st = destination_get(v, name, &d, err);
    if (st != SAMDA_OK) return st;
    samda_config *cfg = samdad_config_get(core->ctx);
    const samda_dest_cfg *dc = samda_config_dest(cfg, name);
    if (dc && dc->url) {
        samda_config_unref(cfg);
        json_decref(d);
        return samda_fail(err, SAMDA_ECANCELED, "destination %s sends with STOW-RS (url): C-ECHO does not apply; "
                          "its exports show whether it answers (GET /api/v1/exports?destination=%s)", name, name);
    }
    samda_dicom_tls tls; /* a [destination] section's TLS, as for its exports; API destinations: plain TCP */
    samda_dicom_peer peer = {cfg->dicom_ae_title, json_string_value(json_object_get(d, "ae_title")),
                             json_string_value(json_object_get(d, "host")), (unsigned)json_integer_value(json_object_get(d, "port")),
                             samdad_dest_tls(samda_config_dest(cfg, name), &tls)};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    samda_error e = {SAMDA_OK, ""};
    samda_status es = samda_dicom_echo(&peer, ECHO_TIMEOUT_S, &e);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    json_t *o = json_pack("{s:s, s:b, s:f, s:s, s:s, s:s, s:s, s:i, s:b}", "destination", name, "ok", es == SAMDA_OK, "ms", ms,
                          "status", samda_status_name(es), "calling_ae", peer.calling_ae, "called_ae", peer.called_ae, "host",
                          peer.host, "port", (int)peer.port, "tls", peer.tls != NULL);
    if (es != SAMDA_OK) json_object_set_new(o, "error", json_string(e.message[0] ? e.message : samda_status_str(es)));
    samda_log(&core->ctx->log, es == SAMDA_OK ? SAMDA_LOG_INFO : SAMDA_LOG_WARN, "api", "C-ECHO", "destination=%s status=%s ms=%.1f token=%lld",
              name, samda_status_name(es), ms, (long long)token_id);
    samda_config_unref(cfg);
    json_decref(d);
    *out = o;
    return SAMDA_OK;
}

/* ---------- administration: the export queue (daemon/export_admin.c, shared with samda exports) ---------- */

static samda_status exports_list(void *v, const samda_api_export_filter *f, json_t **out, samda_error *err)
{
    samdad_export_query q = {f->state, f->destination, f->result_id, f->limit, f->offset};
    return samdad_exports_list(samdad_store(CORE(v)->ctx), &q, out, err);
}

/* GET /api/v1/audit: the log is read oldest first in pages (storage has no other order), keeping the
 * newest `limit` entries that match in a ring, then answered newest first. */
static json_t *audit_entry_json(const samda_audit_entry *e)
{
    json_t *j = json_pack("{s:I, s:I, s:s, s:s, s:s, s:s}", "id", (json_int_t)e->id, "time_ms", (json_int_t)e->time_ms,
                          "actor", e->actor, "action", e->action, "resource", e->resource, "outcome", e->outcome);
    if (j && e->details_json) {
        json_t *d = json_loads(e->details_json, 0, NULL);
        if (d) json_object_set_new(j, "details", d);
    }
    return j;
}

static bool audit_matches(const samda_audit_entry *e, const samda_api_audit_filter *f)
{
    return (!f->actor || strcmp(e->actor, f->actor) == 0) && (!f->action || strstr(e->action, f->action)) &&
           (!f->since_ms || e->time_ms >= f->since_ms) && (!f->until_ms || e->time_ms <= f->until_ms);
}

static samda_status audit_list(void *v, const samda_api_audit_filter *f, json_t **out, samda_error *err)
{
    samda_store *store = samdad_store(CORE(v)->ctx);
    unsigned limit = f->limit ? f->limit : 100;
    json_t **ring = calloc(limit, sizeof *ring);
    if (!ring) return samda_fail(err, SAMDA_ENOMEM, "audit log: out of memory");
    size_t kept = 0; /* matches seen; the newest min(kept, limit) are in ring[(kept - k) % limit] */
    int64_t after = 0;
    samda_status st = SAMDA_OK;
    for (bool more = true; more;) {
        samda_audit_entry *e = NULL;
        size_t n = 0;
        if ((st = samda_store_audit_list(store, after, 1000, &e, &n, err)) != SAMDA_OK) break;
        more = n == 1000;
        for (size_t i = 0; i < n; i++) {
            if (f->before_id && e[i].id >= f->before_id) {
                more = false;
                break;
            }
            if (!audit_matches(&e[i], f)) continue;
            json_t **slot = &ring[kept % limit];
            json_decref(*slot);
            *slot = audit_entry_json(&e[i]);
            kept++;
        }
        if (n) after = e[n - 1].id;
        samda_audit_list_free(e, n);
    }
    json_t *a = st == SAMDA_OK ? json_array() : NULL;
    size_t have = kept < limit ? kept : limit;
    for (size_t k = 1; a && k <= have; k++) json_array_append(a, ring[(kept - k) % limit]);
    for (size_t k = 0; k < limit; k++) json_decref(ring[k]);
    free(ring);
    if (st != SAMDA_OK) return st;
    *out = a;
    return SAMDA_OK;
}

static samda_status export_retry(void *v, int64_t id, int64_t token_id, json_t **out, samda_error *err)
{
    samdad_ctx *ctx = CORE(v)->ctx;
    char actor[48];
    if (token_id >= 0) snprintf(actor, sizeof actor, "token:%lld", (long long)token_id);
    else snprintf(actor, sizeof actor, "anonymous");
    samda_status st = samdad_export_retry(samdad_store(ctx), id, actor, out, err);
    if (st == SAMDA_OK)
        samda_log(&ctx->log, SAMDA_LOG_INFO, "api", "export retried by hand", "item=%lld token=%lld", (long long)id,
                  (long long)token_id);
    return st;
}

/* ---------- administration: adapters ---------- */

/* An adapter's labels into names (and, for label objects, codes). samda's own adapters list label
 * objects ({"name": "liver", "value": 1, "category": {...}, "type": {"scheme": "SCT", "code": ...},
 * "rgb", "window"}); other tools may give a JSON array of names or a comma list. labels: the
 * metadata's text, or the JSON array a version recorded. codes gets {name, value, category, type}
 * of each label object. */
void samdad_labels_collect(const json_t *labels, json_t *names, json_t *codes)
{
    const char *s = json_string_value(labels);
    json_t *j = s && s[0] == '[' ? json_loads(s, 0, NULL) : json_is_array(labels) ? json_incref((json_t *)labels) : NULL;
    if (json_is_array(j)) {
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v) {
            const char *name = json_is_string(v) ? json_string_value(v) : json_string_value(json_object_get(v, "name"));
            if (!name || !label_ok(name)) continue;
            json_array_append_new(names, json_string(name));
            if (!json_is_object(v)) continue;
            json_t *c = json_pack("{s:s}", "name", name);
            static const char *const keep[] = {"value", "category", "type"};
            for (size_t k = 0; c && k < sizeof keep / sizeof *keep; k++)
                if (json_object_get(v, keep[k])) json_object_set(c, keep[k], json_object_get(v, keep[k]));
            json_array_append_new(codes, c);
        }
    } else if (s) {
        char buf[4096];
        snprintf(buf, sizeof buf, "%s", s);
        char *save = NULL;
        for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            while (*t == ' ') t++;
            size_t n = strlen(t);
            while (n && t[n - 1] == ' ') t[--n] = '\0';
            if (label_ok(t)) json_array_append_new(names, json_string(t));
        }
    }
    json_decref(j);
}

json_t *samdad_adapter_json(const samda_adapter_row *a)
{
    json_t *meta = json_from_text(a->metadata_json);
    json_t *metrics = json_object_get(meta, "metrics");
    json_t *st = json_object_get(meta, "safetensors");
    /* The file's own metadata when it was uploaded (versions recorded before label objects were
     * understood list theirs too), else what the worker recorded for a version it made. */
    json_t *labels = json_array(), *codes = json_array();
    const json_t *raw = json_object_get(st, "labels");
    samdad_labels_collect(raw ? raw : json_object_get(meta, "labels"), labels, codes);
    json_t *o = json_pack("{s:s, s:i, s:o, s:b, s:s, s:I, s:s, s:o, s:o, s:o, s:I}", "site", a->site, "version", a->version,
                          "parent_version", a->parent_version ? json_integer(a->parent_version) : json_null(), "active",
                          a->active, "sha256", a->object.sha256, "size", (json_int_t)a->object.size, "base_fingerprint",
                          a->base_fingerprint, "labels", labels, "metrics",
                          json_is_object(metrics) ? json_incref(metrics) : json_null(), "metadata",
                          json_is_object(st) ? json_incref(st) : json_object(), "created_ms", (json_int_t)a->created_ms);
    json_object_set_new(o, "activated_ms", a->activated_ms ? json_integer(a->activated_ms) : json_null());
    if (json_array_size(codes)) json_object_set_new(o, "label_codes", codes);
    else json_decref(codes);
    /* Who made the version: the token that uploaded it, or the job (training, continual TTA) that wrote it. */
    json_t *prov = json_object();
    static const char *const made_by[] = {"uploaded_by", "origin", "job"};
    for (size_t i = 0; i < sizeof made_by / sizeof made_by[0]; i++) {
        json_t *x = json_object_get(meta, made_by[i]);
        if (x && !json_is_null(x)) json_object_set(prov, made_by[i], x);
    }
    json_object_set_new(o, "provenance", prov);
    json_decref(meta);
    return o;
}

samda_status samdad_require_site(samda_store *store, const char *site, samda_error *err)
{
    samda_site s;
    samda_status st = samda_store_site_get(store, site, &s, err);
    if (st == SAMDA_ENOENT) return samda_fail(err, SAMDA_ENOENT, "unknown site %s", site);
    if (st == SAMDA_OK) samda_site_clear(&s);
    return st;
}

static samda_status adapters_list(void *v, const char *site, json_t **out, samda_error *err)
{
    samda_store *store = samdad_store(CORE(v)->ctx);
    samda_status st = samdad_require_site(store, site, err);
    if (st != SAMDA_OK) return st;
    samda_adapter_row *a = NULL;
    size_t n = 0;
    if ((st = samda_store_adapter_list(store, site, &a, &n, err)) != SAMDA_OK) return st;
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(arr, samdad_adapter_json(&a[i]));
    samda_adapter_list_free(a, n);
    *out = arr;
    return SAMDA_OK;
}

static samda_status adapter_get_json(samda_store *store, const char *site, int version, json_t **out, samda_error *err)
{
    samda_adapter_row a;
    samda_status st = samda_store_adapter_get(store, site, version, &a, err);
    if (st == SAMDA_ENOENT) return samda_fail(err, SAMDA_ENOENT, "unknown adapter version %d of site %s", version, site);
    if (st != SAMDA_OK) return st;
    *out = samdad_adapter_json(&a);
    samda_adapter_clear(&a);
    return SAMDA_OK;
}

/* The loaded model's fingerprint, which an adapter's base_fingerprint must equal; NULL while no model
 * is loaded (nothing to compare with: the worker checks the sites' active adapters when it loads). */
static const char *loaded_fingerprint(samdad_ctx *ctx)
{
#ifdef SAMDA_HAVE_MODEL
    return samdad_worker_fingerprint(samdad_worker_of(ctx));
#else
    (void)ctx;
    return NULL;
#endif
}

/* The label names an upload records (samdad_adapter_json reads the file's metadata again). */
static json_t *upload_labels(const json_t *labels)
{
    json_t *names = json_array(), *codes = json_array();
    samdad_labels_collect(labels, names, codes);
    json_decref(codes);
    return names;
}

static samda_status adapter_upload(void *v, const samda_api_upload *up, json_t **out, samda_error *err)
{
    samdad_api_core *core = CORE(v);
    samda_store *store = samdad_store(core->ctx);
    samda_status st = samdad_require_site(store, up->site, err);
    if (st != SAMDA_OK) return st;
    if (up->parent_version) {
        samda_adapter_row p;
        if ((st = samda_store_adapter_get(store, up->site, up->parent_version, &p, err)) == SAMDA_ENOENT)
            return samda_fail(err, SAMDA_EINVAL, "parent version %d of site %s does not exist", up->parent_version, up->site);
        if (st != SAMDA_OK) return st;
        samda_adapter_clear(&p);
    }
    samda_tmp_file tmp;
    tmp.fd = open(up->path, O_RDWR | O_CLOEXEC);
    if (tmp.fd < 0) return samda_fail(err, SAMDA_EIO, "opening the uploaded adapter: %s", strerror(errno));
    snprintf(tmp.path, sizeof tmp.path, "%s", up->path);
    samda_safetensors_info info;
    if ((st = samda_safetensors_check_fd(tmp.fd, NULL, &info, err)) != SAMDA_OK) {
        close(tmp.fd);
        return st;
    }
    const char *fp = json_string_value(json_object_get(info.metadata, "base_fingerprint"));
    if (!fp) fp = json_string_value(json_object_get(info.metadata, "base_model_fingerprint"));
    if (fp && strlen(fp) >= SAMDA_KEY_SIZE) {
        close(tmp.fd);
        samda_safetensors_info_clear(&info);
        return samda_fail(err, SAMDA_EINVAL, "safetensors metadata base_fingerprint is longer than %d characters", SAMDA_KEY_SIZE - 1);
    }
    const char *model_fp = loaded_fingerprint(core->ctx);
    if (model_fp && strcmp(fp ? fp : "", model_fp) != 0) {
        samda_fail(err, SAMDA_ECONFLICT, "the adapter was made for base model %s, but the loaded model is %s: upload an adapter "
                   "trained on this model", fp ? fp : "(none: its metadata has no base_fingerprint)", model_fp);
        close(tmp.fd);
        samda_safetensors_info_clear(&info);
        return SAMDA_ECONFLICT;
    }
    json_t *metrics = NULL;
    const char *ms = json_string_value(json_object_get(info.metadata, "metrics"));
    if (ms) metrics = json_loads(ms, 0, NULL);
    json_t *meta = json_pack("{s:o, s:o, s:o, s:I, s:I, s:I}", "safetensors", info.metadata ? json_incref(info.metadata) : json_object(),
                             "labels", upload_labels(json_object_get(info.metadata, "labels")), "metrics",
                             json_is_object(metrics) ? json_incref(metrics) : json_null(), "tensors", (json_int_t)info.n_tensors,
                             "header_bytes", (json_int_t)info.header_bytes, "uploaded_by", (json_int_t)up->token_id);
    json_decref(metrics);
    char *meta_s = meta ? json_dumps(meta, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(meta);
    char fpbuf[SAMDA_KEY_SIZE];
    snprintf(fpbuf, sizeof fpbuf, "%s", fp ? fp : "");
    samda_safetensors_info_clear(&info);
    if (!meta_s || strlen(meta_s) > SAMDA_JSON_MAX) {
        close(tmp.fd);
        free(meta_s);
        return samda_fail(err, SAMDA_ETOOBIG, "adapter metadata too large");
    }
    int64_t site_id;
    int version = 0;
    if ((st = samda_store_site_id(store, up->site, &site_id, err)) != SAMDA_OK ||
        (st = samda_store_adapter_next_version(store, up->site, &version, err)) != SAMDA_OK) {
        close(tmp.fd);
        free(meta_s);
        return st;
    }
    char a[24], b[24];
    snprintf(a, sizeof a, "%lld", (long long)site_id);
    snprintf(b, sizeof b, "%d", version);
    samda_object_info obj;
    st = samda_store_object_commit(store, &tmp, SAMDA_OBJECT_ADAPTER, a, b, NULL, &obj, err); /* consumes tmp */
    if (st == SAMDA_EEXIST) st = samda_fail(err, SAMDA_EBUSY, "adapter version %d of site %s was taken meanwhile: upload again", version, up->site);
    if (st == SAMDA_OK) {
        st = samda_store_adapter_add(store, up->site, version, up->parent_version, &obj, fpbuf, meta_s, err);
        /* on failure the committed file is unclaimed and goes at the next open */
        if (st == SAMDA_EEXIST) st = samda_fail(err, SAMDA_EBUSY, "adapter version %d of site %s was taken meanwhile: upload again", version, up->site);
    }
    free(meta_s);
    if (st != SAMDA_OK) return st;
    samda_log(&core->ctx->log, SAMDA_LOG_INFO, "api", "adapter uploaded", "site=%s version=%d parent=%d bytes=%llu token=%lld", up->site,
              version, up->parent_version, (unsigned long long)obj.size, (long long)up->token_id);
    return adapter_get_json(store, up->site, version, out, err);
}

static samda_status adapter_activate(void *v, const char *site, int version, int64_t token_id, json_t **out, samda_error *err)
{
    samdad_api_core *core = CORE(v);
    samda_store *store = samdad_store(core->ctx);
    samda_status st = samdad_require_site(store, site, err);
    if (st != SAMDA_OK) return st;
    const char *model_fp = loaded_fingerprint(core->ctx);
    if (model_fp) {
        samda_adapter_row row;
        st = samda_store_adapter_get(store, site, version, &row, err);
        if (st == SAMDA_ENOENT) return samda_fail(err, SAMDA_ENOENT, "unknown adapter version %d of site %s", version, site);
        if (st != SAMDA_OK) return st;
        if (strcmp(row.base_fingerprint, model_fp) != 0)
            st = samda_fail(err, SAMDA_ECONFLICT, "adapter version %d of site %s was made for base model %s, but the loaded "
                            "model is %s: it cannot be activated", version, site,
                            row.base_fingerprint[0] ? row.base_fingerprint : "(none)", model_fp);
        samda_adapter_clear(&row);
        if (st != SAMDA_OK) return st;
    }
    st = samda_store_adapter_activate(store, site, version, err);
    if (st == SAMDA_ENOENT) return samda_fail(err, SAMDA_ENOENT, "unknown adapter version %d of site %s", version, site);
    if (st != SAMDA_OK) return st;
    samda_log(&core->ctx->log, SAMDA_LOG_INFO, "api", "adapter activated", "site=%s version=%d token=%lld", site, version,
              (long long)token_id);
    return adapter_get_json(store, site, version, out, err);
}

static samda_status adapter_rollback(void *v, const char *site, int64_t token_id, json_t **out, samda_error *err)
{
    samdad_api_core *core = CORE(v);
    samda_store *store = samdad_store(core->ctx);
    samda_status st = samdad_require_site(store, site, err);
    if (st != SAMDA_OK) return st;
    int version = 0;
    st = samda_store_adapter_rollback(store, site, &version, err);
    if (st == SAMDA_ENOENT)
        return samda_fail(err, SAMDA_ENOENT, "site %s: nothing to roll back to (no active adapter, or no earlier version)", site);
    if (st != SAMDA_OK) return st;
    samda_log(&core->ctx->log, SAMDA_LOG_INFO, "api", "adapter rolled back", "site=%s version=%d token=%lld", site, version,
              (long long)token_id);
    return adapter_get_json(store, site, version, out, err);
}

/* Training and evaluation run in the model worker as jobs ("train", "evaluate"); the body's members
 * are the job's parameters (studies, epochs, lr, prompt, val_split, seed, max_seconds, activate, labels,
 * holdout). */
static samda_status adapter_job(samdad_api_core *core, const char *kind, const char *site, int version,
                                const json_t *body, int64_t token_id, json_t **out, samda_error *err)
{
    samda_store *store = samdad_store(core->ctx);
    samda_status st = samdad_require_site(store, site, err);
    if (st != SAMDA_OK) return st;
    if (version > 0) {
        samda_adapter_row row;
        st = samda_store_adapter_get(store, site, version, &row, err);
        if (st == SAMDA_ENOENT) return samda_fail(err, SAMDA_ENOENT, "unknown adapter version %d of site %s", version, site);
        if (st != SAMDA_OK) return st;
        samda_adapter_clear(&row);
    }
    const json_t *studies = body ? json_object_get(body, "studies") : NULL;
    if (!json_is_array(studies) || json_array_size(studies) == 0 || json_array_size(studies) > 10000)
        return samda_fail(err, SAMDA_EINVAL, "body.studies: an array of 1..10000 StudyInstanceUIDs whose studies hold a "
                          "ground-truth DICOM-SEG is required");
    size_t i;
    const json_t *u;
    json_array_foreach(studies, i, u) {
        if (!json_is_string(u) || !samda_uid_is_valid(json_string_value(u)))
            return samda_fail(err, SAMDA_EBADUID, "body.studies[%zu]: not a valid UID", i);
    }
    static const char *const allowed[] = {"studies", "epochs", "lr", "prompt", "val_split", "seed", "max_seconds",
                                          "activate", "labels", "holdout"};
    const char *key;
    const json_t *val;
    json_object_foreach((json_t *)body, key, val) {
        bool ok = false;
        for (size_t k = 0; k < sizeof allowed / sizeof *allowed; k++) ok |= !strcmp(key, allowed[k]);
        if (!ok || (!strcmp(kind, "evaluate") && strcmp(key, "studies") != 0))
            return samda_fail(err, SAMDA_EINVAL, "body.%s: unknown member for %s (allowed: %s)", key, kind,
                              !strcmp(kind, "evaluate") ? "studies"
                                                        : "studies, epochs, lr, prompt, val_split, seed, max_seconds, activate, "
                                                          "labels, holdout");
    }
    const json_t *act = json_object_get(body, "activate");
    if (act && !json_is_boolean(act) && !(json_is_string(act) && !strcmp(json_string_value(act), "if_better")))
        return samda_fail(err, SAMDA_EINVAL, "body.activate: must be true, false or \"if_better\" (activate only a "
                          "version not worse than its parent and the unadapted model on the held-out studies)");
    const json_t *hold = json_object_get(body, "holdout");
    if (hold && !(json_is_number(hold) && json_number_value(hold) >= 0 && json_number_value(hold) <= 0.5))
        return samda_fail(err, SAMDA_EINVAL, "body.holdout: must be a number from 0 to 0.5 (the fraction of the studies "
                          "held out to evaluate the new version)");
    const json_t *labels = json_object_get(body, "labels");
    if (labels && !(json_is_string(labels) && (!strcmp(json_string_value(labels), "from_segs") ||
                                               !strcmp(json_string_value(labels), "parent"))))
        return samda_fail(err, SAMDA_EINVAL, "body.labels: must be \"from_segs\" (a new adapter whose labels are the "
                          "SEGs' segments) or \"parent\" (the parent adapter's labels)");
    json_t *params = json_deep_copy(body);
    if (version > 0) json_object_set_new(params, "version", json_integer(version));
    json_object_set_new(params, "requested_by", json_integer(token_id));
    char *params_s = json_dumps(params, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(params);
    samda_job_spec spec = {
        .kind = kind,
        .priority = 5, /* after on-demand segmentation, before batch work */
        .site = site,
        .params_json = params_s,
        .max_attempts = 1, /* a failed training is looked at, not repeated */
    };
    int64_t id = 0;
    st = samda_store_job_enqueue(store, &spec, &id, NULL, err);
    free(params_s);
    if (st != SAMDA_OK) return st;
    samda_log(&core->ctx->log, SAMDA_LOG_INFO, "api", !strcmp(kind, "train") ? "adapter training queued" : "adapter evaluation queued",
              "site=%s version=%d job=%lld token=%lld", site, version, (long long)id, (long long)token_id);
    return samdad_api_job_get(core, id, out, err);
}

samda_status samdad_api_adapter_train(void *v, const char *site, const json_t *body, int64_t token_id, json_t **out,
                                      samda_error *err)
{
    return adapter_job(CORE(v), "train", site, 0, body, token_id, out, err);
}

static samda_status adapter_evaluate(void *v, const char *site, int version, const json_t *body, int64_t token_id,
                                     json_t **out, samda_error *err)
{
    return adapter_job(CORE(v), "evaluate", site, version, body, token_id, out, err);
}

static samda_status adapter_delete(void *v, const char *site, int version, int64_t token_id, samda_error *err)
{
    samdad_api_core *core = CORE(v);
    samda_store *store = samdad_store(core->ctx);
    samda_status st = samdad_require_site(store, site, err);
    if (st != SAMDA_OK) return st;
    st = samda_store_adapter_delete(store, site, version, err);
    if (st == SAMDA_ENOENT) return samda_fail(err, SAMDA_ENOENT, "unknown adapter version %d of site %s", version, site);
    if (st == SAMDA_EBUSY)
        return samda_fail(err, SAMDA_ECANCELED, "adapter version %d of site %s is active: activate another version or roll back first",
                          version, site);
    if (st != SAMDA_OK) return st;
    samda_log(&core->ctx->log, SAMDA_LOG_INFO, "api", "adapter deleted", "site=%s version=%d token=%lld", site, version,
              (long long)token_id);
    return SAMDA_OK;
}

void samdad_api_bind_admin(samda_api_services *svc, bool with_model)
{
    svc->sites_list = sites_list;
    svc->site_get = site_get;
    svc->site_put = site_put;
    svc->destinations_list = destinations_list;
    svc->destination_get = destination_get;
    svc->destination_add = destination_add;
    svc->destination_delete = destination_delete;
    svc->destination_echo = destination_echo;
    svc->exports_list = exports_list;
    svc->export_retry = export_retry;
    svc->audit_list = audit_list;
    svc->adapters_list = adapters_list;
    svc->adapter_upload = adapter_upload;
    svc->adapter_activate = adapter_activate;
    svc->adapter_rollback = adapter_rollback;
    svc->adapter_delete = adapter_delete;
    /* Training and evaluation need the model worker: without a model the routes answer 501. */
    if (with_model) {
        svc->adapter_train = samdad_api_adapter_train;
        svc->adapter_evaluate = adapter_evaluate;
    }
}
