"""Learning-rate selection on validation: grid records -> the chosen rate of every unit.

A unit is (family, dataset, size, optimizer) (`bench.study.plan.unit_of`). Its grid runs differ only
in the learning rate; the winner has the highest best validation accuracy (test accuracy is
never looked at). A run that diverged or failed ranks below every run that trained; a tie
goes to the smaller rate, the safer one for the other seeds.

The selection file (`results/lr/<family>-<dataset>.json`) lists every unit with its chosen
rate and the grid behind it; study jobs read it (`python -m bench run-job --lr-from`) and
the aggregate marks each run's `lr_role` from it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..registry import SpecError
from ..spec import RunSpec
from .records import foreign_version, read_record

UNIT_KEYS = ("family", "dataset", "size", "optimizer")


def _score(rec: dict) -> float:
    v = rec.get("best_val_acc")
    if rec.get("status") != "ok" or v is None or not math.isfinite(v):
        return -math.inf
    return float(v)


def choose(records: list[dict], race: bool = False) -> list[dict]:
    """One entry per unit: {family, dataset, size, optimizer, lr, best_val_acc, grid: [...]}."""
    units: dict[tuple, list[dict]] = {}
    for r in records:
        units.setdefault(tuple(r[k] for k in UNIT_KEYS), []).append(r)
    out = []
    for key, recs in sorted(units.items()):
        recs = sorted(recs, key=lambda r: r["lr"])
        best = max(recs, key=lambda r: (_score(r), -r["lr"]))
        out.append({
            **dict(zip(UNIT_KEYS, key, strict=True)),
            "lr": best["lr"],
            "best_val_acc": best.get("best_val_acc"),
            "all_failed": _score(best) == -math.inf,
            "framework": best["framework"],
            "seed": best["seed"],
            # a race's runs stop early, so its winner is not a study run; a full grid's is
            "race": race,
            "grid": [{"lr": r["lr"], "status": r.get("status"),
                      "best_val_acc": r.get("best_val_acc"), "run_id": r["run_id"]}
                     for r in recs],
        })
    return out


def select_main(job_files: list[str], runs_dir: str, out: str, race: bool = False) -> int:
    """`python -m bench select-lr`: grid jobs -> selection file."""
    import sys

    from .. import __version__
    from .records import write_json_atomic

    ids: dict[str, None] = {}
    for f in job_files:
        try:
            ids.update(dict.fromkeys(json.loads(Path(f).read_text())))
        except (OSError, ValueError, TypeError) as e:
            raise SpecError(f"cannot read job file {f}: {e}") from None
    records, missing = [], []
    for rid in ids:
        rec = read_record(Path(runs_dir) / f"{rid}.json")
        (records.append(rec) if rec else missing.append(rid))
    if missing:
        raise SpecError(f"{len(missing)} learning-rate grid record(s) missing, e.g. "
                        f"{runs_dir}/{missing[0]}.json")
    for rec in records:
        where = f"{runs_dir}/{rec['run_id']}.json"
        if (old := foreign_version(rec)) is not None:
            raise SpecError(f"{where} was recorded by bench {old}, this is "
                            f"{__version__}: rerun the grid (snakemake --forcerun train_job)")
        if rec.get("status") == "error":  # a crash says nothing about the rate: retry it
            raise SpecError(f"{where} ended with status error ({rec.get('message', '')[:200]}); "
                            "fix the cause and rerun the grid (snakemake --forcerun train_job)")
    units = choose(records, race)
    write_json_atomic(out, {"units": units})
    for u in units:
        tried = ", ".join(f"{g['lr']:g}: {_fmt(g)}" for g in u["grid"])
        lrs = [g["lr"] for g in u["grid"]]
        edge = len(lrs) > 2 and u["lr"] in (min(lrs), max(lrs))
        print(f"{u['family']} {u['size']} {u['optimizer']} on {u['dataset']}: lr {u['lr']:g} "
              f"({tried})" + (" -- every rate failed" if u["all_failed"] else "")
              + (" -- at the edge of the grid" if edge and not u["all_failed"] else ""),
              file=sys.stderr)
    return 0


def _fmt(g: dict) -> str:
    v = g.get("best_val_acc")
    return f"val {v:.3f}" if g.get("status") == "ok" and v is not None else str(g.get("status"))


def load_choices(path: str | Path) -> dict[tuple, float]:
    """unit -> chosen lr, from a selection file; one-line errors for a bad file."""
    try:
        units = json.loads(Path(path).read_text())["units"]
        return {tuple(u[k] for k in UNIT_KEYS): float(u["lr"]) for u in units}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SpecError(f"cannot read learning-rate selection {path}: {e}") from None


def resolve(spec: RunSpec, choices: dict[tuple, float], source: str) -> RunSpec:
    """`spec` at the rate chosen for its unit."""
    key = tuple(getattr(spec, k) for k in UNIT_KEYS)
    if key not in choices:
        raise SpecError(f"{source} has no learning rate for {' '.join(key)}; rerun the grid")
    return spec.with_(lr=choices[key])


def roles(rows: list[dict], units: dict[tuple, dict]) -> None:
    """Mark each row's learning-rate role in place.

    `lr_role`: 'chosen' (a study run at its unit's chosen rate), 'grid' (a selection run that
    is not also a study run: another rate, or any rate of a race) or '' (no selection);
    `lr_grid_run`: the row is one of its unit's selection runs (the sensitivity data);
    `lr_grid_size`: rates tried for its unit. `units`: unit -> selection entry.
    """
    for r in rows:
        key = tuple(r.get(k) for k in UNIT_KEYS)
        u = None if r.get("tuned") else units.get(key)
        if u is None:
            r.update(lr_role="", lr_grid_run=False, lr_grid_size=0)
            continue
        in_grid = r.get("run_id") in u["grid_ids"]
        chosen = r.get("lr") == u["lr"] and not (in_grid and u.get("race"))
        r.update(lr_role="chosen" if chosen else "grid", lr_grid_run=in_grid,
                 lr_grid_size=len(u["grid"]))


def load_roles(paths: list[str | Path]) -> dict[tuple, dict]:
    """unit -> selection entry, from selection files; one-line errors for a bad file."""
    out = {}
    for p in paths:
        try:
            for u in json.loads(Path(p).read_text())["units"]:
                out[tuple(u[k] for k in UNIT_KEYS)] = {
                    **u, "grid_ids": {g["run_id"] for g in u["grid"]}}
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise SpecError(f"cannot read learning-rate selection {p}: {e}") from None
    return out
