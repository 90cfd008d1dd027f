/* Tests of phantom/phantom.c: determinism, anatomy (labels present, plausible organ volumes, variation
 * along z), site styles (they differ where they should and masks do not), validation, the label
 * table. Set SAMDA_PHANTOM_PGM_DIR to also write the mid slice of each site as PGM for a look. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "phantom.h"

static samda_phantom_params params_for(const char *site, uint64_t seed)
{
    samda_phantom_params p;
    samda_phantom_params_init(&p);
    samda_phantom_style_for_site(site, &p.style);
    p.seed = seed;
    return p;
}

static void generate(const samda_phantom_params *p, samda_phantom_volume *v)
{
    samda_error err;
    samda_error_clear(&err);
    samda_status s = samda_phantom_volume_generate(p, v, &err);
    if (s != SAMDA_OK)
        fail_msg("generate: %s", err.message);
    assert_non_null(v->image);
    assert_non_null(v->mask);
}

static size_t plane_of(const samda_phantom_volume *v)
{
    return (size_t)v->rows * (size_t)v->cols;
}

static void count_labels(const samda_phantom_volume *v, int slice, size_t counts[SAMDA_PHANTOM_N_LABELS + 1])
{
    memset(counts, 0, sizeof(size_t) * (SAMDA_PHANTOM_N_LABELS + 1));
    const uint8_t *m = v->mask + plane_of(v) * (size_t)slice;
    for (size_t i = 0; i < plane_of(v); i++) {
        assert_true(m[i] <= SAMDA_PHANTOM_N_LABELS);
        counts[m[i]]++;
    }
}

/* Mean and standard deviation of the image over pixels of `label` whose neighbours `rad` pixels
 * away in the 4 directions have the same label (away from edges, so blur does not mix tissues). */
typedef struct stats {
    double mean, std, noise; /* noise: std of horizontal neighbour differences / sqrt(2) */
    size_t n;
} stats;

static stats interior_stats(const samda_phantom_volume *v, int slice, int label, int rad)
{
    const size_t pl = plane_of(v);
    const uint8_t *m = v->mask + pl * (size_t)slice;
    const int16_t *im = v->image + pl * (size_t)slice;
    double s = 0, s2 = 0, d = 0, d2 = 0;
    size_t n = 0, nd = 0;
    for (int r = rad; r < v->rows - rad; r++)
        for (int c = rad; c < v->cols - rad - 1; c++) {
            size_t i = (size_t)r * (size_t)v->cols + (size_t)c;
            if (m[i] != label || m[i - (size_t)rad] != label || m[i + (size_t)rad + 1] != label ||
                m[i - (size_t)rad * (size_t)v->cols] != label || m[i + (size_t)rad * (size_t)v->cols] != label)
                continue;
            s += im[i];
            s2 += (double)im[i] * im[i];
            n++;
            double diff = (double)im[i + 1] - im[i];
            d += diff;
            d2 += diff * diff;
            nd++;
        }
    stats st = {0, 0, 0, n};
    if (n > 1) {
        st.mean = s / (double)n;
        st.std = sqrt(s2 / (double)n - st.mean * st.mean);
        double dm = d / (double)nd;
        st.noise = sqrt(d2 / (double)nd - dm * dm) / sqrt(2.0);
    }
    return st;
}

static void test_params_init_and_presets(void **state)
{
    (void)state;
    samda_phantom_params p;
    samda_phantom_params_init(&p);
    assert_int_equal(p.rows, 256);
    assert_int_equal(p.cols, 256);
    assert_int_equal(p.n_slices, 48);
    assert_true(p.slice_spacing_mm == 5.0);
    assert_int_equal(p.with_lung_bases, 1);
    samda_phantom_site_style a, b, c, d, x1, x2, y, n;
    samda_phantom_style_for_site("A", &a);
    samda_phantom_style_for_site("B", &b);
    samda_phantom_style_for_site("C", &c);
    samda_phantom_style_for_site("D", &d);
    samda_phantom_style_for_site(NULL, &n);
    assert_memory_equal(&p.style, &a, sizeof a);
    assert_memory_equal(&n, &a, sizeof a);
    assert_true(a.pixel_spacing_mm == 1.0 && a.hu_scale == 1.0 && a.hu_offset == 0.0 && a.bias_amplitude == 0.0);
    assert_true(b.noise_sigma_hu > a.noise_sigma_hu && b.blur_sigma_px > a.blur_sigma_px && b.hu_offset != 0.0);
    assert_true(b.pixel_spacing_mm == a.pixel_spacing_mm);
    assert_true(c.bias_amplitude > 0.0 && c.organ_contrast < 1.0 && c.pixel_spacing_mm > a.pixel_spacing_mm);
    assert_true(d.hu_scale != 1.0 && d.noise_sigma_hu >= 2 * b.noise_sigma_hu);
    /* derived styles: deterministic, distinct per name, inside the documented ranges */
    samda_phantom_style_for_site("hospital-42", &x1);
    samda_phantom_style_for_site("hospital-42", &x2);
    samda_phantom_style_for_site("hospital-43", &y);
    assert_memory_equal(&x1, &x2, sizeof x1);
    assert_memory_not_equal(&x1, &y, sizeof x1);
    const char *names[] = {"a", "siteX", "hospital-42", "Z", "0", "very_long_site_name_with_many_characters"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        samda_phantom_site_style s;
        samda_phantom_style_for_site(names[i], &s);
        assert_true(s.noise_sigma_hu >= 4 && s.noise_sigma_hu <= 40);
        assert_true(s.blur_sigma_px >= 0 && s.blur_sigma_px <= 1.6);
        assert_true(s.bias_amplitude >= 0 && s.bias_amplitude <= 0.06);
        assert_true(s.hu_scale >= 0.85 && s.hu_scale <= 1.2);
        assert_true(s.hu_offset >= -60 && s.hu_offset <= 60);
        assert_true(s.gamma >= 0.96 && s.gamma <= 1.04);
        assert_true(s.pixel_spacing_mm >= 0.9 && s.pixel_spacing_mm <= 1.5);
        assert_true(s.organ_contrast >= 0.6 && s.organ_contrast <= 1.2);
    }
    samda_phantom_style_for_site("A", NULL); /* harmless */
}

static void test_label_table(void **state)
{
    (void)state;
    static const char *const codes[] = {"10200004", "64033007", "78961009", "15825003", "64131007"};
    for (int id = 1; id <= SAMDA_PHANTOM_N_LABELS; id++) {
        const samda_phantom_label *l = samda_phantom_label_get(id);
        assert_non_null(l);
        assert_ptr_equal(l, &samda_phantom_labels[id - 1]);
        assert_int_equal(l->id, id);
        assert_string_equal(l->snomed_code, codes[id - 1]);
        assert_true(strlen(l->name) > 0 && strlen(l->snomed_meaning) > 0);
        assert_true(l->window_width_hu > 0);
        for (int j = 1; j < id; j++)
            assert_string_not_equal(l->name, samda_phantom_labels[j - 1].name);
    }
    assert_int_equal(SAMDA_PHANTOM_LABEL_LIVER, 1);
    assert_int_equal(SAMDA_PHANTOM_LABEL_IVC, 5);
    assert_string_equal(samda_phantom_labels[SAMDA_PHANTOM_LABEL_AORTA - 1].name, "aorta");
    assert_null(samda_phantom_label_get(0));
    assert_null(samda_phantom_label_get(SAMDA_PHANTOM_N_LABELS + 1));
    assert_null(samda_phantom_label_get(-1));
    assert_string_equal(SAMDA_PHANTOM_CATEGORY_CODE, "123037004");
}

static void test_deterministic(void **state)
{
    (void)state;
    samda_phantom_params p = params_for("B", 1234);
    p.n_slices = 6;
    p.slice_spacing_mm = 20;
    samda_phantom_volume v1, v2, v3;
    generate(&p, &v1);
    generate(&p, &v2);
    size_t n = plane_of(&v1) * (size_t)v1.n_slices;
    assert_memory_equal(v1.image, v2.image, n * sizeof *v1.image);
    assert_memory_equal(v1.mask, v2.mask, n);
    assert_memory_equal(v1.slice_z_mm, v2.slice_z_mm, (size_t)v1.n_slices * sizeof(double));
    /* another seed: another body, not just other noise */
    p.seed = 1235;
    generate(&p, &v3);
    size_t diff = 0;
    for (size_t i = 0; i < n; i++)
        diff += v1.mask[i] != v3.mask[i];
    assert_true(diff > n / 100);
    assert_memory_not_equal(v1.image, v3.image, n * sizeof *v1.image);
    samda_phantom_volume_free(&v1);
    samda_phantom_volume_free(&v2);
    samda_phantom_volume_free(&v3);
}

static uint64_t fnv1a(const void *data, size_t n)
{
    const unsigned char *c = data;
    uint64_t h = 0xCBF29CE484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ c[i]) * 0x100000001B3ull;
    return h;
}

/* Same bytes on every build: these values were produced by gcc -O2, gcc -O0 with ASan+UBSan,
 * clang -O2 and clang with MSan on x86-64 glibc. A change means either an intended change of the
 * anatomy or a style (update the values and say so in the commit: data sets made before differ) or
 * broken determinism (e.g. two random draws in one expression, whose order C leaves open). */
static void test_golden_bytes(void **state)
{
    (void)state;
    static const struct {
        const char *site;
        uint64_t    mask, image;
    } golden[] = {
        {"A", 0x715b8242cf7b267cull, 0xa31482d101b2ae11ull},
        {"C", 0xaec9820c0ff5d370ull, 0x1126c654cf2eef2bull},
        {"x", 0xad626ad7e5b8e021ull, 0x776f7f8eaa5f3bc4ull},
    };
    for (size_t i = 0; i < sizeof golden / sizeof golden[0]; i++) {
        samda_phantom_params p = params_for(golden[i].site, 1);
        p.n_slices = 12;
        p.slice_spacing_mm = 15;
        samda_phantom_volume v;
        generate(&p, &v);
        size_t n = plane_of(&v) * (size_t)v.n_slices;
        uint64_t hm = fnv1a(v.mask, n), hi = fnv1a(v.image, n * sizeof *v.image);
        if (hm != golden[i].mask || hi != golden[i].image)
            fail_msg("site %s: mask %016llx image %016llx, expected %016llx %016llx", golden[i].site,
                     (unsigned long long)hm, (unsigned long long)hi, (unsigned long long)golden[i].mask,
                     (unsigned long long)golden[i].image);
        samda_phantom_volume_free(&v);
    }
}

static void test_geometry_fields(void **state)
{
    (void)state;
    samda_phantom_params p = params_for("C", 5);
    p.rows = 100;
    p.cols = 120;
    p.n_slices = 7;
    p.slice_spacing_mm = 2.5;
    p.z_center_mm = 10;
    samda_phantom_volume v;
    generate(&p, &v);
    assert_int_equal(v.rows, 100);
    assert_int_equal(v.cols, 120);
    assert_int_equal(v.n_slices, 7);
    assert_true(v.pixel_spacing_mm == 1.4);
    assert_true(v.slice_spacing_mm == 2.5);
    for (int k = 0; k < 7; k++)
        assert_true(fabs(v.slice_z_mm[k] - (10 + (3 - k) * 2.5)) < 1e-9);
    size_t n = plane_of(&v) * 7;
    for (size_t i = 0; i < n; i++) {
        assert_true(v.image[i] >= -1024 && v.image[i] <= 3071);
        assert_true(v.mask[i] <= SAMDA_PHANTOM_N_LABELS);
    }
    samda_phantom_volume_free(&v);
    samda_phantom_volume_free(&v); /* second free is a no-op */
    samda_phantom_volume_free(NULL);
}

static void test_every_label_in_mid_slice(void **state)
{
    (void)state;
    /* default volumes: the middle slice (z = -2.5 mm) shows all five labels */
    for (uint64_t seed = 1; seed <= 3; seed++) {
        samda_phantom_params p = params_for("A", seed);
        samda_phantom_volume v;
        generate(&p, &v);
        size_t cnt[SAMDA_PHANTOM_N_LABELS + 1];
        count_labels(&v, v.n_slices / 2, cnt);
        for (int l = 1; l <= SAMDA_PHANTOM_N_LABELS; l++)
            if (cnt[l] < 30)
                fail_msg("seed %llu: label %d has %zu pixels in the mid slice", (unsigned long long)seed, l, cnt[l]);
        samda_phantom_volume_free(&v);
    }
    /* many more bodies, one slice each at z = 0 */
    for (uint64_t seed = 100; seed < 140; seed++) {
        samda_phantom_params p = params_for("A", seed);
        p.n_slices = 1;
        samda_phantom_volume v;
        generate(&p, &v);
        size_t cnt[SAMDA_PHANTOM_N_LABELS + 1];
        count_labels(&v, 0, cnt);
        for (int l = 1; l <= SAMDA_PHANTOM_N_LABELS; l++)
            if (cnt[l] < 30)
                fail_msg("seed %llu: label %d has %zu pixels at z = 0", (unsigned long long)seed, l, cnt[l]);
        samda_phantom_volume_free(&v);
    }
}

/* Documented anatomy (phantom.h): liver 0.65-1.0 L, kidneys 0.09-0.14 L each, spleen 0.1-0.2 L;
 * the tests allow some margin around those. In the z = 0 slice the liver covers 10-35 % of the body. */
static void test_organ_volumes_plausible(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 6; seed++) {
        samda_phantom_params p = params_for("A", seed * 7919);
        p.n_slices = 60;
        p.slice_spacing_mm = 4; /* z = +118 .. -118: the whole modelled height */
        samda_phantom_volume v;
        generate(&p, &v);
        double ml[SAMDA_PHANTOM_N_LABELS + 1] = {0};
        for (int k = 0; k < v.n_slices; k++) {
            size_t cnt[SAMDA_PHANTOM_N_LABELS + 1];
            count_labels(&v, k, cnt);
            for (int l = 1; l <= SAMDA_PHANTOM_N_LABELS; l++)
                ml[l] += (double)cnt[l] * v.pixel_spacing_mm * v.pixel_spacing_mm * v.slice_spacing_mm / 1000.0;
        }
        print_message("seed %llu: liver %.0f ml, kidneys %.0f ml, spleen %.0f ml, aorta %.0f ml, IVC %.0f ml\n",
                      (unsigned long long)p.seed, ml[1], ml[2], ml[3], ml[4], ml[5]);
        assert_true(ml[1] >= 550 && ml[1] <= 1300);
        assert_true(ml[2] >= 150 && ml[2] <= 400);
        assert_true(ml[3] >= 80 && ml[3] <= 300);
        assert_true(ml[4] >= 40 && ml[4] <= 130);
        assert_true(ml[5] >= 30 && ml[5] <= 130);

        /* anatomy varies along z: top has no kidney, bottom has no liver or spleen, vessels throughout */
        size_t top[SAMDA_PHANTOM_N_LABELS + 1], bottom[SAMDA_PHANTOM_N_LABELS + 1];
        count_labels(&v, 0, top);
        count_labels(&v, v.n_slices - 1, bottom);
        assert_int_equal(top[SAMDA_PHANTOM_LABEL_KIDNEY], 0);
        assert_int_equal(bottom[SAMDA_PHANTOM_LABEL_LIVER], 0);
        assert_int_equal(bottom[SAMDA_PHANTOM_LABEL_SPLEEN], 0);
        assert_int_equal(bottom[SAMDA_PHANTOM_LABEL_KIDNEY], 0);
        for (int k = 0; k < v.n_slices; k++) {
            size_t cnt[SAMDA_PHANTOM_N_LABELS + 1];
            count_labels(&v, k, cnt);
            assert_true(cnt[SAMDA_PHANTOM_LABEL_AORTA] > 100);
        }
        samda_phantom_volume_free(&v);

        /* liver share of the body cross-section at z = 0 */
        p.n_slices = 1;
        generate(&p, &v);
        size_t body = 0, liver = 0;
        for (size_t i = 0; i < plane_of(&v); i++) {
            body += v.image[i] > -500;
            liver += v.mask[i] == SAMDA_PHANTOM_LABEL_LIVER;
        }
        double frac = (double)liver / (double)body;
        print_message("seed %llu: liver covers %.1f %% of the body at z = 0\n", (unsigned long long)p.seed,
                      100 * frac);
        assert_true(frac >= 0.10 && frac <= 0.35);
        samda_phantom_volume_free(&v);
    }
}

static void test_masks_do_not_depend_on_style(void **state)
{
    (void)state;
    samda_phantom_params pa = params_for("A", 77), pb = params_for("B", 77), pd = params_for("D", 77);
    pa.n_slices = pb.n_slices = pd.n_slices = 8;
    pa.slice_spacing_mm = pb.slice_spacing_mm = pd.slice_spacing_mm = 25;
    samda_phantom_volume a, b, d, nolung;
    generate(&pa, &a);
    generate(&pb, &b);
    generate(&pd, &d);
    size_t n = plane_of(&a) * (size_t)a.n_slices;
    assert_memory_equal(a.mask, b.mask, n);
    assert_memory_equal(a.mask, d.mask, n); /* D shares the 1.0 mm spacing too */
    assert_memory_not_equal(a.image, b.image, n * sizeof *a.image);
    /* lung bases change the image, never the labels */
    pa.with_lung_bases = 0;
    generate(&pa, &nolung);
    assert_memory_equal(a.mask, nolung.mask, n);
    assert_memory_not_equal(a.image, nolung.image, plane_of(&a) * sizeof *a.image); /* top slice */
    samda_phantom_volume_free(&a);
    samda_phantom_volume_free(&b);
    samda_phantom_volume_free(&d);
    samda_phantom_volume_free(&nolung);
}

static void test_spacing_changes_sampling(void **state)
{
    (void)state;
    /* C samples at 1.4 mm: the same anatomy covers (1/1.4)^2 ~ 0.51 as many pixels */
    samda_phantom_params pa = params_for("A", 9), pc = params_for("C", 9);
    pa.n_slices = pc.n_slices = 1;
    samda_phantom_volume a, c;
    generate(&pa, &a);
    generate(&pc, &c);
    size_t ca[SAMDA_PHANTOM_N_LABELS + 1], cc[SAMDA_PHANTOM_N_LABELS + 1];
    count_labels(&a, 0, ca);
    count_labels(&c, 0, cc);
    double ratio = (double)cc[SAMDA_PHANTOM_LABEL_LIVER] / (double)ca[SAMDA_PHANTOM_LABEL_LIVER];
    assert_true(ratio > 0.45 && ratio < 0.57);
    ratio = (double)cc[SAMDA_PHANTOM_LABEL_KIDNEY] / (double)ca[SAMDA_PHANTOM_LABEL_KIDNEY];
    assert_true(ratio > 0.42 && ratio < 0.60);
    samda_phantom_volume_free(&a);
    samda_phantom_volume_free(&c);
}

static void test_styles_differ(void **state)
{
    (void)state;
    samda_phantom_volume v[4];
    stats liver[4], muscle_free[4];
    const char *sites[4] = {"A", "B", "C", "D"};
    for (int i = 0; i < 4; i++) {
        samda_phantom_params p = params_for(sites[i], 31);
        p.n_slices = 1;
        generate(&p, &v[i]);
        liver[i] = interior_stats(&v[i], 0, SAMDA_PHANTOM_LABEL_LIVER, 6);
        muscle_free[i] = interior_stats(&v[i], 0, SAMDA_PHANTOM_LABEL_AORTA, 3);
        print_message("site %s: liver mean %.1f std %.1f noise %.1f (n=%zu); aorta mean %.1f\n", sites[i],
                      liver[i].mean, liver[i].std, liver[i].noise, liver[i].n, muscle_free[i].mean);
        assert_true(liver[i].n > 200);
    }
    /* A: reference portal-venous liver ~108 HU with +-10 HU texture and little noise */
    assert_true(liver[0].mean > 90 && liver[0].mean < 125);
    assert_true(liver[0].noise > 3 && liver[0].noise < 10);
    /* B: the noise measured in a homogeneous organ follows its 25 HU sigma; +40 HU offset */
    assert_true(liver[1].noise > 18 && liver[1].noise < 32);
    assert_true(liver[1].noise > 2.5 * liver[0].noise);
    assert_true(liver[1].mean - liver[0].mean > 25 && liver[1].mean - liver[0].mean < 55);
    /* C: low organ contrast pulls liver and aorta towards soft tissue */
    assert_true(liver[0].mean - liver[2].mean > 15);
    assert_true(muscle_free[0].mean - muscle_free[2].mean > 40);
    /* D: scaled and shifted intensities, heavy noise */
    assert_true(fabs(liver[3].mean - liver[0].mean) > 30);
    assert_true(liver[3].std > 3 * liver[0].std);
    assert_true(liver[3].noise > 40 && liver[3].noise < 60);
    for (int i = 0; i < 4; i++)
        samda_phantom_volume_free(&v[i]);
}

static void test_clamped_to_ct_range(void **state)
{
    (void)state;
    samda_phantom_params p = params_for("A", 3);
    p.n_slices = 1;
    p.rows = p.cols = 64;
    p.style.pixel_spacing_mm = 4;
    p.style.hu_scale = 20; /* air -> -20000, contrast-filled aorta -> 3900: both clamp */
    samda_phantom_volume v;
    generate(&p, &v);
    size_t top = 0, bottom = 0;
    for (size_t i = 0; i < plane_of(&v); i++) {
        assert_true(v.image[i] >= -1024 && v.image[i] <= 3071);
        top += v.image[i] == 3071;
        bottom += v.image[i] == -1024;
    }
    assert_true(top > 10);
    assert_true(bottom > plane_of(&v) / 10);
    samda_phantom_volume_free(&v);
    p.style.hu_scale = 1;
    p.style.hu_offset = -4000;
    generate(&p, &v);
    for (size_t i = 0; i < plane_of(&v); i++)
        assert_int_equal(v.image[i], -1024);
    samda_phantom_volume_free(&v);
}

static void test_gamma_and_bias(void **state)
{
    (void)state;
    samda_phantom_params p = params_for("A", 11);
    p.n_slices = 1;
    p.style.noise_sigma_hu = 0;
    samda_phantom_volume ref, g, b;
    generate(&p, &ref);
    p.style.gamma = 1.05;
    generate(&p, &g);
    stats sr = interior_stats(&ref, 0, SAMDA_PHANTOM_LABEL_LIVER, 6), sg = interior_stats(&g, 0, SAMDA_PHANTOM_LABEL_LIVER, 6);
    assert_true(sr.mean - sg.mean > 30 && sr.mean - sg.mean < 90); /* documented: ~50 HU lower */
    p.style.gamma = 1;
    p.style.bias_amplitude = 0.05;
    generate(&p, &b);
    size_t changed = 0;
    for (size_t i = 0; i < plane_of(&b); i++)
        changed += abs(b.image[i] - ref.image[i]) > 5;
    assert_true(changed > plane_of(&b) / 4); /* smooth, body-wide */
    assert_memory_equal(ref.mask, b.mask, plane_of(&b));
    samda_phantom_volume_free(&ref);
    samda_phantom_volume_free(&g);
    samda_phantom_volume_free(&b);
}

static void test_rejects_bad_params(void **state)
{
    (void)state;
    samda_phantom_volume v;
    samda_error err;
    memset(&v, 0xAB, sizeof v);
    assert_int_equal(samda_phantom_volume_generate(NULL, &v, &err), SAMDA_EINVAL);
    assert_null(v.image);
    assert_null(v.mask);
    assert_int_equal(samda_phantom_volume_generate(NULL, NULL, NULL), SAMDA_EINVAL);

    samda_phantom_params p;
#define EXPECT_EINVAL(stmt, word)                                                                                       \
    do {                                                                                                                \
        samda_phantom_params_init(&p);                                                                                  \
        stmt;                                                                                                           \
        samda_error_clear(&err);                                                                                        \
        memset(&v, 0xAB, sizeof v);                                                                                     \
        assert_int_equal(samda_phantom_volume_generate(&p, &v, &err), SAMDA_EINVAL);                                    \
        assert_int_equal(err.code, SAMDA_EINVAL);                                                                       \
        if (!strstr(err.message, word))                                                                                 \
            fail_msg("message '%s' does not name '%s'", err.message, word);                                             \
        assert_null(v.image);                                                                                           \
        samda_phantom_volume_free(&v);                                                                                  \
    } while (0)
    EXPECT_EINVAL(p.rows = 7, "rows");
    EXPECT_EINVAL(p.cols = 5000, "cols");
    EXPECT_EINVAL(p.n_slices = 0, "n_slices");
    EXPECT_EINVAL(p.slice_spacing_mm = NAN, "slice_spacing_mm");
    EXPECT_EINVAL(p.z_center_mm = 1e9, "z_center_mm");
    EXPECT_EINVAL(p.style.pixel_spacing_mm = 0, "pixel_spacing_mm");
    EXPECT_EINVAL(p.style.noise_sigma_hu = -1, "noise_sigma_hu");
    EXPECT_EINVAL(p.style.blur_sigma_px = INFINITY, "blur_sigma_px");
    EXPECT_EINVAL(p.style.bias_amplitude = 1.5, "bias_amplitude");
    EXPECT_EINVAL(p.style.gamma = 0, "gamma");
    EXPECT_EINVAL(p.style.hu_scale = 0, "hu_scale");
    EXPECT_EINVAL(p.style.organ_contrast = -1, "organ_contrast");
    EXPECT_EINVAL((p.rows = 4096, p.cols = 4096, p.n_slices = 100, p.style.pixel_spacing_mm = 0.1), "voxels");
    EXPECT_EINVAL((p.rows = 4096, p.style.pixel_spacing_mm = 1.0), "field of view");
#undef EXPECT_EINVAL
    samda_phantom_params_init(NULL); /* harmless */
}

/* A benchmark: prints, never gates. */
static void test_benchmark_256x256x100(void **state)
{
    (void)state;
    const char *sites[] = {"A", "B", "D"};
    for (int i = 0; i < 3; i++) {
        samda_phantom_params p = params_for(sites[i], 2);
        p.n_slices = 100;
        p.slice_spacing_mm = 2;
        samda_phantom_volume v;
        struct timespec t0, t1, c0, c1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
        generate(&p, &v);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
        print_message("bench: 256x256x100 site %s: %.3f s wall, %.3f s CPU\n", sites[i],
                      (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec),
                      (double)(c1.tv_sec - c0.tv_sec) + 1e-9 * (double)(c1.tv_nsec - c0.tv_nsec));
        samda_phantom_volume_free(&v);
    }
}

/* Optional visual check: SAMDA_PHANTOM_PGM_DIR=/tmp/x writes <site>_mid.pgm (window 40/400). */
static void test_write_pgm_when_asked(void **state)
{
    (void)state;
    const char *dir = getenv("SAMDA_PHANTOM_PGM_DIR");
    if (!dir || !*dir)
        skip();
    const char *sites[] = {"A", "B", "C", "D"};
    for (int s = 0; s < 4; s++) {
        samda_phantom_params p = params_for(sites[s], 1);
        p.n_slices = 1;
        samda_phantom_volume v;
        generate(&p, &v);
        char path[512];
        snprintf(path, sizeof path, "%s/%s_mid.pgm", dir, sites[s]);
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        fprintf(f, "P5\n%d %d\n255\n", v.cols, v.rows);
        for (size_t i = 0; i < plane_of(&v); i++) {
            double t = (v.image[i] - (40.0 - 200.0)) / 400.0 * 255.0;
            fputc(t < 0 ? 0 : (t > 255 ? 255 : (int)t), f);
        }
        fclose(f);
        samda_phantom_volume_free(&v);
    }
}

/* Mean of image values where the mask has label `label` (or, label < 0, the whole slice k). */
static double mean_where(const samda_phantom_volume *v, int k, int label)
{
    const size_t n = plane_of(v);
    double sum = 0;
    size_t cnt = 0;
    for (size_t i = 0; i < n; i++)
        if (label < 0 || v->mask[(size_t)k * n + i] == label) {
            sum += v->image[(size_t)k * n + i];
            cnt++;
        }
    return cnt ? sum / (double)cnt : NAN;
}

/* The shift families E-H (docs/adaptation.md): each does what its preset says, masks follow only
 * the sampling, and a style with the post-noise steps off takes the old path (golden bytes). */
static void test_shift_families(void **state)
{
    (void)state;
    samda_phantom_params pa = params_for("A", 5);
    pa.n_slices = 3;
    samda_phantom_volume a;
    generate(&pa, &a);
    const size_t n = plane_of(&a) * (size_t)a.n_slices;
    const double liver_a = mean_where(&a, 1, SAMDA_PHANTOM_LABEL_LIVER);
    const char *fam[] = {"E", "F", "G", "H"};
    for (size_t f = 0; f < 4; f++) {
        samda_phantom_params p = params_for(fam[f], 5);
        p.n_slices = 3;
        samda_phantom_volume v;
        generate(&p, &v);
        if (f < 3) /* same 1.0 mm sampling as A: same masks */
            assert_memory_equal(v.mask, a.mask, n);
        else /* H: 0.8 mm, the body is larger in the matrix */
            assert_true(memcmp(v.mask, a.mask, n) != 0);
        assert_true(memcmp(v.image, a.image, n * sizeof *a.image) != 0);
        const double liver = mean_where(&v, 1, SAMDA_PHANTOM_LABEL_LIVER);
        const double corner = v.image[(size_t)1 * plane_of(&v)]; /* air at the top-left corner */
        switch (f) {
        case 0: /* gain 0.8, +60 HU, and a bias field up to 12 % darker at the centre (cupping) */
            assert_true(liver < 0.8 * liver_a + 60 && liver > 0.8 * liver_a + 60 - 120 && fabs(liver - liver_a) > 10);
            break;
        case 1: { /* 2x2 block mean: neighbours inside a block are close */
            double d = 0;
            int cnt = 0;
            for (int r = 100; r < 140; r += 2)
                for (int c = 100; c < 140; c += 2, cnt++)
                    d += fabs((double)v.image[plane_of(&v) + (size_t)r * 256 + (size_t)c] -
                              v.image[plane_of(&v) + (size_t)r * 256 + (size_t)c + 1]);
            assert_true(d / cnt < 60); /* 90 HU of white noise would differ by ~100 */
            break;
        }
        case 2: /* inverted about 50 HU: air becomes bright, liver (~+100) falls below 50 */
            assert_true(corner > 1000);
            assert_true(liver < 50 && fabs(liver - (100 - liver_a)) < 20);
            break;
        default: /* gamma 0.95 raises soft tissue; rings and ghost keep air dark */
            assert_true(liver > liver_a + 40);
            assert_true(corner < -900);
        }
        samda_phantom_volume_free(&v);
    }
    samda_phantom_volume_free(&a);
    samda_phantom_params bad = params_for("F", 1);
    bad.style.downsample = 9;
    samda_phantom_volume v;
    samda_error err;
    assert_int_equal(samda_phantom_volume_generate(&bad, &v, &err), SAMDA_EINVAL);
    assert_non_null(strstr(err.message, "downsample"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_params_init_and_presets),
        cmocka_unit_test(test_label_table),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_golden_bytes),
        cmocka_unit_test(test_geometry_fields),
        cmocka_unit_test(test_every_label_in_mid_slice),
        cmocka_unit_test(test_organ_volumes_plausible),
        cmocka_unit_test(test_masks_do_not_depend_on_style),
        cmocka_unit_test(test_spacing_changes_sampling),
        cmocka_unit_test(test_styles_differ),
        cmocka_unit_test(test_clamped_to_ct_range),
        cmocka_unit_test(test_gamma_and_bias),
        cmocka_unit_test(test_shift_families),
        cmocka_unit_test(test_rejects_bad_params),
        cmocka_unit_test(test_benchmark_256x256x100),
        cmocka_unit_test(test_write_pgm_when_asked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
