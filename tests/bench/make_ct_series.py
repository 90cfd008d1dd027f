#!/usr/bin/python3
"""Write N synthetic CT-like instances (512x512, 16-bit signed, Explicit VR Little Endian) for the
benchmarks, spread over G sub-folders g0..g{G-1} so G senders can share them.

usage: make_ct_series.py OUTDIR N [G]   (run with Debian's /usr/bin/python3: needs pydicom, numpy)
"""
import os
import sys

import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

out, n = sys.argv[1], int(sys.argv[2])
groups = int(sys.argv[3]) if len(sys.argv) > 3 else 8
study, series, frame = generate_uid(), generate_uid(), generate_uid()
rng = np.random.default_rng(1)
yy, xx = np.mgrid[0:512, 0:512]
body = ((yy - 256) ** 2 + (xx - 256) ** 2) < 220 ** 2
for g in range(groups):
    os.makedirs(f"{out}/g{g}", exist_ok=True)
for i in range(n):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
    ds.PatientID, ds.PatientName, ds.Modality = "BENCH", "Bench^Phantom", "CT"
    ds.SeriesNumber, ds.InstanceNumber = 1, i + 1
    ds.ImagePositionPatient = [-250.0, -250.0, -i * 1.25]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing, ds.SliceThickness = [0.977, 0.977], 1.25
    ds.Rows = ds.Columns = 512
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
    img = np.where(body, 1024 + 40, 0) + rng.integers(0, 30, (512, 512))
    ds.PixelData = img.astype("<i2").tobytes()
    ds.is_little_endian, ds.is_implicit_VR = True, False
    ds.save_as(f"{out}/g{i % groups}/ct_{i:05d}.dcm", write_like_original=False)
