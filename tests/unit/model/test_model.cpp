/* The C interface of model/ (model/model.cpp) with deterministic random weights (no fixture needed):
 * batch equivalence of the encoder and of the decoder, argument checking and error codes, parameter
 * counts of the official architectures, the MedSAM convention. Env SAMDA_TEST_DEVICE (cpu | cuda). */
#include "check.h"
#include "model.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

namespace {

std::string g_config;  // tiny custom config written to a temporary file

int test_device()
{
    const char *d = getenv("SAMDA_TEST_DEVICE");
    std::string s = d && *d ? d : "cpu";
    return s == "cuda" ? 0 : s == "auto" ? SAMDA_MODEL_DEVICE_AUTO : SAMDA_MODEL_DEVICE_CPU;
}

samda_model *tiny(uint64_t seed, samda_model_convention conv = SAMDA_MODEL_CONVENTION_SAM, int max_batch = 0)
{
    samda_model_params p;
    samda_model_params_init(&p);
    p.arch = "custom";
    p.config_path = g_config.c_str();
    p.random_weights = 1;
    p.seed = seed;
    p.device = test_device();
    p.convention = conv;
    p.max_batch = max_batch;
    samda_error err{};
    samda_model *m = samda_model_open(&p, &err);
    if (!m)
        fprintf(stderr, "open tiny: %s\n", err.message);
    return m;
}

std::vector<uint8_t> test_image(int h, int w, int seed)
{
    std::vector<uint8_t> px((size_t)h * w * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++)
                px[((size_t)y * w + x) * 3 + c] = (uint8_t)((x * (3 + seed) + y * (5 + c) + seed * 17 + ((x / 9 + y / 7) % 2) * 90) & 0xFF);
    return px;
}

std::vector<float> emb_data(samda_embedding *e)
{
    samda_embedding_info in{};
    samda_embedding_get_info(e, &in);
    std::vector<float> v((size_t)in.channels * in.height * in.width);
    samda_embedding_copy_data(e, v.data(), v.size(), nullptr);
    return v;
}

double max_diff(const std::vector<float> &a, const std::vector<float> &b)
{
    if (a.size() != b.size())
        return 1e30;
    double m = 0;
    for (size_t i = 0; i < a.size(); i++)
        m = std::max(m, (double)std::fabs(a[i] - b[i]));
    return m;
}

void test_defaults_and_info()
{
    samda_model_params p;
    samda_model_params_init(&p);
    CHECK_EQ(std::string(p.arch), std::string("auto"));
    CHECK_EQ(p.device, SAMDA_MODEL_DEVICE_AUTO);
    CHECK_EQ(p.n_threads, 0);
    CHECK_EQ(p.max_batch, 0);
    CHECK_EQ((int)p.encoder_dtype, (int)SAMDA_MODEL_DTYPE_FLOAT32);
    samda_model_params_init(nullptr);  // no crash

    samda_model *m = tiny(1);
    CHECK(m != nullptr);
    if (!m)
        return;
    samda_model_info in{};
    CHECK_EQ(samda_model_get_info(m, &in, nullptr), SAMDA_OK);
    CHECK_EQ(in.img_size, 256);
    CHECK_EQ(in.embedding_size, 16);
    CHECK_EQ(in.low_res_size, 64);
    CHECK_EQ(in.n_multimask, 3);
    CHECK(in.n_threads >= 1);
    CHECK(in.max_batch >= 1);
    CHECK(std::strlen(in.blas) > 0);
    CHECK_EQ(in.n_params_total, in.n_params_image_encoder + in.n_params_prompt_encoder + in.n_params_mask_decoder);
    CHECK_EQ(std::string(samda_model_fingerprint(m)), std::string(in.fingerprint));
    printf("tiny model: blas %s (%s), threads %d, max_batch %d, fingerprint %.12s\n", in.blas, in.blas_path,
           in.n_threads, in.max_batch, in.fingerprint);
    // Same seed, same fingerprint; another seed, another one.
    samda_model *m2 = tiny(1), *m3 = tiny(2);
    CHECK(m2 && m3);
    if (m2 && m3) {
        CHECK_EQ(std::string(samda_model_fingerprint(m2)), std::string(in.fingerprint));
        CHECK(std::string(samda_model_fingerprint(m3)) != std::string(in.fingerprint));
    }
    samda_model_close(m2);
    samda_model_close(m3);
    CHECK_EQ(samda_model_get_info(nullptr, &in, nullptr), SAMDA_EINVAL);
    samda_model_close(nullptr);
    samda_model_close(m);
}

void test_official_param_counts()
{
    // vit_b has 93,735,472 parameters (DESIGN.md); the prompt encoder and decoder are shared by all three.
    samda_model_params p;
    samda_model_params_init(&p);
    p.arch = "vit_b";
    p.random_weights = 1;
    p.device = SAMDA_MODEL_DEVICE_CPU;
    samda_error err{};
    samda_model *m = samda_model_open(&p, &err);
    CHECK(m != nullptr);
    if (!m) {
        fprintf(stderr, "%s\n", err.message);
        return;
    }
    samda_model_info in{};
    samda_model_get_info(m, &in, nullptr);
    printf("vit_b: encoder %lld, prompt encoder %lld, mask decoder %lld, total %lld\n",
           (long long)in.n_params_image_encoder, (long long)in.n_params_prompt_encoder,
           (long long)in.n_params_mask_decoder, (long long)in.n_params_total);
    CHECK_EQ(in.n_params_total, (int64_t)93735472);
    CHECK_EQ(std::string(in.arch), std::string("vit_b"));
    CHECK_EQ(in.embedding_size, 64);
    CHECK_EQ(in.low_res_size, 256);
    samda_model_close(m);
}

void test_errors()
{
    samda_error err{};
    CHECK(samda_model_open(nullptr, &err) == nullptr);
    CHECK_EQ(err.code, SAMDA_EINVAL);

    samda_model_params p;
    samda_model_params_init(&p);
    p.device = SAMDA_MODEL_DEVICE_CPU;
    CHECK(samda_model_open(&p, &err) == nullptr);  // no checkpoint
    CHECK_EQ(err.code, SAMDA_EINVAL);
    CHECK(std::string(err.message).find("checkpoint_path") != std::string::npos);

    p.checkpoint_path = "/nonexistent/sam.pth";
    CHECK(samda_model_open(&p, &err) == nullptr);
    CHECK_EQ(err.code, SAMDA_ENOENT);
    CHECK(std::string(err.message).find("/nonexistent/sam.pth") != std::string::npos);

    samda_model_params_init(&p);
    p.random_weights = 1;
    p.arch = "vit_x";
    p.device = SAMDA_MODEL_DEVICE_CPU;
    CHECK(samda_model_open(&p, &err) == nullptr);
    CHECK_EQ(err.code, SAMDA_EINVAL);
    CHECK(std::string(err.message).find("vit_x") != std::string::npos);

    p.arch = "custom";  // without config
    CHECK(samda_model_open(&p, &err) == nullptr);
    CHECK_EQ(err.code, SAMDA_EINVAL);

    p.arch = "custom";
    p.config_path = g_config.c_str();
    p.encoder_dtype = SAMDA_MODEL_DTYPE_BFLOAT16;
    CHECK(samda_model_open(&p, &err) == nullptr);
    CHECK_EQ(err.code, SAMDA_ENOTSUP);

    samda_model *m = tiny(3);
    if (!m)
        return;
    // Bad images.
    std::vector<float> in(3 * 256 * 256);
    std::vector<uint8_t> px = test_image(10, 10, 0);
    samda_model_image im{px.data(), 10, 10, 2, SAMDA_MODEL_PIXEL_U8};
    CHECK_EQ(samda_model_preprocess(m, &im, in.data(), in.size(), nullptr, nullptr, &err), SAMDA_EINVAL);
    CHECK(std::string(err.message).find("channels") != std::string::npos);
    im.channels = 3;
    CHECK_EQ(samda_model_preprocess(m, &im, in.data(), 100, nullptr, nullptr, &err), SAMDA_EINVAL);
    float nanpx[4] = {1, 2, NAN, 4};
    samda_model_image fim{nanpx, 2, 2, 1, SAMDA_MODEL_PIXEL_F32};
    CHECK_EQ(samda_model_preprocess(m, &fim, in.data(), in.size(), nullptr, nullptr, &err), SAMDA_EINVAL);
    samda_model_encode_item item{};
    samda_embedding *e = nullptr;
    CHECK_EQ(samda_model_encode(m, &item, 1, &e, &err), SAMDA_EINVAL);  // neither image nor preprocessed
    CHECK(e == nullptr);

    // Bad prompts and buffers.
    item.image = &im;
    CHECK_EQ(samda_model_encode(m, &item, 1, &e, &err), SAMDA_OK);
    if (!e) {
        samda_model_close(m);
        return;
    }
    float pt[2] = {5, 5};
    int lab = 7;
    samda_model_prompt pr{pt, &lab, 1, nullptr, nullptr};
    std::vector<float> low(64 * 64), iou(1);
    samda_model_decode_out out{low.data(), low.size(), iou.data(), iou.size(), nullptr, 0, nullptr, 0};
    CHECK_EQ(samda_model_decode(m, e, &pr, 1, 0, &out, &err), SAMDA_EINVAL);
    CHECK(std::string(err.message).find("label 7") != std::string::npos);
    lab = 1;
    CHECK_EQ(samda_model_decode(m, e, &pr, 1, 0, &out, &err), SAMDA_OK);
    CHECK_EQ(samda_model_decode(m, e, &pr, 1, SAMDA_MODEL_DECODE_MULTIMASK, &out, &err), SAMDA_EINVAL);  // buffers too small
    CHECK(std::string(err.message).find("low_res_logits") != std::string::npos);
    pt[0] = INFINITY;
    CHECK_EQ(samda_model_decode(m, e, &pr, 1, 0, &out, &err), SAMDA_EINVAL);
    pt[0] = 5;
    // An embedding from another model is refused.
    samda_model *other = tiny(4);
    if (other) {
        CHECK_EQ(samda_model_decode(other, e, &pr, 1, 0, &out, &err), SAMDA_EINVAL);
        CHECK(std::string(err.message).find("another model") != std::string::npos);
        samda_model_close(other);
    }
    // Refcount: retain + release twice frees once.
    CHECK(samda_embedding_retain(e) == e);
    samda_embedding_release(e);
    samda_embedding_release(e);
    samda_embedding_release(nullptr);
    samda_model_close(m);
}

void test_encode_batch_equivalence()
{
    samda_model *m = tiny(5, SAMDA_MODEL_CONVENTION_SAM, 2);
    if (!m)
        return;
    std::vector<uint8_t> a = test_image(150, 200, 1), b = test_image(120, 90, 2);
    samda_model_image ia{a.data(), 150, 200, 3, SAMDA_MODEL_PIXEL_U8}, ib{b.data(), 120, 90, 3, SAMDA_MODEL_PIXEL_U8};
    samda_model_encode_item items[2] = {};
    items[0].image = &ia;
    items[1].image = &ib;
    samda_embedding *both[2] = {nullptr, nullptr}, *ea = nullptr, *eb = nullptr;
    samda_error err{};
    CHECK_EQ(samda_model_encode(m, items, 2, both, &err), SAMDA_OK);
    CHECK_EQ(samda_model_encode(m, &items[0], 1, &ea, &err), SAMDA_OK);
    CHECK_EQ(samda_model_encode(m, &items[1], 1, &eb, &err), SAMDA_OK);
    if (both[0] && both[1] && ea && eb) {
        double da = max_diff(emb_data(both[0]), emb_data(ea)), db = max_diff(emb_data(both[1]), emb_data(eb));
        printf("encoder batch of 2 vs alone: max abs diff %.3g, %.3g\n", da, db);
        CHECK(da <= 1e-5);
        CHECK(db <= 1e-5);
        CHECK(max_diff(emb_data(ea), emb_data(eb)) > 1e-3);  // different images differ
        samda_embedding_info info{};
        samda_embedding_get_info(both[1], &info);
        CHECK_EQ(info.original_height, 120);
        CHECK_EQ(info.original_width, 90);
        CHECK_EQ(info.input_height, 256);
        CHECK_EQ(info.input_width, 192);
    }
    // Preprocess + encode(preprocessed) equals encode(image).
    std::vector<float> pre(3 * 256 * 256);
    int ih = 0, iw = 0;
    CHECK_EQ(samda_model_preprocess(m, &ia, pre.data(), pre.size(), &ih, &iw, &err), SAMDA_OK);
    samda_model_encode_item pi{};
    pi.preprocessed = pre.data();
    pi.original_height = 150;
    pi.original_width = 200;
    pi.input_height = ih;
    pi.input_width = iw;
    samda_embedding *ep = nullptr;
    CHECK_EQ(samda_model_encode(m, &pi, 1, &ep, &err), SAMDA_OK);
    if (ep && ea)
        CHECK(max_diff(emb_data(ep), emb_data(ea)) <= 1e-6);
    // Three images with max_batch 2 (two forwards).
    samda_model_encode_item three[3] = {items[0], items[1], items[0]};
    samda_embedding *e3[3] = {};
    CHECK_EQ(samda_model_encode(m, three, 3, e3, &err), SAMDA_OK);
    if (e3[2] && ea)
        CHECK(max_diff(emb_data(e3[2]), emb_data(ea)) <= 1e-5);
    for (auto *x : e3)
        samda_embedding_release(x);
    samda_embedding_release(ep);
    samda_embedding_release(both[0]);
    samda_embedding_release(both[1]);
    samda_embedding_release(ea);
    samda_embedding_release(eb);
    samda_model_close(m);
}

void test_decode_batch_equivalence()
{
    samda_model *m = tiny(6);
    if (!m)
        return;
    std::vector<uint8_t> a = test_image(150, 200, 3);
    samda_model_image ia{a.data(), 150, 200, 3, SAMDA_MODEL_PIXEL_U8};
    samda_model_encode_item it{};
    it.image = &ia;
    samda_embedding *e = nullptr;
    samda_error err{};
    CHECK_EQ(samda_model_encode(m, &it, 1, &e, &err), SAMDA_OK);
    if (!e) {
        samda_model_close(m);
        return;
    }
    // 16 prompts of mixed shapes: 1 point, 2 points, a box, box + point, with a previous mask.
    const int N = 16, L = 64, H = 150, W = 200;
    std::vector<std::vector<float>> pts(N), boxes(N);
    std::vector<std::vector<int>> labs(N);
    std::vector<float> prev_mask((size_t)L * L);
    for (size_t i = 0; i < prev_mask.size(); i++)
        prev_mask[i] = (float)((int)(i % 97) - 48) / 10.0f;
    std::vector<samda_model_prompt> prompts(N);
    for (int i = 0; i < N; i++) {
        const int kind = i % 4;
        const int np = kind == 0 ? 1 : kind == 1 ? 2 : kind == 2 ? 0 : 1;
        for (int k = 0; k < np; k++) {
            pts[i].push_back((float)(10 + 11 * i + 7 * k));
            pts[i].push_back((float)(5 + 8 * i + 13 * k) * 0.9f);
            labs[i].push_back((i + k) % 3 == 2 ? 0 : 1);
        }
        if (kind >= 2)
            boxes[i] = {(float)(5 + i), (float)(8 + i), (float)(100 + 4 * i), (float)(60 + 5 * i)};
        prompts[i].points = np ? pts[i].data() : nullptr;
        prompts[i].point_labels = np ? labs[i].data() : nullptr;
        prompts[i].n_points = (size_t)np;
        prompts[i].box = boxes[i].empty() ? nullptr : boxes[i].data();
        prompts[i].mask_input = (i % 5 == 4) ? prev_mask.data() : nullptr;
    }
    for (unsigned flags : {0u, (unsigned)SAMDA_MODEL_DECODE_MULTIMASK}) {
        const size_t C = flags ? 3 : 1;
        std::vector<float> low(N * C * L * L), iou(N * C), full(N * C * H * W);
        std::vector<uint8_t> masks(N * C * H * W);
        samda_model_decode_out out{low.data(), low.size(), iou.data(), iou.size(), full.data(), full.size(),
                                   masks.data(), masks.size()};
        CHECK_EQ(samda_model_decode(m, e, prompts.data(), N, flags, &out, &err), SAMDA_OK);
        double dl = 0, di = 0, df = 0;
        size_t mask_bad = 0;
        for (int i = 0; i < N; i++) {
            std::vector<float> l1(C * L * L), i1(C), f1(C * H * W);
            std::vector<uint8_t> m1(C * H * W);
            samda_model_decode_out o1{l1.data(), l1.size(), i1.data(), i1.size(), f1.data(), f1.size(), m1.data(),
                                      m1.size()};
            CHECK_EQ(samda_model_decode(m, e, &prompts[i], 1, flags, &o1, &err), SAMDA_OK);
            dl = std::max(dl, max_diff(l1, std::vector<float>(low.begin() + (long)(i * C * L * L),
                                                              low.begin() + (long)((i + 1) * C * L * L))));
            di = std::max(di, max_diff(i1, std::vector<float>(iou.begin() + (long)(i * C), iou.begin() + (long)((i + 1) * C))));
            df = std::max(df, max_diff(f1, std::vector<float>(full.begin() + (long)(i * C * H * W),
                                                              full.begin() + (long)((i + 1) * C * H * W))));
            for (size_t k = 0; k < C * H * W; k++) {
                CHECK_EQ(m1[k], (uint8_t)(f1[k] > 0));
                if (m1[k] != masks[i * C * H * W + k] && std::fabs(f1[k]) > 1e-4)
                    mask_bad++;
            }
        }
        printf("decoder 16 prompts in one call vs 16 calls (%zu masks each): max abs diff low_res %.3g iou %.3g "
               "mask_logits %.3g\n", C, dl, di, df);
        CHECK(dl <= 1e-5);
        CHECK(di <= 1e-5);
        CHECK(df <= 1e-5);
        CHECK_EQ(mask_bad, (size_t)0);
    }
    samda_embedding_release(e);
    samda_model_close(m);
}

void test_medsam_convention()
{
    samda_model *m = tiny(7, SAMDA_MODEL_CONVENTION_MEDSAM);
    if (!m)
        return;
    std::vector<float> px(60 * 80);
    for (size_t i = 0; i < px.size(); i++)
        px[i] = 20.0f + (float)(i % 80) * 2.0f;
    samda_model_image im{px.data(), 60, 80, 1, SAMDA_MODEL_PIXEL_F32};
    std::vector<float> in(3 * 256 * 256);
    int ih = 0, iw = 0;
    samda_error err{};
    CHECK_EQ(samda_model_preprocess(m, &im, in.data(), in.size(), &ih, &iw, &err), SAMDA_OK);
    CHECK_EQ(ih, 256);
    CHECK_EQ(iw, 256);
    float lo = *std::min_element(in.begin(), in.end()), hi = *std::max_element(in.begin(), in.end());
    CHECK_NEAR(lo, 0.0, 1e-6);
    CHECK_NEAR(hi, 1.0, 1e-6);
    // Grey is repeated to three equal channels.
    CHECK_EQ(in[12345], in[12345 + 256 * 256]);
    samda_model_info info{};
    samda_model_get_info(m, &info, nullptr);
    CHECK_EQ((int)info.convention, (int)SAMDA_MODEL_CONVENTION_MEDSAM);
    samda_model_close(m);
}

}  // namespace

int main()
{
    char tmpl[] = "/tmp/samda_test_model_XXXXXX";
    int fd = mkstemp(tmpl);
    if (fd < 0)
        return 1;
    const char *cfg =
        "{\"image_encoder\": {\"img_size\": 256, \"patch_size\": 16, \"embed_dim\": 96, \"depth\": 4, "
        "\"num_heads\": 4, \"global_attn_indexes\": [1, 3], \"window_size\": 7, \"mlp_ratio\": 4, \"out_chans\": 256},"
        " \"prompt_encoder\": {\"embed_dim\": 256, \"mask_in_chans\": 16},"
        " \"mask_decoder\": {\"transformer_depth\": 2, \"mlp_dim\": 2048, \"num_heads\": 8}}";
    if (write(fd, cfg, std::strlen(cfg)) != (ssize_t)std::strlen(cfg))
        return 1;
    close(fd);
    g_config = tmpl;
    RUN(test_defaults_and_info);
    RUN(test_official_param_counts);
    RUN(test_errors);
    RUN(test_encode_batch_equivalence);
    RUN(test_decode_batch_equivalence);
    RUN(test_medsam_convention);
    unlink(tmpl);
    return samda_test::summary();
}
