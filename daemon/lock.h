/* The data-directory lock: one samdad per data directory, or per node name where the nodes of a
 * cluster share the directory (the index in PostgreSQL). Thread-safety: call from the main thread
 * at start-up. */
#ifndef SAMDA_DAEMON_LOCK_H
#define SAMDA_DAEMON_LOCK_H

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Take an exclusive lock on DIR/samdad.lock, or DIR/samdad-NODE.lock when node is not NULL (fcntl
 *  record lock, released by the kernel when the process dies, so a kill -9 never leaves a stale
 *  lock) and write our PID into it.
 *  @param data_dir IN: existing directory.  @param node IN: a valid node name, or NULL.
 *  @param out_fd OUT: keep open for the process lifetime.
 *  @return SAMDA_OK; SAMDA_ELOCKED: another process holds it (message names its PID);
 *          SAMDA_EIO: the lock file could not be created (message names path and errno). */
samda_status samda_datadir_lock(const char *data_dir, const char *node, int *out_fd, samda_error *err);

/** Create dir (and missing parents) with mode 0700; an existing directory's mode is left alone
 *  but reported through *out_mode when out_mode is not NULL. */
samda_status samda_mkdir_p(const char *dir, unsigned *out_mode, samda_error *err);

#ifdef __cplusplus
}
#endif
#endif
