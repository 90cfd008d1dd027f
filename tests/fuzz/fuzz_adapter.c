/* libFuzzer target for the adapter upload check (api/safetensors.c: samda_safetensors_check_fd,
 * run on every PUT/POST of a decoder adapter before the core sees it). The input is the file,
 * handed over as an in-memory file. fuzz_safetensors covers the model-side reader
 * (model/safetensors.cpp) that loads an accepted adapter. Memory errors, leaks and UB are caught
 * by ASan/UBSan (the build adds them). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "safetensors.h"
#include "fuzz_memfd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = -1;
    if (!fuzz_memfd_path(data, size, &fd)) return 0;
    samda_safetensors_params p;
    samda_safetensors_params_init(&p);
    p.max_header_bytes = 1u << 20;
    samda_safetensors_info info;
    samda_error e = {SAMDA_OK, ""};
    samda_status st = samda_safetensors_check_fd(fd, &p, &info, &e);
    if (st == SAMDA_OK) {
        if (info.file_bytes != size || info.header_bytes + 8 + info.data_bytes != size) abort();
    } else if (!e.message[0]) {
        abort();
    }
    samda_safetensors_info_clear(&info);
    return 0;
}
