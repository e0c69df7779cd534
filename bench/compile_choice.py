"""`compile: best`: per framework and model, train compiled (torch.compile, XLA) or not,
whichever is faster in a short timed probe.

Neither mode wins everywhere: on one CPU XLA doubled TensorFlow's GRU and halved its seed
CNN, and torch.compile was slower than eager on every model (README "Compilation"). So the
choice is measured, per model and setting, once: the probe trains a throwaway copy of the
model a few steps in each mode and keeps both rates and what the first steps cost; the
rates are cached per process and, given a folder, on disk (one small JSON per key, written
atomically), so that a study pays the probe once per model. Each run then decides from
them and its own expected length (`decide`): compilation is paid again by every run.

Framework-neutral: it drives the backend contract (bench.backend_api) only.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from .measure import BlockTimer
from .spec import RunSpec

WARM_STEPS = 3  # the first calls hold tracing and compilation: timed apart
# The rate is the fastest of this many blocks: load on a shared machine only ever slows a
# block, and the two modes are probed one after the other, so a median let a busy moment
# decide (the same TensorFlow GRU m probed at 1.00x and at 1.26x compiled over graph mode
# in two default studies under different load).
BLOCKS = 3
BLOCK_STEPS = 5  # a block holds at least this many steps ...
BLOCK_SECONDS = 0.25  # ... and lasts at least this long
PROBE_BATCHES = 8  # distinct batches the probe cycles through
# Compiled steps must beat uncompiled ones by this factor: a probe this short moves by a
# few per cent from noise alone.
MARGIN = 1.05

_MEMO: dict[str, dict] = {}


# Fields that change what one step computes or where it runs; the seed, the rate, the
# budget and the measurement settings do not.
_KEY_FIELDS = ("framework", "family", "size", "dataset", "optimizer", "batch_size",
               "batchnorm", "precision", "device", "threads", "tf32", "conv_autotune")


def key(spec: RunSpec, device_name: str) -> str:
    parts = {f: getattr(spec, f) for f in _KEY_FIELDS}
    # A penalty or a dropout layer adds work whatever its strength.
    parts.update(dropout=spec.dropout > 0, l2=spec.l2 > 0, wd=spec.weight_decay > 0,
                 smoothing=spec.label_smoothing > 0, device_name=device_name)
    blob = json.dumps(parts, sort_keys=True, default=str)
    return (f"{spec.framework}-{spec.family}-{spec.dataset}-{spec.size}-b{spec.batch_size}-"
            + hashlib.sha256(blob.encode()).hexdigest()[:10])


def choose(spec: RunSpec, data, backend, device_name: str,
           cache_dir: str | Path | None = None) -> dict:
    """The mode `spec`'s run trains in (`decide`): {"compiled": bool, "eager_samples_per_s",
    "compiled_samples_per_s", "compiled_first_steps_s", "eager_first_steps_s",
    "expected_samples", "saving_s", "compile_extra_s", "key", "source"} with source
    "probed", or "cached" when this process or `cache_dir` had the model's rates."""
    k = key(spec, device_name)
    if k in _MEMO:
        return decide(spec, len(data.y_train), {**_MEMO[k], "source": "cached"})
    path = Path(cache_dir) / f"{k}.json" if cache_dir else None
    if path is not None and path.exists():
        try:
            got = json.loads(path.read_text())
            if got.get("key") == k and "compiled_first_steps_s" in got:
                _MEMO[k] = got
                return decide(spec, len(data.y_train), {**got, "source": "cached"})
        except (OSError, ValueError):
            pass  # unreadable: probe again and replace it
    out: dict = {"key": k}
    for name, mode in (("eager", False), ("compiled", True)):
        rate, first = probe(spec.with_(compile=mode), data, backend)
        out[f"{name}_samples_per_s"], out[f"{name}_first_steps_s"] = rate, first
    _MEMO[k] = out
    if path is not None:
        from .study.records import write_json_atomic

        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, out)
    return decide(spec, len(data.y_train), {**out, "source": "probed"})


def expected_samples(spec: RunSpec, n_train: int) -> int:
    """Samples a run of `spec` trains, as the choice assumes: min_epochs + 2 x patience
    epochs when it stops at a plateau (the default study's runs trained 30-60), else its
    whole cap; max_steps applies."""
    from .train import effective_batch, planned_steps

    epochs = min(spec.epochs, spec.min_epochs + 2 * spec.patience) if spec.patience else (
        spec.epochs)
    _, steps = planned_steps(spec.with_(epochs=max(epochs, 1), min_epochs=1), n_train)
    return steps * effective_batch(spec, n_train)


def decide(spec: RunSpec, n_train: int, probe: dict) -> dict:
    """Compiled when its steps are more than MARGIN faster and the time they save over the
    run's expected samples is more than twice the compilation the probe's first steps
    paid (twice: a compiled run also compiles its inference function, which the probe
    does not time). A short run of a cheap model keeps the uncompiled mode even where
    compiled steps are faster: XLA compiled every run of the default's TensorFlow CNN and
    translation model for more time than their faster steps saved."""
    eager, comp = probe["eager_samples_per_s"], probe["compiled_samples_per_s"]
    samples = expected_samples(spec, n_train)
    saving = samples / eager - samples / comp if eager > 0 and comp > 0 else 0.0
    extra = max(probe["compiled_first_steps_s"] - probe["eager_first_steps_s"], 0.0)
    compiled = comp > MARGIN * eager and saving > 2 * extra
    return {**probe, "compiled": bool(compiled), "expected_samples": samples,
            "saving_s": saving, "compile_extra_s": extra}


def probe(spec: RunSpec, data, backend) -> tuple[float, float]:
    """(fastest samples/s of BLOCKS timed blocks, seconds of the WARM_STEPS first steps) of
    a fresh model of `spec` training on the first rows of `data`'s training set."""
    from .train import effective_batch, queue_steps

    n = len(data.y_train)
    batch = effective_batch(spec, n)
    rows = min(n, PROBE_BATCHES * batch)
    x = backend.to_device(data.x_train[:rows])
    y = backend.to_device(data.y_train[:rows])
    per = max(rows // batch, 1)
    model = backend.build(spec)
    trainer = backend.Trainer(model, spec)
    full = batch == n  # trained as the run trains it: the whole split, one step per call
    per_call = 1 if full else trainer.steps_per_call
    # The probe's rows, cycled so that a call can run as many steps as training's do.
    calls = max(1, -(-per_call // per))
    order = None if full else backend.batch_indices(np.arange(per * calls * batch) % rows,
                                                    batch)
    timer = BlockTimer(WARM_STEPS, BLOCK_STEPS, BLOCK_SECONDS)
    pending: list = []
    queued = i = 0
    t = time.perf_counter()
    while len(timer.blocks) < BLOCKS:
        start = i % (per * calls)
        k = min(per_call, per * calls - start, timer.room(queued))
        pending.extend(queue_steps(trainer, x, y, order, start, [spec.lr] * k))
        queued, i = queued + k, i + k
        if timer.due(queued, time.perf_counter() - t):
            backend.sum_scalars(pending)
            timer.add(time.perf_counter() - t, queued * batch, queued)
            pending, queued = [], 0
            t = time.perf_counter()
    return float(max(s / sec for s, sec, _ in timer.blocks)), timer.warmup_seconds
