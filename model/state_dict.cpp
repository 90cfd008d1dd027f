/* Tensors in and out of .pth checkpoints and .npy arrays (see state_dict.h). The byte-level formats
 * live in pth_reader.cpp and npy.cpp; this file only maps them onto at::Tensor. */
#include "state_dict.h"

#include <cstring>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include <ATen/ATen.h>

namespace samda {

namespace {

template <typename... Args> std::string cat(Args &&...args)
{
    std::ostringstream os;
    (os << ... << args);
    return os.str();
}

void require_little_endian()
{
    const uint16_t one = 1;
    uint8_t b;
    memcpy(&b, &one, 1);
    if (b != 1) throw pth::Error("checkpoint storages are little-endian and this host is not (unsupported)");
}

} // namespace

at::ScalarType to_scalar_type(pth::DType dt)
{
    switch (dt) {
    case pth::DType::F32: return at::kFloat;
    case pth::DType::F16: return at::kHalf;
    case pth::DType::BF16: return at::kBFloat16;
    case pth::DType::F64: return at::kDouble;
    case pth::DType::I64: return at::kLong;
    case pth::DType::I32: return at::kInt;
    case pth::DType::I16: return at::kShort;
    case pth::DType::I8: return at::kChar;
    case pth::DType::U8: return at::kByte;
    case pth::DType::Bool: return at::kBool;
    }
    throw pth::Error("unknown checkpoint dtype");
}

pth::DType from_scalar_type(at::ScalarType st)
{
    switch (st) {
    case at::kFloat: return pth::DType::F32;
    case at::kHalf: return pth::DType::F16;
    case at::kBFloat16: return pth::DType::BF16;
    case at::kDouble: return pth::DType::F64;
    case at::kLong: return pth::DType::I64;
    case at::kInt: return pth::DType::I32;
    case at::kShort: return pth::DType::I16;
    case at::kChar: return pth::DType::I8;
    case at::kByte: return pth::DType::U8;
    case at::kBool: return pth::DType::Bool;
    default: break;
    }
    throw pth::Error(cat("dtype ", c10::toString(st), " is not supported in a state dict"));
}

at::Tensor load_tensor(const pth::Checkpoint &ck, const pth::TensorRecord &rec)
{
    require_little_endian();
    auto bytes = ck.storage(rec.storage_key);
    size_t es = pth::dtype_size(rec.dtype);
    if (bytes.second != (size_t)rec.storage_numel * es)
        throw pth::Error(cat("tensor '", rec.name, "': storage '", rec.storage_key, "' size changed"));
    /* Bool storages are read as bytes and compared with zero, so a stray byte value cannot become an
     * invalid bool; everything else is viewed in place (the mmap is read-only: only clone reads it). */
    const at::ScalarType view_type = rec.dtype == pth::DType::Bool ? at::kByte : to_scalar_type(rec.dtype);
    at::Tensor base;
    if (reinterpret_cast<uintptr_t>(bytes.first) % es == 0) {
        base = at::from_blob(const_cast<uint8_t *>(bytes.first), {rec.storage_numel}, at::TensorOptions().dtype(view_type));
    } else {
        base = at::empty({rec.storage_numel}, at::TensorOptions().dtype(view_type));
        if (bytes.second) memcpy(base.data_ptr(), bytes.first, bytes.second);
    }
    at::Tensor out = base.as_strided(rec.sizes, rec.strides, rec.storage_offset).clone(at::MemoryFormat::Contiguous);
    if (rec.dtype == pth::DType::Bool) out = out.ne(0);
    return out;
}

StateDict load_state_dict(const pth::Checkpoint &ck)
{
    StateDict out;
    out.reserve(ck.tensors().size());
    for (const pth::TensorRecord &r : ck.tensors()) out.emplace_back(r.name, load_tensor(ck, r));
    return out;
}

StateDict load_state_dict(const std::string &path)
{
    pth::Checkpoint ck = pth::Checkpoint::open(path);
    return load_state_dict(ck);
}

void save_state_dict_pth(const std::string &path, const StateDict &tensors, const pth::WriteOptions &opt)
{
    require_little_endian();
    std::vector<at::Tensor> keep; /* CPU copies stay alive while their bytes are written */
    std::vector<pth::StorageBlob> storages;
    std::vector<pth::TensorToWrite> views;
    std::unordered_map<const void *, size_t> storage_index; /* StorageImpl* -> index */
    keep.reserve(tensors.size());
    for (const auto &nt : tensors) {
        const std::string who = cat("tensor '", nt.first, "'");
        at::Tensor t = nt.second;
        if (!t.defined()) throw pth::Error(cat(who, " is undefined"));
        if (t.layout() != at::kStrided || t.is_quantized()) throw pth::Error(cat(who, ": only dense tensors can be saved"));
        if (!t.device().is_cpu()) t = t.cpu();
        if (t.is_conj()) t = t.resolve_conj();
        if (t.is_neg()) t = t.resolve_neg();
        pth::DType dt = from_scalar_type(t.scalar_type());
        keep.push_back(t);
        const void *impl = t.storage().unsafeGetStorageImpl();
        auto it = storage_index.find(impl);
        size_t idx;
        if (it == storage_index.end()) {
            idx = storages.size();
            storage_index.emplace(impl, idx);
            storages.push_back(pth::StorageBlob{dt, static_cast<const uint8_t *>(t.storage().data()), t.storage().nbytes()});
        } else {
            idx = it->second;
            if (storages[idx].dtype != dt)
                throw pth::Error(cat(who, " views a storage that another tensor views as ", pth::dtype_name(storages[idx].dtype),
                                     " (torch.save refuses this too)"));
        }
        pth::TensorToWrite w;
        w.name = nt.first;
        w.storage_index = idx;
        w.sizes = t.sizes().vec();
        w.strides = t.strides().vec();
        w.storage_offset = t.storage_offset();
        views.push_back(std::move(w));
    }
    pth::write_checkpoint(path, storages, views, opt);
}

at::Tensor npy_to_tensor(const npy::Array &a)
{
    const size_t n = (size_t)a.numel();
    if (a.data.size() != n * npy::dtype_size(a.dtype)) throw npy::Error("npy: array data size does not match its shape");
    auto make = [&](at::ScalarType st) {
        at::Tensor t = at::empty(a.shape, at::TensorOptions().dtype(st));
        if (!a.data.empty()) memcpy(t.data_ptr(), a.data.data(), a.data.size());
        return t;
    };
    switch (a.dtype) {
    case npy::DType::F16: return make(at::kHalf);
    case npy::DType::F32: return make(at::kFloat);
    case npy::DType::F64: return make(at::kDouble);
    case npy::DType::I8: return make(at::kChar);
    case npy::DType::I16: return make(at::kShort);
    case npy::DType::I32: return make(at::kInt);
    case npy::DType::I64: return make(at::kLong);
    case npy::DType::U8: return make(at::kByte);
    case npy::DType::Bool: {
        at::Tensor t = make(at::kByte);
        return t.ne(0);
    }
    case npy::DType::U16: {
        at::Tensor t = at::empty(a.shape, at::TensorOptions().dtype(at::kInt));
        int32_t *d = t.data_ptr<int32_t>();
        for (size_t i = 0; i < n; i++) {
            uint16_t v;
            memcpy(&v, a.data.data() + 2 * i, 2);
            d[i] = v;
        }
        return t;
    }
    case npy::DType::U32:
    case npy::DType::U64: {
        at::Tensor t = at::empty(a.shape, at::TensorOptions().dtype(at::kLong));
        int64_t *d = t.data_ptr<int64_t>();
        for (size_t i = 0; i < n; i++) {
            uint64_t v = 0;
            if (a.dtype == npy::DType::U32) {
                uint32_t v32;
                memcpy(&v32, a.data.data() + 4 * i, 4);
                v = v32;
            } else {
                memcpy(&v, a.data.data() + 8 * i, 8);
                if (v > (uint64_t)INT64_MAX) throw npy::Error(cat("npy: uint64 value ", v, " at element ", i, " does not fit int64"));
            }
            d[i] = (int64_t)v;
        }
        return t;
    }
    }
    throw npy::Error("npy: unknown dtype");
}

npy::Array tensor_to_npy(const at::Tensor &t0)
{
    if (!t0.defined()) throw npy::Error("npy: undefined tensor");
    if (t0.layout() != at::kStrided || t0.is_quantized()) throw npy::Error("npy: only dense tensors can be saved");
    at::Tensor t = t0.cpu().resolve_conj().resolve_neg();
    npy::Array a;
    switch (t.scalar_type()) {
    case at::kHalf: a.dtype = npy::DType::F16; break;
    case at::kBFloat16: t = t.to(at::kFloat); a.dtype = npy::DType::F32; break;
    case at::kFloat: a.dtype = npy::DType::F32; break;
    case at::kDouble: a.dtype = npy::DType::F64; break;
    case at::kChar: a.dtype = npy::DType::I8; break;
    case at::kShort: a.dtype = npy::DType::I16; break;
    case at::kInt: a.dtype = npy::DType::I32; break;
    case at::kLong: a.dtype = npy::DType::I64; break;
    case at::kByte: a.dtype = npy::DType::U8; break;
    case at::kBool: a.dtype = npy::DType::Bool; break;
    default: throw npy::Error(cat("npy: dtype ", c10::toString(t.scalar_type()), " is not supported"));
    }
    t = t.contiguous();
    a.shape = t.sizes().vec();
    a.data.resize(t.nbytes());
    if (!a.data.empty()) memcpy(a.data.data(), t.data_ptr(), a.data.size());
    return a;
}

namespace npy {

void save(const std::string &path, const at::Tensor &t)
{
    Array a;
    try {
        a = tensor_to_npy(t);
    } catch (const Error &e) {
        throw Error(path + ": " + e.what());
    }
    save(path, a);
}

at::Tensor load_tensor(const std::string &path)
{
    Array a = load(path);
    try {
        return npy_to_tensor(a);
    } catch (const Error &e) {
        throw Error(path + ": " + e.what());
    }
}

} // namespace npy

} // namespace samda
