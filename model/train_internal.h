// model/ internal: what supervised training (train.cpp) shares with test-time adaptation
// (tta.cpp): the seeded random stream, timing, training cases and their cached encodings, the
// optimiser and parameter snapshots. Never included outside model/.
#ifndef SAMDA_MODEL_TRAIN_INTERNAL_H
#define SAMDA_MODEL_TRAIN_INTERNAL_H

#include "adapter_internal.h"
#include "random.h"

#include <chrono>
#include <cmath>
#include <string>
#include <vector>

namespace samda {
namespace train {

/* common/random.h's seeded stream as a C++ UniformRandomBitGenerator, for std::shuffle and the
 * <random> distributions: one seed gives the same training run on every machine. */
struct Rng {
    using result_type = uint64_t;
    samda_rng r;
    explicit Rng(uint64_t seed, uint64_t stream = 0) { samda_rng_seed(&r, seed, stream); }
    static constexpr result_type min() { return 0; }
    static constexpr result_type max() { return UINT64_MAX; }
    result_type operator()() { return samda_rng_next(&r); }
};

using Clock = std::chrono::steady_clock;
/** Seconds since t. */
double since(Clock::time_point t);

/** One training or adaptation image: NAME.image.npy and, when present, NAME.mask.npy. */
struct Case {
    std::string name;
    at::Tensor image;  // H x W float (raw values, e.g. HU)
    at::Tensor mask;   // H x W uint8, or undefined
    double spacing[2] = {0, 0}; // row, column pixel spacing in mm; 0 = unknown. From NAME.json
                                // ({"spacing":[row_mm,col_mm]}), else the folder's phantom.json
};

/** The cases of data_dir (sorted by name; a seeded subset of max_cases when > 0); masks required
 *  when need_masks. Throws Failure naming the file on a bad one. */
std::vector<Case> load_cases(const std::string &dir, bool need_masks, int max_cases, uint64_t seed);

/** Cached encoder inputs or embeddings: per case, window group and flip. */
struct Encoded {
    std::vector<int> label_window;                  // label -> window group
    std::vector<int> group_label;                   // window group -> a label with that window
    int n_windows = 0;
    bool flips = false;
    bool full = false;                              // holds preprocessed inputs, not embeddings
    std::vector<at::Tensor> data;                   // (c * n_windows + w) * 2 + f
    std::vector<int> ih, iw;                        // per case
    double seconds = 0;
    at::Tensor get(size_t c, int w, int f) const { return data[(c * (size_t)n_windows + (size_t)w) * 2 + (size_t)f]; }
};

/** Run the frozen encoder once per case, window group (of labels) and flip (when flips). */
Encoded encode_cases(const samda_model *m, const std::vector<Case> &cases, const std::vector<samda_adapter_label> &labels,
                     bool flips, bool full);

// Optimiser (AdamW, written out so it is deterministic and header-light)
struct AdamW {
    std::vector<at::Tensor> params, m, v;
    double lr, wd, b1 = 0.9, b2 = 0.999, eps = 1e-8;
    int64_t t = 0;
    AdamW(std::vector<at::Tensor> p, double lr_, double wd_) : params(std::move(p)), lr(lr_), wd(wd_)
    {
        for (auto &x : params) {
            m.push_back(at::zeros_like(x));
            v.push_back(at::zeros_like(x));
        }
    }
    void zero_grad()
    {
        for (auto &x : params)
            if (x.grad().defined())
                x.mutable_grad().zero_();
    }
    void step()
    {
        at::NoGradGuard ng;
        t++;
        const double c1 = 1 - std::pow(b1, (double)t), c2 = 1 - std::pow(b2, (double)t);
        for (size_t i = 0; i < params.size(); i++) {
            at::Tensor &p = params[i];
            if (!p.grad().defined())
                continue;
            const at::Tensor &g = p.grad();
            m[i].mul_(b1).add_(g, 1 - b1);
            v[i].mul_(b2).addcmul_(g, g, 1 - b2);
            if (wd > 0 && p.dim() > 1)
                p.mul_(1 - lr * wd);
            p.addcdiv_(m[i] / c1, (v[i] / c2).sqrt_().add_(eps), -lr);
        }
    }
};

/** Detached copies of ps, to restore the best or last good weights. */
std::vector<at::Tensor> snapshot(const std::vector<at::Tensor> &ps);
/** Copy s back into ps (no gradient). */
void restore(std::vector<at::Tensor> &ps, const std::vector<at::Tensor> &s);
/** Whether to print progress: p > 0 always, p < 0 when stderr is a terminal. */
bool show_progress(int p);

}  // namespace train
}  // namespace samda

#endif
