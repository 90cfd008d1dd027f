/* DICOM TLS (dicom/tls.cpp with scp.cpp, scu.cpp, echo.cpp) against DCMTK's storescu/storescp with
 * +tls, and openssl s_client. A test CA, server and client certificates, and an untrusted CA with
 * its own client certificate are made at test time with the openssl command. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/ssl.h>
#include <pthread.h>

#include "dicom.h"
#include "dicom_test_util.h"
#include "../../test_port.h"

static char scratch[4096], pki[4200], temp_dir[4200];
static int ready;
static char ca_crt[4300], server_crt[4300], server_key[4300], client_crt[4300], client_key[4300];
static char rogue_ca[4300], rogue_crt[4300], rogue_key[4300];
static const char *mr_file;

/* CA -> server (localhost, 127.0.0.1) and client; a second, untrusted CA -> rogue client. RSA keys:
 * the BCP 195 profile's suites are RSA ones. */
static int make_pki(void)
{
    char cmd[8192], out[4096];
    snprintf(cmd, sizeof cmd,
             "set -e; cd '%s'; "
             "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\nextendedKeyUsage=serverAuth,clientAuth\\n' > ext.cnf; "
             "mk_ca() { openssl req -x509 -newkey rsa:2048 -nodes -keyout $1.key -out $1.crt -days 2 -subj \"/CN=$1\"; }; "
             "mk_cert() { openssl req -newkey rsa:2048 -nodes -keyout $1.key -out $1.csr -subj \"/CN=$3\"; "
             "  openssl x509 -req -in $1.csr -CA $2.crt -CAkey $2.key -CAcreateserial -out $1.crt -days 2 -extfile ext.cnf; }; "
             "mk_ca ca; mk_ca rogueca; mk_cert server ca localhost; mk_cert client ca samda-client; "
             "mk_cert rogue rogueca intruder",
             pki);
    if (run_capture(cmd, out, sizeof out) != 0) {
        fprintf(stderr, "making the test PKI failed: %s\n", out);
        return -1;
    }
    return 0;
}

static int setup(void **state)
{
    (void)state;
    samda_dicom_init(NULL, NULL);
    if (!scratch_make(scratch, sizeof scratch, "tls")) return -1;
    snprintf(pki, sizeof pki, "%s/pki", scratch);
    snprintf(temp_dir, sizeof temp_dir, "%s/tmp", scratch);
    char cmd[8500];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' '%s'", pki, temp_dir);
    if (system(cmd) != 0) return -1;
    snprintf(ca_crt, sizeof ca_crt, "%s/ca.crt", pki);
    snprintf(server_crt, sizeof server_crt, "%s/server.crt", pki);
    snprintf(server_key, sizeof server_key, "%s/server.key", pki);
    snprintf(client_crt, sizeof client_crt, "%s/client.crt", pki);
    snprintf(client_key, sizeof client_key, "%s/client.key", pki);
    snprintf(rogue_ca, sizeof rogue_ca, "%s/rogueca.crt", pki);
    snprintf(rogue_crt, sizeof rogue_crt, "%s/rogue.crt", pki);
    snprintf(rogue_key, sizeof rogue_key, "%s/rogue.key", pki);
    /* CT_small: DCMTK's tools read it fast (the MR fixture's trailing padding makes them slow) */
    static char ct[4096];
    snprintf(ct, sizeof ct, "%s/CT_small.dcm", PYDICOM_TEST_FILES);
    mr_file = path_exists(ct) ? ct : fixture("dicom/mr-brain-20/brain_001.dcm");
    ready = tool_available("openssl") && tool_available("storescu") && tool_available("storescp") &&
            path_exists(mr_file) && make_pki() == 0;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "[ -f '%s/rx.pid' ] && kill $(cat '%s/rx.pid') 2>/dev/null", scratch, scratch);
    if (system(cmd) == 0) fprintf(stderr, "stopped a storescp left by a failed test\n");
    scratch_remove(scratch);
    samda_dicom_shutdown();
    return 0;
}

static void server_tls(samda_dicom_tls *t)
{
    samda_dicom_tls_init(t);
    t->certificate_file = server_crt;
    t->private_key_file = server_key;
    t->ca_file = ca_crt;
}

static void client_tls(samda_dicom_tls *t)
{
    samda_dicom_tls_init(t);
    t->certificate_file = client_crt;
    t->private_key_file = client_key;
    t->ca_file = ca_crt;
}

/* The SCP's on_event calls for refused handshakes (the only trace such a peer leaves). */
static struct {
    pthread_mutex_t mu;
    int n_handshake_failed, n_bad;
    char last_reason[256];
} events = {PTHREAD_MUTEX_INITIALIZER, 0, 0, ""};

static void on_event(void *ctx, const samda_assoc_info *a, const char *what, const char *reason)
{
    (void)ctx;
    pthread_mutex_lock(&events.mu);
    if (strcmp(what, "TLS handshake failed") == 0) {
        events.n_handshake_failed++;
        /* no association yet: no id, no AE titles; the peer's address and a cause */
        if (a->id != 0 || a->calling_ae[0] || strcmp(a->peer_address, "127.0.0.1") != 0 || !reason || !*reason)
            events.n_bad++;
        snprintf(events.last_reason, sizeof events.last_reason, "%s", reason ? reason : "");
    }
    pthread_mutex_unlock(&events.mu);
}

/* The number of refused handshakes reported, once it reaches want (the SCP's thread reports after
 * the client has seen the refusal) or after 5 s. */
static int handshake_failures(int want)
{
    int n = 0;
    for (int i = 0; i < 250; i++) {
        pthread_mutex_lock(&events.mu);
        n = events.n_handshake_failed;
        assert_int_equal(events.n_bad, 0);
        pthread_mutex_unlock(&events.mu);
        if (n >= want) break;
        usleep(20 * 1000);
    }
    return n;
}

static samda_scp *start_tls_scp(const samda_dicom_tls *t)
{
    samda_scp_params p;
    samda_scp_params_init(&p);
    p.port = 0;
    p.temp_dir = temp_dir;
    p.tls = t;
    p.on_event = on_event;
    samda_error e;
    samda_scp *scp = samda_scp_start(&p, &e);
    if (!scp) fail_msg("%s", e.message);
    return scp;
}

static int storescu(unsigned port, const char *tls_args, char *out, size_t n)
{
    char cmd[9000];
    snprintf(cmd, sizeof cmd, "storescu -to 10 -ta 10 %s -aec SAMDA 127.0.0.1 %u '%s'", tls_args, port, mr_file);
    return run_capture(cmd, out, n);
}

/* samda's SCP with TLS, clients: DCMTK's storescu. */
static void test_scp_with_storescu(void **state)
{
    (void)state;
    if (!ready) skip();
    samda_dicom_tls t;
    server_tls(&t);
    samda_scp *scp = start_tls_scp(&t);
    unsigned port = samda_scp_port(scp);
    char args[9000], out[4096];
    samda_scp_counters c;

    /* a client with a certificate from the trusted CA stores */
    snprintf(args, sizeof args, "+tls '%s' '%s' +cf '%s'", client_key, client_crt, ca_crt);
    if (storescu(port, args, out, sizeof out) != 0) fail_msg("storescu +tls: %s", out);
    samda_scp_counters_get(scp, &c);
    assert_int_equal(c.stores_ok, 1);

    /* a certificate from another CA is refused in the handshake, and on_event says so */
    int failures = handshake_failures(0);
    snprintf(args, sizeof args, "+tls '%s' '%s' +cf '%s'", rogue_key, rogue_crt, ca_crt);
    assert_int_not_equal(storescu(port, args, out, sizeof out), 0);
    assert_int_equal(handshake_failures(failures + 1), failures + 1);
    /* no certificate at all (anonymous TLS): refused, a certificate is required by default */
    snprintf(args, sizeof args, "+tla +cf '%s'", ca_crt);
    assert_int_not_equal(storescu(port, args, out, sizeof out), 0);
    assert_int_equal(handshake_failures(failures + 2), failures + 2);
    /* plain TCP to the TLS port */
    assert_int_not_equal(storescu(port, "", out, sizeof out), 0);
    assert_int_equal(handshake_failures(failures + 3), failures + 3);
    samda_dicom_peer plain = {"SAMDA", "SAMDA", "127.0.0.1", port, NULL};
    assert_int_not_equal(samda_dicom_echo(&plain, 3, NULL), SAMDA_OK);
    /* a client that does not trust our server's CA gives up itself */
    snprintf(args, sizeof args, "+tls '%s' '%s' +cf '%s'", client_key, client_crt, rogue_ca);
    assert_int_not_equal(storescu(port, args, out, sizeof out), 0);

    samda_scp_counters_get(scp, &c);
    assert_int_equal(c.stores_ok, 1);
    assert_int_equal(c.associations_accepted, 1);

    /* and the SCP still serves a good client after all that */
    snprintf(args, sizeof args, "+tls '%s' '%s' +cf '%s'", client_key, client_crt, ca_crt);
    if (storescu(port, args, out, sizeof out) != 0) fail_msg("storescu +tls after refusals: %s", out);
    samda_scp_stop(scp, 1000);
}

/* A TLS client that sends its ClientHello and then nothing more: the SCP answers with its own first
 * flight and waits for the client's second. Returns the connected socket (the caller closes it). */
static int stalled_tls_client(unsigned port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) fail_msg("connect to port %u failed", port);
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(ctx);
    SSL *ssl = SSL_new(ctx);
    assert_non_null(ssl);
    BIO *in = BIO_new(BIO_s_mem()), *out = BIO_new(BIO_s_mem());
    SSL_set_bio(ssl, in, out); /* ssl owns both */
    assert_int_equal(SSL_get_error(ssl, SSL_connect(ssl)), SSL_ERROR_WANT_READ);
    char *hello = NULL;
    long n = BIO_get_mem_data(out, &hello);
    assert_true(n > 0);
    assert_int_equal(send(fd, hello, (size_t)n, 0), n);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    return fd;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Peers that stop in the middle of the TLS handshake hold only their own connection: a good client is
 * served meanwhile, and the SCP closes them after acse_timeout. (Before the handshake moved off the
 * listener thread, the first of them held every other client until DCMTK's 60 s socket timeout.) */
static void test_stalled_handshakes(void **state)
{
    (void)state;
    if (!ready) skip();
    samda_dicom_tls t;
    server_tls(&t);
    samda_scp_params p;
    samda_scp_params_init(&p);
    p.port = 0;
    p.temp_dir = temp_dir;
    p.tls = &t;
    p.acse_timeout_s = 10;
    samda_error e;
    samda_scp *scp = samda_scp_start(&p, &e);
    if (!scp) fail_msg("%s", e.message);
    unsigned port = samda_scp_port(scp);
    const double t0 = now_s();
    int stalled[3];
    for (int i = 0; i < 3; i++) stalled[i] = stalled_tls_client(port);
    usleep(300 * 1000); /* the SCP answers their ClientHello and waits */

    char args[9000], out[4096];
    snprintf(args, sizeof args, "+tls '%s' '%s' +cf '%s'", client_key, client_crt, ca_crt);
    if (storescu(port, args, out, sizeof out) != 0) fail_msg("storescu +tls beside stalled handshakes: %s", out);
    const double served = now_s() - t0;
    if (served >= 8.0) fail_msg("a good client waited %.1f s behind stalled TLS handshakes", served);

    /* each stalled connection is closed by the SCP once acse_timeout has passed */
    for (int i = 0; i < 3; i++) {
        struct timeval tv = {.tv_sec = 20};
        setsockopt(stalled[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        char buf[4096];
        ssize_t n;
        while ((n = recv(stalled[i], buf, sizeof buf, 0)) > 0) {
        }
        const double closed = now_s() - t0;
        if (n != 0 && !(n < 0 && errno == ECONNRESET))
            fail_msg("stalled client %d: not closed by the SCP after %.1f s", i, closed);
        if (closed < 9.0 || closed > 25.0)
            fail_msg("stalled client %d closed after %.1f s, acse_timeout is 10 s", i, closed);
        close(stalled[i]);
    }
    samda_scp_counters c;
    samda_scp_counters_get(scp, &c);
    assert_int_equal(c.stores_ok, 1);
    assert_int_equal(c.associations_accepted, 1);
    assert_true(c.associations_rejected >= 3);

    /* stopping with a handshake under way does not wait for it */
    stalled[0] = stalled_tls_client(port);
    usleep(200 * 1000);
    const double t1 = now_s();
    samda_scp_stop(scp, 1000);
    if (now_s() - t1 > 3.0) fail_msg("samda_scp_stop took %.1f s with a handshake under way", now_s() - t1);
    close(stalled[0]);
}

/* require_peer_certificate = false: anonymous TLS clients are served, bad certificates still not. */
static void test_scp_optional_client_cert(void **state)
{
    (void)state;
    if (!ready) skip();
    samda_dicom_tls t;
    server_tls(&t);
    t.require_peer_certificate = false;
    samda_scp *scp = start_tls_scp(&t);
    unsigned port = samda_scp_port(scp);
    char args[9000], out[4096];
    snprintf(args, sizeof args, "+tla +cf '%s'", ca_crt);
    if (storescu(port, args, out, sizeof out) != 0) fail_msg("storescu +tla: %s", out);
    snprintf(args, sizeof args, "+tls '%s' '%s' +cf '%s'", rogue_key, rogue_crt, ca_crt);
    assert_int_not_equal(storescu(port, args, out, sizeof out), 0);
    samda_scp_stop(scp, 1000);
}

/* Only TLS 1.2 and newer are spoken (BCP 195 non-downgrading). */
static void test_protocol_versions(void **state)
{
    (void)state;
    if (!ready) skip();
    samda_dicom_tls t;
    server_tls(&t);
    samda_scp *scp = start_tls_scp(&t);
    unsigned port = samda_scp_port(scp);
    char cmd[9000], out[8192];
    snprintf(cmd, sizeof cmd, "echo | timeout 10 openssl s_client -connect 127.0.0.1:%u -tls1_2 -cert '%s' -key '%s' "
             "-CAfile '%s' 2>&1 | grep -E '^ *Protocol *:|Verify return code'", port, client_crt, client_key, ca_crt);
    assert_int_equal(run_capture(cmd, out, sizeof out), 0);
    assert_non_null(strstr(out, "TLSv1.2"));
    assert_non_null(strstr(out, "Verify return code: 0 (ok)"));
    snprintf(cmd, sizeof cmd, "echo | timeout 10 openssl s_client -connect 127.0.0.1:%u -tls1_1 -cipher 'DEFAULT:@SECLEVEL=0' "
             "-cert '%s' -key '%s' -CAfile '%s' 2>&1 | grep -E '^ *Protocol *:|Cipher is'", port, client_crt, client_key,
             ca_crt);
    run_capture(cmd, out, sizeof out);
    if (strstr(out, "TLSv1.1") && !strstr(out, "Cipher is (NONE)")) fail_msg("TLS 1.1: %s", out); /* no session */
    samda_scp_stop(scp, 1000);
}

/* Our SCU (C-STORE and C-ECHO) against storescp +tls, and against our own TLS SCP. */
static void test_scu_with_storescp(void **state)
{
    (void)state;
    if (!ready) skip();
    unsigned port = test_free_port();
    char cmd[9000], dir[4300];
    snprintf(dir, sizeof dir, "%s/rx", scratch);
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && storescp -aet PEER +tls '%s' '%s' +cf '%s' -od '%s' %u >'%s.log' 2>&1 & "
             "echo $! > '%s.pid'", dir, server_key, server_crt, ca_crt, dir, port, dir, dir);
    assert_int_equal(system(cmd), 0);
    samda_dicom_tls t;
    client_tls(&t);
    samda_dicom_peer peer = {"SAMDA", "PEER", "127.0.0.1", port, &t};
    samda_error e;
    samda_status st = SAMDA_ENETWORK;
    for (int i = 0; i < 100 && st != SAMDA_OK; i++) {
        st = samda_dicom_echo(&peer, 3, &e);
        if (st != SAMDA_OK) usleep(50000);
    }
    if (st != SAMDA_OK) fail_msg("C-ECHO over TLS: %s", e.message);

    const char *paths[] = {mr_file};
    samda_store_result r[1];
    samda_store_outcome oc;
    st = samda_dicom_store(&peer, paths, 1, 10, r, &oc, &e);
    if (st != SAMDA_OK) fail_msg("C-STORE over TLS: %s", e.message);
    assert_int_equal(oc, SAMDA_STORE_ALL_STORED);

    /* trusting the wrong CA: the server is not verified, permanently */
    samda_dicom_tls wrong = t;
    wrong.ca_file = rogue_ca;
    peer.tls = &wrong;
    st = samda_dicom_store(&peer, paths, 1, 10, r, &oc, &e);
    if (st != SAMDA_EFORBIDDEN) fail_msg("wrong CA: %s", e.message);
    assert_int_equal(oc, SAMDA_STORE_PERMANENT);
    assert_false(r[0].is_transient);
    assert_non_null(strstr(e.message, "TLS"));
    assert_int_equal(samda_dicom_echo(&peer, 3, &e), SAMDA_EFORBIDDEN);
    /* plain TCP to a TLS peer fails too */
    peer.tls = NULL;
    assert_int_not_equal(samda_dicom_store(&peer, paths, 1, 5, r, &oc, &e), SAMDA_OK);
    assert_int_not_equal(oc, SAMDA_STORE_ALL_STORED);

    snprintf(cmd, sizeof cmd, "kill $(cat '%s.pid')", dir);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(count_files(dir), 1);

    /* our SCU against our SCP, both with TLS */
    samda_dicom_tls st_tls;
    server_tls(&st_tls);
    samda_scp *scp = start_tls_scp(&st_tls);
    samda_dicom_peer self = {"SAMDA", "SAMDA", "127.0.0.1", samda_scp_port(scp), &t};
    assert_int_equal(samda_dicom_store(&self, paths, 1, 10, r, &oc, &e), SAMDA_OK);
    assert_int_equal(samda_dicom_echo(&self, 5, &e), SAMDA_OK);
    samda_scp_stop(scp, 1000);
}

static void test_settings_checked(void **state)
{
    (void)state;
    if (!ready) skip();
    samda_dicom_tls t;
    samda_error e;
    server_tls(&t);
    assert_int_equal(samda_dicom_tls_check(&t, true, &e), SAMDA_OK);
    t.private_key_file = client_key; /* not the server certificate's key */
    assert_int_equal(samda_dicom_tls_check(&t, true, &e), SAMDA_ECONFIG);
    assert_non_null(strstr(e.message, "does not match"));
    server_tls(&t);
    t.ca_file = NULL;
    assert_int_equal(samda_dicom_tls_check(&t, true, &e), SAMDA_EINVAL);
    server_tls(&t);
    t.certificate_file = "/nonexistent/server.crt";
    assert_int_equal(samda_dicom_tls_check(&t, true, &e), SAMDA_ECONFIG);
    assert_non_null(strstr(e.message, "/nonexistent/server.crt"));
    samda_dicom_tls_init(&t);
    t.ca_file = ca_crt;
    assert_int_equal(samda_dicom_tls_check(&t, false, &e), SAMDA_OK); /* SCU without client certificate */
    assert_int_equal(samda_dicom_tls_check(&t, true, &e), SAMDA_EINVAL); /* SCP needs one */
    t.ca_file = server_key; /* not a certificate */
    assert_int_equal(samda_dicom_tls_check(&t, false, &e), SAMDA_ECONFIG);
    assert_int_equal(samda_dicom_tls_check(NULL, false, &e), SAMDA_EINVAL);

    /* an SCP with bad TLS settings does not start */
    server_tls(&t);
    t.private_key_file = client_key;
    samda_scp_params p;
    samda_scp_params_init(&p);
    p.port = 0;
    p.temp_dir = temp_dir;
    p.tls = &t;
    assert_null(samda_scp_start(&p, &e));
    assert_int_equal(e.code, SAMDA_ECONFIG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scp_with_storescu),
        cmocka_unit_test(test_scp_optional_client_cert),
        cmocka_unit_test(test_stalled_handshakes),
        cmocka_unit_test(test_protocol_versions),
        cmocka_unit_test(test_scu_with_storescp),
        cmocka_unit_test(test_settings_checked),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
