"""The model families, one folder each: its size ladder and the formulas on a size
(`spec.py`: canonical weight shapes, forward FLOPs, activations), its PyTorch model
(`torch.py`) and its Keras model (`tf.py`).

FOLDERS is the one list of families: bench.registry, bench.sizes and both backends read it.
Adding a family is a folder here plus a line below (and the config schema's enum and the
README's model table, which say what a user may ask for).
"""

from __future__ import annotations

import importlib
from types import ModuleType

# family -> its folder (LSTM and GRU are one recurrent family with the cell swapped)
FOLDERS = {"cnn": "cnn", "lstm": "rnn", "gru": "rnn", "transformer": "transformer",
           "seq2seq": "seq2seq"}
TRANSLATORS = ("seq2seq",)  # families that translate text; the others classify


def spec(family: str) -> ModuleType:
    """The family's framework-neutral module (bench.models.<folder>.spec)."""
    return importlib.import_module(f"bench.models.{FOLDERS[family]}.spec")


def framework_module(family: str, framework: str) -> ModuleType:
    """The family's model in one framework (bench.models.<folder>.torch or .tf): its
    `model(spec)` builds it."""
    return importlib.import_module(f"bench.models.{FOLDERS[family]}.{framework}")
