/* NumPy `.npy` files (format versions 1.0, 2.0 and 3.0): parse into a native-endian, C-order array and
 * write version 1.0 files that numpy.load reads.
 *
 * Torch-free on purpose (fast to compile, fuzzable); model/state_dict.h converts to at::Tensor. The
 * format itself (header, byte and memory order, layout) is common/npy_format.h's; this is its C++ face.
 * Only plain numeric dtypes are read (f2 f4 f8, i1 i2 i4 i8, u1 u2 u4 u8, b1, either byte order, C or
 * Fortran order); structured, string, complex and object arrays are refused, never interpreted.
 *
 * Thread-safety: no shared state; every function may be called from several threads at once. */
#ifndef SAMDA_MODEL_NPY_H
#define SAMDA_MODEL_NPY_H

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace samda {
namespace npy {

enum class DType { F16, F32, F64, I8, I16, I32, I64, U8, U16, U32, U64, Bool };

/** Bytes per element of dt. */
size_t dtype_size(DType dt);
/** numpy's little-endian descr of dt ("<f4", "|u1", "|b1"). Ownership: static string. */
const char *dtype_descr(DType dt);

/** Every failure of this file; the message names the file (if any) and the header field. */
struct Error : std::runtime_error {
    using runtime_error::runtime_error;
};

/** An array: data holds numel() elements in native byte order and C (row-major) order. */
struct Array {
    DType dtype = DType::F32;
    std::vector<int64_t> shape;  /* empty = 0-d scalar (one element) */
    std::vector<uint8_t> data;

    /** Product of shape (1 for a 0-d array). */
    int64_t numel() const;
    /** Every element converted to float (float16 decoded; 64-bit integers rounded). */
    std::vector<float> to_float32() const;
    /** Pointer to the elements as T; throws Error unless sizeof(T) == dtype_size(dtype). Borrowed. */
    template <typename T> const T *as() const
    {
        if (sizeof(T) != dtype_size(dtype)) throw Error("npy: element size does not match the requested type");
        return reinterpret_cast<const T *>(data.data());
    }
};

/** Make a float32 array of the given shape from values (values.size() must equal the product). */
Array from_float32(const std::vector<int64_t> &shape, const std::vector<float> &values);

/** Parse an in-memory .npy file. Throws Error naming the offending header field. */
Array parse(const uint8_t *bytes, size_t n);
/** Read and parse path. Throws Error whose message starts with path. */
Array load(const std::string &path);
/** Serialise a (little-endian, C order) .npy image of a. Throws Error if data.size() != numel*size. */
std::vector<uint8_t> serialize(const Array &a);
/** Write a to path (temporary file renamed into place). Throws Error naming path. */
void save(const std::string &path, const Array &a);

/** IEEE half -> float and back (round to nearest even), used by to_float32 and by tests. */
float half_to_float(uint16_t h);
uint16_t float_to_half(float f);

} // namespace npy
} // namespace samda

#endif
