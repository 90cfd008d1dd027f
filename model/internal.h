// model/internal.h: C++ internals of the model module (namespace samda). Never installed; C code
// uses model/model.h. The SAM modules register their parameters under the official checkpoint
// names (image_encoder.blocks.0.attn.qkv.weight, ...), so loading a state dict is a name -> tensor
// copy. Forward passes are plain ATen calls; no module keeps per-call state, so one Sam may run
// several forward passes at once from different threads (inference only).
#ifndef SAMDA_MODEL_INTERNAL_H
#define SAMDA_MODEL_INTERNAL_H

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include <atomic>
#include <stdexcept>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "sam_config.h"
#include "sha256.h"

namespace samda {

// ---------------------------------------------------------------------------------------------
// Building blocks shared by the three parts (sam_image_encoder.cpp)

/** LayerNorm over the channel dimension of an NCHW tensor (SAM's LayerNorm2d). */
struct LayerNorm2dImpl : torch::nn::Module {
    explicit LayerNorm2dImpl(int64_t channels, double eps = 1e-6);
    at::Tensor forward(const at::Tensor &x) const;
    at::Tensor weight, bias;
    double eps;
};

/** nn.Linear with the official parameter names (weight, bias). */
struct LinearImpl : torch::nn::Module {
    LinearImpl(int64_t in, int64_t out, bool with_bias = true);
    at::Tensor forward(const at::Tensor &x) const { return at::linear(x, weight, bias); }
    at::Tensor weight, bias;  // bias undefined when with_bias is false
};

/** nn.LayerNorm over the last dimension. */
struct LayerNormImpl : torch::nn::Module {
    explicit LayerNormImpl(int64_t dim, double eps = 1e-5);
    at::Tensor forward(const at::Tensor &x) const;
    at::Tensor weight, bias;
    int64_t dim;
    double eps;
};

/** nn.Conv2d (weight [out, in, k, k], optional bias). */
struct Conv2dImpl : torch::nn::Module {
    Conv2dImpl(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t padding, bool with_bias);
    at::Tensor forward(const at::Tensor &x) const;
    at::Tensor weight, bias;
    int64_t stride, padding;
};

/** nn.ConvTranspose2d (weight [in, out, k, k], bias). */
struct ConvTranspose2dImpl : torch::nn::Module {
    ConvTranspose2dImpl(int64_t in, int64_t out, int64_t kernel, int64_t stride);
    at::Tensor forward(const at::Tensor &x) const;
    at::Tensor weight, bias;
    int64_t stride;
};

/** nn.Embedding(n, dim): only its weight is used. */
struct EmbeddingImpl : torch::nn::Module {
    EmbeddingImpl(int64_t n, int64_t dim);
    at::Tensor weight;
};

/** SAM's MLPBlock: lin1 -> activation -> lin2. */
struct MLPBlockImpl : torch::nn::Module {
    enum Act { GELU, RELU };
    MLPBlockImpl(int64_t dim, int64_t hidden, Act act);
    at::Tensor forward(const at::Tensor &x) const;
    std::shared_ptr<LinearImpl> lin1, lin2;
    Act act;
};

// ---------------------------------------------------------------------------------------------
// Image encoder (sam_image_encoder.cpp)

struct VitAttentionImpl : torch::nn::Module {
    VitAttentionImpl(int64_t dim, int64_t heads, bool qkv_bias, bool use_rel_pos, int64_t in_h, int64_t in_w);
    at::Tensor forward(const at::Tensor &x) const;  // x: B x H x W x C
    std::shared_ptr<LinearImpl> qkv, proj;
    at::Tensor rel_pos_h, rel_pos_w;
    int64_t heads;
    bool use_rel_pos;
};

struct VitBlockImpl : torch::nn::Module {
    VitBlockImpl(const SamConfig &c, int window_size);
    at::Tensor forward(const at::Tensor &x) const;  // B x H x W x C
    std::shared_ptr<LayerNormImpl> norm1, norm2;
    std::shared_ptr<VitAttentionImpl> attn;
    std::shared_ptr<MLPBlockImpl> mlp;
    int window_size;
};

struct ImageEncoderImpl : torch::nn::Module {
    explicit ImageEncoderImpl(const SamConfig &c);
    /** x: B x 3 x S x S (already preprocessed) -> B x out_chans x S/16 x S/16. */
    at::Tensor forward(const at::Tensor &x) const;
    std::shared_ptr<Conv2dImpl> patch_proj;  // registered as patch_embed.proj
    at::Tensor pos_embed;
    std::vector<std::shared_ptr<VitBlockImpl>> blocks;
    std::shared_ptr<Conv2dImpl> neck0, neck2;
    std::shared_ptr<LayerNorm2dImpl> neck1, neck3;
};

/** Decomposed relative-position helpers (exposed for tests). */
at::Tensor get_rel_pos(int64_t q_size, int64_t k_size, const at::Tensor &rel_pos);

// ---------------------------------------------------------------------------------------------
// Prompt encoder (sam_prompt_encoder.cpp)

/** One prompt set for the decoder, already in the model's input frame (pixels of the S x S input). */
struct PromptBatch {
    at::Tensor coords;  // B x N x 2 float (x, y), or undefined
    at::Tensor labels;  // B x N (int or float), or undefined
    at::Tensor boxes;   // B x 4 float, or undefined
    at::Tensor masks;   // B x 1 x 4e x 4e float, or undefined
};

struct PromptEncoderImpl : torch::nn::Module {
    explicit PromptEncoderImpl(const SamConfig &c);
    /** Returns (sparse B x T x C, dense B x C x e x e). */
    std::pair<at::Tensor, at::Tensor> forward(const PromptBatch &p) const;
    /** 1 x C x e x e positional encoding of the embedding grid. */
    at::Tensor dense_pe() const;
    at::Tensor pe_encode(const at::Tensor &coords01) const;  // coords in [0,1], ... x 2 -> ... x C

    at::Tensor gaussian;  // pe_layer.positional_encoding_gaussian_matrix, 2 x C/2
    std::vector<std::shared_ptr<EmbeddingImpl>> point_embeddings;  // 4
    std::shared_ptr<EmbeddingImpl> not_a_point_embed, no_mask_embed;
    std::shared_ptr<Conv2dImpl> mask_conv0, mask_conv3, mask_conv6;
    std::shared_ptr<LayerNorm2dImpl> mask_norm1, mask_norm4;
    int64_t embed_dim, emb_h, emb_w, input_h, input_w;
};

// ---------------------------------------------------------------------------------------------
// Mask decoder (sam_mask_decoder.cpp)

/** Optional callbacks into the two-way transformer, for the decoder adapter. Every method has an
 *  identity default, so a default-constructed hook changes nothing. The hooks are passed to each
 *  forward call (not stored in the modules), so concurrent decodes may use different hooks.
 *  Sites, in order, in each TwoWayAttentionBlock `layer`:
 *   block_enter: may change queries and query_pe (both B x T x C) before the block;
 *   token_sublayer(site): the output of a token sub-layer (self-attention, token->image
 *     cross-attention, MLP) before its residual add; `in` is that sub-layer's query-side input
 *     (queries + query_pe for the attentions, queries for the MLP); returns the (adapted) output;
 *   image_sublayer: the image->token cross-attention output before its residual add; `in` is its
 *     query-side input (keys + key_pe, B x HW x C);
 *   block_exit: may change queries and query_pe after the block. */
struct TwoWayHooks {
    enum TokenSite { SELF_ATTN = 0, CROSS_TOKEN_TO_IMAGE = 1, MLP = 2 };
    virtual ~TwoWayHooks() = default;
    /** The image tokens (B x HW x C, row-major h x w) before the first block; hooks may replace them. */
    virtual void image_enter(at::Tensor &keys, int64_t h, int64_t w) const { (void)keys, (void)h, (void)w; }
    virtual void block_enter(int layer, at::Tensor &queries, at::Tensor &query_pe) const
    {
        (void)layer, (void)queries, (void)query_pe;
    }
    virtual at::Tensor token_sublayer(int layer, TokenSite site, const at::Tensor &out, const at::Tensor &in) const
    {
        (void)layer, (void)site, (void)in;
        return out;
    }
    virtual at::Tensor image_sublayer(int layer, const at::Tensor &out, const at::Tensor &in) const
    {
        (void)layer, (void)in;
        return out;
    }
    virtual void block_exit(int layer, at::Tensor &queries, at::Tensor &query_pe) const
    {
        (void)layer, (void)queries, (void)query_pe;
    }
};

struct DecoderAttentionImpl : torch::nn::Module {
    DecoderAttentionImpl(int64_t dim, int64_t heads, int64_t downsample);
    at::Tensor forward(const at::Tensor &q, const at::Tensor &k, const at::Tensor &v) const;
    /** Inference-only equivalents of forward() for a few tokens against many image tokens, with the
     *  image-side projections folded into the token side (sam_mask_decoder.cpp explains). */
    at::Tensor tokens_to_image(const at::Tensor &q, const at::Tensor &k, const at::Tensor &v) const;
    at::Tensor image_to_tokens(const at::Tensor &q, const at::Tensor &k, const at::Tensor &v) const;
    std::shared_ptr<LinearImpl> q_proj, k_proj, v_proj, out_proj;
    int64_t heads;
};

struct TwoWayBlockImpl : torch::nn::Module {
    TwoWayBlockImpl(int64_t dim, int64_t heads, int64_t mlp_dim, int64_t downsample, bool skip_first_layer_pe);
    /** queries/keys are updated in place (B x T x C, B x HW x C). query_pe may be changed by hooks. */
    void forward(at::Tensor &queries, at::Tensor &keys, at::Tensor &query_pe, const at::Tensor &key_pe,
                 int layer, const TwoWayHooks *hooks) const;
    std::shared_ptr<DecoderAttentionImpl> self_attn, cross_attn_token_to_image, cross_attn_image_to_token;
    std::shared_ptr<LayerNormImpl> norm1, norm2, norm3, norm4;
    std::shared_ptr<MLPBlockImpl> mlp;
    bool skip_first_layer_pe;
};

struct TwoWayTransformerImpl : torch::nn::Module {
    explicit TwoWayTransformerImpl(const SamConfig &c);
    /** image: B x C x h x w, image_pe same shape, tokens B x T x C -> (queries, keys). */
    std::pair<at::Tensor, at::Tensor> forward(const at::Tensor &image, const at::Tensor &image_pe,
                                              const at::Tensor &tokens, const TwoWayHooks *hooks) const;
    std::vector<std::shared_ptr<TwoWayBlockImpl>> layers;
    std::shared_ptr<DecoderAttentionImpl> final_attn_token_to_image;
    std::shared_ptr<LayerNormImpl> norm_final_attn;
};

struct DecoderMLPImpl : torch::nn::Module {
    DecoderMLPImpl(int64_t in, int64_t hidden, int64_t out, int64_t n_layers);
    at::Tensor forward(at::Tensor x) const;
    std::vector<std::shared_ptr<LinearImpl>> layers;
};

struct MaskDecoderImpl : torch::nn::Module {
    explicit MaskDecoderImpl(const SamConfig &c);
    /** image_embedding: 1 x C x h x w (or B x ...), image_pe 1 x C x h x w, sparse B x T x C,
     *  dense B x C x h x w. Returns all masks (B x (M+1) x 4h x 4w) and iou (B x (M+1)). */
    std::pair<at::Tensor, at::Tensor> predict_masks(const at::Tensor &image_embedding, const at::Tensor &image_pe,
                                                    const at::Tensor &sparse, const at::Tensor &dense,
                                                    const TwoWayHooks *hooks = nullptr) const;
    /** As the reference forward: keeps masks 1.. when multimask, else mask 0. */
    std::pair<at::Tensor, at::Tensor> forward(const at::Tensor &image_embedding, const at::Tensor &image_pe,
                                              const at::Tensor &sparse, const at::Tensor &dense, bool multimask,
                                              const TwoWayHooks *hooks = nullptr) const;
    /** Inference-only output upscaling plus hypernetwork product on keys (B x hw x C, contiguous) and
     *  hyper_in (B x M x C/8): the masks of predict_masks(), computed pixel-major (sam_mask_decoder.cpp). */
    at::Tensor upscale_masks_pixel_major(const at::Tensor &keys, const at::Tensor &hyper_in, int64_t h,
                                         int64_t w) const;
    std::shared_ptr<TwoWayTransformerImpl> transformer;
    std::shared_ptr<EmbeddingImpl> iou_token, mask_tokens;
    std::shared_ptr<ConvTranspose2dImpl> up0, up3;
    std::shared_ptr<LayerNorm2dImpl> up1;
    std::vector<std::shared_ptr<DecoderMLPImpl>> hyper_mlps;
    std::shared_ptr<DecoderMLPImpl> iou_prediction_head;
    int64_t num_mask_tokens;
};

// ---------------------------------------------------------------------------------------------
// The whole network

struct SamImpl : torch::nn::Module {
    explicit SamImpl(const SamConfig &c);
    SamConfig cfg;
    std::shared_ptr<ImageEncoderImpl> image_encoder;
    std::shared_ptr<PromptEncoderImpl> prompt_encoder;
    std::shared_ptr<MaskDecoderImpl> mask_decoder;
};

/** Copy a state dict into the network by name. Checks that every parameter and buffer is present
 *  with the same shape and that no unexpected key remains (pixel_mean / pixel_std are tolerated).
 *  Throws std::invalid_argument naming the first offending key and the counts of each kind. */
void sam_load_state(SamImpl &sam, const std::vector<std::pair<std::string, at::Tensor>> &state);
/** Deterministic random weights (seeded), scaled like a trained network's. */
void sam_init_random(SamImpl &sam, uint64_t seed);
/** Parameter count of a module (buffers excluded, as sum(p.numel() for p in m.parameters())). */
int64_t count_params(const torch::nn::Module &m);

// ---------------------------------------------------------------------------------------------
// Pre- and post-processing (sam_transforms.cpp)

enum class Convention { SAM = 0, MEDSAM = 1 };

/** (new_h, new_w) of the reference ResizeLongestSide.get_preprocess_shape. */
std::pair<int64_t, int64_t> preprocess_shape(int64_t h, int64_t w, int64_t long_side);

/** image: H x W x C (C = 1 or 3) float tensor of 0..255 values on any device. Returns the
 *  1 x 3 x S x S encoder input and the content size (input_h, input_w) within it. */
at::Tensor preprocess_image(const at::Tensor &hwc, const SamConfig &c, Convention conv, int64_t *input_h,
                            int64_t *input_w);

/** Scale points (... x 2, x/y in original pixels) into the input frame, as the reference apply_coords. */
at::Tensor transform_coords(const at::Tensor &xy, int64_t orig_h, int64_t orig_w, int64_t input_h, int64_t input_w);

/** Low-res logits B x C x 4e x 4e -> B x C x orig_h x orig_w logits (reference postprocess_masks). */
at::Tensor postprocess_masks(const at::Tensor &low_res, int64_t img_size, int64_t input_h, int64_t input_w,
                             int64_t orig_h, int64_t orig_w);

// ---------------------------------------------------------------------------------------------
// Devices and the BLAS (device.cpp)

/** Resolve a device request: -2 = auto (CUDA 0 when available), -1 = CPU, >= 0 = CUDA ordinal.
 *  Throws std::invalid_argument when CUDA is requested but absent. */
at::Device resolve_device(int request);
/** Free and total bytes on a CUDA device, via the CUDA runtime libtorch loaded. false if unknown. */
bool cuda_mem_info(int ordinal, size_t *free_bytes, size_t *total_bytes);
/** A CPU tensor on `dev`: to CUDA through page-locked staging memory (libtorch's caching host
 *  allocator) and an asynchronous copy; on the CPU the tensor itself, or a copy owning its storage
 *  when `own` (for tensors that wrap a caller's buffer and must outlive it). */
at::Tensor host_to_device(const at::Tensor &host, const at::Device &dev, bool own);
/** Copies `t` (any device, any layout) into dst, which holds exactly t.numel() elements of t's type;
 *  from CUDA through page-locked staging memory. Throws if the sizes disagree. */
void device_to_host(const at::Tensor &t, void *dst, size_t dst_bytes);
/** Which BLAS the process uses: "openblas", "reference", "mkl", ... and the library's real path. */
void detect_blas(std::string *name, std::string *path);
/** Number of online CPUs (at least 1). */
int online_cpus();

/** SHA-256 over the sorted (name, shape, dtype, bytes) of a state. */
std::string state_fingerprint(const std::vector<std::pair<std::string, at::Tensor>> &state);

}  // namespace samda

// ---------------------------------------------------------------------------------------------
// The opaque C handles' bodies, shared by model.cpp and cache.cpp.

struct samda_embedding {
    std::atomic<int> refs{1};
    at::Tensor data;            // 1 x C x h x w, float32, on the model's device
    std::string fingerprint;    // model fingerprint it was computed with
    int convention = 0;         // samda_model_convention
    int original_h = 0, original_w = 0;
    int input_h = 0, input_w = 0;
    int img_size = 0;
    size_t bytes() const { return data.defined() ? (size_t)data.numel() * data.element_size() : 0; }
};

#endif

// ---------------------------------------------------------------------------------------------
// C++ access to a loaded model, for code inside model/ (the decoder adapter, training).

#include "model.h"

namespace samda {

/** The network of a loaded model (read-only use while other threads decode). */
SamImpl &model_network(const samda_model *m);
/** The device the model runs on. */
at::Device model_device(const samda_model *m);
/** The embedding tensor (1 x C x h x w, float32, on the model's device). */
const at::Tensor &embedding_tensor(const samda_embedding *e);

/** Decoder outputs for n prompts, in prompt order: low_res n x C x L x L, iou n x C (model device). */
struct DecodeResult {
    at::Tensor low_res, iou;
};
/** Validate and decode prompts (grouped by shape, batched), optionally through adapter hooks.
 *  Throws samda::Failure for invalid prompts. */
DecodeResult decode_prompts(const samda_model *m, const samda_embedding *e, const samda_model_prompt *prompts,
                            size_t n, bool multimask, const TwoWayHooks *hooks);

/** An error with its samda_status, thrown inside model/ and turned into a return code at the C boundary. */
struct Failure : std::runtime_error {
    Failure(samda_status c, const std::string &msg) : std::runtime_error(msg), code(c) {}
    samda_status code;
};

}  // namespace samda
