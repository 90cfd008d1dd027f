/* Measurement Report writer: one DCMR TID 1500 Comprehensive 3D SR per result, one Volumetric ROI
 * Measurements group (TID 1411) per label, referencing the label's DICOM-SEG segment and the source
 * series, built with DCMTK's dcmsr/cmr template classes and written crash-safely.
 *
 * The numbers come from the masks and the source volume here (volume, mean and standard deviation
 * of the voxel values); it does not read the DICOM-SEG back, and writes no spatial coordinates. */
#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>
#include <stdexcept>
#include <string>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmsr/cmr/tid1500.h>
#include <dcmtk/dcmsr/dsrdoc.h>

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

typedef TID1500_MeasurementReport::TID1411_Measurements group_tpl;

struct sr_job {
    const samda_volume &v;
    const samda_sr_params &p;
    std::string series_uid, sop_uid;
    samda_sr_result res{};
};

struct mask_stats {
    size_t voxels = 0;
    double mean = 0, std = 0; /* of the voxel values inside (population standard deviation) */
};

std::string str(const char *s, const char *dflt = "") { return s && *s ? s : dflt; }

void ok(const OFCondition &c, const std::string &what)
{
    if (c.bad()) throw std::runtime_error(what + ": " + c.text());
}

mask_stats stats_of(const samda_volume &v, const uint8_t *mask)
{
    mask_stats s;
    double sum = 0, sum2 = 0;
    for (size_t i = 0; i < v.voxels.size(); i++)
        if (mask[i]) {
            const double x = v.voxels[i];
            s.voxels++;
            sum += x;
            sum2 += x * x;
        }
    if (s.voxels) {
        s.mean = sum / (double)s.voxels;
        s.std = std::sqrt(std::max(0.0, sum2 / (double)s.voxels - s.mean * s.mean));
    }
    return s;
}

samda_status check(const samda_volume &v, const samda_sr_params &p, const samda_sr_group *g, size_t n,
                   samda_error *err)
{
    if (!v.source_header) return samda_fail(err, SAMDA_EINVAL, "the source volume has no header to copy");
    if (!samda_dicom_uid_is_valid(p.seg_sop_instance_uid) || !samda_dicom_uid_is_valid(p.seg_series_instance_uid))
        return samda_fail(err, SAMDA_EINVAL, "the DICOM-SEG's SOP instance and series UIDs are required and must be valid");
    if (!g || n == 0) return samda_fail(err, SAMDA_EINVAL, "no measurement group to write");
    for (size_t i = 0; i < n; i++) {
        if (!g[i].name || !*g[i].name || !g[i].mask)
            return samda_fail(err, SAMDA_EINVAL, "group %zu: no %s", i + 1, g[i].mask ? "name" : "mask");
        if (!derived_code_ok(g[i].type))
            return samda_fail(err, SAMDA_EINVAL, "group \"%.64s\": type code needs value, scheme and meaning", g[i].name);
        if (g[i].region.value && *g[i].region.value && !derived_code_ok(g[i].region))
            return samda_fail(err, SAMDA_EINVAL, "group \"%.64s\": region code needs value, scheme and meaning", g[i].name);
        if (g[i].segment_number == 0)
            return samda_fail(err, SAMDA_EINVAL, "group \"%.64s\": segment number 0 (SEG segments count from 1)", g[i].name);
    }
    return SAMDA_OK;
}

DSRCodedEntryValue code(const samda_seg_code &c) { return DSRCodedEntryValue(c.value, c.scheme, c.meaning); }

/* TID 1500 rows 1-5: title, language, observer, procedure, and the Image Library (TID 1600). */
void write_report_header(TID1500_MeasurementReport &r, const sr_job &j)
{
    ok(r.setLanguage(CID5000_Languages::English), "language");
    char device_uid[SAMDA_DICOM_UID_SIZE];
    samda_error e;
    if (samda_dicom_uid_generate(device_uid, j.p.uid_root, &e) != SAMDA_OK) throw std::runtime_error(e.message);
    ok(r.getObservationContext().addDeviceObserver(device_uid, "samda", "samda", "samda"), "device observer");
    ok(r.addProcedureReported(CMR_CID100::ImagingProcedure), "procedure reported");
    TID1600_ImageLibrary &lib = r.getImageLibrary();
    ok(lib.createNewImageLibrary(), "image library");
    ok(lib.addImageGroup(), "image library group");
    std::set<std::string> seen;
    for (const samda_volume_slice &s : j.v.slices) {
        if (!seen.insert(s.sop_instance_uid).second) continue;
        DcmItem img;
        derived_put(img, DCM_SOPClassUID, s.sop_class_uid);
        derived_put(img, DCM_SOPInstanceUID, s.sop_instance_uid);
        derived_put(img, DCM_Modality, j.v.info.modality);
        ok(lib.addImageEntry(img, TID1600_ImageLibrary::withoutDescriptors), "image library entry");
    }
}

void add_measurement(group_tpl &g, CMR_CID7469::EnumType what, double value, const CID7181_AbstractMultiDimensionalImageModelComponentUnits &unit,
                     const CID7464_GeneralRegionOfInterestMeasurementModifiers *derivation, sr_job &j)
{
    ok(g.addMeasurement(what, group_tpl::MeasurementValue(dicom_ds_value(value).c_str(), unit)), "measurement");
    if (derivation) ok(g.getMeasurement().setDerivation(*derivation), "measurement derivation");
    j.res.n_measurements++;
}

/* One TID 1411 group (rows 1-7 and its TID 1419 measurements). */
void write_group(TID1500_MeasurementReport &r, const samda_sr_group &grp, sr_job &j)
{
    ok(r.addVolumetricROIMeasurements(), "measurement group");
    group_tpl &g = r.getVolumetricROIMeasurements();
    ok(g.setTrackingIdentifier(grp.name), "tracking identifier");
    char uid[SAMDA_DICOM_UID_SIZE];
    samda_error e;
    if (samda_dicom_uid_generate(uid, j.p.uid_root, &e) != SAMDA_OK) throw std::runtime_error(e.message);
    ok(g.setTrackingUniqueIdentifier(uid), "tracking unique identifier");
    ok(g.setFinding(code(grp.type)), "finding");
    DSRImageReferenceValue seg(UID_SegmentationStorage, j.p.seg_sop_instance_uid);
    seg.getSegmentList().addItem((Uint16)grp.segment_number);
    ok(g.setReferencedSegment(seg), "referenced segment");
    ok(g.setSourceSeriesForSegmentation(j.v.info.series_instance_uid), "source series for segmentation");
    if (grp.region.value && *grp.region.value) ok(g.addFindingSite(code(grp.region)), "finding site");
    const samda_volume_info &in = j.v.info;
    const mask_stats st = stats_of(j.v, grp.mask);
    if (in.slice_spacing > 0) {
        const double ml = (double)st.voxels * in.pixel_spacing[0] * in.pixel_spacing[1] * in.slice_spacing / 1000.0;
        add_measurement(g, CMR_CID7469::Volume, ml, DSRCodedEntryValue("ml", "UCUM", "milliliter"), nullptr, j);
    }
    if (!std::strcmp(in.modality, "CT") && st.voxels) {
        const CID7464_GeneralRegionOfInterestMeasurementModifiers mean(CMR_CID7464::Mean),
            sd(CMR_CID7464::StandardDeviation);
        add_measurement(g, CMR_CID7469::AttenuationCoefficient, st.mean, CMR_CID7181::HounsfieldUnit, &mean, j);
        add_measurement(g, CMR_CID7469::AttenuationCoefficient, st.std, CMR_CID7181::HounsfieldUnit, &sd, j);
    }
    j.res.n_groups++;
}

/* The document around the tree: series, evidence, and the source's patient and study. */
void write_document(TID1500_MeasurementReport &r, sr_job &j, DcmDataset &ds)
{
    DSRDocument doc(DSRTypes::DT_Comprehensive3DSR);
    ok(doc.setTreeFromRootTemplate(r, OFTrue), "document tree");
    if (doc.getDocumentType() != DSRTypes::DT_Comprehensive3DSR)
        ok(doc.changeDocumentType(DSRTypes::DT_Comprehensive3DSR), "document type");
    const samda_volume_info &in = j.v.info;
    ok(doc.createNewSeriesInStudy(in.study_instance_uid), "study");
    DSRSOPInstanceReferenceList &ev = doc.getCurrentRequestedProcedureEvidence();
    ok(ev.addItem(in.study_instance_uid, j.p.seg_series_instance_uid, UID_SegmentationStorage, j.p.seg_sop_instance_uid),
       "evidence (DICOM-SEG)");
    for (const samda_volume_slice &s : j.v.slices)
        ok(ev.addItem(in.study_instance_uid, in.series_instance_uid, s.sop_class_uid, s.sop_instance_uid),
           "evidence (source instance)");
    ok(doc.setSeriesDescription(str(j.p.series_description, "Measurements (samda)").c_str()), "series description");
    ok(doc.setSeriesNumber(std::to_string(j.p.series_number).c_str()), "series number");
    ok(doc.setInstanceNumber(std::to_string(j.p.instance_number).c_str()), "instance number");
    ok(doc.setManufacturer("samda"), "manufacturer");
    ok(doc.completeDocument(), "completion flag");
    ok(doc.write(ds), "dcmsr");
    derived_copy_patient_study(ds, *j.v.source_header);
    derived_put(ds, DCM_SeriesInstanceUID, j.series_uid);
    derived_put(ds, DCM_SOPInstanceUID, j.sop_uid);
    derived_put_equipment_and_dates(ds, str(j.p.software_version, SAMDA_VERSION));
}

samda_status write(const samda_volume &v, const samda_sr_params &p, const samda_sr_group *g, size_t n,
                   const char *path, samda_sr_result *out, samda_error *err)
{
    samda_status st = check(v, p, g, n, err);
    if (st != SAMDA_OK) return st;
    sr_job j{v, p, {}, {}, {}};
    if ((st = derived_uid(p.series_instance_uid, p.uid_root, "SeriesInstanceUID", j.series_uid, err)) != SAMDA_OK ||
        (st = derived_uid(p.sop_instance_uid, p.uid_root, "SOPInstanceUID", j.sop_uid, err)) != SAMDA_OK)
        return st;
    TID1500_MeasurementReport report(CMR_CID7021::ImagingMeasurementReport);
    write_report_header(report, j);
    for (size_t i = 0; i < n; i++) write_group(report, g[i], j);
    if (!report.isValid()) return samda_fail(err, SAMDA_EINTERNAL, "the TID 1500 content is not complete");
    DcmFileFormat ff;
    write_document(report, j, *ff.getDataset());
    if ((st = dicom_save_atomic(ff, path, EXS_LittleEndianExplicit, err)) != SAMDA_OK) return st;
    std::snprintf(j.res.sop_instance_uid, sizeof j.res.sop_instance_uid, "%s", j.sop_uid.c_str());
    std::snprintf(j.res.series_instance_uid, sizeof j.res.series_instance_uid, "%s", j.series_uid.c_str());
    if (out) *out = j.res;
    return SAMDA_OK;
}

} // namespace

extern "C" void samda_sr_params_init(samda_sr_params *p)
{
    if (!p) return;
    std::memset(p, 0, sizeof *p);
    p->series_number = 997;
    p->instance_number = 1;
}

extern "C" samda_status samda_sr_write(const samda_volume *source, const samda_sr_params *p,
                                       const samda_sr_group *groups, size_t n_groups, const char *path,
                                       samda_sr_result *out, samda_error *err)
{
    if (out) std::memset(out, 0, sizeof *out);
    if (!source || !p || !path)
        return samda_fail(err, SAMDA_EINVAL, "writing a Measurement Report SR: no %s",
                          !source ? "source volume" : !p ? "parameters (the DICOM-SEG's UIDs)" : "path");
    samda_status st = dicom_guard(err, "writing a Measurement Report SR", SAMDA_EINTERNAL, [&]() -> samda_status {
        return write(*source, *p, groups, n_groups, path, out, err);
    });
    if (st != SAMDA_OK && std::strncmp(err ? err->message : "", "writing a Measurement", 21) != 0)
        samda_error_prefix(err, "writing a Measurement Report SR: ");
    return st;
}
