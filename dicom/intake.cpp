/* The intake check: whether a received instance can be read back whole before samda acknowledges it.
 *
 * The SCP writes a data set exactly as it arrived and the header read stops before the pixel data,
 * so neither notices a data set cut short in its pixel data, nor a NumberOfFrames that the pixel
 * data cannot hold. This file parses the whole data set (values longer than a few KiB are checked
 * against the bytes present, never loaded) and compares the pixel data with the image attributes
 * and the geometry with what a patient can have. It reads; it never changes or stores anything. */
#include <cerrno>
#include <cmath>
#include <cstring>
#include <string>

#include <sys/stat.h>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcistrmf.h>
#include <dcmtk/dcmdata/dcpixel.h>
#include <dcmtk/dcmdata/dcpixseq.h>
#include <dcmtk/dcmdata/dcpxitem.h>
#include <dcmtk/dcmdata/dcsequen.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmdata/dcxfer.h>

#include "dicom.h"
#include "guard.h"
#include "intake_internal.h"
#include "reopen.h"

namespace {

/* Values longer than this are checked against the file, not read. */
const Uint32 lazy_read_length = 4096;

/* Storage classes without an image (no pixel data expected) that samda accepts, or writes as a
 * result (Comprehensive 3D SR: its TID 1500 Measurement Reports). */
const char *const non_image_classes[] = {
    UID_RTStructureSetStorage,           UID_BasicTextSRStorage,
    UID_EnhancedSRStorage,               UID_ComprehensiveSRStorage,
    UID_XRayRadiationDoseSRStorage,      UID_KeyObjectSelectionDocumentStorage,
    UID_Comprehensive3DSRStorage,
};

bool is_image_class(const char *uid)
{
    for (const char *c : non_image_classes)
        if (std::strcmp(c, uid) == 0) return false;
    return true;
}

/* The numbers of a DS/FD attribute. Returns false when absent; *ok false when present but not
 * n finite numbers (the raw text goes to *text for the message). */
bool get_numbers(DcmItem &it, const DcmTagKey &tag, double *out, unsigned n, bool *ok, std::string *text)
{
    *ok = true;
    if (!it.tagExistsWithValue(tag)) return false;
    OFString s;
    it.findAndGetOFStringArray(tag, s);
    *text = s.size() > 40 ? std::string(s.c_str(), 40) + "..." : std::string(s.c_str());
    for (unsigned i = 0; i < n; i++) {
        Float64 v = 0;
        if (it.findAndGetFloat64(tag, v, i).bad() || !std::isfinite(v)) {
            *ok = false;
            return true;
        }
        out[i] = v;
    }
    return true;
}

samda_status bad_value(samda_error *err, const char *label, const std::string &text, const char *rule,
                       const std::string &where)
{
    return samda_fail(err, SAMDA_EBADDICOM, "%s \"%s\"%s %s", label, text.c_str(), where.c_str(), rule);
}

/* The attributes that place and scale an image, wherever they appear (top level or a functional
 * group item): refused when no patient can have them. */
samda_status check_geometry(DcmItem &it, const std::string &where, samda_error *err)
{
    double v[6];
    bool ok;
    std::string text;
    if (get_numbers(it, DCM_PixelSpacing, v, 2, &ok, &text)) {
        if (!ok) return bad_value(err, "(0028,0030) PixelSpacing", text, "is not two numbers", where);
        for (int i = 0; i < 2; i++)
            if (!(v[i] > 0) || v[i] > SAMDA_DICOM_MAX_PIXEL_SPACING_MM)
                return bad_value(err, "(0028,0030) PixelSpacing", text,
                                 "is impossible: each value must be above 0 and at most 1000 mm", where);
    }
    if (get_numbers(it, DCM_ImagePositionPatient, v, 3, &ok, &text)) {
        if (!ok) return bad_value(err, "(0020,0032) ImagePositionPatient", text, "is not three numbers", where);
        for (int i = 0; i < 3; i++)
            if (std::fabs(v[i]) > SAMDA_DICOM_MAX_COORDINATE_MM)
                return bad_value(err, "(0020,0032) ImagePositionPatient", text,
                                 "is impossible: coordinates must lie within 100 m (1e5 mm) of the origin", where);
    }
    if (get_numbers(it, DCM_ImageOrientationPatient, v, 6, &ok, &text)) {
        if (!ok) return bad_value(err, "(0020,0037) ImageOrientationPatient", text, "is not six numbers", where);
        for (int k = 0; k < 2; k++) {
            double len = std::sqrt(v[3 * k] * v[3 * k] + v[3 * k + 1] * v[3 * k + 1] + v[3 * k + 2] * v[3 * k + 2]);
            if (len < 0.9 || len > 1.1)
                return bad_value(err, "(0020,0037) ImageOrientationPatient", text,
                                 "is impossible: row and column directions must be unit vectors", where);
        }
    }
    if (get_numbers(it, DCM_SliceThickness, v, 1, &ok, &text) && (!ok || v[0] < 0))
        return bad_value(err, "(0018,0050) SliceThickness", text, "is not a number of 0 mm or more", where);
    if (get_numbers(it, DCM_RescaleSlope, v, 1, &ok, &text) && (!ok || v[0] == 0))
        return bad_value(err, "(0028,1053) RescaleSlope", text,
                         "is impossible: a slope of 0 maps every pixel to the same value", where);
    if (get_numbers(it, DCM_RescaleIntercept, v, 1, &ok, &text) && !ok)
        return bad_value(err, "(0028,1052) RescaleIntercept", text, "is not a number", where);
    return SAMDA_OK;
}

/* Every item of sq, and the macros inside each item that carry geometry (functional groups). */
samda_status check_groups(DcmItem &ds, const DcmTagKey &seq_tag, const char *seq_name, samda_error *err)
{
    static const DcmTagKey macros[] = {DCM_PixelMeasuresSequence, DCM_PlanePositionSequence,
                                       DCM_PlaneOrientationSequence, DCM_PixelValueTransformationSequence};
    DcmSequenceOfItems *sq = nullptr;
    if (ds.findAndGetSequence(seq_tag, sq).bad() || !sq) return SAMDA_OK;
    for (unsigned long i = 0; i < sq->card(); i++) {
        DcmItem *group = sq->getItem(i);
        if (!group) continue;
        for (const DcmTagKey &m : macros) {
            DcmItem *mi = nullptr;
            if (group->findAndGetSequenceItem(m, mi, 0).bad() || !mi) continue;
            std::string where = std::string(" in ") + seq_name + " item " + std::to_string(i + 1);
            samda_status st = check_geometry(*mi, where, err);
            if (st != SAMDA_OK) return st;
        }
    }
    return SAMDA_OK;
}

unsigned get_us(DcmItem &ds, const DcmTagKey &tag, unsigned dflt)
{
    Uint16 v = 0;
    return ds.findAndGetUint16(tag, v).good() ? v : dflt;
}

} // namespace

/* Pixel data against Rows, Columns, SamplesPerPixel, BitsAllocated and NumberOfFrames (also the
 * volume loader's check before it sizes anything by NumberOfFrames). */
samda_status dicom_check_pixels(DcmDataset &ds, const samda_dicom_header &h, samda_error *err)
{
    const bool image = is_image_class(h.sop_class_uid);
    DcmElement *el = nullptr;
    bool has_px = ds.findAndGetElement(DCM_PixelData, el).good() && el;
    if (!has_px) {
        if (image || ds.tagExists(DCM_Rows) || ds.tagExists(DCM_Columns))
            return samda_fail(err, SAMDA_EBADDICOM, "(7FE0,0010) PixelData missing from an image (SOP class %s): the "
                              "data set ends before its pixels", h.sop_class_uid);
        return SAMDA_OK;
    }
    const unsigned rows = get_us(ds, DCM_Rows, 0), cols = get_us(ds, DCM_Columns, 0);
    const unsigned spp = get_us(ds, DCM_SamplesPerPixel, 0), ba = get_us(ds, DCM_BitsAllocated, 0);
    const unsigned bs = get_us(ds, DCM_BitsStored, ba);
    if (!rows || !cols)
        return samda_fail(err, SAMDA_EBADDICOM, "(0028,0010) Rows %u and (0028,0011) Columns %u: an image needs "
                          "both, at least 1", rows, cols);
    if (spp != 1 && spp != 3 && spp != 4)
        return samda_fail(err, SAMDA_EBADDICOM, "(0028,0002) SamplesPerPixel %u: must be 1, 3 or 4", spp);
    if (ba != 1 && ba != 8 && ba != 16 && ba != 32)
        return samda_fail(err, SAMDA_EBADDICOM, "(0028,0100) BitsAllocated %u: must be 1, 8, 16 or 32", ba);
    if (bs == 0 || bs > ba)
        return samda_fail(err, SAMDA_EBADDICOM, "(0028,0101) BitsStored %u with BitsAllocated %u: must be 1 to %u",
                          bs, ba, ba);
    uint64_t frames = 1;
    if (ds.tagExistsWithValue(DCM_NumberOfFrames)) {
        Sint32 nf = 0;
        if (ds.findAndGetSint32(DCM_NumberOfFrames, nf).bad() || nf < 1)
            return samda_fail(err, SAMDA_EBADDICOM, "(0028,0008) NumberOfFrames is not a whole number of 1 or more");
        frames = (uint64_t)nf;
    }
    const uint64_t frame_bits = (uint64_t)rows * cols * spp * ba;
    if (frame_bits > (uint64_t)SAMDA_DICOM_MAX_FRAME_BYTES * 8)
        return samda_fail(err, SAMDA_EBADDICOM, "a frame of %u x %u pixels, %u samples of %u bits is larger than "
                          "samda's limit of 1 GiB per frame", rows, cols, spp, ba);

    E_TransferSyntax xfer = ds.getOriginalXfer();
    DcmXfer x(xfer);
    if (!x.isEncapsulated()) {
        const uint64_t len = el->getLengthField();
        if (len == DCM_UndefinedLength)
            return samda_fail(err, SAMDA_EBADDICOM, "(7FE0,0010) PixelData is encapsulated in a native transfer "
                              "syntax (%s)", x.getXferName());
        /* frames * frame_bits / 8 <= len, without overflow for any declared NumberOfFrames. */
        if (frames > len * 8 / frame_bits) {
            const uint64_t need = frames <= (UINT64_MAX - 7) / frame_bits ? (frames * frame_bits + 7) / 8 : UINT64_MAX;
            return samda_fail(err, SAMDA_EBADDICOM, "(7FE0,0010) PixelData holds %llu bytes; NumberOfFrames %llu of "
                              "%u x %u x %u samples at %u bits need %llu: truncated, or NumberOfFrames, Rows or Columns "
                              "wrong", (unsigned long long)len, (unsigned long long)frames, rows, cols, spp, ba,
                              (unsigned long long)need);
        }
        return SAMDA_OK;
    }
    DcmPixelData *pd = OFdynamic_cast(DcmPixelData *, el);
    DcmPixelSequence *seq = nullptr;
    if (!pd || pd->getEncapsulatedRepresentation(xfer, nullptr, seq).bad() || !seq)
        return samda_fail(err, SAMDA_EBADDICOM, "(7FE0,0010) PixelData is not encapsulated although %s requires it",
                          x.getXferName());
    const unsigned long card = seq->card();
    if (card < 2)
        return samda_fail(err, SAMDA_EBADDICOM, "(7FE0,0010) encapsulated PixelData has no fragment after its "
                          "Basic Offset Table");
    const uint64_t fragments = card - 1;
    DcmPixelItem *bot = nullptr;
    uint64_t bot_len = seq->getItem(bot, 0).good() && bot ? bot->getLengthField() : 0;
    if (bot_len && bot_len != 4 * frames)
        return samda_fail(err, SAMDA_EBADDICOM, "(7FE0,0010) Basic Offset Table has %llu entries for NumberOfFrames "
                          "%llu", (unsigned long long)(bot_len / 4), (unsigned long long)frames);
    /* PS3.5 A.4: a fragment holds data of one frame only, so each frame has at least one. */
    if (fragments < frames)
        return samda_fail(err, SAMDA_EBADDICOM, "(7FE0,0010) PixelData has %llu fragments for NumberOfFrames %llu: "
                          "each frame needs at least one (truncated, or NumberOfFrames wrong)",
                          (unsigned long long)fragments, (unsigned long long)frames);
    uint64_t total = 0;
    for (unsigned long i = 1; i < card; i++) {
        DcmPixelItem *frag = nullptr;
        if (seq->getItem(frag, i).good() && frag) total += frag->getLengthField();
    }
    if (total == 0)
        return samda_fail(err, SAMDA_EBADDICOM, "(7FE0,0010) every fragment of the encapsulated PixelData is empty");
    DcmElement *eot = nullptr;
    if (ds.findAndGetElement(DcmTagKey(0x7FE0, 0x0001), eot).good() && eot && eot->getLengthField() != 8 * frames)
        return samda_fail(err, SAMDA_EBADDICOM, "(7FE0,0001) ExtendedOffsetTable has %lu bytes for NumberOfFrames "
                          "%llu (8 per frame)", (unsigned long)eot->getLengthField(), (unsigned long long)frames);
    return SAMDA_OK;
}

namespace {

samda_status check(const char *path, const samda_dicom_header &h, samda_error *err)
{
    struct stat sb;
    if (stat(path, &sb) != 0) {
        int e = errno;
        return samda_fail(err, e == ENOENT ? SAMDA_ENOENT : SAMDA_EIO, "%s", std::strerror(e));
    }
    DcmFileFormat ff;
    /* The whole data set; with samda_dicom_init()'s setting DCMTK stops after the top-level pixel
     * data (padding some writers leave after it is not read), and checks its length against the file. */
    OFCondition c = dicom_reopen::load_file(ff, path, lazy_read_length);
    if (c.bad())
        return samda_fail(err, SAMDA_EBADDICOM, "the data set does not parse to its end (%s): truncated or corrupt",
                          c.text());
    DcmDataset &ds = *ff.getDataset();
    samda_status st = dicom_check_pixels(ds, h, err);
    if (st == SAMDA_OK) st = check_geometry(ds, "", err);
    if (st == SAMDA_OK) st = check_groups(ds, DCM_SharedFunctionalGroupsSequence, "SharedFunctionalGroupsSequence", err);
    if (st == SAMDA_OK)
        st = check_groups(ds, DCM_PerFrameFunctionalGroupsSequence, "PerFrameFunctionalGroupsSequence", err);
    return st;
}

} // namespace

extern "C" samda_status samda_dicom_check_instance(const char *path, const samda_dicom_header *h, samda_error *err)
{
    if (!path || !h) return samda_fail(err, SAMDA_EINVAL, "checking an instance: no %s", path ? "header" : "path");
    return dicom_guard(err, "checking an instance", SAMDA_EBADDICOM, [&]() -> samda_status { return check(path, *h, err); });
}
