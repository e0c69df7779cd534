"""`python -m bench speed`: training throughput of reference models in both frameworks,
each in each of its modes.

The article CNN (the article's size, on 28x28x1 inputs: random data of MNIST's shape, so no file
is needed) and size `m` of every classifier on MNIST-1D and of seq2seq on en_fr_numbers
(random full-length sentences), batch 64, Adam. Four cells per model: torch eager, torch
compiled (torch.compile), tf graph (tf.function) and tf XLA (jit_compile). Each cell runs
in its own process (one framework, one mode); the cells alternate `--rounds` times, the
order reversed every other round, so that a change in machine load hits all alike, and the
table reports the median of the rounds per model. Compilation is not in the rate: it falls
in the first step and the warm-up, which the table of compile costs shows apart.

`--reference` also runs `bench.reference` (each framework's tutorial loop, same
architectures) in the same interleaved way and prints ours/reference per cell.
Compare ratios from one invocation, not absolute figures across machines or days.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

from ..registry import CLASSIFIERS, DEVICES, FRAMEWORKS, PRECISIONS, SpecError
from ..spec import RunSpec

MODELS = [("cnn", "article", "mnist")] + [(f, "m", "mnist1d") for f in CLASSIFIERS]
MODELS += [("seq2seq", "m", "en_fr_numbers")]
MODES = ("eager", "compiled")
# a column's name: what each framework calls its mode
COLUMN = {("torch", "eager"): "torch eager", ("torch", "compiled"): "torch compiled",
          ("tf", "eager"): "tf graph", ("tf", "compiled"): "tf XLA"}
IMPLS = ("ours", "reference")


def add_parsers(sub) -> None:
    p = sub.add_parser("speed", help="training samples/s of the article CNN and size m of every "
                                     "family, both frameworks, eager and compiled, "
                                     "interleaved")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--modes", default=",".join(MODES),
                   help="eager (torch eager, tf graph), compiled (torch.compile, tf XLA) "
                        "or both (default)")
    p.add_argument("--compile", action="store_true",
                   help="compiled only: the same as --modes compiled")
    p.add_argument("--device", default="cpu", choices=DEVICES,
                   help="cpu, cuda (fails in one line without a GPU) or auto")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS,
                   help="fp32, or mixed bf16 / fp16")
    p.add_argument("--rounds", type=int, default=2, help="alternations of the cells")
    p.add_argument("--steps", type=int, default=60, help="steps per timed block (3 blocks)")
    p.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    p.add_argument("--models", default=",".join("/".join(m) for m in MODELS),
                   help="family/size/dataset, comma-separated (default: the six above)")
    p.add_argument("--reference", action="store_true",
                   help="also time bench.reference (the frameworks' tutorial loops, the "
                        "same architectures) and print ours/reference per cell")
    p.add_argument("--json", metavar="FILE", help="write every cell's rates here as JSON")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # internal: one cell's process
    p.add_argument("--mode", default="eager", choices=MODES, help=argparse.SUPPRESS)
    p.add_argument("--impl", default="ours", choices=IMPLS, help=argparse.SUPPRESS)
    p.set_defaults(func=main)


def _models(text: str) -> list[tuple[str, str, str]]:
    out = []
    for item in filter(None, text.split(",")):
        parts = tuple(item.split("/"))
        if len(parts) != 3:
            raise SpecError(f"--models wants family/size/dataset, got {item!r}")
        out.append(parts)
    return out


def _synthetic(dataset: str, n: int):
    """Random inputs of the dataset's shape (labels too): speed does not depend on values."""
    from ..data import Data
    from ..registry import DATASETS

    info = DATASETS[dataset]
    rng = np.random.default_rng(0)
    if info.kind == "text":  # full-length sentences: the padded shape the model computes
        x = rng.integers(3, info.vocab, size=(n, *info.shape))
        y = rng.integers(3, info.vocab, size=(n, info.target_len))
        y[:, 0] = 1
        return Data(dataset, x, y, x[:256], y[:256], x[:256], y[:256])
    if info.kind == "tokens":
        x = rng.integers(0, info.vocab, size=(n, *info.shape))
    else:
        x = rng.random((n, *info.shape), dtype=np.float32)
    y = rng.integers(0, info.n_classes, size=n)
    return Data(dataset, x, y, x[:256], y[:256], x[:256], y[:256])


_CELL_KEYS = ("first_step_s", "warmup_s")


def _worker(a) -> int:
    """One cell: framework a.worker in mode a.mode, ours or the reference; prints one JSON
    line {model: {rate, first_step_s, warmup_s}}."""
    from .. import train
    from ..backend_api import load_backend

    backend = load_backend(a.worker) if a.impl == "ours" else None
    if backend is not None:
        try:  # a device this framework cannot see fails the whole table, in one line
            backend.setup(a.threads, a.device, 0)
        except SpecError as e:
            print(f"python -m bench speed: error: {e}", file=sys.stderr)
            return 2
    out: dict = {}
    compiled = a.mode == "compiled"
    for family, size, dataset in _models(a.models):
        key = f"{family}/{size}/{dataset}"
        steps = 10 + 3 * a.steps
        data = _synthetic(dataset, 64 * steps)
        if backend is None:
            from .. import reference

            if not reference.covers(family, size, dataset):
                out.setdefault("_skipped", {})[key] = "no reference for this model"
                continue
            got = reference.run(a.worker, family, size, dataset, data.x_train, data.y_train,
                                compiled, a.steps, threads=a.threads, device=a.device)
            out[key] = {"rate": got["train_samples_per_s"],
                        **{k: got[k] for k in _CELL_KEYS}}
            continue
        spec = RunSpec.create(family=family, framework=a.worker, dataset=dataset, size=size,
                              optimizer="adam", batch_size=64, epochs=1, max_steps=steps,
                              threads=a.threads, compile=compiled, warmup_steps=10,
                              block_steps=a.steps, block_seconds=0.0, device=a.device,
                              precision=a.precision)
        try:
            rec = train.run(spec, data, backend)
        except SpecError as e:  # a precision a kernel lacks: that model only
            out.setdefault("_skipped", {})[key] = str(e)
            continue
        out[key] = {"rate": rec["train_samples_per_s"], **{k: rec[k] for k in _CELL_KEYS}}
        out["_device"] = f"{rec['device']} ({rec['device_name']})"
    print(json.dumps(out))
    return 0


def _cells(frameworks: list[str], modes: list[str], reference: bool) -> list[tuple]:
    """(framework, mode, impl) in a round's order: the frameworks alternate within a mode,
    and each reference cell follows its own cell."""
    impls = IMPLS if reference else IMPLS[:1]
    return [(fw, mode, impl) for mode in modes for fw in frameworks for impl in impls]


def _run_cell(a, fw: str, mode: str, impl: str):
    cmd = [sys.executable, "-m", "bench", "speed", "--worker", fw, "--mode", mode,
           "--impl", impl, "--threads", str(a.threads), "--steps", str(a.steps),
           "--device", a.device, "--precision", a.precision, "--models", a.models]
    return subprocess.run(cmd, capture_output=True, text=True)


def _median(xs):
    return statistics.median(xs) if xs else None


def main(a) -> int:
    if a.worker:
        return _worker(a)
    frameworks = [f for f in a.frameworks.split(",") if f]
    modes = ["compiled"] if a.compile else [m for m in a.modes.split(",") if m]
    bad = [m for m in modes if m not in MODES] + [f for f in frameworks if f not in FRAMEWORKS]
    if bad or not modes or not frameworks:
        print(f"python -m bench speed: error: unknown mode or framework {bad}; modes "
              f"{', '.join(MODES)}, frameworks {', '.join(FRAMEWORKS)}", file=sys.stderr)
        return 2
    if a.reference and a.precision != "fp32":
        print("python -m bench speed: error: --reference runs fp32 only", file=sys.stderr)
        return 2
    try:
        models = ["/".join(m) for m in _models(a.models)]
    except SpecError as e:
        print(f"python -m bench speed: error: {e}", file=sys.stderr)
        return 2
    cells = _cells(frameworks, modes, a.reference)
    # results[(fw, mode, impl)][model] = list of per-round {rate, first_step_s, warmup_s}
    results: dict[tuple, dict[str, list[dict]]] = {c: {} for c in cells}
    devices: dict[str, str] = {}
    load = os.getloadavg()[0]
    for r in range(a.rounds):
        for fw, mode, impl in cells if r % 2 == 0 else cells[::-1]:
            p = _run_cell(a, fw, mode, impl)
            if p.returncode:
                lines = p.stderr.strip().splitlines() or [""]
                one_line = p.returncode == 2 and lines[-1].startswith("python -m bench speed")
                print(lines[-1] if one_line else p.stderr[-2000:], file=sys.stderr)
                return p.returncode
            got = json.loads(p.stdout.strip().splitlines()[-1])
            devices[fw] = got.pop("_device", devices.get(fw, ""))
            for k, why in got.pop("_skipped", {}).items():
                if r == 0 and impl == "ours":  # a model this setting cannot run, said once
                    print(f"{COLUMN[fw, mode]} {k}: {why}", file=sys.stderr)
            for k, v in got.items():
                results[fw, mode, impl].setdefault(k, []).append(v)
            print(f"round {r + 1}/{a.rounds}: {COLUMN[fw, mode]}"
                  f"{' reference' if impl == 'reference' else ''} done", file=sys.stderr,
                  flush=True)
    summary = summarise(results, frameworks, modes, models, a.reference)
    summary["settings"] = {"threads": a.threads, "rounds": a.rounds, "steps": a.steps,
                           "device": a.device, "precision": a.precision, "modes": modes,
                           "frameworks": frameworks, "reference": a.reference,
                           "load_average_start": load, "load_average_end": os.getloadavg()[0],
                           "devices": devices}
    print_tables(summary)
    if a.json:
        Path(a.json).write_text(json.dumps(summary, indent=1) + "\n")
    return 0


def summarise(results: dict, frameworks: list[str], modes: list[str], models: list[str],
              reference: bool) -> dict:
    """Per model: each cell's rates per round and median (ours, and the reference's),
    each framework's best mode and rate, and best torch over best tf."""
    out: dict = {"columns": [COLUMN[fw, m] for fw in frameworks for m in modes],
                 "models": {}}
    for model in models:
        cells: dict = {}
        for fw in frameworks:
            for mode in modes:
                runs = results.get((fw, mode, "ours"), {}).get(model, [])
                rates = [x["rate"] for x in runs if x["rate"]]
                cell = {"framework": fw, "mode": mode, "rates": rates,
                        "median": _median(rates)}
                for k in _CELL_KEYS:
                    cell[k] = [x[k] for x in runs]
                if reference:
                    ref = results.get((fw, mode, "reference"), {}).get(model, [])
                    ref_rates = [x["rate"] for x in ref if x["rate"]]
                    cell["reference"] = {"rates": ref_rates, "median": _median(ref_rates),
                                         **{k: [x[k] for x in ref] for k in _CELL_KEYS}}
                    m, rm = cell["median"], cell["reference"]["median"]
                    cell["ours_vs_reference"] = m / rm if m and rm else None
                cells[COLUMN[fw, mode]] = cell
        best = {}
        for fw in frameworks:
            mine = [(c["median"], c["mode"], name) for name, c in cells.items()
                    if c["framework"] == fw and c["median"]]
            if mine:
                rate, mode, name = max(mine)
                best[fw] = {"mode": mode, "column": name, "rate": rate,
                            "label": name.split(" ", 1)[1]}
        entry = {"cells": cells, "best": best}
        if len(frameworks) == 2 and all(fw in best for fw in frameworks):
            entry["best_ratio"] = best[frameworks[0]]["rate"] / best[frameworks[1]]["rate"]
        out["models"][model] = entry
    return out


def _num(x, width: int = 15, fmt: str = ",.0f") -> str:
    return f"{x:{width}{fmt}}" if x else f"{'-':>{width}s}"


def print_tables(s: dict) -> None:
    st = s["settings"]
    frameworks, columns = st["frameworks"], s["columns"]
    print(f"threads={st['threads']} precision={st['precision']} rounds={st['rounds']} "
          f"steps={st['steps']} load average {st['load_average_start']:.2f} at start, "
          f"{st['load_average_end']:.2f} at end (median samples/s over rounds)")
    for fw, where in st["devices"].items():
        print(f"{fw}: {where}")
    w = 28
    head = f"{'model':{w}s}" + "".join(f"{c:>15s}" for c in columns)
    head += "".join(f"{fw + ' best':>18s}" for fw in frameworks)
    pair = "/".join(frameworks) if len(frameworks) == 2 else ""
    print(head + (f"{pair + ' best':>15s}" if pair else ""))
    for model, e in s["models"].items():  # every model; '-' where one could not run
        line = f"{model:{w}s}" + "".join(_num(e["cells"][c]["median"]) for c in columns)
        for fw in frameworks:
            b = e["best"].get(fw)
            line += f"{b['label'] + ' ' + format(b['rate'], ',.0f'):>18s}" if b else f"{'-':>18s}"
        if pair:
            line += _num(e.get("best_ratio"), fmt=".2f")
        print(line)
    compiled = [c for c in columns if c in ("torch compiled", "tf XLA")] or columns

    def timing(cell) -> str:
        f, wu = _median(cell["first_step_s"]), _median(cell["warmup_s"])
        return f"{f:10.2f} / {wu:9.2f}" if f is not None else f"{'-':>22s}"

    _cell_table("\nfirst step / warm-up (10 steps, the first included) seconds, median over "
                "rounds; not in the rates", s, compiled, w, 22, timing)
    if not st["reference"]:
        return

    def versus(cell) -> str:
        ref, ratio = cell["reference"]["median"], cell.get("ours_vs_reference")
        return f"{format(ref, ',.0f') + ' ref':>15s}{ratio:8.2f}x" if ratio else f"{'-':>24s}"

    _cell_table("\nours / reference (bench.reference: the tutorial loop, same architecture), "
                "median samples/s", s, columns, w, 24, versus)


def _cell_table(title: str, s: dict, columns: list[str], w: int, width: int, cell) -> None:
    """One line per model, one `cell(...)`-formatted column per cell name."""
    print(title)
    print(f"{'model':{w}s}" + "".join(f"{c:>{width}s}" for c in columns))
    for model, e in s["models"].items():
        print(f"{model:{w}s}" + "".join(cell(e["cells"][c]) for c in columns))
