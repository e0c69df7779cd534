"""The CNN (the article's first example). Its sizes and the formulas on them.

Tokens are embedded first (L, embed). Conv (3x3 Conv2D on images, k=3 Conv1D otherwise;
padding from cnn_geometry) -> [BatchNorm] -> ReLU -> MaxPool(2), twice; flatten
channels-last (H,W,C) -> [Dropout] -> Dense(dense, relu) -> [Dropout] -> head.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...registry import DatasetInfo
from ..common import Shapes, prod


@dataclass(frozen=True)
class CNNSize:
    c1: int  # filters of the first convolution
    c2: int  # filters of the second convolution
    dense: int  # hidden units of the dense layer
    embed: int  # embedding width, used only on token inputs


# `article` is the article's example, reproduced exactly.
SIZES = {
    "xs": CNNSize(4, 8, 16, 8),
    "s": CNNSize(8, 16, 32, 16),
    "m": CNNSize(16, 32, 64, 32),
    "l": CNNSize(32, 64, 256, 64),
    "xl": CNNSize(64, 128, 1024, 64),
    "xxl": CNNSize(128, 256, 2048, 128),
    "article": CNNSize(32, 64, 128, 64),
}


def cnn_geometry(shape: tuple[int, ...]) -> tuple[str, list[list[int]]]:
    """Padding, and per spatial axis the sizes after conv1, pool1, conv2, pool2.

    The article's valid padding where the input is large enough; `same` for tiny inputs
    (8x8 digits) where valid padding would shrink the map to nothing.
    """
    spatial = list(shape[:-1])

    def run(pad: str) -> list[list[int]]:
        out = []
        for n in spatial:
            a = n - 2 if pad == "valid" else n
            b = a // 2
            c = b - 2 if pad == "valid" else b
            out.append([a, b, c, c // 2])
        return out

    dims = run("valid")
    pad = "valid" if all(d[3] >= 2 for d in dims) else "same"
    return pad, run(pad)


def _input_shape(s: CNNSize, info: DatasetInfo) -> tuple[int, ...]:
    return info.shape if info.kind != "tokens" else (info.shape[0], s.embed)


def weight_shapes(family: str, s: CNNSize, info: DatasetInfo, batchnorm: bool) -> Shapes:
    w: Shapes = [("embed", (info.vocab, s.embed))] if info.kind == "tokens" else []
    shape = _input_shape(s, info)
    k = (3, 3) if len(shape) == 3 else (3,)
    pooled = [d[3] for d in cnn_geometry(shape)[1]]
    for i, (a, b) in enumerate(((shape[-1], s.c1), (s.c1, s.c2)), 1):
        w += [(f"conv{i}.kernel", (*k, a, b)), (f"conv{i}.bias", (b,))]
        if batchnorm:
            w += [(f"bn{i}.gamma", (b,)), (f"bn{i}.beta", (b,))]
    w += [("dense.kernel", (prod(pooled) * s.c2, s.dense)), ("dense.bias", (s.dense,))]
    return w + [("head.kernel", (s.dense, info.n_outputs)), ("head.bias", (info.n_outputs,))]


def flops(family: str, s: CNNSize, info: DatasetInfo) -> int:
    shape = _input_shape(s, info)
    k = 9 if info.kind == "image" else 3
    conv1, _, conv2, pooled = zip(*cnn_geometry(shape)[1], strict=True)
    macs = prod(conv1) * k * shape[-1] * s.c1 + prod(conv2) * k * s.c1 * s.c2
    macs += prod(pooled) * s.c2 * s.dense + s.dense * info.n_outputs
    return 2 * macs


def activations(family: str, s: CNNSize, info: DatasetInfo) -> int:
    conv1, pool1, conv2, pool2 = (prod(d) for d in zip(*cnn_geometry(_input_shape(s, info))[1],
                                                       strict=True))
    return (2 * conv1 * s.c1 + pool1 * s.c1 + 2 * conv2 * s.c2 + pool2 * s.c2
            + 2 * s.dense + info.n_outputs)
