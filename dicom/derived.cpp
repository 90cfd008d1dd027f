/* What the RT Structure Set and Measurement Report writers take from their source series
 * (patient, study) and the dcmdata helpers they share (see derived.h). The DICOM-SEG writer gets
 * the same from dcmseg's importFromSourceImage(). */
#include "derived.h"

#include <cstdio>
#include <ctime>
#include <stdexcept>

#include <dcmtk/dcmdata/dcdeftag.h>

#ifndef SAMDA_VERSION
#define SAMDA_VERSION "0.0.0"
#endif

void derived_put(DcmItem &it, const DcmTagKey &tag, const std::string &v)
{
    OFCondition c = it.putAndInsertString(tag, v.c_str());
    if (c.bad()) throw std::runtime_error(std::string("setting ") + DcmTag(tag).getTagName() + ": " + c.text());
}

DcmItem &derived_new_item(DcmItem &parent, const DcmTagKey &seq)
{
    DcmItem *it = nullptr;
    if (parent.findOrCreateSequenceItem(seq, it, -2).bad() || !it)
        throw std::runtime_error(std::string("creating an item of ") + DcmTag(seq).getTagName());
    return *it;
}

bool derived_code_ok(const samda_seg_code &c)
{
    return c.value && *c.value && c.scheme && *c.scheme && c.meaning && *c.meaning;
}

DcmItem &derived_put_code(DcmItem &parent, const DcmTagKey &seq, const samda_seg_code &code)
{
    DcmItem &it = derived_new_item(parent, seq);
    derived_put(it, DCM_CodeValue, code.value);
    derived_put(it, DCM_CodingSchemeDesignator, code.scheme);
    derived_put(it, DCM_CodeMeaning, code.meaning);
    return it;
}

void derived_copy_patient_study(DcmItem &ds, const DcmItem &src)
{
    /* Type 2 (written empty when absent) then Type 3 (copied when present). */
    static const DcmTagKey type2[] = {DCM_PatientName, DCM_PatientID, DCM_PatientBirthDate, DCM_PatientSex,
                                      DCM_StudyDate, DCM_StudyTime, DCM_ReferringPhysicianName, DCM_StudyID,
                                      DCM_AccessionNumber};
    static const DcmTagKey type3[] = {DCM_SpecificCharacterSet, DCM_IssuerOfPatientID, DCM_StudyDescription,
                                      DCM_PatientAge, DCM_PatientSize, DCM_PatientWeight,
                                      DCM_PatientIdentityRemoved, DCM_DeidentificationMethod};
    DcmItem &s = const_cast<DcmItem &>(src); /* findAndGet* are not const in DCMTK 3.6.7 */
    for (const DcmTagKey &t : type2) {
        OFString v;
        s.findAndGetOFStringArray(t, v);
        derived_put(ds, t, v.c_str());
    }
    for (const DcmTagKey &t : type3) {
        OFString v;
        if (s.findAndGetOFStringArray(t, v).good() && !v.empty()) derived_put(ds, t, v.c_str());
    }
    OFString study;
    if (s.findAndGetOFString(DCM_StudyInstanceUID, study).bad() || study.empty())
        throw std::runtime_error("the source has no StudyInstanceUID");
    derived_put(ds, DCM_StudyInstanceUID, study.c_str());
}

std::string derived_date_now()
{
    char b[16];
    std::time_t now = std::time(nullptr);
    std::tm t{};
    localtime_r(&now, &t);
    std::strftime(b, sizeof b, "%Y%m%d", &t);
    return b;
}

std::string derived_time_now()
{
    char b[16];
    std::time_t now = std::time(nullptr);
    std::tm t{};
    localtime_r(&now, &t);
    std::strftime(b, sizeof b, "%H%M%S", &t);
    return b;
}

void derived_put_equipment_and_dates(DcmItem &ds, const std::string &software_version)
{
    derived_put(ds, DCM_Manufacturer, "samda");
    derived_put(ds, DCM_ManufacturerModelName, "samda");
    derived_put(ds, DCM_SoftwareVersions, software_version.empty() ? SAMDA_VERSION : software_version);
    derived_put(ds, DCM_InstanceCreationDate, derived_date_now());
    derived_put(ds, DCM_InstanceCreationTime, derived_time_now());
}

samda_status derived_uid(const char *given, const char *root, const char *what, std::string &out, samda_error *err)
{
    if (given && *given) {
        if (!samda_dicom_uid_is_valid(given))
            return samda_fail(err, SAMDA_EBADUID, "%s \"%.64s\" is not a valid UID", what, given);
        out = given;
        return SAMDA_OK;
    }
    char buf[SAMDA_DICOM_UID_SIZE];
    samda_status st = samda_dicom_uid_generate(buf, root, err);
    if (st == SAMDA_OK) out = buf;
    return st;
}
