/* C-ECHO SCU: one association, one echo, release. Used to test a destination before exporting
 * to it. It classifies every way the attempt can fail so the user sees which side to fix. */
#include <cstring>
#include <string>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmnet/assoc.h>
#include <dcmtk/dcmnet/dimse.h>
#include <dcmtk/dcmnet/dul.h>

#include "dicom.h"
#include "guard.h"
#include "internal.h"
#include "tls_internal.h"

/* Shared with scu.cpp through internal.h. */
bool dicom_ae_ok(const char *ae)
{
    size_t n = ae ? std::strlen(ae) : 0;
    return n >= 1 && n <= 16;
}

const char *dicom_reject_reason(const T_ASC_RejectParameters &r)
{
    switch (r.reason) {
    case ASC_REASON_SU_NOREASON: return "no reason given";
    case ASC_REASON_SU_APPCONTEXTNAMENOTSUPPORTED: return "application context name not supported";
    case ASC_REASON_SU_CALLINGAETITLENOTRECOGNIZED: return "calling AE title not recognised";
    case ASC_REASON_SU_CALLEDAETITLENOTRECOGNIZED: return "called AE title not recognised";
    case ASC_REASON_SP_ACSE_NOREASON: return "no reason given (ACSE)";
    case ASC_REASON_SP_ACSE_PROTOCOLVERSIONNOTSUPPORTED: return "protocol version not supported";
    case ASC_REASON_SP_PRES_TEMPORARYCONGESTION: return "temporary congestion";
    case ASC_REASON_SP_PRES_LOCALLIMITEXCEEDED: return "local limit exceeded";
    }
    return "unknown reason";
}

namespace {


/* DCMTK reports connection failures as text only; pick the cases a user can act on. */
samda_status classify_connect(const char *text, const char **what)
{
    if (std::strstr(text, "refused")) { *what = "connection refused (is the peer listening on that port?)"; return SAMDA_ENETWORK; }
    if (std::strstr(text, "timed out") || std::strstr(text, "Timeout") || std::strstr(text, "timeout")) {
        *what = "timed out";
        return SAMDA_ETIMEDOUT;
    }
    if (std::strstr(text, "unreachable")) { *what = "host or network unreachable"; return SAMDA_ENETWORK; }
    if (std::strstr(text, "Unknown host") || std::strstr(text, "unknown host") ||
        std::strstr(text, "Name or service")) {
        *what = "unknown host";
        return SAMDA_ENETWORK;
    }
    *what = text;
    return SAMDA_ENETWORK;
}

struct resources {
    T_ASC_Network *net = nullptr;
    T_ASC_Parameters *params = nullptr;
    T_ASC_Association *assoc = nullptr;
    ~resources()
    {
        if (assoc) ASC_destroyAssociation(&assoc); /* also destroys params */
        else if (params) ASC_destroyAssociationParameters(&params);
        if (net) ASC_dropNetwork(&net);
    }
};

} // namespace

extern "C" samda_status samda_dicom_echo(const samda_dicom_peer *peer, unsigned timeout_s, samda_error *err)
{
    return dicom_guard(err, "C-ECHO", SAMDA_EINTERNAL, [&]() -> samda_status {
        if (!peer || !peer->host || !*peer->host || !dicom_ae_ok(peer->calling_ae) || !dicom_ae_ok(peer->called_ae) ||
            peer->port < 1 || peer->port > 65535)
            return samda_fail(err, SAMDA_EINVAL, "C-ECHO: peer needs calling and called AE titles of 1 to 16 "
                              "characters, a host and a port between 1 and 65535");
        int t = timeout_s ? (int)timeout_s : 30;
        std::string where = std::string(peer->called_ae) + "@" + peer->host + ":" + std::to_string(peer->port);
        const char *where_c = where.c_str();

        dcmConnectionTimeout.set(t);
        resources r;
        OFCondition cond = ASC_initializeNetwork(NET_REQUESTOR, 0, t, &r.net);
        if (cond.bad()) return samda_fail(err, SAMDA_EINTERNAL, "C-ECHO to %s: %s", where_c, cond.text());
        cond = ASC_createAssociationParameters(&r.params, ASC_DEFAULTMAXPDU);
        if (cond.bad()) return samda_fail(err, SAMDA_ENOMEM, "C-ECHO to %s: %s", where_c, cond.text());
        if (peer->tls) { /* DICOM TLS: same set-up as the C-STORE SCU (tls.cpp) */
            samda_status st = dicom_tls_setup_requestor(peer->tls, r.net, r.params, err);
            if (st != SAMDA_OK) {
                samda_error_prefix(err, "C-ECHO to %s: ", where_c);
                return st;
            }
        }
        ASC_setAPTitles(r.params, peer->calling_ae, peer->called_ae, nullptr);
        std::string addr = std::string(peer->host) + ":" + std::to_string(peer->port);
        ASC_setPresentationAddresses(r.params, "localhost", addr.c_str());
        const char *ts[] = {UID_LittleEndianExplicitTransferSyntax, UID_LittleEndianImplicitTransferSyntax};
        cond = ASC_addPresentationContext(r.params, 1, UID_VerificationSOPClass, ts, 2);
        if (cond.bad()) return samda_fail(err, SAMDA_EINTERNAL, "C-ECHO to %s: %s", where_c, cond.text());

        cond = ASC_requestAssociation(r.net, r.params, &r.assoc);
        if (cond.bad()) {
            if (cond == DUL_ASSOCIATIONREJECTED) {
                T_ASC_RejectParameters rej;
                ASC_getRejectParameters(r.params, &rej);
                bool transient = rej.result == ASC_RESULT_REJECTEDTRANSIENT;
                return samda_fail(err, transient ? SAMDA_EBUSY : SAMDA_EFORBIDDEN,
                                  "C-ECHO to %s: association rejected (%s, %s)", where_c,
                                  transient ? "transient" : "permanent", dicom_reject_reason(rej));
            }
            if (peer->tls && dicom_tls_is_handshake_failure(cond))
                return samda_fail(err, SAMDA_EFORBIDDEN, "C-ECHO to %s: TLS handshake failed (%s): check the CA, the "
                                  "certificates and that the peer speaks DICOM TLS on that port", where_c, cond.text());
            const char *what = nullptr;
            samda_status st = classify_connect(cond.text(), &what);
            return samda_fail(err, st, "C-ECHO to %s: cannot associate: %s", where_c, what);
        }
        if (ASC_countAcceptedPresentationContexts(r.params) == 0) {
            ASC_abortAssociation(r.assoc);
            return samda_fail(err, SAMDA_ENOTSUP, "C-ECHO to %s: the peer does not accept the Verification SOP class",
                              where_c);
        }
        DIC_US status = 0;
        DcmDataset *detail = nullptr;
        cond = DIMSE_echoUser(r.assoc, r.assoc->nextMsgID++, DIMSE_NONBLOCKING, t, &status, &detail);
        delete detail;
        if (cond.bad()) {
            ASC_abortAssociation(r.assoc);
            if (cond == DIMSE_NODATAAVAILABLE)
                return samda_fail(err, SAMDA_ETIMEDOUT, "C-ECHO to %s: no response within %d s", where_c, t);
            return samda_fail(err, SAMDA_ENETWORK, "C-ECHO to %s: %s", where_c, cond.text());
        }
        if (status != STATUS_Success) {
            ASC_abortAssociation(r.assoc);
            return samda_fail(err, SAMDA_ENETWORK, "C-ECHO to %s: the peer answered status 0x%04X", where_c,
                              (unsigned)status);
        }
        cond = ASC_releaseAssociation(r.assoc);
        if (cond.bad()) ASC_abortAssociation(r.assoc);
        return SAMDA_OK;
    });
}
