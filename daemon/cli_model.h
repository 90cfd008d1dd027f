/* The samda subcommands over model/: `samda model info`, `samda segment`, `samda bench model`. */
#ifndef SAMDA_DAEMON_CLI_MODEL_H
#define SAMDA_DAEMON_CLI_MODEL_H

int samda_cmd_model(int argc, char **argv);   /* argv[0] = "model" */
int samda_cmd_segment(int argc, char **argv); /* argv[0] = "segment" */
int samda_cmd_bench(int argc, char **argv);   /* argv[0] = "bench" */

#endif
