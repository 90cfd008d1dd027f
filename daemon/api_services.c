/* The HTTP API's core for samdad: creates the state the route families share (api_core.h) and binds
 * each family's functions into the services table (api/api.h). */
#include "api_core.h"

#include <stdlib.h>
#include <string.h>

#include "services_internal.h"

samdad_api_core *samdad_api_core_new(samdad_ctx *ctx, samda_api_services *svc, samda_error *err)
{
    samdad_api_core *core = calloc(1, sizeof *core);
    if (!core) {
        samda_fail(err, SAMDA_ENOMEM, "starting the HTTP core: out of memory");
        return NULL;
    }
    core->ctx = ctx;
    pthread_mutex_init(&core->mu, NULL);
    pthread_mutex_init(&core->ml_mu, NULL);
    pthread_mutex_init(&core->overlay_mu, NULL);
    pthread_mutex_init(&core->watch_mu, NULL);
    pthread_cond_init(&core->watch_cv, NULL);
    core->defaults = samda_config_load(NULL, NULL, err);
    if (!core->defaults || samdad_overlay_start(core, err) != SAMDA_OK) {
        samdad_api_core_free(core);
        return NULL;
    }
    memset(svc, 0, sizeof *svc);
    svc->ctx = core;
    bool with_model = samdad_model_loaded(ctx);
    samdad_api_bind_ops(svc);
    samdad_api_bind_dicomweb(svc);
    samdad_api_bind_jobs(svc);
    samdad_api_bind_corrections(svc);
    samdad_api_bind_admin(svc, with_model);
    samdad_api_bind_sessions(svc, with_model);
    samdad_api_bind_retention(svc);
    samdad_api_bind_rules(svc);
    samdad_api_bind_monailabel(svc, with_model);
    samdad_api_bind_ml_sessions(svc);
    return core;
}

void samdad_api_core_free(samdad_api_core *core)
{
    if (!core) return;
    samdad_overlay_stop(core);
    samda_config_unref(core->base);
    samda_config_unref(core->installed);
    samda_config_unref(core->defaults);
    pthread_cond_destroy(&core->watch_cv);
    pthread_mutex_destroy(&core->watch_mu);
    pthread_mutex_destroy(&core->overlay_mu);
    samdad_api_stow_free(core);
    samdad_ml_sessions_free(core);
    pthread_mutex_destroy(&core->ml_mu);
    pthread_mutex_destroy(&core->mu);
    free(core);
}
