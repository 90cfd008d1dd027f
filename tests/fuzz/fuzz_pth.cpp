/* libFuzzer target for model/pth_reader.cpp. Input byte 0 picks the mode:
 *   0x01: the rest is a data.pkl, zipped here beside four 64-byte storages (archive/data/0..3) so the
 *         mutations reach the pickle VM without first having to keep a zip directory consistent;
 *   else: the whole input is a checkpoint file.
 * After a successful parse every tensor's first and last storage bytes are read (ASan catches a bound
 * the reader failed to enforce), and the records are written back out and parsed again, which must
 * give the same records. Only samda::pth::Error is an acceptable failure. */
#include "pth_reader.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

using namespace samda::pth;

static void round_trip(const Checkpoint &ck)
{
    std::vector<std::string> keys;
    std::vector<StorageBlob> blobs;
    std::vector<TensorToWrite> tw;
    volatile uint8_t sink = 0;
    for (const TensorRecord &r : ck.tensors()) {
        auto s = ck.storage(r.storage_key);
        size_t es = dtype_size(r.dtype);
        if (s.second != (size_t)r.storage_numel * es) abort();
        if (record_numel(r) > 0) {
            int64_t last = r.storage_offset;
            for (size_t d = 0; d < r.sizes.size(); d++) last += (r.sizes[d] - 1) * r.strides[d];
            sink = sink + s.first[(size_t)r.storage_offset * es] + s.first[(size_t)last * es + es - 1];
        }
        size_t idx = keys.size();
        for (size_t k = 0; k < keys.size(); k++)
            if (keys[k] == r.storage_key) idx = k;
        if (idx == keys.size()) {
            keys.push_back(r.storage_key);
            blobs.push_back(StorageBlob{r.dtype, s.first, s.second});
        } else if (blobs[idx].dtype != r.dtype) {
            return; /* two dtypes over one storage: legal to read, refused by the writer */
        }
        tw.push_back(TensorToWrite{r.name, idx, r.sizes, r.strides, r.storage_offset});
    }
    Checkpoint again = Checkpoint::from_memory(write_checkpoint_to_memory(blobs, tw));
    if (again.tensors().size() != ck.tensors().size()) abort();
    for (size_t i = 0; i < tw.size(); i++) {
        const TensorRecord &a = ck.tensors()[i], &b = again.tensors()[i];
        if (a.name != b.name || a.sizes != b.sizes || a.strides != b.strides || a.storage_offset != b.storage_offset ||
            a.dtype != b.dtype || a.storage_numel != b.storage_numel)
            abort();
    }
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    std::vector<uint8_t> bytes;
    if (size > 0 && data[0] == 0x01) {
        std::vector<std::pair<std::string, std::vector<uint8_t>>> e;
        e.emplace_back("archive/data.pkl", std::vector<uint8_t>(data + 1, data + size));
        for (int k = 0; k < 4; k++) e.emplace_back("archive/data/" + std::to_string(k), std::vector<uint8_t>(64, (uint8_t)k));
        bytes = zip_store_to_memory(e);
    } else {
        bytes.assign(data, data + size);
    }
    try {
        Checkpoint ck = Checkpoint::from_memory(std::move(bytes));
        round_trip(ck);
    } catch (const Error &) {
    }
    return 0;
}
