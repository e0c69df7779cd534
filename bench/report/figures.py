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
from . import tables as T
from .html import Panel, esc

html_unescape = html.unescape

COLORS = {"torch": "#d9480f", "tf": "#1c7ed6"}
PALETTE = ["#1c7ed6", "#d9480f", "#2b8a3e", "#862e9c", "#e67700", "#0b7285", "#c2255c",
           "#5c940d"]


def color(fw: str, i: int = 0) -> str:
    return COLORS.get(fw, PALETTE[i % len(PALETTE)])


def _status_note(rows: pd.DataFrame) -> str:
    bad = rows[rows["status"] != "ok"]
    if bad.empty:
        return ""
    parts = []
    for status, part in bad.groupby("status"):
        where = ", ".join(sorted({f"{r.framework} {r.size}" for r in part.itertuples()}))
        parts.append(f"{status} {len(part)} ({where})")
    return f" Left out (not ok): {'; '.join(parts)}."


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


# ---------------------------------------------------------------------------- scale


SCALE_METRICS = [  # (column, axis title, short name, fit on 1 - value)
    ("test_acc", "test accuracy", "accuracy", True),
    ("train_samples_per_s", "training samples/s", "throughput", False),
    ("mem_mb", None, "memory", False),
]


def scale_panel(df: pd.DataFrame, family: str, dataset: str, key: str) -> Panel:
    recipe, rows = T.scale_selection(df, family, dataset)
    title = f"{family} on {dataset}: accuracy, throughput and memory against parameter count"
    ok = rows[rows["status"] == "ok"]
    if ok.empty:
        return Panel(key, title, message=f"No successful run of {family} on {dataset}: "
                     f"{_counts_text(rows)}. Nothing to plot.")
    mem_title = T.memory_label(ok)
    fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.08, subplot_titles=[
        "test accuracy", "training throughput", esc(mem_title.replace(" (MB)", ""))])
    data = []
    sentences = []
    frameworks = sorted(set(ok["framework"]), key=T.framework_rank)
    for col, (metric, axis_title, short, fit_error) in enumerate(SCALE_METRICS, 1):
        per_fw = []
        points_by_fw = {}
        for i, fw in enumerate(frameworks):
            pts = T.scale_points(rows[rows["framework"] == fw], metric)
            if pts.empty:
                continue
            points_by_fw[fw] = pts
            meta = f"{fw} {short}"
            has_ci = pts["ci_lo"].notna()
            fig.add_trace(go.Scatter(
                x=pts["params"].tolist(), y=pts["median"].tolist(), mode="lines+markers",
                name=esc(T.framework_name(fw)), legendgroup=esc(fw), showlegend=col == 1,
                meta=meta, line={"color": color(fw, i), "dash": "solid" if i == 0 else "dash"},
                # equal values in both frameworks (same initial weights, same batches) would
                # hide one marker behind the other: the first framework's are open and larger
                marker={"color": color(fw, i), "size": 12 if i == 0 else 7,
                        "symbol": "circle-open" if i == 0 else "circle",
                        "line": {"width": 2 if i == 0 else 0}},
                error_y={"type": "data", "symmetric": False,
                         "array": (pts["ci_hi"] - pts["median"]).where(has_ci, 0).tolist(),
                         "arrayminus": (pts["median"] - pts["ci_lo"]).where(has_ci, 0).tolist()},
                customdata=np.stack([pts["size"].map(esc), pts["n_seeds"]], axis=-1).tolist(),
                hovertemplate="size %{customdata[0]} · %{x:,.0f} params<br>median %{y:.4g}"
                              " (%{customdata[1]} seeds)<extra>" + esc(T.framework_name(fw))
                              + "</extra>",
            ), row=1, col=col)
            for r in pts.itertuples():
                data.append({"trace": meta, "metric": metric, "framework": fw, "size": r.size,
                             "x": r.params, "y": r.median, "ci_lo": r.ci_lo, "ci_hi": r.ci_hi,
                             "n_seeds": r.n_seeds})
            ok_fw = ok[(ok["framework"] == fw) & ok[metric].notna()]
            yvals = 1.0 - ok_fw[metric] if fit_error else ok_fw[metric]
            fit = stats.power_law_fit(ok_fw["params"], yvals)
            per_fw.append((fw, pts, fit))
            if fit.holds:
                xs = np.geomspace(ok_fw["params"].min(), ok_fw["params"].max(), 20)
                ys = fit.predict(xs)
                ys = 1.0 - ys if fit_error else ys
                fmeta = f"{fw} {short} fit"
                fig.add_trace(go.Scatter(
                    x=xs.tolist(), y=ys.tolist(), mode="lines", meta=fmeta,
                    name=esc(f"{T.framework_name(fw)} power law"), legendgroup=esc(fw),
                    showlegend=False, line={"color": color(fw, i), "dash": "dot", "width": 1.5},
                    hovertemplate=esc(fit.describe()) + "<extra></extra>",
                ), row=1, col=col)
                for x, y in zip(xs, ys, strict=True):
                    data.append({"trace": fmeta, "metric": metric, "framework": fw, "x": x,
                                 "y": y, "exponent": fit.b, "exponent_lo": fit.b_lo,
                                 "exponent_hi": fit.b_hi, "r2": fit.r2,
                                 "fitted": "1 - test_acc" if fit_error else metric})
        fig.update_xaxes(type="log", title_text="parameters", row=1, col=col)
        fig.update_yaxes(title_text=esc(axis_title or mem_title), row=1, col=col)
        sentences.append(_scale_sentence(short, per_fw, fit_error, points_by_fw))
    one_seed = ok.groupby(["framework", "size"]).size().max() == 1
    caption = (f"Recipe: {T.recipe_label(recipe)}; median over seeds with 95% bootstrap CI; "
               f"dotted: power law fitted where it holds (≥{stats.FIT_MIN_SIZES} sizes, "
               f"R² ≥ {stats.FIT_MIN_R2:g} in log-log).\n" + "\n".join(sentences)
               + (" One seed per point: no interval." if one_seed else "")
               + _status_note(rows))
    fig.update_layout(legend={"orientation": "h", "y": -0.2})
    return Panel(key, title, caption, fig, pd.DataFrame(data), height=430)


def _scale_sentence(short: str, per_fw: list, fit_error: bool, pts_by_fw: dict) -> str:
    if not per_fw:
        return f"{short.capitalize()}: not recorded."
    unit = {"throughput": " samples/s", "memory": " MB"}.get(short, "")
    parts, laws = [], []
    for fw, pts, fit in per_fw:
        first, last = pts.iloc[0], pts.iloc[-1]
        trend = f"{T.fmt_num(first['median'])}{unit} at {first['size']}"
        if len(pts) > 1:
            trend += f" to {T.fmt_num(last['median'])} at {last['size']}"
        parts.append(f"{T.framework_name(fw)} {trend}")
        laws.append((T.framework_name(fw), fit))
    text = f"{short.capitalize()}: " + "; ".join(parts) + "."
    reasons = {f.reason for _, f in laws if not f.holds}
    if all(not f.holds for _, f in laws) and len(reasons) == 1:
        text += f" No power law ({reasons.pop()})."
    else:
        what = "test error" if fit_error else short
        text += " " + "; ".join(
            (f"{name}: {what} {f.describe()}" if f.holds else f"{name}: {f.describe()}")
            for name, f in laws) + "."
    if short == "throughput" and {"torch", "tf"} <= set(pts_by_fw):
        both = pts_by_fw["torch"].merge(pts_by_fw["tf"], on="size", suffixes=("_pt", "_tf"))
        if len(both):
            r = both.sort_values("params_pt").iloc[-1]
            text += (f" At {r['size']}, {speed_phrase(r['median_pt'] / r['median_tf'])} "
                     f"(medians).")
    return text


def _counts_text(rows: pd.DataFrame) -> str:
    if rows.empty:
        return "no runs at all"
    c = rows["status"].value_counts()
    return f"{len(rows)} run(s): " + ", ".join(f"{k} {v}" for k, v in c.items())


# ---------------------------------------------------------------------------- frameworks


def framework_cells(df: pd.DataFrame, dataset: str, scale_only: bool = True) -> pd.DataFrame:
    """PyTorch-vs-TensorFlow comparison per (family, size, recipe) present in both."""
    ok = T.ok_rows(df)
    ok = ok[ok["dataset"] == dataset]
    out = []
    for family, _ in [g for g in T.groups(df) if g[1] == dataset]:
        fam = ok[ok["family"] == family]
        if scale_only:
            recipe, _rows = T.scale_selection(df, family, dataset)
            fam = fam[fam["recipe"] == recipe]
        if fam.empty:
            continue
        keys = pd.Series([(sz, *rc) for sz, rc in zip(fam["size"], fam["recipe"], strict=True)],
                         index=fam.index)
        for key, part in fam.groupby(keys, sort=False):
            pt, tf = part[part["framework"] == "torch"], part[part["framework"] == "tf"]
            if pt.empty or tf.empty:
                continue
            thr = stats.median_ratio_ci(pt["train_samples_per_s"], tf["train_samples_per_s"])
            mem = stats.median_ratio_ci(pt["mem_mb"], tf["mem_mb"])
            acc = stats.median_diff_ci(pt["test_acc"], tf["test_acc"])
            out.append({
                "family": family, "dataset": dataset, "size": key[0],
                "size_order": T._size_rank(key[0]),
                "recipe": T.recipe_label(key[1:]), "params": float(part["params"].median()),
                "n_torch": len(pt), "n_tf": len(tf),
                "throughput_ratio": thr.value, "throughput_ratio_lo": thr.lo,
                "throughput_ratio_hi": thr.hi,
                "memory_ratio": mem.value, "memory_ratio_lo": mem.lo, "memory_ratio_hi": mem.hi,
                "acc_diff": acc.value, "acc_diff_lo": acc.lo, "acc_diff_hi": acc.hi,
            })
    res = pd.DataFrame(out)
    if len(res):
        res = res.sort_values(["family", "size_order", "recipe"]).reset_index(drop=True)
    return res


_RATIOS = [0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1, 1.5, 2, 3, 5, 7, 10, 20]
RATIO_TICKS = {"tickvals": _RATIOS, "ticktext": [f"{r:g}x" for r in _RATIOS]}
FW_METRICS = [("throughput_ratio", "throughput PyTorch / TensorFlow", 1.0),
              ("memory_ratio", "memory PyTorch / TensorFlow", 1.0),
              ("acc_diff", "test accuracy PyTorch − TensorFlow", 0.0)]


def frameworks_panel(df: pd.DataFrame, dataset: str, key: str) -> Panel:
    title = f"PyTorch vs TensorFlow on {dataset}, per family and size (scale recipe)"
    fws = set(T.ok_rows(df[df["dataset"] == dataset])["framework"])
    if not {"torch", "tf"} <= fws:
        have = ", ".join(T.framework_name(f) for f in sorted(fws)) or "none"
        return Panel(key, title, message=f"A comparison needs successful runs in both "
                     f"frameworks on {dataset}; frameworks with successful runs: {have}.")
    cells = framework_cells(df, dataset)
    if cells.empty:
        return Panel(key, title, message=f"No (family, size, recipe) on {dataset} has "
                     "successful runs in both frameworks.")
    fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.08,
                        subplot_titles=[esc(t) for _, t, _ in FW_METRICS])
    data = []
    cats = list(dict.fromkeys(f"{f} {s}" for f, s in zip(cells["family"], cells["size"],
                                                          strict=True)))
    for col, (metric, _axis, ref) in enumerate(FW_METRICS, 1):
        for i, (family, part) in enumerate(cells.groupby("family", sort=False)):
            meta = f"{family} {metric}"
            lo, hi = part[f"{metric}_lo"], part[f"{metric}_hi"]
            xs = [esc(f"{family} {s}") for s in part["size"]]
            fig.add_trace(go.Scatter(
                x=xs, y=part[metric].tolist(), name=esc(family), mode="markers",
                meta=meta, legendgroup=esc(family), showlegend=col == 1,
                marker={"color": PALETTE[i % len(PALETTE)], "size": 11},
                error_y={"type": "data", "symmetric": False, "thickness": 1.5,
                         "array": (hi - part[metric]).fillna(0).tolist(),
                         "arrayminus": (part[metric] - lo).fillna(0).tolist()},
                hovertemplate="%{x}: %{y:.3g}<extra></extra>",
            ), row=1, col=col)
            for r, x in zip(part.itertuples(), xs, strict=True):
                data.append({"trace": meta, "metric": metric, "family": family,
                             "size": r.size, "recipe": r.recipe, "params": r.params,
                             "x": html_unescape(x), "y": getattr(r, metric),
                             "ci_lo": getattr(r, f"{metric}_lo"),
                             "ci_hi": getattr(r, f"{metric}_hi"),
                             "n_torch": r.n_torch, "n_tf": r.n_tf})
        fig.add_hline(y=ref, line={"color": "#555", "dash": "dash", "width": 1}, row=1, col=col)
        fig.update_xaxes(type="category", categoryarray=[esc(c) for c in cats],
                         range=[-0.6, len(cats) - 0.4], row=1, col=col)
        if ref == 1.0:  # ratios: a log axis shows 2x and 1/2x at equal distance from parity
            fig.update_yaxes(type="log", **RATIO_TICKS, row=1, col=col)
    fig.update_layout(legend={"orientation": "h", "y": -0.2})
    return Panel(key, title, frameworks_caption(cells), fig, pd.DataFrame(data))


def frameworks_caption(cells: pd.DataFrame) -> str:
    out = []
    thr = cells.dropna(subset=["throughput_ratio"])
    if len(thr):
        far = thr.loc[(np.log(thr["throughput_ratio"])).abs().idxmax()]
        ci = ratio_ci_phrase(far["throughput_ratio"], far["throughput_ratio_lo"],
                             far["throughput_ratio_hi"])
        n_pt = int((thr["throughput_ratio"] > 1).sum())
        out.append(f"Largest throughput gap: {speed_phrase(far['throughput_ratio'])} for "
                   f"{far['family']} at size {far['size']}{ci}. PyTorch is faster in {n_pt} of "
                   f"{len(thr)} cells; median ratio {thr['throughput_ratio'].median():.2f}.")
    mem = cells.dropna(subset=["memory_ratio"])
    if len(mem):
        far = mem.loc[(np.log(mem["memory_ratio"])).abs().idxmax()]
        out.append(f"Memory: median PyTorch/TensorFlow ratio {mem['memory_ratio'].median():.2f}; "
                   f"furthest from parity {far['family']} at {far['size']} "
                   f"({far['memory_ratio']:.2f}x).")
    acc = cells.dropna(subset=["acc_diff"])
    if len(acc):
        sig = acc[(acc["acc_diff_lo"] > 0) | (acc["acc_diff_hi"] < 0)]
        no_ci = int(acc["acc_diff_lo"].isna().sum())
        text = (f"Accuracy difference: median {acc['acc_diff'].median():+.3f}; the 95% CI "
                f"excludes zero in {len(sig)} of {len(acc)} cells")
        if len(sig):
            top = sig.loc[sig["acc_diff"].abs().idxmax()]
            better = "PyTorch" if top["acc_diff"] > 0 else "TensorFlow"
            text += (f" (largest: {better} +{abs(top['acc_diff']):.3f} for {top['family']} "
                     f"at {top['size']})")
        if no_ci:
            text += f"; {no_ci} cell(s) have one seed per framework and no interval"
        out.append(text + ".")
    return " ".join(out)


def frameworks_spread_panel(df: pd.DataFrame, dataset: str, key: str) -> Panel:
    """Throughput ratio over every matched configuration (scale and sweep), per family."""
    title = f"Throughput ratio over every matched configuration on {dataset}"
    cells = framework_cells(df, dataset, scale_only=False)
    if cells.empty or cells["throughput_ratio"].isna().all():
        return Panel(key, title, message=f"No configuration on {dataset} has successful runs "
                     "in both frameworks.")
    fig = go.Figure()
    data = []
    for i, (family, part) in enumerate(cells.groupby("family", sort=False)):
        part = part.dropna(subset=["throughput_ratio"])
        meta = f"{family} all"
        fig.add_trace(go.Box(
            y=part["throughput_ratio"].tolist(), name=esc(family), meta=meta, boxpoints="all",
            jitter=0.4, pointpos=0, marker={"color": PALETTE[i % len(PALETTE)]},
            text=[esc(f"{s} {r}") for s, r in zip(part["size"], part["recipe"], strict=True)],
            hovertemplate="%{text}: %{y:.3g}<extra></extra>",
        ))
        for r in part.itertuples():
            data.append({"trace": meta, "family": family, "size": r.size, "recipe": r.recipe,
                         "x": family, "y": r.throughput_ratio,
                         "ci_lo": r.throughput_ratio_lo, "ci_hi": r.throughput_ratio_hi,
                         "memory_ratio": r.memory_ratio, "acc_diff": r.acc_diff,
                         "n_torch": r.n_torch, "n_tf": r.n_tf})
    fig.add_hline(y=1.0, line={"color": "#555", "dash": "dash", "width": 1})
    fig.update_yaxes(type="log", title_text="throughput PyTorch / TensorFlow (log)",
                     **RATIO_TICKS)
    fig.update_layout(showlegend=False)
    med = cells.groupby("family")["throughput_ratio"].median()
    parts = [f"{f}: {speed_phrase(v)} (median of {int((cells['family'] == f).sum())} configs)"
             for f, v in med.items() if math.isfinite(v)]
    caption = ("Each point is one configuration (size, optimizer, regulariser) run in both "
               "frameworks; above 1 PyTorch is faster. " + "; ".join(parts) + ".")
    return Panel(key, title, caption, fig, pd.DataFrame(data), height=380)


# ---------------------------------------------------------------------------- sweep


def _reg_order(labels) -> list[str]:
    return sorted(set(labels), key=lambda r: (r != "none", r))


def sweep_cells(rows: pd.DataFrame, target: float) -> pd.DataFrame:
    """Per framework, optimizer and regulariser: accuracy median/CI and time-to-target."""
    out = []
    for (fw, opt, reg), part in rows.groupby(["framework", "optimizer", "regulariser"]):
        ok = part[part["status"] == "ok"]
        acc = stats.median_ci(ok["test_acc"])
        times = np.array([T.time_to_of(p, target) for p in ok["curve_pts"]]) if (
            len(ok) and math.isfinite(target)) else np.array([])
        reached = int(np.isfinite(times).sum())
        ttt = float(np.median(times)) if len(times) else math.nan
        out.append({"framework": fw, "optimizer": opt, "regulariser": reg, "n_runs": len(part),
                    "n_ok": len(ok), "acc": acc.value, "acc_lo": acc.lo, "acc_hi": acc.hi,
                    "ttt_s": ttt if math.isfinite(ttt) else math.nan,
                    "n_reached": reached, "target": target})
    # Columns even with no rows: callers filter on them (a family with no sweep at all).
    return pd.DataFrame(out, columns=SWEEP_COLUMNS)


SWEEP_COLUMNS = ["framework", "optimizer", "regulariser", "n_runs", "n_ok", "acc", "acc_lo",
                 "acc_hi", "ttt_s", "n_reached", "target"]


def sweep_panel(df: pd.DataFrame, family: str, dataset: str, key: str, what: str) -> Panel:
    """what: 'acc' (test accuracy heatmap) or 'ttt' (time-to-target heatmap)."""
    size, rows = T.sweep_selection(df, family, dataset)
    name = "test accuracy" if what == "acc" else "time to target"
    title = f"{family} on {dataset}, size {size or '-'}: {name} per optimizer and regulariser"
    ok = rows[rows["status"] == "ok"]
    if ok.empty:
        return Panel(key, title, message=f"No successful run of {family} on {dataset}: "
                     f"{_counts_text(rows)}.")
    target, best = T.target_accuracy(df, family, dataset, size)
    cells = sweep_cells(rows, target)
    fws = sorted(set(cells["framework"]), key=T.framework_rank)
    lookup = {(c["framework"], c["optimizer"], c["regulariser"]): c
              for c in cells.to_dict("records")}
    opts = sorted(set(cells["optimizer"]))
    regs = _reg_order(cells["regulariser"])
    fig = make_subplots(rows=1, cols=len(fws), horizontal_spacing=0.12,
                        subplot_titles=[esc(T.framework_name(f)) for f in fws])
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
        "title": {"text": "median test acc" if what == "acc" else "seconds"}}})
    caption = (_sweep_acc_caption(cells) if what == "acc"
               else _sweep_ttt_caption(cells, target, best, family, size))
    caption = f"Size {size} (the size with the most optimizer x regulariser cells). " + caption
    height = 160 + 70 * len(opts)
    return Panel(key, title, caption + _status_note(rows), fig, pd.DataFrame(data),
                 height=max(height, 320))


def _cell(r: dict | None, what: str) -> tuple[float, str]:
    if not r:
        return math.nan, "not run"
    if r["n_ok"] == 0:
        return math.nan, f"no ok run ({r['n_runs']})"
    if what == "acc":
        ci = (f"<br>[{r['acc_lo']:.3f}, {r['acc_hi']:.3f}]" if math.isfinite(r["acc_lo"])
              else "<br>(1 seed)")
        return float(r["acc"]), f"{r['acc']:.3f}{ci}"
    if r["n_reached"] == 0:
        return math.nan, "not reached"
    frac = "" if r["n_reached"] == r["n_ok"] else f"<br>({r['n_reached']}/{r['n_ok']} seeds)"
    if not math.isfinite(r["ttt_s"]):
        return math.nan, f"not reached{frac}"
    return float(r["ttt_s"]), f"{r['ttt_s']:.1f} s{frac}"


def _sweep_acc_caption(cells: pd.DataFrame) -> str:
    parts = []
    for fw in sorted(set(cells["framework"]), key=T.framework_rank):
        part = cells[cells["framework"] == fw].dropna(subset=["acc"])
        if part.empty:
            continue
        b, w = part.loc[part["acc"].idxmax()], part.loc[part["acc"].idxmin()]
        text = (f"{T.framework_name(fw)}: best {b['optimizer']} + {b['regulariser']} "
                f"({b['acc']:.3f})")
        if len(part) > 1:
            text += (f", worst {w['optimizer']} + {w['regulariser']} ({w['acc']:.3f}), "
                     f"a spread of {b['acc'] - w['acc']:.3f}")
        parts.append(text)
    return ("Median test accuracy over seeds [95% bootstrap CI]. " + "; ".join(parts) + ".")


def _sweep_ttt_caption(cells: pd.DataFrame, target: float, best: float, family: str,
                       size: str) -> str:
    if not math.isfinite(target):
        return "No validation curve recorded: no time-to-target."
    text = (f"Wall-clock seconds from a run's start until validation accuracy first reaches "
            f"{target:.3f} ({T.TARGET_FRACTION:.0%} of the best median validation accuracy "
            f"{best:.3f} of any {family} configuration at size {size}); median over seeds, a "
            f"seed that never reaches it counts as never.")
    hit = cells.dropna(subset=["ttt_s"])
    if len(hit):
        f = hit.loc[hit["ttt_s"].idxmin()]
        text += (f" Fastest: {f['optimizer']} + {f['regulariser']} on "
                 f"{T.framework_name(f['framework'])} ({f['ttt_s']:.1f} s).")
    never = int((cells["n_ok"] > 0).sum() - len(hit))
    if never:
        text += f" {never} of {int((cells['n_ok'] > 0).sum())} cells did not reach it."
    return text


# ---------------------------------------------------------------------------- curves


def curves_panel(df: pd.DataFrame, family: str, dataset: str, key: str) -> Panel:
    title = f"{family} on {dataset}: validation accuracy per epoch"
    rows = df[(df["family"] == family) & (df["dataset"] == dataset)]
    fig = go.Figure()
    data, labels, finals = [], [], []
    sort_cols = ["fw_rank", "size_order", "optimizer", "regulariser", "seed", "run_id"]
    rows = rows.assign(fw_rank=rows["framework"].map(lambda f: T.framework_rank(f)))
    for r in rows.sort_values(sort_cols).to_dict("records"):
        c = [(T._num(p.get("epoch")), T._num(p.get("val_acc")), T._num(p.get("elapsed_s")),
              T._num(p.get("val_loss")), T._num(p.get("train_loss"))) for p in T._points(r)]
        c = [p for p in c if math.isfinite(p[0]) and math.isfinite(p[1])]
        if not c:
            continue
        epochs, accs = [p[0] for p in c], [p[1] for p in c]
        label = T.run_label(r) + ("" if r["status"] == "ok" else f" [{r['status']}]")
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
        xaxis={"title": {"text": "epoch"}, "dtick": 1},
        yaxis={"title": {"text": "validation accuracy"}},
        legend={"font": {"size": 10}}, margin={"t": 70},
    )
    best = max(finals)
    multi = [f for f in finals if f[3] > 1]
    if multi:
        improving = sum(f[2] for f in multi)
        shape = (f"{improving} of {len(multi)} runs with more than one epoch were still at "
                 f"their best in the last epoch" + (", so longer training would likely raise "
                                                     "them." if improving else "."))
    else:
        shape = "Every run recorded a single epoch: there is no curve shape to read."
    caption = (f"{n} runs (PyTorch red, TensorFlow blue; dotted: not ok). Choose one run in the "
               f"menu or click legend entries (double-click isolates one). Best final "
               f"validation accuracy {best[0]:.3f}: {best[1]}. {shape}")
    return Panel(key, title, caption, fig, pd.DataFrame(data), height=520)
