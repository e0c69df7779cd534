"""The tuning page, read from whatever the tuning stage left under results/tune/<study>/.

Coupled to the tuning stage only through files. In each study folder it reads:

- the trials table (`*trials*.parquet` / `*trials*.csv`, else any parquet/CSV) in the layout of
  Optuna's `Study.trials_dataframe()`: `number`, `state`, `value` or `values_<i|name>`,
  `params_<name>`, `duration` (or `datetime_start`/`datetime_complete`), `user_attrs_*`;
- the best parameters JSON (`*best*.json`, else any JSON), for the directions
  (`direction`/`directions`) and the best values when present.

Directions not stated anywhere are inferred: an objective named like accuracy is maximised,
one named like time, loss, memory or error minimised; an unnamed single objective is
maximised when its values lie in [0, 1] (an accuracy) and minimised otherwise.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import tables
from .html import Panel, esc

MIN_TRIALS_IMPORTANCE = 10
MAXIMISE = re.compile(r"acc|score|auc|f1|throughput|samples", re.I)
MINIMISE = re.compile(r"time|loss|err|mem|second|_s$|latency|cost", re.I)


@dataclass
class Study:
    name: str
    path: Path
    trials: pd.DataFrame = field(default_factory=pd.DataFrame)
    objectives: list[str] = field(default_factory=list)  # columns of the trials table
    names: list[str] = field(default_factory=list)  # display names of the objectives
    directions: list[str] = field(default_factory=list)  # 'maximize' / 'minimize'
    best: dict = field(default_factory=dict)
    problem: str = ""  # why the study cannot be shown ('' when it can)

    @property
    def params(self) -> list[str]:
        return [c for c in self.trials.columns if c.startswith("params_")]


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


def load_study(d: Path) -> Study:
    st = Study(d.name, d)
    table = _pick(d, (".parquet", ".csv"), "trial")
    best = _pick(d, (".json",), "best")
    if best is not None:
        try:
            obj = json.loads(best.read_text())
            st.best = obj if isinstance(obj, dict) else {"value": obj}
        except (OSError, ValueError):
            st.best = {}
    if table is None:
        st.problem = "no trials table (CSV or parquet) in this study's folder yet"
        return st
    try:
        df = pd.read_parquet(table) if table.suffix == ".parquet" else pd.read_csv(table)
    except Exception as e:  # noqa: BLE001 - a broken file is reported on the page
        st.problem = f"cannot read {table.name}: {type(e).__name__}: {e}"
        return st
    st.trials = _normalise_trials(df)
    st.objectives, st.names = _objectives(st)
    st.directions = _directions(st)
    if st.trials.empty:
        st.problem = "the trials table is empty"
    elif not st.objectives:
        st.problem = "the trials table has no objective column (value or values_*)"
    return st


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


def _objectives(st: Study) -> tuple[list[str], list[str]]:
    """Objective columns and names: the best file's `metrics` when it names them."""
    cols = list(st.trials.columns)
    metrics = st.best.get("metrics")
    if isinstance(metrics, list) and metrics and all(f"values_{m}" in cols for m in metrics):
        return [f"values_{m}" for m in metrics], [str(m) for m in metrics]
    if "value" in cols:  # single objective (a values_<name> twin, if any, is the same)
        named = [c for c in cols if re.fullmatch(r"values?_.+", c)]
        return ["value"], [_objective_name(named[0]) if len(named) == 1 else "objective"]
    found = [c for c in cols if re.fullmatch(r"values_.+", c)]
    return found, [_objective_name(c) for c in found]


def _objective_name(col: str) -> str:
    m = re.fullmatch(r"values?_(.+)", col)
    if not m:
        return "objective"
    return f"objective {m.group(1)}" if m.group(1).isdigit() else m.group(1)


def _directions(st: Study) -> list[str]:
    given = st.best.get("directions") or (
        [st.best["direction"]] if isinstance(st.best.get("direction"), str) else None)
    if isinstance(given, list) and len(given) == len(st.objectives):
        return [str(g).lower().replace("studydirection.", "") for g in given]
    out = []
    for col, name in zip(st.objectives, st.names, strict=True):
        if MAXIMISE.search(name):
            out.append("maximize")
        elif MINIMISE.search(name):
            out.append("minimize")
        else:
            v = st.trials[col].dropna()
            out.append("maximize" if len(v) and v.between(0, 1).all() else "minimize")
    return out


def complete(st: Study) -> pd.DataFrame:
    t = st.trials[st.trials["state"] == "COMPLETE"]
    return t.dropna(subset=st.objectives) if st.objectives else t


# ---------------------------------------------------------------------------- panels


def history_panel(st: Study, key: str) -> Panel:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    title = f"Study {st.name}: optimization history"
    done = complete(st)
    if done.empty:
        return Panel(key, title, message=f"Study {st.name} has no completed trial yet "
                     f"({_state_counts(st)}).")
    n = len(st.objectives)
    fig = make_subplots(rows=1, cols=n, horizontal_spacing=0.1,
                        subplot_titles=[esc(f"{nm} ({d})") for nm, d in
                                        zip(st.names, st.directions, strict=True)])
    data = []
    pruned = st.trials[st.trials["state"] == "PRUNED"]
    texts = []
    for i, (col, name, direction) in enumerate(
            zip(st.objectives, st.names, st.directions, strict=True), 1):
        maximize = direction == "maximize"
        meta = f"{name} trials"
        fig.add_trace(go.Scatter(
            x=done["number"].tolist(), y=done[col].tolist(), mode="markers", meta=meta,
            name="completed trial", marker={"color": "#1c7ed6", "size": 7}, showlegend=i == 1,
            hovertemplate="trial %{x}: %{y:.4g}<extra></extra>"), row=1, col=i)
        best = done[col].cummax() if maximize else done[col].cummin()
        bmeta = f"{name} best so far"
        fig.add_trace(go.Scatter(
            x=done["number"].tolist(), y=best.tolist(), mode="lines", meta=bmeta,
            line={"color": "#d9480f", "shape": "hv"}, name="best so far", showlegend=i == 1,
            hovertemplate="best after trial %{x}: %{y:.4g}<extra></extra>"), row=1, col=i)
        for x, y, b in zip(done["number"], done[col], best, strict=True):
            data.append({"trace": meta, "objective": name, "x": x, "y": y, "state": "COMPLETE"})
            data.append({"trace": bmeta, "objective": name, "x": x, "y": b,
                         "state": "best so far"})
        if len(pruned):
            floor = float(done[col].min() if maximize else done[col].max())
            pmeta = f"{name} pruned"
            fig.add_trace(go.Scatter(
                x=pruned["number"].tolist(), y=[floor] * len(pruned), mode="markers",
                meta=pmeta, name="pruned trial (no final value)", showlegend=i == 1,
                marker={"symbol": "line-ns-open", "color": "#868e96", "size": 12},
                hovertemplate="trial %{x}: pruned<extra></extra>"), row=1, col=i)
            for x in pruned["number"]:
                data.append({"trace": pmeta, "objective": name, "x": x, "y": floor,
                             "state": "PRUNED (plotted at the worst completed value)"})
        fig.update_xaxes(title_text="trial", tickformat="d",
                         dtick=max(1, int(st.trials["number"].max() or 0) // 10 + 1),
                         row=1, col=i)
        first, last = float(best.iloc[0]), float(best.iloc[-1])
        at = int(done.loc[(done[col] == last)].iloc[0]["number"])
        texts.append(f"{name} ({direction}): best {last:.4g} at trial {at}, from "
                     f"{first:.4g} after the first completed trial")
    fig.update_layout(legend={"orientation": "h", "y": -0.25})
    caption = (f"{_state_counts(st)}. " + "; ".join(texts) + "."
               + (" Pruned trials are marked at the worst completed value." if len(pruned)
                  else ""))
    return Panel(key, title, caption, fig, pd.DataFrame(data), height=400)


def _state_counts(st: Study) -> str:
    c = st.trials["state"].value_counts()
    return f"{len(st.trials)} trials: " + ", ".join(f"{k.lower()} {v}" for k, v in c.items())


def importances(st: Study, objective: str, bins: int = 5) -> dict[str, float]:
    """Share of the objective's variance each parameter explains on its own, normalised.

    The correlation ratio eta^2 = Var(E[y | parameter]) / Var(y) over completed trials, with a
    numeric parameter cut into up to `bins` quantile bins (log-spaced values are ranked, so
    the same) and a categorical one grouped by value; the shares sum to 1. A first-order
    (main-effect) analysis in the spirit of fANOVA, without fitting a forest: Optuna's
    fANOVA needs scikit-learn, whose import alone would cost the report several seconds.
    """
    done = complete(st)
    y = done[objective].to_numpy(float)
    if len(y) < 3 or np.var(y) == 0:
        return {}
    raw = {}
    for col in st.params:
        v = done[col]
        if v.nunique(dropna=True) < 2:
            continue
        num = pd.to_numeric(v, errors="coerce")
        if num.notna().all() and v.nunique() > bins:
            groups = pd.qcut(num.rank(method="first"), bins, labels=False)
        else:
            groups = v.astype(str)
        means = pd.Series(y, index=done.index).groupby(groups).transform("mean")
        raw[col[len("params_"):]] = float(np.var(means.to_numpy(float)) / np.var(y))
    total = sum(raw.values())
    if total <= 0:
        return {k: 0.0 for k in raw}
    return {k: v / total for k, v in sorted(raw.items(), key=lambda kv: -kv[1])}


def importance_panel(st: Study, key: str) -> Panel:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    title = f"Study {st.name}: parameter importances"
    done = complete(st)
    varying = [c for c in st.params if done[c].nunique(dropna=True) > 1] if len(done) else []
    if len(done) < MIN_TRIALS_IMPORTANCE or not varying:
        return Panel(key, title, message=f"Parameter importances need at least "
                     f"{MIN_TRIALS_IMPORTANCE} completed trials with a varying parameter (with "
                     f"fewer, every trial is its own bin and every parameter seems to explain "
                     f"everything); study {st.name} has {len(done)} completed trial(s) and "
                     f"{len(varying)} varying parameter(s).")
    fig = make_subplots(rows=1, cols=len(st.objectives), horizontal_spacing=0.15,
                        subplot_titles=[esc(n) for n in st.names])
    data, texts = [], []
    for i, (col, name) in enumerate(zip(st.objectives, st.names, strict=True)):
        items = sorted(importances(st, col).items(), key=lambda kv: kv[1])
        meta = f"{name} importance"
        fig.add_trace(go.Bar(
            x=[v for _, v in items], y=[esc(k) for k, _ in items], orientation="h",
            meta=meta, marker={"color": "#1c7ed6"}, showlegend=False,
            hovertemplate="%{y}: %{x:.2f}<extra></extra>"), row=1, col=i + 1)
        fig.update_xaxes(title_text="share of explained variance", range=[0, 1],
                         row=1, col=i + 1)
        for k, v in items:
            data.append({"trace": meta, "objective": name, "x": v, "y": k})
        if items:
            top = items[-1]
            texts.append(f"for {name}, {top[0]} carries {top[1]:.0%} of what the parameters "
                         f"explain one at a time")
        else:
            texts.append(f"{name} does not vary")
    caption = (f"Importance = the share of the objective's variance a parameter explains on its "
               f"own (correlation ratio over quantile bins, normalised), over {len(done)} "
               f"completed trials: " + "; ".join(texts) + ". Interactions are not counted, "
               "and few trials make these rough.")
    return Panel(key, title, caption, fig, pd.DataFrame(data),
                 height=max(260, 120 + 40 * len(varying)))


def pareto_mask(values: np.ndarray, directions: list[str]) -> np.ndarray:
    """True for the points no other point dominates (all objectives, given directions)."""
    v = np.asarray(values, dtype=float) * np.array(
        [-1.0 if d == "maximize" else 1.0 for d in directions])
    n = len(v)
    mask = np.ones(n, dtype=bool)
    for i in range(n):
        dominated = np.all(v <= v[i], axis=1) & np.any(v < v[i], axis=1)
        mask[i] = not dominated.any()
    return mask


def pareto_panel(st: Study, key: str) -> Panel | None:
    import plotly.graph_objects as go

    if len(st.objectives) < 2:
        return None
    title = f"Study {st.name}: Pareto front"
    done = complete(st)
    if len(done) < 2:
        return Panel(key, title, message=f"A Pareto front needs at least 2 completed trials; "
                     f"study {st.name} has {len(done)}.")
    a, b = st.objectives[:2]
    mask = pareto_mask(done[st.objectives].to_numpy(), st.directions)
    front = done[mask].sort_values(a)
    rest = done[~mask]
    fig = go.Figure()
    data = []
    for part, meta, name, style in ((rest, "dominated", "dominated trial",
                                     {"color": "#adb5bd", "size": 7}),
                                    (front, "pareto", "Pareto-optimal trial",
                                     {"color": "#d9480f", "size": 10})):
        fig.add_trace(go.Scatter(
            x=part[a].tolist(), y=part[b].tolist(), mode="markers", meta=meta, name=name,
            marker=style, text=[f"trial {int(n)}" for n in part["number"]],
            hovertemplate="%{text}: %{x:.4g}, %{y:.4g}<extra></extra>"))
        for _, r in part.iterrows():
            data.append({"trace": meta, "trial": r["number"], "x": r[a], "y": r[b],
                         **{f"params_{k[7:]}": r[k] for k in st.params}})
    fig.update_xaxes(title_text=esc(f"{st.names[0]} ({st.directions[0]})"))
    fig.update_yaxes(title_text=esc(f"{st.names[1]} ({st.directions[1]})"))
    ends = front.iloc[[0, -1]]
    caption = (f"{len(front)} of {len(done)} completed trials are Pareto-optimal; the front "
               f"runs from {st.names[0]} {ends[a].iloc[0]:.4g} / {st.names[1]} "
               f"{ends[b].iloc[0]:.4g} to {ends[a].iloc[-1]:.4g} / {ends[b].iloc[-1]:.4g}.")
    if len(st.objectives) > 2:
        caption += " Only the first two objectives are drawn; the front uses all of them."
    return Panel(key, title, caption, fig, pd.DataFrame(data), height=420)


def pruning_savings(st: Study) -> dict:
    """Compute spent, and saved by pruning.

    A pruned trial would have run as long as a completed one. In epochs (when the trials
    table records `user_attrs_epochs_trained`): the budget is the study's epochs (best file's
    `base.epochs`, else the most any completed trial trained) and what a pruned trial did not
    train of it is saved. In seconds: a pruned trial would have taken the median completed
    trial's duration.
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
        base = st.best.get("base") if isinstance(st.best.get("base"), dict) else {}
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


def final_runs(df: pd.DataFrame, study: str) -> list[list]:
    """Rows for the table of runs trained with the study's best parameters: mean test
    accuracy over seeds with its t-interval, failed runs at chance."""
    from .. import stats

    rows = df[(df["tuned"] == study)]
    out = []
    for (fw, fam, ds, size), part in rows.groupby(["framework", "family", "dataset", "size"]):
        ok = part[part["status"] == "ok"]
        iv = stats.mean_t_ci(tables.metric_values(part, "test_acc"))
        out.append([tables.framework_name(fw), fam, ds, size, f"{len(ok)} of {len(part)}",
                    tables.fmt_ci(iv, lambda x: f"{x:.3f}" if math.isfinite(x) else "n/a")])
    return out
