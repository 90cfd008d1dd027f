/* The safetensors format (see safetensors_format.h): the header length, a JSON reader that knows
 * the header's shape (so it needs neither a JSON library nor recursion: the header is an object of
 * objects of arrays of integers, and a value of any other shape is refused where it starts), the
 * checks of tensors against the data section, and the header writer. */
#include "safetensors_format.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOT_ST "not a safetensors file: "
#define HDR "safetensors header: "
#define MAX_ELEMENTS ((uint64_t)1 << 40) /* more elements than any file samda reads could hold */

static const struct {
    const char *name;
    size_t size;
} st_types[] = {
    [SAMDA_SAFETENSORS_BOOL] = {"BOOL", 1},       [SAMDA_SAFETENSORS_U8] = {"U8", 1},
    [SAMDA_SAFETENSORS_I8] = {"I8", 1},           [SAMDA_SAFETENSORS_F8_E5M2] = {"F8_E5M2", 1},
    [SAMDA_SAFETENSORS_F8_E4M3] = {"F8_E4M3", 1}, [SAMDA_SAFETENSORS_I16] = {"I16", 2},
    [SAMDA_SAFETENSORS_U16] = {"U16", 2},         [SAMDA_SAFETENSORS_F16] = {"F16", 2},
    [SAMDA_SAFETENSORS_BF16] = {"BF16", 2},       [SAMDA_SAFETENSORS_I32] = {"I32", 4},
    [SAMDA_SAFETENSORS_U32] = {"U32", 4},         [SAMDA_SAFETENSORS_F32] = {"F32", 4},
    [SAMDA_SAFETENSORS_I64] = {"I64", 8},         [SAMDA_SAFETENSORS_U64] = {"U64", 8},
    [SAMDA_SAFETENSORS_F64] = {"F64", 8},
};
#define N_TYPES (sizeof st_types / sizeof st_types[0])
#define KNOWN_TYPES "BOOL U8 I8 F8_E5M2 F8_E4M3 I16 U16 F16 BF16 I32 U32 F32 I64 U64 F64"

size_t samda_safetensors_dtype_size(samda_safetensors_dtype dt)
{
    return (unsigned)dt < N_TYPES ? st_types[dt].size : 0;
}

const char *samda_safetensors_dtype_name(samda_safetensors_dtype dt)
{
    return (unsigned)dt < N_TYPES ? st_types[dt].name : "?";
}

bool samda_safetensors_dtype_from_name(const char *name, samda_safetensors_dtype *dt)
{
    if (!name)
        return false;
    for (size_t i = 0; i < N_TYPES; i++)
        if (strcmp(name, st_types[i].name) == 0) {
            *dt = (samda_safetensors_dtype)i;
            return true;
        }
    return false;
}

void samda_safetensors_limits_init(samda_safetensors_limits *l)
{
    memset(l, 0, sizeof *l);
    l->max_header_bytes = (uint64_t)64 << 20;
    l->max_tensors = SIZE_MAX;
    l->max_dims = 16;
}

samda_status samda_safetensors_header_length(const void *buf, size_t n, uint64_t file_bytes,
                                             const samda_safetensors_limits *lim, uint64_t *header_bytes,
                                             samda_error *err)
{
    samda_safetensors_limits defaults;
    if (!lim) {
        samda_safetensors_limits_init(&defaults);
        lim = &defaults;
    }
    if (!buf || n < 8 || file_bytes < 10)
        return samda_fail(err, SAMDA_EINVAL,
                          NOT_ST "file of %" PRIu64 " bytes is too short for a header (shorter than the 8-byte header "
                                 "length and \"{}\")",
                          file_bytes);
    const unsigned char *b = buf;
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--)
        hl = (hl << 8) | b[i];
    if (hl > file_bytes - 8)
        return samda_fail(err, SAMDA_EINVAL,
                          NOT_ST "header length %" PRIu64 " runs past the end of the file (larger than the file of %" PRIu64
                                 " bytes; truncated?)",
                          hl, file_bytes);
    if (hl > lim->max_header_bytes)
        return samda_fail(err, SAMDA_ETOOBIG,
                          "safetensors header of %" PRIu64 " bytes is larger than %" PRIu64
                          " bytes (the header length limit)",
                          hl, lim->max_header_bytes);
    if (hl < 2)
        return samda_fail(err, SAMDA_EINVAL, NOT_ST "header length %" PRIu64 " is too short for a JSON object", hl);
    *header_bytes = hl;
    return SAMDA_OK;
}

/* ---- storage of a parsed header ---- */

typedef struct storage {
    char *strings;      /* every decoded string, NUL-terminated; sized so that it never moves */
    size_t used;
    uint64_t *dims;     /* every tensor's shape, one after another */
    size_t n_dims, cap_dims;
    size_t *dim_at;     /* tensor i's shape starts at dims[dim_at[i]] (while parsing) */
    size_t cap_tensors, cap_dim_at, cap_metadata;
} storage;

static bool grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return true;
    size_t c = *cap ? *cap : 16;
    while (c < need) {
        if (c > SIZE_MAX / 2 / elem)
            return false;
        c *= 2;
    }
    void *q = realloc(*p, c * elem);
    if (!q)
        return false;
    *p = q;
    *cap = c;
    return true;
}

/* A set of strings (open addressing, FNV-1a), for duplicate names and keys. */
typedef struct strset {
    const char **slot;
    size_t cap, n;
} strset;

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* Adds s (kept by pointer). Returns 1 added, 0 already present, -1 out of memory. */
static int strset_add(strset *set, const char *s)
{
    if ((set->n + 1) * 2 > set->cap) {
        size_t cap = set->cap ? set->cap * 2 : 64;
        const char **slot = calloc(cap, sizeof *slot);
        if (!slot)
            return -1;
        for (size_t i = 0; i < set->cap; i++)
            if (set->slot[i])
                for (size_t j = fnv1a(set->slot[i]) & (cap - 1);; j = (j + 1) & (cap - 1))
                    if (!slot[j]) {
                        slot[j] = set->slot[i];
                        break;
                    }
        free(set->slot);
        set->slot = slot;
        set->cap = cap;
    }
    for (size_t j = fnv1a(s) & (set->cap - 1);; j = (j + 1) & (set->cap - 1)) {
        if (!set->slot[j]) {
            set->slot[j] = s;
            set->n++;
            return 1;
        }
        if (strcmp(set->slot[j], s) == 0)
            return 0;
    }
}

void samda_safetensors_header_free(samda_safetensors_header *h)
{
    if (!h)
        return;
    storage *s = h->storage_;
    if (s) {
        free(s->strings);
        free(s->dims);
        free(s->dim_at);
        free(s);
    }
    free(h->tensors);
    free(h->metadata);
    memset(h, 0, sizeof *h);
}

/* ---- the JSON reader ---- */

typedef struct reader {
    const char *s, *p, *e; /* the header text, the read position, its end */
    samda_error *err;
    samda_status st;       /* the failure once one is recorded */
    storage *store;
    const samda_safetensors_limits *lim;
    samda_safetensors_header *h;
    strset names, keys;    /* tensor names, metadata keys */
} reader;

/* Text that is not JSON: where (line and column of the read position) and why. */
static bool syntax(reader *r, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static bool syntax(reader *r, const char *fmt, ...)
{
    unsigned line = 1, col = 1;
    for (const char *q = r->s; q < r->p; q++)
        if (*q == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    char why[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    r->st = samda_fail(r->err, SAMDA_EINVAL, NOT_ST "the header is not JSON (line %u column %u: %s; not valid JSON)",
                       line, col, why);
    return false;
}

/* A header that is JSON but not a valid safetensors header. */
static bool refuse(reader *r, samda_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static bool refuse(reader *r, samda_status code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    r->st = samda_vfail(r->err, code, fmt, ap);
    va_end(ap);
    return false;
}

static bool oom(reader *r)
{
    return refuse(r, SAMDA_ENOMEM, "reading the safetensors header: out of memory");
}

static void ws(reader *r)
{
    while (r->p < r->e && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
        r->p++;
}

static int peek(reader *r)
{
    ws(r);
    return r->p < r->e ? (unsigned char)*r->p : -1;
}

/* Whether c can start a JSON value, so that a value of the wrong kind is reported as such, not as
 * a syntax error. */
static bool starts_value(int c)
{
    return c == '"' || c == '{' || c == '[' || c == '-' || (c >= '0' && c <= '9') || c == 't' || c == 'f' || c == 'n';
}

/* After a member or element: ',' (true, *more set) or the closing bracket (true, *more clear). */
static bool next(reader *r, char close, bool *more)
{
    int c = peek(r);
    if (c == ',' || c == close) {
        r->p++;
        *more = c == ',';
        return true;
    }
    return c < 0 ? syntax(r, "unexpected end of text, expected ',' or '%c'", close)
                 : syntax(r, "expected ',' or '%c'", close);
}

/* The length of the UTF-8 sequence at p (1..4), or 0 if it is not valid UTF-8 (RFC 3629: no
 * overlong forms, no surrogates, nothing above U+10FFFF). */
static size_t utf8_len(const unsigned char *p, const unsigned char *e)
{
    unsigned c = p[0];
    if (c < 0x80)
        return 1;
    size_t n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
    if (!n || c > 0xf4 || (size_t)(e - p) < n)
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    if ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] >= 0xa0) || (c == 0xf0 && p[1] < 0x90) ||
        (c == 0xf4 && p[1] >= 0x90))
        return 0;
    return n;
}

static bool utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s, *e = p + strlen(s);
    while (p < e) {
        size_t n = utf8_len(p, e);
        if (!n)
            return false;
        p += n;
    }
    return true;
}

static int hex4(const char *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

/* The string at the read position ('"'), decoded into the storage; NULL after a failure. The
 * storage holds it until r->store->used is set back (a member name that is not kept). */
static char *string(reader *r)
{
    r->p++;
    char *out = r->store->strings + r->store->used, *o = out;
    for (;;) {
        if (r->p >= r->e)
            return syntax(r, "unexpected end of text in a string"), NULL;
        unsigned char c = (unsigned char)*r->p;
        if (c == '"') {
            r->p++;
            break;
        }
        if (c < 0x20)
            return syntax(r, "control character 0x%02x in a string", c), NULL;
        if (c >= 0x80) {
            size_t n = utf8_len((const unsigned char *)r->p, (const unsigned char *)r->e);
            if (!n)
                return syntax(r, "invalid UTF-8 in a string"), NULL;
            memcpy(o, r->p, n);
            o += n;
            r->p += n;
            continue;
        }
        if (c != '\\') {
            *o++ = (char)c;
            r->p++;
            continue;
        }
        if (r->e - r->p < 2)
            return syntax(r, "unexpected end of text in a string"), NULL;
        char x = r->p[1];
        const char *simple = strchr("\"\\/bfnrt", x);
        if (x && simple) {
            *o++ = "\"\\/\b\f\n\r\t"[simple - "\"\\/bfnrt"];
            r->p += 2;
            continue;
        }
        if (x != 'u')
            return syntax(r, "invalid escape '\\%c' in a string", x), NULL;
        int u = r->e - r->p >= 6 ? hex4(r->p + 2) : -1;
        if (u < 0)
            return syntax(r, "invalid \\u escape in a string"), NULL;
        if (u == 0)
            return syntax(r, "\\u0000 is not allowed in a string"), NULL;
        r->p += 6;
        uint32_t cp = (uint32_t)u;
        if (cp >= 0xdc00 && cp <= 0xdfff)
            return syntax(r, "unpaired surrogate \\u%04x in a string", u), NULL;
        if (cp >= 0xd800 && cp <= 0xdbff) {
            int lo = r->e - r->p >= 6 && r->p[0] == '\\' && r->p[1] == 'u' ? hex4(r->p + 2) : -1;
            if (lo < 0xdc00 || lo > 0xdfff)
                return syntax(r, "unpaired surrogate \\u%04x in a string", u), NULL;
            r->p += 6;
            cp = 0x10000 + ((cp - 0xd800) << 10) + ((uint32_t)lo - 0xdc00);
        }
        if (cp < 0x80) {
            *o++ = (char)cp;
        } else if (cp < 0x800) {
            *o++ = (char)(0xc0 | (cp >> 6));
            *o++ = (char)(0x80 | (cp & 0x3f));
        } else if (cp < 0x10000) {
            *o++ = (char)(0xe0 | (cp >> 12));
            *o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
            *o++ = (char)(0x80 | (cp & 0x3f));
        } else {
            *o++ = (char)(0xf0 | (cp >> 18));
            *o++ = (char)(0x80 | ((cp >> 12) & 0x3f));
            *o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
            *o++ = (char)(0x80 | (cp & 0x3f));
        }
    }
    *o++ = '\0';
    r->store->used = (size_t)(o - r->store->strings);
    return out;
}

/* A member name and its ':'; NULL after a failure. */
static char *member_name(reader *r)
{
    int c = peek(r);
    if (c != '"')
        return c < 0 ? (syntax(r, "unexpected end of text, expected a member name"), NULL)
                     : (syntax(r, "expected a member name in double quotes"), NULL);
    char *name = string(r);
    if (!name)
        return NULL;
    if (peek(r) != ':')
        return syntax(r, "expected ':' after \"%.64s\"", name), NULL;
    r->p++;
    return name;
}

/* A JSON number at the read position. *v and *is_count are set; *is_count is false unless it is a
 * non-negative integer below 2^64 (no fraction, no exponent). */
static bool number(reader *r, uint64_t *v, bool *is_count)
{
    const char *p = r->p, *e = r->e;
    bool neg = false, whole = true, fits = true;
    uint64_t x = 0;
    if (p < e && *p == '-') {
        neg = true;
        p++;
    }
    if (p >= e || *p < '0' || *p > '9')
        return syntax(r, "invalid number");
    if (*p == '0') {
        p++;
        if (p < e && *p >= '0' && *p <= '9')
            return syntax(r, "number with a leading zero");
    } else {
        for (; p < e && *p >= '0' && *p <= '9'; p++) {
            unsigned d = (unsigned)(*p - '0');
            if (x > (UINT64_MAX - d) / 10)
                fits = false;
            else
                x = x * 10 + d;
        }
    }
    if (p < e && *p == '.') {
        whole = false;
        if (++p >= e || *p < '0' || *p > '9')
            return r->p = p, syntax(r, "invalid number");
        while (p < e && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        whole = false;
        p++;
        if (p < e && (*p == '+' || *p == '-'))
            p++;
        if (p >= e || *p < '0' || *p > '9')
            return r->p = p, syntax(r, "invalid number");
        while (p < e && *p >= '0' && *p <= '9')
            p++;
    }
    r->p = p;
    *v = x;
    *is_count = !neg && whole && fits;
    return true;
}

/* An array of non-negative integers; keeps the first `keep` in out and counts them all in *n.
 * `bad` is the refusal when an element is anything else (a printf format taking the tensor name). */
static bool counts(reader *r, const char *tensor, const char *bad, uint64_t *out, size_t keep, size_t *n)
{
    *n = 0;
    r->p++; /* '[' */
    if (peek(r) == ']') {
        r->p++;
        return true;
    }
    for (bool more = true; more;) {
        int c = peek(r);
        if (c != '-' && (c < '0' || c > '9'))
            return starts_value(c) ? refuse(r, SAMDA_EINVAL, bad, tensor)
                                   : syntax(r, c < 0 ? "unexpected end of text in an array" : "expected a value");
        uint64_t v = 0;
        bool ok = false;
        if (!number(r, &v, &ok))
            return false;
        if (!ok)
            return refuse(r, SAMDA_EINVAL, bad, tensor);
        if (*n < keep)
            out[*n] = v;
        (*n)++;
        if (!next(r, ']', &more))
            return false;
    }
    return true;
}

static const char *shape_text(char *buf, size_t cap, const uint64_t *shape, size_t ndim)
{
    size_t n = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < ndim && n < cap; i++) {
        int w = snprintf(buf + n, cap - n, "%s%" PRIu64, i ? ", " : "", shape[i]);
        if (w < 0 || (size_t)w >= cap - n) {
            snprintf(buf + (cap > 4 ? cap - 4 : 0), cap > 4 ? 4 : cap, "...");
            break;
        }
        n += (size_t)w;
    }
    return buf;
}

/* "__metadata__": an object of strings. */
static bool metadata(reader *r)
{
    samda_safetensors_header *h = r->h;
    int c = peek(r);
    if (c != '{')
        return starts_value(c) ? refuse(r, SAMDA_EINVAL, HDR "__metadata__ is not an object (it must be an object of strings)")
                               : syntax(r, c < 0 ? "unexpected end of text, expected a value" : "expected a value");
    r->p++;
    if (peek(r) == '}') {
        r->p++;
        return true;
    }
    for (bool more = true; more;) {
        char *key = member_name(r);
        if (!key)
            return false;
        int added = strset_add(&r->keys, key);
        if (added < 0)
            return oom(r);
        if (!added)
            return syntax(r, "duplicate metadata key '%.64s'", key);
        c = peek(r);
        if (c != '"')
            return starts_value(c) ? refuse(r, SAMDA_EINVAL, HDR "__metadata__ member '%.64s' is not a string", key)
                                   : syntax(r, c < 0 ? "unexpected end of text, expected a value" : "expected a value");
        char *value = string(r);
        if (!value)
            return false;
        if (!grow((void **)&h->metadata, &r->store->cap_metadata, h->n_metadata + 1, sizeof *h->metadata))
            return oom(r);
        h->metadata[h->n_metadata].key = key;
        h->metadata[h->n_metadata].value = value;
        h->n_metadata++;
        if (!next(r, '}', &more))
            return false;
    }
    return true;
}

/* One tensor entry {"dtype", "shape", "data_offsets"}, checked against the data section. */
static bool tensor(reader *r, const char *name)
{
    samda_safetensors_header *h = r->h;
    storage *s = r->store;
    int c = peek(r);
    if (c != '{')
        return starts_value(c) ? refuse(r, SAMDA_EINVAL, HDR "tensor '%.64s' is not an object", name)
                               : syntax(r, c < 0 ? "unexpected end of text, expected a value" : "expected a value");
    if (h->n_tensors >= r->lim->max_tensors)
        return refuse(r, SAMDA_ETOOBIG, HDR "more than %zu tensors", r->lim->max_tensors);
    if (!grow((void **)&h->tensors, &s->cap_tensors, h->n_tensors + 1, sizeof *h->tensors) ||
        !grow((void **)&s->dim_at, &s->cap_dim_at, h->n_tensors + 1, sizeof *s->dim_at))
        return oom(r);
    samda_safetensors_tensor *t = &h->tensors[h->n_tensors];
    memset(t, 0, sizeof *t);
    t->name = name;
    s->dim_at[h->n_tensors] = s->n_dims;
    bool have_dtype = false, have_shape = false, have_offsets = false;
    uint64_t dims[SAMDA_SAFETENSORS_MAX_DIMS], offsets[2] = {0, 0};
    size_t ndim = 0, n_offsets = 0;
    const char *bad_offsets = HDR "tensor '%.64s': data_offsets must be [begin, end] of non-negative integers";
    r->p++;
    if (peek(r) == '}') {
        r->p++;
    } else {
        for (bool more = true; more;) {
            size_t mark = s->used;
            char *key = member_name(r);
            if (!key)
                return false;
            bool *seen = !strcmp(key, "dtype")          ? &have_dtype
                         : !strcmp(key, "shape")        ? &have_shape
                         : !strcmp(key, "data_offsets") ? &have_offsets
                                                        : NULL;
            if (!seen)
                return refuse(r, SAMDA_EINVAL, HDR "tensor '%.64s' has unknown member '%.32s'", name, key);
            if (*seen)
                return syntax(r, "duplicate member '%s' in tensor '%.64s'", key, name);
            *seen = true;
            s->used = mark; /* the member name is not kept */
            c = peek(r);
            if (seen == &have_dtype) {
                if (c != '"')
                    return starts_value(c) ? refuse(r, SAMDA_EINVAL, HDR "tensor '%.64s' has no dtype string", name)
                                           : syntax(r, "expected a value");
                char *dt = string(r);
                if (!dt)
                    return false;
                if (!samda_safetensors_dtype_from_name(dt, &t->dtype))
                    return refuse(r, SAMDA_EINVAL,
                                  HDR "tensor '%.64s' has unknown dtype '%.16s' (unsupported dtype; the format has "
                                      KNOWN_TYPES ")",
                                  name, dt);
                s->used = mark;
            } else if (seen == &have_shape) {
                if (c != '[')
                    return starts_value(c) ? refuse(r, SAMDA_EINVAL, HDR "tensor '%.64s' has no shape array", name)
                                           : syntax(r, "expected a value");
                if (!counts(r, name, HDR "tensor '%.64s': shape must hold non-negative integers", dims,
                            r->lim->max_dims < SAMDA_SAFETENSORS_MAX_DIMS ? r->lim->max_dims : SAMDA_SAFETENSORS_MAX_DIMS,
                            &ndim))
                    return false;
                if (ndim > r->lim->max_dims || ndim > SAMDA_SAFETENSORS_MAX_DIMS)
                    return refuse(r, SAMDA_ETOOBIG, HDR "tensor '%.64s' has %zu dimensions (at most %u)", name, ndim,
                                  r->lim->max_dims < SAMDA_SAFETENSORS_MAX_DIMS ? r->lim->max_dims
                                                                                : SAMDA_SAFETENSORS_MAX_DIMS);
            } else {
                if (c != '[')
                    return starts_value(c) ? refuse(r, SAMDA_EINVAL, bad_offsets, name) : syntax(r, "expected a value");
                if (!counts(r, name, bad_offsets, offsets, 2, &n_offsets))
                    return false;
                if (n_offsets != 2)
                    return refuse(r, SAMDA_EINVAL, bad_offsets, name);
            }
            if (!next(r, '}', &more))
                return false;
        }
    }
    if (!have_dtype)
        return refuse(r, SAMDA_EINVAL, HDR "tensor '%.64s' has no dtype string", name);
    if (!have_shape)
        return refuse(r, SAMDA_EINVAL, HDR "tensor '%.64s' has no shape array", name);
    if (!have_offsets)
        return refuse(r, SAMDA_EINVAL, bad_offsets, name);

    char text[96];
    uint64_t numel = 1;
    for (size_t i = 0; i < ndim; i++)
        if (dims[i] > MAX_ELEMENTS || (dims[i] && numel > MAX_ELEMENTS / dims[i]))
            return refuse(r, SAMDA_EINVAL,
                          HDR "tensor '%.64s': shape [%s] overflows (impossibly large: over 2^40 elements)", name,
                          shape_text(text, sizeof text, dims, ndim));
        else
            numel *= dims[i];
    uint64_t bytes = numel * st_types[t->dtype].size, b = offsets[0], e = offsets[1];
    if (b > e)
        return refuse(r, SAMDA_EINVAL,
                      HDR "tensor '%.64s': data_offsets [%" PRIu64 ", %" PRIu64 "] are reversed (end %" PRIu64
                          " < begin %" PRIu64 ")",
                      name, b, e, e, b);
    if (e > h->data_bytes)
        return refuse(r, SAMDA_EINVAL,
                      HDR "tensor '%.64s': data_offsets [%" PRIu64 ", %" PRIu64 "] outside the data section (%" PRIu64
                          " bytes): end %" PRIu64 " is past the payload (truncated?)",
                      name, b, e, h->data_bytes, e);
    if (e - b != bytes)
        return refuse(r, SAMDA_EINVAL,
                      HDR "tensor '%.64s': data_offsets [%" PRIu64 ", %" PRIu64 "] do not match dtype %s and shape [%s] (%" PRIu64
                          " bytes): %" PRIu64 " bytes given, dtype and shape need %" PRIu64,
                      name, b, e, st_types[t->dtype].name, shape_text(text, sizeof text, dims, ndim), bytes, e - b,
                      bytes);
    if (!grow((void **)&s->dims, &s->cap_dims, s->n_dims + ndim, sizeof *s->dims))
        return oom(r);
    if (ndim)
        memcpy(s->dims + s->n_dims, dims, ndim * sizeof *dims);
    s->n_dims += ndim;
    t->ndim = (unsigned)ndim;
    t->begin = b;
    t->end = e;
    h->n_tensors++;
    return true;
}

static int by_offset(const void *a, const void *b)
{
    const samda_safetensors_tensor *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* The whole header: an object of tensors and perhaps "__metadata__". */
static bool header(reader *r)
{
    bool seen_metadata = false;
    r->p++; /* '{', checked by the caller */
    if (peek(r) == '}') {
        r->p++;
    } else {
        for (bool more = true; more;) {
            size_t mark = r->store->used;
            char *name = member_name(r);
            if (!name)
                return false;
            if (!strcmp(name, "__metadata__")) {
                if (seen_metadata)
                    return syntax(r, "duplicate header key '__metadata__'");
                seen_metadata = r->h->has_metadata = true;
                r->store->used = mark;
                if (!metadata(r))
                    return false;
            } else {
                if (!*name)
                    return refuse(r, SAMDA_EINVAL, HDR "a tensor has an empty name");
                int added = strset_add(&r->names, name);
                if (added < 0)
                    return oom(r);
                if (!added)
                    return syntax(r, "duplicate header key '%.64s'", name);
                if (!tensor(r, name))
                    return false;
            }
            if (!next(r, '}', &more))
                return false;
        }
    }
    if (peek(r) >= 0)
        return syntax(r, "text after the header object (padding must be spaces)");
    return true;
}

/* The data section is covered exactly: tensors in data order follow each other from 0 to its end. */
static bool coverage(reader *r)
{
    samda_safetensors_header *h = r->h;
    if (h->n_tensors > 1)
        qsort(h->tensors, h->n_tensors, sizeof *h->tensors, by_offset);
    uint64_t at = 0;
    for (size_t i = 0; i < h->n_tensors; i++) {
        const samda_safetensors_tensor *t = &h->tensors[i];
        if (t->begin < at)
            return refuse(r, SAMDA_EINVAL, HDR "tensor '%.64s' overlaps another tensor (offset %" PRIu64 ")", t->name,
                          t->begin);
        if (t->begin > at)
            return refuse(r, SAMDA_EINVAL,
                          HDR "hole in the data section before tensor '%.64s': bytes %" PRIu64 "..%" PRIu64
                              " belong to no tensor",
                          t->name, at, t->begin);
        at = t->end;
    }
    if (at != h->data_bytes)
        return refuse(r, SAMDA_EINVAL,
                      HDR "%" PRIu64 " bytes after the last tensor (data section %" PRIu64
                          " bytes): trailing bytes that belong to no tensor",
                      h->data_bytes - at, h->data_bytes);
    return true;
}

samda_status samda_safetensors_header_parse(const char *text, uint64_t header_bytes, uint64_t data_bytes,
                                            const samda_safetensors_limits *lim, samda_safetensors_header *h,
                                            samda_error *err)
{
    samda_safetensors_limits defaults;
    if (!lim) {
        samda_safetensors_limits_init(&defaults);
        lim = &defaults;
    }
    memset(h, 0, sizeof *h);
    if (!text && header_bytes)
        return samda_fail(err, SAMDA_EINVAL, "reading the safetensors header: no text given");
    if (header_bytes > lim->max_header_bytes)
        return samda_fail(err, SAMDA_ETOOBIG,
                          "safetensors header of %" PRIu64 " bytes is larger than %" PRIu64
                          " bytes (the header length limit)",
                          header_bytes, lim->max_header_bytes);
    if (header_bytes >= SIZE_MAX)
        return samda_fail(err, SAMDA_ENOMEM, "reading the safetensors header: out of memory");
    if (!header_bytes || text[0] != '{')
        return samda_fail(err, SAMDA_EINVAL, NOT_ST "the header is not a JSON object: it does not start with '{'");
    h->header_bytes = header_bytes;
    h->data_bytes = data_bytes;
    storage *s = calloc(1, sizeof *s);
    /* Decoded strings never outgrow their quoted text, so one block of the header's size holds them all. */
    if (!s || !(s->strings = malloc((size_t)header_bytes + 1))) {
        free(s);
        return samda_fail(err, SAMDA_ENOMEM, "reading the safetensors header: out of memory");
    }
    h->storage_ = s;
    reader r = {text, text, text + header_bytes, err, SAMDA_OK, s, lim, h, {NULL, 0, 0}, {NULL, 0, 0}};
    bool ok = header(&r);
    if (ok) { /* the shapes stop moving once parsing is over; point at them before the sort */
        for (size_t i = 0; i < h->n_tensors; i++)
            h->tensors[i].shape = h->tensors[i].ndim ? s->dims + s->dim_at[i] : NULL;
        free(s->dim_at);
        s->dim_at = NULL;
        ok = coverage(&r);
    }
    free(r.names.slot);
    free(r.keys.slot);
    if (!ok) {
        samda_safetensors_header_free(h);
        return r.st;
    }
    return SAMDA_OK;
}

samda_status samda_safetensors_parse(const void *file, size_t n, const samda_safetensors_limits *lim,
                                     samda_safetensors_header *h, samda_error *err)
{
    memset(h, 0, sizeof *h);
    uint64_t hl;
    samda_status st = samda_safetensors_header_length(file, n, n, lim, &hl, err);
    if (st != SAMDA_OK)
        return st;
    return samda_safetensors_header_parse((const char *)file + 8, hl, n - 8 - hl, lim, h, err);
}

/* ---- the writer ---- */

typedef struct sbuf {
    char *p;
    size_t n, cap;
    bool oom;
} sbuf;

static void put(sbuf *b, const char *s, size_t n)
{
    if (b->oom || !grow((void **)&b->p, &b->cap, b->n + n + 1, 1)) {
        b->oom = true;
        return;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

static void put_str(sbuf *b, const char *s)
{
    put(b, s, strlen(s));
}

static void put_u64(sbuf *b, uint64_t v)
{
    char t[24];
    int w = snprintf(t, sizeof t, "%" PRIu64, v);
    put(b, t, (size_t)w);
}

/* s as a JSON string: quotes, backslashes and control characters escaped, UTF-8 as is. */
static void put_quoted(sbuf *b, const char *s)
{
    put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': put(b, "\\\"", 2); break;
        case '\\': put(b, "\\\\", 2); break;
        case '\n': put(b, "\\n", 2); break;
        case '\r': put(b, "\\r", 2); break;
        case '\t': put(b, "\\t", 2); break;
        default:
            if (*p < 0x20) {
                char u[8];
                snprintf(u, sizeof u, "\\u%04x", *p);
                put(b, u, 6);
            } else {
                put(b, (const char *)p, 1);
            }
        }
    }
    put(b, "\"", 1);
}

/* The arguments of samda_safetensors_header_build, checked before anything is built. */
static samda_status check_out(const samda_safetensors_entry *metadata, size_t n_metadata,
                              const samda_safetensors_out *tensors, size_t n_tensors, strset *names, strset *keys,
                              samda_error *err)
{
    for (size_t i = 0; i < n_metadata; i++) {
        const samda_safetensors_entry *m = &metadata[i];
        if (!m->key || !m->value)
            return samda_fail(err, SAMDA_EINVAL, "writing a safetensors header: metadata entry %zu is NULL", i);
        if (!utf8_valid(m->key) || !utf8_valid(m->value))
            return samda_fail(err, SAMDA_EINVAL, "writing a safetensors header: metadata '%.64s' is not UTF-8",
                              m->key);
        int added = strset_add(keys, m->key);
        if (added <= 0)
            return added < 0 ? samda_fail(err, SAMDA_ENOMEM, "writing a safetensors header: out of memory")
                             : samda_fail(err, SAMDA_EINVAL, "writing a safetensors header: duplicate metadata key '%.64s'",
                                          m->key);
    }
    uint64_t total = 0;
    for (size_t i = 0; i < n_tensors; i++) {
        const samda_safetensors_out *t = &tensors[i];
        if (!t->name || !*t->name || strncmp(t->name, "__", 2) == 0)
            return samda_fail(err, SAMDA_EINVAL,
                              "writing a safetensors header: tensor name '%.64s' is empty or starts with \"__\"",
                              t->name ? t->name : "");
        if (!utf8_valid(t->name))
            return samda_fail(err, SAMDA_EINVAL, "writing a safetensors header: tensor name '%.64s' is not UTF-8",
                              t->name);
        int added = strset_add(names, t->name);
        if (added <= 0)
            return added < 0 ? samda_fail(err, SAMDA_ENOMEM, "writing a safetensors header: out of memory")
                             : samda_fail(err, SAMDA_EINVAL, "writing a safetensors header: duplicate tensor name '%.64s'",
                                          t->name);
        if ((unsigned)t->dtype >= N_TYPES || t->ndim > SAMDA_SAFETENSORS_MAX_DIMS || (t->ndim && !t->shape))
            return samda_fail(err, SAMDA_EINVAL,
                              "writing a safetensors header: tensor '%.64s' has dtype %d and %u dimensions (at most %d)",
                              t->name, (int)t->dtype, t->ndim, SAMDA_SAFETENSORS_MAX_DIMS);
        uint64_t numel = 1;
        bool over = false;
        for (unsigned d = 0; d < t->ndim; d++) {
            if (t->shape[d] > MAX_ELEMENTS || (t->shape[d] && numel > MAX_ELEMENTS / t->shape[d]))
                over = true;
            else
                numel *= t->shape[d];
        }
        char text[96];
        if (over || numel * st_types[t->dtype].size != t->nbytes)
            return samda_fail(err, SAMDA_EINVAL,
                              "writing a safetensors header: tensor '%.64s' has %" PRIu64
                              " bytes for its dtype and shape (%s [%s])",
                              t->name, t->nbytes, st_types[t->dtype].name,
                              shape_text(text, sizeof text, t->shape, t->ndim));
        total += t->nbytes; /* at most 2^43 per tensor: a sum overflows only past 2^21 tensors of 2^43 */
        if (total < t->nbytes)
            return samda_fail(err, SAMDA_EINVAL, "writing a safetensors header: the tensors exceed 2^64 bytes");
    }
    return SAMDA_OK;
}

samda_status samda_safetensors_header_build(const samda_safetensors_entry *metadata, size_t n_metadata,
                                            const samda_safetensors_out *tensors, size_t n_tensors, char **out,
                                            size_t *out_len, samda_error *err)
{
    *out = NULL;
    *out_len = 0;
    if ((n_metadata && !metadata) || (n_tensors && !tensors))
        return samda_fail(err, SAMDA_EINVAL, "writing a safetensors header: no metadata or tensors given");
    strset names = {NULL, 0, 0}, keys = {NULL, 0, 0};
    samda_status st = check_out(metadata, n_metadata, tensors, n_tensors, &names, &keys, err);
    free(names.slot);
    free(keys.slot);
    if (st != SAMDA_OK)
        return st;
    sbuf b = {NULL, 0, 0, false};
    put(&b, "\0\0\0\0\0\0\0\0{", 9);
    if (n_metadata) {
        put_str(&b, "\"__metadata__\":{");
        for (size_t i = 0; i < n_metadata; i++) {
            if (i)
                put(&b, ",", 1);
            put_quoted(&b, metadata[i].key);
            put(&b, ":", 1);
            put_quoted(&b, metadata[i].value);
        }
        put(&b, "}", 1);
    }
    uint64_t off = 0;
    for (size_t i = 0; i < n_tensors; i++) {
        const samda_safetensors_out *t = &tensors[i];
        if (i || n_metadata)
            put(&b, ",", 1);
        put_quoted(&b, t->name);
        put_str(&b, ":{\"dtype\":\"");
        put_str(&b, st_types[t->dtype].name);
        put_str(&b, "\",\"shape\":[");
        for (unsigned d = 0; d < t->ndim; d++) {
            if (d)
                put(&b, ",", 1);
            put_u64(&b, t->shape[d]);
        }
        put_str(&b, "],\"data_offsets\":[");
        put_u64(&b, off);
        put(&b, ",", 1);
        put_u64(&b, off + t->nbytes);
        put_str(&b, "]}");
        off += t->nbytes;
    }
    put(&b, "}", 1);
    while (!b.oom && (b.n - 8) % 8) /* the data section starts 8-byte aligned */
        put(&b, " ", 1);
    if (b.oom) {
        free(b.p);
        return samda_fail(err, SAMDA_ENOMEM, "writing a safetensors header: out of memory");
    }
    uint64_t hl = b.n - 8;
    for (int i = 0; i < 8; i++)
        b.p[i] = (char)(unsigned char)(hl >> (8 * i));
    *out = b.p;
    *out_len = b.n;
    return SAMDA_OK;
}
