/* cli/cli.h: the command families of the samda program and what they share.
 *
 * cli/samda.c holds the dispatch table; each family lives in one file (cli_tokens.c, cli_store.c,
 * cli_exports.c, cli_phantom.c, cli_model.c, cli_adapter.c with cli_adapter_dicom.c). A command gets
 * main's argv without the program name (argv[0] is the command's name), prints its result on stdout
 * and its messages on stderr, and returns the process's exit status (CLI_EXIT_*).
 * This header is internal to cli/: nothing here is installed or linked by another module. It names
 * no type of another module's header (storage.h, jansson.h) so that cli_adapter.c, which needs only
 * model.h, can be built with model/ alone (model/CMakeLists.txt, the samda-adapter program).
 * Thread-safety: none needed; the programs are single-threaded apart from the model's own threads. */
#ifndef SAMDA_CLI_H
#define SAMDA_CLI_H

#include <stdbool.h>
#include <stddef.h>

/* Exit statuses, the same for every command. */
enum {
    CLI_EXIT_OK = 0,   /* done */
    CLI_EXIT_FAIL = 1, /* the work failed; the reason is on stderr */
    CLI_EXIT_USAGE = 2 /* the command line is wrong; nothing was done; the reason or usage is on stderr */
};

/* ---- What the data-directory commands share (cli_common.c) --------------------------------------- */

struct samda_store; /* storage.h */
struct json_t;      /* jansson.h */

/* Where a command finds the data directory: samdad's configuration file, or the directory itself
 * (--data-dir wins over the file's [daemon] data_dir). Both NULL: the configuration's default. */
typedef struct cli_data_opts {
    const char *config;
    const char *data_dir;
} cli_data_opts;

/* Take --config/-c FILE and --data-dir/-d DIR out of argv (any position), leaving the other arguments
 * in order; *argc shrinks and argv[*argc] becomes NULL. */
void cli_take_data_opts(int *argc, char **argv, cli_data_opts *o);

/* Open the data directory's store (beside a running samdad: SQLite WAL allows it).
 * Returns NULL after printing the reason on stderr. Ownership: caller closes with samda_store_close(). */
struct samda_store *cli_open_store(const cli_data_opts *o);

/* Print j on stdout with json_dumps(j, flags) and a newline, then release j (NULL: "out of memory").
 * Returns CLI_EXIT_OK or CLI_EXIT_FAIL. */
int cli_print_json(struct json_t *j, size_t flags);

/* Parse s as a positive decimal id; false after printing "CMD: 's' is not WHAT" on stderr. */
bool cli_parse_id(const char *cmd, const char *what, const char *s, long long *out);

/* ---- The commands (argv[0] = the command's name) ---------------------------------------------------- */

int cli_cmd_token(int argc, char **argv);   /* cli_tokens.c: create | list | revoke API bearer tokens */
int cli_cmd_series(int argc, char **argv);  /* cli_store.c: the index's series (JSON) */
int cli_cmd_jobs(int argc, char **argv);    /* cli_store.c: the job queue (JSON) */
int cli_cmd_audit(int argc, char **argv);   /* cli_store.c: the audit log (JSON) */
int cli_cmd_check(int argc, char **argv);   /* cli_store.c: verify index and objects */
int cli_cmd_exports(int argc, char **argv); /* cli_exports.c: the export queue; retry ID */
int cli_cmd_phantom(int argc, char **argv); /* cli_phantom.c: synthetic slices, --dicom series + SEG */
int cli_cmd_model(int argc, char **argv);   /* cli_model.c: model info (needs the model) */
int cli_cmd_segment(int argc, char **argv); /* cli_model.c: one image with prompts (needs the model) */
int cli_cmd_bench(int argc, char **argv);   /* cli_model.c: bench model (needs the model) */
int cli_cmd_adapter(int argc, char **argv); /* cli_adapter_dicom.c: cli_adapter_main plus --dicom SERIES,SEG */

/* cli_adapter.c: train | eval | tta | info | pretrain over model.h alone (argv[0] = "adapter" or the
 * program's name); also the whole samda-adapter program. */
int cli_adapter_main(int argc, char **argv);

struct samda_adapter_label; /* model.h */
/* cli_adapter.c: the labels that `samda adapter` ARGS (argv[0] the command, as cli_adapter_main takes
 * them) name with --labels-file or --labels (without either: the demo's five built-in labels).
 * Returns CLI_EXIT_OK with *out malloc'd (caller frees), a usage error, or CLI_EXIT_FAIL after a
 * message. */
int cli_adapter_labels(int argc, char **argv, struct samda_adapter_label **out, size_t *n_out);

#endif
