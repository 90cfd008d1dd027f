/* A loopback TCP port for a test's listener, shared by the unit tests and benchmarks.
 * Header-only (one static function) so each test stays one executable. */
#ifndef SAMDA_TEST_PORT_H
#define SAMDA_TEST_PORT_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* A port nobody listens on now, drawn below the kernel's ephemeral range so that no outgoing
 * connection can take it as its source port before the listener binds it (a port the kernel
 * hands out for bind(0) can). Never the same port twice in one process. 0 when none is free.
 * Not thread-safe (keeps the ports it gave). */
static inline unsigned test_free_port(void)
{
    static unsigned given[64];
    static unsigned ngiven;
    unsigned lo = 32768;
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (f) {
        if (fscanf(f, "%u", &lo) != 1) lo = 32768;
        fclose(f);
    }
    if (lo <= 10001) lo = 32768;
    static unsigned seed;
    if (!seed) seed = (unsigned)time(NULL) ^ ((unsigned)getpid() << 16);
    for (int tries = 0; tries < 1000; tries++) {
        seed = seed * 1103515245u + 12345u;
        unsigned p = 10000 + (seed >> 8) % (lo - 10000);
        int seen = 0;
        for (unsigned i = 0; i < ngiven; i++) seen |= given[i] == p;
        if (seen) continue;
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0) return 0;
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((unsigned short)p),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int rc = bind(fd, (struct sockaddr *)&sa, sizeof sa);
        close(fd);
        if (rc != 0) continue;
        if (ngiven < sizeof given / sizeof given[0]) given[ngiven++] = p;
        return p;
    }
    return 0;
}

#endif
