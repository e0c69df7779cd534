"""Sentences and numbers every page writes the same way: claims with intervals, speed ratios,
counts and units.
"""

from __future__ import annotations

import math

import pandas as pd

from ..study import stats
from . import tables


def status_note(rows: pd.DataFrame) -> str:
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


def n_text(pts: pd.DataFrame) -> str:
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


def counts_text(rows: pd.DataFrame) -> str:
    if rows.empty:
        return "no runs at all"
    c = rows["status"].value_counts()
    return f"{len(rows)} run(s): " + ", ".join(f"{k} {v}" for k, v in c.items())


def pooling_sentence(rows: pd.DataFrame,
                     apart: str = "throughput and memory stay per framework",
                     shown: str = " (the black line)", by: tuple = ("size",),
                     what: str = "sizes", label: str = "Accuracy") -> str:
    """What was pooled over frameworks in a figure's accuracy (`label`: the family's name for
    it), and why.

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
        return (f"{label} is also pooled over the frameworks{shown}, whose seeds are "
                f"disjoint ({seeds}); {apart}.")
    if pooled:
        return (f"{label} is pooled over the frameworks{shown} at {len(pooled)} of "
                f"{len(cells)} {what} ({', '.join(pooled)}), where their seeds are disjoint; "
                f"elsewhere they share seeds ({seeds}), and one seed gives the same losses in "
                f"both frameworks, so those runs are not independent and are not pooled.")
    return (f"{label} is not pooled over the frameworks: they share seeds ({seeds}), and one "
            f"seed gives the same losses in both, so their runs are not independent.")
