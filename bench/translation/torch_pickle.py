"""Tensors of a `torch.save` file (a checkpoint's pytorch_model.bin) as numpy arrays,
without torch and without running the pickle's code.

A torch.save file is a zip: `<name>/data.pkl` pickles the structure (a dict of tensors),
naming each tensor's storage, whose bytes lie in `<name>/data/<key>`. The unpickler here
rebuilds only what a state dict holds (dicts, tensors of plain dtypes) and refuses any
other class, so a file made to run code on load fails instead; TensorFlow processes,
which never import torch, read the file the same way.
"""

from __future__ import annotations

import collections
import pickle
import zipfile
from pathlib import Path

import numpy as np


class TorchPickleError(ValueError):
    """Not a torch.save file of plain tensors."""


_STORAGES = {"FloatStorage": np.float32, "DoubleStorage": np.float64,
             "HalfStorage": np.float16, "LongStorage": np.int64, "IntStorage": np.int32,
             "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
             "BoolStorage": np.bool_}


def _rebuild_tensor(storage, offset, size, stride, *_):
    item = storage.itemsize
    view = np.lib.stride_tricks.as_strided(storage[offset:], tuple(size),
                                           tuple(s * item for s in stride))
    return np.array(view)


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, archive: zipfile.ZipFile, prefix: str):
        super().__init__(file)
        self.archive, self.prefix = archive, prefix

    def find_class(self, module, name):
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch" and name in _STORAGES:
            return _STORAGES[name]
        raise TorchPickleError(f"holds a {module}.{name}, not only tensors (bfloat16 "
                               "and other classes are not read here; use model.safetensors)")

    def persistent_load(self, pid):
        kind, dtype, key = pid[0], pid[1], pid[2]
        if kind != "storage":
            raise TorchPickleError(f"unknown storage reference {kind!r}")
        return np.frombuffer(self.archive.read(f"{self.prefix}/data/{key}"), dtype=dtype)


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    try:
        with zipfile.ZipFile(path) as z:
            pkl = next((n for n in z.namelist() if n.endswith("/data.pkl")), None)
            if pkl is None:
                raise TorchPickleError("no data.pkl: not a torch.save zip file")
            with z.open(pkl) as f:
                out = _Unpickler(f, z, pkl.rsplit("/", 1)[0]).load()
    except (zipfile.BadZipFile, OSError, pickle.UnpicklingError, EOFError, KeyError) as e:
        raise TorchPickleError(f"unreadable ({e})") from None
    if not isinstance(out, dict):
        raise TorchPickleError("not a state dict")
    return dict(out)
