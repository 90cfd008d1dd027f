// model/sam_weights.cpp: the whole SAM network, and its weights: copying a state dict in by
// official name (with key and shape checks), deterministic random weights, parameter counts and
// the fingerprint that identifies a checkpoint.
#include "internal.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <set>
#include <sstream>
#include <stdexcept>

namespace samda {

SamImpl::SamImpl(const SamConfig &c) : cfg(c)
{
    c.validate();
    image_encoder = register_module("image_encoder", std::make_shared<ImageEncoderImpl>(c));
    prompt_encoder = register_module("prompt_encoder", std::make_shared<PromptEncoderImpl>(c));
    mask_decoder = register_module("mask_decoder", std::make_shared<MaskDecoderImpl>(c));
}

namespace {

std::string shape_str(at::IntArrayRef s)
{
    std::ostringstream o;
    o << "[";
    for (size_t i = 0; i < s.size(); i++)
        o << (i ? ", " : "") << s[i];
    o << "]";
    return o.str();
}

/** Every parameter and buffer of the network by its dotted name. */
std::vector<std::pair<std::string, at::Tensor>> all_tensors(torch::nn::Module &m)
{
    std::vector<std::pair<std::string, at::Tensor>> out;
    for (const auto &p : m.named_parameters(true))
        out.emplace_back(p.key(), p.value());
    for (const auto &b : m.named_buffers(true))
        out.emplace_back(b.key(), b.value());
    return out;
}

bool tolerated_extra(const std::string &k) { return k == "pixel_mean" || k == "pixel_std"; }

}  // namespace

void sam_load_state(SamImpl &sam, const std::vector<std::pair<std::string, at::Tensor>> &state)
{
    std::map<std::string, const at::Tensor *> given;
    for (const auto &kv : state) {
        if (!given.emplace(kv.first, &kv.second).second)
            throw std::invalid_argument("checkpoint has the key '" + kv.first + "' twice");
    }
    auto targets = all_tensors(sam);
    std::vector<std::string> missing, wrong_shape, unexpected;
    std::set<std::string> used;
    for (auto &t : targets) {
        auto it = given.find(t.first);
        if (it == given.end()) {
            missing.push_back(t.first);
            continue;
        }
        used.insert(t.first);
        if (!it->second->defined() || it->second->sizes() != t.second.sizes()) {
            wrong_shape.push_back(t.first + " (checkpoint " +
                                  (it->second->defined() ? shape_str(it->second->sizes()) : std::string("undefined")) +
                                  ", model " + shape_str(t.second.sizes()) + ")");
        }
    }
    for (const auto &kv : given)
        if (!used.count(kv.first) && !tolerated_extra(kv.first))
            unexpected.push_back(kv.first);
    if (!missing.empty() || !wrong_shape.empty() || !unexpected.empty()) {
        std::ostringstream o;
        o << "checkpoint does not match the " << sam.cfg.arch << " network:";
        if (!wrong_shape.empty())
            o << " wrong shape for " << wrong_shape.front() << ";";
        if (!missing.empty())
            o << " missing key '" << missing.front() << "'" << (missing.size() > 1 ? " (+" + std::to_string(missing.size() - 1) + " more)" : "") << ";";
        if (!unexpected.empty())
            o << " unexpected key '" << unexpected.front() << "'" << (unexpected.size() > 1 ? " (+" + std::to_string(unexpected.size() - 1) + " more)" : "") << ";";
        o << " (is the arch right? try arch \"auto\")";
        throw std::invalid_argument(o.str());
    }
    at::NoGradGuard no_grad;
    for (auto &t : targets) {
        const at::Tensor &src = *given[t.first];
        if (!src.is_floating_point())
            throw std::invalid_argument("checkpoint tensor '" + t.first + "' is not floating point (" +
                                        std::string(c10::toString(src.scalar_type())) + ")");
        t.second.copy_(src);  // converts float16/bfloat16 checkpoints to the float32 network
    }
}

void sam_init_random(SamImpl &sam, uint64_t seed)
{
    at::NoGradGuard no_grad;
    auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
    auto targets = all_tensors(sam);
    std::sort(targets.begin(), targets.end(),
              [](const std::pair<std::string, at::Tensor> &a, const std::pair<std::string, at::Tensor> &b) {
                  return a.first < b.first;
              });
    for (auto &t : targets) {
        at::Tensor &x = t.second;
        const std::string &k = t.first;
        at::Tensor r = at::randn(x.sizes(), gen, at::TensorOptions().dtype(at::kFloat));
        const bool is_bias = k.size() >= 5 && k.compare(k.size() - 5, 5, ".bias") == 0;
        if (k.find("positional_encoding_gaussian_matrix") != std::string::npos) {
            x.copy_(r);
        } else if (x.dim() == 1) {
            x.copy_(is_bias ? r * 0.02 : r * 0.1 + 1.0);  // biases near 0, norm scales near 1
        } else {
            const double fan_in = (double)(x.numel() / x.size(0));
            x.copy_(r / std::sqrt(std::max(fan_in, 1.0)));
        }
    }
}

int64_t count_params(const torch::nn::Module &m)
{
    int64_t n = 0;
    for (const auto &p : m.parameters(true))
        n += p.numel();
    return n;
}

std::string state_fingerprint(const std::vector<std::pair<std::string, at::Tensor>> &state)
{
    std::vector<size_t> order(state.size());
    for (size_t i = 0; i < order.size(); i++)
        order[i] = i;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return state[a].first < state[b].first; });
    Sha256 sha;
    for (size_t i : order) {
        const std::string &name = state[i].first;
        at::Tensor t = state[i].second.contiguous().cpu();
        std::string head = name + "|" + c10::toString(t.scalar_type()) + "|" + shape_str(t.sizes()) + "|";
        sha.update(head.data(), head.size());
        sha.update(t.data_ptr(), (size_t)t.numel() * t.element_size());
    }
    return sha.hex_digest();
}

}  // namespace samda
