"""The Generation page's decoding panels: decode throughput and latency per framework, beam search
against greedy.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..study import stats
from . import generation_rows, plots, prose, tables
from .html import Panel, esc


def speed_ratios(rows: pd.DataFrame) -> pd.DataFrame:
    """Per size run in both frameworks (ok runs): PyTorch / TensorFlow ratios of geometric
    means, decode throughput (tokens/s) and speed at batch 1 (TensorFlow's latency over
    PyTorch's: above 1 PyTorch is faster), each with the Welch interval on logs."""
    ok = rows[rows["status"] == "ok"]
    out = []
    for size, part in ok.groupby("size", sort=False):
        pt, tf = part[part["framework"] == "torch"], part[part["framework"] == "tf"]
        if pt.empty or tf.empty:
            continue
        thr = stats.ratio_t_ci(pt["decode_tokens_per_s"], tf["decode_tokens_per_s"])
        lat = stats.ratio_t_ci(tf["decode_latency_ms"], pt["decode_latency_ms"])
        for metric, iv in (("decode_tokens_per_s", thr), ("decode_latency_ms", lat)):
            if math.isfinite(iv.value):
                out.append({"size": size, "size_order": tables.size_rank(size),
                            "params": float(part["params"].median()), "metric": metric,
                            "ratio": iv.value, "ci_lo": iv.lo, "ci_hi": iv.hi,
                            "n_torch": int(pt[metric].notna().sum()),
                            "n_tf": int(tf[metric].notna().sum())})
    res = pd.DataFrame(out, columns=["size", "size_order", "params", "metric", "ratio",
                                     "ci_lo", "ci_hi", "n_torch", "n_tf"])
    return res.sort_values(["metric", "size_order"]).reset_index(drop=True)

DEFAULT_BEAM_WIDTH, DEFAULT_LENGTH_PENALTY, DEFAULT_DECODE_BATCH = 4, 1.0, 64



def _ratio_iv(r) -> stats.Interval:
    return stats.Interval(r["ratio"], r["ci_lo"], r["ci_hi"], int(min(r["n_torch"], r["n_tf"])))


def speed_panel(df: pd.DataFrame, family: str, dataset: str, key: str) -> Panel:
    """Decode throughput (batch 64) and latency (batch 1) against parameter count, per
    framework, with the PyTorch / TensorFlow ratio per size."""
    _, rows = tables.scale_selection(df, family, dataset)
    title = f"{family} on {dataset}: decoding speed against parameter count"
    ok = rows[rows["status"] == "ok"]
    if ok[[m for m, _, _ in generation_rows.SPEED]].notna().sum().sum() == 0:
        return Panel(key, title, message=f"No ok run of {family} on {dataset} recorded its "
                     f"decoding speed ({prose.counts_text(rows)}).")
    batch = int(generation_rows.setting(ok, "decode_batch", DEFAULT_DECODE_BATCH))
    ratios = speed_ratios(rows)
    fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.08, subplot_titles=[
        f"greedy decode throughput, batch {batch}", "latency per sentence, batch 1",
        "PyTorch / TensorFlow speed"])
    order = generation_rows.order(rows)
    data: list[dict] = []
    trends = []
    for col, (metric, name, axis) in enumerate(generation_rows.SPEED, 1):
        pts_all = generation_rows.points(rows, metric)
        for fw in sorted(set(pts_all["framework"]), key=tables.framework_rank):
            pts = pts_all[pts_all["framework"] == fw]
            plots.points_trace(fig, pts, f"{fw} {metric}", tables.framework_name(fw),
                            generation_rows.style_of(fw, order), col, col == 1, False, data,
                            metric)
        if len(pts_all):
            trend = generation_rows.trend(pts_all, tables.fmt_num)
            trends.append(f"{name.capitalize()} ({axis}): {trend}.")
        fig.update_xaxes(type="log", title_text="parameters", row=1, col=col)
        fig.update_yaxes(type="log" if metric == "decode_tokens_per_s" else None,
                         title_text=esc(axis), row=1, col=col)
    for i, (metric, label) in enumerate((("decode_tokens_per_s", f"tokens/s, batch {batch}"),
                                         ("decode_latency_ms", "1 / latency, batch 1"))):
        part = ratios[ratios["metric"] == metric]
        if part.empty:
            continue
        meta = f"ratio {metric}"
        c = plots.PALETTE[(i + 2) % len(plots.PALETTE)]
        fig.add_trace(go.Scatter(
            x=part["params"].tolist(), y=part["ratio"].tolist(), mode="lines+markers",
            name=esc(f"PyTorch / TensorFlow, {label}"), meta=meta,
            line={"color": c, "dash": "solid" if i == 0 else "dash"},
            marker={"color": c, "size": 8, "symbol": "square" if i == 0 else "diamond"},
            error_y={"type": "data", "symmetric": False,
                     "array": (part["ci_hi"] - part["ratio"]).fillna(0).tolist(),
                     "arrayminus": (part["ratio"] - part["ci_lo"]).fillna(0).tolist()},
            customdata=part["size"].map(esc).tolist(),
            hovertemplate="size %{customdata} · %{x:,.0f} params<br>PyTorch / TensorFlow "
                          "%{y:.3g}x<extra>" + esc(label) + "</extra>",
        ), row=1, col=3)
        for r in part.itertuples():
            data.append({"trace": meta, "metric": metric, "framework": "torch/tf",
                         "size": r.size, "x": r.params, "y": r.ratio, "ci_lo": r.ci_lo,
                         "ci_hi": r.ci_hi, "n_torch": r.n_torch, "n_tf": r.n_tf})
    if len(ratios):
        fig.add_hline(y=1.0, line={"color": "#555", "dash": "dash", "width": 1}, row=1, col=3)
        fig.update_yaxes(type="log", **plots.RATIO_TICKS, row=1, col=3)
    else:
        fig.add_annotation(text="needs ok runs of both frameworks at a size", showarrow=False,
                           xref="x3 domain", yref="y3 domain", x=0.5, y=0.5)
    fig.update_xaxes(type="log", title_text="parameters", row=1, col=3)
    fig.update_layout(legend={"orientation": "h", "y": -0.22})
    caption = (f"Greedy decoding of the test set: generated tokens/s at batch {batch} (each "
               f"run's median over timed blocks) and the median time per sentence at batch 1 "
               f"(one generate() call per sentence); mean over the ok runs' seeds with 95% "
               f"t-interval, per framework (speed is the framework's own, never pooled). "
               + " ".join(trends))
    spread = ok[["decode_tokens_per_s", "decode_tokens_per_s_min",
                 "decode_tokens_per_s_max"]].dropna()
    if len(spread):
        worst = float(((spread["decode_tokens_per_s_max"] - spread["decode_tokens_per_s_min"])
                       / spread["decode_tokens_per_s"]).max())
        caption += (f" Within a run, its slowest and fastest timed blocks differ by at most "
                    f"{worst:.0%} of its median.")
    if len(ratios):
        per = []
        for size in sorted(set(ratios["size"]), key=tables.size_rank):
            at = ratios[ratios["size"] == size].set_index("metric")
            bits = []
            if "decode_tokens_per_s" in at.index:
                r = at.loc["decode_tokens_per_s"]
                bits.append(f"throughput ratio {r['ratio']:.2f}x: "
                            + prose.ratio_claim(_ratio_iv(r)))
            if "decode_latency_ms" in at.index:
                r = at.loc["decode_latency_ms"]
                bits.append(f"at batch 1 (latency ratio TensorFlow/PyTorch {r['ratio']:.2f}x) "
                            + prose.ratio_claim(_ratio_iv(r)))
            per.append(f"{generation_rows.label(rows, size)}: " + "; ".join(bits))
        caption += ("\nPyTorch / TensorFlow, ratios of geometric means over seeds with the 95% "
                    "Welch interval on logs (right; above 1 PyTorch is faster): "
                    + ". ".join(per) + ".")
    else:
        caption += "\nNo size has ok runs in both frameworks: no framework ratio."
    train = generation_rows.points(rows, "train_tokens_per_s")
    if len(train):
        caption += ("\nTraining throughput (target tokens/s): "
                    f"{generation_rows.trend(train, tables.fmt_num)} "
                    f"(the scale page gives it in sentences/s).")
    failed = generation_rows.failed_text(rows, "", "excluded")
    if failed:
        caption += f"\n{failed}."
    return Panel(key, title, caption, fig, pd.DataFrame(data), height=450)


def paired_points(rows: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """Mean and t-interval of a - b over the ok runs of each size (a paired difference: both
    from the same run), pooled over frameworks where the size's seeds are disjoint, else per
    framework; `tables.POINT_COLUMNS`."""
    diff = rows[a] - rows[b]
    out = []
    for size, part in rows.groupby("size", sort=False):
        parts = ([(tables.POOLED, part)] if tables.seeds_disjoint(part)
                 else [(fw, p) for fw, p in part.groupby("framework", sort=False)])
        for fw, p in parts:
            ok = p[p["status"] == "ok"]
            iv = stats.mean_t_ci(diff.loc[ok.index], bounds=tables.diff_range(b))
            out.append({"framework": fw, "size": size, "params": float(p["params"].median()),
                        "mean": iv.value, "ci_lo": iv.lo, "ci_hi": iv.hi, "n_seeds": iv.n,
                        "n_runs": len(p), "n_failed": tables.n_failed(p),
                        "seeds": tables.seed_text(tables.seeds_of(ok))})
    res = pd.DataFrame(out, columns=tables.POINT_COLUMNS)
    res = res[np.isfinite(res["mean"].astype(float))]
    res = res.assign(_fw=res["framework"].map(tables.framework_rank))
    return res.sort_values(["_fw", "params"]).drop(columns="_fw").reset_index(drop=True)


def beam_panel(df: pd.DataFrame, family: str, dataset: str, key: str) -> Panel:
    """Beam search minus greedy decoding, exact match and BLEU, on test and test_long."""
    _, rows = tables.scale_selection(df, family, dataset)
    title = f"{family} on {dataset}: beam search against greedy decoding, per size"
    ok = rows[rows["status"] == "ok"]
    width = int(generation_rows.setting(ok, "beam_width", DEFAULT_BEAM_WIDTH))
    penalty = generation_rows.setting(ok, "length_penalty", DEFAULT_LENGTH_PENALTY)
    metrics = (("exact_match", "exact match", "{:+.3f}"), ("bleu", "BLEU", "{:+.2f}"))
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1, subplot_titles=[
        f"{name}: beam − greedy" for _, name, _ in metrics])
    order = generation_rows.order(rows)
    data: list[dict] = []
    found: dict[str, dict[str, list[str]]] = {"helps": {}, "hurts": {}, "unclear": {}}
    for col, (base, name, fmt) in enumerate(metrics, 1):
        for suffix, ts in generation_rows.TEST_SETS:
            greedy, beam = base + suffix, f"beam_{base}{suffix}"
            pts_all = paired_points(rows, beam, greedy)
            for fw in sorted(set(pts_all["framework"]), key=tables.framework_rank):
                pts = pts_all[pts_all["framework"] == fw]
                style = generation_rows.style_of(fw, order)
                style = {"line": {**style["line"], "dash": generation_rows.SET_DASH[ts]},
                         "marker": {**style["marker"],
                                    "symbol": "circle" if ts == "test" else "x"}}
                label = f"{tables.framework_name(fw)}, {ts}"
                plots.points_trace(fig, pts, f"{fw} {beam}-{greedy}", label, style, col,
                                col == 1, False, data, f"{beam}-{greedy}")
                fig.data[-1].update(legendgroup=esc(f"{fw} {ts}"))
                where = (f"{name} on {ts}"
                         + ("" if fw == tables.POOLED else f" ({tables.framework_name(fw)})"))
                for r in pts.itertuples():
                    iv = stats.Interval(r.mean, r.ci_lo, r.ci_hi, int(r.n_seeds))
                    text = (f"{r.size} {fmt.format(r.mean)} [{fmt.format(r.ci_lo)}, "
                            f"{fmt.format(r.ci_hi)}]" if iv.has_ci
                            else f"{r.size} {fmt.format(r.mean)} (n={r.n_seeds})")
                    kind = ("unclear" if not iv.excludes_zero
                            else "helps" if r.mean > 0 else "hurts")
                    found[kind].setdefault(where, []).append(text)
        fig.add_hline(y=0.0, line={"color": "#555", "dash": "dash", "width": 1}, row=1, col=col)
        fig.update_xaxes(type="log", title_text="parameters", row=1, col=col)
        fig.update_yaxes(title_text=esc(f"{name}, beam − greedy"), row=1, col=col)
    if not data:
        return Panel(key, title, message=f"No ok run of {family} on {dataset} recorded both "
                     f"greedy and beam-search scores ({prose.counts_text(rows)}).")
    fig.update_layout(legend={"orientation": "h", "y": -0.22})
    caption = (f"Beam search (width {width}, length penalty {penalty:g}) minus greedy "
               f"decoding of the same trained model, paired per run, mean over the ok runs "
               f"with 95% t-interval; pooled over frameworks at a size whose seeds are "
               f"disjoint (black), else per framework. Solid: test; dashed: test_long. "
               f"Exact match as a fraction (+0.010 is one sentence in a hundred more), BLEU "
               f"in points.\n")

    def listed(kind: str) -> str:
        return "; ".join(f"{where} at {', '.join(items)}"
                         for where, items in found[kind].items())

    if found["helps"]:
        caption += f"Beam search helps (interval above zero): {listed('helps')}. "
    else:
        caption += "Beam search helps nowhere with an interval above zero. "
    if found["hurts"]:
        caption += f"It hurts (interval below zero): {listed('hurts')}. "
    if found["unclear"]:
        caption += f"No clear difference (interval includes zero): {listed('unclear')}."
    failed = generation_rows.failed_text(rows, "", "excluded: a failed run decoded nothing")
    if failed:
        caption += f"\n{failed}."
    return Panel(key, title, caption.rstrip(), fig, pd.DataFrame(data), height=430)
