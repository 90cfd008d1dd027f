/* DICOM-SEG reader: segments, per-frame references and positions, and masks unpacked to one byte per
 * pixel, read with plain dcmdata so that SEGs from any writer (dcmqi, highdicom, dcmjs, samda) and
 * any transfer syntax DCMTK decodes here are accepted; plus the mapping of frames onto a source
 * volume's slices.
 *
 * It does not validate the SEG against the IOD (dciodvfy does that in tests) beyond what is needed
 * to read it without guessing; it does not resample frames that lie off the source grid. */
#include <cerrno>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <sys/stat.h>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcsequen.h>
#include <dcmtk/dcmdata/dcxfer.h>
#include <dcmtk/dcmiod/cielabutil.h>

#include "dicom.h"
#include "guard.h"
#include "reopen.h"
#include "volume_internal.h"

struct samda_seg {
    samda_seg_info info{};
    std::vector<samda_seg_segment_info> segments;
    std::vector<samda_seg_frame_info> frames;
    std::vector<uint8_t> masks; /* n_frames * rows * cols */
};

namespace {

const char *const seg_storage = "1.2.840.10008.5.1.4.1.1.66.4";

template <size_t N>
void get_str(DcmItem &it, const DcmTagKey &tag, char (&dst)[N])
{
    OFString v;
    dst[0] = '\0';
    if (it.findAndGetOFStringArray(tag, v).good()) {
        size_t n = v.size() < N - 1 ? v.size() : N - 1;
        std::memcpy(dst, v.c_str(), n);
        dst[n] = '\0';
    }
}

DcmItem *first_item(DcmItem *item, const DcmTagKey &seq)
{
    DcmItem *out = nullptr;
    if (!item || item->findAndGetSequenceItem(seq, out, 0).bad()) return nullptr;
    return out;
}

template <size_t A, size_t B, size_t C>
void get_code(DcmItem &it, const DcmTagKey &seq, char (&value)[A], char (&scheme)[B], char (&meaning)[C])
{
    DcmItem *c = first_item(&it, seq);
    value[0] = scheme[0] = meaning[0] = '\0';
    if (!c) return;
    get_str(*c, DCM_CodeValue, value);
    if (!value[0]) get_str(*c, DCM_LongCodeValue, value);
    if (!value[0]) get_str(*c, DCM_URNCodeValue, value);
    get_str(*c, DCM_CodingSchemeDesignator, scheme);
    get_str(*c, DCM_CodeMeaning, meaning);
}

/* Attribute of a functional group macro: per-frame item first, then shared (PS3.3 C.7.6.16). */
DcmItem *fg(DcmItem *per_frame, DcmItem *shared, const DcmTagKey &seq)
{
    DcmItem *g = first_item(per_frame, seq);
    return g ? g : first_item(shared, seq);
}

/* The file, checked to be a BINARY or FRACTIONAL Segmentation Storage object whose pixels can be
 * decoded here; type gets its SegmentationType. */
samda_status open_seg(const char *path, DcmFileFormat &ff, OFString &type, samda_error *err)
{
    struct stat sb;
    if (stat(path, &sb) != 0) {
        int e = errno;
        return samda_fail(err, e == ENOENT ? SAMDA_ENOENT : SAMDA_EIO, "reading DICOM-SEG %s: %s", path,
                          std::strerror(e));
    }
    OFCondition c = dicom_reopen::load_file(ff, path); /* no allocation by declared length */
    if (c.bad()) return samda_fail(err, SAMDA_EBADDICOM, "reading DICOM-SEG %s: %s", path, c.text());
    DcmDataset &ds = *ff.getDataset();
    OFString cls;
    ds.findAndGetOFString(DCM_SOPClassUID, cls);
    if (cls != seg_storage)
        return samda_fail(err, SAMDA_EBADDICOM, "reading DICOM-SEG %s: SOP class %s is not Segmentation Storage",
                          path, cls.c_str());
    ds.findAndGetOFString(DCM_SegmentationType, type);
    if (type != "BINARY" && type != "FRACTIONAL")
        return samda_fail(err, type == "LABELMAP" ? SAMDA_ENOTSUP : SAMDA_EBADDICOM,
                          "reading DICOM-SEG %s: SegmentationType \"%s\" (BINARY and FRACTIONAL are read)", path,
                          type.c_str());
    if (DcmXfer(ds.getOriginalXfer()).isEncapsulated() &&
        (ds.chooseRepresentation(EXS_LittleEndianExplicit, nullptr).bad() ||
         !ds.hasRepresentation(EXS_LittleEndianExplicit, nullptr)))
        return samda_fail(err, SAMDA_ENOTSUP, "reading DICOM-SEG %s: transfer syntax %s cannot be decoded here", path,
                          DcmXfer(ds.getOriginalXfer()).getXferName());
    return SAMDA_OK;
}

/* The pixel data as read_image found it, for unpack_masks. */
struct seg_pixels {
    DcmElement *px = nullptr;
    Uint8 *data = nullptr;     /* px's bytes, owned by the data set */
    Uint16 max_frac = 255;     /* FRACTIONAL: MaximumFractionalValue */
    bool has_n_frames = false; /* NumberOfFrames present (else counted from the pixel data) */
};

/* The image: size, number of frames, the pixel data, and the UIDs. */
samda_status read_image(DcmDataset &ds, const char *path, const OFString &type, samda_seg_info &in, seg_pixels &pix,
                        samda_error *err)
{
    Uint16 rows = 0, cols = 0, bits = 0;
    Sint32 n_frames = 0;
    ds.findAndGetUint16(DCM_Rows, rows);
    ds.findAndGetUint16(DCM_Columns, cols);
    ds.findAndGetUint16(DCM_BitsAllocated, bits);
    pix.has_n_frames = ds.findAndGetSint32(DCM_NumberOfFrames, n_frames).good();
    in.rows = rows;
    in.cols = cols;
    in.is_fractional = type == "FRACTIONAL";
    if (in.is_fractional) ds.findAndGetUint16(DCM_MaximumFractionalValue, pix.max_frac);
    if (ds.findAndGetElement(DCM_PixelData, pix.px).bad() || !pix.px || pix.px->getUint8Array(pix.data).bad() ||
        !pix.data)
        return samda_fail(err, SAMDA_EBADDICOM, "reading DICOM-SEG %s: no readable PixelData", path);
    if (!pix.has_n_frames && rows > 0 && cols > 0) {
        /* NumberOfFrames is Type 1, yet some files lack it (pydicom's liver_1frame.dcm): count
         * the frames the pixel data holds. */
        size_t frame_bits = (size_t)rows * cols * (type == "FRACTIONAL" ? 8 : 1);
        n_frames = (Sint32)std::max<size_t>(1, (size_t)pix.px->getLength() * 8 / frame_bits);
    }
    if (rows == 0 || cols == 0 || n_frames < 1 || bits != (in.is_fractional ? 8 : 1))
        return samda_fail(err, SAMDA_EBADDICOM,
                          "reading DICOM-SEG %s: %ux%u, %d frame(s), BitsAllocated %u: not a valid %s segmentation",
                          path, rows, cols, (int)n_frames, bits, type.c_str());
    in.n_frames = (size_t)n_frames;
    get_str(ds, DCM_SOPInstanceUID, in.sop_instance_uid);
    get_str(ds, DCM_SeriesInstanceUID, in.series_instance_uid);
    get_str(ds, DCM_StudyInstanceUID, in.study_instance_uid);
    get_str(ds, DCM_FrameOfReferenceUID, in.frame_of_reference_uid);
    if (DcmItem *rs = first_item(&ds, DCM_ReferencedSeriesSequence))
        get_str(*rs, DCM_SeriesInstanceUID, in.referenced_series_instance_uid);
    return SAMDA_OK;
}

/* Segments (PS3.3 C.8.20.2): each with a number of its own, its label, algorithm, codes and colour. */
samda_status read_segments(DcmDataset &ds, const char *path, samda_seg &seg, samda_error *err)
{
    DcmSequenceOfItems *segs = nullptr;
    if (ds.findAndGetSequence(DCM_SegmentSequence, segs).bad() || !segs || segs->card() == 0)
        return samda_fail(err, SAMDA_EBADDICOM, "reading DICOM-SEG %s: no SegmentSequence", path);
    for (unsigned long i = 0; i < segs->card(); i++) {
        DcmItem &it = *segs->getItem(i);
        samda_seg_segment_info s{};
        Uint16 num = 0;
        if (it.findAndGetUint16(DCM_SegmentNumber, num).bad() || num == 0)
            return samda_fail(err, SAMDA_EBADDICOM, "reading DICOM-SEG %s: segment item %lu has no SegmentNumber",
                              path, i + 1);
        for (const samda_seg_segment_info &o : seg.segments)
            if (o.number == num)
                return samda_fail(err, SAMDA_EBADDICOM, "reading DICOM-SEG %s: SegmentNumber %u twice", path, num);
        s.number = num;
        get_str(it, DCM_SegmentLabel, s.label);
        get_str(it, DCM_SegmentDescription, s.description);
        get_str(it, DCM_SegmentAlgorithmType, s.algorithm_type);
        get_str(it, DCM_SegmentAlgorithmName, s.algorithm_name);
        get_code(it, DCM_SegmentedPropertyCategoryCodeSequence, s.category_value, s.category_scheme,
                 s.category_meaning);
        get_code(it, DCM_SegmentedPropertyTypeCodeSequence, s.type_value, s.type_scheme, s.type_meaning);
        if (DcmItem *type = first_item(&it, DCM_SegmentedPropertyTypeCodeSequence))
            get_code(*type, DCM_SegmentedPropertyTypeModifierCodeSequence, s.type_modifier_value,
                     s.type_modifier_scheme, s.type_modifier_meaning);
        get_code(it, DCM_AnatomicRegionSequence, s.region_value, s.region_scheme, s.region_meaning);
        if (DcmItem *region = first_item(&it, DCM_AnatomicRegionSequence))
            get_code(*region, DCM_AnatomicRegionModifierSequence, s.modifier_value, s.modifier_scheme,
                     s.modifier_meaning);
        for (unsigned k = 0; k < 3; k++) {
            Uint16 v = 0;
            if (it.findAndGetUint16(DCM_RecommendedDisplayCIELabValue, v, k).bad()) break;
            s.cielab[k] = v;
            s.has_cielab = k == 2;
        }
        if (s.has_cielab) { /* the inverse of seg_write.cpp's rgb2DicomLab, rounded to 0..255 */
            double rgb[3] = {0, 0, 0};
            IODCIELabUtil::dicomLab2RGB(rgb[0], rgb[1], rgb[2], s.cielab[0], s.cielab[1], s.cielab[2]);
            for (int k = 0; k < 3; k++)
                s.rgb[k] = (uint8_t)std::lround(std::min(1.0, std::max(0.0, rgb[k])) * 255.0);
        }
        seg.segments.push_back(s);
    }
    seg.info.n_segments = seg.segments.size();
    return SAMDA_OK;
}

/* Frames (PS3.3 C.7.6.16, C.8.20.3): each frame's segment, source image and position, and the shared
 * orientation. */
samda_status read_frames(DcmDataset &ds, const char *path, bool has_n_frames, samda_seg &seg, samda_error *err)
{
    samda_seg_info &in = seg.info;
    DcmItem *shared = first_item(&ds, DCM_SharedFunctionalGroupsSequence);
    DcmSequenceOfItems *per = nullptr;
    if (ds.findAndGetSequence(DCM_PerFrameFunctionalGroupsSequence, per).bad()) per = nullptr;
    /* Without NumberOfFrames, extra per-frame items (describing frames not in the pixel data) are
     * ignored; with it, the counts must agree. */
    if (!per || per->card() < in.n_frames || (has_n_frames && per->card() != in.n_frames))
        return samda_fail(err, SAMDA_EBADDICOM,
                          "reading DICOM-SEG %s: %zu frames but %lu PerFrameFunctionalGroupsSequence items",
                          path, in.n_frames, per ? (unsigned long)per->card() : 0ul);
    if (DcmItem *po = first_item(shared, DCM_PlaneOrientationSequence)) {
        in.has_orientation = true;
        for (unsigned k = 0; k < 6; k++) {
            Float64 v = 0;
            if (po->findAndGetFloat64(DCM_ImageOrientationPatient, v, k).bad()) in.has_orientation = false;
            in.orientation[k] = v;
        }
    }
    seg.frames.resize(in.n_frames);
    for (size_t f = 0; f < in.n_frames; f++) {
        DcmItem *pf = per->getItem((unsigned long)f);
        samda_seg_frame_info &fr = seg.frames[f];
        DcmItem *si = fg(pf, shared, DCM_SegmentIdentificationSequence);
        Uint16 num = 0;
        if (!si || si->findAndGetUint16(DCM_ReferencedSegmentNumber, num).bad())
            return samda_fail(err, SAMDA_EBADDICOM, "reading DICOM-SEG %s: frame %zu has no ReferencedSegmentNumber",
                              path, f + 1);
        bool known = false;
        for (const samda_seg_segment_info &s : seg.segments) known = known || s.number == num;
        if (!known)
            return samda_fail(err, SAMDA_EBADDICOM, "reading DICOM-SEG %s: frame %zu names segment %u, not in "
                              "SegmentSequence", path, f + 1, num);
        fr.segment_number = num;
        if (DcmItem *der = fg(pf, shared, DCM_DerivationImageSequence)) {
            if (DcmItem *src = first_item(der, DCM_SourceImageSequence)) {
                get_str(*src, DCM_ReferencedSOPInstanceUID, fr.referenced_sop_instance_uid);
                Sint32 rf = 0;
                if (src->findAndGetSint32(DCM_ReferencedFrameNumber, rf).good() && rf > 0)
                    fr.referenced_frame_number = (unsigned)rf;
            }
        }
        if (DcmItem *pp = fg(pf, shared, DCM_PlanePositionSequence)) {
            fr.has_position = true;
            for (unsigned k = 0; k < 3; k++) {
                Float64 v = 0;
                if (pp->findAndGetFloat64(DCM_ImagePositionPatient, v, k).bad()) fr.has_position = false;
                fr.position[k] = v;
            }
        }
    }
    return SAMDA_OK;
}

/* Pixels: BINARY frames are packed bits, LSB first, one frame right after the other with no
 * padding between frames (PS3.5 8.1.1, PS3.3 C.8.20.2.1); a FRACTIONAL voxel is inside where its
 * fraction exceeds one half. One byte per pixel out. */
samda_status unpack_masks(const seg_pixels &pix, const char *path, samda_seg &seg, samda_error *err)
{
    const samda_seg_info &in = seg.info;
    size_t plane = (size_t)in.rows * in.cols, total = plane * in.n_frames;
    size_t need = in.is_fractional ? total : (total + 7) / 8;
    if (pix.px->getLength() < need)
        return samda_fail(err, SAMDA_EBADDICOM, "reading DICOM-SEG %s: %lu bytes of PixelData, %zu needed", path,
                          (unsigned long)pix.px->getLength(), need);
    seg.masks.resize(total);
    const Uint8 *data = pix.data;
    if (in.is_fractional) {
        for (size_t i = 0; i < total; i++) seg.masks[i] = 2u * data[i] > pix.max_frac ? 1 : 0;
    } else {
        for (size_t i = 0; i < total; i++) seg.masks[i] = (data[i >> 3] >> (i & 7)) & 1u;
    }
    return SAMDA_OK;
}

samda_status read_seg(const char *path, samda_seg **out, samda_error *err)
{
    DcmFileFormat ff;
    OFString type;
    samda_status st = open_seg(path, ff, type, err);
    if (st != SAMDA_OK) return st;
    DcmDataset &ds = *ff.getDataset();
    std::unique_ptr<samda_seg> seg(new samda_seg);
    seg_pixels pix;
    if ((st = read_image(ds, path, type, seg->info, pix, err)) != SAMDA_OK) return st;
    if ((st = read_segments(ds, path, *seg, err)) != SAMDA_OK) return st;
    if ((st = read_frames(ds, path, pix.has_n_frames, *seg, err)) != SAMDA_OK) return st;
    if ((st = unpack_masks(pix, path, *seg, err)) != SAMDA_OK) return st;
    *out = seg.release();
    return SAMDA_OK;
}

samda_status to_labels(const samda_seg &seg, const samda_volume &v, uint8_t *labels, size_t *n_mapped,
                       samda_error *err)
{
    const samda_volume_info &vi = v.info;
    if (seg.info.rows != vi.rows || seg.info.cols != vi.cols)
        return samda_fail(err, SAMDA_EINVAL, "mapping a DICOM-SEG onto a volume: frames are %ux%u, slices %ux%u",
                          seg.info.rows, seg.info.cols, vi.rows, vi.cols);
    for (const samda_seg_segment_info &s : seg.segments)
        if (s.number > 255)
            return samda_fail(err, SAMDA_EINVAL,
                              "mapping a DICOM-SEG onto a volume: segment number %u does not fit a uint8 label",
                              s.number);
    size_t plane = (size_t)vi.rows * vi.cols;
    std::memset(labels, 0, plane * vi.n_slices);
    std::unordered_map<std::string, size_t> by_ref;
    for (size_t s = 0; s < v.slices.size(); s++)
        by_ref[std::string(v.slices[s].sop_instance_uid) + "#" + std::to_string(v.slices[s].frame_number)] = s;
    size_t mapped = 0;
    for (size_t f = 0; f < seg.frames.size(); f++) {
        const samda_seg_frame_info &fr = seg.frames[f];
        size_t slice = (size_t)-1;
        if (fr.referenced_sop_instance_uid[0]) {
            auto it = by_ref.find(std::string(fr.referenced_sop_instance_uid) + "#" +
                                  std::to_string(fr.referenced_frame_number));
            if (it == by_ref.end() && fr.referenced_frame_number == 1) /* frame 1 of a single-frame image */
                it = by_ref.find(std::string(fr.referenced_sop_instance_uid) + "#0");
            if (it != by_ref.end()) slice = it->second;
        }
        if (slice == (size_t)-1 && fr.has_position) {
            for (size_t s = 0; s < v.slices.size(); s++) {
                const double *p = v.slices[s].position;
                double d = std::sqrt((p[0] - fr.position[0]) * (p[0] - fr.position[0]) +
                                     (p[1] - fr.position[1]) * (p[1] - fr.position[1]) +
                                     (p[2] - fr.position[2]) * (p[2] - fr.position[2]));
                if (d < 0.01) {
                    slice = s;
                    break;
                }
            }
        }
        if (slice == (size_t)-1) {
            if (n_mapped) *n_mapped = mapped;
            return samda_fail(err, SAMDA_ENOENT,
                              "mapping a DICOM-SEG onto a volume: frame %zu matches no slice by reference or position",
                              f + 1);
        }
        const uint8_t *m = &seg.masks[f * plane];
        uint8_t *dst = labels + slice * plane;
        uint8_t num = (uint8_t)fr.segment_number;
        for (size_t i = 0; i < plane; i++)
            if (m[i] && dst[i] < num) dst[i] = num;
        mapped++;
    }
    if (n_mapped) *n_mapped = mapped;
    return SAMDA_OK;
}

} // namespace

extern "C" samda_status samda_seg_read(const char *path, samda_seg **out, samda_error *err)
{
    if (out) *out = nullptr;
    if (!path || !out) return samda_fail(err, SAMDA_EINVAL, "reading a DICOM-SEG: no %s", path ? "output" : "path");
    return dicom_guard(err, "reading a DICOM-SEG", SAMDA_EBADDICOM,
                       [&]() -> samda_status { return read_seg(path, out, err); });
}

extern "C" const samda_seg_info *samda_seg_get_info(const samda_seg *seg) { return seg ? &seg->info : nullptr; }

extern "C" const samda_seg_segment_info *samda_seg_segment_get(const samda_seg *seg, size_t i)
{
    return seg && i < seg->segments.size() ? &seg->segments[i] : nullptr;
}

extern "C" const samda_seg_frame_info *samda_seg_frame_get(const samda_seg *seg, size_t i)
{
    return seg && i < seg->frames.size() ? &seg->frames[i] : nullptr;
}

extern "C" const uint8_t *samda_seg_frame_mask(const samda_seg *seg, size_t i)
{
    return seg && i < seg->frames.size() ? &seg->masks[i * (size_t)seg->info.rows * seg->info.cols] : nullptr;
}

extern "C" void samda_seg_free(samda_seg *seg) { dicom_guard_void([&] { delete seg; }); }

extern "C" samda_status samda_seg_to_label_volume(const samda_seg *seg, const samda_volume *source,
                                                  uint8_t *labels_out, size_t *n_mapped, samda_error *err)
{
    if (n_mapped) *n_mapped = 0;
    if (!seg || !source || !labels_out)
        return samda_fail(err, SAMDA_EINVAL, "mapping a DICOM-SEG onto a volume: no %s",
                          !seg ? "SEG" : !source ? "volume" : "output");
    return dicom_guard(err, "mapping a DICOM-SEG onto a volume", SAMDA_EINTERNAL,
                       [&]() -> samda_status { return to_labels(*seg, *source, labels_out, n_mapped, err); });
}
