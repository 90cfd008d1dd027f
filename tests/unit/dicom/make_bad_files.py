#!/usr/bin/python3
"""Write broken variants of one DICOM file for the header tests (run with Debian's /usr/bin/python3).

usage: make_bad_files.py SOURCE.dcm OUTDIR
Each output differs from SOURCE in one way; its name says how.
"""
import sys
import warnings

import pydicom
from pydicom import config

warnings.simplefilter("ignore")
try:  # pydicom >= 2.3: do not refuse to write the invalid values we want
    config.settings.writing_validation_mode = config.IGNORE
    config.settings.reading_validation_mode = config.IGNORE
except AttributeError:
    pass

src, out = sys.argv[1], sys.argv[2]


def variant(name, change):
    ds = pydicom.dcmread(src)
    change(ds)
    ds.save_as(f"{out}/{name}.dcm", write_like_original=True)


def delete(keyword):
    return lambda ds: delattr(ds, keyword)


def set_value(keyword, value):
    return lambda ds: setattr(ds, keyword, value)


variant("missing_study", delete("StudyInstanceUID"))
variant("missing_series", delete("SeriesInstanceUID"))
variant("missing_sop_instance", delete("SOPInstanceUID"))
variant("missing_sop_class", delete("SOPClassUID"))
variant("bad_series_chars", set_value("SeriesInstanceUID", "1.2.abc"))
variant("bad_study_empty_component", set_value("StudyInstanceUID", "1.2..3"))
variant("bad_sop_too_long", set_value("SOPInstanceUID", "1.2." + "3" * 62))  # 66 characters
variant("bad_frame_of_reference", set_value("FrameOfReferenceUID", "1.2.3."))
variant("ok_leading_zero", set_value("SeriesInstanceUID", "1.2.840.0123.04"))


def latin1(ds):
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = "M\u00fcller^J\u00fcrgen"
    ds.StudyDescription = "T\u00eate"


variant("latin1_name", latin1)


def no_optional(ds):
    for kw in ("RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth", "PixelSpacing",
               "ImagePositionPatient", "ImageOrientationPatient", "SliceThickness", "NumberOfFrames",
               "FrameOfReferenceUID"):
        if kw in ds:
            delattr(ds, kw)


variant("no_optional", no_optional)
