"""Framework-neutral pieces several families share: the shapes of attention and
normalisation weights, the sinusoid position table, how a sequence model reads a
non-token input."""

from __future__ import annotations

import math

import numpy as np

from ..registry import DatasetInfo

Shapes = list[tuple[str, tuple[int, ...]]]


def prod(xs) -> int:
    return int(math.prod(xs))


def attention_shapes(prefix: str, d: int) -> Shapes:
    """Query, key, value and output projections, each (d, d) with a bias."""
    return [w for name in "qkvo" for w in ((f"{prefix}{name}.kernel", (d, d)),
                                            (f"{prefix}{name}.bias", (d,)))]


def norm_shapes(name: str, d: int) -> Shapes:
    return [(f"{name}.gamma", (d,)), (f"{name}.beta", (d,))]


def feed_forward_shapes(prefix: str, d: int, ff: int) -> Shapes:
    return [(prefix + "ff1.kernel", (d, ff)), (prefix + "ff1.bias", (ff,)),
            (prefix + "ff2.kernel", (ff, d)), (prefix + "ff2.bias", (d,))]


def sequence_features(info: DatasetInfo) -> tuple[int, int]:
    """(length, features per step) that sequence models see for a non-token input.

    Images are read row by row: H steps of W*C features.
    """
    if info.kind == "series":
        return info.shape[0], info.shape[1]
    h, w, c = info.shape
    return h, w * c


def sinusoid(length: int, d: int, layout: str = "interleaved") -> np.ndarray:
    """The fixed position table (length, d), float32 from float64 arithmetic, that both
    backends add: angle pos / 10000^(2i/d) for i < d/2, its sine on even features and
    cosine on odd ones (Vaswani et al.), or with "halves" every sine first, then every
    cosine (Marian's table, as Hugging Face builds it)."""
    pos = np.arange(length, dtype=np.float64)[:, None]
    rate = np.exp(-math.log(10000.0) * np.arange(0, d, 2, dtype=np.float64) / d)
    sin, cos = np.sin(pos * rate), np.cos(pos * rate)[:, : d // 2]
    if layout == "halves":
        return np.concatenate([sin, cos], 1).astype(np.float32)
    pe = np.zeros((length, d))
    pe[:, 0::2], pe[:, 1::2] = sin, cos
    return pe.astype(np.float32)
