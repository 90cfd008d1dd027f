/* libFuzzer target for the C-STORE SCP's network input after association: DCMTK's P-DATA and PDV
 * reassembly, DIMSE command-set parsing and the data sets that follow, as samdad's SCP (dicom/scp.cpp)
 * runs them on an association's own thread. One SCP listens on a loopback port for the whole run;
 * each input opens an association (Verification and CT Image Storage, implicit VR little endian),
 * then sends the input as P-DATA-TF PDUs and an A-RELEASE-RQ, reads whatever comes back and waits
 * until the SCP has ended the association, so that a crash is reported with the input that caused it.
 *
 * Input: a sequence of chunks [ctrl:1][len:2 big-endian][len bytes]. Each chunk is one PDV in one
 * P-DATA-TF PDU: presentation context 1 (Verification) when ctrl bit 0 is clear, else 3 (CT); the
 * PDV's message control header is (ctrl >> 1) & 3 (bit 0: command, bit 1: last fragment); ctrl bit
 * 3 sends the chunk's bytes as a raw PDU instead (its own PDU header, any type). Seeds in
 * corpus/scp: a C-ECHO-RQ, a C-STORE-RQ with a small CT data set (tests/fuzz/make_scp_seeds.py). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "dicom.h"

void fuzz_dicom_setup(void); /* dcmtk_quiet.cpp */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static samda_scp *scp;
static unsigned port;
static atomic_ulong ended;

static void on_end(void *ctx, const samda_assoc_info *a, samda_assoc_end how, unsigned n_stored, unsigned n_failed)
{
    (void)ctx, (void)a, (void)how, (void)n_stored, (void)n_failed;
    atomic_fetch_add(&ended, 1);
}

static void setup(void)
{
    if (scp) return;
    fuzz_dicom_setup();
    static char dir[] = "/tmp/samda-fuzz-scp-XXXXXX";
    if (!mkdtemp(dir)) abort();
    samda_scp_params p;
    samda_scp_params_init(&p);
    p.port = 0;
    p.temp_dir = dir;
    p.acse_timeout_s = 2;
    p.dimse_timeout_s = 2;
    p.idle_timeout_s = 2;
    p.max_associations = 4;
    p.on_association_end = on_end;
    samda_error e;
    scp = samda_scp_start(&p, &e);
    if (!scp) {
        fprintf(stderr, "fuzz_scp: %s\n", e.message);
        abort();
    }
    port = samda_scp_port(scp);
}

/* An AE title field: 16 bytes, space padded. */
static size_t put_ae(uint8_t *b, const char *ae)
{
    memset(b, ' ', 16);
    memcpy(b, ae, strlen(ae));
    return 16;
}

/* An item of the association request: type, reserved, 2-byte length, value. */
static size_t put_item(uint8_t *b, uint8_t type, const void *v, size_t len)
{
    b[0] = type;
    b[1] = 0;
    b[2] = (uint8_t)(len >> 8);
    b[3] = (uint8_t)len;
    memcpy(b + 4, v, len);
    return 4 + len;
}

static size_t put_pc(uint8_t *b, uint8_t id, const char *abstract)
{
    uint8_t v[256];
    size_t n = 0;
    v[n++] = id;
    v[n++] = 0;
    v[n++] = 0;
    v[n++] = 0;
    n += put_item(v + n, 0x30, abstract, strlen(abstract));
    n += put_item(v + n, 0x40, "1.2.840.10008.1.2", strlen("1.2.840.10008.1.2"));
    return put_item(b, 0x20, v, n);
}

static size_t assoc_rq(uint8_t *b)
{
    uint8_t body[1024];
    size_t n = 0;
    body[n++] = 0;
    body[n++] = 1; /* protocol version */
    body[n++] = 0;
    body[n++] = 0;
    n += put_ae(body + n, "SAMDA");
    n += put_ae(body + n, "FUZZ");
    memset(body + n, 0, 32);
    n += 32;
    n += put_item(body + n, 0x10, "1.2.840.10008.3.1.1.1", strlen("1.2.840.10008.3.1.1.1"));
    n += put_pc(body + n, 1, "1.2.840.10008.1.1");
    n += put_pc(body + n, 3, "1.2.840.10008.5.1.4.1.1.2");
    uint8_t maxpdu[4] = {0, 0, 0x40, 0}; /* 16384 */
    uint8_t ui[16];
    size_t u = put_item(ui, 0x51, maxpdu, 4);
    n += put_item(body + n, 0x50, ui, u);
    b[0] = 0x01;
    b[1] = 0;
    b[2] = (uint8_t)(n >> 24);
    b[3] = (uint8_t)(n >> 16);
    b[4] = (uint8_t)(n >> 8);
    b[5] = (uint8_t)n;
    memcpy(b + 6, body, n);
    return 6 + n;
}

static int send_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len) {
        ssize_t w = send(fd, p, len, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Read until the peer closes, nothing arrives for ms, or 64 KiB have come. Returns bytes read. */
static size_t drain(int fd, uint8_t *buf, size_t cap, int ms)
{
    size_t got = 0;
    while (got < cap) {
        struct pollfd pfd = {fd, POLLIN, 0};
        if (poll(&pfd, 1, ms) <= 0) break;
        ssize_t r = recv(fd, buf + got, cap - got, 0);
        if (r <= 0) break;
        got += (size_t)r;
    }
    return got;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    setup();
    const unsigned long before = atomic_load(&ended);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) abort();
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) abort();
    static uint8_t buf[70000];
    size_t n = assoc_rq(buf);
    if (send_all(fd, buf, n) != 0) abort();
    /* the A-ASSOCIATE-AC (type 2) */
    size_t got = 0;
    while (got < 6) {
        size_t r = drain(fd, buf + got, 6 - got, 3000);
        if (!r) break;
        got += r;
    }
    if (got < 6 || buf[0] != 0x02) {
        fprintf(stderr, "fuzz_scp: the association was not accepted (PDU type %u)\n", got ? buf[0] : 0);
        abort();
    }
    size_t ac_len = ((size_t)buf[2] << 24) | ((size_t)buf[3] << 16) | ((size_t)buf[4] << 8) | buf[5];
    while (ac_len) {
        size_t r = drain(fd, buf, ac_len < sizeof buf ? ac_len : sizeof buf, 3000);
        if (!r) break;
        ac_len -= r;
    }

    bool ok = true;
    for (size_t i = 0; ok && i + 3 <= size;) {
        const uint8_t ctrl = data[i];
        size_t len = ((size_t)data[i + 1] << 8) | data[i + 2];
        i += 3;
        if (len > size - i) len = size - i;
        if (ctrl & 8) {
            ok = send_all(fd, data + i, len) == 0;
        } else {
            const size_t pdv = len + 2; /* context id + message control header */
            const size_t pdu = pdv + 4;
            uint8_t h[12] = {0x04, 0, (uint8_t)(pdu >> 24), (uint8_t)(pdu >> 16), (uint8_t)(pdu >> 8), (uint8_t)pdu,
                             (uint8_t)(pdv >> 24), (uint8_t)(pdv >> 16), (uint8_t)(pdv >> 8), (uint8_t)pdv,
                             (uint8_t)((ctrl & 1) ? 3 : 1), (uint8_t)((ctrl >> 1) & 3)};
            ok = send_all(fd, h, sizeof h) == 0 && send_all(fd, data + i, len) == 0;
        }
        i += len;
    }
    if (ok) {
        const uint8_t release[10] = {0x05, 0, 0, 0, 0, 4, 0, 0, 0, 0};
        send_all(fd, release, sizeof release);
    }
    drain(fd, buf, sizeof buf, 20);
    close(fd);
    /* the SCP's thread for this association must be done before the next input */
    for (int waited = 0; atomic_load(&ended) == before; waited++) {
        if (waited > 10000) {
            fprintf(stderr, "fuzz_scp: the SCP did not end the association within 10 s\n");
            abort();
        }
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return 0;
}
