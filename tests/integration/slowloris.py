#!/usr/bin/env python3
"""Slow clients for load tests: holds connections open by sending a byte every few seconds.

  slowloris.py HOST HTTP_PORT N_HTTP DICOM_PORT N_DICOM INTERVAL_S STATUS_FILE

HTTP connections send a request line and then one header byte per interval, never finishing the
headers. DICOM connections send the 6-byte header of an A-ASSOCIATE-RQ PDU announcing a body, then
one body byte per interval, never finishing the PDU. A connection the server closes is counted and
opened again. Each cycle rewrites STATUS_FILE with: http_open dicom_open http_closed dicom_closed.
Runs until killed (SIGTERM).
"""
import socket, struct, sys, time

host, hport, nh, dport, nd, interval, status = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \
    int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]), sys.argv[7]


def opener(kind):
    s = socket.create_connection((host, hport if kind == "http" else dport), timeout=5)
    s.setblocking(False)
    if kind == "http":
        s.send(b"GET /health HTTP/1.1\r\nHost: slow\r\nX-Slow: ")
    else:
        s.send(struct.pack(">BBI", 0x01, 0x00, 4096))  # A-ASSOCIATE-RQ of 4096 bytes, to come
    return s


conns = [["http", None] for _ in range(nh)] + [["dicom", None] for _ in range(nd)]
closed = {"http": 0, "dicom": 0}
while True:
    for c in conns:
        kind, s = c
        if s is not None:
            try:
                # a server that closed shows as readable EOF or a failed send
                try:
                    if s.recv(4096, socket.MSG_DONTWAIT) == b"":
                        raise OSError("closed")
                except BlockingIOError:
                    pass
                s.send(b"a" if kind == "http" else b"\x00")
            except OSError:
                s.close()
                c[1] = None
                closed[kind] += 1
        if c[1] is None:
            try:
                c[1] = opener(kind)
            except OSError:
                pass
    opened = {k: sum(1 for c in conns if c[0] == k and c[1] is not None) for k in ("http", "dicom")}
    with open(status + ".new", "w") as f:
        f.write("%d %d %d %d\n" % (opened["http"], opened["dicom"], closed["http"], closed["dicom"]))
    import os
    os.replace(status + ".new", status)
    time.sleep(interval)
