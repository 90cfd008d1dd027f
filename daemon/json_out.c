/* JSON views of jobs, series and results (see json_out.h). */
#include "json_out.h"

const char *samdad_series_state_name(samda_series_state st)
{
    switch (st) {
    case SAMDA_SERIES_RECEIVING: return "receiving";
    case SAMDA_SERIES_COMPLETE: return "complete";
    case SAMDA_SERIES_INCOMPLETE: return "incomplete";
    }
    return "unknown";
}

json_t *samdad_strlist_json(const samda_strlist *l)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < l->n; i++) json_array_append_new(a, json_string(l->v[i]));
    return a;
}

/* Embed stored JSON text as a value (kept as a string if it does not parse). */
static void set_json_text(json_t *o, const char *key, const char *text)
{
    if (!text) return;
    json_t *v = json_loads(text, 0, NULL);
    json_object_set_new(o, key, v ? v : json_string(text));
}

json_t *samdad_job_json(const samda_job *j)
{
    json_t *o = json_pack("{s:I, s:s, s:s, s:i, s:s, s:s, s:s, s:i, s:i, s:f, s:s, s:I, s:I, s:I}", "id",
                          (json_int_t)j->id, "kind", j->kind, "state", samda_job_state_name(j->state), "priority",
                          j->priority, "site", j->site, "study_uid", j->study_uid, "series_uid", j->series_uid,
                          "attempts", j->attempts, "max_attempts", j->max_attempts, "progress", j->progress,
                          "progress_message", j->progress_message, "created_ms", (json_int_t)j->created_ms,
                          "updated_ms", (json_int_t)j->updated_ms, "finished_ms", (json_int_t)j->finished_ms);
    if (!o) return NULL;
    if (j->content_hash[0]) json_object_set_new(o, "content_hash", json_string(j->content_hash));
    if (j->idempotency_key[0]) json_object_set_new(o, "transaction_id", json_string(j->idempotency_key));
    if (j->error) json_object_set_new(o, "error", json_string(j->error));
    set_json_text(o, "params", j->params_json);
    set_json_text(o, "result", j->result_json);
    return o;
}

json_t *samdad_series_json(const samda_series_info *s)
{
    return json_pack("{s:I, s:s, s:s, s:s, s:s, s:i, s:s, s:I, s:s, s:s, s:I, s:I}", "id", (json_int_t)s->id,
                     "study_uid", s->study_uid, "series_uid", s->series_uid, "modality", s->modality,
                     "series_description", s->series_description, "series_number", s->series_number, "site",
                     s->site, "instances", (json_int_t)s->n_instances, "state", samdad_series_state_name(s->state),
                     "reason", s->state_reason, "first_received_ms", (json_int_t)s->first_received_ms,
                     "last_received_ms", (json_int_t)s->last_received_ms);
}

json_t *samdad_result_json(const samda_result *r)
{
    json_t *o = json_pack("{s:I, s:I, s:s, s:s, s:s, s:s, s:i, s:I, s:I}", "id", (json_int_t)r->id, "job_id",
                          (json_int_t)r->job_id, "series_uid", r->series_uid, "seg_series_uid", r->seg_series_uid,
                          "seg_sop_uid", r->seg_sop_uid, "model_version", r->model_version, "adapter_version",
                          r->adapter_version, "size", (json_int_t)r->object.size, "created_ms",
                          (json_int_t)r->created_ms);
    if (!o) return NULL;
    set_json_text(o, "timings", r->timings_json);
    set_json_text(o, "labels", r->label_stats_json);
    return o;
}
