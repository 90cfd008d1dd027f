// model/safetensors.cpp: safetensors parse/serialize (see safetensors.h), the C++ face of
// common/safetensors_format.h, which holds the format (header length, the JSON header, every check of
// the tensors against the payload, the header layout). What is left here: the model's dtypes, the
// payload checksum (SHA-256, model/sha256.cpp) and std:: containers. Torch-free.
#include "safetensors.h"

#include "safetensors_format.h"
#include "sha256.h"

#include <algorithm>
#include <cstdio>
#include <cstring>

namespace samda {
namespace safetensors {

namespace {

struct DTypeRow {
    DType dt;
    samda_safetensors_dtype c;
};
const DTypeRow kTypes[] = {{DType::F16, SAMDA_SAFETENSORS_F16}, {DType::BF16, SAMDA_SAFETENSORS_BF16},
                           {DType::F32, SAMDA_SAFETENSORS_F32}, {DType::F64, SAMDA_SAFETENSORS_F64},
                           {DType::I8, SAMDA_SAFETENSORS_I8},   {DType::I16, SAMDA_SAFETENSORS_I16},
                           {DType::I32, SAMDA_SAFETENSORS_I32}, {DType::I64, SAMDA_SAFETENSORS_I64},
                           {DType::U8, SAMDA_SAFETENSORS_U8},   {DType::BOOL, SAMDA_SAFETENSORS_BOOL}};

samda_safetensors_dtype c_dtype(DType dt)
{
    for (const auto &r : kTypes)
        if (r.dt == dt)
            return r.c;
    throw Error("safetensors: unknown dtype");
}

[[noreturn]] void fail(const std::string &msg) { throw Error("safetensors: " + msg); }

/* Frees a parsed C header when it goes out of scope. */
struct HeaderGuard {
    samda_safetensors_header h{};
    ~HeaderGuard() { samda_safetensors_header_free(&h); }
};

}  // namespace

size_t dtype_size(DType dt)
{
    for (const auto &r : kTypes)
        if (r.dt == dt)
            return samda_safetensors_dtype_size(r.c);
    return 0;
}

const char *dtype_name(DType dt)
{
    for (const auto &r : kTypes)
        if (r.dt == dt)
            return samda_safetensors_dtype_name(r.c);
    return "?";
}

const TensorInfo *File::find(const std::string &name) const
{
    for (const auto &t : tensors)
        if (t.name == name)
            return &t;
    return nullptr;
}

File parse(const uint8_t *bytes, size_t n)
{
    samda_safetensors_limits lim;
    samda_safetensors_limits_init(&lim);
    HeaderGuard g;
    samda_error e;
    if (samda_safetensors_parse(bytes, n, &lim, &g.h, &e) != SAMDA_OK) {
        if (e.code == SAMDA_ENOMEM)
            throw std::bad_alloc();
        throw Error(e.message);
    }
    File f;
    f.payload = bytes + 8 + g.h.header_bytes;
    f.payload_size = (size_t)g.h.data_bytes;
    for (size_t i = 0; i < g.h.n_metadata; i++)
        f.metadata.emplace(g.h.metadata[i].key, g.h.metadata[i].value);
    for (size_t i = 0; i < g.h.n_tensors; i++) {
        const samda_safetensors_tensor &c = g.h.tensors[i];
        TensorInfo t;
        t.name = c.name;
        const DTypeRow *row = nullptr;
        for (const auto &r : kTypes)
            if (r.c == c.dtype)
                row = &r;
        if (!row)
            throw Error(std::string("safetensors header: tensor '") + c.name + "' has unsupported dtype '" +
                        samda_safetensors_dtype_name(c.dtype) + "' (samda reads F16 BF16 F32 F64 I8 I16 I32 I64 U8 BOOL)");
        t.dtype = row->dt;
        for (unsigned d = 0; d < c.ndim; d++)
            t.shape.push_back((int64_t)c.shape[d]);
        t.begin = c.begin;
        t.end = c.end;
        f.tensors.push_back(std::move(t));
    }
    return f;
}

std::string json_quote(const std::string &s)
{
    std::string o = "\"";
    for (unsigned char c : s) {
        switch (c) {
        case '"': o += "\\\""; break;
        case '\\': o += "\\\\"; break;
        case '\n': o += "\\n"; break;
        case '\r': o += "\\r"; break;
        case '\t': o += "\\t"; break;
        default:
            if (c < 0x20) {
                char b[8];
                snprintf(b, sizeof b, "\\u%04x", c);
                o += b;
            } else {
                o += (char)c;
            }
        }
    }
    return o + "\"";
}

std::vector<uint8_t> serialize(std::map<std::string, std::string> metadata, const std::vector<OutTensor> &tensors)
{
    std::vector<const OutTensor *> order;
    for (const auto &t : tensors) {
        for (int64_t d : t.shape)
            if (d < 0)
                fail("tensor \"" + t.name + "\" has a negative dimension");
        if (t.nbytes && !t.data)
            fail("tensor \"" + t.name + "\" has " + std::to_string(t.nbytes) + " bytes for its dtype and shape, but no data");
        if (t.name.find('\0') != std::string::npos)
            fail("tensor name \"" + t.name + "\" holds a NUL character");
        order.push_back(&t);
    }
    std::sort(order.begin(), order.end(), [](const OutTensor *a, const OutTensor *b) { return a->name < b->name; });
    Sha256 sha;
    for (const OutTensor *t : order)
        sha.update(t->data, t->nbytes);
    metadata["payload_sha256"] = sha.hex_digest();

    std::vector<samda_safetensors_entry> meta;
    for (const auto &kv : metadata) {
        if (kv.first.find('\0') != std::string::npos || kv.second.find('\0') != std::string::npos)
            fail("metadata \"" + kv.first + "\" holds a NUL character");
        meta.push_back({kv.first.c_str(), kv.second.c_str()});
    }
    std::vector<std::vector<uint64_t>> shapes;
    std::vector<samda_safetensors_out> out;
    shapes.reserve(order.size());
    for (const OutTensor *t : order) {
        shapes.emplace_back(t->shape.begin(), t->shape.end());
        out.push_back({t->name.c_str(), c_dtype(t->dtype), (unsigned)t->shape.size(), shapes.back().data(),
                       (uint64_t)t->nbytes});
    }
    char *head = nullptr;
    size_t hlen = 0;
    samda_error e;
    if (samda_safetensors_header_build(meta.data(), meta.size(), out.data(), out.size(), &head, &hlen, &e) != SAMDA_OK) {
        if (e.code == SAMDA_ENOMEM)
            throw std::bad_alloc();
        throw Error(e.message);
    }
    uint64_t payload = 0;
    for (const OutTensor *t : order)
        payload += t->nbytes;
    std::vector<uint8_t> bytes;
    try {
        bytes.resize(hlen + (size_t)payload);
    } catch (...) {
        free(head);
        throw;
    }
    std::memcpy(bytes.data(), head, hlen);
    free(head);
    size_t p = hlen;
    for (const OutTensor *t : order) {
        if (t->nbytes)
            std::memcpy(bytes.data() + p, t->data, t->nbytes);
        p += t->nbytes;
    }
    return bytes;
}

std::string payload_sha256(const File &f)
{
    Sha256 sha;
    sha.update(f.payload, f.payload_size);
    return sha.hex_digest();
}

void verify_payload(const File &f)
{
    auto it = f.metadata.find("payload_sha256");
    if (it == f.metadata.end())
        fail("metadata has no payload_sha256 (not written by samda?)");
    const std::string got = payload_sha256(f);
    if (got != it->second)
        fail("payload SHA-256 " + got + " does not match the header's " + it->second + " (file corrupted)");
}

}  // namespace safetensors
}  // namespace samda
