/* common/url.c: parsing the http(s) URLs of the configuration (url.h). */
#include "url.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool no(char *why, size_t n, const char *msg)
{
    if (why && n) snprintf(why, n, "%s", msg);
    return false;
}

static bool host_ok(const char *h, size_t n, bool bracketed)
{
    if (n == 0 || n >= 256) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)h[i];
        bool ok = isalnum(c) || c == '.' || c == '-' || (bracketed && (c == ':' || c == '%'));
        if (!ok) return false;
    }
    return true;
}

/* ":port" (or nothing) then "/path" (or nothing) at p. */
static bool port_and_path(const char *p, samda_url *u, char *why, size_t n)
{
    if (*p == ':') {
        char *end;
        long port = strtol(p + 1, &end, 10);
        if (end == p + 1 || port < 1 || port > 65535 || (*end && *end != '/'))
            return no(why, n, "the port must be a number 1..65535");
        u->port = (unsigned)port;
        p = end;
    }
    if (*p && *p != '/') return no(why, n, "expected ':port' or '/path' after the host");
    size_t len = strlen(p);
    while (len && p[len - 1] == '/') len--;
    if (len >= sizeof u->path) return no(why, n, "the path is too long");
    memcpy(u->path, p, len);
    u->path[len] = 0;
    return true;
}

bool samda_url_parse(const char *s, samda_url *u, char *why, size_t n)
{
    memset(u, 0, sizeof *u);
    if (!s) return no(why, n, "no URL");
    size_t len = strlen(s);
    if (len == 0 || len > 767) return no(why, n, "the URL is empty or longer than 767 characters");
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f || c == '"' || c == '<' || c == '>' || c == '\\' || c == '\'')
            return no(why, n, "the URL holds a space, a quote or a character outside printable ASCII");
    }
    if (strchr(s, '?') || strchr(s, '#')) return no(why, n, "a query or fragment is not allowed");
    const char *p;
    if (strncmp(s, "https://", 8) == 0) u->https = true, p = s + 8;
    else if (strncmp(s, "http://", 7) == 0) p = s + 7;
    else return no(why, n, "the URL must start with http:// or https://");
    u->port = u->https ? 443 : 80;
    const char *host_end;
    if (*p == '[') {
        host_end = strchr(p, ']');
        if (!host_end || !host_ok(p + 1, (size_t)(host_end - p - 1), true)) return no(why, n, "a bad [IPv6] host");
        memcpy(u->host, p + 1, (size_t)(host_end - p - 1));
        p = host_end + 1;
    } else {
        host_end = p + strcspn(p, ":/");
        if (memchr(p, '@', (size_t)(host_end - p)) || strchr(s, '@'))
            return no(why, n, "user information in the URL is not allowed (use username and secret_file)");
        if (!host_ok(p, (size_t)(host_end - p), false)) return no(why, n, "a bad host name");
        memcpy(u->host, p, (size_t)(host_end - p));
        p = host_end;
    }
    return port_and_path(p, u, why, n);
}
