/* Tests of daemon/stow_client.c against a one-shot HTTP server in a thread: the request it sends
 * (POST URL/studies, multipart/related with one application/dicom part per file, bit for bit, the
 * announced Content-Length exact, basic and bearer Authorization) and how each answer classifies:
 * 200 stored; 202 with FailedSOPSequence failing only the instance named; 401 permanent naming the
 * credentials; 503 transient; nobody listening transient; a missing secret_file named; chunked
 * answers decoded, answers complete at their length or last chunk, an unreadable 202 sent again. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "stow_client.h"

typedef struct server {
    int lfd;
    unsigned port;
    const char *reply;  /* the whole HTTP answer */
    int hold_ms;        /* keep the connection open this long after answering */
    char req[65536];
    size_t req_len;
    pthread_t th;
} server;

static void *serve(void *arg)
{
    server *s = arg;
    int fd = accept(s->lfd, NULL, NULL);
    if (fd < 0) return NULL;
    size_t want = 0;
    ssize_t r;
    while (s->req_len < sizeof s->req - 1 && (r = read(fd, s->req + s->req_len, sizeof s->req - 1 - s->req_len)) > 0) {
        s->req_len += (size_t)r;
        s->req[s->req_len] = 0;
        char *end = strstr(s->req, "\r\n\r\n"), *cl = strcasestr(s->req, "Content-Length:");
        if (end && cl && !want) want = (size_t)(end + 4 - s->req) + strtoull(cl + 15, NULL, 10);
        if (want && s->req_len >= want) break;
    }
    if (write(fd, s->reply, strlen(s->reply)) < 0) {}
    if (s->hold_ms) usleep((useconds_t)s->hold_ms * 1000);
    close(fd);
    return NULL;
}

static void server_start(server *s, const char *reply)
{
    memset(s, 0, sizeof *s);
    s->reply = reply;
    s->lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(s->lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(s->lfd, 1), 0);
    getsockname(s->lfd, (struct sockaddr *)&a, &len);
    s->port = ntohs(a.sin_port);
    pthread_create(&s->th, NULL, serve, s);
}

static void server_stop(server *s)
{
    pthread_join(s->th, NULL);
    close(s->lfd);
}

static char dir[] = "/tmp/samda-test-stow-XXXXXX";
static char f1[600], f2[600], secret[600];

static void target(samdad_stow_target *t, unsigned port, samdad_stow_auth auth)
{
    memset(t, 0, sizeof *t);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/dicom-web/", port);
    assert_true(samda_url_parse(url, &t->url, NULL, 0));
    t->auth = auth;
    t->username = "samda";
    t->secret_file = secret;
    t->timeout_s = 5;
}

static void send2(samdad_stow_target *t, samda_store_result res[2])
{
    const char *paths[2] = {f1, f2}, *uids[2] = {"1.2.3.1", "1.2.3.2"};
    samdad_stow_send(t, paths, uids, 2, res);
}

static void test_request_and_200(void **state)
{
    (void)state;
    server s;
    server_start(&s, "HTTP/1.1 200 OK\r\nContent-Type: application/dicom+json\r\nContent-Length: 2\r\n\r\n{}");
    samdad_stow_target t;
    target(&t, s.port, SAMDAD_STOW_AUTH_BASIC);
    samda_store_result res[2];
    send2(&t, res);
    server_stop(&s);
    assert_int_equal(res[0].status, SAMDA_OK);
    assert_int_equal(res[1].status, SAMDA_OK);
    assert_non_null(strstr(s.req, "POST /dicom-web/studies HTTP/1.1\r\n"));
    assert_non_null(strstr(s.req, "Authorization: Basic c2FtZGE6cEBzcyB3b3Jk\r\n")); /* samda:p@ss word */
    assert_non_null(strstr(s.req, "Content-Type: multipart/related; type=\"application/dicom\"; boundary=samda-stow-"));
    char *body = strstr(s.req, "\r\n\r\n") + 4;
    unsigned long long cl = strtoull(strcasestr(s.req, "Content-Length:") + 15, NULL, 10);
    assert_int_equal(cl, s.req_len - (size_t)(body - s.req));
    assert_non_null(strstr(body, "Content-Type: application/dicom\r\n\r\nDICM-one\r\n"));
    assert_non_null(strstr(body, "Content-Type: application/dicom\r\n\r\nDICM-two-two\r\n"));
    assert_non_null(strstr(body, "--\r\n"));
}

static void test_202_fails_the_named_instance(void **state)
{
    (void)state;
    server s;
    server_start(&s, "HTTP/1.1 202 Accepted\r\nConnection: close\r\n\r\n"
                     "{\"00081198\":{\"vr\":\"SQ\",\"Value\":[{\"00081155\":{\"vr\":\"UI\",\"Value\":[\"1.2.3.2\"]},"
                     "\"00081197\":{\"vr\":\"US\",\"Value\":[272]}}]}}");
    samdad_stow_target t;
    target(&t, s.port, SAMDAD_STOW_AUTH_BEARER);
    samda_store_result res[2];
    send2(&t, res);
    server_stop(&s);
    assert_non_null(strstr(s.req, "Authorization: Bearer p@ss word\r\n"));
    assert_int_equal(res[0].status, SAMDA_OK);
    assert_int_not_equal(res[1].status, SAMDA_OK);
    assert_false(res[1].is_transient);
    assert_non_null(strstr(res[1].message, "FailureReason 0110"));
}

/* Chunked answers are decoded; an answer with Content-Length is complete without waiting for the
 * server to close; a 202 whose failures cannot be read sends everything again. */
static void test_chunked_length_and_unreadable_202(void **state)
{
    (void)state;
    samda_store_result res[2];
    samdad_stow_target t;
    server s;
    server_start(&s, "HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "20\r\n{\"00081198\":{\"vr\":\"SQ\",\"Value\":[\r\n"
                     "4c\r\n{\"00081155\":{\"vr\":\"UI\",\"Value\":[\"1.2.3.1\"]},\"00081197\":{\"Value\":[49152]}}]}}\r\n"
                     "0\r\n\r\n");
    s.hold_ms = 3000;
    target(&t, s.port, SAMDAD_STOW_AUTH_NONE);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    send2(&t, res);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    server_stop(&s);
    assert_true(t1.tv_sec - t0.tv_sec < 2); /* the last chunk ended the answer */
    assert_int_not_equal(res[0].status, SAMDA_OK);
    assert_non_null(strstr(res[0].message, "FailureReason C000"));
    assert_int_equal(res[1].status, SAMDA_OK);

    server_start(&s, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}");
    s.hold_ms = 3000;
    target(&t, s.port, SAMDAD_STOW_AUTH_NONE);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    send2(&t, res);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    server_stop(&s);
    assert_true(t1.tv_sec - t0.tv_sec < 2); /* Content-Length reached */
    assert_int_equal(res[0].status, SAMDA_OK);

    server_start(&s, "HTTP/1.1 202 Accepted\r\nContent-Length: 9\r\n\r\nnot json!");
    target(&t, s.port, SAMDAD_STOW_AUTH_NONE);
    send2(&t, res);
    server_stop(&s);
    assert_true(res[0].status != SAMDA_OK && res[0].is_transient && res[1].status != SAMDA_OK);
    assert_non_null(strstr(res[0].message, "without a readable FailedSOPSequence"));
}

static void test_401_503_refused_missing_secret(void **state)
{
    (void)state;
    samda_store_result res[2];
    samdad_stow_target t;
    server s;
    server_start(&s, "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n");
    target(&t, s.port, SAMDAD_STOW_AUTH_BASIC);
    send2(&t, res);
    server_stop(&s);
    assert_int_equal(res[0].status, SAMDA_EFORBIDDEN);
    assert_false(res[0].is_transient);
    assert_non_null(strstr(res[1].message, "credentials"));
    assert_null(strstr(res[1].message, "p@ss"));

    server_start(&s, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
    target(&t, s.port, SAMDAD_STOW_AUTH_NONE);
    send2(&t, res);
    server_stop(&s);
    assert_true(res[0].is_transient && res[1].is_transient);
    assert_non_null(strstr(res[0].message, "503"));
    assert_null(strstr(s.req, "Authorization"));

    unsigned port = s.port; /* closed now: nobody listens */
    target(&t, port, SAMDAD_STOW_AUTH_NONE);
    send2(&t, res);
    assert_int_equal(res[0].status, SAMDA_ENETWORK);
    assert_true(res[0].is_transient);
    assert_non_null(strstr(res[0].message, "cannot connect"));

    target(&t, port, SAMDAD_STOW_AUTH_BEARER);
    t.secret_file = "/nonexistent/secret";
    send2(&t, res);
    assert_non_null(strstr(res[0].message, "cannot read secret_file /nonexistent/secret"));
}

static void put(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

int main(void)
{
    if (!mkdtemp(dir)) return 1;
    snprintf(f1, sizeof f1, "%s/1.dcm", dir);
    snprintf(f2, sizeof f2, "%s/2.dcm", dir);
    snprintf(secret, sizeof secret, "%s/secret", dir);
    put(f1, "DICM-one");
    put(f2, "DICM-two-two");
    put(secret, "p@ss word\n");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_and_200),
        cmocka_unit_test(test_202_fails_the_named_instance),
        cmocka_unit_test(test_chunked_length_and_unreadable_202),
        cmocka_unit_test(test_401_503_refused_missing_secret),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    unlink(f1);
    unlink(f2);
    unlink(secret);
    rmdir(dir);
    return rc;
}
