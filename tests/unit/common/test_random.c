/* Tests of common/random.c: kernel bytes and hex, seeded streams reproducible and independent. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "random.h"

static void test_random_bytes_and_hex(void **state)
{
    (void)state;
    samda_error err;
    unsigned char a[32] = {0}, b[32] = {0}, zero[32] = {0};
    assert_int_equal(samda_random_bytes(a, sizeof a, &err), SAMDA_OK);
    assert_int_equal(samda_random_bytes(b, sizeof b, &err), SAMDA_OK);
    assert_memory_not_equal(a, b, sizeof a); /* 2^-256 to fail by chance */
    assert_memory_not_equal(a, zero, sizeof a);
    assert_int_equal(samda_random_bytes(a, 0, &err), SAMDA_OK);

    char h1[33], h2[33];
    assert_int_equal(samda_random_hex(h1, sizeof h1, 16, &err), SAMDA_OK);
    assert_int_equal(samda_random_hex(h2, sizeof h2, 16, NULL), SAMDA_OK);
    assert_int_equal(strlen(h1), 32);
    assert_int_equal(strspn(h1, "0123456789abcdef"), 32);
    assert_string_not_equal(h1, h2);
    /* too small a buffer, too many bytes */
    assert_int_equal(samda_random_hex(h1, 32, 16, &err), SAMDA_EINVAL);
    char big[200];
    assert_int_equal(samda_random_hex(big, sizeof big, 65, &err), SAMDA_EINVAL);
    assert_int_equal(samda_random_hex(NULL, 10, 1, &err), SAMDA_EINVAL);
}

static void test_seeded_streams(void **state)
{
    (void)state;
    samda_rng a, b, c, d;
    samda_rng_seed(&a, 42, 1);
    samda_rng_seed(&b, 42, 1);
    samda_rng_seed(&c, 42, 2);
    samda_rng_seed(&d, 43, 1);
    int same_ab = 0, same_ac = 0, same_ad = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t x = samda_rng_next(&a), y = samda_rng_next(&b), z = samda_rng_next(&c), w = samda_rng_next(&d);
        same_ab += x == y;
        same_ac += x == z;
        same_ad += x == w;
    }
    assert_int_equal(same_ab, 1000); /* one (seed, stream): one sequence */
    assert_int_equal(same_ac, 0);    /* another stream or seed: another sequence */
    assert_int_equal(same_ad, 0);

    /* The sequence is fixed by the algorithm, not by the machine: xoshiro256** over splitmix64.
     * A change here changes every phantom and every training run, so it must be deliberate. */
    uint64_t sm = 0;
    assert_true(samda_splitmix64(&sm) == 0xE220A8397B1DCDAFull);
    assert_true(sm == 0x9E3779B97F4A7C15ull);

    /* u01 in [0, 1), range in [lo, hi), mean about one half */
    samda_rng r;
    samda_rng_seed(&r, 7, 0);
    double sum = 0;
    for (int i = 0; i < 100000; i++) {
        double u = samda_rng_u01(&r);
        assert_true(u >= 0.0 && u < 1.0);
        sum += u;
        double v = samda_rng_range(&r, -3.0, 5.0);
        assert_true(v >= -3.0 && v < 5.0);
    }
    assert_true(sum / 100000 > 0.49 && sum / 100000 < 0.51);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_bytes_and_hex),
        cmocka_unit_test(test_seeded_streams),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
