/* Streaming multipart parser (RFC 2046 5.1.1) and Content-Type parameter reader (RFC 7231 3.1.1.1).
 *
 * The body is a sequence of delimiters "CRLF--boundary". The first one may come without its CRLF
 * (no preamble), so the parser starts as if it had just seen CRLF. Because a boundary cannot
 * contain CR (it is made of bchars), a partial match of the delimiter can only start at a CR:
 * after a mismatch the bytes matched so far are plain data and scanning resumes at the current
 * byte, with no backtracking. Matched-but-undecided bytes are never stored: they are a prefix of
 * the delimiter, which the parser already holds. */
#include "multipart.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum mp_state {
    ST_PREAMBLE,    /* before the first delimiter: discarded */
    ST_AFTER_DELIM, /* a delimiter was matched: "--" (close), padding or CRLF follows */
    ST_PADDING,     /* transport padding (LWSP) before CRLF */
    ST_DELIM_LF,    /* CR seen after a delimiter, LF expected */
    ST_CLOSE_DASH,  /* "-" seen after a delimiter, second "-" expected */
    ST_HEADERS,     /* collecting a part's header block */
    ST_BODY,        /* part body: emitted until the next delimiter */
    ST_EPILOGUE,    /* after the close delimiter: discarded */
    ST_DEAD         /* an error happened */
};

struct samda_multipart {
    samda_multipart_params p;
    samda_multipart_callbacks cb;
    enum mp_state st;
    char delim[4 + SAMDA_MULTIPART_BOUNDARY_MAX + 1]; /* "\r\n--" boundary */
    size_t dlen;
    size_t match;           /* bytes of delim matched so far */
    char *hbuf;             /* header block of the current part */
    size_t hlen;
    unsigned parts;         /* parts begun */
    samda_multipart_part cur;
    uint64_t body_bytes;    /* bytes of the current part's body */
    samda_error dead;       /* the error that killed the parser */
};

void samda_multipart_params_init(samda_multipart_params *p)
{
    p->max_header_bytes = 8192;
    p->max_parts = 10000;
    p->extra_bchars = NULL;
}

/* ---- Content-Type ------------------------------------------------------------------------- */

static int is_tchar(int c)
{
    return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static const char *skip_ows(const char *s)
{
    while (*s == ' ' || *s == '\t') s++;
    return s;
}

/* Read "type/subtype"; *s advanced past it. */
static samda_status read_media(const char **s, char *media, size_t size, samda_error *err)
{
    const char *p = skip_ows(*s);
    size_t n = 0;
    int slash = 0;
    while (is_tchar((unsigned char)*p) || (*p == '/' && !slash)) {
        if (*p == '/') slash = 1;
        if (n + 1 >= size) return samda_fail(err, SAMDA_EINVAL, "Content-Type: media type too long");
        media[n++] = (char)tolower((unsigned char)*p);
        p++;
    }
    media[n] = '\0';
    if (!slash || n < 3 || media[0] == '/' || media[n - 1] == '/')
        return samda_fail(err, SAMDA_EINVAL, "Content-Type: expected type/subtype");
    *s = p;
    return SAMDA_OK;
}

/* Read the next ";name=value" parameter; returns SAMDA_ENOENT at the end of the value. */
static samda_status next_param(const char **s, char *name, size_t nsize, char *val, size_t vsize,
                               samda_error *err)
{
    const char *p = skip_ows(*s);
    if (*p == '\0') return SAMDA_ENOENT;
    if (*p != ';') return samda_fail(err, SAMDA_EINVAL, "Content-Type: expected ';' before parameter");
    p = skip_ows(p + 1);
    if (*p == '\0') { *s = p; return SAMDA_ENOENT; } /* tolerate a trailing ';' */
    size_t n = 0;
    while (is_tchar((unsigned char)*p)) {
        if (n + 1 >= nsize) return samda_fail(err, SAMDA_EINVAL, "Content-Type: parameter name too long");
        name[n++] = *p++;
    }
    name[n] = '\0';
    if (n == 0 || *p != '=') return samda_fail(err, SAMDA_EINVAL, "Content-Type: malformed parameter");
    p++;
    size_t v = 0;
    bool too_long = false;
    if (*p == '"') {
        p++;
        for (;;) {
            unsigned char c = (unsigned char)*p;
            if (c == '\0') return samda_fail(err, SAMDA_EINVAL, "Content-Type: unterminated quoted string in parameter %s", name);
            if (c == '"') { p++; break; }
            if (c == '\\') {
                p++;
                c = (unsigned char)*p;
                if (c == '\0') return samda_fail(err, SAMDA_EINVAL, "Content-Type: unterminated quoted string in parameter %s", name);
            }
            if (c < 0x20 && c != '\t') return samda_fail(err, SAMDA_EINVAL, "Content-Type: control character in parameter %s", name);
            if (v + 1 < vsize) val[v++] = (char)c; else too_long = true;
            p++;
        }
    } else {
        /* '/' is not a tchar, but unquoted type=application/dicom is common: accept it. */
        while (is_tchar((unsigned char)*p) || *p == '/') {
            if (v + 1 < vsize) val[v++] = *p; else too_long = true;
            p++;
        }
        if (v == 0 && !too_long) return samda_fail(err, SAMDA_EINVAL, "Content-Type: empty value of parameter %s", name);
    }
    if (vsize) val[v < vsize ? v : vsize - 1] = '\0';
    *s = p;
    if (too_long) return samda_fail(err, SAMDA_ETOOBIG, "Content-Type: parameter %s too long", name);
    return SAMDA_OK;
}

samda_status samda_content_type_media(const char *value, char *media, size_t media_size,
                                      samda_error *err)
{
    if (!value) return samda_fail(err, SAMDA_EINVAL, "Content-Type missing");
    const char *s = value;
    samda_status st = read_media(&s, media, media_size, err);
    if (st != SAMDA_OK) return st;
    char name[64], val[256];
    for (;;) { /* validate the whole parameter list */
        st = next_param(&s, name, sizeof name, val, sizeof val, err);
        if (st == SAMDA_ENOENT) return SAMDA_OK;
        if (st != SAMDA_OK && st != SAMDA_ETOOBIG) return st;
    }
}

samda_status samda_content_type_param(const char *value, const char *name, char *out,
                                      size_t out_size, samda_error *err)
{
    if (!value) return samda_fail(err, SAMDA_EINVAL, "Content-Type missing");
    const char *s = value;
    char media[128], pname[64];
    samda_status st = read_media(&s, media, sizeof media, err);
    if (st != SAMDA_OK) return st;
    for (;;) {
        st = next_param(&s, pname, sizeof pname, out, out_size, err);
        if (st == SAMDA_ENOENT) return samda_fail(err, SAMDA_ENOENT, "Content-Type: no parameter %s", name);
        if (st == SAMDA_ETOOBIG && strcasecmp(pname, name) != 0) continue;
        if (st != SAMDA_OK) return st;
        if (strcasecmp(pname, name) == 0) return SAMDA_OK;
    }
}

static samda_status boundary_check(const char *b, const char *extra, samda_error *err)
{
    size_t n = b ? strlen(b) : 0;
    if (n < 1 || n > SAMDA_MULTIPART_BOUNDARY_MAX)
        return samda_fail(err, SAMDA_EINVAL, "multipart boundary must be 1 to 70 characters (RFC 2046), got %zu", n);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)b[i];
        if (!(isalnum(c) || strchr("'()+_,-./:=? ", c) || (extra && c && strchr(extra, c))))
            return samda_fail(err, SAMDA_EINVAL, "multipart boundary has a character outside RFC 2046 bchars at offset %zu", i);
    }
    if (b[n - 1] == ' ') return samda_fail(err, SAMDA_EINVAL, "multipart boundary must not end with a space (RFC 2046)");
    return SAMDA_OK;
}

samda_status samda_multipart_boundary_check(const char *b, samda_error *err) { return boundary_check(b, NULL, err); }

/* ---- parser -------------------------------------------------------------------------------- */

samda_multipart *samda_multipart_new(const char *boundary, const samda_multipart_params *p,
                                     const samda_multipart_callbacks *cb, samda_error *err)
{
    if (boundary_check(boundary, p ? p->extra_bchars : NULL, err) != SAMDA_OK) return NULL;
    samda_multipart *mp = calloc(1, sizeof *mp);
    if (!mp) { samda_fail(err, SAMDA_ENOMEM, "multipart parser: out of memory"); return NULL; }
    if (p) mp->p = *p; else samda_multipart_params_init(&mp->p);
    if (mp->p.max_header_bytes < 4) mp->p.max_header_bytes = 4;
    if (cb) mp->cb = *cb;
    mp->hbuf = malloc(mp->p.max_header_bytes);
    if (!mp->hbuf) {
        free(mp);
        samda_fail(err, SAMDA_ENOMEM, "multipart parser: out of memory");
        return NULL;
    }
    mp->dlen = (size_t)snprintf(mp->delim, sizeof mp->delim, "\r\n--%s", boundary);
    mp->st = ST_PREAMBLE;
    mp->match = 2; /* the body may open with "--boundary": act as if CRLF preceded it */
    return mp;
}

void samda_multipart_free(samda_multipart *mp)
{
    if (!mp) return;
    free(mp->hbuf);
    free(mp);
}

unsigned samda_multipart_parts(const samda_multipart *mp) { return mp ? mp->parts : 0; }

static samda_status die(samda_multipart *mp, samda_error *err, samda_status code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static samda_status die(samda_multipart *mp, samda_error *err, samda_status code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    samda_vfail(&mp->dead, code, fmt, ap);
    va_end(ap);
    mp->st = ST_DEAD;
    if (err) *err = mp->dead;
    return code;
}

/* A callback failed: keep its message, kill the parser. */
static samda_status die_cb(samda_multipart *mp, samda_error *err, samda_status st, const samda_error *cberr)
{
    mp->dead.code = st;
    if (cberr && cberr->message[0]) memcpy(mp->dead.message, cberr->message, sizeof mp->dead.message);
    else snprintf(mp->dead.message, sizeof mp->dead.message, "multipart part %u: %s", mp->cur.index + 1, samda_status_str(st));
    mp->st = ST_DEAD;
    if (err) *err = mp->dead;
    return st;
}

static samda_status emit(samda_multipart *mp, const char *data, size_t len, samda_error *err)
{
    if (len == 0 || mp->st != ST_BODY) return SAMDA_OK;
    mp->body_bytes += len;
    if (!mp->cb.part_data) return SAMDA_OK;
    samda_error e = {SAMDA_OK, ""};
    samda_status st = mp->cb.part_data(mp->cb.user, data, len, &e);
    return st == SAMDA_OK ? SAMDA_OK : die_cb(mp, err, st, &e);
}

/* Scan for the delimiter in preamble or body. Returns bytes consumed in *used; *found set when
 * the whole delimiter was matched (its last byte is the last one consumed). Data is emitted in
 * runs as long as the chunk allows: a partial match that fails inside the chunk it started in
 * stays part of the run, so the callback sees whole chunks rather than pieces between CRs. */
static samda_status scan(samda_multipart *mp, const char *d, size_t len, size_t *used, bool *found,
                         samda_error *err)
{
    const size_t none = (size_t)-1;
    size_t i = 0, run = 0;
    size_t mstart = none; /* where the current partial match began in d; none = in an earlier chunk */
    samda_status st;
    *found = false;
    while (i < len) {
        if (mp->match == 0) {
            const char *cr = memchr(d + i, '\r', len - i);
            if (!cr) { i = len; break; }
            i = (size_t)(cr - d);
            mstart = i++;
            mp->match = 1;
            continue;
        }
        if (d[i] == mp->delim[mp->match]) {
            mp->match++;
            i++;
            if (mp->match == mp->dlen) {
                if (mstart != none && (st = emit(mp, d + run, mstart - run, err)) != SAMDA_OK) return st;
                mp->match = 0;
                *found = true;
                *used = i;
                return SAMDA_OK;
            }
            continue;
        }
        /* Mismatch: what was matched is data (it holds no CR after its first byte, so no
         * delimiter can start inside it); look at d[i] afresh. Bytes held from an earlier chunk
         * are not in d: emit them from the delimiter, which they equal. */
        if (mstart == none) {
            if ((st = emit(mp, mp->delim, mp->match, err)) != SAMDA_OK) return st;
            run = i;
        }
        mp->match = 0;
        mstart = none;
    }
    size_t end = mp->match ? (mstart != none ? mstart : run) : len; /* hold back a partial match */
    if ((st = emit(mp, d + run, end - run, err)) != SAMDA_OK) return st;
    *used = len;
    return SAMDA_OK;
}

static samda_status parse_headers(samda_multipart *mp, samda_error *err)
{
    samda_multipart_part *pt = &mp->cur;
    char *s = mp->hbuf, *end = mp->hbuf + mp->hlen - 2; /* the block ends with the empty line */
    while (s < end) {
        char *eol = s;
        while (eol + 1 < end + 2 && !(eol[0] == '\r' && eol[1] == '\n')) eol++;
        if (memchr(s, '\0', (size_t)(eol - s)))
            return die(mp, err, SAMDA_EINVAL, "multipart part %u: NUL byte in headers", pt->index + 1);
        *eol = '\0';
        if (*s == ' ' || *s == '\t')
            return die(mp, err, SAMDA_EINVAL, "multipart part %u: folded header line (obsolete, RFC 7230 3.2.4)", pt->index + 1);
        char *colon = strchr(s, ':');
        if (!colon || colon == s)
            return die(mp, err, SAMDA_EINVAL, "multipart part %u: header line without a name and ':'", pt->index + 1);
        for (char *c = s; c < colon; c++)
            if (!is_tchar((unsigned char)*c))
                return die(mp, err, SAMDA_EINVAL, "multipart part %u: invalid character in header name", pt->index + 1);
        *colon = '\0';
        char *v = (char *)skip_ows(colon + 1);
        char *ve = v + strlen(v);
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) *--ve = '\0';
        for (char *c = v; c < ve; c++)
            if ((unsigned char)*c < 0x20 && *c != '\t')
                return die(mp, err, SAMDA_EINVAL, "multipart part %u: control character in header %s", pt->index + 1, s);
        if (strcasecmp(s, "Content-Type") == 0) {
            if ((size_t)(ve - v) >= sizeof pt->content_type)
                return die(mp, err, SAMDA_EINVAL, "multipart part %u: Content-Type longer than %zu bytes", pt->index + 1, sizeof pt->content_type - 1);
            memcpy(pt->content_type, v, (size_t)(ve - v) + 1);
        } else if (strcasecmp(s, "Content-Disposition") == 0) {
            if ((size_t)(ve - v) >= sizeof pt->disposition)
                return die(mp, err, SAMDA_EINVAL, "multipart part %u: Content-Disposition longer than %zu bytes", pt->index + 1, sizeof pt->disposition - 1);
            memcpy(pt->disposition, v, (size_t)(ve - v) + 1);
        } else if (strcasecmp(s, "Content-Length") == 0) {
            size_t n = (size_t)(ve - v);
            if (n == 0 || n > 18 || strspn(v, "0123456789") != n)
                return die(mp, err, SAMDA_EINVAL, "multipart part %u: Content-Length is not a number", pt->index + 1);
            pt->content_length = strtoll(v, NULL, 10);
        } /* Content-Location, Content-ID, Content-Description...: not used by samda */
        s = eol + 2;
    }
    return SAMDA_OK;
}

static samda_status begin_part(samda_multipart *mp, samda_error *err)
{
    if (mp->parts >= mp->p.max_parts)
        return die(mp, err, SAMDA_ETOOBIG, "multipart body has more than %u parts", mp->p.max_parts);
    memset(&mp->cur, 0, sizeof mp->cur);
    mp->cur.index = mp->parts++;
    mp->cur.content_length = -1;
    mp->body_bytes = 0;
    mp->hlen = 0;
    mp->st = ST_HEADERS;
    return SAMDA_OK;
}

static samda_status end_part(samda_multipart *mp, samda_error *err)
{
    if (mp->cur.content_length >= 0 && (uint64_t)mp->cur.content_length != mp->body_bytes)
        return die(mp, err, SAMDA_EINVAL, "multipart part %u: Content-Length %lld but body has %llu bytes",
                   mp->cur.index + 1, (long long)mp->cur.content_length, (unsigned long long)mp->body_bytes);
    if (mp->cb.part_end) {
        samda_error e = {SAMDA_OK, ""};
        samda_status st = mp->cb.part_end(mp->cb.user, &mp->cur, &e);
        if (st != SAMDA_OK) return die_cb(mp, err, st, &e);
    }
    return SAMDA_OK;
}

samda_status samda_multipart_feed(samda_multipart *mp, const void *data, size_t len, samda_error *err)
{
    const char *d = data;
    size_t i = 0;
    samda_status st;
    while (i < len) {
        switch (mp->st) {
        case ST_DEAD:
            if (err) *err = mp->dead;
            return mp->dead.code;
        case ST_PREAMBLE:
        case ST_BODY: {
            size_t used;
            bool found;
            if ((st = scan(mp, d + i, len - i, &used, &found, err)) != SAMDA_OK) return st;
            i += used;
            if (found) {
                if (mp->st == ST_BODY && (st = end_part(mp, err)) != SAMDA_OK) return st;
                mp->st = ST_AFTER_DELIM;
            }
            break;
        }
        case ST_AFTER_DELIM:
        case ST_PADDING: {
            char c = d[i++];
            if (c == '-' && mp->st == ST_AFTER_DELIM) mp->st = ST_CLOSE_DASH;
            else if (c == ' ' || c == '\t') mp->st = ST_PADDING;
            else if (c == '\r') mp->st = ST_DELIM_LF;
            else
                return die(mp, err, SAMDA_EINVAL, "multipart: delimiter --%s followed by neither CRLF nor \"--\" (after part %u)",
                           mp->delim + 4, mp->parts);
            break;
        }
        case ST_DELIM_LF:
            if (d[i++] != '\n')
                return die(mp, err, SAMDA_EINVAL, "multipart: CR without LF after delimiter (after part %u)", mp->parts);
            if ((st = begin_part(mp, err)) != SAMDA_OK) return st;
            break;
        case ST_CLOSE_DASH:
            if (d[i++] != '-')
                return die(mp, err, SAMDA_EINVAL, "multipart: malformed close delimiter after part %u", mp->parts);
            mp->st = ST_EPILOGUE;
            break;
        case ST_HEADERS: {
            /* Copy header bytes until the blank line; at most max_header_bytes. */
            while (i < len) {
                if (mp->hlen >= mp->p.max_header_bytes)
                    return die(mp, err, SAMDA_EINVAL, "multipart part %u: headers larger than %zu bytes",
                               mp->cur.index + 1, mp->p.max_header_bytes);
                mp->hbuf[mp->hlen++] = d[i++];
                size_t h = mp->hlen;
                bool done = (h == 2 && mp->hbuf[0] == '\r' && mp->hbuf[1] == '\n') ||
                            (h >= 4 && memcmp(mp->hbuf + h - 4, "\r\n\r\n", 4) == 0);
                if (done) {
                    if ((st = parse_headers(mp, err)) != SAMDA_OK) return st;
                    if (mp->cb.part_begin) {
                        samda_error e = {SAMDA_OK, ""};
                        st = mp->cb.part_begin(mp->cb.user, &mp->cur, &e);
                        if (st != SAMDA_OK) return die_cb(mp, err, st, &e);
                    }
                    mp->st = ST_BODY;
                    mp->match = 0;
                    break;
                }
            }
            break;
        }
        case ST_EPILOGUE:
            return SAMDA_OK;
        }
    }
    if (mp->st == ST_DEAD) {
        if (err) *err = mp->dead;
        return mp->dead.code;
    }
    return SAMDA_OK;
}

samda_status samda_multipart_finish(samda_multipart *mp, samda_error *err)
{
    switch (mp->st) {
    case ST_EPILOGUE:
        return SAMDA_OK;
    case ST_DEAD:
        if (err) *err = mp->dead;
        return mp->dead.code;
    case ST_PREAMBLE:
        return die(mp, err, SAMDA_EINVAL, "multipart body has no delimiter --%s", mp->delim + 4);
    default:
        return die(mp, err, SAMDA_EINVAL, "multipart body ends without the close delimiter --%s-- (in part %u)",
                   mp->delim + 4, mp->parts);
    }
}
