/* Synthetic CT-like abdomen generator (see phantom.h for the model, units and guarantees).
 *
 * How a slice is made: every structure is a "shape3", an ellipse in the axial plane whose radius
 * is modulated by angular harmonics k = 2..5, whose size follows an ellipsoid profile along z
 * (separate half-lengths above and below its widest level) and whose centre, rotation and
 * harmonic phases drift slowly with z. For one slice each shape3 becomes a "shape2" and is
 * painted, in anatomical back-to-front order, into a tissue map and the label mask; a shape may
 * only paint over the tissues listed in its `over` set, which is how organs stay inside the
 * abdominal wall and vessels win over the liver. The tissue map becomes ideal HU (tissue value
 * plus low-frequency texture), and then the site style is applied.
 *
 * Random streams (all derived from params.seed through samda_rng_seed, common/random.h):
 *   anatomy: drawn in a fixed order that depends on nothing but the seed, so masks are identical
 *            across styles and image sizes for one seed;
 *   texture: a hashed value-noise lattice, evaluated per slice;
 *   noise:   one stream per slice index. */
#include "phantom.h"

#include "random.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

/* ---- label table ------------------------------------------------------------------------------ */

const samda_phantom_label samda_phantom_labels[SAMDA_PHANTOM_N_LABELS] = {
    {SAMDA_PHANTOM_LABEL_LIVER, "liver", "10200004", "Liver", {221, 130, 101}, 80, 180},
    {SAMDA_PHANTOM_LABEL_KIDNEY, "kidney", "64033007", "Kidney", {185, 102, 83}, 60, 400},
    {SAMDA_PHANTOM_LABEL_SPLEEN, "spleen", "78961009", "Spleen", {157, 108, 162}, 60, 350},
    {SAMDA_PHANTOM_LABEL_AORTA, "aorta", "15825003", "Aorta", {224, 97, 76}, 150, 600},
    {SAMDA_PHANTOM_LABEL_IVC, "inferior_vena_cava", "64131007", "Inferior vena cava", {0, 151, 206}, 100, 500},
};

const samda_phantom_label *samda_phantom_label_get(int id)
{
    if (id < 1 || id > SAMDA_PHANTOM_N_LABELS)
        return NULL;
    return &samda_phantom_labels[id - 1];
}

/* ---- value noise (random streams: common/random.h) -------------------------------------------- */

/* Hash of lattice coordinates to [-1, 1], for value noise. */
static double lattice_value(uint64_t seed, int64_t i, int64_t j, int64_t k)
{
    uint64_t h = seed ^ ((uint64_t)i * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)j * 0xC2B2AE3D27D4EB4Full) ^
                 ((uint64_t)k * 0x165667B19E3779F9ull);
    h = samda_splitmix64(&h);
    return (double)(h >> 11) * 0x1.0p-52 - 1.0;
}

/* ---- site styles ------------------------------------------------------------------------------ */

void samda_phantom_style_for_site(const char *site, samda_phantom_site_style *out)
{
    if (!out)
        return;
    samda_phantom_site_style st;
    memset(&st, 0, sizeof st); /* padding too: styles are compared bytewise */
    st.hu_scale = 1.0;
    st.gamma = 1.0;
    st.noise_sigma_hu = 6.0;
    st.blur_sigma_px = 0.5;
    st.pixel_spacing_mm = 1.0;
    st.organ_contrast = 1.0;
    if (!site || !*site || strcmp(site, "A") == 0) {
        /* reference site: the defaults above */
    } else if (strcmp(site, "B") == 0) {
        st.noise_sigma_hu = 25.0;
        st.blur_sigma_px = 1.5;
        st.hu_offset = 40.0;
    } else if (strcmp(site, "C") == 0) {
        st.bias_amplitude = 0.05;
        st.organ_contrast = 0.55;
        st.pixel_spacing_mm = 1.4;
        st.noise_sigma_hu = 12.0;
        st.blur_sigma_px = 0.8;
    } else if (strcmp(site, "D") == 0) {
        st.hu_scale = 1.25;
        st.hu_offset = -80.0;
        st.noise_sigma_hu = 50.0;
        st.blur_sigma_px = 1.0;
        st.organ_contrast = 0.9;
    } else if (strcmp(site, "E") == 0) {
        st.hu_scale = 0.8;
        st.hu_offset = 60.0;
        st.blur_sigma_px = 2.0;
        st.bias_amplitude = 0.12;
        st.noise_sigma_hu = 10.0;
    } else if (strcmp(site, "F") == 0) {
        st.noise_sigma_hu = 90.0;
        st.downsample = 2;
    } else if (strcmp(site, "G") == 0) {
        st.invert = 1;
        st.invert_center_hu = 50.0;
        st.noise_sigma_hu = 10.0;
        st.blur_sigma_px = 0.7;
    } else if (strcmp(site, "H") == 0) {
        st.gamma = 0.95;
        st.ring_amplitude_hu = 40.0;
        st.ring_period_mm = 7.0;
        st.ghost_fraction = 0.25;
        st.ghost_shift_px = 10;
        st.pixel_spacing_mm = 0.8;
        st.noise_sigma_hu = 15.0;
    } else {
        uint64_t h = 0xCBF29CE484222325ull; /* FNV-1a 64 */
        for (const unsigned char *c = (const unsigned char *)site; *c; c++)
            h = (h ^ *c) * 0x100000001B3ull;
        samda_rng r;
        samda_rng_seed(&r, h, 0x5173);
        st.noise_sigma_hu = samda_rng_range(&r, 4.0, 40.0);
        st.blur_sigma_px = samda_rng_range(&r, 0.0, 1.6);
        st.bias_amplitude = samda_rng_range(&r, 0.0, 0.06);
        st.hu_scale = samda_rng_range(&r, 0.85, 1.2);
        st.hu_offset = samda_rng_range(&r, -60.0, 60.0);
        st.gamma = samda_rng_range(&r, 0.96, 1.04);
        st.pixel_spacing_mm = samda_rng_range(&r, 0.9, 1.5);
        st.organ_contrast = samda_rng_range(&r, 0.6, 1.2);
    }
    *out = st;
}

void samda_phantom_params_init(samda_phantom_params *p)
{
    if (!p)
        return;
    memset(p, 0, sizeof *p);
    p->seed = 1;
    p->rows = 256;
    p->cols = 256;
    p->n_slices = 48;
    p->slice_spacing_mm = 5.0;
    p->z_center_mm = 0.0;
    p->with_lung_bases = 1;
    samda_phantom_style_for_site("A", &p->style);
}

/* ---- tissues ---------------------------------------------------------------------------------- */

enum {
    T_AIR,
    T_FAT_SUB,
    T_MUSCLE,
    T_FAT_VISC,
    T_LUNG,
    T_BOWEL,
    T_GAS,
    T_FLUID,
    T_LIVER,
    T_SPLEEN,
    T_KIDNEY_CORTEX,
    T_KIDNEY_MEDULLA,
    T_AORTA,
    T_IVC,
    T_BONE_CORTICAL,
    T_BONE_CANCELLOUS,
    T_DISC,
    T_CSF,
    T_RIB,
    T_COUNT_
};

#define TBIT(t) (1u << (t))
#define T_ANY   0xFFFFFFFFu

typedef struct tissue_info {
    double hu;        /* portal-venous reference value */
    double texture;   /* amplitude of the low-frequency texture (HU) */
    int    enhancing; /* 1: scaled by the site's organ_contrast */
} tissue_info;

/* Typical portal-venous CT values (HU). */
static const tissue_info tissues[T_COUNT_] = {
    [T_AIR] = {-1000, 0, 0},          [T_FAT_SUB] = {-105, 8, 0},        [T_MUSCLE] = {52, 8, 0},
    [T_FAT_VISC] = {-92, 10, 0},      [T_LUNG] = {-860, 35, 0},          [T_BOWEL] = {28, 10, 0},
    [T_GAS] = {-960, 15, 0},          [T_FLUID] = {12, 4, 0},            [T_LIVER] = {108, 14, 1},
    [T_SPLEEN] = {118, 14, 1},        [T_KIDNEY_CORTEX] = {185, 14, 1},  [T_KIDNEY_MEDULLA] = {125, 12, 1},
    [T_AORTA] = {195, 6, 1},          [T_IVC] = {150, 8, 1},             [T_BONE_CORTICAL] = {780, 60, 0},
    [T_BONE_CANCELLOUS] = {230, 40, 0}, [T_DISC] = {85, 8, 0},           [T_CSF] = {12, 4, 0},
    [T_RIB] = {520, 60, 0},
};

#define SOFT_TISSUE_HU 50.0 /* pivot of organ_contrast */

/* ---- shapes ----------------------------------------------------------------------------------- */

#define N_HARM   4   /* harmonics k = 2..5 */
#define Z_NONE   0.0 /* half-length meaning "constant along z" */
#define MAX_SHAPES 96

typedef struct shape3 {
    double   cx, cy;          /* centre at the widest level (mm) */
    double   dcx, dcy;        /* centre drift per mm of z */
    double   ax, ay;          /* semi-axes at the widest level (mm) */
    double   rot, drot;       /* angle of the ax axis (rad) and its drift per mm of z */
    double   zc, z_up, z_down; /* widest level, half-lengths above/below; z_up = Z_NONE: a tube */
    double   amp[N_HARM], ph[N_HARM], dph[N_HARM];
    double   y_clip_rel;      /* paint only where y < cy + y_clip_rel * ay_now; >= 1 disables */
    uint32_t over;            /* tissues it may paint over */
    uint8_t  tissue, label;
} shape3;

typedef struct shape2 {
    double   cx, cy, ax, ay, cr, sr;
    double   hc[N_HARM], hs[N_HARM], amp_sum;
    double   y_max;
    uint32_t over;
    uint8_t  tissue, label;
} shape2;

/* The shape at level z; returns 0 if it is absent there. */
static int shape_at(const shape3 *s, double z, shape2 *o)
{
    double dz = z - s->zc, prof = 1.0;
    if (s->z_up > 0.0) {
        double t = dz >= 0.0 ? dz / s->z_up : -dz / s->z_down;
        if (t >= 1.0)
            return 0;
        prof = sqrt(1.0 - t * t);
    }
    o->cx = s->cx + s->dcx * dz;
    o->cy = s->cy + s->dcy * dz;
    o->ax = s->ax * prof;
    o->ay = s->ay * prof;
    if (o->ax < 0.05 || o->ay < 0.05)
        return 0;
    double rot = s->rot + s->drot * dz;
    o->cr = cos(rot);
    o->sr = sin(rot);
    o->amp_sum = 0.0;
    for (int k = 0; k < N_HARM; k++) {
        double ph = s->ph[k] + s->dph[k] * dz;
        o->hc[k] = s->amp[k] * cos(ph);
        o->hs[k] = s->amp[k] * sin(ph);
        o->amp_sum += s->amp[k];
    }
    o->y_max = s->y_clip_rel >= 1.0 ? INFINITY : o->cy + s->y_clip_rel * o->ay;
    o->over = s->over;
    o->tissue = s->tissue;
    o->label = s->label;
    return 1;
}

/* Point-in-shape: normalised radius against 1 + sum a_k cos(k(theta - phi_k)); cos/sin of k*theta
 * come from the angle-addition recurrences, so no trigonometry per pixel. */
static int shape_contains(const shape2 *s, double x, double y)
{
    double dx = x - s->cx, dy = y - s->cy;
    double u = (dx * s->cr + dy * s->sr) / s->ax;
    double v = (-dx * s->sr + dy * s->cr) / s->ay;
    double r2 = u * u + v * v;
    double hi = 1.0 + s->amp_sum, lo = 1.0 - s->amp_sum;
    if (r2 >= hi * hi)
        return 0;
    if (lo > 0.0 && r2 < lo * lo)
        return 1;
    if (r2 == 0.0)
        return 1;
    double r = sqrt(r2), c1 = u / r, s1 = v / r;
    double ck = c1 * c1 - s1 * s1, sk = 2.0 * c1 * s1; /* k = 2 */
    double bound = 1.0;
    for (int k = 0; k < N_HARM; k++) {
        bound += s->hc[k] * ck + s->hs[k] * sk;
        double nc = ck * c1 - sk * s1, ns = sk * c1 + ck * s1;
        ck = nc;
        sk = ns;
    }
    return r < bound;
}

/* Random smooth irregularity: amplitude falls with the harmonic order, phases drift along z. */
static void shape_wobble(shape3 *s, samda_rng *r, double amp_max)
{
    for (int k = 0; k < N_HARM; k++) {
        s->amp[k] = samda_rng_range(r, 0.3, 1.0) * amp_max / (double)(k + 1);
        s->ph[k] = samda_rng_range(r, 0.0, 2.0 * M_PI);
        s->dph[k] = samda_rng_range(r, -0.015, 0.015);
    }
}

static shape3 shape_make(double cx, double cy, double ax, double ay, double rot, uint8_t tissue, uint8_t label,
                         uint32_t over)
{
    shape3 s;
    memset(&s, 0, sizeof s);
    s.cx = cx;
    s.cy = cy;
    s.ax = ax;
    s.ay = ay;
    s.rot = rot;
    s.z_up = Z_NONE;
    s.y_clip_rel = 2.0;
    s.over = over;
    s.tissue = tissue;
    s.label = label;
    return s;
}

static void shape_z(shape3 *s, double z_bottom, double zc, double z_top)
{
    s->zc = zc;
    s->z_up = z_top - zc;
    s->z_down = zc - z_bottom;
}

/* A concentric copy, shrunk by `inset` mm (the same harmonics, so layers stay parallel). */
static shape3 shape_inset(const shape3 *s, double inset, uint8_t tissue, uint8_t label, uint32_t over)
{
    shape3 c = *s;
    c.ax = s->ax - inset;
    c.ay = s->ay - inset;
    c.tissue = tissue;
    c.label = label;
    c.over = over;
    return c;
}

static shape3 shape_scaled(const shape3 *s, double f, uint8_t tissue, uint8_t label, uint32_t over)
{
    shape3 c = *s;
    c.ax = s->ax * f;
    c.ay = s->ay * f;
    c.tissue = tissue;
    c.label = label;
    c.over = over;
    return c;
}

/* ---- anatomy ---------------------------------------------------------------------------------- */

typedef struct anatomy {
    shape3   shapes[MAX_SHAPES];
    int      n;
    double   disc_phase_mm; /* intervertebral discs: 7 mm of every 32 mm, starting here */
    int      vb_first, vb_count; /* shapes replaced by disc tissue inside a disc */
    int      lung_first, lung_count;
    uint64_t texture_seed;
} anatomy;

static shape3 *add(anatomy *a, shape3 s)
{
    if (a->n >= MAX_SHAPES)
        return NULL; /* never reached: the counts below are bounded */
    a->shapes[a->n] = s;
    return &a->shapes[a->n++];
}

/* Every draw here happens in a fixed order that depends only on the seed. C leaves the evaluation
 * order of function arguments unspecified (gcc and clang differ), so each draw is its own statement
 * and never two draws share one expression. */
/* The shared geometry of one phantom patient: its size, position and body wall, drawn first, and
 * the spine's position that several structures hang on. */
typedef struct body_geom {
    double s, ap, zs, ox, oy, fat, wall; /* size, depth ratio, craniocaudal scale, table position, wall */
    double vb_r, vb_y, canal_y;         /* vertebral body radius and centre, spinal canal */
    uint32_t cavity, soft;              /* tissues organs may displace */
    shape3 body;
} body_geom;

#define X(v) (g->ox + (v) * g->s)
#define Y(v) (g->oy + (v) * g->s * g->ap)
#define Z(v) ((v) * g->zs)

/* Body outline with its fat and muscle wall, then the lung bases. */
static void add_body_and_lungs(anatomy *a, body_geom *g, samda_rng *r)
{
    /* Body outline with subcutaneous fat, muscle wall, visceral fat. */
    g->body = shape_make(X(0), Y(0), 112 * g->s, 84 * g->s * g->ap, samda_rng_range(r, -0.04, 0.04), T_FAT_SUB, 0,
                         T_ANY);
    shape_wobble(&g->body, r, 0.035);
    g->body.amp[0] = samda_rng_range(r, 0.02, 0.05); /* k = 2 squares the outline a little, as a real abdomen */
    add(a, g->body);
    add(a, shape_inset(&g->body, g->fat, T_MUSCLE, 0, T_ANY));
    add(a, shape_inset(&g->body, g->fat + g->wall, T_FAT_VISC, 0, T_ANY));

    /* Lung bases: posterior, appear above ~z = 65 mm and widen upwards. */
    a->lung_first = a->n;
    for (int side = -1; side <= 1; side += 2) {
        shape3 lung = shape_make(X(side * 55), Y(22), 46 * g->s, 48 * g->s * g->ap, side * 0.2, T_LUNG, 0, g->cavity);
        shape_z(&lung, Z(samda_rng_range(r, 60, 75)), Z(150), Z(300));
        shape_wobble(&lung, r, 0.06);
        add(a, lung);
    }
    a->lung_count = a->n - a->lung_first;
}

/* Spine geometry, then the paraspinal muscles and psoas. */
static void add_muscles(anatomy *a, body_geom *g, samda_rng *r)
{
    /* Spine geometry (used by several structures). */
    g->vb_r = samda_rng_range(r, 15.0, 18.0) * g->s;
    g->vb_y = Y(30);
    g->canal_y = g->vb_y + g->vb_r + 8 * g->s;

    /* Paraspinal muscles (whole height) and psoas (lower half, growing downwards). */
    for (int side = -1; side <= 1; side += 2) {
        shape3 m = shape_make(X(side * 24), g->canal_y + 6 * g->s, 19 * g->s, 15 * g->s, side * 0.3, T_MUSCLE, 0,
                              TBIT(T_FAT_VISC) | TBIT(T_LUNG));
        shape_wobble(&m, r, 0.05);
        add(a, m);
        shape3 psoas = shape_make(X(side * 30), g->vb_y + 4 * g->s, 13 * g->s, 11 * g->s, side * -0.5, T_MUSCLE, 0,
                                  g->soft);
        shape_z(&psoas, Z(-400), Z(-150), Z(samda_rng_range(r, 0, 20)));
        psoas.dcx = side * -0.08 * g->s;
        shape_wobble(&psoas, r, 0.05);
        add(a, psoas);
    }
}

/* Bowel loops with gas, the colon in the flanks, the stomach with its air-fluid level. */
static void add_bowel_and_stomach(anatomy *a, body_geom *g, samda_rng *r)
{
    /* Bowel loops (fluid-filled g->wall) with gas pockets in their anterior part, the ascending and
     * descending colon in the flanks below the liver and spleen, then the stomach. */
    int n_loops = 14 + (int)(samda_rng_u01(r) * 8.0);
    for (int i = 0; i < n_loops; i++) {
        double cx = samda_rng_range(r, -55, 70);
        double cy = samda_rng_range(r, -62, 12);
        double zc = samda_rng_range(r, -125, 35);
        double half = samda_rng_range(r, 20, 60);
        double lax = samda_rng_range(r, 10, 21) * g->s;
        double lay = samda_rng_range(r, 8, 17) * g->s;
        double lrot = samda_rng_range(r, 0, M_PI);
        shape3 loop = shape_make(X(cx), Y(cy), lax, lay, lrot, T_BOWEL, 0, g->cavity);
        shape_z(&loop, Z(zc - half), Z(zc), Z(zc + half));
        loop.dcx = samda_rng_range(r, -0.3, 0.3);
        loop.dcy = samda_rng_range(r, -0.2, 0.2);
        shape_wobble(&loop, r, 0.08);
        add(a, loop);
        if (samda_rng_u01(r) < 0.55) {
            shape3 gas = shape_scaled(&loop, samda_rng_range(r, 0.45, 0.75), T_GAS, 0, TBIT(T_BOWEL));
            gas.y_clip_rel = samda_rng_range(r, -0.1, 0.5);
            add(a, gas);
        }
    }
    for (int side = -1; side <= 1; side += 2) {
        double cy = samda_rng_range(r, -8, 4);
        double cax = samda_rng_range(r, 15, 20) * g->s;
        double cay = samda_rng_range(r, 14, 18) * g->s;
        double crot = samda_rng_range(r, 0, M_PI);
        shape3 colon = shape_make(X(side * 70), Y(cy), cax, cay, crot, T_BOWEL, 0, g->cavity);
        shape_z(&colon, Z(-400), Z(-200), Z(side < 0 ? samda_rng_range(r, -45, -25) : samda_rng_range(r, -20, 0)));
        shape_wobble(&colon, r, 0.09);
        add(a, colon);
        shape3 gas = shape_scaled(&colon, samda_rng_range(r, 0.5, 0.7), T_GAS, 0, TBIT(T_BOWEL));
        gas.y_clip_rel = samda_rng_range(r, -0.2, 0.3);
        add(a, gas);
    }
    shape3 stomach = shape_make(X(38), Y(-30), 30 * g->s, 22 * g->s, samda_rng_range(r, -0.4, 0.0), T_FLUID, 0,
                                g->cavity | TBIT(T_BOWEL) | TBIT(T_GAS));
    double st_bottom = samda_rng_range(r, 15, 30);
    double st_top = samda_rng_range(r, 90, 100);
    shape_z(&stomach, Z(st_bottom), Z(60), Z(st_top));
    stomach.dcx = 0.15;
    shape_wobble(&stomach, r, 0.06);
    add(a, stomach);
    shape3 sgas = shape_scaled(&stomach, 0.85, T_GAS, 0, TBIT(T_FLUID));
    sgas.y_clip_rel = samda_rng_range(r, -0.5, -0.1); /* air-fluid level: gas rises anteriorly (supine) */
    add(a, sgas);
}

/* Liver lobes and spleen (labelled). */
static void add_liver_and_spleen(anatomy *a, body_geom *g, samda_rng *r)
{
    /* Liver: right lobe (whole liver height), left lobe across the midline in the upper half. */
    double rl_ax = samda_rng_range(r, 43, 49) * g->s;
    double rl_ay = samda_rng_range(r, 54, 61) * g->s * g->ap;
    double rl_rot = samda_rng_range(r, -0.25, 0.05);
    shape3 rl = shape_make(X(-50), Y(-6), rl_ax, rl_ay, rl_rot, T_LIVER, SAMDA_PHANTOM_LABEL_LIVER, g->soft);
    double rl_bottom = samda_rng_range(r, -80, -60);
    double rl_widest = samda_rng_range(r, 30, 45);
    double rl_top = samda_rng_range(r, 98, 110);
    shape_z(&rl, Z(rl_bottom), Z(rl_widest), Z(rl_top));
    rl.dcx = 0.08 * g->s; /* lower down, the right lobe tip sits more laterally ... */
    rl.dcy = 0.10 * g->s; /* ... and more anteriorly */
    shape_wobble(&rl, r, 0.07);
    add(a, rl);
    double ll_ax = samda_rng_range(r, 38, 46) * g->s;
    double ll_ay = samda_rng_range(r, 18, 24) * g->s * g->ap;
    double ll_rot = samda_rng_range(r, -0.35, -0.1);
    shape3 ll = shape_make(X(8), Y(-42), ll_ax, ll_ay, ll_rot, T_LIVER, SAMDA_PHANTOM_LABEL_LIVER, g->soft);
    double ll_bottom = samda_rng_range(r, -5, 15);
    double ll_top = samda_rng_range(r, 92, 100);
    shape_z(&ll, Z(ll_bottom), Z(50), Z(ll_top));
    ll.dcx = 0.10;
    shape_wobble(&ll, r, 0.08);
    add(a, ll);

    /* Spleen: posterolateral left, long axis along the ribs. */
    double sp_ax = samda_rng_range(r, 24, 28) * g->s;
    double sp_ay = samda_rng_range(r, 46, 54) * g->s * g->ap;
    double sp_rot = samda_rng_range(r, 0.35, 0.6);
    shape3 sp = shape_make(X(64), Y(20), sp_ax, sp_ay, sp_rot, T_SPLEEN, SAMDA_PHANTOM_LABEL_SPLEEN, g->soft);
    double sp_bottom = samda_rng_range(r, -20, -10);
    double sp_widest = samda_rng_range(r, 40, 50);
    double sp_top = samda_rng_range(r, 88, 98);
    shape_z(&sp, Z(sp_bottom), Z(sp_widest), Z(sp_top));
    sp.dcy = -0.05;
    shape_wobble(&sp, r, 0.08);
    add(a, sp);
}

/* Kidneys with medulla and hilum fat (labelled). */
static void add_kidneys(anatomy *a, body_geom *g, samda_rng *r)
{
    /* Kidneys: cortex, medulla, g->fat in the hilum facing anteromedially; the right one sits lower. */
    for (int side = -1; side <= 1; side += 2) {
        double hilum = atan2(-0.7, -side * 1.0); /* direction from the kidney centre to its hilum */
        double k_ax = samda_rng_range(r, 19, 22) * g->s;
        double k_ay = samda_rng_range(r, 26, 31) * g->s;
        shape3 k = shape_make(X(side * 55), Y(29), k_ax, k_ay,
                              hilum, T_KIDNEY_CORTEX, SAMDA_PHANTOM_LABEL_KIDNEY,
                              g->soft | TBIT(T_LIVER) | TBIT(T_SPLEEN));
        double zc = side > 0 ? samda_rng_range(r, -2, 8) : samda_rng_range(r, -18, -8);
        double half = samda_rng_range(r, 50, 58);
        shape_z(&k, Z(zc - half), Z(zc), Z(zc + half));
        k.dcx = side * 0.06;
        k.drot = side * 0.004;
        shape_wobble(&k, r, 0.04);
        add(a, k);
        add(a, shape_scaled(&k, 0.62, T_KIDNEY_MEDULLA, SAMDA_PHANTOM_LABEL_KIDNEY, TBIT(T_KIDNEY_CORTEX)));
        shape3 h = shape_make(k.cx + cos(hilum) * k.ax * 0.95, k.cy + sin(hilum) * k.ax * 0.95, k.ax * 0.38,
                              k.ay * 0.3, hilum, T_FAT_VISC, 0, TBIT(T_KIDNEY_CORTEX) | TBIT(T_KIDNEY_MEDULLA));
        shape_z(&h, Z(zc - 0.5 * half), Z(zc), Z(zc + 0.5 * half));
        h.dcx = k.dcx;
        add(a, h);
    }
}

/* Great vessels (labelled), vertebra and canal. */
static void add_vessels_and_spine(anatomy *a, body_geom *g, samda_rng *r)
{
    /* Great vessels, in front of the spine along the whole height. */
    double ivc_ax = samda_rng_range(r, 11, 14) * g->s;
    double ivc_ay = samda_rng_range(r, 7, 10) * g->s;
    double ivc_rot = samda_rng_range(r, -0.3, 0.3);
    shape3 ivc = shape_make(X(-22), g->vb_y - g->vb_r - 8 * g->s, ivc_ax, ivc_ay, ivc_rot, T_IVC,
                            SAMDA_PHANTOM_LABEL_IVC, T_ANY);
    ivc.dcx = -0.04;
    ivc.dcy = -0.06; /* rises anteriorly into the liver */
    shape_wobble(&ivc, r, 0.05);
    add(a, ivc);
    double ar = samda_rng_range(r, 9, 11.5) * g->s;
    shape3 ao = shape_make(X(9), g->vb_y - g->vb_r - ar - 1.5 * g->s, ar, ar, 0, T_AORTA, SAMDA_PHANTOM_LABEL_AORTA,
                           T_ANY);
    ao.dcx = 0.02;
    shape_wobble(&ao, r, 0.02);
    add(a, ao);

    /* Spine: posterior arch around the canal, spinous process, vertebral body (discs every 32 mm). */
    shape3 arch = shape_make(X(0), g->canal_y, 15 * g->s, 11 * g->s, 0, T_BONE_CORTICAL, 0, T_ANY);
    add(a, arch);
    add(a, shape_make(X(0), g->canal_y + 17 * g->s, 4.5 * g->s, 11 * g->s, 0, T_BONE_CORTICAL, 0, T_ANY));
    add(a, shape_make(X(0), g->canal_y, 8 * g->s, 7 * g->s, 0, T_CSF, 0, T_ANY));
    a->vb_first = a->n;
    shape3 vb = shape_make(X(0), g->vb_y, g->vb_r * 1.1, g->vb_r, 0, T_BONE_CORTICAL, 0, T_ANY);
    shape_wobble(&vb, r, 0.02);
    add(a, vb);
    add(a, shape_inset(&vb, 2.5 * g->s, T_BONE_CANCELLOUS, 0, T_ANY));
    a->vb_count = a->n - a->vb_first;
    a->disc_phase_mm = samda_rng_range(r, 0, 32);
}

/* Ribs in the upper half, sliding around the wall along z. */
static void add_ribs(anatomy *a, body_geom *g, samda_rng *r)
{
    /* Ribs in the upper half: oblique cross-sections that slide around the g->wall along z. */
    for (int i = 0; i < 14; i++) {
        int side = i < 7 ? -1 : 1;
        double ang = samda_rng_range(r, -1.3, 1.1); /* around the flank, front to back */
        double zc = samda_rng_range(r, 10, 110);
        double wx = g->body.ax - g->fat - g->wall * 0.5, wy = g->body.ay - g->fat - g->wall * 0.5;
        shape3 rib = shape_make(g->body.cx + side * wx * cos(ang), g->body.cy + wy * sin(ang), 5.5 * g->s, 3.5 * g->s,
                                ang + M_PI / 2, T_RIB, 0,
                                TBIT(T_MUSCLE) | TBIT(T_FAT_SUB) | TBIT(T_FAT_VISC) | TBIT(T_LUNG));
        shape_z(&rib, zc - 18, zc, zc + 18);
        rib.dcy = -0.25;
        add(a, rib);
    }
}

/* One patient's anatomy from its seed. The draws happen in a fixed order (the steps below, in
 * this order), so masks are identical across styles and image sizes for one seed. */
static void build_anatomy(anatomy *a, uint64_t seed)
{
    samda_rng r;
    samda_rng_seed(&r, seed, 1);
    memset(a, 0, sizeof *a);
    a->texture_seed = samda_rng_next(&r);
    body_geom g;
    memset(&g, 0, sizeof g);
    g.s = samda_rng_range(&r, 0.93, 1.05);   /* overall size */
    g.ap = samda_rng_range(&r, 0.93, 1.07);  /* front-back depth relative to width */
    g.zs = samda_rng_range(&r, 0.92, 1.08);  /* craniocaudal scale of organs */
    g.ox = samda_rng_range(&r, -4.0, 4.0);   /* position on the table */
    g.oy = samda_rng_range(&r, -6.0, 2.0);
    g.fat = samda_rng_range(&r, 8.0, 20.0) * g.s;
    g.wall = samda_rng_range(&r, 7.0, 11.0) * g.s;
    g.cavity = TBIT(T_FAT_VISC);
    g.soft = TBIT(T_FAT_VISC) | TBIT(T_BOWEL) | TBIT(T_GAS) | TBIT(T_FLUID) | TBIT(T_LUNG);
    add_body_and_lungs(a, &g, &r);
    add_muscles(a, &g, &r);
    add_bowel_and_stomach(a, &g, &r);
    add_liver_and_spleen(a, &g, &r);
    add_kidneys(a, &g, &r);
    add_vessels_and_spine(a, &g, &r);
    add_ribs(a, &g, &r);
}
#undef X
#undef Y
#undef Z

/* ---- image formation -------------------------------------------------------------------------- */

/* Two octaves of value noise on lattices of 22 mm and 8 mm, smoothstep-interpolated; about +-1.
 * The lattice for the current slice is interpolated along z once (texture_slice); the in-plane
 * cell index and weight of every column and row are fixed for a volume and precomputed. */
typedef struct texture_grid {
    double  cell;
    int     nx, ny;
    int64_t ix0, iy0; /* lattice coordinates of val[0] */
    double *val;     /* [ny][nx] for the current slice */
    int    *ci, *rj; /* [cols], [rows]: lattice cell of each pixel column / row */
    float  *wx, *wy; /* [cols], [rows]: smoothstep weight inside that cell */
} texture_grid;

static double smooth(double t)
{
    return t * t * (3.0 - 2.0 * t);
}

static void texture_axis(double cell, const double *pos, int n, int64_t first, int cells, int *idx, float *wt)
{
    for (int i = 0; i < n; i++) {
        double f = pos[i] / cell - (double)first;
        int k = (int)floor(f);
        if (k < 0)
            k = 0;
        if (k > cells - 2)
            k = cells - 2;
        double t = f - k;
        t = t < 0.0 ? 0.0 : (t > 1.0 ? 1.0 : t);
        idx[i] = k;
        wt[i] = (float)smooth(t);
    }
}

static int texture_grid_init(texture_grid *g, double cell, const double *xs, int cols, const double *ys, int rows)
{
    int64_t fx = (int64_t)floor(xs[0] / cell), fy = (int64_t)floor(ys[0] / cell);
    g->cell = cell;
    g->ix0 = fx;
    g->iy0 = fy;
    g->nx = (int)((int64_t)floor(xs[cols - 1] / cell) - fx) + 2;
    g->ny = (int)((int64_t)floor(ys[rows - 1] / cell) - fy) + 2;
    g->val = malloc((size_t)g->nx * (size_t)g->ny * sizeof *g->val);
    g->ci = malloc((size_t)cols * sizeof *g->ci);
    g->rj = malloc((size_t)rows * sizeof *g->rj);
    g->wx = malloc((size_t)cols * sizeof *g->wx);
    g->wy = malloc((size_t)rows * sizeof *g->wy);
    if (!g->val || !g->ci || !g->rj || !g->wx || !g->wy)
        return 0;
    texture_axis(cell, xs, cols, fx, g->nx, g->ci, g->wx);
    texture_axis(cell, ys, rows, fy, g->ny, g->rj, g->wy);
    return 1;
}

static void texture_grid_free(texture_grid *g)
{
    free(g->val);
    free(g->ci);
    free(g->rj);
    free(g->wx);
    free(g->wy);
}

static void texture_slice(texture_grid *g, uint64_t seed, double z)
{
    double fz = z / g->cell;
    double kz = floor(fz);
    double wz = smooth(fz - kz);
    for (int j = 0; j < g->ny; j++)
        for (int i = 0; i < g->nx; i++) {
            double a = lattice_value(seed, g->ix0 + i, g->iy0 + j, (int64_t)kz);
            double b = lattice_value(seed, g->ix0 + i, g->iy0 + j, (int64_t)kz + 1);
            g->val[(size_t)j * (size_t)g->nx + (size_t)i] = a + (b - a) * wz;
        }
}

/* Texture of row r: out[c] for every column. */
static void texture_row(const texture_grid *g, int r, int cols, float weight, float *out)
{
    const double *top = g->val + (size_t)g->rj[r] * (size_t)g->nx, *bot = top + g->nx;
    const float wy = g->wy[r];
    for (int c = 0; c < cols; c++) {
        int i = g->ci[c];
        float wx = g->wx[c];
        float t = (float)top[i] + ((float)top[i + 1] - (float)top[i]) * wx;
        float b = (float)bot[i] + ((float)bot[i + 1] - (float)bot[i]) * wx;
        out[c] += weight * (t + (b - t) * wy);
    }
}

/* Separable Gaussian blur in place, edges clamped. tmp holds rows*cols floats, line cols floats,
 * pad cols + 2*96 floats. Both passes accumulate whole rows tap by tap, so memory is read in order
 * and the inner loops vectorise without reordering any sum. */
static void blur(float *img, float *tmp, float *line, float *pad, int rows, int cols, double sigma)
{
    int rad = (int)ceil(3.0 * sigma);
    if (rad < 1)
        return;
    if (rad > 96)
        rad = 96;
    float w[2 * 96 + 1];
    double sum = 0.0;
    for (int i = -rad; i <= rad; i++)
        sum += exp(-0.5 * (double)(i * i) / (sigma * sigma));
    for (int i = -rad; i <= rad; i++)
        w[i + rad] = (float)(exp(-0.5 * (double)(i * i) / (sigma * sigma)) / sum);
    /* horizontal: img -> tmp, through a copy of the row padded with its edge values */
    for (int r = 0; r < rows; r++) {
        const float *src = img + (size_t)r * (size_t)cols;
        float *dst = tmp + (size_t)r * (size_t)cols;
        for (int i = 0; i < rad; i++) {
            pad[i] = src[0];
            pad[rad + cols + i] = src[cols - 1];
        }
        memcpy(pad + rad, src, (size_t)cols * sizeof *src);
        for (int c = 0; c < cols; c++)
            dst[c] = 0.0f;
        for (int i = 0; i <= 2 * rad; i++) {
            const float wi = w[i];
            const float *p = pad + i;
            for (int c = 0; c < cols; c++)
                dst[c] += wi * p[c];
        }
    }
    /* vertical: tmp -> img */
    for (int r = 0; r < rows; r++) {
        for (int c = 0; c < cols; c++)
            line[c] = 0.0f;
        for (int i = -rad; i <= rad; i++) {
            int rr = r + i < 0 ? 0 : (r + i >= rows ? rows - 1 : r + i);
            const float *src = tmp + (size_t)rr * (size_t)cols;
            const float wi = w[i + rad];
            for (int c = 0; c < cols; c++)
                line[c] += wi * src[c];
        }
        memcpy(img + (size_t)r * (size_t)cols, line, (size_t)cols * sizeof *line);
    }
}

/* Bias field shape: a cupping bowl (darker centre, as beam hardening gives) plus a gentle tilt,
 * in physical coordinates so it does not depend on the matrix size. |g| <= 1. */
static double bias_shape(double x, double y)
{
    double xn = x / 128.0, yn = y / 128.0;
    double g = -0.6 * (1.0 - 1.6 * (xn * xn + yn * yn)) + 0.35 * xn - 0.25 * yn;
    return g < -1.0 ? -1.0 : (g > 1.0 ? 1.0 : g);
}

/* Whether a style has any of the steps after the noise (styles A-D have none and take the
 * original path, byte for byte). */
static int acquisition_post_needed(const samda_phantom_site_style *sty)
{
    return sty->ghost_fraction > 0.0 || sty->ring_amplitude_hu > 0.0 || sty->downsample > 1 || sty->invert;
}

/* The steps after the noise, in place on img (rows x cols HU, unclamped): motion ghost, ring
 * artefact, low-resolution acquisition, contrast inversion. scratch holds rows * cols floats;
 * xs, ys are the pixel centres in mm (image centre 0). */
static void acquisition_post(float *img, float *scratch, const double *xs, const double *ys, int rows, int cols,
                             const samda_phantom_site_style *sty)
{
    const size_t plane = (size_t)rows * (size_t)cols;
    if (sty->ghost_fraction > 0.0) {
        memcpy(scratch, img, plane * sizeof *img);
        const float f = (float)sty->ghost_fraction;
        for (int r = 0; r < rows; r++) {
            int rs = r + sty->ghost_shift_px;
            rs = rs < 0 ? 0 : (rs >= rows ? rows - 1 : rs);
            for (int c = 0; c < cols; c++)
                img[(size_t)r * (size_t)cols + (size_t)c] = (1.0f - f) * scratch[(size_t)r * (size_t)cols + (size_t)c] +
                                                            f * scratch[(size_t)rs * (size_t)cols + (size_t)c];
        }
    }
    if (sty->ring_amplitude_hu > 0.0) {
        const double k = 2.0 * M_PI / sty->ring_period_mm;
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++)
                img[(size_t)r * (size_t)cols + (size_t)c] +=
                    (float)(sty->ring_amplitude_hu * sin(k * sqrt(xs[c] * xs[c] + ys[r] * ys[r])));
    }
    if (sty->downsample > 1) {
        /* block means (partial blocks at the edges average what they hold) into scratch, then
         * bilinear back with low-res pixel centres at d * R + (d - 1) / 2 */
        const int d = sty->downsample, lr = (rows + d - 1) / d, lc = (cols + d - 1) / d;
        for (int R = 0; R < lr; R++)
            for (int C = 0; C < lc; C++) {
                double sum = 0.0;
                int cnt = 0;
                for (int r = R * d; r < R * d + d && r < rows; r++)
                    for (int c = C * d; c < C * d + d && c < cols; c++, cnt++)
                        sum += img[(size_t)r * (size_t)cols + (size_t)c];
                scratch[(size_t)R * (size_t)lc + (size_t)C] = (float)(sum / cnt);
            }
        for (int r = 0; r < rows; r++) {
            double fr = (r - 0.5 * (d - 1)) / d;
            fr = fr < 0 ? 0 : (fr > lr - 1 ? lr - 1 : fr);
            const int r0 = (int)fr, r1 = r0 + 1 < lr ? r0 + 1 : r0;
            const double wr = fr - r0;
            for (int c = 0; c < cols; c++) {
                double fc = (c - 0.5 * (d - 1)) / d;
                fc = fc < 0 ? 0 : (fc > lc - 1 ? lc - 1 : fc);
                const int c0 = (int)fc, c1 = c0 + 1 < lc ? c0 + 1 : c0;
                const double wc = fc - c0;
                const float *a = scratch + (size_t)r0 * (size_t)lc, *b = scratch + (size_t)r1 * (size_t)lc;
                img[(size_t)r * (size_t)cols + (size_t)c] =
                    (float)((1 - wr) * ((1 - wc) * a[c0] + wc * a[c1]) + wr * ((1 - wc) * b[c0] + wc * b[c1]));
            }
        }
    }
    if (sty->invert)
        for (size_t i = 0; i < plane; i++)
            img[i] = (float)(2.0 * sty->invert_center_hu) - img[i];
}

static samda_status check_range(samda_error *err, const char *name, double v, double lo, double hi)
{
    if (!isfinite(v) || v < lo || v > hi)
        return samda_fail(err, SAMDA_EINVAL, "phantom parameters: %s = %g outside %g..%g", name, v, lo, hi);
    return SAMDA_OK;
}

static samda_status validate(const samda_phantom_params *p, samda_error *err)
{
    samda_status s;
    if ((s = check_range(err, "rows", p->rows, 8, 4096)) || (s = check_range(err, "cols", p->cols, 8, 4096)) ||
        (s = check_range(err, "n_slices", p->n_slices, 1, 4096)) ||
        (s = check_range(err, "slice_spacing_mm", p->slice_spacing_mm, 0.1, 100)) ||
        (s = check_range(err, "z_center_mm", p->z_center_mm, -200, 200)) ||
        (s = check_range(err, "style.hu_scale", p->style.hu_scale, 0.05, 20)) ||
        (s = check_range(err, "style.hu_offset", p->style.hu_offset, -4000, 4000)) ||
        (s = check_range(err, "style.gamma", p->style.gamma, 0.1, 10)) ||
        (s = check_range(err, "style.noise_sigma_hu", p->style.noise_sigma_hu, 0, 2000)) ||
        (s = check_range(err, "style.blur_sigma_px", p->style.blur_sigma_px, 0, 32)) ||
        (s = check_range(err, "style.bias_amplitude", p->style.bias_amplitude, 0, 0.9)) ||
        (s = check_range(err, "style.pixel_spacing_mm", p->style.pixel_spacing_mm, 0.05, 20)) ||
        (s = check_range(err, "style.organ_contrast", p->style.organ_contrast, 0, 10)) ||
        (s = check_range(err, "style.ghost_fraction", p->style.ghost_fraction, 0, 0.5)) ||
        (s = check_range(err, "style.ghost_shift_px", p->style.ghost_shift_px, -64, 64)) ||
        (s = check_range(err, "style.ring_amplitude_hu", p->style.ring_amplitude_hu, 0, 500)) ||
        (p->style.ring_amplitude_hu > 0 &&
         (s = check_range(err, "style.ring_period_mm", p->style.ring_period_mm, 1, 200))) ||
        (s = check_range(err, "style.downsample", p->style.downsample, 0, 8)) ||
        (s = check_range(err, "style.invert", p->style.invert, 0, 1)) ||
        (s = check_range(err, "style.invert_center_hu", p->style.invert_center_hu, -1000, 1000)))
        return s;
    /* The body is ~230 mm wide; a field of view beyond 2 m is a unit mistake, and the texture
     * lattice grows with its area. */
    double fov_r = p->rows * p->style.pixel_spacing_mm, fov_c = p->cols * p->style.pixel_spacing_mm;
    if (fov_r > 2000.0 || fov_c > 2000.0)
        return samda_fail(err, SAMDA_EINVAL,
                          "phantom parameters: field of view %g x %g mm (rows/cols x style.pixel_spacing_mm) "
                          "exceeds 2000 mm",
                          fov_r, fov_c);
    size_t voxels = (size_t)p->rows * (size_t)p->cols * (size_t)p->n_slices;
    if (voxels > ((size_t)1 << 30))
        return samda_fail(err, SAMDA_EINVAL,
                          "phantom parameters: %d x %d x %d voxels exceed the limit of 2^30 (generate fewer slices "
                          "per call)",
                          p->n_slices, p->rows, p->cols);
    return SAMDA_OK;
}

void samda_phantom_volume_free(samda_phantom_volume *v)
{
    if (!v)
        return;
    free(v->slice_z_mm);
    free(v->image);
    free(v->mask);
    memset(v, 0, sizeof *v);
}

typedef struct work {
    uint8_t     *tissue;
    float       *hu, *tmp, *bias, *row, *pad;
    double      *xs, *ys;
    texture_grid tex[2];
} work;

static void work_free(work *w)
{
    free(w->tissue);
    free(w->hu);
    free(w->tmp);
    free(w->bias);
    free(w->xs);
    free(w->ys);
    free(w->row);
    free(w->pad);
    texture_grid_free(&w->tex[0]);
    texture_grid_free(&w->tex[1]);
}

/* Where row dy (relative to the centre) crosses the plain ellipse scaled by R: x0 <= dx <= x1. */
static int row_span(const shape2 *s, double dy, double R, double *x0, double *x1)
{
    double iax2 = 1.0 / (s->ax * s->ax), iay2 = 1.0 / (s->ay * s->ay);
    double qa = s->cr * s->cr * iax2 + s->sr * s->sr * iay2;
    double qb = 2.0 * dy * s->cr * s->sr * (iax2 - iay2);
    double qc = dy * dy * (s->sr * s->sr * iax2 + s->cr * s->cr * iay2) - R * R;
    double disc = qb * qb - 4.0 * qa * qc;
    if (disc <= 0.0)
        return 0;
    double sq = sqrt(disc);
    *x0 = (-qb - sq) / (2.0 * qa);
    *x1 = (-qb + sq) / (2.0 * qa);
    return 1;
}

/* Paint a shape row by row. Between the ellipses scaled by 1 - amp_sum and 1 + amp_sum each pixel
 * gets the exact test; pixels more than one pixel inside the inner ellipse are certainly inside
 * and are filled without it. The result equals testing every pixel, only faster. */
static void paint(const shape2 *s, const work *w, uint8_t *label, int rows, int cols, double spacing)
{
    const double hi = 1.0 + s->amp_sum, lo = 1.0 - s->amp_sum;
    const double half_c = 0.5 * (cols - 1), half_r = 0.5 * (rows - 1);
    double ext_y = hi * sqrt(s->ax * s->ax * s->sr * s->sr + s->ay * s->ay * s->cr * s->cr) + spacing;
    int r0 = (int)floor((s->cy - ext_y) / spacing + half_r), r1 = (int)ceil((s->cy + ext_y) / spacing + half_r);
    if (r0 < 0)
        r0 = 0;
    if (r1 > rows - 1)
        r1 = rows - 1;
    for (int r = r0; r <= r1; r++) {
        const double y = w->ys[r];
        if (y >= s->y_max)
            continue;
        double x0, x1;
        if (!row_span(s, y - s->cy, hi, &x0, &x1))
            continue;
        int c0 = (int)floor((s->cx + x0) / spacing + half_c) - 1, c1 = (int)ceil((s->cx + x1) / spacing + half_c) + 1;
        if (c0 < 0)
            c0 = 0;
        if (c1 > cols - 1)
            c1 = cols - 1;
        int f0 = 1, f1 = 0; /* certainly-inside columns; empty by default */
        if (lo > 0.0 && row_span(s, y - s->cy, lo, &x0, &x1)) {
            f0 = (int)ceil((s->cx + x0) / spacing + half_c) + 1;
            f1 = (int)floor((s->cx + x1) / spacing + half_c) - 1;
        }
        const size_t row = (size_t)r * (size_t)cols;
        for (int c = c0; c <= c1; c++) {
            const size_t i = row + (size_t)c;
            if (!(s->over & TBIT(w->tissue[i])))
                continue;
            if ((c >= f0 && c <= f1) || shape_contains(s, w->xs[c], y)) {
                w->tissue[i] = s->tissue;
                label[i] = s->label;
            }
        }
    }
}

/* Geometry of the slice at z: the tissue map in w and the labels, every shape painted in order
 * (an intervertebral disc where the vertebral bodies are at disc level). */
static void paint_geometry(const anatomy *a, int with_lung_bases, double z, work *w, uint8_t *label, int rows,
                           int cols, double sp)
{
    double disc_pos = fmod(z - a->disc_phase_mm, 32.0);
    if (disc_pos < 0)
        disc_pos += 32.0;
    const int in_disc = disc_pos < 7.0;
    for (int i = 0; i < a->n; i++) {
        if (!with_lung_bases && i >= a->lung_first && i < a->lung_first + a->lung_count)
            continue;
        shape2 s2;
        if (!shape_at(&a->shapes[i], z, &s2))
            continue;
        if (in_disc && i >= a->vb_first && i < a->vb_first + a->vb_count)
            s2.tissue = T_DISC;
        paint(&s2, w, label, rows, cols, sp);
    }
}

samda_status samda_phantom_volume_generate(const samda_phantom_params *p, samda_phantom_volume *out,
                                           samda_error *err)
{
    if (!out)
        return samda_fail(err, SAMDA_EINVAL, "generating phantom: no output volume given");
    memset(out, 0, sizeof *out);
    if (!p)
        return samda_fail(err, SAMDA_EINVAL, "generating phantom: no parameters given");
    samda_status st = validate(p, err);
    if (st != SAMDA_OK)
        return st;

    const int rows = p->rows, cols = p->cols, n = p->n_slices;
    const size_t plane = (size_t)rows * (size_t)cols;
    const samda_phantom_site_style *sty = &p->style;
    const double sp = sty->pixel_spacing_mm;

    anatomy *a = malloc(sizeof *a);
    work w;
    memset(&w, 0, sizeof w);
    out->slice_z_mm = malloc((size_t)n * sizeof *out->slice_z_mm);
    out->image = malloc(plane * (size_t)n * sizeof *out->image);
    out->mask = malloc(plane * (size_t)n);
    w.tissue = malloc(plane);
    w.hu = malloc(plane * sizeof *w.hu);
    w.tmp = malloc(plane * sizeof *w.tmp);
    w.bias = malloc(plane * sizeof *w.bias);
    w.xs = malloc((size_t)cols * sizeof *w.xs);
    w.ys = malloc((size_t)rows * sizeof *w.ys);
    w.row = malloc((size_t)cols * sizeof *w.row);
    w.pad = malloc(((size_t)cols + 2 * 96) * sizeof *w.pad);
    int ok = a && out->slice_z_mm && out->image && out->mask && w.tissue && w.hu && w.tmp && w.bias && w.xs && w.ys &&
             w.row && w.pad;
    if (ok) {
        for (int c = 0; c < cols; c++)
            w.xs[c] = (c - 0.5 * (cols - 1)) * sp;
        for (int r = 0; r < rows; r++)
            w.ys[r] = (r - 0.5 * (rows - 1)) * sp;
        ok = texture_grid_init(&w.tex[0], 22.0, w.xs, cols, w.ys, rows) &&
             texture_grid_init(&w.tex[1], 8.0, w.xs, cols, w.ys, rows);
    }
    if (!ok) {
        free(a);
        work_free(&w);
        samda_phantom_volume_free(out);
        return samda_fail(err, SAMDA_ENOMEM, "generating phantom %d x %d x %d: out of memory", n, rows, cols);
    }
    out->n_slices = n;
    out->rows = rows;
    out->cols = cols;
    out->pixel_spacing_mm = sp;
    out->slice_spacing_mm = p->slice_spacing_mm;

    build_anatomy(a, p->seed);

    /* Per-tissue HU after the contrast step. */
    double t_hu[T_COUNT_];
    for (int t = 0; t < T_COUNT_; t++)
        t_hu[t] = tissues[t].enhancing ? SOFT_TISSUE_HU + sty->organ_contrast * (tissues[t].hu - SOFT_TISSUE_HU)
                                       : tissues[t].hu;
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++)
            w.bias[(size_t)r * (size_t)cols + (size_t)c] =
                (float)(1.0 + sty->bias_amplitude * bias_shape(w.xs[c], w.ys[r]));

    for (int k = 0; k < n; k++) {
        const double z = p->z_center_mm + (0.5 * (n - 1) - k) * p->slice_spacing_mm;
        out->slice_z_mm[k] = z;
        uint8_t *label = out->mask + plane * (size_t)k;
        memset(w.tissue, T_AIR, plane);
        memset(label, 0, plane);

        paint_geometry(a, p->with_lung_bases, z, &w, label, rows, cols, sp);

        /* Ideal HU with texture. */
        texture_slice(&w.tex[0], a->texture_seed, z);
        texture_slice(&w.tex[1], a->texture_seed ^ 0xA5A5A5A5A5A5A5A5ull, z);
        for (int r = 0; r < rows; r++) {
            memset(w.row, 0, (size_t)cols * sizeof *w.row);
            texture_row(&w.tex[0], r, cols, 0.72f, w.row);
            texture_row(&w.tex[1], r, cols, 0.38f, w.row);
            const uint8_t *tis = w.tissue + (size_t)r * (size_t)cols;
            float *hu = w.hu + (size_t)r * (size_t)cols;
            for (int c = 0; c < cols; c++)
                hu[c] = (float)(t_hu[tis[c]] + tissues[tis[c]].texture * w.row[c]);
        }

        /* Site style: blur -> bias field -> intensity mapping -> noise -> clamp. */
        if (sty->blur_sigma_px >= 0.05)
            blur(w.hu, w.tmp, w.row, w.pad, rows, cols, sty->blur_sigma_px);
        /* The noise stream is keyed by the slice's z, so a slice generated as part of a shorter stack
         * at the same level gets its own, independent noise (samda phantom generates in chunks). */
        uint64_t zbits;
        memcpy(&zbits, &z, sizeof zbits);
        samda_rng nr;
        samda_rng_seed(&nr, p->seed ^ 0x6E6F697365ull, zbits);
        int16_t *img = out->image + plane * (size_t)k;
        const int use_gamma = sty->gamma != 1.0;
        const int post = acquisition_post_needed(sty);
        for (size_t i = 0; i < plane; i += 2) {
            double g[2] = {0.0, 0.0};
            if (sty->noise_sigma_hu > 0.0) {
                /* Box-Muller in Marsaglia's polar form: no sin/cos, one log per pair. */
                double u, v, q;
                do {
                    u = 2.0 * samda_rng_u01(&nr) - 1.0;
                    v = 2.0 * samda_rng_u01(&nr) - 1.0;
                    q = u * u + v * v;
                } while (q >= 1.0 || q == 0.0);
                double f = sqrt(-2.0 * log(q) / q) * sty->noise_sigma_hu;
                g[0] = u * f;
                g[1] = v * f;
            }
            for (size_t j = 0; j < 2 && i + j < plane; j++) {
                double v = w.hu[i + j];
                v = (v + 1000.0) * w.bias[i + j] - 1000.0; /* multiplicative on attenuation */
                v = sty->hu_scale * v + sty->hu_offset;
                if (use_gamma) {
                    double t = (v + 1024.0) / 4095.0;
                    t = t < 0.0 ? 0.0 : (t > 1.0 ? 1.0 : t);
                    v = pow(t, sty->gamma) * 4095.0 - 1024.0;
                }
                v += g[j];
                if (post) {
                    w.tmp[i + j] = (float)v; /* finished below */
                    continue;
                }
                v = v < -1024.0 ? -1024.0 : (v > 3071.0 ? 3071.0 : v);
                img[i + j] = (int16_t)((int)(v + 1024.5) - 1024); /* round half up; the sum is > 0 */
            }
        }
        if (post) {
            acquisition_post(w.tmp, w.hu, w.xs, w.ys, rows, cols, sty);
            for (size_t i = 0; i < plane; i++) {
                double v = w.tmp[i];
                v = v < -1024.0 ? -1024.0 : (v > 3071.0 ? 3071.0 : v);
                img[i] = (int16_t)((int)(v + 1024.5) - 1024);
            }
        }
    }
    free(a);
    work_free(&w);
    return SAMDA_OK;
}
