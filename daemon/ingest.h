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

/** Where an instance came from: the one ingest entry serves every origin. */
typedef enum samdad_origin_kind {
    SAMDAD_ORIGIN_DIMSE = 0, /* C-STORE */
    SAMDAD_ORIGIN_STOW,      /* STOW-RS */
    SAMDAD_ORIGIN_RESULT,    /* a DICOM-SEG samda's segmentation lane wrote */
    SAMDAD_ORIGIN_SESSION    /* a slice of a volume uploaded to PUT /monailabel/session/, written as
                              * DICOM by samda (a new study of a synthetic patient) */
} samdad_origin_kind;

typedef struct samdad_ingest_origin {
    samdad_origin_kind kind;
    const char *calling_ae;  /* DIMSE: the peer's AE title; NULL otherwise */
    const char *site;        /* the site the instance belongs to; NULL or "" for none */
    int64_t association_id;  /* DIMSE: its row in the associations table; 0 otherwise */
    const samda_result_spec *result; /* RESULT: the result to record with it (spec->object unread) */
    int64_t *result_id;      /* RESULT: OUT, the recorded result (may be NULL) */
    const char *sha256;      /* the file's SHA-256 as its writer computed it (the DICOM receiver); NULL: unknown */
    uint64_t size;           /* with sha256: the bytes it covers */
} samdad_ingest_origin;

/** The one ingest entry (C-STORE, STOW-RS and samda's own results alike): refuse the instance when
 *  the data directory is below [storage] min_free (SAMDA_ENOSPC) or when it cannot be read back
 *  whole or describes an impossible image (samda_dicom_check_instance, SAMDA_EBADDICOM); else store
 *  and index it under the duplicate policy (samda_store_instance_ingest, whose refusals include
 *  SAMDA_ECONFLICT for an instance that disagrees with its study or series). A RESULT origin's SEG
 *  is indexed as an instance of its study, in its own series created complete (no segmentation job
 *  is ever queued for it), together with its results row (samda_store_result_ingest: both or
 *  neither); a SOP Instance UID already indexed is refused (SAMDA_EEXIST) whatever the policy, as
 *  for a SESSION origin (its instances are new, written by samda).
 *  @param path IN: the received file; ALWAYS consumed (moved into the store or removed).
 *  @param h    IN: its parsed header.  @param res OUT: may be NULL.
 *  @return SAMDA_OK or the refusal, *err naming the cause first (no local path unless the file
 *          itself failed). Nothing is logged here: the caller logs with its origin's details.
 *  Thread-safety: safe (association and HTTP threads at once). */
samda_status samdad_ingest_file(samdad_ctx *ctx, const samdad_ingest_origin *o, const char *path,
                                const samda_dicom_header *h, samda_ingest_result *res, samda_error *err);

/** Copy a parsed DICOM header into the index's instance description. */
void samdad_meta_from_header(const samda_dicom_header *h, samda_instance_meta *m);

/** Free space below which /health reports the disk failing whatever [storage] min_free says: the
 *  index, its journal and the audit log need room to write. */
#define SAMDAD_DISK_FLOOR_BYTES ((uint64_t)1 << 20)

/** Is there at least min_free bytes free under dir? Sets *free_bytes. SAMDA_EIO if statvfs fails. */
samda_status samdad_disk_free(const char *dir, uint64_t *free_bytes, samda_error *err);

/** Duplicate policy of the configuration, in the store's terms. */
samda_dup_policy samdad_dup_policy(const samda_config *cfg);

/** Make the store's sites match the configuration's [site] sections (added or updated; sites
 *  removed from the file stay in the index, which may still refer to them). */
samda_status samdad_sync_sites(samdad_ctx *ctx, samda_store *store, const samda_config *cfg, samda_error *err);

#endif
