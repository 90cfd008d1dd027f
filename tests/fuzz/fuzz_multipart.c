/* libFuzzer target for api/multipart.c. The input's first two bytes seed the chunking; the rest
 * is a multipart body with boundary "fuzzB". The body is parsed twice, once in one piece and once
 * in pseudo-random chunks (1 to 64 bytes), and the two runs must agree on everything the callbacks
 * saw and on the final status: a disagreement is a delimiter lost or invented at a chunk edge.
 * Memory errors are caught by ASan/UBSan (the build adds them). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "multipart.h"

typedef struct trace {
    uint64_t hash;  /* FNV-1a over part boundaries, headers and bytes */
    unsigned parts;
    uint64_t bytes;
} trace;

static void mix(trace *t, const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++) t->hash = (t->hash ^ c[i]) * 1099511628211ull;
}

static samda_status on_begin(void *u, const samda_multipart_part *p, samda_error *err)
{
    (void)err;
    trace *t = u;
    t->parts++;
    mix(t, "B", 1);
    mix(t, p->content_type, strlen(p->content_type));
    mix(t, &p->content_length, sizeof p->content_length);
    return SAMDA_OK;
}

static samda_status on_data(void *u, const void *d, size_t n, samda_error *err)
{
    (void)err;
    trace *t = u;
    if (n == 0) abort(); /* the parser promises len > 0 */
    t->bytes += n;
    mix(t, d, n);
    return SAMDA_OK;
}

static samda_status on_end(void *u, const samda_multipart_part *p, samda_error *err)
{
    (void)err;
    trace *t = u;
    mix(t, "E", 1);
    mix(t, &p->index, sizeof p->index);
    return SAMDA_OK;
}

static samda_status run(const uint8_t *body, size_t n, uint32_t seed, trace *t)
{
    memset(t, 0, sizeof *t);
    t->hash = 1469598103934665603ull;
    samda_multipart_params p;
    samda_multipart_params_init(&p);
    p.max_header_bytes = 256;
    p.max_parts = 64;
    samda_multipart_callbacks cb = {t, on_begin, on_data, on_end};
    samda_multipart *mp = samda_multipart_new("fuzzB", &p, &cb, NULL);
    if (!mp) abort();
    samda_status st = SAMDA_OK;
    size_t off = 0;
    while (off < n && st == SAMDA_OK) {
        size_t k = n - off;
        if (seed) {
            seed = seed * 1103515245u + 12345u;
            size_t c = 1 + (seed >> 16) % 64;
            if (c < k) k = c;
        }
        st = samda_multipart_feed(mp, body + off, k, NULL);
        off += k;
    }
    if (st == SAMDA_OK) st = samda_multipart_finish(mp, NULL);
    samda_multipart_free(mp);
    return st;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    uint32_t seed = ((uint32_t)data[0] << 8 | data[1]) | 1u;
    trace whole, chunked;
    samda_status a = run(data + 2, size - 2, 0, &whole);
    samda_status b = run(data + 2, size - 2, seed, &chunked);
    /* An error may surface at different byte offsets, but its kind and what was delivered up to a
     * successful end must match exactly. */
    if (a != b) abort();
    if (a == SAMDA_OK && (whole.hash != chunked.hash || whole.parts != chunked.parts || whole.bytes != chunked.bytes)) abort();
    return 0;
}
