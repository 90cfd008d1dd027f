/* api/ui.c: the operator console's files under /ui/, from the table compiled into the program
 * (ui_assets.c, generated from ui/ by embed_ui.cmake). They are public: they hold no data, and the
 * console reaches data only through the API with its bearer token, so every answer it sees is
 * already limited by the token's role. Each file goes out with a strict Content-Security-Policy
 * (API_UI_CSP: no inline script or style, nothing from another origin) and its own Content-Type.
 *
 * Tested in tests/unit/api/test_ui.c and, in chromium, tests/integration/test_console.sh. */
#include "ui.h"

#include <string.h>

#include "internal.h"

const api_ui_asset *api_ui_find(const char *name)
{
    if (!name[0]) name = "index.html";
    for (size_t i = 0; i < api_ui_n_assets; i++)
        if (strcmp(api_ui_assets[i].name, name) == 0) return &api_ui_assets[i];
    return NULL;
}

const char *api_ui_content_type(const char *name)
{
    static const struct { const char *ext, *type; } types[] = {
        {".html", "text/html; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
    };
    const char *dot = strrchr(name, '.');
    for (size_t i = 0; dot && i < sizeof types / sizeof types[0]; i++)
        if (strcmp(dot, types[i].ext) == 0) return types[i].type;
    return "application/octet-stream";
}

bool api_ui_serve(api_request *r, const char *path)
{
    if (strcmp(path, "/ui") != 0 && strncmp(path, "/ui/", 4) != 0) return false;
    if (r->method_bit != API_GET && r->method_bit != API_HEAD) {
        r->match.allowed = API_GET | API_HEAD; /* the Allow header of the 405 (server.c) */
        api_reply_problem(r, SAMDA_ENOTSUP, 405, "method %s not allowed on the console's files (allowed: GET, HEAD)",
                          r->method);
        return true;
    }
    if (strcmp(path, "/ui") == 0) { /* relative links in index.html need the trailing slash */
        struct MHD_Response *resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        if (resp) MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, "/ui/");
        api_reply_response(r, 308, resp);
        return true;
    }
    const api_ui_asset *a = api_ui_find(path + 4);
    if (!a) {
        api_reply_problem(r, SAMDA_ENOENT, 404, "no such console file: %.200s (the console starts at /ui/)", path);
        return true;
    }
    struct MHD_Response *resp = MHD_create_response_from_buffer(a->size, (void *)a->data, MHD_RESPMEM_PERSISTENT);
    if (resp) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, api_ui_content_type(a->name));
        MHD_add_response_header(resp, "Content-Security-Policy", API_UI_CSP);
        MHD_add_response_header(resp, "X-Frame-Options", "DENY");
        MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
    }
    api_reply_response(r, 200, resp);
    return true;
}
