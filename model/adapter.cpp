// model/adapter.cpp: the SAM-DA decoder adapter: its tensors, the two-way-transformer hooks that run
// it, prompt-free and prompted decoding, labels and windows, and the .safetensors adapter file
// (format "samda-adapter" version 1). See model.h ("Decoder adapter") and docs/adaptation.md.
#include "adapter_internal.h"
#include "safetensors.h"
#include "atomic_file.h"

#include <c10/core/InferenceMode.h>
#include <ATen/core/Generator.h>
#include <ATen/CPUGeneratorImpl.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <set>

namespace samda {

namespace {

const char *const kSiteName[4] = {"self_attn", "token_to_image", "mlp", "image_to_token"};
constexpr unsigned kSiteBit[4] = {SAMDA_ADAPTER_PLACE_SELF_ATTN, SAMDA_ADAPTER_PLACE_TOKEN2IMAGE,
                                  SAMDA_ADAPTER_PLACE_MLP, SAMDA_ADAPTER_PLACE_IMAGE};

void copy_str(char *dst, size_t cap, const std::string &s)
{
    size_t n = std::min(cap - 1, s.size());
    std::memcpy(dst, s.data(), n);
    dst[n] = '\0';
}

bool valid_name(const char *s)
{
    if (!s || !*s)
        return false;
    for (const char *p = s; *p; p++)
        if (!(std::isalnum((unsigned char)*p) || *p == '_' || *p == '-' || *p == '.'))
            return false;
    return true;
}

void check_labels(const samda_adapter_label *labels, size_t n)
{
    if (!labels || n == 0 || n > SAMDA_ADAPTER_MAX_LABELS)
        raise(SAMDA_EINVAL, "an adapter needs 1.." + std::to_string(SAMDA_ADAPTER_MAX_LABELS) + " labels, got " +
                                std::to_string(n));
    std::set<std::string> names;
    std::set<int> values;
    for (size_t i = 0; i < n; i++) {
        const samda_adapter_label &l = labels[i];
        const std::string who = "label " + std::to_string(i);
        if (!memchr(l.name, 0, sizeof l.name) || !valid_name(l.name))
            raise(SAMDA_EINVAL, who + ": name must be 1..63 characters of [A-Za-z0-9_.-]");
        if (!names.insert(l.name).second)
            raise(SAMDA_EINVAL, who + ": duplicate name \"" + std::string(l.name) + "\"");
        if (l.value < 1 || l.value > 255 || !values.insert(l.value).second)
            raise(SAMDA_EINVAL, who + " (" + l.name + "): value " + std::to_string(l.value) +
                                    " must be 1..255 and unique");
        if (!memchr(l.category_scheme, 0, sizeof l.category_scheme) || !memchr(l.category_code, 0, sizeof l.category_code) ||
            !memchr(l.category_meaning, 0, sizeof l.category_meaning) || !memchr(l.type_scheme, 0, sizeof l.type_scheme) ||
            !memchr(l.type_code, 0, sizeof l.type_code) || !memchr(l.type_meaning, 0, sizeof l.type_meaning))
            raise(SAMDA_EINVAL, who + " (" + l.name + "): a code field is not NUL-terminated");
        if (!memchr(l.region_scheme, 0, sizeof l.region_scheme) || !memchr(l.region_code, 0, sizeof l.region_code) ||
            !memchr(l.region_meaning, 0, sizeof l.region_meaning) || !memchr(l.modifier_scheme, 0, sizeof l.modifier_scheme) ||
            !memchr(l.modifier_code, 0, sizeof l.modifier_code) || !memchr(l.modifier_meaning, 0, sizeof l.modifier_meaning))
            raise(SAMDA_EINVAL, who + " (" + l.name + "): a region field is not NUL-terminated");
        if (!memchr(l.type_modifier_scheme, 0, sizeof l.type_modifier_scheme) ||
            !memchr(l.type_modifier_code, 0, sizeof l.type_modifier_code) ||
            !memchr(l.type_modifier_meaning, 0, sizeof l.type_modifier_meaning))
            raise(SAMDA_EINVAL, who + " (" + l.name + "): a type modifier field is not NUL-terminated");
        if ((l.type_modifier_code[0] || l.type_modifier_scheme[0] || l.type_modifier_meaning[0]) &&
            !(l.type_modifier_code[0] && l.type_modifier_scheme[0] && l.type_modifier_meaning[0]))
            raise(SAMDA_EINVAL, who + " (" + l.name + "): a type modifier needs code, scheme and meaning");
        if (!l.region_code[0] && (l.region_scheme[0] || l.region_meaning[0] || l.modifier_code[0]))
            raise(SAMDA_EINVAL, who + " (" + l.name + "): a region modifier or region scheme/meaning without a region code");
        if (l.window_kind == SAMDA_WINDOW_CT) {
            if (!std::isfinite(l.window_a) || !(l.window_b > 0) || !std::isfinite(l.window_b))
                raise(SAMDA_EINVAL, who + " (" + l.name + "): CT window needs a finite level and a width > 0");
        } else if (l.window_kind == SAMDA_WINDOW_MR) {
            if (!(l.window_a >= 0 && l.window_a < l.window_b && l.window_b <= 100))
                raise(SAMDA_EINVAL, who + " (" + l.name + "): MR window needs percentiles 0 <= low < high <= 100");
        } else {
            raise(SAMDA_EINVAL, who + " (" + l.name + "): unknown window kind " + std::to_string((int)l.window_kind));
        }
    }
}

at::Tensor make_param(AdapterNet &m, const std::string &name, at::Tensor init)
{
    std::string key = name;
    std::replace(key.begin(), key.end(), '.', '_');
    at::Tensor t = m.register_parameter(key, std::move(init), true);
    m.named.emplace_back(name, t);
    return t;
}

}  // namespace

std::string json_num(double v)
{
    if (!std::isfinite(v))
        return "null";
    char b[40];
    snprintf(b, sizeof b, "%.9g", v);
    return b;
}

// ---------------------------------------------------------------------------------------------
// The network

AdapterNet::AdapterNet(int dim_, int depth_, int rank_, int n_tokens_, int n_labels_, unsigned placement_,
                       uint64_t seed)
    : dim(dim_), depth(depth_), rank(rank_), n_tokens(n_tokens_), n_labels(n_labels_), placement(0)
{
    down_w.resize(depth * 4), down_b.resize(depth * 4), up_w.resize(depth * 4), up_b.resize(depth * 4);
    place(placement_, seed);
}

// Parts are made in one fixed order (sites, input tokens, block tokens, embedding), so that a seed
// gives the same tensors whichever way an adapter came to its placement.
void AdapterNet::place(unsigned bits, uint64_t seed)
{
    auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
    auto f32 = at::TensorOptions().dtype(at::kFloat);
    const unsigned add = bits & ~placement;
    const bool first = !input_tokens.defined();
    for (int l = 0; l < depth; l++) {
        for (int s = 0; s < 4; s++) {
            if (!(add & kSiteBit[s]))
                continue;
            const std::string p = "layers." + std::to_string(l) + "." + kSiteName[s] + ".";
            const int k = l * 4 + s;
            down_w[k] = make_param(*this, p + "down.weight", at::randn({rank, dim}, gen, f32) / std::sqrt((double)dim));
            down_b[k] = make_param(*this, p + "down.bias", at::zeros({rank}, f32));
            up_w[k] = make_param(*this, p + "up.weight", at::zeros({dim, rank}, f32));  // identity at start
            up_b[k] = make_param(*this, p + "up.bias", at::zeros({dim}, f32));
        }
    }
    if (first)
        input_tokens = make_param(*this, "input_tokens", at::randn({n_labels, n_tokens, dim}, gen, f32) * 0.5);
    if ((add & (SAMDA_ADAPTER_PLACE_TOKENS_SELF | SAMDA_ADAPTER_PLACE_TOKENS_IMAGE)) && block_tokens.empty()) {
        for (int l = 0; l < depth; l++)
            block_tokens.push_back(make_param(*this, "layers." + std::to_string(l) + ".tokens",
                                              at::randn({n_labels + 1, n_tokens, dim}, gen, f32) * 0.1));
        gates = make_param(*this, "gates", at::zeros({depth, 2}, f32));  // zero-init attention gating
    }
    if (add & SAMDA_ADAPTER_PLACE_EMBED) {
        embed_down_w = make_param(*this, "embed.down.weight", at::randn({rank, dim}, gen, f32) / std::sqrt((double)dim));
        embed_down_b = make_param(*this, "embed.down.bias", at::zeros({rank}, f32));
        at::Tensor dw = at::zeros({rank, 1, 3, 3}, f32);
        dw.select(2, 1).select(2, 1).fill_(1.0);  // starts as the identity kernel
        embed_dw = make_param(*this, "embed.dw.weight", dw);
        embed_up_w = make_param(*this, "embed.up.weight", at::zeros({dim, rank}, f32));  // identity at start
        embed_up_b = make_param(*this, "embed.up.bias", at::zeros({dim}, f32));
    }
    placement |= bits;
}

at::Tensor AdapterNet::embed(const at::Tensor &x, int64_t h, int64_t w) const
{
    if (!embed_down_w.defined())
        return x;
    const int64_t B = x.size(0);
    at::Tensor d = at::linear(x, embed_down_w, embed_down_b);                  // B x HW x r
    d = d.transpose(1, 2).reshape({B, rank, h, w});                              // B x r x h x w
    d = at::conv2d(d, embed_dw, {}, 1, 1, 1, rank);                              // depthwise 3 x 3
    d = at::gelu(d.flatten(2).transpose(1, 2));                                  // B x HW x r
    return x + at::linear(d, embed_up_w, embed_up_b);
}

std::shared_ptr<AdapterNet> copy_adapter_net(const AdapterNet &n, at::Device dev)
{
    auto c = std::make_shared<AdapterNet>(n.dim, n.depth, n.rank, n.n_tokens, n.n_labels, n.placement, 1);
    c->to(dev);
    at::NoGradGuard ng;
    std::map<std::string, at::Tensor> by_name(n.named.begin(), n.named.end());
    for (auto &kv : c->named)
        kv.second.copy_(by_name.at(kv.first));
    return c;
}

at::Tensor AdapterNet::bottleneck(int layer, int site, const at::Tensor &x) const
{
    const int k = layer * 4 + site;
    if (layer < 0 || layer >= depth || !down_w[k].defined())
        return x;
    at::Tensor h = at::gelu(at::linear(x, down_w[k], down_b[k]));
    return x + at::linear(h, up_w[k], up_b[k]);
}

namespace {
at::Tensor gather_tokens(const AdapterNet &net, int layer, const at::Tensor &set_idx, int64_t B)
{
    at::Tensor idx = set_idx.numel() == 1 ? set_idx.reshape({1}).expand({B}) : set_idx;
    return net.block_tokens[layer].index_select(0, idx.contiguous());
}
}  // namespace

at::Tensor AdapterHooks::token_sublayer(int layer, TokenSite site, const at::Tensor &out, const at::Tensor &in) const
{
    at::Tensor r = out;
    if (site == SELF_ATTN && (net.placement & SAMDA_ADAPTER_PLACE_TOKENS_SELF) && layer < (int)net.block_tokens.size()) {
        at::Tensor P = gather_tokens(net, layer, set_idx, in.size(0)).to(in.scalar_type());
        at::Tensor branch = tr.layers[layer]->self_attn->forward(in, P, P);
        r = r + net.gates[layer][0] * branch;
    }
    return net.bottleneck(layer, (int)site, r);
}

at::Tensor AdapterHooks::image_sublayer(int layer, const at::Tensor &out, const at::Tensor &in) const
{
    at::Tensor r = out;
    if ((net.placement & SAMDA_ADAPTER_PLACE_TOKENS_IMAGE) && layer < (int)net.block_tokens.size()) {
        at::Tensor P = gather_tokens(net, layer, set_idx, in.size(0)).to(in.scalar_type());
        at::Tensor branch = tr.layers[layer]->cross_attn_image_to_token->forward(in, P, P);
        r = r + net.gates[layer][1] * branch;
    }
    return net.bottleneck(layer, 3, r);
}

std::pair<at::Tensor, at::Tensor> adapter_forward_free(const SamImpl &sam, const AdapterNet &net,
                                                       const at::Tensor &dense_pe, const at::Tensor &emb,
                                                       const at::Tensor &labels)
{
    const int64_t B = labels.size(0);
    at::Tensor sparse = net.input_tokens.index_select(0, labels);
    at::Tensor dense = sam.prompt_encoder->no_mask_embed->weight.reshape({1, -1, 1, 1}).expand(
        {B, -1, dense_pe.size(2), dense_pe.size(3)});
    AdapterHooks hooks(net, *sam.mask_decoder->transformer, labels);
    return sam.mask_decoder->forward(emb, dense_pe, sparse, dense, false, &hooks);
}

std::pair<at::Tensor, at::Tensor> adapter_forward_prompted(const SamImpl &sam, const AdapterNet *net,
                                                           const at::Tensor &dense_pe, const at::Tensor &emb,
                                                           const PromptBatch &pb, int64_t set)
{
    auto se = sam.prompt_encoder->forward(pb);
    if (!net)
        return sam.mask_decoder->forward(emb, dense_pe, se.first, se.second, false, nullptr);
    at::Tensor idx = at::full({1}, set, at::TensorOptions().dtype(at::kLong).device(emb.device()));
    AdapterHooks hooks(*net, *sam.mask_decoder->transformer, idx);
    return sam.mask_decoder->forward(emb, dense_pe, se.first, se.second, false, &hooks);
}

at::Tensor window_values(const samda_adapter_label &l, const at::Tensor &values)
{
    at::Tensor v = values.to(at::kFloat);
    double lo, hi;
    if (l.window_kind == SAMDA_WINDOW_CT) {
        if (!(l.window_b > 0) || !std::isfinite(l.window_a))
            raise(SAMDA_EINVAL, "CT window of label \"" + std::string(l.name) + "\" needs a width > 0");
        lo = l.window_a - l.window_b / 2;
        hi = l.window_a + l.window_b / 2;
    } else if (l.window_kind == SAMDA_WINDOW_MR) {
        if (!(l.window_a >= 0 && l.window_a < l.window_b && l.window_b <= 100))
            raise(SAMDA_EINVAL, "MR window of label \"" + std::string(l.name) + "\" needs 0 <= low < high <= 100");
        at::Tensor flat = v.flatten();
        const int64_t n = flat.numel();
        at::Tensor sorted = std::get<0>(flat.sort());
        auto pick = [&](double pct) {
            int64_t i = std::min<int64_t>(n - 1, std::max<int64_t>(0, (int64_t)std::llround(pct / 100.0 * (double)(n - 1))));
            return sorted[i].item<double>();
        };
        lo = pick(l.window_a);
        hi = pick(l.window_b);
        if (hi <= lo)
            hi = lo + 1;
    } else {
        raise(SAMDA_EINVAL, "unknown window kind");
    }
    return ((v - lo) * (255.0 / (hi - lo))).clamp(0.0, 255.0);
}

void fill_decode_out(const SamConfig &cfg, const samda_embedding *e, const at::Tensor &low_res, const at::Tensor &iou,
                     samda_model_decode_out *out)
{
    const size_t n = (size_t)low_res.size(0), C = (size_t)low_res.size(1);
    const size_t L = (size_t)cfg.low_res_size(), H = (size_t)e->original_h, W = (size_t)e->original_w;
    auto need = [&](const char *what, size_t have, size_t want) {
        if (have < want)
            raise(SAMDA_EINVAL,
                  std::string(what) + " holds " + std::to_string(have) + " elements, needs " + std::to_string(want));
    };
    if (out->low_res_logits)
        need("low_res_logits", out->low_res_len, n * C * L * L);
    if (out->iou)
        need("iou", out->iou_len, n * C);
    if (out->mask_logits)
        need("mask_logits", out->mask_logits_len, n * C * H * W);
    if (out->masks)
        need("masks", out->masks_len, n * C * H * W);
    if (out->low_res_logits) {
        at::Tensor c = low_res.to(at::kCPU, at::kFloat).contiguous();
        std::memcpy(out->low_res_logits, c.data_ptr<float>(), n * C * L * L * sizeof(float));
    }
    if (out->iou) {
        at::Tensor c = iou.to(at::kCPU, at::kFloat).contiguous();
        std::memcpy(out->iou, c.data_ptr<float>(), n * C * sizeof(float));
    }
    if (out->mask_logits || out->masks) {
        for (size_t s = 0; s < n; s += 8) {
            const size_t b = std::min<size_t>(8, n - s);
            at::Tensor full = postprocess_masks(low_res.slice(0, (int64_t)s, (int64_t)(s + b)).to(at::kFloat),
                                                cfg.img_size, e->input_h, e->input_w, e->original_h, e->original_w);
            const size_t count = b * C * H * W;
            if (out->mask_logits) {
                at::Tensor c = full.to(at::kCPU).contiguous();
                std::memcpy(out->mask_logits + s * C * H * W, c.data_ptr<float>(), count * sizeof(float));
            }
            if (out->masks) {
                at::Tensor c = full.gt(0.0).to(at::kByte).to(at::kCPU).contiguous();
                std::memcpy(out->masks + s * C * H * W, c.data_ptr<uint8_t>(), count);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Labels as JSON

std::string labels_json(const std::vector<samda_adapter_label> &labels)
{
    using safetensors::json_quote;
    std::string o = "[";
    for (size_t i = 0; i < labels.size(); i++) {
        const samda_adapter_label &l = labels[i];
        o += i ? "," : "";
        o += "{\"name\":" + json_quote(l.name) + ",\"value\":" + std::to_string(l.value);
        o += ",\"category\":{\"scheme\":" + json_quote(l.category_scheme) + ",\"code\":" + json_quote(l.category_code) +
             ",\"meaning\":" + json_quote(l.category_meaning) + "}";
        o += ",\"type\":{\"scheme\":" + json_quote(l.type_scheme) + ",\"code\":" + json_quote(l.type_code) +
             ",\"meaning\":" + json_quote(l.type_meaning) + "}";
        if (l.type_modifier_code[0]) /* optional, like region */
            o += ",\"type_modifier\":{\"scheme\":" + json_quote(l.type_modifier_scheme) + ",\"code\":" +
                 json_quote(l.type_modifier_code) + ",\"meaning\":" + json_quote(l.type_modifier_meaning) + "}";
        o += ",\"rgb\":[" + std::to_string(l.rgb[0]) + "," + std::to_string(l.rgb[1]) + "," + std::to_string(l.rgb[2]) + "]";
        if (l.window_kind == SAMDA_WINDOW_CT)
            o += ",\"window\":{\"kind\":\"ct\",\"level\":" + json_num(l.window_a) + ",\"width\":" + json_num(l.window_b) + "}";
        else
            o += ",\"window\":{\"kind\":\"mr\",\"low_percentile\":" + json_num(l.window_a) +
                 ",\"high_percentile\":" + json_num(l.window_b) + "}";
        if (l.region_code[0]) { /* optional: written only when present, so older files stay as they were */
            o += ",\"region\":{\"scheme\":" + json_quote(l.region_scheme) + ",\"code\":" + json_quote(l.region_code) +
                 ",\"meaning\":" + json_quote(l.region_meaning);
            if (l.modifier_code[0])
                o += ",\"modifier\":{\"scheme\":" + json_quote(l.modifier_scheme) + ",\"code\":" +
                     json_quote(l.modifier_code) + ",\"meaning\":" + json_quote(l.modifier_meaning) + "}";
            o += "}";
        }
        o += "}";
    }
    return o + "]";
}

namespace {

/* Members of a label object; `who` is the path of the object ("labels[2] (liver).category"). */
std::string jstr(const JsonValue *o, const char *key, const std::string &who)
{
    const JsonValue *v = o ? o->get(key) : nullptr;
    if (!v || v->kind != JsonValue::String)
        raise(SAMDA_EINVAL, who + "." + key + ": missing or not a string");
    return v->str;
}

double jnum(const JsonValue *o, const char *key, const std::string &who)
{
    const JsonValue *v = o ? o->get(key) : nullptr;
    if (!v || v->kind != JsonValue::Number)
        raise(SAMDA_EINVAL, who + "." + key + ": missing or not a number");
    return v->num;
}

void set_field(char *dst, size_t cap, const std::string &s, const std::string &who)
{
    if (s.size() >= cap || s.find('\0') != std::string::npos)
        raise(SAMDA_EINVAL, who + ": \"" + s.substr(0, 40) + "\" is longer than " + std::to_string(cap - 1) + " bytes");
    copy_str(dst, cap, s);
}

/* A coded concept {scheme, code, meaning} at o.key into the three fields; every member required. */
void set_code(const JsonValue *o, const std::string &who, char *scheme, size_t ns, char *code, size_t nc,
              char *meaning, size_t nm)
{
    if (!o || o->kind != JsonValue::Object)
        raise(SAMDA_EINVAL, who + ": missing or not an object {scheme, code, meaning}");
    set_field(scheme, ns, jstr(o, "scheme", who), who + ".scheme");
    set_field(code, nc, jstr(o, "code", who), who + ".code");
    set_field(meaning, nm, jstr(o, "meaning", who), who + ".meaning");
    if (!*scheme || !*code || !*meaning)
        raise(SAMDA_EINVAL, who + ": scheme, code and meaning must not be empty");
}

#define CODE_FIELDS(l, f) l.f##_scheme, sizeof l.f##_scheme, l.f##_code, sizeof l.f##_code, l.f##_meaning, sizeof l.f##_meaning

samda_adapter_label parse_label(const JsonValue &j, size_t i)
{
    std::string who = "labels[" + std::to_string(i) + "]";
    if (j.kind != JsonValue::Object)
        raise(SAMDA_EINVAL, who + ": not an object");
    samda_adapter_label l{};
    set_field(l.name, sizeof l.name, jstr(&j, "name", who), who + ".name");
    who += " (" + std::string(l.name) + ")";
    double v = jnum(&j, "value", who);
    if (v != std::floor(v) || v < 1 || v > 255)
        raise(SAMDA_EINVAL, who + ".value: must be an integer 1..255");
    l.value = (int)v;
    set_code(j.get("category"), who + ".category", CODE_FIELDS(l, category));
    set_code(j.get("type"), who + ".type", CODE_FIELDS(l, type));
    if (const JsonValue *tm = j.get("type_modifier")) /* optional: laterality and the like */
        set_code(tm, who + ".type_modifier", CODE_FIELDS(l, type_modifier));
    const JsonValue *rgb = j.get("rgb");
    if (!rgb || rgb->kind != JsonValue::Array || rgb->arr.size() != 3)
        raise(SAMDA_EINVAL, who + ".rgb: must be an array of 3 numbers");
    for (int k = 0; k < 3; k++) {
        const JsonValue &c = rgb->arr[k];
        if (c.kind != JsonValue::Number || c.num != std::floor(c.num) || c.num < 0 || c.num > 255)
            raise(SAMDA_EINVAL, who + ".rgb[" + std::to_string(k) + "]: must be an integer 0..255");
        l.rgb[k] = (uint8_t)c.num;
    }
    const JsonValue *w = j.get("window");
    const std::string kind = jstr(w, "kind", who + ".window");
    if (kind == "ct") {
        l.window_kind = SAMDA_WINDOW_CT;
        l.window_a = jnum(w, "level", who + ".window");
        l.window_b = jnum(w, "width", who + ".window");
    } else if (kind == "mr") {
        l.window_kind = SAMDA_WINDOW_MR;
        l.window_a = jnum(w, "low_percentile", who + ".window");
        l.window_b = jnum(w, "high_percentile", who + ".window");
    } else {
        raise(SAMDA_EINVAL, who + ".window.kind: \"" + kind.substr(0, 40) + "\" (expected ct or mr)");
    }
    if (const JsonValue *r = j.get("region")) { /* optional (older adapter files have none) */
        set_code(r, who + ".region", CODE_FIELDS(l, region));
        if (const JsonValue *m = r->get("modifier"))
            set_code(m, who + ".region.modifier", CODE_FIELDS(l, modifier));
    }
    return l;
}

#undef CODE_FIELDS

std::vector<samda_adapter_label> parse_labels(const std::string &text)
{
    JsonValue root;
    try {
        root = json_parse(text);
    } catch (const std::exception &e) {
        raise(SAMDA_EINVAL, std::string("labels are not valid JSON: ") + e.what());
    }
    if (root.kind != JsonValue::Array)
        raise(SAMDA_EINVAL, "labels are not a JSON array of label objects");
    if (root.arr.empty() || root.arr.size() > SAMDA_ADAPTER_MAX_LABELS)
        raise(SAMDA_EINVAL, "1.." + std::to_string(SAMDA_ADAPTER_MAX_LABELS) + " labels are needed, got " +
                                std::to_string(root.arr.size()));
    std::vector<samda_adapter_label> out;
    for (size_t i = 0; i < root.arr.size(); i++)
        out.push_back(parse_label(root.arr[i], i));
    check_labels(out.data(), out.size());
    return out;
}

int config_int(const JsonValue &c, const char *key, int lo, int hi)
{
    double v = jnum(&c, key, "config metadata");
    if (v != std::floor(v) || v < lo || v > hi)
        raise(SAMDA_EINVAL, std::string("config metadata: \"") + key + "\" = " + json_num(v) + " outside " +
                                std::to_string(lo) + ".." + std::to_string(hi));
    return (int)v;
}

std::unique_ptr<samda_adapter> make_adapter(const samda_model *m, int rank, int n_tokens, unsigned placement,
                                            const std::vector<samda_adapter_label> &labels, uint64_t seed)
{
    const SamImpl &sam = model_network(m);
    const SamConfig &cfg = sam.cfg;
    if (rank < 1 || rank > 256)
        raise(SAMDA_EINVAL, "rank " + std::to_string(rank) + " outside 1..256");
    if (n_tokens < 1 || n_tokens > 64)
        raise(SAMDA_EINVAL, "n_tokens " + std::to_string(n_tokens) + " outside 1..64");
    if (placement & ~SAMDA_ADAPTER_PLACE_ALL)
        raise(SAMDA_EINVAL, "unknown placement bits");
    check_labels(labels.data(), labels.size());
    auto a = std::make_unique<samda_adapter>();
    a->net = std::make_shared<AdapterNet>(cfg.prompt_embed_dim, cfg.decoder_depth, rank, n_tokens, (int)labels.size(),
                                          placement, seed);
    a->net->to(model_device(m));
    a->labels = labels;
    a->base_fp = samda_model_fingerprint(m);
    samda_model_info info;
    samda_model_get_info(m, &info, nullptr);
    a->base_params = info.n_params_total;
    a->cfg = cfg;
    {
        at::NoGradGuard ng;
        a->dense_pe = sam.prompt_encoder->dense_pe().detach().clone();
    }
    return a;
}

std::vector<uint8_t> read_file(const std::string &path)
{
    struct stat st;
    if (stat(path.c_str(), &st) != 0)
        raise(SAMDA_ENOENT, "adapter file " + path + " not found");
    if (!S_ISREG(st.st_mode))
        raise(SAMDA_EINVAL, path + " is not a regular file");
    if (st.st_size > (off_t)1 << 30)
        raise(SAMDA_EINVAL, path + " is larger than 1 GiB (not an adapter)");
    FILE *f = fopen(path.c_str(), "rb");
    if (!f)
        raise(SAMDA_EIO, "cannot open " + path + ": " + strerror(errno));
    std::vector<uint8_t> buf((size_t)st.st_size);
    size_t got = buf.empty() ? 0 : fread(buf.data(), 1, buf.size(), f);
    fclose(f);
    if (got != buf.size())
        raise(SAMDA_EIO, "short read on " + path);
    return buf;
}

void write_file_atomic(const std::string &path, const std::vector<uint8_t> &bytes)
{
    samda_afile f;
    samda_error e;
    samda_status st = samda_afile_open(&f, path.c_str(), 0, &e);
    if (st == SAMDA_OK && (st = samda_afile_write(&f, bytes.data(), bytes.size(), &e)) != SAMDA_OK)
        samda_afile_abort(&f);
    else if (st == SAMDA_OK)
        st = samda_afile_commit(&f, &e);
    if (st != SAMDA_OK) raise(st, e.message);
}

std::string config_json(const AdapterNet &n)
{
    return "{\"dim\":" + std::to_string(n.dim) + ",\"depth\":" + std::to_string(n.depth) + ",\"rank\":" +
           std::to_string(n.rank) + ",\"n_tokens\":" + std::to_string(n.n_tokens) + ",\"placement\":" +
           std::to_string(n.placement) + "}";
}

}  // namespace
}  // namespace samda

using namespace samda;

extern "C" {

void samda_adapter_params_init(samda_adapter_params *p)
{
    if (!p)
        return;
    std::memset(p, 0, sizeof *p);
    p->rank = 16;
    p->n_tokens = 4;
    p->placement = SAMDA_ADAPTER_PLACE_ALL;
    p->seed = 1;
}

samda_status samda_adapter_labels_parse(const char *text, size_t len, const char *source, samda_adapter_label **out,
                                        size_t *n_out, samda_error *err)
{
    const std::string where = source && *source ? source : "label schema";
    if (out)
        *out = nullptr;
    if (n_out)
        *n_out = 0;
    return guard_status(where.c_str(), err, [&]() {
        if (!text || !out || !n_out)
            raise(SAMDA_EINVAL, "text, out or n_out is NULL");
        std::vector<samda_adapter_label> labels = parse_labels(std::string(text, len));
        auto *p = static_cast<samda_adapter_label *>(std::calloc(labels.size(), sizeof(samda_adapter_label)));
        if (!p)
            throw std::bad_alloc();
        std::memcpy(p, labels.data(), labels.size() * sizeof *p);
        *out = p;
        *n_out = labels.size();
        return SAMDA_OK;
    });
}

char *samda_adapter_labels_json(const samda_adapter_label *labels, size_t n, samda_error *err)
{
    char *res = nullptr;
    guard_status("writing a label schema", err, [&]() {
        check_labels(labels, n);
        const std::string s = labels_json(std::vector<samda_adapter_label>(labels, labels + n));
        if (!(res = strdup(s.c_str())))
            throw std::bad_alloc();
        return SAMDA_OK;
    });
    return res;
}

samda_adapter *samda_adapter_new(const samda_model *m, const samda_adapter_params *p, samda_error *err)
{
    samda_adapter *res = nullptr;
    guard_status("creating decoder adapter", err, [&]() {
        if (!m || !p)
            raise(SAMDA_EINVAL, "model or params is NULL");
        check_labels(p->labels, p->n_labels);
        std::vector<samda_adapter_label> labels(p->labels, p->labels + p->n_labels);
        auto a = make_adapter(m, p->rank, p->n_tokens, p->placement, labels, p->seed);
        a->meta["format"] = "samda-adapter";
        a->meta["format_version"] = "1";
        a->meta["labels"] = labels_json(labels); /* as a loaded adapter has it, before the first save */
        res = a.release();
        return SAMDA_OK;
    });
    return res;
}

samda_adapter *samda_adapter_load(const samda_model *m, const char *path, samda_error *err)
{
    samda_adapter *res = nullptr;
    guard_status("loading decoder adapter", err, [&]() {
        if (!m || !path)
            raise(SAMDA_EINVAL, "model or path is NULL");
        const std::string where = path;
        std::vector<uint8_t> bytes = read_file(where);
        safetensors::File f;
        try {
            f = safetensors::parse(bytes.data(), bytes.size());
        } catch (const safetensors::Error &e) {
            raise(SAMDA_EINVAL, where + ": " + e.what());
        }
        auto meta = [&](const char *k) -> const std::string & {
            auto it = f.metadata.find(k);
            if (it == f.metadata.end())
                raise(SAMDA_EINVAL, where + ": metadata has no \"" + k + "\" (not a samda adapter?)");
            return it->second;
        };
        if (meta("format") != "samda-adapter")
            raise(SAMDA_EINVAL, where + ": format \"" + meta("format") + "\" is not samda-adapter");
        if (meta("format_version") != "1")
            raise(SAMDA_EINVAL, where + ": format version " + meta("format_version") + " not supported (this build reads 1)");
        try {
            safetensors::verify_payload(f);
        } catch (const safetensors::Error &e) {
            raise(SAMDA_EINVAL, where + ": " + e.what());
        }
        const std::string &fp = meta("base_fingerprint");
        if (fp != samda_model_fingerprint(m))
            raise(SAMDA_EMODEL, where + " was trained for base model " + fp + ", but the loaded model is " +
                                    samda_model_fingerprint(m) + " (load the adapter's own base checkpoint)");
        JsonValue cfg;
        try {
            cfg = json_parse(meta("config"));
        } catch (const std::exception &e) {
            raise(SAMDA_EINVAL, where + ": config metadata is not valid JSON: " + e.what());
        }
        if (cfg.kind != JsonValue::Object)
            raise(SAMDA_EINVAL, where + ": config metadata is not an object");
        const SamConfig &sc = model_network(m).cfg;
        const int dim = config_int(cfg, "dim", 1, 4096), depth = config_int(cfg, "depth", 1, 64);
        if (dim != sc.prompt_embed_dim || depth != sc.decoder_depth)
            raise(SAMDA_EINVAL, where + ": adapter for a decoder of width " + std::to_string(dim) + " and depth " +
                                    std::to_string(depth) + " does not fit this model");
        const int rank = config_int(cfg, "rank", 1, 256), tokens = config_int(cfg, "n_tokens", 1, 64);
        const unsigned placement = (unsigned)config_int(cfg, "placement", 0, (int)SAMDA_ADAPTER_PLACE_ALL);
        std::vector<samda_adapter_label> labels;
        try {
            labels = parse_labels(meta("labels"));
        } catch (const Failure &e) {
            raise(SAMDA_EINVAL, where + ": " + e.what());
        }
        auto a = make_adapter(m, rank, tokens, placement, labels, 1);
        std::set<std::string> used;
        {
            at::NoGradGuard ng;
            for (auto &kv : a->net->named) {
                const safetensors::TensorInfo *t = f.find(kv.first);
                if (!t)
                    raise(SAMDA_EINVAL, where + ": tensor \"" + kv.first + "\" is missing");
                used.insert(kv.first);
                if (t->shape != kv.second.sizes().vec())
                    raise(SAMDA_EINVAL, where + ": tensor \"" + kv.first + "\" has the wrong shape");
                at::ScalarType st;
                switch (t->dtype) {
                case safetensors::DType::F32: st = at::kFloat; break;
                case safetensors::DType::F16: st = at::kHalf; break;
                case safetensors::DType::BF16: st = at::kBFloat16; break;
                default: raise(SAMDA_EINVAL, where + ": tensor \"" + kv.first + "\" is not floating point");
                }
                at::Tensor src = at::from_blob(const_cast<uint8_t *>(f.payload + t->begin), t->shape,
                                               at::TensorOptions().dtype(st));
                if (!at::isfinite(src.to(at::kFloat)).all().item<bool>())
                    raise(SAMDA_EINVAL, where + ": tensor \"" + kv.first + "\" holds NaN or infinity");
                kv.second.copy_(src);
            }
        }
        for (const auto &t : f.tensors)
            if (!used.count(t.name))
                raise(SAMDA_EINVAL, where + ": unexpected tensor \"" + t.name + "\"");
        a->meta = f.metadata;
        a->version = f.metadata["payload_sha256"].substr(0, 16);
        auto pit = f.metadata.find("parent");
        a->parent = pit == f.metadata.end() ? "" : pit->second.substr(0, 16);
        a->meta["version"] = a->version;
        res = a.release();
        return SAMDA_OK;
    });
    return res;
}

samda_status samda_adapter_save(const samda_adapter *a, const char *path, samda_error *err)
{
    return guard_status("saving decoder adapter", err, [&]() {
        if (!a || !path || !*path)
            raise(SAMDA_EINVAL, "adapter or path is NULL");
        std::map<std::string, std::string> meta;
        for (const auto &kv : a->meta)
            if (kv.first != "payload_sha256" && kv.first != "version")
                meta[kv.first] = kv.second;
        meta["format"] = "samda-adapter";
        meta["format_version"] = "1";
        meta["base_fingerprint"] = a->base_fp;
        meta["config"] = config_json(*a->net);
        meta["labels"] = labels_json(a->labels);
        meta["input"] = std::string("{\"img_size\":") + std::to_string(a->cfg.img_size) +
                        ",\"pixel_range\":[0,255],\"windows\":\"per label (labels[].window)\"}";
        if (!a->parent.empty())
            meta["parent"] = a->parent;
        std::vector<at::Tensor> keep;
        std::vector<safetensors::OutTensor> out;
        for (const auto &kv : a->net->named) {
            at::Tensor c = kv.second.detach().to(at::kCPU, at::kFloat).contiguous();
            keep.push_back(c);
            safetensors::OutTensor t;
            t.name = kv.first;
            t.dtype = safetensors::DType::F32;
            t.shape = c.sizes().vec();
            t.data = c.data_ptr();
            t.nbytes = (size_t)c.numel() * 4;
            out.push_back(t);
        }
        write_file_atomic(path, safetensors::serialize(meta, out));
        return SAMDA_OK;
    });
}

samda_adapter *samda_adapter_clone(const samda_adapter *a, samda_error *err)
{
    samda_adapter *res = nullptr;
    guard_status("copying decoder adapter", err, [&]() {
        if (!a)
            raise(SAMDA_EINVAL, "adapter is NULL");
        auto c = std::make_unique<samda_adapter>(*a);
        c->net = copy_adapter_net(*a->net, a->dense_pe.device());
        res = c.release();
        return SAMDA_OK;
    });
    return res;
}

samda_status samda_adapter_extend(samda_adapter *a, unsigned placement, samda_error *err)
{
    return guard_status("extending decoder adapter", err, [&]() {
        if (!a)
            raise(SAMDA_EINVAL, "adapter is NULL");
        if (placement & ~SAMDA_ADAPTER_PLACE_ALL)
            raise(SAMDA_EINVAL, "unknown placement bits (known: SAMDA_ADAPTER_PLACE_ALL = 0x7F)");
        if ((placement & ~a->net->placement) == 0)
            return SAMDA_OK;
        a->net->place(placement, 2);
        a->net->to(a->dense_pe.device());
        return SAMDA_OK;
    });
}

void samda_adapter_free(samda_adapter *a)
{
    try {
        delete a;
    } catch (...) {
    }
}

samda_status samda_adapter_get_info(const samda_adapter *a, samda_adapter_info *out, samda_error *err)
{
    if (!a || !out)
        return samda_fail(err, SAMDA_EINVAL, "describing decoder adapter: adapter or out is NULL");
    std::memset(out, 0, sizeof *out);
    out->rank = a->net->rank;
    out->n_tokens = a->net->n_tokens;
    out->depth = a->net->depth;
    out->dim = a->net->dim;
    out->placement = a->net->placement;
    out->n_labels = a->labels.size();
    out->n_trainable = count_params(*a->net);
    out->fraction_of_vit_b = (double)out->n_trainable / (double)SAMDA_ADAPTER_VIT_B_PARAMS;
    out->fraction_of_base = a->base_params ? (double)out->n_trainable / (double)a->base_params : 0.0;
    copy_str(out->base_fingerprint, sizeof out->base_fingerprint, a->base_fp);
    copy_str(out->version, sizeof out->version, a->version);
    copy_str(out->parent, sizeof out->parent, a->parent);
    return SAMDA_OK;
}

const samda_adapter_label *samda_adapter_label_at(const samda_adapter *a, size_t i)
{
    return a && i < a->labels.size() ? &a->labels[i] : nullptr;
}

const char *samda_adapter_metadata(const samda_adapter *a, const char *key)
{
    if (!a || !key)
        return nullptr;
    auto it = a->meta.find(key);
    return it == a->meta.end() ? nullptr : it->second.c_str();
}

samda_status samda_adapter_window(const samda_adapter_label *label, const float *values, size_t n, float *out,
                                  samda_error *err)
{
    return guard_status("windowing an image", err, [&]() {
        if (!label || !values || !out || n == 0)
            raise(SAMDA_EINVAL, "label, values or out is NULL, or n is 0");
        at::Tensor v = at::from_blob(const_cast<float *>(values), {(int64_t)n}, at::kFloat);
        at::Tensor w = window_values(*label, v).contiguous();
        std::memcpy(out, w.data_ptr<float>(), n * sizeof(float));
        return SAMDA_OK;
    });
}

samda_status samda_adapter_decode_labels(const samda_model *m, const samda_adapter *a, const samda_embedding *e,
                                         const size_t *labels, size_t n, samda_model_decode_out *out,
                                         samda_error *err)
{
    return guard_status("decoding labels with the adapter", err, [&]() {
        if (!m || !a || !e || !labels || !out || n == 0)
            raise(SAMDA_EINVAL, "model, adapter, embedding, labels or out is NULL, or n is 0");
        if (a->base_fp != samda_model_fingerprint(m))
            raise(SAMDA_EINVAL, "adapter belongs to another model");
        if (e->fingerprint != a->base_fp)
            raise(SAMDA_EINVAL, "embedding was made by another model");
        std::vector<int64_t> idx(n);
        for (size_t i = 0; i < n; i++) {
            if (labels[i] >= a->labels.size())
                raise(SAMDA_EINVAL, "label index " + std::to_string(labels[i]) + " outside 0.." +
                                        std::to_string(a->labels.size() - 1));
            idx[i] = (int64_t)labels[i];
        }
        c10::InferenceMode guard;
        const SamImpl &sam = model_network(m);
        at::Tensor li = at::tensor(idx, at::TensorOptions().dtype(at::kLong)).to(e->data.device());
        auto r = adapter_forward_free(sam, *a->net, a->dense_pe, e->data, li);
        fill_decode_out(sam.cfg, e, r.first, r.second, out);
        return SAMDA_OK;
    });
}

samda_status samda_adapter_decode(const samda_model *m, const samda_adapter *a, const samda_embedding *e,
                                  const samda_model_prompt *prompts, size_t n_prompts, unsigned flags, int label,
                                  samda_model_decode_out *out, samda_error *err)
{
    return guard_status("decoding prompts with the adapter", err, [&]() {
        if (!m || !a || !e || !prompts || !out || n_prompts == 0)
            raise(SAMDA_EINVAL, "model, adapter, embedding, prompts or out is NULL, or no prompts");
        if (flags & ~SAMDA_MODEL_DECODE_MULTIMASK)
            raise(SAMDA_EINVAL, "unknown flags");
        if (a->base_fp != samda_model_fingerprint(m))
            raise(SAMDA_EINVAL, "adapter belongs to another model");
        if (label < -1 || label >= (int)a->labels.size())
            raise(SAMDA_EINVAL, "label " + std::to_string(label) + " outside -1.." + std::to_string(a->labels.size() - 1));
        const int64_t set = label < 0 ? (int64_t)a->labels.size() : label;
        c10::InferenceMode guard;
        at::Tensor idx = at::full({1}, set, at::TensorOptions().dtype(at::kLong).device(e->data.device()));
        AdapterHooks hooks(*a->net, *model_network(m).mask_decoder->transformer, idx);
        DecodeResult r = decode_prompts(m, e, prompts, n_prompts, (flags & SAMDA_MODEL_DECODE_MULTIMASK) != 0, &hooks);
        fill_decode_out(model_network(m).cfg, e, r.low_res, r.iou, out);
        return SAMDA_OK;
    });
}

}  // extern "C"
