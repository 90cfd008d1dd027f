/* dicom/ module-internal: what every derived object samda writes besides the DICOM-SEG (RT
 * Structure Set, Measurement Report SR) takes from its source series, and the small dcmdata
 * helpers they share. Never included outside dicom/.
 *
 * Every function here throws std::runtime_error naming the attribute when DCMTK refuses a value:
 * the callers run inside dicom_guard(). */
#ifndef SAMDA_DICOM_DERIVED_H
#define SAMDA_DICOM_DERIVED_H

#include <string>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdatset.h>
#include <dcmtk/dcmdata/dcitem.h>

#include "dicom.h"

/* Set tag in it to v (replacing any value). */
void derived_put(DcmItem &it, const DcmTagKey &tag, const std::string &v);

/* Append an item to the sequence seq of parent and return it. */
DcmItem &derived_new_item(DcmItem &parent, const DcmTagKey &seq);

/* One item of a Code Sequence Macro (PS3.3 8.8) appended to seq. */
DcmItem &derived_put_code(DcmItem &parent, const DcmTagKey &seq, const samda_seg_code &code);

/* True when value, scheme and meaning are all given. */
bool derived_code_ok(const samda_seg_code &c);

/* Patient, General Study and Patient Study from the source (slice 0's data set), the character
 * set with them; Type 2 attributes the source lacks are written empty (PS3.3 C.7.1.1, C.7.2.1). */
void derived_copy_patient_study(DcmItem &ds, const DcmItem &src);

/* General Equipment of samda (PS3.3 C.7.5.1), content/instance creation date and time now. */
void derived_put_equipment_and_dates(DcmItem &ds, const std::string &software_version);

/* given (validated) or a new UID under root. SAMDA_OK, SAMDA_EBADUID, SAMDA_EIO. */
samda_status derived_uid(const char *given, const char *root, const char *what, std::string &out, samda_error *err);

/* YYYYMMDD and HHMMSS of now, local time. */
std::string derived_date_now();
std::string derived_time_now();

#endif
