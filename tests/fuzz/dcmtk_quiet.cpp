// For the DICOM fuzz targets: the module set up as samdad does (samda_dicom_init: codecs, stop after
// Pixel Data), then DCMTK's console logging down to FATAL (it otherwise prints a warning per
// malformed element, which costs most of each run). Once per process.
#include <dcmtk/config/osconfig.h>
#include <dcmtk/oflog/oflog.h>

#include <cstdlib>

#include "dicom.h"

extern "C" void fuzz_dicom_setup(void);
extern "C" void fuzz_dicom_setup(void)
{
    static bool ready;
    if (ready) return;
    if (samda_dicom_init(NULL, NULL) != SAMDA_OK) abort();
    OFLog::configure(OFLogger::FATAL_LOG_LEVEL);
    ready = true;
}
