/* The daemon's context (context.h): its configuration snapshot, swapped whole on reload. Part of the
 * daemon core library, so that every daemon unit (and its unit tests) can build one. */
#include "context.h"

samda_config *samdad_config_get(samdad_ctx *ctx)
{
    pthread_mutex_lock(&ctx->cfg_mu);
    samda_config *c = samda_config_ref(ctx->cfg);
    pthread_mutex_unlock(&ctx->cfg_mu);
    return c;
}

void samdad_config_set(samdad_ctx *ctx, samda_config *c)
{
    pthread_mutex_lock(&ctx->cfg_mu);
    samda_config *old = ctx->cfg;
    ctx->cfg = c;
    pthread_mutex_unlock(&ctx->cfg_mu);
    samda_config_unref(old);
}
