"""Run records -> one tidy table (CSV and parquet), one row per run, every field flattened."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .. import __version__
from .records import foreign_version, read_record

# Columns first in the table, in this order; the rest follow alphabetically.
LEADING = ["run_id", "status", "family", "framework", "dataset", "size", "params", "optimizer",
           "regulariser", "seed", "test_acc", "train_samples_per_s", "peak_rss_mb"]


def flatten(record: dict, prefix: str = "") -> dict:
    """Nested dicts become `a.b` columns; lists (the learning curve) become JSON text."""
    row = {}
    for k, v in record.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            row.update(flatten(v, key + "."))
        elif isinstance(v, list):
            row[key] = json.dumps(v, separators=(",", ":"))
        else:
            row[key] = v
    return row


class MixedProtocols(ValueError):
    """Records written by another bench version: their numbers mean something else."""


def collect(run_ids: list[str], runs_dir: str | Path) -> tuple[list[dict], list[str]]:
    """Records of `run_ids`; ids whose record is missing or unreadable are returned apart.

    A record of another bench version is refused: the table never mixes protocols.
    """
    rows, missing = [], []
    for rid in run_ids:
        rec = read_record(Path(runs_dir) / f"{rid}.json")
        if rec is None:
            missing.append(rid)
            continue
        if (old := foreign_version(rec)) is not None:
            raise MixedProtocols(
                f"{Path(runs_dir) / (rid + '.json')} was recorded by bench "
                f"{old}, this is {__version__}: rerun its job "
                f"(snakemake --forcerun train_job tune_final; run-job redoes such records)")
        rows.append(flatten(rec))
    return rows, missing


def write_table(rows: list[dict], csv_path: str | Path, parquet_path: str | Path | None) -> None:
    import pandas as pd

    df = pd.DataFrame(rows)
    if df.empty:
        df = pd.DataFrame(columns=LEADING)
    cols = [c for c in LEADING if c in df.columns]
    cols += sorted(c for c in df.columns if c not in cols)
    df = df[cols]
    for c in df.columns:  # parquet wants one type a column: compile is false, true or "best"
        kinds = {type(v) for v in df[c] if v is not None and v == v}
        if len(kinds) > 1 and str in kinds:
            df[c] = df[c].map(lambda v: v if v is None or v != v else str(v))
    csv_path = Path(csv_path)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = csv_path.with_name(f".{csv_path.name}.tmp")
    df.to_csv(tmp, index=False)
    tmp.replace(csv_path)
    if parquet_path:
        ptmp = Path(parquet_path).with_name(f".{Path(parquet_path).name}.tmp")
        df.to_parquet(ptmp, index=False)
        ptmp.replace(parquet_path)


def main(job_files: list[str], runs_dir: str, csv_path: str, parquet_path: str | None,
         lr_selections: list[str] | None = None) -> int:
    from ..registry import SpecError
    from .lr_select import load_roles, roles

    ids: dict[str, None] = {}
    for f in job_files:
        ids.update(dict.fromkeys(json.loads(Path(f).read_text())))
    try:
        rows, missing = collect(list(ids), runs_dir)
    except MixedProtocols as e:
        raise SpecError(str(e)) from None
    roles(rows, load_roles(lr_selections or []))
    if missing:
        print(f"warning: {len(missing)} run record(s) missing or unreadable, e.g. {missing[0]}",
              file=sys.stderr)
    write_table(rows, csv_path, parquet_path)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    print(f"summary: {len(rows)} runs ({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))})"
          f" -> {csv_path}", file=sys.stderr)
    return 0
