"""PyTorch layers more than one family builds from: batch norm with Keras's statistics,
attention, the encoder block, sinusoid positions, and the bindings that tie torch parameters
to the canonical weights (bench.sizes.weight_shapes) in Keras's layout."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..registry import BATCHNORM_EPS, BATCHNORM_MOMENTUM, LAYERNORM_EPS
from .common import sinusoid

# The autocast dtype of each reduced precision (fp32 runs without autocast).
AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


class BatchNorm(nn.Module):
    """Batch norm with Keras's statistics: biased batch variance, also in the running one.

    Normalises over every axis but 1 (the channel axis in torch layout).
    """

    def __init__(self, n: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.bias = nn.Parameter(torch.zeros(n))
        self.register_buffer("running_mean", torch.zeros(n))
        self.register_buffer("running_var", torch.ones(n))

    def forward(self, x):
        shape = [1, -1] + [1] * (x.dim() - 2)
        if self.training:
            dims = [0] + list(range(2, x.dim()))
            # statistics in fp32 whatever autocast computes in, as Keras's BatchNormalization
            var, mean = torch.var_mean(x.float(), dim=dims, correction=0)
            with torch.no_grad():
                keep = BATCHNORM_MOMENTUM
                self.running_mean.mul_(keep).add_(mean, alpha=1 - keep)
                self.running_var.mul_(keep).add_(var, alpha=1 - keep)
        else:
            mean, var = self.running_mean, self.running_var
        scale = self.weight * torch.rsqrt(var + BATCHNORM_EPS)
        shift = self.bias - mean * scale
        return (x * scale.view(shape) + shift.view(shape)).to(x.dtype)


def maybe_bn(on: bool, n: int) -> nn.Module:
    return BatchNorm(n) if on else nn.Identity()


def to_tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


# A binding ties one canonical weight to the torch parameters holding it: put(array) writes the
# canonical array into them, get() reads it back in canonical layout.
class Binding:
    def __init__(self, name, params, put, get):
        self.name, self.params, self.put, self.get = name, params, put, get


def plain(name: str, p: torch.Tensor, to_torch=lambda a: a, to_canon=lambda a: a) -> Binding:
    def put(a):
        with torch.no_grad():
            p.copy_(to_tensor(to_torch(a)))

    # a copy: on CPU .numpy() would share the parameter's memory, and steps would change it
    return Binding(name, [p], put, lambda: np.array(to_canon(p.detach().cpu().numpy())))


def linear_bindings(name: str, layer: nn.Linear) -> list[Binding]:
    return [
        plain(f"{name}.kernel", layer.weight, lambda a: a.T, lambda a: a.T),
        plain(f"{name}.bias", layer.bias),
    ]


def conv_bindings(name: str, layer: nn.Module) -> list[Binding]:
    if isinstance(layer, nn.Conv2d):  # (kh, kw, in, out) <-> (out, in, kh, kw)
        to_t, to_c = (lambda a: a.transpose(3, 2, 0, 1)), (lambda a: a.transpose(2, 3, 1, 0))
    else:  # (k, in, out) <-> (out, in, k)
        to_t = to_c = lambda a: a.transpose(2, 1, 0)
    return [plain(f"{name}.kernel", layer.weight, to_t, to_c), plain(f"{name}.bias", layer.bias)]


def norm_bindings(name: str, layer: nn.Module) -> list[Binding]:
    return [plain(f"{name}.gamma", layer.weight), plain(f"{name}.beta", layer.bias)]


def attention_bindings(prefix: str, layer: nn.Module, inner: str = "") -> list[Binding]:
    """The {inner}q/k/v/o projections of an attention layer, in canonical order."""
    return [s for name in "qkvo"
            for s in linear_bindings(f"{prefix}{inner}{name}", getattr(layer, inner + name))]


def positions(length: int, d: int, layout: str = "interleaved") -> torch.Tensor:
    """Sinusoidal encoding (Vaswani et al.): sin on even and cos on odd features, or with
    layout "halves" (Marian's) all sines first, then all cosines, of the same angles."""
    return torch.from_numpy(sinusoid(length, d, layout))


class Model(nn.Module):
    """Shared by the families: `bindings()` lists the canonical weights in spec order."""

    precision = "fp32"  # the autocast it runs under (build and seq2seq_model set it)

    def bindings(self) -> list[Binding]:
        raise NotImplementedError


def attend(layer, y, memory=None, mask=None, causal=False, prefix=""):
    """Multi-head scaled dot-product attention of `y` over `memory` (itself if None) with
    `layer`'s {prefix}q/k/v/o projections; `mask` (N, 1, 1, keys) is True where a key may
    be attended to."""
    q, k, v, o = (getattr(layer, prefix + name) for name in "qkvo")
    src = y if memory is None else memory
    n, lq, d = y.shape
    heads = layer.heads

    def split(t):
        return t.view(n, t.shape[1], heads, d // heads).transpose(1, 2)

    a = F.scaled_dot_product_attention(split(q(y)), split(k(src)), split(v(src)),
                                       attn_mask=mask, is_causal=causal)
    return o(a.transpose(1, 2).reshape(n, lq, d))


ACTIVATIONS = {"relu": F.relu, "silu": F.silu}


def residual(x, branch, norm, post_ln: bool, drop):
    """x + branch, the LayerNorm before the branch (pre-LN) or after the sum (post-LN)."""
    if post_ln:
        return norm(x + drop(branch(x)))
    return x + drop(branch(norm(x)))


class Block(nn.Module):
    """Encoder layer: self-attention, then feed-forward, each a residual branch."""

    def __init__(self, d: int, heads: int, ff: int, dropout: float, post_ln: bool = False,
                 activation: str = "relu"):
        super().__init__()
        self.heads, self.post_ln, self.act = heads, post_ln, ACTIVATIONS[activation]
        self.ln1 = nn.LayerNorm(d, eps=LAYERNORM_EPS)
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.ln2 = nn.LayerNorm(d, eps=LAYERNORM_EPS)
        self.ff1, self.ff2 = nn.Linear(d, ff), nn.Linear(ff, d)
        self.drop = nn.Dropout(dropout)

    def _ff(self, x):
        return self.ff2(self.act(self.ff1(x)))

    def forward(self, x, mask=None):
        x = residual(x, lambda h: attend(self, h, mask=mask), self.ln1, self.post_ln,
                      self.drop)
        return residual(x, self._ff, self.ln2, self.post_ln, self.drop)

    def bindings(self, prefix: str) -> list[Binding]:
        out = norm_bindings(prefix + "ln1", self.ln1) + attention_bindings(prefix, self)
        out += norm_bindings(prefix + "ln2", self.ln2)
        return out + linear_bindings(prefix + "ff1", self.ff1) + linear_bindings(prefix + "ff2",
                                                                                self.ff2)


def split_heads(t, heads: int):
    """(N, L, d) -> (N, heads, L, d / heads)."""
    n, length, d = t.shape
    return t.view(n, length, heads, d // heads).transpose(1, 2)
