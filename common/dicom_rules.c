/* The DICOM rules every module shares (dicom_rules.h). */
#include "dicom_rules.h"

#include <stddef.h>

bool samda_uid_is_valid(const char *uid)
{
    if (!uid) return false;
    size_t n = 0;
    char prev = '.'; /* a leading dot reads as an empty component */
    for (const char *p = uid; *p; p++, n++) {
        if (n >= 64) return false;
        if (*p == '.') {
            if (prev == '.') return false;
        } else if (*p < '0' || *p > '9') {
            return false;
        }
        prev = *p;
    }
    return n > 0 && prev != '.';
}
