"""The model families, one folder each: its size ladder and the formulas on a size
(`spec.py`: canonical weight shapes, forward FLOPs, activations), its PyTorch model
(`torch.py`) and its Keras model (`tf.py`). bench.registry.FAMILY_FOLDERS names them.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ..registry import FAMILY_FOLDERS


def spec(family: str) -> ModuleType:
    """The family's framework-neutral module (bench.models.<folder>.spec)."""
    return importlib.import_module(f"bench.models.{FAMILY_FOLDERS[family]}.spec")


def framework_module(family: str, framework: str) -> ModuleType:
    """The family's model in one framework (bench.models.<folder>.torch or .tf): its
    `model(spec)` builds it."""
    return importlib.import_module(f"bench.models.{FAMILY_FOLDERS[family]}.{framework}")
