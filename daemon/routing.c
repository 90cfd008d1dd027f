/* Routing (routing.h): the [rule] sections evaluated on a completed series. */
#include "routing.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "json_out.h"
#include "route_expr.h"

/* A series' attributes as the expressions read them, with the storage the strings point into. */
typedef struct series_attrs {
    samda_route_attrs a;
    samda_series_acq acq;
    char study_description[SAMDA_LO_SIZE];
} series_attrs;

/* study_description: the study's, when the caller has read it already (the series of one study);
 * NULL: read it. */
static samda_status read_attrs(samda_store *store, const samda_series_info *se, const char *study_description,
                               series_attrs *out, samda_error *err)
{
    memset(out, 0, sizeof *out);
    samda_status st = samda_store_series_acquisition(store, se->series_uid, &out->acq, err);
    if (st == SAMDA_ENOENT) st = SAMDA_OK; /* no instance: the numbers stay absent */
    if (st != SAMDA_OK) return st;
    if (study_description) {
        snprintf(out->study_description, sizeof out->study_description, "%s", study_description);
    } else {
        samda_study_info study;
        st = samda_store_study_get(store, se->study_uid, &study, err);
        if (st == SAMDA_OK) snprintf(out->study_description, sizeof out->study_description, "%s", study.study_description);
        else if (st != SAMDA_ENOENT) return st;
    }
    samda_route_attrs *a = &out->a;
    a->modality = se->modality;
    a->body_part = se->body_part;
    a->series_description = se->series_description;
    a->study_description = out->study_description;
    a->calling_ae = out->acq.calling_ae;
    a->called_ae = out->acq.called_ae;
    a->has_slice_thickness = out->acq.has_slice_thickness;
    a->slice_thickness = out->acq.slice_thickness;
    a->has_rows = out->acq.has_rows;
    a->rows = out->acq.rows;
    a->has_columns = out->acq.has_columns;
    a->columns = out->acq.columns;
    a->has_series_number = se->series_number != 0;
    a->series_number = se->series_number;
    a->instances = se->n_instances;
    return SAMDA_OK;
}

static json_t *attrs_json(const samda_route_attrs *a)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:I}", "Modality", a->modality, "BodyPartExamined",
                          a->body_part, "SeriesDescription", a->series_description, "StudyDescription",
                          a->study_description, "CallingAETitle", a->calling_ae, "CalledAETitle", a->called_ae,
                          "NumberOfSeriesRelatedInstances", (json_int_t)a->instances);
    if (!o) return NULL;
    if (a->has_slice_thickness) json_object_set_new(o, "SliceThickness", json_real(a->slice_thickness));
    if (a->has_rows) json_object_set_new(o, "Rows", json_integer(a->rows));
    if (a->has_columns) json_object_set_new(o, "Columns", json_integer(a->columns));
    if (a->has_series_number) json_object_set_new(o, "SeriesNumber", json_integer(a->series_number));
    return o;
}

static void trace_to_json(void *ctx, const char *test, const char *value, bool result)
{
    json_array_append_new((json_t *)ctx, json_pack("{s:s, s:s, s:b}", "test", test, "value", value, "result", result));
}

/* Evaluate one expression text (parsed at load, so parsing cannot fail here but for memory). */
static bool eval_text(const char *text, const samda_route_attrs *a, json_t *trace)
{
    samda_route_expr *e = samda_route_expr_parse(text, NULL, 0);
    if (!e) return false;
    bool r = samda_route_expr_eval(e, a, trace ? trace_to_json : NULL, trace);
    samda_route_expr_free(e);
    return r;
}

static bool list_has(const samda_strlist *l, const char *s)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcasecmp(l->v[i], s) == 0) return true;
    return false;
}

/* The site's own selection (no rule): modalities and min_slices. */
static bool site_selects(const samda_site_cfg *site, const samda_series_info *se, char *reason, size_t size)
{
    if (!list_has(&site->modalities, se->modality)) {
        char mods[128] = "";
        size_t k = 0;
        for (size_t i = 0; i < site->modalities.n && k < sizeof mods; i++)
            k += (size_t)snprintf(mods + k, sizeof mods - k, "%s%s", i ? "," : "", site->modalities.v[i]);
        snprintf(reason, size, "not selected: modality '%s' not in [site %s] modalities (%s)", se->modality,
                 site->name, mods);
        return false;
    }
    if (se->n_instances < site->min_slices) {
        snprintf(reason, size, "not selected: %lld instances, [site %s] min_slices is %lld", (long long)se->n_instances,
                 site->name, (long long)site->min_slices);
        return false;
    }
    return true;
}

/* Does the study have, for each of the rule's requirements, a complete series that meets it?
 * missing gets the first one that none meets. */
static samda_status requirements_met(samda_store *store, const samda_rule_cfg *r, const samda_series_info *se,
                                     const series_attrs *self, json_t *explain, bool *met, char *missing,
                                     size_t missing_size, samda_error *err)
{
    *met = true;
    missing[0] = 0;
    if (!r->requires) return SAMDA_OK;
    samda_series_info *sib = NULL;
    size_t n_sib = 0;
    samda_status st = samda_store_series_list(store, se->study_uid, &sib, &n_sib, err);
    if (st != SAMDA_OK) return st;
    series_attrs *attrs = calloc(n_sib ? n_sib : 1, sizeof *attrs);
    bool *usable = calloc(n_sib ? n_sib : 1, sizeof *usable);
    if (!attrs || !usable) {
        st = samda_fail(err, SAMDA_ENOMEM, "routing: out of memory for %zu series", n_sib);
        goto done;
    }
    for (size_t i = 0; i < n_sib; i++) {
        bool is_self = strcmp(sib[i].series_uid, se->series_uid) == 0;
        if (!is_self && sib[i].state != SAMDA_SERIES_COMPLETE) continue;
        if (is_self) attrs[i] = *self; /* its strings point into self and se, both alive for this call */
        else if ((st = read_attrs(store, &sib[i], self->study_description, &attrs[i], err)) != SAMDA_OK) goto done;
        usable[i] = true;
    }
    samda_route_part parts[SAMDA_ROUTE_MAX_PARTS];
    size_t np = samda_route_expr_split(r->requires, parts, SAMDA_ROUTE_MAX_PARTS);
    if (np > SAMDA_ROUTE_MAX_PARTS) np = SAMDA_ROUTE_MAX_PARTS;
    json_t *reqs = explain ? json_array() : NULL;
    for (size_t p = 0; p < np; p++) {
        char text[1024];
        snprintf(text, sizeof text, "%.*s", (int)parts[p].len, r->requires + parts[p].start);
        samda_route_expr *e = samda_route_expr_parse(text, NULL, 0); /* checked at load */
        const char *by = NULL;
        for (size_t i = 0; e && i < n_sib && !by; i++)
            if (usable[i] && samda_route_expr_eval(e, &attrs[i].a, NULL, NULL)) by = sib[i].series_uid;
        samda_route_expr_free(e);
        if (reqs) json_array_append_new(reqs, json_pack("{s:s, s:b, s:s?}", "expression", text, "met", by != NULL,
                                                        "series_uid", by));
        if (!by && *met) {
            *met = false;
            size_t k = strnlen(text, missing_size - 1); /* cut: it is a message */
            memcpy(missing, text, k);
            missing[k] = 0;
        }
    }
    if (reqs) json_object_set_new(explain, "requires", reqs);
done:
    free(attrs);
    free(usable);
    samda_store_free(sib);
    return st;
}

static int priority_of(const samda_rule_cfg *r)
{
    switch (r->priority) {
    case SAMDA_CFG_PRIORITY_URGENT: return SAMDAD_PRIORITY_URGENT;
    case SAMDA_CFG_PRIORITY_OFF_PEAK: return SAMDAD_PRIORITY_OFF_PEAK;
    default: return SAMDAD_PRIORITY_NORMAL;
    }
}

static const char *priority_name(int p)
{
    return p == SAMDAD_PRIORITY_URGENT ? "urgent" : p == SAMDAD_PRIORITY_OFF_PEAK ? "off-peak" : "normal";
}

samda_status samdad_route_series(samda_store *store, const samda_config *cfg, const samda_series_info *se,
                                 int64_t held_since_ms, int64_t now_ms, json_t *explain, samdad_route *out,
                                 samda_error *err)
{
    memset(out, 0, sizeof *out);
    const samda_site_cfg *own = samda_config_site(cfg, se->site[0] ? se->site : "default");
    if (!own) own = samda_config_site(cfg, "default");
    if (!own) return samda_fail(err, SAMDA_EINVAL, "routing: the configuration has no [site default]");
    series_attrs attrs;
    samda_status st = read_attrs(store, se, NULL, &attrs, err);
    if (st != SAMDA_OK) return st;
    json_t *rules_js = NULL;
    if (explain) {
        json_object_set_new(explain, "series_uid", json_string(se->series_uid));
        json_object_set_new(explain, "study_uid", json_string(se->study_uid));
        json_object_set_new(explain, "site", json_string(own->name));
        json_object_set_new(explain, "attributes", attrs_json(&attrs.a));
        json_object_set_new(explain, "mode", json_string(cfg->route_mode == SAMDA_CFG_ROUTE_ALL ? "all" : "first"));
        json_object_set_new(explain, "rules", rules_js = json_array());
    }

    size_t matched = 0;
    char expired[400] = "";
    for (size_t i = 0; i < cfg->n_rules; i++) {
        const samda_rule_cfg *r = &cfg->rules[i];
        bool stop = matched > 0 && cfg->route_mode == SAMDA_CFG_ROUTE_FIRST;
        json_t *rj = NULL, *tests = NULL;
        if (rules_js) {
            rj = json_pack("{s:s, s:s}", "name", r->name, "match", r->match);
            json_object_set_new(rj, "tests", tests = json_array());
            json_array_append_new(rules_js, rj);
        }
        if (stop) {
            if (rj) json_object_set_new(rj, "evaluated", json_false());
            continue;
        }
        bool hit = eval_text(r->match, &attrs.a, tests);
        if (rj) json_object_set_new(rj, "matched", json_boolean(hit));
        if (!hit) continue;
        matched++;
        const samda_site_cfg *site = r->site ? samda_config_site(cfg, r->site) : own;
        if (!site) site = own; /* a reload removed it: checked at load, so only in a race */
        bool met = true;
        char missing[200];
        st = requirements_met(store, r, se, &attrs, rj, &met, missing, sizeof missing, err);
        if (st != SAMDA_OK) return st;
        if (!met && held_since_ms > 0 && now_ms - held_since_ms >= r->requires_timeout_ms) {
            snprintf(expired, sizeof expired, "rule %s: %s never arrived within requires_timeout", r->name, missing);
            if (rj) json_object_set_new(rj, "expired", json_true());
            continue;
        }
        if (!samda_modality_is_segmentable(se->modality)) {
            snprintf(out->reason, sizeof out->reason, "not selected: rule %s matches, but samda cannot segment "
                     "modality '%s' (CT, MR)", r->name, se->modality);
            continue;
        }
        if (out->n >= SAMDAD_ROUTE_MAX_ACTIONS) break;
        samdad_route_action *a = &out->act[out->n++];
        a->rule = r;
        a->site = site;
        a->priority = priority_of(r);
        a->waiting = !met;
        if (!met) snprintf(a->missing, sizeof a->missing, "%s", missing);
    }

    if (matched == 0) {
        if (cfg->n_rules > 0 && cfg->route_unmatched == SAMDA_CFG_UNMATCHED_SKIP) {
            snprintf(out->reason, sizeof out->reason, "not selected: no [rule] matches ([routing] unmatched = skip)");
        } else if (site_selects(own, se, out->reason, sizeof out->reason)) {
            out->act[0] = (samdad_route_action){.rule = NULL, .site = own, .priority = SAMDAD_PRIORITY_NORMAL};
            out->n = 1;
            snprintf(out->reason, sizeof out->reason, "%s", cfg->n_rules ? "no rule matches: [site] selection" : "");
        }
    } else if (out->n == 0 && expired[0]) {
        snprintf(out->reason, sizeof out->reason, "not selected: %.230s", expired);
    } else if (out->n > 0) {
        size_t k = (size_t)snprintf(out->reason, sizeof out->reason, "rule%s ", out->n > 1 ? "s" : "");
        for (size_t i = 0; i < out->n && k < sizeof out->reason; i++)
            k += (size_t)snprintf(out->reason + k, sizeof out->reason - k, "%s%s%s", i ? ", " : "",
                                  out->act[i].rule->name, out->act[i].waiting ? " (waiting)" : "");
    }
    if (explain) {
        json_t *d = json_array();
        for (size_t i = 0; i < out->n; i++) {
            const samdad_route_action *a = &out->act[i];
            json_t *o = json_pack("{s:s?, s:s, s:s, s:b}", "rule", a->rule ? a->rule->name : NULL, "site",
                                  a->site->name, "priority", priority_name(a->priority), "waiting", a->waiting);
            if (a->waiting) json_object_set_new(o, "missing", json_string(a->missing));
            const samda_strlist *outs = a->rule && a->rule->outputs.n ? &a->rule->outputs : &a->site->outputs;
            const samda_strlist *dests = a->rule && a->rule->destinations.n ? &a->rule->destinations
                                                                            : &a->site->destinations;
            json_object_set_new(o, "outputs", samdad_strlist_json(outs));
            json_object_set_new(o, "destinations", samdad_strlist_json(dests));
            if (a->rule && a->rule->labels.n) json_object_set_new(o, "labels", samdad_strlist_json(&a->rule->labels));
            json_array_append_new(d, o);
        }
        json_object_set_new(explain, "jobs", d);
        json_object_set_new(explain, "reason", json_string(out->reason));
    }
    return SAMDA_OK;
}

char *samdad_route_params(const samdad_route_action *a)
{
    if (!a->rule) return NULL;
    const samda_rule_cfg *r = a->rule;
    json_t *o = json_pack("{s:s}", "rule", r->name);
    if (!o) return NULL;
    if (r->labels.n) json_object_set_new(o, "labels", samdad_strlist_json(&r->labels));
    if (r->outputs.n) json_object_set_new(o, "outputs", samdad_strlist_json(&r->outputs));
    if (r->destinations.n) json_object_set_new(o, "destinations", samdad_strlist_json(&r->destinations));
    char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    return s;
}

bool samdad_off_peak_open(const samda_config *cfg, int64_t now_ms)
{
    int a, b;
    if (!samda_parse_window(cfg->route_off_peak, &a, &b)) return true;
    if (a == b) return true;
    time_t t = (time_t)(now_ms / 1000);
    struct tm tm;
    if (!localtime_r(&t, &tm)) return true;
    int m = tm.tm_hour * 60 + tm.tm_min;
    return a < b ? (m >= a && m < b) : (m >= a || m < b);
}
