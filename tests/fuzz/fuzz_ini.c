/* libFuzzer target for the daemon's INI configuration (daemon/config.c: samda_config_load, with
 * inih underneath). The input is the file, handed over as an in-memory file; a successful load is
 * written back out (samda_config_write_effective, to /dev/null) and released. Memory errors, leaks
 * and UB are caught by ASan/UBSan (the build adds them). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "config.h"
#include "fuzz_memfd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static FILE *devnull;
    if (!devnull && !(devnull = fopen("/dev/null", "w"))) abort();
    const char *path = fuzz_memfd_path(data, size, NULL);
    if (!path) return 0;
    samda_error e = {SAMDA_OK, ""};
    samda_config *c = samda_config_load(path, NULL, &e);
    if (!c) {
        if (!e.message[0]) abort();
        return 0;
    }
    samda_config_write_effective(c, devnull);
    samda_config_unref(c);
    return 0;
}
