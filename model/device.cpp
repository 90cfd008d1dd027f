// model/device.cpp: where the model runs: resolving the device request, free CUDA memory (through
// the CUDA runtime libtorch already loaded, so this builds against CPU-only libtorch too), the BLAS
// library in use and the CPU count.
#include "internal.h"

#include <torch/cuda.h>

#include <dlfcn.h>
#include <link.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace samda {

at::Device resolve_device(int request)
{
    if (request == -1)
        return at::Device(at::kCPU);
    if (request == -2)
        return torch::cuda::is_available() ? at::Device(at::kCUDA, 0) : at::Device(at::kCPU);
    if (request < -2)
        throw std::invalid_argument("device " + std::to_string(request) + " is not valid (use -2 auto, -1 CPU, >= 0 CUDA)");
    if (!torch::cuda::is_available())
        throw std::invalid_argument("CUDA device " + std::to_string(request) +
                                    " requested, but libtorch sees no CUDA device (CPU-only build or no driver)");
    const int n = (int)torch::cuda::device_count();
    if (request >= n)
        throw std::invalid_argument("CUDA device " + std::to_string(request) + " requested, but only " +
                                    std::to_string(n) + " present");
    return at::Device(at::kCUDA, (c10::DeviceIndex)request);
}

namespace {

struct LoadedLibs {
    std::vector<std::string> paths;
};

int collect_lib(struct dl_phdr_info *info, size_t, void *data)
{
    if (info->dlpi_name && info->dlpi_name[0])
        static_cast<LoadedLibs *>(data)->paths.emplace_back(info->dlpi_name);
    return 0;
}

std::vector<std::string> loaded_libraries()
{
    LoadedLibs libs;
    dl_iterate_phdr(collect_lib, &libs);
    return libs.paths;
}

std::string real_path(const std::string &p)
{
    char buf[PATH_MAX];
    if (realpath(p.c_str(), buf))
        return buf;
    return p;
}

bool contains(const std::string &s, const char *needle) { return s.find(needle) != std::string::npos; }

std::string blas_kind(const std::string &real)
{
    if (contains(real, "openblas"))
        return "openblas";
    if (contains(real, "blis"))
        return "blis";
    if (contains(real, "mkl"))
        return "mkl";
    if (contains(real, "atlas"))
        return "atlas";
    if (contains(real, "/blas/libblas"))
        return "reference";
    return "unknown";
}

}  // namespace

void detect_blas(std::string *name, std::string *path)
{
    std::string found_name = "unknown", found_path;
    // libtorch links libblas.so.3; on Debian that name is an alternative (reference netlib or OpenBLAS).
    for (const auto &p : loaded_libraries()) {
        const char *base = std::strrchr(p.c_str(), '/');
        base = base ? base + 1 : p.c_str();
        if (std::strncmp(base, "libblas.so", 10) == 0) {
            found_path = real_path(p);
            found_name = blas_kind(found_path);
            break;
        }
    }
    if (found_path.empty()) {
        for (const auto &p : loaded_libraries()) {
            if (contains(p, "libopenblas") || contains(p, "libmkl_") || contains(p, "libblis")) {
                found_path = real_path(p);
                found_name = blas_kind(found_path);
                break;
            }
        }
    }
    if (found_path.empty() && at::hasMKL())
        found_name = "mkl";  // linked into libtorch (pip wheels)
    if (name)
        *name = found_name;
    if (path)
        *path = found_path;
}

bool cuda_mem_info(int ordinal, size_t *free_bytes, size_t *total_bytes)
{
    // Use the CUDA runtime libtorch loaded (pip wheels: libcudart.so.12); never load one ourselves.
    for (const auto &p : loaded_libraries()) {
        if (!contains(p, "libcudart"))
            continue;
        void *h = dlopen(p.c_str(), RTLD_LAZY | RTLD_NOLOAD);
        if (!h)
            continue;
        using get_dev_fn = int (*)(int *);
        using set_dev_fn = int (*)(int);
        using mem_fn = int (*)(size_t *, size_t *);
        auto get_dev = reinterpret_cast<get_dev_fn>(dlsym(h, "cudaGetDevice"));
        auto set_dev = reinterpret_cast<set_dev_fn>(dlsym(h, "cudaSetDevice"));
        auto mem = reinterpret_cast<mem_fn>(dlsym(h, "cudaMemGetInfo"));
        bool ok = false;
        if (get_dev && set_dev && mem) {
            int prev = 0;
            if (get_dev(&prev) == 0 && set_dev(ordinal) == 0) {
                size_t f = 0, t = 0;
                ok = mem(&f, &t) == 0;
                if (ok) {
                    *free_bytes = f;
                    *total_bytes = t;
                }
                set_dev(prev);
            }
        }
        dlclose(h);
        if (ok)
            return true;
    }
    return false;
}

at::Tensor host_to_device(const at::Tensor &host, const at::Device &dev, bool own)
{
    if (!dev.is_cuda())
        return own ? host.clone() : host;
    at::Tensor pinned = at::empty(host.sizes(), host.options().pinned_memory(true));
    pinned.copy_(host);
    // The caching host allocator keeps the staging block until the asynchronous copy has run.
    return pinned.to(dev, /*non_blocking=*/true);
}

void device_to_host(const at::Tensor &t, void *dst, size_t dst_bytes)
{
    const size_t bytes = (size_t)t.numel() * t.element_size();
    if (bytes != dst_bytes)
        throw std::invalid_argument("copying " + std::to_string(bytes) + " bytes of results into a buffer of " +
                                    std::to_string(dst_bytes));
    if (t.is_cuda()) {
        at::Tensor pinned = at::empty(t.sizes(), t.options().device(at::kCPU).pinned_memory(true));
        pinned.copy_(t);  // synchronous: waits for the device
        std::memcpy(dst, pinned.data_ptr(), bytes);
        return;
    }
    at::Tensor c = t.contiguous();
    std::memcpy(dst, c.data_ptr(), bytes);
}

int online_cpus()
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

}  // namespace samda
