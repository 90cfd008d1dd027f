/* The exception guard around the body of every extern "C" function of dicom/.
 *
 * C callers must never see a C++ exception (STYLE.md (a)): the body runs inside dicom_guard(),
 * which turns std::bad_alloc into SAMDA_ENOMEM, any other std::exception into the status the
 * caller names (SAMDA_EINTERNAL for most, SAMDA_EBADDICOM where only parsing can throw) and
 * anything else into SAMDA_EINTERNAL, with a message naming the function. It does not log:
 * the caller decides the fate of the error. */
#ifndef SAMDA_DICOM_GUARD_H
#define SAMDA_DICOM_GUARD_H

#include <exception>
#include <new>

#include "status.h"

template <class Body>
samda_status dicom_guard(samda_error *err, const char *fn, samda_status on_exception, Body &&body) noexcept
{
    try {
        return body();
    } catch (const std::bad_alloc &) {
        return samda_fail(err, SAMDA_ENOMEM, "%s: out of memory", fn);
    } catch (const std::exception &e) {
        return samda_fail(err, on_exception, "%s: %s", fn, e.what());
    } catch (...) {
        return samda_fail(err, SAMDA_EINTERNAL, "%s: unknown exception", fn);
    }
}

/* For functions that return nothing or a value and have no samda_error: swallow everything. */
template <class Body>
void dicom_guard_void(Body &&body) noexcept
{
    try {
        body();
    } catch (...) {
    }
}

#endif
