/* Data-directory lock (fcntl record lock on DIR/samdad.lock) and directory creation. fcntl locks
 * vanish with the process, so no stale-lock cleanup is ever needed after a crash; F_GETLK tells
 * who holds the lock, which is what the refusal message names. */
#include "lock.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

samda_status samda_mkdir_p(const char *dir, unsigned *out_mode, samda_error *err)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path)
        return samda_fail(err, SAMDA_EINVAL, "directory path too long: %.64s...", dir);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(path, 0700) != 0 && errno != EEXIST)
            return samda_fail(err, SAMDA_EIO, "cannot create directory %s: %s", path, strerror(errno));
        *p = '/';
    }
    if (mkdir(path, 0700) != 0 && errno != EEXIST)
        return samda_fail(err, SAMDA_EIO, "cannot create directory %s: %s", path, strerror(errno));
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return samda_fail(err, SAMDA_EIO, "%s is not a directory", path);
    if (out_mode) *out_mode = st.st_mode & 07777;
    return SAMDA_OK;
}

samda_status samda_datadir_lock(const char *data_dir, const char *node, int *out_fd, samda_error *err)
{
    char path[PATH_MAX];
    int w = node ? snprintf(path, sizeof path, "%s/samdad-%s.lock", data_dir, node)
                 : snprintf(path, sizeof path, "%s/samdad.lock", data_dir);
    if (w < 0 || w >= (int)sizeof path)
        return samda_fail(err, SAMDA_EINVAL, "data directory path too long");
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return samda_fail(err, SAMDA_EIO, "cannot open lock file %s: %s", path, strerror(errno));
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    if (fcntl(fd, F_SETLK, &fl) != 0) {
        int e = errno;
        struct flock q = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
        long pid = 0;
        if (fcntl(fd, F_GETLK, &q) == 0 && q.l_type != F_UNLCK) pid = (long)q.l_pid;
        close(fd);
        if (e == EACCES || e == EAGAIN) {
            if (pid > 0)
                return samda_fail(err, SAMDA_ELOCKED,
                                  "data directory %s is in use by samdad PID %ld%s%s (stop it, or use another %s)",
                                  data_dir, pid, node ? " as node " : "", node ? node : "",
                                  node ? "[cluster] node" : "data_dir");
            return samda_fail(err, SAMDA_ELOCKED, "data directory %s is in use by another samdad%s%s", data_dir,
                              node ? " as node " : "", node ? node : "");
        }
        return samda_fail(err, SAMDA_EIO, "cannot lock %s: %s", path, strerror(e));
    }
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, (size_t)n, 0) != n) {
        int e = errno;
        close(fd);
        return samda_fail(err, SAMDA_EIO, "cannot write PID to %s: %s", path, strerror(e));
    }
    *out_fd = fd;
    return SAMDA_OK;
}
