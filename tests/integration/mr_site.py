#!/usr/bin/env python3
"""An MR site: a phantom CT series rewritten in place as an MR series (MR Image Storage, Modality MR,
no rescale, unsigned 12-bit intensities on a scale unrelated to HU, UIDs kept), and optionally its
ground truth as a DICOM-SEG with two labels that share one coded type and differ by their type
modifier: the phantom's kidney mask split into the patient's left and right kidney (SCT 64033007
"Kidney" with SegmentedPropertyTypeModifierCodeSequence SCT 7771000 "Left" / SCT 24028007 "Right").

usage: mr_site.py SERIES_DIR [PHANTOM_GT_SEG OUT_SEG]"""
import copy
import os
import sys

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.pixel_data_handlers.numpy_handler import pack_bits
from pydicom.uid import generate_uid

CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


def code(value, scheme, meaning):
    c = Dataset()
    c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning = value, scheme, meaning
    return c


def to_mr(path):
    """Rewrite one CT file as MR: intensities a monotonic map of HU onto 0..4095 (air dark)."""
    ds = pydicom.dcmread(path)
    hu = ds.pixel_array.astype(np.float64) * float(getattr(ds, "RescaleSlope", 1)) + float(
        getattr(ds, "RescaleIntercept", 0))
    mr = np.clip((hu + 600.0) * 1.7, 0, 4095).astype(np.uint16)
    for kw in ("RescaleSlope", "RescaleIntercept", "RescaleType", "WindowCenter", "WindowWidth",
               "KVP", "ConvolutionKernel", "WindowCenterWidthExplanation"):
        if kw in ds:
            delattr(ds, kw)
    ds.SOPClassUID = MR_STORAGE
    ds.file_meta.MediaStorageSOPClassUID = MR_STORAGE
    ds.Modality = "MR"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
    ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = "SE", "NONE", ""
    ds.MRAcquisitionType = "2D"
    ds.RepetitionTime, ds.EchoTime, ds.EchoTrainLength = 4000, 90, 16
    ds.MagneticFieldStrength = 1.5
    ds.SeriesDescription = "samda synthetic MR (T2-like)"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = mr.tobytes()
    ds.save_as(path)
    return ds


def retag_sop_class(item):
    """Every reference to a CT image in the SEG names MR Image Storage instead."""
    for el in item.iterall():
        if el.keyword == "ReferencedSOPClassUID" and el.value == CT_STORAGE:
            el.value = MR_STORAGE


def kidney_seg(files, gt, out_path):
    kid = [s for s in gt.SegmentSequence if s.SegmentLabel.lower() == "kidney"][0]
    frames = gt.pixel_array.reshape(int(gt.NumberOfFrames), gt.Rows, gt.Columns)
    picks = [(i, f) for i, f in enumerate(gt.PerFrameFunctionalGroupsSequence)
             if f.SegmentIdentificationSequence[0].ReferencedSegmentNumber == kid.SegmentNumber]
    cols = np.concatenate([np.nonzero(frames[i])[1] for i, _ in picks])
    mid = float(cols.mean())  # between the two kidneys; columns run towards the patient's left
    xx = np.arange(gt.Columns)[None, :]
    sides = [(1, "Left kidney", "7771000", "Left", xx > mid), (2, "Right kidney", "24028007", "Right", xx <= mid)]
    seg = copy.deepcopy(gt)
    seg.SOPInstanceUID = generate_uid()
    seg.file_meta.MediaStorageSOPInstanceUID = seg.SOPInstanceUID
    seg.SeriesInstanceUID = generate_uid()
    seg.SeriesNumber, seg.SeriesDescription, seg.ContentLabel = 902, "Kidneys ground truth (MR)", "KIDNEYS_GT"
    segments, items, out = [], [], []
    for number, label, mcode, meaning, side in sides:
        s = copy.deepcopy(kid)
        s.SegmentNumber, s.SegmentLabel = number, label
        s.SegmentedPropertyCategoryCodeSequence = [code("123037004", "SCT", "Anatomical Structure")]
        t = code("64033007", "SCT", "Kidney")
        t.SegmentedPropertyTypeModifierCodeSequence = [code(mcode, "SCT", meaning)]
        s.SegmentedPropertyTypeCodeSequence = [t]
        if "AnatomicRegionSequence" in s:
            del s.AnatomicRegionSequence
        s.RecommendedDisplayCIELabValue = [[34000, 53000, 50000], [48000, 20000, 40000]][number - 1]
        segments.append(s)
        for i, f in picks:
            m = frames[i].astype(bool) & side
            if m.sum() == 0:
                continue
            item = copy.deepcopy(f)
            item.SegmentIdentificationSequence[0].ReferencedSegmentNumber = number
            fc = item.get("FrameContentSequence")
            if fc is not None and "DimensionIndexValues" in fc[0]:
                v = fc[0].DimensionIndexValues
                div = list(v) if isinstance(v, (list, pydicom.multival.MultiValue)) else [v]
                div[0] = number
                fc[0].DimensionIndexValues = div
            items.append(item)
            out.append(m)
    seg.SegmentSequence = segments
    seg.PerFrameFunctionalGroupsSequence = items
    seg.NumberOfFrames = len(out)
    retag_sop_class(seg)
    packed = pack_bits(np.stack(out).astype(np.uint8).ravel())
    seg.PixelData = packed + (b"\0" if len(packed) % 2 else b"")
    seg.save_as(out_path)
    left = sum(int(m.sum()) for m, it in zip(out, items) if it.SegmentIdentificationSequence[0].ReferencedSegmentNumber == 1)
    print("kidneys: %d frames, left %d voxels, right %d voxels" % (len(out), left, sum(int(m.sum()) for m in out) - left))


def main(argv):
    if len(argv) not in (2, 4):
        sys.exit(__doc__)
    files = {}
    for name in sorted(os.listdir(argv[1])):
        ds = to_mr(os.path.join(argv[1], name))
        files[ds.SOPInstanceUID] = ds
    if len(argv) == 4:
        kidney_seg(files, pydicom.dcmread(argv[2]), argv[3])


if __name__ == "__main__":
    main(sys.argv)
