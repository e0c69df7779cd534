"""`python -m bench speed`: training throughput of reference models in both frameworks.

The seed CNN (the article's, on 28x28x1 inputs: random data of MNIST's shape, so no file
is needed) and size `m` of every classifier on MNIST-1D and of seq2seq on en_fr_numbers
(random full-length sentences), batch 64, Adam. Each framework runs in
its own process; the frameworks alternate `--rounds` times so that a change in machine load
hits both alike, and the table reports the median of the rounds per model. Compare ratios
from one invocation, not absolute figures across machines or days.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

import numpy as np

from .registry import CLASSIFIERS, DEVICES, FRAMEWORKS, PRECISIONS, SpecError
from .spec import RunSpec

MODELS = [("cnn", "seed", "mnist")] + [(f, "m", "mnist1d") for f in CLASSIFIERS]
MODELS += [("seq2seq", "m", "en_fr_numbers")]


def add_parsers(sub) -> None:
    p = sub.add_parser("speed", help="training samples/s of the seed CNN and size m of every "
                                     "family, both frameworks, interleaved")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--compile", action="store_true", help="torch.compile / XLA")
    p.add_argument("--device", default="cpu", choices=DEVICES,
                   help="cpu, cuda (fails in one line without a GPU) or auto")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS,
                   help="fp32, or mixed bf16 / fp16")
    p.add_argument("--rounds", type=int, default=2, help="alternations of the frameworks")
    p.add_argument("--steps", type=int, default=60, help="steps per timed block (3 blocks)")
    p.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    p.add_argument("--worker", help=argparse.SUPPRESS)  # internal: one framework's process
    p.set_defaults(func=main)


def _synthetic(dataset: str, n: int):
    """Random inputs of the dataset's shape (labels too): speed does not depend on values."""
    from .data import Data
    from .registry import DATASETS

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


def _worker(a) -> int:
    from . import train
    from .backend_api import load_backend

    backend = load_backend(a.worker)
    try:  # a device this framework cannot see fails the whole table, in one line
        backend.setup(a.threads, a.device, 0)
    except SpecError as e:
        print(f"python -m bench speed: error: {e}", file=sys.stderr)
        return 2
    out = {}
    for family, size, dataset in MODELS:
        steps = 10 + 3 * a.steps
        spec = RunSpec.create(family=family, framework=a.worker, dataset=dataset, size=size,
                              optimizer="adam", batch_size=64, epochs=1, max_steps=steps,
                              threads=a.threads, compile=a.compile, warmup_steps=10,
                              block_steps=a.steps, block_seconds=0.0, device=a.device,
                              precision=a.precision)
        data = _synthetic(dataset, 64 * steps)
        try:
            rec = train.run(spec, data, backend)
        except SpecError as e:  # a precision a kernel lacks: that model only
            out.setdefault("_skipped", {})[f"{family}/{size}/{dataset}"] = str(e)
            continue
        out[f"{family}/{size}/{dataset}"] = rec["train_samples_per_s"]
        out["_device"] = f"{rec['device']} ({rec['device_name']})"
    print(json.dumps(out))
    return 0


def main(a) -> int:
    if a.worker:
        return _worker(a)
    frameworks = [f for f in a.frameworks.split(",") if f]
    results: dict[str, dict[str, list[float]]] = {f: {} for f in frameworks}
    devices: dict[str, str] = {}
    load = os.getloadavg()[0]
    for r in range(a.rounds):
        for fw in frameworks if r % 2 == 0 else frameworks[::-1]:
            cmd = [sys.executable, "-m", "bench", "speed", "--worker", fw,
                   "--threads", str(a.threads), "--steps", str(a.steps),
                   "--device", a.device, "--precision", a.precision]
            cmd += ["--compile"] if a.compile else []
            p = subprocess.run(cmd, capture_output=True, text=True)
            if p.returncode:
                lines = p.stderr.strip().splitlines() or [""]
                one_line = p.returncode == 2 and lines[-1].startswith("python -m bench speed")
                print(lines[-1] if one_line else p.stderr[-2000:], file=sys.stderr)
                return p.returncode
            got = json.loads(p.stdout.strip().splitlines()[-1])
            devices[fw] = got.pop("_device", "")
            for k, why in got.pop("_skipped", {}).items():
                if r == 0:  # a model this setting cannot run, said once
                    print(f"{fw} {k}: {why}", file=sys.stderr)
            for k, v in got.items():
                results[fw].setdefault(k, []).append(v)
            print(f"round {r + 1}/{a.rounds}: {fw} done", file=sys.stderr, flush=True)
    print(f"threads={a.threads} compile={a.compile} precision={a.precision} rounds={a.rounds} "
          f"load average at start {load:.2f} (median samples/s over rounds)")
    for fw, where in devices.items():
        print(f"{fw}: {where}")
    header = f"{'model':28s}" + "".join(f"{fw:>12s}" for fw in frameworks)
    if len(frameworks) == 2:
        header += f"{frameworks[0] + '/' + frameworks[1]:>14s}"
    print(header)
    for key in ("/".join(m) for m in MODELS):  # every model; '-' where one could not run
        meds = [statistics.median(results[fw][key]) if results[fw].get(key) else None
                for fw in frameworks]
        line = f"{key:28s}" + "".join(f"{m:12,.0f}" if m else f"{'-':>12s}" for m in meds)
        if len(meds) == 2 and all(meds):
            line += f"{meds[0] / meds[1]:14.2f}"
        print(line)
    return 0
