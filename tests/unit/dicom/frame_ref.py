#!/usr/bin/python3
"""Write the expected native bytes of one frame, from pydicom's pixel_array (Debian's /usr/bin/python3).

usage: frame_ref.py DICOM_FILE FRAME(1-based) OUT_FILE
Little-endian, samples interleaved; 1-bit data packed least significant bit first from the frame's
first pixel (np.packbits(..., bitorder="little")). Prints "rows columns samples bits frames".
"""
import sys
import warnings

import numpy as np
import pydicom

warnings.simplefilter("ignore")
path, frame, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ds = pydicom.dcmread(path)
arr = ds.pixel_array
frames = int(ds.get("NumberOfFrames", 1) or 1)
if frames > 1:
    arr = arr[frame - 1]
bits = ds.BitsAllocated
if bits == 1:
    data = np.packbits(arr.astype(np.uint8).ravel(), bitorder="little").tobytes()
else:
    data = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes()
with open(out, "wb") as f:
    f.write(data)
print(ds.Rows, ds.Columns, ds.get("SamplesPerPixel", 1), bits, frames)
