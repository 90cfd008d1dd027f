/* common/url.c: the one rule for the http(s) URLs samda is configured with (STOW-RS destinations). */
#ifndef SAMDA_COMMON_URL_H
#define SAMDA_COMMON_URL_H

#include <stdbool.h>
#include <stddef.h>

typedef struct samda_url {
    bool https;
    char host[256];   /* a DNS name or IPv4 address, or an IPv6 address without its brackets */
    unsigned port;    /* the URL's, else 443 / 80 */
    char path[512];   /* "" or "/..." without a trailing '/' */
} samda_url;

/** Parse "http[s]://host[:port][/path]" (no user info, query or fragment; at most 767 characters,
 *  printable ASCII without spaces, quotes, '<', '>' or '\\'). @param why OUT: the problem when
 *  false (may be NULL). @return true when valid. Thread-safe. */
bool samda_url_parse(const char *s, samda_url *u, char *why, size_t why_size);

#endif
