#!/usr/bin/env python3
"""A raw DICOM upper-layer client for hostile-input tests: it sends what storescu cannot.

Python 3 standard library only. It builds the A-ASSOCIATE-RQ, P-DATA-TF PDUs with PDVs cut as the
test asks (small, slow, odd-length) and C-STORE-RQ command sets with chosen Affected SOP Instance
UIDs, reads the answers and prints one JSON line per step:

  dimse_raw.py HOST PORT [--calling AE] [--called AE] [--source IP] STEP...

Steps, run in order on one association (the association is requested first):
  echo                       C-ECHO-RQ; prints its status
  store:FILE[:OPT=V...]      C-STORE-RQ of a Part 10 file's data set (in the file's transfer syntax);
                             prints status and ErrorComment, or how the association ended. Options:
                               pdv=N      data set cut into PDVs of N bytes, one P-DATA-TF each
                               delay=S    seconds to wait before each PDV (trickling)
                               uid=empty|65|VALUE   the command's Affected SOP Instance UID
                               odd=1      the first data set PDV has an odd length (1001 bytes)
                               nomsgid=1  the command has no Message ID (0000,0110)
                               cpdv=N, cdelay=S   the same for the command set
  sleep:S                    wait S seconds
  release                    A-RELEASE-RQ; prints whether A-RELEASE-RP came
Output lines: {"step": ..., "result": ...} with result "accepted" | "rejected" | "status" |
"aborted" (A-ABORT received) | "closed" (connection ended) | "released" | "timeout"; a rejection
adds "rj": [result, source, reason], a status adds "status" (int), "status_hex" and "comment".
Exit status: 0 when every step ran (whatever the answers), 1 when the association ended early.
"""
import json
import select
import socket
import struct
import sys
import time

APP_CONTEXT = b"1.2.840.10008.3.1.1.1"
VERIFICATION = "1.2.840.10008.1.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPL_CLASS_UID = b"1.2.826.0.1.3680043.9.7433.99.1"


T0 = time.monotonic()


def out(**kv):
    kv["t"] = round(time.monotonic() - T0, 2)  # seconds since the start
    print(json.dumps(kv), flush=True)


def item(kind, payload):
    return struct.pack(">BBH", kind, 0, len(payload)) + payload


def pad_uid(uid):
    b = uid.encode("ascii") if isinstance(uid, str) else uid
    return b + b"\0" if len(b) % 2 else b


def read_part10(path):
    """(sop_class, sop_instance, transfer_syntax, data set bytes) of a Part 10 file."""
    with open(path, "rb") as f:
        b = f.read()
    if b[128:132] != b"DICM":
        raise SystemExit(f"{path}: not a Part 10 file")
    pos, meta = 132, {}
    while pos + 8 <= len(b):
        group, elem = struct.unpack_from("<HH", b, pos)
        if group != 2:
            break
        vr = b[pos + 4:pos + 6]
        if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN"):
            n = struct.unpack_from("<I", b, pos + 8)[0]
            val, pos = b[pos + 12:pos + 12 + n], pos + 12 + n
        else:
            n = struct.unpack_from("<H", b, pos + 6)[0]
            val, pos = b[pos + 8:pos + 8 + n], pos + 8 + n
        meta[elem] = val
    text = lambda e: meta.get(e, b"").rstrip(b"\0 ").decode("ascii")
    return text(0x0002), text(0x0003), text(0x0010), b[pos:]


def command(elements):
    """Command set in Implicit VR Little Endian with its group length; elements: {elem: bytes}."""
    body = b"".join(struct.pack("<HHI", 0, e, len(v)) + v for e, v in sorted(elements.items()))
    return struct.pack("<HHI", 0, 0, 4) + struct.pack("<I", len(body)) + body


def parse_command(b):
    els, pos = {}, 0
    while pos + 8 <= len(b):
        _, e, n = struct.unpack_from("<HHI", b, pos)
        els[e] = b[pos + 8:pos + 8 + n]
        pos += 8 + n
    return els


class Peer:
    def __init__(self, host, port, calling, called, source, contexts):
        self.s = socket.create_connection((host, port), timeout=30,
                                          source_address=(source, 0) if source else None)
        self.contexts = contexts  # [(abstract, [ts...])], presentation context ids 1, 3, 5...
        self.accepted = {}        # pcid -> transfer syntax
        self.max_pdu = 16384
        self.msg_id = 0
        body = struct.pack(">HH", 1, 0) + called.encode().ljust(16) + calling.encode().ljust(16) + b"\0" * 32
        body += item(0x10, APP_CONTEXT)
        for i, (abstract, tss) in enumerate(contexts):
            sub = item(0x30, abstract.encode()) + b"".join(item(0x40, t.encode()) for t in tss)
            body += item(0x20, struct.pack(">BBBB", 2 * i + 1, 0, 0, 0) + sub)
        body += item(0x50, item(0x51, struct.pack(">I", 65536)) + item(0x52, IMPL_CLASS_UID))
        self.send_pdu(0x01, body)

    def send_pdu(self, kind, body):
        self.s.sendall(struct.pack(">BBI", kind, 0, len(body)) + body)

    def recv_exact(self, n):
        b = b""
        while len(b) < n:
            chunk = self.s.recv(n - len(b))
            if not chunk:
                raise ConnectionError("closed")
            b += chunk
        return b

    def recv_pdu(self):
        kind, _, n = struct.unpack(">BBI", self.recv_exact(6))
        return kind, self.recv_exact(n)

    def associate(self):
        kind, body = self.recv_pdu()
        if kind == 0x03:
            return "rejected", list(body[1:4])
        if kind != 0x02:
            return "aborted" if kind == 0x07 else f"pdu-{kind:02x}", None
        pos = 68
        while pos + 4 <= len(body):
            t, _, n = struct.unpack_from(">BBH", body, pos)
            v = body[pos + 4:pos + 4 + n]
            if t == 0x21 and v[2] == 0:
                ts = v[4 + 4:4 + 4 + struct.unpack_from(">H", v, 6)[0]].decode()
                self.accepted[v[0]] = ts
            elif t == 0x50:
                p = 0
                while p + 4 <= len(v):
                    st, _, sn = struct.unpack_from(">BBH", v, p)
                    if st == 0x51:
                        self.max_pdu = struct.unpack_from(">I", v, p + 4)[0] or self.max_pdu
                    p += 4 + sn
            pos += 4 + n
        return "accepted", None

    def pcid_for(self, abstract, ts):
        for i, (a, _) in enumerate(self.contexts):
            if a == abstract and self.accepted.get(2 * i + 1) == ts:
                return 2 * i + 1
        raise SystemExit(f"no accepted presentation context for {abstract} in {ts}")

    def send_pdvs(self, pcid, data, is_command, pdv=None, delay=0.0, first=None):
        """Sends data as PDVs of pdv bytes (first PDV: first bytes), one P-DATA-TF each."""
        limit = min(pdv or self.max_pdu - 6, self.max_pdu - 6)
        pos, n = 0, 0
        while True:
            size = first if (n == 0 and first) else limit
            chunk = data[pos:pos + size]
            pos += len(chunk)
            last = pos >= len(data)
            ctrl = (1 if is_command else 0) | (2 if last else 0)
            if delay:
                time.sleep(delay)
                self.check_abort()
            self.send_pdu(0x04, struct.pack(">IBB", len(chunk) + 2, pcid, ctrl) + chunk)
            n += 1
            if last:
                return

    def check_abort(self):
        """Raises if the peer already aborted or closed (while we are still sending)."""
        if select.select([self.s], [], [], 0)[0]:
            kind, _ = self.recv_pdu()
            if kind == 0x07:
                raise ConnectionAbortedError("A-ABORT")
            raise ConnectionError(f"unexpected PDU 0x{kind:02x} while sending")

    def read_response(self):
        """The next command set received, as {elem: bytes}; raises on abort or close."""
        buf = b""
        while True:
            kind, body = self.recv_pdu()
            if kind == 0x07:
                raise ConnectionAbortedError("A-ABORT")
            if kind != 0x04:
                raise ConnectionError(f"unexpected PDU 0x{kind:02x}")
            pos = 0
            while pos + 6 <= len(body):
                n = struct.unpack_from(">I", body, pos)[0]
                ctrl = body[pos + 5]
                buf += body[pos + 6:pos + 4 + n]
                pos += 4 + n
                if ctrl & 1 and ctrl & 2:
                    return parse_command(buf)

    def next_id(self):
        self.msg_id += 1
        return struct.pack("<H", self.msg_id)


def status_line(step, els):
    st = struct.unpack("<H", els.get(0x0900, b"\xff\xff"))[0]
    comment = els.get(0x0902, b"").rstrip(b"\0 ").decode("latin-1")
    out(step=step, result="status", status=st, status_hex=f"{st:04X}", comment=comment)


def main(argv):
    args, steps, opts = list(argv), [], {"calling": "RAWSCU", "called": "SAMDA", "source": None}
    host, port = args.pop(0), int(args.pop(0))
    while args:
        a = args.pop(0)
        if a.startswith("--"):
            opts[a[2:]] = args.pop(0)
        else:
            steps.append(a)
    files = {}
    for st in steps:
        if st.startswith("store:"):
            path = st.split(":")[1]
            files[path] = read_part10(path)
    contexts = [(VERIFICATION, [EXPLICIT_LE, IMPLICIT_LE])]
    for cls, _, ts, _ in files.values():
        if (cls, [ts]) not in contexts:
            contexts.append((cls, [ts]))
    try:
        peer = Peer(host, port, opts["calling"], opts["called"], opts["source"], contexts)
        result, rj = peer.associate()
    except (OSError, ConnectionError) as e:
        out(step="associate", result="closed", error=str(e))
        return 1
    if rj is not None:
        out(step="associate", result=result, rj=rj)
        return 1
    out(step="associate", result=result)
    if result != "accepted":
        return 1
    for st in steps:
        parts = st.split(":")
        try:
            if parts[0] == "echo":
                pcid = 1
                cmd = command({0x0002: pad_uid(VERIFICATION), 0x0100: struct.pack("<H", 0x0030),
                               0x0110: peer.next_id(), 0x0800: struct.pack("<H", 0x0101)})
                peer.send_pdvs(pcid, cmd, True)
                status_line(st, peer.read_response())
            elif parts[0] == "sleep":
                time.sleep(float(parts[1]))
                out(step=st, result="slept")
            elif parts[0] == "release":
                peer.send_pdu(0x05, b"\0" * 4)
                kind, _ = peer.recv_pdu()
                out(step=st, result="released" if kind == 0x06 else f"pdu-{kind:02x}")
                peer.s.close()
                return 0
            elif parts[0] == "store":
                o = dict(p.split("=", 1) for p in parts[2:])
                cls, inst, ts, data = files[parts[1]]
                uid = inst
                if "uid" in o:
                    uid = {"empty": "", "65": "1." + "2" * 63}.get(o["uid"], o["uid"])
                els = {0x0002: pad_uid(cls), 0x0100: struct.pack("<H", 0x0001), 0x0110: peer.next_id(),
                       0x0700: struct.pack("<H", 0), 0x0800: struct.pack("<H", 0x0000), 0x1000: pad_uid(uid)}
                if o.get("nomsgid"):
                    del els[0x0110]
                pcid = peer.pcid_for(cls, ts)
                peer.send_pdvs(pcid, command(els), True, pdv=int(o["cpdv"]) if "cpdv" in o else None,
                               delay=float(o.get("cdelay", 0)))
                peer.send_pdvs(pcid, data, False, pdv=int(o["pdv"]) if "pdv" in o else None,
                               delay=float(o.get("delay", 0)), first=1001 if o.get("odd") else None)
                status_line(st, peer.read_response())
            else:
                raise SystemExit(f"unknown step {st}")
        except ConnectionAbortedError:
            out(step=st, result="aborted")
            return 1
        except socket.timeout:
            out(step=st, result="timeout")
            return 1
        except (ConnectionError, OSError) as e:
            # an A-ABORT may still be readable after a failed send
            try:
                peer.s.settimeout(2)
                kind, _ = peer.recv_pdu()
                out(step=st, result="aborted" if kind == 0x07 else "closed", error=str(e))
            except (OSError, ConnectionError):
                out(step=st, result="closed", error=str(e))
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
