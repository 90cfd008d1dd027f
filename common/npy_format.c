/* The .npy format (see npy_format.h): header tokenizer, byte order and Fortran order, float
 * conversion, header building, whole-file read and crash-safe write. */
#include "npy_format.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomic_file.h"

static const struct {
    const char *descr; /* little-endian descr; its code is descr + 1 */
    size_t size;
} npy_types[] = {
    [SAMDA_NPY_F16] = {"<f2", 2}, [SAMDA_NPY_F32] = {"<f4", 4}, [SAMDA_NPY_F64] = {"<f8", 8},
    [SAMDA_NPY_I8] = {"|i1", 1},  [SAMDA_NPY_I16] = {"<i2", 2}, [SAMDA_NPY_I32] = {"<i4", 4},
    [SAMDA_NPY_I64] = {"<i8", 8}, [SAMDA_NPY_U8] = {"|u1", 1},  [SAMDA_NPY_U16] = {"<u2", 2},
    [SAMDA_NPY_U32] = {"<u4", 4}, [SAMDA_NPY_U64] = {"<u8", 8}, [SAMDA_NPY_BOOL] = {"|b1", 1},
};
#define N_TYPES (sizeof npy_types / sizeof npy_types[0])

static const unsigned char npy_magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};

size_t samda_npy_dtype_size(samda_npy_dtype dt)
{
    return (unsigned)dt < N_TYPES ? npy_types[dt].size : 1;
}

const char *samda_npy_dtype_descr(samda_npy_dtype dt)
{
    return (unsigned)dt < N_TYPES ? npy_types[dt].descr : "?";
}

bool samda_npy_dtype_from_descr(const char *descr, samda_npy_dtype *dt)
{
    if (!descr)
        return false;
    for (size_t i = 0; i < N_TYPES; i++)
        if (strcmp(descr, npy_types[i].descr) == 0) {
            *dt = (samda_npy_dtype)i;
            return true;
        }
    return false;
}

static bool host_is_little(void)
{
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

static void byteswap_all(unsigned char *p, uint64_t n_elems, size_t es)
{
    if (es == 1)
        return;
    for (uint64_t i = 0; i < n_elems; i++, p += es)
        for (size_t a = 0, b = es - 1; a < b; a++, b--) {
            unsigned char t = p[a];
            p[a] = p[b];
            p[b] = t;
        }
}

/* "(2, 3)", "(5,)", "()" as numpy prints a shape; cut with "..." when it does not fit. */
static const char *shape_str(char *buf, size_t cap, int ndim, const uint64_t *shape)
{
    size_t n = 0;
    int w = snprintf(buf, cap, "(");
    n = (size_t)w;
    for (int i = 0; i < ndim && n < cap; i++) {
        w = snprintf(buf + n, cap - n, "%s%" PRIu64, i ? ", " : "", shape[i]);
        if (w < 0 || (size_t)w >= cap - n) {
            snprintf(buf + (cap > 5 ? cap - 5 : 0), cap > 5 ? 5 : cap, "...)");
            return buf;
        }
        n += (size_t)w;
    }
    snprintf(buf + n, cap - n, "%s)", ndim == 1 ? "," : "");
    return buf;
}

/* ---- header tokenizer ---- */

typedef struct tok {
    const char *p, *e;
    samda_error *err;
} tok;

typedef struct span {
    const char *s;
    size_t n;
} span;

static void ws(tok *t)
{
    while (t->p < t->e && (*t->p == ' ' || *t->p == '\t' || *t->p == '\n' || *t->p == '\r'))
        t->p++;
}

static bool eat(tok *t, char c)
{
    ws(t);
    if (t->p < t->e && *t->p == c) {
        t->p++;
        return true;
    }
    return false;
}

static bool str(tok *t, const char *what, span *out)
{
    ws(t);
    if (t->p >= t->e || (*t->p != '\'' && *t->p != '"'))
        return samda_fail(t->err, SAMDA_EINVAL, "header: %s: expected a quoted string", what), false;
    char q = *t->p++;
    const char *s = t->p;
    while (t->p < t->e && *t->p != q) {
        if (*t->p == '\\')
            return samda_fail(t->err, SAMDA_EINVAL, "header: %s: escapes are not supported", what), false;
        t->p++;
    }
    if (t->p >= t->e)
        return samda_fail(t->err, SAMDA_EINVAL, "header: %s: unterminated string", what), false;
    out->s = s;
    out->n = (size_t)(t->p - s);
    t->p++;
    return true;
}

static bool boolean(tok *t, const char *what, bool *out)
{
    ws(t);
    size_t left = (size_t)(t->e - t->p);
    if (left >= 4 && memcmp(t->p, "True", 4) == 0) {
        t->p += 4;
        *out = true;
        return true;
    }
    if (left >= 5 && memcmp(t->p, "False", 5) == 0) {
        t->p += 5;
        *out = false;
        return true;
    }
    return samda_fail(t->err, SAMDA_EINVAL, "header: %s: expected True or False", what), false;
}

static bool tuple(tok *t, const char *what, uint64_t *v, int *ndim)
{
    *ndim = 0;
    if (!eat(t, '('))
        return samda_fail(t->err, SAMDA_EINVAL, "header: %s: expected a tuple of integers", what), false;
    for (;;) {
        if (eat(t, ')'))
            return true;
        ws(t);
        if (t->p >= t->e || *t->p < '0' || *t->p > '9')
            return samda_fail(t->err, SAMDA_EINVAL, "header: %s: expected a non-negative integer", what), false;
        uint64_t x = 0;
        while (t->p < t->e && *t->p >= '0' && *t->p <= '9') {
            unsigned d = (unsigned)(*t->p - '0');
            if (x > (UINT64_MAX - d) / 10 || x * 10 + d > (uint64_t)INT64_MAX)
                return samda_fail(t->err, SAMDA_EINVAL, "header: %s: integer overflows 64 bits", what), false;
            x = x * 10 + d;
            t->p++;
        }
        if (t->p < t->e && *t->p == 'L') /* Python 2 long */
            t->p++;
        if (*ndim == SAMDA_NPY_MAX_NDIM)
            return samda_fail(t->err, SAMDA_EINVAL, "header: %s: more than %d dimensions", what, SAMDA_NPY_MAX_NDIM),
                   false;
        v[(*ndim)++] = x;
        if (eat(t, ')'))
            return true;
        if (!eat(t, ','))
            return samda_fail(t->err, SAMDA_EINVAL, "header: %s: expected ',' or ')'", what), false;
    }
}

static bool span_is(span s, const char *lit)
{
    return s.n == strlen(lit) && memcmp(s.s, lit, s.n) == 0;
}

static bool parse_descr(span d, samda_npy_header *h, samda_error *err)
{
    int n = d.n > 32 ? 32 : (int)d.n; /* the value as quoted in messages */
    if (d.n < 3)
        return samda_fail(err, SAMDA_EINVAL, "header: 'descr' '%.*s' is not a plain numeric dtype", n, d.s), false;
    size_t i = 0;
    for (; i < N_TYPES; i++)
        if (d.n == 3 && memcmp(d.s + 1, npy_types[i].descr + 1, 2) == 0)
            break;
    if (i == N_TYPES)
        return samda_fail(err, SAMDA_EINVAL,
                          "header: 'descr' '%.*s'%s is not supported (f2 f4 f8 i1 i2 i4 i8 u1 u2 u4 u8 b1)", n, d.s,
                          d.n > 32 ? "..." : ""),
               false;
    h->dtype = (samda_npy_dtype)i;
    bool little = host_is_little();
    switch (d.s[0]) {
    case '<': h->swap = !little; break;
    case '>': h->swap = little; break;
    case '|':
    case '=': h->swap = false; break;
    default:
        return samda_fail(err, SAMDA_EINVAL, "header: 'descr' '%.*s' has an unknown byte-order mark", n, d.s), false;
    }
    if (npy_types[i].size == 1)
        h->swap = false;
    return true;
}

samda_status samda_npy_header_size(const void *buf, size_t n, uint64_t file_bytes, size_t *header_bytes,
                                   samda_error *err)
{
    const unsigned char *b = buf;
    if (!b || n < 10 || file_bytes < 10 || memcmp(b, npy_magic, 6) != 0)
        return samda_fail(err, SAMDA_EINVAL, "not a .npy file (magic \\x93NUMPY missing)");
    unsigned major = b[6], minor = b[7];
    size_t pre, hlen;
    if (major == 1) {
        pre = 10;
        hlen = (size_t)b[8] | ((size_t)b[9] << 8);
    } else if (major == 2 || major == 3) {
        if (n < 12 || file_bytes < 12)
            return samda_fail(err, SAMDA_EINVAL, "header: truncated header length");
        pre = 12;
        hlen = (size_t)b[8] | ((size_t)b[9] << 8) | ((size_t)b[10] << 16) | ((size_t)b[11] << 24);
    } else {
        return samda_fail(err, SAMDA_EINVAL, "header: format version %u.%u is not supported (1.0, 2.0, 3.0)", major,
                          minor);
    }
    if (hlen > file_bytes - pre)
        return samda_fail(err, SAMDA_EINVAL, "header: length %zu runs past the end of the file (%" PRIu64 " bytes)",
                          hlen, file_bytes);
    if (hlen > SAMDA_NPY_MAX_HEADER_BYTES)
        return samda_fail(err, SAMDA_EINVAL, "header: length %zu is over the limit of %u bytes", hlen,
                          SAMDA_NPY_MAX_HEADER_BYTES);
    *header_bytes = pre + hlen;
    return SAMDA_OK;
}

samda_status samda_npy_header_parse(const void *buf, size_t n, uint64_t file_bytes, samda_npy_header *h,
                                    samda_error *err)
{
    size_t total;
    samda_status st = samda_npy_header_size(buf, n, file_bytes, &total, err);
    if (st != SAMDA_OK)
        return st;
    if (total > n)
        return samda_fail(err, SAMDA_EINVAL, "header: length %zu runs past the %zu bytes read", total, n);
    const unsigned char *b = buf;
    memset(h, 0, sizeof *h);
    h->major = b[6];
    h->minor = b[7];
    h->data_offset = total;
    size_t pre = h->major == 1 ? 10 : 12;
    tok t = {(const char *)b + pre, (const char *)b + total, err};
    bool have_descr = false, have_order = false, have_shape = false;
    if (!eat(&t, '{'))
        return samda_fail(err, SAMDA_EINVAL, "header: expected a dict literal '{'");
    for (;;) {
        if (eat(&t, '}'))
            break;
        span key;
        if (!str(&t, "key", &key))
            return SAMDA_EINVAL;
        int kn = key.n > 32 ? 32 : (int)key.n;
        if (!eat(&t, ':'))
            return samda_fail(err, SAMDA_EINVAL, "header: '%.*s': expected ':'", kn, key.s);
        bool *seen = span_is(key, "descr")           ? &have_descr
                     : span_is(key, "fortran_order") ? &have_order
                     : span_is(key, "shape")         ? &have_shape
                                                     : NULL;
        if (!seen)
            return samda_fail(err, SAMDA_EINVAL, "header: unexpected key '%.*s'", kn, key.s);
        if (*seen)
            return samda_fail(err, SAMDA_EINVAL, "header: '%.*s' given twice", kn, key.s);
        *seen = true;
        if (seen == &have_descr) {
            ws(&t);
            if (t.p < t.e && *t.p == '[')
                return samda_fail(err, SAMDA_EINVAL, "header: 'descr': structured dtypes are not supported");
            span d;
            if (!str(&t, "'descr'", &d) || !parse_descr(d, h, err))
                return SAMDA_EINVAL;
        } else if (seen == &have_order) {
            if (!boolean(&t, "'fortran_order'", &h->fortran_order))
                return SAMDA_EINVAL;
        } else if (!tuple(&t, "'shape'", h->shape, &h->ndim)) {
            return SAMDA_EINVAL;
        }
        if (eat(&t, '}'))
            break;
        if (!eat(&t, ','))
            return samda_fail(err, SAMDA_EINVAL, "header: expected ',' or '}' after a value");
    }
    ws(&t);
    if (t.p < t.e)
        return samda_fail(err, SAMDA_EINVAL, "header: unexpected text after the dict (padding must be spaces)");
    if (!have_descr)
        return samda_fail(err, SAMDA_EINVAL, "header: 'descr' missing");
    if (!have_order)
        return samda_fail(err, SAMDA_EINVAL, "header: 'fortran_order' missing");
    if (!have_shape)
        return samda_fail(err, SAMDA_EINVAL, "header: 'shape' missing");

    uint64_t numel = 1;
    bool over = false;
    for (int i = 0; i < h->ndim; i++) {
        if (h->shape[i] && numel > UINT64_MAX / h->shape[i])
            over = true;
        else
            numel *= h->shape[i];
    }
    size_t es = npy_types[h->dtype].size;
    if (over || numel > (uint64_t)INT64_MAX / es || numel * es > SIZE_MAX) {
        char s[200];
        return samda_fail(err, SAMDA_EINVAL, "header: 'shape' %s overflows",
                          shape_str(s, sizeof s, h->ndim, h->shape));
    }
    h->numel = numel;
    h->data_bytes = numel * es;
    return SAMDA_OK;
}

samda_status samda_npy_data_check(const samda_npy_header *h, uint64_t avail, samda_error *err)
{
    if (avail < h->data_bytes) {
        char s[200];
        return samda_fail(err, SAMDA_EINVAL,
                          "data: shape %s of %s needs %" PRIu64 " bytes but %" PRIu64
                          " follow the header (truncated?)",
                          shape_str(s, sizeof s, h->ndim, h->shape), samda_npy_dtype_descr(h->dtype), h->data_bytes,
                          avail);
    }
    if (avail > h->data_bytes)
        return samda_fail(err, SAMDA_EINVAL, "data: %" PRIu64 " unexpected bytes after the array",
                          avail - h->data_bytes);
    return SAMDA_OK;
}

void samda_npy_data_to_native(const samda_npy_header *h, const void *src_v, void *dst_v)
{
    const unsigned char *src = src_v;
    unsigned char *dst = dst_v;
    size_t es = samda_npy_dtype_size(h->dtype);
    if (!h->fortran_order || h->ndim < 2 || h->numel == 0) {
        if (h->data_bytes)
            memcpy(dst, src, (size_t)h->data_bytes);
    } else {
        /* Fortran order: first index fastest. Walk the C-order destination with an odometer over
         * the indices, keeping the source offset in step. */
        int nd = h->ndim;
        uint64_t fstride[SAMDA_NPY_MAX_NDIM], idx[SAMDA_NPY_MAX_NDIM] = {0};
        uint64_t s = es;
        for (int d = 0; d < nd; d++) {
            fstride[d] = s;
            s *= h->shape[d];
        }
        uint64_t off = 0;
        for (uint64_t i = 0; i < h->numel; i++) {
            memcpy(dst + i * es, src + off, es);
            for (int d = nd; d-- > 0;) {
                if (++idx[d] < h->shape[d]) {
                    off += fstride[d];
                    break;
                }
                off -= fstride[d] * (idx[d] - 1);
                idx[d] = 0;
            }
        }
    }
    if (h->swap)
        byteswap_all(dst, h->numel, es);
}

float samda_npy_half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while (!(man & 0x400));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t samda_npy_float_to_half(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t exp = (x >> 23) & 0xff, man = x & 0x7fffff;
    if (exp == 0xff)
        return (uint16_t)(sign | 0x7c00 | (man ? 0x200 : 0));
    int e = (int)exp - 127 + 15;
    if (e >= 31)
        return (uint16_t)(sign | 0x7c00);
    if (e <= 0) {
        if (e < -10)
            return sign;
        man |= 0x800000;
        uint32_t shift = (uint32_t)(14 - e);
        uint32_t h = man >> shift, rem = man & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1)))
            h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = ((uint32_t)e << 10) | (man >> 13), rem = man & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1)))
        h++; /* may carry into the exponent: still right */
    return (uint16_t)(sign | h);
}

#define NPY_CONVERT(T)                                                                                       \
    for (size_t i = 0; i < n; i++) {                                                                         \
        T v;                                                                                                 \
        memcpy(&v, p + i * sizeof(T), sizeof(T));                                                            \
        dst[i] = (float)v;                                                                                   \
    }                                                                                                        \
    break

void samda_npy_to_float(samda_npy_dtype dt, const void *src, size_t n, float *dst)
{
    const unsigned char *p = src;
    switch (dt) {
    case SAMDA_NPY_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = samda_npy_half_to_float(h);
        }
        break;
    case SAMDA_NPY_F32: NPY_CONVERT(float);
    case SAMDA_NPY_F64: NPY_CONVERT(double);
    case SAMDA_NPY_I8: NPY_CONVERT(int8_t);
    case SAMDA_NPY_I16: NPY_CONVERT(int16_t);
    case SAMDA_NPY_I32: NPY_CONVERT(int32_t);
    case SAMDA_NPY_I64: NPY_CONVERT(int64_t);
    case SAMDA_NPY_U8: NPY_CONVERT(uint8_t);
    case SAMDA_NPY_U16: NPY_CONVERT(uint16_t);
    case SAMDA_NPY_U32: NPY_CONVERT(uint32_t);
    case SAMDA_NPY_U64: NPY_CONVERT(uint64_t);
    case SAMDA_NPY_BOOL:
        for (size_t i = 0; i < n; i++)
            dst[i] = p[i] ? 1.0f : 0.0f;
        break;
    }
}

/* ---- files ---- */

static bool read_at(int fd, void *buf, size_t len, uint64_t off, int *eno)
{
    unsigned char *p = buf;
    while (len) {
        ssize_t r = pread(fd, p, len, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            *eno = r == 0 ? 0 : errno;
            return false;
        }
        p += r;
        len -= (size_t)r;
        off += (uint64_t)r;
    }
    return true;
}

samda_status samda_npy_load(const char *path, uint64_t max_data_bytes, samda_npy_header *h, void **data,
                            samda_error *err)
{
    *data = NULL;
    if (!path || !*path)
        return samda_fail(err, SAMDA_EINVAL, "reading .npy: no path given");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return samda_fail(err, errno == ENOENT ? SAMDA_ENOENT : SAMDA_EIO, "%s: cannot open: %s", path,
                          strerror(errno));
    samda_status st = SAMDA_OK;
    unsigned char *head = NULL, *raw = NULL;
    int eno = 0;
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        st = samda_fail(err, SAMDA_EIO, "%s: not a regular file", path);
        goto out;
    }
    uint64_t size = (uint64_t)sb.st_size;
    unsigned char prefix[12];
    size_t np = size < sizeof prefix ? (size_t)size : sizeof prefix;
    size_t total;
    if (!read_at(fd, prefix, np, 0, &eno))
        goto read_failed;
    if ((st = samda_npy_header_size(prefix, np, size, &total, err)) != SAMDA_OK)
        goto prefixed;
    if (!(head = malloc(total))) {
        st = samda_fail(err, SAMDA_ENOMEM, "%s: out of memory for a header of %zu bytes", path, total);
        goto out;
    }
    if (!read_at(fd, head, total, 0, &eno))
        goto read_failed;
    if ((st = samda_npy_header_parse(head, total, size, h, err)) != SAMDA_OK ||
        (st = samda_npy_data_check(h, size - total, err)) != SAMDA_OK)
        goto prefixed;
    if (h->data_bytes > max_data_bytes) {
        st = samda_fail(err, SAMDA_ETOOBIG, "%s: the array of %" PRIu64 " bytes is larger than %" PRIu64 " bytes", path,
                        h->data_bytes, max_data_bytes);
        goto out;
    }
    size_t nb = (size_t)h->data_bytes;
    if (!(raw = malloc(nb ? nb : 1))) {
        st = samda_fail(err, SAMDA_ENOMEM, "%s: out of memory for %zu bytes", path, nb);
        goto out;
    }
    if (nb && !read_at(fd, raw, nb, total, &eno))
        goto read_failed;
    if (h->fortran_order && h->ndim >= 2 && h->numel > 0) {
        unsigned char *c = malloc(nb);
        if (!c) {
            st = samda_fail(err, SAMDA_ENOMEM, "%s: out of memory for %zu bytes", path, nb);
            goto out;
        }
        samda_npy_data_to_native(h, raw, c);
        free(raw);
        raw = c;
    } else if (h->swap) {
        byteswap_all(raw, h->numel, samda_npy_dtype_size(h->dtype));
    }
    *data = raw;
    raw = NULL;
    goto out;
read_failed:
    st = samda_fail(err, SAMDA_EIO, "%s: read failed: %s", path, eno ? strerror(eno) : "file shrank");
    goto out;
prefixed:
    samda_error_prefix(err, "%s: ", path);
out:
    free(raw);
    free(head);
    close(fd);
    return st;
}

static samda_status build_fail(samda_error *err, const char *path, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static samda_status build_fail(samda_error *err, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    samda_vfail(err, SAMDA_EINVAL, fmt, ap);
    va_end(ap);
    if (path)
        samda_error_prefix(err, "writing .npy %s: ", path);
    else
        samda_error_prefix(err, "building a .npy header: ");
    return SAMDA_EINVAL;
}

/* The header of samda_npy_header_build; failures say "writing .npy PATH: ..." when path is given. */
static samda_status build_header(const char *path, samda_npy_dtype dt, int ndim, const uint64_t *shape, char *buf,
                                 size_t cap, size_t *len, samda_error *err)
{
    if ((unsigned)dt >= N_TYPES)
        return build_fail(err, path, "dtype %d unknown", (int)dt);
    if (ndim < 0 || ndim > SAMDA_NPY_MAX_NDIM)
        return build_fail(err, path, "ndim %d outside 0..%d", ndim, SAMDA_NPY_MAX_NDIM);
    if (ndim > 0 && !shape)
        return build_fail(err, path, "no shape given for ndim %d", ndim);
    uint64_t numel = 1;
    size_t es = npy_types[dt].size;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] && numel > UINT64_MAX / shape[i])
            return build_fail(err, path, "shape overflows the address space");
        numel *= shape[i];
    }
    if (numel > (uint64_t)INT64_MAX / es || numel * es > SIZE_MAX)
        return build_fail(err, path, "shape overflows the address space");
    char dict[SAMDA_NPY_HEADER_BUILD_CAP];
    char s[SAMDA_NPY_HEADER_BUILD_CAP - 64];
    int w = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }", npy_types[dt].descr,
                     shape_str(s, sizeof s, ndim, shape));
    if (w < 0 || (size_t)w >= sizeof dict)
        return build_fail(err, path, "header too long");
    /* magic(6) + version(2) + length(2) + dict + spaces + '\n' = a multiple of 64 (numpy aligns the
     * array so that it can be memory-mapped). */
    size_t n = (size_t)w, total = (10 + n + 1 + 63) / 64 * 64;
    if (total > cap)
        return build_fail(err, path, "%zu bytes needed, %zu available", total, cap);
    memcpy(buf, npy_magic, 6);
    buf[6] = 1;
    buf[7] = 0;
    buf[8] = (char)((total - 10) & 0xff);
    buf[9] = (char)((total - 10) >> 8);
    memcpy(buf + 10, dict, n);
    memset(buf + 10 + n, ' ', total - 10 - n - 1);
    buf[total - 1] = '\n';
    *len = total;
    return SAMDA_OK;
}

samda_status samda_npy_header_build(samda_npy_dtype dt, int ndim, const uint64_t *shape, char *buf, size_t cap,
                                    size_t *len, samda_error *err)
{
    return build_header(NULL, dt, ndim, shape, buf, cap, len, err);
}

samda_status samda_npy_save(const char *path, samda_npy_dtype dt, int ndim, const uint64_t *shape, const void *data,
                            samda_error *err)
{
    if (!path || !*path)
        return samda_fail(err, SAMDA_EINVAL, "writing .npy: no path given");
    char header[SAMDA_NPY_HEADER_BUILD_CAP];
    size_t hlen;
    samda_status s = build_header(path, dt, ndim, shape, header, sizeof header, &hlen, err);
    if (s != SAMDA_OK)
        return s;
    size_t es = npy_types[dt].size;
    uint64_t numel = 1;
    for (int i = 0; i < ndim; i++)
        numel *= shape[i];
    size_t bytes = (size_t)(numel * es);
    if (bytes > 0 && !data)
        return samda_fail(err, SAMDA_EINVAL, "writing .npy %s: no data for %" PRIu64 " elements", path, numel);

    samda_afile f;
    s = samda_afile_open(&f, path, 0, err);
    if (s != SAMDA_OK)
        return s;
    s = samda_afile_write(&f, header, hlen, err);
    if (s == SAMDA_OK && bytes > 0) {
        if (es == 1 || host_is_little()) {
            s = samda_afile_write(&f, data, bytes, err);
        } else { /* swap a chunk at a time: a large array is never copied whole */
            unsigned char chunk[65536];
            const unsigned char *src = data;
            size_t per = sizeof chunk / es * es;
            for (size_t off = 0; s == SAMDA_OK && off < bytes; off += per) {
                size_t len = bytes - off < per ? bytes - off : per;
                memcpy(chunk, src + off, len);
                byteswap_all(chunk, len / es, es);
                s = samda_afile_write(&f, chunk, len, err);
            }
        }
    }
    if (s != SAMDA_OK) {
        samda_afile_abort(&f);
        return s;
    }
    return samda_afile_commit(&f, err);
}
