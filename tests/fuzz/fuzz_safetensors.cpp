// libFuzzer target for model/safetensors.cpp (torch-free): parse arbitrary bytes; whatever parses
// must serialise back into a file that parses to the same tensors and metadata.
#include "safetensors.h"

#include <cstdlib>
#include <cstring>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    using namespace samda::safetensors;
    File f;
    try {
        f = parse(data, size);
    } catch (const Error &) {
        return 0;
    }
    try {
        verify_payload(f);
    } catch (const Error &) {
    }
    std::vector<OutTensor> ts;
    for (const auto &t : f.tensors) {
        OutTensor o;
        o.name = t.name;
        o.dtype = t.dtype;
        o.shape = t.shape;
        o.data = f.payload + t.begin;
        o.nbytes = (size_t)(t.end - t.begin);
        ts.push_back(o);
    }
    std::map<std::string, std::string> meta = f.metadata;
    std::vector<uint8_t> again;
    try {
        again = serialize(meta, ts);
    } catch (const Error &) {
        return 0;  // names serialize refuses ("__x") may be read
    }
    File g = parse(again.data(), again.size());  // must not throw
    verify_payload(g);
    if (g.tensors.size() != f.tensors.size())
        abort();
    for (const auto &t : f.tensors) {
        const TensorInfo *u = g.find(t.name);
        if (!u || u->dtype != t.dtype || u->shape != t.shape || u->end - u->begin != t.end - t.begin ||
            std::memcmp(g.payload + u->begin, f.payload + t.begin, (size_t)(t.end - t.begin)) != 0)
            abort();
    }
    for (const auto &kv : f.metadata)
        if (kv.first != "payload_sha256" && g.metadata[kv.first] != kv.second)
            abort();
    return 0;
}
