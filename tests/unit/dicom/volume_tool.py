#!/usr/bin/python3
"""Independent reference for tests/unit/dicom/test_volume.c and test_seg.c, written with pydicom and
numpy (never DCMTK), plus makers of broken series.

  volume_tool.py describe FILE...     one line per file: SOPInstanceUID location sum (of rescaled
                                      pixel values, float64) for every frame; location = ImagePositionPatient
                                      projected on the normal of ImageOrientationPatient
  volume_tool.py retilt SRC DST DELTA copy SRC to DST with the second row cosine moved by DELTA
  volume_tool.py duplicate SRC DST    copy SRC to DST with a new SOPInstanceUID (same position)
  volume_tool.py crop SRC DST         copy SRC to DST as a new instance of the same series, its image
                                      cut to the top half (fewer rows)
  volume_tool.py enhanced DST FILE... one multi-frame instance (functional groups) of the FILEs'
                                      frames, in the given order, with per-frame positions
"""
import sys

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid


def location(ds, ipp=None, iop=None):
    iop = np.array([float(x) for x in (iop if iop is not None else ds.ImageOrientationPatient)])
    ipp = np.array([float(x) for x in (ipp if ipp is not None else ds.ImagePositionPatient)])
    n = np.cross(iop[:3], iop[3:])
    return float(np.dot(ipp, n / np.linalg.norm(n)))


def describe(files):
    for f in files:
        ds = pydicom.dcmread(f)
        arr = ds.pixel_array.astype(np.float64)
        nf = int(ds.get('NumberOfFrames', 1))
        if nf == 1:
            arr = arr[None]
        pf = ds.get('PerFrameFunctionalGroupsSequence')
        sh = ds.get('SharedFunctionalGroupsSequence')
        for k in range(nf):
            slope = float(ds.get('RescaleSlope', 1))
            icpt = float(ds.get('RescaleIntercept', 0))
            if pf is not None:
                g = pf[k]
                ipp = g.PlanePositionSequence[0].ImagePositionPatient
                iop = (g.PlaneOrientationSequence[0] if 'PlaneOrientationSequence' in g
                       else sh[0].PlaneOrientationSequence[0]).ImageOrientationPatient
                if 'PixelValueTransformationSequence' in g:
                    slope = float(g.PixelValueTransformationSequence[0].RescaleSlope)
                    icpt = float(g.PixelValueTransformationSequence[0].RescaleIntercept)
                loc = location(ds, ipp, iop)
            else:
                loc = location(ds) if 'ImagePositionPatient' in ds else 0.0
            print(ds.SOPInstanceUID, k + 1 if (pf is not None or nf > 1) else 0, '%.6f' % loc,
                  '%.3f' % float((arr[k] * slope + icpt).sum()))


def retilt(src, dst, delta):
    ds = pydicom.dcmread(src)
    iop = [float(x) for x in ds.ImageOrientationPatient]
    iop[4] += float(delta)
    ds.ImageOrientationPatient = ['%.6f' % x for x in iop]
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(dst)


def duplicate(src, dst):
    ds = pydicom.dcmread(src)
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.InstanceNumber = 99
    ds.save_as(dst)


def crop(src, dst):
    ds = pydicom.dcmread(src)
    arr = ds.pixel_array[: ds.Rows // 2]
    ds.Rows = arr.shape[0]
    ds.PixelData = arr.tobytes()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.InstanceNumber = 77
    ds.ImagePositionPatient = [str(float(x) + 100.0) for x in ds.ImagePositionPatient]
    ds.save_as(dst)


def enhanced(dst, files):
    srcs = [pydicom.dcmread(f) for f in files]
    first = srcs[0]
    ds = Dataset()
    ds.file_meta = first.file_meta.copy()
    ds.file_meta.MediaStorageSOPClassUID = '1.2.840.10008.5.1.4.1.1.4.1'  # Enhanced MR
    ds.SOPClassUID = '1.2.840.10008.5.1.4.1.1.4.1'
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    for kw in ('PatientName', 'PatientID', 'StudyInstanceUID', 'SeriesInstanceUID', 'FrameOfReferenceUID',
               'Modality', 'Rows', 'Columns', 'BitsAllocated', 'BitsStored', 'HighBit', 'PixelRepresentation',
               'SamplesPerPixel', 'PhotometricInterpretation', 'StudyDate', 'StudyTime'):
        if kw in first:
            setattr(ds, kw, getattr(first, kw))
    ds.InstanceNumber = 1
    ds.NumberOfFrames = len(srcs)
    shared = Dataset()
    po = Dataset(); po.ImageOrientationPatient = first.ImageOrientationPatient
    pm = Dataset(); pm.PixelSpacing = first.PixelSpacing; pm.SliceThickness = first.get('SliceThickness', 1)
    shared.PlaneOrientationSequence = Sequence([po])
    shared.PixelMeasuresSequence = Sequence([pm])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per = []
    for i, s in enumerate(srcs):
        g = Dataset()
        pp = Dataset(); pp.ImagePositionPatient = s.ImagePositionPatient
        g.PlanePositionSequence = Sequence([pp])
        pv = Dataset(); pv.RescaleSlope = '2'; pv.RescaleIntercept = str(-10 * i)
        g.PixelValueTransformationSequence = Sequence([pv])
        per.append(g)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per)
    ds.PixelData = b''.join(s.PixelData for s in srcs)
    ds.is_little_endian = True
    ds.is_implicit_VR = False
    ds.save_as(dst, write_like_original=False)


if __name__ == '__main__':
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == 'describe':
        describe(args)
    elif cmd == 'retilt':
        retilt(args[0], args[1], args[2])
    elif cmd == 'duplicate':
        duplicate(args[0], args[1])
    elif cmd == 'crop':
        crop(args[0], args[1])
    elif cmd == 'enhanced':
        enhanced(args[0], args[1:])
    else:
        sys.exit('unknown command ' + cmd)
