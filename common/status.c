/* The status table's functions. Kept free of every dependency but libc, so that model/ can
 * compile this file into its standalone build. */
#include "status.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    int http;
    unsigned dicom;
    const char *text;
} status_table[] = {
#define SAMDA_STATUS_ROW_(name, http, dicom, text) {"SAMDA_" #name, http, dicom, text},
    SAMDA_STATUS_MAP(SAMDA_STATUS_ROW_)
#undef SAMDA_STATUS_ROW_
};

static int in_range(samda_status s) { return (int)s >= 0 && (int)s < (int)SAMDA_STATUS_COUNT_; }

const char *samda_status_str(samda_status s) { return in_range(s) ? status_table[s].text : "unknown status"; }
const char *samda_status_name(samda_status s) { return in_range(s) ? status_table[s].name : "SAMDA_UNKNOWN"; }
int samda_status_http(samda_status s) { return in_range(s) ? status_table[s].http : 500; }

unsigned samda_status_dicom(samda_status s)
{
    if (!in_range(s)) return 0x0110;
    if (s != SAMDA_OK && status_table[s].dicom == 0) return 0x0110;
    return status_table[s].dicom;
}

/* Messages are single lines: control characters (a newline from strerror or a peer) become spaces. */
static void one_line(char *m)
{
    for (; *m; m++)
        if ((unsigned char)*m < 0x20 || *m == 0x7f) *m = ' ';
}

samda_status samda_vfail(samda_error *err, samda_status code, const char *fmt, va_list ap)
{
    if (!err) return code;
    err->code = code;
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    one_line(err->message);
    return code;
}

samda_status samda_fail(samda_error *err, samda_status code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    samda_vfail(err, code, fmt, ap);
    va_end(ap);
    return code;
}

void samda_error_prefix(samda_error *err, const char *fmt, ...)
{
    if (!err) return;
    char prefix[SAMDA_ERROR_MESSAGE_SIZE];
    char old[SAMDA_ERROR_MESSAGE_SIZE];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->message, sizeof old);
    /* Truncation is intended: the message keeps its first SAMDA_ERROR_MESSAGE_SIZE-1 bytes. */
    size_t n = strnlen(prefix, sizeof prefix - 1);
    memcpy(err->message, prefix, n);
    size_t room = sizeof err->message - 1 - n;
    size_t m = strnlen(old, sizeof old - 1);
    if (m > room) m = room;
    memcpy(err->message + n, old, m);
    err->message[n + m] = '\0';
    one_line(err->message);
}

void samda_error_clear(samda_error *err)
{
    if (!err) return;
    err->code = SAMDA_OK;
    err->message[0] = '\0';
}

void samda_hide_dir(char *out, size_t size, const char *msg, const char *dir)
{
    if (!out || !size) return;
    size_t dl = dir ? strlen(dir) : 0, n = 0;
    while (dl > 1 && dir[dl - 1] == '/') dl--;
    for (const char *p = msg ? msg : ""; *p && n + 1 < size;) {
        /* the directory itself or a path in it, not a longer name that starts the same */
        if (dl && strncmp(p, dir, dl) == 0 && !isalnum((unsigned char)p[dl]) && p[dl] != '-' && p[dl] != '_' &&
            p[dl] != '.') {
            p += dl;
            while (*p && *p != ' ' && *p != ':' && *p != ',' && *p != ')' && *p != '"' && *p != '\'') p++;
            for (const char *t = "[file]"; *t && n + 1 < size;) out[n++] = *t++;
        } else {
            out[n++] = *p++;
        }
    }
    out[n] = 0;
}
