// model/sam_transforms.cpp: pre- and post-processing around the network: resizing and
// normalising images into the encoder input (SAM and MedSAM conventions), scaling prompt
// coordinates into the input frame, and bringing low-resolution mask logits back to image size.
#include "internal.h"

#include <torch/nn/functional/upsampling.h>

#include <cmath>
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

at::Tensor postprocess_masks(const at::Tensor &low_res, int64_t img_size, int64_t input_h, int64_t input_w,
                             int64_t orig_h, int64_t orig_w)
{
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
