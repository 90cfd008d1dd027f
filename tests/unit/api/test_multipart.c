/* api/multipart.c: the streaming multipart parser fed in every chunk size, error cases, and the
 * Content-Type parameter reader. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "multipart.h"

typedef struct collected {
    char data[8][512];
    size_t len[8];
    char ctype[8][128];
    int64_t clen[8];
    unsigned begun, ended;
    bool fail_data; /* make part_data fail */
} collected;

static samda_status c_begin(void *u, const samda_multipart_part *p, samda_error *err)
{
    (void)err;
    collected *c = u;
    assert_int_equal(p->index, c->begun);
    assert_true(c->begun < 8);
    snprintf(c->ctype[c->begun], sizeof c->ctype[0], "%s", p->content_type);
    c->clen[c->begun] = p->content_length;
    c->len[c->begun] = 0;
    c->begun++;
    return SAMDA_OK;
}

static samda_status c_data(void *u, const void *d, size_t n, samda_error *err)
{
    collected *c = u;
    assert_true(n > 0);
    if (c->fail_data) return samda_fail(err, SAMDA_ENOSPC, "disk full in test");
    unsigned i = c->begun - 1;
    assert_true(c->len[i] + n <= sizeof c->data[0]);
    memcpy(c->data[i] + c->len[i], d, n);
    c->len[i] += n;
    return SAMDA_OK;
}

static samda_status c_end(void *u, const samda_multipart_part *p, samda_error *err)
{
    (void)err;
    collected *c = u;
    assert_int_equal(p->index, c->ended);
    c->ended++;
    return SAMDA_OK;
}

/* Feed body in chunks of size chunk (0 = one call); return the status of feed+finish. */
static samda_status run(const char *boundary, const char *body, size_t len, size_t chunk, collected *c,
                        const samda_multipart_params *p, samda_error *err)
{
    memset(c->len, 0, sizeof c->len);
    c->begun = c->ended = 0;
    samda_multipart_callbacks cb = {c, c_begin, c_data, c_end};
    samda_multipart *mp = samda_multipart_new(boundary, p, &cb, err);
    assert_non_null(mp);
    samda_status st = SAMDA_OK;
    if (chunk == 0) chunk = len ? len : 1;
    for (size_t off = 0; off < len && st == SAMDA_OK; off += chunk) {
        size_t n = len - off < chunk ? len - off : chunk;
        st = samda_multipart_feed(mp, body + off, n, err);
    }
    if (st == SAMDA_OK) st = samda_multipart_finish(mp, err);
    samda_multipart_free(mp);
    return st;
}

/* Part 1 holds near-misses of the delimiter: CR, CRLF, CRLF--, CRLF--bound (a prefix), "--B"
 * without CRLF; part 2 is binary with NULs and ends in CR; part 3 is empty. */
static const char B[] = "XyZ-boundary.42";
static size_t build_body(char *out, size_t cap)
{
    static const char p1[] = "a\rb\r\nc\r\n-d\r\n--XyZ-bou\r\nx--XyZ-boundary.42 not a delimiter\r\n--XyZ";
    static const char p2[] = {'\0', '\1', '\r', '\n', '-', '-', 'X', '\0', '\xff', '\r'};
    size_t n = 0;
#define PUT(s, l) do { assert_true(n + (l) <= cap); memcpy(out + n, s, l); n += (l); } while (0)
#define PUTS(s) PUT(s, strlen(s))
    PUTS("This is the preamble. --XyZ-boundary.4 is not it.\r\n");
    PUTS("--XyZ-boundary.42  \t\r\n"); /* transport padding */
    PUTS("Content-Type: application/dicom\r\nContent-Location: ignored\r\nX-Other: 1\r\n\r\n");
    PUT(p1, sizeof p1 - 1);
    PUTS("\r\n--XyZ-boundary.42\r\n");
    PUTS("content-type:application/dicom\r\nContent-Length: 10\r\n\r\n");
    PUT(p2, sizeof p2);
    PUTS("\r\n--XyZ-boundary.42\r\n");
    PUTS("\r\n"); /* no headers at all */
    PUTS("\r\n--XyZ-boundary.42-- \r\nepilogue --XyZ-boundary.42\r\n");
    return n;
}

static void every_chunk_size(void **state)
{
    (void)state;
    char body[1024];
    size_t len = build_body(body, sizeof body);
    for (size_t chunk = 1; chunk <= len; chunk++) {
        collected c;
        memset(&c, 0, sizeof c);
        samda_error err = {SAMDA_OK, ""};
        samda_status st = run(B, body, len, chunk, &c, NULL, &err);
        if (st != SAMDA_OK) fail_msg("chunk %zu: %s", chunk, err.message);
        assert_int_equal(c.begun, 3);
        assert_int_equal(c.ended, 3);
        const char *p1 = "a\rb\r\nc\r\n-d\r\n--XyZ-bou\r\nx--XyZ-boundary.42 not a delimiter\r\n--XyZ";
        assert_int_equal(c.len[0], strlen(p1));
        assert_memory_equal(c.data[0], p1, strlen(p1));
        static const char p2[] = {'\0', '\1', '\r', '\n', '-', '-', 'X', '\0', '\xff', '\r'};
        assert_int_equal(c.len[1], sizeof p2);
        assert_memory_equal(c.data[1], p2, sizeof p2);
        assert_int_equal(c.len[2], 0);
        assert_string_equal(c.ctype[0], "application/dicom");
        assert_string_equal(c.ctype[1], "application/dicom");
        assert_string_equal(c.ctype[2], "");
        assert_int_equal(c.clen[0], -1);
        assert_int_equal(c.clen[1], 10);
    }
}

/* Random split points, many times: splits of several pieces at once. */
static void random_chunkings(void **state)
{
    (void)state;
    char body[1024];
    size_t len = build_body(body, sizeof body);
    srand(12345);
    for (int iter = 0; iter < 3000; iter++) {
        collected c;
        memset(&c, 0, sizeof c);
        samda_multipart_callbacks cb = {&c, c_begin, c_data, c_end};
        samda_error err = {SAMDA_OK, ""};
        samda_multipart *mp = samda_multipart_new(B, NULL, &cb, &err);
        size_t off = 0;
        while (off < len) {
            size_t n = 1 + (size_t)rand() % 40;
            if (n > len - off) n = len - off;
            assert_int_equal(samda_multipart_feed(mp, body + off, n, &err), SAMDA_OK);
            off += n;
        }
        assert_int_equal(samda_multipart_finish(mp, &err), SAMDA_OK);
        assert_int_equal(c.begun, 3);
        assert_int_equal(c.len[1], 10);
        samda_multipart_free(mp);
    }
}

static void no_preamble_and_crlf_only_first(void **state)
{
    (void)state;
    collected c;
    samda_error err;
    const char *b1 = "--b\r\n\r\nhello\r\n--b--";
    for (size_t ch = 1; ch <= strlen(b1); ch++) {
        memset(&c, 0, sizeof c);
        assert_int_equal(run("b", b1, strlen(b1), ch, &c, NULL, &err), SAMDA_OK);
        assert_int_equal(c.begun, 1);
        assert_int_equal(c.len[0], 5);
        assert_memory_equal(c.data[0], "hello", 5);
    }
    /* body starting with CRLF before the first delimiter (empty preamble) */
    const char *b2 = "\r\n--b\r\n\r\nx\r\n--b--\r\n";
    memset(&c, 0, sizeof c);
    assert_int_equal(run("b", b2, strlen(b2), 0, &c, NULL, &err), SAMDA_OK);
    assert_int_equal(c.begun, 1);
    assert_int_equal(c.len[0], 1);
}

static void errors_are_named(void **state)
{
    (void)state;
    collected c;
    samda_error err;
    struct { const char *body; samda_status st; const char *needle; } cases[] = {
        {"--b\r\n\r\ndata without end", SAMDA_EINVAL, "without the close delimiter --b--"},
        {"--b\r\n\r\ndata\r\n--b\r\n\r\nmore", SAMDA_EINVAL, "in part 2"},
        {"no delimiter here at all", SAMDA_EINVAL, "no delimiter --b"},
        {"", SAMDA_EINVAL, "no delimiter"},
        {"--b\r\n\r\nx\r\n--bX\r\n", SAMDA_EINVAL, "followed by neither CRLF"},
        {"--b\r\nContent-Length: 5\r\n\r\nabc\r\n--b--", SAMDA_EINVAL, "Content-Length 5 but body has 3"},
        {"--b\r\nContent-Length: x5\r\n\r\nabc\r\n--b--", SAMDA_EINVAL, "not a number"},
        {"--b\r\nNoColonHere\r\n\r\nabc\r\n--b--", SAMDA_EINVAL, "without a name"},
        {"--b\r\nA: 1\r\n folded\r\n\r\nabc\r\n--b--", SAMDA_EINVAL, "folded"},
        {"--b\r\r\n", SAMDA_EINVAL, "CR without LF"},
        {"--b-x", SAMDA_EINVAL, "malformed close delimiter"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (size_t ch = 0; ch <= 3; ch++) {
            memset(&c, 0, sizeof c);
            memset(&err, 0, sizeof err);
            samda_status st = run("b", cases[i].body, strlen(cases[i].body), ch, &c, NULL, &err);
            if (st != cases[i].st || !strstr(err.message, cases[i].needle))
                fail_msg("case %zu chunk %zu: got %s '%s', want '%s'", i, ch, samda_status_name(st), err.message, cases[i].needle);
        }
    }
}

static void limits(void **state)
{
    (void)state;
    collected c;
    samda_error err;
    samda_multipart_params p;
    samda_multipart_params_init(&p);
    p.max_header_bytes = 32;
    const char *big = "--b\r\nContent-Type: application/dicom-with-a-long-name\r\n\r\nx\r\n--b--";
    memset(&c, 0, sizeof c);
    /* a malformed part for the client (400), not a request over a size limit (413) */
    assert_int_equal(run("b", big, strlen(big), 1, &c, &p, &err), SAMDA_EINVAL);
    assert_non_null(strstr(err.message, "multipart part 1: headers larger than 32 bytes"));

    samda_multipart_params_init(&p);
    p.max_parts = 2;
    const char *three = "--b\r\n\r\n1\r\n--b\r\n\r\n2\r\n--b\r\n\r\n3\r\n--b--";
    memset(&c, 0, sizeof c);
    assert_int_equal(run("b", three, strlen(three), 0, &c, &p, &err), SAMDA_ETOOBIG);
    assert_non_null(strstr(err.message, "more than 2 parts"));

    /* a callback's error stops the parser with its message, and it stays dead */
    memset(&c, 0, sizeof c);
    c.fail_data = true;
    samda_multipart_callbacks cb = {&c, c_begin, c_data, c_end};
    samda_multipart *mp = samda_multipart_new("b", NULL, &cb, &err);
    const char *one = "--b\r\n\r\nabc\r\n--b--";
    assert_int_equal(samda_multipart_feed(mp, one, strlen(one), &err), SAMDA_ENOSPC);
    assert_string_equal(err.message, "disk full in test");
    memset(&err, 0, sizeof err);
    assert_int_equal(samda_multipart_feed(mp, "x", 1, &err), SAMDA_ENOSPC);
    assert_int_equal(samda_multipart_finish(mp, &err), SAMDA_ENOSPC);
    samda_multipart_free(mp);
    samda_multipart_free(NULL);
}

static void boundaries(void **state)
{
    (void)state;
    samda_error err;
    assert_int_equal(samda_multipart_boundary_check("a", &err), SAMDA_OK);
    assert_int_equal(samda_multipart_boundary_check("gc0p4Jq0M2Yt08j34c0p'()+_,-./:=? x", &err), SAMDA_OK);
    char b70[71], b71[72];
    memset(b70, 'a', 70);
    b70[70] = '\0';
    memset(b71, 'a', 71);
    b71[71] = '\0';
    assert_int_equal(samda_multipart_boundary_check(b70, &err), SAMDA_OK);
    assert_int_equal(samda_multipart_boundary_check(b71, &err), SAMDA_EINVAL);
    assert_int_equal(samda_multipart_boundary_check("", &err), SAMDA_EINVAL);
    assert_int_equal(samda_multipart_boundary_check("ends ", &err), SAMDA_EINVAL);
    assert_int_equal(samda_multipart_boundary_check("semi;colon", &err), SAMDA_EINVAL);
    assert_int_equal(samda_multipart_boundary_check("cr\rx", &err), SAMDA_EINVAL);
    assert_null(samda_multipart_new("bad\"q", NULL, NULL, &err));
}

/* MONAI Label's clients: a boundary ending in '$' (outside RFC 2046's bchars) only when the caller
 * allows it, and each form part's Content-Disposition handed to part_begin. */
static samda_status d_begin(void *u, const samda_multipart_part *p, samda_error *err)
{
    (void)err;
    memcpy(u, p->disposition, sizeof p->disposition);
    return SAMDA_OK;
}

static void monailabel_form(void **state)
{
    (void)state;
    static const char b[] = "----------lImIt_of_THE_fIle_eW_$";
    static const char body[] = "------------lImIt_of_THE_fIle_eW_$\r\nContent-Disposition: form-data; name=\"label\"; "
                               "filename=\"/tmp/x y/label.nrrd\"\r\n\r\nNRRD\r\n------------lImIt_of_THE_fIle_eW_$--\r\n";
    samda_error err;
    assert_int_equal(samda_multipart_boundary_check(b, &err), SAMDA_EINVAL);
    assert_null(samda_multipart_new(b, NULL, NULL, &err));
    samda_multipart_params p;
    samda_multipart_params_init(&p);
    p.extra_bchars = "$";
    char disp[sizeof ((samda_multipart_part *)0)->disposition] = "";
    samda_multipart_callbacks cb = {.user = disp, .part_begin = d_begin};
    samda_multipart *mp = samda_multipart_new(b, &p, &cb, &err);
    assert_non_null(mp);
    assert_int_equal(samda_multipart_feed(mp, body, sizeof body - 1, &err), SAMDA_OK);
    assert_int_equal(samda_multipart_finish(mp, &err), SAMDA_OK);
    samda_multipart_free(mp);
    assert_string_equal(disp, "form-data; name=\"label\"; filename=\"/tmp/x y/label.nrrd\"");
}

static void content_type(void **state)
{
    (void)state;
    char media[64], v[80];
    samda_error err;
    const char *ct = "Multipart/Related; type=\"application/dicom\"; boundary=abc123";
    assert_int_equal(samda_content_type_media(ct, media, sizeof media, &err), SAMDA_OK);
    assert_string_equal(media, "multipart/related");
    assert_int_equal(samda_content_type_param(ct, "TYPE", v, sizeof v, &err), SAMDA_OK);
    assert_string_equal(v, "application/dicom");
    assert_int_equal(samda_content_type_param(ct, "boundary", v, sizeof v, &err), SAMDA_OK);
    assert_string_equal(v, "abc123");
    /* quoted boundary with spaces and an escaped quote; whitespace around ';' */
    ct = "multipart/related ;type=application/dicom ;  boundary=\"a b\\\"c\"";
    assert_int_equal(samda_content_type_param(ct, "boundary", v, sizeof v, &err), SAMDA_OK);
    assert_string_equal(v, "a b\"c");
    assert_int_equal(samda_content_type_param(ct, "start", v, sizeof v, &err), SAMDA_ENOENT);
    assert_int_equal(samda_content_type_param("multipart/related; boundary=\"abc", "boundary", v, sizeof v, &err), SAMDA_EINVAL);
    assert_int_equal(samda_content_type_param("multipart/related; boundary=", "boundary", v, sizeof v, &err), SAMDA_EINVAL);
    assert_int_equal(samda_content_type_media("multipart", media, sizeof media, &err), SAMDA_EINVAL);
    assert_int_equal(samda_content_type_media("application/json; charset", media, sizeof media, &err), SAMDA_EINVAL);
    assert_int_equal(samda_content_type_media("application/json; charset=utf-8", media, sizeof media, &err), SAMDA_OK);
    char small[4];
    assert_int_equal(samda_content_type_param("a/b; boundary=abcdef", "boundary", small, sizeof small, &err), SAMDA_ETOOBIG);
}

/* A large body through the parser: throughput figure (printed, never gated). */
static void throughput(void **state)
{
    (void)state;
    size_t part = 8u << 20, len = part + 256;
    char *body = malloc(len);
    size_t n = (size_t)sprintf(body, "--%s\r\nContent-Type: application/dicom\r\n\r\n", B);
    for (size_t i = 0; i < part; i++) body[n + i] = (char)((i * 7) % 13 == 0 ? '\r' : 'a' + i % 26);
    n += part;
    n += (size_t)sprintf(body + n, "\r\n--%s--\r\n", B);
    size_t total = 0;
    samda_multipart_callbacks cb = {&total, NULL, NULL, NULL};
    samda_error err;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    samda_multipart *mp = samda_multipart_new(B, NULL, &cb, &err);
    for (size_t off = 0; off < n; off += 16384) assert_int_equal(samda_multipart_feed(mp, body + off, n - off < 16384 ? n - off : 16384, &err), SAMDA_OK);
    assert_int_equal(samda_multipart_finish(mp, &err), SAMDA_OK);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("multipart parser: %.0f MiB/s (8 MiB part, CR every 13 bytes, 16 KiB chunks)\n", (double)part / (1 << 20) / s);
    samda_multipart_free(mp);
    free(body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_chunk_size), cmocka_unit_test(random_chunkings),
        cmocka_unit_test(no_preamble_and_crlf_only_first), cmocka_unit_test(errors_are_named),
        cmocka_unit_test(limits), cmocka_unit_test(boundaries), cmocka_unit_test(monailabel_form),
        cmocka_unit_test(content_type),
        cmocka_unit_test(throughput),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
