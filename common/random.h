/* Randomness, once for every module. Two kinds, never mixed:
 *  - secrets and identifiers (UIDs, API tokens, session ids, MIME boundaries) come from the kernel's
 *    CSPRNG through samda_random_bytes / samda_random_hex (getrandom(2), blocking only until the
 *    pool is first initialised at boot);
 *  - reproducible streams (the phantom generator, training's shuffles and jitter) come from a
 *    samda_rng seeded by the caller: xoshiro256** expanded from (seed, stream) with splitmix64, so
 *    one seed gives the same numbers on every machine and independent streams do not overlap.
 * Plain C, libc only; C++ callers include it as is.
 *
 * Thread-safety: samda_random_bytes/hex are thread-safe; a samda_rng belongs to one thread. */
#ifndef SAMDA_RANDOM_H
#define SAMDA_RANDOM_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Fill buf with n bytes from the kernel CSPRNG. Returns SAMDA_OK or SAMDA_EIO (message names
 *  getrandom and the errno text); EINTR and short reads are retried. */
samda_status samda_random_bytes(void *buf, size_t n, samda_error *err);

/** Write 2*nbytes lowercase hex digits of fresh CSPRNG bytes plus a NUL into out (out_size must be
 *  at least 2*nbytes + 1, nbytes at most 64). Returns SAMDA_OK, SAMDA_EINVAL or SAMDA_EIO. */
samda_status samda_random_hex(char *out, size_t out_size, size_t nbytes, samda_error *err);

/** A seeded pseudo-random stream (xoshiro256**); a plain value, copy it to fork a stream. */
typedef struct samda_rng {
    uint64_t s[4];
} samda_rng;

/** Seed r from (seed, stream): the same pair always gives the same sequence; different streams of
 *  one seed are independent. */
void samda_rng_seed(samda_rng *r, uint64_t seed, uint64_t stream);
/** Next 64 random bits. */
uint64_t samda_rng_next(samda_rng *r);
/** Uniform double in [0, 1) with 53 random bits. */
double samda_rng_u01(samda_rng *r);
/** Uniform double in [lo, hi). */
double samda_rng_range(samda_rng *r, double lo, double hi);
/** One splitmix64 step: advances *state and returns a well-mixed 64-bit value (hashing helper). */
uint64_t samda_splitmix64(uint64_t *state);

#ifdef __cplusplus
}
#endif
#endif
