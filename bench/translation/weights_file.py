"""A trained model's weights in a framework-neutral file.

The arrays are the canonical ones (`sizes.weight_shapes`: Keras layout, canonical order) in
an .npz with the run's spec beside them, so a model trained in PyTorch loads in TensorFlow
and the reverse. Nothing in it needs pickle. Written atomically: a killed job leaves the
old file or none, never half of one.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from ..registry import SpecError
from ..sizes import weight_shapes
from ..spec import RunSpec


class WeightsError(SpecError):
    """A weights file is missing, unreadable or belongs to another model."""


def path_for(record_path: str | Path) -> Path:
    """Where a run's weights go: beside its record, `<run_id>.weights.npz`."""
    p = Path(record_path)
    return p.with_name(p.name.removesuffix(".json") + ".weights.npz")


def _arch(spec: RunSpec) -> dict:
    """What fixes the weights' shapes: the same in every framework."""
    return {k: getattr(spec, k) for k in ("family", "dataset", "size", "batchnorm")}


def save(path: str | Path, spec: RunSpec, weights: list[np.ndarray]) -> Path:
    path = Path(path)
    names = [n for n, _ in weight_shapes(spec.family, spec.size, spec.dataset, spec.batchnorm)]
    if len(names) != len(weights):
        raise ValueError(f"{len(weights)} arrays for {len(names)} canonical weights")
    arrays = {f"{i:03d}:{n}": np.asarray(w, dtype=np.float32)
              for i, (n, w) in enumerate(zip(names, weights, strict=True))}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, __spec__=np.array(json.dumps(spec.to_dict(), sort_keys=True)), **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load(path: str | Path, spec: RunSpec) -> list[np.ndarray]:
    """The canonical arrays in `path`, checked against `spec`'s architecture."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"no weights file {path}: train the run with --save-model "
                           "(config save_model: true)")
    try:
        with np.load(path, allow_pickle=False) as z:
            saved = RunSpec.from_dict(json.loads(str(z["__spec__"])))
            items = sorted((k, z[k]) for k in z.files if k != "__spec__")
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, SpecError) as e:
        raise WeightsError(f"unreadable weights file {path}: {e}") from None
    if _arch(saved) != _arch(spec):
        raise WeightsError(f"weights file {path} holds a {saved.family} {saved.size} on "
                           f"{saved.dataset}, not this run's {spec.family} {spec.size} on "
                           f"{spec.dataset}")
    want = weight_shapes(spec.family, spec.size, spec.dataset, spec.batchnorm)
    got = [(k.split(":", 1)[1], a.shape) for k, a in items]
    if got != [(n, tuple(s)) for n, s in want]:
        raise WeightsError(f"weights file {path} does not match the {spec.family} "
                           f"{spec.size} weight list (names or shapes differ)")
    return [a for _, a in items]
