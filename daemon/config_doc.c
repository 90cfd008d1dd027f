/* The configuration's documentation, generated from the table (config_table.c): the example
 * file (`samdad --print-config-example`, kept in step with deploy/samdad.conf.example by a unit
 * test) and the effective configuration with sensitive values hidden. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "config_internal.h"

static void write_wrapped_doc(FILE *f, const char *doc)
{
    /* wrap at ~96 columns, prefixed "# " */
    const char *p = doc;
    while (*p) {
        size_t len = strlen(p);
        size_t take = len;
        if (len > 94) {
            take = 94;
            while (take > 0 && p[take] != ' ') take--;
            if (take == 0) take = 94;
        }
        fprintf(f, "# %.*s\n", (int)take, p);
        p += take;
        while (*p == ' ') p++;
    }
}

static void write_opt_doc(FILE *f, const opt *o)
{
    write_wrapped_doc(f, o->doc);
    char extra[160] = "";
    if (o->type == T_INT) snprintf(extra, sizeof extra, " (%lld..%lld)", (long long)o->lo, (long long)o->hi);
    else if (o->bounds) snprintf(extra, sizeof extra, " (%s)", o->bounds);
    else if (o->choices) snprintf(extra, sizeof extra, " (%s)", o->choices);
    const char *tname[] = {"string", "path", "integer", "boolean", "size", "duration", "choice", "list", "AE title"};
    fprintf(f, "# Type: %s%s. %s%s\n", tname[o->type], extra,
            (o->flags & F_RESTART) ? "Needs a restart." : "Reloaded by SIGHUP.",
            (o->flags & F_SENSITIVE) ? " Sensitive." : "");
    fprintf(f, "#%s = %s\n\n", o->key, o->def ? o->def : "");
}

void samda_config_write_example(FILE *f)
{
    fprintf(f, "# samdad configuration. Generated from the option table in daemon/config.c by\n"
               "# `samdad --print-config-example`; a unit test keeps this file in step with it.\n"
               "#\n"
               "# Every key is shown commented out with its default. Sizes take units (4096, 512MiB, 2GiB),\n"
               "# durations too (500ms, 30s, 2m, 1h, 1d). Unknown sections or keys are errors.\n"
               "# Command-line overrides: samdad --set section.key=value (site keys: site.NAME.key=value).\n");
    const char *prev = NULL;
    for (size_t i = 0; i < config_n_main; i++) {
        if (!prev || strcmp(prev, config_main_opts[i].section) != 0) {
            fprintf(f, "\n[%s]\n\n", config_main_opts[i].section);
            prev = config_main_opts[i].section;
        }
        write_opt_doc(f, &config_main_opts[i]);
    }
    for (size_t k = 0; k < config_n_repeated; k++) {
        fprintf(f, "\n# [%s NAME] (repeatable): ", config_repeated[k].kind);
        fprintf(f, "%s\n", config_repeated[k].doc);
        fprintf(f, "#[%s example]\n\n", config_repeated[k].kind);
        for (size_t i = 0; i < config_repeated[k].n_opts; i++) write_opt_doc(f, &config_repeated[k].opts[i]);
    }
}

static void write_value(FILE *f, const opt *o, const void *base)
{
    const void *field = (const char *)base + o->offset;
    if (o->flags & F_SENSITIVE) {
        fprintf(f, "%s = %s\n", o->key, *(char *const *)field ? "***" : "");
        return;
    }
    switch (o->type) {
    case T_STR:
    case T_PATH:
    case T_AE: fprintf(f, "%s = %s\n", o->key, *(char *const *)field ? *(char *const *)field : ""); break;
    case T_BOOL: fprintf(f, "%s = %s\n", o->key, *(const bool *)field ? "true" : "false"); break;
    case T_SIZE: fprintf(f, "%s = %llu\n", o->key, (unsigned long long)*(const uint64_t *)field); break;
    case T_DURATION: fprintf(f, "%s = %lldms\n", o->key, (long long)*(const int64_t *)field); break;
    case T_INT: fprintf(f, "%s = %lld\n", o->key, (long long)*(const int64_t *)field); break;
    case T_ENUM: {
        int64_t idx = *(const int64_t *)field;
        const char *c = o->choices;
        for (int64_t i = 0; i < idx && c; i++) {
            c = strchr(c, '|');
            if (c) c++;
        }
        size_t len = c ? strcspn(c, "|") : 0;
        fprintf(f, "%s = %.*s\n", o->key, (int)len, c ? c : "");
        break;
    }
    case T_LIST: {
        const samda_strlist *l = field;
        fprintf(f, "%s = ", o->key);
        for (size_t i = 0; i < l->n; i++) fprintf(f, "%s%s", i ? "," : "", l->v[i]);
        fprintf(f, "\n");
        break;
    }
    }
}

void samda_config_write_effective(const samda_config *c, FILE *f)
{
    fprintf(f, "# effective configuration from %s\n", c->source ? c->source : "(defaults)");
    const char *prev = NULL;
    for (size_t i = 0; i < config_n_main; i++) {
        if (!prev || strcmp(prev, config_main_opts[i].section) != 0) {
            fprintf(f, "%s[%s]\n", prev ? "\n" : "", config_main_opts[i].section);
            prev = config_main_opts[i].section;
        }
        write_value(f, &config_main_opts[i], c);
    }
    for (size_t k = 0; k < config_n_repeated; k++) {
        const section_kind *sk = &config_repeated[k];
        size_t n = *(const size_t *)((const char *)c + sk->count_off);
        for (size_t i = 0; i < n; i++) {
            const char *e = elem_at((samda_config *)c, sk, i);
            fprintf(f, "\n[%s %s]\n", sk->kind, *(char *const *)(e + sk->name_off));
            for (size_t j = 0; j < sk->n_opts; j++) write_value(f, &sk->opts[j], e);
        }
    }
}

