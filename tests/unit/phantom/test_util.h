/* Helpers shared by the phantom/ tests: scratch directories, file reading, running Python. */
#ifndef SAMDA_TEST_PHANTOM_UTIL_H
#define SAMDA_TEST_PHANTOM_UTIL_H

#include <dirent.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A fresh directory under $TMPDIR (or /tmp); the caller frees the string after remove_tree. */
static inline char *make_tmpdir(const char *tag)
{
    const char *base = getenv("TMPDIR");
    if (!base || !*base)
        base = "/tmp";
    char *dir = malloc(strlen(base) + strlen(tag) + 32);
    if (!dir)
        return NULL;
    sprintf(dir, "%s/samda_%s_XXXXXX", base, tag);
    if (!mkdtemp(dir)) {
        free(dir);
        return NULL;
    }
    return dir;
}

static inline int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static inline void remove_tree(const char *dir)
{
    if (dir)
        nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Whole file into a malloc'ed buffer (NUL-terminated); NULL if unreadable. */
static inline char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) {
        buf[n] = '\0';
        if (len)
            *len = (size_t)n;
    }
    return buf;
}

/* Number of entries in dir whose name contains `part` (all entries but . and .. if part is ""). */
static inline int count_entries(const char *dir, const char *part)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strstr(e->d_name, part))
            n++;
    closedir(d);
    return n;
}

/* 1 if /usr/bin/python3 can import numpy (the system Python; the one on PATH may lack it). */
static inline int have_numpy(void)
{
    return system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") == 0;
}

/* Run a shell command and return its stdout (trimmed of the final newline); NULL on failure. */
static inline char *run_capture(const char *cmd)
{
    FILE *p = popen(cmd, "r");
    if (!p)
        return NULL;
    size_t cap = 4096, len = 0;
    char *out = malloc(cap);
    size_t n;
    while (out && (n = fread(out + len, 1, cap - len - 1, p)) > 0) {
        len += n;
        if (cap - len < 2) {
            char *q = realloc(out, cap * 2);
            if (!q) {
                free(out);
                out = NULL;
                break;
            }
            out = q;
            cap *= 2;
        }
    }
    int rc = pclose(p);
    if (!out)
        return NULL;
    out[len] = '\0';
    while (len > 0 && out[len - 1] == '\n')
        out[--len] = '\0';
    if (rc != 0) {
        fprintf(stderr, "command failed (%d): %s\noutput: %s\n", rc, cmd, out);
        free(out);
        return NULL;
    }
    return out;
}

#endif
