/* Helpers shared by the dicom/ unit tests: fixture paths, scratch directories, running tools.
 * Header-only (static functions) so each test stays one executable. */
#ifndef SAMDA_DICOM_TEST_UTIL_H
#define SAMDA_DICOM_TEST_UTIL_H

/* Test paths are bounded by PATH_MAX-sized buffers; a cut path fails the test loudly anyway. */
#pragma GCC diagnostic ignored "-Wformat-truncation"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* $SAMDA_FIXTURES (set by ctest), or the repository's tests/data. */
static inline const char *fixtures_dir(void)
{
    static char buf[4096];
    const char *f = getenv("SAMDA_FIXTURES");
    if (f && *f) return f;
    const char *src = getenv("SAMDA_SOURCE_DIR");
    snprintf(buf, sizeof buf, "%s/tests/data", src ? src : ".");
    return buf;
}

static inline int path_exists(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0;
}

/* Path under the fixtures; NULL (and a message) when the fixture folder is absent. */
static inline const char *fixture(const char *rel)
{
    static char buf[4][4096];
    static int slot;
    char *b = buf[slot++ % 4];
    snprintf(b, 4096, "%s/%s", fixtures_dir(), rel);
    return b;
}

#define PYDICOM_TEST_FILES "/usr/lib/python3/dist-packages/pydicom/data/test_files"

/* A fresh scratch directory under $TMPDIR; removed by scratch_remove(). */
static inline char *scratch_make(char *buf, size_t n, const char *tag)
{
    const char *t = getenv("TMPDIR");
    snprintf(buf, n, "%s/samda-%s-XXXXXX", t && *t ? t : "/tmp", tag);
    return mkdtemp(buf);
}

static inline void scratch_remove(const char *dir)
{
    char cmd[4200];
    if (!dir || !*dir || strncmp(dir, "/", 1) != 0) return;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

static inline int count_files(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

/* Run a shell command; its stdout+stderr go to out (truncated). Returns the exit status or -1. */
static inline int run_capture(const char *cmd, char *out, size_t n)
{
    char full[8192];
    snprintf(full, sizeof full, "(%s) 2>&1", cmd);
    FILE *p = popen(full, "r");
    if (!p) return -1;
    size_t got = 0;
    if (out && n) out[0] = '\0';
    char chunk[1024];
    size_t r;
    while ((r = fread(chunk, 1, sizeof chunk, p)) > 0) {
        if (out && got + 1 < n) {
            size_t k = r < n - 1 - got ? r : n - 1 - got;
            memcpy(out + got, chunk, k);
            got += k;
            out[got] = '\0';
        }
    }
    int st = pclose(p);
    if (st == -1 || !WIFEXITED(st)) return -1;
    return WEXITSTATUS(st);
}

static inline int tool_available(const char *name)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", name);
    return system(cmd) == 0;
}

/* In a forked child: cap the address space at `bytes` (unless it is already lower), so that an
 * allocation of a declared multi-GiB length fails there instead of succeeding. */
static inline void cap_address_space(rlim_t bytes)
{
    struct rlimit rl = {bytes, bytes}, cur;
    getrlimit(RLIMIT_AS, &cur);
    if (cur.rlim_cur == RLIM_INFINITY || cur.rlim_cur > rl.rlim_cur) setrlimit(RLIMIT_AS, &rl);
}

/* Wait for child pid: its exit status, or -1 when waiting failed or it did not exit normally. */
static inline int child_exit_status(pid_t pid)
{
    int ws = 0;
    if (waitpid(pid, &ws, 0) != pid || !WIFEXITED(ws)) return -1;
    return WEXITSTATUS(ws);
}

static inline int copy_file(const char *from, const char *to)
{
    char cmd[8400];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", from, to);
    return system(cmd) == 0 ? 0 : -1;
}

#endif
