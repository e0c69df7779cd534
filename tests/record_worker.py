"""Writes one real record of every outcome, in the framework named on the command line.

python tests/record_worker.py FRAMEWORK OUT_DIR: ok (a classifier and a translation model),
diverged, pruned, oom (a memory limit) and error (a run that raises), each OUT_DIR/<name>.json,
as the workflow writes them (bench.study.runner).
"""

import sys
from pathlib import Path

from bench import train
from bench.spec import RunSpec
from bench.study.records import write_json_atomic
from bench.study.runner import run_one

framework, out = sys.argv[1], Path(sys.argv[2])
common = dict(framework=framework, epochs=2, block_steps=5, block_seconds=0.0, warmup_steps=2)
cnn = dict(family="cnn", dataset="mnist1d", size="xs", lr=3e-3, **common)
cases = {
    "ok": (RunSpec.create(**cnn), {}),
    "translation": (RunSpec.create(family="seq2seq", dataset="en_fr_numbers", size="xs",
                                   lr=3e-3, **{**common, "epochs": 1}), {}),
    "diverged": (RunSpec.create(**{**cnn, "lr": 1e8, "optimizer": "sgd"}), {}),
    "pruned": (RunSpec.create(**cnn, seed=1), {"on_epoch": lambda e, p: "a pruner stopped it"}),
    "oom": (RunSpec.create(**cnn, seed=2), {"mem_limit_mb": 1.0}),
    "error": (RunSpec.create(**cnn, seed=3), {}),
}
cache: dict = {}
real_run = train.run
for name, (spec, kw) in cases.items():
    if name == "error":
        def boom(*a, **k):
            raise RuntimeError("a run that raises")
        train.run = boom
    rec = run_one(spec, out / f"{name}.json", data_dir="data", allow_pickle=False,
                  data_cache=cache, **kw)
    train.run = real_run
    write_json_atomic(out / f"{name}.json", rec)
