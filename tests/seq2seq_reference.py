"""A numpy forward pass of the seq2seq family, from the canonical weights alone.

numpy only, in float64: either backend's tests can import it. Written from the spec
(bench.models.seq2seq.spec.seq2seq_shapes and the backends' docstrings), not from either backend.
"""

from __future__ import annotations

import numpy as np

from bench.registry import LAYERNORM_EPS
from bench.sizes import weight_shapes
from bench.spec import RunSpec
from bench.translation.text_pairs import PAD


def positions(length: int, d: int) -> np.ndarray:
    """pe[pos, 2i] = sin(pos / 10000^(2i/d)), pe[pos, 2i+1] = cos(the same)."""
    angle = np.arange(length)[:, None] / 10000.0 ** (np.arange(0, d, 2) / d)
    pe = np.zeros((length, d))
    pe[:, 0::2] = np.sin(angle)
    pe[:, 1::2] = np.cos(angle)[:, : d // 2]
    return pe


def _ln(w, name, x):
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + LAYERNORM_EPS) * w[f"{name}.gamma"] + w[f"{name}.beta"]


def _dense(w, name, x):
    return x @ w[f"{name}.kernel"] + w[f"{name}.bias"]


def _attend(w, prefix, heads, y, kv, allowed):
    """allowed (n, lq, lk): whether query i may see key j."""
    n, lq, d = y.shape
    dh = d // heads

    def split(t):
        return t.reshape(n, -1, heads, dh).transpose(0, 2, 1, 3)

    q, k, v = (split(_dense(w, prefix + c, t)) for c, t in (("q", y), ("k", kv), ("v", kv)))
    scores = np.where(allowed[:, None], q @ k.transpose(0, 1, 3, 2) / np.sqrt(dh), -np.inf)
    p = np.exp(scores - scores.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return _dense(w, prefix + "o", (p @ v).transpose(0, 2, 1, 3).reshape(n, lq, d))


def _ff(w, prefix, x):
    return _dense(w, prefix + "ff2", np.maximum(_dense(w, prefix + "ff1", x), 0.0))


def forward(spec: RunSpec, weights, src, tgt_in) -> np.ndarray:
    """Eval-mode logits (n, T, vocab) for source ids `src` and decoder input `tgt_in`."""
    names = [n for n, _ in weight_shapes(spec.family, spec.size, spec.dataset)]
    w = {n: np.asarray(a, np.float64) for n, a in zip(names, weights, strict=True)}
    a = spec.arch
    d, emb = a.d_model, w["embed"]
    src, tgt_in = np.asarray(src), np.asarray(tgt_in)

    def embed(ids):
        return emb[ids] * np.sqrt(d) + positions(ids.shape[1], d)

    real = src != PAD
    x = embed(src)
    key_mask = np.broadcast_to(real[:, None, :], (len(src), src.shape[1], src.shape[1]))
    for i in range(a.enc_layers):
        p = f"enc{i}."
        h = _ln(w, p + "ln1", x)
        x = x + _attend(w, p, a.heads, h, h, key_mask)
        x = x + _ff(w, p, _ln(w, p + "ln2", x))
    memory = _ln(w, "enc_ln", x)
    t = tgt_in.shape[1]
    causal = np.broadcast_to(np.tril(np.ones((t, t), bool)), (len(src), t, t))
    cross = np.broadcast_to(real[:, None, :], (len(src), t, src.shape[1]))
    x = embed(tgt_in)
    for i in range(a.dec_layers):
        p = f"dec{i}."
        h = _ln(w, p + "ln1", x)
        x = x + _attend(w, p, a.heads, h, h, causal)
        x = x + _attend(w, p + "x", a.heads, _ln(w, p + "ln2", x), memory, cross)
        x = x + _ff(w, p, _ln(w, p + "ln3", x))
    return _ln(w, "dec_ln", x) @ emb.T + w["head.bias"]


def smoothed_loss(logits, labels, eps: float) -> float:
    """Mean over non-PAD labels of cross-entropy against (1 - eps) one-hot + eps / vocab."""
    z = np.asarray(logits, np.float64)
    logp = z - z.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    nll = -np.take_along_axis(logp, labels[..., None], -1)[..., 0]
    per = (1 - eps) * nll - eps * logp.mean(-1)
    real = labels != PAD
    return float(per[real].sum() / real.sum())
