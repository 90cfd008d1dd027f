/* Reader of torch.save zip checkpoints (see pth_reader.h; the writer is pth_writer.cpp). Three
 * layers, bottom up: the zip directory (stored entries only, ZIP64 aware), a pickle virtual
 * machine restricted to what state dicts use, and the extraction of tensor records with their bounds checks. Nothing here calls into
 * Python semantics beyond building plain values: a GLOBAL outside the whitelist is refused before it
 * can be "called", and REDUCE only dispatches to the handful of rebuild functions named below. */
#include "pth_internal.h"

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <deque>
#include <limits>
#include <sstream>
#include <unordered_map>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace samda {
namespace pth {

/* ---- dtype tables ----------------------------------------------------------------------------- */

size_t dtype_size(DType dt)
{
    switch (dt) {
    case DType::F32: return 4;
    case DType::F16: return 2;
    case DType::BF16: return 2;
    case DType::F64: return 8;
    case DType::I64: return 8;
    case DType::I32: return 4;
    case DType::I16: return 2;
    case DType::I8: return 1;
    case DType::U8: return 1;
    case DType::Bool: return 1;
    }
    return 1;
}

const char *dtype_name(DType dt)
{
    switch (dt) {
    case DType::F32: return "float32";
    case DType::F16: return "float16";
    case DType::BF16: return "bfloat16";
    case DType::F64: return "float64";
    case DType::I64: return "int64";
    case DType::I32: return "int32";
    case DType::I16: return "int16";
    case DType::I8: return "int8";
    case DType::U8: return "uint8";
    case DType::Bool: return "bool";
    }
    return "?";
}

const char *dtype_storage_class(DType dt)
{
    switch (dt) {
    case DType::F32: return "FloatStorage";
    case DType::F16: return "HalfStorage";
    case DType::BF16: return "BFloat16Storage";
    case DType::F64: return "DoubleStorage";
    case DType::I64: return "LongStorage";
    case DType::I32: return "IntStorage";
    case DType::I16: return "ShortStorage";
    case DType::I8: return "CharStorage";
    case DType::U8: return "ByteStorage";
    case DType::Bool: return "BoolStorage";
    }
    return "?";
}

static const DType kAllDTypes[] = {DType::F32, DType::F16, DType::BF16, DType::F64, DType::I64,
                                   DType::I32, DType::I16, DType::I8,   DType::U8,  DType::Bool};

int64_t record_numel(const TensorRecord &r)
{
    int64_t n = 1;
    for (int64_t s : r.sizes) n *= s;
    return n;
}

/* Printable rendering of untrusted bytes for error messages (no control characters, bounded). */
std::string printable(const std::string &s, size_t max)
{
    std::string out;
    for (size_t i = 0; i < s.size() && i < max; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f) {
            out += (char)c;
        } else {
            char b[8];
            snprintf(b, sizeof b, "\\x%02x", c);
            out += b;
        }
    }
    if (s.size() > max) out += "...";
    return out;
}

/* ---- small helpers ---------------------------------------------------------------------------- */

namespace {

uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24); }
uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | ((uint64_t)rd32(p + 4) << 32); }

std::string dims_str(const std::vector<int64_t> &v)
{
    std::string s = "[";
    for (size_t i = 0; i < v.size(); i++) s += (i ? "," : "") + std::to_string(v[i]);
    return s + "]";
}

/* CRC-32, slice-by-8 tables built once (pure function of constants, so safe to share). */
struct CrcTables {
    uint32_t t[8][256];
    CrcTables()
    {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            t[0][i] = c;
        }
        for (uint32_t i = 0; i < 256; i++)
            for (int s = 1; s < 8; s++) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xff];
    }
};
const CrcTables &crc_tables()
{
    static const CrcTables tables;
    return tables;
}

} // namespace

uint32_t crc32_update(uint32_t crc, const uint8_t *p, size_t n)
{
    const CrcTables &T = crc_tables();
    uint32_t c = ~crc;
    while (n >= 8) {
        uint32_t a = c ^ rd32(p), b = rd32(p + 4);
        c = T.t[7][a & 0xff] ^ T.t[6][(a >> 8) & 0xff] ^ T.t[5][(a >> 16) & 0xff] ^ T.t[4][a >> 24] ^
            T.t[3][b & 0xff] ^ T.t[2][(b >> 8) & 0xff] ^ T.t[1][(b >> 16) & 0xff] ^ T.t[0][b >> 24];
        p += 8;
        n -= 8;
    }
    while (n--) c = T.t[0][(c ^ *p++) & 0xff] ^ (c >> 8);
    return ~c;
}

/* ---- the checkpoint object -------------------------------------------------------------------- */

namespace {
struct ZipEntry {
    std::string name;
    uint64_t local_header; /* absolute offset of its local header; the data follows it */
    uint64_t size;
    uint32_t crc;
};
} // namespace

struct Checkpoint::Impl {
    std::string origin; /* "<path>" or "checkpoint in memory", prefixed to every message */
    const uint8_t *base = nullptr;
    size_t size = 0;
    void *map = nullptr;
    size_t map_len = 0;
    std::vector<uint8_t> owned;
    std::vector<ZipEntry> entries;
    std::unordered_map<std::string, size_t> entry_index;
    std::string archive;
    std::string wrapper;
    std::vector<TensorRecord> tensors;
    std::unordered_map<std::string, size_t> tensor_index;

    ~Impl()
    {
        if (map) munmap(map, map_len);
    }

    [[noreturn]] void fail(const std::string &msg) const { throw Error(origin + ": " + msg); }
    void parse_zip();
    void parse_pickle();
    /* Where an entry's bytes start. Read from its local header on each access rather than at open:
     * on a cold page cache, touching every local header of a 2.5 GB checkpoint up front costs one
     * random read per tensor (seconds on a VM disk), while here the read lands next to the data. */
    const uint8_t *data_of(const ZipEntry &e) const;
    const ZipEntry *find_entry(const std::string &name) const
    {
        auto it = entry_index.find(name);
        return it == entry_index.end() ? nullptr : &entries[it->second];
    }
};

/* ---- zip directory ---------------------------------------------------------------------------- */

void Checkpoint::Impl::parse_zip()
{
    const uint8_t *b = base;
    const uint64_t n = size;
    if (n >= 2 && b[0] == 0x80 && b[1] >= 2 && b[1] <= 5)
        fail("legacy (pre-1.6, non-zip) torch.save format is not supported (hint: load it in Python and "
             "re-save it with torch.save, which writes the zip format)");
    if (n < 22) fail(cat("not a zip archive (", n, " bytes; was it saved with torch.save?)"));

    /* End of central directory: the last "PK\5\6" whose comment reaches exactly the end. */
    uint64_t eocd = UINT64_MAX;
    uint64_t lowest = n - 22 > 65535 ? n - 22 - 65535 : 0;
    for (uint64_t pos = n - 22 + 1; pos-- > lowest;) {
        if (b[pos] == 'P' && b[pos + 1] == 'K' && b[pos + 2] == 5 && b[pos + 3] == 6 &&
            pos + 22 + rd16(b + pos + 20) == n) {
            eocd = pos;
            break;
        }
    }
    if (eocd == UINT64_MAX) {
        if (b[0] == 'P' && b[1] == 'K' && b[2] == 3 && b[3] == 4)
            fail(cat("zip end-of-central-directory record not found in the last ", n - lowest,
                     " bytes (truncated file?)"));
        fail("not a zip archive: no end-of-central-directory record (was it saved with torch.save?)");
    }
    if (rd16(b + eocd + 4) != 0 || rd16(b + eocd + 6) != 0) fail("multi-disk zip archives are not supported");
    uint64_t n_entries = rd16(b + eocd + 10);
    uint64_t cd_size = rd32(b + eocd + 12);
    uint64_t cd_off = rd32(b + eocd + 16);

    if (eocd >= 20 && rd32(b + eocd - 20) == 0x07064b50u) {
        uint64_t z = rd64(b + eocd - 20 + 8);
        if (z > n || n - z < 56 || rd32(b + z) != 0x06064b50u)
            fail(cat("ZIP64 end-of-central-directory record expected at byte ", z, " is missing or damaged"));
        n_entries = rd64(b + z + 32);
        cd_size = rd64(b + z + 40);
        cd_off = rd64(b + z + 48);
    } else if (n_entries == 0xFFFF || cd_size == 0xFFFFFFFFu || cd_off == 0xFFFFFFFFu) {
        fail("zip end-of-central-directory record needs ZIP64 values but the ZIP64 locator is missing");
    }
    if (cd_off > n || cd_size > n - cd_off)
        fail(cat("zip central directory (byte ", cd_off, ", ", cd_size, " bytes) runs past the end of the file (",
                 n, " bytes; truncated?)"));
    if (n_entries > cd_size / 46) fail(cat("zip central directory claims ", n_entries, " entries in ", cd_size, " bytes"));

    entries.reserve((size_t)n_entries);
    uint64_t p = cd_off, end = cd_off + cd_size;
    for (uint64_t i = 0; i < n_entries; i++) {
        if (end - p < 46 || rd32(b + p) != 0x02014b50u)
            fail(cat("zip central directory entry ", i, " at byte ", p, " is damaged"));
        uint16_t flags = rd16(b + p + 8), method = rd16(b + p + 10);
        uint32_t crc = rd32(b + p + 16);
        uint64_t csize = rd32(b + p + 20), usize = rd32(b + p + 24);
        uint16_t nlen = rd16(b + p + 28), xlen = rd16(b + p + 30), clen = rd16(b + p + 32);
        uint64_t lho = rd32(b + p + 42);
        if (end - p - 46 < (uint64_t)nlen + xlen + clen)
            fail(cat("zip central directory entry ", i, " at byte ", p, " runs past the directory"));
        std::string name((const char *)b + p + 46, nlen);
        /* ZIP64 extended information: the saturated fields, in this order. */
        const uint8_t *x = b + p + 46 + nlen, *xe = x + xlen;
        while (xe - x >= 4) {
            uint16_t id = rd16(x), len = rd16(x + 2);
            if (xe - x - 4 < len) break;
            if (id == 0x0001) {
                const uint8_t *f = x + 4, *fe = f + len;
                auto take = [&](uint64_t &v) {
                    if (fe - f < 8) fail(cat("zip entry '", printable(name), "': ZIP64 extra field too short"));
                    v = rd64(f);
                    f += 8;
                };
                if (usize == 0xFFFFFFFFu) take(usize);
                if (csize == 0xFFFFFFFFu) take(csize);
                if (lho == 0xFFFFFFFFu) take(lho);
            }
            x += 4 + len;
        }
        p += 46 + (uint64_t)nlen + xlen + clen;

        if (flags & 1) fail(cat("zip entry '", printable(name), "' is encrypted"));
        if (method != 0)
            fail(cat("zip entry '", printable(name), "' is compressed (method ", method,
                     "); only stored entries are read, as torch.save writes them (hint: re-save with torch.save)"));
        if (csize != usize)
            fail(cat("zip entry '", printable(name), "' is stored but its sizes differ (", csize, " vs ", usize, ")"));
        if (lho > n || usize > n - lho)
            fail(cat("zip entry '", printable(name), "': its ", usize, " bytes after byte ", lho,
                     " run past the end of the file (", n, " bytes; truncated?)"));
        if (!entry_index.emplace(name, entries.size()).second)
            fail(cat("zip entry '", printable(name), "' appears twice"));
        entries.push_back(ZipEntry{name, lho, usize, crc});
    }

    for (const ZipEntry &e : entries) {
        size_t slash = e.name.find('/');
        if (slash != std::string::npos && slash > 0 && e.name.compare(slash, std::string::npos, "/data.pkl") == 0) {
            archive = e.name.substr(0, slash);
            return;
        }
    }
    fail("no '<name>/data.pkl' entry in the zip: not a torch.save checkpoint");
}

const uint8_t *Checkpoint::Impl::data_of(const ZipEntry &e) const
{
    const uint64_t n = size, lho = e.local_header;
    const std::string &name = e.name;
    if (lho > n || n - lho < 30 || rd32(base + lho) != 0x04034b50u)
        fail(cat("zip entry '", printable(name), "': local header at byte ", lho, " is missing or damaged"));
    uint64_t lnlen = rd16(base + lho + 26), lxlen = rd16(base + lho + 28);
    if (n - lho - 30 < lnlen + lxlen)
        fail(cat("zip entry '", printable(name), "': local header at byte ", lho, " runs past the end of the file"));
    if (lnlen != name.size() || memcmp(base + lho + 30, name.data(), lnlen) != 0)
        fail(cat("zip entry '", printable(name), "': local header at byte ", lho, " names a different entry"));
    uint64_t data = lho + 30 + lnlen + lxlen;
    if (e.size > n - data)
        fail(cat("zip entry '", printable(name), "': its ", e.size, " bytes at byte ", data,
                 " run past the end of the file (", n, " bytes; truncated?)"));
    return base + data;
}

/* ---- pickle virtual machine ------------------------------------------------------------------- */

namespace {

enum class K : uint8_t { None, Bool, Int, Float, Str, Bytes, Tuple, List, Dict, Global, Storage, Tensor };

const char *kind_name(K k)
{
    switch (k) {
    case K::None: return "None";
    case K::Bool: return "bool";
    case K::Int: return "int";
    case K::Float: return "float";
    case K::Str: return "str";
    case K::Bytes: return "bytes";
    case K::Tuple: return "tuple";
    case K::List: return "list";
    case K::Dict: return "dict";
    case K::Global: return "global";
    case K::Storage: return "storage";
    case K::Tensor: return "tensor";
    }
    return "?";
}

enum class G : uint8_t {
    OrderedDict, RebuildTensorV2, RebuildTensor, RebuildParameter, RebuildParameterWithState,
    RebuildFromTypeV2, ParameterClass, TensorClass, StorageClass
};

/* Pickle values live in an arena owned by the VM; containers refer to them by raw pointer, so a
 * self-referencing list (possible through the memo) cannot leak, and destruction never recurses. */
struct Obj {
    K k;
    bool b = false;
    int64_t i = 0; /* Int; Storage: numel */
    double f = 0;
    std::string s;                         /* Str, Bytes; Global: "module.name"; Storage: entry name */
    std::vector<Obj *> items;              /* Tuple, List */
    std::vector<std::pair<Obj *, Obj *>> kv; /* Dict, in insertion order */
    std::unique_ptr<std::unordered_map<std::string, size_t>> str_keys; /* Dict: str key -> kv index */
    G g = G::OrderedDict;                  /* Global */
    DType dt = DType::F32;                 /* Global (storage class), Storage, Tensor */
    std::unique_ptr<TensorRecord> t;       /* Tensor (name empty) */
    explicit Obj(K kind) : k(kind) {}
};

struct Whitelisted {
    const char *module, *name;
    G g;
};
const Whitelisted kGlobals[] = {
    {"collections", "OrderedDict", G::OrderedDict},
    {"torch._utils", "_rebuild_tensor_v2", G::RebuildTensorV2},
    {"torch._utils", "_rebuild_tensor", G::RebuildTensor},
    {"torch._utils", "_rebuild_parameter", G::RebuildParameter},
    {"torch._utils", "_rebuild_parameter_with_state", G::RebuildParameterWithState},
    {"torch._tensor", "_rebuild_from_type_v2", G::RebuildFromTypeV2},
    {"torch.nn.parameter", "Parameter", G::ParameterClass},
    {"torch", "Tensor", G::TensorClass},
};

constexpr size_t kMaxStack = 1u << 20;
constexpr size_t kMaxMemo = 1u << 22;

class Vm {
public:
    Vm(const Checkpoint::Impl &ck, const uint8_t *p, size_t n) : ck_(ck), p_(p), n_(n) {}
    Obj *run();

private:
    const Checkpoint::Impl &ck_;
    const uint8_t *p_;
    size_t n_;
    size_t pos_ = 0; /* next byte */
    size_t op_pos_ = 0; /* offset of the opcode being executed */
    std::deque<Obj> arena_;
    std::vector<Obj *> stack_;
    std::vector<size_t> marks_;
    std::unordered_map<uint64_t, Obj *> memo_;
    Obj none_{K::None};

    [[noreturn]] void fail(const std::string &msg) const
    {
        ck_.fail(cat("data.pkl byte ", op_pos_, ": ", msg));
    }
    Obj *make(K k)
    {
        arena_.emplace_back(k);
        return &arena_.back();
    }
    const uint8_t *take(size_t k)
    {
        if (n_ - pos_ < k) fail(cat("pickle ends inside an argument (", k, " bytes wanted, ", n_ - pos_, " left)"));
        const uint8_t *q = p_ + pos_;
        pos_ += k;
        return q;
    }
    std::string line()
    {
        const void *nl = memchr(p_ + pos_, '\n', n_ - pos_);
        if (!nl) fail("pickle ends inside a GLOBAL name");
        size_t len = (size_t)((const uint8_t *)nl - (p_ + pos_));
        std::string s((const char *)p_ + pos_, len);
        pos_ += len + 1;
        return s;
    }
    void push(Obj *o)
    {
        if (stack_.size() >= kMaxStack) fail(cat("pickle stack exceeds ", kMaxStack, " values"));
        stack_.push_back(o);
    }
    Obj *pop()
    {
        if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back())) fail("pickle stack underflow");
        Obj *o = stack_.back();
        stack_.pop_back();
        return o;
    }
    Obj *top()
    {
        if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back())) fail("pickle stack underflow");
        return stack_.back();
    }
    std::vector<Obj *> pop_mark()
    {
        if (marks_.empty()) fail("opcode needs a MARK but none is set");
        size_t m = marks_.back();
        marks_.pop_back();
        std::vector<Obj *> out(stack_.begin() + (std::ptrdiff_t)m, stack_.end());
        stack_.resize(m);
        return out;
    }
    void memo_put(uint64_t idx, Obj *o)
    {
        if (memo_.size() >= kMaxMemo && !memo_.count(idx)) fail(cat("pickle memo exceeds ", kMaxMemo, " entries"));
        memo_[idx] = o;
    }
    Obj *memo_get(uint64_t idx)
    {
        auto it = memo_.find(idx);
        if (it == memo_.end()) fail(cat("memo entry ", idx, " read before it was written"));
        return it->second;
    }
    Obj *make_int(int64_t v)
    {
        Obj *o = make(K::Int);
        o->i = v;
        return o;
    }
    Obj *make_str(K k, const uint8_t *q, size_t len)
    {
        Obj *o = make(k);
        o->s.assign((const char *)q, len);
        return o;
    }
    Obj *make_tuple(std::vector<Obj *> items)
    {
        Obj *o = make(K::Tuple);
        o->items = std::move(items);
        return o;
    }
    Obj *make_dict()
    {
        Obj *o = make(K::Dict);
        o->str_keys = std::make_unique<std::unordered_map<std::string, size_t>>();
        return o;
    }
    void dict_set(Obj *d, Obj *key, Obj *val)
    {
        if (d->k != K::Dict) fail(cat("SETITEM on a ", kind_name(d->k), ", not a dict"));
        if (key->k == K::Str) {
            auto it = d->str_keys->find(key->s);
            if (it != d->str_keys->end()) {
                d->kv[it->second].second = val;
                return;
            }
            d->str_keys->emplace(key->s, d->kv.size());
        }
        d->kv.emplace_back(key, val);
    }
    void list_append(Obj *l, Obj *v)
    {
        if (l->k != K::List) fail(cat("APPEND on a ", kind_name(l->k), ", not a list"));
        l->items.push_back(v);
    }
    Obj *global(const std::string &module, const std::string &name);
    Obj *persistent_load(Obj *pid);
    Obj *call(Obj *fn, Obj *args, int depth);
    Obj *rebuild_tensor(Obj *args, const char *fname);
    int64_t as_int(Obj *o, const char *what)
    {
        if (o->k == K::Int) return o->i;
        if (o->k == K::Bool) return o->b ? 1 : 0;
        fail(cat(what, " is a ", kind_name(o->k), ", not an int"));
    }
};

Obj *Vm::global(const std::string &module, const std::string &name)
{
    Obj *o = make(K::Global);
    o->s = module + "." + name;
    if (module == "torch") {
        for (DType dt : kAllDTypes) {
            if (name == dtype_storage_class(dt)) {
                o->g = G::StorageClass;
                o->dt = dt;
                return o;
            }
        }
    }
    for (const Whitelisted &w : kGlobals) {
        if (module == w.module && name == w.name) {
            o->g = w.g;
            return o;
        }
    }
    fail(cat("global '", printable(o->s), "' is not allowed (only the classes and functions of a "
             "tensor state dict are read; nothing is executed)"));
}

Obj *Vm::persistent_load(Obj *pid)
{
    if (pid->k != K::Tuple || pid->items.size() != 5 || pid->items[0]->k != K::Str || pid->items[0]->s != "storage")
        fail("persistent id is not a ('storage', type, key, location, numel) tuple");
    Obj *cls = pid->items[1], *key = pid->items[2], *loc = pid->items[3];
    if (cls->k != K::Global || cls->g != G::StorageClass) fail("persistent id names no known storage class");
    if (key->k != K::Str) fail("persistent id's storage key is not a string");
    if (loc->k != K::Str) fail("persistent id's storage location is not a string");
    int64_t numel = as_int(pid->items[4], "persistent id's element count");
    std::string entry = ck_.archive + "/data/" + key->s;
    const ZipEntry *e = ck_.find_entry(entry);
    if (!e) fail(cat("storage '", printable(entry), "' is missing from the zip"));
    uint64_t es = dtype_size(cls->dt);
    if (numel < 0 || (uint64_t)numel > e->size / es || (uint64_t)numel * es != e->size)
        fail(cat("storage '", printable(entry), "' holds ", e->size, " bytes but the pickle says ", numel, " ",
                 dtype_name(cls->dt), " elements (", es, " bytes each)"));
    Obj *o = make(K::Storage);
    o->s = entry;
    o->i = numel;
    o->dt = cls->dt;
    return o;
}

/* _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata]) and
 * _rebuild_tensor(storage, storage_offset, size, stride): only the first four matter here. */
Obj *Vm::rebuild_tensor(Obj *args, const char *fname)
{
    if (args->items.size() < 4) fail(cat(fname, " needs at least 4 arguments, got ", args->items.size()));
    Obj *st = args->items[0], *size = args->items[2], *stride = args->items[3];
    if (st->k != K::Storage) fail(cat(fname, ": first argument is a ", kind_name(st->k), ", not a storage"));
    if (size->k != K::Tuple || stride->k != K::Tuple) fail(cat(fname, ": size and stride must be tuples"));
    if (size->items.size() > kMaxDims) fail(cat(fname, ": ", size->items.size(), " dimensions (at most ", kMaxDims, ")"));
    Obj *o = make(K::Tensor);
    o->t = std::make_unique<TensorRecord>();
    TensorRecord &r = *o->t;
    r.dtype = st->dt;
    r.storage_key = st->s;
    r.storage_numel = st->i;
    r.storage_offset = as_int(args->items[1], "storage offset");
    for (Obj *x : size->items) r.sizes.push_back(as_int(x, "a size"));
    for (Obj *x : stride->items) r.strides.push_back(as_int(x, "a stride"));
    return o;
}

Obj *Vm::call(Obj *fn, Obj *args, int depth)
{
    if (fn->k != K::Global) fail(cat("REDUCE calls a ", kind_name(fn->k), ", not a global"));
    if (args->k != K::Tuple) fail(cat("REDUCE arguments are a ", kind_name(args->k), ", not a tuple"));
    const auto &a = args->items;
    switch (fn->g) {
    case G::OrderedDict: {
        Obj *d = make_dict();
        if (a.size() == 1 && a[0]->k == K::List) {
            for (Obj *pair : a[0]->items) {
                if (pair->k != K::Tuple || pair->items.size() != 2) fail("OrderedDict() argument is not a list of pairs");
                dict_set(d, pair->items[0], pair->items[1]);
            }
        } else if (!a.empty()) {
            fail("OrderedDict() with unsupported arguments");
        }
        return d;
    }
    case G::RebuildTensorV2: return rebuild_tensor(args, "_rebuild_tensor_v2");
    case G::RebuildTensor: return rebuild_tensor(args, "_rebuild_tensor");
    case G::RebuildParameter:
    case G::RebuildParameterWithState:
        if (a.empty() || a[0]->k != K::Tensor) fail(cat(fn->s, ": first argument is not a tensor"));
        return a[0];
    case G::RebuildFromTypeV2: {
        /* _rebuild_from_type_v2(func, new_type, args, state): only tensor rebuilders, one level. */
        if (depth > 0) fail("nested _rebuild_from_type_v2");
        if (a.size() < 3) fail("_rebuild_from_type_v2 needs 4 arguments");
        if (a[1]->k != K::Global || (a[1]->g != G::ParameterClass && a[1]->g != G::TensorClass))
            fail("_rebuild_from_type_v2: the new type is not torch.Tensor or torch.nn.Parameter");
        Obj *r = call(a[0], a[2], depth + 1);
        if (r->k != K::Tensor) fail("_rebuild_from_type_v2 did not produce a tensor");
        return r;
    }
    case G::ParameterClass:
    case G::TensorClass:
    case G::StorageClass: break;
    }
    fail(cat("'", fn->s, "' cannot be called"));
}

Obj *Vm::run()
{
    while (pos_ < n_) {
        op_pos_ = pos_;
        uint8_t op = p_[pos_++];
        switch (op) {
        case 0x80: { /* PROTO */
            uint8_t v = *take(1);
            if (v < 2 || v > 5) fail(cat("pickle protocol ", (int)v, " is not supported (2 to 5)"));
            break;
        }
        case 0x95: take(8); break; /* FRAME: a hint only */
        case '.': { /* STOP */
            if (stack_.empty()) fail("STOP with an empty stack");
            return stack_.back();
        }
        case '(': /* MARK */
            if (marks_.size() >= kMaxStack) fail("too many MARKs");
            marks_.push_back(stack_.size());
            break;
        case '0': pop(); break;             /* POP */
        case '1': pop_mark(); break;        /* POP_MARK */
        case '2': push(top()); break;       /* DUP */
        case 'N': push(&none_); break;      /* NONE */
        case 0x88: case 0x89: {             /* NEWTRUE, NEWFALSE */
            Obj *o = make(K::Bool);
            o->b = op == 0x88;
            push(o);
            break;
        }
        case 'J': push(make_int((int32_t)rd32(take(4)))); break;  /* BININT */
        case 'K': push(make_int(*take(1))); break;                /* BININT1 */
        case 'M': push(make_int(rd16(take(2)))); break;           /* BININT2 */
        case 0x8a: case 0x8b: {                                   /* LONG1, LONG4 */
            uint64_t len = op == 0x8a ? *take(1) : rd32(take(4));
            if (len > 8) fail(cat("integer of ", len, " bytes does not fit 64 bits"));
            const uint8_t *q = take((size_t)len);
            uint64_t v = 0;
            for (uint64_t k = 0; k < len; k++) v |= (uint64_t)q[k] << (8 * k);
            if (len > 0 && len < 8 && (q[len - 1] & 0x80)) v |= ~0ull << (8 * len); /* sign-extend */
            push(make_int((int64_t)v));
            break;
        }
        case 'G': { /* BINFLOAT: big-endian IEEE double */
            const uint8_t *q = take(8);
            uint64_t u = 0;
            for (int k = 0; k < 8; k++) u = (u << 8) | q[k];
            Obj *o = make(K::Float);
            memcpy(&o->f, &u, 8);
            push(o);
            break;
        }
        case 'X': case 0x8c: case 0x8d:  /* BINUNICODE, SHORT_BINUNICODE, BINUNICODE8 */
        case 'T': case 'U':              /* BINSTRING, SHORT_BINSTRING (Python 2 str) */
        case 'B': case 'C': case 0x8e: { /* BINBYTES, SHORT_BINBYTES, BINBYTES8 */
            uint64_t len;
            if (op == 0x8c || op == 'U' || op == 'C') len = *take(1);
            else if (op == 0x8d || op == 0x8e) len = rd64(take(8));
            else len = rd32(take(4));
            if (op == 'T' && (int32_t)len < 0) fail("BINSTRING with a negative length");
            if (len > n_ - pos_) fail(cat("string of ", len, " bytes runs past the end of the pickle"));
            const uint8_t *q = take((size_t)len);
            push(make_str((op == 'B' || op == 'C' || op == 0x8e) ? K::Bytes : K::Str, q, (size_t)len));
            break;
        }
        case ')': push(make_tuple({})); break;                      /* EMPTY_TUPLE */
        case 't': push(make_tuple(pop_mark())); break;              /* TUPLE */
        case 0x85: case 0x86: case 0x87: {                          /* TUPLE1..3 */
            size_t k = (size_t)(op - 0x84);
            std::vector<Obj *> items(k);
            for (size_t j = k; j-- > 0;) items[j] = pop();
            push(make_tuple(std::move(items)));
            break;
        }
        case ']': push(make(K::List)); break;                       /* EMPTY_LIST */
        case 'l': {                                                 /* LIST */
            Obj *l = make(K::List);
            l->items = pop_mark();
            push(l);
            break;
        }
        case 'a': { Obj *v = pop(); list_append(top(), v); break; } /* APPEND */
        case 'e': {                                                 /* APPENDS */
            std::vector<Obj *> items = pop_mark();
            Obj *l = top();
            for (Obj *v : items) list_append(l, v);
            break;
        }
        case '}': push(make_dict()); break;                         /* EMPTY_DICT */
        case 'd': {                                                 /* DICT */
            std::vector<Obj *> items = pop_mark();
            if (items.size() % 2) fail("DICT with an odd number of items");
            Obj *d = make_dict();
            for (size_t j = 0; j < items.size(); j += 2) dict_set(d, items[j], items[j + 1]);
            push(d);
            break;
        }
        case 's': { Obj *v = pop(); Obj *k = pop(); dict_set(top(), k, v); break; } /* SETITEM */
        case 'u': {                                                 /* SETITEMS */
            std::vector<Obj *> items = pop_mark();
            if (items.size() % 2) fail("SETITEMS with an odd number of items");
            Obj *d = top();
            for (size_t j = 0; j < items.size(); j += 2) dict_set(d, items[j], items[j + 1]);
            break;
        }
        case 'c': { /* GLOBAL */
            std::string module = line();
            std::string name = line();
            push(global(module, name));
            break;
        }
        case 0x93: { /* STACK_GLOBAL */
            Obj *name = pop(), *module = pop();
            if (name->k != K::Str || module->k != K::Str) fail("STACK_GLOBAL arguments are not strings");
            push(global(module->s, name->s));
            break;
        }
        case 'Q': push(persistent_load(pop())); break; /* BINPERSID */
        case 'P': fail("PERSID (text persistent id) is not used by torch.save and is not supported");
        case 'q': memo_put(*take(1), top()); break;            /* BINPUT */
        case 'r': memo_put(rd32(take(4)), top()); break;       /* LONG_BINPUT */
        case 0x94: memo_put(memo_.size(), top()); break;       /* MEMOIZE */
        case 'h': push(memo_get(*take(1))); break;             /* BINGET */
        case 'j': push(memo_get(rd32(take(4)))); break;        /* LONG_BINGET */
        case 'R': { Obj *args = pop(); Obj *fn = pop(); push(call(fn, args, 0)); break; } /* REDUCE */
        case 0x81: {                                           /* NEWOBJ */
            Obj *args = pop();
            Obj *cls = pop();
            if (cls->k != K::Global || cls->g != G::OrderedDict) fail(cat("NEWOBJ of '", printable(cls->s), "' is not supported"));
            push(call(cls, args, 0));
            break;
        }
        case 'b': { /* BUILD: the state (OrderedDict's _metadata) carries nothing we need */
            pop();
            top();
            break;
        }
        default: {
            char b[8];
            snprintf(b, sizeof b, "0x%02x", op);
            fail(cat("unsupported pickle opcode ", b,
                     (op >= 0x20 && op < 0x7f) ? cat(" ('", (char)op, "')") : std::string()));
        }
        }
    }
    fail("pickle ends without STOP (truncated?)");
}

} // namespace

/* ---- state dict extraction -------------------------------------------------------------------- */

void Checkpoint::Impl::parse_pickle()
{
    const ZipEntry *pk = find_entry(archive + "/data.pkl");
    Vm vm(*this, data_of(*pk), (size_t)pk->size);
    Obj *root = vm.run();
    if (root->k != K::Dict) fail(cat("data.pkl holds a ", kind_name(root->k), ", not a state dict"));

    auto has_tensor = [](const Obj *d) {
        for (const auto &kv : d->kv)
            if (kv.second->k == K::Tensor) return true;
        return false;
    };
    const Obj *sd = root;
    if (!has_tensor(root)) {
        for (const char *w : {"state_dict", "model"}) {
            auto it = root->str_keys->find(w);
            if (it != root->str_keys->end() && root->kv[it->second].second->k == K::Dict) {
                sd = root->kv[it->second].second;
                wrapper = w;
                break;
            }
        }
    }
    for (const auto &kv : sd->kv) {
        if (kv.first->k != K::Str || kv.second->k != K::Tensor) continue; /* ints, metadata: not ours */
        TensorRecord r = *kv.second->t;
        r.name = kv.first->s;
        const std::string who = cat("tensor '", printable(r.name), "'");
        if (r.sizes.size() != r.strides.size())
            fail(cat(who, ": ", r.sizes.size(), " sizes but ", r.strides.size(), " strides"));
        if (r.storage_offset < 0) fail(cat(who, ": negative storage offset ", r.storage_offset));
        bool empty = false;
        int64_t numel = 1;
        for (size_t d = 0; d < r.sizes.size(); d++) {
            if (r.sizes[d] < 0) fail(cat(who, ": negative size ", r.sizes[d], " in dimension ", d));
            if (r.strides[d] < 0) fail(cat(who, ": negative stride ", r.strides[d], " in dimension ", d));
            if (r.sizes[d] == 0) empty = true;
            else if (__builtin_mul_overflow(numel, r.sizes[d], &numel))
                fail(cat(who, ": sizes ", dims_str(r.sizes), " overflow 64 bits"));
        }
        if (!empty) {
            int64_t last = r.storage_offset; /* index of the last element reached */
            for (size_t d = 0; d < r.sizes.size(); d++) {
                int64_t step;
                if (__builtin_mul_overflow(r.sizes[d] - 1, r.strides[d], &step) ||
                    __builtin_add_overflow(last, step, &last))
                    fail(cat(who, ": extent of sizes ", dims_str(r.sizes), " strides ", dims_str(r.strides), " overflows"));
            }
            if (last >= r.storage_numel)
                fail(cat(who, " (", dtype_name(r.dtype), " ", dims_str(r.sizes), ", strides ", dims_str(r.strides),
                         ", offset ", r.storage_offset, ") reaches element ", last, " but its storage '",
                         printable(r.storage_key), "' holds ", r.storage_numel, " elements"));
        }
        tensor_index.emplace(r.name, tensors.size());
        tensors.push_back(std::move(r));
    }
    if (tensors.empty())
        fail(cat("data.pkl holds no tensors (expected a state dict, or a dict with 'model' or 'state_dict')"));
}

/* ---- Checkpoint ------------------------------------------------------------------------------- */

Checkpoint::Checkpoint(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Checkpoint::Checkpoint(Checkpoint &&) noexcept = default;
Checkpoint &Checkpoint::operator=(Checkpoint &&) noexcept = default;
Checkpoint::~Checkpoint() = default;

Checkpoint Checkpoint::open(const std::string &path)
{
    auto impl = std::make_unique<Impl>();
    impl->origin = path;
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) impl->fail(cat("cannot open: ", strerror(errno)));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        ::close(fd);
        impl->fail(cat("cannot stat: ", strerror(e)));
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        impl->fail("not a regular file");
    }
    if (st.st_size == 0) {
        ::close(fd);
        impl->fail("empty file (not a checkpoint)");
    }
    void *m = mmap(nullptr, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    ::close(fd);
    if (m == MAP_FAILED) impl->fail(cat("cannot map ", st.st_size, " bytes: ", strerror(e)));
    impl->map = m;
    impl->map_len = (size_t)st.st_size;
    impl->base = (const uint8_t *)m;
    impl->size = (size_t)st.st_size;
    impl->parse_zip();
    impl->parse_pickle();
    return Checkpoint(std::move(impl));
}

Checkpoint Checkpoint::from_memory(std::vector<uint8_t> bytes)
{
    auto impl = std::make_unique<Impl>();
    impl->origin = "checkpoint in memory";
    impl->owned = std::move(bytes);
    impl->base = impl->owned.data();
    impl->size = impl->owned.size();
    impl->parse_zip();
    impl->parse_pickle();
    return Checkpoint(std::move(impl));
}

const std::vector<TensorRecord> &Checkpoint::tensors() const { return impl_->tensors; }

const TensorRecord *Checkpoint::find(const std::string &name) const
{
    auto it = impl_->tensor_index.find(name);
    return it == impl_->tensor_index.end() ? nullptr : &impl_->tensors[it->second];
}

std::pair<const uint8_t *, size_t> Checkpoint::entry(const std::string &name) const
{
    const ZipEntry *e = impl_->find_entry(name);
    if (!e) impl_->fail(cat("no zip entry '", printable(name), "'"));
    return {impl_->data_of(*e), (size_t)e->size};
}

std::pair<const uint8_t *, size_t> Checkpoint::storage(const std::string &key) const
{
    const ZipEntry *e = impl_->find_entry(key);
    if (!e) impl_->fail(cat("storage '", printable(key), "' is missing from the zip"));
    return {impl_->data_of(*e), (size_t)e->size};
}

bool Checkpoint::has_entry(const std::string &name) const { return impl_->find_entry(name) != nullptr; }

std::vector<std::string> Checkpoint::entry_names() const
{
    std::vector<std::string> out;
    out.reserve(impl_->entries.size());
    for (const ZipEntry &e : impl_->entries) out.push_back(e.name);
    return out;
}

const std::string &Checkpoint::archive_name() const { return impl_->archive; }
const std::string &Checkpoint::wrapper_key() const { return impl_->wrapper; }

void Checkpoint::verify_crc32() const
{
    for (const ZipEntry &e : impl_->entries) {
        uint32_t c = crc32_update(0, impl_->data_of(e), (size_t)e.size);
        if (c != e.crc)
            impl_->fail(cat("zip entry '", printable(e.name), "': CRC-32 ", std::hex, c, " differs from the recorded ",
                            e.crc, " (corrupted file)"));
    }
}

} // namespace pth
} // namespace samda
