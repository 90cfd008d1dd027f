/* Writer of torch.save zip checkpoints (see pth_reader.h): the byte layout torch's own writer
 * produces (stored zip entries 64-byte aligned, ZIP64 records, a protocol-2 pickle of an
 * OrderedDict of _rebuild_tensor_v2 calls), written crash-safely through common/atomic_file.h. */
#include "pth_internal.h"

#include "atomic_file.h"

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <limits>
#include <unordered_map>

namespace samda {
namespace pth {

namespace {

struct Sink {
    virtual ~Sink() = default;
    virtual void write(const void *p, size_t n) = 0;
    uint64_t pos = 0;
};

struct MemSink : Sink {
    std::vector<uint8_t> out;
    void write(const void *p, size_t n) override
    {
        out.insert(out.end(), (const uint8_t *)p, (const uint8_t *)p + n);
        pos += n;
    }
};

/* Buffered over samda_afile (common/atomic_file.h): the zip writer emits many small pieces. */
struct FileSink : Sink {
    samda_afile *f;
    std::string path;
    std::vector<uint8_t> buf;
    FileSink(samda_afile *file, std::string p) : f(file), path(std::move(p)) { buf.reserve(1 << 16); }
    void write(const void *p, size_t n) override
    {
        if (buf.size() + n > buf.capacity()) flush();
        if (n >= buf.capacity()) put(p, n);
        else buf.insert(buf.end(), (const uint8_t *)p, (const uint8_t *)p + n);
        pos += n;
    }
    void flush()
    {
        if (!buf.empty()) put(buf.data(), buf.size());
        buf.clear();
    }
    void put(const void *p, size_t n)
    {
        samda_error e;
        if (samda_afile_write(f, p, n, &e) != SAMDA_OK) throw Error(cat(path, ": ", e.message));
    }
};

void put16(std::vector<uint8_t> &v, uint16_t x) { v.push_back((uint8_t)x); v.push_back((uint8_t)(x >> 8)); }
void put32(std::vector<uint8_t> &v, uint32_t x) { put16(v, (uint16_t)x); put16(v, (uint16_t)(x >> 16)); }
void put64(std::vector<uint8_t> &v, uint64_t x) { put32(v, (uint32_t)x); put32(v, (uint32_t)(x >> 32)); }

/* Writes stored entries the way torch's PyTorchStreamWriter (miniz) does: zeroed sizes in the local
 * header with a data descriptor after the data (flags 0x0808), an "FB" extra field of 'Z' padding so
 * every entry's data starts on a 64-byte boundary, and ZIP64 end records. */
class ZipWriter {
public:
    explicit ZipWriter(Sink &s) : s_(s) {}
    void add(const std::string &name, const uint8_t *data, size_t n)
    {
        if (name.size() > 0xFFFF) throw Error(cat("zip entry name too long: ", name.size(), " bytes"));
        Rec r{name, s_.pos, n, crc32_update(0, data, n)};
        std::vector<uint8_t> h;
        put32(h, 0x04034b50u);
        put16(h, 0);      /* version needed */
        put16(h, 0x0808); /* data descriptor follows; UTF-8 name */
        put16(h, 0);      /* stored */
        put16(h, 0);      /* time */
        put16(h, 0);      /* date */
        put32(h, 0);      /* crc, sizes: in the descriptor */
        put32(h, 0);
        put32(h, 0);
        uint64_t start = r.offset + 30 + name.size() + 4;
        uint16_t pad = (uint16_t)((64 - start % 64) % 64);
        put16(h, (uint16_t)name.size());
        put16(h, (uint16_t)(4 + pad));
        h.insert(h.end(), name.begin(), name.end());
        h.push_back('F');
        h.push_back('B');
        put16(h, pad);
        h.insert(h.end(), pad, 'Z');
        s_.write(h.data(), h.size());
        s_.write(data, n);
        std::vector<uint8_t> d;
        put32(d, 0x08074b50u);
        put32(d, r.crc);
        if (r.size >= 0xFFFFFFFFu) {
            put64(d, r.size);
            put64(d, r.size);
        } else {
            put32(d, (uint32_t)r.size);
            put32(d, (uint32_t)r.size);
        }
        s_.write(d.data(), d.size());
        recs_.push_back(std::move(r));
    }
    void finish()
    {
        uint64_t cd_off = s_.pos;
        std::vector<uint8_t> c;
        for (const Rec &r : recs_) {
            bool big_size = r.size >= 0xFFFFFFFFu, big_off = r.offset >= 0xFFFFFFFFu;
            std::vector<uint8_t> x;
            if (big_size || big_off) {
                put16(x, 0x0001);
                put16(x, (uint16_t)((big_size ? 16 : 0) + (big_off ? 8 : 0)));
                if (big_size) {
                    put64(x, r.size);
                    put64(x, r.size);
                }
                if (big_off) put64(x, r.offset);
            }
            put32(c, 0x02014b50u);
            put16(c, 0);                          /* version made by */
            put16(c, x.empty() ? 0 : 45);         /* version needed */
            put16(c, 0x0808);
            put16(c, 0);
            put16(c, 0);
            put16(c, 0);
            put32(c, r.crc);
            put32(c, big_size ? 0xFFFFFFFFu : (uint32_t)r.size);
            put32(c, big_size ? 0xFFFFFFFFu : (uint32_t)r.size);
            put16(c, (uint16_t)r.name.size());
            put16(c, (uint16_t)x.size());
            put16(c, 0); /* comment */
            put16(c, 0); /* disk */
            put16(c, 0); /* internal attributes */
            put32(c, 0); /* external attributes */
            put32(c, big_off ? 0xFFFFFFFFu : (uint32_t)r.offset);
            c.insert(c.end(), r.name.begin(), r.name.end());
            c.insert(c.end(), x.begin(), x.end());
        }
        s_.write(c.data(), c.size());
        uint64_t cd_size = c.size(), z64 = s_.pos, n = recs_.size();
        std::vector<uint8_t> e;
        put32(e, 0x06064b50u);
        put64(e, 44);
        put16(e, 0x031e);
        put16(e, 0x2d);
        put32(e, 0);
        put32(e, 0);
        put64(e, n);
        put64(e, n);
        put64(e, cd_size);
        put64(e, cd_off);
        put32(e, 0x07064b50u);
        put32(e, 0);
        put64(e, z64);
        put32(e, 1);
        put32(e, 0x06054b50u);
        put16(e, 0);
        put16(e, 0);
        put16(e, n >= 0xFFFF ? 0xFFFF : (uint16_t)n);
        put16(e, n >= 0xFFFF ? 0xFFFF : (uint16_t)n);
        put32(e, cd_size >= 0xFFFFFFFFu ? 0xFFFFFFFFu : (uint32_t)cd_size);
        put32(e, cd_off >= 0xFFFFFFFFu ? 0xFFFFFFFFu : (uint32_t)cd_off);
        put16(e, 0);
        s_.write(e.data(), e.size());
    }

private:
    struct Rec {
        std::string name;
        uint64_t offset, size;
        uint32_t crc;
    };
    Sink &s_;
    std::vector<Rec> recs_;
};

/* Pickle emitter for the one shape torch.save gives a state dict (protocol 2). */
class PickleOut {
public:
    std::vector<uint8_t> b;
    void op(uint8_t o) { b.push_back(o); }
    void str(const std::string &s)
    {
        op('X');
        put32(b, (uint32_t)s.size());
        b.insert(b.end(), s.begin(), s.end());
    }
    void integer(int64_t v)
    {
        if (v >= 0 && v < 256) {
            op('K');
            op((uint8_t)v);
        } else if (v >= 0 && v < 65536) {
            op('M');
            put16(b, (uint16_t)v);
        } else if (v >= INT32_MIN && v <= INT32_MAX) {
            op('J');
            put32(b, (uint32_t)(int32_t)v);
        } else {
            op(0x8a);
            op(8);
            put64(b, (uint64_t)v);
        }
    }
    uint32_t global(const std::string &module, const std::string &name)
    {
        auto it = memo_.find(module + "\n" + name);
        if (it != memo_.end()) {
            get(it->second);
            return it->second;
        }
        op('c');
        b.insert(b.end(), module.begin(), module.end());
        op('\n');
        b.insert(b.end(), name.begin(), name.end());
        op('\n');
        uint32_t idx = put();
        memo_.emplace(module + "\n" + name, idx);
        return idx;
    }
    uint32_t put()
    {
        uint32_t idx = next_++;
        if (idx < 256) {
            op('q');
            op((uint8_t)idx);
        } else {
            op('r');
            put32(b, idx);
        }
        return idx;
    }
    void get(uint32_t idx)
    {
        if (idx < 256) {
            op('h');
            op((uint8_t)idx);
        } else {
            op('j');
            put32(b, idx);
        }
    }
    void int_tuple(const std::vector<int64_t> &v)
    {
        if (v.empty()) {
            op(')');
            return;
        }
        if (v.size() <= 3) {
            for (int64_t x : v) integer(x);
            op((uint8_t)(0x84 + v.size()));
            return;
        }
        op('(');
        for (int64_t x : v) integer(x);
        op('t');
    }

private:
    std::unordered_map<std::string, uint32_t> memo_;
    uint32_t next_ = 0;
};

bool valid_archive_name(const std::string &s)
{
    if (s.empty() || s == "." || s == "..") return false;
    for (char c : s)
        if (!(isalnum((unsigned char)c) || c == '_' || c == '-' || c == '.')) return false;
    return true;
}

void write_all(Sink &sink, const std::vector<StorageBlob> &storages, const std::vector<TensorToWrite> &tensors,
               const WriteOptions &opt)
{
    const std::string arch = opt.archive_name.empty() ? "archive" : opt.archive_name;
    if (!valid_archive_name(arch)) throw Error(cat("archive name '", printable(arch), "' is not [A-Za-z0-9_.-]+"));

    /* Storage keys in order of first use, as torch assigns them. */
    std::vector<int64_t> key_of(storages.size(), -1);
    std::vector<size_t> order;
    std::unordered_map<std::string, bool> names;
    for (const TensorToWrite &t : tensors) {
        const std::string who = cat("tensor '", printable(t.name), "'");
        if (!names.emplace(t.name, true).second) throw Error(cat(who, " appears twice"));
        if (t.storage_index >= storages.size())
            throw Error(cat(who, ": storage index ", t.storage_index, " of ", storages.size()));
        const StorageBlob &s = storages[t.storage_index];
        size_t es = dtype_size(s.dtype);
        if (s.nbytes % es) throw Error(cat(who, ": storage of ", s.nbytes, " bytes is not a whole number of ", dtype_name(s.dtype)));
        if (t.sizes.size() != t.strides.size() || t.sizes.size() > kMaxDims)
            throw Error(cat(who, ": ", t.sizes.size(), " sizes and ", t.strides.size(), " strides"));
        int64_t last = t.storage_offset;
        bool empty = false;
        if (t.storage_offset < 0) throw Error(cat(who, ": negative storage offset"));
        for (size_t d = 0; d < t.sizes.size(); d++) {
            if (t.sizes[d] < 0 || t.strides[d] < 0) throw Error(cat(who, ": negative size or stride"));
            if (t.sizes[d] == 0) empty = true;
        }
        if (!empty) {
            for (size_t d = 0; d < t.sizes.size(); d++) {
                int64_t step;
                if (__builtin_mul_overflow(t.sizes[d] - 1, t.strides[d], &step) || __builtin_add_overflow(last, step, &last))
                    throw Error(cat(who, ": extent overflows"));
            }
            if ((uint64_t)last >= s.nbytes / es)
                throw Error(cat(who, ": view reaches element ", last, " of a storage of ", s.nbytes / es));
        }
        if (key_of[t.storage_index] < 0) {
            key_of[t.storage_index] = (int64_t)order.size();
            order.push_back(t.storage_index);
        }
    }

    PickleOut p;
    p.op(0x80);
    p.op(2);
    if (!opt.wrapper_key.empty()) {
        p.op('}');
        p.put();
        p.str(opt.wrapper_key);
        p.put();
    }
    const uint32_t od = p.global("collections", "OrderedDict");
    p.op(')');
    p.op('R');
    p.put();
    if (!tensors.empty()) {
        p.op('(');
        for (const TensorToWrite &t : tensors) {
            const StorageBlob &s = storages[t.storage_index];
            p.str(t.name);
            p.put();
            p.global("torch._utils", "_rebuild_tensor_v2");
            p.op('(');
            p.op('(');
            p.str("storage");
            p.global("torch", dtype_storage_class(s.dtype));
            p.str(std::to_string(key_of[t.storage_index]));
            p.str("cpu");
            p.integer((int64_t)(s.nbytes / dtype_size(s.dtype)));
            p.op('t');
            p.op('Q');
            p.integer(t.storage_offset);
            p.int_tuple(t.sizes);
            p.int_tuple(t.strides);
            p.op(0x89);  /* requires_grad = False */
            p.get(od);   /* backward_hooks = OrderedDict() */
            p.op(')');
            p.op('R');
            p.op('t');
            p.op('R');
            p.put();
        }
        p.op('u');
    }
    if (!opt.wrapper_key.empty()) p.op('s');
    p.op('.');

    ZipWriter z(sink);
    z.add(arch + "/data.pkl", p.b.data(), p.b.size());
    for (size_t k = 0; k < order.size(); k++) {
        const StorageBlob &s = storages[order[k]];
        z.add(arch + "/data/" + std::to_string(k), s.data, s.nbytes);
    }
    static const uint8_t version[] = {'3', '\n'};
    z.add(arch + "/version", version, sizeof version);
    z.finish();
}

} // namespace

std::vector<uint8_t> write_checkpoint_to_memory(const std::vector<StorageBlob> &storages,
                                                const std::vector<TensorToWrite> &tensors, const WriteOptions &opt)
{
    MemSink s;
    write_all(s, storages, tensors, opt);
    return std::move(s.out);
}

void write_checkpoint(const std::string &path, const std::vector<StorageBlob> &storages,
                      const std::vector<TensorToWrite> &tensors, const WriteOptions &opt)
{
    WriteOptions o = opt;
    if (o.archive_name.empty()) {
        /* torch names the folder after the file's stem ("weights.pth" -> "weights"). */
        size_t slash = path.find_last_of('/');
        std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
        size_t dot = base.find('.');
        std::string stem = dot == std::string::npos ? base : base.substr(0, dot);
        o.archive_name = valid_archive_name(stem) ? stem : "archive";
    }
    samda_afile f;
    samda_error e;
    if (samda_afile_open(&f, path.c_str(), 0, &e) != SAMDA_OK) throw Error(e.message);
    try {
        FileSink s(&f, path);
        write_all(s, storages, tensors, o);
        s.flush();
    } catch (...) {
        samda_afile_abort(&f);
        throw;
    }
    if (samda_afile_commit(&f, &e) != SAMDA_OK) throw Error(e.message);
}

std::vector<uint8_t> zip_store_to_memory(const std::vector<std::pair<std::string, std::vector<uint8_t>>> &entries)
{
    MemSink s;
    ZipWriter z(s);
    for (const auto &e : entries) z.add(e.first, e.second.data(), e.second.size());
    z.finish();
    return std::move(s.out);
}

} // namespace pth
} // namespace samda
