/* The C-STORE / C-ECHO SCP: listens, negotiates associations, receives each instance into a
 * temporary Part 10 file and hands it to the caller's on_store callback.
 *
 * Threads: one listener thread accepts connections itself and watches them (poll, MSG_PEEK) until
 * the whole A-ASSOCIATE-RQ PDU has arrived (or, with TLS, the whole first TLS record), for at most
 * acse_timeout; only then does DCMTK read it, from bytes already buffered, so a peer that sends its
 * request slowly (slow-loris) does not hold up the others. The listener then hands the association
 * to a thread of its own; the number of those is bounded by max_associations and one more is
 * rejected on the listener thread. With TLS, the handshake and the wait for the A-ASSOCIATE-RQ run on
 * a short-lived thread per connection (handshake_main), still within acse_timeout (the listener
 * shuts late ones down), and that thread hands the association on. Connections still sending their
 * request are bounded separately (pending_limit(), handshakes counted apart); over it the oldest is
 * closed. Everything the caller must know about
 * concurrency is in dicom.h (samda_scp_start).
 *
 * Deliberately not here: durability (fsync, rename into the store), duplicate policy, site mapping,
 * allow-lists of calling AE titles. Those are the caller's, through the callbacks. */
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmnet/assoc.h>
#include <dcmtk/dcmnet/dcmtrans.h>
#include <dcmtk/dcmnet/dimse.h>
#include <dcmtk/dcmnet/dul.h>
#include <dcmtk/dcmnet/dulstruc.h>

#include "dicom.h"
#include "guard.h"
#include "internal.h"
#include "tls_internal.h"

namespace {

/* Association ids are unique in the process, across SCP instances (dicom.h). */
std::atomic<uint64_t> next_association_id{1};

/* PS3.5: DIMSE status codes samda sends itself (others come from common/status.h). */
const unsigned status_success = 0x0000;
const unsigned status_does_not_match_sop_class = 0xA900;

struct worker {
    std::thread thread;
    T_ASC_Association *assoc = nullptr;
    int fd = -1;        /* the association's socket while established; guarded by samda_scp::mu */
    bool done = false;  /* guarded by samda_scp::mu */
};

/* A TLS connection in its handshake (or waiting for its A-ASSOCIATE-RQ), on a thread of its own. */
struct handshake {
    std::thread thread;
    int fd = -1;       /* guarded by samda_scp::mu; -1 once the thread closes it or gives it to DCMTK */
    bool done = false; /* guarded by samda_scp::mu */
    bool cut = false;  /* guarded by samda_scp::mu: shut down by the listener (late, or over the limit) */
    std::chrono::steady_clock::time_point deadline;
};

} // namespace

struct samda_scp {
    /* copied parameters */
    std::string bind_address;
    std::vector<std::string> called_aes;
    std::string temp_dir;
    unsigned max_associations = 0;
    unsigned acse_timeout_s = 0;
    unsigned dimse_timeout_s = 0;
    unsigned idle_timeout_s = 0;
    unsigned max_pdu = 0;
    bool tcp_nodelay = true;
    bool tls = false; /* DICOM TLS on this port (the layer belongs to net) */
    dicom_tls_acceptor *tls_layer = nullptr; /* net's layer when tls */
    void *ctx = nullptr;
    samda_scp_association_fn on_association = nullptr;
    samda_scp_store_fn on_store = nullptr;
    samda_scp_store_failed_fn on_store_failed = nullptr;
    samda_scp_association_end_fn on_association_end = nullptr;

    /* running state */
    T_ASC_Network *net = nullptr;
    int listen_fd = -1;
    unsigned port = 0;
    int wake[2] = {-1, -1}; /* written by samda_scp_stop() to interrupt the listener's poll */
    std::thread listener;
    std::atomic<bool> aborting{false};

    std::mutex mu;
    std::condition_variable cv;
    std::list<std::unique_ptr<worker>> workers; /* guarded by mu */
    unsigned active = 0;                        /* guarded by mu */
    std::list<std::unique_ptr<handshake>> handshakes; /* guarded by mu */
    bool stopping = false;                            /* guarded by mu: no more handshakes handed on */

    std::atomic<uint64_t> n_accepted{0}, n_rejected{0}, n_aborted{0}, n_echo{0}, n_store_ok{0},
        n_store_failed{0}, n_bytes{0};
};

namespace {

template <size_t N>
void copy_str(char (&dst)[N], const char *s)
{
    std::snprintf(dst, N, "%s", s ? s : "");
}

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

/* DCMTK keeps an association's socket descriptor protected; samda needs it to set TCP_NODELAY and to
 * wake a blocked read when stopping. A derived class may name the protected member function. */
struct socket_of : DcmTransportConnection {
    static int get(DcmTransportConnection *c)
    {
        DcmNativeSocketType (DcmTransportConnection::*fn)() = &socket_of::getSocket;
        return c ? (int)(c->*fn)() : -1;
    }
};

void drop(T_ASC_Association *&assoc)
{
    if (!assoc) return;
    ASC_dropSCPAssociation(assoc);
    ASC_destroyAssociation(&assoc);
    assoc = nullptr;
}

void reject(T_ASC_Association *assoc, T_ASC_RejectParametersResult result, T_ASC_RejectParametersSource source,
            T_ASC_RejectParametersReason reason)
{
    T_ASC_RejectParameters rej;
    rej.result = result;
    rej.source = source;
    rej.reason = reason;
    ASC_rejectAssociation(assoc, &rej);
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

/* ---- C-STORE ------------------------------------------------------------------------------- */

struct store_ctx {
    samda_scp *scp;
    const samda_assoc_info *info;
    T_ASC_Association *assoc;
    T_ASC_PresentationContextID pres_id;
    std::string path;
    bool end_called = false;
    bool ok = false;
    DcmDataset *detail = nullptr; /* status detail (ErrorComment) for the response */
};

void set_error_comment(store_ctx &c, const char *text)
{
    if (!text || !*text) return;
    /* (0000,0902) ErrorComment is LO: 64 characters at most. */
    char lo[SAMDA_DICOM_LO_SIZE];
    std::snprintf(lo, sizeof lo, "%s", text);
    if (!c.detail) c.detail = new DcmDataset;
    c.detail->putAndInsertString(DCM_ErrorComment, lo);
}

void report_failure(store_ctx &c, const T_DIMSE_C_StoreRQ *req, unsigned dicom_status, const samda_error &e)
{
    c.scp->n_store_failed++;
    if (!c.scp->on_store_failed) return;
    samda_store_failure f;
    f.affected_sop_class_uid = req ? req->AffectedSOPClassUID : "";
    f.affected_sop_instance_uid = req ? req->AffectedSOPInstanceUID : "";
    f.dicom_status = dicom_status;
    f.error = &e;
    c.scp->on_store_failed(c.scp->ctx, c.info, &f);
}

/* Text after "reading the DICOM header of <path>: ", for the peer (no local path in ErrorComment). */
const char *reason_only(const samda_error &e, const std::string &path)
{
    std::string prefix = "reading the DICOM header of " + path + ": ";
    if (std::strncmp(e.message, prefix.c_str(), prefix.size()) == 0) return e.message + prefix.size();
    return e.message;
}

/* The end of one C-STORE: the data set is in c.path; decide the response. */
void finish_store(store_ctx &c, T_DIMSE_C_StoreRQ *req, T_DIMSE_C_StoreRSP *rsp)
{
    samda_scp *scp = c.scp;
    if (rsp->DimseStatus != status_success) {
        /* DCMTK could not create the file: it already chose Out of Resources. */
        samda_error e;
        samda_fail(&e, SAMDA_EIO,
                   "receiving a C-STORE data set: cannot create or write a temporary file in %s (disk full?)",
                   scp->temp_dir.c_str());
        set_error_comment(c, "cannot create a temporary file");
        unlink(c.path.c_str()); /* a partly written data set (disk full) */
        report_failure(c, req, rsp->DimseStatus, e);
        return;
    }
    struct stat sb;
    uint64_t size = stat(c.path.c_str(), &sb) == 0 ? (uint64_t)sb.st_size : 0;
    scp->n_bytes += size;

    samda_dicom_header hdr;
    samda_error e;
    samda_error_clear(&e);
    samda_status st = samda_dicom_read_header(c.path.c_str(), &hdr, &e);
    unsigned status = 0;
    if (st == SAMDA_OK && std::strcmp(hdr.sop_instance_uid, req->AffectedSOPInstanceUID) != 0) {
        st = samda_fail(&e, SAMDA_EBADDICOM, "C-STORE: the data set's SOPInstanceUID differs from the command's "
                        "AffectedSOPInstanceUID %s", req->AffectedSOPInstanceUID);
        status = status_does_not_match_sop_class;
    } else if (st == SAMDA_OK && std::strcmp(hdr.sop_class_uid, req->AffectedSOPClassUID) != 0) {
        st = samda_fail(&e, SAMDA_EBADDICOM, "C-STORE: the data set's SOPClassUID %s differs from the command's "
                        "AffectedSOPClassUID %s", hdr.sop_class_uid, req->AffectedSOPClassUID);
        status = status_does_not_match_sop_class;
    }
    if (st != SAMDA_OK) {
        if (!status) status = samda_status_dicom(st);
        rsp->DimseStatus = (DIC_US)status;
        set_error_comment(c, reason_only(e, c.path));
        unlink(c.path.c_str());
        report_failure(c, req, status, e);
        return;
    }

    samda_store_request sreq;
    sreq.path = c.path.c_str();
    sreq.file_size = size;
    sreq.header = &hdr;
    sreq.affected_sop_class_uid = req->AffectedSOPClassUID;
    sreq.affected_sop_instance_uid = req->AffectedSOPInstanceUID;
    char ts[SAMDA_DICOM_UID_SIZE] = "";
    T_ASC_PresentationContext pc;
    if (ASC_findAcceptedPresentationContext(c.assoc->params, c.pres_id, &pc).good())
        copy_str(ts, pc.acceptedTransferSyntax);
    sreq.transfer_syntax_uid = ts;
    sreq.message_id = req->MessageID;

    samda_store_response sresp;
    std::memset(&sresp, 0, sizeof sresp);
    samda_status rc = SAMDA_OK;
    if (scp->on_store) rc = scp->on_store(scp->ctx, c.info, &sreq, &sresp);
    status = sresp.dicom_status ? sresp.dicom_status : samda_status_dicom(rc);
    rsp->DimseStatus = (DIC_US)status;
    if (status != status_success) set_error_comment(c, sresp.message[0] ? sresp.message : samda_status_str(rc));
    if (!sresp.file_taken) unlink(c.path.c_str());
    /* Success and warnings (0xB...) count as stored; failures were reported by the callback itself. */
    if (status == status_success || (status & 0xF000) == 0xB000) {
        scp->n_store_ok++;
        c.ok = true;
    } else {
        scp->n_store_failed++;
    }
}

void store_progress(void *data, T_DIMSE_StoreProgress *progress, T_DIMSE_C_StoreRQ *req, char *, DcmDataset **,
                    T_DIMSE_C_StoreRSP *rsp, DcmDataset **detail)
{
    if (progress->state != DIMSE_StoreEnd) return;
    store_ctx &c = *static_cast<store_ctx *>(data);
    c.end_called = true;
    try {
        finish_store(c, req, rsp);
    } catch (const std::bad_alloc &) {
        rsp->DimseStatus = (DIC_US)samda_status_dicom(SAMDA_ENOMEM);
        unlink(c.path.c_str());
        c.scp->n_store_failed++;
    } catch (...) {
        rsp->DimseStatus = (DIC_US)samda_status_dicom(SAMDA_EINTERNAL);
        unlink(c.path.c_str());
        c.scp->n_store_failed++;
    }
    *detail = c.detail;
}

enum store_outcome { STORE_CONTINUE, STORE_BROKEN, STORE_TIMED_OUT };

/* Receives one data set and answers it; says whether the association can still be used. */
store_outcome handle_store(samda_scp *scp, worker &w, const samda_assoc_info &info, T_ASC_PresentationContextID pres_id,
                  T_DIMSE_C_StoreRQ &req, unsigned &n_stored, unsigned &n_failed)
{
    std::string tmpl = scp->temp_dir + "/samda-rx-" + std::to_string(info.id) + "-XXXXXX";
    std::vector<char> name(tmpl.begin(), tmpl.end());
    name.push_back('\0');
    int fd = mkstemp(name.data());
    store_ctx c;
    c.scp = scp;
    c.info = &info;
    c.assoc = w.assoc;
    c.pres_id = pres_id;
    if (fd >= 0) {
        close(fd);
        c.path = name.data();
    } else {
        /* DCMTK then fails to create the file, drains the data set and answers Out of Resources. */
        c.path = scp->temp_dir + "/.samda-unwritable";
    }
    int timeout = (int)scp->dimse_timeout_s;
    OFCondition cond = DIMSE_storeProvider(w.assoc, pres_id, &req, c.path.c_str(), 1 /* meta header */, nullptr,
                                           store_progress, &c, DIMSE_NONBLOCKING, timeout);
    delete c.detail;
    if (c.ok) n_stored++;
    else n_failed++;
    if (cond == DIMSE_OUTOFRESOURCES && c.end_called) {
        /* The data set could not be written (disk full): DCMTK drained the rest of it and answered
         * Out of Resources, so the association is still in step; the peer may go on or release. */
        return STORE_CONTINUE;
    }
    if (cond.bad()) {
        /* Receive failed (the final callback did not run, or the response could not be sent). */
        if (!c.end_called) {
            unlink(c.path.c_str());
            samda_error e;
            samda_fail(&e, SAMDA_ENETWORK, "receiving a C-STORE data set: %s", cond.text());
            report_failure(c, &req, 0, e);
        }
        return (cond == DIMSE_NODATAAVAILABLE || cond == DUL_READTIMEOUT) ? STORE_TIMED_OUT : STORE_BROKEN;
    }
    return STORE_CONTINUE;
}

/* ---- one association ------------------------------------------------------------------------- */

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
        for (;;) {
            if (scp->aborting) {
                ASC_abortAssociation(w.assoc);
                break;
            }
            T_DIMSE_Message msg;
            T_ASC_PresentationContextID pres_id = 0;
            OFCondition cond = DIMSE_receiveCommand(w.assoc, DIMSE_NONBLOCKING, (int)scp->idle_timeout_s, &pres_id,
                                                    &msg, nullptr);
            if (scp->aborting) {
                ASC_abortAssociation(w.assoc);
                break;
            }
            if (cond == DIMSE_NODATAAVAILABLE) {
                ASC_abortAssociation(w.assoc);
                how = SAMDA_ASSOC_TIMED_OUT;
                break;
            }
            if (cond == DUL_PEERREQUESTEDRELEASE) {
                ASC_acknowledgeRelease(w.assoc);
                how = SAMDA_ASSOC_RELEASED;
                break;
            }
            if (cond == DUL_PEERABORTEDASSOCIATION) break;
            if (cond.bad()) {
                ASC_abortAssociation(w.assoc);
                break;
            }
            if (msg.CommandField == DIMSE_C_ECHO_RQ) {
                scp->n_echo++;
                if (DIMSE_sendEchoResponse(w.assoc, pres_id, &msg.msg.CEchoRQ, STATUS_Success, nullptr).bad()) {
                    ASC_abortAssociation(w.assoc);
                    break;
                }
            } else if (msg.CommandField == DIMSE_C_STORE_RQ) {
                store_outcome o = handle_store(scp, w, info, pres_id, msg.msg.CStoreRQ, n_stored, n_failed);
                if (o != STORE_CONTINUE) {
                    ASC_abortAssociation(w.assoc);
                    if (o == STORE_TIMED_OUT && !scp->aborting) how = SAMDA_ASSOC_TIMED_OUT;
                    break;
                }
            } else {
                /* Only C-ECHO and C-STORE were negotiated; anything else is a protocol error. */
                ASC_abortAssociation(w.assoc);
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

void worker_main(samda_scp *scp, worker *w, uint64_t id)
{
    dicom_guard_void([&] { serve(scp, *w, id); });
    drop(w->assoc);
    std::lock_guard<std::mutex> lock(scp->mu);
    w->done = true;
    scp->active--;
    scp->cv.notify_all();
}

/* ---- listener ---------------------------------------------------------------------------------- */

void reap(samda_scp *scp, bool all)
{
    std::list<std::unique_ptr<worker>> finished;
    {
        std::lock_guard<std::mutex> lock(scp->mu);
        for (auto it = scp->workers.begin(); it != scp->workers.end();) {
            if (all || (*it)->done) {
                finished.push_back(std::move(*it));
                it = scp->workers.erase(it);
            } else {
                ++it;
            }
        }
    }
    for (auto &w : finished)
        if (w->thread.joinable()) w->thread.join();
}

/* DCMTK reads an already accepted socket from this process-wide setting (dul.h); the mutex keeps two
 * SCPs in one process from handing each other their sockets. */
std::mutex &external_socket_mutex()
{
    static std::mutex mu;
    return mu;
}

/* Hands DCMTK an accepted connection whose first PDU is buffered (with TLS: whose handshake is done
 * and whose A-ASSOCIATE-RQ record is buffered); DCMTK owns fd from here on. */
void accept_one(samda_scp *scp, int fd)
{
    T_ASC_Association *assoc = nullptr;
    OFCondition cond;
    {
        std::lock_guard<std::mutex> lock(external_socket_mutex());
        dcmExternalSocketHandle.set(fd);
        cond = ASC_receiveAssociation(scp->net, &assoc, (int)scp->max_pdu, nullptr, nullptr,
                                      scp->tls ? OFTrue : OFFalse, DUL_NOBLOCK, 0);
        dcmExternalSocketHandle.set(DCMNET_INVALID_SOCKET);
    }
    if (scp->tls) {
        /* DCMTK took fd's prepared connection unless it failed before asking for it (getpeername:
         * the peer is already gone); then the connection is still ours to close. */
        dicom_tls_discard(scp->tls_layer, fd);
    }
    if (cond.bad()) {
        /* Not DICOM, or already closed: nothing was established. DCMTK closes the socket once it made
         * a connection of it; it did not when the peer was already gone (getpeername failed). */
        if (!scp->tls && !assoc && cond.code() == DULC_TCPINITERROR) close(fd);
        drop(assoc);
        return;
    }
    uint64_t id = next_association_id++;
    std::unique_ptr<worker> w(new worker);
    w->assoc = assoc;
    worker *raw = w.get();
    {
        std::unique_lock<std::mutex> lock(scp->mu);
        if (scp->active < scp->max_associations) {
            scp->active++;
            scp->workers.push_back(std::move(w));
            try {
                raw->thread = std::thread(worker_main, scp, raw, id);
            } catch (...) {
                scp->active--;
                scp->workers.pop_back();
                lock.unlock();
                scp->n_rejected++;
                reject_verdict(assoc, SAMDA_ASSOC_REJECT_BUSY);
                drop(assoc);
            }
            return;
        }
    }
    /* Over the limit: PS3.8 7.1.1.9 transient rejection, "local limit exceeded". */
    samda_assoc_info info;
    fill_info(info, assoc, id);
    scp->n_rejected++;
    reject_verdict(assoc, SAMDA_ASSOC_REJECT_BUSY);
    drop(assoc);
    if (scp->on_association_end) scp->on_association_end(scp->ctx, &info, SAMDA_ASSOC_REJECTED, 0, 0);
}

/* A connection accepted but not yet handed to DCMTK. */
struct pending_conn {
    int fd;
    std::chrono::steady_clock::time_point deadline;
};

/* Connections allowed to be still sending their first PDU at once. */
size_t pending_limit(const samda_scp *scp) { return std::max<size_t>(64, 4 * (size_t)scp->max_associations); }

/* Bytes of the first PDU waited for at most before DCMTK reads the rest itself: what a socket's
 * default receive buffer surely holds (a request with 128 presentation contexts is about 15 KiB). */
const size_t peek_limit = 32768;

enum first_pdu { FIRST_PDU_WAIT, FIRST_PDU_READY, FIRST_PDU_GONE };

/* Whether the first PDU (plain DICOM) or the first TLS record on fd has arrived whole (up to
 * peek_limit bytes), without consuming anything. */
first_pdu first_pdu_state(int fd, bool tls)
{
    unsigned char h[6];
    ssize_t n = recv(fd, h, sizeof h, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0) return FIRST_PDU_GONE;
    if (n < 0) return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? FIRST_PDU_WAIT : FIRST_PDU_GONE;
    size_t need;
    if (tls) {
        if (n < 5) return FIRST_PDU_WAIT;
        need = 5 + ((size_t)h[3] << 8 | h[4]); /* TLS record: type, version (2 bytes), length (2 bytes) */
    } else {
        if (n < 6) return FIRST_PDU_WAIT;
        need = 6 + ((size_t)h[2] << 24 | (size_t)h[3] << 16 | (size_t)h[4] << 8 | h[5]); /* PS3.8 9.3.2 */
    }
    if (need > peek_limit) need = peek_limit;
    int avail = 0;
    if (ioctl(fd, FIONREAD, &avail) != 0) return FIRST_PDU_GONE;
    return (size_t)avail >= need ? FIRST_PDU_READY : FIRST_PDU_WAIT;
}

/* A TLS connection's thread: server handshake, then the wait for the first record after it (the
 * A-ASSOCIATE-RQ), then the association goes to DCMTK. The listener shuts fd down at the deadline,
 * which ends a blocked handshake or wait here. */
void handshake_main(samda_scp *scp, handshake *h)
{
    int fd;
    std::chrono::steady_clock::time_point deadline;
    {
        std::lock_guard<std::mutex> lock(scp->mu);
        fd = h->fd;
        deadline = h->deadline;
    }
    std::string why;
    bool ready = false, gone = false;
    if (dicom_tls_server_handshake(scp->tls_layer, fd, why)) {
        for (;;) {
            /* the A-ASSOCIATE-RQ: a whole record in the socket, or already read by OpenSSL */
            const first_pdu st = first_pdu_state(fd, true);
            if (st == FIRST_PDU_GONE) {
                gone = true; /* the peer closed: not counted, as before the handshake */
                break;
            }
            if (st == FIRST_PDU_READY || dicom_tls_decrypted_pending(scp->tls_layer, fd)) {
                ready = true;
                break;
            }
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0) break;
            struct pollfd p = {fd, POLLIN | POLLRDHUP, 0};
            int n = poll(&p, 1, (int)std::min<long long>(left.count(), 1000));
            if (n < 0 && errno != EINTR) break;
            if (n > 0 && (p.revents & (POLLERR | POLLHUP | POLLNVAL))) break;
            /* part of the record is in: look again shortly (poll stays readable until it is read) */
            if (n > 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
    }
    bool hand_on;
    {
        std::lock_guard<std::mutex> lock(scp->mu);
        h->fd = -1; /* the listener no longer shuts it down: closed or DCMTK's from here */
        hand_on = ready && !scp->stopping;
        if (!ready && !gone && !h->cut) scp->n_rejected++; /* refused: certificate, protocol */
    }
    if (hand_on) {
        dicom_guard_void([&] { accept_one(scp, fd); });
    } else {
        dicom_tls_discard(scp->tls_layer, fd);
    }
    std::lock_guard<std::mutex> lock(scp->mu);
    h->done = true;
}

/* Starts the handshake thread of a TLS connection whose ClientHello is in; over the limit, the
 * oldest handshake still running is shut down first. */
void start_handshake(samda_scp *scp, const pending_conn &c)
{
    std::unique_ptr<handshake> h(new handshake);
    h->fd = c.fd;
    h->deadline = c.deadline;
    handshake *raw = h.get();
    std::lock_guard<std::mutex> lock(scp->mu);
    size_t running = 0;
    for (auto &x : scp->handshakes) running += x->done ? 0 : 1;
    if (running >= pending_limit(scp))
        for (auto &x : scp->handshakes)
            if (!x->done && x->fd >= 0) {
                scp->n_rejected++;
                x->cut = true;
                shutdown(x->fd, SHUT_RDWR);
                x->fd = -1;
                break;
            }
    scp->handshakes.push_back(std::move(h));
    try {
        raw->thread = std::thread(handshake_main, scp, raw);
    } catch (...) {
        scp->handshakes.pop_back();
        scp->n_rejected++;
        close(c.fd);
    }
}

/* Joins finished handshake threads and shuts down the late ones (all of them with all). */
void reap_handshakes(samda_scp *scp, bool all)
{
    std::list<std::unique_ptr<handshake>> finished;
    {
        std::lock_guard<std::mutex> lock(scp->mu);
        auto now = std::chrono::steady_clock::now();
        for (auto it = scp->handshakes.begin(); it != scp->handshakes.end();) {
            handshake &h = **it;
            if (!h.done && h.fd >= 0 && (all || now >= h.deadline)) {
                if (!all) scp->n_rejected++; /* too slow: acse_timeout passed (counted before the peer sees it) */
                h.cut = true;
                shutdown(h.fd, SHUT_RDWR);
                h.fd = -1; /* once is enough; the thread still closes it */
            }
            if (all || h.done) {
                finished.push_back(std::move(*it));
                it = scp->handshakes.erase(it);
            } else {
                ++it;
            }
        }
    }
    for (auto &h : finished)
        if (h->thread.joinable()) h->thread.join();
}

/* A pending connection's new state; ready ones go to DCMTK (TLS ones to their handshake thread),
 * gone or late ones are closed. Returns whether it is still pending. */
bool settle(samda_scp *scp, int ep, const pending_conn &c, bool check, std::chrono::steady_clock::time_point now)
{
    first_pdu st = check ? first_pdu_state(c.fd, scp->tls) : FIRST_PDU_WAIT;
    if (st == FIRST_PDU_WAIT && now < c.deadline) return true;
    if (ep >= 0) epoll_ctl(ep, EPOLL_CTL_DEL, c.fd, nullptr);
    if (st == FIRST_PDU_READY) {
        if (scp->tls)
            dicom_guard_void([&] { start_handshake(scp, c); });
        else
            dicom_guard_void([&] { accept_one(scp, c.fd); });
    } else {
        /* counted before the close: a peer that sees its connection end finds the count up to date */
        if (st != FIRST_PDU_GONE) scp->n_rejected++; /* too slow: acse_timeout passed */
        close(c.fd);
    }
    return false;
}

/* Pending connections are watched edge-triggered (epoll): a peer that sent part of its request makes
 * its socket readable for good, and only the arrival of more data is worth a look. */
void listener_main(samda_scp *scp)
{
    std::vector<pending_conn> pending;
    const auto acse = std::chrono::seconds(scp->acse_timeout_s);
    int ep = epoll_create1(EPOLL_CLOEXEC); /* without it: every pending socket checked every 20 ms */
    for (;;) {
        struct pollfd p[3] = {{scp->listen_fd, POLLIN, 0}, {scp->wake[0], POLLIN, 0}, {ep, POLLIN, 0}};
        bool handshaking;
        {
            std::lock_guard<std::mutex> lock(scp->mu);
            handshaking = !scp->handshakes.empty();
        }
        int n = poll(p, ep >= 0 ? 3 : 2, pending.empty() ? (handshaking ? 200 : 1000) : ep >= 0 ? 200 : 20);
        if (n < 0 && errno != EINTR) break;
        if (p[1].revents) break;
        reap(scp, false);
        reap_handshakes(scp, false);
        auto now = std::chrono::steady_clock::now();
        std::vector<int> moved; /* pending sockets with news since the last look */
        if (ep >= 0 && n > 0 && p[2].revents) {
            struct epoll_event ev[64];
            int k = epoll_wait(ep, ev, 64, 0);
            for (int i = 0; i < k; i++) moved.push_back(ev[i].data.fd);
        }
        size_t keep = 0;
        for (size_t i = 0; i < pending.size(); i++) {
            bool check = ep < 0 || std::find(moved.begin(), moved.end(), pending[i].fd) != moved.end();
            if (settle(scp, ep, pending[i], check, now)) pending[keep++] = pending[i];
        }
        pending.resize(keep);
        if (n > 0 && (p[0].revents & POLLIN)) {
            int fd = accept4(scp->listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
            if (fd >= 0) {
                pending_conn c = {fd, now + acse};
                /* Usually the request came with the connection: no need to wait for another event. */
                if (settle(scp, -1, c, true, now)) {
                    if (pending.size() >= pending_limit(scp)) {
                        if (ep >= 0) epoll_ctl(ep, EPOLL_CTL_DEL, pending.front().fd, nullptr);
                        scp->n_rejected++;
                        close(pending.front().fd);
                        pending.erase(pending.begin());
                    }
                    struct epoll_event ev;
                    std::memset(&ev, 0, sizeof ev);
                    ev.events = EPOLLIN | EPOLLET | EPOLLRDHUP;
                    ev.data.fd = fd;
                    if (ep >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
                        scp->n_rejected++;
                        close(fd);
                    } else {
                        pending.push_back(c);
                    }
                }
            }
        }
    }
    for (const pending_conn &c : pending) close(c.fd);
    if (ep >= 0) close(ep);
}

int open_listener(const samda_scp_params *p, unsigned &port, samda_error *err)
{
    struct sockaddr_in sa;
    std::memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)p->port);
    if (inet_pton(AF_INET, p->bind_address, &sa.sin_addr) != 1) {
        samda_fail(err, SAMDA_EINVAL, "starting the DICOM SCP: bind address \"%.64s\" is not a numeric IPv4 address",
                   p->bind_address);
        return -1;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        samda_fail(err, SAMDA_ENETWORK, "starting the DICOM SCP: socket: %s", std::strerror(errno));
        return -1;
    }
    int on = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    /* non-blocking: the listener accepts only after poll, and a connection reset in between must not
     * leave it waiting in accept() */
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 64) != 0 ||
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0) {
        int e = errno;
        close(fd);
        samda_fail(err, SAMDA_ENETWORK, "starting the DICOM SCP: cannot listen on %s:%u: %s%s", p->bind_address,
                   p->port, std::strerror(e), e == EADDRINUSE ? " (another DICOM listener on that port?)" : "");
        return -1;
    }
    socklen_t len = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &len);
    port = ntohs(sa.sin_port);
    return fd;
}

samda_status check_params(const samda_scp_params *p, samda_error *err)
{
    if (!p) return samda_fail(err, SAMDA_EINVAL, "starting the DICOM SCP: no parameters");
    if (!p->temp_dir || !*p->temp_dir)
        return samda_fail(err, SAMDA_EINVAL, "starting the DICOM SCP: temp_dir is required");
    struct stat sb;
    if (stat(p->temp_dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return samda_fail(err, SAMDA_ENOENT, "starting the DICOM SCP: temp_dir %s is not a directory", p->temp_dir);
    if (!p->bind_address) return samda_fail(err, SAMDA_EINVAL, "starting the DICOM SCP: no bind address");
    if (p->port > 65535) return samda_fail(err, SAMDA_EINVAL, "starting the DICOM SCP: port %u above 65535", p->port);
    if (p->max_associations < 1 || p->max_associations > 1024)
        return samda_fail(err, SAMDA_EINVAL, "starting the DICOM SCP: max_associations %u not between 1 and 1024",
                          p->max_associations);
    if (p->max_pdu_bytes < ASC_MINIMUMPDUSIZE || p->max_pdu_bytes > ASC_MAXIMUMPDUSIZE)
        return samda_fail(err, SAMDA_EINVAL, "starting the DICOM SCP: max_pdu_bytes %u not between %u and %u",
                          p->max_pdu_bytes, (unsigned)ASC_MINIMUMPDUSIZE, (unsigned)ASC_MAXIMUMPDUSIZE);
    if (!p->acse_timeout_s || !p->dimse_timeout_s || !p->idle_timeout_s)
        return samda_fail(err, SAMDA_EINVAL, "starting the DICOM SCP: timeouts must be at least 1 s");
    if (p->n_called_ae_titles && !p->called_ae_titles)
        return samda_fail(err, SAMDA_EINVAL, "starting the DICOM SCP: n_called_ae_titles %zu but no list",
                          p->n_called_ae_titles);
    for (size_t i = 0; i < p->n_called_ae_titles; i++) {
        const char *ae = p->called_ae_titles[i];
        size_t n = ae ? std::strlen(ae) : 0;
        if (n < 1 || n > 16 || ae[0] == ' ' || ae[n - 1] == ' ')
            return samda_fail(err, SAMDA_EINVAL, "starting the DICOM SCP: called AE title %zu \"%.32s\" must be 1 to "
                              "16 characters without leading or trailing spaces", i, ae ? ae : "");
        for (size_t k = 0; k < n; k++)
            if ((unsigned char)ae[k] < 0x20 || ae[k] == '\\' || (unsigned char)ae[k] > 0x7e)
                return samda_fail(err, SAMDA_EINVAL, "starting the DICOM SCP: called AE title %zu has a character "
                                  "not allowed in an AE title", i);
    }
    return SAMDA_OK;
}

const char *const default_called_aes[] = {"SAMDA"};

} // namespace

extern "C" void samda_scp_params_init(samda_scp_params *p)
{
    if (!p) return;
    std::memset(p, 0, sizeof *p);
    p->bind_address = "127.0.0.1";
    p->port = 11112;
    p->called_ae_titles = default_called_aes;
    p->n_called_ae_titles = 1;
    p->max_associations = 16;
    p->acse_timeout_s = 30;
    p->dimse_timeout_s = 60;
    p->idle_timeout_s = 300;
    p->max_pdu_bytes = 65536;
    p->tcp_nodelay = true;
}

extern "C" samda_scp *samda_scp_start(const samda_scp_params *p, samda_error *err)
{
    samda_scp *result = nullptr;
    dicom_guard(err, "starting the DICOM SCP", SAMDA_EINTERNAL, [&]() -> samda_status {
        samda_status st = check_params(p, err);
        if (st != SAMDA_OK) return st;
        std::unique_ptr<samda_scp> s(new samda_scp);
        s->bind_address = p->bind_address;
        for (size_t i = 0; i < p->n_called_ae_titles; i++) s->called_aes.emplace_back(p->called_ae_titles[i]);
        s->temp_dir = p->temp_dir;
        s->max_associations = p->max_associations;
        s->acse_timeout_s = p->acse_timeout_s;
        s->dimse_timeout_s = p->dimse_timeout_s;
        s->idle_timeout_s = p->idle_timeout_s;
        s->max_pdu = p->max_pdu_bytes;
        s->tcp_nodelay = p->tcp_nodelay;
        s->ctx = p->ctx;
        s->on_association = p->on_association;
        s->on_store = p->on_store;
        s->on_store_failed = p->on_store_failed;
        s->on_association_end = p->on_association_end;

        if (pipe2(s->wake, O_CLOEXEC) != 0)
            return samda_fail(err, SAMDA_EINTERNAL, "starting the DICOM SCP: pipe: %s", std::strerror(errno));
        int fd = open_listener(p, s->port, err);
        if (fd < 0) {
            close(s->wake[0]);
            close(s->wake[1]);
            return err ? err->code : SAMDA_ENETWORK;
        }
        /* DCMTK 3.6.7 always binds its acceptor socket to every interface. samda needs a chosen address
         * (loopback by default), so the network is created without a socket and given ours: the
         * PRIVATE_NETWORKKEY layout comes from DCMTK's installed dulstruc.h. */
        OFCondition cond = ASC_initializeNetwork(NET_REQUESTOR, 0, (int)p->acse_timeout_s, &s->net);
        if (cond.bad()) {
            close(fd);
            close(s->wake[0]);
            close(s->wake[1]);
            return samda_fail(err, SAMDA_ENETWORK, "starting the DICOM SCP: %s", cond.text());
        }
        PRIVATE_NETWORKKEY *key = reinterpret_cast<PRIVATE_NETWORKKEY *>(s->net->network);
        key->applicationFunction = DICOM_APPLICATION_ACCEPTOR;
        key->networkSpecific.TCP.listenSocket = fd;
        key->networkSpecific.TCP.port = (int)s->port;
        s->net->role = NET_ACCEPTOR;
        s->net->acceptorPort = (int)s->port;
        s->listen_fd = fd;
        if (p->tls) {
            st = dicom_tls_setup_acceptor(p->tls, s->net, &s->tls_layer, err);
            if (st != SAMDA_OK) {
                samda_error_prefix(err, "starting the DICOM SCP: ");
                ASC_dropNetwork(&s->net); /* closes fd */
                close(s->wake[0]);
                close(s->wake[1]);
                return st;
            }
            s->tls = true;
        }

        samda_scp *raw = s.get();
        try {
            s->listener = std::thread(listener_main, raw);
        } catch (...) {
            ASC_dropNetwork(&s->net); /* closes fd */
            close(s->wake[0]);
            close(s->wake[1]);
            throw;
        }
        result = s.release();
        return SAMDA_OK;
    });
    return result;
}

extern "C" unsigned samda_scp_port(const samda_scp *scp) { return scp ? scp->port : 0; }

extern "C" void samda_scp_counters_get(const samda_scp *scp, samda_scp_counters *out)
{
    if (!out) return;
    std::memset(out, 0, sizeof *out);
    if (!scp) return;
    out->associations_accepted = scp->n_accepted;
    out->associations_rejected = scp->n_rejected;
    out->associations_aborted = scp->n_aborted;
    out->echo_requests = scp->n_echo;
    out->stores_ok = scp->n_store_ok;
    out->stores_failed = scp->n_store_failed;
    out->bytes_received = scp->n_bytes;
    samda_scp *s = const_cast<samda_scp *>(scp);
    std::lock_guard<std::mutex> lock(s->mu);
    out->associations_active = s->active;
}

extern "C" void samda_scp_stop(samda_scp *scp, unsigned grace_ms)
{
    if (!scp) return;
    dicom_guard_void([&] {
        /* 1. No new associations: stop the listener, then close the port. */
        ssize_t r = write(scp->wake[1], "x", 1);
        (void)r;
        if (scp->listener.joinable()) scp->listener.join();
        {
            std::lock_guard<std::mutex> lock(scp->mu);
            scp->stopping = true;
        }
        reap_handshakes(scp, true); /* TLS connections not yet handed on are closed */
        PRIVATE_NETWORKKEY *key = reinterpret_cast<PRIVATE_NETWORKKEY *>(scp->net->network);
        close(scp->listen_fd);
        key->networkSpecific.TCP.listenSocket = -1;
        /* 2. Let running associations finish for grace_ms. */
        {
            std::unique_lock<std::mutex> lock(scp->mu);
            scp->cv.wait_for(lock, std::chrono::milliseconds(grace_ms), [&] { return scp->active == 0; });
            /* 3. Abort the rest: waking their blocked reads makes each thread send A-ABORT and end. */
            scp->aborting = true;
            for (auto &w : scp->workers)
                if (w->fd >= 0) shutdown(w->fd, SHUT_RD);
        }
        reap(scp, true);
        ASC_dropNetwork(&scp->net);
        close(scp->wake[0]);
        close(scp->wake[1]);
    });
    delete scp;
}
