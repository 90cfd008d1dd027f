/* Weights and configuration of the SAM network (model/sam_weights.cpp, model/sam_config.cpp):
 * loading errors name the key (missing, unexpected, wrong shape), through the C interface and on a
 * real checkpoint file; architecture inference from tensor shapes; the JSON reader's limits;
 * relative-position table interpolation. Uses the fixture sam-parity/tiny where noted. */
#include "check.h"
#include "internal.h"
#include "state_dict.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <string>

namespace {

std::string g_dir, g_tmp;

bool exists(const std::string &p)
{
    struct stat st;
    return stat(p.c_str(), &st) == 0;
}

/** Open the checkpoint at path with the C interface; returns the status and the message. */
samda_status open_status(const std::string &path, std::string *msg)
{
    samda_model_params p;
    samda_model_params_init(&p);
    p.checkpoint_path = path.c_str();
    p.device = SAMDA_MODEL_DEVICE_CPU;
    std::string cfg = g_dir + "/config.json";
    p.arch = "custom";
    p.config_path = cfg.c_str();
    samda_error err{};
    samda_model *m = samda_model_open(&p, &err);
    samda_model_close(m);
    *msg = err.message;
    return m ? SAMDA_OK : err.code;
}

void test_load_errors()
{
    samda::StateDict sd = samda::load_state_dict(g_dir + "/weights.pth");
    CHECK(sd.size() > 100);
    std::string msg;
    CHECK_EQ(open_status(g_dir + "/weights.pth", &msg), SAMDA_OK);

    // Missing key.
    const std::string victim = "mask_decoder.transformer.layers.1.cross_attn_image_to_token.q_proj.bias";
    samda::StateDict missing;
    for (const auto &kv : sd)
        if (kv.first != victim)
            missing.push_back(kv);
    CHECK_EQ(missing.size(), sd.size() - 1);
    const std::string f1 = g_tmp + "/missing.pth";
    samda::save_state_dict_pth(f1, missing);
    CHECK_EQ(open_status(f1, &msg), SAMDA_EMODEL);
    CHECK(msg.find("missing key '" + victim + "'") != std::string::npos);
    printf("missing: %s\n", msg.c_str());

    // Unexpected key.
    samda::StateDict extra = sd;
    extra.emplace_back("mask_decoder.adapter.0.weight", at::zeros({4}));
    const std::string f2 = g_tmp + "/extra.pth";
    samda::save_state_dict_pth(f2, extra);
    CHECK_EQ(open_status(f2, &msg), SAMDA_EMODEL);
    CHECK(msg.find("unexpected key 'mask_decoder.adapter.0.weight'") != std::string::npos);
    printf("unexpected: %s\n", msg.c_str());

    // Wrong shape.
    samda::StateDict wrong = sd;
    for (auto &kv : wrong)
        if (kv.first == "image_encoder.blocks.2.attn.rel_pos_h")
            kv.second = at::zeros({5, kv.second.size(1)});
    const std::string f3 = g_tmp + "/wrong.pth";
    samda::save_state_dict_pth(f3, wrong);
    CHECK_EQ(open_status(f3, &msg), SAMDA_EMODEL);
    CHECK(msg.find("image_encoder.blocks.2.attn.rel_pos_h") != std::string::npos);
    CHECK(msg.find("wrong shape") != std::string::npos);
    printf("wrong shape: %s\n", msg.c_str());

    // Not a checkpoint at all.
    const std::string f4 = g_tmp + "/garbage.pth";
    FILE *f = fopen(f4.c_str(), "wb");
    fputs("not a zip", f);
    fclose(f);
    CHECK_EQ(open_status(f4, &msg), SAMDA_EMODEL);
    CHECK(msg.find(f4) != std::string::npos);

    // pixel_mean / pixel_std in a checkpoint are tolerated; a float16 checkpoint loads (converted).
    samda::StateDict half = sd;
    for (auto &kv : half)
        kv.second = kv.second.to(at::kHalf);
    half.emplace_back("pixel_mean", at::zeros({3, 1, 1}));
    const std::string f5 = g_tmp + "/half.pth";
    samda::save_state_dict_pth(f5, half);
    CHECK_EQ(open_status(f5, &msg), SAMDA_OK);

    // Direct: sam_load_state names the duplicate key.
    samda::SamImpl sam(samda::sam_config_from_json_file(g_dir + "/config.json"));
    samda::StateDict dup = sd;
    dup.push_back(sd.front());
    CHECK_THROWS(samda::sam_load_state(sam, dup), std::invalid_argument, "twice");
    for (const char *f : {"missing.pth", "extra.pth", "wrong.pth", "garbage.pth", "half.pth"})
        unlink((g_tmp + "/" + f).c_str());
}

void test_infer_config()
{
    samda::StateDict sd = samda::load_state_dict(g_dir + "/weights.pth");
    std::map<std::string, std::vector<int64_t>> shapes;
    for (const auto &kv : sd)
        shapes[kv.first] = kv.second.sizes().vec();
    samda::SamConfig inf = samda::sam_config_infer(shapes);
    samda::SamConfig file = samda::sam_config_from_json_file(g_dir + "/config.json");
    CHECK_EQ(inf.img_size, file.img_size);
    CHECK_EQ(inf.embed_dim, file.embed_dim);
    CHECK_EQ(inf.depth, file.depth);
    CHECK_EQ(inf.num_heads, file.num_heads);
    CHECK(inf.global_attn_indexes == file.global_attn_indexes);
    CHECK_EQ(inf.window_size, file.window_size);
    CHECK_EQ(inf.mlp_ratio, file.mlp_ratio);
    CHECK_EQ(inf.prompt_embed_dim, file.prompt_embed_dim);
    CHECK_EQ(inf.mask_in_chans, file.mask_in_chans);
    CHECK_EQ(inf.decoder_depth, file.decoder_depth);
    CHECK_EQ(inf.decoder_mlp_dim, file.decoder_mlp_dim);
    CHECK_EQ(inf.attention_downsample_rate, file.attention_downsample_rate);
    CHECK_EQ(inf.num_multimask_outputs, file.num_multimask_outputs);
    CHECK_EQ(inf.iou_head_depth, file.iou_head_depth);
    shapes.erase("image_encoder.patch_embed.proj.weight");
    CHECK_THROWS(samda::sam_config_infer(shapes), std::invalid_argument, "image_encoder.patch_embed.proj.weight");
}

void test_infer_official()
{
    // The official networks' own shapes infer back to their presets.
    for (const char *arch : {"vit_b", "vit_l", "vit_h"}) {
        samda::SamImpl sam(samda::sam_config_preset(arch));
        std::map<std::string, std::vector<int64_t>> shapes;
        for (const auto &kv : sam.named_parameters(true))
            shapes[kv.key()] = kv.value().sizes().vec();
        for (const auto &kv : sam.named_buffers(true))
            shapes[kv.key()] = kv.value().sizes().vec();
        samda::SamConfig c = samda::sam_config_infer(shapes);
        CHECK_EQ(c.arch, std::string(arch));
        CHECK_EQ(c.window_size, 14);
        CHECK_EQ(c.img_size, 1024);
        // The official key count (state dict of build_sam_vit_*): every key is registered by name.
        if (std::string(arch) == "vit_b")
            CHECK_EQ(shapes.count("image_encoder.blocks.11.attn.rel_pos_w"), (size_t)1);
        CHECK_EQ(shapes.count("prompt_encoder.mask_downscaling.6.bias"), (size_t)1);
        CHECK_EQ(shapes.count("mask_decoder.output_hypernetworks_mlps.3.layers.2.weight"), (size_t)1);
        CHECK_EQ(shapes.count("mask_decoder.iou_prediction_head.layers.2.bias"), (size_t)1);
        CHECK_EQ(shapes.count("prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"), (size_t)1);
    }
}

void test_json()
{
    samda::JsonValue v = samda::json_parse("{\"a\": [1, 2.5, -3e2], \"b\": {\"c\": \"x\\u00e9\\n\"}, \"d\": null, \"e\": true}");
    CHECK_EQ(v.get("a")->arr.size(), (size_t)3);
    CHECK_EQ(v.get("a")->arr[2].num, -300.0);
    CHECK_EQ(v.get("b")->get("c")->str, std::string("x\xc3\xa9\n"));
    CHECK(v.get("d")->is_null());
    CHECK(v.get("e")->b);
    CHECK(v.get("zz") == nullptr);
    CHECK_THROWS(samda::json_parse("{\"a\": 1,}"), std::invalid_argument, "byte");
    CHECK_THROWS(samda::json_parse("[1 2]"), std::invalid_argument, "expected");
    CHECK_THROWS(samda::json_parse("\"abc"), std::invalid_argument, "unterminated");
    CHECK_THROWS(samda::json_parse("{} x"), std::invalid_argument, "trailing");
    CHECK_THROWS(samda::json_parse(std::string(100, '[')), std::invalid_argument, "deeper");
    CHECK_THROWS(samda::json_parse("-"), std::invalid_argument, "number");
    // Config validation names the field.
    const std::string f = g_tmp + "/bad.json";
    FILE *fp = fopen(f.c_str(), "w");
    fputs("{\"image_encoder\": {\"embed_dim\": 100, \"num_heads\": 3}}", fp);
    fclose(fp);
    CHECK_THROWS(samda::sam_config_from_json_file(f), std::invalid_argument, "num_heads");
    fp = fopen(f.c_str(), "w");
    fputs("{\"image_encoder\": {\"depth\": \"four\"}}", fp);
    fclose(fp);
    CHECK_THROWS(samda::sam_config_from_json_file(f), std::invalid_argument, "image_encoder.depth");
    unlink(f.c_str());
}

void test_rel_pos()
{
    // Same size: a plain gather, rel[i][j] = table[i - j + k - 1].
    at::Tensor table = at::arange(7 * 2, at::kFloat).reshape({7, 2});
    at::Tensor r = samda::get_rel_pos(4, 4, table);
    CHECK_EQ(r.size(0), 4);
    CHECK_EQ(r.size(2), 2);
    CHECK_EQ(r[0][3][0].item<float>(), table[0][0].item<float>());
    CHECK_EQ(r[3][0][1].item<float>(), table[6][1].item<float>());
    CHECK_EQ(r[2][2][0].item<float>(), table[3][0].item<float>());
    // Different size: the table is linearly resized to 2*max-1 rows first (align_corners=False).
    at::Tensor small = at::tensor({0.0f, 3.0f, 6.0f}).reshape({3, 1});  // for size 2
    at::Tensor big = samda::get_rel_pos(4, 4, small);                   // needs 7 rows
    // Row 3 (the middle) of the resized table is the middle of [0, 3, 6].
    CHECK_NEAR(big[1][1][0].item<float>(), 3.0, 1e-6);
    CHECK_NEAR(big[3][0][0].item<float>(), 6.0, 1e-6);  // last row: edge value
    CHECK_NEAR(big[0][3][0].item<float>(), 0.0, 1e-6);
    // Query and key sizes that differ.
    at::Tensor qk = samda::get_rel_pos(2, 4, at::zeros({7, 3}));
    CHECK_EQ(qk.size(0), 2);
    CHECK_EQ(qk.size(1), 4);
}

}  // namespace

int main()
{
    char tmpl[] = "/tmp/samda_test_weights_XXXXXX";
    if (!mkdtemp(tmpl))
        return 1;
    g_tmp = tmpl;
    g_dir = samda_test::fixtures() + "/sam-parity/tiny";
    RUN(test_json);
    RUN(test_rel_pos);
    RUN(test_infer_official);
    if (exists(g_dir + "/weights.pth")) {
        RUN(test_load_errors);
        RUN(test_infer_config);
    } else {
        printf("SKIP: fixture %s absent: checkpoint tests not run\n", g_dir.c_str());
    }
    rmdir(tmpl);
    return samda_test::summary();
}
