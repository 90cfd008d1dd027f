// model/sam_config.cpp: SAM network sizes: official presets, a JSON config file, or inference from
// checkpoint tensor shapes. Also holds the small JSON reader those configs need (model/ depends on
// libtorch alone, so no JSON library).
#include "sam_config.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace samda {

// ---------------------------------------------------------------------------------------------
// JSON

namespace {

constexpr size_t kJsonMaxBytes = 16u << 20;
constexpr int kJsonMaxDepth = 64;

class JsonParser {
public:
    explicit JsonParser(const std::string &t) : s_(t) {}

    JsonValue parse_document()
    {
        JsonValue v = value(0);
        ws();
        if (i_ != s_.size())
            fail("trailing characters after the JSON value");
        return v;
    }

private:
    const std::string &s_;
    size_t i_ = 0;

    [[noreturn]] void fail(const char *what) const
    {
        throw std::invalid_argument("JSON parse error at byte " + std::to_string(i_) + ": " + what);
    }
    void ws()
    {
        while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r'))
            i_++;
    }
    bool lit(const char *w)
    {
        size_t n = std::char_traits<char>::length(w);
        if (s_.compare(i_, n, w) == 0) {
            i_ += n;
            return true;
        }
        return false;
    }
    JsonValue value(int depth)
    {
        if (depth > kJsonMaxDepth)
            fail("nesting deeper than 64");
        ws();
        if (i_ >= s_.size())
            fail("unexpected end of input");
        JsonValue v;
        char c = s_[i_];
        if (c == '{') {
            v.kind = JsonValue::Object;
            i_++;
            ws();
            if (i_ < s_.size() && s_[i_] == '}') {
                i_++;
                return v;
            }
            for (;;) {
                ws();
                if (i_ >= s_.size() || s_[i_] != '"')
                    fail("expected a string key");
                std::string k = string();
                ws();
                if (i_ >= s_.size() || s_[i_] != ':')
                    fail("expected ':'");
                i_++;
                v.obj.emplace_back(std::move(k), value(depth + 1));
                ws();
                if (i_ < s_.size() && s_[i_] == ',') {
                    i_++;
                    continue;
                }
                if (i_ < s_.size() && s_[i_] == '}') {
                    i_++;
                    return v;
                }
                fail("expected ',' or '}'");
            }
        }
        if (c == '[') {
            v.kind = JsonValue::Array;
            i_++;
            ws();
            if (i_ < s_.size() && s_[i_] == ']') {
                i_++;
                return v;
            }
            for (;;) {
                v.arr.push_back(value(depth + 1));
                ws();
                if (i_ < s_.size() && s_[i_] == ',') {
                    i_++;
                    continue;
                }
                if (i_ < s_.size() && s_[i_] == ']') {
                    i_++;
                    return v;
                }
                fail("expected ',' or ']'");
            }
        }
        if (c == '"') {
            v.kind = JsonValue::String;
            v.str = string();
            return v;
        }
        if (lit("true")) {
            v.kind = JsonValue::Bool;
            v.b = true;
            return v;
        }
        if (lit("false")) {
            v.kind = JsonValue::Bool;
            return v;
        }
        if (lit("null"))
            return v;
        if (c == '-' || (c >= '0' && c <= '9')) {
            size_t start = i_;
            if (s_[i_] == '-')
                i_++;
            while (i_ < s_.size() && ((s_[i_] >= '0' && s_[i_] <= '9') || s_[i_] == '.' || s_[i_] == 'e' ||
                                      s_[i_] == 'E' || s_[i_] == '+' || s_[i_] == '-'))
                i_++;
            std::string num = s_.substr(start, i_ - start);
            char *end = nullptr;
            v.kind = JsonValue::Number;
            v.num = std::strtod(num.c_str(), &end);
            if (end == nullptr || *end != '\0' || num == "-")
                fail("malformed number");
            return v;
        }
        fail("unexpected character");
    }
    static void put_utf8(std::string &o, unsigned cp)
    {
        if (cp < 0x80) {
            o += (char)cp;
        } else if (cp < 0x800) {
            o += (char)(0xC0 | (cp >> 6));
            o += (char)(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            o += (char)(0xE0 | (cp >> 12));
            o += (char)(0x80 | ((cp >> 6) & 0x3F));
            o += (char)(0x80 | (cp & 0x3F));
        } else {
            o += (char)(0xF0 | (cp >> 18));
            o += (char)(0x80 | ((cp >> 12) & 0x3F));
            o += (char)(0x80 | ((cp >> 6) & 0x3F));
            o += (char)(0x80 | (cp & 0x3F));
        }
    }
    unsigned hex4()
    {
        if (i_ + 4 > s_.size())
            fail("truncated \\u escape");
        unsigned v = 0;
        for (int k = 0; k < 4; k++) {
            char h = s_[i_++];
            v <<= 4;
            if (h >= '0' && h <= '9')
                v |= (unsigned)(h - '0');
            else if (h >= 'a' && h <= 'f')
                v |= (unsigned)(h - 'a' + 10);
            else if (h >= 'A' && h <= 'F')
                v |= (unsigned)(h - 'A' + 10);
            else
                fail("bad hex digit in \\u escape");
        }
        return v;
    }
    std::string string()
    {
        i_++;  // opening quote
        std::string o;
        while (i_ < s_.size()) {
            char c = s_[i_++];
            if (c == '"')
                return o;
            if ((unsigned char)c < 0x20)
                fail("control character in string");
            if (c != '\\') {
                o += c;
                continue;
            }
            if (i_ >= s_.size())
                break;
            char e = s_[i_++];
            switch (e) {
            case '"': o += '"'; break;
            case '\\': o += '\\'; break;
            case '/': o += '/'; break;
            case 'b': o += '\b'; break;
            case 'f': o += '\f'; break;
            case 'n': o += '\n'; break;
            case 'r': o += '\r'; break;
            case 't': o += '\t'; break;
            case 'u': {
                unsigned cp = hex4();
                if (cp >= 0xD800 && cp < 0xDC00 && i_ + 1 < s_.size() && s_[i_] == '\\' && s_[i_ + 1] == 'u') {
                    i_ += 2;
                    unsigned lo = hex4();
                    if (lo < 0xDC00 || lo > 0xDFFF)
                        fail("bad surrogate pair");
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                }
                put_utf8(o, cp);
                break;
            }
            default: fail("bad escape");
            }
        }
        fail("unterminated string");
    }
};

}  // namespace

const JsonValue *JsonValue::get(const std::string &key) const
{
    if (kind != Object)
        return nullptr;
    for (const auto &kv : obj)
        if (kv.first == key)
            return &kv.second;
    return nullptr;
}

JsonValue json_parse(const std::string &text)
{
    if (text.size() > kJsonMaxBytes)
        throw std::invalid_argument("JSON text of " + std::to_string(text.size()) + " bytes exceeds the 16 MiB limit");
    return JsonParser(text).parse_document();
}

JsonValue json_parse_file(const std::string &path)
{
    std::ifstream f(path, std::ios::binary);
    if (!f)
        throw std::runtime_error("cannot open " + path);
    std::ostringstream ss;
    ss << f.rdbuf();
    try {
        return json_parse(ss.str());
    } catch (const std::invalid_argument &e) {
        throw std::invalid_argument(path + ": " + e.what());
    }
}

// ---------------------------------------------------------------------------------------------
// Config

void SamConfig::validate() const
{
    auto need = [](bool ok, const std::string &what) {
        if (!ok)
            throw std::invalid_argument("invalid SAM config: " + what);
    };
    need(patch_size > 0 && img_size > 0 && img_size % patch_size == 0,
         "img_size " + std::to_string(img_size) + " must be a positive multiple of patch_size " +
             std::to_string(patch_size));
    need(embed_dim > 0 && num_heads > 0 && embed_dim % num_heads == 0,
         "embed_dim " + std::to_string(embed_dim) + " must be divisible by num_heads " + std::to_string(num_heads));
    need(depth > 0 && depth <= 256, "depth " + std::to_string(depth) + " must be in 1..256");
    need(window_size >= 0, "window_size must be >= 0");
    for (int g : global_attn_indexes)
        need(g >= 0 && g < depth, "global_attn_indexes entry " + std::to_string(g) + " outside 0.." +
                                      std::to_string(depth - 1));
    need(mlp_ratio > 0 && out_chans > 0 && in_chans > 0, "mlp_ratio, out_chans and in_chans must be positive");
    need(prompt_embed_dim > 0 && prompt_embed_dim % 8 == 0, "prompt_embed_dim must be a positive multiple of 8");
    need(prompt_embed_dim == out_chans, "prompt_embed_dim must equal the encoder's out_chans");
    need(mask_in_chans >= 4 && mask_in_chans % 4 == 0, "mask_in_chans must be a positive multiple of 4");
    need(decoder_depth > 0 && decoder_mlp_dim > 0 && decoder_num_heads > 0 && attention_downsample_rate > 0,
         "decoder sizes must be positive");
    need((prompt_embed_dim / attention_downsample_rate) % decoder_num_heads == 0,
         "decoder heads must divide prompt_embed_dim / attention_downsample_rate");
    need(num_multimask_outputs >= 1 && iou_head_depth >= 1 && iou_head_hidden_dim > 0,
         "mask decoder output sizes must be positive");
    for (int k = 0; k < 3; k++)
        need(pixel_std[k] > 0, "pixel_std must be positive");
}

SamConfig sam_config_preset(const std::string &arch)
{
    SamConfig c;  // vit_b defaults
    c.arch = arch;
    if (arch == "vit_b") {
        return c;
    } else if (arch == "vit_l") {
        c.embed_dim = 1024;
        c.depth = 24;
        c.num_heads = 16;
        c.global_attn_indexes = {5, 11, 17, 23};
    } else if (arch == "vit_h") {
        c.embed_dim = 1280;
        c.depth = 32;
        c.num_heads = 16;
        c.global_attn_indexes = {7, 15, 23, 31};
    } else {
        throw std::invalid_argument("unknown SAM architecture '" + arch + "' (expected vit_b, vit_l, vit_h or custom)");
    }
    return c;
}

namespace {

int json_int(const JsonValue *obj, const char *key, int def, const char *section)
{
    const JsonValue *v = obj ? obj->get(key) : nullptr;
    if (!v)
        return def;
    if (v->kind != JsonValue::Number || v->num != std::floor(v->num) || std::fabs(v->num) > 1e9)
        throw std::invalid_argument(std::string("config field ") + section + "." + key + " must be an integer");
    return (int)v->num;
}

double json_num(const JsonValue *obj, const char *key, double def, const char *section)
{
    const JsonValue *v = obj ? obj->get(key) : nullptr;
    if (!v)
        return def;
    if (v->kind != JsonValue::Number)
        throw std::invalid_argument(std::string("config field ") + section + "." + key + " must be a number");
    return v->num;
}

bool json_bool(const JsonValue *obj, const char *key, bool def, const char *section)
{
    const JsonValue *v = obj ? obj->get(key) : nullptr;
    if (!v)
        return def;
    if (v->kind != JsonValue::Bool)
        throw std::invalid_argument(std::string("config field ") + section + "." + key + " must be true or false");
    return v->b;
}

void json_triple(const JsonValue &root, const char *key, double out[3])
{
    const JsonValue *v = root.get(key);
    if (!v)
        return;
    if (v->kind != JsonValue::Array || v->arr.size() != 3)
        throw std::invalid_argument(std::string("config field ") + key + " must be an array of 3 numbers");
    for (int k = 0; k < 3; k++) {
        if (v->arr[k].kind != JsonValue::Number)
            throw std::invalid_argument(std::string("config field ") + key + " must be an array of 3 numbers");
        out[k] = v->arr[k].num;
    }
}

}  // namespace

SamConfig sam_config_from_json_file(const std::string &path)
{
    JsonValue root = json_parse_file(path);
    if (root.kind != JsonValue::Object)
        throw std::invalid_argument(path + ": the config must be a JSON object");
    SamConfig c;
    c.arch = "custom";
    const JsonValue *ie = root.get("image_encoder");
    if (!ie || ie->kind != JsonValue::Object)
        throw std::invalid_argument(path + ": missing object 'image_encoder'");
    try {
        c.img_size = json_int(ie, "img_size", c.img_size, "image_encoder");
        c.patch_size = json_int(ie, "patch_size", c.patch_size, "image_encoder");
        c.in_chans = json_int(ie, "in_chans", c.in_chans, "image_encoder");
        c.embed_dim = json_int(ie, "embed_dim", c.embed_dim, "image_encoder");
        c.depth = json_int(ie, "depth", c.depth, "image_encoder");
        c.num_heads = json_int(ie, "num_heads", c.num_heads, "image_encoder");
        c.window_size = json_int(ie, "window_size", c.window_size, "image_encoder");
        c.mlp_ratio = json_num(ie, "mlp_ratio", c.mlp_ratio, "image_encoder");
        c.out_chans = json_int(ie, "out_chans", c.out_chans, "image_encoder");
        c.qkv_bias = json_bool(ie, "qkv_bias", c.qkv_bias, "image_encoder");
        c.use_rel_pos = json_bool(ie, "use_rel_pos", c.use_rel_pos, "image_encoder");
        c.use_abs_pos = json_bool(ie, "use_abs_pos", c.use_abs_pos, "image_encoder");
        c.norm_eps = json_num(ie, "norm_eps", c.norm_eps, "image_encoder");
        if (const JsonValue *g = ie->get("global_attn_indexes")) {
            if (g->kind != JsonValue::Array || g->arr.size() > 256)
                throw std::invalid_argument("config field image_encoder.global_attn_indexes must be an array");
            c.global_attn_indexes.clear();
            for (const auto &x : g->arr) {
                if (x.kind != JsonValue::Number || x.num != std::floor(x.num))
                    throw std::invalid_argument("config field image_encoder.global_attn_indexes must hold integers");
                c.global_attn_indexes.push_back((int)x.num);
            }
        }
        const JsonValue *pe = root.get("prompt_encoder");
        c.prompt_embed_dim = json_int(pe, "embed_dim", c.out_chans, "prompt_encoder");
        c.mask_in_chans = json_int(pe, "mask_in_chans", c.mask_in_chans, "prompt_encoder");
        const JsonValue *md = root.get("mask_decoder");
        c.decoder_depth = json_int(md, "transformer_depth", c.decoder_depth, "mask_decoder");
        c.decoder_mlp_dim = json_int(md, "mlp_dim", c.decoder_mlp_dim, "mask_decoder");
        c.decoder_num_heads = json_int(md, "num_heads", c.decoder_num_heads, "mask_decoder");
        c.attention_downsample_rate =
            json_int(md, "attention_downsample_rate", c.attention_downsample_rate, "mask_decoder");
        c.num_multimask_outputs = json_int(md, "num_multimask_outputs", c.num_multimask_outputs, "mask_decoder");
        c.iou_head_depth = json_int(md, "iou_head_depth", c.iou_head_depth, "mask_decoder");
        c.iou_head_hidden_dim = json_int(md, "iou_head_hidden_dim", c.iou_head_hidden_dim, "mask_decoder");
        int td = json_int(md, "transformer_dim", c.prompt_embed_dim, "mask_decoder");
        if (td != c.prompt_embed_dim)
            throw std::invalid_argument("mask_decoder.transformer_dim must equal prompt_encoder.embed_dim");
        json_triple(root, "pixel_mean", c.pixel_mean);
        json_triple(root, "pixel_std", c.pixel_std);
        c.validate();
    } catch (const std::invalid_argument &e) {
        throw std::invalid_argument(path + ": " + e.what());
    }
    return c;
}

SamConfig sam_config_infer(const std::map<std::string, std::vector<int64_t>> &shapes)
{
    auto shape = [&](const std::string &k, size_t rank) -> const std::vector<int64_t> & {
        auto it = shapes.find(k);
        if (it == shapes.end())
            throw std::invalid_argument("cannot infer the SAM architecture: checkpoint has no tensor '" + k + "'");
        if (it->second.size() != rank)
            throw std::invalid_argument("cannot infer the SAM architecture: tensor '" + k + "' has rank " +
                                        std::to_string(it->second.size()) + ", expected " + std::to_string(rank));
        return it->second;
    };
    auto has = [&](const std::string &k) { return shapes.count(k) != 0; };
    SamConfig c;
    const auto &pw = shape("image_encoder.patch_embed.proj.weight", 4);
    c.embed_dim = (int)pw[0];
    c.in_chans = (int)pw[1];
    c.patch_size = (int)pw[2];
    if (has("image_encoder.pos_embed")) {
        const auto &pe = shape("image_encoder.pos_embed", 4);
        c.img_size = (int)pe[1] * c.patch_size;
        c.use_abs_pos = true;
    } else {
        c.use_abs_pos = false;
        c.img_size = 1024;  // nothing says otherwise
    }
    int depth = 0;
    while (has("image_encoder.blocks." + std::to_string(depth) + ".norm1.weight"))
        depth++;
    if (depth == 0)
        throw std::invalid_argument("cannot infer the SAM architecture: checkpoint has no image_encoder.blocks.0.*");
    c.depth = depth;
    const int grid = c.img_size / c.patch_size;
    c.use_rel_pos = has("image_encoder.blocks.0.attn.rel_pos_h");
    c.qkv_bias = has("image_encoder.blocks.0.attn.qkv.bias");
    c.global_attn_indexes.clear();
    if (c.use_rel_pos) {
        int head_dim = (int)shape("image_encoder.blocks.0.attn.rel_pos_h", 2)[1];
        if (head_dim <= 0 || c.embed_dim % head_dim != 0)
            throw std::invalid_argument("cannot infer the SAM architecture: rel_pos head dim " +
                                        std::to_string(head_dim) + " does not divide embed dim " +
                                        std::to_string(c.embed_dim));
        c.num_heads = c.embed_dim / head_dim;
        int window = 0;
        for (int i = 0; i < depth; i++) {
            int64_t L = shape("image_encoder.blocks." + std::to_string(i) + ".attn.rel_pos_h", 2)[0];
            if (L == 2 * grid - 1) {
                c.global_attn_indexes.push_back(i);
            } else {
                window = (int)(L + 1) / 2;
            }
        }
        c.window_size = window;
    } else {
        c.num_heads = c.embed_dim == 768 ? 12 : 16;
        c.window_size = 14;
        c.global_attn_indexes = sam_config_preset(c.embed_dim == 768 ? "vit_b" : c.embed_dim == 1024 ? "vit_l" : "vit_h")
                                    .global_attn_indexes;
    }
    c.mlp_ratio = (double)shape("image_encoder.blocks.0.mlp.lin1.weight", 2)[0] / c.embed_dim;
    c.out_chans = (int)shape("image_encoder.neck.0.weight", 4)[0];
    c.prompt_embed_dim = (int)shape("prompt_encoder.point_embeddings.0.weight", 2)[1];
    c.mask_in_chans = (int)shape("prompt_encoder.mask_downscaling.3.weight", 4)[0];
    int ddepth = 0;
    while (has("mask_decoder.transformer.layers." + std::to_string(ddepth) + ".norm1.weight"))
        ddepth++;
    c.decoder_depth = ddepth;
    c.decoder_mlp_dim = (int)shape("mask_decoder.transformer.layers.0.mlp.lin1.weight", 2)[0];
    int internal = (int)shape("mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight", 2)[0];
    if (internal <= 0 || c.prompt_embed_dim % internal != 0)
        throw std::invalid_argument("cannot infer the SAM architecture: cross-attention width " +
                                    std::to_string(internal) + " does not divide " + std::to_string(c.prompt_embed_dim));
    c.attention_downsample_rate = c.prompt_embed_dim / internal;
    c.num_multimask_outputs = (int)shape("mask_decoder.mask_tokens.weight", 2)[0] - 1;
    int iou_depth = 0;
    while (has("mask_decoder.iou_prediction_head.layers." + std::to_string(iou_depth) + ".weight"))
        iou_depth++;
    c.iou_head_depth = iou_depth;
    c.iou_head_hidden_dim = (int)shape("mask_decoder.iou_prediction_head.layers.0.weight", 2)[0];
    // The decoder's head count (8) is not visible in any shape; SAM and MedSAM both use 8.
    c.decoder_num_heads = 8;

    c.arch = "custom";
    for (const char *name : {"vit_b", "vit_l", "vit_h"}) {
        SamConfig p = sam_config_preset(name);
        if (p.embed_dim == c.embed_dim && p.depth == c.depth && p.img_size == c.img_size &&
            p.global_attn_indexes == c.global_attn_indexes && p.window_size == c.window_size &&
            p.num_heads == c.num_heads)
            c.arch = name;
    }
    c.validate();
    return c;
}

}  // namespace samda
