/* tools/ internals shared between its files; not installed, not public API.
 *
 * tools_afile: write a file crash-safely. Bytes go to a temporary file next to the destination
 * ("<path>.tmp.XXXXXX", mode 0644), which commit fsyncs, renames over the destination and follows
 * with an fsync of the directory; abort (or a failed commit) removes the temporary file. A reader
 * of path therefore sees the old file or the complete new one, never a prefix.
 *
 * Thread-safety: one tools_afile per thread; distinct files may be written concurrently. */
#ifndef SAMDA_TOOLS_INTERNAL_H
#define SAMDA_TOOLS_INTERNAL_H

#include <stddef.h>

#include "status.h"

typedef struct tools_afile {
    int   fd;    /* -1 when closed */
    char *path;  /* destination (owned copy) */
    char *tmp;   /* temporary file name (owned) */
} tools_afile;

/** Create the temporary file for path. On failure *f is left closed (abort is a no-op).
 *  Returns SAMDA_OK, SAMDA_EINVAL (NULL/empty path), SAMDA_ENOMEM, SAMDA_EIO/SAMDA_ENOSPC. */
samda_status tools_afile_open(tools_afile *f, const char *path, samda_error *err);
/** Append len bytes. Returns SAMDA_OK, SAMDA_EIO or SAMDA_ENOSPC (the file stays open: abort it). */
samda_status tools_afile_write(tools_afile *f, const void *buf, size_t len, samda_error *err);
/** fsync, close, rename over the destination, fsync the directory; *f is closed afterwards
 *  whatever the outcome. If fsync/close/rename fails the temporary file is gone and the destination
 *  untouched; if only the directory fsync fails the new file is in place but may not survive a
 *  power loss. Returns SAMDA_OK, SAMDA_EIO or SAMDA_ENOSPC. */
samda_status tools_afile_commit(tools_afile *f, samda_error *err);
/** Close and remove the temporary file. Harmless on a closed or zeroed tools_afile. */
void tools_afile_abort(tools_afile *f);

#endif
