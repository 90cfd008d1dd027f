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
 * Slow peers after set-up: each association's thread receives data sets PDV by PDV itself (not with
 * DIMSE_storeProvider), so that a whole data set has a deadline (message_timeout) and a broken one
 * (odd-length PDV) can still be answered; the listener also enforces every association's deadline
 * by shutting a late one's socket down (enforce_deadlines). One calling AE title holds at most
 * max_associations_per_peer of the max_associations slots.
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
#include <dcmtk/dcmdata/dcelem.h>
#include <dcmtk/dcmdata/dcostrmf.h>
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

/* PS3.4 B.2.3: DIMSE status codes samda sends itself (others come from common/status.h). */
const unsigned status_success = 0x0000;
const unsigned status_does_not_match_sop_class = 0xA900;
const unsigned status_cannot_understand = 0xC000;

using steady = std::chrono::steady_clock;

struct worker {
    std::thread thread;
    T_ASC_Association *assoc = nullptr;
    std::string calling_ae; /* set before the thread starts, then read-only (the per-peer count) */
    int fd = -1;        /* the association's socket while established; guarded by samda_scp::mu */
    bool done = false;  /* guarded by samda_scp::mu */
    /* The deadline of the wait in progress (arm_deadline()); guarded by samda_scp::mu. */
    bool has_deadline = false;
    steady::time_point deadline;
    bool cut = false; /* the listener shut the read side down at the deadline */
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
    unsigned max_associations_per_peer = 0;
    unsigned acse_timeout_s = 0;
    unsigned dimse_timeout_s = 0;
    unsigned message_timeout_s = 0;
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
    samda_scp_event_fn on_event = nullptr;

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

/* ---- ErrorComment -------------------------------------------------------------------------------- */

bool is_path_token(const std::string &t, const std::string &local_path)
{
    if (!local_path.empty() && t.find(local_path) != std::string::npos) return true;
    if (t[0] == '/' || t[0] == '~' || t.compare(0, 2, "./") == 0 || t.compare(0, 3, "../") == 0) return true;
    return std::count(t.begin(), t.end(), '/') >= 2; /* "data/objects/1.2/3.4/5.dcm", not "I/O" */
}

bool is_uid_token(const std::string &t)
{
    size_t dots = 0;
    for (char ch : t) {
        if (ch == '.') dots++;
        else if (ch < '0' || ch > '9') return false;
    }
    return dots >= 2 && t.front() != '.' && t.back() != '.'; /* three components or more */
}

/* s without the space-separated words that drop() selects (punctuation around a word is kept:
 * "cannot open /x/y: reason" -> "cannot open: reason"). */
template <class F> std::string without_words(const std::string &s, F drop)
{
    std::string out;
    for (size_t i = 0; i <= s.size();) {
        size_t j = s.find(' ', i);
        if (j == std::string::npos) j = s.size();
        std::string w = s.substr(i, j - i);
        size_t end = w.size(), begin = 0;
        while (end && std::strchr(":,;)\"'", w[end - 1])) end--;
        while (begin < end && std::strchr("(\"'", w[begin])) begin++;
        bool glue = false;
        if (begin < end && drop(w.substr(begin, end - begin))) {
            glue = begin == 0; /* its trailing punctuation goes to the word before */
            w = w.substr(0, begin) + w.substr(end);
        }
        if (!w.empty()) {
            if (!out.empty() && !glue) out += ' ';
            out += w;
        }
        i = j + 1;
    }
    return out;
}

/* An error message made fit for (0000,0902) ErrorComment, which the peer shows and logs: LO, so at
 * most 64 characters without backslash or control characters; no local path (the temporary file,
 * anything with directories in it); and when it is still too long the UIDs go first, so that the
 * cause survives the cut. */
std::string error_comment(const char *msg, const std::string &local_path)
{
    std::string s = msg ? msg : "";
    std::string prefix = "reading the DICOM header of " + local_path + ": ";
    if (!local_path.empty() && s.compare(0, prefix.size(), prefix) == 0) s.erase(0, prefix.size());
    s = without_words(s, [&](const std::string &w) { return is_path_token(w, local_path); });
    for (char &ch : s)
        if (ch == '\\') ch = '/';
        else if ((unsigned char)ch < 0x20 || (unsigned char)ch > 0x7e) ch = '?';
    if (s.size() > SAMDA_DICOM_LO_SIZE - 1) s = without_words(s, is_uid_token);
    if (s.size() > SAMDA_DICOM_LO_SIZE - 1) s.resize(SAMDA_DICOM_LO_SIZE - 1);
    while (!s.empty() && s.back() == ' ') s.pop_back();
    return s;
}

/* ---- C-STORE ------------------------------------------------------------------------------- */

struct store_ctx {
    samda_scp *scp;
    const samda_assoc_info *info;
    T_ASC_Association *assoc;
    T_ASC_PresentationContextID pres_id;
    std::string path;
    unsigned status = status_success; /* of the response */
    std::string comment;              /* its ErrorComment when it is a failure */
    bool ok = false;                  /* stored (success or warning) */
};

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

/* A failure the SCP decides itself: the response's status and comment, and on_store_failed. */
void refuse(store_ctx &c, const T_DIMSE_C_StoreRQ *req, unsigned status, const samda_error &e)
{
    c.status = status;
    c.comment = error_comment(e.message, c.path);
    report_failure(c, req, status, e);
}

/* The data set is whole in c.path: check it, hand it to on_store, decide the response. */
void finish_store(store_ctx &c, const T_DIMSE_C_StoreRQ &req)
{
    samda_scp *scp = c.scp;
    struct stat sb;
    uint64_t size = stat(c.path.c_str(), &sb) == 0 ? (uint64_t)sb.st_size : 0;
    scp->n_bytes += size;

    samda_dicom_header hdr;
    samda_error e;
    samda_error_clear(&e);
    samda_status st = samda_dicom_read_header(c.path.c_str(), &hdr, &e);
    unsigned status = 0;
    if (st == SAMDA_OK && std::strcmp(hdr.sop_instance_uid, req.AffectedSOPInstanceUID) != 0) {
        st = samda_fail(&e, SAMDA_EBADDICOM, "(0008,0018) SOPInstanceUID differs from AffectedSOPInstanceUID %s",
                        req.AffectedSOPInstanceUID);
        status = status_does_not_match_sop_class;
    } else if (st == SAMDA_OK && std::strcmp(hdr.sop_class_uid, req.AffectedSOPClassUID) != 0) {
        st = samda_fail(&e, SAMDA_EBADDICOM, "(0008,0016) SOPClassUID %s differs from AffectedSOPClassUID %s",
                        hdr.sop_class_uid, req.AffectedSOPClassUID);
        status = status_does_not_match_sop_class;
    }
    if (st != SAMDA_OK) {
        unlink(c.path.c_str());
        refuse(c, &req, status ? status : samda_status_dicom(st), e);
        return;
    }

    samda_store_request sreq;
    sreq.path = c.path.c_str();
    sreq.file_size = size;
    sreq.header = &hdr;
    sreq.affected_sop_class_uid = req.AffectedSOPClassUID;
    sreq.affected_sop_instance_uid = req.AffectedSOPInstanceUID;
    char ts[SAMDA_DICOM_UID_SIZE] = "";
    T_ASC_PresentationContext pc;
    if (ASC_findAcceptedPresentationContext(c.assoc->params, c.pres_id, &pc).good())
        copy_str(ts, pc.acceptedTransferSyntax);
    sreq.transfer_syntax_uid = ts;
    sreq.message_id = req.MessageID;

    samda_store_response sresp;
    std::memset(&sresp, 0, sizeof sresp);
    samda_status rc = SAMDA_OK;
    if (scp->on_store) rc = scp->on_store(scp->ctx, c.info, &sreq, &sresp);
    sresp.message[sizeof sresp.message - 1] = '\0';
    status = sresp.dicom_status ? sresp.dicom_status : samda_status_dicom(rc);
    c.status = status;
    if (!sresp.file_taken) unlink(c.path.c_str());
    /* Success and warnings (0xB...) count as stored; failures were reported by the callback itself. */
    if (status == status_success || (status & 0xF000) == 0xB000) {
        scp->n_store_ok++;
        c.ok = true;
    } else {
        scp->n_store_failed++;
        /* the callback's own words when it gave some; else at least the kind of failure */
        c.comment = error_comment(sresp.message[0] ? sresp.message : samda_status_str(rc), c.path);
        if (c.comment.empty()) c.comment = samda_status_str(rc == SAMDA_OK ? SAMDA_EINTERNAL : rc);
    }
}

/* Sends the C-STORE-RSP. The Affected SOP Class and Instance UIDs are echoed only when they fit
 * (1 to 64 characters): DCMTK refuses to send a response whose UIDs do not. */
bool send_store_response(T_ASC_Association *assoc, T_ASC_PresentationContextID pres_id, const T_DIMSE_C_StoreRQ &req,
                         unsigned status, const std::string &comment)
{
    T_DIMSE_Message msg;
    std::memset(&msg, 0, sizeof msg);
    msg.CommandField = DIMSE_C_STORE_RSP;
    T_DIMSE_C_StoreRSP &rsp = msg.msg.CStoreRSP;
    rsp.MessageIDBeingRespondedTo = req.MessageID;
    rsp.DimseStatus = (DIC_US)status;
    rsp.DataSetType = DIMSE_DATASET_NULL;
    size_t n = strnlen(req.AffectedSOPClassUID, sizeof req.AffectedSOPClassUID);
    if (n >= 1 && n <= DIC_UI_LEN) {
        copy_str(rsp.AffectedSOPClassUID, req.AffectedSOPClassUID);
        rsp.opts |= O_STORE_AFFECTEDSOPCLASSUID;
    }
    n = strnlen(req.AffectedSOPInstanceUID, sizeof req.AffectedSOPInstanceUID);
    if (n >= 1 && n <= DIC_UI_LEN) {
        copy_str(rsp.AffectedSOPInstanceUID, req.AffectedSOPInstanceUID);
        rsp.opts |= O_STORE_AFFECTEDSOPINSTANCEUID;
    }
    if (req.opts & O_STORE_RQ_BLANK_PADDING) rsp.opts |= O_STORE_RSP_BLANK_PADDING;
    std::unique_ptr<DcmDataset> detail;
    if (status != status_success && !comment.empty()) {
        detail.reset(new DcmDataset);
        detail->putAndInsertString(DCM_ErrorComment, comment.c_str());
    }
    return DIMSE_sendMessageUsingMemoryData(assoc, pres_id, &msg, detail.get(), nullptr, nullptr, nullptr).good();
}

enum pdv_read { PDV_OK, PDV_NONE, PDV_FAILED };

/* The next PDV: from the PDU already read, else from a new PDU, waiting at most timeout_s for it
 * (what DCMTK's DIMSE layer does inside DIMSE_receiveDataSetInFile, which samda cannot use: it gives
 * up at an odd-length PDV without reading the rest of the data set, so no response can follow). */
pdv_read next_pdv(T_ASC_Association *assoc, int timeout_s, DUL_PDV &pdv, OFCondition &cond)
{
    if (DUL_NextPDV(&assoc->DULassociation, &pdv).good()) return PDV_OK;
    if (!ASC_dataWaiting(assoc, timeout_s)) return PDV_NONE;
    cond = DUL_ReadPDVs(&assoc->DULassociation, nullptr, DUL_NOBLOCK, timeout_s);
    if (cond != DUL_PDATAPDUARRIVED) return PDV_FAILED;
    cond = DUL_NextPDV(&assoc->DULassociation, &pdv);
    return cond.good() ? PDV_OK : PDV_FAILED;
}

/* RX_GONE: the peer aborted, or samda_scp_stop() cut the connection (no event: not a fault) */
enum rx_state { RX_WHOLE, RX_BROKEN, RX_TIMED_OUT, RX_GONE };

struct rx_result {
    rx_state state = RX_WHOLE;
    std::string problem;       /* RX_WHOLE but not usable (the response names it) */
    bool write_failed = false; /* RX_WHOLE, but writing the temporary file failed */
    std::string why;           /* not RX_WHOLE: the cause */
};

/* Receives one data set up to its last PDV, writing it to out (NULL: read and discard). A PDV of odd
 * length or on another presentation context than the command's makes the data set unusable, but it
 * is still read to its end so that the association stays in step and a response can be sent. */
rx_result receive_dataset(samda_scp *scp, worker &w, T_ASC_PresentationContextID cmd_pres_id, DcmOutputStream *out,
                          steady::time_point deadline)
{
    rx_result r;
    bool writing = out != nullptr;
    char buf[160];
    for (;;) {
        auto left_ms = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady::now()).count();
        bool late = left_ms <= 0;
        DUL_PDV pdv;
        OFCondition cond = EC_Normal;
        pdv_read rd = PDV_FAILED;
        if (!late) {
            int timeout = (int)std::min<long long>(scp->dimse_timeout_s, (left_ms + 999) / 1000);
            rd = next_pdv(w.assoc, timeout, pdv, cond);
        }
        bool cut;
        {
            std::lock_guard<std::mutex> lock(scp->mu);
            cut = w.cut;
        }
        if (late || cut || (rd != PDV_OK && steady::now() >= deadline)) {
            r.state = RX_TIMED_OUT;
            std::snprintf(buf, sizeof buf, "C-STORE data set not complete within message_timeout (%u s)",
                          scp->message_timeout_s);
            r.why = buf;
            return r;
        }
        if (rd == PDV_NONE) {
            r.state = RX_TIMED_OUT;
            std::snprintf(buf, sizeof buf, "nothing of the C-STORE data set for dimse_timeout (%u s)",
                          scp->dimse_timeout_s);
            r.why = buf;
            return r;
        }
        if (rd == PDV_FAILED) {
            r.state = cond == DUL_PEERABORTEDASSOCIATION ? RX_GONE : RX_BROKEN;
            r.why = cond == DUL_PEERREQUESTEDRELEASE ? "A-RELEASE-RQ in the middle of a C-STORE data set"
                                                     : std::string("receiving a C-STORE data set: ") + cond.text();
            return r;
        }
        if (pdv.pdvType != DUL_DATASETPDV) {
            r.state = RX_BROKEN;
            r.why = "a command PDV arrived in the middle of a C-STORE data set";
            return r;
        }
        if (r.problem.empty() && pdv.presentationContextID != cmd_pres_id) {
            std::snprintf(buf, sizeof buf, "data set sent on presentation context %u, command on %u",
                          (unsigned)pdv.presentationContextID, (unsigned)cmd_pres_id);
            r.problem = buf;
            writing = false;
        }
        if (r.problem.empty() && pdv.fragmentLength % 2 != 0) {
            /* every DICOM value has an even length, so an odd fragment means the stream is corrupt */
            std::snprintf(buf, sizeof buf, "data set PDV of odd length (%lu bytes)", pdv.fragmentLength);
            r.problem = buf;
            writing = false;
        }
        if (writing && pdv.fragmentLength) {
            offile_off_t n = out->write(pdv.data, (offile_off_t)pdv.fragmentLength);
            if (!out->good() || n != (offile_off_t)pdv.fragmentLength) {
                r.write_failed = true;
                writing = false;
            }
        }
        if (pdv.lastPDV) return r;
    }
}

enum store_outcome { STORE_CONTINUE, STORE_BROKEN, STORE_TIMED_OUT };

/* After a data set that did not arrive whole: the instance is gone, say why; the caller aborts. */
store_outcome lost_dataset(store_ctx &c, const T_DIMSE_C_StoreRQ *req, const rx_result &r)
{
    samda_error e;
    samda_fail(&e, r.state == RX_TIMED_OUT ? SAMDA_ETIMEDOUT : SAMDA_ENETWORK, "%s: association aborted, nothing kept",
               r.why.c_str());
    report_failure(c, req, 0, e);
    if (r.state == RX_TIMED_OUT || r.state == RX_BROKEN) event(c.scp, *c.info, "association aborted", r.why);
    return r.state == RX_TIMED_OUT ? STORE_TIMED_OUT : STORE_BROKEN;
}

/* Receives one data set and answers it; says whether the association can still be used. */
store_outcome handle_store(samda_scp *scp, worker &w, const samda_assoc_info &info, T_ASC_PresentationContextID pres_id,
                           const T_DIMSE_C_StoreRQ &req, unsigned &n_stored, unsigned &n_failed)
{
    const steady::time_point deadline = arm_deadline(scp, w, scp->message_timeout_s);
    store_ctx c;
    c.scp = scp;
    c.info = &info;
    c.assoc = w.assoc;
    c.pres_id = pres_id;
    std::string tmpl = scp->temp_dir + "/samda-rx-" + std::to_string(info.id) + "-XXXXXX";
    std::vector<char> name(tmpl.begin(), tmpl.end());
    name.push_back('\0');
    std::unique_ptr<DcmOutputFileStream> out;
    int fd = mkstemp(name.data());
    if (fd >= 0) {
        close(fd);
        c.path = name.data();
        DcmOutputFileStream *fs = nullptr;
        /* the file meta information first: Part 10 with the data set exactly as received after it */
        OFCondition cond = DIMSE_createFilestream(c.path.c_str(), &req, w.assoc, pres_id, 1, &fs);
        if (cond.good()) out.reset(fs);
        else delete fs;
    }
    const bool created = out != nullptr;
    rx_result r = receive_dataset(scp, w, pres_id, out.get(), deadline);
    if (out) {
        out->flush();
        if (!out->good()) r.write_failed = true;
        out.reset();
    }
    const bool cut = disarm_deadline(scp, w);
    if (cut && r.state == RX_WHOLE) { /* whole, but only just: the connection is cut all the same */
        r.state = RX_TIMED_OUT;
        r.why = "C-STORE data set not complete within message_timeout (" + std::to_string(scp->message_timeout_s) +
                " s)";
    }
    if (!c.path.empty() && (r.state != RX_WHOLE || !r.problem.empty() || !created || r.write_failed))
        unlink(c.path.c_str()); /* nothing of it is kept */
    if (r.state != RX_WHOLE) {
        n_failed++;
        if (scp->aborting) r.state = RX_GONE;
        return lost_dataset(c, &req, r);
    }

    samda_error e;
    if (!r.problem.empty()) {
        samda_fail(&e, SAMDA_EBADDICOM, "%s", r.problem.c_str());
        refuse(c, &req, status_cannot_understand, e);
    } else if (!created || r.write_failed) {
        samda_fail(&e, SAMDA_EIO, "receiving a C-STORE data set: cannot %s a temporary file in %s (disk full?)",
                   created ? "write" : "create", scp->temp_dir.c_str());
        report_failure(c, &req, samda_status_dicom(SAMDA_ENOSPC), e);
        c.status = samda_status_dicom(SAMDA_ENOSPC);
        c.comment = created ? "cannot write a temporary file (disk full?)" : "cannot create a temporary file";
    } else {
        try {
            finish_store(c, req);
        } catch (const std::bad_alloc &) {
            unlink(c.path.c_str());
            samda_fail(&e, SAMDA_ENOMEM, "storing a C-STORE data set: out of memory");
            refuse(c, &req, samda_status_dicom(SAMDA_ENOMEM), e);
        } catch (...) {
            unlink(c.path.c_str());
            samda_fail(&e, SAMDA_EINTERNAL, "storing a C-STORE data set: internal error (unknown C++ exception)");
            refuse(c, &req, samda_status_dicom(SAMDA_EINTERNAL), e);
        }
    }
    if (c.ok) n_stored++;
    else n_failed++;
    if (!send_store_response(w.assoc, pres_id, req, c.status, c.comment)) return STORE_BROKEN;
    return STORE_CONTINUE;
}

/* Text of the attribute that makes a C-STORE-RQ command unusable, for its ErrorComment; cond is
 * what DCMTK said, used when nothing more precise is found. */
std::string command_problem(DcmDataset &cmd, const OFCondition &cond)
{
    const struct {
        const DcmTagKey &tag;
        const char *name;
    } uids[] = {{DCM_AffectedSOPClassUID, "(0000,0002) AffectedSOPClassUID"},
                {DCM_AffectedSOPInstanceUID, "(0000,1000) AffectedSOPInstanceUID"}};
    for (const auto &u : uids) {
        DcmElement *el = nullptr;
        if (cmd.findAndGetElement(u.tag, el).bad() || !el) return std::string(u.name) + " missing";
        OFString v;
        el->getOFStringArray(v);
        while (!v.empty() && (v.back() == ' ' || v.back() == '\0')) v.erase(v.size() - 1);
        while (!v.empty() && v[0] == ' ') v.erase(0, 1);
        if (v.empty()) return std::string(u.name) + " empty";
        if (v.size() > DIC_UI_LEN)
            return std::string(u.name) + " is " + std::to_string(v.size()) + " characters (max 64)";
    }
    Uint16 v16 = 0;
    if (cmd.findAndGetUint16(DCM_Priority, v16).bad()) return "(0000,0700) Priority missing";
    if (cmd.findAndGetUint16(DCM_CommandDataSetType, v16).bad()) return "(0000,0800) CommandDataSetType missing";
    if (v16 == DIMSE_DATASET_NULL) return "C-STORE-RQ without a data set";
    return std::string("command not understood: ") + cond.text();
}

/* A C-STORE-RQ whose command DCMTK refused but that has a Message ID: read and discard its data set
 * and answer 0xC000 naming the problem, so that the association stays usable. */
store_outcome refuse_store(samda_scp *scp, worker &w, const samda_assoc_info &info, T_ASC_PresentationContextID pres_id,
                           DcmDataset &cmd, const OFCondition &cond, unsigned &n_failed)
{
    T_DIMSE_C_StoreRQ req;
    std::memset(&req, 0, sizeof req);
    Uint16 v16 = 0;
    cmd.findAndGetUint16(DCM_MessageID, v16);
    req.MessageID = v16;
    const char *v = nullptr;
    if (cmd.findAndGetString(DCM_AffectedSOPClassUID, v).good() && v && std::strlen(v) <= DIC_UI_LEN)
        copy_str(req.AffectedSOPClassUID, v);
    if (cmd.findAndGetString(DCM_AffectedSOPInstanceUID, v).good() && v && std::strlen(v) <= DIC_UI_LEN)
        copy_str(req.AffectedSOPInstanceUID, v);
    const bool has_data = cmd.findAndGetUint16(DCM_CommandDataSetType, v16).good() && v16 != DIMSE_DATASET_NULL;
    store_ctx c;
    c.scp = scp;
    c.info = &info;
    c.assoc = w.assoc;
    c.pres_id = pres_id;
    n_failed++;
    if (has_data) {
        rx_result r = receive_dataset(scp, w, pres_id, nullptr, arm_deadline(scp, w, scp->message_timeout_s));
        if (disarm_deadline(scp, w) && r.state == RX_WHOLE) {
            r.state = RX_TIMED_OUT;
            r.why = "C-STORE data set not complete within message_timeout";
        }
        if (r.state != RX_WHOLE) {
            if (scp->aborting) r.state = RX_GONE;
            return lost_dataset(c, &req, r);
        }
    }
    std::string problem = command_problem(cmd, cond);
    samda_error e;
    samda_fail(&e, SAMDA_EBADDICOM, "C-STORE-RQ refused: %s", problem.c_str());
    refuse(c, &req, status_cannot_understand, e);
    c.comment = error_comment(problem.c_str(), "");
    return send_store_response(w.assoc, pres_id, req, c.status, c.comment) ? STORE_CONTINUE : STORE_BROKEN;
}

/* Whether a command DCMTK refused is a C-STORE-RQ that can still be answered (it has a Message ID). */
bool answerable_store(DcmDataset &cmd)
{
    Uint16 field = 0, id = 0;
    return cmd.findAndGetUint16(DCM_CommandField, field).good() && field == DIMSE_C_STORE_RQ &&
           cmd.findAndGetUint16(DCM_MessageID, id).good();
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

/* Shuts down the read side of every association whose wait passed its deadline (arm_deadline()):
 * its blocked read returns and its thread aborts the association. At most one poll period late. */
void enforce_deadlines(samda_scp *scp, std::chrono::steady_clock::time_point now)
{
    std::lock_guard<std::mutex> lock(scp->mu);
    for (auto &w : scp->workers)
        if (!w->done && w->fd >= 0 && w->has_deadline && !w->cut && now >= w->deadline) {
            w->cut = true;
            shutdown(w->fd, SHUT_RD);
        }
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
    samda_assoc_info info;
    fill_info(info, assoc, id);
    std::unique_ptr<worker> w(new worker);
    w->assoc = assoc;
    w->calling_ae = info.calling_ae;
    worker *raw = w.get();
    char why[160] = "";
    {
        std::unique_lock<std::mutex> lock(scp->mu);
        unsigned same_peer = 0;
        for (auto &x : scp->workers) same_peer += (!x->done && x->calling_ae == raw->calling_ae) ? 1 : 0;
        if (scp->active >= scp->max_associations) {
            std::snprintf(why, sizeof why, "max_associations (%u) reached", scp->max_associations);
        } else if (scp->max_associations_per_peer && same_peer >= scp->max_associations_per_peer) {
            /* One peer must not take every slot (an allowed sender stalling its transfers would
             * lock every other sender out): counted per calling AE title, the identity the
             * allow-list grants, so that senders behind one address (a router, NAT) are not
             * counted together. */
            std::snprintf(why, sizeof why, "this calling AE title already has %u associations "
                          "(max_associations_per_peer)", same_peer);
        } else {
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
    /* Over a limit: PS3.8 7.1.1.9 transient rejection, "local limit exceeded". */
    scp->n_rejected++;
    reject_verdict(assoc, SAMDA_ASSOC_REJECT_BUSY);
    drop(assoc);
    event(scp, info, "association rejected", why);
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
    samda_assoc_info info; /* for on_event: no association yet (id 0, no AE titles), only the address */
    std::memset(&info, 0, sizeof info);
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    if (getpeername(fd, (struct sockaddr *)&sa, &sl) != 0 || sa.sin_family != AF_INET ||
        !inet_ntop(AF_INET, &sa.sin_addr, info.peer_address, sizeof info.peer_address))
        copy_str(info.peer_address, "unknown");
    std::string why;
    bool ready = false, gone = false, refused = false;
    if (!dicom_tls_server_handshake(scp->tls_layer, fd, why)) {
        refused = true;
    } else {
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
    /* A refused handshake (no client certificate, one no trusted CA signed, no common protocol or
     * suite, not TLS at all) is the only trace such a peer leaves: report it. One cut at the deadline
     * or by stopping is not a refusal. */
    bool cut;
    {
        std::lock_guard<std::mutex> lock(scp->mu);
        cut = h->cut;
    }
    if (refused && !cut) event(scp, info, "TLS handshake failed", why.empty() ? std::string("unknown reason") : why);
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
        enforce_deadlines(scp, now);
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
    if (!p->acse_timeout_s || !p->dimse_timeout_s || !p->idle_timeout_s || !p->message_timeout_s)
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
    p->max_associations_per_peer = 4;
    p->dimse_timeout_s = 60;
    p->message_timeout_s = 300;
    p->idle_timeout_s = 300;
    p->max_pdu_bytes = 65536;
    p->tcp_nodelay = true;
}

extern "C" char *samda_scp_error_comment(char *out, size_t size, const char *msg)
{
    if (!out || !size) return out;
    out[0] = '\0';
    dicom_guard_void([&] { std::snprintf(out, size, "%s", error_comment(msg, "").c_str()); });
    return out;
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
        s->max_associations_per_peer = p->max_associations_per_peer;
        s->dimse_timeout_s = p->dimse_timeout_s;
        s->message_timeout_s = p->message_timeout_s;
        s->idle_timeout_s = p->idle_timeout_s;
        s->max_pdu = p->max_pdu_bytes;
        s->tcp_nodelay = p->tcp_nodelay;
        s->ctx = p->ctx;
        s->on_association = p->on_association;
        s->on_store = p->on_store;
        s->on_store_failed = p->on_store_failed;
        s->on_association_end = p->on_association_end;
        s->on_event = p->on_event;

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
