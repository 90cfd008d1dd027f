/* libFuzzer target for the DICOM intake path: the header read that C-STORE (dicom/scp.cpp) and
 * STOW-RS (daemon/api_services.c) run on every received instance before it is indexed, then the
 * accept checks on its SOP class and transfer syntax. The input is read twice, from memory
 * (samda_dicom_read_header_mem) and from a file (samda_dicom_read_header, the path intake takes,
 * on an in-memory file): both must give the same status and, on success, the same header. On
 * success the header must hold what the index relies on: the four required UIDs valid, strings
 * terminated. Memory errors, leaks and UB are caught by ASan/UBSan (the build adds them). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dicom.h"
#include "fuzz_memfd.h"

#define TERMINATED(s) (memchr((s), 0, sizeof(s)) != NULL)

void fuzz_dicom_setup(void); /* dcmtk_quiet.cpp */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_dicom_setup();
    static samda_dicom_header a, b; /* large: keep them off the stack */
    samda_error e = {SAMDA_OK, ""};
    samda_status sa = samda_dicom_read_header_mem(size ? (const void *)data : (const void *)"", size, &a, &e);
    if (sa != SAMDA_OK && !e.message[0]) abort();
    if (sa == SAMDA_OK) {
        if (!samda_dicom_uid_is_valid(a.study_instance_uid) || !samda_dicom_uid_is_valid(a.series_instance_uid) ||
            !samda_dicom_uid_is_valid(a.sop_instance_uid) || !samda_dicom_uid_is_valid(a.sop_class_uid))
            abort();
        if (!TERMINATED(a.patient_id) || !TERMINATED(a.patient_name) || !TERMINATED(a.modality) ||
            !TERMINATED(a.study_description) || !TERMINATED(a.series_description) ||
            !TERMINATED(a.transfer_syntax_uid) || !TERMINATED(a.frame_of_reference_uid) ||
            !TERMINATED(a.photometric_interpretation) || !TERMINATED(a.specific_character_set))
            abort();
        (void)samda_dicom_sop_class_is_accepted(a.sop_class_uid);
        (void)samda_dicom_transfer_syntax_is_accepted(a.transfer_syntax_uid);
    }
    if (size == 0) return 0; /* the buffer reader refuses 0 bytes outright */
    const char *path = fuzz_memfd_path(data, size, NULL);
    if (!path) return 0;
    samda_status sb = samda_dicom_read_header(path, &b, NULL);
    if (sa != sb) abort(); /* memory and file intake disagree */
    if (sa == SAMDA_OK && memcmp(&a, &b, sizeof a) != 0) abort();
    return 0;
}
