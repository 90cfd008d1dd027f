/* dicom/ module-internal declarations (never installed, never included outside dicom/).
 *
 * The one table of what the SCP negotiates (SOP classes, transfer syntaxes) lives in
 * sop_classes.cpp; the SCP and the conformance statement generator both read it from here. */
#ifndef SAMDA_DICOM_INTERNAL_H
#define SAMDA_DICOM_INTERNAL_H

#include <cstddef>

struct dicom_sop_class {
    const char *uid;
    const char *name;     /* PS3.4 Annex B name */
    const char *category; /* grouping in the conformance statement */
};

struct dicom_transfer_syntax {
    const char *uid;
    const char *name;
    const char *note;     /* conformance statement remark */
};

/* Storage SOP classes accepted as SCP, in conformance statement order. */
extern const dicom_sop_class dicom_sop_classes[];
extern const size_t dicom_n_sop_classes;

/* Transfer syntaxes accepted, in the order of preference used when one presentation context
 * proposes several. */
extern const dicom_transfer_syntax dicom_transfer_syntaxes[];
extern const size_t dicom_n_transfer_syntaxes;

struct T_ASC_RejectParameters;
/* An AE title of 1 to 16 characters (the SCUs' parameter check). */
bool dicom_ae_ok(const char *ae);
/* Text of an association rejection's reason, for messages (defined in echo.cpp, used by scu.cpp). */
const char *dicom_reject_reason(const T_ASC_RejectParameters &r);

/* Transfer syntaxes recognised but refused (listed in the conformance statement as such). */
extern const dicom_transfer_syntax dicom_refused_transfer_syntaxes[];
extern const size_t dicom_n_refused_transfer_syntaxes;

#endif
