/* dicom/scu.cpp: C-STORE SCU against DCMTK's storescp (accepting; limited to CT by a -xf profile;
 * aborting mid-transfer; killed mid-way), a closed port, and samda's own SCP in this process
 * (out of resources, duplicates, rejected associations, a peer that does not answer). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "dicom.h"
#include "dicom_test_util.h"
#include "../../test_port.h"

static char scratch[4096];
static const char *series[20];
static char series_buf[20][4300];
static int have_series;

static int setup(void **state)
{
    (void)state;
    samda_dicom_init(NULL, NULL);
    if (!scratch_make(scratch, sizeof scratch, "scu")) return -1;
    have_series = 1;
    for (int i = 0; i < 20; i++) {
        snprintf(series_buf[i], sizeof series_buf[i], "%s/dicom/mr-brain-20/brain_%03d.dcm", fixtures_dir(), i + 1);
        series[i] = series_buf[i];
        if (!path_exists(series[i])) have_series = 0;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[4400]; /* storescp processes a failed test left behind */
    snprintf(cmd, sizeof cmd, "for f in '%s'/*.pid; do [ -f \"$f\" ] && kill -9 $(cat \"$f\") 2>/dev/null; done; true", scratch);
    if (system(cmd) != 0) fprintf(stderr, "could not clean up storescp processes\n");
    scratch_remove(scratch);
    samda_dicom_shutdown();
    return 0;
}

/* storescp in the background on a free port, storing into a fresh directory; waits until it answers. */
typedef struct peer_proc {
    unsigned port;
    int pid;
    char dir[4300];
} peer_proc;

static void start_storescp(peer_proc *pp, const char *tag, const char *args)
{
    char cmd[9000], pidfile[4400], out[256];
    pp->port = test_free_port();
    assert_true(pp->port > 0);
    snprintf(pp->dir, sizeof pp->dir, "%s/%s", scratch, tag);
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", pp->dir);
    assert_int_equal(system(cmd), 0);
    snprintf(pidfile, sizeof pidfile, "%s.pid", pp->dir);
    snprintf(cmd, sizeof cmd, "storescp -aet PEER %s -od '%s' %u >'%s.log' 2>&1 & echo $! > '%s'", args, pp->dir, pp->port,
             pp->dir, pidfile);
    assert_int_equal(system(cmd), 0);
    FILE *f = fopen(pidfile, "r");
    assert_non_null(f);
    assert_int_equal(fscanf(f, "%d", &pp->pid), 1);
    fclose(f);
    samda_dicom_peer peer = {"SAMDA", "PEER", "127.0.0.1", pp->port, NULL};
    for (int i = 0; i < 100; i++) {
        if (samda_dicom_echo(&peer, 2, NULL) == SAMDA_OK) return;
        usleep(50000);
    }
    snprintf(cmd, sizeof cmd, "cat '%s.log'", pp->dir);
    run_capture(cmd, out, sizeof out);
    fail_msg("storescp did not start: %s", out);
}

static void stop_proc(peer_proc *pp)
{
    if (pp->pid > 0) {
        kill(pp->pid, SIGKILL);
        pp->pid = 0;
    }
}

static void test_status_table(void **state)
{
    (void)state;
    static const struct { unsigned status; bool transient; } rows[] = {
        {0x0000, false}, {0xB000, false}, {0xB007, false}, {0x0001, false}, /* not failures */
        {0xA700, true},  {0xA7FF, true},  {0x0110, true},  {0x0213, true},  {0xFE00, true},
        {0x0111, false}, {0x0122, false}, {0x0124, false}, {0xA900, false}, {0xA9FF, false},
        {0xC000, false}, {0xCFFF, false}, {0x0211, false}, {0xD123, false},
    };
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++)
        if (samda_dicom_status_is_transient(rows[i].status) != rows[i].transient)
            fail_msg("0x%04X: expected %s", rows[i].status, rows[i].transient ? "transient" : "not transient");
    /* samda's own SCP statuses: ENOSPC is retried, EEXIST is not */
    assert_true(samda_dicom_status_is_transient(samda_status_dicom(SAMDA_ENOSPC)));
    assert_false(samda_dicom_status_is_transient(samda_status_dicom(SAMDA_EEXIST)));
    assert_false(samda_dicom_status_is_transient(samda_status_dicom(SAMDA_EBADDICOM)));
}

static void test_store_series_to_storescp(void **state)
{
    (void)state;
    if (!tool_available("storescp") || !have_series) skip();
    peer_proc pp;
    start_storescp(&pp, "accept", "");
    /* the series, plus a JPEG-LS file storescp (uncompressed only by default) must get decoded,
     * plus JPEG 2000 that samda cannot decode, plus a missing file */
    const char *paths[23];
    for (int i = 0; i < 20; i++) paths[i] = series[i];
    paths[20] = fixture("dicom/transfer-syntaxes/jpeg_ls.dcm");
    paths[21] = fixture("dicom/transfer-syntaxes/jpeg_2000.dcm");
    char missing[4300];
    snprintf(missing, sizeof missing, "%s/missing.dcm", scratch);
    paths[22] = missing;
    samda_store_result r[23];
    samda_store_outcome oc;
    samda_error e;
    samda_dicom_peer peer = {"SAMDA", "PEER", "127.0.0.1", pp.port, NULL};
    samda_status st = samda_dicom_store(&peer, paths, 23, 10, r, &oc, &e);
    assert_int_equal(oc, SAMDA_STORE_SOME_FAILED);
    assert_int_equal(st, SAMDA_ENOTSUP); /* first failure: the JPEG 2000 file */
    assert_non_null(strstr(e.message, "2 of 23"));
    for (int i = 0; i < 20; i++) {
        if (r[i].status != SAMDA_OK) fail_msg("%d: %s", i, r[i].message);
        assert_true(r[i].responded);
        assert_int_equal(r[i].dicom_status, 0);
        assert_false(r[i].transcoded);
    }
    assert_int_equal(r[20].status, SAMDA_OK);
    assert_true(r[20].transcoded);
    assert_int_equal(r[21].status, SAMDA_ENOTSUP);
    assert_false(r[21].is_transient);
    assert_false(r[21].responded);
    assert_non_null(strstr(r[21].message, "JPEG 2000"));
    assert_int_equal(r[22].status, SAMDA_ENOENT);
    assert_false(r[22].is_transient);
    stop_proc(&pp);
    assert_int_equal(count_files(pp.dir), 21);
    /* the decoded one arrived uncompressed; the others in their own syntax, bit for bit the same data set */
    char cmd[9000], out[512];
    snprintf(cmd, sizeof cmd, "for f in '%s'/*; do dcmdump -q -M +P 0002,0010 \"$f\"; done | sort | uniq -c", pp.dir);
    assert_int_equal(run_capture(cmd, out, sizeof out), 0);
    assert_null(strstr(out, "JPEGLS"));
    assert_non_null(strstr(out, "21 (0002,0010) UI =LittleEndianExplicit"));
}

/* A peer that accepts JPEG-LS gets it as stored (no decoding): bit-preserving pixel data. */
static void test_compressed_sent_as_stored(void **state)
{
    (void)state;
    const char *jls = fixture("dicom/transfer-syntaxes/jpeg_ls.dcm");
    if (!tool_available("storescp") || !path_exists(jls)) skip();
    peer_proc pp;
    start_storescp(&pp, "acceptall", "+xa");
    samda_dicom_peer peer = {"SAMDA", "PEER", "127.0.0.1", pp.port, NULL};
    const char *paths[] = {jls};
    samda_store_result r[1];
    samda_store_outcome oc;
    samda_error e;
    if (samda_dicom_store(&peer, paths, 1, 10, r, &oc, &e) != SAMDA_OK) fail_msg("%s", e.message);
    assert_false(r[0].transcoded);
    stop_proc(&pp);
    char cmd[9000], out[512];
    snprintf(cmd, sizeof cmd, "dcmdump -q -M +P 0002,0010 '%s'/*", pp.dir);
    assert_int_equal(run_capture(cmd, out, sizeof out), 0);
    assert_non_null(strstr(out, "=JPEGLS")); /* the fixture is JPEG-LS near-lossless */
    /* the compressed pixel data arrived unchanged: same encapsulated bytes as the source */
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 -c 'import glob,sys,pydicom; a=pydicom.dcmread(sys.argv[1]).PixelData; "
             "b=pydicom.dcmread(glob.glob(sys.argv[2]+\"/*\")[0]).PixelData; sys.exit(0 if a==b and len(a)>1000 else 1)' "
             "'%s' '%s'", jls, pp.dir);
    assert_int_equal(system(cmd), 0);
}

/* storescp limited to CT: an MR series is refused for its SOP class, permanently. */
static void test_sop_class_refused(void **state)
{
    (void)state;
    if (!tool_available("storescp") || !have_series) skip();
    char cfg[4300];
    snprintf(cfg, sizeof cfg, "%s/ctonly.cfg", scratch);
    FILE *f = fopen(cfg, "w");
    assert_non_null(f);
    fputs("[[TransferSyntaxes]]\n[Uncompressed]\nTransferSyntax1 = LocalEndianExplicit\n"
          "TransferSyntax2 = LittleEndianImplicit\n[[PresentationContexts]]\n[CTOnly]\n"
          "PresentationContext1 = VerificationSOPClass\\Uncompressed\n"
          "PresentationContext2 = CTImageStorage\\Uncompressed\n[[Profiles]]\n[CTOnly]\n"
          "PresentationContexts = CTOnly\n", f);
    fclose(f);
    char args[4400];
    snprintf(args, sizeof args, "-xf '%s' CTOnly", cfg);
    peer_proc pp;
    start_storescp(&pp, "ctonly", args);
    samda_dicom_peer peer = {"SAMDA", "PEER", "127.0.0.1", pp.port, NULL};
    samda_store_result r[3];
    samda_store_outcome oc;
    samda_error e;
    /* only MR: no context accepted at all */
    assert_int_equal(samda_dicom_store(&peer, series, 2, 10, r, &oc, &e), SAMDA_ENOTSUP);
    assert_int_equal(oc, SAMDA_STORE_PERMANENT);
    assert_false(r[0].is_transient);
    assert_int_equal(r[1].status, SAMDA_ENOTSUP);
    /* CT and MR together: the CT goes, the MR fails permanently */
    char ct[4096];
    snprintf(ct, sizeof ct, "%s/CT_small.dcm", PYDICOM_TEST_FILES);
    const char *mixed[] = {series[0], ct, series[1]};
    assert_int_equal(samda_dicom_store(&peer, mixed, 3, 10, r, &oc, &e), SAMDA_ENOTSUP);
    assert_int_equal(oc, SAMDA_STORE_SOME_FAILED);
    assert_int_equal(r[0].status, SAMDA_ENOTSUP);
    assert_false(r[0].is_transient);
    assert_int_equal(r[1].status, SAMDA_OK);
    assert_int_equal(r[2].status, SAMDA_ENOTSUP);
    assert_non_null(strstr(r[2].message, "1.2.840.10008.5.1.4.1.1.4")); /* names the SOP class */
    stop_proc(&pp);
    assert_int_equal(count_files(pp.dir), 1);
}

static void test_closed_port(void **state)
{
    (void)state;
    if (!have_series) skip();
    samda_dicom_peer peer = {"SAMDA", "NOBODY", "127.0.0.1", test_free_port(), NULL};
    samda_store_result r[3];
    samda_store_outcome oc;
    samda_error e;
    assert_int_equal(samda_dicom_store(&peer, series, 3, 3, r, &oc, &e), SAMDA_ENETWORK);
    assert_int_equal(oc, SAMDA_STORE_TRANSIENT);
    assert_non_null(strstr(e.message, "connection refused"));
    for (int i = 0; i < 3; i++) {
        assert_int_equal(r[i].status, SAMDA_ENETWORK);
        assert_true(r[i].is_transient);
        assert_false(r[i].responded);
    }
    samda_dicom_peer bad = {"", "NOBODY", "127.0.0.1", 104, NULL};
    assert_int_equal(samda_dicom_store(&bad, series, 3, 3, r, &oc, &e), SAMDA_EINVAL);
    assert_int_equal(oc, SAMDA_STORE_PERMANENT);
    assert_int_equal(samda_dicom_store(&peer, NULL, 3, 3, r, &oc, &e), SAMDA_EINVAL);
    assert_int_equal(samda_dicom_store(&peer, series, 0, 3, NULL, &oc, &e), SAMDA_OK);
    assert_int_equal(oc, SAMDA_STORE_ALL_STORED);
}

/* storescp aborts the association during the first transfer: everything is transient. */
static void test_peer_aborts(void **state)
{
    (void)state;
    if (!tool_available("storescp") || !have_series) skip();
    peer_proc pp;
    start_storescp(&pp, "abort", "--abort-during");
    samda_dicom_peer peer = {"SAMDA", "PEER", "127.0.0.1", pp.port, NULL};
    samda_store_result r[5];
    samda_store_outcome oc;
    samda_error e;
    samda_status st = samda_dicom_store(&peer, series, 5, 5, r, &oc, &e);
    assert_int_equal(oc, SAMDA_STORE_TRANSIENT);
    assert_true(st == SAMDA_ENETWORK || st == SAMDA_ETIMEDOUT);
    for (int i = 0; i < 5; i++) {
        assert_int_not_equal(r[i].status, SAMDA_OK);
        assert_true(r[i].is_transient);
    }
    assert_non_null(strstr(r[4].message, "not sent"));
    stop_proc(&pp);
}

/* storescp killed (SIGKILL) in the middle of a 20-instance association, once two files arrived. */
static void *killer(void *arg)
{
    peer_proc *pp = arg;
    for (int i = 0; i < 600 && count_files(pp->dir) < 2; i++) usleep(50000);
    kill(pp->pid, SIGKILL);
    return NULL;
}

static void test_peer_killed(void **state)
{
    (void)state;
    if (!tool_available("storescp") || !have_series) skip();
    peer_proc pp;
    start_storescp(&pp, "killed", "--sleep-after 1");
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, killer, &pp), 0);
    samda_dicom_peer peer = {"SAMDA", "PEER", "127.0.0.1", pp.port, NULL};
    samda_store_result r[20];
    samda_store_outcome oc;
    samda_error e;
    samda_status st = samda_dicom_store(&peer, series, 20, 10, r, &oc, &e);
    assert_int_equal(oc, SAMDA_STORE_TRANSIENT);
    assert_true(st == SAMDA_ENETWORK || st == SAMDA_ETIMEDOUT);
    int stored = 0, failed = 0;
    for (int i = 0; i < 20; i++) {
        if (r[i].status == SAMDA_OK) {
            assert_int_equal(failed, 0); /* successes come first, in order */
            stored++;
        } else {
            assert_true(r[i].is_transient);
            failed++;
        }
    }
    pthread_join(th, NULL);
    print_message("killed after %d stored (first failure: %s)\n", stored, r[stored < 20 ? stored : 0].message);
    assert_true(stored >= 1 && stored < 20);
    pp.pid = 0;
}

/* ---- against samda's own SCP -------------------------------------------------------------------- */

static struct {
    pthread_mutex_t mu;
    int calls;
    int fail_at;            /* on_store call number (1-based) that fails */
    samda_status fail_with;
    int hold_ms;            /* sleep in on_store */
    samda_assoc_verdict verdict;
} scp_ctl = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void scp_on_assoc(void *ctx, const samda_assoc_info *a, samda_assoc_decision *out)
{
    (void)ctx;
    (void)a;
    out->verdict = scp_ctl.verdict;
}

static samda_status scp_on_store(void *ctx, const samda_assoc_info *a, const samda_store_request *req,
                                 samda_store_response *resp)
{
    (void)ctx;
    (void)a;
    (void)req;
    pthread_mutex_lock(&scp_ctl.mu);
    int n = ++scp_ctl.calls;
    int hold = scp_ctl.hold_ms;
    samda_status fail = n == scp_ctl.fail_at ? scp_ctl.fail_with : SAMDA_OK;
    pthread_mutex_unlock(&scp_ctl.mu);
    if (hold) usleep((useconds_t)hold * 1000);
    if (fail != SAMDA_OK) snprintf(resp->message, sizeof resp->message, "test refuses it");
    return fail;
}

static samda_scp *start_samda_scp(char *tmp, size_t n)
{
    snprintf(tmp, n, "%s/scp-tmp", scratch);
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", tmp);
    assert_int_equal(system(cmd), 0);
    samda_scp_params p;
    samda_scp_params_init(&p);
    p.port = 0;
    p.temp_dir = tmp;
    p.on_association = scp_on_assoc;
    p.on_store = scp_on_store;
    samda_error e;
    samda_scp *scp = samda_scp_start(&p, &e);
    if (!scp) fail_msg("%s", e.message);
    return scp;
}

static void test_samda_scp_statuses(void **state)
{
    (void)state;
    if (!have_series) skip();
    char tmp[4300];
    samda_scp *scp = start_samda_scp(tmp, sizeof tmp);
    samda_dicom_peer peer = {"SAMDA", "SAMDA", "127.0.0.1", samda_scp_port(scp), NULL};
    samda_store_result r[4];
    samda_store_outcome oc;
    samda_error e;

    /* ENOSPC -> A700: transient; EEXIST -> 0111: permanent; the others stored */
    static const struct { samda_status fail; unsigned dicom; bool transient; samda_status got; } cases[] = {
        {SAMDA_ENOSPC, 0xA700, true, SAMDA_EBUSY},
        {SAMDA_EEXIST, 0x0111, false, SAMDA_EEXIST},
        {SAMDA_EBADDICOM, 0xC000, false, SAMDA_EBADDICOM},
        {SAMDA_EIO, 0x0110, true, SAMDA_ENETWORK},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        pthread_mutex_lock(&scp_ctl.mu);
        scp_ctl.calls = 0;
        scp_ctl.fail_at = 2;
        scp_ctl.fail_with = cases[k].fail;
        scp_ctl.verdict = SAMDA_ASSOC_ACCEPT;
        pthread_mutex_unlock(&scp_ctl.mu);
        samda_status st = samda_dicom_store(&peer, series, 4, 10, r, &oc, &e);
        assert_int_equal(st, cases[k].got);
        assert_int_equal(oc, SAMDA_STORE_SOME_FAILED);
        assert_int_equal(r[0].status, SAMDA_OK);
        assert_true(r[1].responded);
        assert_int_equal(r[1].dicom_status, cases[k].dicom);
        assert_int_equal(r[1].is_transient, cases[k].transient);
        assert_int_equal(r[1].status, cases[k].got);
        assert_non_null(strstr(r[1].message, "test refuses it")); /* the peer's ErrorComment */
        assert_int_equal(r[2].status, SAMDA_OK);
        assert_int_equal(r[3].status, SAMDA_OK);
    }

    /* rejected-transient (busy) and rejected-permanent (calling AE) */
    scp_ctl.verdict = SAMDA_ASSOC_REJECT_BUSY;
    assert_int_equal(samda_dicom_store(&peer, series, 2, 5, r, &oc, &e), SAMDA_EBUSY);
    assert_int_equal(oc, SAMDA_STORE_TRANSIENT);
    assert_true(r[0].is_transient);
    scp_ctl.verdict = SAMDA_ASSOC_REJECT_CALLING_AE;
    assert_int_equal(samda_dicom_store(&peer, series, 2, 5, r, &oc, &e), SAMDA_EFORBIDDEN);
    assert_int_equal(oc, SAMDA_STORE_PERMANENT);
    assert_false(r[1].is_transient);
    assert_non_null(strstr(e.message, "calling AE title"));
    samda_dicom_peer wrong = peer;
    wrong.called_ae = "NOTSAMDA";
    scp_ctl.verdict = SAMDA_ASSOC_ACCEPT;
    assert_int_equal(samda_dicom_store(&wrong, series, 1, 5, r, &oc, &e), SAMDA_EFORBIDDEN);
    assert_int_equal(oc, SAMDA_STORE_PERMANENT);

    /* a peer slower than the timeout: ETIMEDOUT, transient, the rest not sent */
    scp_ctl.fail_at = 0;
    scp_ctl.hold_ms = 2500;
    assert_int_equal(samda_dicom_store(&peer, series, 3, 1, r, &oc, &e), SAMDA_ETIMEDOUT);
    assert_int_equal(oc, SAMDA_STORE_TRANSIENT);
    assert_int_equal(r[0].status, SAMDA_ETIMEDOUT);
    assert_true(r[0].is_transient);
    assert_true(r[2].is_transient);
    scp_ctl.hold_ms = 0;

    /* throughput, printed only (never a pass/fail criterion) */
    scp_ctl.verdict = SAMDA_ASSOC_ACCEPT;
    samda_store_result rr[20];
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int k = 0; k < 3; k++) assert_int_equal(samda_dicom_store(&peer, series, 20, 10, rr, &oc, &e), SAMDA_OK);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double dt = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    print_message("C-STORE SCU to samda's SCP on loopback: 60 MR instances (128 KiB pixel data) in %.2f s, %.0f/s\n", dt,
                  60 / dt);
    samda_scp_stop(scp, 3000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_table),
        cmocka_unit_test(test_store_series_to_storescp),
        cmocka_unit_test(test_compressed_sent_as_stored),
        cmocka_unit_test(test_sop_class_refused),
        cmocka_unit_test(test_closed_port),
        cmocka_unit_test(test_peer_aborts),
        cmocka_unit_test(test_peer_killed),
        cmocka_unit_test(test_samda_scp_statuses),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
