/* dicom/ module-internal: write a DICOM file crash-safely (temporary name beside the target,
 * fsync, rename, fsync of the directory), so a reader never sees half a file and a
 * crash leaves either the old file or the new one. Never included outside dicom/. */
#ifndef SAMDA_DICOM_ATOMIC_WRITE_H
#define SAMDA_DICOM_ATOMIC_WRITE_H

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcfilefo.h>

#include "status.h"

/* Save ff as a Part 10 file at path in xfer (meta information refreshed), mode 0640, through
 * samda_afile (common/atomic_file.h). Returns SAMDA_OK; SAMDA_ENOENT (directory missing),
 * SAMDA_ENOSPC, SAMDA_EIO; no temporary file is left after a failure. */
samda_status dicom_save_atomic(DcmFileFormat &ff, const char *path, E_TransferSyntax xfer, samda_error *err);

#endif
