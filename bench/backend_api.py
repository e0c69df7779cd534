"""The contract `torch_backend` and `tf_backend` both fulfil (`Backend`, `Trainer`), and how
to pick one.

`bench.train` is written once against this contract; tests/test_backend_api.py checks that
both modules satisfy it, name for name and parameter for parameter. Framework-neutral: the
protocols name tensors `Any` (a torch.Tensor or a tf.Tensor on the run's device).

Models (counts, order and layout must match sizes.weight_shapes; trainable parameters must
equal sizes.param_count). Inputs: images (N,H,W,C) float32, series (N,L,C) float32, tokens
(N,L) int64, labels int64 (N,). One output logit means binary (sigmoid cross-entropy),
otherwise softmax cross-entropy over spec.info.n_outputs logits.

- What each family computes (layer order, weight names and layout) is stated once, in its
  folder's spec.py (bench/models/<family>/spec.py); both frameworks' models beside it
  follow it.
- BatchNorm: eps registry.BATCHNORM_EPS, running averages with momentum
  registry.BATCHNORM_MOMENTUM in Keras's sense (torch: 1 - that); LayerNorm eps
  registry.LAYERNORM_EPS. Dropout only in the training step.
- build(spec) starts from bench.init.init_weights(spec): both frameworks start from the same
  arrays for a seed.

Training (one meaning in both frameworks):

- Loss: the batch mean of the cross-entropy; seq2seq, per non-PAD target token, with label
  smoothing as torch's.
- L2 (spec.l2): l2 * sum(w^2) over the trainable weights of 2 or more dimensions (kernels,
  recurrent kernels, embeddings), added to the loss inside the step.
- Decoupled weight decay (spec.weight_decay): w <- w - lr * weight_decay * w on those
  weights in every step, before the optimizer's update (torch AdamW's order), for any
  optimizer; written out, not the frameworks' own arguments.
- Optimizers (registry.OPTIMIZERS): sgd p -= lr g; momentum v = 0.9 v + g, p -= lr v; nesterov
  as torch's; adam/adamw with registry.ADAM_BETAS and eps registry.EPSILON added to sqrt(v_hat);
  rmsprop rho registry.RMSPROP_RHO, eps outside the square root, no momentum, not centred.
- The caller gives the learning rate per step (bench.train.lr_at); setting it must not
  retrace or recompile. Batches vary in size (full batch, partial evaluation batches):
  one trace for all.
- spec.compile: torch.compile; TensorFlow jit_compile=True (without it: eager torch, TF
  graph mode). spec.precision: fp32, or mixed bf16/fp16 with fp32 weights and loss (torch
  autocast + GradScaler, Keras mixed policies + LossScaleOptimizer).
- Memory: the device allocator's peak since reset_peak_memory(); None on a CPU.

A backend must not slow its framework down: no host syncs inside step(), data stays on the
device, batches are gathered there (tests/test_backend.py; `python -m bench speed`).
"""

from __future__ import annotations

import importlib
import inspect
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .spec import RunSpec

MODULES = {"torch": "bench.torch_backend", "tf": "bench.tf_backend"}


@runtime_checkable
class Trainer(Protocol):
    """Owns the optimizer state and compiled functions of one model and spec."""

    def step(self, xb: Any, yb: Any, lr: float) -> Any:
        """One optimizer step at learning rate `lr` (the L2 penalty and the decoupled weight
        decay included); the mean batch loss, data + penalty, as a device scalar. No sync."""

    steps_per_call: int  # the most steps one steps() call runs

    def steps(self, x: Any, y: Any, order: Any, start: int, lrs: list[float]) -> list:
        """len(lrs) steps, step j on the rows order[start + j] of x and y (order: what
        batch_indices gave) at rate lrs[j]; their losses as device scalars, one per step or
        one summed over the call (the caller sums them). No sync."""

    def evaluate(self, x: Any, y: Any, batch: int) -> tuple[float, float]:
        """Eval mode, data loss only: (mean loss, accuracy) as python floats. seq2seq: loss
        per target token and the share of sentences greedy decoding gets exactly."""

    def predict(self, x: Any, batch: int, y: Any = None) -> np.ndarray:
        """Eval-mode logits (seq2seq: every target position, teacher-forced on `y`)."""

    def infer(self, xb: Any) -> Any:
        """One eval-mode forward pass, left on the device (inference timing)."""

    def encode(self, src: Any, cache: bool = True) -> Any:
        """seq2seq: the decoder's state for source rows (bench.translation.generate drives it); with
        `cache`, it keeps each decoder layer's keys and values, so that a step reads only
        the new token."""

    def tile(self, state: Any, idx: np.ndarray) -> Any:
        """seq2seq: rows `idx` of a state (beams, finished rows leaving the batch); the
        state given may be consumed (its buffers reused)."""

    def next_logprobs(self, state: Any, prefix: np.ndarray) -> np.ndarray:
        """seq2seq: log-probabilities (rows, vocab) of the token after each prefix row."""

    def next_top(self, state: Any, prefix: np.ndarray, k: int, banned: Any = (),
                 normalised: Any = True) -> tuple[np.ndarray, np.ndarray]:
        """seq2seq: each prefix row's k most likely next tokens, best first, as
        (log-probabilities, ids), both (rows, k), with `banned` ids at -inf after the
        softmax; not `normalised`, logits may stand in for log-probabilities."""


@runtime_checkable
class Backend(Protocol):
    """What a backend module exposes. `NAME` is "torch" or "tf"."""

    NAME: str
    STEPS_PER_CALL: int  # the most training steps its Trainer.steps runs per call

    def setup(self, threads: int, device: str = "auto", seed: int = 0, tf32: bool = False,
              conv_autotune: bool = True) -> dict:
        """Before any other framework work: pin threads (intra `threads`, inter-op 1), seed,
        resolve the device (auto|cpu|cuda; cuda without a GPU raises SpecError), set the
        GPU math settings. Returns device, device_name, framework_version."""

    def build(self, spec: RunSpec) -> Any:
        """The model for `spec`, initialised from bench.init.init_weights(spec)."""

    def n_params(self, model: Any) -> int:
        """Trainable parameters, counted by the framework (must equal sizes.param_count)."""

    def get_weights(self, model: Any) -> list[np.ndarray]:
        """The weights in canonical layout and order (sizes.weight_shapes)."""

    def set_weights(self, model: Any, weights: list[np.ndarray]) -> None:
        """Load canonical weights."""

    def snapshot(self, model: Any) -> Any:
        """A host copy of every variable (weights and normalisation statistics)."""

    def restore(self, model: Any, state: Any) -> None:
        """Put a snapshot back (the loop tests the best validation epoch)."""

    def Trainer(self, model: Any, spec: RunSpec) -> Trainer:  # noqa: N802 - a class there
        """The model's trainer."""

    def to_device(self, array: np.ndarray) -> Any:
        """One whole array on the device: floats float32, integers int64."""

    def batch_indices(self, order: np.ndarray, batch: int) -> Any:
        """`order` (a permutation, a multiple of `batch` long) cut into batches of row
        indices on the device, uploaded at once: one epoch's batches."""

    def take(self, tensor: Any, idx: Any) -> Any:
        """Rows `idx` (a numpy or device index array) of a device tensor, gathered there."""

    def scalar(self, tensor: Any) -> float:
        """A device scalar as a python float (a sync)."""

    def sum_scalars(self, ts: list) -> float:
        """The sum of device scalars as one read, after all queued device work: the one
        sync of a timed segment."""

    def sync(self) -> None:
        """Wait for queued device work."""

    def reset_peak_memory(self) -> None:
        """Start a new device-memory peak (GPU only)."""

    def peak_memory(self) -> int | None:
        """Peak device bytes since reset_peak_memory(); None on a CPU."""

    def is_oom(self, exc: BaseException) -> bool:
        """Whether `exc` means the device or host ran out of memory."""

    def seq2seq_model(self, arch: Any, weights: list[np.ndarray], precision: str = "fp32") -> Any:
        """An encoder-decoder of a Seq2SeqArch (bench.models.seq2seq.spec) holding canonical
        `weights` (seq2seq_shapes), a pretrained checkpoint's (bench.translation.marian), that
        decodes in `precision` (fp32 weights; products in bf16 / fp16 as in training)."""

    def Decoder(self, model: Any) -> Any:  # noqa: N802 - a class there
        """encode / tile / next_logprobs over a seq2seq model, for bench.translation.generate; names
        the arch's `start`, `eos` and `pad` tokens."""


def _params(fn) -> list[tuple[str, object]]:
    sig = inspect.signature(fn)
    return [(p.name, p.default) for p in sig.parameters.values() if p.name != "self"]


def conformance(module: ModuleType) -> list[str]:
    """What `module` lacks or names differently against `Backend` and its `Trainer`
    (members, parameter names and defaults); empty when it fulfils the contract."""
    problems = []
    for proto, obj, where in ((Backend, module, module.__name__),
                              (Trainer, getattr(module, "Trainer", None), "Trainer")):
        members = {n for n in vars(proto) if not n.startswith("_")}
        for name in sorted(members | set(proto.__annotations__)):
            theirs = getattr(obj, name, None)
            if theirs is None:
                problems.append(f"{where}.{name} is missing")
                continue
            ours = getattr(proto, name, None)
            if callable(ours) and callable(theirs):
                target = theirs.__init__ if inspect.isclass(theirs) else theirs
                want = _params(ours)
                got = _params(target)
                if got != want:
                    problems.append(f"{where}.{name}{tuple(n for n, _ in got)} differs from "
                                    f"the contract's {tuple(n for n, _ in want)} or its "
                                    f"defaults")
    return problems


def load_backend(framework: str) -> ModuleType:
    """Import one backend; a process must never import both frameworks."""
    return importlib.import_module(MODULES[framework])
