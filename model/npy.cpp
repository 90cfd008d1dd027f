/* .npy reader and writer (see npy.h). The header is a Python dict literal; it is read by a small
 * tokenizer that accepts only strings, True/False and tuples of non-negative integers, the three
 * things numpy writes there ('descr', 'fortran_order', 'shape'). Nothing is evaluated. */
#include "npy.h"

#include "atomic_file.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <sstream>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace samda {
namespace npy {

size_t dtype_size(DType dt)
{
    switch (dt) {
    case DType::F16: return 2;
    case DType::F32: return 4;
    case DType::F64: return 8;
    case DType::I8: return 1;
    case DType::I16: return 2;
    case DType::I32: return 4;
    case DType::I64: return 8;
    case DType::U8: return 1;
    case DType::U16: return 2;
    case DType::U32: return 4;
    case DType::U64: return 8;
    case DType::Bool: return 1;
    }
    return 1;
}

const char *dtype_descr(DType dt)
{
    switch (dt) {
    case DType::F16: return "<f2";
    case DType::F32: return "<f4";
    case DType::F64: return "<f8";
    case DType::I8: return "|i1";
    case DType::I16: return "<i2";
    case DType::I32: return "<i4";
    case DType::I64: return "<i8";
    case DType::U8: return "|u1";
    case DType::U16: return "<u2";
    case DType::U32: return "<u4";
    case DType::U64: return "<u8";
    case DType::Bool: return "|b1";
    }
    return "?";
}

namespace {

template <typename... Args> std::string cat(Args &&...args)
{
    std::ostringstream os;
    (os << ... << args);
    return os.str();
}

bool host_is_little()
{
    const uint16_t one = 1;
    uint8_t b;
    memcpy(&b, &one, 1);
    return b == 1;
}

void byteswap_all(uint8_t *p, size_t n_elems, size_t es)
{
    if (es == 1) return;
    for (size_t i = 0; i < n_elems; i++, p += es)
        for (size_t a = 0, b = es - 1; a < b; a++, b--) std::swap(p[a], p[b]);
}

std::string shape_str(const std::vector<int64_t> &s)
{
    std::string o = "(";
    for (size_t i = 0; i < s.size(); i++) o += (i ? ", " : "") + std::to_string(s[i]);
    if (s.size() == 1) o += ",";
    return o + ")";
}

/* Tokenizer over the header text. */
struct Header {
    const char *p, *e;
    [[noreturn]] void fail(const std::string &m) { throw Error("header: " + m); }
    void ws()
    {
        while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    }
    bool eat(char c)
    {
        ws();
        if (p < e && *p == c) {
            p++;
            return true;
        }
        return false;
    }
    std::string str(const char *what)
    {
        ws();
        if (p >= e || (*p != '\'' && *p != '"')) fail(cat(what, ": expected a quoted string"));
        char q = *p++;
        const char *s = p;
        while (p < e && *p != q) {
            if (*p == '\\') fail(cat(what, ": escapes are not supported"));
            p++;
        }
        if (p >= e) fail(cat(what, ": unterminated string"));
        std::string out(s, (size_t)(p - s));
        p++;
        return out;
    }
    bool boolean(const char *what)
    {
        ws();
        if ((size_t)(e - p) >= 4 && memcmp(p, "True", 4) == 0) {
            p += 4;
            return true;
        }
        if ((size_t)(e - p) >= 5 && memcmp(p, "False", 5) == 0) {
            p += 5;
            return false;
        }
        fail(cat(what, ": expected True or False"));
    }
    std::vector<int64_t> tuple(const char *what)
    {
        std::vector<int64_t> v;
        if (!eat('(')) fail(cat(what, ": expected a tuple of integers"));
        for (;;) {
            if (eat(')')) return v;
            ws();
            if (p >= e || *p < '0' || *p > '9') fail(cat(what, ": expected a non-negative integer"));
            int64_t x = 0;
            while (p < e && *p >= '0' && *p <= '9') {
                if (__builtin_mul_overflow(x, 10, &x) || __builtin_add_overflow(x, *p - '0', &x))
                    fail(cat(what, ": integer overflows 64 bits"));
                p++;
            }
            if (p < e && *p == 'L') p++; /* Python 2 long */
            v.push_back(x);
            if (v.size() > 64) fail(cat(what, ": more than 64 dimensions"));
            if (eat(')')) return v;
            if (!eat(',')) fail(cat(what, ": expected ',' or ')'"));
        }
    }
};

DType parse_descr(const std::string &d, bool *swap)
{
    if (d.size() < 3) throw Error(cat("header: 'descr' '", d, "' is not a plain numeric dtype"));
    char order = d[0];
    std::string code = d.substr(1);
    DType dt;
    if (code == "f2") dt = DType::F16;
    else if (code == "f4") dt = DType::F32;
    else if (code == "f8") dt = DType::F64;
    else if (code == "i1") dt = DType::I8;
    else if (code == "i2") dt = DType::I16;
    else if (code == "i4") dt = DType::I32;
    else if (code == "i8") dt = DType::I64;
    else if (code == "u1") dt = DType::U8;
    else if (code == "u2") dt = DType::U16;
    else if (code == "u4") dt = DType::U32;
    else if (code == "u8") dt = DType::U64;
    else if (code == "b1") dt = DType::Bool;
    else throw Error(cat("header: 'descr' '", d, "' is not supported (f2 f4 f8 i1 i2 i4 i8 u1 u2 u4 u8 b1)"));
    bool little = host_is_little();
    if (order == '<') *swap = !little;
    else if (order == '>') *swap = little;
    else if (order == '|' || order == '=') *swap = false;
    else throw Error(cat("header: 'descr' '", d, "' has an unknown byte-order mark"));
    if (dtype_size(dt) == 1) *swap = false;
    return dt;
}

} // namespace

int64_t Array::numel() const
{
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    return n;
}

float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while (!(man & 0x400));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t float_to_half(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t exp = (x >> 23) & 0xff, man = x & 0x7fffff;
    if (exp == 0xff) return (uint16_t)(sign | 0x7c00 | (man ? 0x200 : 0));
    int e = (int)exp - 127 + 15;
    if (e >= 31) return (uint16_t)(sign | 0x7c00);
    if (e <= 0) {
        if (e < -10) return sign;
        man |= 0x800000;
        uint32_t shift = (uint32_t)(14 - e);
        uint32_t h = man >> shift, rem = man & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1))) h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = ((uint32_t)e << 10) | (man >> 13), rem = man & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++; /* may carry into the exponent: still right */
    return (uint16_t)(sign | h);
}

std::vector<float> Array::to_float32() const
{
    size_t n = (size_t)numel();
    if (data.size() != n * dtype_size(dtype)) throw Error("npy: array data size does not match its shape");
    std::vector<float> out(n);
    const uint8_t *p = data.data();
    auto conv = [&](auto tag) {
        using T = decltype(tag);
        for (size_t i = 0; i < n; i++) {
            T v;
            memcpy(&v, p + i * sizeof(T), sizeof(T));
            out[i] = (float)v;
        }
    };
    switch (dtype) {
    case DType::F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            out[i] = half_to_float(h);
        }
        break;
    case DType::F32: conv(float()); break;
    case DType::F64: conv(double()); break;
    case DType::I8: conv(int8_t()); break;
    case DType::I16: conv(int16_t()); break;
    case DType::I32: conv(int32_t()); break;
    case DType::I64: conv(int64_t()); break;
    case DType::U8: conv(uint8_t()); break;
    case DType::U16: conv(uint16_t()); break;
    case DType::U32: conv(uint32_t()); break;
    case DType::U64: conv(uint64_t()); break;
    case DType::Bool:
        for (size_t i = 0; i < n; i++) out[i] = p[i] ? 1.0f : 0.0f;
        break;
    }
    return out;
}

Array from_float32(const std::vector<int64_t> &shape, const std::vector<float> &values)
{
    Array a;
    a.dtype = DType::F32;
    a.shape = shape;
    if (a.numel() < 0 || (size_t)a.numel() != values.size())
        throw Error(cat("npy: ", values.size(), " values do not fill shape ", shape_str(shape)));
    a.data.resize(values.size() * 4);
    if (!values.empty()) memcpy(a.data.data(), values.data(), a.data.size());
    return a;
}

Array parse(const uint8_t *b, size_t n)
{
    static const uint8_t magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
    if (n < 10 || memcmp(b, magic, 6) != 0) throw Error("not a .npy file (magic \\x93NUMPY missing)");
    uint8_t major = b[6], minor = b[7];
    size_t pre, hlen;
    if (major == 1) {
        pre = 10;
        hlen = (size_t)b[8] | ((size_t)b[9] << 8);
    } else if (major == 2 || major == 3) {
        if (n < 12) throw Error("header: truncated header length");
        pre = 12;
        hlen = (size_t)b[8] | ((size_t)b[9] << 8) | ((size_t)b[10] << 16) | ((size_t)b[11] << 24);
    } else {
        throw Error(cat("header: format version ", (int)major, ".", (int)minor, " is not supported (1.0, 2.0, 3.0)"));
    }
    if (hlen > n - pre) throw Error(cat("header: length ", hlen, " runs past the end of the file (", n, " bytes)"));

    Header h{(const char *)b + pre, (const char *)b + pre + hlen};
    bool have_descr = false, have_order = false, have_shape = false, fortran = false, swap = false;
    DType dt = DType::F32;
    std::vector<int64_t> shape;
    if (!h.eat('{')) h.fail("expected a dict literal '{'");
    for (;;) {
        if (h.eat('}')) break;
        std::string key = h.str("key");
        if (!h.eat(':')) h.fail(cat("'", key, "': expected ':'"));
        if (key == "descr") {
            h.ws();
            if (h.p < h.e && *h.p == '[') h.fail("'descr': structured dtypes are not supported");
            dt = parse_descr(h.str("'descr'"), &swap);
            have_descr = true;
        } else if (key == "fortran_order") {
            fortran = h.boolean("'fortran_order'");
            have_order = true;
        } else if (key == "shape") {
            shape = h.tuple("'shape'");
            have_shape = true;
        } else {
            h.fail(cat("unexpected key '", key, "'"));
        }
        if (h.eat('}')) break;
        if (!h.eat(',')) h.fail("expected ',' or '}' after a value");
    }
    if (!have_descr) h.fail("'descr' missing");
    if (!have_order) h.fail("'fortran_order' missing");
    if (!have_shape) h.fail("'shape' missing");

    size_t es = dtype_size(dt);
    uint64_t numel = 1;
    for (int64_t s : shape)
        if (__builtin_mul_overflow(numel, (uint64_t)s, &numel)) h.fail(cat("'shape' ", shape_str(shape), " overflows"));
    uint64_t nbytes;
    if (__builtin_mul_overflow(numel, (uint64_t)es, &nbytes) || nbytes > (uint64_t)INT64_MAX)
        h.fail(cat("'shape' ", shape_str(shape), " overflows"));
    size_t avail = n - pre - hlen;
    if (avail < nbytes)
        throw Error(cat("data: shape ", shape_str(shape), " of ", dtype_descr(dt), " needs ", nbytes, " bytes but ",
                        avail, " follow the header (truncated?)"));
    if (avail > nbytes) throw Error(cat("data: ", avail - nbytes, " unexpected bytes after the array"));

    Array a;
    a.dtype = dt;
    a.shape = shape;
    const uint8_t *src = b + pre + hlen;
    a.data.resize((size_t)nbytes);
    if (!fortran || shape.size() < 2 || numel == 0) {
        if (nbytes) memcpy(a.data.data(), src, (size_t)nbytes);
    } else {
        /* Fortran order: first index fastest. Walk the C-order destination with an odometer. */
        size_t nd = shape.size();
        std::vector<uint64_t> fstride(nd), idx(nd, 0);
        uint64_t s = es;
        for (size_t d = 0; d < nd; d++) {
            fstride[d] = s;
            s *= (uint64_t)shape[d];
        }
        uint64_t off = 0;
        uint8_t *dst = a.data.data();
        for (uint64_t i = 0; i < numel; i++) {
            memcpy(dst + i * es, src + off, es);
            for (size_t d = nd; d-- > 0;) {
                if (++idx[d] < (uint64_t)shape[d]) {
                    off += fstride[d];
                    break;
                }
                off -= fstride[d] * (idx[d] - 1);
                idx[d] = 0;
            }
        }
    }
    if (swap) byteswap_all(a.data.data(), (size_t)numel, es);
    return a;
}

Array load(const std::string &path)
{
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw Error(cat(path, ": cannot open: ", strerror(errno)));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        ::close(fd);
        throw Error(cat(path, ": not a regular file"));
    }
    std::vector<uint8_t> buf((size_t)st.st_size);
    size_t got = 0;
    while (got < buf.size()) {
        ssize_t r = ::read(fd, buf.data() + got, buf.size() - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int e = errno;
            ::close(fd);
            throw Error(cat(path, ": read failed: ", r == 0 ? "file shrank" : strerror(e)));
        }
        got += (size_t)r;
    }
    ::close(fd);
    try {
        return parse(buf.data(), buf.size());
    } catch (const Error &e) {
        throw Error(cat(path, ": ", e.what()));
    }
}

std::vector<uint8_t> serialize(const Array &a)
{
    for (int64_t s : a.shape)
        if (s < 0) throw Error(cat("npy: negative dimension in shape ", shape_str(a.shape)));
    size_t es = dtype_size(a.dtype);
    uint64_t numel = 1;
    for (int64_t s : a.shape)
        if (__builtin_mul_overflow(numel, (uint64_t)s, &numel)) throw Error("npy: shape overflows");
    if (a.data.size() / es != numel || a.data.size() % es)
        throw Error(cat("npy: ", a.data.size(), " data bytes do not match shape ", shape_str(a.shape), " of ",
                        dtype_descr(a.dtype)));
    std::string dict = cat("{'descr': '", dtype_descr(a.dtype), "', 'fortran_order': False, 'shape': ", shape_str(a.shape), ", }");
    size_t pre = 10;
    size_t total = pre + dict.size() + 1;
    size_t padded = (total + 63) / 64 * 64;
    if (padded - pre > 0xFFFF) {
        pre = 12;
        total = pre + dict.size() + 1;
        padded = (total + 63) / 64 * 64;
    }
    size_t hlen = padded - pre;
    /* Built in one buffer of its final size (GCC 12 misreports repeated vector::insert at -O2). */
    std::string head = "\x93NUMPY";
    head += (char)(pre == 10 ? 1 : 2);
    head += '\0';
    head += (char)(hlen & 0xff);
    head += (char)((hlen >> 8) & 0xff);
    if (pre == 12) {
        head += (char)((hlen >> 16) & 0xff);
        head += (char)((hlen >> 24) & 0xff);
    }
    head += dict;
    head.append(padded - total, ' ');
    head += '\n';
    std::vector<uint8_t> out(head.size() + a.data.size());
    memcpy(out.data(), head.data(), head.size());
    if (!a.data.empty()) memcpy(out.data() + head.size(), a.data.data(), a.data.size());
    if (!host_is_little()) byteswap_all(out.data() + head.size(), (size_t)numel, es);
    return out;
}

void save(const std::string &path, const Array &a)
{
    std::vector<uint8_t> bytes = serialize(a);
    samda_afile f;
    samda_error e;
    if (samda_afile_open(&f, path.c_str(), 0, &e) != SAMDA_OK) throw Error(e.message);
    if (samda_afile_write(&f, bytes.data(), bytes.size(), &e) != SAMDA_OK) {
        samda_afile_abort(&f);
        throw Error(e.message);
    }
    if (samda_afile_commit(&f, &e) != SAMDA_OK) throw Error(e.message);
}

} // namespace npy
} // namespace samda
