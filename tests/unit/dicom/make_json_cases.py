#!/usr/bin/python3
"""Write DICOM files whose values exercise the DICOM JSON encoder's edge cases (Debian's /usr/bin/python3).

usage: make_json_cases.py OUTDIR
Writes OUTDIR/edge.dcm (explicit VR little endian, UTF-8) with: IS/DS spellings JSON does not
allow as such ("+1.50", ".5", "1.", "007", "-0", "1e3") and values that are no numbers at all,
a three-group person name, multi-valued text with empty values, LT with backslashes, quotes and
control characters, FD NaN and infinity, AT, SV/UV, a small OF, a private block, a nested sequence
and a 2 KiB OB; OUTDIR/multiframe.dcm, a 3-frame 16-bit image (explicit little endian), and OUTDIR/bits1.dcm,
3 one-bit frames of 5x7 pixels (frames not byte aligned).
"""
import sys
import warnings

import numpy as np
import pydicom
from pydicom import config
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.tag import Tag
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

warnings.simplefilter("ignore")
try:
    config.settings.writing_validation_mode = config.IGNORE
    config.settings.reading_validation_mode = config.IGNORE
except AttributeError:
    pass

out = sys.argv[1]


def base(sop_class):
    ds = Dataset()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.is_little_endian = True
    ds.is_implicit_VR = False
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    return ds


def raw(ds, tag, vr, value):
    """Bytes written as they are (pydicom would refuse to convert them)."""
    ds[tag] = RawDataElement(Tag(tag), vr, len(value), value, 0, False, True)


ds = base("1.2.840.10008.5.1.4.1.1.7")
ds.SpecificCharacterSet = "ISO_IR 192"
ds.add_new(0x00181000, "LO", "line")
ds.add_new(0x00200013, "IS", "+12")                       # InstanceNumber
ds.add_new(0x00201041, "DS", "-0")                        # SliceLocation
ds.add_new(0x00280030, "DS", ["+1.50", ".5"])             # PixelSpacing
raw(ds, 0x00281050, "DS", b"1.\\007\\1e3\\abc")       # WindowCenter: last one is no number
raw(ds, 0x00281051, "DS", b"NaN ")                        # WindowWidth: no number
raw(ds, 0x00200012, "IS", b"1A")                          # AcquisitionNumber: no number
ds.add_new(0x00100010, "PN", "Yamada^Tarou=山田^太郎=やまだ^たろう")
ds.add_new(0x00081070, "PN", ["Doe^John", "", "==Phon^Etic"])  # OperatorsName
ds.add_new(0x00080008, "CS", ["ORIGINAL", "", "AXIAL"])  # ImageType with an empty value
ds.add_new(0x00204000, "LT", 'a\\b "quoted"\r\nline2\ttab\x01end')  # ImageComments
ds.add_new(0x00189087, "FD", [float("nan"), 1.5, float("inf")])  # DiffusionBValue (FD)
ds.add_new(0x00209165, "AT", [0x00100010, 0x7FE00010])    # DimensionIndexPointer
ds.add_new(0x00720082, "SV", [-9007199254740993, 5])      # SelectorSVValue
ds.add_new(0x00720083, "UV", [18446744073709551615])      # SelectorUVValue
ds.add_new(0x00640009, "OF", np.array([1.0, -2.5], dtype="<f4").tobytes())  # VectorGridData
ds.add_new(0x00091010, "LO", "SAMDA TEST")                # private creator
ds.add_new(0x00091011, "OB", bytes(range(256)) * 8)       # private, 2 KiB: bulk
ds.add_new(0x00091012, "SH", "private text")
inner = Dataset()
inner.add_new(0x00080100, "SH", "T-D0050")
inner.add_new(0x00080104, "LO", "Tissue")
inner.add_new(0x00091010, "LO", "SAMDA TEST")
inner.add_new(0x00091011, "OB", bytes(2000))
outer = Dataset()
outer.add_new(0x00081150, "UI", "1.2.840.10008.5.1.4.1.1.2")
outer.add_new(0x00081155, "UI", generate_uid())
outer.add_new(0x0040A043, "SQ", Sequence([inner]))       # ConceptNameCodeSequence
ds.add_new(0x00081140, "SQ", Sequence([outer, Dataset()]))  # ReferencedImageSequence, 2nd item empty
ds.add_new(0x00081115, "SQ", Sequence([]))                # ReferencedSeriesSequence: empty
ds.save_as(f"{out}/edge.dcm", write_like_original=False)

mf = base("1.2.840.10008.5.1.4.1.1.7.3")  # Multi-frame Grayscale Word Secondary Capture
mf.Modality = "OT"
mf.Rows, mf.Columns = 5, 7
mf.SamplesPerPixel = 1
mf.PhotometricInterpretation = "MONOCHROME2"
mf.BitsAllocated, mf.BitsStored, mf.HighBit = 16, 12, 11
mf.PixelRepresentation = 0
mf.NumberOfFrames = 3
mf.PixelData = (np.arange(3 * 5 * 7, dtype="<u2") * 37 % 4096).tobytes()
mf.save_as(f"{out}/multiframe.dcm", write_like_original=False)

seg = base("1.2.840.10008.5.1.4.1.1.66.4")  # 1-bit frames of 5x7 = 35 pixels: not byte aligned
seg.Modality = "SEG"
seg.Rows, seg.Columns = 5, 7
seg.SamplesPerPixel = 1
seg.PhotometricInterpretation = "MONOCHROME2"
seg.BitsAllocated, seg.BitsStored, seg.HighBit = 1, 1, 0
seg.PixelRepresentation = 0
seg.NumberOfFrames = 3
rng = np.random.default_rng(7)
bits = rng.integers(0, 2, size=3 * 35).astype(np.uint8)
seg.PixelData = np.packbits(bits, bitorder="little").tobytes()
seg.save_as(f"{out}/bits1.dcm", write_like_original=False)
