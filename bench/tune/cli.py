"""The tune verbs of `python -m bench`: tune-create, tune-worker, tune-export, tune-final and
tune-status. Each parses its arguments and calls one function of the package."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..registry import FRAMEWORKS, SpecError
from .definition import final_frameworks, read_definition
from .export import export, run_final
from .storage import load
from .tickets import progress
from .worker import create, run_worker


def _json_arg(text: str):
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text()
        except OSError as e:
            raise SpecError(f"cannot read {text[1:]}: {e.strerror}") from None
    try:
        return json.loads(text)
    except ValueError as e:
        raise SpecError(f"--definition is not valid JSON: {e}") from None


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise SpecError(f"--seeds {text!r}: use comma-separated integers, e.g. 0,1,2") from None
    if not seeds or min(seeds) < 0:
        raise SpecError(f"--seeds {text!r}: use comma-separated non-negative integers")
    return seeds


def _cmd_create(a) -> int:
    create(_json_arg(a.definition), a.out)
    return 0


def _cmd_worker(a) -> int:
    if a.worker < 0:
        raise SpecError(f"--worker {a.worker}: must be >= 0")
    run_worker(a.study_dir, a.worker, done=a.done)
    return 0


def _cmd_export(a) -> int:
    try:
        export(a.study_dir, a.best, a.csv, a.parquet)
    except RuntimeError as e:
        print(f"python -m bench tune-export: error: {e}", file=sys.stderr)
        return 1
    return 0


def _cmd_final(a) -> int:
    framework = a.framework
    if framework is None:
        frameworks = final_frameworks(read_definition(a.study_dir))
        if len(frameworks) > 1:
            raise SpecError(f"--framework: the final runs are in {', '.join(frameworks)}; "
                            "one process runs one framework, name it")
        framework = frameworks[0]
    return run_final(a.study_dir, framework, a.out_dir, _seeds(a.seeds) if a.seeds else None,
                     a.done, a.save_model, a.transfer_from)


def _cmd_status(a) -> int:
    defn = read_definition(a.study_dir)
    study = load(defn, a.study_dir)
    p = progress(study.get_trials(deepcopy=False), defn["trials"])
    print(json.dumps({"study": defn["name"], **p}, sort_keys=True))
    return 0


def add_parsers(sub) -> None:
    """The tune verbs of `python -m bench` (called by bench.cli)."""
    c = sub.add_parser("tune-create", help="create an Optuna study (once) with its N trial "
                                           "tickets; write its definition (study.json)")
    c.add_argument("--definition", required=True,
                   help="study definition as JSON, or @file (the workflow builds it from "
                        "config `tune:`)")
    c.add_argument("--out", required=True, help="results/tune/<study>/study.json; the journal "
                                                "goes beside it")
    c.set_defaults(func=_cmd_create)
    w = sub.add_parser("tune-worker", help="optimise into a study until its N trials are done "
                                           "(run K of these at once)")
    w.add_argument("--study-dir", required=True, help="results/tune/<study>")
    w.add_argument("--worker", type=int, default=0, help="worker index (sampler seed offset)")
    w.add_argument("--done", help="write this JSON summary when the worker is through")
    w.set_defaults(func=_cmd_worker)
    e = sub.add_parser("tune-export", help="best parameters (best.json) and trials table "
                                           "(trials.csv, trials.parquet) of a finished study")
    e.add_argument("--study-dir", required=True)
    e.add_argument("--best", help="default STUDY_DIR/best.json")
    e.add_argument("--csv", help="default STUDY_DIR/trials.csv")
    e.add_argument("--parquet", help="default STUDY_DIR/trials.parquet")
    e.set_defaults(func=_cmd_export)
    f = sub.add_parser("tune-final", help="final measured runs with a study's best parameters "
                                          "in one framework, one per seed (skips existing "
                                          "records)")
    f.add_argument("--study-dir", required=True)
    f.add_argument("--framework", choices=FRAMEWORKS,
                   help="the framework of these runs (needed when the study has several)")
    f.add_argument("--seeds", help="comma-separated seeds (default: the study's final seeds "
                                   "of that framework)")
    f.add_argument("--transfer-from", metavar="STUDY_DIR",
                   help="also run that (smaller size's) study's best parameters at this size")
    f.add_argument("--out-dir", default="results/runs")
    f.add_argument("--done", help="write this JSON list of run ids when the runs are through")
    f.add_argument("--save-model", action="store_true",
                   help="keep each run's tested weights beside its record (for translate)")
    f.set_defaults(func=_cmd_final)
    s = sub.add_parser("tune-status", help="a study's progress as one JSON line")
    s.add_argument("--study-dir", required=True)
    s.set_defaults(func=_cmd_status)
