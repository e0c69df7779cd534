"""Framework-neutral references the backend tests share (tests/test_backend.py and the
framework modules beside it).

numpy only: each backend's tests run in a process of their own framework and import this.
The numpy forward pass is written from the canonical Keras-layout weights, so a transposed
kernel or a swapped gate shows up without the other framework.
"""

from __future__ import annotations

import numpy as np

from bench.models.cnn.spec import cnn_geometry
from bench.models.transformer.spec import transformer_tokens
from bench.registry import (
    ADAM_BETAS,
    BATCHNORM_EPS,
    EPSILON,
    LAYERNORM_EPS,
    RMSPROP_RHO,
)
from bench.sizes import weight_shapes
from bench.spec import RunSpec


def fake_data(spec: RunSpec, n: int, seed: int = 0):
    """Random inputs of the dataset's layout and a label the inputs determine.

    Label: whether the first half of the sequence (rows) outweighs the second; for tokens
    (drawn from 20 ids, so each is seen often), whether the first token is below 10.
    """
    info, rng = spec.info, np.random.default_rng(seed)
    if info.kind == "text":  # source ids; targets BOS, 5 to 15 words, EOS, padding
        x = rng.integers(3, info.vocab, size=(n, *info.shape))
        y = np.zeros((n, info.target_len), dtype=np.int64)
        for row, length in zip(y, rng.integers(5, 16, size=n), strict=True):
            row[0], row[1:length + 1], row[length + 1] = 1, rng.integers(3, 20, length), 2
        return x, y
    if info.kind == "tokens":
        x = rng.integers(0, 20, size=(n, *info.shape))
        y = x[:, 0] < 10
    else:
        x = rng.standard_normal((n, *info.shape)).astype(np.float32)
        half = info.shape[0] // 2
        axes = tuple(range(1, x.ndim))
        y = x[:, :half].sum(axis=axes) > x[:, half:].sum(axis=axes)
    return x, y.astype(np.int64)


def check_snapshot_round_trip(backend, spec: RunSpec) -> None:
    """snapshot, more steps, then restore give back the same eval outputs, so the weights
    and the normalisation statistics both came back (`backend`: one backend module)."""
    trainer = backend.Trainer(backend.build(spec), spec)
    x, y = fake_data(spec, 64)
    xd, yd = backend.to_device(x), backend.to_device(y)
    # a translation model's outputs are teacher-forced on the targets
    targets = (yd,) if spec.family == "seq2seq" else ()
    trainer.step(xd, yd, 1e-2)
    state, before = backend.snapshot(trainer.model), trainer.predict(xd, 32, *targets)
    for _ in range(3):  # moves the weights and the running statistics
        trainer.step(xd, yd, 1e-2)
    assert not np.allclose(trainer.predict(xd, 32, *targets), before)
    backend.restore(trainer.model, state)
    np.testing.assert_array_equal(trainer.predict(xd, 32, *targets), before)


def check_cache_changes_no_token(trainer, src, prefix) -> None:
    """A seq2seq trainer decodes the same tokens with and without its key/value cache
    (greedy, compact or not, and beam search), one cached step per token gives what the
    whole prefix gives, and a cache that missed a step is refused."""
    import pytest

    from bench.translation.generate import beam_search, greedy

    for search in (lambda c: greedy(trainer, src, 20, 16, cache=c),
                   lambda c: greedy(trainer, src, 20, 16, compact=False, cache=c),
                   lambda c: beam_search(trainer, src, 4, 1.0, 20, 16, cache=c)):
        assert search(True) == search(False)
    n, steps = prefix.shape
    state = trainer.encode(src[:n])
    for t in range(1, steps + 1):
        cached = trainer.next_logprobs(state, prefix[:, :t])
    full = trainer.next_logprobs(trainer.encode(src[:n], cache=False), prefix)
    np.testing.assert_allclose(cached, full, atol=1e-5)
    with pytest.raises(ValueError, match=f"cache holds {steps} positions"):
        trainer.next_logprobs(state, prefix)  # a step repeated
    check_top_ranks_as_logprobs(trainer, src[:n], prefix)


def check_top_ranks_as_logprobs(trainer, src, prefix) -> None:
    """next_top (the backend ranking on its device) gives the k best of next_logprobs's
    rows, banned ids left out, cached and not: the same ids and log-probabilities."""
    import pytest

    full = trainer.next_logprobs(trainer.encode(src, cache=False), prefix)
    banned = [int(full[0].argmax()), 2]  # the first row's best token must drop out
    masked = full.copy()
    masked[:, banned] = -np.inf
    want = np.argsort(-masked, axis=1, kind="stable")[:, :5]
    state = trainer.encode(src)
    for t in range(1, prefix.shape[1] + 1):
        vals, ids = trainer.next_top(state, prefix[:, :t], 5, banned)
    for got_vals, got_ids in ((vals, ids), trainer.next_top(trainer.encode(src, cache=False),
                                                            prefix, 5, banned)):
        # the k best values, each at its own id (ids of values within float noise of
        # each other may come in either order: the two paths sum in different orders)
        best = np.take_along_axis(full, want, 1)
        np.testing.assert_allclose(np.take_along_axis(full, got_ids, 1), best, atol=1e-5)
        np.testing.assert_allclose(got_vals, best, atol=1e-5)
        assert not np.isin(got_ids, banned).any()
    _, ids = trainer.next_top(trainer.encode(src, cache=False), prefix, 1, normalised=False)
    np.testing.assert_allclose(np.take_along_axis(full, ids, 1)[:, 0], full.max(1),
                               atol=1e-5)
    with pytest.raises(ValueError, match="cache holds"):
        trainer.next_top(state, prefix, 5)  # a step repeated


def reference_update(name: str, grads, lrs, p0):
    """The update rules of bench.spec, in numpy: p0 after one step per (gradient, lr)."""
    p, m, v = p0.astype(np.float64), 0.0, 0.0
    b1, b2 = ADAM_BETAS
    for t, (g, lr) in enumerate(zip(grads, lrs, strict=True), 1):
        if name == "sgd":
            p = p - lr * g
        elif name in ("momentum", "nesterov"):
            m = 0.9 * m + g
            p = p - lr * (g + 0.9 * m if name == "nesterov" else m)
        elif name == "rmsprop":
            v = RMSPROP_RHO * v + (1 - RMSPROP_RHO) * g**2
            p = p - lr * g / (np.sqrt(v) + EPSILON)
        elif name in ("adam", "adamw"):  # adamw's decay is the Trainer's, tested apart
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g**2
            p = p - lr / (1 - b1**t) * m / (np.sqrt(v) / np.sqrt(1 - b2**t) + EPSILON)
        else:
            raise NotImplementedError(f"no reference update rule for optimizer {name!r}")
    return p


def random_weights(spec: RunSpec, seed: int = 1) -> list[np.ndarray]:
    """Canonical weights in which every weight matters: for classifiers nonzero biases and
    norm shifts; for seq2seq unit scale in every part (LayerNorm gains near 1, random
    biases), so that a wrong name, layout or mask shows in the logits."""
    rng = np.random.default_rng(seed)
    shapes = weight_shapes(spec.family, spec.size, spec.dataset, spec.batchnorm)
    if spec.family == "seq2seq":
        return [(rng.standard_normal(shape) * (1 / np.sqrt(shape[0]) if len(shape) > 1 else 0.3)
                 + name.endswith(".gamma")).astype(np.float32) for name, shape in shapes]
    return [
        (rng.standard_normal(shape) * (0.5 / np.sqrt(shape[0] if len(shape) > 1 else 4)))
        .astype(np.float32)
        for _, shape in shapes
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
    """A classifier's eval-mode logits from canonical weights, in float64 numpy (the
    conventions of bench.torch_backend's docstring, written out the Keras way)."""
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
