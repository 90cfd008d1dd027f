/* The ingest path: DICOM associations and instances (from dicom/'s SCP) into the store.
 * Decides who may send (the [peer] allow-list), which site an association belongs to, applies the
 * free-space watermark and the duplicate policy, and writes the audit trail of associations.
 * Thread-safety: the callbacks run on association threads, concurrently; they only touch the
 * store (thread-safe) and immutable configuration snapshots. */
#ifndef SAMDA_DAEMON_INGEST_H
#define SAMDA_DAEMON_INGEST_H

#include "context.h"
#include "dicom.h"
#include "storage.h"

/** Fill the SCP's callbacks and ctx so that received instances go to ctx's store. */
void samdad_ingest_bind(samdad_ctx *ctx, samda_scp_params *p);

/** Copy a parsed DICOM header into the index's instance description. */
void samdad_meta_from_header(const samda_dicom_header *h, samda_instance_meta *m);

/** Is there at least min_free bytes free under dir? Sets *free_bytes. SAMDA_EIO if statvfs fails. */
samda_status samdad_disk_free(const char *dir, uint64_t *free_bytes, samda_error *err);

/** Duplicate policy of the configuration, in the store's terms. */
samda_dup_policy samdad_dup_policy(const samda_config *cfg);

/** Make the store's sites match the configuration's [site] sections (added or updated; sites
 *  removed from the file stay in the index, which may still refer to them). */
samda_status samdad_sync_sites(samdad_ctx *ctx, samda_store *store, const samda_config *cfg, samda_error *err);

#endif
