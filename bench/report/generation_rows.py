"""What the Generation page's panels share: test sets, metrics, per-size points and the sentences
that describe them.
"""

from __future__ import annotations

import math

import pandas as pd

from ..study import stats
from . import plots, tables

TEST_SETS = (("", "test"), ("_long", "test_long"))


QUALITY = (("exact_match", "exact match", "{:.3f}"), ("bleu", "BLEU", "{:.1f}"),
           ("chrf", "chrF", "{:.1f}"))


SPEED = (("decode_tokens_per_s", "decode throughput", "generated tokens/s"),
         ("decode_latency_ms", "latency per sentence", "ms"))


SET_DASH = {"test": "solid", "test_long": "dash"}


def groups(df: pd.DataFrame) -> list[tuple[str, str]]:
    """(family, dataset) pairs of the generating families, in registry order."""
    return [(f, d) for f, d in tables.groups(df) if f in tables.GENERATION_FAMILIES]


def test_sets_text(dataset: str) -> str:
    """What the two test sets hold, in words (from the dataset's definition when known)."""
    try:
        from ..translation.text_pairs import PAIRS
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


def setting(rows: pd.DataFrame, col: str, default: float) -> float:
    v = rows[col].dropna()
    return float(v.median()) if len(v) else default


def label(rows: pd.DataFrame, size: str) -> str:
    return f"{size} ({tables.fmt_count(rows.loc[rows['size'] == size, 'params'].median())} params)"


def order(rows: pd.DataFrame) -> list[str]:
    return sorted(set(rows["framework"]) - {""}, key=tables.framework_rank)


def style_of(fw: str, order: list[str]) -> dict:
    """The framework's line as the scale page draws it (the same index in every subplot)."""
    return plots.style(fw, order.index(fw) if fw in order else len(order))


class _Row:
    """`plots.points_trace` draws in row 1: this puts its trace in another row."""

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


def failed_text(rows: pd.DataFrame, counted: str, excluded: str) -> str:
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
    sizes = sorted(set(rows.loc[rows["status"] == "ok", "size"]), key=tables.size_rank)
    if len(sizes) < 2:
        return []
    small, large = sizes[0], sizes[-1]
    a, b = rows[rows["size"] == large], rows[rows["size"] == small]
    if metric in tables.ACCURACY_METRICS and tables.seeds_disjoint(a) and tables.seeds_disjoint(b):
        parts = [(tables.POOLED, a, b)]
    else:
        parts = [(fw, a[a["framework"] == fw], b[b["framework"] == fw]) for fw in order(rows)]
    out = []
    for fw, x, y in parts:
        if x.empty or y.empty:
            continue
        iv = tables.diff_ci(tables.metric_values(x, metric), tables.metric_values(y, metric),
                            metric)
        out.append(f"{tables.framework_name(fw)}, {len(x) + len(y)} runs: "
                   + difference_phrase(label(rows, large), label(rows, small), iv, what))
    return out


def trend(pts: pd.DataFrame, fmt) -> str:
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


def level(pts: pd.DataFrame, size: str, fmt: str) -> str:
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
