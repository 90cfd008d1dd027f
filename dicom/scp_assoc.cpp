/* dicom/scp_assoc.cpp: one association on its own thread: the A-ASSOCIATE-RQ answered (application
 * context, called AE title, the caller's on_association, then the presentation contexts of
 * sop_classes.cpp), and its commands served until release or abort: C-ECHO here, C-STORE in
 * scp_store.cpp, anything else a protocol error that aborts the association. Each wait on the peer
 * has a deadline for the whole of it, which the listener enforces.
 *
 * Tested in tests/unit/dicom/test_scp.c. */
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmnet/assoc.h>
#include <dcmtk/dcmnet/dcmtrans.h>
#include <dcmtk/dcmnet/dimse.h>
#include <dcmtk/dcmnet/dul.h>

#include "dicom.h"
#include "guard.h"
#include "internal.h"
#include "scp_internal.h"

namespace dicom_scp {
namespace {

/* DCMTK keeps an association's socket descriptor protected; samda needs it to set TCP_NODELAY and to
 * wake a blocked read when stopping. A derived class may name the protected member function. */
struct socket_of : DcmTransportConnection {
    static int get(DcmTransportConnection *c)
    {
        DcmNativeSocketType (DcmTransportConnection::*fn)() = &socket_of::getSocket;
        return c ? (int)(c->*fn)() : -1;
    }
};

void reject(T_ASC_Association *assoc, T_ASC_RejectParametersResult result, T_ASC_RejectParametersSource source,
            T_ASC_RejectParametersReason reason)
{
    T_ASC_RejectParameters rej;
    rej.result = result;
    rej.source = source;
    rej.reason = reason;
    ASC_rejectAssociation(assoc, &rej);
}

bool called_ae_ok(const samda_scp *scp, const char *called)
{
    if (scp->called_aes.empty()) return true;
    for (const std::string &ae : scp->called_aes)
        if (ae == called) return true;
    return false;
}

void negotiate(samda_scp *scp, T_ASC_Association *assoc)
{
    std::vector<const char *> ts;
    for (size_t i = 0; i < dicom_n_transfer_syntaxes; i++) ts.push_back(dicom_transfer_syntaxes[i].uid);
    std::vector<const char *> classes;
    for (size_t i = 0; i < dicom_n_sop_classes; i++) classes.push_back(dicom_sop_classes[i].uid);
    const char *verification[] = {UID_VerificationSOPClass};
    ASC_acceptContextsWithPreferredTransferSyntaxes(assoc->params, verification, 1, ts.data(), (int)ts.size());
    ASC_acceptContextsWithPreferredTransferSyntaxes(assoc->params, classes.data(), (int)classes.size(), ts.data(),
                                                    (int)ts.size());
    /* Answer with the AE title we were called by (it passed called_ae_ok). */
    ASC_setAPTitles(assoc->params, nullptr, nullptr, assoc->params->DULparams.calledAPTitle);
    (void)scp;
}

void serve(samda_scp *scp, worker &w, uint64_t id)
{
    samda_assoc_info info;
    fill_info(info, w.assoc, id);
    samda_assoc_end how = SAMDA_ASSOC_REJECTED;
    unsigned n_stored = 0, n_failed = 0;
    bool accepted = false;

    char ctxname[65] = "";
    ASC_getApplicationContextName(w.assoc->params, ctxname, sizeof ctxname);
    if (std::strcmp(ctxname, UID_StandardApplicationContext) != 0) {
        reject(w.assoc, ASC_RESULT_REJECTEDPERMANENT, ASC_SOURCE_SERVICEUSER, ASC_REASON_SU_APPCONTEXTNAMENOTSUPPORTED);
    } else if (!called_ae_ok(scp, info.called_ae)) {
        reject_verdict(w.assoc, SAMDA_ASSOC_REJECT_CALLED_AE);
    } else {
        samda_assoc_decision d;
        d.verdict = SAMDA_ASSOC_ACCEPT;
        d.user = nullptr;
        if (scp->on_association) scp->on_association(scp->ctx, &info, &d);
        info.user = d.user;
        if (d.verdict != SAMDA_ASSOC_ACCEPT) {
            reject_verdict(w.assoc, d.verdict);
        } else if (scp->aborting) {
            ASC_abortAssociation(w.assoc);
            how = SAMDA_ASSOC_ABORTED;
        } else {
            negotiate(scp, w.assoc);
            accepted = ASC_acknowledgeAssociation(w.assoc).good();
            if (!accepted) how = SAMDA_ASSOC_ABORTED;
        }
    }

    if (accepted) {
        scp->n_accepted++;
        DcmTransportConnection *tc = DUL_getTransportConnection(w.assoc->DULassociation);
        int fd = socket_of::get(tc);
        if (fd >= 0) {
            int on = scp->tcp_nodelay ? 1 : 0;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
        }
        {
            std::lock_guard<std::mutex> lock(scp->mu);
            w.fd = fd;
        }
        how = SAMDA_ASSOC_ABORTED;
        char why[160];
        for (;;) {
            if (scp->aborting) {
                ASC_abortAssociation(w.assoc);
                break;
            }
            T_DIMSE_Message msg;
            std::memset(&msg, 0, sizeof msg);
            T_ASC_PresentationContextID pres_id = 0;
            DcmDataset *raw_cmd = nullptr; /* the command set as received, to answer what DCMTK refuses */
            /* the whole next command within idle_timeout, however it is cut into PDVs */
            arm_deadline(scp, w, scp->idle_timeout_s);
            OFCondition cond = DIMSE_receiveCommand(w.assoc, DIMSE_NONBLOCKING, (int)scp->idle_timeout_s, &pres_id,
                                                    &msg, nullptr, &raw_cmd);
            std::unique_ptr<DcmDataset> cmd(raw_cmd);
            const bool cut = disarm_deadline(scp, w);
            if (scp->aborting) {
                ASC_abortAssociation(w.assoc);
                break;
            }
            if (cond == DUL_PEERREQUESTEDRELEASE && !cut) {
                ASC_acknowledgeRelease(w.assoc);
                how = SAMDA_ASSOC_RELEASED;
                break;
            }
            /* (a cut connection reads as if the peer had aborted: the deadline comes first) */
            if (cond == DUL_PEERABORTEDASSOCIATION && !cut) break;
            if (cut || cond == DIMSE_NODATAAVAILABLE) {
                ASC_abortAssociation(w.assoc);
                how = SAMDA_ASSOC_TIMED_OUT;
                std::snprintf(why, sizeof why, "%s within idle_timeout (%u s)",
                              cond == DIMSE_NODATAAVAILABLE ? "no DIMSE command" : "DIMSE command not complete",
                              scp->idle_timeout_s);
                event(scp, info, "association aborted", why);
                break;
            }
            store_outcome o = STORE_CONTINUE;
            std::string fault; /* why the association is aborted, for on_event */
            if (cond.bad()) {
                /* DCMTK refused the command. A C-STORE-RQ with a Message ID can still be answered. */
                if (cmd && answerable_store(*cmd)) o = refuse_store(scp, w, info, pres_id, *cmd, cond, n_failed);
                else fault = std::string("DIMSE command cannot be read: ") + cond.text();
            } else if (msg.CommandField == DIMSE_C_ECHO_RQ) {
                scp->n_echo++;
                if (DIMSE_sendEchoResponse(w.assoc, pres_id, &msg.msg.CEchoRQ, STATUS_Success, nullptr).bad())
                    o = STORE_BROKEN;
            } else if (msg.CommandField == DIMSE_C_STORE_RQ) {
                o = handle_store(scp, w, info, pres_id, msg.msg.CStoreRQ, n_stored, n_failed);
            } else {
                /* Only C-ECHO and C-STORE were negotiated; anything else is a protocol error. */
                std::snprintf(why, sizeof why, "unsupported DIMSE command 0x%04X: only C-ECHO-RQ and C-STORE-RQ "
                              "are served", (unsigned)msg.CommandField);
                fault = why;
            }
            if (!fault.empty()) {
                ASC_abortAssociation(w.assoc);
                event(scp, info, "association aborted", fault);
                break;
            }
            if (o != STORE_CONTINUE) {
                ASC_abortAssociation(w.assoc);
                if (o == STORE_TIMED_OUT && !scp->aborting) how = SAMDA_ASSOC_TIMED_OUT;
                break;
            }
        }
        if (how != SAMDA_ASSOC_RELEASED) scp->n_aborted++;
        std::lock_guard<std::mutex> lock(scp->mu);
        w.fd = -1;
    } else {
        scp->n_rejected++;
    }
    drop(w.assoc);
    if (scp->on_association_end) scp->on_association_end(scp->ctx, &info, how, n_stored, n_failed);
}

} // namespace

/* The peer address as DCMTK recorded it (numeric, reverse DNS is off in samda_dicom_init). */
void fill_info(samda_assoc_info &info, T_ASC_Association *assoc, uint64_t id)
{
    std::memset(&info, 0, sizeof info);
    info.id = id;
    const DUL_ASSOCIATESERVICEPARAMETERS &dp = assoc->params->DULparams;
    copy_str(info.calling_ae, dp.callingAPTitle);
    copy_str(info.called_ae, dp.calledAPTitle);
    copy_str(info.peer_address, dp.callingPresentationAddress);
}

void drop(T_ASC_Association *&assoc)
{
    if (!assoc) return;
    ASC_dropSCPAssociation(assoc);
    ASC_destroyAssociation(&assoc);
    assoc = nullptr;
}

void reject_verdict(T_ASC_Association *assoc, samda_assoc_verdict v)
{
    switch (v) {
    case SAMDA_ASSOC_REJECT_CALLING_AE:
        reject(assoc, ASC_RESULT_REJECTEDPERMANENT, ASC_SOURCE_SERVICEUSER, ASC_REASON_SU_CALLINGAETITLENOTRECOGNIZED);
        break;
    case SAMDA_ASSOC_REJECT_CALLED_AE:
        reject(assoc, ASC_RESULT_REJECTEDPERMANENT, ASC_SOURCE_SERVICEUSER, ASC_REASON_SU_CALLEDAETITLENOTRECOGNIZED);
        break;
    case SAMDA_ASSOC_REJECT_BUSY:
        reject(assoc, ASC_RESULT_REJECTEDTRANSIENT, ASC_SOURCE_SERVICEPROVIDER_PRESENTATION_RELATED,
               ASC_REASON_SP_PRES_LOCALLIMITEXCEEDED);
        break;
    default:
        reject(assoc, ASC_RESULT_REJECTEDPERMANENT, ASC_SOURCE_SERVICEUSER, ASC_REASON_SU_NOREASON);
        break;
    }
}

/* ---- deadlines and events ---------------------------------------------------------------------- */

/* DCMTK's timeouts apply to each read, so a peer that sends a few bytes at a time is never timed out
 * by them. Each wait on the peer therefore also has a deadline for the whole of it (the next command
 * within idle_timeout_s, a data set within message_timeout_s): the receiving thread checks it between
 * PDVs, and the listener shuts the socket's read side down once it has passed (enforce_deadlines()),
 * which ends a read blocked inside one PDU. */
steady::time_point arm_deadline(samda_scp *scp, worker &w, unsigned seconds)
{
    steady::time_point t = steady::now() + std::chrono::seconds(seconds);
    std::lock_guard<std::mutex> lock(scp->mu);
    w.deadline = t;
    w.has_deadline = true;
    return t;
}

/* Ends the wait's deadline; returns whether the listener cut the connection at it. */
bool disarm_deadline(samda_scp *scp, worker &w)
{
    std::lock_guard<std::mutex> lock(scp->mu);
    w.has_deadline = false;
    return w.cut;
}

void event(samda_scp *scp, const samda_assoc_info &info, const char *what, const std::string &reason)
{
    if (scp->on_event) scp->on_event(scp->ctx, &info, what, reason.c_str());
}

void worker_main(samda_scp *scp, worker *w, uint64_t id)
{
    dicom_guard_void([&] { serve(scp, *w, id); });
    drop(w->assoc);
    std::lock_guard<std::mutex> lock(scp->mu);
    w->done = true;
    scp->active--;
    scp->cv.notify_all();
}

} // namespace dicom_scp
