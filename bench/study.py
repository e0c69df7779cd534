"""Expand a study config (config/config.yaml, already schema-validated) into runs and jobs.

The workflow imports this module, so the grid is defined once, in plain Python, and the
tests exercise exactly what Snakemake schedules.

Designs:
- ``grid``: every family x framework x dataset x size x optimizer x regulariser x seed.
- ``centre``: the scale sweep (every size) at the centre optimizer/regulariser, plus the
  optimizer x regulariser sweep at the centre size; far fewer runs for the same questions.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from .spec import RunSpec, SpecError, size_of


@dataclass(frozen=True)
class Batch:
    """One job: runs of one framework, executed in one process to amortise its import."""

    name: str
    framework: str
    specs: tuple[RunSpec, ...]


def _optimizer_settings(study: dict, name: str) -> dict:
    table = study["optimizers"]
    if name not in table:
        raise SpecError(f"study.centre.optimizer {name!r} is not in study.optimizers")
    return dict(table[name] or {})


def plan(config: dict) -> list[RunSpec]:
    """Every run the study asks for, deduplicated, in a stable order."""
    st = config["study"]
    common = {
        "batch_size": st["batch_size"],
        "epochs": st["epochs"],
        "max_steps": st.get("max_steps", 0),
        "device": config.get("device", "cpu"),
        "threads": config.get("threads", 1),
        "compile": config.get("compile", False),
        **config.get("measure", {}),
    }
    cells: list[tuple] = []  # (family, framework, dataset, size, optimizer, regulariser, seed)
    axes = (st["families"], st["frameworks"], st["datasets"])
    if st["design"] == "grid":
        for f, fw, d in itertools.product(*axes):
            for size, opt, reg, seed in itertools.product(
                st["sizes"], st["optimizers"], st["regularisers"], st["seeds"]
            ):
                cells.append((f, fw, d, size, opt, reg, seed))
    else:
        c = st["centre"]
        _optimizer_settings(st, c["optimizer"])
        for f, fw, d in itertools.product(*axes):
            for size, seed in itertools.product(st["sizes"], st["seeds"]):
                cells.append((f, fw, d, size, c["optimizer"], c["regulariser"], seed))
            for opt, reg, seed in itertools.product(
                st["optimizers"], st["regularisers"], st["seeds"]
            ):
                cells.append((f, fw, d, c["size"], opt, reg, seed))
    specs: dict[str, RunSpec] = {}
    for f, fw, d, size, opt, reg, seed in cells:
        try:
            size_of(f, size)
        except SpecError as e:
            raise SpecError(f"study.sizes: {e}") from None
        settings = {**common, **_optimizer_settings(st, opt)}
        s = RunSpec.create(family=f, framework=fw, dataset=d, size=size, optimizer=opt,
                           regulariser=reg, seed=seed, **settings)
        specs.setdefault(s.run_id, s)
    if not specs:
        raise SpecError("the study is empty: every list in `study` needs at least one entry")
    return list(specs.values())


def batches(specs: list[RunSpec], runs_per_job: int) -> list[Batch]:
    """Group runs by framework, family and dataset, then chunk them into jobs.

    One job loads its framework and dataset once; chunks keep jobs short enough to spread
    over cores. Job names are stable for an unchanged study.
    """
    groups: dict[tuple, list[RunSpec]] = {}
    for s in specs:
        # A framework fixes its thread pools once per process: one thread count per job.
        groups.setdefault((s.framework, s.family, s.dataset, s.threads), []).append(s)
    out = []
    for (fw, fam, ds, threads), members in sorted(groups.items()):
        n_chunks = -(-len(members) // runs_per_job)
        for k in range(n_chunks):
            chunk = members[k::n_chunks]  # interleave so each chunk mixes sizes evenly
            tag = "" if threads == 1 else f"-t{threads}"
            out.append(Batch(f"{fw}-{fam}-{ds}{tag}-{k + 1}of{n_chunks}", fw, tuple(chunk)))
    return out
