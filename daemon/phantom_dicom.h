/* `samda phantom --dicom`: a generated body as a CT series plus its ground truth as DICOM-SEG. */
#ifndef SAMDA_DAEMON_PHANTOM_DICOM_H
#define SAMDA_DAEMON_PHANTOM_DICOM_H

#include "phantom.h"

/** samda_phantom_dicom_fn for the samda CLI (ctx unused). Writes DIR/dicom/<site>_<body>/IMG*.dcm
 *  and DIR/dicom/<site>_<body>.seg.dcm; the SEG references the series it was made from. */
samda_status samdad_phantom_write_dicom(void *ctx, const samda_phantom_volume *v, const char *site, long body,
                                        const char *dir, samda_error *err);

#endif
