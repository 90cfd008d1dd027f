/* Crash-safe file writing (atomic_file.h): temp file, fsync, rename, directory fsync. */
#include "atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static samda_status fail_errno(samda_error *err, int e, const char *op, const char *path)
{
    samda_status code = (e == ENOSPC || e == EDQUOT) ? SAMDA_ENOSPC
                        : (e == ENOENT || e == ENOTDIR) ? SAMDA_ENOENT
                                                         : SAMDA_EIO;
    return samda_fail(err, code, "%s %s: %s", op, path, strerror(e));
}

static void afile_release(samda_afile *f)
{
    free(f->path);
    free(f->tmp);
    f->path = NULL;
    f->tmp = NULL;
    f->fd = -1;
}

samda_status samda_afile_open(samda_afile *f, const char *path, unsigned mode, samda_error *err)
{
    if (!f)
        return samda_fail(err, SAMDA_EINVAL, "opening output file: no file object given");
    f->fd = -1;
    f->path = NULL;
    f->tmp = NULL;
    if (!path || !*path)
        return samda_fail(err, SAMDA_EINVAL, "opening output file: empty path");
    size_t n = strlen(path);
    f->path = malloc(n + 1);
    f->tmp = malloc(n + sizeof ".tmp.XXXXXX");
    if (!f->path || !f->tmp) {
        afile_release(f);
        return samda_fail(err, SAMDA_ENOMEM, "opening output file %s: out of memory", path);
    }
    memcpy(f->path, path, n + 1);
    memcpy(f->tmp, path, n);
    memcpy(f->tmp + n, ".tmp.XXXXXX", sizeof ".tmp.XXXXXX");
    int fd = mkostemp(f->tmp, O_CLOEXEC);
    if (fd < 0) {
        samda_status s = fail_errno(err, errno, "creating temporary file for", path);
        afile_release(f);
        return s;
    }
    /* mkstemp creates 0600; by default outputs are shared like any file the user makes. */
    if (!mode) {
        mode_t um = umask(0);
        umask(um);
        mode = 0666 & ~um;
    }
    (void)fchmod(fd, (mode_t)mode);
    f->fd = fd;
    return SAMDA_OK;
}

samda_status samda_afile_write(samda_afile *f, const void *buf, size_t len, samda_error *err)
{
    if (!f || f->fd < 0)
        return samda_fail(err, SAMDA_EINVAL, "writing output file: not open");
    const char *p = buf;
    while (len > 0) {
        ssize_t w = write(f->fd, p, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return fail_errno(err, errno, "writing", f->tmp);
        }
        p += w;
        len -= (size_t)w;
    }
    return SAMDA_OK;
}

void samda_afile_abort(samda_afile *f)
{
    if (!f)
        return;
    if (f->fd >= 0)
        close(f->fd);
    if (f->tmp)
        unlink(f->tmp);
    afile_release(f);
}

samda_status samda_afile_commit(samda_afile *f, samda_error *err)
{
    if (!f || f->fd < 0)
        return samda_fail(err, SAMDA_EINVAL, "committing output file: not open");
    samda_status s = SAMDA_OK;
    if (fsync(f->fd) != 0)
        s = fail_errno(err, errno, "syncing", f->tmp);
    int fd = f->fd;
    f->fd = -1;
    if (close(fd) != 0 && s == SAMDA_OK)
        s = fail_errno(err, errno, "closing", f->tmp);
    if (s == SAMDA_OK && rename(f->tmp, f->path) != 0)
        s = fail_errno(err, errno, "renaming temporary file to", f->path);
    if (s != SAMDA_OK) {
        unlink(f->tmp);
        afile_release(f);
        return s;
    }
    /* The rename is durable only once the directory entry is on disk. */
    char *slash = strrchr(f->path, '/');
    const char *dir = ".";
    if (slash == f->path)
        dir = "/";
    else if (slash) {
        *slash = '\0';
        dir = f->path;
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        if (fsync(dfd) != 0 && errno != EINVAL && errno != EROFS) /* some file systems refuse; not fatal */
            s = fail_errno(err, errno, "syncing directory", dir);
        close(dfd);
    }
    afile_release(f);
    return s;
}
