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
from .spec import RunSpec, batch_regime, flops_per_sample

EVAL_BATCH = 256


class Diverged(Exception):
    pass


class MemoryLimit(Exception):
    pass


def lr_at(spec: RunSpec, step: int, total: int) -> float:
    """Learning rate for optimizer step `step` (0-based) of `total`."""
    if spec.lr_schedule == "cosine":
        return spec.lr * 0.5 * (1.0 + math.cos(math.pi * step / max(total, 1)))
    if spec.lr_schedule == "step":
        return spec.lr * (0.1 ** ((step >= total * 0.5) + (step >= total * 0.75)))
    return spec.lr


def effective_batch(spec: RunSpec, n_train: int) -> int:
    return n_train if spec.batch_size == "full" else min(int(spec.batch_size), n_train)


def planned_steps(spec: RunSpec, n_train: int) -> tuple[int, int]:
    """(steps per epoch, total steps) after the optional max_steps cap."""
    per_epoch = max(n_train // effective_batch(spec, n_train), 1)
    total = per_epoch * spec.epochs
    return per_epoch, min(total, spec.max_steps) if spec.max_steps else total


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
    i = 0
    while len(timer.blocks) < 3 and i < 100_000:
        t = time.perf_counter()
        trainer.infer(batches[i % len(batches)])
        backend.sync()
        timer.add(time.perf_counter() - t, batch)
        i += 1
    s = timer.summary()
    return {
        "infer_samples_per_s": s["train_samples_per_s"],
        "infer_samples_per_s_min": s["train_samples_per_s_min"],
        "infer_samples_per_s_max": s["train_samples_per_s_max"],
        "infer_batch": batch,
    }


def run(
    spec: RunSpec,
    data: Data,
    backend,
    on_epoch: Callable[[int, dict], bool] | None = None,
    mem_limit_mb: float = 0.0,
) -> dict:
    """Train and measure one run; returns the record (status ok/diverged/oom/pruned).

    `on_epoch(epoch, metrics)` returning True stops the run as `pruned` (Optuna uses it).
    Exceptions other than divergence and out-of-memory propagate to the caller.
    """
    wall = Stopwatch()
    record: dict = {"run_id": spec.run_id, **spec.to_dict(), "bench_version": __version__}
    record.update(host_facts())
    record["started_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    dev = backend.setup(spec.threads, spec.device, spec.seed)
    record.update(dev)
    record.update(data.sizes())
    n_train = len(data.y_train)
    batch = effective_batch(spec, n_train)
    per_epoch, total = planned_steps(spec, n_train)
    record.update(
        batch_size_effective=batch,
        batch_regime=batch_regime(spec.batch_size),
        steps_per_epoch=per_epoch,
        flops_per_sample=flops_per_sample(spec.family, spec.size, spec.dataset),
    )
    record["train_flops_per_sample"] = 3 * record["flops_per_sample"]
    status, message = "ok", ""
    curve: list[dict] = []
    timer = BlockTimer(spec.warmup_steps, spec.block_steps, spec.block_seconds)
    release_free_memory()
    record["rss_start_mb"] = rss_mb()
    reset_peak_rss()
    backend.reset_peak_memory()
    build_t = Stopwatch()
    try:
        model = backend.build(spec)
        record["params"] = backend.n_params(model)
        trainer = backend.Trainer(model, spec)
        splits = {
            k: tuple(backend.to_device(getattr(data, f"{v}_{k}")) for v in "xy")
            for k in ("train", "val", "test")
        }
        record["build_s"] = build_t()
        rng = np.random.default_rng([spec.seed, 2])
        step = 0
        best_acc, best_epoch = -1.0, 0
        x_tr, y_tr = splits["train"]
        for epoch in range(1, spec.epochs + 1):
            order = rng.permutation(n_train)
            losses = []
            for i in range(per_epoch):
                if step >= total:
                    break
                t = time.perf_counter()
                idx = order[i * batch : (i + 1) * batch]
                if batch == n_train:
                    xb, yb = x_tr, y_tr
                else:
                    xb, yb = backend.take(x_tr, idx), backend.take(y_tr, idx)
                loss = backend.scalar(trainer.step(xb, yb, lr_at(spec, step, total)))
                timer.add(time.perf_counter() - t, len(idx))
                step += 1
                if not math.isfinite(loss):
                    raise Diverged(f"loss became {loss} at step {step} (epoch {epoch})")
                losses.append(loss)
            val_loss, val_acc = trainer.evaluate(*splits["val"], EVAL_BATCH)
            if not math.isfinite(val_loss):
                raise Diverged(f"validation loss became {val_loss} after epoch {epoch}")
            point = {"epoch": epoch, "step": step, "train_loss": float(np.mean(losses)),
                     "val_loss": val_loss, "val_acc": val_acc, "elapsed_s": wall()}
            curve.append(point)
            rate = timer.summary()["train_samples_per_s"]
            _log(spec, f"epoch {epoch}/{spec.epochs} loss {point['train_loss']:.4f} "
                 f"val_acc {val_acc:.4f}" + (f" {rate:,.0f} samples/s" if rate else ""))
            if mem_limit_mb and _mem_used_mb(backend) > mem_limit_mb:
                raise MemoryLimit(
                    f"peak memory {_mem_used_mb(backend):.0f} MB exceeded the limit of "
                    f"{mem_limit_mb:.0f} MB"
                )
            if val_acc > best_acc:
                best_acc, best_epoch = val_acc, epoch
            if on_epoch is not None and on_epoch(epoch, point):
                status, message = "pruned", f"pruned after epoch {epoch}"
                break
            if spec.patience and epoch - best_epoch >= spec.patience:
                message = f"early stop after epoch {epoch} (best epoch {best_epoch})"
                break
            if step >= total:
                break
        record.update(epochs_run=len(curve), steps_run=step, best_val_acc=best_acc,
                      best_epoch=best_epoch)
        if status != "pruned":  # a pruned trial's compute is what pruning saves: stop here
            # The last epoch's validation already scored the final weights.
            record["val_loss"], record["val_acc"] = curve[-1]["val_loss"], curve[-1]["val_acc"]
            record["test_loss"], record["test_acc"] = trainer.evaluate(*splits["test"], EVAL_BATCH)
            x_sub, y_sub = _train_subset(backend, x_tr, y_tr, len(data.y_test))
            record["train_loss"], record["train_acc"] = trainer.evaluate(x_sub, y_sub, EVAL_BATCH)
            record["train_eval_samples"] = len(y_sub)
            x_test = splits["test"][0]
            record.update(_infer_throughput(backend, trainer, x_test, len(data.y_test), spec))
    except Diverged as e:
        status, message = "diverged", str(e)
    except MemoryLimit as e:
        status, message = "oom", str(e)
    except Exception as e:  # noqa: BLE001 - only out-of-memory is an outcome; the rest re-raise
        if not backend.is_oom(e):
            raise
        status, message = "oom", f"out of memory: {str(e).splitlines()[0][:300]}"
    record.update(timer.summary())
    if record.get("timed_seconds"):
        record["train_flops_per_s"] = (
            record["train_flops_per_sample"] * (record["train_samples_per_s"] or 0)
        )
    record.update(
        status=status,
        message=message,
        curve=curve,
        peak_rss_mb=peak_rss_mb(),
        peak_device_mem_mb=_device_mb(backend),
        wall_s=wall(),
    )
    if status != "ok":
        _log(spec, f"{status}: {message}")
    return record


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


def _mem_used_mb(backend) -> float:
    dev = _device_mb(backend)
    return dev if dev is not None else peak_rss_mb()
