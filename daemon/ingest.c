/* DICOM ingest: the SCP's callbacks (see ingest.h). An instance is acknowledged Success only
 * after samda_store_instance_ingest() returned: the file is fsynced and renamed into place and its
 * index row committed. Every refusal is logged once here, where its fate is decided, with the AE
 * title and address that caused it and never a patient name or ID. */
#include "ingest.h"


#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "json_out.h"
#include "services_internal.h"
#include "url.h"

typedef struct assoc_user {
    int64_t store_id;      /* row in the associations table */
    char site[SAMDA_NAME_SIZE];
    unsigned n_identical;  /* duplicates accepted unchanged (duplicate policy) */
    unsigned n_replaced;   /* duplicates that replaced the stored copy */
    unsigned n_refused_duplicates;
} assoc_user;

samda_status samdad_disk_free(const char *dir, uint64_t *free_bytes, samda_error *err)
{
    struct statvfs sv;
    if (statvfs(dir, &sv) != 0) return samda_fail(err, SAMDA_EIO, "statvfs %s: %s", dir, strerror(errno));
    *free_bytes = (uint64_t)sv.f_bavail * (uint64_t)sv.f_frsize;
    return SAMDA_OK;
}

samda_dup_policy samdad_dup_policy(const samda_config *cfg)
{
    switch (cfg->storage_duplicates) {
    case SAMDA_CFG_DUP_OVERWRITE: return SAMDA_DUP_OVERWRITE;
    case SAMDA_CFG_DUP_REJECT: return SAMDA_DUP_REJECT;
    default: return SAMDA_DUP_IGNORE_IDENTICAL;
    }
}

/* Bounded copy; the index's columns may be narrower than DICOM's maxima (values are cut). */
static void copy_str(char *dst, size_t size, const char *src)
{
    size_t n = src ? strnlen(src, size - 1) : 0;
    if (n) memcpy(dst, src, n);
    dst[n] = 0;
}

/* DA is YYYYMMDD (PS3.5 6.2); old ACR-NEMA style "YYYY.MM.DD" still occurs in archives. Anything
 * else is dropped from the index (the file keeps it): a bad date must not cost the instance. */
static void normalise_date(char out[9], const char *in)
{
    char d[9];
    size_t n = 0;
    for (const char *p = in; *p && n < 9; p++) {
        if (*p >= '0' && *p <= '9') d[n++] = *p;
        else if (*p != '.' && *p != ' ') return (void)(out[0] = 0);
    }
    if (n != 8) return (void)(out[0] = 0);
    memcpy(out, d, 8);
    out[8] = 0;
}

void samdad_meta_from_header(const samda_dicom_header *h, samda_instance_meta *m)
{
    samda_instance_meta_init(m);
    copy_str(m->patient_id, sizeof m->patient_id, h->patient_id);
    copy_str(m->patient_name, sizeof m->patient_name, h->patient_name);
    copy_str(m->study_uid, sizeof m->study_uid, h->study_instance_uid);
    normalise_date(m->study_date, h->study_date);
    copy_str(m->study_description, sizeof m->study_description, h->study_description);
    copy_str(m->accession_number, sizeof m->accession_number, h->accession_number);
    copy_str(m->series_uid, sizeof m->series_uid, h->series_instance_uid);
    copy_str(m->modality, sizeof m->modality, h->modality);
    copy_str(m->body_part, sizeof m->body_part, h->body_part_examined);
    copy_str(m->series_description, sizeof m->series_description, h->series_description);
    m->series_number = h->has_series_number ? h->series_number : 0;
    copy_str(m->sop_uid, sizeof m->sop_uid, h->sop_instance_uid);
    copy_str(m->sop_class_uid, sizeof m->sop_class_uid, h->sop_class_uid);
    copy_str(m->transfer_syntax_uid, sizeof m->transfer_syntax_uid, h->transfer_syntax_uid);
    m->instance_number = h->has_instance_number ? h->instance_number : 0;
    m->rows = (int)h->rows;
    m->columns = (int)h->columns;
    m->bits_allocated = (int)h->bits_allocated;
    m->number_of_frames = (int)h->number_of_frames;
    if (h->has_pixel_spacing) memcpy(m->pixel_spacing, h->pixel_spacing, sizeof m->pixel_spacing);
    if (h->has_image_position) memcpy(m->image_position, h->image_position, sizeof m->image_position);
    if (h->has_image_orientation) memcpy(m->image_orientation, h->image_orientation, sizeof m->image_orientation);
    if (h->has_slice_thickness) m->slice_thickness = h->slice_thickness;
    m->rescale_slope = h->rescale_slope;
    m->rescale_intercept = h->rescale_intercept;
    if (h->has_window) {
        m->window_center = h->window_center;
        m->window_width = h->window_width;
    }
}

/* Who may send: with allow_any_peer off, the calling AE must be a [peer] and, if that peer names a
 * host, come from it. */
static const samda_peer_cfg *find_peer(const samda_config *cfg, const char *calling_ae, const char *address,
                                       bool *host_mismatch)
{
    *host_mismatch = false;
    for (size_t i = 0; i < cfg->n_peers; i++) {
        const samda_peer_cfg *p = &cfg->peers[i];
        if (strcmp(p->ae_title, calling_ae) != 0) continue;
        if (p->host && strcmp(p->host, address) != 0) {
            *host_mismatch = true;
            continue;
        }
        return p;
    }
    return NULL;
}

static bool called_ae_known(const samda_config *cfg, const char *called_ae)
{
    if (strcmp(cfg->dicom_ae_title, called_ae) == 0) return true;
    for (size_t i = 0; i < cfg->n_sites; i++)
        for (size_t j = 0; j < cfg->sites[i].called_ae.n; j++)
            if (strcmp(cfg->sites[i].called_ae.v[j], called_ae) == 0) return true;
    return false;
}

static void audit_association(samdad_ctx *ctx, const samda_assoc_info *a, const assoc_user *u, const char *site,
                              const char *outcome, const char *reason, unsigned n_stored, unsigned n_failed)
{
    samda_store *store = samdad_store(ctx);
    json_t *d = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I}", "peer", a->peer_address, "called_ae", a->called_ae,
                          "site", site ? site : "", "association", (json_int_t)a->id, "stored",
                          (json_int_t)n_stored, "failed", (json_int_t)n_failed);
    if (d && reason) json_object_set_new(d, "reason", json_string(reason));
    if (d && u) /* the duplicate policy's decisions, per association */
        json_object_set_new(d, "duplicates",
                            json_pack("{s:i, s:i, s:i}", "identical", u->n_identical, "replaced", u->n_replaced,
                                      "refused", u->n_refused_duplicates));
    char *details = d ? json_dumps(d, JSON_COMPACT) : NULL;
    json_decref(d);
    char resource[64];
    snprintf(resource, sizeof resource, "association/%llu", (unsigned long long)a->id);
    samda_error err;
    if (samda_store_audit_append(store, a->calling_ae, "dicom.association", resource, outcome, details, &err) !=
        SAMDA_OK)
        samda_log(&ctx->log, SAMDA_LOG_ERROR, "audit", "cannot write audit entry", "error=%s",
                  samda_log_quote((char[600]){0}, 600, err.message));
    free(details);
}

static void on_association(void *vctx, const samda_assoc_info *a, samda_assoc_decision *out)
{
    samdad_ctx *ctx = vctx;
    samda_config *cfg = samdad_config_get(ctx);
    char q1[40], q2[40];
    const char *reason = NULL;
    const samda_site_cfg *site = NULL;

    if (!called_ae_known(cfg, a->called_ae)) {
        out->verdict = SAMDA_ASSOC_REJECT_CALLED_AE;
        reason = "called AE title not recognised";
    } else if (!cfg->dicom_allow_any_peer) {
        bool host_mismatch;
        const samda_peer_cfg *peer = find_peer(cfg, a->calling_ae, a->peer_address, &host_mismatch);
        if (!peer) {
            out->verdict = SAMDA_ASSOC_REJECT_CALLING_AE;
            reason = host_mismatch ? "calling AE title not allowed from this address"
                                   : "calling AE title not in the allow-list ([peer] sections)";
        } else if (peer->site) {
            site = samda_config_site(cfg, peer->site);
        }
    }
    if (reason) {
        samda_log(&ctx->log, SAMDA_LOG_WARN, "dicom", "association rejected",
                  "calling_ae=%s called_ae=%s peer=%s reason=%s", samda_log_quote(q1, sizeof q1, a->calling_ae),
                  samda_log_quote(q2, sizeof q2, a->called_ae), a->peer_address,
                  samda_log_quote((char[80]){0}, 80, reason));
        audit_association(ctx, a, NULL, NULL, "rejected", reason, 0, 0);
        samda_config_unref(cfg);
        return;
    }
    if (!site) site = samda_config_site_for(cfg, a->calling_ae, a->called_ae);
    if (!site) site = samda_config_site(cfg, "default");

    assoc_user *u = calloc(1, sizeof *u);
    samda_error err;
    if (!u) {
        out->verdict = SAMDA_ASSOC_REJECT_BUSY;
        samda_config_unref(cfg);
        return;
    }
    if (site) snprintf(u->site, sizeof u->site, "%s", site->name);
    char peer[80];
    snprintf(peer, sizeof peer, "%s", a->peer_address);
    if (samda_store_assoc_begin(samdad_store(ctx), a->calling_ae, a->called_ae, peer, u->site, &u->store_id, &err) !=
        SAMDA_OK) {
        /* The index cannot record it: refuse transiently so the PACS retries later. */
        samda_log(&ctx->log, SAMDA_LOG_ERROR, "dicom", "association refused: index unavailable", "error=%s",
                  samda_log_quote((char[600]){0}, 600, err.message));
        free(u);
        out->verdict = SAMDA_ASSOC_REJECT_BUSY;
        samda_config_unref(cfg);
        return;
    }
    out->user = u;
    samda_log(&ctx->log, SAMDA_LOG_INFO, "dicom", "association accepted",
              "assoc=%llu calling_ae=%s called_ae=%s peer=%s site=%s", (unsigned long long)a->id,
              samda_log_quote(q1, sizeof q1, a->calling_ae), samda_log_quote(q2, sizeof q2, a->called_ae),
              a->peer_address, u->site[0] ? u->site : "-");
    samda_config_unref(cfg);
}

samda_status samdad_ingest_file(samdad_ctx *ctx, const samdad_ingest_origin *o, const char *path,
                                const samda_dicom_header *h, samda_ingest_result *res, samda_error *err)
{
    samda_store *store = samdad_store(ctx);
    samda_config *cfg = samdad_config_get(ctx);
    samda_status st;
    samda_ingest_result local;
    if (!res) res = &local;
    memset(res, 0, sizeof *res);

    if (o->kind == SAMDAD_ORIGIN_RESULT && !o->result) {
        st = samda_fail(err, SAMDA_EINVAL, "storing a DICOM-SEG result: no result to record with it");
        goto refused;
    }
    uint64_t free_bytes = 0;
    if (samdad_disk_free(samda_store_data_dir(store), &free_bytes, NULL) == SAMDA_OK &&
        free_bytes < cfg->storage_min_free_bytes) {
        st = samda_fail(err, SAMDA_ENOSPC, "disk space below storage.min_free: %llu bytes free, [storage] min_free is %llu",
                        (unsigned long long)free_bytes, (unsigned long long)cfg->storage_min_free_bytes);
        goto refused;
    }
    /* Acknowledged means readable: the whole data set parses and its pixels match its attributes. */
    if ((st = samda_dicom_check_instance(path, h, err)) != SAMDA_OK) goto refused;

    samda_instance_meta meta;
    samdad_meta_from_header(h, &meta);
    if (o->calling_ae) snprintf(meta.calling_ae, sizeof meta.calling_ae, "%s", o->calling_ae);
    if (o->site) snprintf(meta.site, sizeof meta.site, "%s", o->site);
    meta.association_id = o->association_id;
    if (o->kind == SAMDAD_ORIGIN_SESSION) meta.flags |= SAMDA_INSTANCE_UPLOAD;

    samda_tmp_file tmp;
    tmp.fd = open(path, O_RDWR | O_CLOEXEC);
    if (tmp.fd < 0) {
        st = samda_fail(err, SAMDA_EIO, "the received file vanished before it was stored: %s", strerror(errno));
        samda_config_unref(cfg);
        return st;
    }
    snprintf(tmp.path, sizeof tmp.path, "%s", path);
    /* both always consume the file */
    if (o->kind == SAMDAD_ORIGIN_RESULT)
        st = samda_store_result_ingest(store, &tmp, &meta, o->result, res, o->result_id, err);
    else
        st = samda_store_instance_ingest_hashed(store, &tmp, o->sha256, o->size, &meta,
                                                /* a session's UIDs are new: a duplicate is an error, never merged */
                                                o->kind == SAMDAD_ORIGIN_SESSION ? SAMDA_DUP_REJECT
                                                                                 : samdad_dup_policy(cfg),
                                                res, err);
    samda_config_unref(cfg);
    return st;

refused:
    unlink(path);
    samda_config_unref(cfg);
    return st;
}

static samda_status on_store(void *vctx, const samda_assoc_info *a, const samda_store_request *req,
                             samda_store_response *resp)
{
    samdad_ctx *ctx = vctx;
    assoc_user *u = a->user;
    samda_error err;
    samdad_ingest_origin o = {.kind = SAMDAD_ORIGIN_DIMSE,
                              .calling_ae = a->calling_ae,
                              .site = u ? u->site : NULL,
                              .association_id = u ? u->store_id : 0,
                              .sha256 = req->sha256,
                              .size = req->file_size};
    samda_ingest_result res;
    samda_status st = samdad_ingest_file(ctx, &o, req->path, req->header, &res, &err);
    resp->file_taken = true; /* samdad_ingest_file always consumes the file */
    if (u && st == SAMDA_OK && res.outcome == SAMDA_INGEST_IDENTICAL) u->n_identical++;
    if (u && st == SAMDA_OK && res.outcome == SAMDA_INGEST_REPLACED) u->n_replaced++;
    if (u && st == SAMDA_EEXIST) u->n_refused_duplicates++;
    if (st == SAMDA_OK) {
        if (samda_log_enabled(&ctx->log, SAMDA_LOG_DEBUG))
            samda_log(&ctx->log, SAMDA_LOG_DEBUG, "dicom", "instance stored",
                      "assoc=%llu instance=%lld outcome=%s bytes=%llu%s%s", (unsigned long long)a->id,
                      (long long)res.instance_id,
                      res.outcome == SAMDA_INGEST_NEW ? "new" : res.outcome == SAMDA_INGEST_IDENTICAL ? "identical"
                                                                                                     : "replaced",
                      (unsigned long long)req->file_size, ctx->log.log_uids ? " sop_uid=" : "",
                      ctx->log.log_uids ? req->header->sop_instance_uid : "");
    } else {
        char msg[SAMDA_ERROR_MESSAGE_SIZE];
        samda_log(&ctx->log, st == SAMDA_EEXIST ? SAMDA_LOG_WARN : SAMDA_LOG_ERROR, "dicom", "instance refused",
                  "assoc=%llu status=%04X error=%s", (unsigned long long)a->id, samda_status_dicom(st),
                  samda_log_quote((char[600]){0}, 600, samdad_scrub(ctx, err.message, msg, sizeof msg)));
        /* The whole cause: the SCP makes the 64-character Error Comment of it (paths and, when it
         * does not fit, UIDs left out; samda_scp_error_comment). */
        snprintf(resp->message, sizeof resp->message, "%s", err.message);
    }
    return st;
}

static void on_store_failed(void *vctx, const samda_assoc_info *a, const samda_store_failure *f)
{
    samdad_ctx *ctx = vctx;
    samda_log(&ctx->log, SAMDA_LOG_WARN, "dicom", "instance refused", "assoc=%llu status=%04X error=%s",
              (unsigned long long)a->id, f->dicom_status,
              samda_log_quote((char[600]){0}, 600, f->error ? f->error->message : ""));
}

static void on_association_end(void *vctx, const samda_assoc_info *a, samda_assoc_end how, unsigned n_stored,
                               unsigned n_failed)
{
    samdad_ctx *ctx = vctx;
    assoc_user *u = a->user;
    if (!u) return; /* rejected before on_association accepted it: logged and audited there */
    samda_assoc_state st = how == SAMDA_ASSOC_RELEASED ? SAMDA_ASSOC_STATE_RELEASED
                         : how == SAMDA_ASSOC_REJECTED ? SAMDA_ASSOC_STATE_REJECTED
                                                       : SAMDA_ASSOC_STATE_ABORTED;
    samda_error err;
    if (samda_store_assoc_end(samdad_store(ctx), u->store_id, st, &err) != SAMDA_OK)
        samda_log(&ctx->log, SAMDA_LOG_ERROR, "dicom", "cannot record end of association", "assoc=%llu error=%s",
                  (unsigned long long)a->id, samda_log_quote((char[600]){0}, 600, err.message));
    const char *outcome = how == SAMDA_ASSOC_RELEASED ? "ok"
                        : how == SAMDA_ASSOC_TIMED_OUT ? "timeout"
                        : how == SAMDA_ASSOC_REJECTED ? "rejected"
                                                      : "aborted";
    samda_log(&ctx->log, how == SAMDA_ASSOC_RELEASED ? SAMDA_LOG_INFO : SAMDA_LOG_WARN, "dicom", "association ended",
              "assoc=%llu outcome=%s stored=%u failed=%u", (unsigned long long)a->id, outcome, n_stored, n_failed);
    audit_association(ctx, a, u, u->site, outcome, NULL, n_stored, n_failed);
    free(u);
}

void samdad_ingest_bind(samdad_ctx *ctx, samda_scp_params *p)
{
    p->ctx = ctx;
    p->on_association = on_association;
    p->on_store = on_store;
    p->on_store_failed = on_store_failed;
    p->on_association_end = on_association_end;
    p->n_called_ae_titles = 0; /* checked in on_association, so that reloads apply */
}

samda_status samdad_sync_sites(samdad_ctx *ctx, samda_store *store, const samda_config *cfg, samda_error *err)
{
    (void)ctx;
    for (size_t i = 0; i < cfg->n_sites; i++) {
        const samda_site_cfg *s = &cfg->sites[i];
        json_t *ae = json_pack("{s:o, s:o}", "called_ae", samdad_strlist_json(&s->called_ae), "calling_ae",
                               samdad_strlist_json(&s->calling_ae));
        json_t *set = json_pack("{s:o, s:I, s:I, s:I, s:I, s:s, s:o}", "modalities", samdad_strlist_json(&s->modalities),
                                "min_slices", (json_int_t)s->min_slices, "series_idle_ms",
                                (json_int_t)s->series_idle_ms, "study_idle_ms", (json_int_t)s->study_idle_ms,
                                "max_wait_ms", (json_int_t)s->max_wait_ms, "tta",
                                s->tta == SAMDA_CFG_TTA_EPISODIC    ? "episodic"
                                : s->tta == SAMDA_CFG_TTA_CONTINUAL ? "continual"
                                                                    : "off",
                                "destinations", samdad_strlist_json(&s->destinations));
        char *ae_s = ae ? json_dumps(ae, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        char *set_s = set ? json_dumps(set, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        json_decref(ae);
        json_decref(set);
        if (!ae_s || !set_s) {
            free(ae_s);
            free(set_s);
            return samda_fail(err, SAMDA_ENOMEM, "syncing sites: out of memory");
        }
        samda_status st = samda_store_site_update(store, s->name, ae_s, set_s, err);
        if (st == SAMDA_ENOENT) st = samda_store_site_add(store, s->name, ae_s, set_s, NULL, err);
        free(ae_s);
        free(set_s);
        if (st != SAMDA_OK) {
            samda_error_prefix(err, "recording [site %s] in the index: ", s->name);
            return st;
        }
    }
    /* [destination] sections become export targets (updated in place: queued items keep theirs). */
    for (size_t i = 0; i < cfg->n_dests; i++) {
        const samda_dest_cfg *d = &cfg->dests[i];
        /* a STOW-RS destination: its URL's host and port, and no AE title (the exporter sends to
         * the url of the section as configured now) */
        samda_url u;
        bool stow = d->url && samda_url_parse(d->url, &u, NULL, 0);
        samda_status st = samda_store_destination_put(store, d->name, stow ? "STOW-RS" : d->ae_title, stow ? u.host : d->host,
                                                      stow ? (int)u.port : (int)d->port,
                                                      stow ? "{\"origin\":\"config\",\"kind\":\"stow-rs\"}"
                                                           : "{\"origin\":\"config\"}", NULL, err);
        if (st != SAMDA_OK) {
            samda_error_prefix(err, "%s:%d: recording [destination %s] in the index: ", cfg->source, d->line,
                               d->name);
            return st;
        }
    }
    return SAMDA_OK;
}
