/* dicom/ module-internal: the body of samda_volume, shared by volume.cpp (which builds it) and the
 * DICOM-SEG writer (which copies the source's patient, study and equipment data from it).
 * Never included outside dicom/. */
#ifndef SAMDA_DICOM_VOLUME_INTERNAL_H
#define SAMDA_DICOM_VOLUME_INTERNAL_H

#include <memory>
#include <string>
#include <vector>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdatset.h>

#include "dicom.h"

struct samda_volume {
    samda_volume_info info{};
    std::vector<float> voxels;
    std::vector<samda_volume_slice> slices;
    samda_dicom_header header{};             /* slice 0's source instance */
    std::unique_ptr<DcmDataset> source_header; /* slice 0's data set without pixel data */
    std::vector<std::string> paths;          /* the source files, as given */
};

#endif
