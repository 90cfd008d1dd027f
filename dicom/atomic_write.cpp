/* Crash-safe saving of DICOM files (see atomic_write.h). It writes through DCMTK's own file
 * stream, then reopens the temporary file only to fsync it: DCMTK offers no fsync of its own.
 * No test file of its own: test_ct_write and test_seg check its outcomes (files complete, no
 * temporary file left, a missing directory refused). */
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "atomic_write.h"

namespace {

std::string dir_of(const std::string &path)
{
    size_t slash = path.rfind('/');
    if (slash == std::string::npos) return ".";
    if (slash == 0) return "/";
    return path.substr(0, slash);
}

samda_status errno_status(int e)
{
    if (e == ENOSPC || e == EDQUOT) return SAMDA_ENOSPC;
    if (e == ENOENT || e == ENOTDIR) return SAMDA_ENOENT;
    return SAMDA_EIO;
}

} // namespace

samda_status dicom_fsync_dir(const char *dir, samda_error *err)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return samda_fail(err, errno_status(e), "opening directory %s to sync it: %s", dir, std::strerror(e));
    }
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    if (rc != 0) return samda_fail(err, errno_status(e), "syncing directory %s: %s", dir, std::strerror(e));
    return SAMDA_OK;
}

samda_status dicom_save_atomic(DcmFileFormat &ff, const char *path, E_TransferSyntax xfer, bool sync_dir,
                               samda_error *err)
{
    std::string dir = dir_of(path);
    /* A unique temporary name in the same directory, so rename() is atomic. mkstemp makes the
     * file; DCMTK then rewrites it by name. */
    std::string tmpl = dir + "/.samda-tmp-XXXXXX";
    int fd = mkstemp(&tmpl[0]);
    if (fd < 0) {
        int e = errno;
        return samda_fail(err, errno_status(e), "creating a temporary file in %s: %s", dir.c_str(), std::strerror(e));
    }
    /* Readable by the group (the PACS tools of the same service), never by everyone: patient data. */
    (void)fchmod(fd, 0640);
    close(fd);
    OFCondition c = ff.saveFile(tmpl.c_str(), xfer, EET_ExplicitLength, EGL_recalcGL, EPD_noChange, 0, 0,
                                EWM_updateMeta);
    if (c.bad()) {
        unlink(tmpl.c_str());
        /* DCMTK's condition says only "I/O suspension or premature end of stream": a full file
         * system is the usual cause, and the one an operator can act on. */
        struct statvfs sv;
        if (statvfs(dir.c_str(), &sv) == 0 && sv.f_bavail == 0)
            return samda_fail(err, SAMDA_ENOSPC, "no space left on the file system of %s (disk full) while writing %s",
                              dir.c_str(), path);
        return samda_fail(err, SAMDA_EIO, "writing %s: %s", path, c.text());
    }
    fd = open(tmpl.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0) {
        int e = errno;
        if (fd >= 0) close(fd);
        unlink(tmpl.c_str());
        return samda_fail(err, errno_status(e), "syncing %s: %s", path, std::strerror(e));
    }
    close(fd);
    if (rename(tmpl.c_str(), path) != 0) {
        int e = errno;
        unlink(tmpl.c_str());
        return samda_fail(err, errno_status(e), "renaming the temporary file to %s: %s", path, std::strerror(e));
    }
    return sync_dir ? dicom_fsync_dir(dir.c_str(), err) : SAMDA_OK;
}
