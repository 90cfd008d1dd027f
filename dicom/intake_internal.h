/* dicom/ module-internal: the intake check's pixel rules, shared with the volume loader so that both
 * refuse the same data sets. Never included outside dicom/. */
#ifndef SAMDA_DICOM_INTAKE_INTERNAL_H
#define SAMDA_DICOM_INTAKE_INTERNAL_H

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdatset.h>

#include "dicom.h"

/** Whether ds's pixel data (native or encapsulated) holds what Rows, Columns, SamplesPerPixel,
 *  BitsAllocated and NumberOfFrames declare (see samda_dicom_check_instance); an image storage class
 *  must have pixel data. ds must have been read with values over a few KiB left in the file.
 *  @return SAMDA_OK or SAMDA_EBADDICOM naming the attribute. Allocates nothing by a declared count. */
samda_status dicom_check_pixels(DcmDataset &ds, const samda_dicom_header &h, samda_error *err);

#endif
