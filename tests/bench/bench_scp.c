/* Ingest throughput of samda's C-STORE SCP against DCMTK's storescp, with storescu as the sender.
 *
 * samda's callback does what the daemon will do with each instance: fsync the temporary file, rename
 * it into a store folder and fsync that folder. storescp writes files without fsync (its normal
 * behaviour), so it is the upper bound of a plain receiver, not an equal comparison.
 * Prints instances/s and MB/s for one association and for 8 parallel storescu processes.
 * usage: bench_scp [N]   (N instances of 512x512x16-bit CT, default 400). Never fails on time. */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "dicom.h"
#include "../test_port.h"

static char store_dir[4200];
static int do_fsync = 1;

static samda_status on_store(void *ctx, const samda_assoc_info *a, const samda_store_request *req,
                             samda_store_response *resp)
{
    (void)ctx;
    (void)a;
    int fd = do_fsync ? open(req->path, O_RDONLY) : -2;
    if (fd == -1 || (fd >= 0 && fsync(fd) != 0)) {
        if (fd >= 0) close(fd);
        return SAMDA_EIO;
    }
    if (fd >= 0) close(fd);
    char dst[4300];
    snprintf(dst, sizeof dst, "%s/%s.dcm", store_dir, req->header->sop_instance_uid);
    if (rename(req->path, dst) != 0) return SAMDA_EIO;
    resp->file_taken = true;
    int dfd = do_fsync ? open(store_dir, O_RDONLY | O_DIRECTORY) : -1;
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return SAMDA_OK;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[16384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return system(cmd);
}

/* Send the data set to port: one storescu over all groups, or one storescu per group in parallel. */
static void run(const char *label, const char *data, unsigned port, int parallel, int n, double mb)
{
    double t0 = now();
    int rc;
    if (!parallel)
        rc = sh("storescu -aec SAMDA 127.0.0.1 %u %s/g*/*.dcm >/dev/null 2>&1", port, data);
    else
        rc = sh("f=0; for g in %s/g*; do (storescu -aec SAMDA 127.0.0.1 %u $g/*.dcm >/dev/null 2>&1 || echo x > %s/failed) & done; "
                "wait; test ! -e %s/failed",
                data, port, data, data);
    double dt = now() - t0;
    printf("%-44s %s: %6d instances in %6.2f s = %7.1f instances/s, %6.1f MB/s%s\n", label,
           parallel ? "8 associations" : "1 association ", n, dt, n / dt, mb / dt, rc ? "  (storescu FAILED)" : "");
    sh("rm -f %s/failed", data);
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 400;
    const char *src = getenv("SAMDA_SOURCE_DIR");
    char work[2048];
    snprintf(work, sizeof work, "%s/samda-bench-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/var/tmp");
    if (!mkdtemp(work)) return 1;
    char data[4200], tmp[4200], ref[4200];
    snprintf(data, sizeof data, "%s/data", work);
    snprintf(tmp, sizeof tmp, "%s/tmp", work);
    snprintf(store_dir, sizeof store_dir, "%s/store", work);
    snprintf(ref, sizeof ref, "%s/storescp", work);
    mkdir(tmp, 0700);
    mkdir(store_dir, 0700);
    mkdir(ref, 0700);
    printf("generating %d CT instances (512x512, 16 bit) in %s ...\n", n, data);
    if (sh("/usr/bin/python3 '%s/tests/bench/make_ct_series.py' '%s' %d 8", src ? src : ".", data, n) != 0) return 1;
    double mb = n * (512.0 * 512 * 2) / 1e6;

    samda_dicom_init(NULL, NULL);
    samda_scp_params p;
    samda_scp_params_init(&p);
    p.port = 0;
    p.temp_dir = tmp;
    p.on_store = on_store;
    p.max_pdu_bytes = 131072;
    samda_error e;
    samda_scp *scp = samda_scp_start(&p, &e);
    if (!scp) {
        fprintf(stderr, "%s\n", e.message);
        return 1;
    }
    run("samda SCP (fsync + rename + dir fsync)", data, samda_scp_port(scp), 0, n, mb);
    sh("rm -f %s/*", store_dir);
    run("samda SCP (fsync + rename + dir fsync)", data, samda_scp_port(scp), 1, n, mb);
    do_fsync = 0;
    sh("rm -f %s/*", store_dir);
    run("samda SCP (rename only, no fsync)", data, samda_scp_port(scp), 0, n, mb);
    sh("rm -f %s/*", store_dir);
    run("samda SCP (rename only, no fsync)", data, samda_scp_port(scp), 1, n, mb);
    samda_scp_counters k;
    samda_scp_counters_get(scp, &k);
    samda_scp_stop(scp, 2000);
    printf("samda counters: %llu stored, %llu failed\n", (unsigned long long)k.stores_ok,
           (unsigned long long)k.stores_failed);

    unsigned port = test_free_port();
    sh("storescp --fork -aet SAMDA -od %s %u >/dev/null 2>&1 & echo $! > %s/pid; sleep 0.5", ref, port, work);
    run("DCMTK storescp --fork (no fsync)", data, port, 0, n, mb);
    sh("rm -f %s/*", ref);
    run("DCMTK storescp --fork (no fsync)", data, port, 1, n, mb);
    sh("kill $(cat %s/pid)", work);
    sh("rm -rf '%s'", work);
    samda_dicom_shutdown();
    return 0;
}
