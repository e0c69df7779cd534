"""The PyTorch backend against the contract in bench.backend_api and the spec's formulas.

Imports torch only (TensorFlow is compared in tests/test_parity.py, in its own process).
Forward passes are checked against numpy written from the canonical Keras-layout weights,
so a transposed kernel or a swapped gate shows up here without TensorFlow.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import seq2seq_reference  # noqa: E402
from backend_reference import (  # noqa: E402
    check_cache_changes_no_token,
    check_snapshot_round_trip,
    fake_data,
    reference_update,
)

from bench import torch_backend as backend  # noqa: E402
from bench.init import init_weights  # noqa: E402
from bench.models import torch_layers  # noqa: E402
from bench.models.cnn.spec import cnn_geometry  # noqa: E402
from bench.models.transformer.spec import transformer_tokens  # noqa: E402
from bench.registry import (  # noqa: E402
    BATCHNORM_EPS,
    BATCHNORM_MOMENTUM,
    CLASSIFIERS,
    LAYERNORM_EPS,
    OPTIMIZERS,
    SpecError,
)
from bench.sizes import param_count, weight_shapes  # noqa: E402
from bench.spec import RunSpec  # noqa: E402

# Every family on every input kind at the smallest size, plus the article's models (size `article`).
CASES = [(f, d, "xs") for f in CLASSIFIERS for d in ("mnist1d", "digits", "tokens")]
CASES += [(f, d, "seed") for f in CLASSIFIERS for d in ("mnist", "tokens")]


@pytest.fixture(autouse=True)
def _setup():
    backend.setup(1, "cpu", 0)


def make_spec(family="cnn", dataset="digits", size="xs", **kw) -> RunSpec:
    return RunSpec.create(family=family, framework="torch", dataset=dataset, size=size, **kw)


def random_weights(spec: RunSpec, seed: int = 1) -> list[np.ndarray]:
    """Canonical weights with nonzero biases and norm shifts, so every slot matters."""
    rng = np.random.default_rng(seed)
    return [
        (rng.standard_normal(shape) * (0.5 / np.sqrt(shape[0] if len(shape) > 1 else 4)))
        .astype(np.float32)
        for _, shape in weight_shapes(spec.family, spec.size, spec.dataset, spec.batchnorm)
    ]


# ---------------------------------------------------------------------------- numpy model


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _conv(x, k, b, same):
    """Channels-last convolution, stride 1: x (N, *S, C), k (*K, C, O)."""
    if same:
        x = np.pad(x, [(0, 0)] + [(1, 1)] * (x.ndim - 2) + [(0, 0)])
    ks = k.shape[:-2]
    out_sp = [s - kk + 1 for s, kk in zip(x.shape[1:-1], ks, strict=True)]
    out = np.zeros((x.shape[0], *out_sp, k.shape[-1]))
    for off in np.ndindex(*ks):
        window = tuple(slice(o, o + n) for o, n in zip(off, out_sp, strict=True))
        out += x[(slice(None), *window)] @ k[off]
    return out + b


def _pool(x):
    if x.ndim == 4:
        n, h, w, c = x.shape
        return x[:, : h // 2 * 2, : w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c).max((2, 4))
    n, length, c = x.shape
    return x[:, : length // 2 * 2].reshape(n, length // 2, 2, c).max(2)


def _bn_eval(x, gamma, beta):  # fresh running statistics: mean 0, variance 1
    return x / np.sqrt(1 + BATCHNORM_EPS) * gamma + beta


def _layernorm(x, gamma, beta):
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + LAYERNORM_EPS) * gamma + beta


def reference_forward(spec: RunSpec, weights: list[np.ndarray], x: np.ndarray) -> np.ndarray:
    """Eval-mode logits from canonical weights, in float64 numpy (the module docstring's
    conventions, written out the Keras way)."""
    names = [n for n, _ in weight_shapes(spec.family, spec.size, spec.dataset, spec.batchnorm)]
    w = {n: a.astype(np.float64) for n, a in zip(names, weights, strict=True)}
    info = spec.info
    if "embed" in w:
        h = w["embed"][x]
    elif spec.family == "cnn":
        h = x.astype(np.float64)
    elif spec.family == "transformer":  # series in patches of consecutive steps, images by row
        h = x.reshape(len(x), *transformer_tokens(info)).astype(np.float64)
    else:  # sequences: images row by row
        h = x.reshape(len(x), info.shape[0], -1).astype(np.float64)
    if spec.family == "cnn":
        same = cnn_geometry(h.shape[1:])[0] == "same"
        for i in (1, 2):
            h = _conv(h, w[f"conv{i}.kernel"], w[f"conv{i}.bias"], same)
            if spec.batchnorm:
                h = _bn_eval(h, w[f"bn{i}.gamma"], w[f"bn{i}.beta"])
            h = _pool(np.maximum(h, 0))
        h = np.maximum(h.reshape(len(h), -1) @ w["dense.kernel"] + w["dense.bias"], 0)
    elif spec.family in ("lstm", "gru"):
        for i in range(spec.arch.layers):
            k, r, b = (w[f"rnn{i}.{s}"] for s in ("kernel", "recurrent_kernel", "bias"))
            hid = r.shape[0]
            state = np.zeros((len(h), hid))
            cell = np.zeros((len(h), hid))
            outs = []
            for t in range(h.shape[1]):
                if spec.family == "lstm":
                    z = h[:, t] @ k + state @ r + b
                    ig, fg, cg, og = np.split(z, 4, axis=1)
                    cell = _sigmoid(fg) * cell + _sigmoid(ig) * np.tanh(cg)
                    state = _sigmoid(og) * np.tanh(cell)
                else:  # Keras GRU, reset_after: gates z, r, h
                    xz, xr, xh = np.split(h[:, t] @ k + b[0], 3, axis=1)
                    rz, rr, rh = np.split(state @ r + b[1], 3, axis=1)
                    zg, rg = _sigmoid(xz + rz), _sigmoid(xr + rr)
                    state = zg * state + (1 - zg) * np.tanh(xh + rg * rh)
                outs.append(state)
            h = np.stack(outs, 1)
        h = h[:, -1]
        if spec.batchnorm:
            h = _bn_eval(h, w["bn.gamma"], w["bn.beta"])
    else:
        if "proj.kernel" in w:
            h = h @ w["proj.kernel"] + w["proj.bias"]
        length, d = h.shape[1:]
        pos = np.arange(length)[:, None] / 10000 ** (np.arange(0, d, 2) / d)
        pe = np.zeros((length, d))
        pe[:, 0::2], pe[:, 1::2] = np.sin(pos), np.cos(pos)
        h = h + pe
        heads = spec.arch.heads
        for i in range(spec.arch.layers):
            p = f"block{i}."

            def lin(name, a, p=p):
                return a @ w[p + name + ".kernel"] + w[p + name + ".bias"]

            y = _layernorm(h, w[p + "ln1.gamma"], w[p + "ln1.beta"])
            q, k, v = (lin(n, y).reshape(len(y), length, heads, -1) for n in "qkv")
            s = np.einsum("nqhd,nkhd->nhqk", q, k) / np.sqrt(d // heads)
            s = np.exp(s - s.max(-1, keepdims=True))
            a = np.einsum("nhqk,nkhd->nqhd", s / s.sum(-1, keepdims=True), v)
            h = h + lin("o", a.reshape(len(y), length, d))
            y = _layernorm(h, w[p + "ln2.gamma"], w[p + "ln2.beta"])
            h = h + lin("ff2", np.maximum(lin("ff1", y), 0))
        h = _layernorm(h, w["ln.gamma"], w["ln.beta"]).mean(1)
        if spec.batchnorm:
            h = _bn_eval(h, w["bn.gamma"], w["bn.beta"])
    return h @ w["head.kernel"] + w["head.bias"]


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
    assert backend.n_params(backend.build(make_spec("cnn", "mnist", "seed"))) == 225_034


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
    model = backend.build(spec)
    weights = random_weights(spec)
    backend.set_weights(model, weights)
    x, _ = fake_data(spec, 5)
    got = backend.Trainer(model, spec).predict(x, 5)
    want = reference_forward(spec, weights, x)
    assert got.shape == (5, spec.info.n_outputs)
    np.testing.assert_allclose(got, want, atol=2e-4, rtol=1e-4)


def test_lstm_second_bias_stays_zero_and_frozen():
    spec = make_spec("lstm", "tokens", "m", optimizer="adam", lr=0.1, weight_decay=0.1)
    model = backend.build(spec)
    trainer = backend.Trainer(model, spec)
    x, y = fake_data(spec, 16)
    for _ in range(2):
        trainer.step(backend.to_device(x), backend.to_device(y), 0.1)
    for i in range(spec.arch.layers):
        b = getattr(model.rnn, f"bias_hh_l{i}")
        assert not b.requires_grad and not b.any()


def test_positional_encoding_formula():
    pe = torch_layers.positions(5, 6).numpy()
    pos, i = 3, 2  # dims 2i and 2i+1 = 4, 5
    angle = pos / 10000 ** (2 * i / 6)
    np.testing.assert_allclose(pe[pos, 4:6], [np.sin(angle), np.cos(angle)], rtol=1e-6)


# ---------------------------------------------------------------------------- batch norm


def test_batchnorm_keeps_keras_statistics():
    """Biased batch variance in the normalisation and in the running average."""
    bn = torch_layers.BatchNorm(3)
    x = torch.randn(8, 3, 4, 4) * 3 + 1
    y = bn(x)
    xs = x.double().numpy()
    mean, var = xs.mean((0, 2, 3)), xs.var((0, 2, 3))
    want = (xs - mean[:, None, None]) / np.sqrt(var[:, None, None] + BATCHNORM_EPS)
    np.testing.assert_allclose(y.detach().numpy(), want, atol=1e-5)
    keep = BATCHNORM_MOMENTUM
    np.testing.assert_allclose(bn.running_mean.numpy(), (1 - keep) * mean, rtol=1e-5)
    np.testing.assert_allclose(bn.running_var.numpy(), keep + (1 - keep) * var, rtol=1e-5)
    bn.eval()
    np.testing.assert_allclose(
        bn(x).detach().numpy(),
        (xs - bn.running_mean.numpy()[:, None, None])
        / np.sqrt(bn.running_var.numpy()[:, None, None] + BATCHNORM_EPS),
        atol=1e-5,
    )


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
    """Changing lr and gradients near eps: the spec's formulas, step by step."""
    rng = np.random.default_rng(1)
    p0 = rng.standard_normal(6).astype(np.float32)
    scale = 1e-6 if optimizer in ("adam", "adamw", "rmsprop") else 1.0
    grads = [rng.standard_normal(6).astype(np.float32) * scale for _ in range(5)]
    lrs = [0.1, 0.05, 0.2, 0.01, 0.1]
    p = torch.nn.Parameter(torch.from_numpy(p0.copy()))
    opt = backend._optimizer(optimizer, [p], 0.1)
    for g, lr in zip(grads, lrs, strict=True):
        p.grad = torch.from_numpy(g)
        for group in opt.param_groups:
            group["lr"] = lr
        opt.step()
    want = reference_update(optimizer, grads, lrs, p0) - p0
    got = p.detach().numpy() - p0
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6 * np.abs(want).max())


@pytest.mark.parametrize("family,dataset", [("cnn", "digits"), ("gru", "tokens")])
def test_l2_and_weight_decay_semantics(family, dataset):
    """loss = data + l2*sum(w^2) over canonical ndim>=2; p -= lr*wd*p before plain SGD."""
    l2, wd, lr = 1e-2, 0.1, 0.05
    spec = make_spec(family, dataset, optimizer="sgd", l2=l2, weight_decay=wd)
    model = backend.build(spec)
    backend.set_weights(model, random_weights(spec))
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
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("family", CLASSIFIERS)
def test_deterministic_with_dropout_and_batchnorm(family):
    spec = make_spec(family, "digits", dropout=0.3, batchnorm=True, l2=1e-4, optimizer="adamw")
    x, y = fake_data(spec, 64)

    def losses():
        backend.setup(1, "cpu", spec.seed)
        trainer = backend.Trainer(backend.build(spec), spec)
        xd, yd = backend.to_device(x), backend.to_device(y)
        rng = np.random.default_rng(0)
        out = []
        for _ in range(8):
            idx = rng.integers(0, len(y), 16)
            xb, yb = backend.take(xd, idx), backend.take(yd, idx)
            out.append(backend.scalar(trainer.step(xb, yb, 1e-3)))
        return out, trainer.predict(xd, 32)

    (a, pa), (b, pb) = losses(), losses()
    assert a == b
    np.testing.assert_array_equal(pa, pb)


def test_eval_predict_infer():
    spec = make_spec("cnn", "tokens", dropout=0.2)
    trainer = backend.Trainer(backend.build(spec), spec)
    x, y = fake_data(spec, 37)
    xd, yd = backend.to_device(x), backend.to_device(y)
    for n in (16, 7, 37):
        assert trainer.step(xd[:n], yd[:n], 1e-3).shape == ()
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
    assert trainer.evaluate(xd, yd, "full") == pytest.approx((loss, acc))


def test_compiled_step_matches_eager_step():
    pytest.importorskip("torch._inductor")
    x = y = None
    out = []
    for compile_ in (False, True):
        spec = make_spec("cnn", "mnist1d", compile=compile_)
        trainer = backend.Trainer(backend.build(spec), spec)
        if x is None:
            x, y = fake_data(spec, 32)
        out.append([backend.scalar(trainer.step(backend.to_device(x), backend.to_device(y), 1e-3))
                    for _ in range(3)])
    np.testing.assert_allclose(out[0], out[1], rtol=1e-4)


def test_data_helpers():
    xd = backend.to_device(np.arange(12, dtype=np.float64).reshape(6, 2))
    assert xd.dtype == torch.float32
    yd = backend.to_device(np.arange(6, dtype=np.int32))
    assert yd.dtype == torch.int64
    np.testing.assert_array_equal(backend.take(yd, np.array([4, 1])).numpy(), [4, 1])
    np.testing.assert_array_equal(backend.take(xd, np.array([5])).numpy(), [[10, 11]])
    assert backend.scalar(torch.tensor(2.5)) == 2.5


# ---------------------------------------------------------------------------- setup, speed


def test_setup_and_devices():
    info = backend.setup(2, "cpu", 0)
    assert info["device"] == "cpu" and info["framework_version"] == torch.__version__
    assert "channels_last_conv2d=True" in info["framework_tuning"]
    assert torch.get_num_threads() == 2 and torch.get_num_interop_threads() == 1
    backend.setup(1, "cpu", 0)
    assert torch.get_num_threads() == 1
    if not torch.cuda.is_available():
        assert backend.setup(1, "auto", 0)["device"] == "cpu"
        with pytest.raises(SpecError, match="no GPU is visible to torch"):
            backend.setup(1, "cuda", 0)
        assert backend.peak_memory() is None
    with pytest.raises(SpecError):
        backend.setup(1, "tpu", 0)
    backend.setup(1, "cpu", 0)
    backend.reset_peak_memory()
    assert backend.peak_memory() is None
    backend.sync()


def test_setup_seeds_torch():
    backend.setup(1, "cpu", 7)
    a = torch.rand(3)
    backend.setup(1, "cpu", 7)
    assert torch.equal(a, torch.rand(3))


def test_is_oom():
    assert backend.is_oom(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert backend.is_oom(MemoryError())
    assert backend.is_oom(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried"))
    assert not backend.is_oom(RuntimeError("shape mismatch"))
    assert not backend.is_oom(ValueError("out of memory"))


def test_image_cnn_runs_channels_last():
    """The CPU speed default: NHWC batches feed channels-last convolutions, no reorders."""
    model = backend.build(make_spec("cnn", "mnist", "seed"))
    for conv in (model.conv1, model.conv2):
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(4, 28, 28, 1).permute(0, 3, 1, 2)
    assert x.is_contiguous(memory_format=torch.channels_last)
    # ...and gives what NCHW gives.
    spec = make_spec("cnn", "digits", "s")
    model = backend.build(spec)
    weights = random_weights(spec)
    backend.set_weights(model, weights)
    xs, _ = fake_data(spec, 4)
    np.testing.assert_allclose(backend.Trainer(model, spec).predict(xs, 4),
                               reference_forward(spec, weights, xs), atol=2e-4)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning")
def test_training_steps_do_not_fault_pages_in():
    """setup() keeps freed activations in the heap: steady-state steps fault few pages.

    Without it the article's CNN faults in 2,000-5,000 pages per step (its activations
    are returned to the OS on free and faulted back in on the next step).
    """
    backend.setup(1, "cpu", 0)
    assert backend.cpu_tuning()["keep_freed_memory"] is True
    spec = make_spec("cnn", "mnist", "seed")
    trainer = backend.Trainer(backend.build(spec), spec)
    x, y = fake_data(spec, 64)
    xd, yd = backend.to_device(x), backend.to_device(y)
    for _ in range(3):
        trainer.step(xd, yd, 1e-3)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        trainer.step(xd, yd, 1e-3)
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5 < 200


def test_openmp_spin_default_and_user_override():
    """Imported first, the backend shortens libgomp's spin; a user's setting wins."""
    code = ("import os, bench.torch_backend as backend; "
            "print(os.environ.get('GOMP_SPINCOUNT'), backend.cpu_tuning()['omp_wait'])")
    env = {k: v for k, v in os.environ.items()
           if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}

    def run(**extra):
        return subprocess.run([sys.executable, "-c", code], env={**env, **extra}, check=True,
                              capture_output=True, text=True, timeout=120).stdout.split()

    assert run() == ["1000", "GOMP_SPINCOUNT=1000"]
    assert run(OMP_WAIT_POLICY="ACTIVE") == ["None", "OMP_WAIT_POLICY=ACTIVE"]


def test_module_imports_no_tensorflow():
    code = ("import sys, bench.torch_backend; "
            "assert not {'tensorflow', 'keras'} & set(sys.modules), 'tf imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.parametrize("family", CLASSIFIERS)
def test_snapshot_restores_weights_and_batchnorm_statistics(family):
    check_snapshot_round_trip(backend, make_spec(family, "digits", batchnorm=True))


# ---------------------------------------------------------------------------- seq2seq


def _seq2seq(size="xs", **kw):
    return make_spec("seq2seq", "en_fr_numbers", size, **kw)


@pytest.fixture(scope="module")
def pairs():
    from bench.data import load

    return load("en_fr_numbers")


@pytest.mark.parametrize("size", ["xs", "s", "article"])
def test_seq2seq_weights_match_spec(size):
    spec = _seq2seq(size)
    model = backend.build(spec)
    assert backend.n_params(model) == param_count("seq2seq", size, "en_fr_numbers")
    got = [w.shape for w in backend.get_weights(model)]
    assert got == [shape for _, shape in weight_shapes("seq2seq", size, "en_fr_numbers")]


@pytest.mark.parametrize("size", ["xs", "s"])
def test_seq2seq_forward_matches_numpy_reference(pairs, size):
    spec = _seq2seq(size)
    model = backend.build(spec)
    w = random_weights(spec)
    backend.set_weights(model, w)
    trainer = backend.Trainer(model, spec)
    x, y = pairs.x_train[:8], pairs.y_train[:8]
    got = trainer.predict(x, 4, y)
    want = seq2seq_reference.forward(spec, w, x, y[:, :-1])
    np.testing.assert_allclose(got, want, atol=2e-4, rtol=1e-4)


def test_seq2seq_masks_source_padding_and_is_causal(pairs):
    spec = _seq2seq("s")
    model = backend.build(spec)
    w = random_weights(spec)
    backend.set_weights(model, w)
    trainer = backend.Trainer(model, spec)
    x, y = pairs.x_train[:4], pairs.y_train[:4].copy()
    assert (x == 0).any()
    base = trainer.predict(x, 4, y)
    # the padding token's embedding reaches no real position: masked in the encoder and in
    # cross-attention, and after EOS in the target, where causality hides it (the tied
    # output layer's own logit for it, class 0, does move)
    w2 = [a.copy() for a in w]
    w2[0][0] += 1.0
    backend.set_weights(model, w2)
    real = y[:, 1:] != 0
    np.testing.assert_allclose(trainer.predict(x, 4, y)[real][:, 1:], base[real][:, 1:],
                               atol=1e-5)
    backend.set_weights(model, w)
    y[:, 5:] = 9  # a later target token never reaches an earlier position
    np.testing.assert_allclose(trainer.predict(x, 4, y)[:, :5], base[:, :5], atol=1e-5)
    assert not np.allclose(trainer.predict(x, 4, y)[:, 5:], base[:, 5:], atol=1e-3)


def test_seq2seq_loss_is_label_smoothed_cross_entropy_over_real_tokens(pairs):
    spec = _seq2seq(label_smoothing=0.1)
    model = backend.build(spec)
    w = random_weights(spec)
    backend.set_weights(model, w)
    trainer = backend.Trainer(model, spec)
    x, y = pairs.x_train[:16], pairs.y_train[:16]
    logits = seq2seq_reference.forward(spec, w, x, y[:, :-1])
    want = seq2seq_reference.smoothed_loss(logits, y[:, 1:], 0.1)
    model.train(False)  # no dropout here; the step's loss is computed before its update
    got = backend.scalar(trainer.step(backend.to_device(x), backend.to_device(y), 0.0))
    assert got == pytest.approx(want, rel=1e-4)
    loss, _ = trainer.evaluate(x, y, 8)  # evaluation: plain cross-entropy
    assert loss == pytest.approx(seq2seq_reference.smoothed_loss(logits, y[:, 1:], 0.0),
                                 rel=1e-4)


def test_seq2seq_teacher_forced_exact_match_is_greedy_exact_match(pairs):
    from bench.translation.generate import greedy

    spec = _seq2seq("s", lr=1e-2)
    trainer = backend.Trainer(backend.build(spec), spec)
    x, y = backend.to_device(pairs.x_train), backend.to_device(pairs.y_train)
    first = None
    for _ in range(6):
        for i in range(0, 600 - 31, 32):
            loss = backend.scalar(trainer.step(x[i:i + 32], y[i:i + 32], 1e-2))
            first = first or loss
    assert loss < 0.5 * first  # it learns
    _, exact = trainer.evaluate(pairs.x_val, pairs.y_val, 128)
    rows = greedy(trainer, pairs.x_val, 20, 128)
    refs = [list(r[1:r.tolist().index(2) + 1]) for r in pairs.y_val]
    assert exact == pytest.approx(np.mean([a == b for a, b in zip(rows, refs, strict=True)]),
                                  abs=2e-3)


def test_seq2seq_key_value_cache_gives_the_same_tokens(pairs):
    spec = _seq2seq("s", lr=1e-2)
    trainer = backend.Trainer(backend.build(spec), spec)
    x, y = backend.to_device(pairs.x_train), backend.to_device(pairs.y_train)
    for _ in range(3):  # right on some sentences, wrong on others: rows end at many lengths
        for i in range(0, 600 - 31, 32):
            trainer.step(x[i:i + 32], y[i:i + 32], 1e-2)
    check_cache_changes_no_token(trainer, pairs.x_val[:40], pairs.y_val[:5, :4])


def test_seq2seq_snapshot_round_trip():
    check_snapshot_round_trip(backend, _seq2seq())


# ---------------------------------------------------------------------------- precision


def test_math_settings_are_set_alike_whatever_torch_defaults_to():
    backend.setup(1, "cpu", 0, tf32=True, conv_autotune=False)
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    assert not torch.backends.cudnn.benchmark
    backend.setup(1, "cpu", 0)  # the defaults: TF32 off (cuDNN's own default is on), autotune on
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    assert torch.backends.cudnn.benchmark


@pytest.mark.parametrize("family,dataset", [("cnn", "digits"), ("gru", "mnist1d"),
                                            ("transformer", "tokens"),
                                            ("seq2seq", "en_fr_numbers")])
def test_bf16_computes_products_in_bf16_keeps_fp32_weights_and_learns(family, dataset):
    spec = make_spec(family, dataset, precision="bf16", lr=3e-3)
    model = backend.build(spec)
    trainer = backend.Trainer(model, spec)
    out_dtypes = set()
    for m in model.modules():
        if isinstance(m, torch.nn.Linear):
            m.register_forward_hook(lambda mod, i, o: out_dtypes.add(o.dtype))
    x, y = (backend.to_device(a) for a in fake_data(spec, 16))
    losses = [backend.scalar(trainer.step(x, y, 3e-3)) for _ in range(15)]
    assert torch.bfloat16 in out_dtypes
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    logits = trainer.predict(x, 16, y) if family == "seq2seq" else trainer.infer(x)
    assert logits.dtype in (np.float32, torch.float32)  # logits leave in fp32
    assert losses[-1] < losses[0]  # one batch, memorised


def test_fp16_scales_the_loss_and_an_unsupported_kernel_fails_in_one_line():
    spec = make_spec("cnn", "digits", precision="fp16")
    trainer = backend.Trainer(backend.build(spec), spec)
    assert trainer.scaler is not None and trainer.scaler.get_scale() > 1
    x = backend.to_device(np.random.default_rng(0).normal(size=(8, 8, 8, 1)))
    assert np.isfinite(backend.scalar(trainer.step(x, backend.to_device(np.arange(8) % 10), 1e-3)))
    # oneDNN has no fp16 LSTM on a CPU: the Trainer says so before any step
    spec = make_spec("lstm", "mnist1d", precision="fp16")
    with pytest.raises(SpecError, match="precision fp16 is not supported by torch for lstm") as e:
        backend.Trainer(backend.build(spec), spec)
    assert "\n" not in str(e.value)


def test_bf16_keeps_recurrent_layers_and_batch_norm_statistics_in_fp32():
    spec = make_spec("lstm", "mnist1d", precision="bf16", batchnorm=True)
    model = backend.build(spec)
    trainer = backend.Trainer(model, spec)
    seen = {}
    model.rnn.register_forward_hook(lambda m, i, o: seen.update(rnn=o[0].dtype))
    x = backend.to_device(np.random.default_rng(0).normal(size=(8, 40, 1)))
    trainer.step(x, backend.to_device(np.arange(8) % 10), 1e-3)
    assert seen["rnn"] == torch.float32  # CUDA autocast would have made it fp16
    assert model.bn.running_var.dtype == torch.float32
    assert torch.isfinite(model.bn.running_var).all()
