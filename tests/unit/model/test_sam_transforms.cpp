// Tests of model/sam_transforms.cpp: the CPU mask post-processing (two bilinear resizes composed,
// separably) against the reference sequence of F::interpolate calls, for square, wide, tall, cropped,
// enlarged and reduced geometries.
#include "internal.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <torch/nn/functional/upsampling.h>

#include "check.h"

namespace {

namespace F = torch::nn::functional;

at::Tensor reference(const at::Tensor &low, int64_t S, int64_t ih, int64_t iw, int64_t oh, int64_t ow)
{
    auto opts = [](int64_t h, int64_t w) {
        return F::InterpolateFuncOptions().size(std::vector<int64_t>{h, w}).mode(torch::kBilinear).align_corners(false);
    };
    at::Tensor m = F::interpolate(low, opts(S, S)).slice(2, 0, ih).slice(3, 0, iw);
    return F::interpolate(m, opts(oh, ow));
}

void test_postprocess_geometries()
{
    auto gen = at::make_generator<at::CPUGeneratorImpl>(9);
    struct G {
        int64_t L, S, ih, iw, oh, ow;
    } cases[] = {
        {256, 1024, 1024, 1024, 512, 512},  // CT slice, SAM convention
        {256, 1024, 768, 1024, 768, 1024},  // wide image, same size
        {64, 256, 256, 150, 300, 176},      // tall, cropped, odd sizes
        {64, 256, 200, 256, 1000, 1280},    // enlarged
        {64, 256, 256, 256, 37, 41},        // reduced a lot
    };
    c10::InferenceMode im;
    for (const G &g : cases) {
        at::Tensor low = at::randn({2, 3, g.L, g.L}, gen) * 8;
        at::Tensor got = samda::postprocess_masks(low, g.S, g.ih, g.iw, g.oh, g.ow);
        at::Tensor ref = reference(low, g.S, g.ih, g.iw, g.oh, g.ow);
        CHECK_EQ(got.sizes().vec(), ref.sizes().vec());
        const double d = (got - ref).abs().max().item<double>(), scale = ref.abs().max().item<double>();
        printf("L %ld -> %ld, crop %ldx%ld -> %ldx%ld: max |reference| %.3g, max abs diff %.3g\n", (long)g.L,
               (long)g.S, (long)g.ih, (long)g.iw, (long)g.oh, (long)g.ow, scale, d);
        CHECK(d <= 1e-5 * std::max(1.0, scale));  // float rounding of differently ordered sums
    }
}

}  // namespace

int main()
{
    test_postprocess_geometries();
    return samda_test::summary();
}
