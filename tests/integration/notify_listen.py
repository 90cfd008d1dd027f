#!/usr/bin/python3
"""The service manager's end of the sd_notify protocol, for tests: bind a Unix datagram socket at
PATH and append every message received to OUT, one line per message (newlines inside a message
become spaces), each prefixed with the seconds since start. Runs until killed.

Usage: notify_listen.py PATH OUT"""
import os
import socket
import sys
import time

path, out = sys.argv[1], sys.argv[2]
if os.path.exists(path):
    os.unlink(path)
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
t0 = time.monotonic()
with open(out, "a", buffering=1) as f:
    while True:
        msg = s.recv(4096).decode("utf-8", "replace").strip().replace("\n", " ")
        f.write("%.3f %s\n" % (time.monotonic() - t0, msg))
