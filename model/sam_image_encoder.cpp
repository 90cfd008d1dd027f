// model/sam_image_encoder.cpp: SAM's ViT image encoder (patch embedding, absolute position
// embedding, windowed/global attention blocks with decomposed relative positions, neck), and the
// small layers every part of SAM shares (Linear, LayerNorm, LayerNorm2d, convolutions, MLP block).
#include "internal.h"

#include <c10/core/InferenceMode.h>
#include <torch/version.h>

#include <stdexcept>

namespace samda {

namespace {

at::Tensor frozen(at::IntArrayRef shape)
{
    return at::zeros(shape, at::TensorOptions().dtype(at::kFloat));
}

/** A container whose children are named 0, 1, 2, ... like nn.ModuleList / nn.Sequential. */
std::shared_ptr<torch::nn::Module> list_module() { return std::make_shared<torch::nn::Module>(); }

}  // namespace

// ---------------------------------------------------------------------------------------------
// Shared layers

LayerNorm2dImpl::LayerNorm2dImpl(int64_t channels, double eps_) : eps(eps_)
{
    weight = register_parameter("weight", at::ones({channels}), false);
    bias = register_parameter("bias", at::zeros({channels}), false);
}

at::Tensor LayerNorm2dImpl::forward(const at::Tensor &x) const
{
    // As the reference: normalise over channels with the biased variance, then scale and shift.
    at::Tensor u = x.mean(1, true);
    at::Tensor d = x - u;
    at::Tensor s = d.pow(2).mean(1, true);
    at::Tensor y = d / at::sqrt(s + eps);
    return weight.view({-1, 1, 1}) * y + bias.view({-1, 1, 1});
}

LinearImpl::LinearImpl(int64_t in, int64_t out, bool with_bias)
{
    weight = register_parameter("weight", frozen({out, in}), false);
    if (with_bias)
        bias = register_parameter("bias", frozen({out}), false);
}

LayerNormImpl::LayerNormImpl(int64_t dim_, double eps_) : dim(dim_), eps(eps_)
{
    weight = register_parameter("weight", at::ones({dim}), false);
    bias = register_parameter("bias", at::zeros({dim}), false);
}

at::Tensor LayerNormImpl::forward(const at::Tensor &x) const { return at::layer_norm(x, {dim}, weight, bias, eps); }

Conv2dImpl::Conv2dImpl(int64_t in, int64_t out, int64_t kernel, int64_t stride_, int64_t padding_, bool with_bias)
    : stride(stride_), padding(padding_)
{
    weight = register_parameter("weight", frozen({out, in, kernel, kernel}), false);
    if (with_bias)
        bias = register_parameter("bias", frozen({out}), false);
}

at::Tensor Conv2dImpl::forward(const at::Tensor &x) const
{
    return at::conv2d(x, weight, bias, {stride, stride}, {padding, padding});
}

ConvTranspose2dImpl::ConvTranspose2dImpl(int64_t in, int64_t out, int64_t kernel, int64_t stride_) : stride(stride_)
{
    weight = register_parameter("weight", frozen({in, out, kernel, kernel}), false);
    bias = register_parameter("bias", frozen({out}), false);
}

at::Tensor ConvTranspose2dImpl::forward(const at::Tensor &x) const
{
    const int64_t k = weight.size(2);
    // The product form below is for inference. Under autograd (adapter training) it is not used:
    // with libtorch 1.13 its backward through the strided views turned training to NaN and made it
    // non-deterministic (test_adapter's training test caught it); conv_transpose2d has a sound one.
    const bool grad = at::GradMode::is_enabled() && (x.requires_grad() || weight.requires_grad());
    if (k != stride || weight.size(3) != k || grad)
        return at::conv_transpose2d(x, weight, bias, {stride, stride});
    // Kernel == stride: the output blocks do not overlap, so this is one matrix product:
    // y[b, o, k*i + di, k*j + dj] = sum_c x[b, c, i, j] W[c, o, di, dj] + bias[o].
    const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), O = weight.size(1);
    at::Tensor y = at::matmul(x.permute({0, 2, 3, 1}).reshape({B, H * W, C}), weight.reshape({C, O * k * k}));
    y = y.view({B, H, W, O, k, k}).permute({0, 3, 1, 4, 2, 5}).reshape({B, O, H * k, W * k});
    return y + bias.view({1, O, 1, 1});
}

EmbeddingImpl::EmbeddingImpl(int64_t n, int64_t dim) { weight = register_parameter("weight", frozen({n, dim}), false); }

MLPBlockImpl::MLPBlockImpl(int64_t dim, int64_t hidden, Act act_) : act(act_)
{
    lin1 = register_module("lin1", std::make_shared<LinearImpl>(dim, hidden));
    lin2 = register_module("lin2", std::make_shared<LinearImpl>(hidden, dim));
}

at::Tensor MLPBlockImpl::forward(const at::Tensor &x) const
{
    at::Tensor h = lin1->forward(x);
    if (c10::InferenceMode::is_enabled())  // in place saves a large allocation; autograd needs the input
        h = act == GELU ? at::gelu_(h) : at::relu_(h);
    else
        h = act == GELU ? at::gelu(h) : at::relu(h);  // exact (erf) GELU, as nn.GELU()
    return lin2->forward(h);
}

// ---------------------------------------------------------------------------------------------
// Relative positions

at::Tensor get_rel_pos(int64_t q_size, int64_t k_size, const at::Tensor &rel_pos)
{
    const int64_t max_rel_dist = 2 * std::max(q_size, k_size) - 1;
    at::Tensor table = rel_pos;
    if (rel_pos.size(0) != max_rel_dist) {
        // Linear interpolation along the table (align_corners=False), as F.interpolate(mode="linear").
        at::Tensor t = rel_pos.reshape({1, rel_pos.size(0), -1}).permute({0, 2, 1});
        at::Tensor r = at::upsample_linear1d(t, at::IntArrayRef{max_rel_dist}, false);
        table = r.reshape({-1, max_rel_dist}).permute({1, 0});
    }
    // relative index (q_i * max(k/q,1)) - (k_j * max(q/k,1)) + (k-1) * max(q/k,1), truncated to long.
    const double qs = std::max((double)k_size / (double)q_size, 1.0);
    const double ks = std::max((double)q_size / (double)k_size, 1.0);
    // Made where the table is: a copy from the host would wait for the device at every block.
    const auto opts = at::TensorOptions().dtype(at::kDouble).device(table.device());
    at::Tensor q_coords = at::arange(q_size, opts).unsqueeze(1) * qs;
    at::Tensor k_coords = at::arange(k_size, opts).unsqueeze(0) * ks;
    at::Tensor rel = (q_coords - k_coords) + (double)(k_size - 1) * ks;
    return table.index_select(0, rel.to(at::kLong).reshape({-1}))
        .reshape({q_size, k_size, table.size(1)});
}

// ---------------------------------------------------------------------------------------------
// Attention

VitAttentionImpl::VitAttentionImpl(int64_t dim, int64_t heads_, bool qkv_bias, bool use_rel_pos_, int64_t in_h,
                                   int64_t in_w)
    : heads(heads_), use_rel_pos(use_rel_pos_)
{
    qkv = register_module("qkv", std::make_shared<LinearImpl>(dim, 3 * dim, qkv_bias));
    proj = register_module("proj", std::make_shared<LinearImpl>(dim, dim));
    if (use_rel_pos) {
        const int64_t head_dim = dim / heads;
        rel_pos_h = register_parameter("rel_pos_h", frozen({2 * in_h - 1, head_dim}), false);
        rel_pos_w = register_parameter("rel_pos_w", frozen({2 * in_w - 1, head_dim}), false);
    }
}

at::Tensor VitAttentionImpl::forward(const at::Tensor &x) const
{
    const int64_t B = x.size(0), H = x.size(1), W = x.size(2), C = x.size(3);
    const int64_t N = H * W, hd = C / heads, BH = B * heads;
    const at::Tensor qkv_out = qkv->forward(x);  // B x H x W x 3C, laid out (3, heads, hd) per pixel
    const double scale = 1.0 / std::sqrt((double)hd);
    const bool training = at::GradMode::is_enabled() && qkv_out.requires_grad();
    at::Tensor Rh, Rw;
    if (use_rel_pos) {
        Rh = get_rel_pos(H, H, rel_pos_h).to(qkv_out.scalar_type());  // H x H x hd
        Rw = get_rel_pos(W, W, rel_pos_w).to(qkv_out.scalar_type());  // W x W x hd
    }

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
    // libtorch 2.1+ on CUDA: one fused attention kernel (flash / cuDNN / memory-efficient, as libtorch
    // chooses), so the N x N scores never reach global memory. Those kernels take no cheap additive
    // bias (a materialised heads x N x N bias cost more than the attention itself: measured 3.9 ms per
    // global block for 8 images on an H100, against 1.6 ms for the attention), so the decomposed
    // relative positions ride in the dot product instead, over an extended head dimension:
    //   q' = [q / sqrt(hd), rel_h(n, :), rel_w(n, :), 0...],  k' = [k, onehot(h'), onehot(w'), 0...],
    //   q'.k' = q.k / sqrt(hd) + rel_h(n, h') + rel_w(n, w')   (the reference's scores, exactly),
    // with v zero-padded to the same width (the kernels want one head size) and the output narrowed.
    // q, k and v are copied once, straight from the qkv output, into those wider buffers.
    const int64_t ext = hd + (use_rel_pos ? H + W : 0);
    const int64_t E = (ext + 7) / 8 * 8;
    if (x.is_cuda() && !training && E <= 256) {
        const at::Tensor qkv5 = qkv_out.view({B, N, 3, heads, hd}).permute({2, 0, 3, 1, 4});  // 3 x B x heads x N x hd
        const at::TensorOptions o = qkv_out.options();
        at::Tensor qe = at::empty({B, heads, N, E}, o), ke = at::empty({B, heads, N, E}, o),
                   ve = at::empty({B, heads, N, E}, o);
        ke.narrow(3, 0, hd).copy_(qkv5[1]);
        ve.narrow(3, 0, hd).copy_(qkv5[2]);
        ve.narrow(3, hd, E - hd).zero_();
        if (E > ext) {
            qe.narrow(3, ext, E - ext).zero_();
            ke.narrow(3, ext, E - ext).zero_();
        }
        if (use_rel_pos) {
            // The reference computes the relative terms from q before scaling.
            const at::Tensor r_q = qkv5[0].reshape({BH, H, W, hd});
            qe.narrow(3, 0, hd).copy_(r_q.view({B, heads, N, hd})).mul_(scale);
            const at::Tensor q3 = qe.view({BH, N, E}), k3 = ke.view({BH, N, E});
            q3.narrow(2, hd, H).view({BH, H, W, H}).copy_(at::matmul(r_q, Rh.transpose(1, 2)));
            q3.narrow(2, hd + H, W).view({BH, H, W, W}).copy_(
                at::matmul(r_q.transpose(1, 2), Rw.transpose(1, 2)).transpose(1, 2));
            // Key m = (h', w'): row m of onehot_h is e(h'), of onehot_w e(w').
            const at::Tensor onehot_h = at::eye(H, o).unsqueeze(1).expand({H, W, H}).reshape({N, H});
            const at::Tensor onehot_w = at::eye(W, o).unsqueeze(0).expand({H, W, W}).reshape({N, W});
            k3.narrow(2, hd, H).copy_(onehot_h.unsqueeze(0).expand({BH, N, H}));
            k3.narrow(2, hd + H, W).copy_(onehot_w.unsqueeze(0).expand({BH, N, W}));
        } else {
            qe.narrow(3, 0, hd).copy_(qkv5[0]).mul_(scale);
        }
        at::Tensor out = at::scaled_dot_product_attention(qe, ke, ve, {}, 0.0, false, 1.0);  // B x heads x N x E
        at::Tensor y = out.narrow(3, 0, hd).permute({0, 2, 1, 3}).reshape({B, H, W, C});
        return proj->forward(y);
    }
#endif

    // qkv: B x N x 3 x heads x hd -> 3 x (B*heads) x N x hd
    at::Tensor qkv_t = qkv_out.reshape({B, N, 3, heads, hd}).permute({2, 0, 3, 1, 4}).reshape({3, BH, N, hd});
    at::Tensor q = qkv_t[0], k = qkv_t[1], v = qkv_t[2];
    at::Tensor rel_h, rel_w;
    if (use_rel_pos) {
        // The reference computes the relative terms from q before scaling.
        at::Tensor r_q = qkv_t[0].reshape({BH, H, W, hd});
        rel_h = at::matmul(r_q, Rh.transpose(1, 2));                                     // BH x H x W x H(k)
        rel_w = at::matmul(r_q.transpose(1, 2), Rw.transpose(1, 2)).transpose(1, 2);     // BH x H x W x W(k)
    }
    q = q * scale;
    if (training) {
        // Training (model/train.cpp, scope FULL): the out= kernels below have no autograd, so take the
        // plain differentiable path (same values).
        at::Tensor attn = at::matmul(q, k.transpose(1, 2));  // BH x N x N
        if (use_rel_pos)
            attn = (attn.view({BH, H, W, H, W}) + rel_h.unsqueeze(4) + rel_w.unsqueeze(3)).view({BH, N, N});
        at::Tensor o = at::matmul(at::softmax(attn, -1), v);
        at::Tensor y = o.reshape({B, heads, H, W, hd}).permute({0, 2, 3, 1, 4}).reshape({B, H, W, C});
        return proj->forward(y);
    }
    // Attention in chunks of (batch*head), through one reused buffer so that the N x N maps stay
    // bounded in memory and big allocations (page faults) are not repeated per chunk:
    // buf = rel_h + rel_w (broadcast), buf += q k^T, softmax in place, out = buf v.
    const int64_t map_bytes = N * N * (int64_t)q.element_size();
    const int64_t budget = x.is_cuda() ? (int64_t)2 << 30 : (int64_t)128 << 20;
    const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(BH, budget / std::max<int64_t>(map_bytes, 1)));
    at::Tensor out = at::empty({BH, N, hd}, q.options());
    at::Tensor kT = k.transpose(1, 2);
    at::Tensor buf = at::empty({chunk, N, N}, q.options());
    for (int64_t s = 0; s < BH; s += chunk) {
        const int64_t e = std::min(BH, s + chunk);
        at::Tensor attn = buf.slice(0, 0, e - s);
        if (use_rel_pos) {
            at::Tensor a5 = attn.view({e - s, H, W, H, W});
            at::add_out(a5, rel_h.slice(0, s, e).unsqueeze(4), rel_w.slice(0, s, e).unsqueeze(3));
            attn.baddbmm_(q.slice(0, s, e), kT.slice(0, s, e));
        } else {
            at::bmm_out(attn, q.slice(0, s, e), kT.slice(0, s, e));
        }
        at::_softmax_out(attn, attn, -1, false);
        at::Tensor o = out.slice(0, s, e);
        at::bmm_out(o, attn, v.slice(0, s, e));
    }
    // (B*heads) x N x hd -> B x H x W x C
    at::Tensor y = out.view({B, heads, H, W, hd}).permute({0, 2, 3, 1, 4}).reshape({B, H, W, C});
    return proj->forward(y);
}

// ---------------------------------------------------------------------------------------------
// Blocks

VitBlockImpl::VitBlockImpl(const SamConfig &c, int window_size_) : window_size(window_size_)
{
    const int64_t grid = c.embed_size();
    norm1 = register_module("norm1", std::make_shared<LayerNormImpl>(c.embed_dim, c.norm_eps));
    const int64_t in = window_size > 0 ? window_size : grid;
    attn = register_module("attn", std::make_shared<VitAttentionImpl>(c.embed_dim, c.num_heads, c.qkv_bias,
                                                                      c.use_rel_pos, in, in));
    norm2 = register_module("norm2", std::make_shared<LayerNormImpl>(c.embed_dim, c.norm_eps));
    mlp = register_module("mlp", std::make_shared<MLPBlockImpl>(c.embed_dim, (int64_t)(c.embed_dim * c.mlp_ratio),
                                                                MLPBlockImpl::GELU));
}

at::Tensor VitBlockImpl::forward(const at::Tensor &x) const
{
    at::Tensor h = norm1->forward(x);
    const int64_t B = x.size(0), H = x.size(1), W = x.size(2), C = x.size(3);
    if (window_size > 0) {
        const int64_t ws = window_size;
        const int64_t ph = (ws - H % ws) % ws, pw = (ws - W % ws) % ws;
        if (ph > 0 || pw > 0)
            h = at::constant_pad_nd(h, {0, 0, 0, pw, 0, ph}, 0.0);
        const int64_t Hp = H + ph, Wp = W + pw;
        h = h.view({B, Hp / ws, ws, Wp / ws, ws, C}).permute({0, 1, 3, 2, 4, 5}).reshape({-1, ws, ws, C});
        h = attn->forward(h);
        h = h.view({B, Hp / ws, Wp / ws, ws, ws, C}).permute({0, 1, 3, 2, 4, 5}).reshape({B, Hp, Wp, C});
        if (Hp > H || Wp > W)
            h = h.slice(1, 0, H).slice(2, 0, W);
    } else {
        h = attn->forward(h);
    }
    at::Tensor y = x + h;
    return y + mlp->forward(norm2->forward(y));
}

ImageEncoderImpl::ImageEncoderImpl(const SamConfig &c)
{
    auto pe = register_module("patch_embed", std::make_shared<torch::nn::Module>());
    patch_proj = pe->register_module("proj", std::make_shared<Conv2dImpl>(c.in_chans, c.embed_dim, c.patch_size,
                                                                           c.patch_size, 0, true));
    const int64_t grid = c.embed_size();
    if (c.use_abs_pos)
        pos_embed = register_parameter("pos_embed", frozen({1, grid, grid, c.embed_dim}), false);
    auto list = register_module("blocks", list_module());
    for (int i = 0; i < c.depth; i++) {
        bool global = false;
        for (int g : c.global_attn_indexes)
            global = global || g == i;
        blocks.push_back(list->register_module(std::to_string(i),
                                               std::make_shared<VitBlockImpl>(c, global ? 0 : c.window_size)));
    }
    auto neck = register_module("neck", list_module());
    neck0 = neck->register_module("0", std::make_shared<Conv2dImpl>(c.embed_dim, c.out_chans, 1, 1, 0, false));
    neck1 = neck->register_module("1", std::make_shared<LayerNorm2dImpl>(c.out_chans, 1e-6));
    neck2 = neck->register_module("2", std::make_shared<Conv2dImpl>(c.out_chans, c.out_chans, 3, 1, 1, false));
    neck3 = neck->register_module("3", std::make_shared<LayerNorm2dImpl>(c.out_chans, 1e-6));
}

at::Tensor ImageEncoderImpl::forward(const at::Tensor &x) const
{
    at::Tensor h = patch_proj->forward(x).permute({0, 2, 3, 1});  // B x h x w x C
    if (pos_embed.defined())
        h = h + pos_embed;
    for (const auto &b : blocks)
        h = b->forward(h);
    h = h.permute({0, 3, 1, 2});
    return neck3->forward(neck2->forward(neck1->forward(neck0->forward(h))));
}

}  // namespace samda
