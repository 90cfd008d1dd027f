/* DICOM TLS: builds DCMTK's OpenSSL transport layer from samda_dicom_tls for the SCP (acceptor) and
 * the SCUs (requestor), always with the BCP 195 non-downgrading profile (TLS 1.2 or newer).
 *
 * A requestor's handshake happens inside DCMTK when it requests an association. An acceptor's runs
 * before DCMTK receives the association, on a thread of the SCP's (dicom_tls_server_handshake), and
 * the finished connection waits in the network's transport layer (handoff_layer) until DCMTK asks
 * for that socket's connection. Messages name files, never their contents (a key must never reach
 * a log). */
#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>

#include <sys/ioctl.h>
#include <sys/stat.h>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmnet/cond.h>
#include <dcmtk/dcmnet/dcmtrans.h>
#include <dcmtk/dcmnet/dul.h>
#include <dcmtk/dcmtls/tlslayer.h>

#include "dicom.h"
#include "guard.h"
#include "tls_internal.h"

namespace {

bool set(const char *s) { return s && *s; }

samda_status readable(const char *what, const char *path, bool dir, samda_error *err)
{
    struct stat sb;
    if (stat(path, &sb) != 0)
        return samda_fail(err, SAMDA_ECONFIG, "DICOM TLS: %s %s: %s", what, path, std::strerror(errno));
    if (dir ? !S_ISDIR(sb.st_mode) : !S_ISREG(sb.st_mode))
        return samda_fail(err, SAMDA_ECONFIG, "DICOM TLS: %s %s is not a %s", what, path, dir ? "directory" : "file");
    return SAMDA_OK;
}

/* Builds a configured layer; on failure returns NULL with *err set. */
std::unique_ptr<DcmTLSTransportLayer> make_layer(const samda_dicom_tls *t, bool is_server, samda_error *err)
{
    if (!t) {
        samda_fail(err, SAMDA_EINVAL, "DICOM TLS: no settings");
        return nullptr;
    }
    if (!set(t->ca_file) && !set(t->ca_dir)) {
        samda_fail(err, SAMDA_EINVAL, "DICOM TLS: no trusted CA (ca_file or ca_dir) to verify the peer with");
        return nullptr;
    }
    if (is_server && !set(t->certificate_file)) {
        samda_fail(err, SAMDA_EINVAL, "DICOM TLS: an SCP needs certificate_file and private_key_file");
        return nullptr;
    }
    if (set(t->certificate_file) != set(t->private_key_file)) {
        samda_fail(err, SAMDA_EINVAL, "DICOM TLS: certificate_file and private_key_file go together");
        return nullptr;
    }
    const struct { const char *what, *path; bool dir; } files[] = {
        {"certificate", t->certificate_file, false}, {"private key", t->private_key_file, false},
        {"CA file", t->ca_file, false}, {"CA directory", t->ca_dir, true}};
    for (const auto &f : files)
        if (set(f.path) && readable(f.what, f.path, f.dir, err) != SAMDA_OK) return nullptr;

    std::unique_ptr<DcmTLSTransportLayer> layer(
        new DcmTLSTransportLayer(is_server ? NET_ACCEPTOR : NET_REQUESTOR, nullptr, OFTrue));
    OFCondition c = layer->setTLSProfile(TSP_Profile_BCP195_ND); /* TLS 1.2+, no fallback (PS3.15 B.9) */
    if (c.good()) c = layer->activateCipherSuites();
    if (c.bad()) {
        samda_fail(err, SAMDA_ECONFIG, "DICOM TLS: cannot set the BCP 195 profile: %s", c.text());
        return nullptr;
    }
    if (set(t->certificate_file)) {
        c = layer->setPrivateKeyFile(t->private_key_file, DCF_Filetype_PEM);
        if (c.bad()) {
            samda_fail(err, SAMDA_ECONFIG, "DICOM TLS: cannot load private key %s (PEM, unencrypted): %s",
                       t->private_key_file, c.text());
            return nullptr;
        }
        c = layer->setCertificateFile(t->certificate_file, DCF_Filetype_PEM);
        if (c.bad()) {
            samda_fail(err, SAMDA_ECONFIG, "DICOM TLS: cannot load certificate %s (PEM): %s", t->certificate_file,
                       c.text());
            return nullptr;
        }
        if (!layer->checkPrivateKeyMatchesCertificate()) {
            samda_fail(err, SAMDA_ECONFIG, "DICOM TLS: private key %s does not match certificate %s",
                       t->private_key_file, t->certificate_file);
            return nullptr;
        }
    }
    if (set(t->ca_file)) {
        c = layer->addTrustedCertificateFile(t->ca_file, DCF_Filetype_PEM);
        if (c.bad()) {
            samda_fail(err, SAMDA_ECONFIG, "DICOM TLS: cannot load CA file %s (PEM): %s", t->ca_file, c.text());
            return nullptr;
        }
    }
    if (set(t->ca_dir)) {
        c = layer->addTrustedCertificateDir(t->ca_dir, DCF_Filetype_PEM);
        if (c.bad()) {
            samda_fail(err, SAMDA_ECONFIG, "DICOM TLS: cannot use CA directory %s: %s", t->ca_dir, c.text());
            return nullptr;
        }
    }
    /* A client always verifies the server; a server verifies a client certificate when one is sent
     * and, by default, insists on one. */
    layer->setCertificateVerification(is_server && !t->require_peer_certificate ? DCV_checkCertificate
                                                                                : DCV_requireCertificate);
    return layer;
}

} // namespace

/* The SCP's transport layer: hands DCMTK the connection whose handshake already ran for a socket;
 * any other socket gets a fresh connection from DCMTK's TLS layer, as before. */
struct dicom_tls_acceptor : DcmTransportLayer {
    explicit dicom_tls_acceptor(std::unique_ptr<DcmTLSTransportLayer> t) : tls(std::move(t)) {}
    ~dicom_tls_acceptor() override
    {
        for (auto &kv : ready) delete kv.second; /* closes their sockets */
    }
    DcmTransportConnection *createConnection(DcmNativeSocketType fd, OFBool secure) override
    {
        if (DcmTransportConnection *c = take((int)fd)) return c;
        return tls->createConnection(fd, secure);
    }
    DcmTransportConnection *take(int fd)
    {
        std::lock_guard<std::mutex> lock(mu);
        auto it = ready.find(fd);
        if (it == ready.end()) return nullptr;
        DcmTransportConnection *c = it->second;
        ready.erase(it);
        return c;
    }
    std::unique_ptr<DcmTLSTransportLayer> tls;
    std::mutex mu;
    std::map<int, DcmTransportConnection *> ready; /* socket -> its connection, handshake done or failed */
};

samda_status dicom_tls_setup_requestor(const samda_dicom_tls *tls, T_ASC_Network *net, T_ASC_Parameters *params,
                                       samda_error *err)
{
    std::unique_ptr<DcmTLSTransportLayer> layer = make_layer(tls, false, err);
    if (!layer) return err ? err->code : SAMDA_ECONFIG;
    OFCondition c = ASC_setTransportLayer(net, layer.get(), 1);
    if (c.bad()) return samda_fail(err, SAMDA_EINTERNAL, "DICOM TLS: %s", c.text());
    layer.release(); /* the network owns it now */
    c = ASC_setTransportLayerType(params, OFTrue);
    if (c.bad()) return samda_fail(err, SAMDA_EINTERNAL, "DICOM TLS: %s", c.text());
    return SAMDA_OK;
}

samda_status dicom_tls_setup_acceptor(const samda_dicom_tls *tls, T_ASC_Network *net, dicom_tls_acceptor **out,
                                      samda_error *err)
{
    std::unique_ptr<DcmTLSTransportLayer> layer = make_layer(tls, true, err);
    if (!layer) return err ? err->code : SAMDA_ECONFIG;
    std::unique_ptr<dicom_tls_acceptor> a(new dicom_tls_acceptor(std::move(layer)));
    OFCondition c = ASC_setTransportLayer(net, a.get(), 1);
    if (c.bad()) return samda_fail(err, SAMDA_EINTERNAL, "DICOM TLS: %s", c.text());
    *out = a.release(); /* the network owns it now */
    return SAMDA_OK;
}

bool dicom_tls_server_handshake(dicom_tls_acceptor *a, int fd, std::string &why)
{
    DcmTransportConnection *c = a->tls->createConnection(fd, OFTrue);
    if (!c) {
        why = "no TLS connection could be made (out of memory?)";
        return false;
    }
    {
        std::lock_guard<std::mutex> lock(a->mu);
        a->ready[fd] = c; /* from here on the connection owns fd */
    }
    OFCondition cond = c->serverSideHandshake();
    if (cond.good()) return true;
    why = cond.text();
    return false;
}

bool dicom_tls_decrypted_pending(dicom_tls_acceptor *a, int fd)
{
    int avail = 0;
    if (ioctl(fd, FIONREAD, &avail) != 0 || avail > 0) return false;
    /* the socket is empty, so networkDataAvailable's answer is SSL_pending's */
    std::lock_guard<std::mutex> lock(a->mu);
    auto it = a->ready.find(fd);
    return it != a->ready.end() && it->second->networkDataAvailable(0);
}

void dicom_tls_discard(dicom_tls_acceptor *a, int fd) { delete a->take(fd); }

bool dicom_tls_is_handshake_failure(const OFCondition &cond)
{
    /* DCMTK 3.6.7 reports handshake failures of a requestor as "TLS error: <OpenSSL reason>"
     * inside a generic connection failure, and some as DULC_TLSERROR. */
    if (cond.module() == OFM_dcmnet && cond.code() == DULC_TLSERROR) return true;
    const char *t = cond.text();
    return t && std::strstr(t, "TLS error") != nullptr;
}

extern "C" void samda_dicom_tls_init(samda_dicom_tls *t)
{
    if (!t) return;
    std::memset(t, 0, sizeof *t);
    t->require_peer_certificate = true;
}

extern "C" samda_status samda_dicom_tls_check(const samda_dicom_tls *t, bool is_server, samda_error *err)
{
    return dicom_guard(err, "checking DICOM TLS settings", SAMDA_ECONFIG, [&]() -> samda_status {
        samda_error local;
        samda_error *e = err ? err : &local;
        std::unique_ptr<DcmTLSTransportLayer> layer = make_layer(t, is_server, e);
        return layer ? SAMDA_OK : e->code;
    });
}
