/* api/deadlines.c: deadlines for a request's head and body, which libmicrohttpd does not enforce.
 *
 * libmicrohttpd's connection timeout is an idle timeout: a client that sends a byte now and then
 * never reaches it and holds a connection slot for as long as it likes. Each connection is tracked
 * from connect (and again after each answer, for the next request on a kept-alive connection) until
 * its request head is complete; a watchdog shuts down those still in their head after
 * header_timeout. From then until its body is complete the request may take body_timeout plus one
 * second per body_min_rate bytes received (Apache mod_reqtimeout's rule: an upload at a fair rate
 * may take as long as it needs, a trickle may not). The watchdog acts on its own dup of the socket,
 * so a connection MHD closes meanwhile can never make it touch another file.
 *
 * Tested in tests/unit/api/test_server.c (late_request_head_is_cut, trickled_body_is_cut). */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

static int64_t mono_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

void api_conn_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                     enum MHD_ConnectionNotificationCode code)
{
    samda_api *api = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        api_conn *c = calloc(1, sizeof *c);
        if (!c) return;
        const union MHD_ConnectionInfo *fi = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        c->fd = fi ? fcntl(fi->connect_fd, F_DUPFD_CLOEXEC, 0) : -1;
        if (c->fd < 0) {
            free(c);
            return; /* untracked: only the idle timeout applies to it */
        }
        const union MHD_ConnectionInfo *ai = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        snprintf(c->peer, sizeof c->peer, "?");
        if (ai && ai->client_addr) {
            const struct sockaddr *sa = ai->client_addr;
            if (sa->sa_family == AF_INET)
                inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, c->peer, sizeof c->peer);
            else if (sa->sa_family == AF_INET6)
                inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, c->peer, sizeof c->peer);
        }
        atomic_init(&c->head_since_ms, mono_ms());
        atomic_init(&c->in_head, true);
        pthread_mutex_lock(&api->conn_mu);
        c->next = api->conns;
        if (api->conns) api->conns->prev = c;
        api->conns = c;
        pthread_mutex_unlock(&api->conn_mu);
        *socket_context = c;
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        api_conn *c = *socket_context;
        if (!c) return;
        *socket_context = NULL;
        pthread_mutex_lock(&api->conn_mu);
        if (c->prev) c->prev->next = c->next;
        else api->conns = c->next;
        if (c->next) c->next->prev = c->prev;
        pthread_mutex_unlock(&api->conn_mu);
        close(c->fd);
        free(c);
    }
}

/* The request head of conn is complete (first access-handler call) or a new one begins (answer sent). */
api_conn *api_conn_tracked(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

void api_conn_mark_head(struct MHD_Connection *conn, bool in_head)
{
    api_conn *c = api_conn_tracked(conn);
    if (!c) return;
    if (in_head) {
        atomic_store(&c->in_body, false);
        atomic_store(&c->head_since_ms, mono_ms());
    } else {
        atomic_store(&c->body_bytes, 0);
        atomic_store(&c->body_since_ms, mono_ms());
        atomic_store(&c->in_body, true);
    }
    atomic_store(&c->in_head, in_head);
}

/* Whether a tracked connection is past its deadline now (and so is to be closed). */
static bool conn_late(const samda_api *api, api_conn *c, int64_t now, bool *in_body)
{
    *in_body = false;
    if (atomic_load(&c->in_head))
        return api->p.header_timeout_s > 0 && now - atomic_load(&c->head_since_ms) >= (int64_t)api->p.header_timeout_s * 1000;
    if (!atomic_load(&c->in_body) || api->p.body_timeout_s == 0) return false;
    *in_body = true;
    const uint64_t allowance = (uint64_t)api->p.body_timeout_s * 1000 + atomic_load(&c->body_bytes) * 1000 / api->p.body_min_rate;
    return now - atomic_load(&c->body_since_ms) >= (int64_t)allowance;
}

static void *watchdog_thread(void *arg)
{
    samda_api *api = arg;
    pthread_mutex_lock(&api->conn_mu);
    while (!api->watchdog_stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 250 * 1000 * 1000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&api->conn_cv, &api->conn_mu, &until);
        if (api->watchdog_stop) break;
        const int64_t now = mono_ms();
        unsigned closed[2] = {0, 0}; /* head, body */
        char first[2][64] = {"", ""};
        for (api_conn *c = api->conns; c; c = c->next) {
            bool body;
            if (!conn_late(api, c, now, &body)) continue;
            atomic_store(&c->in_head, false); /* once */
            atomic_store(&c->in_body, false);
            shutdown(c->fd, SHUT_RDWR); /* MHD sees the connection end and closes it */
            if (!closed[body]++) snprintf(first[body], sizeof first[body], "%s", c->peer);
        }
        if (closed[0]) {
            atomic_fetch_add(&api->header_timeouts, closed[0]);
            api_log(api, SAMDA_API_LOG_WARN, "closed connections whose request head was late",
                    "count=%u first_peer=%s header_timeout_s=%u", closed[0], first[0], api->p.header_timeout_s);
        }
        if (closed[1]) {
            atomic_fetch_add(&api->body_timeouts, closed[1]);
            api_log(api, SAMDA_API_LOG_WARN, "closed connections whose request body was too slow",
                    "count=%u first_peer=%s body_timeout_s=%u body_min_rate=%u", closed[1], first[1],
                    api->p.body_timeout_s, api->p.body_min_rate);
        }
    }
    pthread_mutex_unlock(&api->conn_mu);
    return NULL;
}


bool api_watchdog_start(samda_api *api)
{
    if (pthread_create(&api->watchdog, NULL, watchdog_thread, api) != 0) return false;
    api->watchdog_running = true;
    return true;
}

void api_watchdog_stop(samda_api *api)
{
    if (!api->watchdog_running) return;
    pthread_mutex_lock(&api->conn_mu);
    api->watchdog_stop = true;
    pthread_cond_signal(&api->conn_cv);
    pthread_mutex_unlock(&api->conn_mu);
    pthread_join(api->watchdog, NULL);
    api->watchdog_running = false;
}
