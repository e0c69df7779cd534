"""PyTorch vs TensorFlow: the same model, the same numbers.

Each framework runs in its own process (tests/parity_worker.py). For every family at its
smallest size and at `seed`: equal parameter counts (checked against the shared formula in
each backend's own tests), equal outputs for copied weights, equal weights after two steps
of SGD, momentum and Adam.

Tolerances: outputs 1e-4 absolute. Weights after two steps: 1e-5 absolute for SGD and
momentum (float32 rounding of the same arithmetic), 2e-5 for Adam (lr 1e-3): Adam divides by
sqrt(v)+eps, which turns float noise in near-zero gradients into updates of up to lr per
element, so near-zero gradient entries are compared loosely (see `_adam_close`).
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.spec import FAMILIES, weight_shapes

WORKER = Path(__file__).with_name("parity_worker.py")
pytestmark = pytest.mark.slow

CASES = [(f, "xs", "mnist1d") for f in FAMILIES] + [
    ("cnn", "seed", "digits"), ("lstm", "seed", "tokens"), ("gru", "seed", "tokens"),
    ("transformer", "seed", "tokens"), ("cnn", "xs", "tokens"), ("lstm", "xs", "digits"),
    ("transformer", "xs", "digits"),
]


def _dump(tmp_path, framework, family, size, dataset):
    out = tmp_path / f"{framework}.npz"
    p = subprocess.run([sys.executable, str(WORKER), framework, family, size, dataset, str(out)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return dict(np.load(out))


@pytest.mark.parametrize("family,size,dataset", CASES, ids=["-".join(c) for c in CASES])
def test_torch_and_tf_agree(tmp_path, family, size, dataset):
    t = _dump(tmp_path, "torch", family, size, dataset)
    k = _dump(tmp_path, "tf", family, size, dataset)
    np.testing.assert_allclose(t["outputs"], k["outputs"], atol=1e-4, rtol=0)
    names = [n for n, _ in weight_shapes(family, size, dataset)]
    for opt, atol in (("sgd", 1e-5), ("momentum", 1e-5), ("adam", 2e-5)):
        np.testing.assert_allclose(t[f"{opt}.loss"], k[f"{opt}.loss"], rtol=1e-4, atol=1e-5)
        for i, name in enumerate(names):
            a, b = t[f"{opt}.w{i}"], k[f"{opt}.w{i}"]
            np.testing.assert_allclose(a, b, atol=atol, rtol=1e-4,
                                       err_msg=f"{opt}: {name} differs after two steps")
