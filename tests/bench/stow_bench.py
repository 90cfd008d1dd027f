#!/usr/bin/python3
"""STOW-RS throughput: POST every Part 10 file under DIR in batches of B per request (multipart/related)
to URL, on C concurrent connections; bodies are built before timing. Prints one line:
"<instances> instances in <s> s: <rate> instances/s, <MiB/s> MiB/s, statuses {...}".

usage: stow_bench.py URL TOKEN|- DIR [B] [C]   (TOKEN "-": no Authorization header)
"""
import http.client
import os
import sys
import threading
import time
import urllib.parse
import uuid

url, token, d = sys.argv[1], sys.argv[2], sys.argv[3]
batch = int(sys.argv[4]) if len(sys.argv) > 4 else 20
conns = int(sys.argv[5]) if len(sys.argv) > 5 else 1
files = sorted(os.path.join(r, f) for r, _, fs in os.walk(d) for f in fs)
bodies = []
for i in range(0, len(files), batch):
    b = "bench-" + uuid.uuid4().hex
    parts = []
    for f in files[i:i + batch]:
        with open(f, "rb") as fh:
            parts.append(b"--" + b.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + fh.read() + b"\r\n")
    bodies.append((b, b"".join(parts) + b"--" + b.encode() + b"--\r\n", len(files[i:i + batch])))
u = urllib.parse.urlsplit(url)
statuses, lock = {}, threading.Lock()
queue = list(bodies)


def worker():
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=300)
    while True:
        with lock:
            if not queue:
                break
            b, body, n = queue.pop(0)
        h = {"Content-Type": 'multipart/related; type="application/dicom"; boundary=' + b,
             "Accept": "application/dicom+json"}
        if token != "-":
            h["Authorization"] = "Bearer " + token
        c.request("POST", u.path, body=body, headers=h)
        r = c.getresponse()
        r.read()
        with lock:
            statuses[r.status] = statuses.get(r.status, 0) + 1
    c.close()


t0 = time.monotonic()
ts = [threading.Thread(target=worker) for _ in range(conns)]
for t in ts:
    t.start()
for t in ts:
    t.join()
dt = time.monotonic() - t0
mib = sum(len(b[1]) for b in bodies) / 2 ** 20
print(f"{len(files)} instances in {dt:.2f} s: {len(files) / dt:.1f} instances/s, {mib / dt:.1f} MiB/s, statuses {statuses}")
