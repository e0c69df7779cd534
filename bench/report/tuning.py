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

A study is judged by its final runs against its cell's baseline in `tuning_judge`, which
the overview's headline reads too. Runs of a study at another size than its cell are
transfer runs (the smallest tuned size's parameters at the largest), compared here with the
largest size's own.
"""

from __future__ import annotations

import math

import pandas as pd

from ..study import stats
from . import curve_data, page_kit, plots, tables, tuning_optuna, tuning_studies
from .html import Page, Panel, Raw, esc, table
from .tuning_judge import (
    baseline_runs,
    cell_label,
    compare,
    judge,
    own_runs,
    verdict,
    verdict_line,
)

# ---------------------------------------------------------------------------- optuna figures


# ---------------------------------------------------------------------------- cost


def pruning_savings(st: tuning_studies.Study) -> dict:
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


def pruning_text(st: tuning_studies.Study) -> str:
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


def state_counts(st: tuning_studies.Study) -> dict[str, int]:
    """Trials per state (COMPLETE, PRUNED, ...): best.json's counts where it has them, else
    the trials table's."""
    states = st.best.get("states")
    if isinstance(states, dict) and states:
        return {k: int(v) for k, v in states.items() if isinstance(v, (int, float))}
    t = st.trials
    return ({str(k): int(v) for k, v in t["state"].value_counts().items()} if "state" in t
            else {})


def trial_counts(st: tuning_studies.Study) -> tuple[int, int]:
    """(trials, pruned): best.json's where it counts them (pruned: its `trials_pruned`),
    else the trials table's rows."""
    states = state_counts(st)
    if isinstance(st.best.get("states"), dict) and st.best["states"]:
        return sum(states.values()), int(st.best.get("trials_pruned", states.get("PRUNED", 0)) or 0)
    return len(st.trials), states.get("PRUNED", 0)


def study_flops(st: tuning_studies.Study) -> float:
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
    for u in curve_data.lr_units(df, cell.get("family", ""), cell.get("dataset", "")):
        if u["size"] == cell.get("size") and u["optimizer"] == optimizer:
            f = [curve_data.run_flops(r) for r in u["members"].to_dict("records")]
            f = [x for x in f if math.isfinite(x)]
            return (float(sum(f)) if f else math.nan), len(u["members"])
    return math.nan, 0


def cost_row(df: pd.DataFrame, st: tuning_studies.Study) -> list:
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


def selection_text(df: pd.DataFrame, st: tuning_studies.Study) -> str:
    """Why the best trial's validation accuracy overstates its parameters: it is the
    highest of many noisy estimates on one validation set. The same parameters' validation
    accuracy on the final runs' seeds, beside the baseline's, shows by how much."""
    best = (st.best.get("best_values") or {}).get("val_acc")
    completed = state_counts(st).get("COMPLETE", 0)
    cell = st.cell or {}
    if not isinstance(best, (int, float)) or not completed or df.empty:
        return ""
    own = own_runs(df, st.name, cell.get("size"))
    base = baseline_runs(df, cell)
    n_val = pd.concat([own, base])["n_val"].dropna()
    if own.empty or base.empty or n_val.empty:
        return ""
    n = int(n_val.median())
    se = math.sqrt(max(best * (1 - best), 1e-12) / n)
    return (f"Selection: the best trial's validation accuracy, {best:.3f}, is the highest of "
            f"{completed} completed trials on the same {n} validation samples (one "
            f"estimate's standard error is about {se:.3f}), a maximum that tends to overstate "
            f"its parameters. On the final runs' {len(own)} seeds they reach "
            f"{own['best_val_acc'].mean():.3f} on validation (the baseline "
            f"{base['best_val_acc'].mean():.3f} over its {len(base)}); "
            f"the test comparison below is the one to trust.")


def _fmt(iv: stats.Interval) -> str:
    return tables.fmt_ci(iv, lambda x: f"{x:.3f}" if math.isfinite(x) else "n/a")


def judgement_rows(results: list[dict]) -> list[list]:
    return [[tables.framework_name(r["framework"]), f"{r['n_a']} (seeds {r['seeds_a']})",
             _fmt(r["a"]), f"{r['n_b']} (seeds {r['seeds_b']})", _fmt(r["b"]),
             r["verdict"][1]] for r in results]


def tuned_cells(df: pd.DataFrame, studies: list[tuning_studies.Study]) -> pd.DataFrame:
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


def transfers(df: pd.DataFrame, studies: list[tuning_studies.Study]) -> list[dict]:
    """Per family/dataset with a transfer run: the smallest tuned size's parameters at the
    largest size (runs of the small study at the large size) against the large size's own
    study there. Entries: family, dataset, small/large study and size, results (`compare`:
    a = transferred, b = own)."""
    cells = tuned_cells(df, studies)
    out = []
    for (family, dataset), part in cells.groupby(["family", "dataset"], sort=False):
        part = part.assign(_r=part["size"].map(tables.size_rank)).sort_values("_r")
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
    sizes = sorted(set(tuned["size"]) & set(base["size"]), key=tables.size_rank)
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


def scale_panel(df: pd.DataFrame, studies: list[tuning_studies.Study], family: str, dataset: str,
                key: str) -> Panel | None:
    """Tuned test accuracy (each size's own study's final runs) against parameter count,
    beside the untuned scale line; None where the family/dataset has no tuned size."""
    from plotly.subplots import make_subplots


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
        style = plots.style(label, i)
        name = tables.framework_name(label)
        for what, rows, dash, symbol in (("untuned", base, "dot", "circle"),
                                         ("tuned", tuned, "solid", "star")):
            pts = tables.scale_points(_on(rows, label).assign(framework=label), "test_acc",
                                      pool=False)
            if pts.empty:
                continue
            st = {"line": {**style["line"], "dash": dash},
                  "marker": {**style["marker"], "symbol": symbol}}
            plots.points_trace(fig, pts, f"{label} {what}", f"{name}, {what}", st, 1,
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


def tuning_page(df: pd.DataFrame, studies: list[tuning_studies.Study]) -> Page:
    page = Page("tuning.html", "Tuning studies",
                "Each tuning study judged against its baseline (the untuned runs the scale "
                "page draws at that size: learning rate chosen on validation), per framework "
                "and pooled; what each study cost against the learning-rate grid it competes "
                "with; whether a small size's parameters transfer to the largest; then "
                "Optuna's own figures of every study.")
    if not studies:
        page.message("No tuning studies in this study: nothing under the tuning folder.")
        return page
    keys = page_kit.Keys()
    judged = [(st, judge(df, st)) for st in studies]
    page.h2("Did tuning pay?")
    _verdicts(page, judged)
    page.h2("What each study cost")
    page.add(table([cost_row(df, st) for st in studies if st.cell],
                   ["study", "cell", "trials", "pruned", "trials' training TFLOP",
                    "lr grid's TFLOP (rates, optimizer)", "study / grid"]))
    page.p("A study's FLOPs are what all its trials trained (best.json's flops_spent); the "
           "grid's are the runs of the learning-rate grid of the same family, dataset, size "
           "and the scale recipe's optimizer, the selection tuning replaces. Studies "
           "exported before flops_spent was recorded say 'not recorded'.", cls="caption")
    moved = transfers(df, studies)
    if moved:
        page.h2("Do a small size's parameters transfer?")
        for t in moved:
            page.p(transfer_text(t))
    for st, results in judged:
        page.h2(f"Study {st.name}")
        if st.problem:
            page.message(f"Study {st.name} cannot be shown: {st.problem}.")
            continue
        page.p(f"{cell_label(st.cell)}. Trials read from {st.source}. "
               + pruning_text(st), cls="caption")
        for note in st.notes:
            page.message(note)
        items = st.best.get("best_params", st.best.get("params"))
        if isinstance(items, dict) and items:
            rows = [[k, page_kit.short(v)] for k, v in items.items()]
            values = st.best.get("best_values")
            if isinstance(values, dict):
                rows += [[f"objective {k}", page_kit.short(v)] for k, v in values.items()]
            page.add(table(rows, ["best trial", "value"]))
        selection = selection_text(df, st)
        if selection:
            page.p(selection, cls="caption")
        if results:
            page.p("Final runs with the best parameters (records with tuned = "
                   f"{st.name}) against the baseline, test accuracy:", cls="caption")
            page.add(table(judgement_rows(results),
                           ["framework", "tuned runs", "tuned, mean [95% CI]", "baseline runs",
                            "baseline, mean [95% CI]", "tuned − baseline"]))
        for build in tuning_optuna.PANELS:
            k = keys("tune", st.name, build.__name__.replace("_panel", ""))
            panel = page_kit.safe(k, f"Study {st.name}", lambda b=build, k=k, s=st: b(s, k))
            if panel is not None:
                page.add(panel)
    return page


def _verdicts(page: Page, judged: list) -> None:
    """The headline: a tuner that recommends a worse model than the defaults is a defect,
    stated first; then every study's verdicts."""
    worse = [(st, r) for st, res in judged for r in res if r["verdict"][0] == "worse"]
    if worse:
        page.message(
            "Tuning made the model worse in " + "; ".join(
                f"{cell_label(st.cell)} ({tables.framework_name(r['framework'])}: "
                f"{r['verdict'][1]})" for st, r in worse)
            + ". The tuner recommends hyperparameters that lose to the untuned defaults: a "
              "defect of the tuning setup (trial budget, space or objective), not a finding.")
    lines = [verdict_line(st, res) + "." for st, res in judged]
    page.p("Tuned minus baseline test accuracy (mean over seeds, 95% Welch interval; a gain "
           "is claimed only where the interval excludes zero; failed runs at chance; pooled "
           "where the frameworks ran disjoint seeds):", cls="caption")
    page.add(Raw("<ul>" + "".join(f"<li>{esc(x)}</li>" for x in lines) + "</ul>"))


def page(inputs) -> Page:
    """The page, as `bench.report.PAGES` builds it."""
    return tuning_page(inputs.df, inputs.studies)
