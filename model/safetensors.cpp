// model/safetensors.cpp: safetensors parse/serialize (see safetensors.h). Torch-free; the JSON
// header is read with the project's small JSON reader (sam_config.h).
#include "safetensors.h"

#include "sam_config.h"
#include "sha256.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>

namespace samda {
namespace safetensors {

namespace {

constexpr uint64_t kMaxHeader = 64ull << 20;

struct DTypeRow {
    DType dt;
    const char *name;
    size_t size;
};
const DTypeRow kTypes[] = {{DType::F16, "F16", 2}, {DType::BF16, "BF16", 2}, {DType::F32, "F32", 4},
                           {DType::F64, "F64", 8}, {DType::I8, "I8", 1},     {DType::I16, "I16", 2},
                           {DType::I32, "I32", 4}, {DType::I64, "I64", 8},   {DType::U8, "U8", 1},
                           {DType::BOOL, "BOOL", 1}};

[[noreturn]] void fail(const std::string &msg) { throw Error("safetensors: " + msg); }

uint64_t as_u64(const JsonValue &v, const std::string &what)
{
    if (v.kind != JsonValue::Number || !(v.num >= 0) || v.num != std::floor(v.num) || v.num > 9007199254740992.0)
        fail(what + " is not a non-negative integer");
    return (uint64_t)v.num;
}

}  // namespace

size_t dtype_size(DType dt)
{
    for (const auto &r : kTypes)
        if (r.dt == dt)
            return r.size;
    return 0;
}

const char *dtype_name(DType dt)
{
    for (const auto &r : kTypes)
        if (r.dt == dt)
            return r.name;
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
    if (!bytes || n < 8)
        fail("file of " + std::to_string(n) + " bytes is shorter than the 8-byte header length");
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--)
        hl = (hl << 8) | bytes[i];
    if (hl < 2 || hl > kMaxHeader)
        fail("header length " + std::to_string(hl) + " outside 2.." + std::to_string(kMaxHeader));
    if (hl > n - 8)
        fail("header length " + std::to_string(hl) + " runs past the end of the " + std::to_string(n) +
             "-byte file (truncated?)");
    const std::string text(reinterpret_cast<const char *>(bytes + 8), (size_t)hl);
    JsonValue root;
    try {
        root = json_parse(text);
    } catch (const std::exception &e) {
        fail(std::string("header is not valid JSON: ") + e.what());
    }
    if (root.kind != JsonValue::Object)
        fail("header is not a JSON object");
    File f;
    f.payload = bytes + 8 + hl;
    f.payload_size = (size_t)(n - 8 - hl);
    std::set<std::string> seen;
    for (const auto &kv : root.obj) {
        if (!seen.insert(kv.first).second)
            fail("duplicate header key \"" + kv.first + "\"");
        if (kv.first == "__metadata__") {
            if (kv.second.kind != JsonValue::Object)
                fail("__metadata__ is not an object");
            for (const auto &m : kv.second.obj) {
                if (m.second.kind != JsonValue::String)
                    fail("metadata value of \"" + m.first + "\" is not a string");
                if (!f.metadata.emplace(m.first, m.second.str).second)
                    fail("duplicate metadata key \"" + m.first + "\"");
            }
            continue;
        }
        const std::string who = "tensor \"" + kv.first + "\"";
        if (kv.first.empty())
            fail("a tensor has an empty name");
        if (kv.second.kind != JsonValue::Object)
            fail(who + " is not an object");
        const JsonValue *dt = kv.second.get("dtype");
        const JsonValue *sh = kv.second.get("shape");
        const JsonValue *off = kv.second.get("data_offsets");
        if (!dt || dt->kind != JsonValue::String)
            fail(who + " has no string \"dtype\"");
        if (!sh || sh->kind != JsonValue::Array)
            fail(who + " has no array \"shape\"");
        if (!off || off->kind != JsonValue::Array || off->arr.size() != 2)
            fail(who + " has no two-element \"data_offsets\"");
        TensorInfo t;
        t.name = kv.first;
        bool known = false;
        for (const auto &r : kTypes)
            if (dt->str == r.name) {
                t.dtype = r.dt;
                known = true;
            }
        if (!known)
            fail(who + " has unsupported dtype \"" + dt->str + "\"");
        if (sh->arr.size() > 16)
            fail(who + " has " + std::to_string(sh->arr.size()) + " dimensions (at most 16)");
        uint64_t numel = 1;
        for (const auto &d : sh->arr) {
            uint64_t v = as_u64(d, who + " shape entry");
            if (v > (1ull << 40) || (v && numel > (1ull << 40) / v))
                fail(who + " has an impossibly large shape");
            numel *= v;
            t.shape.push_back((int64_t)v);
        }
        t.begin = as_u64(off->arr[0], who + " data_offsets[0]");
        t.end = as_u64(off->arr[1], who + " data_offsets[1]");
        if (t.end < t.begin)
            fail(who + " data_offsets end " + std::to_string(t.end) + " < begin " + std::to_string(t.begin));
        if (t.end - t.begin != numel * dtype_size(t.dtype))
            fail(who + " has " + std::to_string(t.end - t.begin) + " bytes, but dtype and shape need " +
                 std::to_string(numel * dtype_size(t.dtype)));
        if (t.end > f.payload_size)
            fail(who + " data_offsets end " + std::to_string(t.end) + " is past the payload of " +
                 std::to_string(f.payload_size) + " bytes (truncated?)");
        f.tensors.push_back(std::move(t));
    }
    std::sort(f.tensors.begin(), f.tensors.end(), [](const TensorInfo &a, const TensorInfo &b) {
        return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
    });
    uint64_t at = 0;
    for (const auto &t : f.tensors) {
        if (t.begin < at)
            fail("tensor \"" + t.name + "\" overlaps the tensor before it");
        if (t.begin > at)
            fail("payload bytes " + std::to_string(at) + ".." + std::to_string(t.begin) + " belong to no tensor");
        at = t.end;
    }
    if (at != f.payload_size)
        fail("payload has " + std::to_string(f.payload_size - at) + " trailing bytes that belong to no tensor");
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
    std::set<std::string> names;
    for (const auto &t : tensors) {
        if (t.name.empty() || t.name.compare(0, 2, "__") == 0)
            fail("tensor name \"" + t.name + "\" is empty or starts with \"__\"");
        if (!names.insert(t.name).second)
            fail("duplicate tensor name \"" + t.name + "\"");
        uint64_t numel = 1;
        for (int64_t d : t.shape) {
            if (d < 0)
                fail("tensor \"" + t.name + "\" has a negative dimension");
            numel *= (uint64_t)d;
        }
        if (numel * dtype_size(t.dtype) != t.nbytes || (t.nbytes && !t.data))
            fail("tensor \"" + t.name + "\" has " + std::to_string(t.nbytes) + " bytes for its dtype and shape");
        order.push_back(&t);
    }
    std::sort(order.begin(), order.end(), [](const OutTensor *a, const OutTensor *b) { return a->name < b->name; });
    Sha256 sha;
    for (const OutTensor *t : order)
        sha.update(t->data, t->nbytes);
    metadata["payload_sha256"] = sha.hex_digest();

    std::string h = "{\"__metadata__\":{";
    bool first = true;
    for (const auto &kv : metadata) {
        h += (first ? "" : ",") + json_quote(kv.first) + ":" + json_quote(kv.second);
        first = false;
    }
    h += "}";
    uint64_t off = 0;
    for (const OutTensor *t : order) {
        h += "," + json_quote(t->name) + ":{\"dtype\":\"" + dtype_name(t->dtype) + "\",\"shape\":[";
        for (size_t i = 0; i < t->shape.size(); i++)
            h += (i ? "," : "") + std::to_string(t->shape[i]);
        h += "],\"data_offsets\":[" + std::to_string(off) + "," + std::to_string(off + t->nbytes) + "]}";
        off += t->nbytes;
    }
    h += "}";
    while (h.size() % 8)
        h += ' ';
    std::vector<uint8_t> out(8 + h.size() + off);
    uint64_t hl = h.size();
    for (int i = 0; i < 8; i++)
        out[i] = (uint8_t)(hl >> (8 * i));
    std::memcpy(out.data() + 8, h.data(), h.size());
    size_t p = 8 + h.size();
    for (const OutTensor *t : order) {
        if (t->nbytes)
            std::memcpy(out.data() + p, t->data, t->nbytes);
        p += t->nbytes;
    }
    return out;
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
