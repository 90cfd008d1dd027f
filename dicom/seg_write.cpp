/* DICOM-SEG writer: binary masks over a loaded source volume as one BINARY Segmentation instance
 * (PS3.3 A.51), built with DCMTK's dcmseg, then completed with what dcmseg 3.6.7 does not model
 * (Common Instance Reference, Contributing Equipment) and written crash-safely.
 *
 * It does not resample: every frame lies on a source slice, so masks must be on the source grid.
 * It does not read SEGs (seg_read.cpp) or send them anywhere. */
#include <cmath>
#include <cstring>
#include <ctime>
#include <map>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcsequen.h>
#include <dcmtk/dcmdata/dcstack.h>
#include <dcmtk/dcmfg/fgderimg.h>
#include <dcmtk/dcmfg/fgfracon.h>
#include <dcmtk/dcmfg/fgpixmsr.h>
#include <dcmtk/dcmfg/fgplanor.h>
#include <dcmtk/dcmfg/fgplanpo.h>
#include <dcmtk/dcmiod/cielabutil.h>
#include <dcmtk/dcmiod/iodmacro.h>
#include <dcmtk/dcmseg/segdoc.h>
#include <dcmtk/dcmseg/segment.h>

#include "atomic_write.h"
#include "derived.h"
#include "dicom.h"
#include "ds_value.h"
#include "guard.h"
#include "volume_internal.h"

#ifndef SAMDA_VERSION
#define SAMDA_VERSION "0.0.0"
#endif

struct samda_seg_writer {
    const samda_volume *src = nullptr;
    std::unique_ptr<DcmSegmentation> seg;
    std::string series_uid, sop_uid;
    std::string software_version, serial;
    samda_seg_empty_policy empty_policy = SAMDA_SEG_EMPTY_KEEP_ONE_FRAME;
    unsigned n_segments = 0, n_empty_kept = 0, n_empty_skipped = 0;
    size_t n_frames = 0;
    std::vector<std::string> algorithms; /* "name version", for Contributing Equipment */
    bool is_broken = false;              /* dcmseg refused a step: the object may be half-changed */
    /* Source UIDs that DCMTK's VR check refuses (a component with a leading zero, which samda
     * accepts at intake) stand in dcmseg's object as new conformant placeholders, and are put back
     * when the data set is written: placeholder -> the source's UID, and the reverse. */
    std::map<std::string, std::string> placeholder_to_uid, uid_to_placeholder;
};

namespace {

std::string str(const char *s, const char *dflt = "") { return s && *s ? s : dflt; }

/* PS3.5 9.1 to the letter: no component with a leading zero (samda_dicom_uid_is_valid() is lenient). */
bool uid_is_strict(const char *uid)
{
    for (const char *p = uid; *p; p++)
        if (*p == '0' && (p == uid || p[-1] == '.') && p[1] >= '0' && p[1] <= '9') return false;
    return true;
}

/* The UID to give dcmseg for a source UID (see samda_seg_writer::placeholder_to_uid). */
std::string ref_uid(samda_seg_writer &w, const char *uid)
{
    if (uid_is_strict(uid)) return uid;
    auto it = w.uid_to_placeholder.find(uid);
    if (it != w.uid_to_placeholder.end()) return it->second;
    char buf[SAMDA_DICOM_UID_SIZE];
    samda_error e;
    if (samda_dicom_uid_generate(buf, nullptr, &e) != SAMDA_OK) throw std::runtime_error(e.message);
    w.uid_to_placeholder[uid] = buf;
    w.placeholder_to_uid[buf] = uid;
    return buf;
}

/* Every UI value of ds that is a placeholder becomes the source UID it stands for. */
void restore_placeholders(DcmDataset &ds, const samda_seg_writer &w)
{
    if (w.placeholder_to_uid.empty()) return;
    DcmStack stack;
    while (ds.nextObject(stack, OFTrue).good()) {
        DcmObject *o = stack.top();
        if (o->ident() != EVR_UI) continue;
        DcmElement *el = OFstatic_cast(DcmElement *, o);
        OFString v;
        if (el->getOFString(v, 0).bad()) continue;
        auto it = w.placeholder_to_uid.find(v.c_str());
        if (it != w.placeholder_to_uid.end() && el->putString(it->second.c_str()).bad())
            throw std::runtime_error("restoring source UID " + it->second);
    }
}

samda_status cond_fail(samda_error *err, const char *what, const OFCondition &c)
{
    return samda_fail(err, SAMDA_EINTERNAL, "writing a DICOM-SEG: %s: %s", what, c.text());
}

samda_status uid_param(const char *given, const char *root, const char *what, std::string &out, samda_error *err)
{
    samda_status st = derived_uid(given, root, what, out, err);
    if (st == SAMDA_EBADUID) samda_error_prefix(err, "writing a DICOM-SEG: ");
    return st;
}

/* ContentLabel is CS (PS3.5 6.2): upper case, digits, space, underscore; at most 16. */
bool is_cs(const std::string &s)
{
    if (s.empty() || s.size() > 16) return false;
    for (char c : s)
        if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == ' ' || c == '_')) return false;
    return true;
}

bool code_ok(const samda_seg_code &c) { return c.value && *c.value && c.scheme && *c.scheme && c.meaning && *c.meaning; }

void put_str(DcmItem &it, const DcmTagKey &tag, const std::string &v)
{
    OFCondition c = it.putAndInsertString(tag, v.c_str());
    if (c.bad()) throw std::runtime_error(std::string("setting ") + DcmTag(tag).getTagName() + ": " + c.text());
}

void put_code(DcmItem &parent, const DcmTagKey &seq, const char *value, const char *scheme, const char *meaning)
{
    DcmItem *it = nullptr;
    if (parent.findOrCreateSequenceItem(seq, it, -2).bad() || !it)
        throw std::runtime_error(std::string("creating ") + DcmTag(seq).getTagName());
    put_str(*it, DCM_CodeValue, value);
    put_str(*it, DCM_CodingSchemeDesignator, scheme);
    put_str(*it, DCM_CodeMeaning, meaning);
}

/* PS3.3 C.12.2 Common Instance Reference: every source instance, once. */
void write_common_instance_reference(DcmDataset &ds, const samda_volume &v)
{
    ds.findAndDeleteElement(DCM_ReferencedSeriesSequence);
    DcmItem *series = nullptr;
    if (ds.findOrCreateSequenceItem(DCM_ReferencedSeriesSequence, series, -2).bad() || !series)
        throw std::runtime_error("creating ReferencedSeriesSequence");
    put_str(*series, DCM_SeriesInstanceUID, v.info.series_instance_uid);
    std::set<std::string> seen;
    for (const samda_volume_slice &s : v.slices) {
        if (!seen.insert(s.sop_instance_uid).second) continue;
        DcmItem *inst = nullptr;
        if (series->findOrCreateSequenceItem(DCM_ReferencedInstanceSequence, inst, -2).bad() || !inst)
            throw std::runtime_error("creating ReferencedInstanceSequence");
        put_str(*inst, DCM_ReferencedSOPClassUID, s.sop_class_uid);
        put_str(*inst, DCM_ReferencedSOPInstanceUID, s.sop_instance_uid);
    }
}

/* PS3.3 C.7.5.1 Contributing Equipment: the source's acquisition equipment (the SEG's own General
 * Equipment must describe samda, PS3.3 C.7.5.2) and samda as the processing equipment, with the
 * versions of the algorithms that made the segments. */
void write_contributing_equipment(DcmDataset &ds, const samda_seg_writer &w)
{
    ds.findAndDeleteElement(DCM_ContributingEquipmentSequence);
    DcmDataset &src = *w.src->source_header;
    OFString manufacturer;
    src.findAndGetOFString(DCM_Manufacturer, manufacturer);
    if (!manufacturer.empty()) {
        DcmItem *it = nullptr;
        if (ds.findOrCreateSequenceItem(DCM_ContributingEquipmentSequence, it, -2).bad() || !it)
            throw std::runtime_error("creating ContributingEquipmentSequence");
        put_code(*it, DCM_PurposeOfReferenceCodeSequence, "109101", "DCM", "Acquisition Equipment");
        put_str(*it, DCM_Manufacturer, manufacturer.c_str());
        static const DcmTagKey copied[] = {DCM_InstitutionName, DCM_ManufacturerModelName, DCM_DeviceSerialNumber,
                                           DCM_SoftwareVersions};
        for (const DcmTagKey &t : copied) {
            OFString v;
            if (src.findAndGetOFStringArray(t, v).good() && !v.empty()) put_str(*it, t, v.c_str());
        }
    }
    DcmItem *it = nullptr;
    if (ds.findOrCreateSequenceItem(DCM_ContributingEquipmentSequence, it, -2).bad() || !it)
        throw std::runtime_error("creating ContributingEquipmentSequence");
    put_code(*it, DCM_PurposeOfReferenceCodeSequence, "109102", "DCM", "Processing Equipment");
    put_str(*it, DCM_Manufacturer, "samda");
    put_str(*it, DCM_ManufacturerModelName, "samda");
    std::string versions = "samda " + w.software_version;
    for (const std::string &a : w.algorithms) versions += "\\" + a;
    put_str(*it, DCM_SoftwareVersions, versions);
    char dt[32];
    std::time_t now = std::time(nullptr);
    std::tm local{};
    localtime_r(&now, &local);
    std::strftime(dt, sizeof dt, "%Y%m%d%H%M%S", &local);
    put_str(*it, DCM_ContributionDateTime, dt);
    put_str(*it, DCM_ContributionDescription, "Segmentation");
}

samda_status make_writer(const samda_volume *src, const samda_seg_params &p, samda_seg_writer **out, samda_error *err)
{
    const samda_volume_info &in = src->info;
    if (!in.has_geometry || !src->source_header)
        return samda_fail(err, SAMDA_EINVAL,
                          "writing a DICOM-SEG: the source volume has no geometry (ImagePositionPatient/"
                          "ImageOrientationPatient), so frames cannot be placed");
    if (in.rows > 65535 || in.cols > 65535)
        return samda_fail(err, SAMDA_EINVAL, "writing a DICOM-SEG: %ux%u frames exceed 65535", in.rows, in.cols);
    std::string label = str(p.content_label, "SEGMENTATION");
    if (!is_cs(label))
        return samda_fail(err, SAMDA_EINVAL,
                          "writing a DICOM-SEG: content label \"%.40s\" must be 1-16 of A-Z, 0-9, space, _", label.c_str());
    std::unique_ptr<samda_seg_writer> w(new samda_seg_writer);
    w->src = src;
    w->empty_policy = p.empty_segment;
    w->software_version = str(p.software_version, SAMDA_VERSION);
    w->serial = str(p.device_serial_number, "0");
    samda_status st;
    if ((st = uid_param(p.series_instance_uid, p.uid_root, "SeriesInstanceUID", w->series_uid, err)) ||
        (st = uid_param(p.sop_instance_uid, p.uid_root, "SOPInstanceUID", w->sop_uid, err)))
        return st;

    IODGeneralEquipmentModule::EquipmentInfo eq("samda", "samda", w->serial.c_str(), w->software_version.c_str());
    ContentIdentificationMacro ci(std::to_string(p.instance_number).c_str(), label.c_str(),
                                  str(p.content_description).c_str(), str(p.content_creator_name, "samda^").c_str());
    DcmSegmentation *raw = nullptr;
    OFCondition c = DcmSegmentation::createBinarySegmentation(raw, (Uint16)in.rows, (Uint16)in.cols, eq, ci);
    if (c.bad() || !raw) return cond_fail(err, "creating the segmentation", c);
    w->seg.reset(raw);
    DcmSegmentation &seg = *w->seg;
    /* Patient, General Study, Patient Study, Frame of Reference (and the character set) from the
     * source: the SEG joins the source's study and frame of reference. */
    DcmDataset copy(*src->source_header);
    if ((c = seg.importFromSourceImage(copy, OFTrue)).bad()) return cond_fail(err, "copying patient and study", c);
    const samda_volume_info &vi = src->info;
    if (!uid_is_strict(vi.study_instance_uid) &&
        (c = seg.getStudy().setStudyInstanceUID(ref_uid(*w, vi.study_instance_uid))).bad())
        return cond_fail(err, "copying the study", c);
    if (vi.frame_of_reference_uid[0] && !uid_is_strict(vi.frame_of_reference_uid) &&
        (c = seg.getFrameOfReference().setFrameOfReferenceUID(ref_uid(*w, vi.frame_of_reference_uid))).bad())
        return cond_fail(err, "copying the frame of reference", c);
    if ((c = seg.getSeries().setSeriesInstanceUID(w->series_uid.c_str())).bad() ||
        (c = seg.getSeries().setSeriesNumber(std::to_string(p.series_number).c_str())).bad() ||
        (c = seg.getSeries().setSeriesDescription(str(p.series_description, "Segmentation (samda)").c_str(), OFFalse))
            .bad() ||
        (c = seg.getSOPCommon().setSOPInstanceUID(w->sop_uid.c_str())).bad())
        return cond_fail(err, "setting the series", c);

    /* Shared functional groups: every frame lies on the source grid. */
    FGPixelMeasures pm;
    std::string spacing = dicom_ds_multi(in.pixel_spacing, 2);
    const samda_dicom_header &h = src->header;
    double thickness = h.has_slice_thickness && h.slice_thickness > 0 ? h.slice_thickness
                       : in.slice_spacing > 0                          ? in.slice_spacing
                                                                       : 1.0;
    if ((c = pm.setPixelSpacing(spacing.c_str())).bad() ||
        (c = pm.setSliceThickness(dicom_ds_value(thickness).c_str())).bad())
        return cond_fail(err, "pixel measures", c);
    if (in.slice_spacing > 0 && (c = pm.setSpacingBetweenSlices(dicom_ds_value(in.slice_spacing).c_str())).bad())
        return cond_fail(err, "pixel measures", c);
    if ((c = seg.addForAllFrames(pm)).bad()) return cond_fail(err, "pixel measures", c);
    const double *o = in.orientation;
    std::unique_ptr<FGPlaneOrientationPatient> po(FGPlaneOrientationPatient::createMinimal(
        dicom_ds_value(o[0]).c_str(), dicom_ds_value(o[1]).c_str(), dicom_ds_value(o[2]).c_str(),
        dicom_ds_value(o[3]).c_str(), dicom_ds_value(o[4]).c_str(), dicom_ds_value(o[5]).c_str()));
    if (!po) return samda_fail(err, SAMDA_EINTERNAL, "writing a DICOM-SEG: plane orientation refused");
    if ((c = seg.addForAllFrames(*po)).bad()) return cond_fail(err, "plane orientation", c);

    /* Dimensions as dcmqi writes them: segment, then position (PS3.3 C.7.6.17). */
    char dim_uid[SAMDA_DICOM_UID_SIZE];
    if ((st = samda_dicom_uid_generate(dim_uid, p.uid_root, err)) != SAMDA_OK) return st;
    IODMultiframeDimensionModule &dims = seg.getDimensions();
    if ((c = dims.addDimensionIndex(DCM_ReferencedSegmentNumber, dim_uid, DCM_SegmentIdentificationSequence,
                                    "ReferencedSegmentNumber")).bad() ||
        (c = dims.addDimensionIndex(DCM_ImagePositionPatient, dim_uid, DCM_PlanePositionSequence,
                                    "ImagePositionPatient")).bad())
        return cond_fail(err, "dimensions", c);
    *out = w.release();
    return SAMDA_OK;
}

samda_status add_frame(samda_seg_writer &w, Uint16 number, size_t slice, Uint8 *pixels, samda_error *err)
{
    const samda_volume_slice &s = w.src->slices[slice];
    std::unique_ptr<FGPlanePosPatient> pos(FGPlanePosPatient::createMinimal(
        dicom_ds_value(s.position[0]).c_str(), dicom_ds_value(s.position[1]).c_str(),
        dicom_ds_value(s.position[2]).c_str()));
    if (!pos) return samda_fail(err, SAMDA_EINTERNAL, "writing a DICOM-SEG: plane position refused");
    FGFrameContent fc;
    OFCondition c;
    if ((c = fc.setDimensionIndexValues(number, 0)).bad() || (c = fc.setDimensionIndexValues((Uint32)slice + 1, 1)).bad())
        return cond_fail(err, "dimension index values", c);
    OFVector<ImageSOPInstanceReferenceMacro> refs(1);
    ImageSOPInstanceReferenceMacro &ref = refs[0];
    /* The source's UIDs exactly as the PACS has them (through a placeholder where DCMTK's check
     * refuses them): a corrected UID would reference an instance that does not exist. */
    if ((c = ref.setReferencedSOPClassUID(ref_uid(w, s.sop_class_uid))).bad() ||
        (c = ref.setReferencedSOPInstanceUID(ref_uid(w, s.sop_instance_uid))).bad())
        return cond_fail(err, "source reference", c);
    /* A frame of an enhanced source: name the frame (PS3.3 C.10.8). */
    if (s.frame_number > 0 && (c = ref.addReferencedFrameNumber((Uint16)s.frame_number)).bad())
        return cond_fail(err, "source frame reference", c);
    std::unique_ptr<FGDerivationImage> der(FGDerivationImage::createMinimal(
        refs, "Segmentation", CodeSequenceMacro("113076", "DCM", "Segmentation"),
        CodeSequenceMacro("121322", "DCM", "Source image for image processing operation")));
    if (!der) return samda_fail(err, SAMDA_EINTERNAL, "writing a DICOM-SEG: derivation image refused");
    OFVector<FGBase *> groups;
    groups.push_back(pos.get());
    groups.push_back(&fc);
    groups.push_back(der.get());
    if ((c = w.seg->addFrame(pixels, number, groups)).bad()) return cond_fail(err, "adding a frame", c);
    w.n_frames++;
    return SAMDA_OK;
}

samda_status add_segment(samda_seg_writer &w, const samda_seg_segment &s, const uint8_t *mask, unsigned *number,
                         samda_error *err)
{
    if (w.is_broken)
        return samda_fail(err, SAMDA_EINVAL, "adding a segment: an earlier step failed; free this writer");
    if (!s.label || !*s.label) return samda_fail(err, SAMDA_EINVAL, "adding a segment: no label");
    if (!code_ok(s.category) || !code_ok(s.type))
        return samda_fail(err, SAMDA_EINVAL, "adding segment \"%.64s\": %s code needs value, scheme and meaning",
                          s.label, code_ok(s.category) ? "type" : "category");
    if (s.algorithm_type != SAMDA_SEG_ALGORITHM_MANUAL && (!s.algorithm_name || !*s.algorithm_name))
        return samda_fail(err, SAMDA_EINVAL, "adding segment \"%.64s\": an algorithm name is required unless MANUAL",
                          s.label);
    if (w.n_segments >= 65535) return samda_fail(err, SAMDA_EINVAL, "adding a segment: 65535 segments already");
    const samda_volume_info &in = w.src->info;
    size_t plane = (size_t)in.rows * in.cols;
    std::vector<size_t> slices;
    for (size_t k = 0; k < in.n_slices; k++) {
        const uint8_t *m = mask + k * plane;
        for (size_t i = 0; i < plane; i++)
            if (m[i]) {
                slices.push_back(k);
                break;
            }
    }
    bool is_empty = slices.empty();
    if (is_empty && w.empty_policy == SAMDA_SEG_EMPTY_SKIP) {
        w.n_empty_skipped++;
        if (number) *number = 0;
        return SAMDA_OK;
    }
    DcmSegTypes::E_SegmentAlgoType algo = s.algorithm_type == SAMDA_SEG_ALGORITHM_MANUAL ? DcmSegTypes::SAT_MANUAL
                                          : s.algorithm_type == SAMDA_SEG_ALGORITHM_SEMIAUTOMATIC
                                              ? DcmSegTypes::SAT_SEMIAUTOMATIC
                                              : DcmSegTypes::SAT_AUTOMATIC;
    DcmSegment *raw = nullptr;
    OFCondition c = DcmSegment::create(raw, s.label, CodeSequenceMacro(s.category.value, s.category.scheme, s.category.meaning),
                                       CodeSequenceMacro(s.type.value, s.type.scheme, s.type.meaning), algo,
                                       str(s.algorithm_name).c_str());
    if (c.bad() || !raw) return samda_fail(err, SAMDA_EINVAL, "adding segment \"%.64s\": %s", s.label, c.text());
    std::unique_ptr<DcmSegment> segment(raw);
    if (s.description && *s.description && (c = segment->setSegmentDescription(s.description)).bad())
        return samda_fail(err, SAMDA_EINVAL, "adding segment \"%.64s\": description: %s", s.label, c.text());
    if (s.region.value && *s.region.value) {
        /* AnatomicRegionSequence, with its modifier inside it (General Anatomy Optional Macro) */
        if (!code_ok(s.region))
            return samda_fail(err, SAMDA_EINVAL, "adding segment \"%.64s\": region code needs value, scheme and meaning",
                              s.label);
        GeneralAnatomyMacro &ga = segment->getGeneralAnatomyCode();
        if ((c = ga.getAnatomicRegion().set(s.region.value, s.region.scheme, s.region.meaning)).bad())
            return samda_fail(err, SAMDA_EINVAL, "adding segment \"%.64s\": region code: %s", s.label, c.text());
        if (s.region_modifier.value && *s.region_modifier.value) {
            if (!code_ok(s.region_modifier))
                return samda_fail(err, SAMDA_EINVAL,
                                  "adding segment \"%.64s\": region modifier needs value, scheme and meaning", s.label);
            auto mod = std::make_unique<CodeSequenceMacro>();
            if ((c = mod->set(s.region_modifier.value, s.region_modifier.scheme, s.region_modifier.meaning)).bad())
                return samda_fail(err, SAMDA_EINVAL, "adding segment \"%.64s\": region modifier: %s", s.label, c.text());
            ga.getAnatomicRegionModifier().push_back(mod.release()); /* the macro owns and frees it */
        }
    } else if (s.region_modifier.value && *s.region_modifier.value) {
        return samda_fail(err, SAMDA_EINVAL, "adding segment \"%.64s\": a region modifier needs a region", s.label);
    }
    if (s.type_modifier.value && *s.type_modifier.value) {
        /* SegmentedPropertyTypeModifierCodeSequence, inside the type's item (e.g. laterality) */
        if (!code_ok(s.type_modifier))
            return samda_fail(err, SAMDA_EINVAL, "adding segment \"%.64s\": type modifier needs value, scheme and meaning",
                              s.label);
        auto mod = std::make_unique<CodeSequenceMacro>();
        if ((c = mod->set(s.type_modifier.value, s.type_modifier.scheme, s.type_modifier.meaning)).bad())
            return samda_fail(err, SAMDA_EINVAL, "adding segment \"%.64s\": type modifier: %s", s.label, c.text());
        segment->getSegmentedPropertyTypeModifierCode().push_back(mod.release()); /* the segment owns it */
    }
    if (s.has_color) {
        double L, a, b;
        IODCIELabUtil::rgb2DicomLab(L, a, b, s.rgb[0] / 255.0, s.rgb[1] / 255.0, s.rgb[2] / 255.0);
        if ((c = segment->setRecommendedDisplayCIELabValue((Uint16)std::lround(L), (Uint16)std::lround(a),
                                                           (Uint16)std::lround(b))).bad())
            return samda_fail(err, SAMDA_EINVAL, "adding segment \"%.64s\": colour: %s", s.label, c.text());
    }
    Uint16 num = 0;
    if ((c = w.seg->addSegment(segment.get(), num)).bad() || num == 0) {
        w.is_broken = true;
        return cond_fail(err, "adding a segment", c);
    }
    segment.release(); /* the segmentation owns it now */
    w.n_segments++;
    if (s.algorithm_name && *s.algorithm_name) {
        std::string a = std::string(s.algorithm_name) + (s.algorithm_version && *s.algorithm_version
                                                             ? std::string(" ") + s.algorithm_version : "");
        bool known = false;
        for (const std::string &x : w.algorithms) known = known || x == a;
        if (!known) w.algorithms.push_back(a);
    }
    std::vector<Uint8> buf(plane);
    if (is_empty) {
        /* One all-zero frame on slice 0 keeps the segment referenced by a frame. */
        w.n_empty_kept++;
        slices.push_back(0);
    }
    for (size_t k : slices) {
        const uint8_t *m = mask + k * plane;
        for (size_t i = 0; i < plane; i++) buf[i] = m[i] ? 1 : 0;
        samda_status st = add_frame(w, num, k, buf.data(), err);
        if (st != SAMDA_OK) {
            w.is_broken = true;
            return st;
        }
    }
    if (number) *number = num;
    return SAMDA_OK;
}

samda_status save(samda_seg_writer &w, const char *path, samda_seg_save_result *out, samda_error *err)
{
    if (w.is_broken)
        return samda_fail(err, SAMDA_EINVAL, "saving a DICOM-SEG: an earlier step failed; free this writer");
    if (w.n_segments == 0)
        return samda_fail(err, SAMDA_EINVAL, "saving a DICOM-SEG to %s: no segment (%u skipped as empty)", path,
                          w.n_empty_skipped);
    DcmFileFormat ff;
    DcmDataset &ds = *ff.getDataset();
    OFCondition c = w.seg->writeDataset(ds);
    if (c.bad()) return samda_fail(err, SAMDA_EINTERNAL, "saving a DICOM-SEG to %s: dcmseg: %s", path, c.text());
    restore_placeholders(ds, w);
    write_common_instance_reference(ds, *w.src);
    write_contributing_equipment(ds, w);
    samda_status st = dicom_save_atomic(ff, path, EXS_LittleEndianExplicit, err);
    if (st != SAMDA_OK) {
        samda_error_prefix(err, "saving a DICOM-SEG: ");
        return st;
    }
    if (out) {
        std::snprintf(out->sop_instance_uid, sizeof out->sop_instance_uid, "%s", w.sop_uid.c_str());
        std::snprintf(out->series_instance_uid, sizeof out->series_instance_uid, "%s", w.series_uid.c_str());
        out->n_frames = w.n_frames;
        out->n_segments = w.n_segments;
        out->n_empty_kept = w.n_empty_kept;
        out->n_empty_skipped = w.n_empty_skipped;
    }
    return SAMDA_OK;
}

} // namespace

extern "C" void samda_seg_params_init(samda_seg_params *p)
{
    if (!p) return;
    std::memset(p, 0, sizeof *p);
    p->series_number = 999;
    p->instance_number = 1;
    p->empty_segment = SAMDA_SEG_EMPTY_KEEP_ONE_FRAME;
}

extern "C" void samda_seg_segment_init(samda_seg_segment *s)
{
    if (!s) return;
    std::memset(s, 0, sizeof *s);
    s->category.value = "85756007";
    s->category.scheme = "SCT";
    s->category.meaning = "Tissue";
    s->algorithm_type = SAMDA_SEG_ALGORITHM_AUTOMATIC;
}

extern "C" samda_seg_writer *samda_seg_writer_new(const samda_volume *source, const samda_seg_params *p,
                                                  samda_error *err)
{
    if (!source) {
        samda_fail(err, SAMDA_EINVAL, "writing a DICOM-SEG: no source volume");
        return nullptr;
    }
    samda_seg_params defaults;
    samda_seg_params_init(&defaults);
    samda_seg_writer *w = nullptr;
    dicom_guard(err, "writing a DICOM-SEG", SAMDA_EINTERNAL,
                [&]() -> samda_status { return make_writer(source, p ? *p : defaults, &w, err); });
    return w;
}

extern "C" samda_status samda_seg_writer_add_segment(samda_seg_writer *w, const samda_seg_segment *s,
                                                     const uint8_t *mask, unsigned *segment_number, samda_error *err)
{
    if (segment_number) *segment_number = 0;
    if (!w || !s || !mask)
        return samda_fail(err, SAMDA_EINVAL, "adding a segment: no %s", !w ? "writer" : !s ? "segment" : "mask");
    return dicom_guard(err, "adding a segment", SAMDA_EINTERNAL, [&]() -> samda_status {
        samda_status st = add_segment(*w, *s, mask, segment_number, err);
        return st;
    });
}

extern "C" samda_status samda_seg_writer_save(samda_seg_writer *w, const char *path, samda_seg_save_result *out,
                                              samda_error *err)
{
    if (out) std::memset(out, 0, sizeof *out);
    if (!w || !path) return samda_fail(err, SAMDA_EINVAL, "saving a DICOM-SEG: no %s", w ? "path" : "writer");
    return dicom_guard(err, "saving a DICOM-SEG", SAMDA_EINTERNAL,
                       [&]() -> samda_status { return save(*w, path, out, err); });
}

extern "C" void samda_seg_writer_free(samda_seg_writer *w) { dicom_guard_void([&] { delete w; }); }
