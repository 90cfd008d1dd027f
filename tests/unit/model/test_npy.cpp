/* Tests of model/npy.cpp: every fixture array of sam-parity/tiny (shapes from its config.json and
 * README, first values from numpy), round trips for each dtype, files written by numpy itself in
 * versions 1.0/2.0/3.0, Fortran order, big-endian data, half-float conversion, and bad headers. */
#include "check.h"
#include "npy.h"

#include <cstring>
#include <unistd.h>

using namespace samda::npy;

namespace {

std::vector<uint8_t> file_of(const std::string &header, const std::vector<uint8_t> &data, int major = 1)
{
    std::vector<uint8_t> b = {0x93, 'N', 'U', 'M', 'P', 'Y', (uint8_t)major, 0};
    size_t h = header.size();
    b.push_back((uint8_t)h);
    b.push_back((uint8_t)(h >> 8));
    if (major > 1) {
        b.push_back((uint8_t)(h >> 16));
        b.push_back((uint8_t)(h >> 24));
    }
    b.insert(b.end(), header.begin(), header.end());
    b.insert(b.end(), data.begin(), data.end());
    return b;
}

void test_fixtures()
{
    const std::string dir = samda_test::fixtures() + "/sam-parity/tiny/";
    Array img = load(dir + "image.npy");
    CHECK(img.dtype == DType::U8);
    CHECK(img.shape == (std::vector<int64_t>{150, 200, 3}));
    CHECK_EQ(img.data.size(), (size_t)90000);
    CHECK_EQ((int)img.data[0], 72);
    CHECK_EQ((int)img.data[1], 35);
    CHECK_EQ((int)img.data.back(), 28);

    Array in = load(dir + "input.npy");
    CHECK(in.dtype == DType::F32);
    CHECK(in.shape == (std::vector<int64_t>{1, 3, 256, 256}));
    std::vector<float> iv = in.to_float32();
    CHECK_NEAR(iv[0], -0.884921669960022, 1e-7);
    CHECK_NEAR(iv[1], -1.126541256904602, 1e-7);
    CHECK_NEAR(iv.back(), 0.0, 0);

    Array emb = load(dir + "embedding.npy");
    CHECK(emb.shape == (std::vector<int64_t>{1, 256, 16, 16}));
    CHECK_NEAR(emb.as<float>()[0], 0.9690628051757812, 1e-7);
    CHECK_NEAR(emb.as<float>()[emb.numel() - 1], 1.6155716180801392, 1e-7);

    /* per prompt case: B x C x 64 x 64 low-res logits, B x C iou, B x C x 150 x 200 masks */
    struct Case { const char *name; int64_t b, c; } cases[] = {
        {"point1", 1, 3}, {"points3", 1, 1}, {"box", 1, 1}, {"box_point", 1, 3}, {"boxes2", 2, 1}, {"point1_refine", 1, 1}};
    for (const Case &c : cases) {
        Array lr = load(dir + c.name + ".low_res_logits.npy");
        CHECK(lr.shape == (std::vector<int64_t>{c.b, c.c, 64, 64}));
        Array iou = load(dir + c.name + ".iou.npy");
        CHECK(iou.shape == (std::vector<int64_t>{c.b, c.c}));
        Array m = load(dir + c.name + ".mask_logits.npy");
        CHECK(m.shape == (std::vector<int64_t>{c.b, c.c, 150, 200}));
        CHECK(m.dtype == DType::F32);
    }
    CHECK_NEAR(load(dir + "box.iou.npy").as<float>()[0], 0.5577061772346497, 1e-7);
    CHECK_THROWS(load(dir + "absent.npy"), Error, "absent.npy: cannot open");
}

void test_round_trip()
{
    char dir[] = "/tmp/samda-npy-XXXXXX";
    CHECK(mkdtemp(dir) != nullptr);
    const DType all[] = {DType::F16, DType::F32, DType::F64, DType::I8, DType::I16, DType::I32,
                         DType::I64, DType::U8,  DType::U16, DType::U32, DType::U64, DType::Bool};
    for (DType dt : all) {
        for (const std::vector<int64_t> &shape : {std::vector<int64_t>{}, std::vector<int64_t>{5},
                                                  std::vector<int64_t>{2, 3, 4}, std::vector<int64_t>{0, 3}}) {
            Array a;
            a.dtype = dt;
            a.shape = shape;
            a.data.resize((size_t)a.numel() * dtype_size(dt));
            for (size_t i = 0; i < a.data.size(); i++) a.data[i] = (uint8_t)(dt == DType::Bool ? i % 2 : i * 37 + 1);
            std::string path = std::string(dir) + "/a.npy";
            save(path, a);
            Array b = load(path);
            CHECK(b.dtype == a.dtype);
            CHECK(b.shape == a.shape);
            CHECK(b.data == a.data);
            std::vector<uint8_t> bytes = serialize(a);
            CHECK_EQ(bytes.size() % 64 == 0 || a.data.size() > 0, true);
            size_t header_end = bytes.size() - a.data.size();
            CHECK_EQ(header_end % 64, (size_t)0);
            CHECK_EQ((int)bytes[header_end - 1], (int)'\n');
            unlink(path.c_str());
        }
    }
    Array f = from_float32({2, 2}, {1.5f, -2.0f, 0.25f, 1e30f});
    std::vector<uint8_t> s = serialize(f);
    Array g = parse(s.data(), s.size());
    CHECK(g.to_float32() == (std::vector<float>{1.5f, -2.0f, 0.25f, 1e30f}));
    CHECK_THROWS(from_float32({3}, {1.0f}), Error, "do not fill shape (3,)");
    Array bad;
    bad.shape = {2};
    bad.data.resize(3);
    CHECK_THROWS(serialize(bad), Error, "3 data bytes do not match shape (2,)");
    CHECK_THROWS(save("/nonexistent-dir/x.npy", f), Error, "/nonexistent-dir/x.npy");
    rmdir(dir);
}

void test_variants()
{
    /* written by numpy 1.24: np.arange(6, dtype='>i2').reshape(2, 3) in Fortran order, version 1.0 */
    std::vector<uint8_t> be_f = file_of("{'descr': '>i2', 'fortran_order': True, 'shape': (2, 3), }          \n",
                                        {0, 0, 0, 3, 0, 1, 0, 4, 0, 2, 0, 5});
    Array a = parse(be_f.data(), be_f.size());
    CHECK(a.dtype == DType::I16);
    CHECK(a.shape == (std::vector<int64_t>{2, 3}));
    CHECK(a.to_float32() == (std::vector<float>{0, 1, 2, 3, 4, 5}));

    /* Fortran order in 3-D: element (i,j,k) stored at i + 2j + 6k */
    std::vector<uint8_t> d3;
    std::vector<float> want;
    for (int k = 0; k < 4; k++)
        for (int j = 0; j < 3; j++)
            for (int i = 0; i < 2; i++) {
                float v = (float)(100 * i + 10 * j + k);
                uint8_t b[4];
                memcpy(b, &v, 4);
                d3.insert(d3.end(), b, b + 4);
            }
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++)
            for (int k = 0; k < 4; k++) want.push_back((float)(100 * i + 10 * j + k));
    std::vector<uint8_t> f3 = file_of("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3, 4), }\n", d3, 2);
    CHECK(parse(f3.data(), f3.size()).to_float32() == want);

    /* versions 2.0 and 3.0, big-endian f8, "=" byte order, Python 2 long suffix, double quotes */
    std::vector<uint8_t> v3 = file_of("{\"descr\": \">f8\", \"fortran_order\": False, \"shape\": (1L,), }\n",
                                      {0x3f, 0xf8, 0, 0, 0, 0, 0, 0}, 3);
    Array d = parse(v3.data(), v3.size());
    CHECK(d.dtype == DType::F64);
    CHECK_NEAR(d.to_float32()[0], 1.5, 0);
    std::vector<uint8_t> eq = file_of("{'descr': '=u2', 'fortran_order': False, 'shape': (2,)}\n", {1, 0, 0, 1});
    CHECK(parse(eq.data(), eq.size()).to_float32() == (std::vector<float>{1, 256}));
    std::vector<uint8_t> be4 = file_of("{'descr': '>u4', 'fortran_order': False, 'shape': (1,), }\n", {0, 0, 1, 2});
    CHECK(parse(be4.data(), be4.size()).to_float32() == (std::vector<float>{258}));
    std::vector<uint8_t> b1 = file_of("{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }\n", {1, 0, 1});
    CHECK(parse(b1.data(), b1.size()).to_float32() == (std::vector<float>{1, 0, 1}));
    std::vector<uint8_t> sc = file_of("{'descr': '<i8', 'fortran_order': False, 'shape': (), }\n", {0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff});
    Array s = parse(sc.data(), sc.size());
    CHECK(s.shape.empty());
    CHECK_EQ(s.numel(), (int64_t)1);
    CHECK_NEAR(s.to_float32()[0], -2, 0);
}

void test_half()
{
    CHECK_EQ(float_to_half(1.0f), (uint16_t)0x3c00);
    CHECK_EQ(float_to_half(-2.0f), (uint16_t)0xc000);
    CHECK_EQ(float_to_half(65504.0f), (uint16_t)0x7bff);
    CHECK_EQ(float_to_half(1e6f), (uint16_t)0x7c00);
    CHECK_EQ(float_to_half(5.960464477539063e-08f), (uint16_t)0x0001);
    CHECK_EQ(float_to_half(1.0009765625f), (uint16_t)0x3c01);
    CHECK_EQ(float_to_half(1.00048828125f), (uint16_t)0x3c00); /* tie to even */
    CHECK_NEAR(half_to_float(0x3c00), 1.0, 0);
    CHECK_NEAR(half_to_float(0x0001), 5.960464477539063e-08, 0);
    CHECK_NEAR(half_to_float(0x03ff), 6.097555160522461e-05, 0);
    CHECK(std::isinf(half_to_float(0x7c00)));
    CHECK(std::isnan(half_to_float(0x7e00)));
    int mismatches = 0;
    for (uint32_t h = 0; h < 0x10000; h++) {
        if (((h >> 10) & 0x1f) == 0x1f && (h & 0x3ff)) continue; /* NaN payloads */
        if (float_to_half(half_to_float((uint16_t)h)) != h) mismatches++;
    }
    CHECK_EQ(mismatches, 0);
}

void test_bad_headers()
{
    std::vector<uint8_t> d4(4, 0);
    auto bad = [&](const std::vector<uint8_t> &f, const char *needle) { CHECK_THROWS(parse(f.data(), f.size()), Error, needle); };
    bad({'n', 'o', 'p', 'e'}, "magic");
    bad(std::vector<uint8_t>{0x93, 'N', 'U', 'M', 'P', 'Y', 9, 0, 0, 0}, "format version 9.0");
    bad(std::vector<uint8_t>{0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 0xff, 0}, "length 255 runs past");
    bad(file_of("{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }\n", d4), "'descr' '<c8' is not supported");
    bad(file_of("{'descr': '<U1', 'fortran_order': False, 'shape': (1,), }\n", d4), "'descr'");
    bad(file_of("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }\n", d4), "structured");
    bad(file_of("{'descr': '<f4', 'fortran_order': Maybe, 'shape': (1,), }\n", d4), "'fortran_order': expected True or False");
    bad(file_of("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }\n", d4), "'shape': expected a non-negative integer");
    bad(file_of("{'descr': '<f4', 'fortran_order': False, 'shape': [1], }\n", d4), "'shape': expected a tuple");
    bad(file_of("{'descr': '<f4', 'fortran_order': False}\n", d4), "'shape' missing");
    bad(file_of("{'descr': '<f4', 'shape': (1,)}\n", d4), "'fortran_order' missing");
    bad(file_of("{'fortran_order': False, 'shape': (1,)}\n", d4), "'descr' missing");
    bad(file_of("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}\n", d4), "unexpected key 'x'");
    bad(file_of("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }\n", d4), "needs 8 bytes but 4 follow");
    bad(file_of("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }\n", {0, 0, 0, 0, 0}), "1 unexpected bytes");
    bad(file_of("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296), }\n", d4), "overflows");
    bad(file_of("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }\n", d4), "overflows 64 bits");
    bad(file_of("{'descr': '*f4', 'fortran_order': False, 'shape': (1,), }\n", d4), "byte-order");
    bad(file_of("{'descr: '<f4'", d4), "expected ':'");
    bad(file_of("('descr', '<f4')", d4), "expected a dict literal");
    bad(file_of("{'descr': '<f4' 'fortran_order': False}", d4), "expected ',' or '}'");
    bad(file_of("{'descr': '<f\\x34'}", d4), "escapes");
    bad(file_of("{'descr': '<f4", d4), "unterminated string");
}

} // namespace

int main()
{
    RUN(test_round_trip);
    RUN(test_variants);
    RUN(test_half);
    RUN(test_bad_headers);
    if (access((samda_test::fixtures() + "/sam-parity/tiny/image.npy").c_str(), R_OK) == 0) {
        RUN(test_fixtures);
    } else {
        printf("SKIP test_fixtures: %s/sam-parity/tiny absent (SAMDA_FIXTURES names another folder)\n",
               samda_test::fixtures().c_str());
    }
    return samda_test::summary();
}
