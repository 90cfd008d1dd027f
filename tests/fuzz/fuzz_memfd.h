/* For fuzz targets whose parser reads a path: the input as an anonymous in-memory file, named by
 * its /proc/self/fd path. One file per process, rewritten for each input (no disk traffic, nothing
 * left behind). Not a library: include from one target's .c only. */
#ifndef SAMDA_FUZZ_MEMFD_H
#define SAMDA_FUZZ_MEMFD_H
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/** Replace the memfd's content with data; return its path (static storage), or NULL on failure. */
static const char *fuzz_memfd_path(const void *data, size_t size, int *fd_out)
{
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        fd = memfd_create("samda-fuzz", 0);
        if (fd < 0) abort();
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0) return NULL;
    const char *p = data;
    size_t off = 0;
    while (off < size) {
        ssize_t w = pwrite(fd, p + off, size - off, (off_t)off);
        if (w <= 0) return NULL;
        off += (size_t)w;
    }
    if (fd_out) *fd_out = fd;
    return path;
}
#endif
