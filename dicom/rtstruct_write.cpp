/* RT Structure Set writer: binary masks over a loaded source volume as one RT Structure Set
 * instance (PS3.3 A.19), one ROI per mask, its contours traced per slice (contour.c) and placed in
 * patient coordinates, written with dcmdata and crash-safely (atomic_write).
 *
 * It writes only CLOSED_PLANAR contours on source slices (no interpolation between slices, no
 * points, no dose); it does not read structure sets back. */
#include <cstring>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcuid.h>

#include "atomic_write.h"
#include "derived.h"
#include "dicom.h"
#include "ds_value.h"
#include "guard.h"
#include "volume_internal.h"

#ifndef SAMDA_VERSION
#define SAMDA_VERSION "0.0.0"
#endif

namespace {

/* PS3.3 C.8.8.5: the study is referenced through the (retired) Detached Study Management class. */
const char *const STUDY_REFERENCE_CLASS = "1.2.840.10008.3.1.2.3.1";

struct rt_job {
    const samda_volume &v;
    const samda_rtstruct_params &p;
    std::string series_uid, sop_uid;
    samda_rtstruct_result res{};
};

std::string str(const char *s, const char *dflt = "") { return s && *s ? s : dflt; }

/* StructureSetLabel is SH: 1-16 characters, no backslash or control character. */
bool is_sh(const std::string &s)
{
    if (s.empty() || s.size() > 16) return false;
    for (unsigned char c : s)
        if (c < 0x20 || c == '\\') return false;
    return true;
}

samda_status check(const samda_volume &v, const samda_rtstruct_params &p, const samda_rtstruct_roi *rois, size_t n,
                   samda_error *err)
{
    if (!v.info.has_geometry || !v.source_header)
        return samda_fail(err, SAMDA_EINVAL, "the source volume has no geometry (ImagePositionPatient/"
                          "ImageOrientationPatient): contours cannot be placed");
    if (!v.info.frame_of_reference_uid[0])
        return samda_fail(err, SAMDA_EINVAL, "the source has no (0020,0052) FrameOfReferenceUID for the contours");
    if (!is_sh(str(p.label, "SAMDA")))
        return samda_fail(err, SAMDA_EINVAL, "structure set label \"%.40s\" must be 1-16 characters (SH)", p.label);
    if (!rois || n == 0) return samda_fail(err, SAMDA_EINVAL, "no ROI to write");
    for (size_t i = 0; i < n; i++) {
        const samda_rtstruct_roi &r = rois[i];
        if (!r.name || !*r.name || !r.mask) return samda_fail(err, SAMDA_EINVAL, "ROI %zu: no %s", i + 1, r.mask ? "name" : "mask");
        if (!derived_code_ok(r.category) || !derived_code_ok(r.type))
            return samda_fail(err, SAMDA_EINVAL, "ROI \"%.64s\": %s code needs value, scheme and meaning", r.name,
                              derived_code_ok(r.category) ? "type" : "category");
        if (r.type_modifier.value && *r.type_modifier.value && !derived_code_ok(r.type_modifier))
            return samda_fail(err, SAMDA_EINVAL, "ROI \"%.64s\": type modifier needs value, scheme and meaning", r.name);
    }
    return SAMDA_OK;
}

void put_image_ref(DcmItem &parent, const samda_volume_slice &s)
{
    DcmItem &it = derived_new_item(parent, DCM_ContourImageSequence);
    derived_put(it, DCM_ReferencedSOPClassUID, s.sop_class_uid);
    derived_put(it, DCM_ReferencedSOPInstanceUID, s.sop_instance_uid);
    if (s.frame_number > 0) derived_put(it, DCM_ReferencedFrameNumber, std::to_string(s.frame_number));
}

/* RT Series, SOP Common, Structure Set header (PS3.3 C.8.8.1, C.8.8.5, C.12.1). */
void write_header(DcmDataset &ds, const rt_job &j)
{
    derived_copy_patient_study(ds, *j.v.source_header);
    derived_put(ds, DCM_SOPClassUID, UID_RTStructureSetStorage);
    derived_put(ds, DCM_SOPInstanceUID, j.sop_uid);
    derived_put(ds, DCM_Modality, "RTSTRUCT");
    derived_put(ds, DCM_SeriesInstanceUID, j.series_uid);
    derived_put(ds, DCM_SeriesNumber, std::to_string(j.p.series_number));
    derived_put(ds, DCM_SeriesDescription, str(j.p.series_description, "RT Structure Set (samda)"));
    derived_put(ds, DCM_OperatorsName, "");
    derived_put(ds, DCM_InstanceNumber, std::to_string(j.p.instance_number));
    /* Frame of Reference module (PS3.3 A.19.3, C.7.4.1): the source's. */
    derived_put(ds, DCM_FrameOfReferenceUID, j.v.info.frame_of_reference_uid);
    OFString pri;
    j.v.source_header->findAndGetOFString(DCM_PositionReferenceIndicator, pri);
    derived_put(ds, DCM_PositionReferenceIndicator, pri.c_str());
    derived_put_equipment_and_dates(ds, str(j.p.software_version, SAMDA_VERSION));
    derived_put(ds, DCM_StructureSetLabel, str(j.p.label, "SAMDA"));
    if (j.p.description && *j.p.description) derived_put(ds, DCM_StructureSetDescription, j.p.description);
    derived_put(ds, DCM_StructureSetDate, derived_date_now());
    derived_put(ds, DCM_StructureSetTime, derived_time_now());
    derived_put(ds, DCM_ApprovalStatus, "UNAPPROVED");
}

/* Referenced Frame of Reference: the source's frame, study, series and every slice (C.8.8.5). */
void write_references(DcmDataset &ds, const rt_job &j)
{
    const samda_volume_info &in = j.v.info;
    DcmItem &frame = derived_new_item(ds, DCM_ReferencedFrameOfReferenceSequence);
    derived_put(frame, DCM_FrameOfReferenceUID, in.frame_of_reference_uid);
    DcmItem &study = derived_new_item(frame, DCM_RTReferencedStudySequence);
    derived_put(study, DCM_ReferencedSOPClassUID, STUDY_REFERENCE_CLASS);
    derived_put(study, DCM_ReferencedSOPInstanceUID, in.study_instance_uid);
    DcmItem &series = derived_new_item(study, DCM_RTReferencedSeriesSequence);
    derived_put(series, DCM_SeriesInstanceUID, in.series_instance_uid);
    std::set<std::string> seen;
    for (const samda_volume_slice &s : j.v.slices)
        if (s.frame_number > 0 || seen.insert(s.sop_instance_uid).second) put_image_ref(series, s);
}

/* The polygons of one slice, in patient coordinates (PS3.3 C.7.6.2.1.1: P = S + x Δc X + y Δr Y). */
void write_slice_contours(DcmItem &roi_contour, const rt_job &j, size_t slice, const samda_contour_set &cs,
                          samda_rtstruct_result &res)
{
    const samda_volume_info &in = j.v.info;
    const samda_volume_slice &s = j.v.slices[slice];
    const double *o = in.orientation, dc = in.pixel_spacing[1], dr = in.pixel_spacing[0];
    for (size_t k = 0; k < cs.n_contours; k++) {
        DcmItem &c = derived_new_item(roi_contour, DCM_ContourSequence);
        put_image_ref(c, s);
        derived_put(c, DCM_ContourGeometricType, "CLOSED_PLANAR");
        derived_put(c, DCM_NumberOfContourPoints, std::to_string(cs.count[k]));
        derived_put(c, DCM_ContourNumber, std::to_string(res.n_contours + 1));
        std::string data;
        data.reserve(cs.count[k] * 3 * 12);
        for (size_t i = 0; i < cs.count[k]; i++) {
            const double x = cs.xy[2 * (cs.first[k] + i)], y = cs.xy[2 * (cs.first[k] + i) + 1];
            for (int a = 0; a < 3; a++) {
                if (i || a) data += '\\';
                data += dicom_ds_value(s.position[a] + x * dc * o[a] + y * dr * o[3 + a]);
            }
        }
        derived_put(c, DCM_ContourData, data);
        res.n_contours++;
        res.n_points += cs.count[k];
    }
}

void write_contours(DcmItem &roi_contour, const rt_job &j, const uint8_t *mask, samda_rtstruct_result &res)
{
    const samda_volume_info &in = j.v.info;
    const size_t plane = (size_t)in.rows * in.cols;
    for (size_t s = 0; s < in.n_slices; s++) {
        samda_contour_set cs;
        samda_error e;
        if (samda_contour_trace(mask + s * plane, in.rows, in.cols, &cs, &e) != SAMDA_OK)
            throw std::bad_alloc(); /* the only failure with valid arguments */
        std::unique_ptr<samda_contour_set, void (*)(samda_contour_set *)> hold(&cs, samda_contour_set_clear);
        write_slice_contours(roi_contour, j, s, cs, res);
    }
}

/* One ROI in the three sequences that describe it (C.8.8.5, C.8.8.6, C.8.8.8). */
void write_roi(DcmDataset &ds, const rt_job &j, size_t index, const samda_rtstruct_roi &r, samda_rtstruct_result &res)
{
    const std::string number = std::to_string(index + 1);
    DcmItem &ss = derived_new_item(ds, DCM_StructureSetROISequence);
    derived_put(ss, DCM_ROINumber, number);
    derived_put(ss, DCM_ReferencedFrameOfReferenceUID, j.v.info.frame_of_reference_uid);
    derived_put(ss, DCM_ROIName, r.name);
    derived_put(ss, DCM_ROIGenerationAlgorithm, "AUTOMATIC");
    derived_put(ss, DCM_ROIGenerationDescription, str(r.algorithm_name, "samda"));

    DcmItem &rc = derived_new_item(ds, DCM_ROIContourSequence);
    derived_put(rc, DCM_ReferencedROINumber, number);
    static const uint8_t red[3] = {255, 0, 0};
    const uint8_t *rgb = r.has_color ? r.rgb : red;
    derived_put(rc, DCM_ROIDisplayColor, std::to_string(rgb[0]) + "\\" + std::to_string(rgb[1]) + "\\" +
                                             std::to_string(rgb[2]));
    write_contours(rc, j, r.mask, res);

    DcmItem &ob = derived_new_item(ds, DCM_RTROIObservationsSequence);
    derived_put(ob, DCM_ObservationNumber, number);
    derived_put(ob, DCM_ReferencedROINumber, number);
    derived_put(ob, DCM_ROIObservationLabel, std::string(r.name).substr(0, 16));
    derived_put_code(ob, DCM_SegmentedPropertyCategoryCodeSequence, r.category);
    DcmItem &type = derived_put_code(ob, DCM_RTROIIdentificationCodeSequence, r.type);
    if (r.type_modifier.value && *r.type_modifier.value)
        derived_put_code(type, DCM_SegmentedPropertyTypeModifierCodeSequence, r.type_modifier);
    derived_put(ob, DCM_RTROIInterpretedType, "");
    derived_put(ob, DCM_ROIInterpreter, "");
}

samda_status write(const samda_volume &v, const samda_rtstruct_params &p, const samda_rtstruct_roi *rois, size_t n,
                   const char *path, samda_rtstruct_result *out, samda_error *err)
{
    samda_status st = check(v, p, rois, n, err);
    if (st != SAMDA_OK) return st;
    rt_job j{v, p, {}, {}, {}};
    if ((st = derived_uid(p.series_instance_uid, p.uid_root, "SeriesInstanceUID", j.series_uid, err)) != SAMDA_OK ||
        (st = derived_uid(p.sop_instance_uid, p.uid_root, "SOPInstanceUID", j.sop_uid, err)) != SAMDA_OK)
        return st;
    DcmFileFormat ff;
    DcmDataset &ds = *ff.getDataset();
    write_header(ds, j);
    write_references(ds, j);
    for (size_t i = 0; i < n; i++) write_roi(ds, j, i, rois[i], j.res);
    if ((st = dicom_save_atomic(ff, path, EXS_LittleEndianExplicit, err)) != SAMDA_OK) return st;
    j.res.n_rois = (unsigned)n;
    std::snprintf(j.res.sop_instance_uid, sizeof j.res.sop_instance_uid, "%s", j.sop_uid.c_str());
    std::snprintf(j.res.series_instance_uid, sizeof j.res.series_instance_uid, "%s", j.series_uid.c_str());
    if (out) *out = j.res;
    return SAMDA_OK;
}

} // namespace

extern "C" void samda_rtstruct_params_init(samda_rtstruct_params *p)
{
    if (!p) return;
    std::memset(p, 0, sizeof *p);
    p->series_number = 998;
    p->instance_number = 1;
}

extern "C" void samda_rtstruct_roi_init(samda_rtstruct_roi *r)
{
    if (!r) return;
    std::memset(r, 0, sizeof *r);
    r->category = samda_seg_code{"85756007", "SCT", "Tissue"};
}

extern "C" samda_status samda_rtstruct_write(const samda_volume *source, const samda_rtstruct_params *p,
                                             const samda_rtstruct_roi *rois, size_t n_rois, const char *path,
                                             samda_rtstruct_result *out, samda_error *err)
{
    if (out) std::memset(out, 0, sizeof *out);
    if (!source || !path)
        return samda_fail(err, SAMDA_EINVAL, "writing an RT Structure Set: no %s", source ? "path" : "source volume");
    samda_rtstruct_params defaults;
    samda_rtstruct_params_init(&defaults);
    samda_status st = dicom_guard(err, "writing an RT Structure Set", SAMDA_EINTERNAL, [&]() -> samda_status {
        return write(*source, p ? *p : defaults, rois, n_rois, path, out, err);
    });
    if (st != SAMDA_OK && std::strncmp(err ? err->message : "", "writing an RT", 13) != 0)
        samda_error_prefix(err, "writing an RT Structure Set: ");
    return st;
}
