/* Tests of model/pth_reader.cpp: the sam-parity checkpoint (values cross-checked against a Python
 * pickletools/numpy reading of the original float32 file; the repository's copy holds the same
 * weights rounded to float16, checked against those values rounded), write/read round trips, wrapper dicts, hand-made
 * pickles for each opcode family, and every refusal (truncation, bad zip, compressed entry, unknown
 * opcode, forbidden global, tensor past its storage, missing storage). */
#include "check.h"
#include "npy.h"
#include "pth_reader.h"

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <unistd.h>

using namespace samda::pth;

namespace {

std::vector<uint8_t> f32_bytes(const std::vector<float> &v)
{
    std::vector<uint8_t> b(v.size() * 4);
    memcpy(b.data(), v.data(), b.size());
    return b;
}

float f32_at(const Checkpoint &ck, const TensorRecord &r, int64_t i)
{
    auto s = ck.storage(r.storage_key);
    float f;
    memcpy(&f, s.first + 4 * (r.storage_offset + i), 4);
    return f;
}

/* Element i of a float32 or float16 tensor, as float. */
float value_at(const Checkpoint &ck, const TensorRecord &r, int64_t i)
{
    if (r.dtype == DType::F32) return f32_at(ck, r, i);
    auto s = ck.storage(r.storage_key);
    uint16_t h;
    memcpy(&h, s.first + 2 * (r.storage_offset + i), 2);
    return samda::npy::half_to_float(h);
}

/* What a checkpoint of dtype dt stores for the float32 value v: v itself, or v rounded to the
 * nearest float16 (as torch's .half() does). */
double stored(DType dt, double v)
{
    return dt == DType::F16 ? samda::npy::half_to_float(samda::npy::float_to_half((float)v)) : v;
}

/* Hand-written pickles for the refusal and opcode tests. */
struct P {
    std::vector<uint8_t> b;
    P &op(uint8_t o) { b.push_back(o); return *this; }
    P &raw(const std::string &s) { b.insert(b.end(), s.begin(), s.end()); return *this; }
    P &u32(uint32_t v) { for (int k = 0; k < 4; k++) b.push_back((uint8_t)(v >> (8 * k))); return *this; }
    P &str(const std::string &s) { op('X'); u32((uint32_t)s.size()); return raw(s); }
    P &i32(int32_t v) { op('J'); return u32((uint32_t)v); }
    P &global(const std::string &m, const std::string &n) { op('c'); raw(m); op('\n'); raw(n); return op('\n'); }
    /* push _rebuild_tensor_v2(...) result for a 'FloatStorage' unless cls given */
    P &tensor(const std::string &key, int64_t numel, int64_t offset, std::vector<int32_t> sizes,
              std::vector<int32_t> strides, const std::string &cls = "FloatStorage")
    {
        global("torch._utils", "_rebuild_tensor_v2");
        op('(');
        op('(').str("storage").global("torch", cls).str(key).str("cpu").i32((int32_t)numel).op('t').op('Q');
        i32((int32_t)offset);
        op('(');
        for (int32_t s : sizes) i32(s);
        op('t');
        op('(');
        for (int32_t s : strides) i32(s);
        op('t');
        op(0x89);
        global("collections", "OrderedDict").op(')').op('R');
        op('t');
        return op('R');
    }
};

std::vector<uint8_t> make_zip(const std::vector<uint8_t> &pkl, const std::vector<std::pair<std::string, std::vector<uint8_t>>> &more = {},
                              const std::string &arch = "archive")
{
    std::vector<std::pair<std::string, std::vector<uint8_t>>> e;
    e.emplace_back(arch + "/data.pkl", pkl);
    for (const auto &m : more) e.emplace_back(arch + "/" + m.first, m.second);
    e.emplace_back(arch + "/version", std::vector<uint8_t>{'3', '\n'});
    return zip_store_to_memory(e);
}

/* A one-tensor state dict {name: tensor} built by hand around a tensor pickle fragment. */
std::vector<uint8_t> one_tensor(const std::string &name, const std::string &key, int64_t numel, int64_t off,
                                std::vector<int32_t> sizes, std::vector<int32_t> strides, size_t storage_bytes)
{
    P p;
    p.op(0x80).op(2).global("collections", "OrderedDict").op(')').op('R');
    p.str(name).tensor(key, numel, off, sizes, strides).op('s').op('.');
    return make_zip(p.b, {{"data/0", std::vector<uint8_t>(storage_bytes, 0)}});
}

/* ---- the fixture ------------------------------------------------------------------------------ */

void test_fixture()
{
    const std::string path = samda_test::fixtures() + "/sam-parity/tiny/weights.pth";
    Checkpoint ck = Checkpoint::open(path);
    CHECK_EQ(ck.tensors().size(), (size_t)202);
    CHECK_EQ(ck.archive_name(), std::string("weights"));
    CHECK_EQ(ck.wrapper_key(), std::string(""));
    CHECK_EQ(ck.entry_names().size(), (size_t)204);
    CHECK_EQ(ck.tensors().front().name, std::string("image_encoder.pos_embed"));
    CHECK_EQ(ck.tensors().back().name, std::string("mask_decoder.iou_prediction_head.layers.2.bias"));
    /* float32 (the original) or float16 (the repository's rounded copy), the same for every tensor */
    const DType dt = ck.tensors().front().dtype;
    const size_t esize = dtype_size(dt);
    CHECK(dt == DType::F32 || dt == DType::F16);
    printf("fixture checkpoint: %s\n", dtype_name(dt));
    int64_t total = 0;
    bool all_same = true;
    for (const TensorRecord &r : ck.tensors()) {
        total += record_numel(r);
        all_same = all_same && r.dtype == dt;
    }
    CHECK_EQ(total, (int64_t)5230224); /* sum of numel over the state dict, from Python */
    CHECK(all_same);

    const TensorRecord *pe = ck.find("image_encoder.pos_embed");
    CHECK(pe != nullptr);
    if (pe) {
        CHECK(pe->sizes == (std::vector<int64_t>{1, 16, 16, 96}));
        CHECK(pe->strides == (std::vector<int64_t>{24576, 1536, 96, 1}));
        CHECK_EQ(pe->storage_key, std::string("weights/data/0"));
        CHECK_EQ(pe->storage_numel, (int64_t)24576);
        CHECK_EQ(ck.storage(pe->storage_key).second, (size_t)24576 * esize);
        CHECK_NEAR(value_at(ck, *pe, 0), stored(dt, 0.04674743115901947), 1e-9);
        CHECK_NEAR(value_at(ck, *pe, 1), stored(dt, 0.04269896447658539), 1e-9);
        CHECK_NEAR(value_at(ck, *pe, 24575), stored(dt, -0.15286503732204437), 1e-9);
    }
    const TensorRecord *iou = ck.find("mask_decoder.iou_token.weight");
    CHECK(iou != nullptr);
    if (iou) {
        CHECK(iou->sizes == (std::vector<int64_t>{1, 256}));
        CHECK_EQ(iou->storage_key, std::string("weights/data/164"));
        CHECK_NEAR(value_at(ck, *iou, 0), stored(dt, 0.015164948999881744), 1e-9);
        CHECK_NEAR(value_at(ck, *iou, 255), stored(dt, 0.01893274299800396), 1e-9);
    }
    const TensorRecord *g = ck.find("prompt_encoder.pe_layer.positional_encoding_gaussian_matrix");
    CHECK(g != nullptr);
    if (g) {
        CHECK(g->sizes == (std::vector<int64_t>{2, 128}));
        CHECK_NEAR(value_at(ck, *g, 0), stored(dt, 0.33150357007980347), 1e-9);
        CHECK_NEAR(value_at(ck, *g, 2), stored(dt, -0.9488438963890076), 1e-9);
        CHECK_NEAR(value_at(ck, *g, 255), stored(dt, -2.1450116634368896), 1e-9);
    }
    const TensorRecord *rel = ck.find("image_encoder.blocks.0.attn.rel_pos_h");
    CHECK(rel && rel->sizes == (std::vector<int64_t>{13, 24}));
    const TensorRecord *hb = ck.find("mask_decoder.output_hypernetworks_mlps.3.layers.2.bias");
    CHECK(hb && hb->sizes == (std::vector<int64_t>{32}));
    if (hb) CHECK_NEAR(value_at(ck, *hb, 31), stored(dt, 0.0017658090218901634), 1e-9);
    CHECK(ck.find("no.such.key") == nullptr);
    CHECK(ck.has_entry("weights/version"));
    CHECK_THROWS(ck.storage("weights/data/9999"), Error, "weights/data/9999");
    ck.verify_crc32();

    /* the same bytes through from_memory */
    std::ifstream in(path, std::ios::binary);
    std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    Checkpoint m = Checkpoint::from_memory(bytes);
    CHECK_EQ(m.tensors().size(), (size_t)202);

    /* truncated copies of the real file: every cut is refused, none crashes */
    for (size_t cut : {(size_t)0, (size_t)1, (size_t)21, (size_t)100, (size_t)36500, bytes.size() / 2,
                       bytes.size() - 200, bytes.size() - 98, bytes.size() - 22, bytes.size() - 1}) {
        std::vector<uint8_t> t(bytes.begin(), bytes.begin() + (std::ptrdiff_t)cut);
        CHECK_THROWS(Checkpoint::from_memory(t), Error, "checkpoint in memory");
    }
    /* a flipped storage byte is caught by the CRC check */
    std::vector<uint8_t> flip = bytes;
    flip[40000] ^= 0x40;
    Checkpoint fk = Checkpoint::from_memory(flip);
    CHECK_THROWS(fk.verify_crc32(), Error, "CRC-32");
    CHECK_THROWS(Checkpoint::open(path + ".absent"), Error, ".absent: cannot open");
}

/* ---- round trips through the writer ----------------------------------------------------------- */

void test_round_trip()
{
    std::vector<float> a = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    std::vector<uint8_t> sa = f32_bytes(a);
    std::vector<uint8_t> sh = {0x00, 0x3c, 0x00, 0xc0, 0x00, 0x7c, 0x01, 0x00}; /* f16 1, -2, inf, tiny */
    std::vector<uint8_t> sb = {0x80, 0x3f, 0x40, 0x40, 0x49, 0x40};              /* bf16 1, 3, 3.14 */
    std::vector<uint8_t> si = {1, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    std::vector<uint8_t> sbool = {1, 0, 1};
    std::vector<StorageBlob> st = {{DType::F32, sa.data(), sa.size()},
                                   {DType::F16, sh.data(), sh.size()},
                                   {DType::BF16, sb.data(), sb.size()},
                                   {DType::I64, si.data(), si.size()},
                                   {DType::Bool, sbool.data(), sbool.size()},
                                   {DType::F32, sa.data(), 0}};
    std::vector<TensorToWrite> tw = {
        {"w", 0, {3, 4}, {4, 1}, 0},
        {"w.t", 0, {4, 3}, {1, 4}, 0},       /* transposed view of the same storage */
        {"w.tail", 0, {2, 2}, {4, 2}, 5},    /* offset and gaps */
        {"h", 1, {4}, {1}, 0},
        {"b", 2, {1, 3}, {3, 1}, 0},
        {"i", 3, {2}, {1}, 0},
        {"flag", 4, {3}, {1}, 0},
        {"scalar", 0, {}, {}, 11},           /* 0-d */
        {"empty", 5, {0, 7}, {7, 1}, 0},
    };
    for (const std::string &wrapper : {std::string(""), std::string("model"), std::string("state_dict")}) {
        WriteOptions o;
        o.wrapper_key = wrapper;
        std::vector<uint8_t> bytes = write_checkpoint_to_memory(st, tw, o);
        Checkpoint ck = Checkpoint::from_memory(bytes);
        ck.verify_crc32();
        CHECK_EQ(ck.wrapper_key(), wrapper);
        CHECK_EQ(ck.archive_name(), std::string("archive"));
        CHECK_EQ(ck.tensors().size(), tw.size());
        for (size_t i = 0; i < tw.size() && i < ck.tensors().size(); i++) {
            const TensorRecord &r = ck.tensors()[i];
            CHECK_EQ(r.name, tw[i].name);
            CHECK(r.sizes == tw[i].sizes);
            CHECK(r.strides == tw[i].strides);
            CHECK_EQ(r.storage_offset, tw[i].storage_offset);
            CHECK(r.dtype == st[tw[i].storage_index].dtype);
            auto s = ck.storage(r.storage_key);
            CHECK_EQ(s.second, st[tw[i].storage_index].nbytes);
            CHECK(s.second == 0 || memcmp(s.first, st[tw[i].storage_index].data, s.second) == 0);
        }
        /* shared storage: w, w.t, w.tail, scalar point at one zip entry */
        if (ck.tensors().size() == tw.size()) {
            CHECK_EQ(ck.tensors()[0].storage_key, ck.tensors()[1].storage_key);
            CHECK_EQ(ck.tensors()[0].storage_key, ck.tensors()[7].storage_key);
            CHECK(ck.tensors()[0].storage_key != ck.tensors()[3].storage_key);
            CHECK_EQ(ck.tensors()[0].storage_key, std::string("archive/data/0"));
            CHECK_NEAR(f32_at(ck, ck.tensors()[7], 0), 12.0, 0);
        }
        /* 64-byte alignment of every stored entry, as torch writes it */
        for (const std::string &n : ck.entry_names()) {
            auto e = ck.entry(n);
            CHECK_EQ((size_t)(e.first - ck.entry(ck.entry_names()[0]).first) % 64, (size_t)0);
        }
    }

    /* through a file: the archive folder is the file's stem */
    char dir[] = "/tmp/samda-pth-XXXXXX";
    CHECK(mkdtemp(dir) != nullptr);
    std::string path = std::string(dir) + "/tiny_model.pth";
    write_checkpoint(path, st, tw);
    Checkpoint f = Checkpoint::open(path);
    CHECK_EQ(f.archive_name(), std::string("tiny_model"));
    CHECK_EQ(f.tensors().size(), tw.size());
    CHECK(f.has_entry("tiny_model/version"));
    unlink(path.c_str());
    rmdir(dir);

    /* the writer refuses what it cannot represent */
    std::vector<TensorToWrite> bad = {{"x", 0, {13}, {1}, 0}};
    CHECK_THROWS(write_checkpoint_to_memory(st, bad), Error, "reaches element 12");
    bad = {{"x", 9, {1}, {1}, 0}};
    CHECK_THROWS(write_checkpoint_to_memory(st, bad), Error, "storage index");
    bad = {{"x", 0, {1}, {1}, 0}, {"x", 0, {1}, {1}, 0}};
    CHECK_THROWS(write_checkpoint_to_memory(st, bad), Error, "twice");
    WriteOptions o;
    o.archive_name = "../evil";
    CHECK_THROWS(write_checkpoint_to_memory(st, tw, o), Error, "archive name");
    CHECK_THROWS(write_checkpoint("/nonexistent-dir/x.pth", st, tw), Error, "/nonexistent-dir/x.pth");
}

/* ---- hand-written pickles --------------------------------------------------------------------- */

void test_pickles()
{
    std::vector<uint8_t> s16(16, 0);
    /* plain dict (protocol 4 style: FRAME, SHORT_BINUNICODE, STACK_GLOBAL, MEMOIZE), int value ignored,
     * a parameter wrapped in _rebuild_parameter and one in _rebuild_from_type_v2 */
    {
        P p;
        p.op(0x80).op(4).op(0x95).u32(0).u32(0);
        p.op('}').op(0x94);
        p.op('(');
        p.op(0x8c).op(5).raw("epoch").op('K').op(7);
        p.op(0x8c).op(1).raw("a").tensor("0", 4, 0, {2, 2}, {2, 1});
        p.op(0x8c).op(1).raw("b");
        p.op(0x8c).op(12).raw("torch._utils").op(0x8c).op(18).raw("_rebuild_parameter").op(0x93).op(0x94);
        p.tensor("0", 4, 1, {3}, {1}).op(0x89).global("collections", "OrderedDict").op(')').op('R').op(0x87).op('R');
        p.str("c").global("torch._tensor", "_rebuild_from_type_v2");
        p.op('(').global("torch._utils", "_rebuild_tensor_v2").global("torch.nn.parameter", "Parameter");
        p.op('(').op('(').str("storage").global("torch", "FloatStorage").str("0").str("cpu").op('K').op(4).op('t').op('Q');
        p.op('K').op(0).op('K').op(4).op(0x85).op('K').op(1).op(0x85).op(0x89).op('N').op('t');
        p.op('}').op('t').op(0x94).op('R');
        p.op(0x88).op('0'); /* push and pop a value */
        p.op('u').op('.');
        Checkpoint ck = Checkpoint::from_memory(make_zip(p.b, {{"data/0", s16}}));
        CHECK_EQ(ck.tensors().size(), (size_t)3);
        if (ck.tensors().size() == 3) {
            CHECK_EQ(ck.tensors()[0].name, std::string("a"));
            CHECK_EQ(ck.tensors()[1].name, std::string("b"));
            CHECK_EQ(ck.tensors()[1].storage_offset, (int64_t)1);
            CHECK_EQ(ck.tensors()[2].name, std::string("c"));
        }
    }
    /* a later SETITEM with the same key replaces the earlier value, as in Python */
    {
        P p;
        p.op(0x80).op(2).op('}');
        p.str("k").tensor("0", 4, 0, {4}, {1}).op('s');
        p.str("k").tensor("0", 4, 0, {2}, {2}).op('s').op('.');
        Checkpoint ck = Checkpoint::from_memory(make_zip(p.b, {{"data/0", s16}}));
        CHECK_EQ(ck.tensors().size(), (size_t)1);
        if (!ck.tensors().empty()) CHECK(ck.tensors()[0].sizes == (std::vector<int64_t>{2}));
    }
    /* wrapper holding non-tensors beside the state dict: {'epoch': 3, 'model': OrderedDict} */
    {
        P p;
        p.op(0x80).op(2).op('}').str("epoch").op('K').op(3).op('s').str("model");
        p.global("collections", "OrderedDict").op(')').op('R').str("w").tensor("0", 4, 0, {4}, {1}).op('s');
        p.op('}').str("_metadata").op('N').op('s').op('b'); /* BUILD with a state, ignored */
        p.op('s').op('.');
        Checkpoint ck = Checkpoint::from_memory(make_zip(p.b, {{"data/0", s16}}));
        CHECK_EQ(ck.wrapper_key(), std::string("model"));
        CHECK_EQ(ck.tensors().size(), (size_t)1);
    }
    /* LIST/APPENDS/DICT/TUPLE/BINFLOAT/LONG1/strings, and a self-referencing list (no leak under ASan) */
    {
        P p;
        p.op(0x80).op(2).op('(').str("x").op(']').op('q').op(0).op('h').op(0).op('a');
        p.op('(').op('G').raw(std::string("\x3f\xf0\0\0\0\0\0\0", 8)).op(0x8a).op(2).op(0xff).op(0x7f);
        p.op('U').op(2).raw("hi").op('T').u32(1).raw("z").op('C').op(1).raw("b").op('N').op('e');
        p.str("y").tensor("0", 4, 0, {1}, {1});
        p.str("z").op('(').op('K').op(1).op('t').op('(').op('l').op(0x86).op('d').op('.');
        Checkpoint ck = Checkpoint::from_memory(make_zip(p.b, {{"data/0", s16}}));
        CHECK_EQ(ck.tensors().size(), (size_t)1);
    }
}

/* ---- refusals --------------------------------------------------------------------------------- */

void test_refusals()
{
    std::vector<uint8_t> s16(16, 0);
    CHECK_THROWS(Checkpoint::from_memory(std::vector<uint8_t>(100, 'x')), Error, "not a zip archive");
    CHECK_THROWS(Checkpoint::from_memory({}), Error, "not a zip archive");
    std::vector<uint8_t> legacy = {0x80, 0x02, 0x8a, 0x0a};
    legacy.resize(64, 0);
    CHECK_THROWS(Checkpoint::from_memory(legacy), Error, "legacy");

    /* a valid one-tensor file, then damaged variants */
    std::vector<uint8_t> good = one_tensor("w", "0", 4, 0, {4}, {1}, 16);
    CHECK_EQ(Checkpoint::from_memory(good).tensors().size(), (size_t)1);
    for (size_t cut = 0; cut < good.size(); cut += 7) {
        std::vector<uint8_t> t(good.begin(), good.begin() + (std::ptrdiff_t)cut);
        CHECK_THROWS(Checkpoint::from_memory(t), Error, "checkpoint in memory");
    }

    /* compressed entry: set the method of the first central-directory record to deflate (8) */
    {
        std::vector<uint8_t> z = good;
        for (size_t i = 0; i + 4 < z.size(); i++) {
            if (z[i] == 'P' && z[i + 1] == 'K' && z[i + 2] == 1 && z[i + 3] == 2) {
                z[i + 10] = 8;
                break;
            }
        }
        CHECK_THROWS(Checkpoint::from_memory(z), Error, "'archive/data.pkl' is compressed (method 8)");
    }
    /* damaged local header of a storage: refused when the storage is read */
    {
        std::vector<uint8_t> z = good;
        size_t at = 0;
        for (size_t i = 0; i + 4 < z.size(); i++) {
            if (z[i] == 'P' && z[i + 1] == 'K' && z[i + 2] == 3 && z[i + 3] == 4 && at++ == 1) {
                z[i + 3] = 9;
                break;
            }
        }
        Checkpoint ck = Checkpoint::from_memory(z);
        CHECK_THROWS(ck.storage("archive/data/0"), Error, "'archive/data/0': local header at byte");
        CHECK_THROWS(ck.verify_crc32(), Error, "local header");
    }
    /* no data.pkl */
    CHECK_THROWS(Checkpoint::from_memory(zip_store_to_memory({{"x/y", {1}}})), Error, "data.pkl");

    auto refused = [&](const P &p, const char *needle, std::vector<std::pair<std::string, std::vector<uint8_t>>> more) {
        CHECK_THROWS(Checkpoint::from_memory(make_zip(p.b, more)), Error, needle);
    };
    std::vector<std::pair<std::string, std::vector<uint8_t>>> st = {{"data/0", s16}};

    { P p; p.op(0x80).op(2).op('}').op(0xff); refused(p, "data.pkl byte 3: unsupported pickle opcode 0xff", st); }
    { P p; p.op(0x80).op(2).op('}').op('I').raw("1\n"); refused(p, "opcode 0x49 ('I')", st); }
    { P p; p.op(0x80).op(2).global("os", "system").str("echo").op(0x85).op('R').op('.'); refused(p, "global 'os.system' is not allowed", st); }
    { P p; p.op(0x80).op(2).global("builtins", "eval"); refused(p, "'builtins.eval'", st); }
    { P p; p.op(0x80).op(2).global("torch.storage", "_load_from_bytes"); refused(p, "torch.storage._load_from_bytes", st); }
    { P p; p.op(0x80).op(4).str("posix").str("system").op(0x93); refused(p, "'posix.system'", st); }
    { P p; p.op(0x80).op(2).global("torch", "FloatStorage").op(')').op('R'); refused(p, "cannot be called", st); }
    { P p; p.op(0x80).op(2).op('0'); refused(p, "stack underflow", st); }
    { P p; p.op(0x80).op(2).op('h').op(5); refused(p, "memo entry 5", st); }
    { P p; p.op(0x80).op(2).op('}'); refused(p, "without STOP", st); }
    { P p; p.op(0x80).op(2).op('X').u32(1000).raw("ab"); refused(p, "runs past the end", st); }
    { P p; p.op(0x80).op(9); refused(p, "protocol 9", st); }
    { P p; p.op(0x80).op(2).op('N').op('.'); refused(p, "holds a None", st); }
    { P p; p.op(0x80).op(2).op('}').str("a").op('K').op(1).op('s').op('.'); refused(p, "holds no tensors", st); }
    { P p; p.op(0x80).op(2).op('P').raw("0\n"); refused(p, "PERSID", st); }
    { P p; p.op(0x80).op(2).op('(').str("storage").op('t').op('Q'); refused(p, "persistent id", st); }
    { P p; p.op(0x80).op(2).op(0x8a).op(9); refused(p, "does not fit 64 bits", st); }

    /* tensor past its storage, negative sizes, missing storage, size mismatch: all name the key */
    CHECK_THROWS(Checkpoint::from_memory(one_tensor("enc.w", "0", 4, 0, {5}, {1}, 16)), Error,
                 "tensor 'enc.w' (float32 [5], strides [1], offset 0) reaches element 4 but its storage 'archive/data/0' holds 4");
    CHECK_THROWS(Checkpoint::from_memory(one_tensor("enc.w", "0", 4, 2, {2, 2}, {1, 1}, 16)), Error, "tensor 'enc.w'");
    CHECK_THROWS(Checkpoint::from_memory(one_tensor("enc.w", "0", 4, 0, {2, 2}, {3, 1}, 16)), Error, "reaches element 4");
    CHECK_THROWS(Checkpoint::from_memory(one_tensor("neg", "0", 4, 0, {-1}, {1}, 16)), Error, "tensor 'neg': negative size -1");
    CHECK_THROWS(Checkpoint::from_memory(one_tensor("neg", "0", 4, 0, {2}, {-1}, 16)), Error, "negative stride");
    CHECK_THROWS(Checkpoint::from_memory(one_tensor("neg", "0", 4, -1, {2}, {1}, 16)), Error, "negative storage offset");
    CHECK_THROWS(Checkpoint::from_memory(one_tensor("m", "7", 4, 0, {4}, {1}, 16)), Error,
                 "storage 'archive/data/7' is missing from the zip");
    CHECK_THROWS(Checkpoint::from_memory(one_tensor("m", "0", 5, 0, {4}, {1}, 16)), Error,
                 "storage 'archive/data/0' holds 16 bytes but the pickle says 5 float32");
    CHECK_THROWS(Checkpoint::from_memory(one_tensor("d", "0", 4, 0, {2}, {1, 1}, 16)), Error, "1 sizes but 2 strides");
    /* a zero-size tensor on an empty storage is fine */
    CHECK_EQ(Checkpoint::from_memory(one_tensor("e", "0", 0, 0, {0, 3}, {3, 1}, 0)).tensors().size(), (size_t)1);
}

/* Rewrite a writer-made zip so every central-directory record keeps its sizes and local-header offset
 * only in a ZIP64 extra field (0xFFFFFFFF in the 32-bit fields), and the classic end record is
 * saturated too, as a zip larger than 4 GiB must be. */
std::vector<uint8_t> force_zip64(const std::vector<uint8_t> &z)
{
    auto r16 = [&](size_t p) { return (uint32_t)z[p] | ((uint32_t)z[p + 1] << 8); };
    auto r32 = [&](size_t p) { return r16(p) | (r16(p + 2) << 16); };
    auto w16 = [](std::vector<uint8_t> &v, uint32_t x) { v.push_back((uint8_t)x); v.push_back((uint8_t)(x >> 8)); };
    auto w32 = [&](std::vector<uint8_t> &v, uint32_t x) { w16(v, x & 0xffff); w16(v, x >> 16); };
    auto w64 = [&](std::vector<uint8_t> &v, uint64_t x) { w32(v, (uint32_t)x); w32(v, (uint32_t)(x >> 32)); };
    size_t eocd = z.size() - 22;
    size_t n = r16(eocd + 10), cd_off = r32(eocd + 16);
    std::vector<uint8_t> out(z.begin(), z.begin() + (std::ptrdiff_t)cd_off), cd;
    size_t p = cd_off;
    for (size_t i = 0; i < n; i++) {
        uint32_t nlen = r16(p + 28), xlen = r16(p + 30), clen = r16(p + 32);
        uint32_t size = r32(p + 24), lho = r32(p + 42);
        cd.insert(cd.end(), z.begin() + (std::ptrdiff_t)p, z.begin() + (std::ptrdiff_t)p + 20);
        w32(cd, 0xFFFFFFFFu);
        w32(cd, 0xFFFFFFFFu);
        w16(cd, nlen);
        w16(cd, 8 + 28); /* an unrelated extra field first, then ZIP64 */
        w16(cd, 0);
        cd.insert(cd.end(), z.begin() + (std::ptrdiff_t)p + 34, z.begin() + (std::ptrdiff_t)p + 42);
        w32(cd, 0xFFFFFFFFu);
        cd.insert(cd.end(), z.begin() + (std::ptrdiff_t)p + 46, z.begin() + (std::ptrdiff_t)p + 46 + nlen);
        w16(cd, 0x7075);
        w16(cd, 4);
        w32(cd, 0);
        w16(cd, 0x0001);
        w16(cd, 24);
        w64(cd, size);
        w64(cd, size);
        w64(cd, lho);
        p += 46 + nlen + xlen + clen;
    }
    out.insert(out.end(), cd.begin(), cd.end());
    size_t z64 = out.size();
    w32(out, 0x06064b50u);
    w64(out, 44);
    w16(out, 0x031e);
    w16(out, 0x2d);
    w32(out, 0);
    w32(out, 0);
    w64(out, n);
    w64(out, n);
    w64(out, cd.size());
    w64(out, cd_off);
    w32(out, 0x07064b50u);
    w32(out, 0);
    w64(out, z64);
    w32(out, 1);
    w32(out, 0x06054b50u);
    w16(out, 0);
    w16(out, 0);
    w16(out, 0xFFFF);
    w16(out, 0xFFFF);
    w32(out, 0xFFFFFFFFu);
    w32(out, 0xFFFFFFFFu);
    w16(out, 0);
    return out;
}

void test_zip64()
{
    std::vector<float> a = {1, 2, 3, 4};
    std::vector<uint8_t> sa = f32_bytes(a);
    std::vector<StorageBlob> st = {{DType::F32, sa.data(), sa.size()}};
    std::vector<TensorToWrite> tw = {{"x", 0, {2, 2}, {2, 1}, 0}, {"y", 0, {2}, {1}, 2}};
    std::vector<uint8_t> z = force_zip64(write_checkpoint_to_memory(st, tw));
    Checkpoint ck = Checkpoint::from_memory(z);
    CHECK_EQ(ck.tensors().size(), (size_t)2);
    ck.verify_crc32();
    if (ck.tensors().size() == 2) CHECK_NEAR(f32_at(ck, ck.tensors()[1], 1), 4.0, 0);
    /* Python's zipfile agrees that this is a valid ZIP64 archive (so the test exercises the standard) */
    const char *py = getenv("SAMDA_PYTHON");
    if (py && *py && access(py, X_OK) == 0) {
        char path[] = "/tmp/samda-zip64-XXXXXX";
        int fd = mkstemp(path);
        CHECK(fd >= 0);
        if (fd >= 0) {
            CHECK_EQ(write(fd, z.data(), z.size()), (ssize_t)z.size());
            close(fd);
            std::string cmd = std::string(py) + " -c \"import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); "
                              "assert z.testzip() is None; assert z.read('archive/version') == b'3\\n'\" " + path;
            CHECK_EQ(system(cmd.c_str()), 0);
            unlink(path);
        }
    }
    /* saturated classic record without the ZIP64 locator */
    std::vector<uint8_t> nolocator = z;
    size_t loc = nolocator.size() - 22 - 20;
    nolocator[loc] = 'X';
    CHECK_THROWS(Checkpoint::from_memory(nolocator), Error, "ZIP64 locator is missing");
    /* locator pointing nowhere */
    std::vector<uint8_t> badloc = z;
    badloc[loc + 8] ^= 0x10;
    CHECK_THROWS(Checkpoint::from_memory(badloc), Error, "ZIP64 end-of-central-directory record expected");
}

void test_crc()
{
    const char *s = "123456789";
    CHECK_EQ(crc32_update(0, (const uint8_t *)s, 9), 0xCBF43926u);
    CHECK_EQ(crc32_update(crc32_update(0, (const uint8_t *)s, 4), (const uint8_t *)s + 4, 5), 0xCBF43926u);
    CHECK_EQ(crc32_update(0, nullptr, 0), 0u);
}

} // namespace

int main()
{
    RUN(test_crc);
    RUN(test_zip64);
    RUN(test_round_trip);
    RUN(test_pickles);
    RUN(test_refusals);
    if (access((samda_test::fixtures() + "/sam-parity/tiny/weights.pth").c_str(), R_OK) == 0) {
        RUN(test_fixture);
    } else {
        printf("SKIP test_fixture: %s/sam-parity/tiny/weights.pth absent (SAMDA_FIXTURES names another folder)\n",
               samda_test::fixtures().c_str());
    }
    return samda_test::summary();
}
