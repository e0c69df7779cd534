"""The TensorFlow backend against the contract in bench.backend_api and the spec's formulas.

Imports TensorFlow only: the torch backend is tested in its own process.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import threadpoolctl

tf = pytest.importorskip("tensorflow")

import keras  # noqa: E402
import seq2seq_reference  # noqa: E402
from backend_reference import (  # noqa: E402
    check_cache_changes_no_token,
    check_snapshot_round_trip,
    fake_data,
    reference_update,
)

from bench import tf_backend as backend  # noqa: E402
from bench.data import load  # noqa: E402
from bench.init import init_weights  # noqa: E402
from bench.models import tf_layers  # noqa: E402
from bench.registry import CLASSIFIERS, OPTIMIZERS, SpecError  # noqa: E402
from bench.sizes import param_count, weight_shapes  # noqa: E402
from bench.spec import RunSpec  # noqa: E402
from bench.translation.generate import beam_search, greedy  # noqa: E402
from bench.translation.text_pairs import BOS, EOS, PAD  # noqa: E402

# Every classifier on every input kind at the smallest size, plus the article's models
# (seq2seq has tests of its own below).
CASES = [(f, d, "xs") for f in CLASSIFIERS for d in ("mnist1d", "digits", "tokens")]
CASES += [(f, d, "seed") for f in CLASSIFIERS for d in ("mnist", "tokens")]


@pytest.fixture(autouse=True, scope="module")
def _setup():
    backend.setup(1, "cpu", 0)
    # init_weights' QR factorisations crawl when OpenBLAS spins 2 threads on a busy 2-core box.
    with threadpoolctl.threadpool_limits(1):
        yield


def make_spec(family="cnn", dataset="digits", size="xs", **kw) -> RunSpec:
    return RunSpec.create(family=family, framework="tf", dataset=dataset, size=size, **kw)


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


def test_set_weights_rejects_bad_shapes():
    model = backend.build(make_spec())
    weights = backend.get_weights(model)
    with pytest.raises(ValueError):
        backend.set_weights(model, weights[:-1])
    with pytest.raises(ValueError):
        backend.set_weights(model, [np.zeros((1, 1), np.float32)] + weights[1:])


def test_positional_encoding_formula():
    pe = tf_layers.PositionalEncoding(5, 6).pe.numpy()
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


@pytest.mark.parametrize("family", CLASSIFIERS)
def test_training_learns(family):
    dataset, lr = LEARNABLE.get(family, ("digits", 1e-2))
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


# The update rules are checked one by one below; here the Trainer path of the optimizers
# the learning tests do not use (adam is used there), decoupled decay included.
@pytest.mark.parametrize("optimizer", ["adamw", "nesterov", "rmsprop"])
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
    """A changing lr exposes Keras's momentum form; gradients near eps expose its eps placement."""
    rng = np.random.default_rng(1)
    p0 = rng.standard_normal(6).astype(np.float32)
    scale = 1e-6 if optimizer in ("adam", "adamw", "rmsprop") else 1.0
    grads = [rng.standard_normal(6).astype(np.float32) * scale for _ in range(5)]
    lrs = [0.1, 0.05, 0.2, 0.01, 0.1]
    opt = backend._optimizer(make_spec(optimizer=optimizer))
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
    model = backend.build(spec)
    trainer = backend.Trainer(model, spec)
    x, y = fake_data(spec, 16)
    xd, yd = backend.to_device(x), backend.to_device(y)
    net, variables = model.net, model.variables
    with tf.GradientTape() as tape:
        data_loss = tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=yd, logits=net(xd, training=True))
        )
    grads = [g.numpy() for g in tape.gradient(data_loss, variables)]
    w0 = backend.get_weights(model)
    penalty = sum(float((w.astype(np.float64) ** 2).sum()) for w in w0 if w.ndim >= 2)
    loss = backend.scalar(trainer.step(xd, yd, lr))
    assert loss == pytest.approx(float(data_loss) + l2 * penalty, rel=1e-5)
    for w, g, got in zip(w0, grads, backend.get_weights(model), strict=True):
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
        trainer = backend.Trainer(backend.build(spec), spec)
        xd, yd = backend.to_device(x), backend.to_device(y)
        rng = np.random.default_rng(0)
        out = []
        for _ in range(8):
            idx = rng.integers(0, len(y), 16)
            xb, yb = backend.take(xd, idx), backend.take(yd, idx)
            out.append(backend.scalar(trainer.step(xb, yb, 1e-3)))
        return out, backend.get_weights(trainer.model)

    (a, wa), (b, wb) = losses(), losses()
    assert a == b
    for p, q in zip(wa, wb, strict=True):
        np.testing.assert_array_equal(p, q)


def test_eval_predict_infer_and_no_retracing():
    spec = make_spec("cnn", "tokens", dropout=0.2)
    trainer = backend.Trainer(backend.build(spec), spec)
    x, y = fake_data(spec, 37)
    xd, yd = backend.to_device(x), backend.to_device(y)
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
        trainer = backend.Trainer(backend.build(spec), spec)
        if x is None:
            x, y = fake_data(spec, 32)
        xd, yd = backend.to_device(x), backend.to_device(y)
        out.append([backend.scalar(trainer.step(xd, yd, 1e-3)) for _ in range(3)])
    np.testing.assert_allclose(out[0], out[1], rtol=1e-4)


def test_setup_and_devices():
    info = backend.setup(1, "cpu", 0)
    assert info["device"] == "cpu" and info["framework_version"] == tf.__version__
    assert backend.setup(1, "auto", 0)["device"] == "cpu"
    with pytest.raises(SpecError, match="no GPU is visible to tensorflow"):
        backend.setup(1, "cuda", 0)
    with pytest.raises(SpecError):
        backend.setup(1, "tpu", 0)
    backend.reset_peak_memory()
    assert backend.peak_memory() is None
    backend.sync()


def test_is_oom():
    assert backend.is_oom(tf.errors.ResourceExhaustedError(None, None, "OOM when allocating"))
    assert backend.is_oom(MemoryError())
    assert backend.is_oom(RuntimeError("DefaultCPUAllocator: can't allocate memory"))
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


def random_weights(spec: RunSpec, seed: int = 5) -> list[np.ndarray]:
    """Weights of unit scale in every part (random LayerNorm gains and biases too), so
    that a wrong name, layout or mask shows in the logits."""
    rng = np.random.default_rng(seed)
    out = []
    for name, shape in weight_shapes("seq2seq", spec.size, S2S):
        scale = 1 / np.sqrt(shape[0]) if len(shape) > 1 else 0.3
        w = rng.standard_normal(shape) * scale + (name.endswith(".gamma"))
        out.append(w.astype(np.float32))
    return out


@pytest.fixture(scope="module")
def s2s_data():
    return load(S2S)


@pytest.fixture(scope="module")
def trained(s2s_data):
    """An xs model after 300 Adam steps: right on some sentences, wrong on others."""
    spec = s2s_spec(optimizer="adam", lr=3e-3)
    trainer = backend.Trainer(backend.build(spec), spec)
    x, y = backend.to_device(s2s_data.x_train), backend.to_device(s2s_data.y_train)
    rng = np.random.default_rng(0)
    for _ in range(300):
        idx = rng.integers(0, len(s2s_data.y_train), 64)
        trainer.step(backend.take(x, idx), backend.take(y, idx), spec.lr)
    return trainer


@pytest.mark.parametrize("size", ["xs", "s"])
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
    trainer = backend.Trainer(model, spec)
    decayed = {id(v) for (name, _), v in zip(shapes, model.variables, strict=True)
               if name == "embed" or name.endswith(".kernel")}
    assert {id(v) for v in trainer._decayed} == decayed


@pytest.mark.parametrize("size", ["xs", "s"])
def test_seq2seq_forward_matches_numpy_reference(size, s2s_data):
    spec = s2s_spec(size)
    model = backend.build(spec)
    weights = random_weights(spec)
    backend.set_weights(model, weights)
    x, y = s2s_data.x_train[:8], s2s_data.y_train[:8]
    got = backend.Trainer(model, spec).predict(x, 5, y)  # a partial batch too
    want = seq2seq_reference.forward(spec, weights, x, y[:, :-1])
    assert got.shape == (8, 20, spec.info.vocab)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


def test_seq2seq_source_padding_is_masked(s2s_data):
    spec = s2s_spec()
    model = backend.build(spec)
    backend.set_weights(model, random_weights(spec))
    trainer = backend.Trainer(model, spec)
    x, y = s2s_data.x_train[:8], s2s_data.y_train[:8, :-1]
    assert (x == 0).any()
    base = trainer.next_logprobs(trainer.encode(x, cache=False), y)
    # more padding, and padding trimmed to the longest sentence: the same distributions
    longest = int((x != 0).sum(1).max())
    for src in (np.pad(x, ((0, 0), (0, 7))), x[:, :longest]):
        np.testing.assert_allclose(
            trainer.next_logprobs(trainer.encode(src, cache=False), y), base, atol=1e-5)
    # cross-attention never reads the encoder output at PAD positions
    memory, bias, _ = trainer.encode(x, cache=False)
    noise = np.random.default_rng(0).standard_normal(memory.shape).astype(np.float32)
    noisy = memory + noise * (x == 0)[:, :, None]
    np.testing.assert_allclose(trainer.next_logprobs((noisy, bias, None), y), base, atol=1e-5)
    # (and real positions do matter)
    assert not np.allclose(trainer.next_logprobs((memory + noise, bias, None), y), base,
                           atol=1e-3)


def test_seq2seq_decoder_is_causal(s2s_data):
    spec = s2s_spec()
    model = backend.build(spec)
    backend.set_weights(model, random_weights(spec))
    trainer = backend.Trainer(model, spec)
    x, y = s2s_data.x_train[:4], s2s_data.y_train[:4].copy()
    base = trainer.predict(x, 4, y)
    j = 6
    y[:, j] = (y[:, j] + 7) % spec.info.vocab
    changed = trainer.predict(x, 4, y)
    np.testing.assert_array_equal(changed[:, :j], base[:, :j])  # y[:, j] is input j only
    assert not np.allclose(changed[:, j:], base[:, j:], atol=1e-3)


def _trim(row) -> list[int]:
    row = list(row)
    return row[: row.index(EOS) + 1] if EOS in row else [t for t in row if t != PAD]


def test_seq2seq_exact_match_is_greedy_exact_match(trained, s2s_data):
    x, y = s2s_data.x_val[:96], s2s_data.y_val[:96].copy()
    rows = greedy(trained, x, 20, 32)
    # A third of the targets become the model's own greedy output, so that exact match is
    # neither 0 nor 1 whatever the model learned.
    for i in range(0, len(y), 3):
        assert PAD not in rows[i]
        y[i] = PAD
        y[i, : len(rows[i]) + 1] = [BOS, *rows[i]]
    want = np.mean([r == _trim(t) for r, t in zip(rows, y[:, 1:], strict=True)])
    assert 1 / 3 <= want < 1
    loss, acc = trained.evaluate(x, y, 40)
    assert acc == pytest.approx(want)
    logits = trained.predict(x, 40, y)
    labels = y[:, 1:]
    assert loss == pytest.approx(seq2seq_reference.smoothed_loss(logits, labels, 0.0), rel=1e-5)


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_seq2seq_label_smoothing_loss(eps, s2s_data):
    spec = s2s_spec(optimizer="sgd", label_smoothing=eps)
    model = backend.build(spec)
    backend.set_weights(model, random_weights(spec))
    trainer = backend.Trainer(model, spec)
    x, y = s2s_data.x_train[:16], s2s_data.y_train[:16]
    want = seq2seq_reference.smoothed_loss(trainer.predict(x, 16, y), y[:, 1:], eps)
    # lr 0: a pure loss
    loss = backend.scalar(trainer.step(backend.to_device(x), backend.to_device(y), 0.0))
    assert loss == pytest.approx(want, rel=1e-5)
    if eps:  # the formula's terms differ: smoothing moves the loss
        assert abs(want - seq2seq_reference.smoothed_loss(
            trainer.predict(x, 16, y), y[:, 1:], 0.0)) > 1e-3


def test_seq2seq_key_value_cache_gives_the_same_tokens(trained, s2s_data):
    check_cache_changes_no_token(trained, s2s_data.x_val[:40], s2s_data.y_val[:5, :4])


def test_seq2seq_decoding_does_not_retrace(trained, s2s_data):
    x = s2s_data.x_val[:20]
    for cache in (True, False):
        out = (greedy(trained, x, 20, 8, cache=cache)
               + beam_search(trained, x, 3, 1.0, 20, 8, cache=cache))
        assert max(len(r) for r in out) > 3  # prefixes of many lengths and batch sizes
    fns = trained.decoder
    for fn in (fns._encode, fns._cross, fns._full, fns._step):
        assert fn.experimental_get_tracing_count() == 1
    # tile: rows of every state tensor
    memory, bias, _ = trained.encode(x[:3], cache=False)
    tiled = trained.tile((memory, bias, None), np.array([2, 0, 2]))
    np.testing.assert_array_equal(tiled[0].numpy(), memory.numpy()[[2, 0, 2]])
    np.testing.assert_array_equal(tiled[1].numpy(), bias.numpy()[[2, 0, 2]])
    logp = trained.next_logprobs(tiled, np.full((3, 1), BOS, dtype=np.int64))
    assert logp.shape == (3, 62) and logp.dtype == np.float32
    np.testing.assert_allclose(np.exp(logp).sum(1), 1, rtol=1e-5)


def test_seq2seq_training_reduces_loss_without_retracing(s2s_data):
    spec = s2s_spec(optimizer="adam", lr=1e-2, label_smoothing=0.1, dropout=0.1)
    trainer = backend.Trainer(backend.build(spec), spec)
    x, y = backend.to_device(s2s_data.x_train[:48]), backend.to_device(s2s_data.y_train[:48])
    losses = [backend.scalar(trainer.step(x[:32], y[:32], spec.lr)) for _ in range(30)]
    trainer.step(x, y, spec.lr)  # another batch size, the same trace
    assert losses[-1] < 0.7 * losses[0]
    assert trainer._step.experimental_get_tracing_count() == 1
    loss, acc = trainer.evaluate(x, y, 20)
    assert trainer._eval_s2s.experimental_get_tracing_count() == 1
    assert 0 < loss < losses[0] and 0 <= acc <= 1


def test_seq2seq_dropout_is_seeded_and_snapshot_restores(s2s_data):
    spec = s2s_spec(dropout=0.3, optimizer="adamw", l2=1e-4)
    x, y = s2s_data.x_train[:32], s2s_data.y_train[:32]

    def run():
        trainer = backend.Trainer(backend.build(spec), spec)
        return trainer, [backend.scalar(trainer.step(x, y, 1e-2)) for _ in range(3)]

    (trainer, a), (_, b) = run(), run()
    assert a == b
    state, before = backend.snapshot(trainer.model), trainer.predict(x, 32, y)
    trainer.step(x, y, 1e-2)
    assert not np.allclose(trainer.predict(x, 32, y), before)
    backend.restore(trainer.model, state)
    np.testing.assert_array_equal(trainer.predict(x, 32, y), before)


def test_seq2seq_xla_step_matches_graph_step(s2s_data):
    x, y = backend.to_device(s2s_data.x_train[:16]), backend.to_device(s2s_data.y_train[:16])
    out = []
    for compile_ in (False, True):
        spec = s2s_spec(compile=compile_, optimizer="adam", lr=1e-2, label_smoothing=0.1)
        trainer = backend.Trainer(backend.build(spec), spec)
        out.append([backend.scalar(trainer.step(x, y, 1e-2)) for _ in range(3)])
    np.testing.assert_allclose(out[0], out[1], rtol=1e-4)


def test_seq2seq_shared_snapshot_round_trip():
    check_snapshot_round_trip(backend, s2s_spec(dropout=0.1))


# ---------------------------------------------------------------------------- precision


def test_math_settings_are_set_alike_whatever_tf_defaults_to():
    backend.setup(1, "cpu", 0, tf32=True, conv_autotune=False)
    assert tf.config.experimental.tensor_float_32_execution_enabled()
    assert os.environ["TF_CUDNN_USE_AUTOTUNE"] == "0"
    backend.setup(1, "cpu", 0)  # the defaults: TF32 off (TF's own default is on), autotune on
    assert not tf.config.experimental.tensor_float_32_execution_enabled()
    assert os.environ["TF_CUDNN_USE_AUTOTUNE"] == "1"


@pytest.mark.parametrize("family,dataset", [("cnn", "digits"), ("gru", "mnist1d"),
                                            ("transformer", "tokens"),
                                            ("seq2seq", "en_fr_numbers")])
def test_bf16_computes_in_bf16_keeps_fp32_weights_and_learns(family, dataset):
    spec = make_spec(family, dataset, precision="bf16", lr=3e-3)
    model = backend.build(spec)
    trainer = backend.Trainer(model, spec)
    assert {v.dtype for v in model.net.trainable_variables} == {"float32"}
    dense = [la for la in model.net._flatten_layers() if isinstance(la, keras.layers.Dense)]
    assert dense and {la.compute_dtype for la in dense} == {"bfloat16"}
    assert keras.config.dtype_policy().name == "float32"  # the global policy is put back
    x, y = (backend.to_device(a) for a in fake_data(spec, 16))
    losses = [backend.scalar(trainer.step(x, y, 3e-3)) for _ in range(15)]
    logits = trainer.predict(x, 16, y) if family == "seq2seq" else trainer.infer(x)
    assert np.asarray(logits).dtype == np.float32  # logits leave in fp32
    assert losses[-1] < losses[0]  # one batch, memorised


def test_fp16_scales_the_loss():
    spec = make_spec("cnn", "digits", precision="fp16")
    trainer = backend.Trainer(backend.build(spec), spec)
    assert isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer)
    x = backend.to_device(np.random.default_rng(0).normal(size=(8, 8, 8, 1)))
    assert np.isfinite(backend.scalar(trainer.step(x, backend.to_device(np.arange(8) % 10), 1e-3)))
    assert trainer.optimizer.iterations.numpy() == 1


def test_bf16_keeps_recurrent_layers_in_fp32():
    spec = make_spec("gru", "mnist1d", precision="bf16", dropout=0.1, size="s")
    net = backend.build(spec).net
    rnns = [la for la in net.layers if isinstance(la, keras.layers.GRU)]
    assert rnns and {la.compute_dtype for la in rnns} == {"float32"}
    assert {la.compute_dtype for la in net.layers if isinstance(la, keras.layers.Dense)} == {
        "bfloat16"}
