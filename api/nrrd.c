/* NRRD writer and label reader (nrrd.h). The header is text lines "field: value" after the magic
 * "NRRD0004", ended by an empty line; the data follows (raw, or a gzip stream for reading). */
#include "nrrd.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#define MAX_VALUES ((uint64_t)1 << 40)
#define MAX_HEADER 65536

size_t samda_nrrd_type_size(samda_nrrd_type t)
{
    switch (t) {
    case SAMDA_NRRD_U8: return 1;
    case SAMDA_NRRD_I16:
    case SAMDA_NRRD_U16: return 2;
    case SAMDA_NRRD_F32: return 4;
    }
    return 0;
}

static const char *type_name(samda_nrrd_type t)
{
    switch (t) {
    case SAMDA_NRRD_U8: return "uint8";
    case SAMDA_NRRD_I16: return "int16";
    case SAMDA_NRRD_U16: return "uint16";
    case SAMDA_NRRD_F32: return "float";
    }
    return "?";
}

/* %.17g keeps every double exactly; "-0" is written as "0". */
static int num(char *b, size_t n, double x) { return snprintf(b, n, "%.17g", x == 0 ? 0.0 : x); }

samda_status samda_nrrd_write(const samda_nrrd_volume *v, void **out, size_t *len, samda_error *err)
{
    uint64_t count = 1;
    for (int a = 0; a < 3; a++) {
        if (v->sizes[a] == 0) return samda_fail(err, SAMDA_EINVAL, "NRRD: size of axis %d is 0", a);
        if (v->sizes[a] > MAX_VALUES / count || (count *= v->sizes[a]) > MAX_VALUES)
            return samda_fail(err, SAMDA_EINVAL, "NRRD: volume larger than 2^40 values");
    }
    size_t esz = samda_nrrd_type_size(v->type);
    if (!esz || !v->data) return samda_fail(err, SAMDA_EINVAL, "NRRD: unknown type or no data");
    char head[1024], d[3][3][32], o[3][32];
    for (int a = 0; a < 3; a++) {
        num(o[a], sizeof o[a], v->origin[a]);
        for (int c = 0; c < 3; c++) num(d[a][c], sizeof d[a][c], v->directions[a][c]);
    }
    int h = snprintf(head, sizeof head,
                     "NRRD0004\n"
                     "# samda: a label or image volume in DICOM patient coordinates (LPS)\n"
                     "type: %s\n"
                     "dimension: 3\n"
                     "space: left-posterior-superior\n"
                     "sizes: %zu %zu %zu\n"
                     "space directions: (%s,%s,%s) (%s,%s,%s) (%s,%s,%s)\n"
                     "kinds: domain domain domain\n"
                     "endian: little\n"
                     "encoding: raw\n"
                     "space origin: (%s,%s,%s)\n"
                     "\n",
                     type_name(v->type), v->sizes[0], v->sizes[1], v->sizes[2], d[0][0], d[0][1], d[0][2], d[1][0], d[1][1],
                     d[1][2], d[2][0], d[2][1], d[2][2], o[0], o[1], o[2]);
    if (h < 0 || (size_t)h >= sizeof head) return samda_fail(err, SAMDA_EINTERNAL, "NRRD: header too long");
    size_t bytes = (size_t)count * esz;
    char *b = malloc((size_t)h + bytes);
    if (!b) return samda_fail(err, SAMDA_ENOMEM, "NRRD: out of memory for %zu bytes", (size_t)h + bytes);
    memcpy(b, head, (size_t)h);
    memcpy(b + h, v->data, bytes); /* the hosts samda runs on are little-endian (x86-64, aarch64) */
    *out = b;
    *len = (size_t)h + bytes;
    return SAMDA_OK;
}

void samda_nrrd_volume_clear(samda_nrrd_volume *v)
{
    if (!v) return;
    free(v->data);
    memset(v, 0, sizeof *v);
}

/* ---- reading ------------------------------------------------------------------------------- */

typedef struct in_type {
    const char *names; /* "|"-separated NRRD spellings */
    size_t size;
    int is_signed, is_float;
} in_type;

static const in_type in_types[] = {
    {"|uchar|unsigned char|uint8|uint8_t|", 1, 0, 0},
    {"|signed char|int8|int8_t|", 1, 1, 0},
    {"|short|short int|signed short|signed short int|int16|int16_t|", 2, 1, 0},
    {"|ushort|unsigned short|unsigned short int|uint16|uint16_t|", 2, 0, 0},
    {"|int|signed int|int32|int32_t|", 4, 1, 0},
    {"|uint|unsigned int|uint32|uint32_t|", 4, 0, 0},
    {"|float|", 4, 1, 1},
};

static const in_type *find_type(const char *s)
{
    char key[64];
    if (strlen(s) > sizeof key - 3) return NULL;
    snprintf(key, sizeof key, "|%s|", s);
    for (size_t i = 0; i < sizeof in_types / sizeof in_types[0]; i++)
        if (strstr(in_types[i].names, key)) return &in_types[i];
    return NULL;
}

/* "(x,y,z)" -> v; returns the character after ')' or NULL. */
static const char *vec3(const char *p, double v[3])
{
    while (*p == ' ' || *p == '\t') p++;
    if (*p++ != '(') return NULL;
    for (int c = 0; c < 3; c++) {
        char *e;
        v[c] = strtod(p, &e);
        if (e == p || !isfinite(v[c])) return NULL;
        p = e;
        while (*p == ' ') p++;
        if (*p++ != (c < 2 ? ',' : ')')) return NULL;
    }
    return p;
}

typedef struct hdr {
    const in_type *type;
    int dimension;
    size_t sizes[3];
    int have_sizes, gzip, big;
    int ras; /* space given as right-anterior-superior: flip x and y */
    int have_dir; /* space directions given */
    double dir[3][3], origin[3];
} hdr;

static samda_status field(hdr *h, const char *key, const char *val, samda_error *err)
{
    if (!strcasecmp(key, "type")) {
        if (!(h->type = find_type(val))) return samda_fail(err, SAMDA_EINVAL, "NRRD: type \"%.32s\" is not supported", val);
    } else if (!strcasecmp(key, "dimension")) {
        h->dimension = atoi(val);
    } else if (!strcasecmp(key, "sizes")) {
        char *e;
        const char *p = val;
        for (int a = 0; a < 3; a++) {
            errno = 0;
            long long s = strtoll(p, &e, 10);
            if (e == p || s < 1 || errno == ERANGE) return samda_fail(err, SAMDA_EINVAL, "NRRD: sizes must be three positive integers (3-D only)");
            h->sizes[a] = (size_t)s;
            p = e;
        }
        while (*p == ' ') p++;
        if (*p) return samda_fail(err, SAMDA_EINVAL, "NRRD: sizes must be three positive integers (3-D only)");
        h->have_sizes = 1;
    } else if (!strcasecmp(key, "encoding")) {
        if (!strcasecmp(val, "gzip") || !strcasecmp(val, "gz")) h->gzip = 1;
        else if (strcasecmp(val, "raw")) return samda_fail(err, SAMDA_EINVAL, "NRRD: encoding \"%.32s\" is not supported (raw or gzip)", val);
    } else if (!strcasecmp(key, "endian")) {
        h->big = !strcasecmp(val, "big");
    } else if (!strcasecmp(key, "space")) {
        if (!strcasecmp(val, "right-anterior-superior") || !strcasecmp(val, "RAS")) h->ras = 1;
        else if (strcasecmp(val, "left-posterior-superior") && strcasecmp(val, "LPS"))
            return samda_fail(err, SAMDA_EINVAL, "NRRD: space \"%.40s\" is not supported (left-posterior-superior or right-anterior-superior)", val);
    } else if (!strcasecmp(key, "space directions")) {
        const char *p = val;
        for (int a = 0; a < 3; a++)
            if (!(p = vec3(p, h->dir[a]))) return samda_fail(err, SAMDA_EINVAL, "NRRD: space directions must be three (x,y,z) vectors");
        h->have_dir = 1;
    } else if (!strcasecmp(key, "space origin")) {
        if (!vec3(val, h->origin)) return samda_fail(err, SAMDA_EINVAL, "NRRD: space origin must be (x,y,z)");
    } else if (!strcasecmp(key, "data file") || !strcasecmp(key, "datafile")) {
        return samda_fail(err, SAMDA_EINVAL, "NRRD: a detached data file is not supported: send the data in the same file");
    }
    return SAMDA_OK; /* kinds, content, space units...: not needed */
}

static samda_status inflate_all(const unsigned char *in, size_t n, unsigned char *out, size_t want, samda_error *err)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, 15 + 32) != Z_OK) return samda_fail(err, SAMDA_ENOMEM, "NRRD: cannot start gzip decoding");
    size_t got = 0;
    int zr = Z_OK;
    while (got < want && zr == Z_OK) {
        size_t in_chunk = n > UINT32_MAX ? UINT32_MAX : n, out_chunk = want - got > UINT32_MAX ? UINT32_MAX : want - got;
        zs.next_in = (unsigned char *)in;
        zs.avail_in = (uInt)in_chunk;
        zs.next_out = out + got;
        zs.avail_out = (uInt)out_chunk;
        zr = inflate(&zs, Z_NO_FLUSH);
        size_t used = in_chunk - zs.avail_in;
        in += used;
        n -= used;
        got += out_chunk - zs.avail_out;
        if (zr == Z_STREAM_END && got < want && n > 0) zr = inflateReset(&zs); /* concatenated members */
        if (zr == Z_BUF_ERROR && n == 0) break;
    }
    inflateEnd(&zs);
    if (got < want) return samda_fail(err, SAMDA_EINVAL, "NRRD: gzip data shorter than the sizes (%zu of %zu bytes)", got, want);
    return SAMDA_OK;
}

static double value_at(const unsigned char *p, const in_type *t, int big)
{
    unsigned char b[4];
    for (size_t i = 0; i < t->size; i++) b[i] = big ? p[t->size - 1 - i] : p[i];
    switch (t->size) {
    case 1: return t->is_signed ? (double)(int8_t)b[0] : (double)b[0];
    case 2: {
        uint16_t u = (uint16_t)(b[0] | b[1] << 8);
        return t->is_signed ? (double)(int16_t)u : (double)u;
    }
    default: {
        uint32_t u = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
        if (t->is_float) {
            float f;
            memcpy(&f, &u, 4);
            return f;
        }
        return t->is_signed ? (double)(int32_t)u : (double)u;
    }
    }
}

/* The header's fields into h; *body: where the data starts. */
static samda_status parse_header(const char *s, size_t len, hdr *h, size_t *body, samda_error *err)
{
    if (len < 8 || memcmp(s, "NRRD000", 7) != 0 || s[7] < '1' || s[7] > '5')
        return samda_fail(err, SAMDA_EINVAL, "not an NRRD file (no NRRD000x magic line)");
    size_t pos = 0;
    char line[4096];
    for (;;) {
        size_t e = pos;
        while (e < len && e - pos < MAX_HEADER && s[e] != '\n') e++;
        if (e >= len || e - pos >= MAX_HEADER) return samda_fail(err, SAMDA_EINVAL, "NRRD: header not ended by an empty line");
        size_t n = e - pos;
        if (n && s[pos + n - 1] == '\r') n--;
        if (pos > 0 && n == 0) {
            *body = e + 1;
            break;
        }
        if (n >= sizeof line) return samda_fail(err, SAMDA_EINVAL, "NRRD: header line longer than %zu bytes", sizeof line - 1);
        memcpy(line, s + pos, n);
        line[n] = '\0';
        pos = e + 1;
        if (line[0] == '#' || !strncmp(line, "NRRD", 4)) continue;
        char *colon = strstr(line, ": ");
        if (!colon) continue; /* "key:=value" key/value pairs */
        *colon = '\0';
        samda_status st = field(h, line, colon + 2, err);
        if (st != SAMDA_OK) return st;
    }
    if (h->dimension != 3 || !h->have_sizes) return samda_fail(err, SAMDA_EINVAL, "NRRD: a 3-D volume is expected (dimension: 3 and sizes)");
    if (!h->type) return samda_fail(err, SAMDA_EINVAL, "NRRD: no type field");
    return SAMDA_OK;
}

/* count values of h's type at raw into labels 0..255 at out. */
static samda_status to_labels(const unsigned char *raw, const hdr *h, size_t count, uint8_t *out, samda_error *err)
{
    for (size_t i = 0; i < count; i++) {
        double x = value_at(raw + i * h->type->size, h->type, h->big);
        if (!(x >= 0 && x <= 255) || x != floor(x))
            return samda_fail(err, SAMDA_EINVAL, "NRRD: voxel %zu holds %g: a label map holds integers 0 to 255", i, x);
        out[i] = (uint8_t)x;
    }
    return SAMDA_OK;
}

/* The header and the raw values of buf (count values of h->type at *raw; *tmp: the inflated copy to
 * free, NULL for raw encoding). */
static samda_status read_raw(const void *buf, size_t len, size_t max_voxels, hdr *h, const unsigned char **raw, size_t *count,
                             unsigned char **tmp, samda_error *err)
{
    *tmp = NULL;
    size_t body = 0;
    samda_status st = parse_header(buf, len, h, &body, err);
    if (st != SAMDA_OK) return st;
    uint64_t n = 1;
    bool over = false;
    for (int a = 0; a < 3 && !over; a++) { /* no product can wrap: each factor is checked first */
        over = h->sizes[a] > MAX_VALUES / n;
        n *= over ? 1 : h->sizes[a];
    }
    if (over || n > max_voxels)
        return samda_fail(err, SAMDA_ETOOBIG, "NRRD: %zux%zux%zu voxels is more than allowed (%zu)", h->sizes[0], h->sizes[1],
                          h->sizes[2], max_voxels);
    size_t bytes = (size_t)n * h->type->size;
    *raw = (const unsigned char *)buf + body;
    if (h->gzip) {
        if (!(*tmp = malloc(bytes ? bytes : 1))) return samda_fail(err, SAMDA_ENOMEM, "NRRD: out of memory");
        if ((st = inflate_all(*raw, len - body, *tmp, bytes, err)) != SAMDA_OK) {
            free(*tmp);
            *tmp = NULL;
            return st;
        }
        *raw = *tmp;
    } else if (len - body < bytes) {
        return samda_fail(err, SAMDA_EINVAL, "NRRD: data shorter than the sizes (%zu of %zu bytes)", len - body, bytes);
    }
    *count = (size_t)n;
    return SAMDA_OK;
}

/* h's geometry into v, in LPS. */
static void geometry_out(const hdr *h, samda_nrrd_volume *v)
{
    memcpy(v->sizes, h->sizes, sizeof v->sizes);
    for (int a = 0; a < 3; a++) {
        v->origin[a] = h->origin[a] * (h->ras && a < 2 ? -1 : 1);
        for (int c = 0; c < 3; c++) v->directions[a][c] = h->dir[a][c] * (h->ras && c < 2 ? -1 : 1);
    }
}

samda_status samda_nrrd_read_labels(const void *buf, size_t len, size_t max_voxels, samda_nrrd_volume *v,
                                    samda_error *err)
{
    memset(v, 0, sizeof *v);
    hdr h = {.dir = {{1, 0, 0}, {0, 1, 0}, {0, 0, 1}}};
    const unsigned char *raw = NULL;
    unsigned char *tmp = NULL;
    size_t count = 0;
    samda_status st = read_raw(buf, len, max_voxels, &h, &raw, &count, &tmp, err);
    if (st != SAMDA_OK) return st;
    uint8_t *out = malloc(count ? count : 1);
    st = out ? to_labels(raw, &h, count, out, err) : samda_fail(err, SAMDA_ENOMEM, "NRRD: out of memory");
    free(tmp);
    if (st != SAMDA_OK) {
        free(out);
        return st;
    }
    v->type = SAMDA_NRRD_U8;
    geometry_out(&h, v);
    v->data = out;
    return SAMDA_OK;
}

samda_status samda_nrrd_read_image(const void *buf, size_t len, size_t max_voxels, samda_nrrd_volume *v, samda_error *err)
{
    memset(v, 0, sizeof *v);
    hdr h = {.dir = {{1, 0, 0}, {0, 1, 0}, {0, 0, 1}}};
    const unsigned char *raw = NULL;
    unsigned char *tmp = NULL;
    size_t count = 0;
    samda_status st = read_raw(buf, len, max_voxels, &h, &raw, &count, &tmp, err);
    if (st != SAMDA_OK) return st;
    if (!h.have_dir) {
        free(tmp);
        return samda_fail(err, SAMDA_EINVAL, "NRRD: an image volume needs its geometry (space directions and space origin)");
    }
    float *out = malloc((count ? count : 1) * sizeof *out);
    if (!out) st = samda_fail(err, SAMDA_ENOMEM, "NRRD: out of memory for %zu voxels", count);
    for (size_t i = 0; out && i < count && st == SAMDA_OK; i++) {
        double x = value_at(raw + i * h.type->size, h.type, h.big);
        if (!isfinite(x)) st = samda_fail(err, SAMDA_EINVAL, "NRRD: voxel %zu is not a finite number", i);
        out[i] = (float)x;
    }
    free(tmp);
    if (st != SAMDA_OK) {
        free(out);
        return st;
    }
    v->type = SAMDA_NRRD_F32;
    geometry_out(&h, v);
    v->data = out;
    return SAMDA_OK;
}
