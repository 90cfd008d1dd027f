/* dicom/ module-internal: numbers written as DICOM Decimal Strings. Never included outside dicom/. */
#ifndef SAMDA_DICOM_DS_VALUE_H
#define SAMDA_DICOM_DS_VALUE_H

#include <cstdio>
#include <cstring>
#include <string>

/* A DS value fits 16 characters (PS3.5 6.2): the most significant digits that fit. */
inline std::string dicom_ds_value(double v)
{
    char buf[40];
    for (int prec = 12; prec >= 1; prec--) {
        std::snprintf(buf, sizeof buf, "%.*g", prec, v);
        if (std::strlen(buf) <= 16) return buf;
    }
    std::snprintf(buf, sizeof buf, "%.6e", v);
    return buf;
}

/* n values joined by the DICOM separator. */
inline std::string dicom_ds_multi(const double *v, int n)
{
    std::string s;
    for (int i = 0; i < n; i++) {
        if (i) s += '\\';
        s += dicom_ds_value(v[i]);
    }
    return s;
}

#endif
