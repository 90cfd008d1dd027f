/* libFuzzer target for the DICOM-SEG reader (dicom/seg_read.cpp, the training ground truth). The
 * input is the file, handed over as an in-memory file. On success every accessor must answer
 * within the counts the reader reports, and every frame mask must be rows * cols bytes of 0 or 1.
 * Memory errors, leaks and UB are caught by ASan/UBSan (the build adds them). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dicom.h"
#include "fuzz_memfd.h"

void fuzz_dicom_setup(void); /* dcmtk_quiet.cpp */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_dicom_setup();
    const char *path = fuzz_memfd_path(data, size, NULL);
    if (!path) return 0;
    samda_seg *seg = NULL;
    samda_error e = {SAMDA_OK, ""};
    samda_status st = samda_seg_read(path, &seg, &e);
    if (st != SAMDA_OK) {
        if (seg || !e.message[0]) abort();
        return 0;
    }
    const samda_seg_info *info = samda_seg_get_info(seg);
    if (!info) abort();
    for (size_t i = 0; i < info->n_segments; i++)
        if (!samda_seg_segment_get(seg, i)) abort();
    if (samda_seg_segment_get(seg, info->n_segments)) abort();
    size_t px = (size_t)info->rows * info->cols;
    for (size_t i = 0; i < info->n_frames; i++) {
        if (!samda_seg_frame_get(seg, i)) abort();
        const uint8_t *m = samda_seg_frame_mask(seg, i);
        if (!m) abort();
        for (size_t k = 0; k < px; k++)
            if (m[k] > 1) abort();
    }
    if (samda_seg_frame_get(seg, info->n_frames) || samda_seg_frame_mask(seg, info->n_frames)) abort();
    samda_seg_free(seg);
    return 0;
}
