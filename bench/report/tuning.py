"""The tuning page, read from whatever the tuning stage left under results/tune/<study>/.

Coupled to the tuning stage through its files and `bench.tune`'s reader. In each folder:

- `study.json`, the definition (`cell`, `metrics`, `directions`, `space`, `storage`, ...),
  and the Optuna storage it names (`journal.log`): `bench.tune.load` opens the Study, which
  `optuna.visualization` draws;
- `best.json` (`bench.tune.export`): best parameters, metrics and directions, trial counts
  by state, the Pareto front, and (newer studies) `flops_spent` and `trials_pruned`;
- the trials table (`trials.parquet` / `trials.csv`, Optuna's `trials_dataframe()` layout
  with `values_<metric>`, `params_*`, `user_attrs_*`, `void`): durations, epochs and FLOPs
  per trial, and the Study itself where the storage cannot be opened here (an RDB this
  machine cannot reach, a folder copied without its journal), rebuilt in memory.

Objective names and directions are the study's own (best.json, else study.json); a folder
that states neither is reported, not guessed. The one Pareto front is Optuna's
(`Study.best_trials`, which `bench.tune.export` writes to best.json and
`plot_pareto_front` draws).

A study is judged by its final runs (summary rows with `tuned` = the study) against its
cell's baseline: the untuned runs the scale figure draws at that size (`tables.
scale_selection`). Runs of a study at another size than its cell are transfer runs (the
smallest tuned size's parameters at the largest), compared with the largest size's own.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import stats
from . import tables
from .html import Panel

# fANOVA fits a random forest to (parameters -> objective): with fewer completed trials the
# forest splits on single trials, and whichever parameter separates the one best trial from
# the rest gets all the importance.
MIN_TRIALS_IMPORTANCE = 10
TOP_FRACTION = 0.25  # the parallel-coordinate caption describes the best quarter of trials
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


def _state_counts(st: Study) -> str:
    c = st.trials["state"].value_counts()
    return f"{len(st.trials)} trials: " + ", ".join(f"{k.lower()} {v}" for k, v in c.items())


# ---------------------------------------------------------------------------- optuna figures


def _completed(st: Study) -> list:
    from optuna.trial import TrialState

    return st.optuna.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def _target(st: Study, i: int = 0) -> dict:
    """plot_* keywords for objective i: a multi-objective study needs an explicit target."""
    if not st.multi:
        return {"target_name": st.metrics[0]}
    return {"target": lambda t, i=i: t.values[i], "target_name": st.metrics[i]}


def figure_data(fig) -> pd.DataFrame:
    """A tidy table of what an optuna figure plots; each trace gets a `meta` naming its rows.

    Scatter and bar traces: a row per point (x, y, and z in 3-D); parallel coordinates: a
    row per line, a column per axis (the values plotted, categories as their codes).
    Traces without a point (Optuna's "Infeasible Trial" of a study without constraints) are
    dropped: a legend entry for nothing.
    """
    def size(tr) -> int:
        if tr.type == "parcoords":
            return len(tr.dimensions[0].values) if tr.dimensions else 0
        return max((len(getattr(tr, a)) for a in ("x", "y", "z")
                    if a in tr and getattr(tr, a) is not None), default=0)

    fig.data = [tr for tr in fig.data if size(tr)]
    rows = []
    for i, tr in enumerate(fig.data):
        meta = f"{i}: {tr.name or tr.type}"
        tr.meta = meta
        if tr.type == "parcoords":
            dims = tr.dimensions or ()
            for j in range(len(dims[0].values) if dims else 0):
                rows.append({"trace": meta, **{d.label: d.values[j] for d in dims}})
            continue
        axes = {a: list(getattr(tr, a)) for a in ("x", "y", "z")
                if a in tr and getattr(tr, a) is not None}
        for j in range(max((len(v) for v in axes.values()), default=0)):
            rows.append({"trace": meta, **{a: v[j] if j < len(v) else None
                                           for a, v in axes.items()}})
    return pd.DataFrame(rows)


def _optuna_panel(key: str, title: str, caption: str, fig, height: int = 420) -> Panel:
    fig.update_layout(title=None)  # the panel's own title says it
    return Panel(key, title, caption, fig, figure_data(fig), height=height)


def history_panel(st: Study, key: str) -> Panel:
    import optuna.visualization as vis

    title = f"Study {st.name}: optimization history"
    done = _completed(st)
    if not done:
        return Panel(key, title, message=f"Study {st.name} has no completed trial yet "
                     f"({_state_counts(st)}).")
    maximize = st.directions[0] == "maximize"
    vals = [t.values[0] for t in done]
    best_i = int(np.argmax(vals) if maximize else np.argmin(vals))
    fig = vis.plot_optimization_history(st.optuna, **_target(st))
    caption = (f"{_state_counts(st)}. {st.metrics[0]} ({st.directions[0]}): best "
               f"{vals[best_i]:.4g} at trial {done[best_i].number}, from {vals[0]:.4g} after "
               f"the first completed trial. Optuna draws completed trials only; pruned ones "
               f"are in the counts.")
    if st.multi:
        caption += " The other objectives are in the Pareto front below."
    return _optuna_panel(key, title, caption, fig, 400)


def _evaluator():
    """Optuna's default evaluator, fANOVA, seeded so the page is reproducible (its random
    forest comes from scikit-learn, a dependency of the embedded datasets)."""
    from optuna.importance import FanovaImportanceEvaluator

    return FanovaImportanceEvaluator(seed=0)


def _varying(st: Study) -> list[str]:
    done = _completed(st)
    names = {k for t in done for k in t.params}
    return sorted(k for k in names if len({repr(t.params.get(k)) for t in done}) > 1)


def importance_panel(st: Study, key: str) -> Panel:
    import optuna
    import optuna.visualization as vis

    title = f"Study {st.name}: parameter importances"
    n, varying = len(_completed(st)), _varying(st)
    if n < MIN_TRIALS_IMPORTANCE or not varying:
        return Panel(key, title, message=(
            f"Parameter importances need at least {MIN_TRIALS_IMPORTANCE} completed trials "
            f"with a varying parameter: fANOVA fits a random forest to the trials, and with "
            f"fewer it splits on single trials, so whichever parameter sets the best one apart "
            f"takes all the importance. Study {st.name} has {n} completed trial(s) and "
            f"{len(varying)} varying parameter(s)."))
    texts = []
    for i, m in enumerate(st.metrics):
        target = _target(st, i).get("target")
        imp = optuna.importance.get_param_importances(st.optuna, evaluator=_evaluator(),
                                                      target=target)
        if imp:
            top, share = next(iter(imp.items()))
            texts.append(f"for {m}, {top} carries {share:.0%}")
    fig = vis.plot_param_importances(st.optuna, evaluator=_evaluator(),
                                     **({} if st.multi else _target(st)))
    caption = (f"fANOVA importances (Optuna's default evaluator, seed 0: the share of the "
               f"objective's variance a parameter explains, from a random forest over {n} "
               f"completed trials): " + "; ".join(texts) + ". A few dozen trials make these "
               "rough; a parameter the sampler hardly varied cannot show importance.")
    return _optuna_panel(key, title, caption, fig, max(280, 120 + 40 * len(varying)))


def _top(st: Study) -> list:
    """The best TOP_FRACTION of completed trials (at least one) by the first objective."""
    done = _completed(st)
    rev = st.directions[0] == "maximize"
    ranked = sorted(done, key=lambda t: t.values[0], reverse=rev)
    return ranked[:max(1, math.ceil(TOP_FRACTION * len(ranked)))]


def _describe_values(vals: list) -> str:
    nums = [v for v in vals if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if len(nums) == len(vals):
        lo, hi = min(nums), max(nums)
        return f"{lo:.3g}" if lo == hi else f"{lo:.3g} to {hi:.3g}"
    counts = pd.Series([str(v) for v in vals]).value_counts()
    return ", ".join(f"{k} {c}/{len(vals)}" for k, c in counts.items())


def parallel_panel(st: Study, key: str) -> Panel | None:
    import optuna.visualization as vis

    title = f"Study {st.name}: parallel coordinates"
    varying = _varying(st)
    if len(_completed(st)) < 2 or not varying:
        return None
    top = _top(st)
    ranges = "; ".join(f"{p} {_describe_values([t.params[p] for t in top if p in t.params])}"
                       for p in varying)
    fig = vis.plot_parallel_coordinate(st.optuna, **_target(st))
    caption = (f"One line per completed trial, coloured by {st.metrics[0]}. The best "
               f"{len(top)} of {len(_completed(st))} ({TOP_FRACTION:.0%}) used: {ranges}.")
    return _optuna_panel(key, title, caption, fig, 420)


def slice_panel(st: Study, key: str) -> Panel | None:
    import optuna.visualization as vis
    from scipy.stats import spearmanr

    title = f"Study {st.name}: {st.metrics[0]} against each parameter"
    done, varying = _completed(st), _varying(st)
    if len(done) < 2 or not varying:
        return None
    texts = []
    for p in varying:
        pts = [(t.params[p], t.values[0]) for t in done if p in t.params]
        xs = [x for x, _ in pts]
        if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs) \
                and len(set(xs)) > 2:
            rho = spearmanr(xs, [y for _, y in pts]).statistic
            texts.append(f"{p} rank correlation {rho:+.2f}")
        else:
            means = pd.Series([y for _, y in pts]).groupby([str(x) for x in xs]).mean()
            texts.append(f"{p} mean " + ", ".join(f"{k} {v:.3g}" for k, v in means.items()))
    fig = vis.plot_slice(st.optuna, params=varying, **_target(st))
    caption = (f"{st.metrics[0]} of each completed trial against each varying parameter "
               f"(colour: trial number): " + "; ".join(texts) + ".")
    return _optuna_panel(key, title, caption, fig, 380)


def pareto_panel(st: Study, key: str) -> Panel | None:
    import optuna.visualization as vis

    if not st.multi:
        return None
    title = f"Study {st.name}: Pareto front"
    done = _completed(st)
    if len(done) < 2:
        return Panel(key, title, message=f"A Pareto front needs at least 2 completed trials; "
                     f"study {st.name} has {len(done)}.")
    front = sorted(st.optuna.best_trials, key=lambda t: t.values[0])
    shown = st.metrics[:3]
    fig = vis.plot_pareto_front(
        st.optuna, target_names=shown,
        targets=None if len(st.metrics) <= 3 else (lambda t: tuple(t.values[:3])))
    ends = " to ".join(" / ".join(f"{m} {t.values[i]:.4g}" for i, m in enumerate(st.metrics))
                       for t in (front[0], front[-1]))
    caption = (f"{len(front)} of {len(done)} completed trials are Pareto-optimal over "
               f"{', '.join(f'{m} ({d})' for m, d in zip(st.metrics, st.directions, strict=True))}"
               f"; the front runs from {ends}. The final runs use its most accurate point "
               f"(trial {max(front, key=lambda t: (t.values[0], -t.number)).number}).")
    if len(st.metrics) > 3:
        caption += " Only the first three objectives are drawn; the front uses all of them."
    return _optuna_panel(key, title, caption, fig, 460)


PANELS = (history_panel, importance_panel, parallel_panel, slice_panel, pareto_panel)


# ---------------------------------------------------------------------------- cost


def pruning_savings(st: Study) -> dict:
    """Compute spent, and saved by pruning.

    A pruned trial would have run as long as a completed one. In epochs (when the trials
    table records `user_attrs_epochs_trained`): the budget is the study's epochs (the
    definition's `base.epochs`, else the most any completed trial trained) and what a pruned
    trial did not train of it is saved. In seconds: a pruned trial would have taken the
    median completed trial's duration.
    """
    t = st.trials
    pruned_rows = t[t["state"] == "PRUNED"]
    done = t[t["state"] == "COMPLETE"]["duration_s"].dropna()
    pruned = pruned_rows["duration_s"].dropna()
    spent = float(t["duration_s"].dropna().sum())
    full = float(done.median()) if len(done) else math.nan
    saved = float((full - pruned).clip(lower=0).sum()) if math.isfinite(full) else math.nan
    out = {"trials": len(t), "completed": int((t["state"] == "COMPLETE").sum()),
           "pruned": len(pruned_rows), "failed": int((t["state"] == "FAIL").sum()),
           "spent_s": spent, "median_complete_s": full, "saved_s": saved,
           "saved_fraction": saved / (spent + saved) if spent + saved > 0 else math.nan,
           "epochs_budget": math.nan, "epochs_trained": math.nan, "epochs_saved": math.nan}
    if "user_attrs_epochs_trained" in t.columns:
        ep = pd.to_numeric(t["user_attrs_epochs_trained"], errors="coerce")
        base = st.definition.get("base") or st.best.get("base")
        base = base if isinstance(base, dict) else {}
        budget = pd.to_numeric(pd.Series([base.get("epochs")]), errors="coerce").iloc[0]
        if not (isinstance(budget, float) and math.isfinite(budget)):
            budget = float(ep[t["state"] == "COMPLETE"].max())
        if math.isfinite(budget):
            got = ep[t["state"] == "PRUNED"].fillna(0)
            out.update(epochs_budget=float(budget), epochs_trained=float(ep.fillna(0).sum()),
                       epochs_saved=float((budget - got).clip(lower=0).sum()))
    return out


def pruning_text(st: Study) -> str:
    s = pruning_savings(st)
    if not s["pruned"]:
        return (f"No trial was pruned ({s['completed']} completed, {s['failed']} failed); "
                f"the study spent {tables.fmt_seconds(s['spent_s'])} of trial time.")
    text = f"Pruning stopped {s['pruned']} of {s['trials']} trials early."
    if math.isfinite(s["epochs_saved"]):
        total = s["epochs_trained"] + s["epochs_saved"]
        text += (f" In epochs: {s['epochs_trained']:.0f} trained, {s['epochs_saved']:.0f} not "
                 f"trained that a budget of {s['epochs_budget']:.0f} per trial would have "
                 f"needed ({s['epochs_saved'] / total:.0%} saved).")
    if math.isfinite(s["saved_s"]):
        text += (f" In time: a completed trial took a median "
                 f"{tables.fmt_seconds(s['median_complete_s'])}; run to the end, the pruned trials "
                 f"would have needed about {tables.fmt_seconds(s['saved_s'])} more, "
                 f"{s['saved_fraction']:.0%} of the study's compute "
                 f"({tables.fmt_seconds(s['spent_s'])} spent in all).")
    elif not math.isfinite(s["epochs_saved"]):
        text += " Without trial durations or epochs the compute saved cannot be estimated."
    return text


def trial_counts(st: Study) -> tuple[int, int]:
    """(trials, pruned): best.json's counts where it has them, else the trials table's."""
    states = st.best.get("states")
    if isinstance(states, dict) and states:
        n = int(sum(v for v in states.values() if isinstance(v, (int, float))))
        pruned = st.best.get("trials_pruned", states.get("PRUNED", 0))
        return n, int(pruned or 0)
    t = st.trials
    return len(t), int((t["state"] == "PRUNED").sum()) if len(t) else 0


def study_flops(st: Study) -> float:
    """Training FLOPs all trials spent: best.json's `flops_spent`, else the sum of the
    trials' `user_attrs_flops_spent`; NaN where neither was recorded (older studies)."""
    v = st.best.get("flops_spent")
    if isinstance(v, (int, float)) and math.isfinite(v):
        return float(v)
    if "user_attrs_flops_spent" in st.trials.columns:
        f = pd.to_numeric(st.trials["user_attrs_flops_spent"], errors="coerce")
        if f.notna().any():
            return float(f.sum())
    return math.nan


def grid_flops(df: pd.DataFrame, cell: dict, optimizer: str) -> tuple[float, int]:
    """(training FLOPs, rates) of the lr grid of the cell's unit (family, dataset, size,
    `optimizer`), as the learning-rate figure finds it; (NaN, 0) without a grid."""
    for u in tables.lr_units(df, cell.get("family", ""), cell.get("dataset", "")):
        if u["size"] == cell.get("size") and u["optimizer"] == optimizer:
            f = [tables.run_flops(r) for r in u["members"].to_dict("records")]
            f = [x for x in f if math.isfinite(x)]
            return (float(sum(f)) if f else math.nan), len(u["members"])
    return math.nan, 0


def cost_row(df: pd.DataFrame, st: Study) -> list:
    """[study, cell, trials, pruned share, FLOPs of the trials, grid FLOPs, ratio]."""
    n, pruned = trial_counts(st)
    flops = study_flops(st)
    recipe, _ = tables.scale_selection(df, st.cell.get("family", ""), st.cell.get("dataset", ""))
    opt = recipe[0] if recipe else ""
    gflops, k = grid_flops(df, st.cell, opt) if opt else (math.nan, 0)
    ratio = flops / gflops if math.isfinite(flops) and gflops > 0 else math.nan

    def tf(x):
        return f"{x / 1e12:.3g}" if math.isfinite(x) else "not recorded"

    return [st.name, cell_label(st.cell), n, f"{pruned / n:.0%}" if n else "n/a", tf(flops),
            f"{tf(gflops)} ({k} rates, {opt})" if k else "no grid",
            f"{ratio:.3g}x" if math.isfinite(ratio) else "n/a"]


def cell_label(cell: dict) -> str:
    if not cell:
        return "cell not recorded"
    return (f"{cell.get('family')} {cell.get('size')} on {cell.get('dataset')}, trials in "
            f"{tables.framework_name(cell.get('framework', ''))}")


# ---------------------------------------------------------------------------- judgement


def verdict(iv: stats.Interval) -> tuple[str, str]:
    """(kind, text): 'gain' where the interval of tuned - baseline lies above zero, 'worse'
    where it lies below, else 'unclear' (also with fewer than MIN_INTERVAL_N runs a side)."""
    if not math.isfinite(iv.value):
        return "none", "no comparison"
    if not iv.has_ci or iv.n < stats.MIN_INTERVAL_N:
        return "unclear", (f"no clear gain ({iv.value:+.3f}; n = {iv.n}: too few runs for an "
                           f"interval)")
    ci = f"{iv.value:+.3f} [{iv.lo:+.3f}, {iv.hi:+.3f}]"
    if iv.lo > 0:
        return "gain", f"tuning bought {ci}"
    if iv.hi < 0:
        return "worse", f"tuning made it worse: {ci}"
    return "unclear", f"no clear gain ({ci})"


def _sides(a: pd.DataFrame, b: pd.DataFrame) -> list[tuple[str, pd.DataFrame, pd.DataFrame]]:
    """(framework, a's rows, b's rows) per framework present in both, then pooled where each
    side's frameworks ran disjoint seeds (as the scale page pools)."""
    fws = sorted(set(a["framework"]) & set(b["framework"]), key=tables.framework_rank)
    out = [(fw, a[a["framework"] == fw], b[b["framework"] == fw]) for fw in fws]
    if len(fws) > 1 and tables.seeds_disjoint(a) and tables.seeds_disjoint(b):
        out.append((tables.POOLED, a[a["framework"].isin(fws)], b[b["framework"].isin(fws)]))
    return out


def compare(a: pd.DataFrame, b: pd.DataFrame) -> list[dict]:
    """Test accuracy of `a` against `b` (failures at chance), per framework and pooled."""
    out = []
    for fw, x, y in _sides(a, b):
        va, vb = tables.metric_values(x, "test_acc"), tables.metric_values(y, "test_acc")
        diff = tables.diff_ci(va, vb, "test_acc")
        out.append({"framework": fw, "a": tables.mean_ci(va, "test_acc"),
                    "b": tables.mean_ci(vb, "test_acc"), "diff": diff, "n_a": len(x),
                    "n_b": len(y), "seeds_a": tables.seed_text(tables.seeds_of(x)),
                    "seeds_b": tables.seed_text(tables.seeds_of(y)),
                    "failed": tables.n_failed(x) + tables.n_failed(y),
                    "verdict": verdict(diff)})
    return out


def own_runs(df: pd.DataFrame, name: str, size: str) -> pd.DataFrame:
    """The final runs of study `name` at its own cell's size."""
    return df[(df["tuned"] == name) & (df["size"] == size)]


def baseline_runs(df: pd.DataFrame, cell: dict) -> pd.DataFrame:
    """The untuned runs the scale figure draws at the cell's size."""
    _, rows = tables.scale_selection(df, cell.get("family", ""), cell.get("dataset", ""))
    return rows[rows["size"] == cell.get("size")]


def judge(df: pd.DataFrame, st: Study) -> list[dict]:
    """The study's final runs against its cell's baseline (`compare`)."""
    cell = st.cell
    if not cell or df.empty:
        return []
    return compare(own_runs(df, st.name, cell["size"]), baseline_runs(df, cell))


def _fmt(iv: stats.Interval) -> str:
    return tables.fmt_ci(iv, lambda x: f"{x:.3f}" if math.isfinite(x) else "n/a")


def judgement_rows(results: list[dict]) -> list[list]:
    return [[tables.framework_name(r["framework"]), f"{r['n_a']} (seeds {r['seeds_a']})",
             _fmt(r["a"]), f"{r['n_b']} (seeds {r['seeds_b']})", _fmt(r["b"]),
             r["verdict"][1]] for r in results]


def tuned_cells(df: pd.DataFrame, studies: list[Study]) -> pd.DataFrame:
    """study, family, dataset, size of every study with final runs in `df`: its cell from
    best.json or study.json, else (no folder) the smallest size among its runs, which is
    its own (transfer runs only ever go to a larger size)."""
    known = {s.name: s.cell for s in studies if s.cell}
    out = []
    for name, part in df[df["tuned"] != ""].groupby("tuned"):
        cell = known.get(name)
        if cell:
            out.append({"study": name, "family": cell["family"], "dataset": cell["dataset"],
                        "size": cell["size"]})
        else:
            first = part.sort_values("size_order").iloc[0]
            out.append({"study": name, "family": first["family"],
                        "dataset": first["dataset"], "size": first["size"]})
    return pd.DataFrame(out, columns=["study", "family", "dataset", "size"])


def transfers(df: pd.DataFrame, studies: list[Study]) -> list[dict]:
    """Per family/dataset with a transfer run: the smallest tuned size's parameters at the
    largest size (runs of the small study at the large size) against the large size's own
    study there. Entries: family, dataset, small/large study and size, results (`compare`:
    a = transferred, b = own)."""
    cells = tuned_cells(df, studies)
    out = []
    for (family, dataset), part in cells.groupby(["family", "dataset"], sort=False):
        part = part.assign(_r=part["size"].map(tables._size_rank)).sort_values("_r")
        if part["size"].nunique() < 2:
            continue
        small, large = part.iloc[0], part.iloc[-1]
        moved = df[(df["tuned"] == small["study"]) & (df["size"] == large["size"])]
        if moved.empty:
            continue
        own = own_runs(df, large["study"], large["size"])
        out.append({"family": family, "dataset": dataset, "small": small["study"],
                    "small_size": small["size"], "large": large["study"],
                    "large_size": large["size"], "results": compare(moved, own)})
    return out


def transfer_text(t: dict) -> str:
    parts = []
    for r in t["results"]:
        kind, _ = r["verdict"]
        d = r["diff"]
        ci = (f"{d.value:+.3f} [{d.lo:+.3f}, {d.hi:+.3f}]" if d.has_ci
              and d.n >= stats.MIN_INTERVAL_N else f"{d.value:+.3f}, too few runs for an "
              "interval")
        what = {"gain": "the transferred parameters are better",
                "worse": "the size's own parameters are better",
                }.get(kind, "no clear difference")
        parts.append(f"{tables.framework_name(r['framework'])}: {what} (transferred "
                     f"{_fmt(r['a'])} vs own {_fmt(r['b'])}, difference {ci})")
    return (f"{t['family']} on {t['dataset']}: size {t['small_size']}'s best parameters "
            f"(study {t['small']}) run at size {t['large_size']} against that size's own "
            f"(study {t['large']}): " + "; ".join(parts) + ".")


# ---------------------------------------------------------------------------- across sizes


def _labels(rows: pd.DataFrame) -> list[str]:
    """The lines to draw: pooled alone where the frameworks' seeds are disjoint at every
    size, else one per framework."""
    by_size = [p for _, p in rows.groupby("size")]
    if by_size and all(tables.seeds_disjoint(p) for p in by_size):
        return [tables.POOLED]
    return sorted(set(rows["framework"]), key=tables.framework_rank)


def _on(rows: pd.DataFrame, label: str) -> pd.DataFrame:
    return rows if label == tables.POOLED else rows[rows["framework"] == label]


def slope_text(tuned: pd.DataFrame, base: pd.DataFrame, label: str) -> str:
    """Gain per tuned size and whether it differs between the smallest and largest:
    the contrast (tuned L - base L) - (tuned S - base S) with its Welch interval."""
    sizes = sorted(set(tuned["size"]) & set(base["size"]), key=tables._size_rank)
    gains = []
    for size in sizes:
        iv = tables.diff_ci(tables.metric_values(_on(tuned[tuned["size"] == size], label),
                                                 "test_acc"),
                            tables.metric_values(_on(base[base["size"] == size], label),
                                                 "test_acc"), "test_acc")
        gains.append(f"{size}: {verdict(iv)[1]}")
    text = f"{tables.framework_name(label)}, gain per size: " + "; ".join(gains) + "."
    if len(sizes) < 2:
        return text + " One tuned size: no slope to compare."
    s, lg = sizes[0], sizes[-1]
    vals = [tables.metric_values(_on(r[r["size"] == z], label), "test_acc")
            for r, z in ((tuned, lg), (base, lg), (tuned, s), (base, s))]
    iv = stats.contrast_t_ci(vals, [1, -1, -1, 1], bounds=(-2.0, 2.0))
    if not iv.has_ci or iv.n < stats.MIN_INTERVAL_N:
        return text + (f" Gain at {lg} minus gain at {s}: {iv.value:+.3f}, too few runs for "
                       "an interval.")
    what = ("tuning steepens the slope (it gains more at the larger size)" if iv.lo > 0 else
            "tuning flattens the slope (it gains more at the smaller size)" if iv.hi < 0 else
            "tuning does not clearly change the slope")
    return text + (f" Gain at {lg} minus gain at {s}: {iv.value:+.3f} [{iv.lo:+.3f}, "
                   f"{iv.hi:+.3f}]: {what}.")


def scale_panel(df: pd.DataFrame, studies: list[Study], family: str, dataset: str,
                key: str) -> Panel | None:
    """Tuned test accuracy (each size's own study's final runs) against parameter count,
    beside the untuned scale line; None where the family/dataset has no tuned size."""
    from plotly.subplots import make_subplots

    from . import figures

    cells = tuned_cells(df, studies)
    cells = cells[(cells["family"] == family) & (cells["dataset"] == dataset)]
    if cells.empty:
        return None
    title = f"{family} on {dataset}: tuned against untuned test accuracy, per size"
    recipe, base = tables.scale_selection(df, family, dataset)
    tuned = pd.concat([own_runs(df, c.study, c.size) for c in cells.itertuples()])
    if tuned.empty or base.empty:
        return Panel(key, title, message=(
            f"{family} on {dataset}: " + ("the tuned studies have no final runs yet"
                                          if tuned.empty else "no untuned runs to compare")
            + "."))
    fig = make_subplots(rows=1, cols=1)
    data: list[dict] = []
    labels = _labels(pd.concat([tuned, base[base["size"].isin(set(tuned["size"]))]]))
    for i, label in enumerate(labels):
        style = figures._style(label, i)
        name = tables.framework_name(label)
        for what, rows, dash, symbol in (("untuned", base, "dot", "circle"),
                                         ("tuned", tuned, "solid", "star")):
            pts = tables.scale_points(_on(rows, label).assign(framework=label), "test_acc",
                                      pool=False)
            if pts.empty:
                continue
            st = {"line": {**style["line"], "dash": dash},
                  "marker": {**style["marker"], "symbol": symbol}}
            figures._points_trace(fig, pts, f"{label} {what}", f"{name}, {what}", st, 1,
                                  True, True, data, "test_acc")
    fig.update_xaxes(type="log", title_text="parameters")
    fig.update_yaxes(title_text="test accuracy")
    fig.update_layout(legend={"orientation": "h", "y": -0.25})
    caption = (f"Tuned: the final runs of each size's own study ({', '.join(cells['study'])}); "
               f"untuned: the scale figure's recipe ({tables.recipe_label(recipe)}). Mean test "
               f"accuracy over seeds with its 95% t-interval inside [0, 1] (failed runs at "
               f"chance); a gain is the Welch interval of tuned minus untuned, and the slope "
               f"question is whether the gain differs between the smallest and largest tuned "
               f"size.\n" + "\n".join(slope_text(tuned, base, lb) for lb in labels))
    return Panel(key, title, caption, fig, pd.DataFrame(data), height=420)
