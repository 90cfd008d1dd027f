// model/sam_config.h: SAM network sizes and a tiny JSON reader (no libtorch, cheap to include).
#ifndef SAMDA_MODEL_SAM_CONFIG_H
#define SAMDA_MODEL_SAM_CONFIG_H

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace samda {

// ---------------------------------------------------------------------------------------------
// Configuration (sam_config.cpp)

/** Every size that defines a SAM network. Defaults are the official SAM values for vit_b. */
struct SamConfig {
    std::string arch = "vit_b";  // vit_b | vit_l | vit_h | custom
    // image encoder
    int img_size = 1024;
    int patch_size = 16;
    int in_chans = 3;
    int embed_dim = 768;
    int depth = 12;
    int num_heads = 12;
    std::vector<int> global_attn_indexes = {2, 5, 8, 11};
    int window_size = 14;
    double mlp_ratio = 4.0;
    int out_chans = 256;
    bool qkv_bias = true;
    bool use_rel_pos = true;
    bool use_abs_pos = true;
    double norm_eps = 1e-6;
    // prompt encoder
    int prompt_embed_dim = 256;
    int mask_in_chans = 16;
    // mask decoder
    int decoder_depth = 2;
    int decoder_mlp_dim = 2048;
    int decoder_num_heads = 8;
    int attention_downsample_rate = 2;
    int num_multimask_outputs = 3;
    int iou_head_depth = 3;
    int iou_head_hidden_dim = 256;
    // pixel normalisation (SAM convention)
    double pixel_mean[3] = {123.675, 116.28, 103.53};
    double pixel_std[3] = {58.395, 57.12, 57.375};

    int embed_size() const { return img_size / patch_size; }  // 64 for 1024 / 16
    int low_res_size() const { return 4 * embed_size(); }     // 256
    void validate() const;                                     // throws std::invalid_argument
};

/** Official presets: "vit_b", "vit_l", "vit_h". Throws std::invalid_argument for other names. */
SamConfig sam_config_preset(const std::string &arch);
/** Config from a JSON file laid out as the sam-parity fixture's config.json (image_encoder,
 *  prompt_encoder, mask_decoder, pixel_mean, pixel_std objects). Throws on error, naming the field. */
SamConfig sam_config_from_json_file(const std::string &path);
/** Infer the config from checkpoint tensor shapes (name -> shape). Works for every official
 *  checkpoint and for custom ones with standard decoder sizes. Throws std::invalid_argument when a
 *  required tensor is missing, naming it. */
SamConfig sam_config_infer(const std::map<std::string, std::vector<int64_t>> &shapes);

// A small, bounded JSON reader (enough for config files; no external dependency).
struct JsonValue {
    enum Kind { Null, Bool, Number, String, Array, Object } kind = Null;
    bool b = false;
    double num = 0.0;
    std::string str;
    std::vector<JsonValue> arr;
    std::vector<std::pair<std::string, JsonValue>> obj;

    const JsonValue *get(const std::string &key) const;  // NULL when absent or not an object
    bool is_null() const { return kind == Null; }
};
/** Parse text (max 16 MiB, nesting depth 64). Throws std::invalid_argument with the byte offset. */
JsonValue json_parse(const std::string &text);
/** Read and parse a file. Throws std::runtime_error / std::invalid_argument naming the path. */
JsonValue json_parse_file(const std::string &path);

}  // namespace samda

#endif
