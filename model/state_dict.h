/* State dicts and NumPy arrays as at::Tensor: the torch side of model/pth_reader.h and model/npy.h.
 *
 * load_state_dict copies every tensor out of the memory-mapped checkpoint into contiguous CPU tensors
 * that own their memory (the file is unmapped on return), keeping the stored dtype (float16 and
 * bfloat16 stay as they are: the caller converts). save_state_dict_pth writes the same zip+pickle
 * layout torch.save uses, so Python's torch.load reads the result.
 *
 * Errors are thrown as samda::pth::Error (checkpoints) or samda::npy::Error (arrays); nothing here
 * catches them: the C boundary in model/ does.
 *
 * Thread-safety: no shared state; functions may run concurrently on different files. */
#ifndef SAMDA_MODEL_STATE_DICT_H
#define SAMDA_MODEL_STATE_DICT_H

#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

#include "npy.h"
#include "pth_reader.h"

namespace samda {

/** Name -> tensor, in checkpoint order. */
using StateDict = std::vector<std::pair<std::string, at::Tensor>>;

/** Map a checkpoint dtype to torch's scalar type, and back (throws pth::Error for types that
 *  torch.save state dicts do not use, e.g. complex). */
at::ScalarType to_scalar_type(pth::DType dt);
pth::DType from_scalar_type(at::ScalarType st);

/** Read every tensor of a torch.save checkpoint (zip format) at path.
 *  Returns contiguous CPU tensors owning their memory, in file order, with the stored dtypes.
 *  Throws pth::Error naming the file and the key on any malformed or unsupported input. */
StateDict load_state_dict(const std::string &path);
/** As above, from an opened checkpoint (which may be closed afterwards). */
StateDict load_state_dict(const pth::Checkpoint &ck);
/** One tensor of an opened checkpoint, copied out (contiguous, owning, CPU). */
at::Tensor load_tensor(const pth::Checkpoint &ck, const pth::TensorRecord &rec);

/** Write tensors as torch.save(OrderedDict) would: one storage per distinct underlying storage
 *  (views keep their offsets and strides; tensors sharing a storage share it in the file), tensors
 *  on other devices are copied to the CPU first. The archive folder is the file's stem unless
 *  opt.archive_name says otherwise. Throws pth::Error (duplicate name, undefined or sparse tensor,
 *  unsupported dtype, two dtypes viewing one storage, I/O failure: no file is left behind). */
void save_state_dict_pth(const std::string &path, const StateDict &tensors, const pth::WriteOptions &opt = {});

/** An npy array as an owning CPU tensor of the same shape. uint16 becomes int32, uint32 and uint64
 *  become int64 (uint64 values above INT64_MAX throw npy::Error); other dtypes are kept. */
at::Tensor npy_to_tensor(const npy::Array &a);
/** A tensor as an npy array (contiguous copy; bfloat16 becomes float32, which numpy lacks).
 *  Throws npy::Error for complex or quantized tensors. */
npy::Array tensor_to_npy(const at::Tensor &t);

namespace npy {
/** Write t to path as .npy (see tensor_to_npy). Throws npy::Error naming path. */
void save(const std::string &path, const at::Tensor &t);
/** Read path as an owning CPU tensor (see npy_to_tensor). Throws npy::Error naming path. */
at::Tensor load_tensor(const std::string &path);
} // namespace npy

} // namespace samda

#endif
