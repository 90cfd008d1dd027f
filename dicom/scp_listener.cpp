/* dicom/scp_listener.cpp: the SCP's listener thread and what it does before DCMTK sees an
 * association: accept; wait (epoll, MSG_PEEK, never blocking) until a connection's whole
 * A-ASSOCIATE-RQ PDU, or with TLS its first record, is in, within acse_timeout; with TLS, a
 * short-lived thread per connection for the handshake and the wait after it; then DCMTK reads the
 * request and the association gets a thread of its own (scp_assoc.cpp), within max_associations and
 * max_associations_per_peer. It also enforces every association's deadline.
 *
 * Tested in tests/unit/dicom/test_scp.c (slow peers, limits) and test_tls.c. */
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmnet/assoc.h>
#include <dcmtk/dcmnet/dul.h>

#include "dicom.h"
#include "guard.h"
#include "scp_internal.h"
#include "tls_internal.h"

namespace dicom_scp {
namespace {

/* Association ids are unique in the process, across SCP instances (dicom.h). */
std::atomic<uint64_t> next_association_id{1};

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

} // namespace

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

} // namespace dicom_scp
