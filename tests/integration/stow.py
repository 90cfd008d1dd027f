#!/usr/bin/env python3
"""STOW-RS client for tests: POST DICOM files as multipart/related; type="application/dicom".
usage: stow.py URL TOKEN FILE... ; prints the HTTP status on the first line, then the body."""
import sys, urllib.request, urllib.error, uuid

url, token, files = sys.argv[1], sys.argv[2], sys.argv[3:]
boundary = "samda-" + uuid.uuid4().hex
body = b""
for f in files:
    with open(f, "rb") as fh:
        data = fh.read()
    body += b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + data + b"\r\n"
body += b"--" + boundary.encode() + b"--\r\n"
req = urllib.request.Request(url, data=body, method="POST")
req.add_header("Content-Type", 'multipart/related; type="application/dicom"; boundary=' + boundary)
req.add_header("Accept", "application/dicom+json")
if token:
    req.add_header("Authorization", "Bearer " + token)
try:
    with urllib.request.urlopen(req, timeout=120) as r:
        print(r.status); print(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code); print(e.read().decode())
