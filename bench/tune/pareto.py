"""Rung Pareto dominance: how multi-objective studies prune their trials.

Multi-objective mode (accuracy vs training throughput, optionally peak memory). Optuna's
pruners and ``trial.should_prune`` refuse multi-objective studies, so such trials are pruned
here by *rung Pareto dominance*: at epoch e a trial stops if a completed trial had, at the
same epoch, a higher validation accuracy and at least the same throughput (and, with the
memory objective on CPU, no more peak memory than this trial has already used). Throughput
is known from the first epoch and hardly changes with training, so a trial that is both
slower and behind an existing trial at the same point of training is unlikely to reach the
Pareto front; a fast trial of low accuracy is never stopped for its accuracy alone, which is
what keeps the fast end of the front. Pruned trials carry their curve in
``user_attrs.curve``.
"""

from __future__ import annotations


def pareto_rung_prune(point: dict, rate: float, mem_now: float | None, completed: list,
                      defn: dict) -> int | None:
    """Multi-objective pruning: the number of a completed trial that dominates this one at
    the same epoch (higher val_acc, at least the rate, no more memory), else None."""
    p = defn["pruner"]
    if p["name"] == "none" or point["epoch"] < p["min_epochs"]:
        return None
    if len(completed) < max(p["startup_trials"], 1):
        return None
    mem_objective = "peak_mem_mb" in defn["metrics"]
    if mem_objective and mem_now is None:
        return None
    for t in completed:
        curve = {int(c[0]): c for c in t.user_attrs.get("curve") or []}
        c = curve.get(point["epoch"])
        if c is None or not (c[1] > point["val_acc"] and c[2] >= rate):
            continue
        if mem_objective:
            mem_c = t.values[defn["metrics"].index("peak_mem_mb")]
            if mem_c is None or mem_c > mem_now:
                continue
        return t.number
    return None
