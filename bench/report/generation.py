"""The Generation page's panels: translation quality, decoding speed, greedy against beam
search and decoded examples, per dataset of a generating family (seq2seq).

Rules (the same as the scale page's, `tables`):

- Runs: the scale recipe of the family and dataset (`tables.scale_selection`: study runs, the
  recipe with the most sizes), any status.
- Exact match is the translation's accuracy: a ``diverged``/``oom``/``error`` run counts at
  0 (the chance of an exact match), a pruned run is left out, and it is pooled over the
  frameworks at a size where their seeds are disjoint (`tables.EXACT_MATCH_METRICS`). BLEU, chrF,
  decoding speed and latency use ok runs only and stay per framework.
- Per point: the mean over seeds with its Student-t interval; "is the largest size better
  than the smallest" is the Welch interval of the difference, claimed only where it
  excludes zero.
- Framework speed: PyTorch / TensorFlow ratio of geometric means over seeds with the Welch
  interval on logs (`stats.ratio_t_ci`), as on the frameworks page.
- Greedy against beam: both decode the same trained model, so each ok run gives one paired
  difference (beam - greedy); its mean and t-interval per size, pooled over frameworks where
  their seeds are disjoint.
- Examples: the sentences one run recorded, from the largest size's ok run with the best
  validation exact match (ties: PyTorch first, then the smaller seed).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .. import stats
from ..decode_speed import gemm_text
from . import figures, tables
from .html import Panel, esc, table

TEST_SETS = (("", "test"), ("_long", "test_long"))
QUALITY = (("exact_match", "exact match", "{:.3f}"), ("bleu", "BLEU", "{:.1f}"),
           ("chrf", "chrF", "{:.1f}"))
SPEED = (("decode_tokens_per_s", "decode throughput", "generated tokens/s"),
         ("decode_latency_ms", "latency per sentence", "ms"))
SET_DASH = {"test": "solid", "test_long": "dash"}
DEFAULT_BEAM_WIDTH, DEFAULT_LENGTH_PENALTY, DEFAULT_DECODE_BATCH = 4, 1.0, 64


def groups(df: pd.DataFrame) -> list[tuple[str, str]]:
    """(family, dataset) pairs of the generating families, in registry order."""
    return [(f, d) for f, d in tables.groups(df) if f in tables.GENERATION_FAMILIES]


def test_sets_text(dataset: str) -> str:
    """What the two test sets hold, in words (from the dataset's definition when known)."""
    try:
        from ..text_pairs import PAIRS
        p = PAIRS.get(dataset)
    except Exception:  # noqa: BLE001 - a description only
        p = None
    if p is None:
        return ("The test set holds sentences not seen in training, test_long longer ones "
                "of a form training never shows (a length-generalisation test)")
    return (f"The test set holds numbers below {p.below:,} not seen in training, test_long "
            f"numbers {p.below:,}-{p.long_below - 1:,}: six digits, a form no training sentence "
            f"has, and longer sentences on average (a length-generalisation test, where a model "
            f"is expected to score about 0 exact match)")


def _setting(rows: pd.DataFrame, col: str, default: float) -> float:
    v = rows[col].dropna()
    return float(v.median()) if len(v) else default


def _label(rows: pd.DataFrame, size: str) -> str:
    return f"{size} ({tables.fmt_count(rows.loc[rows['size'] == size, 'params'].median())} params)"


def _order(rows: pd.DataFrame) -> list[str]:
    return sorted(set(rows["framework"]) - {""}, key=tables.framework_rank)


def _style_of(fw: str, order: list[str]) -> dict:
    """The framework's line as the scale page draws it (the same index in every subplot)."""
    return figures._style(fw, order.index(fw) if fw in order else len(order))


class _Row:
    """`figures._points_trace` draws in row 1: this puts its trace in another row."""

    def __init__(self, fig, row: int):
        self.fig, self.row = fig, row

    def add_trace(self, trace, row: int = 1, col: int = 1):
        return self.fig.add_trace(trace, row=self.row, col=col)


def points(rows: pd.DataFrame, metric: str) -> pd.DataFrame:
    """`tables.scale_points` of `metric`, empty where no ok run recorded it (an older record
    would otherwise show its failed runs alone, at 0)."""
    if rows.loc[rows["status"] == "ok", metric].isna().all():  # also: no ok run
        return pd.DataFrame(columns=tables.POINT_COLUMNS)
    return tables.scale_points(rows, metric)


def _failed_text(rows: pd.DataFrame, counted: str, excluded: str) -> str:
    """'k of n runs failed (exact match counted at 0; excluded from BLEU and chrF)'."""
    k = tables.n_failed(rows)
    pruned = int((rows["status"] == "pruned").sum())
    parts = []
    if k:
        how = "; ".join(p for p in (counted, excluded) if p)
        parts.append(f"{k} of {len(rows)} runs failed ({how})")
    if pruned:
        parts.append(f"{pruned} of {len(rows)} runs pruned (left out)")
    return "; ".join(parts)


# ---------------------------------------------------------------------------- quality


def difference_phrase(a: str, b: str, iv: stats.Interval, what: str = "exact match") -> str:
    """'m beats xs by +0.300 exact match (95% Welch CI [+0.250, +0.350])' where the interval
    of mean(a) - mean(b) excludes zero, else 'no clear difference in exact match between a
    and b (difference +0.004, 95% CI [-0.010, +0.018])'."""
    if not math.isfinite(iv.value):
        return f"{a} and {b}: no comparison"
    if iv.excludes_zero:
        win, lose, d = (a, b, iv.value) if iv.value > 0 else (b, a, -iv.value)
        lo, hi = (iv.lo, iv.hi) if iv.value > 0 else (-iv.hi, -iv.lo)
        return f"{win} beats {lose} by {d:+.3f} {what} (95% Welch CI [{lo:+.3f}, {hi:+.3f}])"
    ci = (f"95% Welch CI [{iv.lo:+.3f}, {iv.hi:+.3f}]" if iv.has_ci
          else f"n = {iv.n}: no interval")
    return (f"no clear difference in {what} between {a} and {b} (difference "
            f"{iv.value:+.3f}, {ci})")


def size_claims(rows: pd.DataFrame, metric: str = "exact_match",
                what: str = "exact match") -> list[str]:
    """Largest against smallest size on `metric` (failures at 0 for exact match), pooled
    over frameworks where both sizes have disjoint seeds, else per framework."""
    if rows.loc[rows["status"] == "ok", metric].isna().all():
        return []
    vals = tables.metric_values(rows, metric)
    rows = rows[vals.notna()]
    sizes = sorted(set(rows.loc[rows["status"] == "ok", "size"]), key=tables._size_rank)
    if len(sizes) < 2:
        return []
    small, large = sizes[0], sizes[-1]
    a, b = rows[rows["size"] == large], rows[rows["size"] == small]
    if metric in tables.ACCURACY_METRICS and tables.seeds_disjoint(a) and tables.seeds_disjoint(b):
        parts = [(tables.POOLED, a, b)]
    else:
        parts = [(fw, a[a["framework"] == fw], b[b["framework"] == fw]) for fw in _order(rows)]
    out = []
    for fw, x, y in parts:
        if x.empty or y.empty:
            continue
        iv = tables.diff_ci(tables.metric_values(x, metric), tables.metric_values(y, metric),
                            metric)
        out.append(f"{tables.framework_name(fw)}, {len(x) + len(y)} runs: "
                   + difference_phrase(_label(rows, large), _label(rows, small), iv, what))
    return out


def _trend(pts: pd.DataFrame, fmt) -> str:
    """'PyTorch 0.20 at xs to 0.80 at m; TensorFlow ...' (pooled last); `fmt` a format
    string or a function."""
    show = fmt.format if isinstance(fmt, str) else fmt
    parts = []
    for fw in sorted(set(pts["framework"]), key=tables.framework_rank):
        p = pts[pts["framework"] == fw]
        first, last = p.iloc[0], p.iloc[-1]
        text = f"{tables.framework_name(fw)} {show(first['mean'])} at {first['size']}"
        if len(p) > 1:
            text += f" to {show(last['mean'])} at {last['size']}"
        parts.append(text)
    return "; ".join(parts)


def _level(pts: pd.DataFrame, size: str, fmt: str) -> str:
    """The value at one size: the pooled point if there is one, else each framework's."""
    at = pts[pts["size"] == size]
    if at.empty:
        return "n/a"
    pooled = at[at["framework"] == tables.POOLED]
    at = pooled if len(pooled) else at

    def one(r) -> str:
        ci = (f" [{fmt.format(r['ci_lo'])}, {fmt.format(r['ci_hi'])}]"
              if math.isfinite(r["ci_lo"]) else "")
        return fmt.format(r["mean"]) + ci

    if len(at) == 1:
        r = at.iloc[0]
        pooled = r["framework"] == tables.POOLED
        return one(r) + (" (pooled)" if pooled else f" ({tables.framework_name(r['framework'])})")
    return ", ".join(f"{tables.framework_name(r['framework'])} {one(r)}"
                     for _, r in at.iterrows())


def quality_panel(df: pd.DataFrame, family: str, dataset: str, key: str) -> Panel:
    """Exact match, BLEU and chrF (greedy) against parameter count, test and test_long."""
    recipe, rows = tables.scale_selection(df, family, dataset)
    title = (f"{family} on {dataset}: exact match, BLEU and chrF (greedy decoding) against "
             f"parameter count")
    ok = rows[rows["status"] == "ok"]
    if ok.empty:
        return Panel(key, title, message=f"No successful run of {family} on {dataset}: "
                     f"{figures._counts_text(rows)}. Nothing to plot.")
    recorded = [b + sfx for b, _, _ in QUALITY for sfx, _ in TEST_SETS]
    if ok[recorded].isna().all().all():
        return Panel(key, title, message=f"No ok run of {family} on {dataset} recorded its "
                     "translation quality (exact_match, bleu, chrf): "
                     f"{figures._counts_text(rows)}.")
    fig = make_subplots(rows=2, cols=3, horizontal_spacing=0.07, vertical_spacing=0.16,
                        subplot_titles=[f"{name}, {ts}" for _, ts in TEST_SETS
                                        for _, name, _ in QUALITY])
    order = _order(rows)
    data: list[dict] = []
    pts_of: dict[str, pd.DataFrame] = {}
    shown: set[str] = set()
    for r, (suffix, ts) in enumerate(TEST_SETS, 1):
        for c, (base, name, _fmt) in enumerate(QUALITY, 1):
            metric = base + suffix
            pts_all = points(rows, metric)
            pts_of[metric] = pts_all
            for fw in sorted(set(pts_all["framework"]), key=tables.framework_rank):
                pts = pts_all[pts_all["framework"] == fw]
                figures._points_trace(_Row(fig, r), pts, f"{fw} {metric}",
                                      tables.framework_name(fw), _style_of(fw, order), c,
                                      fw not in shown, metric in tables.ACCURACY_METRICS, data,
                                      metric)
                shown.add(fw)
            if pts_all.empty:
                n = (r - 1) * 3 + c
                axis = "" if n == 1 else str(n)
                fig.add_annotation(text=f"{esc(name)} on {ts} not recorded", showarrow=False,
                                   xref=f"x{axis} domain", yref=f"y{axis} domain", x=0.5,
                                   y=0.5)
            fig.update_xaxes(type="log", title_text="parameters" if r == 2 else None,
                             row=r, col=c)
            fig.update_yaxes(title_text=esc(name if base != "exact_match"
                                            else "exact match (fraction)"), row=r, col=c)
    fig.update_layout(legend={"orientation": "h", "y": -0.14})
    em = pts_of["exact_match"]
    sizes = sorted(set(ok["size"]), key=tables._size_rank)
    largest = sizes[-1]
    claims = size_claims(rows)
    if claims:
        claim = ("Exact match on test, largest against smallest size (difference of means, "
                 "95% Welch interval): " + "; ".join(claims) + ".")
    else:
        claim = "Exact match: only one size has successful runs, so there is no size trend."
    trends = [f"{name} on test: {_trend(pts_of[base], fmt)}."
              for base, name, fmt in QUALITY[1:] if len(pts_of[base])]
    long_parts = [f"{name} {_level(pts_of[base + '_long'], largest, fmt)}"
                  for base, name, fmt in QUALITY if len(pts_of[base + "_long"])]
    test_parts = [f"{name} {_level(pts_of[base], largest, fmt)}"
                  for base, name, fmt in QUALITY if len(pts_of[base])]
    long = (f"test_long at the largest size, {_label(rows, largest)}: "
            + "; ".join(long_parts) + " (on test: " + "; ".join(test_parts) + ")."
            if long_parts else "test_long: not recorded.")
    em_long = pts_of["exact_match_long"]
    at = em_long[em_long["size"] == largest]
    if len(at) and (at["mean"] < 0.05).all():
        long += (" Exact match on test_long stays near 0, as expected: no training sentence "
                 "is that long.")
    pooling = figures.pooling_sentence(rows, "BLEU and chrF stay per framework").replace(
        "Accuracy is", "Exact match is", 1)
    failed = _failed_text(rows, "exact match counted at 0", "excluded from BLEU and chrF")
    caption = (f"Recipe: {tables.recipe_label(recipe)}; greedy decoding; mean over seeds with 95% "
               f"t-interval ({figures._n_text(em) if len(em) else '0 seeds'}). Exact match is the "
               f"share of sentences translated exactly (a failed run counts at 0); BLEU and "
               f"chrF are sacrebleu corpus scores (0-100) of ok runs. "
               f"{test_sets_text(dataset)}.\n{pooling}\n{claim}\n"
               + (" ".join(trends) + "\n" if trends else "") + long
               + (f"\n{failed}." if failed else ""))
    return Panel(key, title, caption, fig, pd.DataFrame(data), height=680)


# ---------------------------------------------------------------------------- speed


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
                out.append({"size": size, "size_order": tables._size_rank(size),
                            "params": float(part["params"].median()), "metric": metric,
                            "ratio": iv.value, "ci_lo": iv.lo, "ci_hi": iv.hi,
                            "n_torch": int(pt[metric].notna().sum()),
                            "n_tf": int(tf[metric].notna().sum())})
    res = pd.DataFrame(out, columns=["size", "size_order", "params", "metric", "ratio",
                                     "ci_lo", "ci_hi", "n_torch", "n_tf"])
    return res.sort_values(["metric", "size_order"]).reset_index(drop=True)


def _ratio_iv(r) -> stats.Interval:
    return stats.Interval(r["ratio"], r["ci_lo"], r["ci_hi"], int(min(r["n_torch"], r["n_tf"])))


def speed_panel(df: pd.DataFrame, family: str, dataset: str, key: str) -> Panel:
    """Decode throughput (batch 64) and latency (batch 1) against parameter count, per
    framework, with the PyTorch / TensorFlow ratio per size."""
    _, rows = tables.scale_selection(df, family, dataset)
    title = f"{family} on {dataset}: decoding speed against parameter count"
    ok = rows[rows["status"] == "ok"]
    if ok[[m for m, _, _ in SPEED]].notna().sum().sum() == 0:
        return Panel(key, title, message=f"No ok run of {family} on {dataset} recorded its "
                     f"decoding speed ({figures._counts_text(rows)}).")
    batch = int(_setting(ok, "decode_batch", DEFAULT_DECODE_BATCH))
    ratios = speed_ratios(rows)
    fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.08, subplot_titles=[
        f"greedy decode throughput, batch {batch}", "latency per sentence, batch 1",
        "PyTorch / TensorFlow speed"])
    order = _order(rows)
    data: list[dict] = []
    trends = []
    for col, (metric, name, axis) in enumerate(SPEED, 1):
        pts_all = points(rows, metric)
        for fw in sorted(set(pts_all["framework"]), key=tables.framework_rank):
            pts = pts_all[pts_all["framework"] == fw]
            figures._points_trace(fig, pts, f"{fw} {metric}", tables.framework_name(fw),
                            _style_of(fw, order), col, col == 1, False, data, metric)
        if len(pts_all):
            trends.append(f"{name.capitalize()} ({axis}): {_trend(pts_all, tables.fmt_num)}.")
        fig.update_xaxes(type="log", title_text="parameters", row=1, col=col)
        fig.update_yaxes(type="log" if metric == "decode_tokens_per_s" else None,
                         title_text=esc(axis), row=1, col=col)
    for i, (metric, label) in enumerate((("decode_tokens_per_s", f"tokens/s, batch {batch}"),
                                         ("decode_latency_ms", "1 / latency, batch 1"))):
        part = ratios[ratios["metric"] == metric]
        if part.empty:
            continue
        meta = f"ratio {metric}"
        c = figures.PALETTE[(i + 2) % len(figures.PALETTE)]
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
        fig.update_yaxes(type="log", **figures.RATIO_TICKS, row=1, col=3)
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
        for size in sorted(set(ratios["size"]), key=tables._size_rank):
            at = ratios[ratios["size"] == size].set_index("metric")
            bits = []
            if "decode_tokens_per_s" in at.index:
                r = at.loc["decode_tokens_per_s"]
                bits.append(f"throughput ratio {r['ratio']:.2f}x: "
                            + figures.ratio_claim(_ratio_iv(r)))
            if "decode_latency_ms" in at.index:
                r = at.loc["decode_latency_ms"]
                bits.append(f"at batch 1 (latency ratio TensorFlow/PyTorch {r['ratio']:.2f}x) "
                            + figures.ratio_claim(_ratio_iv(r)))
            per.append(f"{_label(rows, size)}: " + "; ".join(bits))
        caption += ("\nPyTorch / TensorFlow, ratios of geometric means over seeds with the 95% "
                    "Welch interval on logs (right; above 1 PyTorch is faster): "
                    + ". ".join(per) + ".")
    else:
        caption += "\nNo size has ok runs in both frameworks: no framework ratio."
    train = points(rows, "train_tokens_per_s")
    if len(train):
        caption += (f"\nTraining throughput (target tokens/s): {_trend(train, tables.fmt_num)} "
                    f"(the scale page gives it in sentences/s).")
    failed = _failed_text(rows, "", "excluded")
    if failed:
        caption += f"\n{failed}."
    return Panel(key, title, caption, fig, pd.DataFrame(data), height=450)


# ---------------------------------------------------------------------------- beam


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
    width = int(_setting(ok, "beam_width", DEFAULT_BEAM_WIDTH))
    penalty = _setting(ok, "length_penalty", DEFAULT_LENGTH_PENALTY)
    metrics = (("exact_match", "exact match", "{:+.3f}"), ("bleu", "BLEU", "{:+.2f}"))
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1, subplot_titles=[
        f"{name}: beam − greedy" for _, name, _ in metrics])
    order = _order(rows)
    data: list[dict] = []
    found: dict[str, dict[str, list[str]]] = {"helps": {}, "hurts": {}, "unclear": {}}
    for col, (base, name, fmt) in enumerate(metrics, 1):
        for suffix, ts in TEST_SETS:
            greedy, beam = base + suffix, f"beam_{base}{suffix}"
            pts_all = paired_points(rows, beam, greedy)
            for fw in sorted(set(pts_all["framework"]), key=tables.framework_rank):
                pts = pts_all[pts_all["framework"] == fw]
                style = _style_of(fw, order)
                style = {"line": {**style["line"], "dash": SET_DASH[ts]},
                         "marker": {**style["marker"],
                                    "symbol": "circle" if ts == "test" else "x"}}
                label = f"{tables.framework_name(fw)}, {ts}"
                figures._points_trace(fig, pts, f"{fw} {beam}-{greedy}", label, style, col,
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
                     f"greedy and beam-search scores ({figures._counts_text(rows)}).")
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
    failed = _failed_text(rows, "", "excluded: a failed run decoded nothing")
    if failed:
        caption += f"\n{failed}."
    return Panel(key, title, caption.rstrip(), fig, pd.DataFrame(data), height=430)


# ---------------------------------------------------------------------------- examples


def parse_examples(value) -> list[dict]:
    """A run's decoded examples (JSON text in the table; a list when built in memory)."""
    if isinstance(value, list):
        items = value
    elif isinstance(value, str) and value.strip():
        try:
            items = json.loads(value)
        except ValueError:
            return []
    else:
        return []
    return [e for e in items if isinstance(e, dict)] if isinstance(items, list) else []


def example_run(rows: pd.DataFrame) -> tuple[dict | None, int]:
    """(the run whose examples are shown, ok runs it was chosen among): at the largest size
    with ok runs that recorded examples, the best validation exact match (ties: PyTorch
    first, then the smaller seed)."""
    ok = rows[rows["status"] == "ok"]
    ok = ok[[bool(parse_examples(e)) for e in ok["examples"]]]
    if ok.empty:
        return None, 0
    size = max(set(ok["size"]), key=lambda s: (ok.loc[ok["size"] == s, "params"].median(),
                                               tables._size_rank(s)))
    at = ok[ok["size"] == size]
    best = at.assign(_v=at["val_acc"].fillna(-math.inf),
                     _fw=at["framework"].map(tables.framework_rank)).sort_values(
        ["_v", "_fw", "seed"], ascending=[False, True, True])
    return best.iloc[0].to_dict(), len(at)


def examples_panel(df: pd.DataFrame, family: str, dataset: str, key: str) -> Panel:
    _, rows = tables.scale_selection(df, family, dataset)
    title = f"{family} on {dataset}: example translations"
    run, n = example_run(rows)
    if run is None:
        return Panel(key, title, message=f"No ok run of {family} on {dataset} recorded "
                     f"decoded examples ({figures._counts_text(rows)}).")
    cells, data = [], []
    for e in parse_examples(run["examples"]):
        ref = str(e.get("reference", ""))
        greedy, beam = str(e.get("greedy", "")), str(e.get("beam", ""))
        exact = [w for w, h in (("greedy", greedy), ("beam", beam)) if h == ref]
        match = " and ".join(exact) if exact else "neither"
        cells.append([e.get("test", ""), e.get("source", ""), ref, greedy, beam, match])
        data.append({"trace": "examples", "run_id": run["run_id"],
                     "framework": run["framework"], "size": run["size"], "seed": run["seed"],
                     "test": e.get("test", ""), "source": e.get("source", ""),
                     "reference": ref, "greedy": greedy, "beam": beam, "exact": match})
    val = run["val_acc"]
    val = f"{val:.3f}" if isinstance(val, float) and math.isfinite(val) else "n/a"
    caption = (f"Run {tables.run_label(run)} ({tables.fmt_count(run['params'])} params): "
               "the best of "
               f"{n} ok run(s) at the largest size by validation exact match ({val}). The "
               f"sentences the run recorded, the first of each test set, decoded greedily "
               f"and by beam search; 'exact' names the decodings equal to the reference. "
               f"{test_sets_text(dataset)}.")
    return Panel(key, title, caption, None, pd.DataFrame(data),
                 body=table(cells, ["test set", "source", "reference", "greedy", "beam",
                                    "exact"]))


PANELS = (("quality", quality_panel), ("speed", speed_panel), ("beam", beam_panel),
          ("examples", examples_panel))


# ---------------------------------------------------------------------------- decode speed

DECODE_PEERS = (("torch", "ours, PyTorch"), ("tf", "ours, TensorFlow"))


class DecodeSpeedError(ValueError):
    """A --decode-speed file that is not a decode-speed table."""


def load_decode_speed(path) -> dict | None:
    """The table `python -m bench decode-speed` wrote (None where there is no file);
    a file that is not one raises DecodeSpeedError naming it."""
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DecodeSpeedError(f"{path}: not a decode-speed table ({e})") from None
    if not isinstance(doc, dict) or doc.get("what") != "decode-speed" or not doc.get("cells"):
        raise DecodeSpeedError(f"{path}: not a decode-speed table (no 'what': 'decode-speed' "
                               "and cells)")
    doc["source"] = str(path)
    return doc


def _ratio(a, b) -> float:
    return a / b if a and b else math.nan


def decode_frame(doc: dict) -> pd.DataFrame:
    """One row per cell: tokens/s of each peer, ours/HF and cached/uncached ratios."""
    rows = []
    for c in doc["cells"]:
        r = {k: c.get(k) for k in ("precision", "batch", "beam", "length")}
        r["search"] = "greedy" if r["beam"] == 1 else f"beam {r['beam']}"
        for p, _ in DECODE_PEERS:
            for cache in ("cache", "nocache"):
                r[f"{p}_{cache}"] = c.get(f"{p}_{cache}")
            r[f"{p}_speedup"] = _ratio(c.get(f"{p}_cache"), c.get(f"{p}_nocache"))
            r[f"{p}_over_hf"] = _ratio(c.get(f"{p}_cache"), c.get("hf_cache"))
        r["hf_cache"] = c.get("hf_cache")
        r["uncached_left_out"] = c.get("uncached_left_out") or ""
        rows.append(r)
    return pd.DataFrame(rows).astype({f"{p}_{c}": float for p, _ in DECODE_PEERS
                                      for c in ("cache", "nocache")} | {"hf_cache": float})


def _span(v: pd.Series, fmt: str = "{:.2f}") -> str:
    v = v.dropna()
    if v.empty:
        return "n/a"
    lo, hi = fmt.format(v.min()), fmt.format(v.max())
    return lo if lo == hi else f"{lo}-{hi}"


def _per_length(df: pd.DataFrame, col: str) -> str:
    """'1.01-1.20x at 20 tokens, 0.98x at 64, ...' over every cell of each length."""
    parts = [f"{_span(df.loc[df['length'] == n, col])}x at {n}"
             for n in sorted(set(df["length"])) if df.loc[df["length"] == n, col].notna().any()]
    return ", ".join(parts) + (" tokens" if parts else "")


def _tokens(v) -> str:
    return f"{v:,.0f}" if isinstance(v, float) and math.isfinite(v) else "-"


def _x(v) -> str:
    return f"{v:.2f}" if isinstance(v, float) and math.isfinite(v) else "-"


def decode_speed_panel(doc: dict, key: str) -> Panel:
    """Our generate against Hugging Face's on the article's model (random weights of
    opus-mt-en-fr's shape): the table `bench decode-speed` wrote, with computed claims."""
    df = decode_frame(doc)
    peers = [p for p in doc.get("peers", []) if p in ("torch", "tf", "hf")]
    ours = [(p, name) for p, name in DECODE_PEERS if p in peers]
    has_hf = "hf" in peers
    title = ("Decode speed against Hugging Face's generate: opus-mt-en-fr's shape "
             "(random weights)")
    header = ["precision", "batch", "search", "length"]
    for _, name in ours:
        header += [f"{name}: cached", "uncached", "cached / uncached"]
    if has_hf:
        header += ["Hugging Face generate"] + [f"{name} / HF" for _, name in ours]
    cells = []
    for r in df.itertuples(index=False):
        row = [r.precision, r.batch, r.search, r.length]
        for p, _ in ours:
            row += [_tokens(getattr(r, f"{p}_cache")), _tokens(getattr(r, f"{p}_nocache")),
                    _x(getattr(r, f"{p}_speedup"))]
        if has_hf:
            row += [_tokens(r.hf_cache)] + [_x(getattr(r, f"{p}_over_hf")) for p, _ in ours]
        cells.append(row)
    gemm = doc.get("gemm_gflops") or {}
    load = [doc.get("load_avg_1m_start"), doc.get("load_avg_1m_end")]
    command = doc.get("command", "python -m bench decode-speed")
    versions = ", ".join(f"{k} {v}" for k, v in (doc.get("versions") or {}).items())
    setting = (f"Measured {doc.get('date', '?')} by `{command}` on "
               f"{doc.get('cpu_model', '?')} ({doc.get('cpu_count', '?')} cores), "
               f"{doc.get('threads', '?')} thread(s), {doc.get('repeats', '?')} timed "
               f"call(s) per cell after an untimed one"
               + (" (untimed: only before each precision's first cell)"
                  if doc.get("warmup") == "first" else "")
               + f", {doc.get('rounds', '?')} round(s); "
               "load average " + " to ".join(f"{v:.2f}" for v in load if v is not None)
               + (f"; one-thread 2048^3 matrix product (PyTorch) {gemm_text(gemm)} GFLOP/s"
                  if gemm else "")
               + (f"; {versions}" if versions else "") + ".")
    what = (f"Generated tokens/s (median of a cell's calls, median over rounds), "
            f"{doc.get('model', 'opus-mt-en-fr shape')} ({doc.get('params', 0):,} parameters), "
            f"sources of {doc.get('source_tokens', 20)} tokens, exactly `length` tokens "
            f"generated per sentence (EOS banned before) so every library does the same work; "
            f"batch 1 is the article's single call (latency per sentence = length / "
            f"tokens/s). Ours with and without the key/value cache; Hugging Face's caches. "
            f"Ours in PyTorch and Hugging Face's share a process and alternate calls, so "
            f"their ratio is the reliable one; TensorFlow runs in its own process.")
    claims = []
    for prec in dict.fromkeys(df["precision"]):
        part = df[df["precision"] == prec]
        if has_hf and "torch" in peers and part["torch_over_hf"].notna().any():
            low = part[part["torch_over_hf"] < 0.8]
            goal = ("at least 0.8x in every cell" if low.empty else
                    "below 0.8x in " + ", ".join(
                        f"batch {r.batch} {r.search} {r.length}" for r in low.itertuples()))
            claims.append(f"in {prec}, our cached PyTorch decode is "
                          f"{_span(part['torch_over_hf'])}x Hugging Face's ("
                          f"{_per_length(part, 'torch_over_hf')}; {goal})")
        if has_hf and "tf" in peers and part["tf_over_hf"].notna().any():
            claims.append(f"in {prec}, ours in TensorFlow is {_span(part['tf_over_hf'])}x "
                          f"Hugging Face's ({_per_length(part, 'tf_over_hf')})")
        for p, name in ours:
            if part[f"{p}_speedup"].notna().any():
                claims.append(f"in {prec}, the cache speeds {name} up "
                              f"{_per_length(part, f'{p}_speedup')} (cached / uncached)")
    left = df[df["uncached_left_out"] != ""]
    caption = setting + "\n" + what
    if claims:
        caption += "\n" + ". ".join(c[0].upper() + c[1:] for c in claims) + "."
    if len(left):
        caption += (f"\nOurs without the cache was not measured in {len(left)} of {len(df)} "
                    f"cells ({left['uncached_left_out'].iloc[0]}): rerunning the whole prefix "
                    "at every step makes one such call take minutes; '-' in the uncached "
                    "columns.")
    notes = doc.get("precision_notes") or {}
    if (df["precision"] != "fp32").any() and notes:
        caption += "\n" + "; ".join(f"{dict(DECODE_PEERS).get(p, 'Hugging Face')}: {v}"
                                    for p, v in notes.items()) + "."
    caption += f"\nSource: {doc.get('source', 'decode-speed table')}."
    return Panel(key, title, caption, None, df.assign(trace="decode-speed"),
                 body=table(cells, header))
