// For the DICOM fuzz targets: after samda_dicom_init(), DCMTK's console logging down to FATAL (it
// otherwise prints a warning per malformed element, which costs most of each run).
#include <dcmtk/config/osconfig.h>
#include <dcmtk/oflog/oflog.h>

extern "C" void fuzz_dcmtk_quiet(void);
extern "C" void fuzz_dcmtk_quiet(void) { OFLog::configure(OFLogger::FATAL_LOG_LEVEL); }
