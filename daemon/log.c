/* Logging to stderr in key=value form (see log.h). Each line is built in a stack buffer and
 * written with a single write(2): atomic for pipes up to PIPE_BUF and in practice for journald's
 * stream socket, so concurrent threads never interleave partial lines. */
#include "log.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static const char *level_name[] = {"error", "warn", "info", "debug"};
static const char *level_prefix[] = {"<3>", "<4>", "<6>", "<7>"}; /* SD_ERR, SD_WARNING, SD_INFO, SD_DEBUG */

void samda_logger_init(samda_logger *lg, int fd, samda_log_level level)
{
    lg->level = level;
    lg->log_uids = 0;
    lg->fd = fd;
    lg->journal = getenv("JOURNAL_STREAM") != NULL;
}

void samda_logger_set_level(samda_logger *lg, samda_log_level level)
{
    __atomic_store_n(&lg->level, (int)level, __ATOMIC_RELAXED);
}

bool samda_log_enabled(const samda_logger *lg, samda_log_level level)
{
    return (int)level <= __atomic_load_n(&lg->level, __ATOMIC_RELAXED);
}

bool samda_log_gate_pass(samda_log_gate *g, long long now_ms, long long interval_ms, unsigned *suppressed)
{
    long long next = __atomic_load_n(&g->next_ms, __ATOMIC_ACQUIRE);
    if (now_ms < next ||
        !__atomic_compare_exchange_n(&g->next_ms, &next, now_ms + interval_ms, false, __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE)) {
        __atomic_add_fetch(&g->suppressed, 1, __ATOMIC_RELAXED);
        return false;
    }
    unsigned n = __atomic_exchange_n(&g->suppressed, 0, __ATOMIC_RELAXED);
    if (suppressed) *suppressed = n;
    return true;
}

int samda_log_level_parse(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcasecmp(s, level_name[i]) == 0) return i;
    if (strcasecmp(s, "warning") == 0) return SAMDA_LOG_WARN;
    return -1;
}

char *samda_log_quote(char *out, unsigned size, const char *value)
{
    unsigned n = 0;
    if (size < 3) {
        if (size) out[0] = 0;
        return out;
    }
    out[n++] = '"';
    for (const char *p = value ? value : ""; *p && n + 3 < size; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\\') {
            out[n++] = '\\';
            out[n++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            out[n++] = ' ';
        } else {
            out[n++] = (char)c;
        }
    }
    out[n++] = '"';
    out[n] = 0;
    return out;
}

/* Length of the UID-like token at p (0 if none): a run of digits and dots that starts and ends
 * with a digit, is not glued to a letter, and has 5+ components, or 3+ and 16+ characters. */
static size_t uid_token(const char *start, const char *p)
{
    if (p > start && (isalnum((unsigned char)p[-1]) || p[-1] == '.' || p[-1] == '_')) return 0;
    size_t n = 0, dots = 0;
    while (isdigit((unsigned char)p[n]) || p[n] == '.') dots += p[n++] == '.';
    while (n && p[n - 1] == '.') { /* a sentence's full stop is not part of it */
        n--;
        dots--;
    }
    if (!n || !isdigit((unsigned char)p[0]) || isalpha((unsigned char)p[n]) || p[n] == '_') return 0;
    return (dots >= 4 || (dots >= 2 && n >= 16)) ? n : 0;
}

const char *samda_log_scrub(const char *msg, bool keep_uids, const char *data_dir, char *buf, unsigned size)
{
    if (!msg || keep_uids || size < 16) return msg ? msg : "";
    size_t dl = data_dir ? strlen(data_dir) : 0;
    unsigned n = 0;
    bool changed = false;
    for (const char *p = msg; *p && n + 1 < size;) {
        size_t t;
        const char *rep = NULL;
        if (dl && !strncmp(p, data_dir, dl)) {
            t = dl;
            while (p[t] && p[t] != ' ' && p[t] != ':' && p[t] != ',' && p[t] != ')' && p[t] != '"') t++;
            rep = "[object]";
        } else if ((t = uid_token(msg, p)) != 0) {
            rep = "[uid]";
        }
        if (rep) {
            changed = true;
            for (const char *r = rep; *r && n + 1 < size;) buf[n++] = *r++;
            p += t;
        } else {
            buf[n++] = *p++;
        }
    }
    buf[n] = 0;
    return changed ? buf : msg;
}

void samda_log(const samda_logger *lg, samda_log_level level, const char *mod, const char *msg, const char *fields,
               ...)
{
    if (!samda_log_enabled(lg, level)) return;
    char line[2048];
    size_t n = 0;
    if (lg->journal) {
        n = (size_t)snprintf(line, sizeof line, "%s", level_prefix[level]);
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        n = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
        n += (size_t)snprintf(line + n, sizeof line - n, ".%03ldZ ", ts.tv_nsec / 1000000);
    }
    const size_t body = n; /* after the timestamp or priority prefix */
    char q[1024];
    n += (size_t)snprintf(line + n, sizeof line - n, "level=%s mod=%s msg=%s", level_name[level], mod,
                          samda_log_quote(q, sizeof q, msg));
    if (fields && n < sizeof line - 2) {
        line[n++] = ' ';
        va_list ap;
        va_start(ap, fields);
        int w = vsnprintf(line + n, sizeof line - n, fields, ap);
        va_end(ap);
        if (w > 0) n += (size_t)w;
    }
    if (n >= sizeof line - 1) {
        n = sizeof line - 5;
        memcpy(line + n, "...", 3);
        n += 3;
    }
    /* Without [daemon] log_uids no line carries a UID, whoever wrote it (messages from the store, the
     * dicom module and DCMTK quote them): the one place that makes sure. */
    if (!__atomic_load_n(&lg->log_uids, __ATOMIC_RELAXED)) {
        line[n] = 0;
        char scrubbed[sizeof line];
        const char *s = samda_log_scrub(line + body, false, NULL, scrubbed, sizeof scrubbed - body);
        if (s != line + body) {
            size_t m = strlen(s);
            memcpy(line + body, s, m);
            n = body + m;
        }
    }
    /* fields come from code, but values may carry newlines from peers: keep one line */
    for (size_t i = 0; i < n; i++)
        if (line[i] == '\n' || line[i] == '\r') line[i] = ' ';
    line[n++] = '\n';
    ssize_t off = 0;
    while (off < (ssize_t)n) {
        ssize_t w = write(lg->fd, line + off, n - (size_t)off);
        if (w <= 0) break;
        off += w;
    }
}
