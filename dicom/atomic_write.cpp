/* Crash-safe saving of DICOM files (see atomic_write.h) over common/atomic_file.h: DCMTK writes
 * the temporary file by name (its own file stream truncates and rewrites the same inode), and
 * samda_afile_commit fsyncs that inode through the descriptor it kept, renames and syncs the
 * directory. No test file of its own: test_ct_write and test_seg check its outcomes (files
 * complete, no temporary file left, a missing directory refused). */
#include <string>

#include <sys/statvfs.h>

#include "atomic_file.h"
#include "atomic_write.h"

samda_status dicom_save_atomic(DcmFileFormat &ff, const char *path, E_TransferSyntax xfer, samda_error *err)
{
    samda_afile f;
    /* Readable by the group (the PACS tools of the same service), never by everyone: patient data. */
    samda_status st = samda_afile_open(&f, path, 0640, err);
    if (st != SAMDA_OK) return st;
    OFCondition c = ff.saveFile(f.tmp, xfer, EET_ExplicitLength, EGL_recalcGL, EPD_noChange, 0, 0, EWM_updateMeta);
    if (c.bad()) {
        samda_afile_abort(&f);
        /* DCMTK's condition says only "I/O suspension or premature end of stream": a full file
         * system is the usual cause, and the one an operator can act on. */
        std::string p(path);
        size_t slash = p.rfind('/');
        std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : p.substr(0, slash);
        struct statvfs sv;
        if (statvfs(dir.c_str(), &sv) == 0 && sv.f_bavail == 0)
            return samda_fail(err, SAMDA_ENOSPC, "no space left on the file system of %s (disk full) while writing %s",
                              dir.c_str(), path);
        return samda_fail(err, SAMDA_EIO, "writing %s: %s", path, c.text());
    }
    return samda_afile_commit(&f, err);
}
