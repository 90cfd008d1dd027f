/* The export worker. A dispatcher thread claims due items destination by destination and hands
 * each destination's batch to a sender thread of that destination's own, which sends it over one
 * association and then claims that destination's next batch until none is due. A destination that
 * stalls or is slow so holds only its own sender: others are sent to meanwhile. At most one sender
 * per destination, so a destination never sees two associations from the exporter at once. */
#include "exporter.h"

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dicom.h"
#include "loop.h"
#include "services_internal.h"
#include "stow_client.h"
#include "storage.h"

#define EXPORT_BATCH 32

typedef struct sender sender;

struct samdad_exporter {
    samdad_ctx *ctx;
    samdad_loop loop;       /* the dispatcher */
    pthread_mutex_t smu;    /* guards senders, stopping and each sender's done */
    sender *senders;        /* running or finished, not yet joined */
    bool stopping;
};

struct sender {
    sender *next;
    samdad_exporter *e;
    int64_t destination_id;
    samda_export_item *items; /* the batch to send first (owned) */
    size_t n;
    pthread_t thread;
    bool done;
};

static char *q(char *buf, unsigned size, const char *v) { return samda_log_quote(buf, size, v); }

const samda_dicom_tls *samdad_dest_tls(const samda_dest_cfg *d, samda_dicom_tls *out)
{
    if (!d || !d->tls) return NULL;
    samda_dicom_tls_init(out);
    out->certificate_file = d->tls_cert;
    out->private_key_file = d->tls_key;
    out->ca_file = d->tls_ca_file;
    out->ca_dir = d->tls_ca_dir;
    return out;
}

/* A STOW-RS destination ([destination] url): the items in one request, each with its outcome. */
static void send_stow(const samda_dest_cfg *dc, unsigned timeout, const char *const *paths, const samda_export_item *items,
                      size_t n, samda_store_result *res)
{
    samdad_stow_target t = {.auth = (samdad_stow_auth)dc->auth, .username = dc->username, .secret_file = dc->secret_file,
                            .ca_file = dc->tls_ca_file, .ca_dir = dc->tls_ca_dir, .timeout_s = timeout};
    const char **uids = calloc(n ? n : 1, sizeof *uids);
    bool url_ok = samda_url_parse(dc->url, &t.url, NULL, 0); /* checked when the configuration loaded */
    if (!uids || !url_ok) {
        for (size_t i = 0; i < n; i++) {
            res[i].status = uids ? SAMDA_ECONFIG : SAMDA_ENOMEM;
            res[i].is_transient = true;
            snprintf(res[i].message, sizeof res[i].message, "STOW-RS: %s", uids ? "the url is not valid" : "out of memory");
        }
        free(uids);
        return;
    }
    for (size_t i = 0; i < n; i++) uids[i] = items[i].sop_uid;
    samdad_stow_send(&t, paths, uids, n, res);
    free(uids);
}

/* Send the items of one destination over one association (or STOW-RS request) and record each outcome. */
static void send_group(samdad_ctx *ctx, const samda_config *cfg, const samda_destination *d, samda_export_item *items,
                       size_t n)
{
    samda_store *store = samdad_store(ctx);
    char **paths = calloc(n, sizeof *paths);
    samda_store_result *res = calloc(n, sizeof *res);
    samda_error err;
    if (!paths || !res) goto out;
    for (size_t i = 0; i < n; i++) {
        paths[i] = malloc(PATH_MAX);
        if (!paths[i] || samda_store_object_path(store, items[i].relpath, paths[i], PATH_MAX, &err) != SAMDA_OK)
            goto out;
    }
    /* A [destination] section's TLS settings as configured now (reloadable); a destination added
     * through the API has none and is sent to over plain TCP. A TLS set-up or handshake failure
     * (certificate not signed by the configured CA, peer not speaking TLS) is permanent: waiting
     * does not make a certificate trusted, and the SEG must not go to an unverified peer. */
    samda_dicom_tls tls;
    const samda_dest_cfg *dc = samda_config_dest(cfg, d->name);
    samda_dicom_peer peer = {.calling_ae = cfg->dicom_ae_title, .called_ae = d->ae_title, .host = d->host,
                             .port = (unsigned)d->port, .tls = dc && dc->url ? NULL : samdad_dest_tls(dc, &tls)};
    unsigned timeout = (unsigned)((cfg->dicom_dimse_timeout_ms + 999) / 1000);
    samda_store_outcome outcome = SAMDA_STORE_TRANSIENT;
    memset(&err, 0, sizeof err);
    if (dc && dc->url) send_stow(dc, timeout, (const char *const *)paths, items, n, res);
    else samda_dicom_store(&peer, (const char *const *)paths, n, timeout, res, &outcome, &err);
    size_t ok = 0, failed = 0;
    for (size_t i = 0; i < n; i++) {
        samda_error e2;
        char details[512];
        if (res[i].status == SAMDA_OK) {
            ok++;
            if (samda_store_export_done(store, items[i].id, &e2) != SAMDA_OK)
                samda_log(&ctx->log, SAMDA_LOG_ERROR, "export", "cannot record a sent item", "item=%lld error=%s",
                          (long long)items[i].id, q((char[600]){0}, 600, e2.message));
            snprintf(details, sizeof details, "{\"destination\":\"%s\",\"item\":%lld}", d->name, (long long)items[i].id);
            samda_store_audit_append(store, "system", "export.seg", items[i].relpath, "ok", details, &e2);
            continue;
        }
        failed++;
        bool permanent = !res[i].is_transient;
        int64_t next = 0;
        char msg[SAMDA_ERROR_MESSAGE_SIZE + 320];
        if (dc && dc->url)
            snprintf(msg, sizeof msg, "%.400s (%.300s)", res[i].message, dc->url);
        else
            snprintf(msg, sizeof msg, "%.400s (%.255s:%d %.16s%s)", res[i].message[0] ? res[i].message : err.message,
                     d->host, d->port, d->ae_title, peer.tls ? ", DICOM TLS" : "");
        if (samda_store_export_fail(store, items[i].id, msg, permanent, &next, &e2) != SAMDA_OK)
            samda_log(&ctx->log, SAMDA_LOG_ERROR, "export", "cannot record a failed send", "item=%lld error=%s",
                      (long long)items[i].id, q((char[600]){0}, 600, e2.message));
        else
            samda_log(&ctx->log, permanent || !next ? SAMDA_LOG_ERROR : SAMDA_LOG_WARN, "export",
                      permanent && peer.tls && strstr(res[i].message[0] ? res[i].message : err.message, "TLS")
                          ? "DICOM TLS with the destination failed: not sent, failed (retry by hand)"
                      : permanent ? "refused by the destination: failed (retry by hand)"
                      : next    ? "send failed, will retry"
                                : "send failed, out of attempts",
                      "destination=%s item=%lld attempt=%d error=%s", d->name, (long long)items[i].id,
                      items[i].attempts + 1, q((char[400]){0}, 400, msg));
        samda_store_audit_append(store, "system", "export.seg", items[i].relpath, "error", NULL, &e2);
    }
    if (ok)
        samda_log(&ctx->log, SAMDA_LOG_INFO, "export", "sent", "destination=%s stored=%zu failed=%zu", d->name, ok,
                  failed);
out:
    if (paths)
        for (size_t i = 0; i < n; i++) free(paths[i]);
    free(paths);
    free(res);
}

/* Sends the items of one claimed batch (all of one destination); false when the destination is gone. */
static bool send_batch(samdad_ctx *ctx, int64_t destination_id, samda_export_item *items, size_t n)
{
    samda_store *store = samdad_store(ctx);
    samda_error err;
    samda_destination *dests = NULL;
    size_t nd = 0;
    if (samda_store_destination_list(store, &dests, &nd, &err) != SAMDA_OK) nd = 0;
    const samda_destination *d = NULL;
    for (size_t k = 0; k < nd; k++)
        if (dests[k].id == destination_id) d = &dests[k];
    if (d) {
        samda_config *cfg = samdad_config_get(ctx);
        send_group(ctx, cfg, d, items, n);
        samda_config_unref(cfg);
    } /* else: removed meanwhile; its items stay SENDING until the lease ends, as before */
    samda_destination_list_free(dests, nd);
    return d != NULL;
}

static void *sender_main(void *arg)
{
    sender *sd = arg;
    samdad_exporter *e = sd->e;
    samda_export_item *items = sd->items;
    size_t n = sd->n;
    sd->items = NULL;
    for (;;) {
        bool known = send_batch(e->ctx, sd->destination_id, items, n);
        samda_store_free(items);
        items = NULL;
        n = 0;
        pthread_mutex_lock(&e->smu);
        bool stop = e->stopping;
        pthread_mutex_unlock(&e->smu);
        if (stop || !known) break;
        samda_error err;
        if (samda_store_export_claim(samdad_store(e->ctx), sd->destination_id, EXPORT_BATCH, &items, &n, &err) != SAMDA_OK) {
            samda_log(&e->ctx->log, SAMDA_LOG_ERROR, "export", "cannot read the export queue", "error=%s",
                      q((char[600]){0}, 600, err.message));
            break;
        }
        if (!n) break;
    }
    samda_store_free(items);
    pthread_mutex_lock(&e->smu);
    sd->done = true;
    pthread_mutex_unlock(&e->smu);
    samdad_loop_kick(&e->loop); /* the dispatcher joins it and looks for more */
    return NULL;
}

/* Joins finished senders (all of them with all, waiting for those still sending). */
static void reap_senders(samdad_exporter *e, bool all)
{
    for (;;) {
        sender *found = NULL;
        pthread_mutex_lock(&e->smu);
        for (sender **pp = &e->senders; *pp; pp = &(*pp)->next)
            if (all || (*pp)->done) {
                found = *pp;
                *pp = found->next;
                break;
            }
        pthread_mutex_unlock(&e->smu);
        if (!found) return;
        pthread_join(found->thread, NULL);
        samda_store_free(found->items);
        free(found);
    }
}

/* Claims a batch for every destination without a sender and starts one for it; returns the items
 * claimed. */
static size_t dispatch(samdad_exporter *e)
{
    samda_store *store = samdad_store(e->ctx);
    samda_error err;
    samda_destination *dests = NULL;
    size_t nd = 0, claimed = 0;
    if (samda_store_destination_list(store, &dests, &nd, &err) != SAMDA_OK) {
        samda_log(&e->ctx->log, SAMDA_LOG_ERROR, "export", "cannot list destinations", "error=%s",
                  q((char[600]){0}, 600, err.message));
        return 0;
    }
    for (size_t k = 0; k < nd; k++) {
        bool busy = false;
        pthread_mutex_lock(&e->smu);
        for (sender *x = e->senders; x; x = x->next)
            busy |= x->destination_id == dests[k].id;
        const bool stop = e->stopping;
        pthread_mutex_unlock(&e->smu);
        if (busy || stop) continue;
        samda_export_item *items = NULL;
        size_t n = 0;
        if (samda_store_export_claim(store, dests[k].id, EXPORT_BATCH, &items, &n, &err) != SAMDA_OK) {
            samda_log(&e->ctx->log, SAMDA_LOG_ERROR, "export", "cannot read the export queue", "error=%s",
                      q((char[600]){0}, 600, err.message));
            break;
        }
        if (!n) continue;
        claimed += n;
        sender *sd = calloc(1, sizeof *sd);
        if (sd) {
            sd->e = e;
            sd->destination_id = dests[k].id;
            sd->items = items;
            sd->n = n;
            pthread_mutex_lock(&e->smu);
            if (e->stopping) { /* stopping meanwhile: the batch waits for its lease, like a send cut short */
                samda_store_free(items);
                items = NULL;
                free(sd);
                sd = NULL;
            } else if (pthread_create(&sd->thread, NULL, sender_main, sd) == 0) {
                sd->next = e->senders;
                e->senders = sd;
                items = NULL;
            } else {
                free(sd);
                sd = NULL;
            }
            pthread_mutex_unlock(&e->smu);
        }
        if (items) { /* no thread: send on this one */
            send_batch(e->ctx, dests[k].id, items, n);
            samda_store_free(items);
        }
    }
    samda_destination_list_free(dests, nd);
    return claimed;
}

static void *export_dispatcher_main(void *arg)
{
    samdad_exporter *e = arg;
    pthread_mutex_lock(&e->loop.mu);
    while (!e->loop.stop) {
        pthread_mutex_unlock(&e->loop.mu);
        reap_senders(e, false);
        size_t handled = dispatch(e);
        samda_config *cfg = samdad_config_get(e->ctx);
        int64_t tick = cfg->sched_tick_ms;
        samda_config_unref(cfg);
        pthread_mutex_lock(&e->loop.mu);
        if (!handled && !samdad_loop_wait(&e->loop, tick)) break;
    }
    pthread_mutex_unlock(&e->loop.mu);
    return NULL;
}

samdad_exporter *samdad_exporter_start(samdad_ctx *ctx, samda_error *err)
{
    samdad_exporter *e = calloc(1, sizeof *e);
    if (!e) {
        samda_fail(err, SAMDA_ENOMEM, "starting the exporter: out of memory");
        return NULL;
    }
    e->ctx = ctx;
    pthread_mutex_init(&e->smu, NULL);
    if (samdad_loop_start(&e->loop, export_dispatcher_main, e, "export dispatcher", err) != SAMDA_OK) {
        pthread_mutex_destroy(&e->smu);
        free(e);
        return NULL;
    }
    return e;
}

void samdad_exporter_kick(samdad_exporter *e)
{
    if (e) samdad_loop_kick(&e->loop);
}

void samdad_exporter_stop(samdad_exporter *e)
{
    if (!e) return;
    pthread_mutex_lock(&e->smu);
    e->stopping = true; /* senders end after the send in progress; no new ones start */
    pthread_mutex_unlock(&e->smu);
    reap_senders(e, true); /* before the loop goes: a finishing sender kicks it */
    samdad_loop_stop(&e->loop);
    pthread_mutex_destroy(&e->smu);
    free(e);
}
