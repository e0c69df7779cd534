"""PyTorch vs TensorFlow: the same model, the same numbers.

Each framework runs in its own process (tests/parity_worker.py). For every family at its
smallest size and at `article`: equal parameter counts (checked against the shared formula in
each backend's own tests), equal outputs for copied weights, equal losses and equal weights
after two steps of SGD, momentum and Adam. seq2seq (sizes xs and s; teacher-forced logits,
every step label-smoothed at 0.1, so label smoothing is compared wherever seq2seq is) also
decodes 16 test sentences greedily and by beam search with one briefly trained decoder
(trained by torch, loaded by both): the tokens must be identical.

Every optimizer and regulariser, once per family where it applies (`FULL` on the xs case of
each family, on the series dataset mnist1d or, for seq2seq, en_fr_numbers; parity_worker's
VARIANTS give the settings): nesterov, rmsprop and adamw; the L2 penalty (the loss each
framework returns must be the data loss plus l2 * sum(w^2) over the weights of 2 or more
dimensions); decoupled weight decay under momentum and, as adamw, under Adam (each must move
the weights well beyond the tolerance, so that a backend that skipped it fails); batch norm
for the classifiers (seq2seq has none): the eval outputs before and after the steps, which
read the running statistics the steps updated with Keras's momentum, and the weights. The
CNN's padding: mnist1d and tokens give 'valid' 1-D convolutions, digits (8x8) 'same' 2-D
ones, and mnist (28x28, random samples: the file is the user's) 'valid' 2-D ones, with
batch norm and the L2 penalty (`test_cases_cover_both_paddings` holds the geometry to this).
Token inputs add the L2 penalty and decay on embeddings (cnn-xs-tokens).

Dropout draws different masks in each framework, so it is not compared step by step: with
dropout 0.5 each framework's eval outputs must equal its own (and so the other's) dropout-0
outputs for the same weights, and one training step must move the weights elsewhere than
the dropout-0 step does (the masks act in training). The two-layer article RNNs add dropout
between layers. Learning-rate schedules (lr_decay, lr_step, warm-up) are not compared here:
the shared loop computes them (bench.train.lr_at, tested in tests/test_train.py) and hands
step() a float; each backend's test_optimizer_update_rules checks every optimizer under a
changing lr against one numpy reference (tests/backend_reference.reference_update).

Tolerances: outputs 1e-4 absolute (dropout's eval outputs against its own framework's
dropout-0 ones: 1e-6). Losses 1e-4 relative, 1e-5 absolute. Weights after two steps: 1e-5
absolute plus 1e-4 relative, for every optimizer, but for one set of entries: Adam, adamw
and RMSprop divide a gradient by its own size (sqrt(v)+eps), so where the gradient is zero
but for float noise (|g| < 1e-6 as plain SGD's first step reads it, e.g. attention's key
bias, to which softmax is blind) they step by noise of up to about lr: those entries are
compared to within lr (1e-3; see `_noise_driven`). Measured on this 2-core CPU, the largest
differences: 2.4e-7 for weights (2.2e-5 in those entries), 1.2e-7 for outputs, batch norm
included, and 2e-7 relative for losses.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from parity_worker import BASE, L2, VARIANTS, shared_weights

from bench.models.cnn.spec import cnn_geometry
from bench.registry import CLASSIFIERS, DATASETS, OPTIMIZERS
from bench.sizes import weight_shapes
from bench.translation.text_pairs import EOS

WORKER = Path(__file__).with_name("parity_worker.py")
pytestmark = pytest.mark.slow

FULL = (*BASE, "nesterov", "rmsprop", "adamw", "l2", "wd", "bn", "dropout")
DROPOUT = (*BASE, "dropout")
CASES = [(f, "xs", "mnist1d", FULL) for f in CLASSIFIERS] + [
    ("cnn", "xs", "mnist", (*BASE, "bn", "l2")),
    ("cnn", "article", "digits", BASE), ("lstm", "article", "tokens", DROPOUT),
    ("gru", "article", "tokens", DROPOUT), ("transformer", "article", "tokens", BASE),
    ("cnn", "xs", "tokens", (*BASE, "l2", "wd", "adamw")), ("lstm", "xs", "digits", BASE),
    ("transformer", "xs", "digits", BASE),
    ("seq2seq", "xs", "en_fr_numbers", tuple(v for v in FULL if v != "bn")),
    ("seq2seq", "s", "en_fr_numbers", BASE),
]
ADAPTIVE = ("adam", "adamw", "rmsprop")  # noise-driven entries: see the docstring
# The variant each regularised one departs from: the same optimizer without it.
UNREGULARISED = {"wd": "momentum", "adamw": "adam"}


def _run(*args):
    p = subprocess.run([sys.executable, str(WORKER), *map(str, args)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]


def _dump(tmp_path, framework, family, size, dataset, *extra):
    out = tmp_path / f"{framework}.npz"
    _run(framework, family, size, dataset, out, *extra)
    return dict(np.load(out))


@pytest.fixture(scope="module")
def classifier_dumps(tmp_path_factory):
    """Every classifier case's numbers, one worker process per framework for them all (a
    process per case imported a framework 26 times)."""
    root = tmp_path_factory.mktemp("parity")
    cases = root / "cases.json"
    cases.write_text(json.dumps([c for c in CASES if c[0] != "seq2seq"]))
    for framework in ("torch", "tf"):
        (root / framework).mkdir()
        _run("--cases", framework, cases, root / framework)
    return root


def _weights(result, variant, n):
    return [result[f"{variant}.w{i}"] for i in range(n)]


def _noise_driven(result, family, size, dataset):
    """Per weight, the entries whose gradient at the shared weights is zero but for float
    noise (|g| < 1e-6, read from plain SGD's first step), such as attention's key bias,
    which softmax cannot see: Adam and RMSprop divide that noise by its own size."""
    lr = VARIANTS["sgd"][1]
    return [np.abs(w - result[f"sgd.step1.w{i}"]) < lr * 1e-6
            for i, w in enumerate(shared_weights(family, size, dataset))]


def test_cases_cover_both_paddings():
    """The docstring's claim about which CNN cases convolve with which padding."""
    def padding(dataset):
        info = DATASETS[dataset]
        shape = (info.shape[0], 8) if info.kind == "tokens" else info.shape
        return len(shape) - 1, cnn_geometry(shape)[0]

    cnn = {dataset: padding(dataset) for f, _, dataset, _ in CASES if f == "cnn"}
    assert cnn == {"mnist1d": (1, "valid"), "tokens": (1, "valid"), "digits": (2, "same"),
                   "mnist": (2, "valid")}


def test_every_optimizer_and_regulariser_is_compared_for_every_family():
    wanted = {*OPTIMIZERS, "l2", "wd", "bn", "dropout"}
    for family in (*CLASSIFIERS, "seq2seq"):
        covered = set()
        for f, _, _, variants in CASES:
            if f == family:
                covered |= set(variants) | {VARIANTS[v][0] for v in variants}
        assert covered >= wanted - ({"bn"} if family == "seq2seq" else set()), family


@pytest.mark.parametrize("family,size,dataset,variants", CASES,
                         ids=["-".join(c[:3]) for c in CASES])
def test_torch_and_tf_agree(request, tmp_path, family, size, dataset, variants):
    if family == "seq2seq":  # one briefly trained decoder, decoded by both frameworks
        decoder = tmp_path / "decoder.npz"
        _run("--train-decoder", "torch", size, dataset, decoder)
        extra = (decoder, "--variants=" + ",".join(variants))
        t = _dump(tmp_path, "torch", family, size, dataset, *extra)
        k = _dump(tmp_path, "tf", family, size, dataset, *extra)
    else:
        root = request.getfixturevalue("classifier_dumps")
        t, k = (dict(np.load(root / fw / f"{family}-{size}-{dataset}.npz"))
                for fw in ("torch", "tf"))
    np.testing.assert_allclose(t["outputs"], k["outputs"], atol=1e-4, rtol=0)
    for variant in variants:
        _check_variant(t, k, variant, family, size, dataset)
    if family == "seq2seq":
        for how in ("greedy", "beam"):
            np.testing.assert_array_equal(t[how], k[how], err_msg=f"{how} decoding differs")
            rows = {tuple(r) for r in t[how]}
            # a real test: the sentences differ, and they end
            assert len(rows) > len(t[how]) // 2 and (t[how] == EOS).any(1).all(), t[how]


def _check_variant(t, k, variant, family, size, dataset):
    opt, lr, settings = VARIANTS[variant]
    shapes = weight_shapes(family, size, dataset, bool(settings.get("batchnorm")))
    if settings.get("dropout"):
        for r in (t, k):  # eval mode ignores dropout; training applies it
            np.testing.assert_allclose(r[f"{variant}.outputs"], r["outputs"], atol=1e-6,
                                       rtol=0, err_msg="dropout acts in eval mode")
            moved = max(np.abs(a - b).max() for a, b in zip(
                _weights(r, variant, len(shapes)), _weights(r, "sgd.step1", len(shapes)),
                strict=True))
            assert moved > 1e-3, "dropout does not act in training"
        return
    np.testing.assert_allclose(t[f"{variant}.loss"], k[f"{variant}.loss"], rtol=1e-4,
                               atol=1e-5, err_msg=f"{variant}: losses differ")
    batchnorm = bool(settings.get("batchnorm"))
    atol = 1e-5
    noise = _noise_driven(t, family, size, dataset) if opt in ADAPTIVE else None
    for i, (a, b, (name, _)) in enumerate(zip(_weights(t, variant, len(shapes)),
                                              _weights(k, variant, len(shapes)), shapes,
                                              strict=True)):
        tol = np.where(noise[i], lr, atol) if noise is not None else atol
        np.testing.assert_array_less(np.abs(a - b), tol + 1e-4 * np.abs(b),
                                     err_msg=f"{variant}: {name} differs after two steps")
    if batchnorm:
        for when in ("before", "after"):
            np.testing.assert_allclose(t[f"{variant}.{when}"], k[f"{variant}.{when}"],
                                       atol=1e-4, rtol=0,
                                       err_msg=f"{variant}: eval outputs {when} the steps")
        assert np.abs(t[f"{variant}.after"] - t[f"{variant}.before"]).max() > 1e-3
    if settings.get("l2"):  # the first step's loss is taken at the shared weights
        penalty = sum(float((w.astype(np.float64) ** 2).sum())
                      for w in shared_weights(family, size, dataset) if w.ndim >= 2)
        for r in (t, k):
            assert r[f"{variant}.loss"][0] == pytest.approx(
                r["sgd.loss"][0] + L2 * penalty, rel=1e-5)
    if variant in UNREGULARISED:  # decay moved the decayed weights well past the tolerance
        base = UNREGULARISED[variant]
        for r in (t, k):
            moved = max(np.abs(a - b).max() for a, b, (_, s) in zip(
                _weights(r, variant, len(shapes)), _weights(r, base, len(shapes)), shapes,
                strict=True) if len(s) >= 2)
            assert moved > 10 * atol, f"{variant}: decay moved weights by only {moved:.1e}"


