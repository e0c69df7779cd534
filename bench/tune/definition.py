"""What a study is: its objectives and defaults, the definition built from the config's
`tune:` section and one (family, framework, dataset, size) cell, and the name that hashes it.

A definition is the whole contract between the workflow and the workers: `tune-create`
writes it to results/tune/<study>/study.json and every later verb reads it from there.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from ..config import load_schema, schema_defaults
from ..registry import DATASETS, FRAMEWORKS, SpecError, check_family_reads
from ..sizes import SIZE_NAMES, size_of
from ..spec import MATH_DEFAULTS, RunSpec
from .paths import DEFINITION_FILE
from .space import parse_space

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

# The defaults of a definition are the config schema's (tune: section), so a study built
# outside the workflow is the study the workflow would build from the same settings.
DEFAULTS = schema_defaults(load_schema()["properties"]["tune"])
DEFAULTS.pop("studies")  # which cells to tune is the caller's, not a default of one study
DEFAULT_SPACE = DEFAULTS.pop("space")


def spec_for(defn: dict, params: dict, seed: int | None = None, tuned: str = "",
             **over) -> RunSpec:
    """The RunSpec of a trial (or a final run) of study `defn` with parameters `params`.

    A tuned learning-rate schedule is laid out over the whole cap and trains all of it, as
    such runs do in the study (a plateau stop would cut the decay short)."""
    base = dict(defn["base"])
    reg = base.pop("regulariser", "none")
    kw = {**base, **params, "seed": defn["seed"] if seed is None else seed, **over}
    if params.get("lr_schedule", "none") != "none":
        kw["patience"] = 0
    if tuned:
        kw["tuned"] = tuned
    return RunSpec.create(regulariser=reg, **kw)


@dataclass(frozen=True)
class TuneStudy:
    """One study the workflow schedules: its definition, how many workers optimise it, and
    the study (of the smallest size tuned in the same entry) whose best parameters its final
    runs also try at this size, the transfer check ('' when none)."""

    name: str
    definition: dict
    workers: int
    transfer_from: str = ""

    @property
    def final_frameworks(self) -> list[str]:
        return final_frameworks(self.definition)


def final_frameworks(defn: dict) -> list[str]:
    """The frameworks a study's final runs train in (the keys of its resolved final seeds)."""
    return list(defn["final_seeds"])


def _merge(default: dict, given: dict | None) -> dict:
    return {**default, **(given or {})}


# keys that do not change what a study computes: kept out of its name's hash, so more trials
# or workers continue the same study instead of starting a new one
_NOT_HASHED = ("name", "trials", "workers", "final_seeds", "storage", "heartbeat_s", "grace_s",
               "data_dir", "allow_pickle")
# RunSpec fields that belong to a cell or to the tuned base, not to the run settings
_CELL_KEYS = ("family", "framework", "dataset", "size")
_BASE_KEYS = ("optimizer", "lr", "batch_size", "regulariser")
_BUDGET_KEYS = ("epochs", "patience", "min_epochs", "max_steps")


def _run_settings(t: dict, family: str, config: dict, where: str) -> dict:
    """What a trial's run shares with the study's runs of its family: the cap, patience and
    min_epochs, batch size, family settings (warm-up, ...), device and measurement.

    Without a study (a definition given on its own) they come from `config` alone, and
    `tune.epochs` is required. `tune.epochs`, `patience`, `min_epochs` and `max_steps`
    override the study's where set.
    """
    from ..study.plan import run_settings

    if config.get("study"):
        run = run_settings(config, family)
    else:
        measure = config.get("measure", {}) or {}
        run = {"device": config.get("device", "cpu"), "threads": config.get("threads", 1),
               "compile": config.get("compile", False),
               **{k: measure[k] for k in ("warmup_steps", "block_steps", "block_seconds")
                  if k in measure}}
        run.update({k: config[k] for k, v in MATH_DEFAULTS.items() if config.get(k, v) != v})
        run.update(config.get("run_settings") or {})
    run.update({k: t[k] for k in _BUDGET_KEYS if t.get(k) is not None})
    if run.get("epochs") is None:
        raise SpecError(f"{where}.epochs: needed when the definition has no study to take "
                        "the cap from")
    run.setdefault("max_steps", 0)
    if "min_epochs" in run:
        run["min_epochs"] = min(run["min_epochs"], run["epochs"])
    return run


def _base(t: dict, family: str, config: dict) -> dict:
    """The untuned settings a trial starts from: `tune.base`, else the study's centre
    optimizer at its configured rate and the centre regulariser."""
    from ..study.plan import base_lr

    given = {k: v for k, v in (t.get("base") or {}).items() if v is not None}
    st = config.get("study") or {}
    centre = st.get("centre") or {}
    out = {"optimizer": given.get("optimizer") or centre.get("optimizer") or "adam"}
    if "lr" in given:
        out["lr"] = given["lr"]
    elif st and out["optimizer"] in (st.get("optimizers") or {}):
        out["lr"] = base_lr(st, family, out["optimizer"])
    else:
        out["lr"] = 0.001
    out["regulariser"] = given.get("regulariser") or centre.get("regulariser") or "none"
    if "batch_size" in given:
        out["batch_size"] = given["batch_size"]
    return out


def _final_seeds(t: dict, cell: dict, config: dict, where: str) -> dict[str, list[int]]:
    """Framework -> seeds of the final runs: by default the study's seeds in each of its
    frameworks (framework k: seed + k * framework_seed_stride), the seeds its untuned runs
    of the same cell have, so tuned and untuned compare on the same draws."""
    given = t.get("final_seeds")
    if isinstance(given, dict):  # a definition's own, already resolved
        out = {fw: list(v) for fw, v in given.items()}
    else:
        st = config.get("study") or {}
        order = list(st.get("frameworks") or [cell["framework"]])
        frameworks = t.get("final_frameworks") or order
        seeds = given or st.get("seeds") or [0, 1, 2]
        stride = st.get("framework_seed_stride", 0)
        out = {}
        for fw in frameworks:
            k = order.index(fw) if fw in order else len(order)
            out[fw] = [s + k * stride for s in seeds]
    for fw, seeds in out.items():
        if fw not in FRAMEWORKS:
            raise SpecError(f"{where}.final_frameworks: unknown framework {fw!r}")
        if not seeds or any(not isinstance(s, int) or s < 0 for s in seeds):
            raise SpecError(f"{where}.final_seeds: need one or more non-negative integers")
        if t["seed"] in seeds:
            raise SpecError(f"{where}.seed: the trials' seed {t['seed']} is also a final seed "
                            f"of {fw} ({seeds}); tuned parameters must be judged on fresh seeds")
    return out


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
    base = {**{k: cell[k] for k in _CELL_KEYS},
            **_run_settings(t, cell["family"], config, where),
            **_base(t, cell["family"], config)}
    base.setdefault("batch_size", 64)
    try:
        spec_for({"base": base, "seed": t["seed"]}, {})
    except SpecError as e:
        raise SpecError(f"{where}.base: {e}") from None
    space = parse_space(tune.get("space", DEFAULT_SPACE), base, f"{where}.space")
    sampler, pruner = t["sampler"], t["pruner"]
    if sampler["name"] not in SAMPLERS:
        raise SpecError(f"{where}.sampler.name: unknown sampler {sampler['name']!r}; "
                        f"allowed: {', '.join(SAMPLERS)}")
    if pruner["name"] not in PRUNERS:
        raise SpecError(f"{where}.pruner.name: unknown pruner {pruner['name']!r}; "
                        f"allowed: {', '.join(PRUNERS)}")
    if pruner["min_epochs"] > base["epochs"]:
        raise SpecError(f"{where}.pruner.min_epochs: {pruner['min_epochs']} > epochs "
                        f"{base['epochs']} (nothing could be pruned)")
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
    seeds = _final_seeds(t, cell, config, where)
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
        sizes = sorted(entry.get("sizes") or [], key=SIZE_NAMES.index)
        names = []
        for size in sizes:
            cell = {**entry, "size": size}
            d = make_definition(tune, cell, config, "config key tune")
            if d["name"] in out:
                raise SpecError(f"config key tune.studies[{i}]: study {d['name']} is listed twice")
            out[d["name"]] = TuneStudy(d["name"], d, d["workers"])
            names.append(d["name"])
        if len(names) > 1:  # the smallest size's parameters, tried at the largest size
            big = out[names[-1]]
            out[big.name] = TuneStudy(big.name, big.definition, big.workers, names[0])
    return list(out.values())


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
    tune.update({k: base[k] for k in _BUDGET_KEYS if k in base})
    tune["base"] = {k: base[k] for k in _BASE_KEYS if k in base}
    config = {"run_settings": {k: v for k, v in base.items()
                               if k not in (*_CELL_KEYS, *_BASE_KEYS, *_BUDGET_KEYS)}}
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


def read_definition(study_dir: str | Path) -> dict:
    path = Path(study_dir) / DEFINITION_FILE
    try:
        return json.loads(path.read_text())
    except OSError:
        raise SpecError(f"{path} does not exist; run `python -m bench tune-create` first") from None
    except ValueError as e:
        raise SpecError(f"{path} is not valid JSON: {e}") from None
