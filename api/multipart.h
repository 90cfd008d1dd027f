/* A streaming multipart parser (RFC 2046 5.1, as used by DICOMweb's multipart/related, RFC 2387)
 * and the Content-Type parameter reader it needs.
 *
 * Bytes are fed in chunks of any size; part bodies come out through a callback as they arrive,
 * so a STOW-RS body of gigabytes never sits in memory. Delimiters split across chunks are found
 * (the parser remembers how much of "CRLF--boundary" it has matched). The parser does no I/O and
 * knows nothing of DICOM; it does not decode Content-Transfer-Encoding (DICOMweb is binary).
 *
 * Thread-safety: one parser per thread; the functions hold no shared state. */
#ifndef SAMDA_API_MULTIPART_H
#define SAMDA_API_MULTIPART_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SAMDA_MULTIPART_BOUNDARY_MAX 70 /* RFC 2046: 1 to 70 characters */

/** A part's headers as parsed (the ones DICOMweb uses; others are ignored). */
typedef struct samda_multipart_part {
    unsigned index;          /* 0-based */
    char content_type[128];  /* "" when absent (RFC 2046 default text/plain) */
    int64_t content_length;  /* -1 when absent; checked against the body when present */
    char disposition[1024];  /* Content-Disposition value (multipart/form-data), "" when absent */
} samda_multipart_part;

typedef struct samda_multipart_callbacks {
    void *user;
    /** A part starts (its headers are parsed). Returning non-OK stops the parser with that error. */
    samda_status (*part_begin)(void *user, const samda_multipart_part *part, samda_error *err);
    /** Body bytes of the current part; data is borrowed (valid during the call). len > 0. */
    samda_status (*part_data)(void *user, const void *data, size_t len, samda_error *err);
    /** The current part ended (its delimiter was seen). */
    samda_status (*part_end)(void *user, const samda_multipart_part *part, samda_error *err);
} samda_multipart_callbacks;

typedef struct samda_multipart_params {
    size_t max_header_bytes; /* one part's header block; default 8192 */
    unsigned max_parts;      /* default 10000 */
    const char *extra_bchars; /* characters accepted in the boundary beyond RFC 2046's bchars
                               * (MONAI Label clients end theirs with '$'); default NULL = none */
} samda_multipart_params;

typedef struct samda_multipart samda_multipart;

/** Defaults. */
void samda_multipart_params_init(samda_multipart_params *p);

/** Read a media type and its parameters from a Content-Type value (RFC 7231 3.1.1.1:
 *  type/subtype *( OWS ";" OWS name=(token|quoted-string) )).
 *  @param value IN: header value.
 *  @param media OUT: lower-cased "type/subtype" (size media_size).
 *  @return SAMDA_OK; SAMDA_EINVAL malformed (err names what).
 *  Use samda_content_type_param() for parameters. */
samda_status samda_content_type_media(const char *value, char *media, size_t media_size,
                                      samda_error *err);

/** Find parameter name (case-insensitive) in a Content-Type value and copy its value (quotes
 *  and quoted-pair escapes removed) to out.
 *  @return SAMDA_OK found; SAMDA_ENOENT absent; SAMDA_EINVAL malformed header;
 *          SAMDA_ETOOBIG value longer than out_size - 1. */
samda_status samda_content_type_param(const char *value, const char *name, char *out,
                                      size_t out_size, samda_error *err);

/** Check a boundary against RFC 2046 (1..70 bchars, not ending in a space).
 *  @return SAMDA_OK or SAMDA_EINVAL naming the rule. */
samda_status samda_multipart_boundary_check(const char *boundary, samda_error *err);

/** Create a parser for boundary (without the leading "--").
 *  @param p may be NULL (defaults). @param cb copied; cb->part_begin/data/end may be NULL.
 *  @return parser, or NULL: SAMDA_EINVAL bad boundary; SAMDA_ENOMEM.
 *  Ownership: free with samda_multipart_free(). */
samda_multipart *samda_multipart_new(const char *boundary, const samda_multipart_params *p,
                                     const samda_multipart_callbacks *cb, samda_error *err);

/** Feed the next len bytes of the body.
 *  @return SAMDA_OK; SAMDA_EINVAL malformed body (message names the part and the rule), part
 *          headers larger than max_header_bytes included (a 400 for the client, like any malformed
 *          part); SAMDA_ETOOBIG too many parts; or a callback's error.
 *          After an error the parser is dead: every later call returns the same error. */
samda_status samda_multipart_feed(samda_multipart *mp, const void *data, size_t len,
                                  samda_error *err);

/** The body ended. @return SAMDA_OK when the close delimiter was seen; SAMDA_EINVAL naming what
 *  is missing ("missing close delimiter --B-- after part 2", "no delimiter --B in body"). */
samda_status samda_multipart_finish(samda_multipart *mp, samda_error *err);

/** Parts begun so far. */
unsigned samda_multipart_parts(const samda_multipart *mp);

/** Free; NULL-safe. */
void samda_multipart_free(samda_multipart *mp);

#ifdef __cplusplus
}
#endif
#endif
