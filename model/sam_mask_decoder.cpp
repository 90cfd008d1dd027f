// model/sam_mask_decoder.cpp: SAM's mask decoder: the two-way transformer (token self-attention,
// token->image and image->token cross-attention with downsampled width, ReLU MLP), the output
// upscaling, the hypernetwork MLPs that turn mask tokens into masks, and the IoU head.
#include "internal.h"

#include <algorithm>
#include <cmath>

namespace samda {

DecoderAttentionImpl::DecoderAttentionImpl(int64_t dim, int64_t heads_, int64_t downsample) : heads(heads_)
{
    const int64_t internal = dim / downsample;
    q_proj = register_module("q_proj", std::make_shared<LinearImpl>(dim, internal));
    k_proj = register_module("k_proj", std::make_shared<LinearImpl>(dim, internal));
    v_proj = register_module("v_proj", std::make_shared<LinearImpl>(dim, internal));
    out_proj = register_module("out_proj", std::make_shared<LinearImpl>(internal, dim));
}

// Inference-only forms of the cross-attentions between a few tokens and the image's HW tokens. The
// attention is the same; the order of the products changes. A projection of the HW image tokens
// (HW x C -> HW x C/2, the decoder's largest cost) is folded into the few tokens' side instead:
//  scores_h = q_h (x Wk_h^T + bk_h)^T = (q_h Wk_h) x^T + a per-row constant that softmax ignores;
//  P_h (x Wv_h^T + bv_h) = (P_h x) Wv_h^T + bv_h, since each row of P_h sums to 1;
//  and, image side as queries, (x Wq_h^T + bq_h) k_h^T = x (Wq_h^T k_h^T) + bq_h k_h^T, with the
//  output projection folded into the tokens' values: sum_h P_h (v_h Wo_h^T).
// With SAM's decoder (8 heads, C = 256, a handful of tokens, 4096 image tokens) each folded product
// costs under half of the projection it replaces. Operands with batch 1 serve every prompt.
namespace {

/** B x M x K times (1 or B) x K x N -> B x M x N; a batch-1 right side is one matrix product. */
at::Tensor mm_shared_right(const at::Tensor &a, const at::Tensor &b)
{
    const int64_t B = a.size(0), M = a.size(1), K = a.size(2);
    if (b.size(0) == 1 && B > 1)
        return at::mm(a.reshape({B * M, K}), b[0]).view({B, M, b.size(2)});
    return at::bmm(a, b.expand({B, -1, -1}));
}

}  // namespace

at::Tensor DecoderAttentionImpl::tokens_to_image(const at::Tensor &q_in, const at::Tensor &k_in,
                                                 const at::Tensor &v_in) const
{
    at::Tensor q = q_proj->forward(q_in);  // B x Nq x Ci
    const int64_t B = q.size(0), Nq = q.size(1), Ci = q.size(2), c = Ci / heads, D = k_in.size(2);
    at::Tensor qh = q.view({B, Nq, heads, c}).permute({0, 2, 1, 3});                      // B x h x Nq x c
    at::Tensor qk = at::matmul(qh, k_proj->weight.view({heads, c, D}));                    // B x h x Nq x D
    qk = qk.reshape({B, heads * Nq, D}).div_(std::sqrt((double)c));
    at::Tensor p = at::softmax(mm_shared_right(qk, k_in.transpose(1, 2)), -1);             // B x hNq x HW
    at::Tensor px = mm_shared_right(p, v_in).view({B, heads, Nq, D});                      // B x h x Nq x D
    at::Tensor o = at::matmul(px, v_proj->weight.view({heads, c, D}).transpose(1, 2));     // B x h x Nq x c
    o.add_(v_proj->bias.view({1, heads, 1, c}));
    return out_proj->forward(o.permute({0, 2, 1, 3}).reshape({B, Nq, Ci}));
}

at::Tensor DecoderAttentionImpl::image_to_tokens(const at::Tensor &q_in, const at::Tensor &k_in,
                                                 const at::Tensor &v_in) const
{
    at::Tensor k = k_proj->forward(k_in), v = v_proj->forward(v_in);  // B x Nk x Ci
    const int64_t B = std::max(k.size(0), v.size(0)), Nk = k.size(1), Ci = k.size(2), c = Ci / heads;
    const int64_t D = q_in.size(2), HW = q_in.size(1), hk = heads * Nk;
    k = k.expand({B, -1, -1});
    v = v.expand({B, -1, -1});
    const double norm = std::sqrt((double)c);
    at::Tensor kh = k.view({B, Nk, heads, c}).permute({0, 2, 3, 1});                      // B x h x c x Nk
    at::Tensor wq = q_proj->weight.view({heads, c, D}).transpose(1, 2);                    // h x D x c
    at::Tensor kq = at::matmul(wq, kh).permute({0, 2, 1, 3}).reshape({B, D, hk}).div_(norm);
    at::Tensor r = at::matmul(q_proj->bias.view({heads, 1, c}), kh).reshape({B, 1, hk}).div_(norm);
    at::Tensor s;
    if (q_in.size(0) == 1 && B > 1)  // one product for every prompt: HW x D times D x (B h Nk)
        s = at::mm(q_in[0], kq.permute({1, 0, 2}).reshape({D, B * hk})).view({HW, B, hk}).permute({1, 0, 2}) + r;
    else
        s = at::baddbmm(r, q_in.expand({B, -1, -1}), kq);                                   // B x HW x hNk
    at::Tensor p = at::softmax(s.reshape({B, HW, heads, Nk}), -1).view({B, HW, hk});
    at::Tensor wo = out_proj->weight.view({D, heads, c}).permute({1, 2, 0});               // h x c x D
    at::Tensor vo = at::matmul(v.view({B, Nk, heads, c}).permute({0, 2, 1, 3}), wo);       // B x h x Nk x D
    return at::baddbmm(out_proj->bias.view({1, 1, D}), p, vo.reshape({B, hk, D}));
}

at::Tensor DecoderAttentionImpl::forward(const at::Tensor &q_in, const at::Tensor &k_in, const at::Tensor &v_in) const
{
    if (c10::InferenceMode::is_enabled() && q_proj->bias.defined() && v_proj->bias.defined() &&
        out_proj->bias.defined()) {
        const int64_t Nq = q_in.size(1), Nk = k_in.size(1);
        if (Nk >= 256 && Nq * 16 <= Nk && v_in.size(1) == Nk)
            return tokens_to_image(q_in, k_in, v_in);
        if (Nq >= 256 && Nk * 16 <= Nq)
            return image_to_tokens(q_in, k_in, v_in);
    }
    // Same arithmetic as the reference (q k^T / sqrt(c), softmax, times v, per head), laid out to
    // avoid copying the 4096-token operands into a heads-first layout: one batched product per head
    // on strided column slices. Operands with batch 1 broadcast (shared image side, see predict_masks).
    at::Tensor q = q_proj->forward(q_in), k = k_proj->forward(k_in), v = v_proj->forward(v_in);
    const int64_t B = std::max({q.size(0), k.size(0), v.size(0)});
    q = q.expand({B, -1, -1});
    k = k.expand({B, -1, -1});
    v = v.expand({B, -1, -1});
    const int64_t Nq = q.size(1), Nk = k.size(1), Ci = q.size(2), c = Ci / heads;
    const double norm = std::sqrt((double)c);
    at::Tensor out = at::empty({B, Nq, Ci}, q.options());
    for (int64_t j = 0; j < heads; j++) {
        at::Tensor qj = q.slice(2, j * c, (j + 1) * c), kj = k.slice(2, j * c, (j + 1) * c);
        at::Tensor vj = v.slice(2, j * c, (j + 1) * c);
        at::Tensor oj;
        if (Nq > 4 * Nk) {
            // Many queries, few keys (image -> tokens): keys first, so that the softmax reduces over a
            // non-last dimension and vectorises across the queries.
            at::Tensor a = at::bmm(kj, qj.transpose(1, 2));  // B x Nk x Nq
            a.div_(norm);
            a = at::softmax(a, 1);
            oj = at::bmm(a.transpose(1, 2), vj);
        } else {
            at::Tensor a = at::bmm(qj, kj.transpose(1, 2));  // B x Nq x Nk
            a.div_(norm);
            a = at::softmax(a, -1);
            oj = at::bmm(a, vj);
        }
        out.slice(2, j * c, (j + 1) * c).copy_(oj);
    }
    return out_proj->forward(out);
}

TwoWayBlockImpl::TwoWayBlockImpl(int64_t dim, int64_t heads, int64_t mlp_dim, int64_t downsample, bool skip)
    : skip_first_layer_pe(skip)
{
    self_attn = register_module("self_attn", std::make_shared<DecoderAttentionImpl>(dim, heads, 1));
    norm1 = register_module("norm1", std::make_shared<LayerNormImpl>(dim));
    cross_attn_token_to_image =
        register_module("cross_attn_token_to_image", std::make_shared<DecoderAttentionImpl>(dim, heads, downsample));
    norm2 = register_module("norm2", std::make_shared<LayerNormImpl>(dim));
    mlp = register_module("mlp", std::make_shared<MLPBlockImpl>(dim, mlp_dim, MLPBlockImpl::RELU));
    norm3 = register_module("norm3", std::make_shared<LayerNormImpl>(dim));
    norm4 = register_module("norm4", std::make_shared<LayerNormImpl>(dim));
    cross_attn_image_to_token =
        register_module("cross_attn_image_to_token", std::make_shared<DecoderAttentionImpl>(dim, heads, downsample));
}

void TwoWayBlockImpl::forward(at::Tensor &queries, at::Tensor &keys, at::Tensor &query_pe, const at::Tensor &key_pe,
                              int layer, const TwoWayHooks *hooks) const
{
    if (hooks)
        hooks->block_enter(layer, queries, query_pe);
    // (1) token self-attention
    if (skip_first_layer_pe) {
        at::Tensor out = self_attn->forward(queries, queries, queries);
        // The reference replaces the queries (no residual) in the first block.
        queries = hooks ? hooks->token_sublayer(layer, TwoWayHooks::SELF_ATTN, out, queries) : out;
    } else {
        at::Tensor q = queries + query_pe;
        at::Tensor out = self_attn->forward(q, q, queries);
        if (hooks)
            out = hooks->token_sublayer(layer, TwoWayHooks::SELF_ATTN, out, q);
        queries = queries + out;
    }
    queries = norm1->forward(queries);
    // (2) tokens attend to the image
    at::Tensor k = keys + key_pe;
    {
        at::Tensor q = queries + query_pe;
        at::Tensor out = cross_attn_token_to_image->forward(q, k, keys);
        if (hooks)
            out = hooks->token_sublayer(layer, TwoWayHooks::CROSS_TOKEN_TO_IMAGE, out, q);
        queries = norm2->forward(queries + out);
    }
    // (3) token MLP
    {
        at::Tensor out = mlp->forward(queries);
        if (hooks)
            out = hooks->token_sublayer(layer, TwoWayHooks::MLP, out, queries);
        queries = norm3->forward(queries + out);
    }
    // (4) the image attends to the tokens
    {
        at::Tensor q = queries + query_pe;
        at::Tensor out = cross_attn_image_to_token->forward(k, q, queries);
        if (hooks)
            out = hooks->image_sublayer(layer, out, k);
        keys = norm4->forward(keys + out);
    }
    if (hooks)
        hooks->block_exit(layer, queries, query_pe);
}

TwoWayTransformerImpl::TwoWayTransformerImpl(const SamConfig &c)
{
    const int64_t dim = c.prompt_embed_dim;
    auto list = register_module("layers", std::make_shared<torch::nn::Module>());
    for (int i = 0; i < c.decoder_depth; i++)
        layers.push_back(list->register_module(
            std::to_string(i), std::make_shared<TwoWayBlockImpl>(dim, c.decoder_num_heads, c.decoder_mlp_dim,
                                                                 c.attention_downsample_rate, i == 0)));
    final_attn_token_to_image = register_module(
        "final_attn_token_to_image",
        std::make_shared<DecoderAttentionImpl>(dim, c.decoder_num_heads, c.attention_downsample_rate));
    norm_final_attn = register_module("norm_final_attn", std::make_shared<LayerNormImpl>(dim));
}

std::pair<at::Tensor, at::Tensor> TwoWayTransformerImpl::forward(const at::Tensor &image, const at::Tensor &image_pe,
                                                                 const at::Tensor &tokens,
                                                                 const TwoWayHooks *hooks) const
{
    // Token-major copies: every image-side operation then runs over contiguous rows (the permuted
    // views made each addition and layer norm of the first block a strided walk, 3x slower).
    at::Tensor keys = image.flatten(2).transpose(1, 2).contiguous();  // B x HW x C
    at::Tensor key_pe = image_pe.flatten(2).transpose(1, 2).contiguous();
    if (hooks)
        hooks->image_enter(keys, image.size(2), image.size(3));
    at::Tensor queries = tokens;
    for (size_t i = 0; i < layers.size(); i++) {
        at::Tensor query_pe = tokens;  // hooks may extend their copy
        layers[i]->forward(queries, keys, query_pe, key_pe, (int)i, hooks);
    }
    at::Tensor q = queries + tokens;
    at::Tensor k = keys + key_pe;
    queries = norm_final_attn->forward(queries + final_attn_token_to_image->forward(q, k, keys));
    return {queries, keys};
}

DecoderMLPImpl::DecoderMLPImpl(int64_t in, int64_t hidden, int64_t out, int64_t n_layers)
{
    auto list = register_module("layers", std::make_shared<torch::nn::Module>());
    for (int64_t i = 0; i < n_layers; i++) {
        const int64_t a = i == 0 ? in : hidden;
        const int64_t b = i == n_layers - 1 ? out : hidden;
        layers.push_back(list->register_module(std::to_string(i), std::make_shared<LinearImpl>(a, b)));
    }
}

at::Tensor DecoderMLPImpl::forward(at::Tensor x) const
{
    for (size_t i = 0; i < layers.size(); i++) {
        x = layers[i]->forward(x);
        if (i + 1 < layers.size())
            x = at::relu(x);
    }
    return x;
}

MaskDecoderImpl::MaskDecoderImpl(const SamConfig &c) : num_mask_tokens(c.num_multimask_outputs + 1)
{
    const int64_t dim = c.prompt_embed_dim;
    transformer = register_module("transformer", std::make_shared<TwoWayTransformerImpl>(c));
    iou_token = register_module("iou_token", std::make_shared<EmbeddingImpl>(1, dim));
    mask_tokens = register_module("mask_tokens", std::make_shared<EmbeddingImpl>(num_mask_tokens, dim));
    auto up = register_module("output_upscaling", std::make_shared<torch::nn::Module>());
    up0 = up->register_module("0", std::make_shared<ConvTranspose2dImpl>(dim, dim / 4, 2, 2));
    up1 = up->register_module("1", std::make_shared<LayerNorm2dImpl>(dim / 4, 1e-6));
    up3 = up->register_module("3", std::make_shared<ConvTranspose2dImpl>(dim / 4, dim / 8, 2, 2));
    auto hyper = register_module("output_hypernetworks_mlps", std::make_shared<torch::nn::Module>());
    for (int64_t i = 0; i < num_mask_tokens; i++)
        hyper_mlps.push_back(hyper->register_module(std::to_string(i), std::make_shared<DecoderMLPImpl>(dim, dim, dim / 8, 3)));
    iou_prediction_head = register_module(
        "iou_prediction_head",
        std::make_shared<DecoderMLPImpl>(dim, c.iou_head_hidden_dim, num_mask_tokens, c.iou_head_depth));
}

std::pair<at::Tensor, at::Tensor> MaskDecoderImpl::predict_masks(const at::Tensor &image_embedding,
                                                                 const at::Tensor &image_pe, const at::Tensor &sparse,
                                                                 const at::Tensor &dense,
                                                                 const TwoWayHooks *hooks) const
{
    const int64_t B = sparse.size(0);
    at::Tensor out_tokens = at::cat({iou_token->weight, mask_tokens->weight}, 0).unsqueeze(0).expand({B, -1, -1});
    at::Tensor tokens = at::cat({out_tokens, sparse.to(out_tokens.scalar_type())}, 1);
    // One image embedding serves every prompt. When the dense prompt is the same for all (no mask
    // input: a broadcast of no_mask_embed), the image side starts with batch 1 and broadcasting shares
    // the first block's image projections between prompts; it becomes per-prompt after the first
    // image->token attention. Same values as the reference's repeat_interleave.
    const bool shared_dense = dense.size(0) == 1 || dense.stride(0) == 0;
    at::Tensor src = shared_dense && image_embedding.size(0) == 1 ? image_embedding + dense.slice(0, 0, 1)
                                                                  : image_embedding.expand({B, -1, -1, -1}) + dense;
    at::Tensor pos = image_pe;
    const int64_t c = src.size(1), h = src.size(2), w = src.size(3);

    auto hs_src = transformer->forward(src, pos, tokens, hooks);
    at::Tensor hs = hs_src.first;
    at::Tensor iou_out = hs.select(1, 0);
    at::Tensor mask_out = hs.slice(1, 1, 1 + num_mask_tokens);

    std::vector<at::Tensor> hyper;
    for (int64_t i = 0; i < num_mask_tokens; i++)
        hyper.push_back(hyper_mlps[i]->forward(mask_out.select(1, i)));
    at::Tensor hyper_in = at::stack(hyper, 1);  // B x M x C/8
    at::Tensor iou = iou_prediction_head->forward(iou_out);
    const bool blocks = up0->weight.size(2) == up0->stride && up0->weight.size(3) == up0->stride &&
                        up3->weight.size(2) == up3->stride && up3->weight.size(3) == up3->stride;
    if (c10::InferenceMode::is_enabled() && blocks)
        return {upscale_masks_pixel_major(hs_src.second.expand({B, -1, -1}).contiguous(), hyper_in, h, w), iou};

    at::Tensor img = hs_src.second.transpose(1, 2).reshape({B, c, h, w});
    at::Tensor up = at::gelu(up1->forward(up0->forward(img)));
    up = at::gelu(up3->forward(up));
    const int64_t uc = up.size(1), uh = up.size(2), uw = up.size(3);
    at::Tensor masks = at::matmul(hyper_in, up.reshape({B, uc, uh * uw})).reshape({B, -1, uh, uw});
    return {masks, iou};
}

// The output upscaling (two 2x2 / stride 2 transposed convolutions with a channel layer norm and
// GELUs between) and the hypernetwork product, for inference. Each transposed convolution with
// kernel = stride is a per-pixel matrix product; with the weight's columns ordered (di, dj, channel),
// its output rows are sub-pixels with their channels contiguous, so the layer norm, the GELUs and the
// second product run on contiguous rows in place, and only the M masks (not the C/8 x 4h x 4w
// features) are reordered into image order at the end. Same sums as the reference.
at::Tensor MaskDecoderImpl::upscale_masks_pixel_major(const at::Tensor &keys, const at::Tensor &hyper_in, int64_t h,
                                                      int64_t w) const
{
    const int64_t B = keys.size(0), C = keys.size(2), M = hyper_in.size(1);
    const int64_t k0 = up0->stride, O0 = up0->weight.size(1), k3 = up3->stride, O3 = up3->weight.size(1);
    at::Tensor w0 = up0->weight.permute({0, 2, 3, 1}).reshape({C, k0 * k0 * O0});
    at::Tensor y = at::addmm(up0->bias.repeat({k0 * k0}), keys.reshape({B * h * w, C}), w0);  // (b,i,j) x (di,dj,o)
    y = at::layer_norm(y.view({B * h * w * k0 * k0, O0}), {O0}, up1->weight, up1->bias, up1->eps);
    at::gelu_(y);
    at::Tensor w3 = up3->weight.permute({0, 2, 3, 1}).reshape({O0, k3 * k3 * O3});
    at::Tensor z = at::addmm(up3->bias.repeat({k3 * k3}), y, w3);  // (b,i,j,di,dj) x (ei,ej,c)
    at::gelu_(z);
    const int64_t P = h * w * k0 * k0 * k3 * k3;
    at::Tensor mk = at::bmm(z.view({B, P, O3}), hyper_in.transpose(1, 2));  // B x P x M
    // (b, i, j, di, dj, ei, ej, m) -> (b, m, i, di, ei, j, dj, ej): row i*k0*k3 + di*k3 + ei, column likewise
    return mk.view({B, h, w, k0, k0, k3, k3, M})
        .permute({0, 7, 1, 3, 5, 2, 4, 6})
        .reshape({B, M, h * k0 * k3, w * k0 * k3});
}

std::pair<at::Tensor, at::Tensor> MaskDecoderImpl::forward(const at::Tensor &image_embedding,
                                                           const at::Tensor &image_pe, const at::Tensor &sparse,
                                                           const at::Tensor &dense, bool multimask,
                                                           const TwoWayHooks *hooks) const
{
    auto r = predict_masks(image_embedding, image_pe, sparse, dense, hooks);
    if (multimask)
        return {r.first.slice(1, 1), r.second.slice(1, 1)};
    return {r.first.slice(1, 0, 1), r.second.slice(1, 0, 1)};
}

}  // namespace samda
