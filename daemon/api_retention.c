/* daemon/api_retention.c: the HTTP services that delete (api/api.h: study_delete, retention_run):
 * DELETE /api/v1/studies/{study}[/series/{series}] and POST /api/v1/retention/run, over
 * retention.c. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "api_core.h"
#include "retention.h"
#include "services_internal.h"

#define CORE(v) ((samdad_api_core *)(v))

static void actor_of(int64_t token_id, char actor[48])
{
    if (token_id >= 0) snprintf(actor, 48, "token:%lld", (long long)token_id);
    else snprintf(actor, 48, "anonymous");
}

static samda_status study_delete(void *v, const char *study, const char *series, int64_t token_id, json_t **report,
                                 samda_error *err)
{
    samdad_ctx *ctx = CORE(v)->ctx;
    if (series) { /* the series must be the study's: a URL naming another study deletes nothing */
        samda_series_info si;
        samda_status st = samda_store_series_get(samdad_store(ctx), series, &si, err);
        if (st == SAMDA_ENOENT || (st == SAMDA_OK && strcmp(si.study_uid, study) != 0))
            return samda_fail(err, SAMDA_ENOENT, "series %s is not in the index under study %s", series, study);
        if (st != SAMDA_OK) return st;
    }
    char actor[48];
    actor_of(token_id, actor);
    samda_purge_report rep = {0};
    samda_status st = samdad_delete(ctx, actor, study, series, &rep, err);
    if (st != SAMDA_OK) return st;
    *report = json_pack("{s:{s:I, s:I, s:I, s:I}}", "deleted", "series", (json_int_t)rep.n_series, "instances",
                        (json_int_t)rep.n_instances, "results", (json_int_t)rep.n_results, "bytes", (json_int_t)rep.bytes);
    return *report ? SAMDA_OK : samda_fail(err, SAMDA_ENOMEM, "deleting: out of memory");
}

static samda_status retention_run(void *v, int64_t token_id, json_t **report, samda_error *err)
{
    (void)token_id; /* the route is audited; the deletions are audited as "retention" */
    samdad_ctx *ctx = CORE(v)->ctx;
    return samdad_retention_pass(ctx, samda_store_now_ms(samdad_store(ctx)), report, err);
}

void samdad_api_bind_retention(samda_api_services *svc)
{
    svc->study_delete = study_delete;
    svc->retention_run = retention_run;
}
