"""The TensorFlow backend against the contract in bench.backend_api and the spec's formulas.

Imports TensorFlow only: the torch backend is tested in its own process.
"""

from __future__ import annotations

import numpy as np
import pytest
import threadpoolctl

tf = pytest.importorskip("tensorflow")

from backend_reference import (  # noqa: E402
    check_snapshot_round_trip,
    fake_data,
    reference_update,
)

from bench import tf_backend as B  # noqa: E402
from bench.init import init_weights  # noqa: E402
from bench.spec import (  # noqa: E402
    FAMILIES,
    OPTIMIZERS,
    RunSpec,
    SpecError,
    param_count,
    weight_shapes,
)

# Every family on every input kind at the smallest size, plus the article's seed models.
CASES = [(f, d, "xs") for f in FAMILIES for d in ("mnist1d", "digits", "tokens")]
CASES += [(f, d, "seed") for f in FAMILIES for d in ("mnist", "tokens")]


@pytest.fixture(autouse=True, scope="module")
def _setup():
    B.setup(1, "cpu", 0)
    # init_weights' QR factorisations crawl when OpenBLAS spins 2 threads on a busy 2-core box.
    with threadpoolctl.threadpool_limits(1):
        yield


def make_spec(family="cnn", dataset="digits", size="xs", **kw) -> RunSpec:
    return RunSpec.create(family=family, framework="tf", dataset=dataset, size=size, **kw)


@pytest.mark.parametrize("batchnorm", [False, True])
@pytest.mark.parametrize("family,dataset,size", CASES)
def test_weights_match_spec(family, dataset, size, batchnorm):
    spec = make_spec(family, dataset, size, batchnorm=batchnorm)
    model = B.build(spec)
    assert B.n_params(model) == param_count(family, size, dataset, batchnorm)
    weights = B.get_weights(model)
    shapes = [s for _, s in weight_shapes(family, size, dataset, batchnorm)]
    assert [w.shape for w in weights] == shapes
    assert all(w.dtype == np.float32 for w in weights)
    for got, want in zip(weights, init_weights(spec), strict=True):
        np.testing.assert_array_equal(got, want)
    shifted = [w + 1.0 for w in weights]
    B.set_weights(model, shifted)
    for got, want in zip(B.get_weights(model), shifted, strict=True):
        np.testing.assert_array_equal(got, want)


def test_set_weights_rejects_bad_shapes():
    model = B.build(make_spec())
    weights = B.get_weights(model)
    with pytest.raises(ValueError):
        B.set_weights(model, weights[:-1])
    with pytest.raises(ValueError):
        B.set_weights(model, [np.zeros((1, 1), np.float32)] + weights[1:])


def test_positional_encoding_formula():
    pe = B.PositionalEncoding(5, 6).pe.numpy()
    pos, i = 3, 2  # dims 2i and 2i+1 = 4, 5
    angle = pos / 10000 ** (2 * i / 6)
    np.testing.assert_allclose(pe[pos, 4:6], [np.sin(angle), np.cos(angle)], rtol=1e-6)


# Input kind and lr with which each family's xs model learns within a hundred steps.
LEARNABLE = {
    "cnn": ("mnist1d", 1e-2),
    "lstm": ("digits", 1e-2),
    "gru": ("digits", 3e-2),
    "transformer": ("tokens", 1e-2),
}


@pytest.mark.parametrize("family", FAMILIES)
def test_training_learns(family):
    dataset, lr = LEARNABLE.get(family, ("digits", 1e-2))
    spec = make_spec(family, dataset, lr=lr)
    trainer = B.Trainer(B.build(spec), spec)
    x, y = fake_data(spec, 512)
    xd, yd = B.to_device(x), B.to_device(y)
    loss0, _ = trainer.evaluate(xd, yd, 128)
    rng = np.random.default_rng(0)
    for _ in range(100):
        idx = rng.integers(0, len(y), 32)
        B.scalar(trainer.step(B.take(xd, idx), B.take(yd, idx), spec.lr))
    loss, acc = trainer.evaluate(xd, yd, 128)
    assert loss < 0.5 * loss0
    assert acc > 0.75


# The update rules are checked one by one below; here the Trainer path of the optimizers
# the learning tests do not use (adam is used there), decoupled decay included.
@pytest.mark.parametrize("optimizer", ["adamw", "nesterov", "rmsprop"])
def test_every_optimizer_reduces_loss(optimizer):
    lr = 1e-2 if optimizer in ("adamw", "rmsprop") else 5e-2
    spec = make_spec("cnn", "mnist1d", optimizer=optimizer, lr=lr)
    trainer = B.Trainer(B.build(spec), spec)
    x, y = fake_data(spec, 256)
    xd, yd = B.to_device(x), B.to_device(y)
    loss0, _ = trainer.evaluate(xd, yd, 256)
    for _ in range(60):
        trainer.step(xd, yd, spec.lr)
    assert trainer.evaluate(xd, yd, 256)[0] < 0.7 * loss0


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_optimizer_update_rules(optimizer):
    """A changing lr exposes Keras's momentum form; gradients near eps expose its eps placement."""
    rng = np.random.default_rng(1)
    p0 = rng.standard_normal(6).astype(np.float32)
    scale = 1e-6 if optimizer in ("adam", "adamw", "rmsprop") else 1.0
    grads = [rng.standard_normal(6).astype(np.float32) * scale for _ in range(5)]
    lrs = [0.1, 0.05, 0.2, 0.01, 0.1]
    opt = B._optimizer(make_spec(optimizer=optimizer))
    var = tf.Variable(p0)
    opt.build([var])
    for g, lr in zip(grads, lrs, strict=True):
        opt.learning_rate.assign(lr)
        opt.apply([tf.constant(g)], [var])
    want = reference_update(optimizer, grads, lrs, p0) - p0
    np.testing.assert_allclose(var.numpy() - p0, want, rtol=1e-4, atol=1e-6 * np.abs(want).max())


def test_l2_and_weight_decay_semantics():
    """loss = data + l2*sum(w^2) over ndim>=2; p -= lr*wd*p before a plain SGD step."""
    l2, wd, lr = 1e-2, 0.1, 0.05
    spec = make_spec("cnn", "digits", optimizer="sgd", l2=l2, weight_decay=wd)
    model = B.build(spec)
    trainer = B.Trainer(model, spec)
    x, y = fake_data(spec, 16)
    xd, yd = B.to_device(x), B.to_device(y)
    net, variables = model.net, model.variables
    with tf.GradientTape() as tape:
        data_loss = tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=yd, logits=net(xd, training=True))
        )
    grads = [g.numpy() for g in tape.gradient(data_loss, variables)]
    w0 = B.get_weights(model)
    penalty = sum(float((w.astype(np.float64) ** 2).sum()) for w in w0 if w.ndim >= 2)
    loss = B.scalar(trainer.step(xd, yd, lr))
    assert loss == pytest.approx(float(data_loss) + l2 * penalty, rel=1e-5)
    for w, g, got in zip(w0, grads, B.get_weights(model), strict=True):
        decayed = w.ndim >= 2
        want = w - lr * wd * w * decayed - lr * (g + 2 * l2 * w * decayed)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


# The CNN and the transformer's own block cover every dropout/BN placement kind; the RNNs
# share the CNN's seeded-dropout helper.
@pytest.mark.parametrize("family", ["cnn", "transformer"])
def test_deterministic_with_dropout_and_batchnorm(family):
    spec = make_spec(family, "digits", dropout=0.3, batchnorm=True, l2=1e-4, optimizer="adamw")
    x, y = fake_data(spec, 64)

    def losses():
        trainer = B.Trainer(B.build(spec), spec)
        xd, yd = B.to_device(x), B.to_device(y)
        rng = np.random.default_rng(0)
        out = []
        for _ in range(8):
            idx = rng.integers(0, len(y), 16)
            out.append(B.scalar(trainer.step(B.take(xd, idx), B.take(yd, idx), 1e-3)))
        return out, B.get_weights(trainer.model)

    (a, wa), (b, wb) = losses(), losses()
    assert a == b
    for p, q in zip(wa, wb, strict=True):
        np.testing.assert_array_equal(p, q)


def test_eval_predict_infer_and_no_retracing():
    spec = make_spec("cnn", "tokens", dropout=0.2)
    trainer = B.Trainer(B.build(spec), spec)
    x, y = fake_data(spec, 37)
    xd, yd = B.to_device(x), B.to_device(y)
    for n in (16, 7, 37):  # mini, partial and full batches share one trace
        trainer.step(xd[:n], yd[:n], 1e-3)
    assert trainer._step.experimental_get_tracing_count() == 1
    loss, acc = trainer.evaluate(xd, yd, 16)
    assert isinstance(loss, float) and isinstance(acc, float)
    assert 0 < loss < 10 and 0 <= acc <= 1
    logits = trainer.predict(x, 16)  # numpy input is accepted too
    assert logits.shape == (37, 1)
    assert trainer._predict.experimental_get_tracing_count() == 1  # evaluate's trace, reused
    # Eval mode: no dropout, so predict and infer agree.
    np.testing.assert_allclose(trainer.infer(xd[:5]).numpy(), logits[:5], rtol=1e-5)
    probs = 1 / (1 + np.exp(-logits[:, 0]))
    manual = -np.mean(y * np.log(probs) + (1 - y) * np.log(1 - probs))
    assert loss == pytest.approx(manual, rel=1e-4)
    assert acc == pytest.approx(np.mean((logits[:, 0] > 0) == y))


def test_xla_step_matches_graph_step():
    x = y = None
    out = []
    for compile_ in (False, True):
        spec = make_spec("cnn", "mnist1d", compile=compile_)
        trainer = B.Trainer(B.build(spec), spec)
        if x is None:
            x, y = fake_data(spec, 32)
        out.append([B.scalar(trainer.step(B.to_device(x), B.to_device(y), 1e-3)) for _ in range(3)])
    np.testing.assert_allclose(out[0], out[1], rtol=1e-4)


def test_setup_and_devices():
    info = B.setup(1, "cpu", 0)
    assert info["device"] == "cpu" and info["framework_version"] == tf.__version__
    assert B.setup(1, "auto", 0)["device"] == "cpu"
    with pytest.raises(SpecError, match="no GPU is visible to tensorflow"):
        B.setup(1, "cuda", 0)
    with pytest.raises(SpecError):
        B.setup(1, "tpu", 0)
    B.reset_peak_memory()
    assert B.peak_memory() is None
    B.sync()


def test_is_oom():
    assert B.is_oom(tf.errors.ResourceExhaustedError(None, None, "OOM when allocating"))
    assert B.is_oom(MemoryError())
    assert B.is_oom(RuntimeError("DefaultCPUAllocator: can't allocate memory"))
    assert B.is_oom(RuntimeError("CUDA out of memory"))
    assert not B.is_oom(RuntimeError("shape mismatch"))
    assert not B.is_oom(ValueError("out of memory"))


@pytest.mark.parametrize("family", FAMILIES)
def test_snapshot_restores_weights_and_batchnorm_statistics(family):
    check_snapshot_round_trip(B, make_spec(family, "digits", batchnorm=True))
