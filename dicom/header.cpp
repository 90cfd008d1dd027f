/* Header extraction: one DICOM instance's identifying, descriptive and geometric attributes,
 * read without loading pixel data, into samda_dicom_header, with the UID checks that must pass
 * before a UID may name anything on disk.
 *
 * It reads; it does not decode pixels, interpret geometry or decide duplicates. */
#include <cerrno>
#include <cstring>
#include <new>
#include <string>
#include <utility>

#include <sys/stat.h>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcistrmb.h>
#include <dcmtk/dcmdata/dcistrmf.h>
#include <dcmtk/dcmdata/dcmetinf.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmdata/dcxfer.h>

#include "dicom.h"
#include "guard.h"
#include "reopen.h"

namespace {

/* Values longer than this are left on disk until asked for: pixel data is never read. */
const Uint32 max_read_length = 4096;
/* Parsing stops at the first top-level tag >= PixelData: the header is all before it, and whatever
 * follows (pixel data, trailing padding, even garbage some writers leave) is never touched. */
const DcmTagKey stop_at_pixel_data(0x7FE0, 0x0010);

template <size_t N>
void copy_str(char (&dst)[N], const OFString &s)
{
    size_t n = s.size() < N - 1 ? s.size() : N - 1;
    std::memcpy(dst, s.c_str(), n);
    dst[n] = '\0';
}

template <size_t N>
bool get_str(DcmItem &ds, const DcmTagKey &tag, char (&dst)[N])
{
    OFString v;
    dst[0] = '\0';
    if (ds.findAndGetOFStringArray(tag, v).bad()) return false;
    copy_str(dst, v);
    return true;
}

unsigned get_us(DcmItem &ds, const DcmTagKey &tag, unsigned dflt)
{
    Uint16 v = 0;
    return ds.findAndGetUint16(tag, v).good() ? v : dflt;
}

bool get_is(DcmItem &ds, const DcmTagKey &tag, int &out)
{
    Sint32 v = 0;
    if (ds.findAndGetSint32(tag, v).bad()) return false;
    out = (int)v;
    return true;
}

bool get_ds(DcmItem &ds, const DcmTagKey &tag, double *out, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        Float64 v = 0;
        if (ds.findAndGetFloat64(tag, v, i).bad()) return false;
        out[i] = v;
    }
    return true;
}

struct uid_field {
    DcmTagKey tag;
    const char *label; /* "(0020,000D) StudyInstanceUID" */
    bool required;
};

/* Reads one UID attribute into dst; returns SAMDA_OK or the failure naming the tag. */
template <size_t N>
samda_status get_uid(DcmItem &ds, const uid_field &f, char (&dst)[N], samda_error *err)
{
    dst[0] = '\0';
    OFString v;
    /* A NUL inside the value ("1.2.3\0.4.5") would make every C string of it "1.2.3": refuse it
     * (trailing NUL padding is removed by DCMTK before this). */
    DcmElement *el = nullptr;
    char *raw = nullptr;
    Uint32 raw_len = 0;
    if (ds.findAndGetElement(f.tag, el).good() && el && el->getString(raw, raw_len).good() && raw &&
        std::memchr(raw, '\0', raw_len))
        return samda_fail(err, SAMDA_EBADUID, "%s contains a NUL character inside its value: not a valid UID",
                          f.label);
    if (ds.findAndGetOFString(f.tag, v).bad() || v.empty()) {
        if (f.required) return samda_fail(err, SAMDA_EBADDICOM, "%s missing", f.label);
        return SAMDA_OK;
    }
    if (!samda_dicom_uid_is_valid(v.c_str()))
        return samda_fail(err, SAMDA_EBADUID,
                          "%s \"%.64s%s\" is not a valid UID (1 to 64 digits and dots, no empty component)",
                          f.label, v.c_str(), v.size() > 64 ? "..." : "");
    copy_str(dst, v);
    return SAMDA_OK;
}

bool is_ascii_or_utf8_charset(const OFString &cs)
{
    /* Only the default repertoire and UTF-8 need no conversion; anything else goes through iconv. */
    return cs.empty() || cs == "ISO_IR 6" || cs == "ISO_IR 192" || cs == "ISO 2022 IR 6";
}

samda_status extract(DcmFileFormat &ff, bool more, samda_dicom_header *out, samda_error *err)
{
    DcmDataset &ds = *ff.getDataset();
    DcmMetaInfo &meta = *ff.getMetaInfo();

    /* Identity first: nothing else matters if these fail. */
    static const uid_field study = {DCM_StudyInstanceUID, "(0020,000D) StudyInstanceUID", true};
    static const uid_field series = {DCM_SeriesInstanceUID, "(0020,000E) SeriesInstanceUID", true};
    static const uid_field sop = {DCM_SOPInstanceUID, "(0008,0018) SOPInstanceUID", true};
    static const uid_field cls = {DCM_SOPClassUID, "(0008,0016) SOPClassUID", true};
    static const uid_field frame = {DCM_FrameOfReferenceUID, "(0020,0052) FrameOfReferenceUID", false};
    static const uid_field ts = {DCM_TransferSyntaxUID, "(0002,0010) TransferSyntaxUID", false};

    /* Everything else is read before the UID checks so that a failed check still leaves a
     * header useful for the caller's log or audit (without the offending UID). */
    OFString charset;
    ds.findAndGetOFStringArray(DCM_SpecificCharacterSet, charset);
    copy_str(out->specific_character_set, charset);
    out->text_is_utf8 = true;
    if (!is_ascii_or_utf8_charset(charset)) {
        /* Pixel data is not loaded, so this converts only the text attributes. */
        out->text_is_utf8 = ds.convertToUTF8().good();
    }

    get_str(ds, DCM_PatientID, out->patient_id);
    get_str(ds, DCM_PatientName, out->patient_name);
    get_str(ds, DCM_PatientBirthDate, out->patient_birth_date);
    get_str(ds, DCM_PatientSex, out->patient_sex);
    get_str(ds, DCM_Modality, out->modality);
    get_str(ds, DCM_StudyDate, out->study_date);
    get_str(ds, DCM_StudyTime, out->study_time);
    get_str(ds, DCM_AccessionNumber, out->accession_number);
    get_str(ds, DCM_StudyDescription, out->study_description);
    get_str(ds, DCM_SeriesDescription, out->series_description);
    get_str(ds, DCM_BodyPartExamined, out->body_part_examined);
    get_str(ds, DCM_Manufacturer, out->manufacturer);
    out->has_series_number = get_is(ds, DCM_SeriesNumber, out->series_number);
    out->has_instance_number = get_is(ds, DCM_InstanceNumber, out->instance_number);

    out->rows = get_us(ds, DCM_Rows, 0);
    out->columns = get_us(ds, DCM_Columns, 0);
    out->bits_allocated = get_us(ds, DCM_BitsAllocated, 0);
    out->bits_stored = get_us(ds, DCM_BitsStored, 0);
    out->pixel_representation = get_us(ds, DCM_PixelRepresentation, 0);
    out->samples_per_pixel = get_us(ds, DCM_SamplesPerPixel, 0);
    get_str(ds, DCM_PhotometricInterpretation, out->photometric_interpretation);
    int frames = 0;
    out->number_of_frames = get_is(ds, DCM_NumberOfFrames, frames) && frames > 0 ? (unsigned)frames : 1;
    /* Parsing stopped before the end: something at or after (7FE0,0010) follows. */
    out->has_pixel_data = more || ds.tagExists(DCM_PixelData);

    out->has_pixel_spacing = get_ds(ds, DCM_PixelSpacing, out->pixel_spacing, 2);
    out->has_image_position = get_ds(ds, DCM_ImagePositionPatient, out->image_position, 3);
    out->has_image_orientation = get_ds(ds, DCM_ImageOrientationPatient, out->image_orientation, 6);
    out->has_slice_thickness = get_ds(ds, DCM_SliceThickness, &out->slice_thickness, 1);
    bool has_slope = get_ds(ds, DCM_RescaleSlope, &out->rescale_slope, 1);
    bool has_intercept = get_ds(ds, DCM_RescaleIntercept, &out->rescale_intercept, 1);
    if (!has_slope) out->rescale_slope = 1.0;
    if (!has_intercept) out->rescale_intercept = 0.0;
    out->has_rescale = has_slope || has_intercept;
    out->has_window = get_ds(ds, DCM_WindowCenter, &out->window_center, 1) &&
                      get_ds(ds, DCM_WindowWidth, &out->window_width, 1);
    if (!out->has_window) out->window_center = out->window_width = 0.0;

    samda_status st;
    if ((st = get_uid(ds, study, out->study_instance_uid, err)) != SAMDA_OK) return st;
    if ((st = get_uid(ds, series, out->series_instance_uid, err)) != SAMDA_OK) return st;
    if ((st = get_uid(ds, sop, out->sop_instance_uid, err)) != SAMDA_OK) return st;
    if ((st = get_uid(ds, cls, out->sop_class_uid, err)) != SAMDA_OK) return st;
    if ((st = get_uid(ds, frame, out->frame_of_reference_uid, err)) != SAMDA_OK) return st;
    if ((st = get_uid(meta, ts, out->transfer_syntax_uid, err)) != SAMDA_OK) return st;
    if (!out->transfer_syntax_uid[0]) {
        /* No file meta information: report the encoding DCMTK detected. */
        DcmXfer x(ds.getOriginalXfer());
        if (x.getXfer() != EXS_Unknown) copy_str(out->transfer_syntax_uid, OFString(x.getXferID()));
    }
    return SAMDA_OK;
}

/* The state after failure promised in dicom.h: zeroed unless a UID check failed. */
samda_status finish(samda_status st, samda_dicom_header *out, bool parsed)
{
    if (st != SAMDA_OK && !parsed) std::memset(out, 0, sizeof *out);
    return st;
}

samda_status read_parsed(DcmFileFormat &ff, const OFCondition &cond, bool more, const char *what,
                         samda_dicom_header *out, samda_error *err)
{
    if (cond.bad())
        return finish(samda_fail(err, SAMDA_EBADDICOM, "reading the DICOM header of %s: %s", what,
                                 cond.text()), out, false);
    samda_status st = extract(ff, more, out, err);
    if (st != SAMDA_OK) {
        samda_error_prefix(err, "reading the DICOM header of %s: ", what);
        return finish(st, out, st == SAMDA_EBADUID || st == SAMDA_EBADDICOM);
    }
    return SAMDA_OK;
}

} // namespace

extern "C" samda_status samda_dicom_read_header(const char *path, samda_dicom_header *out, samda_error *err)
{
    if (!path || !out) return samda_fail(err, SAMDA_EINVAL, "reading a DICOM header: no %s", path ? "output" : "path");
    std::memset(out, 0, sizeof *out);
    return dicom_guard(err, "reading a DICOM header", SAMDA_EBADDICOM, [&]() -> samda_status {
        struct stat sb;
        if (stat(path, &sb) != 0) {
            int e = errno;
            return samda_fail(err, e == ENOENT ? SAMDA_ENOENT : SAMDA_EIO, "reading the DICOM header of %s: %s",
                              path, std::strerror(e));
        }
        if (!S_ISREG(sb.st_mode))
            return samda_fail(err, SAMDA_EIO, "reading the DICOM header of %s: not a regular file", path);
        /* What DcmFileFormat::loadFileUntilTag does, keeping the stream to see whether data follows. */
        dicom_reopen::Source src;
        src.path = path;
        dicom_reopen::Reopenable<DcmInputFileStream> in(src, OFFilename(path));
        if (in.status().bad())
            return samda_fail(err, SAMDA_EIO, "reading the DICOM header of %s: %s", path, in.status().text());
        DcmFileFormat ff;
        OFCondition cond = dicom_reopen::read_guarded(ff, in, max_read_length, stop_at_pixel_data);
        return read_parsed(ff, cond, !in.eos(), path, out, err);
    });
}

extern "C" samda_status samda_dicom_read_header_mem(const void *data, size_t size, samda_dicom_header *out,
                                                    samda_error *err)
{
    if (!data || !out) return samda_fail(err, SAMDA_EINVAL, "reading a DICOM header: no %s", data ? "output" : "data");
    std::memset(out, 0, sizeof *out);
    return dicom_guard(err, "reading a DICOM header", SAMDA_EBADDICOM, [&]() -> samda_status {
        if (size == 0 || size > (size_t)UINT32_MAX)
            return samda_fail(err, SAMDA_EBADDICOM, "reading the DICOM header of a %zu-byte buffer: size "
                              "must be between 1 and 4 GiB", size);
        dicom_reopen::Source src;
        src.data = data;
        src.size = (offile_off_t)size;
        dicom_reopen::Reopenable<DcmInputBufferStream> in(src);
        in.setBuffer(data, (offile_off_t)size);
        in.setEos();
        DcmFileFormat ff;
        OFCondition cond = dicom_reopen::read_guarded(ff, in, max_read_length, stop_at_pixel_data);
        char what[64];
        std::snprintf(what, sizeof what, "a %zu-byte buffer", size);
        return read_parsed(ff, cond, !in.eos(), what, out, err);
    });
}
