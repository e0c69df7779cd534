"""Summary table -> the tidy tables behind every figure (no plotting here).

Rules, all data-driven (the records carry no tags saying which sweep a run belongs to):

- Only ``status == "ok"`` rows enter statistics; other statuses are counted and listed.
- Runs trained with a tuning study's best parameters (``tuned`` non-empty) are shown on the
  tuning page only, so they never mix into the scale or sweep figures.
- Scale figure of a family/dataset: the recipe (optimizer, regulariser, lr, batch size,
  epochs, step cap) with the most distinct sizes among all its runs (ties: more runs, then
  name order).
- Optimizer x regulariser figure: the size with the most (optimizer, regulariser) cells.
- Time-to-target: the first ``elapsed_s`` of a run's curve at which ``val_acc`` reaches
  ``TARGET_FRACTION`` of the best median (over seeds) validation accuracy of any configuration
  of that family and dataset at the sweep's size; runs that never reach it count as
  infinitely slow.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from .. import stats
from ..spec import SIZE_NAMES

STATUSES = ("ok", "diverged", "oom", "pruned", "error")
RECIPE = ["optimizer", "regulariser", "lr", "batch_size", "epochs", "max_steps"]
TARGET_FRACTION = 0.9
FRAMEWORK_NAMES = {"torch": "PyTorch", "tf": "TensorFlow"}

# Columns the report reads; missing ones are added empty so partial tables still render.
TEXT_COLUMNS = ["run_id", "status", "message", "family", "framework", "dataset", "size",
                "optimizer", "regulariser", "tuned", "device", "device_name", "curve",
                "framework_version", "python_version", "platform", "cpu_model", "hostname",
                "bench_version", "batch_size", "started_at"]
NUMBER_COLUMNS = ["params", "seed", "test_acc", "val_acc", "best_val_acc", "train_samples_per_s",
                  "infer_samples_per_s", "peak_rss_mb", "peak_device_mem_mb", "wall_s", "lr",
                  "epochs", "max_steps", "threads", "cpu_count", "load_avg_1m_start",
                  "train_flops_per_sample", "steps_run", "batch_size_effective", "epochs_run"]


def framework_name(fw: str) -> str:
    return FRAMEWORK_NAMES.get(fw, fw)


def framework_rank(fw: str) -> tuple:
    """PyTorch first, then TensorFlow, then anything else by name."""
    order = list(FRAMEWORK_NAMES)
    return (order.index(fw) if fw in order else len(order), fw)


def load_summary(path: str | Path) -> pd.DataFrame:
    """The aggregate table (parquet or CSV), normalised: every column the report reads exists."""
    path = Path(path)
    df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    return normalise(df)


def normalise(df: pd.DataFrame) -> pd.DataFrame:
    # Only the columns the report reads: every filter below copies the columns it keeps.
    df = df[[c for c in df.columns if c in TEXT_COLUMNS or c in NUMBER_COLUMNS]].copy()
    for c in TEXT_COLUMNS:
        if c not in df.columns:
            df[c] = ""
        df[c] = df[c].map(lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v))
                          else str(v)).astype(object)
    for c in NUMBER_COLUMNS:
        if c not in df.columns:
            df[c] = np.nan
        df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
    df["status"] = df["status"].replace("", "error")
    df["curve_pts"] = pd.Series([parse_curve(c) for c in df["curve"]], index=df.index,
                                dtype=object)
    df["recipe"] = pd.Series(list(zip(*[df[c].astype(str) for c in RECIPE], strict=True)),
                             index=df.index, dtype=object)
    df["mem_mb"], df["mem_kind"] = _memory(df)
    df["size_order"] = df["size"].map(_size_rank)
    return df.reset_index(drop=True)


def _size_rank(size: str) -> int:
    return SIZE_NAMES.index(size) if size in SIZE_NAMES else len(SIZE_NAMES)


def _memory(df: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Peak device memory on a GPU run, peak host RSS otherwise."""
    dev = (df["device"] == "cuda") & df["peak_device_mem_mb"].notna()
    mem = df["peak_device_mem_mb"].where(dev, df["peak_rss_mb"])
    kind = pd.Series(np.where(dev, "device", "host RSS"), index=df.index, dtype=object)
    return mem, kind


def memory_label(rows: pd.DataFrame) -> str:
    kinds = set(rows["mem_kind"]) if len(rows) else {"host RSS"}
    if kinds == {"device"}:
        return "peak device memory (MB)"
    if kinds == {"host RSS"}:
        return "peak host RSS (MB)"
    return "peak memory (MB: device on GPU, host RSS on CPU)"


def ok_rows(df: pd.DataFrame, tuned: bool = False) -> pd.DataFrame:
    """Successful runs; the study's own runs, or with tuned=True only the tuned ones."""
    ok = df[df["status"] == "ok"]
    return ok[ok["tuned"] != ""] if tuned else ok[ok["tuned"] == ""]


def recipe_key(row) -> tuple:
    """(optimizer, regulariser, lr, batch size, epochs, step cap) as text."""
    if "recipe" in row and isinstance(row["recipe"], tuple):
        return row["recipe"]
    return tuple(str(row[c]) for c in RECIPE)


def recipe_label(recipe: tuple) -> str:
    d = dict(zip(RECIPE, recipe, strict=True))
    return f"{d['optimizer']} (lr {d['lr']}) + {d['regulariser']}"


def run_label(row) -> str:
    """Short human label of a run: 'torch s adam+dropout seed 1'."""
    seed = row["seed"]
    seed = int(seed) if isinstance(seed, float) and math.isfinite(seed) else seed
    tuned = f" tuned:{row['tuned']}" if row.get("tuned") else ""
    return (f"{row['framework']} {row['size']} {row['optimizer']}+{row['regulariser']} "
            f"seed {seed}{tuned}")


def groups(df: pd.DataFrame) -> list[tuple[str, str]]:
    """(family, dataset) pairs present in the table, in registry order."""
    from ..spec import FAMILIES

    pairs = df[["family", "dataset"]].drop_duplicates().itertuples(index=False)
    rank = {f: i for i, f in enumerate(FAMILIES)}
    return sorted(((f, d) for f, d in pairs), key=lambda p: (rank.get(p[0], 99), p[0], p[1]))


def scale_selection(df: pd.DataFrame, family: str, dataset: str) -> tuple[tuple, pd.DataFrame]:
    """(recipe, all of its runs, any status) for the scale figure of a family/dataset."""
    rows = df[(df["family"] == family) & (df["dataset"] == dataset) & (df["tuned"] == "")]
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
    """(size, all of its runs, any status) for the optimizer x regulariser figures."""
    rows = df[(df["family"] == family) & (df["dataset"] == dataset) & (df["tuned"] == "")]
    if rows.empty:
        return "", rows
    best = None
    for size, part in rows.groupby("size", sort=False):
        cells = part[["optimizer", "regulariser"]].drop_duplicates().shape[0]
        score = (cells, len(part), -_size_rank(size))
        if best is None or score > best[0]:
            best = (score, size)
    return best[1], rows[rows["size"] == best[1]]


def summarise(values, seed: int = 0) -> stats.Interval:
    return stats.median_ci(values, seed=seed)


def scale_points(rows: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Median and bootstrap CI over seeds of `metric` per framework and size (ok rows only)."""
    ok = rows[rows["status"] == "ok"]
    out = []
    for (fw, size), part in ok.groupby(["framework", "size"], sort=False):
        iv = summarise(part[metric])
        if not math.isfinite(iv.value):
            continue
        out.append({"framework": fw, "size": size, "params": float(part["params"].median()),
                    "median": iv.value, "ci_lo": iv.lo, "ci_hi": iv.hi, "n_seeds": iv.n})
    cols = ["framework", "size", "params", "median", "ci_lo", "ci_hi", "n_seeds"]
    res = pd.DataFrame(out, columns=cols)
    return res.sort_values(["framework", "params"]).reset_index(drop=True)


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


def curve_frame(row) -> pd.DataFrame:
    """The curve as a numeric table: epoch, elapsed_s, val_acc, val_loss, train_loss."""
    cols = ["epoch", "elapsed_s", "val_acc", "val_loss", "train_loss"]
    pts = _points(row)
    return pd.DataFrame([[_num(p.get(c)) for c in cols] for p in pts], columns=cols,
                        dtype=float)


def best_val(row) -> float:
    return best_val_of(_points(row), row["best_val_acc"])


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
    """(target, best median val accuracy) for time-to-target in a family/dataset (at a size).

    Taken among the configurations compared (one size of the sweep), the best of them reaches
    the target in at least half its seeds, so the figure always separates fast from slow;
    a target set by a larger size would be out of reach of the whole sweep.
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
    med = best.groupby(keyed).median()
    top = float(med.max()) if med.notna().any() else math.nan
    return TARGET_FRACTION * top, top


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
    from ..spec import FAMILIES

    rank = t.apply(lambda r: (FAMILIES.index(r["family"]) if r["family"] in FAMILIES else 99,
                              r["family"], framework_rank(r["framework"])), axis=1)
    return t.iloc[sorted(range(len(t)), key=lambda i: rank.iloc[i])].reset_index(drop=True)


def compute_spent(df: pd.DataFrame) -> dict:
    """Total wall time, core time (wall x threads) and training FLOPs of all runs."""
    wall = df["wall_s"].fillna(0.0)
    threads = df["threads"].fillna(1.0)
    samples = df["steps_run"].fillna(0.0) * df["batch_size_effective"].fillna(0.0)
    flops = (df["train_flops_per_sample"].fillna(0.0) * samples).sum()
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
    seeds = sorted({int(s) for s in df["seed"].dropna()})
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
        ("seeds", ", ".join(map(str, seeds)) or "none"),
        ("epochs", ", ".join(map(str, epochs)) or "none"),
        ("batch sizes", vals("batch_size")),
        ("tuned runs", vals("tuned") if (df["tuned"] != "").any() else "none"),
    ]


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
    if not iv.has_ci:
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
