/* samda phantom: a deterministic synthetic CT-like abdomen generator with per-site domain shift.
 *
 * It exists to train and evaluate per-site decoder adapters and to drive end-to-end tests without
 * patient data. One call builds one body (anatomy randomised by a seed) as a stack of axial slices
 * in Hounsfield units, together with an exact label mask, and applies a "site style": the
 * acquisition differences (kernel blur, noise, calibration, cupping, resolution, contrast timing)
 * that make one hospital's images look unlike another's while the anatomy stays the same.
 *
 * What it deliberately does not do: physics (no projections, no streaks or metal artefacts), DICOM
 * (the writer lives in dicom/; see samda_phantom_main), or anatomy beyond the upper abdomen.
 *
 * Geometry (all in millimetres, so pixel spacing changes the sampling, not the anatomy):
 *   x: column direction, + towards the patient's left (the image's right, radiological view);
 *   y: row direction, + towards the back (posterior is the bottom of the image);
 *   z: slice direction, + towards the head. Slice 0 is the most superior (highest z).
 *   Pixel (r, c) is sampled at its centre: x = (c - (cols-1)/2) * spacing, likewise y with rows.
 *   z = 0 is the level of the first lumbar vertebra, where all five labels are present; the model
 *   covers about z = -110 (below the kidneys) to +115 (lung bases above the liver dome).
 *
 * Anatomy (a slim adult, about 225 x 170 mm across so that it fits a 256 mm field of view):
 *   body ellipse with a subcutaneous fat layer (8-20 mm), an abdominal muscle wall, visceral fat;
 *   liver (right lobe, plus a left lobe across the midline in the upper half), about 0.65-1.0 L;
 *   two kidneys (cortex and medulla, fat in the hilum), about 0.09-0.14 L each;
 *   spleen (posterolateral left), about 0.1-0.2 L (volumes measured over seeds; they are those of
 *   the scaled-down body); aorta (contrast-filled, radius ~10 mm) and
 *   inferior vena cava along the whole height; vertebral body with cortex, intervertebral discs,
 *   spinal canal, posterior elements, paraspinal and (lower) psoas muscles, ribs in the upper half;
 *   stomach with an air-fluid level and bowel loops with gas pockets; lung bases at the top.
 *   Shapes are ellipses whose radius is perturbed by low-order angular harmonics that drift along
 *   z, so boundaries are smooth but irregular and organs grow, shrink, appear and disappear across
 *   slices. Each tissue carries low-frequency texture (about +-10 HU for organs).
 *   Bone, gas, lung, bowel and muscle are never labelled.
 *
 * Labels (uint8 in the mask): 0 background, 1 liver, 2 kidney (both), 3 spleen, 4 aorta,
 * 5 inferior vena cava. samda_phantom_labels[] gives names, SNOMED CT codes, colours and windows.
 *
 * Determinism: the same parameters give the same bytes, whatever the compiler or optimisation
 * level (a golden-hash test pins gcc, clang, -O0..-O2, sanitizers). No global state, no time, no
 * rand(); randomness comes from samda_rng streams (common/random.h) derived from the seed. The anatomy
 * stream never depends on the style or the image size, so the mask depends only on (seed, pixel
 * spacing, rows, cols, slice positions); the noise of a slice depends on (seed, its z). Results use
 * sin/cos/exp/log/pow/sqrt from the C library: identical with one libm (glibc here); another libm
 * could round a few pixels differently (by 1 HU) or move an organ edge by one pixel in rare cases.
 *
 * Thread-safety: every function here is thread-safe (no shared mutable state); a volume must not
 * be freed while another thread reads it. */
#ifndef SAMDA_PHANTOM_H
#define SAMDA_PHANTOM_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- labels ----------------------------------------------------------------------------------- */

#define SAMDA_PHANTOM_LABEL_BACKGROUND 0
#define SAMDA_PHANTOM_LABEL_LIVER      1
#define SAMDA_PHANTOM_LABEL_KIDNEY     2
#define SAMDA_PHANTOM_LABEL_SPLEEN     3
#define SAMDA_PHANTOM_LABEL_AORTA      4
#define SAMDA_PHANTOM_LABEL_IVC        5
/** Number of foreground labels (rows in samda_phantom_labels). */
#define SAMDA_PHANTOM_N_LABELS 5

/* Segmented Property Category shared by every label (SNOMED CT, scheme "SCT"). */
#define SAMDA_PHANTOM_CATEGORY_CODE    "123037004"
#define SAMDA_PHANTOM_CATEGORY_MEANING "Anatomical Structure"

/** One foreground label: what a DICOM-SEG segment or a viewer needs to know about it. */
typedef struct samda_phantom_label {
    uint8_t     id;              /* value in the mask, 1..SAMDA_PHANTOM_N_LABELS                  */
    const char *name;            /* short machine name: "liver", "kidney", ...                    */
    const char *snomed_code;     /* SNOMED CT concept id of the Segmented Property Type           */
    const char *snomed_meaning;  /* its display name ("Liver", "Inferior vena cava", ...)         */
    uint8_t     rgb[3];          /* display colour (sRGB)                                          */
    int         window_level_hu; /* CT window that shows the organ well: centre (HU) ...          */
    int         window_width_hu; /* ... and width (HU)                                            */
} samda_phantom_label;

/** The label table, indexed by id - 1. Ownership: static, read-only. */
extern const samda_phantom_label samda_phantom_labels[SAMDA_PHANTOM_N_LABELS];

/** Row of samda_phantom_labels for a mask value. Returns NULL for 0 or an unknown id.
 *  Ownership: static, read-only. */
const samda_phantom_label *samda_phantom_label_get(int id);

/* ---- site styles ------------------------------------------------------------------------------ */

/** Acquisition differences of one site. Applied in this order to the ideal HU image:
 *  contrast -> blur -> bias field -> intensity mapping (scale, offset, gamma) -> noise -> clamp. */
typedef struct samda_phantom_site_style {
    double hu_scale;          /* intensity mapping: HU' = hu_scale * HU + hu_offset; 1 = none      */
    double hu_offset;         /* HU added after scaling (calibration shift); 0 = none              */
    double gamma;             /* applied after the linear map on (HU + 1024) / 4095, i.e. over the
                                 full int16 CT range [-1024, 3071]; 1 = none. 1.05 lowers soft
                                 tissue by ~50 HU                                                  */
    double noise_sigma_hu;    /* std of additive Gaussian noise (HU), everywhere incl. air; >= 0   */
    double blur_sigma_px;     /* in-plane Gaussian blur sigma in pixels (reconstruction kernel);
                                 0 = sharp                                                         */
    double bias_amplitude;    /* smooth multiplicative field on attenuation (HU + 1000): factor
                                 1 + a * g(x, y) with |g| <= 1, a cupping bowl (darker centre) plus
                                 a tilt; 0 = none, 0.05 = up to +-5 %, i.e. +-54 HU in soft tissue */
    double pixel_spacing_mm;  /* in-plane pixel size (mm), 0.05..20; the field of view, size *
                                 spacing, must stay within 2000 mm                                 */
    double organ_contrast;    /* how far the labelled organs and vessels sit from soft tissue:
                                 HU = 50 + organ_contrast * (HU_ref - 50); 1 = portal-venous
                                 reference, 0.5 = late or weak contrast                            */
    /* Applied after the noise, in this order (all off when 0, so styles A-D are as before):      */
    double ghost_fraction;    /* motion: a fraction f of the image displaced by ghost_shift_px rows
                                 (HU' = (1 - f) HU + f HU(row + shift)), a double contour; 0..0.5 */
    int    ghost_shift_px;    /* rows of that displacement, -64..64                               */
    double ring_amplitude_hu; /* ring artefact: + a * sin(2 pi r / ring_period_mm), r the distance
                                 from the image centre (mm); 0..500                                */
    double ring_period_mm;    /* 1..200 (used when ring_amplitude_hu > 0)                          */
    int    downsample;        /* low-resolution acquisition: block mean over d x d pixels, then
                                 bilinear interpolation back to the matrix; 0 or 1 = none, 2..8    */
    int    invert;            /* contrast inversion: HU' = 2 * invert_center_hu - HU; 0 = none     */
    double invert_center_hu;  /* the HU that stays where it is under inversion, -1000..1000        */
} samda_phantom_site_style;

/** Fill *out with the style of a named site.
 *  Presets (exact, case-sensitive names):
 *   "A" reference: noise 6 HU, blur 0.5 px, no bias, identity mapping, spacing 1.0 mm, contrast 1.
 *   "B" soft kernel, noisy, shifted: noise 25 HU, blur 1.5 px, offset +40 HU, spacing 1.0 mm
 *       (same sampling as A, so A and B masks are identical for one seed), contrast 1.
 *   "C" older scanner, late phase: bias 0.05 (centre ~30 HU darker), contrast 0.55, spacing 1.4 mm (coarser: the body
 *       looks smaller in the same matrix), noise 12 HU, blur 0.8 px.
 *   "D" strong shift: scale 1.25, offset -80 HU, gamma 1.0, noise 50 HU, blur 1.0 px,
 *       spacing 1.0 mm, contrast 0.9.
 *  New shift families (2026-12-07; before, these names were derived as below):
 *   "E" gain/offset with blur and bias field: scale 0.8, offset +60 HU, blur 2.0 px, bias 0.12,
 *       noise 10 HU.
 *   "F" heavy noise at low resolution: noise 90 HU, then 2 x 2 block mean and bilinear back
 *       (correlated, blotchy noise of ~45 HU, edges softened), blur 0.5 px.
 *   "G" contrast inversion about 50 HU (fat brighter than organs, air white), noise 10 HU,
 *       blur 0.7 px.
 *   "H" nonlinear intensity with artefacts and zoom: gamma 0.95 (soft tissue ~+75 HU), ring
 *       artefact 40 HU with a 7 mm period, motion ghost 25 % at 10 rows, spacing 0.8 mm (a smaller
 *       field of view: the body fills more of the matrix, its edges may be cut), noise 15 HU.
 *  Any other name gets parameters derived from a 64-bit FNV-1a hash of its bytes, within: noise
 *  4-40 HU, blur 0-1.6 px, bias 0-0.06, scale 0.85-1.2, offset -60..+60 HU, gamma 0.96-1.04,
 *  spacing 0.9-1.5 mm, contrast 0.6-1.2. The same name always gives the same style.
 *  @param site IN: site name; NULL or "" gives preset "A".   @param out OUT: the style.
 *  Thread-safety: thread-safe. */
void samda_phantom_style_for_site(const char *site, samda_phantom_site_style *out);

/* ---- volumes ---------------------------------------------------------------------------------- */

/** What to generate. Start from samda_phantom_params_init() and change what you need. */
typedef struct samda_phantom_params {
    uint64_t seed;                   /* anatomy and noise; same params -> same bytes. Default 1    */
    int      rows;                   /* image height in pixels, 8..4096. Default 256                */
    int      cols;                   /* image width in pixels, 8..4096. Default 256                 */
    int      n_slices;               /* number of axial slices, 1..4096. Default 48                 */
    double   slice_spacing_mm;       /* distance between slice centres, 0.1..100. Default 5         */
    double   z_center_mm;            /* anatomical z of the stack's centre (0 = L1, all labels
                                        present), -200..200. Default 0                              */
    int      with_lung_bases;        /* 1: air-filled lung bases in the top slices. Default 1       */
    samda_phantom_site_style style;  /* acquisition style. Default: preset "A"                      */
} samda_phantom_params;

/** Set *p to the defaults documented on each field. Thread-safety: thread-safe. */
void samda_phantom_params_init(samda_phantom_params *p);

/** One generated body. Arrays are C order [slice][row][col]; slice 0 is the most superior. */
typedef struct samda_phantom_volume {
    int      n_slices, rows, cols;
    double   pixel_spacing_mm;    /* in-plane, square pixels (row and column spacing equal)        */
    double   slice_spacing_mm;
    double  *slice_z_mm;          /* [n_slices]: z of each slice centre, decreasing                */
    int16_t *image;               /* [n_slices*rows*cols]: HU, in [-1024, 3071]; stored value = HU
                                     (a DICOM writer uses RescaleIntercept 0, slope 1)             */
    uint8_t *mask;                /* [n_slices*rows*cols]: label ids, exact on the pixel grid      */
} samda_phantom_volume;

/** Generate one body.
 *  @param p   IN: parameters (validated; nothing is clamped silently).
 *  @param out OUT: the volume; zeroed first, so it is safe to free after any outcome.
 *  @param err OUT: reason on failure; may be NULL.
 *  @return SAMDA_OK; SAMDA_EINVAL: p or out NULL, or a field outside its documented range (the
 *          message names the field, its value and the range), *out left empty;
 *          SAMDA_ENOMEM: allocation failed, *out left empty.
 *  Ownership: caller owns the arrays in *out; release them with samda_phantom_volume_free().
 *  Thread-safety: thread-safe; about 5 ms per 256x256 slice on one core. */
samda_status samda_phantom_volume_generate(const samda_phantom_params *p, samda_phantom_volume *out,
                                           samda_error *err);

/** Release the arrays of a volume and zero it. NULL, and an already freed or zeroed volume, are
 *  harmless no-ops. Thread-safety: not with concurrent readers of the same volume. */
void samda_phantom_volume_free(samda_phantom_volume *v);

/* ---- command line ----------------------------------------------------------------------------- */

/** The `samda phantom` command: write a labelled 2D training set of synthetic slices.
 *
 *    samda phantom --out DIR --site NAME --count N --seed S
 *                  [--slices-per-body K] [--size PX] [--dicom] [--help]
 *
 *  Writes N cases as DIR/<site>_<body>_<slice>.image.npy (int16 HU, size x size) and
 *  .mask.npy (uint8 label ids), body = 0000.., slice = 000..: consecutive slices of ceil(N/K)
 *  bodies, K slices per body spread evenly over z = -100..+100 mm (the last body may contribute
 *  fewer, from the top), plus DIR/phantom.json (style, label table, seed, count, files). DIR is
 *  created if missing (one level). Each file is written crash-safely (temp, fsync, rename).
 *  Use one directory per site and seed: a second run into the same directory overwrites files of
 *  the same names and phantom.json describes only the last run.
 *  Bounds: --count 1..100000, --size 32..1024, --slices-per-body 1..1024 (default 16),
 *  --seed 0..2^64-1 (decimal or 0x hex), --site [A-Za-z0-9_-]{1,64}. Flags take "--f V" or
 *  "--f=V". --dicom is rejected for now: the DICOM writer lives in dicom/ and the samda CLI
 *  wires it in.
 *  @param argc, argv IN: argv[0] is the command name ("phantom"); the rest are flags.
 *  @return process exit status: 0 success (or --help), 2 usage error (message on stderr names
 *          the flag and the bound), 1 generation or I/O failure (files already written stay;
 *          phantom.json is written last, so its presence marks a complete set).
 *  Thread-safety: thread-safe (no getopt, no globals); writes to stdout/stderr. */
int samda_phantom_main(int argc, char **argv);

/** Writes one generated body as DICOM (CT series plus ground-truth DICOM-SEG) for `--dicom`.
 *  phantom/ knows no DICOM: the caller (the samda CLI, over dicom/) supplies this.
 *  @param v    IN: the whole body (every slice).  @param site, body IN: for names.
 *  @param dir  IN: the --out directory.  @return SAMDA_OK or a failure with err set. */
typedef samda_status (*samda_phantom_dicom_fn)(void *ctx, const samda_phantom_volume *v, const char *site, long body,
                                               const char *dir, samda_error *err);

/** samda_phantom_main with `--dicom` enabled through dicom_writer (NULL: --dicom is refused). With
 *  --dicom each body is generated whole and handed to dicom_writer after its .npy files. */
int samda_phantom_main_ex(int argc, char **argv, samda_phantom_dicom_fn dicom_writer, void *ctx);

#ifdef __cplusplus
}
#endif
#endif
