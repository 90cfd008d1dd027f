/* Sites created through the API, in effect without a restart: the site overlay.
 *
 * Precedence. The configuration file's [site NAME] sections are copied into the index at start
 * and at every reload (samdad_sync_sites) and always win: such a site cannot be changed through
 * the API (409), and a site created through the API is replaced by a [site] section of the same
 * name as soon as the file defines one. Sites created or changed through the API carry
 * "origin": "api" in their stored settings; they take effect at once without a restart: the core
 * installs a configuration snapshot made of the file's configuration (as last loaded) plus one
 * [site] section per API site (site overlay). A reload (SIGHUP) installs a fresh snapshot from
 * the file; the core notices within half a second and lays its API sites over it again. */
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

#define OVERLAY_POLL_MS 500

bool samdad_site_origin_is_api(const char *settings_json)
{
    if (!settings_json) return false;
    json_t *j = json_loads(settings_json, 0, NULL);
    bool api = j && json_is_string(json_object_get(j, "origin")) &&
               strcmp(json_string_value(json_object_get(j, "origin")), SITE_ORIGIN_API) == 0;
    json_decref(j);
    return api;
}

/* Write a JSON string array as an INI list value ("a,b"); false when empty. */
static bool ini_list(FILE *f, const char *key, const json_t *arr)
{
    if (!json_is_array(arr) || json_array_size(arr) == 0) return false;
    fprintf(f, "%s = ", key);
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) fprintf(f, "%s%s", i ? "," : "", json_string_value(v));
    fputc('\n', f);
    return true;
}

/* One [site] section from the stored JSON (validated when it was written). Destinations that the
 * configuration does not define are left out: the file's [site] sections may name only [destination]
 * sections; the API's own destinations stay in the index. */
static void ini_site(FILE *f, const samda_config *base, const char *name, const char *ae_json, const char *settings_json)
{
    json_t *ae = ae_json ? json_loads(ae_json, 0, NULL) : NULL;
    json_t *set = settings_json ? json_loads(settings_json, 0, NULL) : NULL;
    fprintf(f, "\n[site %s]\n", name);
    ini_list(f, "called_ae", json_object_get(ae, "called_ae"));
    ini_list(f, "calling_ae", json_object_get(ae, "calling_ae"));
    ini_list(f, "modalities", json_object_get(set, "modalities"));
    json_t *v;
    if (json_is_integer(v = json_object_get(set, "min_slices"))) fprintf(f, "min_slices = %lld\n", (long long)json_integer_value(v));
    if (json_is_integer(v = json_object_get(set, "series_idle_ms"))) fprintf(f, "series_idle = %lldms\n", (long long)json_integer_value(v));
    if (json_is_integer(v = json_object_get(set, "study_idle_ms"))) fprintf(f, "study_idle = %lldms\n", (long long)json_integer_value(v));
    if (json_is_integer(v = json_object_get(set, "max_wait_ms"))) fprintf(f, "max_wait = %lldms\n", (long long)json_integer_value(v));
    if (json_is_string(v = json_object_get(set, "tta"))) fprintf(f, "tta = %s\n", json_string_value(v));
    json_t *dests = json_array();
    size_t i;
    json_array_foreach(json_object_get(set, "destinations"), i, v)
        if (json_is_string(v) && samda_config_dest(base, json_string_value(v))) json_array_append(dests, v);
    ini_list(f, "destinations", dests);
    json_decref(dests);
    json_decref(ae);
    json_decref(set);
}

/* Build the overlay snapshot: base + every API site of the index (+ cand). *next = NULL when
 * there is nothing to lay over base. */
static samda_status overlay_build(samdad_api_core *core, const samda_config *base, const site_candidate *cand,
                                  samda_config **next, samda_error *err)
{
    *next = NULL;
    samda_site *sites = NULL;
    size_t n = 0;
    samda_status st = samda_store_site_list(samdad_store(core->ctx), &sites, &n, err);
    if (st != SAMDA_OK) return st;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) {
        samda_site_list_free(sites, n);
        return samda_fail(err, SAMDA_ENOMEM, "applying API sites: out of memory");
    }
    samda_config_write_effective(base, f);
    size_t added = 0;
    for (size_t i = 0; i < n; i++) {
        if (cand && strcmp(sites[i].name, cand->name) == 0) continue;
        if (samda_config_site(base, sites[i].name) || !samdad_site_origin_is_api(sites[i].settings_json)) continue;
        ini_site(f, base, sites[i].name, sites[i].ae_json, sites[i].settings_json);
        added++;
    }
    if (cand) {
        ini_site(f, base, cand->name, cand->ae_json, cand->settings_json);
        added++;
    }
    samda_site_list_free(sites, n);
    if (fclose(f) != 0) {
        free(text);
        return samda_fail(err, SAMDA_ENOMEM, "applying API sites: out of memory");
    }
    if (!added) {
        free(text);
        return SAMDA_OK;
    }
    /* samda_config_load reads a file: hand it an anonymous one. */
    int fd = memfd_create("samda-site-overlay", MFD_CLOEXEC);
    bool wrote = fd >= 0;
    for (size_t off = 0; wrote && off < len;) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) wrote = false;
        else off += (size_t)w;
    }
    free(text);
    if (!wrote) {
        if (fd >= 0) close(fd);
        return samda_fail(err, SAMDA_EIO, "applying API sites: cannot write the overlay configuration");
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    samda_error le;
    samda_config *c = samda_config_load(path, NULL, &le);
    close(fd);
    if (!c) return samda_fail(err, SAMDA_EINVAL, "site settings refused by the configuration rules: %s", le.message);
    /* Restart-only options (and the sensitive ones, written as ***) stay exactly as running. */
    if ((st = samda_config_merge_reload(c, base, NULL, NULL, err)) != SAMDA_OK) {
        samda_config_unref(c);
        return st;
    }
    char *src = base->source ? strdup(base->source) : NULL;
    if (base->source && !src) {
        samda_config_unref(c);
        return samda_fail(err, SAMDA_ENOMEM, "applying API sites: out of memory");
    }
    free(c->source);
    c->source = src;
    *next = c;
    return SAMDA_OK;
}

/* Install next if the running snapshot is still expected (a reload may have raced us). Takes
 * ownership of next. Returns false when the snapshot changed meanwhile (next is dropped). */
static bool overlay_install(samdad_api_core *core, samda_config *expected, samda_config *next)
{
    samdad_ctx *ctx = core->ctx;
    /* samdad_config_set has no compare-and-swap: do it under the context's own lock. */
    pthread_mutex_lock(&ctx->cfg_mu);
    bool ok = ctx->cfg == expected;
    if (ok) ctx->cfg = next;
    pthread_mutex_unlock(&ctx->cfg_mu);
    if (!ok) {
        samda_config_unref(next);
        return false;
    }
    samda_config_unref(expected); /* the context's reference */
    samda_config_unref(core->installed);
    core->installed = samda_config_ref(next);
    return true;
}

/* Make the running snapshot = base + API sites. Caller holds core->overlay_mu. cand: a site
 * about to be written (NULL = just the index). With dry_run, only check that the overlay loads. */
samda_status samdad_overlay_apply_locked(samdad_api_core *core, const site_candidate *cand, bool dry_run, samda_error *err)
{
    for (int attempt = 0; attempt < 5; attempt++) {
        samda_config *cur = samdad_config_get(core->ctx);
        if (cur != core->installed) { /* started or reloaded since: cur is the file's configuration */
            samda_config_unref(core->base);
            core->base = samda_config_ref(cur);
        }
        samda_config *next = NULL;
        samda_status st = overlay_build(core, core->base, cand, &next, err);
        if (st != SAMDA_OK || dry_run) {
            samda_config_unref(next);
            samda_config_unref(cur);
            return st;
        }
        if (!next) { /* nothing to lay over: the base itself runs */
            if (cur == core->base) {
                samda_config_unref(core->installed);
                core->installed = cur; /* our reference */
                return SAMDA_OK;
            }
            next = samda_config_ref(core->base);
        }
        bool ok = overlay_install(core, cur, next);
        samda_config_unref(cur);
        if (ok) return SAMDA_OK;
    }
    return samda_fail(err, SAMDA_EBUSY, "applying API sites: the configuration kept changing, try again");
}

samda_status samdad_overlay_apply(samdad_api_core *core, const site_candidate *cand, bool dry_run, samda_error *err)
{
    pthread_mutex_lock(&core->overlay_mu);
    samda_status st = samdad_overlay_apply_locked(core, cand, dry_run, err);
    pthread_mutex_unlock(&core->overlay_mu);
    return st;
}

/* Re-applies the API sites after a reload replaced the snapshot. */
static void *overlay_main(void *arg)
{
    samdad_api_core *core = arg;
    pthread_mutex_lock(&core->watch_mu);
    while (!core->watch_stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += OVERLAY_POLL_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&core->watch_cv, &core->watch_mu, &ts);
        if (core->watch_stop) break;
        pthread_mutex_unlock(&core->watch_mu);
        pthread_mutex_lock(&core->overlay_mu);
        samda_config *cur = samdad_config_get(core->ctx);
        bool changed = cur != core->installed;
        samda_config_unref(cur);
        if (changed) {
            samda_error e;
            if (samdad_overlay_apply_locked(core, NULL, false, &e) != SAMDA_OK)
                samda_log(&core->ctx->log, SAMDA_LOG_ERROR, "api", "cannot apply API sites after a reload", "error=%s",
                          samda_log_quote((char[600]){0}, 600, e.message));
            else
                samda_log(&core->ctx->log, SAMDA_LOG_DEBUG, "api", "API sites laid over the new configuration", NULL);
        }
        pthread_mutex_unlock(&core->overlay_mu);
        pthread_mutex_lock(&core->watch_mu);
    }
    pthread_mutex_unlock(&core->watch_mu);
    return NULL;
}

samda_config *samdad_overlay_base(samdad_api_core *core)
{
    pthread_mutex_lock(&core->overlay_mu);
    samda_config *cur = samdad_config_get(core->ctx);
    samda_config *b;
    if (cur == core->installed && core->base) {
        b = samda_config_ref(core->base);
        samda_config_unref(cur);
    } else {
        b = cur;
    }
    pthread_mutex_unlock(&core->overlay_mu);
    return b;
}

samda_status samdad_overlay_start(samdad_api_core *core, samda_error *err)
{
    /* Sites created through the API in earlier runs take effect now. */
    if (samdad_overlay_apply(core, NULL, false, err) != SAMDA_OK) {
        samda_error_prefix(err, "applying the sites created through the API: ");
        return err ? err->code : SAMDA_EINTERNAL;
    }
    if (pthread_create(&core->watcher, NULL, overlay_main, core) != 0)
        return samda_fail(err, SAMDA_ENOMEM, "starting the HTTP core: cannot create the site overlay thread");
    core->watching = true;
    return SAMDA_OK;
}

void samdad_overlay_stop(samdad_api_core *core)
{
    if (!core || !core->watching) return;
    pthread_mutex_lock(&core->watch_mu);
    core->watch_stop = true;
    pthread_cond_broadcast(&core->watch_cv);
    pthread_mutex_unlock(&core->watch_mu);
    pthread_join(core->watcher, NULL);
    core->watching = false;
}
