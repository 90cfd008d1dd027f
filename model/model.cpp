// model/model.cpp: the C interface of model/ (model.h): opening a checkpoint, encoding images,
// decoding prompts, embeddings. Every extern "C" function runs its body inside guarded(), which
// turns every C++ exception into a samda_status and a one-line message.
#include "internal.h"
#include "state_dict.h"

#include <c10/core/InferenceMode.h>
#include <ATen/Parallel.h>

#include <malloc.h>
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <new>
#include <tuple>

struct samda_model {
    samda::SamConfig cfg;
    std::shared_ptr<samda::SamImpl> sam;
    at::Device device{at::kCPU};
    at::ScalarType enc_dtype = at::kFloat;
    samda::Convention conv = samda::Convention::SAM;
    at::Tensor dense_pe;  // 1 x C x h x w on device
    samda_model_info info{};
};

namespace samda {

namespace {

std::string first_line(const std::string &s)
{
    size_t nl = s.find('\n');
    return nl == std::string::npos ? s : s.substr(0, nl);
}

bool looks_oom(const std::string &s)
{
    return s.find("out of memory") != std::string::npos || s.find("Out of memory") != std::string::npos ||
           s.find("DefaultCPUAllocator: can't allocate") != std::string::npos;
}

/** What a guarded function returns on failure: its status for status functions, on_fail otherwise. */
template <class R> R failure_value(R on_fail, samda_status) { return on_fail; }
template <> samda_status failure_value<samda_status>(samda_status, samda_status code) { return code; }

template <class R, class F> R guarded(const char *fn, samda_error *err, R on_fail, F &&body)
{
    samda_status code = SAMDA_EINTERNAL;
    try {
        return body();
    } catch (const Failure &e) {
        code = samda_fail(err, e.code, "%s: %s", fn, first_line(e.what()).c_str());
    } catch (const std::bad_alloc &) {
        code = samda_fail(err, SAMDA_ENOMEM, "%s: out of memory", fn);
    } catch (const c10::Error &e) {
        std::string w = e.what_without_backtrace();
        code = samda_fail(err, looks_oom(w) ? SAMDA_ENOMEM : SAMDA_EMODEL, "%s: %s", fn, first_line(w).c_str());
    } catch (const std::exception &e) {
        code = samda_fail(err, SAMDA_EMODEL, "%s: %s", fn, first_line(e.what()).c_str());
    } catch (...) {
        code = samda_fail(err, SAMDA_EINTERNAL, "%s: unknown C++ exception", fn);
    }
    return failure_value<R>(on_fail, code);
}

[[noreturn]] void fail(samda_status code, const std::string &msg) { throw Failure(code, msg); }

void copy_str(char *dst, size_t cap, const std::string &s)
{
    size_t n = std::min(cap - 1, s.size());
    std::memcpy(dst, s.data(), n);
    dst[n] = '\0';
}

bool file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/** H x W x C float tensor (0..255 values) on the CPU from a caller's image, validated. */
at::Tensor image_tensor(const samda_model_image *img)
{
    if (!img || !img->pixels)
        fail(SAMDA_EINVAL, "image or its pixels is NULL");
    if (img->height < 1 || img->width < 1 || img->height > 16384 || img->width > 16384)
        fail(SAMDA_EINVAL, "image size " + std::to_string(img->height) + "x" + std::to_string(img->width) +
                               " outside 1..16384");
    if (img->channels != 1 && img->channels != 3)
        fail(SAMDA_EINVAL, "image has " + std::to_string(img->channels) + " channels (expected 1 or 3)");
    std::vector<int64_t> shape = {img->height, img->width, img->channels};
    void *p = const_cast<void *>(img->pixels);  // from_blob needs non-const; never written
    if (img->type == SAMDA_MODEL_PIXEL_U8)
        return at::from_blob(p, shape, at::kByte);
    if (img->type == SAMDA_MODEL_PIXEL_F32) {
        at::Tensor t = at::from_blob(p, shape, at::kFloat);
        if (!at::isfinite(t).all().item<bool>())
            fail(SAMDA_EINVAL, "float image contains NaN or infinity");
        return t;
    }
    fail(SAMDA_EINVAL, "unknown pixel type " + std::to_string((int)img->type));
}

/** Encoder input for one item: (1 x 3 x S x S on device, orig h, orig w, input h, input w). */
std::tuple<at::Tensor, int, int, int, int> encoder_input(const samda_model *m, const samda_model_encode_item &it)
{
    const int S = m->cfg.img_size;
    if ((it.image == nullptr) == (it.preprocessed == nullptr))
        fail(SAMDA_EINVAL, "each item needs exactly one of image and preprocessed");
    if (it.image) {
        at::Tensor hwc = host_to_device(image_tensor(it.image), m->device, false);
        int64_t ih = 0, iw = 0;
        at::Tensor x = preprocess_image(hwc, m->cfg, m->conv, &ih, &iw);
        return std::make_tuple(x, it.image->height, it.image->width, (int)ih, (int)iw);
    }
    if (it.original_height < 1 || it.original_width < 1 || it.input_height < 1 || it.input_width < 1 ||
        it.input_height > S || it.input_width > S)
        fail(SAMDA_EINVAL, "preprocessed item needs original size >= 1 and input size in 1.." + std::to_string(S));
    at::Tensor x = host_to_device(at::from_blob(const_cast<float *>(it.preprocessed), {1, 3, S, S}, at::kFloat),
                                  m->device, true);
    return std::make_tuple(x, it.original_height, it.original_width, it.input_height, it.input_width);
}

void check_embedding(const samda_model *m, const samda_embedding *e)
{
    if (!e || !e->data.defined())
        fail(SAMDA_EINVAL, "embedding is NULL");
    if (e->fingerprint != m->info.fingerprint)
        fail(SAMDA_EINVAL, "embedding was made by another model (fingerprint " + e->fingerprint.substr(0, 12) +
                               " vs " + std::string(m->info.fingerprint).substr(0, 12) + ")");
}

}  // namespace

SamImpl &model_network(const samda_model *m) { return *m->sam; }
at::Device model_device(const samda_model *m) { return m->device; }
const at::Tensor &embedding_tensor(const samda_embedding *e) { return e->data; }

DecodeResult decode_prompts(const samda_model *m, const samda_embedding *e, const samda_model_prompt *prompts,
                            size_t n, bool multimask, const TwoWayHooks *hooks)
{
    check_embedding(m, e);
    if (!prompts || n == 0)
        fail(SAMDA_EINVAL, "no prompts");
    const int L = m->cfg.low_res_size();
    const float oh = (float)e->original_h, ow = (float)e->original_w;
    // Validate, then group prompts of the same shape (points, box, mask) so each group is one batch.
    std::map<std::tuple<size_t, bool, bool>, std::vector<size_t>> groups;
    for (size_t i = 0; i < n; i++) {
        const samda_model_prompt &p = prompts[i];
        const std::string who = "prompt " + std::to_string(i);
        if (p.n_points > 256)
            fail(SAMDA_EINVAL, who + " has " + std::to_string(p.n_points) + " points (at most 256)");
        if (p.n_points > 0 && (!p.points || !p.point_labels))
            fail(SAMDA_EINVAL, who + ": points or point_labels is NULL");
        for (size_t k = 0; k < p.n_points; k++) {
            if (!std::isfinite(p.points[2 * k]) || !std::isfinite(p.points[2 * k + 1]))
                fail(SAMDA_EINVAL, who + ": point " + std::to_string(k) + " is not finite");
            const int lab = p.point_labels[k];
            if (lab < -1 || lab > 1)
                fail(SAMDA_EINVAL, who + ": point label " + std::to_string(lab) + " (expected 1, 0 or -1)");
        }
        if (p.box) {
            for (int k = 0; k < 4; k++)
                if (!std::isfinite(p.box[k]))
                    fail(SAMDA_EINVAL, who + ": box is not finite");
        }
        (void)oh, (void)ow;
        groups[std::make_tuple(p.n_points, p.box != nullptr, p.mask_input != nullptr)].push_back(i);
    }
    const int C = multimask ? m->cfg.num_multimask_outputs : 1;
    auto fopts = at::TensorOptions().dtype(at::kFloat);
    at::Tensor low_all = at::empty({(int64_t)n, C, L, L}, fopts.device(m->device));
    at::Tensor iou_all = at::empty({(int64_t)n, C}, fopts.device(m->device));
    // On the CPU, 4 prompts per forward: larger batches push the per-prompt image tensors (4 MB each)
    // out of the caches and into fresh pages; fewer leave the two threads small products.
    const size_t chunk = m->device.is_cuda() ? 256 : 4;
    for (const auto &g : groups) {
        const size_t np = std::get<0>(g.first);
        const bool has_box = std::get<1>(g.first), has_mask = std::get<2>(g.first);
        const auto &idx = g.second;
        for (size_t s = 0; s < idx.size(); s += chunk) {
            const size_t b = std::min(chunk, idx.size() - s);
            PromptBatch pb;
            if (np > 0) {
                at::Tensor xy = at::empty({(int64_t)b, (int64_t)np, 2}, fopts);
                at::Tensor lab = at::empty({(int64_t)b, (int64_t)np}, at::TensorOptions().dtype(at::kInt));
                for (size_t j = 0; j < b; j++) {
                    const samda_model_prompt &p = prompts[idx[s + j]];
                    std::memcpy(xy[j].data_ptr<float>(), p.points, np * 2 * sizeof(float));
                    std::memcpy(lab[j].data_ptr<int>(), p.point_labels, np * sizeof(int));
                }
                pb.coords = transform_coords(xy, e->original_h, e->original_w, e->input_h, e->input_w).to(m->device);
                pb.labels = lab.to(m->device);
            }
            if (has_box) {
                at::Tensor bx = at::empty({(int64_t)b, 2, 2}, fopts);
                for (size_t j = 0; j < b; j++)
                    std::memcpy(bx[j].data_ptr<float>(), prompts[idx[s + j]].box, 4 * sizeof(float));
                pb.boxes = transform_coords(bx, e->original_h, e->original_w, e->input_h, e->input_w)
                               .reshape({(int64_t)b, 4})
                               .to(m->device);
            }
            if (has_mask) {
                at::Tensor mk = at::empty({(int64_t)b, 1, L, L}, fopts);
                for (size_t j = 0; j < b; j++)
                    std::memcpy(mk[j].data_ptr<float>(), prompts[idx[s + j]].mask_input, (size_t)L * L * sizeof(float));
                pb.masks = mk.to(m->device);
            }
            auto se = m->sam->prompt_encoder->forward(pb);
            auto out = m->sam->mask_decoder->forward(e->data, m->dense_pe, se.first, se.second, multimask, hooks);
            std::vector<int64_t> where(idx.begin() + (long)s, idx.begin() + (long)(s + b));
            at::Tensor where_t = at::tensor(where, at::TensorOptions().dtype(at::kLong)).to(m->device);
            low_all.index_copy_(0, where_t, out.first.to(at::kFloat));
            iou_all.index_copy_(0, where_t, out.second.to(at::kFloat));
        }
    }
    return {low_all, iou_all};
}

}  // namespace samda

using samda::fail;
using samda::guarded;

extern "C" {

void samda_model_tune_allocator(void)
{
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 512 << 20);
}

void samda_model_params_init(samda_model_params *p)
{
    if (!p)
        return;
    std::memset(p, 0, sizeof *p);
    p->checkpoint_path = nullptr;
    p->arch = "auto";
    p->config_path = nullptr;
    p->device = SAMDA_MODEL_DEVICE_AUTO;
    p->n_threads = 0;
    p->encoder_dtype = SAMDA_MODEL_DTYPE_FLOAT32;
    p->max_batch = 0;
    p->convention = SAMDA_MODEL_CONVENTION_SAM;
    p->random_weights = 0;
    p->seed = 1;
    p->allow_tf32 = 0;
}

samda_model *samda_model_open(const samda_model_params *p, samda_error *err)
{
    return guarded<samda_model *>("opening SAM model", err, nullptr, [&]() -> samda_model * {
        using namespace samda;
        if (!p)
            fail(SAMDA_EINVAL, "params is NULL");
        const std::string arch = p->arch ? p->arch : "auto";
        if (p->n_threads < 0)
            fail(SAMDA_EINVAL, "n_threads " + std::to_string(p->n_threads) + " is negative (0 = all CPUs)");
        if (p->max_batch < 0 || p->max_batch > 1024)
            fail(SAMDA_EINVAL, "max_batch " + std::to_string(p->max_batch) + " outside 0..1024");
        if (p->convention != SAMDA_MODEL_CONVENTION_SAM && p->convention != SAMDA_MODEL_CONVENTION_MEDSAM)
            fail(SAMDA_EINVAL, "unknown input convention " + std::to_string((int)p->convention));
        if (p->config_path && !file_exists(p->config_path))
            fail(SAMDA_ENOENT, std::string("config file ") + p->config_path + " not found");

        auto m = std::make_unique<samda_model>();
        m->conv = p->convention == SAMDA_MODEL_CONVENTION_MEDSAM ? Convention::MEDSAM : Convention::SAM;
        const int threads = p->n_threads > 0 ? p->n_threads : online_cpus();
        at::set_num_threads(threads);  // libtorch otherwise uses 1 thread here

        // Weights first (their shapes may define the architecture).
        StateDict state;
        if (!p->random_weights) {
            if (!p->checkpoint_path || !*p->checkpoint_path)
                fail(SAMDA_EINVAL, "checkpoint_path is required (or set random_weights)");
            if (!file_exists(p->checkpoint_path))
                fail(SAMDA_ENOENT, std::string("checkpoint ") + p->checkpoint_path + " not found");
            try {
                state = load_state_dict(p->checkpoint_path);
            } catch (const std::exception &e) {
                fail(SAMDA_EMODEL, std::string("reading checkpoint ") + p->checkpoint_path + ": " + e.what());
            }
        }
        if (arch == "custom") {
            if (!p->config_path)
                fail(SAMDA_EINVAL, "arch \"custom\" needs config_path");
            m->cfg = sam_config_from_json_file(p->config_path);
        } else if (arch == "auto") {
            if (p->config_path) {
                m->cfg = sam_config_from_json_file(p->config_path);
            } else if (!state.empty()) {
                std::map<std::string, std::vector<int64_t>> shapes;
                for (const auto &kv : state)
                    shapes[kv.first] = kv.second.sizes().vec();
                m->cfg = sam_config_infer(shapes);
            } else {
                m->cfg = sam_config_preset("vit_b");
            }
        } else if (arch == "vit_b" || arch == "vit_l" || arch == "vit_h") {
            m->cfg = sam_config_preset(arch);
        } else {
            fail(SAMDA_EINVAL, "unknown arch \"" + arch + "\" (expected auto, vit_b, vit_l, vit_h or custom)");
        }

        m->device = resolve_device(p->device);
        switch (p->encoder_dtype) {
        case SAMDA_MODEL_DTYPE_FLOAT32: m->enc_dtype = at::kFloat; break;
        case SAMDA_MODEL_DTYPE_FLOAT16: m->enc_dtype = at::kHalf; break;
        case SAMDA_MODEL_DTYPE_BFLOAT16: m->enc_dtype = at::kBFloat16; break;
        default: fail(SAMDA_EINVAL, "unknown encoder_dtype " + std::to_string((int)p->encoder_dtype));
        }
        if (m->enc_dtype != at::kFloat && !m->device.is_cuda())
            fail(SAMDA_ENOTSUP, "encoder_dtype float16/bfloat16 needs a CUDA device (the CPU runs float32)");

        m->sam = std::make_shared<SamImpl>(m->cfg);
        std::string fp;
        if (p->random_weights) {
            sam_init_random(*m->sam, p->seed);
            std::vector<std::pair<std::string, at::Tensor>> st;
            for (const auto &kv : m->sam->named_parameters(true))
                st.emplace_back(kv.key(), kv.value());
            for (const auto &kv : m->sam->named_buffers(true))
                st.emplace_back(kv.key(), kv.value());
            fp = state_fingerprint(st);
        } else {
            sam_load_state(*m->sam, state);
            fp = state_fingerprint(state);
            state.clear();
        }
        m->sam->eval();
        m->sam->to(m->device);
        if (m->enc_dtype != at::kFloat)
            m->sam->image_encoder->to(m->enc_dtype);
        if (m->device.is_cuda() && !p->allow_tf32) {
            at::globalContext().setAllowTF32CuBLAS(false);
            at::globalContext().setAllowTF32CuDNN(false);
        } else if (m->device.is_cuda()) {
            at::globalContext().setAllowTF32CuBLAS(true);
            at::globalContext().setAllowTF32CuDNN(true);
        }
        {
            c10::InferenceMode guard;
            m->dense_pe = m->sam->prompt_encoder->dense_pe().clone();
        }
        m->dense_pe = m->dense_pe.clone();  // a normal tensor, usable with autograd later

        int max_batch = p->max_batch;
        if (max_batch == 0) {
            max_batch = 2;
            size_t free_b = 0, total_b = 0;
            if (m->device.is_cuda()) {
                max_batch = 8;
                if (cuda_mem_info(m->device.index(), &free_b, &total_b)) {
                    const double N = (double)m->cfg.embed_size() * m->cfg.embed_size();
                    const double elem = m->enc_dtype == at::kFloat ? 4.0 : 2.0;
                    const double per_image =
                        N * m->cfg.embed_dim * elem * 24.0 + 2.0 * m->cfg.num_heads * N * N * elem;
                    max_batch = (int)std::max(1.0, std::min(64.0, 0.7 * (double)free_b / per_image));
                }
            }
        }

        samda_model_info &in = m->info;
        copy_str(in.arch, sizeof in.arch, m->cfg.arch);
        in.img_size = m->cfg.img_size;
        in.embed_dim = m->cfg.embed_dim;
        in.depth = m->cfg.depth;
        in.num_heads = m->cfg.num_heads;
        in.embedding_channels = m->cfg.out_chans;
        in.embedding_size = m->cfg.embed_size();
        in.low_res_size = m->cfg.low_res_size();
        in.n_multimask = m->cfg.num_multimask_outputs;
        in.n_params_image_encoder = count_params(*m->sam->image_encoder);
        in.n_params_prompt_encoder = count_params(*m->sam->prompt_encoder);
        in.n_params_mask_decoder = count_params(*m->sam->mask_decoder);
        in.n_params_total = in.n_params_image_encoder + in.n_params_prompt_encoder + in.n_params_mask_decoder;
        copy_str(in.fingerprint, sizeof in.fingerprint, fp);
        copy_str(in.device, sizeof in.device, m->device.str());
        in.is_cuda = m->device.is_cuda() ? 1 : 0;
        std::string blas, blas_path;
        detect_blas(&blas, &blas_path);
        copy_str(in.blas, sizeof in.blas, blas);
        copy_str(in.blas_path, sizeof in.blas_path, blas_path);
        in.n_threads = at::get_num_threads();
        in.max_batch = max_batch;
        in.encoder_dtype = p->encoder_dtype;
        in.convention = p->convention;
        return m.release();
    });
}

void samda_model_close(samda_model *m)
{
    try {
        delete m;
    } catch (...) {
    }
}

samda_status samda_model_get_info(const samda_model *m, samda_model_info *out, samda_error *err)
{
    if (!m || !out)
        return samda_fail(err, SAMDA_EINVAL, "describing SAM model: model or out is NULL");
    *out = m->info;
    return SAMDA_OK;
}

const char *samda_model_fingerprint(const samda_model *m) { return m ? m->info.fingerprint : ""; }

samda_status samda_model_get_device_memory(const samda_model *m, size_t *used_bytes, size_t *total_bytes,
                                           samda_error *err)
{
    return guarded<samda_status>("querying device memory", err, SAMDA_EMODEL, [&]() {
        if (!m || !used_bytes || !total_bytes)
            fail(SAMDA_EINVAL, "model or an output is NULL");
        if (!m->device.is_cuda())
            fail(SAMDA_ENOTSUP, "the model runs on the CPU");
        size_t free_b = 0, total_b = 0;
        if (!samda::cuda_mem_info(m->device.index(), &free_b, &total_b))
            fail(SAMDA_ENOTSUP, "the CUDA runtime that libtorch loaded cannot be queried");
        *used_bytes = total_b - free_b;
        *total_bytes = total_b;
        return SAMDA_OK;
    });
}

samda_status samda_model_preprocess(const samda_model *m, const samda_model_image *img, float *out, size_t out_len,
                                    int *input_h, int *input_w, samda_error *err)
{
    return guarded<samda_status>("preprocessing image", err, SAMDA_EMODEL, [&]() {
        if (!m || !out)
            fail(SAMDA_EINVAL, "model or out is NULL");
        const size_t need = (size_t)3 * m->cfg.img_size * m->cfg.img_size;
        if (out_len < need)
            fail(SAMDA_EINVAL, "out holds " + std::to_string(out_len) + " floats, needs " + std::to_string(need));
        c10::InferenceMode guard;
        at::Tensor hwc = samda::host_to_device(samda::image_tensor(img), m->device, false);
        int64_t ih = 0, iw = 0;
        samda::device_to_host(samda::preprocess_image(hwc, m->cfg, m->conv, &ih, &iw), out, need * sizeof(float));
        if (input_h)
            *input_h = (int)ih;
        if (input_w)
            *input_w = (int)iw;
        return SAMDA_OK;
    });
}

samda_status samda_model_encode(const samda_model *m, const samda_model_encode_item *items, size_t n,
                                samda_embedding **out, samda_error *err)
{
    if (out)
        for (size_t i = 0; i < n; i++)
            out[i] = nullptr;
    samda_status st = guarded<samda_status>("encoding images", err, SAMDA_EMODEL, [&]() {
        if (!m || !items || !out || n == 0)
            fail(SAMDA_EINVAL, "model, items or out is NULL, or n is 0");
        const size_t mb = (size_t)std::max(1, m->info.max_batch);
        for (size_t s = 0; s < n; s += mb) {
            const size_t b = std::min(mb, n - s);
            std::vector<at::Tensor> xs;
            std::vector<std::tuple<int, int, int, int>> sizes;
            at::Tensor emb;
            {
                c10::InferenceMode guard;
                for (size_t j = 0; j < b; j++) {
                    auto in = samda::encoder_input(m, items[s + j]);
                    xs.push_back(std::get<0>(in));
                    sizes.emplace_back(std::get<1>(in), std::get<2>(in), std::get<3>(in), std::get<4>(in));
                }
                at::Tensor x = xs.size() == 1 ? xs[0] : at::cat(xs, 0);
                emb = m->sam->image_encoder->forward(x.to(m->enc_dtype)).to(at::kFloat);
            }
            for (size_t j = 0; j < b; j++) {
                auto *e = new samda_embedding();
                e->data = emb.slice(0, (int64_t)j, (int64_t)j + 1).clone();  // normal tensor, own storage
                e->fingerprint = m->info.fingerprint;
                e->convention = (int)m->info.convention;
                std::tie(e->original_h, e->original_w, e->input_h, e->input_w) = sizes[j];
                e->img_size = m->cfg.img_size;
                out[s + j] = e;
            }
        }
        return SAMDA_OK;
    });
    if (st != SAMDA_OK && out && items)
        for (size_t i = 0; i < n; i++) {
            samda_embedding_release(out[i]);
            out[i] = nullptr;
        }
    return st;
}

samda_embedding *samda_model_embedding_from_data(const samda_model *m, const float *data, size_t len,
                                                 int original_h, int original_w, int input_h, int input_w,
                                                 samda_error *err)
{
    return guarded<samda_embedding *>("wrapping embedding", err, nullptr, [&]() -> samda_embedding * {
        if (!m || !data)
            fail(SAMDA_EINVAL, "model or data is NULL");
        const int64_t C = m->cfg.out_chans, h = m->cfg.embed_size();
        if (len != (size_t)(C * h * h))
            fail(SAMDA_EINVAL, "embedding has " + std::to_string(len) + " floats, expected " +
                                   std::to_string(C * h * h) + " (" + std::to_string(C) + "x" + std::to_string(h) +
                                   "x" + std::to_string(h) + ")");
        const int S = m->cfg.img_size;
        if (original_h < 1 || original_w < 1 || input_h < 1 || input_w < 1 || input_h > S || input_w > S)
            fail(SAMDA_EINVAL, "original size must be >= 1 and input size in 1.." + std::to_string(S));
        auto e = std::make_unique<samda_embedding>();
        e->data = samda::host_to_device(at::from_blob(const_cast<float *>(data), {1, C, h, h}, at::kFloat), m->device, true);
        e->fingerprint = m->info.fingerprint;
        e->convention = (int)m->info.convention;
        e->original_h = original_h;
        e->original_w = original_w;
        e->input_h = input_h;
        e->input_w = input_w;
        e->img_size = S;
        return e.release();
    });
}

samda_status samda_embedding_get_info(const samda_embedding *e, samda_embedding_info *out)
{
    if (!e || !out)
        return SAMDA_EINVAL;
    std::memset(out, 0, sizeof *out);
    out->channels = (int)e->data.size(1);
    out->height = (int)e->data.size(2);
    out->width = (int)e->data.size(3);
    out->original_height = e->original_h;
    out->original_width = e->original_w;
    out->input_height = e->input_h;
    out->input_width = e->input_w;
    out->img_size = e->img_size;
    out->bytes = e->bytes();
    out->convention = (samda_model_convention)e->convention;
    samda::copy_str(out->fingerprint, sizeof out->fingerprint, e->fingerprint);
    return SAMDA_OK;
}

samda_status samda_embedding_copy_data(const samda_embedding *e, float *out, size_t out_len, samda_error *err)
{
    return guarded<samda_status>("copying embedding", err, SAMDA_EMODEL, [&]() {
        if (!e || !out)
            fail(SAMDA_EINVAL, "embedding or out is NULL");
        const size_t need = (size_t)e->data.numel();
        if (out_len < need)
            fail(SAMDA_EINVAL, "out holds " + std::to_string(out_len) + " floats, needs " + std::to_string(need));
        samda::device_to_host(e->data, out, need * sizeof(float));
        return SAMDA_OK;
    });
}

samda_embedding *samda_embedding_retain(samda_embedding *e)
{
    if (e)
        e->refs.fetch_add(1, std::memory_order_relaxed);
    return e;
}

void samda_embedding_release(samda_embedding *e)
{
    if (e && e->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        try {
            delete e;
        } catch (...) {
        }
    }
}

samda_status samda_model_decode(const samda_model *m, const samda_embedding *e, const samda_model_prompt *prompts,
                                size_t n_prompts, unsigned flags, samda_model_decode_out *out, samda_error *err)
{
    return guarded<samda_status>("decoding prompts", err, SAMDA_EMODEL, [&]() {
        if (!m || !e || !prompts || !out || n_prompts == 0)
            fail(SAMDA_EINVAL, "model, embedding, prompts or out is NULL, or no prompts");
        if (flags & ~SAMDA_MODEL_DECODE_MULTIMASK)
            fail(SAMDA_EINVAL, "unknown flags 0x" + std::to_string(flags));
        const bool multimask = (flags & SAMDA_MODEL_DECODE_MULTIMASK) != 0;
        const size_t C = multimask ? (size_t)m->cfg.num_multimask_outputs : 1;
        const size_t L = (size_t)m->cfg.low_res_size();
        const size_t H = (size_t)e->original_h, W = (size_t)e->original_w;
        auto need = [&](const char *what, size_t have, size_t want) {
            if (have < want)
                fail(SAMDA_EINVAL, std::string(what) + " holds " + std::to_string(have) + " elements, needs " +
                                       std::to_string(want));
        };
        if (out->low_res_logits)
            need("low_res_logits", out->low_res_len, n_prompts * C * L * L);
        if (out->iou)
            need("iou", out->iou_len, n_prompts * C);
        if (out->mask_logits)
            need("mask_logits", out->mask_logits_len, n_prompts * C * H * W);
        if (out->masks)
            need("masks", out->masks_len, n_prompts * C * H * W);
        c10::InferenceMode guard;
        samda::DecodeResult r = samda::decode_prompts(m, e, prompts, n_prompts, multimask, nullptr);
        if (out->low_res_logits) {
            samda::device_to_host(r.low_res, out->low_res_logits, (size_t)r.low_res.numel() * sizeof(float));
        }
        if (out->iou) {
            samda::device_to_host(r.iou, out->iou, (size_t)r.iou.numel() * sizeof(float));
        }
        if (out->mask_logits || out->masks) {
            // Upsample a few prompts at a time: full-size logits are large (3 masks at 1024 x 1024 are
            // 12 MB), and on the CPU one prompt at a time keeps them in reused heap memory instead of
            // fresh pages for every call (measured: 16 prompts per call cost more than 16 calls with 8).
            const size_t step = m->device.is_cuda() ? 8 : 1;
            for (size_t s = 0; s < n_prompts; s += step) {
                const size_t b = std::min(step, n_prompts - s);
                at::Tensor full = samda::postprocess_masks(r.low_res.slice(0, (int64_t)s, (int64_t)(s + b)),
                                                           m->cfg.img_size, e->input_h, e->input_w, e->original_h,
                                                           e->original_w);
                const size_t count = b * C * H * W;
                if (out->mask_logits) {
                    samda::device_to_host(full, out->mask_logits + s * C * H * W, count * sizeof(float));
                }
                if (out->masks) {
                    samda::device_to_host(full.gt(0.0).to(at::kByte), out->masks + s * C * H * W, count);
                }
            }
        }
        return SAMDA_OK;
    });
}

}  // extern "C"
