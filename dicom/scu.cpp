/* C-STORE SCU: sends a batch of stored instances to one peer over one association, for the export
 * queue. It negotiates from the files' own SOP classes and transfer syntaxes, decodes to an
 * uncompressed syntax when the peer refuses the stored one, and sorts every failure into transient
 * (retry later) or permanent (a person must act), per instance and for the association.
 *
 * Not here: the queue, backoff and attempt counting (storage/ and the daemon), STOW-RS. */
#include <cerrno>
#include <cstdarg>
#include <cstring>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdatset.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmdata/dcxfer.h>
#include <dcmtk/dcmnet/assoc.h>
#include <dcmtk/dcmnet/dimse.h>
#include <dcmtk/dcmnet/dcmtrans.h>
#include <dcmtk/dcmnet/dul.h>

#include "dicom.h"
#include "guard.h"
#include "reopen.h"
#include "internal.h"
#include "tls_internal.h"

namespace {

/* ---- DIMSE status classification (PS3.4 B.2.3 storage statuses, PS3.7 C general ones) -------- */

struct status_row {
    unsigned lo, hi;
    bool is_failure;
    bool is_transient;
    samda_status status;
    const char *meaning;
};

/* First matching row wins; the last row catches every other failure. */
const status_row status_table[] = {
    {0x0000, 0x0000, false, false, SAMDA_OK, "success"},
    {0x0001, 0x0001, false, false, SAMDA_OK, "warning: requested optional attributes not supported"},
    {0x0107, 0x0107, false, false, SAMDA_OK, "warning: attribute list error"},
    {0x0116, 0x0116, false, false, SAMDA_OK, "warning: attribute value out of range"},
    {0xB000, 0xBFFF, false, false, SAMDA_OK, "warning: stored with coercion or elements discarded"},
    {0xA700, 0xA7FF, true, true, SAMDA_EBUSY, "refused: out of resources"},
    {0x0110, 0x0110, true, true, SAMDA_ENETWORK, "processing failure"},
    {0x0213, 0x0213, true, true, SAMDA_EBUSY, "resource limitation"},
    {0xFE00, 0xFE00, true, true, SAMDA_ECANCELED, "cancelled"},
    {0x0111, 0x0111, true, false, SAMDA_EEXIST, "duplicate SOP instance"},
    {0x0117, 0x0117, true, false, SAMDA_EBADDICOM, "invalid SOP instance"},
    {0x0122, 0x0122, true, false, SAMDA_ENOTSUP, "SOP class not supported"},
    {0x0124, 0x0124, true, false, SAMDA_EFORBIDDEN, "not authorised"},
    {0x0210, 0x0212, true, false, SAMDA_ENETWORK, "duplicate invocation, unrecognised operation or mistyped argument"},
    {0xA900, 0xA9FF, true, false, SAMDA_EBADDICOM, "data set does not match SOP class"},
    {0xC000, 0xCFFF, true, false, SAMDA_EBADDICOM, "cannot understand"},
    {0x0000, 0xFFFF, true, false, SAMDA_ENETWORK, "failure"},
};

const status_row &classify_status(unsigned s)
{
    for (const status_row &r : status_table)
        if (s >= r.lo && s <= r.hi) return r;
    return status_table[sizeof status_table / sizeof status_table[0] - 1];
}


/* DCMTK reports connection failures as text only. */
samda_status classify_connect(const char *text, std::string &what)
{
    if (std::strstr(text, "refused")) {
        what = "connection refused (is the peer listening on that port?)";
        return SAMDA_ENETWORK;
    }
    if (std::strstr(text, "timed out") || std::strstr(text, "imeout")) {
        what = "timed out";
        return SAMDA_ETIMEDOUT;
    }
    if (std::strstr(text, "unreachable")) {
        what = "host or network unreachable";
        return SAMDA_ENETWORK;
    }
    if (std::strstr(text, "nknown host") || std::strstr(text, "Name or service")) {
        what = "unknown host";
        return SAMDA_ENETWORK;
    }
    what = text;
    return SAMDA_ENETWORK;
}

void set_result(samda_store_result &r, samda_status st, bool transient, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

void set_result(samda_store_result &r, samda_status st, bool transient, const char *fmt, ...)
{
    r.status = st;
    r.is_transient = st != SAMDA_OK && transient;
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(r.message, sizeof r.message, fmt, ap);
    va_end(ap);
    for (char *c = r.message; *c; c++)
        if (*c == '\n' || *c == '\r') *c = ' ';
}

/* DCMTK keeps an association's socket protected (see scp_assoc.cpp); a derived class may name it. */
struct socket_of : DcmTransportConnection {
    static int get(DcmTransportConnection *c)
    {
        DcmNativeSocketType (DcmTransportConnection::*fn)() = &socket_of::getSocket;
        return c ? (int)(c->*fn)() : -1;
    }
};

bool is_plain_le(const std::string &ts)
{
    return ts == UID_LittleEndianExplicitTransferSyntax || ts == UID_LittleEndianImplicitTransferSyntax;
}

struct instance {
    std::string sop_class, sop_instance, ts;
    bool ok = false; /* header read */
};

struct context_key {
    std::string sop_class;
    std::string ts; /* "" = the uncompressed pair */
    bool operator<(const context_key &o) const { return sop_class != o.sop_class ? sop_class < o.sop_class : ts < o.ts; }
};

struct resources {
    T_ASC_Network *net = nullptr;
    T_ASC_Parameters *params = nullptr;
    T_ASC_Association *assoc = nullptr;
    DcmTransportLayer *tls = nullptr; /* owned by net once set */
    ~resources()
    {
        if (assoc) ASC_destroyAssociation(&assoc);
        else if (params) ASC_destroyAssociationParameters(&params);
        if (net) ASC_dropNetwork(&net);
    }
};

/* Sends one instance on the association. Returns false when the association is unusable after it. */
bool send_one(T_ASC_Association *assoc, const char *path, const instance &in, int timeout, samda_store_result &r,
              const char *where)
{
    /* The accepted context in the instance's own syntax, else any accepted one for its class. */
    T_ASC_PresentationContextID pc_id = ASC_findAcceptedPresentationContextID(assoc, in.sop_class.c_str(), in.ts.c_str());
    if (pc_id == 0) pc_id = ASC_findAcceptedPresentationContextID(assoc, in.sop_class.c_str());
    if (pc_id == 0) {
        r.dicom_status = 0;
        set_result(r, SAMDA_ENOTSUP, false, "C-STORE to %s: the peer accepts SOP class %s in no transfer syntax "
                   "proposed", where, in.sop_class.c_str());
        return true;
    }
    T_ASC_PresentationContext pc;
    ASC_findAcceptedPresentationContext(assoc->params, pc_id, &pc);
    DcmFileFormat ff;
    OFCondition cond = dicom_reopen::load_file(ff, path);
    if (cond.bad()) {
        set_result(r, SAMDA_EBADDICOM, false, "C-STORE to %s: reading %s: %s", where, path, cond.text());
        return true;
    }
    DcmDataset *ds = ff.getDataset();
    /* Command-group elements have no place in a data set; some files carry (0000,xxxx) parsed
     * from trailing padding. They are not sent. */
    for (unsigned long k = ds->card(); k-- > 0;) {
        DcmElement *el = ds->getElement(k);
        if (el && el->getTag().getGroup() == 0x0000) delete ds->remove(el);
    }
    DcmXfer target(pc.acceptedTransferSyntax);
    if (in.ts != pc.acceptedTransferSyntax) {
        /* Decode (or re-encode an uncompressed one) into the accepted syntax. */
        ds->chooseRepresentation(target.getXfer(), nullptr);
        if (!ds->canWriteXfer(target.getXfer())) {
            set_result(r, SAMDA_ENOTSUP, false, "C-STORE to %s: the peer does not accept %s for SOP class %s and "
                       "samda cannot convert it to %s", where, DcmXfer(in.ts.c_str()).getXferName(),
                       in.sop_class.c_str(), target.getXferName());
            return true;
        }
        r.transcoded = true;
    }
    T_DIMSE_C_StoreRQ req;
    std::memset(&req, 0, sizeof req);
    req.MessageID = assoc->nextMsgID++;
    OFStandard::strlcpy(req.AffectedSOPClassUID, in.sop_class.c_str(), sizeof req.AffectedSOPClassUID);
    OFStandard::strlcpy(req.AffectedSOPInstanceUID, in.sop_instance.c_str(), sizeof req.AffectedSOPInstanceUID);
    req.DataSetType = DIMSE_DATASET_PRESENT;
    req.Priority = DIMSE_PRIORITY_MEDIUM;
    T_DIMSE_C_StoreRSP rsp;
    std::memset(&rsp, 0, sizeof rsp);
    DcmDataset *detail = nullptr;
    cond = DIMSE_storeUser(assoc, pc_id, &req, nullptr, ds, nullptr, nullptr, DIMSE_NONBLOCKING, timeout, &rsp, &detail);
    if (cond.bad()) {
        delete detail;
        if (cond == DIMSE_NODATAAVAILABLE)
            set_result(r, SAMDA_ETIMEDOUT, true, "C-STORE to %s: no response within %d s", where, timeout);
        else
            set_result(r, SAMDA_ENETWORK, true, "C-STORE to %s: the association broke: %s", where, cond.text());
        return false;
    }
    r.responded = true;
    r.dicom_status = rsp.DimseStatus;
    OFString comment;
    if (detail) detail->findAndGetOFString(DCM_ErrorComment, comment);
    delete detail;
    const status_row &row = classify_status(rsp.DimseStatus);
    if (!row.is_failure) {
        set_result(r, SAMDA_OK, false, "%s (0x%04X)%s%s", row.meaning, (unsigned)rsp.DimseStatus,
                   comment.empty() ? "" : ": ", comment.c_str());
    } else {
        set_result(r, row.status, row.is_transient, "C-STORE to %s: status 0x%04X %s%s%.64s", where,
                   (unsigned)rsp.DimseStatus, row.meaning, comment.empty() ? "" : ": ", comment.c_str());
    }
    return true;
}

/* One call's batch: the files, what each one is, the presentation contexts to propose, and the peer
 * as messages name it. */
struct batch {
    const char *const *paths;
    size_t n;
    samda_store_result *results;
    std::vector<instance> ins;
    std::map<context_key, int> contexts; /* -> presentation context id */
    const char *where;
};

/* The association failed: every file that was to be sent fails with msg, and so does the call. */
samda_status fail_all(batch &b, samda_store_outcome &outcome, samda_error *err, samda_status st, bool transient,
                      const char *msg)
{
    for (size_t i = 0; i < b.n; i++)
        if (b.ins[i].ok) set_result(b.results[i], st, transient, "%s", msg);
    outcome = transient ? SAMDA_STORE_TRANSIENT : SAMDA_STORE_PERMANENT;
    return samda_fail(err, st, "%s", msg);
}

/* What is to be sent: every file's SOP class and transfer syntax, and the contexts they need (the
 * uncompressed pair for each class, plus the file's own syntax). Returns how many can be sent. */
size_t plan(batch &b)
{
    size_t n_ready = 0;
    for (size_t i = 0; i < b.n; i++) {
        samda_dicom_header h;
        samda_error e;
        samda_status st = samda_dicom_read_header(b.paths[i], &h, &e);
        if (st != SAMDA_OK) {
            set_result(b.results[i], st, st == SAMDA_ENOMEM, "%s", e.message);
            continue;
        }
        instance &in = b.ins[i];
        in.sop_class = h.sop_class_uid;
        in.sop_instance = h.sop_instance_uid;
        in.ts = h.transfer_syntax_uid[0] ? h.transfer_syntax_uid : UID_LittleEndianImplicitTransferSyntax;
        context_key plain{in.sop_class, ""};
        context_key own{in.sop_class, is_plain_le(in.ts) ? "" : in.ts};
        size_t need = (b.contexts.count(plain) ? 0 : 1) + (own.ts.empty() || b.contexts.count(own) ? 0 : 1);
        if (b.contexts.size() + need > 128) {
            set_result(b.results[i], SAMDA_ETOOBIG, false, "C-STORE to %s: more than 128 presentation contexts "
                       "(SOP class and transfer syntax pairs) in one call; send fewer kinds of instances at once",
                       b.where);
            continue;
        }
        b.contexts.emplace(plain, 0);
        if (!own.ts.empty()) b.contexts.emplace(own, 0);
        in.ok = true;
        n_ready++;
        set_result(b.results[i], SAMDA_ENETWORK, true, "C-STORE to %s: not sent", b.where);
    }
    return n_ready;
}

/* The network and the association request: AE titles, addresses, TLS when the peer asks, and the
 * presentation contexts (ids 1, 3, 5... written into b.contexts). On failure msg says why and
 * transient whether a retry may help. */
samda_status prepare_request(const samda_dicom_peer *peer, int t, batch &b, resources &res, char *msg, size_t size,
                             bool &transient)
{
    dcmConnectionTimeout.set(t);
    /* A peer that stops reading must not hold a send forever: writes give up after the DIMSE timeout
     * too (SO_SNDTIMEO on the sockets DCMTK opens from now on; the SCP's use the same setting). */
    dcmSocketSendTimeout.set(t);
    OFCondition cond = ASC_initializeNetwork(NET_REQUESTOR, 0, t, &res.net);
    if (cond.bad()) {
        std::snprintf(msg, size, "C-STORE to %s: %s", b.where, cond.text());
        transient = true;
        return SAMDA_EINTERNAL;
    }
    cond = ASC_createAssociationParameters(&res.params, ASC_DEFAULTMAXPDU);
    if (cond.bad()) {
        std::snprintf(msg, size, "C-STORE to %s: %s", b.where, cond.text());
        transient = true;
        return SAMDA_ENOMEM;
    }
    if (peer->tls) {
        samda_error e;
        samda_status st = dicom_tls_setup_requestor(peer->tls, res.net, res.params, &e);
        if (st != SAMDA_OK) {
            std::snprintf(msg, size, "C-STORE to %s: %s", b.where, e.message);
            transient = false;
            return st;
        }
    }
    ASC_setAPTitles(res.params, peer->calling_ae, peer->called_ae, nullptr);
    std::string addr = std::string(peer->host) + ":" + std::to_string(peer->port);
    ASC_setPresentationAddresses(res.params, "localhost", addr.c_str());
    int next_id = 1;
    for (auto &c : b.contexts) {
        c.second = next_id;
        if (c.first.ts.empty()) {
            const char *ts[] = {UID_LittleEndianExplicitTransferSyntax, UID_LittleEndianImplicitTransferSyntax};
            cond = ASC_addPresentationContext(res.params, (T_ASC_PresentationContextID)next_id, c.first.sop_class.c_str(),
                                              ts, 2);
        } else {
            const char *ts[] = {c.first.ts.c_str()};
            cond = ASC_addPresentationContext(res.params, (T_ASC_PresentationContextID)next_id, c.first.sop_class.c_str(),
                                              ts, 1);
        }
        if (cond.bad()) {
            std::snprintf(msg, size, "C-STORE to %s: %s", b.where, cond.text());
            transient = false;
            return SAMDA_EINTERNAL;
        }
        next_id += 2;
    }
    return SAMDA_OK;
}

/* Associate: a rejection, a failed TLS handshake and a failed connection each sorted into
 * transient or permanent, with msg saying why. */
samda_status request_association(const samda_dicom_peer *peer, const batch &b, resources &res, char *msg, size_t size,
                                 bool &transient)
{
    OFCondition cond = ASC_requestAssociation(res.net, res.params, &res.assoc);
    if (cond.good()) return SAMDA_OK;
    if (cond == DUL_ASSOCIATIONREJECTED) {
        T_ASC_RejectParameters rej;
        ASC_getRejectParameters(res.params, &rej);
        transient = rej.result == ASC_RESULT_REJECTEDTRANSIENT;
        std::snprintf(msg, size, "C-STORE to %s: association rejected (%s, %s)", b.where,
                      transient ? "transient" : "permanent", dicom_reject_reason(rej));
        return transient ? SAMDA_EBUSY : SAMDA_EFORBIDDEN;
    }
    if (peer->tls && dicom_tls_is_handshake_failure(cond)) {
        std::snprintf(msg, size, "C-STORE to %s: TLS handshake failed (%s): check the CA, the certificates "
                      "and that the peer speaks DICOM TLS on that port", b.where, cond.text());
        transient = false;
        return SAMDA_EFORBIDDEN;
    }
    std::string what;
    samda_status st = classify_connect(cond.text(), what);
    std::snprintf(msg, size, "C-STORE to %s: cannot associate: %s", b.where, what.c_str());
    transient = true;
    return st;
}

/* Send, in the caller's order; after a broken association the rest are not sent. Counts the failed
 * files and notes the first; returns whether the association broke. */
bool send_all(batch &b, resources &res, int t, size_t &n_failed, size_t &first_failed)
{
    char msg[1024] = ""; /* cut to SAMDA_ERROR_MESSAGE_SIZE where stored; set when the association breaks */
    bool broken = false;
    n_failed = 0;
    first_failed = b.n;
    for (size_t i = 0; i < b.n; i++) {
        samda_store_result &r = b.results[i];
        if (b.ins[i].ok && !broken) {
            if (!send_one(res.assoc, b.paths[i], b.ins[i], t, r, b.where)) {
                broken = true;
                std::snprintf(msg, sizeof msg, "C-STORE to %s: not sent: the association broke at file %zu of %zu",
                              b.where, i + 1, b.n);
            }
        } else if (b.ins[i].ok) {
            set_result(r, SAMDA_ENETWORK, true, "%s", msg);
        }
        if (r.status != SAMDA_OK) {
            n_failed++;
            if (first_failed == b.n) first_failed = i;
        }
    }
    return broken;
}

samda_status store(const samda_dicom_peer *peer, const char *const *paths, size_t n, unsigned timeout_s,
                   samda_store_result *results, samda_store_outcome &outcome, samda_error *err)
{
    int t = timeout_s ? (int)timeout_s : 30;
    std::string where = std::string(peer->called_ae) + "@" + peer->host + ":" + std::to_string(peer->port);
    batch b{paths, n, results, std::vector<instance>(n), {}, where.c_str()};

    /* 1. What is to be sent. */
    if (plan(b) == 0) {
        outcome = SAMDA_STORE_SOME_FAILED;
        if (n == 0) {
            outcome = SAMDA_STORE_ALL_STORED;
            return SAMDA_OK;
        }
        return samda_fail(err, results[0].status, "C-STORE to %s: none of the %zu files can be sent; first: %s",
                          b.where, n, results[0].message);
    }

    /* 2. Associate. */
    char msg[1024]; /* cut to SAMDA_ERROR_MESSAGE_SIZE where stored */
    bool transient = false;
    resources res;
    samda_status st = prepare_request(peer, t, b, res, msg, sizeof msg, transient);
    if (st == SAMDA_OK) st = request_association(peer, b, res, msg, sizeof msg, transient);
    if (st != SAMDA_OK) return fail_all(b, outcome, err, st, transient, msg);
    if (ASC_countAcceptedPresentationContexts(res.params) == 0) {
        ASC_abortAssociation(res.assoc);
        std::snprintf(msg, sizeof msg, "C-STORE to %s: the peer accepted none of the %zu presentation contexts (SOP "
                      "classes not supported)", b.where, b.contexts.size());
        st = fail_all(b, outcome, err, SAMDA_ENOTSUP, false, msg);
        for (size_t i = 0; i < n; i++)
            if (b.ins[i].ok) results[i].dicom_status = 0;
        return st;
    }
    /* Nagle's algorithm with the peer's delayed ACK stalls every C-STORE by ~40 ms (the last PDU of
     * a data set waits); DCMTK leaves it on unless the TCP_NODELAY environment variable says. */
    int fd = socket_of::get(DUL_getTransportConnection(res.assoc->DULassociation));
    if (fd >= 0) {
        int on = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    }

    /* 3. Send, then release (or abort a broken association). */
    size_t n_failed = 0, first_failed = n;
    if (send_all(b, res, t, n_failed, first_failed)) {
        ASC_abortAssociation(res.assoc);
        outcome = SAMDA_STORE_TRANSIENT;
    } else {
        if (ASC_releaseAssociation(res.assoc).bad()) ASC_abortAssociation(res.assoc);
        outcome = n_failed ? SAMDA_STORE_SOME_FAILED : SAMDA_STORE_ALL_STORED;
    }
    if (n_failed == 0) return SAMDA_OK;
    return samda_fail(err, results[first_failed].status, "C-STORE to %s: %zu of %zu instances not stored; first: %s",
                      b.where, n_failed, n, results[first_failed].message);
}

} // namespace

extern "C" bool samda_dicom_status_is_transient(unsigned dicom_status)
{
    const status_row &r = classify_status(dicom_status);
    return r.is_failure && r.is_transient;
}

extern "C" samda_status samda_dicom_store(const samda_dicom_peer *peer, const char *const *paths, size_t n,
                                          unsigned timeout_s, samda_store_result *results,
                                          samda_store_outcome *outcome, samda_error *err)
{
    samda_store_outcome oc = SAMDA_STORE_PERMANENT;
    samda_status st = dicom_guard(err, "C-STORE", SAMDA_EINTERNAL, [&]() -> samda_status {
        if (!peer || !peer->host || !*peer->host || !dicom_ae_ok(peer->calling_ae) || !dicom_ae_ok(peer->called_ae) ||
            peer->port < 1 || peer->port > 65535)
            return samda_fail(err, SAMDA_EINVAL, "C-STORE: peer needs calling and called AE titles of 1 to 16 "
                              "characters, a host and a port between 1 and 65535");
        if (n && (!paths || !results)) return samda_fail(err, SAMDA_EINVAL, "C-STORE: no %s", paths ? "results" : "paths");
        for (size_t i = 0; i < n; i++) {
            std::memset(&results[i], 0, sizeof results[i]);
            if (!paths[i]) return samda_fail(err, SAMDA_EINVAL, "C-STORE: path %zu is NULL", i);
        }
        return store(peer, paths, n, timeout_s, results, oc, err);
    });
    if (outcome) *outcome = oc;
    return st;
}
