#!/usr/bin/env python3
"""A site with a structure the demo adapter does not know: a hypodense lesion drawn into the liver of
a phantom CT series (the CT files are rewritten in place, UIDs kept), and its ground truth as a
DICOM-SEG with its own codes (SCT 52988006 "Lesion", category SCT 49755003 "Morphologically Abnormal
Structure", anatomic region SCT 10200004 "Liver" with modifier SCT 24028007 "Right", the aorta's CIELab
colour),
made from the phantom's exact liver mask in its ground-truth SEG.

usage: lesion_site.py SERIES_DIR PHANTOM_GT_SEG OUT_SEG"""
import copy
import os
import sys

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.pixel_data_handlers.numpy_handler import pack_bits
from pydicom.uid import generate_uid



def code(value, scheme, meaning):
    c = Dataset()
    c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning = value, scheme, meaning
    return c


def main(series_dir, gt_path, out_path):
    gt = pydicom.dcmread(gt_path)
    liver = [s.SegmentNumber for s in gt.SegmentSequence if s.SegmentLabel.lower() == "liver"][0]
    frames = gt.pixel_array.reshape(int(gt.NumberOfFrames), gt.Rows, gt.Columns)
    files = {}
    for name in sorted(os.listdir(series_dir)):
        ds = pydicom.dcmread(os.path.join(series_dir, name))
        files[ds.SOPInstanceUID] = (os.path.join(series_dir, name), ds)
    # the liver frames, by source slice position
    items = []
    for i, f in enumerate(gt.PerFrameFunctionalGroupsSequence):
        if f.SegmentIdentificationSequence[0].ReferencedSegmentNumber != liver:
            continue
        uid = f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        z = float(files[uid][1].ImagePositionPatient[2])
        items.append((z, i, uid))
    items.sort()
    zs = np.array([z for z, _, _ in items])
    mid = items[len(items) // 2]
    m = frames[mid[1]].astype(bool)
    rr, cc = np.nonzero(m)
    r0, c0 = rr.mean(), cc.mean()
    ps = [float(v) for v in files[mid[2]][1].PixelSpacing]
    radius_mm = 0.5 * np.sqrt(m.sum() / np.pi) * ps[0]
    dz = np.median(np.diff(zs)) if len(zs) > 1 else 1.0
    rz_mm = max(radius_mm, 2.5 * abs(dz))
    yy, xx = np.mgrid[0:gt.Rows, 0:gt.Columns]
    out_items, out_frames = [], []
    for z, i, uid in items:
        t = 1.0 - ((z - mid[0]) / rz_mm) ** 2
        if t <= 0:
            continue
        r = radius_mm * np.sqrt(t)
        lesion = (((yy - r0) * ps[0]) ** 2 + ((xx - c0) * ps[1]) ** 2 <= r * r) & frames[i].astype(bool)
        if lesion.sum() < 4:
            continue
        path, ds = files[uid]
        px = ds.pixel_array.astype(np.int32)
        slope = float(getattr(ds, "RescaleSlope", 1))
        px[lesion] -= int(round(90 / slope))  # 90 HU darker than the liver around it
        info = np.iinfo(ds.pixel_array.dtype)
        ds.PixelData = np.clip(px, info.min, info.max).astype(ds.pixel_array.dtype).tobytes()
        ds.save_as(path)
        item = copy.deepcopy(gt.PerFrameFunctionalGroupsSequence[i])
        item.SegmentIdentificationSequence[0].ReferencedSegmentNumber = 1
        fc = item.get("FrameContentSequence")
        if fc is not None and "DimensionIndexValues" in fc[0]:
            v = fc[0].DimensionIndexValues
            div = list(v) if isinstance(v, (list, pydicom.multival.MultiValue)) else [v]
            div[0] = 1
            fc[0].DimensionIndexValues = div
        out_items.append(item)
        out_frames.append(lesion)
    if len(out_frames) < 3:
        sys.exit("lesion_site.py: the lesion covers %d slices (want 3 or more)" % len(out_frames))
    seg = copy.deepcopy(gt)
    seg.SOPInstanceUID = generate_uid()
    seg.file_meta.MediaStorageSOPInstanceUID = seg.SOPInstanceUID
    seg.SeriesInstanceUID = generate_uid()
    seg.SeriesNumber = 901
    seg.SeriesDescription = "Lesion ground truth"
    seg.ContentLabel = "LESION_GT"
    s = copy.deepcopy(gt.SegmentSequence[0])
    s.SegmentNumber = 1
    s.SegmentLabel = "Lesion"
    s.SegmentedPropertyCategoryCodeSequence = [code("49755003", "SCT", "Morphologically Abnormal Structure")]
    s.SegmentedPropertyTypeCodeSequence = [code("52988006", "SCT", "Lesion")]
    region = code("10200004", "SCT", "Liver")
    region.AnatomicRegionModifierSequence = [code("24028007", "SCT", "Right")]
    s.AnatomicRegionSequence = [region]
    s.RecommendedDisplayCIELabValue = [x for x in gt.SegmentSequence if x.SegmentLabel.lower() == "aorta"][0].RecommendedDisplayCIELabValue
    seg.SegmentSequence = [s]
    seg.PerFrameFunctionalGroupsSequence = out_items
    seg.NumberOfFrames = len(out_frames)
    packed = pack_bits(np.stack(out_frames).astype(np.uint8).ravel())
    seg.PixelData = packed + (b"\0" if len(packed) % 2 else b"")
    seg.save_as(out_path)
    print("lesion: %d slices, %d voxels" % (len(out_frames), int(sum(f.sum() for f in out_frames))))


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
