"""The encoder-decoder in PyTorch, the benchmark's seq2seq and a pretrained Marian alike
(bench.models.seq2seq.spec says what it computes), with the key/value cache and the
Decoder that bench.translation.generate drives."""

from __future__ import annotations

import contextlib
import math
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...registry import LAYERNORM_EPS
from ..torch_layers import (
    AUTOCAST,
    Binding,
    Block,
    Model,
    attention_bindings,
    linear_bindings,
    norm_bindings,
    plain,
    positions,
    residual,
    split_heads,
)
from .spec import Seq2SeqArch, seq2seq_arch

if TYPE_CHECKING:
    from ...spec import RunSpec


def _grow(cache: dict, name: str, new: torch.Tensor) -> torch.Tensor:
    """A layer's keys or values (N, heads, positions, d / heads) with `new` appended: a
    view of `cache[name + "_buf"]`, whose capacity doubles when full, so that a step
    writes its own position instead of copying every earlier one. (torch.cat allocated
    the whole cache anew each step; past glibc's 32 MiB mmap threshold every allocation
    faulted in fresh pages: at opus-mt's shape, 256 rows and 110 positions, 0.8 s of a
    3.6 s step.)"""
    old = cache.get(name)
    start = 0 if old is None else old.shape[2]
    end = start + new.shape[2]
    buf = cache.get(name + "_buf")
    if buf is None or end > buf.shape[2]:
        grown = new.new_empty(new.shape[0], new.shape[1], max(2 * end, 32), new.shape[3])
        if start:
            grown[:, :, :start] = old
        cache[name + "_buf"] = buf = grown
    buf[:, :, start:end] = new
    cache[name] = buf[:, :, :end]
    return cache[name]


def pick_cache(cache: dict, rows: torch.Tensor) -> dict:
    """Rows `rows` of one decoder layer's cache. The self-attention keys and values go
    into the buffer the previous pick left over (two buffers per tensor, used in turn),
    so that a beam step's reordering allocates nothing and faults no page in: 1.55 s of
    the 3.6 s step above went to index_select's fresh outputs. `cache` is consumed."""
    out = {name: cache[name].index_select(0, rows) for name in ("xk", "xv") if name in cache}
    n = len(rows)
    for name in ("k", "v"):
        if name not in cache:
            continue
        now, buf, spare = cache[name], cache[name + "_buf"], cache.get(name + "_spare")
        if spare is None or spare.shape[0] < n or spare.shape[2] != buf.shape[2]:
            spare = buf.new_empty(n, *buf.shape[1:])
        out[name] = torch.index_select(now, 0, rows, out=spare[:n, :, : now.shape[2]])
        out[name + "_buf"], out[name + "_spare"] = spare[:n], buf
    return out


class DecoderBlock(Block):
    """Decoder layer: causal self-attention, cross-attention over the encoder's output
    (xq/xk/xv/xo under ln2), feed-forward (under ln3), each a residual branch.

    With a `cache` (a dict per layer, kept by `Decoder`), the layer reads only the new
    position: its keys and values join those of the earlier positions, and the
    cross-attention's keys and values over the encoder output are computed once."""

    def __init__(self, d: int, heads: int, ff: int, dropout: float, post_ln: bool = False,
                 activation: str = "relu"):
        super().__init__(d, heads, ff, dropout, post_ln, activation)
        self.xq, self.xk, self.xv, self.xo = (nn.Linear(d, d) for _ in range(4))
        self.ln3 = nn.LayerNorm(d, eps=LAYERNORM_EPS)

    def cross_kv(self, memory):
        return split_heads(self.xk(memory), self.heads), split_heads(self.xv(memory),
                                                                        self.heads)

    def _self(self, y, cache):
        n, length, d = y.shape
        q, k, v = (split_heads(p(y), self.heads) for p in (self.q, self.k, self.v))
        if cache is not None:
            k, v = _grow(cache, "k", k), _grow(cache, "v", v)
        # a cached step has one query, which sees every key; otherwise queries see the past
        a = F.scaled_dot_product_attention(q, k, v, is_causal=length > 1)
        return self.o(a.transpose(1, 2).reshape(n, length, d))

    def _cross(self, y, memory, mask, cache):
        n, length, d = y.shape
        if cache is not None and "xk" in cache:
            k, v = cache["xk"], cache["xv"]
        else:
            k, v = self.cross_kv(memory)
        a = F.scaled_dot_product_attention(split_heads(self.xq(y), self.heads), k, v,
                                           attn_mask=mask)
        return self.xo(a.transpose(1, 2).reshape(n, length, d))

    def forward(self, x, memory, memory_mask, cache=None):
        x = residual(x, lambda h: self._self(h, cache), self.ln1, self.post_ln, self.drop)
        x = residual(x, lambda h: self._cross(h, memory, memory_mask, cache), self.ln2,
                      self.post_ln, self.drop)
        return residual(x, self._ff, self.ln3, self.post_ln, self.drop)

    def bindings(self, prefix: str) -> list[Binding]:
        out = norm_bindings(prefix + "ln1", self.ln1) + attention_bindings(prefix, self)
        out += norm_bindings(prefix + "ln2", self.ln2) + attention_bindings(prefix, self, "x")
        out += norm_bindings(prefix + "ln3", self.ln3)
        out += linear_bindings(prefix + "ff1", self.ff1)
        return out + linear_bindings(prefix + "ff2", self.ff2)


class Seq2Seq(Model):
    """Encoder-decoder Transformer (Vaswani et al. 2017), as its Seq2SeqArch says: pre-LN
    with ReLU and a final LayerNorm per stack (the benchmark's `seq2seq`), or post-LN with
    SiLU and none (Marian).

    One embedding serves the source, the target and (transposed) the output layer, as in
    Marian; embeddings are scaled by sqrt(d_model) before the sinusoidal positions are
    added. Source padding is masked in the encoder and in cross-attention; the decoder's
    self-attention is causal, so target padding (always after EOS) is never attended to.
    """

    def __init__(self, arch: Seq2SeqArch, dropout: float = 0.0):
        super().__init__()
        self.arch, d = arch, arch.d_model
        self.embed = nn.Embedding(arch.vocab, d)
        self.register_buffer("pe", positions(max(arch.max_positions, 64), d, arch.positions),
                             persistent=False)
        kw = {"post_ln": arch.post_ln, "activation": arch.activation}
        self.enc = nn.ModuleList(Block(d, arch.heads, arch.ff, dropout, **kw)
                                 for _ in range(arch.enc_layers))
        self.dec = nn.ModuleList(DecoderBlock(d, arch.heads, arch.ff, dropout, **kw)
                                 for _ in range(arch.dec_layers))
        final = (lambda: nn.LayerNorm(d, eps=LAYERNORM_EPS)) if arch.final_ln else nn.Identity
        self.enc_ln, self.dec_ln = final(), final()
        self.head_bias = nn.Parameter(torch.zeros(arch.vocab))
        self.drop = nn.Dropout(dropout)

    def _embed(self, ids, start: int = 0):
        end = start + ids.shape[1]
        if end > len(self.pe):  # longer than the table so far: extend it
            self.pe = positions(max(end, 2 * len(self.pe)), self.arch.d_model,
                                 self.arch.positions).to(self.pe.device)
        return self.drop(self.embed(ids) * math.sqrt(self.arch.d_model) + self.pe[start:end])

    def encode(self, src):
        """(encoder output, source mask (N, 1, 1, L): True at real tokens)."""
        mask = (src != self.arch.pad)[:, None, None, :]
        x = self._embed(src)
        for block in self.enc:
            x = block(x, mask)
        return self.enc_ln(x), mask

    def hidden(self, tgt_in, memory, mask, last_only: bool = False, caches=None):
        """The decoder's output (N, T, d) before the output layer, teacher-forced on
        `tgt_in`; with `last_only`, (N, d) of the last position (decoding needs no other).
        With `caches` (one dict per layer), `tgt_in` holds only the positions after the
        cached ones."""
        past = caches[0]["k"].shape[2] if caches and "k" in caches[0] else 0
        x = self._embed(tgt_in, past)
        for i, block in enumerate(self.dec):
            x = block(x, memory, mask, None if caches is None else caches[i])
        return self.dec_ln(x[:, -1] if last_only else x)

    def decode(self, tgt_in, memory, mask, last_only: bool = False, caches=None):
        """Logits (N, T, vocab), or (N, vocab) with `last_only` (see `hidden`)."""
        # F.linear, not `@ weight.T`: autocast keeps its bf16 copy of a weight (a leaf)
        # for as long as the outermost autocast region lasts, never of a view (.T)
        return (F.linear(self.hidden(tgt_in, memory, mask, last_only, caches),
                         self.embed.weight) + self.head_bias)

    def forward(self, src, tgt_in):
        return self.decode(tgt_in, *self.encode(src))

    def bindings(self):
        out = [plain("embed", self.embed.weight)]
        for i, block in enumerate(self.enc):
            out += block.bindings(f"enc{i}.")
        out += norm_bindings("enc_ln", self.enc_ln) if self.arch.final_ln else []
        for i, block in enumerate(self.dec):
            out += block.bindings(f"dec{i}.")
        out += norm_bindings("dec_ln", self.dec_ln) if self.arch.final_ln else []
        return out + [plain("head.bias", self.head_bias)]


class Decoder:
    """bench.translation.generate's three calls over a Seq2Seq model, a trained run's or a
    pretrained Marian's: eval mode, no gradients, the model's precision's autocast.

    A state is (encoder output, source mask, caches). With a cache, the encoder output is
    only needed once, for every decoder layer's cross-attention keys and values, and is
    dropped; each layer's dict then gains its self-attention keys and values step by step.
    """

    def __init__(self, model: Seq2Seq):
        self.model, self.amp = model, AUTOCAST.get(model.precision)
        self.device = model.embed.weight.device
        self.start, self.eos, self.pad = model.arch.start, model.arch.eos, model.arch.pad

    def _autocast(self):
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp)

    def held(self):
        """The region of one generate call (bench.translation.generate enters it): one autocast
        region around every step's, so that autocast casts each weight to bf16 / fp16 once per
        call rather than once per step (at opus-mt's shape the output layer's cast alone
        took 3x the step's bf16 product at batch 1)."""
        return self._autocast()

    @torch.no_grad()
    def encode(self, src, cache: bool = True):
        if self.model.training:
            self.model.train(False)
        with self._autocast():
            memory, mask = self.model.encode(self._ids(src))
            if not cache:
                return memory, mask, None
            caches = [dict(zip(("xk", "xv"), block.cross_kv(memory), strict=True))
                      for block in self.model.dec]
        return None, mask, caches

    @staticmethod
    def tile(state, idx: np.ndarray):
        """Rows `idx` of a state; the state given is consumed (its caches' buffers are
        reused), as bench.translation.generate replaces it at every call."""
        memory, mask, caches = state
        rows = torch.as_tensor(idx, dtype=torch.long, device=mask.device)

        def pick(t):
            return t.index_select(0, rows)

        return (None if memory is None else pick(memory), pick(mask),
                None if caches is None else [pick_cache(c, rows) for c in caches])

    def _ids(self, a) -> torch.Tensor:
        if isinstance(a, torch.Tensor):
            return a
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64)).to(self.device)

    def _step_input(self, caches, prefix: np.ndarray) -> torch.Tensor:
        """The decoder's input for the step after `prefix`: with a cache, its last token."""
        if caches is not None:
            past = caches[0]["k"].shape[2] if "k" in caches[0] else 0
            if prefix.shape[1] != past + 1:  # a caller that skipped or repeated a step
                raise ValueError(f"cache holds {past} positions; prefix has "
                                 f"{prefix.shape[1]}, not one more")
            prefix = prefix[:, -1:]
        return self._ids(prefix)

    @torch.no_grad()
    def next_logprobs(self, state, prefix: np.ndarray) -> np.ndarray:
        """Log-probabilities (M, vocab) of the token after each prefix row."""
        memory, mask, caches = state
        with self._autocast():
            out = self.model.decode(self._step_input(caches, prefix), memory, mask,
                                    last_only=True, caches=caches)
        return F.log_softmax(out.float(), -1).cpu().numpy()

    @torch.no_grad()
    def next_top(self, state, prefix: np.ndarray, k: int, banned=(),
                 normalised: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """The k most likely tokens after each prefix row, best first: (log-probabilities,
        ids), each (M, k), as next_logprobs's rows would rank them with the `banned` ids
        set to -inf after the softmax. Not `normalised`: logits (greedy needs only the
        order), no log-sum-exp. Only the (M, k) leave the device, and no (M, vocab)
        log-softmax is written: at opus-mt's vocabulary and 256 rows a step's ranking took
        0.1-0.2 s in numpy against 0.04 s in torch.topk."""
        memory, mask, caches = state
        model = self.model
        with self._autocast():
            h = model.hidden(self._step_input(caches, prefix), memory, mask, last_only=True,
                             caches=caches)
            # (vocab, M) = E h^T: on one CPU thread MKL ran this layout 1.4-2x faster than
            # h E^T (F.linear) at 4-256 rows of opus-mt's output layer, the same at 1
            logits = torch.addmm(model.head_bias[:, None], model.embed.weight, h.t())
        # (M, vocab) laid out again: top-k along a strided row took 5x as long (0.22 s)
        logits = logits.float().t().contiguous()
        lse = torch.logsumexp(logits, 1) if normalised else None
        if len(banned):
            logits[:, list(banned)] = -math.inf
        vals, ids = torch.topk(logits, min(k, logits.shape[1]), 1)
        if lse is not None:
            vals = vals - lse[:, None]
        return vals.cpu().numpy(), ids.cpu().numpy()


def model(spec: RunSpec) -> Seq2Seq:
    return Seq2Seq(seq2seq_arch(spec.size, spec.dataset), spec.dropout)
