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
 * allow-lists of calling AE titles. Those are the caller's, through the callbacks.
 *
 * This file starts and stops the SCP; the listener and the TLS handshakes are scp_listener.cpp's,
 * one association (negotiation, C-ECHO, protocol errors) scp_assoc.cpp's, C-STORE scp_store.cpp's,
 * over scp_internal.h. */
#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmnet/assoc.h>
#include <dcmtk/dcmnet/dul.h>
#include <dcmtk/dcmnet/dulstruc.h>

#include "dicom.h"
#include "guard.h"
#include "scp_internal.h"
#include "tls_internal.h"

namespace {

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
            s->listener = std::thread(dicom_scp::listener_main, raw);
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
        dicom_scp::reap_handshakes(scp, true); /* TLS connections not yet handed on are closed */
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
        dicom_scp::reap(scp, true);
        ASC_dropNetwork(&scp->net);
        close(scp->wake[0]);
        close(scp->wake[1]);
    });
    delete scp;
}
