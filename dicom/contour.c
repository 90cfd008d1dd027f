/* Contours of one binary slice: the boundary of every connected part (and of every hole) as a
 * closed polygon along the pixel edges, for RT Structure Set ROI contours (CLOSED_PLANAR).
 *
 * The polygons run on the cracks between pixels, so their corners are pixel corners (half-integer
 * pixel coordinates): filled with the even-odd rule and sampled at pixel centres they give back
 * exactly the mask. Outer boundaries run clockwise on the screen (rows downwards), holes the other
 * way. Nothing here knows DICOM or patient coordinates (rtstruct_write.cpp maps the points). */
#include <stdlib.h>
#include <string.h>

#include "dicom.h"

/* Directions of a crack, rows downwards: right, down, left, up. */
static const int DX[4] = {1, 0, -1, 0};
static const int DY[4] = {0, 1, 0, -1};

static bool inside(const uint8_t *m, unsigned rows, unsigned cols, long r, long c)
{
    return r >= 0 && c >= 0 && r < (long)rows && c < (long)cols && m[(size_t)r * cols + (size_t)c];
}

/* For each pixel corner (r, c) of the (rows + 1) x (cols + 1) grid, a bit per direction of a
 * crack that starts there with the inside on its right. */
static uint8_t *crack_map(const uint8_t *m, unsigned rows, unsigned cols, size_t *n_cracks)
{
    size_t w = (size_t)cols + 1;
    uint8_t *e = calloc(((size_t)rows + 1) * w, 1);
    if (!e) return NULL;
    *n_cracks = 0;
    for (long r = 0; r < (long)rows; r++)
        for (long c = 0; c < (long)cols; c++) {
            if (!m[(size_t)r * cols + (size_t)c]) continue;
            if (!inside(m, rows, cols, r - 1, c)) e[(size_t)r * w + (size_t)c] |= 1u << 0, ++*n_cracks;
            if (!inside(m, rows, cols, r, c + 1)) e[(size_t)r * w + (size_t)c + 1] |= 1u << 1, ++*n_cracks;
            if (!inside(m, rows, cols, r + 1, c)) e[(size_t)(r + 1) * w + (size_t)c + 1] |= 1u << 2, ++*n_cracks;
            if (!inside(m, rows, cols, r, c - 1)) e[(size_t)(r + 1) * w + (size_t)c] |= 1u << 3, ++*n_cracks;
        }
    return e;
}

/* Next crack out of a corner after arriving in direction d: the right turn first, so that two
 * parts touching only at a corner stay two polygons. */
static int next_dir(uint8_t bits, int d)
{
    const int order[3] = {(d + 1) & 3, d, (d + 3) & 3};
    for (int i = 0; i < 3; i++)
        if (bits & (1u << order[i])) return order[i];
    return -1;
}

static bool push_point(samda_contour_set *s, size_t *cap, long x, long y)
{
    if (s->n_points == *cap) {
        size_t nc = *cap ? *cap * 2 : 256;
        double *nxy = realloc(s->xy, nc * 2 * sizeof *nxy);
        if (!nxy) return false;
        s->xy = nxy;
        *cap = nc;
    }
    s->xy[2 * s->n_points] = (double)x - 0.5; /* corner c lies half a pixel left of pixel c's centre */
    s->xy[2 * s->n_points + 1] = (double)y - 0.5;
    s->n_points++;
    return true;
}

static bool push_contour(samda_contour_set *s, size_t *cap, size_t first)
{
    if (s->n_contours == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        size_t *nf = realloc(s->first, nc * sizeof *nf), *nn;
        if (!nf) return false;
        s->first = nf;
        if (!(nn = realloc(s->count, nc * sizeof *nn))) return false;
        s->count = nn;
        *cap = nc;
    }
    s->first[s->n_contours] = first;
    s->count[s->n_contours++] = s->n_points - first;
    return true;
}

/* Follow one closed chain of cracks from corner (x0, y0), keeping only the corners where it turns. */
static bool trace_one(uint8_t *e, size_t w, long x0, long y0, samda_contour_set *s, size_t *pcap)
{
    long x = x0, y = y0;
    int d = -1, first_d = -1;
    for (int b = 0; b < 4; b++)
        if (e[(size_t)y * w + (size_t)x] & (1u << b)) {
            d = b;
            break;
        }
    first_d = d;
    for (;;) {
        e[(size_t)y * w + (size_t)x] &= (uint8_t)~(1u << d);
        x += DX[d];
        y += DY[d];
        int nd = next_dir(e[(size_t)y * w + (size_t)x], d);
        if (nd < 0) break; /* back where the chain started: every crack of a corner pairs in and out */
        if (nd != d && !push_point(s, pcap, x, y)) return false;
        d = nd;
    }
    /* The start corner counts when the chain turns there. */
    if (d != first_d && !push_point(s, pcap, x0, y0)) return false;
    return true;
}

samda_status samda_contour_trace(const uint8_t *mask, unsigned rows, unsigned cols, samda_contour_set *out,
                                 samda_error *err)
{
    if (out) memset(out, 0, sizeof *out);
    if (!mask || !out || !rows || !cols)
        return samda_fail(err, SAMDA_EINVAL, "tracing contours: %s", !mask || !out ? "NULL argument" : "empty slice");
    size_t n_cracks = 0, w = (size_t)cols + 1;
    uint8_t *e = crack_map(mask, rows, cols, &n_cracks);
    if (!e) return samda_fail(err, SAMDA_ENOMEM, "tracing contours of a %u x %u slice: out of memory", rows, cols);
    size_t pcap = 0, ccap = 0;
    samda_status st = SAMDA_OK;
    for (size_t y = 0; y <= rows && st == SAMDA_OK; y++)
        for (size_t x = 0; x < w && st == SAMDA_OK; x++)
            while (e[y * w + x] && st == SAMDA_OK) {
                size_t first = out->n_points;
                if (!trace_one(e, w, (long)x, (long)y, out, &pcap) || !push_contour(out, &ccap, first))
                    st = samda_fail(err, SAMDA_ENOMEM, "tracing contours: out of memory after %zu points",
                                    out->n_points);
            }
    free(e);
    if (st != SAMDA_OK) samda_contour_set_clear(out);
    return st;
}

void samda_contour_set_clear(samda_contour_set *s)
{
    if (!s) return;
    free(s->xy);
    free(s->first);
    free(s->count);
    memset(s, 0, sizeof *s);
}
