"""The training loop, written once against the backend contract (bench.backend_api).

It owns everything both frameworks must do the same way: batch order, learning-rate
schedule, divergence and memory-limit checks, early stopping, pruning hooks, timing
blocks, evaluation and the shape of the run record.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import __version__
from .data import Data
from .measure import (
    BlockTimer,
    Stopwatch,
    host_facts,
    peak_rss_mb,
    release_free_memory,
    reset_peak_rss,
    rss_mb,
)
from .run_record import CurvePoint, Fit, Memory, RunRecord, Speed
from .sizes import flops_per_sample, memory_estimate_mb
from .spec import RunSpec, batch_regime

EVAL_BATCH = 256


class Diverged(Exception):
    pass


class MemoryLimit(Exception):
    pass


def lr_at(spec: RunSpec, step: int, total: int) -> float:
    """Learning rate for optimizer step `step` (0-based) of `total`.

    A linear warm-up over `spec.lr_warmup` steps (the standard Transformer recipe: Adam's
    early moment estimates are noisy) multiplies whichever schedule follows.
    """
    warm = min(1.0, (step + 1) / spec.lr_warmup) if spec.lr_warmup else 1.0
    if spec.lr_schedule == "cosine":
        return warm * spec.lr * 0.5 * (1.0 + math.cos(math.pi * step / max(total, 1)))
    if spec.lr_schedule == "step":
        return warm * spec.lr * (0.1 ** ((step >= total * 0.5) + (step >= total * 0.75)))
    return warm * spec.lr


# Validation accuracy is averaged over this many epochs before the plateau test: on 400
# validation samples one epoch's value moves by a point or two from noise alone.
SMOOTH_EPOCHS = 3
MIN_DELTA = 1e-3  # a smoothed gain below this is not an improvement


class Plateau:
    """Decides when validation accuracy has stopped improving.

    Smoothed accuracy = mean of the last SMOOTH_EPOCHS epochs; the run has converged once
    that has not risen by MIN_DELTA for `patience` epochs and the best raw epoch (whose
    weights are kept for testing) is at least min(SMOOTH_EPOCHS, patience) epochs old, and
    not before `min_epochs`.

    With `watch_loss`, a new lowest validation loss also counts as progress. Exact match,
    a translation's accuracy, stays at 0 for many epochs while the model learns words
    before it gets whole sentences right: flat accuracy alone is not a plateau there.
    """

    def __init__(self, patience: int, min_epochs: int, watch_loss: bool = False):
        self.patience, self.min_epochs, self.watch_loss = patience, min_epochs, watch_loss
        self.history: list[float] = []
        self.best_smooth, self.progress_epoch = -math.inf, 0
        self.best_acc, self.best_epoch = -1.0, 0
        self.best_loss = math.inf

    def update(self, val_acc: float, val_loss: float = math.nan) -> bool:
        """Record one epoch; True when this epoch is the best so far (keep its weights)."""
        self.history.append(val_acc)
        epoch = len(self.history)
        smooth = float(np.mean(self.history[-SMOOTH_EPOCHS:]))
        if smooth > self.best_smooth + MIN_DELTA:
            self.best_smooth, self.progress_epoch = smooth, epoch
        if self.watch_loss and val_loss < self.best_loss * (1 - MIN_DELTA):
            self.best_loss, self.progress_epoch = val_loss, epoch
        if val_acc > self.best_acc:
            self.best_acc, self.best_epoch = val_acc, epoch
            return True
        return False

    @property
    def converged(self) -> bool:
        epoch = len(self.history)
        return bool(self.patience) and epoch >= self.min_epochs and (
            epoch - self.progress_epoch >= self.patience) and (
            epoch - self.best_epoch >= min(SMOOTH_EPOCHS, self.patience))


def effective_batch(spec: RunSpec, n_train: int) -> int:
    return n_train if spec.batch_size == "full" else min(int(spec.batch_size), n_train)


def planned_steps(spec: RunSpec, n_train: int) -> tuple[int, int]:
    """(steps per epoch, total steps) after the optional max_steps cap."""
    per_epoch = max(n_train // effective_batch(spec, n_train), 1)
    total = per_epoch * spec.epochs
    return per_epoch, min(total, spec.max_steps) if spec.max_steps else total


def _train_epoch(backend, trainer, spec: RunSpec, timer: BlockTimer, x_tr, y_tr, rng,
                 step: int, total: int, per_epoch: int, batch: int, epoch: int):
    """One epoch of optimizer steps; returns (steps so far, summed loss, steps this epoch).

    The host reads the device only where `timer` closes a segment, and at the epoch's end:
    one sync drains the queued steps, times them, and checks their summed loss for NaN.
    The permutation goes to the device once per epoch, already cut into batches (slicing a
    TensorFlow tensor per step cost 70 us of Python), so a batch's indices never cross.
    A trainer runs up to its `steps_per_call` steps per call; the timer's first step and
    warm-up still end where they would one step at a time.
    """
    full = batch == len(y_tr)
    order = None if full else backend.batch_indices(
        rng.permutation(len(y_tr))[: per_epoch * batch], batch)
    per_call = 1 if full else trainer.steps_per_call
    losses: list = []  # the epoch's, on the device
    loss_sum, seg_steps, seg_from, i = 0.0, 0, 0, 0
    t = time.perf_counter()
    while i < per_epoch and step < total:
        k = min(per_call, per_epoch - i, total - step, timer.room(seg_steps))
        lrs = [lr_at(spec, step + j, total) for j in range(k)]
        losses.extend(queue_steps(trainer, x_tr, y_tr, order, i, lrs))
        i, step, seg_steps = i + k, step + k, seg_steps + k
        last = i == per_epoch or step >= total
        if last or timer.due(seg_steps, time.perf_counter() - t):
            # The segment's one device->host read. The epoch's last one sums the whole
            # epoch, so that its loss does not depend on where timing cut the segments.
            loss_sum = backend.sum_scalars(losses if last else losses[seg_from:])
            timer.add(time.perf_counter() - t, seg_steps * batch, seg_steps)
            if not math.isfinite(loss_sum):
                raise Diverged(f"loss became {loss_sum} in steps {step - seg_steps + 1}-"
                               f"{step} (epoch {epoch})")
            seg_steps, seg_from = 0, len(losses)
            t = time.perf_counter()
    return step, loss_sum, i


def queue_steps(trainer, x, y, order, start: int, lrs: list) -> list:
    """Queue len(lrs) steps on batches order[start:] (one call, or the trainer's loop); with
    `order` None, full batch: one step on the whole split. Their losses, on the device."""
    if order is None:
        return [trainer.step(x, y, lrs[0])]
    return trainer.steps(x, y, order, start, lrs)


def _log(spec: RunSpec, msg: str) -> None:
    print(f"[{spec.family}/{spec.framework}/{spec.size} s{spec.seed}] {msg}", file=sys.stderr,
          flush=True)


def _infer_throughput(backend, trainer, x_dev, n: int, spec: RunSpec) -> dict:
    """Eval-mode forward passes over test batches, in timed blocks after two warm-up calls.

    Blocks are a tenth of the training blocks' minimum duration: inference is a secondary
    figure, and at the training blocks' length it cost more than the whole final evaluation.
    """
    batch = min(EVAL_BATCH, n)
    starts = list(range(0, n - batch + 1, batch)) or [0]
    batches = [backend.take(x_dev, np.arange(s, s + batch)) for s in starts[:8]]
    for xb in batches[:2]:
        trainer.infer(xb)
    backend.sync()
    timer = BlockTimer(0, max(spec.block_steps // 25, 1), spec.block_seconds / 10)
    i = pending = 0
    t = time.perf_counter()
    while len(timer.blocks) < 3 and i < 100_000:
        trainer.infer(batches[i % len(batches)])
        i += 1
        pending += 1
        if timer.due(pending, time.perf_counter() - t):
            backend.sync()
            timer.add(time.perf_counter() - t, pending * batch, pending)
            pending = 0
            t = time.perf_counter()
    s = timer.rates("infer_samples")
    return {k: s[k] for k in ("infer_samples_per_s", "infer_samples_per_s_min",
                              "infer_samples_per_s_max")} | {"infer_batch": batch}


def run(
    spec: RunSpec,
    data: Data,
    backend,
    on_epoch: Callable[[int, dict], bool | str] | None = None,
    mem_limit_mb: float = 0.0,
    save_weights: str | Path | None = None,
    compile_cache: str | Path | None = None,
) -> RunRecord:
    """Train and measure one run; returns the record (status ok/diverged/oom/pruned).

    `on_epoch(epoch, metrics)` returning True, or a message, stops the run as `pruned`
    (Optuna uses it, and a learning-rate grid's rate that falls behind).
    With `save_weights`, a finished run writes the weights it was tested with there
    (bench.translation.weights_file) and names the file in the record as `weights_file`.
    `compile_cache`: the folder where `compile: best` keeps its choices (bench.compile_choice).
    Exceptions other than divergence and out-of-memory propagate to the caller.

    Four phases, each returning its parts of the record (bench.run_record): prepare,
    fit, test (an ok run only), then the speed and memory figures.
    """
    wall = Stopwatch()
    started = {"run_id": spec.run_id, **spec.to_dict(), "bench_version": __version__,
               **host_facts(), "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    prep, plan = _prepare(spec, data, backend, compile_cache)
    timer = BlockTimer(spec.warmup_steps, spec.block_steps, spec.block_seconds)
    fitted = _fit(spec, prep, backend, timer, wall, on_epoch, mem_limit_mb)
    status, message, tested = fitted.status, fitted.message, {}
    if status == "ok":  # a pruned trial's compute is what pruning saves: it is not tested
        status, message, tested = _test(spec, data, prep, backend, fitted, save_weights)
    memory: Memory = {
        **fitted.memory,
        "peak_rss_mb": peak_rss_mb(),
        "peak_device_mem_mb": fitted.memory.get("peak_device_mem_mb", _device_mb(backend)),
        "wall_s": wall(),
    }
    if status != "ok":
        _log(spec, f"{status}: {message}")
    return {**started, **plan, **fitted.part, **tested, **_speed(spec, data, timer, prep),
            **memory, "status": status, "message": message}


@dataclass
class _Prepared:
    """What the fit and test phases need from the prepare phase."""

    model_spec: RunSpec  # the spec the model is built from: compile `best` resolved
    batch: int
    per_epoch: int
    total: int
    train_flops_per_sample: int  # forward and backward
    splits: dict  # train / val / test: (x, y) on the device


@dataclass
class _Fitted:
    """The fit phase's outcome: its record part, and the model the test phase evaluates."""

    part: Fit
    memory: dict = field(default_factory=dict)  # the Memory fields training determines
    status: str = "ok"
    message: str = ""
    model: object = None
    trainer: object = None
    best: tuple | None = None  # (weights snapshot, val_loss, val_acc) of the best epoch


def _ending(e: Exception, backend) -> tuple[str, str]:
    """(status, message) of a run that raised `e`: divergence and running out of memory are
    outcomes of a run; any other exception propagates."""
    if isinstance(e, Diverged):
        return "diverged", str(e)
    if isinstance(e, MemoryLimit):
        return "oom", str(e)
    if backend.is_oom(e):
        return "oom", f"out of memory: {str(e).splitlines()[0][:300]}"
    raise e


def _prepare(spec: RunSpec, data: Data, backend, compile_cache) -> tuple[_Prepared, dict]:
    """Set up the device (threads, seeds), resolve `compile: best` by its probe, plan the
    batches and put the splits on the device; returns the plan, and the record's Plan part
    with the device fields of its Host part."""
    dev = backend.setup(spec.threads, spec.device, spec.seed, tf32=spec.tf32,
                        conv_autotune=spec.conv_autotune)
    part: dict = {**dev, "device_requested": spec.device}  # `device`: what auto resolved to
    model_spec = spec
    if spec.compile == "best":
        from .compile_choice import choose

        t_probe = Stopwatch()
        probe = choose(spec, data, backend, dev["device_name"], compile_cache)
        part.update(compile_used=probe["compiled"], compile_probe=probe,
                    compile_probe_s=t_probe())
        model_spec = spec.with_(compile=probe["compiled"])
        # Seeded again: the probe's random draws (dropout) must not reach the run, which
        # then equals the run of the chosen mode.
        backend.setup(spec.threads, spec.device, spec.seed, tf32=spec.tf32,
                      conv_autotune=spec.conv_autotune)
    else:
        part["compile_used"] = bool(spec.compile)
    part.update(data.sizes())
    n_train = len(data.y_train)
    batch = effective_batch(spec, n_train)
    per_epoch, total = planned_steps(spec, n_train)
    flops = flops_per_sample(spec.family, spec.size, spec.dataset)
    part.update(
        steps_per_call=1 if batch == n_train else backend.STEPS_PER_CALL,
        batch_size_effective=batch,
        batch_regime=batch_regime(spec.batch_size),
        steps_per_epoch=per_epoch,
        flops_per_sample=flops,
        train_flops_per_sample=3 * flops,
        n_classes=spec.info.n_classes,
        model_mem_est_mb=memory_estimate_mb(spec.family, spec.size, spec.dataset, batch,
                                            spec.optimizer, spec.batchnorm),
    )
    splits = {
        k: tuple(backend.to_device(getattr(data, f"{v}_{k}")) for v in "xy")
        for k in ("train", "val", "test")
    }
    return _Prepared(model_spec, batch, per_epoch, total, 3 * flops, splits), part


def _fit(spec: RunSpec, prep: _Prepared, backend, timer: BlockTimer, wall: Stopwatch,
         on_epoch, mem_limit_mb: float) -> _Fitted:
    """Build the model and train it until its plateau, its cap or a pruner stops it,
    validating after every epoch and keeping the best epoch's weights; measures the
    training phase's memory. Divergence and out-of-memory end it with their status."""
    curve: list[CurvePoint] = []
    fitted = _Fitted(part={"curve": curve})
    # The model's memory is what the run adds above this baseline: the framework runtime
    # and the data on the device are already in it (they are the same for every size).
    release_free_memory()
    rss_start = fitted.memory["rss_start_mb"] = rss_mb()
    reset_peak_rss()
    backend.reset_peak_memory()
    device_base_mb = _device_mb(backend) or 0.0  # the data, already on the device
    build_t = Stopwatch()
    stop = Plateau(spec.patience, spec.min_epochs, watch_loss=spec.family == "seq2seq")
    batch, total = prep.batch, prep.total
    try:
        model = fitted.model = backend.build(prep.model_spec)
        fitted.part["params"] = backend.n_params(model)
        trainer = fitted.trainer = backend.Trainer(model, prep.model_spec)
        fitted.part["build_s"] = build_t()
        rng = np.random.default_rng([spec.seed, 2])
        step = 0
        x_tr, y_tr = prep.splits["train"]
        for epoch in range(1, spec.epochs + 1):
            step, loss_sum, epoch_steps = _train_epoch(
                backend, trainer, spec, timer, x_tr, y_tr, rng, step, total, prep.per_epoch,
                batch, epoch)
            val_loss, val_acc = trainer.evaluate(*prep.splits["val"], EVAL_BATCH)
            if not math.isfinite(val_loss):
                raise Diverged(f"validation loss became {val_loss} after epoch {epoch}")
            point: CurvePoint = {
                "epoch": epoch, "step": step, "samples": step * batch,
                "train_loss": loss_sum / max(epoch_steps, 1), "val_loss": val_loss,
                "val_acc": val_acc, "elapsed_s": wall()}
            curve.append(point)
            rate = timer.summary()["samples_per_s"]
            _log(spec, f"epoch {epoch}/{spec.epochs} loss {point['train_loss']:.4f} "
                 f"val_acc {val_acc:.4f}" + (f" {rate:,.0f} samples/s" if rate else ""))
            if mem_limit_mb and _mem_used_mb(backend) > mem_limit_mb:
                raise MemoryLimit(
                    f"peak memory {_mem_used_mb(backend):.0f} MB exceeded the limit of "
                    f"{mem_limit_mb:.0f} MB"
                )
            if epoch == 1 and _device_mb(backend) is not None and spec.epochs > 1:
                # Epoch 1 holds each framework's one-off device allocations (convolution
                # autotuning's workspaces, first-call caches), which the two search for
                # differently: the model's peak is taken from epoch 2 on.
                fitted.memory["first_epoch_peak_device_mem_mb"] = _device_mb(backend)
                backend.reset_peak_memory()
            if stop.update(val_acc, val_loss):
                fitted.best = None  # one copy at a time: the old one goes before the new
                fitted.best = (backend.snapshot(model), val_loss, val_acc)
            why = on_epoch(epoch, point) if on_epoch is not None else False
            if why:
                fitted.status = "pruned"
                fitted.message = why if isinstance(why, str) else f"pruned after epoch {epoch}"
                break
            if stop.converged:
                fitted.message = (f"converged after epoch {epoch} (best epoch "
                                  f"{stop.best_epoch}; no gain for {spec.patience} epochs)")
                break
            if step >= total:
                break
        fitted.part.update(
            epochs_run=len(curve), steps_run=step, best_val_acc=stop.best_acc,
            best_epoch=stop.best_epoch, converged=stop.converged,
            stop_reason="pruned" if fitted.status == "pruned" else
            ("plateau" if stop.converged else "cap"),
            samples_seen=step * batch, flops_spent=prep.train_flops_per_sample * step * batch)
        # The training phase's peak: testing, inference timing and test_long's upload follow.
        peak = (_device_mb(backend) if len(curve) > 1 else
                fitted.memory.get("first_epoch_peak_device_mem_mb", _device_mb(backend)))
        fitted.memory.update(peak_device_mem_mb=peak,
                             model_mem_mb=_model_mem_mb(peak, rss_start, device_base_mb))
    except Exception as e:  # noqa: BLE001 - _ending re-raises all but the run's outcomes
        fitted.status, fitted.message = _ending(e, backend)
    return fitted


def _test(spec: RunSpec, data: Data, prep: _Prepared, backend, fitted: _Fitted,
          save_weights) -> tuple[str, str, dict]:
    """Test at the weights validation chose, not at wherever training stopped; score a
    training subset; keep the weights if asked; time inference (a classifier) or evaluate
    translation. Returns (status, message, the Test part with Inference or Translation)."""
    part: dict = {}
    model, trainer = fitted.model, fitted.trainer
    try:
        snap, part["val_loss"], part["val_acc"] = fitted.best
        backend.restore(model, snap)
        part["eval_weights"] = f"best validation epoch ({fitted.part['best_epoch']})"
        part["test_loss"], part["test_acc"] = trainer.evaluate(*prep.splits["test"],
                                                               EVAL_BATCH)
        x_tr, y_tr = prep.splits["train"]
        x_sub, y_sub = _train_subset(backend, x_tr, y_tr, len(data.y_test))
        part["train_loss"], part["train_acc"] = trainer.evaluate(x_sub, y_sub, EVAL_BATCH)
        part["train_eval_samples"] = len(y_sub)
        if save_weights:
            from .translation.weights_file import save

            part["weights_file"] = save(save_weights, spec, backend.get_weights(model)).name
        if spec.family == "seq2seq":
            part.update(_translation(backend, trainer, data, prep.splits, spec))
        else:
            part.update(_infer_throughput(backend, trainer, prep.splits["test"][0],
                                          len(data.y_test), spec))
    except Exception as e:  # noqa: BLE001 - _ending re-raises all but the run's outcomes
        return (*_ending(e, backend), part)
    return "ok", fitted.message, part


def _speed(spec: RunSpec, data: Data, timer: BlockTimer, prep: _Prepared) -> Speed:
    part = timer.rates("train_samples")
    if part.get("timed_seconds"):
        rate = part["train_samples_per_s"] or 0
        part["train_flops_per_s"] = prep.train_flops_per_sample * rate
        if spec.family == "seq2seq":  # target tokens the loss is taken over, EOS included
            per = float((np.asarray(data.y_train)[:, 1:] != 0).sum(1).mean())
            part["train_tokens_per_s"] = per * rate
    return part


def _translation(backend, trainer, data: Data, splits: dict, spec: RunSpec) -> dict:
    from .translation import seq2seq_eval, text_pairs

    tests = {"": (splits["test"][0], data.x_test, data.y_test)}
    if data.y_test_long is not None:
        tests["_long"] = (backend.to_device(data.x_test_long), data.x_test_long,
                          data.y_test_long)
    vocab = text_pairs.vocabulary(text_pairs.PAIRS[spec.dataset])
    return seq2seq_eval.evaluate(trainer, tests, spec, vocab)


PRIME_ROWS = 64


def prime_runtime(spec: RunSpec, data: Data, backend) -> None:
    """A few steps, an evaluation and an inference of `spec`'s model, thrown away.

    On the first PRIME_ROWS rows of each split: the runtime's start-up (kernels, thread
    pools, first traces) is paid once per job, and a translation model's decoding of both
    whole test sets would cost more than its training steps."""
    # `best` is not probed here: 64 rows would decide it for the whole process.
    tiny = spec.with_(epochs=1, max_steps=3, patience=0, min_epochs=1, warmup_steps=0,
                      block_steps=1, block_seconds=0.0,
                      compile=False if spec.compile == "best" else spec.compile)
    cut = {k: (None if v is None else v[:PRIME_ROWS]) for k, v in vars(data).items()
           if k.startswith(("x_", "y_"))}
    run(tiny, Data(data.name, **cut), backend)


def _train_subset(backend, x, y, n_eval: int):
    """n_eval training samples (the test set's size), evenly spaced over the training set.

    Scoring the whole training set cost a third of an epoch per run; a strided subset
    estimates the train/test gap to the same precision as the test accuracy itself.
    """
    n = len(y)
    if n_eval <= 0 or n <= n_eval:
        return x, y
    idx = (np.arange(n_eval) * n) // n_eval
    return backend.take(x, idx), backend.take(y, idx)


def _device_mb(backend) -> float | None:
    peak = backend.peak_memory()
    return None if peak is None else peak / 2**20


def _model_mem_mb(dev: float | None, baseline_mb: float, device_base_mb: float) -> float:
    """Peak memory of the training phase above the pre-build baseline: on a GPU the device
    allocator's peak `dev` less what was allocated at its reset (the data), on a CPU peak
    RSS less the RSS at that moment. Validation passes in the loop are part of the phase."""
    if dev is not None:
        return max(dev - device_base_mb, 0.0)
    return max(peak_rss_mb() - baseline_mb, 0.0)


def _mem_used_mb(backend) -> float:
    dev = _device_mb(backend)
    return dev if dev is not None else peak_rss_mb()
