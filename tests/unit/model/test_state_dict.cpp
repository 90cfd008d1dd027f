/* Tests of model/state_dict.cpp: the fixture checkpoint as owning tensors, save/load round trips of
 * at::Tensor (dtypes, views, shared storages), a Python (torch-less torch.load emulation) reading of
 * what the writer produced, and npy <-> tensor conversions. */
#include "state_dict.h"

#include <ATen/ATen.h>

#include <cstdlib>
#include <unistd.h>

#include "check.h" /* last: glog's CHECK macros from c10 would replace ours */

using namespace samda;

namespace {

std::string tmpdir()
{
    char dir[] = "/tmp/samda-sd-XXXXXX";
    if (!mkdtemp(dir)) return "/tmp";
    return dir;
}

void test_fixture()
{
    const std::string path = samda_test::fixtures() + "/sam-parity/tiny/weights.pth";
    StateDict sd = load_state_dict(path); /* the checkpoint is closed (unmapped) on return */
    CHECK_EQ(sd.size(), (size_t)202);
    /* The stored dtype is kept: float32 (the original) or float16 (the repository's rounded copy),
     * whose values are the original ones (from Python) rounded to float16. */
    const at::ScalarType st = sd[0].second.scalar_type();
    CHECK(st == at::kFloat || st == at::kHalf);
    auto stored = [st](double v) { return at::tensor({(float)v}).to(st).item<float>(); };
    int64_t total = 0;
    for (const auto &kv : sd) {
        total += kv.second.numel();
        CHECK(kv.second.is_contiguous());
        CHECK(kv.second.scalar_type() == st);
    }
    CHECK_EQ(total, (int64_t)5230224);
    CHECK_EQ(sd[0].first, std::string("image_encoder.pos_embed"));
    CHECK(sd[0].second.sizes().vec() == (std::vector<int64_t>{1, 16, 16, 96}));
    CHECK_NEAR(sd[0].second.flatten()[0].item<float>(), stored(0.04674743115901947), 1e-9);
    CHECK_NEAR(sd[0].second.flatten()[-1].item<float>(), stored(-0.15286503732204437), 1e-9);
    for (const auto &kv : sd) {
        if (kv.first == "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix") {
            CHECK(kv.second.sizes().vec() == (std::vector<int64_t>{2, 128}));
            CHECK_NEAR(kv.second[0][2].item<float>(), stored(-0.9488438963890076), 1e-9);
            CHECK_NEAR(kv.second[1][127].item<float>(), stored(-2.1450116634368896), 1e-9);
        }
        if (kv.first == "mask_decoder.iou_token.weight") CHECK(kv.second.sizes().vec() == (std::vector<int64_t>{1, 256}));
    }
    CHECK_THROWS(load_state_dict(path + ".absent"), pth::Error, ".absent");
}

StateDict sample()
{
    at::manual_seed(3);
    at::Tensor base = at::randn({4, 6});
    at::Tensor h = at::randn({3, 5}).to(at::kHalf);
    at::Tensor b = at::randn({7}).to(at::kBFloat16);
    at::Tensor big = at::arange(0, 40, at::kLong).reshape({5, 8});
    return {
        {"base", base},
        {"base.T", base.t()},                          /* non-contiguous view, shared storage */
        {"base.narrow", base.narrow(1, 2, 3)},         /* storage offset 2, gaps */
        {"half", h},
        {"bf16", b},
        {"long.slice", big.slice(0, 1, 5, 2)},         /* offset 8, stride (16, 1) */
        {"mask", at::rand({3, 3}) > 0.5},
        {"int", at::arange(-3, 3, at::kInt)},
        {"i8", at::arange(-3, 3, at::kChar)},
        {"u8", at::arange(0, 6, at::kByte)},
        {"f64", at::randn({2}, at::kDouble)},
        {"scalar", at::scalar_tensor(2.5)},
        {"empty", at::empty({0, 4})},
    };
}

void test_round_trip()
{
    const std::string dir = tmpdir();
    const std::string path = dir + "/sd.pth";
    StateDict in = sample();
    save_state_dict_pth(path, in);
    StateDict out = load_state_dict(path);
    CHECK_EQ(out.size(), in.size());
    for (size_t i = 0; i < in.size() && i < out.size(); i++) {
        CHECK_EQ(out[i].first, in[i].first);
        CHECK(out[i].second.scalar_type() == in[i].second.scalar_type());
        CHECK(out[i].second.sizes().vec() == in[i].second.sizes().vec());
        CHECK(out[i].second.is_contiguous());
        bool same = at::equal(out[i].second, in[i].second);
        if (!same) fprintf(stderr, "tensor %s differs\n", in[i].first.c_str());
        CHECK(same);
    }
    /* views of one tensor share one storage in the file, with their offsets and strides */
    pth::Checkpoint ck = pth::Checkpoint::open(path);
    CHECK_EQ(ck.archive_name(), std::string("sd"));
    const pth::TensorRecord *t = ck.find("base.T"), *n = ck.find("base.narrow"), *b = ck.find("base");
    CHECK(t && n && b);
    if (t && n && b) {
        CHECK_EQ(t->storage_key, b->storage_key);
        CHECK_EQ(n->storage_key, b->storage_key);
        CHECK(t->strides == (std::vector<int64_t>{1, 6}));
        CHECK_EQ(n->storage_offset, (int64_t)2);
    }
    const pth::TensorRecord *ls = ck.find("long.slice");
    CHECK(ls && ls->storage_offset == 8 && ls->strides == (std::vector<int64_t>{16, 1}) && ls->storage_numel == 40);
    CHECK(ck.find("half") && ck.find("half")->dtype == pth::DType::F16);
    CHECK(ck.find("bf16") && ck.find("bf16")->dtype == pth::DType::BF16);
    ck.verify_crc32();

    /* what Python's zipfile + unpickler (as torch.load uses them) make of it */
    const char *py = getenv("SAMDA_PYTHON");
    if (py && *py && access(py, X_OK) == 0 &&
        system((std::string(py) + " -c 'import numpy' 2>/dev/null").c_str()) == 0) {
        std::string cmd = std::string(py) + " " SAMDA_MODEL_TEST_DIR "/pth_torchless_load.py " + path + " " + dir + " >/dev/null";
        int rc = system(cmd.c_str());
        CHECK_EQ(rc, 0);
        for (const auto &kv : in) {
            npy::Array a = npy::load(dir + "/" + kv.first + ".npy");
            at::Tensor want = kv.second.contiguous();
            if (want.scalar_type() == at::kBFloat16) want = want.view(at::kShort); /* raw bits */
            at::Tensor got = npy_to_tensor(a);
            if (got.scalar_type() != want.scalar_type()) got = got.to(want.scalar_type());
            bool same = got.sizes() == want.sizes() && at::equal(got, want);
            if (!same) fprintf(stderr, "python read of %s differs\n", kv.first.c_str());
            CHECK(same);
            unlink((dir + "/" + kv.first + ".npy").c_str());
        }
    } else {
        printf("SKIP python cross-check: SAMDA_PYTHON with numpy not available\n");
    }

    /* wrapper dict, as MedSAM saves */
    pth::WriteOptions o;
    o.wrapper_key = "model";
    save_state_dict_pth(path, {{"w", at::ones({2})}}, o);
    {
        pth::Checkpoint w = pth::Checkpoint::open(path);
        CHECK_EQ(w.wrapper_key(), std::string("model"));
    }
    CHECK(at::equal(load_state_dict(path)[0].second, at::ones({2})));

    /* refusals */
    at::Tensor f = at::zeros({4});
    CHECK_THROWS(save_state_dict_pth(path, {{"a", f}, {"b", f.view(at::kInt)}}), pth::Error, "views a storage");
    CHECK_THROWS(save_state_dict_pth(path, {{"u", at::Tensor()}}), pth::Error, "tensor 'u' is undefined");
    CHECK_THROWS(save_state_dict_pth(path, {{"c", at::zeros({2}, at::kComplexFloat)}}), pth::Error, "not supported");
    CHECK_THROWS(save_state_dict_pth(path, {{"a", f}, {"a", f}}), pth::Error, "twice");
    CHECK(at::equal(load_state_dict(path)[0].second, at::ones({2}))); /* failed saves left the file alone */
    unlink(path.c_str());
    rmdir(dir.c_str());
}

void test_npy()
{
    const std::string dir = tmpdir();
    for (const auto &kv : sample()) {
        if (kv.second.scalar_type() == at::kBFloat16) continue;
        const std::string p = dir + "/x.npy";
        npy::save(p, kv.second);
        at::Tensor back = npy::load_tensor(p);
        CHECK(back.scalar_type() == kv.second.scalar_type());
        CHECK(at::equal(back, kv.second));
        unlink(p.c_str());
    }
    /* bfloat16 becomes float32 */
    at::Tensor bf = at::randn({3}).to(at::kBFloat16);
    npy::Array a = tensor_to_npy(bf);
    CHECK(a.dtype == npy::DType::F32);
    CHECK(at::equal(npy_to_tensor(a), bf.to(at::kFloat)));
    /* unsigned types numpy has and torch 1.13 lacks */
    npy::Array u;
    u.dtype = npy::DType::U16;
    u.shape = {2};
    u.data = {0xff, 0xff, 1, 0};
    at::Tensor ut = npy_to_tensor(u);
    CHECK(ut.scalar_type() == at::kInt);
    CHECK_EQ(ut[0].item<int>(), 65535);
    u.dtype = npy::DType::U32;
    u.shape = {1};
    at::Tensor u32 = npy_to_tensor(u);
    CHECK(u32.scalar_type() == at::kLong);
    CHECK_EQ(u32[0].item<int64_t>(), (int64_t)0x0001ffff);
    u.dtype = npy::DType::U64;
    u.data = {0, 0, 0, 0, 0, 0, 0, 0x80};
    CHECK_THROWS(npy_to_tensor(u), npy::Error, "does not fit int64");
    npy::Array bl;
    bl.dtype = npy::DType::Bool;
    bl.shape = {3};
    bl.data = {0, 2, 1};
    CHECK(at::equal(npy_to_tensor(bl), at::tensor({0, 1, 1}, at::kByte).to(at::kBool)));
    /* the fixture's arrays */
    if (access((samda_test::fixtures() + "/sam-parity/tiny/input.npy").c_str(), R_OK) == 0) {
        at::Tensor in = npy::load_tensor(samda_test::fixtures() + "/sam-parity/tiny/input.npy");
        CHECK(in.sizes().vec() == (std::vector<int64_t>{1, 3, 256, 256}));
        CHECK_NEAR(in.flatten()[0].item<float>(), -0.884921669960022, 1e-7);
        at::Tensor img = npy::load_tensor(samda_test::fixtures() + "/sam-parity/tiny/image.npy");
        CHECK(img.scalar_type() == at::kByte && img.sizes().vec() == (std::vector<int64_t>{150, 200, 3}));
    }
    CHECK_THROWS(npy::save(dir + "/c.npy", at::zeros({1}, at::kComplexFloat)), npy::Error, "c.npy");
    rmdir(dir.c_str());
}

} // namespace

int main()
{
    RUN(test_round_trip);
    RUN(test_npy);
    if (access((samda_test::fixtures() + "/sam-parity/tiny/weights.pth").c_str(), R_OK) == 0) {
        RUN(test_fixture);
    } else {
        printf("SKIP test_fixture: %s/sam-parity/tiny/weights.pth absent (SAMDA_FIXTURES names another folder)\n",
               samda_test::fixtures().c_str());
    }
    return samda_test::summary();
}
