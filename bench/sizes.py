"""Model sizes and the formulas on them, framework-neutral: each family's size ladder,
the canonical weight shapes both backends build, parameter counts, forward FLOPs,
activations and the training-memory estimate.

Parameter counts and FLOPs are computed analytically from the same size definitions the
backends build from; the test suite checks both frameworks against these formulas, so the
numbers in ``python -m bench list`` are the numbers the models really have.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .registry import (
    DATASETS,
    FAMILIES,
    OPTIMIZERS,
    DatasetInfo,
    SpecError,
    check_choice,
    check_family_reads,
)
from .text_pairs import BOS, EOS, PAD

# ---------------------------------------------------------------------------- sizes


@dataclass(frozen=True)
class CNNSize:
    c1: int  # filters of the first convolution
    c2: int  # filters of the second convolution
    dense: int  # hidden units of the dense layer
    embed: int  # embedding width, used only on token inputs


@dataclass(frozen=True)
class RNNSize:
    embed: int  # embedding width, used only on token inputs
    hidden: int
    layers: int


@dataclass(frozen=True)
class TransformerSize:
    d_model: int
    heads: int
    layers: int
    ff: int


@dataclass(frozen=True)
class Seq2SeqSize:
    d_model: int
    heads: int
    enc_layers: int
    dec_layers: int
    ff: int


@dataclass(frozen=True)
class Seq2SeqArch:
    """Everything that fixes what an encoder-decoder computes, in both backends: the
    benchmark's own `seq2seq` (pre-LN, ReLU, interleaved positions, a final LayerNorm on
    each stack) and a pretrained Marian checkpoint (bench.marian: post-LN, SiLU, positions
    as sines then cosines, no final LayerNorm). Both share one canonical weight list."""

    vocab: int
    d_model: int
    heads: int
    enc_layers: int
    dec_layers: int
    ff: int
    post_ln: bool = False  # LayerNorm after each residual add (BART/Marian), not before
    activation: str = "relu"  # the feed-forward's; "silu" is Marian's "swish"
    positions: str = "interleaved"  # sin/cos on even/odd features; "halves": sin | cos
    start: int = 1  # the token decoding starts from (Marian: its pad)
    eos: int = 2
    pad: int = 0
    max_positions: int = 0  # longest sentence the position table covers (0: any)

    @property
    def final_ln(self) -> bool:
        """Pre-LN stacks end in a LayerNorm; post-LN ones are normalised already."""
        return not self.post_ln


# xs..xl fit a 2-core laptop and span three orders of magnitude on every dataset;
# xxl is meant for a GPU. `seed` is the article's example, reproduced exactly.
SIZES: dict[str, dict[str, object]] = {
    "cnn": {
        "xs": CNNSize(4, 8, 16, 8),
        "s": CNNSize(8, 16, 32, 16),
        "m": CNNSize(16, 32, 64, 32),
        "l": CNNSize(32, 64, 256, 64),
        "xl": CNNSize(64, 128, 1024, 64),
        "xxl": CNNSize(128, 256, 2048, 128),
        "seed": CNNSize(32, 64, 128, 64),
    },
    "lstm": {
        "xs": RNNSize(8, 16, 1),
        "s": RNNSize(16, 32, 1),
        "m": RNNSize(32, 64, 2),
        "l": RNNSize(64, 256, 2),
        "xl": RNNSize(128, 512, 2),
        "xxl": RNNSize(256, 1024, 3),
        "seed": RNNSize(64, 128, 2),
    },
    "transformer": {
        "xs": TransformerSize(16, 2, 1, 16),
        "s": TransformerSize(32, 2, 2, 64),
        "m": TransformerSize(64, 4, 2, 128),
        "l": TransformerSize(128, 4, 4, 512),
        "xl": TransformerSize(256, 8, 6, 1024),
        "xxl": TransformerSize(512, 8, 8, 2048),
        "seed": TransformerSize(64, 4, 2, 256),
    },
    # `seed` has the shape of the article's Marian model (opus-mt-en-fr): 6+6 layers,
    # d_model 512, 8 heads, FFN 2048; with this task's 62-word vocabulary, not Marian's
    # 59,514, it has 44.2M parameters instead of about 75M (the embedding is the difference).
    "seq2seq": {
        "xs": Seq2SeqSize(16, 2, 1, 1, 32),
        "s": Seq2SeqSize(32, 2, 1, 1, 64),
        "m": Seq2SeqSize(64, 4, 2, 2, 128),
        "l": Seq2SeqSize(128, 4, 3, 3, 256),
        "xl": Seq2SeqSize(256, 8, 4, 4, 1024),
        "seed": Seq2SeqSize(512, 8, 6, 6, 2048),
    },
}
SIZES["gru"] = SIZES["lstm"]  # the same family with the cell swapped
SIZE_NAMES = ("xs", "s", "m", "l", "xl", "xxl", "seed")


def size_of(family: str, size: str):
    check_choice("family", family, FAMILIES)
    check_choice(f"size for {family}", size, tuple(SIZES[family]))
    return SIZES[family][size]


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


def _seq_features(info: DatasetInfo) -> tuple[int, int]:
    """(length, features per step) that sequence models see for a non-token input.

    Images are read row by row: H steps of W*C features.
    """
    if info.kind == "series":
        return info.shape[0], info.shape[1]
    h, w, c = info.shape
    return h, w * c


# The Transformer reads a series in patches of this many consecutive steps, one token each
# (ViT's patch embedding, in 1-D): MNIST-1D's 40 scalar steps become 10 tokens of 4 values.
# One scalar per token gives attention almost nothing to compare, and 40 tokens cost 16x the
# attention of 10: measured here, the patched model learns more in a fifth of the time.
TRANSFORMER_PATCH = 4


def transformer_tokens(info: DatasetInfo) -> tuple[int, int]:
    """(tokens, features per token) the Transformer's input projection sees (non-token input).

    Series in patches of TRANSFORMER_PATCH steps (when the length divides), images row by row.
    """
    length, feats = _seq_features(info)
    if info.kind == "series" and length % TRANSFORMER_PATCH == 0:
        return length // TRANSFORMER_PATCH, feats * TRANSFORMER_PATCH
    return length, feats


def _prod(xs) -> int:
    return int(math.prod(xs))


def weight_shapes(
    family: str, size: str, dataset: str, batchnorm: bool = False
) -> list[tuple[str, tuple[int, ...]]]:
    """Every trainable tensor, in the canonical order and layout both backends exchange.

    Layout is Keras's: dense kernels (in, out), conv kernels (k[, k], in, out), recurrent
    kernels (in, G*h) / (h, G*h) with gates i,f,c,o (LSTM) or z,r,h (GRU), the GRU bias as
    (2, 3h) rows [input, recurrent] (reset_after), flatten in channels-last order. Torch
    backends transpose/reorder on the way in and out. LSTM has one bias of 4h per layer: the
    torch backend keeps its second bias at zero and frozen, so counts match exactly.
    """
    check_family_reads(family, dataset)
    info = DATASETS[dataset]
    s = size_of(family, size)
    if family == "seq2seq":
        if s.d_model % s.heads:
            raise SpecError(f"seq2seq size {size!r}: d_model not divisible by heads")
        return seq2seq_shapes(seq2seq_arch(size, dataset))
    out = info.n_outputs
    w: list[tuple[str, tuple[int, ...]]] = []
    if family == "cnn":
        if info.kind == "tokens":
            w.append(("embed", (info.vocab, s.embed)))
            shape = (info.shape[0], s.embed)
        else:
            shape = info.shape
        k = (3, 3) if len(shape) == 3 else (3,)
        cin = shape[-1]
        pooled = [d[3] for d in cnn_geometry(shape)[1]]
        for i, (a, b) in enumerate(((cin, s.c1), (s.c1, s.c2)), 1):
            w += [(f"conv{i}.kernel", (*k, a, b)), (f"conv{i}.bias", (b,))]
            if batchnorm:
                w += [(f"bn{i}.gamma", (b,)), (f"bn{i}.beta", (b,))]
        w += [("dense.kernel", (_prod(pooled) * s.c2, s.dense)), ("dense.bias", (s.dense,))]
        w += [("head.kernel", (s.dense, out)), ("head.bias", (out,))]
    elif family in ("lstm", "gru"):
        if info.kind == "tokens":
            w.append(("embed", (info.vocab, s.embed)))
            fin = s.embed
        else:
            fin = _seq_features(info)[1]
        g = 4 if family == "lstm" else 3
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
        w += [("head.kernel", (s.hidden, out)), ("head.bias", (out,))]
    else:
        d = s.d_model
        if s.d_model % s.heads:
            raise SpecError(f"transformer size {size!r}: d_model not divisible by heads")
        if info.kind == "tokens":
            w.append(("embed", (info.vocab, d)))
        else:
            w += [("proj.kernel", (transformer_tokens(info)[1], d)), ("proj.bias", (d,))]
        for i in range(s.layers):
            b = f"block{i}."
            w += _norm(b + "ln1", d) + _attention(b, d) + _norm(b + "ln2", d)
            w += [(b + "ff1.kernel", (d, s.ff)), (b + "ff1.bias", (s.ff,))]
            w += [(b + "ff2.kernel", (s.ff, d)), (b + "ff2.bias", (d,))]
        w += [("ln.gamma", (d,)), ("ln.beta", (d,))]
        if batchnorm:
            w += [("bn.gamma", (d,)), ("bn.beta", (d,))]
        w += [("head.kernel", (d, out)), ("head.bias", (out,))]
    return w


def _attention(prefix: str, d: int) -> list[tuple[str, tuple[int, ...]]]:
    return [w for name in "qkvo" for w in ((f"{prefix}{name}.kernel", (d, d)),
                                            (f"{prefix}{name}.bias", (d,)))]


def _norm(name: str, d: int) -> list[tuple[str, tuple[int, ...]]]:
    return [(f"{name}.gamma", (d,)), (f"{name}.beta", (d,))]


def seq2seq_arch(size: str, dataset: str) -> Seq2SeqArch:
    """The benchmark's own translation model at a named size on a translation dataset."""
    s, info = size_of("seq2seq", size), DATASETS[dataset]
    return Seq2SeqArch(info.vocab, s.d_model, s.heads, s.enc_layers, s.dec_layers, s.ff,
                       start=BOS, eos=EOS, pad=PAD)


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


def seq2seq_shapes(a: Seq2SeqArch) -> list[tuple[str, tuple[int, ...]]]:
    """Encoder-decoder (Vaswani et al. 2017): one embedding shared by the source, the target
    and the output layer (as Marian ties them), plus an output bias. Per encoder layer ln1,
    attention, ln2, feed-forward; per decoder layer ln1, self-attention, ln2,
    cross-attention (x), ln3, feed-forward: the same names pre-LN or post-LN, where a norm
    follows the branch its number names instead of preceding it."""
    d = a.d_model
    w = [("embed", (a.vocab, d))]
    for i in range(a.enc_layers):
        b = f"enc{i}."
        w += _norm(b + "ln1", d) + _attention(b, d) + _norm(b + "ln2", d)
        w += [(b + "ff1.kernel", (d, a.ff)), (b + "ff1.bias", (a.ff,)),
              (b + "ff2.kernel", (a.ff, d)), (b + "ff2.bias", (d,))]
    w += _norm("enc_ln", d) if a.final_ln else []
    for i in range(a.dec_layers):
        b = f"dec{i}."
        w += _norm(b + "ln1", d) + _attention(b, d) + _norm(b + "ln2", d)
        w += _attention(b + "x", d) + _norm(b + "ln3", d)
        w += [(b + "ff1.kernel", (d, a.ff)), (b + "ff1.bias", (a.ff,)),
              (b + "ff2.kernel", (a.ff, d)), (b + "ff2.bias", (d,))]
    w += _norm("dec_ln", d) if a.final_ln else []
    return w + [("head.bias", (a.vocab,))]


def param_count_of(shapes: list[tuple[str, tuple[int, ...]]]) -> int:
    return sum(_prod(shape) for _, shape in shapes)


def param_count(family: str, size: str, dataset: str, batchnorm: bool = False) -> int:
    """Trainable parameters of a model, as both backends build it."""
    return param_count_of(weight_shapes(family, size, dataset, batchnorm))


def flops_per_sample(family: str, size: str, dataset: str) -> int:
    """Forward FLOPs per sample (2 x multiply-adds of convolutions, matmuls, recurrences).

    Activations, pooling, normalisation and softmax are left out; training counts 3x this.
    """
    check_family_reads(family, dataset)
    info = DATASETS[dataset]
    s = size_of(family, size)
    out = info.n_outputs
    if family == "seq2seq":
        # per padded sentence: the encoder over the source, the decoder (self-attention,
        # cross-attention, FFN) over the target positions, and the tied output layer
        d, ls, lt = s.d_model, info.shape[0], info.target_len - 1
        enc = 4 * ls * d * d + 2 * ls * ls * d + 2 * ls * d * s.ff
        dec = (4 * lt * d * d + 2 * lt * lt * d + 2 * lt * d * d + 2 * ls * d * d
               + 2 * lt * ls * d + 2 * lt * d * s.ff)
        return 2 * (s.enc_layers * enc + s.dec_layers * dec + lt * d * out)
    if family == "cnn":
        shape = info.shape if info.kind != "tokens" else (info.shape[0], s.embed)
        cin = shape[-1]
        k = 9 if info.kind == "image" else 3
        conv1, _, conv2, pooled = zip(*cnn_geometry(shape)[1], strict=True)
        macs = _prod(conv1) * k * cin * s.c1 + _prod(conv2) * k * s.c1 * s.c2
        macs += _prod(pooled) * s.c2 * s.dense + s.dense * out
    elif family in ("lstm", "gru"):
        length = info.shape[0] if info.kind == "tokens" else _seq_features(info)[0]
        fin = s.embed if info.kind == "tokens" else _seq_features(info)[1]
        gates = 4 if family == "lstm" else 3
        macs = 0
        for _ in range(s.layers):
            macs += length * gates * (fin * s.hidden + s.hidden * s.hidden)
            fin = s.hidden
        macs += s.hidden * out
    else:
        d = s.d_model
        if info.kind == "tokens":
            length, macs = info.shape[0], 0
        else:
            length, fin = transformer_tokens(info)
            macs = length * fin * d
        per_layer = 4 * length * d * d + 2 * length * length * d + 2 * length * d * s.ff
        macs += s.layers * per_layer + d * out
    return 2 * macs


def activations_per_sample(family: str, size: str, dataset: str) -> int:
    """Floats a training step keeps per sample for the backward pass (analytic, rough).

    Counts each layer's output once, plus the pre-activation where a nonlinearity follows
    (conv, dense), the gates and states of every recurrent step, and per attention block its
    projections, scores and softmax; inputs, masks and framework workspaces are left out.
    """
    check_family_reads(family, dataset)
    info = DATASETS[dataset]
    s = size_of(family, size)
    if family == "seq2seq":
        d, ls, lt = s.d_model, info.shape[0], info.target_len - 1
        enc = ls * (8 * d + 2 * s.ff) + 2 * s.heads * ls * ls
        dec = lt * (12 * d + 2 * s.ff) + 2 * s.heads * (lt * lt + lt * ls)
        return ls * d + s.enc_layers * enc + lt * d + s.dec_layers * dec + 2 * lt * info.vocab
    if family == "cnn":
        shape = info.shape if info.kind != "tokens" else (info.shape[0], s.embed)
        conv1, pool1, conv2, pool2 = (_prod(d) for d in zip(*cnn_geometry(shape)[1],
                                                            strict=True))
        return (2 * conv1 * s.c1 + pool1 * s.c1 + 2 * conv2 * s.c2 + pool2 * s.c2
                + 2 * s.dense + info.n_outputs)
    if family in ("lstm", "gru"):
        length = info.shape[0] if info.kind == "tokens" else _seq_features(info)[0]
        gates = 4 if family == "lstm" else 3
        # gates, cell/candidate state and hidden state of every step of every layer
        return s.layers * length * (gates + 2) * s.hidden + info.n_outputs
    d = s.d_model
    length = info.shape[0] if info.kind == "tokens" else transformer_tokens(info)[0]
    per_block = length * (8 * d + 2 * s.ff) + 2 * s.heads * length * length
    return length * d + s.layers * per_block + d + info.n_outputs


def memory_estimate_mb(family: str, size: str, dataset: str, batch: int, optimizer: str,
                       batchnorm: bool = False) -> float:
    """Analytic training memory of the model in float32: weights + gradients + optimizer
    state + activations at `batch` samples. The runtime (framework, kernels, data) is not in it.
    """
    params = param_count(family, size, dataset, batchnorm)
    floats = params * (2 + OPTIMIZERS[optimizer].slots)
    floats += batch * activations_per_sample(family, size, dataset)
    return 4 * floats / 2**20


