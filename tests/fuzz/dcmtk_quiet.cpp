// For the DICOM fuzz targets: DCMTK's console logging down to FATAL (it otherwise prints a warning
// per malformed element, which costs most of each run), without samda_dicom_init(). That function
// also sets DCMTK's process-wide dcmStopParsingAfterElement, and with it set DCMTK 3.6.7 crashes
// (null dereference in DcmItem::readUntilTag) on inputs such as
// tests/fuzz/known-crashes/dicom_stop_after_pixel_data_segv: see tests/fuzz/known-crashes/README.
// Once samda no longer sets that global, the targets should call samda_dicom_init() instead.
#include <dcmtk/config/osconfig.h>
#include <dcmtk/oflog/oflog.h>

extern "C" void fuzz_dcmtk_quiet(void);
extern "C" void fuzz_dcmtk_quiet(void) { OFLog::configure(OFLogger::FATAL_LOG_LEVEL); }
