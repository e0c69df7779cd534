"""Tuning studies as the tuning stage left them under results/tune/<study>/: trials, best
parameters, objectives.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

STATES = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")


@dataclass
class Study:
    name: str
    path: Path
    trials: pd.DataFrame = field(default_factory=pd.DataFrame)
    metrics: list[str] = field(default_factory=list)  # objective names, in the study's order
    directions: list[str] = field(default_factory=list)  # 'maximize' / 'minimize'
    best: dict = field(default_factory=dict)
    definition: dict = field(default_factory=dict)
    optuna: object | None = None  # the optuna Study
    source: str = ""  # where the Study came from, for the page
    notes: list[str] = field(default_factory=list)  # what an older folder lacks
    problem: str = ""  # why the study cannot be shown ('' when it can)

    @property
    def params(self) -> list[str]:
        return [c for c in self.trials.columns if c.startswith("params_")]

    @property
    def objectives(self) -> list[str]:
        """The trials table's column of each metric."""
        cols = set(self.trials.columns)
        if len(self.metrics) == 1 and "value" in cols:
            return ["value"]
        return [f"values_{m}" for m in self.metrics]

    @property
    def cell(self) -> dict:
        c = self.best.get("cell") or self.definition.get("cell")
        return c if isinstance(c, dict) else {}

    @property
    def multi(self) -> bool:
        return len(self.metrics) > 1


def find_studies(tune_dir: str | Path | None, names: list[str] | None = None) -> list[Study]:
    """Every study folder under `tune_dir` (or only `names`; a missing one is reported)."""
    if not tune_dir or not Path(tune_dir).is_dir():
        return [Study(n, Path(), problem="its folder does not exist") for n in names or []]
    if names is not None:
        dirs = [Path(tune_dir) / n for n in names]
    else:
        dirs = sorted(p for p in Path(tune_dir).iterdir()
                      if p.is_dir() and not p.name.startswith("."))
    out = []
    for d in dirs:
        out.append(load_study(d) if d.is_dir() else
                   Study(d.name, d, problem="its folder does not exist"))
    return out


def _pick(d: Path, exts: tuple[str, ...], hint: str) -> Path | None:
    files = sorted(p for p in d.iterdir() if p.is_file() and p.suffix in exts
                   and not p.name.startswith("."))
    preferred = [p for p in files if hint in p.name.lower()]
    return (preferred or files or [None])[0]


def _read_json(path: Path | None) -> dict:
    if path is None or not path.is_file():
        return {}
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return obj if isinstance(obj, dict) else {}


def load_study(d: Path) -> Study:
    from ..tune import DEFINITION_FILE

    st = Study(d.name, d)
    st.definition = _read_json(d / DEFINITION_FILE)
    st.best = _read_json(_pick(d, (".json",), "best"))
    st.metrics, st.directions = _objectives(st)
    table = _pick(d, (".parquet", ".csv"), "trial")
    if table is not None:
        try:
            df = pd.read_parquet(table) if table.suffix == ".parquet" else pd.read_csv(table)
            st.trials = _normalise_trials(df)
        except Exception as e:  # noqa: BLE001 - a broken file is reported on the page
            st.notes.append(f"cannot read {table.name}: {type(e).__name__}: {e}")
    if table is None and not st.definition:
        st.problem = "no trials table (CSV or parquet) and no study.json in this study's folder yet"
        return st
    if not st.directions:
        st.problem = ("neither best.json nor study.json states the objectives and their "
                      "directions (maximize or minimize)")
        return st
    st.optuna, st.source = _open_optuna(st)
    if st.optuna is None and table is None:
        st.problem = ("no trials table (CSV or parquet) in this study's folder yet, and "
                      f"{st.source}")
    elif st.optuna is None:
        st.problem = st.source
    elif st.trials.empty:
        st.trials = _normalise_trials(st.optuna.trials_dataframe(multi_index=False))
    return st


def _objectives(st: Study) -> tuple[list[str], list[str]]:
    """(metric names, directions) as the study states them; ([], []) where it does not."""
    for src in (st.best, st.definition):
        m, d = src.get("metrics"), src.get("directions")
        if isinstance(m, list) and isinstance(d, list) and m and len(m) == len(d):
            return [str(x) for x in m], [_direction(x) for x in d]
    d = st.best.get("direction")  # an Optuna single-objective export
    if isinstance(d, str):
        return ["objective"], [_direction(d)]
    return [], []


def _direction(d) -> str:
    return str(d).lower().replace("studydirection.", "")


def _open_optuna(st: Study) -> tuple[object | None, str]:
    """(the optuna Study, where it came from) or (None, why not)."""
    from ..tune import JOURNAL_FILE, load

    why = "no study.json in the folder"
    defn = st.definition
    if defn:
        kind = (defn.get("storage") or {}).get("kind")
        if kind == "journal" and not (st.path / JOURNAL_FILE).is_file():
            why = f"study.json names a journal storage, but {JOURNAL_FILE} is missing"
        else:
            try:
                return load(defn, st.path), f"the study's {kind} storage"
            except Exception as e:  # noqa: BLE001 - an unreachable RDB, a broken journal
                why = f"its storage could not be opened ({type(e).__name__}: {e})"
    if st.trials.empty:
        return None, why
    try:
        return _from_table(st), f"the trials table ({why})"
    except Exception as e:  # noqa: BLE001 - a table this reader does not understand
        return None, f"{why}; the trials table could not be read as a study: {e}"


def _distribution(values: pd.Series, given: dict | None):
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    if given is not None:
        from ..tune import distributions

        return distributions({"p": given})["p"]
    v = values.dropna()
    num = pd.to_numeric(v, errors="coerce")
    if len(v) and num.notna().all():
        lo, hi = float(num.min()), float(num.max())
        return FloatDistribution(lo, hi if hi > lo else lo + 1.0,
                                 log=lo > 0 and hi / lo >= 100)
    return CategoricalDistribution(sorted({str(x) for x in v}))


def _param_value(value, dist):
    """A table cell as the distribution's value (mixed-type choices were stored as text)."""
    from optuna.distributions import CategoricalDistribution

    if isinstance(dist, CategoricalDistribution):
        return next(c for c in dist.choices if str(c) == str(value))
    return float(value)


def _from_table(st: Study):
    """The trials table as an in-memory optuna Study (void trials left out)."""
    import optuna

    from ..tune.common import import_optuna

    import_optuna()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = st.definition.get("space") if isinstance(st.definition.get("space"), dict) else {}
    t = st.trials
    dists = {c[len("params_"):]: _distribution(t[c], space.get(c[len("params_"):]))
             for c in st.params}
    study = optuna.create_study(directions=st.directions, study_name=st.name)
    study.set_metric_names(st.metrics)
    frozen = []
    for _, r in t.iterrows():
        state = r["state"] if r["state"] in STATES[:3] else None
        values = [float(r[c]) for c in st.objectives] if state == "COMPLETE" else None
        if state is None or (values is not None and not all(map(math.isfinite, values))):
            continue
        params = {k: _param_value(r[f"params_{k}"], dists[k]) for k in dists
                  if pd.notna(r[f"params_{k}"])}
        frozen.append(optuna.trial.create_trial(
            state=optuna.trial.TrialState[state], values=values, params=params,
            distributions={k: dists[k] for k in params}))
    study.add_trials(frozen)
    return study


def _normalise_trials(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    if "number" not in df.columns:
        df["number"] = range(len(df))
    df["number"] = pd.to_numeric(df["number"], errors="coerce")
    if "state" not in df.columns:
        df["state"] = "COMPLETE"
    df["state"] = df["state"].astype(str).str.upper().str.replace("TRIALSTATE.", "", regex=False)
    if "void" in df.columns:  # bookkeeping trials of the tuning stage (lost / duplicate)
        void = df["void"].fillna("").astype(str).str.strip()
        df = df[void.isin(["", "nan", "False", "false", "0"])]
    if "duration" in df.columns:
        dur = df["duration"]
        if pd.api.types.is_numeric_dtype(dur):
            secs = pd.to_numeric(dur, errors="coerce")
        else:
            secs = pd.to_timedelta(dur, errors="coerce").dt.total_seconds()
    elif {"datetime_start", "datetime_complete"} <= set(df.columns):
        secs = (pd.to_datetime(df["datetime_complete"], errors="coerce")
                - pd.to_datetime(df["datetime_start"], errors="coerce")).dt.total_seconds()
    else:
        secs = pd.Series(np.nan, index=df.index)
    df["duration_s"] = pd.to_numeric(secs, errors="coerce").astype(float)
    for c in df.columns:
        if re.fullmatch(r"values?(_.+)?", c):
            df[c] = pd.to_numeric(df[c], errors="coerce")
    return df.sort_values("number").reset_index(drop=True)


def complete(st: Study) -> pd.DataFrame:
    t = st.trials[st.trials["state"] == "COMPLETE"]
    cols = [c for c in st.objectives if c in t.columns]
    return t.dropna(subset=cols) if cols else t


def state_counts(st: Study) -> str:
    c = st.trials["state"].value_counts()
    return f"{len(st.trials)} trials: " + ", ".join(f"{k.lower()} {v}" for k, v in c.items())


def completed(st: Study) -> list:
    from optuna.trial import TrialState

    return st.optuna.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def target(st: Study, i: int = 0) -> dict:
    """plot_* keywords for objective i: a multi-objective study needs an explicit target."""
    if not st.multi:
        return {"target_name": st.metrics[0]}
    return {"target": lambda t, i=i: t.values[i], "target_name": st.metrics[i]}
