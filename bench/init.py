"""Framework-neutral initial weights.

Both backends start from these arrays, so for one seed a torch run and a tf run begin at
exactly the same point: a difference in their results is the framework's, not the two
libraries' different default initialisers.

Schemes (the Keras defaults): Glorot-uniform kernels, orthogonal recurrent kernels (per
gate), zero biases except the LSTM forget gate (ones), uniform(-0.05, 0.05) embeddings,
ones/zeros for norm scales/shifts.
"""

from __future__ import annotations

import numpy as np

from .sizes import weight_shapes
from .spec import RunSpec


def _glorot(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape)


def _orthogonal(rng: np.random.Generator, n: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


def init_weights(spec: RunSpec) -> list[np.ndarray]:
    """Canonical float32 weights for `spec`, a pure function of the spec's seed."""
    # Small QRs on a multi-threaded BLAS spin up every thread for microseconds of work; on a
    # busy machine that made one seed-LSTM build take seconds instead of milliseconds.
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return _init_weights(spec)


def _init_weights(spec: RunSpec) -> list[np.ndarray]:
    rng = np.random.default_rng([spec.seed, 1])
    out = []
    for name, shape in weight_shapes(spec.family, spec.size, spec.dataset, spec.batchnorm):
        leaf = name.rsplit(".", 1)[-1]
        if name == "embed":
            w = rng.uniform(-0.05, 0.05, size=shape)
        elif leaf == "recurrent_kernel":
            h = shape[0]
            w = np.concatenate([_orthogonal(rng, h) for _ in range(shape[1] // h)], axis=1)
        elif leaf == "kernel":
            w = _glorot(rng, shape)
        elif leaf == "gamma":
            w = np.ones(shape)
        else:  # biases and betas
            w = np.zeros(shape)
            if spec.family == "lstm" and name.startswith("rnn") and leaf == "bias":
                h = shape[0] // 4
                w[h : 2 * h] = 1.0  # forget gate
        out.append(w.astype(np.float32))
    return out
