/* libFuzzer target for the series loader (dicom/volume.cpp) and the intake check (dicom/intake.cpp):
 * the input is one instance, handed over as an in-memory file; it is checked as C-STORE and STOW-RS
 * intake do, and loaded as a one-instance series whatever the check said (instances stored before
 * the check existed reach the loader too). The loader runs with max_voxels 2^22 and the target with
 * a 512 MiB allocation limit (tests/fuzz/CMakeLists.txt): an allocation sized by a declared count
 * (NumberOfFrames, a length) before it is checked against the data is reported as out-of-memory.
 * On success the volume must answer within the counts it reports. */
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
    samda_dicom_header h;
    samda_error e = {SAMDA_OK, ""};
    if (samda_dicom_read_header(path, &h, &e) == SAMDA_OK) {
        samda_status st = samda_dicom_check_instance(path, &h, &e);
        if (st != SAMDA_OK && !e.message[0]) abort();
    }
    samda_volume_params p;
    samda_volume_params_init(&p);
    p.max_voxels = (uint64_t)1 << 22;
    samda_volume *v = NULL;
    const char *paths[1] = {path};
    samda_status st = samda_dicom_volume_load(paths, 1, &p, &v, &e);
    if (st != SAMDA_OK) {
        if (v || !e.message[0]) abort();
        return 0;
    }
    const samda_volume_info *in = samda_volume_get_info(v);
    if (!in || in->n_slices == 0 || (uint64_t)in->n_slices * in->rows * in->cols > p.max_voxels) abort();
    const float *vox = samda_volume_voxels(v);
    volatile float sink = 0;
    for (size_t i = 0; i < in->n_slices * in->rows * in->cols; i += 997) sink += vox[i];
    (void)sink;
    for (size_t i = 0; i < in->n_slices; i++)
        if (!samda_volume_slice_get(v, i)) abort();
    if (samda_volume_slice_get(v, in->n_slices) || !samda_volume_source_header(v)) abort();
    samda_volume_free(v);
    return 0;
}
