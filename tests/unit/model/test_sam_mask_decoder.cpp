// Tests of model/sam_mask_decoder.cpp internals: the inference-only folded cross-attentions
// (tokens -> image, image -> tokens) against the generic attention, at SAM's decoder sizes, with the
// image side shared (batch 1) and per prompt.
#include "internal.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include "check.h"

namespace {

double max_diff(const at::Tensor &a, const at::Tensor &b) { return (a - b).abs().max().item<double>(); }

void randomise(samda::DecoderAttentionImpl &a, at::Generator &gen)
{
    at::NoGradGuard ng;
    for (auto *l : {a.q_proj.get(), a.k_proj.get(), a.v_proj.get(), a.out_proj.get()}) {
        l->weight.copy_(at::randn(l->weight.sizes(), gen) * 0.08);
        l->bias.copy_(at::randn(l->bias.sizes(), gen) * 0.5);
    }
}

void test_folded_attention()
{
    auto gen = at::make_generator<at::CPUGeneratorImpl>(11);
    samda::DecoderAttentionImpl attn(256, 8, 2);
    randomise(attn, gen);
    const int64_t HW = 4096, T = 9, B = 3;
    at::Tensor img1 = at::randn({1, HW, 256}, gen), pe = at::randn({1, HW, 256}, gen);
    at::Tensor imgB = at::randn({B, HW, 256}, gen), tok = at::randn({B, T, 256}, gen);
    struct Case {
        const char *name;
        at::Tensor q, k, v;
    } cases[] = {
        {"tokens->image, shared image", tok, img1 + pe, img1},
        {"tokens->image, per-prompt image", tok, imgB + pe, imgB},
        {"image->tokens, shared image", img1 + pe, tok, tok},
        {"image->tokens, per-prompt image", imgB + pe, tok, tok},
    };
    for (const Case &c : cases) {
        at::Tensor generic, folded;
        {
            at::NoGradGuard ng;  // not inference mode: the generic path
            generic = attn.forward(c.q, c.k, c.v);
        }
        {
            c10::InferenceMode im;
            folded = attn.forward(c.q, c.k, c.v);
        }
        CHECK_EQ(folded.sizes().vec(), generic.sizes().vec());
        const double d = max_diff(folded, generic), scale = generic.abs().max().item<double>();
        printf("%-32s max |generic| %.3g, max abs diff %.3g\n", c.name, scale, d);
        CHECK(d <= 1e-5 * std::max(1.0, scale));
    }
    // The folded forms are the ones taken under inference mode at these sizes.
    {
        c10::InferenceMode im;
        at::Tensor a = attn.tokens_to_image(tok, img1 + pe, img1), b = attn.image_to_tokens(imgB + pe, tok, tok);
        CHECK_EQ(a.sizes().vec(), (std::vector<int64_t>{B, T, 256}));
        CHECK_EQ(b.sizes().vec(), (std::vector<int64_t>{B, HW, 256}));
    }
}

void test_pixel_major_upscaling()
{
    // The inference-only upscaling + hypernetwork product against the reference sequence
    // (transposed convolution, LayerNorm2d, GELU, transposed convolution, GELU, product).
    samda::SamConfig cfg = samda::sam_config_preset("vit_b");
    samda::MaskDecoderImpl dec(cfg);
    auto gen = at::make_generator<at::CPUGeneratorImpl>(5);
    {
        at::NoGradGuard ng;
        for (auto &p : dec.parameters())
            p.copy_(at::randn(p.sizes(), gen) * 0.1);
    }
    const int64_t B = 2, h = 64, w = 64, M = 4;
    at::Tensor keys = at::randn({B, h * w, 256}, gen), hyper = at::randn({B, M, 32}, gen);
    at::Tensor ref;
    {
        at::NoGradGuard ng;
        at::Tensor img = keys.transpose(1, 2).reshape({B, 256, h, w});
        at::Tensor up = at::gelu(dec.up1->forward(at::conv_transpose2d(img, dec.up0->weight, dec.up0->bias, {2, 2})));
        up = at::gelu(at::conv_transpose2d(up, dec.up3->weight, dec.up3->bias, {2, 2}));
        ref = at::matmul(hyper, up.reshape({B, 32, 256 * 256})).reshape({B, M, 256, 256});
    }
    c10::InferenceMode im;
    at::Tensor got = dec.upscale_masks_pixel_major(keys, hyper, h, w);
    CHECK_EQ(got.sizes().vec(), ref.sizes().vec());
    const double d = max_diff(got, ref), scale = ref.abs().max().item<double>();
    printf("pixel-major upscaling          max |reference| %.3g, max abs diff %.3g\n", scale, d);
    CHECK(d <= 1e-5 * std::max(1.0, scale));
}

}  // namespace

int main()
{
    test_folded_attention();
    test_pixel_major_upscaling();
    return samda_test::summary();
}
