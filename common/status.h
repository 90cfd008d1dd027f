/* samda status codes: the one list of everything that can go wrong.
 *
 * Every module reports failure as a samda_status plus a one-line human message in a samda_error.
 * The HTTP status, the DICOM C-STORE response status and the RFC 7807 problem title all derive
 * from SAMDA_STATUS_MAP below, so they cannot drift apart. This header is plain C and is included
 * by C and C++ code alike; it has no dependencies beyond the C library.
 *
 * Thread-safety: every function here is thread-safe (no shared state). */
#ifndef SAMDA_STATUS_H
#define SAMDA_STATUS_H

#include <stdarg.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* name, HTTP status, DICOM status (0 = not a DICOM outcome), text */
#define SAMDA_STATUS_MAP(X)                                                                        \
    X(OK,           200, 0x0000, "success")                                                        \
    X(EINVAL,       400, 0xC000, "invalid argument")                                               \
    X(ENOMEM,       503, 0xA700, "out of memory")                                                  \
    X(EIO,          500, 0x0110, "input/output error")                                             \
    X(ENOSPC,       507, 0xA700, "out of resources: free space below storage.min_free")            \
    X(ENOENT,       404, 0x0000, "not found")                                                      \
    X(EEXIST,       409, 0x0111, "already exists")                                                 \
    X(EBADDICOM,    400, 0xC000, "DICOM data set cannot be parsed")                                \
    X(EBADUID,      400, 0xC000, "invalid DICOM UID")                                              \
    X(ENOTSUP,      415, 0x0122, "not supported")                                                  \
    X(EDB,          500, 0x0110, "database error")                                                 \
    X(EBUSY,        503, 0xA700, "resource busy, try again")                                       \
    X(ECONFIG,      500, 0x0000, "configuration error")                                            \
    X(EMODEL,       500, 0x0110, "model failure")                                                  \
    X(EAUTH,        401, 0x0124, "authentication required")                                        \
    X(EFORBIDDEN,   403, 0x0124, "not permitted")                                                  \
    X(ELOCKED,      409, 0x0000, "locked by another process")                                      \
    X(ETIMEDOUT,    504, 0xA700, "timed out")                                                      \
    X(ECANCELED,    409, 0x0000, "cancelled")                                                      \
    X(ETOOBIG,      413, 0xA700, "too large")                                                      \
    X(ENETWORK,     502, 0x0000, "network or peer failure")                                        \
    X(EINTERNAL,    500, 0x0110, "internal error")                                                 \
    X(ECONFLICT,    409, 0xC000, "conflicts with what is already stored")

typedef enum samda_status {
#define SAMDA_STATUS_ENUM_(name, http, dicom, text) SAMDA_##name,
    SAMDA_STATUS_MAP(SAMDA_STATUS_ENUM_)
#undef SAMDA_STATUS_ENUM_
    SAMDA_STATUS_COUNT_
} samda_status;

#define SAMDA_ERROR_MESSAGE_SIZE 512

/* An outcome for programs (code) and for people (message: one line, no trailing newline). */
typedef struct samda_error {
    samda_status code;
    char message[SAMDA_ERROR_MESSAGE_SIZE];
} samda_error;

/** Short text of a status ("invalid DICOM UID"); "unknown status" for out-of-range values.
 *  Ownership: static string. */
const char *samda_status_str(samda_status s);
/** Symbolic name of a status ("SAMDA_EBADUID"). Ownership: static string. */
const char *samda_status_name(samda_status s);
/** HTTP status code that reports s to an HTTP client (500 for out-of-range values). */
int samda_status_http(samda_status s);
/** DICOM DIMSE status for a failed C-STORE reporting s (0x0110 processing failure if it has none). */
unsigned samda_status_dicom(samda_status s);

/** Record a failure: sets err->code and formats err->message (truncated to one line).
 *  err may be NULL (then nothing is recorded). Returns code, so callers can `return samda_fail(...)`. */
samda_status samda_fail(samda_error *err, samda_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/** As samda_fail, with a va_list. */
samda_status samda_vfail(samda_error *err, samda_status code, const char *fmt, va_list ap);
/** Prefix err->message with context ("opening index: " + old message), keeping the code. */
void samda_error_prefix(samda_error *err, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/** Reset err to SAMDA_OK with an empty message; err may be NULL. */
void samda_error_clear(samda_error *err);

/** Copy msg into out (size bytes, always terminated) with every path under dir (dir itself, or
 *  dir + "/..." up to the next space, colon, comma, bracket or quote) replaced by "[file]": samda's
 *  own paths never reach a client or a job's error. dir NULL or "" copies msg. Pure function. */
void samda_hide_dir(char *out, size_t size, const char *msg, const char *dir);

#ifdef __cplusplus
}
#endif
#endif
