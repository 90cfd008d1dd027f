/* DICOM JSON (PS3.18 Annex F.2): one instance's data set as the JSON object that DICOMweb's
 * WADO-RS metadata and QIDO-RS responses are made of.
 *
 * samda walks the data set itself rather than using DCMTK's DcmJsonFormat: samda needs its own
 * bulk data URIs (tag paths under the instance URL), numbers that keep every digit of IS/DS,
 * strings that are always valid UTF-8 and output that stays valid JSON for malformed values.
 * Reading is lazy: values above a few KiB (pixel data above all) are never loaded, only measured.
 *
 * It writes JSON; it does not parse it (STOW-RS with JSON metadata is not supported). */
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <sys/stat.h>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdatset.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcelem.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcistrmb.h>
#include <dcmtk/dcmdata/dcitem.h>
#include <dcmtk/dcmdata/dcpixel.h>
#include <dcmtk/dcmdata/dcsequen.h>
#include <dcmtk/dcmdata/dcvr.h>

#include "dicom.h"
#include "guard.h"
#include "reopen.h"

namespace {

/* Values longer than this stay on disk while parsing; they are read only if written inline. */
const Uint32 lazy_read_length = 4096;

struct json_writer {
    std::string out;
    const char *bulk_base = nullptr;      /* NULL: no BulkDataURI */
    const std::vector<uint32_t> *only = nullptr; /* top-level filter (sorted), NULL = all */
};

const char hex_digits[] = "0123456789ABCDEF";

void put_tag(std::string &o, const DcmTagKey &k)
{
    unsigned v = ((unsigned)k.getGroup() << 16) | k.getElement();
    for (int s = 28; s >= 0; s -= 4) o += hex_digits[(v >> s) & 0xF];
}

/* Decode one UTF-8 sequence at s[i..n); returns its length, or 0 if not well-formed (RFC 3629:
 * no overlong forms, no surrogates, nothing above U+10FFFF). */
size_t utf8_len(const unsigned char *s, size_t i, size_t n)
{
    unsigned char c = s[i];
    size_t len;
    unsigned cp;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; }
    else return 0;
    if (i + len > n) return 0;
    for (size_t k = 1; k < len; k++) {
        if ((s[i + k] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
        return 0;
    return len;
}

/* A JSON string: escapes what RFC 8259 requires, replaces bytes that are not UTF-8 by U+FFFD. */
void put_string(std::string &o, const char *s, size_t n)
{
    const unsigned char *u = reinterpret_cast<const unsigned char *>(s);
    o += '"';
    for (size_t i = 0; i < n;) {
        unsigned char c = u[i];
        if (c == '"' || c == '\\') {
            o += '\\';
            o += (char)c;
            i++;
        } else if (c < 0x20) {
            switch (c) {
            case '\n': o += "\\n"; break;
            case '\r': o += "\\r"; break;
            case '\t': o += "\\t"; break;
            case '\f': o += "\\f"; break;
            case '\b': o += "\\b"; break;
            default:
                o += "\\u00";
                o += hex_digits[c >> 4];
                o += hex_digits[c & 0xF];
            }
            i++;
        } else {
            size_t len = utf8_len(u, i, n);
            if (len == 0) {
                o += "\xEF\xBF\xBD";
                i++;
            } else {
                o.append(s + i, len);
                i += len;
            }
        }
    }
    o += '"';
}

void put_string(std::string &o, const OFString &s) { put_string(o, s.c_str(), s.size()); }

/* IS/DS as a JSON number (RFC 8259 6) spelled with the same digits. Returns false when the text is
 * not a decimal number at all, leaving out untouched. */
bool put_number_text(std::string &o, const OFString &v, bool integer)
{
    const char *p = v.c_str(), *end = p + v.size();
    std::string n;
    if (p < end && (*p == '+' || *p == '-')) {
        if (*p == '-') n += '-';
        p++;
    }
    const char *int_start = p;
    while (p < end && *p >= '0' && *p <= '9') p++;
    std::string int_part(int_start, p);
    std::string frac;
    if (!integer && p < end && *p == '.') {
        p++;
        const char *f = p;
        while (p < end && *p >= '0' && *p <= '9') p++;
        frac.assign(f, p);
    }
    if (int_part.empty() && frac.empty()) return false;
    std::string exp;
    if (!integer && p < end && (*p == 'e' || *p == 'E')) {
        p++;
        exp = "e";
        if (p < end && (*p == '+' || *p == '-')) exp += *p++;
        const char *e = p;
        while (p < end && *p >= '0' && *p <= '9') p++;
        if (p == e) return false;
        exp.append(e, p);
    }
    if (p != end) return false;
    size_t z = int_part.find_first_not_of('0');
    int_part = z == std::string::npos ? "0" : int_part.substr(z);
    n += int_part;
    if (!frac.empty()) n += "." + frac;
    n += exp;
    o += n;
    return true;
}

void put_double(std::string &o, double d, int digits)
{
    if (!std::isfinite(d)) {
        o += "null"; /* JSON has no NaN or infinity */
        return;
    }
    char buf[40];
    std::snprintf(buf, sizeof buf, "%.*g", digits, d);
    o += buf;
}

void put_base64(std::string &o, const unsigned char *d, size_t n)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    o += '"';
    size_t i = 0;
    for (; i + 2 < n; i += 3) {
        unsigned v = (unsigned)d[i] << 16 | (unsigned)d[i + 1] << 8 | d[i + 2];
        o += b64[v >> 18];
        o += b64[(v >> 12) & 63];
        o += b64[(v >> 6) & 63];
        o += b64[v & 63];
    }
    if (i < n) {
        unsigned v = (unsigned)d[i] << 16 | (i + 1 < n ? (unsigned)d[i + 1] << 8 : 0);
        o += b64[v >> 18];
        o += b64[(v >> 12) & 63];
        o += i + 1 < n ? b64[(v >> 6) & 63] : '=';
        o += '=';
    }
    o += '"';
}

/* The VR to write. DCMTK's internal VRs (ambiguous ones of implicit VR files, pixel data) become
 * the standard VR the value is encoded in. */
const char *vr_name(DcmElement *el, bool encapsulated)
{
    if (el->ident() == EVR_SQ) return "SQ"; /* includes UN of undefined length read as a sequence */
    if (encapsulated) return "OB";
    switch (el->getVR()) {
    case EVR_ox:
    case EVR_px:
    case EVR_PixelData:
    case EVR_OverlayData:
    case EVR_lt:
        return "OW"; /* PS3.5 A.1: implicit VR pixel and overlay data are OW */
    case EVR_xs: return "US";
    case EVR_up: return "UL";
    case EVR_na:
    case EVR_UNKNOWN:
    case EVR_UNKNOWN2B:
        return "UN";
    default: break;
    }
    DcmVR vr(el->getVR());
    return vr.getValidVRName();
}

bool is_string_vr(const char *vr)
{
    static const char *const list[] = {"AE", "AS", "CS", "DA", "DT", "LO", "LT", "SH", "ST", "TM", "UC",
                                       "UI", "UR", "UT"};
    for (const char *v : list)
        if (std::strcmp(vr, v) == 0) return true;
    return false;
}

bool is_binary_vr(const char *vr)
{
    static const char *const list[] = {"OB", "OD", "OF", "OL", "OV", "OW", "UN"};
    for (const char *v : list)
        if (std::strcmp(vr, v) == 0) return true;
    return false;
}

/* PS3.18 F.2.2: a PN value is an object of up to three component groups, empty ones left out. */
void put_person_name(std::string &o, const OFString &v)
{
    static const char *const groups[] = {"Alphabetic", "Ideographic", "Phonetic"};
    std::string s(v.c_str(), v.size());
    std::string parts[3];
    size_t g = 0, start = 0;
    for (size_t i = 0; i <= s.size() && g < 3; i++) {
        if (i == s.size() || s[i] == '=') {
            parts[g++] = s.substr(start, i - start);
            start = i + 1;
        }
    }
    bool any = false;
    for (const auto &p : parts) any |= !p.empty();
    if (!any) {
        o += "null";
        return;
    }
    o += '{';
    bool first = true;
    for (int k = 0; k < 3; k++) {
        if (parts[k].empty()) continue;
        if (!first) o += ',';
        first = false;
        o += '"';
        o += groups[k];
        o += "\":";
        put_string(o, parts[k].c_str(), parts[k].size());
    }
    o += '}';
}

void write_item(json_writer &w, DcmItem &item, const std::string &path, int depth);

/* "Value": [...] for the non-binary, non-sequence VRs; nothing for an empty attribute. */
void put_values(json_writer &w, DcmElement *el, const char *vr)
{
    std::string &o = w.out;
    unsigned long vm = el->getVM();
    if (el->getLength() == 0 || vm == 0) return;
    bool single = !std::strcmp(vr, "LT") || !std::strcmp(vr, "ST") || !std::strcmp(vr, "UT") || !std::strcmp(vr, "UR");
    if (single) vm = 1;
    o += ",\"Value\":[";
    for (unsigned long i = 0; i < vm; i++) {
        if (i) o += ',';
        OFString s;
        if (is_string_vr(vr)) {
            if (el->getOFString(s, i, OFTrue).bad() || s.empty()) o += "null";
            else put_string(o, s);
        } else if (!std::strcmp(vr, "PN")) {
            if (el->getOFString(s, i, OFTrue).bad()) o += "null";
            else put_person_name(o, s);
        } else if (!std::strcmp(vr, "IS") || !std::strcmp(vr, "DS")) {
            if (el->getOFString(s, i, OFTrue).bad() || s.empty()) o += "null";
            else if (!put_number_text(o, s, vr[0] == 'I')) o += "null"; /* not a number: JSON has no way to say it */
        } else if (!std::strcmp(vr, "AT")) {
            DcmTagKey k;
            if (el->getTagVal(k, i).bad()) o += "null";
            else {
                o += '"';
                put_tag(o, k);
                o += '"';
            }
        } else if (!std::strcmp(vr, "US")) {
            Uint16 v = 0;
            o += el->getUint16(v, i).good() ? std::to_string(v) : "null";
        } else if (!std::strcmp(vr, "SS")) {
            Sint16 v = 0;
            o += el->getSint16(v, i).good() ? std::to_string(v) : "null";
        } else if (!std::strcmp(vr, "UL")) {
            Uint32 v = 0;
            o += el->getUint32(v, i).good() ? std::to_string(v) : "null";
        } else if (!std::strcmp(vr, "SL")) {
            Sint32 v = 0;
            o += el->getSint32(v, i).good() ? std::to_string(v) : "null";
        } else if (!std::strcmp(vr, "UV")) {
            Uint64 v = 0;
            o += el->getUint64(v, i).good() ? std::to_string((unsigned long long)v) : "null";
        } else if (!std::strcmp(vr, "SV")) {
            Sint64 v = 0;
            o += el->getSint64(v, i).good() ? std::to_string((long long)v) : "null";
        } else if (!std::strcmp(vr, "FL")) {
            Float32 v = 0;
            if (el->getFloat32(v, i).good()) put_double(o, v, 9);
            else o += "null";
        } else if (!std::strcmp(vr, "FD")) {
            Float64 v = 0;
            if (el->getFloat64(v, i).good()) put_double(o, v, 17);
            else o += "null";
        } else {
            /* A VR this walker does not know: its text, which DCMTK can always give. */
            if (el->getOFString(s, i, OFTrue).bad()) o += "null";
            else put_string(o, s);
        }
    }
    o += ']';
}

void put_binary(json_writer &w, DcmElement *el, const std::string &tag_path, bool is_pixel_data, bool encapsulated)
{
    std::string &o = w.out;
    Uint32 len = el->getLengthField();
    if (!encapsulated && len == 0) return;
    if (!encapsulated && !is_pixel_data && len <= SAMDA_DICOM_JSON_INLINE_MAX) {
        std::vector<unsigned char> buf(len);
        /* PS3.18 F.2.7: InlineBinary holds the little-endian encoding. */
        if (el->getPartialValue(buf.data(), 0, len, nullptr, EBO_LittleEndian).good()) {
            o += ",\"InlineBinary\":";
            put_base64(o, buf.data(), buf.size());
        }
        return;
    }
    if (!w.bulk_base) return;
    std::string uri = w.bulk_base;
    uri += is_pixel_data && tag_path == "7FE00010" ? "/pixeldata" : "/bulkdata/" + tag_path;
    o += ",\"BulkDataURI\":";
    put_string(o, uri.c_str(), uri.size());
}

/* Largest UN value re-read with its dictionary VR (bigger ones stay UN: they are bulk data). */
const Uint32 un_reparse_max = 65536;

/* A value stored as UN (explicit VR files written by a system that did not know the tag) whose tag
 * the dictionary knows is written with the dictionary's VR, as pydicom and most DICOMweb servers
 * do. PS3.5 6.2.2: a UN value is always encoded as Implicit VR Little Endian, so the value is
 * parsed again as one implicit element. Returns NULL when it stays UN. */
DcmElement *reparse_un(DcmElement *el, std::unique_ptr<DcmDataset> &holder)
{
    if (el->getVR() != EVR_UN || el->ident() == EVR_SQ) return nullptr;
    DcmTagKey k = el->getTag();
    Uint32 len = el->getLengthField();
    if (len == DCM_UndefinedLength || len > un_reparse_max) return nullptr;
    DcmTag dict(k); /* private tags other than creators have no creator here: they stay UN */
    DcmEVR evr = dict.getEVR();
    if (evr == EVR_UN || evr == EVR_UNKNOWN || evr == EVR_UNKNOWN2B || evr == EVR_na) return nullptr;
    std::vector<unsigned char> buf(8 + (size_t)len);
    Uint16 g = k.getGroup(), e = k.getElement();
    unsigned char head[8] = {(unsigned char)(g & 0xFF), (unsigned char)(g >> 8), (unsigned char)(e & 0xFF),
                             (unsigned char)(e >> 8), (unsigned char)(len & 0xFF), (unsigned char)((len >> 8) & 0xFF),
                             (unsigned char)((len >> 16) & 0xFF), (unsigned char)(len >> 24)};
    std::memcpy(buf.data(), head, 8);
    if (len && el->getPartialValue(buf.data() + 8, 0, len, nullptr, EBO_LittleEndian).bad()) return nullptr;
    DcmInputBufferStream in;
    in.setBuffer(buf.data(), (offile_off_t)buf.size());
    in.setEos();
    holder.reset(new DcmDataset);
    holder->transferInit();
    OFCondition cond = holder->read(in, EXS_LittleEndianImplicit, EGL_noChange);
    holder->transferEnd();
    if (cond.bad() || holder->card() != 1) return nullptr;
    DcmElement *re = holder->getElement(0);
    return re && re->getVR() != EVR_UN ? re : nullptr;
}

void write_element(json_writer &w, DcmElement *el, const std::string &parent, int depth)
{
    std::unique_ptr<DcmDataset> holder; /* owns a re-parsed UN value while it is written */
    if (DcmElement *re = reparse_un(el, holder)) el = re;
    std::string &o = w.out;
    DcmTagKey k = el->getTag();
    std::string tag_path = parent;
    if (!tag_path.empty()) tag_path += '/';
    put_tag(tag_path, k);
    bool is_pixel_data = k == DCM_PixelData;
    bool encapsulated = is_pixel_data && el->getLengthField() == DCM_UndefinedLength;
    const char *vr = vr_name(el, encapsulated);
    o += '"';
    put_tag(o, k);
    o += "\":{\"vr\":\"";
    o += vr;
    o += '"';
    if (!std::strcmp(vr, "SQ")) {
        DcmSequenceOfItems *sq = static_cast<DcmSequenceOfItems *>(el);
        unsigned long n = sq->card();
        if (n) {
            o += ",\"Value\":[";
            for (unsigned long i = 0; i < n; i++) {
                if (i) o += ',';
                write_item(w, *sq->getItem(i), tag_path + "/" + std::to_string(i), depth + 1);
            }
            o += ']';
        }
    } else if (is_binary_vr(vr)) {
        put_binary(w, el, tag_path, is_pixel_data, encapsulated);
    } else {
        put_values(w, el, vr);
    }
    o += '}';
}

void write_item(json_writer &w, DcmItem &item, const std::string &path, int depth)
{
    std::string &o = w.out;
    o += '{';
    bool first = true;
    unsigned long n = item.card();
    for (unsigned long i = 0; i < n; i++) {
        DcmElement *el = item.getElement(i);
        if (!el) continue;
        DcmTagKey k = el->getTag();
        /* PS3.18 F.2: no file meta information, no group lengths, no command or item tags. */
        if (k.getElement() == 0x0000 || k.getGroup() == 0x0000 || k.getGroup() == 0x0002 || k.getGroup() == 0xFFFE)
            continue;
        if (depth == 0 && w.only) {
            uint32_t t = ((uint32_t)k.getGroup() << 16) | k.getElement();
            if (!std::binary_search(w.only->begin(), w.only->end(), t)) continue;
        }
        if (!first) o += ',';
        first = false;
        write_element(w, el, path, depth);
    }
    o += '}';
}

samda_status load(const char *path, DcmFileFormat &ff, samda_error *err)
{
    struct stat sb;
    if (stat(path, &sb) != 0) {
        int e = errno;
        return samda_fail(err, e == ENOENT ? SAMDA_ENOENT : SAMDA_EIO, "writing DICOM JSON for %s: %s", path,
                          std::strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) return samda_fail(err, SAMDA_EIO, "writing DICOM JSON for %s: not a regular file", path);
    OFCondition cond = dicom_reopen::load_file(ff, path, lazy_read_length);
    if (cond.bad()) return samda_fail(err, SAMDA_EBADDICOM, "writing DICOM JSON for %s: %s", path, cond.text());
    /* JSON is UTF-8 (RFC 8259 8.1). If DCMTK cannot convert (unknown character set, no iconv),
     * the text stays as stored and put_string() replaces what is not UTF-8. */
    OFString cs;
    DcmDataset *ds = ff.getDataset();
    if (ds->findAndGetOFStringArray(DCM_SpecificCharacterSet, cs).good() && !cs.empty() && cs != "ISO_IR 192" &&
        cs != "ISO_IR 6" && cs != "ISO 2022 IR 6")
        (void)ds->convertToUTF8(); /* only then: DCMTK would add "ISO_IR 192" to a data set that had none */
    return SAMDA_OK;
}

samda_status finish(json_writer &w, char **json, samda_error *err)
{
    char *s = static_cast<char *>(std::malloc(w.out.size() + 1));
    if (!s) return samda_fail(err, SAMDA_ENOMEM, "writing DICOM JSON: out of memory (%zu bytes)", w.out.size());
    std::memcpy(s, w.out.data(), w.out.size());
    s[w.out.size()] = '\0';
    *json = s;
    return SAMDA_OK;
}

} // namespace

extern "C" samda_status samda_dicom_file_to_json(const char *path, const char *bulkdata_uri, char **json,
                                                 samda_error *err)
{
    if (json) *json = nullptr;
    if (!path || !json) return samda_fail(err, SAMDA_EINVAL, "writing DICOM JSON: no %s", path ? "output" : "path");
    return dicom_guard(err, "writing DICOM JSON", SAMDA_EBADDICOM, [&]() -> samda_status {
        DcmFileFormat ff;
        samda_status st = load(path, ff, err);
        if (st != SAMDA_OK) return st;
        json_writer w;
        w.bulk_base = bulkdata_uri && *bulkdata_uri ? bulkdata_uri : nullptr;
        write_item(w, *ff.getDataset(), "", 0);
        return finish(w, json, err);
    });
}

extern "C" samda_status samda_dicom_dataset_json_attrs(const char *path, const uint32_t *tags, size_t n,
                                                       char **json, samda_error *err)
{
    if (json) *json = nullptr;
    if (!path || !json || (n && !tags))
        return samda_fail(err, SAMDA_EINVAL, "writing DICOM JSON attributes: no %s",
                          !path ? "path" : !json ? "output" : "tag list");
    return dicom_guard(err, "writing DICOM JSON attributes", SAMDA_EBADDICOM, [&]() -> samda_status {
        std::vector<uint32_t> only(tags, tags + n);
        std::sort(only.begin(), only.end());
        json_writer w;
        w.only = &only;
        DcmFileFormat ff;
        samda_status st = load(path, ff, err);
        if (st != SAMDA_OK) return st;
        write_item(w, *ff.getDataset(), "", 0);
        return finish(w, json, err);
    });
}
