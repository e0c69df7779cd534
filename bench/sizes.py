"""Model sizes and the formulas on them over every family, framework-neutral: the size
ladders, the canonical weight shapes both backends build, parameter counts, forward FLOPs,
activations and the training-memory estimate. Each family states its own in its folder
(bench/models/<family>/spec.py); this module checks the request and asks it.

Parameter counts and FLOPs are computed analytically from the same size definitions the
backends build from; the test suite checks both frameworks against these formulas, so the
numbers in ``python -m bench list`` are the numbers the models really have.
"""

from __future__ import annotations

from . import models
from .models.common import Shapes, prod
from .registry import DATASETS, FAMILIES, OPTIMIZERS, SpecError, check_choice, check_family_reads

# xs..xl fit a 2-core laptop and span three orders of magnitude on every dataset;
# xxl is meant for a GPU. `article` is the article's example, reproduced exactly.
# One dict per family, the family's own (LSTM and GRU share theirs).
SIZES: dict[str, dict[str, object]] = {f: models.spec(f).SIZES for f in FAMILIES}
SIZE_NAMES = ("xs", "s", "m", "l", "xl", "xxl", "article")


def size_of(family: str, size: str):
    check_choice("family", family, FAMILIES)
    check_choice(f"size for {family}", size, tuple(SIZES[family]))
    return SIZES[family][size]


def weight_shapes(family: str, size: str, dataset: str, batchnorm: bool = False) -> Shapes:
    """Every trainable tensor, in the canonical order and layout both backends exchange.

    Layout is Keras's: dense kernels (in, out), conv kernels (k[, k], in, out), recurrent
    kernels (in, G*h) / (h, G*h) with gates i,f,c,o (LSTM) or z,r,h (GRU), the GRU bias as
    (2, 3h) rows [input, recurrent] (reset_after), flatten in channels-last order. Torch
    backends transpose/reorder on the way in and out. LSTM has one bias of 4h per layer: the
    torch backend keeps its second bias at zero and frozen, so counts match exactly.
    """
    check_family_reads(family, dataset)
    s = size_of(family, size)
    heads = getattr(s, "heads", 0)
    if heads and s.d_model % heads:
        raise SpecError(f"{family} size {size!r}: d_model not divisible by heads")
    return models.spec(family).weight_shapes(family, s, DATASETS[dataset], batchnorm)


def param_count_of(shapes: Shapes) -> int:
    return sum(prod(shape) for _, shape in shapes)


def param_count(family: str, size: str, dataset: str, batchnorm: bool = False) -> int:
    """Trainable parameters of a model, as both backends build it."""
    return param_count_of(weight_shapes(family, size, dataset, batchnorm))


def flops_per_sample(family: str, size: str, dataset: str) -> int:
    """Forward FLOPs per sample (2 x multiply-adds of convolutions, matmuls, recurrences).

    Activations, pooling, normalisation and softmax are left out; training counts 3x this.
    """
    check_family_reads(family, dataset)
    return models.spec(family).flops(family, size_of(family, size), DATASETS[dataset])


def activations_per_sample(family: str, size: str, dataset: str) -> int:
    """Floats a training step keeps per sample for the backward pass (analytic, rough).

    Counts each layer's output once, plus the pre-activation where a nonlinearity follows
    (conv, dense), the gates and states of every recurrent step, and per attention block its
    projections, scores and softmax; inputs, masks and framework workspaces are left out.
    """
    check_family_reads(family, dataset)
    return models.spec(family).activations(family, size_of(family, size), DATASETS[dataset])


def memory_estimate_mb(family: str, size: str, dataset: str, batch: int, optimizer: str,
                       batchnorm: bool = False) -> float:
    """Analytic training memory of the model in float32: weights + gradients + optimizer
    state + activations at `batch` samples. The runtime (framework, kernels, data) is not in it.
    """
    params = param_count(family, size, dataset, batchnorm)
    floats = params * (2 + OPTIMIZERS[optimizer].state_tensors)
    floats += batch * activations_per_sample(family, size, dataset)
    return 4 * floats / 2**20


