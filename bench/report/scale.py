"""The scale page: accuracy, throughput and memory against size with power-law fits; tuned against
untuned per size; the runtime baseline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..study import stats
from . import page_kit, plots, prose, scale_budget, tables, tuning, tuning_studies
from .html import Page, Panel, esc


def scale_page(df: pd.DataFrame, studies: list[tuning_studies.Study] | tuple = ()) -> Page:
    page = Page("scale.html", "Scale vs performance",
                "Per family and dataset: test accuracy, training throughput and model memory "
                "against parameter count (log axis), one line per framework and a pooled "
                "accuracy line where the frameworks' seeds are disjoint, mean over seeds with "
                "95% t-interval, and a power law where it fits; then how each size's learning "
                "rate was chosen, accuracy against training compute with the "
                "compute-efficient frontier, and the framework runtimes' own memory.")
    if page_kit.no_runs(page, df):
        return page
    page.h2("Accuracy, throughput and memory against size")
    page_kit.panel_per_group(page, df, "scale", scale_panel)
    keys = page_kit.Keys()
    cells = tuning.tuned_cells(df, list(studies))
    tuned = sorted(set(zip(cells["family"], cells["dataset"], strict=True)),
                   key=tables.groups(df).index)
    if tuned:
        page.h2("Tuned against untuned, per size")
        for family, dataset in tuned:
            k = keys("tuned", family, dataset)
            page.add(page_kit.safe(k, f"{family} on {dataset}", lambda f=family, d=dataset, k=k:
                                   tuning.scale_panel(df, studies, f, d, k)))
    page.h2("Learning rate chosen per size")
    shown = 0
    for family, dataset in tables.groups(df):
        k = keys("lr", family, dataset)
        panel = page_kit.safe(k, f"{family} on {dataset}",
                              lambda f=family, d=dataset, k=k: scale_budget.lr_panel(df, f, d, k))
        if panel is not None:
            page.add(panel)
            shown += 1
    if not shown:
        page.message("No learning-rate grid in this study (no run has lr_role 'grid'): every "
                     "run trained at its optimizer's configured learning rate.")
    page.h2("Accuracy against training compute")
    page_kit.panel_per_group(page, df, "compute", _scale_compute_panel)
    page.h2("Runtime baseline")
    page.add(page_kit.safe("baseline", "Runtime baseline",
                           lambda: baseline_panel(df, keys("baseline"))))
    return page


@dataclass(frozen=True)
class Wording:
    """How a family's accuracy reads on the scale page: a classifier's test accuracy, a
    translation model's greedy exact match (its samples are sentences)."""

    label: str = "Accuracy"  # starts a caption's sentence
    name: str = "accuracy"  # in a panel's title
    subplot: str = "test accuracy"
    axis: str = "test accuracy"
    throughput_axis: str = "training samples/s"
    validation: str = "validation accuracy"
    note: str = ""  # a last caption line


def wording(family: str) -> Wording:
    if family not in tables.GENERATION_FAMILIES:
        return Wording()
    return Wording("Exact match", "exact match", "test exact match (greedy)", "test exact match",
                   "training sentences/s", "validation exact match",
                   f"{family}: test accuracy is the greedy exact match on the test set (a "
                   "failed run counts at 0, the chance of an exact match) and a sample is a "
                   "sentence; BLEU, chrF, beam search and decoding speed are on the Generation "
                   "page.")


def _scale_compute_panel(df: pd.DataFrame, family: str, dataset: str, key: str) -> Panel:
    return scale_budget.compute_panel(df, family, dataset, key, wording(family).validation)


SCALE_METRICS = [  # (column, axis title, short name, fit on 1 - value)
    ("test_acc", "test accuracy", "accuracy", True),
    ("train_samples_per_s", "training samples/s", "throughput", False),
    ("model_mem_mb", "model memory (MB above the runtime baseline)", "memory", False),
]


def _fit_rows(rows: pd.DataFrame, pts: pd.DataFrame, fw: str) -> pd.DataFrame:
    """The runs behind a line: one framework's, or for the pooled line those at its sizes."""
    if fw == tables.POOLED:
        return rows[rows["size"].isin(set(pts["size"]))]
    return rows[rows["framework"] == fw]


@dataclass(frozen=True)
class Line:
    """One line of a scale figure: a framework's (or the pooled) mean per size and the power
    law fitted to its runs (`fit_x`: the parameter counts the fit saw)."""

    fw: str
    pts: pd.DataFrame
    fit: stats.PowerLawFit
    fit_x: pd.Series


def scale_lines(rows: pd.DataFrame, metric: str, fit_error: bool
                ) -> tuple[pd.DataFrame, list[Line]]:
    """(every point of `metric`, one `Line` per framework and pooled, in legend order); the
    fit is on 1 - value where `fit_error` (an accuracy's error falls as a power law)."""
    pts_all = tables.scale_points(rows, metric)
    lines = []
    for fw in sorted(set(pts_all["framework"]), key=tables.framework_rank):
        pts = pts_all[pts_all["framework"] == fw]
        fr = _fit_rows(rows, pts, fw)
        vals = tables.metric_values(fr, metric)
        keep = vals.notna()
        yvals = 1.0 - vals[keep] if fit_error else vals[keep]
        fit = stats.power_law_fit(fr.loc[keep, "params"], yvals,
                                  clusters=tables.fit_clusters(fr[keep]))
        lines.append(Line(fw, pts, fit, fr.loc[keep, "params"]))
    return pts_all, lines


def memory_estimate(ok: pd.DataFrame) -> pd.DataFrame | None:
    """The analytic memory estimate per size (median over runs: params, y), or None."""
    est = ok[ok["model_mem_est_mb"].notna()]
    if est.empty:
        return None
    return (est.groupby("size").agg(params=("params", "median"), y=("model_mem_est_mb", "median"))
            .reset_index().sort_values("params"))


def scale_panel(df: pd.DataFrame, family: str, dataset: str, key: str) -> Panel:
    """Accuracy, throughput and memory against parameter count, the accuracy worded as the
    family's (`wording`)."""
    words = wording(family)
    recipe, rows = tables.scale_selection(df, family, dataset)
    title = (f"{family} on {dataset}: {words.name}, throughput and memory against parameter "
             "count")
    ok = rows[rows["status"] == "ok"]
    if ok.empty:
        return Panel(key, title, message=f"No successful run of {family} on {dataset}: "
                     f"{prose.counts_text(rows)}. Nothing to plot.")
    fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.08, subplot_titles=[
        words.subplot, "training throughput", "model memory"])
    data: list[dict] = []
    sentences = []
    acc_pts = None
    for col, (metric, axis_title, short, fit_error) in enumerate(SCALE_METRICS, 1):
        accuracy = metric in tables.ACCURACY_METRICS
        pts_all, lines = scale_lines(rows, metric, fit_error)
        if col == 1:
            acc_pts = pts_all
        for i, line in enumerate(lines):
            name = tables.framework_name(line.fw)
            style = plots.style(line.fw, i)
            plots.points_trace(fig, line.pts, f"{line.fw} {short}", name, style, col, col == 1,
                                accuracy, data, metric)
            if line.fit.holds:
                plots.fit_trace(fig, line.fit, line.fit_x, f"{line.fw} {short} fit",
                                 f"{name} power law",
                                 {"color": style["line"]["color"], "dash": "dot", "width": 1.5},
                                 col, fit_error, data, metric, line.fw)
        est = None
        if short == "memory":
            g = memory_estimate(ok)
            if g is not None:
                _estimate_trace(fig, g, col, data)
                est = stats.power_law_fit(g["params"], g["y"])
            if not lines:
                fig.add_annotation(text="model memory not recorded", showarrow=False,
                                   xref=f"x{col} domain", yref=f"y{col} domain", x=0.5, y=0.5)
        fig.update_xaxes(type="log", title_text="parameters", row=1, col=col)
        axis_title = {1: words.axis, 2: words.throughput_axis}.get(col, axis_title)
        fig.update_yaxes(title_text=esc(axis_title), row=1, col=col)
        per_line = [(line.fw, line.pts, line.fit) for line in lines]
        sentences.append(_scale_sentence(short, per_line, fit_error, rows, est, words.label))
    own = acc_pts[acc_pts["framework"] != tables.POOLED]
    one_seed = ""
    if own.empty or own["n_seeds"].max() < stats.MIN_INTERVAL_N:
        pooled = acc_pts.loc[acc_pts["framework"] == tables.POOLED, "n_seeds"]
        few = f"Fewer than {stats.MIN_INTERVAL_N} seeds"
        one_seed = (f" {few} per point: no interval (the CSV lists each point's seeds)."
                    if pooled.empty or pooled.max() < stats.MIN_INTERVAL_N else
                    f" {few} per framework and size: no interval on the framework lines; "
                    f"the pooled points hold {int(pooled.max())} runs.")
    caption = (f"Recipe: {tables.recipe_label(recipe)}; mean over seeds with 95% t-interval "
               f"({prose.n_text(acc_pts)}); dotted: power law fitted where it holds "
               f"(≥{stats.FIT_MIN_SIZES} sizes, R² ≥ {stats.FIT_MIN_R2:g} in log-log), the "
               f"exponent's 95% CI from a bootstrap over seeds (each seed's runs at every "
               f"size resampled together; with fewer than {stats.MIN_CLUSTERS} seeds the "
               f"slope's t-interval, named where used).\n" + prose.pooling_sentence(rows) + "\n"
               + "\n".join(sentences)
               + f"\n{tables.cap_phrase(rows, capital=True)}."
               + one_seed + (f"\n{words.note}" if words.note else ""))
    fig.update_layout(legend={"orientation": "h", "y": -0.2})
    return Panel(key, title, caption, fig, pd.DataFrame(data), height=450)


def _estimate_trace(fig, g: pd.DataFrame, col: int, data: list) -> None:
    """`memory_estimate`'s points, dashed."""
    meta = "estimate memory"
    fig.add_trace(go.Scatter(
        x=g["params"].tolist(), y=g["y"].tolist(), mode="lines+markers", meta=meta,
        name="estimate (weights, gradients, optimizer state, activations)",
        legendgroup="estimate", line={"color": "#868e96", "dash": "dash", "width": 2},
        marker={"color": "#868e96", "size": 6, "symbol": "square"},
        hovertemplate="estimate %{y:.3g} MB at %{x:,.0f} params<extra></extra>",
    ), row=1, col=col)
    for r in g.itertuples():
        data.append({"trace": meta, "metric": "model_mem_est_mb", "framework": "",
                     "size": r.size, "x": r.params, "y": r.y})


def _growth(measured: stats.PowerLawFit, est: stats.PowerLawFit) -> str:
    if not (measured.holds and est is not None and math.isfinite(est.b)):
        return ""
    if measured.b_lo <= est.b <= measured.b_hi:
        return "as the estimate does (its exponent is inside the interval)"
    return ("faster than the estimate" if measured.b_lo > est.b
            else "slower than the estimate")


def _scale_sentence(short: str, per_line: list, fit_error: bool, rows: pd.DataFrame,
                    est: stats.PowerLawFit | None, accuracy_label: str = "Accuracy") -> str:
    label = {"accuracy": accuracy_label, "throughput": "Throughput",
             "memory": "Model memory (peak above the runtime baseline)"}[short]
    if not per_line:
        return f"{label}: not recorded."
    unit = {"throughput": " samples/s", "memory": " MB"}.get(short, "")
    parts, laws = [], []
    for fw, pts, fit in per_line:
        first, last = pts.iloc[0], pts.iloc[-1]
        trend = f"{tables.fmt_num(first['mean'])}{unit} at {first['size']}"
        if len(pts) > 1:
            trend += f" to {tables.fmt_num(last['mean'])} at {last['size']}"
        parts.append(f"{tables.framework_name(fw)} {trend}")
        laws.append((tables.framework_name(fw), fit))
    text = f"{label}: " + "; ".join(parts) + "."
    reasons = {f.reason for _, f in laws if not f.holds}
    what = "test error" if fit_error else ("measured" if short == "memory" else short)
    if all(not f.holds for _, f in laws) and len(reasons) == 1:
        text += f" No power law ({reasons.pop()})."
    else:
        text += " " + "; ".join(
            (f"{name}: {what} {f.describe()}" + (f", growing {_growth(f, est)}"
                                                 if _growth(f, est) else "")
             if f.holds else f"{name}: {f.describe()}")
            for name, f in laws) + "."
    if short == "memory" and est is not None:
        text += (f" Estimate ∝ N^{est.b:.2f} (R² {est.r2:.2f})." if est.holds
                 else f" Estimate: {est.describe()}.")
    failed = tables.failed_phrase(rows, counted=short == "accuracy")
    if failed:
        text += f" {failed}."
    if short == "throughput" and {"torch", "tf"} <= {fw for fw, _, _ in per_line}:
        ok = rows[rows["status"] == "ok"]
        both = [s for s, p in ok.groupby("size") if {"torch", "tf"} <= set(p["framework"])]
        if both:
            size = max(both, key=lambda s: ok.loc[ok["size"] == s, "params"].median())
            at = ok[ok["size"] == size]
            iv = stats.ratio_t_ci(at.loc[at["framework"] == "torch", "train_samples_per_s"],
                                  at.loc[at["framework"] == "tf", "train_samples_per_s"])
            text += f" At {size} (geometric means over seeds): {prose.ratio_claim(iv)}."
    return text


def baseline_panel(df: pd.DataFrame, key: str) -> Panel:
    """The framework runtime's resident memory before any model is built, per framework."""
    title = "Runtime baseline per framework (framework runtime, not the model)"
    rows = tables.study_rows(df)
    rows = rows[rows["rss_start_mb"].notna()]
    if rows.empty:
        return Panel(key, title, message="No run recorded its resident memory before the "
                     "model was built (rss_start_mb).")
    out, data = [], []
    for fw, part in sorted(rows.groupby("framework"), key=lambda kv: tables.framework_rank(kv[0])):
        v = part["rss_start_mb"]
        out.append([tables.framework_name(fw), len(v), f"{v.median():.0f}",
                    f"{v.min():.0f}-{v.max():.0f}"])
        data.append({"trace": "baseline", "framework": fw, "runs": len(v),
                     "median_rss_start_mb": float(v.median()), "min": float(v.min()),
                     "max": float(v.max())})
    from .html import table

    return Panel(key, title,
                 "Resident memory of a run's process before its model is built "
                 "(rss_start_mb, median over runs): the framework runtime, libraries and data, "
                 "not the model. The model memory above is what a run adds on top of it.",
                 None, pd.DataFrame(data),
                 body=table(out, ["framework", "runs", "median MB (framework runtime, not "
                                  "the model)", "range MB"]))


def page(inputs) -> Page:
    """The page, as `bench.report.PAGES` builds it."""
    return scale_page(inputs.df, inputs.studies)
