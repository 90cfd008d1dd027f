/* The routing rules' expression language (route_expr.h): a recursive-descent parser into a tree,
 * and an evaluator over a series' attributes. Every bound is checked while parsing, so evaluating
 * a parsed expression cannot fail, allocate or run for long: regular expressions are compiled at
 * parse time (POSIX, no back-references) and matched against values of at most 64 characters. */
#include "route_expr.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_TEXT 1000
#define MAX_TESTS 64
#define MAX_DEPTH 16
#define MAX_VALUES 32
#define MAX_VALUE 200
#define MAX_REGEX 100
#define MAX_REPEATS 8

typedef enum { F_TEXT, F_NUMBER } field_kind;

static const struct field {
    const char *keyword;
    field_kind kind;
} fields[] = {
    {"Modality", F_TEXT},          {"BodyPartExamined", F_TEXT},
    {"SeriesDescription", F_TEXT}, {"StudyDescription", F_TEXT},
    {"CallingAETitle", F_TEXT},    {"CalledAETitle", F_TEXT},
    {"SliceThickness", F_NUMBER},  {"Rows", F_NUMBER},
    {"Columns", F_NUMBER},         {"SeriesNumber", F_NUMBER},
    {"NumberOfSeriesRelatedInstances", F_NUMBER},
};
enum { FLD_MODALITY, FLD_BODY_PART, FLD_SERIES_DESC, FLD_STUDY_DESC, FLD_CALLING, FLD_CALLED, FLD_THICKNESS,
       FLD_ROWS, FLD_COLUMNS, FLD_SERIES_NUMBER, FLD_INSTANCES, N_FIELDS };

typedef enum { OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE, OP_LIKE, OP_MATCHES, OP_IN, OP_NOT_IN } op_kind;
typedef enum { N_AND, N_OR, N_NOT, N_TEST } node_kind;

typedef struct node {
    node_kind kind;
    struct node *a, *b;       /* AND/OR: both; NOT: a */
    /* N_TEST */
    int field;
    op_kind op;
    char **text;              /* values as text (n_values) */
    double *num;              /* values as numbers (numeric fields) */
    size_t n_values;
    regex_t re;
    bool has_re;
    size_t src_start, src_len; /* the test as written */
} node;

struct samda_route_expr {
    node *root;
    char *src;
};

/* ---- lexer ---------------------------------------------------------------------------------- */

typedef enum { T_END, T_LPAREN, T_RPAREN, T_COMMA, T_OP, T_STRING, T_WORD } tok_kind;

typedef struct parser {
    const char *s;
    size_t pos;          /* next character */
    tok_kind tok;        /* current token */
    size_t tok_start;
    char tok_text[MAX_VALUE + 1];
    int n_tests, depth;
    char *why;
    size_t why_size;
    bool failed;
} parser;

static void fail(parser *p, size_t col, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail(parser *p, size_t col, const char *fmt, ...)
{
    if (p->failed) return;
    p->failed = true;
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(p->why, p->why_size, "column %zu: %s", col + 1, msg);
}

static bool word_char(char c) { return c && (isalnum((unsigned char)c) || strchr("_.-+*?", c) != NULL); }

/* Read the next token into p->tok / p->tok_text. */
static void next(parser *p)
{
    const char *s = p->s;
    while (s[p->pos] == ' ' || s[p->pos] == '\t') p->pos++;
    p->tok_start = p->pos;
    p->tok_text[0] = 0;
    char c = s[p->pos];
    if (c == 0) {
        p->tok = T_END;
        return;
    }
    if (c == '(' || c == ')' || c == ',') {
        p->tok = c == '(' ? T_LPAREN : c == ')' ? T_RPAREN : T_COMMA;
        p->pos++;
        return;
    }
    if (c == '=' || c == '<' || c == '>' || (c == '!' && s[p->pos + 1] == '=')) {
        size_t n = (s[p->pos + 1] == '=' && c != '=') ? 2 : 1;
        if (c == '=' && s[p->pos + 1] == '=') n = 2; /* == is = */
        memcpy(p->tok_text, s + p->pos, n);
        p->tok_text[n] = 0;
        p->pos += n;
        p->tok = T_OP;
        return;
    }
    if (c == '"') {
        size_t n = 0;
        p->pos++;
        for (;;) {
            char d = s[p->pos];
            if (d == 0) {
                fail(p, p->tok_start, "text opened with \" is not closed");
                p->tok = T_END;
                return;
            }
            p->pos++;
            if (d == '"') break;
            if (d == '\\') {
                d = s[p->pos];
                if (d != '"' && d != '\\') {
                    fail(p, p->pos - 1, "in quoted text only \\\" and \\\\ are escapes (write a regex's \\ as \\\\)");
                    p->tok = T_END;
                    return;
                }
                p->pos++;
            }
            if ((unsigned char)d < 0x20) {
                fail(p, p->pos - 1, "control character in quoted text");
                p->tok = T_END;
                return;
            }
            if (n >= MAX_VALUE) {
                fail(p, p->tok_start, "quoted text longer than %d characters", MAX_VALUE);
                p->tok = T_END;
                return;
            }
            p->tok_text[n++] = d;
        }
        p->tok_text[n] = 0;
        p->tok = T_STRING;
        return;
    }
    if (word_char(c)) {
        size_t n = 0;
        while (word_char(s[p->pos])) {
            if (n >= MAX_VALUE) {
                fail(p, p->tok_start, "word longer than %d characters", MAX_VALUE);
                p->tok = T_END;
                return;
            }
            p->tok_text[n++] = s[p->pos++];
        }
        p->tok_text[n] = 0;
        p->tok = T_WORD;
        return;
    }
    fail(p, p->pos, "unexpected character '%c'%s", isprint((unsigned char)c) ? c : '?',
         c == '\'' ? " (quote text with \")" : "");
    p->tok = T_END;
}

static bool is_kw(const parser *p, const char *kw) { return p->tok == T_WORD && strcasecmp(p->tok_text, kw) == 0; }

/* ---- parser --------------------------------------------------------------------------------- */

static void node_free(node *n)
{
    if (!n) return;
    node_free(n->a);
    node_free(n->b);
    for (size_t i = 0; i < n->n_values; i++) free(n->text[i]);
    free(n->text);
    free(n->num);
    if (n->has_re) regfree(&n->re);
    free(n);
}

static node *parse_expr(parser *p);

static bool parse_number(const char *t, double *out)
{
    errno = 0;
    char *end;
    double v = strtod(t, &end);
    if (!*t || *end || errno || !isfinite(v)) return false;
    *out = v;
    return true;
}

/* A glob pattern's only specials are * and ?. */
static bool add_value(parser *p, node *n, const char *text, size_t col)
{
    if (n->n_values >= MAX_VALUES) {
        fail(p, col, "more than %d values in one list", MAX_VALUES);
        return false;
    }
    char **nt = realloc(n->text, (n->n_values + 1) * sizeof *nt);
    if (!nt) goto oom;
    n->text = nt;
    double *nn = realloc(n->num, (n->n_values + 1) * sizeof *nn);
    if (!nn) goto oom;
    n->num = nn;
    if (fields[n->field].kind == F_NUMBER && !parse_number(text, &n->num[n->n_values])) {
        fail(p, col, "%s is a number: '%s' is not one", fields[n->field].keyword, text);
        return false;
    }
    if (!(n->text[n->n_values] = strdup(text))) goto oom;
    n->n_values++;
    return true;
oom:
    fail(p, col, "out of memory");
    return false;
}

static bool read_value(parser *p, node *n)
{
    if (p->tok != T_STRING && p->tok != T_WORD) {
        fail(p, p->tok_start, "a value (a number, a word or \"quoted text\") must follow");
        return false;
    }
    size_t col = p->tok_start;
    if (!add_value(p, n, p->tok_text, col)) return false;
    next(p);
    return true;
}

static node *parse_test(parser *p)
{
    size_t start = p->tok_start;
    if (p->tok != T_WORD) {
        fail(p, start, p->tok == T_END ? "the expression ends where a test (for example Modality = CT) should be"
                                       : "a test (for example Modality = CT) or ( must come here");
        return NULL;
    }
    int field = -1;
    for (int i = 0; i < N_FIELDS; i++)
        if (!strcasecmp(p->tok_text, fields[i].keyword)) field = i;
    if (field < 0) {
        char known[400];
        size_t k = 0;
        for (int i = 0; i < N_FIELDS && k < sizeof known; i++)
            k += (size_t)snprintf(known + k, sizeof known - k, "%s%s", i ? ", " : "", fields[i].keyword);
        fail(p, start, "unknown attribute '%s' (known: %s)", p->tok_text, known);
        return NULL;
    }
    if (++p->n_tests > MAX_TESTS) {
        fail(p, start, "more than %d tests in one expression", MAX_TESTS);
        return NULL;
    }
    node *n = calloc(1, sizeof *n);
    if (!n) {
        fail(p, start, "out of memory");
        return NULL;
    }
    n->kind = N_TEST;
    n->field = field;
    next(p);
    size_t op_col = p->tok_start;
    bool text = fields[field].kind == F_TEXT;
    if (p->tok == T_OP) {
        const char *o = p->tok_text;
        n->op = !strcmp(o, "=") || !strcmp(o, "==") ? OP_EQ : !strcmp(o, "!=") ? OP_NE : !strcmp(o, "<") ? OP_LT
              : !strcmp(o, "<=")                     ? OP_LE : !strcmp(o, ">") ? OP_GT : OP_GE;
        if (text && n->op != OP_EQ && n->op != OP_NE) {
            fail(p, op_col, "%s is text: it takes =, !=, like, matches or in, not %s", fields[field].keyword, o);
            goto bad;
        }
        next(p);
        if (!read_value(p, n)) goto bad;
    } else if (is_kw(p, "like") || is_kw(p, "matches")) {
        n->op = is_kw(p, "like") ? OP_LIKE : OP_MATCHES;
        if (!text) {
            fail(p, op_col, "%s is a number: like and matches compare text", fields[field].keyword);
            goto bad;
        }
        next(p);
        size_t vcol = p->tok_start;
        if (!read_value(p, n)) goto bad;
        if (n->op == OP_MATCHES) {
            const char *re = n->text[0];
            /* glibc compiles some patterns in time exponential in their repetitions: keep them small */
            size_t reps = 0;
            for (const char *c = re; *c; c++) {
                if (*c == '\\' && c[1]) c++;
                else if (*c == '*' || *c == '+' || *c == '?') reps++;
                else if (*c == '{') {
                    fail(p, vcol, "counted repetition {m,n} is not allowed in matches (write it out, or use like)");
                    goto bad;
                }
            }
            if (strlen(re) > MAX_REGEX || reps > MAX_REPEATS) {
                fail(p, vcol, "a matches pattern has at most %d characters and %d of * + ?", MAX_REGEX, MAX_REPEATS);
                goto bad;
            }
            for (const char *b = re; (b = strchr(b, '\\')) != NULL; b += 2)
                if (b[1] >= '1' && b[1] <= '9') {
                    fail(p, vcol, "back-references (\\%c) are not allowed in matches", b[1]);
                    goto bad;
                } else if (!b[1]) break;
            int rc = regcomp(&n->re, re, REG_EXTENDED | REG_ICASE | REG_NOSUB);
            if (rc != 0) {
                char msg[160];
                regerror(rc, &n->re, msg, sizeof msg);
                fail(p, vcol, "not a valid regular expression: %s", msg);
                goto bad;
            }
            n->has_re = true;
        }
    } else if (is_kw(p, "in") || is_kw(p, "not")) {
        n->op = OP_IN;
        if (is_kw(p, "not")) {
            next(p);
            if (!is_kw(p, "in")) {
                fail(p, p->tok_start, "after '%s not' only 'in' may come", fields[field].keyword);
                goto bad;
            }
            n->op = OP_NOT_IN;
        }
        next(p);
        if (p->tok != T_LPAREN) {
            fail(p, p->tok_start, "in takes a list in parentheses: in (CT, MR)");
            goto bad;
        }
        next(p);
        for (;;) {
            if (!read_value(p, n)) goto bad;
            if (p->tok == T_RPAREN) break;
            if (p->tok != T_COMMA) {
                fail(p, p->tok_start, "a comma or ) must follow a value of the list");
                goto bad;
            }
            next(p);
        }
        next(p);
    } else {
        fail(p, op_col, "an operator (=, !=, <, <=, >, >=, like, matches, in) must follow %s",
             fields[field].keyword);
        goto bad;
    }
    /* the test as written: from its attribute to the end of its last token */
    size_t end = p->tok_start;
    while (end > start && (p->s[end - 1] == ' ' || p->s[end - 1] == '\t')) end--;
    n->src_start = start;
    n->src_len = end - start;
    return n;
bad:
    node_free(n);
    return NULL;
}

static node *parse_factor(parser *p)
{
    if (is_kw(p, "not")) {
        if (++p->depth > MAX_DEPTH) {
            fail(p, p->tok_start, "nested more than %d deep", MAX_DEPTH);
            return NULL;
        }
        next(p);
        node *a = parse_factor(p);
        p->depth--;
        if (!a) return NULL;
        node *n = calloc(1, sizeof *n);
        if (!n) {
            node_free(a);
            fail(p, p->tok_start, "out of memory");
            return NULL;
        }
        n->kind = N_NOT;
        n->a = a;
        return n;
    }
    if (p->tok == T_LPAREN) {
        size_t col = p->tok_start;
        if (++p->depth > MAX_DEPTH) {
            fail(p, col, "nested more than %d deep", MAX_DEPTH);
            return NULL;
        }
        next(p);
        node *n = parse_expr(p);
        p->depth--;
        if (!n) return NULL;
        if (p->tok != T_RPAREN) {
            fail(p, p->tok_start, "the ( at column %zu is not closed", col + 1);
            node_free(n);
            return NULL;
        }
        next(p);
        return n;
    }
    return parse_test(p);
}

static node *parse_binary(parser *p, const char *kw, node_kind kind, node *(*sub)(parser *))
{
    node *left = sub(p);
    while (left && is_kw(p, kw)) {
        next(p);
        node *right = sub(p);
        if (!right) {
            node_free(left);
            return NULL;
        }
        node *n = calloc(1, sizeof *n);
        if (!n) {
            node_free(left);
            node_free(right);
            fail(p, p->tok_start, "out of memory");
            return NULL;
        }
        n->kind = kind;
        n->a = left;
        n->b = right;
        left = n;
    }
    return left;
}

static node *parse_term(parser *p) { return parse_binary(p, "and", N_AND, parse_factor); }
static node *parse_expr(parser *p) { return parse_binary(p, "or", N_OR, parse_term); }

samda_route_expr *samda_route_expr_parse(const char *text, char *why, size_t why_size)
{
    char dummy[8];
    if (!why || !why_size) {
        why = dummy;
        why_size = sizeof dummy;
    }
    why[0] = 0;
    if (!text) text = "";
    size_t len = strnlen(text, MAX_TEXT + 1);
    if (len > MAX_TEXT) {
        snprintf(why, why_size, "column 1: expression longer than %d characters", MAX_TEXT);
        return NULL;
    }
    parser p = {.s = text, .why = why, .why_size = why_size};
    next(&p);
    if (p.tok == T_END && !p.failed) {
        snprintf(why, why_size, "column 1: the expression is empty");
        return NULL;
    }
    node *root = p.failed ? NULL : parse_expr(&p);
    if (root && !p.failed && p.tok != T_END) {
        if (p.tok == T_RPAREN) fail(&p, p.tok_start, "this ) closes nothing");
        else fail(&p, p.tok_start, "'and' or 'or' must join two tests, found '%s'",
                  p.tok_text[0] ? p.tok_text : "?");
    }
    samda_route_expr *e = NULL;
    if (root && !p.failed && (e = calloc(1, sizeof *e)) && (e->src = strdup(text))) {
        e->root = root;
        return e;
    }
    if (!p.failed) snprintf(why, why_size, "column 1: out of memory");
    free(e);
    node_free(root);
    return NULL;
}

void samda_route_expr_free(samda_route_expr *e)
{
    if (!e) return;
    node_free(e->root);
    free(e->src);
    free(e);
}

/* ---- evaluation ----------------------------------------------------------------------------- */

/* s without its leading and trailing spaces, copied into buf (bounded). */
static const char *trimmed(const char *s, char *buf, size_t size)
{
    if (!s) s = "";
    while (*s == ' ') s++;
    size_t n = strnlen(s, size - 1);
    while (n > 0 && s[n - 1] == ' ') n--;
    memcpy(buf, s, n);
    buf[n] = 0;
    return buf;
}

/* Case-insensitive glob with * and ?: iterative, backtracking only to the last star (linear-ish). */
static bool glob_match(const char *pat, const char *s)
{
    const char *star = NULL, *resume = NULL;
    while (*s) {
        if (*pat == '*') {
            star = pat++;
            resume = s;
        } else if (*pat == '?' || (*pat && tolower((unsigned char)*pat) == tolower((unsigned char)*s))) {
            pat++;
            s++;
        } else if (star) {
            pat = star + 1;
            s = ++resume;
        } else {
            return false;
        }
    }
    while (*pat == '*') pat++;
    return *pat == 0;
}

static bool attr_text(const samda_route_attrs *a, int f, const char **out)
{
    switch (f) {
    case FLD_MODALITY: *out = a->modality; break;
    case FLD_BODY_PART: *out = a->body_part; break;
    case FLD_SERIES_DESC: *out = a->series_description; break;
    case FLD_STUDY_DESC: *out = a->study_description; break;
    case FLD_CALLING: *out = a->calling_ae; break;
    case FLD_CALLED: *out = a->called_ae; break;
    default: return false;
    }
    return true;
}

static bool attr_number(const samda_route_attrs *a, int f, double *out)
{
    switch (f) {
    case FLD_THICKNESS: *out = a->slice_thickness; return a->has_slice_thickness;
    case FLD_ROWS: *out = (double)a->rows; return a->has_rows;
    case FLD_COLUMNS: *out = (double)a->columns; return a->has_columns;
    case FLD_SERIES_NUMBER: *out = (double)a->series_number; return a->has_series_number;
    case FLD_INSTANCES: *out = (double)a->instances; return true;
    default: return false;
    }
}

static bool num_eq(double x, double y) { return fabs(x - y) <= 1e-6 * (1 + fabs(y)); }

static bool eval_test(const node *n, const samda_route_attrs *a, char *shown, size_t shown_size)
{
    if (fields[n->field].kind == F_TEXT) {
        const char *raw = NULL;
        attr_text(a, n->field, &raw);
        char v[72];
        trimmed(raw, v, sizeof v);
        snprintf(shown, shown_size, "%s", raw ? v : "(absent)");
        switch (n->op) {
        case OP_EQ: return strcasecmp(v, n->text[0]) == 0;
        case OP_NE: return strcasecmp(v, n->text[0]) != 0;
        case OP_LIKE: return glob_match(n->text[0], v);
        case OP_MATCHES: return regexec(&n->re, v, 0, NULL, 0) == 0;
        case OP_IN:
        case OP_NOT_IN: {
            bool in = false;
            for (size_t i = 0; i < n->n_values && !in; i++) in = strcasecmp(v, n->text[i]) == 0;
            return n->op == OP_IN ? in : !in;
        }
        default: return false;
        }
    }
    double x;
    if (!attr_number(a, n->field, &x)) {
        snprintf(shown, shown_size, "(absent)");
        return false;
    }
    snprintf(shown, shown_size, "%g", x);
    double y = n->num[0];
    switch (n->op) {
    case OP_EQ: return num_eq(x, y);
    case OP_NE: return !num_eq(x, y);
    case OP_LT: return x < y && !num_eq(x, y);
    case OP_LE: return x < y || num_eq(x, y);
    case OP_GT: return x > y && !num_eq(x, y);
    case OP_GE: return x > y || num_eq(x, y);
    case OP_IN:
    case OP_NOT_IN: {
        bool in = false;
        for (size_t i = 0; i < n->n_values && !in; i++) in = num_eq(x, n->num[i]);
        return n->op == OP_IN ? in : !in;
    }
    default: return false;
    }
}

static bool eval_node(const samda_route_expr *e, const node *n, const samda_route_attrs *a, samda_route_trace_fn trace,
                      void *ctx)
{
    switch (n->kind) {
    case N_AND: return eval_node(e, n->a, a, trace, ctx) && eval_node(e, n->b, a, trace, ctx);
    case N_OR: return eval_node(e, n->a, a, trace, ctx) || eval_node(e, n->b, a, trace, ctx);
    case N_NOT: return !eval_node(e, n->a, a, trace, ctx);
    case N_TEST: {
        char shown[80];
        bool r = eval_test(n, a, shown, sizeof shown);
        if (trace) {
            char test[MAX_TEXT + 1];
            size_t len = n->src_len < MAX_TEXT ? n->src_len : MAX_TEXT;
            memcpy(test, e->src + n->src_start, len);
            test[len] = 0;
            trace(ctx, test, shown, r);
        }
        return r;
    }
    }
    return false;
}

bool samda_route_expr_eval(const samda_route_expr *e, const samda_route_attrs *a, samda_route_trace_fn trace, void *ctx)
{
    if (!e || !a) return false;
    return eval_node(e, e->root, a, trace, ctx);
}

size_t samda_route_expr_split(const char *text, samda_route_part *parts, size_t max)
{
    size_t n = 0, start = 0, i = 0;
    int depth = 0;
    bool quoted = false;
    if (!text) return 0;
    for (;; i++) {
        char c = text[i];
        if (quoted) {
            if (c == '\\' && (text[i + 1] == '"' || text[i + 1] == '\\')) i++;
            else if (c == '"') quoted = false;
            else if (c == 0) break;
            continue;
        }
        if (c == '"') quoted = true;
        else if (c == '(') depth++;
        else if (c == ')' && depth > 0) depth--;
        if (c == 0 || (c == ',' && depth == 0)) {
            size_t a = start, b = i;
            while (a < b && (text[a] == ' ' || text[a] == '\t')) a++;
            while (b > a && (text[b - 1] == ' ' || text[b - 1] == '\t')) b--;
            if (n < max) parts[n] = (samda_route_part){a, b - a};
            n++;
            start = i + 1;
        }
        if (c == 0) break;
    }
    if (quoted && n < max) parts[n] = (samda_route_part){start, i - start}; /* the parser names the open quote */
    if (quoted) n++;
    return n;
}
