/* UID validation and generation (PS3.5 9.1, B.2).
 *
 * Validation decides what may ever become part of a path in the object store, so it is strict
 * about the character set and length and lenient only about leading zeros (see dicom.h). */
#include <cerrno>
#include <cstring>
#include <string>

#include "dicom.h"
#include "guard.h"
#include "random.h"

extern "C" bool samda_dicom_uid_is_valid(const char *uid) { return samda_uid_is_valid(uid); }

static std::string to_decimal(unsigned __int128 v)
{
    if (v == 0) return "0";
    std::string s;
    while (v) {
        s.insert(s.begin(), (char)('0' + (int)(v % 10)));
        v /= 10;
    }
    return s;
}

extern "C" samda_status samda_dicom_uid_generate(char out[SAMDA_DICOM_UID_SIZE], const char *root,
                                                 samda_error *err)
{
    if (!out) return samda_fail(err, SAMDA_EINVAL, "generating a UID: no output buffer");
    out[0] = '\0';
    return dicom_guard(err, "generating a UID", SAMDA_EINTERNAL, [&]() -> samda_status {
        bool uuid = !root || !*root;
        if (!uuid) {
            if (!samda_dicom_uid_is_valid(root))
                return samda_fail(err, SAMDA_EINVAL, "generating a UID: root \"%.64s\" is not a valid UID "
                                  "(digits and dots, no empty component)", root);
            if (std::strlen(root) > 40)
                return samda_fail(err, SAMDA_EINVAL, "generating a UID: root is %zu characters, at most 40 "
                                  "leave room for 20 random digits", std::strlen(root));
        }
        unsigned char b[16];
        if (samda_random_bytes(b, sizeof b, err) != SAMDA_OK) {
            samda_error_prefix(err, "generating a UID: ");
            return SAMDA_EIO;
        }
        std::string uid;
        if (uuid) {
            /* RFC 4122 version 4 (random) and variant 10xx, so the number is a real UUID. */
            b[6] = (unsigned char)((b[6] & 0x0F) | 0x40);
            b[8] = (unsigned char)((b[8] & 0x3F) | 0x80);
            unsigned __int128 v = 0;
            for (unsigned char c : b) v = (v << 8) | c;
            uid = "2.25." + to_decimal(v);
        } else {
            b[0] |= 0x80; /* at least 2^127: 39 digits, so truncation below always keeps >= 20 */
            unsigned __int128 v = 0;
            for (unsigned char c : b) v = (v << 8) | c;
            std::string digits = to_decimal(v);
            size_t room = 64 - std::strlen(root) - 1;
            if (digits.size() > room) digits.resize(room);
            uid = std::string(root) + "." + digits;
        }
        std::memcpy(out, uid.c_str(), uid.size() + 1);
        return SAMDA_OK;
    });
}
