#!/usr/bin/python3
"""Independent check of a DICOM-SEG against its source files, with pydicom + numpy (never DCMTK).
Used by test_seg.c.

  seg_tool.py check SEG SRC...   verify the SEG against the source instances; exit 1 with the
                                 reason on the first mismatch; on success print
                                   frames N
                                   segment NUMBER LABEL_WITHOUT_SPACES VOXELS
                                 (VOXELS: set pixels over all frames of that segment)
  seg_tool.py strip-refs SEG OUT  copy SEG without any DerivationImageSequence (so a reader must
                                 place frames by position)
"""
import sys

import numpy as np
import pydicom


def fail(msg):
    print('FAIL: ' + msg)
    sys.exit(1)


def check(seg_path, src_paths):
    seg = pydicom.dcmread(seg_path)
    srcs = [pydicom.dcmread(p, stop_before_pixels=True) for p in src_paths]
    by_uid = {s.SOPInstanceUID: s for s in srcs}
    s0 = srcs[0]
    if seg.SOPClassUID != '1.2.840.10008.5.1.4.1.1.66.4':
        fail('SOPClassUID ' + seg.SOPClassUID)
    if seg.Modality != 'SEG' or seg.SegmentationType != 'BINARY':
        fail('Modality/SegmentationType %s/%s' % (seg.Modality, seg.SegmentationType))
    for kw in ('StudyInstanceUID', 'PatientID', 'PatientName', 'FrameOfReferenceUID'):
        if str(seg.get(kw, '')) != str(s0.get(kw, '')):
            fail('%s differs from the source' % kw)
    if seg.SeriesInstanceUID == s0.SeriesInstanceUID:
        fail('SEG shares the source series')
    refs = seg.ReferencedSeriesSequence
    if len(refs) != 1 or refs[0].SeriesInstanceUID != s0.SeriesInstanceUID:
        fail('ReferencedSeriesSequence does not name the source series')
    listed = {r.ReferencedSOPInstanceUID for r in refs[0].ReferencedInstanceSequence}
    if listed != set(by_uid):
        fail('ReferencedInstanceSequence lists %d instances, source has %d' % (len(listed), len(by_uid)))
    nf = int(seg.NumberOfFrames)
    pf = seg.PerFrameFunctionalGroupsSequence
    if len(pf) != nf:
        fail('NumberOfFrames %d but %d per-frame items' % (nf, len(pf)))
    sh = seg.SharedFunctionalGroupsSequence[0]
    iop = [float(x) for x in sh.PlaneOrientationSequence[0].ImageOrientationPatient]
    if max(abs(a - float(b)) for a, b in zip(iop, s0.ImageOrientationPatient)) > 1e-6:
        fail('shared orientation differs from the source')
    seg_numbers = {int(s.SegmentNumber) for s in seg.SegmentSequence}
    arr = seg.pixel_array
    if nf == 1:
        arr = arr[None]
    voxels = {n: 0 for n in seg_numbers}
    for i, g in enumerate(pf):
        n = int(g.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        if n not in seg_numbers:
            fail('frame %d names segment %d' % (i + 1, n))
        der = g.DerivationImageSequence[0]
        if der.DerivationCodeSequence[0].CodeValue != '113076':
            fail('frame %d derivation code' % (i + 1))
        srcimg = der.SourceImageSequence[0]
        if srcimg.PurposeOfReferenceCodeSequence[0].CodeValue != '121322':
            fail('frame %d purpose of reference' % (i + 1))
        src = by_uid.get(srcimg.ReferencedSOPInstanceUID)
        if src is None:
            fail('frame %d references an unknown instance' % (i + 1))
        pos = [float(x) for x in g.PlanePositionSequence[0].ImagePositionPatient]
        if max(abs(a - float(b)) for a, b in zip(pos, src.ImagePositionPatient)) > 1e-4:
            fail('frame %d position %s, source %s' % (i + 1, pos, list(src.ImagePositionPatient)))
        div = [int(x) for x in g.FrameContentSequence[0].DimensionIndexValues]
        if len(div) != 2 or div[0] != n:
            fail('frame %d DimensionIndexValues %s' % (i + 1, div))
        voxels[n] += int(np.count_nonzero(arr[i]))
    print('frames', nf)
    for s in seg.SegmentSequence:
        print('segment', int(s.SegmentNumber), s.SegmentLabel.replace(' ', '_'), voxels[int(s.SegmentNumber)])


def strip_refs(src, dst):
    seg = pydicom.dcmread(src)
    for g in seg.PerFrameFunctionalGroupsSequence:
        if 'DerivationImageSequence' in g:
            del g.DerivationImageSequence
    seg.save_as(dst)


if __name__ == '__main__':
    if sys.argv[1] == 'check':
        check(sys.argv[2], sys.argv[3:])
    elif sys.argv[1] == 'strip-refs':
        strip_refs(sys.argv[2], sys.argv[3])
    else:
        sys.exit('unknown command')
