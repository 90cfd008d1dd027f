/* Routing: what a completed series becomes. The [rule] sections (config.h, route_expr.h) are
 * evaluated in file order on the series' indexed attributes; [routing] mode says whether the first
 * matching rule acts or every one. Each acting rule chooses the site (adapter), labels, outputs,
 * destinations and priority of one segmentation job; a rule with `requires` holds the series until
 * its study has the series it names. A series no rule matches falls back to its site's modalities
 * and min_slices ([routing] unmatched = site) or is skipped. With no rule at all, the site decides,
 * as it always did.
 *
 * One decision function serves the scheduler (at completion, and for held series at each tick)
 * and POST /api/v1/rules/test (which asks it to explain itself).
 *
 * Thread-safety: every function is reentrant; the configuration is read-only. */
#ifndef SAMDA_DAEMON_ROUTING_H
#define SAMDA_DAEMON_ROUTING_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "storage.h"

/* Job priorities (higher first): on-demand requests take 10 (api_jobs.c), adapter training 5. */
#define SAMDAD_PRIORITY_URGENT 8
#define SAMDAD_PRIORITY_NORMAL 0
#define SAMDAD_PRIORITY_OFF_PEAK (-10)

#define SAMDAD_ROUTE_MAX_ACTIONS 16

/* One job a decision asks for (or one rule still waiting). */
typedef struct samdad_route_action {
    const samda_rule_cfg *rule;   /* NULL: the site's own selection, no rule */
    const samda_site_cfg *site;   /* the site that segments */
    int priority;                 /* SAMDAD_PRIORITY_* */
    bool waiting;                 /* requires not met yet: hold the series */
    char missing[200];            /* when waiting: the first requirement no series of the study meets */
} samdad_route_action;

typedef struct samdad_route {
    samdad_route_action act[SAMDAD_ROUTE_MAX_ACTIONS];
    size_t n;                     /* actions, waiting ones included */
    char reason[256];             /* one line: why (not) selected, for the series' state reason ("" when
                                     the site's own selection took it and there are no rules) */
} samdad_route;

/** Decide what series se (complete, its instances indexed) becomes under cfg. held_since_ms: when a
 *  rule began to hold it (0: not held); a waiting rule whose requires_timeout has passed since
 *  then is dropped, its reason recorded. explain (may be NULL) gets the attributes read, each rule's
 *  tests with the values they saw and results, the requirements and the decision.
 *  @return SAMDA_OK; the store's errors (reading the series, its study or its siblings). */
samda_status samdad_route_series(samda_store *store, const samda_config *cfg, const samda_series_info *se,
                                 int64_t held_since_ms, int64_t now_ms, json_t *explain, samdad_route *out,
                                 samda_error *err);

/** The job parameters of an action (its rule's labels, outputs, destinations, the rule's name), as
 *  JSON text; NULL when the action has none (no rule). Caller frees. */
char *samdad_route_params(const samdad_route_action *a);

/** Whether off-peak work may start now: local time inside cfg's [routing] off_peak window. */
bool samdad_off_peak_open(const samda_config *cfg, int64_t now_ms);

#endif
