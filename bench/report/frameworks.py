"""The frameworks page: PyTorch against TensorFlow for the same family, size and recipe.

Throughput is compared as the runs trained and, where a side trained compiled, with both
sides uncompiled: a verdict that holds only in one of the two is reported as flipping, not
as a winner (torch.compile and XLA each help some models and hurt others, so "which
framework is faster" depends on the mode). A run of `compile: best` records its probe's
rates in both modes (bench.compile_choice); that probe's uncompiled/compiled ratio carries
the run's own rate over to the other mode.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..study import stats
from . import page_kit, plots, prose, tables
from .html import Page, Panel, esc

PROBE = "compile_probe.{}_samples_per_s"


def _mode(ok: pd.DataFrame) -> tuple[str, float, bool]:
    """(the mode one framework's ok runs of a cell trained in: "compiled", "uncompiled" or
    "mixed"; the factor from their rate to the uncompiled rate (NaN where unknown); whether
    they chose their mode by probe, `compile: best`)."""
    used = ok["compile_used"].where(ok["compile_used"] != "", ok["compile"])
    compiled = used == "True"
    best = bool(len(ok)) and bool((ok["compile"] == "best").all())
    if not compiled.any():
        return "uncompiled", 1.0, best
    if not compiled.all():
        return "mixed", math.nan, best
    eager, comp = ok[PROBE.format("eager")].median(), ok[PROBE.format("compiled")].median()
    return "compiled", (eager / comp if eager > 0 and comp > 0 else math.nan), best


def framework_cells(df: pd.DataFrame, dataset: str, scale_only: bool = True) -> pd.DataFrame:
    """PyTorch-vs-TensorFlow comparison per (family, size, recipe) run in both.

    Throughput and model memory: ratio of geometric means over ok runs with the Welch
    interval on logs (`stats.ratio_t_ci`); accuracy: difference of means, failures at chance
    (`stats.diff_t_ci`). Where the frameworks share seeds the runs are positively correlated
    and the Welch interval is conservative (wider than a paired one).
    """
    rows = tables.study_rows(df)
    rows = rows[rows["dataset"] == dataset]
    out = []
    for family, _ in [g for g in tables.groups(df) if g[1] == dataset]:
        fam = rows[rows["family"] == family]
        if scale_only:
            recipe, _rows = tables.scale_selection(df, family, dataset)
            fam = fam[fam["recipe"] == recipe]
        if fam.empty:
            continue
        keys = pd.Series([(sz, *rc) for sz, rc in zip(fam["size"], fam["recipe"], strict=True)],
                         index=fam.index)
        for key, part in fam.groupby(keys, sort=False):
            pt, tf = part[part["framework"] == "torch"], part[part["framework"] == "tf"]
            if pt.empty or tf.empty or (part["status"] != "ok").all():
                continue
            pt_ok, tf_ok = pt[pt["status"] == "ok"], tf[tf["status"] == "ok"]
            thr = stats.ratio_t_ci(pt_ok["train_samples_per_s"], tf_ok["train_samples_per_s"])
            mem = stats.ratio_t_ci(pt_ok["model_mem_mb"], tf_ok["model_mem_mb"])
            acc = tables.diff_ci(tables.metric_values(pt, "test_acc"),
                                 tables.metric_values(tf, "test_acc"), "test_acc")
            (m_pt, f_pt, b_pt), (m_tf, f_tf, b_tf) = _mode(pt_ok), _mode(tf_ok)
            unc = f_pt / f_tf  # as run -> both uncompiled; the probe's factor taken as exact
            out.append({
                "family": family, "dataset": dataset, "size": key[0],
                "size_order": tables.size_rank(key[0]),
                "recipe": tables.recipe_label(key[1:]), "params": float(part["params"].median()),
                "n_torch": len(pt), "n_tf": len(tf), "n_failed": tables.n_failed(part),
                "seeds_disjoint": tables.seeds_disjoint(part),
                "throughput_ratio": thr.value, "throughput_ratio_lo": thr.lo,
                "throughput_ratio_hi": thr.hi,
                "memory_ratio": mem.value, "memory_ratio_lo": mem.lo, "memory_ratio_hi": mem.hi,
                "acc_diff": acc.value, "acc_diff_lo": acc.lo, "acc_diff_hi": acc.hi,
                "mode_torch": m_pt, "mode_tf": m_tf, "best_torch": b_pt, "best_tf": b_tf,
                "uncompiled_ratio": thr.value * unc, "uncompiled_ratio_lo": thr.lo * unc,
                "uncompiled_ratio_hi": thr.hi * unc,
            })
    res = pd.DataFrame(out)
    if len(res):
        res = res.sort_values(["family", "size_order", "recipe"]).reset_index(drop=True)
    return res


FW_METRICS = [("throughput_ratio", "throughput PyTorch / TensorFlow", 1.0),
              ("memory_ratio", "model memory PyTorch / TensorFlow", 1.0),
              ("acc_diff", "test accuracy PyTorch − TensorFlow", 0.0)]


def frameworks_panel(df: pd.DataFrame, dataset: str, key: str) -> Panel:
    title = f"PyTorch vs TensorFlow on {dataset}, per family and size (scale recipe)"
    fws = set(tables.ok_rows(df[df["dataset"] == dataset])["framework"])
    if not {"torch", "tf"} <= fws:
        have = ", ".join(tables.framework_name(f) for f in sorted(fws)) or "none"
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
    compiled = ((cells["mode_torch"] != "uncompiled") | (cells["mode_tf"] != "uncompiled")).any()
    drawn = [(col, metric, ref, metric) for col, (metric, _a, ref) in enumerate(FW_METRICS, 1)]
    if compiled:  # open markers beside the filled ones: the same cells with both uncompiled
        drawn.insert(1, (1, "uncompiled_ratio", 1.0, "throughput_ratio"))
    for col, metric, ref, _shown in drawn:
        for i, (family, part) in enumerate(cells.groupby("family", sort=False)):
            meta = f"{family} {metric}"
            lo, hi = part[f"{metric}_lo"], part[f"{metric}_hi"]
            xs = [esc(f"{family} {s}") for s in part["size"]]
            unc = metric == "uncompiled_ratio"
            fig.add_trace(go.Scatter(
                x=xs, y=part[metric].tolist(),
                name=esc(f"{family}, both uncompiled" if unc else family), mode="markers",
                meta=meta, legendgroup=esc(family), showlegend=col == 1 and not unc,
                marker={"color": plots.PALETTE[i % len(plots.PALETTE)], "size": 11,
                        "symbol": "circle-open" if unc else "circle"},
                error_y={"type": "data", "symmetric": False, "thickness": 1.5,
                         "array": (hi - part[metric]).fillna(0).tolist(),
                         "arrayminus": (part[metric] - lo).fillna(0).tolist()},
                hovertemplate="%{x}: %{y:.3g}<extra></extra>",
            ), row=1, col=col)
            for r, x in zip(part.itertuples(), xs, strict=True):
                data.append({"trace": meta, "metric": metric, "family": family,
                             "size": r.size, "recipe": r.recipe, "params": r.params,
                             "x": plots.html_unescape(x), "y": getattr(r, metric),
                             "ci_lo": getattr(r, f"{metric}_lo"),
                             "ci_hi": getattr(r, f"{metric}_hi"),
                             "n_torch": r.n_torch, "n_tf": r.n_tf})
        fig.add_hline(y=ref, line={"color": "#555", "dash": "dash", "width": 1}, row=1, col=col)
        fig.update_xaxes(type="category", categoryarray=[esc(c) for c in cats],
                         range=[-0.6, len(cats) - 0.4], row=1, col=col)
        if ref == 1.0:  # ratios: a log axis shows 2x and 1/2x at equal distance from parity
            fig.update_yaxes(type="log", **plots.RATIO_TICKS, row=1, col=col)
    fig.update_layout(legend={"orientation": "h", "y": -0.2})
    if compiled:
        # two lines: on one, the title ran over its neighbour's
        fig.layout.annotations[0].text = (esc("throughput PyTorch / TensorFlow") + "<br>"
                                          + esc("(filled: as run; open: both uncompiled)"))
    caption = " ".join(filter(None, [frameworks_caption(cells), calls_sentence(
        tables.ok_rows(df[df["dataset"] == dataset]))]))
    return Panel(key, title, caption, fig, pd.DataFrame(data))


def calls_sentence(ok: pd.DataFrame) -> str:
    """How many training steps each framework ran per call into it, where that differs:
    the per-call cost is part of what the throughput compares."""
    calls = {fw: sorted({int(v) for v in part["steps_per_call"].dropna()})
             for fw, part in ok.groupby("framework")}
    if len({tuple(v) for v in calls.values()}) <= 1:
        return ""
    said = [f"{tables.framework_name(fw)} {' or '.join(map(str, v))}"
            for fw, v in sorted(calls.items(), key=lambda kv: tables.framework_rank(kv[0]))
            if v]
    return (f"Training steps per call into the framework: {', '.join(said)} (TensorFlow "
            f"loops over a mini-batch run's steps inside its graph, Keras's "
            f"steps_per_execution; a PyTorch step is its own call).")


def _row_iv(r, metric: str) -> stats.Interval:
    return stats.Interval(r[metric], r[f"{metric}_lo"], r[f"{metric}_hi"],
                          int(min(r["n_torch"], r["n_tf"])))


def ratio_counts(cells: pd.DataFrame, metric: str) -> tuple[int, int, int]:
    """(cells where PyTorch's value is clearly higher, TensorFlow's clearly higher, neither):
    'clearly' = the 95% interval of the ratio excludes 1."""
    c = cells.dropna(subset=[metric])
    hi = int((c[f"{metric}_lo"] > 1).sum())
    lo = int((c[f"{metric}_hi"] < 1).sum())
    return hi, lo, len(c) - hi - lo


def _side(cells: pd.DataFrame, fw: str) -> str:
    """How one framework trained across `cells`: 'at its best (compiled in 3 of 8 cells)',
    'uncompiled', 'compiled' or 'in mixed modes'."""
    modes, best = cells[f"mode_{fw}"], cells[f"best_{fw}"].astype(bool)
    n_comp = int((modes == "compiled").sum())
    if best.all():
        return f"at its best (compiled in {n_comp} of {len(cells)} cells)"
    one = set(modes)
    return next(iter(one)) if len(one) == 1 and "mixed" not in one else "in mixed modes"


def as_run_label(cells: pd.DataFrame) -> str:
    """The comparison the runs themselves make: 'both uncompiled', or each side's mode."""
    sides = {fw: _side(cells, fw) for fw in ("torch", "tf")}
    if len(set(sides.values())) == 1 and sides["torch"] in ("uncompiled", "compiled"):
        return f"both {sides['torch']}"
    return ", ".join(f"{tables.framework_name(fw)} {v}" for fw, v in sides.items())


def _winner(lo: float, hi: float) -> str:
    return "torch" if lo > 1 else "tf" if hi < 1 else ""


def flips(cells: pd.DataFrame) -> pd.DataFrame:
    """Cells whose clear winner as run is the clear loser with both uncompiled."""
    c = cells.dropna(subset=["throughput_ratio_lo", "uncompiled_ratio_lo"])
    run = [_winner(a, b) for a, b in zip(c["throughput_ratio_lo"], c["throughput_ratio_hi"],
                                         strict=True)]
    unc = [_winner(a, b) for a, b in zip(c["uncompiled_ratio_lo"], c["uncompiled_ratio_hi"],
                                         strict=True)]
    return c[[bool(a and b and a != b) for a, b in zip(run, unc, strict=True)]]


def _counts(thr: pd.DataFrame, metric: str) -> str:
    pt, tf, tie = ratio_counts(thr, metric)
    return (f"PyTorch is clearly faster in {pt}, TensorFlow in {tf}, neither in {tie}; median "
            f"ratio {thr[metric].median():.2f}")


def throughput_sentences(cells: pd.DataFrame) -> list[str]:
    """The throughput verdict as run, with both uncompiled where a side compiled, and the
    cells whose winner flips between the two. The first sentence names its comparison."""
    thr = cells.dropna(subset=["throughput_ratio"])
    if thr.empty:
        return []
    far = thr.loc[(np.log(thr["throughput_ratio"])).abs().idxmax()]
    out = [f"Training throughput as run ({as_run_label(thr)}): over {len(thr)} cells "
           f"(geometric means over seeds, 95% Welch interval on logs) "
           f"{_counts(thr, 'throughput_ratio')}; "
           f"largest gap {far['family']} at size {far['size']}: "
           f"{prose.ratio_claim(_row_iv(far, 'throughput_ratio'))}."]
    if not ((thr["mode_torch"] != "uncompiled") | (thr["mode_tf"] != "uncompiled")).any():
        return out
    unc = thr.dropna(subset=["uncompiled_ratio"])
    if len(unc):
        out.append(f"Both uncompiled (a compiled side's rate times its probe's "
                   f"uncompiled/compiled ratio): {_counts(unc, 'uncompiled_ratio')}.")
    flip = flips(thr)
    if len(flip):
        out.append(f"The winner flips in {len(flip)} cell(s), so no framework wins overall: "
                   + "; ".join(f"{r['family']} {r['size']} (as run "
                               f"{prose.speed_phrase(r['throughput_ratio'])}, both uncompiled "
                               f"{prose.speed_phrase(r['uncompiled_ratio'])})"
                               for _, r in flip.iterrows()) + ".")
    else:
        out.append("No cell's clear winner flips between the two comparisons.")
    return out


def frameworks_caption(cells: pd.DataFrame) -> str:
    out = throughput_sentences(cells)
    mem = cells.dropna(subset=["memory_ratio"])
    if len(mem):
        far = mem.loc[(np.log(mem["memory_ratio"])).abs().idxmax()]
        pt, tf, tie = ratio_counts(mem, "memory_ratio")
        out.append(f"Model memory: median PyTorch/TensorFlow ratio "
                   f"{mem['memory_ratio'].median():.2f}; PyTorch clearly uses more in {pt} "
                   f"cells, TensorFlow in {tf}, neither in {tie}; furthest from parity "
                   f"{far['family']} at {far['size']} ({far['memory_ratio']:.2f}x).")
    else:
        out.append("Model memory: not recorded in matched runs.")
    acc = cells.dropna(subset=["acc_diff"])
    if len(acc):
        sig = acc[(acc["acc_diff_lo"] > 0) | (acc["acc_diff_hi"] < 0)]
        no_ci = int(acc["acc_diff_lo"].isna().sum())
        text = (f"Accuracy difference (mean over seeds, failures at chance): median "
                f"{acc['acc_diff'].median():+.3f}; the 95% Welch interval excludes zero in "
                f"{len(sig)} of {len(acc)} cells")
        if len(sig):
            top = sig.loc[sig["acc_diff"].abs().idxmax()]
            better = "PyTorch" if top["acc_diff"] > 0 else "TensorFlow"
            text += (f" (largest: {better} +{abs(top['acc_diff']):.3f} for {top['family']} "
                     f"at {top['size']})")
        if no_ci:
            text += f"; {no_ci} cell(s) have one seed per framework and no interval"
        shared = int((~acc["seeds_disjoint"].astype(bool)).sum())
        if shared:
            text += (f"; in {shared} cell(s) the frameworks share seeds, so the interval is "
                     f"conservative")
        out.append(text + ".")
    failed = int(cells["n_failed"].sum()) if "n_failed" in cells else 0
    if failed:
        out.append(f"{failed} failed runs: at chance in the accuracy difference, excluded "
                   f"from throughput and memory.")
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
            jitter=0.4, pointpos=0, marker={"color": plots.PALETTE[i % len(plots.PALETTE)]},
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
                     **plots.RATIO_TICKS)
    fig.update_layout(showlegend=False)
    parts = []
    for f, part in cells.dropna(subset=["throughput_ratio"]).groupby("family", sort=False):
        med = part["throughput_ratio"].median()
        pt, tf, tie = ratio_counts(part, "throughput_ratio")
        parts.append(f"{f}: {prose.speed_phrase(med)} at the median of {len(part)} configs "
                     "(clearly "
                     f"PyTorch in {pt}, TensorFlow in {tf}, neither in {tie})")
    caption = ("Each point is one configuration (size, optimizer, regulariser) run in both "
               f"frameworks, as run ({as_run_label(cells)}); above 1 PyTorch is faster. "
               + "; ".join(parts) + ".")
    return Panel(key, title, caption, fig, pd.DataFrame(data), height=380)


def frameworks_page(df: pd.DataFrame) -> Page:
    page = Page("frameworks.html", "Frameworks: PyTorch vs TensorFlow",
                "PyTorch / TensorFlow ratios of geometric means over seeds of throughput and "
                "model memory (ok runs), for the same family, size, optimizer and regulariser, "
                "with the 95% Welch t-interval on log values; the accuracy difference is the "
                "mean over seeds of PyTorch minus TensorFlow (failed runs at chance), with its "
                "95% Welch t-interval.")
    if page_kit.no_runs(page, df):
        return page
    keys = page_kit.Keys()
    for ds in sorted(set(df["dataset"]) - {""}):
        page.h2(f"Dataset {ds}")
        k = keys("frameworks", ds)
        page.add(page_kit.safe(k, ds, lambda d=ds, k=k: frameworks_panel(df, d, k)))
        k2 = keys("frameworks-all", ds)
        page.add(page_kit.safe(k2, ds, lambda d=ds, k=k2: frameworks_spread_panel(df, d, k)))
    return page


def page(inputs) -> Page:
    """The page, as `bench.report.PAGES` builds it."""
    return frameworks_page(inputs.df)
