/* Randomness (random.h): the kernel CSPRNG for secrets, xoshiro256** for seeded streams. */
#include "random.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>

samda_status samda_random_bytes(void *buf, size_t n, samda_error *err)
{
    unsigned char *p = buf;
    size_t got = 0;
    while (got < n) {
        ssize_t r = getrandom(p + got, n - got, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            return samda_fail(err, SAMDA_EIO, "no randomness from the kernel: getrandom: %s", strerror(errno));
        }
        got += (size_t)r;
    }
    return SAMDA_OK;
}

samda_status samda_random_hex(char *out, size_t out_size, size_t nbytes, samda_error *err)
{
    if (!out || nbytes > 64 || out_size < 2 * nbytes + 1)
        return samda_fail(err, SAMDA_EINVAL, "random hex: %zu bytes do not fit %zu characters", nbytes, out_size);
    unsigned char raw[64];
    samda_status st = samda_random_bytes(raw, nbytes, err);
    if (st != SAMDA_OK) {
        out[0] = '\0';
        return st;
    }
    static const char hexd[] = "0123456789abcdef";
    for (size_t i = 0; i < nbytes; i++) {
        out[2 * i] = hexd[raw[i] >> 4];
        out[2 * i + 1] = hexd[raw[i] & 15];
    }
    out[2 * nbytes] = '\0';
    return SAMDA_OK;
}

uint64_t samda_splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

/* Streams are separated by mixing the stream number into the seed before expanding it. */
void samda_rng_seed(samda_rng *r, uint64_t seed, uint64_t stream)
{
    uint64_t sm = stream * 0xD1B54A32D192ED03ull + 0x8CB92BA72F3D8DD7ull;
    sm = samda_splitmix64(&sm) ^ seed;
    for (int i = 0; i < 4; i++) r->s[i] = samda_splitmix64(&sm);
}

uint64_t samda_rng_next(samda_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

double samda_rng_u01(samda_rng *r) { return (double)(samda_rng_next(r) >> 11) * 0x1.0p-53; }

double samda_rng_range(samda_rng *r, double lo, double hi) { return lo + (hi - lo) * samda_rng_u01(r); }
