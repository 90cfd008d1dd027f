/* dicom/ module-internal: what the SCP's files share: scp.cpp (start, stop), scp_listener.cpp
 * (connections until DCMTK has their A-ASSOCIATE-RQ), scp_assoc.cpp (one association: negotiation,
 * its commands, C-ECHO) and scp_store.cpp (C-STORE: receive, check, answer; refused commands).
 * Never included outside dicom/; C++ only. Names shared between those files live in namespace
 * dicom_scp, the rest of each file in an anonymous namespace. */
#ifndef SAMDA_DICOM_SCP_INTERNAL_H
#define SAMDA_DICOM_SCP_INTERNAL_H

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmnet/assoc.h>
#include <dcmtk/dcmnet/dimse.h>

#include "dicom.h"

struct dicom_tls_acceptor; /* tls_internal.h */

namespace dicom_scp {

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

} // namespace dicom_scp

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
    std::list<std::unique_ptr<dicom_scp::worker>> workers;       /* guarded by mu */
    unsigned active = 0;                                         /* guarded by mu */
    std::list<std::unique_ptr<dicom_scp::handshake>> handshakes; /* guarded by mu */
    bool stopping = false; /* guarded by mu: no more handshakes handed on */

    std::atomic<uint64_t> n_accepted{0}, n_rejected{0}, n_aborted{0}, n_echo{0}, n_store_ok{0},
        n_store_failed{0}, n_bytes{0};
};

namespace dicom_scp {

template <size_t N>
void copy_str(char (&dst)[N], const char *s)
{
    std::snprintf(dst, N, "%s", s ? s : "");
}

/* ---- scp_assoc.cpp ---------------------------------------------------------------------------- */

/* info for association id from what DCMTK recorded of its request (AE titles, peer address). */
void fill_info(samda_assoc_info &info, T_ASC_Association *assoc, uint64_t id);
/* Drop and destroy assoc (NULL-safe); assoc is NULL afterwards. */
void drop(T_ASC_Association *&assoc);
/* Send the A-ASSOCIATE-RJ that answers a verdict of on_association (or BUSY: a local limit). */
void reject_verdict(T_ASC_Association *assoc, samda_assoc_verdict v);
/* Start the deadline of a whole wait on the peer (seconds from now); returns it. */
steady::time_point arm_deadline(samda_scp *scp, worker &w, unsigned seconds);
/* End it; returns whether the listener cut the connection at it. */
bool disarm_deadline(samda_scp *scp, worker &w);
/* on_event, when the caller gave one. */
void event(samda_scp *scp, const samda_assoc_info &info, const char *what, const std::string &reason);
/* An association's thread: serve it to its end, then mark w done. */
void worker_main(samda_scp *scp, worker *w, uint64_t id);

/* ---- scp_store.cpp ---------------------------------------------------------------------------- */

/* Whether the association can still be used after a C-STORE (STORE_TIMED_OUT: cut at a deadline). */
enum store_outcome { STORE_CONTINUE, STORE_BROKEN, STORE_TIMED_OUT };

/* Receive one data set and answer it; n_stored or n_failed counts it. */
store_outcome handle_store(samda_scp *scp, worker &w, const samda_assoc_info &info, T_ASC_PresentationContextID pres_id,
                           const T_DIMSE_C_StoreRQ &req, unsigned &n_stored, unsigned &n_failed);
/* Answer a C-STORE-RQ whose command DCMTK refused (answerable_store) with 0xC000, its data set read
 * and discarded. */
store_outcome refuse_store(samda_scp *scp, worker &w, const samda_assoc_info &info, T_ASC_PresentationContextID pres_id,
                           DcmDataset &cmd, const OFCondition &cond, unsigned &n_failed);
/* Whether a command DCMTK refused is a C-STORE-RQ that can still be answered (it has a Message ID). */
bool answerable_store(DcmDataset &cmd);

/* ---- scp_listener.cpp ------------------------------------------------------------------------- */

/* The listener thread: accepts, waits for each request, hands associations to their threads. */
void listener_main(samda_scp *scp);
/* Join finished association threads (all of them with all). */
void reap(samda_scp *scp, bool all);
/* Join finished handshake threads and shut down the late ones (all of them with all). */
void reap_handshakes(samda_scp *scp, bool all);

} // namespace dicom_scp

#endif
