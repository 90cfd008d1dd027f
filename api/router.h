/* The api's route table and the pieces of URL handling around it: matching a raw path against
 * patterns with {params} (no regex), validating each parameter by its kind, percent-decoding with
 * the rejections that keep path parameters from naming files ("..", "/", NUL), and bounded
 * query-string parsing. Internal to api/ (tests include it); nothing here touches the network.
 *
 * Thread-safety: the table is constant; every function is reentrant. */
#ifndef SAMDA_API_ROUTER_H
#define SAMDA_API_ROUTER_H

#include <stdbool.h>
#include <stddef.h>

#include "api.h"

typedef struct api_request api_request; /* server.c */
typedef void (*api_handler)(api_request *r);

/* Methods, as bits (HEAD is matched as GET). */
enum {
    API_GET = 1u << 0,
    API_POST = 1u << 1,
    API_PUT = 1u << 2,
    API_DELETE = 1u << 3,
    API_PATCH = 1u << 4,
    API_OPTIONS = 1u << 5,
    API_HEAD = 1u << 6
};

/* Role masks: which token roles may use a route. 0 = public (no token needed). */
#define API_ROLE_BIT(r) (1u << (unsigned)(r))
#define API_ROLES_INGEST (API_ROLE_BIT(SAMDA_API_ROLE_INGEST) | API_ROLE_BIT(SAMDA_API_ROLE_ADMIN))
#define API_ROLES_USER (API_ROLE_BIT(SAMDA_API_ROLE_USER) | API_ROLE_BIT(SAMDA_API_ROLE_ADMIN))
#define API_ROLES_ADMIN API_ROLE_BIT(SAMDA_API_ROLE_ADMIN)

/* Route flags. */
enum {
    API_F_AUDIT = 1u << 0,       /* call services->audit after the response */
    API_F_STREAM_BODY = 1u << 1, /* multipart body streamed to temp files (STOW-RS) */
    API_F_JSON_BODY = 1u << 2,   /* optional application/json body, <= API_JSON_BODY_MAX */
    API_F_FILE_BODY = 1u << 3,   /* raw application/octet-stream body spooled to one temp file,
                                  * <= min(params.max_file_bytes, max_body) */
    API_F_FORM_BODY = 1u << 4,   /* optional multipart/form-data or x-www-form-urlencoded body in
                                  * memory, <= min(max_body, API_FORM_BODY_MAX) (MONAI Label) */
    API_F_STRAY_BODY = 1u << 5   /* a route without a body whose clients may declare one they never
                                  * send (MONAI Label's client reuses its last Content-Length): the
                                  * body is not read and the handler answers from the headers */
};

#define API_JSON_BODY_MAX (1024u * 1024u)
#define API_FORM_BODY_MAX ((uint64_t)1 << 30)
#define API_MAX_PARAMS 4
#define API_PARAM_MAX 255      /* decoded bytes of one path parameter */
#define API_NO_SERVICE ((size_t)-1)

typedef struct api_route {
    unsigned method;      /* one API_* bit */
    const char *pattern;  /* "/dicomweb/studies/{study}/series" */
    api_handler handler;
    unsigned roles;       /* API_ROLES_* or 0 (public) */
    unsigned flags;       /* API_F_* */
    size_t service;       /* offsetof(samda_api_services, fn) the route needs, or API_NO_SERVICE */
    int arg;              /* handler argument (e.g. the QIDO/WADO level) */
    const char *unavailable; /* why the route answers 501 while its service is NULL, or NULL
                              * for the generic "not available in this build" */
} api_route;

/** The table (router.c). */
extern const api_route api_routes[];
extern const size_t api_n_routes;

typedef enum api_match_result {
    API_MATCH_OK = 0,        /* route found, parameters valid */
    API_MATCH_NOT_FOUND,     /* no pattern has this shape: 404 */
    API_MATCH_METHOD,        /* the path exists for other methods (m->allowed): 405 */
    API_MATCH_BAD_PATH       /* a segment or parameter is invalid (err says which): 400. When
                              * m->route is set, the route was found and only its parameters
                              * are wrong: authenticate and authorise for it first (401/403),
                              * then answer 400, so that anonymous clients do not learn the
                              * rules. m->n counts the parameters validated before the bad one */
} api_match_result;

typedef struct api_match {
    const api_route *route;
    size_t index;                                /* into the table */
    unsigned n;                                  /* parameters */
    char names[API_MAX_PARAMS][32];
    char values[API_MAX_PARAMS][API_PARAM_MAX + 1];
    unsigned allowed;                            /* methods allowed on this path (API_* bits) */
} api_match;

/** Match method + raw path (still percent-encoded, without the query) against routes. A segment
 *  that cannot be decoded ("..", "%2F", "%00", a bad escape) can only stand for a parameter. */
api_match_result api_route_match(const api_route *routes, size_t n, unsigned method,
                                 const char *raw_path, api_match *m, samda_error *err);

/** Value of path parameter name, or NULL. */
const char *api_match_param(const api_match *m, const char *name);

/** Method name -> API_* bit (0 if unknown). */
unsigned api_method_bit(const char *method);
/** Write "GET, POST, OPTIONS" for a method mask into buf. */
void api_methods_str(unsigned mask, char *buf, size_t size);

/** Percent-decode in[0..len) into out (size bytes incl. NUL). plus_is_space: form encoding.
 *  Returns the decoded length, or -1 malformed escape, -2 NUL byte, -3 too long. */
long api_pct_decode(const char *in, size_t len, char *out, size_t size, bool plus_is_space);

/* Parameter kinds. */
bool api_valid_uid(const char *s);   /* 1..64 of [0-9.], no empty component, no leading zero */
bool api_valid_id(const char *s);    /* 1..18 digits */
bool api_valid_name(const char *s);  /* [A-Za-z0-9._-]{1,63}, not "." or ".." */
bool api_valid_version(const char *s); /* 1..9 digits, not 0, no leading zero */

/* Query strings. */
#define API_QUERY_MAX_PAIRS 64
#define API_QUERY_MAX_KEY 64
#define API_QUERY_MAX_VALUE 1024
#define API_QUERY_MAX_LEN 8192

typedef struct api_kv {
    const char *key;
    const char *value;
} api_kv;

typedef struct api_query_args {
    char *buf;                            /* decoded copy; keys and values point into it */
    api_kv kv[API_QUERY_MAX_PAIRS];
    unsigned n;
} api_query_args;

/** Parse a raw query string (without '?'; may be NULL/empty) into decoded pairs.
 *  @return SAMDA_OK; SAMDA_EINVAL too many pairs, too long, bad escape or NUL (err names the key);
 *          SAMDA_ENOMEM. On failure q is empty. Free with api_query_args_free(). */
samda_status api_query_args_parse(const char *qs, api_query_args *q, samda_error *err);
void api_query_args_free(api_query_args *q);
/** First value of key, or NULL. */
const char *api_query_get(const api_query_args *q, const char *key);

#endif
