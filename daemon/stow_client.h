/* daemon/stow_client.c: sending DICOM instances to a DICOMweb server with STOW-RS (PS3.18 10.5), for
 * the exporter's STOW-RS destinations ([destination NAME] url). */
#ifndef SAMDA_DAEMON_STOW_CLIENT_H
#define SAMDA_DAEMON_STOW_CLIENT_H

#include <stddef.h>

#include "dicom.h"
#include "url.h"

typedef enum samdad_stow_auth { SAMDAD_STOW_AUTH_NONE = 0, SAMDAD_STOW_AUTH_BEARER, SAMDAD_STOW_AUTH_BASIC } samdad_stow_auth;

typedef struct samdad_stow_target {
    samda_url url;            /* the DICOMweb root; the request goes to url.path + "/studies" */
    samdad_stow_auth auth;
    const char *username;     /* basic */
    const char *secret_file;  /* the bearer token or the basic password, read at each send; never logged */
    const char *ca_file;      /* https: CAs trusted for the server (NULL: the system's) */
    const char *ca_dir;
    unsigned timeout_s;       /* connect, each read and write */
} samdad_stow_target;

/** POST the n files (their SOP Instance UIDs in sop_uids) to the target as one
 *  multipart/related; type="application/dicom" request, and fill res[i] per instance: SAMDA_OK
 *  when stored (200, or 202 without it among FailedSOPSequence); a failure is_transient for
 *  network errors, timeouts, 408, 429 and 5xx, permanent for other answers (400, 401, 403, 409,
 *  413, 415; the server's FailureReason or status in the message) and for an https certificate
 *  that does not verify (host name included). Messages never hold the secret.
 *  Thread-safe (one request per call; no shared state). */
void samdad_stow_send(const samdad_stow_target *t, const char *const *paths, const char *const *sop_uids, size_t n,
                      samda_store_result *res);

#endif
