#!/usr/bin/env python3
"""A TCP proxy in front of a DICOM peer that misbehaves on request, for fault tests.

Usage: faultproxy.py LISTEN_PORT TARGET_PORT MODE_FILE
The mode is read from MODE_FILE at each new connection (one line):
  pass            forward both ways
  reset N         forward; once N bytes came from the client, reset both connections (RST)
  stall N         forward N bytes from the client, then forward nothing more either way and stop
                  reading, holding both connections open until the client leaves
  slow SECONDS    forward, sleeping SECONDS before each chunk passed back to the client
Each connection prints two lines on stdout: "conn N MODE: open", then how it ended."""
import select
import socket
import struct
import sys
import threading
import time


def rst_close(s):
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    s.close()


def serve(n, client, target_port, mode):
    kind = mode[0] if mode else "pass"
    arg = float(mode[1]) if len(mode) > 1 else 0.0
    try:
        server = socket.create_connection(("127.0.0.1", target_port), timeout=10)
    except OSError as e:
        print(f"conn {n} {kind}: target unreachable: {e}", flush=True)
        rst_close(client)
        return
    server.settimeout(None)
    print(f"conn {n} {kind}: open", flush=True)
    done = threading.Event()
    state = {"up": 0, "end": "closed"}

    def back():  # server -> client
        try:
            while not done.is_set():
                b = server.recv(65536)
                if not b:
                    break
                if kind == "stall" and state["up"] >= arg:
                    continue  # swallow: the client hears nothing more
                if kind == "slow":
                    time.sleep(arg)
                client.sendall(b)
        except OSError:
            pass
        done.set()

    t = threading.Thread(target=back, daemon=True)
    t.start()
    try:
        while not done.is_set():
            room = 65536
            if kind in ("reset", "stall"):
                room = max(1, min(room, int(arg) - state["up"]))
            b = client.recv(room)
            if not b:
                break
            server.sendall(b)
            state["up"] += len(b)
            if kind == "reset" and state["up"] >= arg:
                state["end"] = f"reset after {state['up']} bytes"
                rst_close(client)
                rst_close(server)
                done.set()
                break
            if kind == "stall" and state["up"] >= arg:
                state["end"] = f"stalled after {state['up']} bytes"
                # read nothing more; wait for the client to hang up (POLLRDHUP tells it even while
                # unread data is waiting)
                p = select.poll()
                p.register(client, select.POLLRDHUP | select.POLLHUP | select.POLLERR)
                while not p.poll(500):
                    pass
                break
    except OSError as e:
        state["end"] = f"error {e}"
    done.set()
    for s in (client, server):
        try:
            s.close()
        except OSError:
            pass
    print(f"conn {n} {kind}: {state['end']} ({state['up']} bytes from the client)", flush=True)


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    listen_port, target_port, mode_file = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", listen_port))
    ls.listen(16)
    print(f"listening on {listen_port} -> {target_port}", flush=True)
    n = 0
    while True:
        c, _ = ls.accept()
        n += 1
        try:
            with open(mode_file) as f:
                mode = f.read().split()
        except OSError:
            mode = ["pass"]
        threading.Thread(target=serve, args=(n, c, target_port, mode), daemon=True).start()


if __name__ == "__main__":
    main()
