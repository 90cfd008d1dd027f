/* dicom/scp_store.cpp: C-STORE on the SCP side: the data set received PDV by PDV into a temporary
 * Part 10 file within message_timeout, its header checked against the command, handed to the
 * caller's on_store, and the C-STORE-RSP sent with an ErrorComment that names the problem without
 * local paths. A C-STORE-RQ whose command DCMTK refused is still answered when it can be (its data
 * set read and discarded), so the association stays usable.
 *
 * Deliberately not here: durability and duplicate policy (the caller's on_store). Tested in
 * tests/unit/dicom/test_scp.c. */
#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <cerrno>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcelem.h>
#include <dcmtk/dcmdata/dcostrmf.h>
#include <dcmtk/dcmnet/assoc.h>
#include <dcmtk/dcmnet/dimse.h>
#include <dcmtk/dcmnet/dul.h>

#include "dicom.h"
#include "guard.h"
#include "scp_internal.h"

namespace dicom_scp {
namespace {

/* PS3.4 B.2.3: DIMSE status codes samda sends itself (others come from common/status.h). */
const unsigned status_success = 0x0000;
const unsigned status_does_not_match_sop_class = 0xA900;
const unsigned status_cannot_understand = 0xC000;

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
    char sha256[65] = "";             /* of the whole file, as it was written ("" when unknown) */
    uint64_t written = 0;             /* its bytes */
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
    /* the hash made while writing, when the file on disk is all that was written */
    sreq.sha256 = c.sha256[0] && c.written == size ? c.sha256 : nullptr;
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

/* Where a received data set goes: the temporary file, appended to with write(2), and a SHA-256 of
 * everything in the file (the file meta information DCMTK wrote first, then each PDV as it arrives),
 * so that the store need not read the file back to hash it. */
struct rx_sink {
    int fd = -1;
    EVP_MD_CTX *md = nullptr;
    uint64_t bytes = 0;
    ~rx_sink()
    {
        if (fd >= 0) close(fd);
        EVP_MD_CTX_free(md);
    }
    bool write_all(const void *data, size_t n)
    {
        const char *p = static_cast<const char *>(data);
        for (size_t left = n; left;) {
            ssize_t w = ::write(fd, p, left);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) return false;
            p += w;
            left -= (size_t)w;
        }
        bytes += n;
        return EVP_DigestUpdate(md, data, n) == 1;
    }
};

/* Open path (holding the file meta information alone) for appending, and hash what it holds. */
bool sink_open(rx_sink &k, const char *path)
{
    k.md = EVP_MD_CTX_new();
    if (!k.md || EVP_DigestInit_ex(k.md, EVP_sha256(), nullptr) != 1) return false;
    k.fd = open(path, O_RDWR | O_APPEND | O_CLOEXEC);
    if (k.fd < 0) return false;
    char buf[8192];
    for (;;) { /* the meta information: a few hundred bytes */
        ssize_t r = pread(k.fd, buf, sizeof buf, (off_t)k.bytes);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return false;
        if (r == 0) return true;
        if (EVP_DigestUpdate(k.md, buf, (size_t)r) != 1) return false;
        k.bytes += (uint64_t)r;
        if (k.bytes > (1u << 20)) return false; /* not what DIMSE_createFilestream writes */
    }
}

/* The hash as lower-case hex, closing the file; false when either fails. */
bool sink_finish(rx_sink &k, char hex[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    bool ok = EVP_DigestFinal_ex(k.md, md, &len) == 1 && len == 32;
    for (unsigned i = 0; ok && i < 32; i++) std::snprintf(hex + 2 * i, 3, "%02x", md[i]);
    int fd = k.fd;
    k.fd = -1;
    if (close(fd) != 0) ok = false;
    if (!ok) hex[0] = '\0';
    return ok;
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
rx_result receive_dataset(samda_scp *scp, worker &w, T_ASC_PresentationContextID cmd_pres_id, rx_sink *out,
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
        if (writing && pdv.fragmentLength && !out->write_all(pdv.data, pdv.fragmentLength)) {
            r.write_failed = true;
            writing = false;
        }
        if (pdv.lastPDV) return r;
    }
}

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

} // namespace

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
    rx_sink sink;
    bool created = false;
    int fd = mkstemp(name.data());
    if (fd >= 0) {
        close(fd);
        c.path = name.data();
        DcmOutputFileStream *fs = nullptr;
        /* the file meta information first (DCMTK's, closed at once): Part 10 with the data set exactly
         * as received after it */
        OFCondition cond = DIMSE_createFilestream(c.path.c_str(), &req, w.assoc, pres_id, 1, &fs);
        if (cond.good() && fs) fs->flush();
        created = cond.good() && fs && fs->good();
        delete fs;
        created = created && sink_open(sink, c.path.c_str());
    }
    rx_result r = receive_dataset(scp, w, pres_id, created ? &sink : nullptr, deadline);
    if (created && !sink_finish(sink, c.sha256)) r.write_failed = true;
    c.written = sink.bytes;
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

} // namespace dicom_scp

extern "C" char *samda_scp_error_comment(char *out, size_t size, const char *msg)
{
    if (!out || !size) return out;
    out[0] = '\0';
    dicom_guard_void([&] { std::snprintf(out, size, "%s", dicom_scp::error_comment(msg, "").c_str()); });
    return out;
}
