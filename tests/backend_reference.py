"""Framework-neutral references the per-framework backend tests share.

numpy only: each backend's tests run in a process of their own framework and import this.
"""

from __future__ import annotations

import numpy as np

from bench.registry import ADAM_BETAS, EPSILON, RMSPROP_RHO
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
