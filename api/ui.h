/* The operator console's static files (ui/ in the source tree), compiled into samdad by
 * api/embed_ui.cmake and served under /ui/ without a token: they hold no data; every call they make
 * goes to the API with the signed-in token (docs/architecture.md, "The console").
 * Internal to api/; the table is constant, every function reentrant. */
#ifndef SAMDA_API_UI_H
#define SAMDA_API_UI_H

#include <stdbool.h>
#include <stddef.h>

typedef struct api_ui_asset {
    const char *name;          /* "index.html": a file name, no folder */
    const unsigned char *data; /* static storage; data[size] is a NUL */
    size_t size;
} api_ui_asset;

/** The embedded files (generated ui_assets.c). */
extern const api_ui_asset api_ui_assets[];
extern const size_t api_ui_n_assets;

/** The asset called name ("" means index.html), or NULL. Only exact names of the table match, so
 *  no request can reach a file outside it. */
const api_ui_asset *api_ui_find(const char *name);
/** Content-Type for an asset's name (by extension; "application/octet-stream" if unknown). */
const char *api_ui_content_type(const char *name);

/** The Content-Security-Policy every console file is sent with: nothing inline, nothing from another
 *  origin, images also from blob: and data: (the viewer's canvases). */
#define API_UI_CSP                                                                                 \
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "       \
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

typedef struct api_request api_request;
/** Answer a request for /ui or /ui/... (GET/HEAD: the file, 404 when unknown; other methods 405;
 *  /ui: 308 to /ui/). Returns false, answering nothing, for any other path. */
bool api_ui_serve(api_request *r, const char *path);

#endif
