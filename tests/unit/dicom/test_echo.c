/* dicom/echo.cpp: C-ECHO SCU against DCMTK's storescp (a subprocess) and against a closed port. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "dicom.h"
#include "dicom_test_util.h"
#include "../../test_port.h"

static char scratch[4096];

static int setup(void **state)
{
    (void)state;
    samda_dicom_init(NULL, NULL);
    return scratch_make(scratch, sizeof scratch, "echo") ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    scratch_remove(scratch);
    samda_dicom_shutdown();
    return 0;
}

static void test_echo_storescp(void **state)
{
    (void)state;
    if (!tool_available("storescp")) skip();
    unsigned port = test_free_port();
    assert_true(port > 0);
    char cmd[8400];
    /* --refuse? no: storescp accepts any calling AE; -aet sets its own title (checked below). */
    snprintf(cmd, sizeof cmd, "storescp -aet PEERSCP -od '%s' %u >/dev/null 2>&1 & echo $! > '%s/pid'", scratch, port,
             scratch);
    assert_int_equal(system(cmd), 0);
    samda_dicom_peer peer = {"SAMDA", "PEERSCP", "127.0.0.1", port, NULL};
    samda_error e;
    samda_status st = SAMDA_ENETWORK;
    for (int i = 0; i < 50 && st != SAMDA_OK; i++) { /* wait for storescp to listen */
        st = samda_dicom_echo(&peer, 5, &e);
        if (st != SAMDA_OK) usleep(100000);
    }
    if (st != SAMDA_OK) fail_msg("%s", e.message);
    /* storescp checks nothing about AE titles by default; a bad peer description is ours to refuse */
    samda_dicom_peer bad = {"", "PEERSCP", "127.0.0.1", port, NULL};
    assert_int_equal(samda_dicom_echo(&bad, 5, &e), SAMDA_EINVAL);
    bad.calling_ae = "SAMDA";
    bad.port = 70000;
    assert_int_equal(samda_dicom_echo(&bad, 5, &e), SAMDA_EINVAL);
    assert_int_equal(samda_dicom_echo(NULL, 5, &e), SAMDA_EINVAL);
    snprintf(cmd, sizeof cmd, "kill $(cat '%s/pid')", scratch);
    assert_int_equal(system(cmd), 0);
}

static void test_echo_closed_port(void **state)
{
    (void)state;
    unsigned port = test_free_port();
    samda_dicom_peer peer = {"SAMDA", "NOBODY", "127.0.0.1", port, NULL};
    samda_error e;
    assert_int_equal(samda_dicom_echo(&peer, 3, &e), SAMDA_ENETWORK);
    if (!strstr(e.message, "connection refused")) fail_msg("message: %s", e.message);
    assert_non_null(strstr(e.message, "NOBODY@127.0.0.1"));
}

static void test_echo_unknown_host(void **state)
{
    (void)state;
    samda_dicom_peer peer = {"SAMDA", "NOBODY", "no-such-host.invalid", 104, NULL};
    samda_error e;
    samda_status st = samda_dicom_echo(&peer, 3, &e);
    assert_true(st == SAMDA_ENETWORK || st == SAMDA_ETIMEDOUT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_echo_storescp),
        cmocka_unit_test(test_echo_closed_port),
        cmocka_unit_test(test_echo_unknown_host),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
