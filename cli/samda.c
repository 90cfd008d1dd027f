/* samda: the command-line tool for offline work on a samdad data directory and for the model.
 * This file is only the dispatch: each command is one row of the table below (`samda help` lists
 * them) and lives in its family's file (cli/cli.h). Commands that open the data directory work
 * beside a running samdad (SQLite WAL allows it). Exit statuses: 0 done, 1 failed, 2 usage
 * (CLI_EXIT_*); an unknown command and a bare `samda` are usage errors. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#ifdef SAMDA_HAVE_MODEL
#include "model.h"
#endif

#ifndef SAMDA_VERSION
#define SAMDA_VERSION "0.0.0"
#endif

typedef struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
} command;

static int cmd_help(int argc, char **argv);

static const command commands[] = {
    {"token", cli_cmd_token, "create|list|revoke API bearer tokens (only SHA-256 hashes are stored)"},
    {"series", cli_cmd_series, "list series in the index with their completion state (JSON)"},
    {"jobs", cli_cmd_jobs, "list jobs with state, attempts and errors (JSON)"},
    {"exports", cli_cmd_exports, "list the export queue (JSON); exports retry ID sends a failed item again"},
    {"audit", cli_cmd_audit, "print the audit log (JSON)"},
#ifdef SAMDA_HAVE_MODEL
    {"model", cli_cmd_model, "describe a SAM/MedSAM checkpoint: architecture, parameters, fingerprint, BLAS"},
    {"segment", cli_cmd_segment, "segment one image (.npy, .png, .dcm) with point/box prompts; write the mask"},
    {"adapter", cli_cmd_adapter, "train | eval | tta | info | pretrain: the SAM-DA decoder adapter (--dicom SERIES,SEG for DICOM data)"},
    {"bench", cli_cmd_bench, "bench model: encoder images/s, decoder ms per prompt, peak memory (JSON)"},
#endif
    {"phantom", cli_cmd_phantom, "generate synthetic CT-like slices with exact masks, per-site styles"},
    {"check", cli_cmd_check, "verify the data directory: index integrity, every object present with its hash"},
    {"help", cmd_help, "this list"},
};

static int cmd_help(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    printf("Usage: samda COMMAND [ARGS] [--config FILE | --data-dir DIR]\n\nCommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        printf("  %-8s %s\n", commands[i].name, commands[i].help);
    return CLI_EXIT_OK;
}

int main(int argc, char **argv)
{
#ifdef SAMDA_HAVE_MODEL
    samda_model_tune_allocator(); /* before any thread: the model's tensors (model.h says why) */
#endif
    if (argc < 2) {
        cmd_help(argc, argv);
        return CLI_EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("samda %s\n", SAMDA_VERSION);
        return CLI_EXIT_OK;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) return cmd_help(argc, argv);
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "samda: unknown command '%s' (see samda help)\n", argv[1]);
    return CLI_EXIT_USAGE;
}
