/* Interactive sessions in the model worker: HTTP handler threads queue calls (create, predict,
 * delete) and wait; the interactive lane runs them as they come (worker_serve_calls). The
 * embeddings stay here: 64 sessions, least recently used dropped, 30 minutes to live. */
#include "worker_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "random.h"

/* ---- interactive calls ------------------------------------------------------------------------ */

static session *session_find(samdad_worker *w, const char *id)
{
    double now = worker_now_s();
    for (int i = 0; i < MAX_SESSIONS; i++) {
        session *x = &w->sessions[i];
        if (!x->id[0]) continue;
        if (now - x->used > SESSION_TTL_S) { /* expired */
            samda_embedding_release(x->emb);
            free(x->prev);
            memset(x, 0, sizeof *x);
            continue;
        }
        if (!strcmp(x->id, id)) return x;
    }
    return NULL;
}

void worker_session_drop(session *x)
{
    samda_embedding_release(x->emb);
    free(x->prev);
    memset(x, 0, sizeof *x);
}

static samda_status random_id(char id[SAMDAD_SESSION_ID_SIZE], samda_error *err)
{
    samda_status st = samda_random_hex(id, SAMDAD_SESSION_ID_SIZE, 16, err);
    if (st != SAMDA_OK) samda_error_prefix(err, "making a session id: ");
    return st;
}

static void do_create(samdad_worker *w, call *c)
{
    session *slot = NULL;
    session_find(w, ""); /* expire old ones */
    for (int i = 0; i < MAX_SESSIONS && !slot; i++)
        if (!w->sessions[i].id[0]) slot = &w->sessions[i];
    if (!slot) { /* least recently used */
        slot = &w->sessions[0];
        for (int i = 1; i < MAX_SESSIONS; i++)
            if (w->sessions[i].used < slot->used) slot = &w->sessions[i];
        worker_session_drop(slot);
    }
    samda_model_image im = {c->pixels, c->rows, c->cols, 1, SAMDA_MODEL_PIXEL_F32};
    samda_model_encode_item it = {.image = &im};
    samda_embedding *e = NULL;
    if ((c->st = samda_model_encode(w->model, &it, 1, &e, &c->err)) != SAMDA_OK) return;
    if ((c->st = random_id(slot->id, &c->err)) != SAMDA_OK) {
        samda_embedding_release(e);
        slot->id[0] = 0;
        return;
    }
    slot->emb = e;
    slot->rows = c->rows;
    slot->cols = c->cols;
    slot->used = worker_now_s();
    snprintf(slot->site, sizeof slot->site, "%s", c->site ? c->site : "");
    memcpy(c->id, slot->id, SAMDAD_SESSION_ID_SIZE);
}

static void do_predict(samdad_worker *w, call *c)
{
    session *x = session_find(w, c->id);
    if (!x) {
        c->st = samda_fail(&c->err, SAMDA_ENOENT, "unknown or expired session %s", c->id);
        return;
    }
    x->used = worker_now_s();
    const samdad_prompt *p = c->prompt;
    int lr = w->info.low_res_size;
    int nm = p->multimask ? w->info.n_multimask : 1;
    size_t plane = (size_t)x->rows * x->cols;
    uint8_t *masks = malloc((size_t)nm * plane);
    float *low = malloc((size_t)nm * lr * lr * sizeof *low);
    float iou[8] = {0};
    if (!masks || !low) {
        free(masks);
        free(low);
        c->st = samda_fail(&c->err, SAMDA_ENOMEM, "out of memory");
        return;
    }
    samda_model_prompt mp = {0};
    float pts[64 * 2];
    for (size_t i = 0; i < p->n_points; i++) {
        pts[2 * i] = p->points[i][0];
        pts[2 * i + 1] = p->points[i][1];
    }
    mp.points = p->n_points ? pts : NULL;
    mp.point_labels = p->n_points ? p->labels : NULL;
    mp.n_points = p->n_points;
    mp.box = p->has_box ? p->box : NULL;
    mp.mask_input = p->use_previous ? x->prev : NULL;
    samda_model_decode_out o = {low, (size_t)nm * lr * lr, iou, (size_t)nm, NULL, 0, masks, (size_t)nm * plane};
    unsigned flags = p->multimask ? SAMDA_MODEL_DECODE_MULTIMASK : 0;
    double t = worker_now_s();
    adapter_choice ch;
    samda_config *cfg = samdad_config_get(w->ctx);
    samda_error e2;
    bool with_adapter = x->site[0] && worker_choose_adapter(&w->ia, cfg, x->site, 0, &ch, &e2) == SAMDA_OK;
    samda_config_unref(cfg);
    c->st = with_adapter ? samda_adapter_decode(w->model, ch.a, x->emb, &mp, 1, flags, -1, &o, &c->err)
                         : samda_model_decode(w->model, x->emb, &mp, 1, flags, &o, &c->err);
    if (c->st != SAMDA_OK) {
        free(masks);
        free(low);
        return;
    }
    int best = 0;
    for (int i = 1; i < nm; i++)
        if (iou[i] > iou[best]) best = i;
    samdad_prediction *r = c->pred;
    r->rows = x->rows;
    r->cols = x->cols;
    r->n_masks = nm;
    r->best = best;
    for (int i = 0; i < nm && i < 3; i++) r->iou[i] = iou[i];
    r->mask = malloc(plane);
    if (!r->mask) {
        free(masks);
        free(low);
        c->st = samda_fail(&c->err, SAMDA_ENOMEM, "out of memory");
        return;
    }
    memcpy(r->mask, masks + (size_t)best * plane, plane);
    free(x->prev);
    x->prev = malloc((size_t)lr * lr * sizeof *x->prev);
    if (x->prev) memcpy(x->prev, low + (size_t)best * lr * lr, (size_t)lr * lr * sizeof *x->prev);
    r->decode_ms = (worker_now_s() - t) * 1000.0;
    samdad_hist_record(&w->h_predict, worker_now_s() - t);
    free(masks);
    free(low);
}

/* Run every queued interactive call (interactive lane only). */
void worker_serve_calls(samdad_worker *w)
{
    pthread_mutex_lock(&w->ia.loop.mu);
    while (w->calls) {
        call *c = w->calls;
        w->calls = c->next;
        c->state = CALL_RUNNING;
        pthread_mutex_unlock(&w->ia.loop.mu);
        c->st = SAMDA_OK;
        if (c->op == CALL_CREATE) do_create(w, c);
        else if (c->op == CALL_PREDICT) do_predict(w, c);
        else {
            session *x = session_find(w, c->id);
            if (x) worker_session_drop(x);
            else c->st = samda_fail(&c->err, SAMDA_ENOENT, "unknown or expired session %s", c->id);
        }
        pthread_mutex_lock(&w->ia.loop.mu);
        c->state = CALL_DONE;
        pthread_cond_broadcast(&w->done_cv);
    }
    pthread_mutex_unlock(&w->ia.loop.mu);
}

/* Queue a call and wait: withdrawn with SAMDA_EBUSY if not taken within wait_ms. */
static samda_status submit(samdad_worker *w, call *c, unsigned wait_ms, samda_error *err)
{
    if (!w) return samda_fail(err, SAMDA_EMODEL, "no model loaded");
    c->state = CALL_QUEUED;
    c->next = NULL;
    memset(&c->err, 0, sizeof c->err);
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += wait_ms / 1000;
    until.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&w->ia.loop.mu);
    if (w->ia.loop.stop) {
        pthread_mutex_unlock(&w->ia.loop.mu);
        return samda_fail(err, SAMDA_EBUSY, "the model worker is stopping");
    }
    call **tail = &w->calls;
    while (*tail) tail = &(*tail)->next;
    *tail = c;
    w->ia.loop.kicked = true;
    pthread_cond_signal(&w->ia.loop.cv);
    while (c->state != CALL_DONE) {
        if (c->state == CALL_QUEUED && pthread_cond_timedwait(&w->done_cv, &w->ia.loop.mu, &until) != 0 &&
            c->state == CALL_QUEUED) {
            for (call **pp = &w->calls; *pp; pp = &(*pp)->next)
                if (*pp == c) {
                    *pp = c->next;
                    break;
                }
            pthread_mutex_unlock(&w->ia.loop.mu);
            return samda_fail(err, SAMDA_EBUSY, "the model worker is busy with a long step (training?) and did not take "
                              "the request within %u ms: try again", wait_ms);
        }
        if (c->state == CALL_RUNNING) pthread_cond_wait(&w->done_cv, &w->ia.loop.mu);
    }
    pthread_mutex_unlock(&w->ia.loop.mu);
    if (c->st != SAMDA_OK && err) *err = c->err;
    return c->st;
}

samda_status samdad_worker_session_create(samdad_worker *w, const char *site, const float *pixels, int rows, int cols,
                                          unsigned wait_ms, char id[SAMDAD_SESSION_ID_SIZE], samda_error *err)
{
    if (!pixels || rows < 1 || cols < 1 || rows > 16384 || cols > 16384)
        return samda_fail(err, SAMDA_EINVAL, "session image must be 1..16384 pixels each way");
    call c = {.op = CALL_CREATE, .site = site, .pixels = pixels, .rows = rows, .cols = cols, .id = id};
    return submit(w, &c, wait_ms, err);
}

samda_status samdad_worker_session_predict(samdad_worker *w, const char *id, const samdad_prompt *p, unsigned wait_ms,
                                           samdad_prediction *out, samda_error *err)
{
    memset(out, 0, sizeof *out);
    if (!p || (p->n_points == 0 && !p->has_box && !p->use_previous))
        return samda_fail(err, SAMDA_EINVAL, "a prediction needs points, a box or the previous mask");
    if (p->n_points > 64) return samda_fail(err, SAMDA_EINVAL, "at most 64 points");
    char idc[SAMDAD_SESSION_ID_SIZE];
    snprintf(idc, sizeof idc, "%s", id);
    call c = {.op = CALL_PREDICT, .id = idc, .prompt = p, .pred = out};
    return submit(w, &c, wait_ms, err);
}

samda_status samdad_worker_session_delete(samdad_worker *w, const char *id, unsigned wait_ms, samda_error *err)
{
    char idc[SAMDAD_SESSION_ID_SIZE];
    snprintf(idc, sizeof idc, "%s", id);
    call c = {.op = CALL_DELETE, .id = idc};
    return submit(w, &c, wait_ms, err);
}
