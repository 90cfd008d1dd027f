/* `samda phantom`: writes a labelled 2D training set of synthetic slices as .npy files plus a
 * phantom.json manifest (see samda_phantom_main in phantom.h for the contract).
 *
 * Deliberately small: no getopt (global state), no DICOM (the writer lives in dicom/ and the samda
 * CLI adds it), no parallelism (the daemon's job runner owns threads). Bodies are generated in
 * chunks of slices so that memory stays bounded whatever --size and --slices-per-body say. */
#include "phantom.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "atomic_file.h"
#include "npy_write.h"

#define CMD "samda phantom"

/* Span of the anatomy covered by a body's slices (mm); all five labels live inside it. */
#define Z_SPAN_MM 200.0
/* Voxels per generator call: bounds memory to about 3 bytes per voxel, 200 MB. */
#define CHUNK_VOXELS ((size_t)1 << 26)

static const char usage_text[] =
    "usage: samda phantom --out DIR --site NAME --count N --seed S\n"
    "                     [--slices-per-body K] [--size PX] [--dicom]\n"
    "Write N synthetic CT slices with label masks for training and testing adapters:\n"
    "  DIR/<site>_<body>_<slice>.image.npy  int16 HU, PX x PX\n"
    "  DIR/<site>_<body>_<slice>.mask.npy   uint8 labels: 0 background, 1 liver, 2 kidney,\n"
    "                                       3 spleen, 4 aorta, 5 inferior vena cava\n"
    "  DIR/phantom.json                     site style, label table, seed, cases (written last;\n"
    "                                       use one DIR per run: it describes the last run only)\n"
    "  --out DIR              output directory (created if missing)\n"
    "  --site NAME            site style: A (reference), B (noisy, blurred, shifted), C (bias field,\n"
    "                         low contrast, 1.4 mm pixels), D (strong intensity shift, heavy noise);\n"
    "                         any other name [A-Za-z0-9_-]{1,64} derives a fixed style from the name\n"
    "  --count N              number of slices, 1..100000\n"
    "  --seed S               0..2^64-1 (decimal or 0x hex); same seed, same files\n"
    "  --slices-per-body K    consecutive slices per synthetic body, 1..1024 (default 16),\n"
    "                         spread over 200 mm from the lung bases to below the kidneys\n"
    "  --size PX              image rows and columns, 32..1024 (default 256)\n"
    "  --dicom                also write DICOM: DIR/dicom/<site>_<body>/ (CT series) and\n"
    "                         DIR/dicom/<site>_<body>.seg.dcm (its ground truth as DICOM-SEG)\n";

typedef struct opts {
    const char *out, *site;
    long        count, per_body, size;
    uint64_t    seed;
    int         has_count, has_seed, has_per_body, has_size;
    int         dicom, dicom_available;
} opts;

static int usage_error(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs(CMD ": ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs(" (see samda phantom --help)\n", stderr);
    va_end(ap);
    return 2;
}

/* Strict decimal integer in lo..hi. Returns 0 on success, else prints the error and returns 2. */
static int parse_long(const char *flag, const char *v, long lo, long hi, long *out)
{
    char *end = NULL;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (!*v || *end || errno == ERANGE)
        return usage_error("%s: '%.40s' is not a whole number", flag, v);
    if (x < lo || x > hi)
        return usage_error("%s: %ld is outside %ld..%ld", flag, x, lo, hi);
    *out = x;
    return 0;
}

static int parse_seed(const char *v, uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    if (!*v || *v == '-' || *v == '+' || *v == ' ')
        return usage_error("--seed: '%.40s' is not a number in 0..2^64-1", v);
    /* base 10 or 16 only: strtoull's base 0 would read "010" as octal 8 */
    int hex = v[0] == '0' && (v[1] == 'x' || v[1] == 'X');
    unsigned long long x = strtoull(v, &end, hex ? 16 : 10);
    if (hex && !v[2])
        return usage_error("--seed: '%.40s' is not a number in 0..2^64-1", v);
    if (*end || errno == ERANGE)
        return usage_error("--seed: '%.40s' is not a number in 0..2^64-1", v);
    *out = (uint64_t)x;
    return 0;
}

static int valid_site(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

/* Returns -1 to go on, else the exit status (0 for --help). */
static int parse_args(int argc, char **argv, opts *o, int dicom_available)
{
    memset(o, 0, sizeof *o);
    o->dicom_available = dicom_available;
    o->per_body = 16;
    o->size = 256;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!arg)
            break;
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            fputs(usage_text, stdout);
            return 0;
        }
        if (strcmp(arg, "--dicom") == 0) {
            if (!o->dicom_available)
                return usage_error("--dicom: needs the DICOM writer, which is not built into this command "
                                   "(use the samda CLI, which wires dicom/ in)");
            o->dicom = 1;
            continue;
        }
        if (strncmp(arg, "--", 2) != 0)
            return usage_error("unexpected argument '%.40s'", arg);
        char name[32];
        const char *eq = strchr(arg, '=');
        size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
        if (len >= sizeof name)
            return usage_error("unknown option '%.40s'", arg);
        memcpy(name, arg, len);
        name[len] = '\0';
        static const char *const known[] = {"--out", "--site", "--count", "--seed", "--slices-per-body", "--size"};
        int idx = -1;
        for (int k = 0; k < (int)(sizeof known / sizeof known[0]); k++)
            if (strcmp(name, known[k]) == 0)
                idx = k;
        if (idx < 0)
            return usage_error("unknown option '%s'", name);
        const char *val = eq ? eq + 1 : NULL;
        if (!val) {
            if (i + 1 >= argc || !argv[i + 1])
                return usage_error("%s: missing value", name);
            val = argv[++i];
        }
        int rc = 0;
        switch (idx) {
        case 0:
            if (o->out)
                return usage_error("--out given twice");
            if (!*val)
                return usage_error("--out: empty directory name");
            o->out = val;
            break;
        case 1:
            if (o->site)
                return usage_error("--site given twice");
            if (!valid_site(val))
                return usage_error("--site: '%.40s' must be 1..64 characters of A-Z a-z 0-9 _ -", val);
            o->site = val;
            break;
        case 2:
            if (o->has_count++)
                return usage_error("--count given twice");
            rc = parse_long(name, val, 1, 100000, &o->count);
            break;
        case 3:
            if (o->has_seed++)
                return usage_error("--seed given twice");
            rc = parse_seed(val, &o->seed);
            break;
        case 4:
            if (o->has_per_body++)
                return usage_error("--slices-per-body given twice");
            rc = parse_long(name, val, 1, 1024, &o->per_body);
            break;
        case 5:
            if (o->has_size++)
                return usage_error("--size given twice");
            rc = parse_long(name, val, 32, 1024, &o->size);
            break;
        default:
            break;
        }
        if (rc)
            return rc;
    }
    if (!o->out)
        return usage_error("--out is required");
    if (!o->site)
        return usage_error("--site is required");
    if (!o->has_count)
        return usage_error("--count is required");
    if (!o->has_seed)
        return usage_error("--seed is required");
    return -1;
}

/* A growable string for phantom.json. */
typedef struct sbuf {
    char  *p;
    size_t len, cap;
    int    failed;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static void sb_printf(sbuf *b, const char *fmt, ...)
{
    if (b->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = 1;
            return;
        }
        if (b->p && (size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap : 4096;
        while (cap - b->len <= (size_t)n)
            cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->failed = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
}

/* Seed of body b: a splitmix64 step over (seed, b), so bodies are unrelated but reproducible. */
static uint64_t body_seed(uint64_t seed, long b)
{
    uint64_t z = seed + 0x9E3779B97F4A7C15ull * (uint64_t)(b + 1);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void json_style(sbuf *b, const samda_phantom_site_style *s)
{
    sb_printf(b,
              "{\"hu_scale\": %.6g, \"hu_offset\": %.6g, \"gamma\": %.6g, \"noise_sigma_hu\": %.6g, "
              "\"blur_sigma_px\": %.6g, \"bias_amplitude\": %.6g, \"pixel_spacing_mm\": %.6g, "
              "\"organ_contrast\": %.6g",
              s->hu_scale, s->hu_offset, s->gamma, s->noise_sigma_hu, s->blur_sigma_px, s->bias_amplitude,
              s->pixel_spacing_mm, s->organ_contrast);
    /* the steps after the noise (families E-H), only when used: A-D's phantom.json stays as it was */
    if (s->ghost_fraction > 0)
        sb_printf(b, ", \"ghost_fraction\": %.6g, \"ghost_shift_px\": %d", s->ghost_fraction, s->ghost_shift_px);
    if (s->ring_amplitude_hu > 0)
        sb_printf(b, ", \"ring_amplitude_hu\": %.6g, \"ring_period_mm\": %.6g", s->ring_amplitude_hu, s->ring_period_mm);
    if (s->downsample > 1)
        sb_printf(b, ", \"downsample\": %d", s->downsample);
    if (s->invert)
        sb_printf(b, ", \"invert_center_hu\": %.6g", s->invert_center_hu);
    sb_printf(b, "}");
}

static int ensure_dir(const char *dir)
{
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, CMD ": creating output directory %s: %s (does its parent exist?)\n", dir, strerror(errno));
        return 1;
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, CMD ": --out %s: not a directory\n", dir);
        return 1;
    }
    return 0;
}

int samda_phantom_main(int argc, char **argv) { return samda_phantom_main_ex(argc, argv, NULL, NULL); }

int samda_phantom_main_ex(int argc, char **argv, samda_phantom_dicom_fn dicom_writer, void *dicom_ctx)
{
    opts o;
    int rc = parse_args(argc, argv, &o, dicom_writer != NULL);
    if (rc >= 0)
        return rc;
    if (ensure_dir(o.out))
        return 1;

    samda_phantom_params base;
    samda_phantom_params_init(&base);
    samda_phantom_style_for_site(o.site, &base.style);
    base.rows = base.cols = (int)o.size;
    base.slice_spacing_mm = o.per_body > 1 ? Z_SPAN_MM / (double)o.per_body : 5.0;
    const long bodies = (o.count + o.per_body - 1) / o.per_body;
    const size_t plane = (size_t)o.size * (size_t)o.size;
    long chunk = (long)(CHUNK_VOXELS / plane);
    if (chunk < 1)
        chunk = 1;
    if (chunk > o.per_body || o.dicom)
        chunk = o.per_body; /* a DICOM series is written from its whole body */

    sbuf js = {0};
    sb_printf(&js, "{\n  \"generator\": \"samda phantom\",\n  \"format_version\": 1,\n");
    sb_printf(&js, "  \"site\": \"%s\",\n  \"seed\": %" PRIu64 ",\n  \"count\": %ld,\n", o.site, o.seed, o.count);
    sb_printf(&js, "  \"slices_per_body\": %ld,\n  \"bodies\": %ld,\n  \"rows\": %ld,\n  \"cols\": %ld,\n",
              o.per_body, bodies, o.size, o.size);
    sb_printf(&js, "  \"slice_spacing_mm\": %.6g,\n  \"style\": ", base.slice_spacing_mm);
    json_style(&js, &base.style);
    sb_printf(&js, ",\n  \"image\": {\"dtype\": \"int16\", \"unit\": \"HU\", \"rescale_slope\": 1, "
                   "\"rescale_intercept\": 0},\n");
    sb_printf(&js, "  \"mask\": {\"dtype\": \"uint8\", \"background\": 0},\n");
    sb_printf(&js, "  \"category\": {\"scheme\": \"SCT\", \"code\": \"%s\", \"meaning\": \"%s\"},\n",
              SAMDA_PHANTOM_CATEGORY_CODE, SAMDA_PHANTOM_CATEGORY_MEANING);
    sb_printf(&js, "  \"labels\": [\n");
    for (int i = 0; i < SAMDA_PHANTOM_N_LABELS; i++) {
        const samda_phantom_label *l = &samda_phantom_labels[i];
        sb_printf(&js,
                  "    {\"id\": %d, \"name\": \"%s\", \"scheme\": \"SCT\", \"code\": \"%s\", \"meaning\": \"%s\", "
                  "\"rgb\": [%d, %d, %d], \"window_level_hu\": %d, \"window_width_hu\": %d}%s\n",
                  l->id, l->name, l->snomed_code, l->snomed_meaning, l->rgb[0], l->rgb[1], l->rgb[2],
                  l->window_level_hu, l->window_width_hu, i + 1 < SAMDA_PHANTOM_N_LABELS ? "," : "");
    }
    sb_printf(&js, "  ],\n  \"cases\": [\n");

    size_t path_cap = strlen(o.out) + strlen(o.site) + 64;
    char *path = malloc(path_cap);
    if (!path) {
        free(js.p);
        fprintf(stderr, CMD ": out of memory\n");
        return 1;
    }
    long written = 0;
    samda_error err;
    samda_error_clear(&err);
    rc = 0;
    for (long b = 0; b < bodies && !rc; b++) {
        const long want = o.count - written < o.per_body ? o.count - written : o.per_body;
        for (long j0 = 0; j0 < want && !rc; j0 += chunk) {
            const long n = want - j0 < chunk ? want - j0 : chunk;
            samda_phantom_params p = base;
            p.seed = body_seed(o.seed, b);
            p.n_slices = (int)n;
            /* Slice j of the body sits at (K-1)/2 - j spacings above z = 0; centre this chunk on its share. */
            p.z_center_mm = (0.5 * (double)(o.per_body - 1) - (double)j0 - 0.5 * (double)(n - 1)) * p.slice_spacing_mm;
            samda_phantom_volume v;
            if (samda_phantom_volume_generate(&p, &v, &err) != SAMDA_OK) {
                fprintf(stderr, CMD ": body %ld: %s\n", b, err.message);
                rc = 1;
                break;
            }
            const size_t shape[2] = {(size_t)o.size, (size_t)o.size};
            for (long j = 0; j < n && !rc; j++) {
                const long slice = j0 + j;
                const char *kinds[2] = {"image", "mask"};
                for (int kind = 0; kind < 2 && !rc; kind++) {
                    snprintf(path, path_cap, "%s/%s_%05ld_%04ld.%s.npy", o.out, o.site, b, slice, kinds[kind]);
                    samda_status s =
                        kind == 0 ? samda_npy_write(path, "<i2", 2, shape, v.image + plane * (size_t)j, &err)
                                  : samda_npy_write(path, "|u1", 2, shape, v.mask + plane * (size_t)j, &err);
                    if (s != SAMDA_OK) {
                        fprintf(stderr, CMD ": %s\n", err.message);
                        rc = 1;
                    }
                }
                written++;
                sb_printf(&js, "    {\"body\": %ld, \"slice\": %ld, \"z_mm\": %.4f, \"image\": \"%s_%05ld_%04ld.image.npy\", "
                               "\"mask\": \"%s_%05ld_%04ld.mask.npy\"}%s\n",
                          b, slice, v.slice_z_mm[j], o.site, b, slice, o.site, b, slice,
                          written < o.count ? "," : "");
            }
            if (!rc && o.dicom) {
                samda_status ds = dicom_writer(dicom_ctx, &v, o.site, b, o.out, &err);
                if (ds != SAMDA_OK) {
                    fprintf(stderr, CMD ": body %ld: writing DICOM: %s\n", b, err.message);
                    rc = 1;
                }
            }
            samda_phantom_volume_free(&v);
        }
    }
    sb_printf(&js, "  ]\n}\n");
    if (!rc && js.failed) {
        fprintf(stderr, CMD ": building phantom.json: out of memory\n");
        rc = 1;
    }
    if (!rc) {
        snprintf(path, path_cap, "%s/phantom.json", o.out);
        samda_afile f;
        samda_status s = samda_afile_open(&f, path, 0, &err);
        if (s == SAMDA_OK)
            s = samda_afile_write(&f, js.p, js.len, &err);
        if (s == SAMDA_OK)
            s = samda_afile_commit(&f, &err);
        else
            samda_afile_abort(&f);
        if (s != SAMDA_OK) {
            fprintf(stderr, CMD ": %s\n", err.message);
            rc = 1;
        }
    }
    if (!rc)
        printf("%s: wrote %ld slices of %ld body/bodies (site %s, %ldx%ld) to %s\n", CMD, written, bodies, o.site, o.size,
               o.size, o.out);
    free(path);
    free(js.p);
    return rc;
}
