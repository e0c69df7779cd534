"""Where a study lives and how it is searched: its Optuna storage, sampler and pruner.

Storage. ``JournalStorage(JournalFileBackend)`` at ``results/tune/<study>/journal.log`` by
default (an append-only log: safe under parallel workers where SQLite's locks are not), or
any Optuna RDB URL (PostgreSQL on a cluster).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..registry import SpecError
from .common import import_optuna
from .paths import JOURNAL_FILE


def open_storage(defn: dict, study_dir: str | Path):
    """The study's Optuna storage: the journal file in `study_dir`, or the RDB URL."""
    optuna = import_optuna()
    st = defn["storage"]
    if st["kind"] == "rdb":
        url = st.get("rdb_url")
        if st.get("rdb_url_env"):
            url = os.environ.get(st["rdb_url_env"]) or url
        if not url:
            raise SpecError(f"environment variable {st['rdb_url_env']} (the study's RDB URL) "
                            "is not set")
        return optuna.storages.RDBStorage(url)
    from optuna.storages.journal import JournalFileBackend

    Path(study_dir).mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(str(Path(study_dir) / JOURNAL_FILE)))


def trial_id(storage, study, number: int) -> int:
    """The storage's id of trial `number` of `study` (a FrozenTrial keeps it only in a
    private attribute; the storage's own lookup is public)."""
    return storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(study.study_name), number)


def storage_label(defn: dict, study_dir: str | Path) -> str:
    st = defn["storage"]
    if st["kind"] == "rdb":
        return f"rdb (${st['rdb_url_env']})" if st.get("rdb_url_env") else "rdb"
    return f"journal {Path(study_dir) / JOURNAL_FILE}"


def make_sampler(defn: dict, worker: int = 0, started: int = 0):
    """The study's sampler; each worker gets its own seed (QMC: one shared sequence).

    `started` (trials already begun in the study) enters the seed too, so a worker that
    resumes a study does not replay the random draws of its killed predecessor.
    """
    optuna = import_optuna()
    s = defn["sampler"]
    seed = (s["seed"] + 1009 * worker + 7919 * started) % 2**32
    if s["name"] == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=s["startup_trials"],
                                          multivariate=True, constant_liar=True)
    if s["name"] == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if s["name"] == "qmc":
        # one scrambled Sobol sequence for the whole study: every worker uses the same seed
        # and Optuna hands out the sequence's points in order through the storage
        return optuna.samplers.QMCSampler(seed=s["seed"], scramble=True,
                                          independent_sampler=optuna.samplers.RandomSampler(seed))
    return optuna.samplers.NSGAIISampler(seed=seed,
                                         population_size=max(2, s["startup_trials"] or 2))


def make_pruner(defn: dict):
    """Optuna's pruner for single-objective studies (multi-objective ones prune themselves)."""
    optuna = import_optuna()
    p, epochs = defn["pruner"], defn["base"]["epochs"]
    if p["name"] == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=p["min_epochs"], max_resource=epochs,
                                              reduction_factor=p["reduction_factor"])
    if p["name"] == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=p["min_epochs"],
                                                      reduction_factor=p["reduction_factor"])
    if p["name"] == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=p["startup_trials"],
                                           n_warmup_steps=p["min_epochs"])
    if p["name"] == "threshold":
        return optuna.pruners.ThresholdPruner(lower=p["threshold"], n_warmup_steps=p["min_epochs"])
    return optuna.pruners.NopPruner()


def load(defn: dict, study_dir: str | Path, storage=None, sampler=None, pruner=None):
    """The study as a fresh Study object (no cached trials from an earlier trial)."""
    optuna = import_optuna()
    storage = storage or open_storage(defn, study_dir)
    try:
        return optuna.load_study(study_name=defn["name"], storage=storage,
                                 sampler=sampler or make_sampler(defn),
                                 pruner=pruner or make_pruner(defn))
    except KeyError:
        raise SpecError(f"study {defn['name']} is not in its storage; run "
                        "`python -m bench tune-create` first") from None
