/* The one table of what samda's SCP accepts: storage SOP classes and transfer syntaxes.
 *
 * scp_assoc.cpp negotiates from it and conformance.cpp prints it into docs/conformance.md, so the
 * statement cannot drift from the code. It holds data and lookups only, no networking. */
#include <cstring>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcuid.h>

#include "dicom.h"
#include "guard.h"
#include "internal.h"

/* Every image storage class a radiology department routinely sends, plus the non-image objects
 * that travel inside the same studies (SEG, RT structures, SR, dose reports, key objects), so a
 * PACS forwarding a whole study does not see failures for them. */
const dicom_sop_class dicom_sop_classes[] = {
    {UID_CTImageStorage, "CT Image Storage", "CT"},
    {UID_EnhancedCTImageStorage, "Enhanced CT Image Storage", "CT"},
    {UID_LegacyConvertedEnhancedCTImageStorage, "Legacy Converted Enhanced CT Image Storage", "CT"},
    {UID_MRImageStorage, "MR Image Storage", "MR"},
    {UID_EnhancedMRImageStorage, "Enhanced MR Image Storage", "MR"},
    {UID_EnhancedMRColorImageStorage, "Enhanced MR Color Image Storage", "MR"},
    {UID_LegacyConvertedEnhancedMRImageStorage, "Legacy Converted Enhanced MR Image Storage", "MR"},
    {UID_ComputedRadiographyImageStorage, "Computed Radiography Image Storage", "Projection radiography"},
    {UID_DigitalXRayImageStorageForPresentation, "Digital X-Ray Image Storage - For Presentation", "Projection radiography"},
    {UID_DigitalXRayImageStorageForProcessing, "Digital X-Ray Image Storage - For Processing", "Projection radiography"},
    {UID_DigitalMammographyXRayImageStorageForPresentation, "Digital Mammography X-Ray Image Storage - For Presentation", "Mammography"},
    {UID_DigitalMammographyXRayImageStorageForProcessing, "Digital Mammography X-Ray Image Storage - For Processing", "Mammography"},
    {UID_BreastTomosynthesisImageStorage, "Breast Tomosynthesis Image Storage", "Mammography"},
    {UID_UltrasoundImageStorage, "Ultrasound Image Storage", "Ultrasound"},
    {UID_UltrasoundMultiframeImageStorage, "Ultrasound Multi-frame Image Storage", "Ultrasound"},
    {UID_NuclearMedicineImageStorage, "Nuclear Medicine Image Storage", "Nuclear medicine"},
    {UID_PositronEmissionTomographyImageStorage, "Positron Emission Tomography Image Storage", "Nuclear medicine"},
    {UID_EnhancedPETImageStorage, "Enhanced PET Image Storage", "Nuclear medicine"},
    {UID_LegacyConvertedEnhancedPETImageStorage, "Legacy Converted Enhanced PET Image Storage", "Nuclear medicine"},
    {UID_XRayAngiographicImageStorage, "X-Ray Angiographic Image Storage", "Angiography and fluoroscopy"},
    {UID_EnhancedXAImageStorage, "Enhanced XA Image Storage", "Angiography and fluoroscopy"},
    {UID_XRayRadiofluoroscopicImageStorage, "X-Ray Radiofluoroscopic Image Storage", "Angiography and fluoroscopy"},
    {UID_EnhancedXRFImageStorage, "Enhanced XRF Image Storage", "Angiography and fluoroscopy"},
    {UID_SecondaryCaptureImageStorage, "Secondary Capture Image Storage", "Secondary capture"},
    {UID_MultiframeSingleBitSecondaryCaptureImageStorage, "Multi-frame Single Bit Secondary Capture Image Storage", "Secondary capture"},
    {UID_MultiframeGrayscaleByteSecondaryCaptureImageStorage, "Multi-frame Grayscale Byte Secondary Capture Image Storage", "Secondary capture"},
    {UID_MultiframeGrayscaleWordSecondaryCaptureImageStorage, "Multi-frame Grayscale Word Secondary Capture Image Storage", "Secondary capture"},
    {UID_MultiframeTrueColorSecondaryCaptureImageStorage, "Multi-frame True Color Secondary Capture Image Storage", "Secondary capture"},
    {UID_VLPhotographicImageStorage, "VL Photographic Image Storage", "Visible light"},
    {UID_RTImageStorage, "RT Image Storage", "Radiotherapy"},
    {UID_RTStructureSetStorage, "RT Structure Set Storage", "Radiotherapy"},
    {UID_SegmentationStorage, "Segmentation Storage", "Segmentation"},
    {UID_BasicTextSRStorage, "Basic Text SR Storage", "Structured reports and documents"},
    {UID_EnhancedSRStorage, "Enhanced SR Storage", "Structured reports and documents"},
    {UID_ComprehensiveSRStorage, "Comprehensive SR Storage", "Structured reports and documents"},
    {UID_XRayRadiationDoseSRStorage, "X-Ray Radiation Dose SR Storage", "Structured reports and documents"},
    {UID_KeyObjectSelectionDocumentStorage, "Key Object Selection Document Storage", "Structured reports and documents"},
};
const size_t dicom_n_sop_classes = sizeof dicom_sop_classes / sizeof dicom_sop_classes[0];

/* Preference when one presentation context proposes several: uncompressed first (no decoding cost
 * at inference, the sender decompresses), then lossless compression, then lossy. Senders that
 * propose one transfer syntax per context get each accepted context they proposed. */
const dicom_transfer_syntax dicom_transfer_syntaxes[] = {
    {UID_LittleEndianExplicitTransferSyntax, "Explicit VR Little Endian", ""},
    {UID_LittleEndianImplicitTransferSyntax, "Implicit VR Little Endian", "the DICOM default"},
    {UID_DeflatedExplicitVRLittleEndianTransferSyntax, "Deflated Explicit VR Little Endian", ""},
    {UID_BigEndianExplicitTransferSyntax, "Explicit VR Big Endian (retired)", ""},
    {UID_JPEGLSLosslessTransferSyntax, "JPEG-LS Lossless Image Compression", "lossless"},
    {UID_JPEGProcess14SV1TransferSyntax, "JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14 SV1)", "lossless"},
    {UID_JPEGProcess14TransferSyntax, "JPEG Lossless, Non-Hierarchical (Process 14)", "lossless"},
    {UID_RLELosslessTransferSyntax, "RLE Lossless", "lossless"},
    {UID_JPEGLSLossyTransferSyntax, "JPEG-LS Lossy (Near-Lossless) Image Compression", "lossy"},
    {UID_JPEGProcess1TransferSyntax, "JPEG Baseline (Process 1)", "lossy, 8 bit"},
    {UID_JPEGProcess2_4TransferSyntax, "JPEG Extended (Process 2 & 4)", "lossy, 12 bit"},
};
const size_t dicom_n_transfer_syntaxes = sizeof dicom_transfer_syntaxes / sizeof dicom_transfer_syntaxes[0];

/* Debian's DCMTK has no JPEG 2000 codec: accepting these would store images samda cannot decode.
 * Refusing them in negotiation makes the sender fall back to a syntax it also proposed. */
const dicom_transfer_syntax dicom_refused_transfer_syntaxes[] = {
    {UID_JPEG2000LosslessOnlyTransferSyntax, "JPEG 2000 Image Compression (Lossless Only)", "refused: no decoder"},
    {UID_JPEG2000TransferSyntax, "JPEG 2000 Image Compression", "refused: no decoder"},
};
const size_t dicom_n_refused_transfer_syntaxes =
    sizeof dicom_refused_transfer_syntaxes / sizeof dicom_refused_transfer_syntaxes[0];

extern "C" bool samda_dicom_sop_class_is_accepted(const char *uid)
{
    if (!uid) return false;
    for (size_t i = 0; i < dicom_n_sop_classes; i++)
        if (std::strcmp(uid, dicom_sop_classes[i].uid) == 0) return true;
    return false;
}

extern "C" bool samda_dicom_transfer_syntax_is_accepted(const char *uid)
{
    if (!uid) return false;
    for (size_t i = 0; i < dicom_n_transfer_syntaxes; i++)
        if (std::strcmp(uid, dicom_transfer_syntaxes[i].uid) == 0) return true;
    return false;
}
