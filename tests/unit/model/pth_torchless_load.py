#!/usr/bin/python3
"""Read a .pth the way torch.load does, without torch, and dump each tensor as NAME.npy.

Used by test_state_dict to check that samda's writer produces what Python's unpickler and zipfile
accept: torch.load resolves the same globals (collections.OrderedDict, torch._utils._rebuild_tensor_v2,
torch.<Type>Storage), calls persistent_load with ('storage', type, key, location, numel) and reads
'<archive>/data/<key>' from the zip. bfloat16 is dumped as its raw uint16 bits (numpy has no bf16).
Usage: pth_torchless_load.py FILE.pth OUTDIR   (prints the archive name and the number of tensors)
"""
import collections
import pickle
import sys
import zipfile

import numpy as np

STORAGE = {
    "FloatStorage": "<f4", "HalfStorage": "<f2", "BFloat16Storage": "<u2", "DoubleStorage": "<f8",
    "LongStorage": "<i8", "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1",
    "ByteStorage": "u1", "BoolStorage": "?",
}


class StorageType:
    def __init__(self, name):
        self.dtype = np.dtype(STORAGE[name])


def rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks, *meta):
    item = storage.dtype.itemsize
    return np.lib.stride_tricks.as_strided(storage[offset:], shape=tuple(size),
                                           strides=tuple(s * item for s in stride)).copy()


def main():
    path, outdir = sys.argv[1], sys.argv[2]
    zf = zipfile.ZipFile(path)
    names = zf.namelist()
    archive = names[0].split("/")[0]
    assert names[0] == archive + "/data.pkl", names[0]
    assert zf.testzip() is None, "CRC mismatch"
    for info in zf.infolist():
        assert info.compress_type == zipfile.ZIP_STORED
    assert zf.read(archive + "/version").strip() in (b"3", b"2", b"1")
    loaded = {}

    class Unpickler(pickle.Unpickler):
        def find_class(self, module, name):
            if (module, name) == ("collections", "OrderedDict"):
                return collections.OrderedDict
            if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
                return rebuild_tensor_v2
            if module == "torch" and name in STORAGE:
                return StorageType(name)
            raise pickle.UnpicklingError("global %s.%s" % (module, name))

        def persistent_load(self, pid):
            tag, stype, key, location, numel = pid
            assert tag == "storage" and location == "cpu"
            if key not in loaded:
                data = zf.read("%s/data/%s" % (archive, key))
                arr = np.frombuffer(data, dtype=stype.dtype)
                assert arr.size == numel, (key, arr.size, numel)
                loaded[key] = arr
            return loaded[key]

    with zf.open(archive + "/data.pkl") as f:
        obj = Unpickler(f).load()
    if not isinstance(obj, collections.OrderedDict):
        obj = obj["model"]
    for name, arr in obj.items():
        np.save("%s/%s.npy" % (outdir, name), arr)
    print(archive, len(obj))


if __name__ == "__main__":
    main()
