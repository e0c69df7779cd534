"""Each tuning study judged: its best parameters' final runs (summary rows with `tuned` =
the study) against its cell's baseline, the untuned runs the scale figure draws at that size
(`tables.scale_selection`), per framework and pooled; the tuning page and the overview's
headline state the same verdicts."""

from __future__ import annotations

import math

import pandas as pd

from ..study import stats
from . import tables, tuning_studies


def cell_label(cell: dict) -> str:
    if not cell:
        return "cell not recorded"
    return (f"{cell.get('family')} {cell.get('size')} on {cell.get('dataset')}, trials in "
            f"{tables.framework_name(cell.get('framework', ''))}")


# ---------------------------------------------------------------------------- judgement


def verdict(iv: stats.Interval) -> tuple[str, str]:
    """(kind, text): 'gain' where the interval of tuned - baseline lies above zero, 'worse'
    where it lies below, else 'unclear' (also with fewer than MIN_INTERVAL_N runs a side)."""
    if not math.isfinite(iv.value):
        return "none", "no comparison"
    if not iv.has_ci or iv.n < stats.MIN_INTERVAL_N:
        return "unclear", (f"no clear gain ({iv.value:+.3f}; n = {iv.n}: too few runs for an "
                           f"interval)")
    ci = f"{iv.value:+.3f} [{iv.lo:+.3f}, {iv.hi:+.3f}]"
    if iv.lo > 0:
        return "gain", f"tuning bought {ci}"
    if iv.hi < 0:
        return "worse", f"tuning made it worse: {ci}"
    return "unclear", f"no clear gain ({ci})"


def _sides(a: pd.DataFrame, b: pd.DataFrame) -> list[tuple[str, pd.DataFrame, pd.DataFrame]]:
    """(framework, a's rows, b's rows) per framework present in both, then pooled where each
    side's frameworks ran disjoint seeds (as the scale page pools)."""
    fws = sorted(set(a["framework"]) & set(b["framework"]), key=tables.framework_rank)
    out = [(fw, a[a["framework"] == fw], b[b["framework"] == fw]) for fw in fws]
    if len(fws) > 1 and tables.seeds_disjoint(a) and tables.seeds_disjoint(b):
        out.append((tables.POOLED, a[a["framework"].isin(fws)], b[b["framework"].isin(fws)]))
    return out


def compare(a: pd.DataFrame, b: pd.DataFrame) -> list[dict]:
    """Test accuracy of `a` against `b` (failures at chance), per framework and pooled."""
    out = []
    for fw, x, y in _sides(a, b):
        va, vb = tables.metric_values(x, "test_acc"), tables.metric_values(y, "test_acc")
        diff = tables.diff_ci(va, vb, "test_acc")
        out.append({"framework": fw, "a": tables.mean_ci(va, "test_acc"),
                    "b": tables.mean_ci(vb, "test_acc"), "diff": diff, "n_a": len(x),
                    "n_b": len(y), "seeds_a": tables.seed_text(tables.seeds_of(x)),
                    "seeds_b": tables.seed_text(tables.seeds_of(y)),
                    "failed": tables.n_failed(x) + tables.n_failed(y),
                    "verdict": verdict(diff)})
    return out


def own_runs(df: pd.DataFrame, name: str, size: str) -> pd.DataFrame:
    """The final runs of study `name` at its own cell's size."""
    return df[(df["tuned"] == name) & (df["size"] == size)]


def baseline_runs(df: pd.DataFrame, cell: dict) -> pd.DataFrame:
    """The untuned runs the scale figure draws at the cell's size."""
    _, rows = tables.scale_selection(df, cell.get("family", ""), cell.get("dataset", ""))
    return rows[rows["size"] == cell.get("size")]


def judge(df: pd.DataFrame, st: tuning_studies.Study) -> list[dict]:
    """The study's final runs against its cell's baseline (`compare`)."""
    cell = st.cell
    if not cell or df.empty:
        return []
    return compare(own_runs(df, st.name, cell["size"]), baseline_runs(df, cell))


def verdict_line(st: tuning_studies.Study, res: list[dict], pooled_only: bool = False) -> str:
    """One study's verdicts, per framework and pooled (`pooled_only`: the pooled one where
    there is one, as the overview states it)."""
    if not res:
        why = (st.problem if st.problem else "its cell is not recorded" if not st.cell else
               "no final runs with its parameters, or no baseline runs at that size")
        return f"{st.name}: not judged ({why})"
    pooled = [r for r in res if r["framework"] == tables.POOLED]
    shown = pooled if pooled_only and pooled else res
    text = f"{cell_label(st.cell)}: " + "; ".join(
        f"{tables.framework_name(r['framework'])} {r['verdict'][1]}" for r in shown)
    # a pooled verdict one framework does not share would mislead its users
    apart = [r for r in res if shown == pooled and r["framework"] != tables.POOLED
             and r["verdict"][0] != pooled[0]["verdict"][0]]
    if apart:
        text += " (" + "; ".join(f"{tables.framework_name(r['framework'])} alone: "
                                 f"{r['verdict'][1]}" for r in apart) + ")"
    return text


def headline(df: pd.DataFrame, studies: list[tuning_studies.Study]) -> str | None:
    """The overview's tuning finding: what each study's best parameters bought over the
    untuned runs of the same cell, on fresh seeds; None without studies."""
    if not studies:
        return None
    return ("Tuning (each Optuna study's best parameters on fresh seeds against the untuned "
            "runs of the same cell, tuned − baseline test accuracy with its 95% Welch "
            "interval, pooled over frameworks where their seeds are disjoint; a gain only "
            "where the interval excludes zero): "
            + "; ".join(verdict_line(st, judge(df, st), pooled_only=True) for st in studies)
            + ". The tuning page has every framework, the costs and the transfer check.")
