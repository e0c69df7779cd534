"""What the benchmark knows, framework-neutral: the families, frameworks, devices and
precisions, the datasets (shapes, classes, vocabularies), the optimizers and regularisers
with their fixed constants, and SpecError for a bad name.

Nothing here imports torch or tensorflow: the workflow, the CLI's ``list`` verb and the
report all read these registries without paying for a framework import.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# The families and their folders under bench/models (LSTM and GRU are one recurrent family
# with the cell swapped): the one list the sizes, both backends and the tests read. Adding a
# family is its folder plus a line here (and the config schema's enum).
FAMILY_FOLDERS = {"cnn": "cnn", "lstm": "rnn", "gru": "rnn", "transformer": "transformer",
                  "seq2seq": "seq2seq"}
FAMILIES = tuple(FAMILY_FOLDERS)
# Classifiers read one input and predict one label; seq2seq reads a sentence and writes one.
CLASSIFIERS = tuple(f for f in FAMILIES if f != "seq2seq")
FRAMEWORKS = ("torch", "tf")
DEVICES = ("auto", "cpu", "cuda")
# fp32, or mixed precision: fp32 weights and optimizer state, matrix products and
# convolutions in bf16 / fp16 (torch autocast, Keras mixed dtype policies), the loss in
# fp32; fp16 scales the loss dynamically against underflow.
PRECISIONS = ("fp32", "bf16", "fp16")
LR_SCHEDULES = ("none", "step", "cosine")


class SpecError(ValueError):
    """Invalid user input; the message is one line naming the bad value."""


def check_choice(kind: str, value, allowed) -> None:
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
    # bench.translation.text_pairs builds it; data.load checks these facts against what it built.
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


# ---------------------------------------------------------------------------- optimizers


@dataclass(frozen=True)
class OptimizerInfo:
    name: str
    description: str
    momentum: float = 0.0
    default_weight_decay: float = 0.0
    state_tensors: int = 0  # optimizer state tensors per parameter (for the memory estimate)


OPTIMIZERS: dict[str, OptimizerInfo] = {
    "sgd": OptimizerInfo("sgd", "plain gradient descent: p -= lr*g"),
    "momentum": OptimizerInfo(
        "momentum", "heavy ball: v = m*v + g; p -= lr*v (m=0.9)", momentum=0.9, state_tensors=1
    ),
    "nesterov": OptimizerInfo(
        "nesterov", "Nesterov: v = m*v + g; p -= lr*(g + m*v) (m=0.9)", momentum=0.9,
        state_tensors=1
    ),
    "adam": OptimizerInfo("adam", "Adam, betas 0.9/0.999, eps 1e-8 in both frameworks",
                          state_tensors=2),
    "adamw": OptimizerInfo(
        "adamw", "Adam with decoupled weight decay (default 0.01 unless --weight-decay)",
        default_weight_decay=0.01, state_tensors=2,
    ),
    "rmsprop": OptimizerInfo("rmsprop", "RMSprop, rho 0.9, eps 1e-8, no momentum, not centred",
                             state_tensors=1),
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
        check_choice("regulariser", p, tuple(REGULARISERS))
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


