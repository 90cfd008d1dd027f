/* bench_model: throughput of model/ (model.h) on this machine; prints one JSON object, never gates.
 *   bench_model --arch vit_b --random-weights [--checkpoint F] [--batch N] [--iters K] [--warmup W]
 *               [--threads T] [--device cpu|cuda|auto] [--dtype float32|float16|bfloat16]
 *               [--decode-iters D] [--no-encode] [--trace F]
 * --trace F (libtorch 2.x): after the timed forwards, one more encoder call runs under the Kineto
 * profiler and its Chrome trace (CPU ops and CUDA kernels) is written to F.
 * Figures: encoder images/s and s/image (batch N, K timed forwards after W warm-up forwards), decoder
 * ms per call for 1 prompt and for 16 prompts in one call (vs 16 single calls), peak RSS, CUDA memory. */
#include "model.h"

#include <sys/resource.h>
#include <torch/version.h>
#if TORCH_VERSION_MAJOR >= 2
#include <torch/csrc/autograd/profiler_kineto.h>
#define BENCH_HAVE_TRACE 1
#endif

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <vector>

namespace {

/** Process CPU time (user + system), seconds: a load-independent figure when the machine is shared. */
double cpu_s()
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
}

double now_s()
{
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void usage()
{
    fprintf(stderr,
            "usage: bench_model [--arch vit_b|vit_l|vit_h|auto|custom] [--config F] (--random-weights | --checkpoint F)\n"
            "                   [--batch N] [--iters K] [--warmup W] [--threads T] [--device cpu|cuda|auto]\n"
            "                   [--dtype float32|float16|bfloat16] [--decode-iters D] [--no-encode] [--trace F]\n");
}

}  // namespace

int main(int argc, char **argv)
{
    samda_model_tune_allocator();  // as samdad and samda do
    samda_model_params p;
    samda_model_params_init(&p);
    p.arch = "vit_b";
    p.device = SAMDA_MODEL_DEVICE_AUTO;
    int batch = 1, iters = -1, warmup = -1, decode_iters = 10, do_encode = 1;
    std::string dtype = "float32", device = "auto", trace;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        auto next = [&]() -> const char * {
            if (i + 1 >= argc) {
                usage();
                exit(2);
            }
            return argv[++i];
        };
        if (a == "--arch") p.arch = next();
        else if (a == "--config") p.config_path = next();
        else if (a == "--checkpoint") p.checkpoint_path = next();
        else if (a == "--random-weights") p.random_weights = 1;
        else if (a == "--batch") batch = atoi(next());
        else if (a == "--iters") iters = atoi(next());
        else if (a == "--warmup") warmup = atoi(next());
        else if (a == "--threads") p.n_threads = atoi(next());
        else if (a == "--decode-iters") decode_iters = atoi(next());
        else if (a == "--no-encode") do_encode = 0;
        else if (a == "--device") device = next();
        else if (a == "--dtype") dtype = next();
        else if (a == "--trace") trace = next();
        else {
            usage();
            return 2;
        }
    }
    p.device = device == "cpu" ? SAMDA_MODEL_DEVICE_CPU : device == "cuda" ? 0 : SAMDA_MODEL_DEVICE_AUTO;
    p.encoder_dtype = dtype == "bfloat16" ? SAMDA_MODEL_DTYPE_BFLOAT16
                      : dtype == "float16" ? SAMDA_MODEL_DTYPE_FLOAT16
                                           : SAMDA_MODEL_DTYPE_FLOAT32;
    if (batch < 1 || batch > 256 || decode_iters < 1) {
        usage();
        return 2;
    }
    p.max_batch = batch;
    samda_error err{};
    double t0 = now_s();
    samda_model *m = samda_model_open(&p, &err);
    if (!m) {
        fprintf(stderr, "bench_model: %s\n", err.message);
        return 1;
    }
    const double open_s = now_s() - t0;
    samda_model_info info{};
    samda_model_get_info(m, &info, nullptr);
    if (iters < 0)
        iters = info.is_cuda ? 5 : 1;
    if (warmup < 0)
        warmup = info.is_cuda ? 2 : 0;

    // A synthetic 768 x 1024 RGB image (landscape, so resize and padding run).
    const int H = 768, W = 1024;
    std::vector<uint8_t> px((size_t)H * W * 3);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            for (int c = 0; c < 3; c++)
                px[((size_t)y * W + x) * 3 + c] = (uint8_t)((x / 4 + y / 3 + c * 40 + ((x / 64 + y / 64) % 2) * 100) & 0xFF);
    samda_model_image img{px.data(), H, W, 3, SAMDA_MODEL_PIXEL_U8};
    std::vector<samda_model_encode_item> items((size_t)batch);
    for (auto &it : items)
        it.image = &img;
    std::vector<samda_embedding *> embs((size_t)batch, nullptr);
    std::vector<float> sink((size_t)info.embedding_channels * info.embedding_size * info.embedding_size);

    double enc_s = 0, enc_cpu = 0;
    int enc_images = 0;
    auto encode_once = [&]() -> bool {
        for (auto *e : embs)
            samda_embedding_release(e);
        if (samda_model_encode(m, items.data(), items.size(), embs.data(), &err) != SAMDA_OK) {
            fprintf(stderr, "bench_model: %s\n", err.message);
            return false;
        }
        // Copying the last embedding waits for the device.
        samda_embedding_copy_data(embs.back(), sink.data(), sink.size(), nullptr);
        return true;
    };
    const int n_enc = do_encode ? warmup + iters : 1;  // the decoder needs one embedding anyway
    for (int k = 0; k < n_enc; k++) {
        double s = now_s(), c = cpu_s();
        if (!encode_once())
            return 1;
        if (do_encode && k >= warmup) {
            enc_s += now_s() - s;
            enc_cpu += cpu_s() - c;
            enc_images += batch;
        }
    }

    if (!trace.empty()) {
#ifdef BENCH_HAVE_TRACE
        namespace tpi = torch::profiler::impl;
        namespace tap = torch::autograd::profiler;
        const tpi::ProfilerConfig cfg(tpi::ProfilerState::KINETO);
        const std::set<tpi::ActivityType> acts{tpi::ActivityType::CPU, tpi::ActivityType::CUDA};
        tap::prepareProfiler(cfg, acts);
        tap::enableProfiler(cfg, acts);
        const bool ok = encode_once();
        tap::disableProfiler()->save(trace);
        if (!ok)
            return 1;
        fprintf(stderr, "bench_model: encoder trace written to %s\n", trace.c_str());
#else
        fprintf(stderr, "bench_model: --trace needs libtorch 2.x (this is %s)\n", TORCH_VERSION);
        return 2;
#endif
    }

    // Decoder: one point; 16 prompts in one call; the same 16 as single calls.
    const int L = info.low_res_size;
    const int NP = 16;
    std::vector<float> pts(NP * 2);
    std::vector<int> labels(NP, 1);
    std::vector<samda_model_prompt> prompts(NP);
    for (int i = 0; i < NP; i++) {
        pts[2 * i] = (float)(50 + 57 * i % W);
        pts[2 * i + 1] = (float)(40 + 41 * i % H);
        prompts[i] = samda_model_prompt{&pts[2 * i], &labels[i], 1, nullptr, nullptr};
    }
    std::vector<float> low((size_t)NP * 3 * L * L), iou(NP * 3);
    std::vector<uint8_t> masks((size_t)NP * 3 * H * W);
    samda_model_decode_out out{low.data(), low.size(), iou.data(), iou.size(), nullptr, 0, masks.data(), masks.size()};
    auto decode = [&](size_t first, size_t n) -> bool {
        if (samda_model_decode(m, embs[0], &prompts[first], n, SAMDA_MODEL_DECODE_MULTIMASK, &out, &err) != SAMDA_OK) {
            fprintf(stderr, "bench_model: %s\n", err.message);
            return false;
        }
        return true;
    };
    if (!decode(0, 1) || !decode(0, NP))  // warm-up
        return 1;
    double s = now_s(), c = cpu_s();
    for (int k = 0; k < decode_iters; k++)
        if (!decode((size_t)(k % NP), 1))
            return 1;
    const double dec1_ms = (now_s() - s) * 1000.0 / decode_iters, dec1_cpu = (cpu_s() - c) * 1000.0 / decode_iters;
    s = now_s(), c = cpu_s();
    for (int k = 0; k < decode_iters; k++)
        if (!decode(0, NP))
            return 1;
    const double dec16_ms = (now_s() - s) * 1000.0 / decode_iters, dec16_cpu = (cpu_s() - c) * 1000.0 / decode_iters;
    s = now_s(), c = cpu_s();
    for (int i = 0; i < NP; i++)
        if (!decode((size_t)i, 1))
            return 1;
    const double singles16_ms = (now_s() - s) * 1000.0, singles16_cpu = (cpu_s() - c) * 1000.0;

    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    size_t dev_used = 0, dev_total = 0;
    const bool have_dev = samda_model_get_device_memory(m, &dev_used, &dev_total, nullptr) == SAMDA_OK;

    printf("{\n");
    printf("  \"arch\": \"%s\", \"img_size\": %d, \"device\": \"%s\", \"encoder_dtype\": \"%s\",\n", info.arch,
           info.img_size, info.device, dtype.c_str());
    printf("  \"threads\": %d, \"blas\": \"%s\", \"blas_path\": \"%s\", \"params_total\": %lld,\n", info.n_threads,
           info.blas, info.blas_path, (long long)info.n_params_total);
    printf("  \"open_s\": %.3f,\n", open_s);
    if (do_encode && enc_images > 0)
        printf("  \"encoder\": {\"batch\": %d, \"iters\": %d, \"warmup\": %d, \"images\": %d, \"seconds\": %.3f, "
               "\"images_per_s\": %.4f, \"s_per_image\": %.3f, \"cpu_s_per_image\": %.3f},\n",
               batch, iters, warmup, enc_images, enc_s, enc_images / enc_s, enc_s / enc_images, enc_cpu / enc_images);
    printf("  \"decoder\": {\"multimask\": true, \"image\": [%d, %d], \"ms_per_call_1_prompt\": %.2f, "
           "\"ms_per_call_16_prompts\": %.2f, \"ms_per_prompt_16_in_one_call\": %.2f, \"ms_16_single_calls\": %.2f,\n"
           "              \"cpu_ms_per_call_1_prompt\": %.2f, \"cpu_ms_per_call_16_prompts\": %.2f, "
           "\"cpu_ms_16_single_calls\": %.2f},\n",
           H, W, dec1_ms, dec16_ms, dec16_ms / NP, singles16_ms, dec1_cpu, dec16_cpu, singles16_cpu);
    printf("  \"peak_rss_mib\": %.1f", ru.ru_maxrss / 1024.0);
    if (have_dev)
        printf(",\n  \"cuda_used_mib\": %.1f, \"cuda_total_mib\": %.1f", dev_used / 1048576.0, dev_total / 1048576.0);
    printf("\n}\n");
    for (auto *e : embs)
        samda_embedding_release(e);
    samda_model_close(m);
    return 0;
}
