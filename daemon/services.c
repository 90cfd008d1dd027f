/* Composition of samdad's subsystems. The leaf modules (storage, dicom, model, api) know nothing
 * of each other; this file wires them together and owns their handles. */
#include "services.h"

#include <stdio.h>
#include <stdlib.h>

struct samdad_services {
    int started;
};

samda_status samdad_services_start(samdad_ctx *ctx, samda_error *err)
{
    (void)err;
    ctx->svc = calloc(1, sizeof *ctx->svc);
    if (!ctx->svc) return samda_fail(err, SAMDA_ENOMEM, "starting services: out of memory");
    samda_config *cfg = samdad_config_get(ctx);
    if (!cfg->model_checkpoint)
        samda_log(&ctx->log, SAMDA_LOG_WARN, "model", "no model configured: segmentation jobs stay pending",
                  "hint=\"set [model] checkpoint, or build the demo model\"");
    samda_config_unref(cfg);
    ctx->svc->started = 1;
    return SAMDA_OK;
}

void samdad_services_reload(samdad_ctx *ctx) { (void)ctx; }

void samdad_services_stop(samdad_ctx *ctx)
{
    if (!ctx->svc) return;
    free(ctx->svc);
    ctx->svc = NULL;
}

void samdad_services_status(samdad_ctx *ctx, char *buf, unsigned size)
{
    samda_config *cfg = samdad_config_get(ctx);
    snprintf(buf, size, "running data_dir=%s", cfg->data_dir);
    samda_config_unref(cfg);
}
