/* daemon/api_rules.c: the routing rules over HTTP (api/api.h: rules_list, rules_test):
 * GET /api/v1/rules and POST /api/v1/rules/test, over routing.c. The tester runs the scheduler's
 * own decision on a stored series and queues nothing. */
#include <stdio.h>
#include <string.h>

#include "api_core.h"
#include "dicom_rules.h"
#include "json_out.h"
#include "routing.h"
#include "services_internal.h"

#define CORE(v) ((samdad_api_core *)(v))

static const char *const priority_names[] = {"normal", "urgent", "off-peak"};

static samda_status rules_list(void *v, json_t **out, samda_error *err)
{
    samda_config *cfg = samdad_config_get(CORE(v)->ctx);
    json_t *rules = json_array();
    for (size_t i = 0; rules && i < cfg->n_rules; i++) {
        const samda_rule_cfg *r = &cfg->rules[i];
        json_t *o = json_pack("{s:s, s:s, s:s?, s:o, s:o, s:o, s:s, s:s?, s:I}", "name", r->name, "match", r->match,
                              "site", r->site, "labels", samdad_strlist_json(&r->labels), "outputs", samdad_strlist_json(&r->outputs),
                              "destinations", samdad_strlist_json(&r->destinations), "priority",
                              priority_names[r->priority >= 0 && r->priority <= 2 ? r->priority : 0], "requires",
                              r->requires, "requires_timeout_s", (json_int_t)(r->requires_timeout_ms / 1000));
        json_array_append_new(rules, o);
    }
    *out = json_pack("{s:s, s:s, s:s, s:b, s:o}", "mode", cfg->route_mode == SAMDA_CFG_ROUTE_ALL ? "all" : "first",
                     "unmatched", cfg->route_unmatched == SAMDA_CFG_UNMATCHED_SKIP ? "skip" : "site", "off_peak",
                     cfg->route_off_peak, "off_peak_open",
                     samdad_off_peak_open(cfg, samda_store_now_ms(samdad_store(CORE(v)->ctx))), "rules", rules);
    samda_config_unref(cfg);
    return *out ? SAMDA_OK : samda_fail(err, SAMDA_ENOMEM, "listing rules: out of memory");
}

static samda_status rules_test(void *v, const json_t *body, json_t **report, samda_error *err)
{
    samdad_ctx *ctx = CORE(v)->ctx;
    const char *uid = json_string_value(json_object_get(body, "series_uid"));
    if (!json_is_object(body) || json_object_size(body) != 1 || !uid)
        return samda_fail(err, SAMDA_EINVAL, "the body must be {\"series_uid\": \"<SeriesInstanceUID>\"} and nothing else");
    if (!samda_uid_is_valid(uid)) return samda_fail(err, SAMDA_EINVAL, "series_uid is not a valid UID");
    samda_store *store = samdad_store(ctx);
    samda_series_info se;
    samda_status st = samda_store_series_get(store, uid, &se, err);
    if (st == SAMDA_ENOENT) return samda_fail(err, SAMDA_ENOENT, "series %s is not in the index", uid);
    if (st != SAMDA_OK) return st;
    json_t *out = json_object();
    if (!out) return samda_fail(err, SAMDA_ENOMEM, "testing rules: out of memory");
    samda_config *cfg = samdad_config_get(ctx);
    samdad_route route;
    st = samdad_route_series(store, cfg, &se, 0, samda_store_now_ms(store), out, &route, err);
    samda_config_unref(cfg);
    if (st != SAMDA_OK) {
        json_decref(out);
        return st;
    }
    json_object_set_new(out, "state", json_string(samdad_series_state_name(se.state)));
    *report = out;
    return SAMDA_OK;
}

void samdad_api_bind_rules(samda_api_services *svc)
{
    svc->rules_list = rules_list;
    svc->rules_test = rules_test;
}
