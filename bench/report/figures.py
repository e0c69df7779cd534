"""Plotly figures and their computed captions, one builder per kind of panel.

Every builder returns a `Panel`: a figure whose data traces carry `meta` = the value of the
`trace` column of the panel's CSV rows (so the numbers behind a figure are exactly its
points), or, where the data cannot support the figure, a message saying why. Every string
that comes from the config or the records is passed through `esc` before plotly sees it
(plotly renders a subset of HTML in labels and decodes entities, so escaped text shows as
typed).
"""

from __future__ import annotations

import html
import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .. import stats
from . import tables
from .html import Panel, esc

html_unescape = html.unescape

COLORS = {"torch": "#d9480f", "tf": "#1c7ed6"}
PALETTE = ["#1c7ed6", "#d9480f", "#2b8a3e", "#862e9c", "#e67700", "#0b7285", "#c2255c",
           "#5c940d"]


def color(fw: str, i: int = 0) -> str:
    return COLORS.get(fw, PALETTE[i % len(PALETTE)])


def _status_note(rows: pd.DataFrame) -> str:
    """Which runs were not ok, by status and where (accuracy counts them at chance)."""
    bad = rows[rows["status"] != "ok"]
    if bad.empty:
        return ""
    parts = []
    for status, part in bad.groupby("status"):
        where = ", ".join(sorted({f"{r.framework} {r.size}" for r in part.itertuples()}))
        parts.append(f"{status} {len(part)} ({where})")
    return (f" Not ok: {'; '.join(parts)}; diverged, oom and error runs enter accuracy at "
            f"chance, pruned runs are left out, throughput and memory use ok runs only.")


def speed_phrase(ratio: float, what: str = "faster") -> str:
    """torch/tf ratio -> 'PyTorch is 1.8x faster than TensorFlow' (either direction)."""
    if not math.isfinite(ratio) or ratio <= 0:
        return "no comparison"
    if ratio >= 1:
        return f"PyTorch is {ratio:.2f}x {what} than TensorFlow"
    return f"TensorFlow is {1 / ratio:.2f}x {what} than PyTorch"


def ratio_ci_phrase(ratio: float, lo: float, hi: float) -> str:
    """The CI of a torch/tf ratio in the direction `speed_phrase` reads it: ' (95% CI 1.4-1.6x)'."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo <= 0:
        return ""
    if ratio < 1:
        lo, hi = 1 / hi, 1 / lo
    return f" (95% CI {lo:.2f}-{hi:.2f}x)"


def ratio_claim(iv: stats.Interval, what: str = "faster") -> str:
    """'TensorFlow is 1.50x faster than PyTorch (95% CI 1.45-1.55x)' where the interval of
    the torch/tf ratio excludes 1, else 'no clear winner: ... overlap (ratio r, 95% CI ...)'."""
    if not math.isfinite(iv.value) or iv.value <= 0:
        return "no comparison"
    if iv.has_ci and (iv.lo > 1 or iv.hi < 1):
        return speed_phrase(iv.value, what) + ratio_ci_phrase(iv.value, iv.lo, iv.hi)
    ci = (f"95% CI {iv.lo:.2f}-{iv.hi:.2f}x" if iv.has_ci else f"n = {iv.n}: no interval")
    return (f"no clear winner: PyTorch and TensorFlow overlap (PyTorch/TensorFlow ratio "
            f"{iv.value:.2f}x, {ci})")


def _n_text(pts: pd.DataFrame) -> str:
    """'3 seeds' or '2-3 seeds' for the points of a figure, with the pooled count apart."""

    def rng(v) -> str:
        v = sorted({int(x) for x in v})
        return (f"{v[0]}" if len(v) == 1 else f"{v[0]}-{v[-1]}") if v else "0"

    own = pts[pts["framework"] != tables.POOLED]["n_seeds"]
    text = f"{rng(own)} seeds"
    pooled = pts[pts["framework"] == tables.POOLED]["n_seeds"]
    if len(pooled):
        text += f"; {rng(pooled)} pooled"
    return text


# ---------------------------------------------------------------------------- scale


SCALE_METRICS = [  # (column, axis title, short name, fit on 1 - value)
    ("test_acc", "test accuracy", "accuracy", True),
    ("train_samples_per_s", "training samples/s", "throughput", False),
    ("model_mem_mb", "model memory (MB above the runtime baseline)", "memory", False),
]
POOLED_COLOR = "#212529"


def _style(fw: str, i: int) -> dict:
    """Line and marker of a framework's line; the pooled line black and thicker."""
    if fw == tables.POOLED:
        return {"line": {"color": POOLED_COLOR, "width": 3},
                "marker": {"color": POOLED_COLOR, "size": 8, "symbol": "diamond"}}
    # equal values in both frameworks (same initial weights, same batches) would hide one
    # marker behind the other: the first framework's are open and larger
    return {"line": {"color": color(fw, i), "dash": "solid" if i == 0 else "dash"},
            "marker": {"color": color(fw, i), "size": 12 if i == 0 else 7,
                       "symbol": "circle-open" if i == 0 else "circle",
                       "line": {"width": 2 if i == 0 else 0}}}


def _point_hover(pts: pd.DataFrame, accuracy: bool) -> list[str]:
    out = []
    for r in pts.itertuples():
        text = f"{r.n_seeds} seeds ({esc(r.seeds)})"
        if r.n_failed:
            text += (f"<br>{r.n_failed} of {r.n_runs} runs failed "
                     + ("(counted at chance accuracy)" if accuracy else "(excluded)"))
        out.append(text)
    return out


def _points_trace(fig, pts: pd.DataFrame, meta: str, name: str, style: dict, col: int,
                  legend: bool, accuracy: bool, data: list, metric: str) -> None:
    """One line of means with t-interval error bars; its points appended to `data`."""
    has_ci = pts["ci_lo"].notna()
    fw = pts["framework"].iloc[0]
    fig.add_trace(go.Scatter(
        x=pts["params"].tolist(), y=pts["mean"].tolist(), mode="lines+markers",
        name=esc(name), legendgroup=esc(fw), showlegend=legend, meta=meta, **style,
        error_y={"type": "data", "symmetric": False,
                 "array": (pts["ci_hi"] - pts["mean"]).where(has_ci, 0).tolist(),
                 "arrayminus": (pts["mean"] - pts["ci_lo"]).where(has_ci, 0).tolist()},
        customdata=np.stack([pts["size"].map(esc), _point_hover(pts, accuracy)],
                            axis=-1).tolist(),
        hovertemplate="size %{customdata[0]} · %{x:,.0f} params<br>mean %{y:.4g}, "
                      "%{customdata[1]}<extra>" + esc(name) + "</extra>",
    ), row=1, col=col)
    for r in pts.itertuples():
        data.append({"trace": meta, "metric": metric, "framework": r.framework,
                     "size": r.size, "x": r.params, "y": r.mean, "ci_lo": r.ci_lo,
                     "ci_hi": r.ci_hi, "n_seeds": r.n_seeds, "n_runs": r.n_runs,
                     "n_failed": r.n_failed, "seeds": r.seeds})


def _fit_rows(rows: pd.DataFrame, pts: pd.DataFrame, fw: str) -> pd.DataFrame:
    """The runs behind a line: one framework's, or for the pooled line those at its sizes."""
    if fw == tables.POOLED:
        return rows[rows["size"].isin(set(pts["size"]))]
    return rows[rows["framework"] == fw]


def _fit_trace(fig, fit: stats.PowerLawFit, xs_from: pd.Series, meta: str, name: str,
               line: dict, col: int, fit_error: bool, data: list, metric: str,
               fw: str) -> None:
    xs = np.geomspace(xs_from.min(), xs_from.max(), 20)
    ys = fit.predict(xs)
    ys = 1.0 - ys if fit_error else ys
    fig.add_trace(go.Scatter(
        x=xs.tolist(), y=ys.tolist(), mode="lines", meta=meta, name=esc(name),
        legendgroup=esc(fw), showlegend=False, line=line,
        hovertemplate=esc(fit.describe()) + "<extra></extra>",
    ), row=1, col=col)
    for x, y in zip(xs, ys, strict=True):
        data.append({"trace": meta, "metric": metric, "framework": fw, "x": x, "y": y,
                     "exponent": fit.b, "exponent_lo": fit.b_lo, "exponent_hi": fit.b_hi,
                     "r2": fit.r2, "ci_method": fit.ci_method,
                     "fitted": f"1 - {metric}" if fit_error else metric})


def scale_panel(df: pd.DataFrame, family: str, dataset: str, key: str,
                accuracy_label: str = "Accuracy") -> Panel:
    """Accuracy, throughput and memory against parameter count; `accuracy_label` names
    the accuracy in the caption (a translation model's is its exact match)."""
    recipe, rows = tables.scale_selection(df, family, dataset)
    title = f"{family} on {dataset}: accuracy, throughput and memory against parameter count"
    ok = rows[rows["status"] == "ok"]
    if ok.empty:
        return Panel(key, title, message=f"No successful run of {family} on {dataset}: "
                     f"{_counts_text(rows)}. Nothing to plot.")
    fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.08, subplot_titles=[
        "test accuracy", "training throughput", "model memory"])
    data: list[dict] = []
    sentences = []
    acc_pts = None
    for col, (metric, axis_title, short, fit_error) in enumerate(SCALE_METRICS, 1):
        accuracy = metric in tables.ACCURACY_METRICS
        pts_all = tables.scale_points(rows, metric)
        if col == 1:
            acc_pts = pts_all
        per_line = []
        lines = sorted(set(pts_all["framework"]), key=tables.framework_rank)
        for i, fw in enumerate(lines):
            pts = pts_all[pts_all["framework"] == fw]
            name = tables.framework_name(fw)
            style = _style(fw, i)
            _points_trace(fig, pts, f"{fw} {short}", name, style, col, col == 1, accuracy,
                          data, metric)
            fr = _fit_rows(rows, pts, fw)
            vals = tables.metric_values(fr, metric)
            keep = vals.notna()
            yvals = 1.0 - vals[keep] if fit_error else vals[keep]
            fit = stats.power_law_fit(fr.loc[keep, "params"], yvals,
                                      clusters=tables.fit_clusters(fr[keep]))
            per_line.append((fw, pts, fit))
            if fit.holds:
                _fit_trace(fig, fit, fr.loc[keep, "params"], f"{fw} {short} fit",
                           f"{name} power law",
                           {"color": style["line"]["color"], "dash": "dot", "width": 1.5},
                           col, fit_error, data, metric, fw)
        est = None
        if short == "memory":
            est = _estimate_trace(fig, ok, col, data)
            if not lines:
                fig.add_annotation(text="model memory not recorded", showarrow=False,
                                   xref=f"x{col} domain", yref=f"y{col} domain", x=0.5, y=0.5)
        fig.update_xaxes(type="log", title_text="parameters", row=1, col=col)
        fig.update_yaxes(title_text=esc(axis_title), row=1, col=col)
        sentences.append(_scale_sentence(short, per_line, fit_error, rows, est,
                                         accuracy_label))
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
               f"({_n_text(acc_pts)}); dotted: power law fitted where it holds "
               f"(≥{stats.FIT_MIN_SIZES} sizes, R² ≥ {stats.FIT_MIN_R2:g} in log-log), the "
               f"exponent's 95% CI from a bootstrap over seeds (each seed's runs at every "
               f"size resampled together; with fewer than {stats.MIN_CLUSTERS} seeds the "
               f"slope's t-interval, named where used).\n" + pooling_sentence(rows) + "\n"
               + "\n".join(sentences)
               + f"\n{tables.cap_phrase(rows, capital=True)}."
               + one_seed)
    fig.update_layout(legend={"orientation": "h", "y": -0.2})
    return Panel(key, title, caption, fig, pd.DataFrame(data), height=450)


def _estimate_trace(fig, ok: pd.DataFrame, col: int, data: list):
    """The analytic memory estimate per size (median over runs), dashed; its fit or None."""
    est = ok[ok["model_mem_est_mb"].notna()]
    if est.empty:
        return None
    g = (est.groupby("size").agg(params=("params", "median"), y=("model_mem_est_mb", "median"))
         .reset_index().sort_values("params"))
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
    return stats.power_law_fit(g["params"], g["y"])


def pooling_sentence(rows: pd.DataFrame,
                     apart: str = "throughput and memory stay per framework",
                     shown: str = " (the black line)", by: tuple = ("size",),
                     what: str = "sizes") -> str:
    """What was pooled over frameworks in a figure's accuracy, and why.

    A cell (grouped `by`) is pooled where its frameworks ran disjoint seeds, as
    `tables.scale_points` and `sweep_cells` do; `apart` names what is never pooled in the figure,
    `shown` where the pooled values are drawn, `what` the cells in words.
    """
    cells = [(k, p) for k, p in rows.groupby(list(by), sort=False)
             if p["framework"].nunique() > 1]
    if not cells:
        return "One framework: nothing to pool."
    pooled = [" + ".join(k) if isinstance(k, tuple) else k for k, p in cells
              if tables.seeds_disjoint(p)]
    seeds = "; ".join(f"{tables.framework_name(fw)} {tables.seed_text(tables.seeds_of(part))}"
                      for fw, part in sorted(rows.groupby("framework"),
                                             key=lambda kv: tables.framework_rank(kv[0])))
    if len(pooled) == len(cells):
        return (f"Accuracy is also pooled over the frameworks{shown}, whose seeds are "
                f"disjoint ({seeds}); {apart}.")
    if pooled:
        return (f"Accuracy is pooled over the frameworks{shown} at {len(pooled)} of "
                f"{len(cells)} {what} ({', '.join(pooled)}), where their seeds are disjoint; "
                f"elsewhere they share seeds ({seeds}), and one seed gives the same losses in "
                f"both frameworks, so those runs are not independent and are not pooled.")
    return (f"Accuracy is not pooled over the frameworks: they share seeds ({seeds}), and one "
            f"seed gives the same losses in both, so their runs are not independent.")


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
            text += f" At {size} (geometric means over seeds): {ratio_claim(iv)}."
    return text


def _counts_text(rows: pd.DataFrame) -> str:
    if rows.empty:
        return "no runs at all"
    c = rows["status"].value_counts()
    return f"{len(rows)} run(s): " + ", ".join(f"{k} {v}" for k, v in c.items())


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


# ---------------------------------------------------------------------------- lr grid


def _unit_label(u: dict, units: list[dict]) -> str:
    multi = len({x["optimizer"] for x in units}) > 1
    return f"{u['size']} {u['optimizer']}" if multi else u["size"]


def lr_panel(df: pd.DataFrame, family: str, dataset: str, key: str) -> Panel | None:
    """Validation and test accuracy against the learning rate of every grid; None without
    a grid."""
    units = tables.lr_units(df, family, dataset)
    if not units:
        return None
    title = f"{family} on {dataset}: accuracy against learning rate, per size"
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1, subplot_titles=[
        "best validation accuracy (chooses the rate)", "test accuracy (never used to choose)"])
    data = []
    for i, u in enumerate(units):
        m = u["members"]
        label = _unit_label(u, units)
        val, test = tables.grid_scores(m)
        chosen = np.isclose(m["lr"], u["chosen"], rtol=1e-9, atol=0) if math.isfinite(
            u["chosen"]) else np.zeros(len(m), bool)
        failed = m["status"].isin(tables.FAILED).to_numpy()
        symbols = ["star" if c else ("x" if f else "circle")
                   for c, f in zip(chosen, failed, strict=True)]
        sizes = [16 if c else 8 for c in chosen]
        c = PALETTE[i % len(PALETTE)]
        for col, (what, ys) in enumerate((("val", val), ("test", test)), 1):
            meta = f"{label} {what}"
            fig.add_trace(go.Scatter(
                x=m["lr"].tolist(), y=ys.tolist(), mode="lines+markers", meta=meta,
                name=esc(label), legendgroup=esc(label), showlegend=col == 1,
                line={"color": c, "dash": "solid" if col == 1 else "dot"},
                marker={"color": c, "symbol": symbols, "size": sizes},
                customdata=[[esc(s), esc(r)] for s, r in zip(m["status"], m["lr_role"],
                                                             strict=True)],
                hovertemplate="lr %{x:.3g}: %{y:.3f} (%{customdata[0]}, "
                              "%{customdata[1]})<extra>" + esc(label) + "</extra>",
            ), row=1, col=col)
            for r, y, ch in zip(m.to_dict("records"), ys, chosen, strict=True):
                data.append({"trace": meta, "unit": label, "size": u["size"],
                             "optimizer": u["optimizer"], "regulariser": u["regulariser"],
                             "framework": u["framework"], "seed": u["seed"], "x": r["lr"],
                             "y": y, "metric": "best_val_acc" if col == 1 else "test_acc",
                             "status": r["status"], "lr_role": r["lr_role"],
                             "chosen": bool(ch)})
    for col in (1, 2):
        fig.update_xaxes(type="log", title_text="learning rate", row=1, col=col)
    fig.update_yaxes(title_text="accuracy", row=1, col=1)
    fig.update_layout(legend={"orientation": "h", "y": -0.25})
    return Panel(key, title, lr_caption(units), fig, pd.DataFrame(data), height=420)


def lr_caption(units: list[dict]) -> str:
    """How the rates were chosen, whether validation and test agree, and the race check."""
    grids = {}
    for u in units:
        grids.setdefault((u["k"], u["seed"], u["framework"], u["regulariser"]), []).append(u)
    how = "; ".join(
        f"grid of {k} learning rates at seed {s} in {tables.framework_name(fw)} (regulariser "
        f"{reg}; {len(us)} unit{'s' if len(us) > 1 else ''})"
        for (k, s, fw, reg), us in grids.items())
    text = (f"Each line is one unit's {how}, chosen by best validation accuracy; test "
            f"accuracy never used. Star: the chosen rate; x: a run that failed (at chance).")
    picked = [u for u in units if math.isfinite(u["chosen"])]
    agree = sum(bool(np.isclose(tables.validation_pick(u), u["chosen"], rtol=1e-9, atol=0))
                for u in picked)
    if picked:
        chosen = ", ".join(f"{_unit_label(u, units)} {u['chosen']:g}" for u in picked)
        text += (f" Chosen: {chosen} (the grid's best validation accuracy in {agree} of "
                 f"{len(picked)} units).")
    else:
        text += " No run is marked as the chosen rate."
    edge = [u for u in picked if len(u["members"]) > 2
            and u["chosen"] in (u["members"]["lr"].min(), u["members"]["lr"].max())]
    if edge:
        text += (f" At the edge of its grid (the best rate may lie beyond it): "
                 f"{', '.join(_unit_label(u, units) for u in edge)}.")
    gaps = []
    for u in picked:
        _, test = tables.grid_scores(u["members"])
        at = test[np.isclose(u["members"]["lr"], u["chosen"], rtol=1e-9, atol=0)]
        if len(at) and test.notna().any():
            gaps.append(float(test.max() - at.iloc[0]))
    if gaps:
        worse = sum(g > 0 for g in gaps)
        text += (f" The test-best rate differs from the chosen one in {worse} of {len(gaps)} "
                 f"units" + (f" (by up to {max(gaps):.3f} test accuracy)." if worse else "."))
    for frac in tables.RACE_FRACTIONS:
        r = tables.race_agreement(units, frac)
        if not r["cases"]:
            continue
        cost = (f", at {r['share']:.0%} of the grid's compute" if math.isfinite(r["share"])
                else "")
        text += (f" A race stopped at {frac:.0%} of the epochs would pick the same rate in "
                 f"{r['same']} of {r['cases']} cases{cost}.")
    return text


# ---------------------------------------------------------------------------- compute


def fmt_flops(x: float) -> str:
    """8.6e8, 1.2e10: two significant digits, a plain exponent."""
    if not math.isfinite(x):
        return "n/a"
    m, _, e = f"{x:.1e}".partition("e")
    return f"{float(m):g}e{int(e)}"


def compute_panel(df: pd.DataFrame, family: str, dataset: str, key: str) -> Panel:
    """Validation accuracy against training FLOPs per run, by size, and the frontier."""
    recipe, rows = tables.scale_selection(df, family, dataset)
    title = f"{family} on {dataset}: validation accuracy against training compute"
    ok = rows[rows["status"] == "ok"]
    pts = tables.compute_points(ok)
    if pts.empty:
        return Panel(key, title, message=f"No learning curve of {family} on {dataset} with "
                     f"training FLOPs recorded ({_counts_text(rows)}).")
    front, segs = tables.frontier(pts)
    sizes = sorted(set(pts["size"]), key=tables._size_rank)
    fig = go.Figure()
    data = []
    for i, size in enumerate(sizes):
        c = PALETTE[i % len(PALETTE)]
        for j, (rid, run) in enumerate(pts[pts["size"] == size].groupby("run_id", sort=False)):
            run = run.sort_values("flops")
            label = f"{size} ({tables.fmt_count(run['params'].iloc[0])} params)"
            fig.add_trace(go.Scatter(
                x=run["flops"].tolist(), y=run["val_acc"].tolist(), mode="lines+markers",
                meta=rid, name=esc(label), legendgroup=esc(size), showlegend=j == 0,
                line={"color": c, "width": 1.2}, marker={"size": 4, "color": c},
                opacity=0.7,
                hovertemplate="%{x:.3g} FLOPs: val acc %{y:.3f}<extra>"
                              + esc(f"{size} {run['framework'].iloc[0]} seed "
                                    f"{int(run['seed'].iloc[0])}") + "</extra>",
            ))
            for r in run.itertuples():
                data.append({"trace": rid, "size": size, "framework": r.framework,
                             "seed": r.seed, "epoch": r.epoch, "x": r.flops, "y": r.val_acc})
    if len(front):
        fig.add_trace(go.Scatter(
            x=front["flops"].tolist(), y=front["val_acc"].tolist(), mode="lines",
            meta="frontier", name="compute-efficient frontier",
            line={"color": POOLED_COLOR, "width": 3, "shape": "hv"},
            customdata=front["size"].map(esc).tolist(),
            hovertemplate="%{x:.3g} FLOPs: %{y:.3f} (best size %{customdata})"
                          "<extra>frontier</extra>"))
        for r in front.itertuples():
            data.append({"trace": "frontier", "size": r.size, "x": r.flops, "y": r.val_acc})
    fig.update_layout(xaxis={"type": "log", "title": {"text": "training FLOPs spent (log)"}},
                      yaxis={"title": {"text": "validation accuracy"}},
                      legend={"orientation": "h", "y": -0.2})
    caption = (f"Recipe: {tables.recipe_label(recipe)}. Every ok run's validation accuracy after "
               f"each epoch against the training FLOPs it had spent (FLOPs per sample x "
               f"samples seen), coloured by size. Black: the compute-efficient frontier "
               f"(as Kaplan et al. 2020 and Hoffmann et al. 2022 read it from loss), at each "
               f"budget the best size's mean over its runs of the best validation accuracy "
               f"reached within the budget. " + frontier_sentence(segs))
    caption += f" {tables.cap_phrase(rows, capital=True)}."
    failed = tables.failed_phrase(rows, counted=False)
    if failed:
        caption += f" Not drawn: {failed}."
    return Panel(key, title, caption, fig, pd.DataFrame(data), height=440)


FRONTIER_MIN_SPAN = 2.0  # a lead held over less than this factor of compute is noise


def stable_segments(segs: list[tuple[str, float, float]]) -> list[tuple[str, float, float]]:
    """Segments without the brief lead changes that seed noise makes where two sizes' curves
    run together: a lead over less than FRONTIER_MIN_SPAN x of compute joins its neighbour."""
    segs = list(segs)
    while len(segs) > 1:
        # a lead lasts until the next segment starts; the last one holds to the end of the
        # data, so it is never noise
        spans = [(segs[i + 1][1] / segs[i][1] if i + 1 < len(segs) and segs[i][1] > 0
                  else math.inf) for i in range(len(segs))]
        i = min(range(len(segs)), key=spans.__getitem__)
        if spans[i] >= FRONTIER_MIN_SPAN:
            break
        size, lo, hi = segs.pop(i)
        if i > 0:
            prev = segs[i - 1]
            segs[i - 1] = (prev[0], prev[1], max(prev[2], hi))
        else:
            nxt = segs[0]
            segs[0] = (nxt[0], lo, nxt[2])
        merged = [segs[0]]
        for seg in segs[1:]:
            if seg[0] == merged[-1][0]:
                merged[-1] = (seg[0], merged[-1][1], seg[2])
            else:
                merged.append(seg)
        segs = merged
    return segs


def frontier_sentence(segs: list[tuple[str, float, float]]) -> str:
    """'Best size by budget: xs up to 1.2e+09 FLOPs, s from 1.5e+09 to 3e+10, m from 4e+10.'

    Lead changes over less than FRONTIER_MIN_SPAN x of compute are left out (the figure
    draws them all)."""
    if not segs:
        return "No frontier: no budget reached by every run of a size."
    segs = stable_segments(segs)
    if len(segs) == 1:
        return f"{segs[0][0]} is the best size at every budget drawn."
    parts = []
    for i, (size, lo, hi) in enumerate(segs):
        if i == 0:
            parts.append(f"{size} up to {fmt_flops(hi)} FLOPs")
        elif i == len(segs) - 1:
            parts.append(f"{size} from {fmt_flops(lo)}")
        else:
            parts.append(f"{size} from {fmt_flops(lo)} to {fmt_flops(hi)}")
    return ("Best size by budget (leads held over less than "
            f"{FRONTIER_MIN_SPAN:g}x of compute left out): " + ", ".join(parts) + ".")


_RATIOS = [0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1, 1.5, 2, 3, 5, 7, 10, 20]
RATIO_TICKS = {"tickvals": _RATIOS, "ticktext": [f"{r:g}x" for r in _RATIOS]}


# ---------------------------------------------------------------------------- sweep


def _reg_order(labels) -> list[str]:
    return sorted(set(labels), key=lambda r: (r != "none", r))


def sweep_cells(rows: pd.DataFrame, target: float) -> pd.DataFrame:
    """Per framework, optimizer and regulariser: accuracy mean/t-interval (failures at
    chance) and time-to-target (ok runs); plus a `tables.POOLED` cell per (optimizer,
    regulariser) whose frameworks ran disjoint seeds (accuracy only)."""
    out = []
    for (fw, opt, reg), part in rows.groupby(["framework", "optimizer", "regulariser"]):
        ok = part[part["status"] == "ok"]
        acc = tables.mean_ci(tables.metric_values(part, "test_acc"), "test_acc")
        times = np.array([tables.time_to_of(p, target) for p in ok["curve_pts"]]) if (
            len(ok) and math.isfinite(target)) else np.array([])
        reached = int(np.isfinite(times).sum())
        ttt = float(np.median(times)) if len(times) else math.nan
        out.append({"framework": fw, "optimizer": opt, "regulariser": reg, "n_runs": len(part),
                    "n_ok": len(ok), "n_failed": tables.n_failed(part), "acc": acc.value,
                    "acc_lo": acc.lo, "acc_hi": acc.hi, "n_seeds": acc.n,
                    "ttt_s": ttt if math.isfinite(ttt) else math.nan,
                    "n_reached": reached, "target": target})
    for (opt, reg), part in rows.groupby(["optimizer", "regulariser"]):
        if not tables.seeds_disjoint(part):
            continue
        acc = tables.mean_ci(tables.metric_values(part, "test_acc"), "test_acc")
        out.append({"framework": tables.POOLED, "optimizer": opt, "regulariser": reg,
                    "n_runs": len(part), "n_ok": int((part["status"] == "ok").sum()),
                    "n_failed": tables.n_failed(part), "acc": acc.value, "acc_lo": acc.lo,
                    "acc_hi": acc.hi, "n_seeds": acc.n, "ttt_s": math.nan, "n_reached": 0,
                    "target": target})
    # Columns even with no rows: callers filter on them (a family with no sweep at all).
    return pd.DataFrame(out, columns=SWEEP_COLUMNS)


SWEEP_COLUMNS = ["framework", "optimizer", "regulariser", "n_runs", "n_ok", "n_failed", "acc",
                 "acc_lo", "acc_hi", "n_seeds", "ttt_s", "n_reached", "target"]


def sweep_panel(df: pd.DataFrame, family: str, dataset: str, key: str, what: str) -> Panel:
    """what: 'acc' (test accuracy heatmap, with a pooled column where seeds are disjoint)
    or 'ttt' (time-to-target heatmap, per framework)."""
    size, rows = tables.sweep_selection(df, family, dataset)
    name = "test accuracy" if what == "acc" else "time to target"
    title = f"{family} on {dataset}, size {size or '-'}: {name} per optimizer and regulariser"
    ok = rows[rows["status"] == "ok"]
    if ok.empty:
        return Panel(key, title, message=f"No successful run of {family} on {dataset}: "
                     f"{_counts_text(rows)}.")
    target, best = tables.target_accuracy(df, family, dataset, size)
    cells = sweep_cells(rows, target)
    if what != "acc":
        cells = cells[cells["framework"] != tables.POOLED]
    fws = sorted(set(cells["framework"]), key=tables.framework_rank)
    lookup = {(c["framework"], c["optimizer"], c["regulariser"]): c
              for c in cells.to_dict("records")}
    opts = sorted(set(cells["optimizer"]))
    regs = _reg_order(cells["regulariser"])
    fig = make_subplots(rows=1, cols=len(fws), horizontal_spacing=0.12,
                        subplot_titles=[esc(tables.framework_name(f)) for f in fws])
    data = []
    for col, fw in enumerate(fws, 1):
        z, text = [], []
        for opt in opts:
            zr, tr = [], []
            for reg in regs:
                c = lookup.get((fw, opt, reg))
                v, label = _cell(c, what)
                zr.append(v)
                tr.append(label)
                rec = dict(c) if c else {"framework": fw, "optimizer": opt, "regulariser": reg}
                data.append({"trace": f"{fw} {what}", "x": reg, "y": opt, "z": v,
                             "label": label.replace("<br>", " "), **rec})
            z.append(zr)
            text.append(tr)
        xs, ys = [esc(r) for r in regs], [esc(o) for o in opts]
        fig.add_trace(go.Heatmap(
            z=z, x=xs, y=ys, text=text, texttemplate="%{text}", meta=f"{fw} {what}",
            coloraxis="coloraxis", hovertemplate="%{y} + %{x}: %{text}<extra></extra>",
            xgap=2, ygap=2, hoverongaps=False,
        ), row=1, col=col)
        # Plotly draws nothing in a cell without a value: say what is there instead.
        suffix = "" if col == 1 else str(col)
        for yi, row_z in enumerate(z):
            for xi, v in enumerate(row_z):
                if not math.isfinite(v):
                    fig.add_annotation(x=xs[xi], y=ys[yi], text=text[yi][xi], showarrow=False,
                                       xref=f"x{suffix}", yref=f"y{suffix}",
                                       font={"color": "#495057", "size": 11})
        fig.update_xaxes(title_text="regulariser", type="category", categoryarray=xs,
                         range=[-0.5, len(xs) - 0.5], showgrid=False, row=1, col=col)
        fig.update_yaxes(title_text="optimizer" if col == 1 else None, type="category",
                         categoryarray=ys, range=[-0.5, len(ys) - 0.5], showgrid=False,
                         row=1, col=col)
    scale = "Viridis" if what == "acc" else "Viridis_r"
    fig.update_layout(plot_bgcolor="#e9ecef", coloraxis={"colorscale": scale, "colorbar": {
        "title": {"text": "mean test acc" if what == "acc" else "seconds"}}})
    caption = (_sweep_acc_caption(rows, cells) if what == "acc"
               else _sweep_ttt_caption(cells, target, best, family, size))
    chosen = rows["lr_role"] != ""
    lr = ("the learning rate chosen per optimizer on validation" if chosen.all()
          else "each optimizer's configured learning rate" if not chosen.any()
          else f"the learning rate chosen on validation for {int(chosen.sum())} of "
               f"{len(rows)} runs, the configured one for the others")
    caption = (f"Size {size} (the size with the most optimizer x regulariser cells), at {lr}. "
               + caption + f" {tables.cap_phrase(rows, capital=True)}.")
    height = 160 + 70 * len(opts)
    return Panel(key, title, caption + _status_note(rows), fig, pd.DataFrame(data),
                 height=max(height, 320))


def _cell(r: dict | None, what: str) -> tuple[float, str]:
    if not r:
        return math.nan, "not run"
    if what == "acc":
        if not math.isfinite(r["acc"]):
            return math.nan, f"no result ({r['n_runs']})"
        ci = (f"<br>[{r['acc_lo']:.3f}, {r['acc_hi']:.3f}]" if math.isfinite(r["acc_lo"])
              else "<br>(1 seed)")
        failed = f"<br>{r['n_failed']} of {r['n_runs']} failed" if r["n_failed"] else ""
        return float(r["acc"]), f"{r['acc']:.3f}{ci}{failed}"
    if r["n_ok"] == 0:
        return math.nan, f"no ok run ({r['n_runs']})"
    if r["n_reached"] == 0:
        return math.nan, "not reached"
    frac = "" if r["n_reached"] == r["n_ok"] else f"<br>({r['n_reached']}/{r['n_ok']} seeds)"
    if not math.isfinite(r["ttt_s"]):
        return math.nan, f"not reached{frac}"
    return float(r["ttt_s"]), f"{r['ttt_s']:.1f} s{frac}"


def sweep_winner(rows: pd.DataFrame, fw: str) -> dict | None:
    """Best vs runner-up (optimizer, regulariser) cell of one framework or the pooled
    cells (`tables.best_vs_runner_up`); the pooled one only over cells with disjoint seeds."""
    if fw == tables.POOLED:
        keep = [p.index for _, p in rows.groupby(["optimizer", "regulariser"])
                if tables.seeds_disjoint(p)]
        part = rows.loc[np.concatenate(keep)] if keep else rows.iloc[:0]
    else:
        part = rows[rows["framework"] == fw]
    return tables.best_vs_runner_up(part, ["optimizer", "regulariser"])


def winner_text(w: dict) -> str:
    best, runner = " + ".join(w["best"]), " + ".join(w["runner"])
    return (f"best {best} ({w['best_mean']:.3f}), runner-up {runner} "
            f"({w['runner_mean']:.3f}): " + tables.claim(best, runner, w["diff"]))


def _sweep_acc_caption(rows: pd.DataFrame, cells: pd.DataFrame) -> str:
    parts = []
    for fw in sorted(set(cells["framework"]), key=tables.framework_rank):
        part = cells[cells["framework"] == fw].dropna(subset=["acc"])
        if part.empty:
            continue
        text = f"{tables.framework_name(fw)}: "
        w = sweep_winner(rows, fw)
        if w is None:
            b = part.loc[part["acc"].idxmax()]
            text += f"one cell, {b['optimizer']} + {b['regulariser']} ({b['acc']:.3f})"
        else:
            text += winner_text(w)
            worst = part.loc[part["acc"].idxmin()]
            text += (f"; worst {worst['optimizer']} + {worst['regulariser']} "
                     f"({worst['acc']:.3f})")
        parts.append(text)
    failed = tables.failed_phrase(rows)
    return (f"Mean test accuracy over seeds with 95% t-interval ({_n_text(cells)}). "
            + pooling_sentence(rows, "time-to-target stays per framework", " (its own panel)",
                               ("optimizer", "regulariser"), "cells") + " "
            + ". ".join(parts) + "." + (f" {failed}." if failed else ""))


def _sweep_ttt_caption(cells: pd.DataFrame, target: float, best: float, family: str,
                       size: str) -> str:
    if not math.isfinite(target):
        return "No validation curve recorded: no time-to-target."
    text = (f"Wall-clock seconds from a run's start until validation accuracy first reaches "
            f"{target:.3f} ({tables.TARGET_FRACTION:.0%} of the best mean validation accuracy "
            f"{best:.3f} of any {family} configuration at size {size}); median over the ok "
            f"seeds of a cell, a seed that never reaches it counts as never; per framework, "
            f"since time is the framework's own.")
    hit = cells.dropna(subset=["ttt_s"])
    if len(hit):
        f = hit.loc[hit["ttt_s"].idxmin()]
        text += (f" Fastest: {f['optimizer']} + {f['regulariser']} on "
                 f"{tables.framework_name(f['framework'])} ({f['ttt_s']:.1f} s).")
    never = int((cells["n_ok"] > 0).sum() - len(hit))
    if never:
        text += f" {never} of {int((cells['n_ok'] > 0).sum())} cells did not reach it."
    failed = int(cells["n_failed"].sum())
    if failed:
        text += f" {failed} failed runs excluded."
    return text


# ---------------------------------------------------------------------------- curves


def curves_panel(df: pd.DataFrame, family: str, dataset: str, key: str) -> Panel:
    title = f"{family} on {dataset}: validation accuracy per epoch"
    everything = df[(df["family"] == family) & (df["dataset"] == dataset)]
    rows = everything[everything["lr_role"] != "grid"]
    n_grid = len(everything) - len(rows)
    fig = go.Figure()
    data, labels, finals = [], [], []
    sort_cols = ["fw_rank", "size_order", "optimizer", "regulariser", "seed", "run_id"]
    rows = rows.assign(fw_rank=rows["framework"].map(lambda f: tables.framework_rank(f)))
    for r in rows.sort_values(sort_cols).to_dict("records"):
        keys = ("epoch", "val_acc", "elapsed_s", "val_loss", "train_loss")
        c = [tuple(tables._num(p.get(k)) for k in keys) for p in tables._points(r)]
        c = [p for p in c if math.isfinite(p[0]) and math.isfinite(p[1])]
        if not c:
            continue
        epochs, accs = [p[0] for p in c], [p[1] for p in c]
        label = tables.run_label(r) + ("" if r["status"] == "ok" else f" [{r['status']}]")
        labels.append(label)
        fig.add_trace(go.Scatter(
            x=epochs, y=accs, mode="lines+markers", name=esc(label), meta=r["run_id"],
            line={"color": color(r["framework"]), "width": 1.3,
                  "dash": "solid" if r["status"] == "ok" else "dot"},
            marker={"size": 4}, opacity=0.75,
            customdata=[[p[2], p[3]] for p in c],
            hovertemplate="epoch %{x}: val acc %{y:.3f}<br>%{customdata[0]:.1f} s, "
                          "val loss %{customdata[1]:.3g}<extra>" + esc(label) + "</extra>",
        ))
        for e, a, t, vl, tl in c:
            data.append({"trace": r["run_id"], "run": label, "status": r["status"],
                         "x": e, "y": a, "elapsed_s": t, "val_loss": vl, "train_loss": tl})
        still = len(c) > 1 and accs[-1] >= max(accs) - 1e-12
        finals.append((accs[-1], label, still, len(c)))
    if not labels:
        return Panel(key, title, message=f"No learning curve recorded for {family} on "
                     f"{dataset} ({_counts_text(rows)}).")
    n = len(labels)
    buttons = [{"label": "all runs", "method": "restyle", "args": [{"visible": [True] * n}]}]
    for i, label in enumerate(labels):
        vis = [j == i for j in range(n)]
        buttons.append({"label": esc(label), "method": "restyle", "args": [{"visible": vis}]})
    fig.update_layout(
        updatemenus=[{"buttons": buttons, "direction": "down", "x": 0, "xanchor": "left",
                      "y": 1.13, "yanchor": "top", "showactive": True}],
        xaxis={"title": {"text": "epoch"}, "tickformat": "d"},  # whole epochs, auto spacing
        yaxis={"title": {"text": "validation accuracy"}},
        legend={"font": {"size": 10}}, margin={"t": 70},
    )
    best = max(finals)
    multi = [f for f in finals if f[3] > 1]
    if tables.cap_counts(rows)[1]:
        shape = (f"{tables.cap_phrase(rows, capital=True)}; the others stopped at a validation "
                 f"plateau.")
    elif multi:
        improving = sum(f[2] for f in multi)
        shape = (f"{improving} of {len(multi)} runs with more than one epoch were still at "
                 f"their best in the last epoch" + (", so longer training would likely raise "
                                                     "them." if improving else "."))
    else:
        shape = "Every run recorded a single epoch: there is no curve shape to read."
    caption = (f"{n} runs (PyTorch red, TensorFlow blue; dotted: not ok). Choose one run in the "
               f"menu or click legend entries (double-click isolates one). Best final "
               f"validation accuracy {best[0]:.3f}: {best[1]}. {shape}"
               + (f" The {n_grid} learning-rate grid runs whose rate was not chosen are on "
                  f"the scale page." if n_grid else ""))
    return Panel(key, title, caption, fig, pd.DataFrame(data), height=520)
