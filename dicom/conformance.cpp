/* Writes the generated part of the DICOM conformance statement (docs/conformance.md) from the
 * tables in sop_classes.cpp. Markdown only; the prose around it is written by hand. */
#include <cerrno>
#include <cstdio>
#include <cstring>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcuid.h>

#include "dicom.h"
#include "guard.h"
#include "internal.h"

extern "C" samda_status samda_dicom_conformance_tables(FILE *out, samda_error *err)
{
    return dicom_guard(err, "writing the conformance tables", SAMDA_EINTERNAL, [&]() -> samda_status {
        if (!out) return samda_fail(err, SAMDA_EINVAL, "writing the conformance tables: no output stream");
        int bad = 0;
        bad |= fprintf(out, "### Verification SOP class (SCP and SCU)\n\n"
                            "| SOP class | UID | Role |\n|---|---|---|\n"
                            "| Verification | `%s` | SCP, SCU |\n\n", UID_VerificationSOPClass) < 0;
        bad |= fprintf(out, "### Storage SOP classes (SCP)\n\n"
                            "%zu storage SOP classes are accepted as SCP; any other is refused in "
                            "negotiation (abstract syntax not supported).\n\n"
                            "| Category | SOP class | UID |\n|---|---|---|\n", dicom_n_sop_classes) < 0;
        for (size_t i = 0; i < dicom_n_sop_classes; i++) {
            const dicom_sop_class &c = dicom_sop_classes[i];
            bad |= fprintf(out, "| %s | %s | `%s` |\n", c.category, c.name, c.uid) < 0;
        }
        bad |= fprintf(out, "\n### Transfer syntaxes (SCP)\n\n"
                            "Accepted for every SOP class above, in this order of preference when "
                            "one presentation context proposes several.\n\n"
                            "| Preference | Transfer syntax | UID | Remark |\n|---|---|---|---|\n") < 0;
        for (size_t i = 0; i < dicom_n_transfer_syntaxes; i++) {
            const dicom_transfer_syntax &t = dicom_transfer_syntaxes[i];
            bad |= fprintf(out, "| %zu | %s | `%s` | %s |\n", i + 1, t.name, t.uid, t.note) < 0;
        }
        bad |= fprintf(out, "\nRefused (a presentation context proposing only these is rejected with "
                            "\"transfer syntaxes not supported\"):\n\n"
                            "| Transfer syntax | UID | Remark |\n|---|---|---|\n") < 0;
        for (size_t i = 0; i < dicom_n_refused_transfer_syntaxes; i++) {
            const dicom_transfer_syntax &t = dicom_refused_transfer_syntaxes[i];
            bad |= fprintf(out, "| %s | `%s` | %s |\n", t.name, t.uid, t.note) < 0;
        }
        if (bad || ferror(out))
            return samda_fail(err, SAMDA_EIO, "writing the conformance tables: %s", std::strerror(errno));
        return SAMDA_OK;
    });
}
