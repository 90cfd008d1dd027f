// model/sam_transforms.cpp: pre- and post-processing around the network: resizing and
// normalising images into the encoder input (SAM and MedSAM conventions), scaling prompt
// coordinates into the input frame, and bringing low-resolution mask logits back to image size.
#include "internal.h"

#include <torch/nn/functional/upsampling.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>
#include <stdexcept>

namespace samda {

namespace F = torch::nn::functional;

std::pair<int64_t, int64_t> preprocess_shape(int64_t h, int64_t w, int64_t long_side)
{
    // As ResizeLongestSide.get_preprocess_shape: scale in double, round half up.
    const double scale = (double)long_side / (double)std::max(h, w);
    const int64_t nh = (int64_t)((double)h * scale + 0.5);
    const int64_t nw = (int64_t)((double)w * scale + 0.5);
    return {nh, nw};
}

at::Tensor preprocess_image(const at::Tensor &hwc, const SamConfig &c, Convention conv, int64_t *input_h,
                            int64_t *input_w)
{
    if (hwc.dim() != 3 || (hwc.size(2) != 1 && hwc.size(2) != 3))
        throw std::invalid_argument("image must be H x W x 1 or H x W x 3");
    const int64_t H = hwc.size(0), W = hwc.size(1), S = c.img_size;
    at::Tensor x = hwc.to(at::kFloat).permute({2, 0, 1}).unsqueeze(0);  // 1 x C x H x W
    if (x.size(1) == 1)
        x = x.expand({1, 3, H, W});
    x = x.contiguous();
    if (conv == Convention::SAM) {
        auto hw = preprocess_shape(H, W, S);
        // The reference's torch path (apply_image_torch): bilinear, antialias, align_corners=False, on float.
        x = F::interpolate(x, F::InterpolateFuncOptions()
                                  .size(std::vector<int64_t>{hw.first, hw.second})
                                  .mode(torch::kBilinear)
                                  .align_corners(false)
                                  .antialias(true));
        auto opts = x.options();
        at::Tensor mean = at::tensor({c.pixel_mean[0], c.pixel_mean[1], c.pixel_mean[2]}, opts.dtype(at::kDouble))
                              .to(opts).view({1, 3, 1, 1});
        at::Tensor std_ = at::tensor({c.pixel_std[0], c.pixel_std[1], c.pixel_std[2]}, opts.dtype(at::kDouble))
                              .to(opts).view({1, 3, 1, 1});
        x = (x - mean) / std_;
        x = at::constant_pad_nd(x, {0, S - hw.second, 0, S - hw.first}, 0.0);
        if (input_h)
            *input_h = hw.first;
        if (input_w)
            *input_w = hw.second;
    } else {
        // MedSAM: resize to S x S (its skimage order-3 resize with anti-aliasing ~ antialiased bicubic),
        // then min-max scale to [0, 1].
        x = F::interpolate(x, F::InterpolateFuncOptions()
                                  .size(std::vector<int64_t>{S, S})
                                  .mode(torch::kBicubic)
                                  .align_corners(false)
                                  .antialias(true));
        at::Tensor lo = x.min(), hi = x.max();
        x = (x - lo) / at::clamp_min(hi - lo, 1e-8);
        if (input_h)
            *input_h = S;
        if (input_w)
            *input_w = S;
    }
    return x;
}

at::Tensor transform_coords(const at::Tensor &xy, int64_t orig_h, int64_t orig_w, int64_t input_h, int64_t input_w)
{
    // As apply_coords: float64 arithmetic, then float32.
    at::Tensor d = xy.to(at::kDouble).clone();
    d.select(-1, 0).mul_((double)input_w / (double)orig_w);
    d.select(-1, 1).mul_((double)input_h / (double)orig_h);
    return d.to(at::kFloat);
}

namespace {

/** One output coordinate of the two bilinear resizes composed: low-res taps and their weights. */
struct Taps {
    int64_t idx[4];
    float w[4];
    int n;
};

/** Source position of PyTorch's bilinear resize (align_corners false): two taps and a weight. */
void bilinear_src(int64_t dst, int64_t in_size, int64_t out_size, int64_t *i0, int64_t *i1, double *lambda)
{
    const double scale = (double)in_size / (double)out_size;
    double src = std::max(scale * ((double)dst + 0.5) - 0.5, 0.0);
    *i0 = std::min((int64_t)src, in_size - 1);
    *i1 = std::min(*i0 + 1, in_size - 1);
    *lambda = src - (double)*i0;
}

/** For every output coordinate of low (L) -> S (bilinear), crop to [0, crop), -> out (bilinear): the
 *  low-res taps (up to 4, merged when equal) and weights. */
std::vector<Taps> composed_taps(int64_t L, int64_t S, int64_t crop, int64_t out)
{
    std::vector<Taps> t((size_t)out);
    for (int64_t o = 0; o < out; o++) {
        int64_t a0, a1, b0, b1, c0, c1;
        double mu, l0, l1;
        bilinear_src(o, crop, out, &a0, &a1, &mu);
        bilinear_src(a0, L, S, &b0, &b1, &l0);
        bilinear_src(a1, L, S, &c0, &c1, &l1);
        const int64_t idx[4] = {b0, b1, c0, c1};
        const double w[4] = {(1 - mu) * (1 - l0), (1 - mu) * l0, mu * (1 - l1), mu * l1};
        Taps &tp = t[(size_t)o];
        tp.n = 0;
        for (int k = 0; k < 4; k++) {
            int j = 0;
            while (j < tp.n && tp.idx[j] != idx[k])
                j++;
            if (j == tp.n) {
                tp.idx[j] = idx[k];
                tp.w[j] = 0;
                tp.n++;
            }
            tp.w[j] += (float)w[k];
        }
    }
    return t;
}

}  // namespace

// On the CPU the two resizes run composed and separably: columns first (each low-res row to the
// output width), then rows, each output value a sum of at most 4 taps, in parallel over rows. The
// reference's way (a full img_size x img_size intermediate per mask, one thread per mask) cost
// 16 ms per 512 x 512 mask here; the values agree to float rounding (the parity test checks).
at::Tensor postprocess_masks(const at::Tensor &low_res, int64_t img_size, int64_t input_h, int64_t input_w,
                             int64_t orig_h, int64_t orig_w)
{
    const bool grad = at::GradMode::is_enabled() && low_res.requires_grad();
    if (low_res.device().is_cpu() && low_res.scalar_type() == at::kFloat && !grad && low_res.dim() == 4 &&
        low_res.size(2) == low_res.size(3)) {
        const int64_t N = low_res.size(0) * low_res.size(1), L = low_res.size(2);
        const std::vector<Taps> ty = composed_taps(L, img_size, input_h, orig_h);
        const std::vector<Taps> tx = composed_taps(L, img_size, input_w, orig_w);
        at::Tensor src = low_res.contiguous();
        at::Tensor mid = at::empty({N, L, orig_w}, src.options());
        at::Tensor out = at::empty({low_res.size(0), low_res.size(1), orig_h, orig_w}, src.options());
        const float *s = src.data_ptr<float>();
        float *m = mid.data_ptr<float>(), *o = out.data_ptr<float>();
        at::parallel_for(0, N * L, 16, [&](int64_t begin, int64_t end) {
            for (int64_t r = begin; r < end; r++) {
                const float *in = s + r * L;
                float *row = m + r * orig_w;
                for (int64_t x = 0; x < orig_w; x++) {
                    const Taps &t = tx[(size_t)x];
                    float v = 0;
                    for (int k = 0; k < t.n; k++)
                        v += t.w[k] * in[t.idx[k]];
                    row[x] = v;
                }
            }
        });
        at::parallel_for(0, N * orig_h, 16, [&](int64_t begin, int64_t end) {
            for (int64_t r = begin; r < end; r++) {
                const int64_t n = r / orig_h, y = r % orig_h;
                const Taps &t = ty[(size_t)y];
                float *row = o + r * orig_w;
                const float *base = m + n * L * orig_w;
                for (int64_t x = 0; x < orig_w; x++)
                    row[x] = t.w[0] * base[t.idx[0] * orig_w + x];
                for (int k = 1; k < t.n; k++) {
                    const float *in = base + t.idx[k] * orig_w;
                    const float wk = t.w[k];
                    for (int64_t x = 0; x < orig_w; x++)
                        row[x] += wk * in[x];
                }
            }
        });
        return out;
    }
    at::Tensor m = F::interpolate(low_res, F::InterpolateFuncOptions()
                                               .size(std::vector<int64_t>{img_size, img_size})
                                               .mode(torch::kBilinear)
                                               .align_corners(false));
    m = m.slice(2, 0, input_h).slice(3, 0, input_w);
    return F::interpolate(m, F::InterpolateFuncOptions()
                                 .size(std::vector<int64_t>{orig_h, orig_w})
                                 .mode(torch::kBilinear)
                                 .align_corners(false));
}

}  // namespace samda
