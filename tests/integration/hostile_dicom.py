#!/usr/bin/python3
"""Hostile and broken DICOM instances for the bad-input catalogue (docs/security.md), written with
pydicom so that each case is one attribute away from a valid CT slice.

Usage: hostile_dicom.py OUT_DIR [CASE...]   (no CASE: all of them; `list` prints the names)

Each case writes OUT_DIR/CASE/*.dcm. Cases named "ok_*" are valid series samda must store and
segment; every other case is one samda must refuse, at intake or when it segments, naming the
attribute. The UIDs are real-length (64 characters where the case allows) so that messages that
quote them are tested at their real size."""
import hashlib
import os
import sys

import warnings

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

warnings.filterwarnings("ignore")  # pydicom warns about every value these cases break on purpose

CT = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"
MR = "1.2.840.10008.5.1.4.1.1.4"
ROOT = "1.2.826.0.1.3680043.10.1077."  # samda's test root; UIDs padded to 64 characters below


def uid(case, kind, n=0):
    """A deterministic 64-character UID for (case, kind, n)."""
    h = int(hashlib.sha256(("%s/%s/%d" % (case, kind, n)).encode()).hexdigest(), 16) % (10 ** 40)
    s = ROOT + "%d.%d." % (sum(map(ord, case)) % 997 + 1, {"study": 1, "series": 2, "sop": 3, "for": 4}[kind])
    s += "9" + str(h)
    return s[:64]


def ct_slice(case, k, n_slices=4, size=64, patient="HOSTILE^ONE", pid="HOSTILE-1", sop_class=CT,
             modality="CT", study=None, series=None, sop=None, bits=16):
    """Slice k of a small synthetic CT (a bright disc, like an organ, in air)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop or uid(case, "sop", k)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.is_little_endian = True
    ds.is_implicit_VR = False
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study or uid(case, "study")
    ds.SeriesInstanceUID = series or uid(case, "series")
    ds.FrameOfReferenceUID = uid(case, "for")
    ds.PatientName = patient
    ds.PatientID = pid
    ds.StudyDate = "20260101"
    ds.Modality = modality
    ds.SeriesNumber = 1
    ds.InstanceNumber = k + 1
    ds.ImagePositionPatient = [-size / 2, -size / 2, 3.0 * k]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [1.0, 1.0]
    ds.SliceThickness = 3.0
    ds.Rows = ds.Columns = size
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    yy, xx = np.mgrid[0:size, 0:size]
    disc = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2) < (size / 4) ** 2
    hu = np.where(disc, 60, -1000) + 1024
    dtype = {8: np.uint8, 16: np.uint16, 32: np.uint32}[bits]
    if bits == 8:
        hu = np.clip(hu // 8, 0, 255)
    ds.PixelData = hu.astype(dtype).tobytes()
    return ds


def series(case, n=4, **kw):
    return [ct_slice(case, k, n, **kw) for k in range(n)]


def save(out, case, datasets):
    d = os.path.join(out, case)
    os.makedirs(d, exist_ok=True)
    paths = []
    for i, ds in enumerate(datasets):
        p = os.path.join(d, "IMG%04d.dcm" % (i + 1))
        ds.save_as(p, write_like_original=False)
        paths.append(p)
    return paths


def case_frames_bomb(out, case):
    """NumberOfFrames 2147483647 with one frame of pixel data (killed samdad when segmented)."""
    ds = ct_slice(case, 0)
    ds.NumberOfFrames = 2147483647
    save(out, case, [ds])


def case_enhanced_no_groups(out, case):
    """Enhanced CT declaring 100000 frames, one frame of pixels, no functional groups."""
    ds = ct_slice(case, 0, sop_class=ENHANCED_CT)
    ds.NumberOfFrames = 100000
    save(out, case, [ds])


def case_truncated(out, case):
    """A Part 10 file missing its last 5,000 bytes (inside Pixel Data)."""
    p = save(out, case, [ct_slice(case, 0, size=128)])[0]
    data = open(p, "rb").read()
    open(p, "wb").write(data[:-5000])


def case_zero_spacing(out, case):
    ds = ct_slice(case, 0)
    ds.PixelSpacing = ["0", "0"]
    save(out, case, [ds])


def case_negative_spacing(out, case):
    ds = ct_slice(case, 0)
    ds.PixelSpacing = ["-1", "-1"]
    save(out, case, [ds])


def case_huge_position(out, case):
    ds = ct_slice(case, 0)
    ds.ImagePositionPatient = ["1e300", 0, 0]
    save(out, case, [ds])


def case_slope_zero(out, case):
    ds = ct_slice(case, 0)
    ds.RescaleSlope = "0"
    save(out, case, [ds])


def case_nul_uid(out, case):
    """A SOP Instance UID with a NUL inside ("1.2.3\\0.4.5"): indexed as "1.2.3" before."""
    ds = ct_slice(case, 0)
    bad = uid(case, "sop", 0)[:20] + "\0" + uid(case, "sop", 0)[21:40]
    ds.SOPInstanceUID = bad
    ds.file_meta.MediaStorageSOPInstanceUID = bad
    save(out, case, [ds])


def case_no_spacing(out, case):
    """A whole series without PixelSpacing: stored, but never segmented with invented 1 mm pixels."""
    s = series(case)
    for ds in s:
        del ds.PixelSpacing
    save(out, case, s)


def case_two_patients(out, case):
    """Series of patient HOSTILE-1; its last instance names patient OTHER-2 (same study and series)."""
    s = series(case)
    s[-1].PatientID = "OTHER-2"
    s[-1].PatientName = "OTHER^TWO"
    save(out, case, s)


def case_ct_mr_mix(out, case):
    """A CT series whose last instance is of the MR Image Storage class (Modality MR)."""
    s = series(case)
    last = ct_slice(case, len(s) - 1, sop_class=MR, modality="MR")
    s[-1] = last
    save(out, case, s)


def case_duplicate_position(out, case):
    """Slices 2 and 3 at the same position, 64-character UIDs: the job's error must name both whole."""
    s = series(case)
    s[2].ImagePositionPatient = s[1].ImagePositionPatient
    save(out, case, s)


def case_ok_leading_zero(out, case):
    """A valid series whose UIDs have a component with a leading zero (real archives hold them)."""
    study = "1.2.826.0.1.3680043.10.1077.042.1." + "7" * 20
    ser = "1.2.826.0.1.3680043.10.1077.042.2." + "7" * 20
    s = [ct_slice(case, k, study=study, series=ser, sop="1.2.826.0.1.3680043.10.1077.042.3.0%d" % (k + 7))
         for k in range(4)]
    for ds in s:
        ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.10.1077.042.4.01"
    save(out, case, s)


def case_ok_bits32(out, case):
    """A valid series stored with BitsAllocated 32."""
    save(out, case, series(case, bits=32))


def case_ok_long_uids(out, case):
    """A valid series with 64-character UIDs."""
    save(out, case, series(case))


CASES = {name[5:]: fn for name, fn in sorted(globals().items()) if name.startswith("case_")}


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    if sys.argv[1] == "list":
        print("\n".join(CASES))
        return
    out = sys.argv[1]
    for name in sys.argv[2:] or CASES:
        CASES[name](out, name)


if __name__ == "__main__":
    main()
