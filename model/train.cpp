// model/train.cpp: supervised adaptation (adapter, decoder or whole model), evaluation (Dice),
// and writing a model back to a .pth (test-time adaptation: tta.cpp, over train_internal.h). Data: a folder of NAME.image.npy and
// NAME.mask.npy. The frozen encoder runs once per slice, window and flip; epochs then cost decoder
// passes only (scope FULL runs the encoder in every step instead).
#include "train_internal.h"
#include "safetensors.h"
#include "state_dict.h"

#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <numeric>
#include <random>
#include <set>

namespace samda {
namespace train {

double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// ---------------------------------------------------------------------------------------------
// Memory

void reset_peak_rss()
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f) {
        fputs("5", f);
        fclose(f);
    }
}

size_t peak_rss()
{
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line))
        if (line.compare(0, 6, "VmHWM:") == 0)
            return (size_t)std::strtoull(line.c_str() + 6, nullptr, 10) * 1024;
    return 0;
}

// ---------------------------------------------------------------------------------------------
// Data

bool ends_with(const std::string &s, const std::string &t)
{
    return s.size() >= t.size() && s.compare(s.size() - t.size(), t.size(), t) == 0;
}

at::Tensor as_2d(at::Tensor t, const std::string &what)
{
    if (t.dim() == 3 && t.size(2) == 1)
        t = t.squeeze(2);
    if (t.dim() != 2 || t.size(0) < 8 || t.size(1) < 8 || t.size(0) > 16384 || t.size(1) > 16384)
        raise(SAMDA_EINVAL, what + " is not an H x W array (8..16384 each)");
    return t;
}

/* A file's text, or "" when it does not exist; throws on one that exists but cannot be read. */
std::string read_small_file(const std::string &path)
{
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        struct stat st;
        if (stat(path.c_str(), &st) != 0)
            return std::string();
        raise(SAMDA_EIO, "cannot read " + path);
    }
    std::string t((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (t.size() > (1u << 20))
        raise(SAMDA_EINVAL, path + " is larger than 1 MiB");
    return t;
}

/* The pixel spacing of a case: its sidecar NAME.json {"spacing":[row_mm,col_mm]} (written by the
 * daemon's training sets from DICOM PixelSpacing), else "pixel_spacing_mm" of the folder's
 * phantom.json (samda phantom), else unknown (0, 0). A sidecar without a valid spacing is refused. */
void case_spacing(const std::string &dir, const std::string &name, const std::string &folder_json, double out[2])
{
    out[0] = out[1] = 0;
    const std::string path = dir + "/" + name + ".json";
    const std::string t = read_small_file(path);
    if (!t.empty()) {
        const size_t k = t.find("\"spacing\"");
        const size_t b = k == std::string::npos ? k : t.find('[', k);
        char *end = nullptr;
        double v[2] = {NAN, NAN};
        if (b != std::string::npos) {
            const char *q = t.c_str() + b + 1;
            v[0] = std::strtod(q, &end);
            while (end && (*end == ' ' || *end == ','))
                end++;
            if (end)
                v[1] = std::strtod(end, &end);
        }
        if (!(v[0] > 0 && v[1] > 0 && v[0] < 1000 && v[1] < 1000))
            raise(SAMDA_EINVAL, path + ": expected {\"spacing\":[row_mm,col_mm]} with two positive numbers");
        out[0] = v[0], out[1] = v[1];
        return;
    }
    const size_t k = folder_json.find("\"pixel_spacing_mm\"");
    if (k != std::string::npos) {
        const size_t c = folder_json.find(':', k);
        const double v = c == std::string::npos ? NAN : std::strtod(folder_json.c_str() + c + 1, nullptr);
        if (v > 0 && v < 1000)
            out[0] = out[1] = v;
    }
}

std::vector<Case> load_cases(const std::string &dir, bool need_masks, int max_cases, uint64_t seed)
{
    struct stat st;
    if (stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
        raise(SAMDA_ENOENT, "data folder " + dir + " not found");
    std::vector<std::string> names;
    DIR *d = opendir(dir.c_str());
    if (!d)
        raise(SAMDA_EIO, "cannot list " + dir + ": " + strerror(errno));
    while (struct dirent *e = readdir(d)) {
        std::string n = e->d_name;
        if (ends_with(n, ".image.npy"))
            names.push_back(n.substr(0, n.size() - 10));
    }
    closedir(d);
    std::sort(names.begin(), names.end());
    if (names.empty())
        raise(SAMDA_EINVAL, "no NAME.image.npy files in " + dir);
    if (max_cases > 0 && (size_t)max_cases < names.size()) {
        Rng rng(seed, 0x5eed); /* case subset: its own stream */
        std::shuffle(names.begin(), names.end(), rng);
        names.resize((size_t)max_cases);
        std::sort(names.begin(), names.end());
    }
    std::vector<Case> cases;
    const std::string folder_json = read_small_file(dir + "/phantom.json");
    for (const auto &n : names) {
        Case c;
        c.name = n;
        case_spacing(dir, n, folder_json, c.spacing);
        const std::string ip = dir + "/" + n + ".image.npy", mp = dir + "/" + n + ".mask.npy";
        try {
            c.image = as_2d(npy::load_tensor(ip), ip).to(at::kFloat).contiguous();
            if (need_masks) {
                if (stat(mp.c_str(), &st) != 0)
                    raise(SAMDA_EINVAL, "case " + n + " has no " + n + ".mask.npy");
                c.mask = as_2d(npy::load_tensor(mp), mp);
                if (c.mask.is_floating_point() || c.mask.min().item<int64_t>() < 0 || c.mask.max().item<int64_t>() > 255)
                    raise(SAMDA_EINVAL, mp + " must hold integer label ids 0..255");
                c.mask = c.mask.to(at::kByte).contiguous();
                if (c.mask.sizes() != c.image.sizes())
                    raise(SAMDA_EINVAL, "case " + n + ": mask and image sizes differ");
            }
        } catch (const npy::Error &e) {
            raise(SAMDA_EINVAL, e.what());
        }
        cases.push_back(std::move(c));
    }
    return cases;
}

/** Labels used for training/eval: the adapter's, or (no adapter) every value present, abdomen window. */
std::vector<samda_adapter_label> effective_labels(const samda_adapter *a, const std::vector<Case> &cases)
{
    if (a)
        return a->labels;
    std::set<int> values;
    for (const auto &c : cases)
        if (c.mask.defined()) {
            at::Tensor u = std::get<0>(at::_unique(c.mask.flatten()));
            for (int64_t i = 0; i < u.numel(); i++)
                if (u[i].item<int>() > 0)
                    values.insert(u[i].item<int>());
        }
    std::vector<samda_adapter_label> out;
    for (int v : values) {
        samda_adapter_label l{};
        snprintf(l.name, sizeof l.name, "label%d", v);
        l.value = v;
        l.window_kind = SAMDA_WINDOW_CT;
        l.window_a = 50;
        l.window_b = 400;
        out.push_back(l);
    }
    return out;
}

bool same_window(const samda_adapter_label &a, const samda_adapter_label &b)
{
    return a.window_kind == b.window_kind && a.window_a == b.window_a && a.window_b == b.window_b;
}

Encoded encode_cases(const samda_model *m, const std::vector<Case> &cases, const std::vector<samda_adapter_label> &labels,
                     bool flips, bool full)
{
    Encoded enc;
    enc.flips = flips;
    enc.full = full;
    for (size_t l = 0; l < labels.size(); l++) {
        int g = -1;
        for (size_t k = 0; k < enc.group_label.size(); k++)
            if (same_window(labels[(size_t)enc.group_label[k]], labels[l]))
                g = (int)k;
        if (g < 0) {
            g = (int)enc.group_label.size();
            enc.group_label.push_back((int)l);
        }
        enc.label_window.push_back(g);
    }
    enc.n_windows = (int)enc.group_label.size();
    enc.data.resize(cases.size() * (size_t)enc.n_windows * 2);
    enc.ih.resize(cases.size());
    enc.iw.resize(cases.size());
    const auto t0 = Clock::now();
    const SamImpl &sam = model_network(m);
    samda_model_info info;
    samda_model_get_info(m, &info, nullptr);
    const Convention conv = info.convention == SAMDA_MODEL_CONVENTION_MEDSAM ? Convention::MEDSAM : Convention::SAM;
    const at::Device dev = model_device(m);
    const size_t chunk = (size_t)std::max(1, info.max_batch);
    std::vector<std::pair<size_t, at::Tensor>> pending;  // slot, preprocessed input
    auto flush = [&]() {
        if (pending.empty())
            return;
        std::vector<at::Tensor> xs;
        for (auto &p : pending)
            xs.push_back(p.second);
        c10::InferenceMode guard;
        at::Tensor emb = sam.image_encoder->forward(at::cat(xs, 0)).to(at::kFloat);
        for (size_t i = 0; i < pending.size(); i++)
            enc.data[pending[i].first] = emb[(int64_t)i].unsqueeze(0).clone();
        pending.clear();
    };
    for (size_t c = 0; c < cases.size(); c++) {
        for (int w = 0; w < enc.n_windows; w++) {
            at::Tensor win = window_values(labels[(size_t)enc.group_label[(size_t)w]], cases[c].image);
            for (int f = 0; f < (flips ? 2 : 1); f++) {
                at::Tensor img = f ? win.flip({1}) : win;
                int64_t ih = 0, iw = 0;
                at::Tensor x;
                {
                    c10::InferenceMode guard;
                    x = preprocess_image(img.unsqueeze(2).to(dev), sam.cfg, conv, &ih, &iw).clone();
                }
                x = x.clone();  // a normal tensor (usable with autograd)
                enc.ih[c] = (int)ih;
                enc.iw[c] = (int)iw;
                const size_t slot = (c * (size_t)enc.n_windows + (size_t)w) * 2 + (size_t)f;
                if (full) {
                    enc.data[slot] = x;
                } else {
                    pending.emplace_back(slot, x);
                    if (pending.size() >= chunk)
                        flush();
                }
            }
        }
    }
    flush();
    enc.seconds = since(t0);
    return enc;
}

/** Low-res target (1 x L x L, values 0..1) of a binary H x W mask in the S x S input frame. */
at::Tensor low_res_target(const at::Tensor &bin, int ih, int iw, int S, int L)
{
    at::Tensor t = bin.to(at::kFloat).unsqueeze(0).unsqueeze(0);
    t = at::upsample_bilinear2d(t, {ih, iw}, false);
    t = at::constant_pad_nd(t, {0, S - iw, 0, S - ih}, 0.0);
    t = at::adaptive_avg_pool2d(t, {L, L});
    return t.squeeze(0);
}

struct Item {
    size_t c;
    int label;
    int flip;
    bool present;
    float box[4];     // tight box of the (flipped) mask, original pixels
    at::Tensor target;  // 1 x L x L
    at::Tensor fg;      // foreground pixel indices (flattened), for point prompts
};

std::vector<Item> make_items(const std::vector<Case> &cases, const std::vector<size_t> &which,
                             const std::vector<samda_adapter_label> &labels, const Encoded &enc, const SamConfig &cfg,
                             const at::Device &dev)
{
    std::vector<Item> items;
    const int S = cfg.img_size, L = cfg.low_res_size();
    for (size_t c : which) {
        for (size_t l = 0; l < labels.size(); l++) {
            at::Tensor bin0 = cases[c].mask.eq(labels[l].value);
            for (int f = 0; f < (enc.flips ? 2 : 1); f++) {
                Item it{};
                it.c = c;
                it.label = (int)l;
                it.flip = f;
                at::Tensor bin = f ? bin0.flip({1}) : bin0;
                at::Tensor nz = bin.flatten().nonzero().flatten();
                it.present = nz.numel() > 0;
                if (it.present) {
                    const int64_t W = bin.size(1);
                    at::Tensor ys = nz.div(W, "floor"), xs = nz.remainder(W);
                    it.box[0] = (float)xs.min().item<int64_t>();
                    it.box[1] = (float)ys.min().item<int64_t>();
                    it.box[2] = (float)xs.max().item<int64_t>();
                    it.box[3] = (float)ys.max().item<int64_t>();
                    it.fg = nz;
                }
                it.target = low_res_target(bin, enc.ih[c], enc.iw[c], S, L).to(dev);
                items.push_back(std::move(it));
            }
        }
    }
    return items;
}

// ---------------------------------------------------------------------------------------------
// Forward passes and losses

enum class Mode { FREE, BOX, POINT };

struct Ctx {
    const samda_model *m;
    SamImpl *sam;
    samda_adapter *a;  // may be NULL
    const std::vector<Case> *cases;
    const Encoded *enc;
    at::Tensor dense_pe;
};

at::Tensor batch_embeddings(const Ctx &x, const std::vector<const Item *> &b)
{
    std::vector<at::Tensor> v;
    for (const Item *it : b)
        v.push_back(x.enc->get(it->c, x.enc->label_window[(size_t)it->label], it->flip));
    at::Tensor t = at::cat(v, 0);
    if (x.enc->full)
        return x.sam->image_encoder->forward(t);
    return t;
}

/** (low_res B x 1 x L x L, iou B x 1). */
std::pair<at::Tensor, at::Tensor> forward_batch(const Ctx &x, const std::vector<const Item *> &b, Mode mode,
                                                Rng *rng, bool jitter)
{
    at::Tensor emb = batch_embeddings(x, b);
    const at::Device dev = emb.device();
    if (mode == Mode::FREE) {
        std::vector<int64_t> lab;
        for (const Item *it : b)
            lab.push_back(it->label);
        at::Tensor li = at::tensor(lab, at::TensorOptions().dtype(at::kLong)).to(dev);
        return adapter_forward_free(*x.sam, *x.a->net, x.dense_pe, emb, li);
    }
    PromptBatch pb;
    std::normal_distribution<double> nd(0.0, 1.0);
    if (mode == Mode::BOX) {
        std::vector<at::Tensor> boxes;
        for (const Item *it : b) {
            const Case &c = (*x.cases)[it->c];
            const double H = (double)c.image.size(0), W = (double)c.image.size(1);
            float bx[4];
            const double bw = it->box[2] - it->box[0] + 1, bh = it->box[3] - it->box[1] + 1;
            for (int k = 0; k < 4; k++) {
                double v = it->box[k];
                if (jitter && rng) {
                    double s = 0.1 * ((k % 2) ? bh : bw);
                    v += std::max(-20.0, std::min(20.0, nd(*rng) * s));
                }
                v = std::max(0.0, std::min(((k % 2) ? H : W) - 1, v));
                bx[k] = (float)v;
            }
            at::Tensor t = at::tensor(std::vector<float>(bx, bx + 4)).reshape({1, 2, 2});
            boxes.push_back(transform_coords(t, (int64_t)H, (int64_t)W, x.enc->ih[it->c], x.enc->iw[it->c]).reshape({1, 4}));
        }
        pb.boxes = at::cat(boxes, 0).to(dev);
    } else {
        std::uniform_int_distribution<int> nk(1, 3);
        const int k = rng ? nk(*rng) : 1;
        std::vector<at::Tensor> pts;
        for (const Item *it : b) {
            const Case &c = (*x.cases)[it->c];
            const int64_t W = c.image.size(1);
            std::vector<float> xy;
            for (int j = 0; j < k; j++) {
                int64_t idx;
                if (rng) {
                    std::uniform_int_distribution<int64_t> pick(0, it->fg.numel() - 1);
                    idx = it->fg[pick(*rng)].item<int64_t>();
                } else {
                    idx = it->fg[it->fg.numel() / 2].item<int64_t>();
                }
                xy.push_back((float)(idx % W));
                xy.push_back((float)(idx / W));
            }
            at::Tensor t = at::tensor(xy).reshape({1, k, 2});
            pts.push_back(transform_coords(t, c.image.size(0), W, x.enc->ih[it->c], x.enc->iw[it->c]));
        }
        pb.coords = at::cat(pts, 0).to(dev);
        pb.labels = at::ones({(int64_t)b.size(), k}, at::TensorOptions().dtype(at::kInt)).to(dev);
    }
    const int64_t set = x.a ? (int64_t)x.a->labels.size() : 0;
    return adapter_forward_prompted(*x.sam, x.a ? x.a->net.get() : nullptr, x.dense_pe, emb, pb, set);
}

at::Tensor seg_loss(const at::Tensor &logits, const at::Tensor &iou_pred, const at::Tensor &target)
{
    at::Tensor bce = at::binary_cross_entropy_with_logits(logits, target);
    at::Tensor p = at::sigmoid(logits).flatten(1), t = target.flatten(1);
    at::Tensor inter = (p * t).sum(1), denom = p.sum(1) + t.sum(1);
    at::Tensor dice = (1 - (2 * inter + 1) / (denom + 1)).mean();
    // The IoU head learns the IoU of the thresholded mask (used by test-time adaptation's guards).
    at::Tensor hard = (logits.detach() > 0).to(at::kFloat).flatten(1), tb = (t > 0.5).to(at::kFloat);
    at::Tensor i2 = (hard * tb).sum(1), u2 = (hard + tb).clamp_max(1).sum(1);
    at::Tensor iou_true = at::where(u2 > 0, i2 / u2.clamp_min(1), at::ones_like(u2));
    at::Tensor iou_loss = at::mse_loss(iou_pred.flatten(), iou_true);
    return bce + dice + iou_loss;
}

// ---------------------------------------------------------------------------------------------
// Evaluation

struct EvalResult {
    std::vector<std::vector<std::pair<int, double>>> per_case;  // (label index, dice) per case
    std::vector<std::vector<samda_mask_metrics>> per_case_mm;   // beside per_case, when surface
    std::vector<double> tp, fp, fn;                              // per label
    std::vector<int> false_pos;   // per label: cases without it in the ground truth where it was predicted
    bool surface = false;         // HD95 and volume difference computed
    bool mm = false;              // every case has a pixel spacing: HD95 in mm
    double mean = 0;
};

/* Dice per (case, label) present in the ground truth; with surface also HD95 and the area difference
 * (in mm when every case has a spacing, else in pixels for all). */
EvalResult evaluate(const Ctx &x, const std::vector<size_t> &which, const std::vector<samda_adapter_label> &labels,
                    Mode mode, bool surface = false)
{
    EvalResult r;
    r.tp.assign(labels.size(), 0), r.fp.assign(labels.size(), 0), r.fn.assign(labels.size(), 0);
    r.false_pos.assign(labels.size(), 0);
    r.surface = surface;
    r.mm = surface && !which.empty();
    for (size_t c : which)
        r.mm = r.mm && (*x.cases)[c].spacing[0] > 0 && (*x.cases)[c].spacing[1] > 0;
    double sum = 0;
    int n = 0;
    at::NoGradGuard ng;
    for (size_t c : which) {
        const Case &cs = (*x.cases)[c];
        std::vector<Item> items;
        for (size_t l = 0; l < labels.size(); l++) {
            Item it{};
            it.c = c;
            it.label = (int)l;
            at::Tensor bin = cs.mask.eq(labels[l].value);
            at::Tensor nz = bin.flatten().nonzero().flatten();
            it.present = nz.numel() > 0;
            if (it.present) {
                const int64_t W = bin.size(1);
                it.box[0] = (float)nz.remainder(W).min().item<int64_t>();
                it.box[1] = (float)nz.div(W, "floor").min().item<int64_t>();
                it.box[2] = (float)nz.remainder(W).max().item<int64_t>();
                it.box[3] = (float)nz.div(W, "floor").max().item<int64_t>();
                it.fg = nz;
            } else if (mode != Mode::FREE) {
                continue;
            }
            items.push_back(it);
        }
        r.per_case.emplace_back();
        r.per_case_mm.emplace_back();
        if (items.empty())
            continue;
        std::vector<const Item *> b;
        for (auto &it : items)
            b.push_back(&it);
        auto out = forward_batch(x, b, mode, nullptr, false);
        at::Tensor full = postprocess_masks(out.first.to(at::kFloat), x.sam->cfg.img_size, x.enc->ih[c], x.enc->iw[c],
                                            cs.image.size(0), cs.image.size(1))
                              .gt(0.0)
                              .to(at::kCPU);
        for (size_t i = 0; i < items.size(); i++) {
            const int l = items[i].label;
            at::Tensor pred = full[(int64_t)i][0];
            at::Tensor gt = cs.mask.eq(labels[(size_t)l].value);
            const double tp = (pred & gt).sum().item<double>();
            const double ps = pred.sum().item<double>(), gs = gt.sum().item<double>();
            r.tp[(size_t)l] += tp, r.fp[(size_t)l] += ps - tp, r.fn[(size_t)l] += gs - tp;
            if (gs > 0) {
                const double d = 2 * tp / (ps + gs);
                r.per_case.back().emplace_back(l, d);
                sum += d;
                n++;
                if (surface) {
                    at::Tensor p8 = pred.to(at::kByte).contiguous(), g8 = gt.to(at::kByte).contiguous();
                    samda_mask_metrics mm;
                    samda_error e;
                    if (samda_mask_metrics_compute(p8.data_ptr<uint8_t>(), g8.data_ptr<uint8_t>(), (int)gt.size(0),
                                                   (int)gt.size(1), r.mm ? cs.spacing : nullptr, &mm, &e) != SAMDA_OK)
                        raise(SAMDA_EINVAL, e.message);
                    r.per_case_mm.back().push_back(mm);
                }
            } else if (ps > 0) {
                r.false_pos[(size_t)l]++;
            }
        }
    }
    r.mean = n ? sum / n : 0.0;
    return r;
}

std::string eval_json(const EvalResult &r, const std::vector<Case> &cases, const std::vector<size_t> &which,
                      const std::vector<samda_adapter_label> &labels, Mode mode)
{
    auto num = [](double v) { return std::isfinite(v) ? json_num(v) : std::string("null"); };
    std::string o = std::string("{\"mode\":\"") + (mode == Mode::FREE ? "free" : "box") + "\"";
    int known = 0;
    for (size_t c : which)
        known += cases[c].spacing[0] > 0 && cases[c].spacing[1] > 0;
    if (r.surface)
        o += std::string(",\"hd95_unit\":\"") + (r.mm ? "mm" : "px") + "\",\"spacing_known\":" + std::to_string(known);
    o += ",\"cases\":[";
    for (size_t i = 0; i < which.size(); i++) {
        o += i ? "," : "";
        o += "{\"name\":" + safetensors::json_quote(cases[which[i]].name) + ",\"dice\":{";
        for (size_t k = 0; k < r.per_case[i].size(); k++)
            o += (k ? "," : "") + safetensors::json_quote(labels[(size_t)r.per_case[i][k].first].name) + ":" +
                 json_num(r.per_case[i][k].second);
        o += "}";
        if (r.surface) {
            std::string h = ",\"hd95\":{", v = ",\"volume_diff_pct\":{";
            for (size_t k = 0; k < r.per_case[i].size(); k++) {
                const std::string nm = safetensors::json_quote(labels[(size_t)r.per_case[i][k].first].name);
                h += (k ? "," : "") + nm + ":" + num(r.per_case_mm[i][k].hd95);
                v += (k ? "," : "") + nm + ":" + num(r.per_case_mm[i][k].volume_diff_pct);
            }
            o += h + "}" + v + "}";
        }
        o += "}";
    }
    o += "],\"per_label\":{";
    for (size_t l = 0; l < labels.size(); l++) {
        const double den = 2 * r.tp[l] + r.fp[l] + r.fn[l];
        o += (l ? "," : "") + safetensors::json_quote(labels[l].name) + ":" + (den > 0 ? json_num(2 * r.tp[l] / den) : "null");
    }
    o += "}";
    if (r.surface) {
        /* Per label over all cases: HD95 mean and median over the cases where it is defined, how many
         * cases it is undefined in (label in the ground truth, prediction empty), the area difference
         * of all cases together and the mean of its absolute per-case value. */
        std::vector<double> all_h, all_v;
        o += ",\"labels\":{";
        for (size_t l = 0; l < labels.size(); l++) {
            std::vector<double> h, d, v;
            int undefined = 0;
            for (size_t i = 0; i < r.per_case.size(); i++)
                for (size_t k = 0; k < r.per_case[i].size(); k++)
                    if ((size_t)r.per_case[i][k].first == l) {
                        const samda_mask_metrics &mm = r.per_case_mm[i][k];
                        d.push_back(r.per_case[i][k].second);
                        if (std::isfinite(mm.hd95))
                            h.push_back(mm.hd95);
                        else
                            undefined++;
                        v.push_back(std::fabs(mm.volume_diff_pct));
                    }
            auto mean = [](const std::vector<double> &a) {
                double t = 0;
                for (double q : a)
                    t += q;
                return a.empty() ? NAN : t / (double)a.size();
            };
            auto median = [](std::vector<double> a) {
                if (a.empty())
                    return (double)NAN;
                std::sort(a.begin(), a.end());
                return a.size() % 2 ? a[a.size() / 2] : 0.5 * (a[a.size() / 2 - 1] + a[a.size() / 2]);
            };
            all_h.insert(all_h.end(), h.begin(), h.end());
            all_v.insert(all_v.end(), v.begin(), v.end());
            const double gt_area = r.tp[l] + r.fn[l], pred_area = r.tp[l] + r.fp[l];
            o += (l ? "," : "") + safetensors::json_quote(labels[l].name) + ":{\"cases\":" + std::to_string(d.size()) +
                 ",\"mean_dice\":" + num(mean(d)) + ",\"hd95_mean\":" + num(mean(h)) + ",\"hd95_median\":" +
                 num(median(h)) + ",\"hd95_undefined\":" + std::to_string(undefined) + ",\"volume_diff_pct\":" +
                 num(gt_area > 0 ? 100.0 * (pred_area - gt_area) / gt_area : NAN) + ",\"mean_abs_volume_diff_pct\":" +
                 num(mean(v)) + ",\"false_positive_cases\":" + std::to_string(r.false_pos[l]) + "}";
        }
        double th = 0, tv = 0;
        for (double q : all_h)
            th += q;
        for (double q : all_v)
            tv += q;
        o += "},\"mean_hd95\":" + num(all_h.empty() ? NAN : th / (double)all_h.size()) +
             ",\"mean_abs_volume_diff_pct\":" + num(all_v.empty() ? NAN : tv / (double)all_v.size());
    }
    o += ",\"mean_dice\":" + json_num(r.mean) + "}";
    return o;
}

// ---------------------------------------------------------------------------------------------
// Optimiser (AdamW, written out so it is deterministic and header-light)

std::vector<at::Tensor> snapshot(const std::vector<at::Tensor> &ps)
{
    std::vector<at::Tensor> s;
    for (const auto &p : ps)
        s.push_back(p.detach().clone());
    return s;
}

void restore(std::vector<at::Tensor> &ps, const std::vector<at::Tensor> &s)
{
    at::NoGradGuard ng;
    for (size_t i = 0; i < ps.size(); i++)
        ps[i].copy_(s[i]);
}

bool show_progress(int p) { return p > 0 || (p < 0 && isatty(2)); }

std::string hms(double s)
{
    char b[32];
    int t = (int)std::lround(std::max(0.0, s));
    snprintf(b, sizeof b, "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60);
    return b;
}

}  // namespace train
}  // namespace samda

using namespace samda;
using namespace samda::train;

namespace {

std::vector<at::Tensor> trainable_params(SamImpl &sam, samda_adapter *a, samda_train_scope scope)
{
    std::vector<at::Tensor> ps;
    if (a)
        for (auto &p : a->net->parameters(true))
            ps.push_back(p);
    if (scope == SAMDA_TRAIN_SCOPE_DECODER)
        for (auto &p : sam.mask_decoder->parameters(true))
            ps.push_back(p);
    if (scope == SAMDA_TRAIN_SCOPE_FULL)
        for (auto &p : sam.parameters(true))
            ps.push_back(p);
    return ps;
}

void check_train_params(const samda_model *m, const samda_adapter *a, const samda_train_params *p)
{
    if (!m || !p || !p->data_dir)
        raise(SAMDA_EINVAL, "model, params or data_dir is NULL");
    if (!a && p->scope != SAMDA_TRAIN_SCOPE_FULL)
        raise(SAMDA_EINVAL, "an adapter is required unless scope is FULL");
    if (!a && p->prompt == SAMDA_TRAIN_PROMPT_FREE)
        raise(SAMDA_EINVAL, "prompt-free training needs an adapter (its label tokens); without one, MIXED "
                            "alternates box and point prompts");
    if (p->epochs < 1 || p->epochs > 100000 || !(p->lr > 0) || p->batch < 1 || p->batch > 1024 ||
        !(p->val_split >= 0 && p->val_split <= 0.9) || p->weight_decay < 0 || p->patience < 0)
        raise(SAMDA_EINVAL, "epochs 1..100000, lr > 0, batch 1..1024, val_split 0..0.9, weight_decay >= 0, "
                            "patience >= 0 are required");
    if (a && a->base_fp != samda_model_fingerprint(m))
        raise(SAMDA_EINVAL, "adapter belongs to another model");
}

/* The seeded split of cases into training and validation (sorted case indexes). */
struct Split {
    std::vector<size_t> tr, val;
};

Split split_cases(size_t n_cases, double val_split, size_t min_val, Rng &rng)
{
    std::vector<size_t> order(n_cases);
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), rng);
    size_t n_val = (size_t)std::floor(val_split * (double)n_cases);
    if (val_split > 0 && n_val < min_val)
        n_val = std::min(min_val, n_cases / 2);
    if (val_split > 0 && n_val == 0 && n_cases >= 2)
        n_val = 1;
    Split sp;
    sp.val.assign(order.begin(), order.begin() + (long)n_val);
    sp.tr.assign(order.begin() + (long)n_val, order.end());
    std::sort(sp.val.begin(), sp.val.end());
    std::sort(sp.tr.begin(), sp.tr.end());
    if (sp.tr.empty())
        raise(SAMDA_EINVAL, "no training cases left after the validation split");
    return sp;
}

/* The prompt of the k-th batch: the configured one, MIXED cycling free/box/free/point (box/point
 * without an adapter, which has no label tokens for prompt-free). */
Mode batch_mode(const samda_train_params *p, bool have_adapter, size_t k)
{
    Mode mode;
    switch (p->prompt) {
    case SAMDA_TRAIN_PROMPT_FREE: mode = Mode::FREE; break;
    case SAMDA_TRAIN_PROMPT_BOX: mode = Mode::BOX; break;
    case SAMDA_TRAIN_PROMPT_POINT: mode = Mode::POINT; break;
    default: {
        static const Mode cycle[4] = {Mode::FREE, Mode::BOX, Mode::FREE, Mode::POINT};
        mode = cycle[k % 4];
    }
    }
    if (!have_adapter && mode == Mode::FREE)
        mode = Mode::BOX;
    if (!have_adapter && p->prompt == SAMDA_TRAIN_PROMPT_MIXED)
        mode = k % 2 ? Mode::POINT : Mode::BOX;
    return mode;
}

/* What one training run shares between its epochs. */
struct TrainRun {
    const samda_train_params *p;
    Ctx *x;
    SamImpl *sam;
    std::vector<Item> *items;
    AdamW *opt;
    Rng *rng;
    Clock::time_point t_start;
    size_t batch_counter = 0;
    double epoch_seconds = 0; // of the previous epoch with its validation, for the ETA
    bool progress = false;
};

/* One epoch over the shuffled items; returns the mean batch loss (0 when no batch ran). */
double run_epoch(TrainRun &r, int ep)
{
    const samda_train_params *p = r.p;
    const auto t_ep = Clock::now();
    std::vector<size_t> idx(r.items->size());
    std::iota(idx.begin(), idx.end(), 0);
    std::shuffle(idx.begin(), idx.end(), *r.rng);
    double loss_sum = 0;
    int n_batches = 0;
    const size_t total_batches = (idx.size() + (size_t)p->batch - 1) / (size_t)p->batch;
    for (size_t s = 0; s < idx.size(); s += (size_t)p->batch) {
        const Mode mode = batch_mode(p, r.x->a != nullptr, r.batch_counter++);
        std::vector<const Item *> b;
        for (size_t k = s; k < std::min(idx.size(), s + (size_t)p->batch); k++)
            if (mode == Mode::FREE || (*r.items)[idx[k]].present)
                b.push_back(&(*r.items)[idx[k]]);
        if (b.empty())
            continue;
        r.sam->train();
        r.opt->zero_grad();
        auto out = forward_batch(*r.x, b, mode, r.rng, true);
        std::vector<at::Tensor> tg;
        for (const Item *it : b)
            tg.push_back(it->target);
        at::Tensor loss = seg_loss(out.first, out.second, at::stack(tg, 0));
        loss.backward();
        r.opt->step();
        loss_sum += loss.item<double>();
        n_batches++;
        if (p->max_seconds > 0 && since(r.t_start) > p->max_seconds)
            break;
        if (r.progress) {
            const double el = since(t_ep);
            const double per = el / (double)(s / (size_t)p->batch + 1);
            const double eta = per * (double)(total_batches - s / (size_t)p->batch - 1) +
                               (r.epoch_seconds > 0 ? r.epoch_seconds : per * (double)total_batches) * (p->epochs - ep);
            fprintf(stderr, "\rtrain: epoch %d/%d batch %zu/%zu loss %.4f  ETA %s   ", ep, p->epochs,
                    s / (size_t)p->batch + 1, total_batches, loss_sum / n_batches, hms(eta).c_str());
        }
    }
    return n_batches ? loss_sum / n_batches : 0;
}

/* The box guard's outcome (samda_train_report). */
struct BoxGuard {
    bool on = false;
    int n_cases = 0;
    bool on_val = false;
    double parent = NAN, base = NAN, after = NAN;
    std::vector<double> parent_label;  // per label (NaN: not in the guard's cases)
    bool rolled_back = false;
    int label_epochs = 0;  // epochs of the label-tokens-only phase after a rollback
    std::string why;       // why shared parts were not kept (empty: they may be)
};

/* Shared parts (everything but the label tokens) change box-prompted decoding; when a trained adapter
 * (one with a version) is adapted further, they are trained only when the guard holds out at least
 * this many cases, else the label tokens alone are (docs/adaptation.md, "the box guard"). */
constexpr size_t kMinGuardCases = 4;

/* Mean Dice per label over the cases of r (NaN where a label never occurs). */
std::vector<double> label_means(const EvalResult &r, size_t n_labels)
{
    std::vector<double> sum(n_labels, 0.0), n(n_labels, 0.0);
    for (const auto &c : r.per_case)
        for (const auto &ld : c)
            sum[(size_t)ld.first] += ld.second, n[(size_t)ld.first] += 1;
    for (size_t l = 0; l < n_labels; l++)
        sum[l] = n[l] > 0 ? sum[l] / n[l] : NAN;
    return sum;
}

/* The label whose box-prompted Dice in now falls below the parent's (-1: none does). */
int box_label_below(const BoxGuard &g, const std::vector<double> &now)
{
    for (size_t l = 0; l < now.size() && l < g.parent_label.size(); l++)
        if (!std::isnan(g.parent_label[l]) && !(now[l] >= g.parent_label[l]))
            return (int)l;
    return -1;
}

/* The label tokens of a (its input tokens, and in every block the rows of the label token sets;
 * the last row, the prompted set, is not one of them). */
bool is_label_tensor(const samda_adapter *a, const at::Tensor &t)
{
    if (a->net->input_tokens.defined() && t.is_same(a->net->input_tokens))
        return true;
    for (const auto &b : a->net->block_tokens)
        if (b.defined() && t.is_same(b))
            return true;
    return false;
}

/* Return every tensor of a except the label token rows to parent (snapshot of params, same order):
 * the shared bottlenecks, gates, embedding bottleneck and the prompted token set. Prompted decoding
 * then is the parent's exactly. */
void rollback_shared(samda_adapter *a, std::vector<at::Tensor> &params, const std::vector<at::Tensor> &parent)
{
    at::NoGradGuard ng;
    const int64_t set = (int64_t)a->labels.size();
    for (size_t i = 0; i < params.size(); i++) {
        if (!is_label_tensor(a, params[i]))
            params[i].copy_(parent[i]);
        else if (!params[i].is_same(a->net->input_tokens))
            params[i][set].copy_(parent[i][set]);
    }
}

/* The adapter's provenance record of a supervised run (JSON). */
std::string train_provenance(const samda_train_params *p, size_t n_cases, const Split &sp, int epochs_run,
                             int best_epoch, double best, double last_loss, const BoxGuard &g)
{
    return std::string("{\"kind\":\"supervised\",\"scope\":\"") +
           (p->scope == SAMDA_TRAIN_SCOPE_ADAPTER ? "adapter" : p->scope == SAMDA_TRAIN_SCOPE_DECODER ? "decoder" : "full") +
           "\",\"prompt\":\"" +
           (p->prompt == SAMDA_TRAIN_PROMPT_FREE ? "free" : p->prompt == SAMDA_TRAIN_PROMPT_BOX ? "box"
                                                         : p->prompt == SAMDA_TRAIN_PROMPT_POINT ? "point" : "mixed") +
           "\",\"n_cases\":" + std::to_string(n_cases) + ",\"n_train\":" + std::to_string(sp.tr.size()) +
           ",\"n_val\":" + std::to_string(sp.val.size()) + ",\"seed\":" + std::to_string(p->seed) +
           ",\"epochs\":" + std::to_string(p->epochs) + ",\"epochs_run\":" + std::to_string(epochs_run) +
           ",\"best_epoch\":" + std::to_string(best_epoch) + ",\"lr\":" + json_num(p->lr) +
           ",\"metrics\":{\"val_dice\":" + json_num(sp.val.empty() ? NAN : best) + ",\"train_loss\":" + json_num(last_loss) +
           (g.on ? ",\"box_dice_parent\":" + json_num(g.parent) + ",\"box_dice_base\":" + json_num(g.base) +
                       ",\"box_dice_after\":" + json_num(g.after) + ",\"box_guard_cases\":" + std::to_string(g.n_cases) +
                       ",\"box_guard_on\":\"" + (g.on_val ? "validation" : "training") + "\",\"box_rolled_back\":" +
                       (g.rolled_back ? "true" : "false") +
                       (g.why.empty() ? std::string() : ",\"box_guard_note\":" + safetensors::json_quote(g.why))
                 : std::string()) +
           "}}";
}

/* What the label-token phase chose: the best validation score, its parameters, the last loss. */
struct Chosen {
    double best = -1;
    std::vector<at::Tensor> params;
    double last_loss = 0;
};

/* After a rollback (no epoch kept box Dice): the parent's shared parts and prompted set come back and
 * the label tokens alone are trained, prompt-free, from the last epoch's; with parent_first the
 * parent stays the one to beat on validation Dice. */
void train_label_tokens(TrainRun &run, samda_adapter *a, std::vector<at::Tensor> &params,
                        const std::vector<at::Tensor> &parent_params, const Split &sp,
                        const std::vector<samda_adapter_label> &labels, bool parent_first, double parent_val,
                        BoxGuard &guard, Chosen &c)
{
    const samda_train_params *p = run.p;
    guard.rolled_back = true;
    rollback_shared(a, params, parent_params);
    std::vector<at::Tensor> tok;
    for (auto &q : params)
        if (is_label_tensor(a, q))
            tok.push_back(q);
        else
            q.requires_grad_(false);
    AdamW opt2(tok, p->lr, 0.0);  // no decay: the prompted rows must stay as they are
    samda_train_params p2 = *p;
    p2.prompt = SAMDA_TRAIN_PROMPT_FREE;
    TrainRun run2{&p2, run.x, run.sam, run.items, &opt2, run.rng, Clock::now()};
    run2.progress = run.progress;
    if (parent_first) {
        c.best = parent_val;
        c.params = parent_params;
    } else {
        c.best = -1;
        c.params = snapshot(params);
    }
    int stale = 0;
    for (int ep = 1; ep <= p->epochs; ep++) {
        c.last_loss = run_epoch(run2, ep);
        guard.label_epochs = ep;
        run.sam->eval();
        rollback_shared(a, params, parent_params); /* exact: nothing but label rows may move */
        const double vd = sp.val.empty() ? -1 : evaluate(*run.x, sp.val, labels, Mode::FREE).mean;
        if (sp.val.empty() || vd > c.best) {
            c.best = vd;
            c.params = snapshot(params);
            stale = 0;
        } else if (p->patience > 0 && ++stale >= p->patience) {
            break;
        }
        if (p->max_seconds > 0 && since(run.t_start) > p->max_seconds)
            break;
    }
    for (auto &q : params)
        q.requires_grad_(true);
}

/* samda_train_report from a finished run. */
void fill_report(samda_train_report *rep, size_t n_cases, const Split &sp, size_t n_items, int epochs_run,
                 int best_epoch, double best, double last_loss, double encode_seconds, double total,
                 int64_t n_trainable, const BoxGuard &guard, const at::Device &dev)
{
    std::memset(rep, 0, sizeof *rep);
    rep->n_cases = (int)n_cases;
    rep->n_train = (int)sp.tr.size();
    rep->n_val = (int)sp.val.size();
    rep->n_items = (int)n_items;
    rep->epochs_run = epochs_run;
    rep->best_epoch = best_epoch;
    rep->best_val_dice = sp.val.empty() ? NAN : best;
    rep->final_loss = last_loss;
    rep->encode_seconds = encode_seconds;
    rep->seconds_per_epoch = epochs_run ? (total - encode_seconds) / epochs_run : 0;
    rep->total_seconds = total;
    rep->n_trainable = n_trainable;
    rep->box_guard = guard.on ? 1 : 0;
    rep->box_guard_cases = guard.n_cases;
    rep->box_dice_parent = guard.parent;
    rep->box_dice_base = guard.base;
    rep->box_dice_after = guard.after;
    rep->box_rolled_back = guard.rolled_back ? 1 : 0;
    rep->label_token_epochs = guard.label_epochs;
    size_t used = 0, tot = 0;
    rep->peak_bytes = dev.is_cuda() && cuda_mem_info(dev.index(), &used, &tot) ? tot - used : peak_rss();
}

/* Supervised training: check, load and encode cases, split, then epochs with early stopping on the
 * validation Dice; the best epoch's parameters are kept. */
samda_status train_impl(samda_model *m, samda_adapter *a, const samda_train_params *p, samda_train_report *rep)
{
    check_train_params(m, a, p);
    const auto t_start = Clock::now();
    reset_peak_rss();
    SamImpl &sam = const_cast<SamImpl &>(model_network(m));
    const bool full = p->scope == SAMDA_TRAIN_SCOPE_FULL;
    std::vector<Case> cases = load_cases(p->data_dir, true, p->max_cases, p->seed);
    std::vector<samda_adapter_label> labels = effective_labels(a, cases);
    if (labels.empty())
        raise(SAMDA_EINVAL, "the masks in " + std::string(p->data_dir) + " hold no label");
    Encoded enc = encode_cases(m, cases, labels, p->flip != 0, full);

    Rng rng(p->seed);
    /* With a parent to guard, at least two held-out cases (when there are four or more): one case
     * says too little about other bodies. */
    const bool guarded = a && p->scope == SAMDA_TRAIN_SCOPE_ADAPTER;
    const Split sp = split_cases(cases.size(), p->val_split, guarded ? 2 : 1, rng);
    const at::Device dev = model_device(m);
    std::vector<Item> items = make_items(cases, sp.tr, labels, enc, sam.cfg, dev);
    bool any_present = false;
    for (const auto &it : items)
        any_present |= it.present;
    if (!any_present)
        raise(SAMDA_EINVAL, "no training mask contains any of the labels");

    Ctx x{m, &sam, a, &cases, &enc, a ? a->dense_pe : sam.prompt_encoder->dense_pe().detach()};
    std::vector<at::Tensor> params = trainable_params(sam, a, p->scope);
    std::vector<at::Tensor> base_only;
    if (p->scope != SAMDA_TRAIN_SCOPE_ADAPTER)
        for (auto &q : trainable_params(sam, nullptr, p->scope))
            base_only.push_back(q);
    for (auto &q : base_only)
        q.requires_grad_(true);
    struct Refreeze {
        std::vector<at::Tensor> &v;
        ~Refreeze()
        {
            for (auto &q : v) {
                q.requires_grad_(false);
                q.mutable_grad() = at::Tensor();
            }
        }
    } refreeze{base_only};
    int64_t n_trainable = 0;
    for (auto &q : params)
        n_trainable += q.numel();
    AdamW opt(params, p->lr, p->weight_decay);

    const Mode eval_mode = a && p->prompt != SAMDA_TRAIN_PROMPT_BOX && p->prompt != SAMDA_TRAIN_PROMPT_POINT
                               ? Mode::FREE
                               : Mode::BOX;
    /* The box guard (docs/adaptation.md, "Safe adaptation"): an adapter's training may not lower
     * box-prompted Dice below the adapter's as it came in, measured on the validation cases (on the
     * training cases when there are none: a weaker check). Only epochs that keep it are chosen; if
     * none does, everything but the label tokens returns to the parent's (prompted decoding is then
     * the parent's exactly) and the label tokens alone are trained further, prompt-free. */
    BoxGuard guard;
    guard.on = a && p->scope == SAMDA_TRAIN_SCOPE_ADAPTER;
    const std::vector<size_t> &gset = sp.val.empty() ? sp.tr : sp.val;
    const std::vector<at::Tensor> parent_params = snapshot(params);
    if (guard.on) {
        sam.eval();
        guard.on_val = !sp.val.empty();
        guard.n_cases = (int)gset.size();
        const EvalResult pr = evaluate(x, gset, labels, Mode::BOX);
        guard.parent = pr.mean;
        guard.parent_label = label_means(pr, labels.size());
        if (!a->version.empty() && !sp.val.empty() && sp.val.size() < kMinGuardCases)
            guard.why = std::to_string(sp.val.size()) + " held-out case(s), fewer than " +
                        std::to_string(kMinGuardCases) + ": the label tokens alone were trained";
        Ctx xb = x;
        xb.a = nullptr;
        guard.base = evaluate(xb, gset, labels, Mode::BOX).mean;
    }
    TrainRun run{p, &x, &sam, &items, &opt, &rng, t_start};
    run.progress = show_progress(p->progress);
    double best = -1, last_loss = 0;
    int best_epoch = 0, epochs_run = 0, stale = 0;
    /* With a guard and validation cases the parent itself is a candidate (epoch 0): an epoch is kept
     * only if it beats the parent on validation Dice, so training never returns something worse
     * than what came in on the held-out cases. */
    const bool parent_candidate = guard.on && !sp.val.empty();
    if (parent_candidate)
        best = evaluate(x, sp.val, labels, eval_mode).mean;
    const double parent_val = best;
    bool any_box_ok = false;
    std::vector<at::Tensor> best_params = snapshot(params);
    for (int ep = 1; ep <= p->epochs && guard.why.empty(); ep++) {
        const auto t_ep = Clock::now();
        last_loss = run_epoch(run, ep);
        epochs_run = ep;
        double vd = -1, vbox = NAN;
        if (!sp.val.empty()) {
            sam.eval();
            vd = evaluate(x, sp.val, labels, eval_mode).mean;
        }
        int below = -1;
        if (guard.on) {
            sam.eval();
            const EvalResult br = evaluate(x, gset, labels, Mode::BOX);
            vbox = br.mean;
            below = box_label_below(guard, label_means(br, labels.size()));
        }
        const bool box_ok = below < 0;
        any_box_ok |= box_ok;
        run.epoch_seconds = since(t_ep);
        if (run.progress)
            fprintf(stderr, "\rtrain: epoch %d/%d loss %.4f val dice %.4f box %.4f%s%s%s (%.1f s/epoch)          \n", ep,
                    p->epochs, last_loss, vd, vbox, box_ok ? "" : " (box Dice of \"",
                    box_ok ? "" : labels[(size_t)below].name, box_ok ? "" : "\" below the parent's)",
                    run.epoch_seconds);
        if (box_ok && (sp.val.empty() || vd > best)) {
            best = vd;
            best_epoch = ep;
            best_params = snapshot(params);
            stale = 0;
        } else if (p->patience > 0 && ++stale >= p->patience) {
            break;
        }
        if (p->max_seconds > 0 && since(t_start) > p->max_seconds)
            break;
    }
    if (guard.on && !any_box_ok) {
        Chosen c;
        train_label_tokens(run, a, params, parent_params, sp, labels, parent_candidate && eval_mode == Mode::FREE,
                           parent_val, guard, c);
        best = c.best;
        best_params = std::move(c.params);
        last_loss = c.last_loss;
    }
    restore(params, best_params);
    sam.eval();
    if (guard.on)
        guard.after = evaluate(x, gset, labels, Mode::BOX).mean;
    const double total = since(t_start);
    if (a) {
        if (!a->version.empty())
            a->parent = a->version;
        a->version.clear();
        a->meta["provenance"] = train_provenance(p, cases.size(), sp, epochs_run, best_epoch, best, last_loss, guard);
    }
    if (rep)
        fill_report(rep, cases.size(), sp, items.size(), epochs_run, best_epoch, best, last_loss, enc.seconds, total,
                    n_trainable, guard, dev);
    return SAMDA_OK;
}

}  // namespace

extern "C" {

void samda_train_params_init(samda_train_params *p)
{
    if (!p)
        return;
    std::memset(p, 0, sizeof *p);
    p->epochs = 30;
    p->lr = 1e-3;
    p->weight_decay = 1e-4;
    p->batch = 8;
    p->val_split = 0.2;
    p->patience = 5;
    p->seed = 1;
    p->prompt = SAMDA_TRAIN_PROMPT_MIXED;
    p->scope = SAMDA_TRAIN_SCOPE_ADAPTER;
    p->flip = 1;
    p->progress = -1;
}

samda_status samda_adapter_train(samda_model *m, samda_adapter *a, const samda_train_params *p,
                                 samda_train_report *report, samda_error *err)
{
    return guard_status("training decoder adapter", err, [&]() { return train_impl(m, a, p, report); });
}

namespace {

/* samda_adapter_evaluate, and with base_only the base model on a's labels (a leaves the decoder). */
samda_status evaluate_impl(const samda_model *m, const samda_adapter *a, bool base_only, const char *data_dir,
                           samda_train_prompt prompt, int max_cases, char **json_out, double *mean_dice,
                           samda_error *err)
{
    return guard_status("evaluating", err, [&]() {
        if (!m || !data_dir)
            raise(SAMDA_EINVAL, "model or data_dir is NULL");
        if (prompt != SAMDA_TRAIN_PROMPT_FREE && prompt != SAMDA_TRAIN_PROMPT_BOX)
            raise(SAMDA_EINVAL, "evaluation prompt must be FREE or BOX");
        if (prompt == SAMDA_TRAIN_PROMPT_FREE && (!a || base_only))
            raise(SAMDA_EINVAL, "prompt-free evaluation needs an adapter");
        if (a && a->base_fp != samda_model_fingerprint(m))
            raise(SAMDA_EINVAL, "adapter belongs to another model");
        std::vector<Case> cases = load_cases(data_dir, true, max_cases, 1);
        std::vector<samda_adapter_label> labels = effective_labels(a, cases);
        Encoded enc = encode_cases(m, cases, labels, false, false);
        SamImpl &sam = const_cast<SamImpl &>(model_network(m));
        const samda_adapter *in_decoder = base_only ? nullptr : a;
        Ctx x{m, &sam, const_cast<samda_adapter *>(in_decoder), &cases, &enc,
              in_decoder ? in_decoder->dense_pe : sam.prompt_encoder->dense_pe().detach()};
        std::vector<size_t> all(cases.size());
        std::iota(all.begin(), all.end(), 0);
        const Mode mode = prompt == SAMDA_TRAIN_PROMPT_FREE ? Mode::FREE : Mode::BOX;
        EvalResult r = evaluate(x, all, labels, mode, json_out != nullptr);
        if (mean_dice)
            *mean_dice = r.mean;
        if (json_out) {
            std::string j = eval_json(r, cases, all, labels, mode);
            *json_out = (char *)malloc(j.size() + 1);
            if (!*json_out)
                throw std::bad_alloc();
            std::memcpy(*json_out, j.c_str(), j.size() + 1);
        }
        return SAMDA_OK;
    });
}

}  // namespace

samda_status samda_adapter_evaluate(const samda_model *m, const samda_adapter *a, const char *data_dir,
                                    samda_train_prompt prompt, int max_cases, char **json_out, double *mean_dice,
                                    samda_error *err)
{
    return evaluate_impl(m, a, false, data_dir, prompt, max_cases, json_out, mean_dice, err);
}

samda_status samda_adapter_evaluate_base(const samda_model *m, const samda_adapter *labels_of, const char *data_dir,
                                         int max_cases, char **json_out, double *mean_dice, samda_error *err)
{
    if (!labels_of)
        return samda_fail(err, SAMDA_EINVAL, "evaluating the base model: no adapter to take the labels from");
    return evaluate_impl(m, labels_of, true, data_dir, SAMDA_TRAIN_PROMPT_BOX, max_cases, json_out, mean_dice, err);
}

samda_status samda_model_save(const samda_model *m, const char *path, int half, samda_error *err)
{
    return guard_status("saving model weights", err, [&]() {
        if (!m || !path || !*path)
            raise(SAMDA_EINVAL, "model or path is NULL");
        const SamImpl &sam = model_network(m);
        StateDict sd;
        for (const auto &kv : sam.named_parameters(true))
            sd.emplace_back(kv.key(), kv.value().detach().to(at::kCPU, half ? at::kHalf : at::kFloat).contiguous());
        for (const auto &kv : sam.named_buffers(true))
            sd.emplace_back(kv.key(), kv.value().detach().to(at::kCPU, half ? at::kHalf : at::kFloat).contiguous());
        try {
            save_state_dict_pth(path, sd);
        } catch (const std::exception &e) {
            raise(SAMDA_EIO, std::string("writing ") + path + ": " + e.what());
        }
        return SAMDA_OK;
    });
}

}  // extern "C"
