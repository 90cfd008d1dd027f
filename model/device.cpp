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

int online_cpus()
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

}  // namespace samda
