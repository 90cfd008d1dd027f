/* dicom/ module-internal: DICOM TLS set-up shared by the SCP (scp.cpp) and the SCUs (scu.cpp).
 * Never included outside dicom/. */
#ifndef SAMDA_DICOM_TLS_INTERNAL_H
#define SAMDA_DICOM_TLS_INTERNAL_H

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmnet/assoc.h>

#include "dicom.h"

/* Give net a TLS transport layer built from tls (network owns it) and mark params as TLS.
 * SAMDA_EINVAL/SAMDA_ECONFIG as samda_dicom_tls_check(). */
samda_status dicom_tls_setup_requestor(const samda_dicom_tls *tls, T_ASC_Network *net, T_ASC_Parameters *params,
                                       samda_error *err);

/* Same for an acceptor network (the SCP's). */
samda_status dicom_tls_setup_acceptor(const samda_dicom_tls *tls, T_ASC_Network *net, samda_error *err);

/* Whether an association request failed in the TLS layer (handshake, certificate). */
bool dicom_tls_is_handshake_failure(const OFCondition &cond);

#endif
