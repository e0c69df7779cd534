"""Runs over time, read from the records: learning curves, time to a target, training FLOPs, the
learning-rate grid and its choice, the compute frontier.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from . import tables


def curve_points(row) -> list[dict]:
    pts = row.get("curve_pts") if hasattr(row, "get") else None
    return pts if isinstance(pts, list) else tables.parse_curve(row["curve"])


def as_float(v) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return math.nan
    return f


def best_val_of(points: list[dict], fallback=math.nan) -> float:
    """The best validation accuracy on a curve (else the record's best_val_acc)."""
    accs = [a for a in (as_float(p.get("val_acc")) for p in points) if math.isfinite(a)]
    if accs:
        return max(accs)
    v = as_float(fallback)
    return v if math.isfinite(v) else math.nan


def time_to(row, target: float) -> float:
    """Seconds from the run's start until val_acc first reached `target`; inf if never."""
    return time_to_of(curve_points(row), target)


def time_to_of(points: list[dict], target: float) -> float:
    for p in points:
        acc, t = as_float(p.get("val_acc")), as_float(p.get("elapsed_s"))
        if math.isfinite(acc) and math.isfinite(t) and acc >= target:
            return t
    return math.inf


def target_accuracy(df: pd.DataFrame, family: str, dataset: str,
                    size: str | None = None) -> tuple[float, float]:
    """(target, best mean val accuracy) for time-to-target in a family/dataset (at a size).

    Taken among the configurations compared (one size of the sweep), so the best of them
    reaches the target in most of its seeds and the figure separates fast from slow; a
    target set by a larger size would be out of reach of the whole sweep.
    """
    rows = tables.ok_rows(df)
    rows = rows[(rows["family"] == family) & (rows["dataset"] == dataset)]
    if size is not None:
        rows = rows[rows["size"] == size]
    if rows.empty:
        return math.nan, math.nan
    best = pd.Series([best_val_of(p, b) for p, b in zip(rows["curve_pts"],
                                                         rows["best_val_acc"], strict=True)],
                     index=rows.index)
    keyed = pd.Series([(f, sz, *rc) for f, sz, rc in zip(rows["framework"], rows["size"],
                                                         rows["recipe"], strict=True)],
                      index=rows.index)
    mean = best.groupby(keyed).mean()
    top = float(mean.max()) if mean.notna().any() else math.nan
    return tables.TARGET_FRACTION * top, top


def curve_flops(row) -> list[tuple[float, float, float]]:
    """(epoch, training FLOPs spent so far, val_acc) per curve point with a finite val_acc.

    FLOPs = train_flops_per_sample x cumulative samples (else step x effective batch); NaN
    where neither was recorded.
    """
    fps = as_float(row["train_flops_per_sample"])
    batch = as_float(row["batch_size_effective"])
    out = []
    for p in curve_points(row):
        e, acc = as_float(p.get("epoch")), as_float(p.get("val_acc"))
        if not (math.isfinite(e) and math.isfinite(acc)):
            continue
        samples = as_float(p.get("samples"))
        if not math.isfinite(samples):
            samples = as_float(p.get("step")) * batch
        out.append((e, fps * samples, acc))
    return out


def run_flops(row) -> float:
    """Training FLOPs the run spent: flops_spent, else its curve's last point."""
    v = as_float(row["flops_spent"])
    if math.isfinite(v):
        return v
    pts = [f for _, f, _ in curve_flops(row) if math.isfinite(f)]
    return pts[-1] if pts else math.nan


def lr_units(df: pd.DataFrame, family: str, dataset: str) -> list[dict]:
    """The learning-rate grids of a family/dataset, one per unit (size, optimizer).

    A grid is every run with lr_role 'grid' at the unit's smallest grid seed, in the
    framework and with the regulariser of those runs, plus the 'chosen' run at that seed,
    framework and regulariser; one run per lr (a chosen one wins a tie). Each entry:
    size, optimizer, regulariser, framework, seed, params, k (lr_grid_size, else the runs
    found), chosen (the chosen lr, NaN when the runs disagree or none is marked) and
    members (those runs, by lr).
    """
    rows = df[(df["family"] == family) & (df["dataset"] == dataset) & (df["tuned"] == "")]
    # `lr_grid_run` (from the selection files) names the grid's runs exactly; a race's
    # winner is one of them although the study's own run at that rate is not.
    marked = "lr_grid_run" in rows and rows["lr_grid_run"].astype(str).isin(["True", "1"]).any()
    is_grid = (rows["lr_grid_run"].astype(str).isin(["True", "1"]) if marked
               else rows["lr_role"] == "grid")
    grid = rows[is_grid]
    out = []
    for (size, opt), g in grid.groupby(["size", "optimizer"], sort=False):
        seed = g["seed"].min()
        at = g[g["seed"] == seed]
        fw = at["framework"].mode().iloc[0]
        reg = at.loc[at["framework"] == fw, "regulariser"].mode().iloc[0]
        unit = rows[(rows["size"] == size) & (rows["optimizer"] == opt)
                    & rows["lr_role"].isin([tables.LR_CHOSEN, "grid"])]
        members = unit[(unit["seed"] == seed) & (unit["framework"] == fw)
                       & (unit["regulariser"] == reg)]
        if marked:
            members = members[is_grid.loc[members.index]]
        members = (members.assign(_c=members["lr_role"] != tables.LR_CHOSEN)
                   .sort_values(["lr", "_c"]).drop_duplicates("lr").drop(columns="_c"))
        chosen = set(unit.loc[unit["lr_role"] == tables.LR_CHOSEN, "lr"].dropna())
        k = members["lr_grid_size"].max()
        out.append({"size": size, "optimizer": opt, "regulariser": reg, "framework": fw,
                    "seed": int(seed), "params": float(unit["params"].median()),
                    "k": int(k) if math.isfinite(k) and k > 0 else len(members),
                    "chosen": chosen.pop() if len(chosen) == 1 else math.nan,
                    "members": members.reset_index(drop=True)})
    return sorted(out, key=lambda u: (tables.size_rank(u["size"]), u["optimizer"]))


def grid_scores(members: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """(best validation accuracy, test accuracy) of each grid run; a failed run at chance."""
    val = pd.Series([as_float(b) if math.isfinite(as_float(b)) else best_val_of(p)
                     for b, p in zip(members["best_val_acc"], members["curve_pts"],
                                     strict=True)], index=members.index)
    failed = members["status"].isin(tables.FAILED)
    return (val.where(~failed, members["chance"]),
            tables.metric_values(members, "test_acc"))


def _pick(lrs, scores) -> float:
    """The lr with the best score; a tie goes to the smaller lr (as the selection does)."""
    cand = [(s if math.isfinite(s) else -math.inf, -lr, lr) for lr, s in zip(lrs, scores,
                                                                            strict=True)]
    return max(cand)[2] if cand else math.nan


def validation_pick(unit: dict) -> float:
    """The lr with the best final validation accuracy in the unit's grid."""
    m = unit["members"]
    val = [as_float(b) if m.loc[i, "status"] == "ok" else -math.inf
           for i, b in zip(m.index, grid_scores(m)[0], strict=True)]
    return _pick(m["lr"], val)


def race_pick(unit: dict, fraction: float) -> tuple[float, float, float]:
    """(lr a race stopped at `fraction` of the epoch cap would pick, FLOPs it spends, FLOPs
    the full grid spent).

    At epoch ceil(fraction x cap) (at least 1) every run is scored by its best validation
    accuracy so far; a run that stopped earlier keeps its last best, one that failed before
    scores nothing. Its compute is what each run spent up to that epoch.
    """
    m = unit["members"]
    cap = m["epochs"].max()
    if not math.isfinite(cap):
        cap = max((len(p) for p in m["curve_pts"]), default=0)
    cut = max(1, math.ceil(fraction * cap))
    scores, race, full = [], 0.0, 0.0
    for r in m.to_dict("records"):
        pts = [p for p in curve_flops(r) if p[0] <= cut]
        scores.append(max((a for _, _, a in pts), default=-math.inf))
        spent = run_flops(r)
        upto = pts[-1][1] if pts else 0.0
        if math.isfinite(spent):
            full += spent
            race += min(upto, spent) if math.isfinite(upto) else spent
    return _pick(m["lr"], scores), race, full


def race_agreement(units: list[dict], fraction: float) -> dict:
    """How often a race stopped at `fraction` of the epochs picks the grid's chosen lr.

    Returns same, cases (units with a chosen lr and at least two rates) and share (the
    race's FLOPs over the full grids' FLOPs; NaN without FLOPs).
    """
    same = cases = 0
    race = full = 0.0
    for u in units:
        final = u["chosen"] if math.isfinite(u["chosen"]) else validation_pick(u)
        if len(u["members"]) < 2 or not math.isfinite(final):
            continue
        lr, r, f = race_pick(u, fraction)
        cases += 1
        same += bool(np.isclose(lr, final, rtol=1e-9, atol=0))
        race, full = race + r, full + f
    return {"fraction": fraction, "same": same, "cases": cases,
            "share": race / full if full > 0 else math.nan}


def compute_points(rows: pd.DataFrame) -> pd.DataFrame:
    """Every curve point of `rows` against training FLOPs: run_id, framework, size, params,
    seed, epoch, flops, val_acc (points without FLOPs left out)."""
    out = []
    for r in rows.to_dict("records"):
        for e, f, a in curve_flops(r):
            if math.isfinite(f) and f > 0:
                out.append({"run_id": r["run_id"], "framework": r["framework"],
                            "size": r["size"], "params": r["params"], "seed": r["seed"],
                            "epoch": e, "flops": f, "val_acc": a})
    return pd.DataFrame(out, columns=["run_id", "framework", "size", "params", "seed", "epoch",
                                      "flops", "val_acc"])


def frontier(points: pd.DataFrame) -> tuple[pd.DataFrame, list[tuple[str, float, float]]]:
    """The compute-efficient frontier over sizes (Kaplan 2020, Hoffmann 2022).

    At each budget C (every FLOPs value on a curve), a size scores the mean over its runs of
    the best validation accuracy reached within C (defined once every run of the size has a
    point within C); the frontier is the best size's score. Returns (flops, val_acc, size
    per budget) and the segments (size, first budget, last budget) over which one size is
    best.
    """
    cols = ["flops", "val_acc", "size"]
    if points.empty:
        return pd.DataFrame(columns=cols), []
    budgets = np.unique(points["flops"].to_numpy(float))
    score = {}
    for size, part in points.groupby("size", sort=False):
        runs = []
        for _, run in part.groupby("run_id", sort=False):
            run = run.sort_values("flops")
            best = np.maximum.accumulate(run["val_acc"].to_numpy(float))
            i = np.searchsorted(run["flops"].to_numpy(float), budgets, side="right") - 1
            runs.append(np.where(i >= 0, best[np.maximum(i, 0)], np.nan))
        score[size] = np.mean(runs, axis=0)  # NaN until every run has a point
    sizes = sorted(score, key=tables.size_rank)
    table = np.vstack([score[s] for s in sizes])
    rows, segs = [], []
    for j, c in enumerate(budgets):
        col = table[:, j]
        if not np.isfinite(col).any():
            continue
        k = int(np.nanargmax(col))  # ties: the smaller size
        rows.append({"flops": float(c), "val_acc": float(col[k]), "size": sizes[k]})
        if segs and segs[-1][0] == sizes[k]:
            segs[-1] = (sizes[k], segs[-1][1], float(c))
        else:
            segs.append((sizes[k], float(c), float(c)))
    return pd.DataFrame(rows, columns=cols), segs
