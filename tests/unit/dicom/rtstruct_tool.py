#!/usr/bin/python3
"""Independent checks of samda's RT Structure Sets and TID 1500 SRs with pydicom and numpy.

  rtstruct_tool.py rtstruct RTSTRUCT SEG CT_FILE...
      Checks the RT Structure Set against the source series (study, frame of reference, every
      contour's image reference on a source slice, CLOSED_PLANAR, points on the slice's plane),
      fills each ROI's contours back onto the source grid with the even-odd rule at pixel centres,
      and compares it with the SEG segment of the same name. Prints one line per ROI:
        roi NAME contours N voxels_rt A voxels_seg B dice D
  rtstruct_tool.py sr SR SEG CT_FILE...
      Checks the TID 1500 Measurement Report: SOP class, the study, evidence naming the SEG and the
      source series, one measurement group per SEG segment referencing it (ReferencedSegment) and
      the source series; its volume (ml) against the SEG's voxel count times the voxel volume.
      Prints one line per group:
        group NAME segment K volume_ml V seg_ml W mean_hu M std_hu S
Exit status 1 with a message on the first failure. The SEG is read with pydicom alone.
"""
import sys

import numpy as np
import pydicom


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def load_ct(paths):
    slices = []
    for p in paths:
        ds = pydicom.dcmread(p)
        slices.append(ds)
    o = np.array(slices[0].ImageOrientationPatient, float)
    normal = np.cross(o[:3], o[3:])
    slices.sort(key=lambda d: float(np.dot(normal, np.array(d.ImagePositionPatient, float))))
    return slices, o


def seg_masks(seg, slices):
    """{segment label: mask on the CT grid} from a BINARY SEG, frames placed by their source SOP."""
    index = {s.SOPInstanceUID: i for i, s in enumerate(slices)}
    rows, cols = int(slices[0].Rows), int(slices[0].Columns)
    frames = seg.pixel_array.reshape(int(seg.NumberOfFrames), int(seg.Rows), int(seg.Columns))
    labels = {int(s.SegmentNumber): str(s.SegmentLabel) for s in seg.SegmentSequence}
    masks = {name: np.zeros((len(slices), rows, cols), bool) for name in labels.values()}
    for f, fg in enumerate(seg.PerFrameFunctionalGroupsSequence):
        number = int(fg.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        src = fg.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        if src not in index:
            fail("SEG frame %d references an instance outside the series" % (f + 1))
        masks[labels[number]][index[src]] |= frames[f] != 0
    return masks, labels


def fill_even_odd(points_xy, rows, cols, out):
    """Toggle out[r, c] for every pixel centre (c, r) inside the polygon (even-odd rule)."""
    n = len(points_xy)
    toggles = np.zeros((rows, cols + 1), np.int64)
    ys = np.arange(rows, dtype=float)
    for i in range(n):
        (xi, yi), (xj, yj) = points_xy[i], points_xy[i - 1]
        cross = (yi > ys) != (yj > ys)
        if not cross.any():
            continue
        r = ys[cross]
        xint = (xj - xi) * (r - yi) / (yj - yi) + xi
        k = np.clip(np.ceil(xint), 0, cols).astype(np.int64)  # columns 0..k-1 have px < xint
        np.add.at(toggles, (r.astype(np.int64), k), 1)
    # pixel c is toggled by every crossing with k > c
    after = np.cumsum(toggles[:, ::-1], axis=1)[:, ::-1][:, 1:]
    out ^= (after % 2).astype(bool)


def check_rtstruct(rt_path, seg_path, ct_paths):
    rt = pydicom.dcmread(rt_path)
    seg = pydicom.dcmread(seg_path)
    slices, o = load_ct(ct_paths)
    ct0 = slices[0]
    if rt.SOPClassUID != "1.2.840.10008.5.1.4.1.1.481.3" or rt.Modality != "RTSTRUCT":
        fail("not an RT Structure Set: %s %s" % (rt.SOPClassUID, rt.Modality))
    if rt.StudyInstanceUID != ct0.StudyInstanceUID or rt.PatientID != ct0.PatientID:
        fail("RTSTRUCT is not in the source's study/patient")
    ref = rt.ReferencedFrameOfReferenceSequence[0]
    if ref.FrameOfReferenceUID != ct0.FrameOfReferenceUID:
        fail("RTSTRUCT frame of reference differs from the source's")
    ref_series = ref.RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    if ref_series.SeriesInstanceUID != ct0.SeriesInstanceUID:
        fail("RTSTRUCT references another series")
    listed = {i.ReferencedSOPInstanceUID for i in ref_series.ContourImageSequence}
    if listed != {s.SOPInstanceUID for s in slices}:
        fail("ContourImageSequence of the series does not list exactly the source instances")
    index = {s.SOPInstanceUID: i for i, s in enumerate(slices)}
    rows, cols = int(ct0.Rows), int(ct0.Columns)
    ps = [float(v) for v in ct0.PixelSpacing]
    masks, _ = seg_masks(seg, slices)
    names = {int(i.ROINumber): str(i.ROIName) for i in rt.StructureSetROISequence}
    for i in rt.StructureSetROISequence:
        if i.ReferencedFrameOfReferenceUID != ct0.FrameOfReferenceUID:
            fail("ROI %s: another frame of reference" % i.ROIName)
    observed = {int(i.ReferencedROINumber) for i in rt.RTROIObservationsSequence}
    if observed != set(names):
        fail("RT ROI Observations do not cover every ROI")
    for o_item in rt.RTROIObservationsSequence:
        if "RTROIIdentificationCodeSequence" not in o_item or "SegmentedPropertyCategoryCodeSequence" not in o_item:
            fail("ROI %d: no identification/category code" % int(o_item.ReferencedROINumber))
    for rc in rt.ROIContourSequence:
        name = names[int(rc.ReferencedROINumber)]
        got = np.zeros((len(slices), rows, cols), bool)
        n_contours = 0
        for c in getattr(rc, "ContourSequence", []):
            if c.ContourGeometricType != "CLOSED_PLANAR":
                fail("ROI %s: contour type %s" % (name, c.ContourGeometricType))
            uid = c.ContourImageSequence[0].ReferencedSOPInstanceUID
            if uid not in index:
                fail("ROI %s: contour on an instance outside the series" % name)
            s = index[uid]
            pts = np.array(c.ContourData, float).reshape(-1, 3)
            if len(pts) != int(c.NumberOfContourPoints):
                fail("ROI %s: NumberOfContourPoints %s for %d points" % (name, c.NumberOfContourPoints, len(pts)))
            d = pts - np.array(slices[s].ImagePositionPatient, float)
            off_plane = np.abs(d @ np.cross(o[:3], o[3:])).max()
            if off_plane > 0.01:
                fail("ROI %s: contour %.3f mm off its slice's plane" % (name, off_plane))
            xy = np.stack([d @ o[:3] / ps[1], d @ o[3:] / ps[0]], axis=1)
            fill_even_odd(xy, rows, cols, got[s])
            n_contours += 1
        if name not in masks:
            fail("ROI %s has no SEG segment of that name" % name)
        want = masks[name]
        a, b = int(got.sum()), int(want.sum())
        dice = 1.0 if a + b == 0 else 2.0 * int((got & want).sum()) / (a + b)
        print("roi %s contours %d voxels_rt %d voxels_seg %d dice %.6f" % (name.replace(" ", "_"), n_contours, a, b, dice))


def content(item, meaning):
    return [c for c in getattr(item, "ContentSequence", []) if c.ConceptNameCodeSequence[0].CodeMeaning == meaning]


def check_sr(sr_path, seg_path, ct_paths):
    sr = pydicom.dcmread(sr_path)
    seg = pydicom.dcmread(seg_path)
    slices, _ = load_ct(ct_paths)
    ct0 = slices[0]
    if sr.SOPClassUID != "1.2.840.10008.5.1.4.1.1.88.34" or sr.Modality != "SR":
        fail("not a Comprehensive 3D SR: %s %s" % (sr.SOPClassUID, sr.Modality))
    if sr.StudyInstanceUID != ct0.StudyInstanceUID or sr.PatientID != ct0.PatientID:
        fail("SR is not in the source's study/patient")
    tmpl = sr.ContentTemplateSequence[0]
    if str(tmpl.TemplateIdentifier) != "1500" or str(tmpl.MappingResource) != "DCMR":
        fail("root template is not DCMR TID 1500")
    evidence = {}
    for st in sr.CurrentRequestedProcedureEvidenceSequence:
        for se in st.ReferencedSeriesSequence:
            evidence[se.SeriesInstanceUID] = {i.ReferencedSOPInstanceUID for i in se.ReferencedSOPSequence}
    if seg.SOPInstanceUID not in evidence.get(seg.SeriesInstanceUID, set()):
        fail("evidence does not list the SEG")
    if {s.SOPInstanceUID for s in slices} - evidence.get(ct0.SeriesInstanceUID, set()):
        fail("evidence does not list every source instance")
    masks, labels = seg_masks(seg, slices)
    ps = [float(v) for v in ct0.PixelSpacing]
    spacing = float(seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].SpacingBetweenSlices)
    voxel_ml = ps[0] * ps[1] * spacing / 1000.0
    groups = []
    for im in content(sr, "Imaging Measurements"):
        groups += content(im, "Measurement Group")
    if len(groups) != len(labels):
        fail("%d measurement groups for %d SEG segments" % (len(groups), len(labels)))
    seen = set()
    for g in groups:
        tid = content(g, "Tracking Identifier")[0].TextValue
        refs = content(g, "Referenced Segment")
        if not refs:
            fail("group %s: no Referenced Segment" % tid)
        ref = refs[0].ReferencedSOPSequence[0]
        if ref.ReferencedSOPInstanceUID != seg.SOPInstanceUID:
            fail("group %s: Referenced Segment names another SEG" % tid)
        number = int(ref.ReferencedSegmentNumber)
        if number not in labels or number in seen:
            fail("group %s: segment %d unknown or referenced twice" % (tid, number))
        seen.add(number)
        src = content(g, "Source series for segmentation")
        if not src or src[0].UID != ct0.SeriesInstanceUID:
            fail("group %s: Source series for segmentation is not the source series" % tid)
        if not content(g, "Finding"):
            fail("group %s: no Finding" % tid)
        values = {}
        for n in [c for c in g.ContentSequence if c.ValueType == "NUM"]:
            mv = n.MeasuredValueSequence[0]
            unit = mv.MeasurementUnitsCodeSequence[0]
            key = n.ConceptNameCodeSequence[0].CodeMeaning
            mods = [m.ConceptCodeSequence[0].CodeMeaning for m in getattr(n, "ContentSequence", [])
                    if m.ConceptNameCodeSequence[0].CodeMeaning == "Derivation"]
            values[(key, mods[0] if mods else "")] = (float(mv.NumericValue), unit.CodeValue, unit.CodingSchemeDesignator)
        vol = values.get(("Volume", ""))
        if not vol or vol[1:] != ("ml", "UCUM"):
            fail("group %s: no Volume in ml (UCUM): %s" % (tid, values))
        seg_ml = int(masks[labels[number]].sum()) * voxel_ml
        if abs(vol[0] - seg_ml) > 0.01 * max(seg_ml, 1e-9):
            fail("group %s: volume %.4f ml, SEG %.4f ml" % (tid, vol[0], seg_ml))
        mean = values.get(("Attenuation Coefficient", "Mean"))
        std = values.get(("Attenuation Coefficient", "Standard Deviation"))
        if ct0.Modality == "CT" and (not mean or not std or mean[1:] != ("[hnsf'U]", "UCUM")):
            fail("group %s: CT without mean/std in [hnsf'U]: %s" % (tid, values))
        if ct0.Modality == "CT" and masks[labels[number]].any():
            hu = np.stack([s.pixel_array * float(s.RescaleSlope) + float(s.RescaleIntercept) for s in slices])
            inside = hu[masks[labels[number]]]
            if abs(inside.mean() - mean[0]) > 0.01 + 1e-4 * abs(inside.mean()) or abs(inside.std() - std[0]) > 0.01 + 1e-3 * inside.std():
                fail("group %s: mean/std %.3f/%.3f HU, from the CT %.3f/%.3f" % (tid, mean[0], std[0], inside.mean(), inside.std()))
        print("group %s segment %d volume_ml %.4f seg_ml %.4f mean_hu %s std_hu %s" % (
            tid.replace(" ", "_"), number, vol[0], seg_ml, "%.3f" % mean[0] if mean else "-",
            "%.3f" % std[0] if std else "-"))


def main():
    if len(sys.argv) < 5 or sys.argv[1] not in ("rtstruct", "sr"):
        print(__doc__)
        sys.exit(2)
    (check_rtstruct if sys.argv[1] == "rtstruct" else check_sr)(sys.argv[2], sys.argv[3], sys.argv[4:])


if __name__ == "__main__":
    main()
