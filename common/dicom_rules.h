/* DICOM rules every module shares, once: value sizes (PS3.5 6.2, as buffers with their NUL) and the
 * UID rule (PS3.5 9.1, as samda applies it). Plain C, libc only, like status.h.
 * Thread-safety: pure functions and constants. */
#ifndef SAMDA_DICOM_RULES_H
#define SAMDA_DICOM_RULES_H

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A value of the given VR plus its terminating NUL. */
#define SAMDA_VR_UI_SIZE 65  /* UI: at most 64 characters */
#define SAMDA_VR_AE_SIZE 17  /* AE: 16 */
#define SAMDA_VR_CS_SIZE 17  /* CS: 16 */
#define SAMDA_VR_SH_SIZE 17  /* SH: 16 */
#define SAMDA_VR_LO_SIZE 65  /* LO: 64 */
#define SAMDA_VR_PN_SIZE 325 /* PN: 64 characters per component group, 3 groups and separators, as UTF-8 */
#define SAMDA_VR_DA_SIZE 9   /* DA: YYYYMMDD */
#define SAMDA_VR_TM_SIZE 17  /* TM: HHMMSS.FFFFFF (padded) */

/** Whether uid is usable as a DICOM UID in samda: 1 to 64 characters, only digits and dots, no empty
 *  component (no leading, trailing or double dot). Deliberately lenient about a multi-digit
 *  component starting with '0' ("1.2.04"), which PS3.5 9.1 forbids but real archives hold: refusing
 *  it would lose their studies (the SEGs samda makes reference such UIDs as received). Such UIDs are
 *  safe as file names too (only digits and dots). NULL gives false. */
bool samda_uid_is_valid(const char *uid);

#ifdef __cplusplus
}
#endif
#endif
