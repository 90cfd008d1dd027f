/* libFuzzer target for model/npy.cpp: parse any bytes; a parsed array must convert to float, and
 * serialising it must give a file that parses back to the same array. Only npy::Error may escape
 * parse. */
#include "npy.h"

#include <cstdlib>

using namespace samda::npy;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Array a;
    try {
        a = parse(data, size);
    } catch (const Error &) {
        return 0;
    }
    if (a.numel() < 0 || a.data.size() != (size_t)a.numel() * dtype_size(a.dtype)) abort();
    if (a.to_float32().size() != (size_t)a.numel()) abort();
    std::vector<uint8_t> out = serialize(a);
    Array b = parse(out.data(), out.size());
    if (b.dtype != a.dtype || b.shape != a.shape || b.data != a.data) abort();
    return 0;
}
