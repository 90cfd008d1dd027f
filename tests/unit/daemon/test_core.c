/* The daemon core in one process, over a temporary data directory (as Orthanc's ServerIndexTests
 * build the whole server context over a database): samdad's services started from a configuration
 * with the demo model; a synthetic CT series through the one ingest entry (samdad_ingest_file, the
 * C-STORE origin), completion by one scheduler pass, the segment job run by the worker's
 * segmentation lane, the result recorded and an export item queued for the site's destination; then
 * a second series through the HTTP core's STOW-RS functions, complete when its request ends. No
 * network peer: the destination does not listen, so its item stays queued. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api_services.h"
#include "context.h"
#include "dicom.h"
#include "ingest.h"
#include "scheduler.h"
#include "services.h"
#include "services_internal.h"
#include "storage.h"
#include "../../test_port.h"

static char scratch[] = "/tmp/samda-core-XXXXXX";

static void rm_rf(const char *dir)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

/* A synthetic CT series of n 64x64 slices (a bright disc in air) in dir; returns its series UID. */
static void write_series(const char *dir, size_t n, char series_uid[SAMDA_DICOM_UID_SIZE])
{
    mkdir(dir, 0700);
    int16_t *hu = malloc(sizeof *hu * n * 64 * 64);
    assert_non_null(hu);
    for (size_t s = 0; s < n; s++)
        for (int y = 0; y < 64; y++)
            for (int x = 0; x < 64; x++)
                hu[(s * 64 + y) * 64 + x] = (int16_t)(((y - 32) * (y - 32) + (x - 32) * (x - 32) < 256) ? 60 : -1000);
    samda_ct_series_params p;
    samda_ct_series_params_init(&p);
    p.dir = dir;
    p.hu = hu;
    p.n_slices = n;
    p.rows = p.cols = 64;
    p.slice_spacing = 3;
    p.patient_id = "CORE-1";
    p.patient_name = "Core^Test";
    samda_ct_series_result r;
    samda_error e = {0};
    samda_status st = samda_dicom_write_ct_series(&p, &r, &e);
    free(hu);
    if (st != SAMDA_OK) fail_msg("%s", e.message);
    snprintf(series_uid, SAMDA_DICOM_UID_SIZE, "%s", r.series_instance_uid);
}

/* Copy a file into the store's tmp/ (where the ingest entry may rename it from). */
static void copy_to(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    assert_non_null(in);
    assert_non_null(out);
    char buf[65536];
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, in)) > 0) assert_int_equal(fwrite(buf, 1, k, out), k);
    fclose(in);
    fclose(out);
}

/* The job of series_uid once finished (done or failed), waiting up to secs. */
static bool wait_job(samda_store *store, const char *series_uid, int secs, samda_job *out)
{
    for (int i = 0; i < secs * 10; i++) {
        samda_job_filter f = {.state = -1, .limit = 100};
        samda_job *jobs = NULL;
        size_t n = 0;
        samda_error e;
        if (samda_store_job_list(store, &f, &jobs, &n, &e) == SAMDA_OK) {
            for (size_t k = 0; k < n; k++)
                if (!strcmp(jobs[k].series_uid, series_uid) &&
                    (jobs[k].state == SAMDA_JOB_DONE || jobs[k].state == SAMDA_JOB_FAILED)) {
                    *out = jobs[k];
                    memset(&jobs[k], 0, sizeof jobs[k]);
                    samda_job_list_free(jobs, n);
                    return true;
                }
            samda_job_list_free(jobs, n);
        }
        usleep(100 * 1000);
    }
    return false;
}

static size_t count_exports(samda_store *store)
{
    samda_export_item *items = NULL;
    size_t n = 0;
    samda_error e;
    if (samda_store_export_list(store, 0, -1, 100, &items, &n, &e) != SAMDA_OK) return 0;
    samda_store_free(items);
    return n;
}

static void test_core_pipeline(void **state)
{
    (void)state;
    const char *src = getenv("SAMDA_SOURCE_DIR");
    char model[4200], adapter[4200];
    snprintf(model, sizeof model, "%s/deploy/demo/sam_demo_base.pth", src ? src : ".");
    snprintf(adapter, sizeof adapter, "%s/deploy/demo/site_A_adapter.safetensors", src ? src : ".");
    if (access(model, R_OK) != 0) skip();
    char conf[4300], data[4300];
    snprintf(conf, sizeof conf, "%s/samdad.conf", scratch);
    snprintf(data, sizeof data, "%s/data", scratch);
    FILE *f = fopen(conf, "w");
    assert_non_null(f);
    fprintf(f,
            "[daemon]\ndata_dir = %s\nshutdown_timeout = 5s\n"
            "[dicom]\nport = %u\n[http]\nport = %u\n[storage]\nmin_free = 0\n"
            "[model]\ncheckpoint = %s\nadapter = %s\ndevice = cpu\n"
            "[scheduler]\ntick = 200ms\n"
            /* idle timers of an hour: only the test's own scheduler pass (two hours ahead) completes */
            "[site default]\nmodalities = CT\nseries_idle = 1h\nstudy_idle = 1h\nmax_wait = 1d\ndestinations = pacs\n"
            "[destination pacs]\nae_title = PACS\nhost = 127.0.0.1\nport = %u\n",
            data, test_free_port(), test_free_port(), model, adapter, test_free_port());
    fclose(f);
    samda_error err = {0};
    samda_config *cfg = samda_config_load(conf, NULL, &err);
    if (!cfg) fail_msg("%s", err.message);
    samdad_ctx ctx = {.lock_fd = -1};
    pthread_mutex_init(&ctx.cfg_mu, NULL);
    char logpath[4300];
    snprintf(logpath, sizeof logpath, "%s/samdad.log", scratch);
    int logfd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    samda_logger_init(&ctx.log, logfd, SAMDA_LOG_INFO);
    ctx.cfg = cfg;
    mkdir(data, 0700);
    if (samdad_services_start(&ctx, &err) != SAMDA_OK) fail_msg("services: %s", err.message);
    samda_store *store = samdad_store(&ctx);
    assert_true(samdad_model_loaded(&ctx));

    /* 1. A series through the ingest entry, as C-STORE hands it over. */
    char dir[4300], series[SAMDA_DICOM_UID_SIZE];
    snprintf(dir, sizeof dir, "%s/ct1", scratch);
    write_series(dir, 6, series);
    for (int i = 1; i <= 6; i++) {
        char file[4400], tmp[4400];
        snprintf(file, sizeof file, "%s/IMG%05d.dcm", dir, i);
        snprintf(tmp, sizeof tmp, "%s/tmp/in-%d.dcm", data, i);
        copy_to(file, tmp);
        samda_dicom_header h;
        assert_int_equal(samda_dicom_read_header(tmp, &h, &err), SAMDA_OK);
        samdad_ingest_origin o = {.kind = SAMDAD_ORIGIN_DIMSE, .calling_ae = "UNIT", .site = "default"};
        samda_ingest_result res;
        if (samdad_ingest_file(&ctx, &o, tmp, &h, &res, &err) != SAMDA_OK) fail_msg("ingest %d: %s", i, err.message);
        assert_int_equal(res.outcome, SAMDA_INGEST_NEW);
        assert_int_equal(access(tmp, F_OK), -1); /* the file was taken */
    }
    samda_series_info se;
    assert_int_equal(samda_store_series_get(store, series, &se, &err), SAMDA_OK);
    assert_int_equal(se.n_instances, 6);
    assert_int_equal(se.state, SAMDA_SERIES_RECEIVING);

    /* A truncated copy of an instance is refused by the same entry, and nothing is kept. */
    {
        char file[4400], tmp[4400];
        snprintf(file, sizeof file, "%s/IMG00001.dcm", dir);
        snprintf(tmp, sizeof tmp, "%s/tmp/cut.dcm", data);
        copy_to(file, tmp);
        struct stat sb;
        stat(tmp, &sb);
        assert_int_equal(truncate(tmp, sb.st_size - 100), 0);
        samda_dicom_header h;
        assert_int_equal(samda_dicom_read_header(tmp, &h, &err), SAMDA_OK);
        samdad_ingest_origin o = {.kind = SAMDAD_ORIGIN_DIMSE, .calling_ae = "UNIT", .site = "default"};
        assert_int_equal(samdad_ingest_file(&ctx, &o, tmp, &h, NULL, &err), SAMDA_EBADDICOM);
        assert_non_null(strstr(err.message, "does not parse to its end"));
        assert_int_equal(access(tmp, F_OK), -1);
    }

    /* 2. Completion: one scheduler pass at a time past the idle timers queues its job. */
    size_t changed = samdad_scheduler_pass(&ctx, store, samda_store_now_ms(store) + 2 * 3600 * 1000);
    assert_true(changed >= 1);
    assert_int_equal(samda_store_series_get(store, series, &se, &err), SAMDA_OK);
    assert_int_equal(se.state, SAMDA_SERIES_COMPLETE);

    /* 3. The worker's segmentation lane runs it: a result, and an export item for [destination pacs]. */
    samda_job job;
    if (!wait_job(store, series, 300, &job)) fail_msg("the job did not finish; see %s", logpath);
    if (job.state != SAMDA_JOB_DONE) fail_msg("job failed: %s", job.error ? job.error : "");
    assert_string_equal(job.kind, "segment");
    samda_job_clear(&job);
    samda_result *rows = NULL;
    size_t n = 0;
    assert_int_equal(samda_store_result_list(store, series, &rows, &n, &err), SAMDA_OK);
    assert_int_equal(n, 1);
    samda_object_info seg = rows[0].object;
    samda_result_list_free(rows, n);
    assert_int_equal(samda_store_object_verify(store, &seg, &err), SAMDA_OK);
    assert_int_equal(count_exports(store), 1);

    /* 4. A second series through the HTTP core's STOW-RS functions: complete when its request ends. */
    samda_api_services svc;
    samdad_api_core *core = samdad_api_core_new(&ctx, &svc, &err);
    if (!core) fail_msg("api core: %s", err.message);
    char series2[SAMDA_DICOM_UID_SIZE];
    snprintf(dir, sizeof dir, "%s/ct2", scratch);
    write_series(dir, 4, series2);
    for (unsigned i = 1; i <= 4; i++) {
        char file[4400], tmp[4400];
        snprintf(file, sizeof file, "%s/IMG%05u.dcm", dir, i);
        snprintf(tmp, sizeof tmp, "%s/tmp/stow-%u.dcm", data, i);
        copy_to(file, tmp);
        samda_api_stow_part part = {.request_id = 77, .index = i - 1, .path = tmp, .content_type = "application/dicom"};
        samda_api_stow_outcome out;
        memset(&out, 0, sizeof out);
        if (svc.stow_instance(svc.ctx, &part, &out, &err) != SAMDA_OK) fail_msg("stow %u: %s", i, err.message);
        assert_string_equal(out.series_uid, series2);
    }
    samda_api_stow_summary sum = {.request_id = 77, .parts = 4, .stored = 4, .http_status = 200};
    svc.stow_complete(svc.ctx, &sum);
    assert_int_equal(samda_store_series_get(store, series2, &se, &err), SAMDA_OK);
    assert_int_equal(se.state, SAMDA_SERIES_COMPLETE);
    if (!wait_job(store, series2, 300, &job)) fail_msg("the STOW series' job did not finish; see %s", logpath);
    assert_int_equal(job.state, SAMDA_JOB_DONE);
    samda_job_clear(&job);
    assert_int_equal(count_exports(store), 2);

    samdad_api_core_free(core);
    samdad_services_stop(&ctx);
    samda_config_unref(ctx.cfg);
    pthread_mutex_destroy(&ctx.cfg_mu);
    close(logfd);
}

static int setup(void **state)
{
    (void)state;
    return mkdtemp(scratch) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    rm_rf(scratch);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_core_pipeline)};
    return cmocka_run_group_tests(tests, setup, teardown);
}
