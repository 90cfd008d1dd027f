/* Series -> volume: decode the pixels of one series into float32 physical values and sort its
 * frames along the slice normal, refusing geometry that cannot form one volume.
 *
 * Two passes: first every header (cheap, stops before pixel data) so that inconsistent geometry is
 * refused before anything is decoded and the sorted order is known; then each file is loaded in
 * full and decoded straight into its sorted place, several files at once on a few threads.
 * It does not window, resample or reorient: the voxels stay on the acquisition grid. */
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfcache.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcpixel.h>
#include <dcmtk/dcmdata/dcsequen.h>
#include <dcmtk/dcmdata/dcxfer.h>

#include "dicom.h"
#include "guard.h"
#include "intake_internal.h"
#include "reopen.h"
#include "volume_internal.h"

namespace {

const DcmTagKey tag_pixel_data(0x7FE0, 0x0010);

/* One frame found in pass 1. */
struct frame_geo {
    size_t file;           /* index into paths */
    unsigned frame;        /* 1-based in a multi-frame file, 0 for single-frame */
    bool has_position = false, has_orientation = false, has_spacing = false;
    double position[3] = {0, 0, 0};
    double orientation[6] = {1, 0, 0, 0, 1, 0};
    double spacing[2] = {1, 1};
    double slope = 1, intercept = 0;
    double location = 0;
};

/* Per file, from pass 1. */
struct file_info {
    samda_dicom_header h;
    bool is_multiframe;
};

/* An instance as a PACS administrator finds it: its InstanceNumber and SOP Instance UID (never the
 * path of samda's copy, which means nothing outside samda and hides the UIDs). */
std::string who(const samda_dicom_header &h)
{
    std::string s = "instance ";
    if (h.has_instance_number) s += std::to_string(h.instance_number) + " ";
    s += std::string("(SOP Instance UID ") + h.sop_instance_uid + ")";
    return s;
}

std::string who_frame(const samda_dicom_header &h, unsigned frame)
{
    std::string s = who(h);
    if (frame) s += " frame " + std::to_string(frame);
    return s;
}

/* Append " (<who>)" to a message that names the attribute first. */
void name_instance(samda_error *err, const samda_dicom_header &h)
{
    if (!err) return;
    size_t n = std::strlen(err->message);
    std::snprintf(err->message + n, sizeof err->message - n, " (%s)", who(h).c_str());
}

/* A frame's geometry that no patient can have (the intake check refuses it too; this catches
 * instances stored before it existed). */
samda_status check_frame_values(const frame_geo &g, const samda_dicom_header &h, samda_error *err)
{
    for (int i = 0; g.has_spacing && i < 2; i++)
        if (!std::isfinite(g.spacing[i]) || !(g.spacing[i] > 0) || g.spacing[i] > SAMDA_DICOM_MAX_PIXEL_SPACING_MM)
            return samda_fail(err, SAMDA_EBADDICOM, "(0028,0030) PixelSpacing %g\\%g is impossible: each value must be "
                              "above 0 and at most 1000 mm (%s)", g.spacing[0], g.spacing[1],
                              who_frame(h, g.frame).c_str());
    for (int i = 0; g.has_position && i < 3; i++)
        if (!std::isfinite(g.position[i]) || std::fabs(g.position[i]) > SAMDA_DICOM_MAX_COORDINATE_MM)
            return samda_fail(err, SAMDA_EBADDICOM, "(0020,0032) ImagePositionPatient %g\\%g\\%g is impossible: "
                              "coordinates must lie within 1e5 mm of the origin (%s)", g.position[0], g.position[1],
                              g.position[2], who_frame(h, g.frame).c_str());
    for (int i = 0; g.has_orientation && i < 6; i++)
        if (!std::isfinite(g.orientation[i]))
            return samda_fail(err, SAMDA_EBADDICOM, "(0020,0037) ImageOrientationPatient is not six numbers (%s)",
                              who_frame(h, g.frame).c_str());
    if (!std::isfinite(g.slope) || g.slope == 0 || !std::isfinite(g.intercept))
        return samda_fail(err, SAMDA_EBADDICOM, "(0028,1053) RescaleSlope %g with (0028,1052) RescaleIntercept %g is "
                          "impossible: a slope must be a number other than 0 (%s)", g.slope, g.intercept,
                          who_frame(h, g.frame).c_str());
    return SAMDA_OK;
}

bool get_ds(DcmItem &it, const DcmTagKey &tag, double *out, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        Float64 v = 0;
        if (it.findAndGetFloat64(tag, v, i).bad()) return false;
        out[i] = v;
    }
    return true;
}

/* The first item of sequence seq inside item, or NULL. */
DcmItem *first_item(DcmItem *item, const DcmTagKey &seq)
{
    if (!item) return nullptr;
    DcmItem *out = nullptr;
    if (item->findAndGetSequenceItem(seq, out, 0).bad()) return nullptr;
    return out;
}

/* A functional group attribute: per-frame group first, then the shared one (PS3.3 C.7.6.16). */
bool fg_ds(DcmItem *per_frame, DcmItem *shared, const DcmTagKey &seq, const DcmTagKey &tag, double *out, unsigned n)
{
    DcmItem *g = first_item(per_frame, seq);
    if (g && get_ds(*g, tag, out, n)) return true;
    g = first_item(shared, seq);
    return g && get_ds(*g, tag, out, n);
}

double dot3(const double *a, const double *b) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }

void cross3(const double *a, const double *b, double *out)
{
    out[0] = a[1] * b[2] - a[2] * b[1];
    out[1] = a[2] * b[0] - a[0] * b[2];
    out[2] = a[0] * b[1] - a[1] * b[0];
}

/* Pass 1 for one file: its header and the geometry of each of its frames. Nothing is sized by
 * NumberOfFrames before the pixel data is known to hold that many frames. */
samda_status read_geometry(const char *path, size_t file_index, const samda_volume_params &p, file_info &fi,
                           std::vector<frame_geo> &frames, samda_error *err)
{
    samda_dicom_header &h = fi.h;
    samda_status st = samda_dicom_read_header(path, &h, err);
    if (st != SAMDA_OK) return st;
    if (!h.has_pixel_data || h.rows == 0 || h.columns == 0)
        return samda_fail(err, SAMDA_EBADDICOM, "no image pixel data (%s)", who(h).c_str());
    std::string pi = h.photometric_interpretation;
    if (h.samples_per_pixel > 1 || (pi != "MONOCHROME1" && pi != "MONOCHROME2"))
        return samda_fail(err, SAMDA_ENOTSUP,
                          "a colour image (%s, %u samples per pixel): only greyscale (MONOCHROME1/2) series form "
                          "volumes (%s)", pi.c_str(), h.samples_per_pixel, who(h).c_str());
    if (h.bits_allocated != 8 && h.bits_allocated != 16 && h.bits_allocated != 32)
        return samda_fail(err, SAMDA_ENOTSUP, "(0028,0100) BitsAllocated %u: 8, 16 or 32 supported (%s)",
                          h.bits_allocated, who(h).c_str());
    if (h.bits_stored == 0 || h.bits_stored > h.bits_allocated)
        return samda_fail(err, SAMDA_EBADDICOM, "(0028,0101) BitsStored %u with BitsAllocated %u (%s)", h.bits_stored,
                          h.bits_allocated, who(h).c_str());

    /* The whole data set, values over 4 KiB left in the file: functional groups for enhanced
     * (multi-frame) objects, and the pixel data's length against NumberOfFrames. */
    DcmFileFormat ff;
    OFCondition c = dicom_reopen::load_file(ff, path, 4096);
    if (c.bad())
        return samda_fail(err, SAMDA_EBADDICOM, "the data set does not parse to its end (%s): truncated or corrupt (%s)",
                          c.text(), who(h).c_str());
    DcmDataset &ds = *ff.getDataset();
    if ((st = dicom_check_pixels(ds, h, err)) != SAMDA_OK) {
        name_instance(err, h);
        return st;
    }
    unsigned n = h.number_of_frames;
    if ((uint64_t)n * h.rows * h.columns > p.max_voxels)
        return samda_fail(err, SAMDA_ETOOBIG, "(0028,0008) NumberOfFrames %u of %ux%u are more than max_voxels %llu (%s)",
                          n, h.rows, h.columns, (unsigned long long)p.max_voxels, who(h).c_str());
    DcmItem *shared = first_item(&ds, DCM_SharedFunctionalGroupsSequence);
    DcmSequenceOfItems *per_frame_seq = nullptr;
    if (ds.findAndGetSequence(DCM_PerFrameFunctionalGroupsSequence, per_frame_seq).bad()) per_frame_seq = nullptr;
    fi.is_multiframe = n > 1 || per_frame_seq != nullptr;
    if (per_frame_seq && per_frame_seq->card() != n)
        return samda_fail(err, SAMDA_EBADDICOM,
                          "(0028,0008) NumberOfFrames %u but %lu PerFrameFunctionalGroupsSequence items (%s)", n,
                          (unsigned long)per_frame_seq->card(), who(h).c_str());
    frames.reserve(frames.size() + n);
    for (unsigned k = 0; k < n; k++) {
        frame_geo g;
        g.file = file_index;
        g.frame = fi.is_multiframe ? k + 1 : 0;
        DcmItem *pf = per_frame_seq ? per_frame_seq->getItem(k) : nullptr;
        if (fi.is_multiframe) {
            g.has_position = fg_ds(pf, shared, DCM_PlanePositionSequence, DCM_ImagePositionPatient, g.position, 3);
            g.has_orientation =
                fg_ds(pf, shared, DCM_PlaneOrientationSequence, DCM_ImageOrientationPatient, g.orientation, 6);
            g.has_spacing = fg_ds(pf, shared, DCM_PixelMeasuresSequence, DCM_PixelSpacing, g.spacing, 2);
            if (!fg_ds(pf, shared, DCM_PixelValueTransformationSequence, DCM_RescaleSlope, &g.slope, 1))
                g.slope = h.rescale_slope;
            if (!fg_ds(pf, shared, DCM_PixelValueTransformationSequence, DCM_RescaleIntercept, &g.intercept, 1))
                g.intercept = h.rescale_intercept;
        }
        /* Classic attributes when the functional groups lack them. */
        if (!g.has_position && h.has_image_position) {
            std::memcpy(g.position, h.image_position, sizeof g.position);
            g.has_position = n == 1;
        }
        if (!g.has_orientation && h.has_image_orientation) {
            std::memcpy(g.orientation, h.image_orientation, sizeof g.orientation);
            g.has_orientation = true;
        }
        if (!g.has_spacing && h.has_pixel_spacing) {
            std::memcpy(g.spacing, h.pixel_spacing, sizeof g.spacing);
            g.has_spacing = true;
        }
        if (!fi.is_multiframe) {
            g.slope = h.rescale_slope;
            g.intercept = h.rescale_intercept;
        }
        if ((st = check_frame_values(g, h, err)) != SAMDA_OK) return st;
        frames.push_back(g);
    }
    return SAMDA_OK;
}

/* Sign-extends and masks one stored value (PS3.5 8.1.1: bits above BitsStored are not pixel data). */
inline double stored_value(uint32_t raw, unsigned bits_stored, bool is_signed)
{
    if (bits_stored < 32) raw &= (1u << bits_stored) - 1u;
    if (is_signed) {
        if (bits_stored < 32) {
            if (raw & (1u << (bits_stored - 1))) return (double)raw - (double)(1ull << bits_stored);
            return (double)raw;
        }
        return (double)(int32_t)raw;
    }
    return (double)raw;
}

/* Pass 2 for one file: decode every frame into its sorted slice, one frame's bytes at a time. */
samda_status decode_file(const char *path, const file_info &fi, const std::vector<size_t> &slice_of_frame,
                         const std::vector<frame_geo> &frames, const std::vector<size_t> &frames_of_file,
                         float *voxels, size_t slice_voxels, samda_error *err)
{
    const samda_dicom_header &h = fi.h;
    DcmFileFormat ff;
    OFCondition c = dicom_reopen::load_file(ff, path, 4096);
    if (c.bad())
        return samda_fail(err, SAMDA_EIO, "the pixel data cannot be read (%s): %s (%s)", c.text(), path,
                          who(h).c_str());
    DcmDataset &ds = *ff.getDataset();
    DcmXfer x(ds.getOriginalXfer());
    /* Native data is read as the file holds it and swapped by sample below; decoded data is in
     * memory in the host's (little-endian) order. */
    E_ByteOrder order = !x.isEncapsulated() && x.getByteOrder() == EBO_BigEndian ? EBO_BigEndian : EBO_LittleEndian;
    if (x.isEncapsulated()) {
        /* No decoder registered for this syntax (JPEG 2000 in Debian's DCMTK): choosing fails. */
        if (ds.chooseRepresentation(EXS_LittleEndianExplicit, nullptr).bad() ||
            !ds.hasRepresentation(EXS_LittleEndianExplicit, nullptr)) {
            return samda_fail(err, SAMDA_ENOTSUP,
                              "encoded as %s (%s), which this build cannot decode (hint: have the sender use an "
                              "uncompressed or JPEG/JPEG-LS/RLE transfer syntax) (%s)",
                              x.getXferName(), x.getXferID(), who(h).c_str());
        }
    }
    DcmElement *px = nullptr;
    if (ds.findAndGetElement(DCM_PixelData, px).bad() || !px)
        return samda_fail(err, SAMDA_EBADDICOM, "(7FE0,0010) PixelData missing (%s)", who(h).c_str());
    const size_t n_frames = h.number_of_frames;
    const size_t bytes_per = h.bits_allocated / 8;
    const size_t frame_bytes = slice_voxels * bytes_per;
    if ((uint64_t)px->getLength() < (uint64_t)n_frames * frame_bytes)
        return samda_fail(err, SAMDA_EBADDICOM,
                          "(7FE0,0010) PixelData holds %lu bytes, %zu needed for %zu frame(s) of %ux%u at %zu bits (%s)",
                          (unsigned long)px->getLength(), n_frames * frame_bytes, n_frames, h.rows, h.columns,
                          bytes_per * 8, who(h).c_str());
    const bool is_signed = h.pixel_representation == 1;
    std::vector<unsigned char> buf(frame_bytes);
    DcmFileCache cache;
    for (size_t fidx : frames_of_file) {
        const frame_geo &g = frames[fidx];
        const size_t k = g.frame ? g.frame - 1 : 0;
        if (px->getPartialValue(buf.data(), (Uint32)(k * frame_bytes), (Uint32)frame_bytes, &cache, order).bad())
            return samda_fail(err, SAMDA_EBADDICOM, "the pixels of frame %zu cannot be read (%s)", k + 1,
                              who(h).c_str());
        float *dst = voxels + slice_of_frame[fidx] * slice_voxels;
        const double slope = g.slope, icpt = g.intercept;
        const unsigned char *b = buf.data();
        for (size_t i = 0; i < slice_voxels; i++, b += bytes_per) {
            uint32_t v;
            if (bytes_per == 1) v = b[0];
            else if (bytes_per == 2) v = order == EBO_BigEndian ? (uint32_t)b[0] << 8 | b[1] : (uint32_t)b[1] << 8 | b[0];
            else if (order == EBO_BigEndian) v = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
            else v = (uint32_t)b[3] << 24 | (uint32_t)b[2] << 16 | (uint32_t)b[1] << 8 | b[0];
            dst[i] = (float)(stored_value(v, h.bits_stored, is_signed) * slope + icpt);
        }
    }
    return SAMDA_OK;
}

/* Pass 1 over every file, in order: headers and the geometry of every frame. */
samda_status read_all_geometry(const char *const *paths, size_t n, const samda_volume_params &p,
                               std::vector<file_info> &files, std::vector<frame_geo> &frames, samda_error *err)
{
    for (size_t i = 0; i < n; i++) {
        if (!paths[i]) return samda_fail(err, SAMDA_EINVAL, "loading a volume: path %zu is NULL", i);
        samda_status st = read_geometry(paths[i], i, p, files[i], frames, err);
        if (st != SAMDA_OK) return st;
    }
    return SAMDA_OK;
}

/* Every frame agrees with the first: one series, patient, kind of image, frame of reference, size,
 * photometric interpretation, orientation and pixel spacing. */
samda_status check_consistent(const std::vector<file_info> &files, const std::vector<frame_geo> &frames,
                              const samda_volume_params &p, samda_error *err)
{
    const frame_geo &f0 = frames[0];
    const samda_dicom_header &h0 = files[0].h;
    const std::string first_who = who(h0);
    for (const frame_geo &g : frames) {
        const samda_dicom_header &h = files[g.file].h;
        if (std::strcmp(h.series_instance_uid, h0.series_instance_uid) != 0)
            return samda_fail(err, SAMDA_EBADDICOM, "(0020,000E) SeriesInstanceUID differs: %s belongs to another "
                              "series than %s", who(h).c_str(), first_who.c_str());
        if (std::strcmp(h.patient_id, h0.patient_id) != 0)
            return samda_fail(err, SAMDA_EBADDICOM, "(0010,0020) PatientID differs between %s and %s: a series of "
                              "two patients is not segmented", who(h).c_str(), first_who.c_str());
        if (std::strcmp(h.sop_class_uid, h0.sop_class_uid) != 0 || std::strcmp(h.modality, h0.modality) != 0)
            return samda_fail(err, SAMDA_EBADDICOM, "(0008,0016) SOPClassUID or (0008,0060) Modality differs: %s is "
                              "%s %s, %s is %s %s", who(h).c_str(), h.modality, h.sop_class_uid, first_who.c_str(),
                              h0.modality, h0.sop_class_uid);
        if (std::strcmp(h.frame_of_reference_uid, h0.frame_of_reference_uid) != 0)
            return samda_fail(err, SAMDA_EBADDICOM, "(0020,0052) FrameOfReferenceUID differs between %s and %s",
                              who(h).c_str(), first_who.c_str());
        if (h.rows != h0.rows || h.columns != h0.columns)
            return samda_fail(err, SAMDA_EBADDICOM, "(0028,0010) Rows and (0028,0011) Columns differ: %s is %ux%u, %s "
                              "is %ux%u (rows x columns)", who(h).c_str(), h.rows, h.columns, first_who.c_str(), h0.rows,
                              h0.columns);
        if (std::strcmp(h.photometric_interpretation, h0.photometric_interpretation) != 0)
            return samda_fail(err, SAMDA_EBADDICOM, "(0028,0004) PhotometricInterpretation differs: %s is %s, %s is %s",
                              who(h).c_str(), h.photometric_interpretation, first_who.c_str(),
                              h0.photometric_interpretation);
        double dmax = 0;
        for (int k = 0; k < 6; k++) dmax = std::max(dmax, std::fabs(g.orientation[k] - f0.orientation[k]));
        if (g.has_orientation != f0.has_orientation || dmax > p.orientation_tolerance)
            return samda_fail(err, SAMDA_EBADDICOM,
                              "(0020,0037) ImageOrientationPatient differs by %.3g (tolerance %.3g) between %s and %s: "
                              "a series must have one orientation", dmax, p.orientation_tolerance,
                              who_frame(h, g.frame).c_str(), first_who.c_str());
        double sdev = std::max(std::fabs(g.spacing[0] - f0.spacing[0]), std::fabs(g.spacing[1] - f0.spacing[1]));
        if (g.has_spacing != f0.has_spacing || sdev > 1e-4 * std::max(1.0, f0.spacing[0]))
            return samda_fail(err, SAMDA_EBADDICOM, "(0028,0030) PixelSpacing differs: %s has %g\\%g, %s has %g\\%g",
                              who_frame(h, g.frame).c_str(), g.spacing[0], g.spacing[1], first_who.c_str(), f0.spacing[0],
                              f0.spacing[1]);
    }
    return SAMDA_OK;
}

/* The volume's size, orientation and slice normal (info), and each frame's location along the normal.
 * Without positions (one instance whose frames have none) there is no geometry, only frame order. */
samda_status orient(const std::vector<file_info> &files, std::vector<frame_geo> &frames, size_t n,
                    samda_volume_info &info, samda_error *err)
{
    const frame_geo &f0 = frames[0];
    const samda_dicom_header &h0 = files[0].h;
    info.n_slices = frames.size();
    info.rows = h0.rows;
    info.cols = h0.columns;
    info.has_geometry = true;
    /* One instance whose frames have no position of their own (a single image, a cine or a classic
     * multi-frame without functional groups): its frame order is the only order there is. */
    bool none_placed = n == 1;
    for (const frame_geo &g : frames) none_placed = none_placed && !g.has_position;
    for (const frame_geo &g : frames) {
        if (!g.has_position || !g.has_orientation) {
            if (none_placed) {
                info.has_geometry = false;
                break;
            }
            return samda_fail(err, SAMDA_EBADDICOM, "%s missing: several slices cannot be ordered without it (%s)",
                              g.has_position ? "(0020,0037) ImageOrientationPatient" : "(0020,0032) ImagePositionPatient",
                              who_frame(files[g.file].h, g.frame).c_str());
        }
    }
    double normal[3] = {0, 0, 1};
    if (info.has_geometry) {
        std::memcpy(info.orientation, f0.orientation, sizeof info.orientation);
        cross3(f0.orientation, f0.orientation + 3, normal);
        double len = std::sqrt(dot3(normal, normal));
        if (len < 0.5)
            return samda_fail(err, SAMDA_EBADDICOM,
                              "(0020,0037) ImageOrientationPatient %g\\%g\\%g\\%g\\%g\\%g is not two orthogonal unit "
                              "vectors (%s)", f0.orientation[0], f0.orientation[1], f0.orientation[2],
                              f0.orientation[3], f0.orientation[4], f0.orientation[5], who(h0).c_str());
        for (double &x : normal) x /= len;
    } else {
        const double ident[6] = {1, 0, 0, 0, 1, 0};
        std::memcpy(info.orientation, ident, sizeof ident);
    }
    std::memcpy(info.normal, normal, sizeof normal);
    for (frame_geo &g : frames) g.location = info.has_geometry ? dot3(g.position, normal) : 0.0;
    return SAMDA_OK;
}

/* The frames in slice order: along the normal, ties broken by file order then frame so the result is
 * deterministic (ties are refused by measure_gaps anyway). */
std::vector<size_t> slice_order(const std::vector<frame_geo> &frames)
{
    std::vector<size_t> order(frames.size());
    for (size_t i = 0; i < order.size(); i++) order[i] = i;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
        if (frames[a].location != frames[b].location) return frames[a].location < frames[b].location;
        if (frames[a].file != frames[b].file) return frames[a].file < frames[b].file;
        return frames[a].frame < frames[b].frame;
    });
    return order;
}

/* The gaps between neighbouring slices (none without geometry); duplicates refused. */
samda_status measure_gaps(const std::vector<file_info> &files, const std::vector<frame_geo> &frames,
                          const std::vector<size_t> &order, const samda_volume_params &p, const samda_volume_info &info,
                          std::vector<double> &gaps, samda_error *err)
{
    for (size_t i = 1; info.has_geometry && i < order.size(); i++) {
        const frame_geo &a = frames[order[i - 1]], &b = frames[order[i]];
        double gap = b.location - a.location;
        if (gap < p.duplicate_tolerance_mm)
            return samda_fail(err, SAMDA_EBADDICOM,
                              "duplicate slices at the same position (%.2g mm apart, at %.4f mm along the normal): %s "
                              "and %s", gap, a.location, who_frame(files[a.file].h, a.frame).c_str(),
                              who_frame(files[b.file].h, b.frame).c_str());
        gaps.push_back(gap);
    }
    return SAMDA_OK;
}

/* The slice spacing (the median gap, else SliceThickness) and how far the gaps stray from it;
 * uneven slices refused when the caller asks, slices too far apart always. */
samda_status measure_spacing(const std::vector<file_info> &files, const std::vector<frame_geo> &frames,
                             const std::vector<size_t> &order, const std::vector<double> &gaps,
                             const samda_volume_params &p, samda_volume_info &info, samda_error *err)
{
    const samda_dicom_header &h0 = files[0].h;
    info.is_uniform = true;
    if (gaps.empty()) {
        if (h0.has_slice_thickness) info.slice_spacing = h0.slice_thickness;
        return SAMDA_OK;
    }
    std::vector<double> s = gaps;
    std::nth_element(s.begin(), s.begin() + s.size() / 2, s.end());
    double med = s[s.size() / 2];
    if (s.size() % 2 == 0) {
        double lo = *std::max_element(s.begin(), s.begin() + s.size() / 2);
        med = (med + lo) / 2;
    }
    info.slice_spacing = med;
    size_t worst = 0;
    for (size_t i = 0; i < gaps.size(); i++) {
        double dev = std::fabs(gaps[i] - med);
        if (dev > info.max_spacing_deviation_mm) {
            info.max_spacing_deviation_mm = dev;
            worst = i;
        }
    }
    info.is_uniform = info.max_spacing_deviation_mm <= p.spacing_tolerance * med;
    if (!info.is_uniform && p.refuse_non_uniform) {
        const frame_geo &a = frames[order[worst]], &b = frames[order[worst + 1]];
        return samda_fail(err, SAMDA_EBADDICOM,
                          "slices are not evenly spaced: a gap of %.4f mm against a median of %.4f mm (tolerance "
                          "%.2g%%) between %s and %s", gaps[worst], med, p.spacing_tolerance * 100,
                          who_frame(files[a.file].h, a.frame).c_str(), who_frame(files[b.file].h, b.frame).c_str());
    }
    if (med > SAMDA_DICOM_MAX_SLICE_GAP_MM)
        return samda_fail(err, SAMDA_EBADDICOM,
                          "slices are %.4g mm apart (median): more than %g mm apart cannot form one volume (%s)",
                          med, SAMDA_DICOM_MAX_SLICE_GAP_MM, who(h0).c_str());
    return SAMDA_OK;
}

/* The rest of info: the largest in-plane offset between slices, pixel spacing, and what the first
 * instance says of the whole (photometric interpretation, UIDs, modality). */
void describe(const std::vector<file_info> &files, const std::vector<frame_geo> &frames,
              const std::vector<size_t> &order, samda_volume_info &info)
{
    const frame_geo &f0 = frames[0];
    const samda_dicom_header &h0 = files[0].h;
    const double *normal = info.normal;
    const frame_geo &first = frames[order[0]];
    for (size_t i : order) {
        double d[3] = {frames[i].position[0] - first.position[0], frames[i].position[1] - first.position[1],
                       frames[i].position[2] - first.position[2]};
        double along = dot3(d, normal);
        double off[3] = {d[0] - along * normal[0], d[1] - along * normal[1], d[2] - along * normal[2]};
        info.max_in_plane_offset_mm = std::max(info.max_in_plane_offset_mm, std::sqrt(dot3(off, off)));
    }
    info.has_pixel_spacing = f0.has_spacing;
    std::memcpy(info.pixel_spacing, f0.spacing, sizeof info.pixel_spacing);
    info.is_monochrome1 = std::strcmp(h0.photometric_interpretation, "MONOCHROME1") == 0;
    std::memcpy(info.frame_of_reference_uid, h0.frame_of_reference_uid, sizeof info.frame_of_reference_uid);
    std::memcpy(info.study_instance_uid, h0.study_instance_uid, sizeof info.study_instance_uid);
    std::memcpy(info.series_instance_uid, h0.series_instance_uid, sizeof info.series_instance_uid);
    std::memcpy(info.modality, h0.modality, sizeof info.modality);
}

/* v's slice table in slice order; slice_of_frame[i] is frame i's slice. */
void fill_slices(const std::vector<file_info> &files, const std::vector<frame_geo> &frames,
                 const std::vector<size_t> &order, samda_volume &v, std::vector<size_t> &slice_of_frame)
{
    for (size_t s = 0; s < order.size(); s++) {
        const frame_geo &g = frames[order[s]];
        const samda_dicom_header &h = files[g.file].h;
        slice_of_frame[order[s]] = s;
        samda_volume_slice &sl = v.slices[s];
        std::memcpy(sl.sop_instance_uid, h.sop_instance_uid, sizeof sl.sop_instance_uid);
        std::memcpy(sl.sop_class_uid, h.sop_class_uid, sizeof sl.sop_class_uid);
        sl.frame_number = g.frame;
        sl.has_instance_number = h.has_instance_number;
        sl.instance_number = h.instance_number;
        std::memcpy(sl.position, g.position, sizeof sl.position);
        sl.location_mm = g.location;
        sl.rescale_slope = g.slope;
        sl.rescale_intercept = g.intercept;
        sl.path_index = g.file;
    }
}

/* Pass 2: every file decoded into its slices, on a few threads (each file goes to disjoint slices;
 * DCMTK's decoders keep no per-call global state once registered). The failure reported is that of
 * the first failing file in input order, so that it does not depend on the threads' timing. */
samda_status decode_all(const char *const *paths, size_t n, const std::vector<file_info> &files,
                        const std::vector<frame_geo> &frames, const std::vector<size_t> &slice_of_frame,
                        samda_volume &v, size_t slice_voxels, samda_error *err)
{
    std::vector<std::vector<size_t>> frames_of_file(n);
    for (size_t i = 0; i < frames.size(); i++) frames_of_file[frames[i].file].push_back(i);
    unsigned hw = std::thread::hardware_concurrency();
    size_t n_threads = std::min<size_t>({n, hw ? hw : 1, 8});
    std::atomic<size_t> next(0);
    std::mutex fail_mutex;
    samda_status first_fail = SAMDA_OK;
    samda_error first_err{};
    size_t first_fail_file = (size_t)-1;
    auto worker = [&]() {
        dicom_guard_void([&] {
            for (;;) {
                size_t i = next.fetch_add(1);
                if (i >= n) return;
                samda_error e{};
                samda_status st = dicom_guard(&e, "loading a volume", SAMDA_EBADDICOM, [&] {
                    return decode_file(paths[i], files[i], slice_of_frame, frames, frames_of_file[i],
                                       v.voxels.data(), slice_voxels, &e);
                });
                if (st != SAMDA_OK) {
                    std::lock_guard<std::mutex> lock(fail_mutex);
                    /* Report the failure of the first file in input order: deterministic. */
                    if (i < first_fail_file) {
                        first_fail_file = i;
                        first_fail = st;
                        first_err = e;
                    }
                }
            }
        });
    };
    std::vector<std::thread> pool;
    for (size_t t = 1; t < n_threads; t++) pool.emplace_back(worker);
    worker();
    for (std::thread &t : pool) t.join();
    if (first_fail != SAMDA_OK && err) *err = first_err;
    return first_fail;
}

/* Slice 0's source: header struct and data set without its pixels (for the SEG writer's patient and
 * study copy), and the paths as given. */
samda_status keep_source(const char *const *paths, size_t n, const std::vector<file_info> &files, samda_volume &v,
                         samda_error *err)
{
    size_t f0i = v.slices[0].path_index;
    v.header = files[f0i].h;
    DcmFileFormat ff;
    OFCondition c = dicom_reopen::load_file(ff, paths[f0i], 4096, tag_pixel_data);
    if (c.bad()) return samda_fail(err, SAMDA_EIO, "rereading %s: %s (%s)", paths[f0i], c.text(), who(v.header).c_str());
    v.source_header.reset(new DcmDataset(*ff.getDataset()));
    v.source_header->findAndDeleteElement(DCM_PixelData);
    for (size_t i = 0; i < n; i++) v.paths.emplace_back(paths[i]);
    return SAMDA_OK;
}

samda_status load(const char *const *paths, size_t n, const samda_volume_params &p, samda_volume **out,
                  samda_error *err)
{
    std::vector<file_info> files(n);
    std::vector<frame_geo> frames;
    samda_volume_info info{};
    std::vector<size_t> order;
    std::vector<double> gaps;
    samda_status st = read_all_geometry(paths, n, p, files, frames, err);
    if (st == SAMDA_OK) st = check_consistent(files, frames, p, err);
    if (st == SAMDA_OK) st = orient(files, frames, n, info, err);
    if (st == SAMDA_OK) order = slice_order(frames);
    if (st == SAMDA_OK) st = measure_gaps(files, frames, order, p, info, gaps, err);
    if (st == SAMDA_OK) st = measure_spacing(files, frames, order, gaps, p, info, err);
    if (st != SAMDA_OK) return st;
    describe(files, frames, order, info);

    size_t slice_voxels = (size_t)info.rows * info.cols;
    uint64_t total = (uint64_t)slice_voxels * info.n_slices;
    if (total > p.max_voxels)
        return samda_fail(err, SAMDA_ETOOBIG,
                          "%zu slices of %ux%u are %llu voxels, more than max_voxels %llu",
                          info.n_slices, info.rows, info.cols, (unsigned long long)total,
                          (unsigned long long)p.max_voxels);
    std::unique_ptr<samda_volume> v(new samda_volume);
    v->voxels.resize(total);
    v->slices.resize(info.n_slices);
    std::vector<size_t> slice_of_frame(frames.size());
    fill_slices(files, frames, order, *v, slice_of_frame);
    if ((st = decode_all(paths, n, files, frames, slice_of_frame, *v, slice_voxels, err)) != SAMDA_OK) return st;
    if ((st = keep_source(paths, n, files, *v, err)) != SAMDA_OK) return st;
    v->info = info;
    *out = v.release();
    return SAMDA_OK;
}

} // namespace

extern "C" void samda_volume_params_init(samda_volume_params *p)
{
    if (!p) return;
    std::memset(p, 0, sizeof *p);
    p->orientation_tolerance = 1e-4;
    p->duplicate_tolerance_mm = 0.001;
    p->spacing_tolerance = 0.05;
    p->refuse_non_uniform = false;
    p->max_voxels = (uint64_t)1 << 30;
}

extern "C" samda_status samda_dicom_volume_load(const char *const *paths, size_t n, const samda_volume_params *p,
                                                samda_volume **out, samda_error *err)
{
    if (out) *out = nullptr;
    if (!paths || n == 0 || !out)
        return samda_fail(err, SAMDA_EINVAL, "loading a volume: %s", !out ? "no output" : "no files given");
    samda_volume_params defaults;
    samda_volume_params_init(&defaults);
    const samda_volume_params &params = p ? *p : defaults;
    return dicom_guard(err, "loading a volume", SAMDA_EBADDICOM,
                       [&]() -> samda_status { return load(paths, n, params, out, err); });
}

extern "C" const samda_volume_info *samda_volume_get_info(const samda_volume *v) { return v ? &v->info : nullptr; }

extern "C" const float *samda_volume_voxels(const samda_volume *v) { return v ? v->voxels.data() : nullptr; }

extern "C" const samda_volume_slice *samda_volume_slice_get(const samda_volume *v, size_t i)
{
    return v && i < v->slices.size() ? &v->slices[i] : nullptr;
}

extern "C" const samda_dicom_header *samda_volume_source_header(const samda_volume *v)
{
    return v ? &v->header : nullptr;
}

extern "C" void samda_volume_free(samda_volume *v) { dicom_guard_void([&] { delete v; }); }
