/* What the data-directory commands share: --config/--data-dir, opening the store through samdad's
 * configuration table (so samda and samdad agree on where the data is), JSON on stdout, ids.
 * Nothing here knows a particular command. */
#include "cli.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "storage.h"

void cli_take_data_opts(int *argc, char **argv, cli_data_opts *o)
{
    int out = 1;
    for (int i = 1; i < *argc; i++) {
        if ((!strcmp(argv[i], "--config") || !strcmp(argv[i], "-c")) && i + 1 < *argc) o->config = argv[++i];
        else if ((!strcmp(argv[i], "--data-dir") || !strcmp(argv[i], "-d")) && i + 1 < *argc) o->data_dir = argv[++i];
        else argv[out++] = argv[i];
    }
    *argc = out;
    argv[out] = NULL;
}

samda_store *cli_open_store(const cli_data_opts *o)
{
    samda_error err;
    const char *sets[2] = {NULL, NULL};
    char buf[4200];
    if (o->data_dir) {
        snprintf(buf, sizeof buf, "daemon.data_dir=%s", o->data_dir);
        sets[0] = buf;
    }
    samda_config *cfg = samda_config_load(o->config, sets, &err);
    if (!cfg) {
        fprintf(stderr, "samda: %s\n", err.message);
        return NULL;
    }
    samda_store_params p;
    samda_store_params_init(&p);
    p.data_dir = cfg->data_dir;
    if (cfg->storage_index == SAMDA_CFG_INDEX_POSTGRESQL) {
        p.index = SAMDA_INDEX_POSTGRESQL;
        p.postgresql = cfg->storage_postgresql;
    }
    samda_store *s = samda_store_open(&p, &err);
    if (!s) fprintf(stderr, "samda: opening data directory %s: %s\n", cfg->data_dir, err.message);
    samda_config_unref(cfg);
    return s;
}

int cli_print_json(json_t *j, size_t flags)
{
    if (!j) {
        fprintf(stderr, "samda: out of memory\n");
        return CLI_EXIT_FAIL;
    }
    char *s = json_dumps(j, flags);
    json_decref(j);
    if (!s) return CLI_EXIT_FAIL;
    printf("%s\n", s);
    free(s);
    return CLI_EXIT_OK;
}

bool cli_parse_id(const char *cmd, const char *what, const char *s, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno || v <= 0) {
        fprintf(stderr, "%s: '%s' is not %s\n", cmd, s, what);
        return false;
    }
    *out = v;
    return true;
}
