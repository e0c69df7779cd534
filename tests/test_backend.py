"""The backend of this process's framework against the contract in bench.backend_api and
the spec's formulas.

Collected by both test processes (tests/conftest.py): `python -m pytest` tests the torch
backend, `BENCH_TEST_FRAMEWORK=tf python -m pytest` the TensorFlow one, and each imports
its own framework only. What only one framework has (torch's CPU tuning, TF's traces) is
tested in tests/test_torch_backend.py and tests/test_tf_backend.py. Forward passes are
checked against numpy written from the canonical Keras-layout weights
(tests/backend_reference.py), so a transposed kernel or a swapped gate shows up here
without the other framework.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import seq2seq_reference
import threadpoolctl
from backend_reference import (
    check_cache_changes_no_token,
    check_snapshot_round_trip,
    fake_data,
    random_weights,
    reference_forward,
    reference_update,
)
from conftest import FRAMEWORK

from bench.backend_api import load_backend
from bench.init import init_weights
from bench.registry import CLASSIFIERS, OPTIMIZERS, SpecError
from bench.sizes import param_count, weight_shapes
from bench.spec import RunSpec
from bench.translation.generate import greedy
from bench.translation.text_pairs import BOS, EOS, PAD

# ---------------------------------------------------------------------------- per framework
# The few places a test must make a framework's own objects or read a model's internals.

if FRAMEWORK == "torch":
    torch = pytest.importorskip("torch")

    from bench.models import torch_layers

    fw = torch

    def positions(length: int, d: int) -> np.ndarray:
        return torch_layers.positions(length, d).numpy()

    def random_draw() -> np.ndarray:
        return torch.rand(3).numpy()

    def framework_oom() -> BaseException:
        return torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")

    def gpu_visible() -> bool:
        return torch.cuda.is_available()

    def reseed(seed: int) -> None:
        # torch's dropout draws from the global generator, which setup() seeds
        backend.setup(1, "cpu", seed)

    def apply_updates(optimizer: str, p0, grads, lrs) -> np.ndarray:
        """p0 after the backend's optimizer stepped once per (gradient, lr)."""
        p = torch.nn.Parameter(torch.from_numpy(p0.copy()))
        opt = backend._optimizer(optimizer, [p], 0.1)
        for g, lr in zip(grads, lrs, strict=True):
            p.grad = torch.from_numpy(g)
            for group in opt.param_groups:
                group["lr"] = lr
            opt.step()
        return p.detach().numpy()

    def optimizer_steps(trainer) -> int:
        state = trainer.opt.state.get(trainer.params[0], {})
        return int(state["step"]) if "step" in state else 0

    def decayed_variables(model, trainer) -> tuple[dict[str, set[int]], set[int]]:
        """(ids of the variables holding each canonical weight, ids the trainer decays)."""
        return ({s.name: {id(p) for p in s.params} for s in model.bindings()},
                {id(p) for p in trainer.decayed})

    def math_settings() -> tuple[list[bool], bool]:
        """(the TF32 switches, whether convolutions are autotuned)."""
        return ([torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32],
                torch.backends.cudnn.benchmark)

    def loss_scale(trainer) -> float | None:
        return trainer.scaler.get_scale() if trainer.scaler else None

    def compute_dtypes(model, run) -> dict[str, set[str]]:
        """The dtypes dense and recurrent layers compute in while `run()` trains."""
        seen: dict[str, set[str]] = {"dense": set(), "recurrent": set()}

        def hook(kind):
            def record(module, inputs, out):
                out = out[0] if isinstance(out, tuple) else out
                seen[kind].add(str(out.dtype).removeprefix("torch."))
            return record

        kinds = {torch.nn.Linear: "dense", torch.nn.RNNBase: "recurrent"}
        hooks = [m.register_forward_hook(hook(kind)) for m in model.modules()
                 for cls, kind in kinds.items() if isinstance(m, cls)]
        try:
            run()
        finally:
            for h in hooks:
                h.remove()
        return seen

    def weight_dtypes(model) -> set[str]:
        return {str(p.dtype).removeprefix("torch.") for p in model.parameters()}

    def norm_statistics(model) -> list[np.ndarray]:
        return [b.numpy() for m in model.modules() if isinstance(m, torch_layers.BatchNorm)
                for b in (m.running_mean, m.running_var)]

else:
    tf = pytest.importorskip("tensorflow")

    import keras

    from bench.models import tf_layers

    fw = tf

    def positions(length: int, d: int) -> np.ndarray:
        return tf_layers.PositionalEncoding(length, d).pe.numpy()

    def random_draw() -> np.ndarray:
        return tf.random.uniform((3,)).numpy()

    def framework_oom() -> BaseException:
        return tf.errors.ResourceExhaustedError(None, None, "OOM when allocating")

    def gpu_visible() -> bool:
        return bool(tf.config.list_physical_devices("GPU"))

    def reseed(seed: int) -> None:
        """Nothing: a Keras model's dropout layers are seeded from its spec
        (bench.models.tf_layers.dropper), so a run must repeat without setup()."""

    def apply_updates(optimizer: str, p0, grads, lrs) -> np.ndarray:
        """p0 after the backend's optimizer stepped once per (gradient, lr)."""
        opt = backend._optimizer(make_spec(optimizer=optimizer))
        var = tf.Variable(p0)
        opt.build([var])
        for g, lr in zip(grads, lrs, strict=True):
            opt.learning_rate.assign(lr)
            opt.apply([tf.constant(g)], [var])
        return var.numpy()

    def optimizer_steps(trainer) -> int:
        return int(trainer.optimizer.iterations.numpy())

    def decayed_variables(model, trainer) -> tuple[dict[str, set[int]], set[int]]:
        """(ids of the variables holding each canonical weight, ids the trainer decays)."""
        names = [n for n, _ in weight_shapes(trainer.spec.family, trainer.spec.size,
                                             trainer.spec.dataset)]
        return ({n: {id(v)} for n, v in zip(names, model.variables, strict=True)},
                {id(v) for v in trainer._decayed})

    def math_settings() -> tuple[list[bool], bool]:
        """(the TF32 switches, whether convolutions are autotuned)."""
        autotune = {"1": True, "0": False}[os.environ["TF_CUDNN_USE_AUTOTUNE"]]
        return [tf.config.experimental.tensor_float_32_execution_enabled()], autotune

    def loss_scale(trainer) -> float | None:
        opt = trainer.optimizer
        if not isinstance(opt, keras.optimizers.LossScaleOptimizer):
            return None
        return float(opt.dynamic_scale.numpy())

    def compute_dtypes(model, run) -> dict[str, set[str]]:
        """The dtypes dense and recurrent layers compute in while `run()` trains."""
        run()
        layers = list(model.net._flatten_layers())
        return {kind: {la.compute_dtype for la in layers if isinstance(la, cls)}
                for kind, cls in (("dense", keras.layers.Dense),
                                  ("recurrent", keras.layers.RNN))}

    def weight_dtypes(model) -> set[str]:
        return {v.dtype for v in model.net.trainable_variables}

    def norm_statistics(model) -> list[np.ndarray]:
        return [v.numpy() for la in model.net._flatten_layers()
                if isinstance(la, keras.layers.BatchNormalization)
                for v in (la.moving_mean, la.moving_variance)]


# after the framework's importorskip, so that a process without it skips this module
backend = load_backend(FRAMEWORK)

# Every classifier on every input kind at the smallest size, plus the article's models
# (seq2seq has tests of its own below).
CASES = [(f, d, "xs") for f in CLASSIFIERS for d in ("mnist1d", "digits", "tokens")]
CASES += [(f, d, "article") for f in CLASSIFIERS for d in ("mnist", "tokens")]


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    # init_weights' QR factorisations crawl when OpenBLAS spins 2 threads on a busy 2-core box.
    with threadpoolctl.threadpool_limits(1):
        yield


@pytest.fixture(autouse=True)
def _setup():
    backend.setup(1, "cpu", 0)


def make_spec(family="cnn", dataset="digits", size="xs", **kw) -> RunSpec:
    return RunSpec.create(family=family, framework=FRAMEWORK, dataset=dataset, size=size, **kw)


def random_model(spec: RunSpec):
    """`spec`'s model holding random_weights(spec) (every weight nonzero), and those weights."""
    model, weights = backend.build(spec), random_weights(spec)
    backend.set_weights(model, weights)
    return model, weights


# ---------------------------------------------------------------------------- weights


@pytest.mark.parametrize("batchnorm", [False, True])
@pytest.mark.parametrize("family,dataset,size", CASES)
def test_weights_match_spec(family, dataset, size, batchnorm):
    spec = make_spec(family, dataset, size, batchnorm=batchnorm)
    model = backend.build(spec)
    assert backend.n_params(model) == param_count(family, size, dataset, batchnorm)
    weights = backend.get_weights(model)
    shapes = [s for _, s in weight_shapes(family, size, dataset, batchnorm)]
    assert [w.shape for w in weights] == shapes
    assert all(w.dtype == np.float32 for w in weights)
    for got, want in zip(weights, init_weights(spec), strict=True):
        np.testing.assert_array_equal(got, want)
    shifted = [w + 1.0 for w in weights]
    backend.set_weights(model, shifted)
    for got, want in zip(backend.get_weights(model), shifted, strict=True):
        np.testing.assert_array_equal(got, want)
    # get_weights returns copies, not views of the live parameters
    before = backend.get_weights(model)
    backend.set_weights(model, weights)
    for got, want in zip(before, shifted, strict=True):
        np.testing.assert_array_equal(got, want)


def test_article_cnn_has_225034_parameters():
    assert backend.n_params(backend.build(make_spec("cnn", "mnist", "article"))) == 225_034


def test_set_weights_rejects_bad_shapes():
    model = backend.build(make_spec())
    weights = backend.get_weights(model)
    with pytest.raises(ValueError):
        backend.set_weights(model, weights[:-1])
    with pytest.raises(ValueError):
        backend.set_weights(model, [np.zeros((1, 1), np.float32)] + weights[1:])
    with pytest.raises(ValueError):  # would broadcast into a bias without the check
        backend.set_weights(model, weights[:1] + [weights[1][:1]] + weights[2:])


@pytest.mark.parametrize("batchnorm", [False, True])
@pytest.mark.parametrize("family,dataset,size", CASES)
def test_forward_matches_numpy_reference(family, dataset, size, batchnorm):
    spec = make_spec(family, dataset, size, batchnorm=batchnorm, dropout=0.5)
    model, weights = random_model(spec)
    x, _ = fake_data(spec, 5)
    got = backend.Trainer(model, spec).predict(x, 5)
    want = reference_forward(spec, weights, x)
    assert got.shape == (5, spec.info.n_outputs)
    np.testing.assert_allclose(got, want, atol=2e-4, rtol=1e-4)


def test_positional_encoding_formula():
    pe = positions(5, 6)
    pos, i = 3, 2  # dims 2i and 2i+1 = 4, 5
    angle = pos / 10000 ** (2 * i / 6)
    np.testing.assert_allclose(pe[pos, 4:6], [np.sin(angle), np.cos(angle)], rtol=1e-6)


@pytest.mark.parametrize("family", CLASSIFIERS)
def test_batchnorm_trains_on_one_sample(family):
    """Stochastic training (batch 1) with batch norm: Keras allows it, so must we."""
    spec = make_spec(family, "digits", batchnorm=True, batch_size=1)
    trainer = backend.Trainer(backend.build(spec), spec)
    x, y = fake_data(spec, 1)
    loss = backend.scalar(trainer.step(backend.to_device(x), backend.to_device(y), 1e-3))
    assert np.isfinite(loss)


# ---------------------------------------------------------------------------- training

# Input kind and lr with which each family's xs model learns within a hundred steps.
LEARNABLE = {
    "cnn": ("mnist1d", 1e-2),
    "lstm": ("digits", 1e-2),
    "gru": ("digits", 3e-2),
    "transformer": ("tokens", 1e-2),
}


@pytest.mark.parametrize("family", CLASSIFIERS)
def test_training_learns(family):
    dataset, lr = LEARNABLE[family]
    spec = make_spec(family, dataset, lr=lr)
    trainer = backend.Trainer(backend.build(spec), spec)
    x, y = fake_data(spec, 512)
    xd, yd = backend.to_device(x), backend.to_device(y)
    loss0, _ = trainer.evaluate(xd, yd, 128)
    rng = np.random.default_rng(0)
    for _ in range(100):
        idx = rng.integers(0, len(y), 32)
        backend.scalar(trainer.step(backend.take(xd, idx), backend.take(yd, idx), spec.lr))
    loss, acc = trainer.evaluate(xd, yd, 128)
    assert loss < 0.5 * loss0
    assert acc > 0.75


@pytest.mark.parametrize("family,dataset,kw", [
    ("cnn", "digits", {"batchnorm": True, "optimizer": "adamw", "weight_decay": 1e-2}),
    ("transformer", "tokens", {"l2": 1e-3}),
    ("gru", "digits", {"compile": True}),  # the default's recurrent nets train under XLA
])
def test_steps_in_one_call_train_as_the_same_steps_one_at_a_time(family, dataset, kw):
    """Training runs up to steps_per_call steps per call (TensorFlow: a loop inside its
    graph): the same batches at the same per-step rates must leave the same weights and
    batch-norm statistics, and the call's losses must sum to the single steps' losses."""
    spec = make_spec(family, dataset, lr=1e-2, **kw)
    x, y = fake_data(spec, 256)
    xd, yd = backend.to_device(x), backend.to_device(y)
    order = backend.batch_indices(np.random.default_rng(1).permutation(256), 32)
    rows = np.random.default_rng(1).permutation(256).reshape(-1, 32)
    lrs = [1e-2 * (j + 1) / 5 for j in range(5)]  # a warm-up: the rate changes every step
    k = min(5, backend.Trainer.steps_per_call)
    (model_a, weights), model_b = random_model(spec), backend.build(spec)
    backend.set_weights(model_b, weights)
    one_call, single = backend.Trainer(model_a, spec), backend.Trainer(model_b, spec)
    fused = sum(backend.scalar(t) for t in one_call.steps(xd, yd, order, 2, lrs[:k]))
    singles = [backend.scalar(single.step(backend.take(xd, rows[2 + j]),
                                          backend.take(yd, rows[2 + j]), lr))
               for j, lr in enumerate(lrs[:k])]
    assert fused == pytest.approx(sum(singles), rel=1e-5)
    for a, b in zip(backend.get_weights(model_a), backend.get_weights(model_b), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # eval mode reads batch norm's running statistics too
    np.testing.assert_allclose(one_call.predict(x, 64), single.predict(x, 64), rtol=1e-4,
                               atol=1e-5)
    assert backend.Trainer.steps_per_call == (32 if FRAMEWORK == "tf" else 1)


# The update rules are checked one by one below; here the Trainer path of the optimizers
# the learning tests do not use (adam is used there), decoupled decay included.
@pytest.mark.parametrize("optimizer", [o for o in OPTIMIZERS if o != "adam"])
def test_every_optimizer_reduces_loss(optimizer):
    lr = 1e-2 if optimizer in ("adamw", "rmsprop") else 5e-2
    spec = make_spec("cnn", "mnist1d", optimizer=optimizer, lr=lr)
    trainer = backend.Trainer(backend.build(spec), spec)
    x, y = fake_data(spec, 256)
    xd, yd = backend.to_device(x), backend.to_device(y)
    loss0, _ = trainer.evaluate(xd, yd, 256)
    for _ in range(60):
        trainer.step(xd, yd, spec.lr)
    assert trainer.evaluate(xd, yd, 256)[0] < 0.7 * loss0


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_optimizer_update_rules(optimizer):
    """A changing lr exposes Keras's momentum form; gradients near eps expose the eps
    placement: the spec's formulas, step by step."""
    rng = np.random.default_rng(1)
    p0 = rng.standard_normal(6).astype(np.float32)
    scale = 1e-6 if optimizer in ("adam", "adamw", "rmsprop") else 1.0
    grads = [rng.standard_normal(6).astype(np.float32) * scale for _ in range(5)]
    lrs = [0.1, 0.05, 0.2, 0.01, 0.1]
    want = reference_update(optimizer, grads, lrs, p0) - p0
    got = apply_updates(optimizer, p0, grads, lrs) - p0
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6 * np.abs(want).max())


@pytest.mark.parametrize("family,dataset", [("cnn", "digits"), ("gru", "tokens")])
def test_l2_and_weight_decay_semantics(family, dataset):
    """loss = data + l2*sum(w^2) over canonical ndim>=2; p -= lr*wd*p before plain SGD."""
    l2, wd, lr = 1e-2, 0.1, 0.05
    spec = make_spec(family, dataset, optimizer="sgd", l2=l2, weight_decay=wd)
    model, _ = random_model(spec)
    trainer = backend.Trainer(model, spec)
    x, y = fake_data(spec, 16)
    xd, yd = backend.to_device(x), backend.to_device(y)
    w0 = backend.get_weights(model)
    # gradient of the data loss alone, read back in canonical layout via an SGD step of lr 1
    probe = backend.build(spec)
    backend.set_weights(probe, w0)
    plain = backend.Trainer(probe, make_spec(family, dataset, optimizer="sgd"))
    data_loss = backend.scalar(plain.step(xd, yd, 1.0))
    grads = [a - b for a, b in zip(w0, backend.get_weights(probe), strict=True)]
    penalty = sum(float((w.astype(np.float64) ** 2).sum()) for w in w0 if w.ndim >= 2)
    loss = backend.scalar(trainer.step(xd, yd, lr))
    assert loss == pytest.approx(data_loss + l2 * penalty, rel=1e-5)
    for w, g, got in zip(w0, grads, backend.get_weights(model), strict=True):
        decayed = w.ndim >= 2
        want = w - lr * wd * w * decayed - lr * (g + 2 * l2 * w * decayed)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("family", CLASSIFIERS)
def test_deterministic_with_dropout_and_batchnorm(family):
    spec = make_spec(family, "digits", dropout=0.3, batchnorm=True, l2=1e-4, optimizer="adamw")
    x, y = fake_data(spec, 64)

    def run():
        reseed(spec.seed)
        trainer = backend.Trainer(backend.build(spec), spec)
        xd, yd = backend.to_device(x), backend.to_device(y)
        rng = np.random.default_rng(0)
        out = []
        for _ in range(8):
            idx = rng.integers(0, len(y), 16)
            xb, yb = backend.take(xd, idx), backend.take(yd, idx)
            out.append(backend.scalar(trainer.step(xb, yb, 1e-3)))
        return out, trainer.predict(xd, 32), backend.get_weights(trainer.model)

    (a, pa, wa), (b, pb, wb) = run(), run()
    assert a == b
    np.testing.assert_array_equal(pa, pb)
    for p, q in zip(wa, wb, strict=True):
        np.testing.assert_array_equal(p, q)


def test_eval_predict_infer():
    spec = make_spec("cnn", "tokens", dropout=0.2)
    trainer = backend.Trainer(backend.build(spec), spec)
    x, y = fake_data(spec, 37)
    xd, yd = backend.to_device(x), backend.to_device(y)
    for n in (16, 7, 37):  # mini, partial and full batches
        assert tuple(trainer.step(xd[:n], yd[:n], 1e-3).shape) == ()
    loss, acc = trainer.evaluate(xd, yd, 16)
    assert isinstance(loss, float) and isinstance(acc, float)
    assert 0 < loss < 10 and 0 <= acc <= 1
    logits = trainer.predict(x, 16)  # numpy input is accepted too
    assert logits.shape == (37, 1) and isinstance(logits, np.ndarray)
    # Eval mode: no dropout, so predict and infer agree.
    np.testing.assert_allclose(trainer.infer(xd[:5]).numpy(), logits[:5], rtol=1e-5)
    probs = 1 / (1 + np.exp(-logits[:, 0].astype(np.float64)))
    manual = -np.mean(y * np.log(probs) + (1 - y) * np.log(1 - probs))
    assert loss == pytest.approx(manual, rel=1e-4)
    assert acc == pytest.approx(np.mean((logits[:, 0] > 0) == y))


def test_compiled_step_matches_uncompiled_step():
    """torch.compile against eager torch; XLA against TF's graph mode."""
    if FRAMEWORK == "torch":
        pytest.importorskip("torch._inductor")
    x = y = None
    out = []
    for compile_ in (False, True):
        spec = make_spec("cnn", "mnist1d", compile=compile_)
        trainer = backend.Trainer(backend.build(spec), spec)
        if x is None:
            x, y = fake_data(spec, 32)
        xd, yd = backend.to_device(x), backend.to_device(y)
        out.append([backend.scalar(trainer.step(xd, yd, 1e-3)) for _ in range(3)])
    np.testing.assert_allclose(out[0], out[1], rtol=1e-4)


def test_data_helpers():
    xd = backend.to_device(np.arange(12, dtype=np.float64).reshape(6, 2))
    assert xd.numpy().dtype == np.float32
    yd = backend.to_device(np.arange(6, dtype=np.int32))
    assert yd.numpy().dtype == np.int64
    np.testing.assert_array_equal(backend.take(yd, np.array([4, 1])).numpy(), [4, 1])
    np.testing.assert_array_equal(backend.take(xd, np.array([5])).numpy(), [[10, 11]])
    assert backend.scalar(backend.to_device(np.float32(2.5))) == 2.5


# ---------------------------------------------------------------------------- setup


def test_setup_and_devices():
    info = backend.setup(1, "cpu", 0)
    assert info["device"] == "cpu" and info["framework_version"] == fw.__version__
    if not gpu_visible():
        assert backend.setup(1, "auto", 0)["device"] == "cpu"
        with pytest.raises(SpecError, match=f"no GPU is visible to {fw.__name__}"):
            backend.setup(1, "cuda", 0)
        assert backend.peak_memory() is None
    with pytest.raises(SpecError):
        backend.setup(1, "tpu", 0)
    backend.setup(1, "cpu", 0)
    backend.reset_peak_memory()
    assert backend.peak_memory() is None
    backend.sync()


def test_setup_seeds_the_framework():
    backend.setup(1, "cpu", 7)
    a = random_draw()
    backend.setup(1, "cpu", 7)
    np.testing.assert_array_equal(a, random_draw())


def test_is_oom():
    assert backend.is_oom(framework_oom())
    assert backend.is_oom(MemoryError())
    assert backend.is_oom(RuntimeError("DefaultCPUAllocator: can't allocate memory"))
    assert backend.is_oom(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried"))
    assert backend.is_oom(RuntimeError("CUDA out of memory"))
    assert not backend.is_oom(RuntimeError("shape mismatch"))
    assert not backend.is_oom(ValueError("out of memory"))


@pytest.mark.parametrize("family", CLASSIFIERS)
def test_snapshot_restores_weights_and_batchnorm_statistics(family):
    check_snapshot_round_trip(backend, make_spec(family, "digits", batchnorm=True))


# ---------------------------------------------------------------------------- seq2seq

S2S = "en_fr_numbers"


def s2s_spec(size="xs", **kw) -> RunSpec:
    return make_spec("seq2seq", S2S, size, **kw)


@pytest.mark.parametrize("size", ["xs", "s", "article"])
def test_seq2seq_weights_match_spec(size):
    spec = s2s_spec(size)
    model = backend.build(spec)
    assert backend.n_params(model) == param_count("seq2seq", size, S2S)
    shapes = weight_shapes("seq2seq", size, S2S)
    weights = backend.get_weights(model)
    assert [w.shape for w in weights] == [s for _, s in shapes]
    for got, want in zip(weights, init_weights(spec), strict=True):
        np.testing.assert_array_equal(got, want)
    new = random_weights(spec)
    backend.set_weights(model, new)
    for got, want in zip(backend.get_weights(model), new, strict=True):
        np.testing.assert_array_equal(got, want)
    # L2 and weight decay act on the embedding and the kernels, nothing else
    held, decayed = decayed_variables(model, backend.Trainer(model, spec))
    assert decayed == {i for name, ids in held.items()
                       if name == "embed" or name.endswith(".kernel") for i in ids}


@pytest.mark.parametrize("size", ["xs", "s"])
def test_seq2seq_forward_matches_numpy_reference(size, s2s_data):
    spec = s2s_spec(size)
    model, weights = random_model(spec)
    x, y = s2s_data.x_train[:8], s2s_data.y_train[:8]
    got = backend.Trainer(model, spec).predict(x, 5, y)  # a partial batch too
    want = seq2seq_reference.forward(spec, weights, x, y[:, :-1])
    assert got.shape == (8, 20, spec.info.vocab)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("size", ["xs", "s"])
def test_seq2seq_source_padding_is_masked(size, s2s_data):
    spec = s2s_spec(size)
    model, weights = random_model(spec)
    trainer = backend.Trainer(model, spec)
    x, y = s2s_data.x_train[:8], s2s_data.y_train[:8]
    assert (x == 0).any()
    y_in = y[:, :-1]
    base = trainer.next_logprobs(trainer.encode(x, cache=False), y_in)
    # more padding, and padding trimmed to the longest sentence: the same distributions
    longest = int((x != 0).sum(1).max())
    for src in (np.pad(x, ((0, 0), (0, 7))), x[:, :longest]):
        np.testing.assert_allclose(
            trainer.next_logprobs(trainer.encode(src, cache=False), y_in), base, atol=1e-5)
    # cross-attention never reads the encoder output at PAD positions
    memory, bias, _ = trainer.encode(x, cache=False)
    noise = np.random.default_rng(0).standard_normal(memory.shape).astype(np.float32)
    noisy = memory + backend.to_device(noise * (x == 0)[:, :, None])
    np.testing.assert_allclose(trainer.next_logprobs((noisy, bias, None), y_in), base,
                               atol=1e-5)
    # (and real positions do matter)
    assert not np.allclose(
        trainer.next_logprobs((memory + backend.to_device(noise), bias, None), y_in), base,
        atol=1e-3)
    # the padding token's embedding reaches no real position: masked in the encoder and in
    # cross-attention, and after EOS in the target, where causality hides it (the tied
    # output layer's own logit for it, class 0, does move)
    logits = trainer.predict(x, 4, y)
    shifted = [a.copy() for a in weights]
    shifted[0][0] += 1.0
    backend.set_weights(model, shifted)
    real = y[:, 1:] != 0
    np.testing.assert_allclose(trainer.predict(x, 4, y)[real][:, 1:], logits[real][:, 1:],
                               atol=1e-5)


@pytest.mark.parametrize("size", ["xs", "s"])
def test_seq2seq_decoder_is_causal(size, s2s_data):
    spec = s2s_spec(size)
    model, _ = random_model(spec)
    trainer = backend.Trainer(model, spec)
    x, y = s2s_data.x_train[:4], s2s_data.y_train[:4].copy()
    base = trainer.predict(x, 4, y)
    j = 6
    y[:, j] = (y[:, j] + 7) % spec.info.vocab
    changed = trainer.predict(x, 4, y)
    np.testing.assert_array_equal(changed[:, :j], base[:, :j])  # y[:, j] is input j only
    assert not np.allclose(changed[:, j:], base[:, j:], atol=1e-3)
    y[:, 5:] = 9  # a later target token never reaches an earlier position
    np.testing.assert_allclose(trainer.predict(x, 4, y)[:, :5], base[:, :5], atol=1e-5)
    assert not np.allclose(trainer.predict(x, 4, y)[:, 5:], base[:, 5:], atol=1e-3)


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_seq2seq_label_smoothing_loss(eps, s2s_data):
    spec = s2s_spec(optimizer="sgd", label_smoothing=eps)
    model, weights = random_model(spec)
    trainer = backend.Trainer(model, spec)
    x, y = s2s_data.x_train[:16], s2s_data.y_train[:16]
    labels = y[:, 1:]
    logits = trainer.predict(x, 16, y)
    want = seq2seq_reference.smoothed_loss(logits, labels, eps)
    reference = seq2seq_reference.forward(spec, weights, x, y[:, :-1])
    # lr 0: a pure loss, computed before the update
    loss = backend.scalar(trainer.step(backend.to_device(x), backend.to_device(y), 0.0))
    assert loss == pytest.approx(want, rel=1e-5)
    assert loss == pytest.approx(seq2seq_reference.smoothed_loss(reference, labels, eps),
                                 rel=1e-4)
    if eps:  # the formula's terms differ: smoothing moves the loss
        assert abs(want - seq2seq_reference.smoothed_loss(logits, labels, 0.0)) > 1e-3
    loss, _ = trainer.evaluate(x, y, 8)  # evaluation: plain cross-entropy
    assert loss == pytest.approx(seq2seq_reference.smoothed_loss(reference, labels, 0.0),
                                 rel=1e-4)


def _trim(row) -> list[int]:
    row = list(row)
    return row[: row.index(EOS) + 1] if EOS in row else [t for t in row if t != PAD]


def test_seq2seq_exact_match_is_greedy_exact_match(trained_seq2seq, s2s_data):
    x, y = s2s_data.x_val[:96], s2s_data.y_val[:96].copy()
    rows = greedy(trained_seq2seq, x, 20, 32)
    # A third of the targets become the model's own greedy output, so that exact match is
    # neither 0 nor 1 whatever the model learned.
    for i in range(0, len(y), 3):
        assert PAD not in rows[i]
        y[i] = PAD
        y[i, : len(rows[i]) + 1] = [BOS, *rows[i]]
    want = np.mean([r == _trim(t) for r, t in zip(rows, y[:, 1:], strict=True)])
    assert 1 / 3 <= want < 1
    loss, acc = trained_seq2seq.evaluate(x, y, 40)
    assert acc == pytest.approx(want)
    logits = trained_seq2seq.predict(x, 40, y)
    labels = y[:, 1:]
    assert loss == pytest.approx(seq2seq_reference.smoothed_loss(logits, labels, 0.0), rel=1e-5)


def test_seq2seq_key_value_cache_gives_the_same_tokens(trained_seq2seq, s2s_data):
    check_cache_changes_no_token(trained_seq2seq, s2s_data.x_val[:40], s2s_data.y_val[:5, :4])


def test_seq2seq_tile_takes_rows_of_every_state_tensor(trained_seq2seq, s2s_data):
    memory, bias, _ = trained_seq2seq.encode(s2s_data.x_val[:3], cache=False)
    tiled = trained_seq2seq.tile((memory, bias, None), np.array([2, 0, 2]))
    np.testing.assert_array_equal(tiled[0].numpy(), memory.numpy()[[2, 0, 2]])
    np.testing.assert_array_equal(tiled[1].numpy(), bias.numpy()[[2, 0, 2]])
    logp = trained_seq2seq.next_logprobs(tiled, np.full((3, 1), BOS, dtype=np.int64))
    assert logp.shape == (3, 62) and logp.dtype == np.float32
    np.testing.assert_allclose(np.exp(logp).sum(1), 1, rtol=1e-5)


def test_seq2seq_learns_the_training_pairs(s2s_data):
    spec = s2s_spec("s", lr=1e-2)
    trainer = backend.Trainer(backend.build(spec), spec)
    x, y = backend.to_device(s2s_data.x_train), backend.to_device(s2s_data.y_train)
    first = None
    for _ in range(6):
        for i in range(0, 600 - 31, 32):
            loss = backend.scalar(trainer.step(x[i:i + 32], y[i:i + 32], 1e-2))
            first = first or loss
    assert loss < 0.5 * first


def test_seq2seq_training_reduces_loss(s2s_data):
    spec = s2s_spec(optimizer="adam", lr=1e-2, label_smoothing=0.1, dropout=0.1)
    trainer = backend.Trainer(backend.build(spec), spec)
    x, y = backend.to_device(s2s_data.x_train[:48]), backend.to_device(s2s_data.y_train[:48])
    losses = [backend.scalar(trainer.step(x[:32], y[:32], spec.lr)) for _ in range(30)]
    trainer.step(x, y, spec.lr)  # another batch size
    assert losses[-1] < 0.7 * losses[0]
    loss, acc = trainer.evaluate(x, y, 20)
    assert 0 < loss < losses[0] and 0 <= acc <= 1


def test_seq2seq_dropout_is_seeded_and_snapshot_restores(s2s_data):
    spec = s2s_spec(dropout=0.3, optimizer="adamw", l2=1e-4)
    x, y = s2s_data.x_train[:32], s2s_data.y_train[:32]

    def run():
        reseed(spec.seed)
        trainer = backend.Trainer(backend.build(spec), spec)
        xd, yd = backend.to_device(x), backend.to_device(y)
        return trainer, [backend.scalar(trainer.step(xd, yd, 1e-2)) for _ in range(3)]

    (trainer, a), (_, b) = run(), run()
    assert a == b
    xd, yd = backend.to_device(x), backend.to_device(y)
    state, before = backend.snapshot(trainer.model), trainer.predict(x, 32, y)
    trainer.step(xd, yd, 1e-2)
    assert not np.allclose(trainer.predict(x, 32, y), before)
    backend.restore(trainer.model, state)
    np.testing.assert_array_equal(trainer.predict(x, 32, y), before)


def test_seq2seq_snapshot_round_trip():
    check_snapshot_round_trip(backend, s2s_spec(dropout=0.1))


def test_seq2seq_compiled_step_matches_uncompiled_step(s2s_data):
    if FRAMEWORK == "torch":
        pytest.importorskip("torch._inductor")
    x, y = backend.to_device(s2s_data.x_train[:16]), backend.to_device(s2s_data.y_train[:16])
    out = []
    for compile_ in (False, True):
        spec = s2s_spec(compile=compile_, optimizer="adam", lr=1e-2, label_smoothing=0.1)
        trainer = backend.Trainer(backend.build(spec), spec)
        out.append([backend.scalar(trainer.step(x, y, 1e-2)) for _ in range(3)])
    np.testing.assert_allclose(out[0], out[1], rtol=1e-4)


# ---------------------------------------------------------------------------- precision


def test_math_settings_are_set_alike_whatever_the_framework_defaults_to():
    backend.setup(1, "cpu", 0, tf32=True, conv_autotune=False)
    tf32, autotune = math_settings()
    assert all(tf32) and not autotune
    # the defaults: TF32 off (on by default in TF and in cuDNN under torch), autotune on
    backend.setup(1, "cpu", 0)
    tf32, autotune = math_settings()
    assert not any(tf32) and autotune


@pytest.mark.parametrize("family,dataset", [("cnn", "digits"), ("gru", "mnist1d"),
                                            ("transformer", "tokens"),
                                            ("seq2seq", "en_fr_numbers")])
def test_bf16_computes_in_bf16_keeps_fp32_weights_and_learns(family, dataset):
    spec = make_spec(family, dataset, precision="bf16", lr=3e-3)
    model = backend.build(spec)
    trainer = backend.Trainer(model, spec)
    x, y = (backend.to_device(a) for a in fake_data(spec, 16))
    losses = []

    def train():
        losses.extend(backend.scalar(trainer.step(x, y, 3e-3)) for _ in range(15))

    assert compute_dtypes(model, train)["dense"] == {"bfloat16"}
    assert weight_dtypes(model) == {"float32"}
    logits = trainer.predict(x, 16, y) if family == "seq2seq" else trainer.infer(x)
    assert np.asarray(logits).dtype == np.float32  # logits leave in fp32
    assert losses[-1] < losses[0]  # one batch, memorised


def test_fp16_scales_the_loss():
    spec = make_spec("cnn", "digits", precision="fp16")
    trainer = backend.Trainer(backend.build(spec), spec)
    scale = loss_scale(trainer)
    assert scale is not None and scale > 1
    x = backend.to_device(np.random.default_rng(0).normal(size=(8, 8, 8, 1)))
    assert np.isfinite(backend.scalar(trainer.step(x, backend.to_device(np.arange(8) % 10), 1e-3)))
    assert optimizer_steps(trainer) == 1


@pytest.mark.parametrize("family,kw", [
    pytest.param("lstm", dict(batchnorm=True), id="lstm-batchnorm"),
    pytest.param("gru", dict(size="s", dropout=0.1), id="gru-s-dropout"),
])
def test_bf16_keeps_recurrent_layers_and_batch_norm_statistics_in_fp32(family, kw):
    spec = make_spec(family, "mnist1d", precision="bf16", **kw)
    model = backend.build(spec)
    trainer = backend.Trainer(model, spec)
    x = backend.to_device(np.random.default_rng(0).normal(size=(8, 40, 1)))

    def train():
        trainer.step(x, backend.to_device(np.arange(8) % 10), 1e-3)

    dtypes = compute_dtypes(model, train)
    # CUDA autocast would run torch's recurrent layers in fp16
    assert dtypes["recurrent"] == {"float32"} and dtypes["dense"] == {"bfloat16"}
    stats = norm_statistics(model)
    assert len(stats) == (2 if spec.batchnorm else 0)
    for a in stats:
        assert a.dtype == np.float32 and np.isfinite(a).all()
