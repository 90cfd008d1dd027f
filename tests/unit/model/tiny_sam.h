/* What the adapter tests share (test_adapter.cpp, test_adapt_safety.cpp): a tiny SAM with deterministic
 * random weights (no fixture needed), a two-label adapter on it, synthetic CT-like slices with exact
 * masks, and parameter snapshots. Include before check.h (see there). Not thread-safe: test code. */
#ifndef SAMDA_TESTS_MODEL_TINY_SAM_H
#define SAMDA_TESTS_MODEL_TINY_SAM_H

#include "adapter_internal.h"
#include "model.h"
#include "state_dict.h"

#include <sys/stat.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace samda_test {

/* Writes the tiny model's sizes (ViT 96 wide, 4 blocks, 256 px; the official decoder) as DIR/tiny.json
 * and returns that path. */
inline std::string write_tiny_config(const std::string &dir)
{
    const std::string path = dir + "/tiny.json";
    std::ofstream f(path);
    f << "{\"image_encoder\": {\"img_size\": 256, \"patch_size\": 16, \"embed_dim\": 96, \"depth\": 4, "
         "\"num_heads\": 4, \"global_attn_indexes\": [1, 3], \"window_size\": 7, \"mlp_ratio\": 4, \"out_chans\": 256},"
         " \"prompt_encoder\": {\"embed_dim\": 256, \"mask_in_chans\": 16},"
         " \"mask_decoder\": {\"transformer_depth\": 2, \"mlp_dim\": 2048, \"num_heads\": 8}}";
    return path;
}

/* The tiny model with random weights from seed, on the CPU, one thread (oversubscribed OpenMP is slow
 * on a busy machine). NULL (message on stderr) on failure; the caller closes it. */
inline samda_model *tiny_model(const std::string &config, uint64_t seed)
{
    samda_model_params p;
    samda_model_params_init(&p);
    p.arch = "custom";
    p.config_path = config.c_str();
    p.random_weights = 1;
    p.seed = seed;
    p.device = SAMDA_MODEL_DEVICE_CPU;
    p.n_threads = 1;
    samda_error err{};
    samda_model *m = samda_model_open(&p, &err);
    if (!m)
        fprintf(stderr, "open tiny: %s\n", err.message);
    return m;
}

/* A CT label (window 50/400) with placeholder SNOMED codes. */
inline samda_adapter_label ct_label(const char *name, int value)
{
    samda_adapter_label l{};
    snprintf(l.name, sizeof l.name, "%s", name);
    l.value = value;
    snprintf(l.category_scheme, sizeof l.category_scheme, "SCT");
    snprintf(l.category_code, sizeof l.category_code, "123037004");
    snprintf(l.category_meaning, sizeof l.category_meaning, "Anatomical Structure");
    snprintf(l.type_scheme, sizeof l.type_scheme, "SCT");
    snprintf(l.type_code, sizeof l.type_code, "10200004");
    snprintf(l.type_meaning, sizeof l.type_meaning, "Liver");
    l.rgb[0] = 200;
    l.window_kind = SAMDA_WINDOW_CT;
    l.window_a = 50;
    l.window_b = 400;
    return l;
}

/* A fresh adapter for the synthetic slices' labels, organ (1) and vessel (4). NULL (message on stderr)
 * on failure; the caller frees it. */
inline samda_adapter *two_label_adapter(samda_model *m, int rank, int tokens)
{
    samda_adapter_label ls[2] = {ct_label("organ", 1), ct_label("vessel", 4)};
    samda_adapter_params ap;
    samda_adapter_params_init(&ap);
    ap.rank = rank;
    ap.n_tokens = tokens;
    ap.labels = ls;
    ap.n_labels = 2;
    samda_error err{};
    samda_adapter *a = samda_adapter_new(m, &ap, &err);
    if (!a)
        fprintf(stderr, "adapter_new: %s\n", err.message);
    return a;
}

/* n synthetic CT-like slices in dir (case_NNN.image.npy, and .mask.npy with masks): a large "organ"
 * ellipse (label 1, ~60 HU) and a small bright "vessel" disc (label 4, ~200 HU) in soft tissue with
 * noise; positions and sizes vary with the index and seed. */
inline void write_dataset(const std::string &dir, int n, int size, uint64_t seed, double noise, bool masks = true)
{
    mkdir(dir.c_str(), 0755);
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> nd(0, 1);
    std::uniform_real_distribution<double> u(0, 1);
    for (int i = 0; i < n; i++) {
        at::Tensor img = at::empty({size, size}, at::kShort), mask = at::zeros({size, size}, at::kByte);
        const double cx = size * (0.35 + 0.2 * u(rng)), cy = size * (0.4 + 0.2 * u(rng));
        const double rx = size * (0.18 + 0.08 * u(rng)), ry = size * (0.12 + 0.06 * u(rng));
        const double vx = size * (0.7 + 0.1 * u(rng)), vy = size * (0.6 + 0.1 * u(rng)), vr = size * 0.06;
        auto pi = img.accessor<int16_t, 2>();
        auto pm = mask.accessor<uint8_t, 2>();
        for (int y = 0; y < size; y++)
            for (int x = 0; x < size; x++) {
                double hu = -20;
                const double bx = (x - size / 2.0) / (size * 0.46), by = (y - size / 2.0) / (size * 0.4);
                if (bx * bx + by * by > 1)
                    hu = -1000;
                const double ex = (x - cx) / rx, ey = (y - cy) / ry;
                if (ex * ex + ey * ey <= 1) {
                    hu = 60;
                    pm[y][x] = 1;
                }
                if ((x - vx) * (x - vx) + (y - vy) * (y - vy) <= vr * vr) {
                    hu = 200;
                    pm[y][x] = 4;
                }
                pi[y][x] = (int16_t)std::lround(hu + noise * nd(rng));
            }
        char name[64];
        snprintf(name, sizeof name, "/case_%03d", i);
        samda::npy::save(dir + name + ".image.npy", img);
        if (masks)
            samda::npy::save(dir + name + ".mask.npy", mask);
    }
}

/* A copy of every parameter of a's network. */
inline std::vector<at::Tensor> params_of(const samda_adapter *a)
{
    std::vector<at::Tensor> v;
    for (const auto &p : a->net->parameters(true))
        v.push_back(p.detach().clone());
    return v;
}

/* Whether two parameter lists are equal element for element. */
inline bool same(const std::vector<at::Tensor> &a, const std::vector<at::Tensor> &b)
{
    if (a.size() != b.size())
        return false;
    for (size_t i = 0; i < a.size(); i++)
        if (!a[i].equal(b[i]))
            return false;
    return true;
}

}  // namespace samda_test

#endif
