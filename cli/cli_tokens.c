/* `samda token create | list | revoke`: the API's bearer tokens, in the data directory's index.
 * A secret is printed once, at creation; the index keeps only its SHA-256 (storage/tokens.c). */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "storage.h"

static int token_create(int argc, char **argv, const cli_data_opts *o)
{
    const char *name = NULL, *role_s = "user";
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--role") && i + 1 < argc) role_s = argv[++i];
        else if (!name) name = argv[i];
        else {
            fprintf(stderr, "samda token create: unexpected argument '%s'\n", argv[i]);
            return CLI_EXIT_USAGE;
        }
    }
    samda_role role;
    if (!strcmp(role_s, "admin")) role = SAMDA_ROLE_ADMIN;
    else if (!strcmp(role_s, "user")) role = SAMDA_ROLE_USER;
    else if (!strcmp(role_s, "ingest")) role = SAMDA_ROLE_INGEST;
    else {
        fprintf(stderr, "samda token create: --role %s: must be admin, user or ingest\n", role_s);
        return CLI_EXIT_USAGE;
    }
    if (!name) {
        fprintf(stderr, "samda token create: a NAME is required\n");
        return CLI_EXIT_USAGE;
    }
    samda_store *s = cli_open_store(o);
    if (!s) return CLI_EXIT_FAIL;
    samda_error err;
    char secret[SAMDA_TOKEN_SECRET_SIZE];
    int64_t id;
    samda_status st = samda_store_token_create(s, name, role, secret, &id, &err);
    if (st == SAMDA_OK) samda_store_audit_append(s, "cli", "token.create", "token", "ok", NULL, NULL);
    samda_store_close(s);
    if (st != SAMDA_OK) {
        fprintf(stderr, "samda token create: %s\n", err.message);
        return CLI_EXIT_FAIL;
    }
    printf("%s\n", secret);
    fprintf(stderr, "token %lld '%s' (role %s) created; the secret above is shown once and cannot be "
                    "recovered\n", (long long)id, name, samda_role_name(role));
    return CLI_EXIT_OK;
}

static int token_list(const cli_data_opts *o)
{
    samda_store *s = cli_open_store(o);
    if (!s) return CLI_EXIT_FAIL;
    samda_error err;
    samda_token_info *t = NULL;
    size_t n = 0;
    samda_status st = samda_store_token_list(s, &t, &n, &err);
    samda_store_close(s);
    if (st != SAMDA_OK) {
        fprintf(stderr, "samda token list: %s\n", err.message);
        return CLI_EXIT_FAIL;
    }
    printf("%-6s %-24s %-7s %-20s %s\n", "ID", "NAME", "ROLE", "CREATED", "STATE");
    for (size_t i = 0; i < n; i++) {
        char when[32];
        time_t sec = (time_t)(t[i].created_ms / 1000);
        struct tm tm;
        gmtime_r(&sec, &tm);
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
        printf("%-6lld %-24s %-7s %-20s %s\n", (long long)t[i].id, t[i].name, samda_role_name(t[i].role), when,
               t[i].revoked_ms ? "revoked" : "valid");
    }
    samda_store_free(t);
    return CLI_EXIT_OK;
}

static int token_revoke(int argc, char **argv, const cli_data_opts *o)
{
    if (argc != 3) {
        fprintf(stderr, "usage: samda token revoke ID\n");
        return CLI_EXIT_USAGE;
    }
    char *end;
    errno = 0;
    long long id = strtoll(argv[2], &end, 10);
    if (*end || errno || id <= 0) {
        fprintf(stderr, "samda token revoke: '%s' is not a token id (see samda token list)\n", argv[2]);
        return CLI_EXIT_USAGE;
    }
    samda_store *s = cli_open_store(o);
    if (!s) return CLI_EXIT_FAIL;
    samda_error err;
    samda_status st = samda_store_token_revoke(s, id, &err);
    if (st == SAMDA_OK) samda_store_audit_append(s, "cli", "token.revoke", "token", "ok", NULL, NULL);
    samda_store_close(s);
    if (st != SAMDA_OK) {
        fprintf(stderr, "samda token revoke: %s\n", err.message);
        return CLI_EXIT_FAIL;
    }
    fprintf(stderr, "token %lld revoked\n", id);
    return CLI_EXIT_OK;
}

int cli_cmd_token(int argc, char **argv)
{
    cli_data_opts o = {0};
    cli_take_data_opts(&argc, argv, &o);
    if (argc < 2) {
        fprintf(stderr, "usage: samda token create NAME --role admin|user|ingest | list | revoke ID "
                        "[--config F | --data-dir D]\n");
        return CLI_EXIT_USAGE;
    }
    const char *verb = argv[1];
    if (!strcmp(verb, "create")) return token_create(argc, argv, &o);
    if (!strcmp(verb, "list")) return token_list(&o);
    if (!strcmp(verb, "revoke")) return token_revoke(argc, argv, &o);
    fprintf(stderr, "samda token: unknown verb '%s' (create, list, revoke)\n", verb);
    return CLI_EXIT_USAGE;
}
