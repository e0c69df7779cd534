"""The job runner: a batch of specs -> one record each under an output folder.

`run-job`, `train` and tuning's final runs all go through here, so a record is kept,
redone or retried by the same rules whoever asks. A final record (ok, diverged, oom, pruned)
is kept unless bench's version changed since (it measures differently) or the batch wants
weights that were not saved; an error record, an unreadable one or a missing one is run.
Records are written atomically: a reader sees the old record or the new one.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..registry import SpecError
from ..spec import RunSpec
from .plan import Rungs

_WARM: set[str] = set()  # frameworks whose runtime this process has warmed up


def run_one(spec: RunSpec, record_path: Path, *, data_dir: str | Path, allow_pickle: bool,
            mem_limit_mb: float = 0, save_model: bool = False,
            data_cache: dict | None = None, on_epoch=None) -> dict:
    """Run one spec and return its record; status `error` for unexpected exceptions.

    `data_cache` (dataset name -> loaded data) lets a job load each dataset once. With
    `save_model` the tested weights go beside `record_path`. A missing framework raises
    SpecError: no record would say anything about the run.
    """
    import traceback

    from .. import train
    from ..backend_api import load_backend
    from ..data import load
    from ..translation.weights_file import path_for

    data_cache = {} if data_cache is None else data_cache
    try:
        backend = load_backend(spec.framework)
    except ImportError as e:
        extra = {"torch": "torch", "tf": "tf"}[spec.framework]
        raise SpecError(f"framework {spec.framework!r} is not installed ({e.name}); "
                        f"pip install -e '.[{extra}]'") from None
    try:
        if spec.dataset not in data_cache:
            data_cache[spec.dataset] = load(spec.dataset, data_dir, allow_pickle)
        if spec.framework not in _WARM:
            # The first run of a process would otherwise pay (and count as its own memory)
            # the runtime's lazy start-up: kernel libraries, thread pools, first traces.
            train.prime_runtime(spec, data_cache[spec.dataset], backend)
            _WARM.add(spec.framework)
        weights = path_for(record_path) if save_model else None
        # `compile: best` keeps its choices beside the records, one per model and setting,
        # so every job of a study trains a model in the same mode.
        return train.run(spec, data_cache[spec.dataset], backend, mem_limit_mb=mem_limit_mb,
                         save_weights=weights, compile_cache=record_path.parent / "compile",
                         on_epoch=on_epoch)
    except SpecError:
        raise
    except Exception as e:  # noqa: BLE001 - recorded, so a batch keeps its other runs
        traceback.print_exc()
        from .. import __version__

        return {"run_id": spec.run_id, **spec.to_dict(), "status": "error",
                "bench_version": __version__,
                "message": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:500]}


def run_specs(specs: list[RunSpec], out_dir: Path, *, data_dir: str | Path, allow_pickle: bool,
              mem_limit_mb: float = 0, save_model: bool = False,
              after_run: Callable[[list[str]], None] | None = None,
              drop: Rungs | None = None) -> int:
    """Run each spec whose record in `out_dir` is not kept; returns how many ended in error.

    One line per spec on stderr says what happened to it (kept, running, and why it runs);
    `after_run` gets the ids of the specs through so far after each run. With `drop`, the
    (epoch, margin) rungs of `lr_grid_drop`, a learning-rate grid's run stops as pruned
    where it falls behind an earlier rate of its unit in this job (`behind`).
    """
    from .. import __version__
    from ..translation.weights_file import path_for
    from .records import (
        FINAL_STATUSES,
        foreign_version,
        read_record,
        remove_stale_temps,
        write_json_atomic,
    )

    cache: dict = {}
    errors = 0
    curves: dict[str, list[tuple[float, list]]] = {}  # unit -> (lr, curve) of finished rates
    for i, spec in enumerate(specs, 1):
        path = out_dir / f"{spec.run_id}.json"
        old = read_record(path)
        unit = _unit(spec)
        on_epoch = behind(spec, curves.get(unit, []), drop) if drop else None
        outdated = old is not None and foreign_version(old) is not None
        unsaved = (save_model and old is not None
                   and old.get("status") == "ok" and not path_for(path).exists())
        if old and old.get("status") in FINAL_STATUSES and not outdated and not unsaved:
            print(f"[{i}/{len(specs)}] {spec.run_id}: kept ({old['status']})", file=sys.stderr)
            curves.setdefault(unit, []).append((spec.lr, old.get("curve") or []))
            continue
        stale = remove_stale_temps(path)
        print(f"[{i}/{len(specs)}] {spec.run_id}: running"
              + (" (unreadable record replaced)" if old is None and path.exists() else "")
              + (f" (record of bench {foreign_version(old)} redone: this is "
                 f"{__version__}, which measures differently)" if outdated else
                 " (redone: --save-model and its weights were not kept)" if unsaved else
                 f" (retrying status {old['status']})" if old else "")
              + (f" ({stale} partial write(s) removed)" if stale else ""),
              file=sys.stderr, flush=True)
        record = run_one(spec, path, data_dir=data_dir, allow_pickle=allow_pickle,
                         mem_limit_mb=mem_limit_mb, save_model=save_model, data_cache=cache,
                         on_epoch=on_epoch)
        write_json_atomic(path, record)
        curves.setdefault(unit, []).append((spec.lr, record.get("curve") or []))
        errors += record["status"] == "error"
        if after_run is not None:
            after_run([s.run_id for s in specs[:i]])
    return errors


def _unit(spec: RunSpec) -> str:
    """What the rates of a grid share: the spec without its learning rate."""
    return spec.with_(lr=1.0).run_id


def smoothed(curve: list, epoch: int, k: int = 3) -> float:
    """Mean validation accuracy of epochs epoch-k+1 .. epoch (the plateau rule's smoothing)."""
    vals = [p["val_acc"] for p in curve[:epoch]]
    return sum(vals[-k:]) / len(vals[-k:]) if vals else float("nan")


def behind(spec: RunSpec, earlier: list[tuple[float, list]], rungs: Rungs):
    """on_epoch for a grid run: at each rung's epoch, stop (as pruned, with the reason)
    when its smoothed validation accuracy is more than the rung's margin below that of an
    earlier rate of its unit at the same epoch. The grid then chooses among the rest. The
    default rungs (epoch 10, margin 0.05; epoch 20, margin 0.03), replayed on the default
    study's grids, chose the same rates as training every rate to its plateau (README
    "Learning rates")."""
    judged: dict[int, tuple[float, list]] = {}  # epoch -> (margin, rivals' smoothed accuracy)
    for epoch, margin in rungs:
        rivals = [(lr, smoothed(c, epoch)) for lr, c in earlier if len(c) >= epoch]
        if rivals:
            judged[epoch] = (margin, rivals)
    if not judged:
        return None

    curve: list[dict] = []

    def check(at: int, point: dict) -> str | bool:
        curve.append(point)
        if at not in judged:
            return False
        margin, rivals = judged[at]
        lr, best = max(rivals, key=lambda r: r[1])
        mine = smoothed(curve, at)
        if mine < best - margin:
            return (f"stopped at epoch {at}: validation accuracy {mine:.3f} (mean of 3 "
                    f"epochs), more than {margin:g} below lr {lr:g}'s {best:.3f}")
        return False
    return check


@contextmanager
def measuring_slots_for(specs: list[RunSpec]) -> Iterator[float]:
    """Hold the measuring slots a batch of specs needs (a CPU slot of its thread count, and a
    GPU slot when it may use a GPU); yields the seconds spent waiting for them."""
    from ..measure.slots import measuring_slots, visible_gpus

    gpu = any(s.device in ("cuda", "auto") for s in specs) and visible_gpus() > 0
    t0 = time.perf_counter()
    with measuring_slots(max(s.threads for s in specs), gpu):
        yield time.perf_counter() - t0
