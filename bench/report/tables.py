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

from .. import stats
from ..sizes import SIZE_NAMES

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

# Published test accuracies to compare with: Greydanus 2020, "Scaling Down Deep Learning"
# (arXiv:2011.14439), MNIST-1D with 4000 train / 1000 test samples, Adam lr 1e-2, batch 100,
# 6000 steps; CNN 5,210 and GRU 5,134 parameters.
PUBLISHED = {("cnn", "mnist1d"): 0.94, ("gru", "mnist1d"): 0.91}
PUBLISHED_SOURCE = "Greydanus 2020, arXiv:2011.14439"

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
                  "best_epoch", "model_mem_mb", "model_mem_est_mb", "rss_start_mb",
                  "flops_spent", "lr_grid_size", "n_classes", "converged",
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


# What a measurement depends on beyond the model and its training: runs that differ in one
# of these are never drawn side by side (each setting gets its own pages).
SETTING_COLUMNS = ["device", "device_name", "precision", "threads", "compile", "tf32",
                   "conv_autotune"]
SETTING_DEFAULTS = {"precision": "fp32", "compile": "False", "tf32": "False",
                    "conv_autotune": "True"}


def setting_of(row) -> tuple:
    """The measurement setting of one summary row (older records: the defaults)."""
    out = []
    for c in SETTING_COLUMNS:
        v = row[c]
        if c == "threads":
            v = "" if pd.isna(v) else str(int(v))
        out.append(v or SETTING_DEFAULTS.get(c, ""))
    return tuple(out)


def describe_setting(setting: tuple) -> str:
    """'cpu (AMD EPYC ...), fp32, 1 thread' plus compile/tf32/autotune where not default."""
    d = dict(zip(SETTING_COLUMNS, setting, strict=True))
    text = d["device"] or "device not recorded"
    if d["device_name"]:
        text += f" ({d['device_name']})"
    text += f", {d['precision']}"
    if d["threads"]:
        text += f", {d['threads']} thread" + ("" if d["threads"] == "1" else "s")
    text += compile_phrase(d["compile"])
    if d["device"] == "cuda":
        text += (", TF32" if d["tf32"] == "True" else ", no TF32")
        text += ("" if d["conv_autotune"] == "True" else ", no conv autotuning")
    return text


_COMPILE_WORDS = {"True": "compiled", "best": "compile best", "False": "uncompiled"}


def compile_phrase(policy: str) -> str:
    """', compiled' / ', compile best' / ', PyTorch uncompiled, TensorFlow compile best' for a
    setting's compile policy ('' where nothing is compiled)."""
    if "=" not in policy:
        return "" if policy in ("False", "") else f", {_COMPILE_WORDS.get(policy, policy)}"
    parts = dict(p.split("=", 1) for p in policy.split(","))
    return "".join(f", {framework_name(fw)} {_COMPILE_WORDS.get(v, v)}"
                   for fw, v in parts.items())


def _compile_policies(df: pd.DataFrame, keys: pd.Series) -> pd.Series:
    """Each run's setting with its compile mode replaced by its study's policy: where each
    framework ran one mode (config.yaml's per-framework `compile`, e.g. PyTorch eager and
    TensorFlow best), the frameworks share one setting, 'torch=False,tf=best'. A framework
    that ran several modes keeps them apart."""
    at = SETTING_COLUMNS.index("compile")
    base = keys.map(lambda k: k[:at] + k[at + 1:])
    out = keys.copy()
    for b in dict.fromkeys(base):
        rows = base == b
        modes = {fw: set(keys[rows & (df["framework"] == fw)].map(lambda k: k[at]))
                 for fw in set(df.loc[rows, "framework"])}
        if len(set().union(*modes.values())) < 2 or any(len(m) > 1 for m in modes.values()):
            continue
        policy = ",".join(f"{fw}={next(iter(modes[fw]))}"
                          for fw in sorted(modes, key=framework_rank))
        out[rows] = keys[rows].map(lambda k, p=policy: k[:at] + (p,) + k[at + 1:])
    return out


def split_by_setting(df: pd.DataFrame) -> list[tuple[tuple, pd.DataFrame]]:
    """(setting, its runs) for every measurement setting, the one with the most runs first
    (ties: by description).

    Compile modes that differ by framework alone form one policy (`_compile_policies`).
    A run that failed before it measured anything (status error) records no device name:
    it joins the largest setting that agrees with it on the rest, so that its failure is
    listed beside the runs it belongs with."""
    if df.empty:
        return [((), df)]
    keys = _compile_policies(df, df.apply(setting_of, axis=1))
    name = SETTING_COLUMNS.index("device_name")
    measured = [k for k in keys if k[name]]
    sizes = {k: measured.count(k) for k in dict.fromkeys(measured)}

    def home(k: tuple) -> tuple:
        if k[name] or not sizes:
            return k
        rest = [j for j in range(len(k)) if j != name and SETTING_COLUMNS[j] != "device"]
        fits = [m for m in sizes if all(m[j] == k[j] for j in rest)]
        return max(fits, key=lambda m: (sizes[m], m[0] == k[0])) if fits else k

    keys = keys.map(home)
    parts = [(k, df[keys == k]) for k in dict.fromkeys(keys)]
    return sorted(parts, key=lambda p: (-len(p[1]), describe_setting(p[0])))


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
    df["size_order"] = df["size"].map(_size_rank)
    return df.reset_index(drop=True)


def _size_rank(size: str) -> int:
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
        score = (cells, len(part), -_size_rank(size))
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


def seed_text(seeds: list[int]) -> str:
    """[0, 1, 2] -> '0-2', [0, 2] -> '0, 2'."""
    if not seeds:
        return "none"
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]}"
    return ", ".join(map(str, seeds))


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


def published_table(df: pd.DataFrame) -> pd.DataFrame:
    """Our best size beside each published accuracy (`PUBLISHED`), per framework and pooled.

    Per (family, dataset) with a published figure: the scale recipe's runs, for each
    framework and the pooled line, the size with the best mean test accuracy, its t-interval,
    and a verdict: 'reaches' (mean at or above the figure), 'within interval' (the interval
    reaches it), 'below' (it does not; 'below, no interval' with one seed).
    """
    out = []
    for (family, dataset), ref in PUBLISHED.items():
        _, rows = scale_selection(df, family, dataset)
        pts = scale_points(rows, "test_acc") if len(rows) else pd.DataFrame(
            columns=POINT_COLUMNS)
        if pts.empty:
            out.append({"family": family, "dataset": dataset, "published": ref,
                        "framework": "", "size": "", "params": math.nan, "mean": math.nan,
                        "ci_lo": math.nan, "ci_hi": math.nan, "n_seeds": 0, "n_failed": 0,
                        "n_sizes": 0, "verdict": "not run"})
            continue
        for fw in sorted(set(pts["framework"]), key=framework_rank):
            part = pts[pts["framework"] == fw]
            b = part.loc[part["mean"].idxmax()]
            out.append({"family": family, "dataset": dataset, "published": ref,
                        "framework": fw, "size": b["size"], "params": b["params"],
                        "mean": b["mean"], "ci_lo": b["ci_lo"], "ci_hi": b["ci_hi"],
                        "n_seeds": int(b["n_seeds"]), "n_failed": int(b["n_failed"]),
                        "n_sizes": len(part), "verdict": verdict(b["mean"], b["ci_hi"], ref)})
    return pd.DataFrame(out)


def verdict(mean: float, hi: float, ref: float) -> str:
    if not math.isfinite(mean):
        return "no result"
    if mean >= ref:
        return "reaches"
    if not math.isfinite(hi):
        return "below, no interval"
    return "within interval" if hi >= ref else "below"


# ---------------------------------------------------------------------------- curves


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


def _points(row) -> list[dict]:
    pts = row.get("curve_pts") if hasattr(row, "get") else None
    return pts if isinstance(pts, list) else parse_curve(row["curve"])


def _num(v) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return math.nan
    return f


def best_val_of(points: list[dict], fallback=math.nan) -> float:
    """The best validation accuracy on a curve (else the record's best_val_acc)."""
    accs = [a for a in (_num(p.get("val_acc")) for p in points) if math.isfinite(a)]
    if accs:
        return max(accs)
    v = _num(fallback)
    return v if math.isfinite(v) else math.nan


def time_to(row, target: float) -> float:
    """Seconds from the run's start until val_acc first reached `target`; inf if never."""
    return time_to_of(_points(row), target)


def time_to_of(points: list[dict], target: float) -> float:
    for p in points:
        acc, t = _num(p.get("val_acc")), _num(p.get("elapsed_s"))
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
    rows = ok_rows(df)
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
    return TARGET_FRACTION * top, top


def curve_flops(row) -> list[tuple[float, float, float]]:
    """(epoch, training FLOPs spent so far, val_acc) per curve point with a finite val_acc.

    FLOPs = train_flops_per_sample x cumulative samples (else step x effective batch); NaN
    where neither was recorded.
    """
    fps = _num(row["train_flops_per_sample"])
    batch = _num(row["batch_size_effective"])
    out = []
    for p in _points(row):
        e, acc = _num(p.get("epoch")), _num(p.get("val_acc"))
        if not (math.isfinite(e) and math.isfinite(acc)):
            continue
        samples = _num(p.get("samples"))
        if not math.isfinite(samples):
            samples = _num(p.get("step")) * batch
        out.append((e, fps * samples, acc))
    return out


def run_flops(row) -> float:
    """Training FLOPs the run spent: flops_spent, else its curve's last point."""
    v = _num(row["flops_spent"])
    if math.isfinite(v):
        return v
    pts = [f for _, f, _ in curve_flops(row) if math.isfinite(f)]
    return pts[-1] if pts else math.nan


# ---------------------------------------------------------------------------- lr grid


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
                    & rows["lr_role"].isin([LR_CHOSEN, "grid"])]
        members = unit[(unit["seed"] == seed) & (unit["framework"] == fw)
                       & (unit["regulariser"] == reg)]
        if marked:
            members = members[is_grid.loc[members.index]]
        members = (members.assign(_c=members["lr_role"] != LR_CHOSEN)
                   .sort_values(["lr", "_c"]).drop_duplicates("lr").drop(columns="_c"))
        chosen = set(unit.loc[unit["lr_role"] == LR_CHOSEN, "lr"].dropna())
        k = members["lr_grid_size"].max()
        out.append({"size": size, "optimizer": opt, "regulariser": reg, "framework": fw,
                    "seed": int(seed), "params": float(unit["params"].median()),
                    "k": int(k) if math.isfinite(k) and k > 0 else len(members),
                    "chosen": chosen.pop() if len(chosen) == 1 else math.nan,
                    "members": members.reset_index(drop=True)})
    return sorted(out, key=lambda u: (_size_rank(u["size"]), u["optimizer"]))


def grid_scores(members: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """(best validation accuracy, test accuracy) of each grid run; a failed run at chance."""
    val = pd.Series([_num(b) if math.isfinite(_num(b)) else best_val_of(p)
                     for b, p in zip(members["best_val_acc"], members["curve_pts"],
                                     strict=True)], index=members.index)
    failed = members["status"].isin(FAILED)
    return (val.where(~failed, members["chance"]),
            metric_values(members, "test_acc"))


def _pick(lrs, scores) -> float:
    """The lr with the best score; a tie goes to the smaller lr (as the selection does)."""
    cand = [(s if math.isfinite(s) else -math.inf, -lr, lr) for lr, s in zip(lrs, scores,
                                                                            strict=True)]
    return max(cand)[2] if cand else math.nan


def validation_pick(unit: dict) -> float:
    """The lr with the best final validation accuracy in the unit's grid."""
    m = unit["members"]
    val = [_num(b) if m.loc[i, "status"] == "ok" else -math.inf
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


# ---------------------------------------------------------------------------- frontier


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
    sizes = sorted(score, key=_size_rank)
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


# ---------------------------------------------------------------------------- overview


def status_counts(df: pd.DataFrame) -> pd.DataFrame:
    """Runs per family, framework and status (every status column present, zeros kept)."""
    if df.empty:
        return pd.DataFrame(columns=["family", "framework", *STATUSES, "total"])
    t = pd.crosstab([df["family"], df["framework"]], df["status"])
    extra = [s for s in t.columns if s not in STATUSES]
    t = t.reindex(columns=[*STATUSES, *extra], fill_value=0)
    t["total"] = t.sum(axis=1)
    t = t.reset_index()
    from ..registry import FAMILIES

    rank = t.apply(lambda r: (FAMILIES.index(r["family"]) if r["family"] in FAMILIES else 99,
                              r["family"], framework_rank(r["framework"])), axis=1)
    return t.iloc[sorted(range(len(t)), key=lambda i: rank.iloc[i])].reset_index(drop=True)


def compute_spent(df: pd.DataFrame) -> dict:
    """Total wall time, core time (wall x threads) and training FLOPs of all runs
    (flops_spent, else analytic FLOPs per sample x steps x batch)."""
    wall = df["wall_s"].fillna(0.0)
    threads = df["threads"].fillna(1.0)
    samples = df["steps_run"].fillna(0.0) * df["batch_size_effective"].fillna(0.0)
    flops = df["flops_spent"].fillna(df["train_flops_per_sample"].fillna(0.0) * samples).sum()
    return {"runs": len(df), "wall_s": float(wall.sum()),
            "core_s": float((wall * threads).sum()), "train_flops": float(flops)}


def environment(df: pd.DataFrame) -> list[tuple[str, str]]:
    """(what, values) pairs describing the hardware and software the runs saw."""
    items: list[tuple[str, str]] = []

    def uniq(col, rows=df) -> str:
        vals = sorted({str(v) for v in rows[col] if str(v) not in ("", "nan")})
        return ", ".join(vals) if vals else "not recorded"

    items.append(("hosts", uniq("hostname")))
    items.append(("CPU", uniq("cpu_model")))
    cores = sorted({int(v) for v in df["cpu_count"].dropna()})
    items.append(("CPU cores", ", ".join(map(str, cores)) or "not recorded"))
    items.append(("devices", uniq("device")))
    items.append(("device names", uniq("device_name")))
    th = sorted({int(v) for v in df["threads"].dropna()})
    items.append(("threads per run", ", ".join(map(str, th)) or "not recorded"))
    for fw in sorted(set(df["framework"]) - {""}, key=framework_rank):
        items.append((f"{framework_name(fw)} version", uniq("framework_version",
                                                            df[df["framework"] == fw])))
    items.append(("Python", uniq("python_version")))
    items.append(("platform", uniq("platform")))
    items.append(("bench", uniq("bench_version")))
    load = df["load_avg_1m_start"].dropna()
    items.append(("load average at run start",
                  f"{load.min():.2f} to {load.max():.2f} (median {load.median():.2f})"
                  if len(load) else "not recorded"))
    return items


def grid_summary(df: pd.DataFrame) -> list[tuple[str, str]]:
    """(axis, values) of what the study ran, read from the runs themselves."""

    def vals(col, key=None):
        v = sorted({x for x in df[col] if x not in ("", None)}, key=key)
        return ", ".join(map(str, v)) if v else "none"

    sizes = []
    for size in sorted({s for s in df["size"] if s}, key=_size_rank):
        p = df.loc[df["size"] == size, "params"].dropna()
        rng = (f" ({fmt_count(p.min())}" + (f"-{fmt_count(p.max())}" if p.max() != p.min()
                                            else "") + " params)") if len(p) else ""
        sizes.append(size + rng)
    opts = []
    for opt in sorted({o for o in df["optimizer"] if o}):
        lrs = sorted({float(v) for v in df.loc[df["optimizer"] == opt, "lr"].dropna()})
        opts.append(opt + (f" (lr {', '.join(f'{x:g}' for x in lrs)})" if lrs else ""))
    seeds = "; ".join(f"{framework_name(fw)} {seed_text(seeds_of(part))}"
                      for fw, part in sorted(df.groupby("framework"),
                                             key=lambda kv: framework_rank(kv[0])) if fw)
    epochs = sorted({int(s) for s in df["epochs"].dropna()})
    return [
        ("families", vals("family")),
        ("frameworks", ", ".join(framework_name(f) for f in
                                 sorted(set(df["framework"]) - {""}, key=framework_rank))
         or "none"),
        ("datasets", vals("dataset")),
        ("sizes", "; ".join(sizes) or "none"),
        ("optimizers", "; ".join(opts) or "none"),
        ("regularisers", vals("regulariser")),
        ("seeds", seeds or "none"),
        ("epochs (cap)", ", ".join(map(str, epochs)) or "none"),
        ("learning-rate selection", lr_selection_text(df)),
        ("batch sizes", vals("batch_size")),
        ("tuned runs", vals("tuned") if (df["tuned"] != "").any() else "none"),
    ]


def lr_selection_text(df: pd.DataFrame) -> str:
    """How learning rates were chosen, read from the runs' lr_role."""
    grid = df[(df["lr_role"] == "grid") & (df["tuned"] == "")]
    if grid.empty:
        return "none: every run at its optimizer's configured lr"
    units = grid[["family", "dataset", "size", "optimizer"]].drop_duplicates()
    k = grid["lr_grid_size"].dropna()
    k = f"{int(k.min())}" if len(k) and k.min() == k.max() else "several"
    fws = ", ".join(framework_name(f) for f in sorted(set(grid["framework"]),
                                                        key=framework_rank))
    return (f"{len(units)} units (family, dataset, size, optimizer), each a grid of {k} "
            f"rates at seed {seed_text(seeds_of(grid))} in {fws}, chosen by best validation "
            f"accuracy; the other seeds and frameworks then ran at the chosen rate")


# ---------------------------------------------------------------------------- formatting


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
