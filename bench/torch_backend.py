"""PyTorch implementation of the backend contract in `bench.backend_api`.

Models take inputs in the datasets' own layout (images N,H,W,C; series N,L,C; tokens N,L)
and exchange weights in the canonical Keras layout of `bench.sizes.weight_shapes`, so a torch
run and a tf run of one spec start from the same arrays (`bench.init.init_weights`).

Conventions fixed here, which the tf backend must honour too:

- BatchNorm normalises with the biased batch variance and keeps running statistics with
  Keras's momentum and biased variance (torch's own BatchNorm uses the unbiased one); it
  also accepts a batch of one.
- CNN: conv -> [BN] -> ReLU -> MaxPool(2), twice (computed as pool then ReLU, the same
  function); flatten in channels-last order; dropout after flatten and after the dense layer.
- LSTM gates i,f,c,o (torch's order); its second torch bias stays zero and frozen. GRU is
  Keras's reset_after variant, torch's native one, with gates reordered z,r,h <-> r,z,n.
- Transformer: pre-LayerNorm blocks (x + drop(attn(ln1 x)), x + drop(ff(ln2 x))), ReLU in
  the feed-forward, interleaved sin/cos position encoding added unscaled, a final LayerNorm,
  mean pooling, [BN], dropout, head.
- L2 penalty and decoupled weight decay act on the weights of 2 or more dimensions in the
  canonical layout (`decayed`), as bench.backend_api says; decay runs before the update.

CPU speed, the article CNN on 1 thread (see `cpu_tuning`, recorded as `framework_tuning`):
2-D convolutions run channels-last (NCHW reorders the first convolution's whole output:
about 1.7x slower), ReLU follows the max-pool (the same function on a quarter of the
elements: 1.15x), and `setup` keeps glibc from handing freed activations back to the OS
(2,000-6,000 page faults a step otherwise: 1.2-1.5x) and holds numpy's BLAS to `threads`.
OpenMP threads spin 1,000 times, not libgomp's 300,000, before they sleep (see
_SPIN_SET_HERE): on a machine busy with other work that lifts 2-thread runs from a quarter
of TF's speed to about TF's. Even so, 2 threads on a busy 2-core machine lose to 1: measure
on an idle machine.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import sys

# OpenMP threads that wait for work spin before they sleep: libgomp's default is 300,000
# spins (milliseconds on this CPU). When another process holds a core, each op's even split
# waits on a thread that is not running, and 2 threads fall to a quarter of TF's speed (its
# work-stealing pool barely notices). 1,000 spins, libgomp's own figure for more threads
# than cores, still bridges the gaps between ops and sleeps soon on a busy machine. Works
# only before torch (libgomp) loads; a user's OMP_WAIT_POLICY or GOMP_SPINCOUNT wins.
_SPIN_SET_HERE = "torch" not in sys.modules and not (
    {"OMP_WAIT_POLICY", "GOMP_SPINCOUNT"} & set(os.environ)
)
if _SPIN_SET_HERE:
    os.environ["GOMP_SPINCOUNT"] = "1000"

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from .generate import DecodesThrough  # noqa: E402
from .init import init_weights  # noqa: E402
from .measure import cpu_name  # noqa: E402
from .registry import (  # noqa: E402
    ADAM_BETAS,
    BATCHNORM_EPS,
    BATCHNORM_MOMENTUM,
    DEVICES,
    EPSILON,
    LAYERNORM_EPS,
    OPTIMIZERS,
    RMSPROP_RHO,
    SpecError,
)
from .sizes import (  # noqa: E402
    Seq2SeqArch,
    cnn_geometry,
    seq2seq_arch,
    seq2seq_shapes,
    sinusoid,
    transformer_tokens,
    weight_shapes,
)
from .spec import RunSpec  # noqa: E402
from .text_pairs import PAD  # noqa: E402

NAME = "torch"

_device = torch.device("cpu")
# 2-D convolutions in channels-last layout (see CNN); False gives torch's default NCHW.
CHANNELS_LAST = True
# What setup() changed for CPU speed; see cpu_tuning().
_tuning: dict[str, object] = {}


# ---------------------------------------------------------------------------- setup


def _keep_freed_memory() -> bool:
    """Stop glibc malloc from handing freed activation buffers back to the OS.

    A training step frees and reallocates the same megabyte-sized activations every time.
    glibc serves them with mmap or trims them off the heap on free, so each step faults
    them in again: 2,000-6,000 minor page faults a step for the article's CNN, slow under
    virtualisation and worse with 2 threads, which fault in parallel. Raising the mmap and
    trim thresholds keeps those pages in the heap (what jemalloc/tcmalloc do, as PyTorch's
    CPU tuning guide suggests). Returns whether it took effect.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    # Some glibc builds cap the mmap threshold at 32 MiB (HEAP_MAX_SIZE / 2).
    mmap_ok = any(libc.mallopt(m_mmap_threshold, size) for size in (1 << 30, 32 << 20))
    return mmap_ok and bool(libc.mallopt(m_trim_threshold, 1 << 30))


def _limit_blas(threads: int) -> bool:
    """Hold numpy's BLAS (OpenBLAS, one thread per core by default) to `threads` too.

    It does the weight initialisation's QR factorisations; at the machine's core count its
    threads busy-wait after each call beside torch's. Returns whether a BLAS was limited.
    """
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return False
    blas = ThreadpoolController().select(user_api="blas")
    blas.limit(limits=threads)
    return bool(blas.lib_controllers)


def setup(threads: int, device: str = "auto", seed: int = 0, tf32: bool = False,
          conv_autotune: bool = True) -> dict:
    """Pin threads (intra `threads`, inter-op 1), seed torch, resolve the device, set the
    GPU math settings (bench.spec.RunSpec.tf32 / conv_autotune)."""
    global _device
    if device not in DEVICES:
        raise SpecError(f"unknown device {device!r}; allowed: {', '.join(DEVICES)}")
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # only settable once per process, before inter-op work
        pass
    _tuning["blas_threads_limited"] = _limit_blas(threads)
    torch.manual_seed(seed)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise SpecError("device 'cuda' requested but no GPU is visible to torch")
    _device = torch.device(device)
    # torch's defaults differ between the two: TF32 off for matmuls, on for cuDNN.
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = conv_autotune
    if device == "cpu" and "keep_freed_memory" not in _tuning:
        _tuning["keep_freed_memory"] = _keep_freed_memory()
    name = torch.cuda.get_device_name(0) if device == "cuda" else cpu_name()
    tuning = ",".join(f"{k}={v}" for k, v in cpu_tuning().items())
    return {"device": device, "device_name": name, "framework_version": torch.__version__,
            "framework_tuning": tuning}


def cpu_tuning() -> dict:
    """The speed settings in force (setup() records them as `framework_tuning`)."""
    env = " ".join(f"{k}={os.environ[k]}" for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
                   if k in os.environ)
    return {
        "channels_last_conv2d": CHANNELS_LAST,
        "omp_wait": env or "libgomp default",
        **_tuning,
    }


# ---------------------------------------------------------------------------- layers


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


def _maybe_bn(on: bool, n: int) -> nn.Module:
    return BatchNorm(n) if on else nn.Identity()


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


# A slot ties one canonical weight to the torch parameters holding it: put(array) writes the
# canonical array into them, get() reads it back in canonical layout.
class _Slot:
    def __init__(self, name, params, put, get):
        self.name, self.params, self.put, self.get = name, params, put, get


def _plain(name: str, p: torch.Tensor, to_torch=lambda a: a, to_canon=lambda a: a) -> _Slot:
    def put(a):
        with torch.no_grad():
            p.copy_(_t(to_torch(a)))

    # a copy: on CPU .numpy() would share the parameter's memory, and steps would change it
    return _Slot(name, [p], put, lambda: np.array(to_canon(p.detach().cpu().numpy())))


def _linear_slots(name: str, layer: nn.Linear) -> list[_Slot]:
    return [
        _plain(f"{name}.kernel", layer.weight, lambda a: a.T, lambda a: a.T),
        _plain(f"{name}.bias", layer.bias),
    ]


def _conv_slots(name: str, layer: nn.Module) -> list[_Slot]:
    if isinstance(layer, nn.Conv2d):  # (kh, kw, in, out) <-> (out, in, kh, kw)
        to_t, to_c = (lambda a: a.transpose(3, 2, 0, 1)), (lambda a: a.transpose(2, 3, 1, 0))
    else:  # (k, in, out) <-> (out, in, k)
        to_t = to_c = lambda a: a.transpose(2, 1, 0)
    return [_plain(f"{name}.kernel", layer.weight, to_t, to_c), _plain(f"{name}.bias", layer.bias)]


def _norm_slots(name: str, layer: nn.Module) -> list[_Slot]:
    return [_plain(f"{name}.gamma", layer.weight), _plain(f"{name}.beta", layer.bias)]


def _attention_slots(prefix: str, layer: nn.Module, inner: str = "") -> list[_Slot]:
    """The {inner}q/k/v/o projections of an attention layer, in canonical order."""
    return [s for name in "qkvo"
            for s in _linear_slots(f"{prefix}{inner}{name}", getattr(layer, inner + name))]


def _positions(length: int, d: int, layout: str = "interleaved") -> torch.Tensor:
    """Sinusoidal encoding (Vaswani et al.): sin on even and cos on odd features, or with
    layout "halves" (Marian's) all sines first, then all cosines, of the same angles."""
    return torch.from_numpy(sinusoid(length, d, layout))


# ---------------------------------------------------------------------------- models


class _Model(nn.Module):
    """Shared by the families: `slots()` lists the canonical weights in spec order."""

    precision = "fp32"  # the autocast it runs under (build and seq2seq_model set it)

    def slots(self) -> list[_Slot]:
        raise NotImplementedError


class CNN(_Model):
    """Conv-[BN]-ReLU-Pool twice, flatten (channels-last order), dense, head.

    Images use Conv2d and run channels-last: a (N, H, W, C) batch permuted to NCHW already
    has channels-last strides, and with channels-last weights oneDNN convolves it directly.
    In NCHW the first convolution (one input channel) computes in a blocked layout and
    reorders its whole output to NCHW and its gradient back, which costs more than the
    convolution itself. Series and tokens use Conv1d over the length axis.
    """

    def __init__(self, spec: RunSpec):
        super().__init__()
        info, s = spec.info, spec.arch
        self.embed = None
        if info.kind == "tokens":
            self.embed = nn.Embedding(info.vocab, s.embed)
            shape = (info.shape[0], s.embed)
        else:
            shape = info.shape
        self.image = len(shape) == 3
        pad, dims = cnn_geometry(shape)
        conv = nn.Conv2d if self.image else nn.Conv1d
        padding = 1 if pad == "same" else 0
        self.conv1 = conv(shape[-1], s.c1, 3, padding=padding)
        self.conv2 = conv(s.c1, s.c2, 3, padding=padding)
        self.bn1, self.bn2 = _maybe_bn(spec.batchnorm, s.c1), _maybe_bn(spec.batchnorm, s.c2)
        self.pool = nn.MaxPool2d(2) if self.image else nn.MaxPool1d(2)
        self.dense = nn.Linear(math.prod(d[3] for d in dims) * s.c2, s.dense)
        self.head = nn.Linear(s.dense, info.n_outputs)
        self.drop = nn.Dropout(spec.dropout)
        self.channels_last = self.image and CHANNELS_LAST
        if self.channels_last:
            self.to(memory_format=torch.channels_last)

    def forward(self, x):
        if self.embed is not None:
            x = self.embed(x)
        # channels to axis 1; channels-last strides stay as they are
        if self.image:
            x = x.permute(0, 3, 1, 2)
            if not self.channels_last:  # NCHW strides, also where C = 1 leaves them ambiguous
                x = x.clone(memory_format=torch.contiguous_format)
        else:
            x = x.transpose(1, 2)
        # relu(pool(h)) == pool(relu(h)) exactly, values and gradients (ReLU is monotone),
        # and the ReLU then touches a quarter of the elements: 15% faster on one thread.
        x = F.relu(self.pool(self.bn1(self.conv1(x))))
        x = F.relu(self.pool(self.bn2(self.conv2(x))))
        x = x.permute(0, 2, 3, 1) if self.image else x.transpose(1, 2)
        x = self.drop(x.flatten(1))
        x = self.drop(F.relu(self.dense(x)))
        return self.head(x)

    def slots(self):
        out = [_plain("embed", self.embed.weight)] if self.embed is not None else []
        for i, (c, bn) in enumerate(((self.conv1, self.bn1), (self.conv2, self.bn2)), 1):
            out += _conv_slots(f"conv{i}", c)
            if isinstance(bn, BatchNorm):
                out += _norm_slots(f"bn{i}", bn)
        return out + _linear_slots("dense", self.dense) + _linear_slots("head", self.head)


class RNN(_Model):
    """Stacked LSTM or GRU, last hidden state, [BN], dropout, head.

    Images are read row by row (H steps of W*C features). Dropout also acts between layers.
    """

    def __init__(self, spec: RunSpec):
        super().__init__()
        info, s = spec.info, spec.arch
        self.cell = spec.family
        self.embed = nn.Embedding(info.vocab, s.embed) if info.kind == "tokens" else None
        fin = s.embed if info.kind == "tokens" else math.prod(info.shape[1:])
        rnn = nn.LSTM if spec.family == "lstm" else nn.GRU
        self.rnn = rnn(fin, s.hidden, s.layers, batch_first=True,
                       dropout=spec.dropout if s.layers > 1 else 0.0)
        self.hidden, self.layers = s.hidden, s.layers
        if spec.family == "lstm":  # Keras has one bias: keep torch's second at zero
            for i in range(s.layers):
                b = getattr(self.rnn, f"bias_hh_l{i}")
                nn.init.zeros_(b)
                b.requires_grad_(False)
        self.bn = _maybe_bn(spec.batchnorm, s.hidden)
        self.drop = nn.Dropout(spec.dropout)
        self.head = nn.Linear(s.hidden, info.n_outputs)

    def forward(self, x):
        x = self.embed(x) if self.embed is not None else x.flatten(2)
        if torch.is_autocast_enabled(x.device.type) and (
                torch.get_autocast_dtype(x.device.type) == torch.bfloat16):
            # bf16 keeps recurrent layers in fp32, in both frameworks: CUDA autocast would
            # run cuDNN's RNN in fp16 whatever dtype was asked for (AutocastRNN.cpp)
            with torch.autocast(x.device.type, enabled=False):
                out, _ = self.rnn(x.float())
        else:
            out, _ = self.rnn(x)
        return self.head(self.drop(self.bn(out[:, -1])))

    def slots(self):
        h = self.hidden
        if self.cell == "lstm":
            to_t = to_c = lambda a: a.T
        else:  # Keras z,r,h columns <-> torch r,z,n rows
            def to_t(a):
                return np.concatenate([a[..., h:2 * h], a[..., :h], a[..., 2 * h:]], -1).T

            def to_c(a):
                a = a.T
                return np.concatenate([a[..., h:2 * h], a[..., :h], a[..., 2 * h:]], -1)
        out = [_plain("embed", self.embed.weight)] if self.embed is not None else []
        for i in range(self.layers):
            w = {k: getattr(self.rnn, f"{k}_l{i}") for k in ("weight_ih", "weight_hh",
                                                              "bias_ih", "bias_hh")}
            out.append(_plain(f"rnn{i}.kernel", w["weight_ih"], to_t, to_c))
            out.append(_plain(f"rnn{i}.recurrent_kernel", w["weight_hh"], to_t, to_c))
            if self.cell == "lstm":
                out.append(_plain(f"rnn{i}.bias", w["bias_ih"]))
            else:
                out.append(self._gru_bias(f"rnn{i}.bias", w["bias_ih"], w["bias_hh"], to_t))
        if isinstance(self.bn, BatchNorm):
            out += _norm_slots("bn", self.bn)
        return out + _linear_slots("head", self.head)

    @staticmethod
    def _gru_bias(name, b_ih, b_hh, to_t):
        """Keras (2, 3h) rows [input, recurrent], columns z,r,h."""
        def put(a):
            with torch.no_grad():
                b_ih.copy_(_t(to_t(a[0:1]))[:, 0])
                b_hh.copy_(_t(to_t(a[1:2]))[:, 0])

        def get():
            both = torch.stack([b_ih, b_hh]).detach().cpu().numpy()
            h = both.shape[1] // 3
            return np.concatenate([both[:, h:2 * h], both[:, :h], both[:, 2 * h:]], 1)

        return _Slot(name, [b_ih, b_hh], put, get)


def _attend(layer, y, memory=None, mask=None, causal=False, prefix=""):
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


_ACTIVATIONS = {"relu": F.relu, "silu": F.silu}


def _residual(x, branch, norm, post_ln: bool, drop):
    """x + branch, the LayerNorm before the branch (pre-LN) or after the sum (post-LN)."""
    if post_ln:
        return norm(x + drop(branch(x)))
    return x + drop(branch(norm(x)))


class Block(nn.Module):
    """Encoder layer: self-attention, then feed-forward, each a residual branch."""

    def __init__(self, d: int, heads: int, ff: int, dropout: float, post_ln: bool = False,
                 activation: str = "relu"):
        super().__init__()
        self.heads, self.post_ln, self.act = heads, post_ln, _ACTIVATIONS[activation]
        self.ln1 = nn.LayerNorm(d, eps=LAYERNORM_EPS)
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.ln2 = nn.LayerNorm(d, eps=LAYERNORM_EPS)
        self.ff1, self.ff2 = nn.Linear(d, ff), nn.Linear(ff, d)
        self.drop = nn.Dropout(dropout)

    def _ff(self, x):
        return self.ff2(self.act(self.ff1(x)))

    def forward(self, x, mask=None):
        x = _residual(x, lambda h: _attend(self, h, mask=mask), self.ln1, self.post_ln,
                      self.drop)
        return _residual(x, self._ff, self.ln2, self.post_ln, self.drop)

    def slots(self, prefix: str) -> list[_Slot]:
        out = _norm_slots(prefix + "ln1", self.ln1) + _attention_slots(prefix, self)
        out += _norm_slots(prefix + "ln2", self.ln2)
        return out + _linear_slots(prefix + "ff1", self.ff1) + _linear_slots(prefix + "ff2",
                                                                                self.ff2)


class Transformer(_Model):
    """Embedding or projection + sinusoidal positions, pre-LN blocks, LN, mean pool, head."""

    def __init__(self, spec: RunSpec):
        super().__init__()
        info, s = spec.info, spec.arch
        if info.kind == "tokens":
            self.embed, self.proj, length = nn.Embedding(info.vocab, s.d_model), None, info.shape[0]
        else:
            length, feats = transformer_tokens(info)
            self.embed, self.proj = None, nn.Linear(feats, s.d_model)
        self.length = length
        self.register_buffer("pe", _positions(length, s.d_model), persistent=False)
        self.blocks = nn.ModuleList(
            Block(s.d_model, s.heads, s.ff, spec.dropout) for _ in range(s.layers)
        )
        self.ln = nn.LayerNorm(s.d_model, eps=LAYERNORM_EPS)
        self.bn = _maybe_bn(spec.batchnorm, s.d_model)
        self.drop = nn.Dropout(spec.dropout)
        self.head = nn.Linear(s.d_model, info.n_outputs)

    def forward(self, x):
        if self.embed is not None:
            x = self.embed(x)
        else:  # series in patches of consecutive steps, images row by row
            x = self.proj(x.reshape(len(x), self.length, -1))
        x = x + self.pe
        for block in self.blocks:
            x = block(x)
        x = self.ln(x).mean(1)
        return self.head(self.drop(self.bn(x)))

    def slots(self):
        if self.embed is not None:
            out = [_plain("embed", self.embed.weight)]
        else:
            out = _linear_slots("proj", self.proj)
        for i, block in enumerate(self.blocks):
            out += block.slots(f"block{i}.")
        out += _norm_slots("ln", self.ln)
        if isinstance(self.bn, BatchNorm):
            out += _norm_slots("bn", self.bn)
        return out + _linear_slots("head", self.head)


def _split_heads(t, heads: int):
    """(N, L, d) -> (N, heads, L, d / heads)."""
    n, length, d = t.shape
    return t.view(n, length, heads, d // heads).transpose(1, 2)


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


def _pick_cache(cache: dict, rows: torch.Tensor) -> dict:
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
        return _split_heads(self.xk(memory), self.heads), _split_heads(self.xv(memory),
                                                                        self.heads)

    def _self(self, y, cache):
        n, length, d = y.shape
        q, k, v = (_split_heads(p(y), self.heads) for p in (self.q, self.k, self.v))
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
        a = F.scaled_dot_product_attention(_split_heads(self.xq(y), self.heads), k, v,
                                           attn_mask=mask)
        return self.xo(a.transpose(1, 2).reshape(n, length, d))

    def forward(self, x, memory, memory_mask, cache=None):
        x = _residual(x, lambda h: self._self(h, cache), self.ln1, self.post_ln, self.drop)
        x = _residual(x, lambda h: self._cross(h, memory, memory_mask, cache), self.ln2,
                      self.post_ln, self.drop)
        return _residual(x, self._ff, self.ln3, self.post_ln, self.drop)

    def slots(self, prefix: str) -> list[_Slot]:
        out = _norm_slots(prefix + "ln1", self.ln1) + _attention_slots(prefix, self)
        out += _norm_slots(prefix + "ln2", self.ln2) + _attention_slots(prefix, self, "x")
        out += _norm_slots(prefix + "ln3", self.ln3)
        out += _linear_slots(prefix + "ff1", self.ff1)
        return out + _linear_slots(prefix + "ff2", self.ff2)


class Seq2Seq(_Model):
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
        self.register_buffer("pe", _positions(max(arch.max_positions, 64), d, arch.positions),
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
            self.pe = _positions(max(end, 2 * len(self.pe)), self.arch.d_model,
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

    def slots(self):
        out = [_plain("embed", self.embed.weight)]
        for i, block in enumerate(self.enc):
            out += block.slots(f"enc{i}.")
        out += _norm_slots("enc_ln", self.enc_ln) if self.arch.final_ln else []
        for i, block in enumerate(self.dec):
            out += block.slots(f"dec{i}.")
        out += _norm_slots("dec_ln", self.dec_ln) if self.arch.final_ln else []
        return out + [_plain("head.bias", self.head_bias)]


def _seq2seq(spec: RunSpec) -> Seq2Seq:
    return Seq2Seq(seq2seq_arch(spec.size, spec.dataset), spec.dropout)


FAMILY_MODELS = {"cnn": CNN, "lstm": RNN, "gru": RNN, "transformer": Transformer,
                 "seq2seq": _seq2seq}


def build(spec: RunSpec) -> _Model:
    """The model for `spec` on the setup() device, initialised from init_weights(spec)."""
    model = FAMILY_MODELS[spec.family](spec)
    names = [s.name for s in model.slots()]
    want = [n for n, _ in weight_shapes(spec.family, spec.size, spec.dataset, spec.batchnorm)]
    if names != want:  # a model and the spec registry disagree: a bug, not user input
        raise AssertionError(f"torch {spec.family} weights {names} != spec {want}")
    set_weights(model, init_weights(spec))
    model.precision = spec.precision
    return model.to(_device)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def get_weights(model: _Model) -> list[np.ndarray]:
    return [s.get() for s in model.slots()]


def set_weights(model: _Model, weights: list[np.ndarray]) -> None:
    slots = model.slots()
    if len(weights) != len(slots):
        raise ValueError(f"expected {len(slots)} weight arrays, got {len(weights)}")
    for s, w in zip(slots, weights, strict=True):
        w = np.asarray(w)
        if w.shape != s.get().shape:
            raise ValueError(f"weight {s.name}: shape {w.shape} != {s.get().shape}")
        s.put(w)


def snapshot(model: nn.Module) -> dict:
    """A host copy of every tensor of the model's state (weights and batch-norm running
    stats); on the host, as TF's, so that neither framework's device peak holds it."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def restore(model: nn.Module, state: dict) -> None:
    model.load_state_dict(state)


def decayed(model: _Model) -> list[torch.Tensor]:
    """What the L2 penalty and decoupled weight decay act on: every weight of 2 or more
    dimensions in the canonical layout (kernels, embeddings and the GRU's (2, 3h) bias)."""
    return [p for s in model.slots() if len(s.get().shape) >= 2 for p in s.params
            if p.requires_grad]


# ---------------------------------------------------------------------------- data


def to_device(array: np.ndarray) -> torch.Tensor:
    a = np.asarray(array)
    a = a.astype(np.int64 if np.issubdtype(a.dtype, np.integer) else np.float32, copy=False)
    return torch.from_numpy(np.ascontiguousarray(a)).to(_device)


def batch_indices(order: np.ndarray, batch: int) -> list[torch.Tensor]:
    """`order` cut into batches of `batch` row indices, uploaded once (views of one tensor)."""
    return list(to_device(order).view(-1, batch).unbind(0))


def take(tensor: torch.Tensor, idx: np.ndarray) -> torch.Tensor:
    return tensor.index_select(0, torch.as_tensor(idx, dtype=torch.long, device=tensor.device))


def _as_tensor(x) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else to_device(x)


# ---------------------------------------------------------------------------- training


def _optimizer(name: str, params: list[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    opt = OPTIMIZERS[name]
    fused = {"fused": True} if all(p.device.type in ("cpu", "cuda") for p in params) else {}
    if name in ("sgd", "momentum", "nesterov"):
        return torch.optim.SGD(params, lr=lr, momentum=opt.momentum,
                               nesterov=name == "nesterov", **fused)
    if name in ("adam", "adamw"):  # adamw's decay is the decoupled one applied in step()
        return torch.optim.Adam(params, lr=lr, betas=ADAM_BETAS, eps=EPSILON, **fused)
    return torch.optim.RMSprop(params, lr=lr, alpha=RMSPROP_RHO, eps=EPSILON)


_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


class Trainer(DecodesThrough):
    """Owns the optimizer state for one model and spec.

    Mixed precision is torch autocast around every forward pass (training and evaluation):
    the weights and optimizer state stay fp32, outputs are cast to fp32 before the loss,
    and fp16 scales the loss with a GradScaler. With the fused optimizers (SGD, Adam) the
    scaler's inf check stays on the device; RMSprop's reads it back each step."""

    def __init__(self, model: _Model, spec: RunSpec):
        self.model, self.spec = model, spec
        self.binary = spec.info.n_outputs == 1
        self.seq2seq = spec.family == "seq2seq"
        self.smoothing = spec.label_smoothing
        self._decoder: Decoder | None = None
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.decayed = decayed(model)
        self.opt = _optimizer(spec.optimizer, self.params, spec.lr)
        if spec.compile not in (False, True):  # bench.train resolves 'best' first
            raise SpecError(f"compile {spec.compile!r} reached the trainer unresolved")
        self.forward = torch.compile(model) if spec.compile else model
        self.amp = _AUTOCAST.get(spec.precision)
        # Keras's LossScaleOptimizer starts at 2^15 (torch: 2^16); both double every 2000
        self.scaler = (torch.amp.GradScaler(_device.type, init_scale=2.0**15)
                       if spec.precision == "fp16" else None)
        if self.amp is not None:
            self._probe()

    def _probe(self) -> None:
        """One training-mode forward of two samples, so that a precision this device's
        kernels lack (fp16 LSTM on a CPU) fails here in one line rather than mid-run. The
        random state and batch-norm statistics it would move are put back."""
        if not torch.amp.is_autocast_available(_device.type):
            raise SpecError(f"precision {self.spec.precision} needs autocast, which torch "
                            f"lacks on {_device.type}")
        info = self.spec.info
        ids = info.kind in ("tokens", "text")
        x = torch.ones((2, *info.shape), dtype=torch.long if ids else torch.float32,
                       device=_device)
        args = (x, torch.ones((2, info.target_len - 1), dtype=torch.long, device=_device)
                ) if self.seq2seq else (x,)
        buffers = {k: v.clone() for k, v in self.model.state_dict().items()}
        devices = [_device] if _device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            try:
                self._mode(True)
                with self._autocast():  # eager: a compiled model would retrace for batch 2
                    self.model(*args)
            except (RuntimeError, AssertionError) as e:
                raise SpecError(f"precision {self.spec.precision} is not supported by torch "
                                f"for {self.spec.family} on {_device.type}: "
                                f"{str(e).splitlines()[0].split('. ')[0][:160]}") from None
            finally:
                self.model.load_state_dict(buffers)

    def _autocast(self):
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(_device.type, dtype=self.amp)

    def _forward(self, *args) -> torch.Tensor:
        if self.amp is None:
            return self.forward(*args)
        with self._autocast():
            return self.forward(*args).float()

    def _mode(self, train: bool) -> None:
        if self.model.training != train:
            self.model.train(train)

    def _loss(self, out, y):
        if self.seq2seq:  # out: logits of the target positions, y: the whole target
            return F.cross_entropy(out.flatten(0, 1), y[:, 1:].flatten(), ignore_index=PAD,
                                   label_smoothing=self.smoothing)
        if self.binary:
            return F.binary_cross_entropy_with_logits(out[:, 0], y.to(out.dtype))
        return F.cross_entropy(out, y)

    def step(self, xb, yb, lr: float) -> torch.Tensor:
        self._mode(True)
        out = self._forward(xb, yb[:, :-1]) if self.seq2seq else self._forward(xb)
        loss = self._loss(out, yb)
        if self.spec.l2:
            loss = loss + self.spec.l2 * sum(p.square().sum() for p in self.decayed)
        self.opt.zero_grad(set_to_none=True)
        (self.scaler.scale(loss) if self.scaler else loss).backward()
        if self.spec.weight_decay and self.decayed:
            with torch.no_grad():
                torch._foreach_mul_(self.decayed, 1.0 - lr * self.spec.weight_decay)
        for group in self.opt.param_groups:
            group["lr"] = lr
        if self.scaler:
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            self.opt.step()
        return loss.detach()

    @torch.no_grad()
    def infer(self, xb) -> torch.Tensor:
        self._mode(False)
        return self._forward(xb)

    def _batches(self, x, batch):
        n = len(x)
        size = n if batch in ("full", None) else int(batch)
        for i in range(0, n, max(size, 1)):
            yield slice(i, i + size)

    def predict(self, x, batch, y=None) -> np.ndarray:
        """Logits; a seq2seq model's for every target position, teacher-forced on `y`."""
        x = _as_tensor(x)
        if self.seq2seq:
            y = _as_tensor(y)
            self._mode(False)
            with torch.no_grad():
                out = [self._forward(x[s], y[s][:, :-1]) for s in self._batches(x, batch)]
            return torch.cat(out).cpu().numpy()
        return torch.cat([self.infer(x[s]) for s in self._batches(x, batch)]).cpu().numpy()

    def evaluate(self, x, y, batch) -> tuple[float, float]:
        x, y = _as_tensor(x), _as_tensor(y)
        if len(x) == 0:
            return float("nan"), float("nan")
        if self.seq2seq:
            return self._evaluate_seq2seq(x, y, batch)
        total = torch.zeros((), dtype=torch.float64, device=x.device)
        correct = torch.zeros((), dtype=torch.int64, device=x.device)
        with torch.no_grad():
            for s in self._batches(x, batch):
                out, yb = self.infer(x[s]), y[s]
                total += self._loss(out, yb).double() * len(yb)
                pred = (out[:, 0] > 0).long() if self.binary else out.argmax(1)
                correct += (pred == yb).sum()
        return total.item() / len(x), correct.item() / len(x)

    @torch.no_grad()
    def _evaluate_seq2seq(self, x, y, batch) -> tuple[float, float]:
        """(cross-entropy per target token, share of sentences whose every token is the
        argmax given the true prefix). That share is greedy decoding's exact match: greedy
        decoding reproduces a target exactly iff each of its tokens is the argmax after the
        true prefix, so validation gets the decoding metric at the cost of one forward."""
        self._mode(False)
        total = torch.zeros((), dtype=torch.float64, device=x.device)
        tokens = torch.zeros((), dtype=torch.int64, device=x.device)
        exact = torch.zeros((), dtype=torch.int64, device=x.device)
        for s in self._batches(x, batch):
            yb = y[s]
            out, labels = self._forward(x[s], yb[:, :-1]), yb[:, 1:]
            real = labels != PAD
            total += F.cross_entropy(out.flatten(0, 1), labels.flatten(), ignore_index=PAD,
                                     reduction="sum").double()
            tokens += real.sum()
            exact += ((out.argmax(-1) == labels) | ~real).all(1).sum()
        return total.item() / max(tokens.item(), 1), exact.item() / len(x)

    @property
    def decoder(self) -> Decoder:
        """Generation (encode, tile, next_logprobs; bench.generate drives them)."""
        if self._decoder is None:
            self._decoder = Decoder(self.model)
        return self._decoder


class Decoder:
    """bench.generate's three calls over a Seq2Seq model, a trained run's or a pretrained
    Marian's: eval mode, no gradients, the model's precision's autocast.

    A state is (encoder output, source mask, caches). With a cache, the encoder output is
    only needed once, for every decoder layer's cross-attention keys and values, and is
    dropped; each layer's dict then gains its self-attention keys and values step by step.
    """

    def __init__(self, model: Seq2Seq):
        self.model, self.amp = model, _AUTOCAST.get(model.precision)
        self.start, self.eos, self.pad = model.arch.start, model.arch.eos, model.arch.pad

    def _autocast(self):
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(_device.type, dtype=self.amp)

    def held(self):
        """The region of one generate call (bench.generate enters it): one autocast region
        around every step's, so that autocast casts each weight to bf16 / fp16 once per
        call rather than once per step (at opus-mt's shape the output layer's cast alone
        took 3x the step's bf16 product at batch 1)."""
        return self._autocast()

    @torch.no_grad()
    def encode(self, src, cache: bool = True):
        if self.model.training:
            self.model.train(False)
        with self._autocast():
            memory, mask = self.model.encode(_as_tensor(src))
            if not cache:
                return memory, mask, None
            caches = [dict(zip(("xk", "xv"), block.cross_kv(memory), strict=True))
                      for block in self.model.dec]
        return None, mask, caches

    @staticmethod
    def tile(state, idx: np.ndarray):
        """Rows `idx` of a state; the state given is consumed (its caches' buffers are
        reused), as bench.generate replaces it at every call."""
        memory, mask, caches = state
        rows = torch.as_tensor(idx, dtype=torch.long, device=mask.device)

        def pick(t):
            return t.index_select(0, rows)

        return (None if memory is None else pick(memory), pick(mask),
                None if caches is None else [_pick_cache(c, rows) for c in caches])

    @staticmethod
    def _step_input(caches, prefix: np.ndarray) -> torch.Tensor:
        """The decoder's input for the step after `prefix`: with a cache, its last token."""
        if caches is not None:
            past = caches[0]["k"].shape[2] if "k" in caches[0] else 0
            if prefix.shape[1] != past + 1:  # a caller that skipped or repeated a step
                raise ValueError(f"cache holds {past} positions; prefix has "
                                 f"{prefix.shape[1]}, not one more")
            prefix = prefix[:, -1:]
        return _as_tensor(prefix)

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


def seq2seq_model(arch: Seq2SeqArch, weights: list[np.ndarray],
                  precision: str = "fp32") -> Seq2Seq:
    """A Seq2Seq of `arch` holding `weights` (canonical, bench.sizes.seq2seq_shapes), on
    the setup() device, in eval mode: a pretrained model to decode with, under autocast
    for bf16 / fp16."""
    model = Seq2Seq(arch)
    model.precision = precision
    names = [s.name for s in model.slots()]
    if names != [n for n, _ in seq2seq_shapes(arch)]:
        raise AssertionError(f"torch seq2seq weights {names} != the canonical list")
    set_weights(model, weights)
    return model.to(_device).eval()


# ---------------------------------------------------------------------------- device


def scalar(tensor) -> float:
    return float(tensor.item()) if isinstance(tensor, torch.Tensor) else float(tensor)


def sum_scalars(ts: list) -> float:
    """The sum of device scalars as one read: on a GPU it waits for the whole queue (one
    stream, in order), so it also ends a timed segment."""
    return scalar(ts[0] if len(ts) == 1 else torch.stack(ts).sum())


def sync() -> None:
    if _device.type == "cuda":
        torch.cuda.synchronize()


def reset_peak_memory() -> None:
    if _device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()


def peak_memory() -> int | None:
    return int(torch.cuda.max_memory_allocated()) if _device.type == "cuda" else None


def is_oom(exc: BaseException) -> bool:
    """CUDA out of memory, or a host allocation torch or numpy could not make."""
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    msg = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in msg or "can't allocate" in msg)
