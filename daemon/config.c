/* The configuration table and the generic code that parses, validates, documents and reloads it.
 *
 * Each option is one row: section, key, type, default (as text, parsed by the same code as the
 * file), bounds, flags, doc. Nothing here applies a configuration: it only produces an immutable
 * samda_config that the daemon swaps in. Redis's config.c is the model (one table, generic
 * checks, line-numbered fatal errors); unlike redis the doc string lives in the row, and the
 * example file is generated from it (a unit test keeps deploy/samdad.conf.example in step). */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config_internal.h"
#include "dicom.h"
#include "route_expr.h"
#include "storage.h"
#include "url.h"


/* ---------- value parsing ---------- */

bool samda_parse_size(const char *s, uint64_t *out)
{
    if (!s) return false;
    while (isspace((unsigned char)*s)) s++;
    if (!isdigit((unsigned char)*s)) return false;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno) return false;
    while (isspace((unsigned char)*end)) end++;
    static const struct { const char *suffix; uint64_t mul; } units[] = {
        {"", 1}, {"b", 1}, {"k", 1000}, {"kb", 1000}, {"kib", 1024}, {"m", 1000000}, {"mb", 1000000},
        {"mib", 1048576}, {"g", 1000000000}, {"gb", 1000000000}, {"gib", 1073741824},
        {"t", 1000000000000ull}, {"tb", 1000000000000ull}, {"tib", 1099511627776ull},
    };
    for (size_t i = 0; i < sizeof units / sizeof *units; i++) {
        if (strcasecmp(end, units[i].suffix) == 0) {
            if (v > UINT64_MAX / units[i].mul) return false;
            *out = v * units[i].mul;
            return true;
        }
    }
    return false;
}

bool samda_parse_duration(const char *s, int64_t *out_ms)
{
    if (!s) return false;
    while (isspace((unsigned char)*s)) s++;
    if (!isdigit((unsigned char)*s)) return false;
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (errno || v < 0) return false;
    while (isspace((unsigned char)*end)) end++;
    double mul;
    if (*end == 0 || strcasecmp(end, "s") == 0) mul = 1000;
    else if (strcasecmp(end, "ms") == 0) mul = 1;
    else if (strcasecmp(end, "m") == 0 || strcasecmp(end, "min") == 0) mul = 60000;
    else if (strcasecmp(end, "h") == 0) mul = 3600000;
    else if (strcasecmp(end, "d") == 0) mul = 86400000;
    else return false;
    double ms = v * mul;
    if (ms > 9.0e15) return false;
    *out_ms = (int64_t)(ms + 0.5);
    return true;
}

bool samda_ae_title_is_valid(const char *s)
{
    if (!s) return false;
    size_t n = strlen(s);
    if (n == 0 || n > 16) return false;
    bool non_space = false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c > 0x7e || c == '\\') return false;
        if (c != ' ') non_space = true;
    }
    return non_space;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = 0;
    return s;
}

static void strlist_free(samda_strlist *l)
{
    for (size_t i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

/* ---------- the parse state ---------- */

typedef struct parse_state {
    samda_config *cfg;
    const char *file;     /* for messages */
    char *base_dir;       /* for relative paths; NULL = cwd */
    int line;             /* current line, counted by our reader */
    bool long_line;
    int max_line;         /* longest line inih takes, newline excluded (its buffer less two) */
    samda_error *err;
    bool failed;
    bool overriding;      /* applying --set: sections may be reopened, keys set again */
    int header_line;      /* line of the last [section] header read */
    int cur_header_line;  /* header line of the repeated section now open */
    /* which single-section keys were set, to catch a key set twice */
    int set_line[CONFIG_MAIN_MAX];
    /* the repeated section currently open, its element and keys set there */
    const section_kind *cur_kind;
    void *cur_elem;
    int cur_set_line[16];
    char cur_section[128];
    /* where each key of a repeated section was set, for cross_check's messages */
    struct key_at { const section_kind *kind; size_t elem, opt; int line; } *keys_at;
    size_t n_keys_at;
    /* headers of repeated sections as read: inih calls the handler for keys only, so a section
     * written without keys ("[site liver]", all defaults) is created from this list afterwards */
    struct header_at { char section[128]; int line; } *headers;
    size_t n_headers;
} parse_state;

static void perr(parse_state *ps, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void perr(parse_state *ps, const char *fmt, ...)
{
    if (ps->failed) return; /* report the first error: it is the one to fix */
    char msg[SAMDA_ERROR_MESSAGE_SIZE];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (ps->line > 0) samda_fail(ps->err, SAMDA_ECONFIG, "%s:%d: %s", ps->file, ps->line, msg);
    else samda_fail(ps->err, SAMDA_ECONFIG, "%s: %s", ps->file, msg);
    ps->failed = true;
}

/* ---------- destinations: DICOM C-STORE (ae_title, host) or STOW-RS (url) ---------- */

static bool check_dest_kind(parse_state *ps, const samda_dest_cfg *d)
{
    if (!d->url) {
        if (!d->ae_title || !d->host) {
            perr(ps, "[destination %s]: ae_title and host are required (or url, for STOW-RS)", d->name);
            return false;
        }
        if (d->auth || d->username || d->secret_file) {
            perr(ps, "[destination %s]: auth, username and secret_file are for STOW-RS destinations (url)", d->name);
            return false;
        }
        return true;
    }
    samda_url u;
    char why[160];
    if (!samda_url_parse(d->url, &u, why, sizeof why)) {
        perr(ps, "[destination %s] url: %s", d->name, why);
        return false;
    }
    if (d->ae_title || d->host || d->tls) {
        perr(ps, "[destination %s]: url makes it a STOW-RS destination: remove ae_title, host and tls (https in "
                 "the url is what turns TLS on)", d->name);
        return false;
    }
    if (d->tls_cert || d->tls_key) {
        perr(ps, "[destination %s]: tls_cert and tls_key are for DICOM TLS; a STOW-RS destination authenticates with "
                 "auth and secret_file", d->name);
        return false;
    }
    if (!u.https && (d->tls_ca_file || d->tls_ca_dir)) {
        perr(ps, "[destination %s]: tls_ca_file and tls_ca_dir verify an https url; this url is http", d->name);
        return false;
    }
    if (d->auth != SAMDA_CFG_AUTH_NONE && !d->secret_file) {
        perr(ps, "[destination %s]: auth = %s needs secret_file", d->name, d->auth == SAMDA_CFG_AUTH_BEARER ? "bearer" : "basic");
        return false;
    }
    if ((d->auth == SAMDA_CFG_AUTH_BASIC) != (d->username != NULL)) {
        perr(ps, "[destination %s]: username goes with auth = basic, and auth = basic needs it", d->name);
        return false;
    }
    return true;
}

static size_t levenshtein(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 40 || lb > 40) return 99;
    size_t prev[41], cur[41];
    for (size_t j = 0; j <= lb; j++) prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t sub = prev[j - 1] + (tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]));
            size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        memcpy(prev, cur, sizeof prev);
    }
    return prev[lb];
}

/* "did you mean" over a set of keys */
static const char *nearest_key(const char *key, const opt *opts, size_t n, const char *section)
{
    const char *best = NULL;
    size_t best_d = 3; /* suggest only close matches */
    for (size_t i = 0; i < n; i++) {
        if (section && strcmp(opts[i].section, section) != 0) continue;
        size_t d = levenshtein(key, opts[i].key);
        if (d < best_d) {
            best_d = d;
            best = opts[i].key;
        }
    }
    return best;
}

static char *resolve_path(parse_state *ps, const char *v)
{
    if (v[0] == '/' || !ps->base_dir) return strdup(v);
    size_t n = strlen(ps->base_dir) + 1 + strlen(v) + 1;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", ps->base_dir, v);
    return p;
}

/* Parse one value into its field. Messages name the section the user wrote. */
/* [http] public_url goes verbatim in front of every URL samdad hands out. */
bool samda_modality_is_segmentable(const char *m) { return m && (!strcmp(m, "CT") || !strcmp(m, "MR")); }

static bool public_url_ok(const char *v)
{
    size_t n = strlen(v), skip = strncmp(v, "https://", 8) == 0 ? 8 : strncmp(v, "http://", 7) == 0 ? 7 : 0;
    if (!skip || n > 200 || n == skip || v[skip] == '/') return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)v[i] <= 0x20 || (unsigned char)v[i] >= 0x7f || strchr("?#\\\"<>", v[i])) return false;
    return true;
}

/* Strings, paths (made absolute against the file's folder) and AE titles. */
static bool set_string(parse_state *ps, const opt *o, void *field, const char *section, char *v, const char *shown)
{
    if (*v == 0 && !(o->flags & F_OPTIONAL)) {
        perr(ps, "[%s] %s is empty: a value is required", section, o->key);
        return false;
    }
    if (o->type == T_STR && strcmp(o->key, "public_url") == 0 && *v && !public_url_ok(v)) {
        perr(ps, "[%s] %s = %s: must be an http:// or https:// URL naming a host, without spaces, query or "
                 "fragment, at most 200 characters", section, o->key, shown);
        return false;
    }
    if (o->type == T_AE && !samda_ae_title_is_valid(v)) {
        perr(ps, "[%s] %s = %s: not a valid AE title (1-16 printable ASCII characters, no backslash)",
             section, o->key, shown);
        return false;
    }
    char **dst = field;
    free(*dst);
    *dst = NULL;
    if (*v == 0) return true;
    *dst = o->type == T_PATH ? resolve_path(ps, v) : strdup(v);
    if (!*dst) {
        perr(ps, "[%s] %s: out of memory", section, o->key);
        return false;
    }
    return true;
}

/* An integer within the row's bounds. */
static bool set_int(parse_state *ps, const opt *o, void *field, const char *section, char *v, const char *shown)
{
    errno = 0;
    char *end;
    long long x = strtoll(v, &end, 10);
    if (*v == 0 || *end != 0 || errno) {
        perr(ps, "[%s] %s = %s: not an integer", section, o->key, shown);
        return false;
    }
    if (x < o->lo || x > o->hi) {
        perr(ps, "[%s] %s = %s: must be between %lld and %lld", section, o->key, shown, (long long)o->lo,
             (long long)o->hi);
        return false;
    }
    *(int64_t *)field = x;
    return true;
}

/* true/yes/on/1 or false/no/off/0. */
static bool set_bool(parse_state *ps, const opt *o, void *field, const char *section, char *v, const char *shown)
{
    bool b;
    if (!strcasecmp(v, "true") || !strcasecmp(v, "yes") || !strcasecmp(v, "on") || !strcmp(v, "1")) b = true;
    else if (!strcasecmp(v, "false") || !strcasecmp(v, "no") || !strcasecmp(v, "off") || !strcmp(v, "0")) b = false;
    else {
        perr(ps, "[%s] %s = %s: must be true or false", section, o->key, shown);
        return false;
    }
    *(bool *)field = b;
    return true;
}

/* A size with an optional unit (4096, 512MiB), within the row's textual bounds. */
static bool set_size(parse_state *ps, const opt *o, void *field, const char *section, char *v, const char *shown)
{
    uint64_t x;
    if (!samda_parse_size(v, &x)) {
        perr(ps, "[%s] %s = %s: not a size (examples: 4096, 512MiB, 2GiB)", section, o->key, shown);
        return false;
    }
    uint64_t lo = 0, hi = UINT64_MAX;
    if (o->bounds) {
        char b[64];
        snprintf(b, sizeof b, "%s", o->bounds);
        char *dots = strstr(b, "..");
        if (dots) {
            *dots = 0;
            samda_parse_size(b, &lo);
            samda_parse_size(dots + 2, &hi);
        }
    }
    if (x < lo || x > hi) {
        perr(ps, "[%s] %s = %s: must be between %s", section, o->key, shown, o->bounds);
        return false;
    }
    *(uint64_t *)field = x;
    return true;
}

/* A duration (30s, 2m, 500ms) in milliseconds, within bounds. */
static bool set_duration(parse_state *ps, const opt *o, void *field, const char *section, char *v, const char *shown)
{
    int64_t ms;
    if (!samda_parse_duration(v, &ms)) {
        perr(ps, "[%s] %s = %s: not a duration (examples: 30s, 2m, 1h, 500ms)", section, o->key, shown);
        return false;
    }
    if (ms < o->lo || ms > o->hi) {
        perr(ps, "[%s] %s = %s: must be between %s", section, o->key, shown, o->bounds);
        return false;
    }
    *(int64_t *)field = ms;
    return true;
}

/* One of the row's choices, stored as its index. */
static bool set_enum(parse_state *ps, const opt *o, void *field, const char *section, char *v, const char *shown)
{
    int idx = 0;
    const char *c = o->choices;
    while (c && *c) {
        const char *bar = strchr(c, '|');
        size_t len = bar ? (size_t)(bar - c) : strlen(c);
        if (strlen(v) == len && strncasecmp(v, c, len) == 0) {
            *(int64_t *)field = idx;
            return true;
        }
        idx++;
        c = bar ? bar + 1 : NULL;
    }
    perr(ps, "[%s] %s = %s: must be one of %s", section, o->key, shown, o->choices);
    return false;
}

/* Each item of a list whose row names choices is one of them, at most once. */
static bool list_in_choices(parse_state *ps, const opt *o, const char *section, const samda_strlist *l)
{
    for (size_t i = 0; i < l->n; i++) {
        size_t len = strlen(l->v[i]);
        bool known = false;
        for (const char *c = o->choices; c && *c && !known;) {
            const char *bar = strchr(c, '|');
            size_t n = bar ? (size_t)(bar - c) : strlen(c);
            known = n == len && strncasecmp(l->v[i], c, n) == 0;
            c = bar ? bar + 1 : NULL;
        }
        if (!known) {
            perr(ps, "[%s] %s = %s: must be among %s", section, o->key, l->v[i], o->choices);
            return false;
        }
        for (size_t j = 0; j < i; j++)
            if (!strcasecmp(l->v[i], l->v[j])) {
                perr(ps, "[%s] %s: %s is listed twice", section, o->key, l->v[i]);
                return false;
            }
    }
    return true;
}

/* A comma-separated list (at most 256 items). */
static bool set_list(parse_state *ps, const opt *o, void *field, const char *section, char *v)
{
    samda_strlist *l = field;
    strlist_free(l);
    char *save = NULL;
    for (char *tok = strtok_r(v, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        tok = trim(tok);
        if (!*tok) continue;
        if (l->n >= 256) {
            perr(ps, "[%s] %s: more than 256 items", section, o->key);
            return false;
        }
        char **nv = realloc(l->v, (l->n + 1) * sizeof *nv);
        if (!nv || !(nv[l->n] = strdup(tok))) {
            if (nv) l->v = nv;
            perr(ps, "[%s] %s: out of memory", section, o->key);
            return false;
        }
        l->v = nv;
        l->n++;
    }
    if (l->n == 0 && !(o->flags & F_OPTIONAL)) {
        perr(ps, "[%s] %s is empty: at least one value is required", section, o->key);
        return false;
    }
    if (o->choices && !list_in_choices(ps, o, section, l)) return false;
    /* A site that selects a modality samda cannot segment would wait for ever: refuse it now. */
    for (size_t i = 0; o->offset == S(modalities) && !strcmp(o->section, "site") && i < l->n; i++)
        if (!samda_modality_is_segmentable(l->v[i])) {
            perr(ps, "[%s] %s = %s: %s is not a modality samda segments (CT, MR)", section, o->key, l->v[i],
                 l->v[i]);
            return false;
        }
    return true;
}

/* Parse raw (trimmed, at most 1023 characters) as o's type and store it in base; false with a
 * line-numbered error naming section and key otherwise (sensitive values shown as ***). */
static bool set_value(parse_state *ps, const opt *o, void *base, const char *section, const char *raw)
{
    char buf[1024];
    if (strlen(raw) >= sizeof buf) {
        perr(ps, "[%s] %s: value longer than %zu characters", section, o->key, sizeof buf - 1);
        return false;
    }
    strcpy(buf, raw);
    char *v = trim(buf);
    const char *shown = (o->flags & F_SENSITIVE) ? "***" : v;
    void *field = (char *)base + o->offset;
    switch (o->type) {
    case T_STR:
    case T_PATH:
    case T_AE: return set_string(ps, o, field, section, v, shown);
    case T_INT: return set_int(ps, o, field, section, v, shown);
    case T_BOOL: return set_bool(ps, o, field, section, v, shown);
    case T_SIZE: return set_size(ps, o, field, section, v, shown);
    case T_DURATION: return set_duration(ps, o, field, section, v, shown);
    case T_ENUM: return set_enum(ps, o, field, section, v, shown);
    case T_LIST: return set_list(ps, o, field, section, v);
    }
    return false;
}

static const section_kind *find_kind(const char *section, const char **name)
{
    for (size_t k = 0; k < config_n_repeated; k++) {
        size_t n = strlen(config_repeated[k].kind);
        if (strncmp(section, config_repeated[k].kind, n) == 0 && (section[n] == ' ' || section[n] == '\t')) {
            const char *nm = section + n;
            while (*nm == ' ' || *nm == '\t') nm++;
            *name = nm;
            return &config_repeated[k];
        }
    }
    return NULL;
}

static bool section_name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 63) return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)name[i]) && name[i] != '-' && name[i] != '_' && name[i] != '.') return false;
    return true;
}

/* The name of "[kind name]" is one section_name_ok accepts, else the error at the current line. */
static bool section_name_checked(parse_state *ps, const char *section, const char *name)
{
    if (section_name_ok(name)) return true;
    perr(ps, "[%s]: name \"%s\" must be 1-63 letters, digits, '-', '_' or '.'", section, name);
    return false;
}

static bool apply_defaults(parse_state *ps, const opt *opts, size_t n, void *base, const char *section_shown)
{
    for (size_t i = 0; i < n; i++)
        if (opts[i].def && !set_value(ps, &opts[i], base, section_shown ? section_shown : opts[i].section, opts[i].def))
            return false;
    return true;
}

/* Open (or find) the element for "[kind name]". */
static void *open_elem(parse_state *ps, const section_kind *k, const char *name)
{
    size_t *count = (size_t *)((char *)ps->cfg + k->count_off);
    for (size_t i = 0; i < *count; i++) {
        void *e = elem_at(ps->cfg, k, i);
        if (strcmp(*(char **)((char *)e + k->name_off), name) == 0) {
            if (ps->overriding) return e;
            ps->line = ps->header_line;
            perr(ps, "[%s %s] defined twice (first at line %d)", k->kind, name, *(int *)((char *)e + k->line_off));
            return NULL;
        }
    }
    if (*count >= 1024) {
        perr(ps, "more than 1024 [%s] sections", k->kind);
        return NULL;
    }
    char **arr = (char **)((char *)ps->cfg + k->arr_off);
    char *na = realloc(*arr, (*count + 1) * k->elem_size);
    if (!na) {
        perr(ps, "out of memory");
        return NULL;
    }
    *arr = na;
    void *e = na + *count * k->elem_size;
    memset(e, 0, k->elem_size);
    (*count)++;
    *(char **)((char *)e + k->name_off) = strdup(name);
    *(int *)((char *)e + k->line_off) = ps->overriding ? 0 : ps->header_line;
    char shown[128];
    snprintf(shown, sizeof shown, "%s %s", k->kind, name);
    if (!apply_defaults(ps, k->opts, k->n_opts, e, shown)) return NULL;
    return e;
}

/* Remember the line of a key of the repeated section now open (no line when memory is short: the
 * messages then give the section's line). */
static void note_key_line(parse_state *ps, const section_kind *k, size_t opt_index)
{
    if (!ps->line) return;
    struct key_at *n = realloc(ps->keys_at, (ps->n_keys_at + 1) * sizeof *n);
    if (!n) return;
    ps->keys_at = n;
    char *arr = *(char **)((char *)ps->cfg + k->arr_off);
    n[ps->n_keys_at++] = (struct key_at){k, (size_t)((char *)ps->cur_elem - arr) / k->elem_size, opt_index, ps->line};
}

/* The line where key was set in the i-th element of kind k, else the section's line. */
static int key_line(const parse_state *ps, const section_kind *k, size_t elem, const char *key)
{
    for (size_t j = ps->n_keys_at; j-- > 0;)
        if (ps->keys_at[j].kind == k && ps->keys_at[j].elem == elem && !strcmp(k->opts[ps->keys_at[j].opt].key, key))
            return ps->keys_at[j].line;
    return *(int *)((char *)elem_at(ps->cfg, k, elem) + k->line_off);
}

static int on_item(void *user, const char *section, const char *key, const char *value)
{
    parse_state *ps = user;
    if (ps->failed) return 0;
    if (ps->long_line) {
        perr(ps, "line longer than %d characters (inih's limit): shorten it", ps->max_line);
        return 0;
    }
    const char *name = NULL;
    const section_kind *k = find_kind(section, &name);
    if (k) {
        if (!section_name_checked(ps, section, name)) return 0;
        if (ps->cur_kind != k || strcmp(ps->cur_section, section) != 0 ||
            (!ps->overriding && ps->header_line != ps->cur_header_line)) {
            ps->cur_elem = open_elem(ps, k, name);
            if (!ps->cur_elem) return 0;
            ps->cur_header_line = ps->header_line;
            ps->cur_kind = k;
            snprintf(ps->cur_section, sizeof ps->cur_section, "%s", section);
            memset(ps->cur_set_line, 0, sizeof ps->cur_set_line);
        }
        for (size_t i = 0; i < k->n_opts; i++) {
            if (strcmp(k->opts[i].key, key) != 0) continue;
            if (ps->cur_set_line[i] && !ps->overriding) {
                perr(ps, "[%s] %s set twice (first at line %d)", section, key, ps->cur_set_line[i]);
                return 0;
            }
            ps->cur_set_line[i] = ps->line;
            note_key_line(ps, k, i);
            return set_value(ps, &k->opts[i], ps->cur_elem, section, value) ? 1 : 0;
        }
        const char *near = nearest_key(key, k->opts, k->n_opts, NULL);
        if (near) perr(ps, "[%s] %s: unknown key (did you mean '%s'?)", section, key, near);
        else perr(ps, "[%s] %s: unknown key", section, key);
        return 0;
    }
    ps->cur_kind = NULL;
    bool section_known = false;
    for (size_t i = 0; i < config_n_main; i++) {
        if (strcmp(config_main_opts[i].section, section) != 0) continue;
        section_known = true;
        if (strcmp(config_main_opts[i].key, key) != 0) continue;
        if (ps->set_line[i] && !ps->overriding) {
            perr(ps, "[%s] %s set twice (first at line %d)", section, key, ps->set_line[i]);
            return 0;
        }
        ps->set_line[i] = ps->line;
        return set_value(ps, &config_main_opts[i], ps->cfg, section, value) ? 1 : 0;
    }
    if (!section_known) {
        if (section[0] == 0) perr(ps, "%s: key outside of any section", key);
        else perr(ps, "[%s]: unknown section (known: daemon, dicom, http, storage, model, scheduler, routing, "
                      "site NAME, peer NAME, destination NAME, rule NAME)", section);
        return 0;
    }
    const char *near = nearest_key(key, config_main_opts, config_n_main, section);
    if (!near) near = nearest_key(key, config_main_opts, config_n_main, NULL);
    if (near) perr(ps, "[%s] %s: unknown key (did you mean '%s'?)", section, key, near);
    else perr(ps, "[%s] %s: unknown key", section, key);
    return 0;
}

/* Remember a "[kind name]" header (text after the '['), for sections written without keys. */
static void note_header(parse_state *ps, const char *t)
{
    const char *end = strchr(t, ']');
    if (!end || (size_t)(end - t) >= sizeof ps->headers->section) return;
    char section[128];
    memcpy(section, t, (size_t)(end - t));
    section[end - t] = 0;
    char *sec = trim(section);
    const char *name;
    if (!find_kind(sec, &name)) return;
    struct header_at *n = realloc(ps->headers, (ps->n_headers + 1) * sizeof *n);
    if (!n) return;
    ps->headers = n;
    snprintf(n[ps->n_headers].section, sizeof n->section, "%s", sec);
    n[ps->n_headers++].line = ps->line;
}

/* Create the repeated sections the file names without any key (with the table's defaults). */
static bool open_empty_sections(parse_state *ps)
{
    for (size_t i = 0; i < ps->n_headers; i++) {
        const char *name;
        const section_kind *k = find_kind(ps->headers[i].section, &name);
        if (!k) continue;
        ps->line = ps->headers[i].line;
        if (!section_name_checked(ps, ps->headers[i].section, name)) return false;
        size_t *count = (size_t *)((char *)ps->cfg + k->count_off);
        bool have = false;
        for (size_t j = 0; j < *count && !have; j++)
            have = !strcmp(*(char **)((char *)elem_at(ps->cfg, k, j) + k->name_off), name);
        if (have) continue;
        ps->header_line = ps->headers[i].line;
        if (!open_elem(ps, k, name)) return false;
    }
    return true;
}

/* Our own line reader: it counts lines for messages (Debian's inih is built without
 * INI_HANDLER_LINENO) and refuses lines inih would silently split. */
typedef struct reader_state {
    FILE *f;
    parse_state *ps;
} reader_state;

static char *read_line(char *str, int num, void *stream)
{
    reader_state *rs = stream;
    if (!fgets(str, num, rs->f)) return NULL;
    rs->ps->line++;
    rs->ps->max_line = num - 2;
    const char *t = str;
    while (*t == ' ' || *t == '\t') t++;
    if (*t == '[') {
        rs->ps->header_line = rs->ps->line;
        note_header(rs->ps, t + 1);
    }
    size_t n = strlen(str);
    if (n == (size_t)num - 1 && str[n - 1] != '\n' && !feof(rs->f)) {
        rs->ps->long_line = true;
        int c;
        while ((c = fgetc(rs->f)) != EOF && c != '\n') {
        }
    }
    return str;
}

static void config_free(samda_config *c)
{
    if (!c) return;
    for (size_t i = 0; i < config_n_main; i++) {
        const opt *o = &config_main_opts[i];
        if (o->type == T_STR || o->type == T_PATH || o->type == T_AE) free(*(char **)((char *)c + o->offset));
        else if (o->type == T_LIST) strlist_free((samda_strlist *)((char *)c + o->offset));
    }
    for (size_t k = 0; k < config_n_repeated; k++) {
        const section_kind *sk = &config_repeated[k];
        size_t n = *(size_t *)((char *)c + sk->count_off);
        for (size_t i = 0; i < n; i++) {
            char *e = elem_at(c, sk, i);
            free(*(char **)(e + sk->name_off));
            for (size_t j = 0; j < sk->n_opts; j++) {
                const opt *o = &sk->opts[j];
                if (o->type == T_LIST) strlist_free((samda_strlist *)(e + o->offset));
                else if (o->type == T_STR || o->type == T_PATH || o->type == T_AE) free(*(char **)(e + o->offset));
            }
        }
        free(*(char **)((char *)c + sk->arr_off));
    }
    free(c->source);
    free(c);
}

static int main_line(const parse_state *ps, const char *section, const char *key)
{
    for (size_t i = 0; i < config_n_main; i++)
        if (!strcmp(config_main_opts[i].section, section) && !strcmp(config_main_opts[i].key, key))
            return ps->set_line[i];
    return 0;
}

/* The DICOM TLS keys of [dicom] (the listener) or of one [destination] (a client), for tls_check. */
typedef struct tls_keys {
    const char *section;  /* as the user wrote it: "dicom", "destination pacs" */
    bool on, is_server;
    const char *path[4];  /* tls_cert, tls_key, tls_ca_file, tls_ca_dir; NULL = unset */
    int line[5];          /* where each was set, then the line of tls itself */
} tls_keys;

static const char *const tls_key_names[4] = {"tls_cert", "tls_key", "tls_ca_file", "tls_ca_dir"};

/* Complete, readable, and loadable together: samda_dicom_tls_check loads the files as the listener
 * or the exporter will (key matches certificate, CA parses), so a mistake is reported here, at the
 * key's line, rather than at the first association. Messages give paths, never file content. */
static bool tls_check(parse_state *ps, const tls_keys *t)
{
    if (!t->on) {
        for (int i = 0; i < 4; i++)
            if (t->path[i]) {
                ps->line = t->line[i];
                perr(ps, "[%s] %s = %s: tls is not true, so it would not be used: set tls = true or remove %s",
                     t->section, tls_key_names[i], t->path[i], tls_key_names[i]);
                return false;
            }
        return true;
    }
    ps->line = t->line[4];
    if (t->is_server && (!t->path[0] || !t->path[1])) {
        perr(ps, "[%s] tls = true: needs tls_cert and tls_key (the certificate and private key the listener presents)",
             t->section);
        return false;
    }
    if (!t->path[2] && !t->path[3]) {
        perr(ps, "[%s] tls = true: needs tls_ca_file or tls_ca_dir (the CA certificates trusted to sign the %s)",
             t->section, t->is_server ? "senders' client certificates" : "destination's certificate");
        return false;
    }
    if (!t->path[0] != !t->path[1]) {
        int i = t->path[0] ? 0 : 1;
        ps->line = t->line[i];
        perr(ps, "[%s] %s = %s: %s must be set with it (a certificate and its private key go together)", t->section,
             tls_key_names[i], t->path[i], tls_key_names[1 - i]);
        return false;
    }
    for (int i = 0; i < 4; i++) {
        if (!t->path[i]) continue;
        ps->line = t->line[i];
        struct stat sb;
        bool dir = i == 3;
        if (stat(t->path[i], &sb) == 0 && (dir ? !S_ISDIR(sb.st_mode) : !S_ISREG(sb.st_mode))) {
            perr(ps, "[%s] %s = %s: not a %s", t->section, tls_key_names[i], t->path[i], dir ? "directory" : "file");
            return false;
        }
        if (access(t->path[i], dir ? R_OK | X_OK : R_OK) != 0) {
            perr(ps, "[%s] %s = %s: cannot be read: %s", t->section, tls_key_names[i], t->path[i], strerror(errno));
            return false;
        }
    }
    samda_dicom_tls d;
    samda_dicom_tls_init(&d);
    d.certificate_file = t->path[0];
    d.private_key_file = t->path[1];
    d.ca_file = t->path[2];
    d.ca_dir = t->path[3];
    samda_error e;
    if (samda_dicom_tls_check(&d, t->is_server, &e) == SAMDA_OK) return true;
    /* the key whose file the message names first is the one to fix (a key that does not match its
     * certificate: the message names the key first) */
    int at = 4;
    const char *first = NULL;
    for (int i = 0; i < 4; i++) {
        const char *hit = t->path[i] ? strstr(e.message, t->path[i]) : NULL;
        if (hit && (!first || hit < first)) {
            first = hit;
            at = i;
        }
    }
    const char *rule = strncmp(e.message, "DICOM TLS: ", 11) == 0 ? e.message + 11 : e.message;
    ps->line = t->line[at];
    if (at == 4) perr(ps, "[%s] tls = true: %s", t->section, rule);
    else perr(ps, "[%s] %s = %s: %s", t->section, tls_key_names[at], t->path[at], rule);
    return false;
}

/* One expression of a rule: parsed (never evaluated) so that a mistake is reported at its line
 * with its column. */
static bool check_expr(parse_state *ps, const char *rule, const char *key, const char *text)
{
    char why[480];
    samda_route_expr *e = samda_route_expr_parse(text, why, sizeof why);
    if (e) {
        samda_route_expr_free(e);
        return true;
    }
    perr(ps, "[rule %s] %s = %s: %s", rule, key, text, why);
    return false;
}

/* [routing] and the [rule] sections: expressions parse, names refer to sections that exist. */
static bool check_routing(parse_state *ps)
{
    samda_config *c = ps->cfg;
    int a, b;
    if (!samda_parse_window(c->route_off_peak, &a, &b)) {
        ps->line = main_line(ps, "routing", "off_peak");
        perr(ps, "[routing] off_peak = %s: must be a local-time window HH:MM-HH:MM, e.g. 20:00-06:00",
             c->route_off_peak ? c->route_off_peak : "");
        return false;
    }
    const section_kind *k = &config_repeated[CONFIG_KIND_RULE];
    for (size_t i = 0; i < c->n_rules; i++) {
        samda_rule_cfg *r = &c->rules[i];
        ps->line = r->line;
        if (!r->match) {
            perr(ps, "[rule %s]: match is required (for example match = Modality = CT)", r->name);
            return false;
        }
        ps->line = key_line(ps, k, i, "match");
        if (!check_expr(ps, r->name, "match", r->match)) return false;
        if (r->requires) {
            ps->line = key_line(ps, k, i, "requires");
            samda_route_part parts[SAMDA_ROUTE_MAX_PARTS];
            size_t n = samda_route_expr_split(r->requires, parts, SAMDA_ROUTE_MAX_PARTS);
            if (n == 0 || n > SAMDA_ROUTE_MAX_PARTS) {
                perr(ps, "[rule %s] requires: between 1 and %d expressions, separated by commas", r->name,
                     SAMDA_ROUTE_MAX_PARTS);
                return false;
            }
            for (size_t j = 0; j < n; j++) {
                char text[1024];
                snprintf(text, sizeof text, "%.*s", (int)parts[j].len, r->requires + parts[j].start);
                if (!check_expr(ps, r->name, "requires", text)) return false;
            }
        }
        if (r->site && !samda_config_site(c, r->site)) {
            ps->line = key_line(ps, k, i, "site");
            perr(ps, "[rule %s] site = %s: no [site %s] section", r->name, r->site, r->site);
            return false;
        }
        for (size_t j = 0; j < r->destinations.n; j++)
            if (!samda_config_dest(c, r->destinations.v[j])) {
                ps->line = key_line(ps, k, i, "destinations");
                perr(ps, "[rule %s] destinations: no [destination %s] section", r->name, r->destinations.v[j]);
                return false;
            }
        unsigned out = samda_outputs_of(&r->outputs);
        if (out & SAMDA_OUTPUT_SR && !(out & SAMDA_OUTPUT_SEG)) {
            ps->line = key_line(ps, k, i, "outputs");
            perr(ps, "[rule %s] outputs: sr references the DICOM-SEG's segments, so it needs seg too "
                 "(outputs = seg,sr)", r->name);
            return false;
        }
        for (size_t j = 0; j < r->labels.n; j++)
            if (!section_name_ok(r->labels.v[j])) {
                ps->line = key_line(ps, k, i, "labels");
                perr(ps, "[rule %s] labels: '%s' is not a label name (1-63 letters, digits, '-', '_' or '.')",
                     r->name, r->labels.v[j]);
                return false;
            }
    }
    return true;
}

/* Checks across keys and sections, after everything is read. */
static bool cross_check(parse_state *ps)
{
    samda_config *c = ps->cfg;
    ps->line = 0;
    if ((c->http_tls_cert == NULL) != (c->http_tls_key == NULL)) {
        perr(ps, "[http] tls_cert and tls_key must be set together");
        return false;
    }
    if (c->cluster_node && !samda_node_name_is_valid(c->cluster_node)) {
        ps->line = main_line(ps, "cluster", "node");
        perr(ps, "[cluster] node = %s: a node name is 1..64 characters of A-Z a-z 0-9 . _ -", c->cluster_node);
        return false;
    }
    if (c->storage_index == SAMDA_CFG_INDEX_POSTGRESQL && !c->storage_postgresql) {
        ps->line = main_line(ps, "storage", "index");
        perr(ps, "[storage] index = postgresql needs postgresql, the libpq connection string of the database "
             "(e.g. postgresql = host=db.example dbname=samda user=samda)");
        return false;
    }
    for (size_t i = 0; i < c->n_peers; i++) {
        samda_peer_cfg *p = &c->peers[i];
        ps->line = p->line;
        if (!p->ae_title) {
            perr(ps, "[peer %s]: ae_title is required", p->name);
            return false;
        }
        if (p->site && !samda_config_site(c, p->site)) {
            perr(ps, "[peer %s] site = %s: no [site %s] section", p->name, p->site, p->site);
            return false;
        }
    }
    for (size_t i = 0; i < c->n_dests; i++) {
        samda_dest_cfg *d = &c->dests[i];
        ps->line = d->line;
        if (!check_dest_kind(ps, d)) return false;
        if (d->url) continue; /* STOW-RS: its TLS keys were checked by check_dest_kind */
        char section[128];
        snprintf(section, sizeof section, "destination %s", d->name);
        const section_kind *k = &config_repeated[CONFIG_KIND_DEST];
        tls_keys t = {section, d->tls, false, {d->tls_cert, d->tls_key, d->tls_ca_file, d->tls_ca_dir},
                      {key_line(ps, k, i, "tls_cert"), key_line(ps, k, i, "tls_key"), key_line(ps, k, i, "tls_ca_file"),
                       key_line(ps, k, i, "tls_ca_dir"), key_line(ps, k, i, "tls")}};
        if (!tls_check(ps, &t)) return false;
    }
    tls_keys t = {"dicom", c->dicom_tls, true,
                  {c->dicom_tls_cert, c->dicom_tls_key, c->dicom_tls_ca_file, c->dicom_tls_ca_dir},
                  {main_line(ps, "dicom", "tls_cert"), main_line(ps, "dicom", "tls_key"),
                   main_line(ps, "dicom", "tls_ca_file"), main_line(ps, "dicom", "tls_ca_dir"),
                   main_line(ps, "dicom", "tls")}};
    if (!tls_check(ps, &t)) return false;
    for (size_t i = 0; i < c->n_sites; i++) {
        samda_site_cfg *s = &c->sites[i];
        ps->line = s->line;
        for (size_t j = 0; j < s->destinations.n; j++)
            if (!samda_config_dest(c, s->destinations.v[j])) {
                perr(ps, "[site %s] destinations: no [destination %s] section", s->name, s->destinations.v[j]);
                return false;
            }
        for (size_t j = 0; j < s->called_ae.n; j++)
            if (!samda_ae_title_is_valid(s->called_ae.v[j])) {
                perr(ps, "[site %s] called_ae: '%s' is not a valid AE title", s->name, s->called_ae.v[j]);
                return false;
            }
        for (size_t j = 0; j < s->calling_ae.n; j++)
            if (!samda_ae_title_is_valid(s->calling_ae.v[j])) {
                perr(ps, "[site %s] calling_ae: '%s' is not a valid AE title", s->name, s->calling_ae.v[j]);
                return false;
            }
        if (samda_site_outputs(s) & SAMDA_OUTPUT_SR && !(samda_site_outputs(s) & SAMDA_OUTPUT_SEG)) {
            ps->line = key_line(ps, &config_repeated[CONFIG_KIND_SITE], i, "outputs");
            perr(ps, "[site %s] outputs: sr references the DICOM-SEG's segments, so it needs seg too "
                 "(outputs = seg,sr)", s->name);
            return false;
        }
        if (s->series_idle_ms > s->max_wait_ms) {
            perr(ps, "[site %s] series_idle must not exceed max_wait", s->name);
            return false;
        }
    }
    return check_routing(ps);
}

/* "section.key=value" from the command line; site keys as "site.NAME.key=value". */
static bool apply_override(parse_state *ps, const char *ov)
{
    char buf[1200];
    if (strlen(ov) >= sizeof buf) {
        perr(ps, "--set %.40s...: too long", ov);
        return false;
    }
    strcpy(buf, ov);
    char *eq = strchr(buf, '=');
    char *dot = strchr(buf, '.');
    if (!eq || !dot || dot > eq) {
        perr(ps, "--set %s: expected section.key=value (for example dicom.port=11113)", ov);
        return false;
    }
    *eq = 0;
    char *value = eq + 1;
    char *last_dot = strrchr(buf, '.');
    *last_dot = 0;
    char *key = last_dot + 1;
    char section[sizeof buf];
    memcpy(section, buf, strlen(buf) + 1);
    char *inner = strchr(section, '.');
    if (inner) *inner = ' '; /* site.NAME -> "site NAME" */
    ps->cur_kind = NULL;
    return on_item(ps, section, key, value) == 1;
}

samda_config *samda_config_load(const char *path, const char *const *overrides, samda_error *err)
{
    samda_config *c = calloc(1, sizeof *c);
    if (!c) {
        samda_fail(err, SAMDA_ENOMEM, "loading configuration: out of memory");
        return NULL;
    }
    c->refs_ = 1;
    parse_state ps = {.cfg = c, .file = path ? path : "(defaults)", .err = err};
    if (!apply_defaults(&ps, config_main_opts, config_n_main, c, NULL)) goto fail;

    if (path) {
        FILE *f = fopen(path, "r");
        if (!f) {
            samda_fail(err, errno == ENOENT ? SAMDA_ENOENT : SAMDA_ECONFIG, "cannot open configuration %s: %s%s",
                       path, strerror(errno), errno == ENOENT ? " (create it from deploy/samdad.conf.example)" : "");
            config_free(c);
            return NULL;
        }
        const char *slash = strrchr(path, '/');
        if (slash) ps.base_dir = strndup(path, (size_t)(slash - path) + (slash == path));
        reader_state rs = {f, &ps};
        int rc = ini_parse_stream(read_line, &rs, on_item, &ps);
        fclose(f);
        if (!ps.failed && rc > 0) {
            ps.line = rc;
            perr(&ps, "syntax error (expected [section] or key = value)");
        }
        if (!ps.failed && ps.long_line)
            perr(&ps, "line longer than %d characters (inih's limit): shorten it", ps.max_line);
        if (!ps.failed) open_empty_sections(&ps);
        if (ps.failed) goto fail;
    }
    ps.line = 0;
    ps.file = "command line";
    ps.overriding = true;
    for (size_t i = 0; overrides && overrides[i]; i++)
        if (!apply_override(&ps, overrides[i])) goto fail;
    ps.file = path ? path : "(defaults)";
    /* Unmapped associations belong to the site "default": it exists, with the table's defaults,
     * whether or not the file names it. */
    if (!samda_config_site(c, "default")) {
        ps.overriding = true;
        ps.line = 0;
        if (!open_elem(&ps, &config_repeated[CONFIG_KIND_SITE], "default")) goto fail;
    }
    if (!cross_check(&ps)) goto fail;
    c->source = strdup(path ? path : "(defaults)");
    free(ps.base_dir);
    free(ps.keys_at);
    free(ps.headers);
    return c;
fail:
    free(ps.base_dir);
    free(ps.keys_at);
    free(ps.headers);
    config_free(c);
    return NULL;
}

samda_config *samda_config_ref(samda_config *c)
{
    if (c) __atomic_add_fetch(&c->refs_, 1, __ATOMIC_RELAXED);
    return c;
}

void samda_config_unref(samda_config *c)
{
    if (c && __atomic_sub_fetch(&c->refs_, 1, __ATOMIC_ACQ_REL) == 0) config_free(c);
}

static bool str_eq(const char *a, const char *b) { return (!a && !b) || (a && b && strcmp(a, b) == 0); }

static bool strlist_eq(const samda_strlist *a, const samda_strlist *b)
{
    if (a->n != b->n) return false;
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->v[i], b->v[i]) != 0) return false;
    return true;
}

/* dst becomes a copy of src (dst's old items freed); false when out of memory (dst then empty). */
static bool strlist_assign(samda_strlist *dst, const samda_strlist *src)
{
    strlist_free(dst);
    if (!src->n) return true;
    dst->v = calloc(src->n, sizeof *dst->v);
    if (!dst->v) return false;
    for (size_t i = 0; i < src->n; i++) {
        if (!(dst->v[i] = strdup(src->v[i]))) {
            strlist_free(dst);
            return false;
        }
        dst->n = i + 1;
    }
    return true;
}

samda_status samda_config_merge_reload(samda_config *next, const samda_config *cur,
                                       void (*note)(void *, const char *, const char *), void *ctx,
                                       samda_error *err)
{
    for (size_t i = 0; i < config_n_main; i++) {
        const opt *o = &config_main_opts[i];
        if (!(o->flags & F_RESTART)) continue;
        void *dst = (char *)next + o->offset;
        const void *src = (const char *)cur + o->offset;
        bool differ;
        switch (o->type) {
        case T_STR:
        case T_PATH:
        case T_AE:
            differ = !str_eq(*(char **)dst, *(char *const *)src);
            if (differ) {
                char *copy = NULL;
                if (*(char *const *)src && !(copy = strdup(*(char *const *)src)))
                    return samda_fail(err, SAMDA_ENOMEM, "reloading configuration: out of memory");
                free(*(char **)dst);
                *(char **)dst = copy;
            }
            break;
        case T_LIST:
            differ = !strlist_eq(dst, src);
            if (differ && !strlist_assign(dst, src))
                return samda_fail(err, SAMDA_ENOMEM, "reloading configuration: out of memory");
            break;
        case T_BOOL:
            differ = *(bool *)dst != *(const bool *)src;
            *(bool *)dst = *(const bool *)src;
            break;
        default: /* every numeric type is 8 bytes wide */
            differ = memcmp(dst, src, 8) != 0;
            memcpy(dst, src, 8);
            break;
        }
        if (differ && note) note(ctx, o->section, o->key);
    }
    return SAMDA_OK;
}

/* ---------- lookups ---------- */

static bool list_has(const samda_strlist *l, const char *s)
{
    for (size_t i = 0; s && i < l->n; i++)
        if (strcmp(l->v[i], s) == 0) return true;
    return false;
}

const samda_site_cfg *samda_config_site_for(const samda_config *c, const char *calling_ae, const char *called_ae)
{
    for (size_t i = 0; i < c->n_peers; i++)
        if (c->peers[i].site && calling_ae && strcmp(c->peers[i].ae_title, calling_ae) == 0)
            return samda_config_site(c, c->peers[i].site);
    for (size_t i = 0; i < c->n_sites; i++)
        if (list_has(&c->sites[i].calling_ae, calling_ae)) return &c->sites[i];
    for (size_t i = 0; i < c->n_sites; i++)
        if (list_has(&c->sites[i].called_ae, called_ae)) return &c->sites[i];
    return NULL;
}

const samda_site_cfg *samda_config_site(const samda_config *c, const char *name)
{
    for (size_t i = 0; name && i < c->n_sites; i++)
        if (strcmp(c->sites[i].name, name) == 0) return &c->sites[i];
    return NULL;
}

unsigned samda_site_outputs(const samda_site_cfg *s) { return s ? samda_outputs_of(&s->outputs) : SAMDA_OUTPUT_SEG; }

const char *samda_strlist_join(const samda_strlist *l, char *out, size_t size)
{
    size_t o = 0;
    if (size) out[0] = '\0';
    for (size_t i = 0; i < l->n && o + 1 < size; i++)
        o += (size_t)snprintf(out + o, size - o, "%s%s", i ? "," : "", l->v[i]);
    return out;
}

unsigned samda_cluster_roles(const samda_config *c)
{
    unsigned bits = 0;
    for (size_t i = 0; i < c->cluster_roles.n; i++) {
        const char *r = c->cluster_roles.v[i];
        bits |= !strcmp(r, "ingest") ? SAMDA_NODE_INGEST : !strcmp(r, "worker") ? SAMDA_NODE_WORKER
              : !strcmp(r, "export") ? SAMDA_NODE_EXPORT : !strcmp(r, "api")    ? SAMDA_NODE_API : 0;
    }
    return bits;
}

const char *samda_config_node_name(const samda_config *c, char out[SAMDA_CONFIG_NODE_SIZE])
{
    if (c->cluster_node && *c->cluster_node) {
        snprintf(out, SAMDA_CONFIG_NODE_SIZE, "%s", c->cluster_node);
        return out;
    }
    char host[256] = "";
    if (gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
    size_t o = 0;
    for (const char *p = host; *p && *p != '.' && o + 1 < SAMDA_CONFIG_NODE_SIZE; p++)
        if (isalnum((unsigned char)*p) || *p == '_' || *p == '-') out[o++] = *p;
    out[o] = '\0';
    if (!o) snprintf(out, SAMDA_CONFIG_NODE_SIZE, "samdad");
    return out;
}

unsigned samda_outputs_of(const samda_strlist *l)
{
    unsigned bits = 0;
    for (size_t i = 0; i < l->n; i++) {
        const char *v = l->v[i];
        bits |= !strcasecmp(v, "seg") ? SAMDA_OUTPUT_SEG : !strcasecmp(v, "rtstruct") ? SAMDA_OUTPUT_RTSTRUCT
                : !strcasecmp(v, "sr")                   ? SAMDA_OUTPUT_SR
                                                         : 0;
    }
    return bits;
}

const samda_dest_cfg *samda_config_dest(const samda_config *c, const char *name)
{
    for (size_t i = 0; name && i < c->n_dests; i++)
        if (strcmp(c->dests[i].name, name) == 0) return &c->dests[i];
    return NULL;
}

const samda_rule_cfg *samda_config_rule(const samda_config *c, const char *name)
{
    for (size_t i = 0; name && i < c->n_rules; i++)
        if (strcmp(c->rules[i].name, name) == 0) return &c->rules[i];
    return NULL;
}

bool samda_parse_window(const char *s, int *start_min, int *end_min)
{
    unsigned h1, m1, h2, m2;
    char tail;
    if (!s || sscanf(s, "%2u:%2u-%2u:%2u%c", &h1, &m1, &h2, &m2, &tail) != 4) return false;
    if (h1 > 23 || h2 > 23 || m1 > 59 || m2 > 59) return false;
    *start_min = (int)(h1 * 60 + m1);
    *end_min = (int)(h2 * 60 + m2);
    return true;
}
