/* Reader (and writer) of PyTorch `.pth` checkpoints as `torch.save` writes a state dict: a zip archive
 * of stored entries holding `<archive>/data.pkl` (a pickle, protocol 2, of an OrderedDict whose values
 * are tensors rebuilt from storages named by persistent ids) and `<archive>/data/<key>` (the raw
 * little-endian bytes of each storage).
 *
 * This file is deliberately torch-free (C++17 and POSIX only) so it compiles fast and can be fuzzed;
 * model/state_dict.h turns its records into at::Tensor. The pickle is read by a small virtual machine
 * that never executes anything: it knows a fixed list of opcodes and a whitelist of globals
 * (collections.OrderedDict, torch._utils._rebuild_tensor_v2, the typed storage classes, ...), and
 * refuses everything else with an Error. Legacy (pre-1.6, non-zip) checkpoints and compressed zip
 * entries are refused, not read.
 *
 * Thread-safety: a Checkpoint is immutable after open(); its const methods may be called from several
 * threads at once. Free functions have no shared state. */
#ifndef SAMDA_MODEL_PTH_READER_H
#define SAMDA_MODEL_PTH_READER_H

#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace samda {
namespace pth {

/** Element type of a storage, named after torch's scalar types. */
enum class DType { F32, F16, BF16, F64, I64, I32, I16, I8, U8, Bool };

/** Bytes per element of dt (2 for F16/BF16, 1 for Bool). */
size_t dtype_size(DType dt);
/** Short name of dt ("float32", "float16", "bfloat16", ...). Ownership: static string. */
const char *dtype_name(DType dt);
/** torch's legacy storage class of dt ("FloatStorage", "HalfStorage", ...). Ownership: static string. */
const char *dtype_storage_class(DType dt);

/** Every failure of this file: malformed or unsupported input, I/O. The message names the file, zip
 *  entry, tensor key or byte offset concerned. */
struct Error : std::runtime_error {
    using runtime_error::runtime_error;
};

/** One tensor of the state dict, as the pickle describes it (sizes and strides in elements). */
struct TensorRecord {
    std::string name;              /* state-dict key, e.g. "image_encoder.pos_embed" */
    DType dtype;                   /* element type of its storage */
    std::vector<int64_t> sizes;    /* every size >= 0 */
    std::vector<int64_t> strides;  /* same length as sizes; every stride >= 0 */
    int64_t storage_offset;        /* in elements, >= 0 */
    std::string storage_key;       /* zip entry name of its storage, e.g. "archive/data/3" */
    int64_t storage_numel;         /* elements in that storage; offset + extent fits inside */
};

/** Number of elements of a record (product of its sizes; 1 for a 0-d tensor). */
int64_t record_numel(const TensorRecord &r);

/** An opened checkpoint: the file is memory-mapped (open) or held in memory (from_memory); the
 *  pickle is parsed and every tensor checked against its storage when it is opened. */
class Checkpoint {
public:
    /** Memory-map and parse path. Throws Error (naming path) when the file cannot be read, is not a
     *  zip, holds no `<name>/data.pkl`, has compressed entries, or its pickle is refused. */
    static Checkpoint open(const std::string &path);
    /** Parse an in-memory copy of a checkpoint (the bytes are kept by the object). Throws Error. */
    static Checkpoint from_memory(std::vector<uint8_t> bytes);

    Checkpoint(Checkpoint &&) noexcept;
    Checkpoint &operator=(Checkpoint &&) noexcept;
    Checkpoint(const Checkpoint &) = delete;
    Checkpoint &operator=(const Checkpoint &) = delete;
    ~Checkpoint();

    /** The tensors of the state dict in file order (non-tensor values are skipped). */
    const std::vector<TensorRecord> &tensors() const;
    /** The tensor named name, or nullptr. Borrowed: valid while this Checkpoint lives. */
    const TensorRecord *find(const std::string &name) const;
    /** Raw bytes of a storage (storage_key of a TensorRecord), bounds-checked against the file.
     *  Throws Error naming key when no such entry exists or its local zip header is damaged (local
     *  headers are read here, next to the data, not at open). Borrowed: valid while this Checkpoint
     *  lives; the pointer need not be aligned to the element size. If the file is truncated by
     *  another process while mapped, reading the bytes raises SIGBUS (as with any mmap). */
    std::pair<const uint8_t *, size_t> storage(const std::string &key) const;
    /** Raw bytes of any zip entry by its full name ("archive/version"); throws Error if absent. */
    std::pair<const uint8_t *, size_t> entry(const std::string &name) const;
    /** True if the zip holds an entry with this full name. */
    bool has_entry(const std::string &name) const;
    /** Names of every zip entry, in central-directory order. */
    std::vector<std::string> entry_names() const;
    /** The archive's top folder ("archive", or the stem of the saved file name, e.g. "weights"). */
    const std::string &archive_name() const;
    /** Key of the wrapper dict the state dict was found under ("model", "state_dict"), or "". */
    const std::string &wrapper_key() const;
    /** Check the CRC-32 of every entry against the central directory (reads the whole file).
     *  Throws Error naming the first entry that does not match. */
    void verify_crc32() const;

    struct Impl;

private:
    explicit Checkpoint(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

/** CRC-32 (ISO-HDLC, as zip uses) of data, continuing from crc (start with 0). */
uint32_t crc32_update(uint32_t crc, const uint8_t *data, size_t n);

/* ---- writing ---------------------------------------------------------------------------------- */

/** A storage to write: dtype and its raw native (little-endian) bytes; nbytes a multiple of the
 *  element size. Borrowed by write_checkpoint for the duration of the call. */
struct StorageBlob {
    DType dtype;
    const uint8_t *data;
    size_t nbytes;
};

/** A tensor to write: a view (sizes, strides, offset in elements) of storages[storage_index]. */
struct TensorToWrite {
    std::string name;
    size_t storage_index;
    std::vector<int64_t> sizes, strides;
    int64_t storage_offset = 0;
};

struct WriteOptions {
    /** Top folder inside the zip; "" = "archive". Must be [A-Za-z0-9_.-]+. */
    std::string archive_name;
    /** "" = the pickle is the OrderedDict itself (as torch.save(model.state_dict())); otherwise a
     *  plain dict {wrapper_key: OrderedDict} (as MedSAM's {"model": ...}). */
    std::string wrapper_key;
};

/** Write a checkpoint in torch.save's zip layout (`<a>/data.pkl`, `<a>/data/<i>`, `<a>/version`;
 *  stored entries aligned to 64 bytes; ZIP64 records as torch writes them) to path, through a
 *  temporary file renamed into place. Throws Error on invalid input (a view past its storage, bad
 *  index) or I/O failure (the temporary file is removed). */
void write_checkpoint(const std::string &path, const std::vector<StorageBlob> &storages,
                      const std::vector<TensorToWrite> &tensors, const WriteOptions &opt = {});
/** As write_checkpoint, returning the file's bytes. */
std::vector<uint8_t> write_checkpoint_to_memory(const std::vector<StorageBlob> &storages,
                                                const std::vector<TensorToWrite> &tensors,
                                                const WriteOptions &opt = {});

/** Build a zip of stored entries, laid out as torch's writer does (used by tests to craft archives). */
std::vector<uint8_t> zip_store_to_memory(const std::vector<std::pair<std::string, std::vector<uint8_t>>> &entries);

} // namespace pth
} // namespace samda

#endif
