"""The scale page's budget panels: the learning rate chosen per size and accuracy against training
compute with its frontier.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from . import curve_data, plots, prose, tables
from .html import Panel, esc


def _unit_label(u: dict, units: list[dict]) -> str:
    multi = len({x["optimizer"] for x in units}) > 1
    return f"{u['size']} {u['optimizer']}" if multi else u["size"]


def lr_panel(df: pd.DataFrame, family: str, dataset: str, key: str) -> Panel | None:
    """Validation and test accuracy against the learning rate of every grid; None without
    a grid."""
    units = curve_data.lr_units(df, family, dataset)
    if not units:
        return None
    title = f"{family} on {dataset}: accuracy against learning rate, per size"
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1, subplot_titles=[
        "best validation accuracy (chooses the rate)", "test accuracy (never used to choose)"])
    data = []
    for i, u in enumerate(units):
        m = u["members"]
        label = _unit_label(u, units)
        val, test = curve_data.grid_scores(m)
        chosen = np.isclose(m["lr"], u["chosen"], rtol=1e-9, atol=0) if math.isfinite(
            u["chosen"]) else np.zeros(len(m), bool)
        failed = m["status"].isin(tables.FAILED).to_numpy()
        symbols = ["star" if c else ("x" if f else "circle")
                   for c, f in zip(chosen, failed, strict=True)]
        sizes = [16 if c else 8 for c in chosen]
        c = plots.PALETTE[i % len(plots.PALETTE)]
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
    agree = sum(bool(np.isclose(curve_data.validation_pick(u), u["chosen"], rtol=1e-9, atol=0))
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
        _, test = curve_data.grid_scores(u["members"])
        at = test[np.isclose(u["members"]["lr"], u["chosen"], rtol=1e-9, atol=0)]
        if len(at) and test.notna().any():
            gaps.append(float(test.max() - at.iloc[0]))
    if gaps:
        worse = sum(g > 0 for g in gaps)
        text += (f" The test-best rate differs from the chosen one in {worse} of {len(gaps)} "
                 f"units" + (f" (by up to {max(gaps):.3f} test accuracy)." if worse else "."))
    for frac in tables.RACE_FRACTIONS:
        r = curve_data.race_agreement(units, frac)
        if not r["cases"]:
            continue
        cost = (f", at {r['share']:.0%} of the grid's compute" if math.isfinite(r["share"])
                else "")
        text += (f" A race stopped at {frac:.0%} of the epochs would pick the same rate in "
                 f"{r['same']} of {r['cases']} cases{cost}.")
    return text


def compute_panel(df: pd.DataFrame, family: str, dataset: str, key: str,
                  validation: str = "validation accuracy") -> Panel:
    """Validation accuracy against training FLOPs per run, by size, and the frontier."""
    recipe, rows = tables.scale_selection(df, family, dataset)
    title = f"{family} on {dataset}: {validation} against training compute"
    ok = rows[rows["status"] == "ok"]
    pts = curve_data.compute_points(ok)
    if pts.empty:
        return Panel(key, title, message=f"No learning curve of {family} on {dataset} with "
                     f"training FLOPs recorded ({prose.counts_text(rows)}).")
    front, segs = curve_data.frontier(pts)
    sizes = sorted(set(pts["size"]), key=tables.size_rank)
    fig = go.Figure()
    data = []
    for i, size in enumerate(sizes):
        c = plots.PALETTE[i % len(plots.PALETTE)]
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
            line={"color": plots.POOLED_COLOR, "width": 3, "shape": "hv"},
            customdata=front["size"].map(esc).tolist(),
            hovertemplate="%{x:.3g} FLOPs: %{y:.3f} (best size %{customdata})"
                          "<extra>frontier</extra>"))
        for r in front.itertuples():
            data.append({"trace": "frontier", "size": r.size, "x": r.flops, "y": r.val_acc})
    fig.update_layout(xaxis={"type": "log", "title": {"text": "training FLOPs spent (log)"}},
                      yaxis={"title": {"text": validation}},
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
            parts.append(f"{size} up to {plots.fmt_flops(hi)} FLOPs")
        elif i == len(segs) - 1:
            parts.append(f"{size} from {plots.fmt_flops(lo)}")
        else:
            parts.append(f"{size} from {plots.fmt_flops(lo)} to {plots.fmt_flops(hi)}")
    return ("Best size by budget (leads held over less than "
            f"{FRONTIER_MIN_SPAN:g}x of compute left out): " + ", ".join(parts) + ".")
