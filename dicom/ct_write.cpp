/* CT and MR series writer: an int16 volume as a CT Image Storage series (PS3.3 A.3) or an MR Image
 * Storage series (A.4), one Part 10 file per slice, every file written crash-safely.
 *
 * It serves the synthetic phantom, tests that need a series with known values and geometry, and
 * volumes uploaded through the MONAI Label session route. It writes what the CT and MR Image IODs
 * require (Type 1 and 2 attributes, the 2C ones that apply) and little else; it does not compress,
 * and it writes no private attributes. */
#include <cmath>
#include <cstring>
#include <ctime>
#include <stdexcept>
#include <string>
#include <vector>

#include <sys/stat.h>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcuid.h>

#include "atomic_write.h"
#include "ds_value.h"
#include "dicom.h"
#include "guard.h"

namespace {

const char *const ct_image_storage = "1.2.840.10008.5.1.4.1.1.2";
const char *const mr_image_storage = "1.2.840.10008.5.1.4.1.1.4";

const char *or_empty(const char *s) { return s ? s : ""; }

void put(DcmDataset &ds, const DcmTagKey &tag, const std::string &v)
{
    OFCondition c = ds.putAndInsertString(tag, v.c_str());
    if (c.bad()) throw std::runtime_error(std::string("setting ") + DcmTag(tag).getTagName() + ": " + c.text());
}

samda_status uid_or_generate(const char *given, const char *root, const char *what, char out[SAMDA_DICOM_UID_SIZE],
                             samda_error *err)
{
    if (given && *given) {
        if (!samda_dicom_uid_is_valid(given))
            return samda_fail(err, SAMDA_EBADUID, "writing a CT series: %s \"%.64s\" is not a valid UID", what, given);
        std::snprintf(out, SAMDA_DICOM_UID_SIZE, "%s", given);
        return SAMDA_OK;
    }
    return samda_dicom_uid_generate(out, root, err);
}

bool orientation_ok(const double *o)
{
    double r = o[0] * o[0] + o[1] * o[1] + o[2] * o[2];
    double c = o[3] * o[3] + o[4] * o[4] + o[5] * o[5];
    double d = o[0] * o[3] + o[1] * o[4] + o[2] * o[5];
    return std::fabs(r - 1) < 1e-3 && std::fabs(c - 1) < 1e-3 && std::fabs(d) < 1e-3;
}

samda_status write_series(const samda_ct_series_params &p, samda_ct_series_result *out, samda_error *err)
{
    if (!p.dir || !p.hu) return samda_fail(err, SAMDA_EINVAL, "writing a CT series: no %s", p.dir ? "voxels" : "directory");
    if (p.n_slices < 1 || p.n_slices > 99999 || p.rows < 1 || p.rows > 65535 || p.cols < 1 || p.cols > 65535)
        return samda_fail(err, SAMDA_EINVAL,
                          "writing a CT series: %zu slices of %ux%u (1..99999 slices of 1..65535 rows/columns)",
                          p.n_slices, p.rows, p.cols);
    if (!(p.pixel_spacing[0] > 0) || !(p.pixel_spacing[1] > 0) || !(p.slice_spacing > 0) || p.slice_thickness < 0)
        return samda_fail(err, SAMDA_EINVAL, "writing a CT series: spacings must be > 0 (pixel %g\\%g, slice %g)",
                          p.pixel_spacing[0], p.pixel_spacing[1], p.slice_spacing);
    bool mr = p.modality && !std::strcmp(p.modality, "MR");
    if (p.modality && *p.modality && !mr && std::strcmp(p.modality, "CT"))
        return samda_fail(err, SAMDA_EINVAL, "writing a series: modality %.16s (CT or MR)", p.modality);
    if (!(p.rescale_slope > 0) || !std::isfinite(p.rescale_slope))
        return samda_fail(err, SAMDA_EINVAL, "writing a series: rescale_slope %g must be > 0", p.rescale_slope);
    if (p.file_prefix && std::strspn(p.file_prefix, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.") !=
                             std::strlen(p.file_prefix))
        return samda_fail(err, SAMDA_EINVAL, "writing a series: file_prefix holds characters other than [A-Za-z0-9._-]");
    if (!orientation_ok(p.orientation))
        return samda_fail(err, SAMDA_EINVAL, "writing a CT series: orientation %s is not two orthogonal unit vectors",
                          dicom_ds_multi(p.orientation, 6).c_str());
    struct stat sb;
    if (stat(p.dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return samda_fail(err, SAMDA_ENOENT, "writing a CT series: directory %s does not exist", p.dir);

    samda_ct_series_result r{};
    samda_status st;
    if ((st = uid_or_generate(p.study_instance_uid, p.uid_root, "StudyInstanceUID", r.study_instance_uid, err)) ||
        (st = uid_or_generate(p.series_instance_uid, p.uid_root, "SeriesInstanceUID", r.series_instance_uid, err)) ||
        (st = uid_or_generate(p.frame_of_reference_uid, p.uid_root, "FrameOfReferenceUID", r.frame_of_reference_uid,
                              err)))
        return st;

    size_t slice_voxels = (size_t)p.rows * p.cols;
    size_t total = slice_voxels * p.n_slices;
    /* CT: HU >= -1024 everywhere: the scanner convention, unsigned HU + 1024. MR: values >= 0
     * everywhere: unsigned as they are. Else signed. A slope other than 1: signed, intercept 0. */
    bool scaled = p.rescale_slope != 1.0;
    int16_t floor_value = mr ? 0 : -1024;
    bool is_unsigned = !scaled;
    for (size_t i = 0; i < total && is_unsigned; i++) is_unsigned = p.hu[i] >= floor_value;
    double intercept = is_unsigned && !mr ? -1024 : 0;
    bool rescale = !mr || scaled; /* MR Image has no Modality LUT unless values were scaled */

    char date[16], tm_now[16];
    std::time_t now = std::time(nullptr);
    std::tm local{};
    localtime_r(&now, &local);
    std::strftime(date, sizeof date, "%Y%m%d", &local);
    std::strftime(tm_now, sizeof tm_now, "%H%M%S", &local);
    const double *o = p.orientation;
    double nrm[3] = {o[1] * o[5] - o[2] * o[4], o[2] * o[3] - o[0] * o[5], o[0] * o[4] - o[1] * o[3]};
    double len = std::sqrt(nrm[0] * nrm[0] + nrm[1] * nrm[1] + nrm[2] * nrm[2]);
    for (double &x : nrm) x /= len;
    double thickness = p.slice_thickness > 0 ? p.slice_thickness : p.slice_spacing;

    std::vector<Uint16> pixels(slice_voxels);
    for (size_t k = 0; k < p.n_slices; k++) {
        char sop[SAMDA_DICOM_UID_SIZE];
        if ((st = samda_dicom_uid_generate(sop, p.uid_root, err)) != SAMDA_OK) return st;
        DcmFileFormat ff;
        DcmDataset &ds = *ff.getDataset();
        /* SOP Common (C.12.1) */
        put(ds, DCM_SpecificCharacterSet, "ISO_IR 192");
        put(ds, DCM_SOPClassUID, mr ? mr_image_storage : ct_image_storage);
        put(ds, DCM_SOPInstanceUID, sop);
        put(ds, DCM_InstanceCreationDate, date);
        put(ds, DCM_InstanceCreationTime, tm_now);
        /* Patient (C.7.1.1) */
        put(ds, DCM_PatientName, or_empty(p.patient_name));
        put(ds, DCM_PatientID, or_empty(p.patient_id));
        put(ds, DCM_PatientBirthDate, or_empty(p.patient_birth_date));
        put(ds, DCM_PatientSex, or_empty(p.patient_sex));
        /* General Study (C.7.2.1) */
        put(ds, DCM_StudyInstanceUID, r.study_instance_uid);
        put(ds, DCM_StudyDate, p.study_date ? p.study_date : date);
        put(ds, DCM_StudyTime, p.study_time ? p.study_time : tm_now);
        put(ds, DCM_ReferringPhysicianName, "");
        put(ds, DCM_StudyID, or_empty(p.study_id));
        put(ds, DCM_AccessionNumber, or_empty(p.accession_number));
        if (p.study_description && *p.study_description) put(ds, DCM_StudyDescription, p.study_description);
        /* General Series (C.7.3.1); Patient Position is 2C, required for CT and MR */
        put(ds, DCM_Modality, mr ? "MR" : "CT");
        put(ds, DCM_SeriesInstanceUID, r.series_instance_uid);
        put(ds, DCM_SeriesNumber, std::to_string(p.series_number));
        if (p.series_description && *p.series_description) put(ds, DCM_SeriesDescription, p.series_description);
        put(ds, DCM_PatientPosition, "HFS");
        put(ds, DCM_Laterality, ""); /* 2C: body part unknown, so possibly paired */
        /* Frame of Reference (C.7.4.1) */
        put(ds, DCM_FrameOfReferenceUID, r.frame_of_reference_uid);
        put(ds, DCM_PositionReferenceIndicator, "");
        /* General Equipment (C.7.5.1) */
        put(ds, DCM_Manufacturer, p.manufacturer ? p.manufacturer : "samda");
        put(ds, DCM_SoftwareVersions, SAMDA_VERSION);
        /* General Image (C.7.6.1) */
        put(ds, DCM_InstanceNumber, std::to_string(k + 1));
        put(ds, DCM_ContentDate, date);
        put(ds, DCM_ContentTime, tm_now);
        put(ds, DCM_BurnedInAnnotation, "NO");
        /* Image Plane (C.7.6.2) */
        double pos[3];
        for (int i = 0; i < 3; i++) pos[i] = p.origin[i] + (double)k * p.slice_spacing * nrm[i];
        put(ds, DCM_PixelSpacing, dicom_ds_multi(p.pixel_spacing, 2));
        put(ds, DCM_ImageOrientationPatient, dicom_ds_multi(p.orientation, 6));
        put(ds, DCM_ImagePositionPatient, dicom_ds_multi(pos, 3));
        put(ds, DCM_SliceThickness, dicom_ds_value(thickness));
        put(ds, DCM_SliceLocation, dicom_ds_value(pos[0] * nrm[0] + pos[1] * nrm[1] + pos[2] * nrm[2]));
        /* Image Pixel (C.7.6.3) and CT Image (C.8.2.1) or MR Image (C.8.3.1) */
        put(ds, DCM_ImageType, mr ? "DERIVED\\SECONDARY\\OTHER" : "DERIVED\\SECONDARY\\AXIAL");
        put(ds, DCM_SamplesPerPixel, "1");
        put(ds, DCM_PhotometricInterpretation, "MONOCHROME2");
        put(ds, DCM_Rows, std::to_string(p.rows));
        put(ds, DCM_Columns, std::to_string(p.cols));
        put(ds, DCM_BitsAllocated, "16");
        put(ds, DCM_BitsStored, "16");
        put(ds, DCM_HighBit, "15");
        put(ds, DCM_PixelRepresentation, is_unsigned ? "0" : "1");
        if (rescale) {
            put(ds, DCM_RescaleIntercept, dicom_ds_value(intercept));
            put(ds, DCM_RescaleSlope, dicom_ds_value(p.rescale_slope));
        }
        if (mr) {
            put(ds, DCM_ScanningSequence, "RM"); /* research mode: what acquired it is not known */
            put(ds, DCM_SequenceVariant, "NONE");
            put(ds, DCM_ScanOptions, "");
            put(ds, DCM_MRAcquisitionType, "");
            put(ds, DCM_RepetitionTime, "");
            put(ds, DCM_EchoTime, "");
            put(ds, DCM_EchoTrainLength, "");
        } else {
            put(ds, DCM_RescaleType, "HU");
            put(ds, DCM_KVP, "");
        }
        put(ds, DCM_AcquisitionNumber, "1");
        /* VOI LUT (C.11.2) */
        put(ds, DCM_WindowCenter, dicom_ds_value(p.window_center));
        put(ds, DCM_WindowWidth, dicom_ds_value(p.window_width));
        const int16_t *src = p.hu + k * slice_voxels;
        for (size_t i = 0; i < slice_voxels; i++)
            pixels[i] = is_unsigned ? (Uint16)(src[i] + 1024) : (Uint16)src[i];
        OFCondition c = ds.putAndInsertUint16Array(DCM_PixelData, pixels.data(), (unsigned long)slice_voxels);
        if (c.bad()) return samda_fail(err, SAMDA_ENOMEM, "writing a CT series: pixel data: %s", c.text());

        char name[32];
        std::snprintf(name, sizeof name, "IMG%05zu.dcm", k + 1);
        std::string path = std::string(p.dir) + "/" + (p.file_prefix ? p.file_prefix : "") + name;
        if ((st = dicom_save_atomic(ff, path.c_str(), EXS_LittleEndianExplicit, err)) != SAMDA_OK) {
            samda_error_prefix(err, "writing a CT series: ");
            return st;
        }
        r.n_files++;
    }
    if (out) *out = r;
    return SAMDA_OK;
}

} // namespace

extern "C" void samda_ct_series_params_init(samda_ct_series_params *p)
{
    if (!p) return;
    std::memset(p, 0, sizeof *p);
    p->pixel_spacing[0] = p->pixel_spacing[1] = 1.0;
    p->slice_spacing = 1.0;
    p->orientation[0] = 1.0;
    p->orientation[4] = 1.0;
    p->window_center = 40;
    p->window_width = 400;
    p->series_number = 1;
    p->rescale_slope = 1.0;
}

extern "C" samda_status samda_dicom_write_ct_series(const samda_ct_series_params *p, samda_ct_series_result *out,
                                                    samda_error *err)
{
    if (out) std::memset(out, 0, sizeof *out);
    if (!p) return samda_fail(err, SAMDA_EINVAL, "writing a CT series: no parameters");
    return dicom_guard(err, "writing a CT series", SAMDA_EINTERNAL,
                       [&]() -> samda_status { return write_series(*p, out, err); });
}
