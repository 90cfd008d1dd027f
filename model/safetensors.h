/* model/safetensors.h: the safetensors file format, torch-free (fuzzable, cheap to compile); the C++
 * face of common/safetensors_format.h, which holds the format and every check.
 *
 * Layout: 8 bytes little-endian u64 N, then N bytes of JSON header, then the payload (raw
 * little-endian tensor bytes). The header is an object: "__metadata__" maps strings to strings;
 * every other key names a tensor {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]},
 * offsets relative to the payload start. parse() refuses anything else with a message naming the
 * field: header length beyond the file or over 64 MiB, invalid JSON (duplicate keys included), a
 * non-object header, a non-string metadata value, a tensor member other than the three, unknown
 * dtypes (and the format's dtypes this build does not read: U16 U32 U64 F8_*), negative or
 * non-integer shapes or offsets, more than 16 dimensions, a byte range that disagrees with dtype x
 * shape, ranges outside the payload, overlapping ranges, and payload bytes no tensor covers.
 *
 * serialize() writes tensors sorted by name, packed in that order, header padded with spaces to a
 * multiple of 8, and adds "payload_sha256" (SHA-256 hex of the payload) to the metadata;
 * verify_payload() checks it.
 *
 * Thread-safety: no shared state. */
#ifndef SAMDA_MODEL_SAFETENSORS_H
#define SAMDA_MODEL_SAFETENSORS_H

#include <cstddef>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace samda {
namespace safetensors {

enum class DType { F16, BF16, F32, F64, I8, I16, I32, I64, U8, BOOL };

/** Every failure of this file; the message says what is wrong and where. */
struct Error : std::runtime_error {
    using runtime_error::runtime_error;
};

/** Bytes per element; the format's name ("F32"). */
size_t dtype_size(DType dt);
const char *dtype_name(DType dt);

struct TensorInfo {
    std::string name;
    DType dtype = DType::F32;
    std::vector<int64_t> shape;
    uint64_t begin = 0, end = 0; /* byte range within the payload */
};

/** A parsed file: views into the caller's bytes (borrowed; keep them alive). */
struct File {
    std::map<std::string, std::string> metadata;
    std::vector<TensorInfo> tensors; /* in payload order */
    const uint8_t *payload = nullptr;
    size_t payload_size = 0;
    const TensorInfo *find(const std::string &name) const; /* NULL when absent */
};

/** Parse a whole file image. Throws Error. */
File parse(const uint8_t *bytes, size_t n);

/** One tensor to write: data holds numel * dtype_size bytes, little-endian. Borrowed. */
struct OutTensor {
    std::string name;
    DType dtype = DType::F32;
    std::vector<int64_t> shape;
    const void *data = nullptr;
    size_t nbytes = 0;
};

/** The file image. Adds metadata["payload_sha256"]. Throws Error (duplicate or empty name, a name
 *  starting with "__", nbytes disagreeing with dtype x shape). */
std::vector<uint8_t> serialize(std::map<std::string, std::string> metadata, const std::vector<OutTensor> &tensors);

/** SHA-256 (hex) of the payload bytes. */
std::string payload_sha256(const File &f);
/** Throws Error unless metadata["payload_sha256"] is present and matches the payload. */
void verify_payload(const File &f);

/** s as a JSON string literal, quotes included (control characters escaped). */
std::string json_quote(const std::string &s);

}  // namespace safetensors
}  // namespace samda

#endif
