/* `samda exports [retry ID]`: the export queue as JSON, and a failed item made due again. The CLI
 * works on the data directory only: a running samdad's exporter finds a retried item at its next
 * tick (daemon/export_admin.c holds the rules, shared with the REST routes). */
#include "cli.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "export_admin.h"
#include "storage.h"

#define EXPORTS_JSON_FLAGS (JSON_INDENT(2) | JSON_SORT_KEYS)

static const char usage[] = "usage: samda exports [--state pending|sending|done|failed] [--destination NAME] "
                            "[--result ID] [--limit N] | samda exports retry ID [--config F | --data-dir D]\n";

/* samda exports retry ID, audited as actor "cli". */
static int exports_retry(int argc, char **argv, const cli_data_opts *o)
{
    long long id;
    if (argc != 3) {
        fprintf(stderr, "%s", usage);
        return CLI_EXIT_USAGE;
    }
    if (!cli_parse_id("samda exports retry", "an export id (see samda exports)", argv[2], &id)) return CLI_EXIT_USAGE;
    samda_store *s = cli_open_store(o);
    if (!s) return CLI_EXIT_FAIL;
    samda_error err;
    json_t *item = NULL;
    samda_status st = samdad_export_retry(s, id, "cli", &item, &err);
    samda_store_close(s);
    if (st != SAMDA_OK) {
        fprintf(stderr, "samda exports retry: %s\n", err.message);
        return CLI_EXIT_FAIL;
    }
    fprintf(stderr, "export %lld is pending again; a running samdad sends it within a [scheduler] tick\n", id);
    return cli_print_json(item, EXPORTS_JSON_FLAGS);
}

int cli_cmd_exports(int argc, char **argv)
{
    cli_data_opts o = {0};
    cli_take_data_opts(&argc, argv, &o);
    if (argc >= 2 && !strcmp(argv[1], "retry")) return exports_retry(argc, argv, &o);
    samdad_export_query q = {.limit = 1000};
    for (int i = 1; i < argc; i++) {
        long long v;
        if (!strcmp(argv[i], "--state") && i + 1 < argc) q.state = argv[++i];
        else if (!strcmp(argv[i], "--destination") && i + 1 < argc) q.destination = argv[++i];
        else if (!strcmp(argv[i], "--result") && i + 1 < argc) {
            if (!cli_parse_id("samda exports", "a result id", argv[++i], &v)) return CLI_EXIT_USAGE;
            q.result_id = v;
        } else if (!strcmp(argv[i], "--limit") && i + 1 < argc) {
            if (!cli_parse_id("samda exports", "a limit from 1 to 100000", argv[++i], &v)) return CLI_EXIT_USAGE;
            if (v > 100000) {
                fprintf(stderr, "samda exports: --limit %lld: must be between 1 and 100000\n", v);
                return CLI_EXIT_USAGE;
            }
            q.limit = (unsigned)v;
        } else {
            fprintf(stderr, "%s", usage);
            return CLI_EXIT_USAGE;
        }
    }
    samda_store *s = cli_open_store(&o);
    if (!s) return CLI_EXIT_FAIL;
    samda_error err;
    json_t *a = NULL;
    samda_status st = samdad_exports_list(s, &q, &a, &err);
    samda_store_close(s);
    if (st != SAMDA_OK) {
        fprintf(stderr, "samda exports: %s\n", err.message);
        return st == SAMDA_EINVAL ? CLI_EXIT_USAGE : CLI_EXIT_FAIL;
    }
    return cli_print_json(a, EXPORTS_JSON_FLAGS);
}
