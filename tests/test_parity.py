"""PyTorch vs TensorFlow: the same model, the same numbers.

Each framework runs in its own process (tests/parity_worker.py). For every family at its
smallest size and at `seed`: equal parameter counts (checked against the shared formula in
each backend's own tests), equal outputs for copied weights, equal weights after two steps
of SGD, momentum and Adam. seq2seq (sizes xs and s; teacher-forced logits, label-smoothed
steps) also decodes 16 test sentences greedily and by beam search with one briefly trained
decoder (trained by torch, loaded by both): the tokens must be identical.

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

from bench.spec import CLASSIFIERS, weight_shapes
from bench.text_pairs import EOS

WORKER = Path(__file__).with_name("parity_worker.py")
pytestmark = pytest.mark.slow

CASES = [(f, "xs", "mnist1d") for f in CLASSIFIERS] + [
    ("cnn", "seed", "digits"), ("lstm", "seed", "tokens"), ("gru", "seed", "tokens"),
    ("transformer", "seed", "tokens"), ("cnn", "xs", "tokens"), ("lstm", "xs", "digits"),
    ("transformer", "xs", "digits"),
    ("seq2seq", "xs", "en_fr_numbers"), ("seq2seq", "s", "en_fr_numbers"),
]


def _run(*args):
    p = subprocess.run([sys.executable, str(WORKER), *map(str, args)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]


def _dump(tmp_path, framework, family, size, dataset, *extra):
    out = tmp_path / f"{framework}.npz"
    _run(framework, family, size, dataset, out, *extra)
    return dict(np.load(out))


@pytest.mark.parametrize("family,size,dataset", CASES, ids=["-".join(c) for c in CASES])
def test_torch_and_tf_agree(tmp_path, family, size, dataset):
    extra = ()
    if family == "seq2seq":  # one briefly trained decoder, decoded by both frameworks
        decoder = tmp_path / "decoder.npz"
        _run("--train-decoder", "torch", size, dataset, decoder)
        extra = (decoder,)
    t = _dump(tmp_path, "torch", family, size, dataset, *extra)
    k = _dump(tmp_path, "tf", family, size, dataset, *extra)
    np.testing.assert_allclose(t["outputs"], k["outputs"], atol=1e-4, rtol=0)
    names = [n for n, _ in weight_shapes(family, size, dataset)]
    for opt, atol in (("sgd", 1e-5), ("momentum", 1e-5), ("adam", 2e-5)):
        np.testing.assert_allclose(t[f"{opt}.loss"], k[f"{opt}.loss"], rtol=1e-4, atol=1e-5)
        for i, name in enumerate(names):
            a, b = t[f"{opt}.w{i}"], k[f"{opt}.w{i}"]
            np.testing.assert_allclose(a, b, atol=atol, rtol=1e-4,
                                       err_msg=f"{opt}: {name} differs after two steps")
    if family == "seq2seq":
        for how in ("greedy", "beam"):
            np.testing.assert_array_equal(t[how], k[how], err_msg=f"{how} decoding differs")
            rows = {tuple(r) for r in t[how]}
            # a real test: the sentences differ, and they end
            assert len(rows) > len(t[how]) // 2 and (t[how] == EOS).any(1).all(), t[how]
