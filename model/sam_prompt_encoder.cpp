// model/sam_prompt_encoder.cpp: SAM's prompt encoder: random-Fourier position encoding of points
// and box corners, point-type embeddings, the not-a-point padding token, mask downscaling, and the
// dense position encoding of the embedding grid.
#include "internal.h"

#include <cmath>

namespace samda {

PromptEncoderImpl::PromptEncoderImpl(const SamConfig &c)
    : embed_dim(c.prompt_embed_dim), emb_h(c.embed_size()), emb_w(c.embed_size()), input_h(c.img_size),
      input_w(c.img_size)
{
    auto pe_layer = register_module("pe_layer", std::make_shared<torch::nn::Module>());
    gaussian = pe_layer->register_buffer("positional_encoding_gaussian_matrix", at::zeros({2, embed_dim / 2}));
    auto pts = register_module("point_embeddings", std::make_shared<torch::nn::Module>());
    for (int i = 0; i < 4; i++)  // positive, negative point; box top-left, bottom-right corner
        point_embeddings.push_back(pts->register_module(std::to_string(i), std::make_shared<EmbeddingImpl>(1, embed_dim)));
    not_a_point_embed = register_module("not_a_point_embed", std::make_shared<EmbeddingImpl>(1, embed_dim));
    auto md = register_module("mask_downscaling", std::make_shared<torch::nn::Module>());
    const int64_t mic = c.mask_in_chans;
    mask_conv0 = md->register_module("0", std::make_shared<Conv2dImpl>(1, mic / 4, 2, 2, 0, true));
    mask_norm1 = md->register_module("1", std::make_shared<LayerNorm2dImpl>(mic / 4, 1e-6));
    mask_conv3 = md->register_module("3", std::make_shared<Conv2dImpl>(mic / 4, mic, 2, 2, 0, true));
    mask_norm4 = md->register_module("4", std::make_shared<LayerNorm2dImpl>(mic, 1e-6));
    mask_conv6 = md->register_module("6", std::make_shared<Conv2dImpl>(mic, embed_dim, 1, 1, 0, true));
    no_mask_embed = register_module("no_mask_embed", std::make_shared<EmbeddingImpl>(1, embed_dim));
}

at::Tensor PromptEncoderImpl::pe_encode(const at::Tensor &coords01) const
{
    at::Tensor c = coords01 * 2 - 1;
    c = at::matmul(c, gaussian);
    c = c * (2 * M_PI);
    return at::cat({at::sin(c), at::cos(c)}, -1);
}

at::Tensor PromptEncoderImpl::dense_pe() const
{
    auto opts = gaussian.options().dtype(at::kFloat);
    at::Tensor grid = at::ones({emb_h, emb_w}, opts);
    at::Tensor y = (grid.cumsum(0) - 0.5) / (double)emb_h;
    at::Tensor x = (grid.cumsum(1) - 0.5) / (double)emb_w;
    at::Tensor pe = pe_encode(at::stack({x, y}, -1));  // h x w x C
    return pe.permute({2, 0, 1}).unsqueeze(0);
}

std::pair<at::Tensor, at::Tensor> PromptEncoderImpl::forward(const PromptBatch &p) const
{
    const auto opts = gaussian.options().dtype(at::kFloat);
    int64_t bs = 1;
    if (p.coords.defined())
        bs = p.coords.size(0);
    else if (p.boxes.defined())
        bs = p.boxes.size(0);
    else if (p.masks.defined())
        bs = p.masks.size(0);

    std::vector<at::Tensor> sparse_parts;
    if (p.coords.defined()) {
        at::Tensor pts = p.coords.to(opts) + 0.5;  // centre of the pixel
        at::Tensor labels = p.labels.to(opts);
        if (!p.boxes.defined()) {  // pad with a not-a-point token when no box follows
            pts = at::cat({pts, at::zeros({pts.size(0), 1, 2}, opts)}, 1);
            labels = at::cat({labels, -at::ones({labels.size(0), 1}, opts)}, 1);
        }
        at::Tensor scaled = at::stack({pts.select(2, 0) / (double)input_w, pts.select(2, 1) / (double)input_h}, -1);
        at::Tensor pe = pe_encode(scaled);  // B x N x C
        at::Tensor lab = labels.unsqueeze(-1);
        at::Tensor is_pad = (lab == -1).to(opts), is_neg = (lab == 0).to(opts), is_pos = (lab == 1).to(opts);
        at::Tensor emb = pe * (1 - is_pad) + is_pad * not_a_point_embed->weight.view({1, 1, -1}) +
                         is_neg * point_embeddings[0]->weight.view({1, 1, -1}) +
                         is_pos * point_embeddings[1]->weight.view({1, 1, -1});
        sparse_parts.push_back(emb);
    }
    if (p.boxes.defined()) {
        at::Tensor b = (p.boxes.to(opts) + 0.5).reshape({-1, 2, 2});
        at::Tensor scaled = at::stack({b.select(2, 0) / (double)input_w, b.select(2, 1) / (double)input_h}, -1);
        at::Tensor pe = pe_encode(scaled);  // B x 2 x C
        at::Tensor corners = at::cat({point_embeddings[2]->weight, point_embeddings[3]->weight}, 0).unsqueeze(0);
        sparse_parts.push_back(pe + corners);
    }
    at::Tensor sparse =
        sparse_parts.empty() ? at::empty({bs, 0, embed_dim}, opts) : at::cat(sparse_parts, 1);

    at::Tensor dense;
    if (p.masks.defined()) {
        at::Tensor m = p.masks.to(opts);
        m = at::gelu(mask_norm1->forward(mask_conv0->forward(m)));
        m = at::gelu(mask_norm4->forward(mask_conv3->forward(m)));
        dense = mask_conv6->forward(m);
    } else {
        dense = no_mask_embed->weight.reshape({1, -1, 1, 1}).expand({bs, -1, emb_h, emb_w});
    }
    return {sparse, dense};
}

}  // namespace samda
