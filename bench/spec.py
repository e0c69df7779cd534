"""Framework-neutral registries and the RunSpec that fully describes one run.

Nothing here imports torch or tensorflow: the workflow, the CLI's ``list`` verb and the
report all read these registries without paying for a framework import.

Parameter counts and FLOPs are computed analytically from the same size definitions the
backends build from; the test suite checks both frameworks against these formulas, so the
numbers in ``python -m bench list`` are the numbers the models really have.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields, replace

# Classifiers read one input and predict one label; seq2seq reads a sentence and writes one.
CLASSIFIERS = ("cnn", "lstm", "gru", "transformer")
FAMILIES = (*CLASSIFIERS, "seq2seq")
FRAMEWORKS = ("torch", "tf")
DEVICES = ("auto", "cpu", "cuda")
# fp32, or mixed precision: fp32 weights and optimizer state, matrix products and
# convolutions in bf16 / fp16 (torch autocast, Keras mixed dtype policies), the loss in
# fp32; fp16 scales the loss dynamically against underflow.
PRECISIONS = ("fp32", "bf16", "fp16")
LR_SCHEDULES = ("none", "step", "cosine")


class SpecError(ValueError):
    """Invalid user input; the message is one line naming the bad value."""


def _choice(kind: str, value, allowed) -> None:
    if value not in allowed:
        raise SpecError(f"unknown {kind} {value!r}; allowed: {', '.join(map(str, allowed))}")


# ---------------------------------------------------------------------------- datasets


@dataclass(frozen=True)
class DatasetInfo:
    """Shape facts of a dataset, known without loading it.

    kind: ``image`` (H, W, C floats), ``series`` (L, C floats), ``tokens`` (L ints < vocab)
    or ``text`` (translation pairs: source ids (L,) -> target ids (target_len,), one joint
    vocabulary; n_classes is the vocabulary, the output layer's width).
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    n_classes: int
    vocab: int = 0
    file: str = ""  # a user-supplied file, looked up in --data-dir
    description: str = ""
    target_len: int = 0  # text: target ids per sentence, [BOS] words [EOS] padded

    @property
    def n_outputs(self) -> int:
        # Binary tasks use one sigmoid logit, as in the article's LSTM head.
        return 1 if self.n_classes == 2 else self.n_classes


DATASETS: dict[str, DatasetInfo] = {
    "mnist1d": DatasetInfo(
        "mnist1d", "series", (40, 1), 10,
        description="MNIST-1D (Greydanus 2020), built offline by make_dataset; 3600/400/1000",
    ),
    "digits": DatasetInfo(
        "digits", "image", (8, 8, 1), 10,
        description="sklearn 8x8 digits, stratified 80/20 test split; 1293/144/360",
    ),
    "tokens": DatasetInfo(
        "tokens", "tokens", (50,), 2, vocab=10000,
        description="generated token sequences; label = whether marker A precedes marker B "
        "(order-only: every sequence holds both markers once); 3600/400/1000",
    ),
    "mnist": DatasetInfo(
        "mnist", "image", (28, 28, 1), 10, file="mnist.npz",
        description="user-supplied mnist.npz (Keras layout); 54000/6000/10000",
    ),
    "imdb": DatasetInfo(
        "imdb", "tokens", (50,), 2, vocab=10000, file="imdb.npz",
        description="user-supplied imdb.npz (Keras layout, pickled arrays: needs --allow-pickle); "
        "first 50 tokens, vocabulary 10000; 22500/2500/25000",
    ),
    # bench.text_pairs builds it; data.load checks these facts against what it built.
    "en_fr_numbers": DatasetInfo(
        "en_fr_numbers", "text", (16,), 62, vocab=62, target_len=21,
        description="English -> French number phrases (num2words), word tokens; split by "
        "number: 600/300/1000 below 100,000, test_long 500 from 100,000-999,999",
    ),
}


def reads(family: str, dataset: str) -> bool:
    """Classifiers read images, series and tokens; seq2seq reads translation pairs."""
    return (DATASETS[dataset].kind == "text") == (family == "seq2seq")


def check_family_reads(family: str, dataset: str) -> None:
    if not reads(family, dataset):
        want = "a translation dataset (kind text)" if family == "seq2seq" else \
            "an image, series or token dataset"
        raise SpecError(f"family {family!r} cannot read dataset {dataset!r}: it needs {want}")


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
    _choice("family", family, FAMILIES)
    _choice(f"size for {family}", size, tuple(SIZES[family]))
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
        return _seq2seq_shapes(s, info, size)
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


def _seq2seq_shapes(s: Seq2SeqSize, info: DatasetInfo, size: str):
    """Encoder-decoder (Vaswani et al. 2017, pre-LN): one embedding shared by the source,
    the target and the output layer (as Marian ties them), plus an output bias."""
    d = s.d_model
    if d % s.heads:
        raise SpecError(f"seq2seq size {size!r}: d_model not divisible by heads")
    w = [("embed", (info.vocab, d))]
    for i in range(s.enc_layers):
        b = f"enc{i}."
        w += _norm(b + "ln1", d) + _attention(b, d) + _norm(b + "ln2", d)
        w += [(b + "ff1.kernel", (d, s.ff)), (b + "ff1.bias", (s.ff,)),
              (b + "ff2.kernel", (s.ff, d)), (b + "ff2.bias", (d,))]
    w += _norm("enc_ln", d)
    for i in range(s.dec_layers):
        b = f"dec{i}."
        w += _norm(b + "ln1", d) + _attention(b, d) + _norm(b + "ln2", d)
        w += _attention(b + "x", d) + _norm(b + "ln3", d)
        w += [(b + "ff1.kernel", (d, s.ff)), (b + "ff1.bias", (s.ff,)),
              (b + "ff2.kernel", (s.ff, d)), (b + "ff2.bias", (d,))]
    return w + _norm("dec_ln", d) + [("head.bias", (info.vocab,))]


def param_count(family: str, size: str, dataset: str, batchnorm: bool = False) -> int:
    """Trainable parameters of a model, as both backends build it."""
    return sum(_prod(shape) for _, shape in weight_shapes(family, size, dataset, batchnorm))


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


# ---------------------------------------------------------------------------- optimizers


@dataclass(frozen=True)
class OptimizerInfo:
    name: str
    description: str
    momentum: float = 0.0
    default_weight_decay: float = 0.0
    slots: int = 0  # optimizer state tensors per parameter (for the memory estimate)


OPTIMIZERS: dict[str, OptimizerInfo] = {
    "sgd": OptimizerInfo("sgd", "plain gradient descent: p -= lr*g"),
    "momentum": OptimizerInfo(
        "momentum", "heavy ball: v = m*v + g; p -= lr*v (m=0.9)", momentum=0.9, slots=1
    ),
    "nesterov": OptimizerInfo(
        "nesterov", "Nesterov: v = m*v + g; p -= lr*(g + m*v) (m=0.9)", momentum=0.9, slots=1
    ),
    "adam": OptimizerInfo("adam", "Adam, betas 0.9/0.999, eps 1e-8 in both frameworks",
                          slots=2),
    "adamw": OptimizerInfo(
        "adamw", "Adam with decoupled weight decay (default 0.01 unless --weight-decay)",
        default_weight_decay=0.01, slots=2,
    ),
    "rmsprop": OptimizerInfo("rmsprop", "RMSprop, rho 0.9, eps 1e-8, no momentum, not centred",
                             slots=1),
}
ADAM_BETAS = (0.9, 0.999)
EPSILON = 1e-8
RMSPROP_RHO = 0.9
# Running-average momentum in the Keras sense (torch's `momentum` is 1 - this).
BATCHNORM_MOMENTUM = 0.9
BATCHNORM_EPS = 1e-5
LAYERNORM_EPS = 1e-5


# ---------------------------------------------------------------------------- regularisers


@dataclass(frozen=True)
class RegulariserInfo:
    name: str
    description: str
    preset: dict = field(default_factory=dict)


REGULARISERS: dict[str, RegulariserInfo] = {
    "none": RegulariserInfo("none", "no regularisation"),
    "l2": RegulariserInfo(
        "l2", "coupled L2 penalty l2*sum(w^2) on every weight with ndim>=2 (kernels, "
        "embeddings, the GRU's stacked bias), "
        "added to the loss", {"l2": 1e-4},
    ),
    "wd": RegulariserInfo(
        "wd", "decoupled weight decay p -= lr*wd*p on the same weights as l2, any optimizer",
        {"weight_decay": 1e-2},
    ),
    "dropout": RegulariserInfo(
        "dropout", "dropout: CNN after flatten and dense; RNN between layers and before the "
        "head; transformer on attention/FF residuals and before the head", {"dropout": 0.2},
    ),
    "batchnorm": RegulariserInfo(
        "batchnorm", "batch norm: CNN after each convolution; RNN on the last hidden state; "
        "transformer (which always uses LayerNorm) on the pooled features",
        {"batchnorm": True},
    ),
    "lr_decay": RegulariserInfo(
        "lr_decay", "cosine learning-rate decay to 0 over the run", {"lr_schedule": "cosine"}
    ),
    "lr_step": RegulariserInfo(
        "lr_step", "step decay: lr x0.1 at 50% and at 75% of the steps", {"lr_schedule": "step"}
    ),
    "label_smoothing": RegulariserInfo(
        "label_smoothing", "seq2seq: label smoothing 0.1 (Vaswani et al.), each target token "
        "gives 0.1 of its probability evenly to the whole vocabulary", {"label_smoothing": 0.1},
    ),
    "early_stop": RegulariserInfo(
        "early_stop", "stop when the smoothed validation accuracy has not improved for "
        "`patience` epochs (the study default sets a patience for every run)",
        {"patience": 3},
    ),
}


def regulariser_applies(family: str, label: str) -> bool:
    """Whether `family` has what regulariser `label` acts on: seq2seq has no batch norm
    (its blocks use LayerNorm) and label smoothing is for seq2seq alone."""
    settings = parse_regulariser(label)[1]
    if family == "seq2seq":
        return not settings.get("batchnorm")
    return not settings.get("label_smoothing")


def parse_regulariser(label: str) -> tuple[str, dict]:
    """'dropout+l2' -> (canonical label, resolved settings)."""
    parts = [p for p in str(label).split("+") if p]
    if not parts:
        raise SpecError("empty regulariser; use 'none' or e.g. 'dropout+l2'")
    for p in parts:
        _choice("regulariser", p, tuple(REGULARISERS))
    if "none" in parts and len(parts) > 1:
        raise SpecError(f"regulariser {label!r} combines 'none' with others")
    if "lr_decay" in parts and "lr_step" in parts:
        raise SpecError(f"regulariser {label!r} asks for two learning-rate schedules")
    settings: dict = {}
    for p in parts:
        settings.update(REGULARISERS[p].preset)
    order = list(REGULARISERS)
    canonical = "+".join(sorted(set(parts), key=order.index))
    return canonical, settings


# ---------------------------------------------------------------------------- run spec


def parse_batch_size(value) -> int | str:
    """'full' (full-batch gradient descent), 1 (stochastic) or N (mini-batch)."""
    if isinstance(value, str) and value.strip().lower() == "full":
        return "full"
    bad = SpecError(f"bad batch size {value!r}; use 'full', 1 or a positive integer")
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise bad
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise bad from None
    if n < 1:
        raise SpecError(f"bad batch size {value!r}; use 'full', 1 or a positive integer")
    return n


def batch_regime(batch_size: int | str) -> str:
    if batch_size == "full":
        return "full-batch"
    return "stochastic" if batch_size == 1 else "mini-batch"


# Fields that do not change what is computed, only how it is measured or where it runs,
# still belong to the id: a run on 1 thread and one on 2 are different measurements.
@dataclass(frozen=True)
class RunSpec:
    family: str
    framework: str
    dataset: str
    size: str
    optimizer: str = "adam"
    lr: float = 1e-3
    batch_size: int | str = 64
    epochs: int = 10
    max_steps: int = 0  # 0: no cap; otherwise stop after this many optimizer steps
    seed: int = 0
    regulariser: str = "none"
    l2: float = 0.0
    weight_decay: float = 0.0
    dropout: float = 0.0
    batchnorm: bool = False
    label_smoothing: float = 0.0  # seq2seq: the share of each target's mass spread evenly
    lr_schedule: str = "none"
    # Budget by convergence: train until the smoothed validation accuracy has not improved
    # for `patience` epochs (0: never stop early), but at least `min_epochs` and at most
    # `epochs`; test metrics come from the weights of the best validation epoch.
    patience: int = 0
    min_epochs: int = 1
    lr_warmup: int = 0  # optimizer steps of linear learning-rate warm-up from 0
    device: str = "cpu"
    threads: int = 1
    compile: bool = False
    precision: str = "fp32"
    # GPU math settings, set the same way in both frameworks (no effect on a CPU). TF32
    # off: TensorFlow turns it on by default on Ampere and later, torch does not for
    # matmuls, so "fp32" would mean less precise math in one framework than the other.
    # Convolution autotuning on: TensorFlow's default, and torch's cudnn.benchmark then
    # picks its fastest algorithm per shape as well (a run's batches share one shape).
    tf32: bool = False
    conv_autotune: bool = True
    warmup_steps: int = 10
    block_steps: int = 50  # a timed block holds at least this many steps ...
    block_seconds: float = 2.0  # ... and lasts at least this long
    tuned: str = ""  # name of the Optuna study whose best parameters this run uses

    def __post_init__(self):
        _choice("family", self.family, FAMILIES)
        _choice("framework", self.framework, FRAMEWORKS)
        _choice("dataset", self.dataset, tuple(DATASETS))
        size_of(self.family, self.size)
        check_family_reads(self.family, self.dataset)
        _choice("optimizer", self.optimizer, tuple(OPTIMIZERS))
        _choice("device", self.device, DEVICES)
        _choice("lr schedule", self.lr_schedule, LR_SCHEDULES)
        _choice("precision", self.precision, PRECISIONS)
        # Normalise so that 64, 64.0 and "64" give one spec and one run id.
        object.__setattr__(self, "batch_size", parse_batch_size(self.batch_size))
        # Equal specs must give one id: the id hashes the JSON, where 1 and 1.0 differ, and
        # a config's `lr: 1` or `l2: 0` arrives as an int.
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            if f.type == "float":
                object.__setattr__(self, f.name, float(v))
            elif f.type == "int" and isinstance(v, float) and v.is_integer():
                object.__setattr__(self, f.name, int(v))
            elif f.type == "bool" and v in (0, 1):
                object.__setattr__(self, f.name, bool(v))
        checks = [
            ("lr", self.lr > 0 and math.isfinite(self.lr)),
            ("epochs", self.epochs >= 1),
            ("max_steps", self.max_steps >= 0),
            ("l2", self.l2 >= 0),
            ("weight_decay", self.weight_decay >= 0),
            ("dropout", 0 <= self.dropout < 1),
            ("label_smoothing", 0 <= self.label_smoothing < 1),
            ("patience", self.patience >= 0),
            ("min_epochs", 1 <= self.min_epochs <= self.epochs),
            ("lr_warmup", self.lr_warmup >= 0),
            ("threads", self.threads >= 1),
            ("warmup_steps", self.warmup_steps >= 0),
            ("block_steps", self.block_steps >= 1),
            ("block_seconds", self.block_seconds >= 0),
        ]
        for name, ok in checks:
            if not ok:
                raise SpecError(f"bad value {name}={getattr(self, name)!r}")
        if self.family == "seq2seq" and self.batchnorm:
            raise SpecError("seq2seq takes no batch norm (its blocks use LayerNorm)")
        if self.family != "seq2seq" and self.label_smoothing:
            raise SpecError(f"label smoothing is for seq2seq; {self.family} uses none")

    @classmethod
    def create(cls, regulariser: str = "none", **kw) -> RunSpec:
        """Build a spec from a regulariser label plus explicit overrides.

        Explicit keyword values win over the label's presets; adamw brings its default
        decoupled weight decay unless one is given.
        """
        label, settings = parse_regulariser(regulariser)
        opt = OPTIMIZERS.get(kw.get("optimizer", "adam"))
        if opt and opt.default_weight_decay:
            settings.setdefault("weight_decay", opt.default_weight_decay)
        for k, v in kw.items():
            if v is not None:
                settings[k] = v
        if "batch_size" in settings:
            settings["batch_size"] = parse_batch_size(settings["batch_size"])
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise SpecError(f"unknown run setting {unknown[0]!r}")
        return cls(regulariser=label, **settings)

    @classmethod
    def from_dict(cls, d: dict) -> RunSpec:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise SpecError(f"unknown run setting {unknown[0]!r}")
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def run_id(self) -> str:
        """Readable prefix plus a hash of every field: equal specs, equal ids.

        Fields added since 0.4 enter the hash only away from their defaults, so the runs
        of earlier studies keep their ids."""
        d = self.to_dict()
        for k, v in MATH_DEFAULTS.items():
            if d[k] == v:
                del d[k]
        blob = json.dumps(d, sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(blob.encode()).hexdigest()[:10]
        reg = self.regulariser.replace("+", "-")
        prec = "" if self.precision == "fp32" else f"-{self.precision}"
        return (
            f"{self.family}-{self.framework}-{self.dataset}-{self.size}-{self.optimizer}-"
            f"{reg}-b{self.batch_size}-s{self.seed}{prec}-{digest}"
        )

    @property
    def info(self) -> DatasetInfo:
        return DATASETS[self.dataset]

    @property
    def arch(self):
        return size_of(self.family, self.size)

    def with_(self, **kw) -> RunSpec:
        return replace(self, **kw)


# RunSpec's precision and GPU math settings at their defaults; added in 0.5, so they enter
# the run id's hash only away from these.
MATH_DEFAULTS = {"precision": "fp32", "tf32": False, "conv_autotune": True}
