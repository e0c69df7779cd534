"""Optuna hyperparameter studies: one study per (family, framework, dataset, size) cell.

Tuning is how the report compares like with like: each size gets its best configuration
instead of one fixed learning rate that favours some sizes. A study is created once
(``tune-create``), K worker processes optimise into it concurrently (``tune-worker``), its
best parameters and trials table are exported (``tune-export``) and the final measured runs
use them with several seeds (``tune-final``). The package imports optuna lazily and never
imports a framework itself: trials train through ``bench.train.run`` and the backend the
study names, one framework per worker process.

One module per job, in the order a study goes through them:

- ``space``: the search space (tunable RunSpec fields, checks, Optuna distributions)
- ``definition``: objectives, defaults (from the config schema), study definitions and names
- ``paths``: the files of a study folder and the paths the workflow schedules
- ``storage``: the study's Optuna storage, sampler and pruner
- ``tickets``: exactly N trials, however many workers (tickets, holders, claim)
- ``liveness``: owners, heartbeats, and reaping trials whose worker is gone (resume)
- ``trial``: training one popped trial and telling Optuna its outcome
- ``pareto``: pruning multi-objective trials by rung Pareto dominance
- ``worker``: creating a study, and the worker loop
- ``export``: trials table, best.json and the final runs
- ``cli``: the ``tune-*`` verbs of ``python -m bench``

The names below are the package's surface (the workflow, ``bench.cli`` and the README use
them as ``bench.tune.<name>``).
"""

from .cli import add_parsers
from .definition import (
    DEFAULT_SPACE,
    DEFAULTS,
    OBJECTIVE_CODES,
    OBJECTIVES,
    PRUNERS,
    SAMPLERS,
    TuneStudy,
    check_definition,
    final_frameworks,
    make_definition,
    plan_studies,
    read_definition,
    spec_for,
    study_name,
)
from .export import export, final_specs, run_final, trials_table
from .liveness import HEARTBEAT, OWNER, Heartbeat, owner_alive, owner_info, reap
from .pareto import pareto_rung_prune
from .paths import (
    BEST_FILE,
    CSV_FILE,
    DEFINITION_FILE,
    JOURNAL_FILE,
    PARQUET_FILE,
    TUNE_DIR,
    final_files,
    quoted_definition,
    study_file,
    study_folder,
    worker_files,
)
from .space import DISTRIBUTIONS, TUNABLE, distributions, parse_space, suggest
from .storage import load, make_pruner, make_sampler, open_storage, storage_label
from .tickets import RETRY_OF, TICKET, VOID, claim, holders, is_void, issue_tickets, progress
from .trial import TrialRunner, run_trial
from .worker import create, run_worker

__all__ = [
    "BEST_FILE", "CSV_FILE", "DEFAULTS", "DEFAULT_SPACE", "DEFINITION_FILE", "DISTRIBUTIONS",
    "HEARTBEAT", "JOURNAL_FILE", "OBJECTIVES", "OBJECTIVE_CODES", "OWNER", "PARQUET_FILE",
    "PRUNERS", "RETRY_OF", "SAMPLERS", "TICKET", "TUNABLE", "TUNE_DIR", "VOID", "Heartbeat",
    "TrialRunner",
    "TuneStudy", "add_parsers", "check_definition", "claim", "create", "distributions", "export",
    "final_files", "final_frameworks", "final_specs", "holders", "is_void", "issue_tickets",
    "load", "make_definition", "make_pruner", "make_sampler", "open_storage", "owner_alive",
    "owner_info",
    "pareto_rung_prune", "parse_space", "plan_studies", "progress", "quoted_definition",
    "read_definition", "reap", "run_final", "run_trial", "run_worker", "spec_for", "storage_label",
    "study_file", "study_folder", "study_name", "suggest", "trials_table", "worker_files",
]
