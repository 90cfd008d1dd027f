#!/usr/bin/python3
"""Seeds for fuzz_scp (tests/fuzz/fuzz_scp.c explains the chunk format): a C-ECHO-RQ, and a
C-STORE-RQ with a small CT data set. Usage: make_scp_seeds.py OUT_DIR"""
import io
import os
import struct
import sys

import pydicom
from pydicom.dataset import Dataset
from pydicom.filewriter import write_dataset


def element(group, elem, value):
    if isinstance(value, int):
        value = struct.pack("<H", value)
    elif isinstance(value, str):
        value = value.encode()
        if len(value) % 2:
            value += b"\0"
    return struct.pack("<HHI", group, elem, len(value)) + value


def command(*elements):
    body = b"".join(element(0, e, v) for e, v in elements)
    return struct.pack("<HHII", 0, 0, 4, len(body)) + body  # (0000,0000) CommandGroupLength


def chunk(ctrl, payload):
    return struct.pack(">BH", ctrl, len(payload)) + payload


CT = "1.2.840.10008.5.1.4.1.1.2"
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
echo = command((0x0002, "1.2.840.10008.1.1"), (0x0100, 0x0030), (0x0110, 1), (0x0800, 0x0101))
with open(os.path.join(out, "c-echo"), "wb") as f:
    f.write(chunk(0 | (3 << 1), echo))

ds = Dataset()
ds.SOPClassUID = CT
ds.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.1"
ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.2"
ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.3"
ds.Modality = "CT"
ds.PatientID = "FUZZ"
ds.Rows, ds.Columns = 4, 4
ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation, ds.SamplesPerPixel = 16, 12, 11, 0, 1
ds.PhotometricInterpretation = "MONOCHROME2"
ds.PixelData = bytes(32)
buf = io.BytesIO()
fp = pydicom.filebase.DicomFileLike(buf)
fp.is_little_endian, fp.is_implicit_VR = True, True
write_dataset(fp, ds)
store = command((0x0002, CT), (0x0100, 0x0001), (0x0110, 1), (0x0700, 0), (0x0800, 0x0000),
                (0x1000, ds.SOPInstanceUID))
with open(os.path.join(out, "c-store"), "wb") as f:
    f.write(chunk(1 | (3 << 1), store) + chunk(1 | (2 << 1), buf.getvalue()))
# the same data set in two fragments
data = buf.getvalue()
with open(os.path.join(out, "c-store-fragments"), "wb") as f:
    f.write(chunk(1 | (3 << 1), store) + chunk(1 | (0 << 1), data[:40]) + chunk(1 | (2 << 1), data[40:]))
