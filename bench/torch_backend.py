"""PyTorch implementation of the backend contract in `bench.backend_api`.

The models live in their families' folders (bench/models/<family>/torch.py, shared layers
in bench/models/torch_layers.py); this module builds them, trains them and decodes with
them. Models take inputs in the datasets' own layout (images N,H,W,C; series N,L,C; tokens
N,L) and exchange weights in the canonical Keras layout of `bench.sizes.weight_shapes`, so
a torch run and a tf run of one spec start from the same arrays (`bench.init.init_weights`).

Conventions of the PyTorch models, which the Keras ones must honour too:

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

from . import models  # noqa: E402
from .init import init_weights  # noqa: E402
from .measure import cpu_name  # noqa: E402
from .models.cnn.torch import CHANNELS_LAST  # noqa: E402
from .models.seq2seq.spec import Seq2SeqArch, seq2seq_shapes  # noqa: E402
from .models.seq2seq.torch import Decoder, Seq2Seq  # noqa: E402
from .models.torch_layers import AUTOCAST, Model  # noqa: E402
from .registry import (  # noqa: E402
    ADAM_BETAS,
    DEVICES,
    EPSILON,
    OPTIMIZERS,
    RMSPROP_RHO,
    SpecError,
)
from .sizes import weight_shapes  # noqa: E402
from .spec import RunSpec  # noqa: E402
from .translation.generate import DecodesThrough  # noqa: E402
from .translation.text_pairs import PAD  # noqa: E402

NAME = "torch"
STEPS_PER_CALL = 1  # eager: each step is its own call whatever the grouping

_device = torch.device("cpu")
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


# ---------------------------------------------------------------------------- models


def build(spec: RunSpec) -> Model:
    """The model for `spec` on the setup() device, initialised from init_weights(spec)."""
    model = models.framework_module(spec.family, "torch").model(spec)
    names = [s.name for s in model.bindings()]
    want = [n for n, _ in weight_shapes(spec.family, spec.size, spec.dataset, spec.batchnorm)]
    if names != want:  # a model and the spec registry disagree: a bug, not user input
        raise AssertionError(f"torch {spec.family} weights {names} != spec {want}")
    set_weights(model, init_weights(spec))
    model.precision = spec.precision
    return model.to(_device)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def get_weights(model: Model) -> list[np.ndarray]:
    return [s.get() for s in model.bindings()]


def set_weights(model: Model, weights: list[np.ndarray]) -> None:
    bindings = model.bindings()
    if len(weights) != len(bindings):
        raise ValueError(f"expected {len(bindings)} weight arrays, got {len(weights)}")
    for s, w in zip(bindings, weights, strict=True):
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


def decayed(model: Model) -> list[torch.Tensor]:
    """What the L2 penalty and decoupled weight decay act on: every weight of 2 or more
    dimensions in the canonical layout (kernels, embeddings and the GRU's (2, 3h) bias)."""
    return [p for s in model.bindings() if len(s.get().shape) >= 2 for p in s.params
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


class Trainer(DecodesThrough):
    """Owns the optimizer state for one model and spec.

    Mixed precision is torch autocast around every forward pass (training and evaluation):
    the weights and optimizer state stay fp32, outputs are cast to fp32 before the loss,
    and fp16 scales the loss with a GradScaler. With the fused optimizers (SGD, Adam) the
    scaler's inf check stays on the device; RMSprop's reads it back each step."""

    steps_per_call = 1  # STEPS_PER_CALL

    def __init__(self, model: Model, spec: RunSpec):
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
        self.amp = AUTOCAST.get(spec.precision)
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

    def steps(self, x, y, order, start: int, lrs) -> list[torch.Tensor]:
        """len(lrs) steps on the batches order[start:]; each step's loss, on the device."""
        return [self.step(take(x, order[start + j]), take(y, order[start + j]), lr)
                for j, lr in enumerate(lrs)]

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
        """Generation (encode, tile, next_logprobs; bench.translation.generate drives them)."""
        if self._decoder is None:
            self._decoder = Decoder(self.model)
        return self._decoder


def seq2seq_model(arch: Seq2SeqArch, weights: list[np.ndarray],
                  precision: str = "fp32") -> Seq2Seq:
    """A Seq2Seq of `arch` holding `weights` (canonical: seq2seq_shapes), on
    the setup() device, in eval mode: a pretrained model to decode with, under autocast
    for bf16 / fp16."""
    model = Seq2Seq(arch)
    model.precision = precision
    names = [s.name for s in model.bindings()]
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
