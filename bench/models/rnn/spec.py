"""The recurrent family, LSTM and GRU (the article's second example: a 2-layer LSTM
classifier). Its sizes and the formulas on them.

Tokens embedded; images read row by row (H steps of W*C features). `layers` recurrent
layers of `hidden` units, Dropout between them on the sequence, the last one's final state
-> [BatchNorm] -> [Dropout] -> head. Canonical LSTM weights: kernel (in,4h),
recurrent_kernel (h,4h), bias (4h), gates i,f,c,o; torch's second bias stays zero and
frozen. GRU: Keras's reset_after variant (torch's own), bias (2,3h), gates z,r,h. No
recurrent dropout (Keras would leave its fused kernel).
"""

from __future__ import annotations

from dataclasses import dataclass

from ...registry import DatasetInfo
from ..common import Shapes, sequence_features


@dataclass(frozen=True)
class RNNSize:
    embed: int  # embedding width, used only on token inputs
    hidden: int
    layers: int


SIZES = {
    "xs": RNNSize(8, 16, 1),
    "s": RNNSize(16, 32, 1),
    "m": RNNSize(32, 64, 2),
    "l": RNNSize(64, 256, 2),
    "xl": RNNSize(128, 512, 2),
    "xxl": RNNSize(256, 1024, 3),
    "article": RNNSize(64, 128, 2),
}
GATES = {"lstm": 4, "gru": 3}  # i,f,c,o and z,r,h


def _steps(s: RNNSize, info: DatasetInfo) -> tuple[int, int]:
    """(length, features of the first layer's input)."""
    if info.kind == "tokens":
        return info.shape[0], s.embed
    return sequence_features(info)


def weight_shapes(family: str, s: RNNSize, info: DatasetInfo, batchnorm: bool) -> Shapes:
    w: Shapes = [("embed", (info.vocab, s.embed))] if info.kind == "tokens" else []
    fin, g = _steps(s, info)[1], GATES[family]
    for i in range(s.layers):
        bias = (g * s.hidden,) if family == "lstm" else (2, g * s.hidden)
        w += [
            (f"rnn{i}.kernel", (fin, g * s.hidden)),
            (f"rnn{i}.recurrent_kernel", (s.hidden, g * s.hidden)),
            (f"rnn{i}.bias", bias),
        ]
        fin = s.hidden
    if batchnorm:
        w += [("bn.gamma", (s.hidden,)), ("bn.beta", (s.hidden,))]
    return w + [("head.kernel", (s.hidden, info.n_outputs)), ("head.bias", (info.n_outputs,))]


def flops(family: str, s: RNNSize, info: DatasetInfo) -> int:
    length, fin = _steps(s, info)
    macs = 0
    for _ in range(s.layers):
        macs += length * GATES[family] * (fin * s.hidden + s.hidden * s.hidden)
        fin = s.hidden
    return 2 * (macs + s.hidden * info.n_outputs)


def activations(family: str, s: RNNSize, info: DatasetInfo) -> int:
    # gates, cell/candidate state and hidden state of every step of every layer
    length = _steps(s, info)[0]
    return s.layers * length * (GATES[family] + 2) * s.hidden + info.n_outputs
