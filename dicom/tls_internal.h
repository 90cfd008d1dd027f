/* dicom/ module-internal: DICOM TLS set-up shared by the SCP (scp.cpp, scp_listener.cpp) and the SCUs (scu.cpp).
 * Never included outside dicom/. */
#ifndef SAMDA_DICOM_TLS_INTERNAL_H
#define SAMDA_DICOM_TLS_INTERNAL_H

#include <string>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmnet/assoc.h>

#include "dicom.h"

/* Give net a TLS transport layer built from tls (network owns it) and mark params as TLS.
 * SAMDA_EINVAL/SAMDA_ECONFIG as samda_dicom_tls_check(). */
samda_status dicom_tls_setup_requestor(const samda_dicom_tls *tls, T_ASC_Network *net, T_ASC_Parameters *params,
                                       samda_error *err);

/* The acceptor network's transport layer (owned by the network): holds connections whose server
 * handshake ran before DCMTK receives their association. Thread-safe. */
struct dicom_tls_acceptor;

/* Same for an acceptor network (the SCP's); *out is its layer, owned by net. */
samda_status dicom_tls_setup_acceptor(const samda_dicom_tls *tls, T_ASC_Network *net, dicom_tls_acceptor **out,
                                      samda_error *err);

/* Runs the server side of the TLS handshake on the accepted socket fd, blocking (the caller bounds it
 * by shutting fd down). The connection, which owns fd from here on, then waits in a for
 * ASC_receiveAssociation on fd; on failure (false, why says what OpenSSL said) it is still there for
 * dicom_tls_discard. Thread-safe. */
bool dicom_tls_server_handshake(dicom_tls_acceptor *a, int fd, std::string &why);

/* Whether OpenSSL already read and holds decrypted data of fd's prepared connection (the socket
 * itself being empty); whole records still in the socket are the caller's to see. */
bool dicom_tls_decrypted_pending(dicom_tls_acceptor *a, int fd);

/* Closes fd's waiting connection (and so fd) unless DCMTK took it. Thread-safe. */
void dicom_tls_discard(dicom_tls_acceptor *a, int fd);

/* Whether an association request failed in the TLS layer (handshake, certificate). */
bool dicom_tls_is_handshake_failure(const OFCondition &cond);

#endif
