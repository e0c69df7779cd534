"""`python -m bench <verb>`: the only command-line entry point.

Framework modules are imported only inside the verbs that train, and only the one the run
names, so `list` and `--help` are instant and no process ever loads both frameworks.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .registry import (
    DATASETS,
    DEVICES,
    FAMILIES,
    FRAMEWORKS,
    LR_SCHEDULES,
    OPTIMIZERS,
    PRECISIONS,
    REGULARISERS,
    SpecError,
    reads,
)
from .sizes import SIZE_NAMES, SIZES, param_count
from .spec import RunSpec

if TYPE_CHECKING:
    from .study.plan import Rungs

EXIT_BAD_INPUT = 2
EXTENSIONS = [m for m in ("tune", "report", "measure.speed", "measure.decode_speed", "fetch",
                            "translation.translate", "run_record")
              if importlib.util.find_spec(f"bench.{m}")]


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, naming the bad value, no usage dump
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)


def _add_run_options(p: argparse.ArgumentParser) -> None:
    sizes = sorted({s for fam in SIZES.values() for s in fam}, key=SIZE_NAMES.index)
    g = p.add_argument_group("what to train")
    g.add_argument("--family", required=True, choices=FAMILIES)
    g.add_argument("--framework", required=True, choices=FRAMEWORKS)
    g.add_argument("--dataset", required=True, choices=list(DATASETS))
    g.add_argument("--size", required=True, choices=sizes,
                   help="named size; `python -m bench list` shows parameter counts")
    g = p.add_argument_group("optimisation")
    g.add_argument("--optimizer", default="adam", choices=list(OPTIMIZERS))
    g.add_argument("--lr", type=float, default=1e-3, help="learning rate (default 1e-3)")
    g.add_argument("--batch-size", default="64",
                   help="'full' (full-batch GD), 1 (stochastic) or N (mini-batch); default 64")
    g.add_argument("--epochs", type=int, default=10)
    g.add_argument("--max-steps", type=int, default=0, help="cap on optimizer steps (0: none)")
    g.add_argument("--seed", type=int, default=0)
    g = p.add_argument_group("regularisation")
    g.add_argument("--regulariser", default="none",
                   help="'+'-joined from: " + ", ".join(REGULARISERS) + " (default none)")
    g.add_argument("--l2", type=float, help="L2 coefficient (preset with l2: 1e-4)")
    g.add_argument("--weight-decay", type=float,
                   help="decoupled weight decay (preset with wd, and for adamw: 1e-2)")
    g.add_argument("--dropout", type=float, help="dropout rate (preset with dropout: 0.2)")
    g.add_argument("--batchnorm", action="store_true", default=None, help="add batch norm")
    g.add_argument("--lr-schedule", choices=LR_SCHEDULES,
                   help="none, step or cosine (presets lr_step, lr_decay)")
    g.add_argument("--patience", type=int,
                   help="stop when the smoothed validation accuracy has not improved for this "
                        "many epochs (0: train all --epochs; early_stop: 3)")
    g.add_argument("--min-epochs", type=int, default=1, help="never stop before this epoch")
    g.add_argument("--lr-warmup", type=int, default=0,
                   help="optimizer steps of linear learning-rate warm-up (default 0)")
    g = p.add_argument_group("execution and measurement")
    g.add_argument("--device", default="cpu", choices=DEVICES)
    g.add_argument("--threads", type=int, default=1, help="intra-op threads (inter-op is 1)")
    g.add_argument("--compile", nargs="?", const="true", default="false",
                   choices=["false", "true", "best"],
                   help="true (alone: --compile): torch.compile / XLA jit_compile; best: "
                        "whichever trains this model faster in a short probe (default false)")
    g.add_argument("--precision", default="fp32", choices=PRECISIONS,
                   help="fp32, or mixed bf16 / fp16 (fp32 weights; fp16 scales the loss)")
    g.add_argument("--tf32", action=argparse.BooleanOptionalAction, default=False,
                   help="TF32 matmuls and convolutions on a GPU (default off, both frameworks)")
    g.add_argument("--conv-autotune", action=argparse.BooleanOptionalAction, default=True,
                   help="convolution algorithm autotuning on a GPU (default on, both)")
    g.add_argument("--warmup-steps", type=int, default=10)
    g.add_argument("--block-steps", type=int, default=50)
    g.add_argument("--block-seconds", type=float, default=2.0)


def _add_io_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default="data", help="where mnist.npz / imdb.npz live")
    p.add_argument("--allow-pickle", action="store_true",
                   help="trust imdb.npz's pickled arrays (loading them runs code from the file)")
    p.add_argument("--mem-limit-mb", type=float, default=0.0,
                   help="record status oom when peak memory exceeds this (0: no limit)")
    p.add_argument("--save-model", action="store_true",
                   help="keep each finished run's tested weights beside its record "
                        "(<run_id>.weights.npz, framework-neutral; `translate` reads them)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m bench",
                description="Scale-vs-performance benchmarks of CNN, RNN and Transformer models "
                            "in PyTorch and TensorFlow.")
    sub = p.add_subparsers(dest="verb", required=True, parser_class=_Parser)
    sub.add_parser("list", help="print the registries (families, sizes with parameter counts, "
                                "optimizers, regularisers, datasets)")
    t = sub.add_parser("train", help="train and measure one run; write its JSON record")
    _add_run_options(t)
    _add_io_options(t)
    t.add_argument("--out", required=True, help="record path, e.g. results/runs/x.json")
    b = sub.add_parser("run-job", help="run several specs (one framework) in one process, "
                                         "skipping those whose record already exists")
    b.add_argument("--specs", required=True, help="JSON list of RunSpec dicts, or @file")
    b.add_argument("--out-dir", required=True, help="records go to OUT_DIR/<run_id>.json")
    b.add_argument("--done", help="write this JSON list of run ids when the batch is through")
    b.add_argument("--lr-from", help="a learning-rate selection file (select-lr): each run "
                                     "takes the rate chosen for its family/dataset/size/optimizer")
    b.add_argument("--drop-behind", metavar="EPOCH:MARGIN[,EPOCH:MARGIN...]",
                   help="learning-rate grid jobs: stop a rate at EPOCH when its validation "
                        "accuracy is more than MARGIN below an earlier rate's of its unit")
    b.add_argument("--study-plan", help="the study's plan (written by the workflow at start): "
                                        "print the study's progress and time left")
    _add_io_options(b)
    sel = sub.add_parser("select-lr", help="learning-rate grid jobs -> the rate chosen on "
                                           "validation for every family/dataset/size/optimizer")
    sel.add_argument("jobs", nargs="+", help="grid jobs' done files written by run-job --done")
    sel.add_argument("--runs-dir", default="results/runs")
    sel.add_argument("--out", required=True,
                     help="selection file, e.g. results/lr/cnn-mnist1d.json")
    sel.add_argument("--race", action="store_true",
                     help="the grid was a short race: its runs are not study runs")
    g = sub.add_parser("aggregate", help="records of finished jobs -> summary CSV + parquet")
    g.add_argument("jobs", nargs="+", help="jobs' done files written by run-job --done")
    g.add_argument("--lr-selections", nargs="*", default=[],
                   help="selection files: mark each run's lr_role (chosen / grid)")
    g.add_argument("--runs-dir", default="results/runs")
    g.add_argument("--csv", default="results/summary.csv")
    g.add_argument("--parquet", default="results/summary.parquet")
    # Stages with their own modules add their verbs (and set `func`); those modules import
    # optuna / plotly lazily so that building the parser stays cheap.
    for name in EXTENSIONS:
        importlib.import_module(f"bench.{name}").add_parsers(sub)
    return p


def _spec_from_args(a) -> RunSpec:
    keys = ["family", "framework", "dataset", "size", "optimizer", "lr", "batch_size", "epochs",
            "max_steps", "seed", "l2", "weight_decay", "dropout", "batchnorm", "lr_schedule",
            "patience", "min_epochs", "lr_warmup", "device", "threads", "compile",
            "precision", "tf32", "conv_autotune",
            "warmup_steps", "block_steps", "block_seconds"]
    return RunSpec.create(regulariser=a.regulariser, **{k: getattr(a, k) for k in keys})


def cmd_list() -> int:
    w = sys.stdout.write
    w("families: " + ", ".join(FAMILIES) + "\nframeworks: " + ", ".join(FRAMEWORKS) + "\n\n")
    w("datasets:\n")
    for d in DATASETS.values():
        what = (f"vocabulary {d.vocab}, target length {d.target_len}" if d.kind == "text"
                else f"classes {d.n_classes}")
        w(f"  {d.name:13s} {d.kind:6s} shape {d.shape} {what}  {d.description}\n")
    w("\nsizes (trainable parameters per dataset, - where the family cannot read it; xxl is "
      "meant for a GPU, seed = article):\n")
    names = list(DATASETS)
    for fam in FAMILIES:
        w(f"  {fam}\n    {'size':6s}" + "".join(f"{n:>14s}" for n in names) + "  definition\n")
        for size, arch in SIZES[fam].items():
            counts = "".join(f"{param_count(fam, size, n):>14,d}" if reads(fam, n)
                             else f"{'-':>14s}" for n in names)
            w(f"    {size:6s}{counts}  {arch}\n")
    w("\noptimizers:\n")
    for o in OPTIMIZERS.values():
        w(f"  {o.name:9s} {o.description}\n")
    w("\nregularisers (join with '+', e.g. dropout+l2+lr_decay):\n")
    for r in REGULARISERS.values():
        w(f"  {r.name:10s} {r.description}\n")
    w("\nbatch sizes: full (full-batch gradient descent), 1 (stochastic), N (mini-batch)\n")
    return 0


def cmd_train(a) -> int:
    from .study.records import write_json_atomic
    from .study.runner import run_one

    spec = _spec_from_args(a)
    if spec.dataset in ("mnist", "imdb"):  # fail before any framework import
        from .data import load

        cache = {spec.dataset: load(spec.dataset, a.data_dir, a.allow_pickle)}
    else:
        cache = {}
    record = run_one(spec, Path(a.out), data_dir=a.data_dir, allow_pickle=a.allow_pickle,
                     mem_limit_mb=a.mem_limit_mb, save_model=a.save_model, data_cache=cache)
    write_json_atomic(a.out, record)
    print(f"{record['status']}: {spec.run_id} -> {a.out}", file=sys.stderr)
    return 1 if record["status"] == "error" else 0


def _drop(text: str | None) -> Rungs | None:
    if not text:
        return None
    try:
        rungs = [(int(e), float(m)) for e, m in (r.split(":") for r in text.split(","))]
    except ValueError:
        raise SpecError(f"--drop-behind {text!r}: use EPOCH:MARGIN[,EPOCH:MARGIN...], "
                        f"e.g. 10:0.05,20:0.03") from None
    return tuple(sorted(rungs))


def _progress(a, file):
    """after_run for run_specs: the study's progress line (bench.study.progress), if it has a
    plan."""
    def report(finished: list[str]) -> None:
        if not (a.study_plan and a.done):
            return
        from .study.progress import line

        job = Path(a.done).stem
        text = line(a.study_plan, Path(a.done).parent, a.out_dir,
                    job="" if not finished else job, finished=tuple(finished))
        if text:
            print(f"{job}: {text}" if file is sys.stdout else text, file=file, flush=True)
    return report


def cmd_run_job(a) -> int:
    from .study.records import write_json_atomic
    from .study.runner import measuring_slots_for, run_specs

    text = Path(a.specs[1:]).read_text() if a.specs.startswith("@") else a.specs
    try:
        items = json.loads(text)
    except ValueError as e:
        raise SpecError(f"--specs is not valid JSON: {e}") from None
    if not isinstance(items, list) or not items:
        raise SpecError("--specs must be a non-empty JSON list of run specs")
    specs = [RunSpec.from_dict(d) for d in items]
    if a.lr_from:
        from .study.lr_select import load_choices, resolve

        choices = load_choices(a.lr_from)
        specs = [resolve(s, choices, a.lr_from) for s in specs]
    if len({s.framework for s in specs}) > 1:
        raise SpecError("a batch must hold one framework (one framework per process)")
    if len({s.threads for s in specs}) > 1:
        raise SpecError("a batch must hold one thread count (thread pools are set once)")
    with measuring_slots_for(specs) as waited:
        # Waiting is idle time, not overhead of the job: the log says how long it was.
        print(f"slot wait {waited:.1f} s", file=sys.stderr, flush=True)
        errors = run_specs(specs, Path(a.out_dir), data_dir=a.data_dir,
                           allow_pickle=a.allow_pickle, mem_limit_mb=a.mem_limit_mb,
                           save_model=a.save_model, after_run=_progress(a, file=sys.stderr),
                           drop=_drop(a.drop_behind))
    if a.done:
        write_json_atomic(a.done, [s.run_id for s in specs])
        # the job's one line on the console (its stderr goes to its log)
        _progress(a, file=sys.stdout)([])
    if errors:
        # Recorded, so the report lists them; the batch is through and the pipeline goes on.
        print(f"{errors} run(s) ended with status error (see their records); "
              "`snakemake --forcerun train_job` retries them", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    from .study.records import RecordWriteError

    a = build_parser().parse_args(argv)
    try:
        if a.verb == "list":
            return cmd_list()
        if a.verb == "train":
            return cmd_train(a)
        if a.verb == "run-job":
            return cmd_run_job(a)
        if a.verb == "aggregate":
            from .study import aggregate

            return aggregate.main(a.jobs, a.runs_dir, a.csv, a.parquet, a.lr_selections)
        if a.verb == "select-lr":
            from .study.lr_select import select_main

            return select_main(a.jobs, a.runs_dir, a.out, a.race)
        if getattr(a, "func", None):
            return a.func(a)
    except (SpecError, RecordWriteError) as e:
        print(f"python -m bench {a.verb}: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_BAD_INPUT
