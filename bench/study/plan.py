"""Expand a study config (config/config.yaml, already schema-validated) into its plan: runs
and jobs.

The workflow imports this module, so the plan is defined once, in plain Python, and the
tests exercise exactly what Snakemake schedules.

Designs:
- ``grid``: every family x framework x dataset x size x optimizer x regulariser x seed.
- ``centre``: the scale sweep (every size) at the centre optimizer/regulariser, plus the
  optimizer x regulariser sweep at the centre size; far fewer runs for the same questions.
Each family trains on the study's datasets it can read, with the regularisers it has (no
batch norm for seq2seq, label smoothing for seq2seq only). ``cells`` adds runs beyond the
design (e.g. the article's models on their own data) at every framework and seed.

Learning rates (``lr_grid``): every (family, dataset, size, optimizer) is a *unit* whose
learning rate is chosen on validation before its seeds run. `lr_grid_runs` lists the grid
(the optimizer's lr times each multiplier, regulariser none, the first seed in the first
framework); `bench.study.lr_select` picks the best; the study's own runs (`plan`) then take the
chosen rate in place of the optimizer's lr. The grid run at the chosen rate is one of those runs,
so the grid costs len(lr_grid) - 1 extra runs per unit. With ``lr_race_epochs: N`` the
grid is a race instead: every rate trains N epochs, the best validation accuracy so far
wins, and the winner's runs all train afresh (k x N epochs per unit in all).

Seeds: framework k runs seed + k * framework_seed_stride, so that the frameworks' accuracy
runs are independent draws that may be pooled (the parity test shows the same seed gives
the same losses in both), while throughput and memory stay per framework.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from ..registry import SpecError, check_family_reads, parse_regulariser, reads, regulariser_applies
from ..sizes import flops_per_sample, size_of
from ..spec import MATH_DEFAULTS, RunSpec

# `lr_grid_drop`: (epoch, margin) checks, in epoch order, at which a grid rate stops
Rungs = tuple[tuple[int, float], ...]


@dataclass(frozen=True)
class Job:
    """One job: runs of one framework, executed in one process to amortise its import.

    `choose_lr`: its runs take the learning rate chosen for their unit (from the selection
    file of their family and dataset) in place of the one in the spec.
    """

    name: str
    framework: str
    specs: tuple[RunSpec, ...]
    choose_lr: bool = False
    # grid jobs: the (epoch, margin) rungs of `lr_grid_drop` (bench.study.runner.behind)
    drop: Rungs | None = None

    @property
    def family(self) -> str:
        return self.specs[0].family

    @property
    def dataset(self) -> str:
        return self.specs[0].dataset


def _optimizer_settings(study: dict, name: str) -> dict:
    table = study["optimizers"]
    if name not in table:
        raise SpecError(f"study.centre.optimizer {name!r} is not in study.optimizers")
    return dict(table[name] or {})


def sizes_of(study: dict, family: str) -> list[str]:
    """The sizes a family runs at: `family_sizes` where given, else `sizes`."""
    return list((study.get("family_sizes") or {}).get(family) or study["sizes"])


def run_settings(config: dict, family: str) -> dict:
    """The RunSpec settings every run of `family` shares (cap, patience, batch, device, ...):
    the study's, the family's `family_settings`, the measurement. Tuning trials train so too."""
    st = config["study"]
    common = {
        "batch_size": st["batch_size"],
        "epochs": st["epochs"],
        "max_steps": st.get("max_steps", 0),
        "patience": st.get("patience", 0),
        "min_epochs": st.get("min_epochs", 1),
        "device": config.get("device", "cpu"),
        "threads": config.get("threads", 1),
        "compile": config.get("compile", False),
        **{k: config.get(k, v) for k, v in MATH_DEFAULTS.items()},
        **config.get("measure", {}),
    }
    common.update((st.get("family_settings") or {}).get(family) or {})
    common["min_epochs"] = min(common["min_epochs"], common["epochs"])
    common.pop("lr_scale", None)  # scales the optimizers' rates (base_lr), not a run field
    return common


def base_lr(study: dict, family: str, optimizer: str) -> float:
    """The optimizer's configured rate times the family's `lr_scale` (default 1)."""
    scale = ((study.get("family_settings") or {}).get(family) or {}).get("lr_scale", 1.0)
    return grid_lr(_optimizer_settings(study, optimizer)["lr"], scale)


def _spec(config: dict, family, framework, dataset, size, optimizer, regulariser, seed,
          **over) -> RunSpec:
    st = config["study"]
    try:
        size_of(family, size)
    except SpecError as e:
        raise SpecError(f"study.sizes: {e}") from None
    settings = {**run_settings(config, family), **_optimizer_settings(st, optimizer),
                "lr": base_lr(st, family, optimizer), **over}
    preset = parse_regulariser(regulariser)[1]
    if "patience" in preset:
        settings.pop("patience")  # early_stop's own patience wins over the study's
    if preset.get("lr_schedule", "none") != "none":
        # A schedule is laid out over the run's planned steps; stopped at a plateau, its
        # decay would mostly never happen. Such runs train their whole `epochs`.
        settings["patience"] = 0
    return RunSpec.create(family=family, framework=framework, dataset=dataset, size=size,
                          optimizer=optimizer, regulariser=regulariser, seed=seed, **settings)


def plan(config: dict) -> list[RunSpec]:
    """Every run the study asks for, deduplicated, in a stable order.

    With an `lr_grid`, each spec's lr is its optimizer's; the job replaces it with the rate
    chosen for its unit (`bench.study.lr_select`).
    """
    st = config["study"]
    stride = st.get("framework_seed_stride", 0)
    cells: list[tuple] = []  # (family, framework, dataset, size, optimizer, regulariser, seed)
    if st["design"] == "centre":
        _optimizer_settings(st, st["centre"]["optimizer"])
    sweep = st.get("sweep_families") or st["families"]
    for f in st["families"]:
        if not any(reads(f, d) for d in st["datasets"]):
            raise SpecError(f"study.families: {f!r} reads none of study.datasets "
                            f"({', '.join(st['datasets'])}); seq2seq reads translation "
                            "pairs (en_fr_numbers), the others the rest")
    # Each family trains on the datasets it can read: classifiers on images, series and
    # tokens, seq2seq on translation pairs.
    pairs = [(f, d) for f in st["families"] for d in st["datasets"] if reads(f, d)]
    for (f, d), (k, fw) in itertools.product(pairs, enumerate(st["frameworks"])):
        seeds = [s + k * stride for s in st["seeds"]]
        regs = [r for r in st["regularisers"] if regulariser_applies(f, r)]
        if st["design"] == "grid":
            for size, opt, reg, seed in itertools.product(
                sizes_of(st, f), st["optimizers"], regs, seeds
            ):
                cells.append((f, fw, d, size, opt, reg, seed))
            continue
        c = st["centre"]
        for size, seed in itertools.product(sizes_of(st, f), seeds):
            cells.append((f, fw, d, size, c["optimizer"], c["regulariser"], seed))
        if f in sweep:
            for opt, reg, seed in itertools.product(st["optimizers"], regs, seeds):
                cells.append((f, fw, d, c["size"], opt, reg, seed))
    for extra in st.get("cells") or []:
        opt = extra.get("optimizer") or (st["centre"]["optimizer"] if st["design"] == "centre"
                                         else next(iter(st["optimizers"])))
        _optimizer_settings(st, opt)
        check_family_reads(extra["family"], extra["dataset"])
        for (k, fw), size, seed in itertools.product(enumerate(st["frameworks"]),
                                                     extra["sizes"], st["seeds"]):
            cells.append((extra["family"], fw, extra["dataset"], size, opt,
                          extra.get("regulariser", "none"), seed + k * stride))
    specs: dict[str, RunSpec] = {}
    for cell in cells:
        s = _spec(config, *cell)
        specs.setdefault(s.run_id, s)
    if not specs:
        raise SpecError("the study is empty: every list in `study` needs at least one entry")
    return list(specs.values())


def lr_multipliers(config: dict) -> list[float]:
    return [float(m) for m in config["study"].get("lr_grid") or [1.0]]


def choosing_lr(config: dict) -> bool:
    return lr_multipliers(config) != [1.0]


def lr_grid_runs(config: dict, specs: list[RunSpec]) -> list[RunSpec]:
    """The learning-rate grid of every unit (family, dataset, size, optimizer) in `specs`.

    One seed (the study's first) in one framework (the first): the frameworks compute the
    same function from the same initial weights (tests/test_parity.py), so one grid serves
    both, and the other seeds are not spent on rates that lose.
    """
    if not choosing_lr(config):
        return []
    st = config["study"]
    fw, seed = st["frameworks"][0], st["seeds"][0]
    race = race_epochs(config)
    units = dict.fromkeys(unit_of(s) for s in specs)
    out: dict[str, RunSpec] = {}
    for family, dataset, size, optimizer in units:
        base = base_lr(st, family, optimizer)
        # The centre rate first: a later rate that falls behind an earlier one is stopped
        # (`lr_grid_drop`), and the centre is the one most often chosen.
        for m in sorted(lr_multipliers(config), key=lambda m: (abs(math.log(m)), -m)):
            over = {"lr": grid_lr(base, m)}
            if race:  # a race: every rate for `race` epochs, the winner then trains in full
                common = run_settings(config, family)
                over.update(epochs=min(race, common["epochs"]), patience=0,
                            min_epochs=min(race, common["min_epochs"]))
            s = _spec(config, family, fw, dataset, size, optimizer, "none", seed, **over)
            out.setdefault(s.run_id, s)
    return list(out.values())


def race_epochs(config: dict) -> int:
    """Epochs of the learning-rate race; 0 when the grid trains to convergence (a race as
    long as the runs themselves is no race)."""
    st = config["study"]
    race = st.get("lr_race_epochs", 0)
    return race if 0 < race < st["epochs"] else 0


def grid_drop(config: dict) -> Rungs | None:
    """`lr_grid_drop` as (epoch, margin) rungs in epoch order; None without it, or in a
    race (its runs are short). The config gives one {epoch, margin} or a list of them."""
    d = config["study"].get("lr_grid_drop")
    if not d or race_epochs(config):
        return None
    rungs = [d] if isinstance(d, dict) else d
    return tuple(sorted((int(r["epoch"]), float(r["margin"])) for r in rungs))


def grid_lr(base: float, multiplier: float) -> float:
    """base x multiplier, rounded to 6 significant digits so that ids stay readable."""
    return float(f"{base * multiplier:.6g}")


def unit_of(spec: RunSpec) -> tuple[str, str, str, str]:
    """What a learning rate is chosen for: (family, dataset, size, optimizer)."""
    return (spec.family, spec.dataset, spec.size, spec.optimizer)


def make_jobs(specs: list[RunSpec], runs_per_job: int, prefix: str = "",
            choose_lr: bool = False, drop: Rungs | None = None) -> list[Job]:
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
        # Longest runs first in each job, so that two jobs sharing two cores end together.
        members = sorted(members, key=lambda s: -_cost(s))
        n_chunks = -(-len(members) // runs_per_job)
        # Interleave so each chunk mixes sizes evenly. A grid deals out whole units, so
        # that a rate can be judged against the earlier rates of its unit (`drop`).
        units: dict[tuple, list[RunSpec]] = {}
        for s in members:
            units.setdefault(unit_of(s) if drop else (s.run_id,), []).append(s)
        dealt = list(units.values())
        for k in range(n_chunks):
            chunk = [s for u in dealt[k::n_chunks] for s in u]
            tag = "" if threads == 1 else f"-t{threads}"
            out.append(Job(f"{prefix}{fw}-{fam}-{ds}{tag}-{k + 1}of{n_chunks}", fw,
                             tuple(chunk), choose_lr, drop))
    return out


def _cost(spec: RunSpec) -> float:
    return flops_per_sample(spec.family, spec.size, spec.dataset)


def jobs(config: dict) -> tuple[list[Job], list[Job]]:
    """(learning-rate grid jobs, study jobs) of a config: what the workflow schedules."""
    specs = plan(config)
    rpj = config["runs_per_job"]
    grid = make_jobs(lr_grid_runs(config, specs), rpj, prefix="lr-", drop=grid_drop(config))
    return grid, make_jobs(specs, rpj, choose_lr=choosing_lr(config))
