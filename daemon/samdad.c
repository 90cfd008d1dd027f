/* samdad: the daemon's main. Parses the command line, loads and validates the configuration,
 * takes the data-directory lock, starts the subsystems, and then the main thread does nothing but
 * wait for signals (SIGTERM/SIGINT: drain and stop; SIGHUP: reload) and feed systemd's watchdog.
 * All other threads are created with these signals blocked, so only this loop sees them. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "context.h"
#include "lock.h"
#include "log.h"
#include "services.h"
#ifdef SAMDA_HAVE_MODEL
#include "model.h"
#endif

#ifndef SAMDA_VERSION
#define SAMDA_VERSION "0.0.0"
#endif

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: samdad [OPTIONS]\n"
            "PACS-integrated segmentation server (SAM + per-site decoder adapters).\n\n"
            "  -c, --config FILE          configuration file (INI); without it, embedded defaults\n"
            "  -s, --set SECTION.KEY=VAL  override one option (repeatable), e.g. --set dicom.port=11113\n"
            "  -d, --data-dir DIR         same as --set daemon.data_dir=DIR\n"
            "  -v, --verbose              log at debug level\n"
            "      --check-config         validate the configuration and exit (0 valid, 2 invalid)\n"
            "      --print-config         print the effective configuration and exit\n"
            "      --print-config-example print the documented example configuration and exit\n"
            "      --version              print the version and exit\n"
            "  -h, --help                 this help\n");
}

typedef struct cli {
    const char *config;
    const char **sets;
    size_t n_sets;
    int verbose, check, print, example;
} cli;

static int add_set(cli *c, const char *s)
{
    const char **n = realloc(c->sets, (c->n_sets + 2) * sizeof *n);
    if (!n) return -1;
    c->sets = n;
    c->sets[c->n_sets++] = s;
    c->sets[c->n_sets] = NULL;
    return 0;
}

static void note_restart(void *vctx, const char *section, const char *key)
{
    samdad_ctx *ctx = vctx;
    samda_log(&ctx->log, SAMDA_LOG_WARN, "config", "option changed but needs a restart to take effect",
              "option=%s.%s", section, key);
}

static void reload(samdad_ctx *ctx, const cli *c)
{
    samda_error err;
    samda_config *next = samda_config_load(c->config, c->sets, &err);
    if (!next) {
        samda_log(&ctx->log, SAMDA_LOG_ERROR, "config", "reload refused, previous configuration kept", "error=%s",
                  samda_log_quote((char[600]){0}, 600, err.message));
        return;
    }
    samda_config *cur = samdad_config_get(ctx);
    samda_status st = samda_config_merge_reload(next, cur, note_restart, ctx, &err);
    samda_config_unref(cur);
    if (st != SAMDA_OK) {
        samda_config_unref(next);
        samda_log(&ctx->log, SAMDA_LOG_ERROR, "config", "reload failed", "error=%s",
                  samda_log_quote((char[600]){0}, 600, err.message));
        return;
    }
    samda_logger_set_level(&ctx->log, c->verbose ? SAMDA_LOG_DEBUG : (samda_log_level)next->log_level);
    __atomic_store_n(&ctx->log.log_uids, next->log_uids ? 1 : 0, __ATOMIC_RELAXED);
    samdad_config_set(ctx, next);
    samdad_services_reload(ctx);
    samda_log(&ctx->log, SAMDA_LOG_INFO, "config", "configuration reloaded", "source=%s",
              c->config ? c->config : "(defaults)");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},  {"set", required_argument, NULL, 's'},
        {"data-dir", required_argument, NULL, 'd'}, {"verbose", no_argument, NULL, 'v'},
        {"check-config", no_argument, NULL, 1},     {"print-config", no_argument, NULL, 2},
        {"print-config-example", no_argument, NULL, 3}, {"version", no_argument, NULL, 4},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0},
    };
#ifdef SAMDA_HAVE_MODEL
    samda_model_tune_allocator();  /* before any thread: the model's tensors (model.h says why) */
#endif
    cli c = {0};
    char *data_dir_set = NULL;
    int ch;
    while ((ch = getopt_long(argc, argv, "c:s:d:vh", opts, NULL)) != -1) {
        switch (ch) {
        case 'c': c.config = optarg; break;
        case 's':
            if (add_set(&c, optarg)) return 1;
            break;
        case 'd': {
            size_t n = strlen(optarg) + 32;
            free(data_dir_set);
            data_dir_set = malloc(n);
            if (!data_dir_set) return 1;
            snprintf(data_dir_set, n, "daemon.data_dir=%s", optarg);
            if (add_set(&c, data_dir_set)) return 1;
            break;
        }
        case 'v': c.verbose = 1; break;
        case 1: c.check = 1; break;
        case 2: c.print = 1; break;
        case 3: c.example = 1; break;
        case 4: printf("samdad %s\n", SAMDA_VERSION); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "samdad: unexpected argument '%s' (see samdad --help)\n", argv[optind]);
        return 2;
    }
    if (c.example) {
        samda_config_write_example(stdout);
        return 0;
    }

    samda_error err;
    samda_config *cfg = samda_config_load(c.config, c.sets, &err);
    if (!cfg) {
        fprintf(stderr, "samdad: %s\n", err.message);
        return 2;
    }
    if (c.check) {
        printf("samdad: configuration %s is valid\n", cfg->source);
        samda_config_unref(cfg);
        return 0;
    }
    if (c.print) {
        samda_config_write_effective(cfg, stdout);
        samda_config_unref(cfg);
        return 0;
    }

    samdad_ctx ctx = {.lock_fd = -1};
    pthread_mutex_init(&ctx.cfg_mu, NULL);
    samda_logger_init(&ctx.log, STDERR_FILENO, c.verbose ? SAMDA_LOG_DEBUG : (samda_log_level)cfg->log_level);
    ctx.log.log_uids = cfg->log_uids;
    ctx.cfg = cfg;

    /* Block the signals the main loop waits for before any thread exists, so every thread
     * inherits the mask. SIGPIPE is ignored: a peer closing a socket is an error return, not death. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    int rc = 1;
    unsigned mode = 0;
    char node[SAMDA_CONFIG_NODE_SIZE];
    if (samda_mkdir_p(cfg->data_dir, &mode, &err) != SAMDA_OK ||
        samda_datadir_lock(cfg->data_dir,
                           cfg->storage_index == SAMDA_CFG_INDEX_POSTGRESQL ? samda_config_node_name(cfg, node) : NULL,
                           &ctx.lock_fd, &err) != SAMDA_OK) {
        samda_log(&ctx.log, SAMDA_LOG_ERROR, "daemon", "cannot start", "error=%s",
                  samda_log_quote((char[600]){0}, 600, err.message));
        goto out;
    }
    if (mode & 077)
        samda_log(&ctx.log, SAMDA_LOG_WARN, "daemon", "data directory is accessible to other users",
                  "mode=%04o hint=\"chmod 0700 the data directory\"", mode);
    samda_log(&ctx.log, SAMDA_LOG_INFO, "daemon", "starting", "version=%s pid=%ld config=%s", SAMDA_VERSION,
              (long)getpid(), cfg->source);

    if (samdad_services_start(&ctx, &err) != SAMDA_OK) {
        samda_log(&ctx.log, SAMDA_LOG_ERROR, "daemon", "cannot start", "error=%s",
                  samda_log_quote((char[600]){0}, 600, err.message));
        samdad_services_stop(&ctx);
        goto out;
    }

    char status[256];
    samdad_services_status(&ctx, status, sizeof status);
    sd_notifyf(0, "READY=1\nSTATUS=%s\nMAINPID=%ld", status, (long)getpid());
    samda_log(&ctx.log, SAMDA_LOG_INFO, "daemon", "ready", "%s", status);

    uint64_t wd_usec = 0;
    int wd = sd_watchdog_enabled(0, &wd_usec);
    long tick_ms = 1000;
    if (wd > 0 && wd_usec / 2000 < (uint64_t)tick_ms) tick_ms = (long)(wd_usec / 2000);
    if (tick_ms < 10) tick_ms = 10;
    for (;;) {
        struct timespec to = {tick_ms / 1000, (tick_ms % 1000) * 1000000L};
        int sig = sigtimedwait(&set, NULL, &to);
        if (wd > 0) sd_notify(0, "WATCHDOG=1");
        if (sig < 0) continue; /* EAGAIN (tick) or EINTR */
        if (sig == SIGHUP) {
            sd_notify(0, "RELOADING=1");
            reload(&ctx, &c);
            sd_notify(0, "READY=1");
            continue;
        }
        samda_log(&ctx.log, SAMDA_LOG_INFO, "daemon", "stopping", "signal=%s", sig == SIGTERM ? "TERM" : "INT");
        break;
    }
    sd_notify(0, "STOPPING=1");
    atomic_store(&ctx.stopping, true);
    samdad_services_stop(&ctx);
    samda_log(&ctx.log, SAMDA_LOG_INFO, "daemon", "stopped", NULL);
    rc = 0;
out:
    if (ctx.lock_fd >= 0) close(ctx.lock_fd);
    samda_config_unref(ctx.cfg);
    pthread_mutex_destroy(&ctx.cfg_mu);
    free(c.sets);
    free(data_dir_set);
    return rc;
}
