"""The Transformer classifier. Its sizes and the formulas on them.

Tokens embedded, or series patches / image rows projected to d_model (transformer_tokens);
sinusoidal positions added (bench.models.common.sinusoid); `layers` pre-LN blocks
x + Drop(Attn(LN1 x)), x + Drop(FF(LN2 x)) with FF = Dense(ff, relu) -> Dense(d) and
attention over `heads` heads from four d->d projections q,k,v,o (torch computes it with
F.scaled_dot_product_attention, TensorFlow with matmuls and softmax: the same function);
final LayerNorm "ln", mean over positions, [BatchNorm], [Dropout], head.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...registry import DatasetInfo
from ..common import Shapes, attention_shapes, feed_forward_shapes, norm_shapes, sequence_features


@dataclass(frozen=True)
class TransformerSize:
    d_model: int
    heads: int
    layers: int
    ff: int


SIZES = {
    "xs": TransformerSize(16, 2, 1, 16),
    "s": TransformerSize(32, 2, 2, 64),
    "m": TransformerSize(64, 4, 2, 128),
    "l": TransformerSize(128, 4, 4, 512),
    "xl": TransformerSize(256, 8, 6, 1024),
    "xxl": TransformerSize(512, 8, 8, 2048),
    "article": TransformerSize(64, 4, 2, 256),
}

# The Transformer reads a series in patches of this many consecutive steps, one token each
# (ViT's patch embedding, in 1-D): MNIST-1D's 40 scalar steps become 10 tokens of 4 values.
# One scalar per token gives attention almost nothing to compare, and 40 tokens cost 16x the
# attention of 10: measured here, the patched model learns more in a fifth of the time.
TRANSFORMER_PATCH = 4


def transformer_tokens(info: DatasetInfo) -> tuple[int, int]:
    """(tokens, features per token) the Transformer's input projection sees (non-token input).

    Series in patches of TRANSFORMER_PATCH steps (when the length divides), images row by row.
    """
    length, feats = sequence_features(info)
    if info.kind == "series" and length % TRANSFORMER_PATCH == 0:
        return length // TRANSFORMER_PATCH, feats * TRANSFORMER_PATCH
    return length, feats


def _length(info: DatasetInfo) -> int:
    return info.shape[0] if info.kind == "tokens" else transformer_tokens(info)[0]


def weight_shapes(family: str, s: TransformerSize, info: DatasetInfo,
                  batchnorm: bool) -> Shapes:
    d = s.d_model
    if info.kind == "tokens":
        w: Shapes = [("embed", (info.vocab, d))]
    else:
        w = [("proj.kernel", (transformer_tokens(info)[1], d)), ("proj.bias", (d,))]
    for i in range(s.layers):
        b = f"block{i}."
        w += norm_shapes(b + "ln1", d) + attention_shapes(b, d) + norm_shapes(b + "ln2", d)
        w += feed_forward_shapes(b, d, s.ff)
    w += norm_shapes("ln", d)
    if batchnorm:
        w += norm_shapes("bn", d)
    return w + [("head.kernel", (d, info.n_outputs)), ("head.bias", (info.n_outputs,))]


def flops(family: str, s: TransformerSize, info: DatasetInfo) -> int:
    d = s.d_model
    if info.kind == "tokens":
        length, macs = info.shape[0], 0
    else:
        length, fin = transformer_tokens(info)
        macs = length * fin * d
    per_layer = 4 * length * d * d + 2 * length * length * d + 2 * length * d * s.ff
    return 2 * (macs + s.layers * per_layer + d * info.n_outputs)


def activations(family: str, s: TransformerSize, info: DatasetInfo) -> int:
    d, length = s.d_model, _length(info)
    per_block = length * (8 * d + 2 * s.ff) + 2 * s.heads * length * length
    return length * d + s.layers * per_block + d + info.n_outputs
