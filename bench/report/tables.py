"""Summary table -> the tidy tables behind every figure (no plotting here).

Rules, all data-driven (the records carry no tags saying which sweep a run belongs to):

- Study runs (`study_rows`): ``tuned`` empty (runs with a tuning study's best parameters are
  shown on the tuning page only) and ``lr_role`` not ``grid`` (a learning rate tried on
  validation and not chosen appears only in the learning-rate figures).
- What enters a statistic: for accuracy every study run of a cell, an ``ok`` run at its test
  accuracy and a ``diverged``/``oom``/``error`` run at chance accuracy (1 / n_classes; 0 for
  the exact match of a generating family such as seq2seq, whose accuracy it is), so a
  recipe that often fails is not flattered by dropping its failures; ``pruned`` runs have no
  test accuracy and are left out (counted). Throughput and memory use ``ok`` runs only; the
  failures are counted in the captions.
- Per-point summary: the mean over seeds with its Student-t interval (`stats.mean_t_ci`),
  intersected with the metric's range (`metric_range`), and no interval but the values
  themselves below `stats.MIN_INTERVAL_N` seeds.
- Pooling: where the seeds of a cell are disjoint between frameworks (the default study gives
  each framework its own seeds), its accuracy is also pooled over the frameworks, as one more
  sample of the same model; throughput and memory never are. Where seeds overlap (the parity
  test shows one seed gives the same losses in both frameworks) nothing is pooled.
- Scale figure of a family/dataset: the recipe (optimizer, regulariser, lr, batch size,
  epochs, step cap) with the most distinct sizes among its runs (ties: more runs, then name
  order). A run whose lr was chosen on validation (``lr_role`` set) has the recipe lr
  ``chosen``: each size has its own, and the recipe is the same.
- Optimizer x regulariser figure: the size with the most (optimizer, regulariser) cells.
- Time-to-target: the first ``elapsed_s`` of a run's curve at which ``val_acc`` reaches
  ``TARGET_FRACTION`` of the best mean (over seeds) validation accuracy of any configuration
  of that family and dataset at the sweep's size; runs that never reach it count as
  infinitely slow.
- Learning-rate grid of a unit (family, dataset, size, optimizer): the runs with ``lr_role``
  ``grid`` and, at the same seed, framework and regulariser, the ``chosen`` one.
- Compute: a curve point's training FLOPs are ``train_flops_per_sample`` x its cumulative
  ``samples``; a run's are ``flops_spent``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..sizes import SIZE_NAMES
from ..study import stats

STATUSES = ("ok", "diverged", "oom", "pruned", "error")
FAILED = ("diverged", "oom", "error")  # count against accuracy, at chance
DEFAULT_CLASSES = 10  # chance accuracy 1/10 when a record does not say how many classes
RECIPE = ["optimizer", "regulariser", "lr", "batch_size", "epochs", "max_steps"]
LR_CHOSEN = "chosen"  # the recipe's lr where it was chosen per size on validation
# Accuracies: failed runs count at chance, and they pool over frameworks with disjoint seeds.
# A translation's accuracy is its exact match (greedy or beam, test or test_long).
EXACT_MATCH_METRICS = ("exact_match", "exact_match_long", "beam_exact_match",
                       "beam_exact_match_long")
ACCURACY_METRICS = ("test_acc", "val_acc", "best_val_acc", *EXACT_MATCH_METRICS)
# Families that generate sequences: chance of an exact match is 0, not 1 / n_classes (their
# n_classes is the vocabulary, the output layer's width).
GENERATION_FAMILIES = ("seq2seq",)
# Where a metric lives: its intervals never leave this range (`mean_ci`). sacrebleu scores
# BLEU and chrF on 0-100.
SCORE_METRICS = tuple(f"{b}{m}{t}" for b in ("", "beam_") for m in ("bleu", "chrf")
                      for t in ("", "_long"))
POOLED = "pooled"  # the framework label of a point pooled over frameworks
TARGET_FRACTION = 0.9
RACE_FRACTIONS = (0.25, 0.5)
FRAMEWORK_NAMES = {"torch": "PyTorch", "tf": "TensorFlow", POOLED: "pooled"}


# Columns the report reads; missing ones are added empty so partial tables still render.
TEXT_COLUMNS = ["run_id", "status", "message", "family", "framework", "dataset", "size",
                "optimizer", "regulariser", "tuned", "device", "device_name", "curve",
                "framework_version", "python_version", "platform", "cpu_model", "hostname",
                "bench_version", "batch_size", "started_at", "stop_reason", "lr_role",
                "examples", "precision", "compile", "compile_used", "tf32", "conv_autotune",
                "lr_grid_run"]
NUMBER_COLUMNS = ["params", "seed", "test_acc", "val_acc", "best_val_acc", "train_samples_per_s",
                  "infer_samples_per_s", "peak_rss_mb", "peak_device_mem_mb", "wall_s", "lr",
                  "epochs", "max_steps", "threads", "cpu_count", "load_avg_1m_start",
                  "train_flops_per_sample", "steps_run", "batch_size_effective", "epochs_run",
                  "steps_per_call",
                  "best_epoch", "model_mem_mb", "model_mem_est_mb", "rss_start_mb",
                  "flops_spent", "lr_grid_size", "n_classes", "n_val", "converged",
                  # seq2seq: translation quality (greedy and beam, test and test_long),
                  # decoding speed and training throughput in tokens
                  "exact_match", "bleu", "chrf", "exact_match_long", "bleu_long", "chrf_long",
                  "beam_exact_match", "beam_bleu", "beam_chrf", "beam_exact_match_long",
                  "beam_bleu_long", "beam_chrf_long", "beam_width", "length_penalty",
                  "decode_tokens_per_s", "decode_tokens_per_s_min", "decode_tokens_per_s_max",
                  "decode_batch", "decode_latency_ms", "decode_latency_ms_p90",
                  "train_tokens_per_s",
                  # compile: best's probe (bench.compile_choice), both modes
                  "compile_probe.eager_samples_per_s", "compile_probe.compiled_samples_per_s"]


def framework_name(fw: str) -> str:
    return FRAMEWORK_NAMES.get(fw, fw)


def framework_rank(fw: str) -> tuple:
    """PyTorch first, then TensorFlow, then anything else by name, the pooled line last."""
    order = [f for f in FRAMEWORK_NAMES if f != POOLED]
    if fw == POOLED:
        return (len(order) + 1, fw)
    return (order.index(fw) if fw in order else len(order), fw)


def load_summary(path: str | Path) -> pd.DataFrame:
    """The aggregate table (parquet or CSV), normalised: every column the report reads exists."""
    path = Path(path)
    df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    return normalise(df)


def _flag(v) -> float:
    """A boolean column as 1.0 / 0.0, NaN where unknown (a failed run, an older record)."""
    if isinstance(v, str):
        return {"true": 1.0, "false": 0.0, "1": 1.0, "0": 0.0}.get(v.strip().lower(), math.nan)
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return math.nan
    try:
        return 1.0 if bool(v) else 0.0
    except (TypeError, ValueError):
        return math.nan


def normalise(df: pd.DataFrame) -> pd.DataFrame:
    # Only the columns the report reads: every filter below copies the columns it keeps.
    df = df[[c for c in df.columns if c in TEXT_COLUMNS or c in NUMBER_COLUMNS]].copy()
    for c in TEXT_COLUMNS:
        if c not in df.columns:
            df[c] = ""
        df[c] = df[c].map(lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v))
                          else str(v)).astype(object)
    if "converged" in df.columns:
        df["converged"] = df["converged"].map(_flag)
    for c in NUMBER_COLUMNS:
        if c not in df.columns:
            df[c] = np.nan
        df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
    df["status"] = df["status"].replace("", "error")
    df["curve_pts"] = pd.Series([parse_curve(c) for c in df["curve"]], index=df.index,
                                dtype=object)
    df["recipe"] = pd.Series([recipe_key(r) for r in df[RECIPE + ["lr_role"]]
                              .to_dict("records")], index=df.index, dtype=object)
    classes = df["n_classes"].where(df["n_classes"] >= 2, DEFAULT_CLASSES)
    # a generated sentence is right or wrong as a whole: an exact match by chance is 0
    df["chance"] = (1.0 / classes).where(~df["family"].isin(GENERATION_FAMILIES), 0.0)
    df["acc_stat"] = df["test_acc"].where(df["status"] == "ok",
                                          df["chance"].where(df["status"].isin(FAILED)))
    df["size_order"] = df["size"].map(size_rank)
    return df.reset_index(drop=True)


def size_rank(size: str) -> int:
    return SIZE_NAMES.index(size) if size in SIZE_NAMES else len(SIZE_NAMES)


def study_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The study's own runs (any status): no tuned run, no learning rate that lost its grid."""
    return df[(df["tuned"] == "") & (df["lr_role"] != "grid")]


def ok_rows(df: pd.DataFrame, tuned: bool = False) -> pd.DataFrame:
    """Successful study runs, or with tuned=True only the tuned ones."""
    ok = df[df["status"] == "ok"]
    return ok[ok["tuned"] != ""] if tuned else study_rows(ok)


def recipe_key(row) -> tuple:
    """(optimizer, regulariser, lr, batch size, epochs, step cap) as text; the lr is
    `LR_CHOSEN` where it was chosen on validation (each size has its own)."""
    if "recipe" in row and isinstance(row["recipe"], tuple):
        return row["recipe"]
    role = row.get("lr_role", "") if hasattr(row, "get") else ""
    return tuple(LR_CHOSEN if c == "lr" and role not in ("", None) else str(row[c])
                 for c in RECIPE)


def recipe_label(recipe: tuple) -> str:
    d = dict(zip(RECIPE, recipe, strict=True))
    if d["lr"] == LR_CHOSEN:
        return f"{d['optimizer']} + {d['regulariser']}, lr chosen per size on validation"
    return f"{d['optimizer']} (lr {d['lr']}) + {d['regulariser']}"


def run_label(row) -> str:
    """Short human label of a run: 'torch s adam+dropout seed 1'."""
    seed = row["seed"]
    seed = int(seed) if isinstance(seed, float) and math.isfinite(seed) else seed
    tuned = f" tuned:{row['tuned']}" if row.get("tuned") else ""
    lr = row.get("lr")
    lr = f" lr {lr:g}" if row.get("lr_role") and isinstance(lr, float) and math.isfinite(lr) \
        else ""
    return (f"{row['framework']} {row['size']} {row['optimizer']}+{row['regulariser']}{lr} "
            f"seed {seed}{tuned}")


def groups(df: pd.DataFrame) -> list[tuple[str, str]]:
    """(family, dataset) pairs present in the table, in registry order."""
    from ..registry import FAMILIES

    pairs = df[["family", "dataset"]].drop_duplicates().itertuples(index=False)
    rank = {f: i for i, f in enumerate(FAMILIES)}
    return sorted(((f, d) for f, d in pairs), key=lambda p: (rank.get(p[0], 99), p[0], p[1]))


def scale_selection(df: pd.DataFrame, family: str, dataset: str) -> tuple[tuple, pd.DataFrame]:
    """(recipe, all of its study runs, any status) for the scale figure of a family/dataset."""
    rows = study_rows(df)
    rows = rows[(rows["family"] == family) & (rows["dataset"] == dataset)]
    if rows.empty:
        return (), rows
    best = None
    for key in sorted(set(rows["recipe"])):
        part = rows[rows["recipe"] == key]
        score = (part["size"].nunique(), len(part))
        if best is None or score > best[0]:
            best = (score, key)
    key = best[1]
    return key, rows[rows["recipe"] == key]


def sweep_selection(df: pd.DataFrame, family: str, dataset: str) -> tuple[str, pd.DataFrame]:
    """(size, all of its study runs, any status) for the optimizer x regulariser figures."""
    rows = study_rows(df)
    rows = rows[(rows["family"] == family) & (rows["dataset"] == dataset)]
    if rows.empty:
        return "", rows
    best = None
    for size, part in rows.groupby("size", sort=False):
        cells = part[["optimizer", "regulariser"]].drop_duplicates().shape[0]
        score = (cells, len(part), -size_rank(size))
        if best is None or score > best[0]:
            best = (score, size)
    return best[1], rows[rows["size"] == best[1]]


# ---------------------------------------------------------------------------- statistics


def metric_values(rows: pd.DataFrame, metric: str) -> pd.Series:
    """What a statistic of `metric` averages: accuracy of every run (failures at chance,
    pruned runs NaN), any other metric of ok runs only (NaN elsewhere)."""
    ok = rows["status"] == "ok"
    if metric == "test_acc":
        return rows["acc_stat"]
    if metric in ACCURACY_METRICS:
        return rows[metric].where(ok, rows["chance"].where(rows["status"].isin(FAILED)))
    return rows[metric].where(ok)


def metric_range(metric: str) -> tuple[float, float] | None:
    """The range a metric's values (and so its mean) live in; None where unbounded."""
    if metric in ACCURACY_METRICS:
        return (0.0, 1.0)
    if metric in SCORE_METRICS:
        return (0.0, 100.0)
    if metric.endswith("_per_s"):  # a rate is never below 0 (noisy runs gave -10k samples/s)
        return (0.0, math.inf)
    return None


def diff_range(metric: str) -> tuple[float, float] | None:
    """The range of a difference of two values of `metric` (accuracy: [-1, 1])."""
    r = metric_range(metric)
    return None if r is None else (r[0] - r[1], r[1] - r[0])


def mean_ci(values, metric: str) -> stats.Interval:
    """`stats.mean_t_ci` of `values` of `metric`, inside the metric's range."""
    return stats.mean_t_ci(values, bounds=metric_range(metric))


def diff_ci(a, b, metric: str) -> stats.Interval:
    """`stats.diff_t_ci` of two samples of `metric`, inside the difference's range."""
    return stats.diff_t_ci(a, b, bounds=diff_range(metric))


def n_failed(rows: pd.DataFrame) -> int:
    return int(rows["status"].isin(FAILED).sum())


def seeds_of(rows: pd.DataFrame) -> list[int]:
    return sorted({int(s) for s in rows["seed"].dropna()})


def seeds_disjoint(rows: pd.DataFrame) -> bool:
    """True when the rows hold two or more frameworks and no seed is in two of them."""
    by = [set(seeds_of(part)) for _, part in rows.groupby("framework")]
    if len(by) < 2:
        return False
    return len(set().union(*by)) == sum(len(s) for s in by)


POINT_COLUMNS = ["framework", "size", "params", "mean", "ci_lo", "ci_hi", "n_seeds", "n_runs",
                 "n_failed", "seeds"]


def _point(part: pd.DataFrame, metric: str, fw: str, size: str) -> dict:
    iv = mean_ci(metric_values(part, metric), metric)
    return {"framework": fw, "size": size, "params": float(part["params"].median()),
            "mean": iv.value, "ci_lo": iv.lo, "ci_hi": iv.hi, "n_seeds": iv.n,
            "n_runs": len(part), "n_failed": n_failed(part), "seeds": seed_text(seeds_of(part))}


def scale_points(rows: pd.DataFrame, metric: str, pool: bool = True) -> pd.DataFrame:
    """Mean and t-interval over seeds of `metric` per framework and size (`mean_ci`).

    Accuracy metrics count failed runs at chance and add a `POOLED` row for every size whose
    frameworks ran disjoint seeds (with pool=True); other metrics use ok runs only and are
    never pooled. Points without any value are left out.
    """
    out = [_point(part, metric, fw, size)
           for (fw, size), part in rows.groupby(["framework", "size"], sort=False)]
    if pool and metric in ACCURACY_METRICS:
        out += [_point(part, metric, POOLED, size)
                for size, part in rows.groupby("size", sort=False) if seeds_disjoint(part)]
    res = pd.DataFrame(out, columns=POINT_COLUMNS)
    res = res[np.isfinite(res["mean"].astype(float))]
    res = res.assign(_fw=res["framework"].map(framework_rank))
    return res.sort_values(["_fw", "params"]).drop(columns="_fw").reset_index(drop=True)


def fit_clusters(rows: pd.DataFrame) -> pd.Series:
    """The cluster of each run in a power-law fit: its framework and seed."""
    seed = rows["seed"].map(lambda s: f"{int(s)}" if math.isfinite(s) else "?")
    return rows["framework"] + ":" + seed


def cap_counts(rows: pd.DataFrame) -> tuple[int, int]:
    """(ok runs that ended at their epoch cap still improving, ok runs that recorded it)."""
    ok = rows[(rows["status"] == "ok") & rows["converged"].notna()]
    return int((ok["converged"] == 0).sum()), len(ok)


def cap_phrase(rows: pd.DataFrame, capital: bool = False) -> str:
    """'x of y runs ended at their epoch cap still improving' (or why it is unknown);
    capital=True starts it with a capital letter, for the start of a sentence."""
    still, known = cap_counts(rows)
    text = (f"{still} of {known} runs ended at their epoch cap still improving" if known
            else "whether runs converged was not recorded")
    return text[:1].upper() + text[1:] if capital else text


def failed_phrase(rows: pd.DataFrame, counted: bool = True) -> str:
    """'k of n runs failed (counted at chance accuracy)' plus any pruned runs (left out:
    no test accuracy); '' when every run is ok."""
    k = n_failed(rows)
    pruned = int((rows["status"] == "pruned").sum())
    how = "counted at chance accuracy" if counted else "excluded"
    parts = [f"{k} of {len(rows)} runs failed ({how})"] if k else []
    if pruned:
        parts.append(f"{pruned} of {len(rows)} runs pruned (left out)")
    return "; ".join(parts)


def best_vs_runner_up(rows: pd.DataFrame, keys: list[str],
                      metric: str = "test_acc") -> dict | None:
    """The best and second-best cell of `rows` grouped by `keys`, by mean `metric`.

    Returns best, runner (the key tuples), their means and `diff`, the Welch t-interval of
    best - runner (failures at chance for accuracy); None with fewer than two cells.
    """
    vals = metric_values(rows, metric)
    cells = []
    for key, part in rows.groupby(keys, sort=False):
        v = vals.loc[part.index].dropna()
        if len(v):
            cells.append((float(v.mean()), key if isinstance(key, tuple) else (key,), v))
    if len(cells) < 2:
        return None
    cells.sort(key=lambda c: -c[0])
    (m1, k1, v1), (m2, k2, v2) = cells[:2]
    return {"best": k1, "runner": k2, "best_mean": m1, "runner_mean": m2,
            "diff": diff_ci(v1, v2, metric), "n_cells": len(cells)}


# ---------------------------------------------------------------------------- curves


# ---------------------------------------------------------------------------- lr grid


# ---------------------------------------------------------------------------- frontier


# ---------------------------------------------------------------------------- overview


# ---------------------------------------------------------------------------- formatting


def claim(a: str, b: str, iv: stats.Interval, unit: str = "") -> str:
    """'a beats b by +0.031 (95% CI [0.012, 0.050])' where the interval excludes zero, else
    'no clear winner: a and b overlap (difference +0.004, 95% CI [-0.01, 0.02])'."""
    if not math.isfinite(iv.value):
        return f"{a} and {b}: no comparison"
    ci = (f"95% CI [{iv.lo:+.3f}, {iv.hi:+.3f}]" if iv.has_ci
          else f"n = {iv.n}: no interval")
    if iv.excludes_zero:
        win, lose, d = (a, b, iv.value) if iv.value > 0 else (b, a, -iv.value)
        lo, hi = (iv.lo, iv.hi) if iv.value > 0 else (-iv.hi, -iv.lo)
        return f"{win} beats {lose} by {d:+.3f}{unit} (95% CI [{lo:+.3f}, {hi:+.3f}])"
    return f"no clear winner: {a} and {b} overlap (difference {iv.value:+.3f}{unit}, {ci})"


def seed_text(seeds: list[int]) -> str:
    """[0, 1, 2] -> '0-2', [0, 2] -> '0, 2'."""
    if not seeds:
        return "none"
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]}"
    return ", ".join(map(str, seeds))


def fmt_count(x: float) -> str:
    """1234 -> '1.2k', 2500000 -> '2.5M'."""
    if x is None or not math.isfinite(x):
        return "n/a"
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.3g}{unit}"
    return f"{x:.0f}"


def fmt_num(x: float, digits: int = 3) -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def fmt_ci(iv: stats.Interval, fmt=fmt_num) -> str:
    """'0.912 [0.871, 0.953]'; below the interval's minimum n the values themselves:
    '0.724 (n=2: 0.70, 0.748; too few for an interval)'."""
    if not iv.has_ci:
        if len(iv.values) > 1:
            return (f"{fmt(iv.value)} (n={iv.n}: {', '.join(fmt(v) for v in iv.values)}; "
                    f"too few for an interval)")
        return f"{fmt(iv.value)} (n={iv.n}, no interval)"
    return f"{fmt(iv.value)} [{fmt(iv.lo)}, {fmt(iv.hi)}]"


def fmt_seconds(s: float) -> str:
    if s is None or not math.isfinite(s):
        return "n/a"
    if s >= 3600:
        return f"{s / 3600:.2f} h"
    if s >= 60:
        return f"{s / 60:.1f} min"
    return f"{s:.1f} s"


def parse_curve(text) -> list[dict]:
    """The learning curve of a row (JSON text in the table; a list when built in memory)."""
    if isinstance(text, list):
        return [p for p in text if isinstance(p, dict)]
    if not isinstance(text, str) or not text.strip():
        return []
    try:
        curve = json.loads(text)
    except ValueError:
        return []
    return [p for p in curve if isinstance(p, dict)] if isinstance(curve, list) else []
