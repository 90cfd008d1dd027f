#!/usr/bin/env python3
"""Fresh copies of a series for load tests, cheaply.

  load_batch.py template SRC_DIR TEMPLATE_DIR [N_FILES]
      pydicom, once: copies of the first N_FILES files under 1 MiB of SRC_DIR whose Study, Series, SOP Instance
      and Frame of Reference UIDs are replaced by fixed 62-character markers.
  load_batch.py batch TEMPLATE_DIR OUT_DIR RUN SENDER BATCH
      No pydicom (fast): copies of the template with the markers replaced byte for byte by new
      UIDs of the same length (so every element length stays valid): a new study and series per
      batch, a new SOP Instance UID per file. Prints the SOP Instance UIDs written, one a line.
"""
import os, sys

ROOT = "2.25.9"
STUDY = ROOT + "1" * 56
SERIES = ROOT + "2" * 56
FOR = ROOT + "4" * 56


def sop_marker(i):
    return ROOT + "3" * 53 + "%03d" % i


def new_uid(run, sender, batch, kind, i=0):
    # "2.25.1" then 56 digits: run(12) sender(3) batch(7) kind(1) index(3), zero padded in between
    digits = "%012d%03d%07d%d%03d" % (run, sender, batch, kind, i)
    uid = "2.25.1" + digits + "0" * (56 - len(digits))
    assert len(uid) == 62
    return uid


def template(src, dst, n):
    import pydicom
    os.makedirs(dst, exist_ok=True)
    # small files only (the fixture's first slice carries a large private blob)
    files = sorted(f for f in os.listdir(src)
                   if not f.startswith(".") and os.path.getsize(os.path.join(src, f)) < (1 << 20))[:n]
    for i, f in enumerate(files):
        ds = pydicom.dcmread(os.path.join(src, f))
        ds.StudyInstanceUID = STUDY
        ds.SeriesInstanceUID = SERIES
        ds.SOPInstanceUID = sop_marker(i)
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        if "FrameOfReferenceUID" in ds:
            ds.FrameOfReferenceUID = FOR
        ds.save_as(os.path.join(dst, "t%03d.dcm" % i))


def batch(tdir, out, run, sender, b):
    os.makedirs(out, exist_ok=True)
    study = new_uid(run, sender, b, 1).encode()
    series = new_uid(run, sender, b, 2).encode()
    sops = []
    for f in sorted(os.listdir(tdir)):
        i = int(f[1:4])
        data = open(os.path.join(tdir, f), "rb").read()
        sop = new_uid(run, sender, b, 3, i)
        data = data.replace(STUDY.encode(), study).replace(SERIES.encode(), series)
        data = data.replace(sop_marker(i).encode(), sop.encode())
        with open(os.path.join(out, f), "wb") as fh:
            fh.write(data)
        sops.append(sop)
    print("\n".join(sops))


if __name__ == "__main__":
    if sys.argv[1] == "template":
        template(sys.argv[2], sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else 10)
    elif sys.argv[1] == "batch":
        batch(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]))
    else:
        sys.exit("usage: see the docstring")
