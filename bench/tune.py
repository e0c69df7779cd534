"""Optuna hyperparameter studies: one study per (family, framework, dataset, size) cell.

Tuning is how the report compares like with like: each size gets its best configuration
instead of one fixed learning rate that favours some sizes. A study is created once
(``tune-create``), K worker processes optimise into it concurrently (``tune-worker``), its
best parameters and trials table are exported (``tune-export``) and the final measured runs
use them with several seeds (``tune-final``). This module imports optuna lazily and never
imports a framework itself: trials train through ``bench.train.run`` and the backend the
study names, one framework per worker process.

Storage. ``JournalStorage(JournalFileBackend)`` at ``results/tune/<study>/journal.log`` by
default (an append-only log: safe under parallel workers where SQLite's locks are not), or
any Optuna RDB URL (PostgreSQL on a cluster).

Exactly N trials, however many workers. ``tune-create`` puts N *tickets* into the study:
WAITING trials tagged ``bench:ticket`` = 0..N-1. A worker only ever runs a trial it popped
from a ticket (WAITING -> RUNNING is an atomic compare-and-set in both the journal and the
RDB storage, so two workers racing for the N-th trial cannot both get it) and never creates
a trial of its own; when no ticket is left it exits. The budget is therefore N by
construction, not by a count a second worker might read a moment too early.

Resume. A worker writes its owner (host, boot id, pid and process start time) and a
heartbeat into each trial it runs. Before each trial every worker *reaps* RUNNING trials
whose owner is gone: on the same machine that is exact (the pid is dead or belongs to
another process); elsewhere the heartbeat is older than ``grace_s``. A reaped trial is
marked FAIL with ``bench:void = lost`` and its ticket is reissued with the same parameters
(``retry_of``), so its budget is retried; finished trials are never rerun. Two workers may
reissue the same ticket at the same moment; the journal orders trials, and the first live
trial of a ticket wins: a later duplicate is voided (FAIL, ``bench:void = duplicate``) by
whoever pops it, before it trains. Void trials stay in the trials table (column ``void``)
but never count towards the N.

Outcomes. A finished run gives COMPLETE with the validation accuracy (and throughput and
memory in multi-objective mode); a pruned run, or one that diverged (NaN loss) or ran out of
memory, gives PRUNED (the sampler then ranks it below the completed trials, so TPE learns
to avoid a learning rate that diverges); an unexpected exception gives FAIL. All three count
towards N and the study goes on.

Multi-objective mode (accuracy vs training throughput, optionally peak memory). Optuna's
pruners and ``trial.should_prune`` refuse multi-objective studies, so this module prunes
such trials itself by *rung Pareto dominance*: at epoch e a trial stops if a completed trial
had, at the same epoch, a higher validation accuracy and at least the same throughput (and,
with the memory objective on CPU, no more peak memory than this trial has already used).
Throughput is known from the first epoch and hardly changes with training, so a trial that
is both slower and behind an existing trial at the same point of training is unlikely to
reach the Pareto front; a fast trial of low accuracy is never stopped for its accuracy
alone, which is what keeps the fast end of the front. Pruned trials carry their curve in
``user_attrs.curve``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import socket
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from .spec import DATASETS, FRAMEWORKS, RunSpec, SpecError, check_family_reads, size_of

# ---------------------------------------------------------------------------- vocabulary

# objective name -> ((metric name, direction), ...); the first metric is always accuracy
OBJECTIVES: dict[str, tuple[tuple[str, str], ...]] = {
    "accuracy": (("val_acc", "maximize"),),
    "accuracy_throughput": (("val_acc", "maximize"), ("train_samples_per_s", "maximize")),
    "accuracy_throughput_memory": (
        ("val_acc", "maximize"),
        ("train_samples_per_s", "maximize"),
        ("peak_mem_mb", "minimize"),
    ),
}
OBJECTIVE_CODES = {"accuracy": "acc", "accuracy_throughput": "acc-thr",
                   "accuracy_throughput_memory": "acc-thr-mem"}
SAMPLERS = ("tpe", "random", "qmc", "nsga2")
PRUNERS = ("hyperband", "median", "successive_halving", "threshold", "none")
DISTRIBUTIONS = ("float", "int", "categorical")
# RunSpec fields a study may tune, and the distribution kinds that make sense for each
TUNABLE: dict[str, tuple[str, ...]] = {
    "lr": ("float",),
    "weight_decay": ("float",),
    "l2": ("float",),
    "dropout": ("float",),
    "optimizer": ("categorical",),
    "lr_schedule": ("categorical",),
    "batchnorm": ("categorical",),
    "batch_size": ("categorical", "int"),
    "patience": ("int", "categorical"),
    "label_smoothing": ("float",),
}

# Defaults for a definition built outside the workflow; the config schema holds the same.
DEFAULT_SPACE = [
    {"name": "lr", "type": "float", "low": 1e-4, "high": 3e-2, "log": True},
    {"name": "optimizer", "type": "categorical", "choices": ["adam", "adamw", "momentum"]},
    {"name": "batch_size", "type": "categorical", "choices": [32, 64, 128]},
    {"name": "weight_decay", "type": "float", "low": 1e-5, "high": 1e-1, "log": True},
    {"name": "dropout", "type": "float", "low": 0.0, "high": 0.3},
    {"name": "lr_schedule", "type": "categorical", "choices": ["none", "cosine"]},
]
DEFAULTS = {
    "objective": "accuracy",
    "trials": 20,
    "workers": 2,
    "epochs": 8,
    "max_steps": 0,
    "seed": 0,
    "final_seeds": [0, 1, 2],
    "base": {"optimizer": "adam", "lr": 1e-3, "batch_size": 64, "regulariser": "none"},
    "sampler": {"name": "tpe", "seed": 0, "startup_trials": 5},
    "pruner": {"name": "hyperband", "min_epochs": 1, "reduction_factor": 3,
               "startup_trials": 3, "threshold": 0.0},
    "storage": "journal",
    "heartbeat_s": 30.0,
    "grace_s": 300.0,
}

# system attributes this module keeps on trials
TICKET, VOID, OWNER, HEARTBEAT, RETRY_OF = (
    "bench:ticket", "bench:void", "bench:owner", "bench:heartbeat", "bench:retry_of")
DEFINITION_FILE, JOURNAL_FILE = "study.json", "journal.log"
BEST_FILE, CSV_FILE, PARQUET_FILE = "best.json", "trials.csv", "trials.parquet"


def _optuna():
    """Import optuna quietly (experimental-feature warnings would fill every log)."""
    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def _log(msg: str) -> None:
    print(f"[tune] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- search space


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_value(base: dict, name: str, value, where: str, what: str) -> None:
    """A value of a tuned field must make a valid RunSpec on its own."""
    try:
        RunSpec.create(regulariser=base.get("regulariser", "none"),
                       **{**{k: v for k, v in base.items() if k != "regulariser"}, name: value})
    except SpecError as e:
        raise SpecError(f"{where}: {what} {value!r} is not a valid {name} ({e})") from None
    except TypeError:
        raise SpecError(f"{where}: {what} {value!r} is not a valid {name}") from None


def parse_space(space, base: dict, where: str = "space") -> dict[str, dict]:
    """Validate a framework-neutral search space; returns it normalised.

    The config gives a list of ``{name, type, ...}`` entries (a list, because Snakemake
    merges ``--config tune=...`` overrides into the config key by key: a dict space would
    become the union of both spaces, a list is replaced whole); the normalised form, also
    accepted, is a dict name -> distribution. Each entry names a RunSpec field and its
    distribution: ``float``/``int`` with ``low``, ``high`` and optional ``log`` or
    ``step``; ``categorical`` with ``choices``. Raises SpecError with one line naming the
    parameter and the bad value.
    """
    if isinstance(space, list):
        entries = {}
        for i, d in enumerate(space):
            if not isinstance(d, dict) or "name" not in d:
                raise SpecError(f"{where}[{i}]: needs a name, e.g. {{name: lr, type: float, "
                                "low: .., high: ..}")
            if d["name"] in entries:
                raise SpecError(f"{where}[{i}]: parameter {d['name']!r} is listed twice")
            entries[d["name"]] = {k: v for k, v in d.items() if k != "name"}
        space = entries
    if not isinstance(space, dict) or not space:
        raise SpecError(f"{where}: the search space must name at least one parameter")
    out: dict[str, dict] = {}
    for name, d in space.items():
        at = f"{where}.{name}"
        if name not in TUNABLE:
            raise SpecError(f"{at}: unknown parameter {name!r}; tunable: {', '.join(TUNABLE)}")
        if not isinstance(d, dict) or "type" not in d:
            raise SpecError(f"{at}: needs a distribution, e.g. {{type: float, low: .., high: ..}}")
        kind = d["type"]
        if kind not in DISTRIBUTIONS:
            raise SpecError(f"{at}: unknown distribution {kind!r}; "
                            f"allowed: {', '.join(DISTRIBUTIONS)}")
        if kind not in TUNABLE[name]:
            raise SpecError(f"{at}: distribution {kind!r} does not fit {name}; "
                            f"use {' or '.join(TUNABLE[name])}")
        allowed = {"type", "choices"} if kind == "categorical" else {"type", "low", "high",
                                                                     "log", "step"}
        extra = sorted(set(d) - allowed)
        if extra:
            article = "an" if kind == "int" else "a"
            raise SpecError(f"{at}: key {extra[0]!r} does not belong to {article} {kind} "
                            "distribution")
        if kind == "categorical":
            choices = d.get("choices")
            if not isinstance(choices, list) or not choices:
                raise SpecError(f"{at}: categorical needs a non-empty list of choices")
            if len({json.dumps(c) for c in choices}) != len(choices):
                raise SpecError(f"{at}: choices repeat a value")
            for c in choices:
                if not isinstance(c, (str, int, float, bool)) or c is None:
                    raise SpecError(f"{at}: choice {c!r} is not a string, number or boolean")
                _check_value(base, name, c, at, "choice")
            out[name] = {"type": kind, "choices": list(choices)}
            continue
        low, high = d.get("low"), d.get("high")
        for key, v in (("low", low), ("high", high)):
            if not _is_number(v) or (kind == "int" and not float(v).is_integer()):
                what = "an integer" if kind == "int" else "a number"
                raise SpecError(f"{at}: {key} must be {what}, got {v!r}")
        if low > high:
            raise SpecError(f"{at}: low {low!r} > high {high!r}")
        log, step = bool(d.get("log", False)), d.get("step")
        if log and low <= 0:
            raise SpecError(f"{at}: a log distribution needs low > 0, got {low!r}")
        if step is not None:
            if log:
                raise SpecError(f"{at}: step and log cannot be combined")
            bad_int = kind == "int" and _is_number(step) and not float(step).is_integer()
            if not _is_number(step) or step <= 0 or bad_int:
                raise SpecError(f"{at}: step must be a positive number, got {step!r}")
        for key, v in (("low", low), ("high", high)):
            _check_value(base, name, int(v) if kind == "int" else float(v), at, key)
        norm = {"type": kind, "low": int(low) if kind == "int" else float(low),
                "high": int(high) if kind == "int" else float(high), "log": log}
        if step is not None:
            norm["step"] = int(step) if kind == "int" else float(step)
        out[name] = norm
    return out


def distributions(space: dict[str, dict]) -> dict:
    """The Optuna distribution of each parameter of a parsed space."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    out = {}
    for name, d in space.items():
        if d["type"] == "categorical":
            out[name] = CategoricalDistribution(d["choices"])
        elif d["type"] == "float":
            out[name] = FloatDistribution(d["low"], d["high"], log=d["log"], step=d.get("step"))
        else:
            out[name] = IntDistribution(d["low"], d["high"], log=d["log"], step=d.get("step", 1))
    return out


def spec_for(defn: dict, params: dict, seed: int | None = None, tuned: str = "") -> RunSpec:
    """The RunSpec of a trial (or a final run) of study `defn` with parameters `params`."""
    base = dict(defn["base"])
    reg = base.pop("regulariser", "none")
    kw = {**base, **params, "seed": defn["seed"] if seed is None else seed}
    if tuned:
        kw["tuned"] = tuned
    return RunSpec.create(regulariser=reg, **kw)


# ---------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class TuneStudy:
    """One study the workflow schedules: its definition and how many workers optimise it."""

    name: str
    definition: dict
    workers: int
    final_seeds: tuple[int, ...]


def _merge(default: dict, given: dict | None) -> dict:
    return {**default, **(given or {})}


# keys that do not change what a study computes: kept out of its name's hash, so more trials
# or workers continue the same study instead of starting a new one
_NOT_HASHED = ("name", "trials", "workers", "final_seeds", "storage", "heartbeat_s", "grace_s",
               "data_dir", "allow_pickle")


def study_name(defn: dict) -> str:
    """Readable cell prefix plus a hash of everything that changes the study's results."""
    key = {k: v for k, v in defn.items() if k not in _NOT_HASHED}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:8]
    c = defn["cell"]
    code = OBJECTIVE_CODES[defn["objective"]]
    return f"{c['family']}-{c['framework']}-{c['dataset']}-{c['size']}-{code}-{digest}"


def make_definition(tune: dict, cell: dict, config: dict | None = None,
                    where: str = "tune") -> dict:
    """One study's full definition from the `tune` settings and a cell; checks everything.

    `config` supplies the run settings shared with the main study (device, threads,
    measurement, data_dir); missing keys take their schema defaults.
    """
    config = config or {}
    t = {**DEFAULTS, **tune}
    for key in ("base", "sampler", "pruner"):
        t[key] = _merge(DEFAULTS[key], tune.get(key))
    try:
        size_of(cell["family"], cell["size"])
    except SpecError as e:
        raise SpecError(f"{where}.studies: {e}") from None
    if cell["framework"] not in FRAMEWORKS:
        raise SpecError(f"{where}.studies: unknown framework {cell['framework']!r}")
    if cell["dataset"] not in DATASETS:
        raise SpecError(f"{where}.studies: unknown dataset {cell['dataset']!r}")
    try:
        check_family_reads(cell["family"], cell["dataset"])
    except SpecError as e:
        raise SpecError(f"{where}.studies: {e}") from None
    objective = cell.get("objective") or t["objective"]
    if objective not in OBJECTIVES:
        raise SpecError(f"{where}.objective: unknown objective {objective!r}; "
                        f"allowed: {', '.join(OBJECTIVES)}")
    measure = config.get("measure", {}) or {}
    base = {
        "family": cell["family"], "framework": cell["framework"], "dataset": cell["dataset"],
        "size": cell["size"], "optimizer": t["base"]["optimizer"], "lr": t["base"]["lr"],
        "batch_size": t["base"]["batch_size"], "regulariser": t["base"]["regulariser"],
        "epochs": t["epochs"], "max_steps": t["max_steps"],
        "device": config.get("device", "cpu"), "threads": config.get("threads", 1),
        "compile": config.get("compile", False),
        **{k: measure[k] for k in ("warmup_steps", "block_steps", "block_seconds") if k in measure},
    }
    try:
        spec_for({"base": base, "seed": t["seed"]}, {})
    except SpecError as e:
        raise SpecError(f"{where}.base: {e}") from None
    space = parse_space(t["space"] if "space" in tune else DEFAULT_SPACE, base, f"{where}.space")
    sampler, pruner = t["sampler"], t["pruner"]
    if sampler["name"] not in SAMPLERS:
        raise SpecError(f"{where}.sampler.name: unknown sampler {sampler['name']!r}; "
                        f"allowed: {', '.join(SAMPLERS)}")
    if pruner["name"] not in PRUNERS:
        raise SpecError(f"{where}.pruner.name: unknown pruner {pruner['name']!r}; "
                        f"allowed: {', '.join(PRUNERS)}")
    if pruner["min_epochs"] > t["epochs"]:
        raise SpecError(f"{where}.pruner.min_epochs: {pruner['min_epochs']} > epochs "
                        f"{t['epochs']} (nothing could be pruned)")
    if t["grace_s"] < 3 * t["heartbeat_s"]:
        raise SpecError(f"{where}.grace_s: {t['grace_s']} is under 3 x heartbeat_s "
                        f"({t['heartbeat_s']}); live workers would be declared lost")
    storage: dict = {"kind": t["storage"]}
    if t["storage"] == "rdb":
        if not (t.get("rdb_url") or t.get("rdb_url_env")):
            raise SpecError(f"{where}.storage: rdb needs rdb_url or rdb_url_env")
        storage.update({k: t[k] for k in ("rdb_url", "rdb_url_env") if t.get(k)})
    elif t["storage"] != "journal":
        raise SpecError(f"{where}.storage: {t['storage']!r} is not one of journal, rdb")
    for key in ("trials", "workers"):
        n = cell.get(key) or t[key]
        if not isinstance(n, int) or n < 1:
            raise SpecError(f"{where}.{key}: must be a positive integer, got {n!r}")
    seeds = list(t["final_seeds"])
    if not seeds or any(not isinstance(s, int) or s < 0 for s in seeds):
        raise SpecError(f"{where}.final_seeds: need one or more non-negative integers")
    data_dir = config.get("data_dir", "data")
    f = DATASETS[cell["dataset"]].file
    if f and not (Path(data_dir) / f).is_file():
        raise SpecError(f"{where}.studies: {cell['dataset']!r} needs {Path(data_dir) / f}, "
                        "which does not exist")
    if cell["dataset"] == "imdb" and not config.get("allow_pickle", False):
        raise SpecError("allow_pickle: dataset 'imdb' needs allow_pickle: true")
    defn = {
        "cell": {k: cell[k] for k in ("family", "framework", "dataset", "size")},
        "objective": objective,
        "metrics": [m for m, _ in OBJECTIVES[objective]],
        "directions": [d for _, d in OBJECTIVES[objective]],
        "base": base,
        "seed": t["seed"],
        "space": space,
        "sampler": {k: sampler[k] for k in ("name", "seed", "startup_trials")},
        "pruner": {k: pruner[k] for k in ("name", "min_epochs", "reduction_factor",
                                          "startup_trials", "threshold")},
        "mem_limit_mb": config.get("mem_limit_mb", 0),
        "trials": cell.get("trials") or t["trials"],
        "workers": cell.get("workers") or t["workers"],
        "final_seeds": seeds,
        "storage": storage,
        "heartbeat_s": float(t["heartbeat_s"]),
        "grace_s": float(t["grace_s"]),
        "data_dir": data_dir,
        "allow_pickle": bool(config.get("allow_pickle", False)),
    }
    defn["name"] = study_name(defn)
    return defn


def plan_studies(config: dict) -> list[TuneStudy]:
    """Every study the (validated) config asks for, in a stable order; [] when none.

    Raises SpecError with one line naming the config key for what a schema cannot check
    (low > high, a choice that is not a valid optimizer, ...).
    """
    tune = config.get("tune") or {}
    out: dict[str, TuneStudy] = {}
    for i, entry in enumerate(tune.get("studies") or []):
        for size in entry.get("sizes") or []:
            cell = {**entry, "size": size}
            d = make_definition(tune, cell, config, "config key tune")
            if d["name"] in out:
                raise SpecError(f"config key tune.studies[{i}]: study {d['name']} is listed twice")
            out[d["name"]] = TuneStudy(d["name"], d, d["workers"], tuple(d["final_seeds"]))
    return list(out.values())


# Paths the workflow (workflow/rules/tune.smk) schedules, kept here so the rules stay plain.


def quoted_definition(study: TuneStudy) -> str:
    """The definition as one shell-quoted JSON argument."""
    import shlex

    return shlex.quote(json.dumps(study.definition, sort_keys=True, separators=(",", ":")))


def worker_files(study: TuneStudy) -> list[str]:
    return [f"results/tune/{study.name}/workers/{k}.json" for k in range(study.workers)]


def final_files(studies) -> list[str]:
    """Done files of the final runs of every study (the aggregate rule's extra input)."""
    return [f"results/tune/{s.name}/final.json" for s in sorted(studies, key=lambda s: s.name)]


def check_definition(defn) -> dict:
    """Re-check a definition given on the command line; returns it with its name."""
    if not isinstance(defn, dict):
        raise SpecError("the study definition must be a JSON object")
    known = {"cell", "objective", "metrics", "directions", "base", "seed", "space", "sampler",
             "pruner", "mem_limit_mb", "trials", "workers", "final_seeds", "storage",
             "heartbeat_s", "grace_s", "data_dir", "allow_pickle", "name"}
    unknown = sorted(set(defn) - known)
    if unknown:
        raise SpecError(f"unknown key {unknown[0]!r} in the study definition")
    if not isinstance(defn.get("cell"), dict):
        raise SpecError("the study definition needs a cell {family, framework, dataset, size}")
    base = defn.get("base") or {}
    tune = {k: defn[k] for k in ("objective", "seed", "space", "sampler", "pruner", "trials",
                                 "workers", "final_seeds", "heartbeat_s", "grace_s") if k in defn}
    storage = defn.get("storage") or {"kind": "journal"}
    tune["storage"] = storage.get("kind", "journal")
    tune.update({k: storage[k] for k in ("rdb_url", "rdb_url_env") if k in storage})
    tune.update({k: base[k] for k in ("epochs", "max_steps") if k in base})
    tune["base"] = {k: base[k] for k in ("optimizer", "lr", "batch_size", "regulariser")
                    if k in base}
    config = {k: base[k] for k in ("device", "threads", "compile") if k in base}
    config["measure"] = {k: base[k] for k in ("warmup_steps", "block_steps", "block_seconds")
                         if k in base}
    config.update({k: defn[k] for k in ("data_dir", "allow_pickle", "mem_limit_mb") if k in defn})
    cell = dict(defn["cell"])
    for key in ("family", "framework", "dataset", "size"):
        if key not in cell:
            raise SpecError(f"the study definition's cell needs {key!r}")
    out = make_definition(tune, cell, config, "definition")
    if defn.get("name") and defn["name"] != out["name"]:
        raise SpecError(f"study name {defn['name']!r} does not match its definition "
                        f"({out['name']})")
    return out


# ---------------------------------------------------------------------------- storage


def read_definition(study_dir: str | Path) -> dict:
    path = Path(study_dir) / DEFINITION_FILE
    try:
        return json.loads(path.read_text())
    except OSError:
        raise SpecError(f"{path} does not exist; run `python -m bench tune-create` first") from None
    except ValueError as e:
        raise SpecError(f"{path} is not valid JSON: {e}") from None


def open_storage(defn: dict, study_dir: str | Path):
    """The study's Optuna storage: the journal file in `study_dir`, or the RDB URL."""
    optuna = _optuna()
    st = defn["storage"]
    if st["kind"] == "rdb":
        url = st.get("rdb_url")
        if st.get("rdb_url_env"):
            url = os.environ.get(st["rdb_url_env"]) or url
        if not url:
            raise SpecError(f"environment variable {st['rdb_url_env']} (the study's RDB URL) "
                            "is not set")
        return optuna.storages.RDBStorage(url)
    from optuna.storages.journal import JournalFileBackend

    Path(study_dir).mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(str(Path(study_dir) / JOURNAL_FILE)))


def storage_label(defn: dict, study_dir: str | Path) -> str:
    st = defn["storage"]
    if st["kind"] == "rdb":
        return f"rdb (${st['rdb_url_env']})" if st.get("rdb_url_env") else "rdb"
    return f"journal {Path(study_dir) / JOURNAL_FILE}"


def make_sampler(defn: dict, worker: int = 0, started: int = 0):
    """The study's sampler; each worker gets its own seed (QMC: one shared sequence).

    `started` (trials already begun in the study) enters the seed too, so a worker that
    resumes a study does not replay the random draws of its killed predecessor.
    """
    optuna = _optuna()
    s = defn["sampler"]
    seed = (s["seed"] + 1009 * worker + 7919 * started) % 2**32
    if s["name"] == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=s["startup_trials"],
                                          multivariate=True, constant_liar=True)
    if s["name"] == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if s["name"] == "qmc":
        # one scrambled Sobol sequence for the whole study: every worker uses the same seed
        # and Optuna hands out the sequence's points in order through the storage
        return optuna.samplers.QMCSampler(seed=s["seed"], scramble=True,
                                          independent_sampler=optuna.samplers.RandomSampler(seed))
    return optuna.samplers.NSGAIISampler(seed=seed,
                                         population_size=max(2, s["startup_trials"] or 2))


def make_pruner(defn: dict):
    """Optuna's pruner for single-objective studies (multi-objective ones prune themselves)."""
    optuna = _optuna()
    p, epochs = defn["pruner"], defn["base"]["epochs"]
    if p["name"] == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=p["min_epochs"], max_resource=epochs,
                                              reduction_factor=p["reduction_factor"])
    if p["name"] == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=p["min_epochs"],
                                                      reduction_factor=p["reduction_factor"])
    if p["name"] == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=p["startup_trials"],
                                           n_warmup_steps=p["min_epochs"])
    if p["name"] == "threshold":
        return optuna.pruners.ThresholdPruner(lower=p["threshold"], n_warmup_steps=p["min_epochs"])
    return optuna.pruners.NopPruner()


def load(defn: dict, study_dir: str | Path, storage=None, sampler=None, pruner=None):
    """The study as a fresh Study object (no cached trials from an earlier trial)."""
    optuna = _optuna()
    storage = storage or open_storage(defn, study_dir)
    try:
        return optuna.load_study(study_name=defn["name"], storage=storage,
                                 sampler=sampler or make_sampler(defn),
                                 pruner=pruner or make_pruner(defn))
    except KeyError:
        raise SpecError(f"study {defn['name']} is not in its storage; run "
                        "`python -m bench tune-create` first") from None


# ---------------------------------------------------------------------------- tickets


def _state(t):
    return t.state.name


def is_void(t) -> bool:
    """Lost or duplicate bookkeeping trials: FAIL with a `bench:void` mark."""
    return t.state.name == "FAIL" and bool(t.system_attrs.get(VOID))


def holders(trials, n: int) -> dict[int, object]:
    """Ticket -> the trial that holds it: its first (lowest-numbered) trial that is not void.

    The journal totally orders trials, so every worker agrees on the holder.
    """
    out: dict[int, object] = {}
    for t in sorted(trials, key=lambda t: t.number):
        k = t.system_attrs.get(TICKET)
        if k is None or k >= n or k in out or is_void(t):
            continue
        out[k] = t
    return out


def progress(trials, n: int) -> dict:
    """Counts the workflow and the tests check: finished budget trials out of n."""
    held = holders(trials, n)
    finished = [t for t in held.values() if t.state.is_finished()]
    by_state: dict[str, int] = {}
    for t in finished:
        by_state[_state(t)] = by_state.get(_state(t), 0) + 1
    return {
        "trials": n,
        "finished": len(finished),
        "running": sum(_state(t) == "RUNNING" for t in held.values()),
        "waiting": sum(_state(t) == "WAITING" for t in held.values()),
        "void": sum(is_void(t) for t in trials),
        "states": by_state,
    }


def issue_tickets(study, n: int) -> int:
    """Make sure each ticket 0..n-1 has a holder; returns how many tickets were (re)issued.

    A ticket whose trials are all void (its trial was lost) is reissued with the lost
    trial's parameters. Two processes doing this at once may both reissue a ticket; the
    later copy is voided when popped (see `claim`).
    """
    from optuna.trial import TrialState, create_trial

    trials = study.get_trials(deepcopy=False)
    held = holders(trials, n)
    issued = 0
    for k in range(n):
        if k in held:
            continue
        lost = [t for t in trials if t.system_attrs.get(TICKET) == k and is_void(t)]
        system: dict = {"fixed_params": {}, TICKET: k}
        user: dict = {}
        if lost:
            last = max(lost, key=lambda t: t.number)
            system["fixed_params"] = dict(last.params)
            system[RETRY_OF] = last.number
            user["retry_of"] = last.number
        study.add_trial(create_trial(state=TrialState.WAITING, system_attrs=system,
                                     user_attrs=user))
        issued += 1
    return issued


def claim(study, n: int):
    """Pop a ticket: atomically turn one WAITING trial into RUNNING for this process.

    Returns the FrozenTrial, or None when no ticket is left. A popped trial that is not
    its ticket's holder (a duplicate reissue) is voided and the next one is tried.
    """
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    storage = study._storage
    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    for t in sorted(waiting, key=lambda t: t.number):
        k = t.system_attrs.get(TICKET)
        if k is None or k >= n:
            continue
        try:
            if not storage.set_trial_state_values(t._trial_id, state=TrialState.RUNNING):
                continue
        except UpdateFinishedTrialError:
            continue
        holder = holders(study.get_trials(deepcopy=False), n).get(k)
        if holder is not None and holder.number != t.number:
            storage.set_trial_system_attr(t._trial_id, VOID, "duplicate")
            storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
            _log(f"trial {t.number}: duplicate of ticket {k} (held by trial {holder.number}); "
                 "voided")
            continue
        return t
    return None


# ---------------------------------------------------------------------------- liveness


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _start_ticks(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (None: no such live process)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else fields[19]  # a zombie is dead too


def owner_info(worker: int) -> dict:
    pid = os.getpid()
    return {"host": socket.gethostname(), "boot": _boot_id(), "pid": pid,
            "start": _start_ticks(pid) or "", "worker": worker}


def owner_alive(owner: dict | None, last_beat: float | None, grace_s: float,
                now: float | None = None) -> bool:
    """Whether the process that runs a trial is still there.

    Same machine (host and boot id match): exact, from /proc (a reused pid has another
    start time). Another machine: its heartbeat is younger than `grace_s`.
    """
    now = time.time() if now is None else now
    if owner and owner.get("host") == socket.gethostname() and owner.get("boot") == _boot_id():
        if not Path("/proc/self/stat").exists():  # not Linux: the pid is all we have
            try:
                os.kill(int(owner["pid"]), 0)
                return True
            except ProcessLookupError:
                return False
            except PermissionError:
                return True
        return _start_ticks(int(owner["pid"])) == (owner.get("start") or None)
    return last_beat is not None and now - last_beat <= grace_s


def reap(study, defn: dict) -> int:
    """Mark RUNNING trials whose worker is gone as FAIL (void: lost); returns how many."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    storage = study._storage
    n = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        beat = t.system_attrs.get(HEARTBEAT)
        if beat is None and t.datetime_start is not None:
            beat = t.datetime_start.timestamp()
        owner = t.system_attrs.get(OWNER)
        if owner is None:  # popped a moment ago; its owner is being written
            if beat is not None and time.time() - beat <= defn["grace_s"]:
                continue
        elif owner_alive(owner, beat, defn["grace_s"]):
            continue
        try:
            storage.set_trial_system_attr(t._trial_id, VOID, "lost")
            storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
        except UpdateFinishedTrialError:
            continue  # finished meanwhile, or another worker reaped it first
        who = f"pid {owner['pid']} on {owner['host']}" if owner else "an unknown worker"
        _log(f"trial {t.number} (ticket {t.system_attrs.get(TICKET)}) was left running by "
             f"{who}, which is gone: marked lost; its parameters run again")
        n += 1
    return n


class Heartbeat:
    """Writes the time into the trial every `every` seconds while training runs."""

    def __init__(self, storage, trial_id: int, every: float):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(storage, trial_id, every),
                                        daemon=True)

    def _beat(self, storage, trial_id, every):
        while not self._stop.wait(every):
            try:
                storage.set_trial_system_attr(trial_id, HEARTBEAT, time.time())
            except Exception:  # noqa: BLE001 - the trial finished or storage hiccup: stop
                return

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


# ---------------------------------------------------------------------------- trials


def suggest(trial, space: dict[str, dict]) -> dict:
    """Ask the trial for every parameter of the space, in a fixed order."""
    params = {}
    for name, d in space.items():
        if d["type"] == "categorical":
            params[name] = trial.suggest_categorical(name, d["choices"])
        elif d["type"] == "float":
            params[name] = trial.suggest_float(name, d["low"], d["high"], log=d["log"],
                                               step=d.get("step"))
        else:
            params[name] = trial.suggest_int(name, d["low"], d["high"], log=d["log"],
                                             step=d.get("step", 1))
    return params


def _rate(point: dict, batch: int) -> float:
    """Samples per second so far in a run (training plus evaluation): same rule for all."""
    return point["step"] * batch / max(point["elapsed_s"], 1e-9)


def pareto_rung_prune(point: dict, rate: float, mem_now: float | None, completed: list,
                      defn: dict) -> int | None:
    """Multi-objective pruning: the number of a completed trial that dominates this one at
    the same epoch (higher val_acc, at least the rate, no more memory), else None."""
    p = defn["pruner"]
    if p["name"] == "none" or point["epoch"] < p["min_epochs"]:
        return None
    if len(completed) < max(p["startup_trials"], 1):
        return None
    mem_objective = "peak_mem_mb" in defn["metrics"]
    if mem_objective and mem_now is None:
        return None
    for t in completed:
        curve = {int(c[0]): c for c in t.user_attrs.get("curve") or []}
        c = curve.get(point["epoch"])
        if c is None or not (c[1] > point["val_acc"] and c[2] >= rate):
            continue
        if mem_objective:
            mem_c = t.values[defn["metrics"].index("peak_mem_mb")]
            if mem_c is None or mem_c > mem_now:
                continue
        return t.number
    return None


class _Trainer:
    """Trains a trial's spec with this worker's backend and dataset (loaded once)."""

    def __init__(self, defn: dict):
        self.defn = defn
        self.backend = None
        self.data = None

    def __call__(self, spec: RunSpec, on_epoch) -> dict:
        from . import train
        from .backend_api import load_backend
        from .data import load as load_data

        if self.backend is None:
            self.backend = load_backend(spec.framework)
            self.data = load_data(spec.dataset, self.defn["data_dir"], self.defn["allow_pickle"])
        return train.run(spec, self.data, self.backend, on_epoch=on_epoch,
                         mem_limit_mb=self.defn.get("mem_limit_mb", 0))


def _memory(record: dict) -> float | None:
    dev = record.get("peak_device_mem_mb")
    return dev if dev is not None else record.get("peak_rss_mb")


def run_trial(study, frozen, defn: dict, worker: int, train_fn) -> dict:
    """Train one popped trial and tell Optuna its outcome; returns a short summary."""
    import traceback

    optuna = _optuna()
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    from .measure import peak_rss_mb

    storage = study._storage
    tid = frozen._trial_id
    storage.set_trial_system_attr(tid, OWNER, owner_info(worker))
    storage.set_trial_system_attr(tid, HEARTBEAT, time.time())
    trial = optuna.Trial(study, tid)
    multi = len(defn["directions"]) > 1
    t0 = time.time()
    curve: list[list[float]] = []
    params: dict = {}
    try:
        params = suggest(trial, defn["space"])
        spec = spec_for(defn, params)
        batch = spec.batch_size
        completed = (study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                     if multi else [])

        def on_epoch(epoch: int, point: dict) -> bool:
            data = getattr(train_fn, "data", None)
            n_train = len(data.y_train) if data is not None else 0
            b = batch if isinstance(batch, int) else n_train
            rate = _rate(point, min(b, n_train) if n_train else b)
            curve.append([epoch, point["val_acc"], rate])
            if epoch >= spec.epochs or (spec.max_steps and point["step"] >= spec.max_steps):
                if not multi:
                    trial.report(point["val_acc"], epoch)
                return False  # the run is through: stopping it now would save nothing
            if not multi:
                trial.report(point["val_acc"], epoch)
                return trial.should_prune()
            mem_now = peak_rss_mb() if spec.device == "cpu" else None
            by = pareto_rung_prune(point, rate, mem_now, completed, defn)
            if by is not None:
                trial.set_user_attr("pruned_by", by)
                return True
            return False

        with Heartbeat(storage, tid, defn["heartbeat_s"]):
            record = train_fn(spec, on_epoch)
    except SpecError as e:
        record = {"status": "error", "message": str(e)}
    except Exception as e:  # noqa: BLE001 - one failed trial must not stop the study
        traceback.print_exc()
        record = {"status": "error",
                  "message": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
    status = record.get("status", "error")
    attrs = {
        "status": status,
        "message": (record.get("message") or "")[:300],
        "epochs_trained": record.get("epochs_run", len(record.get("curve") or curve)),
        "steps": record.get("steps_run"),
        "duration_s": round(time.time() - t0, 3),
        "train_samples_per_s": record.get("train_samples_per_s"),
        "peak_mem_mb": _memory(record),
        "n_params": record.get("params"),
        "val_acc": record.get("val_acc"),
        "best_val_acc": record.get("best_val_acc"),
        "worker": worker,
        "curve": curve,
    }
    values = None
    state = TrialState.FAIL
    if status == "ok":
        got = [record.get(m) if m != "peak_mem_mb" else _memory(record) for m in defn["metrics"]]
        if all(v is not None and math.isfinite(v) for v in got):
            values, state = got, TrialState.COMPLETE
        else:
            attrs["message"] = f"missing objective values {got}"
    elif status in ("pruned", "diverged", "oom"):
        state = TrialState.PRUNED
    try:
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
        study.tell(trial, values, state=state)
    except UpdateFinishedTrialError:
        _log(f"trial {frozen.number}: was declared lost while it ran (heartbeat older than "
             f"grace_s); its result is discarded and the retry counts instead")
        return {"number": frozen.number, "state": "LOST", "params": params}
    shown = f"{values}" if values else status
    _log(f"trial {frozen.number} (ticket {frozen.system_attrs.get(TICKET)}): {state.name} "
         f"{shown} after {attrs['epochs_trained']} epoch(s), {params}")
    return {"number": frozen.number, "state": state.name, "params": params,
            "epochs": attrs["epochs_trained"]}


# ---------------------------------------------------------------------------- verbs


def create(defn: dict, out: str | Path) -> dict:
    """Create the study (once) with its N tickets; write its definition to `out`."""
    from .records import write_json_atomic

    optuna = _optuna()
    defn = check_definition(defn)
    study_dir = Path(out).parent
    storage = open_storage(defn, study_dir)
    study = optuna.create_study(study_name=defn["name"], storage=storage,
                                directions=defn["directions"], load_if_exists=True)
    if list(study.directions) != [getattr(optuna.study.StudyDirection, d.upper())
                                  for d in defn["directions"]]:
        raise SpecError(f"study {defn['name']} exists with other directions")
    study.set_metric_names(defn["metrics"])
    study.set_user_attr("definition", defn)
    issued = issue_tickets(study, defn["trials"])
    write_json_atomic(out, defn)
    p = progress(study.get_trials(deepcopy=False), defn["trials"])
    _log(f"study {defn['name']} ({storage_label(defn, study_dir)}): {issued} ticket(s) issued, "
         f"{p['finished']}/{defn['trials']} trials finished")
    return p


def run_worker(study_dir: str | Path, worker: int, train_fn=None, done: str | None = None) -> dict:
    """Pop and run tickets until none is left; reap lost trials and reissue their tickets.

    `train_fn(spec, on_epoch) -> record` defaults to real training with the study's
    framework (tests pass a fake). Takes a measuring CPU slot for each trial.
    """
    from .records import write_json_atomic
    from .slots import measuring_slots, visible_gpus

    defn = read_definition(study_dir)
    storage = open_storage(defn, study_dir)
    train_fn = train_fn or _Trainer(defn)
    n = defn["trials"]
    gpu = defn["base"]["device"] in ("cuda", "auto") and visible_gpus() > 0
    # one sampler per worker for its whole life (a sampler made anew for each trial would
    # restart its random stream), a fresh Study object per trial (no stale trial cache)
    started = sum(t.state.name != "WAITING"
                  for t in load(defn, study_dir, storage).get_trials(deepcopy=False))
    sampler, pruner = make_sampler(defn, worker, started), make_pruner(defn)
    ran: list[dict] = []
    while True:
        with measuring_slots(defn["base"]["threads"], gpu):
            study = load(defn, study_dir, storage, sampler, pruner)
            reap(study, defn)
            issue_tickets(study, n)
            frozen = claim(study, n)
            if frozen is None:
                break
            t0 = time.time()
            ran.append(run_trial(study, frozen, defn, worker, train_fn))
        if time.time() - t0 > 5:
            # let a job waiting for this CPU slot (another worker, a training batch) take it
            # before this worker grabs it again: slot waiters poll every 0.5 s
            time.sleep(0.6)
    p = progress(study.get_trials(deepcopy=False), n)
    _log(f"worker {worker}: ran {len(ran)} trial(s); study {defn['name']}: {p['finished']}/{n} "
         f"finished, {p['running']} running elsewhere")
    summary = {"study": defn["name"], "worker": worker, "ran": ran, "progress": p}
    if done:
        write_json_atomic(done, summary)
    return summary


def trials_table(study, defn: dict):
    """One row per trial: number, state, value(s), params_*, user_attrs_*, ticket, void."""
    import pandas as pd

    trials = study.get_trials(deepcopy=False)
    held = {t.number for t in holders(trials, defn["trials"]).values()}
    rows = []
    for t in trials:
        row = {"number": t.number, "state": _state(t)}
        for i, m in enumerate(defn["metrics"]):
            v = t.values[i] if t.values is not None and len(t.values) > i else None
            if len(defn["metrics"]) == 1:
                row["value"] = v
            row[f"values_{m}"] = v
        row["datetime_start"] = t.datetime_start.isoformat() if t.datetime_start else None
        row["datetime_complete"] = (t.datetime_complete.isoformat()
                                    if t.datetime_complete else None)
        row["duration"] = ((t.datetime_complete - t.datetime_start).total_seconds()
                           if t.datetime_complete and t.datetime_start else None)
        for k, v in t.params.items():
            row[f"params_{k}"] = v
        for k, v in t.user_attrs.items():
            row[f"user_attrs_{k}"] = json.dumps(v) if isinstance(v, (list, dict)) else v
        row["intermediate_values"] = json.dumps(
            {str(k): v for k, v in sorted(t.intermediate_values.items())})
        row["ticket"] = t.system_attrs.get(TICKET)
        row["void"] = t.system_attrs.get(VOID, "") if is_void(t) else ""
        row["counted"] = t.number in held and t.state.is_finished()
        rows.append(row)
    df = pd.DataFrame(rows)
    # mixed-type params (batch size 64 or "full") would not survive parquet: text then
    for c in df.columns:
        if df[c].dtype == object and df[c].map(type).nunique() > 1:
            df[c] = df[c].map(lambda v: None if v is None else str(v))
    return df


def export(study_dir: str | Path, best_path=None, csv_path=None, parquet_path=None) -> dict:
    """Write best.json (best parameters, directions, Pareto front) and the trials table."""
    from .records import write_json_atomic

    study_dir = Path(study_dir)
    defn = read_definition(study_dir)
    study = load(defn, study_dir)
    trials = study.get_trials(deepcopy=False)
    p = progress(trials, defn["trials"])
    if p["finished"] < defn["trials"]:
        raise RuntimeError(f"study {defn['name']} has {p['finished']} of {defn['trials']} "
                           f"trials finished ({p['running']} running, {p['waiting']} waiting); "
                           "rerun the workers (the same command) to complete it")
    complete = [t for t in trials if _state(t) == "COMPLETE"]
    if not complete:
        raise RuntimeError(f"study {defn['name']}: no trial completed (all pruned or failed: "
                           f"{p['states']}); widen the space or relax the pruner")
    multi = len(defn["directions"]) > 1
    front = sorted(study.best_trials, key=lambda t: t.number) if multi else [study.best_trial]
    best = max(front, key=lambda t: (t.values[0], -t.number))  # the most accurate point

    def as_point(t) -> dict:
        return {"number": t.number, "values": dict(zip(defn["metrics"], t.values, strict=True)),
                "params": t.params}

    out = {
        "study": defn["name"],
        "cell": defn["cell"],
        "objective": defn["objective"],
        "metrics": defn["metrics"],
        "directions": defn["directions"],
        "multi_objective": multi,
        "n_trials": defn["trials"],
        "states": p["states"],
        "void_trials": p["void"],
        "epochs_trained": sum(t.user_attrs.get("epochs_trained") or 0 for t in trials),
        "best_trial": best.number,
        "best_value": best.values[0],
        "best_values": dict(zip(defn["metrics"], best.values, strict=True)),
        "best_params": best.params,
        "pareto_front": [as_point(t) for t in front] if multi else [],
        "base": defn["base"],
        "space": defn["space"],
        "sampler": defn["sampler"],
        "pruner": defn["pruner"],
        "storage": storage_label(defn, study_dir),
    }
    df = trials_table(study, defn)
    csv_path = Path(csv_path or study_dir / CSV_FILE)
    tmp = csv_path.with_name(f".{csv_path.name}.tmp")
    df.to_csv(tmp, index=False)
    tmp.replace(csv_path)
    parquet_path = Path(parquet_path or study_dir / PARQUET_FILE)
    ptmp = parquet_path.with_name(f".{parquet_path.name}.tmp")
    df.to_parquet(ptmp, index=False)
    ptmp.replace(parquet_path)
    write_json_atomic(best_path or study_dir / BEST_FILE, out)
    _log(f"study {defn['name']}: best trial {best.number} {out['best_values']} {best.params}")
    return out


def final_specs(study_dir: str | Path, seeds: list[int]) -> list[RunSpec]:
    """The final runs: the study's best parameters with each seed, marked `tuned`."""
    study_dir = Path(study_dir)
    defn = read_definition(study_dir)
    try:
        best = json.loads((study_dir / BEST_FILE).read_text())
    except (OSError, ValueError):
        raise SpecError(f"{study_dir / BEST_FILE} is missing or unreadable; run "
                        "`python -m bench tune-export` first") from None
    return [spec_for(defn, best["best_params"], seed=s, tuned=defn["name"]) for s in seeds]


def run_final(study_dir: str | Path, seeds: list[int], out_dir: str | Path,
              done: str | None = None, save_model: bool = False) -> int:
    """Run the final specs (skipping those whose record exists); write the done list.
    With `save_model`, each run keeps its tested weights beside its record."""
    from .cli import _run_specs
    from .records import write_json_atomic
    from .slots import measuring_slots, visible_gpus

    defn = read_definition(study_dir)
    specs = final_specs(study_dir, seeds)
    a = argparse.Namespace(data_dir=defn["data_dir"], allow_pickle=defn["allow_pickle"],
                           mem_limit_mb=defn.get("mem_limit_mb", 0), save_model=save_model)
    gpu = specs[0].device in ("cuda", "auto") and visible_gpus() > 0
    with measuring_slots(specs[0].threads, gpu):
        errors = _run_specs(specs, Path(out_dir), a)
    if done:
        write_json_atomic(done, [s.run_id for s in specs])
    return 1 if errors else 0


# ---------------------------------------------------------------------------- CLI


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
    return run_final(a.study_dir, _seeds(a.seeds), a.out_dir, a.done, a.save_model)


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
    f = sub.add_parser("tune-final", help="final measured runs with a study's best parameters, "
                                          "one per seed (skips existing records)")
    f.add_argument("--study-dir", required=True)
    f.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    f.add_argument("--out-dir", default="results/runs")
    f.add_argument("--done", help="write this JSON list of run ids when the runs are through")
    f.add_argument("--save-model", action="store_true",
                   help="keep each run's tested weights beside its record (for translate)")
    f.set_defaults(func=_cmd_final)
    s = sub.add_parser("tune-status", help="a study's progress as one JSON line")
    s.add_argument("--study-dir", required=True)
    s.set_defaults(func=_cmd_status)
