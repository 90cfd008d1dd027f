/* .npy reader and writer (see npy.h): the C++ face of common/npy_format.h, which holds the format
 * (header tokenizer, byte order, Fortran order, header layout, crash-safe writing). What is left here
 * is the conversion between std::vector and the C structures, and C errors thrown as npy::Error. */
#include "npy.h"

#include "npy_format.h"

#include <cstdlib>
#include <cstring>
#include <new>
#include <sstream>

namespace samda {
namespace npy {

#define SAMDA_NPY_SAME(cpp, c) static_assert((int)DType::cpp == (int)SAMDA_NPY_##c, "npy::DType differs from samda_npy_dtype")
SAMDA_NPY_SAME(F16, F16);
SAMDA_NPY_SAME(F32, F32);
SAMDA_NPY_SAME(F64, F64);
SAMDA_NPY_SAME(I8, I8);
SAMDA_NPY_SAME(I16, I16);
SAMDA_NPY_SAME(I32, I32);
SAMDA_NPY_SAME(I64, I64);
SAMDA_NPY_SAME(U8, U8);
SAMDA_NPY_SAME(U16, U16);
SAMDA_NPY_SAME(U32, U32);
SAMDA_NPY_SAME(U64, U64);
SAMDA_NPY_SAME(Bool, BOOL);
#undef SAMDA_NPY_SAME

namespace {

samda_npy_dtype c_dtype(DType dt) { return (samda_npy_dtype)dt; }

template <typename... Args> std::string cat(Args &&...args)
{
    std::ostringstream os;
    (os << ... << args);
    return os.str();
}

std::string shape_str(const std::vector<int64_t> &s)
{
    std::string o = "(";
    for (size_t i = 0; i < s.size(); i++) o += (i ? ", " : "") + std::to_string(s[i]);
    if (s.size() == 1) o += ",";
    return o + ")";
}

/* The shape as common/npy_format.c takes it; throws Error for a negative or too many dimensions. */
std::vector<uint64_t> c_shape(const std::vector<int64_t> &shape)
{
    if (shape.size() > SAMDA_NPY_MAX_NDIM)
        throw Error(cat("npy: ", shape.size(), " dimensions (at most ", SAMDA_NPY_MAX_NDIM, ")"));
    std::vector<uint64_t> out;
    for (int64_t s : shape) {
        if (s < 0) throw Error(cat("npy: negative dimension in shape ", shape_str(shape)));
        out.push_back((uint64_t)s);
    }
    return out;
}

/* Array from a parsed header and its data in native C order. */
Array make_array(const samda_npy_header &h, const void *native)
{
    Array a;
    a.dtype = (DType)h.dtype;
    a.shape.assign(h.shape, h.shape + h.ndim);
    const uint8_t *p = static_cast<const uint8_t *>(native);
    a.data.assign(p, p + h.data_bytes);
    return a;
}

/* The Array's bytes, checked against its shape; throws Error. */
void check_data(const Array &a, const std::vector<uint64_t> &shape)
{
    uint64_t numel = 1;
    for (uint64_t s : shape)
        if (s && numel > UINT64_MAX / s) throw Error("npy: shape overflows");
        else numel *= s;
    size_t es = dtype_size(a.dtype);
    if (a.data.size() % es || a.data.size() / es != numel)
        throw Error(cat("npy: ", a.data.size(), " data bytes do not match shape ", shape_str(a.shape), " of ",
                        dtype_descr(a.dtype)));
}

} // namespace

size_t dtype_size(DType dt) { return samda_npy_dtype_size(c_dtype(dt)); }

const char *dtype_descr(DType dt) { return samda_npy_dtype_descr(c_dtype(dt)); }

int64_t Array::numel() const
{
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    return n;
}

float half_to_float(uint16_t h) { return samda_npy_half_to_float(h); }

uint16_t float_to_half(float f) { return samda_npy_float_to_half(f); }

std::vector<float> Array::to_float32() const
{
    size_t n = (size_t)numel();
    if (data.size() != n * dtype_size(dtype)) throw Error("npy: array data size does not match its shape");
    std::vector<float> out(n);
    samda_npy_to_float(c_dtype(dtype), data.data(), n, out.data());
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
    samda_npy_header h;
    samda_error e;
    if (samda_npy_header_parse(b, n, n, &h, &e) != SAMDA_OK ||
        samda_npy_data_check(&h, n - h.data_offset, &e) != SAMDA_OK)
        throw Error(e.message);
    Array a;
    a.dtype = (DType)h.dtype;
    a.shape.assign(h.shape, h.shape + h.ndim);
    a.data.resize((size_t)h.data_bytes);
    samda_npy_data_to_native(&h, b + h.data_offset, a.data.data());
    return a;
}

Array load(const std::string &path)
{
    samda_npy_header h;
    samda_error e;
    void *data = nullptr;
    if (samda_npy_load(path.c_str(), UINT64_MAX, &h, &data, &e) != SAMDA_OK) {
        if (e.code == SAMDA_ENOMEM) throw std::bad_alloc();
        throw Error(e.message);
    }
    try {
        Array a = make_array(h, data);
        free(data);
        return a;
    } catch (...) {
        free(data);
        throw;
    }
}

std::vector<uint8_t> serialize(const Array &a)
{
    std::vector<uint64_t> shape = c_shape(a.shape);
    check_data(a, shape);
    char head[SAMDA_NPY_HEADER_BUILD_CAP];
    size_t hlen = 0;
    samda_error e;
    if (samda_npy_header_build(c_dtype(a.dtype), (int)shape.size(), shape.data(), head, sizeof head, &hlen, &e) !=
        SAMDA_OK)
        throw Error(e.message);
    std::vector<uint8_t> out(hlen + a.data.size());
    memcpy(out.data(), head, hlen);
    if (!a.data.empty()) memcpy(out.data() + hlen, a.data.data(), a.data.size());
    const uint16_t one = 1;
    if (*reinterpret_cast<const uint8_t *>(&one) == 0) { /* big-endian host: the file is little-endian */
        samda_npy_header h{};
        h.dtype = c_dtype(a.dtype);
        h.swap = true;
        h.numel = a.data.size() / dtype_size(a.dtype);
        h.data_bytes = a.data.size();
        samda_npy_data_to_native(&h, a.data.data(), out.data() + hlen);
    }
    return out;
}

void save(const std::string &path, const Array &a)
{
    std::vector<uint64_t> shape = c_shape(a.shape);
    check_data(a, shape);
    samda_error e;
    if (samda_npy_save(path.c_str(), c_dtype(a.dtype), (int)shape.size(), shape.data(), a.data.data(), &e) !=
        SAMDA_OK)
        throw Error(e.message);
}

} // namespace npy
} // namespace samda
