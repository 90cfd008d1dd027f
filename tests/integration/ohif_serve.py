#!/usr/bin/env python3
"""Serve a built OHIF viewer (the dist/ folder of @ohif/app) on loopback for test_ohif.sh.

Usage: ohif_serve.py DIST PORT DICOMWEB_URL
Files come from DIST; app-config.js is generated so that OHIF's one data source is samda's
DICOMweb at DICOMWEB_URL; any other path without a file is the single-page app (index.html), as
OHIF's router needs (/viewer?StudyInstanceUIDs=...). Nothing is written into DIST.
"""
import http.server
import os
import sys

DIST, PORT, DICOMWEB = sys.argv[1], int(sys.argv[2]), sys.argv[3].rstrip("/")

CONFIG = """window.config = {
  routerBasename: null,
  extensions: [],
  modes: [],
  customizationService: {},
  showStudyList: true,
  maxNumberOfWebWorkers: 2,
  showWarningMessageForCrossOrigin: false,
  showCPUFallbackMessage: false,
  showLoadingIndicator: true,
  strictZSpacingForVolumeViewport: true,
  maxNumRequests: { interaction: 100, thumbnail: 5, prefetch: 10 },
  showErrorDetails: 'always',
  disableConfirmationPrompts: true,
  measurementTrackingMode: 'none',
  defaultDataSourceName: 'samda',
  dataSources: [
    {
      namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
      sourceName: 'samda',
      configuration: {
        friendlyName: 'samda',
        name: 'samda',
        wadoUriRoot: '%(url)s',
        qidoRoot: '%(url)s',
        wadoRoot: '%(url)s',
        qidoSupportsIncludeField: true,
        imageRendering: 'wadors',
        thumbnailRendering: 'wadors',
        enableStudyLazyLoad: true,
        supportsFuzzyMatching: false,
        supportsWildcard: true,
        omitQuotationForMultipartRequest: true,
        bulkDataURI: { enabled: true, relativeResolution: 'studies' },
      },
    },
  ],
};
""" % {"url": DICOMWEB}


class Handler(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *a, **kw):
        super().__init__(*a, directory=DIST, **kw)

    def log_message(self, fmt, *args):
        sys.stderr.write("ohif_serve: " + (fmt % args) + "\n")

    def send_config(self):
        body = CONFIG.encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/javascript")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(body)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path.rstrip("/").endswith("/app-config.js") or path == "/app-config.js":
            return self.send_config()
        local = os.path.join(DIST, path.lstrip("/"))
        if path != "/" and not os.path.isfile(local):
            # a client-side route of the single-page app
            self.path = "/index.html"
        return super().do_GET() if self.command == "GET" else super().do_HEAD()


http.server.ThreadingHTTPServer.allow_reuse_address = True
with http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler) as srv:
    srv.serve_forever()
