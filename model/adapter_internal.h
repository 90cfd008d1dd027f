// model/adapter_internal.h: C++ side of the decoder adapter, shared by adapter.cpp and train.cpp.
// Never installed; C code uses model/model.h.
#ifndef SAMDA_MODEL_ADAPTER_INTERNAL_H
#define SAMDA_MODEL_ADAPTER_INTERNAL_H

#include "internal.h"

#include <c10/util/Exception.h>

#include <cstdio>
#include <map>
#include <new>
#include <string>
#include <vector>

namespace samda {

/** The adapter's tensors. Bottleneck k = layer * 4 + site (0 self-attention, 1 token->image,
 *  2 MLP, 3 image->token); undefined where not placed. Parameter names (also the file's tensor
 *  names): "layers.{l}.{site}.down.weight" .. "up.bias", "input_tokens", "layers.{l}.tokens",
 *  "gates". */
struct AdapterNet : torch::nn::Module {
    AdapterNet(int dim, int depth, int rank, int n_tokens, int n_labels, unsigned placement, uint64_t seed);
    /** Adds the parts of placement bits not yet present, freshly initialised (identity). */
    void place(unsigned bits, uint64_t seed);
    int dim, depth, rank, n_tokens, n_labels;
    unsigned placement;
    std::vector<at::Tensor> down_w, down_b, up_w, up_b;  // depth * 4
    at::Tensor input_tokens;                              // n_labels x T x dim
    std::vector<at::Tensor> block_tokens;                 // per layer: (n_labels + 1) x T x dim
    at::Tensor gates;                                     // depth x 2 (tokens in self-attn, in image attn)
    at::Tensor embed_down_w, embed_down_b, embed_dw, embed_up_w, embed_up_b;  // PLACE_EMBED
    /** Every tensor under its file name, in registration order (libtorch names may not hold dots). */
    std::vector<std::pair<std::string, at::Tensor>> named;
    /** x + up(gelu(down(x))) at bottleneck (layer, site); x itself when not placed. */
    at::Tensor bottleneck(int layer, int site, const at::Tensor &x) const;
    /** x + up(gelu(dwconv3x3(down(x)))) on image tokens (B x HW x C, h x w) at the decoder's input:
     *  the depthwise 3 x 3 convolution lets it see each token's neighbours; x when not placed. */
    at::Tensor embed(const at::Tensor &x, int64_t h, int64_t w) const;
};

/** A copy of n (same parts and values, matched by name) on dev, for teachers and clones. */
std::shared_ptr<AdapterNet> copy_adapter_net(const AdapterNet &n, at::Device dev);

/** Hooks that run an adapter inside the two-way transformer. set_idx (B, long, on the device)
 *  selects each batch row's token set (0..n_labels; n_labels = the prompted set). */
struct AdapterHooks : TwoWayHooks {
    AdapterHooks(const AdapterNet &n, const TwoWayTransformerImpl &t, at::Tensor idx)
        : net(n), tr(t), set_idx(std::move(idx))
    {
    }
    at::Tensor token_sublayer(int layer, TokenSite site, const at::Tensor &out, const at::Tensor &in) const override;
    at::Tensor image_sublayer(int layer, const at::Tensor &out, const at::Tensor &in) const override;
    void image_enter(at::Tensor &keys, int64_t h, int64_t w) const override { keys = net.embed(keys, h, w); }
    const AdapterNet &net;
    const TwoWayTransformerImpl &tr;
    at::Tensor set_idx;
};

/** (low_res B x 1 x L x L, iou B x 1): prompt-free decoding of labels (B, long) against embeddings
 *  emb (B x C x h x w, or 1 x ... shared). With autograd unless the caller disables it. */
std::pair<at::Tensor, at::Tensor> adapter_forward_free(const SamImpl &sam, const AdapterNet &net,
                                                       const at::Tensor &dense_pe, const at::Tensor &emb,
                                                       const at::Tensor &labels);
/** Prompted decoding of a batch (PromptBatch in the input frame), single mask (mask 0), through
 *  net when given (set = token set, n_labels for the prompted set). */
std::pair<at::Tensor, at::Tensor> adapter_forward_prompted(const SamImpl &sam, const AdapterNet *net,
                                                           const at::Tensor &dense_pe, const at::Tensor &emb,
                                                           const PromptBatch &pb, int64_t set);

/** Window raw values to 0..255 for a label (throws Failure(SAMDA_EINVAL) on a bad window). */
at::Tensor window_values(const samda_adapter_label &l, const at::Tensor &values);

/** Fill a samda_model_decode_out from low-res logits (n x C x L x L) and iou (n x C). */
void fill_decode_out(const SamConfig &cfg, const samda_embedding *e, const at::Tensor &low_res, const at::Tensor &iou,
                     samda_model_decode_out *out);

/** Turn every C++ exception into a status and a message (as model.cpp does). */
template <class F> samda_status guard_status(const char *fn, samda_error *err, F &&body)
{
    try {
        return body();
    } catch (const Failure &e) {
        return samda_fail(err, e.code, "%s: %s", fn, e.what());
    } catch (const std::bad_alloc &) {
        return samda_fail(err, SAMDA_ENOMEM, "%s: out of memory", fn);
    } catch (const c10::Error &e) {
        std::string w = e.what_without_backtrace();
        size_t nl = w.find('\n');
        if (nl != std::string::npos)
            w.resize(nl);
        const bool oom = w.find("out of memory") != std::string::npos || w.find("can't allocate") != std::string::npos;
        return samda_fail(err, oom ? SAMDA_ENOMEM : SAMDA_EMODEL, "%s: %s", fn, w.c_str());
    } catch (const std::exception &e) {
        return samda_fail(err, SAMDA_EMODEL, "%s: %s", fn, e.what());
    } catch (...) {
        return samda_fail(err, SAMDA_EINTERNAL, "%s: unknown C++ exception", fn);
    }
}

[[noreturn]] inline void raise(samda_status code, const std::string &msg) { throw Failure(code, msg); }

/** Minimal JSON number formatting (finite; "null" otherwise). */
std::string json_num(double v);

}  // namespace samda

/** The opaque adapter handle. */
struct samda_adapter {
    std::shared_ptr<samda::AdapterNet> net;
    std::vector<samda_adapter_label> labels;
    std::map<std::string, std::string> meta;  // file metadata (updated by training)
    std::string base_fp;
    int64_t base_params = 0;
    std::string version, parent;
    samda::SamConfig cfg;      // of the base model
    at::Tensor dense_pe;       // 1 x C x h x w on the model's device
};

namespace samda {
/** JSON text of the labels (the "labels" metadata value). */
std::string labels_json(const std::vector<samda_adapter_label> &labels);
}  // namespace samda

#endif
