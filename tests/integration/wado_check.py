#!/usr/bin/python3
"""Check WADO-RS metadata against the stored files with pydicom: every top-level attribute of each
file (file meta, group lengths and Pixel Data aside) is in the metadata with an equal value (DS and
FD within 1e-9 relative), sequences item by item; Pixel Data carries a BulkDataURI naming the
instance's frames; the frame bytes served equal the file's pixel data.

usage: wado_check.py METADATA.json BASE_URL TOKEN FILE...   (FILE: the Part 10 files, any order)
Prints "ok <instances> <attributes compared>" or raises."""
import json
import math
import sys
import urllib.request

import pydicom
from pydicom.dataset import Dataset

meta_path, base, token, files = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
meta = json.load(open(meta_path))
by_sop = {}
for obj in meta:
    by_sop[obj["00080018"]["Value"][0]] = obj


def same(a, b):
    if isinstance(a, (list, tuple, pydicom.multival.MultiValue)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def compare(fds, jds, where):
    n = 0
    for el in fds:
        if el.tag.group == 0x0002 or el.tag.element == 0 or el.tag == 0x7FE00010:
            continue
        if el.tag not in jds:
            raise SystemExit(f"{where}: {el.tag} {el.keyword} missing from the metadata")
        je = jds[el.tag]
        if el.VR == "SQ":
            if len(el.value) != len(je.value):
                raise SystemExit(f"{where}: {el.keyword} has {len(je.value)} items, file {len(el.value)}")
            for i, (fi, ji) in enumerate(zip(el.value, je.value)):
                n += compare(fi, ji, f"{where}/{el.keyword}[{i}]")
            continue
        fv, jv = el.value, je.value
        if el.VR == "PN":
            fv, jv = str(fv), str(jv)
        if el.VR in ("OB", "OW", "OF", "OD", "OL", "OV", "UN") and isinstance(jv, bytes) is False:
            continue  # bulk data by reference
        if fv in (None, "", b"") and jv in (None, "", b""):
            n += 1
            continue
        if not same(fv, jv):
            raise SystemExit(f"{where}: {el.tag} {el.keyword}: metadata {jv!r} != file {fv!r}")
        n += 1
    return n


def frames(url):
    req = urllib.request.Request(url, headers={"Authorization": "Bearer " + token,
                                               "Accept": 'multipart/related; type="application/octet-stream"'})
    with urllib.request.urlopen(req) as r:
        ct, body = r.headers["Content-Type"], r.read()
    boundary = ct.split("boundary=")[1].strip('"').encode()
    parts = body.split(b"--" + boundary)[1:-1]
    return [p[p.index(b"\r\n\r\n") + 4:-2] for p in parts]


total = 0
for f in files:
    fds = pydicom.dcmread(f)
    sop = str(fds.SOPInstanceUID)
    obj = by_sop.get(sop)
    if obj is None:
        raise SystemExit(f"{f}: instance {sop} not in the metadata")
    uri = obj["7FE00010"].get("BulkDataURI")
    want = f"{base}/dicomweb/studies/{fds.StudyInstanceUID}/series/{fds.SeriesInstanceUID}/instances/{sop}/frames/1"
    if uri != want:
        raise SystemExit(f"{f}: PixelData BulkDataURI {uri!r}, wanted {want!r}")
    jds = Dataset.from_json(obj, bulk_data_uri_handler=lambda tag, vr, value: None)
    total += compare(fds, jds, f)
    got = frames(uri)
    if len(got) != 1 or got[0] != fds.PixelData:
        raise SystemExit(f"{f}: frame 1 bytes differ from the file's pixel data ({len(got[0]) if got else 0} vs {len(fds.PixelData)})")
if len(by_sop) != len(files):
    raise SystemExit(f"metadata has {len(by_sop)} instances, {len(files)} files given")
print("ok", len(files), total)
