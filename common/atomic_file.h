/* Crash-safe file writing, once for every module: bytes go to a temporary file next to the
 * destination ("<path>.tmp.XXXXXX"), which commit fsyncs, renames over the destination and follows
 * with an fsync of the directory; abort (or a failed commit) removes the temporary file. A reader of
 * path therefore sees the old file or the complete new one, never a prefix. Writers that produce the
 * bytes themselves call samda_afile_write; writers that hand a file name to a library (DCMTK) let it
 * write samda_afile.tmp, then commit. Plain C, libc only; C++ callers include it as is.
 *
 * Thread-safety: one samda_afile per thread; distinct files may be written concurrently. */
#ifndef SAMDA_ATOMIC_FILE_H
#define SAMDA_ATOMIC_FILE_H

#include <stddef.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct samda_afile {
    int   fd;    /* -1 when closed */
    char *path;  /* destination (owned copy) */
    char *tmp;   /* temporary file name (owned) */
} samda_afile;

/** Create the temporary file for path, with mode (0 = 0666 less the umask). On failure *f is left
 *  closed (abort is a no-op). Returns SAMDA_OK, SAMDA_EINVAL (NULL/empty path), SAMDA_ENOMEM,
 *  SAMDA_ENOENT (the directory is missing), SAMDA_EIO/SAMDA_ENOSPC. */
samda_status samda_afile_open(samda_afile *f, const char *path, unsigned mode, samda_error *err);
/** Append len bytes. Returns SAMDA_OK, SAMDA_EIO or SAMDA_ENOSPC (the file stays open: abort it). */
samda_status samda_afile_write(samda_afile *f, const void *buf, size_t len, samda_error *err);
/** fsync, close, rename over the destination, fsync the directory; *f is closed afterwards
 *  whatever the outcome. If fsync/close/rename fails the temporary file is gone and the destination
 *  untouched; if only the directory fsync fails the new file is in place but may not survive a
 *  power loss. Returns SAMDA_OK, SAMDA_EIO or SAMDA_ENOSPC. */
samda_status samda_afile_commit(samda_afile *f, samda_error *err);
/** Close and remove the temporary file. Harmless on a closed or zeroed samda_afile. */
void samda_afile_abort(samda_afile *f);

#ifdef __cplusplus
}
#endif
#endif
