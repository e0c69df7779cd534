"""What a finished study gives: its trials table, best.json (best parameters, Pareto front),
and the final measured runs with the best parameters, one per seed."""

from __future__ import annotations

import json
from pathlib import Path

from ..registry import SpecError
from ..spec import RunSpec
from .common import log
from .definition import final_frameworks, read_definition, spec_for
from .paths import BEST_FILE, CSV_FILE, PARQUET_FILE
from .storage import load, storage_label
from .tickets import TICKET, VOID, holders, is_void, progress, state_name


def trials_table(study, defn: dict):
    """One row per trial: number, state, value(s), params_*, user_attrs_*, ticket, void."""
    import pandas as pd

    trials = study.get_trials(deepcopy=False)
    held = {t.number for t in holders(trials, defn["trials"]).values()}
    rows = []
    for t in trials:
        row = {"number": t.number, "state": state_name(t)}
        for i, m in enumerate(defn["metrics"]):
            v = t.values[i] if t.values is not None and len(t.values) > i else None
            if len(defn["metrics"]) == 1:
                row["value"] = v
            row[f"values_{m}"] = v
        row["datetime_start"] = t.datetime_start.isoformat() if t.datetime_start else None
        row["datetime_complete"] = (t.datetime_complete.isoformat()
                                    if t.datetime_complete else None)
        row["duration"] = ((t.datetime_complete - t.datetime_start).total_seconds()
                           if t.datetime_complete and t.datetime_start else None)
        for k, v in t.params.items():
            row[f"params_{k}"] = v
        for k, v in t.user_attrs.items():
            row[f"user_attrs_{k}"] = json.dumps(v) if isinstance(v, (list, dict)) else v
        row["intermediate_values"] = json.dumps(
            {str(k): v for k, v in sorted(t.intermediate_values.items())})
        row["ticket"] = t.system_attrs.get(TICKET)
        row["void"] = t.system_attrs.get(VOID, "") if is_void(t) else ""
        row["counted"] = t.number in held and t.state.is_finished()
        rows.append(row)
    df = pd.DataFrame(rows)
    # mixed-type params (batch size 64 or "full") would not survive parquet: text then
    for c in df.columns:
        if df[c].dtype == object and df[c].map(type).nunique() > 1:
            df[c] = df[c].map(lambda v: None if v is None else str(v))
    return df


def export(study_dir: str | Path, best_path=None, csv_path=None, parquet_path=None) -> dict:
    """Write best.json (best parameters, directions, Pareto front) and the trials table."""
    from ..study.records import write_json_atomic

    study_dir = Path(study_dir)
    defn = read_definition(study_dir)
    study = load(defn, study_dir)
    trials = study.get_trials(deepcopy=False)
    p = progress(trials, defn["trials"])
    if p["finished"] < defn["trials"]:
        raise RuntimeError(f"study {defn['name']} has {p['finished']} of {defn['trials']} "
                           f"trials finished ({p['running']} running, {p['waiting']} waiting); "
                           "rerun the workers (the same command) to complete it")
    complete = [t for t in trials if state_name(t) == "COMPLETE"]
    if not complete:
        raise RuntimeError(f"study {defn['name']}: no trial completed (all pruned or failed: "
                           f"{p['states']}); widen the space or relax the pruner")
    multi = len(defn["directions"]) > 1
    front = sorted(study.best_trials, key=lambda t: t.number) if multi else [study.best_trial]
    best = max(front, key=lambda t: (t.values[0], -t.number))  # the most accurate point

    def as_point(t) -> dict:
        return {"number": t.number, "values": dict(zip(defn["metrics"], t.values, strict=True)),
                "params": t.params}

    out = {
        "study": defn["name"],
        "cell": defn["cell"],
        "objective": defn["objective"],
        "metrics": defn["metrics"],
        "directions": defn["directions"],
        "multi_objective": multi,
        "n_trials": defn["trials"],
        "states": p["states"],
        "void_trials": p["void"],
        "epochs_trained": sum(t.user_attrs.get("epochs_trained") or 0 for t in trials),
        # every trial's training, counted or not (a lost trial's work was spent too)
        "flops_spent": sum(t.user_attrs.get("flops_spent") or 0 for t in trials),
        "trials_pruned": sum(state_name(t) == "PRUNED" for t in trials if not is_void(t)),
        "best_trial": best.number,
        "best_value": best.values[0],
        "best_values": dict(zip(defn["metrics"], best.values, strict=True)),
        "best_params": best.params,
        "pareto_front": [as_point(t) for t in front] if multi else [],
        "base": defn["base"],
        "space": defn["space"],
        "sampler": defn["sampler"],
        "pruner": defn["pruner"],
        "storage": storage_label(defn, study_dir),
    }
    df = trials_table(study, defn)
    csv_path = Path(csv_path or study_dir / CSV_FILE)
    tmp = csv_path.with_name(f".{csv_path.name}.tmp")
    df.to_csv(tmp, index=False)
    tmp.replace(csv_path)
    parquet_path = Path(parquet_path or study_dir / PARQUET_FILE)
    ptmp = parquet_path.with_name(f".{parquet_path.name}.tmp")
    df.to_parquet(ptmp, index=False)
    ptmp.replace(parquet_path)
    write_json_atomic(best_path or study_dir / BEST_FILE, out)
    log(f"study {defn['name']}: best trial {best.number} {out['best_values']} {best.params}")
    return out


def _best(study_dir: Path) -> dict:
    try:
        return json.loads((study_dir / BEST_FILE).read_text())
    except (OSError, ValueError):
        raise SpecError(f"{study_dir / BEST_FILE} is missing or unreadable; run "
                        "`python -m bench tune-export` first") from None


def final_specs(study_dir: str | Path, framework: str, seeds: list[int] | None = None,
                transfer_from: str | Path | None = None) -> list[RunSpec]:
    """The final runs in one framework: the study's best parameters with each final seed,
    marked `tuned` with the study's name.

    With `transfer_from` (the folder of a study of a smaller size of the same family), that
    study's best parameters also run at this study's size on the same seeds, marked `tuned`
    with the smaller study's name: do parameters tuned on a small model transfer?
    """
    study_dir = Path(study_dir)
    defn = read_definition(study_dir)
    if seeds is None:
        if framework not in defn["final_seeds"]:
            raise SpecError(f"study {defn['name']} has no final runs in {framework!r} "
                            f"(final frameworks: {', '.join(final_frameworks(defn))})")
        seeds = defn["final_seeds"][framework]
    own = {"framework": framework}
    specs = [spec_for(defn, _best(study_dir)["best_params"], seed=s, tuned=defn["name"], **own)
             for s in seeds]
    if transfer_from:
        src = Path(transfer_from)
        small = read_definition(src)
        if (small["cell"]["family"], small["cell"]["dataset"]) != (
                defn["cell"]["family"], defn["cell"]["dataset"]):
            raise SpecError(f"--transfer-from {src}: study {small['name']} tunes another "
                            f"family or dataset than {defn['name']}")
        params = _best(src)["best_params"]
        specs += [spec_for(small, params, seed=s, tuned=small["name"], **own,
                           size=defn["cell"]["size"]) for s in seeds]
    return specs


def run_final(study_dir: str | Path, framework: str, out_dir: str | Path,
              seeds: list[int] | None = None, done: str | None = None,
              save_model: bool = False, transfer_from: str | Path | None = None) -> int:
    """Run the final specs of one framework (skipping those whose record exists); write the
    done list. With `save_model`, each run keeps its tested weights beside its record."""
    from ..study.records import write_json_atomic
    from ..study.runner import measuring_slots_for, run_specs

    defn = read_definition(study_dir)
    specs = final_specs(study_dir, framework, seeds, transfer_from)
    with measuring_slots_for(specs):
        errors = run_specs(specs, Path(out_dir), data_dir=defn["data_dir"],
                           allow_pickle=defn["allow_pickle"],
                           mem_limit_mb=defn.get("mem_limit_mb", 0), save_model=save_model)
    if done:
        write_json_atomic(done, [s.run_id for s in specs])
    return 1 if errors else 0
