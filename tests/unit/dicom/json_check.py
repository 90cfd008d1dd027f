#!/usr/bin/python3
"""Checks samda's DICOM JSON of one file against pydicom's own reading of that file.

usage: json_check.py DICOM_FILE JSON_FILE [BULK_BASE]

The JSON must parse with a strict parser (no NaN), pydicom.Dataset.from_json() must accept it, and
every element pydicom reads from the file (except group 0002, group lengths, group 0000 and top-level
elements after the Pixel Data, which samda does not read) must
be in the JSON with the same VR (an ambiguous VR such as "US or SS" may be any of its choices) and
the same value: strings and person names equal, IS/DS equal as numbers, binary values equal as
little-endian bytes, sequences item by item. A binary value written as a BulkDataURI must be
pixel data or larger than the inline limit, and its URI must start with BULK_BASE. Prints one
line per mismatch and exits 1 if there was any.
"""
import json
import math
import sys

import pydicom
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

INLINE_MAX = 1024
BINARY = {"OB", "OD", "OF", "OL", "OV", "OW", "UN"}
SWAP = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}

problems = []
counted = 0


def reject_constant(name):
    raise ValueError("JSON constant %s is not allowed" % name)


def as_list(v):
    if v is None:
        return []
    if isinstance(v, (list, MultiValue)):
        return list(v)
    return [v]


def empty(v):
    return v is None or v == "" or v == b"" or (isinstance(v, (list, MultiValue)) and len(v) == 0)


def is_number(v):
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def swap(data, width):
    out = bytearray(data)
    for i in range(0, len(out) - len(out) % width, width):
        out[i:i + width] = out[i:i + width][::-1]
    return bytes(out)


def vr_matches(ref_vr, got_vr):
    return got_vr in [x.strip() for x in ref_vr.split(" or ")]


def compare(ref, got, path, little_endian, bulk_base, uris):
    global counted
    ref_tags = {t for t in ref.keys() if t.group not in (0x0000, 0x0002) and t.element != 0 and t.group != 0xFFFE}
    if path == "" and 0x7FE00010 in ref:
        # samda stops reading after the top-level Pixel Data (trailing padding, signatures, garbage)
        ref_tags = {t for t in ref_tags if t <= 0x7FE00010}
    got_tags = set(got.keys())
    for t in sorted(ref_tags - got_tags):
        problems.append("%s%s missing from the JSON" % (path, t))
    for t in sorted(got_tags - ref_tags):
        problems.append("%s%s in the JSON but not in the file" % (path, t))
    for t in sorted(ref_tags & got_tags):
        counted += 1
        r, g = ref[t], got[t]
        where = "%s%s" % (path, t)
        if int(t) == 0x7FE00010 and g.VR == "OB" and r.is_undefined_length:
            pass  # encapsulated pixel data is OB (PS3.5 A.4) whatever the file said
        elif g.VR == "UN" and t.is_private and ref.is_implicit_VR:
            continue  # a private tag DCMTK's dictionary does not know: its VR is not in the file
        elif not vr_matches(r.VR, g.VR):
            problems.append("%s VR %s, JSON says %s" % (where, r.VR, g.VR))
            continue
        vr = g.VR
        if vr == "SQ":
            if len(r.value) != len(g.value):
                problems.append("%s %d items, JSON has %d" % (where, len(r.value), len(g.value)))
                continue
            for i, (ri, gi) in enumerate(zip(r.value, g.value)):
                compare(ri, gi, "%s/%d/" % (where, i), little_endian, bulk_base, uris)
        elif vr in BINARY:
            rv = r.value if r.value is not None else b""
            key = (path, int(t))
            if key in uris:
                if bulk_base is None or not uris[key].startswith(bulk_base):
                    problems.append("%s bulk URI %s does not start with %s" % (where, uris[key], bulk_base))
                if len(rv) <= INLINE_MAX and int(t) != 0x7FE00010:
                    problems.append("%s %d bytes given as BulkDataURI (inline limit %d)" % (where, len(rv), INLINE_MAX))
                continue
            gv = g.value if g.value is not None else b""
            if not little_endian and vr in SWAP:
                rv = swap(rv, SWAP[vr])
            if len(gv) == 0 and len(rv) > INLINE_MAX:
                continue  # left out: no bulk base given
            if len(rv) % 2 == 1 and len(gv) == len(rv) + 1:
                gv = gv[:-1]  # DICOM values have even length: the reader padded it
            if bytes(rv) != bytes(gv):
                problems.append("%s binary value differs (%d bytes in file, %d in JSON)" % (where, len(rv), len(gv)))
        elif vr in ("IS", "DS"):
            rl, gl = as_list(r.value), as_list(g.value)
            if len(gl) == 0 and len(rl) == 1 and not is_number(rl[0]):
                continue  # one value that is no number: written as null on purpose
            if len(rl) != len(gl):
                problems.append("%s VM %d, JSON %d" % (where, len(rl), len(gl)))
                continue
            for a, b in zip(rl, gl):
                if empty(a) and empty(b):
                    continue
                if empty(b):
                    if is_number(a):
                        problems.append("%s value %r, JSON null" % (where, a))
                    continue  # else: no number, written as null on purpose
                try:
                    if float(a) != float(b):
                        problems.append("%s value %r, JSON %r" % (where, a, b))
                except (TypeError, ValueError):
                    if str(a).strip() != str(b).strip():
                        problems.append("%s value %r, JSON %r" % (where, a, b))
        elif vr == "PN":
            rl, gl = as_list(r.value), as_list(g.value)
            if len(rl) != len(gl):
                problems.append("%s VM %d, JSON %d" % (where, len(rl), len(gl)))
                continue
            for a, b in zip(rl, gl):
                sa, sb = str(a).rstrip("= ").rstrip(), str(b).rstrip("= ").rstrip()
                if sa != sb:
                    problems.append("%s name %r, JSON %r" % (where, sa, sb))
        elif int(t) == 0x00080005 and as_list(g.value) == ["ISO_IR 192"]:
            pass  # the text was converted to UTF-8, as JSON requires
        else:
            rl, gl = as_list(r.value), as_list(g.value)
            if empty(r.value) and empty(g.value):
                continue
            if len(rl) != len(gl):
                problems.append("%s VM %d, JSON %d" % (where, len(rl), len(gl)))
                continue
            for a, b in zip(rl, gl):
                if isinstance(a, str):
                    a = a.rstrip(" \0")
                    b = b.rstrip(" \0") if isinstance(b, str) else b
                    if vr in ("AE", "CS", "DA", "TM", "DT", "UI", "AS"):
                        a, b = a.strip(), b.strip() if isinstance(b, str) else b
                if empty(a) and empty(b):
                    continue
                if isinstance(a, float) and not math.isfinite(a) and b is None:
                    continue  # JSON has no NaN or infinity: null
                if isinstance(a, float) and isinstance(b, (int, float)):
                    ok = a == b or abs(a - b) <= 1e-6 * max(1.0, abs(a))
                else:
                    ok = a == b
                if not ok:
                    problems.append("%s value %r, JSON %r" % (where, a, b))


def main():
    dcm_path, json_path = sys.argv[1], sys.argv[2]
    bulk_base = sys.argv[3] if len(sys.argv) > 3 else None
    with open(json_path, "rb") as f:
        raw = f.read()
    text = raw.decode("utf-8")  # must be UTF-8
    obj = json.loads(text, parse_constant=reject_constant)
    if not isinstance(obj, dict):
        print("not a JSON object")
        return 1
    for key in obj:
        if len(key) != 8 or key.upper() != key or int(key, 16) >> 16 == 0x0002:
            problems.append("bad key %s" % key)
    uris = {}

    # Walk the JSON to find BulkDataURIs with their item paths (pydicom's handler gets no path).
    def find_uris(o, path):
        for k, v in o.items():
            tag = pydicom.tag.Tag(int(k, 16))
            if "BulkDataURI" in v:
                uris[(path, int(tag))] = v["BulkDataURI"]
            if v.get("vr") == "SQ":
                for i, item in enumerate(v.get("Value", [])):
                    find_uris(item, "%s%s/%d/" % (path, tag, i))
    find_uris(obj, "")

    got = Dataset.from_json(text, bulk_data_uri_handler=lambda tag, vr, uri: b"")
    ref = pydicom.dcmread(dcm_path, force=True)
    compare(ref, got, "", ref.is_little_endian, bulk_base, uris)
    for p in problems:
        print(p)
    print("%d elements compared, %d bulk URIs, %d problems" % (counted, len(uris), len(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
